/*
 * AVX2 + FMA + F16C kernels (see kernels.h). Block layouts as in
 * lib/quant/dequant.c; the integer dot products follow the scheme of ggml's
 * x86 code: unsigned weight bytes times signed activation bytes with
 * maddubs (pairs summed to int16), madd with a scale (pairs summed to int32),
 * then one f32 FMA per block. Offsets (Q4_0's -8, Q6_K's -32, ...) and
 * minimums are applied through the activations' block sums.
 *
 * No product can saturate maddubs: unsigned weight bytes are at most 63
 * (or |w| <= 128 with the sign trick) and activations within [-127, 127].
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/avx2/kernels.h"
#include "quant/quant.h"

#if defined(__GNUC__) || defined(__clang__)
#define INLINE static inline __attribute__((always_inline))
/* The loops over the NR activation rows must unroll so the accumulators
 * stay in registers (GCC does not do it by itself at -O2). */
#define UNROLL _Pragma("GCC unroll 4")
#else
#define INLINE static inline
#define UNROLL
#endif

/* ---- small helpers ---- */

INLINE float rd_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

INLINE float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles first, then the high ones. */
INLINE __m256i nibbles32(const uint8_t *p)
{
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where bit j of the word is set. */
INLINE __m256i bits32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* sum over pairs of u8 * s8 -> 8 x int32 */
INLINE __m256i dot_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* the same with an int16 scale per 16-bit lane */
INLINE __m256i dot_us_scaled(__m256i u, __m256i s, __m256i scale16)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}

/* int16 lanes: the low 128 bits a, the high ones b */
INLINE __m256i scale_pair(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

static const int8_t kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

#define ACT0(r) ((const dsri_aq8_0 *)(x + (size_t)(r) * xs))
#define ACTK(r) ((const dsri_aq8_k *)(x + (size_t)(r) * xs))

/* dot_T(n, w, x, xs, nr, out) from dot_T_n(..., NR) with NR a constant. */
#define NR_DISPATCH(T)                                                                             \
    static void dot_##T(int64_t n, const void *w, const void *xv, size_t xs, int nr, float *out)  \
    {                                                                                              \
        const uint8_t *W = w, *X = xv;                                                             \
        switch (nr) {                                                                              \
        case 1: dot_##T##_n(n, W, X, xs, out, 1); break;                                           \
        case 2: dot_##T##_n(n, W, X, xs, out, 2); break;                                           \
        case 3: dot_##T##_n(n, W, X, xs, out, 3); break;                                           \
        default: dot_##T##_n(n, W, X, xs, out, 4); break;                                          \
        }                                                                                          \
    }

/* ---- f32 activations ---- */

/* Load 8 weights as f32. */
INLINE __m256 ld_f32(const uint8_t *p) { return _mm256_loadu_ps((const float *)p); }
INLINE __m256 ld_f16(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
INLINE __m256 ld_bf16(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* NW weight rows (w, w + ws) times NR activation rows. Every (weight row,
 * activation row) pair is summed exactly as dot_T does it alone (two
 * accumulators over alternate blocks of 8, then a scalar tail), so a batch
 * row gets the same bits whichever way the rows are grouped. */
#define DOT_FLOAT(T, LD, ESZ, SCALAR)                                                              \
    INLINE void dotw_##T##_n(int64_t n, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,   \
                             float *out, const int NW, const int NR)                               \
    {                                                                                              \
        __m256 a0[2][DSRI_SIMD_NR], a1[2][DSRI_SIMD_NR];                                           \
        UNROLL for (int k = 0; k < NW; k++)                                                        \
            UNROLL for (int r = 0; r < NR; r++)                                                    \
                a0[k][r] = a1[k][r] = _mm256_setzero_ps();                                         \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16) {                                                             \
            __m256 w0[2], w1[2];                                                                   \
            UNROLL for (int k = 0; k < NW; k++) {                                                  \
                w0[k] = LD(w + k * ws + i * (ESZ));                                                \
                w1[k] = LD(w + k * ws + (i + 8) * (ESZ));                                          \
            }                                                                                      \
            UNROLL for (int r = 0; r < NR; r++) {                                                  \
                const float *xr = (const float *)(x + (size_t)r * xs) + i;                         \
                __m256 x0 = _mm256_loadu_ps(xr), x1 = _mm256_loadu_ps(xr + 8);                     \
                UNROLL for (int k = 0; k < NW; k++) {                                              \
                    a0[k][r] = _mm256_fmadd_ps(w0[k], x0, a0[k][r]);                               \
                    a1[k][r] = _mm256_fmadd_ps(w1[k], x1, a1[k][r]);                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++) {                                                      \
            const float *xr = (const float *)(x + (size_t)r * xs);                                 \
            UNROLL for (int k = 0; k < NW; k++) {                                                  \
                float s = hsum_ps(_mm256_add_ps(a0[k][r], a1[k][r]));                              \
                for (int64_t j = i; j < n; j++)                                                    \
                    s += SCALAR(w + k * ws + j * (ESZ)) * xr[j];                                   \
                out[NW * r + k] = s;                                                               \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void dot_##T(int64_t n, const void *w, const void *xv, size_t xs, int nr, float *out)  \
    {                                                                                              \
        const uint8_t *W = w, *X = xv;                                                             \
        switch (nr) {                                                                              \
        case 1: dotw_##T##_n(n, W, 0, X, xs, out, 1, 1); break;                                    \
        case 2: dotw_##T##_n(n, W, 0, X, xs, out, 1, 2); break;                                    \
        case 3: dotw_##T##_n(n, W, 0, X, xs, out, 1, 3); break;                                    \
        default: dotw_##T##_n(n, W, 0, X, xs, out, 1, 4); break;                                   \
        }                                                                                          \
    }                                                                                              \
    static void dot2_##T(int64_t n, const void *w, size_t ws, const void *xv, size_t xs, int nr,    \
                         float *out)                                                               \
    {                                                                                              \
        const uint8_t *W = w, *X = xv;                                                             \
        if (nr == 1)                                                                               \
            dotw_##T##_n(n, W, ws, X, xs, out, 2, 1);                                              \
        else                                                                                       \
            dotw_##T##_n(n, W, ws, X, xs, out, 2, 2);                                              \
    }

INLINE float sc_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}
INLINE float sc_bf16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

DOT_FLOAT(f32, ld_f32, 4, sc_f32)
DOT_FLOAT(f16, ld_f16, 2, rd_f16)
DOT_FLOAT(bf16, ld_bf16, 2, sc_bf16)

/* ---- weight types with blocks of 32, Q8_0 activations ---- */

/* Unsigned weights u (0..31) with value u - off: d_w * (d_y * sum(u*y) - off * s_y). */
#define DOT_Q32_UNSIGNED(T, BYTES, DECODE, HAS_MIN)                                                \
    INLINE void dot_##T##_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out,  \
                            const int NR)                                                          \
    {                                                                                              \
        __m256 acc[DSRI_SIMD_NR];                                                                  \
        float corr[DSRI_SIMD_NR];                                                                  \
        UNROLL for (int r = 0; r < NR; r++) {                                                             \
            acc[r] = _mm256_setzero_ps();                                                          \
            corr[r] = 0.0f;                                                                        \
        }                                                                                          \
        const int64_t nb = n / 32;                                                                 \
        for (int64_t ib = 0; ib < nb; ib++, w += (BYTES)) {                                        \
            float dw, mw;                                                                          \
            __m256i q;                                                                             \
            DECODE                                                                                 \
            UNROLL for (int r = 0; r < NR; r++) {                                                         \
                const dsri_aq8_0 *a = ACT0(r) + ib;                                                \
                __m256i y = _mm256_loadu_si256((const __m256i *)a->q);                             \
                __m256 p = _mm256_cvtepi32_ps(dot_us(q, y));                                       \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a->d), p, acc[r]);                    \
                corr[r] += mw * a->s;                                                              \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++)                                                               \
            out[r] = hsum_ps(acc[r]) + corr[r];                                                    \
        (void)(HAS_MIN);                                                                           \
    }                                                                                              \
    NR_DISPATCH(T)

/* Q4_0: value nibble - 8 */
DOT_Q32_UNSIGNED(q4_0, 18,
                 dw = rd_f16(w);
                 mw = -8.0f * dw;
                 q = nibbles32(w + 2);, 0)
/* Q4_1: value d*nibble + m */
DOT_Q32_UNSIGNED(q4_1, 20,
                 dw = rd_f16(w);
                 mw = rd_f16(w + 2);
                 q = nibbles32(w + 4);, 1)
/* Q5_0: value (nibble | bit << 4) - 16 */
DOT_Q32_UNSIGNED(q5_0, 22,
                 dw = rd_f16(w);
                 mw = -16.0f * dw;
                 q = _mm256_or_si256(nibbles32(w + 6), _mm256_and_si256(bits32(w + 2), _mm256_set1_epi8(0x10)));, 0)
/* Q5_1: value d*(nibble | bit << 4) + m */
DOT_Q32_UNSIGNED(q5_1, 24,
                 dw = rd_f16(w);
                 mw = rd_f16(w + 2);
                 q = _mm256_or_si256(nibbles32(w + 8), _mm256_and_si256(bits32(w + 4), _mm256_set1_epi8(0x10)));, 1)

/* Signed weights (Q8_0, IQ4_NL): sign trick. */
#define DOT_Q32_SIGNED(T, BYTES, DECODE)                                                           \
    INLINE void dot_##T##_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out,  \
                            const int NR)                                                          \
    {                                                                                              \
        __m256 acc[DSRI_SIMD_NR];                                                                  \
        UNROLL for (int r = 0; r < NR; r++)                                                               \
            acc[r] = _mm256_setzero_ps();                                                          \
        const int64_t nb = n / 32;                                                                 \
        for (int64_t ib = 0; ib < nb; ib++, w += (BYTES)) {                                        \
            float dw = rd_f16(w);                                                                  \
            __m256i q;                                                                             \
            DECODE                                                                                 \
            __m256i qa = _mm256_sign_epi8(q, q);                                                   \
            UNROLL for (int r = 0; r < NR; r++) {                                                         \
                const dsri_aq8_0 *a = ACT0(r) + ib;                                                \
                __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a->q), q);        \
                __m256 p = _mm256_cvtepi32_ps(dot_us(qa, y));                                      \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a->d), p, acc[r]);                    \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++)                                                               \
            out[r] = hsum_ps(acc[r]);                                                              \
    }                                                                                              \
    NR_DISPATCH(T)

DOT_Q32_SIGNED(q8_0, 34, q = _mm256_loadu_si256((const __m256i *)(w + 2));)
DOT_Q32_SIGNED(iq4_nl, 18,
               q = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl)),
                                       nibbles32(w + 2));)

/* ---- K types, Q8_K activations ---- */

/* Per row r: isum[r] (int32 x 8) accumulates sum(scale * q * y) of one super
 * block; fsum[r] the block's d_w*d_y*isum plus scalar corrections. */

INLINE void dot_q4_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    __m256 acc[DSRI_SIMD_NR];
    float corr[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) {
        acc[r] = _mm256_setzero_ps();
        corr[r] = 0.0f;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 144) {
        const float d = rd_f16(w), dmin = rd_f16(w + 2);
        const uint8_t *s = w + 4;
        int sc[8], mn[8];
        for (int j = 0; j < 4; j++) {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
            sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
            mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
        }
        __m256i isum[DSRI_SIMD_NR];
        UNROLL for (int r = 0; r < NR; r++)
            isum[r] = _mm256_setzero_si256();
        UNROLL for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i slo = _mm256_set1_epi16((short)sc[2 * c]), shi = _mm256_set1_epi16((short)sc[2 * c + 1]);
            UNROLL for (int r = 0; r < NR; r++) {
                const int8_t *y = ACTK(r)[ib].q + 64 * c;
                __m256i p = _mm256_add_epi32(dot_us_scaled(lo, _mm256_loadu_si256((const __m256i *)y), slo),
                                             dot_us_scaled(hi, _mm256_loadu_si256((const __m256i *)(y + 32)), shi));
                isum[r] = _mm256_add_epi32(isum[r], p);
            }
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const dsri_aq8_k *a = ACTK(r) + ib;
            int m = 0;
            for (int j = 0; j < 8; j++)
                m += mn[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(isum[r]), acc[r]);
            corr[r] -= dmin * a->d * (float)m;
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
        out[r] = hsum_ps(acc[r]) + corr[r];
}
NR_DISPATCH(q4_k)

INLINE void dot_q5_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    __m256 acc[DSRI_SIMD_NR];
    float corr[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) {
        acc[r] = _mm256_setzero_ps();
        corr[r] = 0.0f;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 176) {
        const float d = rd_f16(w), dmin = rd_f16(w + 2);
        const uint8_t *s = w + 4;
        int sc[8], mn[8];
        for (int j = 0; j < 4; j++) {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
            sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
            mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
        }
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(w + 16));
        __m256i isum[DSRI_SIMD_NR];
        UNROLL for (int r = 0; r < NR; r++)
            isum[r] = _mm256_setzero_si256();
        UNROLL for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w + 48 + 32 * c));
            __m256i hl = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4);
            __m256i hh = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), hl);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), hh);
            __m256i slo = _mm256_set1_epi16((short)sc[2 * c]), shi = _mm256_set1_epi16((short)sc[2 * c + 1]);
            UNROLL for (int r = 0; r < NR; r++) {
                const int8_t *y = ACTK(r)[ib].q + 64 * c;
                __m256i p = _mm256_add_epi32(dot_us_scaled(lo, _mm256_loadu_si256((const __m256i *)y), slo),
                                             dot_us_scaled(hi, _mm256_loadu_si256((const __m256i *)(y + 32)), shi));
                isum[r] = _mm256_add_epi32(isum[r], p);
            }
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const dsri_aq8_k *a = ACTK(r) + ib;
            int m = 0;
            for (int j = 0; j < 8; j++)
                m += mn[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(isum[r]), acc[r]);
            corr[r] -= dmin * a->d * (float)m;
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
        out[r] = hsum_ps(acc[r]) + corr[r];
}
NR_DISPATCH(q5_k)

INLINE void dot_q6_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    __m256 acc[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++)
        acc[r] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 210) {
        const float d = rd_f16(w + 208);
        const int8_t *sc = (const int8_t *)(w + 192);
        __m256i isum[DSRI_SIMD_NR];
        UNROLL for (int r = 0; r < NR; r++)
            isum[r] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            const int8_t *s = sc + 8 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hv, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 6), m2), 4));
            UNROLL for (int k = 0; k < 4; k++) {
                __m256i sv = scale_pair(s[2 * k], s[2 * k + 1]);
                UNROLL for (int r = 0; r < NR; r++) {
                    const int8_t *y = ACTK(r)[ib].q + 128 * h + 32 * k;
                    isum[r] = _mm256_add_epi32(isum[r],
                                               dot_us_scaled(q[k], _mm256_loadu_si256((const __m256i *)y), sv));
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const dsri_aq8_k *a = ACTK(r) + ib;
            int m = 0;
            for (int j = 0; j < 16; j++)
                m += sc[j] * a->bsums[j];
            __m256i t = _mm256_sub_epi32(isum[r], _mm256_setr_epi32(32 * m, 0, 0, 0, 0, 0, 0, 0));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(t), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
        out[r] = hsum_ps(acc[r]);
}
NR_DISPATCH(q6_k)

INLINE void dot_q2_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    __m256 acc[DSRI_SIMD_NR];
    float corr[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++) {
        acc[r] = _mm256_setzero_ps();
        corr[r] = 0.0f;
    }
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 84) {
        const uint8_t *sc = w;
        const float d = rd_f16(w + 80), dmin = rd_f16(w + 82);
        __m256i isum[DSRI_SIMD_NR];
        UNROLL for (int r = 0; r < NR; r++)
            isum[r] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q32 = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * h));
            UNROLL for (int k = 0; k < 4; k++) {
                int s = 8 * h + 2 * k;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(q32, 2 * k), m2);
                __m256i sv = scale_pair(sc[s] & 0x0F, sc[s + 1] & 0x0F);
                UNROLL for (int r = 0; r < NR; r++) {
                    const int8_t *y = ACTK(r)[ib].q + 128 * h + 32 * k;
                    isum[r] = _mm256_add_epi32(isum[r], dot_us_scaled(q, _mm256_loadu_si256((const __m256i *)y), sv));
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const dsri_aq8_k *a = ACTK(r) + ib;
            int m = 0;
            for (int j = 0; j < 16; j++)
                m += (sc[j] >> 4) * a->bsums[j];
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(isum[r]), acc[r]);
            corr[r] -= dmin * a->d * (float)m;
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
        out[r] = hsum_ps(acc[r]) + corr[r];
}
NR_DISPATCH(q2_k)

INLINE void dot_q3_k_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    __m256 acc[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++)
        acc[r] = _mm256_setzero_ps();
    const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t ib = 0; ib < n / 256; ib++, w += 110) {
        const uint8_t *ss = w + 96;
        const float d = rd_f16(w + 108);
        int sc[16];
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? (ss[j] & 0x0F) : (ss[j - 8] >> 4);
            int hi = (ss[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            sc[j] = (lo | (hi << 4)) - 32;
        }
        const __m256i hm = _mm256_loadu_si256((const __m256i *)w);
        __m256i isum[DSRI_SIMD_NR];
        UNROLL for (int r = 0; r < NR; r++)
            isum[r] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q32 = _mm256_loadu_si256((const __m256i *)(w + 32 + 32 * h));
            UNROLL for (int k = 0; k < 4; k++) {
                int s = 8 * h + 2 * k;
                __m256i hbit = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one), 2);
                __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q32, 2 * k), m2), hbit);
                __m256i sv = scale_pair(sc[s], sc[s + 1]);
                UNROLL for (int r = 0; r < NR; r++) {
                    const int8_t *y = ACTK(r)[ib].q + 128 * h + 32 * k;
                    isum[r] = _mm256_add_epi32(isum[r], dot_us_scaled(q, _mm256_loadu_si256((const __m256i *)y), sv));
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const dsri_aq8_k *a = ACTK(r) + ib;
            int m = 0;
            for (int j = 0; j < 16; j++)
                m += sc[j] * a->bsums[j];
            __m256i t = _mm256_sub_epi32(isum[r], _mm256_setr_epi32(4 * m, 0, 0, 0, 0, 0, 0, 0));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(t), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
        out[r] = hsum_ps(acc[r]);
}
NR_DISPATCH(q3_k)

INLINE void dot_iq4_xs_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, const int NR)
{
    __m256 acc[DSRI_SIMD_NR];
    UNROLL for (int r = 0; r < NR; r++)
        acc[r] = _mm256_setzero_ps();
    const __m256i kv = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    for (int64_t ib = 0; ib < n / 256; ib++, w += 136) {
        const float d = rd_f16(w);
        const unsigned sh = (unsigned)w[2] | ((unsigned)w[3] << 8);
        __m256i isum[DSRI_SIMD_NR];
        UNROLL for (int r = 0; r < NR; r++)
            isum[r] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            int ls = ((w[4 + j / 2] >> (4 * (j % 2))) & 0x0F) | (int)(((sh >> (2 * j)) & 3u) << 4);
            __m256i q = _mm256_shuffle_epi8(kv, nibbles32(w + 8 + 16 * j));
            __m256i qa = _mm256_sign_epi8(q, q);
            __m256i sv = _mm256_set1_epi16((short)(ls - 32));
            UNROLL for (int r = 0; r < NR; r++) {
                __m256i y = _mm256_loadu_si256((const __m256i *)(ACTK(r)[ib].q + 32 * j));
                isum[r] = _mm256_add_epi32(isum[r], dot_us_scaled(qa, _mm256_sign_epi8(y, q), sv));
            }
        }
        UNROLL for (int r = 0; r < NR; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * ACTK(r)[ib].d), _mm256_cvtepi32_ps(isum[r]), acc[r]);
    }
    UNROLL for (int r = 0; r < NR; r++)
        out[r] = hsum_ps(acc[r]);
}
NR_DISPATCH(iq4_xs)

/* ---- the IQ lattice types (shared with avx512), Q8_K activations ---- */

#include "backend/iq_dot_x86.inc.c"

/* ---- kernel table ---- */

const dsri_simd_kernel dsri_avx2_kernel_f32 = {DSRI_ACT_F32, dot_f32, dot2_f32, NULL, 0};
static const dsri_simd_kernel k_f16 = {DSRI_ACT_F32, dot_f16, dot2_f16, NULL, 0};
static const dsri_simd_kernel k_bf16 = {DSRI_ACT_F32, dot_bf16, dot2_bf16, NULL, 0};
static const dsri_simd_kernel k_q4_0 = {DSRI_ACT_Q8_0, dot_q4_0, NULL, NULL, 0};
static const dsri_simd_kernel k_q4_1 = {DSRI_ACT_Q8_0, dot_q4_1, NULL, NULL, 0};
static const dsri_simd_kernel k_q5_0 = {DSRI_ACT_Q8_0, dot_q5_0, NULL, NULL, 0};
static const dsri_simd_kernel k_q5_1 = {DSRI_ACT_Q8_0, dot_q5_1, NULL, NULL, 0};
static const dsri_simd_kernel k_q8_0 = {DSRI_ACT_Q8_0, dot_q8_0, NULL, NULL, 0};
static const dsri_simd_kernel k_iq4_nl = {DSRI_ACT_Q8_0, dot_iq4_nl, NULL, NULL, 0};
static const dsri_simd_kernel k_q2_k = {DSRI_ACT_Q8_K, dot_q2_k, NULL, NULL, 0};
static const dsri_simd_kernel k_q3_k = {DSRI_ACT_Q8_K, dot_q3_k, NULL, NULL, 0};
static const dsri_simd_kernel k_q4_k = {DSRI_ACT_Q8_K, dot_q4_k, NULL, NULL, 0};
static const dsri_simd_kernel k_q5_k = {DSRI_ACT_Q8_K, dot_q5_k, NULL, NULL, 0};
static const dsri_simd_kernel k_q6_k = {DSRI_ACT_Q8_K, dot_q6_k, NULL, NULL, 0};
static const dsri_simd_kernel k_iq4_xs = {DSRI_ACT_Q8_K, dot_iq4_xs, NULL, NULL, 0};

const dsri_simd_kernel *dsri_avx2_kernel_for(uint32_t type)
{
    switch (type) {
    case DSRI_TYPE_F32: return &dsri_avx2_kernel_f32;
    case DSRI_TYPE_F16: return &k_f16;
    case DSRI_TYPE_BF16: return &k_bf16;
    case DSRI_TYPE_Q4_0: return &k_q4_0;
    case DSRI_TYPE_Q4_1: return &k_q4_1;
    case DSRI_TYPE_Q5_0: return &k_q5_0;
    case DSRI_TYPE_Q5_1: return &k_q5_1;
    case DSRI_TYPE_Q8_0: return &k_q8_0;
    case DSRI_TYPE_IQ4_NL: return &k_iq4_nl;
    case DSRI_TYPE_Q2_K: return &k_q2_k;
    case DSRI_TYPE_Q3_K: return &k_q3_k;
    case DSRI_TYPE_Q4_K: return &k_q4_k;
    case DSRI_TYPE_Q5_K: return &k_q5_k;
    case DSRI_TYPE_Q6_K: return &k_q6_k;
    case DSRI_TYPE_IQ4_XS: return &k_iq4_xs;
    default: return iq_kernel_for(type); /* NULL where none */
    }
}

/* ---- activation quantization ---- */

/* 32 floats -> 32 int8 = round(x * id); returns sum(q). */
INLINE int round32(const float *x, float id, int8_t *q)
{
    const __m256 mul = _mm256_set1_ps(id);
    __m256i i[4];
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul);
        i[k] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    return sum;
}

INLINE float absmax(const float *x, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    return hmax_ps(m);
}

/* the Q8_K blocks' sums of 16 (simd_act_quant.inc.c) */
INLINE int sum16(const int8_t *q)
{
    __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));
    return hsum_epi32(_mm256_madd_epi16(w, _mm256_set1_epi16(1)));
}

#include "backend/simd_act_quant.inc.c"

size_t dsri_avx2_act_row_bytes(dsri_act_kind act, int64_t n) { return act_row_bytes(act, n); }

void dsri_avx2_quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n)
{
    quantize_act(act, x, dst, n);
}

/* ---- elementwise ---- */

float dsri_avx2_dot_f32(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void dsri_avx2_axpy(float *y, const float *x, float a, int64_t n)
{
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

void dsri_avx2_add(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] += x[i];
}

/* exp(x) for x in float range: 2^k * p(r), |r| <= ln2/2, Cephes' polynomial
 * (about 1 ulp); below -87.3 gives 0, above 88.7 +inf. */
INLINE __m256 exp_ps(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.7f), lo = _mm256_set1_ps(-87.3f);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^k for k in [-126, 128]: split into two factors so k = 128 works */
    __m256i ki = _mm256_cvtps_epi32(k);
    __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, _mm256_set1_epi32(127)), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, _mm256_set1_epi32(127)), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), over);
    return _mm256_andnot_ps(under, res);
}

void dsri_avx2_silu_mul(float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp_ps(_mm256_xor_ps(x, neg));
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

float dsri_avx2_sumsq(const float *x, int64_t n)
{
    return dsri_avx2_dot_f32(x, x, n);
}

void dsri_avx2_scale_mul(float *y, const float *x, float s, const float *w, int64_t n)
{
    const __m256 sv = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * s * w[i];
}

float dsri_avx2_max(const float *v, int64_t n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(v + i));
    float r = hmax_ps(m);
    for (; i < n; i++)
        if (v[i] > r)
            r = v[i];
    return r;
}

float dsri_avx2_exp_sum(float *v, float mx, int64_t n)
{
    const __m256 m = _mm256_set1_ps(mx);
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i), m));
        _mm256_storeu_ps(v + i, e);
        s = _mm256_add_ps(s, e);
    }
    float r = hsum_ps(s);
    for (; i < n; i++) {
        v[i] = expf(v[i] - mx);
        r += v[i];
    }
    return r;
}

void dsri_avx2_scale(float *v, float s, int64_t n)
{
    const __m256 sv = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_loadu_ps(v + i), sv));
    for (; i < n; i++)
        v[i] *= s;
}
