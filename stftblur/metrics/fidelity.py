"""Full-reference fidelity metrics: PSNR and SSIM, one value per image."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from stftblur._checks import check_choice, check_pair, check_positive_float, check_positive_int

__all__ = ["psnr", "ssim", "ssim_map"]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def psnr(input: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    r"""Peak signal-to-noise ratio of every image in a batch.

    .. math:: \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}}

    Convention:
        The mean squared error is taken over all channels and pixels of each image, exactly as
        ``skimage.metrics.peak_signal_noise_ratio(target[b], input[b], data_range=R)`` and
        TensorFlow's ``tf.image.psnr(..., max_val=R)`` do for one image. Nothing is clamped: the
        paper evaluates the raw decoder output, which can leave [0, R]. Identical images give
        ``inf``. float16/bfloat16 are computed in float32; the result has the computation dtype.

    Args:
        input: images of shape (B, C, H, W).
        target: reference images of the same shape.
        data_range: R, the distance between the minimum and maximum possible pixel values.

    Returns:
        PSNR in dB, shape (B,). Differentiable.

    Examples:
        >>> import torch
        >>> target = torch.zeros(1, 1, 4, 4)
        >>> input = torch.full((1, 1, 4, 4), 0.1)
        >>> psnr(input, target)
        tensor([20.])
    """
    check_pair(input, target)
    data_range = check_positive_float(data_range, "data_range")
    dtype = _compute_dtype(input)
    mse = (input.to(dtype) - target.to(dtype)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


@functools.lru_cache(maxsize=32)
def _gaussian_1d(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


_MATMUL_MAX_SIZE = 64


@functools.lru_cache(maxsize=32)
def _band(g: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size - k + 1) matrix M with (x @ M)[j] = sum_i g[i] x[j + i], a 'valid' filter.

    Cached per (g, size); ``g`` itself comes from the cached :func:`_gaussian_1d`.
    """
    k = g.shape[0]
    m = torch.zeros(size, size - k + 1, dtype=g.dtype, device=g.device)
    for j in range(size - k + 1):
        m[j : j + k, j] = g
    return m


def ssim_map(
    input: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    padding: str = "valid",
) -> torch.Tensor:
    """The local SSIM map, shape (B, C, H', W'); see :func:`ssim` for the conventions.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16)
        >>> ssim_map(x, x).shape
        torch.Size([2, 3, 6, 6])
    """
    check_pair(input, target)
    data_range = check_positive_float(data_range, "data_range")
    window_size = check_positive_int(window_size, "window_size")
    sigma = check_positive_float(sigma, "sigma")
    check_choice(padding, "padding", ("valid", "same"))
    if window_size % 2 == 0:
        raise ValueError(f"window_size must be odd, got {window_size}")
    h, w = input.shape[-2:]
    if padding == "valid" and (h < window_size or w < window_size):
        raise ValueError(
            f"input of spatial size {(h, w)} is smaller than window_size={window_size}; "
            f"use a smaller window_size or padding='same'"
        )
    dtype = _compute_dtype(input)
    x = input.to(dtype)
    y = target.to(dtype)
    b, c = x.shape[:2]
    # One grouped, separable Gaussian filter over the five moment maps at once.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    if padding == "same":
        r = window_size // 2
        mode = "reflect" if min(h, w) > r else "replicate"
        stack = F.pad(stack, (r, r, r, r), mode=mode)
    g = _gaussian_1d(window_size, sigma, dtype, x.device)
    hp, wp = stack.shape[-2:]
    if max(hp, wp) <= _MATMUL_MAX_SIZE:
        # Small images: the separable 'valid' filter as two banded matrix products, which
        # (forward and backward) are several times faster than depthwise convolutions.
        stack = _band(g, hp).t() @ stack @ _band(g, wp)
    else:
        n = stack.shape[1]
        stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
        stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    mu_x, mu_y, e_xx, e_yy, e_xy = stack.split(c, dim=1)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    num = (2.0 * mu_xy + c1) * (2.0 * (e_xy - mu_xy) + c2)
    den = (mu_xx + mu_yy + c1) * ((e_xx - mu_xx) + (e_yy - mu_yy) + c2)
    return num / den


def ssim(
    input: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    padding: str = "valid",
) -> torch.Tensor:
    r"""Structural similarity (Wang et al., 2004) of every image in a batch.

    Convention:
        Gaussian window of ``window_size`` taps with standard deviation ``sigma`` (11 and 1.5 by
        default), population (not sample) covariances, :math:`C_1 = (0.01R)^2`,
        :math:`C_2 = (0.03R)^2`. With ``padding="valid"`` the map is computed only where the
        window fits inside the image and is averaged over those positions and over channels.
        This is ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=R, channel_axis=0)`` (which filters with
        reflection and then crops the border of half a window) and TensorFlow's
        ``tf.image.ssim(..., max_val=R)``, the metric the paper reports; it matches both to
        float precision. ``padding="same"`` reflect-pads by half a window instead, as kornia
        does, so that every pixel has a value. Nothing is clamped. float16/bfloat16 are
        computed in float32.

    Args:
        input: images of shape (B, C, H, W).
        target: reference images of the same shape.
        data_range: R, the distance between the minimum and maximum possible pixel values.
        window_size: odd size of the Gaussian window.
        sigma: standard deviation of the Gaussian window.
        padding: ``"valid"`` or ``"same"``.

    Returns:
        SSIM, shape (B,). Differentiable.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 1, 28, 28)
        >>> ssim(x, x)
        tensor([1., 1.])
    """
    return ssim_map(input, target, data_range, window_size, sigma, padding).flatten(1).mean(1)
