/* test_trainer.c: `tutor train` and the training loop (issue 3): a run killed with SIGKILL
 * and resumed ends with the same parameters, bit for bit, as a run never interrupted;
 * SIGTERM saves a checkpoint and exits; NaN stops training and keeps the last good
 * checkpoint; bad input names file and line; and a small model really learns: on debdesc
 * its dev loss ends at least 0.5 nats below the unigram baseline. */
#include <math.h>
#include <signal.h>
#include <sys/wait.h>

#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/train.h"

#define DATA "build/data/debdesc"

static void ensure_data(void) {
    cr_assert(system("scripts/debdesc-fetch.sh >/dev/null") == 0, "scripts/debdesc-fetch.sh failed");
}

/* A small tokenizer trained on the first 2,000 labeled pairs. */
static void make_tokenizer(const char *dir, char *tok_path, size_t n) {
    char cmd[1024];
    snprintf(tok_path, n, "%s/tok.json", dir);
    snprintf(cmd, sizeof cmd, "head -n 2000 %s/labeled.jsonl > %s/train.jsonl && head -n 200 %s/dev.jsonl > %s/dev.jsonl",
             DATA, dir, DATA, dir);
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s/train.jsonl --vocab 2000 -o %s 2>/dev/null", tutor_bin(), dir,
             tok_path);
    cr_assert(system(cmd) == 0, "tokenizer train failed: %s", cmd);
}

static char run_args[2048];

static void set_args(const char *dir, const char *tok) {
    snprintf(run_args, sizeof run_args,
             "--tokenizer %s --data %s/train.jsonl --dev %s/dev.jsonl --d-model 32 --layers 1 --heads 2 --ffn 64 "
             "--max-steps 40 --eval-every 10 --save-every 5 --log-every 10 --batch-tokens 768 "
             "--max-source-tokens 48 --max-target-tokens 16 --lr 2e-3 --warmup 5 --threads 1 --no-progress "
             "--dropout 0.1 --seed 7 --dev-rouge-examples 50",
             tok, dir, dir);
}

/* tutor pretrain on the same documents: text infilling and gap sentences mixed */
static void set_pretrain_args(const char *dir, const char *tok) {
    snprintf(run_args, sizeof run_args,
             "--tokenizer %s --data %s/train.jsonl --d-model 32 --layers 1 --heads 2 --ffn 64 "
             "--max-steps 40 --eval-every 10 --save-every 5 --log-every 10 --batch-tokens 1024 "
             "--max-source-tokens 48 --lr 2e-3 --warmup 5 --threads 1 --no-progress "
             "--dropout 0.1 --seed 7 --objective mix",
             tok, dir);
}

static const char *run_cmd = "train";

static pid_t spawn_train(const char *out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s %s %s -o %s >%s.log 2>&1", tutor_bin(), run_cmd, run_args, out, out);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void final_params(const char *out, char *path, size_t n) {
    char ptr[600];
    snprintf(ptr, sizeof ptr, "%s/checkpoint.json", out);
    size_t len;
    char *t = read_file_text(ptr, &len);
    cr_assert(t, "%s", tt_errmsg());
    snprintf(path, n, "%s/%s/model.safetensors", out, strstr(t, "checkpoint-a") ? "checkpoint-a" : "checkpoint-b");
    free(t);
}

static void interrupted_run_matches(int sig, const char *command) {
    ensure_data();
    char dir[128], tok[256], a[256], b[256], cmd[4200];
    test_tmpdir(dir, sizeof dir);
    make_tokenizer(dir, tok, sizeof tok);
    run_cmd = command;
    if (!strcmp(command, "pretrain")) set_pretrain_args(dir, tok);
    else set_args(dir, tok);
    snprintf(a, sizeof a, "%s/uninterrupted", dir);
    snprintf(b, sizeof b, "%s/interrupted", dir);
    snprintf(cmd, sizeof cmd, "%s %s %s -o %s >%s.log 2>&1", tutor_bin(), run_cmd, run_args, a, a);
    cr_assert(system(cmd) == 0, "uninterrupted run failed (see %s.log)", a);

    pid_t pid = spawn_train(b);
    /* wait for a checkpoint past the first, then kill mid-run */
    double t0 = tt_now_s();
    while (test_checkpoint_step(b) < 15 && tt_now_s() - t0 < 60) usleep(2000);
    cr_assert(test_checkpoint_step(b) >= 15, "no checkpoint appeared");
    kill(pid, sig);
    int status;
    waitpid(pid, &status, 0);
    long at = test_checkpoint_step(b);
    if (sig == SIGKILL) {
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child was not killed");
    } else {
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 130, "SIGTERM: expected exit 130, got status %d", status);
    }
    cr_log_info("signal %d at checkpoint step %ld", sig, at);
    cr_assert(at < 40, "the run finished before it could be interrupted");
    snprintf(cmd, sizeof cmd, "%s %s %s -o %s --resume >>%s.log 2>&1", tutor_bin(), run_cmd, run_args, b, b);
    cr_assert(system(cmd) == 0, "resumed run failed (see %s.log)", b);
    char pa[600], pb[600];
    final_params(a, pa, sizeof pa);
    final_params(b, pb, sizeof pb);
    cr_expect(test_files_equal(pa, pb), "parameters after kill + resume differ from the uninterrupted run");
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    cr_expect(test_files_equal(pa, pb), "best models differ");
    test_rmtree(dir);
}

Test(trainer, sigkill_then_resume_is_bit_identical, .timeout = 240) { interrupted_run_matches(SIGKILL, "train"); }
Test(trainer, sigterm_saves_checkpoint_then_resume_is_bit_identical, .timeout = 240) {
    interrupted_run_matches(SIGTERM, "train");
}
Test(trainer, pretrain_sigkill_then_resume_is_bit_identical, .timeout = 240) {
    interrupted_run_matches(SIGKILL, "pretrain");
}

Test(trainer, bad_input_names_file_and_line) {
    char dir[128], path[256], cmd[1024];
    test_tmpdir(dir, sizeof dir);
    ensure_data();
    char tok[256];
    make_tokenizer(dir, tok, sizeof tok);
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"source\": \"a b c\", \"target\": \"x\"}\n{\"source\": \"no target here\"}\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s train --tokenizer %s --data %s -o %s/out --max-steps 1 2>%s/err.txt", tutor_bin(), tok,
             path, dir, dir);
    int rc = system(cmd);
    cr_assert(rc != 0, "bad input must fail");
    snprintf(path, sizeof path, "%s/err.txt", dir);
    size_t n;
    char *err = read_file_text(path, &n);
    cr_assert(err);
    cr_expect(strstr(err, "bad.jsonl:2:") && strstr(err, "target"), "error should name file, line and field: %s", err);
    free(err);
    test_rmtree(dir);
}

/* NaN in the parameters: training stops with a clear error, keeping the checkpoint. */
Test(trainer, nan_stops_and_keeps_checkpoint) {
    ensure_data();
    char dir[128], tok_path[256];
    test_tmpdir(dir, sizeof dir);
    make_tokenizer(dir, tok_path, sizeof tok_path);
    Tokenizer *tok = tokenizer_load(tok_path);
    cr_assert(tok);
    ModelConfig cfg;
    model_config_default(&cfg, ARCH_MBART);
    cfg.vocab_size = tokenizer_vocab_size(tok);
    cfg.d_model = 32, cfg.enc_layers = cfg.dec_layers = 1, cfg.enc_heads = cfg.dec_heads = 2;
    cfg.enc_ffn = cfg.dec_ffn = 64, cfg.max_positions = 64;
    Model *m = model_new(&cfg, 1);
    TrainOptions o;
    train_options_default(&o);
    char train[256], out[256];
    snprintf(train, sizeof train, "%s/train.jsonl", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    o.train_path = train;
    o.out_dir = out;
    o.max_source_tokens = 48, o.max_target_tokens = 16, o.batch_tokens = 768;
    o.max_steps = 4, o.save_every = 2, o.progress = 0;
    TEST_ASSERT_OK(train_run(m, tok, &o));
    cr_assert_eq(test_checkpoint_step(out), 4);
    m->params[5] = NAN;
    o.max_steps = 8;
    o.resume = 0;
    o.save_every = 1;
    char out2[300];
    snprintf(out2, sizeof out2, "%s/out2", dir);
    o.out_dir = out2;
    /* a first good checkpoint, then poison */
    int rc = train_run(m, tok, &o);
    cr_assert_eq(rc, -1, "NaN must stop training");
    cr_expect(strstr(tt_errmsg(), "NaN") != NULL, "message: %s", tt_errmsg());
    cr_expect_lt(test_checkpoint_step(out2), 1, "no checkpoint may be written from a NaN step");
    model_free(m);
    tokenizer_free(tok);
    test_rmtree(dir);
}

/* Bar 3: a d_model 128, 2+2-layer model, at most 500 steps on the first 2,000 labeled
 * pairs, ends with a dev loss (first 200 dev pairs) at least 0.5 nats per token below the
 * unigram baseline: the cross-entropy on the dev targets of the training targets' token
 * frequencies (</s> included, add-one smoothing so that unseen tokens have a cost). */
Test(trainer, small_model_beats_unigram_baseline, .timeout = 600) {
    ensure_data();
    char dir[128], tok_path[256], train[256], dev[256], out[256];
    test_tmpdir(dir, sizeof dir);
    make_tokenizer(dir, tok_path, sizeof tok_path);
    snprintf(train, sizeof train, "%s/train.jsonl", dir);
    snprintf(dev, sizeof dev, "%s/dev.jsonl", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    Tokenizer *tok = tokenizer_load(tok_path);
    cr_assert(tok, "%s", tt_errmsg());
    TrainOptions o;
    train_options_default(&o);
    o.train_path = train, o.dev_path = dev, o.out_dir = out;
    o.max_source_tokens = 96, o.max_target_tokens = 32;
    o.batch_tokens = 1536, o.max_batch = 64;
    o.schedule.peak_lr = o.adam.lr = 2e-3;
    o.schedule.warmup_steps = 40;
    o.max_steps = 400, o.eval_every = 100, o.save_every = 400, o.log_every = 100, o.patience = 0;
    o.progress = 0;

    /* the unigram baseline */
    Dataset dtrain = {0}, ddev = {0};
    TEST_ASSERT_OK(dataset_load_jsonl(&dtrain, train, &o.jsonl, 0));
    TEST_ASSERT_OK(dataset_load_jsonl(&ddev, dev, &o.jsonl, 0));
    PairSet ptrain, pdev;
    TEST_ASSERT_OK(pairset_build(&ptrain, &dtrain, tok, o.max_source_tokens, o.max_target_tokens, 0));
    TEST_ASSERT_OK(pairset_build(&pdev, &ddev, tok, o.max_source_tokens, o.max_target_tokens, 0));
    int V = tokenizer_vocab_size(tok);
    double *count = calloc((size_t)V, sizeof(double)), total = 0;
    for (size_t i = 0; i < ptrain.n; i++)
        for (int t = 0; t < ptrain.items[i].tgt_len; t++) count[ptrain.items[i].tgt[t]] += 1, total += 1;
    double ce = 0;
    long n = 0;
    for (size_t i = 0; i < pdev.n; i++)
        for (int t = 0; t < pdev.items[i].tgt_len; t++, n++)
            ce -= log((count[pdev.items[i].tgt[t]] + 1) / (total + V));
    double baseline = ce / (double)n;

    ModelConfig cfg;
    model_config_default(&cfg, ARCH_MBART);
    cfg.vocab_size = V;
    cfg.d_model = 128, cfg.enc_layers = cfg.dec_layers = 2, cfg.enc_heads = cfg.dec_heads = 4;
    cfg.enc_ffn = cfg.dec_ffn = 512, cfg.max_positions = 128, cfg.dropout = 0.1f;
    Model *m = model_new(&cfg, 3);
    cr_assert(m);
    double t0 = tt_now_s();
    TEST_ASSERT_OK(train_run(m, tok, &o));
    double secs = tt_now_s() - t0;
    Model *best = model_load(out);
    cr_assert(best, "%s", tt_errmsg());
    long n_eval;
    double dev_loss = evaluate_loss(best, &pdev, o.batch_tokens, o.max_batch, &n_eval);
    cr_log_info("unigram baseline %.3f nats/token on %ld dev target tokens; model dev loss %.3f after %ld steps "
                "(%.0f s): %.3f below",
                baseline, n, dev_loss, o.max_steps, secs, baseline - dev_loss);
    cr_expect_eq(n_eval, n);
    cr_expect(dev_loss <= baseline - 0.5, "dev loss %.3f is not 0.5 below the unigram baseline %.3f", dev_loss,
              baseline);
    free(count);
    pairset_free(&ptrain);
    pairset_free(&pdev);
    dataset_free(&dtrain);
    dataset_free(&ddev);
    model_free(best);
    model_free(m);
    tokenizer_free(tok);
    test_rmtree(dir);
}

/* Gradient accumulation as the trainer does it (each batch adds the gradient of its summed
 * token loss; the sum is divided by the update's token count) equals the gradient of the
 * mean loss over one batch holding all the pairs. */
Test(trainer, accumulation_equals_one_big_batch) {
    ensure_data();
    char dir[128], tok_path[256], train[256];
    test_tmpdir(dir, sizeof dir);
    make_tokenizer(dir, tok_path, sizeof tok_path);
    snprintf(train, sizeof train, "%s/train.jsonl", dir);
    Tokenizer *tok = tokenizer_load(tok_path);
    JsonlOptions jo;
    jsonl_options_default(&jo);
    Dataset ds = {0};
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, train, &jo, 8));
    PairSet ps;
    TEST_ASSERT_OK(pairset_build(&ps, &ds, tok, 40, 16, 0));
    ModelConfig cfg;
    model_config_default(&cfg, ARCH_MBART);
    cfg.vocab_size = tokenizer_vocab_size(tok);
    cfg.d_model = 32, cfg.enc_layers = cfg.dec_layers = 1, cfg.enc_heads = cfg.dec_heads = 2;
    cfg.enc_ffn = cfg.dec_ffn = 64, cfg.max_positions = 64, cfg.dropout = 0;
    Model *m = model_new(&cfg, 1);
    TEST_ASSERT_OK(model_alloc_grads(m));
    BatchBuf bb;
    TEST_ASSERT_OK(batchbuf_init(&bb, 8 * 40, 8 * 16));
    size_t all[8] = {0, 1, 2, 3, 4, 5, 6, 7}, first[3] = {0, 1, 2}, rest[5] = {3, 4, 5, 6, 7};
    /* one batch */
    model_zero_grads(m);
    TEST_ASSERT_OK(batch_assemble(&bb, &cfg, &ps, all, 8));
    TEST_ASSERT_OK(model_forward(m, &bb.batch, 1));
    model_xent(m, &bb.batch, 0.1, 1, 1, NULL);
    TEST_ASSERT_OK(model_backward(m, &bb.batch));
    real *g_one = malloc(m->n_params * sizeof(real));
    memcpy(g_one, m->grads, m->n_params * sizeof(real));
    /* two batches, accumulated */
    model_zero_grads(m);
    long total = 0;
    const size_t *parts[2] = {first, rest};
    int counts[2] = {3, 5};
    for (int p = 0; p < 2; p++) {
        TEST_ASSERT_OK(batch_assemble(&bb, &cfg, &ps, parts[p], counts[p]));
        TEST_ASSERT_OK(model_forward(m, &bb.batch, 1));
        model_xent(m, &bb.batch, 0.1, 1, (double)bb.n_target_tokens, NULL);
        TEST_ASSERT_OK(model_backward(m, &bb.batch));
        total += bb.n_target_tokens;
    }
    for (size_t i = 0; i < m->n_params; i++) m->grads[i] /= (real)total;
    double md, mr;
    test_maxdiff(m->grads, g_one, m->n_params, &md, &mr);
    cr_expect(md <= 1e-5 * mr, "accumulated gradient differs from the one-batch gradient by %g (max %g)", md, mr);
    free(g_one);
    batchbuf_free(&bb);
    model_free(m);
    pairset_free(&ps);
    dataset_free(&ds);
    tokenizer_free(tok);
    test_rmtree(dir);
}
