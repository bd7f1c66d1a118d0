/*
 * Models (internal): what a loaded dsr1_model holds, and the per-architecture
 * table that loads and runs it.
 *
 * A model is the mapped GGUF file, the validated hyper-parameters, and
 * tensor views straight into the mapping (m->file_buf; no weight is copied;
 * only small 1-D tensors stored in other types than f32 are converted, into
 * buffers the model owns). Placement (placement.c) puts the weights of the
 * layers a device runs on that device once; every context shares them.
 */
#ifndef DSRI_MODEL_H
#define DSRI_MODEL_H

#include <stdint.h>

#include "backend/host_ops.h"
#include "core/log.h"
#include "dsr1.h"
#include "gguf/gguf.h"

struct dsri_vocab;
typedef struct dsri_arch_ops dsri_arch_ops;
typedef struct dsri_run dsri_run;

typedef struct dsri_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim_k;   /* per-head query/key width */
    int32_t head_dim_v;   /* per-head value width */
    int32_t n_ff;         /* dense feed-forward width */
    int32_t rope_dim;     /* rotated dims per head */
    float rms_eps;
    float rope_theta;

    /* deepseek2 (multi-head latent attention, mixture of experts, YaRN) */
    int32_t q_lora_rank;      /* 0: queries are a plain projection */
    int32_t kv_lora_rank;
    int32_t qk_nope_dim;
    int32_t n_leading_dense;
    int32_t n_expert;
    int32_t n_expert_used;
    int32_t n_expert_shared;
    int32_t n_expert_groups;
    int32_t n_group_used;
    int32_t n_ff_expert;
    float expert_weights_scale;
    int32_t expert_weights_norm;
    int32_t expert_gating;    /* 1 softmax, 2 sigmoid */
    int32_t n_nextn_layers;   /* multi-token-prediction blocks after the main layers */
    float yarn_factor;        /* 0 or 1: no scaling */
    int32_t yarn_orig_ctx;
    float yarn_log_mul;
} dsri_hparams;

/* Per-layer weights; an architecture fills the ones it uses (absent ones
 * have buf == NULL). Matrices are [rows = n_out, cols = n_in]; vectors are
 * one f32 row. */
typedef struct dsri_layer {
    dsri_tensor attn_norm;
    dsri_tensor wq, wk, wv, wo;
    dsri_tensor bq, bk, bv;
    dsri_tensor attn_q_norm, attn_k_norm; /* qwen3: RMS norm over each head */
    dsri_tensor ffn_norm;
    dsri_tensor ffn_gate, ffn_up, ffn_down;

    /* deepseek2 */
    dsri_tensor wq_a, wq_b, wkv_a_mqa, wk_b, wv_b, wkv_b;
    dsri_tensor attn_q_a_norm, attn_kv_a_norm;
    dsri_tensor ffn_gate_inp;        /* router */
    dsri_tensor exp_probs_b;         /* router selection bias */
    dsri_tensor ffn_gate_exps, ffn_up_exps, ffn_down_exps; /* rows cover all experts */
    dsri_tensor ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
    /* multi-token prediction block */
    dsri_tensor nextn_enorm, nextn_hnorm, nextn_shared_head_norm;
    dsri_tensor nextn_eh_proj, nextn_embed_tokens, nextn_shared_head_head;
} dsri_layer;

/* The weights as one placement sees them (the host's: views into the
 * mapping; a device's: copies in its memory). */
typedef struct dsri_weights {
    dsri_tensor tok_embd, output_norm, output, rope_freq;
    dsri_layer *layers; /* n_layer + n_nextn_layers entries (a device's: only
                         * the layers it runs are filled) */
} dsri_weights;

/* Where a model's layers run: layers [first_layer, n_layer) (and the output
 * head) on a device, the rest on the host. */
typedef struct dsri_placement {
    const dsri_backend_ops *ops; /* NULL: everything on the host */
    dsri_device *dev;
    int device_index;
    int first_layer;
    int experts_on_host; /* the routed experts stay in the host's weights
                            (dsr1_model_params.cpu_moe): w's ffn_*_exps are
                            host views, run by the context's host backend */
    dsri_weights w;
    dsri_buf **bufs; /* what placing allocated (freed with the model) */
    int n_bufs;
} dsri_placement;

struct dsr1_model {
    /* the file */
    void *map;            /* mmap'ed region, or NULL when loaded from memory */
    size_t map_size;
    const uint8_t *bytes;
    size_t n_bytes;
    dsri_gguf *gguf;
    char **tensor_names;  /* NUL-terminated copies, for dsr1_tensor_info */
    dsri_logger log;

    const dsri_arch_ops *arch;
    char arch_name[32];
    int vocab_only;
    int sizes_only;       /* dsr1_model_estimate_memory: no vocabulary */
    dsri_hparams hp;
    struct dsri_vocab *vocab;

    /* weights (host views) */
    dsri_buf file_buf;              /* the mapping (or the caller's buffer) */
    dsri_tensor tok_embd;
    dsri_tensor output_norm;
    dsri_tensor output;
    const float *rope_freq_factors; /* llama3 divisors, or NULL */
    float *rope_freq;               /* per rotated pair, ready for the rope op */
    dsri_tensor rope_freq_t;        /* the same as a tensor */
    float rope_mscale;              /* YaRN magnitude correction */
    float attn_scale;               /* softmax scale */
    dsri_layer *layers;             /* n_layer + n_nextn_layers entries */

    /* KV cache layout: floats per token per layer */
    int64_t kv_k_width;
    int64_t kv_v_width;
    int64_t max_row;                /* widest matrix row, for backend scratch */

    dsri_weights host_w;            /* the fields above, for the forward passes */
    dsri_placement device;          /* device offload (device.ops NULL: none) */

    /* converted small tensors owned by the model */
    dsri_buf **owned;
    int n_owned;
    int cap_owned;
};

/* What each architecture provides. */
struct dsri_arch_ops {
    const char *name;
    /* read hyper-parameters and bind every tensor (validating shapes) */
    dsr1_status (*load)(dsr1_model *m);
    /* floats of scratch a forward pass of n_batch tokens over n_ctx needs
     * (per backend the context runs layers on); at most n_batch times
     * the floats of one token (dsri_ctx_sizes_of checks that product for
     * overflow before calling it with n_batch) */
    int64_t (*scratch_floats)(const dsr1_model *m, int n_batch, int n_ctx);
    /* evaluate tokens at positions pos[0..n) (n <= n_batch), appending
     * their keys/values to the cache; write n rows of logits (logits_all)
     * or only the last row into logits (NULL: no output layer at all) */
    dsr1_status (*forward)(dsr1_context *ctx, const dsr1_token *tokens, const int32_t *pos, int n,
                           float *logits, int logits_all);
    /* Speculative decoding (NULL: the architecture has no draft head).
     * can_draft: whether this model and context can draft; draft: as
     * dsri_ctx_draft (model/context.h). */
    int (*can_draft)(const dsr1_context *ctx);
    dsr1_status (*draft)(dsr1_context *ctx, dsr1_token next, dsr1_token *draft, float *draft_p);
    /* Record on run r the rotation of cached keys by their position change
     * delta[t] (a context shift, model/shift.c): k is rows of the cache's
     * kv_k_width as f32 (a scratch copy), rotated the way forward rotates
     * the keys it caches, with unit magnitude (a YaRN magnitude scale is
     * in the cached keys already). */
    void (*rotate_keys)(const dsr1_context *ctx, const dsri_run *r, const dsri_tensor *k, const int32_t *delta);
};

extern const dsri_arch_ops dsri_arch_llama;
extern const dsri_arch_ops dsri_arch_qwen2;
extern const dsri_arch_ops dsri_arch_qwen3;
extern const dsri_arch_ops dsri_arch_deepseek2;

const struct dsri_vocab *dsri_model_vocab(const dsr1_model *model);

/* ---- helpers for the architecture loaders (lib/model/bind.c) ---- */

/* Read "<arch>.<suffix>" as an integer / float. Missing required keys and
 * out-of-range values are DSR1_ERR_FORMAT with the key named. */
dsr1_status dsri_hp_int(const dsr1_model *m, const char *suffix, int required, int64_t lo, int64_t hi,
                        int32_t *out);
dsr1_status dsri_hp_float(const dsr1_model *m, const char *suffix, int required, float *out);

/* Bind a 2-D weight of GGUF shape [n_in, n_out] (name is a printf pattern
 * with at most one %d, the layer). Not required and missing: zeroed view. */
dsr1_status dsri_bind_matrix(dsr1_model *m, dsri_tensor *out, int required, int64_t n_in,
                             int64_t n_out, const char *name, int layer);
/* Bind a 3-D expert stack [n_in, n_out, n_expert] as one matrix of
 * n_out*n_expert rows (expert e's rows start at e*n_out). */
dsr1_status dsri_bind_experts(dsr1_model *m, dsri_tensor *out, int64_t n_in, int64_t n_out,
                              int64_t n_expert, const char *name, int layer);
/* Bind a 1-D f32 vector of n values (converted when stored otherwise); a
 * value that is not finite is DSR1_ERR_FORMAT. */
dsr1_status dsri_bind_vector(dsr1_model *m, dsri_tensor *out, int required, int64_t n,
                             const char *name, int layer);

/* n floats owned by the model (freed with it), as a one-row tensor. */
dsr1_status dsri_model_floats(dsr1_model *m, int64_t n, float **out, dsri_tensor *view);

/* The host values of a one-row f32 tensor bound above (NULL: absent). */
static inline const float *dsri_vec(const dsri_tensor *t)
{
    return t->buf ? (const float *)dsri_host_ptr(t) : NULL;
}

/* Place layers [first_layer, n_layer) and the output head of a loaded model
 * on device `index` of `ops` (lib/model/placement.c); experts_on_host: all
 * but the routed experts' weights. */
dsr1_status dsri_model_place(dsr1_model *m, const dsri_backend_ops *ops, int index, int first_layer,
                             int experts_on_host);
void dsri_model_unplace(dsr1_model *m);
/* The placement dsr1_model_params asks for (n_gpu_layers 0: none; < 0 or
 * more than the model has: all; device and cpu_moe as dsr1_model_params'). */
dsr1_status dsri_model_place_from_params(dsr1_model *m, int32_t n_gpu_layers, const char *device, int32_t cpu_moe);

/* DSR1_ERR_FORMAT naming the tensor (name/layer as above) and the element
 * unless every v[0..n) is finite and within [lo, hi]; v NULL: DSR1_OK.
 * dsri_bind_vector applies it with infinite bounds (finite values only). */
dsr1_status dsri_check_vector_range(const float *v, int64_t n, float lo, float hi, const char *name, int layer);

/* The standard RoPE frequencies theta^(-2i/rope_dim), divided by the llama3
 * factors when present. Allocates m->rope_freq. */
dsr1_status dsri_rope_init_standard(dsr1_model *m);

#endif
