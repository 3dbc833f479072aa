/* Compiled CPU kernels of LPC-SI's per-pixel work: stftblur/metrics/_lpc_native.py.

   lpc_product_*      spectrum times a chunk of real filters (bit-identical to the complex
                      product with a zero imaginary part);
   lpc_thresholds_*   per image and orientation, the energy threshold mean + 2 sample std of the
                      finest-scale magnitude inside the border (shifted sums in float64);
   lpc_accumulate_*   for every pixel above its threshold, the phase coherence of the scales,
                      weighted by the energy above the threshold, added to the map's numerator
                      and denominator (float64), row by row.

   Each comes as float32 (_f32) and float64 (_f64). The _mt entries split their work over
   OpenMP threads when built with -fopenmp (the runtime PyTorch has loaded: same soname) and run
   on the calling thread otherwise; the _range entries do a range of the work, for callers that
   split it over their own threads. Every entry returns a status code of stftblur_native.h. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "stftblur_native.h"

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

/* resp: (S, B, O, H, W) complex, interleaved (re, im), contiguous; plane q = b * O + o.
   thresholds of planes q0..q1 into thr[q]; needs H > 2 border, W > 2 border. */
#define LPC_KERNELS(T, SUF, SQRT)                                                                    \
static void thresholds_##SUF(const T* resp, int64_t q0, int64_t q1, int64_t H, int64_t W,        \
                             int64_t border, double* thr) {                                      \
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
                double d = (double)SQRT(re * re + im * im) - k;                                  \
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
/* Rows r0..r1 of the flattened (B * H) row index; mag: scratch of W values. */                 \
static void accumulate_##SUF(const T* resp, const double* thr, int64_t S, int64_t B, int64_t O,   \
                             int64_t H, int64_t W, const int64_t* weights, int64_t r0, int64_t r1, \
                             double* num, double* den, T* mag) {                                 \
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

/* The checks every threshold / accumulation entry shares. */
static int plane_args_ok(int64_t S, int64_t B, int64_t O, int64_t H, int64_t W, int64_t border) {
    return S >= 1 && B >= 0 && O >= 0 && border >= 0 && H > 2 * border && W > 2 * border;
}

/* Weights of at most 1024 in magnitude (_lpc_native.MAX_WEIGHT): a weight is a power taken
   by repeated products. */
static int weights_ok(const int64_t* weights, int64_t S) {
    for (int64_t s = 0; s < S; ++s)
        if (weights[s] > 1024 || weights[s] < -1024) return 0;
    return 1;
}

/* Scratch of n values of `size` bytes, NULL when it cannot be had (n * size overflows, or
   malloc fails). */
static void* scratch(int64_t n, size_t size) {
    if (n < 1 || (uint64_t)n > SIZE_MAX / size) return NULL;
    return malloc((size_t)n * size);
}

#define LPC_ENTRIES(T, SUF)                                                                      \
/* Thresholds of planes q0..q1 (B * O planes of an (S, B, O, H, W) response). */                \
STFTBLUR_API int lpc_thresholds_range_##SUF(const T* resp, int64_t q0, int64_t q1, int64_t H,    \
                                            int64_t W, int64_t border, double* thr) {           \
    if (q0 < 0 || q1 < q0 || !plane_args_ok(1, 1, 1, H, W, border)) return STFTBLUR_EINVAL;      \
    if (q1 == q0) return STFTBLUR_OK;                                                            \
    if (!resp || !thr) return STFTBLUR_EINVAL;                                                   \
    thresholds_##SUF(resp, q0, q1, H, W, border, thr);                                           \
    return STFTBLUR_OK;                                                                          \
}                                                                                                \
                                                                                                 \
/* Rows r0..r1 of B * H; the row scratch (n_scratch >= W values) is allocated here. */           \
STFTBLUR_API int lpc_accumulate_range_##SUF(const T* resp, const double* thr, int64_t S,         \
                                            int64_t B, int64_t O, int64_t H, int64_t W,          \
                                            const int64_t* weights, int64_t r0, int64_t r1,      \
                                            double* num, double* den, int64_t n_scratch) {       \
    if (!plane_args_ok(S, B, O, H, W, 0) || r0 < 0 || r1 < r0 || r1 > B * H || n_scratch < W)    \
        return STFTBLUR_EINVAL;                                                                  \
    if (r1 == r0 || O == 0) return STFTBLUR_OK;                                                  \
    if (!resp || !thr || !weights || !num || !den || !weights_ok(weights, S))                    \
        return STFTBLUR_EINVAL;                                                                  \
    T* mag = (T*)scratch(n_scratch, sizeof(T));                                                  \
    if (!mag) return STFTBLUR_ENOMEM;                                                            \
    accumulate_##SUF(resp, thr, S, B, O, H, W, weights, r0, r1, num, den, mag);                  \
    free(mag);                                                                                   \
    return STFTBLUR_OK;                                                                          \
}                                                                                                \
                                                                                                 \
/* All nq planes, split over `threads` OpenMP threads (one plane each at most). */               \
STFTBLUR_API int lpc_thresholds_mt_##SUF(const T* resp, int64_t nq, int64_t H, int64_t W,        \
                                         int64_t border, double* thr, int64_t threads) {        \
    if (nq < 0 || threads < 1 || !plane_args_ok(1, 1, 1, H, W, border)) return STFTBLUR_EINVAL;  \
    if (nq == 0) return STFTBLUR_OK;                                                             \
    if (!resp || !thr) return STFTBLUR_EINVAL;                                                   \
    const int n_threads = (int)(threads < nq ? threads : nq);                                    \
    (void)n_threads;                                                                             \
    _Pragma("omp parallel for num_threads(n_threads) schedule(static)")                         \
    for (int64_t q = 0; q < nq; ++q) thresholds_##SUF(resp, q, q + 1, H, W, border, thr);       \
    return STFTBLUR_OK;                                                                          \
}                                                                                                \
                                                                                                 \
/* All B * H rows, split over `threads` OpenMP threads, each with its own row scratch of         \
   n_scratch (>= W) values: STFTBLUR_ENOMEM when any of them cannot be had. */                    \
STFTBLUR_API int lpc_accumulate_mt_##SUF(const T* resp, const double* thr, int64_t S, int64_t B, \
                                         int64_t O, int64_t H, int64_t W,                        \
                                         const int64_t* weights, double* num, double* den,       \
                                         int64_t threads, int64_t n_scratch) {                   \
    if (!plane_args_ok(S, B, O, H, W, 0) || threads < 1 || n_scratch < W) return STFTBLUR_EINVAL; \
    const int64_t rows = B * H;                                                                  \
    if (rows == 0 || O == 0) return STFTBLUR_OK;                                                 \
    if (!resp || !thr || !weights || !num || !den || !weights_ok(weights, S))                    \
        return STFTBLUR_EINVAL;                                                                  \
    const int n_threads = (int)(threads < rows ? threads : rows);                                \
    int status = STFTBLUR_OK;                                                                    \
    _Pragma("omp parallel for num_threads(n_threads) schedule(static) reduction(max:status)")   \
    for (int t = 0; t < n_threads; ++t) {                                                        \
        T* mag = (T*)scratch(n_scratch, sizeof(T));                                              \
        if (!mag) {                                                                              \
            status = STFTBLUR_ENOMEM;                                                            \
        } else {                                                                                 \
            accumulate_##SUF(resp, thr, S, B, O, H, W, weights, rows * t / n_threads,            \
                             rows * (t + 1) / n_threads, num, den, mag);                         \
            free(mag);                                                                           \
        }                                                                                        \
    }                                                                                            \
    return status;                                                                               \
}                                                                                                \
                                                                                                 \
/* out (S, B, Oc, HW) complex = spectrum (B, HW) complex x gains[s, o0 + o] (S, O, HW) real:     \
   the same products as complex x complex with a zero imaginary part, reading half the bytes    \
   of the filters; blocks of pixels so that a block of the spectrum is read once for every      \
   output. */                                                                                    \
STFTBLUR_API int lpc_product_##SUF(const T* spec, const T* gains, int64_t B, int64_t S,          \
                                   int64_t O, int64_t o0, int64_t Oc, int64_t hw, T* out,        \
                                   int64_t threads) {                                            \
    if (B < 0 || S < 0 || O < 0 || o0 < 0 || Oc < 0 || o0 + Oc > O || hw < 0 || threads < 1)     \
        return STFTBLUR_EINVAL;                                                                  \
    const int64_t block = 2048, nblocks = (hw + block - 1) / block;                              \
    if (B == 0 || S == 0 || Oc == 0 || nblocks == 0) return STFTBLUR_OK;                         \
    if (!spec || !gains || !out) return STFTBLUR_EINVAL;                                         \
    const int n_threads = (int)(threads < B * nblocks ? threads : B * nblocks);                  \
    (void)n_threads;                                                                             \
    _Pragma("omp parallel for num_threads(n_threads) schedule(static)")                         \
    for (int64_t k = 0; k < B * nblocks; ++k) {                                                  \
        const int64_t b = k / nblocks, p0 = (k % nblocks) * block;                               \
        const int64_t p1 = p0 + block < hw ? p0 + block : hw;                                    \
        const T* sp = spec + 2 * b * hw;                                                         \
        for (int64_t s = 0; s < S; ++s) {                                                        \
            for (int64_t o = 0; o < Oc; ++o) {                                                   \
                const T* g = gains + (s * O + o0 + o) * hw;                                      \
                T* dst = out + 2 * (((s * B + b) * Oc + o) * hw);                                \
                _Pragma("omp simd")                                                              \
                for (int64_t p = p0; p < p1; ++p) {                                              \
                    dst[2 * p] = sp[2 * p] * g[p];                                               \
                    dst[2 * p + 1] = sp[2 * p + 1] * g[p];                                       \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    return STFTBLUR_OK;                                                                          \
}

LPC_ENTRIES(float, f32)
LPC_ENTRIES(double, f64)

/* 1 when built with OpenMP (the _mt entries then run on its threads). */
STFTBLUR_API int lpc_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
