/* model.h: the transformer: GPT-2 (decoder-only), BART (post-LN encoder-decoder) and mBART
 * (pre-LN encoder-decoder), with Hugging Face's parameter names and layouts, so that a tutor
 * model directory is a Hugging Face model directory. Parameters, gradients and (in the
 * trainer) AdamW moments are each one contiguous buffer described by a name table. */
#ifndef TUTOR_MODEL_H
#define TUTOR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tutor/core.h"
#include "tutor/kernels.h"

typedef enum { ARCH_GPT2 = 0, ARCH_BART = 1, ARCH_MBART = 2 } Arch;

typedef struct {
    Arch arch;
    int vocab_size, d_model, max_positions;
    int enc_layers, enc_heads, enc_ffn; /* 0 for GPT-2 */
    int dec_layers, dec_heads, dec_ffn; /* GPT-2: n_layer, n_head, n_inner */
    int scale_embedding;                /* BART/mBART: token embeddings times sqrt(d_model) */
    int untied_lm_head;                 /* 0 (HF's tie_word_embeddings true): the output projection
                                           is the token embedding; 1: its own lm_head.weight */
    GeluKind act;
    double ln_eps;
    float dropout, attn_dropout, act_dropout; /* GPT-2: resid/embd, attn, - */
    int pad_id, bos_id, eos_id, decoder_start_id, forced_eos_id; /* -1 when absent */
    double init_std;
} ModelConfig;

/* Limits a configuration is checked against before anything is sized from it. */
#define MODEL_MAX_VOCAB (1 << 22)
#define MODEL_MAX_WIDTH 65536
#define MODEL_MAX_FFN (1 << 20)
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_POSITIONS 65536
#define MODEL_MAX_PARAMS 1.5e9 /* 5.6 GiB as float32 */

/* Defaults for training from scratch: pre-LN encoder-decoder (mBART layout). */
void model_config_default(ModelConfig *c, Arch arch);
/* Reads/writes Hugging Face's config.json (keys of BartConfig/MBartConfig/GPT2Config). */
int model_config_load(ModelConfig *c, const char *path);
int model_config_save(const ModelConfig *c, const char *path);
/* Fills c from a parsed HF-style config object (cJSON); model_type defaults to default_type
 * when absent (NULL: required). path names the source in errors. */
struct cJSON;
int model_config_from_json(ModelConfig *c, const struct cJSON *o, const char *path, const char *default_type);
/* Applies "key": value overrides from a JSON object text (our own config keys or HF's). */
int model_config_check(const ModelConfig *c);
static inline int model_is_encdec(const ModelConfig *c) { return c->arch != ARCH_GPT2; }
static inline int model_is_preln(const ModelConfig *c) { return c->arch != ARCH_BART; }

typedef struct {
    char name[96];
    int ndim;
    int shape[4];
    size_t offset, numel;
    int decay; /* weight decay applies (matrices and embeddings) */
} ParamInfo;

/* Pointers of one attention block into a buffer (parameters or gradients). GPT-2's fused
 * c_attn is q_w/q_b with k/v NULL. */
typedef struct {
    real *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
} AttnParams;

typedef struct {
    AttnParams self, cross;
    real *ln_self_w, *ln_self_b, *ln_cross_w, *ln_cross_b, *ln_ffn_w, *ln_ffn_b;
    real *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} LayerParams;

typedef struct {
    real *tok_emb;                   /* (V,C), tied to the output projection */
    real *enc_pos, *dec_pos;         /* GPT-2: dec_pos = wpe */
    real *enc_ln_emb_w, *enc_ln_emb_b, *dec_ln_emb_w, *dec_ln_emb_b;
    real *enc_ln_final_w, *enc_ln_final_b, *dec_ln_final_w, *dec_ln_final_b; /* mBART; GPT-2 ln_f */
    real *final_logits_bias;         /* (V) BART/mBART */
    real *lm_head;                   /* (V,C) the output projection: tok_emb when tied */
    LayerParams *enc, *dec;
} ModelParams;

typedef struct ModelActs ModelActs;

/* int8 weights for generation (model/int8.c, docs/int8.md): every linear layer and the output
 * projection, per output row symmetric; the fused blocks as decoding uses them. */
typedef struct {
    Q8Weights qkv, o;       /* self-attention: q|k|v (3C, C), out (C, C) */
    Q8Weights cq, ckv, co;  /* cross-attention: q (C, C), k|v (2C, C), out (C, C) */
    Q8Weights fc1, fc2;
} Q8Layer;
typedef struct ModelQ8 {
    Q8Layer *enc, *dec;
    Q8Weights lm_head;
    Q8Path path;            /* the kernel path (q8_best_path when made) */
    Q8Scratch scratch;      /* one generation at a time per model */
} ModelQ8;

typedef struct {
    ModelConfig cfg;
    int n_tensors;
    ParamInfo *tensors;
    size_t n_params;
    real *params, *grads;  /* grads NULL until model_alloc_grads */
    ModelParams p, g;
    ModelActs *acts;       /* activation arena, sized on demand */
    Rng dropout_rng;
    ModelQ8 *q8;           /* int8 weights: generation uses them when set (NULL: float32) */
} Model;

/* A batch. Encoder-decoder: src (B,S) with src_mask (1 = token, 0 = padding); tgt_in (B,T)
 * the decoder inputs; labels (B,T), -100 = not counted. Decoder-only: src NULL, tgt_in the
 * whole sequence with tgt_mask (padding keys), labels already aligned with positions (the
 * token that should follow each position). */
typedef struct {
    int B, S, T;
    const int *src, *src_mask;
    const int *tgt_in, *tgt_mask, *labels;
} Batch;

/* Builds a model with parameters drawn from N(0, init_std) (LayerNorm 1/0, biases 0). */
Model *model_new(const ModelConfig *cfg, uint64_t seed);
void model_free(Model *m);
/* int8 weights from the float ones (m->q8), to/from model.int8.safetensors; 0 or -1 naming
 * the file and the tensor. model_free frees them too. */
int model_q8_quantize(Model *m);
int model_q8_save(const Model *m, const char *path);
int model_q8_load(Model *m, const char *path);
void model_q8_free(Model *m);
/* DIR/model.int8.safetensors, with an error saying how to make it when absent. */
int model_q8_load_dir(Model *m, const char *dir);
int model_alloc_grads(Model *m);
void model_zero_grads(Model *m);
const ParamInfo *model_find_tensor(const Model *m, const char *name);

/* Model directory: config.json + model.safetensors (HF names). */
Model *model_load(const char *dir);
int model_save(const Model *m, const char *dir);
int model_load_params(Model *m, const char *safetensors_path);
int model_save_params(const Model *m, const char *safetensors_path);

/* Forward modes: what a pass keeps for backward and whether dropout applies.
 *   FWD_INFER  nothing kept, no dropout (a teacher's forward, evaluation, generation);
 *   FWD_TRAIN  every activation kept for backward, dropout on (a student's training step);
 *   FWD_KEEP   kept for backward, dropout off (gradient checks, deterministic students);
 *   FWD_NOISY  nothing kept, dropout on (noisy KD: the teacher's dropout on). */
enum { FWD_INFER = 0, FWD_TRAIN = 1, FWD_KEEP = 2, FWD_NOISY = 4 };
static inline int fwd_mode_valid(int mode) {
    return mode == FWD_INFER || mode == FWD_TRAIN || mode == FWD_KEEP || mode == FWD_NOISY;
}
static inline int fwd_keeps(int mode) { return mode == FWD_TRAIN || mode == FWD_KEEP; }
static inline int fwd_drops(int mode) { return mode == FWD_TRAIN || mode == FWD_NOISY; }

/* Sizes the activation arena for batches up to B sequences of S source and T target tokens
 * in a forward mode (FWD_*). Called by forward as needed; calling it first with the
 * largest batch means no allocation afterwards. */
int model_reserve(Model *m, int B, int S, int T, int mode);

/* Forward pass in a mode (FWD_*; 0 and 1 are the old train = 0 / 1). Afterwards the final
 * hidden states of the decoder are at model_hidden(m) (B*T, C). */
int model_forward(Model *m, const Batch *b, int mode);
real *model_hidden(Model *m);
/* Encoder only (inference): returns the encoder output (B*S, C), valid until the next
 * forward or encode on this model. NULL on error. */
const real *model_encode(Model *m, const int *src, const int *src_mask, int B, int S);
/* Loss: mean token cross-entropy over labels != -100 (after forward). With backward = 1 the
 * gradient of loss * loss_scale is added to the hidden-state gradient. */
double model_xent(Model *m, const Batch *b, double label_smoothing, int backward, double loss_scale,
                  long *n_tokens);
/* Any per-token loss on the logits, chunked over rows like model_xent so that no
 * (tokens x vocabulary) matrix is kept. For each chunk of rows [row0, row0 + n) of the hidden
 * states (rows listed in rows[], n <= model_chunk_rows), the logits (n, V) are computed and fn
 * is called: it returns the chunk's loss (already weighted as the caller wants) and, when
 * grad is 1, overwrites logits with d(loss)/d(logits). The gradient then flows into the
 * hidden-state gradient, the output projection and the bias (after a forward that keeps).
 * Returns the summed loss, or NAN when fn returned NAN (an error). */
typedef double (*TokenLossFn)(void *ctx, const int *rows, int n, real *logits, int grad);
double model_token_loss(Model *m, const int *rows, long n_rows, TokenLossFn fn, void *ctx, int backward);
int model_chunk_rows(const Model *m);
/* Queries, keys and values of the last layer's attention after either forward (which: 0
 * encoder self, 1 decoder self, 2 cross-attention): rows of q (B*Tq, stride ldq) and k, v
 * (B*Tk, stride ldkv), heads side by side. Valid until the next forward. 0 or -1. */
typedef struct {
    const real *q, *k, *v;
    int ldq, ldkv, B, Tq, Tk, C, heads;
} AttnQKV;
int model_attention_qkv(Model *m, int which, AttnQKV *out);
/* Their gradient path (after a forward that keeps activations): zeroed buffers of the same
 * layout whose contents model_backward adds to d(q), d(k), d(v) of that block (zero 0: the
 * buffers as they are, to read what was added). */
typedef struct {
    real *dq, *dk, *dv;
    int ldq, ldkv;
} AttnQKVGrad;
int model_attention_qkv_grad(Model *m, int which, int zero, AttnQKVGrad *out);
/* Logits of chosen rows of the hidden states: out (n, V). */
void model_logits_rows(Model *m, const int *rows, int n, real *out);
/* Backward from the hidden-state gradient (model_hidden_grad) into m->grads (+=). */
int model_backward(Model *m, const Batch *b);
real *model_hidden_grad(Model *m);
/* Logits for rows [row0, row0 + n) of the hidden states: out (n, V). */
void model_logits(Model *m, int row0, int n, real *out);
/* Bytes held by the activation arena. */
size_t model_act_bytes(const Model *m);
/* Attention weights of a layer after a train forward: (B,H,Tq,Tk); which: 0 encoder self,
 * 1 decoder self, 2 decoder cross. NULL if not kept. */
const real *model_attention_probs(const Model *m, int which, int layer);



/* Hugging Face's decoder inputs from labels (B,T), -100 = ignored: BART shifts right with
 * decoder_start first; mBART wraps the last non-pad label to the front. out (B,T). */
void model_decoder_inputs(const ModelConfig *c, const int *labels, int B, int T, int *out);
/* GPT-2 style next-token labels: out[t] = labels[t+1], last -100 (HF shifts inside). */
void model_shift_labels_left(const int *labels, int B, int T, int *out);
#endif
