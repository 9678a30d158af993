/* decode_internal.h: the pieces of src/decode/ shared between its files and its tests: the
 * incremental decoder with its key/value cache (decoder_step.c) and the logits processors
 * and token choosers (logits_process.c). */
#ifndef TUTOR_DECODE_INTERNAL_H
#define TUTOR_DECODE_INTERNAL_H

#include "tutor/generate.h"

/* The key/value cache is a pool of rows: every token the decoder has seen, in every layer,
 * keeps its key and value (C reals each) in one pool row, and a hypothesis holds a table of
 * the pool rows of its positions. Beam search then reorders hypotheses by copying their
 * small tables, never the keys and values, and hypotheses sharing a prefix (the beams of
 * one input, a prompt's K samples) share its rows. Cross-attention keys/values are kept
 * once per source. */
typedef struct {
    Model *m;
    int L, C, H, D, F, V;
    int encdec, gpt2, preln;
    int max_rows;           /* rows (tokens) of one step */
    long pool_cap, pool_used;
    real *k_pool, *v_pool;  /* (L, pool_cap, C) */
    int max_inputs, max_src;
    real *cross_v;          /* (L, max_inputs, H, max_src, D): the value of each source token,
                               per head, so that a head's values are one contiguous block */
    real *cross_kt;         /* (L, max_inputs, H, D, max_src): the keys, transposed per head, so
                               that a query's scores over the source are a sum of contiguous
                               rows (vectorised over positions, no horizontal sums) */
    real *kv_scratch;       /* (max_inputs * max_src, 2C): one layer's product before it is placed */
    int *slot_ids;          /* (max_inputs) 0, 1, ...: decode_cache_begin's slots */
    int *src_len;           /* (max_inputs) valid source tokens per input */
    int max_ctx;            /* longest self-attention context (positions) */
    real *x, *ln, *qkv, *att, *proj, *hid; /* step activations, max_rows rows */
    real *scores;           /* (parts, max(max_ctx, max_src)) attention scratch */
    int parts;
    int *src_pad, *src_mask; /* (max_inputs, max_src) encoder input */
    const real *final_h;    /* after a step with logits NULL: its (n_logits, C) final hidden rows,
                               for decode_logits, valid until the next step */
    const real *lm_bias;    /* final_logits_bias, or NULL when it is all zeros */
} DecodeCache;

/* Sizes every buffer: max_rows tokens per step, pool_rows cached tokens, max_ctx positions
 * per hypothesis, max_inputs sources of up to max_src tokens. 0 or -1. */
int decode_cache_init(DecodeCache *dc, Model *m, int max_rows, long pool_rows, int max_ctx, int max_inputs,
                      int max_src);
void decode_cache_free(DecodeCache *dc);

/* Starts a batch: empties the pool; for an encoder-decoder encodes the n sources (src[i],
 * src_len[i] tokens) into input slots 0..n-1 and computes every layer's cross-attention
 * keys/values once. */
int decode_cache_begin(DecodeCache *dc, int n, const int *const *src, const int *src_len);
/* Adds n sources into input slots slot[0..n) (any free ones), keeping every other slot's and
 * the pool: inputs join a running batch. */
int decode_cache_add(DecodeCache *dc, int n, const int *slot, const int *const *src, const int *src_len);

/* One decoder step over M rows. Row i feeds token tok[i] at position pos[i] for input
 * input[i]; table[i][0 .. pos[i]) holds the pool rows of its earlier positions, and the step
 * writes table[i][pos[i]] (rows may share a table: a prompt's tokens fed in one step see each
 * other). Afterwards logits (n_logits, V) hold the next-token logits of rows logit_rows[j]. */
typedef struct {
    int M;
    const int *tok, *pos, *input;
    int *const *table;
} StepRows;
int decode_step(DecodeCache *dc, const StepRows *r, const int *logit_rows, int n_logits, real *logits);
/* With logits NULL, decode_step leaves the logits to the caller: dc->final_h holds the final
 * hidden rows, and decode_logits makes the logits of n of them (from the j-th: out (n, V)),
 * int8 with its own scratch s (one per thread) when the model is quantized. A generator
 * makes them a few inputs at a time, each group's rows read while still in cache. */
void decode_logits(const DecodeCache *dc, int j, int n, real *out, Q8Scratch *s);

/* linear_forward for the few rows of a decoding step: streaming kernels below a row count
 * where sgemm's packing of the weights dominates, gemm above it. */
void decode_linear(real *out, int ldo, const real *inp, const real *w, const real *b, int M, int K, int N,
                   WeightLayout layout);

/* Testing: runs the beam search path even with one beam (HF would run greedy search). */
void generator_use_beam_search(Generator *gen);

/* ---- logits processors (Hugging Face's, in its order) ---- */

/* What the processors need to know of one hypothesis. */
typedef struct {
    const int *seq;  /* the whole sequence: prompt (or decoder start) + new tokens */
    int len;         /* tokens in seq */
    int n_new;       /* new tokens in seq */
    int max_new;     /* this input's budget of new tokens */
} HypView;

/* Applies repetition penalty, no-repeat n-gram, minimum length, forced BOS and forced EOS
 * to scores (V) in place (raw logits for greedy/sampling, log-probabilities for beam search,
 * as HF does). mark: V bytes of zeroed scratch, left zeroed. */
void logits_process(const GenConfig *g, const HypView *h, real *scores, int V, unsigned char *mark);
/* Temperature, top-k, top-p (HF's warpers, in its order): removed tokens become -inf.
 * work: 2*V floats + V ints of scratch. */
void logits_warp(const GenConfig *g, real *scores, int V, real *work, int *iwork);
/* Draws a token from softmax(scores) (-inf = never) with u uniform in [0, 1). */
int sample_from_scores(const real *scores, int V, double u);
/* log(sum(exp(x))) of a row (V), in vector lanes. */
double row_logsumexp(const real *x, int V);
/* Index of the largest score (the first on ties). */
int argmax_scores(const real *scores, int V);

#endif
