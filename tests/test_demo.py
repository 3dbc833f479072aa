"""`stftblur demo` (what `make demo` runs) trains, samples and prints the evaluation table."""

from __future__ import annotations

from click.testing import CliRunner

from stftblur_cli.main import cli

from .conftest import require_shared


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    data = require_shared("data", "mnist")
    monkeypatch.setenv("STFTBLUR_DATA", str(data))
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--steps", "2", "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "samples.png").exists() and (out / "reconstructions.png").exists()
    assert "this demo run" in result.output and "PSNR" in result.output
    # A second demo into the same directory must not clobber the first.
    again = CliRunner().invoke(cli, ["demo", "--steps", "2", "--out", str(out), "--threads", "1"])
    assert again.exit_code != 0
