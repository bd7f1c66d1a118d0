/*
 * dsr1 eval -m MODEL --tokens 295,12,7 --out FILE [--step] [--backend NAME] [-t N] [-c N_CTX]
 *           [--kv-type f16|f32]
 * Writes the logits of every position as little-endian float32, n_tokens rows
 * of n_vocab. --step feeds one token per call through the KV cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: dsr1 eval -m MODEL --tokens ID,ID,... --out FILE [--step] [--backend NAME] [-t N] [-c N_CTX]\n"
    "                 [--kv-type f16|f32]\n" DSR1_CLI_KV_TYPE_HELP;

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

int dsr1_cli_eval(int argc, char **argv)
{
    const char *path = NULL, *tokens_arg = NULL, *out_path = NULL, *backend = NULL;
    dsr1_kv_type kv_type = DSR1_KV_DEFAULT;
    int step = 0;
    long n_threads = 0, n_ctx = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && next) path = argv[++i];
        else if (!strcmp(a, "--tokens") && next) tokens_arg = argv[++i];
        else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && next) out_path = argv[++i];
        else if (!strcmp(a, "--backend") && next) backend = argv[++i];
        else if (!strcmp(a, "--kv-type")) kv_type = dsr1_cli_parse_kv_type("eval", a, next), i++;
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && next)
            n_threads = dsr1_cli_parse_long("eval", a, argv[++i], 1, 1024);
        else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) && next)
            n_ctx = dsr1_cli_parse_long("eval", a, argv[++i], 1, 1 << 24);
        else if (!strcmp(a, "--step")) step = 1;
        else {
            fprintf(stderr, "dsr1 eval: unexpected argument '%s'\n%s", a, usage);
            return 1;
        }
    }
    if (!path || !tokens_arg || !out_path) {
        fputs(usage, stderr);
        return 1;
    }
    dsr1_token *tokens;
    int32_t n_tokens;
    if (!parse_tokens(tokens_arg, &tokens, &n_tokens)) {
        fprintf(stderr, "dsr1 eval: --tokens needs comma-separated non-negative ids\n");
        return 1;
    }
    int rc = 1;
    dsr1_model *model = dsr1_cli_load(path, 0, 0);
    dsr1_context *ctx = NULL;
    FILE *out = NULL;
    if (!model)
        goto done;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_threads = (int32_t)n_threads;
    cp.backend = backend;
    cp.kv_type = kv_type;
    if (n_ctx == 0 && n_tokens > dsr1_model_n_ctx_train(model))
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
    if (step) {
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
