"""stft2d against a direct evaluation of the paper's formula, windows, and its gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stftblur import make_window, stft2d
from stftblur.transforms import StftPlan, overlap_add

from .conftest import cuda


def _direct_stft(x: np.ndarray, w: int, s: int, win: np.ndarray) -> np.ndarray:
    """The paper's formula, evaluated with explicit sums (float64)."""
    h, wd = x.shape
    k_n, l_n = (h - w) // s + 1, (wd - w) // s + 1
    m = np.arange(w)
    out = np.zeros((k_n, l_n, w, w // 2 + 1), dtype=complex)
    for k in range(k_n):
        for l in range(l_n):
            patch = x[k * s : k * s + w, l * s : l * s + w] * win
            for u in range(w):
                for v in range(w // 2 + 1):
                    e = np.exp(-2j * math.pi * (u * m[:, None] + v * m[None, :]) / w)
                    out[k, l, u, v] = (patch * e).sum()
    return out


@pytest.mark.parametrize("window", ["hann", "sqrt-hann", None])
def test_stft2d_matches_direct_formula(window):
    rng = np.random.default_rng(0)
    x = rng.random((13, 11))
    win = np.ones((6, 6)) if window is None else make_window(window, 6, torch.float64).numpy()
    expected = _direct_stft(x, 6, 3, win)
    got = stft2d(torch.from_numpy(x)[None, None], window_size=6, stride=3, window=window)[0, 0].numpy()
    assert got.shape == (3, 2, 6, 4)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_windows_match_numpy_definitions():
    n = 16
    k = np.arange(n)
    periodic = 0.5 - 0.5 * np.cos(2 * np.pi * k / n)
    np.testing.assert_allclose(make_window("hann", n, torch.float64).numpy(), np.outer(periodic, periodic), atol=1e-15)
    np.testing.assert_allclose(
        make_window("sqrt-hann", n, torch.float64).numpy(), np.sqrt(np.outer(np.hanning(n), np.hanning(n))), atol=1e-15
    )
    assert torch.equal(make_window(None, 4), torch.ones(4, 4))
    user = torch.arange(1.0, 5.0)
    assert torch.equal(make_window(user, 4), torch.outer(user, user))


def test_periodic_hann_is_constant_overlap_add():
    # Why "hann" is periodic: shifted copies at stride L/4 sum to a constant (2 per axis), so
    # every pixel away from the border carries the same total weight.
    k = (64 - 16) // 4 + 1
    for name, constant in (("hann", True), ("sqrt-hann", False)):
        win = make_window(name, 16, torch.float64)
        total = overlap_add(win.expand(1, 1, k, k, 16, 16), 64, 64, 4)[0, 0, 12:-12, 12:-12]
        assert torch.allclose(total, torch.full_like(total, 4.0)) == constant


def test_shape_formula_and_global_mode():
    x = torch.rand(2, 3, 30, 45)
    assert stft2d(x, window_size=8, stride=5).shape == (2, 3, 5, 8, 8, 5)
    g = stft2d(x, window_size=None, window=None)
    assert g.shape == (2, 3, 1, 1, 30, 45 // 2 + 1)
    assert torch.allclose(g[:, :, 0, 0], torch.fft.rfft2(x), atol=1e-4)


def test_normalized_dc_is_local_mean():
    x = torch.full((1, 1, 16, 16), 0.25)
    f = stft2d(x, window_size=8, stride=4, normalized=True)
    assert torch.allclose(f[..., 0, 0].real, torch.full((1, 1, 3, 3), 0.25))


def test_dtypes():
    x = torch.rand(1, 1, 16, 16)
    assert stft2d(x.double()).dtype == torch.complex128
    assert stft2d(x).dtype == torch.complex64
    assert stft2d(x.half()).dtype == torch.complex64
    assert stft2d(x.bfloat16()).dtype == torch.complex64


def test_stft2d_gradcheck_including_zero_patches():
    x = torch.rand(1, 2, 12, 12, dtype=torch.float64)
    x[..., :8, :8] = 0.0
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(stft2d(t, window_size=8, stride=2)), (x,), fast_mode=True)


@pytest.mark.parametrize("kind", ["2d", "rows"])
@pytest.mark.parametrize("size,stride", [((8, 8), 4), ((8, 8), 3), ((6, 6), 2), ((7, 7), 2)])
def test_plan_adjoint_is_the_adjoint(kind, size, stride):
    """<T x, g> (real inner product of complex numbers) == <x, T* g> for random x and g."""
    plan = StftPlan(size, stride, kind, normalized=True)
    x = torch.rand(2, 19, 17, dtype=torch.float64)
    win = plan.effective_window(make_window("hann", size, torch.float64) if kind == "2d" else None, torch.float64, x.device)
    fx = plan.forward(x, win)
    g = torch.randn_like(fx)
    lhs = (fx.real * g.real + fx.imag * g.imag).sum()
    back = plan.adjoint(g * plan.adjoint_scale(torch.float64, x.device), win, 19, 17)
    rhs = (x * back).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10)


@pytest.mark.parametrize(
    "x,match",
    [
        (torch.rand(1, 16, 16), "4 dims|B, C, H, W"),
        (torch.randint(0, 255, (1, 1, 16, 16)), "floating-point"),
        (torch.rand(1, 1, 8, 8), "smaller than window_size"),
        (torch.full((1, 1, 16, 16), float("nan")), "NaN or Inf"),
    ],
)
def test_stft2d_bad_input(x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        stft2d(x)


def test_stft2d_bad_arguments():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="window must be one of"):
        stft2d(x, window="hamming")
    with pytest.raises(ValueError, match="stride"):
        stft2d(x, stride=0)
    with pytest.raises(ValueError, match="window tensor must have shape"):
        stft2d(x, window=torch.ones(3, 3))


@cuda
def test_stft2d_cuda_matches_cpu():
    x = torch.rand(2, 3, 40, 40)
    assert torch.allclose(stft2d(x.cuda()).cpu(), stft2d(x), atol=1e-4)
