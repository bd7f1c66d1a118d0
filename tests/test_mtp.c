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
 *   recomputed over the whole sequence in one batch (rewinds were handled),
 *   also when a plain generation filled the reused prefix;
 * - stats: n_drafted / n_accepted, and an older caller's smaller struct is
 *   not written past its size; speculative_mtp outside {0, 1} is refused;
 * - the draft gate (speculative_min_p): 0 verifies every draft, 1 none, the
 *   tokens never change;
 * - a model without an MTP head (qwen2) ignores the flag (n_drafted 0);
 * - a timing printout with and without MTP (no assertions on it).
 * All of it with an f32 KV cache, then the token identities, bit-identical
 * rows and the MTP cache layer again with the f16 cache (the default).
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
#include "generate/generation.h"
#include "model/context.h"
#include "model/deepseek2.h"
#include "model/model.h"
#include "check.h"


#define MAXTOK 1024
#define N_GEN 64

static const char *data_dir;
static dsr1_kv_type kv_type = DSR1_KV_F32; /* of every context the tests make */

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

/* backend NULL: the default (the best available, or $DSR1_BACKEND) */
static dsr1_context *new_ctx_on(const dsr1_model *m, int n_ctx, int n_batch, const char *backend)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.backend = backend;
    cp.kv_type = kv_type;
    dsr1_context *ctx = NULL;
    dsr1_status st = dsr1_context_new(m, &cp, &ctx);
    CHECK(st == DSR1_OK, "context: %s", dsr1_last_error());
    return ctx;
}

static dsr1_context *new_ctx(const dsr1_model *m, int n_ctx, int n_batch)
{
    return new_ctx_on(m, n_ctx, n_batch, NULL);
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

/* Drafts that are right pct% of the time: the tokens of a plain run. */
typedef struct oracle {
    const dsr1_token *ref;
    int n_ref;
    int pct;
} oracle;

static dsr1_token oracle_draft(void *user_data, dsr1_token draft, int32_t k)
{
    const oracle *o = user_data;
    unsigned h = ((unsigned)k * 2654435761u) >> 8;
    if (k < o->n_ref && (int)(h % 100) < o->pct)
        return o->ref[k];
    return draft; /* the head's own: nearly always wrong here */
}

/* One generation. */
enum { VIA_GENERATE, VIA_STEP, VIA_RUN };
typedef struct run_cfg {
    int mtp;
    int via;          /* VIA_*: dsr1_generate (no stats), steps, dsr1_generation_run */
    int32_t max_new;  /* max_new_tokens */
    int32_t budget;   /* think_budget (-1: none) */
    int n_ctx, n_batch;
    const oracle *oracle; /* replaces the drafts (not with VIA_GENERATE) */
    int budget_stop;      /* think_budget_action STOP (else CLOSE) */
    const char *backend;  /* NULL: the default */
} run_cfg;

typedef struct run_out {
    dsr1_token steps[MAXTOK]; /* tokens the steps returned */
    int n_steps;
    rec ev;                   /* tokens of the events */
    dsr1_stop_reason why;
    dsr1_generation_stats stats;
    double seconds;
    int32_t n_past; /* what the context holds afterwards */
    const char *backend;
} run_out;

static void run(const dsr1_model *m, const dsr1_token *prompt, int n_prompt, samp_cfg sc, run_cfg rc, run_out *o)
{
    memset(o, 0, sizeof *o);
    dsr1_context *ctx = new_ctx_on(m, rc.n_ctx, rc.n_batch, rc.backend);
    dsr1_sampler *smp = new_sampler(m, sc);
    if (!ctx || !smp)
        goto done;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = rc.max_new;
    gp.think_budget = rc.budget;
    gp.think_budget_action = rc.budget_stop ? DSR1_BUDGET_STOP : DSR1_BUDGET_CLOSE;
    gp.starts_in_reasoning = rc.budget >= 0 ? 1 : 0;
    gp.on_event = on_event;
    gp.user_data = &o->ev;
    gp.speculative_mtp = rc.mtp;
    dsr1_generation *gen = NULL;
    double t0 = now_seconds();
    if (rc.via == VIA_GENERATE) {
        dsr1_status st = dsr1_generate(ctx, smp, prompt, n_prompt, &gp, &o->why);
        CHECK(st == DSR1_OK, "generate: %s", dsr1_last_error());
        o->seconds = now_seconds() - t0;
        goto done;
    }
    dsr1_status st = dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen);
    CHECK(st == DSR1_OK, "generation_new: %s", dsr1_last_error());
    if (st)
        goto done;
    if (rc.oracle)
        dsri_generation_set_draft_override(gen, oracle_draft, (void *)rc.oracle);
    if (rc.via == VIA_STEP) {
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
    o->n_past = ctx ? dsr1_context_n_past(ctx) : -1;
    o->backend = ctx ? dsr1_context_backend(ctx) : "?"; /* a static name */
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
    /* large; the test is single-threaded */
    static run_out plain, spec, spec_gen, o60, o100;
    rc.mtp = 0;
    rc.via = VIA_STEP;
    run(m, prompt, n_prompt, sc, rc, &plain);
    rc.mtp = 1;
    run(m, prompt, n_prompt, sc, rc, &spec);
    rc.via = VIA_GENERATE;
    run(m, prompt, n_prompt, sc, rc, &spec_gen);
    oracle or60 = {plain.steps, plain.n_steps, 60}, or100 = {plain.steps, plain.n_steps, 100};
    rc.via = VIA_STEP;
    rc.oracle = &or60;
    run(m, prompt, n_prompt, sc, rc, &o60);
    rc.via = VIA_RUN;
    rc.oracle = &or100;
    run(m, prompt, n_prompt, sc, rc, &o100);

    printf("%s %-30s %3d tokens, stop %d | MTP accepted %d/%d; oracle drafts: %d/%d, %d/%d\n", name, what,
           spec.n_steps, (int)spec.why, spec.stats.n_accepted, spec.stats.n_drafted, o60.stats.n_accepted,
           o60.stats.n_drafted, o100.stats.n_accepted, o100.stats.n_drafted);
    const run_out *runs[4] = {&spec, &spec_gen, &o60, &o100};
    const char *run_names[4] = {"MTP (steps)", "MTP (dsr1_generate)", "MTP, 60% oracle drafts (steps)",
                                "MTP, 100% oracle drafts (run)"};
    for (int r = 0; r < 4; r++) {
        const run_out *o = runs[r];
        int ok = same_tokens(plain.ev.tokens, plain.ev.n, o->ev.tokens, o->ev.n) && plain.why == o->why &&
                 (o->n_steps == 0 || same_tokens(plain.steps, plain.n_steps, o->steps, o->n_steps));
        /* and the context is left as plain decoding leaves it */
        CHECK(o->n_past == plain.n_past, "%s %s: %s leaves n_past %d, plain %d", name, what, run_names[r], o->n_past,
              plain.n_past);
        CHECK(ok, "%s %s: %s changed the tokens", name, what, run_names[r]);
        if (!ok) {
            print_tokens("plain", plain.ev.tokens, plain.ev.n);
            print_tokens("mtp  ", o->ev.tokens, o->ev.n);
        }
        if (r == 1)
            continue; /* dsr1_generate: no stats */
        CHECK(plain.stats.n_generated == o->stats.n_generated, "%s %s: %s generated %d vs %d", name, what,
              run_names[r], o->stats.n_generated, plain.stats.n_generated);
        CHECK(o->stats.n_accepted >= 0 && o->stats.n_accepted <= o->stats.n_drafted &&
                  o->stats.n_drafted <= o->stats.n_generated,
              "%s %s: %s drafted %d accepted %d generated %d", name, what, run_names[r], o->stats.n_drafted,
              o->stats.n_accepted, o->stats.n_generated);
    }
    CHECK(plain.n_steps > 0 && plain.stats.n_drafted == 0 && plain.stats.n_accepted == 0,
          "%s: %d steps, drafts without MTP", name, plain.n_steps);
    /* every draft the oracle makes right is accepted; a wrong one never is */
    CHECK(o100.stats.n_drafted > 0 && o100.stats.n_accepted == o100.stats.n_drafted, "%s %s: oracle 100%%: %d/%d",
          name, what, o100.stats.n_accepted, o100.stats.n_drafted);
    CHECK(o60.stats.n_accepted > 0 && o60.stats.n_accepted < o60.stats.n_drafted, "%s %s: oracle 60%%: %d/%d", name,
          what, o60.stats.n_accepted, o60.stats.n_drafted);
}

static void test_identical(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    run_cfg rc = {0, VIA_STEP, N_GEN, -1, 256, 64, NULL, 0, NULL};
    compare_modes(m, name, "greedy", prompt, n_prompt, GREEDY, rc);
    compare_modes(m, name, "temp 0.8 top-k 40 penalty 1.1", prompt, n_prompt, RANDOM, rc);
    samp_cfg other = RANDOM;
    other.seed = 99;
    other.top_k = 0;
    compare_modes(m, name, "temp 0.8 seed 99", prompt, n_prompt, other, rc);
    /* prompt in chunks of n_batch 8 */
    run_cfg small = {0, VIA_STEP, N_GEN, -1, 256, 8, NULL, 0, NULL};
    compare_modes(m, name, "greedy, n_batch 8", prompt, n_prompt, GREEDY, small);
    /* the context fills up during generation */
    run_cfg full = {0, VIA_STEP, 0, -1, n_prompt + 21, 64, NULL, 0, NULL};
    compare_modes(m, name, "greedy, context full", prompt, n_prompt, GREEDY, full);
    /* the thinking budget injects "\n</think>\n\n" at assorted points */
    for (int budget = 1; budget <= 12; budget++) {
        char what[64];
        snprintf(what, sizeof what, "greedy, think budget %d", budget);
        run_cfg bc = {0, VIA_STEP, 24, budget, 256, 64, NULL, 0, NULL};
        compare_modes(m, name, what, prompt, n_prompt, GREEDY, bc);
    }
    /* ... or stops (after an accepted draft, too) */
    for (int budget = 5; budget <= 8; budget++) {
        char what[64];
        snprintf(what, sizeof what, "temp 0.8, think budget %d STOP", budget);
        run_cfg bc = {0, VIA_STEP, 24, budget, 256, 64, NULL, 1, NULL};
        compare_modes(m, name, what, prompt, n_prompt, RANDOM, bc);
    }
}

/* Freeing or cancelling a generation right after a draft was accepted
 * leaves the context as plain decoding would (the last token unevaluated). */
static void test_early_end(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    static run_out plain;
    run_cfg rc = {0, VIA_STEP, N_GEN, -1, 256, 64, NULL, 0, NULL};
    run(m, prompt, n_prompt, GREEDY, rc, &plain);
    oracle orc = {plain.steps, plain.n_steps, 100};
    for (int how = 0; how < 2; how++) { /* free, cancel */
        dsr1_context *ctx = new_ctx(m, 256, 64);
        dsr1_sampler *smp = new_sampler(m, GREEDY);
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.max_new_tokens = N_GEN;
        gp.speculative_mtp = 1;
        dsr1_generation *gen = NULL;
        if (!ctx || !smp || dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) != DSR1_OK) {
            CHECK(0, "setup: %s", dsr1_last_error());
        } else {
            dsri_generation_set_draft_override(gen, oracle_draft, &orc);
            int n = 0, ahead = 0;
            dsr1_stop_reason why = DSR1_STOP_NONE;
            while (why == DSR1_STOP_NONE && n < 20) {
                dsr1_token t;
                CHECK(dsr1_generation_step(gen, &t, &why) == DSR1_OK, "step");
                n++;
                /* the draft of token n was accepted: it is in the cache already */
                if (dsr1_context_n_past(ctx) == n_prompt + n && n >= 6) {
                    ahead = 1;
                    break;
                }
            }
            CHECK(ahead, "%s: no accepted draft within %d steps", name, n);
            if (how == 1) {
                dsr1_generation_cancel(gen);
                CHECK(dsr1_generation_step(gen, NULL, &why) == DSR1_OK && why == DSR1_STOP_CANCELLED, "cancel");
            }
            dsr1_generation_free(gen);
            int32_t np = dsr1_context_n_past(ctx);
            printf("%s: %s after an accepted draft at token %d: n_past %d (plain: %d)\n", name,
                   how ? "cancelled" : "freed", n, np, n_prompt + n - 1);
            CHECK(np == n_prompt + n - 1, "%s: n_past %d after %s, want %d", name, np, how ? "cancel" : "free",
                  n_prompt + n - 1);
        }
        dsr1_sampler_free(smp);
        dsr1_context_free(ctx);
    }
}

/* ---- the MTP cache layer ----------------------------------------------- */

/* Entries made in another batch differ by float rounding (about 1e-6);
 * stale ones by far more. In an f16 cache such a difference can flip the
 * rounding of a value: one f16 step, 2^-10 relative (values stay below 4
 * here). */
#define MTP_CACHE_TOL (kv_type == DSR1_KV_F16 ? 4.0f / 1024.0f : 1e-3f)

/* The largest difference between the MTP cache layer entries [0, cur) of
 * ctx and the MTP block recomputed over ctx's tokens in one batch (scalar
 * backend); INFINITY on NaN or allocation failure. */
static float mtp_layer_maxdiff(const dsr1_model *m, dsr1_context *ctx, int32_t cur)
{
    const int64_t d = m->hp.n_embd, kw = m->kv_k_width;
    int32_t n = dsr1_context_n_past(ctx);
    dsr1_context *ref = new_ctx_on(m, 256, 256, "scalar");
    float *hid = malloc((size_t)256 * (size_t)d * sizeof(float));
    float *lg = malloc((size_t)256 * (size_t)m->hp.n_vocab * sizeof(float));
    int32_t pos[256];
    float *a = malloc((size_t)kw * sizeof(float)), *b = malloc((size_t)kw * sizeof(float));
    float mx = INFINITY;
    if (!ref || !hid || !lg || !a || !b || n < 2 || n > 256)
        goto done;
    CHECK(dsr1_eval(ref, ctx->tokens, n, 0, 0) == DSR1_OK, "eval: %s", dsr1_last_error());
    CHECK(dsri_ctx_hidden_f32(ref, hid) == DSR1_OK, "hidden states");
    for (int32_t i = 0; i < n - 1; i++)
        pos[i] = i;
    CHECK(dsri_deepseek2_mtp(ref, hid, ctx->tokens + 1, pos, n - 1, lg) == DSR1_OK, "mtp: %s", dsr1_last_error());
    mx = 0.0f;
    for (int32_t i = 0; i < cur; i++) {
        dsri_ctx_k_f32(ctx, m->hp.n_layer, i, a);
        dsri_ctx_k_f32(ref, m->hp.n_layer, i, b);
        for (int64_t j = 0; j < kw; j++) {
            float df = fabsf(a[j] - b[j]);
            if (!(df <= mx))
                mx = df == df ? df : INFINITY;
        }
    }
done:
    free(hid);
    free(lg);
    free(a);
    free(b);
    dsr1_context_free(ref);
    return mx;
}

/* After a speculative generation, the MTP cache entries the context counts
 * as current equal the MTP block recomputed over the whole sequence. On the
 * scalar backend (f32 arithmetic), so that a tight tolerance separates
 * batch-vs-step rounding from a stale entry. */
static void test_mtp_cache(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt,
                           int n_batch)
{
    dsr1_context *ctx = new_ctx_on(m, 256, n_batch, "scalar");
    dsr1_sampler *smp = new_sampler(m, RANDOM);
    if (!ctx || !smp)
        goto done;
    /* drafts right 60% of the time: accepted and rejected drafts mixed */
    static run_out plain;
    run_cfg rc = {0, VIA_STEP, N_GEN, -1, 256, n_batch, NULL, 0, "scalar"};
    run(m, prompt, n_prompt, RANDOM, rc, &plain);
    oracle orc = {plain.steps, plain.n_steps, 60};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = N_GEN;
    gp.speculative_mtp = 1;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_OK, "new: %s", dsr1_last_error());
    if (!gen)
        goto done;
    dsri_generation_set_draft_override(gen, oracle_draft, &orc);
    CHECK(dsr1_generation_run(gen, NULL) == DSR1_OK, "run: %s", dsr1_last_error());
    dsr1_generation_stats gs;
    gs.size = sizeof gs;
    dsr1_generation_get_stats(gen, &gs);
    dsr1_generation_free(gen);
    int32_t n = dsr1_context_n_past(ctx);
    int32_t cur = ctx->mtp_n_past < n - 1 ? ctx->mtp_n_past : n - 1; /* entries with their next token cached */
    CHECK(ctx->mtp_n_past <= n && cur >= n - 2, "%s: MTP cache current to %d of %d", name, ctx->mtp_n_past, n);
    float mx = mtp_layer_maxdiff(m, ctx, cur);
    printf("%s: MTP cache layer after generating (n_batch %d, %d/%d drafts accepted): %d entries current, "
           "max|diff| vs recomputed %.3g\n",
           name, n_batch, gs.n_accepted, gs.n_drafted, cur, (double)mx);
    CHECK(gs.n_accepted > 0, "no accepted drafts");
    CHECK(mx < MTP_CACHE_TOL, "%s: the MTP cache layer differs from the recomputed one by %g", name, (double)mx);

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
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

/* A speculative generation on a context a plain one filled (the chat case:
 * the prefix is reused, but its MTP cache entries were never made): the
 * entries it leaves current must still equal the recomputed ones. */
static void test_mtp_after_plain(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    dsr1_context *ctx = new_ctx_on(m, 256, 64, "scalar");
    dsr1_sampler *smp = new_sampler(m, GREEDY);
    dsr1_token seq[256];
    int32_t n_seq = 0;
    if (!ctx || !smp || n_prompt > 128)
        goto done;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 24;
    CHECK(dsr1_generate(ctx, smp, prompt, n_prompt, &gp, NULL) == DSR1_OK, "plain: %s", dsr1_last_error());
    n_seq = dsr1_context_n_past(ctx);
    memcpy(seq, ctx->tokens, (size_t)n_seq * sizeof *seq);
    seq[n_seq++] = prompt[0]; /* the next "user turn" */
    seq[n_seq++] = prompt[1];
    int32_t reused = ctx->mtp_n_past;
    gp.speculative_mtp = 1;
    dsr1_generation_stats gs;
    gs.size = sizeof gs;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, seq, n_seq, &gp, &gen) == DSR1_OK, "new: %s", dsr1_last_error());
    if (!gen)
        goto done;
    CHECK(dsr1_generation_run(gen, NULL) == DSR1_OK, "run: %s", dsr1_last_error());
    dsr1_generation_get_stats(gen, &gs);
    dsr1_generation_free(gen);
    int32_t n = dsr1_context_n_past(ctx);
    int32_t cur = ctx->mtp_n_past < n - 1 ? ctx->mtp_n_past : n - 1;
    float mx = mtp_layer_maxdiff(m, ctx, cur);
    printf("%s: MTP after a plain generation: MTP cache current to %d before, prompt of %d re-evaluated %d; "
           "after: %d of %d entries current, max|diff| vs recomputed %.3g\n",
           name, reused, n_seq, gs.n_prompt_eval, cur, n, (double)mx);
    CHECK(cur >= n - 2, "%s: MTP cache current to %d of %d", name, ctx->mtp_n_past, n);
    CHECK(mx < MTP_CACHE_TOL, "%s: stale MTP cache entries after a plain generation (max diff %g)", name,
          (double)mx);
done:
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

/* ---- chat: two turns, the second reusing the prefix -------------------- */

/* refs[turn]: the tokens of a plain run's turns (recorded when mtp is 0,
 * used as 60% right drafts when mtp is 1). */
typedef struct chat_refs {
    dsr1_token tokens[2][MAXTOK];
    int n[2];
} chat_refs;

static void chat_run(const dsr1_model *m, int mtp, chat_refs *refs, char *out, size_t cap,
                     dsr1_generation_stats *stats)
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
        oracle orc = {refs->tokens[turn], refs->n[turn], 60};
        if (mtp)
            dsri_generation_set_draft_override(gen, oracle_draft, &orc);
        else
            refs->n[turn] = 0;
        dsr1_stop_reason why = DSR1_STOP_NONE;
        while (why == DSR1_STOP_NONE) {
            dsr1_token t;
            dsr1_status st = dsr1_generation_step(gen, &t, &why);
            CHECK(st == DSR1_OK, "chat step: %s", dsr1_last_error());
            if (st)
                break;
            if (!mtp && t >= 0 && refs->n[turn] < MAXTOK)
                refs->tokens[turn][refs->n[turn]++] = t;
        }
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
    static chat_refs refs;
    dsr1_generation_stats sa, sb;
    chat_run(m, 0, &refs, a, sizeof a, &sa);
    chat_run(m, 1, &refs, b, sizeof b, &sb);
    printf("%s chat, 2 turns, 60%% oracle drafts: %s; prompt tokens evaluated %d / %d; drafts %d, accepted %d\n",
           name,
           strcmp(a, b) == 0 ? "same conversation" : "DIFFERENT", sa.n_prompt_eval, sb.n_prompt_eval, sb.n_drafted,
           sb.n_accepted);
    CHECK(a[0] && strcmp(a, b) == 0, "%s: the chat differs with MTP", name);
    CHECK(sa.n_prompt_eval == sb.n_prompt_eval, "%s: prefix reuse differs (%d vs %d)", name, sa.n_prompt_eval,
          sb.n_prompt_eval);
    CHECK(sb.n_accepted > 0, "%s: no accepted drafts in the chat", name);
}

/* ---- the draft confidence gate (speculative_min_p) ---------------------- */

typedef struct gate_run {
    dsr1_token tokens[MAXTOK];
    int n;
    dsr1_generation_stats stats;
} gate_run;

/* size: how much of dsr1_generate_params the "caller" knows (sizeof: all) */
static void gate_generate(const dsr1_model *m, const dsr1_token *prompt, int n_prompt, float min_p, size_t size,
                          gate_run *o)
{
    memset(o, 0, sizeof *o);
    dsr1_context *ctx = new_ctx_on(m, 256, 64, "scalar");
    dsr1_sampler *smp = new_sampler(m, GREEDY);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = N_GEN;
    gp.speculative_mtp = 1;
    gp.speculative_min_p = min_p;
    gp.size = size;
    dsr1_generation *gen = NULL;
    if (ctx && smp)
        CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_OK, "new: %s", dsr1_last_error());
    dsr1_stop_reason why = DSR1_STOP_NONE;
    while (gen && why == DSR1_STOP_NONE && o->n < MAXTOK) {
        dsr1_token t;
        if (dsr1_generation_step(gen, &t, &why) != DSR1_OK)
            break;
        if (t >= 0)
            o->tokens[o->n++] = t;
    }
    o->stats.size = sizeof o->stats;
    if (gen)
        dsr1_generation_get_stats(gen, &o->stats);
    dsr1_generation_free(gen);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

/* Drafts the head is less sure of than speculative_min_p are not verified:
 * 0 verifies all, 1 none (a random-weight head is never certain), the
 * default (0.5) some or none; the tokens are the same in every case, an
 * older caller's struct gets the default, values outside [0, 1] are refused. */
static void test_min_p(const dsr1_model *m, const char *name, const dsr1_token *prompt, int n_prompt)
{
    static gate_run all, none, dflt, old;
    gate_generate(m, prompt, n_prompt, 0.0f, sizeof(dsr1_generate_params), &all);
    gate_generate(m, prompt, n_prompt, 1.0f, sizeof(dsr1_generate_params), &none);
    gate_generate(m, prompt, n_prompt, 0.5f, sizeof(dsr1_generate_params), &dflt);
    gate_generate(m, prompt, n_prompt, 0.0f, offsetof(dsr1_generate_params, speculative_min_p), &old);
    printf("%s draft gate: min_p 0: %d verified (%d accepted), %d declined; min_p 1: %d / %d; "
           "default 0.5: %d / %d\n",
           name, all.stats.n_drafted, all.stats.n_accepted, all.stats.n_declined, none.stats.n_drafted,
           none.stats.n_declined, dflt.stats.n_drafted, dflt.stats.n_declined);
    CHECK(all.n > 0 && same_tokens(all.tokens, all.n, none.tokens, none.n) &&
              same_tokens(all.tokens, all.n, dflt.tokens, dflt.n) && same_tokens(all.tokens, all.n, old.tokens, old.n),
          "%s: the tokens depend on speculative_min_p", name);
    CHECK(all.stats.n_drafted > 0 && all.stats.n_declined == 0, "%s: min_p 0: %d verified, %d declined", name,
          all.stats.n_drafted, all.stats.n_declined);
    CHECK(none.stats.n_drafted == 0 && none.stats.n_declined > 0, "%s: min_p 1: %d verified, %d declined", name,
          none.stats.n_drafted, none.stats.n_declined);
    CHECK(dflt.stats.n_drafted <= all.stats.n_drafted && dflt.stats.n_declined > 0,
          "%s: min_p 0.5: %d verified, %d declined (a random head is rarely that sure)", name, dflt.stats.n_drafted,
          dflt.stats.n_declined);
    CHECK(old.stats.n_drafted == dflt.stats.n_drafted && old.stats.n_declined == dflt.stats.n_declined,
          "%s: an older caller's params did not get the default gate", name);
    dsr1_context *ctx = new_ctx(m, 64, 16);
    dsr1_sampler *smp = new_sampler(m, GREEDY);
    const float bad[] = {-0.01f, 1.01f, NAN, INFINITY};
    for (size_t i = 0; ctx && smp && i < sizeof bad / sizeof bad[0]; i++) {
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.speculative_mtp = 1;
        gp.speculative_min_p = bad[i];
        dsr1_generation *gen = NULL;
        CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT && !gen &&
                  strstr(dsr1_last_error(), "speculative_min_p"),
              "%s: speculative_min_p %g accepted", name, (double)bad[i]);
    }
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
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
        CHECK(s.n_drafted + s.n_declined > 0, "no drafts");
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
    run_cfg rc = {0, VIA_STEP, N_GEN, -1, 256, 64, NULL, 0, NULL};
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
    static run_out o, ref;
    double tps[3] = {0, 0, 0};
    int drafted = 0, accepted = 0;
    run_cfg rc0 = {0, VIA_RUN, 256, -1, 512, 64, NULL, 0, NULL};
    run(m, prompt, n_prompt, GREEDY, rc0, &ref);
    oracle orc = {ref.ev.tokens, ref.ev.n, 100};
    for (int mode = 0; mode < 3; mode++) { /* plain, MTP, MTP with always-right drafts */
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            run_cfg rc = {mode > 0, VIA_RUN, 256, -1, 512, 64, mode == 2 ? &orc : NULL, 0, NULL};
            run(m, prompt, n_prompt, GREEDY, rc, &o);
            double t = o.stats.generate_seconds > 0 ? o.stats.n_generated / o.stats.generate_seconds : 0;
            best = t > best ? t : best;
            if (mode == 1) {
                drafted = o.stats.n_drafted;
                accepted = o.stats.n_accepted;
            }
        }
        tps[mode] = best;
    }
    printf("%s bench, greedy 256 tokens, %s backend, 2 threads, best of 3: plain %.0f tok/s; MTP %.0f tok/s "
           "(acceptance %d/%d = %.1f%%); MTP with always-right drafts %.0f tok/s\n",
           name, o.backend, tps[0], tps[1], accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0, tps[2]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    const char *names[] = {"deepseek2-q8_0", "deepseek2-f16"};
    for (int kv = 0; kv < 2; kv++) {
        kv_type = kv ? DSR1_KV_F16 : DSR1_KV_F32;
        printf("---- %s KV cache ----\n", kv ? "f16" : "f32");
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
            test_early_end(m, names[i], prompt, n);
            test_mtp_cache(m, names[i], prompt, n, 64);
            test_mtp_cache(m, names[i], prompt, n, 8);
            test_mtp_after_plain(m, names[i], prompt, n);
            test_chat(m, names[i]);
        test_min_p(m, names[i], prompt, n);
            if (i == 0 && kv == 0)
                test_api(m, prompt, n);
            if (!getenv("DSR1_TEST_NO_BENCH") && kv == 0)
                bench(m, names[i], prompt, n);
            dsr1_model_free(m);
        }
    }
    test_no_mtp("qwen2-q8_0");
    if (failures)
        printf("%d failure(s)\n", failures);
    else
        printf("all MTP tests passed\n");
    return failures ? 1 : 0;
}
