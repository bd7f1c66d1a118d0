/*
 * libdsr1 - end-to-end tests of the generation API and chat sessions on the
 * fixture models (random weights, 303-token byte BPE with the R1 specials:
 * the text is gibberish, the mechanics are what is tested).
 *
 *   test_generate DATA_DIR    (DATA_DIR/models/{qwen2,llama}-q8_0.gguf)
 *
 * - greedy generation equals the argmax of dsr1_eval's logits step by step;
 * - the step API and dsr1_generate give identical tokens (seeded sampling);
 * - events cover exactly the generated (and injected) tokens, their texts are
 *   valid UTF-8 and, when the raw bytes are valid UTF-8, reproduce them;
 * - KV prefix reuse (n_prompt_eval), max_new_tokens, context full;
 * - thinking budget (CLOSE injects "\n</think>\n\n", STOP ends);
 * - stop strings; cancellation from a callback, between steps and from
 *   another thread;
 * - chat sessions: recorded replies, and the second turn reuses the prefix.
 * Exits non-zero on any failure.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#endif
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

#include "utf8_check.h"
#include "check.h"


#define MAXTOK 1024

/* ---- event recording ---- */

typedef struct rec {
    dsr1_token tokens[MAXTOK]; /* every event's tokens, in order */
    int n_tokens;
    char reasoning[8192];
    size_t r_len;
    char answer[8192];
    size_t a_len;
    int n_begin, n_end, n_done, n_text;
    dsr1_stop_reason reason;
    int bad_utf8;
    int cancel_after_text; /* >0: return 1 at that text event */
    dsr1_generation *gen;  /* for cancel-from-callback */
    int cancel_api_after_text;
    /* cross-thread cancel handshake */
    atomic_int *signal;
    atomic_int *acked;
    int signal_at_text;
} rec;

/* Replace ill-formed sequences by U+FFFD, one per maximal subpart (the
 * Unicode recommended practice, which the library documents). */
static size_t sanitize(const unsigned char *p, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        size_t j = 1;
        int bad = need == 0;
        while (!bad && j <= need) {
            if (i + j >= n || p[i + j] < lo || p[i + j] > hi) {
                bad = 1;
                break;
            }
            lo = 0x80, hi = 0xBF;
            j++;
        }
        if (bad) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += j;
        } else {
            memcpy(out + o, p + i, need + 1);
            o += need + 1;
            i += need + 1;
        }
    }
    out[o] = '\0';
    return o;
}

static int on_event(const dsr1_event *ev, void *user_data)
{
    rec *r = user_data;
    for (int32_t i = 0; i < ev->n_tokens && r->n_tokens < MAXTOK; i++)
        r->tokens[r->n_tokens++] = ev->tokens[i];
    if (!valid_utf8((const unsigned char *)ev->text, ev->text_len) || ev->text[ev->text_len] != '\0')
        r->bad_utf8++;
    switch (ev->type) {
    case DSR1_EVENT_REASONING_BEGIN:
        r->n_begin++;
        break;
    case DSR1_EVENT_REASONING_END:
        r->n_end++;
        break;
    case DSR1_EVENT_DONE:
        r->n_done++;
        r->reason = ev->stop_reason;
        break;
    case DSR1_EVENT_REASONING_TEXT:
    case DSR1_EVENT_ANSWER_TEXT: {
        char *dst = ev->type == DSR1_EVENT_REASONING_TEXT ? r->reasoning : r->answer;
        size_t *len = ev->type == DSR1_EVENT_REASONING_TEXT ? &r->r_len : &r->a_len;
        if (*len + ev->text_len < sizeof r->answer) {
            memcpy(dst + *len, ev->text, ev->text_len);
            *len += ev->text_len;
            dst[*len] = '\0';
        }
        r->n_text++;
        if (r->cancel_after_text && r->n_text == r->cancel_after_text)
            return 1;
        if (r->cancel_api_after_text && r->n_text == r->cancel_api_after_text)
            dsr1_generation_cancel(r->gen);
        if (r->signal && r->n_text == r->signal_at_text) {
            atomic_store(r->signal, 1);
            while (!atomic_load(r->acked))
                ; /* wait until the other thread has cancelled */
        }
        break;
    }
    }
    return 0;
}

/* ---- helpers ---- */

static dsr1_model *load(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", dir, name);
    dsr1_model *m = NULL;
    if (dsr1_model_load(path, NULL, &m) != DSR1_OK) {
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (dsr1_model_load(path, NULL, &m) != DSR1_OK) {
            fprintf(stderr, "cannot load %s: %s\n", name, dsr1_last_error());
            return NULL;
        }
    }
    return m;
}

static dsr1_context *new_ctx(dsr1_model *m, int n_ctx)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_threads = 2;
    dsr1_context *ctx = NULL;
    if (dsr1_context_new(m, &cp, &ctx) != DSR1_OK) {
        fprintf(stderr, "context: %s\n", dsr1_last_error());
        exit(1);
    }
    return ctx;
}

static dsr1_sampler *new_sampler(dsr1_model *m, float temp, uint64_t seed)
{
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = temp;
    sp.seed = seed;
    dsr1_sampler *s = NULL;
    if (dsr1_sampler_new(dsr1_model_n_vocab(m), &sp, &s) != DSR1_OK) {
        fprintf(stderr, "sampler: %s\n", dsr1_last_error());
        exit(1);
    }
    return s;
}

static int chat_prompt(dsr1_model *m, const char *user, dsr1_token *out, int cap)
{
    dsr1_chat_message msg = {"user", user};
    int32_t n = 0;
    dsr1_status st = dsr1_chat_tokenize(m, &msg, 1, DSR1_CHAT_ADD_GENERATION_PROMPT, out, cap, &n);
    if (st != DSR1_OK) {
        fprintf(stderr, "chat_tokenize: %s\n", dsr1_last_error());
        exit(1);
    }
    return n;
}

/* Step through a generation collecting the sampled tokens. */
static int run_steps(dsr1_generation *gen, dsr1_token *out, int cap, dsr1_stop_reason *why)
{
    int n = 0;
    dsr1_stop_reason r = DSR1_STOP_NONE;
    while (r == DSR1_STOP_NONE) {
        dsr1_token t;
        dsr1_status st = dsr1_generation_step(gen, &t, &r);
        if (st != DSR1_OK) {
            fprintf(stderr, "step: %s\n", dsr1_last_error());
            failures++;
            break;
        }
        if (t >= 0 && n < cap)
            out[n++] = t;
    }
    *why = r;
    return n;
}

/* ---- tests ---- */

static void test_greedy_matches_argmax(dsr1_model *m, const char *name)
{
    enum { N = 40 };
    dsr1_token prompt[64];
    int np = chat_prompt(m, "What is 2+2?", prompt, 64);
    int n_vocab = dsr1_model_n_vocab(m);

    /* reference: our own eval loop */
    dsr1_context *ctx = new_ctx(m, 256);
    dsr1_token ref[N];
    int n_ref = 0;
    CHECK(dsr1_eval(ctx, prompt, np, 0, 0) == DSR1_OK, "eval prompt");
    for (; n_ref < N; n_ref++) {
        dsr1_token t = argmax(dsr1_logits(ctx, -1), n_vocab);
        ref[n_ref] = t;
        if (dsr1_token_is_eog(m, t)) {
            n_ref++;
            break;
        }
        CHECK(dsr1_eval(ctx, &t, 1, dsr1_context_n_past(ctx), 0) == DSR1_OK, "eval token");
    }
    dsr1_context_free(ctx);

    ctx = new_ctx(m, 256);
    dsr1_sampler *s = new_sampler(m, 0.0f, 1);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = N;
    rec r;
    memset(&r, 0, sizeof r);
    gp.on_event = on_event;
    gp.user_data = &r;
    dsr1_generation *gen;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new: %s", dsr1_last_error());
    CHECK(dsr1_context_n_past(ctx) == 0, "nothing evaluated before the first step");
    dsr1_token got[N + 4];
    dsr1_stop_reason why;
    int n_got = run_steps(gen, got, N + 4, &why);
    CHECK(n_got == n_ref && memcmp(got, ref, (size_t)n_ref * sizeof *ref) == 0,
          "%s: greedy differs from the argmax (%d vs %d tokens)", name, n_got, n_ref);
    CHECK(why == (dsr1_token_is_eog(m, ref[n_ref - 1]) ? DSR1_STOP_EOS : DSR1_STOP_LENGTH), "%s: stop reason %d", name,
          why);
    /* a finished generation refuses more steps */
    dsr1_token t;
    dsr1_stop_reason r2;
    CHECK(dsr1_generation_step(gen, &t, &r2) == DSR1_ERR_STATE && t == -1, "step after the end");
    dsr1_generation_stats stats;
    stats.size = sizeof stats;
    CHECK(dsr1_generation_get_stats(gen, &stats) == DSR1_OK, "stats");
    CHECK(stats.n_generated == n_got && stats.n_prompt_eval == np, "%s: stats %d %d", name, stats.n_generated,
          stats.n_prompt_eval);
    CHECK(stats.prompt_seconds > 0.0 && stats.generate_seconds > 0.0, "timings");
    /* the prompt opened <think>: reasoning begins at once */
    CHECK(r.n_begin == 1 && r.n_done == 1 && r.bad_utf8 == 0, "%s: events B%d D%d bad %d", name, r.n_begin, r.n_done,
          r.bad_utf8);
    CHECK(r.n_tokens == n_got && memcmp(r.tokens, got, (size_t)n_got * sizeof *got) == 0,
          "%s: event tokens cover the generated tokens exactly", name);
    CHECK(stats.n_reasoning + 0 <= stats.n_generated, "reasoning count");

    /* the event texts reproduce the raw text: the bytes before </think>
     * (reasoning) and after it (answer), ill-formed UTF-8 replaced */
    char raw[2][4096];
    size_t raw_len[2] = {0, 0};
    int part = 0;
    dsr1_token think_end = dsr1_token_special(m, DSR1_SPECIAL_THINK_END);
    for (int i = 0; i < n_got; i++) {
        if (dsr1_token_is_eog(m, got[i]))
            break;
        if (got[i] == think_end && part == 0) {
            part = 1;
            continue;
        }
        size_t len = 0;
        dsr1_token_to_piece(m, got[i], raw[part] + raw_len[part], sizeof raw[0] - raw_len[part] - 1, &len, 0);
        raw_len[part] += len;
    }
    char want[2][12288];
    sanitize((unsigned char *)raw[0], raw_len[0], want[0]);
    sanitize((unsigned char *)raw[1], raw_len[1], want[1]);
    CHECK(strcmp(r.reasoning, want[0]) == 0, "%s: reasoning events do not reproduce the text", name);
    if (strcmp(r.reasoning, want[0]) != 0) {
        for (size_t i = 0; i < r.r_len; i++) fprintf(stderr, "%02x", (unsigned char)r.reasoning[i]);
        fprintf(stderr, "\n");
        for (size_t i = 0; want[0][i]; i++) fprintf(stderr, "%02x", (unsigned char)want[0][i]);
        fprintf(stderr, "\n");
        for (int i = 0; i < n_got; i++) fprintf(stderr, "%d ", got[i]);
        fprintf(stderr, "\n");
    }
    CHECK(strcmp(r.answer, want[1]) == 0, "%s: answer events do not reproduce the text", name);
    CHECK(r.n_end == part, "%s: END events %d", name, r.n_end);
    printf("  %s: %d tokens, %zu reasoning bytes, %zu answer bytes\n", name, n_got, r.r_len, r.a_len);
    dsr1_generation_free(gen);
    dsr1_sampler_free(s);
    dsr1_context_free(ctx);
}

static void test_step_equals_generate(dsr1_model *m)
{
    enum { N = 48 };
    dsr1_token prompt[64];
    int np = chat_prompt(m, "Tell me a story", prompt, 64);
    dsr1_context *ctx = new_ctx(m, 256);
    dsr1_sampler *s = new_sampler(m, 0.9f, 1234);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = N;

    dsr1_generation *gen;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token a[N + 4];
    dsr1_stop_reason why_a;
    int na = run_steps(gen, a, N + 4, &why_a);
    dsr1_generation_free(gen);

    dsr1_context_reset(ctx);
    dsr1_sampler_reset(s, 1234);
    rec r;
    memset(&r, 0, sizeof r);
    gp.on_event = on_event;
    gp.user_data = &r;
    dsr1_stop_reason why_b;
    CHECK(dsr1_generate(ctx, s, prompt, np, &gp, &why_b) == DSR1_OK, "generate: %s", dsr1_last_error());
    CHECK(why_a == why_b, "stop reasons %d %d", why_a, why_b);
    CHECK(r.n_tokens == na && memcmp(r.tokens, a, (size_t)na * sizeof *a) == 0,
          "step API and dsr1_generate differ (%d vs %d tokens)", na, r.n_tokens);
    int diff = 0;
    dsr1_context_reset(ctx);
    dsr1_sampler_reset(s, 99);
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token c[N + 4];
    int nc = run_steps(gen, c, N + 4, &why_a);
    for (int i = 0; i < nc && i < na; i++)
        diff += c[i] != a[i];
    CHECK(diff > 0 || nc != na, "another seed gives the same tokens");
    dsr1_generation_free(gen);
    dsr1_sampler_free(s);
    dsr1_context_free(ctx);
}

static void test_prefix_reuse_and_limits(dsr1_model *m)
{
    dsr1_token prompt[64];
    int np = chat_prompt(m, "Prefix reuse", prompt, 64);
    dsr1_context *ctx = new_ctx(m, 256);
    dsr1_sampler *s = new_sampler(m, 0.0f, 1);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 5;
    dsr1_generation_stats st;
    st.size = sizeof st;

    dsr1_generation *gen;
    dsr1_stop_reason why;
    dsr1_token out[16];
    /* a sampler made for another vocabulary is refused up front */
    dsr1_sampler *wrong;
    CHECK(dsr1_sampler_new(dsr1_model_n_vocab(m) + 1, NULL, &wrong) == DSR1_OK, "sampler");
    CHECK(dsr1_generation_new(ctx, wrong, prompt, np, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT &&
              strstr(dsr1_last_error(), "sampler") != NULL,
          "vocabulary mismatch: %s", dsr1_last_error());
    dsr1_sampler_free(wrong);
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    int n = run_steps(gen, out, 16, &why);
    dsr1_generation_get_stats(gen, &st);
    CHECK(st.n_prompt_eval == np, "first: %d of %d evaluated", st.n_prompt_eval, np);
    CHECK(why == DSR1_STOP_LENGTH && n == 5, "max_new_tokens: %d tokens, reason %d", n, why);
    /* the 4 tokens before the last were evaluated into the context */
    CHECK(dsr1_context_n_past(ctx) == np + 4, "n_past %d", dsr1_context_n_past(ctx));
    dsr1_generation_free(gen);

    /* the same prompt again: only the last token is re-evaluated */
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token out2[16];
    int n2 = run_steps(gen, out2, 16, &why);
    dsr1_generation_get_stats(gen, &st);
    CHECK(st.n_prompt_eval == 1, "same prompt: %d evaluated", st.n_prompt_eval);
    CHECK(n2 == n && memcmp(out, out2, sizeof(dsr1_token) * (size_t)n) == 0, "same greedy tokens");
    dsr1_generation_free(gen);

    /* the prompt plus the generated tokens: the continuation is reused too */
    dsr1_token longer[80];
    memcpy(longer, prompt, (size_t)np * sizeof *prompt);
    memcpy(longer + np, out, 4 * sizeof *out);
    CHECK(dsr1_generation_new(ctx, s, longer, np + 4, &gp, &gen) == DSR1_OK, "new");
    run_steps(gen, out2, 16, &why);
    dsr1_generation_get_stats(gen, &st);
    CHECK(st.n_prompt_eval == 1, "prompt + generated: %d evaluated", st.n_prompt_eval);
    CHECK(out2[0] == out[4], "continues as before");
    dsr1_generation_free(gen);

    /* a prompt that differs at position k evaluates from k */
    int k = np - 3;
    dsr1_token other[64];
    memcpy(other, prompt, (size_t)np * sizeof *prompt);
    other[k] = other[k] == 65 ? 66 : 65;
    CHECK(dsr1_generation_new(ctx, s, other, np, &gp, &gen) == DSR1_OK, "new");
    run_steps(gen, out2, 16, &why);
    dsr1_generation_get_stats(gen, &st);
    CHECK(st.n_prompt_eval == np - k, "diverging prompt: %d evaluated, want %d", st.n_prompt_eval, np - k);
    dsr1_generation_free(gen);
    dsr1_context_free(ctx);

    /* context full */
    ctx = new_ctx(m, np + 6);
    gp.max_new_tokens = 0;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    n = run_steps(gen, out, 16, &why);
    CHECK(why == DSR1_STOP_CONTEXT_FULL || why == DSR1_STOP_EOS, "reason %d", why);
    if (why == DSR1_STOP_CONTEXT_FULL)
        CHECK(n == 7 && dsr1_context_n_past(ctx) == np + 6, "%d tokens, n_past %d", n, dsr1_context_n_past(ctx));
    dsr1_generation_free(gen);
    dsr1_context_free(ctx);

    /* a prompt larger than the context is an error */
    ctx = new_ctx(m, np - 2);
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token t;
    CHECK(dsr1_generation_step(gen, &t, &why) == DSR1_ERR_CONTEXT_FULL, "oversized prompt");
    CHECK(dsr1_generation_step(gen, &t, &why) == DSR1_ERR_STATE, "then finished");
    dsr1_generation_free(gen);
    dsr1_context_free(ctx);

    /* argument checks */
    CHECK(dsr1_generation_new(NULL, s, prompt, np, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT, "NULL ctx");
    ctx = new_ctx(m, 64);
    CHECK(dsr1_generation_new(ctx, s, prompt, 0, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT, "empty prompt");
    dsr1_token bad = 100000;
    CHECK(dsr1_generation_new(ctx, s, &bad, 1, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT, "token outside vocab");
    gp.think_budget = -5;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT, "budget -5");
    dsr1_context_free(ctx);
    dsr1_sampler_free(s);
}

static void test_budget(dsr1_model *m)
{
    dsr1_token prompt[64];
    int np = chat_prompt(m, "Think briefly", prompt, 64);
    dsr1_token think_end = dsr1_token_special(m, DSR1_SPECIAL_THINK_END);
    dsr1_context *ctx = new_ctx(m, 256);
    dsr1_sampler *s = new_sampler(m, 0.0f, 1);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 12;
    gp.think_budget = 3;
    rec r;
    memset(&r, 0, sizeof r);
    gp.on_event = on_event;
    gp.user_data = &r;
    dsr1_generation *gen;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token out[32];
    dsr1_stop_reason why;
    int n = run_steps(gen, out, 32, &why);
    dsr1_generation_stats st;
    st.size = sizeof st;
    dsr1_generation_get_stats(gen, &st);
    /* unless the model closed or ended by itself within 3 tokens */
    int natural = 0;
    for (int i = 0; i < 3 && i < n; i++)
        natural |= out[i] == think_end || dsr1_token_is_eog(m, out[i]);
    if (!natural) {
        CHECK(st.n_reasoning == 3, "reasoning tokens %d", st.n_reasoning);
        CHECK(r.n_end == 1, "REASONING_END delivered %d", r.n_end);
        /* the events cover sampled + injected tokens: 3, "\n", </think>, "\n\n", ... */
        dsr1_token tmp[8];
        int32_t n1 = 0, n2 = 0;
        dsr1_tokenize(m, "\n", 1, tmp, 8, &n1, 0);
        dsr1_tokenize(m, "\n\n", 2, tmp, 8, &n2, 0);
        CHECK(r.n_tokens == n + n1 + 1 + n2, "events cover %d tokens: %d sampled + %d injected", r.n_tokens, n,
              n1 + 1 + n2);
        int has_end = 0;
        for (int i = 0; i < r.n_tokens; i++)
            has_end |= r.tokens[i] == think_end;
        CHECK(has_end, "</think> injected as its special id");
        CHECK(r.r_len > 0 && r.reasoning[r.r_len - 1] == '\n', "the injected \\n ends the reasoning");
        CHECK(strncmp(r.answer, "\n\n", 2) == 0, "the answer begins with the injected \\n\\n");
        /* the injected tokens were evaluated: the context holds them */
        CHECK(dsr1_context_n_past(ctx) >= np + 3 + 3, "n_past %d", dsr1_context_n_past(ctx));
    } else {
        printf("  (budget: the model closed by itself)\n");
    }
    dsr1_generation_free(gen);

    /* STOP action */
    gp.think_budget_action = DSR1_BUDGET_STOP;
    gp.think_budget = 4;
    memset(&r, 0, sizeof r);
    dsr1_context_reset(ctx);
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    n = run_steps(gen, out, 32, &why);
    if (!natural) {
        CHECK(why == DSR1_STOP_BUDGET && n == 4, "STOP: reason %d after %d tokens", why, n);
        CHECK(r.reason == DSR1_STOP_BUDGET && r.n_end == 0, "DONE carries BUDGET");
    }
    dsr1_generation_free(gen);

    /* budget 0: closed before the first token */
    gp.think_budget_action = DSR1_BUDGET_CLOSE;
    gp.think_budget = 0;
    memset(&r, 0, sizeof r);
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    n = run_steps(gen, out, 32, &why);
    dsr1_generation_get_stats(gen, &st);
    CHECK(st.n_reasoning == 0 && r.n_end == 1 && strcmp(r.reasoning, "\n") == 0, "budget 0: %d reasoning, '%s'",
          st.n_reasoning, r.reasoning);
    dsr1_generation_free(gen);

    /* hidden reasoning: no REASONING_TEXT, same tokens */
    gp.think_budget = 3;
    gp.hide_reasoning = 1;
    rec h;
    memset(&h, 0, sizeof h);
    gp.user_data = &h;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token out_h[32];
    int nh = run_steps(gen, out_h, 32, &why);
    CHECK(h.r_len == 0, "hidden reasoning was sent");
    dsr1_generation_free(gen);
    gp.hide_reasoning = 0;
    gp.think_budget_action = DSR1_BUDGET_CLOSE;
    memset(&r, 0, sizeof r);
    gp.user_data = &r;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    n = run_steps(gen, out, 32, &why);
    CHECK(n == nh && memcmp(out, out_h, (size_t)n * sizeof *out) == 0, "hiding changes the tokens");
    CHECK(strcmp(h.answer, r.answer) == 0, "hiding changes the answer");
    CHECK(h.n_tokens == r.n_tokens, "hidden tokens still delivered (%d vs %d)", h.n_tokens, r.n_tokens);
    dsr1_generation_free(gen);
    dsr1_sampler_free(s);
    dsr1_context_free(ctx);
}

static void test_stop_string(dsr1_model *m)
{
    dsr1_token prompt[64];
    int np = chat_prompt(m, "Stop strings", prompt, 64);
    dsr1_context *ctx = new_ctx(m, 256);
    dsr1_sampler *s = new_sampler(m, 0.0f, 1);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 40;
    gp.think_budget = 0; /* straight to the answer */
    rec r;
    memset(&r, 0, sizeof r);
    gp.on_event = on_event;
    gp.user_data = &r;
    dsr1_stop_reason why;
    CHECK(dsr1_generate(ctx, s, prompt, np, &gp, &why) == DSR1_OK, "generate");
    if (r.a_len < 8) {
        printf("  (stop strings: answer too short to test: %zu bytes)\n", r.a_len);
        dsr1_sampler_free(s);
        dsr1_context_free(ctx);
        return;
    }
    /* a stop string taken from the middle of the answer (whole characters) */
    size_t from = 4, to = 7;
    while (from < r.a_len && ((unsigned char)r.answer[from] & 0xC0) == 0x80)
        from++;
    while (to < r.a_len && ((unsigned char)r.answer[to] & 0xC0) == 0x80)
        to++;
    char stop[16];
    memcpy(stop, r.answer + from, to - from);
    stop[to - from] = '\0';
    const char *first = strstr(r.answer, stop);
    size_t want = (size_t)(first - r.answer);
    char full[8192];
    memcpy(full, r.answer, r.a_len + 1);

    const char *stops[] = {stop};
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    memset(&r, 0, sizeof r);
    dsr1_context_reset(ctx);
    CHECK(dsr1_generate(ctx, s, prompt, np, &gp, &why) == DSR1_OK, "generate");
    CHECK(why == DSR1_STOP_STRING && r.reason == DSR1_STOP_STRING, "reason %d", why);
    CHECK(r.a_len == want && memcmp(r.answer, full, want) == 0, "answer cut at the stop string: %zu vs %zu bytes",
          r.a_len, want);
    dsr1_sampler_free(s);
    dsr1_context_free(ctx);
}

typedef struct canceller {
    dsr1_generation *gen;
    atomic_int signal;
    atomic_int acked;
} canceller;

static void *cancel_thread(void *arg)
{
    canceller *c = arg;
    while (!atomic_load(&c->signal))
        ;
    dsr1_generation_cancel(c->gen);
    atomic_store(&c->acked, 1);
    return NULL;
}

static void test_cancel(dsr1_model *m)
{
    dsr1_token prompt[64];
    int np = chat_prompt(m, "Cancel me", prompt, 64);
    dsr1_context *ctx = new_ctx(m, 256);
    dsr1_sampler *s = new_sampler(m, 0.0f, 1);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 64;
    rec r;
    memset(&r, 0, sizeof r);
    r.cancel_after_text = 2;
    gp.on_event = on_event;
    gp.user_data = &r;
    dsr1_generation *gen;
    dsr1_generation_stats st;
    st.size = sizeof st;

    /* the callback returns non-zero: the step that delivered it ends */
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_stop_reason why;
    CHECK(dsr1_generation_run(gen, &why) == DSR1_OK, "run");
    dsr1_generation_get_stats(gen, &st);
    CHECK(why == DSR1_STOP_CANCELLED && r.reason == DSR1_STOP_CANCELLED, "reason %d", why);
    int tokens_at_cancel = st.n_generated;
    CHECK(r.n_text == 2 || r.n_text == 3, "events after the cancel: %d texts", r.n_text);
    CHECK(st.n_generated < 64, "cancel did not stop (%d tokens)", st.n_generated);
    dsr1_generation_free(gen);

    /* dsr1_generation_cancel between steps: the next step ends */
    memset(&r, 0, sizeof r);
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    dsr1_token t;
    CHECK(dsr1_generation_step(gen, &t, &why) == DSR1_OK && t >= 0, "first step");
    CHECK(dsr1_generation_step(gen, &t, &why) == DSR1_OK && t >= 0, "second step");
    dsr1_generation_cancel(gen);
    CHECK(dsr1_generation_step(gen, &t, &why) == DSR1_OK && t == -1 && why == DSR1_STOP_CANCELLED,
          "cancelled step: token %d reason %d", t, why);
    dsr1_generation_get_stats(gen, &st);
    CHECK(st.n_generated == 2, "%d tokens", st.n_generated);
    dsr1_generation_free(gen);

    /* from a callback through the API */
    memset(&r, 0, sizeof r);
    r.cancel_api_after_text = 2;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    r.gen = gen;
    CHECK(dsr1_generation_run(gen, &why) == DSR1_OK, "run");
    dsr1_generation_get_stats(gen, &st);
    CHECK(why == DSR1_STOP_CANCELLED && st.n_generated <= tokens_at_cancel + 1, "api cancel: reason %d, %d tokens", why,
          st.n_generated);
    dsr1_generation_free(gen);

    /* from another thread while running */
    canceller c;
    memset(&r, 0, sizeof r);
    atomic_init(&c.signal, 0);
    atomic_init(&c.acked, 0);
    r.signal = &c.signal;
    r.acked = &c.acked;
    r.signal_at_text = 3;
    CHECK(dsr1_generation_new(ctx, s, prompt, np, &gp, &gen) == DSR1_OK, "new");
    c.gen = gen;
    pthread_t th;
    if (pthread_create(&th, NULL, cancel_thread, &c) == 0) {
        CHECK(dsr1_generation_run(gen, &why) == DSR1_OK, "run");
        pthread_join(th, NULL);
        dsr1_generation_get_stats(gen, &st);
        CHECK(why == DSR1_STOP_CANCELLED, "thread cancel: reason %d", why);
        CHECK(st.n_generated <= tokens_at_cancel + 2, "thread cancel took more than one token: %d", st.n_generated);
    }
    dsr1_generation_free(gen);
    dsr1_sampler_free(s);
    dsr1_context_free(ctx);
}

static void test_chat(dsr1_model *m)
{
    dsr1_context *ctx = new_ctx(m, 512);
    dsr1_sampler *s = new_sampler(m, 0.0f, 1);
    dsr1_chat *chat;
    CHECK(dsr1_chat_new(ctx, s, "You are terse.", &chat) == DSR1_OK, "chat_new");
    CHECK(dsr1_chat_n_messages(chat) == 1, "system message");
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 10;
    gp.think_budget = 4;
    rec r;
    memset(&r, 0, sizeof r);
    gp.on_event = on_event;
    gp.user_data = &r;

    dsr1_generation *gen;
    dsr1_stop_reason why;
    CHECK(dsr1_chat_begin(chat, "First question", &gp, &gen) == DSR1_OK, "begin: %s", dsr1_last_error());
    dsr1_generation *gen2;
    CHECK(dsr1_chat_begin(chat, "overlap", &gp, &gen2) == DSR1_ERR_STATE, "one turn at a time");
    CHECK(dsr1_generation_run(gen, &why) == DSR1_OK, "run");
    dsr1_generation_stats st1, st2;
    st1.size = st2.size = sizeof st1;
    dsr1_generation_get_stats(gen, &st1);
    dsr1_generation_free(gen);
    CHECK(dsr1_chat_n_messages(chat) == 3, "system, user, assistant: %d", dsr1_chat_n_messages(chat));
    dsr1_chat_message msg;
    CHECK(dsr1_chat_message_at(chat, 2, &msg) == DSR1_OK && strcmp(msg.role, "assistant") == 0, "assistant recorded");
    char want[20000];
    want[0] = '\0';
    if (r.n_begin)
        strcat(want, "<think>\n");
    strcat(want, r.reasoning);
    if (r.n_begin)
        strcat(want, "</think>");
    strcat(want, r.answer);
    CHECK(strcmp(msg.content, want) == 0, "recorded reply '%s' vs '%s'", msg.content, want);
    CHECK(dsr1_chat_message_at(chat, 1, &msg) == DSR1_OK && strcmp(msg.role, "user") == 0 &&
              strcmp(msg.content, "First question") == 0,
          "user recorded");

    /* the second turn reuses the prefix */
    memset(&r, 0, sizeof r);
    CHECK(dsr1_chat_begin(chat, "Second question", &gp, &gen) == DSR1_OK, "begin 2");
    CHECK(dsr1_generation_run(gen, &why) == DSR1_OK, "run 2");
    dsr1_generation_get_stats(gen, &st2);
    dsr1_generation_free(gen);
    dsr1_chat_message all[8];
    int nm = dsr1_chat_n_messages(chat);
    CHECK(nm == 5, "%d messages", nm);
    for (int i = 0; i < nm - 1 && i < 8; i++)
        dsr1_chat_message_at(chat, i, &all[i]);
    dsr1_token full[512];
    int32_t n_full = 0;
    dsr1_chat_tokenize(m, all, nm - 1, DSR1_CHAT_ADD_GENERATION_PROMPT, full, 512, &n_full);
    CHECK(st2.n_prompt_eval > 0 && st2.n_prompt_eval < n_full, "second turn evaluated %d of %d prompt tokens",
          st2.n_prompt_eval, n_full);
    printf("  chat: turn 1 evaluated %d prompt tokens, turn 2 %d of %d\n", st1.n_prompt_eval, st2.n_prompt_eval,
           n_full);

    /* hidden reasoning: not sent, still recorded */
    gp.hide_reasoning = 1;
    gp.think_budget = 3;
    memset(&r, 0, sizeof r);
    CHECK(dsr1_chat_ask(chat, "Hidden", &gp, &why) == DSR1_OK, "ask hidden");
    CHECK(r.r_len == 0 && r.n_done == 1, "hidden reasoning sent");
    CHECK(dsr1_chat_message_at(chat, dsr1_chat_n_messages(chat) - 1, &msg) == DSR1_OK, "message");
    CHECK(strncmp(msg.content, "<think>\n", 8) == 0 && strstr(msg.content, "</think>") &&
              strlen(strstr(msg.content, "</think>") + 8) == r.a_len,
          "hidden reasoning recorded: '%s'", msg.content);
    gp.hide_reasoning = 0;
    gp.think_budget = 4;
    dsr1_chat_message_at(chat, 4, &msg);
    int nm_before = dsr1_chat_n_messages(chat);

    /* dsr1_chat_ask; reset keeps the system prompt */
    CHECK(dsr1_chat_ask(chat, "Third", &gp, &why) == DSR1_OK && why != DSR1_STOP_NONE, "ask");
    CHECK(dsr1_chat_n_messages(chat) == nm_before + 2, "%d messages", dsr1_chat_n_messages(chat));
    dsr1_chat_reset(chat);
    CHECK(dsr1_chat_n_messages(chat) == 1 && dsr1_chat_message_at(chat, 0, &msg) == DSR1_OK &&
              strcmp(msg.role, "system") == 0,
          "reset");
    /* a generation freed before its first step records nothing */
    CHECK(dsr1_chat_begin(chat, "Never answered", &gp, &gen) == DSR1_OK, "begin");
    dsr1_generation_free(gen);
    CHECK(dsr1_chat_n_messages(chat) == 1, "unanswered turn dropped: %d", dsr1_chat_n_messages(chat));
    /* freeing the chat before its generation is allowed */
    CHECK(dsr1_chat_begin(chat, "Orphan", &gp, &gen) == DSR1_OK, "begin");
    dsr1_chat_free(chat);
    dsr1_generation_step(gen, NULL, NULL);
    dsr1_generation_free(gen);
    dsr1_sampler_free(s);
    dsr1_context_free(ctx);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    const char *names[] = {"qwen2-q8_0.gguf", "llama-q8_0.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        dsr1_model *m = load(dir, names[i]);
        if (!m) {
            failures++;
            continue;
        }
        printf("%s\n", names[i]);
        test_greedy_matches_argmax(m, names[i]);
        test_step_equals_generate(m);
        test_prefix_reuse_and_limits(m);
        test_budget(m);
        test_stop_string(m);
        test_cancel(m);
        test_chat(m);
        dsr1_model_free(m);
    }
    return check_summary("test_generate");
}
