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
    /* evaluation and checkpoints */
    int eval_every, save_every, log_every, patience;
    uint64_t seed;
    int threads;
    int resume;
    int progress;       /* 1: a progress bar on a terminal; 0: plain lines */
} TrainOptions;

void train_options_default(TrainOptions *o);

/* Trains m (already built: from scratch or loaded) on o->train_path; writes the best model
 * (by dev loss) to o->out_dir and the last checkpoint beside it. Returns 0 when training
 * ended normally (steps, epochs or patience), 1 when stopped by a signal after saving a
 * checkpoint, -1 on error (NaN/inf included, the last good checkpoint kept). On resume, m's
 * parameters are replaced by the checkpoint's. */
int train_run(Model *m, const Tokenizer *tok, const TrainOptions *o);

/* Mean token cross-entropy of m on ps (teacher-forced, inference forward). */
double evaluate_loss(Model *m, const PairSet *ps, int batch_tokens, int max_batch, long *n_tokens);

#endif
