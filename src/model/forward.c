/* forward.c: forward and backward passes of the transformer over a padded batch, with the
 * activation arena planned per batch shape: training keeps what backward needs (each
 * block its own buffers); inference reuses one block's buffers for every layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* ---- arena planning ---- */

typedef struct {
    char *base;  /* NULL: count only */
    size_t used;
} Carver;

static void *take(Carver *cv, size_t bytes) {
    size_t off = (cv->used + 63) / 64 * 64;
    cv->used = off + bytes;
    return cv->base ? cv->base + off : NULL;
}
#define TAKE_REAL(cv, n) ((real *)take(cv, (size_t)(n) * sizeof(real)))
#define TAKE_BYTES(cv, n) ((uint8_t *)take(cv, (size_t)(n)))

/* Buffers of one block for N query rows (Tq per sequence), Ns key rows (Tk per sequence). */
static void carve_block(Carver *cv, BlockActs *k, int kind, const ModelConfig *c, int preln, int B,
                        int Tq, int Tk, int H, int F, int drop) {
    long N = (long)B * Tq, Ns = (long)B * Tk, C = c->d_model;
    memset(k, 0, sizeof *k);
    k->ln_mean = TAKE_REAL(cv, N);
    k->ln_rstd = TAKE_REAL(cv, N);
    if (preln) k->ln_out = TAKE_REAL(cv, N * C);
    else k->sum = TAKE_REAL(cv, N * C);
    k->f_pre = TAKE_REAL(cv, N * C);
    if (drop && c->dropout > 0) {
        k->f_out = TAKE_REAL(cv, N * C);
        k->f_mask = TAKE_BYTES(cv, N * C);
    } else {
        k->f_out = k->f_pre;
    }
    if (kind == BLOCK_FFN) {
        k->h1 = TAKE_REAL(cv, N * F);
        k->h2 = TAKE_REAL(cv, N * F);
        if (drop && c->act_dropout > 0) {
            k->h3 = TAKE_REAL(cv, N * F);
            k->h_mask = TAKE_BYTES(cv, N * F);
        } else {
            k->h3 = k->h2;
        }
        return;
    }
    long P = (long)B * H * Tq * Tk;
    if (kind == BLOCK_SELF) {
        k->q = TAKE_REAL(cv, N * 3 * C);
    } else {
        k->q = TAKE_REAL(cv, N * C);
        k->kv = TAKE_REAL(cv, Ns * 2 * C);
    }
    k->probs = TAKE_REAL(cv, P);
    if (drop && c->attn_dropout > 0) {
        k->probs_drop = TAKE_REAL(cv, P);
        k->probs_mask = TAKE_BYTES(cv, P);
    }
    k->att = TAKE_REAL(cv, N * C);
}

/* Plans one stack (encoder or decoder) for B sequences of T tokens; Ts: source length for
 * cross-attention (0 if none). The block outputs are chained: block i reads block i-1. */
static void carve_stack(Carver *cv, StackActs *s, const ModelConfig *c, int enc, int B, int T, int Ts,
                        int mode) {
    int keep = fwd_keeps(mode), drop = fwd_drops(mode);
    long N = (long)B * T, C = c->d_model;
    int preln = model_is_preln(c);
    int layers = enc ? c->enc_layers : c->dec_layers;
    int H = enc ? c->enc_heads : c->dec_heads, F = enc ? c->enc_ffn : c->dec_ffn;
    int per_layer = enc || c->arch == ARCH_GPT2 ? 2 : 3;
    int has_ln_emb = c->arch != ARCH_GPT2;
    s->emb = TAKE_REAL(cv, N * C);
    s->emb_mean = TAKE_REAL(cv, N);
    s->emb_rstd = TAKE_REAL(cv, N);
    s->emb_out = has_ln_emb ? TAKE_REAL(cv, N * C) : s->emb;
    if (drop && c->dropout > 0) {
        s->x0 = TAKE_REAL(cv, N * C);
        s->emb_mask = TAKE_BYTES(cv, N * C);
    } else {
        /* Inference: x0 is the stream every block updates in place, so never alias emb. */
        s->x0 = keep ? s->emb_out : TAKE_REAL(cv, N * C);
    }
    const real *stream = s->x0;
    for (int l = 0; l < layers; l++) {
        for (int j = 0; j < per_layer; j++) {
            int kind = j == 0 ? BLOCK_SELF : (j == per_layer - 1 ? BLOCK_FFN : BLOCK_CROSS);
            BlockActs *k = &s->blocks[l * per_layer + j];
            if (keep || l == 0) {
                carve_block(cv, k, kind, c, preln, B, T, kind == BLOCK_CROSS ? Ts : T, H, F, drop);
                k->out = keep ? TAKE_REAL(cv, N * C) : s->x0;
            } else {
                *k = s->blocks[j];
            }
            k->in = stream;
            stream = k->out;
        }
    }
    s->out = (real *)stream;
    if (preln) {
        s->final_out = TAKE_REAL(cv, N * C);
        s->final_mean = TAKE_REAL(cv, N);
        s->final_rstd = TAKE_REAL(cv, N);
        s->out = s->final_out;
    }
}

static size_t carve_all(Model *m, ModelActs *a, int B, int S, int T, int mode, char *base) {
    const ModelConfig *c = &m->cfg;
    Carver cv = {base, 0};
    long C = c->d_model;
    long Nt = (long)B * T, Ns = (long)B * S, Nmax = Nt > Ns ? Nt : Ns;
    if (model_is_encdec(c)) carve_stack(&cv, &a->enc, c, 1, B, S, 0, mode);
    carve_stack(&cv, &a->dec, c, 0, B, T, model_is_encdec(c) ? S : 0, mode);
    /* Rows of logits per chunk: large enough that the (V x C) weight gradient is a
     * well-shaped product, small enough that no (tokens x V) matrix is kept. */
    a->chunk_rows = 256;
    a->scratch_threads = tt_threads();
    a->vocab_chunk = TAKE_REAL(&cv, (long)a->chunk_rows * c->vocab_size);
    a->row_x = TAKE_REAL(&cv, (long)a->chunk_rows * C);
    a->row_dx = TAKE_REAL(&cv, (long)a->chunk_rows * C);
    if (fwd_keeps(mode)) {
        int Fmax = c->dec_ffn > c->enc_ffn ? c->dec_ffn : c->enc_ffn;
        int Tmax = T > S ? T : S;
        a->d_hidden = TAKE_REAL(&cv, Nt * C);
        a->d_stream = TAKE_REAL(&cv, Nmax * C);
        a->d_sum = TAKE_REAL(&cv, Nmax * C);
        a->d_f = TAKE_REAL(&cv, Nmax * C);
        a->d_ln = TAKE_REAL(&cv, Nmax * C);
        a->d_q = TAKE_REAL(&cv, Nmax * 3 * C);
        a->d_kv = TAKE_REAL(&cv, Ns * 2 * C);
        a->d_att = TAKE_REAL(&cv, Nmax * C);
        a->d_h1 = TAKE_REAL(&cv, Nmax * Fmax);
        a->d_h2 = TAKE_REAL(&cv, Nmax * Fmax);
        a->d_h3 = TAKE_REAL(&cv, Nmax * Fmax);
        a->d_enc_out = TAKE_REAL(&cv, Ns * C);
        a->d_emb = TAKE_REAL(&cv, Nmax * C);
        a->att_scratch = TAKE_REAL(&cv, 2L * Tmax * Tmax * a->scratch_threads);
    }
    return cv.used;
}

static int acts_init(Model *m) {
    if (m->acts) return 0;
    ModelActs *a = calloc(1, sizeof *a);
    if (!a) return tt_err("out of memory");
    const ModelConfig *c = &m->cfg;
    a->enc.n_blocks = 2 * c->enc_layers;
    a->dec.n_blocks = (c->arch == ARCH_GPT2 ? 2 : 3) * c->dec_layers;
    a->enc.blocks = calloc((size_t)a->enc.n_blocks + 1, sizeof(BlockActs));
    a->dec.blocks = calloc((size_t)a->dec.n_blocks + 1, sizeof(BlockActs));
    if (!a->enc.blocks || !a->dec.blocks) {
        free(a->enc.blocks);
        free(a->dec.blocks);
        free(a);
        return tt_err("out of memory");
    }
    m->acts = a;
    return 0;
}

void model_acts_free(Model *m) {
    ModelActs *a = m->acts;
    if (!a) return;
    tt_free(a->arena);
    for (int i = 0; i < 3; i++) free(a->qkv_grad[i]);
    free(a->enc.blocks);
    free(a->dec.blocks);
    free(a);
    m->acts = NULL;
}

int model_reserve(Model *m, int B, int S, int T, int mode) {
    if (!fwd_mode_valid(mode)) return tt_err("model_reserve: unknown forward mode %d", mode);
    if (acts_init(m)) return -1;
    ModelActs *a = m->acts;
    if (!model_is_encdec(&m->cfg)) S = 0;
    size_t need = carve_all(m, a, B, S, T, mode, NULL);
    if (need > a->capacity_bytes) {
        tt_free(a->arena);
        a->arena = tt_alloc(need);
        a->capacity_bytes = a->arena ? need : 0;
        if (!a->arena) return -1;
    }
    carve_all(m, a, B, S, T, mode, a->arena);
    a->B = B;
    a->S = S;
    a->T = T;
    a->mode = mode;
    return 0;
}

size_t model_act_bytes(const Model *m) { return m->acts ? m->acts->capacity_bytes : 0; }

/* ---- forward ---- */

typedef struct {
    Model *m;
    int drop; /* dropout applies */
    int B, Tq, Tk, H, F;
    const real *enc_out;   /* cross-attention keys/values source (B*Tk, C) */
    const int *key_mask;   /* (B,Tk) */
    int causal;
} BlockCtx;

/* The int8 form of layer lp when the model has int8 weights and runs inference, else NULL. */
static const Q8Layer *q8_layer(const Model *m, const LayerParams *lp) {
#if REAL_IS_DOUBLE
    (void)m, (void)lp;
    return NULL;
#else
    if (!m->q8 || !m->acts || m->acts->mode != FWD_INFER) return NULL;
    for (int l = 0; l < m->cfg.enc_layers; l++)
        if (lp == &m->p.enc[l]) return &m->q8->enc[l];
    for (int l = 0; l < m->cfg.dec_layers; l++)
        if (lp == &m->p.dec[l]) return &m->q8->dec[l];
    return NULL;
#endif
}

/* linear_forward, or its int8 form q (when not NULL) */
static void lin(const Model *m, const Q8Weights *q, real *out, int ldo, const real *inp, const real *w, const real *b,
                int N, int C, int F, WeightLayout lay) {
#if !REAL_IS_DOUBLE
    if (q && q->q && q8_linear(m->q8->path, inp, N, C, q, b, out, ldo, &m->q8->scratch) == 0) return;
#endif
    linear_forward(out, ldo, inp, w, b, N, C, F, lay);
}

static void sublayer_forward(const BlockCtx *x, BlockActs *k, const LayerParams *lp, int kind,
                             const real *inp) {
    const ModelConfig *c = &x->m->cfg;
    const Q8Layer *ql = q8_layer(x->m, lp);
    const Model *mm = x->m;
    int C = c->d_model, N = x->B * x->Tq;
    real scale = (real)(1.0 / sqrt((double)(C / x->H)));
    int gpt2 = c->arch == ARCH_GPT2;
    AttnDropout drop = {x->drop ? c->attn_dropout : 0, k->probs_drop, k->probs_mask, &x->m->dropout_rng};
    if (kind == BLOCK_SELF) {
        const AttnParams *a = &lp->self;
        /* GPT-2's c_attn, or BART's adjacent q|k|v weights (params.c): one product */
        lin(mm, ql ? &ql->qkv : NULL, k->q, 3 * C, inp, a->q_w, a->q_b, N, C, 3 * C, gpt2 ? W_IN_OUT : W_OUT_IN);
        attention_forward(k->att, k->probs, k->q, 3 * C, k->q + C, 3 * C, k->q + 2 * C, 3 * C,
                          x->key_mask, x->B, x->Tq, x->Tq, x->H, C, x->causal, scale, &drop);
        lin(mm, ql ? &ql->o : NULL, k->f_pre, C, k->att, a->o_w, a->o_b, N, C, C, gpt2 ? W_IN_OUT : W_OUT_IN);
    } else if (kind == BLOCK_CROSS) {
        const AttnParams *a = &lp->cross;
        int Ns = x->B * x->Tk;
        lin(mm, ql ? &ql->cq : NULL, k->q, C, inp, a->q_w, a->q_b, N, C, C, W_OUT_IN);
        lin(mm, ql ? &ql->ckv : NULL, k->kv, 2 * C, x->enc_out, a->k_w, a->k_b, Ns, C, 2 * C, W_OUT_IN);
        attention_forward(k->att, k->probs, k->q, C, k->kv, 2 * C, k->kv + C, 2 * C, x->key_mask, x->B,
                          x->Tq, x->Tk, x->H, C, 0, scale, &drop);
        lin(mm, ql ? &ql->co : NULL, k->f_pre, C, k->att, a->o_w, a->o_b, N, C, C, W_OUT_IN);
    } else {
        WeightLayout lay = gpt2 ? W_IN_OUT : W_OUT_IN;
        long NF = (long)N * x->F;
        lin(mm, ql ? &ql->fc1 : NULL, k->h1, x->F, inp, lp->fc1_w, lp->fc1_b, N, C, x->F, lay);
        gelu_forward(k->h2, k->h1, NF, c->act);
        if (k->h3 != k->h2) dropout_forward(k->h3, k->h_mask, k->h2, NF, c->act_dropout, &x->m->dropout_rng);
        lin(mm, ql ? &ql->fc2 : NULL, k->f_pre, C, k->h3, lp->fc2_w, lp->fc2_b, N, x->F, C, lay);
    }
    if (k->f_out != k->f_pre)
        dropout_forward(k->f_out, k->f_mask, k->f_pre, (long)N * C, c->dropout, &x->m->dropout_rng);
}

static void block_ln_params(const LayerParams *lp, int kind, const real **w, const real **b) {
    if (kind == BLOCK_SELF) *w = lp->ln_self_w, *b = lp->ln_self_b;
    else if (kind == BLOCK_CROSS) *w = lp->ln_cross_w, *b = lp->ln_cross_b;
    else *w = lp->ln_ffn_w, *b = lp->ln_ffn_b;
}

static void block_forward(const BlockCtx *x, BlockActs *k, const LayerParams *lp, int kind) {
    const ModelConfig *c = &x->m->cfg;
    long N = (long)x->B * x->Tq, C = c->d_model;
    const real *lw, *lb;
    block_ln_params(lp, kind, &lw, &lb);
    if (model_is_preln(c)) {
        layernorm_forward(k->ln_out, k->ln_mean, k->ln_rstd, k->in, lw, lb, (int)N, (int)C, c->ln_eps);
        sublayer_forward(x, k, lp, kind, k->ln_out);
        for (long i = 0; i < N * C; i++) k->out[i] = k->in[i] + k->f_out[i];
    } else {
        sublayer_forward(x, k, lp, kind, k->in);
        for (long i = 0; i < N * C; i++) k->sum[i] = k->in[i] + k->f_out[i];
        layernorm_forward(k->out, k->ln_mean, k->ln_rstd, k->sum, lw, lb, (int)N, (int)C, c->ln_eps);
    }
}

static void embed_forward(Model *m, StackActs *s, const int *ids, int B, int T, int enc, int drop) {
    const ModelConfig *c = &m->cfg;
    const ModelParams *p = &m->p;
    int C = c->d_model;
    long N = (long)B * T;
    int gpt2 = c->arch == ARCH_GPT2;
    real scale = c->scale_embedding ? (real)sqrt((double)C) : 1;
    embedding_forward(s->emb, ids, p->tok_emb, enc ? p->enc_pos : p->dec_pos, B, T, C, scale, gpt2 ? 0 : 2);
    if (!gpt2)
        layernorm_forward(s->emb_out, s->emb_mean, s->emb_rstd, s->emb, enc ? p->enc_ln_emb_w : p->dec_ln_emb_w,
                          enc ? p->enc_ln_emb_b : p->dec_ln_emb_b, (int)N, C, c->ln_eps);
    if (s->x0 != s->emb_out) {
        if (drop && c->dropout > 0) dropout_forward(s->x0, s->emb_mask, s->emb_out, N * C, c->dropout, &m->dropout_rng);
        else memcpy(s->x0, s->emb_out, (size_t)N * C * sizeof(real));
    }
}

static void stack_forward(Model *m, StackActs *s, int enc, const int *ids, int B, int T, const int *self_mask,
                          int causal, const real *enc_out, const int *src_mask, int S, int mode) {
    const ModelConfig *c = &m->cfg;
    embed_forward(m, s, ids, B, T, enc, fwd_drops(mode));
    int per_layer = enc || c->arch == ARCH_GPT2 ? 2 : 3;
    int layers = enc ? c->enc_layers : c->dec_layers;
    LayerParams *lps = enc ? m->p.enc : m->p.dec;
    for (int l = 0; l < layers; l++) {
        for (int j = 0; j < per_layer; j++) {
            int kind = j == 0 ? BLOCK_SELF : (j == per_layer - 1 ? BLOCK_FFN : BLOCK_CROSS);
            BlockCtx x = {m, fwd_drops(mode), B, T, T, enc ? c->enc_heads : c->dec_heads, enc ? c->enc_ffn : c->dec_ffn,
                          NULL, self_mask, causal};
            if (kind == BLOCK_CROSS) {
                x.Tk = S;
                x.enc_out = enc_out;
                x.key_mask = src_mask;
                x.causal = 0;
            }
            block_forward(&x, &s->blocks[l * per_layer + j], &lps[l], kind);
        }
    }
    if (s->final_out) {
        const real *w = enc ? m->p.enc_ln_final_w : m->p.dec_ln_final_w;
        const real *b = enc ? m->p.enc_ln_final_b : m->p.dec_ln_final_b;
        layernorm_forward(s->final_out, s->final_mean, s->final_rstd, s->blocks[layers * per_layer - 1].out, w, b,
                          B * T, c->d_model, c->ln_eps);
    }
}

static int check_ids(const Model *m, const int *ids, long n, const char *what) {
    for (long i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return tt_err("%s token id %d at position %ld is outside the vocabulary [0, %d)", what, ids[i], i,
                          m->cfg.vocab_size);
    return 0;
}

int model_forward(Model *m, const Batch *b, int mode) {
    if (!fwd_mode_valid(mode)) return tt_err("model_forward: unknown forward mode %d", mode);
    const ModelConfig *c = &m->cfg;
    int encdec = model_is_encdec(c);
    if (b->B < 1 || b->T < 1 || (encdec && (b->S < 1 || !b->src)))
        return tt_err("empty batch");
    if (b->T > c->max_positions || (encdec && b->S > c->max_positions))
        return tt_err("sequence of %d tokens exceeds the model's %d positions", encdec && b->S > b->T ? b->S : b->T,
                      c->max_positions);
    if (check_ids(m, b->tgt_in, (long)b->B * b->T, "target")) return -1;
    if (encdec && check_ids(m, b->src, (long)b->B * b->S, "source")) return -1;
    ModelActs *a = m->acts;
    int S = encdec ? b->S : 0;
    if (!a || a->B != b->B || a->S != S || a->T != b->T || a->mode != mode ||
        a->scratch_threads != tt_threads())
        if (model_reserve(m, b->B, S, b->T, mode)) return -1;
    a = m->acts;
    for (int i = 0; i < a->enc.n_blocks; i++) a->enc.blocks[i].extra_dq = a->enc.blocks[i].extra_dkv = NULL;
    for (int i = 0; i < a->dec.n_blocks; i++) a->dec.blocks[i].extra_dq = a->dec.blocks[i].extra_dkv = NULL;
    if (encdec) {
        stack_forward(m, &a->enc, 1, b->src, b->B, b->S, b->src_mask, 0, NULL, NULL, 0, mode);
        stack_forward(m, &a->dec, 0, b->tgt_in, b->B, b->T, b->tgt_mask, 1, a->enc.out, b->src_mask, b->S, mode);
    } else {
        stack_forward(m, &a->dec, 0, b->tgt_in, b->B, b->T, b->tgt_mask, 1, NULL, NULL, 0, mode);
    }
    if (fwd_keeps(mode)) memset(a->d_hidden, 0, (size_t)b->B * b->T * c->d_model * sizeof(real));
    return 0;
}

const real *model_encode(Model *m, const int *src, const int *src_mask, int B, int S) {
    const ModelConfig *c = &m->cfg;
    if (!model_is_encdec(c)) {
        tt_err("model_encode: a decoder-only model has no encoder");
        return NULL;
    }
    if (B < 1 || S < 1) {
        tt_err("model_encode: empty batch");
        return NULL;
    }
    if (S > c->max_positions) {
        tt_err("source of %d tokens exceeds the model's %d positions", S, c->max_positions);
        return NULL;
    }
    if (check_ids(m, src, (long)B * S, "source")) return NULL;
    ModelActs *a = m->acts;
    /* The decoder part of the arena is planned for one target token. */
    if (!a || a->B != B || a->S != S || a->T != 1 || a->mode != FWD_INFER || a->scratch_threads != tt_threads())
        if (model_reserve(m, B, S, 1, 0)) return NULL;
    a = m->acts;
    stack_forward(m, &a->enc, 1, src, B, S, src_mask, 0, NULL, NULL, 0, 0);
    return a->enc.out;
}

real *model_hidden(Model *m) { return m->acts ? m->acts->dec.out : NULL; }
real *model_hidden_grad(Model *m) { return m->acts ? m->acts->d_hidden : NULL; }

const real *model_attention_probs(const Model *m, int which, int layer) {
    const ModelActs *a = m->acts;
    if (!a || !fwd_keeps(a->mode)) return NULL;
    const ModelConfig *c = &m->cfg;
    if (which == 0) return layer < c->enc_layers ? a->enc.blocks[2 * layer].probs : NULL;
    int per_layer = c->arch == ARCH_GPT2 ? 2 : 3;
    if (layer >= c->dec_layers) return NULL;
    if (which == 1) return a->dec.blocks[per_layer * layer].probs;
    return per_layer == 3 ? a->dec.blocks[per_layer * layer + 1].probs : NULL;
}

/* The last layer's attention block of a kind (0 encoder self, 1 decoder self, 2 cross); in an
 * inference forward every layer shares its buffers, which then hold the last layer's. */
static BlockActs *last_attention_block(Model *m, int which) {
    ModelActs *a = m->acts;
    const ModelConfig *c = &m->cfg;
    if (!a) return NULL;
    int keep = fwd_keeps(a->mode);
    if (which == 0) {
        if (!model_is_encdec(c) || c->enc_layers < 1) return NULL;
        return &a->enc.blocks[keep ? 2 * (c->enc_layers - 1) : 0];
    }
    int per_layer = c->arch == ARCH_GPT2 ? 2 : 3;
    if (which == 2 && per_layer == 2) return NULL;
    if (which != 1 && which != 2) return NULL;
    return &a->dec.blocks[(keep ? per_layer * (c->dec_layers - 1) : 0) + (which == 2)];
}

int model_attention_qkv(Model *m, int which, AttnQKV *out) {
    BlockActs *k = last_attention_block(m, which);
    if (!k || !k->q) return tt_err("model_attention_qkv: no attention of kind %d after this forward", which);
    const ModelActs *a = m->acts;
    const ModelConfig *c = &m->cfg;
    int C = c->d_model;
    out->C = C;
    out->heads = which == 0 ? c->enc_heads : c->dec_heads;
    out->B = a->B;
    if (which == 2) {
        out->Tq = a->T, out->Tk = a->S;
        out->q = k->q, out->ldq = C;
        out->k = k->kv, out->v = k->kv + C, out->ldkv = 2 * C;
    } else {
        out->Tq = out->Tk = which == 0 ? a->S : a->T;
        out->q = k->q, out->ldq = 3 * C;
        out->k = k->q + C, out->v = k->q + 2 * C, out->ldkv = 3 * C;
    }
    return 0;
}

int model_attention_qkv_grad(Model *m, int which, int zero, AttnQKVGrad *out) {
    BlockActs *k = last_attention_block(m, which);
    ModelActs *a = m->acts;
    if (!k || !k->q || !fwd_keeps(a->mode))
        return tt_err("model_attention_qkv_grad: needs a forward that keeps activations");
    const ModelConfig *c = &m->cfg;
    long C = c->d_model, N = (long)a->B * (which == 0 ? a->S : a->T), Ns = (long)a->B * a->S;
    size_t need = which == 2 ? (size_t)(N * C + Ns * 2 * C) : (size_t)(N * 3 * C);
    if (need > a->qkv_grad_cap[which]) {
        free(a->qkv_grad[which]);
        a->qkv_grad[which] = malloc(need * sizeof(real));
        a->qkv_grad_cap[which] = a->qkv_grad[which] ? need : 0;
        if (!a->qkv_grad[which]) return tt_err("out of memory");
    }
    real *g = a->qkv_grad[which];
    if (zero || k->extra_dq != g) memset(g, 0, need * sizeof(real));
    k->extra_dq = g;
    if (which == 2) {
        k->extra_dkv = g + N * C;
        out->dq = g, out->ldq = (int)C;
        out->dk = g + N * C, out->dv = g + N * C + C, out->ldkv = (int)(2 * C);
    } else {
        k->extra_dkv = NULL;
        out->dq = g, out->ldq = (int)(3 * C);
        out->dk = g + C, out->dv = g + 2 * C, out->ldkv = (int)(3 * C);
    }
    return 0;
}

/* The output projection's int8 form when the model has one and runs inference. */
static const Q8Weights *q8_head(const Model *m) {
#if REAL_IS_DOUBLE
    (void)m;
    return NULL;
#else
    return m->q8 && m->acts && m->acts->mode == FWD_INFER ? &m->q8->lm_head : NULL;
#endif
}

void model_logits(Model *m, int row0, int n, real *out) {
    const ModelConfig *c = &m->cfg;
    lin(m, q8_head(m), out, c->vocab_size, model_hidden(m) + (long)row0 * c->d_model, m->p.lm_head,
        m->p.final_logits_bias, n, c->d_model, c->vocab_size, W_OUT_IN);
}

int model_chunk_rows(const Model *m) { return m->acts ? m->acts->chunk_rows : 256; }

static void gather_rows(real *out, const real *x, const int *rows, int n, int C) {
    for (int i = 0; i < n; i++) memcpy(out + (long)i * C, x + (long)rows[i] * C, (size_t)C * sizeof(real));
}

void model_logits_rows(Model *m, const int *rows, int n, real *out) {
    const ModelConfig *c = &m->cfg;
    ModelActs *a = m->acts;
    int C = c->d_model;
    for (int r0 = 0; r0 < n; r0 += a->chunk_rows) {
        int R = n - r0 < a->chunk_rows ? n - r0 : a->chunk_rows;
        gather_rows(a->row_x, model_hidden(m), rows + r0, R, C);
        lin(m, q8_head(m), out + (long)r0 * c->vocab_size, c->vocab_size, a->row_x, m->p.lm_head,
            m->p.final_logits_bias, R, C, c->vocab_size, W_OUT_IN);
    }
}

double model_token_loss(Model *m, const int *rows, long n_rows, TokenLossFn fn, void *ctx, int backward) {
    const ModelConfig *c = &m->cfg;
    ModelActs *a = m->acts;
    if (!a) {
        tt_err("model_token_loss: no forward pass yet");
        return NAN;
    }
    int grad = backward && fwd_keeps(a->mode) && m->grads;
    int C = c->d_model, V = c->vocab_size;
    double total = 0;
    for (long r0 = 0; r0 < n_rows; r0 += a->chunk_rows) {
        int R = n_rows - r0 < a->chunk_rows ? (int)(n_rows - r0) : a->chunk_rows;
        gather_rows(a->row_x, model_hidden(m), rows + r0, R, C);
        linear_forward(a->vocab_chunk, V, a->row_x, m->p.lm_head, m->p.final_logits_bias, R, C, V, W_OUT_IN);
        double loss = fn(ctx, rows + r0, R, a->vocab_chunk, grad);
        if (isnan(loss)) return NAN;
        total += loss;
        if (grad) {
            memset(a->row_dx, 0, (size_t)R * C * sizeof(real));
            linear_backward(a->row_dx, m->g.lm_head, m->g.final_logits_bias, a->vocab_chunk, V, a->row_x,
                            m->p.lm_head, R, C, V, W_OUT_IN);
            for (int i = 0; i < R; i++) {
                real *d = a->d_hidden + (long)rows[r0 + i] * C;
                const real *s = a->row_dx + (long)i * C;
                for (int k = 0; k < C; k++) d[k] += s[k];
            }
        }
    }
    return total;
}

double model_xent(Model *m, const Batch *b, double label_smoothing, int backward, double loss_scale,
                  long *n_tokens) {
    const ModelConfig *c = &m->cfg;
    ModelActs *a = m->acts;
    long N = (long)b->B * b->T, counted = 0;
    for (long i = 0; i < N; i++) counted += b->labels[i] != -100;
    if (n_tokens) *n_tokens = counted;
    if (counted == 0) return 0;
    int grad = backward && fwd_keeps(a->mode) && m->grads;
    double total = vocab_xent(model_hidden(m), m->p.lm_head, m->p.final_logits_bias, b->labels, (int)N,
                              c->d_model, c->vocab_size, label_smoothing, loss_scale / (double)counted,
                              grad ? a->d_hidden : NULL, grad ? m->g.lm_head : NULL,
                              grad ? m->g.final_logits_bias : NULL, a->vocab_chunk, a->chunk_rows, NULL);
    return total / (double)counted;
}

/* ---- backward ---- */

static void zero(real *x, long n) { memset(x, 0, (size_t)n * sizeof(real)); }

/* d_f: gradient of the sub-layer output before residual dropout; dx: where the gradient of
 * the sub-layer input goes: overwritten when dx_set, else added. */
static void sublayer_backward(const BlockCtx *x, BlockActs *k, const LayerParams *lp, LayerParams *gp,
                              int kind, const real *inp, const real *d_f, real *dx, int dx_set) {
    void (*lin_dx)(real *, real *, real *, const real *, int, const real *, const real *, int, int, int,
                   WeightLayout) = dx_set ? linear_backward_set : linear_backward;
    Model *m = x->m;
    ModelActs *a = m->acts;
    const ModelConfig *c = &m->cfg;
    int C = c->d_model, N = x->B * x->Tq;
    real scale = (real)(1.0 / sqrt((double)(C / x->H)));
    int gpt2 = c->arch == ARCH_GPT2;
    AttnDropout drop = {x->drop ? c->attn_dropout : 0, k->probs_drop, k->probs_mask, NULL};
    if (kind == BLOCK_SELF) {
        const AttnParams *w = &lp->self;
        AttnParams *g = &gp->self;
        WeightLayout lay = gpt2 ? W_IN_OUT : W_OUT_IN;
        linear_backward_set(a->d_att, g->o_w, g->o_b, d_f, C, k->att, w->o_w, N, C, C, lay);
        attention_backward(a->d_q, a->d_q + C, a->d_q + 2 * C, a->d_att, k->probs, k->q, 3 * C, k->q + C, 3 * C,
                           k->q + 2 * C, 3 * C, x->B, x->Tq, x->Tq, x->H, C, scale, &drop, a->att_scratch);
        if (k->extra_dq)
            for (long i = 0; i < (long)N * 3 * C; i++) a->d_q[i] += k->extra_dq[i];
        lin_dx(dx, g->q_w, g->q_b, a->d_q, 3 * C, inp, w->q_w, N, C, 3 * C, lay);
    } else if (kind == BLOCK_CROSS) {
        const AttnParams *w = &lp->cross;
        AttnParams *g = &gp->cross;
        int Ns = x->B * x->Tk;
        linear_backward_set(a->d_att, g->o_w, g->o_b, d_f, C, k->att, w->o_w, N, C, C, W_OUT_IN);
        attention_backward(a->d_q, a->d_kv, a->d_kv + C, a->d_att, k->probs, k->q, C, k->kv, 2 * C, k->kv + C,
                           2 * C, x->B, x->Tq, x->Tk, x->H, C, scale, &drop, a->att_scratch);
        if (k->extra_dq) {
            for (long i = 0; i < (long)N * C; i++) a->d_q[i] += k->extra_dq[i];
            for (long i = 0; i < (long)Ns * 2 * C; i++) a->d_kv[i] += k->extra_dkv[i];
        }
        lin_dx(dx, g->q_w, g->q_b, a->d_q, C, inp, w->q_w, N, C, C, W_OUT_IN);
        linear_backward(a->d_enc_out, g->k_w, g->k_b, a->d_kv, 2 * C, x->enc_out, w->k_w, Ns, C, 2 * C, W_OUT_IN);
    } else {
        WeightLayout lay = gpt2 ? W_IN_OUT : W_OUT_IN;
        long NF = (long)N * x->F;
        real *d_h3 = a->d_h3, *d_h2 = k->h3 != k->h2 ? a->d_h2 : a->d_h3;
        linear_backward_set(d_h3, gp->fc2_w, gp->fc2_b, d_f, C, k->h3, lp->fc2_w, N, x->F, C, lay);
        if (d_h2 != d_h3) {
            zero(d_h2, NF);
            dropout_backward(d_h2, k->h_mask, d_h3, NF, c->act_dropout);
        }
        gelu_backward_set(a->d_h1, k->h1, d_h2, NF, c->act);
        lin_dx(dx, gp->fc1_w, gp->fc1_b, a->d_h1, x->F, inp, lp->fc1_w, N, C, x->F, lay);
    }
}

/* On entry a->d_stream holds the gradient of k->out; on exit that of k->in. */
static void block_backward(const BlockCtx *x, BlockActs *k, const LayerParams *lp, LayerParams *gp, int kind) {
    Model *m = x->m;
    ModelActs *a = m->acts;
    const ModelConfig *c = &m->cfg;
    long N = (long)x->B * x->Tq, C = c->d_model;
    const real *lw, *lb;
    real *glw, *glb;
    block_ln_params(lp, kind, &lw, &lb);
    {
        const real *w2, *b2;
        block_ln_params(gp, kind, &w2, &b2);
        glw = (real *)w2;
        glb = (real *)b2;
    }
    if (model_is_preln(c)) {
        const real *d_f = a->d_stream;
        if (k->f_out != k->f_pre) {
            zero(a->d_f, N * C);
            dropout_backward(a->d_f, k->f_mask, a->d_stream, N * C, c->dropout);
            d_f = a->d_f;
        }
        sublayer_backward(x, k, lp, gp, kind, k->ln_out, d_f, a->d_ln, 1);
        layernorm_backward(a->d_stream, glw, glb, a->d_ln, k->in, lw, k->ln_mean, k->ln_rstd, (int)N, (int)C);
    } else {
        zero(a->d_sum, N * C);
        layernorm_backward(a->d_sum, glw, glb, a->d_stream, k->sum, lw, k->ln_mean, k->ln_rstd, (int)N, (int)C);
        memcpy(a->d_stream, a->d_sum, (size_t)(N * C) * sizeof(real));
        const real *d_f = a->d_sum;
        if (k->f_out != k->f_pre) {
            zero(a->d_f, N * C);
            dropout_backward(a->d_f, k->f_mask, a->d_sum, N * C, c->dropout);
            d_f = a->d_f;
        }
        sublayer_backward(x, k, lp, gp, kind, k->in, d_f, a->d_stream, 0);
    }
}

/* d_out: gradient of the stack's output (B*T, C). */
static void stack_backward(Model *m, StackActs *s, int enc, const int *ids, int B, int T, const int *self_mask,
                           int causal, const real *enc_out, const int *src_mask, int S, const real *d_out) {
    const ModelConfig *c = &m->cfg;
    ModelActs *a = m->acts;
    long N = (long)B * T, C = c->d_model;
    int per_layer = enc || c->arch == ARCH_GPT2 ? 2 : 3;
    int layers = enc ? c->enc_layers : c->dec_layers;
    LayerParams *lps = enc ? m->p.enc : m->p.dec, *gps = enc ? m->g.enc : m->g.dec;
    if (s->final_out) {
        zero(a->d_stream, N * C);
        layernorm_backward(a->d_stream, enc ? m->g.enc_ln_final_w : m->g.dec_ln_final_w,
                           enc ? m->g.enc_ln_final_b : m->g.dec_ln_final_b, d_out, s->blocks[s->n_blocks - 1].out,
                           enc ? m->p.enc_ln_final_w : m->p.dec_ln_final_w, s->final_mean, s->final_rstd, (int)N,
                           (int)C);
    } else {
        memcpy(a->d_stream, d_out, (size_t)(N * C) * sizeof(real));
    }
    for (int l = layers - 1; l >= 0; l--) {
        for (int j = per_layer - 1; j >= 0; j--) {
            int kind = j == 0 ? BLOCK_SELF : (j == per_layer - 1 ? BLOCK_FFN : BLOCK_CROSS);
            BlockCtx x = {m, fwd_drops(m->acts->mode), B, T, T, enc ? c->enc_heads : c->dec_heads, enc ? c->enc_ffn : c->dec_ffn,
                          NULL, self_mask, causal};
            if (kind == BLOCK_CROSS) {
                x.Tk = S;
                x.enc_out = enc_out;
                x.key_mask = src_mask;
                x.causal = 0;
            }
            block_backward(&x, &s->blocks[l * per_layer + j], &lps[l], &gps[l], kind);
        }
    }
    /* embeddings: x0 = dropout(LN_emb(scale * tok + pos)) */
    real *d = a->d_stream;
    if (s->x0 != s->emb_out) {
        zero(a->d_emb, N * C);
        dropout_backward(a->d_emb, s->emb_mask, a->d_stream, N * C, c->dropout);
        d = a->d_emb;
    }
    if (c->arch != ARCH_GPT2) {
        real *d_in = d == a->d_emb ? a->d_sum : a->d_emb;
        zero(d_in, N * C);
        layernorm_backward(d_in, enc ? m->g.enc_ln_emb_w : m->g.dec_ln_emb_w, enc ? m->g.enc_ln_emb_b : m->g.dec_ln_emb_b,
                           d, s->emb, enc ? m->p.enc_ln_emb_w : m->p.dec_ln_emb_w, s->emb_mean, s->emb_rstd, (int)N,
                           (int)C);
        d = d_in;
    }
    real scale = c->scale_embedding ? (real)sqrt((double)C) : 1;
    embedding_backward(m->g.tok_emb, enc ? m->g.enc_pos : m->g.dec_pos, d, ids, B, T, (int)C, scale,
                       c->arch == ARCH_GPT2 ? 0 : 2);
}

int model_backward(Model *m, const Batch *b) {
    ModelActs *a = m->acts;
    if (!m->grads) return tt_err("model_backward: gradients not allocated");
    if (!a || !fwd_keeps(a->mode)) return tt_err("model_backward: needs a forward that keeps activations first");
    const ModelConfig *c = &m->cfg;
    if (model_is_encdec(c)) {
        zero(a->d_enc_out, (long)b->B * b->S * c->d_model);
        stack_backward(m, &a->dec, 0, b->tgt_in, b->B, b->T, b->tgt_mask, 1, a->enc.out, b->src_mask, b->S,
                       a->d_hidden);
        stack_backward(m, &a->enc, 1, b->src, b->B, b->S, b->src_mask, 0, NULL, NULL, 0, a->d_enc_out);
    } else {
        stack_backward(m, &a->dec, 0, b->tgt_in, b->B, b->T, b->tgt_mask, 1, NULL, NULL, 0, a->d_hidden);
    }
    return 0;
}
