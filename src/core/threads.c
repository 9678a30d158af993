/* threads.c: the thread count shared by OpenBLAS and tutor's own loops, and a persistent
 * worker pool for parallel loops with a static partition (results never depend on
 * scheduling, and no thread is created or memory allocated inside a training step). */
#include "tutor/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

void openblas_set_num_threads(int n);

enum { MAX_THREADS = 64 };

static int n_threads = 1;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    pthread_t th[MAX_THREADS];
    int n_workers;         /* threads besides the caller */
    long generation;
    int pending;
    int n;
    void (*fn)(int begin, int end, int part, void *ctx);
    void *ctx;
    int parts;
    _Atomic int in_region;
} Pool;

static Pool pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .start_cv = PTHREAD_COND_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};

static void run_part(int part, int parts, int n, void (*fn)(int, int, int, void *), void *ctx) {
    int begin = (int)((long)n * part / parts), end = (int)((long)n * (part + 1) / parts);
    if (begin < end) fn(begin, end, part, ctx);
}

static void *worker(void *arg) {
    int id = (int)(long)arg; /* 1..n_workers */
    long seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.start_cv, &pool.mu);
        seen = pool.generation;
        int n = pool.n, parts = pool.parts;
        void (*fn)(int, int, int, void *) = pool.fn;
        void *ctx = pool.ctx;
        pthread_mutex_unlock(&pool.mu);
        if (id < parts) run_part(id, parts, n, fn, ctx);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done_cv);
    }
    return NULL;
}

static void pool_grow(int workers) {
    while (pool.n_workers < workers && pool.n_workers < MAX_THREADS - 1) {
        if (pthread_create(&pool.th[pool.n_workers], NULL, worker, (void *)(long)(pool.n_workers + 1)) != 0) break;
        pthread_detach(pool.th[pool.n_workers]);
        pool.n_workers++;
    }
}

void tt_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    n_threads = n;
    /* tutor splits products itself (src/kernels/gemm.c); OpenBLAS stays on one thread. */
    openblas_set_num_threads(1);
    pthread_mutex_lock(&pool.mu);
    pool_grow(n - 1);
    pthread_mutex_unlock(&pool.mu);
}

int tt_threads(void) { return n_threads; }

void tt_parallel_range(int n, void (*fn)(int begin, int end, int part, void *ctx), void *ctx) {
    int parts = n_threads < n ? n_threads : n;
    if (parts > pool.n_workers + 1) parts = pool.n_workers + 1;
    if (parts <= 1 || pool.in_region) {
        if (n > 0) fn(0, n, 0, ctx);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    pool.in_region = 1;
    pool.n = n;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.parts = parts;
    pool.pending = pool.n_workers;
    pool.generation++;
    pthread_cond_broadcast(&pool.start_cv);
    pthread_mutex_unlock(&pool.mu);
    run_part(0, parts, n, fn, ctx);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done_cv, &pool.mu);
    pool.in_region = 0;
    pthread_mutex_unlock(&pool.mu);
}

typedef struct {
    void (*fn)(int, void *);
    void *ctx;
} ForEach;

static void for_each_range(int begin, int end, int part, void *arg) {
    ForEach *f = arg;
    for (int i = begin; i < end; i++) f->fn(i, f->ctx);
}

void tt_parallel_for(int n, void (*fn)(int i, void *ctx), void *ctx) {
    ForEach f = {fn, ctx};
    tt_parallel_range(n, for_each_range, &f);
}

double tt_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
