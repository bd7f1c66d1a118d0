/*
 * The non-matmul ops shared by the SIMD backends (avx2, avx512, neon): row
 * lookup, RMSNorm, elementwise ops, RoPE and threaded attention. Included by
 * each backend's driver after it defines its vector helpers:
 *   SIMD_DOT_F32(a, b, n)   SIMD_SUMSQ(x, n)   SIMD_AXPY(y, x, a, n)
 *   SIMD_SCALE_MUL(y, x, s, w, n)   SIMD_ADD(y, x, n)   SIMD_SILU_MUL(g, u, n)
 *   SIMD_MAX(x, n)   SIMD_EXP_SUM(x, max, n)
 * and has row_ptr(), PARALLEL_MIN_MACS and a struct dsri_backend with pool,
 * n_threads, max_row, n_ctx, scores and rope_cs. The functions are static
 * (simd_*), one copy per backend, each compiled with its backend's flags.
 */

static void simd_get_row(dsri_backend *be, const dsri_matrix *w, int64_t row, float *out)
{
    (void)be;
    dsri_dequantize_row(w->type, row_ptr(w, row), out, w->n_in);
}

/* ---- elementwise ---- */

static void simd_rmsnorm(dsri_backend *be, const float *x, const float *weight, float *y, int d, int n_rows,
                         float eps)
{
    (void)be;
    for (int t = 0; t < n_rows; t++) {
        const float *xr = x + (int64_t)t * d;
        float scale = 1.0f / sqrtf(SIMD_SUMSQ(xr, d) / (float)d + eps);
        SIMD_SCALE_MUL(y + (int64_t)t * d, xr, scale, weight, d);
    }
}

static void simd_add(dsri_backend *be, float *y, const float *x, int64_t n)
{
    (void)be;
    SIMD_ADD(y, x, n);
}

static void simd_add_scaled(dsri_backend *be, float *y, const float *x, float a, int64_t n)
{
    (void)be;
    SIMD_AXPY(y, x, a, n);
}

static void simd_silu_mul(dsri_backend *be, float *g, const float *u, int64_t n)
{
    (void)be;
    SIMD_SILU_MUL(g, u, n);
}

/* The scalar backend's arithmetic, with each position's cos/sin computed
 * once for all heads (the same values, so the same results). */
static void simd_rope(dsri_backend *be, float *x, int n_rows, int64_t stride, int n_heads, int head_dim,
                      int rot_dim, const int32_t *pos, const float *freq, float mscale, int neox)
{
    int half = rot_dim / 2;
    float *cs = be->rope_cs;
    int cached = 2 * (int64_t)half <= be->max_row;
    for (int t = 0; t < n_rows; t++) {
        if (cached)
            for (int i = 0; i < half; i++) {
                double angle = (double)pos[t] * (double)freq[i];
                cs[2 * i] = (float)cos(angle) * mscale;
                cs[2 * i + 1] = (float)sin(angle) * mscale;
            }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (int64_t)t * stride + (int64_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float c, s;
                if (cached) {
                    c = cs[2 * i];
                    s = cs[2 * i + 1];
                } else {
                    double angle = (double)pos[t] * (double)freq[i];
                    c = (float)cos(angle) * mscale;
                    s = (float)sin(angle) * mscale;
                }
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

/* ---- attention ---- */

typedef struct attn_job {
    dsri_backend *be;
    const float *q, *k_cache, *v_cache;
    int64_t q_stride, k_stride, v_stride;
    float *out;
    const int32_t *pos;
    int n_head, group, dk, dv;
    float scale;
} attn_job;

/* One (row, head) pair: task i = t * n_head + h. */
static void attn_task(void *arg, int i, int thread)
{
    const attn_job *j = arg;
    int t = i / j->n_head, h = i % j->n_head, kvh = h / j->group;
    int64_t n_keys = (int64_t)j->pos[t] + 1;
    float *sc = j->be->scores + (int64_t)thread * j->be->n_ctx;
    const float *qh = j->q + (int64_t)t * j->q_stride + (int64_t)h * j->dk;
    float *oh = j->out + ((int64_t)t * j->n_head + h) * j->dv;
    const float *kc = j->k_cache + (int64_t)kvh * j->dk, *vc = j->v_cache + (int64_t)kvh * j->dv;
    for (int64_t p = 0; p < n_keys; p++)
        sc[p] = SIMD_DOT_F32(qh, kc + p * j->k_stride, j->dk) * j->scale;
    float mx = SIMD_MAX(sc, n_keys);
    float inv = 1.0f / SIMD_EXP_SUM(sc, mx, n_keys);
    memset(oh, 0, (size_t)j->dv * sizeof(float));
    for (int64_t p = 0; p < n_keys; p++)
        SIMD_AXPY(oh, vc + p * j->v_stride, sc[p] * inv, j->dv);
}

static void simd_attention(dsri_backend *be, const float *q, int64_t q_stride, const float *k_cache,
                           int64_t k_stride, const float *v_cache, int64_t v_stride, float *out, int n_rows,
                           const int32_t *pos, int n_head, int n_head_kv, int dk, int dv, float scale)
{
    attn_job j = {be, q, k_cache, v_cache, q_stride, k_stride, v_stride, out, pos,
                  n_head, n_head / n_head_kv, dk, dv, scale};
    int n_tasks = n_rows * n_head;
    int64_t work = 0;
    for (int t = 0; t < n_rows; t++)
        work += ((int64_t)pos[t] + 1) * (dk + dv) * n_head;
    if (be->n_threads > 1 && work >= PARALLEL_MIN_MACS && n_tasks > 1) {
        dsri_pool_run(be->pool, attn_task, &j, n_tasks);
    } else {
        for (int i = 0; i < n_tasks; i++)
            attn_task(&j, i, 0);
    }
}
