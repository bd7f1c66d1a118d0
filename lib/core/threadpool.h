/*
 * A small fork-join thread pool (internal), one per backend instance, so two
 * contexts never share workers. dsri_pool_run() splits n_tasks over the
 * workers and the calling thread and returns when all are done.
 */
#ifndef DSRI_THREADPOOL_H
#define DSRI_THREADPOOL_H

#include "dsr1.h"

typedef struct dsri_pool dsri_pool;

/* task(arg, i, thread) for i in [0, n_tasks); thread in [0, n_threads) names
 * the executing thread so tasks can use per-thread scratch. */
typedef void (*dsri_task_fn)(void *arg, int i, int thread);

/* n_threads counts the caller: 1 means no extra threads at all. */
dsr1_status dsri_pool_new(int n_threads, dsri_pool **out);
void dsri_pool_free(dsri_pool *p);
int dsri_pool_threads(const dsri_pool *p);
void dsri_pool_run(dsri_pool *p, dsri_task_fn task, void *arg, int n_tasks);

#endif
