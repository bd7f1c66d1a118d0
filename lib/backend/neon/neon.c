/*
 * The neon backend: little-endian aarch64 (Advanced SIMD is part of every
 * ARMv8-A core). A copy of the avx2 backend's driver (lib/backend/avx2/
 * avx2.c: tiling, threads, elementwise ops, attention) over NEON kernels
 * (kernels.c): matmuls round each activation row once to 8-bit blocks and take
 * integer dot products with the quantized weights, as llama.cpp does, so
 * results differ from the scalar reference by that rounding (the tolerances
 * are in tests/test_backend.c). Output rows are split over the context's
 * thread pool; results do not depend on the thread count.
 *
 * Where the CPU has the ARMv8.2 dot product instructions (getauxval on
 * Linux) the integer kernels use sdot (kernels.c compiled a second time with
 * +dotprod); they give exactly the same results as the plain NEON ones.
 */
#include <math.h>
#include <string.h>

#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "backend/backend.h"
#include "backend/neon/kernels.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "quant/quant.h"

#define BACKEND_NAME "neon"

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* Linux arch/arm64 uapi hwcap.h */
#endif

int dsri_neon_has_dotprod(void)
{
#if !defined(DSRI_NEON_HAVE_DOTPROD)
    return 0;
#elif defined(__ARM_FEATURE_DOTPROD)
    return 1;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}

static int neon_available(void) { return 1; }

static const dsri_neon_kernel *kernel_for(uint32_t type)
{
#ifdef DSRI_NEON_HAVE_DOTPROD
    if (dsri_neon_has_dotprod()) /* getauxval: cheap, once per matmul */
        return dsri_neon_kernel_for_dotprod(type);
#endif
    return dsri_neon_kernel_for(type);
}

/* Below this many multiply-adds an op runs on the calling thread. */
#define PARALLEL_MIN_MACS (1 << 17)
/* Activation rows quantized at once (the scratch holds this many). */
#define ROW_TILE 64
/* Try to keep a tile of activations within this many bytes (L2). */
#define TILE_BYTES (512 * 1024)

struct dsri_backend {
    dsri_pool *pool;
    int n_threads;
    int64_t max_row;
    int64_t n_ctx;
    float *rows;    /* one f32 row per thread (dequantized weights) */
    float *scores;  /* n_ctx attention scores per thread */
    void *act;      /* ROW_TILE quantized activation rows */
    size_t act_row; /* bytes per quantized activation row at most */
    float *rope_cs; /* cos/sin of one position, max_row floats */
};

static void neon_destroy(dsri_backend *be)
{
    if (!be)
        return;
    dsri_pool_free(be->pool);
    dsri_free(be->rows);
    dsri_free(be->scores);
    dsri_free(be->act);
    dsri_free(be->rope_cs);
    dsri_free(be);
}

static dsr1_status neon_create(const dsri_backend_config *cfg, dsri_backend **out)
{
    dsri_backend *be = dsri_calloc(1, sizeof *be);
    if (!be)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s backend: out of memory", BACKEND_NAME);
    dsr1_status st = dsri_pool_new(cfg->n_threads, &be->pool);
    if (st) {
        dsri_free(be);
        return st;
    }
    be->n_threads = dsri_pool_threads(be->pool);
    be->max_row = cfg->max_row > 0 ? cfg->max_row : 1;
    be->n_ctx = cfg->n_ctx > 0 ? cfg->n_ctx : 1;
    size_t q0 = dsri_neon_act_row_bytes(DSRI_NEON_ACT_Q8_0, be->max_row + 31);
    size_t qk = dsri_neon_act_row_bytes(DSRI_NEON_ACT_Q8_K, be->max_row + 255);
    be->act_row = q0 > qk ? q0 : qk;
    be->rows = dsri_calloc((size_t)be->max_row * (size_t)be->n_threads, sizeof(float));
    be->scores = dsri_calloc((size_t)be->n_ctx * (size_t)be->n_threads, sizeof(float));
    be->act = dsri_calloc(ROW_TILE, be->act_row);
    be->rope_cs = dsri_calloc((size_t)be->max_row, sizeof(float));
    if (!be->rows || !be->scores || !be->act || !be->rope_cs) {
        neon_destroy(be);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s backend: out of memory", BACKEND_NAME);
    }
    *out = be;
    return DSR1_OK;
}

static const void *row_ptr(const dsri_matrix *w, int64_t r)
{
    return (const uint8_t *)w->data + (uint64_t)r * w->row_bytes;
}

/* ---- matmul ---- */

typedef struct matmul_job {
    dsri_backend *be;
    const dsri_matrix *w;
    const dsri_neon_kernel *k; /* NULL: dequantize rows, then the f32 kernel */
    const void *x;             /* activation rows of the tile */
    size_t x_stride;           /* bytes between them */
    float *y;                  /* output row of the tile's first activation row */
    int n_rows;                /* rows in the tile */
    int64_t chunk;             /* output rows per task */
} matmul_job;

static void matmul_task(void *arg, int i, int thread)
{
    const matmul_job *j = arg;
    const dsri_matrix *w = j->w;
    const int64_t n_out = w->n_out;
    int64_t begin = (int64_t)i * j->chunk, end = begin + j->chunk < n_out ? begin + j->chunk : n_out;
    float *scratch = j->be->rows + (int64_t)thread * j->be->max_row;
    float res[DSRI_NEON_NR];
    int64_t o = begin;
    for (; o < end; o++) {
        const void *wr = row_ptr(w, o);
        dsri_neon_dot_fn dot;
        if (j->k) {
            dot = j->k->dot;
        } else {
            dsri_dequantize_row(w->type, wr, scratch, w->n_in);
            wr = scratch;
            dot = dsri_neon_kernel_f32.dot;
        }
        for (int t = 0; t < j->n_rows; t += DSRI_NEON_NR) {
            int nr = j->n_rows - t < DSRI_NEON_NR ? j->n_rows - t : DSRI_NEON_NR;
            dot(w->n_in, wr, (const uint8_t *)j->x + (size_t)t * j->x_stride, j->x_stride, nr, res);
            for (int r = 0; r < nr; r++)
                j->y[(int64_t)(t + r) * n_out + o] = res[r];
        }
    }
}

typedef struct quant_job {
    dsri_neon_act act;
    const float *x;
    int64_t n;
    void *dst;
    size_t dst_stride;
} quant_job;

static void quant_task(void *arg, int i, int thread)
{
    (void)thread;
    const quant_job *q = arg;
    dsri_neon_quantize_act(q->act, q->x + (int64_t)i * q->n, (uint8_t *)q->dst + (size_t)i * q->dst_stride, q->n);
}

static void neon_matmul(dsri_backend *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    const dsri_neon_kernel *k = kernel_for(w->type);
    dsri_neon_act act = k ? k->act : DSRI_NEON_ACT_F32;
    size_t row_bytes = act == DSRI_NEON_ACT_F32 ? (size_t)w->n_in * sizeof(float) : dsri_neon_act_row_bytes(act, w->n_in);
    int tile = (int)(TILE_BYTES / (row_bytes ? row_bytes : 1));
    tile = tile < DSRI_NEON_NR ? DSRI_NEON_NR : tile > ROW_TILE ? ROW_TILE : tile - tile % DSRI_NEON_NR;

    for (int t0 = 0; t0 < n_rows; t0 += tile) {
        int nt = n_rows - t0 < tile ? n_rows - t0 : tile;
        const float *xt = x + (int64_t)t0 * w->n_in;
        int64_t macs = w->n_in * w->n_out * nt;
        int par = be->n_threads > 1 && macs >= PARALLEL_MIN_MACS;
        matmul_job j = {be, w, k, xt, (size_t)w->n_in * sizeof(float), y + (int64_t)t0 * w->n_out, nt, w->n_out};
        if (act != DSRI_NEON_ACT_F32) {
            quant_job q = {act, xt, w->n_in, be->act, row_bytes};
            if (par && nt > 1)
                dsri_pool_run(be->pool, quant_task, &q, nt);
            else
                for (int r = 0; r < nt; r++)
                    quant_task(&q, r, 0);
            j.x = be->act;
            j.x_stride = row_bytes;
        }
        int n_tasks = 1;
        if (par) {
            n_tasks = be->n_threads * 4 < w->n_out ? be->n_threads * 4 : (int)w->n_out;
            j.chunk = (w->n_out + n_tasks - 1) / n_tasks;
            n_tasks = (int)((w->n_out + j.chunk - 1) / j.chunk);
        }
        if (n_tasks == 1)
            matmul_task(&j, 0, 0);
        else
            dsri_pool_run(be->pool, matmul_task, &j, n_tasks);
    }
}

static void neon_matmul_t(dsri_backend *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    /* y[t] = sum_o x[t][o] * W[o]: one dequantized weight row at a time */
    for (int t = 0; t < n_rows; t++)
        memset(y + (int64_t)t * w->n_in, 0, (size_t)w->n_in * sizeof(float));
    for (int64_t o = 0; o < w->n_out; o++) {
        const float *wr = be->rows;
        if (w->type == DSRI_TYPE_F32 && (uintptr_t)row_ptr(w, o) % sizeof(float) == 0)
            wr = row_ptr(w, o);
        else
            dsri_dequantize_row(w->type, row_ptr(w, o), be->rows, w->n_in);
        for (int t = 0; t < n_rows; t++)
            dsri_neon_axpy(y + (int64_t)t * w->n_in, wr, x[(int64_t)t * w->n_out + o], w->n_in);
    }
}

#define SIMD_DOT_F32 dsri_neon_dot_f32
#define SIMD_SUMSQ(x, n) dsri_neon_dot_f32((x), (x), (n))
#define SIMD_AXPY dsri_neon_axpy
#define SIMD_SCALE_MUL dsri_neon_scale_mul
#define SIMD_ADD dsri_neon_add
#define SIMD_SILU_MUL dsri_neon_silu_mul
#define SIMD_MAX dsri_neon_max
#define SIMD_EXP_SUM dsri_neon_exp_sum
#include "backend/simd_ops.inc.c"

const dsri_backend_ops dsri_backend_neon = {
    .name = BACKEND_NAME,
    .available = neon_available,
    .create = neon_create,
    .destroy = neon_destroy,
    .matmul = neon_matmul,
    .get_row = simd_get_row,
    .rmsnorm = simd_rmsnorm,
    .add = simd_add,
    .silu_mul = simd_silu_mul,
    .rope = simd_rope,
    .attention = simd_attention,
    .kv_store = simd_kv_store,
    .kv_load = simd_kv_load,
    .matmul_t = neon_matmul_t,
    .add_scaled = simd_add_scaled,
};
