"""PSNR and SSIM against scikit-image (and TensorFlow's values in ../shared)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stftblur import psnr, ssim
from stftblur.metrics import ssim_map

from .conftest import cuda


def _sk_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        y, x, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=0
    )


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (3, 3, 33, 17), (1, 2, 11, 11), (2, 1, 64, 101)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_match_scikit_image(shape, data_range):
    rng = np.random.default_rng(sum(shape))
    target = rng.random(shape) * data_range
    output = np.clip(target + rng.normal(0, 0.2 * data_range, shape), -0.5 * data_range, 1.5 * data_range)
    t, o = torch.from_numpy(target), torch.from_numpy(output)
    got_psnr = psnr(o, t, data_range=data_range).numpy()
    got_ssim = ssim(o, t, data_range=data_range).numpy()
    for b in range(shape[0]):
        assert got_psnr[b] == pytest.approx(peak_signal_noise_ratio(target[b], output[b], data_range=data_range), abs=1e-5)
        assert got_ssim[b] == pytest.approx(_sk_ssim(output[b], target[b], data_range), abs=1e-5)


def test_float32_close_to_float64():
    x, y = torch.rand(2, 1, 28, 28, dtype=torch.float64), torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert torch.allclose(ssim(x.float(), y.float()).double(), ssim(x, y), atol=1e-5)
    assert ssim(x.half(), y.half()).dtype == torch.float32


def test_identical_images():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(ssim(x, x), torch.ones(2))
    assert torch.isinf(psnr(x, x)).all()


def test_same_padding_keeps_size():
    x, y = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20)
    assert ssim_map(x, y, padding="same").shape == (1, 1, 20, 20)
    assert ssim_map(x, y).shape == (1, 1, 10, 10)


def test_gradcheck():
    x = torch.rand(1, 2, 12, 13, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 2, 12, 13, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y), (x,))
    assert torch.autograd.gradcheck(lambda a: psnr(a, y), (x,))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(window_size=10), "odd"),
        (dict(window_size=31), "smaller than window_size"),
        (dict(padding="full"), "padding"),
        (dict(data_range=0), "data_range"),
        (dict(sigma=-1.0), "sigma"),
    ],
)
def test_ssim_bad_arguments(kwargs, match):
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match=match):
        ssim(x, x, **kwargs)


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(TypeError, match="target must be a floating"):
        ssim(torch.rand(1, 1, 16, 16), torch.ones(1, 1, 16, 16, dtype=torch.uint8))


@cuda
def test_cuda_matches_cpu():
    x, y = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    assert torch.allclose(ssim(x.cuda(), y.cuda()).cpu(), ssim(x, y), atol=1e-6)
    assert torch.allclose(psnr(x.cuda(), y.cuda()).cpu(), psnr(x, y), atol=1e-4)
