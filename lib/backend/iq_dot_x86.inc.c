/*
 * Dot kernels of the lattice ("IQ") weight types IQ1_S, IQ1_M, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S against Q8_K activations, for the x86 SIMD
 * backends (internal). One source for both: lib/backend/avx2/kernels.c and
 * lib/backend/avx512/kernels.c include it after defining INLINE, UNROLL
 * and, for the AVX2 build only, bits32(p) (the 32 bits at p -> 0xFF bytes
 * where set); it defines iq_kernel_for(). Where the compiler
 * targets AVX-512 BW/VL (+VNNI) signs are applied through mask registers and
 * pairs accumulate with vpdpwssd; otherwise with psignb and pmaddwd. Both
 * compute the same exact integers and then the same float operations, so the
 * two backends give the same bits for these types.
 *
 * Block layouts: lib/quant/dequant_iq.c. Each weight is (a small odd
 * integer scale) x (a grid magnitude) x (+-1), times a per-256 f16 d and a
 * power of two fixed per type; so per 32-element sub-block the kernel forms
 * grid magnitudes as unsigned bytes and the sub-block's 32 sign bits, takes
 * maddubs(magnitudes, signed activations) (int16 pairs: at most
 * 2 * 62 * 127, no saturation), multiplies the pairs by the odd scale
 * (pmaddwd to int32; per 256 at most 256 * 62 * 127 * 31 < 2^26), and per
 * super-block does acc = fma(d_w * d_y, float(isum), acc); the type's power
 * of two multiplies the final sum (exact). The IQ1 types' +-1/8 shift
 * becomes part of the integer weight: 8 * grid + (+-1), in [-9, 9].
 *
 *   type     weight = d * ...                  kernel integer weight  factor
 *   IQ2_*    (2s + 1) / 8 * grid * sign        (2s + 1) * grid * sign 1/8
 *   IQ3_XXS  (2s + 1) / 4 * grid * sign        (2s + 1) * grid * sign 1/4
 *   IQ3_S    (2s + 1) * grid * sign            (2s + 1) * grid * sign 1
 *   IQ1_*    (2s + 1) * (grid +- 1/8)          (2s + 1) * (8 grid +- 1) 1/8
 */
#include "quant/iq_tables.h"

/* the 8 sub-blocks of a super-block unrolled: their table lookups overlap */
#if defined(__GNUC__) || defined(__clang__)
#define IQ_UNROLL8 _Pragma("GCC unroll 8")
#else
#define IQ_UNROLL8
#endif

#if defined(__AVX512BW__) && defined(__AVX512VL__)
/* the 32 sign bits of a sub-block as a mask: y negated where set */
typedef __mmask32 iq_signs;
INLINE iq_signs iq_signs_of_bits(uint32_t bits) { return (__mmask32)bits; }
/* the signs of 32 int8 weights (none zero) */
INLINE iq_signs iq_signs_of_bytes(__m256i w) { return _mm256_movepi8_mask(w); }
INLINE __m256i iq_apply_signs(__m256i y, iq_signs s) { return _mm256_mask_sub_epi8(y, s, _mm256_setzero_si256(), y); }
#else
/* +-1 bytes: psignb multiplies y by them */
typedef __m256i iq_signs;
INLINE iq_signs iq_signs_of_bits(uint32_t bits)
{
    return _mm256_or_si256(bits32((const uint8_t *)&bits), _mm256_set1_epi8(1));
}
INLINE iq_signs iq_signs_of_bytes(__m256i w) { return w; }
INLINE __m256i iq_apply_signs(__m256i y, iq_signs s) { return _mm256_sign_epi8(y, s); }
#endif

/* acc + the int16 pairs p times the int16 scales sc, summed in pairs */
INLINE __m256i iq_madd_acc(__m256i acc, __m256i p, __m256i sc)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, p, sc);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
#endif
}

INLINE float iq_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE uint32_t iq_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

INLINE unsigned iq_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* int16 scales: a for elements 0..15 of the sub-block, b for 16..31 */
INLINE __m256i iq_scales(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

INLINE float iq_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 8-bit sign masks of four groups of 7 stored bits (IQ2_XXS, IQ3_XXS):
 * each group and, as its 8th bit, the group's parity (dsri_ksigns_iq2xs[i] =
 * i | parity(i) << 7). With BMI2 (the avx512 build; every AVX-512 CPU has it)
 * the groups are spread to bytes by pdep and the parities computed in the
 * register, 10 operations in place of 4 table loads and 13 to place them:
 * the lookups were a quarter of IQ2_XXS's decode kernel. */
INLINE uint32_t iq_ksigns4(uint32_t aux)
{
#if defined(__BMI2__)
    const uint32_t b = _pdep_u32(aux, 0x7F7F7F7Fu);
    uint32_t p = b ^ (b >> 4);
    p ^= p >> 2;
    p ^= p >> 1;
    return b | (p & 0x01010101u) << 7;
#else
    return (uint32_t)dsri_ksigns_iq2xs[aux & 127] | (uint32_t)dsri_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
           (uint32_t)dsri_ksigns_iq2xs[(aux >> 14) & 127] << 16 | (uint32_t)dsri_ksigns_iq2xs[(aux >> 21) & 127] << 24;
#endif
}

/* Sub-block j (32 weights) of a super-block w: q the unsigned magnitudes, s
 * their signs, sc the int16 scales of its two halves. */
#define IQ_SUB(T) INLINE void T##_sub(const uint8_t *w, int j, __m256i *q, iq_signs *s, __m256i *sc)

IQ_SUB(iq2_xxs)
{
    const uint8_t *g = w + 2 + 8 * j;
    const uint32_t aux = iq_u32(g + 4);
    *q = _mm256_set_epi64x((int64_t)dsri_iq2xxs_grid[g[3]], (int64_t)dsri_iq2xxs_grid[g[2]],
                           (int64_t)dsri_iq2xxs_grid[g[1]], (int64_t)dsri_iq2xxs_grid[g[0]]);
    *s = iq_signs_of_bits(iq_ksigns4(aux));
    *sc = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
}

IQ_SUB(iq2_xs)
{
    unsigned v[4];
    for (int l = 0; l < 4; l++)
        v[l] = iq_u16(w + 2 + 8 * j + 2 * l);
    *q = _mm256_set_epi64x((int64_t)dsri_iq2xs_grid[v[3] & 511], (int64_t)dsri_iq2xs_grid[v[2] & 511],
                           (int64_t)dsri_iq2xs_grid[v[1] & 511], (int64_t)dsri_iq2xs_grid[v[0] & 511]);
    *s = iq_signs_of_bits((uint32_t)dsri_ksigns_iq2xs[v[0] >> 9] | (uint32_t)dsri_ksigns_iq2xs[v[1] >> 9] << 8 |
                          (uint32_t)dsri_ksigns_iq2xs[v[2] >> 9] << 16 |
                          (uint32_t)dsri_ksigns_iq2xs[v[3] >> 9] << 24);
    const unsigned sb = w[66 + j];
    *sc = iq_scales(2 * (int)(sb & 15) + 1, 2 * (int)(sb >> 4) + 1);
}

IQ_SUB(iq2_s)
{
    const uint8_t *g = w + 2 + 4 * j;
    const unsigned qh = w[66 + j];
    *q = _mm256_set_epi64x((int64_t)dsri_iq2s_grid[g[3] | ((qh << 2) & 0x300)],
                           (int64_t)dsri_iq2s_grid[g[2] | ((qh << 4) & 0x300)],
                           (int64_t)dsri_iq2s_grid[g[1] | ((qh << 6) & 0x300)],
                           (int64_t)dsri_iq2s_grid[g[0] | ((qh << 8) & 0x300)]);
    *s = iq_signs_of_bits(iq_u32(w + 34 + 4 * j));
    const unsigned sb = w[74 + j];
    *sc = iq_scales(2 * (int)(sb & 15) + 1, 2 * (int)(sb >> 4) + 1);
}

IQ_SUB(iq3_xxs)
{
    const uint8_t *g = w + 2 + 8 * j;
    const uint32_t aux = iq_u32(w + 66 + 4 * j);
    *q = _mm256_set_epi32((int)dsri_iq3xxs_grid[g[7]], (int)dsri_iq3xxs_grid[g[6]], (int)dsri_iq3xxs_grid[g[5]],
                          (int)dsri_iq3xxs_grid[g[4]], (int)dsri_iq3xxs_grid[g[3]], (int)dsri_iq3xxs_grid[g[2]],
                          (int)dsri_iq3xxs_grid[g[1]], (int)dsri_iq3xxs_grid[g[0]]);
    *s = iq_signs_of_bits(iq_ksigns4(aux));
    *sc = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
}

IQ_SUB(iq3_s)
{
    /* group k's 9th index bit is bit k of qh; a gather measured 2x faster
     * here than 8 scalar lookups (but slower for IQ3_XXS's) */
    const __m256i hi = _mm256_and_si256(
        _mm256_sllv_epi32(_mm256_set1_epi32(w[66 + j]), _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1)),
        _mm256_set1_epi32(256));
    const __m256i idx = _mm256_or_si256(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w + 2 + 8 * j))), hi);
    *q = _mm256_i32gather_epi32((const int *)dsri_iq3s_grid, idx, 4);
    *s = iq_signs_of_bits(iq_u32(w + 74 + 4 * j));
    const int sc4 = (w[106 + j / 2] >> (4 * (j % 2))) & 15;
    *sc = _mm256_set1_epi16((short)(2 * sc4 + 1));
}

/* IQ1: 8 * grid + delta as int8 (grid bytes -1, 0, +1; delta +-1 per group
 * of 8, bytes 0x01 or 0xFF in dl), then magnitudes and signs. Group l's grid
 * index: byte g[l] and 3 high bits of h at hpos. */
#define IQ1_GRID(g, l, h, hpos) ((int64_t)dsri_iq1s_grid[(g)[l] | ((((h) >> (hpos)) & 7) << 8)])
#define IQ1_DELTA(neg) ((neg) ? (int64_t)-1 : (int64_t)0x0101010101010101)

INLINE void iq1_weights(__m256i grid, __m256i dl, __m256i *q, iq_signs *s)
{
    __m256i v = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), dl);
    *q = _mm256_abs_epi8(v);
    *s = iq_signs_of_bytes(v);
}

IQ_SUB(iq1_s)
{
    const uint8_t *g = w + 2 + 4 * j;
    const unsigned qh = iq_u16(w + 34 + 2 * j); /* 4 x 3 index bits, 3-bit scale, delta sign */
    iq1_weights(_mm256_set_epi64x(IQ1_GRID(g, 3, qh, 9), IQ1_GRID(g, 2, qh, 6), IQ1_GRID(g, 1, qh, 3),
                                  IQ1_GRID(g, 0, qh, 0)),
                _mm256_set1_epi64x(IQ1_DELTA(qh & 0x8000)), q, s);
    *sc = _mm256_set1_epi16((short)(2 * ((qh >> 12) & 7) + 1));
}

IQ_SUB(iq1_m)
{
    const uint8_t *g = w + 4 * j;
    const unsigned h = iq_u16(w + 32 + 2 * j); /* group l: 3 index bits at 4l, delta sign at 4l + 3 */
    iq1_weights(_mm256_set_epi64x(IQ1_GRID(g, 3, h, 12), IQ1_GRID(g, 2, h, 8), IQ1_GRID(g, 1, h, 4),
                                  IQ1_GRID(g, 0, h, 0)),
                _mm256_set_epi64x(IQ1_DELTA(h & 0x8000), IQ1_DELTA(h & 0x800), IQ1_DELTA(h & 0x80),
                                  IQ1_DELTA(h & 0x8)),
                q, s);
    const unsigned sc16 = iq_u16(w + 48 + 2 * (j / 2)) >> (6 * (j % 2));
    *sc = iq_scales(2 * (int)(sc16 & 7) + 1, 2 * (int)((sc16 >> 3) & 7) + 1);
}

/* The super-block's f16 d: at 0, or (IQ1_M) in the top nibbles of the four
 * scale words. */
INLINE float iq_d(const uint8_t *w) { return iq_f16(w); }
INLINE float iq1_m_d(const uint8_t *w)
{
    unsigned s0 = iq_u16(w + 48), s1 = iq_u16(w + 50), s2 = iq_u16(w + 52), s3 = iq_u16(w + 54);
    return _cvtsh_ss((unsigned short)((s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000)));
}

#define IQ_ACT(r) ((const dsri_aq8_k *)(x + (size_t)(r) * xs))

/* dot_T: NR activation rows against one weight row; BYTES per 256, D the
 * super-block scale, FACTOR the type's power of two. */
#define IQ_DOT(T, BYTES, D, FACTOR)                                                                \
    INLINE void dot_##T##_n(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out,  \
                            const int NR)                                                          \
    {                                                                                              \
        __m256 acc[DSRI_SIMD_NR];                                                                  \
        UNROLL for (int r = 0; r < NR; r++)                                                        \
            acc[r] = _mm256_setzero_ps();                                                          \
        for (int64_t ib = 0; ib < n / 256; ib++, w += (BYTES)) {                                   \
            __m256i isum[DSRI_SIMD_NR];                                                            \
            UNROLL for (int r = 0; r < NR; r++)                                                    \
                isum[r] = _mm256_setzero_si256();                                                  \
            IQ_UNROLL8 for (int j = 0; j < 8; j++) {                                               \
                __m256i q, sc;                                                                     \
                iq_signs s;                                                                        \
                T##_sub(w, j, &q, &s, &sc);                                                        \
                UNROLL for (int r = 0; r < NR; r++) {                                              \
                    __m256i y = _mm256_loadu_si256((const __m256i *)(IQ_ACT(r)[ib].q + 32 * j));     \
                    isum[r] = iq_madd_acc(isum[r], _mm256_maddubs_epi16(q, iq_apply_signs(y, s)), sc); \
                }                                                                                  \
            }                                                                                      \
            const float d = D(w);                                                                  \
            UNROLL for (int r = 0; r < NR; r++)                                                    \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * IQ_ACT(r)[ib].d), _mm256_cvtepi32_ps(isum[r]), \
                                         acc[r]);                                                  \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++)                                                        \
            out[r] = iq_hsum(acc[r]) * (FACTOR);                                                   \
    }                                                                                              \
    static void dot_##T(int64_t n, const void *w, const void *xv, size_t xs, int nr, float *out)  \
    {                                                                                              \
        switch (nr) {                                                                              \
        case 1: dot_##T##_n(n, w, xv, xs, out, 1); break;                                          \
        case 2: dot_##T##_n(n, w, xv, xs, out, 2); break;                                          \
        case 3: dot_##T##_n(n, w, xv, xs, out, 3); break;                                          \
        default: dot_##T##_n(n, w, xv, xs, out, 4); break;                                         \
        }                                                                                          \
    }

IQ_DOT(iq2_xxs, 66, iq_d, 0.125f)
IQ_DOT(iq2_xs, 74, iq_d, 0.125f)
IQ_DOT(iq2_s, 82, iq_d, 0.125f)
IQ_DOT(iq3_xxs, 98, iq_d, 0.25f)
IQ_DOT(iq3_s, 110, iq_d, 1.0f)
IQ_DOT(iq1_s, 50, iq_d, 0.125f)
IQ_DOT(iq1_m, 56, iq1_m_d, 0.125f)

static const dsri_simd_kernel k_iq2_xxs = {DSRI_ACT_Q8_K, dot_iq2_xxs, NULL, NULL, 0};
static const dsri_simd_kernel k_iq2_xs = {DSRI_ACT_Q8_K, dot_iq2_xs, NULL, NULL, 0};
static const dsri_simd_kernel k_iq2_s = {DSRI_ACT_Q8_K, dot_iq2_s, NULL, NULL, 0};
static const dsri_simd_kernel k_iq3_xxs = {DSRI_ACT_Q8_K, dot_iq3_xxs, NULL, NULL, 0};
static const dsri_simd_kernel k_iq3_s = {DSRI_ACT_Q8_K, dot_iq3_s, NULL, NULL, 0};
static const dsri_simd_kernel k_iq1_s = {DSRI_ACT_Q8_K, dot_iq1_s, NULL, NULL, 0};
static const dsri_simd_kernel k_iq1_m = {DSRI_ACT_Q8_K, dot_iq1_m, NULL, NULL, 0};

/* The kernel of an IQ lattice type, NULL for any other type. */
static const dsri_simd_kernel *iq_kernel_for(uint32_t type)
{
    switch (type) {
    case DSRI_TYPE_IQ2_XXS: return &k_iq2_xxs;
    case DSRI_TYPE_IQ2_XS: return &k_iq2_xs;
    case DSRI_TYPE_IQ2_S: return &k_iq2_s;
    case DSRI_TYPE_IQ3_XXS: return &k_iq3_xxs;
    case DSRI_TYPE_IQ3_S: return &k_iq3_s;
    case DSRI_TYPE_IQ1_S: return &k_iq1_s;
    case DSRI_TYPE_IQ1_M: return &k_iq1_m;
    default: return NULL;
    }
}
