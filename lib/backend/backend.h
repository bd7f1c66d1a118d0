/*
 * Compute backends (internal): memory owned by a backend, and the ops the
 * forward passes record on it.
 *
 * A backend (scalar, avx2, avx512, neon, vulkan) is one dsri_backend_ops
 * table. It works at three levels:
 *
 *   device    one memory space (the host, or a GPU), opened once per model:
 *             the model's weights are placed on it once (place) and shared by
 *             every context of that model.
 *   buffer    memory owned by a device (buf_new / buf_free), with upload /
 *             download. Tensors are views into buffers (dsri_tensor: buffer +
 *             byte offset + rows x cols + row stride + type), never pointers,
 *             so the model code never dereferences memory it does not own.
 *   instance  per context (create / destroy): thread pool, command
 *             recording. Ops are recorded on an instance and may run later;
 *             sync() waits for everything recorded and returns the
 *             instance's status. A failure (device lost, out of device
 *             memory) is sticky: every later sync returns it until the
 *             instance is destroyed.
 *
 * Host backends (scalar, avx2, avx512, neon; host_memory = 1) read any host
 * buffer directly, including the model file's mapping, so placing a weight
 * on them copies nothing, and their ops run at once (sync only reports).
 * They share one implementation of this table (lib/backend/host.c) over
 * their pointer-level kernels (lib/backend/host_ops.h).
 *
 * Activations are f32 tensors; row t of a tensor starts at byte
 * offset + t*stride of its buffer; columns of a row are contiguous.
 *
 * Ops never allocate: scratch an op needs beyond its operands is passed in
 * by the caller (`work`), sized as the op's comment says. Small host arrays
 * (token ids, positions) are passed by value pointer: a device backend copies
 * them when it records the op, so the caller may reuse them at once.
 *
 * Contract for every backend: each output row depends only on its own input
 * row (and the cache), never on the other rows of the batch or on the thread
 * count, bit for bit. Speculative decoding relies on it (a token verified in
 * a batch of two must see exactly the logits it would see alone); test_mtp
 * and test_backend check it.
 */
#ifndef DSRI_BACKEND_H
#define DSRI_BACKEND_H

#include <stdint.h>

#include "dsr1.h"
#include "model/moe_router.h"
#include "quant/quant.h"

/* Tensor element types: the ggml ids (lib/quant/quant.h) plus I32 for ids. */
#define DSRI_TYPE_I32_ID 26u

typedef struct dsri_device dsri_device;   /* a backend's memory space */
typedef struct dsri_backend dsri_backend; /* a backend instance owned by one context */
typedef struct dsri_backend_ops dsri_backend_ops;

/* Memory owned by a device, or host memory the library wraps (the model's
 * mapping, converted vectors, a context's logits: dev == NULL). */
typedef struct dsri_buf {
    dsri_device *dev; /* owner; NULL: host memory owned by someone else */
    void *host;       /* address of byte 0 when the host can address it, else NULL */
    uint64_t size;    /* bytes */
    void *impl;       /* the backend's handle */
} dsri_buf;

/* A 2-D view: rows x cols elements of `type` (ggml id; for block types cols
 * is a multiple of the block size), row r at byte offset + r*stride. */
typedef struct dsri_tensor {
    dsri_buf *buf; /* NULL: absent (an optional weight that is not there) */
    uint64_t offset;
    uint32_t type;
    int64_t cols;
    int64_t rows;
    uint64_t stride;
} dsri_tensor;

/* Bytes of one element (non-block types only: f32, f16, bf16, i32). */
static inline int64_t dsri_elem_bytes(uint32_t type)
{
    return type == 0u || type == DSRI_TYPE_I32_ID ? 4 : 2;
}

/* Bytes of one row's elements (without the stride's padding). */
static inline uint64_t dsri_tensor_row_bytes(const dsri_tensor *t)
{
    return t->type == DSRI_TYPE_I32_ID ? (uint64_t)t->cols * 4u : dsri_row_size(t->type, t->cols);
}

/* rows [first, first+n) of t */
static inline dsri_tensor dsri_rows(const dsri_tensor *t, int64_t first, int64_t n)
{
    dsri_tensor v = *t;
    v.offset += (uint64_t)first * t->stride;
    v.rows = n;
    return v;
}

/* columns [first, first+n) of every row of t (non-block types) */
static inline dsri_tensor dsri_cols(const dsri_tensor *t, int64_t first, int64_t n)
{
    dsri_tensor v = *t;
    v.offset += (uint64_t)(first * dsri_elem_bytes(t->type));
    v.cols = n;
    return v;
}

/* A dense rows x cols tensor of a non-block type at byte `offset` of buf. */
static inline dsri_tensor dsri_tensor_2d(dsri_buf *buf, uint64_t offset, uint32_t type, int64_t cols, int64_t rows)
{
    dsri_tensor t = {buf, offset, type, cols, rows, (uint64_t)(cols * dsri_elem_bytes(type))};
    return t;
}

/* Host address of row 0 (host-addressable buffers only). */
static inline void *dsri_host_ptr(const dsri_tensor *t)
{
    return (uint8_t *)t->buf->host + t->offset;
}

/* What an instance must be ready for (its own scratch is allocated up front,
 * so recording never allocates). */
/* Watches a host backend's products (dsr1 imatrix): for each weight matrix
 * a product multiplies, before the product and on the thread that records
 * it, fn gets the host address of the matrix's first row, its columns
 * (n_in) and the n_rows dense input rows x (n_in floats each). The host
 * backends call it from matmul, matmul_n, moe_ffn (each expert's gate/up
 * rows with their inputs, down with silu(gate)*up) and the untransposed
 * matmul_heads; not from matmul_t or transposed heads, whose inputs run
 * along the matrix's rows. Device backends ignore it. */
typedef struct dsri_matmul_observer {
    void (*fn)(void *ud, const void *w, int64_t n_in, const float *x, int64_t n_rows);
    void *ud;
} dsri_matmul_observer;

typedef struct dsri_backend_config {
    int n_threads;
    int64_t max_row; /* the widest matrix row (n_in) it will see */
    int64_t n_ctx;   /* the most keys one attention call will see */
    struct dsri_pool *pool; /* the context's threads (dsri_pool_acquire); NULL: n_threads of its own */
    int64_t n_batch; /* the most rows one op will see */
    int64_t max_experts; /* the most experts one moe_route call will see (0: none) */
    /* NULL (always, but for dsr1 imatrix): no observer. The struct is
     * read at every product, so its owner may set fn after creation. */
    const dsri_matmul_observer *observer;
} dsri_backend_config;

/* A device as the public API lists it. */
typedef struct dsri_device_desc {
    char name[128];
    int is_cpu;           /* a CPU-type device (e.g. Mesa's lavapipe) */
    uint64_t memory;      /* bytes of device memory (0: host memory) */
} dsri_device_desc;

struct dsri_backend_ops {
    const char *name;
    int host_memory; /* 1: reads host buffers directly; place() copies nothing */
    const void *impl; /* the backend's own table (host backends: dsri_host_ops) */

    /* 1 when the machine can run it */
    int (*available)(void);

    /* ---- devices ---- */
    /* Devices this backend can open (host backends: 1). May be slow (a
     * device backend creates an instance); NULL desc: only count. */
    int (*device_count)(void);
    dsr1_status (*device_describe)(int index, dsri_device_desc *desc);
    dsr1_status (*device_open)(int index, dsri_device **out);
    void (*device_close)(dsri_device *dev);
    /* bytes of memory the device can still give out (0: unknown / host) */
    uint64_t (*device_free_memory)(dsri_device *dev);

    /* ---- memory ---- */
    /* bytes zero-initialised */
    dsr1_status (*buf_new)(dsri_device *dev, uint64_t bytes, dsri_buf **out);
    void (*buf_free)(dsri_buf *buf);
    /* Copy a weight (a host view, e.g. into the mapping) into the device:
     * *out is a view with the same type and shape. Host backends set
     * *out = *src. */
    dsr1_status (*place)(dsri_device *dev, const dsri_tensor *src, dsri_tensor *out);

    /* ---- instances ---- */
    dsr1_status (*create)(const dsri_backend_config *cfg, dsri_device *dev, dsri_backend **out);
    void (*destroy)(dsri_backend *be);
    /* Run everything recorded and wait; the instance's (sticky) status. */
    dsr1_status (*sync)(dsri_backend *be);
    /* rows of t (dense rows of t.cols elements) from / to host memory;
     * download waits for the recorded work first. */
    dsr1_status (*upload)(dsri_backend *be, const dsri_tensor *t, const void *src);
    dsr1_status (*download)(dsri_backend *be, const dsri_tensor *t, void *dst);

    /* ---- ops (recorded; failures surface at sync) ---- */
    /* y row t = row ids[t] of w, as f32 (embedding lookup), t < y.rows */
    void (*get_rows)(dsri_backend *be, const dsri_tensor *w, const int32_t *ids, const dsri_tensor *y);
    /* y[t][o] = sum_i w[o][i] * x[t][i] for t < x.rows, o < w.rows
     * (x.cols == w.cols, y.cols == w.rows; x and y dense) */
    void (*matmul)(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
    /* y[i] = w[i] x for i < n (each as matmul): several products of one
     * input (a query, key and value; a gate and an up projection). A host
     * backend rounds the input once and runs them in one parallel region.
     * Optional (NULL: call dsri_matmul_n, which falls back to matmul). */
    void (*matmul_n)(dsri_backend *be, int n, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
    /* y[t][i] = sum_o w[o][i] * x[t][o]: the product with the transposed
     * matrix (x.cols == w.rows, y.cols == w.cols; x and y dense) */
    void (*matmul_t)(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
    /* Per-head products, head h < n_heads: the matrix of rows
     * [h*w_step, h*w_step + w.rows) of w (w is the view of head 0, w_step
     * rows apart) times columns [h*x_step, ...) of each row of x, into
     * columns [h*y_step, ...) of each row of y; transposed as matmul_t.
     * work: 2 * x.rows * max(w.rows, w.cols) floats (dense f32). */
    void (*matmul_heads)(dsri_backend *be, const dsri_tensor *w, int64_t w_step, int n_heads, int transposed,
                         const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step,
                         const dsri_tensor *work);
    /* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w (w: one f32 row of x.cols;
     * x and y may be the same view; strided rows allowed) */
    void (*rmsnorm)(dsri_backend *be, const dsri_tensor *x, const dsri_tensor *w, const dsri_tensor *y, float eps);
    /* y += x elementwise; x with one row is added to every row of y (bias) */
    void (*add)(dsri_backend *be, const dsri_tensor *y, const dsri_tensor *x);
    /* g = silu(g) * u elementwise (dense, same shape) */
    void (*silu_mul)(dsri_backend *be, const dsri_tensor *g, const dsri_tensor *u);
    /* Rotate pairs of the n_heads head vectors of each row of x (head h at
     * column h*head_dim, its first rot_dim columns rotated) by angle
     * pos[t] * freq[i] for pair i (freq: one f32 row of rot_dim/2); cos/sin
     * scaled by mscale. Pairs are (2i, 2i+1) or, with neox, (i, i+rot/2). */
    void (*rope)(dsri_backend *be, const dsri_tensor *x, int n_heads, int head_dim, int rot_dim, const int32_t *pos,
                 const dsri_tensor *freq, float mscale, int neox);
    /* Causal attention: q rows t < q.rows of n_head*dk; keys/values of
     * positions 0..pos[t] are rows of k / v (f32 or f16, any stride; head h
     * at column h*dk / h*dv); GQA maps query head h to kv head
     * h / (n_head / n_head_kv). out: rows of n_head*dv f32. f16 keys and
     * values are widened exactly; the arithmetic is f32 either way. */
    void (*attention)(dsri_backend *be, const dsri_tensor *q, const dsri_tensor *k, const dsri_tensor *v,
                      const dsri_tensor *out, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv,
                      float scale);
    /* dst = src, same rows x cols, any strides; f32 <-> f16 converts (to f16
     * rounds to nearest even, the same bits on every backend). */
    void (*copy)(dsri_backend *be, const dsri_tensor *src, const dsri_tensor *dst);
    /* every element of y (f32) = value */
    void (*fill)(dsri_backend *be, const dsri_tensor *y, float value);
    /* MoE routing of each row of logits (n_expert f32) with the optional
     * selection bias (one f32 row): ids (i32) and weights (f32) get cfg->n_used
     * columns per row. Never returns an invalid or repeated expert. */
    void (*moe_route)(dsri_backend *be, const dsri_router_config *cfg, const dsri_tensor *logits,
                      const dsri_tensor *bias, const dsri_tensor *ids, const dsri_tensor *weights);
    /* Routed experts: y[t] = sum_k weights[t][k] * down_e(silu(gate_e x[t]) * up_e x[t])
     * with e = ids[t][k]; gate/up/down hold every expert's rows (expert e's
     * rows start at e * ff for gate/up, e * x.cols for down). Each row's sum
     * runs over its experts in increasing expert id. work: x.rows *
     * (x.cols + 2 * ff) + 2 * x.rows floats. */
    void (*moe_ffn)(dsri_backend *be, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                    int64_t ff, const dsri_tensor *x, const dsri_tensor *ids, const dsri_tensor *weights,
                    const dsri_tensor *y, const dsri_tensor *work);
};

/* y[i] = w[i] x for i < n on any backend: its matmul_n, else n matmuls. */
static inline void dsri_matmul_n(const dsri_backend_ops *ops, dsri_backend *be, int n, const dsri_tensor *w,
                                 const dsri_tensor *x, const dsri_tensor *y)
{
    if (ops->matmul_n) {
        ops->matmul_n(be, n, w, x, y);
        return;
    }
    for (int i = 0; i < n; i++)
        ops->matmul(be, &w[i], x, &y[i]);
}

/* Registry: compiled-in backends, best first. */
int dsri_backend_count(void);
const dsri_backend_ops *dsri_backend_at(int i);
/* Pick by name (NULL: $DSR1_BACKEND, else the best available host backend). */
dsr1_status dsri_backend_select(const char *name, const dsri_backend_ops **out);
/* The backend of that name, compiled in or not (NULL: unknown / absent). */
const dsri_backend_ops *dsri_backend_find(const char *name);

extern const dsri_backend_ops dsri_backend_scalar;
#ifdef DSRI_HAVE_AVX2
extern const dsri_backend_ops dsri_backend_avx2; /* lib/backend/avx2 (x86-64) */
#endif
#ifdef DSRI_HAVE_AVX512
extern const dsri_backend_ops dsri_backend_avx512; /* lib/backend/avx512 (x86-64, AVX-512 VNNI) */
#endif
#ifdef DSRI_HAVE_NEON
extern const dsri_backend_ops dsri_backend_neon; /* lib/backend/neon (aarch64) */
#endif
#ifdef DSRI_HAVE_VULKAN
extern const dsri_backend_ops dsri_backend_vulkan; /* lib/backend/vulkan (device memory, loader dlopen'ed) */
#endif

#endif
