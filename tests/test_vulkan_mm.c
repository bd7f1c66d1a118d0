/*
 * The Vulkan backend's matrix ops against the CPU reference, for every
 * weight type the library loads:
 *   get_rows      bit-identical to lib/quant's dequantization (the shaders'
 *                 dequant.glsl evaluates the same float expressions);
 *   matmul        within 1e-5 of a double-precision product of the same
 *                 dequantized weights (relative to sum |w x|), for batches
 *                 that take the matrix-vector kernel and the tiled one, on
 *                 shapes that are no multiple of any tile;
 *   row independence: every row of a batch bit-identical to the same row
 *                 computed alone (backend.h's contract);
 *   matmul_t, matmul_heads (both forms): likewise;
 *   the IQ tables: every grid entry of every IQ1-IQ3 type through get_rows
 *                 as on the CPU (the table buffer the shaders read).
 * Runs on the first Vulkan device (CI: Mesa's lavapipe); exits 77 (meson:
 * skipped) saying why when there is none.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/vulkan/vk_internal.h"
#include "dsr1.h"
#include "check.h"
#include "quant/quant.h"

#ifndef DSRI_HAVE_VULKAN
int main(void)
{
    printf("SKIP: the Vulkan matrix tests did not run: this build has no Vulkan backend (-Dvulkan=disabled or no dlopen)\n");
    return 77;
}
#else

typedef struct vk_env {
    const dsri_backend_ops *ops;
    dsri_device *dev;
    dsri_backend *be;
} vk_env;

/* xorshift: reproducible data */
static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static float rng_float(uint32_t *s) /* [-1, 1) */
{
    return (float)(rng_next(s) >> 8) / 8388608.0f - 1.0f;
}

/* Byte offsets of the f16 scale fields of a block (-1 ends the list). */
static const int *f16_fields(uint32_t type)
{
    static const int at0[] = {0, -1}, at01[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1}, none[] = {-1};
    switch (type) {
    case DSRI_TYPE_IQ1_M: return none; /* its scale is spread over 4 nibbles: make_weights sets it */
    case DSRI_TYPE_Q4_1: case DSRI_TYPE_Q5_1: case DSRI_TYPE_Q4_K: case DSRI_TYPE_Q5_K: return at01;
    case DSRI_TYPE_Q2_K: return q2k;
    case DSRI_TYPE_Q3_K: return q3k;
    case DSRI_TYPE_Q6_K: return q6k;
    default: return at0;
    }
}

/* rows x cols weights of `type`: random floats for f32/f16/bf16; random
 * bytes with random finite scales for block types (every 5th block a
 * subnormal f16 scale, to check the exact f16 widening). */
static uint8_t *make_weights(uint32_t type, int64_t rows, int64_t cols, uint32_t *seed, size_t *row_bytes)
{
    const dsri_type_traits *tr = dsri_type_traits_get(type);
    *row_bytes = dsri_row_size(type, cols);
    uint8_t *w = malloc(*row_bytes * (size_t)rows);
    if (!w)
        return NULL;
    if (type == DSRI_TYPE_F32 || type == DSRI_TYPE_F16 || type == DSRI_TYPE_BF16) {
        float *row = malloc((size_t)cols * sizeof *row);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cols; i++)
                row[i] = rng_float(seed);
            dsri_quantize_row(type, row, w + (size_t)r * *row_bytes, cols);
        }
        free(row);
        return w;
    }
    for (size_t i = 0; i < *row_bytes * (size_t)rows; i++)
        w[i] = (uint8_t)rng_next(seed);
    const size_t n_blocks = *row_bytes * (size_t)rows / tr->type_size;
    for (size_t b = 0; b < n_blocks; b++)
        for (const int *f = f16_fields(type); *f >= 0; f++) {
            uint16_t h = b % 5 == 4 ? (uint16_t)((rng_next(seed) & 0x83FFu) | 1u)
                                    : dsri_fp32_to_fp16(rng_float(seed) * 0.05f);
            w[b * tr->type_size + (size_t)*f] = (uint8_t)(h & 0xFF);
            w[b * tr->type_size + (size_t)*f + 1] = (uint8_t)(h >> 8);
        }
    for (size_t b = 0; type == DSRI_TYPE_IQ1_M && b < n_blocks; b++) {
        /* the f16 super-scale: nibble k in the top nibble of the k-th u16 at byte 48 */
        uint16_t h = dsri_fp32_to_fp16(rng_float(seed) * 0.05f);
        for (int k = 0; k < 4; k++) {
            uint8_t *hi = &w[b * tr->type_size + 49 + 2 * (size_t)k];
            *hi = (uint8_t)((*hi & 0x0F) | ((h >> (4 * k)) & 0x0F) << 4);
        }
    }
    return w;
}

/* A weight placed on the device, from host bytes. */
static int place(vk_env *e, uint32_t type, const uint8_t *data, int64_t rows, int64_t cols, size_t row_bytes,
                 dsri_buf *host, dsri_tensor *out)
{
    *host = (dsri_buf){NULL, (void *)data, (uint64_t)(row_bytes * (size_t)rows), NULL};
    dsri_tensor src = {host, 0, type, cols, rows, row_bytes};
    dsr1_status st = e->ops->place(e->dev, &src, out);
    CHECK(st == DSR1_OK, "place %s %lldx%lld: %s", dsri_type_traits_get(type)->name, (long long)rows,
          (long long)cols, dsr1_last_error());
    return st == DSR1_OK;
}

/* A device f32 tensor of rows x cols, filled from host (NULL: left zero). */
static dsri_buf *f32_tensor(vk_env *e, int64_t rows, int64_t cols, const float *data, dsri_tensor *t)
{
    dsri_buf *buf = NULL;
    dsr1_status st = e->ops->buf_new(e->dev, (uint64_t)(rows * cols) * sizeof(float), &buf);
    CHECK(st == DSR1_OK, "buf_new: %s", dsr1_last_error());
    if (st)
        return NULL;
    *t = dsri_tensor_2d(buf, 0, DSRI_TYPE_F32, cols, rows);
    if (data) {
        st = e->ops->upload(e->be, t, data);
        CHECK(st == DSR1_OK, "upload: %s", dsr1_last_error());
    }
    return buf;
}

static int download(vk_env *e, const dsri_tensor *t, float *dst)
{
    dsr1_status st = e->ops->download(e->be, t, dst);
    CHECK(st == DSR1_OK, "download: %s", dsr1_last_error());
    return st == DSR1_OK;
}

/* dequantized weights (the CPU reference values) */
static float *dequantized(uint32_t type, const uint8_t *w, int64_t rows, int64_t cols, size_t row_bytes)
{
    float *f = malloc((size_t)(rows * cols) * sizeof *f);
    for (int64_t r = 0; r < rows; r++)
        dsri_dequantize_row(type, w + (size_t)r * row_bytes, f + r * cols, cols);
    return f;
}

/* |got - sum| within 1e-5 of sum |terms| (f32 accumulation of n terms) */
static int close_to(float got, double sum, double abs_sum)
{
    return fabs((double)got - sum) <= 1e-5 * abs_sum + 1e-30;
}

static float *random_floats(int64_t n, uint32_t *seed)
{
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = rng_float(seed);
    return v;
}

/* y = x w^T on the device for x: n x cols (returned malloc'ed, n x rows) */
static float *run_matmul(vk_env *e, const dsri_tensor *w, const float *x, int64_t n, int transposed)
{
    const int64_t in = transposed ? w->rows : w->cols, out = transposed ? w->cols : w->rows;
    dsri_tensor xt, yt;
    dsri_buf *xb = f32_tensor(e, n, in, x, &xt), *yb = f32_tensor(e, n, out, NULL, &yt);
    float *y = malloc((size_t)(n * out) * sizeof *y);
    if (xb && yb) {
        if (transposed)
            e->ops->matmul_t(e->be, w, &xt, &yt);
        else
            e->ops->matmul(e->be, w, &xt, &yt);
        if (!download(e, &yt, y)) {
            free(y);
            y = NULL;
        }
    }
    e->ops->buf_free(xb);
    e->ops->buf_free(yb);
    return y;
}

static void test_get_rows(vk_env *e, uint32_t type, const dsri_tensor *w, const float *ref)
{
    const int32_t ids[] = {0, (int32_t)w->rows - 1, 5, 5, 17};
    const int64_t n = (int64_t)(sizeof ids / sizeof ids[0]);
    dsri_tensor yt;
    dsri_buf *yb = f32_tensor(e, n, w->cols, NULL, &yt);
    float *y = malloc((size_t)(n * w->cols) * sizeof *y);
    if (yb) {
        e->ops->get_rows(e->be, w, ids, &yt);
        if (download(e, &yt, y))
            for (int64_t t = 0; t < n; t++) {
                int bad = memcmp(y + t * w->cols, ref + ids[t] * w->cols, (size_t)w->cols * sizeof *y) != 0;
                CHECK(!bad, "%s get_rows: row %d differs from lib/quant's dequantization",
                      dsri_type_traits_get(type)->name, ids[t]);
            }
    }
    free(y);
    e->ops->buf_free(yb);
}

/* matmul (transposed = 0) or matmul_t (1) for several batch sizes: close
 * to the double reference, and each row bit-identical to that row alone. */
static void test_products(vk_env *e, uint32_t type, const dsri_tensor *w, const float *wf, int transposed,
                          uint32_t *seed)
{
    const char *name = dsri_type_traits_get(type)->name;
    const char *op = transposed ? "matmul_t" : "matmul";
    const int64_t in = transposed ? w->rows : w->cols, out = transposed ? w->cols : w->rows;
    const int64_t max_batch = 21;
    float *x = random_floats(max_batch * in, seed);
    float **alone = calloc((size_t)max_batch, sizeof *alone);
    for (int64_t t = 0; t < max_batch; t++)
        alone[t] = run_matmul(e, w, x + t * in, 1, transposed);
    const int64_t batches[] = {2, 4, 5, 9, 21};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        const int64_t n = batches[b];
        float *y = run_matmul(e, w, x, n, transposed);
        if (!y)
            continue;
        int far = 0, differ = 0;
        for (int64_t t = 0; t < n; t++) {
            for (int64_t o = 0; o < out; o++) {
                double sum = 0, abs_sum = 0;
                for (int64_t i = 0; i < in; i++) {
                    double p = (double)(transposed ? wf[i * w->cols + o] : wf[o * w->cols + i]) * x[t * in + i];
                    sum += p;
                    abs_sum += fabs(p);
                }
                if (!close_to(y[t * out + o], sum, abs_sum) && far++ < 3)
                    printf("  %s %s batch %lld: y[%lld][%lld] = %.9g, reference %.9g\n", name, op, (long long)n,
                           (long long)t, (long long)o, y[t * out + o], sum);
            }
            if (alone[t] && memcmp(y + t * out, alone[t], (size_t)out * sizeof *y) != 0)
                differ++;
        }
        CHECK(far == 0, "%s %s batch %lld: %d outputs off the reference by more than 1e-5", name, op, (long long)n,
              far);
        CHECK(differ == 0, "%s %s batch %lld: %d rows differ from the same row computed alone", name, op,
              (long long)n, differ);
        free(y);
    }
    for (int64_t t = 0; t < max_batch; t++)
        free(alone[t]);
    free(alone);
    free(x);
}

/* matmul_heads: 3 heads of w.rows - 1 rows, heads w_step = w.rows / 3
 * rows apart... equal, bit for bit, to one matmul per head on the same
 * strided views, and close to the reference. */
static void test_heads(vk_env *e, uint32_t type, const dsri_tensor *w, const float *wf, int transposed, uint32_t *seed)
{
    const char *name = dsri_type_traits_get(type)->name;
    const int n_heads = 3;
    const int64_t w_step = w->rows / n_heads, head_rows = w_step - 1; /* a gap row between heads */
    dsri_tensor wh0 = dsri_rows(w, 0, head_rows);
    const int64_t in = transposed ? head_rows : w->cols, out = transposed ? w->cols : head_rows;
    const int64_t x_step = in + 3, y_step = out + 2, n = 5;
    float *x = random_floats(n * n_heads * x_step, seed);
    dsri_tensor xt, yt, y1t, work;
    dsri_buf *xb = f32_tensor(e, n, n_heads * x_step, x, &xt);
    dsri_buf *yb = f32_tensor(e, n, n_heads * y_step, NULL, &yt);
    dsri_buf *y1b = f32_tensor(e, n, n_heads * y_step, NULL, &y1t);
    dsri_buf *wb = f32_tensor(e, 1, 2 * n * (in > out ? in : out), NULL, &work);
    float *y = calloc((size_t)(n * n_heads * y_step), sizeof *y), *y1 = calloc((size_t)(n * n_heads * y_step), sizeof *y);
    if (xb && yb && y1b && wb) {
        e->ops->matmul_heads(e->be, &wh0, w_step, n_heads, transposed, &xt, x_step, &yt, y_step, &work);
        for (int h = 0; h < n_heads; h++) {
            dsri_tensor wh = dsri_rows(w, h * w_step, head_rows);
            dsri_tensor xh = dsri_cols(&xt, h * x_step, in), yh = dsri_cols(&y1t, h * y_step, out);
            if (transposed)
                e->ops->matmul_t(e->be, &wh, &xh, &yh);
            else
                e->ops->matmul(e->be, &wh, &xh, &yh);
        }
        if (download(e, &yt, y) && download(e, &y1t, y1)) {
            int far = 0, differ = 0;
            for (int h = 0; h < n_heads; h++)
                for (int64_t t = 0; t < n; t++)
                    for (int64_t o = 0; o < out; o++) {
                        double sum = 0, abs_sum = 0;
                        for (int64_t i = 0; i < in; i++) {
                            int64_t r = h * w_step + (transposed ? i : o), c = transposed ? o : i;
                            double p = (double)wf[r * w->cols + c] * x[t * n_heads * x_step + h * x_step + i];
                            sum += p;
                            abs_sum += fabs(p);
                        }
                        const int64_t at = t * n_heads * y_step + h * y_step + o;
                        far += !close_to(y[at], sum, abs_sum);
                        differ += memcmp(&y[at], &y1[at], sizeof *y) != 0;
                    }
            CHECK(far == 0, "%s matmul_heads (transposed %d): %d outputs off the reference", name, transposed, far);
            CHECK(differ == 0, "%s matmul_heads (transposed %d): %d outputs differ from per-head products", name,
                  transposed, differ);
        }
    }
    free(y);
    free(y1);
    free(x);
    e->ops->buf_free(xb);
    e->ops->buf_free(yb);
    e->ops->buf_free(y1b);
    e->ops->buf_free(wb);
}

/* split: the device binds at most a few rows at a time, so the weights are
 * placed in many row parts (matmul_t needs its weight in one binding: not
 * run then). */
static void test_type(vk_env *e, uint32_t type, uint32_t seed, int split)
{
    const dsri_type_traits *tr = dsri_type_traits_get(type);
    /* 37 output rows (no multiple of any tile); rows of 13 blocks of 32
     * (416: a partial round of 256 columns), 3 super-blocks (768), or 419
     * values for the unblocked types (a partial chunk of 8) */
    const int64_t rows = 37;
    const int64_t cols = tr->block_size == 1 ? 419 : tr->block_size == 32 ? 416 : 768;
    size_t row_bytes;
    uint8_t *w = make_weights(type, rows, cols, &seed, &row_bytes);
    float *wf = dequantized(type, w, rows, cols, row_bytes);
    dsri_buf host;
    dsri_tensor wt;
    if (place(e, type, w, rows, cols, row_bytes, &host, &wt)) {
        if (split)
            CHECK(((const vk_buf *)wt.buf->impl)->n_parts > 1, "%s: the weight was not split into row parts",
                  tr->name);
        test_get_rows(e, type, &wt, wf);
        test_products(e, type, &wt, wf, 0, &seed);
        if (!split)
            test_products(e, type, &wt, wf, 1, &seed);
        test_heads(e, type, &wt, wf, 0, &seed);
        if (!split)
            test_heads(e, type, &wt, wf, 1, &seed);
    }
    dsr1_status st = e->ops->sync(e->be);
    CHECK(st == DSR1_OK, "%s: sync: %s", tr->name, dsr1_last_error());
    printf("%s%s: done\n", tr->name, split ? " (weights in row parts)" : "");
    free(wf);
    free(w);
}

/* Every f16 and bf16 bit pattern (subnormals, infinities, NaNs) through
 * get_rows: the shaders widen them exactly as the CPU does. */
static void test_all_halves(vk_env *e)
{
    const uint32_t types[] = {DSRI_TYPE_F16, DSRI_TYPE_BF16};
    uint16_t *h = malloc(65536 * sizeof *h);
    float *ref = malloc(65536 * sizeof *ref), *y = malloc(65536 * sizeof *y);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (size_t k = 0; k < 2; k++) {
        dsri_buf host;
        dsri_tensor wt, yt;
        dsri_dequantize_row(types[k], h, ref, 65536);
        if (!place(e, types[k], (const uint8_t *)h, 1, 65536, 65536 * 2, &host, &wt))
            continue;
        dsri_buf *yb = f32_tensor(e, 1, 65536, NULL, &yt);
        const int32_t id = 0;
        e->ops->get_rows(e->be, &wt, &id, &yt);
        if (yb && download(e, &yt, y)) {
            int bad = 0;
            for (int i = 0; i < 65536; i++)
                bad += memcmp(&y[i], &ref[i], sizeof *y) != 0;
            CHECK(bad == 0, "%s: %d of the 65536 bit patterns widen differently from the CPU",
                  dsri_type_traits_get(types[k])->name, bad);
        }
        e->ops->buf_free(yb);
    }
    free(h);
    free(ref);
    free(y);
}

/* Grid index slot s (a group of 8 weights; IQ3: of 4) of an IQ block := idx,
 * the other bits kept (the layouts of lib/quant/dequant_iq.c). */
static void set_grid_index(uint32_t type, uint8_t *b, int s, unsigned idx)
{
    switch (type) {
    case DSRI_TYPE_IQ2_XXS: b[2 + 8 * (s / 4) + s % 4] = (uint8_t)idx; break;
    case DSRI_TYPE_IQ2_XS:
        b[2 + 2 * s] = (uint8_t)idx;
        b[3 + 2 * s] = (uint8_t)((b[3 + 2 * s] & 0xFE) | (idx >> 8));
        break;
    case DSRI_TYPE_IQ2_S:
        b[2 + s] = (uint8_t)idx;
        b[66 + s / 4] = (uint8_t)((b[66 + s / 4] & ~(3u << (2 * (s % 4)))) | (idx >> 8) << (2 * (s % 4)));
        break;
    case DSRI_TYPE_IQ3_XXS: b[2 + s] = (uint8_t)idx; break;
    case DSRI_TYPE_IQ3_S:
        b[2 + s] = (uint8_t)idx;
        b[66 + s / 8] = (uint8_t)((b[66 + s / 8] & ~(1u << (s % 8))) | (idx >> 8) << (s % 8));
        break;
    case DSRI_TYPE_IQ1_S: {
        b[2 + s] = (uint8_t)idx;
        unsigned qh = b[34 + 2 * (s / 4)] | (unsigned)b[35 + 2 * (s / 4)] << 8;
        qh = (qh & ~(7u << (3 * (s % 4)))) | (idx >> 8) << (3 * (s % 4));
        b[34 + 2 * (s / 4)] = (uint8_t)qh;
        b[35 + 2 * (s / 4)] = (uint8_t)(qh >> 8);
        break;
    }
    case DSRI_TYPE_IQ1_M: {
        b[s] = (uint8_t)idx;
        uint8_t *qh = &b[32 + 2 * (s / 4) + (s % 4) / 2];
        *qh = (uint8_t)((*qh & ~(7u << (4 * (s % 2)))) | (idx >> 8) << (4 * (s % 2)));
        break;
    }
    }
}

/* The IQ tables the shaders read (the device's table buffer) are the CPU's:
 * for each IQ1-IQ3 type, one row that uses every entry of its grid (random
 * signs, scales and deltas) comes out of get_rows bit-identical to lib/quant's
 * dequantization. */
static void test_iq_tables(vk_env *e)
{
    static const struct {
        uint32_t type;
        unsigned n_idx, slots; /* grid entries; index slots per block */
    } IQ[] = {{DSRI_TYPE_IQ2_XXS, 256, 32}, {DSRI_TYPE_IQ2_XS, 512, 32},   {DSRI_TYPE_IQ2_S, 1024, 32},
              {DSRI_TYPE_IQ3_XXS, 256, 64}, {DSRI_TYPE_IQ3_S, 512, 64},    {DSRI_TYPE_IQ1_S, 2048, 32},
              {DSRI_TYPE_IQ1_M, 2048, 32}};
    uint32_t seed = 0x2545F491u;
    for (size_t k = 0; k < sizeof IQ / sizeof IQ[0]; k++) {
        const dsri_type_traits *tr = dsri_type_traits_get(IQ[k].type);
        const int64_t cols = (int64_t)(IQ[k].n_idx / IQ[k].slots) * 256;
        size_t row_bytes;
        uint8_t *w = make_weights(IQ[k].type, 1, cols, &seed, &row_bytes);
        for (unsigned i = 0; i < IQ[k].n_idx; i++)
            set_grid_index(IQ[k].type, w + (size_t)(i / IQ[k].slots) * tr->type_size, (int)(i % IQ[k].slots), i);
        float *ref = dequantized(IQ[k].type, w, 1, cols, row_bytes), *y = malloc((size_t)cols * sizeof *y);
        dsri_buf host;
        dsri_tensor wt, yt;
        if (place(e, IQ[k].type, w, 1, cols, row_bytes, &host, &wt)) {
            dsri_buf *yb = f32_tensor(e, 1, cols, NULL, &yt);
            const int32_t id = 0;
            e->ops->get_rows(e->be, &wt, &id, &yt);
            if (yb && download(e, &yt, y)) {
                int64_t bad = 0;
                for (int64_t i = 0; i < cols; i++)
                    bad += memcmp(&y[i], &ref[i], sizeof *y) != 0;
                CHECK(bad == 0, "%s: %lld of the %lld values using every grid entry differ from the CPU's", tr->name,
                      (long long)bad, (long long)cols);
                if (bad == 0)
                    printf("%s: all %u grid entries as on the CPU\n", tr->name, IQ[k].n_idx);
            }
            e->ops->buf_free(yb);
        }
        free(ref);
        free(y);
        free(w);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    vk_env e = {&dsri_backend_vulkan, NULL, NULL};
    if (!e.ops->available() || e.ops->device_count() < 1) {
        printf("SKIP: no Vulkan device (no loader, no driver, or no usable device)\n");
        return 77;
    }
    dsr1_status st = e.ops->device_open(0, &e.dev);
    if (st) {
        printf("SKIP: the Vulkan device cannot be opened: %s\n", dsr1_last_error());
        return 77;
    }
    dsri_device_desc desc;
    if (e.ops->device_describe(0, &desc) == DSR1_OK)
        printf("device: %s\n", desc.name);
    dsri_backend_config cfg = {.n_threads = 1, .max_row = 65536, .n_ctx = 16, .n_batch = 32};
    st = e.ops->create(&cfg, e.dev, &e.be);
    CHECK(st == DSR1_OK, "create: %s", dsr1_last_error());
    if (st == DSR1_OK) {
        const uint32_t types[] = {DSRI_TYPE_F32,  DSRI_TYPE_F16,  DSRI_TYPE_BF16, DSRI_TYPE_Q4_0,   DSRI_TYPE_Q4_1,
                                  DSRI_TYPE_Q5_0, DSRI_TYPE_Q5_1, DSRI_TYPE_Q8_0, DSRI_TYPE_Q2_K,   DSRI_TYPE_Q3_K,
                                  DSRI_TYPE_Q4_K, DSRI_TYPE_Q5_K, DSRI_TYPE_Q6_K, DSRI_TYPE_IQ4_NL, DSRI_TYPE_IQ4_XS,
                                  DSRI_TYPE_IQ2_XXS, DSRI_TYPE_IQ2_XS, DSRI_TYPE_IQ2_S, DSRI_TYPE_IQ3_XXS,
                                  DSRI_TYPE_IQ3_S, DSRI_TYPE_IQ1_S, DSRI_TYPE_IQ1_M};
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            test_type(&e, types[i], 0x9E3779B9u + (uint32_t)i, 0);
        test_all_halves(&e);
        test_iq_tables(&e);
        e.ops->destroy(e.be);
    }
    e.ops->device_close(e.dev);

    /* Weights larger than one binding (lavapipe: 128 MiB) or one allocation
     * come in several bindings and row parts: shrink the device's limits so
     * a few rows fill one. */
    if (e.ops->device_open(0, &e.dev) == DSR1_OK) {
        e.dev->max_binding = 8192;
        e.dev->block_size = 6000;
        if (e.ops->create(&cfg, e.dev, &e.be) == DSR1_OK) {
            const uint32_t split_types[] = {DSRI_TYPE_F32, DSRI_TYPE_F16, DSRI_TYPE_Q4_0, DSRI_TYPE_Q4_K,
                                            DSRI_TYPE_IQ2_XS};
            for (size_t i = 0; i < sizeof split_types / sizeof split_types[0]; i++)
                test_type(&e, split_types[i], 0x7F4A7C15u + (uint32_t)i, 1);
            e.ops->destroy(e.be);
        }
        e.ops->device_close(e.dev);
    }
    return check_summary("vulkan_mm");
}
#endif
