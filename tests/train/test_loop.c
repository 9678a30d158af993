/* test_loop.c: the open training loop (issue 8) reproduces, bit for bit, the loop `tutor
 * train` had before it was opened: written out here as it was (batcher, assemble, forward,
 * cross-entropy, backward, accumulate to update_tokens, mean, clip, schedule, AdamW), for an
 * encoder-decoder and GPT-2, with dropout and gradient accumulation; and a custom loss and
 * extra state passed to the loop are used and ride in the checkpoint. */
#include <cjson/cJSON.h>

#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/safetensors.h"
#include "tutor/train.h"

#define DATA "build/data/debdesc"

static Tokenizer *tok_for(const char *dir, char *train_path, size_t n) {
    cr_assert(system("scripts/debdesc-fetch.sh >/dev/null") == 0);
    snprintf(train_path, n, "%s/train.jsonl", dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "head -n 600 %s/labeled.jsonl > %s", DATA, train_path);
    cr_assert(system(cmd) == 0);
    Dataset ds;
    JsonlOptions jo;
    jsonl_options_default(&jo);
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, train_path, &jo, 0));
    const char **texts = malloc(2 * ds.n * sizeof *texts);
    for (size_t i = 0; i < ds.n; i++) texts[2 * i] = ds.items[i].source, texts[2 * i + 1] = ds.items[i].target;
    BpeTrainOptions bo;
    bpe_train_options_default(&bo);
    bo.vocab_size = 1000;
    Tokenizer *t = bpe_train(texts, 2 * ds.n, &bo);
    free(texts);
    dataset_free(&ds);
    cr_assert(t, "%s", tt_errmsg());
    return t;
}

static Model *small_model(const Tokenizer *tok, Arch arch) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.vocab_size = tokenizer_vocab_size(tok);
    c.d_model = 32, c.dec_layers = 1, c.dec_heads = 2, c.dec_ffn = 64, c.max_positions = 128;
    if (arch != ARCH_GPT2) c.enc_layers = 1, c.enc_heads = 2, c.enc_ffn = 64;
    else c.enc_layers = c.enc_heads = c.enc_ffn = 0;
    c.dropout = 0.1f;
    c.pad_id = tokenizer_pad_id(tok), c.bos_id = tokenizer_bos_id(tok), c.eos_id = tokenizer_eos_id(tok);
    if (arch != ARCH_GPT2) c.decoder_start_id = c.eos_id, c.forced_eos_id = c.eos_id;
    Model *m = model_new(&c, 5);
    cr_assert(m, "%s", tt_errmsg());
    return m;
}

static void options(TrainOptions *o, const char *train, const char *out) {
    train_options_default(o);
    o->train_path = train;
    o->out_dir = out;
    o->max_source_tokens = 40, o->max_target_tokens = 16, o->batch_tokens = 600, o->max_batch = 32;
    o->update_tokens = 250; /* several batches per update */
    o->max_steps = 12, o->save_every = 0, o->eval_every = 0, o->log_every = 0, o->progress = 0;
    o->schedule.peak_lr = o->adam.lr = 3e-3, o->schedule.warmup_steps = 3;
    o->seed = 11;
}

/* The loop as `tutor train` ran it before the loop was opened. */
static void old_loop(Model *m, const Tokenizer *tok, const TrainOptions *o) {
    tt_set_threads(o->threads);
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, o->train_path, &o->jsonl, 0));
    PairSet ps;
    TEST_ASSERT_OK(pairset_build(&ps, &ds, tok, o->max_source_tokens, o->max_target_tokens, 0));
    dataset_free(&ds);
    int *sl = malloc(sizeof(int) * ps.n), *tl = malloc(sizeof(int) * ps.n), max_s = 1, max_t = 1;
    for (size_t i = 0; i < ps.n; i++) {
        pair_batch_lengths(&m->cfg, &ps.items[i], &sl[i], &tl[i]);
        if (sl[i] > max_s) max_s = sl[i];
        if (tl[i] > max_t) max_t = tl[i];
    }
    Batcher *b = batcher_new(sl, tl, ps.n, o->batch_tokens, o->max_batch, o->seed);
    BatchBuf bb;
    TEST_ASSERT_OK(batchbuf_init(&bb, o->batch_tokens + max_s, o->batch_tokens + max_t));
    AdamW opt;
    TEST_ASSERT_OK(adamw_init(&opt, m, &o->adam));
    TEST_ASSERT_OK(model_alloc_grads(m));
    Schedule sched = o->schedule;
    sched.total_steps = o->max_steps;
    for (long step = 0; step < o->max_steps; step++) {
        model_zero_grads(m);
        long update_tokens = 0;
        do {
            const size_t *idx;
            int count;
            cr_assert(batcher_next(b, &idx, &count) >= 0);
            TEST_ASSERT_OK(batch_assemble(&bb, &m->cfg, &ps, idx, count));
            TEST_ASSERT_OK(model_forward(m, &bb.batch, 1));
            long n;
            model_xent(m, &bb.batch, o->label_smoothing, 1, (double)bb.n_target_tokens, &n);
            TEST_ASSERT_OK(model_backward(m, &bb.batch));
            update_tokens += n;
        } while (update_tokens < o->update_tokens);
        real f = (real)(1.0 / (double)update_tokens);
        for (size_t i = 0; i < m->n_params; i++) m->grads[i] *= f;
        grad_clip(m->grads, m->n_params, o->clip_norm);
        adamw_step(&opt, m->params, m->grads, schedule_lr(&sched, step));
    }
    adamw_free(&opt);
    batchbuf_free(&bb);
    batcher_free(b);
    free(sl);
    free(tl);
    pairset_free(&ps);
}

static void same_as_old(Arch arch) {
    char dir[128], train[256], out[256];
    test_tmpdir(dir, sizeof dir);
    Tokenizer *tok = tok_for(dir, train, sizeof train);
    snprintf(out, sizeof out, "%s/out", dir);
    TrainOptions o;
    options(&o, train, out);
    Model *a = small_model(tok, arch), *b = small_model(tok, arch);
    cr_assert(!memcmp(a->params, b->params, a->n_params * sizeof(real)));
    old_loop(a, tok, &o);
    TEST_ASSERT_OK(train_run(b, tok, &o));
    size_t differ = 0;
    for (size_t i = 0; i < a->n_params; i++) differ += a->params[i] != b->params[i];
    cr_assert_eq(differ, 0, "%zu of %zu parameters differ from the old loop's", differ, a->n_params);
    /* and the run moved them */
    Model *init = small_model(tok, arch);
    size_t moved = 0;
    for (size_t i = 0; i < a->n_params; i++) moved += a->params[i] != init->params[i];
    cr_assert(moved > a->n_params / 2);
    model_free(init);
    model_free(a);
    model_free(b);
    tokenizer_free(tok);
    test_rmtree(dir);
}

Test(loop, reproduces_the_old_loop_encdec, .timeout = 120) { same_as_old(ARCH_MBART); }
Test(loop, reproduces_the_old_loop_gpt2, .timeout = 120) { same_as_old(ARCH_GPT2); }

/* A custom loss (cross-entropy times a factor that a counter changes) and an extra state. */
typedef struct {
    XentLoss xent;
    long calls;
} CountingLoss;

static int counting_step(void *ctx, Model *m, const Batch *b, double *sum, double *w) {
    CountingLoss *l = ctx;
    l->calls++;
    TrainLoss inner = xent_loss_iface(&l->xent);
    return inner.step(&l->xent, m, b, sum, w);
}
static cJSON *counting_save(void *ctx) { return cJSON_CreateNumber((double)((CountingLoss *)ctx)->calls); }
static int counting_restore(void *ctx, const cJSON *s) {
    if (!cJSON_IsNumber(s)) return tt_err("bad counter");
    ((CountingLoss *)ctx)->calls = (long)s->valuedouble;
    return 0;
}

Test(loop, components_state_rides_in_the_checkpoint, .timeout = 120) {
    char dir[128], train[256], out[256];
    test_tmpdir(dir, sizeof dir);
    Tokenizer *tok = tok_for(dir, train, sizeof train);
    snprintf(out, sizeof out, "%s/out", dir);
    TrainOptions o;
    options(&o, train, out);
    o.max_steps = 4, o.save_every = 2;
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, train, &o.jsonl, 0));
    PairSet ps;
    TEST_ASSERT_OK(pairset_build(&ps, &ds, tok, o.max_source_tokens, o.max_target_tokens, 0));
    dataset_free(&ds);
    Model *m = small_model(tok, ARCH_MBART);
    PairSource *src = pair_source_new(&ps, &m->cfg, o.batch_tokens, o.max_batch, 40, 16, o.seed);
    CountingLoss cl = {{0.1}, 0};
    CountingLoss extra = {{0}, 1000};
    TrainParts parts = {.source = pair_source_iface(src),
                        .loss = {.ctx = &cl, .name = "counting", .step = counting_step, .save = counting_save,
                                 .restore = counting_restore},
                        .tok = tok};
    parts.extras[0] = (TrainExtra){"counter", &extra, counting_save, counting_restore};
    parts.n_extras = 1;
    Trainer *t = trainer_open(m, &o, &parts);
    cr_assert(t, "%s", tt_errmsg());
    cr_assert_eq(trainer_run(t), 0, "%s", tt_errmsg());
    trainer_close(t);
    long calls = cl.calls;
    cr_assert(calls >= 4, "the loss ran once per batch");
    /* the checkpoint holds both states */
    char path[400];
    snprintf(path, sizeof path, "%s/checkpoint.json", out);
    size_t n;
    char *ptr = read_file_text(path, &n);
    cJSON *p = cJSON_Parse(ptr);
    snprintf(path, sizeof path, "%s/%s/trainer_state.json", out,
             cJSON_GetObjectItem(p, "slot")->valuestring);
    cJSON_Delete(p);
    free(ptr);
    char *st = read_file_text(path, &n);
    cJSON *s = cJSON_Parse(st);
    free(st);
    cr_assert_eq((long)cJSON_GetObjectItem(s, "loss")->valuedouble, calls);
    cr_assert_eq((long)cJSON_GetObjectItem(cJSON_GetObjectItem(s, "extra"), "counter")->valuedouble, 1000);
    cr_assert(cJSON_GetObjectItem(s, "source"), "the batch source's position");
    cJSON_Delete(s);
    /* resuming restores them */
    cl.calls = 0, extra.calls = 0;
    o.resume = 1;
    t = trainer_open(m, &o, &parts);
    cr_assert(t, "%s", tt_errmsg());
    cr_assert_eq(cl.calls, calls);
    cr_assert_eq(extra.calls, 1000);
    trainer_close(t);
    /* a checkpoint without the extra state is refused with its name */
    parts.extras[0].name = "other";
    t = trainer_open(m, &o, &parts);
    cr_assert(!t);
    cr_assert(strstr(tt_errmsg(), "other"), "%s", tt_errmsg());
    pair_source_free(src);
    pairset_free(&ps);
    model_free(m);
    tokenizer_free(tok);
    test_rmtree(dir);
}
