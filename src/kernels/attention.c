/* attention.c: scaled dot-product attention for many heads: self (with causal mask),
 * cross, padding masks on keys, dropout on the weights. Scores and weighted sums are BLAS
 * products per (sequence, head); the attention weights are kept for backward. */
#include <math.h>

#include "tutor/kernels.h"

static void masked_softmax_row(real *row, int Tk, const int *key_mask, int limit) {
    /* limit: keys [0, limit) may be attended (causal); key_mask further removes padding. */
    double mx = -INFINITY;
    for (int j = 0; j < limit; j++)
        if (!key_mask || key_mask[j])
            if (row[j] > mx) mx = row[j];
    if (mx == -INFINITY) {
        for (int j = 0; j < Tk; j++) row[j] = 0;
        return;
    }
    double sum = 0;
    for (int j = 0; j < Tk; j++) {
        if (j < limit && (!key_mask || key_mask[j])) {
            double e = exp(row[j] - mx);
            row[j] = (real)e;
            sum += e;
        } else {
            row[j] = 0;
        }
    }
    real inv = (real)(1.0 / sum);
    for (int j = 0; j < limit; j++) row[j] *= inv;
}

void attention_forward(real *out, real *probs, const real *q, int ldq, const real *k, int ldk,
                       const real *v, int ldv, const int *key_mask, int B, int Tq, int Tk, int H,
                       int C, int causal, real scale, const AttnDropout *drop) {
    // q (B,Tq,ldq), k (B,Tk,ldk), v (B,Tk,ldv), probs (B,H,Tq,Tk), out (B,Tq,C)
    int D = C / H;
    int dropping = drop && drop->p > 0;
    for (int b = 0; b < B; b++) {
        const int *km = key_mask ? key_mask + (long)b * Tk : NULL;
        for (int h = 0; h < H; h++) {
            long off = ((long)b * H + h) * Tq * Tk;
            real *P = probs + off;
            const real *qb = q + (long)b * Tq * ldq + h * D;
            const real *kb = k + (long)b * Tk * ldk + h * D;
            const real *vb = v + (long)b * Tk * ldv + h * D;
            gemm(0, 1, Tq, Tk, D, scale, qb, ldq, kb, ldk, 0, P, Tk);
            for (int t = 0; t < Tq; t++)
                masked_softmax_row(P + (long)t * Tk, Tk, km, causal ? t + 1 : Tk);
            const real *Pv = P;
            if (dropping) {
                dropout_forward(drop->probs_drop + off, drop->mask + off, P, (long)Tq * Tk, drop->p,
                                drop->rng);
                Pv = drop->probs_drop + off;
            }
            gemm(0, 0, Tq, D, Tk, 1, Pv, Tk, vb, ldv, 0, out + (long)b * Tq * C + h * D, C);
        }
    }
}

void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *probs,
                        const real *q, int ldq, const real *k, int ldk, const real *v, int ldv,
                        int B, int Tq, int Tk, int H, int C, real scale, const AttnDropout *drop,
                        real *scratch) {
    int D = C / H;
    int dropping = drop && drop->p > 0;
    long TT = (long)Tq * Tk;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            long off = ((long)b * H + h) * TT;
            const real *P = probs + off;
            const real *Pv = dropping ? drop->probs_drop + off : P;
            const real *qb = q + (long)b * Tq * ldq + h * D;
            const real *kb = k + (long)b * Tk * ldk + h * D;
            const real *vb = v + (long)b * Tk * ldv + h * D;
            const real *dob = dout + (long)b * Tq * C + h * D;
            real *dS = scratch;
            // dPv = dO V^T; through dropout to dP
            if (dropping) {
                real *dPv = scratch + TT;
                gemm(0, 1, Tq, Tk, D, 1, dob, C, vb, ldv, 0, dPv, Tk);
                for (long i = 0; i < TT; i++) dS[i] = 0;
                dropout_backward(dS, drop->mask + off, dPv, TT, drop->p);
            } else {
                gemm(0, 1, Tq, Tk, D, 1, dob, C, vb, ldv, 0, dS, Tk);
            }
            for (int t = 0; t < Tq; t++) {
                real *ds = dS + (long)t * Tk;
                const real *p = P + (long)t * Tk;
                double dot = 0;
                for (int j = 0; j < Tk; j++) dot += (double)ds[j] * p[j];
                for (int j = 0; j < Tk; j++) ds[j] = p[j] * (real)(ds[j] - dot) * scale;
            }
            gemm(0, 0, Tq, D, Tk, 1, dS, Tk, kb, ldk, 1, dq + (long)b * Tq * ldq + h * D, ldq);
            gemm(1, 0, Tk, D, Tq, 1, dS, Tk, qb, ldq, 1, dk + (long)b * Tk * ldk + h * D, ldk);
            gemm(1, 0, Tk, D, Tq, 1, Pv, Tk, dob, C, 1, dv + (long)b * Tk * ldv + h * D, ldv);
        }
    }
}
