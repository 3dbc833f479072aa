"""train-vae library: objectives, every loss trains, exact resume after SIGKILL, run directories."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from stftblur.losses import LocalPhaseLoss
from stftblur.metrics import ssim
from stftblur.models import load_vae
from stftblur.training import (
    LOSSES,
    ObjectiveConfig,
    RunDirError,
    TrainConfig,
    VAEObjective,
    kl_divergence,
    make_train_config,
    train_vae,
)

from ._vae_support import one_thread  # noqa: F401 (fixture)
from .conftest import require_shared

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw: object) -> TrainConfig:
    """200 training images (4 steps per epoch), 100 test images, few exports."""
    base = dict(data_dir=str(require_shared("data", "mnist")), train_size=200, eval_size=100, epochs=2,
                log_every=1, n_export=5, n_samples=4)
    return make_train_config(**{**base, **kw})


# --------------------------------------------------------------------------- objective


def _batch() -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 1, 28, 28, generator=g) > 0.7).float()
    return dict(recon=torch.rand(4, 1, 28, 28, generator=g), target=x,
                mean=torch.randn(4, 2, generator=g), logvar=torch.randn(4, 2, generator=g))


def test_objective_terms_follow_the_authors_code() -> None:
    b = _batch()
    kl = kl_divergence(b["mean"], b["logvar"]).mean()
    closed = 0.5 * (b["mean"] ** 2 + b["logvar"].exp() - 1 - b["logvar"]).sum(1).mean()
    torch.testing.assert_close(kl, closed)
    args = (b["recon"], b["target"], b["mean"], b["logvar"])
    l2, _ = VAEObjective(ObjectiveConfig("l2"))(*args)
    torch.testing.assert_close(l2, 0.005 * kl + ((b["recon"] - b["target"]) ** 2).mean())
    l1, _ = VAEObjective(ObjectiveConfig("l1", beta=0.0, pixel_weight=2.0))(*args)
    torch.testing.assert_close(l1, 2.0 * (b["recon"] - b["target"]).abs().mean())
    s = ssim(b["recon"], b["target"]).mean()
    loss, terms = VAEObjective(ObjectiveConfig("ssim"))(*args)
    torch.testing.assert_close(loss, 0.005 * kl - 500 * s)
    assert set(terms) == {"loss", "kl", "ssim"}
    ours, terms = VAEObjective(ObjectiveConfig("ours"))(*args)
    freq = LocalPhaseLoss.from_preset("paper-code")(b["recon"], b["target"])
    torch.testing.assert_close(ours, 0.005 * kl - 500 * s + 0.0015 * freq)
    torch.testing.assert_close(terms["freq"], freq)
    from focal_frequency_loss import FocalFrequencyLoss

    ffl, _ = VAEObjective(ObjectiveConfig("ffl"))(*args)
    expected = 0.005 * kl + ((b["recon"] - b["target"]) ** 2).mean() + FocalFrequencyLoss()(b["recon"], b["target"])
    torch.testing.assert_close(ffl, expected)


def test_presets_and_overrides_resolve() -> None:
    dft = ObjectiveConfig("dft+ssim").resolved()
    # One window over the whole image; the paper-code row transform then compares the first 14
    # rows, 14 width-frequencies, with the row-times-frequency ramp.
    assert dft["frequency"]["window_size"] == 28 and dft["frequency"]["stride"] == 1
    assert dft["frequency"]["transform"] == "rows" and dft["frequency"]["window"] is None
    assert dft["freq_weight"] == 0.0015 and dft["ssim_weight"] == 500.0
    global_term = LocalPhaseLoss(**dft["frequency"])
    x = torch.rand(2, 1, 28, 28)
    y = x.clone()
    y[..., 14:, :] = torch.rand(2, 1, 14, 28)  # the lower half is never compared
    y[..., 0, :] = torch.rand(2, 1, 28)  # nor row 0 (weight 0 in the row ramp)
    assert global_term(y, x).item() == 0.0
    y[..., 13, :] = torch.rand(2, 1, 28)
    assert global_term(y, x).item() > 0
    text = ObjectiveConfig("ours", preset="paper-text").resolved()["frequency"]
    assert text["window"] == "hann" and text["transform"] == "2d" and text["frequency_weighting"] == "linear"
    default = ObjectiveConfig("ours", preset="default", phase_weight=9.0, window="none", stride=8,
                              phase_distance="raw", frequency_weighting="product").resolved()
    assert default["freq_weight"] == 5.0
    f = default["frequency"]
    assert (f["phase_weight"], f["window"], f["stride"], f["phase_distance"], f["frequency_weighting"]) == (
        9.0, None, 8, "raw", "product")
    assert f["window_size"] == LocalPhaseLoss().window_size and f["aggregate"] == "mean"
    LocalPhaseLoss(**f)  # every resolved configuration is a valid loss


def test_objective_config_errors() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        ObjectiveConfig("mse")
    with pytest.raises(ValueError, match="window_size does not apply to loss 'l2'"):
        ObjectiveConfig("l2", window_size=8)
    with pytest.raises(ValueError, match="ssim_weight does not apply to loss 'ffl'"):
        ObjectiveConfig("ffl", ssim_weight=1.0)
    with pytest.raises(ValueError, match="no effect with transform='rows'"):
        ObjectiveConfig("ours", window="hann")
    with pytest.raises(ValueError, match="phase_distance must be one of"):
        ObjectiveConfig("ours", phase_distance="unwrapped")
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        ObjectiveConfig("ours", beta=-1.0)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_decreases(loss: str, tmp_path: Path) -> None:
    losses: List[float] = []
    cfg = tiny(loss=loss, epochs=6, lr_min=1e-3, lr_max=1e-3, n_export=0)
    train_vae(cfg, tmp_path / "run", callback=lambda step, terms: losses.append(terms["loss"]))
    assert len(losses) == 24 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses


def _weights(run: Path) -> Dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _records(run: Path, partial_evals: bool = True) -> List[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if partial_evals or r.get("complete_epoch", True)]


def _assert_same_run(a: Path, b: Path, partial_evals: bool = True) -> None:
    """Same weights, metrics (bit for bit) and summary. ``partial_evals=False`` ignores the
    evaluations a run writes when max_steps stops it in the middle of an epoch."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _records(a, partial_evals) == _records(b, partial_evals)
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert sa["metrics"] == sb["metrics"] and sa["step"] == sb["step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train_vae(tiny(), out)
    return out


def test_resume_after_sigkill_equals_uninterrupted(uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = json.dumps(tiny().to_dict())
    # Step 6 is in the middle of epoch 2: the last checkpoint is the end of epoch 1 (step 4).
    script = textwrap.dedent(f"""
        import json, os, signal, torch
        torch.set_num_threads(1)
        from stftblur.training import TrainConfig, train_vae
        def kill(step, terms):
            if step == 6:
                os.kill(os.getpid(), signal.SIGKILL)
        train_vae(TrainConfig.from_dict(json.loads({config!r})), {str(out)!r}, callback=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "summary.json").exists()
    assert _records(out)[-1]["step"] == 6  # lines past the checkpoint exist and must be cut on resume
    with pytest.raises(RunDirError, match="already exists"):
        train_vae(tiny(), out)
    result = train_vae(tiny(), out, resume=True)
    assert result.resumed_from_step == 4 and result.step == 8
    _assert_same_run(uninterrupted, out)


def test_stop_at_max_steps_then_extend(tmp_path: Path) -> None:
    # log_every=3 does not divide the 4 steps of an epoch: records are still identical, because the
    # steps since the last record are part of the checkpoint.
    uninterrupted = tmp_path / "uninterrupted"
    train_vae(tiny(log_every=3), uninterrupted)
    assert [r["step"] for r in _records(uninterrupted) if r["event"] == "train"] == [3, 4, 6, 8]
    out = tmp_path / "run"
    first = train_vae(tiny(max_steps=5, log_every=3), out)  # checkpoint in the middle of epoch 2
    summary = json.loads((out / "summary.json").read_text())
    assert first.step == 5 and summary["step"] == 5 and summary["stopped_by"] == "max_steps"
    with pytest.raises(RunDirError, match="objective.loss differ"):
        train_vae(tiny(max_steps=None, log_every=3, loss="l2"), out, resume=True)
    train_vae(tiny(max_steps=None, log_every=3), out, resume=True)
    assert [r["step"] for r in _records(out) if not r.get("complete_epoch", True)] == [5]
    _assert_same_run(uninterrupted, out, partial_evals=False)


def test_run_directory_layout(uninterrupted: Path) -> None:
    out = uninterrupted
    stored = json.loads((out / "config.json").read_text())
    assert stored["format"] == "stftblur-train-vae"
    assert stored["objective_resolved"]["frequency"]["transform"] == "rows"
    assert TrainConfig.from_dict(stored["config"]) == tiny()
    records = _records(out)
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert {"lr", "loss", "kl", "ssim", "freq"} <= set(train[0])
    assert [r["epoch"] for r in evals] == [1, 2]
    assert {"psnr_sampled", "ssim_sampled", "psnr_mean", "ssim_mean", "psnr_mean_clamped"} <= set(evals[0])
    assert train[0]["lr"] == pytest.approx(1e-4 + 0.9e-3 / 2000)
    for name in ("samples.png", "reconstructions.png", "model.json", "train_state.pt", "summary.json"):
        assert (out / name).is_file(), name
    names = sorted(p.name for p in (out / "recon").iterdir())
    assert names == sorted(p.name for p in (out / "reference").iterdir()) == [f"test-{i:05d}.png" for i in range(5)]
    assert len(list((out / "samples").glob("*.png"))) == 4
    # PNG pixels are round(clamp(raw output, 0, 1) * 255) of z = posterior mean, references are 0/255.
    model = load_vae(out)
    from stftblur.data import load_dataset

    x = load_dataset("mnist", "test", require_shared("data", "mnist")).images[:5]
    with torch.no_grad():
        raw = model.decode(model.encode(x)[0])
    expected = (raw.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
    for i in range(5):
        np.testing.assert_array_equal(np.array(Image.open(out / "recon" / f"test-{i:05d}.png")), expected[i])
        np.testing.assert_array_equal(np.array(Image.open(out / "reference" / f"test-{i:05d}.png")),
                                      (x[i, 0] * 255).to(torch.uint8).numpy())
    assert not list(out.rglob(".*.tmp"))


def test_run_directory_protection(uninterrupted: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for kw in ({}, {"resume": True}, {"force": True}):
        with pytest.raises(RunDirError):
            train_vae(tiny(), foreign, **kw)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(RunDirError, match="exclude each other"):
        train_vae(tiny(), tmp_path / "x", resume=True, force=True)
    # A finished run resumed with the same config is complete: nothing is trained again.
    again = train_vae(tiny(), uninterrupted, resume=True)
    assert again.step == 8 and again.resumed_from_step == 8


def test_a_finished_run_without_its_train_state_is_not_retrained(uninterrupted: Path, tmp_path: Path) -> None:
    """Finished runs of evals/runs keep no train_state.pt: --resume refuses them instead of
    starting them again from step 0 over their committed weights and log."""
    out = tmp_path / "finished"
    shutil.copytree(uninterrupted, out)
    (out / "train_state.pt").unlink()
    kept = {name: (out / name).read_bytes() for name in ("model.safetensors", "metrics.jsonl", "summary.json")}
    for config in (tiny(), tiny(epochs=3)):
        with pytest.raises(RunDirError, match="no longer holds its train_state.pt"):
            train_vae(config, out, resume=True)
    assert {name: (out / name).read_bytes() for name in kept} == kept


def test_force_replaces_a_previous_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_vae(tiny(epochs=1, n_export=3), out)
    train_vae(tiny(epochs=1, n_export=2, seed=1), out, force=True)
    assert len(list((out / "recon").iterdir())) == 2
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1


def test_train_config_round_trip() -> None:
    cfg = tiny(loss="ours", preset="default", window="none", latent_dim=4)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dataclasses.replace(cfg, epochs=3).epochs == 3
    with pytest.raises(ValueError, match="unknown training options"):
        make_train_config(learning_rate=1.0)
    with pytest.raises(ValueError, match="lr_max must be >= lr_min"):
        make_train_config(lr_min=1e-2, lr_max=1e-3)
