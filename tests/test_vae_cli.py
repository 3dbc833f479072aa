"""stftblur train-vae / sample / eval-vae: one-line errors, outputs, and the eval folder layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
from click.testing import CliRunner, Result

from stftblur.data import load_dataset
from stftblur.models import load_author_checkpoint
from stftblur.training import evaluate_reconstructions
from stftblur_cli.main import cli

from ._vae_support import one_thread  # noqa: F401 (fixture)
from .conftest import require_shared

pytestmark = pytest.mark.usefixtures("one_thread")


def run(args: List[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run(["train-vae", "--out", str(out), "--data-dir", str(require_shared("data", "mnist")),
                  "--loss", "ssim", "--train-size", "100", "--epochs", "1", "--eval-size", "50",
                  "--n-export", "6", "--n-samples", "4", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "test PSNR" in result.stdout
    return out


def test_unknown_loss(tmp_path: Path) -> None:
    assert_one_line_error(run(["train-vae", "--out", str(tmp_path / "r"), "--loss", "mse"]), "--loss", "'mse'")
    assert not (tmp_path / "r").exists()


def test_missing_data_dir(tmp_path: Path) -> None:
    result = run(["train-vae", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path / "nowhere")])
    assert_one_line_error(result, "nowhere", "does not exist")
    assert not (tmp_path / "r").exists()


def test_option_that_does_not_apply(tmp_path: Path) -> None:
    result = run(["train-vae", "--out", str(tmp_path / "r"), "--loss", "l2", "--window-size", "8"])
    assert_one_line_error(result, "--window-size does not apply to loss 'l2'")


def test_existing_out_is_refused(tiny_run: Path) -> None:
    before = (tiny_run / "model.safetensors").read_bytes()
    result = run(["train-vae", "--out", str(tiny_run), "--loss", "ssim"])
    assert_one_line_error(result, "already exists", "--resume", "--force")
    assert (tiny_run / "model.safetensors").read_bytes() == before


def test_resume_with_another_loss_is_refused(tiny_run: Path) -> None:
    result = run(["train-vae", "--out", str(tiny_run), "--resume", "--loss", "l2"])
    assert_one_line_error(result, "objective.loss")


def test_resume_of_a_complete_run_keeps_it(tiny_run: Path) -> None:
    before = (tiny_run / "model.safetensors").read_bytes()
    result = run(["train-vae", "--out", str(tiny_run), "--resume", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tiny_run / "model.safetensors").read_bytes() == before


def test_recon_and_reference_pair_up_for_stftblur_eval(tiny_run: Path, tmp_path: Path) -> None:
    report = tmp_path / "eval.json"
    result = run(["eval", "--images", str(tiny_run / "recon"), "--reference", str(tiny_run / "reference"),
                  "--metrics", "psnr,ssim", "--json", str(report)])
    assert result.exit_code == 0, result.output
    written = json.loads(report.read_text())
    assert written["summary"]["psnr"]["count"] == 6
    assert written["unpaired_images"] == [] and written["unpaired_references"] == [] and not written["mismatched"]


def test_sample(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = run(["sample", "--checkpoint", str(tiny_run), "--n", "10", "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "samples.png").is_file() and len(list((out / "samples").glob("sample-*.png"))) == 10
    assert json.loads((out / "sample.json").read_text())["seed"] == 3
    assert_one_line_error(run(["sample", "--checkpoint", str(tiny_run), "--out", str(out)]), "already exists")
    assert run(["sample", "--checkpoint", str(tiny_run), "--out", str(out), "--n", "2", "--force"]).exit_code == 0
    assert len(list((out / "samples").glob("*.png"))) == 2
    assert_one_line_error(run(["sample", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]),
                          "does not exist")


def test_eval_vae_author_checkpoint(tmp_path: Path) -> None:
    ckpt = require_shared("reference", "author_vae", "ours.npz")
    data = require_shared("data", "mnist")
    report = tmp_path / "ours.json"
    result = run(["eval-vae", "--checkpoint", str(ckpt), "--data-dir", str(data), "--n-images", "200",
                  "--n-samples", "0", "--json", str(report), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "paper's convention" in result.stdout
    written = json.loads(report.read_text())
    assert written["test_images"] == 200 and written["dataset"] == "mnist"
    x = load_dataset("mnist", "test", data).images[:200]
    direct = evaluate_reconstructions(load_author_checkpoint(ckpt), x, seed=0)
    assert written["metrics"] == pytest.approx(direct)
    mean_only = run(["eval-vae", "--checkpoint", str(ckpt), "--data-dir", str(data), "--n-images", "50",
                     "--n-samples", "0", "--z", "mean"])
    assert "sampled" not in mean_only.stdout and "mean" in mean_only.stdout


def test_eval_vae_on_a_run_directory(tiny_run: Path) -> None:
    result = run(["eval-vae", "--checkpoint", str(tiny_run), "--n-images", "20", "--n-samples", "8",
                  "--data-dir", str(require_shared("data", "mnist"))])
    assert result.exit_code == 0, result.output
    assert "LPC-SI" in result.stdout


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    """Random 28x28 uint8 images as MNIST IDX files: 50 training images (one step of batch 50), 6 test."""
    from ._vae_support import STEMS, write_idx_dataset

    d = tmp_path_factory.mktemp("idx")
    return d, write_idx_dataset(d, n_train=50, n_test=6)[STEMS[2]]


TINY = ["--loss", "l2", "--n-export", "2", "--n-samples", "2", "--device", "cpu", "--no-progress"]


def test_grayscale_run_is_evaluated_on_grayscale_inputs(tiny_data, tmp_path: Path) -> None:
    import numpy as np
    import torch

    from stftblur.models import load_vae

    data, test_images = tiny_data
    out = tmp_path / "gray"
    result = run(["train-vae", "--out", str(out), "--data-dir", str(data), "--grayscale", "--epochs", "1", *TINY])
    assert result.exit_code == 0, result.output
    report = tmp_path / "gray.json"
    result = run(["eval-vae", "--checkpoint", str(out), "--data-dir", str(data), "--n-samples", "0",
                  "--json", str(report)])
    assert result.exit_code == 0, result.output
    written = json.loads(report.read_text())
    assert written["binarized"] is False
    # The run's preprocessing, from the bytes written: x / 255, not thresholded.
    x = torch.from_numpy(test_images.astype(np.float32) / 255)[:, None]
    assert len(x.unique()) > 2
    expected = evaluate_reconstructions(load_vae(out), x, seed=0)
    assert written["metrics"] == pytest.approx(expected)
    binarized = evaluate_reconstructions(load_vae(out), (x > 0.5).float(), seed=0)
    assert written["metrics"]["psnr_mean"] != pytest.approx(binarized["psnr_mean"])


def test_resume_warns_about_another_thread_count(tiny_data, tmp_path: Path) -> None:
    import torch

    data, _ = tiny_data
    out = tmp_path / "r"
    # The module's fixture runs on one thread; the first epoch is stored with torch_threads 1.
    assert run(["train-vae", "--out", str(out), "--data-dir", str(data), "--epochs", "1", *TINY]).exit_code == 0
    assert json.loads((out / "config.json").read_text())["torch_threads"] == 1
    torch.set_num_threads(2)
    try:
        result = run(["train-vae", "--out", str(out), "--data-dir", str(data), "--epochs", "2", "--resume", *TINY])
        # config.json now records the 2 threads of the session that continued it: no warning again.
        same = run(["train-vae", "--out", str(out), "--data-dir", str(data), "--epochs", "3", "--resume", *TINY])
    finally:
        torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    assert "ran with 1 torch threads, this process has 2" in result.stderr
    assert same.exit_code == 0 and "torch threads" not in same.stderr, same.stderr


def test_resume_into_a_new_directory_starts_a_run(tiny_data, tmp_path: Path) -> None:
    data, _ = tiny_data
    out = tmp_path / "new" / "run"
    result = run(["train-vae", "--out", str(out), "--data-dir", str(data), "--epochs", "2", "--resume", *TINY])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 2 and summary["epoch"] == 2 and summary["resumed_from_step"] is None
