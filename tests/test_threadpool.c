/*
 * Thread pools: the internal pool (every task runs exactly once, thread
 * indices stay below the handle's limit, two handles on one worker set from
 * two threads), and the public API: dsr1_context_set_threads (the same bits
 * for any thread count), contexts sharing a dsr1_threadpool (also from two
 * threads at once, the pool freed before them), argument checks, and an
 * idle pool that takes no CPU.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/threadpool.h"
#include "dsr1.h"

#define N_TASKS 37

typedef struct count_job {
    atomic_int runs[N_TASKS];
    atomic_int max_thread;
} count_job;

static void count_task(void *arg, int i, int thread)
{
    count_job *j = arg;
    atomic_fetch_add(&j->runs[i], 1);
    int m = atomic_load(&j->max_thread);
    while (thread > m && !atomic_compare_exchange_weak(&j->max_thread, &m, thread))
        ;
}

/* n runs on p: every task once per run, thread indices below the limit. */
static int run_counted(dsri_pool *p, int n, int limit)
{
    for (int r = 0; r < n; r++) {
        count_job j;
        for (int i = 0; i < N_TASKS; i++)
            atomic_init(&j.runs[i], 0);
        atomic_init(&j.max_thread, 0);
        dsri_pool_run(p, count_task, &j, N_TASKS);
        for (int i = 0; i < N_TASKS; i++)
            if (atomic_load(&j.runs[i]) != 1)
                return 0;
        if (atomic_load(&j.max_thread) >= limit)
            return 0;
    }
    return 1;
}

typedef struct handle_job {
    dsri_pool *pool;
    int limit;
    int ok;
} handle_job;

static void *run_handle(void *arg)
{
    handle_job *h = arg;
    h->ok = run_counted(h->pool, 2000, h->limit);
    return NULL;
}

static void test_internal_pool(void)
{
    dsri_workers *w;
    CHECK(dsri_workers_new(4, 20, &w) == DSR1_OK, "last error: %s", dsr1_last_error());
    CHECK(dsri_workers_threads(w) == 4, "last error: %s", dsr1_last_error());
    dsri_pool *a = NULL, *b = NULL;
    CHECK(dsri_pool_on(w, 2, &a) == DSR1_OK && dsri_pool_on(w, 0, &b) == DSR1_OK, "last error: %s", dsr1_last_error());
    dsri_workers_release(w); /* the handles keep the workers */
    CHECK(dsri_pool_threads(a) == 4 && dsri_pool_active_threads(a) == 2, "last error: %s", dsr1_last_error());
    CHECK(dsri_pool_active_threads(b) == 4, "last error: %s", dsr1_last_error());
    CHECK(run_counted(a, 500, 2), "last error: %s", dsr1_last_error());
    CHECK(run_counted(b, 500, 4), "last error: %s", dsr1_last_error());
    dsri_pool_set_threads(b, 3);
    CHECK(run_counted(b, 500, 3), "last error: %s", dsr1_last_error());
    dsri_pool_set_threads(b, 99); /* clamped */
    CHECK(dsri_pool_active_threads(b) == 4, "last error: %s", dsr1_last_error());
    /* two handles from two threads: the one that finds the workers busy runs
     * its tasks itself */
    handle_job ha = {a, 2, 0}, hb = {b, 4, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_handle, &ha);
    pthread_create(&tb, NULL, run_handle, &hb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(ha.ok && hb.ok, "last error: %s", dsr1_last_error());
    dsri_pool *a2;
    CHECK(dsri_pool_acquire(a, 7, &a2) == DSR1_OK && a2 == a, "last error: %s", dsr1_last_error());
    dsri_pool_free(a);
    CHECK(run_counted(a2, 10, 2), "a handle with one reference left");
    dsri_pool_free(a2);
    dsri_pool_free(b);
    /* no spinning at all */
    CHECK(dsri_workers_new(3, 0, &w) == DSR1_OK, "last error: %s", dsr1_last_error());
    CHECK(dsri_pool_on(w, 0, &a) == DSR1_OK, "last error: %s", dsr1_last_error());
    dsri_workers_release(w);
    CHECK(run_counted(a, 300, 3), "last error: %s", dsr1_last_error());
    dsri_pool_free(a);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const dsr1_token prompt[8] = {295, 1, 2, 3, 4, 5, 6, 7};

/* The last logits of the prompt then 3 single tokens (decode) on ctx. */
static int eval_all(dsr1_context *ctx, float *logits, int n_vocab)
{
    dsr1_context_reset(ctx);
    if (dsr1_eval(ctx, prompt, 8, 0, 0) != DSR1_OK)
        return 0;
    for (int i = 0; i < 3; i++)
        if (dsr1_eval(ctx, &prompt[i], 1, 8 + i, 0) != DSR1_OK)
            return 0;
    memcpy(logits, dsr1_logits(ctx, -1), (size_t)n_vocab * sizeof *logits);
    return 1;
}

typedef struct ctx_job {
    dsr1_context *ctx;
    int n_vocab;
    const float *want;
    int ok;
} ctx_job;

static void *run_ctx(void *arg)
{
    ctx_job *j = arg;
    float got[1024];
    j->ok = 1;
    for (int r = 0; r < 10 && j->ok; r++)
        j->ok = eval_all(j->ctx, got, j->n_vocab) && memcmp(got, j->want, (size_t)j->n_vocab * sizeof *got) == 0;
    return NULL;
}

static void test_model(const char *path)
{
    dsr1_model *m;
    CHECK(dsr1_model_load(path, NULL, &m) == DSR1_OK, "last error: %s", dsr1_last_error());
    if (!m)
        return;
    const int n_vocab = dsr1_model_n_vocab(m);
    CHECK(n_vocab <= 1024, "last error: %s", dsr1_last_error());
    float one[1024], two[1024], got[1024];

    /* set_threads: 1 and 2 threads of one context give the same bits */
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.n_threads = 2;
    dsr1_context *ctx;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_n_threads(ctx) == 2, "last error: %s", dsr1_last_error());
    CHECK(eval_all(ctx, two, n_vocab), "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_set_threads(ctx, 1) == DSR1_OK && dsr1_context_n_threads(ctx) == 1, "last error: %s", dsr1_last_error());
    CHECK(eval_all(ctx, one, n_vocab), "last error: %s", dsr1_last_error());
    CHECK(memcmp(one, two, (size_t)n_vocab * sizeof *one) == 0, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_set_threads(ctx, 3) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
    CHECK(strstr(dsr1_last_error(), "1 to 2") != NULL, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_set_threads(ctx, 0) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_set_threads(NULL, 1) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_n_threads(ctx) == 1, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_set_threads(ctx, 2) == DSR1_OK, "last error: %s", dsr1_last_error());
    CHECK(eval_all(ctx, got, n_vocab) && memcmp(got, two, (size_t)n_vocab * sizeof *got) == 0, "last error: %s", dsr1_last_error());
    dsr1_context_free(ctx);

    /* two contexts on one shared pool of 3, the pool released first, used
     * from two threads at once */
    dsr1_threadpool_params tp;
    dsr1_threadpool_params_default(&tp, sizeof tp);
    CHECK(tp.spin_us == 100 && tp.n_threads == 0, "last error: %s", dsr1_last_error());
    tp.n_threads = 3;
    dsr1_threadpool *pool;
    CHECK(dsr1_threadpool_new(&tp, &pool) == DSR1_OK, "last error: %s", dsr1_last_error());
    CHECK(dsr1_threadpool_n_threads(pool) == 3, "last error: %s", dsr1_last_error());
    cp.threadpool = pool;
    cp.n_threads = 0; /* all of the pool's */
    dsr1_context *a, *b;
    CHECK(dsr1_context_new(m, &cp, &a) == DSR1_OK, "last error: %s", dsr1_last_error());
    cp.n_threads = 2;
    CHECK(dsr1_context_new(m, &cp, &b) == DSR1_OK, "last error: %s", dsr1_last_error());
    dsr1_threadpool_free(pool);
    if (a && b) {
        CHECK(dsr1_context_n_threads(a) == 3 && dsr1_context_n_threads(b) == 2, "last error: %s", dsr1_last_error());
        CHECK(dsr1_context_set_threads(b, 3) == DSR1_OK, "up to the pool size: %s", dsr1_last_error());
        CHECK(dsr1_context_set_threads(b, 4) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
        ctx_job ja = {a, n_vocab, one, 0}, jb = {b, n_vocab, one, 0};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, run_ctx, &ja);
        pthread_create(&tb, NULL, run_ctx, &jb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        CHECK(ja.ok && jb.ok, "last error: %s", dsr1_last_error());
        /* idle: the workers spin at most 100 us, then sleep */
        double c0 = cpu_seconds();
        nanosleep(&(struct timespec){0, 300000000L}, NULL);
        double idle = cpu_seconds() - c0;
        CHECK(idle < 0.03, "an idle pool used %.3f s of CPU in 0.3 s", idle);
    }
    dsr1_context_free(a);
    dsr1_context_free(b);
    dsr1_model_free(m);
}

static void test_pool_arguments(void)
{
    dsr1_threadpool *pool = (dsr1_threadpool *)&pool;
    dsr1_threadpool_params tp;
    dsr1_threadpool_params_default(&tp, sizeof tp);
    tp.spin_us = -1;
    CHECK(dsr1_threadpool_new(&tp, &pool) == DSR1_ERR_INVALID_ARGUMENT && pool == NULL, "last error: %s", dsr1_last_error());
    CHECK(strstr(dsr1_last_error(), "spin_us") != NULL, "last error: %s", dsr1_last_error());
    tp.spin_us = 0;
    tp.n_threads = -2;
    CHECK(dsr1_threadpool_new(&tp, &pool) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
    tp.size = 0;
    CHECK(dsr1_threadpool_new(&tp, &pool) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
    CHECK(dsr1_threadpool_new(NULL, NULL) == DSR1_ERR_INVALID_ARGUMENT, "last error: %s", dsr1_last_error());
    CHECK(dsr1_threadpool_new(NULL, &pool) == DSR1_OK && dsr1_threadpool_n_threads(pool) >= 1, "last error: %s", dsr1_last_error());
    dsr1_threadpool_free(pool);
    dsr1_threadpool_free(NULL);
    CHECK(dsr1_threadpool_n_threads(NULL) == 0, "last error: %s", dsr1_last_error());
    CHECK(dsr1_context_n_threads(NULL) == 0, "last error: %s", dsr1_last_error());
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    char path[1024];
    test_internal_pool();
    test_pool_arguments();
    snprintf(path, sizeof path, "%s/models/qwen2-q8_0.gguf", dir);
    test_model(path);
    snprintf(path, sizeof path, "%s/models/deepseek2-q4_k_m.gguf", dir);
    test_model(path);
    return check_summary("threadpool");
}
