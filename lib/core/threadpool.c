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
 * spin is bounded in time (spin_ns), so an idle pool sleeps soon after its
 * last job and never burns a core between forward passes.
 *
 * A job names how many threads take part (the running handle's limit, at
 * most its task count): the generation word carries that number in its low
 * bits, so a worker reads the job's number and its participant count in one
 * atomic load and a worker outside the count never touches the job.
 */
#define PARTICIPANT_BITS 11 /* DSRI_POOL_MAX_THREADS fits */
#define PARTICIPANT_MASK ((1ul << PARTICIPANT_BITS) - 1)

typedef struct worker {
    dsri_workers *set;
    int index;
    pthread_t thread;
} worker;

struct dsr1_threadpool {
    int n_threads;           /* counting the caller's slot 0 */
    long spin_ns;
    atomic_int refs;         /* the creator and every handle */
    worker *workers;         /* n_threads - 1 */
    pthread_mutex_t run;     /* held by the handle whose job runs */
    pthread_mutex_t lock;    /* guards the sleeping (condition variable) paths */
    pthread_cond_t wake;     /* a new job or shutdown */
    pthread_cond_t done;     /* the last worker finished */
    int sleepers;            /* workers blocked on wake (under lock) */
    atomic_ulong generation; /* job number << PARTICIPANT_BITS | participants */
    atomic_int shutdown;
    atomic_int busy;         /* workers still in the current job */
    /* the current job, written before generation is bumped (release) and
     * read after it is seen (acquire) */
    dsri_task_fn task;
    void *arg;
    int n_tasks;
    atomic_int next;         /* next task index to take */
};

struct dsri_pool {
    dsri_workers *set;
    int refs;       /* the context and its backend; one thread uses a handle */
    int max;        /* the set's threads */
    int active;     /* threads a run uses */
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
static int spin_while_equal(const dsri_workers *w, unsigned long unlike)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned k = 1;; k++) {
        if (atomic_load_explicit(&w->generation, memory_order_acquire) != unlike || atomic_load(&w->shutdown))
            return 1;
        cpu_relax();
        if ((k & 63) == 0 && elapsed_ns(&start) >= w->spin_ns)
            return 0;
    }
}

static void work(dsri_workers *w, int thread)
{
    for (;;) {
        int i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n_tasks)
            return;
        w->task(w->arg, i, thread);
    }
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    dsri_workers *w = me->set;
    unsigned long seen = 0;
    for (;;) {
        if (w->spin_ns == 0 || !spin_while_equal(w, seen)) {
            pthread_mutex_lock(&w->lock);
            w->sleepers++;
            while (!atomic_load(&w->shutdown) && atomic_load(&w->generation) == seen)
                pthread_cond_wait(&w->wake, &w->lock);
            w->sleepers--;
            pthread_mutex_unlock(&w->lock);
        }
        if (atomic_load(&w->shutdown))
            break;
        seen = atomic_load_explicit(&w->generation, memory_order_acquire);
        if ((int)(seen & PARTICIPANT_MASK) <= me->index)
            continue; /* not in this job */
        work(w, me->index);
        if (atomic_fetch_sub(&w->busy, 1) == 1) {
            /* the caller may be blocked on done: signal under the lock so
             * the wake-up cannot fall between its check and its wait */
            pthread_mutex_lock(&w->lock);
            pthread_cond_signal(&w->done);
            pthread_mutex_unlock(&w->lock);
        }
    }
    return NULL;
}

static void workers_destroy(dsri_workers *w)
{
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->shutdown, 1);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads - 1; i++)
        pthread_join(w->workers[i].thread, NULL);
    pthread_mutex_destroy(&w->run);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    dsri_free(w->workers);
    dsri_free(w);
}

dsr1_status dsri_workers_new(int n_threads, int spin_us, dsri_workers **out)
{
    *out = NULL;
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > DSRI_POOL_MAX_THREADS)
        n_threads = DSRI_POOL_MAX_THREADS;
    dsri_workers *w = dsri_calloc(1, sizeof *w);
    if (!w)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
    w->n_threads = 1;
    w->spin_ns = spin_us > 0 ? (long)spin_us * 1000L : 0;
    atomic_init(&w->refs, 1);
    pthread_mutex_init(&w->run, NULL);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    atomic_init(&w->generation, 0);
    atomic_init(&w->shutdown, 0);
    atomic_init(&w->busy, 0);
    atomic_init(&w->next, 0);
    if (n_threads > 1) {
        w->workers = dsri_calloc((size_t)n_threads - 1, sizeof *w->workers);
        if (!w->workers) {
            workers_destroy(w);
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            w->workers[i].set = w;
            w->workers[i].index = i + 1;
            if (pthread_create(&w->workers[i].thread, NULL, worker_main, &w->workers[i]) != 0)
                break; /* run with the threads we got */
            w->n_threads++;
        }
    }
    *out = w;
    return DSR1_OK;
}

void dsri_workers_release(dsri_workers *w)
{
    if (w && atomic_fetch_sub(&w->refs, 1) == 1)
        workers_destroy(w);
}

int dsri_workers_threads(const dsri_workers *w)
{
    return w ? w->n_threads : 1;
}

dsr1_status dsri_pool_on(dsri_workers *w, int n_threads, dsri_pool **out)
{
    *out = NULL;
    dsri_pool *p = dsri_calloc(1, sizeof *p);
    if (!p)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
    atomic_fetch_add(&w->refs, 1);
    p->set = w;
    p->refs = 1;
    p->max = w->n_threads;
    p->active = p->max;
    if (n_threads > 0)
        dsri_pool_set_threads(p, n_threads);
    *out = p;
    return DSR1_OK;
}

dsr1_status dsri_pool_new(int n_threads, dsri_pool **out)
{
    dsri_workers *w;
    *out = NULL;
    dsr1_status st = dsri_workers_new(n_threads, DSRI_POOL_SPIN_US_DEFAULT, &w);
    if (st)
        return st;
    st = dsri_pool_on(w, 0, out);
    dsri_workers_release(w); /* the handle holds it now */
    return st;
}

dsr1_status dsri_pool_acquire(dsri_pool *shared, int n_threads, dsri_pool **out)
{
    if (!shared)
        return dsri_pool_new(n_threads, out);
    shared->refs++;
    *out = shared;
    return DSR1_OK;
}

void dsri_pool_free(dsri_pool *p)
{
    if (!p || --p->refs > 0)
        return;
    dsri_workers_release(p->set);
    dsri_free(p);
}

int dsri_pool_threads(const dsri_pool *p)
{
    return p ? p->max : 1;
}

void dsri_pool_set_threads(dsri_pool *p, int n_threads)
{
    p->active = n_threads < 1 ? 1 : n_threads > p->max ? p->max : n_threads;
}

int dsri_pool_active_threads(const dsri_pool *p)
{
    return p ? p->active : 1;
}

void dsri_pool_run(dsri_pool *p, dsri_task_fn task, void *arg, int n_tasks)
{
    if (n_tasks <= 0)
        return;
    dsri_workers *w = p->set;
    const int k = p->active < n_tasks ? p->active : n_tasks; /* threads taking part */
    /* one thread, or the workers busy with another handle's job: run here */
    if (k == 1 || pthread_mutex_trylock(&w->run) != 0) {
        for (int i = 0; i < n_tasks; i++)
            task(arg, i, 0);
        return;
    }
    /* every participant checks in for every job (busy), so none can still be
     * in the previous job while this one's fields are written */
    pthread_mutex_lock(&w->lock);
    w->task = task;
    w->arg = arg;
    w->n_tasks = n_tasks;
    atomic_store(&w->next, 0);
    atomic_store(&w->busy, k - 1);
    unsigned long gen = atomic_load(&w->generation);
    gen = ((gen >> PARTICIPANT_BITS) + 1) << PARTICIPANT_BITS | (unsigned long)k;
    atomic_store_explicit(&w->generation, gen, memory_order_release);
    if (w->sleepers > 0)
        pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    work(w, 0);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned i = 1; atomic_load(&w->busy) > 0; i++) {
        cpu_relax();
        if ((i & 63) == 0 && elapsed_ns(&start) >= w->spin_ns) {
            pthread_mutex_lock(&w->lock);
            while (atomic_load(&w->busy) > 0)
                pthread_cond_wait(&w->done, &w->lock);
            pthread_mutex_unlock(&w->lock);
            break;
        }
    }
    pthread_mutex_unlock(&w->run);
}
