/* decoder_step.c: the incremental decoder for generation: one token per hypothesis per step,
 * projections as one matrix product over the active rows, attention over a pooled key/value
 * cache (see decode_internal.h), cross-attention keys/values computed once per source. The
 * same mathematics as model_forward (src/model/forward.c) for GPT-2, BART and mBART. */
#include <math.h>
#include <string.h>

#include "decode_internal.h"
#include "kernels/fastmath.h"

/* C11 mode turns off multiply-add contraction; the attention loops are made of them. */
#pragma GCC optimize("fp-contract=fast")

void decode_cache_free(DecodeCache *dc) {
    tt_free(dc->k_pool);
    tt_free(dc->v_pool);
    tt_free(dc->cross_v);
    tt_free(dc->cross_kt);
    tt_free(dc->kv_scratch);
    tt_free(dc->slot_ids);
    tt_free(dc->x);
    tt_free(dc->ln);
    tt_free(dc->qkv);
    tt_free(dc->att);
    tt_free(dc->proj);
    tt_free(dc->hid);
    tt_free(dc->scores);
    tt_free(dc->src_pad);
    tt_free(dc->src_mask);
    tt_free(dc->src_len);
    memset(dc, 0, sizeof *dc);
}

int decode_cache_init(DecodeCache *dc, Model *m, int max_rows, long pool_rows, int max_ctx, int max_inputs,
                      int max_src) {
    memset(dc, 0, sizeof *dc);
    const ModelConfig *c = &m->cfg;
    dc->m = m;
    dc->L = c->dec_layers;
    dc->C = c->d_model;
    dc->H = c->dec_heads;
    dc->D = c->d_model / c->dec_heads;
    dc->F = c->dec_ffn;
    dc->V = c->vocab_size;
    dc->encdec = model_is_encdec(c);
    dc->gpt2 = c->arch == ARCH_GPT2;
    dc->preln = model_is_preln(c);
    dc->max_rows = max_rows;
    dc->pool_cap = pool_rows;
    dc->max_ctx = max_ctx;
    dc->max_inputs = max_inputs;
    dc->max_src = dc->encdec ? max_src : 0;
    dc->parts = tt_threads();
    long C = dc->C, rows = max_rows;
    size_t R = sizeof(real);
    int ctx = max_ctx > dc->max_src ? max_ctx : dc->max_src;
    dc->k_pool = tt_alloc(R * dc->L * pool_rows * C);
    dc->v_pool = tt_alloc(R * dc->L * pool_rows * C);
    dc->x = tt_alloc(R * rows * C);
    dc->ln = tt_alloc(R * rows * C);
    dc->qkv = tt_alloc(R * rows * 3 * C);
    dc->att = tt_alloc(R * rows * C);
    dc->proj = tt_alloc(R * rows * C);
    dc->hid = tt_alloc(R * rows * dc->F);
    dc->scores = tt_alloc(R * (size_t)dc->parts * (ctx + 16));
    dc->src_len = tt_alloc(sizeof(int) * (size_t)max_inputs);
    dc->slot_ids = tt_alloc(sizeof(int) * (size_t)max_inputs);
    int ok = dc->slot_ids && dc->k_pool && dc->v_pool && dc->x && dc->ln && dc->qkv && dc->att && dc->proj && dc->hid &&
             dc->scores && dc->src_len;
    if (ok && dc->encdec) {
        long ns = (long)max_inputs * max_src;
        dc->cross_v = tt_alloc(R * dc->L * ns * C);
        dc->cross_kt = tt_alloc(R * dc->L * ns * C);
        dc->kv_scratch = tt_alloc(R * ns * 2 * C);
        dc->src_pad = tt_alloc(sizeof(int) * ns);
        dc->src_mask = tt_alloc(sizeof(int) * ns);
        ok = dc->cross_v && dc->cross_kt && dc->kv_scratch && dc->src_pad && dc->src_mask;
        /* the encoder's activations, sized now so that no later batch allocates */
        if (ok && model_reserve(m, max_inputs, max_src, 1, 0)) ok = 0;
    }
    if (!ok) {
        decode_cache_free(dc);
        return tt_err_wrap("generation buffers");
    }
    return 0;
}

int decode_cache_add(DecodeCache *dc, int n, const int *slot, const int *const *src, const int *src_len) {
    if (n < 1) return 0;
    for (int i = 0; i < n; i++) {
        if (slot[i] < 0 || slot[i] >= dc->max_inputs)
            return tt_err("input slot %d outside the %d planned", slot[i], dc->max_inputs);
        if (src_len[i] < 1) return tt_err("input %d: empty source", i);
        dc->src_len[slot[i]] = src_len[i];
    }
    if (!dc->encdec) return 0;
    int S = 0;
    for (int i = 0; i < n; i++) {
        if (src_len[i] > dc->max_src)
            return tt_err("input %d: source of %d tokens, more than the %d planned", i, src_len[i], dc->max_src);
        if (src_len[i] > S) S = src_len[i];
    }
    const ModelConfig *c = &dc->m->cfg;
    int pad = c->pad_id >= 0 ? c->pad_id : 0;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < S; s++) {
            int valid = s < src_len[i];
            dc->src_pad[(long)i * S + s] = valid ? src[i][s] : pad;
            dc->src_mask[(long)i * S + s] = valid;
        }
    const real *enc = model_encode(dc->m, dc->src_pad, dc->src_mask, n, S);
    if (!enc) return -1;
    long C = dc->C, ns = (long)dc->max_inputs * dc->max_src;
    for (int l = 0; l < dc->L; l++) {
        const AttnParams *a = &dc->m->p.dec[l].cross;
        /* k_w, v_w (and their biases) are adjacent: one (n*S, 2C) product into the scratch
         * rows, then each source's rows to its slot (slot * max_src) */
        real *kv = dc->kv_scratch;
        int done = 0;
#if !REAL_IS_DOUBLE
        ModelQ8 *q8 = dc->m->q8;
        done = q8 && q8->dec[l].ckv.q &&
               q8_linear(q8->path, enc, n * S, (int)C, &q8->dec[l].ckv, a->k_b, kv, 2 * (int)C, &q8->scratch) == 0;
#endif
        if (!done) linear_forward(kv, 2 * (int)C, enc, a->k_w, a->k_b, n * S, (int)C, 2 * (int)C, W_OUT_IN);
        int H = dc->H, D = dc->D, ms = dc->max_src;
        for (int i = 0; i < n; i++) {
            real *kt = dc->cross_kt + ((long)l * dc->max_inputs + slot[i]) * C * ms;
            real *v = dc->cross_v + (l * ns + (long)slot[i] * ms) * C;
            for (int t = 0; t < src_len[i]; t++) {
                const real *k = kv + ((long)i * S + t) * 2 * C;
                for (int hd = 0; hd < H * D; hd++) kt[(long)hd * ms + t] = k[hd];
                for (int h = 0; h < H; h++)
                    memcpy(v + ((long)h * ms + t) * D, k + C + (long)h * D, sizeof(real) * (size_t)D);
            }
        }
    }
    return 0;
}

int decode_cache_begin(DecodeCache *dc, int n, const int *const *src, const int *src_len) {
    dc->pool_used = 0;
    if (n > dc->max_inputs) return tt_err("%d inputs in a batch, more than the %d planned", n, dc->max_inputs);
    for (int i = 0; i < n; i++) dc->slot_ids[i] = i;
    return decode_cache_add(dc, n, dc->slot_ids, src, src_len);
}

/* ---- attention over the cache ---- */

static inline real dot_f(const real *restrict a, const real *restrict b, int n) {
    real acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    real s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static inline void softmax_inplace(real *s, int n) {
    real mx = tt_max_real(s, n);
    real inv = (real)(1.0 / tt_exp_shift_sum(s, n, mx, NULL));
    for (int t = 0; t < n; t++) s[t] *= inv;
}

/* s[t] = scale * sum_d q[d] kt[d * ld + t] for t in [0, n): 4 x TT_VL positions at a time in
 * four vector sums kept in registers across d (then TT_VL, then one at a time), rather than a
 * pass over s for every d. Each position's sum runs over d in order whatever the width. */
static void scores_kt(real *restrict s, const real *restrict q, const real *restrict kt, long ld, int D, int n,
                      real scale) {
    int t = 0;
#if !REAL_IS_DOUBLE
    enum { L = TT_VL };
    for (; t + 4 * L <= n; t += 4 * L) {
        tt_vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int d = 0; d < D; d++) {
            const real *kr = kt + (long)d * ld + t;
            real qd = q[d];
            a0 += qd * *(const tt_vf *)kr, a1 += qd * *(const tt_vf *)(kr + L);
            a2 += qd * *(const tt_vf *)(kr + 2 * L), a3 += qd * *(const tt_vf *)(kr + 3 * L);
        }
        *(tt_vf *)(s + t) = a0 * scale, *(tt_vf *)(s + t + L) = a1 * scale;
        *(tt_vf *)(s + t + 2 * L) = a2 * scale, *(tt_vf *)(s + t + 3 * L) = a3 * scale;
    }
    for (; t + L <= n; t += L) {
        tt_vf a = {0};
        for (int d = 0; d < D; d++) a += q[d] * *(const tt_vf *)(kt + (long)d * ld + t);
        *(tt_vf *)(s + t) = a * scale;
    }
#endif
    for (; t < n; t++) {
        real a = 0;
        for (int d = 0; d < D; d++) a += q[d] * kt[(long)d * ld + t];
        s[t] = a * scale;
    }
}

/* o[0, D) = sum_t p[t] v_t[0, D), v_t = v + (tab ? tab[t] : t) * ld: TT_VL output lanes at a
 * time, the even and odd t in two register sums (two independent chains), added at the end. */
static void weighted_rows(real *restrict o, const real *restrict p, const real *restrict v, long ld, const int *tab,
                          int D, int n) {
    int d = 0;
#if !REAL_IS_DOUBLE
    for (; d + TT_VL <= D; d += TT_VL) {
        tt_vf e = {0}, f = {0};
        int t = 0;
        for (; t + 2 <= n; t += 2) {
            e += p[t] * *(const tt_vf *)(v + (tab ? tab[t] : t) * ld + d);
            f += p[t + 1] * *(const tt_vf *)(v + (tab ? tab[t + 1] : t + 1) * ld + d);
        }
        if (t < n) e += p[t] * *(const tt_vf *)(v + (tab ? tab[t] : t) * ld + d);
        *(tt_vf *)(o + d) = e + f;
    }
#endif
    for (; d < D; d++) {
        real a = 0;
        for (int t = 0; t < n; t++) a += p[t] * v[(tab ? tab[t] : t) * ld + d];
        o[d] = a;
    }
}

typedef struct {
    DecodeCache *dc;
    const StepRows *r;
    int layer, cross;
    const real *q;
    int ldq;
    real scale;
} AttnStepJob;

static void attention_rows(int begin, int end, int part, void *arg) {
    const AttnStepJob *j = arg;
    DecodeCache *dc = j->dc;
    int D = dc->D;
    long C = dc->C;
    real *s = dc->scores + (long)part * ((dc->max_ctx > dc->max_src ? dc->max_ctx : dc->max_src) + 16);
    /* head-major (rh = h * M + i): the rows of one input (its beams) follow each other with the
     * same head, whose cross-attention keys and values then stay in cache between them */
    int M = j->r->M;
    for (int rh = begin; rh < end; rh++) {
        int h = rh / M, i = rh % M;
        const real *q = j->q + (long)i * j->ldq + h * D;
        real *restrict o = dc->att + i * C + h * D;
        if (j->cross) {
            int b = j->r->input[i], n = dc->src_len[b];
            long ns = (long)dc->max_inputs * dc->max_src;
            const real *vs = dc->cross_v + (j->layer * ns + (long)b * dc->max_src) * C + (long)h * dc->max_src * D;
            const real *kt = dc->cross_kt + (((long)j->layer * dc->max_inputs + b) * C + (long)h * D) * dc->max_src;
            /* the scores of every position at once: sum over d of q[d] times row d of K^T */
            scores_kt(s, q, kt, dc->max_src, D, n, j->scale);
            softmax_inplace(s, n);
            weighted_rows(o, s, vs, D, NULL, D, n);
        } else {
            int n = j->r->pos[i] + 1;
            const int *tab = j->r->table[i];
            const real *kp = dc->k_pool + j->layer * dc->pool_cap * C + h * D;
            const real *vp = dc->v_pool + j->layer * dc->pool_cap * C + h * D;
            for (int t = 0; t < n; t++) s[t] = dot_f(q, kp + tab[t] * C, D) * j->scale;
            softmax_inplace(s, n);
            weighted_rows(o, s, vp, C, tab, D, n);
        }
    }
}

/* ---- the step ---- */

static void block_ln(const LayerParams *lp, int kind, const real **w, const real **b) {
    if (kind == 0) *w = lp->ln_self_w, *b = lp->ln_self_b;
    else if (kind == 1) *w = lp->ln_cross_w, *b = lp->ln_cross_b;
    else *w = lp->ln_ffn_w, *b = lp->ln_ffn_b;
}

/* y = x W + b through the model's int8 weights when it has them (q: the matrix's int8 form;
 * s: its scratch, NULL for the model's own), else the float kernels. */
static void dlin_s(const DecodeCache *dc, const Q8Weights *q, real *out, int ldo, const real *inp, const real *w,
                   const real *b, int M, int K, int N, WeightLayout lay, Q8Scratch *s) {
#if !REAL_IS_DOUBLE
    ModelQ8 *q8 = dc->m->q8;
    if (q8 && q && q->q && q8_linear(q8->path, inp, M, K, q, b, out, ldo, s ? s : &q8->scratch) == 0) return;
#else
    (void)s;
#endif
    decode_linear(out, ldo, inp, w, b, M, K, N, lay);
}

static void dlin(const DecodeCache *dc, const Q8Weights *q, real *out, int ldo, const real *inp, const real *w,
                 const real *b, int M, int K, int N, WeightLayout lay) {
    dlin_s(dc, q, out, ldo, inp, w, b, M, K, N, lay, NULL);
}

/* kind 0 self-attention, 1 cross-attention, 2 feed-forward; x (M,C) updated in place. */
static void step_block(DecodeCache *dc, const StepRows *r, int l, int kind) {
    const ModelConfig *c = &dc->m->cfg;
    const LayerParams *lp = &dc->m->p.dec[l];
    const Q8Layer *ql = dc->m->q8 ? &dc->m->q8->dec[l] : NULL;
    int M = r->M, C = dc->C;
    WeightLayout lay = dc->gpt2 ? W_IN_OUT : W_OUT_IN;
    const real *lw, *lb;
    block_ln(lp, kind, &lw, &lb);
    const real *inp = dc->x;
    if (dc->preln) {
        layernorm_forward(dc->ln, NULL, NULL, dc->x, lw, lb, M, C, c->ln_eps);
        inp = dc->ln;
    }
    real scale = (real)(1.0 / sqrt((double)dc->D));
    if (kind == 0) {
        const AttnParams *a = &lp->self;
        dlin(dc, ql ? &ql->qkv : NULL, dc->qkv, 3 * C, inp, a->q_w, a->q_b, M, C, 3 * C, lay);
        /* row i's key and value go to pool row pool_used + i (see decode_step) */
        long base = (long)l * dc->pool_cap + dc->pool_used;
        for (int i = 0; i < M; i++) {
            memcpy(dc->k_pool + (base + i) * C, dc->qkv + (long)i * 3 * C + C, sizeof(real) * C);
            memcpy(dc->v_pool + (base + i) * C, dc->qkv + (long)i * 3 * C + 2 * C, sizeof(real) * C);
        }
        AttnStepJob j = {dc, r, l, 0, dc->qkv, 3 * C, scale};
        int ctx = 1;
        for (int i = 0; i < M; i++) ctx = r->pos[i] + 1 > ctx ? r->pos[i] + 1 : ctx;
        tt_parallel_range_work(M * dc->H, 4.0 * M * C * ctx, attention_rows, &j);
        dlin(dc, ql ? &ql->o : NULL, dc->proj, C, dc->att, a->o_w, a->o_b, M, C, C, lay);
    } else if (kind == 1) {
        const AttnParams *a = &lp->cross;
        dlin(dc, ql ? &ql->cq : NULL, dc->qkv, C, inp, a->q_w, a->q_b, M, C, C, W_OUT_IN);
        AttnStepJob j = {dc, r, l, 1, dc->qkv, C, scale};
        int ctx = 1;
        for (int i = 0; i < M; i++) ctx = dc->src_len[r->input[i]] > ctx ? dc->src_len[r->input[i]] : ctx;
        tt_parallel_range_work(M * dc->H, 4.0 * M * C * ctx, attention_rows, &j);
        dlin(dc, ql ? &ql->co : NULL, dc->proj, C, dc->att, a->o_w, a->o_b, M, C, C, W_OUT_IN);
    } else {
        dlin(dc, ql ? &ql->fc1 : NULL, dc->hid, dc->F, inp, lp->fc1_w, lp->fc1_b, M, C, dc->F, lay);
        gelu_forward(dc->hid, dc->hid, (long)M * dc->F, c->act);
        dlin(dc, ql ? &ql->fc2 : NULL, dc->proj, C, dc->hid, lp->fc2_w, lp->fc2_b, M, dc->F, C, lay);
    }
    long n = (long)M * C;
    if (dc->preln) {
        for (long i = 0; i < n; i++) dc->x[i] += dc->proj[i];
    } else {
        for (long i = 0; i < n; i++) dc->proj[i] += dc->x[i];
        layernorm_forward(dc->x, NULL, NULL, dc->proj, lw, lb, M, C, c->ln_eps);
    }
}

int decode_step(DecodeCache *dc, const StepRows *r, const int *logit_rows, int n_logits, real *logits) {
    const ModelConfig *c = &dc->m->cfg;
    const ModelParams *p = &dc->m->p;
    int M = r->M, C = dc->C;
    if (M < 1 || M > dc->max_rows) return tt_err("decode_step: %d rows (capacity %d)", M, dc->max_rows);
    if (dc->pool_used + M > dc->pool_cap) return tt_err("decode_step: key/value cache full");
    /* this step's tokens take pool rows pool_used .. pool_used + M - 1 */
    for (int i = 0; i < M; i++) {
        int pos = r->pos[i];
        if (pos >= c->max_positions || pos >= dc->max_ctx)
            return tt_err("decode_step: position %d beyond the model's %d positions", pos, c->max_positions);
        if (r->tok[i] < 0 || r->tok[i] >= dc->V) return tt_err("decode_step: token id %d outside the vocabulary", r->tok[i]);
        r->table[i][pos] = (int)(dc->pool_used + i);
    }
    /* embeddings: scale * wte[tok] + wpe[pos + offset] (BART/mBART: offset 2, then LN) */
    real emb_scale = c->scale_embedding ? (real)sqrt((double)C) : 1;
    int off = dc->gpt2 ? 0 : 2;
    for (int i = 0; i < M; i++) {
        const real *e = p->tok_emb + (long)r->tok[i] * C, *ps = p->dec_pos + (long)(r->pos[i] + off) * C;
        real *o = (dc->gpt2 ? dc->x : dc->ln) + (long)i * C;
        for (int k = 0; k < C; k++) o[k] = e[k] * emb_scale + ps[k];
    }
    if (!dc->gpt2) layernorm_forward(dc->x, NULL, NULL, dc->ln, p->dec_ln_emb_w, p->dec_ln_emb_b, M, C, c->ln_eps);
    for (int l = 0; l < dc->L; l++) {
        for (int kind = 0; kind < 3; kind++) {
            if (kind == 1 && !dc->encdec) continue;
            step_block(dc, r, l, kind);
        }
    }
    for (int j = 0; j < n_logits; j++)
        memcpy(dc->att + (long)j * C, dc->x + (long)logit_rows[j] * C, sizeof(real) * C);
    const real *y = dc->att;
    if (dc->preln) {
        layernorm_forward(dc->ln, NULL, NULL, dc->att, p->dec_ln_final_w, p->dec_ln_final_b, n_logits, C, c->ln_eps);
        y = dc->ln;
    }
    if (n_logits > 0) {
        /* BART's final_logits_bias is zeros in most models: then the float path skips filling
         * every logit with it before the product (a pass over rows x vocabulary) */
        const real *lb = p->final_logits_bias;
        int any = 0;
        for (int v = 0; lb && v < dc->V && !any; v++) any = lb[v] != 0;
        dc->lm_bias = any ? lb : NULL;
        dc->final_h = y;
        if (logits)
            dlin(dc, dc->m->q8 ? &dc->m->q8->lm_head : NULL, logits, dc->V, y, p->lm_head, dc->lm_bias, n_logits, C,
                 dc->V, W_OUT_IN);
    }
    dc->pool_used += M;
    return 0;
}

void decode_logits(const DecodeCache *dc, int j, int n, real *out, Q8Scratch *s) {
    dlin_s(dc, dc->m->q8 ? &dc->m->q8->lm_head : NULL, out, dc->V, dc->final_h + (long)j * dc->C, dc->m->p.lm_head,
           dc->lm_bias, n, dc->C, dc->V, W_OUT_IN, s);
}
