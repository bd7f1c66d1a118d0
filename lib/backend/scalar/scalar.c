/*
 * The scalar backend: portable C, f32 arithmetic on weights dequantized
 * exactly to f32, one sequential accumulator per dot product. It is the
 * reference every faster backend is checked against, so it favours being
 * obviously right over being fast.
 */
#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "core/alloc.h"
#include "core/error.h"
#include "quant/quant.h"

struct dsri_backend {
    float *row;    /* one dequantized weight row */
    float *scores; /* attention scores of one query over the context */
};

static int scalar_available(void) { return 1; }

static dsr1_status scalar_create(const dsri_backend_config *cfg, dsri_backend **out)
{
    /* single-threaded by design: the reference path; cfg->n_threads unused */
    dsri_backend *be = dsri_calloc(1, sizeof *be);
    if (!be || !(be->row = dsri_calloc((size_t)cfg->max_row, sizeof(float))) ||
        !(be->scores = dsri_calloc((size_t)cfg->n_ctx, sizeof(float)))) {
        if (be)
            dsri_free(be->row);
        dsri_free(be);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "scalar backend: out of memory");
    }
    *out = be;
    return DSR1_OK;
}

static void scalar_destroy(dsri_backend *be)
{
    if (!be)
        return;
    dsri_free(be->row);
    dsri_free(be->scores);
    dsri_free(be);
}

static const void *row_ptr(const dsri_matrix *w, int64_t r)
{
    return (const uint8_t *)w->data + (uint64_t)r * w->row_bytes;
}

static void scalar_matmul(dsri_backend *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    /* Dequantize each weight row once and use it for every row of x. */
    for (int64_t o = 0; o < w->n_out; o++) {
        const float *wr;
        if (w->type == 0) {
            wr = row_ptr(w, o);
        } else {
            dsri_dequantize_row(w->type, row_ptr(w, o), be->row, w->n_in);
            wr = be->row;
        }
        for (int t = 0; t < n_rows; t++)
            y[(int64_t)t * w->n_out + o] = dsri_vec_dot_f32(wr, x + (int64_t)t * w->n_in, w->n_in);
    }
}

static void scalar_get_row(dsri_backend *be, const dsri_matrix *w, int64_t row, float *out)
{
    (void)be;
    dsri_dequantize_row(w->type, row_ptr(w, row), out, w->n_in);
}

static void scalar_rmsnorm(dsri_backend *be, const float *x, const float *weight, float *y, int d,
                           int n_rows, float eps)
{
    (void)be;
    for (int t = 0; t < n_rows; t++) {
        const float *xr = x + (int64_t)t * d;
        float *yr = y + (int64_t)t * d;
        float ss = 0.0f;
        for (int i = 0; i < d; i++)
            ss += xr[i] * xr[i];
        float scale = 1.0f / sqrtf(ss / (float)d + eps);
        for (int i = 0; i < d; i++)
            yr[i] = xr[i] * scale * weight[i];
    }
}

static void scalar_add(dsri_backend *be, float *y, const float *x, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void scalar_silu_mul(dsri_backend *be, float *g, const float *u, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void scalar_rope(dsri_backend *be, float *x, int n_rows, int64_t stride, int n_heads,
                        int head_dim, int rot_dim, const int32_t *pos, const float *freq,
                        float mscale, int neox)
{
    (void)be;
    int half = rot_dim / 2;
    for (int t = 0; t < n_rows; t++) {
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (int64_t)t * stride + (int64_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                double angle = (double)pos[t] * (double)freq[i];
                float c = (float)cos(angle) * mscale, s = (float)sin(angle) * mscale;
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

static void scalar_attention(dsri_backend *be, const float *q, int64_t q_stride, const float *k_cache,
                             int64_t k_stride, const float *v_cache, int64_t v_stride, float *out,
                             int n_rows, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv,
                             float scale)
{
    int group = n_head / n_head_kv;
    for (int t = 0; t < n_rows; t++) {
        int64_t n_keys = (int64_t)pos[t] + 1; /* <= cfg->n_ctx */
        for (int h = 0; h < n_head; h++) {
            const float *qh = q + (int64_t)t * q_stride + (int64_t)h * dk;
            int kvh = h / group;
            float *oh = out + (int64_t)t * n_head * dv + (int64_t)h * dv;
            memset(oh, 0, (size_t)dv * sizeof(float));
            float mx = -INFINITY;
            for (int64_t p = 0; p < n_keys; p++) {
                float s = dsri_vec_dot_f32(qh, k_cache + p * k_stride + (int64_t)kvh * dk, dk) * scale;
                be->scores[p] = s;
                if (s > mx)
                    mx = s;
            }
            float sum = 0.0f;
            for (int64_t p = 0; p < n_keys; p++) {
                be->scores[p] = expf(be->scores[p] - mx);
                sum += be->scores[p];
            }
            float inv = 1.0f / sum;
            for (int64_t p = 0; p < n_keys; p++) {
                const float *vr = v_cache + p * v_stride + (int64_t)kvh * dv;
                float wgt = be->scores[p] * inv;
                for (int i = 0; i < dv; i++)
                    oh[i] += wgt * vr[i];
            }
        }
    }
}

const dsri_backend_ops dsri_backend_scalar = {
    .name = "scalar",
    .available = scalar_available,
    .create = scalar_create,
    .destroy = scalar_destroy,
    .matmul = scalar_matmul,
    .get_row = scalar_get_row,
    .rmsnorm = scalar_rmsnorm,
    .add = scalar_add,
    .silu_mul = scalar_silu_mul,
    .rope = scalar_rope,
    .attention = scalar_attention,
};
