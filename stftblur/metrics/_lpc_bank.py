"""The log-Gabor filter bank of LPC-SI (Kovesi's phase-congruency filters), built once per
image size, dtype and device and kept in a cache bounded by bytes.

:mod:`stftblur.metrics._lpc_map` applies it; :func:`stftblur.metrics.lpc_si` documents the
convention.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, List, Tuple

import torch

__all__: List[str] = []

# Filter-bank constants of the reference implementation (Kovesi's phase-congruency code).
_MIN_WAVELENGTH = 4.0
_SIGMA_ON_F = 0.75
_D_THETA_ON_SIGMA = 1.5
_LOWPASS_CUTOFF = 0.45
_LOWPASS_ORDER = 15


def _normalised_range(n: int) -> torch.Tensor:
    """Kovesi's frequency grid along one axis, in [-0.5, 0.5], before ``ifftshift``.

    Even n: ``[-n/2 .. n/2 - 1] / n``; odd n: ``[-(n-1)/2 .. (n-1)/2] / (n - 1)`` (so odd sizes
    reach exactly +-0.5, which is not the true DFT frequency grid; the reference does this).
    """
    if n % 2:
        return torch.arange(-(n - 1) / 2, (n - 1) / 2 + 1, dtype=torch.float64) / max(n - 1, 1)
    return torch.arange(-n // 2, n // 2, dtype=torch.float64) / n


# Filter banks by (H, W, scales, n_orientations, dtype, device), least recently used first. A
# bank is 24 complex planes of the image size (48 MiB for 512x512 in float32), so the cache is
# bounded by bytes, not entries; the most recent bank is always kept.
_BANKS: "OrderedDict[Tuple[Any, ...], torch.Tensor]" = OrderedDict()
_BANK_CACHE_BYTES = 512 << 20
# Guards _BANKS: two threads computing LPC-SI at once read and evict it together.
_BANKS_LOCK = threading.Lock()


def _filter_bank(
    height: int,
    width: int,
    scales: Tuple[float, ...],
    n_orientations: int,
    dtype: torch.dtype,
    device: torch.device,
    real: bool = False,
) -> torch.Tensor:
    """The log-Gabor bank for this size, dtype and device, from the cache or built once.

    Complex (the reference path multiplies complex by complex in one vectorised pass, where
    complex by real would promote the real operand on every call), or real for the compiled
    product, which reads half the bytes.
    """
    key = (height, width, scales, n_orientations, dtype, device, real)
    with _BANKS_LOCK:
        bank = _BANKS.get(key)
    if bank is None:
        # Built outside the lock (it takes a while for big images); two threads may both build
        # the same bank, which is then equal.
        bank = _build_filter_bank(height, width, scales, n_orientations, dtype, device, real)
    with _BANKS_LOCK:
        _BANKS[key] = bank
        _BANKS.move_to_end(key)
        while len(_BANKS) > 1 and sum(b.numel() * b.element_size() for b in _BANKS.values()) > _BANK_CACHE_BYTES:
            _BANKS.popitem(last=False)
    return bank


def _build_filter_bank(
    height: int,
    width: int,
    scales: Tuple[float, ...],
    n_orientations: int,
    dtype: torch.dtype,
    device: torch.device,
    real: bool = False,
) -> torch.Tensor:
    """The (real-valued) transfer functions of the log-Gabor bank, shape (S, O, H, W), DC at [0, 0].

    Built in float64 on the CPU, then cast to ``dtype`` (``real``) or its complex dtype, and moved.
    """
    x = _normalised_range(width)[None, :]
    y = _normalised_range(height)[:, None]
    radius = torch.fft.ifftshift(torch.sqrt(x * x + y * y))
    theta = torch.fft.ifftshift(torch.atan2(-y, x).expand(height, width))
    # Butterworth low-pass, radius 0.45, order 15: keeps the corners of the spectrum out.
    lowpass = 1.0 / (1.0 + (radius / _LOWPASS_CUTOFF) ** (2 * _LOWPASS_ORDER))
    radius = radius.clone()
    radius[0, 0] = 1.0  # avoid log(0); the DC value of every filter is set to 0 below
    log_sigma = math.log(_SIGMA_ON_F)
    radial = []
    for s in scales:
        fo = 1.0 / (_MIN_WAVELENGTH * s)
        g = torch.exp(-torch.log(radius / fo) ** 2 / (2.0 * log_sigma**2)) * lowpass
        g[0, 0] = 0.0
        radial.append(g)
    radial_t = torch.stack(radial)  # (S, H, W)
    theta_sigma = math.pi / n_orientations / _D_THETA_ON_SIGMA
    angles = torch.arange(n_orientations, dtype=torch.float64) * math.pi / n_orientations
    sin_t, cos_t = torch.sin(theta), torch.cos(theta)
    ca, sa = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    # Angular distance to each orientation, computed through atan2 to avoid wrap-around.
    dtheta = torch.atan2(sin_t * ca - cos_t * sa, cos_t * ca + sin_t * sa).abs()
    spread = torch.exp(-(dtheta**2) / (2.0 * theta_sigma**2))  # (O, H, W)
    bank = radial_t[:, None] * spread[None]  # (S, O, H, W)
    # Gains below 1e-30 (about a third of the bank: far from each filter's orientation and band)
    # become exactly 0: their products with a spectrum are negligible (< 1e-22 of it) but can be
    # subnormal floats, which the CPU multiplies and transforms slowly.
    bank = bank.masked_fill(bank < 1e-30, 0.0)
    if real:
        return bank.to(dtype=dtype, device=device).contiguous()
    return bank.to(dtype=_complex_dtype(dtype), device=device).contiguous()


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
