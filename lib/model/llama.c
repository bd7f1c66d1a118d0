/*
 * The dense decoder of the distilled R1 models:
 *   llama  (DeepSeek-R1-Distill-Llama, Llama 3): RoPE on adjacent pairs with
 *          the llama3 frequency divisors from rope_freqs.weight;
 *   qwen2  (DeepSeek-R1-Distill-Qwen): q/k/v biases, NEOX RoPE (pairs i, i+d/2);
 *   qwen3  (DeepSeek-R1-0528-Qwen3, Qwen3): no biases, an RMS norm over each
 *          head's query and key (attn_q_norm / attn_k_norm) before NEOX RoPE,
 *          and a head size of its own (attention.key_length), not n_embd/n_head.
 * Everything else is the same pre-norm transformer: RMSNorm, grouped-query
 * attention, SwiGLU feed-forward, final RMSNorm and the output projection.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/context.h"
#include "model/model.h"
#include "quant/quant.h"

static int is_qwen2(const dsr1_model *m)
{
    return m->arch == &dsri_arch_qwen2;
}

static int is_qwen3(const dsr1_model *m)
{
    return m->arch == &dsri_arch_qwen3;
}

static dsr1_status load_hparams(dsr1_model *m)
{
    dsri_hparams *hp = &m->hp;
    const dsri_gguf_tensor *embd = dsri_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!embd)
        return dsri_error(DSR1_ERR_FORMAT, "model: required tensor 'token_embd.weight' is missing");
    if (embd->ne[1] < 1 || embd->ne[1] > INT32_MAX)
        return dsri_error(DSR1_ERR_FORMAT, "model: tensor 'token_embd.weight' has %lld rows",
                          (long long)embd->ne[1]);
    hp->n_vocab = (int32_t)embd->ne[1];
    hp->n_ctx_train = 2048;
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    dsr1_status st;
    if ((st = dsri_hp_int(m, "context_length", 0, 1, INT32_MAX, &hp->n_ctx_train)) ||
        (st = dsri_hp_int(m, "embedding_length", 1, 1, 1 << 20, &hp->n_embd)) ||
        (st = dsri_hp_int(m, "block_count", 1, 1, 4096, &hp->n_layer)) ||
        (st = dsri_hp_int(m, "feed_forward_length", 1, 1, 1 << 24, &hp->n_ff)) ||
        (st = dsri_hp_int(m, "attention.head_count", 1, 1, 1 << 16, &hp->n_head)))
        return st;
    hp->n_head_kv = hp->n_head;
    if ((st = dsri_hp_int(m, "attention.head_count_kv", 0, 1, hp->n_head, &hp->n_head_kv)))
        return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return dsri_error(DSR1_ERR_FORMAT, "model: %d attention heads cannot be grouped over %d key/value heads",
                          hp->n_head, hp->n_head_kv);
    hp->head_dim_k = 0;
    if ((st = dsri_hp_int(m, "attention.key_length", 0, 2, 1 << 16, &hp->head_dim_k)))
        return st;
    if (hp->head_dim_k == 0) { /* the head size is implied only without the key */
        if (hp->n_embd % hp->n_head != 0)
            return dsri_error(DSR1_ERR_FORMAT, "model: embedding length %d is not a multiple of %d heads",
                              hp->n_embd, hp->n_head);
        hp->head_dim_k = hp->n_embd / hp->n_head;
    }
    hp->head_dim_v = hp->head_dim_k;
    if ((st = dsri_hp_int(m, "attention.value_length", 0, 1, 1 << 16, &hp->head_dim_v)))
        return st;
    if (hp->head_dim_v != hp->head_dim_k)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "model: key length %d differs from value length %d",
                          hp->head_dim_k, hp->head_dim_v);
    hp->rope_dim = hp->head_dim_k;
    if ((st = dsri_hp_int(m, "rope.dimension_count", 0, 2, hp->head_dim_k, &hp->rope_dim)))
        return st;
    if (hp->rope_dim % 2 != 0)
        return dsri_error(DSR1_ERR_FORMAT, "model: rope dimension count %d is odd", hp->rope_dim);
    if ((st = dsri_hp_float(m, "rope.freq_base", 0, &hp->rope_theta)) ||
        (st = dsri_hp_float(m, "attention.layer_norm_rms_epsilon", 0, &hp->rms_eps)))
        return st;
    if (!(hp->rope_theta > 0.0f) || !(hp->rms_eps >= 0.0f))
        return dsri_error(DSR1_ERR_FORMAT, "model: rope.freq_base must be > 0 and the rms epsilon >= 0");
    return DSR1_OK;
}

static dsr1_status bind_weights(dsr1_model *m)
{
    const dsri_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, dq = (int64_t)hp->n_head * hp->head_dim_k,
            dkv = (int64_t)hp->n_head_kv * hp->head_dim_k;
    int bias = is_qwen2(m), qk_norm = is_qwen3(m);
    dsr1_status st;
    if ((st = dsri_bind_matrix(m, &m->tok_embd, 1, d, hp->n_vocab, "token_embd.weight", 0)) ||
        (st = dsri_bind_vector(m, &m->output_norm, 1, d, "output_norm.weight", 0)) ||
        (st = dsri_bind_matrix(m, &m->output, 0, d, hp->n_vocab, "output.weight", 0)))
        return st;
    if (!m->output.buf)
        m->output = m->tok_embd; /* tied embeddings */
    dsri_tensor factors;
    if ((st = dsri_bind_vector(m, &factors, 0, hp->rope_dim / 2, "rope_freqs.weight", 0)))
        return st;
    m->rope_freq_factors = dsri_vec(&factors);
    for (int i = 0; m->rope_freq_factors && i < hp->rope_dim / 2; i++)
        if (!(m->rope_freq_factors[i] > 0.0f) || !isfinite(m->rope_freq_factors[i]))
            return dsri_error(DSR1_ERR_FORMAT, "model: rope_freqs.weight[%d] is not a positive number", i);

    m->layers = dsri_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        dsri_layer *L = &m->layers[l];
        if ((st = dsri_bind_vector(m, &L->attn_norm, 1, d, "blk.%d.attn_norm.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->wq, 1, d, dq, "blk.%d.attn_q.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->wk, 1, d, dkv, "blk.%d.attn_k.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->wv, 1, d, dkv, "blk.%d.attn_v.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->wo, 1, dq, d, "blk.%d.attn_output.weight", l)) ||
            (st = dsri_bind_vector(m, &L->bq, bias, dq, "blk.%d.attn_q.bias", l)) ||
            (st = dsri_bind_vector(m, &L->bk, bias, dkv, "blk.%d.attn_k.bias", l)) ||
            (st = dsri_bind_vector(m, &L->bv, bias, dkv, "blk.%d.attn_v.bias", l)) ||
            (st = dsri_bind_vector(m, &L->attn_q_norm, qk_norm, hp->head_dim_k, "blk.%d.attn_q_norm.weight", l)) ||
            (st = dsri_bind_vector(m, &L->attn_k_norm, qk_norm, hp->head_dim_k, "blk.%d.attn_k_norm.weight", l)) ||
            (st = dsri_bind_vector(m, &L->ffn_norm, 1, d, "blk.%d.ffn_norm.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->ffn_gate, 1, d, hp->n_ff, "blk.%d.ffn_gate.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->ffn_up, 1, d, hp->n_ff, "blk.%d.ffn_up.weight", l)) ||
            (st = dsri_bind_matrix(m, &L->ffn_down, 1, hp->n_ff, d, "blk.%d.ffn_down.weight", l)))
            return st;
    }
    m->kv_k_width = dkv;
    m->kv_v_width = dkv;
    m->attn_scale = 1.0f / sqrtf((float)hp->head_dim_k);
    return dsri_rope_init_standard(m);
}

static dsr1_status dense_load(dsr1_model *m)
{
    dsr1_status st = load_hparams(m);
    return st ? st : bind_weights(m);
}

static int64_t dense_scratch_floats(const dsr1_model *m, int n_batch, int n_ctx)
{
    (void)n_ctx;
    const dsri_hparams *hp = &m->hp;
    int64_t dq = (int64_t)hp->n_head * hp->head_dim_k, dkv = (int64_t)hp->n_head_kv * hp->head_dim_k;
    int64_t per_row = 2 * (int64_t)hp->n_embd + 2 * dq + 2 * dkv + 2 * (int64_t)hp->n_ff;
    return per_row * n_batch;
}

/* The scratch of one forward pass of n rows (float offsets in a run's
 * scratch, the same on every run so a boundary moves x to the same place). */
typedef struct dense_scratch {
    dsri_tensor x;    /* residual stream, n x d */
    dsri_tensor h;    /* normed input / sublayer output, n x d */
    dsri_tensor q;    /* n x dq */
    dsri_tensor att;  /* attention output, n x dq */
    dsri_tensor k;    /* n x dkv */
    dsri_tensor v;    /* n x dkv */
    dsri_tensor gate; /* n x ff */
    dsri_tensor up;   /* n x ff */
} dense_scratch;

static dense_scratch layout(const dsr1_model *m, const dsri_run *r, int64_t n)
{
    const dsri_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, ff = hp->n_ff;
    const int64_t dq = (int64_t)hp->n_head * hp->head_dim_k, dkv = (int64_t)hp->n_head_kv * hp->head_dim_k;
    dense_scratch s;
    int64_t off = 0;
#define TAKE(field, cols) (s.field = dsri_scratch(r, off, (cols), n), off += (cols) * n)
    TAKE(x, d);
    TAKE(h, d);
    TAKE(q, dq);
    TAKE(att, dq);
    TAKE(k, dkv);
    TAKE(v, dkv);
    TAKE(gate, ff);
    TAKE(up, ff);
#undef TAKE
    return s;
}

static dsr1_status dense_forward(dsr1_context *ctx, const dsr1_token *tokens, const int32_t *pos, int n,
                                 float *logits, int logits_all)
{
    const dsr1_model *m = ctx->model;
    const dsri_hparams *hp = &m->hp;
    const int64_t hd = hp->head_dim_k;
    const int neox = is_qwen2(m) || is_qwen3(m);

    const dsri_run *r = dsri_ctx_run(ctx, 0);
    dense_scratch s = layout(m, r, n);
    r->ops->get_rows(r->be, &r->w->tok_embd, tokens, &s.x);

    dsr1_status st;
    for (int l = 0; l < hp->n_layer; l++) {
        if ((st = dsri_ctx_check_abort(ctx)))
            return st;
        if (dsri_ctx_run(ctx, l) != r) { /* a placement boundary: the residual stream moves */
            const dsri_run *next = dsri_ctx_run(ctx, l);
            dense_scratch t = layout(m, next, n);
            if ((st = dsri_ctx_move(ctx, r, &s.x, next, &t.x)))
                return st;
            r = next;
            s = t;
        }
        const dsri_backend_ops *op = r->ops;
        dsri_backend *be = r->be;
        const dsri_layer *L = &r->w->layers[l];
        const dsri_tensor *freq = &r->w->rope_freq;
        dsri_tensor kc = dsri_rows(&ctx->k[l], pos[0], n), vc = dsri_rows(&ctx->v[l], pos[0], n);

        /* attention */
        op->rmsnorm(be, &s.x, &L->attn_norm, &s.h, hp->rms_eps);
        const dsri_tensor qkv_w[3] = {L->wq, L->wk, L->wv}, qkv[3] = {s.q, s.k, s.v};
        dsri_matmul_n(op, be, 3, qkv_w, &s.h, qkv);
        if (L->bq.buf) {
            op->add(be, &s.q, &L->bq);
            op->add(be, &s.k, &L->bk);
            op->add(be, &s.v, &L->bv);
        }
        if (L->attn_q_norm.buf) { /* qwen3: each head's query and key, as rows of hd */
            dsri_tensor qh = dsri_tensor_2d(s.q.buf, s.q.offset, DSRI_TYPE_F32, hd, n * hp->n_head);
            dsri_tensor kh = dsri_tensor_2d(s.k.buf, s.k.offset, DSRI_TYPE_F32, hd, n * hp->n_head_kv);
            op->rmsnorm(be, &qh, &L->attn_q_norm, &qh, hp->rms_eps);
            op->rmsnorm(be, &kh, &L->attn_k_norm, &kh, hp->rms_eps);
        }
        op->rope(be, &s.q, hp->n_head, (int)hd, hp->rope_dim, pos, freq, m->rope_mscale, neox);
        op->rope(be, &s.k, hp->n_head_kv, (int)hd, hp->rope_dim, pos, freq, m->rope_mscale, neox);
        op->copy(be, &s.k, &kc); /* positions are consecutive: one block of cache rows */
        op->copy(be, &s.v, &vc);
        op->attention(be, &s.q, &ctx->k[l], &ctx->v[l], &s.att, pos, hp->n_head, hp->n_head_kv, (int)hd, (int)hd,
                      m->attn_scale);
        op->matmul(be, &L->wo, &s.att, &s.h);
        op->add(be, &s.x, &s.h);

        /* SwiGLU feed-forward */
        op->rmsnorm(be, &s.x, &L->ffn_norm, &s.h, hp->rms_eps);
        const dsri_tensor gate_up_w[2] = {L->ffn_gate, L->ffn_up}, gate_up[2] = {s.gate, s.up};
        dsri_matmul_n(op, be, 2, gate_up_w, &s.h, gate_up);
        op->silu_mul(be, &s.gate, &s.up);
        op->matmul(be, &L->ffn_down, &s.gate, &s.h);
        op->add(be, &s.x, &s.h);
    }

    /* output: every row, or only the last */
    if (!logits)
        return dsri_ctx_sync(ctx);
    const dsri_run *o = &ctx->runs[ctx->output_run];
    if (o != r) {
        dense_scratch t = layout(m, o, n);
        if ((st = dsri_ctx_move(ctx, r, &s.x, o, &t.x)))
            return st;
        s = t;
    }
    int first = logits_all ? 0 : n - 1;
    dsri_tensor xo = dsri_rows(&s.x, first, n - first), ho = dsri_rows(&s.h, 0, n - first);
    o->ops->rmsnorm(o->be, &xo, &o->w->output_norm, &ho, hp->rms_eps);
    if ((st = dsri_ctx_output(ctx, o, &o->w->output, &ho, logits)))
        return st;
    return dsri_ctx_sync(ctx);
}

/* Cached keys are the n_head_kv heads of hd, rotated as in forward. */
static void dense_rotate_keys(const dsr1_context *ctx, const dsri_run *r, const dsri_tensor *k, const int32_t *delta)
{
    const dsr1_model *m = ctx->model;
    const dsri_hparams *hp = &m->hp;
    r->ops->rope(r->be, k, hp->n_head_kv, hp->head_dim_k, hp->rope_dim, delta, &r->w->rope_freq, 1.0f,
                 is_qwen2(m) || is_qwen3(m));
}

const dsri_arch_ops dsri_arch_llama = {
    .name = "llama",
    .load = dense_load,
    .scratch_floats = dense_scratch_floats,
    .forward = dense_forward,
    .rotate_keys = dense_rotate_keys,
};

const dsri_arch_ops dsri_arch_qwen2 = {
    .name = "qwen2",
    .load = dense_load,
    .scratch_floats = dense_scratch_floats,
    .forward = dense_forward,
    .rotate_keys = dense_rotate_keys,
};

const dsri_arch_ops dsri_arch_qwen3 = {
    .name = "qwen3",
    .load = dense_load,
    .scratch_floats = dense_scratch_floats,
    .forward = dense_forward,
    .rotate_keys = dense_rotate_keys,
};
