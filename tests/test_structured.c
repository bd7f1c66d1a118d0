/*
 * Structured answers, log-probabilities and the step hook on the shipped
 * tiny reasoning model (examples/tiny/dsr1-tiny.gguf).
 *
 *   test_structured MODEL HELDOUT_TSV
 *
 * - with a JSON schema, every answer (greedy and sampled, many questions)
 *   parses and validates, while the reasoning is exactly what the model
 *   writes without a grammar (the grammar starts at </think>); with a
 *   thinking budget the injected "\n\n" is allowed before the JSON;
 * - log-probabilities: over all candidates they sum to 1 for any
 *   truncation settings and do not depend on them; the greedy token is the
 *   best; events carry one per token, aligned with the tokens;
 * - the step hook: banning a token, choosing tokens, cancelling.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "grammar/json.h"

#include "check.h"

#define N_QUESTIONS 40

typedef struct streams {
    char reasoning[8192];
    size_t n_reasoning;
    char answer[4096];
    size_t n_answer;
    int n_tokens, n_lp, lp_misaligned, n_top;
    float lp_sum;
    dsr1_token tokens[2048];
    float lps[2048];
} streams;

static void append(char *dst, size_t cap, size_t *n, const char *s, size_t len)
{
    size_t k = len < cap - 1 - *n ? len : cap - 1 - *n;
    memcpy(dst + *n, s, k);
    *n += k;
    dst[*n] = '\0';
}

static int on_event(const dsr1_event *ev, void *user_data)
{
    streams *s = user_data;
    if (ev->type == DSR1_EVENT_REASONING_TEXT)
        append(s->reasoning, sizeof s->reasoning, &s->n_reasoning, ev->text, ev->text_len);
    else if (ev->type == DSR1_EVENT_ANSWER_TEXT)
        append(s->answer, sizeof s->answer, &s->n_answer, ev->text, ev->text_len);
    if (ev->n_tokens > 0 && ev->logprobs) {
        s->n_lp += ev->n_tokens;
        s->n_top = ev->n_top_logprobs;
        for (int32_t i = 0; i < ev->n_tokens; i++) {
            const dsr1_token_logprob *top = ev->top_logprobs + (size_t)i * (size_t)ev->n_top_logprobs;
            /* the token's own log-probability is at most the best one's */
            if (!isnan(ev->logprobs[i]) && !(ev->logprobs[i] <= top[0].logprob + 1e-6f))
                s->lp_misaligned++;
            if (s->n_tokens + i < 2048)
                s->lps[s->n_tokens + i] = ev->logprobs[i];
        }
    }
    for (int32_t i = 0; i < ev->n_tokens && s->n_tokens < 2048; i++)
        s->tokens[s->n_tokens++] = ev->tokens[i];
    return 0;
}

static const char SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"answer\":{\"type\":\"integer\"},"
    "\"kind\":{\"enum\":[\"sum\",\"difference\",\"product\",\"comparison\"]},"
    "\"sure\":{\"type\":\"boolean\"},"
    "\"note\":{\"type\":\"string\",\"maxLength\":12}},"
    "\"required\":[\"answer\",\"kind\",\"sure\"]}";

/* Our own check of the schema above (not the converter's). */
static int validates(const char *answer, char *why, size_t why_cap)
{
    dsri_json *v = NULL;
    if (dsri_json_parse(answer, strlen(answer), &v)) {
        snprintf(why, why_cap, "not JSON: %s", dsr1_last_error());
        return 0;
    }
    int ok = v->type == DSRI_JSON_OBJECT;
    const dsri_json *a = dsri_json_get(v, "answer"), *k = dsri_json_get(v, "kind"), *s = dsri_json_get(v, "sure"),
                    *n = dsri_json_get(v, "note");
    ok = ok && a && a->type == DSRI_JSON_NUMBER && !strpbrk(a->text, ".eE");
    ok = ok && k && k->type == DSRI_JSON_STRING &&
         (!strcmp(k->text, "sum") || !strcmp(k->text, "difference") || !strcmp(k->text, "product") ||
          !strcmp(k->text, "comparison"));
    ok = ok && s && s->type == DSRI_JSON_BOOL;
    ok = ok && (!n || (n->type == DSRI_JSON_STRING && strlen(n->text) <= 12 * 4));
    for (int32_t i = 0; ok && i < v->n; i++)
        ok = !strcmp(v->keys[i], "answer") || !strcmp(v->keys[i], "kind") || !strcmp(v->keys[i], "sure") ||
             !strcmp(v->keys[i], "note");
    if (!ok)
        snprintf(why, why_cap, "does not follow the schema");
    dsri_json_free(v);
    return ok;
}

static int prompt_tokens(const dsr1_model *model, const char *question, dsr1_token *tok, int32_t cap, int32_t *n)
{
    dsr1_chat_message msg = {"user", question};
    return dsr1_chat_tokenize(model, &msg, 1, DSR1_CHAT_ADD_GENERATION_PROMPT, tok, cap, n) == DSR1_OK;
}

static dsr1_stop_reason run(dsr1_context *ctx, dsr1_sampler *smp, const dsr1_token *prompt, int32_t n_prompt,
                            const dsr1_generate_params *gp, streams *s)
{
    memset(s, 0, sizeof *s);
    dsr1_generate_params p = *gp;
    p.on_event = on_event;
    p.user_data = s;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    dsr1_context_reset(ctx);
    dsr1_status st = dsr1_generate(ctx, smp, prompt, n_prompt, &p, &why);
    CHECK(st == DSR1_OK, "generate: %s", dsr1_last_error());
    return why;
}

static void test_json_answers(dsr1_model *model, dsr1_context *ctx, char questions[][256], int n_q)
{
    dsr1_grammar *g = NULL;
    CHECK(dsr1_grammar_from_json_schema(model, SCHEMA, sizeof SCHEMA - 1, &g) == DSR1_OK, "schema: %s",
          dsr1_last_error());
    if (!g)
        return;
    int valid = 0, total = 0, same_reasoning = 0;
    for (int mode = 0; mode < 3; mode++) { /* greedy, sampled, greedy with a thinking budget */
        dsr1_sampler_params sp;
        dsr1_sampler_params_default(&sp, sizeof sp);
        sp.temperature = mode == 1 ? 0.8f : 0.0f;
        for (int q = 0; q < n_q; q++) {
            sp.seed = (uint64_t)q;
            dsr1_sampler *smp;
            dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp);
            dsr1_token prompt[512];
            int32_t n_prompt = 0;
            if (!prompt_tokens(model, questions[q], prompt, 512, &n_prompt))
                continue;
            dsr1_generate_params gp;
            dsr1_generate_params_default(&gp, sizeof gp);
            gp.max_new_tokens = 400;
            if (mode == 2)
                gp.think_budget = 6;
            streams free_run, constrained;
            dsr1_sampler_reset(smp, sp.seed);
            run(ctx, smp, prompt, n_prompt, &gp, &free_run);
            gp.grammar = g;
            dsr1_sampler_reset(smp, sp.seed);
            dsr1_stop_reason why = run(ctx, smp, prompt, n_prompt, &gp, &constrained);
            char why_bad[256] = "";
            int ok = why == DSR1_STOP_EOS && validates(constrained.answer, why_bad, sizeof why_bad);
            CHECK(ok, "mode %d question '%s': stop %d, answer '%s' %s", mode, questions[q], why, constrained.answer,
                  why_bad);
            valid += ok;
            total++;
            CHECK(constrained.n_reasoning > 0, "the reasoning is there");
            /* the reasoning is untouched (greedy and sampled alike: the
             * grammar changes nothing before </think>) */
            int same = strcmp(free_run.reasoning, constrained.reasoning) == 0;
            CHECK(same, "mode %d: reasoning changed by the grammar:\n%s\n--- vs ---\n%s", mode, free_run.reasoning,
                  constrained.reasoning);
            same_reasoning += same;
            if (q == 0)
                printf("mode %d: free answer '%s'; with the schema '%s'\n", mode, free_run.answer, constrained.answer);
            dsr1_sampler_free(smp);
        }
    }
    printf("JSON answers: %d of %d valid; reasoning unchanged in %d\n", valid, total, same_reasoning);
    dsr1_grammar_free(g);
}

static void test_logprobs_sum(dsr1_model *model, dsr1_context *ctx)
{
    const int32_t nv = dsr1_model_n_vocab(model);
    dsr1_token prompt[512];
    int32_t n_prompt = 0;
    prompt_tokens(model, "What is 12 plus 30?", prompt, 512, &n_prompt);
    dsr1_context_reset(ctx);
    CHECK(dsr1_eval(ctx, prompt, n_prompt, 0, 0) == DSR1_OK, "eval");
    const float *logits = dsr1_logits(ctx, -1);
    dsr1_token_logprob *top = malloc((size_t)nv * sizeof *top), *ref = malloc((size_t)nv * sizeof *ref);
    static const struct { float t, top_p, min_p; int32_t top_k; float rep; } cfg[] = {
        {0.6f, 0.95f, 0.0f, 0, 1.0f}, {1.0f, 0.5f, 0.1f, 5, 1.3f}, {0.0f, 1.0f, 0.0f, 0, 1.0f}, {0.6f, 1.0f, 0.0f, 1, 1.0f}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        dsr1_sampler_params sp;
        dsr1_sampler_params_default(&sp, sizeof sp);
        sp.temperature = cfg[c].t;
        sp.top_p = cfg[c].top_p;
        sp.min_p = cfg[c].min_p;
        sp.top_k = cfg[c].top_k;
        sp.repeat_penalty = cfg[c].rep;
        dsr1_sampler *smp;
        dsr1_sampler_new(nv, &sp, &smp);
        for (int32_t i = 0; i < n_prompt; i++)
            dsr1_sampler_accept(smp, prompt[i]);
        dsr1_token t;
        float lp;
        CHECK(dsr1_sampler_sample_logprobs(smp, logits, nv, &t, &lp, top, nv) == DSR1_OK, "%s", dsr1_last_error());
        double sum = 0.0;
        int sorted = 1, found = 0;
        for (int32_t i = 0; i < nv; i++) {
            if (top[i].token >= 0)
                sum += exp((double)top[i].logprob);
            if (i > 0 && top[i].logprob > top[i - 1].logprob)
                sorted = 0;
            if (top[i].token == t)
                found = top[i].logprob == lp;
        }
        CHECK(fabs(sum - 1.0) < 1e-4, "config %zu: probabilities sum to %.7f", c, sum);
        CHECK(sorted, "config %zu: best first", c);
        CHECK(found, "config %zu: the chosen token's log-probability is its entry's", c);
        if (cfg[c].t <= 0.0f)
            CHECK(top[0].token == t, "greedy picks the best");
        /* truncation settings do not change them (same temperature and penalties) */
        if (c == 0) {
            memcpy(ref, top, (size_t)nv * sizeof *top);
        } else if (c == 3) {
            int same = 1;
            for (int32_t i = 0; i < 10; i++)
                same &= ref[i].token == top[i].token && fabsf(ref[i].logprob - top[i].logprob) < 1e-6f;
            CHECK(same, "top-k 1 vs top-p 0.95: the same log-probabilities");
        }
        dsr1_sampler_free(smp);
    }
    /* bad arguments */
    dsr1_sampler *smp;
    dsr1_sampler_new(nv, NULL, &smp);
    dsr1_token t;
    CHECK(dsr1_sampler_sample_logprobs(smp, logits, nv, &t, NULL, NULL, 3) == DSR1_ERR_INVALID_ARGUMENT, "top NULL");
    CHECK(dsr1_sampler_sample_logprobs(smp, logits, nv, &t, NULL, top, -1) == DSR1_ERR_INVALID_ARGUMENT, "n_top < 0");
    /* fewer candidates than asked: the rest is -1 / -inf */
    float *banned = malloc((size_t)nv * sizeof *banned);
    for (int32_t i = 0; i < nv; i++)
        banned[i] = i < 3 ? (float)i : -INFINITY;
    CHECK(dsr1_sampler_sample_logprobs(smp, banned, nv, &t, NULL, top, 5) == DSR1_OK && top[0].token == 2 &&
              top[2].token == 0 && top[3].token == -1 && top[4].logprob == -INFINITY,
          "three candidates");
    free(banned);
    dsr1_sampler_free(smp);
    free(top);
    free(ref);
}

static void test_event_logprobs(dsr1_model *model, dsr1_context *ctx)
{
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.seed = 7;
    dsr1_sampler *smp;
    dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp);
    dsr1_token prompt[512];
    int32_t n_prompt = 0;
    prompt_tokens(model, "What is 345 + 78?", prompt, 512, &n_prompt);
    for (int hide = 0; hide < 2; hide++) {
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.max_new_tokens = 300;
        gp.n_logprobs = 4;
        gp.hide_reasoning = hide;
        gp.think_budget = 10; /* injected tokens: NaN */
        streams s;
        dsr1_sampler_reset(smp, 7);
        run(ctx, smp, prompt, n_prompt, &gp, &s);
        CHECK(s.n_tokens > 10 && s.n_lp == s.n_tokens, "hide %d: %d tokens, %d with log-probabilities", hide,
              s.n_tokens, s.n_lp);
        CHECK(s.n_top == 4 && s.lp_misaligned == 0, "hide %d: %d rows where the token beats the best", hide,
              s.lp_misaligned);
        int nan = 0;
        for (int i = 0; i < s.n_tokens && i < 2048; i++)
            nan += isnan(s.lps[i]);
        CHECK(nan >= 3, "hide %d: the injected \"\\n</think>\\n\\n\" tokens have no log-probability (%d NaN)", hide, nan);
        /* the same generation without log-probabilities gives the same tokens */
        streams plain;
        gp.n_logprobs = 0;
        dsr1_sampler_reset(smp, 7);
        run(ctx, smp, prompt, n_prompt, &gp, &plain);
        CHECK(plain.n_tokens == s.n_tokens && !memcmp(plain.tokens, s.tokens, (size_t)s.n_tokens * sizeof *s.tokens),
              "log-probabilities change nothing");
        CHECK(plain.n_lp == 0, "none without n_logprobs");
    }
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.n_logprobs = 101;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT && !gen,
          "n_logprobs 101 refused");
    dsr1_sampler_free(smp);
}

/* ---- the step hook ---- */

typedef struct hook_state {
    dsr1_token ban;     /* -1: none */
    int choose_argmax;  /* pick the best logit ourselves */
    int cancel_at;      /* > 0: cancel at that step */
    int calls, saw_reasoning, saw_answer, banned_seen;
} hook_state;

static int hook(dsr1_step *step, void *user_data)
{
    hook_state *h = user_data;
    h->calls++;
    if (step->in_reasoning)
        h->saw_reasoning = 1;
    else
        h->saw_answer = 1;
    if (h->cancel_at > 0 && step->n_generated == h->cancel_at)
        return 1;
    if (h->ban >= 0)
        step->logits[h->ban] = -INFINITY;
    if (h->choose_argmax)
        step->token = argmax(step->logits, step->n_vocab);
    return 0;
}

static void test_hook(dsr1_model *model, dsr1_context *ctx)
{
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0.0f;
    dsr1_sampler *smp;
    dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp);
    dsr1_token prompt[512];
    int32_t n_prompt = 0;
    prompt_tokens(model, "What is 141 plus 83?", prompt, 512, &n_prompt);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 300;
    streams greedy, s;
    run(ctx, smp, prompt, n_prompt, &gp, &greedy);

    hook_state h = {-1, 1, 0, 0, 0, 0, 0};
    gp.on_step = hook;
    gp.step_user_data = &h;
    run(ctx, smp, prompt, n_prompt, &gp, &s);
    CHECK(s.n_tokens == greedy.n_tokens && !memcmp(s.tokens, greedy.tokens, (size_t)s.n_tokens * sizeof *s.tokens),
          "the host choosing the argmax reproduces greedy decoding");
    CHECK(!strcmp(s.reasoning, greedy.reasoning) && !strcmp(s.answer, greedy.answer) && h.saw_reasoning &&
              h.saw_answer,
          "events go on when the host chooses");
    CHECK(h.calls == greedy.n_tokens, "one call per token (%d calls, %d tokens)", h.calls, greedy.n_tokens);

    /* ban the token greedy decoding chose at its 5th step */
    hook_state b = {greedy.tokens[4], 0, 0, 0, 0, 0, 0};
    gp.step_user_data = &b;
    run(ctx, smp, prompt, n_prompt, &gp, &s);
    int seen = 0;
    for (int i = 0; i < s.n_tokens; i++)
        seen |= s.tokens[i] == b.ban;
    CHECK(!seen, "a banned token never comes");

    hook_state c = {-1, 0, 5, 0, 0, 0, 0};
    gp.step_user_data = &c;
    CHECK(run(ctx, smp, prompt, n_prompt, &gp, &s) == DSR1_STOP_CANCELLED && s.n_tokens == 5, "cancel (%d tokens)",
          s.n_tokens);
    dsr1_sampler_free(smp);
}

/* ---- the grammar's start: a prompt without reasoning; </think> spelled as text ---- */

typedef struct spell_state {
    dsr1_token seq[32]; /* "</think>" as plain-text tokens */
    int32_t n_seq, next, after;
} spell_state;

/* After a few reasoning tokens, write "</think>" as text (not the special token). */
static int spell_hook(dsr1_step *step, void *user_data)
{
    spell_state *h = user_data;
    if (step->in_reasoning && step->n_generated >= h->after && h->next < h->n_seq)
        step->token = h->seq[h->next++];
    return 0;
}

static void test_grammar_start(dsr1_model *model, dsr1_context *ctx)
{
    dsr1_grammar *g = NULL;
    CHECK(dsr1_grammar_from_json_schema(model, SCHEMA, sizeof SCHEMA - 1, &g) == DSR1_OK, "%s", dsr1_last_error());
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0.0f;
    dsr1_sampler *smp;
    dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp);
    dsr1_token prompt[512];
    int32_t n_prompt = 0;
    prompt_tokens(model, "What is 141 plus 83?", prompt, 512, &n_prompt);
    streams s;
    char why[256] = "";
    /* the prompt opened no block (as far as the generation knows): the grammar applies at once */
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 800;
    gp.grammar = g;
    gp.starts_in_reasoning = 0;
    dsr1_stop_reason r = run(ctx, smp, prompt, n_prompt, &gp, &s);
    /* (the first token may open a block: <think> is allowed then) */
    CHECK(r == DSR1_STOP_EOS && validates(s.answer, why, sizeof why),
          "no reasoning block in the prompt: stop %d, answer '%s' %s", r, s.answer, why);
    printf("prompt without a block: %zu bytes of reasoning (the first token %s), answer %zu bytes\n", s.n_reasoning,
           s.n_reasoning ? "opened one" : "was the answer's", s.n_answer);
    /* the same with <think> banned by the host: the grammar from the first token */
    hook_state ban = {dsr1_token_special(model, DSR1_SPECIAL_THINK_BEGIN), 0, 0, 0, 0, 0, 0};
    gp.on_step = hook;
    gp.step_user_data = &ban;
    r = run(ctx, smp, prompt, n_prompt, &gp, &s);
    CHECK(r == DSR1_STOP_EOS && validates(s.answer, why, sizeof why) && s.n_reasoning == 0 && s.answer[0] == '{',
          "<think> banned: stop %d, reasoning %zu bytes, answer '%s' %s", r, s.n_reasoning, s.answer, why);
    /* "</think>" written as text tokens ends the reasoning as well */
    spell_state h;
    memset(&h, 0, sizeof h);
    h.after = 4;
    CHECK(dsr1_tokenize(model, "</think>", 8, h.seq, 32, &h.n_seq, 0) == DSR1_OK && h.n_seq > 1, "tokens");
    gp.starts_in_reasoning = -1;
    gp.on_step = spell_hook;
    gp.step_user_data = &h;
    r = run(ctx, smp, prompt, n_prompt, &gp, &s);
    CHECK(h.next == h.n_seq, "the hook wrote the marker");
    CHECK(r == DSR1_STOP_EOS && validates(s.answer, why, sizeof why) && s.n_reasoning > 0,
          "marker as text: stop %d, reasoning '%s', answer '%s' %s", r, s.reasoning, s.answer, why);
    dsr1_sampler_free(smp);
    dsr1_grammar_free(g);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_structured MODEL HELDOUT_TSV\n");
        return 2;
    }
    dsr1_model *model = NULL;
    if (dsr1_model_load(argv[1], NULL, &model)) {
        printf("cannot load %s: %s\n", argv[1], dsr1_last_error());
        return 1;
    }
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_threads = 1;
    dsr1_context *ctx;
    if (dsr1_context_new(model, &cp, &ctx)) {
        printf("context: %s\n", dsr1_last_error());
        return 1;
    }
    static char questions[N_QUESTIONS][256];
    int n_q = 0;
    FILE *f = fopen(argv[2], "r");
    char line[512];
    while (f && n_q < N_QUESTIONS && fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        snprintf(questions[n_q++], sizeof questions[0], "%.255s", line);
    }
    if (f)
        fclose(f);
    CHECK(n_q == N_QUESTIONS, "questions read: %d", n_q);
    test_json_answers(model, ctx, questions, n_q);
    test_logprobs_sum(model, ctx);
    test_event_logprobs(model, ctx);
    test_hook(model, ctx);
    test_grammar_start(model, ctx);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return check_summary("test_structured");
}
