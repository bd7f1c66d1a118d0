/*
 * The driver shared by the SIMD backends (avx2, avx512, neon): the backend
 * instance and its scratch, matmul tiling over activation rows and output
 * rows on the context's thread pool, matmul_t, and (simd_ops.inc.c) the
 * non-matmul ops. Each backend file defines what differs and includes this
 * once, compiled with that backend's instruction set flags:
 *
 *   SIMD_OPS                  the dsri_host_ops object to define
 *   SIMD_NAME                 its name ("avx2")
 *   SIMD_AVAILABLE            int (void): may this CPU run it
 *   SIMD_KERNEL_FOR(type)     const dsri_simd_kernel * for a weight type, or
 *                             NULL: dequantize and take SIMD_KERNEL_F32
 *   SIMD_KERNEL_F32           the dsri_simd_kernel of f32 weights
 *   SIMD_QUANTIZE(act, x, dst, n)   one activation row to the form act
 *   SIMD_ACT_ROW_BYTES(act, n)      bytes of such a row
 *   and the vector helpers simd_ops.inc.c lists (SIMD_AXPY ...).
 *
 * The kernels are called once per weight row or group of rows, through the
 * kernel table (simd_kernel.h); what decides the bits of a result is in them,
 * so the driver's tiling and threading never change a value: a batch row is
 * bit-identical to the same row alone, whatever the thread count.
 */
#include <string.h>

#include "backend/host_ops.h"
#include "backend/simd_kernel.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "quant/quant.h"

/* Below this many multiply-adds an op runs on the calling thread. */
#define PARALLEL_MIN_MACS (1 << 17)
/* Activation rows quantized at once (the scratch holds this many). */
#define ROW_TILE 64
/* Try to keep a tile of activations within this many bytes (L2). */
#define TILE_BYTES (512 * 1024)

struct dsri_host {
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

static void simd_destroy(dsri_host *be)
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

static dsr1_status simd_create(const dsri_backend_config *cfg, dsri_host **out)
{
    dsri_host *be = dsri_calloc(1, sizeof *be);
    if (!be)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s backend: out of memory", SIMD_NAME);
    dsr1_status st = dsri_pool_acquire(cfg->pool, cfg->n_threads, &be->pool);
    if (st) {
        dsri_free(be);
        return st;
    }
    be->n_threads = dsri_pool_threads(be->pool);
    be->max_row = cfg->max_row > 0 ? cfg->max_row : 1;
    be->n_ctx = cfg->n_ctx > 0 ? cfg->n_ctx : 1;
    /* the largest form: rows rounded up to whole blocks of either size
     * (DSRI_ACT_X8_0 blocks are the size of Q8_0's), or avx512's bf16 rows
     * (DSRI_ACT_BF16: 2 bytes an element, padded to 32 elements) */
    size_t q0 = SIMD_ACT_ROW_BYTES(DSRI_ACT_Q8_0, be->max_row + 31);
    size_t qk = SIMD_ACT_ROW_BYTES(DSRI_ACT_Q8_K, be->max_row + 255);
    size_t qb = ((size_t)be->max_row + 31) / 32 * 64;
    be->act_row = q0 > qk ? q0 : qk;
    be->act_row = be->act_row > qb ? be->act_row : qb;
    be->rows = dsri_calloc((size_t)be->max_row * (size_t)be->n_threads, sizeof(float));
    be->scores = dsri_calloc((size_t)be->n_ctx * (size_t)be->n_threads, sizeof(float));
    be->act = dsri_calloc(ROW_TILE, be->act_row);
    be->rope_cs = dsri_calloc((size_t)be->max_row, sizeof(float));
    if (!be->rows || !be->scores || !be->act || !be->rope_cs) {
        simd_destroy(be);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s backend: out of memory", SIMD_NAME);
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
    dsri_host *be;
    const dsri_matrix *w;
    const dsri_simd_kernel *k; /* NULL: dequantize rows, then the f32 kernel */
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
    float res[2 * DSRI_SIMD_NR];
    int64_t o = begin;
    if (j->k && j->k->gemm) {
        const int64_t gnw = j->k->gemm_nw ? j->k->gemm_nw : DSRI_SIMD_GEMM_NW;
        for (; o < end; o += gnw) {
            int nw = end - o < gnw ? (int)(end - o) : (int)gnw;
            j->k->gemm(w->n_in, row_ptr(w, o), w->row_bytes, nw, j->x, j->x_stride, j->n_rows, j->y + o,
                       (size_t)n_out);
        }
        return;
    }
    /* pairs of weight rows where it pays (the same bits as one at a time) */
    if (j->k && j->k->dot2 && j->n_rows > 1)
        for (; o + 2 <= end; o += 2)
            for (int t = 0; t < j->n_rows; t += DSRI_SIMD_NR2) {
                int nr = j->n_rows - t < DSRI_SIMD_NR2 ? j->n_rows - t : DSRI_SIMD_NR2;
                j->k->dot2(w->n_in, row_ptr(w, o), w->row_bytes, (const uint8_t *)j->x + (size_t)t * j->x_stride,
                           j->x_stride, nr, res);
                for (int r = 0; r < nr; r++) {
                    j->y[(int64_t)(t + r) * n_out + o] = res[2 * r];
                    j->y[(int64_t)(t + r) * n_out + o + 1] = res[2 * r + 1];
                }
            }
    for (; o < end; o++) {
        const void *wr = row_ptr(w, o);
        dsri_simd_dot_fn dot;
        if (j->k) {
            dot = j->k->dot;
        } else {
            dsri_dequantize_row(w->type, wr, scratch, w->n_in);
            wr = scratch;
            dot = SIMD_KERNEL_F32.dot;
        }
        for (int t = 0; t < j->n_rows; t += DSRI_SIMD_NR) {
            int nr = j->n_rows - t < DSRI_SIMD_NR ? j->n_rows - t : DSRI_SIMD_NR;
            dot(w->n_in, wr, (const uint8_t *)j->x + (size_t)t * j->x_stride, j->x_stride, nr, res);
            for (int r = 0; r < nr; r++)
                j->y[(int64_t)(t + r) * n_out + o] = res[r];
        }
    }
}

typedef struct quant_job {
    dsri_act_kind act;
    const float *x;
    int64_t n;
    void *dst;
    size_t dst_stride;
} quant_job;

static void quant_task(void *arg, int i, int thread)
{
    (void)thread;
    const quant_job *q = arg;
    SIMD_QUANTIZE(q->act, q->x + (int64_t)i * q->n, (uint8_t *)q->dst + (size_t)i * q->dst_stride, q->n);
}

static void simd_matmul(dsri_host *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    const dsri_simd_kernel *k = SIMD_KERNEL_FOR(w->type);
    dsri_act_kind act = k ? k->act : DSRI_ACT_F32;
    size_t row_bytes = act == DSRI_ACT_F32 ? (size_t)w->n_in * sizeof(float) : SIMD_ACT_ROW_BYTES(act, w->n_in);
    int tile = (int)(TILE_BYTES / (row_bytes ? row_bytes : 1));
    tile = tile < DSRI_SIMD_NR ? DSRI_SIMD_NR : tile > ROW_TILE ? ROW_TILE : tile - tile % DSRI_SIMD_NR;
    /* f32 activations need no scratch, and a gemm kernel on them blocks k
     * itself (avx512's float kernels; and its BF16 kernel on bf16
     * activations, whose scratch holds ROW_TILE rows): the bigger the tile,
     * the fewer passes over the weights */
    if ((act == DSRI_ACT_F32 || act == DSRI_ACT_BF16) && k && k->gemm)
        tile = ROW_TILE;

    for (int t0 = 0; t0 < n_rows; t0 += tile) {
        int nt = n_rows - t0 < tile ? n_rows - t0 : tile;
        const float *xt = x + (int64_t)t0 * w->n_in;
        int64_t macs = w->n_in * w->n_out * nt;
        int par = be->n_threads > 1 && macs >= PARALLEL_MIN_MACS;
        matmul_job j = {be, w, k, xt, (size_t)w->n_in * sizeof(float), y + (int64_t)t0 * w->n_out, nt, w->n_out};
        if (act != DSRI_ACT_F32) {
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
            j.chunk += j.chunk & 1; /* even: rows pair up (dot2) the same way for any thread count */
            n_tasks = (int)((w->n_out + j.chunk - 1) / j.chunk);
        }
        if (n_tasks == 1)
            matmul_task(&j, 0, 0);
        else
            dsri_pool_run(be->pool, matmul_task, &j, n_tasks);
    }
}

/* ---- several matmuls in one parallel region ---- */

/* The most items and quantized activation rows one region takes. */
#define MULTI_ITEMS 64

typedef struct multi_job {
    matmul_job jobs[MULTI_ITEMS];
    int first_task[MULTI_ITEMS + 1]; /* item k's tasks: [first_task[k], first_task[k+1]) */
    int n_items;
} multi_job;

static void multi_task(void *arg, int i, int thread)
{
    const multi_job *m = arg;
    int k = 0;
    while (m->first_task[k + 1] <= i)
        k++;
    matmul_task((void *)&m->jobs[k], i - m->first_task[k], thread);
}

/* Weight bytes an item reads per output row, times its activation rows. */
static int64_t item_cost(const dsri_matmul_item *it)
{
    return (int64_t)it->w.row_bytes * it->n_rows;
}

/* Items [0, n) in one region: every activation row quantized once (items
 * that share x share its rows), then the output rows of all of them split
 * into tasks of about equal weight bytes. Each task is a matmul_task over
 * an even row range of one item, so every value has the bits simd_matmul
 * gives it. The caller checked that the rows fit the scratch. */
static void multi_region(dsri_host *be, const dsri_matmul_item *items, int n)
{
    multi_job m;
    m.n_items = n;
    int64_t total = 0, macs = 0;
    size_t used = 0; /* bytes of be->act taken */
    for (int k = 0; k < n; k++) {
        const dsri_matmul_item *it = &items[k];
        const dsri_simd_kernel *kern = SIMD_KERNEL_FOR(it->w.type);
        dsri_act_kind act = kern ? kern->act : DSRI_ACT_F32;
        matmul_job j = {be, &it->w, kern, it->x, (size_t)it->w.n_in * sizeof(float), it->y, it->n_rows, it->w.n_out};
        if (act != DSRI_ACT_F32) {
            size_t rb = SIMD_ACT_ROW_BYTES(act, it->w.n_in);
            int shared = -1;
            for (int p = 0; p < k && shared < 0; p++)
                if (items[p].x == it->x && items[p].n_rows == it->n_rows && items[p].w.n_in == it->w.n_in &&
                    m.jobs[p].k && m.jobs[p].k->act == act)
                    shared = p;
            if (shared >= 0) {
                j.x = m.jobs[shared].x;
            } else {
                uint8_t *dst = (uint8_t *)be->act + used;
                for (int r = 0; r < it->n_rows; r++)
                    SIMD_QUANTIZE(act, it->x + (int64_t)r * it->w.n_in, dst + (size_t)r * rb, it->w.n_in);
                j.x = dst;
                used += (size_t)it->n_rows * rb;
            }
            j.x_stride = rb;
        }
        m.jobs[k] = j;
        total += item_cost(it) * it->w.n_out;
        macs += it->w.n_in * it->w.n_out * it->n_rows;
    }
    const int par = be->n_threads > 1 && macs >= PARALLEL_MIN_MACS;
    /* tasks of about total / (4 * threads) bytes, at least 16 rows, even */
    const int64_t target = total / (4 * be->n_threads) + 1;
    m.first_task[0] = 0;
    for (int k = 0; k < n; k++) {
        matmul_job *j = &m.jobs[k];
        int64_t chunk = target / (item_cost(&items[k]) + 1);
        chunk = chunk < 16 ? 16 : chunk;
        chunk += chunk & 1;
        j->chunk = par ? chunk : j->w->n_out;
        m.first_task[k + 1] = m.first_task[k] + (int)((j->w->n_out + j->chunk - 1) / j->chunk);
    }
    dsri_pool_run(be->pool, multi_task, &m, m.first_task[n]);
}

/* Bytes of be->act an item's quantized rows take (0: f32 activations). */
static size_t item_act_bytes(const dsri_matmul_item *it)
{
    const dsri_simd_kernel *kern = SIMD_KERNEL_FOR(it->w.type);
    dsri_act_kind act = kern ? kern->act : DSRI_ACT_F32;
    return act == DSRI_ACT_F32 ? 0 : (size_t)it->n_rows * SIMD_ACT_ROW_BYTES(act, it->w.n_in);
}

static void simd_matmul_multi(dsri_host *be, const dsri_matmul_item *items, int n_items)
{
    /* Decode's products are small (a few rows): one region for as many as
     * fit the activation scratch saves a fork-join per product and the
     * repeated rounding of a shared input. Products of many rows keep
     * simd_matmul's tiling. */
    const size_t cap = (size_t)ROW_TILE * be->act_row;
    int k = 0;
    while (k < n_items) {
        if (items[k].n_rows > DSRI_SIMD_NR || item_act_bytes(&items[k]) > cap) {
            simd_matmul(be, &items[k].w, items[k].x, items[k].y, items[k].n_rows);
            k++;
            continue;
        }
        int n = 0;
        size_t bytes = 0;
        while (k + n < n_items && n < MULTI_ITEMS && items[k + n].n_rows <= DSRI_SIMD_NR &&
               bytes + item_act_bytes(&items[k + n]) <= cap)
            bytes += item_act_bytes(&items[k + n++]); /* an upper bound: shared rows count again */
        multi_region(be, items + k, n);
        k += n;
    }
}

typedef struct matmul_t_job {
    dsri_host *be;
    const dsri_matrix *w;
    const float *x;
    float *y;
    int n_rows;
    int rows_per_task;
} matmul_t_job;

/* Rows [i*rows_per_task, ...) of y: every task walks all weight rows in the
 * same order (dequantizing each into its thread's scratch), so each y row
 * is summed the same way whatever the split. */
static void matmul_t_task(void *arg, int i, int thread)
{
    const matmul_t_job *j = arg;
    const dsri_matrix *w = j->w;
    const int t0 = i * j->rows_per_task;
    const int t1 = t0 + j->rows_per_task < j->n_rows ? t0 + j->rows_per_task : j->n_rows;
    float *scratch = j->be->rows + (int64_t)thread * j->be->max_row;
    for (int t = t0; t < t1; t++)
        memset(j->y + (int64_t)t * w->n_in, 0, (size_t)w->n_in * sizeof(float));
    for (int64_t o = 0; o < w->n_out; o++) {
        const float *wr = scratch;
        if (w->type == DSRI_TYPE_F32 && (uintptr_t)row_ptr(w, o) % sizeof(float) == 0)
            wr = row_ptr(w, o);
        else
            dsri_dequantize_row(w->type, row_ptr(w, o), scratch, w->n_in);
        for (int t = t0; t < t1; t++)
            SIMD_AXPY(j->y + (int64_t)t * w->n_in, wr, j->x[(int64_t)t * w->n_out + o], w->n_in);
    }
}

static void simd_matmul_t(dsri_host *be, const dsri_matrix *w, const float *x, float *y, int n_rows)
{
    /* y[t] = sum_o x[t][o] * W[o], one dequantized weight row at a time. MLA
     * prefill expands every cached position's keys this way: split the rows
     * over the threads (each task dequantizes the weights again, which costs
     * less than its share of the products once it has a few rows) */
    matmul_t_job j = {be, w, x, y, n_rows, n_rows};
    const int64_t macs = (int64_t)n_rows * w->n_in * w->n_out;
    int n_tasks = 1;
    if (be->n_threads > 1 && macs >= PARALLEL_MIN_MACS && n_rows >= 8 * be->n_threads) {
        n_tasks = be->n_threads * 2;
        j.rows_per_task = (n_rows + n_tasks - 1) / n_tasks;
        n_tasks = (n_rows + j.rows_per_task - 1) / j.rows_per_task;
    }
    if (n_tasks == 1)
        matmul_t_task(&j, 0, 0);
    else
        dsri_pool_run(be->pool, matmul_t_task, &j, n_tasks);
}

#include "backend/simd_ops.inc.c"

static const dsri_host_ops simd_host = {
    .name = SIMD_NAME,
    .available = SIMD_AVAILABLE,
    .create = simd_create,
    .destroy = simd_destroy,
    .matmul = simd_matmul,
    .matmul_multi = simd_matmul_multi,
    .get_row = simd_get_row,
    .rmsnorm = simd_rmsnorm,
    .add = simd_add,
    .silu_mul = simd_silu_mul,
    .rope = simd_rope,
    .attention = simd_attention,
    .kv_store = simd_kv_store,
    .kv_load = simd_kv_load,
    .matmul_t = simd_matmul_t,
    .add_scaled = simd_add_scaled,
};

DSRI_HOST_BACKEND_DEFINE(SIMD_OPS, SIMD_NAME, simd_host, SIMD_AVAILABLE);
