/*
 * Memory read bandwidth for `dsr1 bench --membw`: the ceiling of decoding,
 * which reads every weight a token uses once. A buffer far larger than any
 * last-level cache is read by T threads at once (each its own contiguous
 * part, as the matmuls split their rows), and the best of several passes
 * counts. The reading loop touches every cache line once, in 8 independent
 * chains, so that the memory system, not the core's instructions, sets the
 * pace (see read_part).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define MEMBW_BYTES ((size_t)1 << 30) /* 1 GiB: many times any L3 */
#define MEMBW_PASSES 5

typedef struct reader {
    const uint64_t *words;
    size_t n_words;
    atomic_int *go; /* all readers start together */
    uint64_t sum; /* kept so that the reads cannot be optimized away */
    double seconds;
} reader;

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One word of every 64-byte line is loaded (the whole line still comes
 * from memory): a loop that also adds up the other 7 words keeps fewer lines
 * in flight and measured 23 GB/s on one Zen 5 core where this one measures
 * 37 GB/s, so the sum of every word would understate what a core can read,
 * and "percent of ceiling" would flatter the kernels. */
#define WORDS_PER_LINE 8

static void *read_part(void *arg)
{
    reader *r = arg;
    while (!atomic_load(r->go))
        ;
    double t0 = seconds_now();
    uint64_t s[8] = {0};
    size_t i = 0;
    for (; i + 8 * WORDS_PER_LINE <= r->n_words; i += 8 * WORDS_PER_LINE)
        for (int k = 0; k < 8; k++)
            s[k] += r->words[i + (size_t)k * WORDS_PER_LINE];
    for (; i < r->n_words; i += WORDS_PER_LINE)
        s[0] += r->words[i];
    r->seconds = seconds_now() - t0;
    r->sum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    return NULL;
}

/* One pass of n_threads readers over the buffer: bytes per second, or a
 * negative value when a thread could not be started. */
static double one_pass(const uint64_t *words, size_t n_words, int n_threads)
{
    reader r[DSR1_CLI_MEMBW_MAX_THREADS];
    pthread_t th[DSR1_CLI_MEMBW_MAX_THREADS];
    atomic_int go = 0;
    size_t part = n_words / (size_t)n_threads;
    int started = 1;
    for (int t = 0; t < n_threads; t++) {
        r[t].words = words + (size_t)t * part;
        r[t].n_words = t == n_threads - 1 ? n_words - (size_t)t * part : part;
        r[t].go = &go;
    }
    while (started < n_threads && pthread_create(&th[started], NULL, read_part, &r[started]) == 0)
        started++;
    atomic_store(&go, 1);
    read_part(&r[0]);
    double slowest = r[0].seconds;
    for (int t = 1; t < started; t++) {
        pthread_join(th[t], NULL);
        slowest = r[t].seconds > slowest ? r[t].seconds : slowest;
    }
    return started == n_threads ? (double)(n_words * sizeof *words) / slowest : -1.0;
}

double dsr1_cli_membw(int n_threads)
{
    if (n_threads < 1 || n_threads > DSR1_CLI_MEMBW_MAX_THREADS)
        return -1.0;
    uint64_t *words = malloc(MEMBW_BYTES);
    if (!words)
        return -1.0;
    memset(words, 1, MEMBW_BYTES); /* real pages, not the shared zero page */
    double best = -1.0;
    for (int p = 0; p < MEMBW_PASSES; p++) {
        double bw = one_pass(words, MEMBW_BYTES / sizeof *words, n_threads);
        if (bw < 0) {
            best = -1.0;
            break;
        }
        best = bw > best ? bw : best;
    }
    free(words);
    return best;
}
