"""`stftblur demo` (what `make demo` runs) trains, samples and prints the evaluation table."""

from __future__ import annotations

import json

from click.testing import CliRunner

from stftblur_cli.main import cli

from ._vae_support import write_idx_dataset
from .conftest import ROOT, require_shared


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    data = require_shared("data", "mnist")
    monkeypatch.setenv("STFTBLUR_DATA", str(data))
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--steps", "2", "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "samples.png").exists() and (out / "reconstructions.png").exists()
    assert "this demo run" in result.output and "PSNR" in result.output
    # The figure shows each 28x28 digit at 4x (three panels of 4x4 digits, 122 grid pixels each
    # way); the spectrum plot is beside it; the deficit of the samples is in the summary.
    from PIL import Image

    width, height = Image.open(out / "figure.png").size
    assert width >= 3 * 3 * 122 and height >= 3 * 122
    assert (out / "spectrum.png").read_bytes()[:4] == b"\x89PNG"
    assert "1,000 prior samples" in result.output and " dB" in result.output
    # The shipped 50-epoch model of the same loss is a row of the table, measured as its card says.
    card = ROOT / "models" / "ours" / "card.json"
    if card.exists():
        row = next(line for line in result.output.splitlines() if line.startswith("stftblur 'ours'"))
        assert row.split()[3] == f"{json.loads(card.read_text())['test_set']['psnr_sampled']:.3f}"
    # A second demo into the same directory must not clobber the first.
    again = CliRunner().invoke(cli, ["demo", "--steps", "2", "--out", str(out), "--threads", "1"])
    assert again.exit_code != 0


def test_steps_beyond_one_epoch_are_all_trained(tmp_path, monkeypatch):
    # 60 training images are 2 steps of batch 50, so --steps 5 needs 3 epochs; 7 test images.
    data = tmp_path / "data"
    write_idx_dataset(data, n_train=60, n_test=7)
    monkeypatch.setenv("STFTBLUR_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.chdir(tmp_path)  # no ../shared next to the working directory either
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--steps", "5", "--out", str(out), "--threads", "1",
                                      "--data-dir", str(data), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 5 and summary["epoch"] == 2  # two full epochs and one step of the third
    assert summary["stopped_by"] == "max_steps" and summary["test_images"] == 7
    assert "for 5 steps" in result.output
    assert "MNIST test set, 7 images" in result.output and "10,000" not in result.output
    assert (out / "figure.png").exists() and (out / "spectrum.png").exists()
    assert "against the 7 test digits" in result.output
