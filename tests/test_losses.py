"""LocalPhaseLoss, FourierLoss and SSIMLoss: references, gradients, edge cases, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import stftblur
from stftblur import FourierLoss, LocalPhaseLoss, SSIMLoss, fourier_loss, local_phase_loss, ssim_loss, stft2d
from stftblur.losses import frequency_weights

from .conftest import cuda, require_shared


def _reference_loss(x, y, window_size=16, stride=4, lam=3.0, alpha=1.0, distance="wrapped", window="hann",
                    weighting="linear", normalized=True, aggregate="mean"):
    """Straight-line definition through the public stft2d (plain autograd, no fused kernel)."""
    fo = stft2d(x, window_size, stride, window, normalized=normalized)
    ft = stft2d(y, window_size, stride, window, normalized=normalized)
    amp = (fo.abs() - ft.abs()).abs()
    if distance == "wrapped":
        ph = torch.angle(fo * ft.conj()).abs()
    elif distance == "raw":
        ph = (torch.angle(fo) - torch.angle(ft)).abs()
    else:
        ph = 1 - torch.cos(torch.angle(fo) - torch.angle(ft))
    size = (x.shape[-2], x.shape[-1]) if window_size is None else (window_size, window_size)
    w = frequency_weights(weighting, size)
    per = (lam * ph + alpha * amp) * (1.0 if w is None else w.to(x.dtype))
    per = per.flatten(1)
    return per.mean(1) if aggregate == "mean" else per.sum(1)


@pytest.mark.parametrize("distance", ["wrapped", "raw", "cosine"])
@pytest.mark.parametrize("weighting", ["linear", "product", "none"])
def test_matches_straight_line_definition(distance, weighting):
    x = torch.rand(3, 2, 24, 29, dtype=torch.float64)
    y = torch.rand(3, 2, 24, 29, dtype=torch.float64)
    got = local_phase_loss(x, y, window_size=8, stride=4, phase_distance=distance, frequency_weighting=weighting, reduction="none")
    ref = _reference_loss(x, y, 8, 4, distance=distance, weighting=weighting)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_hand_derived_single_coefficient():
    # A pure cosine along the columns against its negative: every coefficient has the same
    # amplitude and opposite sign, so the wrapped phase distance is pi wherever the amplitude is
    # non-zero and the amplitude term is 0.
    n = torch.arange(8, dtype=torch.float64)
    x = torch.cos(2 * torch.pi * 2 * n / 8).expand(8, 8)[None, None].clone()
    weight = torch.zeros(8, 5, dtype=torch.float64)
    weight[0, 2] = 1.0  # only (u=0, v=2) counts
    loss = local_phase_loss(x, -x, window_size=8, stride=8, window=None, frequency_weighting=weight, aggregate="sum",
                            phase_weight=1.0, amplitude_weight=1.0)
    assert loss.item() == pytest.approx(np.pi, abs=1e-12)
    # Raw distance on the same pair: angle(+real) - angle(-real) = 0 - pi.
    loss_raw = local_phase_loss(x, -x, window_size=8, stride=8, window=None, frequency_weighting=weight, aggregate="sum",
                                phase_distance="raw", phase_weight=1.0)
    assert loss_raw.item() == pytest.approx(np.pi, abs=1e-12)


def test_wrapped_has_no_two_pi_jumps_raw_does():
    # Two 8x8 images whose coefficient (u=0, v=2) has phase pi - 0.05 and -pi + 0.05: either side
    # of the negative real axis, 0.1 apart. x[m, n] = cos(2 pi 2 n / 8 + phi) gives
    # F(0, 2) = 8 * 4 * exp(i phi) (8 rows, N/2 = 4 per row), equal amplitudes.
    n = torch.arange(8, dtype=torch.float64)

    def image(phi: float) -> torch.Tensor:
        return torch.cos(2 * torch.pi * 2 * n / 8 + phi).expand(8, 8)[None, None].clone()

    a, b = image(np.pi - 0.05), image(-np.pi + 0.05)
    weight = torch.zeros(8, 5, dtype=torch.float64)
    weight[0, 2] = 1.0  # only (u=0, v=2) counts

    def loss(distance: str) -> float:
        return local_phase_loss(a, b, window_size=8, stride=8, window=None, frequency_weighting=weight, aggregate="sum",
                                phase_distance=distance, phase_weight=1.0, amplitude_weight=1.0).item()

    assert loss("wrapped") == pytest.approx(0.1, abs=1e-12)
    assert loss("raw") == pytest.approx(2 * np.pi - 0.1, abs=1e-12)
    assert loss("cosine") == pytest.approx(1 - np.cos(0.1), abs=1e-12)


def test_frequency_weights_hand_derived():
    # A 4x4 window: row frequencies 0, 1/4, -1/2, -1/4 and (rfft) column frequencies 0, 1/4, 1/2
    # cycles per pixel, i.e. magnitudes 0, 1/2, 1, 1/2 and 0, 1/2, 1 of the Nyquist frequency.
    r2 = np.sqrt(2.0)
    linear = [[0, 0.5 / r2, 1 / r2],
              [0.5 / r2, 0.5, np.sqrt(1.25) / r2],
              [1 / r2, np.sqrt(1.25) / r2, 1],
              [0.5 / r2, 0.5, np.sqrt(1.25) / r2]]  # fmt: skip
    product = [[0, 0, 0], [0, 0.25, 0.5], [0, 0.5, 1], [0, 0.25, 0.5]]
    np.testing.assert_allclose(frequency_weights("linear", (4, 4)).numpy(), linear, atol=1e-15)
    np.testing.assert_allclose(frequency_weights("product", (4, 4)).numpy(), product, atol=1e-15)
    # 4x6: columns 0, 1/6, 1/3, 1/2 -> 0, 1/3, 2/3, 1 of Nyquist.
    np.testing.assert_allclose(frequency_weights("product", (4, 6)).numpy()[1], [0, 1 / 6, 1 / 3, 1 / 2], atol=1e-15)
    # The authors' ramp (rows transform, window 8): linspace(0, 1, 4) over patch rows and width-frequencies.
    ramp = np.array([0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(frequency_weights("product", (8, 8), kind="rows").numpy(), np.outer(ramp, ramp), atol=1e-15)
    assert frequency_weights("none", (4, 4)) is None


def _paper_formula(x: np.ndarray, y: np.ndarray, columns=None, L: int = 16, stride: int = 4, lam: float = 9.0,
                   scale: float = 0.1) -> np.ndarray:
    """Section 3.1 of the paper, written out in numpy for (B, H, W) images: STFT
    F(u, v, m0, n0) = sum_{m,n} f(m, n) W(m - m0, n - n0) exp(-i [u (m - m0) + v (n - n0)]) with the
    L x L Hann window W(x, y) = (1 - cos(2 pi x / L)) (1 - cos(2 pi y / L)) / 4, u, v = 2 pi k / L,
    window positions every `stride` pixels (K = floor((M - L) / stride) + 1);
    L_freq = sum_j scale * (lam |P_o - P_i| + |A_o - A_i|) W_j with A = |F|, P = atan2(Im, Re), and
    W_j (the paper's "linearly increasing" weight) the radial frequency magnitude, normalised to 1
    at (Nyquist, Nyquist). ``columns``: keep only these frequencies v (default: all L)."""
    k = np.arange(L)
    hann = (1 - np.cos(2 * np.pi * k / L)) / 2
    window = np.outer(hann, hann)
    dft = np.exp(-2j * np.pi * np.outer(k, k) / L)  # dft[u, x] = exp(-i 2 pi u x / L)
    nyq = np.minimum(k, L - k)
    weight = np.sqrt(nyq[:, None] ** 2 + nyq[None, :] ** 2) / (np.sqrt(2) * L / 2)
    cols = list(range(L)) if columns is None else list(columns)

    real_bins = (2 * k % L == 0)[:, None] & (2 * k % L == 0)[None, :]  # (u, v) in {0, L/2}^2: F is real

    def stft(img: np.ndarray) -> np.ndarray:
        K = (img.shape[0] - L) // stride + 1
        J = (img.shape[1] - L) // stride + 1
        f = np.array([[dft @ (img[a * stride : a * stride + L, c * stride : c * stride + L] * window) @ dft.T
                       for c in range(J)] for a in range(K)])
        # Exactly real there; drop the summation's rounding so that atan2 gives 0 or pi, not -pi.
        f = np.where(real_bins, f.real + 0j, f)
        return f[..., cols]

    out = []
    for xo, xi in zip(x, y):
        fo, fi = stft(xo), stft(xi)
        dp = np.abs(np.arctan2(fo.imag, fo.real) - np.arctan2(fi.imag, fi.real))
        da = np.abs(np.abs(fo) - np.abs(fi))
        out.append((scale * (lam * dp + da) * weight[:, cols]).sum())
    return np.array(out)


def test_paper_text_preset_is_the_papers_formula_over_the_rfft2_half():
    g = np.random.default_rng(0)
    x, y = g.random((3, 28, 28)), g.random((3, 28, 28))
    got = LocalPhaseLoss.from_preset("paper-text", reduction="none")(
        torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]).numpy()
    half = _paper_formula(x, y, columns=range(9))
    np.testing.assert_allclose(got, half, rtol=1e-10)
    # The paper sums over all L x L frequencies. For real images the columns v = 9..15 are the
    # conjugates of v = 7..1 (same amplitude, opposite phase, same weight): the full sum counts
    # every column but v = 0 and v = 8 twice, so it lies between 1x and 2x the preset's value.
    full = _paper_formula(x, y)
    np.testing.assert_allclose(full, 2 * half - _paper_formula(x, y, columns=(0, 8)), rtol=1e-10)
    assert np.all(got < full) and np.all(full < 2 * got)


def test_paper_code_reproduces_author_frequency_term():
    ref = np.load(require_shared("reference", "author_loss", "paper_code_frequency_term.npz"))
    out = torch.from_numpy(ref["output_nchw"])
    tgt = torch.from_numpy(ref["target_nchw"])
    loss = LocalPhaseLoss.from_preset("paper-code", reduction="none")
    np.testing.assert_allclose(loss(out, tgt).numpy(), ref["frequency_term"], rtol=2e-6)
    phase = LocalPhaseLoss.from_preset("paper-code", reduction="none", amplitude_weight=0.0, phase_weight=1.0)
    amp = LocalPhaseLoss.from_preset("paper-code", reduction="none", amplitude_weight=1.0, phase_weight=0.0)
    np.testing.assert_allclose(phase(out, tgt).numpy(), ref["phase_sum"], rtol=2e-6)
    np.testing.assert_allclose(amp(out, tgt).numpy(), ref["amplitude_sum"], rtol=2e-6)
    # The reference SSIM values are TensorFlow's, our metric must agree.
    np.testing.assert_allclose(stftblur.ssim(out, tgt).numpy(), ref["tf_ssim"], atol=1e-5)


def test_identical_inputs_give_zero():
    x = torch.rand(2, 3, 32, 32)
    for preset in ("default", "paper-text", "paper-code"):
        assert LocalPhaseLoss.from_preset(preset)(x, x).item() == 0.0
    assert fourier_loss(x, x).item() == 0.0
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_reductions_and_aggregates():
    x, y = torch.rand(4, 2, 20, 20), torch.rand(4, 2, 20, 20)
    per = local_phase_loss(x, y, window_size=8, stride=4, reduction="none")
    assert per.shape == (4,)
    assert torch.allclose(local_phase_loss(x, y, window_size=8, stride=4, reduction="mean"), per.mean())
    assert torch.allclose(local_phase_loss(x, y, window_size=8, stride=4, reduction="sum"), per.sum())
    total = local_phase_loss(x, y, window_size=8, stride=4, reduction="none", aggregate="sum")
    count = 2 * 4 * 4 * 8 * 5
    assert torch.allclose(total / count, per, rtol=1e-5)


# 40x40 images, window 16, stride 4: 7 x 7 patches of 16 x 9 coefficients an image-channel.
_PER_IMAGE = 7 * 7 * 16 * 9


@pytest.mark.parametrize(
    "chunk_coeffs",
    [
        1,  # one image-channel a chunk, a transform a side
        16 * _PER_IMAGE,  # 8 image-channels a chunk (the last one partial), both sides in one transform
    ],
)
def test_batch_items_are_independent_and_chunking_is_invisible(monkeypatch, chunk_coeffs):
    x, y = torch.rand(5, 3, 40, 40, dtype=torch.float64), torch.rand(5, 3, 40, 40, dtype=torch.float64)
    x.requires_grad_()
    full = local_phase_loss(x, y, window_size=16, stride=4, reduction="none")
    (g_full,) = torch.autograd.grad(full.sum(), x)
    import stftblur.losses._fused as lp

    monkeypatch.setattr(lp, "_CPU_CHUNK_COEFFS", chunk_coeffs)
    chunked = local_phase_loss(x, y, window_size=16, stride=4, reduction="none")
    (g_chunk,) = torch.autograd.grad(chunked.sum(), x)
    assert torch.allclose(full, chunked, rtol=1e-12)
    assert torch.allclose(g_full, g_chunk, rtol=1e-12)
    single = torch.stack([local_phase_loss(x[i : i + 1], y[i : i + 1], window_size=16, stride=4) for i in range(5)])
    assert torch.allclose(full, single, rtol=1e-12)


OPTIONS = list(itertools.product(["wrapped", "raw", "cosine"], ["linear", "product", "none"], ["2d", "rows"]))


@pytest.mark.parametrize("distance,weighting,transform", OPTIONS)
def test_gradcheck_every_option(distance, weighting, transform):
    x = torch.rand(2, 2, 10, 11, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 2, 10, 11, dtype=torch.float64, requires_grad=True)

    def f(a, b):
        return local_phase_loss(a, b, window_size=6, stride=2, phase_distance=distance, frequency_weighting=weighting,
                                transform=transform, reduction="none", eps=1e-8)

    # fast_mode checks random projections of the Jacobian: the full matrix for 18 options
    # would take minutes on two cores; one full check per distance runs below.
    assert torch.autograd.gradcheck(f, (x, y), fast_mode=True)


@pytest.mark.parametrize("distance", ["wrapped", "raw", "cosine"])
def test_gradcheck_full_jacobian(distance):
    x = torch.rand(1, 1, 8, 9, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 8, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: local_phase_loss(a, b, window_size=4, stride=2, phase_distance=distance, eps=1e-8), (x, y)
    )


def _zero_patch_pair():
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    y = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    x[..., :6, :6] = 0.0  # a patch that is exactly zero in both images
    y[..., :6, :6] = 0.0
    return x.requires_grad_(), y


@pytest.mark.parametrize("window", ["hann", "sqrt-hann", None])
def test_gradcheck_windows_global_mode_and_zero_patches(window):
    x, y = _zero_patch_pair()
    assert torch.autograd.gradcheck(lambda a: local_phase_loss(a, y, window_size=6, stride=6, window=window), (x,))
    assert torch.autograd.gradcheck(lambda a: fourier_loss(a, y), (x,), fast_mode=True)


@pytest.mark.parametrize("options", [dict(normalized=False), dict(frequency_weighting="none")])
def test_gradcheck_zero_patches_study_variants(options):
    """The loss-design study's variants (docs/loss-design.md) are differentiable with finite
    gradients where a patch is zero in both images, and gradcheck passes through it."""
    x, y = _zero_patch_pair()
    (g,) = torch.autograd.grad(local_phase_loss(x, y, window_size=6, stride=6, **options), x)
    assert torch.isfinite(g).all() and torch.equal(g[..., :6, :6], torch.zeros_like(g[..., :6, :6]))
    assert torch.autograd.gradcheck(lambda a: local_phase_loss(a, y, window_size=6, stride=6, **options), (x,))


@pytest.mark.parametrize("window", ["hann", None])
def test_gradcheck_zero_patches_cosine(window):
    # Like "wrapped", "cosine" is 0 wherever either coefficient is 0: continuous at a zero patch.
    x, y = _zero_patch_pair()
    assert torch.autograd.gradcheck(lambda a: local_phase_loss(a, y, window_size=6, stride=6, window=window, phase_distance="cosine"), (x,))


def test_raw_distance_is_discontinuous_at_zero_patches():
    # The raw distance compares atan2(0, 0) = 0 with the phase of any perturbation of a zero
    # patch, an angle that does not shrink with the perturbation: no derivative exists there, so
    # gradcheck cannot pass; the backward gives the capped gradient, exactly 0 on the patch.
    x, y = _zero_patch_pair()

    def f(a):
        return local_phase_loss(a, y, window_size=6, stride=6, window=None, phase_distance="raw", phase_weight=1.0, amplitude_weight=0.0)

    (grad,) = torch.autograd.grad(f(x), x)
    assert torch.all(grad[..., :6, :6] == 0) and torch.all(grad[..., 6:, 6:] != 0)
    e = torch.zeros_like(x)
    e[..., 1, 2] = 1.0
    with torch.no_grad():
        jumps = [abs((f(x + h * e) - f(x)).item()) for h in (1e-3, 1e-9)]
    assert min(jumps) > 1e-3  # a jump of the same size at any h, not O(h)
    assert abs(jumps[0] - jumps[1]) < 1e-6 * jumps[0]


def test_gradcheck_presets():
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    for preset in ("paper-text", "paper-code"):
        loss = LocalPhaseLoss.from_preset(preset, window_size=8)
        assert torch.autograd.gradcheck(lambda a: loss(a, y), (x,), fast_mode=True), preset


@pytest.mark.parametrize("distance", ["wrapped", "raw", "cosine"])
def test_finite_on_zero_images(distance):
    # Binary MNIST is mostly zeros: all-zero input, target, or both must give finite values
    # and gradients (the phase is undefined at zero amplitude).
    z = torch.zeros(2, 1, 28, 28)
    d = (torch.rand(2, 1, 28, 28) > 0.7).float()
    for a, b in ((z, z), (z, d), (d, z)):
        a = a.clone().requires_grad_()
        b = b.clone().requires_grad_()
        for preset in ("default", "paper-code"):
            loss = LocalPhaseLoss.from_preset(preset, phase_distance=distance)(a, b)
            ga, gb = torch.autograd.grad(loss, (a, b))
            assert torch.isfinite(loss) and torch.isfinite(ga).all() and torch.isfinite(gb).all()
    zero = torch.zeros(1, 1, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(local_phase_loss(zero, torch.zeros(1, 1, 16, 16)), zero)
    assert torch.count_nonzero(g) == 0


def test_phase_gradient_is_capped_near_zero_amplitude():
    # An output coefficient of tiny amplitude against a non-zero target: the exact phase
    # gradient grows like 1/|F|; the safe one is bounded by lambda * W / eps per coefficient.
    y = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    x = (1e-9 * torch.rand(1, 1, 16, 16, dtype=torch.float64)).requires_grad_()
    (g,) = torch.autograd.grad(local_phase_loss(x, y, window_size=16, stride=16, amplitude_weight=0.0, eps=1e-4, aggregate="sum"), x)
    assert torch.isfinite(g).all()
    assert g.abs().max() < 3.0 / 1e-4 * 16 * 16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_and_half_inputs(dtype):
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    y = torch.rand(2, 1, 28, 28)
    ref = local_phase_loss(x.to(dtype).float(), y.to(dtype).float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = local_phase_loss(x.to(dtype), y.to(dtype))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.allclose(loss, ref, rtol=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_float64_is_kept():
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    assert local_phase_loss(x, x * 0.5).dtype == torch.float64


def test_module_config_roundtrip_and_repr():
    loss = LocalPhaseLoss(window_size=8, stride=2, phase_weight=9.0)
    assert LocalPhaseLoss(**loss.config).config == loss.config
    assert "phase_weight=9.0" in repr(loss)
    assert isinstance(FourierLoss(), torch.nn.Module) and isinstance(SSIMLoss(), torch.nn.Module)


def test_fourier_loss_is_global_local_phase_loss():
    x, y = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    assert torch.allclose(fourier_loss(x, y), local_phase_loss(x, y, window_size=None, window=None, phase_weight=1.0))


def test_penalises_blur_more_than_l1_does():
    # Blur vs. a sharp image: the local-phase loss ranks a blurred copy as worse than a copy
    # with the same L1 error spread as noise; L1 can't tell them apart by construction.
    from skimage import data

    img = torch.from_numpy(data.camera()[128:256, 128:256] / 255.0).float()[None, None]
    import kornia

    blurred = kornia.filters.gaussian_blur2d(img, (9, 9), (2.0, 2.0), border_type="reflect")
    l1 = (blurred - img).abs().mean()
    noise = torch.sign(torch.randn_like(img)) * l1
    noisy = img + noise
    assert torch.allclose((noisy - img).abs().mean(), l1)
    assert local_phase_loss(blurred, img) > local_phase_loss(noisy, img)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(phase_distance="l2"), ValueError, "phase_distance"),
        (dict(frequency_weighting="quadratic"), ValueError, "frequency_weighting"),
        (dict(frequency_weighting=torch.ones(3, 3)), ValueError, "frequency_weighting"),
        (dict(window="hamming"), ValueError, "window"),
        (dict(window_size=0), ValueError, "window_size"),
        (dict(stride=-1), ValueError, "stride"),
        (dict(phase_weight=-1.0), ValueError, "phase_weight"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(aggregate="max"), ValueError, "aggregate"),
        (dict(transform="3d"), ValueError, "transform"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    x = torch.rand(1, 1, 32, 32)
    with pytest.raises(exc, match=match):
        local_phase_loss(x, x, **kwargs)


@pytest.mark.parametrize(
    "a,b,exc,match",
    [
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 31), ValueError, "same shape"),
        (torch.rand(1, 32, 32), torch.rand(1, 32, 32), ValueError, "input must have shape"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), ValueError, "input of spatial size"),
        (torch.ones(1, 1, 32, 32, dtype=torch.int64), torch.ones(1, 1, 32, 32), TypeError, "input must be a floating"),
        (torch.rand(1, 1, 32, 32), torch.full((1, 1, 32, 32), float("inf")), ValueError, "target contains NaN"),
        (torch.full((1, 1, 32, 32), float("nan")), torch.rand(1, 1, 32, 32), ValueError, "input contains NaN"),
        ([[0.0]], torch.rand(1, 1, 32, 32), TypeError, "input must be a torch.Tensor"),
    ],
)
def test_bad_input(a, b, exc, match):
    with pytest.raises(exc, match=match):
        local_phase_loss(a, b)
    with pytest.raises(exc):
        LocalPhaseLoss()(a, b)


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset must be one of"):
        LocalPhaseLoss.from_preset("paper")


@cuda
@pytest.mark.parametrize("preset", ["default", "paper-code"])
def test_cuda_matches_cpu(preset):
    x, y = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    loss = LocalPhaseLoss.from_preset(preset)
    xc = x.cuda().requires_grad_()
    xs = x.clone().requires_grad_()
    lc, ls = loss(xc, y.cuda()), loss(xs, y)
    lc.backward()
    ls.backward()
    assert torch.allclose(lc.cpu(), ls, rtol=1e-4)
    assert torch.allclose(xc.grad.cpu(), xs.grad, rtol=1e-3, atol=1e-6)


def test_terms_split_the_loss_into_amplitude_and_phase():
    # -x has every coefficient's phase turned by pi and the same amplitudes: the amplitude part is
    # 0 and the phase part is lambda * pi * mean(W), W the hand-derived linear weights of a 16x16
    # window (radial frequency over sqrt(2), each axis normalised to its largest |f|).
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64) + 0.1
    loss = LocalPhaseLoss()
    t = loss.terms(x, -x)
    fu = np.abs(np.fft.fftfreq(16)) / 0.5
    fv = np.fft.rfftfreq(16) / 0.5
    w = np.sqrt(fu[:, None] ** 2 + fv[None, :] ** 2) / np.sqrt(2)
    assert t["amplitude"].item() == pytest.approx(0.0, abs=1e-12)
    assert t["phase"].item() == pytest.approx(3.0 * np.pi * w.mean(), rel=1e-9)
    y = torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64)
    parts = loss.terms(x, y)
    assert (parts["amplitude"] + parts["phase"]).item() == pytest.approx(loss(x, y).item(), rel=1e-12)
    x.requires_grad_()
    loss.terms(x, y)["phase"].backward()
    assert torch.isfinite(x.grad).all()
