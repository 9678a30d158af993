/* attention.c: scaled dot-product attention for many heads: self (with causal mask),
 * cross, padding masks on keys, dropout on the weights. Work is split over (sequence, head)
 * pairs across the thread pool; scores and weighted sums are single-threaded BLAS products
 * inside each pair. The attention weights are kept for backward. */
#include <math.h>

#include "fastmath.h"
#include "tutor/kernels.h"

static void masked_softmax_row(real *restrict row, int Tk, const int *restrict key_mask, int limit) {
    /* limit: keys [0, limit) may be attended (causal); key_mask further removes padding. */
#if REAL_IS_DOUBLE
    real mx = -INFINITY;
    for (int j = 0; j < limit; j++)
        if ((!key_mask || key_mask[j]) && row[j] > mx) mx = row[j];
#else
    real mx = tt_maxf_masked(row, key_mask, limit);
#endif
    if (mx == -INFINITY) {
        for (int j = 0; j < Tk; j++) row[j] = 0;
        return;
    }
    /* exp and the masking in one vectorised pass, with the sum */
    real inv = (real)(1.0 / tt_exp_shift_sum(row, limit, mx, key_mask));
    for (int j = limit; j < Tk; j++) row[j] = 0;
    for (int j = 0; j < limit; j++) row[j] *= inv;
}

typedef struct {
    real *out, *probs, *dq, *dk, *dv, *scratch;
    const real *q, *k, *v, *dout;
    const int *key_mask;
    int ldq, ldk, ldv, B, Tq, Tk, H, C, causal;
    real scale;
    const AttnDropout *drop;
} AttnJob;

static void attention_forward_range(int begin, int end, int part, void *arg) {
    const AttnJob *a = arg;
    int D = a->C / a->H, Tq = a->Tq, Tk = a->Tk;
    for (int bh = begin; bh < end; bh++) {
        int b = bh / a->H, h = bh % a->H;
        const int *km = a->key_mask ? a->key_mask + (long)b * Tk : NULL;
        real *P = a->probs + (long)bh * Tq * Tk;
        const real *qb = a->q + (long)b * Tq * a->ldq + h * D;
        const real *kb = a->k + (long)b * Tk * a->ldk + h * D;
        const real *vb = a->v + (long)b * Tk * a->ldv + h * D;
        gemm(0, 1, Tq, Tk, D, a->scale, qb, a->ldq, kb, a->ldk, 0, P, Tk);
        for (int t = 0; t < Tq; t++) masked_softmax_row(P + (long)t * Tk, Tk, km, a->causal ? t + 1 : Tk);
        gemm(0, 0, Tq, D, Tk, 1, P, Tk, vb, a->ldv, 0, a->out + (long)b * Tq * a->C + h * D, a->C);
    }
}

static void attention_scores_range(int begin, int end, int part, void *arg) {
    const AttnJob *a = arg;
    int D = a->C / a->H, Tq = a->Tq, Tk = a->Tk;
    for (int bh = begin; bh < end; bh++) {
        int b = bh / a->H, h = bh % a->H;
        const int *km = a->key_mask ? a->key_mask + (long)b * Tk : NULL;
        real *P = a->probs + (long)bh * Tq * Tk;
        gemm(0, 1, Tq, Tk, D, a->scale, a->q + (long)b * Tq * a->ldq + h * D, a->ldq,
             a->k + (long)b * Tk * a->ldk + h * D, a->ldk, 0, P, Tk);
        for (int t = 0; t < Tq; t++) masked_softmax_row(P + (long)t * Tk, Tk, km, a->causal ? t + 1 : Tk);
    }
}

static void attention_values_range(int begin, int end, int part, void *arg) {
    const AttnJob *a = arg;
    int D = a->C / a->H, Tq = a->Tq, Tk = a->Tk;
    for (int bh = begin; bh < end; bh++) {
        int b = bh / a->H, h = bh % a->H;
        const real *Pv = a->drop->probs_drop + (long)bh * Tq * Tk;
        gemm(0, 0, Tq, D, Tk, 1, Pv, Tk, a->v + (long)b * Tk * a->ldv + h * D, a->ldv, 0,
             a->out + (long)b * Tq * a->C + h * D, a->C);
    }
}

void attention_forward(real *out, real *probs, const real *q, int ldq, const real *k, int ldk,
                       const real *v, int ldv, const int *key_mask, int B, int Tq, int Tk, int H,
                       int C, int causal, real scale, const AttnDropout *drop) {
    // q (B,Tq,ldq), k (B,Tk,ldk), v (B,Tk,ldv), probs (B,H,Tq,Tk), out (B,Tq,C)
    AttnJob a = {.out = out, .probs = probs, .q = q, .k = k, .v = v, .key_mask = key_mask, .ldq = ldq,
                 .ldk = ldk, .ldv = ldv, .B = B, .Tq = Tq, .Tk = Tk, .H = H, .C = C, .causal = causal,
                 .scale = scale, .drop = drop};
    if (drop && drop->p > 0) {
        /* scores and softmax in parallel, the dropout mask serially (one RNG stream), then
         * the weighted sums in parallel */
        tt_parallel_range(B * H, attention_scores_range, &a);
        dropout_forward(drop->probs_drop, drop->mask, probs, (long)B * H * Tq * Tk, drop->p, drop->rng);
        tt_parallel_range(B * H, attention_values_range, &a);
    } else {
        tt_parallel_range(B * H, attention_forward_range, &a);
    }
}

static void attention_backward_range(int begin, int end, int part, void *arg) {
    const AttnJob *a = arg;
    int D = a->C / a->H, Tq = a->Tq, Tk = a->Tk, C = a->C;
    int dropping = a->drop && a->drop->p > 0;
    long TT = (long)Tq * Tk;
    real *dS = a->scratch + (long)part * 2 * TT;
    for (int bh = begin; bh < end; bh++) {
        int b = bh / a->H, h = bh % a->H;
        long off = (long)bh * TT;
        const real *P = a->probs + off;
        const real *Pv = dropping ? a->drop->probs_drop + off : P;
        const real *qb = a->q + (long)b * Tq * a->ldq + h * D;
        const real *kb = a->k + (long)b * Tk * a->ldk + h * D;
        const real *vb = a->v + (long)b * Tk * a->ldv + h * D;
        const real *dob = a->dout + (long)b * Tq * C + h * D;
        // dPv = dO V^T; through dropout to dP
        if (dropping) {
            real *dPv = dS + TT;
            gemm(0, 1, Tq, Tk, D, 1, dob, C, vb, a->ldv, 0, dPv, Tk);
            for (long i = 0; i < TT; i++) dS[i] = 0;
            dropout_backward(dS, a->drop->mask + off, dPv, TT, a->drop->p);
        } else {
            gemm(0, 1, Tq, Tk, D, 1, dob, C, vb, a->ldv, 0, dS, Tk);
        }
        for (int t = 0; t < Tq; t++) {
            real *ds = dS + (long)t * Tk;
            const real *p = P + (long)t * Tk;
            double dot = 0;
            for (int j = 0; j < Tk; j++) dot += (double)ds[j] * p[j];
            real rdot = (real)dot;
            for (int j = 0; j < Tk; j++) ds[j] = p[j] * (ds[j] - rdot) * a->scale;
        }
        gemm(0, 0, Tq, D, Tk, 1, dS, Tk, kb, a->ldk, 0, a->dq + (long)b * Tq * a->ldq + h * D, a->ldq);
        gemm(1, 0, Tk, D, Tq, 1, dS, Tk, qb, a->ldq, 0, a->dk + (long)b * Tk * a->ldk + h * D, a->ldk);
        gemm(1, 0, Tk, D, Tq, 1, Pv, Tk, dob, C, 0, a->dv + (long)b * Tk * a->ldv + h * D, a->ldv);
    }
}

void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *probs,
                        const real *q, int ldq, const real *k, int ldk, const real *v, int ldv,
                        int B, int Tq, int Tk, int H, int C, real scale, const AttnDropout *drop,
                        real *scratch) {
    AttnJob a = {.probs = (real *)probs, .dq = dq, .dk = dk, .dv = dv, .scratch = scratch, .q = q, .k = k,
                 .v = v, .dout = dout, .ldq = ldq, .ldk = ldk, .ldv = ldv, .B = B, .Tq = Tq, .Tk = Tk, .H = H,
                 .C = C, .scale = scale, .drop = drop};
    tt_parallel_range(B * H, attention_backward_range, &a);
}
