/* objectives.c: the per-token divergences of word-level distillation. Each is a loss L(p, q)
 * between the teacher's distribution p and the student's q (both at temperature tau) and its
 * gradient dL/dq; the gradient with respect to the student's logits follows for all of them
 * from the softmax Jacobian, dL/dz_k = q_k (g_k - sum_j q_j g_j) / tau. Adding an objective is
 * one case below (its loss and g) and its test. Everything is computed in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/distill.h"

static const char *const KIND_NAMES[KD_N_KINDS] = {"fkl", "rkl", "jsd", "tvd", "skl", "srkl"};

void kd_objective_default(KdObjective *o) {
    o->kind = KD_FKL;
    o->tau = 1.0;
    o->beta = 0.5;
    o->skew = 0.1;
    o->top_p = 1.0;
}

int kd_kind_parse(const char *name) {
    for (int k = 0; k < KD_N_KINDS; k++)
        if (!strcmp(name, KIND_NAMES[k])) return k;
    return -1;
}

const char *kd_kind_name(KdKind k) { return k >= 0 && k < KD_N_KINDS ? KIND_NAMES[k] : "?"; }

int kd_objective_check(const KdObjective *o) {
    if (o->kind < 0 || o->kind >= KD_N_KINDS) return tt_err("unknown KD objective %d", (int)o->kind);
    if (!(o->tau > 0 && o->tau <= 100)) return tt_err("KD temperature %g is outside (0, 100]", o->tau);
    if (!(o->beta >= 0 && o->beta <= 1)) return tt_err("JSD beta %g is outside [0, 1]", o->beta);
    if (!(o->skew >= 0 && o->skew < 1)) return tt_err("skew %g is outside [0, 1)", o->skew);
    if (!(o->top_p > 0 && o->top_p <= 1)) return tt_err("teacher top-p %g is outside (0, 1]", o->top_p);
    int needs_logp = o->kind == KD_RKL || (o->kind == KD_JSD && o->beta == 1);
    if (o->top_p < 1 && needs_logp)
        return tt_err("teacher top-p truncation leaves p = 0 where the student has mass: reverse KL would be "
                      "infinite; use fkl, jsd (beta < 1), tvd, skl or srkl with --teacher-top-p");
    return 0;
}

size_t kd_scratch_doubles(int V) { return 5 * (size_t)V; }

/* log p = log_softmax(x / tau) (the kernel's) and p. */
static void log_softmax_tau(const real *x, int V, double tau, double *logp, double *p) {
    softmax_row_both(x, V, tau, logp, p);
}

static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const double *p = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (p[i] != p[j]) return p[i] > p[j] ? -1 : 1;
    return i - j;
}

/* Keeps the smallest set of most probable tokens whose mass reaches top_p (HF's top-p rule:
 * the token that crosses the threshold is kept), renormalised; the others get p = 0.
 * order: V ints of scratch. */
static void nucleus(double *p, double *logp, int V, double top_p, int *order) {
    for (int v = 0; v < V; v++) order[v] = v;
    qsort_r(order, (size_t)V, sizeof(int), by_prob_desc, p);
    double mass = 0;
    int kept = 0;
    while (kept < V && mass < top_p) mass += p[order[kept++]];
    double lm = log(mass);
    for (int r = 0; r < V; r++) {
        int v = order[r];
        if (r < kept) {
            p[v] /= mass;
            logp[v] -= lm;
        } else {
            p[v] = 0;
            logp[v] = -INFINITY;
        }
    }
}

/* x log(x / y) with 0 log 0 = 0 */
static inline double xlogxy(double x, double logx, double logy) { return x > 0 ? x * (logx - logy) : 0; }

double kd_token(const KdObjective *o, const real *teacher, const real *student, int V, double *scratch,
                real *grad, double scale) {
    double *lp = scratch, *p = scratch + V, *lq = scratch + 2 * (size_t)V, *q = scratch + 3 * (size_t)V;
    double *g = scratch + 4 * (size_t)V;
    double tau = o->tau;
    log_softmax_tau(teacher, V, tau, lp, p);
    log_softmax_tau(student, V, tau, lq, q);
    if (o->top_p < 1) nucleus(p, lp, V, o->top_p, (int *)g);
    KdKind kind = o->kind;
    if (kind == KD_JSD && o->beta == 0) kind = KD_FKL;
    if (kind == KD_JSD && o->beta == 1) kind = KD_RKL;
    double loss = 0;
    int direct = 0; /* the gradient wrt logits is written directly (forward KL) */
    switch (kind) {
    case KD_FKL:
        for (int v = 0; v < V; v++) loss += xlogxy(p[v], lp[v], lq[v]);
        direct = 1;
        break;
    case KD_RKL:
        for (int v = 0; v < V; v++) {
            loss += xlogxy(q[v], lq[v], lp[v]);
            g[v] = lq[v] - lp[v];
        }
        break;
    case KD_JSD: {
        double b = o->beta;
        for (int v = 0; v < V; v++) {
            double m = b * p[v] + (1 - b) * q[v];
            double lm = m > 0 ? log(m) : -INFINITY;
            loss += b * xlogxy(p[v], lp[v], lm) + (1 - b) * xlogxy(q[v], lq[v], lm);
            g[v] = q[v] > 0 ? (1 - b) * (lq[v] - lm) : 0;
        }
        break;
    }
    case KD_TVD:
        for (int v = 0; v < V; v++) {
            double d = q[v] - p[v];
            loss += 0.5 * fabs(d);
            g[v] = d > 0 ? 0.5 : (d < 0 ? -0.5 : 0);
        }
        break;
    case KD_SKL: {
        double a = o->skew;
        for (int v = 0; v < V; v++) {
            double m = a * p[v] + (1 - a) * q[v];
            double lm = log(m);
            loss += xlogxy(p[v], lp[v], lm);
            g[v] = p[v] > 0 ? -(1 - a) * p[v] / m : 0;
        }
        break;
    }
    case KD_SRKL: {
        double a = o->skew;
        for (int v = 0; v < V; v++) {
            double m = a * q[v] + (1 - a) * p[v];
            double lm = log(m);
            loss += xlogxy(q[v], lq[v], lm);
            g[v] = q[v] > 0 ? lq[v] - lm + 1 - a * q[v] / m : 0;
        }
        break;
    }
    default:
        return NAN;
    }
    double t2 = tau * tau;
    if (grad) {
        /* d(tau^2 L)/dz = tau^2 * (1/tau) * J^T g = tau * q * (g - <q, g>) */
        double c = scale * tau;
        if (direct) {
            for (int v = 0; v < V; v++) grad[v] = (real)(c * (q[v] - p[v]));
        } else {
            double qg = 0;
            for (int v = 0; v < V; v++) qg += q[v] * g[v];
            for (int v = 0; v < V; v++) grad[v] = (real)(c * q[v] * (g[v] - qg));
        }
    }
    return t2 * loss;
}

double kd_token_sparse(const int32_t *ids, const float *logp, int k, const real *s, int V, real *g, double scale,
                       double *scratch) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) mx = s[v] > mx ? s[v] : mx;
    for (int v = 0; v < V; v++) sum += exp((double)s[v] - mx);
    double lse = mx + log(sum);
    double p_top = 0, q_top = 0, loss = 0;
    for (int j = 0; j < k; j++) {
        double p = exp((double)logp[j]), lq = (double)s[ids[j]] - lse, q = exp(lq);
        p_top += p;
        q_top += q;
        loss += p * ((double)logp[j] - lq);
        /* the top-k part of the gradient, kept aside: g may be s itself */
        if (g) scratch[j] = scale * (q - p);
    }
    /* the bucket: what the top-k leave (none when k covers the vocabulary) */
    double p_rest = k < V && 1 - p_top > 0 ? 1 - p_top : 0, q_rest = 1 - q_top > 1e-300 ? 1 - q_top : 1e-300;
    if (p_rest > 0) loss += p_rest * (log(p_rest) - log(q_rest));
    if (g) {
        /* dL/ds_v = q_v - p_v on the top-k; q_v (1 - p_rest / q_rest) elsewhere */
        double f = 1 - p_rest / q_rest;
        for (int v = 0; v < V; v++) g[v] = (real)(scale * exp((double)s[v] - lse) * f);
        for (int j = 0; j < k; j++) g[ids[j]] = (real)scratch[j];
    }
    return loss;
}
