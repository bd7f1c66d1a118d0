/*
 * Scalar logits of every dense fixture model (qwen2, qwen3 and llama in
 * every weight type) against the reference (NAME.strict.f32), at every position,
 * evaluated as one batch, one token at a time through the KV cache, and in
 * uneven chunks with n_batch smaller than the prompt:
 * - with an f32 KV cache within TOLERANCE (the strict reference);
 * - with the f16 KV cache (the default) within F16_TOLERANCE, the argmax
 *   equal to the reference's wherever its top-1 margin exceeds 2 *
 *   F16_TOLERANCE, and the three evaluation orders giving the same logits
 *   bit for bit (each row's keys are rounded once, when stored, whatever
 *   the batch).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "check.h"

#define TOLERANCE 1e-3
/* Measured on the 28 dense fixtures (gcc 12, x86-64): at most 9.3e-4
 * (qwen2-q5_1); about twice that as the bound. */
#define F16_TOLERANCE 2e-3
#define MAX_TOKENS 512

static double worst_f16; /* over all models and modes */

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

/* Positions where the argmax differs from the reference's although its
 * top-1 margin exceeds `margin`. */
static int argmax_misses(const float *got, const float *ref, int n_vocab, double margin)
{
    int best = argmax(ref, n_vocab);
    float second = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (i != best && ref[i] > second)
            second = ref[i];
    return (double)ref[best] - second > margin && argmax(got, n_vocab) != best;
}

/* The logits of every position in mode md with cache type kv, into all
 * (n x n_vocab); returns the largest difference to ref, and counts argmax
 * misses in *misses. */
static double run_mode(dsr1_model *model, mode md, dsr1_kv_type kv, const dsr1_token *tok, int n, const float *ref,
                       int n_vocab, float *all, int *misses)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n;
    cp.backend = "scalar";
    cp.kv_type = kv;
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
            memcpy(all + (size_t)i * n_vocab, dsr1_logits(ctx, -1), (size_t)n_vocab * sizeof *all);
        }
    } else if (dsr1_eval(ctx, tok, n, 0, DSR1_EVAL_LOGITS_ALL) != DSR1_OK) {
        printf("  eval: %s\n", dsr1_last_error());
        worst = INFINITY;
    } else {
        for (int i = 0; i < n; i++) {
            double d = max_diff(dsr1_logits(ctx, i), ref + (size_t)i * n_vocab, (size_t)n_vocab);
            if (d > worst)
                worst = d;
            memcpy(all + (size_t)i * n_vocab, dsr1_logits(ctx, i), (size_t)n_vocab * sizeof *all);
        }
    }
    *misses = 0;
    for (int i = 0; worst < INFINITY && i < n; i++)
        *misses += argmax_misses(all + (size_t)i * n_vocab, ref + (size_t)i * n_vocab, n_vocab, 2 * F16_TOLERANCE);
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
    float *ref = read_f32_file(path, (size_t)n * (size_t)n_vocab);
    if (!ref || dsr1_model_n_vocab(model) != n_vocab) {
        printf("FAIL %s: reference logits missing or n_vocab mismatch\n", name);
        failures++;
    } else {
        float *all = malloc((size_t)n * n_vocab * sizeof *all), *first = malloc((size_t)n * n_vocab * sizeof *first);
        for (int f16 = 0; f16 < 2; f16++) {
            double tol = f16 ? F16_TOLERANCE : TOLERANCE;
            for (int md = BATCH; md <= CHUNKED; md++) {
                int misses = 0;
                double d = run_mode(model, (mode)md, f16 ? DSR1_KV_F16 : DSR1_KV_F32, tok, n, ref, n_vocab,
                                    md == BATCH ? first : all, &misses);
                int same = md == BATCH || memcmp(all, first, (size_t)n * n_vocab * sizeof *all) == 0;
                int ok = d < tol && misses == 0 && same;
                printf("%s %-16s %s KV %-8s max|diff| %.3g%s%s\n", ok ? "ok  " : "FAIL", name, f16 ? "f16" : "f32",
                       mode_names[md], d, misses ? ", argmax differs" : "", same ? "" : ", differs from batch");
                failures += !ok;
                if (f16 && d > worst_f16)
                    worst_f16 = d;
            }
        }
        free(all);
        free(first);
    }
    free(ref);
    dsr1_model_free(model);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    char path[1024], line[8192];
    snprintf(path, sizeof path, "%s/models/MANIFEST", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("cannot open %s\n", path);
        return 1;
    }
    int n_models = 0;
    while (fgets(line, sizeof line, f)) {
        char name[256];
        dsr1_token tok[MAX_TOKENS];
        int n_vocab, n;
        if (!manifest_entry(line, name, &n_vocab, tok, MAX_TOKENS, &n))
            continue;
        if (strncmp(name, "qwen2-", 6) != 0 && strncmp(name, "qwen3-", 6) != 0 && strncmp(name, "llama-", 6) != 0)
            continue; /* deepseek2 has its own test */
        check_model(dir, name, tok, n, n_vocab);
        n_models++;
    }
    fclose(f);
    printf("%d models, %d failures; f16 KV cache: max|diff| %.3g (tolerance %.0e)\n", n_models, failures, worst_f16,
           F16_TOLERANCE);
    return failures || n_models < 28 ? 1 : 0;
}
