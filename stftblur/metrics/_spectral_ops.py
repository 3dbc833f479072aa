"""The FFT work of the radial power spectrum as PyTorch custom operators.

Convention:
    ``torch.ops.stftblur.power_sum`` sums a batch's channel-averaged power spectra on the
    ``rfft2`` half plane (window-weighted mean removal, window, FFT, chunked over images);
    ``torch.ops.stftblur.radial_power`` bins such a sum by radial frequency. Each has a fake
    (meta) implementation that gives its output shape, so ``torch.compile`` treats them as
    opaque calls (the chunk loop and the boolean bin masks never reach the tracer) and runs the
    same code as eager mode, which keeps compiled and eager results identical. No autograd: a
    spectrum here is a measurement. :mod:`stftblur.metrics.spectral` documents the conventions.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from stftblur._checks import check_finite

__all__: List[str] = []

# Images whose FFT is taken at once by :func:`_power_sum` (about 2**22 pixels, so that a chunk's
# complex spectrum stays near 32 MiB in float32 whatever the batch size).
_CHUNK_PIXELS = 1 << 22


def _window_2d(height: int, width: int, window: str, dtype: torch.dtype, device: torch.device) -> Optional[torch.Tensor]:
    if window == "none":
        return None
    wy = torch.hann_window(height, periodic=True, dtype=torch.float64)
    wx = torch.hann_window(width, periodic=True, dtype=torch.float64)
    return (wy[:, None] * wx[None, :]).to(dtype=dtype, device=device)


def _half_plane_bins(height: int, width: int, n_bins: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin of every frequency of the ``rfft2`` half plane (-1: not counted), its weight, the counts.

    The weight is 2 for a frequency that stands for itself and its mirror image (rfft2 keeps one
    of each pair), 1 for the columns that have no mirror (0, and W/2 for an even W). ``counts``
    is the number of frequencies of the full DFT plane in each bin. All float64 / int64 on the CPU.
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    radius = torch.sqrt(fy * fy + fx * fx)
    delta = 0.5 / n_bins
    # Nearest bin centre k * delta (k = 1..n_bins); halves go up; the lowest bin also takes the
    # non-zero frequencies below delta / 2 (none with the default n_bins); DC and the corners
    # beyond (n_bins + 1/2) delta are not counted.
    k = torch.floor(radius / delta + 0.5 + 1e-9).clamp_(min=1)
    index = (k - 1).to(torch.int64)
    index[(radius == 0) | (k > n_bins)] = -1
    weight = torch.full((width // 2 + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    weight = weight.expand(height, -1)
    keep = index >= 0
    counts = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index[keep], weight[keep]).round().to(torch.int64)
    return index, weight.contiguous(), counts


def _power_sum(x: torch.Tensor, window: str) -> torch.Tensor:
    """Sum over the batch of the channel-averaged power on the rfft2 half plane, shape (H, W//2+1)."""
    height, width = x.shape[-2:]
    win = _window_2d(height, width, window, x.dtype, x.device)
    total = torch.zeros(height, width // 2 + 1, dtype=x.dtype, device=x.device)
    per_chunk = max(1, _CHUNK_PIXELS // (x.shape[1] * height * width))
    for start in range(0, x.shape[0], per_chunk):
        chunk = x[start : start + per_chunk]
        if win is None:
            centred = chunk - chunk.mean(dim=(-2, -1), keepdim=True)
            norm = float(height * width)
        else:
            # Weighted mean: the windowed image then has exactly zero mean (no power at DC).
            mean = (chunk * win).sum(dim=(-2, -1), keepdim=True) / win.sum()
            centred = (chunk - mean) * win
            norm = float((win * win).sum())
        spectrum = torch.fft.rfft2(centred)
        power = (spectrum.real.square() + spectrum.imag.square()) / norm
        total += power.mean(dim=1).sum(dim=0)
    return total


@torch.library.custom_op("stftblur::power_sum", mutates_args=())
def power_sum_op(x: torch.Tensor, window: str) -> torch.Tensor:
    """:func:`_power_sum` as an operator: (B, C, H, W) real -> (H, W // 2 + 1) in x's dtype."""
    check_finite(x, "images")  # what the eager entry checks before; compiled graphs check here
    return _power_sum(x, window)


@power_sum_op.register_fake
def _power_sum_fake(x: torch.Tensor, window: str) -> torch.Tensor:
    height, width = x.shape[-2:]
    return x.new_empty(height, width // 2 + 1)


@torch.library.custom_op("stftblur::radial_power", mutates_args=())
def radial_power_op(power_sum: torch.Tensor, width: int, n_bins: int, n_images: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean power per radial bin of ``n_images`` images (float64; NaN for an empty bin) and each
    bin's number of DFT frequencies (int64), from the float64 power sum (H, width // 2 + 1) of
    :func:`power_sum_op`."""
    index, weight, counts = _half_plane_bins(power_sum.shape[0], width, n_bins)
    device = power_sum.device
    keep = index >= 0
    sums = torch.zeros(n_bins, dtype=torch.float64, device=device).index_add_(
        0, index[keep].to(device), power_sum[keep.to(device)] * weight[keep].to(device)
    )
    counts = counts.to(device)
    power = torch.where(counts > 0, sums / (counts.clamp(min=1) * n_images), torch.full_like(sums, math.nan))
    return power, counts


@radial_power_op.register_fake
def _radial_power_fake(power_sum: torch.Tensor, width: int, n_bins: int, n_images: int) -> Tuple[torch.Tensor, torch.Tensor]:
    return (power_sum.new_empty(n_bins, dtype=torch.float64), power_sum.new_empty(n_bins, dtype=torch.int64))
