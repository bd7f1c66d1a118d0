/*
 * libdsr1 - IQ4_NL and IQ4_XS quantizers (f32 -> 4-bit non-linear levels).
 *
 * ggml's quantize_row_iq4_nl_impl as llama-quantize calls it (through
 * ggml_quantize_chunk: ntry 7), bit for bit: each block of 32 picks the
 * scale that minimises the weighted squared error over 15 candidate
 * inverse scales, where the weights are the importance matrix times
 * sqrt(sigma2 + x^2) when one is given, else x^2.  IQ4_XS then stores the
 * eight block scales as 6-bit multiples of one fp16 scale per 256 and
 * re-picks every level for its rounded scale.
 */
#include <math.h>
#include <string.h>

#include "quant_internal.h"

#define IQ4_NTRY 7

/* index of the level nearest to x (ggml best_index_int8: ties go up) */
static int best_index_iq4(float x)
{
    const int8_t *val = dsri_kvalues_iq4nl;
    if (x <= val[0])
        return 0;
    if (x >= val[15])
        return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* Best scale for one block of 32 (levels into L); 0 for an all-zero block. */
static float iq4_block_scale(const float *xb, const float *weight, uint8_t *L)
{
    const int8_t *values = dsri_kvalues_iq4nl;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
        const float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < DSRI_GROUP_MAX_EPS) {
        memset(L, 0, 32);
        return 0.f;
    }
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const int l = best_index_iq4(id * xb[j]);
        L[j] = (uint8_t)l;
        const float q = values[l], w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; ++itry) {
        id = (itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const int l = best_index_iq4(id * xb[j]);
            const float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* the weights of block ib of a super-block x of n values */
static void iq4_weights(const float *x, int n, int ib, const float *qw, float *weight)
{
    const float *xb = x + 32 * ib;
    if (qw) {
        float sigma2 = 0;
        for (int j = 0; j < n; ++j) sigma2 += x[j] * x[j];
        sigma2 *= 2.f / n;
        for (int j = 0; j < 32; ++j) weight[j] = qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]);
    } else {
        for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
    }
}

/* 32 levels as 16 bytes: element j in the low nibble, j + 16 in the high */
static void iq4_pack(const uint8_t *L, uint8_t *q4)
{
    for (int j = 0; j < 16; ++j) q4[j] = (uint8_t)(L[j] | (L[16 + j] << 4));
}

/* IQ4_NL block: fp16 d, 16 bytes of nibbles. */
static void q_iq4_nl(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    uint8_t L[32];
    float weight[32];
    for (int64_t i = 0; i < nb; i++, x += 32, y += 18, qw = qw ? qw + 32 : NULL) {
        iq4_weights(x, 32, 0, qw, weight);
        const float d = iq4_block_scale(x, weight, L);
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        /* ggml re-picks the levels for the unrounded best scale */
        const float id = d != 0.0f ? 1 / d : 0.f;
        if (d != 0.0f)
            for (int j = 0; j < 32; ++j) L[j] = (uint8_t)best_index_iq4(id * x[j]);
        else
            memset(L, best_index_iq4(0.f), 32);
        iq4_pack(L, y + 2);
    }
}

/* IQ4_XS super-block of 256: fp16 d, scales_h (u16), scales_l[4], qs[128]. */
static void q_iq4_xs(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    uint8_t L[DSRI_QK_K];
    float weight[32], scales[8];
    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 136, qw = qw ? qw + DSRI_QK_K : NULL) {
        float max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            iq4_weights(x, DSRI_QK_K, ib, qw, weight);
            scales[ib] = iq4_block_scale(x + 32 * ib, weight, L + 32 * ib);
            const float abs_d = fabsf(scales[ib]);
            if (abs_d > amax_scale) {
                amax_scale = abs_d;
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        const float id = d != 0.0f ? 1 / d : 0.f;
        uint16_t scales_h = 0;
        uint8_t *scales_l = y + 4;
        memset(scales_l, 0, 4);
        for (int ib = 0; ib < 8; ++ib) {
            int l = dsri_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * l;
            const float idl = dl != 0.0f ? 1 / dl : 0.f;
            for (int j = 0; j < 32; ++j) L[32 * ib + j] = (uint8_t)best_index_iq4(idl * x[32 * ib + j]);
            l += 32;
            scales_l[ib / 2] = (uint8_t)(scales_l[ib / 2] | ((l & 0xF) << (4 * (ib % 2))));
            scales_h = (uint16_t)(scales_h | ((l >> 4) << (2 * ib)));
        }
        dsri_wr_u16(y + 2, scales_h);
        for (int ib = 0; ib < 8; ++ib) iq4_pack(L + 32 * ib, y + 8 + 16 * ib);
    }
}

int dsri_quantize_iq4(uint32_t ggml_type, const float *x, uint8_t *y, int64_t nb, const float *imatrix)
{
    switch (ggml_type) {
    case DSRI_TYPE_IQ4_NL: q_iq4_nl(x, y, nb, imatrix); return 0;
    case DSRI_TYPE_IQ4_XS: q_iq4_xs(x, y, nb, imatrix); return 0;
    default: return -1;
    }
}
