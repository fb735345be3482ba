/* A fixed pool of worker threads running index ranges (thread_pool.c). */
#ifndef MOELAT_THREAD_POOL_H
#define MOELAT_THREAD_POOL_H

typedef struct ml_thread_pool ml_thread_pool;

/* n_threads workers (at least 1); NULL when out of memory or threads. */
ml_thread_pool *ml_pool_create(int n_threads);
void ml_pool_destroy(ml_thread_pool *pool);
int ml_pool_size(const ml_thread_pool *pool);
/* Runs fn(ctx, i, worker) for i in [0, n) and returns when all are done. */
void ml_pool_run(ml_thread_pool *pool, int n, void (*fn)(void *ctx, int i, int worker), void *ctx);

#endif
