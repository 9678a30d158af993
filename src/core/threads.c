/* threads.c: the thread count shared by OpenBLAS and tutor's own loops, and a parallel
 * for with a static partition (results never depend on scheduling). */
#include "tutor/core.h"

#include <pthread.h>
#include <time.h>

void openblas_set_num_threads(int n);

static int n_threads = 1;

void tt_set_threads(int n) {
    if (n < 1) n = 1;
    n_threads = n;
    openblas_set_num_threads(n);
}

int tt_threads(void) { return n_threads; }

typedef struct {
    int begin, end;
    void (*fn)(int, void *);
    void *ctx;
} Chunk;

static void *run_chunk(void *arg) {
    Chunk *c = arg;
    for (int i = c->begin; i < c->end; i++) c->fn(i, c->ctx);
    return NULL;
}

void tt_parallel_for(int n, void (*fn)(int i, void *ctx), void *ctx) {
    int t = n_threads < n ? n_threads : n;
    if (t <= 1) {
        for (int i = 0; i < n; i++) fn(i, ctx);
        return;
    }
    enum { MAX_T = 64 };
    if (t > MAX_T) t = MAX_T;
    pthread_t th[MAX_T];
    Chunk ch[MAX_T];
    for (int k = 0; k < t; k++) {
        ch[k] = (Chunk){(int)((long)n * k / t), (int)((long)n * (k + 1) / t), fn, ctx};
    }
    int started[MAX_T] = {0};
    for (int k = 1; k < t; k++) started[k] = pthread_create(&th[k], NULL, run_chunk, &ch[k]) == 0;
    run_chunk(&ch[0]);
    for (int k = 1; k < t; k++) {
        if (started[k]) pthread_join(th[k], NULL);
        else run_chunk(&ch[k]);
    }
}

double tt_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
