/* Contexts (internal): the KV cache, scratch and logits of one sequence. */
#ifndef DSRI_CONTEXT_H
#define DSRI_CONTEXT_H

#include <stdatomic.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/handle.h"
#include "dsr1.h"
#include "model/model.h"

struct dsr1_context {
    dsri_handle handle;    /* busy flag and last message (core/handle.h) */
    const dsr1_model *model;
    const dsri_backend_ops *ops;
    dsri_backend *be;
    int32_t n_ctx;
    int32_t n_batch;
    int32_t n_threads;     /* the most threads (set_threads' bound) */
    struct dsri_pool *pool; /* its threads (shared with the backend) */
    int32_t n_past;

    /* KV cache: layer l, position p at element (l*n_ctx + p)*kv_k_width of
     * k_cache (v_cache: kv_v_width), elements of kv_type (f32 or f16); the
     * backend's kv_store / kv_load / attention ops read and write them. */
    void *k_cache;
    void *v_cache;
    dsr1_kv_type kv_type; /* DSR1_KV_F32 or DSR1_KV_F16 (never DEFAULT) */
    int n_cache_layers;

    float *scratch;        /* arch->scratch_floats(model, n_batch, n_ctx) floats */
    int32_t *pos;          /* n_batch positions */

    float *logits;         /* n_logits_rows x n_vocab */
    int32_t n_logits_rows; /* rows held (last eval) */
    int32_t cap_logits_rows;
    int32_t logits_first;  /* batch index of the first row held */
    int32_t last_n_tokens; /* tokens in the last eval */

    /* The token at each cached position [0, n_past) (n_ctx entries), so the
     * generation API can reuse the longest common prefix of a new prompt. */
    dsr1_token *tokens;

    /* Models with a multi-token-prediction (MTP) head (model/deepseek2.h);
     * NULL / 0 for the others.
     * hidden: the final hidden states (before the output norm) the last
     * forward pass left, n_hidden rows of n_embd for positions hidden_pos,
     * hidden_pos + 1, ... (n_batch rows allocated). Rows at positions
     * < n_past are current; the MTP head reads them.
     * MTP cache layer (layer n_layer of k_cache): entry i is the MTP block
     * run on (h_i, the token at i+1). Entries [0, mtp_n_past) are current,
     * mtp_n_past <= n_past; when mtp_n_past == n_past the last entry was
     * made with mtp_next, a token chosen for position n_past but not
     * evaluated yet. dsr1_eval, dsr1_context_truncate and
     * dsr1_context_reset keep this true (mtp_rewind in context.c). */
    float *hidden;
    int32_t hidden_pos, n_hidden;
    int32_t mtp_n_past;
    dsr1_token mtp_next;
    dsr1_token *mtp_tokens; /* n_batch: the next tokens of one MTP run */
    float *mtp_logits;      /* n_vocab: the draft row */

    /* The unfinished step-API generation using this context, or NULL.
     * While set, dsr1_eval, dsr1_context_truncate and another generation
     * are DSR1_ERR_STATE (they would silently change what it continues
     * from); the generation itself uses the unguarded dsri_ctx_* bodies. */
    const struct dsr1_generation *generation;

    /* Interruption (dsri_ctx_check_abort): the host's abort callback, and
     * the cancel flag of the generation whose step is running (NULL
     * outside a step; set and cleared by that step on its thread). */
    dsr1_abort_fn abort_fn;
    void *abort_user_data;
    const atomic_int *cancel_flag;
};

/* The one place evaluations look for a request to stop: the forward passes
 * call it at the top of every layer of their loop (and dsr1_eval so between
 * chunks). DSR1_ERR_CANCELLED (with its message) when the abort callback
 * returns non-zero or the running generation was cancelled; the caller
 * returns it at once, leaving the cache entries of the interrupted chunk
 * beyond n_past. */
static inline dsr1_status dsri_ctx_check_abort(dsr1_context *ctx)
{
    if ((ctx->cancel_flag && atomic_load_explicit(ctx->cancel_flag, memory_order_relaxed)) ||
        (ctx->abort_fn && ctx->abort_fn(ctx->abort_user_data)))
        return dsri_error(DSR1_ERR_CANCELLED, "evaluation cancelled (%s) with %d tokens in the cache",
                          ctx->cancel_flag && atomic_load_explicit(ctx->cancel_flag, memory_order_relaxed)
                              ? "dsr1_generation_cancel" : "the context's abort callback",
                          ctx->n_past);
    return DSR1_OK;
}

/* The unguarded bodies of dsr1_eval, dsr1_context_logits and
 * dsr1_context_truncate, for callers that hold the context already (a
 * generation step). */
dsr1_status dsri_ctx_eval(dsr1_context *ctx, const dsr1_token *tokens, int32_t n_tokens, int32_t pos, uint32_t flags);
dsr1_status dsri_ctx_logits(dsr1_context *ctx, int32_t i, const float **out);
void dsri_ctx_truncate(dsr1_context *ctx, int32_t pos);

/* The sizes a context of these (resolved) parameters allocates; one
 * computation for dsr1_context_new and dsr1_model_estimate_memory. */
typedef struct dsri_ctx_sizes {
    int64_t kv_k_values, kv_v_values; /* cache elements */
    uint64_t kv_bytes_per_token;
    int64_t scratch_floats;
    uint64_t other_bytes;             /* logits row, positions, token history, MTP buffers */
} dsri_ctx_sizes;
dsr1_status dsri_ctx_resolve_params(const dsr1_model *model, const dsr1_context_params *in, dsr1_context_params *p);
void dsri_ctx_sizes_of(const dsr1_model *model, const dsr1_context_params *p, dsri_ctx_sizes *out);

/* DSR1_ERR_STATE (naming fn) when a generation holds the context, else
 * DSR1_OK. */
dsr1_status dsri_context_check_free(const dsr1_context *ctx, const char *fn);

/* The cache row of layer `layer`, position pos (kv_type elements; add
 * columns with dsri_kv_col). */
static inline void *dsri_ctx_k(dsr1_context *ctx, int layer, int32_t pos)
{
    return (uint8_t *)ctx->k_cache +
           ((int64_t)layer * ctx->n_ctx + pos) * ctx->model->kv_k_width * dsri_kv_elem_bytes(ctx->kv_type);
}

static inline void *dsri_ctx_v(dsr1_context *ctx, int layer, int32_t pos)
{
    return (uint8_t *)ctx->v_cache +
           ((int64_t)layer * ctx->n_ctx + pos) * ctx->model->kv_v_width * dsri_kv_elem_bytes(ctx->kv_type);
}

/* Column col of the cache row at p. */
static inline const void *dsri_kv_col(const dsr1_context *ctx, const void *p, int64_t col)
{
    return (const uint8_t *)p + col * dsri_kv_elem_bytes(ctx->kv_type);
}

/* Row pos of the key cache of layer `layer` as f32 (width kv_k_width), for
 * tests and tools. */
static inline void dsri_ctx_k_f32(dsr1_context *ctx, int layer, int32_t pos, float *out)
{
    int64_t w = ctx->model->kv_k_width;
    ctx->ops->kv_load(ctx->be, ctx->kv_type, out, w, dsri_ctx_k(ctx, layer, pos), w, w, 1);
}

#endif
