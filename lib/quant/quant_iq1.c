/*
 * libdsr1 - quantizers for IQ1_S and IQ1_M, following ggml's
 * quantize_row_iq1_s_impl and quantize_row_iq1_m_impl operation for
 * operation.
 *
 * Each weight is one of three levels -1, 0, +1 plus a shift of +-1/8 (one
 * sign per sub-block in IQ1_S, per group of 8 in IQ1_M), times a sub-block
 * scale. With three levels the best split of a sub-block's sorted values
 * into the three can be found exhaustively; groups of 8 whose levels are
 * not on the grid then move to their best grid neighbour.
 */
#include <float.h>
#include <math.h>

#include "quant/iq_tables.h"
#include "quant_iq_lattice.h"

/* Level values with the shift added (x_p) or taken away (x_m). */
static const float x_p[3] = {-1 + DSRI_IQ1_DELTA, DSRI_IQ1_DELTA, 1 + DSRI_IQ1_DELTA};
static const float x_m[3] = {-1 - DSRI_IQ1_DELTA, -DSRI_IQ1_DELTA, 1 - DSRI_IQ1_DELTA};

/* idx[0..n): the positions of x in ascending order of value (stable). */
static void sort_by_value(const float *x, int n, int *idx)
{
    for (int j = 0; j < n; j++) {
        int k = j;
        while (k > 0 && x[idx[k - 1]] > x[j]) {
            idx[k] = idx[k - 1];
            k--;
        }
        idx[k] = j;
    }
}

/* L[idx[j]] = 0 below i1, 1 from i1 to i2, 2 from i2 */
static void levels_from_split(const int *idx, int n, int i1, int i2, int8_t *L)
{
    for (int j = 0; j < n; j++)
        L[idx[j]] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
}

/* Places the groups of 8 of a sub-block on the grid (their levels L, the
 * shifted level values xx[k] of group k) and returns their indices in
 * index[]; when any group moved, refits the scale to the moved levels. */
static float place_groups(const dsri_iq_lattice *lat, const float *xb, const float *weight, int n_groups,
                          const float *const *xx, float scale, int8_t *L, uint16_t *index)
{
    int all_on_grid = 1;
    for (int k = 0; k < n_groups; k++) {
        uint32_t code = 0;
        for (int j = 0; j < 8; j++)
            code |= (uint32_t)L[8 * k + j] << (2 * j);
        int gi = lat->map[code];
        if (gi < 0) {
            all_on_grid = 0;
            gi = dsri_iq_best_neighbour(lat, code, xb + 8 * k, weight + 8 * k, scale, xx[k], L + 8 * k);
        }
        index[k] = (uint16_t)gi;
    }
    if (!all_on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < n_groups; k++) {
            const uint8_t *g = lat->levels + (size_t)index[k] * 8;
            for (int j = 0; j < 8; j++) {
                const float w = weight[8 * k + j], q = xx[k][g[j]];
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
        if (sumqx > 0 && sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

static void q_iq1_s(const dsri_iq_lattice *lat, const float *x, uint8_t *y, int64_t n, const float *qw)
{
    for (int64_t ibl = 0; ibl < n / DSRI_QK_K; ibl++, y += 50) {
        const float *xbl = x + DSRI_QK_K * ibl;
        float scales[8], weight[32], sumx[33], sumw[33], max_scale = 0, sumx2 = 0;
        int shifts[8], idx[32];
        int8_t L[32];
        memset(y, 0, 50);
        for (int i = 0; i < DSRI_QK_K; i++)
            sumx2 += xbl[i] * xbl[i];
        const float sigma2 = 2 * sumx2 / DSRI_QK_K;
        for (int ib = 0; ib < 8; ib++) {
            const float *xb = xbl + 32 * ib, *q = qw + DSRI_QK_K * ibl + 32 * ib;
            for (int i = 0; i < 32; i++)
                weight[i] = q[i] * sqrtf(sigma2 + xb[i] * xb[i]);
            float max = fabsf(xb[0]);
            for (int i = 1; i < 32; i++)
                max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
            scales[ib] = 0;
            shifts[ib] = 1;
            if (max < 1e-12f)
                continue;
            sort_by_value(xb, 32, idx);
            sumx[0] = sumw[0] = 0;
            for (int j = 0; j < 32; j++) {
                sumx[j + 1] = sumx[j] + weight[idx[j]] * xb[idx[j]];
                sumw[j + 1] = sumw[j] + weight[idx[j]];
            }
            float best_score = -FLT_MAX, scale = max;
            int besti1 = -1, besti2 = -1, best_shift = 0;
            for (int i1 = 0; i1 <= 32; i1++) {
                for (int i2 = i1; i2 <= 32; i2++) {
                    for (int s = 0; s < 2; s++) {
                        const float *xs = s == 0 ? x_p : x_m;
                        const float sumqx = (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] +
                                            (sumx[32] - sumx[i2]) * xs[2];
                        const float sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] +
                                            (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                                            (sumw[32] - sumw[i2]) * xs[2] * xs[2];
                        if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
                            scale = sumqx / sumq2;
                            best_score = scale * sumqx;
                            besti1 = i1;
                            besti2 = i2;
                            best_shift = s == 0 ? 1 : -1;
                        }
                    }
                }
            }
            if (besti1 < 0 || besti2 < 0 || best_shift == 0)
                continue;
            levels_from_split(idx, 32, besti1, besti2, L);
            if (scale < 0) {
                for (int j = 0; j < 32; j++)
                    L[j] = (int8_t)(2 - L[j]);
                scale = -scale;
                best_shift = -best_shift;
            }
            const float *xx = best_shift == 1 ? x_p : x_m;
            const float *const xxs[4] = {xx, xx, xx, xx};
            uint16_t index[4];
            scale = place_groups(lat, xb, weight, 4, xxs, scale, L, index);
            unsigned h = 0;
            for (int k = 0; k < 4; k++) {
                y[2 + 4 * ib + k] = (uint8_t)(index[k] & 255);
                h |= (unsigned)(index[k] >> 8) << (3 * k);
            }
            dsri_wr_u16(y + 34 + 2 * ib, (uint16_t)h);
            scales[ib] = scale;
            shifts[ib] = best_shift;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale)
            continue;
        const float d = max_scale / 15, id = 1 / d;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d * 1.125f)); /* ggml's fudge factor */
        for (int ib = 0; ib < 8; ib++) {
            int l = dsri_nearest_int(0.5f * (id * scales[ib] - 1));
            l = l < 0 ? 0 : l > 7 ? 7 : l;
            if (shifts[ib] == -1)
                l |= 8;
            dsri_wr_u16(y + 34 + 2 * ib, (uint16_t)(dsri_rd_u16(y + 34 + 2 * ib) | (l << 12)));
        }
    }
}

/* IQ1_M's four shift choices for a sub-block's two groups: k = 0 (+,+),
 * 1 (+,-), 2 (-,+), 3 (-,-); the level values group g uses under k. */
static const float *iq1m_values(int k, int g)
{
    return (g == 0 ? k < 2 : k % 2 == 0) ? x_p : x_m;
}

static void q_iq1_m(const dsri_iq_lattice *lat, const float *x, uint8_t *y, int64_t n, const float *qw)
{
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88}; /* the groups' shift bits in qh */
    for (int64_t ibl = 0; ibl < n / DSRI_QK_K; ibl++, y += 56) {
        const float *xbl = x + DSRI_QK_K * ibl;
        uint8_t *qs = y, *qh = y + 32;
        float scales[16], weight[16], max_scale = 0, sumx2 = 0;
        int shifts[16], idx[16];
        int8_t L[16];
        memset(y, 0, 56);
        for (int i = 0; i < DSRI_QK_K; i++)
            sumx2 += xbl[i] * xbl[i];
        const float sigma2 = 2 * sumx2 / DSRI_QK_K;
        for (int ib = 0; ib < 16; ib++) {
            const float *xb = xbl + 16 * ib;
            for (int i = 0; i < 16; i++)
                weight[i] = qw ? qw[DSRI_QK_K * ibl + 16 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
            float max = fabsf(xb[0]);
            for (int i = 1; i < 16; i++)
                max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
            scales[ib] = 0;
            shifts[ib] = 0;
            if (max < 1e-7f)
                continue;
            sort_by_value(xb, 16, idx);
            float best_score = -FLT_MAX, scale = max;
            int besti1 = -1, besti2 = -1, best_k = -1;
            for (int i1 = 0; i1 <= 16; i1++) {
                for (int i2 = i1; i2 <= 16; i2++) {
                    float sumqx[4] = {0, 0, 0, 0}, sumq2[4] = {0, 0, 0, 0};
                    for (int j = 0; j < 16; j++) {
                        const int i = idx[j], level = j < i1 ? 0 : j < i2 ? 1 : 2;
                        for (int k = 0; k < 4; k++) {
                            const float v = iq1m_values(k, i >= 8)[level];
                            sumqx[k] += weight[i] * v * xb[i];
                            sumq2[k] += weight[i] * v * v;
                        }
                    }
                    for (int k = 0; k < 4; k++) {
                        if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
                            scale = sumqx[k] / sumq2[k];
                            best_score = scale * sumqx[k];
                            besti1 = i1;
                            besti2 = i2;
                            best_k = k;
                        }
                    }
                }
            }
            if (besti1 < 0 || besti2 < 0 || best_k < 0)
                continue;
            levels_from_split(idx, 16, besti1, besti2, L);
            if (scale < 0) {
                for (int j = 0; j < 16; j++)
                    L[j] = (int8_t)(2 - L[j]);
                scale = -scale;
                best_k = 3 - best_k; /* both shifts change sign */
            }
            const float *const xxs[2] = {iq1m_values(best_k, 0), iq1m_values(best_k, 1)};
            uint16_t index[2];
            scale = place_groups(lat, xb, weight, 2, xxs, scale, L, index);
            qs[2 * ib] = (uint8_t)(index[0] & 255);
            qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
            qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
            scales[ib] = scale;
            shifts[ib] = best_k;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale)
            continue;
        unsigned sc[4] = {0, 0, 0, 0};
        float d = max_scale / 15, sumqx = 0, sumq2 = 0;
        const float id = 1 / d;
        /* the super-block scale refitted to the coded sub-block scales */
        for (int ib = 0; ib < 16; ib++) {
            int l = dsri_nearest_int(0.5f * (id * scales[ib] - 1));
            l = l < 0 ? 0 : l > 7 ? 7 : l;
            sc[ib / 4] |= (unsigned)l << (3 * (ib % 4));
            qh[ib] = (uint8_t)(qh[ib] | masks[shifts[ib]]);
            const float *xb = xbl + 16 * ib;
            for (int i = 0; i < 16; i++)
                weight[i] = qw ? qw[DSRI_QK_K * ibl + 16 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
            for (int k = 0; k < 2; k++) {
                const float *xx = iq1m_values(shifts[ib], k);
                const unsigned gi = qs[2 * ib + k] | ((qh[ib] << (8 - 4 * k)) & 0x700);
                const uint8_t *g = lat->levels + (size_t)gi * 8;
                for (int j = 0; j < 8; j++) {
                    const float w = weight[8 * k + j], q = xx[g[j]] * (2 * l + 1);
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
        }
        if (sumq2 > 0)
            d = sumqx / sumq2;
        const unsigned s = dsri_fp32_to_fp16(d * 1.1125f); /* ggml's fudge factor */
        sc[0] |= (s & 0x000f) << 12;
        sc[1] |= (s & 0x00f0) << 8;
        sc[2] |= (s & 0x0f00) << 4;
        sc[3] |= s & 0xf000;
        for (int k = 0; k < 4; k++)
            dsri_wr_u16(y + 48 + 2 * k, (uint16_t)sc[k]);
    }
}

void dsri_iq_quantize_iq1(const dsri_iq_lattice *lat, const float *x, uint8_t *y, int64_t n, const float *qw)
{
    if (lat->type == DSRI_TYPE_IQ1_S)
        q_iq1_s(lat, x, y, n, qw);
    else
        q_iq1_m(lat, x, y, n, qw);
}
