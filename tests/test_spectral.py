"""Radial power spectrum and spectral deficit against hand-derived spectra and a numpy transcription."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stftblur.metrics import (
    RadialPowerSpectrum,
    RadialSpectrum,
    SpectralDeficit,
    plot_spectra,
    radial_power_spectrum,
    spectral_deficit,
)

from .conftest import cuda


def _cosine(h: int, w: int, cycles: int, axis: int, amplitude: float = 0.7, dtype=torch.float64) -> torch.Tensor:
    """amplitude * cos(2 pi cycles n / size) along one axis (constant along the other), (1, 1, H, W)."""
    n = torch.arange(h if axis == 0 else w, dtype=torch.float64)
    wave = amplitude * torch.cos(2 * math.pi * cycles * n / n.numel()) + 0.3  # an offset: mean removal
    img = wave[:, None].expand(h, w) if axis == 0 else wave[None, :].expand(h, w)
    return img.to(dtype)[None, None].clone()


def _numpy_spectrum(images: np.ndarray, window: str) -> np.ndarray:
    """Direct float64 transcription of the definition: mean radial power per integer-radius bin (H = W = N)."""
    _, _, n, _ = images.shape
    if window == "hann":
        h = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
        w2 = np.outer(h, h)
    else:
        w2 = np.ones((n, n))
    powers = []
    for img in images.reshape(-1, n, n):
        m = (img * w2).sum() / w2.sum()
        powers.append(np.abs(np.fft.fft2((img - m) * w2)) ** 2 / (w2**2).sum())
    p = np.mean(powers, axis=0)
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2)
    k = np.floor(f * n + 0.5).astype(int)
    return np.array([p[k == j].mean() for j in range(1, n // 2 + 1)])


def _flat_spectrum_images(b: int, n: int, seed: int = 0) -> torch.Tensor:
    """Real images whose DFT has magnitude exactly 1 at every frequency but DC (random phases)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.fft.fft2(torch.rand(b, 1, n, n, dtype=torch.float64, generator=g))
    x = x / x.abs()
    x[..., 0, 0] = 0
    return torch.fft.ifft2(x).real


def _fourier_gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Circular Gaussian blur: multiply the DFT by H(f) = exp(-2 pi^2 sigma^2 |f|^2)."""
    fy = torch.fft.fftfreq(x.shape[-2], dtype=torch.float64)
    fx = torch.fft.fftfreq(x.shape[-1], dtype=torch.float64)
    h = torch.exp(-2 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return torch.fft.ifft2(torch.fft.fft2(x) * h.to(x.device)).real.to(x.dtype)


def _bin_mean_of_gain(n: int, sigma: float) -> np.ndarray:
    """|H(f)|^2 = exp(-4 pi^2 sigma^2 |f|^2) averaged over the DFT frequencies whose radius rounds to k/N."""
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2)
    k = np.floor(f * n + 0.5).astype(int)
    gain = np.exp(-4 * np.pi**2 * sigma**2 * f**2)
    return np.array([gain[k == j].mean() for j in range(1, n // 2 + 1)])


# ---------------------------------------------------------------------------------------------
# A sinusoid's spectrum, derived by hand
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
def test_sinusoid_without_window_lands_in_its_bin(axis):
    # A cos(2 pi k n / N) has DFT A N^2 / 2 at (0, +-k): P = (A N^2 / 2)^2 / N^2 = A^2 N^2 / 4 at two
    # frequencies of radius k / N, i.e. in bin k - 1; total power / N^2 = A^2 / 2 (Parseval).
    n, k, a = 32, 6, 0.7
    s = radial_power_spectrum(_cosine(n, n, k, axis, a), window=None)
    total = (s.power * s.counts).numpy() / n**2
    expected = np.zeros(n // 2)
    expected[k - 1] = a * a / 2
    np.testing.assert_allclose(total, expected, atol=1e-12)
    assert s.freqs[k - 1].item() == pytest.approx(k / n)


def test_sinusoid_with_hann_window_splits_two_thirds_one_sixth():
    # The periodic Hann window's DFT per axis is (N/2 at 0, -N/4 at +-1), squared (1/4, 1/16, 1/16).
    # The 2-D windowed cosine at (0, k) spreads over (0 / +-1, k / k +- 1) with relative power
    # (1/4 or 1/16) x (1/4 or 1/16) out of (3/8)^2: radius k -> k - 1 (1/16 + 2/64), k - 1
    # (1/64 + 2/256), k + 1 (the same), i.e. 2/3, 1/6, 1/6 of A^2 / 2 (sqrt(1 + k^2) rounds to k).
    n, k, a = 32, 6, 0.7
    s = radial_power_spectrum(_cosine(n, n, k, 1, a), window="hann")
    total = (s.power * s.counts).numpy() / n**2
    expected = np.zeros(n // 2)
    expected[[k - 2, k - 1, k]] = np.array([1 / 6, 2 / 3, 1 / 6]) * a * a / 2
    np.testing.assert_allclose(total, expected, atol=1e-12)


@pytest.mark.parametrize("axis,cycles,bin_", [(1, 10, 5), (0, 6, 5), (0, 3, 2)])
def test_non_square_frequencies_in_cycles_per_pixel(axis, cycles, bin_):
    # 24 x 40: default 12 bins of width 1/24. 10 cycles across 40 columns = 0.25 cycles/pixel =
    # 6/24 (bin 5); 6 cycles across 24 rows = 0.25 as well (bin 5); 3 across 24 rows = 0.125 (bin 2).
    s = radial_power_spectrum(_cosine(24, 40, cycles, axis), window=None)
    assert s.n_bins == 12 and s.freqs[bin_].item() == pytest.approx(cycles / (24 if axis == 0 else 40))
    total = s.power * s.counts
    assert int(total.argmax()) == bin_
    assert total[bin_].item() / (24 * 40) == pytest.approx(0.7**2 / 2, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The definition, against a numpy transcription, and its conventions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["hann", "none"])
def test_matches_numpy_transcription(window):
    rng = np.random.default_rng(3)
    x = rng.random((3, 2, 20, 20)) ** 2
    s = radial_power_spectrum(torch.from_numpy(x), window=window)
    np.testing.assert_allclose(s.power.numpy(), _numpy_spectrum(x, window), rtol=1e-12)
    f = np.sqrt(np.fft.fftfreq(20)[:, None] ** 2 + np.fft.fftfreq(20)[None, :] ** 2)
    k = np.floor(f * 20 + 0.5).astype(int)
    assert s.counts.tolist() == [int((k == j).sum()) for j in range(1, 11)]
    np.testing.assert_allclose(s.edges.numpy(), np.r_[0, (np.arange(1, 11) + 0.5) / 20])


@pytest.mark.parametrize("window", ["hann", "none"])
@pytest.mark.parametrize("size", [32, 64])
def test_white_noise_power_is_its_variance_at_any_size(window, size):
    # Uniform noise on [0, 1) has variance 1/12; the normalisation by sum(w^2) makes its expected
    # power 1/12 at every frequency, whatever the size and the window.
    x = torch.rand(64, 1, size, size, dtype=torch.float64)
    s = radial_power_spectrum(x, window=window)
    assert s.band_power((0.05, 0.5)) == pytest.approx(1 / 12, rel=0.03)


def test_channels_are_averaged_and_gray_copies_change_nothing():
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    y = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    gray = radial_power_spectrum(x).power
    torch.testing.assert_close(radial_power_spectrum(x.expand(-1, 3, -1, -1)).power, gray, rtol=1e-12, atol=0)
    both = radial_power_spectrum(torch.cat([x, y], 1)).power
    torch.testing.assert_close(both, (gray + radial_power_spectrum(y).power) / 2, rtol=1e-12, atol=0)


def test_mean_and_flat_images_have_no_power():
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    for window in ("hann", "none"):
        torch.testing.assert_close(radial_power_spectrum(x + 5.0, window=window).power, radial_power_spectrum(x, window=window).power)
        assert torch.all(radial_power_spectrum(torch.full((1, 1, 12, 12), 0.4), window=window).power.abs() < 1e-12)


def test_batches_and_counts_do_not_matter():
    x = torch.rand(10, 1, 16, 16, dtype=torch.float64)
    acc = RadialSpectrum()
    for chunk in (x[:3], x[3:4], x[4:]):
        acc.update(chunk)
    torch.testing.assert_close(acc.compute().power, radial_power_spectrum(x).power, rtol=1e-12, atol=0)
    assert acc.count == 10
    assert radial_power_spectrum([x[:3], x[3:]]).n_images == 10
    assert radial_power_spectrum([(x, torch.zeros(10))]).n_images == 10  # (images, labels) batches
    acc.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        acc.compute()


def test_more_bins_than_frequencies_gives_nan_for_empty_bins():
    s = radial_power_spectrum(torch.rand(2, 1, 8, 8, dtype=torch.float64), n_bins=16)
    assert s.counts[0] == 0 and math.isnan(s.power[0].item())
    # every non-zero frequency of radius below 0.5 + delta / 2 = 0.515625 is counted once:
    # a^2 + b^2 <= 17 for a, b in -4..3, by hand 3 + 10 + 14 + 16 + 8 - 1 (DC) = 50
    f = np.sqrt(np.fft.fftfreq(8)[:, None] ** 2 + np.fft.fftfreq(8)[None, :] ** 2)
    assert int(s.counts.sum()) == int(((f > 0) & (f < 0.515625)).sum()) == 50


# ---------------------------------------------------------------------------------------------
# Gaussian blur: the spectrum is multiplied by |H(f)|^2 = exp(-4 pi^2 sigma^2 f^2)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_blur_multiplies_the_spectrum_by_the_squared_response(sigma):
    # Circular blur and no window: the 2-D power is exactly P(f) |H(f)|^2. With a flat 2-D
    # spectrum (|DFT| = 1), each bin of the ratio is the mean of |H|^2 over the bin's frequencies.
    n = 64
    sharp = _flat_spectrum_images(4, n)
    blurred = _fourier_gaussian_blur(sharp, sigma)
    d = spectral_deficit(blurred, sharp, window=None)
    np.testing.assert_allclose(d.ratio.numpy(), _bin_mean_of_gain(n, sigma), rtol=1e-9, atol=1e-14)
    # ... which is the response at the bin centre, within the spread of frequencies in the bin
    # (at most about 0.02 for these sigmas).
    at_centre = torch.exp(-4 * math.pi**2 * sigma**2 * d.freqs**2)
    assert torch.allclose(d.ratio, at_centre, atol=0.025)


@pytest.mark.parametrize("window", ["none", "hann"])
def test_gaussian_blur_of_noise_follows_the_response(window):
    # Generic (uniform noise) images: the ratio follows |H(f_centre)|^2 within 0.03 with either window.
    sharp = torch.rand(32, 1, 64, 64, dtype=torch.float64)
    d = spectral_deficit(_fourier_gaussian_blur(sharp, 1.0), sharp, window=window)
    at_centre = torch.exp(-4 * math.pi**2 * d.freqs**2)
    assert (d.ratio - at_centre).abs().max().item() < 0.03


def test_gaussian_blur_deficit_in_db():
    # Flat spectrum, no window: deficit = -10 log10(mean |H|^2 over the band's frequencies), the
    # band being the frequencies whose radius rounds to k/N, N/4 <= k <= N/2.
    n, sigma = 64, 1.0
    sharp = _flat_spectrum_images(3, n, seed=1)
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2)
    k = np.floor(f * n + 0.5).astype(int)
    in_band = (k >= n // 4) & (k <= n // 2)
    expected = -10 * np.log10(np.exp(-4 * np.pi**2 * sigma**2 * f[in_band] ** 2).mean())
    d = spectral_deficit(_fourier_gaussian_blur(sharp, sigma), sharp, window=None)
    assert d.deficit_db == pytest.approx(expected, rel=1e-9)
    assert d.deficit_db > 15  # a strong blur: |H|^2 = exp(-4 pi^2 / 16) = 0.085 already at 0.25
    assert spectral_deficit(sharp, _fourier_gaussian_blur(sharp, sigma), window=None).deficit_db == pytest.approx(-expected)


# ---------------------------------------------------------------------------------------------
# The deficit between sets
# ---------------------------------------------------------------------------------------------


def test_identical_sets_give_zero_db():
    x = torch.rand(6, 3, 24, 24)
    d = spectral_deficit(x, x)
    assert isinstance(d, SpectralDeficit) and d.deficit_db == 0.0
    assert torch.all(d.ratio == 1)
    assert d.images_band_power == d.reference_band_power > 0


def test_blurred_set_has_positive_deficit_and_counts_may_differ():
    import kornia

    real = torch.rand(40, 1, 32, 32)
    generated = kornia.filters.gaussian_blur2d(torch.rand(25, 1, 32, 32), (7, 7), (1.0, 1.0), border_type="reflect")
    d = spectral_deficit(generated, real)
    assert d.deficit_db > 10
    assert d.images.n_images == 25 and d.reference.n_images == 40
    assert torch.all(d.ratio[d.freqs >= 0.25] < 0.2)
    # Two independent noise sets of the same law: near 0 dB.
    assert abs(spectral_deficit(torch.rand(40, 1, 32, 32), real).deficit_db) < 0.2


def test_accepts_accumulators_and_results():
    x, y = torch.rand(5, 1, 16, 16), torch.rand(7, 1, 16, 16)
    acc = RadialSpectrum()
    acc.update(x)
    ref = radial_power_spectrum(y)
    assert isinstance(ref, RadialPowerSpectrum)
    assert spectral_deficit(acc, ref).deficit_db == pytest.approx(spectral_deficit(x, y).deficit_db, abs=1e-9)
    assert spectral_deficit(iter([x[:2], x[2:]]), [y]).deficit_db == pytest.approx(spectral_deficit(x, y).deficit_db, abs=1e-5)


def test_band_changes_what_is_compared():
    sharp = torch.rand(8, 1, 32, 32, dtype=torch.float64)
    blurred = _fourier_gaussian_blur(sharp, 1.0)
    low = spectral_deficit(blurred, sharp, band=(0.0, 0.1)).deficit_db
    high = spectral_deficit(blurred, sharp, band=(0.4, 0.5)).deficit_db
    assert 0 < low < high


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_size_mismatch_names_both_sets():
    with pytest.raises(ValueError, match=r"same image size.*\(28, 28\) for images and \(32, 32\) for reference"):
        spectral_deficit(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(24, 40\) for images and \(40, 24\) for reference"):
        spectral_deficit(torch.rand(2, 1, 24, 40), torch.rand(2, 1, 40, 24))
    with pytest.raises(ValueError, match=r"images \(batch 2\) has image size \(16, 16\).*\(8, 8\)"):
        radial_power_spectrum([torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16)])
    with pytest.raises(ValueError, match="different numbers of bins"):
        spectral_deficit(radial_power_spectrum(torch.rand(2, 1, 8, 8), n_bins=2), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="different windows"):
        spectral_deficit(radial_power_spectrum(torch.rand(2, 1, 8, 8), window=None), torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(band=(0.3, 0.2)), ValueError, "band"),
        (dict(band=(0.2, 0.6)), ValueError, "band"),
        (dict(band=0.25), ValueError, "band"),
        (dict(window="hamming"), ValueError, "window"),
        (dict(n_bins=0), ValueError, "n_bins"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(error, match=match):
        spectral_deficit(x, x, **kwargs)


def test_bad_images():
    with pytest.raises(TypeError, match="reference must be a floating"):
        spectral_deficit(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        radial_power_spectrum(torch.rand(8, 8))
    with pytest.raises(ValueError, match="at least 2x2"):
        radial_power_spectrum(torch.rand(1, 1, 1, 8))
    with pytest.raises(ValueError, match="images is empty"):
        radial_power_spectrum([])
    with pytest.raises(TypeError, match="reference must be a"):
        spectral_deficit(torch.rand(1, 1, 8, 8), "real/")
    with pytest.raises(ValueError, match="NaN"):
        radial_power_spectrum(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="contains no frequency bin"):
        radial_power_spectrum(torch.rand(1, 1, 8, 8)).band_power((0.3, 0.37))


# ---------------------------------------------------------------------------------------------
# Dtypes, devices, plot
# ---------------------------------------------------------------------------------------------


def test_dtypes():
    x = torch.rand(4, 1, 32, 32, dtype=torch.float64)
    s64 = radial_power_spectrum(x)
    assert s64.power.dtype == s64.freqs.dtype == torch.float64
    s32 = radial_power_spectrum(x.float())
    assert s32.power.dtype == torch.float32
    torch.testing.assert_close(s32.power.double(), s64.power, rtol=1e-4, atol=0)
    for low in (torch.float16, torch.bfloat16):
        xl = x.to(low)
        sl = radial_power_spectrum(xl)
        assert sl.power.dtype == torch.float32
        # computed in float32 from the rounded values, not in the low precision
        torch.testing.assert_close(sl.power, radial_power_spectrum(xl.float()).power, rtol=1e-6, atol=0)
    assert spectral_deficit(x.half(), x.half()).deficit_db == 0.0


def test_no_gradient_needed():
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    s = radial_power_spectrum(x)
    assert not s.power.requires_grad


@cuda
def test_cuda_matches_cpu():
    x = torch.rand(6, 3, 40, 40, dtype=torch.float64)
    y = _fourier_gaussian_blur(x, 1.0)
    for dtype in (torch.float64, torch.float32, torch.float16):
        cpu = spectral_deficit(y.to(dtype), x.to(dtype))
        gpu = spectral_deficit(y.to("cuda", dtype), x.to("cuda", dtype))
        assert gpu.ratio.device.type == "cuda" and gpu.images.power.device.type == "cuda"
        torch.testing.assert_close(gpu.ratio.cpu(), cpu.ratio, rtol=1e-4, atol=1e-6)
        assert gpu.deficit_db == pytest.approx(cpu.deficit_db, abs=1e-3)
    acc = RadialSpectrum()
    acc.update(x.cuda())
    acc.update(x)  # a later CPU batch is added to the CUDA sums
    assert acc.compute().power.device.type == "cuda"


def test_plot_writes_a_png(tmp_path):
    sharp = torch.rand(8, 1, 32, 32)
    ref = radial_power_spectrum(sharp)
    spectra = {
        "blur 0.7": radial_power_spectrum(_fourier_gaussian_blur(sharp.double(), 0.7)),
        "blur 1.5": radial_power_spectrum(_fourier_gaussian_blur(sharp.double(), 1.5)),
    }
    fig = plot_spectra(spectra, ref, reference_label="real", title="test")
    top, bottom = fig.axes
    assert bottom.get_xlabel() == "spatial frequency (cycles per pixel)"
    assert top.get_yscale() == "log" and "dB" in bottom.get_ylabel()
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels[0] == "real (n=8)" and labels[1].startswith("blur 0.7 (n=8), deficit ") and labels[1].endswith(" dB")
    path = tmp_path / "spectra.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="must agree"):
        plot_spectra(radial_power_spectrum(torch.rand(2, 1, 16, 16)), ref)
