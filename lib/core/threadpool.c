#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>

#include "core/alloc.h"
#include "core/error.h"

typedef struct worker {
    dsri_pool *pool;
    int index;
    pthread_t thread;
} worker;

struct dsri_pool {
    int n_threads;
    worker *workers;         /* n_threads - 1 */
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* a new job or shutdown */
    pthread_cond_t done;     /* the last worker finished */
    unsigned long generation;/* bumped per job */
    int shutdown;
    int busy;                /* workers still in the current job */
    /* the current job */
    dsri_task_fn task;
    void *arg;
    int n_tasks;
    atomic_int next;         /* next task index to take */
};

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
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->shutdown && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->shutdown)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        work(p, w->index);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
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
    p->shutdown = 1;
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
    pthread_mutex_lock(&p->lock);
    p->task = task;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->busy = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    work(p, 0);
    pthread_mutex_lock(&p->lock);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
