/* core.h: what every layer of tutor uses: the one error channel, logging, the seeded RNG,
 * aligned allocation and the floating-point type the numerical code is built with.
 * Errors: a failing function records one message with tt_err() and returns -1 or NULL;
 * the CLI prints it as "tutor: MESSAGE". Messages about a file start with "FILE:LINE: ". */
#ifndef TUTOR_CORE_H
#define TUTOR_CORE_H

#include <stddef.h>
#include <stdint.h>

/* real: the type of parameters, activations and gradients. float normally; double when
 * the library is built with -DTUTOR_REAL_DOUBLE, for finite-difference gradient checks. */
#ifdef TUTOR_REAL_DOUBLE
typedef double real;
#define REAL_IS_DOUBLE 1
#else
typedef float real;
#define REAL_IS_DOUBLE 0
#endif

/* Records an error message (printf format) for this thread; always returns -1. */
int tt_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefixes the current message with more context: "CONTEXT: old message"; returns -1. */
int tt_err_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last message recorded on this thread ("" if none). */
const char *tt_errmsg(void);
void tt_err_clear(void);

/* Logging to stderr. Level: 0 quiet, 1 info (default), 2 debug. */
void tt_log_set_level(int level);
int tt_log_level(void);
void tt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define tt_info(...) tt_log(1, __VA_ARGS__)

/* The one progress display of long work: on a terminal a line redrawn in place (count, bar,
 * rate, ETA, extra), otherwise a log line every 10 s and at the end. */
typedef struct {
    const char *what, *unit;
    int enabled, tty;
    double t0, last_log;
    long last_done, done0;
} TtProgress;
void tt_progress_init(TtProgress *p, const char *what, const char *unit, int enabled);
/* done of total; extra (may be NULL) is appended (a loss, a rate). */
void tt_progress(TtProgress *p, long done, long total, const char *extra);
/* "mm:ss" or "h:mm:ss"; "--:--" when unknown. */
void tt_format_duration(char *buf, size_t n, double s);
#define tt_debug(...) tt_log(2, __VA_ARGS__)

/* Aligned (64-byte) zeroed allocation; NULL with an error on failure. Free with tt_free. */
void *tt_alloc(size_t bytes);
void tt_free(void *p);
/* Bytes currently held by tt_alloc and the number of tt_alloc calls so far: tests use
 * the count to show that a training step allocates nothing. */
size_t tt_alloc_live_bytes(void);
size_t tt_alloc_peak_bytes(void);
uint64_t tt_alloc_count(void);
void tt_alloc_reset_peak(void);

/* RNG: xoshiro256** seeded by splitmix64; reproducible across machines. */
typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r);          /* [0, 1) with 53 bits */
double rng_normal(Rng *r);           /* standard normal (Box-Muller, no caching) */
uint32_t rng_below(Rng *r, uint32_t n); /* uniform in [0, n) without bias */
/* splitmix64 of x: a stateless hash of a counter (a stream index, a batch number) into 64
 * well-mixed bits. */
uint64_t rng_mix64(uint64_t x);
/* FNV-1a over n bytes, continuing from h (start with TT_FNV_OFFSET). */
#define TT_FNV_OFFSET 1469598103934665603ULL
uint64_t tt_fnv1a(uint64_t h, const void *p, size_t n);

/* Threads: the count used by BLAS and by tutor's own parallel loops. */
void tt_set_threads(int n);
int tt_threads(void);
/* Runs fn(i, ctx) for i in [0, n) over tt_threads() threads. */
void tt_parallel_for(int n, void (*fn)(int i, void *ctx), void *ctx);

/* Splits [0, n) into contiguous chunks (boundaries depend only on n and tt_threads()), runs
 * fn(begin, end, part, ctx) for each on the worker pool, threads taking chunks as they come
 * free, and returns when all are done. part < tt_threads() names the thread (for per-thread
 * scratch), not the chunk: results must not depend on it. Nested calls run serially. */
void tt_parallel_range(int n, void (*fn)(int begin, int end, int part, void *ctx), void *ctx);
/* The same, run on the caller's thread when work (an estimate of the whole job's floating
 * point operations) is too small to pay for waking the pool (a few microseconds per region,
 * which many small regions per decoding step add up). Results do not depend on which. */
void tt_parallel_range_work(int n, double work, void (*fn)(int begin, int end, int part, void *ctx), void *ctx);

/* Monotonic clock in seconds. */
double tt_now_s(void);

/* ---- processes of a data-parallel run (core/dist.c; MPI when built with it and run under
 * mpirun, else one process of rank 0) ---- */
int dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
/* Element-wise sums over the ranks, in place (a no-op for one process). 0 or -1. */
int dist_sum_f32(float *buf, size_t n);
int dist_sum_f64(double *buf, size_t n);
/* Rank 0's values to every rank. */
int dist_bcast_f64(double *buf, size_t n);
/* Every rank's n bytes to rank 0, in rank order: *all (malloc'd, on rank 0 only; NULL elsewhere)
 * and, if lens is not NULL, each rank's count. 0 or -1. */
int dist_gather_bytes(const char *buf, size_t n, char **all, size_t **lens);

#endif
