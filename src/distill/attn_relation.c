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

#include <cblas.h>

#include "kernels/fastmath.h"
#include "tutor/distill.h"

typedef struct {
    const real *xt, *xs;  /* teacher / student rows, with strides */
    int ldt, lds, dt, ds; /* head dims */
    int L, causal;
    const int *valid;     /* (B, L) 1 = a real position */
    real *gs;             /* student gradient rows (stride gld), NULL: no gradient */
    int gld;
} Rel;

typedef struct {
    const Rel *r;
    int A;
    double w;       /* gradient weight of one query row's KL */
    double *kl;     /* (B * A) the summed KL of each (sequence, head) */
    double *scratch;
    size_t per_part; /* doubles of scratch per worker */
    int *pos;        /* (parts, L) valid positions */
} RelJob;

/* One (sequence, relation head) pair after another: the valid positions' rows gathered in
 * double, both Gram matrices X X^T by dgemm, each query row's two softmaxes and their KL in
 * double (fast_exp), and the student's gradient dX = (D + D^T) X with D = (R_s - R_t) w /
 * sqrt(d), added to its rows (pairs own disjoint rows and head columns: no races). */
static void relation_range(int begin, int end, int part, void *arg) {
    const RelJob *j = arg;
    const Rel *r = j->r;
    int L = r->L, dt = r->dt, ds = r->ds;
    double *xt = j->scratch + (size_t)part * j->per_part, *xs = xt + (size_t)L * dt, *gt = xs + (size_t)L * ds;
    double *gsm = gt + (size_t)L * L, *dx = gsm + (size_t)L * L;
    int *pos = j->pos + (size_t)part * L;
    double it = 1 / sqrt((double)dt), is = 1 / sqrt((double)ds);
    for (int ba = begin; ba < end; ba++) {
        int b = ba / j->A, a = ba % j->A;
        const int *valid = r->valid + (long)b * L;
        int n = 0;
        for (int i = 0; i < L; i++)
            if (valid[i]) pos[n++] = i;
        j->kl[ba] = 0;
        if (n == 0) continue;
        for (int p = 0; p < n; p++) {
            const real *ti = r->xt + ((long)b * L + pos[p]) * r->ldt + (long)a * dt;
            const real *si = r->xs + ((long)b * L + pos[p]) * r->lds + (long)a * ds;
            for (int e = 0; e < dt; e++) xt[(size_t)p * dt + e] = ti[e];
            for (int e = 0; e < ds; e++) xs[(size_t)p * ds + e] = si[e];
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, dt, it, xt, dt, xt, dt, 0, gt, n);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, ds, is, xs, ds, xs, ds, 0, gsm, n);
        double kl_sum = 0;
        for (int i = 0; i < n; i++) {
            double *st = gt + (size_t)i * n, *ss = gsm + (size_t)i * n;
            int jn = r->causal ? i + 1 : n;
            double mt = -INFINITY, ms = -INFINITY;
            for (int q = 0; q < jn; q++) mt = st[q] > mt ? st[q] : mt, ms = ss[q] > ms ? ss[q] : ms;
            double zt = 0, zs = 0;
            for (int q = 0; q < jn; q++) zt += fast_exp(st[q] - mt), zs += fast_exp(ss[q] - ms);
            double lzt = mt + log(zt), lzs = ms + log(zs), kl = 0;
            for (int q = 0; q < jn; q++) {
                double lpt = st[q] - lzt, lps = ss[q] - lzs, pt = fast_exp(lpt);
                kl += pt * (lpt - lps);
                /* D_iq = (R_s - R_t) w / sqrt(ds); the rest of the row (causal) is 0 */
                ss[q] = (fast_exp(lps) - pt) * is * j->w;
            }
            for (int q = jn; q < n; q++) ss[q] = 0;
            kl_sum += kl;
        }
        j->kl[ba] = kl_sum;
        if (!r->gs || j->w == 0) continue;
        /* D + D^T in place (gt is free now), then dX = (D + D^T) X */
        for (int i = 0; i < n; i++)
            for (int q = 0; q < n; q++) gt[(size_t)i * n + q] = gsm[(size_t)i * n + q] + gsm[(size_t)q * n + i];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, ds, n, 1, gt, n, xs, ds, 0, dx, ds);
        for (int p = 0; p < n; p++) {
            real *gi = r->gs + ((long)b * L + pos[p]) * r->gld + (long)a * ds;
            for (int e = 0; e < ds; e++) gi[e] += (real)dx[(size_t)p * ds + e];
        }
    }
}

/* One relation over the whole batch: the summed KL over valid query rows (in a fixed order,
 * whatever the threads) and, when r->gs is set, the gradient with weight w per row. */
static double relation(const Rel *r, int B, int A, double w, double *kl, double *scratch, size_t per_part, int *pos) {
    RelJob j = {r, A, w, kl, scratch, per_part, pos};
    tt_parallel_range(B * A, relation_range, &j);
    double sum = 0;
    for (int ba = 0; ba < B * A; ba++) sum += kl[ba];
    return sum;
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
    int Lmax = S > T ? S : T, dmax = ct->d_model / A > student->cfg.d_model / A ? ct->d_model / A : student->cfg.d_model / A;
    int parts = tt_threads();
    size_t per_part = (size_t)Lmax * (2 * (size_t)dmax + 2 * (size_t)Lmax + (size_t)dmax);
    int *vs = malloc(sizeof(int) * (size_t)B * (S > 0 ? S : 1)), *vt = malloc(sizeof(int) * (size_t)B * T);
    double *kl = malloc(sizeof(double) * (size_t)B * A), *scratch = malloc(sizeof(double) * per_part * (size_t)parts);
    int *pos = malloc(sizeof(int) * (size_t)Lmax * (size_t)parts);
    if (!vs || !vt || !kl || !scratch || !pos) {
        free(vs), free(vt), free(kl), free(scratch), free(pos);
        tt_err("out of memory");
        return NAN;
    }
    for (long i = 0; i < (long)B * S; i++) vs[i] = b->src_mask ? b->src_mask[i] != 0 : 1;
    for (long i = 0; i < (long)B * T; i++)
        vt[i] = encdec ? b->labels[i] != -100 : (b->tgt_mask ? b->tgt_mask[i] != 0 : 1);
    long nvs = 0, nvt = 0;
    for (long i = 0; i < (long)B * S; i++) nvs += vs[i];
    for (long i = 0; i < (long)B * T; i++) nvt += vt[i];
    int kinds[3] = {0, 1, 2}, n_kinds = encdec ? 3 : 1;
    if (!encdec) kinds[0] = 1;
    /* the relations that have query rows, known from the masks: the loss is their mean, each
     * a mean over its rows (and heads), so every row's weight is known before computing */
    int n_rel = 0;
    for (int kk = 0; kk < n_kinds; kk++)
        for (int x = 0; x < 3; x++) {
            int which = kinds[kk], keys = x > 0;
            n_rel += (which == 0 || (which == 2 && keys) ? nvs : nvt) > 0;
        }
    double total = 0;
    for (int kk = 0; kk < n_kinds && n_rel; kk++) {
        int which = kinds[kk];
        AttnQKV qt, qs;
        AttnQKVGrad g = {0};
        if (model_attention_qkv(teacher, which, &qt) || model_attention_qkv(student, which, &qs) ||
            (grad && model_attention_qkv_grad(student, which, 1, &g))) {
            total = NAN;
            break;
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
            r.gs = grad ? (x == 0 ? g.dq : x == 1 ? g.dk : g.dv) : NULL;
            r.gld = x == 0 ? g.ldq : g.ldkv;
            long rows = (long)A * (r.valid == vs ? nvs : nvt);
            if (rows == 0 || r.L == 0) continue;
            total += relation(&r, B, A, scale / ((double)rows * n_rel), kl, scratch, per_part, pos) / (double)rows;
        }
    }
    free(vs), free(vt), free(kl), free(scratch), free(pos);
    if (n_relations) *n_relations = n_rel;
    return n_rel ? total / n_rel : total;
}
