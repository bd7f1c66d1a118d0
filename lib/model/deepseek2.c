/*
 * DeepSeek-V3 / DeepSeek-R1 (GGUF architecture "deepseek2", as llama.cpp's
 * converter writes it; DeepSeek-V2 files load too).
 *
 * Against the DeepSeek-V3 technical report (arXiv 2412.19437), section 2.1:
 *
 * Multi-head latent attention (eq. 1-11), per layer and token with input
 * h = RMSNorm(x):
 *   c_Q  = RMSNorm(W_DQ h)                      attn_q_a, attn_q_a_norm
 *   [q_C ; q_R] = W_UQ c_Q per head             attn_q_b (nope | rope dims)
 *                 (files without q_lora_rank: attn_q h)
 *   [c_KV ; k_R] = W_DKV h                      attn_kv_a_mqa (kv_lora | rope)
 *   c_KV = RMSNorm(c_KV)                        attn_kv_a_norm
 *   q_R, k_R rotated (RoPE on adjacent pairs, YaRN frequencies); k_R is one
 *   vector shared by all heads.
 *   k_C = W_UK c_KV, v = W_UV c_KV per head     attn_k_b / attn_v_b
 *                                               (older files: attn_kv_b)
 *   o = softmax(([q_C ; q_R] . [k_C ; k_R]) * s) v, out = W_O o
 * The cache keeps only the normed c_KV and the rotated k_R of each position
 * (kv_lora_rank + rope_dim values per layer, f16 or f32: ctx->kv_type), never
 * per-head keys/values.
 * Two equal ways to compute the attention:
 *   absorbed     q_C . (W_UK c) = (W_UK^T q_C) . c: queries are moved into
 *                the latent space, attention runs directly over the cache as
 *                one shared key/value head, and W_UV is applied to the
 *                latent result. Used for decoding and long contexts.
 *   decompressed k_C and v are expanded from the cached latents for every
 *                position, then ordinary multi-head attention. Used for
 *                prompt batches whose positions all fit within n_batch
 *                (its buffers are sized by n_batch).
 * The softmax scale s is m^2 / sqrt(nope + rope) with the YaRN magnitude
 * m = 1 + yarn_log_multiplier * ln(factor) (yarn_log_multiplier is
 * 0.1 * mscale_all_dim); the rotation itself keeps unit magnitude (llama.cpp
 * cancels its attn_factor there, HF's _mscale is 1 when mscale ==
 * mscale_all_dim).
 *
 * DeepSeekMoE (eq. 12-16): the first leading_dense_block_count layers have a
 * dense SwiGLU feed-forward; the others have n_expert_shared always-on
 * experts (one matrix of n_ff_exp * shared rows) plus routed experts chosen
 * by moe_router.c. Only the chosen experts' rows of the mapped file are read.
 *
 * Multi-token prediction (section 2.2): files with nextn_predict_layers > 0
 * hold one more block, blk.{n_layer}, with nextn.{eh_proj, enorm, hnorm,
 * shared_head_norm} (optionally nextn.embed_tokens / shared_head_head, else
 * the main embedding / output are shared). block_count counts it, so the
 * main model has block_count - nextn_predict_layers layers. Plain decoding
 * ignores it; dsri_deepseek2_mtp() runs it as a draft head.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/context.h"
#include "model/deepseek2.h"
#include "model/model.h"
#include "model/moe_router.h"

/* ------------------------------------------------------------------------ */
/* Hyper-parameters                                                           */
/* ------------------------------------------------------------------------ */

#define ROPE_NONE 0
#define ROPE_LINEAR 1
#define ROPE_YARN 2

typedef struct rope_cfg {
    int type;
    float beta_fast, beta_slow;
} rope_cfg;

static dsr1_status read_rope_type(const dsr1_model *m, int *type)
{
    char key[96];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    dsri_str s;
    int r = dsri_gguf_get_str(m->gguf, key, &s);
    *type = ROPE_NONE;
    if (r == -1)
        return DSR1_OK;
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is not a string", key);
    if (dsri_str_eq(s, "none"))
        *type = ROPE_NONE;
    else if (dsri_str_eq(s, "linear"))
        *type = ROPE_LINEAR;
    else if (dsri_str_eq(s, "yarn"))
        *type = ROPE_YARN;
    else
        return dsri_error(DSR1_ERR_UNSUPPORTED, "model: key '%s' is '%.*s' (none, linear and yarn are supported)",
                          key, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    return DSR1_OK;
}

static dsr1_status load_hparams(dsr1_model *m, rope_cfg *rc)
{
    dsri_hparams *hp = &m->hp;
    const dsri_gguf_tensor *embd = dsri_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!embd)
        return dsri_error(DSR1_ERR_FORMAT, "model: required tensor 'token_embd.weight' is missing");
    if (embd->ne[1] < 1 || embd->ne[1] > INT32_MAX)
        return dsri_error(DSR1_ERR_FORMAT, "model: tensor 'token_embd.weight' has %lld rows", (long long)embd->ne[1]);
    hp->n_vocab = (int32_t)embd->ne[1];
    hp->n_ctx_train = 4096;
    hp->rms_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    hp->expert_weights_scale = 1.0f;
    hp->expert_gating = 1; /* softmax when the key is absent (DeepSeek-V2 files) */
    hp->n_expert_groups = 1;
    hp->n_group_used = 1;
    hp->yarn_factor = 1.0f;
    rc->beta_fast = 32.0f;
    rc->beta_slow = 1.0f;

    int32_t n_block = 0, key_len = 0, val_len = 0, key_len_mla = 0, val_len_mla = 0;
    dsr1_status st;
    if ((st = dsri_hp_int(m, "context_length", 0, 1, INT32_MAX, &hp->n_ctx_train)) ||
        (st = dsri_hp_int(m, "embedding_length", 1, 1, 1 << 20, &hp->n_embd)) ||
        (st = dsri_hp_int(m, "block_count", 1, 1, 4096, &n_block)) ||
        (st = dsri_hp_int(m, "nextn_predict_layers", 0, 0, 16, &hp->n_nextn_layers)) ||
        (st = dsri_hp_int(m, "feed_forward_length", 1, 1, 1 << 24, &hp->n_ff)) ||
        (st = dsri_hp_int(m, "attention.head_count", 1, 1, 1 << 16, &hp->n_head)) ||
        (st = dsri_hp_int(m, "attention.q_lora_rank", 0, 0, 1 << 20, &hp->q_lora_rank)) ||
        (st = dsri_hp_int(m, "attention.kv_lora_rank", 1, 1, 1 << 20, &hp->kv_lora_rank)) ||
        (st = dsri_hp_int(m, "attention.key_length", 1, 2, 1 << 20, &key_len)) ||
        (st = dsri_hp_int(m, "attention.value_length", 1, 1, 1 << 20, &val_len)) ||
        (st = dsri_hp_int(m, "attention.key_length_mla", 0, 2, 1 << 20, &key_len_mla)) ||
        (st = dsri_hp_int(m, "attention.value_length_mla", 0, 1, 1 << 20, &val_len_mla)) ||
        (st = dsri_hp_int(m, "rope.dimension_count", 1, 2, 1 << 16, &hp->rope_dim)) ||
        (st = dsri_hp_float(m, "rope.freq_base", 0, &hp->rope_theta)) ||
        (st = dsri_hp_float(m, "attention.layer_norm_rms_epsilon", 0, &hp->rms_eps)) ||
        (st = dsri_hp_int(m, "leading_dense_block_count", 0, 0, 4096, &hp->n_leading_dense)) ||
        (st = dsri_hp_int(m, "expert_count", 1, 1, 1 << 16, &hp->n_expert)) ||
        (st = dsri_hp_int(m, "expert_used_count", 1, 1, 1 << 16, &hp->n_expert_used)) ||
        (st = dsri_hp_int(m, "expert_shared_count", 1, 0, 1 << 10, &hp->n_expert_shared)) ||
        (st = dsri_hp_int(m, "expert_feed_forward_length", 1, 1, 1 << 24, &hp->n_ff_expert)) ||
        (st = dsri_hp_float(m, "expert_weights_scale", 0, &hp->expert_weights_scale)) ||
        (st = dsri_hp_int(m, "expert_weights_norm", 0, 0, 1, &hp->expert_weights_norm)) ||
        (st = dsri_hp_int(m, "expert_gating_func", 0, 0, 2, &hp->expert_gating)) ||
        (st = dsri_hp_int(m, "expert_group_count", 0, 1, 1 << 16, &hp->n_expert_groups)) ||
        (st = dsri_hp_int(m, "expert_group_used_count", 0, 1, 1 << 16, &hp->n_group_used)) ||
        (st = read_rope_type(m, &rc->type)) ||
        (st = dsri_hp_float(m, "rope.scaling.factor", 0, &hp->yarn_factor)) ||
        (st = dsri_hp_int(m, "rope.scaling.original_context_length", 0, 1, INT32_MAX, &hp->yarn_orig_ctx)) ||
        (st = dsri_hp_float(m, "rope.scaling.yarn_log_multiplier", 0, &hp->yarn_log_mul)) ||
        (st = dsri_hp_float(m, "rope.scaling.yarn_beta_fast", 0, &rc->beta_fast)) ||
        (st = dsri_hp_float(m, "rope.scaling.yarn_beta_slow", 0, &rc->beta_slow)))
        return st;

    char pfx[40];
    snprintf(pfx, sizeof pfx, "%s.", m->arch_name);
    if (hp->n_nextn_layers >= n_block)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%snextn_predict_layers' (%d) leaves no main layer of %d blocks",
                          pfx, hp->n_nextn_layers, n_block);
    hp->n_layer = n_block - hp->n_nextn_layers;
    if (hp->expert_gating == 0)
        hp->expert_gating = 1;
    if (hp->expert_weights_scale == 0.0f) /* llama.cpp: 0 means no scaling */
        hp->expert_weights_scale = 1.0f;
    if (hp->n_leading_dense > hp->n_layer)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%sleading_dense_block_count' (%d) exceeds the %d layers", pfx,
                          hp->n_leading_dense, hp->n_layer);
    if (!(hp->rope_theta > 0.0f) || !(hp->rms_eps >= 0.0f))
        return dsri_error(DSR1_ERR_FORMAT, "model: '%srope.freq_base' must be > 0 and the rms epsilon >= 0", pfx);

    /* Head sizes. Files written since llama.cpp's MLA support (2025) store
     * the absorbed view in key_length/value_length (kv_lora + rope, kv_lora)
     * and the per-head sizes in the *_mla keys; older files store the
     * per-head sizes directly. */
    if (key_len_mla > 0 || val_len_mla > 0) {
        if (key_len_mla == 0 || val_len_mla == 0)
            return dsri_error(DSR1_ERR_FORMAT, "model: keys '%sattention.key_length_mla' and "
                              "'%sattention.value_length_mla' must both be present", pfx, pfx);
        if (key_len != hp->kv_lora_rank + hp->rope_dim || val_len != hp->kv_lora_rank)
            return dsri_error(DSR1_ERR_FORMAT,
                              "model: key '%sattention.key_length' (%d) / 'value_length' (%d) should be "
                              "kv_lora_rank + rope (%d) / kv_lora_rank (%d) in an MLA file", pfx, key_len, val_len,
                              hp->kv_lora_rank + hp->rope_dim, hp->kv_lora_rank);
        hp->head_dim_k = key_len_mla;
        hp->head_dim_v = val_len_mla;
    } else {
        hp->head_dim_k = key_len;
        hp->head_dim_v = val_len;
    }
    if (hp->rope_dim % 2 != 0 || hp->rope_dim >= hp->head_dim_k)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%srope.dimension_count' (%d) must be even and below the key "
                          "length %d", pfx, hp->rope_dim, hp->head_dim_k);
    hp->qk_nope_dim = hp->head_dim_k - hp->rope_dim;
    hp->n_head_kv = 1; /* the latent cache is one key/value "head" shared by all */

    if (hp->n_expert_used > hp->n_expert)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%sexpert_used_count' (%d) exceeds 'expert_count' (%d)", pfx,
                          hp->n_expert_used, hp->n_expert);
    dsri_router_config rcfg = {hp->n_expert, hp->n_expert_used, hp->n_expert_groups, hp->n_group_used,
                               hp->expert_gating, hp->expert_weights_norm, hp->expert_weights_scale};
    if (dsri_router_check(&rcfg) != 0)
        return dsri_error(DSR1_ERR_FORMAT,
                          "model: keys '%sexpert_count' %d, 'expert_used_count' %d, 'expert_group_count' %d, "
                          "'expert_group_used_count' %d, 'expert_gating_func' %d do not form a valid router",
                          pfx, hp->n_expert, hp->n_expert_used, hp->n_expert_groups, hp->n_group_used,
                          hp->expert_gating);

    if (rc->type == ROPE_NONE) {
        hp->yarn_factor = 1.0f;
    } else if (!(hp->yarn_factor > 0.0f)) {
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%srope.scaling.factor' must be > 0", pfx);
    }
    if (rc->type == ROPE_YARN && hp->yarn_orig_ctx == 0)
        hp->yarn_orig_ctx = hp->n_ctx_train;
    if (!(hp->yarn_log_mul >= 0.0f))
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%srope.scaling.yarn_log_multiplier' must be >= 0", pfx);
    return DSR1_OK;
}

/* ------------------------------------------------------------------------ */
/* RoPE frequencies (YaRN) and the softmax scale                              */
/* ------------------------------------------------------------------------ */

/* ggml_rope_yarn_corr_dim: the dimension whose wavelength fits n_rot times
 * into the original context. Float arithmetic as in ggml. */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base)
{
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2.0f * 3.14159265358979323846f)) / (2.0f * logf(base));
}

static dsr1_status init_rope(dsr1_model *m, const rope_cfg *rc)
{
    const dsri_hparams *hp = &m->hp;
    const int half = hp->rope_dim / 2;
    dsr1_status st = dsri_model_floats(m, half, &m->rope_freq, &m->rope_freq_t);
    if (st)
        return st;
    const float freq_scale = 1.0f / hp->yarn_factor;
    float lo = 0.0f, hi = 0.0f;
    if (rc->type == ROPE_YARN) {
        lo = floorf(yarn_corr_dim(hp->rope_dim, hp->yarn_orig_ctx, rc->beta_fast, hp->rope_theta));
        hi = ceilf(yarn_corr_dim(hp->rope_dim, hp->yarn_orig_ctx, rc->beta_slow, hp->rope_theta));
        lo = lo > 0.0f ? lo : 0.0f;
        hi = hi < (float)(hp->rope_dim - 1) ? hi : (float)(hp->rope_dim - 1);
    }
    for (int i = 0; i < half; i++) {
        double f = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
        if (rc->type == ROPE_LINEAR) {
            f *= freq_scale;
        } else if (rc->type == ROPE_YARN) {
            /* ggml rope_yarn with ext_factor 1: the angle pos*f*((1-r)*fs + r)
             * mixes interpolation (fs) and extrapolation (1) by the ramp r,
             * 1 for the fast dims below lo, 0 above hi. */
            float y = ((float)i - lo) / (hi - lo > 0.001f ? hi - lo : 0.001f);
            float ramp = 1.0f - (y < 0.0f ? 0.0f : y > 1.0f ? 1.0f : y);
            f *= (double)(freq_scale * (1.0f - ramp) + ramp);
        }
        m->rope_freq[i] = (float)f;
    }
    m->rope_mscale = 1.0f;
    float mscale = 1.0f;
    if (rc->type == ROPE_YARN && hp->yarn_log_mul > 0.0f)
        mscale = 1.0f + hp->yarn_log_mul * logf(hp->yarn_factor);
    m->attn_scale = mscale * mscale / sqrtf((float)hp->head_dim_k);
    return DSR1_OK;
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                    */
/* ------------------------------------------------------------------------ */

/* The router's selection bias steers scores in (0, 1): beyond this
 * magnitude float spacing (1e4 * 2^-24, about 6e-4) starts to erase the
 * scores it is added to, so no trained correction is that large. */
#define ROUTER_BIAS_MAX 1e4f

static dsr1_status bind_layer(dsr1_model *m, int l)
{
    const dsri_hparams *hp = &m->hp;
    dsri_layer *L = &m->layers[l];
    const int64_t d = hp->n_embd, H = hp->n_head, dk = hp->head_dim_k, dv = hp->head_dim_v;
    const int64_t R = hp->kv_lora_rank, r = hp->rope_dim, nope = hp->qk_nope_dim;
    dsr1_status st;
    if ((st = dsri_bind_vector(m, &L->attn_norm, 1, d, "blk.%d.attn_norm.weight", l)))
        return st;
    if (hp->q_lora_rank > 0) {
        if ((st = dsri_bind_matrix(m, &L->wq_a, 1, d, hp->q_lora_rank, "blk.%d.attn_q_a.weight", l)) ||
            (st = dsri_bind_vector(m, &L->attn_q_a_norm, 1, hp->q_lora_rank, "blk.%d.attn_q_a_norm.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->wq_b, 1, hp->q_lora_rank, H * dk, "blk.%d.attn_q_b.weight", l)))
            return st;
    } else if ((st = dsri_bind_matrix(m, &L->wq, 1, d, H * dk, "blk.%d.attn_q.weight", l))) {
        return st;
    }
    if ((st = dsri_bind_matrix(m, &L->wkv_a_mqa, 1, d, R + r, "blk.%d.attn_kv_a_mqa.weight", l)) ||
        (st = dsri_bind_vector(m, &L->attn_kv_a_norm, 1, R, "blk.%d.attn_kv_a_norm.weight", l)))
        return st;
    /* per-head up-projections: split (attn_k_b [nope, R, H], attn_v_b
     * [R, dv, H]) or, in older files, one attn_kv_b [R, H*(nope+dv)] */
    char name[96];
    snprintf(name, sizeof name, "blk.%d.attn_k_b.weight", l);
    if (dsri_gguf_find_tensor(m->gguf, name)) {
        if ((st = dsri_bind_experts(m, &L->wk_b, nope, R, H, "blk.%d.attn_k_b.weight", l)) ||
            (st = dsri_bind_experts(m, &L->wv_b, R, dv, H, "blk.%d.attn_v_b.weight", l)))
            return st;
    } else {
        snprintf(name, sizeof name, "blk.%d.attn_kv_b.weight", l);
        if (!dsri_gguf_find_tensor(m->gguf, name))
            return dsri_error(DSR1_ERR_FORMAT, "model: required tensors 'blk.%d.attn_k_b.weight' and "
                              "'blk.%d.attn_v_b.weight' (or the older 'blk.%d.attn_kv_b.weight') are missing",
                              l, l, l);
        if ((st = dsri_bind_matrix(m, &L->wkv_b, 1, R, H * (nope + dv), "blk.%d.attn_kv_b.weight", l)))
            return st;
    }
    if ((st = dsri_bind_matrix(m, &L->wo, 1, H * dv, d, "blk.%d.attn_output.weight", l)) ||
        (st = dsri_bind_vector(m, &L->ffn_norm, 1, d, "blk.%d.ffn_norm.weight", l)))
        return st;

    if (l < hp->n_leading_dense) {
        if ((st = dsri_bind_matrix(m, &L->ffn_gate, 1, d, hp->n_ff, "blk.%d.ffn_gate.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->ffn_up, 1, d, hp->n_ff, "blk.%d.ffn_up.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->ffn_down, 1, hp->n_ff, d, "blk.%d.ffn_down.weight", l)))
            return st;
        return DSR1_OK;
    }
    const int64_t ff = hp->n_ff_expert, E = hp->n_expert, ffs = ff * hp->n_expert_shared;
    if ((st = dsri_bind_matrix(m, &L->ffn_gate_inp, 1, d, E, "blk.%d.ffn_gate_inp.weight", l)) ||
        (st = dsri_bind_vector(m, &L->exp_probs_b, 0, E, "blk.%d.exp_probs_b.bias", l)) ||
        (st = dsri_check_vector_range(dsri_vec(&L->exp_probs_b), E, -ROUTER_BIAS_MAX, ROUTER_BIAS_MAX, "blk.%d.exp_probs_b.bias",
                                      l)) ||
        (st = dsri_bind_experts(m, &L->ffn_gate_exps, d, ff, E, "blk.%d.ffn_gate_exps.weight", l)) ||
        (st = dsri_bind_experts(m, &L->ffn_up_exps, d, ff, E, "blk.%d.ffn_up_exps.weight", l)) ||
        (st = dsri_bind_experts(m, &L->ffn_down_exps, ff, d, E, "blk.%d.ffn_down_exps.weight", l)))
        return st;
    if (ffs > 0 &&
        ((st = dsri_bind_matrix(m, &L->ffn_gate_shexp, 1, d, ffs, "blk.%d.ffn_gate_shexp.weight", l)) ||
         (st = dsri_bind_matrix(m, &L->ffn_up_shexp, 1, d, ffs, "blk.%d.ffn_up_shexp.weight", l)) ||
         (st = dsri_bind_matrix(m, &L->ffn_down_shexp, 1, ffs, d, "blk.%d.ffn_down_shexp.weight", l))))
        return st;
    return DSR1_OK;
}

static dsr1_status bind_nextn(dsr1_model *m, int l)
{
    const int64_t d = m->hp.n_embd;
    dsri_layer *L = &m->layers[l];
    dsr1_status st;
    if ((st = dsri_bind_matrix(m, &L->nextn_eh_proj, 1, 2 * d, d, "blk.%d.nextn.eh_proj.weight", l)) ||
        (st = dsri_bind_vector(m, &L->nextn_enorm, 1, d, "blk.%d.nextn.enorm.weight", l)) ||
        (st = dsri_bind_vector(m, &L->nextn_hnorm, 1, d, "blk.%d.nextn.hnorm.weight", l)) ||
        (st = dsri_bind_vector(m, &L->nextn_shared_head_norm, 1, d, "blk.%d.nextn.shared_head_norm.weight", l)) ||
        (st = dsri_bind_matrix(m, &L->nextn_embed_tokens, 0, d, m->hp.n_vocab,
                               "blk.%d.nextn.embed_tokens.weight", l)) ||
        (st = dsri_bind_matrix(m, &L->nextn_shared_head_head, 0, d, m->hp.n_vocab,
                               "blk.%d.nextn.shared_head_head.weight", l)))
        return st;
    if (!L->nextn_embed_tokens.buf)
        L->nextn_embed_tokens = m->tok_embd;
    if (!L->nextn_shared_head_head.buf)
        L->nextn_shared_head_head = m->output;
    return DSR1_OK;
}

static dsr1_status ds2_load(dsr1_model *m)
{
    rope_cfg rc;
    dsr1_status st = load_hparams(m, &rc);
    if (st)
        return st;
    dsri_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;
    if ((st = dsri_bind_matrix(m, &m->tok_embd, 1, d, hp->n_vocab, "token_embd.weight", 0)) ||
        (st = dsri_bind_vector(m, &m->output_norm, 1, d, "output_norm.weight", 0)) ||
        (st = dsri_bind_matrix(m, &m->output, 0, d, hp->n_vocab, "output.weight", 0)))
        return st;
    if (!m->output.buf)
        m->output = m->tok_embd;

    /* The MTP block is optional: files that declare it but were converted
     * without its tensors run as plain models. */
    if (hp->n_nextn_layers > 0) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.nextn.eh_proj.weight", hp->n_layer);
        if (!dsri_gguf_find_tensor(m->gguf, name)) {
            dsri_log(&m->log, DSR1_LOG_WARN, "model: %d multi-token-prediction layer(s) declared but '%s' is "
                     "missing; running without them", hp->n_nextn_layers, name);
            hp->n_nextn_layers = 0;
        }
    }
    const int n_all = hp->n_layer + hp->n_nextn_layers;
    m->layers = dsri_calloc((size_t)n_all, sizeof *m->layers);
    if (!m->layers)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
    for (int l = 0; l < n_all; l++)
        if ((st = bind_layer(m, l)) || (l >= hp->n_layer && (st = bind_nextn(m, l))))
            return st;

    /* the cache: normed latent c_KV then the rotated shared key k_R */
    m->kv_k_width = (int64_t)hp->kv_lora_rank + hp->rope_dim;
    m->kv_v_width = 0;
    return init_rope(m, &rc);
}

/* ------------------------------------------------------------------------ */
/* Scratch layout                                                             */
/* ------------------------------------------------------------------------ */

typedef struct ds2_scratch {
    dsri_tensor x;      /* residual stream, n x d */
    dsri_tensor h;      /* normed input / sublayer output, n x d */
    dsri_tensor qa;     /* n x q_lora */
    dsri_tensor q;      /* queries, n x H*dk ([nope | rope] per head) */
    dsri_tensor kva;    /* n x (R + r): latent then rope key */
    dsri_tensor qabs;   /* absorbed queries, n x H*(R + r) */
    dsri_tensor latt;   /* attention over the latent, n x H*R */
    dsri_tensor att;    /* attention output, n x H*dv */
    dsri_tensor heads;  /* matmul_heads work, 2 x kcap x max(R, nope, dv) */
    dsri_tensor lat;    /* cached latents as f32, kcap x R */
    dsri_tensor kdec;   /* decompressed keys, kcap x H*dk */
    dsri_tensor vdec;   /* decompressed values, kcap x H*dv */
    dsri_tensor gate;   /* n x ffmax */
    dsri_tensor up;     /* n x ffmax */
    dsri_tensor moe;    /* routed experts' output, n x d */
    dsri_tensor moe_work; /* moe_ffn work */
    dsri_tensor rlog;   /* router logits, n x E */
    dsri_tensor rw;     /* chosen weights, n x n_used */
    dsri_tensor rid;    /* chosen experts (i32), n x n_used */
    dsri_tensor eh;     /* MTP input [enorm(e) | hnorm(h)], n x 2d */
    dsri_tensor hin;    /* MTP hidden states given by the caller, n x d */
} ds2_scratch;

static int64_t ffmax(const dsri_hparams *hp)
{
    int64_t a = hp->n_ff, b = (int64_t)hp->n_ff_expert * (hp->n_expert_shared > 1 ? hp->n_expert_shared : 1);
    return a > b ? a : b;
}

static int64_t headmax(const dsri_hparams *hp)
{
    int64_t a = hp->kv_lora_rank, b = hp->qk_nope_dim, c = hp->head_dim_v;
    return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

/* Lay the buffers out in run r's scratch (r NULL: just count floats). n
 * rows, kcap keys. */
static int64_t layout(const dsr1_model *m, const dsri_run *r, int64_t n, int64_t kcap, ds2_scratch *s)
{
    const dsri_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, H = hp->n_head, R = hp->kv_lora_rank, rd = hp->rope_dim;
    const int64_t ff = hp->n_ff_expert, K = hp->n_expert_used;
    int64_t off = 0;
#define TAKE(field, cols, rows)                                                                                 \
    do {                                                                                                       \
        if (r)                                                                                                 \
            s->field = dsri_scratch(r, off, (cols), (rows));                                                   \
        off += (cols) * (rows);                                                                                \
    } while (0)
    TAKE(x, d, n);
    TAKE(h, d, n);
    TAKE(qa, hp->q_lora_rank, n);
    TAKE(q, H * hp->head_dim_k, n);
    TAKE(kva, R + rd, n);
    TAKE(qabs, H * (R + rd), n);
    TAKE(latt, H * R, n);
    TAKE(att, H * hp->head_dim_v, n);
    TAKE(heads, 2 * kcap * headmax(hp), 1);
    TAKE(lat, R, kcap);
    TAKE(kdec, H * hp->head_dim_k, kcap);
    TAKE(vdec, H * hp->head_dim_v, kcap);
    TAKE(gate, ffmax(hp), n);
    TAKE(up, ffmax(hp), n);
    TAKE(moe, d, n);
    TAKE(moe_work, n * (d + 2 * ff) + 2 * n, 1);
    TAKE(rlog, hp->n_expert, n);
    TAKE(rw, K, n);
    TAKE(rid, K, n);
    TAKE(eh, 2 * d, n);
    TAKE(hin, d, n);
#undef TAKE
    if (r)
        s->rid.type = DSRI_TYPE_I32_ID; /* i32: the same size as f32 */
    return off;
}

static int64_t ds2_scratch_floats(const dsr1_model *m, int n_batch, int n_ctx)
{
    (void)n_ctx;
    ds2_scratch s;
    return layout(m, NULL, n_batch, n_batch, &s);
}

/* ------------------------------------------------------------------------ */
/* Forward pass                                                               */
/* ------------------------------------------------------------------------ */

/* A dense n x (parts*width) tensor seen as n*parts rows of width (one row
 * per head). */
static dsri_tensor per_head(const dsri_tensor *t, int64_t parts)
{
    dsri_tensor v = *t;
    v.cols = t->cols / parts;
    v.rows = t->rows * parts;
    v.stride = t->stride / (uint64_t)parts;
    return v;
}

/* Batches of up to this many rows (one token, or a token and its
 * speculative draft) take the absorbed path, like single tokens: every op
 * computes a row independently of the others in the batch, so each row
 * comes out bit for bit as if evaluated alone, and speculative decoding
 * gives exactly the tokens of plain decoding. */
#define MLA_DECODE_ROWS 2

/* Multi-head latent attention of layer l for the normed input s->h (n rows);
 * leaves W_O o in s->h. */
static void mla_attention(dsr1_context *ctx, const dsri_run *run, int l, const int32_t *pos, int n,
                          const ds2_scratch *s)
{
    const dsr1_model *m = ctx->model;
    const dsri_hparams *hp = &m->hp;
    const dsri_layer *L = &run->w->layers[l];
    const dsri_backend_ops *op = run->ops;
    dsri_backend *be = run->be;
    const int H = hp->n_head, dk = hp->head_dim_k, dv = hp->head_dim_v, r = hp->rope_dim;
    const int64_t R = hp->kv_lora_rank, nope = hp->qk_nope_dim, kw = R + r;
    const int split = L->wk_b.buf != NULL;
    const dsri_tensor *freq = &run->w->rope_freq;

    /* queries: c_Q = RMSNorm(W_DQ h), q = W_UQ c_Q (or q = W_Q h); latent
     * and shared rope key: [c_KV | k_R] = W_DKV h. Both products of h at once. */
    const int q_lora = hp->q_lora_rank > 0;
    const dsri_tensor from_h_w[2] = {q_lora ? L->wq_a : L->wq, L->wkv_a_mqa}, from_h[2] = {q_lora ? s->qa : s->q, s->kva};
    dsri_matmul_n(op, be, 2, from_h_w, &s->h, from_h);
    if (q_lora) {
        op->rmsnorm(be, &s->qa, &L->attn_q_a_norm, &s->qa, hp->rms_eps);
        op->matmul(be, &L->wq_b, &s->qa, &s->q);
    }
    dsri_tensor q_rope = dsri_cols(&s->q, nope, (int64_t)H * dk - nope), k_rope = dsri_cols(&s->kva, R, r),
                c_kv = dsri_cols(&s->kva, 0, R);
    op->rope(be, &q_rope, H, dk, r, pos, freq, m->rope_mscale, 0);
    op->rope(be, &k_rope, 1, r, r, pos, freq, m->rope_mscale, 0);
    op->rmsnorm(be, &c_kv, &L->attn_kv_a_norm, &c_kv, hp->rms_eps);
    dsri_tensor cache_new = dsri_rows(&ctx->k[l], pos[0], n); /* positions are consecutive */
    op->copy(be, &s->kva, &cache_new);
    const int64_t n_keys = (int64_t)pos[n - 1] + 1;
    const dsri_tensor cache = dsri_rows(&ctx->k[l], 0, n_keys); /* rows of kw elements of ctx->kv_type */

    if (n > MLA_DECODE_ROWS && n_keys <= ctx->n_batch) {
        /* decompressed: k_C = W_UK c, v = W_UV c for every cached position */
        dsri_tensor lat = dsri_rows(&s->lat, 0, n_keys), cache_lat = dsri_cols(&cache, 0, R);
        dsri_tensor kdec = dsri_rows(&s->kdec, 0, n_keys), vdec = dsri_rows(&s->vdec, 0, n_keys);
        op->copy(be, &cache_lat, &lat);
        if (split) {
            /* attn_v_b stores the heads' value blocks one after the other,
             * so one product over all its rows writes the n_keys x H*dv
             * values directly */
            op->matmul(be, &L->wv_b, &lat, &vdec);
            dsri_tensor kb = dsri_rows(&L->wk_b, 0, R); /* head 0: [R rows of nope] */
            op->matmul_heads(be, &kb, R, H, 1, &lat, 0, &kdec, dk, &s->heads);
        } else { /* attn_kv_b interleaves each head's key and value rows */
            dsri_tensor kb = dsri_rows(&L->wkv_b, 0, nope), vb = dsri_rows(&L->wkv_b, nope, dv);
            op->matmul_heads(be, &kb, nope + dv, H, 0, &lat, 0, &kdec, dk, &s->heads);
            op->matmul_heads(be, &vb, nope + dv, H, 0, &lat, 0, &vdec, dv, &s->heads);
        }
        dsri_tensor cache_rope = dsri_cols(&cache, R, r);
        for (int hh = 0; hh < H; hh++) {
            dsri_tensor kr = dsri_cols(&kdec, (int64_t)hh * dk + nope, r);
            op->copy(be, &cache_rope, &kr);
        }
        op->attention(be, &s->q, &kdec, &vdec, &s->att, pos, H, H, dk, dv, m->attn_scale);
    } else {
        /* absorbed: q_lat = W_UK^T q_C per head, attention over [c | k_R]
         * as one shared head, then v = W_UV (attention-weighted c) */
        if (split) {
            dsri_tensor kb = dsri_rows(&L->wk_b, 0, R);
            op->matmul_heads(be, &kb, R, H, 0, &s->q, dk, &s->qabs, kw, &s->heads);
        } else {
            dsri_tensor kb = dsri_rows(&L->wkv_b, 0, nope);
            op->matmul_heads(be, &kb, nope + dv, H, 1, &s->q, dk, &s->qabs, kw, &s->heads);
        }
        dsri_tensor q_heads = per_head(&s->q, H), qabs_heads = per_head(&s->qabs, H);
        dsri_tensor q_r = dsri_cols(&q_heads, nope, r), qabs_r = dsri_cols(&qabs_heads, R, r);
        op->copy(be, &q_r, &qabs_r);
        dsri_tensor cache_v = dsri_cols(&cache, 0, R);
        op->attention(be, &s->qabs, &cache, &cache_v, &s->latt, pos, H, 1, (int)kw, (int)R, m->attn_scale);
        dsri_tensor vb = split ? dsri_rows(&L->wv_b, 0, dv) : dsri_rows(&L->wkv_b, nope, dv);
        op->matmul_heads(be, &vb, split ? dv : nope + dv, H, 0, &s->latt, R, &s->att, dv, &s->heads);
    }
    op->matmul(be, &L->wo, &s->att, &s->h);
}

/* SwiGLU feed-forward down(silu(gate x) * up x) of the rows of in into out. */
static void swiglu(const dsri_run *run, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                   const dsri_tensor *in, const dsri_tensor *out, const ds2_scratch *s)
{
    const dsri_backend_ops *op = run->ops;
    dsri_tensor g = dsri_cols(&s->gate, 0, gate->rows), u = dsri_cols(&s->up, 0, gate->rows);
    g.stride = u.stride = (uint64_t)gate->rows * sizeof(float); /* dense n x ff */
    const dsri_tensor gate_up_w[2] = {*gate, *up}, gate_up[2] = {g, u};
    dsri_matmul_n(op, run->be, 2, gate_up_w, in, gate_up);
    op->silu_mul(run->be, &g, &u);
    op->matmul(run->be, down, &g, out);
}

/* The routed experts of layer l on another run than the layer's (experts in
 * host memory, dsr1_model_params.cpu_moe): the normed input and the router's
 * choice go there, the experts' sum comes back into s->moe. Two transfers
 * each way per layer; the layer's run waits for them. */
static dsr1_status routed_elsewhere(dsr1_context *ctx, const dsri_run *run, const dsri_run *er, int l,
                                    const ds2_scratch *s)
{
    const dsri_hparams *hp = &ctx->model->hp;
    const dsri_layer *E = &er->w->layers[l];
    ds2_scratch t;
    layout(ctx->model, er, s->h.rows, ctx->n_batch, &t);
    dsr1_status st;
    if ((st = dsri_ctx_move(ctx, run, &s->h, er, &t.h)) || (st = dsri_ctx_move(ctx, run, &s->rid, er, &t.rid)) ||
        (st = dsri_ctx_move(ctx, run, &s->rw, er, &t.rw)))
        return st;
    er->ops->moe_ffn(er->be, &E->ffn_gate_exps, &E->ffn_up_exps, &E->ffn_down_exps, hp->n_ff_expert, &t.h, &t.rid,
                     &t.rw, &t.moe, &t.moe_work);
    if ((st = er->ops->sync(er->be)))
        return st;
    return dsri_ctx_move(ctx, er, &t.moe, run, &s->moe);
}

/* Routed and shared experts of layer l for the normed input s->h; leaves the
 * sum in s->h. */
static dsr1_status moe_ffn(dsr1_context *ctx, const dsri_run *run, int l, const ds2_scratch *s)
{
    const dsri_hparams *hp = &ctx->model->hp;
    const dsri_layer *L = &run->w->layers[l];
    const dsri_backend_ops *op = run->ops;
    dsri_backend *be = run->be;
    const dsri_router_config rc = {hp->n_expert, hp->n_expert_used, hp->n_expert_groups, hp->n_group_used,
                                   hp->expert_gating, hp->expert_weights_norm, hp->expert_weights_scale};

    /* router: f32 logits from the f32 activations, then the choice */
    op->matmul(be, &L->ffn_gate_inp, &s->h, &s->rlog);
    op->moe_route(be, &rc, &s->rlog, &L->exp_probs_b, &s->rid, &s->rw);
    const dsri_run *er = dsri_ctx_expert_run(ctx, l);
    if (er == run) {
        op->moe_ffn(be, &L->ffn_gate_exps, &L->ffn_up_exps, &L->ffn_down_exps, hp->n_ff_expert, &s->h, &s->rid,
                    &s->rw, &s->moe, &s->moe_work);
    } else {
        dsr1_status st = routed_elsewhere(ctx, run, er, l, s);
        if (st)
            return st;
    }
    if (L->ffn_gate_shexp.buf) {
        swiglu(run, &L->ffn_gate_shexp, &L->ffn_up_shexp, &L->ffn_down_shexp, &s->h, &s->h, s);
        op->add(be, &s->h, &s->moe); /* shared + routed (IEEE addition commutes) */
    } else {
        op->copy(be, &s->moe, &s->h);
    }
    return DSR1_OK;
}

/* One transformer block on the residual stream s->x. */
static dsr1_status block(dsr1_context *ctx, const dsri_run *run, int l, const int32_t *pos, int n,
                         const ds2_scratch *s)
{
    const dsri_hparams *hp = &ctx->model->hp;
    const dsri_layer *L = &run->w->layers[l];
    const dsri_backend_ops *op = run->ops;

    op->rmsnorm(run->be, &s->x, &L->attn_norm, &s->h, hp->rms_eps);
    mla_attention(ctx, run, l, pos, n, s);
    op->add(run->be, &s->x, &s->h);

    op->rmsnorm(run->be, &s->x, &L->ffn_norm, &s->h, hp->rms_eps);
    if (l < hp->n_leading_dense) {
        swiglu(run, &L->ffn_gate, &L->ffn_up, &L->ffn_down, &s->h, &s->h, s);
    } else {
        dsr1_status st = moe_ffn(ctx, run, l, s);
        if (st)
            return st;
    }
    op->add(run->be, &s->x, &s->h);
    return DSR1_OK;
}

/* Normed final states x (rows [first, n)) through the output head `head`
 * (norm `norm`) into logits. */
static dsr1_status output(dsr1_context *ctx, const dsri_run *run, const dsri_tensor *norm, const dsri_tensor *head,
                          const ds2_scratch *s, int first, int n, float *logits)
{
    dsri_tensor xo = dsri_rows(&s->x, first, n - first), ho = dsri_rows(&s->h, 0, n - first);
    run->ops->rmsnorm(run->be, &xo, norm, &ho, ctx->model->hp.rms_eps);
    return dsri_ctx_output(ctx, run, head, &ho, logits);
}

static dsr1_status ds2_forward(dsr1_context *ctx, const dsr1_token *tokens, const int32_t *pos, int n,
                               float *logits, int logits_all)
{
    const dsr1_model *m = ctx->model;
    const dsri_hparams *hp = &m->hp;
    ds2_scratch s;
    dsr1_status st;

    const dsri_run *r = dsri_ctx_run(ctx, 0);
    layout(m, r, n, ctx->n_batch, &s);
    r->ops->get_rows(r->be, &r->w->tok_embd, tokens, &s.x);
    for (int l = 0; l < hp->n_layer; l++) {
        if ((st = dsri_ctx_check_abort(ctx)))
            return st;
        if (dsri_ctx_run(ctx, l) != r) { /* a placement boundary: the residual stream moves */
            const dsri_run *next = dsri_ctx_run(ctx, l);
            ds2_scratch t;
            layout(m, next, n, ctx->n_batch, &t);
            if ((st = dsri_ctx_move(ctx, r, &s.x, next, &t.x)))
                return st;
            r = next;
            s = t;
        }
        if ((st = block(ctx, r, l, pos, n, &s)))
            return st;
    }
    /* the last layer runs where the output head does (placement.c) */
    if (ctx->hidden.buf) { /* the final hidden states, for the MTP head */
        dsri_tensor hid = dsri_rows(&ctx->hidden, 0, n);
        r->ops->copy(r->be, &s.x, &hid);
        ctx->hidden_pos = pos[0];
        ctx->n_hidden = n;
    }
    if (!logits)
        return dsri_ctx_sync(ctx);
    if ((st = output(ctx, r, &r->w->output_norm, &r->w->output, &s, logits_all ? 0 : n - 1, n, logits)))
        return st;
    return dsri_ctx_sync(ctx);
}

/* ------------------------------------------------------------------------ */
/* Multi-token prediction                                                     */
/* ------------------------------------------------------------------------ */

int dsri_deepseek2_has_mtp(const dsr1_model *m)
{
    return m && m->arch == &dsri_arch_deepseek2 && m->hp.n_nextn_layers > 0;
}

/* The MTP block on n rows of consecutive positions (checked by the callers):
 * x = eh_proj [RMSNorm(Emb(t_{i+1})) ; RMSNorm(h_i)], one transformer block
 * (attention over the MTP cache layer), the shared head. hidden: n rows of
 * n_embd in the memory of the MTP layer's run. logits: n rows, or only the
 * last row's unless logits_all, or none when NULL. */
static dsr1_status mtp_forward(dsr1_context *ctx, const dsri_tensor *hidden, const dsr1_token *next_tokens,
                               const int32_t *pos, int n, float *logits, int logits_all)
{
    const dsr1_model *m = ctx->model;
    const dsri_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;
    const int l = hp->n_layer;
    const dsri_run *run = dsri_ctx_run(ctx, l);
    const dsri_backend_ops *op = run->ops;
    dsri_backend *be = run->be;
    const dsri_layer *L = &run->w->layers[l];
    ds2_scratch s;
    layout(m, run, n, ctx->n_batch, &s);

    dsri_tensor e = dsri_cols(&s.eh, 0, d), hn = dsri_cols(&s.eh, d, d);
    op->get_rows(be, &L->nextn_embed_tokens, next_tokens, &e);
    op->rmsnorm(be, &e, &L->nextn_enorm, &e, hp->rms_eps);
    op->rmsnorm(be, hidden, &L->nextn_hnorm, &hn, hp->rms_eps);
    op->matmul(be, &L->nextn_eh_proj, &s.eh, &s.x);
    dsr1_status st = block(ctx, run, l, pos, n, &s);
    if (st)
        return st;
    if (!logits)
        return dsri_ctx_sync(ctx);
    st = output(ctx, run, &L->nextn_shared_head_norm, &L->nextn_shared_head_head, &s,
                            logits_all ? 0 : n - 1, n, logits);
    return st ? st : dsri_ctx_sync(ctx);
}

static dsr1_status check_mtp_rows(const dsr1_context *ctx, const dsr1_token *next_tokens, const int32_t *pos, int n)
{
    if (n < 1 || n > ctx->n_batch)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "deepseek2 MTP: %d rows (1..n_batch=%d)", n, ctx->n_batch);
    for (int t = 0; t < n; t++)
        if (pos[t] < 0 || pos[t] >= ctx->n_ctx || (t > 0 && pos[t] != pos[t - 1] + 1) || next_tokens[t] < 0 ||
            next_tokens[t] >= ctx->model->hp.n_vocab)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "deepseek2 MTP: row %d (position %d, token %d) is invalid",
                              t, pos[t], next_tokens[t]);
    return DSR1_OK;
}

dsr1_status dsri_deepseek2_mtp(dsr1_context *ctx, const float *hidden, const dsr1_token *next_tokens,
                               const int32_t *pos, int n, float *logits)
{
    const dsr1_model *m = ctx->model;
    if (!dsri_deepseek2_has_mtp(m))
        return dsri_error(DSR1_ERR_UNSUPPORTED, "deepseek2 MTP: the model has no multi-token-prediction block");
    dsr1_status st = check_mtp_rows(ctx, next_tokens, pos, n);
    if (st)
        return st;
    /* the entries from pos[0] on are overwritten with rows the context
     * cannot vouch for */
    if (ctx->mtp_n_past > pos[0])
        ctx->mtp_n_past = pos[0];
    const dsri_run *run = dsri_ctx_run(ctx, m->hp.n_layer);
    ds2_scratch s;
    layout(m, run, n, ctx->n_batch, &s);
    if ((st = run->ops->upload(run->be, &s.hin, hidden)))
        return st;
    return mtp_forward(ctx, &s.hin, next_tokens, pos, n, logits, 1);
}

dsr1_status dsri_deepseek2_mtp_draft(dsr1_context *ctx, dsr1_token next, dsr1_token *draft, float *draft_p)
{
    if (draft)
        *draft = -1;
    if (draft_p)
        *draft_p = 0.0f;
    const dsr1_model *m = ctx->model;
    if (!dsri_deepseek2_has_mtp(m) || !ctx->hidden.buf)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "deepseek2 MTP: the model has no multi-token-prediction block");
    if (next < 0 || next >= m->hp.n_vocab)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "deepseek2 MTP: token %d is outside the vocabulary", next);
    const int32_t last = ctx->n_past - 1; /* the row whose next token is `next` */
    if (last < ctx->hidden_pos || last >= ctx->hidden_pos + ctx->n_hidden)
        return DSR1_OK; /* its hidden state is gone (or nothing was evaluated) */
    /* rows from the first stale entry; entries before hidden_pos that are
     * stale (the cache was filled without the MTP head) stay so */
    int32_t first = ctx->mtp_n_past > ctx->hidden_pos ? ctx->mtp_n_past : ctx->hidden_pos;
    if (first > last)
        first = last; /* drafted already: again, maybe after another token */
    const int n = (int)(last - first + 1);
    for (int t = 0; t < n; t++) {
        ctx->pos[t] = first + t;
        ctx->mtp_tokens[t] = t + 1 < n ? ctx->tokens[first + t + 1] : next;
    }
    dsri_tensor hidden = dsri_rows(&ctx->hidden, first - ctx->hidden_pos, n);
    dsr1_status st = mtp_forward(ctx, &hidden, ctx->mtp_tokens, ctx->pos, n, draft ? ctx->mtp_logits : NULL, 0);
    if (st)
        return st;
    ctx->mtp_n_past = ctx->n_past;
    ctx->mtp_next = next;
    if (draft) { /* greedy: the highest logit, ties to the lower id */
        const float *lg = ctx->mtp_logits;
        int32_t best = 0;
        for (int32_t v = 1; v < m->hp.n_vocab; v++)
            if (lg[v] > lg[best])
                best = v;
        *draft = best;
        if (draft_p) { /* softmax of the best: 1 / sum(exp(l - l_best)) */
            double sum = 0.0;
            for (int32_t v = 0; v < m->hp.n_vocab; v++)
                sum += exp((double)(lg[v] - lg[best]));
            *draft_p = (float)(1.0 / sum);
        }
    }
    return DSR1_OK;
}

static int ds2_can_draft(const dsr1_context *ctx)
{
    return dsri_deepseek2_has_mtp(ctx->model) && ctx->hidden.buf && ctx->n_batch >= 2;
}

/* A cached row is [c_KV | k_R]: only the shared rope key k_R rotates (the
 * latent c_KV carries no position), as in mla_attention. */
static void ds2_rotate_keys(const dsr1_context *ctx, const dsri_run *r, const dsri_tensor *k, const int32_t *delta)
{
    const dsri_hparams *hp = &ctx->model->hp;
    dsri_tensor k_rope = dsri_cols(k, hp->kv_lora_rank, hp->rope_dim);
    r->ops->rope(r->be, &k_rope, 1, hp->rope_dim, hp->rope_dim, delta, &r->w->rope_freq, 1.0f, 0);
}

const dsri_arch_ops dsri_arch_deepseek2 = {
    .name = "deepseek2",
    .load = ds2_load,
    .scratch_floats = ds2_scratch_floats,
    .forward = ds2_forward,
    .can_draft = ds2_can_draft,
    .draft = dsri_deepseek2_mtp_draft,
    .rotate_keys = ds2_rotate_keys,
};
