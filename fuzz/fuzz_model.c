/*
 * libFuzzer target: a mutated small model file through load, a context and
 * a few evaluation steps (a batched prompt split by n_batch, a decode step,
 * a rewind, a batch that overflows the context) and a two-token greedy
 * generation (with the multi-token-prediction draft where the model has
 * one). Every rejection must be a status with a message, never a crash,
 * leak or hang; what loads must evaluate to finite logits or say
 * DSR1_ERR_NUMERIC; a failed evaluation leaves n_past where the contract
 * says.
 *
 * One input runs in milliseconds: the context holds 8 tokens, one thread,
 * and files above 4 MiB are skipped (all the weights of a model are in its
 * file, so the file bounds the work per token). The low bit of the file
 * size picks the backend (the best compiled in, or the scalar reference)
 * and the next the KV cache type, so both get mutated files.
 *   build-fuzz/fuzz/fuzz_model -max_len=4194304 -timeout=10 CORPUS
 *   (seeds: the small fixtures in tests/data/models, see .ci/run)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILE (4u << 20)
#define N_CTX 8

static void failed_with_message(dsr1_status st, const char *msg)
{
    if (st == DSR1_OK || !msg || msg[0] == '\0')
        abort();
}

/* The logits of rows [first, first + rows) of the last successful eval
 * are there and finite (-1: the last row). */
static void check_logits(dsr1_context *ctx, int32_t n_vocab, int32_t first, int32_t rows)
{
    for (int32_t r = first; r < first + rows; r++) {
        const float *z = NULL;
        if (dsr1_context_logits(ctx, r, &z) != DSR1_OK || !z)
            abort();
        for (int32_t i = 0; i < n_vocab; i++)
            if (!isfinite(z[i]))
                abort(); /* eval promised DSR1_ERR_NUMERIC for this */
    }
}

/* Evaluate and check the outcome against the contract. */
static dsr1_status eval(dsr1_context *ctx, const dsr1_token *t, int32_t n, int32_t pos, uint32_t flags,
                        int32_t n_vocab)
{
    int32_t before = dsr1_context_n_past(ctx);
    dsr1_status st = dsr1_eval(ctx, t, n, pos, flags);
    if (st == DSR1_OK) {
        if (dsr1_context_n_past(ctx) != pos + n)
            abort();
        if (flags & DSR1_EVAL_LOGITS_ALL)
            check_logits(ctx, n_vocab, 0, n);
        else
            check_logits(ctx, n_vocab, -1, 1);
        if (!(flags & DSR1_EVAL_LOGITS_ALL)) {
            const float *z = NULL; /* the last row only */
            if (n > 1 && dsr1_context_logits(ctx, 0, &z) != DSR1_ERR_INVALID_ARGUMENT)
                abort();
        }
    } else {
        failed_with_message(st, dsr1_context_errmsg(ctx));
        /* refused before it began (n_past unchanged), or dropped back to pos */
        int32_t now = dsr1_context_n_past(ctx);
        if (now != before && now != pos)
            abort();
    }
    return st;
}

static void generate(dsr1_context *ctx, int32_t n_vocab, const dsr1_token *prompt, int32_t n_prompt)
{
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0.0f;
    dsr1_sampler *smp = NULL;
    if (dsr1_sampler_new(n_vocab, &sp, &smp) != DSR1_OK)
        abort();
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 2;
    gp.speculative_mtp = 1;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    dsr1_status st = dsr1_generate(ctx, smp, prompt, n_prompt, &gp, &why);
    if (st != DSR1_OK)
        failed_with_message(st, dsr1_last_error());
    else if (why == DSR1_STOP_NONE)
        abort();
    dsr1_sampler_free(smp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_FILE)
        return 0;
    dsr1_model *model = NULL;
    dsr1_status st = dsr1_model_load_from_memory(data, size, NULL, &model);
    if (st != DSR1_OK) {
        if (model)
            abort();
        failed_with_message(st, dsr1_last_error());
        return 0;
    }
    /* what the model reports stays consistent with itself */
    for (int64_t i = 0; i < dsr1_model_tensor_count(model); i++) {
        dsr1_tensor_info ti;
        ti.size = sizeof ti;
        if (dsr1_model_tensor_info(model, i, &ti) != DSR1_OK || ti.n_bytes > size)
            abort();
    }
    if (dsr1_model_size_bytes(model) > size)
        abort();

    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = N_CTX;
    cp.n_batch = 4;
    cp.n_threads = 1;
    cp.backend = size & 1 ? "scalar" : NULL;
    cp.kv_type = size & 2 ? DSR1_KV_F32 : DSR1_KV_F16;
    dsr1_context *ctx = NULL;
    st = dsr1_context_new(model, &cp, &ctx);
    if (st != DSR1_OK) {
        if (ctx)
            abort();
        failed_with_message(st, dsr1_last_error());
        dsr1_model_free(model);
        return 0;
    }
    int32_t n_vocab = dsr1_model_n_vocab(model);
    if (n_vocab <= 0 || dsr1_context_n_ctx(ctx) != N_CTX)
        abort();
    dsr1_token t[N_CTX];
    dsr1_token bos = dsr1_token_special(model, DSR1_SPECIAL_BOS);
    for (int32_t i = 0; i < N_CTX; i++)
        t[i] = (dsr1_token)(((bos >= 0 ? bos : 0) + 7919 * i) % n_vocab);

    if (eval(ctx, t, 6, 0, DSR1_EVAL_LOGITS_ALL, n_vocab) == DSR1_OK && /* two n_batch chunks */
        eval(ctx, t + 6, 1, 6, 0, n_vocab) == DSR1_OK &&                 /* a decode step */
        eval(ctx, t + 1, 2, 3, 0, n_vocab) == DSR1_OK) {                 /* rewind and redo */
        if (eval(ctx, t, 4, 5, 0, n_vocab) != DSR1_ERR_CONTEXT_FULL)
            abort();
        dsr1_context_reset(ctx);
        generate(ctx, n_vocab, t, 4);
    }
    dsr1_token bad = n_vocab; /* an id outside the vocabulary is refused */
    if (dsr1_eval(ctx, &bad, 1, 0, 0) != DSR1_ERR_INVALID_ARGUMENT)
        abort();
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return 0;
}
