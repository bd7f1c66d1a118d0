/* Contexts (internal): the KV cache, scratch and logits of one sequence. */
#ifndef DSRI_CONTEXT_H
#define DSRI_CONTEXT_H

#include <stdatomic.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/handle.h"
#include "dsr1.h"
#include "model/model.h"

/* One backend a context runs layers on: the host backend it chose, and the
 * model's device when layers are offloaded. */
struct dsri_run {
    const dsri_backend_ops *ops;
    dsri_backend *be;
    const dsri_weights *w; /* the model's weights as placed for this backend */
    dsri_buf *scratch;     /* the architecture's scratch (+ a logits chunk on devices) */
    dsri_buf *kv;          /* the key/value cache of the layers it runs */
};

/* Rows of logits a device computes at a time before reading them back. */
#define DSRI_LOGITS_CHUNK 64

struct dsr1_context {
    dsri_handle handle;    /* busy flag and last message (core/handle.h) */
    const dsr1_model *model;
    int32_t n_ctx;
    int32_t n_batch;
    int32_t n_threads;     /* the most threads (set_threads' bound) */
    struct dsri_pool *pool; /* its threads (shared with the backend) */
    int32_t n_past;

    /* runs[0]: the host backend; runs[1]: the device (n_runs 2) */
    dsri_run runs[2];
    int n_runs;
    uint8_t *layer_run;   /* n_cache_layers entries: which run computes a layer */
    int output_run;       /* which run computes the output head (and MTP) */

    /* KV cache: per cache layer l, k[l] / v[l] are n_ctx rows of kv_k_width /
     * kv_v_width elements of kv_type (f32 or f16), in the memory of the
     * layer's run; row p holds position p. */
    dsri_tensor *k, *v;
    dsr1_kv_type kv_type; /* DSR1_KV_F32 or DSR1_KV_F16 (never DEFAULT) */
    uint64_t kv_bytes_per_token; /* dsri_ctx_sizes_of's, for dsr1_context_kv_bytes_per_token */
    int n_cache_layers;

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
     * zero for the others.
     * hidden: the final hidden states (before the output norm) the last
     * forward pass left, n_hidden rows of n_embd for positions hidden_pos,
     * hidden_pos + 1, ... (n_batch rows, in the output run's memory). Rows
     * at positions < n_past are current; the MTP head reads them.
     * MTP cache layer (cache layer n_layer): entry i is the MTP block run on
     * (h_i, the token at i+1). Entries [0, mtp_n_past) are current,
     * mtp_n_past <= n_past; when mtp_n_past == n_past the last entry was
     * made with mtp_next, a token chosen for position n_past but not
     * evaluated yet. dsr1_eval, dsr1_context_truncate and
     * dsr1_context_reset keep this true (mtp_rewind in context.c). */
    dsri_tensor hidden;
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

    /* The host runs' product observer (backend.h; dsr1 imatrix sets it
     * through dsri_ctx_observe_matmuls): fn NULL, nothing observed. */
    dsri_matmul_observer observer;
};

/* Call fn (NULL: stop) with every weight the host runs multiply and its
 * input rows (dsri_matmul_observer), from the evaluating thread. */
static inline void dsri_ctx_observe_matmuls(dsr1_context *ctx,
                                            void (*fn)(void *ud, const void *w, int64_t n_in, const float *x,
                                                       int64_t n_rows),
                                            void *ud)
{
    ctx->observer.fn = fn;
    ctx->observer.ud = ud;
}

/* The one place evaluations look for a request to stop: the forward passes
 * call it at the top of every layer of their loop (and dsr1_eval so between
 * chunks). DSR1_ERR_CANCELLED (with its message) when the abort callback
 * returns non-zero or the running generation was cancelled; the caller
 * returns it at once, leaving the cache entries of the interrupted chunk
 * beyond n_past. */
static inline dsr1_status dsri_ctx_check_abort(dsr1_context *ctx)
{
    int stop = ctx->cancel_flag && atomic_load_explicit(ctx->cancel_flag, memory_order_relaxed);
    if (!stop && ctx->abort_fn) {
        dsri_error_saved saved; /* the callback's own failed calls stay its own */
        dsri_error_save(&saved);
        stop = ctx->abort_fn(ctx->abort_user_data);
        dsri_error_restore(&saved);
    }
    if (stop)
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

/* The body of dsr1_context_shift (model/shift.c) for a caller that holds
 * the context and checked the arguments with dsri_ctx_check_shift (fn
 * names the caller in the message). A failure while moving (a device
 * lost) leaves the first n_keep tokens. The logits of the last
 * evaluation are dropped. */
dsr1_status dsri_ctx_shift(dsr1_context *ctx, int32_t n_keep, int32_t n_discard);
dsr1_status dsri_ctx_check_shift(const dsr1_context *ctx, int32_t n_keep, int32_t n_discard, const char *fn);

/* The cache is cut back to [0, pos) and, when first_new is given, the
 * token *first_new goes at pos: drop the MTP entries that no longer
 * match (entry i depends on the tokens up to i+1). */
void dsri_ctx_mtp_rewind(dsr1_context *ctx, int32_t pos, const dsr1_token *first_new);

/* The sizes a context of these (resolved) parameters allocates; one
 * computation for dsr1_context_new and dsr1_model_estimate_memory. Every
 * product and sum is checked: sizes that do not fit in 64 bits (a hostile
 * n_ctx with a large model) are DSR1_ERR_OUT_OF_MEMORY with a message
 * before anything is allocated. */
typedef struct dsri_ctx_sizes {
    uint64_t kv_layer_bytes;     /* the k and v cache of one layer (n_ctx rows) */
    uint64_t kv_bytes_per_token; /* all layers */
    uint64_t kv_bytes;           /* all layers, n_ctx tokens */
    int64_t scratch_floats;      /* the architecture's activations */
    uint64_t scratch_bytes;      /* a CPU run's scratch buffer */
    uint64_t device_scratch_bytes; /* a device run's: with the chunk of logits it downloads */
    uint64_t other_bytes;        /* logits row, positions, token history, MTP buffers */
} dsri_ctx_sizes;
dsr1_status dsri_ctx_resolve_params(const dsr1_model *model, const dsr1_context_params *in, dsr1_context_params *p);
dsr1_status dsri_ctx_sizes_of(const dsr1_model *model, const dsr1_context_params *p, dsri_ctx_sizes *out);

/* DSR1_ERR_STATE (naming fn) when a generation holds the context, else
 * DSR1_OK. */
dsr1_status dsri_context_check_free(const dsr1_context *ctx, const char *fn);

/* The run that computes cache layer l. */
static inline const dsri_run *dsri_ctx_run(const dsr1_context *ctx, int l)
{
    return &ctx->runs[ctx->layer_run[l]];
}

/* The run that computes the routed experts of layer l: the layer's, or the
 * host's when the model keeps its experts in host memory (cpu_moe). */
static inline const dsri_run *dsri_ctx_expert_run(const dsr1_context *ctx, int l)
{
    return ctx->model->device.experts_on_host ? &ctx->runs[0] : dsri_ctx_run(ctx, l);
}

/* The first scratch_floats of a run's scratch as an f32 tensor of n floats
 * at float offset off (the architectures lay their buffers out with it). */
static inline dsri_tensor dsri_scratch(const dsri_run *r, int64_t off, int64_t cols, int64_t rows)
{
    return dsri_tensor_2d(r->scratch, (uint64_t)off * sizeof(float), 0u, cols, rows);
}

/* Move rows of the residual stream from one run's tensor to another's (a
 * placement boundary): the only read-back inside a forward pass. */
dsr1_status dsri_ctx_move(dsr1_context *ctx, const dsri_run *from, const dsri_tensor *src, const dsri_run *to,
                          const dsri_tensor *dst);

/* The output head: logits rows [first, first + rows) of the batch from the
 * normed final hidden states h (rows x n_embd, in run r's memory) through
 * `output` into the host logits at out (rows x n_vocab). */
dsr1_status dsri_ctx_output(dsr1_context *ctx, const dsri_run *r, const dsri_tensor *output, const dsri_tensor *h,
                            float *out);

/* Wait for every run and return the first failure (sticky per run). */
dsr1_status dsri_ctx_sync(dsr1_context *ctx);

/* Speculative decoding, whatever the architecture (the generation loop's
 * only way in): can_draft is 1 when the model has a draft head this context
 * can run; draft brings the head up to date for `next`, the token chosen for
 * position n_past, and drafts the token after it (draft -1: none; draft and
 * draft_p may be NULL: only update); draft_valid is the number of leading
 * positions whose draft-head state is current (a prefix longer than that is
 * better evaluated again). */
static inline int dsri_ctx_can_draft(const dsr1_context *ctx)
{
    return ctx->model->arch->can_draft && ctx->model->arch->can_draft(ctx);
}
static inline dsr1_status dsri_ctx_draft(dsr1_context *ctx, dsr1_token next, dsr1_token *draft, float *draft_p)
{
    return ctx->model->arch->draft(ctx, next, draft, draft_p);
}
static inline int32_t dsri_ctx_draft_valid(const dsr1_context *ctx) { return ctx->mtp_n_past; }

/* Row pos of the key / value cache of layer `layer` as f32 (width
 * kv_k_width / kv_v_width; no values when kv_v_width is 0), for tests and
 * tools. */
dsr1_status dsri_ctx_k_f32(dsr1_context *ctx, int layer, int32_t pos, float *out);
dsr1_status dsri_ctx_v_f32(dsr1_context *ctx, int layer, int32_t pos, float *out);

/* The final hidden states of the last forward pass into host memory
 * (n_hidden x n_embd floats), for tests and tools. */
dsr1_status dsri_ctx_hidden_f32(dsr1_context *ctx, float *out);

#endif
