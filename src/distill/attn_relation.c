/* attn_relation.c: attention-relation distillation (MiniLM v2, Wang et al. 2021). For the
 * last layer's encoder self-, decoder self- and cross-attention, and for each of its queries,
 * keys and values X, the relation of a sequence's positions is R = softmax(X X^T / sqrt(d))
 * per relation head (the vectors split into A heads, A the teacher's head count, so a
 * student of another width or head count re-splits its own). The loss is the mean over
 * relations of KL(R_teacher || R_student), each averaged over heads and valid query rows.
 * Queries and keys attend to the valid positions of their sequence (source padding masked;
 * the decoder's positions causally). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/distill.h"

typedef struct {
    const real *xt, *xs;  /* teacher / student rows, with strides */
    int ldt, lds, dt, ds; /* head dims */
    int L, causal;
    const int *valid;     /* (B, L) 1 = a real position */
    real *gs;             /* student gradient rows (stride gld), NULL: no gradient */
    int gld;
} Rel;

/* One relation over the whole batch; returns the summed KL and counts the rows. */
static double relation(const Rel *r, int B, int A, double grad_scale_per_row, long *rows, double *st, double *ss,
                       int pass) {
    double kl_sum = 0;
    int L = r->L;
    double it = 1 / sqrt((double)r->dt), is = 1 / sqrt((double)r->ds);
    for (int b = 0; b < B; b++)
        for (int a = 0; a < A; a++) {
            const int *valid = r->valid + (long)b * L;
            for (int i = 0; i < L; i++) {
                if (!valid[i]) continue;
                const real *ti = r->xt + ((long)b * L + i) * r->ldt + (long)a * r->dt;
                const real *si = r->xs + ((long)b * L + i) * r->lds + (long)a * r->ds;
                int jn = r->causal ? i + 1 : L;
                double mt = -INFINITY, ms = -INFINITY;
                for (int j = 0; j < jn; j++) {
                    if (!valid[j]) {
                        st[j] = ss[j] = -INFINITY;
                        continue;
                    }
                    const real *tj = r->xt + ((long)b * L + j) * r->ldt + (long)a * r->dt;
                    const real *sj = r->xs + ((long)b * L + j) * r->lds + (long)a * r->ds;
                    double dt = 0, ds = 0;
                    for (int e = 0; e < r->dt; e++) dt += (double)ti[e] * tj[e];
                    for (int e = 0; e < r->ds; e++) ds += (double)si[e] * sj[e];
                    st[j] = dt * it, ss[j] = ds * is;
                    if (st[j] > mt) mt = st[j];
                    if (ss[j] > ms) ms = ss[j];
                }
                double zt = 0, zs = 0;
                for (int j = 0; j < jn; j++)
                    if (valid[j]) zt += exp(st[j] - mt), zs += exp(ss[j] - ms);
                double lzt = mt + log(zt), lzs = ms + log(zs), kl = 0;
                for (int j = 0; j < jn; j++) {
                    if (!valid[j]) continue;
                    double lpt = st[j] - lzt, lps = ss[j] - lzs, pt = exp(lpt);
                    kl += pt * (lpt - lps);
                    st[j] = pt;       /* teacher relation */
                    ss[j] = exp(lps); /* student relation */
                }
                kl_sum += kl;
                (*rows)++;
                if (pass == 1 && r->gs) {
                    /* d KL / d logit_ij = R_s - R_t; logit_ij = <s_i, s_j> / sqrt(d) */
                    real *gi = r->gs + ((long)b * L + i) * r->gld + (long)a * r->ds;
                    for (int j = 0; j < jn; j++) {
                        if (!valid[j]) continue;
                        double d = (ss[j] - st[j]) * is * grad_scale_per_row;
                        if (d == 0) continue;
                        const real *sj = r->xs + ((long)b * L + j) * r->lds + (long)a * r->ds;
                        real *gj = r->gs + ((long)b * L + j) * r->gld + (long)a * r->ds;
                        for (int e = 0; e < r->ds; e++) {
                            gi[e] += (real)(d * sj[e]);
                            gj[e] += (real)(d * si[e]);
                        }
                    }
                }
            }
        }
    return kl_sum;
}

double attention_relation_kd(Model *teacher, Model *student, const Batch *b, int relation_heads, int grad,
                             double scale, int *n_relations) {
    const ModelConfig *ct = &teacher->cfg;
    int encdec = model_is_encdec(ct);
    int A = relation_heads > 0 ? relation_heads : ct->dec_heads;
    if (ct->d_model % A || student->cfg.d_model % A) {
        tt_err("attention relations: %d relation heads do not divide the widths %d (teacher) and %d (student)", A,
               ct->d_model, student->cfg.d_model);
        return NAN;
    }
    int B = b->B, S = encdec ? b->S : 0, T = b->T;
    int *vs = malloc(sizeof(int) * (size_t)B * (S > 0 ? S : 1)), *vt = malloc(sizeof(int) * (size_t)B * T);
    int Lmax = S > T ? S : T;
    double *st = malloc(sizeof(double) * (size_t)Lmax), *ss = malloc(sizeof(double) * (size_t)Lmax);
    if (!vs || !vt || !st || !ss) {
        free(vs), free(vt), free(st), free(ss);
        tt_err("out of memory");
        return NAN;
    }
    for (long i = 0; i < (long)B * S; i++) vs[i] = b->src_mask ? b->src_mask[i] != 0 : 1;
    for (long i = 0; i < (long)B * T; i++)
        vt[i] = encdec ? b->labels[i] != -100 : (b->tgt_mask ? b->tgt_mask[i] != 0 : 1);
    int kinds[3] = {0, 1, 2}, n_kinds = encdec ? 3 : 1;
    if (!encdec) kinds[0] = 1;
    /* first pass: losses and row counts; second: gradients with each relation's 1/rows */
    double total = 0;
    int n_rel = 0;
    for (int pass = 0; pass < (grad ? 2 : 1); pass++) {
        total = 0;
        n_rel = 0;
        for (int kk = 0; kk < n_kinds; kk++) {
            int which = kinds[kk];
            AttnQKV qt, qs;
            AttnQKVGrad g = {0};
            if (model_attention_qkv(teacher, which, &qt) || model_attention_qkv(student, which, &qs)) {
                total = NAN;
                goto out;
            }
            if (pass == 1 && model_attention_qkv_grad(student, which, 1, &g)) {
                total = NAN;
                goto out;
            }
            for (int x = 0; x < 3; x++) {
                Rel r;
                int keys = x > 0; /* k, v: the key positions */
                r.L = which == 0 ? S : (which == 2 && keys ? S : T);
                r.causal = which == 1 || (which == 2 && !keys);
                r.valid = which == 0 || (which == 2 && keys) ? vs : vt;
                r.xt = x == 0 ? qt.q : x == 1 ? qt.k : qt.v;
                r.xs = x == 0 ? qs.q : x == 1 ? qs.k : qs.v;
                r.ldt = x == 0 ? qt.ldq : qt.ldkv;
                r.lds = x == 0 ? qs.ldq : qs.ldkv;
                r.dt = ct->d_model / A, r.ds = student->cfg.d_model / A;
                r.gs = pass == 1 ? (x == 0 ? g.dq : x == 1 ? g.dk : g.dv) : NULL;
                r.gld = x == 0 ? g.ldq : g.ldkv;
                long rows = 0;
                /* count first (pass 0), then the gradient with the mean's weight */
                double kl = relation(&r, B, A, 0, &rows, st, ss, 0);
                long rows2 = 0;
                if (pass == 1 && rows) relation(&r, B, A, scale / (double)rows, &rows2, st, ss, 1);
                if (rows) {
                    total += kl / (double)rows;
                    n_rel++;
                }
            }
        }
        if (pass == 0 && n_rel) scale /= n_rel;
    }
out:
    free(vs), free(vt), free(st), free(ss);
    if (n_relations) *n_relations = n_rel;
    return n_rel ? total / n_rel : total;
}
