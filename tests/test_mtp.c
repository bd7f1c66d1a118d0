/*
 * Self-speculative decoding with DeepSeek-V3's multi-token-prediction head
 * (dsr1_generate_params.speculative_mtp) on the deepseek2 fixtures (random
 * weights, one MTP block): a correctness test. Drafts of a random-weight
 * head are rarely right, so the acceptance rate printed here says nothing
 * about real models; what must hold is that the tokens never change.
 *
 *   test_mtp DATA_DIR    (DATA_DIR/models/deepseek2-{q8_0,f16}.gguf, qwen2-q8_0.gguf)
 *
 * - a 2-row batch [t, d] gives bit-identical logits to evaluating t, then d;
 * - 64 tokens with and without MTP are identical: greedy, and seeded
 *   temperature 0.8 with top-k and a repetition penalty; the step API with
 *   MTP equals dsr1_generate with MTP (event tokens);
 * - the same with a prompt longer than n_batch, the thinking budget's
 *   injection, a full context, and a two-turn chat (prefix reuse);
 * - the MTP cache layer after a speculative generation equals the MTP block
 *   recomputed over the whole sequence in one batch (rewinds were handled);
 * - stats: n_drafted / n_accepted, and an older caller's smaller struct is
 *   not written past its size; speculative_mtp outside {0, 1} is refused;
 * - a model without an MTP head (qwen2) ignores the flag (n_drafted 0);
 * - a timing printout with and without MTP (no assertions on it).
 * Exits non-zero on any failure.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsr1.h"
#include "model/context.h"
#include "model/deepseek2.h"
#include "model/model.h"

static int failures;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                      \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

#define MAXTOK 1024
#define N_GEN 64

static const char *data_dir;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static dsr1_model *load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", data_dir, name);
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load(path, NULL, &m);
    CHECK(st == DSR1_OK, "load %s: %s", path, dsr1_last_error());
    return m;
}

static dsr1_context *new_ctx(const dsr1_model *m, int n_ctx, int n_batch)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    dsr1_context *ctx = NULL;
    dsr1_status st = dsr1_context_new(m, &cp, &ctx);
    CHECK(st == DSR1_OK, "context: %s", dsr1_last_error());
    return ctx;
}

/* The 32-token prompt of NAME from MANIFEST. */
static int read_manifest(const char *name, dsr1_token *tokens, int cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/MANIFEST", data_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *tok = strtok_r(line, " \n", &save);
        if (!tok || strcmp(tok, name) != 0)
            continue;
        strtok_r(NULL, " \n", &save); /* n_vocab */
        n = 0;
        while ((tok = strtok_r(NULL, " \n", &save)) && n < cap)
            tokens[n++] = atoi(tok);
        break;
    }
    fclose(f);
    return n;
}

/* Sampler settings of a run. End-of-generation tokens are banned so every
 * run makes its full length. */
typedef struct samp_cfg {
    float temperature;
    int32_t top_k;
    float repeat_penalty;
    uint64_t seed;
} samp_cfg;

static const samp_cfg GREEDY = {0.0f, 0, 1.0f, 0};
static const samp_cfg RANDOM = {0.8f, 40, 1.1f, 1234};

static dsr1_sampler *new_sampler(const dsr1_model *m, samp_cfg c)
{
    dsr1_logit_bias ban[32];
    int n_ban = 0;
    for (dsr1_token t = 0; t < dsr1_model_n_vocab(m) && n_ban < 32; t++)
        if (dsr1_token_is_eog(m, t)) {
            ban[n_ban].token = t;
            ban[n_ban].bias = -INFINITY;
            n_ban++;
        }
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = c.temperature;
    sp.top_k = c.top_k;
    sp.repeat_penalty = c.repeat_penalty;
    sp.seed = c.seed;
    sp.logit_bias = ban;
    sp.n_logit_bias = n_ban;
    dsr1_sampler *s = NULL;
    dsr1_status st = dsr1_sampler_new(dsr1_model_n_vocab(m), &sp, &s);
    CHECK(st == DSR1_OK, "sampler: %s", dsr1_last_error());
    return s;
}

/* Every token the events cover (generated and injected), in order. */
typedef struct rec {
    dsr1_token tokens[MAXTOK];
    int n;
} rec;

static int on_event(const dsr1_event *ev, void *user_data)
{
    rec *r = user_data;
    for (int32_t i = 0; i < ev->n_tokens && r->n < MAXTOK; i++)
        r->tokens[r->n++] = ev->tokens[i];
    return 0;
}

/* One generation. */
typedef struct run_cfg {
    int mtp;
    int use_step;     /* the step API (else dsr1_generate) */
    int32_t max_new;  /* max_new_tokens */
    int32_t budget;   /* think_budget (-1: none) */
    int n_ctx, n_batch;
} run_cfg;

typedef struct run_out {
    dsr1_token steps[MAXTOK]; /* tokens the steps returned */
    int n_steps;
    rec ev;                   /* tokens of the events */
    dsr1_stop_reason why;
    dsr1_generation_stats stats;
    double seconds;
} run_out;

static void run(const dsr1_model *m, const dsr1_token *prompt, int n_prompt, samp_cfg sc, run_cfg rc, run_out *o)
{
    memset(o, 0, sizeof *o);
    dsr1_context *ctx = new_ctx(m, rc.n_ctx, rc.n_batch);
    dsr1_sampler *smp = new_sampler(m, sc);
    if (!ctx || !smp)
        goto done;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = rc.max_new;
    gp.think_budget = rc.budget;
    gp.starts_in_reasoning = rc.budget >= 0 ? 1 : 0;
    gp.on_event = on_event;
    gp.user_data = &o->ev;
    gp.speculative_mtp = rc.mtp;
    dsr1_generation *gen = NULL;
    double t0 = now_seconds();
    dsr1_status st = dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen);
    CHECK(st == DSR1_OK, "generation_new: %s", dsr1_last_error());
    if (st)
        goto done;
    if (rc.use_step) {
        while (o->why == DSR1_STOP_NONE) {
            dsr1_token t;
            st = dsr1_generation_step(gen, &t, &o->why);
            CHECK(st == DSR1_OK, "step: %s", dsr1_last_error());
            if (st)
                break;
            if (t >= 0 && o->n_steps < MAXTOK)
                o->steps[o->n_steps++] = t;
        }
    } else {
        st = dsr1_generation_run(gen, &o->why);
        CHECK(st == DSR1_OK, "run: %s", dsr1_last_error());
    }
    o->seconds = now_seconds() - t0;
    o->stats.size = sizeof o->stats;
    dsr1_generation_get_stats(gen, &o->stats);
    dsr1_generation_free(gen);
done:
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

static int same_tokens(const dsr1_token *a, int na, const dsr1_token *b, int nb)
{
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

static void print_tokens(const char *what, const dsr1_token *t, int n)
{
    printf("    %s:", what);
    for (int i = 0; i < n && i < 24; i++)
        printf(" %d", t[i]);
    printf(n > 24 ? " ...\n" : "\n");
}

/* ---- bit-identical rows ------------------------------------------------ */

static void test_batch_rows(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    int n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, 256, 64), *b = new_ctx(m, 256, 64);
    float *l0 = malloc((size_t)n_vocab * sizeof(float)), *l1 = malloc((size_t)n_vocab * sizeof(float));
    if (!a || !b || !l0 || !l1)
        goto done;
    CHECK(dsr1_eval(a, prompt, n_prompt, 0, 0) == DSR1_OK && dsr1_eval(b, prompt, n_prompt, 0, 0) == DSR1_OK,
          "eval: %s", dsr1_last_error());
    int same = 1;
    for (int k = 0; k < 8; k++) {
        dsr1_token t = (dsr1_token)((37 * k + 11) % 290), d = (dsr1_token)((53 * k + 7) % 290);
        int32_t p = dsr1_context_n_past(a);
        dsr1_token pair[2] = {t, d};
        dsr1_eval(a, &t, 1, p, 0);
        memcpy(l0, dsr1_logits(a, -1), (size_t)n_vocab * sizeof(float));
        dsr1_eval(a, &d, 1, p + 1, 0);
        memcpy(l1, dsr1_logits(a, -1), (size_t)n_vocab * sizeof(float));
        CHECK(dsr1_eval(b, pair, 2, p, DSR1_EVAL_LOGITS_ALL) == DSR1_OK, "pair eval: %s", dsr1_last_error());
        same &= memcmp(l0, dsr1_logits(b, 0), (size_t)n_vocab * sizeof(float)) == 0;
        same &= memcmp(l1, dsr1_logits(b, 1), (size_t)n_vocab * sizeof(float)) == 0;
        if (k % 2) { /* a rejected draft: drop it in both and go on from t */
            dsr1_context_truncate(a, p + 1);
            dsr1_context_truncate(b, p + 1);
        }
    }
    printf("%s: [t, d] batch rows bit-identical to one-token evals: %s\n", name, same ? "yes" : "NO");
    CHECK(same, "%s: the rows of a 2-token batch differ from one-token evaluation", name);
done:
    free(l0);
    free(l1);
    dsr1_context_free(a);
    dsr1_context_free(b);
}

/* ---- identical tokens -------------------------------------------------- */

static void compare_modes(const dsr1_model *m, const char *name, const char *what, const dsr1_token *prompt,
                          int n_prompt, samp_cfg sc, run_cfg rc)
{
    static run_out plain, spec, spec_gen; /* large; the test is single-threaded */
    rc.mtp = 0;
    rc.use_step = 1;
    run(m, prompt, n_prompt, sc, rc, &plain);
    rc.mtp = 1;
    run(m, prompt, n_prompt, sc, rc, &spec);
    rc.use_step = 0;
    run(m, prompt, n_prompt, sc, rc, &spec_gen);

    double rate = spec.stats.n_drafted > 0 ? (double)spec.stats.n_accepted / spec.stats.n_drafted : 0.0;
    printf("%s %-34s %3d tokens, stop %d | MTP drafts %3d, accepted %3d (%.1f%%) | plain %.1f tok/s, MTP %.1f tok/s\n",
           name, what, spec.n_steps, (int)spec.why, spec.stats.n_drafted, spec.stats.n_accepted, 100.0 * rate,
           plain.stats.generate_seconds > 0 ? plain.stats.n_generated / plain.stats.generate_seconds : 0.0,
           spec.stats.generate_seconds > 0 ? spec.stats.n_generated / spec.stats.generate_seconds : 0.0);
    int ok = same_tokens(plain.steps, plain.n_steps, spec.steps, spec.n_steps) &&
             same_tokens(plain.ev.tokens, plain.ev.n, spec.ev.tokens, spec.ev.n) && plain.why == spec.why;
    CHECK(ok, "%s %s: MTP changed the tokens", name, what);
    if (!ok) {
        print_tokens("plain", plain.ev.tokens, plain.ev.n);
        print_tokens("mtp  ", spec.ev.tokens, spec.ev.n);
    }
    CHECK(same_tokens(spec.ev.tokens, spec.ev.n, spec_gen.ev.tokens, spec_gen.ev.n) && spec.why == spec_gen.why,
          "%s %s: the step API and dsr1_generate differ with MTP", name, what);
    CHECK(plain.n_steps > 0 && plain.stats.n_generated == spec.stats.n_generated,
          "%s %s: generated %d vs %d", name, what, plain.stats.n_generated, spec.stats.n_generated);
    CHECK(plain.stats.n_drafted == 0 && plain.stats.n_accepted == 0, "%s: drafts without MTP", name);
    CHECK(spec.stats.n_accepted >= 0 && spec.stats.n_accepted <= spec.stats.n_drafted &&
              spec.stats.n_drafted <= spec.stats.n_generated,
          "%s %s: drafted %d accepted %d generated %d", name, what, spec.stats.n_drafted, spec.stats.n_accepted,
          spec.stats.n_generated);
    CHECK(spec.stats.n_drafted == spec_gen.stats.n_drafted && spec.stats.n_accepted == spec_gen.stats.n_accepted,
          "%s %s: stats differ between the step API and dsr1_generate", name, what);
}

static void test_identical(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    run_cfg rc = {0, 1, N_GEN, -1, 256, 64};
    compare_modes(m, name, "greedy", prompt, n_prompt, GREEDY, rc);
    compare_modes(m, name, "temp 0.8 top-k 40 penalty 1.1", prompt, n_prompt, RANDOM, rc);
    samp_cfg other = RANDOM;
    other.seed = 99;
    other.top_k = 0;
    compare_modes(m, name, "temp 0.8 seed 99", prompt, n_prompt, other, rc);
    /* prompt in chunks of n_batch 8 */
    run_cfg small = {0, 1, N_GEN, -1, 256, 8};
    compare_modes(m, name, "greedy, n_batch 8", prompt, n_prompt, GREEDY, small);
    /* the context fills up during generation */
    run_cfg full = {0, 1, 0, -1, n_prompt + 21, 64};
    compare_modes(m, name, "greedy, context full", prompt, n_prompt, GREEDY, full);
    /* the thinking budget injects "\n</think>\n\n" at assorted points */
    for (int budget = 1; budget <= 12; budget++) {
        char what[64];
        snprintf(what, sizeof what, "greedy, think budget %d", budget);
        run_cfg bc = {0, 1, 24, budget, 256, 64};
        compare_modes(m, name, what, prompt, n_prompt, GREEDY, bc);
    }
}

/* ---- the MTP cache layer ----------------------------------------------- */

/* After a speculative generation, the MTP cache entries the context counts
 * as current equal the MTP block recomputed over the whole sequence. */
static void test_mtp_cache(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt,
                           int n_batch)
{
    const int64_t d = m->hp.n_embd, kw = m->kv_k_width;
    dsr1_context *ctx = new_ctx(m, 256, n_batch), *ref = new_ctx(m, 256, 256);
    dsr1_sampler *smp = new_sampler(m, RANDOM);
    float *hid = malloc((size_t)256 * (size_t)d * sizeof(float));
    float *lg = malloc((size_t)256 * (size_t)m->hp.n_vocab * sizeof(float));
    int32_t pos[256];
    if (!ctx || !ref || !smp || !hid || !lg)
        goto done;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = N_GEN;
    gp.speculative_mtp = 1;
    CHECK(dsr1_generate(ctx, smp, prompt, n_prompt, &gp, NULL) == DSR1_OK, "generate: %s", dsr1_last_error());
    int32_t n = dsr1_context_n_past(ctx);
    int32_t cur = ctx->mtp_n_past < n - 1 ? ctx->mtp_n_past : n - 1; /* entries with their next token cached */
    CHECK(ctx->mtp_n_past <= n && cur >= n - 2, "%s: MTP cache current to %d of %d", name, ctx->mtp_n_past, n);
    /* reference: the whole sequence in one batch, then the MTP block over it */
    CHECK(dsr1_eval(ref, ctx->tokens, n, 0, 0) == DSR1_OK, "eval: %s", dsr1_last_error());
    memcpy(hid, dsri_deepseek2_hidden(ref), (size_t)n * (size_t)d * sizeof(float));
    for (int32_t i = 0; i < n - 1; i++)
        pos[i] = i;
    CHECK(dsri_deepseek2_mtp(ref, hid, ctx->tokens + 1, pos, n - 1, lg) == DSR1_OK, "mtp: %s", dsr1_last_error());
    float mx = 0.0f;
    for (int32_t i = 0; i < cur; i++) {
        const float *a = dsri_ctx_k(ctx, m->hp.n_layer, i), *b = dsri_ctx_k(ref, m->hp.n_layer, i);
        for (int64_t j = 0; j < kw; j++) {
            float df = fabsf(a[j] - b[j]);
            if (!(df <= mx))
                mx = df == df ? df : INFINITY;
        }
    }
    printf("%s: MTP cache layer after generating (n_batch %d): %d entries current, max|diff| vs recomputed %.3g\n",
           name, n_batch, cur, (double)mx);
    CHECK(mx < 1e-3f, "%s: the MTP cache layer differs from the recomputed one by %g", name, (double)mx);

    /* rewinds: truncate into the middle, then a different token */
    int32_t cut = n / 2;
    dsr1_context_truncate(ctx, cut);
    CHECK(ctx->mtp_n_past <= cut, "truncate: MTP %d > %d", ctx->mtp_n_past, cut);
    dsr1_token other = (dsr1_token)((ctx->tokens[cut] + 1) % 290);
    int32_t before = ctx->mtp_n_past;
    CHECK(dsr1_eval(ctx, &other, 1, cut, 0) == DSR1_OK, "eval");
    CHECK(ctx->mtp_n_past <= cut - 1 || before < cut, "a different token at %d kept MTP entry %d", cut, cut - 1);
    dsr1_context_reset(ctx);
    CHECK(ctx->mtp_n_past == 0, "reset");
done:
    free(hid);
    free(lg);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_context_free(ref);
}

/* ---- chat: two turns, the second reusing the prefix -------------------- */

static void chat_run(const dsr1_model *m, int mtp, char *out, size_t cap, dsr1_generation_stats *stats)
{
    dsr1_context *ctx = new_ctx(m, 512, 64);
    dsr1_sampler *smp = new_sampler(m, RANDOM);
    dsr1_chat *chat = NULL;
    out[0] = '\0';
    memset(stats, 0, sizeof *stats);
    if (!ctx || !smp || dsr1_chat_new(ctx, smp, "be brief", &chat) != DSR1_OK)
        goto done;
    const char *q[2] = {"hello there", "and again"};
    for (int turn = 0; turn < 2; turn++) {
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.max_new_tokens = 40;
        gp.speculative_mtp = mtp;
        dsr1_generation *gen = NULL;
        CHECK(dsr1_chat_begin(chat, q[turn], &gp, &gen) == DSR1_OK, "chat_begin: %s", dsr1_last_error());
        if (!gen)
            break;
        CHECK(dsr1_generation_run(gen, NULL) == DSR1_OK, "chat run: %s", dsr1_last_error());
        dsr1_generation_stats s;
        s.size = sizeof s;
        dsr1_generation_get_stats(gen, &s);
        stats->n_drafted += s.n_drafted;
        stats->n_accepted += s.n_accepted;
        stats->n_prompt_eval += s.n_prompt_eval;
        dsr1_generation_free(gen);
    }
    for (int32_t i = 0; i < dsr1_chat_n_messages(chat); i++) {
        dsr1_chat_message msg;
        dsr1_chat_message_at(chat, i, &msg);
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "[%s] %s\n", msg.role, msg.content);
    }
done:
    dsr1_chat_free(chat);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

static void test_chat(const dsr1_model *m, const char *name)
{
    static char a[16384], b[16384];
    dsr1_generation_stats sa, sb;
    chat_run(m, 0, a, sizeof a, &sa);
    chat_run(m, 1, b, sizeof b, &sb);
    printf("%s chat, 2 turns: %s; prompt tokens evaluated %d / %d; MTP drafts %d, accepted %d\n", name,
           strcmp(a, b) == 0 ? "same conversation" : "DIFFERENT", sa.n_prompt_eval, sb.n_prompt_eval, sb.n_drafted,
           sb.n_accepted);
    CHECK(a[0] && strcmp(a, b) == 0, "%s: the chat differs with MTP", name);
    CHECK(sa.n_prompt_eval == sb.n_prompt_eval, "%s: prefix reuse differs (%d vs %d)", name, sa.n_prompt_eval,
          sb.n_prompt_eval);
    CHECK(sb.n_drafted > 0, "%s: no drafts in the chat", name);
}

/* ---- stats and parameters ---------------------------------------------- */

static void test_api(const dsr1_model *m, const dsr1_token *prompt, int n_prompt)
{
    dsr1_context *ctx = new_ctx(m, 256, 64);
    dsr1_sampler *smp = new_sampler(m, GREEDY);
    if (!ctx || !smp)
        goto done;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    CHECK(gp.speculative_mtp == 0, "speculative_mtp defaults to %d", gp.speculative_mtp);
    gp.speculative_mtp = 2;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT && !gen,
          "speculative_mtp 2 accepted");
    /* an older caller's params end before speculative_mtp: off */
    gp.speculative_mtp = 1;
    gp.size = offsetof(dsr1_generate_params, speculative_mtp);
    gp.max_new_tokens = 16;
    CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_OK, "new: %s", dsr1_last_error());
    if (gen) {
        dsr1_generation_run(gen, NULL);
        dsr1_generation_stats s;
        s.size = sizeof s;
        dsr1_generation_get_stats(gen, &s);
        CHECK(s.n_generated == 16 && s.n_drafted == 0, "old params: %d generated, %d drafted", s.n_generated,
              s.n_drafted);
        dsr1_generation_free(gen);
    }
    /* an older caller's stats end before n_drafted: nothing written past */
    gp.size = sizeof gp;
    CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_OK, "new: %s", dsr1_last_error());
    if (gen) {
        dsr1_generation_run(gen, NULL);
        dsr1_generation_stats s;
        memset(&s, 0x5a, sizeof s);
        s.size = offsetof(dsr1_generation_stats, n_drafted);
        CHECK(dsr1_generation_get_stats(gen, &s) == DSR1_OK, "get_stats");
        int32_t canary;
        memset(&canary, 0x5a, sizeof canary);
        CHECK(s.n_generated == 16 && s.n_drafted == canary && s.n_accepted == canary &&
                  s.size == offsetof(dsr1_generation_stats, n_drafted),
              "old stats struct: n_generated %d, n_drafted %d written", s.n_generated, s.n_drafted);
        s.size = sizeof s;
        dsr1_generation_get_stats(gen, &s);
        CHECK(s.n_drafted > 0, "no drafts");
        dsr1_generation_free(gen);
    }
done:
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

/* A model without an MTP head ignores the flag. */
static void test_no_mtp(const char *name)
{
    dsr1_model *m = load(name);
    dsr1_token prompt[64];
    int n = read_manifest(name, prompt, 64);
    if (!m || n <= 0) {
        CHECK(0, "%s: no model or prompt", name);
        dsr1_model_free(m);
        return;
    }
    static run_out plain, spec;
    run_cfg rc = {0, 1, N_GEN, -1, 256, 64};
    run(m, prompt, n, RANDOM, rc, &plain);
    rc.mtp = 1;
    run(m, prompt, n, RANDOM, rc, &spec);
    printf("%s (no MTP head) with speculative_mtp 1: %s tokens, n_drafted %d\n", name,
           same_tokens(plain.steps, plain.n_steps, spec.steps, spec.n_steps) ? "same" : "DIFFERENT",
           spec.stats.n_drafted);
    CHECK(plain.n_steps == N_GEN && same_tokens(plain.steps, plain.n_steps, spec.steps, spec.n_steps),
          "%s: the flag changed the tokens", name);
    CHECK(spec.stats.n_drafted == 0 && spec.stats.n_accepted == 0, "%s: drafted %d", name, spec.stats.n_drafted);
    dsr1_model_free(m);
}

/* ---- timing (printed, not asserted) ------------------------------------ */

static void bench(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    static run_out o;
    double tps[2] = {0, 0};
    int drafted = 0, accepted = 0;
    for (int mtp = 0; mtp < 2; mtp++) {
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            run_cfg rc = {mtp, 0, 256, -1, 512, 64};
            run(m, prompt, n_prompt, GREEDY, rc, &o);
            double t = o.stats.generate_seconds > 0 ? o.stats.n_generated / o.stats.generate_seconds : 0;
            best = t > best ? t : best;
            drafted = o.stats.n_drafted;
            accepted = o.stats.n_accepted;
        }
        tps[mtp] = best;
    }
    printf("%s bench, greedy 256 tokens, 2 threads, best of 3: plain %.0f tok/s, MTP %.0f tok/s "
           "(acceptance %d/%d = %.1f%%)\n",
           name, tps[0], tps[1], accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    const char *names[] = {"deepseek2-q8_0", "deepseek2-f16"};
    for (int i = 0; i < 2; i++) {
        dsr1_model *m = load(names[i]);
        dsr1_token prompt[64];
        int n = read_manifest(names[i], prompt, 64);
        if (!m || n <= 0) {
            CHECK(0, "%s: no model or prompt", names[i]);
            dsr1_model_free(m);
            continue;
        }
        CHECK(dsri_deepseek2_has_mtp(m), "%s: no MTP head", names[i]);
        test_batch_rows(m, names[i], prompt, n);
        test_identical(m, names[i], prompt, n);
        test_mtp_cache(m, names[i], prompt, n, 64);
        test_mtp_cache(m, names[i], prompt, n, 8);
        test_chat(m, names[i]);
        if (i == 0)
            test_api(m, prompt, n);
        if (!getenv("DSR1_TEST_NO_BENCH"))
            bench(m, names[i], prompt, n);
        dsr1_model_free(m);
    }
    test_no_mtp("qwen2-q8_0");
    if (failures)
        printf("%d failure(s)\n", failures);
    else
        printf("all MTP tests passed\n");
    return failures ? 1 : 0;
}
