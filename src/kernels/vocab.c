/* vocab.c: the vocabulary projection fused with the token cross-entropy, in chunks of
 * rows so that a (tokens x vocab) logits matrix never exists whole; its gradient is made
 * in the same pass. Rows of a chunk are spread over the thread pool. */
#include <math.h>

#include "tutor/kernels.h"

void logsumexp_row(const real *logits, int V, double *max_out, double *lse_out) {
    real mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if (logits[v] > mx) mx = logits[v];
    double s = 0;
    for (int v = 0; v < V; v++) s += REAL_EXP(logits[v] - mx);
    *max_out = mx;
    *lse_out = mx + log(s);
}

enum { MAX_PARTS = 64 };

typedef struct {
    real *chunk;
    const int *labels;
    int V;
    double eps, grad_scale;
    int grad;
    double part_loss[MAX_PARTS];
    long part_count[MAX_PARTS];
} XentJob;

static void xent_rows(int begin, int end, int part, void *arg) {
    XentJob *j = arg;
    int V = j->V;
    double eps = j->eps, total = 0;
    long counted = 0;
    for (int r = begin; r < end; r++) {
        real *lg = j->chunk + (long)r * V;
        int y = j->labels[r];
        if (y == -100) {
            if (j->grad)
                for (int v = 0; v < V; v++) lg[v] = 0;
            continue;
        }
        double mx, lse;
        logsumexp_row(lg, V, &mx, &lse);
        double loss = lse - lg[y];
        if (eps > 0) {
            double mean_logit = 0;
            for (int v = 0; v < V; v++) mean_logit += lg[v];
            mean_logit /= V;
            loss = (1 - eps) * loss + eps * (lse - mean_logit);
        }
        total += loss;
        counted++;
        if (j->grad) {
            real gs = (real)j->grad_scale, shift = (real)lse, off = (real)(j->grad_scale * eps / V);
            for (int v = 0; v < V; v++) lg[v] = gs * REAL_EXP(lg[v] - shift) - off;
            lg[y] -= (real)(j->grad_scale * (1 - eps));
        }
    }
    j->part_loss[part] += total;
    j->part_count[part] += counted;
}

double vocab_xent(const real *x, const real *w, const real *bias, const int *labels, int N, int C,
                  int V, double label_smoothing, double grad_scale, real *dx, real *dw, real *dbias,
                  real *chunk, int chunk_rows, long *n_counted) {
    // x (N,C), w (V,C), bias (V), labels (N), chunk (chunk_rows, V)
    XentJob j = {.chunk = chunk, .V = V, .eps = label_smoothing, .grad_scale = grad_scale, .grad = dx != NULL};
    for (int r0 = 0; r0 < N; r0 += chunk_rows) {
        int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
        int any = 0;
        for (int r = 0; r < R; r++) any |= labels[r0 + r] != -100;
        if (!any) continue;
        linear_forward(chunk, V, x + (long)r0 * C, w, bias, R, C, V, W_OUT_IN);
        j.labels = labels + r0;
        tt_parallel_range(R, xent_rows, &j);
        if (dx) linear_backward(dx + (long)r0 * C, dw, dbias, chunk, V, x + (long)r0 * C, w, R, C, V, W_OUT_IN);
    }
    double total = 0;
    long counted = 0;
    for (int p = 0; p < MAX_PARTS; p++) total += j.part_loss[p], counted += j.part_count[p];
    if (n_counted) *n_counted = counted;
    return total;
}
