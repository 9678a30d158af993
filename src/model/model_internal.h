/* model_internal.h: the activation arena of a model, shared by the files of src/model/.
 * A block is one residual sub-layer (self-attention, cross-attention or feed-forward) with
 * its LayerNorm; training keeps every block's activations, inference one block's worth. */
#ifndef TUTOR_MODEL_INTERNAL_H
#define TUTOR_MODEL_INTERNAL_H

#include "tutor/model.h"

enum { BLOCK_SELF = 0, BLOCK_CROSS = 1, BLOCK_FFN = 2 };

typedef struct {
    const real *in;                    /* (N,C) input stream */
    real *ln_out, *ln_mean, *ln_rstd;  /* pre-LN: LN(in); post-LN: mean/rstd of LN(sum) */
    real *sum;                         /* post-LN: in + f_out */
    real *out;                         /* (N,C) output stream */
    real *f_pre, *f_out;               /* sub-layer output before/after residual dropout */
    uint8_t *f_mask;
    real *q;                           /* self: q|k|v (N,3C); cross: q (N,C) */
    real *kv;                          /* cross: k|v (Ns,2C) */
    real *probs, *probs_drop;          /* (B,H,Tq,Tk) */
    uint8_t *probs_mask;
    real *att;                         /* (N,C) heads side by side */
    real *h1, *h2, *h3;                /* FFN: fc1 out, GELU out, after activation dropout (N,F) */
    uint8_t *h_mask;
    real *extra_dq, *extra_dkv;        /* gradients added to d(q|k|v) in backward (attention KD) */
} BlockActs;

typedef struct {
    real *emb, *emb_out, *emb_mean, *emb_rstd, *x0; /* embedding -> LN -> dropout -> x0 */
    uint8_t *emb_mask;
    BlockActs *blocks;
    int n_blocks;
    real *final_out, *final_mean, *final_rstd;
    real *out; /* the stack's output: final_out, or the last block's out */
} StackActs;

struct ModelActs {
    void *arena;
    size_t capacity_bytes;
    int B, S, T, mode; /* FWD_* the arena is planned for */
    StackActs enc, dec;
    /* backward scratch (train only) */
    real *d_hidden, *d_stream, *d_sum, *d_f, *d_ln, *d_q, *d_kv, *d_att, *d_h1, *d_h2, *d_h3;
    real *d_enc_out, *d_emb, *att_scratch;
    real *vocab_chunk;
    real *row_x, *row_dx; /* (chunk_rows, C): gathered rows for model_token_loss */
    int chunk_rows;
    int scratch_threads; /* att_scratch holds 2*T*T reals for this many threads */
    real *qkv_grad[3];   /* model_attention_qkv_grad's buffers (malloc'd), and their sizes */
    size_t qkv_grad_cap[3];
};

void model_bind(Model *m, real *base, ModelParams *p);
void model_acts_free(Model *m);

#endif
