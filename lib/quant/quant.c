/*
 * libdsr1 - reference quantizers (f32 -> ggml block types).
 *
 * These reproduce ggml's quantize_row_*_ref bit for bit for finite inputs
 * (same float operations in the same order; build with -ffp-contract=off).
 * Where ggml relies on float->small-int conversions that could overflow, we
 * clamp first, which only changes results for non-finite inputs (UB in C).
 * Without an importance matrix the K-quants take ggml's reference path (what
 * llama-quantize writes without --imatrix); with one, the legacy and K types
 * take ggml's quantize_row_*_impl searches (weights qw * sqrt(sigma2 + x^2),
 * super-block scales fitted by make_qp_quants), as llama-quantize --imatrix.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant_internal.h"

#define GROUP_MAX_EPS DSRI_GROUP_MAX_EPS
#define nearest_int dsri_nearest_int

/* (int)f clamped to [lo, hi]; NaN gives lo */
static int trunc_clamp(float f, int lo, int hi)
{
    if (!(f > (float)lo))
        return lo;
    if (f >= (float)hi)
        return hi;
    return (int)f;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* ---------------------------------------------------------------- 32-blocks */

static void q_q8_0(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float a = fabsf(x[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        for (int j = 0; j < 32; j++) {
            const float r = roundf(x[j] * id);
            const int q = r >= 127.0f ? 127 : r <= -128.0f ? -128 : r == r ? (int)r : 0;
            y[2 + j] = (uint8_t)(q & 0xFF);
        }
    }
}

/* value with the largest magnitude (first one wins ties), as ggml picks it */
static float absmax_signed(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void q_q4_0(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, y += 18) {
        const float max = absmax_signed(x, 32);
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp(x[j] * id + 8.5f, 0, 15);
            const int q1 = trunc_clamp(x[j + 16] * id + 8.5f, 0, 15);
            y[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void minmax(const float *x, int n, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void q_q4_1(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, y += 20) {
        float min, max;
        minmax(x, 32, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        dsri_wr_u16(y + 2, dsri_fp32_to_fp16(min));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
            const int q1 = trunc_clamp((x[j + 16] - min) * id + 0.5f, 0, 15);
            y[4 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q_q5_0(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, y += 22) {
        const float max = absmax_signed(x, 32);
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp(x[j] * id + 16.5f, 0, 31);
            const int q1 = trunc_clamp(x[j + 16] * id + 16.5f, 0, 31);
            y[6 + j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + 16);
        }
        dsri_wr_u32(y + 2, qh);
    }
}

static void q_q5_1(const float *x, uint8_t *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, y += 24) {
        float min, max;
        minmax(x, 32, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        dsri_wr_u16(y + 2, dsri_fp32_to_fp16(min));
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
            const int q1 = trunc_clamp((x[j + 16] - min) * id + 0.5f, 0, 31);
            y[8 + j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + 16);
        }
        dsri_wr_u32(y + 4, qh);
    }
}

/* 32 levels (0..15, or 0..31 with five bits) into a block's nibbles, the
 * fifth bits into the 32-bit qh before them (Q5_0 / Q5_1) */
static void pack_32(const int8_t *L, uint8_t *y, int five_bits)
{
    uint8_t *qs = five_bits ? y + 4 : y;
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t a = (uint8_t)L[j], b = (uint8_t)L[j + 16];
        qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= (uint32_t)((a & 0x10u) >> 4) << j;
        qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
    }
    if (five_bits)
        dsri_wr_u32(y, qh);
}

/* ------------------------------------------------------- k-quant searches */

/*
 * Fit x ~ scale*L - the_min with L in [0, nmax] (ggml make_qkx2_quants):
 * weighted least squares over nstep+1 candidate inverse scales.
 */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              int use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric fit, L in [0, 2*nmax) holding l + nmax (ggml make_qx_quants,
 * rmse_type 1): the weights qw, or w = x^2 without. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* ggml make_q3_quants with do_rmse = true; L gets l + nmax. */
static float make_q3_quants_rmse(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
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
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Fit the non-negative x ~ scale*L, L in [0, nmax], minimising the error
 * weighted by qw (ggml make_qp_quants: the super-block scales of the
 * importance-matrix K-quants). */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)nearest_int(iscale * x[i]);
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        const float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            const int l = imin(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imin(nmax, nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                const int new_l = imin(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
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

/* ggml's importance weights of one block: qw * sqrt(sigma2 + x^2) */
static void imatrix_weights(const float *x, const float *qw, float sigma2, int n, float *w)
{
    for (int j = 0; j < n; j++) w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

/* ------------------------------------- 32-blocks with an importance matrix */

/* ggml quantize_row_q4_0_impl / q5_0_impl: a weighted symmetric fit per
 * block (sigma2: the row's mean square); nmax 8 or 16 */
static void q_x_0_imatrix(const float *x, uint8_t *y, int64_t nb, const float *qw, float sigma2, int nmax)
{
    float w[32];
    int8_t L[32];
    const int bytes = nmax == 8 ? 18 : 22;
    for (int64_t i = 0; i < nb; i++, x += 32, y += bytes, qw += 32) {
        imatrix_weights(x, qw, sigma2, 32, w);
        dsri_wr_u16(y, dsri_fp32_to_fp16(make_qx_quants(32, nmax, x, L, w)));
        pack_32(L, y + 2, nmax == 16);
    }
}

/* ggml quantize_row_q4_1_impl / q5_1_impl: a weighted fit with a minimum;
 * nmax 15 or 31 */
static void q_x_1_imatrix(const float *x, uint8_t *y, int64_t nb, const float *qw, float sigma2, int nmax)
{
    float w[32], min;
    uint8_t L[32], Laux[32];
    const int bytes = nmax == 15 ? 20 : 24;
    for (int64_t i = 0; i < nb; i++, x += 32, y += bytes, qw += 32) {
        imatrix_weights(x, qw, sigma2, 32, w);
        const float d = make_qkx2_quants(32, nmax, x, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        dsri_wr_u16(y, dsri_fp32_to_fp16(d));
        dsri_wr_u16(y + 2, dsri_fp32_to_fp16(-min));
        pack_32((const int8_t *)L, y + 4, nmax == 31);
    }
}

/* pack 256 2-bit values in ggml's Q2_K/Q3_K bit-plane order */
static void pack_2bit_planes(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < DSRI_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* ------------------------------------------------------------------ Q2_K */

/* the levels for the block's stored scales and mins, packed */
static void q2_k_finish(const float *x, uint8_t *y, uint8_t *L)
{
    const uint8_t *sc = y;
    const float dd = dsri_rd_f16(y + 80), dmin = dsri_rd_f16(y + 82);
    for (int j = 0; j < 16; j++) {
        const float d = dd * (sc[j] & 0xF);
        if (d == 0.0f)
            continue;
        const float dm = dmin * (sc[j] >> 4);
        for (int ii = 0; ii < 16; ii++) {
            const int l = nearest_int((x[16 * j + ii] + dm) / d);
            L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
        }
    }
    pack_2bit_planes(L, y + 16);
}

static void q_q2_k(const float *x, uint8_t *y, int64_t nb)
{
    uint8_t L[DSRI_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 84) {
        uint8_t *sc = y;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; j++) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
            dsri_wr_u16(y + 80, dsri_fp32_to_fp16(max_scale / q4scale));
        } else {
            for (int j = 0; j < 16; j++) sc[j] = 0;
            dsri_wr_u16(y + 80, dsri_fp32_to_fp16(0.f));
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < 16; j++) sc[j] = (uint8_t)(sc[j] | (nearest_int(iscale * mins[j]) << 4));
            dsri_wr_u16(y + 82, dsri_fp32_to_fp16(max_min / q4scale));
        } else {
            dsri_wr_u16(y + 82, dsri_fp32_to_fp16(0.f));
        }
        q2_k_finish(x, y, L);
    }
}

/* ggml quantize_row_q2_K_impl: scales and mins of a weighted search, their
 * 4-bit codes fitted by make_qp_quants */
static void q_q2_k_imatrix(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    uint8_t L[DSRI_QK_K], Laux[16], Ls[16], Lm[16];
    float mins[16], scales[16], sw[16], weight[16];
    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 84, qw += DSRI_QK_K) {
        float sumx2 = 0;
        for (int j = 0; j < DSRI_QK_K; j++) sumx2 += x[j] * x[j];
        const float sigma2 = sumx2 / DSRI_QK_K;
        for (int j = 0; j < 16; j++) {
            imatrix_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
            sw[j] = 0;
            for (int l = 0; l < 16; l++) sw[j] += weight[l];
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0);
        }
        const float dm = make_qp_quants(16, 15, scales, Ls, sw);
        const float mm = make_qp_quants(16, 15, mins, Lm, sw);
        dsri_wr_u16(y + 80, dsri_fp32_to_fp16(dm));
        dsri_wr_u16(y + 82, dsri_fp32_to_fp16(mm));
        for (int j = 0; j < 16; j++) y[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_k_finish(x, y, L);
    }
}

/* ------------------------------------------------------------------ Q3_K */

/* the 6-bit code of scale j of a Q3_K block into its 12 bytes */
static void q3_k_put_scale(uint8_t *sc, int j, int l)
{
    if (j < 8)
        sc[j] = (uint8_t)(l & 0xF);
    else
        sc[j - 8] = (uint8_t)(sc[j - 8] | ((l & 0xF) << 4));
    l >>= 4;
    sc[j % 4 + 8] = (uint8_t)(sc[j % 4 + 8] | (l << (2 * (j / 4))));
}

/* the levels for the block's stored scales: high bits, 2-bit planes */
static void q3_k_finish(const float *x, uint8_t *y, int8_t *L)
{
    uint8_t Lu[DSRI_QK_K];
    uint8_t *hmask = y, *qs = y + 32;
    const uint8_t *sc = y + 96;
    const float d_all = dsri_rd_f16(y + 108);
    for (int j = 0; j < 16; j++) {
        const float d = d_all * dsri_scale_q3_k(j, sc);
        if (d == 0.0f)
            continue;
        for (int ii = 0; ii < 16; ii++) {
            const int l = nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
        }
    }
    /* high bit of element j goes to hmask[j % 32], bit j / 32 */
    memset(hmask, 0, 32);
    for (int j = 0; j < DSRI_QK_K; j++) {
        int l = L[j];
        if (l > 3) {
            hmask[j % 32] = (uint8_t)(hmask[j % 32] | (1u << (j / 32)));
            l -= 4;
        }
        Lu[j] = (uint8_t)l;
    }
    pack_2bit_planes(Lu, qs);
}

static void q_q3_k(const float *x, uint8_t *y, int64_t nb)
{
    int8_t L[DSRI_QK_K];
    float scales[16];

    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 110) {
        uint8_t *sc = y + 96;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = make_q3_quants_rmse(16, 4, x + 16 * j, L + 16 * j);
            const float s = fabsf(scales[j]);
            if (s > amax) {
                amax = s;
                max_scale = scales[j];
            }
        }
        memset(sc, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++)
                q3_k_put_scale(sc, j, imax(-32, imin(31, nearest_int(iscale * scales[j]))) + 32);
            dsri_wr_u16(y + 108, dsri_fp32_to_fp16(1 / iscale));
        } else {
            dsri_wr_u16(y + 108, dsri_fp32_to_fp16(0.f));
        }
        q3_k_finish(x, y, L);
    }
}

/* ggml quantize_row_q3_K_impl: weighted per-16 scales, their 6-bit codes
 * a weighted symmetric fit */
static void q_q3_k_imatrix(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    int8_t L[DSRI_QK_K], Ls[16];
    float scales[16], weight[16], sw[16];
    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 110, qw += DSRI_QK_K) {
        float sumx2 = 0;
        for (int j = 0; j < DSRI_QK_K; j++) sumx2 += x[j] * x[j];
        const float sigma2 = 2 * sumx2 / DSRI_QK_K;
        for (int j = 0; j < 16; j++) {
            imatrix_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
            float sumw = 0;
            for (int l = 0; l < 16; l++) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
        }
        memset(y + 96, 0, 12);
        const float d_block = make_qx_quants(16, 32, scales, Ls, sw);
        for (int j = 0; j < 16; j++) q3_k_put_scale(y + 96, j, Ls[j]);
        dsri_wr_u16(y + 108, dsri_fp32_to_fp16(d_block));
        q3_k_finish(x, y, L);
    }
}

/* ------------------------------------------------------------- Q4_K, Q5_K */

/* pack 8 6-bit scales and mins into the 12-byte K_SCALE layout */
static void pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *q)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] = (uint8_t)(q[j - 4] | ((ls[j] >> 4) << 6));
            q[j] = (uint8_t)(q[j] | ((lm[j] >> 4) << 6));
        }
    }
}

/* Q4_K / Q5_K with an importance matrix (ggml quantize_row_q4_K_impl /
 * q5_K_impl): weighted searches, the 6-bit codes fitted by make_qp_quants */
static void k_scales_imatrix(const float *x, uint8_t *blk, uint8_t *L, int nmax, const float *qw)
{
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], sw[8], mins[8], scales[8];
    float sum_x2 = 0;
    for (int l = 0; l < DSRI_QK_K; l++) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / DSRI_QK_K;
    for (int j = 0; j < 8; j++) {
        imatrix_weights(x + 32 * j, qw + 32 * j, sigma2, 32, weights);
        float sumw = 0;
        for (int l = 0; l < 32; l++) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0);
    }
    const float d_block = make_qp_quants(8, 63, scales, ls, sw);
    const float m_block = make_qp_quants(8, 63, mins, lm, sw);
    pack_scale_min_k4(ls, lm, blk + 4);
    dsri_wr_u16(blk, dsri_fp32_to_fp16(d_block));
    dsri_wr_u16(blk + 2, dsri_fp32_to_fp16(m_block));
}

/* shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills d, dmin, scales and
 * the final levels L[256]; qw: the block's importance weights, or NULL */
static void quantize_k_scaled(const float *x, uint8_t *blk, uint8_t *L, int nmax, float rmin, int nstep,
                              const float *qw)
{
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;

    for (int j = 0; j < 8 && !qw; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (qw) {
        k_scales_imatrix(x, blk, L, nmax, qw);
    } else {
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; j++) {
            ls[j] = (uint8_t)imin(63, (uint8_t)nearest_int(inv_scale * scales[j]));
            lm[j] = (uint8_t)imin(63, (uint8_t)nearest_int(inv_min * mins[j]));
        }
        pack_scale_min_k4(ls, lm, blk + 4);
        dsri_wr_u16(blk, dsri_fp32_to_fp16(max_scale / 63.f));
        dsri_wr_u16(blk + 2, dsri_fp32_to_fp16(max_min / 63.f));
    }

    const float dd = dsri_rd_f16(blk), dmin = dsri_rd_f16(blk + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        dsri_scale_min_k4(j, blk + 4, &sc, &m);
        const float d = dd * sc;
        if (d == 0.0f)
            continue;
        const float dm = dmin * m;
        for (int ii = 0; ii < 32; ii++) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

static void q_q4_k(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    uint8_t L[DSRI_QK_K];
    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 144) {
        quantize_k_scaled(x, y, L, 15, -1.f, 20, qw ? qw + i * DSRI_QK_K : NULL);
        uint8_t *q = y + 16;
        for (int j = 0; j < DSRI_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void q_q5_k(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    uint8_t L[DSRI_QK_K];
    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 176) {
        quantize_k_scaled(x, y, L, 31, -0.5f, 15, qw ? qw + i * DSRI_QK_K : NULL);
        uint8_t *qh = y + 16, *ql = y + 48;
        memset(qh, 0, 32);
        unsigned m1 = 1, m2 = 2;
        for (int n = 0; n < DSRI_QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] = (uint8_t)(qh[j] | m1);
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] = (uint8_t)(qh[j] | m2);
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

/* ------------------------------------------------------------------ Q6_K */

/* qw: with an importance matrix, the raw weights drive each block's
 * search (ggml quantize_row_q6_K_impl); the rest is the same */
static void q_q6_k(const float *x, uint8_t *y, int64_t nb, const float *qw)
{
    int8_t L[DSRI_QK_K];
    float scales[16];

    for (int64_t i = 0; i < nb; i++, x += DSRI_QK_K, y += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib,
                                               qw ? qw + i * DSRI_QK_K + 16 * ib : NULL);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, 210);
            continue;
        }
        uint8_t *ql = y, *qh = y + 128, *sc = y + 192;
        const float iscale = -128.f / max_scale;
        dsri_wr_u16(y + 208, dsri_fp32_to_fp16(1 / iscale));
        for (int ib = 0; ib < 16; ib++)
            sc[ib] = (uint8_t)(imax(-128, imin(127, nearest_int(iscale * scales[ib]))) & 0xFF);
        const float dd = dsri_rd_f16(y + 208);
        for (int j = 0; j < 16; j++) {
            const float d = dd * (int8_t)sc[j];
            if (d == 0.0f)
                continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        for (int j = 0; j < DSRI_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

/* ------------------------------------------------------------- dispatcher */

/* one row of n values; imatrix: n importance weights or NULL */
static int quantize_row_weighted(uint32_t ggml_type, const float *src, void *dst, int64_t n, const float *imatrix)
{
    const dsri_type_traits *t = dsri_type_traits_get(ggml_type);
    if (!t || n < 0 || n % t->block_size != 0 || (n > 0 && (!src || !dst)))
        return -1;
    uint8_t *y = (uint8_t *)dst;
    const int64_t nb = n / t->block_size;
    switch (ggml_type) {
    case DSRI_TYPE_F32:
        if (n > 0)
            memcpy(y, src, (size_t)n * sizeof(float));
        break;
    case DSRI_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dsri_wr_u16(y + 2 * i, dsri_fp32_to_fp16(src[i]));
        break;
    case DSRI_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dsri_wr_u16(y + 2 * i, dsri_fp32_to_bf16(src[i]));
        break;
    case DSRI_TYPE_Q4_0:
    case DSRI_TYPE_Q5_0:
    case DSRI_TYPE_Q4_1:
    case DSRI_TYPE_Q5_1:
        if (imatrix) {
            /* the row's mean square, as ggml's legacy *_impl take it */
            float sum_x2 = 0;
            for (int64_t j = 0; j < n; j++) sum_x2 += src[j] * src[j];
            const float sigma2 = sum_x2 / n;
            if (ggml_type == DSRI_TYPE_Q4_0 || ggml_type == DSRI_TYPE_Q5_0)
                q_x_0_imatrix(src, y, nb, imatrix, sigma2, ggml_type == DSRI_TYPE_Q4_0 ? 8 : 16);
            else
                q_x_1_imatrix(src, y, nb, imatrix, sigma2, ggml_type == DSRI_TYPE_Q4_1 ? 15 : 31);
        } else if (ggml_type == DSRI_TYPE_Q4_0) {
            q_q4_0(src, y, nb);
        } else if (ggml_type == DSRI_TYPE_Q5_0) {
            q_q5_0(src, y, nb);
        } else if (ggml_type == DSRI_TYPE_Q4_1) {
            q_q4_1(src, y, nb);
        } else {
            q_q5_1(src, y, nb);
        }
        break;
    case DSRI_TYPE_Q8_0: q_q8_0(src, y, nb); break; /* ggml ignores an imatrix for Q8_0 */
    case DSRI_TYPE_Q2_K:
        if (imatrix)
            q_q2_k_imatrix(src, y, nb, imatrix);
        else
            q_q2_k(src, y, nb);
        break;
    case DSRI_TYPE_Q3_K:
        if (imatrix)
            q_q3_k_imatrix(src, y, nb, imatrix);
        else
            q_q3_k(src, y, nb);
        break;
    case DSRI_TYPE_Q4_K: q_q4_k(src, y, nb, imatrix); break;
    case DSRI_TYPE_Q5_K: q_q5_k(src, y, nb, imatrix); break;
    case DSRI_TYPE_Q6_K: q_q6_k(src, y, nb, imatrix); break;
    case DSRI_TYPE_IQ4_NL:
    case DSRI_TYPE_IQ4_XS: return dsri_quantize_iq4(ggml_type, src, y, nb, imatrix);
    default: return -1;
    }
    return 0;
}

int dsri_quantize_row(uint32_t ggml_type, const float *src, void *dst, int64_t n)
{
    return quantize_row_weighted(ggml_type, src, dst, n, NULL);
}

int dsri_quantize_rows(uint32_t ggml_type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                       const float *imatrix)
{
    const size_t row_size = dsri_row_size(ggml_type, n_per_row);
    if (nrows < 0 || n_per_row < 0 || (n_per_row > 0 && row_size == 0))
        return -1;
    if (imatrix)
        for (int64_t j = 0; j < n_per_row; j++)
            if (!(imatrix[j] >= 0.0f && imatrix[j] <= FLT_MAX))
                return -1;
    switch (ggml_type) {
    case DSRI_TYPE_IQ3_S:
    case DSRI_TYPE_IQ3_XXS:
    case DSRI_TYPE_IQ2_S:
    case DSRI_TYPE_IQ2_XS:
    case DSRI_TYPE_IQ2_XXS:
    case DSRI_TYPE_IQ1_M:
    case DSRI_TYPE_IQ1_S:
        /* one set of neighbour tables for all the rows (quant_iq_lattice.c) */
        return nrows == 0 ? 0 : dsri_quantize_rows_iq_lattice(ggml_type, src, dst, nrows, n_per_row, imatrix) == 0 ? 0 : -1;
    default: break;
    }
    uint8_t *y = (uint8_t *)dst;
    for (int64_t r = 0; r < nrows; r++)
        if (quantize_row_weighted(ggml_type, src + r * n_per_row, y + (size_t)r * row_size, n_per_row, imatrix) != 0)
            return -1;
    return 0;
}
