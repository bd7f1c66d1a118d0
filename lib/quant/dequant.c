/*
 * libdsr1 - dequantization of ggml block types to f32.
 *
 * Each dq_* function converts nb consecutive blocks.  Byte layouts (offsets
 * within one block; fp16 fields little-endian):
 *
 *   Q4_0   18 B / 32 : d@0, qs[16]@2          y[j]=(lo(qs[j])-8)*d, y[j+16]=(hi(qs[j])-8)*d
 *   Q4_1   20 B / 32 : d@0, m@2, qs[16]@4     y = q*d + m
 *   Q5_0   22 B / 32 : d@0, qh(u32)@2, qs@6   5th bit of y[j] is qh bit j (j < 32)
 *   Q5_1   24 B / 32 : d@0, m@2, qh@4, qs@8
 *   Q8_0   34 B / 32 : d@0, qs[32] int8 @2
 *   IQ4_NL 18 B / 32 : d@0, qs[16]@2          y = d*kvalues[nibble]
 *   Q2_K   84 B /256 : scales[16]@0, qs[64]@16, d@80, dmin@82
 *   Q3_K  110 B /256 : hmask[32]@0, qs[64]@32, scales[12]@96, d@108
 *   Q4_K  144 B /256 : d@0, dmin@2, scales[12]@4, qs[128]@16
 *   Q5_K  176 B /256 : d@0, dmin@2, scales[12]@4, qh[32]@16, qs[128]@48
 *   Q6_K  210 B /256 : ql[128]@0, qh[64]@128, scales[16] int8 @192, d@208
 *   IQ4_XS 136 B/256 : d@0, scales_h(u16)@2, scales_l[4]@4, qs[128]@8
 *
 * Float expressions are written in ggml's evaluation order so results are
 * bit-identical to ggml's reference dequantize_row_* (see quant.h).
 */
#include <string.h>

#include "quant_internal.h"

const int8_t dsri_kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

static void dq_f32(const uint8_t *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float)); /* GGUF is little-endian, as is the host */
}

static void dq_f16(const uint8_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = dsri_rd_f16(x + 2 * i);
}

static void dq_bf16(const uint8_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = dsri_bf16_to_fp32(dsri_rd_u16(x + 2 * i));
}

static void dq_q4_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 18, y += 32) {
        const float d = dsri_rd_f16(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < 16; j++) {
            const int v0 = (qs[j] & 0x0F) - 8;
            const int v1 = (qs[j] >> 4) - 8;
            y[j] = (float)v0 * d;
            y[j + 16] = (float)v1 * d;
        }
    }
}

static void dq_q4_1(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 20, y += 32) {
        const float d = dsri_rd_f16(x);
        const float m = dsri_rd_f16(x + 2);
        const uint8_t *qs = x + 4;
        for (int j = 0; j < 16; j++) {
            const int v0 = qs[j] & 0x0F;
            const int v1 = qs[j] >> 4;
            y[j] = (float)v0 * d + m;
            y[j + 16] = (float)v1 * d + m;
        }
    }
}

static void dq_q5_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 22, y += 32) {
        const float d = dsri_rd_f16(x);
        const uint32_t qh = dsri_rd_u32(x + 2);
        const uint8_t *qs = x + 6;
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            const int v0 = ((qs[j] & 0x0F) | h0) - 16;
            const int v1 = ((qs[j] >> 4) | h1) - 16;
            y[j] = (float)v0 * d;
            y[j + 16] = (float)v1 * d;
        }
    }
}

static void dq_q5_1(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 24, y += 32) {
        const float d = dsri_rd_f16(x);
        const float m = dsri_rd_f16(x + 2);
        const uint32_t qh = dsri_rd_u32(x + 4);
        const uint8_t *qs = x + 8;
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            const int v0 = (qs[j] & 0x0F) | h0;
            const int v1 = (qs[j] >> 4) | h1;
            y[j] = (float)v0 * d + m;
            y[j + 16] = (float)v1 * d + m;
        }
    }
}

static void dq_q8_0(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 34, y += 32) {
        const float d = dsri_rd_f16(x);
        for (int j = 0; j < 32; j++) {
            const int v = (int)x[2 + j] - ((x[2 + j] & 0x80) ? 256 : 0); /* int8 */
            y[j] = (float)v * d;
        }
    }
}

static void dq_iq4_nl(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 18, y += 32) {
        const float d = dsri_rd_f16(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)dsri_kvalues_iq4nl[qs[j] & 0x0F];
            y[j + 16] = d * (float)dsri_kvalues_iq4nl[qs[j] >> 4];
        }
    }
}

/*
 * Q2_K: 16 sub-blocks of 16.  scales[s]: low nibble = scale, high = min.
 * Element order: two 128-halves; in each, 4 bit-planes (shift 0,2,4,6) of
 * 32 bytes, the first 16 bytes one sub-block, the next 16 the following one.
 */
static void dq_q2_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 84) {
        const uint8_t *sc = x;
        const uint8_t *q = x + 16;
        const float d = dsri_rd_f16(x + 80);
        const float dmin = dsri_rd_f16(x + 82);
        int s = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++, s++) {
                    const float dl = d * (float)(sc[s] & 0x0F);
                    const float ml = dmin * (float)(sc[s] >> 4);
                    const uint8_t *qp = q + 16 * part;
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((qp[l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/*
 * Q3_K: like Q2_K's bit-plane order for the low 2 bits; the third bit comes
 * from hmask: bit (plane index 0..7) of hmask[l] for the element at byte l
 * of the current 32-byte group; a clear bit means subtract 4.
 */
static void dq_q3_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 110) {
        const uint8_t *hm = x;
        const uint8_t *q = x + 32;
        const uint8_t *scales = x + 96;
        const float d_all = dsri_rd_f16(x + 108);
        int s = 0;
        unsigned m = 1;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int part = 0; part < 2; part++, s++) {
                    const float dl = d_all * (float)dsri_scale_q3_k(s, scales);
                    const uint8_t *qp = q + 16 * part;
                    const uint8_t *hp = hm + 16 * part;
                    for (int l = 0; l < 16; l++) {
                        const int v = ((qp[l] >> shift) & 3) - ((hp[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K: 4 chunks of 64 = 32 bytes; low nibbles -> sub-block 2c, high -> 2c+1. */
static void dq_q4_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 144) {
        const float d = dsri_rd_f16(x);
        const float dmin = dsri_rd_f16(x + 2);
        const uint8_t *scales = x + 4;
        const uint8_t *q = x + 16;
        for (int c = 0; c < 4; c++, q += 32) {
            uint8_t sc, m;
            dsri_scale_min_k4(2 * c, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            dsri_scale_min_k4(2 * c + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: Q4_K plus a 5th bit: qh[l] bit 2c for the low half, 2c+1 for the high. */
static void dq_q5_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 176) {
        const float d = dsri_rd_f16(x);
        const float dmin = dsri_rd_f16(x + 2);
        const uint8_t *scales = x + 4;
        const uint8_t *qh = x + 16;
        const uint8_t *ql = x + 48;
        for (int c = 0; c < 4; c++, ql += 32) {
            const unsigned u1 = 1u << (2 * c), u2 = 2u << (2 * c);
            uint8_t sc, m;
            dsri_scale_min_k4(2 * c, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            dsri_scale_min_k4(2 * c + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

/*
 * Q6_K: two halves of 128.  In a half, for l in 0..31:
 *   y[l]    = lo(ql[l])    | bits 0-1 of qh[l] << 4   (scale sc[l/16 + 0])
 *   y[l+32] = lo(ql[l+32]) | bits 2-3                 (sc[l/16 + 2])
 *   y[l+64] = hi(ql[l])    | bits 4-5                 (sc[l/16 + 4])
 *   y[l+96] = hi(ql[l+32]) | bits 6-7                 (sc[l/16 + 6])
 * each minus 32, times d * sc (int8).
 */
static void dq_q6_k(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 210) {
        const uint8_t *ql = x;
        const uint8_t *qh = x + 128;
        const uint8_t *scb = x + 192;
        const float d = dsri_rd_f16(x + 208);
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, scb += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                const int s1 = (int8_t)scb[is + 0], s2 = (int8_t)scb[is + 2];
                const int s3 = (int8_t)scb[is + 4], s4 = (int8_t)scb[is + 6];
                y[l + 0] = d * (float)s1 * (float)q1;
                y[l + 32] = d * (float)s2 * (float)q2;
                y[l + 64] = d * (float)s3 * (float)q3;
                y[l + 96] = d * (float)s4 * (float)q4;
            }
        }
    }
}

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l
 * nibbles, high 2 bits in scales_h), minus 32; nibbles as IQ4_NL. */
static void dq_iq4_xs(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 136) {
        const float d = dsri_rd_f16(x);
        const unsigned scales_h = dsri_rd_u16(x + 2);
        const uint8_t *scales_l = x + 4;
        const uint8_t *qs = x + 8;
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (int)(((scales_h >> (2 * ib)) & 3u) << 4);
            const float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)dsri_kvalues_iq4nl[qs[j] & 0x0F];
                y[j + 16] = dl * (float)dsri_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

int dsri_dequantize_row(uint32_t ggml_type, const void *src, float *dst, int64_t n)
{
    const dsri_type_traits *t = dsri_type_traits_get(ggml_type);
    if (!t || n < 0 || n % t->block_size != 0 || (n > 0 && (!src || !dst)))
        return -1;
    const uint8_t *x = (const uint8_t *)src;
    const int64_t nb = n / t->block_size;
    if (n == 0)
        return 0;
    switch (ggml_type) {
    case DSRI_TYPE_F32: dq_f32(x, dst, n); break;
    case DSRI_TYPE_F16: dq_f16(x, dst, n); break;
    case DSRI_TYPE_BF16: dq_bf16(x, dst, n); break;
    case DSRI_TYPE_Q4_0: dq_q4_0(x, dst, nb); break;
    case DSRI_TYPE_Q4_1: dq_q4_1(x, dst, nb); break;
    case DSRI_TYPE_Q5_0: dq_q5_0(x, dst, nb); break;
    case DSRI_TYPE_Q5_1: dq_q5_1(x, dst, nb); break;
    case DSRI_TYPE_Q8_0: dq_q8_0(x, dst, nb); break;
    case DSRI_TYPE_Q2_K: dq_q2_k(x, dst, nb); break;
    case DSRI_TYPE_Q3_K: dq_q3_k(x, dst, nb); break;
    case DSRI_TYPE_Q4_K: dq_q4_k(x, dst, nb); break;
    case DSRI_TYPE_Q5_K: dq_q5_k(x, dst, nb); break;
    case DSRI_TYPE_Q6_K: dq_q6_k(x, dst, nb); break;
    case DSRI_TYPE_IQ4_NL: dq_iq4_nl(x, dst, nb); break;
    case DSRI_TYPE_IQ4_XS: dq_iq4_xs(x, dst, nb); break;
    default: return dsri_dequantize_iq(ggml_type, x, dst, nb);
    }
    return 0;
}
