/* linear.c: y = x W + b for both weight layouts Hugging Face uses (nn.Linear [OC, C] and
 * GPT-2's Conv1D [C, OC]), forward and backward, on whole batches of tokens. */
#include "tutor/kernels.h"

void linear_forward(real *out, int ldo, const real *inp, const real *w, const real *b, int N, int C,
                    int OC, WeightLayout layout) {
    // inp is (N,C), w is (OC,C) or (C,OC), out is (N,ldo)
    if (b) {
        for (int n = 0; n < N; n++) {
            real *o = out + (long)n * ldo;
            for (int j = 0; j < OC; j++) o[j] = b[j];
        }
    }
    if (layout == W_OUT_IN)
        gemm(0, 1, N, OC, C, 1, inp, C, w, C, b ? 1 : 0, out, ldo);
    else
        gemm(0, 0, N, OC, C, 1, inp, C, w, OC, b ? 1 : 0, out, ldo);
}

static void linear_backward_beta(real *dinp, real dinp_beta, real *dw, real *db, const real *dout, int ldd,
                                 const real *inp, const real *w, int N, int C, int OC, WeightLayout layout) {
    // dout is (N,ldd) cols [0,OC); dinp (N,C) = dinp_beta * dinp + dout W; dw += dout^T inp
    if (dinp) {
        if (layout == W_OUT_IN)
            gemm(0, 0, N, C, OC, 1, dout, ldd, w, C, dinp_beta, dinp, C);
        else
            gemm(0, 1, N, C, OC, 1, dout, ldd, w, OC, dinp_beta, dinp, C);
    }
    if (dw) {
        if (layout == W_OUT_IN)
            gemm(1, 0, OC, C, N, 1, dout, ldd, inp, C, 1, dw, C);
        else
            gemm(1, 0, C, OC, N, 1, inp, C, dout, ldd, 1, dw, OC);
    }
    if (db) {
        for (int n = 0; n < N; n++) {
            const real *d = dout + (long)n * ldd;
            for (int j = 0; j < OC; j++) db[j] += d[j];
        }
    }
}

void linear_backward(real *dinp, real *dw, real *db, const real *dout, int ldd, const real *inp,
                     const real *w, int N, int C, int OC, WeightLayout layout) {
    linear_backward_beta(dinp, 1, dw, db, dout, ldd, inp, w, N, C, OC, layout);
}

void linear_backward_set(real *dinp, real *dw, real *db, const real *dout, int ldd, const real *inp,
                         const real *w, int N, int C, int OC, WeightLayout layout) {
    linear_backward_beta(dinp, 0, dw, db, dout, ldd, inp, w, N, C, OC, layout);
}
