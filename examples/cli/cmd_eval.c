/*
 * dsr1 eval -m MODEL --tokens 295,12,7 --out FILE [--step] [--backend NAME] [-t N] [-c N_CTX]
 *           [--kv-type f16|f32]   (the options: cli_opts.c)
 * Writes the logits of every position as little-endian float32, n_tokens rows
 * of n_vocab. --step feeds one token per call through the KV cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int parse_tokens(const char *s, dsr1_token **out, int32_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    dsr1_token *t = malloc(cap * sizeof *t);
    if (!t)
        return 0;
    int32_t k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return 0;
        }
        t[k++] = (dsr1_token)v;
        p = *end ? end + 1 : end;
    }
    *out = t;
    *n = k;
    return k > 0;
}

static int write_le_floats(FILE *f, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        if (fwrite(b, 1, 4, f) != 4)
            return 0;
    }
    return 1;
}

int dsr1_cli_eval(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    const char *tokens_arg = o->eval_tokens, *out_path = o->out_path;
    if (!o->model_path || !tokens_arg || !out_path)
        dsr1_cli_usage_error(cmd, "-m MODEL, --tokens IDS and --out FILE are required");
    dsr1_token *tokens;
    int32_t n_tokens;
    if (!parse_tokens(tokens_arg, &tokens, &n_tokens)) {
        dsr1_cli_usage_error(cmd, "--tokens needs comma-separated non-negative ids");
    }
    int rc = 1;
    dsr1_model *model = dsr1_cli_load(cmd->name, o, 0);
    dsr1_context *ctx = NULL;
    FILE *out = NULL;
    if (!model)
        goto done;
    dsr1_context_params cp;
    dsr1_cli_context_params(o, &cp);
    if (o->n_ctx == 0 && n_tokens > dsr1_model_n_ctx_train(model))
        cp.n_ctx = n_tokens;
    dsr1_status st = dsr1_context_new(model, &cp, &ctx);
    if (st) {
        rc = dsr1_cli_fail("eval", st);
        goto done;
    }
    if (!(out = fopen(out_path, "wb"))) {
        perror(out_path);
        goto done;
    }
    size_t n_vocab = (size_t)dsr1_model_n_vocab(model);
    if (o->eval_step) {
        for (int32_t i = 0; i < n_tokens; i++) {
            if ((st = dsr1_eval(ctx, &tokens[i], 1, i, 0))) {
                rc = dsr1_cli_fail("eval", st);
                goto done;
            }
            if (!write_le_floats(out, dsr1_logits(ctx, -1), n_vocab))
                goto write_error;
        }
    } else {
        if ((st = dsr1_eval(ctx, tokens, n_tokens, 0, DSR1_EVAL_LOGITS_ALL))) {
            rc = dsr1_cli_fail("eval", st);
            goto done;
        }
        for (int32_t i = 0; i < n_tokens; i++)
            if (!write_le_floats(out, dsr1_logits(ctx, i), n_vocab))
                goto write_error;
    }
    if (fclose(out) != 0) {
        out = NULL;
        goto write_error;
    }
    out = NULL;
    rc = 0;
    goto done;
write_error:
    perror(out_path);
done:
    if (out)
        fclose(out);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    free(tokens);
    return rc;
}
