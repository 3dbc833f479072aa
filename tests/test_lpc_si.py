"""LPC-SI against the reference values, a direct float64 transcription, and its conventions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.measure import blur_effect as skimage_blur_effect

from stftblur import LPCSI, lpc_si
from stftblur.metrics import blur_effect
from stftblur.metrics import _lpc_native
from stftblur.metrics.lpc_si import default_border

from .conftest import cuda, require_shared


# ---------------------------------------------------------------------------------------------
# A direct transcription of the definition (Hassen et al. 2013, reference lpc_si.m), float64,
# one orientation and one scale at a time: the oracle for sizes the fixture does not cover.
# ---------------------------------------------------------------------------------------------


def _grid(n: int) -> np.ndarray:
    if n % 2:
        return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
    return np.arange(-n / 2, n / 2) / n


def _direct_lpc_si(im, scales=(1, 1.5, 2), w=(1, -3, 2), C=2.0, beta_k=1e-4, n_o=8, border=None):
    rows, cols = im.shape
    b = int(math.floor(min(rows, cols) / 16 + 0.5)) if border is None else border
    x, y = np.meshgrid(_grid(cols), _grid(rows))
    radius = np.fft.ifftshift(np.sqrt(x**2 + y**2))
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    lowpass = 1.0 / (1.0 + (radius / 0.45) ** 30)
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(im)
    coherence_sum = np.zeros((rows, cols))
    energy_sum = np.zeros((rows, cols))
    for o in range(n_o):
        angle = o * np.pi / n_o
        ds = np.sin(theta) * np.cos(angle) - np.cos(theta) * np.sin(angle)
        dc = np.cos(theta) * np.cos(angle) + np.sin(theta) * np.sin(angle)
        spread = np.exp(-np.arctan2(ds, dc) ** 2 / (2 * (np.pi / n_o / 1.5) ** 2))
        phase = np.zeros((rows, cols))
        for s, (scale, weight) in enumerate(zip(scales, w)):
            log_gabor = np.exp(-np.log(radius * 4 * scale) ** 2 / (2 * np.log(0.75) ** 2)) * lowpass
            log_gabor[0, 0] = 0.0
            response = np.fft.ifft2(spectrum * log_gabor * spread)
            phase += weight * np.angle(response)
            if s == 0:
                e = np.abs(response)
                inner = e[b : rows - b, b : cols - b]
                energy = np.maximum(0.0, e - (inner.mean() + 2 * inner.std(ddof=1)))
        coherence_sum += np.maximum(0.0, np.cos(phase)) * energy
        energy_sum += energy
    lpc = coherence_sum / (energy_sum + C)
    ranked = np.sort(lpc[b : rows - b, b : cols - b].ravel())[::-1]
    u = np.exp(-(np.arange(ranked.size) / (ranked.size - 1)) / beta_k)
    return float((ranked * u).sum() / u.sum())


def _patch(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A natural 0..255 patch of the camera man, lightly blurred by a random amount."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    cam = data.camera().astype(np.float64)
    y0, x0 = rng.integers(0, 512 - h), rng.integers(0, 512 - w)
    return gaussian(cam[y0 : y0 + h, x0 : x0 + w], sigma=rng.uniform(0.3, 1.5), preserve_range=True)


def _t(a: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)[None, None]


@pytest.fixture(params=["compiled", "reference"])
def path(request):
    """Run a test on the compiled kernels (where a C compiler exists) and on the PyTorch path."""
    if request.param == "compiled" and not _lpc_native.LIBRARY.available():
        pytest.skip(f"compiled LPC-SI kernels unavailable: {_lpc_native.LIBRARY.status()}")
    _lpc_native.LIBRARY.enabled = None if request.param == "compiled" else False
    yield request.param
    _lpc_native.LIBRARY.enabled = None


# ---------------------------------------------------------------------------------------------


def test_reference_values_float64_and_float32(path):
    """Every fixture image, images of the same size batched together (which is checked too)."""
    expected = json.loads(require_shared("reference", "lpc_si", "public_expected.json").read_text())
    images = np.load(require_shared("reference", "lpc_si", "public_images.npz"))
    assert set(expected) == set(images.files)
    by_size: dict = {}
    for key in expected:
        by_size.setdefault(images[key].shape, []).append(key)
    for keys in by_size.values():
        x = torch.from_numpy(np.stack([images[k] for k in keys]))[:, None]
        got64 = lpc_si(x, data_range=255.0)
        got32 = lpc_si(x.float(), data_range=255.0)
        assert got64.dtype == torch.float64 and got32.dtype == torch.float32
        for key, v64, v32 in zip(keys, got64.tolist(), got32.tolist()):
            assert abs(v64 - expected[key]) < 1e-6, key
            assert abs(v32 - expected[key]) < 1e-3, key
    assert len(by_size[(512, 512)]) == 4  # the batched path is exercised


@pytest.mark.parametrize("size", [(37, 53), (33, 64), (64, 33), (8, 9), (5, 7), (40, 40)])
def test_matches_direct_definition_on_odd_and_small_sizes(size, path):
    im = _patch(*size, seed=sum(size))
    got = lpc_si(_t(im), data_range=255.0).item()
    assert got == pytest.approx(_direct_lpc_si(im), abs=1e-10)


def test_matches_direct_definition_with_other_parameters(path):
    im = _patch(45, 50, seed=3)
    kwargs = dict(scales=(1, 2, 4), C=0.5, beta_k=2e-3, border=4)
    got = lpc_si(_t(im), data_range=255.0, scale_weights=(1, -3, 2), n_orientations=6, **kwargs).item()
    assert got == pytest.approx(_direct_lpc_si(im, w=(1, -3, 2), n_o=6, **kwargs), abs=1e-10)
    # Non-integer weights take the angle path.
    got = lpc_si(_t(im), data_range=255.0, scale_weights=(0.5, -1.25, 0.75), **kwargs).item()
    assert got == pytest.approx(_direct_lpc_si(im, w=(0.5, -1.25, 0.75), **kwargs), abs=1e-10)
    # beta_k large enough that every value of the map counts: the full sort path.
    got = lpc_si(_t(im), data_range=255.0, beta_k=1.0).item()
    assert got == pytest.approx(_direct_lpc_si(im, beta_k=1.0), abs=1e-10)


def test_index_is_the_weighted_mean_of_the_sorted_map():
    im = _patch(96, 80, seed=7)
    si, lpc = lpc_si(_t(im), data_range=255.0, return_map=True)
    assert lpc.shape == (1, 96, 80)
    assert float(lpc.min()) >= 0.0 and float(lpc.max()) <= 1.0
    b = default_border(96, 80)
    ranked = np.sort(lpc[0, b:-b, b:-b].numpy().ravel())[::-1]
    u = np.exp(-(np.arange(ranked.size) / (ranked.size - 1)) / 1e-4)
    assert si.item() == pytest.approx((ranked * u).sum() / u.sum(), abs=1e-13)


def test_float32_agrees_with_float64_and_half_is_computed_in_float32():
    x = _t(_patch(64, 64, seed=1) / 255.0)
    v64 = lpc_si(x)
    v32 = lpc_si(x.float())
    assert abs(v32.item() - v64.item()) < 1e-5
    v16 = lpc_si(x.half())
    assert v16.dtype == torch.float32 and abs(v16.item() - v64.item()) < 1e-2


def test_compiled_and_reference_paths_agree():
    """The compiled kernels against the PyTorch path: batches, odd sizes, RGB, other settings."""
    if not _lpc_native.LIBRARY.available():
        pytest.skip(f"compiled LPC-SI kernels unavailable: {_lpc_native.LIBRARY.status()}")
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.from_numpy(np.stack([_patch(96, 80, seed=k) for k in range(3)]))[:, None] / 255.0, {}),
        (torch.rand(2, 3, 41, 57, generator=g, dtype=torch.float64), {"border": 0}),
        (torch.from_numpy(_patch(64, 70, seed=5))[None, None] / 255.0, {"n_orientations": 5, "scales": (1, 2, 3), "C": 0.3}),
        (torch.from_numpy(_patch(48, 48, seed=6))[None, None] / 255.0, {"scale_weights": (2, -1, -1)}),
    ]
    for x, kwargs in cases:
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
            results = []
            for enabled in (None, False):
                _lpc_native.LIBRARY.enabled = enabled
                try:
                    results.append(lpc_si(x.to(dtype), return_map=True, **kwargs))
                finally:
                    _lpc_native.LIBRARY.enabled = None
            (si_c, map_c), (si_r, map_r) = results
            assert si_c.dtype == si_r.dtype == dtype
            assert torch.allclose(map_c, map_r, rtol=0, atol=tol), (kwargs, dtype, float((map_c - map_r).abs().max()))
            assert torch.allclose(si_c, si_r, rtol=0, atol=tol)


def test_flat_images_give_zero():
    for shape in [(2, 1, 48, 48), (1, 3, 17, 23)]:
        for dtype in (torch.float32, torch.float64):
            si, lpc = lpc_si(torch.full(shape, 0.5, dtype=dtype), return_map=True)
            assert torch.equal(si, torch.zeros(shape[0], dtype=dtype))
            assert not lpc.any()


def test_single_bright_pixel_follows_from_the_definition(path):
    # One pixel of value a at p (inside the border) on 0. Each filter response is
    # r(x) = a / (H W) * sum_k G(k) exp(2 pi i k . (x - p)) with a real G >= 0, so at p every phase is
    # 0 (full coherence, cos = 1) and |r| is largest: the map peaks at p, where it is E / (E + C)
    # with E proportional to a (the energy threshold, mean + 2 std, scales with a too). Doubling a
    # turns a peak v into 2v / (1 + v). And r(p - d) = conj(r(p + d)): the map is point-symmetric
    # about p (circularly, as the FFT is).
    H, W, p = 40, 47, (17, 29)
    assert default_border(H, W) < min(p[0], p[1], H - 1 - p[0], W - 1 - p[1])

    def run(a: float):
        x = torch.zeros(1, 1, H, W, dtype=torch.float64)
        x[0, 0, p[0], p[1]] = a
        si, lpc = lpc_si(x, data_range=255.0, return_map=True)
        return si.item(), lpc[0].numpy()

    si, lpc = run(255.0)
    _, lpc_half = run(127.5)
    assert np.unravel_index(lpc.argmax(), lpc.shape) == p
    v, v_half = lpc[p], lpc_half[p]
    assert 0.0 < v_half < v < 1.0
    assert v == pytest.approx(2 * v_half / (1 + v_half), abs=1e-12)
    centred = np.roll(lpc, (-p[0], -p[1]), axis=(0, 1))
    np.testing.assert_allclose(centred, np.roll(centred[::-1, ::-1], (1, 1), axis=(0, 1)), rtol=0, atol=1e-12)
    # The index weights the sorted map by exp(-rank / (K - 1) / 1e-4): the peak's weight u_1 = 1
    # dominates, so the index lies between u_1 / sum(u) times the peak and the peak.
    b = default_border(H, W)
    k = (H - 2 * b) * (W - 2 * b)
    u = np.exp(-(np.arange(k) / (k - 1)) / 1e-4)
    assert v / u.sum() <= si <= v


def test_batch_equals_single_images():
    x = torch.from_numpy(np.stack([_patch(40, 52, seed=s) for s in range(3)]))[:, None] / 255.0
    together = lpc_si(x.float())
    alone = torch.cat([lpc_si(x[i : i + 1].float()) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)
    assert len(set(together.tolist())) == 3


@pytest.mark.parametrize("budget", [1, 3 * 40 * 52 * 16 * 3, 3 * 40 * 52 * 16 * 8 * 2])
def test_chunking_does_not_change_the_result(monkeypatch, budget, path):
    """Orientation chunks (1 or 3 orientations) and image chunks (2 images) give the same map."""
    import importlib

    module = importlib.import_module("stftblur.metrics._lpc_map")
    x = torch.from_numpy(np.stack([_patch(40, 52, seed=s) for s in range(3)]))[:, None] / 255.0
    whole, whole_map = lpc_si(x, return_map=True)
    monkeypatch.setattr(module, "_CHUNK_BYTES_CPU", budget)
    chunked, chunked_map = lpc_si(x, return_map=True)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked_map, whole_map, rtol=0, atol=1e-12)


def test_colour_is_bt601_luma_and_data_range_scales():
    rgb = data.astronaut()[100:164, 200:270].astype(np.float64)  # (64, 70, 3)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    expected = lpc_si(_t(luma), data_range=255.0)
    torch.testing.assert_close(lpc_si(x, data_range=255.0), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(lpc_si(x / 255.0), expected, rtol=0, atol=1e-12)


def test_sharper_is_higher():
    cam = data.camera()[100:228, 100:228].astype(np.float64)
    from skimage.filters import gaussian

    values = [lpc_si(_t(gaussian(cam, s, preserve_range=True)), data_range=255.0).item() for s in (0.01, 1, 2, 4)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: lpc_si(np.zeros((1, 1, 8, 8))), TypeError, "images must be a torch.Tensor"),
        (lambda: lpc_si(torch.zeros(8, 8)), ValueError, r"images must have shape \(B, C, H, W\)"),
        (lambda: lpc_si(torch.zeros(1, 2, 8, 8)), ValueError, "images must have 1 .* or 3 .* channels"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8, dtype=torch.uint8)), TypeError, "images must be a floating"),
        (lambda: lpc_si(torch.full((1, 1, 8, 8), float("nan"))), ValueError, "images contains NaN"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), data_range=0), ValueError, "data_range"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), C=-1.0), ValueError, "C must be"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), beta_k=0), ValueError, "beta_k"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), n_orientations=0), ValueError, "n_orientations"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), scales=(1, 2)), ValueError, "scale_weights must have one weight per scale"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), scales=(1, 0, 2)), ValueError, "scales must all be > 0"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), scales="abc"), TypeError, "scales must be a non-empty sequence"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), border=4), ValueError, "border=4 leaves no pixel"),
        (lambda: lpc_si(torch.zeros(1, 1, 8, 8), border=-1), ValueError, "border must be None or an int"),
    ],
)
def test_bad_input_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_metric_object_accumulates_over_batches():
    a = torch.from_numpy(np.stack([_patch(40, 40, seed=s) for s in range(2)]))[:, None].float() / 255
    b = torch.from_numpy(_patch(30, 50, seed=9))[None, None].float() / 255
    metric = LPCSI(border=2)
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()
    metric.update(a)
    metric.update(b)
    expected = torch.cat([lpc_si(a, border=2), lpc_si(b, border=2)]).double()
    assert metric.count == 3
    torch.testing.assert_close(metric.values, expected)
    torch.testing.assert_close(metric.compute(), expected.mean())
    metric.reset()
    assert metric.count == 0 and metric.values.numel() == 0
    with pytest.raises(TypeError, match="unexpected keyword"):
        LPCSI(betak=1e-4)
    with pytest.raises(ValueError, match="beta_k"):
        LPCSI(beta_k=-1.0)


def test_blur_effect_wraps_scikit_image():
    gray = data.camera()[:64, :80].astype(np.float64) / 255.0
    rgb = data.astronaut()[:48, :40].astype(np.float64) / 255.0
    got = blur_effect(torch.from_numpy(gray)[None, None])
    assert got.item() == pytest.approx(skimage_blur_effect(gray), abs=1e-12)
    got = blur_effect(torch.from_numpy(rgb).permute(2, 0, 1)[None] * 2.0, data_range=2.0)
    assert got.item() == pytest.approx(skimage_blur_effect(rgb, channel_axis=-1), abs=1e-12)


@cuda
def test_cuda_matches_cpu():
    x = torch.from_numpy(np.stack([_patch(61, 64, seed=s) for s in range(2)]))[:, None] / 255.0
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        cpu = lpc_si(x.to(dtype))
        gpu, lpc = lpc_si(x.to("cuda", dtype), return_map=True)
        assert gpu.device.type == "cuda" and lpc.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=tol)
    flat = lpc_si(torch.full((1, 3, 20, 20), 0.3, device="cuda"))
    assert flat.item() == 0.0


def test_compiled_kernels_do_not_depend_on_the_thread_count():
    """The kernels split planes and rows over threads; each output row has one writer, so the
    sums are the same whatever the thread count (FFTs aside, which may round differently)."""
    if not _lpc_native.LIBRARY.available():
        pytest.skip(f"compiled LPC-SI kernels unavailable: {_lpc_native.LIBRARY.status()}")
    g = torch.Generator().manual_seed(0)
    resp = torch.randn(3, 2, 4, 160, 150, dtype=torch.complex64, generator=g)
    weights = _lpc_native.integer_weights((1, -3, 2))
    threads = torch.get_num_threads()
    out = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            num, den = torch.zeros(2, 160, 150, dtype=torch.float64), torch.full((2, 160, 150), 2.0, dtype=torch.float64)
            _lpc_native.accumulate(resp, 5, weights, num, den)
            out.append((num, den))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert (out[0][1] > 2.0).float().mean() > 0.05  # pixels were selected


def test_compiled_filter_product_equals_the_complex_product():
    """The compiled product reads the real filters; the values equal complex x complex exactly."""
    if not _lpc_native.LIBRARY.available():
        pytest.skip(f"compiled LPC-SI kernels unavailable: {_lpc_native.LIBRARY.status()}")
    from stftblur.metrics._lpc_bank import _filter_bank

    for dtype in (torch.float32, torch.float64):
        gains = _filter_bank(40, 33, (1.0, 1.5, 2.0), 8, dtype, torch.device("cpu"), real=True)
        bank = _filter_bank(40, 33, (1.0, 1.5, 2.0), 8, dtype, torch.device("cpu"))
        assert not gains.is_complex() and torch.equal(gains, bank.real)
        spectrum = torch.fft.fft2(torch.rand(3, 40, 33, dtype=dtype, generator=torch.Generator().manual_seed(1)))
        got = _lpc_native.product(spectrum, gains, 3, 4)
        assert torch.equal(got, spectrum[None, :, None] * bank[:, None, 3:7])


def test_compiled_kernels_without_openmp(monkeypatch, tmp_path):
    """Where -fopenmp does not build, the kernels are built without it and run on the calling
    thread (the accumulation split over Python threads), with the same results."""
    from stftblur import _native

    build_with = _native._build_with
    monkeypatch.setattr(_native, "_build_with",
                        lambda name, source, extra: (None, "no OpenMP here") if extra else build_with(name, source, extra))
    monkeypatch.setenv("STFTBLUR_CACHE", str(tmp_path))
    lib = _native.NativeLibrary("lpc_si", _lpc_native._SOURCE, _lpc_native._declare, openmp=True)
    monkeypatch.setattr(_lpc_native, "LIBRARY", lib)
    if not lib.available():
        pytest.skip(f"no C compiler: {lib.status()}")
    assert lib.library().lpc_openmp() == 0 and "OpenMP" not in lib.status()
    x = torch.from_numpy(np.stack([_patch(160, 150, seed=k) for k in range(2)]))[:, None].float() / 255.0
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        compiled = lpc_si(x, return_map=True)
        lib.enabled = False
        reference = lpc_si(x, return_map=True)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(compiled[1], reference[1], rtol=0, atol=1e-4)
    assert torch.allclose(compiled[0], reference[0], rtol=0, atol=1e-5)
