/*
 * NEON dot kernels of the lattice ("IQ") weight types IQ1_S, IQ1_M, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S against Q8_K activations (internal).
 * Included by lib/backend/neon/kernels.c after its helpers (INLINE, UNROLL,
 * K(), idot, ACTK, NR_DISPATCH), so it is compiled twice like the rest:
 * plain NEON (smull + sadalp) and +dotprod (sdot); it defines
 * iq_kernel_for().
 *
 * The arithmetic is the x86 kernels' (lib/backend/iq_dot_x86.inc.c, which
 * has the table of each type's integer weight and power of two): every
 * weight is (a small odd integer scale) x (a signed integer) x (d, a per-256
 * f16) x (a power of two fixed per type). Per 32-element sub-block the
 * kernel forms the 32 signed integer weights as int8 (grid magnitude with
 * its sign, |w| <= 62; for IQ1 8 * grid +- 1, |w| <= 9), takes their exact
 * int32 dot products with the activation bytes per half of 16, multiplies
 * each half by its odd scale (vmla; per 256 at most 256 * 62 * 127 * 31 <
 * 2^26, exact) and per super-block adds d_w * d_y * float(isum) to one f32
 * accumulator per activation row; the power of two multiplies the final sum
 * (exact). Both builds give the same bits.
 *
 * Block layouts: lib/quant/dequant_iq.c.
 */
#include "quant/iq_tables.h"

INLINE unsigned iq_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

INLINE float iq_f16_bits(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

/* 16 bytes from two 8-byte grid entries (element i in byte i: little-endian) */
INLINE uint8x16_t iq_grid8x2(uint64_t a, uint64_t b) { return vcombine_u8(vcreate_u8(a), vcreate_u8(b)); }

/* 16 bytes from four 4-byte grid entries */
INLINE uint8x16_t iq_grid4x4(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    return vreinterpretq_u8_u64(vcombine_u64(vcreate_u64((uint64_t)a | (uint64_t)b << 32),
                                             vcreate_u64((uint64_t)c | (uint64_t)d << 32)));
}

/* magnitudes m negated where bit i of the low 16 bits of s is set */
INLINE int8x16_t iq_signed(uint8x16_t m, uint32_t s)
{
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t b = vcombine_u8(vdup_n_u8((uint8_t)(s & 0xFF)), vdup_n_u8((uint8_t)((s >> 8) & 0xFF)));
    const int8x16_t neg = vreinterpretq_s8_u8(vtstq_u8(b, vld1q_u8(sel)));
    return vsubq_s8(veorq_s8(vreinterpretq_s8_u8(m), neg), neg); /* (m ^ -1) + 1 = -m where set */
}

/* The 8-bit sign masks of four groups of 7 stored bits (IQ2_XXS, IQ3_XXS). */
INLINE uint32_t iq_ksigns4(uint32_t aux)
{
    return (uint32_t)dsri_ksigns_iq2xs[aux & 127] | (uint32_t)dsri_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
           (uint32_t)dsri_ksigns_iq2xs[(aux >> 14) & 127] << 16 | (uint32_t)dsri_ksigns_iq2xs[(aux >> 21) & 127] << 24;
}

/* Sub-block j (32 weights) of a super-block w: q[0], q[1] the signed integer
 * weights of elements 0..15 and 16..31, sc[0], sc[1] their odd scales. */
#define IQ_SUB(T) INLINE void T##_sub(const uint8_t *w, int j, int8x16_t *q, int *sc)

IQ_SUB(iq2_xxs)
{
    const uint8_t *g = w + 2 + 8 * j;
    const uint32_t aux = rd_u32(g + 4), s = iq_ksigns4(aux);
    q[0] = iq_signed(iq_grid8x2(dsri_iq2xxs_grid[g[0]], dsri_iq2xxs_grid[g[1]]), s);
    q[1] = iq_signed(iq_grid8x2(dsri_iq2xxs_grid[g[2]], dsri_iq2xxs_grid[g[3]]), s >> 16);
    sc[0] = sc[1] = 2 * (int)(aux >> 28) + 1;
}

IQ_SUB(iq2_xs)
{
    unsigned v[4];
    for (int l = 0; l < 4; l++)
        v[l] = iq_u16(w + 2 + 8 * j + 2 * l);
    q[0] = iq_signed(iq_grid8x2(dsri_iq2xs_grid[v[0] & 511], dsri_iq2xs_grid[v[1] & 511]),
                     (uint32_t)dsri_ksigns_iq2xs[v[0] >> 9] | (uint32_t)dsri_ksigns_iq2xs[v[1] >> 9] << 8);
    q[1] = iq_signed(iq_grid8x2(dsri_iq2xs_grid[v[2] & 511], dsri_iq2xs_grid[v[3] & 511]),
                     (uint32_t)dsri_ksigns_iq2xs[v[2] >> 9] | (uint32_t)dsri_ksigns_iq2xs[v[3] >> 9] << 8);
    const unsigned sb = w[66 + j];
    sc[0] = 2 * (int)(sb & 15) + 1;
    sc[1] = 2 * (int)(sb >> 4) + 1;
}

IQ_SUB(iq2_s)
{
    const uint8_t *g = w + 2 + 4 * j;
    const unsigned qh = w[66 + j];
    const uint32_t s = rd_u32(w + 34 + 4 * j);
    q[0] = iq_signed(iq_grid8x2(dsri_iq2s_grid[g[0] | ((qh << 8) & 0x300)], dsri_iq2s_grid[g[1] | ((qh << 6) & 0x300)]),
                     s);
    q[1] = iq_signed(iq_grid8x2(dsri_iq2s_grid[g[2] | ((qh << 4) & 0x300)], dsri_iq2s_grid[g[3] | ((qh << 2) & 0x300)]),
                     s >> 16);
    const unsigned sb = w[74 + j];
    sc[0] = 2 * (int)(sb & 15) + 1;
    sc[1] = 2 * (int)(sb >> 4) + 1;
}

IQ_SUB(iq3_xxs)
{
    const uint8_t *g = w + 2 + 8 * j;
    const uint32_t aux = rd_u32(w + 66 + 4 * j), s = iq_ksigns4(aux);
    q[0] = iq_signed(iq_grid4x4(dsri_iq3xxs_grid[g[0]], dsri_iq3xxs_grid[g[1]], dsri_iq3xxs_grid[g[2]],
                                dsri_iq3xxs_grid[g[3]]),
                     s);
    q[1] = iq_signed(iq_grid4x4(dsri_iq3xxs_grid[g[4]], dsri_iq3xxs_grid[g[5]], dsri_iq3xxs_grid[g[6]],
                                dsri_iq3xxs_grid[g[7]]),
                     s >> 16);
    sc[0] = sc[1] = 2 * (int)(aux >> 28) + 1;
}

IQ_SUB(iq3_s)
{
    const uint8_t *g = w + 2 + 8 * j;
    const unsigned qh = w[66 + j]; /* group k's 9th index bit is bit k */
#define IQ3S(k) dsri_iq3s_grid[g[k] | ((qh << (8 - (k))) & 256)]
    const uint32_t s = rd_u32(w + 74 + 4 * j);
    q[0] = iq_signed(iq_grid4x4(IQ3S(0), IQ3S(1), IQ3S(2), IQ3S(3)), s);
    q[1] = iq_signed(iq_grid4x4(IQ3S(4), IQ3S(5), IQ3S(6), IQ3S(7)), s >> 16);
#undef IQ3S
    sc[0] = sc[1] = 2 * ((w[106 + j / 2] >> (4 * (j % 2))) & 15) + 1;
}

/* IQ1: 8 * grid + delta as int8, grid bytes -1, 0, +1, delta +-1 per group
 * of 8 (neg0 for the first group, neg1 for the second). Group l's grid
 * index: byte g[l] and 3 high bits of h at hpos. */
#define IQ1_GRID(g, l, h, hpos) dsri_iq1s_grid[(g)[l] | ((((h) >> (hpos)) & 7) << 8)]
INLINE int8x16_t iq1_weights(uint64_t g0, uint64_t g1, int neg0, int neg1)
{
    const int8x16_t grid = vreinterpretq_s8_u8(iq_grid8x2(g0, g1));
    const int8x16_t delta = vcombine_s8(vdup_n_s8(neg0 ? -1 : 1), vdup_n_s8(neg1 ? -1 : 1));
    return vaddq_s8(vshlq_n_s8(grid, 3), delta);
}

IQ_SUB(iq1_s)
{
    const uint8_t *g = w + 2 + 4 * j;
    const unsigned qh = iq_u16(w + 34 + 2 * j); /* 4 x 3 index bits, 3-bit scale, delta sign */
    const int neg = (qh & 0x8000) != 0;
    q[0] = iq1_weights(IQ1_GRID(g, 0, qh, 0), IQ1_GRID(g, 1, qh, 3), neg, neg);
    q[1] = iq1_weights(IQ1_GRID(g, 2, qh, 6), IQ1_GRID(g, 3, qh, 9), neg, neg);
    sc[0] = sc[1] = 2 * (int)((qh >> 12) & 7) + 1;
}

IQ_SUB(iq1_m)
{
    const uint8_t *g = w + 4 * j;
    const unsigned h = iq_u16(w + 32 + 2 * j); /* group l: 3 index bits at 4l, delta sign at 4l + 3 */
    q[0] = iq1_weights(IQ1_GRID(g, 0, h, 0), IQ1_GRID(g, 1, h, 4), (h & 0x8) != 0, (h & 0x80) != 0);
    q[1] = iq1_weights(IQ1_GRID(g, 2, h, 8), IQ1_GRID(g, 3, h, 12), (h & 0x800) != 0, (h & 0x8000) != 0);
    const unsigned sc16 = iq_u16(w + 48 + 2 * (j / 2)) >> (6 * (j % 2));
    sc[0] = 2 * (int)(sc16 & 7) + 1;
    sc[1] = 2 * (int)((sc16 >> 3) & 7) + 1;
}
#undef IQ1_GRID

/* The super-block's f16 d: at 0, or (IQ1_M) in the top nibbles of the four
 * scale words. */
INLINE float iq_d(const uint8_t *w) { return rd_f16(w); }
INLINE float iq1_m_d(const uint8_t *w)
{
    const unsigned s0 = iq_u16(w + 48), s1 = iq_u16(w + 50), s2 = iq_u16(w + 52), s3 = iq_u16(w + 54);
    return iq_f16_bits((uint16_t)((s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000)));
}

/* dot_T: NR activation rows against one weight row; BYTES per 256, D the
 * super-block scale, FACTOR the type's power of two. */
#define IQ_DOT(T, BYTES, D, FACTOR)                                                                \
    INLINE void K(dot_##T##_n)(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, float *out, \
                               const int NR)                                                       \
    {                                                                                              \
        float acc[DSRI_SIMD_NR];                                                                   \
        UNROLL for (int r = 0; r < NR; r++) acc[r] = 0.0f;                                         \
        for (int64_t ib = 0; ib < n / 256; ib++, w += (BYTES)) {                                   \
            int32x4_t isum[DSRI_SIMD_NR];                                                          \
            UNROLL for (int r = 0; r < NR; r++) isum[r] = vdupq_n_s32(0);                          \
            for (int j = 0; j < 8; j++) {                                                          \
                int8x16_t q[2];                                                                    \
                int sc[2];                                                                         \
                T##_sub(w, j, q, sc);                                                              \
                UNROLL for (int r = 0; r < NR; r++) {                                              \
                    const int8_t *y = ACTK(r)[ib].q + 32 * j;                                      \
                    isum[r] = vmlaq_n_s32(isum[r], idot(vdupq_n_s32(0), q[0], vld1q_s8(y)), sc[0]); \
                    isum[r] = vmlaq_n_s32(isum[r], idot(vdupq_n_s32(0), q[1], vld1q_s8(y + 16)), sc[1]); \
                }                                                                                  \
            }                                                                                      \
            const float d = D(w);                                                                  \
            UNROLL for (int r = 0; r < NR; r++) acc[r] += d * ACTK(r)[ib].d * (float)vaddvq_s32(isum[r]); \
        }                                                                                          \
        UNROLL for (int r = 0; r < NR; r++) out[r] = acc[r] * (FACTOR);                            \
    }                                                                                              \
    static void K(dot_##T)(int64_t n, const void *w, const void *xv, size_t xs, int nr, float *out) \
    {                                                                                              \
        const uint8_t *W = w, *X = xv;                                                             \
        switch (nr) {                                                                              \
        case 1: K(dot_##T##_n)(n, W, X, xs, out, 1); break;                                        \
        case 2: K(dot_##T##_n)(n, W, X, xs, out, 2); break;                                        \
        case 3: K(dot_##T##_n)(n, W, X, xs, out, 3); break;                                        \
        default: K(dot_##T##_n)(n, W, X, xs, out, 4); break;                                       \
        }                                                                                          \
    }                                                                                              \
    static const dsri_simd_kernel K(k_##T) = {DSRI_ACT_Q8_K, K(dot_##T), NULL, NULL, 0};

IQ_DOT(iq2_xxs, 66, iq_d, 0.125f)
IQ_DOT(iq2_xs, 74, iq_d, 0.125f)
IQ_DOT(iq2_s, 82, iq_d, 0.125f)
IQ_DOT(iq3_xxs, 98, iq_d, 0.25f)
IQ_DOT(iq3_s, 110, iq_d, 1.0f)
IQ_DOT(iq1_s, 50, iq_d, 0.125f)
IQ_DOT(iq1_m, 56, iq1_m_d, 0.125f)
#undef IQ_DOT

/* The kernel of an IQ lattice type, NULL for any other type. */
static const dsri_simd_kernel *K(iq_kernel_for)(uint32_t type)
{
    switch (type) {
    case DSRI_TYPE_IQ2_XXS: return &K(k_iq2_xxs);
    case DSRI_TYPE_IQ2_XS: return &K(k_iq2_xs);
    case DSRI_TYPE_IQ2_S: return &K(k_iq2_s);
    case DSRI_TYPE_IQ3_XXS: return &K(k_iq3_xxs);
    case DSRI_TYPE_IQ3_S: return &K(k_iq3_s);
    case DSRI_TYPE_IQ1_S: return &K(k_iq1_s);
    case DSRI_TYPE_IQ1_M: return &K(k_iq1_m);
    default: return NULL;
    }
}
