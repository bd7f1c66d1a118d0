/*
 * Context shift (dsr1_context_shift, and generations with ctx_policy
 * DSR1_CTX_SHIFT).
 *
 *   test_shift DATA_DIR    (DATA_DIR/models/{qwen2-f32,llama-f16,deepseek2-f16}.gguf)
 *
 * The three fixtures cover the rotations: qwen2 NEOX pairs, llama adjacent
 * pairs with the llama3 divisors (rope_freqs.weight), deepseek2 YaRN (factor
 * 4) on the rope part of MLA's latent cache, and its MTP cache layer.
 *
 * Cache: after a shift every layer holds, below n_keep, the same rows bit
 * for bit; above, the values of the moved positions bit for bit, and their
 * keys rotated (each head's norm kept, MLA's latent part bit for bit). At
 * layer 0 a key depends only on its token and position, so there the moved
 * keys must equal the keys a fresh context caches for the kept tokens.
 *
 * Logits: in a deeper model the moved entries keep what they attended to
 * when they were evaluated (the dropped tokens too), so only a one-layer
 * model's shifted cache is what evaluating the kept tokens from scratch
 * gives. Each fixture is therefore also run as a one-layer model (its
 * first layer and its output head): a stream of four n_ctx of tokens,
 * shifted whenever full, must give at every step the logits of a fresh
 * context that evaluates the tokens kept, within the cache's tolerance.
 * The tolerances and the measured worst cases are printed.
 *
 * Bad arguments give their status and message and change nothing; a shift
 * during a generation is DSR1_ERR_STATE. With a Vulkan device the logits
 * test runs with the layer on the device (skipped, saying so, without
 * one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "model/context.h"
#include "model/model.h"
#include "check.h"

#define N_CTX 48
#define N_BATCH 8
#define N_KEEP 5

/* Logit tolerances of the one-layer comparison (measured worst cases about
 * 10x below them, printed): f32 keys rotated once more than fresh ones
 * differ by float rounding (about 1e-6); f16 keys are also rounded to f16
 * once more (about 5e-4 on these logits). */
#define TOL_F32 1e-5f
#define TOL_F16 5e-3f

static const char *data_dir;

static dsr1_model *load(const char *name, int one_layer, int on_device)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", data_dir, name);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    dsr1_model *m = NULL;
    if (dsr1_model_load(path, &mp, &m) != DSR1_OK) {
        CHECK(0, "cannot load %s: %s", path, dsr1_last_error());
        return NULL;
    }
    if (one_layer) { /* its first layer and the output head; no MTP block */
        m->hp.n_layer = 1;
        m->hp.n_nextn_layers = 0;
    }
    if (on_device && dsri_model_place_from_params(m, 1, NULL, 0) != DSR1_OK) {
        CHECK(0, "%s with a layer on the device: %s", name, dsr1_last_error());
        dsr1_model_free(m);
        return NULL;
    }
    return m;
}

static dsr1_context *new_ctx(const dsr1_model *m, int32_t n_ctx, int32_t n_batch, dsr1_kv_type kv)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.kv_type = kv;
    dsr1_context *c = NULL;
    CHECK(dsr1_context_new(m, &cp, &c) == DSR1_OK, "context: %s", dsr1_last_error());
    return c;
}

static dsr1_token token_at(int i, int32_t n_vocab)
{
    return (dsr1_token)((i * 97 + 11) % n_vocab);
}

static const char *kv_name(dsr1_kv_type kv)
{
    return kv == DSR1_KV_F16 ? "f16" : "f32";
}

/* Every cache row of every layer as f32: [layer][pos][k | v]. */
static float *read_cache(dsr1_context *c, int32_t n_rows)
{
    const dsr1_model *m = dsr1_context_model(c);
    const int64_t w = m->kv_k_width + m->kv_v_width;
    const int L = c->n_cache_layers;
    float *all = malloc((size_t)L * (size_t)n_rows * (size_t)w * sizeof *all);
    for (int l = 0; l < L; l++)
        for (int32_t p = 0; p < n_rows; p++) {
            float *row = all + ((size_t)l * (size_t)n_rows + (size_t)p) * (size_t)w;
            CHECK(dsri_ctx_k_f32(c, l, p, row) == DSR1_OK && dsri_ctx_v_f32(c, l, p, row + m->kv_k_width) == DSR1_OK,
                  "reading cache row %d of layer %d", p, l);
        }
    return all;
}

static double norm(const float *v, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * (double)v[i];
    return sqrt(s);
}

/* The rotated groups of a cached key row: n_groups of `width` values from
 * column `first`, `stride` apart (dense: each kv head; MLA: the rope part). */
typedef struct key_layout {
    int64_t first, width, stride;
    int n_groups;
} key_layout;

static key_layout layout_of(const dsr1_model *m)
{
    key_layout k;
    if (m->hp.kv_lora_rank > 0) {
        k.first = m->hp.kv_lora_rank;
        k.width = m->hp.rope_dim;
        k.stride = 0;
        k.n_groups = 1;
    } else {
        k.first = 0;
        k.width = m->hp.head_dim_k;
        k.stride = m->hp.head_dim_k;
        k.n_groups = m->hp.n_head_kv;
    }
    return k;
}

/* The cache after a shift against the cache before it and, at layer 0,
 * against a fresh evaluation of the kept tokens. */
static void cache_rows(const char *name, dsr1_kv_type kv)
{
    dsr1_model *m = load(name, 0, 0);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m), n_past = 44, n_discard = 17;
    const int32_t n_after = n_past - n_discard;
    dsr1_context *a = new_ctx(m, N_CTX, N_BATCH, kv), *b = new_ctx(m, N_CTX, N_BATCH, kv);
    dsr1_token toks[64], kept[64];
    for (int i = 0; i < n_past; i++)
        toks[i] = token_at(i, n_vocab);
    memcpy(kept, toks, N_KEEP * sizeof *toks);
    memcpy(kept + N_KEEP, toks + N_KEEP + n_discard, (size_t)(n_past - N_KEEP - n_discard) * sizeof *toks);
    CHECK(dsr1_eval(a, toks, n_past, 0, 0) == DSR1_OK, "%s: eval: %s", name, dsr1_context_errmsg(a));
    CHECK(dsr1_eval(b, kept, n_after, 0, 0) == DSR1_OK, "%s: fresh eval: %s", name, dsr1_context_errmsg(b));
    float *before = read_cache(a, n_past);
    CHECK(dsr1_context_shift(a, N_KEEP, n_discard) == DSR1_OK, "%s: shift: %s", name, dsr1_context_errmsg(a));
    CHECK(dsr1_context_n_past(a) == n_after, "%s: n_past %d after the shift, not %d", name, dsr1_context_n_past(a),
          n_after);
    CHECK(dsr1_logits(a, -1) == NULL, "%s: the logits of before the shift are still offered", name);
    float *after = read_cache(a, n_after), *fresh = read_cache(b, n_after);

    const int64_t kw = m->kv_k_width, w = kw + m->kv_v_width;
    const key_layout kl = layout_of(m);
    int rows_kept = 1, values_moved = 1, unrotated_moved = 1, rotated = 1;
    double worst_norm = 0.0, worst_l0 = 0.0, scale_l0 = 0.0;
    for (int l = 0; l < a->n_cache_layers; l++)
        for (int32_t p = 0; p < n_after; p++) {
            const float *now = after + ((size_t)l * (size_t)n_after + (size_t)p) * (size_t)w;
            const int32_t from = p < N_KEEP ? p : p + n_discard;
            const float *was = before + ((size_t)l * (size_t)n_past + (size_t)from) * (size_t)w;
            if (p < N_KEEP) {
                rows_kept &= memcmp(now, was, (size_t)w * sizeof *now) == 0;
                continue;
            }
            values_moved &= memcmp(now + kw, was + kw, (size_t)(w - kw) * sizeof *now) == 0;
            unrotated_moved &= memcmp(now, was, (size_t)kl.first * sizeof *now) == 0;
            rotated &= memcmp(now + kl.first, was + kl.first, (size_t)kl.width * sizeof *now) != 0;
            for (int g = 0; g < kl.n_groups; g++) {
                const int64_t at = kl.first + g * kl.stride;
                double n0 = norm(was + at, kl.width), n1 = norm(now + at, kl.width);
                double rel = fabs(n1 - n0) / (n0 > 1e-30 ? n0 : 1e-30);
                worst_norm = rel > worst_norm ? rel : worst_norm;
            }
            if (l == 0) {
                const float *want = fresh + (size_t)p * (size_t)w;
                for (int64_t i = 0; i < w; i++) {
                    double d = fabs((double)now[i] - (double)want[i]);
                    worst_l0 = d > worst_l0 ? d : worst_l0;
                    scale_l0 = fabs((double)want[i]) > scale_l0 ? fabs((double)want[i]) : scale_l0;
                }
            }
        }
    /* one more rounding of each rotated key: f32 a few ulp (measured about
     * 1e-7 relative), f16 up to an ulp of f16 (measured about 5e-4) */
    const double tol = kv == DSR1_KV_F16 ? 2e-3 : 1e-6;
    CHECK(rows_kept, "%s %s: the first %d rows changed", name, kv_name(kv), N_KEEP);
    CHECK(values_moved, "%s %s: a moved value row is not the one of its old position", name, kv_name(kv));
    CHECK(unrotated_moved, "%s %s: the latent part of a moved key changed", name, kv_name(kv));
    CHECK(rotated, "%s %s: a moved key was not rotated", name, kv_name(kv));
    CHECK(worst_norm <= tol, "%s %s: a rotated key's norm changed by %.3g (relative)", name, kv_name(kv), worst_norm);
    CHECK(worst_l0 <= tol * scale_l0, "%s %s: layer 0 differs from a fresh evaluation of the kept tokens by %.3g "
          "(values up to %.3g)", name, kv_name(kv), worst_l0, scale_l0);
    printf("%s %s cache: %d layers, %d rows moved by %d; rotated key norms within %.2g, layer 0 within %.2g of "
           "a fresh evaluation (values up to %.2g)\n",
           name, kv_name(kv), a->n_cache_layers, n_after - N_KEEP, n_discard, worst_norm, worst_l0, scale_l0);
    free(before);
    free(after);
    free(fresh);
    dsr1_context_free(a);
    dsr1_context_free(b);
    dsr1_model_free(m);
}

static float max_abs_diff(const float *x, const float *y, int32_t n)
{
    float d = 0.0f;
    for (int32_t i = 0; i < n; i++)
        d = fabsf(x[i] - y[i]) > d ? fabsf(x[i] - y[i]) : d;
    return d;
}

/* The logits of a fresh evaluation of hist[0..n) in ref, against row. */
static float against_fresh(dsr1_context *ref, const dsr1_token *hist, int32_t n, const float *row)
{
    const int32_t n_vocab = dsr1_model_n_vocab(dsr1_context_model(ref));
    if (dsr1_eval(ref, hist, n, 0, 0) != DSR1_OK) {
        CHECK(0, "fresh evaluation: %s", dsr1_context_errmsg(ref));
        return INFINITY;
    }
    return max_abs_diff(dsr1_logits(ref, -1), row, n_vocab);
}

/* A one-layer model fed four n_ctx of tokens (three at a time), shifted
 * by half of what follows the kept tokens whenever the next batch does not
 * fit: each batch's logits against a fresh evaluation of what is kept. */
static void one_layer_stream(const char *name, dsr1_kv_type kv, int on_device)
{
    dsr1_model *m = load(name, 1, on_device);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, N_CTX, N_BATCH, kv), *ref = new_ctx(m, N_CTX, N_BATCH, kv);
    dsr1_token hist[N_CTX];
    int32_t n = 0, shifts = 0;
    float worst = 0.0f;
    const float tol = kv == DSR1_KV_F16 ? TOL_F16 : TOL_F32;
    for (int fed = 0; fed < 4 * N_CTX; fed += 3) {
        if (n + 3 > N_CTX) {
            const int32_t d = (n - N_KEEP) / 2;
            CHECK(dsr1_context_shift(a, N_KEEP, d) == DSR1_OK, "%s: shift: %s", name, dsr1_context_errmsg(a));
            memmove(hist + N_KEEP, hist + N_KEEP + d, (size_t)(n - N_KEEP - d) * sizeof *hist);
            n -= d;
            shifts++;
        }
        for (int i = 0; i < 3; i++)
            hist[n + i] = token_at(fed + i + 1000, n_vocab);
        if (dsr1_eval(a, hist + n, 3, n, 0) != DSR1_OK) {
            CHECK(0, "%s: eval at %d: %s", name, n, dsr1_context_errmsg(a));
            break;
        }
        n += 3;
        float d = against_fresh(ref, hist, n, dsr1_logits(a, -1));
        worst = d > worst ? d : worst;
    }
    CHECK(shifts >= 6, "%s: only %d shifts", name, shifts);
    CHECK(worst <= tol, "%s %s%s one layer: the logits after shifts differ from a fresh evaluation by %g (tolerance %g)",
          name, kv_name(kv), on_device ? " on the device" : "", (double)worst, (double)tol);
    printf("%s %s%s one layer: %d tokens through n_ctx %d, %d shifts; logits within %.3g of a fresh evaluation "
           "(tolerance %g)\n", name, kv_name(kv), on_device ? " on the Vulkan device" : "", 4 * N_CTX, N_CTX, shifts,
           (double)worst, (double)tol);
    dsr1_context_free(a);
    dsr1_context_free(ref);
    dsr1_model_free(m);
}

/* A greedy sampler that never ends the generation (end-of-generation
 * tokens banned), so it runs as long as asked. */
static dsr1_sampler *endless_sampler(const dsr1_model *m, float temperature, uint64_t seed)
{
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_logit_bias *ban = malloc((size_t)n_vocab * sizeof *ban);
    int32_t n_ban = 0;
    for (int32_t t = 0; t < n_vocab; t++)
        if (dsr1_token_is_eog(m, t))
            ban[n_ban++] = (dsr1_logit_bias){t, -INFINITY};
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = temperature;
    sp.seed = seed;
    sp.logit_bias = ban;
    sp.n_logit_bias = n_ban;
    dsr1_sampler *s = NULL;
    CHECK(dsr1_sampler_new(n_vocab, &sp, &s) == DSR1_OK, "sampler: %s", dsr1_last_error());
    free(ban);
    return s;
}

/* The step hook of a generation on a one-layer model: the logits it is
 * about to sample from against a fresh evaluation of what the context
 * holds (read from the context: the test is on the generation's thread). */
typedef struct step_check {
    dsr1_context *ctx, *ref;
    float worst;
    int n_checked;
} step_check;

static int check_step(dsr1_step *step, void *user_data)
{
    step_check *c = user_data;
    float d = against_fresh(c->ref, c->ctx->tokens, c->ctx->n_past, step->logits);
    c->worst = d > c->worst ? d : c->worst;
    c->n_checked++;
    return 0;
}

/* A generation of four n_ctx of tokens on a one-layer model with
 * ctx_policy DSR1_CTX_SHIFT: it never stops for the context, and every
 * step's logits are a fresh evaluation's of the tokens kept. */
static void one_layer_generation(const char *name, dsr1_kv_type kv)
{
    dsr1_model *m = load(name, 1, 0);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, N_CTX, N_BATCH, kv), *ref = new_ctx(m, N_CTX, N_BATCH, kv);
    dsr1_sampler *s = endless_sampler(m, 0.0f, 1);
    dsr1_token prompt[12];
    for (int i = 0; i < 12; i++)
        prompt[i] = token_at(i + 500, n_vocab);
    step_check c = {a, ref, 0.0f, 0};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 4 * N_CTX;
    gp.ctx_policy = DSR1_CTX_SHIFT;
    gp.n_keep = N_KEEP;
    gp.on_step = check_step;
    gp.step_user_data = &c;
    dsr1_generation *g = NULL;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    CHECK(dsr1_generation_new(a, s, prompt, 12, &gp, &g) == DSR1_OK, "%s: generation: %s", name, dsr1_last_error());
    CHECK(dsr1_generation_run(g, &why) == DSR1_OK && why == DSR1_STOP_LENGTH, "%s: generation: %s, stop %d", name,
          dsr1_generation_errmsg(g), (int)why);
    dsr1_generation_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    dsr1_generation_get_stats(g, &st);
    const float tol = kv == DSR1_KV_F16 ? TOL_F16 : TOL_F32;
    CHECK(st.n_generated == 4 * N_CTX && st.n_ctx_shifts >= 6 && c.n_checked == 4 * N_CTX,
          "%s: %d generated, %d shifts, %d steps checked", name, st.n_generated, st.n_ctx_shifts, c.n_checked);
    CHECK(c.worst <= tol, "%s %s one-layer generation: logits after shifts differ from a fresh evaluation by %g", name,
          kv_name(kv), (double)c.worst);
    printf("%s %s one-layer generation: %d tokens through n_ctx %d, %d shifts dropping %d tokens; every step's "
           "logits within %.3g of a fresh evaluation\n", name, kv_name(kv), st.n_generated, N_CTX, st.n_ctx_shifts,
           st.n_ctx_dropped, (double)c.worst);
    dsr1_generation_free(g);
    dsr1_sampler_free(s);
    dsr1_context_free(a);
    dsr1_context_free(ref);
    dsr1_model_free(m);
}

/* n tokens of a generation with ctx_policy DSR1_CTX_SHIFT (and MTP
 * drafting when mtp) into out; the stats into st. */
static void shifted_tokens(dsr1_model *m, int mtp, dsr1_token *out, int n, dsr1_generation_stats *st)
{
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, 32, 8, DSR1_KV_F16);
    dsr1_sampler *s = endless_sampler(m, 0.8f, 7);
    dsr1_token prompt[6];
    for (int i = 0; i < 6; i++)
        prompt[i] = token_at(i + 70, n_vocab);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = n;
    gp.ctx_policy = DSR1_CTX_SHIFT;
    gp.speculative_mtp = mtp;
    gp.speculative_min_p = 0.0f;
    dsr1_generation *g = NULL;
    CHECK(dsr1_generation_new(a, s, prompt, 6, &gp, &g) == DSR1_OK, "generation: %s", dsr1_last_error());
    for (int i = 0; i < n; i++) {
        dsr1_stop_reason why = DSR1_STOP_NONE;
        out[i] = -1;
        if (dsr1_generation_step(g, &out[i], &why) != DSR1_OK || (why != DSR1_STOP_NONE && i + 1 < n)) {
            CHECK(0, "step %d: %s (stop %d)", i, dsr1_generation_errmsg(g), (int)why);
            break;
        }
    }
    st->size = sizeof *st;
    dsr1_generation_get_stats(g, st);
    dsr1_generation_free(g);
    dsr1_sampler_free(s);
    dsr1_context_free(a);
}

/* deepseek2 with its MTP head: speculative decoding through context
 * shifts gives the tokens of plain decoding (the head's cache is rewound
 * at each shift). */
static void mtp_through_shifts(const char *name)
{
    dsr1_model *m = load(name, 0, 0);
    if (!m)
        return;
    enum { N = 120 };
    dsr1_token plain[N], spec[N];
    dsr1_generation_stats sp, ss;
    shifted_tokens(m, 0, plain, N, &sp);
    shifted_tokens(m, 1, spec, N, &ss);
    CHECK(memcmp(plain, spec, sizeof plain) == 0, "%s: speculative decoding through shifts changed the tokens", name);
    CHECK(sp.n_ctx_shifts >= 3 && ss.n_ctx_shifts == sp.n_ctx_shifts && ss.n_drafted > 0,
          "%s: %d / %d shifts, %d drafts", name, sp.n_ctx_shifts, ss.n_ctx_shifts, ss.n_drafted);
    printf("%s: %d tokens through n_ctx 32 with %d shifts, with MTP drafting (%d drafts, %d accepted) the same tokens\n",
           name, N, ss.n_ctx_shifts, ss.n_drafted, ss.n_accepted);
    dsr1_model_free(m);
}

/* Whether the context holds the conversation the chat records, up to the
 * last reply's marker: the prompt of the next turn (question q) shares at
 * least that prefix with the cache. */
static int history_matches_cache(dsr1_chat *chat, dsr1_context *ctx, const char *question)
{
    const dsr1_model *m = dsr1_context_model(ctx);
    const int32_t n_msgs = dsr1_chat_n_messages(chat);
    dsr1_chat_message *msgs = malloc((size_t)(n_msgs + 1) * sizeof *msgs);
    for (int32_t i = 0; i < n_msgs; i++)
        dsr1_chat_message_at(chat, i, &msgs[i]);
    msgs[n_msgs].role = "user";
    msgs[n_msgs].content = question;
    int32_t n = 0;
    dsr1_chat_tokenize(m, msgs, n_msgs + 1, DSR1_CHAT_ADD_GENERATION_PROMPT, NULL, 0, &n);
    dsr1_token *t = malloc((size_t)n * sizeof *t);
    CHECK(dsr1_chat_tokenize(m, msgs, n_msgs + 1, DSR1_CHAT_ADD_GENERATION_PROMPT, t, n, &n) == DSR1_OK,
          "tokenize the history");
    const dsr1_token assistant = dsr1_token_special(m, DSR1_SPECIAL_ASSISTANT);
    int32_t last = -1, prev = -1;
    for (int32_t i = 0; i < n; i++)
        if (t[i] == assistant) {
            prev = last;
            last = i;
        }
    int32_t common = 0;
    while (common < ctx->n_past && common < n && ctx->tokens[common] == t[common])
        common++;
    free(t);
    free(msgs);
    return prev >= 0 && common > prev;
}

/* A chat on a small context with DSR1_CTX_SHIFT: every turn answers (no
 * CONTEXT_FULL), the oldest turns are forgotten whole, the system prompt
 * stays, and turns after a shift reuse the cache (the history the chat
 * keeps matches what the context holds). On the one-layer model every
 * step's logits are also checked against a fresh evaluation. */
static void chat_past_the_context(const char *name, int one_layer)
{
    dsr1_model *m = load(name, one_layer, 0);
    if (!m)
        return;
    dsr1_context *a = new_ctx(m, 96, 16, DSR1_KV_F32), *ref = new_ctx(m, 96, 16, DSR1_KV_F32);
    dsr1_sampler *s = endless_sampler(m, 0.7f, 3);
    dsr1_chat *chat = NULL;
    CHECK(dsr1_chat_new(a, s, "You are terse.", &chat) == DSR1_OK, "chat: %s", dsr1_last_error());
    step_check c = {a, ref, 0.0f, 0};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 40;
    gp.ctx_policy = DSR1_CTX_SHIFT;
    if (one_layer) {
        gp.on_step = check_step;
        gp.step_user_data = &c;
    }
    static const char *const questions[] = {"What is the capital of France?", "And of Spain?",
                                            "Tell me a long story about a cat.", "Why?", "Say more.", "Thanks!",
                                            "One more question about the weather today.", "Bye."};
    int shifts = 0, reused_after_shift = 0, turns_after_shift = 0, dropped = 0, prev_shifted = 0;
    for (int q = 0; q < 8; q++) {
        dsr1_stop_reason why = DSR1_STOP_NONE;
        dsr1_generation *g = NULL;
        if (prev_shifted) { /* the history after the drop matches the cache: the prompt is reused */
            turns_after_shift++;
            reused_after_shift += history_matches_cache(chat, a, questions[q]);
        }
        dsr1_status st = dsr1_chat_begin(chat, questions[q], &gp, &g);
        if (st == DSR1_OK)
            st = dsr1_generation_run(g, &why);
        CHECK(st == DSR1_OK && why == DSR1_STOP_LENGTH, "%s: turn %d: %s (%s), stop %d", name, q,
              dsr1_status_string(st), g ? dsr1_generation_errmsg(g) : dsr1_chat_errmsg(chat), (int)why);
        dsr1_generation_stats gs;
        memset(&gs, 0, sizeof gs);
        gs.size = sizeof gs;
        if (g)
            dsr1_generation_get_stats(g, &gs);
        dsr1_generation_free(g);
        shifts += gs.n_ctx_shifts;
        prev_shifted = gs.n_ctx_shifts > 0;
        dsr1_chat_message first;
        CHECK(dsr1_chat_message_at(chat, 0, &first) == DSR1_OK && strcmp(first.role, "system") == 0,
              "%s: the system prompt went", name);
        const int32_t n_msgs = dsr1_chat_n_messages(chat);
        dropped = 1 + 2 * (q + 1) - n_msgs;
        CHECK(n_msgs % 2 == 1 && n_msgs >= 3, "%s: turn %d: %d messages (whole turns are dropped)", name, q, n_msgs);
    }
    CHECK(shifts > 0 && dropped > 0, "%s: %d shifts, %d messages dropped", name, shifts, dropped);
    CHECK(turns_after_shift > 0 && reused_after_shift == turns_after_shift,
          "%s: only %d of %d turns after a shift found their history in the cache", name, reused_after_shift,
          turns_after_shift);
    if (one_layer)
        CHECK(c.worst <= TOL_F32, "%s one-layer chat: logits after shifts differ from a fresh evaluation by %g", name,
              (double)c.worst);
    printf("%s%s chat, n_ctx 96: 8 turns of 40 tokens, %d shifts, %d old messages dropped, %d of %d turns after a "
           "shift found their history in the cache%s", name, one_layer ? " one-layer" : "", shifts, dropped, reused_after_shift,
           turns_after_shift, one_layer ? "" : "\n");
    if (one_layer)
        printf("; %d steps' logits within %.3g of a fresh evaluation\n", c.n_checked, (double)c.worst);
    dsr1_chat_free(chat);
    dsr1_sampler_free(s);
    dsr1_context_free(a);
    dsr1_context_free(ref);
    dsr1_model_free(m);
}

/* A chat whose questions are long: the history outgrows the context
 * between turns, so the chat forgets its oldest turns before formatting
 * the prompt, shifting the cache the same way: the kept turns are not
 * evaluated again. */
static void chat_long_questions(const char *name)
{
    dsr1_model *m = load(name, 0, 0);
    if (!m)
        return;
    dsr1_context *a = new_ctx(m, 128, 16, DSR1_KV_F16);
    dsr1_sampler *s = endless_sampler(m, 0.7f, 5);
    dsr1_chat *chat = NULL;
    CHECK(dsr1_chat_new(a, s, "Be brief.", &chat) == DSR1_OK, "chat: %s", dsr1_last_error());
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 6;
    gp.ctx_policy = DSR1_CTX_SHIFT;
    int fitted = 0, reused = 0;
    for (int q = 0; q < 8; q++) {
        char question[256];
        snprintf(question, sizeof question, "Question %d: the weather in the north "
                 "this week?", q);
        const int32_t before = dsr1_chat_n_messages(chat);
        dsr1_generation *g = NULL;
        dsr1_stop_reason why = DSR1_STOP_NONE;
        dsr1_status st = dsr1_chat_begin(chat, question, &gp, &g);
        if (st == DSR1_OK)
            st = dsr1_generation_run(g, &why);
        CHECK(st == DSR1_OK && why == DSR1_STOP_LENGTH, "%s: long turn %d: %s (%s)", name, q, dsr1_status_string(st),
              g ? dsr1_generation_errmsg(g) : dsr1_chat_errmsg(chat));
        dsr1_generation_stats gs;
        memset(&gs, 0, sizeof gs);
        gs.size = sizeof gs;
        if (g)
            dsr1_generation_get_stats(g, &gs);
        dsr1_generation_free(g);
        if (dsr1_chat_n_messages(chat) < before + 2 && gs.n_ctx_shifts == 0) { /* turns forgotten before the prompt */
            fitted++;
            /* evaluated: the last answer and the new question, not the turn
             * kept before them (a question is over 20 tokens) */
            reused += gs.n_prompt_eval < dsr1_context_n_past(a) - gs.n_generated - 30;
        }
    }
    CHECK(fitted > 0 && reused == fitted, "%s: %d turns forgot old turns before the prompt, %d reused the cache", name,
          fitted, reused);
    printf("%s chat with long questions, n_ctx 128: %d turns dropped old turns before their prompt, %d of them "
           "reusing the shifted cache\n", name, fitted, reused);
    dsr1_chat_free(chat);
    dsr1_sampler_free(s);
    dsr1_context_free(a);
    dsr1_model_free(m);
}

/* Refused arguments: a status, a message, and nothing changed. */
static void bad_arguments(const char *name)
{
    dsr1_model *m = load(name, 0, 0);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *c = new_ctx(m, N_CTX, N_BATCH, DSR1_KV_F16);
    dsr1_token toks[20];
    for (int i = 0; i < 20; i++)
        toks[i] = token_at(i, n_vocab);
    CHECK(dsr1_eval(c, toks, 20, 0, 0) == DSR1_OK, "eval: %s", dsr1_context_errmsg(c));
    static const int32_t bad[][2] = {{-1, 4}, {21, 1}, {5, 0}, {5, -3}, {5, 16}, {20, 1}, {0, 21}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsr1_status st = dsr1_context_shift(c, bad[i][0], bad[i][1]);
        CHECK(st == DSR1_ERR_INVALID_ARGUMENT && strstr(dsr1_context_errmsg(c), "dsr1_context_shift") &&
                  strstr(dsr1_context_errmsg(c), bad[i][0] < 0 || bad[i][0] > 20 ? "n_keep" : "n_discard"),
              "shift(%d, %d): %s, \"%s\"", bad[i][0], bad[i][1], dsr1_status_string(st), dsr1_context_errmsg(c));
        CHECK(dsr1_context_n_past(c) == 20 && dsr1_logits(c, -1) != NULL, "a refused shift changed the context");
    }
    CHECK(dsr1_context_shift(NULL, 0, 1) == DSR1_ERR_INVALID_ARGUMENT, "NULL context");
    /* the whole rest: the same as a truncation */
    CHECK(dsr1_context_shift(c, 5, 15) == DSR1_OK && dsr1_context_n_past(c) == 5, "shift(5, 15): %s",
          dsr1_context_errmsg(c));

    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    dsr1_sampler *s = NULL;
    CHECK(dsr1_sampler_new(n_vocab, &sp, &s) == DSR1_OK, "sampler");
    dsr1_generation *g = NULL;
    CHECK(dsr1_generation_new(c, s, toks, 20, NULL, &g) == DSR1_OK, "generation: %s", dsr1_last_error());
    CHECK(dsr1_generation_step(g, NULL, NULL) == DSR1_OK, "step: %s", dsr1_generation_errmsg(g));
    const int32_t held = dsr1_context_n_past(c);
    dsr1_status st = dsr1_context_shift(c, 0, 4);
    CHECK(st == DSR1_ERR_STATE && strstr(dsr1_context_errmsg(c), "generation"),
          "shift during a generation: %s, \"%s\"", dsr1_status_string(st), dsr1_context_errmsg(c));
    CHECK(dsr1_context_n_past(c) == held, "a refused shift changed n_past");
    dsr1_generation_free(g);
    CHECK(dsr1_context_shift(c, 0, 4) == DSR1_OK, "shift after the generation: %s", dsr1_context_errmsg(c));
    dsr1_sampler_free(s);
    dsr1_context_free(c);
    dsr1_model_free(m);
}

int main(int argc, char **argv)
{
    data_dir = argc > 1 ? argv[1] : "tests/data";
    static const char *const models[] = {"qwen2-f32", "llama-f16", "deepseek2-f16"};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            dsr1_kv_type kv = k ? DSR1_KV_F16 : DSR1_KV_F32;
            cache_rows(models[i], kv);
            one_layer_stream(models[i], kv, 0);
        }
    for (int i = 0; i < 3; i++)
        one_layer_generation(models[i], DSR1_KV_F32);
    one_layer_generation("deepseek2-f16", DSR1_KV_F16);
    mtp_through_shifts("deepseek2-f16");
    chat_past_the_context("deepseek2-f16", 1);
    chat_past_the_context("deepseek2-f16", 0);
    chat_long_questions("deepseek2-f16");
    bad_arguments("qwen2-f32");
    if (dsr1_device_count() > 0)
        for (int i = 0; i < 3; i++)
            one_layer_stream(models[i], DSR1_KV_F16, 1);
    else
        printf("SKIP the shift with the layer on a device: no Vulkan device (%s)\n", dsr1_last_error());
    return check_summary("test_shift");
}
