/*
 * Scalar logits of every dense fixture model (qwen2 and llama in every
 * weight type) against the reference (NAME.strict.f32), at every position,
 * evaluated as one batch, one token at a time through the KV cache, and in
 * uneven chunks with n_batch smaller than the prompt.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

#define TOLERANCE 1e-3
#define MAX_TOKENS 64

static int failures;

static float *read_floats(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = malloc(n * sizeof *v);
    size_t got = v ? fread(v, sizeof *v, n, f) : 0;
    fclose(f);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) /* NaN counts as infinitely wrong */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

typedef enum mode { BATCH, STEP, CHUNKED } mode;
static const char *const mode_names[] = {"batch", "step", "chunked"};

static double run_mode(dsr1_model *model, mode md, const dsr1_token *tok, int n, const float *ref, int n_vocab)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.backend = "scalar";
    if (md == CHUNKED)
        cp.n_batch = 5;
    dsr1_context *ctx;
    if (dsr1_context_new(model, &cp, &ctx) != DSR1_OK) {
        printf("  context: %s\n", dsr1_last_error());
        return INFINITY;
    }
    double worst = 0;
    if (md == STEP) {
        for (int i = 0; i < n; i++) {
            if (dsr1_eval(ctx, &tok[i], 1, i, 0) != DSR1_OK) {
                printf("  eval: %s\n", dsr1_last_error());
                worst = INFINITY;
                break;
            }
            double d = max_diff(dsr1_logits(ctx, -1), ref + (size_t)i * n_vocab, (size_t)n_vocab);
            if (d > worst)
                worst = d;
        }
    } else if (dsr1_eval(ctx, tok, n, 0, DSR1_EVAL_LOGITS_ALL) != DSR1_OK) {
        printf("  eval: %s\n", dsr1_last_error());
        worst = INFINITY;
    } else {
        for (int i = 0; i < n; i++) {
            double d = max_diff(dsr1_logits(ctx, i), ref + (size_t)i * n_vocab, (size_t)n_vocab);
            if (d > worst)
                worst = d;
        }
    }
    dsr1_context_free(ctx);
    return worst;
}

static void check_model(const char *dir, const char *name, const dsr1_token *tok, int n, int n_vocab)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", dir, name);
    dsr1_model *model;
    if (dsr1_model_load(path, NULL, &model) != DSR1_OK) {
        printf("FAIL %s: load: %s\n", name, dsr1_last_error());
        failures++;
        return;
    }
    snprintf(path, sizeof path, "%s/models/%s.strict.f32", dir, name);
    float *ref = read_floats(path, (size_t)n * (size_t)n_vocab);
    if (!ref || dsr1_model_n_vocab(model) != n_vocab) {
        printf("FAIL %s: reference logits missing or n_vocab mismatch\n", name);
        failures++;
    } else {
        for (int md = BATCH; md <= CHUNKED; md++) {
            double d = run_mode(model, (mode)md, tok, n, ref, n_vocab);
            int ok = d < TOLERANCE;
            printf("%s %-16s %-8s max|diff| %.3g\n", ok ? "ok  " : "FAIL", name, mode_names[md], d);
            failures += !ok;
        }
    }
    free(ref);
    dsr1_model_free(model);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/models/MANIFEST", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("cannot open %s\n", path);
        return 1;
    }
    int n_models = 0;
    while (fgets(line, sizeof line, f)) {
        char name[256];
        int n_vocab, off;
        if (sscanf(line, "%255s %d%n", name, &n_vocab, &off) != 2)
            continue;
        if (strncmp(name, "qwen2-", 6) != 0 && strncmp(name, "llama-", 6) != 0)
            continue; /* deepseek2 has its own test */
        dsr1_token tok[MAX_TOKENS];
        int n = 0, used;
        const char *p = line + off;
        while (n < MAX_TOKENS && sscanf(p, "%d%n", &tok[n], &used) == 1) {
            p += used;
            n++;
        }
        check_model(dir, name, tok, n, n_vocab);
        n_models++;
    }
    fclose(f);
    printf("%d models, %d failures\n", n_models, failures);
    return failures || n_models < 18 ? 1 : 0;
}
