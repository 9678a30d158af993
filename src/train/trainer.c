/* trainer.c: the training loop: batches under a token budget, gradient accumulation to a
 * tokens-per-update target, clipping, AdamW with a schedule, dev evaluation, best-model
 * keeping, early stopping, metrics.jsonl, progress, checkpoints every N steps and on
 * SIGINT/SIGTERM, and resume that continues bit for bit. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "tutor/fileio.h"
#include "tutor/train.h"

void train_options_default(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    jsonl_options_default(&o->jsonl);
    o->jsonl.require_target = 1;
    o->max_source_tokens = 256;
    o->max_target_tokens = 64;
    o->batch_tokens = 4096;
    o->max_batch = 128;
    o->update_tokens = 0;
    adamw_config_default(&o->adam);
    o->adam.lr = 5e-4;
    o->schedule.kind = SCHEDULE_LINEAR;
    o->schedule.peak_lr = 5e-4;
    o->schedule.min_lr = 0;
    o->schedule.warmup_steps = 200;
    o->clip_norm = 1.0;
    o->label_smoothing = 0.1;
    o->max_steps = 10000;
    o->max_epochs = 1000;
    o->eval_every = 500;
    o->save_every = 500;
    o->log_every = 50;
    o->patience = 5;
    o->seed = 1;
    o->threads = 1;
    o->progress = 1;
}

double evaluate_loss(Model *m, const PairSet *ps, int batch_tokens, int max_batch, long *n_tokens) {
    const ModelConfig *c = &m->cfg;
    double total = 0;
    long count = 0;
    /* batches in file order, cut by the token budget (padding cost of the longest) */
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < ps->n; i++) {
        int s, t;
        pair_batch_lengths(c, &ps->items[i], &s, &t);
        if (s > max_s) max_s = s;
        if (t > max_t) max_t = t;
    }
    int cap_b = max_batch;
    BatchBuf bb;
    if (batchbuf_init(&bb, cap_b * max_s, cap_b * max_t)) return NAN;
    size_t *idx = malloc(sizeof(size_t) * (size_t)cap_b);
    size_t i = 0;
    while (i < ps->n) {
        int count_b = pairset_next_batch(ps, c, i, batch_tokens, cap_b, idx);
        if (count_b < 1 || batch_assemble(&bb, c, ps, idx, count_b) || model_forward(m, &bb.batch, 0)) {
            if (count_b < 1) tt_err("no batch could be made");
            tt_err_wrap("the batch from pair %zu", i + 1);
            count = -1;
            break;
        }
        long n;
        double loss = model_xent(m, &bb.batch, 0, 0, 1, &n);
        total += loss * (double)n;
        count += n;
        i += (size_t)count_b;
    }
    free(idx);
    batchbuf_free(&bb);
    if (n_tokens) *n_tokens = count;
    return count > 0 ? total / (double)count : NAN;
}

/* ---- batches of tokenised pairs ---- */

struct PairSource {
    const PairSet *ps;
    const ModelConfig *c;
    Batcher *batcher;
    BatchBuf bb;
    int B, S, T; /* the largest batch */
};

PairSource *pair_source_new(const PairSet *ps, const ModelConfig *c, int batch_tokens, int max_batch,
                            int max_source_tokens, int max_target_tokens, uint64_t seed) {
    PairSource *s = calloc(1, sizeof *s);
    size_t n = ps->n;
    int *sl = malloc(sizeof(int) * (n ? n : 1)), *tl = malloc(sizeof(int) * (n ? n : 1));
    if (!s || !sl || !tl) {
        free(s), free(sl), free(tl);
        tt_err("out of memory");
        return NULL;
    }
    s->ps = ps;
    s->c = c;
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < n; i++) {
        pair_batch_lengths(c, &ps->items[i], &sl[i], &tl[i]);
        if (sl[i] > max_s) max_s = sl[i];
        if (tl[i] > max_t) max_t = tl[i];
    }
    s->batcher = batcher_new(sl, tl, n, batch_tokens, max_batch, seed);
    free(sl);
    free(tl);
    /* buffers for the largest possible batch: count <= budget / longest member */
    if (!s->batcher || batchbuf_init(&s->bb, batch_tokens + max_s, batch_tokens + max_t)) {
        pair_source_free(s);
        return NULL;
    }
    int B = max_batch > 0 ? max_batch : 1;
    int S = model_is_encdec(c) ? max_source_tokens : 0;
    int T = model_is_encdec(c) ? max_target_tokens : max_source_tokens + max_target_tokens;
    long cap = (long)batch_tokens;
    if ((long)B * (S + T) > cap) B = (int)(cap / (S + T > 0 ? S + T : 1));
    if (B < 1) B = 1;
    s->B = B, s->S = S, s->T = T;
    return s;
}

void pair_source_free(PairSource *s) {
    if (!s) return;
    batcher_free(s->batcher);
    batchbuf_free(&s->bb);
    free(s);
}

static int ps_next(void *ctx, const Batch **b, long *n_target) {
    PairSource *s = ctx;
    const size_t *idx;
    int count;
    int rc = batcher_next(s->batcher, &idx, &count);
    if (rc < 0 || batch_assemble(&s->bb, s->c, s->ps, idx, count)) return -1;
    *b = &s->bb.batch;
    *n_target = s->bb.n_target_tokens;
    return rc;
}

static void ps_position(void *ctx, uint64_t *epoch, double *frac) {
    PairSource *s = ctx;
    size_t pos;
    batcher_position(s->batcher, epoch, &pos);
    *frac = (double)pos / (double)batcher_epoch_batches(s->batcher);
}

static void ps_max_shape(void *ctx, int *B, int *S, int *T) {
    PairSource *s = ctx;
    *B = s->B, *S = s->S, *T = s->T;
}

static cJSON *ps_save(void *ctx) { return batcher_state_json(((PairSource *)ctx)->batcher); }
static int ps_restore(void *ctx, const cJSON *st) { return batcher_restore(((PairSource *)ctx)->batcher, st); }

BatchSource pair_source_iface(PairSource *s) {
    return (BatchSource){.ctx = s, .next = ps_next, .position = ps_position, .max_shape = ps_max_shape,
                         .save = ps_save, .restore = ps_restore};
}

/* ---- cross-entropy ---- */

static int xent_step(void *ctx, Model *m, const Batch *b, double *loss_sum, double *weight) {
    XentLoss *l = ctx;
    if (model_forward(m, b, 1)) return -1;
    long n = 0;
    for (long i = 0; i < (long)b->B * b->T; i++) n += b->labels[i] != -100;
    long counted;
    double loss = model_xent(m, b, l->label_smoothing, 1, (double)n, &counted);
    if (model_backward(m, b)) return -1;
    *loss_sum = loss * (double)counted;
    *weight = (double)counted;
    return 0;
}

TrainLoss xent_loss_iface(XentLoss *l) { return (TrainLoss){.ctx = l, .name = "xent", .step = xent_step}; }

/* ---- dev loss ---- */

static int dev_loss_evaluate(void *ctx, Model *m, double *value, cJSON *line) {
    DevLossEval *e = ctx;
    (void)line;
    long n;
    *value = evaluate_loss(m, e->dev, e->batch_tokens, e->max_batch, &n);
    if (n < 0) return tt_err_wrap("dev loss");
    return isnan(*value) ? tt_err("dev loss is not finite") : 0;
}

Evaluator dev_loss_eval_iface(DevLossEval *e) {
    return (Evaluator){.ctx = e, .metric = "dev_loss", .higher_is_better = 0, .evaluate = dev_loss_evaluate};
}

/* ---- `tutor train`: the fine-tune loss on gold pairs ---- */

int train_run_with(Model *m, const Tokenizer *tok, const TrainOptions *o, const Evaluator *evaluator) {
    const ModelConfig *c = &m->cfg;
    PairSet train = {0}, dev = {0};
    PairSource *src = NULL;
    Trainer *t = NULL;
    int result = -1;
    Dataset ds = {0};
    if (dataset_load_jsonl(&ds, o->train_path, &o->jsonl, o->max_train_examples)) goto done;
    if (ds.n == 0) {
        dataset_free(&ds);
        tt_err("%s: no examples", o->train_path);
        goto done;
    }
    int rc = pairset_build(&train, &ds, tok, o->max_source_tokens, o->max_target_tokens, 0);
    dataset_free(&ds);
    if (rc) goto done;
    if (o->dev_path && !evaluator) {
        if (dataset_load_jsonl(&ds, o->dev_path, &o->jsonl, o->max_dev_examples)) goto done;
        rc = pairset_build(&dev, &ds, tok, o->max_source_tokens, o->max_target_tokens, 0);
        dataset_free(&ds);
        if (rc) goto done;
    }
    /* positions: a sequence must fit the model */
    int need = model_is_encdec(c) ? (o->max_source_tokens > o->max_target_tokens ? o->max_source_tokens
                                                                               : o->max_target_tokens)
                                  : o->max_source_tokens + o->max_target_tokens;
    if (need > c->max_positions) {
        tt_err("token budgets need %d positions but the model has %d (max_position_embeddings)", need,
               c->max_positions);
        goto done;
    }
    src = pair_source_new(&train, c, o->batch_tokens, o->max_batch, o->max_source_tokens, o->max_target_tokens,
                          o->seed);
    if (!src) goto done;
    XentLoss xl = {o->label_smoothing};
    DevLossEval de = {&dev, o->batch_tokens, o->max_batch};
    TrainParts parts = {.source = pair_source_iface(src), .loss = xent_loss_iface(&xl), .tok = tok,
                        .what = "training"};
    if (evaluator) parts.eval = *evaluator;
    else if (dev.n) parts.eval = dev_loss_eval_iface(&de);
    t = trainer_open(m, o, &parts);
    if (!t) goto done;
    tt_info("training %zu pairs (%zu truncated); selection by %s; %zu parameters; %d threads", train.n,
            train.truncated, parts.eval.evaluate ? parts.eval.metric : "none (the last model)", m->n_params,
            o->threads);
    result = trainer_run(t);
done:
    trainer_close(t);
    pair_source_free(src);
    pairset_free(&train);
    pairset_free(&dev);
    return result;
}

int train_run(Model *m, const Tokenizer *tok, const TrainOptions *o) { return train_run_with(m, tok, o, NULL); }
