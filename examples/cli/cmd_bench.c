/*
 * dsr1 bench -m MODEL [-p N_PROMPT] [-n N_GEN] [-r REPS] [-o md|json|csv] [-t N] [--backend NAME]
 *            [--kv-type f16|f32] [--membw]
 * dsr1 bench --membw [-t N]
 *
 * Measures prompt processing (one batch of N_PROMPT tokens) and token
 * generation (N_GEN single-token evaluations after it) like llama-bench's
 * pp/tg tests, on deterministic pseudo-random token ids: a warm-up run,
 * then REPS runs; each test reports the mean and the sample standard
 * deviation of its tokens/s over the runs, as a markdown table row, a JSON
 * object or a CSV line.
 *
 * Decoding reads every weight a token uses once, so its speed is bounded
 * by memory bandwidth / weight bytes per token. The generation row shows
 * those bytes (all weights, except: one row of the token embeddings, and of
 * each expert stack the share of the experts a token uses; no
 * multi-token-prediction block) and the read rate they imply; with --membw
 * the machine's read bandwidth is measured first (1 thread and the run's
 * thread count) and the row shows the percentage of that ceiling.
 */
#include <math.h>
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
static double report_membw(int n_threads, FILE *out)
{
    double one = dsr1_cli_membw(1) / 1e9, all = n_threads > 1 ? dsr1_cli_membw(n_threads) / 1e9 : one;
    if (one <= 0 || all <= 0) {
        fprintf(stderr, "dsr1 bench: could not measure the memory bandwidth\n");
        return 0;
    }
    fprintf(out, "memory read bandwidth: %.1f GB/s with 1 thread, %.1f GB/s with %d threads\n", one, all, n_threads);
    return all;
}

enum { OUT_MD = 1, OUT_JSON = 2, OUT_CSV = 3 }; /* the choices of -o */

/* One test's speeds over the runs. */
typedef struct result {
    char name[32]; /* pp512, tg128 */
    int32_t n_prompt, n_gen;
    double *tps; /* tokens/s of each run */
    int32_t n;
    double mean, stddev;
    double weight_mb; /* tg: weight megabytes one token reads; 0 for pp */
} result;

static void summarize(result *r)
{
    double sum = 0, sq = 0;
    for (int32_t i = 0; i < r->n; i++)
        sum += r->tps[i];
    r->mean = r->n ? sum / r->n : 0;
    for (int32_t i = 0; i < r->n; i++)
        sq += (r->tps[i] - r->mean) * (r->tps[i] - r->mean);
    r->stddev = r->n > 1 ? sqrt(sq / (r->n - 1)) : 0; /* the sample standard deviation, as llama-bench */
}

/* s as a JSON string / a CSV field. */
static void put_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void put_csv_field(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

typedef struct bench_info {
    const char *name, *backend, *kv;
    uint64_t size;
    uint64_t n_params;
    int threads;
    double ceiling; /* GB/s; 0: not measured */
} bench_info;

static void print_results(int format, const bench_info *b, const result *res, int n_res)
{
    if (format == OUT_JSON) {
        printf("[\n");
        for (int k = 0; k < n_res; k++) {
            const result *r = &res[k];
            printf("  {\"model_filename\": ");
            put_json_string(b->name);
            printf(", \"model_size\": %llu, \"model_n_params\": %llu, \"backend\": ", (unsigned long long)b->size,
                   (unsigned long long)b->n_params);
            put_json_string(b->backend);
            printf(", \"n_threads\": %d, \"kv_type\": \"%s\", \"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
                   "\"repetitions\": %d, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [",
                   b->threads, b->kv, r->name, r->n_prompt, r->n_gen, r->n, r->mean, r->stddev);
            for (int32_t i = 0; i < r->n; i++)
                printf(i ? ", %.6f" : "%.6f", r->tps[i]);
            printf("], \"weight_bytes_per_token\": %.0f, \"membw_gbs\": %.3f}%s\n", r->weight_mb * 1e6, b->ceiling,
                   k + 1 < n_res ? "," : "");
        }
        printf("]\n");
    } else if (format == OUT_CSV) {
        printf("model_filename,model_size,model_n_params,backend,n_threads,kv_type,test,n_prompt,n_gen,repetitions,"
               "avg_ts,stddev_ts,weight_bytes_per_token,membw_gbs\n");
        for (int k = 0; k < n_res; k++) {
            const result *r = &res[k];
            put_csv_field(b->name);
            printf(",%llu,%llu,", (unsigned long long)b->size, (unsigned long long)b->n_params);
            put_csv_field(b->backend);
            printf(",%d,%s,%s,%d,%d,%d,%.6f,%.6f,%.0f,%.3f\n", b->threads, b->kv, r->name, r->n_prompt, r->n_gen,
                   r->n, r->mean, r->stddev, r->weight_mb * 1e6, b->ceiling);
        }
    } else {
        printf("| model | size | backend | threads | kv | test | t/s | weights/token | GB/s | of ceiling |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n");
        for (int k = 0; k < n_res; k++) {
            const result *r = &res[k];
            char wt[32] = "", gbs[32] = "", pct[16] = "";
            if (r->weight_mb > 0) {
                snprintf(wt, sizeof wt, "%.1f MB", r->weight_mb);
                snprintf(gbs, sizeof gbs, "%.1f", r->mean * r->weight_mb / 1e3);
                if (b->ceiling > 0)
                    snprintf(pct, sizeof pct, "%.0f%%", 100.0 * r->mean * r->weight_mb / 1e3 / b->ceiling);
            }
            printf("| %s | %.1f MiB | %s | %d | %s | %s | %.2f ± %.2f | %s | %s | %s |\n", b->name,
                   (double)b->size / 1048576.0, b->backend, b->threads, b->kv, r->name, r->mean, r->stddev, wt, gbs,
                   pct);
        }
        printf("(mean ± standard deviation of %d runs after a warm-up)\n", res[0].n);
    }
}

/* One run: pp (n_prompt tokens in one batch) then tg (n_gen tokens one at a time); seconds of each. */
static dsr1_status run_once(dsr1_context *ctx, const dsr1_token *tokens, int32_t n_prompt, int32_t n_gen, double *pp,
                            double *tg)
{
    dsr1_status st = DSR1_OK;
    dsr1_context_reset(ctx);
    double t0 = now();
    if (n_prompt > 0)
        st = dsr1_eval(ctx, tokens, n_prompt, 0, 0);
    double t1 = now();
    for (int32_t i = 0; i < n_gen && st == DSR1_OK; i++)
        st = dsr1_eval(ctx, &tokens[i], 1, n_prompt + i, 0);
    *pp = t1 - t0;
    *tg = now() - t1;
    return st;
}

int dsr1_cli_bench(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    const int32_t n_prompt = o->bench_n_prompt, n_gen = o->bench_n_gen, reps = o->bench_reps;
    const int format = o->bench_output ? o->bench_output : OUT_MD;
    FILE *info_out = format == OUT_MD ? stdout : stderr; /* JSON and CSV stay parseable */
    int n_threads = o->n_threads ? o->n_threads : n_cores();
    if (n_threads > DSR1_CLI_MEMBW_MAX_THREADS)
        n_threads = DSR1_CLI_MEMBW_MAX_THREADS;
    if (o->membw && !o->model_path)
        return report_membw(n_threads, info_out) > 0 ? DSR1_EXIT_OK : DSR1_EXIT_ERROR;
    if (n_prompt == 0 && n_gen == 0)
        dsr1_cli_usage_error(cmd, "-p 0 and -n 0 leave nothing to measure");
    double ceiling = 0; /* GB/s, measured before the model takes memory */
    if (o->membw && (ceiling = report_membw(n_threads, info_out)) <= 0)
        return DSR1_EXIT_ERROR;
    dsr1_model *model = dsr1_cli_load(cmd->name, o, 0);
    if (!model)
        return DSR1_EXIT_ERROR;
    dsr1_context_params cp;
    dsr1_cli_context_params(o, &cp);
    cp.n_ctx = n_prompt + n_gen + 1;
    cp.n_batch = n_prompt > 0 ? n_prompt : 1;
    dsr1_context *ctx = NULL;
    dsr1_status st = dsr1_context_new(model, &cp, &ctx);
    if (st) {
        dsr1_model_free(model);
        return dsr1_cli_fail(cmd->name, st);
    }
    int32_t n_tok = n_prompt > n_gen ? n_prompt : n_gen;
    dsr1_token *tokens = malloc((size_t)(n_tok + 1) * sizeof *tokens);
    double *samples = malloc(2 * (size_t)reps * sizeof *samples);
    if (!tokens || !samples) {
        fprintf(stderr, "dsr1 %s: out of memory\n", cmd->name);
        free(tokens);
        free(samples);
        dsr1_context_free(ctx);
        dsr1_model_free(model);
        return DSR1_EXIT_ERROR;
    }
    uint64_t s = 42;
    int32_t n_vocab = dsr1_model_n_vocab(model);
    for (int32_t i = 0; i <= n_tok; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (dsr1_token)((s >> 33) % (uint64_t)n_vocab);
    }
    result res[2];
    int n_res = 0;
    memset(res, 0, sizeof res);
    if (n_prompt > 0) {
        snprintf(res[n_res].name, sizeof res[n_res].name, "pp%d", n_prompt);
        res[n_res].n_prompt = n_prompt;
        res[n_res++].tps = samples;
    }
    if (n_gen > 0) {
        snprintf(res[n_res].name, sizeof res[n_res].name, "tg%d", n_gen);
        res[n_res].n_gen = n_gen;
        res[n_res].weight_mb = (double)weight_bytes_per_token(model) / 1e6;
        res[n_res++].tps = samples + reps;
    }
    double pp, tg;
    st = run_once( /* warm-up: the weights' pages and the caches */
        ctx, tokens, n_prompt, n_gen > 0 ? 1 : 0, &pp, &tg);
    for (int32_t r = 0; r < reps && st == DSR1_OK; r++) {
        if ((st = run_once(ctx, tokens, n_prompt, n_gen, &pp, &tg)) != DSR1_OK)
            break;
        int k = 0;
        if (n_prompt > 0)
            res[k++].tps[r] = pp > 0 ? n_prompt / pp : 0;
        if (n_gen > 0)
            res[k].tps[r] = tg > 0 ? n_gen / tg : 0;
    }
    int rc = DSR1_EXIT_OK;
    if (st) {
        rc = dsr1_cli_fail(cmd->name, st);
    } else {
        for (int k = 0; k < n_res; k++) {
            res[k].n = reps;
            summarize(&res[k]);
        }
        bench_info b = {strrchr(o->model_path, '/') ? strrchr(o->model_path, '/') + 1 : o->model_path,
                        dsr1_context_backend(ctx),
                        dsr1_cli_kv_type(o) == DSR1_KV_F32 ? "f32" : "f16", /* DSR1_KV_DEFAULT is f16 */
                        dsr1_model_size_bytes(model),
                        dsr1_model_n_params(model),
                        dsr1_context_n_threads(ctx),
                        ceiling};
        print_results(format, &b, res, n_res);
    }
    free(samples);
    free(tokens);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
