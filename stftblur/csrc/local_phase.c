/* Compiled CPU kernels of the local-phase loss (float32): stftblur/losses/_compiled.py.

   lpl_terms        one pass over both spectra: the weighted value of every patch and, in
                    place, the gradients of the coefficients;
   lpl_overlap_add  window multiply and overlap-add of patch gradients into images.

   Built with -ffp-contract=off so that every operation rounds as the pure-PyTorch reference
   does, except atan2 (a polynomial accurate to about 2e-7) and the order of the final sums. */
#include <math.h>
#include <stdint.h>

#include "stftblur_native.h"

/* atan on [0, 1]: Cephes' atanf reduction and polynomial (relative error about 2e-7). Both
   branches are computed and selected, so that the loop vectorizes without masked operations. */
STFTBLUR_INLINE float atan01(float t) {
    int big = t > 0.41421356237309503f;
    float u = (t - 1.0f) / (t + 1.0f);
    float x = big ? u : t;
    float y0 = big ? 0.78539816339744831f : 0.0f;
    float z = x * x;
    return y0 + ((((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z
                  - 3.33329491539e-1f) * z * x + x);
}

/* atan2 for arguments that are never -0.0 (the callers add +0.0 first). */
STFTBLUR_INLINE float atan2_nz(float y, float x) {
    float ax = fabsf(x), ay = fabsf(y);
    int swap = ay > ax;
    float mx = swap ? ay : ax, mn = swap ? ax : ay;
    float t = mn / (mx > 0.0f ? mx : 1.0f);
    float r = atan01(t);
    r = swap ? 1.57079632679489662f - r : r;
    r = x < 0.0f ? 3.14159265358979324f - r : r;
    return copysignf(r, y);
}

STFTBLUR_INLINE float signf(float v) { return (float)((v > 0.0f) - (v < 0.0f)); }

/* One run of n coefficients. fo, ft: interleaved complex; go, gt: the gradients, written over
   fo, ft (element j is read before it is written); wv, wa, wp: the value weight and the two
   gradient weights. MODE, NO, NT, OFF are compile-time constants at every call, so that the loop
   has no branches. */
STFTBLUR_INLINE double run(
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
   fo / ft. mode: 0 wrapped, 1 raw, 2 cosine. wv, wa, wp: (rows, len) contiguous. */
STFTBLUR_API int lpl_terms(int mode, float *fo, float *ft, int no, int nt,
                           const float *wv, const float *wa, const float *wp,
                           int64_t i0, int64_t i1, int64_t rows, int64_t len, int64_t s_patch,
                           int64_t s_row, float pw, float aw, float off, float eps2, double *sums) {
    if (mode < 0 || mode > 2 || i0 < 0 || i1 < i0 || rows < 0 || len < 0 || s_patch < 0 || s_row < 0)
        return STFTBLUR_EINVAL;
    if (i1 == i0 || rows == 0 || len == 0) {
        for (int64_t i = i0; i < i1; ++i) sums[i] = 0.0;
        return STFTBLUR_OK;
    }
    if (!fo || !ft || !wv || !wa || !wp || !sums) return STFTBLUR_EINVAL;
    if (mode == 0) { GRADS(0, 0) }
    else if (mode == 1 && off != 0.0f) { GRADS(1, 1) }
    else if (mode == 1) { GRADS(1, 0) }
    else { GRADS(2, 0) }
    return STFTBLUR_OK;
}

/* Overlap-add: out (n, H, W) contiguous, rows r0..r1 of the flattened (n * H) row index, gets
   sum over patches (k, l) of win[r, c] * pat[i, k, l, r, c] at (k * s + r, l * s + c), for
   r < R, c < C. pat strides (in floats) sn, sk, sl, sr, sc; win (at least R rows of C,
   contiguous) or NULL. Every patch lies inside the image: (K - 1) s + R <= H, (L - 1) s + C <= W. */
STFTBLUR_API int lpl_overlap_add(const float *pat, const float *win, float *out, int64_t r0, int64_t r1,
                                 int64_t H, int64_t W, int64_t K, int64_t L, int64_t R, int64_t C,
                                 int64_t s, int64_t sn, int64_t sk, int64_t sl, int64_t sr, int64_t sc) {
    if (H < 1 || W < 0 || K < 1 || L < 1 || R < 1 || C < 1 || s < 1 || r0 < 0 || r1 < r0
        || sn < 0 || sk < 0 || sl < 0 || sr < 0 || sc < 0)
        return STFTBLUR_EINVAL;
    if ((K - 1) * s + R > H || (L - 1) * s + C > W) return STFTBLUR_EINVAL;
    if (r1 == r0) return STFTBLUR_OK;
    if (!pat || !out) return STFTBLUR_EINVAL;
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
    return STFTBLUR_OK;
}
