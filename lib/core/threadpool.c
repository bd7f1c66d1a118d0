#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"

/*
 * A forward pass is hundreds of short jobs back to back (a decode step's
 * matmuls take tens of microseconds; an MoE layer runs one job per expert).
 * Waking a worker from a condition variable takes about as long, so a worker
 * that slept after every job arrived too late to take its share (measured:
 * the second thread ran 21% of the tasks of an MoE layer). Both sides
 * therefore spin for a short while first: a worker watches for the next job,
 * the caller for the workers to finish, and only then do they block. The
 * spin is bounded in time, so an idle pool sleeps after SPIN_NS and never
 * burns a core between forward passes.
 */
#define SPIN_NS 200000L /* 200 us */

typedef struct worker {
    dsri_pool *pool;
    int index;
    pthread_t thread;
} worker;

struct dsri_pool {
    int n_threads;
    worker *workers;         /* n_threads - 1 */
    pthread_mutex_t lock;    /* guards the sleeping (condition variable) paths */
    pthread_cond_t wake;     /* a new job or shutdown */
    pthread_cond_t done;     /* the last worker finished */
    int sleepers;            /* workers blocked on wake (under lock) */
    atomic_ulong generation; /* bumped per job; workers spin on it */
    atomic_int shutdown;
    atomic_int busy;         /* workers still in the current job */
    /* the current job, written before generation is bumped (release) and
     * read after it is seen (acquire) */
    dsri_task_fn task;
    void *arg;
    int n_tasks;
    atomic_int next;         /* next task index to take */
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long elapsed_ns(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

/* Spin until *value differs from `unlike` (1) or the spin time is up (0). */
static int spin_while_equal(atomic_ulong *value, unsigned long unlike, atomic_int *shutdown)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned k = 1;; k++) {
        if (atomic_load_explicit(value, memory_order_acquire) != unlike || atomic_load(shutdown))
            return 1;
        cpu_relax();
        if ((k & 63) == 0 && elapsed_ns(&start) > SPIN_NS)
            return 0;
    }
}

static void work(dsri_pool *p, int thread)
{
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_tasks)
            return;
        p->task(p->arg, i, thread);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    dsri_pool *p = w->pool;
    unsigned long seen = 0;
    for (;;) {
        if (!spin_while_equal(&p->generation, seen, &p->shutdown)) {
            pthread_mutex_lock(&p->lock);
            p->sleepers++;
            while (!atomic_load(&p->shutdown) && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->wake, &p->lock);
            p->sleepers--;
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->shutdown))
            break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        work(p, w->index);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            /* the caller may be blocked on done: signal under the lock so
             * the wake-up cannot fall between its check and its wait */
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

dsr1_status dsri_pool_new(int n_threads, dsri_pool **out)
{
    *out = NULL;
    if (n_threads < 1)
        n_threads = 1;
    dsri_pool *p = dsri_calloc(1, sizeof *p);
    if (!p)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
    p->n_threads = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->shutdown, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->next, 0);
    if (n_threads > 1) {
        p->workers = dsri_calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            dsri_pool_free(p);
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].index = i + 1;
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
                break; /* run with the threads we got */
            p->n_threads++;
        }
    }
    *out = p;
    return DSR1_OK;
}

void dsri_pool_free(dsri_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->shutdown, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads - 1; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    dsri_free(p->workers);
    dsri_free(p);
}

int dsri_pool_threads(const dsri_pool *p)
{
    return p ? p->n_threads : 1;
}

void dsri_pool_run(dsri_pool *p, dsri_task_fn task, void *arg, int n_tasks)
{
    if (n_tasks <= 0)
        return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++)
            task(arg, i, 0);
        return;
    }
    /* every worker checks in for every job (busy), so none can still be in
     * the previous job while this one's fields are written */
    pthread_mutex_lock(&p->lock);
    p->task = task;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (p->sleepers > 0)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    work(p, 0);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned k = 1; atomic_load(&p->busy) > 0; k++) {
        cpu_relax();
        if ((k & 63) == 0 && elapsed_ns(&start) > SPIN_NS) {
            pthread_mutex_lock(&p->lock);
            while (atomic_load(&p->busy) > 0)
                pthread_cond_wait(&p->done, &p->lock);
            pthread_mutex_unlock(&p->lock);
            break;
        }
    }
}
