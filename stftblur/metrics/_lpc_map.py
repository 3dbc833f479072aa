"""The LPC map of a batch and the index computed from it, as one PyTorch custom operator
(``torch.ops.stftblur.lpc_si``).

Convention:
    :func:`lpc_si_values` is the whole computation for checked images and validated settings:
    gray levels, the log-Gabor responses (:mod:`stftblur.metrics._lpc_bank`) in cache-sized
    chunks, the energy threshold, the phase coherence, the map and its rank-weighted mean. The
    compiled CPU kernels (:mod:`stftblur.metrics._lpc_native`) serve the filter product and the
    per-pixel accumulation where they apply; the pure-PyTorch loop of :func:`_lpc_map` is the
    reference. The operator wraps it with a fake (meta) implementation that gives the output
    shapes, so ``torch.compile`` treats LPC-SI as one opaque call (its data-dependent selection
    of pixels and the kernels' pointer work never reach the tracer) and runs the same code as
    eager mode. No autograd: LPC-SI is a measurement.
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional, Tuple

import torch

from stftblur._checks import check_finite
from stftblur.metrics import _lpc_native
from stftblur.metrics._lpc_bank import _complex_dtype, _filter_bank
from stftblur.metrics.fidelity import _compute_dtype

__all__: List[str] = []

#: ITU-R BT.601 luma weights (R, G, B), the weights MATLAB's ``rgb2gray`` documents.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# The exponential weights u_i = exp(-i / ((N - 1) beta_k)) of the sorted map fall below
# exp(-_TAIL) of the first one after _TAIL * (N - 1) * beta_k values; the values past that point
# change the index by less than exp(-_TAIL) ~ 1e-18 (the map lies in [0, 1]), far below float64
# rounding, so only the largest ones are needed and a partial sort (top-k) replaces the full sort.
_TAIL = 41.5


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


def lpc_si_values(
    x: torch.Tensor,
    data_range: float,
    scales: Tuple[float, ...],
    scale_weights: Tuple[float, ...],
    C: float,
    beta_k: float,
    n_orientations: int,
    border: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The index (B,) and the map (B, H, W) of checked (B, C, H, W) images, in the computation
    dtype, for validated settings and the resolved ``border``."""
    dtype = _compute_dtype(x)
    b, _, h, w = x.shape
    with torch.no_grad():
        gray = _to_gray255(x, data_range, dtype)
        compiled_weights = _lpc_native.integer_weights(scale_weights)
        if compiled_weights is not None and not _lpc_native.usable(_complex_dtype(dtype), x.device):
            compiled_weights = None
        bank = _filter_bank(h, w, scales, n_orientations, dtype, x.device, real=compiled_weights is not None)
        u, k = _rank_weights((h - 2 * border) * (w - 2 * border), beta_k, dtype, x.device)
        images_per_chunk, orientations_per_chunk = _chunking(b, bank)
        maps = torch.cat(
            [
                _lpc_map(g, bank, scale_weights, C, border, orientations_per_chunk, compiled_weights)
                for g in gray.split(images_per_chunk)
            ]
        )
        inner = maps[:, border : h - border, border : w - border].reshape(b, -1)
        if k < inner.shape[1]:
            top = inner.topk(k, dim=1, sorted=True).values
        else:
            top = inner.sort(dim=1, descending=True).values
        si = top @ u
    return si, maps


@torch.library.custom_op("stftblur::lpc_si", mutates_args=())
def lpc_si_op(
    images: torch.Tensor,
    data_range: float,
    scales: List[float],
    scale_weights: List[float],
    C: float,
    beta_k: float,
    n_orientations: int,
    border: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`lpc_si_values` as an operator: (index (B,), map (B, H, W))."""
    check_finite(images, "images")  # what the eager entry checks before; compiled graphs check here
    return lpc_si_values(images, data_range, tuple(scales), tuple(scale_weights), C, beta_k, n_orientations, border)


@lpc_si_op.register_fake
def _lpc_si_fake(images: torch.Tensor, *args: object) -> Tuple[torch.Tensor, torch.Tensor]:
    dtype = _compute_dtype(images)
    b, _, h, w = images.shape
    return images.new_empty(b, dtype=dtype), images.new_empty(b, h, w, dtype=dtype)
