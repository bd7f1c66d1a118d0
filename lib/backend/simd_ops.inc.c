/*
 * The non-matmul ops shared by the SIMD backends (avx2, avx512, neon): row
 * lookup, RMSNorm, elementwise ops, RoPE and threaded attention. Included by
 * the shared driver (simd_driver.inc.c, which has row_ptr(),
 * PARALLEL_MIN_MACS and struct dsri_host) after the backend file defined
 * its vector helpers:
 *   SIMD_DOT_F32(a, b, n)   SIMD_SUMSQ(x, n)   SIMD_AXPY(y, x, a, n)
 *   SIMD_SCALE_MUL(y, x, s, w, n)   SIMD_ADD(y, x, n)   SIMD_SILU_MUL(g, u, n)
 *   SIMD_MAX(x, n)   SIMD_EXP_SUM(x, max, n)
 * The functions are static (simd_*), one copy per backend, each compiled
 * with its backend's flags. The f16 KV cache helpers below are written here
 * per instruction set: F16C (vcvtph2ps / vcvtps2ph) for avx2 and avx512,
 * vcvt_f32_f16 / vcvt_f16_f32 for neon, plain C elsewhere.
 */
#include <math.h>
#include <string.h>

/* ---- f16 KV cache rows ---- */

#if defined(__F16C__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static inline __m256 f16x8_load(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* a . b over n values, b in f16 */
static float simd_dot_f16(const float *a, const uint16_t *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), f16x8_load(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), f16x8_load(b + i + 8), s1);
    }
    if (i + 8 <= n) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), f16x8_load(b + i), s0);
        i += 8;
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    for (; i < n; i++)
        sum += a[i] * dsri_fp16_to_fp32(b[i]);
    return sum;
}

/* y += a * x over n values, x in f16 */
static void simd_axpy_f16(float *y, const uint16_t *x, float a, int64_t n)
{
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, f16x8_load(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * dsri_fp16_to_fp32(x[i]);
}

static void simd_to_f16(uint16_t *d, const float *s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        d[i] = dsri_fp32_to_fp16(s[i]);
}

static void simd_from_f16(float *d, const uint16_t *s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, f16x8_load(s + i));
    for (; i < n; i++)
        d[i] = dsri_fp16_to_fp32(s[i]);
}

#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

static float simd_dot_f16(const float *a, const uint16_t *b, int64_t n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(b + i));
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vcvt_f32_f16(vget_low_f16(h)));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vcvt_high_f32_f16(h));
    }
    float sum = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++)
        sum += a[i] * dsri_fp16_to_fp32(b[i]);
    return sum;
}

static void simd_axpy_f16(float *y, const uint16_t *x, float a, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), v, a));
    }
    for (; i < n; i++)
        y[i] += a * dsri_fp16_to_fp32(x[i]);
}

/* vcvt_f16_f32 rounds by FPCR, to nearest even unless a host changed it:
 * keep the portable conversion for stores, which are few. */
static void simd_to_f16(uint16_t *d, const float *s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = dsri_fp32_to_fp16(s[i]);
}

static void simd_from_f16(float *d, const uint16_t *s, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(d + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + i))));
    for (; i < n; i++)
        d[i] = dsri_fp16_to_fp32(s[i]);
}

#else

static float simd_dot_f16(const float *a, const uint16_t *b, int64_t n)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += a[i] * dsri_fp16_to_fp32(b[i]);
    return sum;
}

static void simd_axpy_f16(float *y, const uint16_t *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * dsri_fp16_to_fp32(x[i]);
}

static void simd_to_f16(uint16_t *d, const float *s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = dsri_fp32_to_fp16(s[i]);
}

static void simd_from_f16(float *d, const uint16_t *s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = dsri_fp16_to_fp32(s[i]);
}

#endif

static void simd_kv_store(dsri_host *be, dsr1_kv_type kv, void *dst, int64_t dst_stride, const float *src,
                          int64_t src_stride, int64_t width, int64_t n_rows)
{
    (void)be;
    for (int64_t t = 0; t < n_rows; t++) {
        if (kv == DSR1_KV_F32)
            memcpy((float *)dst + t * dst_stride, src + t * src_stride, (size_t)width * sizeof(float));
        else
            simd_to_f16((uint16_t *)dst + t * dst_stride, src + t * src_stride, width);
    }
}

static void simd_kv_load(dsri_host *be, dsr1_kv_type kv, float *dst, int64_t dst_stride, const void *src,
                         int64_t src_stride, int64_t width, int64_t n_rows)
{
    (void)be;
    for (int64_t t = 0; t < n_rows; t++) {
        if (kv == DSR1_KV_F32)
            memcpy(dst + t * dst_stride, (const float *)src + t * src_stride, (size_t)width * sizeof(float));
        else
            simd_from_f16(dst + t * dst_stride, (const uint16_t *)src + t * src_stride, width);
    }
}

static void simd_get_row(dsri_host *be, const dsri_matrix *w, int64_t row, float *out)
{
    (void)be;
    dsri_dequantize_row(w->type, row_ptr(w, row), out, w->n_in);
}

/* ---- elementwise ---- */

static void simd_rmsnorm(dsri_host *be, const float *x, const float *weight, float *y, int d, int n_rows,
                         float eps)
{
    (void)be;
    for (int t = 0; t < n_rows; t++) {
        const float *xr = x + (int64_t)t * d;
        float scale = 1.0f / sqrtf(SIMD_SUMSQ(xr, d) / (float)d + eps);
        SIMD_SCALE_MUL(y + (int64_t)t * d, xr, scale, weight, d);
    }
}

static void simd_add(dsri_host *be, float *y, const float *x, int64_t n)
{
    (void)be;
    SIMD_ADD(y, x, n);
}

static void simd_add_scaled(dsri_host *be, float *y, const float *x, float a, int64_t n)
{
    (void)be;
    SIMD_AXPY(y, x, a, n);
}

static void simd_silu_mul(dsri_host *be, float *g, const float *u, int64_t n)
{
    (void)be;
    SIMD_SILU_MUL(g, u, n);
}

/* The scalar backend's arithmetic, with each position's cos/sin computed
 * once for all heads (the same values, so the same results). */
static void simd_rope(dsri_host *be, float *x, int n_rows, int64_t stride, int n_heads, int head_dim,
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
    dsri_host *be;
    const float *q;
    const uint8_t *k_cache, *v_cache;
    int64_t q_stride, k_stride, v_stride; /* k/v strides in elements */
    dsr1_kv_type kv;
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
    const int64_t es = dsri_kv_elem_bytes(j->kv);
    float *sc = j->be->scores + (int64_t)thread * j->be->n_ctx;
    const float *qh = j->q + (int64_t)t * j->q_stride + (int64_t)h * j->dk;
    float *oh = j->out + ((int64_t)t * j->n_head + h) * j->dv;
    const uint8_t *kc = j->k_cache + (int64_t)kvh * j->dk * es, *vc = j->v_cache + (int64_t)kvh * j->dv * es;
    const int64_t kb = j->k_stride * es, vb = j->v_stride * es; /* bytes between cache rows */
    if (j->kv == DSR1_KV_F32)
        for (int64_t p = 0; p < n_keys; p++)
            sc[p] = SIMD_DOT_F32(qh, (const float *)(const void *)(kc + p * kb), j->dk) * j->scale;
    else
        for (int64_t p = 0; p < n_keys; p++)
            sc[p] = simd_dot_f16(qh, (const uint16_t *)(const void *)(kc + p * kb), j->dk) * j->scale;
    float mx = SIMD_MAX(sc, n_keys);
    float inv = 1.0f / SIMD_EXP_SUM(sc, mx, n_keys);
    memset(oh, 0, (size_t)j->dv * sizeof(float));
    if (j->kv == DSR1_KV_F32)
        for (int64_t p = 0; p < n_keys; p++)
            SIMD_AXPY(oh, (const float *)(const void *)(vc + p * vb), sc[p] * inv, j->dv);
    else
        for (int64_t p = 0; p < n_keys; p++)
            simd_axpy_f16(oh, (const uint16_t *)(const void *)(vc + p * vb), sc[p] * inv, j->dv);
}

static void simd_attention(dsri_host *be, const float *q, int64_t q_stride, const void *k_cache,
                           int64_t k_stride, const void *v_cache, int64_t v_stride, dsr1_kv_type kv, float *out,
                           int n_rows, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv, float scale)
{
    attn_job j = {be, q, k_cache, v_cache, q_stride, k_stride, v_stride, kv, out, pos,
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
