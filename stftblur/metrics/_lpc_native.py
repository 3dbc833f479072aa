"""Optional compiled CPU kernels of LPC-SI's per-pixel work, with a silent fallback.

Besides its FFTs, :func:`stftblur.metrics.lpc_si` spends its time multiplying the spectrum by
the filters and in elementwise PyTorch passes over the finest-scale responses (magnitude,
threshold, selection, gathers, the phase-coherence products, scatter-adds). C kernels, built by
:mod:`stftblur._native` and run on PyTorch's OpenMP threads, do the same work:

- :func:`product`: spectrum times a chunk of filters, reading the bank stored real (half the
  bytes); bit-identical to the complex product of the reference path;
- :func:`accumulate`: per image and orientation, the energy threshold mean + 2 sample std of
  the finest-scale magnitude inside the border (one pass, shifted sums in float64); then, for
  every pixel above it, the phase coherence max(0, cos(sum_s w_s phi_s)) of the scales at that
  pixel, weighted by the energy above the threshold, added to the numerator and denominator of
  the LPC map (float64 sums), row by row.

Convention:
    Used for float32 and float64 CPU images with integer scale weights (the default
    1, -3, 2); anything else, ``STFTBLUR_COMPILED=0``, no compiler, or ``LIBRARY.enabled =
    False`` takes the pure-PyTorch reference path of :mod:`stftblur.metrics.lpc_si`, which the
    tests compare with this one. The products of the coherence are taken in float64 as the
    reference does; the map's sums are float64 here (float32 in the reference for float32
    input), so the two paths agree to float32 rounding, not bit for bit.

    The C source is ``stftblur/csrc/lpc_si.c``. :func:`product` and :func:`accumulate` check
    every tensor they are given (dtype, shape, contiguity, device) before a pointer reaches C;
    a failed scratch allocation in C raises MemoryError (no row is skipped).
"""

from __future__ import annotations

import ctypes
from typing import List, Optional, Sequence

import torch

from stftblur import _native
from stftblur._native import NativeLibrary, run_parallel, thread_count

__all__: List[str] = []

SOURCE = "lpc_si.c"  # in stftblur/csrc
_SOURCE = SOURCE

#: The largest scale weight (in magnitude) the kernels take: a weight is a power computed by
#: repeated products (stftblur/csrc/lpc_si.c checks the same bound).
MAX_WEIGHT = 1024


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.lpc_openmp.argtypes = []
    lib.lpc_openmp.restype = c_int
    for suffix in ("f32", "f64"):
        signatures = {
            "lpc_thresholds_mt": [ptr, i64, i64, i64, i64, ptr, i64],
            "lpc_accumulate_mt": [ptr, ptr] + [i64] * 5 + [ptr, ptr, ptr, i64, i64],
            "lpc_product": [ptr, ptr] + [i64] * 6 + [ptr, i64],
            "lpc_thresholds_range": [ptr, i64, i64, i64, i64, i64, ptr],
            "lpc_accumulate_range": [ptr, ptr] + [i64] * 5 + [ptr, i64, i64, ptr, ptr, i64],
        }
        for name, argtypes in signatures.items():
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes = argtypes
            fn.restype = c_int


LIBRARY = NativeLibrary("lpc_si", SOURCE, _declare, openmp=True)
_SUFFIX = {torch.complex64: "f32", torch.complex128: "f64"}
_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def integer_weights(weights: Sequence[float]) -> Optional[torch.Tensor]:
    """The scale weights as an int64 tensor, or None when one is not an integer (or is larger
    than :data:`MAX_WEIGHT` in magnitude): the reference path serves those."""
    if not all(float(w).is_integer() and abs(float(w)) <= MAX_WEIGHT for w in weights):
        return None
    return torch.tensor([int(w) for w in weights], dtype=torch.int64)


def usable(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernels serve responses of this complex dtype on this device."""
    if device.type != "cpu" or dtype not in _SUFFIX or torch.compiler.is_compiling():
        return False
    return LIBRARY.available()


def _require_library() -> ctypes.CDLL:
    lib = LIBRARY.library()
    if lib is None:
        raise RuntimeError(f"the compiled LPC-SI kernels are unavailable ({LIBRARY.status()}); check usable() first")
    return lib


def product(spectrum: torch.Tensor, gains: torch.Tensor, o_start: int, n_orientations: int) -> torch.Tensor:
    """The (S, B, O_chunk, H, W) products of (B, H, W) spectra with the real filters
    ``gains[:, o_start : o_start + n_orientations]`` (``gains`` (S, O, H, W), contiguous): the
    values of ``spectrum[None, :, None] * gains[:, None, o_start:...]`` computed as complex x
    complex with a zero imaginary part, which round the same."""
    spectrum = _native.check_tensor(spectrum, "spectrum", dtypes=tuple(_SUFFIX), dim=3)
    b, h, w = spectrum.shape
    gains = _native.check_tensor(gains, "gains", dtype=_REAL[spectrum.dtype], dim=4, contiguous=True)
    n_s, n_o = gains.shape[:2]
    if tuple(gains.shape[2:]) != (h, w):
        raise ValueError(f"gains must have shape (S, O, {h}, {w}) to match spectrum, got {tuple(gains.shape)}")
    _native.check_int(o_start, "o_start", 0)
    _native.check_int(n_orientations, "n_orientations", 0)
    if o_start + n_orientations > n_o:
        raise ValueError(f"o_start + n_orientations must be <= the {n_o} orientations of gains, "
                         f"got {o_start} + {n_orientations}")
    lib = _require_library()
    spectrum = spectrum.contiguous()
    out = torch.empty(n_s, b, n_orientations, h, w, dtype=spectrum.dtype)
    threads = thread_count(n_s * b * n_orientations, h * w)
    code = getattr(lib, f"lpc_product_{_SUFFIX[spectrum.dtype]}")(
        spectrum.data_ptr(), gains.data_ptr(), b, n_s, n_o, o_start, n_orientations, h * w, out.data_ptr(), threads)
    _native.check_status(code, "lpc_product")
    return out


def _check_accumulate(resp: object, border: object, weights: object, num: object, den: object) -> torch.Tensor:
    resp = _native.check_tensor(resp, "resp", dtypes=tuple(_SUFFIX), dim=5)
    n_s, b, n_o, h, w = resp.shape
    _native.check_int(border, "border", 0)
    if h <= 2 * border or w <= 2 * border:  # type: ignore[operator]
        raise ValueError(f"border must leave pixels inside {h}x{w} images, got {border}")
    if n_s < 1:
        raise ValueError(f"resp must have at least one scale, got shape {tuple(resp.shape)}")
    weights = _native.check_tensor(weights, "weights", dtype=torch.int64, shape=(n_s,), contiguous=True)
    if bool((weights.abs() > MAX_WEIGHT).any()):
        raise ValueError(f"weights must be at most {MAX_WEIGHT} in magnitude, got {weights.tolist()}")
    for t, name in ((num, "num"), (den, "den")):
        _native.check_tensor(t, name, dtype=torch.float64, shape=(b, h, w), contiguous=True)
    _native.check_disjoint(num, den, "num and den")  # type: ignore[arg-type]
    for t, name in ((num, "num"), (den, "den")):
        _native.check_disjoint(resp, t, f"resp and {name}")  # type: ignore[arg-type]
    return resp


def accumulate(resp: torch.Tensor, border: int, weights: torch.Tensor, num: torch.Tensor, den: torch.Tensor,
               *, _scratch: Optional[int] = None) -> None:
    """Add the chunk's coherence x energy to ``num`` and its energy to ``den`` (both (B, H, W)
    float64, contiguous, updated in place).

    ``resp`` is the (S, B, O, H, W) complex response of a chunk of orientations; ``weights``
    the (S,) int64 scale weights (:func:`integer_weights`). Every argument is checked before
    a pointer reaches C; MemoryError when the kernel cannot allocate its row scratch
    (``_scratch``, values per thread, default the row length, is a test hook).
    """
    resp = _check_accumulate(resp, border, weights, num, den)
    lib = _require_library()
    resp = resp.contiguous()
    n_s, b, n_o, h, w = resp.shape
    scratch = w if _scratch is None else _native.check_int(_scratch, "_scratch", w)
    suffix = _SUFFIX[resp.dtype]
    data, thr = resp.data_ptr(), torch.empty(b * n_o, dtype=torch.float64)
    if lib.lpc_openmp():  # the same splits as below, on PyTorch's OpenMP threads
        code = getattr(lib, f"lpc_thresholds_mt_{suffix}")(data, b * n_o, h, w, border, thr.data_ptr(),
                                                           thread_count(b * n_o, h * w))
        _native.check_status(code, "lpc_thresholds")
        code = getattr(lib, f"lpc_accumulate_mt_{suffix}")(data, thr.data_ptr(), n_s, b, n_o, h, w, weights.data_ptr(),
                                                           num.data_ptr(), den.data_ptr(), thread_count(b * h, w * n_o),
                                                           scratch)
        _native.check_status(code, "lpc_accumulate")
        return
    thresholds = getattr(lib, f"lpc_thresholds_range_{suffix}")
    run_parallel(lambda q0, q1: _native.check_status(thresholds(data, q0, q1, h, w, border, thr.data_ptr()),
                                                     "lpc_thresholds"), b * n_o, h * w)
    acc = getattr(lib, f"lpc_accumulate_range_{suffix}")

    def rows(r0: int, r1: int) -> None:
        _native.check_status(acc(data, thr.data_ptr(), n_s, b, n_o, h, w, weights.data_ptr(), r0, r1, num.data_ptr(),
                                 den.data_ptr(), scratch), "lpc_accumulate")

    run_parallel(rows, b * h, w * n_o)
