/* vocab.c: the vocabulary projection fused with the token cross-entropy, in chunks of
 * rows so that a (tokens x vocab) logits matrix never exists whole; its gradient is made
 * in the same pass. Rows of a chunk are spread over the thread pool. */
#include <math.h>

#include "fastmath.h"
#include "tutor/kernels.h"

void logsumexp_row(const real *logits, int V, double *max_out, double *lse_out) {
    real mx = tt_max_real(logits, V);
    double s = 0;
    for (int v = 0; v < V; v++) s += REAL_EXP(logits[v] - mx);
    *max_out = mx;
    *lse_out = mx + log(s);
}

void log_softmax_row(const real *x, int V, double tau, double *out) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if ((double)x[v] > mx) mx = (double)x[v];
    double s = 0;
    for (int v = 0; v < V; v++) {
        out[v] = ((double)x[v] - mx) / tau;
        s += exp(out[v]);
    }
    double ls = log(s);
    for (int v = 0; v < V; v++) out[v] -= ls;
}

/* Sum in double with eight accumulators, in a fixed order (deterministic). */
static double sum_d(const double *x, int n) {
    double a[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += x[i + k];
    for (; i < n; i++) a[0] += x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

void softmax_row_both(const real *x, int V, double tau, double *logp, double *p) {
    real fmx = tt_max_real(x, V);
    double mx = (double)fmx, itau = 1 / tau;
    /* the exponentials in one vectorisable pass (no reduction in it), the sum after */
    for (int v = 0; v < V; v++) {
        logp[v] = ((double)x[v] - mx) * itau;
        p[v] = fast_exp(logp[v]);
    }
    double s = sum_d(p, V);
    double ls = log(s), inv = 1 / s;
    for (int v = 0; v < V; v++) {
        logp[v] -= ls;
        p[v] *= inv;
    }
}

enum { MAX_CHUNK_ROWS = 1024 };

typedef struct {
    real *chunk;
    const int *labels;
    int V;
    double eps, grad_scale;
    int grad;
    double row_loss[MAX_CHUNK_ROWS]; /* summed in row order afterwards: no dependence on threads */
} XentJob;

/* Sum in double in eight lanes (a fixed order: deterministic). */
static double sum_row(const real *x, int n) { return tt_sum_lanes(x, n); }

static void xent_rows(int begin, int end, int part, void *arg) {
    XentJob *j = arg;
    int V = j->V;
    double eps = j->eps;
    for (int r = begin; r < end; r++) {
        real *restrict lg = j->chunk + (long)r * V;
        int y = j->labels[r];
        j->row_loss[r] = 0;
        if (y == -100) {
            if (j->grad)
                for (int v = 0; v < V; v++) lg[v] = 0;
            continue;
        }
        real mx = tt_max_real(lg, V);
        double mean_logit = eps > 0 ? sum_row(lg, V) / V : 0;
        double logit_y = lg[y];
        /* the row becomes exp(logit - max) in place, then the softmax gradient */
        for (int v = 0; v < V; v++) lg[v] = REAL_EXP(lg[v] - mx);
        double sum = sum_row(lg, V);
        double lse = mx + log(sum);
        double loss = lse - logit_y;
        if (eps > 0) loss = (1 - eps) * loss + eps * (lse - mean_logit);
        j->row_loss[r] = loss;
        if (j->grad) {
            real gs = (real)(j->grad_scale / sum), off = (real)(j->grad_scale * eps / V);
            for (int v = 0; v < V; v++) lg[v] = gs * lg[v] - off;
            lg[y] -= (real)(j->grad_scale * (1 - eps));
        }
    }
}

double vocab_xent(const real *x, const real *w, const real *bias, const int *labels, int N, int C,
                  int V, double label_smoothing, double grad_scale, real *dx, real *dw, real *dbias,
                  real *chunk, int chunk_rows, long *n_counted) {
    // x (N,C), w (V,C), bias (V), labels (N), chunk (chunk_rows, V)
    XentJob j = {.chunk = chunk, .V = V, .eps = label_smoothing, .grad_scale = grad_scale, .grad = dx != NULL};
    double total = 0;
    long counted = 0;
    if (chunk_rows > MAX_CHUNK_ROWS) chunk_rows = MAX_CHUNK_ROWS;
    for (int r0 = 0; r0 < N; r0 += chunk_rows) {
        int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
        int any = 0;
        for (int r = 0; r < R; r++) any |= labels[r0 + r] != -100;
        if (!any) continue;
        linear_forward(chunk, V, x + (long)r0 * C, w, bias, R, C, V, W_OUT_IN);
        j.labels = labels + r0;
        tt_parallel_range(R, xent_rows, &j);
        for (int r = 0; r < R; r++)
            if (labels[r0 + r] != -100) total += j.row_loss[r], counted++;
        if (dx) linear_backward(dx + (long)r0 * C, dw, dbias, chunk, V, x + (long)r0 * C, w, R, C, V, W_OUT_IN);
    }
    if (n_counted) *n_counted = counted;
    return total;
}
