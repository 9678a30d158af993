/* gelu.c: GELU in both forms Hugging Face uses: exact erf ("gelu", BART/mBART) and the tanh
 * approximation ("gelu_new", GPT-2), elementwise over the thread pool. */
#include <math.h>

#include "fastmath.h"
#include "tutor/kernels.h"

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

#define R_ERF REAL_ERF
#define R_TANH REAL_TANH
#define R_EXP REAL_EXP

static inline real gelu_value(real x, GeluKind kind) {
    if (kind == GELU_ERF) return (real)0.5 * x * ((real)1 + R_ERF(x * (real)INV_SQRT_2));
    return (real)0.5 * x * ((real)1 + R_TANH((real)SQRT_2_OVER_PI * (x + (real)0.044715 * x * x * x)));
}

static inline real gelu_grad(real x, GeluKind kind) {
    if (kind == GELU_ERF) {
        real cdf = (real)0.5 * ((real)1 + R_ERF(x * (real)INV_SQRT_2));
        real pdf = (real)INV_SQRT_2PI * R_EXP((real)-0.5 * x * x);
        return cdf + x * pdf;
    }
    real u = (real)SQRT_2_OVER_PI * (x + (real)0.044715 * x * x * x);
    real t = R_TANH(u);
    real du = (real)SQRT_2_OVER_PI * ((real)1 + (real)3 * (real)0.044715 * x * x);
    return (real)0.5 * ((real)1 + t) + (real)0.5 * x * ((real)1 - t * t) * du;
}

enum { GELU_BLOCK = 4096 };

typedef struct {
    real *out;
    const real *inp, *dout;
    long n;
    GeluKind kind;
    int set; /* backward: overwrite rather than accumulate */
} GeluJob;

static void block_range(const GeluJob *j, int begin, int end, long *lo, long *hi) {
    *lo = (long)begin * GELU_BLOCK;
    *hi = (long)end * GELU_BLOCK;
    if (*hi > j->n) *hi = j->n;
}

/* One loop per kind, on restrict pointers, so that each vectorises. */
static void gelu_forward_range(int begin, int end, int part, void *arg) {
    const GeluJob *j = arg;
    long lo, hi;
    block_range(j, begin, end, &lo, &hi);
    real *restrict out = j->out;
    const real *restrict inp = j->inp;
    if (j->kind == GELU_ERF)
        for (long i = lo; i < hi; i++) out[i] = gelu_value(inp[i], GELU_ERF);
    else
        for (long i = lo; i < hi; i++) out[i] = gelu_value(inp[i], GELU_TANH);
}

static void gelu_backward_range(int begin, int end, int part, void *arg) {
    const GeluJob *j = arg;
    long lo, hi;
    block_range(j, begin, end, &lo, &hi);
    real *restrict dinp = j->out;
    const real *restrict inp = j->inp, *restrict dout = j->dout;
    if (j->set) {
        if (j->kind == GELU_ERF)
            for (long i = lo; i < hi; i++) dinp[i] = gelu_grad(inp[i], GELU_ERF) * dout[i];
        else
            for (long i = lo; i < hi; i++) dinp[i] = gelu_grad(inp[i], GELU_TANH) * dout[i];
    } else {
        if (j->kind == GELU_ERF)
            for (long i = lo; i < hi; i++) dinp[i] += gelu_grad(inp[i], GELU_ERF) * dout[i];
        else
            for (long i = lo; i < hi; i++) dinp[i] += gelu_grad(inp[i], GELU_TANH) * dout[i];
    }
}

static int n_blocks(long n) { return (int)((n + GELU_BLOCK - 1) / GELU_BLOCK); }

void gelu_forward(real *out, const real *inp, long n, GeluKind kind) {
    GeluJob j = {out, inp, NULL, n, kind, 0};
    tt_parallel_range_work(n_blocks(n), 30.0 * (double)n, gelu_forward_range, &j);
}

void gelu_backward(real *dinp, const real *inp, const real *dout, long n, GeluKind kind) {
    GeluJob j = {dinp, inp, dout, n, kind, 0};
    tt_parallel_range(n_blocks(n), gelu_backward_range, &j);
}

void gelu_backward_set(real *dinp, const real *inp, const real *dout, long n, GeluKind kind) {
    GeluJob j = {dinp, inp, dout, n, kind, 1};
    tt_parallel_range(n_blocks(n), gelu_backward_range, &j);
}
