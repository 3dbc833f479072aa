"""The deblurring benchmark: library pieces and a few training steps of the runner, end to end."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from click.testing import CliRunner

from stftblur.restoration import (
    LOSSES,
    RestorationConfig,
    RestorationNet,
    TrainSampler,
    calibrate_weights,
    degrade,
    make_test_set,
    restore,
    train_restoration,
)

from .conftest import ROOT

TINY = dict(crop_size=32, batch_size=2, steps=2, test_size=32, test_crops_per_photo=1, calibration_crops=4)


def _runner():
    spec = importlib.util.spec_from_file_location("evals_restoration", ROOT / "evals" / "restoration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_args(tmp_path, *extra: str) -> list:
    return [
        "--steps", "2", "--crop-size", "32", "--batch-size", "2", "--test-size", "32", "--test-crops", "1",
        "--calibration-crops", "4", "--train-photos", "moon,page", "--log-every", "1",
        "--out-dir", str(tmp_path / "out"), "--json", str(tmp_path / "results.json"),
        "--figure", str(tmp_path / "figure.png"), *extra,
    ]  # fmt: skip


def test_benchmark_trains_writes_folders_and_json(tmp_path):
    runner = _runner()
    doc = runner.main(_tiny_args(tmp_path, "--fresh"))
    out = tmp_path / "out"
    names = sorted(f"{p}_0.png" for p in RestorationConfig().test_photos)
    for folder in ["sharp", "blurry", *(f"{loss}/seed0" for loss in LOSSES)]:
        assert sorted(p.name for p in (out / folder).iterdir()) == names, folder
    assert (tmp_path / "figure.png").stat().st_size > 10_000

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"] == doc["config"] and saved["config"]["steps"] == 2
    assert [(r["loss"], r["seed"]) for r in saved["runs"]] == [(loss, 0) for loss in LOSSES]
    assert set(saved["summary"]) == set(LOSSES)
    assert set(saved["weights"]) == set(LOSSES) - {"l1"} and all(w > 0 for w in saved["weights"].values())
    assert set(saved["gradient_ratio_at_start"]) == set(saved["weights"])
    for run in saved["runs"]:
        assert run["train_seconds"] > 0 and run["machine"]["cpu_count"] >= 1 and "torch" in run["machine"]
        assert len(run["history"]) == 2 and all(math.isfinite(h["total"]) for h in run["history"])
        for metric in ("psnr", "ssim", "lpc_si"):
            assert math.isfinite(run["metrics"][metric]["mean"]) and run["metrics"][metric]["std"] >= 0
    assert saved["baselines"]["sharp"]["metrics"]["lpc_si"]["mean"] > saved["baselines"]["blurry"]["metrics"]["lpc_si"]["mean"]

    # The numbers are those of `stftblur eval` on the written folders.
    from stftblur_cli.eval_cmd import eval_command

    report = tmp_path / "eval.json"
    result = CliRunner().invoke(
        eval_command, ["--images", str(out / "l1_local_phase" / "seed0"), "--reference", str(out / "sharp"), "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    cli_values = {r["path"]: r["values"] for r in json.loads(report.read_text())["images"]}
    run = next(r for r in saved["runs"] if r["loss"] == "l1_local_phase")
    assert cli_values == run["per_image"]

    # A second invocation adds a seed to the same file; another configuration is refused.
    runner.main(_tiny_args(tmp_path, "--losses", "l1", "--seeds", "1", "--figure", ""))
    merged = json.loads((tmp_path / "results.json").read_text())
    assert len(merged["runs"]) == 5 and merged["summary"]["l1"]["seeds"] == [0, 1]
    assert merged["runs"][:1] == saved["runs"][:1]
    assert merged["summary"]["l1"]["images_with_higher_psnr_than_blurry_per_seed"][0] in range(5)
    report_only = runner.main(_tiny_args(tmp_path, "--report-only", "--figure", ""))
    assert report_only["runs"] == merged["runs"]
    with pytest.raises(SystemExit, match="another configuration"):
        runner.main(_tiny_args(tmp_path, "--losses", "l1", "--steps", "3"))


def test_network_is_identity_at_init_for_any_size():
    net = RestorationNet("mobilenetv3_small_100").eval()
    x = torch.rand(1, 1, 37, 50)
    with torch.no_grad():
        assert torch.equal(net(x), x)
    assert restore(net, x).shape == x.shape


def test_test_set_is_fixed_whatever_the_global_seed():
    cfg = RestorationConfig(**TINY)
    torch.manual_seed(1)
    a = make_test_set(cfg)
    torch.manual_seed(2)
    b = make_test_set(cfg)
    assert a.names == b.names and torch.equal(a.blurry, b.blurry) and torch.equal(a.sharp, b.sharp)
    assert all(0.5 <= s <= 2.5 for s in a.sigma) and all(0.0 <= n <= 0.02 for n in a.noise_std)
    # 8-bit exact, in [0, 1], blurrier than the reference.
    for t in (a.sharp, a.blurry):
        assert torch.equal(t * 255, (t * 255).round()) and t.min() >= 0 and t.max() <= 1
    assert not torch.equal(a.sharp, a.blurry)


def test_degrade_blurs_with_the_given_sigma():
    x = torch.zeros(2, 1, 33, 33)
    x[..., 16, 16] = 1.0
    y = degrade(x, torch.tensor([0.5, 2.5]), torch.zeros(2), kernel_size=17)
    # A wider Gaussian has a lower peak; values are quantised.
    assert y[0, 0, 16, 16] > y[1, 0, 16, 16] > 0
    assert torch.equal(y * 255, (y * 255).round())


def test_sampler_gives_augmented_exact_crops():
    cfg = RestorationConfig(**TINY)
    h, w = 40, 50
    photo = torch.arange(h * w, dtype=torch.float32).view(1, h, w)  # every pixel value unique
    sampler = TrainSampler(cfg, photos=[photo])
    torch.manual_seed(0)
    sharp = sampler.sharp_batch(8)
    assert sharp.shape == (8, 1, 32, 32)
    flips = set()
    for crop in sharp[:, 0]:
        # Undo the flip that puts the smallest value top-left, then it must be an exact slice.
        for fy in (False, True):
            for fx in (False, True):
                c = crop.flip(0) if fy else crop
                c = c.flip(1) if fx else c
                y, x = divmod(int(c[0, 0]), w)
                if int(c.min()) == int(c[0, 0]) and y + 32 <= h and x + 32 <= w and torch.equal(c, photo[0, y : y + 32, x : x + 32]):
                    flips.add((fy, fx))
                    break
            else:
                continue
            break
        else:
            raise AssertionError("a crop is not a (flipped) slice of the photograph")
    assert len(flips) > 1  # flips do happen


def test_training_is_reproducible_per_seed():
    cfg = RestorationConfig(**TINY, train_photos=("moon",))
    a = train_restoration(cfg, "l1_local_phase", seed=3, weight=0.01, log_every=1)
    b = train_restoration(cfg, "l1_local_phase", seed=3, weight=0.01, log_every=1)
    c = train_restoration(cfg, "l1_local_phase", seed=4, weight=0.01, log_every=1)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [h["total"] for h in a.history] == [h["total"] for h in b.history]
    assert all(math.isfinite(h["aux"]) for h in a.history) and not a.model.training


def test_weights_are_calibrated_and_can_be_fixed():
    cfg = RestorationConfig(**TINY, train_photos=("moon",))
    w = calibrate_weights(cfg)
    assert set(w) == {"l1_ssim", "l1_ffl", "l1_local_phase"} and all(v > 0 for v in w.values())
    assert calibrate_weights(cfg) == w  # independent of the global random state
    fixed = calibrate_weights(RestorationConfig(**TINY, train_photos=("moon",), weights={"l1_local_phase": 0.5}))
    assert fixed["l1_local_phase"] == 0.5 and fixed["l1_ssim"] == w["l1_ssim"]


def test_unknown_loss_is_an_error():
    from stftblur.restoration import aux_loss

    with pytest.raises(ValueError, match="loss must be one of"):
        aux_loss("l2")
