/*
 * dsr1 bench -m MODEL [-p N_PROMPT] [-n N_GEN] [-r REPS] [-t N] [--backend NAME] [--kv-type f16|f32] [--membw]
 * dsr1 bench --membw [-t N]
 *
 * Measures prompt processing (one batch of N_PROMPT tokens) and token
 * generation (N_GEN single-token evaluations after it) like llama-bench's
 * pp/tg tests, on deterministic pseudo-random token ids, and prints one
 * markdown table row per test with the best of REPS runs.
 *
 * Decoding reads every weight a token uses once, so its speed is bounded
 * by memory bandwidth / weight bytes per token. The generation row shows
 * those bytes (all weights, except: one row of the token embeddings, and of
 * each expert stack the share of the experts a token uses; no
 * multi-token-prediction block) and the read rate they imply; with --membw
 * the machine's read bandwidth is measured first (1 thread and the run's
 * thread count) and the row shows the percentage of that ceiling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char usage[] = "usage: dsr1 bench -m MODEL [-p N_PROMPT] [-n N_GEN] [-r REPS] [-t N] [--backend NAME]\n"
                            "                  [--kv-type f16|f32] [--membw]\n"
                            "       dsr1 bench --membw [-t N]\n" DSR1_CLI_KV_TYPE_HELP
                            "  --membw                  measure the memory read bandwidth (1 and N threads) and show\n"
                            "                          generation speed as a percentage of that ceiling\n";

/* Weight bytes one generated token reads (see the top of the file). */
static uint64_t weight_bytes_per_token(const dsr1_model *model)
{
    char buf[32];
    int64_t n_expert = 0, n_used = 0;
    if (dsr1_model_meta_value(model, "deepseek2.expert_count", buf, sizeof buf, NULL) == DSR1_OK)
        n_expert = atoll(buf);
    if (dsr1_model_meta_value(model, "deepseek2.expert_used_count", buf, sizeof buf, NULL) == DSR1_OK)
        n_used = atoll(buf);
    int tied = 1;
    const int64_t n = dsr1_model_tensor_count(model);
    for (int64_t i = 0; i < n; i++) {
        dsr1_tensor_info ti = {.size = sizeof ti};
        if (dsr1_model_tensor_info(model, i, &ti) == DSR1_OK && !strcmp(ti.name, "output.weight"))
            tied = 0;
    }
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        dsr1_tensor_info ti = {.size = sizeof ti};
        if (dsr1_model_tensor_info(model, i, &ti) != DSR1_OK)
            continue;
        long layer = -1;
        if (!strncmp(ti.name, "blk.", 4))
            layer = strtol(ti.name + 4, NULL, 10);
        if (layer >= dsr1_model_n_layer(model))
            continue; /* a multi-token-prediction block */
        if (!strcmp(ti.name, "token_embd.weight") && !tied)
            total += ti.n_bytes / (uint64_t)(ti.ne[1] > 0 ? ti.ne[1] : 1);
        else if (strstr(ti.name, "_exps.") && n_expert > 0 && n_used > 0)
            total += ti.n_bytes / (uint64_t)n_expert * (uint64_t)n_used;
        else
            total += ti.n_bytes;
    }
    return total;
}

static int n_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > DSR1_CLI_MEMBW_MAX_THREADS ? DSR1_CLI_MEMBW_MAX_THREADS : (int)n;
}

/* Prints the read bandwidth with 1 and with n_threads threads; returns the
 * latter in GB/s (0 when it could not be measured). */
static double report_membw(int n_threads)
{
    double one = dsr1_cli_membw(1) / 1e9, all = n_threads > 1 ? dsr1_cli_membw(n_threads) / 1e9 : one;
    if (one <= 0 || all <= 0) {
        fprintf(stderr, "dsr1 bench: could not measure the memory bandwidth\n");
        return 0;
    }
    printf("memory read bandwidth: %.1f GB/s with 1 thread, %.1f GB/s with %d threads\n", one, all, n_threads);
    return all;
}

int dsr1_cli_bench(int argc, char **argv)
{
    const char *path = NULL, *backend = NULL;
    dsr1_kv_type kv_type = DSR1_KV_DEFAULT;
    long n_prompt = 512, n_gen = 128, reps = 3, n_threads = 0;
    int membw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && next) path = argv[++i];
        else if (!strcmp(a, "-p") && next) n_prompt = dsr1_cli_parse_long("bench", a, argv[++i], 0, 1 << 20);
        else if (!strcmp(a, "-n") && next) n_gen = dsr1_cli_parse_long("bench", a, argv[++i], 0, 1 << 20);
        else if (!strcmp(a, "-r") && next) reps = dsr1_cli_parse_long("bench", a, argv[++i], 1, 1000);
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && next)
            n_threads = dsr1_cli_parse_long("bench", a, argv[++i], 1, 1024);
        else if (!strcmp(a, "--backend") && next) backend = argv[++i];
        else if (!strcmp(a, "--kv-type")) kv_type = dsr1_cli_parse_kv_type("bench", a, next), i++;
        else if (!strcmp(a, "--membw")) membw = 1;
        else {
            fprintf(stderr, "dsr1 bench: unexpected argument '%s'\n%s", a, usage);
            return 1;
        }
    }
    if (membw && !path)
        return report_membw(n_threads ? (int)n_threads : n_cores()) > 0 ? 0 : 1;
    if (!path || (n_prompt == 0 && n_gen == 0)) {
        fputs(usage, stderr);
        return 1;
    }
    double ceiling = 0; /* GB/s, measured before the model takes memory */
    if (membw && (ceiling = report_membw(n_threads ? (int)n_threads : n_cores())) <= 0)
        return 1;
    dsr1_model *model = dsr1_cli_load(path, 0, 0);
    if (!model)
        return 1;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = (int32_t)(n_prompt + n_gen + 1);
    cp.n_batch = n_prompt > 0 ? (int32_t)n_prompt : 1;
    cp.n_threads = (int32_t)n_threads;
    cp.backend = backend;
    cp.kv_type = kv_type;
    dsr1_context *ctx = NULL;
    dsr1_status st = dsr1_context_new(model, &cp, &ctx);
    if (st) {
        dsr1_model_free(model);
        return dsr1_cli_fail("bench", st);
    }
    long n_tok = n_prompt > n_gen ? n_prompt : n_gen;
    dsr1_token *tokens = malloc((size_t)(n_tok + 1) * sizeof *tokens);
    uint64_t s = 42;
    int32_t n_vocab = dsr1_model_n_vocab(model);
    for (long i = 0; i <= n_tok; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (dsr1_token)((s >> 33) % (uint64_t)n_vocab);
    }
    double best_pp = 1e30, best_tg = 1e30;
    for (long r = 0; r < reps && st == DSR1_OK; r++) {
        dsr1_context_reset(ctx);
        double t0 = now();
        if (n_prompt > 0 && (st = dsr1_eval(ctx, tokens, (int32_t)n_prompt, 0, 0)))
            break;
        double t1 = now();
        for (long i = 0; i < n_gen && st == DSR1_OK; i++)
            st = dsr1_eval(ctx, &tokens[i], 1, (int32_t)(n_prompt + i), 0);
        double t2 = now();
        if (t1 - t0 < best_pp)
            best_pp = t1 - t0;
        if (t2 - t1 < best_tg)
            best_tg = t2 - t1;
    }
    int rc = 0;
    if (st) {
        rc = dsr1_cli_fail("bench", st);
    } else {
        const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        const char *kv = kv_type == DSR1_KV_F32 ? "f32" : "f16"; /* DSR1_KV_DEFAULT is f16 */
        printf("| model | size | backend | threads | kv | test | t/s | weights/token | GB/s | of ceiling |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n");
        double mib = (double)dsr1_model_size_bytes(model) / 1048576.0;
        int th = n_threads ? (int)n_threads : 0;
        if (n_prompt > 0)
            printf("| %s | %.1f MiB | %s | %d | %s | pp%ld | %.2f | | | |\n", name, mib, dsr1_context_backend(ctx), th,
                   kv, n_prompt, (double)n_prompt / best_pp);
        if (n_gen > 0) {
            double tps = (double)n_gen / best_tg, mb = (double)weight_bytes_per_token(model) / 1e6;
            char pct[16] = "";
            if (ceiling > 0)
                snprintf(pct, sizeof pct, "%.0f%%", 100.0 * tps * mb / 1e3 / ceiling);
            printf("| %s | %.1f MiB | %s | %d | %s | tg%ld | %.2f | %.1f MB | %.1f | %s |\n", name, mib,
                   dsr1_context_backend(ctx), th, kv, n_gen, tps, mb, tps * mb / 1e3, pct);
        }
        printf("(best of %ld runs; threads 0 = all cores)\n", reps);
    }
    free(tokens);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
