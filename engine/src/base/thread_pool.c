/* A fixed pool of worker threads running index ranges. Work is handed out
 * by an atomic counter, so the assignment of items to threads varies, but
 * each item's result does not depend on which thread computes it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/thread_pool.h"

struct ml_thread_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    /* current job */
    void (*fn)(void *, int, int);
    void *ctx;
    int n_items;
    atomic_int next_item;
    int active;        /* workers still inside the current job */
    uint64_t job_id;
    int shutdown;
};

typedef struct worker_arg {
    ml_thread_pool *pool;
    int id;
} worker_arg;

static void run_items(ml_thread_pool *p, int worker) {
    for (;;) {
        int i = atomic_fetch_add(&p->next_item, 1);
        if (i >= p->n_items)
            break;
        p->fn(p->ctx, i, worker);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    ml_thread_pool *p = wa->pool;
    int id = wa->id;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->job_id == seen)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->shutdown)
            break;
        seen = p->job_id;
        pthread_mutex_unlock(&p->mu);
        run_items(p, id);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ml_thread_pool *ml_pool_create(int n_threads) {
    if (n_threads < 1)
        n_threads = 1;
    ml_thread_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    /* Worker 0 is the calling thread; the pool starts n_threads - 1 more. */
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->pool = p, wa->id = i, pthread_create(&p->threads[i], NULL, worker_main, wa)) != 0) {
            free(wa);
            p->n_threads = i;
            break;
        }
    }
    return p;
}

void ml_pool_destroy(ml_thread_pool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p);
}

int ml_pool_size(const ml_thread_pool *p) { return p->n_threads; }

void ml_pool_run(ml_thread_pool *p, int n, void (*fn)(void *, int, int), void *ctx) {
    if (n <= 0)
        return;
    if (p->n_threads == 1 || n == 1) {
        for (int i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    atomic_store(&p->next_item, 0);
    p->active = p->n_threads - 1;
    p->job_id++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_items(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
