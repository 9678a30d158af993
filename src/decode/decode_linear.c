/* decode_linear.c: y = x W + b for the few rows of a decoding step. OpenBLAS's sgemm packs
 * the whole weight matrix on every call, which for a handful of rows costs as much as the
 * product itself (measured: 40% of a decoding step); these kernels stream each weight once,
 * straight from its stored layout, reusing it across the rows while it sits in L1. Large row
 * counts still go to gemm. Columns are split over the worker pool. */
#include <string.h>

#include "decode_internal.h"

/* C11 mode turns off multiply-add contraction; these loops are made of them. */
#pragma GCC optimize("fp-contract=fast")

#if !REAL_IS_DOUBLE
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4))); /* unaligned load/store */

static inline v8 load8(const float *p) { return *(const v8u *)p; }
static inline float hsum8(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

typedef struct {
    float *out;
    const float *x, *w, *b;
    int ldo, M, K, N;
} SmallJob;

/* W stored [N, K] (nn.Linear): out[m][n] = b[n] + x[m] . w[n]. Blocks of 4 weight rows by
 * 2 input rows; K tail and odd rows handled one by one. */
static void small_nt(int begin, int end, int part, void *arg) {
    const SmallJob *j = arg;
    int K = j->K, K8 = K & ~7, M = j->M;
    int n0 = begin * 4, n1 = end * 4 < j->N ? end * 4 : j->N;
    for (int n = n0; n < n1; n += 4) {
        int nw = n1 - n < 4 ? n1 - n : 4;
        const float *w[4];
        for (int q = 0; q < 4; q++) w[q] = j->w + (long)(n + (q < nw ? q : 0)) * K;
        for (int m = 0; m < M; m += 2) {
            int two = m + 1 < M;
            const float *x0 = j->x + (long)m * K, *x1 = two ? x0 + K : x0;
            v8 a00 = {0}, a01 = {0}, a02 = {0}, a03 = {0}, a10 = {0}, a11 = {0}, a12 = {0}, a13 = {0};
            for (int k = 0; k < K8; k += 8) {
                v8 u = load8(x0 + k), v = load8(x1 + k);
                v8 w0 = load8(w[0] + k), w1 = load8(w[1] + k), w2 = load8(w[2] + k), w3 = load8(w[3] + k);
                a00 += u * w0, a01 += u * w1, a02 += u * w2, a03 += u * w3;
                a10 += v * w0, a11 += v * w1, a12 += v * w2, a13 += v * w3;
            }
            float s[2][4] = {{hsum8(a00), hsum8(a01), hsum8(a02), hsum8(a03)},
                             {hsum8(a10), hsum8(a11), hsum8(a12), hsum8(a13)}};
            for (int k = K8; k < K; k++)
                for (int q = 0; q < 4; q++) s[0][q] += x0[k] * w[q][k], s[1][q] += x1[k] * w[q][k];
            for (int r = 0; r < 1 + two; r++) {
                float *o = j->out + (long)(m + r) * j->ldo + n;
                for (int q = 0; q < nw; q++) o[q] = s[r][q] + (j->b ? j->b[n + q] : 0);
            }
        }
    }
}

/* W stored [K, N] (GPT-2's Conv1D): out[m] = b + sum_k x[m][k] w[k], walking W row by row
 * (a contiguous stream) and accumulating each row's column range in L1. */
static void small_nn(int begin, int end, int part, void *arg) {
    const SmallJob *j = arg;
    int K = j->K, N = j->N, M = j->M;
    int c0 = begin * 32, c1 = end * 32 < N ? end * 32 : N;
    for (int m = 0; m < M; m++) {
        float *o = j->out + (long)m * j->ldo;
        for (int c = c0; c < c1; c++) o[c] = j->b ? j->b[c] : 0;
    }
    for (int k = 0; k < K; k++) {
        const float *restrict wk = j->w + (long)k * N;
        for (int m = 0; m < M; m++) {
            float xv = j->x[(long)m * K + k];
            float *restrict o = j->out + (long)m * j->ldo;
            for (int c = c0; c < c1; c++) o[c] += xv * wk[c];
        }
    }
}

#endif

/* Rows up to which the streaming kernels beat sgemm (measured on the reference machine with
 * the benchmark's shapes, d_model 256, FFN 1024, vocabulary 8000: 2-4x faster at 1-4 rows,
 * even at 8-16, sgemm ahead from 16). */
#define DECODE_LINEAR_MAX_ROWS 8

void decode_linear(real *out, int ldo, const real *inp, const real *w, const real *b, int M, int K, int N,
                   WeightLayout layout) {
#if REAL_IS_DOUBLE
    linear_forward(out, ldo, inp, w, b, M, K, N, layout);
#else
    if (M > DECODE_LINEAR_MAX_ROWS) {
        linear_forward(out, ldo, inp, w, b, M, K, N, layout);
        return;
    }
    SmallJob j = {out, inp, w, b, ldo, M, K, N};
    if (layout == W_OUT_IN) {
        int blocks = (N + 3) / 4;
        tt_parallel_range_work(blocks, 2.0 * M * N * K, small_nt, &j);
    } else {
        int blocks = (N + 31) / 32;
        tt_parallel_range_work(blocks, 2.0 * M * N * K, small_nn, &j);
    }
#endif
}
