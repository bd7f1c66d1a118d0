/*
 * Kernel micro-benchmark of the decode matmul (one activation row): how
 * many weight bytes per second a backend's kernel gets through
 *   - from cache: one small matrix (L2-sized) again and again: the kernel's
 *     own speed, what it could do if memory kept up;
 *   - from memory: matrices totalling 1 GiB, each read once per pass: what
 *     decoding sees.
 * Times are the calling thread's CPU time (the backend runs on it alone), so
 * other processes on a busy machine disturb them less than wall time.
 *
 *   usage: bench_kernels [BACKEND=avx512] [TYPE=q4_k ...]   (default: every type listed in main)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/host_ops.h"
#include "quant/quant.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        s += (float)(rng >> 40) / (float)(1 << 24) - 0.5f;
    }
    return s;
}

/* Types without a quantizer here (the IQ lattice types): random blocks, every
 * bit pattern valid, with the f16 scale d of each super-block set (at byte
 * 0; IQ1_M: the top nibbles of bytes 49, 51, 53, 55). Speed does not depend
 * on the values. */
static void random_row(uint32_t type, uint8_t *dst, size_t bytes)
{
    const size_t block = dsri_type_traits_get(type)->type_size;
    const uint16_t d = dsri_fp32_to_fp16(0.01f);
    for (size_t i = 0; i < bytes; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        dst[i] = (uint8_t)(rng >> 32);
    }
    for (size_t b = 0; b < bytes; b += block) {
        if (type == DSRI_TYPE_IQ1_M) {
            for (int k = 0; k < 4; k++)
                dst[b + 49 + 2 * k] = (uint8_t)((dst[b + 49 + 2 * k] & 0x0F) | (((d >> (4 * k)) & 0x0F) << 4));
        } else {
            dst[b] = (uint8_t)(d & 0xFF);
            dst[b + 1] = (uint8_t)(d >> 8);
        }
    }
}

/* n_mat matrices of n_out x n_in of type, one buffer */
static uint8_t *make_weights(uint32_t type, int64_t n_in, int64_t n_out, int n_mat, size_t *row_bytes)
{
    *row_bytes = dsri_row_size(type, n_in);
    size_t bytes = *row_bytes * (size_t)n_out;
    uint8_t *w = malloc(bytes * (size_t)n_mat);
    float *row = malloc((size_t)n_in * sizeof *row);
    for (int64_t i = 0; i < n_in; i++)
        row[i] = gauss();
    for (int64_t o = 0; o < n_out; o++) {
        row[o % n_in] = gauss(); /* rows differ a little; quantizing is slow */
        if (dsri_quantize_row(type, row, w + (size_t)o * *row_bytes, n_in) != 0)
            random_row(type, w + (size_t)o * *row_bytes, *row_bytes);
    }
    for (int m = 1; m < n_mat; m++)
        memcpy(w + (size_t)m * bytes, w, bytes);
    free(row);
    return w;
}

static void bench(const dsri_host_ops *ops, dsri_host *be, const char *tname, uint32_t type, int64_t n_in,
                  int64_t n_out)
{
    /* from cache: ~512 KiB of weights (more rows than n_out where rows are short) */
    int64_t small_out = (int64_t)((512u << 10) / dsri_row_size(type, n_in));
    small_out = small_out < 8 ? 8 : small_out - small_out % 8;
    float *x = malloc((size_t)n_in * sizeof *x);
    float *y = malloc((size_t)(small_out > n_out ? small_out : n_out) * sizeof *y);
    for (int64_t i = 0; i < n_in; i++)
        x[i] = gauss();
    size_t rb;
    uint8_t *w = make_weights(type, n_in, small_out, 1, &rb);
    dsri_matrix m = {w, type, n_in, small_out, rb};
    double best_cache = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = cpu_now();
        for (int i = 0; i < 200; i++)
            ops->matmul(be, &m, x, y, 1);
        double t = (cpu_now() - t0) / 200;
        best_cache = t < best_cache ? t : best_cache;
    }
    double gbs_cache = (double)rb * (double)small_out / best_cache / 1e9;
    free(w);
    /* from memory: 1 GiB of matrices n_out x n_in, each once per pass */
    size_t mat_bytes = dsri_row_size(type, n_in) * (size_t)n_out;
    int n_mat = (int)(((size_t)1 << 30) / mat_bytes);
    n_mat = n_mat < 2 ? 2 : n_mat;
    w = make_weights(type, n_in, n_out, n_mat, &rb);
    double best_mem = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cpu_now();
        for (int k = 0; k < n_mat; k++) {
            dsri_matrix mk = {w + (size_t)k * mat_bytes, type, n_in, n_out, rb};
            ops->matmul(be, &mk, x, y, 1);
        }
        double t = cpu_now() - t0;
        best_mem = t < best_mem ? t : best_mem;
    }
    double gbs_mem = (double)mat_bytes * n_mat / best_mem / 1e9;
    printf("| %s | %s | %lld x %lld | %.1f | %.1f |\n", ops->name, tname, (long long)n_out, (long long)n_in, gbs_cache,
           gbs_mem);
    fflush(stdout);
    free(w);
    free(x);
    free(y);
}

int main(int argc, char **argv)
{
    const char *backend = argc > 1 ? argv[1] : "avx512";
    static const struct {
        const char *name;
        uint32_t type;
    } types[] = {{"q4_k", DSRI_TYPE_Q4_K}, {"q6_k", DSRI_TYPE_Q6_K}, {"q8_0", DSRI_TYPE_Q8_0},
                 {"q5_0", DSRI_TYPE_Q5_0}, {"q4_0", DSRI_TYPE_Q4_0}, {"q5_k", DSRI_TYPE_Q5_K},
                 {"iq1_s", DSRI_TYPE_IQ1_S}, {"iq1_m", DSRI_TYPE_IQ1_M}, {"iq2_xxs", DSRI_TYPE_IQ2_XXS},
                 {"iq2_xs", DSRI_TYPE_IQ2_XS}, {"iq2_s", DSRI_TYPE_IQ2_S}, {"iq3_xxs", DSRI_TYPE_IQ3_XXS},
                 {"iq3_s", DSRI_TYPE_IQ3_S}};
    const dsri_backend_ops *b;
    if (dsri_backend_select(backend, &b) != DSR1_OK || !b->host_memory) {
        fprintf(stderr, "bench_kernels: no backend %s here\n", backend);
        return 1;
    }
    const dsri_host_ops *ops = b->impl; /* the kernels themselves, below the view-level ops */
    dsri_host *be;
    dsri_backend_config cfg = {.n_threads = 1, .max_row = 16384, .n_ctx = 16, .n_batch = 1};
    if (ops->create(&cfg, &be) != DSR1_OK)
        return 1;
    printf("| backend | type | matrix | GB/s from cache | GB/s from memory |\n|---|---|---|---|---|\n");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int wanted = argc <= 2;
        for (int a = 2; a < argc; a++)
            wanted |= !strcmp(argv[a], types[t].name);
        if (!wanted)
            continue;
        bench(ops, be, types[t].name, types[t].type, 1536, 8960); /* Qwen-1.5B gate / up */
        bench(ops, be, types[t].name, types[t].type, 8960, 1536); /* its down projection */
        bench(ops, be, types[t].name, types[t].type, 2048, 512);  /* an R1-proportioned expert's gate / up */
        bench(ops, be, types[t].name, types[t].type, 512, 2048);  /* its down projection (two super-blocks a row) */
    }
    ops->destroy(be);
    return 0;
}
