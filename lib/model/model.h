/*
 * Models (internal): what a loaded dsr1_model holds, and the per-architecture
 * table that loads and runs it.
 *
 * A model is the mapped GGUF file, the validated hyper-parameters, and
 * dsri_matrix views straight into the mapping (no weight is copied; only
 * small 1-D tensors stored in other types than f32 are converted).
 */
#ifndef DSRI_MODEL_H
#define DSRI_MODEL_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/log.h"
#include "dsr1.h"
#include "gguf/gguf.h"

struct dsri_vocab;
typedef struct dsri_arch_ops dsri_arch_ops;

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

/* Per-layer weights; an architecture fills the ones it uses. */
typedef struct dsri_layer {
    const float *attn_norm;
    dsri_matrix wq, wk, wv, wo;
    const float *bq, *bk, *bv;
    const float *attn_q_norm, *attn_k_norm; /* qwen3: per-head RMS norm weights */
    const float *ffn_norm;
    dsri_matrix ffn_gate, ffn_up, ffn_down;

    /* deepseek2 */
    dsri_matrix wq_a, wq_b, wkv_a_mqa, wk_b, wv_b, wkv_b;
    const float *attn_q_a_norm, *attn_kv_a_norm;
    dsri_matrix ffn_gate_inp;        /* router */
    const float *exp_probs_b;        /* router selection bias */
    dsri_matrix ffn_gate_exps, ffn_up_exps, ffn_down_exps; /* n_out covers all experts */
    dsri_matrix ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
    /* multi-token prediction block */
    const float *nextn_enorm, *nextn_hnorm, *nextn_shared_head_norm;
    dsri_matrix nextn_eh_proj, nextn_embed_tokens, nextn_shared_head_head;
} dsri_layer;

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

    /* weights */
    dsri_matrix tok_embd;
    const float *output_norm;
    dsri_matrix output;
    const float *rope_freq_factors; /* llama3 divisors, or NULL */
    float *rope_freq;               /* per rotated pair, ready for the rope op */
    float rope_mscale;              /* YaRN magnitude correction */
    float attn_scale;               /* softmax scale */
    dsri_layer *layers;             /* n_layer + n_nextn_layers entries */

    /* KV cache layout: floats per token per layer */
    int64_t kv_k_width;
    int64_t kv_v_width;
    int64_t max_row;                /* widest matrix row, for backend scratch */

    /* converted small tensors owned by the model */
    float **owned;
    int n_owned;
    int cap_owned;
};

/* What each architecture provides. */
struct dsri_arch_ops {
    const char *name;
    /* read hyper-parameters and bind every tensor (validating shapes) */
    dsr1_status (*load)(dsr1_model *m);
    /* floats of scratch a forward pass of n_batch tokens over n_ctx needs */
    int64_t (*scratch_floats)(const dsr1_model *m, int n_batch, int n_ctx);
    /* evaluate tokens at positions pos[0..n) (n <= n_batch), appending
     * their keys/values to the cache; write n rows of logits (logits_all)
     * or only the last row into logits (NULL: no output layer at all) */
    dsr1_status (*forward)(dsr1_context *ctx, const dsr1_token *tokens, const int32_t *pos, int n,
                           float *logits, int logits_all);
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
 * with at most one %d, the layer). Not required and missing: zeroed matrix. */
dsr1_status dsri_bind_matrix(dsr1_model *m, dsri_matrix *out, int required, int64_t n_in,
                             int64_t n_out, const char *name, int layer);
/* Bind a 3-D expert stack [n_in, n_out, n_expert] as one matrix of
 * n_out*n_expert rows (expert e's rows start at e*n_out). */
dsr1_status dsri_bind_experts(dsr1_model *m, dsri_matrix *out, int64_t n_in, int64_t n_out,
                              int64_t n_expert, const char *name, int layer);
/* Bind a 1-D f32 vector of n values (converted when stored otherwise); a
 * value that is not finite is DSR1_ERR_FORMAT. */
dsr1_status dsri_bind_vector(dsr1_model *m, const float **out, int required, int64_t n,
                             const char *name, int layer);

/* DSR1_ERR_FORMAT naming the tensor (name/layer as above) and the element
 * unless every v[0..n) is finite and within [lo, hi]; v NULL: DSR1_OK.
 * dsri_bind_vector applies it with infinite bounds (finite values only). */
dsr1_status dsri_check_vector_range(const float *v, int64_t n, float lo, float hi, const char *name, int layer);

/* The standard RoPE frequencies theta^(-2i/rope_dim), divided by the llama3
 * factors when present. Allocates m->rope_freq. */
dsr1_status dsri_rope_init_standard(dsr1_model *m);

#endif
