"""Optional compiled CPU kernels of the local-phase loss (float32), with a silent fallback.

The fused loss (:mod:`stftblur.losses.local_phase`) spends most of its CPU time outside the FFTs:
about 30 elementwise PyTorch passes over the coefficients (amplitudes, phase distance, the two
gradient factors) and the windowed overlap-add of the adjoint. This module compiles those two
steps, written here in plain C, into one pass each, the first time they are needed:

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
    :func:`status`. float64, and code traced by ``torch.compile``, always use the reference path.

    The kernels release the GIL (ctypes does), so large problems are split over
    ``torch.get_num_threads()`` Python threads; problems below :data:`PARALLEL_MIN_WORK` run on
    the calling thread alone.
"""

from __future__ import annotations

import ctypes
from typing import List, Optional, Tuple

import torch

from stftblur._native import PARALLEL_MIN_WORK, NativeLibrary, run_parallel  # noqa: F401 (re-exported)

__all__: List[str] = []

PHASE_MODES = {"wrapped": 0, "raw": 1, "cosine": 2}

_SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* atan on [0, 1]: Cephes' atanf reduction and polynomial (relative error about 2e-7). Both
   branches are computed and selected, so that the loop vectorizes without masked operations. */
static inline float atan01(float t) {
    int big = t > 0.41421356237309503f;
    float u = (t - 1.0f) / (t + 1.0f);
    float x = big ? u : t;
    float y0 = big ? 0.78539816339744831f : 0.0f;
    float z = x * x;
    return y0 + ((((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z
                  - 3.33329491539e-1f) * z * x + x);
}

/* atan2 for arguments that are never -0.0 (the callers add +0.0 first). */
static inline float atan2_nz(float y, float x) {
    float ax = fabsf(x), ay = fabsf(y);
    int swap = ay > ax;
    float mx = swap ? ay : ax, mn = swap ? ax : ay;
    float t = mn / (mx > 0.0f ? mx : 1.0f);
    float r = atan01(t);
    r = swap ? 1.57079632679489662f - r : r;
    r = x < 0.0f ? 3.14159265358979324f - r : r;
    return copysignf(r, y);
}

static inline float signf(float v) { return (float)((v > 0.0f) - (v < 0.0f)); }

/* One run of n coefficients. fo, ft: interleaved complex; go, gt: the gradients, written over
   fo, ft (element j is read before it is written); wv, wa, wp: the value weight and the two
   gradient weights. MODE, NO, NT, OFF are compile-time constants at every call, so that the loop
   has no branches. */
static inline __attribute__((always_inline)) double run(
        const int MODE, const int NO, const int NT, const int OFF, float *fo, float *ft,
        const float *wv, const float *wa, const float *wp, int64_t n,
        float pw, float aw, float off, float eps2) {
    const float tiny = 1e-12f, tiny2 = 1e-24f;
    float acc = 0.0f;
#pragma omp simd reduction(+:acc)
    for (int64_t j = 0; j < n; ++j) {
        float a = fo[2 * j], b = fo[2 * j + 1], c = ft[2 * j], d = ft[2 * j + 1];
        float po = a * a + b * b, pt = c * c + d * d;
        float ao = sqrtf(po), at = sqrtf(pt);
        float sa = ao - at;
        float per = fabsf(sa) * aw;
        sa = signf(sa);
        float xo = a, xt = c, qo = po, qt = pt, g;
        if (MODE == 1) {                      /* raw */
            if (OFF) {
                xo = a + off; xt = c + off;
                qo = xo * xo + b * b; qt = xt * xt + d * d;
            } else {
                xo = a + 0.0f; xt = c + 0.0f;
            }
            float dphi = atan2_nz(b + 0.0f, xo) - atan2_nz(d + 0.0f, xt);
            per = per + pw * fabsf(dphi);
            g = signf(dphi);
        } else {
            float re = a * c + b * d + 0.0f;
            float im = b * c - a * d;
            if (MODE == 0) {                  /* wrapped */
                per = per + pw * atan2_nz(fabsf(im), re);
                g = signf(im);
            } else {                          /* cosine */
                float prod = ao * at;
                float has = prod > 0.0f ? 1.0f : 0.0f;
                float norm = prod > tiny2 ? prod : tiny2;
                per = per + pw * ((-(re / norm) + 1.0f) * has);
                g = im / norm * has;
            }
        }
        acc += per * wv[j];
        if (NO) {
            float ca = sa / (ao > tiny ? ao : tiny) * wa[j];
            float cp = g / (qo > eps2 ? qo : eps2) * wp[j];
            fo[2 * j] = xo * ca - b * cp;
            fo[2 * j + 1] = b * ca + xo * cp;
        }
        if (NT) {
            float ca = -(sa / (at > tiny ? at : tiny) * wa[j]);
            float cp = -(g / (qt > eps2 ? qt : eps2) * wp[j]);
            ft[2 * j] = xt * ca - d * cp;
            ft[2 * j + 1] = d * ca + xt * cp;
        }
    }
    return (double)acc;
}

#define PATCHES(MODE, NO, NT, OFF) \
    for (int64_t i = i0; i < i1; ++i) { \
        double s = 0.0; \
        for (int64_t p = 0; p < rows; ++p) { \
            int64_t o = 2 * (i * s_patch + p * s_row); \
            s += run(MODE, NO, NT, OFF, fo + o, ft + o, wv + p * len, wa + p * len, wp + p * len, \
                     len, pw, aw, off, eps2); \
        } \
        sums[i] = s; \
    }
#define GRADS(MODE, OFF) \
    if (no && nt) { PATCHES(MODE, 1, 1, OFF) } else if (no) { PATCHES(MODE, 1, 0, OFF) } \
    else if (nt) { PATCHES(MODE, 0, 1, OFF) } else { PATCHES(MODE, 0, 0, OFF) }

/* Patches i0..i1 of (rows x len) coefficients each (strides in complex elements, every run
   contiguous); sums[i] = the weighted value of patch i; the gradients (when no / nt) replace
   fo / ft. mode: 0 wrapped, 1 raw, 2 cosine. */
void lpl_terms(int mode, float *fo, float *ft, int no, int nt,
               const float *wv, const float *wa, const float *wp,
               int64_t i0, int64_t i1, int64_t rows, int64_t len, int64_t s_patch, int64_t s_row,
               float pw, float aw, float off, float eps2, double *sums) {
    if (mode == 0) { GRADS(0, 0) }
    else if (mode == 1 && off != 0.0f) { GRADS(1, 1) }
    else if (mode == 1) { GRADS(1, 0) }
    else { GRADS(2, 0) }
}

/* Overlap-add: out (n, H, W) contiguous, rows r0..r1 of the flattened (n * H) row index, gets
   sum over patches (k, l) of win[r, c] * pat[i, k, l, r, c] at (k * s + r, l * s + c), for
   r < R, c < C. pat strides (in floats) sn, sk, sl, sr, sc; win (R, C) contiguous or NULL. */
void lpl_overlap_add(const float *pat, const float *win, float *out, int64_t r0, int64_t r1,
                     int64_t H, int64_t W, int64_t K, int64_t L, int64_t R, int64_t C, int64_t s,
                     int64_t sn, int64_t sk, int64_t sl, int64_t sr, int64_t sc) {
    for (int64_t q = r0; q < r1; ++q) {
        int64_t i = q / H, y = q % H;
        float *o = out + q * W;
        for (int64_t x = 0; x < W; ++x) o[x] = 0.0f;
        int64_t k_lo = y >= R ? (y - R) / s + 1 : 0;
        int64_t k_hi = y / s;
        if (k_hi > K - 1) k_hi = K - 1;
        for (int64_t k = k_lo; k <= k_hi; ++k) {
            int64_t r = y - k * s;
            if (r < 0 || r >= R) continue;
            const float *wr = win ? win + r * C : 0;
            for (int64_t l = 0; l < L; ++l) {
                const float *pr = pat + i * sn + k * sk + l * sl + r * sr;
                float *ol = o + l * s;
                if (wr) {
                    if (sc == 1) {
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) ol[c] += wr[c] * pr[c];
                    } else {
                        for (int64_t c = 0; c < C; ++c) ol[c] += wr[c] * pr[c * sc];
                    }
                } else {
                    if (sc == 1) {
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) ol[c] += pr[c];
                    } else {
                        for (int64_t c = 0; c < C; ++c) ol[c] += pr[c * sc];
                    }
                }
            }
        }
    }
}
"""

def _declare(lib: ctypes.CDLL) -> None:
    i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    lib.lpl_terms.argtypes = [ctypes.c_int, ptr, ptr, ctypes.c_int, ctypes.c_int] + [ptr] * 3 + [i64] * 6 + [f32] * 4 + [ptr]
    lib.lpl_terms.restype = None
    lib.lpl_overlap_add.argtypes = [ptr] * 3 + [i64] * 14
    lib.lpl_overlap_add.restype = None


LIBRARY = NativeLibrary("local_phase", _SOURCE, _declare)
_run_parallel = run_parallel


def _library() -> Optional[ctypes.CDLL]:
    return LIBRARY.library()


def available() -> bool:
    """Whether the compiled kernels are in use (building them on the first call)."""
    return LIBRARY.available()


def status() -> str:
    """Why the compiled kernels are (not) in use: the library path or the build error."""
    return LIBRARY.status()


def get_enabled() -> Optional[bool]:
    """The override set by :func:`set_enabled` (None: the default, compiled when available)."""
    return LIBRARY.enabled


def set_enabled(enabled: Optional[bool]) -> None:
    """Force the reference path (False) or return to the default (None); for tests and benchmarks."""
    LIBRARY.enabled = enabled


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


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
        return patches, 1, p * q, s_patch, p * q, swap
    return patches, p, q, s_patch, sp, swap


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
    """The compiled twin of ``local_phase._coefficient_terms``; None where it does not apply.

    The gradients are written over ``fo`` and ``ft`` (which the caller no longer needs) and
    returned as those tensors.
    """
    if torch.compiler.is_compiling():  # opaque pointer writes cannot be traced: reference path
        return None
    lib = _library()
    if lib is None or fo.dtype != torch.complex64 or fo.device.type != "cpu" or fo.dim() < 3:
        return None
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
    wv, wa, wp = (w.to(torch.float32).contiguous() for w in (wv, wa, wp))
    fo_f = torch.view_as_real(fo)
    ft_f = torch.view_as_real(ft)
    sums = torch.empty(patches, dtype=torch.float64)
    go = fo if need_o else None
    gt = ft if need_t else None
    args = (
        PHASE_MODES[phase_distance], fo_f.data_ptr(), ft_f.data_ptr(), int(need_o), int(need_t),
        wv.data_ptr(), wa.data_ptr(), wp.data_ptr(),
    )
    tail = (rows, length, s_patch, s_row, float(phase_weight), float(amplitude_weight), float(phase_offset),
            float(eps) * float(eps), sums.data_ptr())

    def fn(i0: int, i1: int) -> None:
        lib.lpl_terms(*args, i0, i1, *tail)

    _run_parallel(fn, patches, p * q)
    values = sums.view(n, -1).sum(1).to(torch.float32)
    return values, go, gt


def overlap_add(
    patches: torch.Tensor, window: Optional[torch.Tensor], height: int, width: int, stride: int
) -> Optional[torch.Tensor]:
    """Window and overlap-add (n, K, L, R, C) float32 patch gradients into (n, height, width);
    patch (k, l) row r, column c lands at (k * stride + r, l * stride + c). None where the
    compiled kernel does not apply."""
    if torch.compiler.is_compiling():
        return None
    lib = _library()
    if lib is None or patches.dtype != torch.float32 or patches.device.type != "cpu" or patches.dim() != 5:
        return None
    n, k, l, r, c = patches.shape
    sn, sk, sl, sr, sc = patches.stride()
    transpose = sr < sc  # work on the transposed images, so that the inner loop is contiguous
    if transpose:
        k, l, r, c, sk, sl, sr, sc = l, k, c, r, sl, sk, sc, sr
        height, width = width, height
        if window is not None:
            window = window.transpose(0, 1)
    win = None
    if window is not None:
        win = window.to(torch.float32).contiguous()
    out = torch.empty(n, height, width, dtype=torch.float32)

    def fn(q0: int, q1: int) -> None:
        lib.lpl_overlap_add(patches.data_ptr(), _ptr(win), out.data_ptr(), q0, q1, height, width, k, l, r, c,
                            stride, sn, sk, sl, sr, sc)

    _run_parallel(fn, n * height, width * max(1, (r * c) // (stride * stride)))
    return out.transpose(-1, -2) if transpose else out
