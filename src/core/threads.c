/* threads.c: the thread count shared by OpenBLAS and tutor's own loops, and a persistent
 * worker pool for parallel loops over fixed chunks taken dynamically (results never depend
 * on scheduling, and no thread is created or memory allocated inside a training step). */
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
    int n, n_chunks;
    void (*fn)(int begin, int end, int part, void *ctx);
    void *ctx;
    _Atomic int next_chunk;
    _Atomic int in_region;
} Pool;

static Pool pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .start_cv = PTHREAD_COND_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};

/* Chunks have fixed boundaries (they depend on n and the thread count only); threads take
 * them first come, first served, so a thread the OS sets aside does not hold the others up,
 * and the results do not depend on which thread ran which chunk. */
static void run_chunks(int part) {
    int n = pool.n, n_chunks = pool.n_chunks;
    for (;;) {
        int c = atomic_fetch_add(&pool.next_chunk, 1);
        if (c >= n_chunks) break;
        int begin = (int)((long)n * c / n_chunks), end = (int)((long)n * (c + 1) / n_chunks);
        if (begin < end) pool.fn(begin, end, part, pool.ctx);
    }
}

static void *worker(void *arg) {
    int id = (int)(long)arg; /* 1..n_workers */
    long seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.start_cv, &pool.mu);
        seen = pool.generation;
        pthread_mutex_unlock(&pool.mu);
        if (id < n_threads) run_chunks(id);
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

/* Chunks per thread: enough to even out a thread that is descheduled for a while. */
#define CHUNKS_PER_THREAD 4

void tt_parallel_range(int n, void (*fn)(int begin, int end, int part, void *ctx), void *ctx) {
    int threads = n_threads <= pool.n_workers + 1 ? n_threads : pool.n_workers + 1;
    if (threads <= 1 || n <= 1 || pool.in_region) {
        if (n > 0) fn(0, n, 0, ctx);
        return;
    }
    int n_chunks = threads * CHUNKS_PER_THREAD;
    if (n_chunks > n) n_chunks = n;
    pthread_mutex_lock(&pool.mu);
    pool.in_region = 1;
    pool.n = n;
    pool.n_chunks = n_chunks;
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store(&pool.next_chunk, 0);
    pool.pending = pool.n_workers;
    pool.generation++;
    pthread_cond_broadcast(&pool.start_cv);
    pthread_mutex_unlock(&pool.mu);
    run_chunks(0);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done_cv, &pool.mu);
    pool.in_region = 0;
    pthread_mutex_unlock(&pool.mu);
}

/* below this many operations a region runs inline: waking a worker through the condition
 * variable and waiting for it costs microseconds, the time of about 10^5 operations of
 * these kernels (an estimate, checked by bench/int8-speed at 1 and 2 threads) */
#define TT_PARALLEL_MIN_WORK 131072.0

void tt_parallel_range_work(int n, double work, void (*fn)(int begin, int end, int part, void *ctx), void *ctx) {
    if (work < TT_PARALLEL_MIN_WORK) {
        if (n > 0) fn(0, n, 0, ctx);
        return;
    }
    tt_parallel_range(n, fn, ctx);
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
