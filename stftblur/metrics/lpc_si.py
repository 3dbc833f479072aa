"""No-reference sharpness: the local phase coherence sharpness index (LPC-SI).

R. Hassen, Z. Wang and M. M. A. Salama, "Image Sharpness Assessment Based on Local Phase
Coherence", IEEE Transactions on Image Processing 22(7), 2013. Written in PyTorch from the
published definition and validated against values computed by the authors' reference MATLAB
implementation (``lpc_si.m``, with Peter Kovesi's log-Gabor filter bank), which it matches number
for number; no part of that MATLAB code is in this project. See ``docs/metrics.md`` (accuracy,
provenance).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from stftblur._checks import check_image, check_positive_float, check_positive_int
from stftblur.errors import require_extra
from stftblur.metrics import _lpc_native
from stftblur.metrics.fidelity import _compute_dtype

__all__ = ["lpc_si", "LPCSI", "blur_effect"]

#: ITU-R BT.601 luma weights (R, G, B), the weights MATLAB's ``rgb2gray`` documents.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Filter-bank constants of the reference implementation (Kovesi's phase-congruency code).
_MIN_WAVELENGTH = 4.0
_SIGMA_ON_F = 0.75
_D_THETA_ON_SIGMA = 1.5
_LOWPASS_CUTOFF = 0.45
_LOWPASS_ORDER = 15

# The exponential weights u_i = exp(-i / ((N - 1) beta_k)) of the sorted map fall below
# exp(-_TAIL) of the first one after _TAIL * (N - 1) * beta_k values; the values past that point
# change the index by less than exp(-_TAIL) ~ 1e-18 (the map lies in [0, 1]), far below float64
# rounding, so only the largest ones are needed and a partial sort (top-k) replaces the full sort.
_TAIL = 41.5

ScalesSpec = Union[Sequence[float], Tuple[float, ...]]


def _matlab_round(x: float) -> int:
    """Round half away from zero, as MATLAB's ``round`` does (Python rounds half to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def default_border(height: int, width: int) -> int:
    """The reference border ``round(min(H, W) / 16)`` (MATLAB rounding: halves away from zero).

    Convention:
        Pixels left out on every side of an image of size (``height``, ``width``) when
        ``border=None``; halves round up as MATLAB's ``round`` does (40 -> 2.5 -> 3), not to
        even as Python's ``round`` would.

    Examples:
        >>> default_border(512, 512), default_border(28, 28), default_border(40, 64)
        (32, 2, 3)
    """
    return _matlab_round(min(height, width) / 16.0)


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
    bank = _BANKS.get(key)
    if bank is None:
        bank = _build_filter_bank(height, width, scales, n_orientations, dtype, device, real)
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


@functools.lru_cache(maxsize=32)
def _rank_weights(n: int, beta_k: float, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, int]:
    """The first k weights u_i / sum(u) of the sorted map (k as in ``_TAIL``), and k."""
    if n == 1:
        return torch.ones(1, dtype=dtype, device=device), 1
    step = 1.0 / ((n - 1) * beta_k)
    k = min(n, int(math.ceil(_TAIL * (n - 1) * beta_k)) + 1)
    # sum_{i<n} q^i with q = exp(-step), in closed form (accurate through expm1).
    total = math.expm1(-n * step) / math.expm1(-step)
    u = torch.exp(-torch.arange(k, dtype=torch.float64) * step) / total
    return u.to(dtype=dtype, device=device), k


def _to_gray255(images: torch.Tensor, data_range: float, dtype: torch.dtype) -> torch.Tensor:
    """(B, C, H, W) in [0, data_range] -> (B, H, W) gray levels in [0, 255]."""
    x = images.to(dtype)
    if x.shape[1] == 3:
        w = torch.tensor(LUMA_WEIGHTS, dtype=dtype, device=x.device)
        x = torch.einsum("bchw,c->bhw", x, w)
    else:
        x = x[:, 0]
    return x * (255.0 / data_range)


@dataclasses.dataclass(frozen=True)
class LPCSISettings:
    """Validated LPC-SI parameters (see :func:`lpc_si`); ``border=None`` means the default.

    Convention:
        Build it with :meth:`create`, which checks every argument; the fields are those of
        :func:`lpc_si` (data range of the input, scales, weights, C, beta_k, orientations,
        border), normalised to floats and tuples so that equal settings compare equal.

    Examples:
        >>> s = LPCSISettings.create(scales=[1, 2, 4])
        >>> s.scales, s.border_for(64, 48)
        ((1.0, 2.0, 4.0), 3)
    """

    data_range: float = 1.0
    scales: Tuple[float, ...] = (1.0, 1.5, 2.0)
    scale_weights: Tuple[float, ...] = (1.0, -3.0, 2.0)
    C: float = 2.0
    beta_k: float = 1e-4
    n_orientations: int = 8
    border: Optional[int] = None

    @classmethod
    def create(
        cls,
        data_range: float = 1.0,
        scales: ScalesSpec = (1, 1.5, 2),
        scale_weights: ScalesSpec = (1, -3, 2),
        C: float = 2.0,
        beta_k: float = 1e-4,
        n_orientations: int = 8,
        border: Optional[int] = None,
    ) -> "LPCSISettings":
        """Validate every argument, raising an error that names the bad one.

        Convention:
            The arguments and defaults of :func:`lpc_si`; ``border`` is checked against the
            image size later, by :meth:`border_for`.

        Examples:
            >>> LPCSISettings.create(data_range=255).data_range
            255.0
        """
        scales_t = _as_float_tuple(scales, "scales")
        weights_t = _as_float_tuple(scale_weights, "scale_weights")
        if any(s <= 0 for s in scales_t):
            raise ValueError(f"scales must all be > 0, got {scales_t}")
        if len(weights_t) != len(scales_t):
            raise ValueError(
                f"scale_weights must have one weight per scale ({len(scales_t)}), got {len(weights_t)}: {weights_t}"
            )
        if border is not None and (isinstance(border, bool) or not isinstance(border, int) or border < 0):
            raise ValueError(f"border must be None or an int >= 0, got {border!r}")
        return cls(
            data_range=check_positive_float(data_range, "data_range"),
            scales=scales_t,
            scale_weights=weights_t,
            C=check_positive_float(C, "C"),
            beta_k=check_positive_float(beta_k, "beta_k"),
            n_orientations=check_positive_int(n_orientations, "n_orientations"),
            border=border,
        )

    def border_for(self, height: int, width: int) -> int:
        """The border used for an image of this size; an error if it leaves no pixel inside.

        Convention:
            ``border`` if set, else :func:`default_border`; it must leave at least one pixel,
            i.e. ``2 * border < min(height, width)``.

        Examples:
            >>> LPCSISettings.create().border_for(28, 28)
            2
        """
        border = default_border(height, width) if self.border is None else self.border
        if 2 * border >= min(height, width):
            raise ValueError(f"border={border} leaves no pixel inside an image of spatial size {(height, width)}")
        return border

    def as_dict(self) -> Dict[str, Any]:
        """Every setting, JSON-ready (``border`` None means ``round(min(H, W) / 16)``).

        Convention:
            Tuples become lists; the keys are the field names.

        Examples:
            >>> LPCSISettings.create().as_dict()["scale_weights"]
            [1.0, -3.0, 2.0]
        """
        d = dataclasses.asdict(self)
        d["scales"], d["scale_weights"] = list(self.scales), list(self.scale_weights)
        return d


def _check_images(images: object) -> torch.Tensor:
    x = check_image(images, "images")
    if x.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have 1 (gray) or 3 (RGB) channels, got {x.shape[1]} channels in shape {tuple(x.shape)}"
        )
    return x


def _as_float_tuple(values: object, name: str) -> Tuple[float, ...]:
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must contain finite numbers, got {values!r}")
        out.append(float(v))
    return tuple(out)


def _coherence(resp: torch.Tensor, weights: Tuple[float, ...]) -> torch.Tensor:
    """max(0, cos(sum_s w_s angle(M_s))) for responses of shape (S, K).

    Integer weights (the default 1, -3, 2) use the product z = prod_s M_s^w_s (conjugates for
    negative weights) and cos(angle(z)) = Re(z) / |z|, cheaper than atan2. The product is taken
    in complex128 whatever the input, so that powers such as |M|^6 neither overflow nor
    underflow; z == 0 counts as angle 0, as in MATLAB. Other weights use the angles, as MATLAB's
    ``angle(prod(M_s .^ w_s))`` does.
    """
    if all(float(w).is_integer() for w in weights):
        r = resp.to(torch.complex128)
        z = torch.ones_like(r[0])
        for r_s, w in zip(r, weights):
            factor = r_s if w > 0 else r_s.conj()
            for _ in range(abs(int(w))):
                z = z * factor
        mag = z.abs()
        cos = torch.where(mag > 0, z.real / mag, torch.ones_like(mag))
        return cos.clamp_min_(0.0).to(resp.real.dtype)
    w_t = torch.tensor(weights, dtype=resp.real.dtype, device=resp.device)
    return torch.cos((torch.angle(resp) * w_t[:, None]).sum(dim=0)).clamp_min_(0.0)


# Responses computed at once are bounded to this many bytes of complex planes. On the CPU a
# batched inverse FFT over more planes than fit in the last-level cache costs more per plane
# (`python evals/bench_metrics.py --threads 1 --fft-sweep` on the project's 2-core machine:
# 2.5 ms per 512x512 complex64 plane in calls of 3 or 6 planes, 4.1 ms in one call of 24), and
# the elementwise passes follow the same pattern, so big images are processed a few
# orientations at a time and small images many at a time with all their orientations. A GPU
# wants big launches instead.
_CHUNK_BYTES_CPU = 16 << 20
_CHUNK_BYTES_GPU = 512 << 20


def _chunking(n_images: int, bank: torch.Tensor) -> Tuple[int, int]:
    """(images per chunk, orientations per chunk) for :func:`_lpc_map`."""
    n_s, n_o = bank.shape[:2]
    budget = _CHUNK_BYTES_CPU if bank.device.type == "cpu" else _CHUNK_BYTES_GPU
    plane_bytes = bank[0, 0].numel() * (1 if bank.is_complex() else 2) * bank.element_size()  # a complex response
    planes = max(1, budget // (n_s * plane_bytes))
    if planes >= n_o:
        return max(1, min(n_images, planes // n_o)), n_o
    return 1, planes


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.reshape(-1)[index]`` through the 1-D ``index_select`` of an 8-byte type.

    Gathering complex values directly (advanced indexing, or ``index_select`` along a dim of a
    complex tensor) was an order of magnitude slower on the CPU than the 1-D fast path, so
    complex64 is reinterpreted as int64 (the bits are copied, not converted) and complex128 is
    gathered as pairs of float64.
    """
    flat = x.reshape(-1)
    if flat.dtype == torch.complex64:
        return flat.view(torch.int64).index_select(0, index).view(torch.complex64)
    if flat.is_complex():
        pairs = torch.view_as_real(flat).reshape(-1)
        index2 = (index[:, None] * 2 + torch.arange(2, device=index.device)).reshape(-1)
        return torch.view_as_complex(pairs.index_select(0, index2).view(-1, 2))
    return flat.index_select(0, index)


def _threshold(inner: torch.Tensor) -> torch.Tensor:
    """mean + 2 * std (sample, n - 1) over the last two dims; std 0 for a single pixel.

    Two vectorised passes (mean, then the norm of the deviations) instead of torch.std_mean,
    whose Welford reduction over a strided view was several times slower here.
    """
    n = inner.shape[-1] * inner.shape[-2]
    mean = inner.mean(dim=(-2, -1), keepdim=True)
    if n == 1:
        return mean[..., 0, 0]
    std = torch.linalg.vector_norm(inner - mean, dim=(-2, -1)) / math.sqrt(n - 1)
    return mean[..., 0, 0] + 2.0 * std


def _lpc_map(
    gray: torch.Tensor,
    bank: torch.Tensor,
    weights: Tuple[float, ...],
    C: float,
    border: int,
    orientations_per_chunk: int,
    compiled_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The LPC map of (B, H, W) gray images, shape (B, H, W); ``bank`` is (S, O, H, W).

    ``compiled_weights`` (the integer scale weights, int64) selects the compiled kernels, with
    ``bank`` stored real; None the pure-PyTorch reference, with ``bank`` complex.
    """
    b, h, w = gray.shape
    n_s, n_o = bank.shape[:2]
    hw = h * w
    # The filters are 0 at DC, so removing the mean changes nothing but the rounding error of a
    # large DC term (and makes a flat image exactly 0 everywhere).
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    spectrum = torch.fft.fft2(gray)  # (B, H, W) complex
    if compiled_weights is not None:
        # The compiled twin of the loop below (``bank`` is then stored real): the product with
        # the filters, then threshold, selection, coherence and the map's sums in two reads of
        # the finest scale. The loop below stays the reference.
        num = torch.zeros(b, h, w, dtype=torch.float64)
        den = torch.full((b, h, w), C, dtype=torch.float64)
        for o_start in range(0, n_o, orientations_per_chunk):
            product = _lpc_native.product(spectrum, bank, o_start, min(orientations_per_chunk, n_o - o_start))
            _lpc_native.accumulate(torch.fft.ifft2(product), border, compiled_weights, num, den)
        return (num / den).to(gray.dtype)
    picked, energies, targets = [], [], []
    for o_start in range(0, n_o, orientations_per_chunk):
        # Responses laid out (S, B, O_chunk, H, W): pixel p of plane (b, o) has the same flat
        # index in every scale, so one index gathers all scales.
        resp = torch.fft.ifft2(spectrum[None, :, None] * bank[:, None, o_start : o_start + orientations_per_chunk])
        n_c = resp.shape[2]
        # Energy of the finest scale, thresholded per image and orientation at mean + 2 std
        # (sample std) inside the border. |z| as sqrt(re^2 + im^2): faster than torch.abs on
        # complex (hypot), and the magnitudes here are far from overflow.
        re, im = resp[0].real, resp[0].imag
        mag = torch.addcmul(re.square(), im, im).sqrt_()  # (B, O_chunk, H, W)
        thr = _threshold(mag[..., border : h - border, border : w - border])  # (B, O_chunk)
        # Only the pixels above the threshold (a few percent) carry energy: gather them here,
        # and compute their phase coherence once for all chunks below.
        bi, oi, pi = (mag > thr[..., None, None]).view(b, n_c, hw).nonzero().unbind(1)
        plane = torch.add(oi, bi, alpha=n_c)
        flat = torch.add(pi, plane, alpha=hw)
        energies.append(_take(mag, flat) - _take(thr, plane))
        picked.append(torch.stack([_take(r, flat) for r in resp]))
        targets.append(torch.add(pi, bi, alpha=hw))
    energy, target = torch.cat(energies), torch.cat(targets)
    coherence = _coherence(torch.cat(picked, dim=1), weights)
    num = torch.zeros(b * hw, dtype=gray.dtype, device=gray.device).index_add_(0, target, coherence * energy)
    den = torch.full((b * hw,), C, dtype=gray.dtype, device=gray.device).index_add_(0, target, energy)
    return (num / den).view(b, h, w)


def lpc_si(
    images: torch.Tensor,
    data_range: float = 1.0,
    scales: ScalesSpec = (1, 1.5, 2),
    scale_weights: ScalesSpec = (1, -3, 2),
    C: float = 2.0,
    beta_k: float = 1e-4,
    n_orientations: int = 8,
    border: Optional[int] = None,
    return_map: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    r"""Local phase coherence sharpness index (LPC-SI) of every image in a batch.

    Hassen, Wang and Salama (IEEE TIP 22(7), 2013). A bank of complex log-Gabor filters (three
    scales, ``n_orientations`` orientations) measures, at each pixel and orientation, how
    coherent the phases of the three scales are: sharp edges and lines give
    :math:`\cos(\sum_s w_s \phi_s) \approx 1`, blur destroys that coherence. The coherence of the
    orientations is averaged with the finest-scale energy :math:`E_o` above a threshold,

    .. math:: \mathrm{LPC}(x) = \frac{\sum_o \max(0, \cos(\sum_s w_s \phi_{s,o}(x))) E_o(x)}
              {\sum_o E_o(x) + C},

    and the index is the mean of the sorted map :math:`L_{(1)} \ge L_{(2)} \ge \dots` with
    weights :math:`u_i = e^{-(i-1)/((N-1)\beta_k)}` that favour the sharpest pixels.

    Convention:
        ``images`` hold values in [0, ``data_range``]; the index is defined on 0..255 gray
        levels (``C`` and the energy are in those units), so the images are scaled by
        ``255 / data_range``. Colour (3 channels) is converted to luma with the ITU-R BT.601
        weights (0.299, 0.587, 0.114) before scaling, without rounding to integers. There is
        no spatial window: the filters are applied to the whole image through the FFT
        (periodic boundary), exactly as the reference MATLAB code does. The filter bank is
        Kovesi's (smallest wavelength 4, ``sigma_on_f`` 0.75, angular spread
        :math:`\pi / n_o / 1.5`, low-pass radius 0.45 of order 15, zero DC, odd and even
        sizes gridded as in his code). ``border`` pixels on every side (default
        ``round(min(H, W) / 16)``, MATLAB rounding) are left out of the energy threshold
        (mean + 2 sample standard deviations of the finest-scale magnitude) and of the final
        index; the map itself covers the whole image. A flat image has no energy and gives 0.
        Only the largest values of the map carry weight above :math:`10^{-18}`, so a partial
        sort replaces the full sort; the result equals the reference to float64 rounding.
        float16/bfloat16 are computed in float32. Not differentiable (a measurement, not a
        loss).

    Args:
        images: images of shape (B, 1, H, W) or (B, 3, H, W), any H and W.
        data_range: the value of white (1.0 for [0, 1] images, 255.0 for 0..255).
        scales: wavelength multipliers of the three (or more) filter scales.
        scale_weights: the weight :math:`w_s` of each scale's phase.
        C: the constant that keeps weak-energy pixels low, in 0..255 units.
        beta_k: decay of the rank weights (smaller favours the sharpest pixels more).
        n_orientations: number of filter orientations.
        border: pixels excluded on every side, or None for ``round(min(H, W) / 16)``.
        return_map: also return the LPC map.

    Returns:
        The index, shape (B,), in [0, 1] (1 is sharp); with ``return_map=True`` also the map,
        shape (B, H, W). Computation dtype (float32, or float64 for float64 input).

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 64, 64)
        >>> x[..., 16:48, 16:48] = 1.0  # a sharp square
        >>> sharp = lpc_si(x)
        >>> blurred = lpc_si(torch.nn.functional.avg_pool2d(x, 5, 1, 2))
        >>> bool(sharp > blurred)
        True
        >>> lpc_si(torch.full((2, 3, 20, 30), 0.5))
        tensor([0., 0.])
        >>> si, lpc = lpc_si(x, return_map=True)
        >>> lpc.shape
        torch.Size([1, 64, 64])
    """
    settings = LPCSISettings.create(data_range, scales, scale_weights, C, beta_k, n_orientations, border)
    return _lpc_si(_check_images(images), settings, return_map)


def _lpc_si(
    x: torch.Tensor, settings: LPCSISettings, return_map: bool
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`lpc_si` on checked images with validated settings."""
    dtype = _compute_dtype(x)
    b, _, h, w = x.shape
    border = settings.border_for(h, w)
    with torch.no_grad():
        gray = _to_gray255(x, settings.data_range, dtype)
        compiled_weights = _lpc_native.integer_weights(settings.scale_weights)
        if compiled_weights is not None and not _lpc_native.usable(_complex_dtype(dtype), x.device):
            compiled_weights = None
        bank = _filter_bank(h, w, settings.scales, settings.n_orientations, dtype, x.device,
                            real=compiled_weights is not None)
        u, k = _rank_weights((h - 2 * border) * (w - 2 * border), settings.beta_k, dtype, x.device)
        images_per_chunk, orientations_per_chunk = _chunking(b, bank)
        maps = torch.cat(
            [
                _lpc_map(g, bank, settings.scale_weights, settings.C, border, orientations_per_chunk, compiled_weights)
                for g in gray.split(images_per_chunk)
            ]
        )
        inner = maps[:, border : h - border, border : w - border].reshape(b, -1)
        if k < inner.shape[1]:
            top = inner.topk(k, dim=1, sorted=True).values
        else:
            top = inner.sort(dim=1, descending=True).values
        si = top @ u
    if return_map:
        return si, maps
    return si


class LPCSI:
    """LPC-SI accumulated over batches: :meth:`update` with each batch, :meth:`compute` the mean.

    Convention:
        The same as :func:`lpc_si` (images in [0, ``data_range``], scaled to 0..255 gray
        levels; BT.601 luma for colour; no window, FFT over the whole image; ``border`` pixels
        left out, ``round(min(H, W) / 16)`` by default). Images of different sizes may be
        passed in different batches. The per-image values are kept (one float64 each, on the
        CPU), so :meth:`compute` is the exact mean over every image seen since the last
        :meth:`reset`, whatever the batch sizes, and :attr:`values` gives them all.

    Args:
        data_range: the value of white (1.0 for [0, 1] images).
        **kwargs: the other keyword arguments of :func:`lpc_si` (``scales``, ``scale_weights``,
            ``C``, ``beta_k``, ``n_orientations``, ``border``).

    Examples:
        >>> import torch
        >>> metric = LPCSI()
        >>> _ = metric.update(torch.full((2, 1, 32, 32), 0.5))
        >>> _ = metric.update(torch.full((1, 3, 24, 40), 0.2))
        >>> metric.count, metric.compute()
        (3, tensor(0., dtype=torch.float64))
        >>> metric.reset(); metric.count
        0
    """

    def __init__(self, data_range: float = 1.0, **kwargs: Any) -> None:
        unknown = set(kwargs) - {f.name for f in dataclasses.fields(LPCSISettings)}
        if unknown:
            raise TypeError(f"LPCSI got unexpected keyword arguments {sorted(unknown)}")
        self.settings = LPCSISettings.create(data_range=data_range, **kwargs)
        self._values: List[torch.Tensor] = []

    def update(self, images: torch.Tensor) -> torch.Tensor:
        """Add a batch (B, C, H, W); returns its per-image values, shape (B,)."""
        values = _lpc_si(_check_images(images), self.settings, False)
        assert isinstance(values, torch.Tensor)
        self._values.append(values.detach().to("cpu", torch.float64))
        return values

    @property
    def values(self) -> torch.Tensor:
        """Every per-image value seen so far, in order, shape (N,), float64."""
        return torch.cat(self._values) if self._values else torch.zeros(0, dtype=torch.float64)

    @property
    def count(self) -> int:
        """Number of images seen so far."""
        return sum(v.numel() for v in self._values)

    def compute(self) -> torch.Tensor:
        """The mean LPC-SI over every image seen; an error before the first :meth:`update`."""
        if not self._values:
            raise RuntimeError("LPCSI.compute() called before any update()")
        return self.values.mean()

    def reset(self) -> None:
        """Forget every image seen."""
        self._values = []

    def __repr__(self) -> str:
        return f"LPCSI({self.settings}, count={self.count})"


def blur_effect(images: torch.Tensor, data_range: float = 1.0, h_size: int = 11) -> torch.Tensor:
    """The blur effect of Crete-Roffet et al. (2007) per image, through scikit-image.

    A thin wrapper of :func:`skimage.measure.blur_effect` for batches: 0 is sharp, 1 is
    blurred (the opposite direction to :func:`lpc_si`). It compares the gradients of the image
    with those of a copy blurred by an ``h_size`` box filter, along each axis, and keeps the
    worse axis. Needs scikit-image, the ``skimage`` extra (``pip install 'stftblur[skimage]'``).

    Convention:
        ``images`` in [0, ``data_range``] are divided by ``data_range`` and handed to
        scikit-image as float64 on the CPU, one image at a time. Colour (3 channels) is
        converted by scikit-image's own ``rgb2gray`` (ITU-R BT.709 weights 0.2125, 0.7154,
        0.0721, not the BT.601 weights of :func:`lpc_si`) so that the values are exactly
        scikit-image's. The window is the 1-D box filter of ``h_size`` taps; the two pixels
        nearest each edge are left out, as scikit-image does. Not differentiable.

    Args:
        images: images of shape (B, 1, H, W) or (B, 3, H, W).
        data_range: the value of white.
        h_size: size of the re-blurring box filter.

    Returns:
        Blur effect, shape (B,), float64, on the device of ``images``.

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 32, 32)
        >>> x[..., 8:24, 8:24] = 1.0
        >>> bool(blur_effect(x) < blur_effect(torch.nn.functional.avg_pool2d(x, 5, 1, 2)))
        True
    """
    _skimage_blur_effect = require_extra("skimage.measure", "skimage", "blur_effect").blur_effect

    x = _check_images(images)
    data_range = check_positive_float(data_range, "data_range")
    h_size = check_positive_int(h_size, "h_size")
    arrays = (x.detach().to("cpu", torch.float64) / data_range).numpy()
    values = [
        _skimage_blur_effect(a[0] if a.shape[0] == 1 else a, h_size=h_size, channel_axis=None if a.shape[0] == 1 else 0)
        for a in arrays
    ]
    return torch.tensor(np.asarray(values, dtype=np.float64), device=x.device)
