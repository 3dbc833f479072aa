"""Regenerate docs/api.md and docs/cli.md from the docstrings and the Click commands.

    python docs/gen_reference.py          # rewrite both files
    python docs/gen_reference.py --check  # exit 1 if they are out of date (used by the tests)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent

# (module, title); public names are the module's __all__, or its public functions and classes
# defined in the module itself.
MODULES = [
    ("stftblur.transforms", "Transforms"),
    ("stftblur.losses", "Losses"),
    ("stftblur.metrics", "Metrics"),
    ("stftblur.models", "Models"),
    ("stftblur.data", "Data"),
    ("stftblur.training", "Training"),
    ("stftblur.training.run_dir", "Run directory"),
    ("stftblur.io", "Image files"),
    ("stftblur.evaluation", "Folder evaluation"),
    ("stftblur.errors", "Errors"),
]


def _public(mod) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [
            n
            for n, obj in vars(mod).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", "") == mod.__name__
        ]
    return [n for n in names if not n.startswith("__")]


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def api_markdown() -> str:
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/gen_reference.py`; do not edit by hand.",
        "Everything listed under `stftblur.losses` and `stftblur.metrics` is also importable from",
        "`stftblur` where `stftblur.__all__` lists it.",
        "",
    ]
    for modname, title in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        out += [f"## {title}: `{modname}`", ""]
        if mod.__doc__:
            out += [inspect.cleandoc(mod.__doc__), ""]
        for name in _public(mod):
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            out += [f"### `{modname}.{name}`", "", f"```python\n{kind} {name}{_signature(obj)}\n```", ""]
            doc = inspect.getdoc(obj) or "(no docstring)"
            out += ["```text", doc, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def cli_help(args: list[str]) -> str:
    """What ``stftblur ARGS --help`` prints in a terminal 100 or more columns wide.

    In a terminal Click formats help min(columns, max_content_width) - 2 = 98 characters wide (the
    commands' max_content_width is 100); CliRunner forces 80 unless given the width itself.
    """
    from click.testing import CliRunner

    from stftblur_cli.main import cli

    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="stftblur", terminal_width=98)
    if result.exit_code != 0:
        raise RuntimeError(f"stftblur {' '.join(args)} --help failed: {result.output}")
    return result.output.rstrip("\n")


def cli_markdown() -> str:
    from stftblur_cli.main import cli

    out = [
        "# CLI reference",
        "",
        "Generated from `stftblur --help` and each command's `--help` (in a terminal 100 columns wide) by",
        "`python docs/gen_reference.py`; do not edit by hand. Task-oriented guides:",
        "[cli-vae.md](cli-vae.md), [cli-eval.md](cli-eval.md).",
        "",
    ]
    out += ["## `stftblur`", "", "```text", cli_help([]), "```", ""]
    for name in sorted(cli.commands):
        out += [f"## `stftblur {name}`", "", "```text", cli_help([name]), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    stale = []
    for path, text in ((DOCS / "api.md", api_markdown()), (DOCS / "cli.md", cli_markdown())):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python docs/gen_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
