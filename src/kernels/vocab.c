/* vocab.c: the vocabulary projection fused with the token cross-entropy, in chunks of
 * rows so that a (tokens x vocab) logits matrix never exists whole; its gradient is made
 * in the same pass. */
#include <math.h>

#include "tutor/kernels.h"

void logsumexp_row(const real *logits, int V, double *max_out, double *lse_out) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if (logits[v] > mx) mx = logits[v];
    double s = 0;
    for (int v = 0; v < V; v++) s += exp(logits[v] - mx);
    *max_out = mx;
    *lse_out = mx + log(s);
}

double vocab_xent(const real *x, const real *w, const real *bias, const int *labels, int N, int C,
                  int V, double label_smoothing, double grad_scale, real *dx, real *dw, real *dbias,
                  real *chunk, int chunk_rows, long *n_counted) {
    // x (N,C), w (V,C), bias (V), labels (N), chunk (chunk_rows, V)
    double total = 0;
    long counted = 0;
    double eps = label_smoothing;
    for (int r0 = 0; r0 < N; r0 += chunk_rows) {
        int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
        int any = 0;
        for (int r = 0; r < R; r++) any |= labels[r0 + r] != -100;
        if (!any) continue;
        linear_forward(chunk, V, x + (long)r0 * C, w, bias, R, C, V, W_OUT_IN);
        for (int r = 0; r < R; r++) {
            real *lg = chunk + (long)r * V;
            int y = labels[r0 + r];
            if (y == -100) {
                if (dx)
                    for (int v = 0; v < V; v++) lg[v] = 0;
                continue;
            }
            double mx, lse;
            logsumexp_row(lg, V, &mx, &lse);
            double nll = lse - lg[y];
            double loss = nll;
            if (eps > 0) {
                double mean_logit = 0;
                for (int v = 0; v < V; v++) mean_logit += lg[v];
                mean_logit /= V;
                loss = (1 - eps) * nll + eps * (lse - mean_logit);
            }
            total += loss;
            counted++;
            if (dx) {
                for (int v = 0; v < V; v++) lg[v] = (real)(grad_scale * (exp(lg[v] - lse) - eps / V));
                lg[y] -= (real)(grad_scale * (1 - eps));
            }
        }
        if (dx) linear_backward(dx + (long)r0 * C, dw, dbias, chunk, V, x + (long)r0 * C, w, R, C, V, W_OUT_IN);
    }
    if (n_counted) *n_counted = counted;
    return total;
}
