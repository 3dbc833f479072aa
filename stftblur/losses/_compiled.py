"""Optional compiled CPU kernels of the local-phase loss (float32), with a silent fallback.

The fused loss (:mod:`stftblur.losses.local_phase`) spends most of its CPU time outside the FFTs:
about 30 elementwise PyTorch passes over the coefficients (amplitudes, phase distance, the two
gradient factors) and the windowed overlap-add of the adjoint. This module compiles those two
steps, written in plain C (``stftblur/csrc/local_phase.c``), into one pass each, the first time
they are needed:

- :func:`coefficient_terms` (one read of both spectra, one write of the gradients, in place);
- :func:`overlap_add` (window multiply and overlap-add of the patch gradients in one pass).

Convention:
    Plain C built and loaded by :mod:`stftblur._native` (the system's C compiler, cached in
    ``$STFTBLUR_CACHE``, default ``~/.cache/stftblur``). Floating-point contraction is off, so
    every machine rounds as the pure-PyTorch reference does, operation by operation, except for
    ``atan2`` (a polynomial accurate to about 2e-7, where PyTorch's is accurate to 1 ulp) and the
    order of the final sums. Without a compiler, when the build fails, or with
    ``STFTBLUR_COMPILED=0``, :func:`available` is False and the loss uses its pure-PyTorch
    reference path, which gives the same results within float32 rounding; the reason is kept in
    :func:`status`. float64 always uses the reference path. Under ``torch.compile`` the loss is one
    custom operator (:mod:`stftblur.losses._ops`) whose call runs these kernels as eager does.

    The kernels release the GIL (ctypes does), so large problems are split over at most
    ``torch.get_num_threads()`` Python threads; problems below :data:`PARALLEL_MIN_WORK` run on
    the calling thread alone. Nothing here changes the thread count.

    Both entries check what they are given (dtype, shape, strides, device, overlapping memory)
    and raise TypeError or ValueError naming the argument before a pointer reaches C; their
    signatures and the None they return where they do not serve are what the fused pass
    (:mod:`stftblur.losses._fused`, run inside the custom operator of
    :mod:`stftblur.losses._ops`) relies on.
"""

from __future__ import annotations

import ctypes
from typing import List, Optional, Tuple

import torch

from stftblur import _native
from stftblur._native import PARALLEL_MIN_WORK, NativeLibrary, run_parallel  # noqa: F401 (re-exported)

__all__: List[str] = []

PHASE_MODES = {"wrapped": 0, "raw": 1, "cosine": 2}

SOURCE = "local_phase.c"  # in stftblur/csrc
_REALS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _declare(lib: ctypes.CDLL) -> None:
    i64, f32, ptr, c_int = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p, ctypes.c_int
    lib.lpl_terms.argtypes = [c_int, ptr, ptr, c_int, c_int] + [ptr] * 3 + [i64] * 6 + [f32] * 4 + [ptr]
    lib.lpl_terms.restype = c_int
    lib.lpl_overlap_add.argtypes = [ptr] * 3 + [i64] * 14
    lib.lpl_overlap_add.restype = c_int


LIBRARY = NativeLibrary("local_phase", SOURCE, _declare)
_run_parallel = run_parallel


def _library() -> Optional[ctypes.CDLL]:
    return LIBRARY.library()


def available() -> bool:
    """Whether the compiled kernels are in use (building them on the first call)."""
    return LIBRARY.available()


def status() -> str:
    """Why the compiled kernels are (not) in use: the library path or the build error."""
    return LIBRARY.status()


def _run_layout(fo: torch.Tensor, ft: torch.Tensor) -> Optional[Tuple[int, int, int, int, int, bool]]:
    """(patches, rows, run length, patch stride, row stride, swap) when fo and ft (same strides)
    are evenly strided patches of (P, Q) coefficients with one contiguous axis (the last, or
    the second-to-last with swap=True); None otherwise. Strides in complex elements."""
    if ft.stride() != fo.stride():
        return None
    *lead, p, q = fo.shape
    sp, sq = fo.stride()[-2:]
    swap = sp < sq
    if swap:
        p, q, sp, sq = q, p, sq, sp
    if sq != 1 and q > 1:
        return None
    patches, expect = 1, None
    s_patch = 0
    for d, s in zip(reversed(lead), reversed(fo.stride()[: len(lead)])):
        if d == 1:
            continue
        if expect is None:
            s_patch, expect = s, s
        elif s != expect:
            return None
        expect *= d
        patches *= d
    if sp == q:  # the whole patch is one contiguous run
        p, q, sp = 1, p * q, p * q
    if not _disjoint_runs(patches, p, q, s_patch, sp):  # e.g. expanded: the kernel writes in place
        return None
    return patches, p, q, s_patch, sp, swap


def _disjoint_runs(patches: int, rows: int, length: int, s_patch: int, s_row: int) -> bool:
    """Whether the runs (patch i, row p) at i * s_patch + p * s_row of ``length`` elements are
    pairwise disjoint (a sufficient condition: rows one after another, patches too)."""
    return (rows <= 1 or s_row >= length) and (patches <= 1 or s_patch >= (rows - 1) * s_row + length)


def _check_weight(w: object, name: str, fo: torch.Tensor, pq: Tuple[int, int]) -> torch.Tensor:
    w = _native.check_tensor(w, name, dtypes=_REALS, cpu=False)
    if w.device != fo.device:
        raise ValueError(f"{name} must be on the device of fo ({fo.device}), got {w.device}")
    shape = tuple(w.shape)
    ok = len(shape) <= 2 and all(d in (1, t) for d, t in zip(reversed(shape), reversed(pq)))
    if not ok:  # (torch.broadcast_shapes says the same, ten times slower)
        raise ValueError(f"{name} must broadcast to the coefficient shape {pq}, got shape {tuple(w.shape)}")
    return w


def _check_terms_args(fo, ft, w_val, w_amp, w_ph, phase_weight, amplitude_weight, phase_distance,  # type: ignore[no-untyped-def]
                      phase_offset, eps, need_o, need_t) -> None:
    """What :func:`coefficient_terms` is given, checked whichever path then serves it."""
    fo = _native.check_tensor(fo, "fo", dtypes=(torch.complex64, torch.complex128), cpu=False)
    ft = _native.check_tensor(ft, "ft", dtype=fo.dtype, cpu=False)
    if ft.device != fo.device:
        raise ValueError(f"ft must be on the device of fo ({fo.device}), got {ft.device}")
    if fo.dim() < 3:
        raise ValueError(f"fo must have at least 3 dimensions (images, ..., P, Q), got shape {tuple(fo.shape)}")
    if ft.shape != fo.shape:
        raise ValueError(f"ft must have the shape of fo {tuple(fo.shape)}, got {tuple(ft.shape)}")
    pq = (fo.shape[-2], fo.shape[-1])
    for w, name in ((w_val, "w_val"), (w_amp, "w_amp"), (w_ph, "w_ph")):
        _check_weight(w, name, fo, pq)
    if phase_distance not in PHASE_MODES:
        raise ValueError(f"phase_distance must be one of {sorted(PHASE_MODES)}, got {phase_distance!r}")
    for value, name in ((phase_weight, "phase_weight"), (amplitude_weight, "amplitude_weight"),
                        (phase_offset, "phase_offset"), (eps, "eps")):
        _native.check_float(value, name)
    for value, name in ((need_o, "need_o"), (need_t, "need_t")):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _terms_kernel(
    lib: ctypes.CDLL, mode: int, fo: torch.Tensor, ft: torch.Tensor, need_o: bool, need_t: bool,
    weights: Tuple[torch.Tensor, torch.Tensor, torch.Tensor], layout: Tuple[int, int, int, int, int],
    params: Tuple[float, float, float, float], sums: torch.Tensor,
) -> None:
    """The checked call of ``lpl_terms``: ``layout`` = (patches, rows, run length, patch stride,
    row stride) of fo and ft (complex64, same strides) in complex elements; ``weights`` (rows,
    length) float32 contiguous; ``sums`` (patches,) float64. Raises before any pointer is read."""
    _native.check_tensor(fo, "fo", dtype=torch.complex64)
    _native.check_tensor(ft, "ft", dtype=torch.complex64)
    if ft.stride() != fo.stride() or ft.shape != fo.shape:
        raise ValueError("fo and ft must have the same shape and strides")
    patches, rows, length, s_patch, s_row = layout
    if min(layout) < 0:
        raise ValueError(f"layout must be non-negative, got {layout}")
    if mode not in PHASE_MODES.values():
        raise ValueError(f"mode must be one of {sorted(PHASE_MODES.values())}, got {mode}")
    for w, name in zip(weights, ("w_val", "w_amp", "w_ph")):
        _native.check_tensor(w, name, dtype=torch.float32, shape=(rows, length), contiguous=True)
    _native.check_tensor(sums, "sums", dtype=torch.float64, shape=(patches,), contiguous=True)
    if patches and rows and length:
        last = (patches - 1) * s_patch + (rows - 1) * s_row + length - 1
        extent = sum((d - 1) * s for d, s in zip(fo.shape, fo.stride()) if d > 0)
        if last > extent:  # the runs must lie inside the tensors (and so inside their storage)
            raise ValueError(f"layout {layout} addresses beyond fo and ft (shape {tuple(fo.shape)}, "
                             f"strides {fo.stride()})")
        if (need_o or need_t) and not _disjoint_runs(patches, rows, length, s_patch, s_row):
            raise ValueError(f"layout {layout}: patches or rows overlap, and the kernel writes them")
        for t, name in ((fo, "fo"), (ft, "ft")):
            _native.check_span(torch.view_as_real(t), name, 2 * last + 1)
        if need_o or need_t:
            _native.check_disjoint(fo, ft, "fo and ft")
    pw, aw, off, eps2 = params
    fo_ptr, ft_ptr = torch.view_as_real(fo).data_ptr(), torch.view_as_real(ft).data_ptr()
    wv, wa, wp = (w.data_ptr() for w in weights)
    out = sums.data_ptr()

    def fn(i0: int, i1: int) -> None:
        _native.check_status(lib.lpl_terms(mode, fo_ptr, ft_ptr, int(need_o), int(need_t), wv, wa, wp, i0, i1,
                                           rows, length, s_patch, s_row, pw, aw, off, eps2, out), "lpl_terms")

    _run_parallel(fn, patches, rows * length)


def coefficient_terms(
    fo: torch.Tensor,
    ft: torch.Tensor,
    w_val: torch.Tensor,
    w_amp: torch.Tensor,
    w_ph: torch.Tensor,
    phase_weight: float,
    amplitude_weight: float,
    phase_distance: str,
    phase_offset: float,
    eps: float,
    need_o: bool,
    need_t: bool,
) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]]:
    """The compiled twin of ``stftblur.losses._fused._coefficient_terms``; None where it does not serve
    (kernels unavailable, ``torch.compile`` tracing, complex128, not on the CPU).

    The gradients are written over ``fo`` and ``ft`` (which the caller no longer needs) and
    returned as those tensors. Inconsistent arguments (dtypes, shapes, devices, a weight that
    does not broadcast to the coefficient shape, an unknown ``phase_distance``) raise
    TypeError or ValueError naming the argument, on every path.
    """
    if torch.compiler.is_compiling():  # opaque pointer writes cannot be traced: reference path
        return None
    _check_terms_args(fo, ft, w_val, w_amp, w_ph, phase_weight, amplitude_weight, phase_distance, phase_offset,
                      eps, need_o, need_t)
    if fo.dtype != torch.complex64 or fo.device.type != "cpu":
        return None
    lib = _library()
    if lib is None:
        return None
    fo, ft = fo.resolve_conj(), ft.resolve_conj()
    if (need_o or need_t) and _native.overlaps(fo, ft):  # the gradients are written over both
        ft = ft.clone()
    layout = _run_layout(fo, ft)
    if layout is None:  # e.g. the rows transform's strided FFT output: one copy makes it simple
        fo, ft = fo.contiguous(), ft.contiguous()
        layout = _run_layout(fo, ft)
        assert layout is not None
    patches, rows, length, s_patch, s_row, swap = layout
    n = fo.shape[0]
    p, q = fo.shape[-2:]
    wv, wa, wp = (w.expand(p, q) for w in (w_val, w_amp, w_ph))
    if swap:
        wv, wa, wp = (w.transpose(0, 1) for w in (wv, wa, wp))
    wv, wa, wp = (w.to(torch.float32).contiguous().view(rows, length) for w in (wv, wa, wp))
    sums = torch.empty(patches, dtype=torch.float64)
    params = (float(phase_weight), float(amplitude_weight), float(phase_offset), float(eps) * float(eps))
    _terms_kernel(lib, PHASE_MODES[phase_distance], fo, ft, need_o, need_t, (wv, wa, wp),
                  (patches, rows, length, s_patch, s_row), params, sums)
    values = sums.view(n, -1).sum(1).to(torch.float32) if n else torch.zeros(0, dtype=torch.float32)
    return values, (fo if need_o else None), (ft if need_t else None)


def _overlap_add_kernel(
    lib: ctypes.CDLL, patches: torch.Tensor, win: Optional[torch.Tensor], out: torch.Tensor, stride: int
) -> None:
    """The checked call of ``lpl_overlap_add``: ``patches`` (n, K, L, R, C) float32, any
    strides; ``win`` None or (>= R, C) float32 contiguous; ``out`` (n, H, W) float32
    contiguous, every patch inside it. Raises before any pointer is read."""
    _native.check_tensor(patches, "patches", dtype=torch.float32, dim=5)
    n, k, l, r, c = patches.shape
    _native.check_tensor(out, "out", dtype=torch.float32, dim=3, contiguous=True)
    _native.check_int(stride, "stride", 1)
    n_out, height, width = out.shape
    if n_out != n:
        raise ValueError(f"out must hold {n} images, got shape {tuple(out.shape)}")
    if min(k, l, r, c) < 1 or (k - 1) * stride + r > height or (l - 1) * stride + c > width:
        raise ValueError(f"patches of shape {tuple(patches.shape)} at stride {stride} do not fit in "
                         f"{height}x{width} images")
    if win is not None:
        _native.check_tensor(win, "window", dtype=torch.float32, dim=2, contiguous=True)
        if win.shape[0] < r or win.shape[1] != c:
            raise ValueError(f"window must have shape ({r}, {c}) (or more rows), got {tuple(win.shape)}")
    _native.check_disjoint(patches, out, "patches and out")
    if n == 0 or height == 0 or width == 0:
        return
    pat_ptr, win_ptr, out_ptr = patches.data_ptr(), (0 if win is None else win.data_ptr()), out.data_ptr()
    strides = patches.stride()

    def fn(q0: int, q1: int) -> None:
        _native.check_status(lib.lpl_overlap_add(pat_ptr, win_ptr or None, out_ptr, q0, q1, height, width, k, l, r, c,
                                                 stride, *strides), "lpl_overlap_add")

    _run_parallel(fn, n * height, width * max(1, (r * c) // (stride * stride)))


def overlap_add(
    patches: torch.Tensor, window: Optional[torch.Tensor], height: int, width: int, stride: int
) -> Optional[torch.Tensor]:
    """Window and overlap-add (n, K, L, R, C) patch gradients into (n, height, width);
    patch (k, l) row r, column c lands at (k * stride + r, l * stride + c). None where the
    compiled kernel does not serve (kernels unavailable, ``torch.compile`` tracing, not
    float32, not on the CPU). Patches that do not fit the images, a window of the wrong
    shape or device raise ValueError or TypeError naming the argument, on every path."""
    if torch.compiler.is_compiling():
        return None
    _native.check_tensor(patches, "patches", dtypes=_REALS, dim=5, cpu=False)
    for value, name in ((height, "height"), (width, "width"), (stride, "stride")):
        _native.check_int(value, name, 1)
    n, k, l, r, c = patches.shape
    if window is not None:
        _native.check_tensor(window, "window", dtypes=_REALS, dim=2, cpu=False)
        if window.device != patches.device:
            raise ValueError(f"window must be on the device of patches ({patches.device}), got {window.device}")
        if window.shape[0] < r or window.shape[1] != c:
            raise ValueError(f"window must have shape ({r}, {c}) (or more rows), got {tuple(window.shape)}")
    if min(k, l, r, c) < 1 or (k - 1) * stride + r > height or (l - 1) * stride + c > width:
        raise ValueError(f"patches of shape {tuple(patches.shape)} at stride {stride} do not fit in "
                         f"{height}x{width} images")
    if patches.dtype != torch.float32 or patches.device.type != "cpu":
        return None
    lib = _library()
    if lib is None:
        return None
    patches = patches.resolve_neg()
    if window is not None:
        window = window[:r]
    sn, sk, sl, sr, sc = patches.stride()
    transpose = sr < sc  # work on the transposed images, so that the inner loop is contiguous
    if transpose:
        patches = patches.transpose(1, 2).transpose(3, 4)
        height, width = width, height
        if window is not None:
            window = window.transpose(0, 1)
    win = None if window is None else window.to(torch.float32).contiguous()
    out = torch.empty(n, height, width, dtype=torch.float32)
    _overlap_add_kernel(lib, patches, win, out, stride)
    return out.transpose(-1, -2) if transpose else out
