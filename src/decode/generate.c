/* generate.c: greedy search, sampling and beam search over a batch of inputs, on the
 * incremental decoder of decoder_step.c. Each step chooses tokens for every live hypothesis
 * (per input, in parallel), then compacts the survivors into the next step's rows: finished
 * hypotheses and finished inputs leave the batch's work. Beam search follows Hugging Face's
 * BeamSearchScorer / BeamHypotheses (transformers 4.36) rule for rule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode_internal.h"
#include "kernels/fastmath.h"

typedef struct {
    int input, k;          /* batch input; return index (sampling) or beam index */
    int len, n_new;        /* tokens in seq; new ones among them */
    int row;               /* logits row of this hypothesis */
    double raw_lp, beam_score;
    int *seq, *table;      /* (max_seq) tokens; pool rows of positions */
} Slot;

typedef struct {
    int parent, tok;
    double raw_lp, beam_score;
} Decision;

typedef struct {
    double score, raw_lp;
    int n, order;          /* tokens; insertion order */
    int *tokens;
} BeamEntry;

typedef struct {
    int prompt_len, max_new, done;
    int slot_begin, slot_count;
    int n_dec;
    Decision *dec;
    Rng rng;
    int n_hyps, n_inserted;
    double worst;
    BeamEntry *hyps;       /* num_beams + 1 */
} InputState;

typedef struct {
    real score;
    int idx;               /* beam * V + token */
} Cand;

enum { GROUP_ROWS = 16 };

struct Generator {
    Model *m;
    GenConfig g;
    int beam;              /* beam search (num_beams > 1, or forced for tests) */
    int V, R, K, max_inputs, max_src, max_new_cap, max_seq, max_slots;
    DecodeCache dc;
    Slot *slots[2];
    int *seq_store[2], *tab_store[2];
    int cur;               /* which of the two slot buffers is current */
    int n_slots;
    int *proto_seq, *proto_tab; /* (max_inputs, max_seq) first step, before expansion */
    real *logits;          /* (max(max_slots, max_inputs), V) */
    double *row_lse;       /* log-sum-exp of each logits row */
    int *row_tok, *row_pos, *row_input, *logit_rows;
    int *active;           /* (max_inputs) inputs still decoding */
    int **row_table;
    InputState *in;
    Decision *dec_store;
    BeamEntry *entry_store;
    int *entry_tokens;
    GenOutput *outs;
    GenHypothesis *out_hyps;
    int *out_tokens;
    int parts;
    real *work;           /* (parts, 3V) */
    int *iwork;            /* (parts, V) */
    unsigned char *mark;   /* (parts, V) */
    Cand *cand;            /* (parts, 2 * num_beams) */
    /* int8 models: the logits are made in the choice's parallel region, a group of at most
     * group_rows rows at a time into each part's own buffer, so that they are read back from
     * cache (a whole step's, 128 x 8,001 floats at beam 4 batch 32, are not) */
    int defer, group_rows;
    real *glogits;         /* (parts, group_rows, V) */
    int *grow0;            /* (parts) the first row in each part's buffer */
    Q8Scratch *gscratch;   /* (parts) */
    const int *const *src;
    const int *src_len;
    /* continuous batching (generator_serve) */
    unsigned char *in_use;  /* (max_inputs) input slot holds a live input */
    void **tags;            /* (max_inputs) the caller's tag of each live input */
};

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void generator_free(Generator *gen) {
    if (!gen) return;
    decode_cache_free(&gen->dc);
    for (int i = 0; i < 2; i++) {
        tt_free(gen->slots[i]);
        tt_free(gen->seq_store[i]);
        tt_free(gen->tab_store[i]);
    }
    tt_free(gen->proto_seq);
    tt_free(gen->proto_tab);
    tt_free(gen->logits);
    tt_free(gen->row_lse);
    tt_free(gen->row_tok);
    tt_free(gen->row_pos);
    tt_free(gen->row_input);
    tt_free(gen->logit_rows);
    tt_free(gen->active);
    tt_free(gen->row_table);
    tt_free(gen->in);
    tt_free(gen->dec_store);
    tt_free(gen->entry_store);
    tt_free(gen->entry_tokens);
    tt_free(gen->outs);
    tt_free(gen->out_hyps);
    tt_free(gen->out_tokens);
    tt_free(gen->work);
    tt_free(gen->iwork);
    tt_free(gen->mark);
    tt_free(gen->cand);
    tt_free(gen->glogits);
    tt_free(gen->grow0);
    if (gen->gscratch)
        for (int p = 0; p < gen->parts; p++) q8_scratch_free(&gen->gscratch[p]);
    tt_free(gen->gscratch);
    tt_free(gen->in_use);
    tt_free(gen->tags);
    free(gen);
}

Generator *generator_new(Model *m, const GenConfig *g, int max_inputs, int max_src_tokens) {
    return generator_new_pooled(m, g, max_inputs, max_src_tokens, 0);
}

Generator *generator_new_pooled(Model *m, const GenConfig *g, int max_inputs, int max_src_tokens, int waves) {
    if (gen_config_check(g)) return NULL;
    const ModelConfig *c = &m->cfg;
    int encdec = model_is_encdec(c);
    if (max_inputs < 1 || max_src_tokens < 1) {
        tt_err("generator_new: max_inputs and max_src_tokens must be positive");
        return NULL;
    }
    if (g->eos_id >= c->vocab_size || g->forced_eos_id >= c->vocab_size || g->forced_bos_id >= c->vocab_size ||
        g->decoder_start_id >= c->vocab_size) {
        tt_err("generation config: a token id is outside the model's vocabulary of %d", c->vocab_size);
        return NULL;
    }
    if (encdec && g->decoder_start_id < 0 && g->bos_id < 0) {
        tt_err("generation config: an encoder-decoder needs decoder_start_token_id (or bos_token_id)");
        return NULL;
    }
    if (encdec && max_src_tokens > c->max_positions) max_src_tokens = c->max_positions;
    Generator *gen = calloc(1, sizeof *gen);
    if (!gen) {
        tt_err("out of memory");
        return NULL;
    }
    gen->m = m;
    gen->g = *g;
    gen->V = c->vocab_size;
    gen->beam = g->num_beams > 1;
    gen->R = g->num_beams > 1 ? g->num_beams : g->num_return_sequences;
    gen->K = g->num_return_sequences;
    gen->max_inputs = max_inputs;
    gen->max_src = max_src_tokens;
    gen->max_new_cap = gen_max_new_tokens(g, c, 1);
    if (gen->max_new_cap < 1) {
        generator_free(gen);
        tt_err("generation config allows no new token");
        return NULL;
    }
    int max_ctx = encdec ? gen->max_new_cap : max_src_tokens + gen->max_new_cap;
    if (max_ctx > c->max_positions + 1) max_ctx = c->max_positions + 1;
    gen->max_seq = max_ctx + 1;
    gen->max_slots = max_inputs * gen->R;
    int first_rows = encdec ? max_inputs : max_inputs * max_src_tokens;
    int step_rows = first_rows > gen->max_slots ? first_rows : gen->max_slots;
    long pool = (long)first_rows + (long)(gen->max_new_cap - 1) * gen->max_slots;
    /* generator_serve: room for `waves` full batches of inputs joining before the pool is
     * reclaimed (when nothing decodes) */
    if (waves > 0) pool = (long)waves * ((long)gen->max_slots * (gen->max_new_cap + 1) + (encdec ? 0 : (long)max_inputs * max_src_tokens));
    if (!g->full_recompute && decode_cache_init(&gen->dc, m, step_rows, pool, max_ctx, max_inputs, max_src_tokens)) {
        free(gen);
        return NULL;
    }
    size_t I = sizeof(int), S = (size_t)gen->max_slots, Q = (size_t)gen->max_seq, V = (size_t)gen->V;
    int nb = g->num_beams;
    gen->parts = tt_threads();
    int rows_logits = gen->max_slots > max_inputs ? gen->max_slots : max_inputs;
#if !REAL_IS_DOUBLE
    gen->defer = m->q8 != NULL && !g->full_recompute;
#endif

    for (int i = 0; i < 2; i++) {
        gen->slots[i] = tt_alloc(sizeof(Slot) * S);
        gen->seq_store[i] = tt_alloc(I * S * Q);
        gen->tab_store[i] = tt_alloc(I * S * Q);
    }
    gen->proto_seq = tt_alloc(I * (size_t)max_inputs * Q);
    gen->proto_tab = tt_alloc(I * (size_t)max_inputs * Q);
    /* deferred, the logits live in the parts' group buffers */
    gen->logits = tt_alloc(sizeof(real) * (size_t)(gen->defer ? 1 : rows_logits) * V);
    gen->row_lse = tt_alloc(sizeof(double) * (size_t)rows_logits);
    gen->row_tok = tt_alloc(I * (size_t)step_rows);
    gen->row_pos = tt_alloc(I * (size_t)step_rows);
    gen->row_input = tt_alloc(I * (size_t)step_rows);
    gen->logit_rows = tt_alloc(I * (size_t)step_rows);
    gen->row_table = tt_alloc(sizeof(int *) * (size_t)step_rows);
    gen->active = tt_alloc(I * (size_t)max_inputs);
    gen->in = tt_alloc(sizeof(InputState) * (size_t)max_inputs);
    gen->dec_store = tt_alloc(sizeof(Decision) * S);
    gen->entry_store = tt_alloc(sizeof(BeamEntry) * (size_t)max_inputs * (nb + 1));
    gen->entry_tokens = tt_alloc(I * (size_t)max_inputs * (nb + 1) * gen->max_new_cap);
    gen->outs = tt_alloc(sizeof(GenOutput) * (size_t)max_inputs);
    gen->out_hyps = tt_alloc(sizeof(GenHypothesis) * (size_t)max_inputs * gen->K);
    gen->out_tokens = tt_alloc(I * (size_t)max_inputs * gen->K * gen->max_new_cap);
    gen->work = tt_alloc(sizeof(real) * (size_t)gen->parts * 3 * V);
    gen->iwork = tt_alloc(I * (size_t)gen->parts * V);
    gen->mark = tt_alloc((size_t)gen->parts * V);
    gen->cand = tt_alloc(sizeof(Cand) * (size_t)gen->parts * 2 * nb);
    gen->in_use = tt_alloc((size_t)max_inputs);
    gen->tags = tt_alloc(sizeof(void *) * (size_t)max_inputs);
    if (gen->defer) {
        /* 16 rows: 512 KB of logits at a vocabulary of 8,000, beside the int8 output layer */
        gen->group_rows = gen->R > GROUP_ROWS ? gen->R : GROUP_ROWS;
        gen->glogits = tt_alloc(sizeof(real) * (size_t)gen->parts * gen->group_rows * V);
        gen->grow0 = tt_alloc(I * (size_t)gen->parts);
        gen->gscratch = tt_alloc(sizeof(Q8Scratch) * (size_t)gen->parts);
    }
    int ok = gen->proto_seq && gen->proto_tab && gen->logits && gen->row_lse && gen->row_tok && gen->row_pos && gen->row_input &&
             gen->logit_rows && gen->row_table && gen->active && gen->in && gen->dec_store && gen->entry_store && gen->entry_tokens &&
             gen->outs && gen->out_hyps && gen->out_tokens && gen->work && gen->iwork && gen->mark && gen->cand &&
             gen->in_use && gen->tags;
    for (int i = 0; i < 2; i++) ok = ok && gen->slots[i] && gen->seq_store[i] && gen->tab_store[i];
    if (gen->defer) ok = ok && gen->glogits && gen->grow0 && gen->gscratch;
    if (!ok) {
        generator_free(gen);
        tt_err_wrap("generation buffers");
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        for (size_t s = 0; s < S; s++) {
            gen->slots[i][s].seq = gen->seq_store[i] + s * Q;
            gen->slots[i][s].table = gen->tab_store[i] + s * Q;
        }
    for (int i = 0; i < max_inputs; i++) {
        gen->in[i].dec = gen->dec_store + (size_t)i * gen->R;
        gen->in[i].hyps = gen->entry_store + (size_t)i * (nb + 1);
        for (int e = 0; e < nb + 1; e++)
            gen->in[i].hyps[e].tokens = gen->entry_tokens + ((size_t)i * (nb + 1) + e) * gen->max_new_cap;
        gen->outs[i].n = gen->K;
        gen->outs[i].hyps = gen->out_hyps + (size_t)i * gen->K;
        for (int k = 0; k < gen->K; k++)
            gen->outs[i].hyps[k].tokens = gen->out_tokens + ((size_t)i * gen->K + k) * gen->max_new_cap;
    }
    return gen;
}

void generator_use_beam_search(Generator *gen) { gen->beam = 1; }

/* ---- running the model ---- */

/* Logits of every current slot (row = slot index), from the cache or, in testing mode, by
 * running the model over each whole prefix. */
static int model_step(Generator *gen) {
    Slot *sl = gen->slots[gen->cur];
    int n = gen->n_slots, V = gen->V;
    if (gen->g.full_recompute) {
        Model *m = gen->m;
        for (int i = 0; i < n; i++) {
            const Slot *s = &sl[i];
            Batch b = {0};
            b.B = 1;
            b.T = s->len;
            b.tgt_in = s->seq;
            if (model_is_encdec(&m->cfg)) {
                b.S = gen->src_len[s->input];
                b.src = gen->src[s->input];
            }
            if (model_forward(m, &b, 0)) return -1;
            model_logits(m, s->len - 1, 1, gen->logits + (long)i * V);
        }
        return 0;
    }
    for (int i = 0; i < n; i++) {
        gen->row_tok[i] = sl[i].seq[sl[i].len - 1];
        gen->row_pos[i] = sl[i].len - 1;
        gen->row_input[i] = sl[i].input;
        gen->row_table[i] = sl[i].table;
        gen->logit_rows[i] = i;
    }
    StepRows r = {n, gen->row_tok, gen->row_pos, gen->row_input, gen->row_table};
    return decode_step(&gen->dc, &r, gen->logit_rows, n, gen->defer ? NULL : gen->logits);
}

/* The first step: one row per input (the decoder start token, or the whole prompt fed at
 * once); then each input's R hypotheses are made, all reading that input's logits row. */
static int first_step(Generator *gen, int n) {
    const ModelConfig *c = &gen->m->cfg;
    int encdec = model_is_encdec(c), Q = gen->max_seq, V = gen->V;
    int start = gen->g.decoder_start_id >= 0 ? gen->g.decoder_start_id : gen->g.bos_id;
    for (int i = 0; i < n; i++) {
        int *seq = gen->proto_seq + (long)i * Q;
        if (encdec) seq[0] = start;
        else memcpy(seq, gen->src[i], sizeof(int) * (size_t)gen->src_len[i]);
        gen->in[i].prompt_len = encdec ? 1 : gen->src_len[i];
    }
    if (gen->g.full_recompute) {
        Model *m = gen->m;
        for (int i = 0; i < n; i++) {
            Batch b = {0};
            b.B = 1;
            b.T = gen->in[i].prompt_len;
            b.tgt_in = gen->proto_seq + (long)i * Q;
            if (encdec) {
                b.S = gen->src_len[i];
                b.src = gen->src[i];
            }
            if (model_forward(m, &b, 0)) return -1;
            model_logits(m, b.T - 1, 1, gen->logits + (long)i * V);
        }
    } else {
        int M = 0;
        for (int i = 0; i < n; i++) {
            int *tab = gen->proto_tab + (long)i * Q, *seq = gen->proto_seq + (long)i * Q;
            for (int p = 0; p < gen->in[i].prompt_len; p++, M++) {
                gen->row_tok[M] = seq[p];
                gen->row_pos[M] = p;
                gen->row_input[M] = i;
                gen->row_table[M] = tab;
            }
            gen->logit_rows[i] = M - 1;
        }
        StepRows r = {M, gen->row_tok, gen->row_pos, gen->row_input, gen->row_table};
        if (decode_step(&gen->dc, &r, gen->logit_rows, n, gen->defer ? NULL : gen->logits)) return -1;
    }
    gen->cur = 0;
    Slot *sl = gen->slots[0];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        InputState *in = &gen->in[i];
        in->slot_begin = ns;
        in->slot_count = gen->R;
        for (int k = 0; k < gen->R; k++, ns++) {
            Slot *s = &sl[ns];
            s->input = i;
            s->k = k;
            s->len = in->prompt_len;
            s->n_new = 0;
            s->row = i;
            s->raw_lp = 0;
            /* HF starts beams 1.. at -1e9 so that the first step expands beam 0 only */
            s->beam_score = k == 0 ? 0 : -1e9;
            memcpy(s->seq, gen->proto_seq + (long)i * Q, sizeof(int) * (size_t)s->len);
            memcpy(s->table, gen->proto_tab + (long)i * Q, sizeof(int) * (size_t)s->len);
        }
    }
    gen->n_slots = ns;
    return 0;
}

/* ---- choosing tokens ---- */

/* The logits of a row: in the part's group buffer when they are made there, else in the
 * step's. */
static inline const real *logit_row(const Generator *gen, int part, int row) {
    if (gen->defer) return gen->glogits + ((size_t)part * gen->group_rows + (size_t)(row - gen->grow0[part])) * gen->V;
    return gen->logits + (size_t)row * gen->V;
}

static void finish_result(Generator *gen, int input, int k, const Slot *s, int tok, double raw_lp, double score) {
    GenHypothesis *h = &gen->outs[input].hyps[k];
    int *t = (int *)h->tokens;
    int p = gen->in[input].prompt_len;
    memcpy(t, s->seq + p, sizeof(int) * (size_t)s->n_new);
    int n = s->n_new;
    if (tok >= 0) t[n++] = tok;
    h->n_tokens = n;
    h->logprob = raw_lp;
    h->score = score;
}

static void choose_greedy_or_sample(Generator *gen, int i, int part) {
    InputState *in = &gen->in[i];
    const GenConfig *g = &gen->g;
    int V = gen->V;
    real *scores = gen->work + (size_t)part * 3 * V, *work = scores + V;
    Slot *sl = gen->slots[gen->cur];
    in->n_dec = 0;
    for (int j = 0; j < in->slot_count; j++) {
        int si = in->slot_begin + j;
        const Slot *s = &sl[si];
        const real *row = logit_row(gen, part, s->row);
        double lse = gen->row_lse[s->row];
        memcpy(scores, row, sizeof(real) * (size_t)V);
        HypView hv = {s->seq, s->len, s->n_new, in->max_new};
        logits_process(g, &hv, scores, V, gen->mark + (size_t)part * V);
        int tok;
        if (g->do_sample) {
            logits_warp(g, scores, V, work, gen->iwork + (size_t)part * V);
            tok = sample_from_scores(scores, V, rng_uniform(&in->rng));
        } else {
            tok = argmax_scores(scores, V);
        }
        double lp = s->raw_lp + (double)row[tok] - lse;
        if (tok == g->eos_id || s->n_new + 1 >= in->max_new) {
            finish_result(gen, i, s->k, s, tok, lp, lp);
        } else {
            Decision *d = &in->dec[in->n_dec++];
            d->parent = si;
            d->tok = tok;
            d->raw_lp = lp;
            d->beam_score = 0;
        }
    }
    in->done = in->n_dec == 0;
}

/* HF's BeamHypotheses.add: score = sum_logprobs / generated_len ** length_penalty; keeps the
 * num_beams best, worst_score the lowest kept. */
static void beam_add(Generator *gen, InputState *in, const Slot *parent, int tok, double sum_logprobs, int gen_len,
                     double raw_lp) {
    const GenConfig *g = &gen->g;
    int nb = g->num_beams;
    double score = sum_logprobs / pow((double)gen_len, g->length_penalty);
    if (!(in->n_hyps < nb || score > in->worst)) return;
    BeamEntry *e = &in->hyps[in->n_hyps++];
    e->score = score;
    e->raw_lp = raw_lp;
    e->order = in->n_inserted++;
    int p = in->prompt_len;
    memcpy(e->tokens, parent->seq + p, sizeof(int) * (size_t)parent->n_new);
    e->n = parent->n_new;
    if (tok >= 0) e->tokens[e->n++] = tok;
    if (in->n_hyps > nb) {
        /* drop the lowest (score, index) as Python's sorted() orders them */
        int lo = 0;
        for (int j = 1; j < in->n_hyps; j++)
            if (in->hyps[j].score < in->hyps[lo].score) lo = j;
        BeamEntry dropped = in->hyps[lo];
        memmove(&in->hyps[lo], &in->hyps[lo + 1], sizeof(BeamEntry) * (size_t)(in->n_hyps - lo - 1));
        in->hyps[in->n_hyps - 1] = dropped; /* keep its token buffer for reuse */
        in->n_hyps--;
        double w = INFINITY;
        for (int j = 0; j < in->n_hyps; j++) w = in->hyps[j].score < w ? in->hyps[j].score : w;
        in->worst = w;
    } else {
        in->worst = score < in->worst ? score : in->worst;
    }
}

static int beam_is_done(const Generator *gen, const InputState *in, double best_sum, int cur_new) {
    const GenConfig *g = &gen->g;
    if (in->n_hyps < g->num_beams) return 0;
    if (g->early_stopping == EARLY_STOP_TRUE) return 1;
    double denom = cur_new;
    if (g->early_stopping == EARLY_STOP_NEVER && g->length_penalty > 0) denom = in->max_new;
    return in->worst >= best_sum / pow(denom, g->length_penalty);
}

/* HF's finalize: the num_return_sequences best, by score (ties: the later added first). */
static void beam_output(Generator *gen, int i) {
    InputState *in = &gen->in[i];
    unsigned char taken[512] = {0};
    for (int k = 0; k < gen->K; k++) {
        int best = -1;
        for (int j = 0; j < in->n_hyps; j++) {
            if (taken[j]) continue;
            if (best < 0 || in->hyps[j].score > in->hyps[best].score ||
                (in->hyps[j].score == in->hyps[best].score && in->hyps[j].order > in->hyps[best].order))
                best = j;
        }
        GenHypothesis *h = &gen->outs[i].hyps[k];
        if (best < 0) {
            h->n_tokens = 0;
            h->score = h->logprob = -INFINITY;
            continue;
        }
        taken[best] = 1;
        const BeamEntry *e = &in->hyps[best];
        memcpy((int *)h->tokens, e->tokens, sizeof(int) * (size_t)e->n);
        h->n_tokens = e->n;
        h->score = e->score;
        h->logprob = e->raw_lp;
    }
}

static inline int cand_better(real s, int idx, const Cand *c) { return s > c->score || (s == c->score && idx < c->idx); }

static void choose_beam(Generator *gen, int i, int part) {
    InputState *in = &gen->in[i];
    const GenConfig *g = &gen->g;
    int V = gen->V, nb = g->num_beams, ncand = 2 * nb;
    real *scores = gen->work + (size_t)part * 3 * V;
    Cand *top = gen->cand + (size_t)part * ncand;
    Slot *sl = gen->slots[gen->cur];
    int have = 0;
    /* top 2*num_beams of beam_score + processed log-softmax over all (beam, token), kept
     * sorted best first (ties: lower beam*V + token first) */
    for (int b = 0; b < in->slot_count; b++) {
        const Slot *s = &sl[in->slot_begin + b];
        const real *row = logit_row(gen, part, s->row);
        real lse = (real)gen->row_lse[s->row];
        for (int v = 0; v < V; v++) scores[v] = row[v] - lse;
        HypView hv = {s->seq, s->len, s->n_new, in->max_new};
        logits_process(g, &hv, scores, V, gen->mark + (size_t)part * V);
        real bs = (real)s->beam_score;
        for (int v = 0; v < V; v++) {
#if !REAL_IS_DOUBLE
            /* once the list is full, 16 tokens at a time are skipped when none beats its
             * last entry: a later (beam, token) only enters with a strictly higher score,
             * equal scores going to the lower index */
            if (have == ncand && (v & 15) == 0) {
                real thr = top[ncand - 1].score;
                while (v + 16 <= V && !tt_any16_gt(scores + v, bs, thr)) v += 16;
                if (v >= V) break;
            }
#endif
            real c = scores[v] + bs;
            int idx = b * V + v;
            if (have == ncand && !cand_better(c, idx, &top[ncand - 1])) continue;
            int j = have < ncand ? have++ : ncand - 1;
            while (j > 0 && cand_better(c, idx, &top[j - 1])) {
                top[j] = top[j - 1];
                j--;
            }
            top[j].score = c;
            top[j].idx = idx;
        }
    }
    int cur_new = sl[in->slot_begin].n_new + 1;
    in->n_dec = 0;
    for (int rank = 0; rank < have && in->n_dec < nb; rank++) {
        int b = top[rank].idx / V, tok = top[rank].idx % V;
        const Slot *s = &sl[in->slot_begin + b];
        const real *row = logit_row(gen, part, s->row);
        double raw_lp = s->raw_lp + (double)row[tok] - gen->row_lse[s->row];
        if (tok == g->eos_id) {
            if (rank >= nb) continue;
            beam_add(gen, in, s, tok, top[rank].score, cur_new, raw_lp);
        } else {
            Decision *d = &in->dec[in->n_dec++];
            d->parent = in->slot_begin + b;
            d->tok = tok;
            d->raw_lp = raw_lp;
            d->beam_score = top[rank].score;
        }
    }
    int done = beam_is_done(gen, in, top[0].score, cur_new);
    if (!done && cur_new >= in->max_new) {
        /* max length: the open beams join the finished ones (HF's finalize) */
        for (int j = 0; j < in->n_dec; j++) {
            const Decision *d = &in->dec[j];
            beam_add(gen, in, &sl[d->parent], d->tok, d->beam_score, cur_new, d->raw_lp);
        }
        done = 1;
    }
    if (done) {
        in->n_dec = 0;
        beam_output(gen, i);
    }
    in->done = done;
}

typedef struct {
    Generator *gen;
    const int *active; /* inputs still decoding */
} ChooseJob;

/* The log-sum-exp of each logits row of input i (its slots' rows; slots sharing a row, as
 * the beams of a first step do, count it once), just before its choice reads the same rows:
 * they are still in cache (a whole step's logits are not, at 32 KB a row). */
static void input_lse(Generator *gen, int i, int part) {
    const InputState *in = &gen->in[i];
    const Slot *sl = gen->slots[gen->cur];
    int last = -1;
    for (int j = 0; j < in->slot_count; j++) {
        int r = sl[in->slot_begin + j].row;
        if (r == last) continue;
        gen->row_lse[r] = row_logsumexp(logit_row(gen, part, r), gen->V);
        last = r;
    }
}

/* The rows [lo, hi] of input i's slots. */
static void input_rows(const Generator *gen, int i, int *lo, int *hi) {
    const InputState *in = &gen->in[i];
    const Slot *sl = gen->slots[gen->cur];
    *lo = *hi = sl[in->slot_begin].row;
    for (int j = 1; j < in->slot_count; j++) {
        int r = sl[in->slot_begin + j].row;
        *lo = r < *lo ? r : *lo;
        *hi = r > *hi ? r : *hi;
    }
}

static void choose_one(Generator *gen, int i, int part) {
    input_lse(gen, i, part);
    if (gen->beam) choose_beam(gen, i, part);
    else choose_greedy_or_sample(gen, i, part);
}

static void choose_range(int begin, int end, int part, void *arg) {
    const ChooseJob *j = arg;
    Generator *gen = j->gen;
    if (!gen->defer) {
        for (int a = begin; a < end; a++) choose_one(gen, j->active[a], part);
        return;
    }
    /* inputs whose rows follow each other, at most group_rows of them: their logits made
     * into this part's buffer, then their choices */
    for (int a = begin; a < end;) {
        int lo, hi, b = a + 1;
        input_rows(gen, j->active[a], &lo, &hi);
        while (b < end) {
            int l2, h2;
            input_rows(gen, j->active[b], &l2, &h2);
            if (l2 != hi + 1 || h2 - lo + 1 > gen->group_rows) break;
            hi = h2;
            b++;
        }
        gen->grow0[part] = lo;
        decode_logits(&gen->dc, lo, hi - lo + 1, gen->glogits + (size_t)part * gen->group_rows * gen->V,
                      &gen->gscratch[part]);
        for (; a < b; a++) choose_one(gen, j->active[a], part);
    }
}

/* The parallel work of a step's choices: the scans of the vocabulary, and the output layer
 * when it is made there. */
static double choose_work(const Generator *gen) {
    double w = 12.0 * gen->n_slots * gen->V;
    if (gen->defer) w += 0.5 * (double)gen->n_slots * gen->V * gen->m->cfg.d_model;
    return w;
}

/* The next step's slots: each decision's parent copied, its token appended, input by input. */
static void compact(Generator *gen, const int *active, int n_active) {
    Slot *from = gen->slots[gen->cur], *to = gen->slots[1 - gen->cur];
    int ns = 0;
    for (int a = 0; a < n_active; a++) {
        InputState *in = &gen->in[active[a]];
        in->slot_begin = ns;
        in->slot_count = in->n_dec;
        for (int j = 0; j < in->n_dec; j++, ns++) {
            const Decision *d = &in->dec[j];
            const Slot *p = &from[d->parent];
            Slot *s = &to[ns];
            int *seq = s->seq, *tab = s->table;
            *s = *p;
            s->seq = seq;
            s->table = tab;
            memcpy(seq, p->seq, sizeof(int) * (size_t)p->len);
            memcpy(tab, p->table, sizeof(int) * (size_t)p->len);
            seq[s->len++] = d->tok;
            s->n_new++;
            s->row = ns;
            s->raw_lp = d->raw_lp;
            s->beam_score = d->beam_score;
            if (gen->beam) s->k = j;
        }
    }
    gen->cur = 1 - gen->cur;
    gen->n_slots = ns;
}

/* Input slot i's state for a new input: its budget, random stream (seed, stream) and empty
 * results. 0, or -1 naming what is wrong with the source. */
static int input_init(Generator *gen, int i, const int *src, int src_len, uint64_t stream, uint64_t seed) {
    const ModelConfig *c = &gen->m->cfg;
    if (src_len < 1) return tt_err("empty");
    if (src_len > gen->max_src) return tt_err("%d tokens, more than the %d planned", src_len, gen->max_src);
    for (int t = 0; t < src_len; t++)
        if (src[t] < 0 || src[t] >= gen->V) return tt_err("token id %d outside the vocabulary", src[t]);
    InputState *in = &gen->in[i];
    int prompt = model_is_encdec(c) ? 1 : src_len;
    in->prompt_len = prompt;
    in->max_new = gen_max_new_tokens(&gen->g, c, prompt);
    if (in->max_new > gen->max_new_cap) in->max_new = gen->max_new_cap;
    if (in->max_new < 1)
        return tt_err("a prompt of %d tokens leaves no room for new tokens (max_length %d, %d positions)", src_len,
                      gen->g.max_length, c->max_positions);
    in->done = 0;
    in->n_hyps = in->n_inserted = 0;
    in->worst = 1e9;
    rng_seed(&in->rng, mix64(seed ^ mix64(stream + 1)));
    for (int k = 0; k < gen->K; k++) gen->outs[i].hyps[k].n_tokens = 0;
    return 0;
}

int generator_run(Generator *gen, int n, const int *const *src, const int *src_len, const uint64_t *stream,
                  const GenOutput **out) {
    return generator_run_seeded(gen, n, src, src_len, stream, NULL, out);
}

int generator_run_seeded(Generator *gen, int n, const int *const *src, const int *src_len, const uint64_t *stream,
                         const uint64_t *seeds, const GenOutput **out) {
    if (n < 1 || n > gen->max_inputs) return tt_err("generator_run: %d inputs (planned for 1..%d)", n, gen->max_inputs);
    if (tt_threads() > gen->parts) return tt_err("generator_run: more threads than when the generator was made");
    for (int i = 0; i < n; i++)
        if (input_init(gen, i, src[i], src_len[i], stream ? stream[i] : (uint64_t)i, seeds ? seeds[i] : gen->g.seed))
            return tt_err_wrap("input %d", i);
    gen->src = src;
    gen->src_len = src_len;
    if (!gen->g.full_recompute && decode_cache_begin(&gen->dc, n, src, src_len)) return -1;
    if (first_step(gen, n)) return -1;
    int *list = gen->active, n_active = n;
    for (int i = 0; i < n; i++) list[i] = i;
    for (;;) {
        ChooseJob job = {gen, list};
        tt_parallel_range_work(n_active, choose_work(gen), choose_range, &job);
        int keep = 0;
        for (int a = 0; a < n_active; a++)
            if (!gen->in[list[a]].done) list[keep++] = list[a];
        n_active = keep;
        if (n_active == 0) break;
        compact(gen, list, n_active);
        if (model_step(gen)) return -1;
    }
    *out = gen->outs;
    return 0;
}

/* ---- continuous batching ---- */

/* The pool rows an input may still take: R hypotheses, one row per step each, until its
 * budget, plus a decoder-only prompt fed before its first step. */
static long input_rows_left(const Generator *gen, int i) {
    const InputState *in = &gen->in[i];
    int done_steps = 0;
    if (in->slot_count > 0) done_steps = gen->slots[gen->cur][in->slot_begin].n_new;
    return (long)gen->R * (in->max_new - done_steps + 1);
}

int generator_serve(Generator *gen, const GenServe *cb) {
    if (gen->g.full_recompute) return tt_err("generator_serve: not with full_recompute");
    if (tt_threads() > gen->parts) return tt_err("generator_serve: more threads than when the generator was made");
    const ModelConfig *c = &gen->m->cfg;
    int encdec = model_is_encdec(c), Q = gen->max_seq, R = gen->R;
    int start = gen->g.decoder_start_id >= 0 ? gen->g.decoder_start_id : gen->g.bos_id;
    int *list = gen->active, n_active = 0;
    memset(gen->in_use, 0, (size_t)gen->max_inputs);
    gen->dc.pool_used = 0;
    gen->n_slots = 0;
    gen->cur = 0;
    const int **nsrc = malloc(sizeof(int *) * (size_t)gen->max_inputs);
    int *nlen = malloc(sizeof(int) * (size_t)gen->max_inputs), *nslot = malloc(sizeof(int) * (size_t)gen->max_inputs);
    uint64_t *nstream = malloc(sizeof(uint64_t) * (size_t)gen->max_inputs);
    uint64_t *nseed = malloc(sizeof(uint64_t) * (size_t)gen->max_inputs);
    void **ntag = malloc(sizeof(void *) * (size_t)gen->max_inputs);
    int rc = nsrc && nlen && nslot && nstream && nseed && ntag ? 0 : tt_err("out of memory");
    while (!rc) {
        /* admission, at a step boundary: free input slots, and pool rows for every live
         * input's worst case plus the new ones' */
        int room = 0;
        for (int i = 0; i < gen->max_inputs; i++) room += !gen->in_use[i];
        long need = 0;
        for (int a = 0; a < n_active; a++) need += input_rows_left(gen, list[a]);
        long per_new = (long)R * (gen->max_new_cap + 1) + (encdec ? 0 : gen->max_src);
        long fit = (gen->dc.pool_cap - gen->dc.pool_used - need) / per_new;
        if (fit < room) room = fit > 0 ? (int)fit : 0;
        int k = room > 0 ? cb->admit(cb->ctx, room, nsrc, nlen, nstream, nseed, ntag) : 0;
        if (k < 0) k = 0;
        if (k > room) k = room;
        /* the new inputs: slots, state, sources */
        int added = 0;
        for (int q = 0; q < k; q++) {
            int b = 0;
            while (gen->in_use[b]) b++;
            if (input_init(gen, b, nsrc[q], nlen[q], nstream[q], nseed[q])) {
                /* a bad source is the caller's: answered as failed, the others go on */
                tt_err_wrap("input");
                gen->outs[b].n = 0;
                cb->done(cb->ctx, ntag[q], NULL);
                gen->outs[b].n = gen->K;
                continue;
            }
            gen->in_use[b] = 1;
            gen->tags[b] = ntag[q];
            nsrc[added] = nsrc[q], nlen[added] = nlen[q], nslot[added] = b;
            added++;
        }
        if (added && decode_cache_add(&gen->dc, added, nslot, nsrc, nlen)) {
            rc = -1;
            break;
        }
        if (!encdec && added) {
            /* a decoder-only prompt but its last token, fed now in one step; the last one goes
             * with the first decoding step, one row per hypothesis */
            int M = 0;
            for (int q = 0; q < added; q++) {
                int b = nslot[q], *tab = gen->proto_tab + (long)b * Q;
                for (int p = 0; p + 1 < nlen[q]; p++, M++) {
                    gen->row_tok[M] = nsrc[q][p], gen->row_pos[M] = p, gen->row_input[M] = b, gen->row_table[M] = tab;
                }
            }
            if (M) {
                StepRows r = {M, gen->row_tok, gen->row_pos, gen->row_input, gen->row_table};
                if (decode_step(&gen->dc, &r, NULL, 0, gen->logits)) {
                    rc = -1;
                    break;
                }
            }
        }
        Slot *sl = gen->slots[gen->cur];
        for (int q = 0; q < added; q++) {
            int b = nslot[q];
            InputState *in = &gen->in[b];
            int *seq = gen->proto_seq + (long)b * Q;
            if (encdec) seq[0] = start;
            else memcpy(seq, nsrc[q], sizeof(int) * (size_t)nlen[q]);
            in->slot_begin = gen->n_slots;
            in->slot_count = R;
            for (int kk = 0; kk < R; kk++) {
                Slot *x = &sl[gen->n_slots];
                x->input = b, x->k = kk, x->len = in->prompt_len, x->n_new = 0, x->row = gen->n_slots;
                x->raw_lp = 0;
                x->beam_score = kk == 0 ? 0 : -1e9;
                memcpy(x->seq, seq, sizeof(int) * (size_t)x->len);
                if (x->len > 1) memcpy(x->table, gen->proto_tab + (long)b * Q, sizeof(int) * (size_t)(x->len - 1));
                gen->n_slots++;
            }
            list[n_active++] = b;
        }
        if (n_active == 0) break;
        /* one step for every hypothesis: the newcomers' first, the others' next */
        if (model_step(gen)) {
            rc = -1;
            break;
        }
        ChooseJob job = {gen, list};
        tt_parallel_range_work(n_active, choose_work(gen), choose_range, &job);
        int keep = 0;
        for (int a = 0; a < n_active; a++) {
            int b = list[a];
            if (gen->in[b].done) {
                cb->done(cb->ctx, gen->tags[b], &gen->outs[b]);
                gen->in_use[b] = 0;
            } else {
                list[keep++] = b;
            }
        }
        n_active = keep;
        if (n_active) compact(gen, list, n_active);
        else gen->n_slots = 0, gen->dc.pool_used = 0; /* nothing references the pool any more */
    }
    free(nsrc), free(nlen), free(nslot), free(nstream), free(nseed), free(ntag);
    return rc;
}
