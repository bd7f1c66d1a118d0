/*
 * A small fork-join thread pool (internal). dsri_pool_run() splits n_tasks
 * over the pool's workers and the calling thread and returns when all are
 * done.
 *
 * Two layers: a worker set (the threads; what dsr1_threadpool is) and a pool
 * handle on it (what a context and its backend hold). A handle made by
 * dsri_pool_new() has workers of its own; several handles can share one
 * worker set (dsri_pool_on), each with its own thread limit, which can
 * change between runs (dsri_pool_set_threads). A worker set runs one job at
 * a time: a handle whose run finds the workers busy with another handle's
 * job runs its tasks on the calling thread instead of waiting, so contexts
 * on one pool never wait for each other. Everything is reference counted:
 * a worker set lives until its last handle and its owner are gone.
 */
#ifndef DSRI_THREADPOOL_H
#define DSRI_THREADPOOL_H

#include "dsr1.h"

typedef struct dsr1_threadpool dsri_workers; /* the public pool is a worker set */
typedef struct dsri_pool dsri_pool;

/* task(arg, i, thread) for i in [0, n_tasks); thread in [0, dsri_pool_threads)
 * names the executing thread so tasks can use per-thread scratch. */
typedef void (*dsri_task_fn)(void *arg, int i, int thread);

/* How long a worker waits busily for the next job (and the caller for the
 * workers to finish) before it blocks, by default: long enough to span the
 * gaps between the ops of one forward pass, short enough that an idle pool
 * gives its cores back at once (a game's frame loop loses 0.1 ms per token). */
#define DSRI_POOL_SPIN_US_DEFAULT 100
#define DSRI_POOL_MAX_THREADS 1024

/* n_threads (1..DSRI_POOL_MAX_THREADS) counts the caller: 1 means no
 * extra threads at all. spin_us >= 0. Fewer threads than asked when the
 * system refuses some (dsri_workers_threads says how many). */
dsr1_status dsri_workers_new(int n_threads, int spin_us, dsri_workers **out);
void dsri_workers_release(dsri_workers *w); /* drops the creator's reference */
int dsri_workers_threads(const dsri_workers *w);

/* A handle with a worker set of its own, n_threads as above. */
dsr1_status dsri_pool_new(int n_threads, dsri_pool **out);
/* A handle on w, limited to n_threads (0: all of w's). */
dsr1_status dsri_pool_on(dsri_workers *w, int n_threads, dsri_pool **out);
/* Another reference to shared (when not NULL; freed by as many
 * dsri_pool_free), else a new handle as dsri_pool_new(n_threads). */
dsr1_status dsri_pool_acquire(dsri_pool *shared, int n_threads, dsri_pool **out);
void dsri_pool_free(dsri_pool *p); /* drops one reference; NULL is allowed */

/* The most threads a run can use: the bound of the `thread` argument (what
 * per-thread scratch is sized by); fixed for the handle's life. */
int dsri_pool_threads(const dsri_pool *p);
/* The threads runs use from now on: 1..dsri_pool_threads(p). */
void dsri_pool_set_threads(dsri_pool *p, int n_threads);
int dsri_pool_active_threads(const dsri_pool *p);

void dsri_pool_run(dsri_pool *p, dsri_task_fn task, void *arg, int n_tasks);

#endif
