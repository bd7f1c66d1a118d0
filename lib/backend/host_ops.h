/*
 * Host backends' kernels (internal): the pointer-level ops of the backends
 * that compute in host memory (scalar, avx2, avx512, neon). lib/backend/host.c
 * turns one of these tables into a dsri_backend_ops (backend.h) whose ops take
 * tensor views: it resolves the views to host pointers and calls these, so a
 * host backend only writes what differs (its arithmetic). The scalar backend
 * is the portable reference every other backend is tested against.
 *
 * Activations are row-major f32: a batch of n rows of width d is d*n floats,
 * row t at x + t*d.
 *
 * Contract for every backend: each output row depends only on its own input
 * row (and the cache), never on the other rows of the batch or on the thread
 * count, bit for bit. Speculative decoding relies on it (a token verified in
 * a batch of two must see exactly the logits it would see alone); test_mtp
 * and test_backend check it.
 */
#ifndef DSRI_HOST_OPS_H
#define DSRI_HOST_OPS_H

#include <stdint.h>

#include "backend/backend.h"
#include "dsr1.h"

/* A weight matrix as stored in the model file: rows of n_in elements of a
 * ggml type, n_out rows, row_bytes apart (GGUF ne[0] = n_in, ne[1] = n_out). */
typedef struct dsri_matrix {
    const void *data;
    uint32_t type;
    int64_t n_in;
    int64_t n_out;
    uint64_t row_bytes;
} dsri_matrix;

/* One product of matmul_multi: y = W x for n_rows rows, as matmul. */
typedef struct dsri_matmul_item {
    dsri_matrix w;
    const float *x;
    float *y;
    int n_rows;
} dsri_matmul_item;

typedef struct dsri_host dsri_host; /* a host backend instance owned by one context */

/* KV cache rows hold DSR1_KV_F32 floats or DSR1_KV_F16 IEEE halves
 * (uint16_t bit patterns, rounded to nearest even when stored); strides and
 * widths of cache rows count elements, not bytes. */
static inline int64_t dsri_kv_elem_bytes(dsr1_kv_type type)
{
    return type == DSR1_KV_F16 ? 2 : 4;
}

typedef struct dsri_host_ops {
    const char *name;
    /* 1 when the machine can run it */
    int (*available)(void);
    dsr1_status (*create)(const dsri_backend_config *cfg, dsri_host **out);
    void (*destroy)(dsri_host *be);

    /* y[t][o] = sum_i W[o][i] * x[t][i] for t < n_rows, o < W.n_out */
    void (*matmul)(dsri_host *be, const dsri_matrix *w, const float *x, float *y, int n_rows);
    /* matmul of each item, bit for bit as n_items matmul calls, the
     * items' outputs disjoint from every input; a backend may run them in
     * one parallel region (one fork-join per decode step's query, key and
     * value instead of three). NULL: host.c calls matmul per item. */
    void (*matmul_multi)(dsri_host *be, const dsri_matmul_item *items, int n_items);
    /* out = W row `row`, dequantized (embedding lookup) */
    void (*get_row)(dsri_host *be, const dsri_matrix *w, int64_t row, float *out);
    /* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, for n_rows rows of width d (in place allowed) */
    void (*rmsnorm)(dsri_host *be, const float *x, const float *weight, float *y, int d, int n_rows,
                    float eps);
    /* y += x elementwise over n values */
    void (*add)(dsri_host *be, float *y, const float *x, int64_t n);
    /* g[i] = silu(g[i]) * u[i] over n values */
    void (*silu_mul)(dsri_host *be, float *g, const float *u, int64_t n);
    /* Rotate pairs of each of n_heads head vectors (head_dim apart, rot_dim
     * leading dims rotated) of n_rows rows (row stride `stride` floats) by
     * angle pos[t] * freq[i] for pair i; cos/sin scaled by mscale. Pairs are
     * (2i, 2i+1) or, with neox, (i, i + rot_dim/2). */
    void (*rope)(dsri_host *be, float *x, int n_rows, int64_t stride, int n_heads, int head_dim,
                 int rot_dim, const int32_t *pos, const float *freq, float mscale, int neox);
    /* Causal attention for one batch. q: n_rows rows of n_head*dk (row stride
     * q_stride); keys/values of positions 0..pos[t] in k_cache/v_cache,
     * elements of type kv (row p at k_cache + p*k_stride elements, head h at
     * + h*dk / + h*dv); GQA maps query head h to kv head h / (n_head /
     * n_head_kv). out: n_rows rows of n_head*dv. f16 keys and values are
     * widened exactly; the arithmetic is f32 either way. */
    void (*attention)(dsri_host *be, const float *q, int64_t q_stride, const void *k_cache,
                      int64_t k_stride, const void *v_cache, int64_t v_stride, dsr1_kv_type kv,
                      float *out, int n_rows, const int32_t *pos, int n_head, int n_head_kv, int dk,
                      int dv, float scale);
    /* Write n_rows rows of width f32 values (row t at src + t*src_stride)
     * into cache rows of type kv (row t at dst + t*dst_stride elements): a
     * copy for f32, round to nearest even for f16 (the same bits on every
     * backend). */
    void (*kv_store)(dsri_host *be, dsr1_kv_type kv, void *dst, int64_t dst_stride, const float *src,
                     int64_t src_stride, int64_t width, int64_t n_rows);
    /* The reverse, exact: n_rows cache rows of width elements to f32. */
    void (*kv_load)(dsri_host *be, dsr1_kv_type kv, float *dst, int64_t dst_stride, const void *src,
                    int64_t src_stride, int64_t width, int64_t n_rows);
    /* y[t][i] = sum_o W[o][i] * x[t][o] for t < n_rows, i < W.n_in: the
     * product with the transposed matrix (x rows are W.n_out wide, y rows
     * W.n_in wide); MLA uses it to expand keys from the latent with the
     * attn_k_b weights stored for the absorbed form. */
    void (*matmul_t)(dsri_host *be, const dsri_matrix *w, const float *x, float *y, int n_rows);
    /* y += a * x elementwise over n values (weighting expert outputs) */
    void (*add_scaled)(dsri_host *be, float *y, const float *x, float a, int64_t n);
} dsri_host_ops;

/* lib/backend/host.c: the view-level ops of every host backend, over the
 * dsri_host_ops table in the backend's dsri_backend_ops.impl. */
int dsri_hb_device_count(void);
dsr1_status dsri_hb_device_describe(int index, dsri_device_desc *desc);
dsr1_status dsri_hb_device_open(int index, dsri_device **out);
void dsri_hb_device_close(dsri_device *dev);
uint64_t dsri_hb_device_free_memory(dsri_device *dev);
dsr1_status dsri_hb_buf_new(dsri_device *dev, uint64_t bytes, dsri_buf **out);
void dsri_hb_buf_free(dsri_buf *buf);
dsr1_status dsri_hb_place(dsri_device *dev, const dsri_tensor *src, dsri_tensor *out);
dsr1_status dsri_hb_create(const dsri_host_ops *h, const dsri_backend_config *cfg, dsri_device *dev,
                           dsri_backend **out);
void dsri_hb_destroy(dsri_backend *be);
dsr1_status dsri_hb_sync(dsri_backend *be);
dsr1_status dsri_hb_upload(dsri_backend *be, const dsri_tensor *t, const void *src);
dsr1_status dsri_hb_download(dsri_backend *be, const dsri_tensor *t, void *dst);
void dsri_hb_get_rows(dsri_backend *be, const dsri_tensor *w, const int32_t *ids, const dsri_tensor *y);
void dsri_hb_matmul(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
void dsri_hb_matmul_n(dsri_backend *be, int n, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
void dsri_hb_matmul_t(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
void dsri_hb_matmul_heads(dsri_backend *be, const dsri_tensor *w, int64_t w_step, int n_heads, int transposed,
                          const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step,
                          const dsri_tensor *work);
void dsri_hb_rmsnorm(dsri_backend *be, const dsri_tensor *x, const dsri_tensor *w, const dsri_tensor *y, float eps);
void dsri_hb_add(dsri_backend *be, const dsri_tensor *y, const dsri_tensor *x);
void dsri_hb_silu_mul(dsri_backend *be, const dsri_tensor *g, const dsri_tensor *u);
void dsri_hb_rope(dsri_backend *be, const dsri_tensor *x, int n_heads, int head_dim, int rot_dim, const int32_t *pos,
                  const dsri_tensor *freq, float mscale, int neox);
void dsri_hb_attention(dsri_backend *be, const dsri_tensor *q, const dsri_tensor *k, const dsri_tensor *v,
                       const dsri_tensor *out, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv,
                       float scale);
void dsri_hb_copy(dsri_backend *be, const dsri_tensor *src, const dsri_tensor *dst);
void dsri_hb_fill(dsri_backend *be, const dsri_tensor *y, float value);
void dsri_hb_moe_route(dsri_backend *be, const dsri_router_config *cfg, const dsri_tensor *logits,
                       const dsri_tensor *bias, const dsri_tensor *ids, const dsri_tensor *weights);
void dsri_hb_moe_ffn(dsri_backend *be, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                     int64_t ff, const dsri_tensor *x, const dsri_tensor *ids, const dsri_tensor *weights,
                     const dsri_tensor *y, const dsri_tensor *work);

/* Define `const dsri_backend_ops obj`: the host backend named name_str over
 * the dsri_host_ops `host` (its available() check: avail). */
#define DSRI_HOST_BACKEND_DEFINE(obj, name_str, host, avail) \
    static dsr1_status obj##_create(const dsri_backend_config *cfg, dsri_device *dev, dsri_backend **out) \
    { \
        return dsri_hb_create(&(host), cfg, dev, out); \
    } \
    const dsri_backend_ops obj = { \
        .name = name_str, .host_memory = 1, .impl = &(host), .available = avail, \
        .device_count = dsri_hb_device_count, .device_describe = dsri_hb_device_describe, \
        .device_open = dsri_hb_device_open, .device_close = dsri_hb_device_close, \
        .device_free_memory = dsri_hb_device_free_memory, .buf_new = dsri_hb_buf_new, \
        .buf_free = dsri_hb_buf_free, .place = dsri_hb_place, .create = obj##_create, \
        .destroy = dsri_hb_destroy, .sync = dsri_hb_sync, .upload = dsri_hb_upload, \
        .download = dsri_hb_download, .get_rows = dsri_hb_get_rows, \
        .matmul = dsri_hb_matmul, .matmul_n = dsri_hb_matmul_n, .matmul_t = dsri_hb_matmul_t, \
        .matmul_heads = dsri_hb_matmul_heads, \
        .rmsnorm = dsri_hb_rmsnorm, .add = dsri_hb_add, .silu_mul = dsri_hb_silu_mul, .rope = dsri_hb_rope, \
        .attention = dsri_hb_attention, .copy = dsri_hb_copy, .fill = dsri_hb_fill, \
        .moe_route = dsri_hb_moe_route, .moe_ffn = dsri_hb_moe_ffn, \
    }

#endif
