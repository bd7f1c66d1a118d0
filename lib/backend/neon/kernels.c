/*
 * NEON kernels (see kernels.h). Block layouts as in lib/quant/dequant.c.
 * Every weight block is decoded to signed bytes (its offset, Q4_0's -8,
 * Q6_K's -32, ..., subtracted right away, so no product needs the block sums
 * except for the types with minimums), then multiplied with the activation
 * bytes into exact int32 sums: smull + sadalp on plain ARMv8, sdot where
 * this file is compiled with DSRI_NEON_DOTPROD. Each block's integer sum is
 * scaled and added to one f32 accumulator per activation row, in block
 * order, so both builds give the same bits.
 *
 * No int16 product can overflow: |weight| <= 128 and |activation| <= 127.
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "backend/neon/kernels.h"
#include "quant/quant.h"

#if defined(__GNUC__) || defined(__clang__)
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")
#else
#define INLINE static inline
#define UNROLL
#endif

#ifdef DSRI_NEON_DOTPROD
#define KERNEL_FOR dsri_neon_kernel_for_dotprod
#define K(name) name##_dp
/* acc += sums of 4 byte products */
INLINE int32x4_t idot(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#else
#define KERNEL_FOR dsri_neon_kernel_for
#define K(name) name
INLINE int32x4_t idot(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}
#endif

/* ---- small helpers ---- */

INLINE float rd_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

INLINE uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* sum of 32 products w[i] * y[i] */
INLINE int32_t dot32(int8x16_t w0, int8x16_t w1, const int8_t *y)
{
    int32x4_t acc = idot(vdupq_n_s32(0), w0, vld1q_s8(y));
    return vaddvq_s32(idot(acc, w1, vld1q_s8(y + 16)));
}

INLINE int32_t dot16(int8x16_t w, const int8_t *y) { return vaddvq_s32(idot(vdupq_n_s32(0), w, vld1q_s8(y))); }

/* 16 bytes -> 16 bytes, 0x10 where bit j (j < 16) of the word >> shift is set */
INLINE uint8x16_t bits16(uint32_t x, int shift)
{
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint16_t h = (uint16_t)(x >> shift);
    uint8x16_t b = vcombine_u8(vdup_n_u8((uint8_t)(h & 0xFF)), vdup_n_u8((uint8_t)(h >> 8)));
    return vandq_u8(vtstq_u8(b, vld1q_u8(sel)), vdupq_n_u8(0x10));
}

static const int8_t kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

#define ACT0(r) ((const dsri_aq8_0 *)(x + (size_t)(r) * xs))
#define ACTK(r) ((const dsri_aq8_k *)(x + (size_t)(r) * xs))

/* dot_T(n, w, x, xs, nr, out) from dot_T_n(..., NR) with NR a constant. */
#define NR_DISPATCH(T)                                                                             \
    static void K(dot_##T)(int64_t n, const void *w, const void *xv, size_t xs, int nr, float *out) \
    {                                                                                              \
        const uint8_t *W = w, *X = xv;                                                             \
        switch (nr) {                                                                              \
        case 1: dot_##T##_n(n, W, X, xs, out, 1); break;                                           \
        case 2: dot_##T##_n(n, W, X, xs, out, 2); break;                                           \
        case 3: dot_##T##_n(n, W, X, xs, out, 3); break;                                           \
        default: dot_##T##_n(n, W, X, xs, out, 4); break;                                          \
        }                                                                                          \
    }

/* ---- weight types with blocks of 32, Q8_0 activations ---- */

/* DECODE sets dw, mw (the block's minimum, 0 if none) and q0, q1 (the 32
 * weights as signed bytes); weight i is dw * q[i] + mw. */
#define DOT_Q32(T, BYTES, DECODE)                                                                  \
    INLINE void dot_##T##_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out,  \
                            const int NR)                                                          \
    {                                                                                              \
        float acc[DSRI_SIMD_NR], corr[DSRI_SIMD_NR];                                               \
        UNROLL for (int r = 0; r < NR; r++) acc[r] = corr[r] = 0.0f;                               \
        const int64_t nb = n / 32;                                                                 \
        for (int64_t ib = 0; ib < nb; ib++, w += (BYTES)) {                                        \
            float dw, mw;                                                                          \
            int8x16_t q0, q1;                                                                      \
            DECODE                                                                                 \
            UNROLL for (int r = 0; r < NR; r++) {                                                  \
                const dsri_aq8_0 *a = ACT0(r) + ib;                                                \
                acc[r] += dw * a->d * (float)dot32(q0, q1, a->q);                                  \
                corr[r] += mw * a->s;                                                              \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r] + corr[r];                             \
    }                                                                                              \
    NR_DISPATCH(T)

/* low nibbles of 16 bytes (elements 0..15), high nibbles (16..31) */
#define NIB(p)                                                                                     \
    uint8x16_t raw = vld1q_u8(p);                                                                  \
    uint8x16_t lo = vandq_u8(raw, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(raw, 4);

DOT_Q32(q4_0, 18, {
    dw = rd_f16(w);
    mw = 0.0f;
    NIB(w + 2)
    q0 = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8));
    q1 = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8));
})
DOT_Q32(q4_1, 20, {
    dw = rd_f16(w);
    mw = rd_f16(w + 2);
    NIB(w + 4)
    q0 = vreinterpretq_s8_u8(lo);
    q1 = vreinterpretq_s8_u8(hi);
})
DOT_Q32(q5_0, 22, {
    dw = rd_f16(w);
    mw = 0.0f;
    uint32_t qh = rd_u32(w + 2);
    NIB(w + 6)
    q0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, bits16(qh, 0))), vdupq_n_s8(16));
    q1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, bits16(qh, 16))), vdupq_n_s8(16));
})
DOT_Q32(q5_1, 24, {
    dw = rd_f16(w);
    mw = rd_f16(w + 2);
    uint32_t qh = rd_u32(w + 4);
    NIB(w + 8)
    q0 = vreinterpretq_s8_u8(vorrq_u8(lo, bits16(qh, 0)));
    q1 = vreinterpretq_s8_u8(vorrq_u8(hi, bits16(qh, 16)));
})
DOT_Q32(q8_0, 34, {
    dw = rd_f16(w);
    mw = 0.0f;
    q0 = vld1q_s8((const int8_t *)(w + 2));
    q1 = vld1q_s8((const int8_t *)(w + 18));
})
DOT_Q32(iq4_nl, 18, {
    dw = rd_f16(w);
    mw = 0.0f;
    NIB(w + 2)
    const int8x16_t kv = vld1q_s8(kvalues_iq4nl);
    q0 = vqtbl1q_s8(kv, lo);
    q1 = vqtbl1q_s8(kv, hi);
})

/* ---- K types, Q8_K activations ---- */

/* Q4_K / Q5_K 6-bit scales and mins of the 8 sub-blocks */
INLINE void scales_k4(const uint8_t *s, int *sc, int *mn)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: sub-block j = 2c (low nibbles of chunk c) and 2c + 1 (high). */
#define DOT_K45(T, BYTES, QS, HIGH)                                                                \
    INLINE void dot_##T##_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out,  \
                            const int NR)                                                          \
    {                                                                                              \
        float acc[DSRI_SIMD_NR], corr[DSRI_SIMD_NR];                                               \
        UNROLL for (int r = 0; r < NR; r++) acc[r] = corr[r] = 0.0f;                               \
        const uint8x16_t m4 = vdupq_n_u8(0x0F);                                                    \
        for (int64_t ib = 0; ib < n / 256; ib++, w += (BYTES)) {                                   \
            const float d = rd_f16(w), dmin = rd_f16(w + 2);                                       \
            int sc[8], mn[8];                                                                      \
            scales_k4(w + 4, sc, mn);                                                              \
            int32_t isum[DSRI_SIMD_NR] = {0};                                                      \
            for (int c = 0; c < 4; c++) {                                                          \
                uint8x16_t l[2], h[2];                                                             \
                for (int k = 0; k < 2; k++) {                                                      \
                    uint8x16_t q = vld1q_u8(w + (QS) + 32 * c + 16 * k);                           \
                    l[k] = vandq_u8(q, m4);                                                        \
                    h[k] = vshrq_n_u8(q, 4);                                                       \
                    if (HIGH) {                                                                    \
                        uint8x16_t hb = vld1q_u8(w + 16 + 16 * k);                                 \
                        l[k] = vorrq_u8(l[k], vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)(4 - 2 * c))), \
                                                       vdupq_n_u8(0x10)));                         \
                        h[k] = vorrq_u8(h[k], vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)(3 - 2 * c))), \
                                                       vdupq_n_u8(0x10)));                         \
                    }                                                                              \
                }                                                                                  \
                UNROLL for (int r = 0; r < NR; r++) {                                              \
                    const int8_t *y = ACTK(r)[ib].q + 64 * c;                                      \
                    isum[r] += sc[2 * c] * dot32(vreinterpretq_s8_u8(l[0]), vreinterpretq_s8_u8(l[1]), y); \
                    isum[r] += sc[2 * c + 1] *                                                     \
                               dot32(vreinterpretq_s8_u8(h[0]), vreinterpretq_s8_u8(h[1]), y + 32); \
                }                                                                                  \
            }                                                                                      \
            UNROLL for (int r = 0; r < NR; r++) {                                                  \
                const dsri_aq8_k *a = ACTK(r) + ib;                                                \
                int m = 0;                                                                         \
                for (int j = 0; j < 8; j++)                                                        \
                    m += mn[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);                          \
                acc[r] += d * a->d * (float)isum[r];                                               \
                corr[r] -= dmin * a->d * (float)m;                                                 \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r] + corr[r];                             \
    }                                                                                              \
    NR_DISPATCH(T)

DOT_K45(q4_k, 144, 16, 0)
DOT_K45(q5_k, 176, 48, 1)

INLINE void dot_q6_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    float acc[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) acc[r] = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 210) {
        const float d = rd_f16(w + 208);
        const int8_t *sc = (const int8_t *)(w + 192);
        int32_t isum[DSRI_SIMD_NR] = {0};
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            for (int half = 0; half < 2; half++) { /* elements l = 16*half .. +15 of each group of 32 */
                uint8x16_t l0 = vld1q_u8(ql + 16 * half), l1 = vld1q_u8(ql + 32 + 16 * half);
                uint8x16_t hv = vld1q_u8(qh + 16 * half);
                int8x16_t q[4];
                q[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(hv, m2), 4)));
                q[1] = vreinterpretq_s8_u8(
                    vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hv, 2), m2), 4)));
                q[2] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hv, 4), m2), 4)));
                q[3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(hv, 6), 4)));
                for (int k = 0; k < 4; k++) {
                    int8x16_t qs = vsubq_s8(q[k], off);
                    int s = sc[8 * h + 2 * k + half];
                    UNROLL for (int r = 0; r < NR; r++)
                        isum[r] += s * dot16(qs, ACTK(r)[ib].q + 128 * h + 32 * k + 16 * half);
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++) acc[r] += d * ACTK(r)[ib].d * (float)isum[r];
    }
    UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r];
}
NR_DISPATCH(q6_k)

INLINE void dot_q2_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    float acc[DSRI_SIMD_NR], corr[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) acc[r] = corr[r] = 0.0f;
    const uint8x16_t m2 = vdupq_n_u8(3);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 84) {
        const uint8_t *sc = w;
        const float d = rd_f16(w + 80), dmin = rd_f16(w + 82);
        int32_t isum[DSRI_SIMD_NR] = {0};
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                uint8x16_t q16 = vld1q_u8(w + 16 + 32 * h + 16 * half);
                for (int k = 0; k < 4; k++) {
                    int8x16_t q = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q16, vdupq_n_s8((int8_t)(-2 * k))), m2));
                    int s = sc[8 * h + 2 * k + half] & 0x0F;
                    UNROLL for (int r = 0; r < NR; r++)
                        isum[r] += s * dot16(q, ACTK(r)[ib].q + 128 * h + 32 * k + 16 * half);
                }
            }
        UNROLL for (int r = 0; r < NR; r++) {
            const dsri_aq8_k *a = ACTK(r) + ib;
            int m = 0;
            for (int j = 0; j < 16; j++)
                m += (sc[j] >> 4) * a->bsums[j];
            acc[r] += d * a->d * (float)isum[r];
            corr[r] -= dmin * a->d * (float)m;
        }
    }
    UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r] + corr[r];
}
NR_DISPATCH(q2_k)

INLINE void dot_q3_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    float acc[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) acc[r] = 0.0f;
    const uint8x16_t m2 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const int8x16_t four = vdupq_n_s8(4);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 110) {
        const uint8_t *ss = w + 96;
        const float d = rd_f16(w + 108);
        int sc[16];
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? (ss[j] & 0x0F) : (ss[j - 8] >> 4);
            int hi = (ss[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            sc[j] = (lo | (hi << 4)) - 32;
        }
        int32_t isum[DSRI_SIMD_NR] = {0};
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                uint8x16_t q16 = vld1q_u8(w + 32 + 32 * h + 16 * half);
                uint8x16_t hm = vld1q_u8(w + 16 * half);
                for (int k = 0; k < 4; k++) {
                    uint8x16_t lo2 = vandq_u8(vshlq_u8(q16, vdupq_n_s8((int8_t)(-2 * k))), m2);
                    uint8x16_t hb = vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(-(4 * h + k)))), one);
                    int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo2, vshlq_n_u8(hb, 2))), four);
                    int s = sc[8 * h + 2 * k + half];
                    UNROLL for (int r = 0; r < NR; r++)
                        isum[r] += s * dot16(q, ACTK(r)[ib].q + 128 * h + 32 * k + 16 * half);
                }
            }
        UNROLL for (int r = 0; r < NR; r++) acc[r] += d * ACTK(r)[ib].d * (float)isum[r];
    }
    UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r];
}
NR_DISPATCH(q3_k)

INLINE void dot_iq4_xs_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    float acc[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) acc[r] = 0.0f;
    const int8x16_t kv = vld1q_s8(kvalues_iq4nl);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 136) {
        const float d = rd_f16(w);
        const unsigned sh = (unsigned)w[2] | ((unsigned)w[3] << 8);
        int32_t isum[DSRI_SIMD_NR] = {0};
        for (int j = 0; j < 8; j++) {
            int ls = ((w[4 + j / 2] >> (4 * (j % 2))) & 0x0F) | (int)(((sh >> (2 * j)) & 3u) << 4);
            NIB(w + 8 + 16 * j)
            int8x16_t q0 = vqtbl1q_s8(kv, lo), q1 = vqtbl1q_s8(kv, hi);
            UNROLL for (int r = 0; r < NR; r++)
                isum[r] += (ls - 32) * dot32(q0, q1, ACTK(r)[ib].q + 32 * j);
        }
        UNROLL for (int r = 0; r < NR; r++) acc[r] += d * ACTK(r)[ib].d * (float)isum[r];
    }
    UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r];
}
NR_DISPATCH(iq4_xs)

/* ---- IQ lattice types, Q8_K activations ---- */

#include "backend/neon/iq_dot.inc.c"

/* ---- kernel table ---- */

static const dsri_simd_kernel K(k_q4_0) = {DSRI_ACT_Q8_0, K(dot_q4_0), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q4_1) = {DSRI_ACT_Q8_0, K(dot_q4_1), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q5_0) = {DSRI_ACT_Q8_0, K(dot_q5_0), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q5_1) = {DSRI_ACT_Q8_0, K(dot_q5_1), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q8_0) = {DSRI_ACT_Q8_0, K(dot_q8_0), NULL, NULL, 0};
static const dsri_simd_kernel K(k_iq4_nl) = {DSRI_ACT_Q8_0, K(dot_iq4_nl), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q2_k) = {DSRI_ACT_Q8_K, K(dot_q2_k), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q3_k) = {DSRI_ACT_Q8_K, K(dot_q3_k), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q4_k) = {DSRI_ACT_Q8_K, K(dot_q4_k), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q5_k) = {DSRI_ACT_Q8_K, K(dot_q5_k), NULL, NULL, 0};
static const dsri_simd_kernel K(k_q6_k) = {DSRI_ACT_Q8_K, K(dot_q6_k), NULL, NULL, 0};
static const dsri_simd_kernel K(k_iq4_xs) = {DSRI_ACT_Q8_K, K(dot_iq4_xs), NULL, NULL, 0};

#ifndef DSRI_NEON_DOTPROD
static const dsri_simd_kernel k_f16, k_bf16;
#endif

const dsri_simd_kernel *KERNEL_FOR(uint32_t type)
{
    const dsri_simd_kernel *iq = K(iq_kernel_for)(type);
    if (iq)
        return iq;
    switch (type) {
    case DSRI_TYPE_Q4_0: return &K(k_q4_0);
    case DSRI_TYPE_Q4_1: return &K(k_q4_1);
    case DSRI_TYPE_Q5_0: return &K(k_q5_0);
    case DSRI_TYPE_Q5_1: return &K(k_q5_1);
    case DSRI_TYPE_Q8_0: return &K(k_q8_0);
    case DSRI_TYPE_IQ4_NL: return &K(k_iq4_nl);
    case DSRI_TYPE_Q2_K: return &K(k_q2_k);
    case DSRI_TYPE_Q3_K: return &K(k_q3_k);
    case DSRI_TYPE_Q4_K: return &K(k_q4_k);
    case DSRI_TYPE_Q5_K: return &K(k_q5_k);
    case DSRI_TYPE_Q6_K: return &K(k_q6_k);
    case DSRI_TYPE_IQ4_XS: return &K(k_iq4_xs);
#ifdef DSRI_NEON_DOTPROD
    default: return dsri_neon_kernel_for(type); /* the float kernels */
#else
    case DSRI_TYPE_F32: return &dsri_neon_kernel_f32;
    case DSRI_TYPE_F16: return &k_f16;
    case DSRI_TYPE_BF16: return &k_bf16;
    default: return NULL;
#endif
    }
}

/* Everything below is built once (not in the dotprod copy). */
#ifndef DSRI_NEON_DOTPROD

/* ---- f32 activations ---- */

/* 4 weights as f32 (any alignment: byte loads, little-endian) */
INLINE float32x4_t ld_f32(const uint8_t *p) { return vreinterpretq_f32_u8(vld1q_u8(p)); }
INLINE float32x4_t ld_f16(const uint8_t *p) { return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p))); }
INLINE float32x4_t ld_bf16(const uint8_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p)), 16));
}
INLINE float sc_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}
INLINE float sc_f16(const uint8_t *p) { return rd_f16(p); }
INLINE float sc_bf16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return dsri_bf16_to_fp32(h);
}

/* Two accumulators over alternate groups of 4, then a scalar tail: the same
 * sums for a row whatever rows share the call. */
#define DOT_FLOAT(T, LD, ESZ, SCALAR)                                                              \
    INLINE void dot_##T##_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out,  \
                            const int NR)                                                          \
    {                                                                                              \
        float32x4_t a0[DSRI_SIMD_NR], a1[DSRI_SIMD_NR];                                            \
        UNROLL for (int r = 0; r < NR; r++) a0[r] = a1[r] = vdupq_n_f32(0.0f);                     \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                               \
            float32x4_t w0 = LD(w + i * (ESZ)), w1 = LD(w + (i + 4) * (ESZ));                      \
            UNROLL for (int r = 0; r < NR; r++) {                                                  \
                const float *xr = (const float *)(x + (size_t)r * xs) + i;                         \
                a0[r] = vfmaq_f32(a0[r], w0, vld1q_f32(xr));                                       \
                a1[r] = vfmaq_f32(a1[r], w1, vld1q_f32(xr + 4));                                   \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++) {                                                      \
            const float *xr = (const float *)(x + (size_t)r * xs);                                 \
            float s = vaddvq_f32(vaddq_f32(a0[r], a1[r]));                                         \
            for (int64_t j = i; j < n; j++)                                                        \
                s += SCALAR(w + j * (ESZ)) * xr[j];                                                \
            out[r] = s;                                                                            \
        }                                                                                          \
    }                                                                                              \
    NR_DISPATCH(T)

DOT_FLOAT(f32, ld_f32, 4, sc_f32)
DOT_FLOAT(f16, ld_f16, 2, sc_f16)
DOT_FLOAT(bf16, ld_bf16, 2, sc_bf16)

const dsri_simd_kernel dsri_neon_kernel_f32 = {DSRI_ACT_F32, dot_f32, NULL, NULL, 0};
static const dsri_simd_kernel k_f16 = {DSRI_ACT_F32, dot_f16, NULL, NULL, 0};
static const dsri_simd_kernel k_bf16 = {DSRI_ACT_F32, dot_bf16, NULL, NULL, 0};

/* ---- activation quantization ---- */

/* 32 floats -> 32 int8 = round(x * id), ties to even; returns sum(q). */
INLINE int round32(const float *x, float id, int8_t *q)
{
    int32x4_t i[8];
    for (int k = 0; k < 8; k++)
        i[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4 * k), id));
    int16x8_t h[4];
    for (int k = 0; k < 4; k++)
        h[k] = vcombine_s16(vqmovn_s32(i[2 * k]), vqmovn_s32(i[2 * k + 1]));
    int8x16_t b0 = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
    int8x16_t b1 = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
    vst1q_s8(q, b0);
    vst1q_s8(q + 16, b1);
    return (int)vaddlvq_s8(b0) + (int)vaddlvq_s8(b1);
}

INLINE float absmax(const float *x, int64_t n)
{
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n; i += 4)
        m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxvq_f32(m);
}

/* the Q8_K blocks' sums of 16 (simd_act_quant.inc.c) */
INLINE int sum16(const int8_t *q) { return (int)vaddlvq_s8(vld1q_s8(q)); }

#include "backend/simd_act_quant.inc.c"

size_t dsri_neon_act_row_bytes(dsri_act_kind act, int64_t n) { return act_row_bytes(act, n); }

void dsri_neon_quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n)
{
    quantize_act(act, x, dst, n);
}

/* ---- elementwise ---- */

float dsri_neon_dot_f32(const float *a, const float *b, int64_t n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void dsri_neon_axpy(float *y, const float *x, float a, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++)
        y[i] += a * x[i];
}

void dsri_neon_add(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < n; i++)
        y[i] += x[i];
}

/* expf from libm, as the scalar backend: the same values. */
void dsri_neon_silu_mul(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void dsri_neon_scale_mul(float *y, const float *x, float s, const float *w, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), s), vld1q_f32(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * s * w[i];
}

float dsri_neon_max(const float *v, int64_t n)
{
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        m = vmaxq_f32(m, vld1q_f32(v + i));
    float r = vmaxvq_f32(m);
    for (; i < n; i++)
        if (v[i] > r)
            r = v[i];
    return r;
}

float dsri_neon_exp_sum(float *v, float mx, int64_t n)
{
    float r = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        v[i] = expf(v[i] - mx);
        r += v[i];
    }
    return r;
}

#endif /* !DSRI_NEON_DOTPROD */
