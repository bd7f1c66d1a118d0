/*
 * Compute backends (internal).
 *
 * The forward passes in lib/model never compute anything themselves: every
 * piece of arithmetic goes through one of these ops, so a backend (scalar,
 * AVX2, NEON, Vulkan) is a table of function pointers and the model code does
 * not know which one runs it. The scalar backend is the portable reference
 * every other backend is tested against.
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
#ifndef DSRI_BACKEND_H
#define DSRI_BACKEND_H

#include <stdint.h>

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

typedef struct dsri_backend dsri_backend; /* a backend instance owned by one context */

/* KV cache rows hold DSR1_KV_F32 floats or DSR1_KV_F16 IEEE halves
 * (uint16_t bit patterns, rounded to nearest even when stored); strides and
 * widths of cache rows count elements, not bytes. */
static inline int64_t dsri_kv_elem_bytes(dsr1_kv_type type)
{
    return type == DSR1_KV_F16 ? 2 : 4;
}

/* What an instance must be ready for; it allocates all scratch up front so
 * the ops themselves never allocate (and never fail). */
typedef struct dsri_backend_config {
    int n_threads;
    int64_t max_row; /* the widest matrix row (n_in) it will see */
    int64_t n_ctx;   /* the most keys one attention call will see */
    struct dsri_pool *pool; /* the context's threads (dsri_pool_acquire); NULL: n_threads of its own */
} dsri_backend_config;

typedef struct dsri_backend_ops {
    const char *name;
    /* 1 when the machine can run it */
    int (*available)(void);
    dsr1_status (*create)(const dsri_backend_config *cfg, dsri_backend **out);
    void (*destroy)(dsri_backend *be);

    /* y[t][o] = sum_i W[o][i] * x[t][i] for t < n_rows, o < W.n_out */
    void (*matmul)(dsri_backend *be, const dsri_matrix *w, const float *x, float *y, int n_rows);
    /* out = W row `row`, dequantized (embedding lookup) */
    void (*get_row)(dsri_backend *be, const dsri_matrix *w, int64_t row, float *out);
    /* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, for n_rows rows of width d (in place allowed) */
    void (*rmsnorm)(dsri_backend *be, const float *x, const float *weight, float *y, int d, int n_rows,
                    float eps);
    /* y += x elementwise over n values */
    void (*add)(dsri_backend *be, float *y, const float *x, int64_t n);
    /* g[i] = silu(g[i]) * u[i] over n values */
    void (*silu_mul)(dsri_backend *be, float *g, const float *u, int64_t n);
    /* Rotate pairs of each of n_heads head vectors (head_dim apart, rot_dim
     * leading dims rotated) of n_rows rows (row stride `stride` floats) by
     * angle pos[t] * freq[i] for pair i; cos/sin scaled by mscale. Pairs are
     * (2i, 2i+1) or, with neox, (i, i + rot_dim/2). */
    void (*rope)(dsri_backend *be, float *x, int n_rows, int64_t stride, int n_heads, int head_dim,
                 int rot_dim, const int32_t *pos, const float *freq, float mscale, int neox);
    /* Causal attention for one batch. q: n_rows rows of n_head*dk (row stride
     * q_stride); keys/values of positions 0..pos[t] in k_cache/v_cache,
     * elements of type kv (row p at k_cache + p*k_stride elements, head h at
     * + h*dk / + h*dv); GQA maps query head h to kv head h / (n_head /
     * n_head_kv). out: n_rows rows of n_head*dv. f16 keys and values are
     * widened exactly; the arithmetic is f32 either way. */
    void (*attention)(dsri_backend *be, const float *q, int64_t q_stride, const void *k_cache,
                      int64_t k_stride, const void *v_cache, int64_t v_stride, dsr1_kv_type kv,
                      float *out, int n_rows, const int32_t *pos, int n_head, int n_head_kv, int dk,
                      int dv, float scale);
    /* Write n_rows rows of width f32 values (row t at src + t*src_stride)
     * into cache rows of type kv (row t at dst + t*dst_stride elements): a
     * copy for f32, round to nearest even for f16 (the same bits on every
     * backend). */
    void (*kv_store)(dsri_backend *be, dsr1_kv_type kv, void *dst, int64_t dst_stride, const float *src,
                     int64_t src_stride, int64_t width, int64_t n_rows);
    /* The reverse, exact: n_rows cache rows of width elements to f32. */
    void (*kv_load)(dsri_backend *be, dsr1_kv_type kv, float *dst, int64_t dst_stride, const void *src,
                    int64_t src_stride, int64_t width, int64_t n_rows);
    /* y[t][i] = sum_o W[o][i] * x[t][o] for t < n_rows, i < W.n_in: the
     * product with the transposed matrix (x rows are W.n_out wide, y rows
     * W.n_in wide); MLA uses it to expand keys from the latent with the
     * attn_k_b weights stored for the absorbed form. */
    void (*matmul_t)(dsri_backend *be, const dsri_matrix *w, const float *x, float *y, int n_rows);
    /* y += a * x elementwise over n values (weighting expert outputs) */
    void (*add_scaled)(dsri_backend *be, float *y, const float *x, float a, int64_t n);
} dsri_backend_ops;

/* Registry: compiled-in backends, best first. */
int dsri_backend_count(void);
const dsri_backend_ops *dsri_backend_at(int i);
/* Pick by name (NULL: $DSR1_BACKEND, else the best available). */
dsr1_status dsri_backend_select(const char *name, const dsri_backend_ops **out);

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

#endif
