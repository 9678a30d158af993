/* train.h: from JSONL pairs to a trained model directory: tokenised pair sets, padded
 * batches in the layout each architecture wants, and the training loop with gradient
 * accumulation, dev evaluation, best-model keeping, early stopping, checkpoints every N
 * steps and on SIGINT/SIGTERM, and exact resume. */
#ifndef TUTOR_TRAIN_H
#define TUTOR_TRAIN_H

#include <stdint.h>

#include "tutor/data.h"
#include "tutor/model.h"
#include "tutor/optim.h"
#include "tutor/tokenizer.h"

/* One tokenised example: source ids (enc-dec: <s> text </s>) and target ids (the text's
 * tokens followed by </s>), both truncated to their budgets. */
typedef struct {
    int *src, *tgt;
    int src_len, tgt_len;
} TokPair;

typedef struct {
    TokPair *items;
    size_t n;
    int *pool;           /* all ids, one allocation */
    size_t truncated;    /* examples cut to a budget */
} PairSet;

/* Tokenises a data set. Targets may be absent (tgt_len 0) only when allow_unlabeled. */
int pairset_build(PairSet *ps, const Dataset *ds, const Tokenizer *tok, int max_src, int max_tgt,
                  int allow_unlabeled);
void pairset_free(PairSet *ps);

/* Padded batch buffers, sized once for the largest batch. */
typedef struct {
    int cap_tokens_src, cap_tokens_tgt;
    int *src, *src_mask, *tgt_in, *tgt_mask, *labels;
    Batch batch;
    long n_target_tokens; /* labels != -100 */
} BatchBuf;

int batchbuf_init(BatchBuf *bb, int cap_src_tokens, int cap_tgt_tokens);
void batchbuf_free(BatchBuf *bb);
/* Lengths a pair occupies in a batch: enc-dec (src_len, tgt_len); decoder-only
 * (0, src_len + tgt_len + 1). */
void pair_batch_lengths(const ModelConfig *c, const TokPair *p, int *src_len, int *seq_len);
/* Fills bb->batch from pairs idx[0..count): enc-dec: decoder inputs </s> + target, labels
 * target + </s>; decoder-only: <s> source </s> target </s> with the loss on the target and
 * its </s>. */
int batch_assemble(BatchBuf *bb, const ModelConfig *c, const PairSet *ps, const size_t *idx, int count);
/* The next batch in set order from pair pos: as many pairs as fit max_batch and batch_tokens
 * padded tokens (at least one); idx receives their indices. Returns the count (0 at the end).
 * The inference passes over a set (dev loss, teacher caches) cut their batches with it. */
int pairset_next_batch(const PairSet *ps, const ModelConfig *c, size_t pos, int batch_tokens, int max_batch,
                       size_t *idx);

typedef struct {
    /* data */
    const char *train_path, *dev_path, *tokenizer_path, *out_dir;
    JsonlOptions jsonl;
    size_t max_train_examples, max_dev_examples; /* 0: all */
    int max_source_tokens, max_target_tokens;
    int batch_tokens;   /* padded source + target tokens per batch */
    int max_batch;      /* sequences per batch */
    int update_tokens;  /* target tokens per optimizer update (gradient accumulation); 0: one batch */
    /* optimisation */
    AdamWConfig adam;
    Schedule schedule;  /* peak_lr, warmup_steps, kind; total_steps = max_steps */
    double clip_norm, label_smoothing;
    long max_steps;     /* optimizer updates */
    int max_epochs;
    double max_minutes; /* wall time of training, resumed runs included; 0: no limit */
    /* evaluation and checkpoints */
    int eval_every, save_every, log_every, patience;
    uint64_t seed;
    int threads;
    int resume;
    int progress;       /* 1: a progress bar on a terminal; 0: plain lines */
} TrainOptions;

void train_options_default(TrainOptions *o);

/* ---- The open training loop ----------------------------------------------------------------
 * A run is a model, a batch source, a loss and (optionally) an evaluator, each a small struct
 * of function pointers with its own context. The loop owns what every run has: gradient
 * accumulation, clipping, AdamW with a schedule, logs, dev evaluation and the best model,
 * early stopping, checkpoints and exact resume. Components save and restore their own state
 * (a JSON value) inside the checkpoint's trainer_state.json; so does any extra state. */

/* Yields the batches of a run, in a deterministic order. */
typedef struct {
    void *ctx;
    /* The next batch (*b valid until the next call) and its number of target tokens (what
     * --update-tokens counts). 1 if it ended an epoch, 0 otherwise, -1 on an error. */
    int (*next)(void *ctx, const Batch **b, long *n_target_tokens);
    /* Where the next batch comes from: whole epochs done and the fraction of this one. */
    void (*position)(void *ctx, uint64_t *epoch, double *fraction);
    /* The largest batch the source can yield (B sequences of S source, T target tokens):
     * the model's arena is sized for it once. */
    void (*max_shape)(void *ctx, int *B, int *S, int *T);
    struct cJSON *(*save)(void *ctx);                      /* NULL on out of memory */
    int (*restore)(void *ctx, const struct cJSON *state);  /* -1 with a reason */
} BatchSource;

/* One batch's loss: runs the forward passes it needs, adds the gradient of the loss *sum*
 * to m->grads, and returns the sum and its weight (what it sums over: target tokens, or
 * sequences). The update's gradient is the summed gradients over the summed weights. */
typedef struct {
    void *ctx;
    const char *name;
    int (*step)(void *ctx, Model *m, const Batch *b, double *loss_sum, double *weight);
    /* optional: fields added to each logged line (timings, components) */
    void (*log)(void *ctx, struct cJSON *line);
    /* optional: resumable state */
    struct cJSON *(*save)(void *ctx);
    int (*restore)(void *ctx, const struct cJSON *state);
} TrainLoss;

/* Scores the model being trained (dev loss, dev ROUGE-L computed by a layer above, ...). */
typedef struct {
    void *ctx;
    const char *metric;   /* the name of the selection value in logs: "dev_loss", "dev_rougeL" */
    int higher_is_better;
    /* *value: the selection metric; more fields may be added to line (a JSON object) */
    int (*evaluate)(void *ctx, Model *m, double *value, struct cJSON *line);
} Evaluator;

/* Extra resumable state riding in the checkpoint (an RNG, a schedule's counter). */
typedef struct {
    const char *name;
    void *ctx;
    struct cJSON *(*save)(void *ctx);
    int (*restore)(void *ctx, const struct cJSON *state);
} TrainExtra;

enum { TRAIN_MAX_EXTRAS = 8 };

typedef struct {
    BatchSource source;
    TrainLoss loss;
    Evaluator eval;       /* eval.evaluate NULL: no evaluation (the last model is the best) */
    TrainExtra extras[TRAIN_MAX_EXTRAS];
    int n_extras;
    /* files the best model directory gets besides config.json and model.safetensors: the
     * tokenizer (may be NULL) */
    const Tokenizer *tok;
    /* a short name for messages: "training", "pretraining", "distillation" */
    const char *what;
} TrainParts;

typedef struct Trainer Trainer;

/* Opens a run in o->out_dir: sizes the model's arena for the source's largest batch, the
 * optimizer and gradients, metrics.jsonl; with o->resume restores the last checkpoint
 * (parameters, moments, every component's state). parts is copied. NULL on error. */
Trainer *trainer_open(Model *m, const TrainOptions *o, const TrainParts *parts);
/* One optimizer update: batches until o->update_tokens target tokens, clipping, AdamW;
 * logs every o->log_every steps. 0, or -1 on an error (a NaN or infinite loss or gradient
 * norm included, naming the step; nothing of that step is kept). */
int trainer_step(Trainer *t);
/* Evaluates (when there is an evaluator), keeps the best model in o->out_dir, logs. Returns
 * 1 when patience is exhausted, 0 otherwise, -1 on an error. */
int trainer_evaluate(Trainer *t);
/* Writes a checkpoint (two slots, atomic pointer). */
int trainer_save(Trainer *t);
/* Saves the current model as the best one (runs without an evaluator end with it). */
int trainer_save_model(Trainer *t);
/* NULL while the run should go on, else why it ends (max_steps, max_epochs). */
const char *trainer_done(Trainer *t);
long trainer_step_count(const Trainer *t);
double trainer_best(const Trainer *t, long *best_step);
/* The standard loop: step until done, evaluating every o->eval_every and at the end,
 * checkpoints every o->save_every, at the end and on SIGINT/SIGTERM. 0 when training
 * ended normally, 1 when stopped by a signal after saving a checkpoint, -1 on error. */
int trainer_run(Trainer *t);
void trainer_close(Trainer *t);

/* ---- Pieces for training on pairs ------------------------------------------------------------ */

/* Batches of tokenised pairs from the length-bucketed batcher. */
typedef struct PairSource PairSource;
/* ps is borrowed (it must outlive the source). */
PairSource *pair_source_new(const PairSet *ps, const ModelConfig *c, int batch_tokens, int max_batch,
                            int max_source_tokens, int max_target_tokens, uint64_t seed);
void pair_source_free(PairSource *s);
BatchSource pair_source_iface(PairSource *s);

/* Cross-entropy on the batch's labels with label smoothing (the fine-tune loss). */
typedef struct {
    double label_smoothing;
} XentLoss;
TrainLoss xent_loss_iface(XentLoss *l);

/* Dev loss (mean token cross-entropy, teacher-forced) on a pair set. */
typedef struct {
    const PairSet *dev;
    int batch_tokens, max_batch;
} DevLossEval;
Evaluator dev_loss_eval_iface(DevLossEval *e);

/* Trains m (already built: from scratch or loaded) on o->train_path with cross-entropy;
 * writes the best model (by dev loss) to o->out_dir and the last checkpoint beside it.
 * Returns 0 when training ended normally (steps, epochs or patience), 1 when stopped by a
 * signal after saving a checkpoint, -1 on error (NaN/inf included, the last good checkpoint
 * kept). On resume, m's parameters are replaced by the checkpoint's. evaluator, when not
 * NULL, replaces the dev-loss evaluator (dev ROUGE-L from a layer above). */
int train_run_with(Model *m, const Tokenizer *tok, const TrainOptions *o, const Evaluator *evaluator);
int train_run(Model *m, const Tokenizer *tok, const TrainOptions *o);

/* Mean token cross-entropy of m on ps (teacher-forced, inference forward). */
double evaluate_loss(Model *m, const PairSet *ps, int batch_tokens, int max_batch, long *n_tokens);

#endif
