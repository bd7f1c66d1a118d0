/*
 * libdsr1 - quantizers for IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (the
 * grids of 3 or 8 odd levels 2l+1 with one scale per sub-block), following
 * ggml's quantize_row_iq2_xxs_impl, _iq2_xs_impl, _iq2_s_impl,
 * _iq3_xxs_impl and _iq3_s_impl operation for operation.
 *
 * The five share one sub-block search: fold the signs into the values
 * (the XXS/XS types store 7 sign bits per 8 and flip the least important
 * value to make the count of negatives even), try a range of scales, round
 * each group to levels and move off-grid groups to their best neighbour,
 * keep the scale with the best weighted fit, then re-round at that scale.
 * They differ in the parameters of sub_params below, in how the sub-block
 * scales are packed, and in a fudge factor on the super-block scale.
 */
#include <math.h>

#include "quant_iq_lattice.h"

typedef struct sub_params {
    int block;         /* weights per sub-block scale: 32 or 16 */
    int dim;           /* weights per grid entry: 8 or 4 */
    int kmax;          /* levels per weight (ggml's kMaxQ) */
    int ntry;          /* the scale trials is = -ntry..ntry */
    float step;        /* a trial's scale: (2 kmax - 1 + is step) / max */
    float eps;         /* a sub-block whose largest |x| is below is zero */
    int parity;        /* 7 sign bits per 8, the count of negatives even */
    int start_qp;      /* IQ2_XXS: trials around make_qp_quants' scale */
    int init_on_grid;  /* groups count as on the grid before any trial */
    int refine_always; /* re-round even when every group was on the grid */
    int refine_all;    /* re-round every group, not only off-grid ones */
} sub_params;

/* The odd values 2l+1 the quantizers fit levels l with. */
static const float odd_values[8] = {1, 3, 5, 7, 9, 11, 13, 15};

/* ggml's make_qp_quants, kept to its letter: L is uint8 there, and
 * negative roundings wrap, which its later sums see. */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *w)
{
    float max = 0;
    for (int i = 0; i < n; i++)
        max = max > x[i] ? max : x[i];
    if (max < DSRI_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)dsri_nearest_int(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * L[i];
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        const float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = dsri_nearest_int(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            const float diff = x[i] - scale_is * l;
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = dsri_nearest_int(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * l;
        suml2 += w[i] * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float slx = sumlx - w[i] * x[i] * L[i], sl2 = suml2 - w[i] * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = dsri_nearest_int(x[i] * sl2 / slx);
                new_l = new_l < nmax ? new_l : nmax;
                if (new_l != L[i]) {
                    slx += w[i] * x[i] * new_l;
                    sl2 += w[i] * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Rounds the group xval[0..dim) at 1/id to levels, clamped to the kmax
 * levels; an off-grid result moves to its best neighbour at scale. Writes
 * the levels to L and returns the grid index; *on_grid says whether the
 * rounding was on the grid already. */
static int snap_group(const dsri_iq_lattice *lat, int kmax, const float *xval, const float *waux, float id,
                      float scale, int8_t *L, int *on_grid)
{
    uint32_t code = 0;
    for (int i = 0; i < lat->dim; i++) {
        const int l = dsri_nearest_int(0.5f * (id * xval[i] - 1));
        L[i] = (int8_t)(l < 0 ? 0 : l > kmax - 1 ? kmax - 1 : l);
        code |= (uint32_t)L[i] << (lat->bits * i);
    }
    *on_grid = lat->map[code] >= 0;
    if (*on_grid)
        return lat->map[code];
    return dsri_iq_best_neighbour(lat, code, xval, waux, scale, odd_values, L);
}

/* sum w x q and sum w q^2 over the block, q = 2 L + 1 */
static void fit_sums(const float *w, const float *xval, const int8_t *L, int n, float *sumqx, float *sumq2)
{
    float sx = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        const float q = 2 * L[i] + 1;
        sx += w[i] * xval[i] * q;
        s2 += w[i] * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

/* One sub-block xb[0..block) with weights w: its scale (0: all zero), the
 * grid index of each group and a sign byte per 8 weights. */
static float quantize_sub(const dsri_iq_lattice *lat, const sub_params *p, const float *xb, const float *weight,
                          uint16_t *index, uint8_t *signs)
{
    float xval[32], waux[32];
    int8_t L[32], Laux[32];
    int on_grid[8], on_grid_aux[8];
    const int n_groups = p->block / p->dim;

    for (int i = 0; i < p->block; i++)
        waux[i] = sqrtf(weight[i]);
    for (int k = 0; k < p->block / 8; k++) {
        const float *x8 = xb + 8 * k, *w8 = weight + 8 * k;
        float *v8 = xval + 8 * k;
        int nflip = 0;
        unsigned s = 0;
        for (int i = 0; i < 8; i++) {
            if (x8[i] >= 0) {
                v8[i] = x8[i];
            } else {
                v8[i] = -x8[i];
                nflip++;
                s |= 1u << i;
            }
        }
        if (p->parity && nflip % 2) {
            int imin = 0;
            float min = w8[0] * x8[0] * x8[0];
            for (int i = 1; i < 8; i++) {
                const float ax = w8[i] * x8[i] * x8[i];
                if (ax < min) {
                    min = ax;
                    imin = i;
                }
            }
            v8[imin] = -v8[imin];
            s ^= 1u << imin;
        }
        signs[k] = (uint8_t)(p->parity ? s & 127 : s);
    }
    for (int k = 0; k < n_groups; k++)
        index[k] = 0;
    float max = xval[0];
    for (int i = 1; i < p->block; i++)
        max = max > xval[i] ? max : xval[i];
    if (max < p->eps || max == 0) {
        memset(signs, 0, (size_t)p->block / 8);
        return 0;
    }
    memset(L, 0, sizeof L);
    float scale = max / (2 * p->kmax - 1), denom = max;
    if (p->start_qp) {
        uint8_t Lqp[32];
        scale = make_qp_quants(p->block, p->kmax + 1, xval, Lqp, weight);
        denom = scale * p->kmax;
        if (denom <= 0) {
            memset(signs, 0, (size_t)p->block / 8);
            return 0;
        }
    }
    for (int k = 0; k < n_groups; k++)
        on_grid[k] = p->init_on_grid;
    float best = 0, sumqx, sumq2;
    for (int is = -p->ntry; is <= p->ntry; is++) {
        const float id = (2 * p->kmax - 1 + is * p->step) / denom, this_scale = 1 / id;
        for (int k = 0; k < n_groups; k++)
            snap_group(lat, p->kmax, xval + p->dim * k, waux + p->dim * k, id, this_scale, Laux + p->dim * k,
                       &on_grid_aux[k]);
        fit_sums(weight, xval, Laux, p->block, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, (size_t)p->block);
            memcpy(on_grid, on_grid_aux, sizeof on_grid);
        }
    }
    int n_off = 0;
    for (int k = 0; k < n_groups; k++)
        n_off += !on_grid[k];
    if (scale > 0 && (p->refine_always || n_off > 0)) {
        const float id = 1 / scale;
        int dummy;
        for (int k = 0; k < n_groups; k++)
            if (p->refine_all || !on_grid[k])
                snap_group(lat, p->kmax, xval + p->dim * k, waux + p->dim * k, id, scale, L + p->dim * k, &dummy);
        fit_sums(weight, xval, L, p->block, &sumqx, &sumq2);
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    if (scale < 0) { /* ggml: "should never happen"; the stored scale is unsigned */
        scale = -scale;
        for (int k = 0; k < p->block / 8; k++)
            signs[k] = (uint8_t)(~signs[k] & (p->parity ? 127 : 255));
    }
    for (int k = 0; k < n_groups; k++) {
        uint32_t code = 0;
        for (int i = 0; i < p->dim; i++)
            code |= (uint32_t)L[p->dim * k + i] << (lat->bits * i);
        /* L always comes from the grid; the search is only a safety net */
        index[k] = (uint16_t)(lat->map[code] >= 0 ? lat->map[code]
                                                  : dsri_iq_best_neighbour(lat, code, xval + p->dim * k,
                                                                           waux + p->dim * k, scale, odd_values,
                                                                           L + p->dim * k));
    }
    return scale;
}

/* The importance weights of a super-block's values: qw * sqrt(sigma2 + x^2)
 * with ggml's per-type sigma2 and fallbacks when there is no qw. */
static void sub_weights(uint32_t type, const float *xb, const float *qw, float sigma2, int n, float *weight)
{
    for (int i = 0; i < n; i++) {
        if (qw)
            weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
        else if (type == DSRI_TYPE_IQ2_S)
            weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
        else
            weight[i] = xb[i] * xb[i];
    }
}

/* 0.5 (s / d - 1) rounded, in 0..max: a sub-block scale s as the odd
 * multiple 2l+1 of d. */
static int scale_code(float id, float s, int max)
{
    const int l = dsri_nearest_int(0.5f * (id * s - 1));
    return l < 0 ? 0 : l > max ? max : l;
}

void dsri_iq_quantize_iq23(const dsri_iq_lattice *lat, const float *x, uint8_t *y, int64_t n, const float *qw)
{
    const uint32_t type = lat->type;
    static const sub_params
        p_iq2xxs = {32, 8, 3, 6, 0.1f, DSRI_GROUP_MAX_EPS, 1, 1, 1, 1, 1},
        p_iq2xs = {16, 8, 3, 9, 0.1f, DSRI_GROUP_MAX_EPS, 1, 0, 1, 0, 0},
        p_iq2s = {16, 8, 3, 9, 0.1f, 1e-8f, 0, 0, 1, 0, 0},
        p_iq3xxs = {32, 4, 8, 15, 0.2f, 1e-8f, 1, 0, 1, 0, 0},
        p_iq3s = {32, 4, 8, 9, 0.2f, 0.0f, 0, 0, 0, 0, 1};
    const sub_params *p = type == DSRI_TYPE_IQ2_XXS ? &p_iq2xxs
                          : type == DSRI_TYPE_IQ2_XS ? &p_iq2xs
                          : type == DSRI_TYPE_IQ2_S  ? &p_iq2s
                          : type == DSRI_TYPE_IQ3_XXS ? &p_iq3xxs
                                                      : &p_iq3s;
    /* ggml's sigma2: sum x^2 / 256, doubled for the newer types */
    const int sigma2_x2 = type != DSRI_TYPE_IQ2_XXS && type != DSRI_TYPE_IQ2_XS;
    /* the super-block scale's fudge factor */
    const float fudge = type == DSRI_TYPE_IQ2_S ? 0.9875f
                        : type == DSRI_TYPE_IQ3_XXS ? 1.0125f
                        : type == DSRI_TYPE_IQ3_S   ? 1.033f
                                                    : 1.0f;
    const size_t bytes = dsri_type_traits_get(type)->type_size;
    const int n_sub = DSRI_QK_K / p->block;

    for (int64_t ibl = 0; ibl < n / DSRI_QK_K; ibl++, y += bytes) {
        const float *xbl = x + DSRI_QK_K * ibl;
        float scales[16], weight[32], max_scale = 0, sumx2 = 0;
        uint16_t index[16][8];
        uint8_t signs[16][4];
        for (int i = 0; i < DSRI_QK_K; i++)
            sumx2 += xbl[i] * xbl[i];
        const float sigma2 = sigma2_x2 ? 2 * sumx2 / DSRI_QK_K : sumx2 / DSRI_QK_K;
        for (int ib = 0; ib < n_sub; ib++) {
            const float *xb = xbl + p->block * ib;
            sub_weights(type, xb, qw ? qw + DSRI_QK_K * ibl + p->block * ib : NULL, sigma2, p->block, weight);
            scales[ib] = quantize_sub(lat, p, xb, weight, index[ib], signs[ib]);
            max_scale = max_scale > scales[ib] ? max_scale : scales[ib];
        }
        memset(y, 0, bytes);
        if (!max_scale)
            continue;
        const float d = max_scale / 31, id = 1 / d;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d * fudge));
        for (int ib = 0; ib < n_sub; ib++) {
            const int l = scale_code(id, scales[ib], 15);
            switch (type) {
            case DSRI_TYPE_IQ2_XXS: {
                uint8_t *q = y + 2 + 8 * ib;
                uint32_t aux = (uint32_t)l << 28;
                for (int k = 0; k < 4; k++) {
                    q[k] = (uint8_t)index[ib][k];
                    aux |= (uint32_t)signs[ib][k] << (7 * k);
                }
                dsri_wr_u32(q + 4, aux);
                break;
            }
            case DSRI_TYPE_IQ2_XS:
                for (int k = 0; k < 2; k++)
                    dsri_wr_u16(y + 2 + 2 * (2 * ib + k), (uint16_t)(index[ib][k] | (signs[ib][k] << 9)));
                y[66 + ib / 2] = (uint8_t)(y[66 + ib / 2] | (l << (4 * (ib % 2))));
                break;
            case DSRI_TYPE_IQ2_S:
                for (int k = 0; k < 2; k++) {
                    const int i8 = 2 * ib + k;
                    y[2 + i8] = (uint8_t)(index[ib][k] & 255);
                    y[66 + i8 / 4] = (uint8_t)(y[66 + i8 / 4] | ((index[ib][k] >> 8) << (2 * (i8 % 4))));
                    y[34 + i8] = signs[ib][k];
                }
                y[74 + ib / 2] = (uint8_t)(y[74 + ib / 2] | (l << (4 * (ib % 2))));
                break;
            case DSRI_TYPE_IQ3_XXS: {
                uint32_t aux = (uint32_t)l << 28;
                for (int k = 0; k < 8; k++)
                    y[2 + 8 * ib + k] = (uint8_t)index[ib][k];
                for (int k = 0; k < 4; k++)
                    aux |= (uint32_t)signs[ib][k] << (7 * k);
                dsri_wr_u32(y + 66 + 4 * ib, aux);
                break;
            }
            default: /* IQ3_S */
                for (int k = 0; k < 8; k++) {
                    y[2 + 8 * ib + k] = (uint8_t)(index[ib][k] & 255);
                    y[66 + ib] = (uint8_t)(y[66 + ib] | ((index[ib][k] >> 8) << k));
                }
                memcpy(y + 74 + 4 * ib, signs[ib], 4);
                y[106 + ib / 2] = (uint8_t)(y[106 + ib / 2] | (l << (4 * (ib % 2))));
                break;
            }
        }
    }
}
