/*
 * Collecting an importance matrix (see imatrix_collect.h): the observer
 * finds the weight a product's matrix address lies in (a sorted table of
 * the file's blk.* matrices, which host runs multiply where they lie in the
 * mapping), the expert from the offset, and adds the input rows' squares.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/context.h"
#include "model/imatrix_collect.h"
#include "model/model.h"

/* A weight the forward pass may multiply with: where its bytes lie. */
typedef struct watched {
    const uint8_t *start, *end;
    char *name;
    int64_t ne0;        /* columns: the length of an input row */
    uint64_t mat_bytes; /* bytes of one matrix (an expert of a 3-D tensor) */
    int64_t n_mat;
} watched;

struct dsri_imatrix_collector {
    dsr1_context *ctx;
    watched *w;
    size_t n;
    dsri_imatrix *m;
    dsr1_status error; /* the first failure, kept for after the evaluation */
};

static int watched_cmp(const void *a, const void *b)
{
    const uint8_t *x = ((const watched *)a)->start, *y = ((const watched *)b)->start;
    return x < y ? -1 : x > y;
}

/* The observer: the weight that holds w, its matrix, the squares of x. */
static void observe(void *ud, const void *w, int64_t n_in, const float *x, int64_t n_rows)
{
    dsri_imatrix_collector *c = ud;
    const uint8_t *p = w;
    size_t lo = 0, hi = c->n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (c->w[mid].start <= p)
            lo = mid;
        else
            hi = mid;
    }
    if (c->n == 0 || p < c->w[lo].start || p >= c->w[lo].end || c->w[lo].ne0 != n_in || c->error)
        return; /* not a layer's weight (the output head), or not along its rows */
    const watched *t = &c->w[lo];
    const int64_t mat = (int64_t)((uint64_t)(p - t->start) / t->mat_bytes);
    c->error = dsri_imatrix_add(c->m, t->name, t->ne0, t->n_mat, mat, x, n_rows);
}

static void collector_free(dsri_imatrix_collector *c)
{
    for (size_t i = 0; i < c->n; i++) dsri_free(c->w[i].name);
    dsri_free(c->w);
    dsri_free(c);
}

dsr1_status dsri_imatrix_collect_start(dsr1_context *ctx, dsri_imatrix *m, dsri_imatrix_collector **out)
{
    *out = NULL;
    if (ctx->n_runs > 1 || !ctx->runs[0].ops->host_memory)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "imatrix: the context must run every layer on the CPU");
    const dsri_gguf *g = ctx->model->gguf;
    const uint64_t n_t = dsri_gguf_tensor_count(g);
    dsri_imatrix_collector *c = dsri_calloc(1, sizeof *c);
    if (!c || !(c->w = dsri_calloc(n_t ? (size_t)n_t : 1, sizeof *c->w))) {
        dsri_free(c);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix: out of memory");
    }
    c->ctx = ctx;
    c->m = m;
    /* the layers' matrices (llama-imatrix collects blk.* only) */
    for (uint64_t i = 0; i < n_t; i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(g, i);
        const size_t len = (size_t)t->name.len;
        if (len < 11 || memcmp(t->name.ptr, "blk.", 4) != 0 || memcmp(t->name.ptr + len - 7, ".weight", 7) != 0 ||
            t->ne[1] < 2 || t->n_bytes == 0)
            continue;
        watched *w = &c->w[c->n];
        if (!(w->name = dsri_strndup(t->name.ptr, len))) {
            collector_free(c);
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix: out of memory");
        }
        w->start = t->data;
        w->end = t->data + t->n_bytes;
        w->ne0 = t->ne[0];
        w->n_mat = t->ne[2] * t->ne[3];
        w->mat_bytes = t->n_bytes / (uint64_t)w->n_mat;
        c->n++;
    }
    qsort(c->w, c->n, sizeof *c->w, watched_cmp);
    dsri_ctx_observe_matmuls(ctx, observe, c);
    *out = c;
    return DSR1_OK;
}

dsr1_status dsri_imatrix_collect_status(const dsri_imatrix_collector *c) { return c->error; }

void dsri_imatrix_collect_stop(dsri_imatrix_collector *c)
{
    if (!c)
        return;
    dsri_ctx_observe_matmuls(c->ctx, NULL, NULL);
    collector_free(c);
}

int dsri_imatrix_split_mla(const dsr1_model *model)
{
    const dsri_gguf *g = model->gguf;
    const size_t k = strlen("attn_k_b.weight");
    for (uint64_t i = 0; i < dsri_gguf_tensor_count(g); i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(g, i);
        const size_t len = (size_t)t->name.len;
        if (len >= k && memcmp(t->name.ptr + len - k, "attn_k_b.weight", k) == 0)
            return 1;
    }
    return 0;
}
