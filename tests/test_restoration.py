"""The deblurring benchmark in evals/: data, networks, objectives, and the runner end to end."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "evals"))
from deblur.data import Degradation, Downscale, TrainSampler, bicubic_up, degrade, load_photo, make_test_set  # noqa: E402
from deblur.nets import PlainCNN, make_net  # noqa: E402
from deblur.objectives import Objective, calibrated_weight, make_term, stft_variant  # noqa: E402


def test_photo_is_8bit_gray():
    x = load_photo("camera")
    assert x.shape == (1, 512, 512)
    assert torch.equal(x * 255, (x * 255).round())


def test_blur_of_an_impulse_matches_the_sampled_gaussian():
    sigma = 1.5
    deg = Degradation(sigma_range=(sigma, sigma), noise_std=0.0)
    x = torch.zeros(1, 1, 31, 31)
    x[..., 15, 15] = 1.0
    y, s = degrade(x, deg, torch.Generator().manual_seed(0))
    k = deg.kernel_size // 2
    g = np.exp(-np.arange(-k, k + 1) ** 2 / (2 * sigma**2))
    g /= g.sum()
    expected = np.round(np.outer(g, g) * 255) / 255  # separable, normalised, then 8 bits
    assert s.tolist() == [sigma]
    np.testing.assert_allclose(y[0, 0, 15 - k:16 + k, 15 - k:16 + k].numpy(), expected, atol=1e-6)


def test_test_set_is_fixed_and_training_batches_follow_the_seed():
    a, b = make_test_set(crops_per_photo=1, size=32), make_test_set(crops_per_photo=1, size=32)
    assert a.names == ["camera_0", "clock_0", "coins_0", "text_0"]
    assert torch.equal(a.blurry, b.blurry) and all(1.0 <= s <= 2.0 for s in a.sigma)
    s1, s2, s3 = (TrainSampler(seed, crop_size=16, batch_size=3, photos=("moon", "page")) for seed in (0, 0, 1))
    x1, x2, x3 = s1.sample()[0], s2.sample()[0], s3.sample()[0]
    assert x1.shape == (3, 1, 16, 16) and torch.equal(x1, x2) and not torch.equal(x1, x3)


@pytest.mark.parametrize("name", ["cnn", "timm:mobilenetv3_small_100"])
def test_networks_start_at_the_identity(name):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(make_net(name).eval()(x), x)


def test_unknown_network_names_the_choices():
    with pytest.raises(ValueError, match="cnn"):
        make_net("resnet")


def test_prod_variant_is_the_phase_part_of_the_complex_distance():
    # |F_o - F_t|^2 = (A_o - A_t)^2 + 2 A_o A_t (1 - cos dphi): one 16x16 window, computed with numpy.
    g = torch.Generator().manual_seed(0)
    o, t = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64), torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    win = np.outer(*(2 * [0.5 - 0.5 * np.cos(2 * np.pi * np.arange(16) / 16)]))
    fo = np.fft.rfft2(o[0, 0].numpy() * win) / win.sum()
    ft = np.fft.rfft2(t[0, 0].numpy() * win) / win.sum()
    fu, fv = np.abs(np.fft.fftfreq(16)), np.fft.rfftfreq(16)
    w = np.sqrt((fu[:, None] / fu.max()) ** 2 + (fv[None, :] / fv.max()) ** 2) / np.sqrt(2)
    ao, at = np.abs(fo), np.abs(ft)
    phase_part = (np.abs(fo - ft) ** 2 - (ao - at) ** 2) / 2  # = A_o A_t (1 - cos dphi)
    expected = np.mean(w * (np.abs(ao - at) + 3.0 * phase_part / at.mean()))
    assert stft_variant("prod")(o, t).item() == pytest.approx(expected, rel=1e-9)
    assert stft_variant("complex")(o, t).item() == pytest.approx(np.mean(w * np.abs(fo - ft)), rel=1e-9)


@pytest.mark.parametrize("name", ["prod", "complex", "mr-prod", "mr-lpl", "lpl-lam1", "lpl-eps0.01",
                                  "lpl-fwnone", "lpl-unnorm"])
def test_variants_have_finite_gradients_on_zero_patches_and_pass_gradcheck(name):
    term = make_term(name)
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64, requires_grad=True)
    for target in (torch.zeros(1, 1, 32, 32, dtype=torch.float64), torch.rand(1, 1, 32, 32, dtype=torch.float64)):
        (g,) = torch.autograd.grad(term(x, target), x)
        assert torch.isfinite(g).all()
    if name in ("prod", "complex"):
        y = torch.rand(1, 1, 20, 20, dtype=torch.float64, requires_grad=True)
        t = torch.rand(1, 1, 20, 20, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a: stft_variant(name, 8, 4)(a, t), (y,))


def test_calibrated_weight_balances_the_terms_at_the_start():
    s = TrainSampler(0, crop_size=32, batch_size=8, photos=("moon",))
    blurry, sharp = s.sample()
    w = calibrated_weight("lpl", 0.5, blurry, sharp)
    obj = Objective("lpl", w)
    obj(blurry, sharp)
    assert w * obj.last["aux"] == pytest.approx(0.5 * obj.last["l1"], rel=0.05)  # two significant digits


def test_runner_end_to_end(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("evals_restoration", ROOT / "evals" / "restoration.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    small = lambda **kw: make_test_set(crops_per_photo=1, size=48)  # noqa: E731
    monkeypatch.setattr(runner, "make_test_set", small)
    out = tmp_path / "out"
    args = ["--configs", "l1,l1+lpl@1", "--seeds", "0,1", "--steps", "2", "--json", str(tmp_path / "r.json"),
            "--out-dir", str(out), "--doc", str(tmp_path / "r.md"), "--figure", str(tmp_path / "f.png"), "--log-every", "1"]
    assert runner.main(args) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data) == {"blurry", "l1", "l1+lpl@1"}
    for key in ("psnr", "ssim", "lpc_si"):
        assert math.isfinite(data["blurry"][key])
    assert [r["seed"] for r in data["l1+lpl@1"]["per_seed"]] == [0, 1]
    assert {"seed", "psnr", "ssim", "lpc_si"} <= set(data["l1"]["per_seed"][0])
    paired = data["l1+lpl@1"]["paired_vs_l1"]["psnr"]
    assert paired["lo"] <= paired["mean"] <= paired["hi"] and paired["n_seeds"] == 2
    assert (out / "l1" / "seed1" / "text_0.png").exists() and (tmp_path / "f.png").exists()
    assert "| l1+lpl@1 |" in (tmp_path / "r.md").read_text()
    # Finished runs are skipped; other settings are refused.
    assert runner.main(args) == 0
    with pytest.raises(SystemExit):
        runner.main(args[:-2] + ["--lr", "0.5"])


def test_confirmation_uses_only_the_fresh_seeds():
    """The confirmation compares the CONFIRMATION configurations with L1 on CONFIRMATION_SEEDS
    alone: the seeds the candidates were picked on do not enter it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("evals_restoration", ROOT / "evals" / "restoration.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    fresh = runner.CONFIRMATION_SEEDS
    base, cand = runner.CONFIRMATION[0], runner.CONFIRMATION[1]

    def runs(offset_old, offset_new):
        old = [{"seed": s, "psnr": 30.0 + offset_old + 0.01 * s, "ssim": 0.8, "lpc_si": 0.7 + 0.001 * s} for s in (0, 1, 2)]
        new = [{"seed": s, "psnr": 30.0 + offset_new + 0.01 * s, "ssim": 0.8 + 0.001 * s, "lpc_si": 0.7} for s in fresh]
        return {"per_seed": old + new}

    results = {"blurry": {}, base: runs(0.0, 0.0), cand: runs(5.0, 0.5)}  # old seeds far ahead
    conf = runner.confirmation(results)
    assert list(conf) == [cand] and conf[cand]["seeds"] == list(fresh)
    assert conf[cand]["psnr"]["diff"] == pytest.approx(0.5) and conf[cand]["psnr"]["n"] == [len(fresh), len(fresh)]
    assert conf[cand]["psnr"]["exceeds_spread"]
    assert "| " + cand + " |" in runner.confirmation_section(results)
    assert "(not run yet)" in runner.confirmation_section({"blurry": {}, base: runs(0, 0)})


def test_super_resolution_input_is_the_bicubic_downsampled_crop_and_the_network_starts_at_bicubic():
    a = make_test_set(crops_per_photo=1, size=32, deg=Downscale(2))
    assert a.blurry.shape == (4, 1, 16, 16) and a.sharp.shape == (4, 1, 32, 32)
    assert torch.equal(a.blurry * 255, (a.blurry * 255).round())
    # a constant image stays constant through antialiased bicubic downsampling
    flat = torch.full((1, 1, 8, 8), 0.4)
    lo, sigma = degrade(flat, Downscale(2))
    assert lo.shape == (1, 1, 4, 4) and sigma.tolist() == [0.0]
    assert torch.allclose(lo, torch.full_like(lo, round(0.4 * 255) / 255))
    torch.manual_seed(0)
    net = make_net("sr2-cnn").eval()
    x = torch.rand(2, 1, 12, 12)
    assert torch.equal(net(x), bicubic_up(x, 2))
    lr, hr = TrainSampler(0, crop_size=16, batch_size=2, photos=("moon",), deg=Downscale(2)).sample()
    assert lr.shape == (2, 1, 8, 8) and hr.shape == (2, 1, 16, 16)
