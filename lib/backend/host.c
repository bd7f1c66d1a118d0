/*
 * The view-level ops of every host backend (scalar, avx2, avx512, neon).
 *
 * Host memory is one address space, so a tensor view resolves to a pointer
 * (buffer's host address + offset) and each op calls the backend's
 * pointer-level kernel (host_ops.h). Weights are used where they lie (the
 * model's mapping): place() copies nothing. Ops run when they are recorded;
 * sync() has nothing to wait for and host backends never fail once created.
 *
 * What the forward passes used to do between ops (gathers for the experts,
 * per-head slices, the router) lives here once, in terms of the kernels, so
 * every host backend shares it.
 */
#include <string.h>

#include "backend/host_ops.h"
#include "core/alloc.h"
#include "core/error.h"
#include "quant/quant.h"

struct dsri_device {
    int unused; /* host memory needs no state; a device is still an object of its own */
};

struct dsri_backend {
    const dsri_host_ops *h;
    dsri_host *inner;
    dsri_backend_config cfg;
    float *router_work; /* dsri_router_work_floats() of the largest router */
    int64_t router_cap;
    float *moe_slots;   /* MOE_SLOTS rows of x, gate and up (max_row each), their weights and row ids */
};

/* Rows (a row for each expert that chose it) moe_ffn's products take in one
 * region: a decoded token's experts, all of them (R1 uses 8). */
#define MOE_SLOTS 16

static const dsri_host_ops *host_of(const dsri_backend *be) { return be->h; }

#define F32P(t) ((float *)dsri_host_ptr(t))

/* the observer, when a tool set one (backend.h): a load and a branch per product otherwise */
static void observe(const dsri_backend *be, const dsri_matrix *w, const float *x, int n_rows)
{
    const dsri_matmul_observer *o = be->cfg.observer;
    if (o && o->fn)
        o->fn(o->ud, w->data, w->n_in, x, n_rows);
}

static int dense(const dsri_tensor *t)
{
    return t->rows <= 1 || t->stride == (uint64_t)(t->cols * dsri_elem_bytes(t->type));
}

static dsri_matrix matrix_of(const dsri_tensor *w)
{
    dsri_matrix m = {dsri_host_ptr(w), w->type, w->cols, w->rows, w->stride};
    return m;
}

/* ---- devices and memory ---- */

int dsri_hb_device_count(void) { return 1; }

dsr1_status dsri_hb_device_describe(int index, dsri_device_desc *desc)
{
    if (index != 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "host backend: there is no device %d", index);
    memset(desc, 0, sizeof *desc);
    strcpy(desc->name, "CPU");
    desc->is_cpu = 1;
    return DSR1_OK;
}

dsr1_status dsri_hb_device_open(int index, dsri_device **out)
{
    if (index != 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "host backend: there is no device %d", index);
    *out = dsri_calloc(1, sizeof **out);
    return *out ? DSR1_OK : dsri_error(DSR1_ERR_OUT_OF_MEMORY, "host backend: out of memory");
}

void dsri_hb_device_close(dsri_device *dev) { dsri_free(dev); }

uint64_t dsri_hb_device_free_memory(dsri_device *dev)
{
    (void)dev;
    return 0;
}

dsr1_status dsri_hb_buf_new(dsri_device *dev, uint64_t bytes, dsri_buf **out)
{
    *out = NULL;
    /* the buffer's header and its bytes in one allocation, the bytes
     * 64-byte aligned for the SIMD kernels */
    const uint64_t head = 64;
    if (bytes > SIZE_MAX - head - 64)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "host backend: %llu bytes do not fit in memory",
                          (unsigned long long)bytes);
    uint8_t *raw = dsri_calloc(1, (size_t)(head + bytes + 64));
    if (!raw)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "host backend: cannot allocate %.1f MiB",
                          (double)bytes / 1048576.0);
    dsri_buf *b = (dsri_buf *)(void *)raw;
    uintptr_t data = ((uintptr_t)(raw + sizeof *b) + 63) & ~(uintptr_t)63;
    b->dev = dev;
    b->host = (void *)data;
    b->size = bytes;
    b->impl = raw;
    *out = b;
    return DSR1_OK;
}

void dsri_hb_buf_free(dsri_buf *buf)
{
    if (buf)
        dsri_free(buf->impl);
}

dsr1_status dsri_hb_place(dsri_device *dev, const dsri_tensor *src, dsri_tensor *out)
{
    (void)dev;
    *out = *src;
    return DSR1_OK;
}

/* ---- instances ---- */

dsr1_status dsri_hb_create(const dsri_host_ops *h, const dsri_backend_config *cfg, dsri_device *dev,
                           dsri_backend **out)
{
    (void)dev;
    *out = NULL;
    dsri_backend *be = dsri_calloc(1, sizeof *be);
    if (!be)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s backend: out of memory", h->name);
    be->cfg = *cfg;
    be->h = h;
    if (cfg->max_experts > 0) {
        /* the most any router of that many experts needs (one group per expert at most) */
        dsri_router_config rc = {(int)cfg->max_experts, 1, (int)cfg->max_experts, 1, 1, 0, 1.0f};
        be->router_cap = dsri_router_work_floats(&rc);
        be->router_work = dsri_calloc((size_t)be->router_cap, sizeof(float));
        be->moe_slots = dsri_calloc((size_t)(3 * cfg->max_row + 2) * MOE_SLOTS, sizeof(float));
    }
    dsr1_status st = cfg->max_experts > 0 && (!be->router_work || !be->moe_slots)
                         ? dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s backend: out of memory", h->name)
                         : h->create(cfg, &be->inner);
    if (st) {
        dsri_free(be->router_work);
        dsri_free(be->moe_slots);
        dsri_free(be);
        return st;
    }
    *out = be;
    return DSR1_OK;
}

void dsri_hb_destroy(dsri_backend *be)
{
    if (!be)
        return;
    if (be->inner)
        be->h->destroy(be->inner);
    dsri_free(be->router_work);
    dsri_free(be->moe_slots);
    dsri_free(be);
}

dsr1_status dsri_hb_sync(dsri_backend *be)
{
    (void)be;
    return DSR1_OK;
}

dsr1_status dsri_hb_upload(dsri_backend *be, const dsri_tensor *t, const void *src)
{
    (void)be;
    uint64_t rb = dsri_tensor_row_bytes(t);
    for (int64_t r = 0; r < t->rows; r++)
        memcpy((uint8_t *)dsri_host_ptr(t) + r * t->stride, (const uint8_t *)src + r * rb, rb);
    return DSR1_OK;
}

dsr1_status dsri_hb_download(dsri_backend *be, const dsri_tensor *t, void *dst)
{
    (void)be;
    uint64_t rb = dsri_tensor_row_bytes(t);
    for (int64_t r = 0; r < t->rows; r++)
        memcpy((uint8_t *)dst + r * rb, (const uint8_t *)dsri_host_ptr(t) + r * t->stride, rb);
    return DSR1_OK;
}

/* ---- ops ---- */

void dsri_hb_get_rows(dsri_backend *be, const dsri_tensor *w, const int32_t *ids, const dsri_tensor *y)
{
    dsri_matrix m = matrix_of(w);
    for (int64_t t = 0; t < y->rows; t++)
        host_of(be)->get_row(be->inner, &m, ids[t], (float *)((uint8_t *)dsri_host_ptr(y) + t * y->stride));
}

void dsri_hb_matmul(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y)
{
    dsri_matrix m = matrix_of(w);
    observe(be, &m, F32P(x), (int)x->rows);
    host_of(be)->matmul(be->inner, &m, F32P(x), F32P(y), (int)x->rows);
}

/* Items as one matmul_multi where the backend has it, else one by one. */
static void run_items(dsri_backend *be, const dsri_matmul_item *items, int n)
{
    for (int i = 0; i < n; i++)
        observe(be, &items[i].w, items[i].x, items[i].n_rows);
    if (host_of(be)->matmul_multi) {
        host_of(be)->matmul_multi(be->inner, items, n);
        return;
    }
    for (int i = 0; i < n; i++)
        host_of(be)->matmul(be->inner, &items[i].w, items[i].x, items[i].y, items[i].n_rows);
}

/* Items gathered per call of run_items (a small stack array). */
#define ITEM_BATCH 32

void dsri_hb_matmul_n(dsri_backend *be, int n, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y)
{
    dsri_matmul_item items[ITEM_BATCH];
    for (int i0 = 0; i0 < n; i0 += ITEM_BATCH) {
        int m = n - i0 < ITEM_BATCH ? n - i0 : ITEM_BATCH;
        for (int i = 0; i < m; i++) {
            dsri_matmul_item it = {matrix_of(&w[i0 + i]), F32P(x), F32P(&y[i0 + i]), (int)x->rows};
            items[i] = it;
        }
        run_items(be, items, m);
    }
}

void dsri_hb_matmul_t(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y)
{
    dsri_matrix m = matrix_of(w);
    host_of(be)->matmul_t(be->inner, &m, F32P(x), F32P(y), (int)x->rows);
}

/* n rows of width floats from src (stride src_stride bytes) to dst (dense) or back */
static void gather_cols(float *dst, const uint8_t *src, uint64_t src_stride, int64_t width, int64_t n)
{
    for (int64_t t = 0; t < n; t++)
        memcpy(dst + t * width, src + t * src_stride, (size_t)width * sizeof(float));
}

static void scatter_cols(uint8_t *dst, uint64_t dst_stride, const float *src, int64_t width, int64_t n)
{
    for (int64_t t = 0; t < n; t++)
        memcpy(dst + t * dst_stride, src + t * width, (size_t)width * sizeof(float));
}

void dsri_hb_matmul_heads(dsri_backend *be, const dsri_tensor *w, int64_t w_step, int n_heads, int transposed,
                          const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step,
                          const dsri_tensor *work)
{
    const int64_t n = x->rows;
    const int64_t in = transposed ? w->rows : w->cols, out = transposed ? w->cols : w->rows;
    float *tin = F32P(work), *tout = tin + n * (w->rows > w->cols ? w->rows : w->cols);
    if (n == 1 && !transposed) {
        /* decode: every head's product in one call (one parallel region) */
        dsri_matmul_item items[ITEM_BATCH];
        for (int h0 = 0; h0 < n_heads; h0 += ITEM_BATCH) {
            int m = n_heads - h0 < ITEM_BATCH ? n_heads - h0 : ITEM_BATCH;
            for (int i = 0; i < m; i++) {
                int h = h0 + i;
                dsri_tensor wh = dsri_rows(w, (int64_t)h * w_step, w->rows);
                dsri_matmul_item it = {matrix_of(&wh), F32P(x) + h * x_step, F32P(y) + h * y_step, 1};
                items[i] = it;
            }
            run_items(be, items, m);
        }
        return;
    }
    for (int h = 0; h < n_heads; h++) {
        dsri_tensor wh = dsri_rows(w, (int64_t)h * w_step, w->rows);
        dsri_matrix m = matrix_of(&wh);
        const uint8_t *xs = (const uint8_t *)dsri_host_ptr(x) + (uint64_t)(h * x_step) * sizeof(float);
        uint8_t *ys = (uint8_t *)dsri_host_ptr(y) + (uint64_t)(h * y_step) * sizeof(float);
        /* one row is contiguous already: no copies (decode) */
        const float *xin = (const float *)(const void *)xs;
        float *yout = n == 1 ? (float *)(void *)ys : tout;
        if (n > 1) {
            gather_cols(tin, xs, x->stride, in, n);
            xin = tin;
        }
        if (transposed) {
            host_of(be)->matmul_t(be->inner, &m, xin, yout, (int)n);
        } else {
            observe(be, &m, xin, (int)n);
            host_of(be)->matmul(be->inner, &m, xin, yout, (int)n);
        }
        if (n > 1)
            scatter_cols(ys, y->stride, tout, out, n);
    }
}

void dsri_hb_rmsnorm(dsri_backend *be, const dsri_tensor *x, const dsri_tensor *w, const dsri_tensor *y, float eps)
{
    if (dense(x) && dense(y)) {
        host_of(be)->rmsnorm(be->inner, F32P(x), F32P(w), F32P(y), (int)x->cols, (int)x->rows, eps);
        return;
    }
    for (int64_t t = 0; t < x->rows; t++)
        host_of(be)->rmsnorm(be->inner, (const float *)((const uint8_t *)dsri_host_ptr(x) + t * x->stride), F32P(w),
                             (float *)((uint8_t *)dsri_host_ptr(y) + t * y->stride), (int)x->cols, 1, eps);
}

void dsri_hb_add(dsri_backend *be, const dsri_tensor *y, const dsri_tensor *x)
{
    if (x->rows == y->rows && dense(x) && dense(y)) {
        host_of(be)->add(be->inner, F32P(y), F32P(x), y->rows * y->cols);
        return;
    }
    for (int64_t t = 0; t < y->rows; t++) {
        const float *xr = (const float *)((const uint8_t *)dsri_host_ptr(x) + (x->rows == 1 ? 0 : t * x->stride));
        host_of(be)->add(be->inner, (float *)((uint8_t *)dsri_host_ptr(y) + t * y->stride), xr, y->cols);
    }
}

void dsri_hb_silu_mul(dsri_backend *be, const dsri_tensor *g, const dsri_tensor *u)
{
    host_of(be)->silu_mul(be->inner, F32P(g), F32P(u), g->rows * g->cols);
}

void dsri_hb_rope(dsri_backend *be, const dsri_tensor *x, int n_heads, int head_dim, int rot_dim, const int32_t *pos,
                  const dsri_tensor *freq, float mscale, int neox)
{
    host_of(be)->rope(be->inner, F32P(x), (int)x->rows, (int64_t)(x->stride / sizeof(float)), n_heads, head_dim,
                      rot_dim, pos, F32P(freq), mscale, neox);
}

static dsr1_kv_type kv_of(uint32_t type)
{
    return type == DSRI_TYPE_F16 ? DSR1_KV_F16 : DSR1_KV_F32;
}

void dsri_hb_attention(dsri_backend *be, const dsri_tensor *q, const dsri_tensor *k, const dsri_tensor *v,
                       const dsri_tensor *out, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv,
                       float scale)
{
    const int64_t eb = dsri_elem_bytes(k->type);
    host_of(be)->attention(be->inner, F32P(q), (int64_t)(q->stride / sizeof(float)), dsri_host_ptr(k),
                           (int64_t)k->stride / eb, dsri_host_ptr(v), (int64_t)v->stride / eb, kv_of(k->type),
                           F32P(out), (int)q->rows, pos, n_head, n_head_kv, dk, dv, scale);
}

void dsri_hb_copy(dsri_backend *be, const dsri_tensor *src, const dsri_tensor *dst)
{
    const int64_t se = dsri_elem_bytes(src->type), de = dsri_elem_bytes(dst->type);
    if (src->type == dst->type) {
        for (int64_t t = 0; t < src->rows; t++)
            memmove((uint8_t *)dsri_host_ptr(dst) + t * dst->stride,
                    (const uint8_t *)dsri_host_ptr(src) + t * src->stride, (size_t)(src->cols * se));
    } else if (src->type == DSRI_TYPE_F32) { /* f32 -> f16 */
        host_of(be)->kv_store(be->inner, kv_of(dst->type), dsri_host_ptr(dst), (int64_t)dst->stride / de, F32P(src),
                              (int64_t)(src->stride / sizeof(float)), src->cols, src->rows);
    } else { /* f16 -> f32 */
        host_of(be)->kv_load(be->inner, kv_of(src->type), F32P(dst), (int64_t)(dst->stride / sizeof(float)),
                             dsri_host_ptr(src), (int64_t)src->stride / se, src->cols, src->rows);
    }
}

void dsri_hb_fill(dsri_backend *be, const dsri_tensor *y, float value)
{
    (void)be;
    for (int64_t t = 0; t < y->rows; t++) {
        float *r = (float *)((uint8_t *)dsri_host_ptr(y) + t * y->stride);
        for (int64_t i = 0; i < y->cols; i++)
            r[i] = value;
    }
}

void dsri_hb_moe_route(dsri_backend *be, const dsri_router_config *cfg, const dsri_tensor *logits,
                       const dsri_tensor *bias, const dsri_tensor *ids, const dsri_tensor *weights)
{
    if (dsri_router_work_floats(cfg) > be->router_cap)
        return; /* the context was not created for this router (a caller bug; unreachable) */
    for (int64_t t = 0; t < logits->rows; t++)
        dsri_router_route(cfg, (const float *)((const uint8_t *)dsri_host_ptr(logits) + t * logits->stride),
                          bias->buf ? F32P(bias) : NULL, be->router_work,
                          (int32_t *)(void *)((uint8_t *)dsri_host_ptr(ids) + t * ids->stride),
                          (float *)(void *)((uint8_t *)dsri_host_ptr(weights) + t * weights->stride));
}

/* Where moe_ffn puts the rows of some experts: x (d wide), gate and up
 * outputs (ff wide), each row's routing weight and batch row. */
typedef struct moe_rows {
    float *x, *g, *u, *weight;
    int32_t *row;
} moe_rows;

/* Copy the rows that chose expert e to r from row `at` on; their count. */
static int gather_expert(const dsri_tensor *x, const dsri_tensor *ids, const dsri_tensor *weights, int64_t e,
                         const moe_rows *r, int at)
{
    const int64_t d = x->cols;
    int cnt = 0;
    for (int64_t t = 0; t < x->rows; t++) {
        const int32_t *id = (const int32_t *)(const void *)((const uint8_t *)dsri_host_ptr(ids) + t * ids->stride);
        const float *wt = (const float *)(const void *)((const uint8_t *)dsri_host_ptr(weights) + t * weights->stride);
        for (int64_t k = 0; k < ids->cols; k++)
            if (id[k] == e) {
                if (r) {
                    r->row[at + cnt] = (int32_t)t;
                    r->weight[at + cnt] = wt[k];
                    memcpy(r->x + (at + cnt) * d, (const uint8_t *)dsri_host_ptr(x) + t * x->stride,
                           (size_t)d * sizeof(float));
                }
                cnt++;
                break; /* the router never repeats an expert in a row */
            }
    }
    return cnt;
}

/* The products of n_exp experts (ids e[], cnt[] rows each, consecutive in
 * r from row 0): gate and up of all in one run_items, SiLU-multiply, down
 * of all in another (into r->x, whose inputs are used by then), then each
 * row's weighted output added to y in the experts' order. */
static void expert_products(dsri_backend *be, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                            int64_t ff, const dsri_tensor *y, const moe_rows *r, const int64_t *e, const int *cnt,
                            int n_exp)
{
    const dsri_host_ops *h = host_of(be);
    const int64_t d = y->cols;
    dsri_matmul_item items[2 * MOE_SLOTS] = {0}; /* all written before use (-Wmaybe-uninitialized) */
    int total = 0;
    for (int i = 0; i < n_exp; i++) {
        dsri_tensor gt = dsri_rows(gate, e[i] * ff, ff), ut = dsri_rows(up, e[i] * ff, ff);
        dsri_matmul_item gi = {matrix_of(&gt), r->x + total * d, r->g + total * ff, cnt[i]};
        dsri_matmul_item ui = {matrix_of(&ut), r->x + total * d, r->u + total * ff, cnt[i]};
        items[2 * i] = gi;
        items[2 * i + 1] = ui;
        total += cnt[i];
    }
    run_items(be, items, 2 * n_exp);
    h->silu_mul(be->inner, r->g, r->u, (int64_t)total * ff);
    total = 0;
    for (int i = 0; i < n_exp; i++) {
        dsri_tensor dt = dsri_rows(down, e[i] * d, d);
        dsri_matmul_item di = {matrix_of(&dt), r->g + total * ff, r->x + total * d, cnt[i]};
        items[i] = di;
        total += cnt[i];
    }
    run_items(be, items, n_exp);
    for (int j = 0; j < total; j++)
        h->add_scaled(be->inner, (float *)((uint8_t *)dsri_host_ptr(y) + r->row[j] * y->stride), r->x + j * d,
                      r->weight[j], d);
}

void dsri_hb_moe_ffn(dsri_backend *be, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                     int64_t ff, const dsri_tensor *x, const dsri_tensor *ids, const dsri_tensor *weights,
                     const dsri_tensor *y, const dsri_tensor *work)
{
    const int64_t n = x->rows, d = x->cols;
    const int64_t n_expert = gate->rows / ff;
    /* an expert chosen by many rows (prefill) runs alone on the caller's work */
    float *wx = F32P(work), *wg = wx + n * d, *wu = wg + n * ff, *ww = wu + n * ff;
    const moe_rows alone = {wx, wg, wu, ww, (int32_t *)(void *)(ww + n)};
    /* experts of few rows together in the instance's slots, in expert order */
    const int64_t mr = be->cfg.max_row;
    float *sx = be->moe_slots, *sg = sx + MOE_SLOTS * mr, *su = sg + MOE_SLOTS * mr, *sw = su + MOE_SLOTS * mr;
    const moe_rows slots = {sx, sg, su, sw, (int32_t *)(void *)(sw + MOE_SLOTS)};
    const int use_slots = sx && d <= mr && ff <= mr;
    int64_t grp_e[MOE_SLOTS];
    int grp_cnt[MOE_SLOTS], n_grp = 0, grp_rows = 0;
    dsri_hb_fill(be, y, 0.0f);
    for (int64_t e = 0; e < n_expert; e++) {
        int cnt = gather_expert(x, ids, weights, e, NULL, 0);
        if (cnt == 0)
            continue;
        if ((!use_slots || cnt > MOE_SLOTS - grp_rows) && n_grp > 0) {
            /* the group first: each row's sum runs in increasing expert id */
            expert_products(be, gate, up, down, ff, y, &slots, grp_e, grp_cnt, n_grp);
            n_grp = grp_rows = 0;
        }
        if (use_slots && cnt <= MOE_SLOTS) {
            gather_expert(x, ids, weights, e, &slots, grp_rows);
            grp_e[n_grp] = e;
            grp_cnt[n_grp++] = cnt;
            grp_rows += cnt;
        } else {
            gather_expert(x, ids, weights, e, &alone, 0);
            expert_products(be, gate, up, down, ff, y, &alone, &e, &cnt, 1);
        }
    }
    if (n_grp > 0)
        expert_products(be, gate, up, down, ff, y, &slots, grp_e, grp_cnt, n_grp);
}
