/* layernorm.c: LayerNorm over the last dimension, statistics in double so that the float
 * build matches PyTorch closely and the double build is exact enough for finite differences. */
#include <math.h>

#include "tutor/kernels.h"

void layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w,
                       const real *b, int N, int C, double eps) {
    // inp, out are (N,C); w, b are (C); mean, rstd are (N)
    for (int n = 0; n < N; n++) {
        const real *x = inp + (long)n * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C; i++) {
            double d = x[i] - m;
            v += d * d;
        }
        v /= C;
        double s = 1.0 / sqrt(v + eps);
        real *o = out + (long)n * C;
        for (int i = 0; i < C; i++) o[i] = (real)((x[i] - m) * s) * w[i] + b[i];
        if (mean) mean[n] = (real)m;
        if (rstd) rstd[n] = (real)s;
    }
}

void layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp,
                        const real *w, const real *mean, const real *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const real *x = inp + (long)n * C, *d = dout + (long)n * C;
        double m = mean[n], s = rstd[n];
        double dnorm_mean = 0, dnorm_norm_mean = 0;
        for (int i = 0; i < C; i++) {
            double xhat = (x[i] - m) * s;
            double dn = (double)w[i] * d[i];
            dnorm_mean += dn;
            dnorm_norm_mean += dn * xhat;
            db[i] += d[i];
            dw[i] += (real)(xhat * d[i]);
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        real *dx = dinp + (long)n * C;
        for (int i = 0; i < C; i++) {
            double xhat = (x[i] - m) * s;
            double dn = (double)w[i] * d[i];
            dx[i] += (real)((dn - dnorm_mean - xhat * dnorm_norm_mean) * s);
        }
    }
}
