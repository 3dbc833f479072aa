"""Every command has --help and --version; the generated references are up to date."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from stftblur import __version__
from stftblur_cli.main import cli

from .conftest import ROOT

COMMANDS = sorted(cli.commands)


def test_top_level_version_and_help():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == f"stftblur, version {__version__}"
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_version(name):
    runner = CliRunner()
    help_result = runner.invoke(cli, [name, "--help"])
    assert help_result.exit_code == 0 and "Usage:" in help_result.output
    version_result = runner.invoke(cli, [name, "--version"])
    assert version_result.exit_code == 0 and __version__ in version_result.output


def test_unknown_command_fails():
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code != 0


def test_library_never_imports_the_cli():
    code = (
        "import sys, pkgutil, importlib, stftblur\n"
        "for m in pkgutil.walk_packages(stftblur.__path__, 'stftblur.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(any(m.startswith('stftblur_cli') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_generated_references_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


_PRINT_HELP = """
import contextlib, io, json, runpy, sys
out = {}
for args in json.loads(sys.argv[1]):
    sys.argv = ["stftblur", *args, "--help"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_module("stftblur_cli", run_name="__main__")  # what `python -m stftblur_cli` runs
        except SystemExit as e:
            assert e.code in (0, None), (args, e.code)
    out[" ".join(args)] = buf.getvalue()
print(json.dumps(out))
"""


def test_cli_reference_is_what_the_cli_prints():
    # docs/cli.md against the help the installed entry point prints in a 100-column terminal,
    # not against the generator (which could share a mistake with the file it writes).
    import json
    import os
    import re

    text = (ROOT / "docs" / "cli.md").read_text()
    blocks = dict(re.findall(r"## `stftblur ?([a-z-]*)`\n\n```text\n(.*?)\n```", text, flags=re.S))
    assert sorted(blocks) == sorted(["", *COMMANDS])
    env = {**os.environ, "COLUMNS": "100"}
    args = json.dumps([[]] + [[name] for name in COMMANDS])
    run = subprocess.run([sys.executable, "-c", _PRINT_HELP, args], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True)
    printed = json.loads(run.stdout)
    for name, block in blocks.items():
        assert block == printed[name].rstrip("\n"), f"docs/cli.md differs from `stftblur {name} --help`"
    assert "Usage: stftblur demo [OPTIONS]" in blocks["demo"] and "-h, --help" in blocks["demo"]
