/* mixed.c: sampling from a mixture of two models' next-token distributions, token by token:
 * p_mix = alpha p_b + (1 - alpha) p_a (MiniLLM's teacher-mixed sampling: a the student, b the
 * teacher, alpha 0.2). Both models decode in lockstep with their own key/value caches; input
 * i draws from random stream (seed, stream[i]). Pure sampling: no logits processors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode_internal.h"

struct MixedSampler {
    Model *a, *b;
    DecodeCache da, db;
    int max_inputs, max_src, max_new, Q, V;
    int *tab_a, *tab_b, *seq, *len, *done, *out_tok, *out_n;
    int *row_tok, *row_pos, *row_input, *logit_rows;
    int **row_tab_a, **row_tab_b;
    real *la, *lb;
    double *pa, *pb, *lp; /* probabilities of a row, and log-softmax scratch */
};

void mixed_sampler_free(MixedSampler *s) {
    if (!s) return;
    decode_cache_free(&s->da);
    decode_cache_free(&s->db);
    free(s->tab_a), free(s->tab_b), free(s->seq), free(s->len), free(s->done), free(s->out_tok), free(s->out_n);
    free(s->row_tok), free(s->row_pos), free(s->row_input), free(s->logit_rows), free(s->row_tab_a), free(s->row_tab_b);
    tt_free(s->la), tt_free(s->lb);
    free(s->pa), free(s->pb), free(s->lp);
    free(s);
}

MixedSampler *mixed_sampler_new(Model *a, Model *b, int max_inputs, int max_src, int max_new) {
    const ModelConfig *ca = &a->cfg, *cb = &b->cfg;
    if (ca->vocab_size != cb->vocab_size || model_is_encdec(ca) != model_is_encdec(cb)) {
        tt_err("mixed sampling: the models differ in vocabulary or family");
        return NULL;
    }
    MixedSampler *s = calloc(1, sizeof *s);
    if (!s) return tt_err("out of memory"), NULL;
    s->a = a, s->b = b;
    s->max_inputs = max_inputs, s->max_src = max_src, s->max_new = max_new;
    int encdec = model_is_encdec(ca);
    int prompt = encdec ? 1 : max_src;
    s->Q = prompt + max_new + 1;
    s->V = ca->vocab_size;
    if (s->Q > ca->max_positions || s->Q > cb->max_positions) s->Q = ca->max_positions < cb->max_positions ? ca->max_positions : cb->max_positions;
    long pool = (long)max_inputs * s->Q;
    int rows = max_inputs * prompt;
    if (decode_cache_init(&s->da, a, rows, pool, s->Q, max_inputs, max_src) ||
        decode_cache_init(&s->db, b, rows, pool, s->Q, max_inputs, max_src)) {
        mixed_sampler_free(s);
        return NULL;
    }
    size_t nq = (size_t)max_inputs * s->Q;
    s->tab_a = malloc(sizeof(int) * nq), s->tab_b = malloc(sizeof(int) * nq), s->seq = malloc(sizeof(int) * nq);
    s->len = malloc(sizeof(int) * max_inputs), s->done = malloc(sizeof(int) * max_inputs);
    s->out_tok = malloc(sizeof(int) * (size_t)max_inputs * (max_new + 1)), s->out_n = malloc(sizeof(int) * max_inputs);
    s->row_tok = malloc(sizeof(int) * rows), s->row_pos = malloc(sizeof(int) * rows);
    s->row_input = malloc(sizeof(int) * rows), s->logit_rows = malloc(sizeof(int) * max_inputs);
    s->row_tab_a = malloc(sizeof(int *) * rows), s->row_tab_b = malloc(sizeof(int *) * rows);
    s->la = tt_alloc(sizeof(real) * (size_t)max_inputs * s->V), s->lb = tt_alloc(sizeof(real) * (size_t)max_inputs * s->V);
    s->pa = malloc(sizeof(double) * s->V), s->pb = malloc(sizeof(double) * s->V);
    s->lp = malloc(sizeof(double) * s->V);
    if (!s->tab_a || !s->tab_b || !s->seq || !s->len || !s->done || !s->out_tok || !s->out_n || !s->row_tok ||
        !s->row_pos || !s->row_input || !s->logit_rows || !s->row_tab_a || !s->row_tab_b || !s->la || !s->lb ||
        !s->pa || !s->pb || !s->lp) {
        mixed_sampler_free(s);
        tt_err("out of memory");
        return NULL;
    }
    return s;
}

/* p = softmax of the first limit logits (the kernel's), 0 beyond: ids the tokenizer lacks. */
static void softmax_limited(const real *z, int V, int limit, double *logp, double *p) {
    softmax_row_both(z, limit, 1.0, logp, p);
    for (int v = limit; v < V; v++) p[v] = 0;
}

int mixed_sampler_run(MixedSampler *s, int n, const int *const *src, const int *src_len, const uint64_t *stream,
                      uint64_t seed, double alpha, int vocab_limit, const int **tokens, const int **n_tokens) {
    if (n > s->max_inputs) return tt_err("mixed sampling: %d inputs, at most %d", n, s->max_inputs);
    const ModelConfig *c = &s->a->cfg;
    int encdec = model_is_encdec(c), V = s->V, Q = s->Q;
    int limit = vocab_limit > 0 && vocab_limit < V ? vocab_limit : V;
    int start = c->decoder_start_id >= 0 ? c->decoder_start_id : c->eos_id;
    if (decode_cache_begin(&s->da, n, src, src_len) || decode_cache_begin(&s->db, n, src, src_len)) return -1;
    Rng *rng = malloc(sizeof(Rng) * (size_t)n);
    if (!rng) return tt_err("out of memory");
    int M = 0;
    for (int i = 0; i < n; i++) {
        rng_seed(&rng[i], rng_mix64(seed ^ rng_mix64(stream[i] + 1)));
        int *seq = s->seq + (long)i * Q;
        int plen = encdec ? 1 : src_len[i];
        if (plen >= Q) plen = Q - 1;
        if (encdec) seq[0] = start;
        else memcpy(seq, src[i], sizeof(int) * (size_t)plen);
        s->len[i] = plen;
        s->done[i] = 0;
        s->out_n[i] = 0;
        for (int p = 0; p < plen; p++, M++) {
            s->row_tok[M] = seq[p], s->row_pos[M] = p, s->row_input[M] = i;
            s->row_tab_a[M] = s->tab_a + (long)i * Q, s->row_tab_b[M] = s->tab_b + (long)i * Q;
        }
        s->logit_rows[i] = M - 1;
    }
    int rc = 0;
    int n_logits = n;
    int *active = malloc(sizeof(int) * (size_t)n);
    if (!active) {
        free(rng);
        return tt_err("out of memory");
    }
    for (int i = 0; i < n; i++) active[i] = i;
    for (int step = 0; n_logits > 0; step++) {
        StepRows ra = {M, s->row_tok, s->row_pos, s->row_input, s->row_tab_a};
        StepRows rb = {M, s->row_tok, s->row_pos, s->row_input, s->row_tab_b};
        if (decode_step(&s->da, &ra, s->logit_rows, n_logits, s->la) ||
            decode_step(&s->db, &rb, s->logit_rows, n_logits, s->lb)) {
            rc = -1;
            break;
        }
        int next = 0;
        M = 0;
        for (int j = 0; j < n_logits; j++) {
            int i = active[j];
            softmax_limited(s->la + (long)j * V, V, limit, s->lp, s->pa);
            softmax_limited(s->lb + (long)j * V, V, limit, s->lp, s->pb);
            double u = rng_uniform(&rng[i]), acc = 0;
            int tok = limit - 1;
            for (int v = 0; v < limit; v++) {
                acc += alpha * s->pb[v] + (1 - alpha) * s->pa[v];
                if (u < acc) {
                    tok = v;
                    break;
                }
            }
            s->out_tok[(long)i * (s->max_new + 1) + s->out_n[i]++] = tok;
            int *seq = s->seq + (long)i * Q;
            seq[s->len[i]++] = tok;
            if (tok == c->eos_id || s->out_n[i] >= s->max_new || s->len[i] >= Q) continue;
            s->row_tok[M] = tok, s->row_pos[M] = s->len[i] - 1, s->row_input[M] = i;
            s->row_tab_a[M] = s->tab_a + (long)i * Q, s->row_tab_b[M] = s->tab_b + (long)i * Q;
            s->logit_rows[next] = M;
            active[next++] = i;
            M++;
        }
        n_logits = next;
    }
    free(active);
    free(rng);
    *tokens = s->out_tok;
    *n_tokens = s->out_n;
    return rc;
}

int mixed_sampler_stride(const MixedSampler *s) { return s->max_new + 1; }
