/* layernorm.c: LayerNorm over the last dimension, statistics in double so that the float
 * build matches PyTorch closely and the double build is exact enough for finite
 * differences. Rows (and, for the weight gradient, columns) are spread over the pool. */
#include <math.h>

#include "tutor/kernels.h"

typedef struct {
    real *out, *mean, *rstd, *dinp, *dw, *db;
    const real *inp, *w, *b, *dout, *cmean, *crstd;
    int N, C;
    double eps;
} LnJob;

static void ln_forward_rows(int begin, int end, int part, void *arg) {
    const LnJob *j = arg;
    int C = j->C;
    for (int n = begin; n < end; n++) {
        const real *x = j->inp + (long)n * C;
        /* the sums in eight double lanes (a serial double sum is a chain of dependent adds,
         * several cycles an element; lanes vectorise), then the lanes in a fixed order */
        double lm[8] = {0}, lv[8] = {0};
        int C8 = C & ~7;
        for (int i = 0; i < C8; i += 8)
            for (int q = 0; q < 8; q++) lm[q] += x[i + q];
        double m = ((lm[0] + lm[4]) + (lm[1] + lm[5])) + ((lm[2] + lm[6]) + (lm[3] + lm[7]));
        for (int i = C8; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C8; i += 8)
            for (int q = 0; q < 8; q++) {
                double d = x[i + q] - m;
                lv[q] += d * d;
            }
        double v = ((lv[0] + lv[4]) + (lv[1] + lv[5])) + ((lv[2] + lv[6]) + (lv[3] + lv[7]));
        for (int i = C8; i < C; i++) {
            double d = x[i] - m;
            v += d * d;
        }
        v /= C;
        double s = 1.0 / sqrt(v + j->eps);
        real *o = j->out + (long)n * C;
        real rm = (real)m, rs = (real)s;
#if REAL_IS_DOUBLE
        for (int i = 0; i < C; i++) o[i] = ((x[i] - m) * s) * j->w[i] + j->b[i];
#else
        for (int i = 0; i < C; i++) o[i] = ((x[i] - rm) * rs) * j->w[i] + j->b[i];
#endif
        if (j->mean) j->mean[n] = rm;
        if (j->rstd) j->rstd[n] = rs;
    }
}

void layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w,
                       const real *b, int N, int C, double eps) {
    // inp, out are (N,C); w, b are (C); mean, rstd are (N)
    LnJob j = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b, .N = N, .C = C, .eps = eps};
    tt_parallel_range_work(N, 8.0 * N * C, ln_forward_rows, &j);
}

static void ln_backward_rows(int begin, int end, int part, void *arg) {
    const LnJob *j = arg;
    int C = j->C;
    for (int n = begin; n < end; n++) {
        const real *x = j->inp + (long)n * C, *d = j->dout + (long)n * C;
        double m = j->cmean[n], s = j->crstd[n];
        double dnorm_mean = 0, dnorm_norm_mean = 0;
        for (int i = 0; i < C; i++) {
            double xhat = (x[i] - m) * s;
            double dn = (double)j->w[i] * d[i];
            dnorm_mean += dn;
            dnorm_norm_mean += dn * xhat;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        real *dx = j->dinp + (long)n * C;
        for (int i = 0; i < C; i++) {
            double xhat = (x[i] - m) * s;
            double dn = (double)j->w[i] * d[i];
            dx[i] += (real)((dn - dnorm_mean - xhat * dnorm_norm_mean) * s);
        }
    }
}

static void ln_backward_cols(int begin, int end, int part, void *arg) {
    const LnJob *j = arg;
    int C = j->C;
    for (int n = 0; n < j->N; n++) {
        const real *x = j->inp + (long)n * C, *d = j->dout + (long)n * C;
        real m = j->cmean[n], s = j->crstd[n];
        for (int i = begin; i < end; i++) {
            j->db[i] += d[i];
            j->dw[i] += (x[i] - m) * s * d[i];
        }
    }
}

void layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp,
                        const real *w, const real *mean, const real *rstd, int N, int C) {
    LnJob j = {.dinp = dinp, .dw = dw, .db = db, .inp = inp, .w = w, .dout = dout, .cmean = mean,
               .crstd = rstd, .N = N, .C = C};
    tt_parallel_range(N, ln_backward_rows, &j);
    tt_parallel_range(C, ln_backward_cols, &j);
}
