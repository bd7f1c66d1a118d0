/*
 * Allocation failure injection: make the 1st, 2nd, 3rd ... allocation of a
 * whole session fail in turn (load, context, tokenize, chat format, sampler,
 * grammar, generation with a grammar and log-probabilities) and require each failure to come back as
 * DSR1_ERR_OUT_OF_MEMORY with everything freed (LeakSanitizer checks the
 * freeing in the sanitizer build). Needs -Dalloc_failure_injection=true;
 * skipped otherwise.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "dsr1.h"

static int failures;

/* One session; returns the first non-OK status (or DSR1_OK). */
static dsr1_status session(const char *path, int *steps_done)
{
    dsr1_model *m = NULL;
    dsr1_context *ctx = NULL;
    dsr1_sampler *smp = NULL;
    dsr1_generation *gen = NULL;
    dsr1_decoder *dec = NULL;
    dsr1_grammar *gr = NULL;
    dsr1_status st;
    *steps_done = 0;
    if ((st = dsr1_model_load(path, NULL, &m)))
        goto out;
    ++*steps_done;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.n_threads = 2;
    if ((st = dsr1_context_new(m, &cp, &ctx)))
        goto out;
    ++*steps_done;
    dsr1_token toks[64];
    int32_t n;
    if ((st = dsr1_tokenize(m, "hello world", 11, toks, 64, &n, DSR1_TOKENIZE_ADD_BOS)))
        goto out;
    dsr1_chat_message msgs[2] = {{"system", "be brief"}, {"user", "hi <think>x</think>"}};
    if ((st = dsr1_chat_tokenize(m, msgs, 2, DSR1_CHAT_ADD_GENERATION_PROMPT, toks, 64, &n)))
        goto out;
    ++*steps_done;
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[1,\"x\"]}}}";
    if ((st = dsr1_sampler_new(dsr1_model_n_vocab(m), NULL, &smp)) || (st = dsr1_decoder_new(m, 0, &dec)) ||
        (st = dsr1_grammar_from_json_schema(m, schema, sizeof schema - 1, &gr)))
        goto out;
    ++*steps_done;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 6;
    gp.think_budget = 2;
    const char *stops[1] = {"zz"};
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    gp.grammar = gr; /* the budget closes the reasoning: the grammar masks the last tokens */
    gp.n_logprobs = 2;
    if ((st = dsr1_generation_new(ctx, smp, toks, n, &gp, &gen)) || (st = dsr1_generation_run(gen, NULL)))
        goto out;
    ++*steps_done;
out:
    dsr1_generation_free(gen);
    dsr1_grammar_free(gr);
    dsr1_decoder_free(dec);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(m);
    return st;
}

/* The token form of a conversation with two tool outputs (the second
 * writes "\n" before its marker) on the R1 vocabulary: each allocation
 * failing in turn gives DSR1_ERR_OUT_OF_MEMORY or, where a fallback
 * absorbs it, exactly the tokens of a run without failures (a failure in
 * that "\n" was overwritten by the next content's status and came back as
 * DSR1_OK with a token missing). */
static void chat_tool_outputs(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-deepseek-r1.gguf", dir);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    dsr1_model *m = NULL;
    dsri_alloc_fail_after(0);
    if (dsr1_model_load(path, &mp, &m) != DSR1_OK) {
        printf("FAIL cannot load %s: %s\n", path, dsr1_last_error());
        failures++;
        return;
    }
    const dsr1_chat_message msgs[] = {
        {"user", "weather?"}, {"tool", "sunny, 21 degrees"}, {"tool", "wind 3 m/s"}, {"assistant", "Sunny."}};
    dsr1_token want[128], got[128];
    int32_t n_want = 0, n_got = 0;
    dsri_alloc_fail_after(0);
    if (dsr1_chat_tokenize(m, msgs, 4, DSR1_CHAT_ADD_GENERATION_PROMPT, want, 128, &n_want) != DSR1_OK) {
        printf("FAIL tool conversation without injected failures: %s\n", dsr1_last_error());
        failures++;
    }
    long total = dsri_alloc_fail_after(0);
    for (long k = 1; k <= total; k++) {
        dsri_alloc_fail_after(k);
        dsr1_status st = dsr1_chat_tokenize(m, msgs, 4, DSR1_CHAT_ADD_GENERATION_PROMPT, got, 128, &n_got);
        dsri_alloc_fail_after(0);
        if (st == DSR1_OK ? n_got != n_want || memcmp(got, want, (size_t)n_want * sizeof *want) != 0
                          : st != DSR1_ERR_OUT_OF_MEMORY) {
            printf("FAIL tool conversation, allocation %ld failing: status %d, %d tokens (want %d)\n", k, st, n_got,
                   n_want);
            failures++;
        }
    }
    printf("tool conversation: %ld allocations checked\n", total);
    dsr1_model_free(m);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    char path[1024];
    snprintf(path, sizeof path, "%s/models/qwen2-q8_0.gguf", dir);

    /* is injection compiled in? (the counter only counts when it is) */
    dsri_alloc_fail_after(0);
    dsri_free(dsri_malloc(16));
    if (dsri_alloc_fail_after(0) == 0) {
        printf("allocation failure injection not compiled in (-Dalloc_failure_injection=true): skipped\n");
        return 77;
    }
    int steps;
    dsri_alloc_fail_after(0);
    if (session(path, &steps) != DSR1_OK) {
        printf("FAIL the session does not run without injected failures: %s\n", dsr1_last_error());
        return 1;
    }
    long total = dsri_alloc_fail_after(0);
    printf("one session makes %ld allocations\n", total);
    int per_step[6] = {0};
    for (long k = 1; k <= total; k++) {
        dsri_alloc_fail_after(k);
        dsr1_status st = session(path, &steps);
        dsri_alloc_fail_after(0);
        if (st == DSR1_ERR_OUT_OF_MEMORY) {
            per_step[steps]++;
        } else if (st != DSR1_OK) {
            printf("FAIL allocation %ld failing gave status %d, not OUT_OF_MEMORY: %s\n", k, st, dsr1_last_error());
            failures++;
        }
        /* DSR1_OK: that allocation's failure was handled by a fallback */
    }
    chat_tool_outputs(dir);
    printf("failures surfaced during: load %d, context %d, tokenize/chat %d, sampler/decoder/grammar %d, generation %d\n",
           per_step[0], per_step[1], per_step[2], per_step[3], per_step[4]);
    printf("%d failures\n", failures);
    return failures != 0;
}
