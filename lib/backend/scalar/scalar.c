/*
 * The scalar backend: portable C, f32 arithmetic on weights dequantized
 * exactly to f32, one sequential accumulator per dot product. It is the
 * reference every faster backend is checked against, so it favours being
 * obviously right over being fast.
 */
#include <math.h>
#include <string.h>

#include "backend/host_ops.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "quant/quant.h"

/* Below this many multiply-adds a matmul runs on the calling thread: waking
 * workers costs more than it saves. */
#define PARALLEL_MIN_MACS (1 << 18)

struct dsri_host {
    dsri_pool *pool;
    int64_t max_row;
    float *rows;   /* one dequantized weight row per thread */
    float *scores; /* attention scores of one query over the context */
};

static int scalar_available(void) { return 1; }

static void scalar_destroy(dsri_host *be)
{
    if (!be)
        return;
    dsri_pool_free(be->pool);
    dsri_free(be->rows);
    dsri_free(be->scores);
    dsri_free(be);
}

static dsr1_status scalar_create(const dsri_backend_config *cfg, dsri_host **out)
{
    dsri_host *be = dsri_calloc(1, sizeof *be);
    if (!be)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "scalar backend: out of memory");
    dsr1_status st = dsri_pool_acquire(cfg->pool, cfg->n_threads, &be->pool);
    if (st) {
        dsri_free(be);
        return st;
    }
    be->max_row = cfg->max_row;
    be->rows = dsri_calloc((size_t)cfg->max_row * (size_t)dsri_pool_threads(be->pool), sizeof(float));
    be->scores = dsri_calloc((size_t)cfg->n_ctx, sizeof(float));
    if (!be->rows || !be->scores) {
        scalar_destroy(be);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "scalar backend: out of memory");
    }
    *out = be;
    return DSR1_OK;
}


static const void *row_ptr(const dsri_matrix *w, int64_t r)
{
    return (const uint8_t *)w->data + (uint64_t)r * w->row_bytes;
}

typedef struct matmul_job {
    dsri_host *be;
    const dsri_matrix *w;
    const float *x;
    float *y;
    int n_rows;
    int64_t chunk; /* output rows per task */
} matmul_job;

/* Output rows [i*chunk, (i+1)*chunk): each weight row is dequantized once and
 * used for every row of x. Results do not depend on the thread count. */
static void matmul_task(void *arg, int i, int thread)
{
    const matmul_job *j = arg;
    const dsri_matrix *w = j->w;
    float *scratch = j->be->rows + (int64_t)thread * j->be->max_row;
    int64_t end = (int64_t)(i + 1) * j->chunk < w->n_out ? (int64_t)(i + 1) * j->chunk : w->n_out;
    for (int64_t o = (int64_t)i * j->chunk; o < end; o++) {
        const float *wr = scratch;
        if (w->type == DSRI_TYPE_F32 && (uintptr_t)row_ptr(w, o) % sizeof(float) == 0)
            wr = row_ptr(w, o);
        else
            dsri_dequantize_row(w->type, row_ptr(w, o), scratch, w->n_in);
        for (int t = 0; t < j->n_rows; t++)
            j->y[(int64_t)t * w->n_out + o] = dsri_vec_dot_f32(wr, j->x + (int64_t)t * w->n_in, w->n_in);
    }
}

static void scalar_matmul(dsri_host *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    matmul_job j = {be, w, x, y, n_rows, w->n_out};
    int n_tasks = 1;
    int threads = dsri_pool_threads(be->pool);
    if (threads > 1 && w->n_in * w->n_out * n_rows >= PARALLEL_MIN_MACS) {
        n_tasks = threads * 4 < w->n_out ? threads * 4 : (int)w->n_out;
        j.chunk = (w->n_out + n_tasks - 1) / n_tasks;
        n_tasks = (int)((w->n_out + j.chunk - 1) / j.chunk);
    }
    dsri_pool_run(be->pool, matmul_task, &j, n_tasks);
}

static void scalar_get_row(dsri_host *be, const dsri_matrix *w, int64_t row, float *out)
{
    (void)be;
    dsri_dequantize_row(w->type, row_ptr(w, row), out, w->n_in);
}

static void scalar_rmsnorm(dsri_host *be, const float *x, const float *weight, float *y, int d,
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

static void scalar_add(dsri_host *be, float *y, const float *x, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void scalar_silu_mul(dsri_host *be, float *g, const float *u, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void scalar_rope(dsri_host *be, float *x, int n_rows, int64_t stride, int n_heads,
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

/* q . key over n values, one sequential accumulator (dsri_vec_dot_f32's
 * order for f32 keys) */
static float dot_kv(const float *q, const void *k, dsr1_kv_type kv, int64_t n)
{
    if (kv == DSR1_KV_F32)
        return dsri_vec_dot_f32(q, k, n);
    const uint16_t *h = k;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += q[i] * dsri_fp16_to_fp32(h[i]);
    return sum;
}

/* y += a * value over n values */
static void axpy_kv(float *y, const void *v, dsr1_kv_type kv, float a, int64_t n)
{
    if (kv == DSR1_KV_F32) {
        const float *f = v;
        for (int64_t i = 0; i < n; i++)
            y[i] += a * f[i];
    } else {
        const uint16_t *h = v;
        for (int64_t i = 0; i < n; i++)
            y[i] += a * dsri_fp16_to_fp32(h[i]);
    }
}

static void scalar_attention(dsri_host *be, const float *q, int64_t q_stride, const void *k_cache,
                             int64_t k_stride, const void *v_cache, int64_t v_stride, dsr1_kv_type kv,
                             float *out, int n_rows, const int32_t *pos, int n_head, int n_head_kv, int dk,
                             int dv, float scale)
{
    const int group = n_head / n_head_kv;
    const int64_t es = dsri_kv_elem_bytes(kv);
    const uint8_t *kc = k_cache, *vc = v_cache;
    for (int t = 0; t < n_rows; t++) {
        int64_t n_keys = (int64_t)pos[t] + 1; /* <= cfg->n_ctx */
        for (int h = 0; h < n_head; h++) {
            const float *qh = q + (int64_t)t * q_stride + (int64_t)h * dk;
            int kvh = h / group;
            float *oh = out + (int64_t)t * n_head * dv + (int64_t)h * dv;
            memset(oh, 0, (size_t)dv * sizeof(float));
            float mx = -INFINITY;
            for (int64_t p = 0; p < n_keys; p++) {
                float s = dot_kv(qh, kc + (p * k_stride + (int64_t)kvh * dk) * es, kv, dk) * scale;
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
            for (int64_t p = 0; p < n_keys; p++)
                axpy_kv(oh, vc + (p * v_stride + (int64_t)kvh * dv) * es, kv, be->scores[p] * inv, dv);
        }
    }
}

static void scalar_kv_store(dsri_host *be, dsr1_kv_type kv, void *dst, int64_t dst_stride, const float *src,
                            int64_t src_stride, int64_t width, int64_t n_rows)
{
    (void)be;
    for (int64_t t = 0; t < n_rows; t++) {
        const float *s = src + t * src_stride;
        if (kv == DSR1_KV_F32) {
            memcpy((float *)dst + t * dst_stride, s, (size_t)width * sizeof(float));
        } else {
            uint16_t *d = (uint16_t *)dst + t * dst_stride;
            for (int64_t i = 0; i < width; i++)
                d[i] = dsri_fp32_to_fp16(s[i]);
        }
    }
}

static void scalar_kv_load(dsri_host *be, dsr1_kv_type kv, float *dst, int64_t dst_stride, const void *src,
                           int64_t src_stride, int64_t width, int64_t n_rows)
{
    (void)be;
    for (int64_t t = 0; t < n_rows; t++) {
        float *d = dst + t * dst_stride;
        if (kv == DSR1_KV_F32) {
            memcpy(d, (const float *)src + t * src_stride, (size_t)width * sizeof(float));
        } else {
            const uint16_t *s = (const uint16_t *)src + t * src_stride;
            for (int64_t i = 0; i < width; i++)
                d[i] = dsri_fp16_to_fp32(s[i]);
        }
    }
}

static void scalar_matmul_t(dsri_host *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    /* Dequantize each weight row once; y accumulates row o scaled by x[t][o],
     * in the order o = 0, 1, ... */
    for (int t = 0; t < n_rows; t++)
        memset(y + (int64_t)t * w->n_in, 0, (size_t)w->n_in * sizeof(float));
    for (int64_t o = 0; o < w->n_out; o++) {
        const float *wr;
        if (w->type == DSRI_TYPE_F32 && (uintptr_t)row_ptr(w, o) % sizeof(float) == 0) {
            wr = row_ptr(w, o);
        } else {
            dsri_dequantize_row(w->type, row_ptr(w, o), be->rows, w->n_in);
            wr = be->rows;
        }
        for (int t = 0; t < n_rows; t++) {
            float xo = x[(int64_t)t * w->n_out + o];
            float *yr = y + (int64_t)t * w->n_in;
            for (int64_t i = 0; i < w->n_in; i++)
                yr[i] += wr[i] * xo;
        }
    }
}

static void scalar_add_scaled(dsri_host *be, float *y, const float *x, float a, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static const dsri_host_ops scalar_host = {
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
    .kv_store = scalar_kv_store,
    .kv_load = scalar_kv_load,
    .matmul_t = scalar_matmul_t,
    .add_scaled = scalar_add_scaled,
};

DSRI_HOST_BACKEND_DEFINE(dsri_backend_scalar, "scalar", scalar_host, scalar_available);
