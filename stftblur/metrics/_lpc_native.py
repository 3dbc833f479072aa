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
"""

from __future__ import annotations

import ctypes
from typing import List, Optional, Sequence

import torch

from stftblur._native import NativeLibrary, run_parallel, thread_count

__all__: List[str] = []

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Squares of small responses (|re| < 1e-19) are subnormal floats, which cost a microcode assist
   each on x86: the kernels run with flush-to-zero / denormals-are-zero set, restoring the
   caller's MXCSR on return (such magnitudes are far below any energy threshold). */
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FTZ_BEGIN const unsigned int csr_ = _mm_getcsr(); _mm_setcsr(csr_ | 0x8040u);
#define FTZ_END _mm_setcsr(csr_);
#else
#define FTZ_BEGIN
#define FTZ_END
#endif

/* resp: (S, B, O, H, W) complex, interleaved (re, im), contiguous; plane q = b * O + o. */
#define LPC_KERNELS(T, SUF, SQRT)                                                                    \
void lpc_thresholds_##SUF(const T* resp, int64_t q0, int64_t q1, int64_t H, int64_t W,           \
                          int64_t border, double* thr) {                                         \
    FTZ_BEGIN                                                                                    \
    const int64_t hw = H * W;                                                                    \
    const double n = (double)((H - 2 * border) * (W - 2 * border));                              \
    for (int64_t q = q0; q < q1; ++q) {                                                          \
        const T* p = resp + 2 * q * hw;                                                          \
        const T* c = p + 2 * (border * W + border);                                              \
        const double k = (double)SQRT(c[0] * c[0] + c[1] * c[1]); /* shift: a value of the set */ \
        double s1 = 0.0, s2 = 0.0;                                                               \
        for (int64_t y = border; y < H - border; ++y) {                                          \
            const T* row = p + 2 * y * W;                                                        \
            double r1 = 0.0, r2 = 0.0;                                                           \
            _Pragma("omp simd reduction(+:r1,r2)")                                               \
            for (int64_t x = border; x < W - border; ++x) {                                      \
                T re = row[2 * x], im = row[2 * x + 1];                                          \
                double d = (double)SQRT(re * re + im * im) - k;                                       \
                r1 += d;                                                                         \
                r2 += d * d;                                                                     \
            }                                                                                    \
            s1 += r1;                                                                            \
            s2 += r2;                                                                            \
        }                                                                                        \
        double mean = s1 / n;                                                                    \
        double var = n > 1.0 ? (s2 - s1 * mean) / (n - 1.0) : 0.0;                               \
        thr[q] = k + mean + 2.0 * sqrt(var > 0.0 ? var : 0.0);                                   \
    }                                                                                            \
    FTZ_END                                                                                      \
}                                                                                                \
                                                                                                 \
void lpc_accumulate_##SUF(const T* resp, const double* thr, int64_t S, int64_t B, int64_t O,      \
                          int64_t H, int64_t W, const int64_t* weights, int64_t r0, int64_t r1,  \
                          double* num, double* den, T* mag) {                                    \
    FTZ_BEGIN                                                                                    \
    const int64_t hw = H * W, scale_stride = 2 * B * O * hw;                                     \
    for (int64_t r = r0; r < r1; ++r) { /* r = b * H + y */                                      \
        const int64_t b = r / H, y = r % H;                                                      \
        double* nrow = num + r * W;                                                              \
        double* drow = den + r * W;                                                              \
        for (int64_t o = 0; o < O; ++o) {                                                        \
            const int64_t q = b * O + o;                                                         \
            const T t = (T)thr[q];                                                               \
            const T* f = resp + 2 * (q * hw + y * W);                                            \
            _Pragma("omp simd")                                                                  \
            for (int64_t x = 0; x < W; ++x) {                                                    \
                T re = f[2 * x], im = f[2 * x + 1];                                              \
                mag[x] = SQRT(re * re + im * im);                                                \
            }                                                                                    \
            for (int64_t x = 0; x < W; ++x) {                                                    \
                if (!(mag[x] > t)) continue;                                                     \
                const T e = mag[x] - t;                                                          \
                double zr = 1.0, zi = 0.0;                                                       \
                for (int64_t s = 0; s < S; ++s) {                                                \
                    const T* v = f + s * scale_stride + 2 * x;                                   \
                    const int64_t w = weights[s];                                                \
                    const double cr = (double)v[0], ci = w > 0 ? (double)v[1] : -(double)v[1];   \
                    for (int64_t j = 0; j < (w > 0 ? w : -w); ++j) {                             \
                        const double tr = zr * cr - zi * ci;                                     \
                        zi = zr * ci + zi * cr;                                                  \
                        zr = tr;                                                                 \
                    }                                                                            \
                }                                                                                \
                const double a2 = zr * zr + zi * zi; /* hypot only where a2 under/overflows */    \
                const double a = (a2 > 1e-290 && a2 < 1e290) ? sqrt(a2) : hypot(zr, zi);          \
                double cs = a > 0.0 ? zr / a : 1.0;                                              \
                if (cs < 0.0) cs = 0.0;                                                          \
                nrow[x] += cs * (double)e;                                                       \
                drow[x] += (double)e;                                                            \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    FTZ_END                                                                                      \
}

LPC_KERNELS(float, f32, sqrtf)
LPC_KERNELS(double, f64, sqrt)

/* Threaded entry points. Built with OpenMP, they run on the OpenMP runtime already loaded by
   PyTorch (same soname), whose workers would otherwise spin beside Python threads just after
   every FFT; each thread sets its own MXCSR. Without OpenMP they run on the calling thread. */
#define LPC_THREADED(T, SUF)                                                                     \
void lpc_thresholds_mt_##SUF(const T* resp, int64_t nq, int64_t H, int64_t W, int64_t border,   \
                             double* thr, int64_t threads) {                                    \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t q = 0; q < nq; ++q) lpc_thresholds_##SUF(resp, q, q + 1, H, W, border, thr);   \
}                                                                                               \
void lpc_accumulate_mt_##SUF(const T* resp, const double* thr, int64_t S, int64_t B, int64_t O, \
                             int64_t H, int64_t W, const int64_t* weights, double* num,          \
                             double* den, int64_t threads) {                                    \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t t = 0; t < threads; ++t) {                                                     \
        T* mag = (T*)malloc(sizeof(T) * (size_t)W);                                             \
        if (mag) {                                                                              \
            lpc_accumulate_##SUF(resp, thr, S, B, O, H, W, weights, B * H * t / threads,        \
                                 B * H * (t + 1) / threads, num, den, mag);                     \
            free(mag);                                                                          \
        }                                                                                       \
    }                                                                                           \
}

LPC_THREADED(float, f32)
LPC_THREADED(double, f64)

/* out (S, B, Oc, HW) complex = spectrum (B, HW) complex x gains[s, o0 + o] (S, O, HW) real: the
   same products as complex x complex with a zero imaginary part, reading half the bytes of
   the filters; blocks of pixels so that a block of the spectrum is read once for every output. */
#define LPC_PRODUCT(T, SUF)                                                                      \
void lpc_product_##SUF(const T* spec, const T* gains, int64_t B, int64_t S, int64_t O,           \
                       int64_t o0, int64_t Oc, int64_t hw, T* out, int64_t threads) {           \
    const int64_t block = 2048, nblocks = (hw + block - 1) / block;                              \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t k = 0; k < B * nblocks; ++k) {                                                 \
        const int64_t b = k / nblocks, p0 = (k % nblocks) * block;                              \
        const int64_t p1 = p0 + block < hw ? p0 + block : hw;                                   \
        const T* sp = spec + 2 * b * hw;                                                        \
        for (int64_t s = 0; s < S; ++s) {                                                       \
            for (int64_t o = 0; o < Oc; ++o) {                                                  \
                const T* g = gains + (s * O + o0 + o) * hw;                                     \
                T* dst = out + 2 * (((s * B + b) * Oc + o) * hw);                               \
                _Pragma("omp simd")                                                             \
                for (int64_t p = p0; p < p1; ++p) {                                             \
                    dst[2 * p] = sp[2 * p] * g[p];                                              \
                    dst[2 * p + 1] = sp[2 * p + 1] * g[p];                                      \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}

LPC_PRODUCT(float, f32)
LPC_PRODUCT(double, f64)

int lpc_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.lpc_openmp.argtypes = []
    lib.lpc_openmp.restype = ctypes.c_int
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"lpc_thresholds_mt_{suffix}")
        fn.argtypes = [ptr, i64, i64, i64, i64, ptr, i64]
        fn.restype = None
        fn = getattr(lib, f"lpc_accumulate_mt_{suffix}")
        fn.argtypes = [ptr, ptr] + [i64] * 5 + [ptr, ptr, ptr, i64]
        fn.restype = None
        fn = getattr(lib, f"lpc_product_{suffix}")
        fn.argtypes = [ptr, ptr] + [i64] * 6 + [ptr, i64]
        fn.restype = None
        fn = getattr(lib, f"lpc_thresholds_{suffix}")
        fn.argtypes = [ptr, i64, i64, i64, i64, i64, ptr]
        fn.restype = None
        fn = getattr(lib, f"lpc_accumulate_{suffix}")
        fn.argtypes = [ptr, ptr] + [i64] * 5 + [ptr, i64, i64, ptr, ptr, ptr]
        fn.restype = None


LIBRARY = NativeLibrary("lpc_si", _SOURCE, _declare, openmp=True)
_SUFFIX = {torch.complex64: "f32", torch.complex128: "f64"}


def integer_weights(weights: Sequence[float]) -> Optional[torch.Tensor]:
    """The scale weights as an int64 tensor, or None when one is not an integer."""
    if not all(float(w).is_integer() for w in weights):
        return None
    return torch.tensor([int(w) for w in weights], dtype=torch.int64)


def usable(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernels serve responses of this complex dtype on this device."""
    if device.type != "cpu" or dtype not in _SUFFIX or torch.compiler.is_compiling():
        return False
    return LIBRARY.available()


def product(spectrum: torch.Tensor, gains: torch.Tensor, o_start: int, n_orientations: int) -> torch.Tensor:
    """The (S, B, O_chunk, H, W) products of (B, H, W) spectra with the real filters
    ``gains[:, o_start : o_start + n_orientations]`` (``gains`` (S, O, H, W), contiguous): the
    values of ``spectrum[None, :, None] * gains[:, None, o_start:...]`` computed as complex x
    complex with a zero imaginary part, which round the same."""
    lib = LIBRARY.library()
    assert lib is not None
    spectrum = spectrum.contiguous()
    b, h, w = spectrum.shape
    n_s, n_o = gains.shape[:2]
    out = torch.empty(n_s, b, n_orientations, h, w, dtype=spectrum.dtype)
    threads = thread_count(n_s * b * n_orientations, h * w)
    getattr(lib, f"lpc_product_{_SUFFIX[spectrum.dtype]}")(
        spectrum.data_ptr(), gains.data_ptr(), b, n_s, n_o, o_start, n_orientations, h * w, out.data_ptr(), threads)
    return out


def accumulate(resp: torch.Tensor, border: int, weights: torch.Tensor, num: torch.Tensor, den: torch.Tensor) -> None:
    """Add the chunk's coherence x energy to ``num`` and its energy to ``den`` (both (B, H, W) float64).

    ``resp`` is the (S, B, O, H, W) complex response of a chunk of orientations; the caller has
    checked :func:`usable`.
    """
    lib = LIBRARY.library()
    assert lib is not None
    resp = resp.contiguous()
    n_s, b, n_o, h, w = resp.shape
    suffix = _SUFFIX[resp.dtype]
    data = resp.data_ptr()
    thr = torch.empty(b * n_o, dtype=torch.float64)
    if lib.lpc_openmp():  # the same splits as below, on PyTorch's OpenMP threads
        getattr(lib, f"lpc_thresholds_mt_{suffix}")(data, b * n_o, h, w, border, thr.data_ptr(),
                                                    thread_count(b * n_o, h * w))
        getattr(lib, f"lpc_accumulate_mt_{suffix}")(data, thr.data_ptr(), n_s, b, n_o, h, w, weights.data_ptr(),
                                                    num.data_ptr(), den.data_ptr(), thread_count(b * h, w * n_o))
        return
    thresholds = getattr(lib, f"lpc_thresholds_{suffix}")
    run_parallel(lambda q0, q1: thresholds(data, q0, q1, h, w, border, thr.data_ptr()), b * n_o, h * w)
    acc = getattr(lib, f"lpc_accumulate_{suffix}")
    real = resp.real.dtype

    def rows(r0: int, r1: int) -> None:
        scratch = torch.empty(w, dtype=real)  # one row of magnitudes per thread
        acc(data, thr.data_ptr(), n_s, b, n_o, h, w, weights.data_ptr(), r0, r1, num.data_ptr(), den.data_ptr(),
            scratch.data_ptr())

    run_parallel(rows, b * h, w * n_o)
