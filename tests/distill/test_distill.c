/* test_distill.c: the pieces of `tutor distill` (issue 10): pseudo-target epoch cycling and
 * its resume, the Joint-Teaching and GKD schedules, shrink init (the student computes what
 * the teacher computes with the dropped layers made identities), generation on the model
 * being trained between two steps, the distillation loss (zero for a student equal to its
 * teacher; its gradient through the model against finite differences), a killed `tutor
 * distill` resuming bit for bit, and clear errors on mismatched inputs. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "../testlib.h"
#include "tutor/distill.h"
#include "tutor/fileio.h"

static ModelConfig tiny_config(Arch arch, int vocab, int enc_layers, int dec_layers, float dropout) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.vocab_size = vocab;
    c.d_model = 16, c.dec_layers = dec_layers, c.dec_heads = 2, c.dec_ffn = 32, c.max_positions = 64;
    if (arch != ARCH_GPT2) c.enc_layers = enc_layers, c.enc_heads = 2, c.enc_ffn = 32;
    else c.enc_layers = c.enc_heads = c.enc_ffn = 0;
    c.dropout = dropout, c.attn_dropout = 0, c.act_dropout = 0;
    c.pad_id = 1, c.bos_id = 0, c.eos_id = 2;
    if (arch != ARCH_GPT2) c.decoder_start_id = 2, c.forced_eos_id = 2;
    return c;
}

/* Pairs with given ids: sources of 3..6 tokens, targets of 2..4 ending in </s> (2). */
static void make_pairs(PairSet *ps, int n, int tgt_token, uint64_t seed) {
    memset(ps, 0, sizeof *ps);
    ps->items = calloc((size_t)n, sizeof(TokPair));
    ps->pool = malloc(sizeof(int) * (size_t)n * 12);
    ps->n = (size_t)n;
    Rng r;
    rng_seed(&r, seed);
    int used = 0;
    for (int i = 0; i < n; i++) {
        TokPair *p = &ps->items[i];
        p->src = ps->pool + used;
        p->src_len = 3 + (int)rng_below(&r, 4);
        p->src[0] = 0;
        for (int k = 1; k < p->src_len - 1; k++) p->src[k] = 5 + (int)rng_below(&r, 20);
        p->src[p->src_len - 1] = 2;
        used += p->src_len;
        p->tgt = ps->pool + used;
        p->tgt_len = 2 + (int)rng_below(&r, 3);
        for (int k = 0; k < p->tgt_len - 1; k++) p->tgt[k] = tgt_token;
        p->tgt[p->tgt_len - 1] = 2;
        used += p->tgt_len;
    }
}

/* The target tokens (other than </s>) of the batches of one epoch, as a histogram. */
static void epoch_targets(BatchSource *bs, long *hist, int H) {
    for (;;) {
        const Batch *b;
        long nt;
        int rc = bs->next(bs->ctx, &b, &nt);
        cr_assert(rc >= 0, "%s", tt_errmsg());
        for (long i = 0; i < (long)b->B * b->T; i++)
            if (b->labels[i] >= 0 && b->labels[i] != 2 && b->labels[i] < H) hist[b->labels[i]]++;
        if (rc == 1) return;
    }
}

Test(pt_source, epoch_e_uses_the_e_mod_k_th_pseudo_target_with_gold_kept) {
    ModelConfig c = tiny_config(ARCH_MBART, 200, 1, 1, 0);
    PairSet gold, pts[3];
    make_pairs(&gold, 7, 100, 1);
    for (int k = 0; k < 3; k++) make_pairs(&pts[k], 11, 110 + k, 2); /* same sources, target k */
    PtSource *s = pt_source_new(&gold, pts, 3, &c, 60, 4, 8, 6, 9);
    cr_assert(s, "%s", tt_errmsg());
    BatchSource bs = pt_source_iface(s);
    for (int e = 0; e < 7; e++) {
        long hist[200] = {0};
        epoch_targets(&bs, hist, 200);
        cr_expect_eq(pt_source_index_for_epoch(s, (uint64_t)e), e % 3);
        cr_expect(hist[100] > 0, "epoch %d: gold missing", e);
        for (int k = 0; k < 3; k++) {
            if (k == e % 3) cr_expect(hist[110 + k] > 0, "epoch %d: PT %d missing", e, k);
            else cr_expect(hist[110 + k] == 0, "epoch %d: PT %d present", e, k);
        }
        uint64_t ep;
        double frac;
        bs.position(bs.ctx, &ep, &frac);
        cr_expect_eq(ep, (uint64_t)e + 1);
    }
    /* resume mid-epoch: a fresh source restored from the state yields the same batches */
    const Batch *b;
    long nt;
    cr_assert(bs.next(bs.ctx, &b, &nt) >= 0);
    cJSON *st = bs.save(bs.ctx);
    cr_assert(st);
    PtSource *s2 = pt_source_new(&gold, pts, 3, &c, 60, 4, 8, 6, 9);
    BatchSource bs2 = pt_source_iface(s2);
    TEST_ASSERT_OK(bs2.restore(bs2.ctx, st));
    for (int i = 0; i < 40; i++) {
        const Batch *x, *y;
        long n1, n2;
        int r1 = bs.next(bs.ctx, &x, &n1), r2 = bs2.next(bs2.ctx, &y, &n2);
        cr_assert_eq(r1, r2);
        cr_assert(x->B == y->B && x->T == y->T && x->S == y->S && n1 == n2);
        cr_assert(!memcmp(x->labels, y->labels, sizeof(int) * (size_t)x->B * x->T), "batch %d differs after restore", i);
        cr_assert(!memcmp(x->src, y->src, sizeof(int) * (size_t)x->B * x->S));
    }
    /* a state saved with another K is refused */
    PtSource *s3 = pt_source_new(&gold, pts, 2, &c, 60, 4, 8, 6, 9);
    BatchSource bs3 = pt_source_iface(s3);
    cr_expect(bs3.restore(bs3.ctx, st) != 0 && strstr(tt_errmsg(), "pseudo-targets per input"), "%s", tt_errmsg());
    cJSON_Delete(st);
    pt_source_free(s);
    pt_source_free(s2);
    pt_source_free(s3);
    pairset_free(&gold);
    for (int k = 0; k < 3; k++) pairset_free(&pts[k]);
}

static DistillLoss *loss_for(Model *teacher, Model *student, TargetMode mode, double fraction) {
    DistillLossOptions o;
    distill_loss_options_default(&o);
    o.teacher = teacher;
    o.targets = mode;
    o.student_fraction = fraction;
    o.max_source_tokens = 8, o.max_target_tokens = 6;
    DistillLoss *l = distill_loss_new(&o, student, 8, 8, 6);
    cr_assert(l, "%s", tt_errmsg());
    return l;
}

Test(schedules, joint_teaching_and_gkd) {
    ModelConfig c = tiny_config(ARCH_MBART, 64, 1, 1, 0);
    Model *t = model_new(&c, 1), *s = model_new(&c, 2);
    DistillLoss *jt = loss_for(t, s, TARGETS_JOINT, 0.5);
    for (uint64_t k = 0; k < 100; k++) cr_expect_eq(distill_loss_uses_student(jt, k), (int)(k % 2 == 1));
    distill_loss_free(jt);
    jt = loss_for(t, s, TARGETS_JOINT, 0.25);
    long n = 0;
    for (uint64_t k = 0; k < 400; k++) {
        n += distill_loss_uses_student(jt, k);
        if (k % 4 == 3) cr_expect_eq(n, (long)(k + 1) / 4, "alpha 0.25: %ld student batches of %lu", n, k + 1);
    }
    distill_loss_free(jt);
    DistillLoss *g = loss_for(t, s, TARGETS_GKD, 0.3);
    n = 0;
    int first[64];
    for (uint64_t k = 0; k < 20000; k++) {
        int u = distill_loss_uses_student(g, k);
        if (k < 64) first[k] = u;
        n += u;
    }
    cr_expect(fabs(n / 20000.0 - 0.3) < 0.015, "GKD lambda 0.3: on-policy fraction %g", n / 20000.0);
    for (uint64_t k = 0; k < 64; k++) cr_expect_eq(distill_loss_uses_student(g, k), first[k], "not deterministic");
    distill_loss_free(g);
    DistillLoss *d = loss_for(t, s, TARGETS_DATA, 0.5), *st = loss_for(t, s, TARGETS_STUDENT, 0.5);
    for (uint64_t k = 0; k < 10; k++) cr_expect(!distill_loss_uses_student(d, k) && distill_loss_uses_student(st, k));
    distill_loss_free(d);
    distill_loss_free(st);
    model_free(t);
    model_free(s);
}

/* ---- shrink ---- */

static void batch_for(const ModelConfig *c, PairSet *ps, BatchBuf *bb) {
    make_pairs(ps, 5, 30, 3);
    cr_assert(batchbuf_init(bb, 200, 200) == 0);
    size_t idx[5] = {0, 1, 2, 3, 4};
    TEST_ASSERT_OK(batch_assemble(bb, c, ps, idx, 5));
}

static void logits_of(Model *m, const Batch *b, real *out) {
    TEST_ASSERT_OK(model_forward(m, b, FWD_INFER));
    model_logits(m, 0, b->B * b->T, out);
}

static void zero_tensor(Model *m, const char *name) {
    const ParamInfo *p = model_find_tensor(m, name);
    cr_assert(p, "no tensor %s", name);
    memset(m->params + p->offset, 0, p->numel * sizeof(real));
}

static void shrink_case(Arch arch) {
    ModelConfig c = tiny_config(arch, 64, 2, 3, 0);
    Model *t = model_new(&c, 4);
    int keep[2] = {0, 2};
    Model *s = model_shrink(t, NULL, 0, keep, 2);
    cr_assert(s, "%s", tt_errmsg());
    cr_expect_eq(s->cfg.dec_layers, 2);
    /* the teacher with decoder layer 1 an identity: its residual branches' outputs zeroed
     * (pre-LN: x + 0 = x) */
    Model *ti = model_new(&c, 4);
    if (arch == ARCH_GPT2) {
        zero_tensor(ti, "transformer.h.1.attn.c_proj.weight");
        zero_tensor(ti, "transformer.h.1.attn.c_proj.bias");
        zero_tensor(ti, "transformer.h.1.mlp.c_proj.weight");
        zero_tensor(ti, "transformer.h.1.mlp.c_proj.bias");
    } else {
        zero_tensor(ti, "model.decoder.layers.1.self_attn.out_proj.weight");
        zero_tensor(ti, "model.decoder.layers.1.self_attn.out_proj.bias");
        zero_tensor(ti, "model.decoder.layers.1.encoder_attn.out_proj.weight");
        zero_tensor(ti, "model.decoder.layers.1.encoder_attn.out_proj.bias");
        zero_tensor(ti, "model.decoder.layers.1.fc2.weight");
        zero_tensor(ti, "model.decoder.layers.1.fc2.bias");
    }
    PairSet ps;
    BatchBuf bb;
    batch_for(&c, &ps, &bb);
    long n = (long)bb.batch.B * bb.batch.T * c.vocab_size;
    real *a = malloc(sizeof(real) * (size_t)n), *b = malloc(sizeof(real) * (size_t)n);
    logits_of(s, &bb.batch, a);
    logits_of(ti, &bb.batch, b);
    double md, mr;
    test_maxdiff(a, b, (size_t)n, &md, &mr);
    cr_expect(md <= 1e-5 * fmax(1, mr), "arch %d: shrunk student and identity-layer teacher differ by %g", arch, md);
    /* and it is not trivially so: the full teacher differs */
    logits_of(t, &bb.batch, b);
    test_maxdiff(a, b, (size_t)n, &md, &mr);
    cr_expect(md > 1e-3, "the dropped layer made no difference (%g)", md);
    /* keeping every layer is the teacher, bit for bit */
    int all[3] = {0, 1, 2};
    Model *s3 = model_shrink(t, NULL, 0, all, 3);
    logits_of(s3, &bb.batch, a);
    cr_expect(!memcmp(a, b, sizeof(real) * (size_t)n), "keeping every layer changed the outputs");
    free(a);
    free(b);
    batchbuf_free(&bb);
    pairset_free(&ps);
    model_free(s3);
    model_free(s);
    model_free(t);
    model_free(ti);
}

Test(shrink, mbart_student_is_the_teacher_without_the_layer) { shrink_case(ARCH_MBART); }
Test(shrink, gpt2_student_is_the_teacher_without_the_layer) { shrink_case(ARCH_GPT2); }

Test(shrink, encoder_layers_and_layer_lists) {
    int out[8];
    cr_expect_eq(parse_layer_list("0,-1", 6, out, 8), 2);
    cr_expect(out[0] == 0 && out[1] == 5);
    cr_expect_eq(parse_layer_list("3,1", 6, out, 8), 2);
    cr_expect(out[0] == 1 && out[1] == 3);
    cr_expect_eq(parse_layer_list("6", 6, out, 8), -1);
    cr_expect_eq(parse_layer_list("1,1", 6, out, 8), -1);
    cr_expect_eq(parse_layer_list("a", 6, out, 8), -1);
    ModelConfig c = tiny_config(ARCH_BART, 64, 3, 2, 0);
    Model *t = model_new(&c, 4);
    int enc[1] = {2};
    Model *s = model_shrink(t, enc, 1, NULL, 0);
    cr_assert(s, "%s", tt_errmsg());
    cr_expect(s->cfg.enc_layers == 1 && s->cfg.dec_layers == 2);
    const ParamInfo *a = model_find_tensor(s, "model.encoder.layers.0.fc1.weight");
    const ParamInfo *b = model_find_tensor(t, "model.encoder.layers.2.fc1.weight");
    cr_expect(!memcmp(s->params + a->offset, t->params + b->offset, a->numel * sizeof(real)));
    model_free(s);
    model_free(t);
}

/* ---- generation between two steps ---- */

static void sgd_step(Model *m, const Batch *b) {
    model_zero_grads(m);
    TEST_ASSERT_OK(model_forward(m, b, FWD_TRAIN));
    model_xent(m, b, 0, 1, 1, NULL);
    TEST_ASSERT_OK(model_backward(m, b));
    for (size_t i = 0; i < m->n_params; i++) m->params[i] -= 0.05f * m->grads[i];
}

Test(generation, between_two_steps_changes_nothing) {
    ModelConfig c = tiny_config(ARCH_MBART, 64, 1, 2, 0.2f);
    Model *a = model_new(&c, 6), *b = model_new(&c, 6);
    model_alloc_grads(a);
    model_alloc_grads(b);
    PairSet ps;
    BatchBuf bb;
    batch_for(&c, &ps, &bb);
    sgd_step(a, &bb.batch);
    sgd_step(b, &bb.batch);
    GenConfig g;
    gen_config_from_model(&g, &c);
    g.do_sample = 1, g.top_k = 0, g.max_new_tokens = 8, g.seed = 3;
    Generator *gen = generator_new(b, &g, 5, 8);
    cr_assert(gen, "%s", tt_errmsg());
    const int *src[5];
    int len[5];
    uint64_t stream[5];
    for (int i = 0; i < 5; i++) src[i] = ps.items[i].src, len[i] = ps.items[i].src_len, stream[i] = (uint64_t)i;
    const GenOutput *out;
    TEST_ASSERT_OK(generator_run(gen, 5, src, len, stream, &out));
    cr_expect(out[0].hyps[0].n_tokens > 0);
    sgd_step(a, &bb.batch);
    sgd_step(b, &bb.batch);
    cr_expect(!memcmp(a->params, b->params, sizeof(real) * a->n_params),
              "a generation between two steps changed the next step");
    generator_free(gen);
    batchbuf_free(&bb);
    pairset_free(&ps);
    model_free(a);
    model_free(b);
}

/* ---- the distillation loss ---- */

static double dl_loss(DistillLoss *l, Model *m, const Batch *b, int grads) {
    TrainLoss tl = distill_loss_iface(l);
    (void)grads;
    model_zero_grads(m);
    double sum, w;
    TEST_ASSERT_OK(tl.step(tl.ctx, m, b, &sum, &w));
    (void)w;
    return sum; /* the gradient is of the sum (TrainLoss) */
}

Test(distill_loss, zero_for_the_teacher_itself_and_gradient_checks) {
    ModelConfig c = tiny_config(ARCH_MBART, 48, 1, 2, 0);
    Model *t = model_new(&c, 7), *same = model_new(&c, 7), *s = model_new(&c, 8);
    model_alloc_grads(same);
    model_alloc_grads(s);
    PairSet ps;
    BatchBuf bb;
    batch_for(&c, &ps, &bb);
    DistillLossOptions o;
    distill_loss_options_default(&o);
    o.teacher = t;
    o.max_source_tokens = 8, o.max_target_tokens = 6;
    DistillLoss *l = distill_loss_new(&o, same, 5, 8, 6);
    double z = dl_loss(l, same, &bb.batch, 1);
    cr_expect(fabs(z) < 1e-6, "KL(teacher || teacher copy) = %g", z);
    double gmax = 0;
    for (size_t i = 0; i < same->n_params; i++) gmax = fmax(gmax, fabs(same->grads[i]));
    cr_expect(gmax < 1e-5, "gradient %g for a student equal to the teacher", gmax);
    distill_loss_free(l);
    /* the loss of a student that is not the teacher, against the definition computed here:
     * per sequence the mean over its target tokens of KL(p || q), summed over sequences */
    {
        DistillLoss *l2 = distill_loss_new(&o, s, 5, 8, 6);
        double got = dl_loss(l2, s, &bb.batch, 1);
        const Batch *b = &bb.batch;
        long cells = (long)b->B * b->T;
        real *lt = malloc(sizeof(real) * (size_t)cells * c.vocab_size), *ls = malloc(sizeof(real) * (size_t)cells * c.vocab_size);
        TEST_ASSERT_OK(model_forward(t, b, FWD_INFER));
        model_logits(t, 0, (int)cells, lt);
        TEST_ASSERT_OK(model_forward(s, b, FWD_INFER));
        model_logits(s, 0, (int)cells, ls);
        double want = 0, scratch[5 * 48];
        for (int i = 0; i < b->B; i++) {
            double sum = 0;
            int len = 0;
            for (int p = 0; p < b->T; p++) {
                long r = (long)i * b->T + p;
                if (b->labels[r] == -100) continue;
                sum += kd_token(&o.obj, lt + r * c.vocab_size, ls + r * c.vocab_size, c.vocab_size, scratch, NULL, 1);
                len++;
            }
            if (len) want += sum / len;
        }
        cr_expect(fabs(got - want) <= 1e-6 * want, "distillation loss %.9g, definition %.9g", got, want);
        free(lt);
        free(ls);
        distill_loss_free(l2);
    }
    /* a mix of KD (JSD) and CE through the whole student, against finite differences on the
     * parameters with the largest gradients */
    o.obj.kind = KD_JSD;
    o.obj.tau = 2;
    o.w_kd = 0.7, o.w_ce = 0.3;
    l = distill_loss_new(&o, s, 5, 8, 6);
    dl_loss(l, s, &bb.batch, 1);
    real *g = malloc(sizeof(real) * s->n_params);
    memcpy(g, s->grads, sizeof(real) * s->n_params);
    for (int probe = 0; probe < 6; probe++) {
        size_t best = 0;
        for (size_t i = 0; i < s->n_params; i++)
            if (fabs(g[i]) > fabs(g[best])) best = i;
        real keep = s->params[best];
        real h = 2e-3f;
        s->params[best] = keep + h;
        double up = dl_loss(l, s, &bb.batch, 0);
        s->params[best] = keep - h;
        double dn = dl_loss(l, s, &bb.batch, 0);
        s->params[best] = keep;
        double fd = (up - dn) / (2 * (double)h);
        cr_expect(fabs(fd - g[best]) <= 0.03 * fabs(g[best]) + 1e-4, "param %zu: gradient %g, finite difference %g",
                  best, g[best], fd);
        g[best] = 0;
    }
    free(g);
    distill_loss_free(l);
    /* a teacher of another family is refused */
    ModelConfig gc = tiny_config(ARCH_GPT2, 48, 0, 2, 0);
    Model *gpt = model_new(&gc, 1);
    o.teacher = gpt;
    cr_expect(distill_loss_new(&o, s, 5, 8, 6) == NULL && strstr(tt_errmsg(), "decoder-only"), "%s", tt_errmsg());
    model_free(gpt);
    batchbuf_free(&bb);
    pairset_free(&ps);
    model_free(t);
    model_free(same);
    model_free(s);
}

/* ---- the command: resume and errors ---- */

static void ensure_data(void) { cr_assert(system("scripts/debdesc-fetch.sh >/dev/null") == 0); }

/* A tiny teacher directory with a tokenizer, a training file and a PT file with two
 * targets per input. */
static void make_setup(const char *dir, char *teacher, char *train, char *pts) {
    char cmd[2000];
    snprintf(train, 256, "%s/train.jsonl", dir);
    snprintf(teacher, 256, "%s/teacher", dir);
    snprintf(pts, 256, "%s/pts.jsonl", dir);
    snprintf(cmd, sizeof cmd,
             "head -n 300 build/data/debdesc/labeled.jsonl > %s && %s tokenizer train --data %s --vocab 600 -o %s/tok.json "
             ">/dev/null 2>&1 && %s train --tokenizer %s/tok.json --data %s --d-model 32 --layers 2 --heads 2 --ffn 64 "
             "--max-source-tokens 40 --max-target-tokens 16 --batch-tokens 800 --max-steps 30 --no-progress "
             "--eval-every 0 -o %s >/dev/null 2>&1",
             train, tutor_bin(), train, dir, tutor_bin(), dir, train, teacher);
    cr_assert(system(cmd) == 0, "setup failed: %s", cmd);
    Dataset ds;
    JsonlOptions jo;
    jsonl_options_default(&jo);
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, train, &jo, 0));
    FILE *f = fopen(pts, "w");
    for (size_t i = 0; i < ds.n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", ds.items[i].id);
        cJSON_AddStringToObject(o, "source", ds.items[i].source);
        cJSON *t = cJSON_AddArrayToObject(o, "targets");
        cJSON_AddItemToArray(t, cJSON_CreateString(ds.items[i].target));
        cJSON_AddItemToArray(t, cJSON_CreateString(ds.items[i].source));
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    fclose(f);
    dataset_free(&ds);
}

Test(distill_cli, sigkill_then_resume_is_bit_identical, .timeout = 300) {
    ensure_data();
    char dir[128], teacher[256], train[256], pts[256], args[2000], cmd[4000], a[300], b[300];
    test_tmpdir(dir, sizeof dir);
    make_setup(dir, teacher, train, pts);
    /* Joint-Teaching: student PTs sampled online on every second batch, teacher PTs (two per
     * input, cycling) and gold on the others; noisy teacher: every RNG is exercised */
    snprintf(args, sizeof args,
             "--teacher %s --data %s --pt %s --method joint --keep-decoder-layers 1 --max-source-tokens 40 "
             "--max-target-tokens 16 --batch-tokens 500 --max-steps 40 --save-every 1 --eval-every 10 --dev %s "
             "--max-dev-examples 20 --dev-rouge-examples 10 --log-every 5 --no-progress --dropout 0.1",
             teacher, train, pts, train);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(cmd, sizeof cmd, "%s distill %s -o %s >%s.log 2>&1", tutor_bin(), args, a, a);
    cr_assert(system(cmd) == 0, "uninterrupted run failed (see %s.log)", a);
    snprintf(cmd, sizeof cmd, "exec %s distill %s -o %s >%s.log 2>&1", tutor_bin(), args, b, b);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    double t0 = tt_now_s();
    while (test_checkpoint_step(b) < 15 && tt_now_s() - t0 < 120) usleep(2000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    long at = test_checkpoint_step(b);
    cr_assert(at >= 15 && at < 40, "killed at checkpoint %ld", at);
    snprintf(cmd, sizeof cmd, "%s distill %s -o %s --resume >>%s.log 2>&1", tutor_bin(), args, b, b);
    cr_assert(system(cmd) == 0, "resumed run failed (see %s.log)", b);
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", b);
    cr_expect(test_files_equal(pa, pb), "best students differ after kill at %ld + resume", at);
    snprintf(pa, sizeof pa, "%s/checkpoint.json", a);
    size_t n;
    char *ptr = read_file_text(pa, &n);
    const char *slot = strstr(ptr, "checkpoint-a") ? "checkpoint-a" : "checkpoint-b";
    snprintf(pa, sizeof pa, "%s/%s/model.safetensors", a, slot);
    free(ptr);
    snprintf(pb, sizeof pb, "%s/checkpoint.json", b);
    ptr = read_file_text(pb, &n);
    slot = strstr(ptr, "checkpoint-a") ? "checkpoint-a" : "checkpoint-b";
    snprintf(pb, sizeof pb, "%s/%s/model.safetensors", b, slot);
    free(ptr);
    cr_expect(test_files_equal(pa, pb), "last parameters differ after kill + resume");
    /* metrics.jsonl has the per-step timings */
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", a);
    char *m = read_file_text(pa, &n);
    cr_expect(m && strstr(m, "\"time_teacher_s\"") && strstr(m, "\"time_student_gen_s\"") &&
              strstr(m, "\"time_student_s\""));
    free(m);
    test_rmtree(dir);
}

Test(distill_cli, clear_errors, .timeout = 120) {
    ensure_data();
    char dir[128], teacher[256], train[256], pts[256], cmd[4000], path[300];
    test_tmpdir(dir, sizeof dir);
    make_setup(dir, teacher, train, pts);
    /* a PT file whose id has another source in the gold data */
    snprintf(path, sizeof path, "%s/other.jsonl", dir);
    snprintf(cmd, sizeof cmd,
             "sed -n 1,3p %s > %s && sed -n 4p %s | sed 's/\"source\":\"/\"source\":\"X/' >> %s", pts, path, pts, path);
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s distill --teacher %s --data %s --pt %s -o %s/o1 --max-steps 1 2>%s/err1", tutor_bin(),
             teacher, train, path, dir, dir);
    cr_expect(system(cmd) != 0);
    snprintf(path, sizeof path, "%s/err1", dir);
    size_t n;
    char *e = read_file_text(path, &n);
    cr_expect(e && strstr(e, "other.jsonl:4:") && strstr(e, "other inputs"), "%s", e ? e : "");
    free(e);
    /* a broken PT line */
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"source\":\"a\",\"targets\":[\"b\"]}\n{\"source\":\"a\",\"targets\":[]}\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s distill --teacher %s --pt %s -o %s/o2 --max-steps 1 2>%s/err2", tutor_bin(), teacher,
             path, dir, dir);
    cr_expect(system(cmd) != 0);
    snprintf(path, sizeof path, "%s/err2", dir);
    e = read_file_text(path, &n);
    cr_expect(e && strstr(e, "bad.jsonl:2:") && strstr(e, "empty"), "%s", e ? e : "");
    free(e);
    /* a student with another tokenizer */
    snprintf(cmd, sizeof cmd,
             "%s tokenizer train --data %s --vocab 500 -o %s/tok2.json >/dev/null 2>&1 && %s train --tokenizer "
             "%s/tok2.json --data %s --d-model 16 --layers 1 --heads 2 --ffn 32 --max-steps 1 --max-source-tokens 40 "
             "--max-target-tokens 16 --no-progress --eval-every 0 -o %s/other >/dev/null 2>&1",
             tutor_bin(), train, dir, tutor_bin(), dir, train, dir);
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s distill --teacher %s --init %s/other --data %s -o %s/o3 --max-steps 1 2>%s/err3",
             tutor_bin(), teacher, dir, train, dir, dir);
    cr_expect(system(cmd) != 0);
    snprintf(path, sizeof path, "%s/err3", dir);
    e = read_file_text(path, &n);
    cr_expect(e && strstr(e, "tokenizer"), "%s", e ? e : "");
    free(e);
    /* -o the teacher */
    snprintf(cmd, sizeof cmd, "%s distill --teacher %s --data %s -o %s --max-steps 1 2>/dev/null", tutor_bin(), teacher,
             train, teacher);
    cr_expect(system(cmd) != 0);
    test_rmtree(dir);
}

/* ---- the teacher caches ---- */

Test(cache, exact_cache_loss_equals_the_live_teacher) {
    ModelConfig c = tiny_config(ARCH_MBART, 48, 1, 2, 0);
    Model *t = model_new(&c, 21), *s1 = model_new(&c, 22), *s2 = model_new(&c, 22), *other = model_new(&c, 23);
    model_alloc_grads(s1);
    model_alloc_grads(s2);
    PairSet gold, pt;
    make_pairs(&gold, 9, 30, 4);
    make_pairs(&pt, 13, 31, 5);
    PtSource *src = pt_source_new(&gold, &pt, 1, &c, 60, 8, 8, 6, 2);
    cr_assert(src, "%s", tt_errmsg());
    char dir[128], path[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/exact.bin", dir);
    TEST_ASSERT_OK(teacher_cache_build(path, t, pt_source_set(src, 0), CACHE_EXACT, 0, 40, 3));
    TeacherCache *tc = teacher_cache_open(path, t, pt_source_set(src, 0));
    cr_assert(tc, "%s", tt_errmsg());
    /* another teacher, or other pairs, are refused */
    cr_expect(teacher_cache_open(path, other, NULL) == NULL && strstr(tt_errmsg(), "another teacher"), "%s", tt_errmsg());
    cr_expect(teacher_cache_open(path, NULL, &gold) == NULL && strstr(tt_errmsg(), "other pairs"), "%s", tt_errmsg());
    DistillLossOptions o;
    distill_loss_options_default(&o);
    o.teacher = t;
    o.obj.tau = 2;
    o.w_ce = 0.5;
    o.max_source_tokens = 8, o.max_target_tokens = 6;
    DistillLoss *live = distill_loss_new(&o, s1, 8, 8, 6);
    TeacherCache *caches[1] = {tc};
    o.caches = caches, o.n_caches = 1, o.source = src;
    DistillLoss *cached = distill_loss_new(&o, s2, 8, 8, 6);
    cr_assert(live && cached, "%s", tt_errmsg());
    BatchSource bs = pt_source_iface(src);
    TrainLoss ll = distill_loss_iface(live), lc = distill_loss_iface(cached);
    for (int k = 0; k < 6; k++) {
        const Batch *b;
        long nt;
        cr_assert(bs.next(bs.ctx, &b, &nt) >= 0);
        double a, wa, x, wx;
        model_zero_grads(s1);
        model_zero_grads(s2);
        TEST_ASSERT_OK(ll.step(ll.ctx, s1, b, &a, &wa));
        TEST_ASSERT_OK(lc.step(lc.ctx, s2, b, &x, &wx));

        cr_expect(wa == wx);
        cr_expect(fabs(a - x) <= 1e-6 * fabs(a), "batch %d: live loss %.10g, cached %.10g", k, a, x);
        double md = 0, mr = 0;
        for (size_t i = 0; i < s1->n_params; i++) {
            md = fmax(md, fabs(s1->grads[i] - s2->grads[i]));
            mr = fmax(mr, fabs(s1->grads[i]));
        }
        cr_expect(md <= 1e-5 * mr, "batch %d: gradients differ by %g (scale %g)", k, md, mr);
    }
    /* a student narrower than its teacher (the cache holds the teacher's width) */
    {
        ModelConfig cn = tiny_config(ARCH_MBART, 48, 1, 1, 0);
        cn.d_model = 8;
        Model *n1 = model_new(&cn, 24), *n2 = model_new(&cn, 24);
        model_alloc_grads(n1);
        model_alloc_grads(n2);
        DistillLossOptions on = o;
        on.caches = NULL, on.n_caches = 0, on.source = NULL;
        DistillLoss *nl = distill_loss_new(&on, n1, 8, 8, 6);
        on.caches = caches, on.n_caches = 1, on.source = src;
        DistillLoss *nc = distill_loss_new(&on, n2, 8, 8, 6);
        cr_assert(nl && nc, "%s", tt_errmsg());
        TrainLoss a1 = distill_loss_iface(nl), a2 = distill_loss_iface(nc);
        for (int k = 0; k < 4; k++) {
            const Batch *b;
            long nt;
            cr_assert(bs.next(bs.ctx, &b, &nt) >= 0);
            double a, wa, x, wx;
            model_zero_grads(n1);
            model_zero_grads(n2);
            TEST_ASSERT_OK(a1.step(a1.ctx, n1, b, &a, &wa));
            TEST_ASSERT_OK(a2.step(a2.ctx, n2, b, &x, &wx));
            cr_expect(fabs(a - x) <= 1e-6 * fabs(a), "narrow student, batch %d: live %.10g, cached %.10g", k, a, x);
        }
        distill_loss_free(nl);
        distill_loss_free(nc);
        model_free(n1);
        model_free(n2);
    }
    /* a corrupt file is refused with a reason */
    snprintf(path, sizeof path, "%s/exact.bin", dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(truncate(path, size - 3) == 0);
    cr_expect(teacher_cache_open(path, t, NULL) == NULL && strstr(tt_errmsg(), "truncated"), "%s", tt_errmsg());
    distill_loss_free(live);
    distill_loss_free(cached);
    teacher_cache_free(tc);
    pt_source_free(src);
    pairset_free(&gold);
    pairset_free(&pt);
    model_free(t);
    model_free(s1);
    model_free(s2);
    model_free(other);
    test_rmtree(dir);
}

/* A build stopped part way (its partial files cut anywhere, even inside a row or a pair) goes
 * on from the last whole pair and ends with the file an uninterrupted build writes; partial
 * files of another teacher are discarded; a second build of the same cache is refused. */
static unsigned char *slurp(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)*n + 1);
    if (fread(b, 1, (size_t)*n, f) != (size_t)*n) *n = -1;
    fclose(f);
    return b;
}

static void spill(const char *path, const unsigned char *b, long n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
}

Test(cache, a_stopped_build_resumes_to_the_same_file) {
    ModelConfig c = tiny_config(ARCH_MBART, 48, 1, 2, 0);
    Model *t = model_new(&c, 21), *other = model_new(&c, 23);
    PairSet ps;
    make_pairs(&ps, 17, 30, 4);
    char dir[128], whole[300], part[300], ids[300], path[300];
    test_tmpdir(dir, sizeof dir);
    for (int kind = 0; kind < 2; kind++) {
        int k = 5, width = kind ? k : c.d_model;
        snprintf(whole, sizeof whole, "%s/whole-%d.bin", dir, kind);
        TEST_ASSERT_OK(teacher_cache_build(whole, t, &ps, kind, k, 40, 3));
        long n;
        unsigned char *ref = slurp(whole, &n);
        cr_assert(ref && n > 0);
        uint64_t n_rows;
        memcpy(&n_rows, ref + 24, 8);
        long head = 48 + 8 * (long)(ps.n + 1), rb = 4L * width;
        /* {rows in the main file, bytes past them, rows of ids}: after 0 rows, inside the first row,
         * at a pair boundary, inside a later pair with more ids than log-probs, all rows with one id
         * row short, all rows and the ids' append to the main file begun */
        long p2 = (long)ps.items[0].tgt_len + (long)ps.items[1].tgt_len, R = (long)n_rows;
        long cuts[6][3] = {{0, 0, 0}, {0, 3, 1}, {p2, 0, p2}, {p2 + 1, 0, p2 + 3}, {R, 0, R - 1}, {R, 7, R}};
        for (int ci = 0; ci < (kind ? 6 : 5); ci++) {
            long rows_main = cuts[ci][0], extra = cuts[ci][1], rows_ids = cuts[ci][2];
            snprintf(path, sizeof path, "%s/resumed-%d-%d.bin", dir, kind, ci);
            snprintf(part, sizeof part, "%s.partial", path);
            snprintf(ids, sizeof ids, "%s.ids.partial", path);
            spill(part, ref, head + rows_main * rb + extra);
            if (kind) spill(ids, ref + head + R * rb, rows_ids * rb);
            TEST_ASSERT_OK(teacher_cache_build(path, t, &ps, kind, k, 40, 3));
            long m;
            unsigned char *got = slurp(path, &m);
            cr_expect(got && m == n && !memcmp(got, ref, (size_t)n), "kind %d, cut %d: %ld bytes, whole %ld", kind,
                      ci, m, n);
            cr_expect(!file_exists(part) && !file_exists(ids), "kind %d, cut %d: partial files left", kind, ci);
            free(got);
        }
        /* another teacher's partial file: rebuilt from the start, for this teacher */
        snprintf(path, sizeof path, "%s/other-%d.bin", dir, kind);
        snprintf(part, sizeof part, "%s.partial", path);
        spill(part, ref, head + 3 * rb);
        TEST_ASSERT_OK(teacher_cache_build(path, other, &ps, kind, k, 40, 3));
        TeacherCache *tc = teacher_cache_open(path, other, &ps);
        cr_expect(tc, "%s", tt_errmsg());
        teacher_cache_free(tc);
        free(ref);
    }
    /* a build already in progress (its partial file locked) */
    snprintf(path, sizeof path, "%s/locked.bin", dir);
    snprintf(part, sizeof part, "%s.partial", path);
    int fd = open(part, O_RDWR | O_CREAT, 0644);
    cr_assert(fd >= 0 && flock(fd, LOCK_EX) == 0);
    cr_expect(teacher_cache_build(path, t, &ps, 0, 0, 40, 3) != 0 && strstr(tt_errmsg(), "another tutor"), "%s",
              tt_errmsg());
    close(fd);
    TEST_ASSERT_OK(teacher_cache_build(path, t, &ps, 0, 0, 40, 3));
    pairset_free(&ps);
    model_free(t);
    model_free(other);
    test_rmtree(dir);
}

Test(cache, sparse_kl_is_the_bucketed_kl_and_its_gradient) {
    enum { VV = 29 };
    real t[VV], s[VV], g[VV];
    Rng r;
    rng_seed(&r, 5);
    for (int v = 0; v < VV; v++) t[v] = (real)(2 * rng_normal(&r)), s[v] = (real)(2 * rng_normal(&r));
    /* top-k of the teacher */
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < VV; v++) mx = fmax(mx, t[v]);
    for (int v = 0; v < VV; v++) z += exp(t[v] - mx);
    int32_t ids[VV];
    float lp[VV];
    for (int v = 0; v < VV; v++) ids[v] = v;
    for (int i = 0; i < VV; i++)
        for (int j = i + 1; j < VV; j++)
            if (t[ids[j]] > t[ids[i]]) {
                int32_t x = ids[i];
                ids[i] = ids[j];
                ids[j] = x;
            }
    for (int v = 0; v < VV; v++) lp[v] = (float)(t[ids[v]] - mx - log(z));
    /* k = V is the full forward KL */
    KdObjective o;
    kd_objective_default(&o);
    double scratch[5 * VV];
    double full = kd_token(&o, t, s, VV, scratch, NULL, 1);
    cr_expect(fabs(kd_token_sparse(ids, lp, VV, s, VV, NULL, 1, NULL) - full) < 1e-6, "k = V differs from the full KL");
    /* k = 5: a (k+1)-class KL, below the full one, never negative; gradient by differences */
    int k = 5;
    double ks[VV];
    double sp = kd_token_sparse(ids, lp, k, s, VV, g, 1, ks);
    /* the gradient may overwrite the logits it reads (as the distillation loss calls it) */
    {
        real inplace[VV];
        memcpy(inplace, s, sizeof inplace);
        double sp2 = kd_token_sparse(ids, lp, k, inplace, VV, inplace, 1, ks);
        cr_expect(sp2 == sp);
        for (int v = 0; v < VV; v++) cr_expect(inplace[v] == g[v], "in place, token %d: %g vs %g", v, inplace[v], g[v]);
    }
    cr_expect(sp >= 0 && sp <= full + 1e-9, "bucket KL %g, full %g", sp, full);
    for (int v = 0; v < VV; v++) {
        real keep = s[v];
        s[v] = keep + 1e-2f;
        double up = kd_token_sparse(ids, lp, k, s, VV, NULL, 1, NULL);
        real hu = s[v] - keep;
        s[v] = keep - 1e-2f;
        double dn = kd_token_sparse(ids, lp, k, s, VV, NULL, 1, NULL);
        real hd = keep - s[v];
        s[v] = keep;
        double fd = (up - dn) / ((double)hu + hd);
        cr_expect(fabs(fd - g[v]) < 2e-3 * fmax(1e-2, fabs(g[v])), "token %d: gradient %g, differences %g", v, g[v], fd);
    }
}

/* ---- MiniLLM ---- */

Test(minillm, advantages_are_length_normalised_future_rewards) {
    double r[4] = {1, 2, 3, 6}, a[4];
    minillm_advantages(r, 4, a);
    cr_expect(fabs(a[0] - 11.0 / 3) < 1e-12 && fabs(a[1] - 4.5) < 1e-12 && fabs(a[2] - 6) < 1e-12 && a[3] == 0,
              "%g %g %g %g", a[0], a[1], a[2], a[3]);
    cr_expect(fabs(minillm_weight(0.3, 0.6, 0.2) - 0.3 / (0.2 * 0.6 + 0.8 * 0.3)) < 1e-15);
    cr_expect(minillm_weight(0.3, 0.6, 0) == 1.0, "alpha 0: the samples are the student's own");
}

/* Teacher-mixed sampling draws from alpha p + (1 - alpha) q, and the importance weights
 * q / mixture turn its draws into estimates under q: checked on the first token. */
Test(minillm, mixed_sampling_and_importance_weights) {
    ModelConfig c = tiny_config(ARCH_MBART, 24, 1, 1, 0);
    c.init_std = 0.6; /* peaked distributions that differ */
    Model *t = model_new(&c, 31), *s = model_new(&c, 32);
    int src[5] = {0, 7, 9, 11, 2};
    enum { N = 64, CALLS = 150 };
    const int *srcs[N];
    int lens[N];
    uint64_t streams[N];
    for (int i = 0; i < N; i++) srcs[i] = src, lens[i] = 5;
    MixedSampler *ms = mixed_sampler_new(s, t, N, 5, 1);
    cr_assert(ms, "%s", tt_errmsg());
    double alpha = 0.3;
    long count[24] = {0};
    for (int k = 0; k < CALLS; k++) {
        for (int i = 0; i < N; i++) streams[i] = (uint64_t)(k * N + i);
        const int *tok, *nt;
        TEST_ASSERT_OK(mixed_sampler_run(ms, N, srcs, lens, streams, 5, alpha, 0, &tok, &nt));
        for (int i = 0; i < N; i++) {
            cr_assert(nt[i] == 1);
            count[tok[i * mixed_sampler_stride(ms)]]++;
        }
    }
    /* the first-token distributions of both, teacher-forced */
    int dec_in[1] = {c.decoder_start_id}, lab[1] = {0}, mask[5] = {1, 1, 1, 1, 1};
    Batch b = {1, 5, 1, src, mask, dec_in, NULL, lab};
    real zt[24], zs[24];
    TEST_ASSERT_OK(model_forward(t, &b, FWD_INFER));
    model_logits(t, 0, 1, zt);
    TEST_ASSERT_OK(model_forward(s, &b, FWD_INFER));
    model_logits(s, 0, 1, zs);
    double p[24], q[24], zp = 0, zq = 0;
    for (int v = 0; v < 24; v++) zp += exp(zt[v]), zq += exp(zs[v]);
    for (int v = 0; v < 24; v++) p[v] = exp(zt[v]) / zp, q[v] = exp(zs[v]) / zq;
    double total = (double)N * CALLS, tv = 0, tvq = 0;
    for (int v = 0; v < 24; v++) {
        double mix = alpha * p[v] + (1 - alpha) * q[v];
        double f = count[v] / total;
        cr_expect(fabs(f - mix) < 4 * sqrt(mix * (1 - mix) / total) + 1e-3, "token %d: frequency %g, mixture %g", v, f,
                  mix);
        /* importance weighting recovers the student's distribution */
        double est = f * minillm_weight(q[v], p[v], alpha);
        tv += fabs(est - q[v]);
        tvq += fabs(p[v] - q[v]);
    }
    cr_expect(tv < 0.05, "importance-weighted estimate of q off by %g in total variation", tv / 2);
    cr_expect(tvq > 0.2, "teacher and student too alike for the test (%g)", tvq);
    mixed_sampler_free(ms);
    model_free(t);
    model_free(s);
}

Test(minillm, zero_for_the_teacher_itself_and_finite_otherwise) {
    ModelConfig c = tiny_config(ARCH_MBART, 48, 1, 2, 0);
    Model *t = model_new(&c, 7), *same = model_new(&c, 7), *s = model_new(&c, 8);
    model_alloc_grads(same);
    model_alloc_grads(s);
    PairSet ps;
    BatchBuf bb;
    batch_for(&c, &ps, &bb);
    DistillLossOptions o;
    distill_loss_options_default(&o);
    o.teacher = t;
    o.targets = TARGETS_MINILLM;
    o.max_source_tokens = 8, o.max_target_tokens = 6;
    DistillLoss *l = distill_loss_new(&o, same, 5, 8, 6);
    cr_assert(l, "%s", tt_errmsg());
    double z = dl_loss(l, same, &bb.batch, 1);
    cr_expect(fabs(z) < 1e-6, "MiniLLM loss %g for the teacher itself", z);
    distill_loss_free(l);
    l = distill_loss_new(&o, s, 5, 8, 6);
    double v = dl_loss(l, s, &bb.batch, 1);
    double g = 0;
    for (size_t i = 0; i < s->n_params; i++) g += fabs(s->grads[i]);
    cr_expect(isfinite(v) && g > 0 && isfinite(g), "loss %g, |grad| %g", v, g);
    distill_loss_free(l);
    batchbuf_free(&bb);
    pairset_free(&ps);
    model_free(t);
    model_free(same);
    model_free(s);
}

Test(distill_cli, every_method_runs_end_to_end, .timeout = 300) {
    ensure_data();
    char dir[128], teacher[256], train[256], pts[256], cmd[4000], out[300];
    test_tmpdir(dir, sizeof dir);
    make_setup(dir, teacher, train, pts);
    const char *runs[] = {"--method ft",
                          "--method kd --objective rkl --tau 2",
                          "--method kd --objective jsd --beta 0.3 --ce-weight 0.5 --autoscale",
                          "--method kd --objective tvd --teacher-top-p 0.9",
                          "--method kd --objective skl --final-finetune-epochs 1",
                          "--method kd --objective srkl --skew 0.2",
                          "--method noisy-kd --dropout 0.1",
                          "--method student-pt --student-temperature 1.5",
                          "--method gkd --student-fraction 0.5",
                          "--method minillm --mix-alpha 0.2",
                          "--method attention-kd --relation-heads 2",
                          "--method kd --attention-weight 0.5 --ce-weight 0.3",
                          "--method kd --teacher-cache exact",
                          "--method kd --teacher-cache sparse --cache-top-k 8",
                          "--method joint --teacher-cache exact",
                          NULL};
    for (int k = 0; runs[k]; k++) {
        snprintf(out, sizeof out, "%s/run%d", dir, k);
        snprintf(cmd, sizeof cmd,
                 "%s distill --teacher %s --data %s --pt %s %s --keep-decoder-layers -1 --max-source-tokens 40 "
                 "--max-target-tokens 16 --batch-tokens 500 --max-steps 3 --eval-every 0 --no-progress -o %s "
                 ">%s.log 2>&1",
                 tutor_bin(), teacher, train, pts, runs[k], out, out);
        cr_expect(system(cmd) == 0, "'%s' failed (see %s.log)", runs[k], out);
        char model[400];
        snprintf(model, sizeof model, "%s/model.safetensors", out);
        cr_expect(file_exists(model), "'%s' wrote no model", runs[k]);
    }
    /* the sparse cache's bias was measured and logged */
    snprintf(out, sizeof out, "%s/run13.log", dir);
    size_t n;
    char *log = read_file_text(out, &n);
    cr_expect(log && strstr(log, "sparse teacher cache") && strstr(log, "bias"), "no bias line in %s", out);
    free(log);
    test_rmtree(dir);
}

/* ---- attention relations (MiniLM v2) ---- */

static cJSON *rows_json(const real *x, int ld, int B, int L, int C) {
    cJSON *a = cJSON_CreateArray();
    for (int b = 0; b < B; b++) {
        cJSON *ab = cJSON_CreateArray();
        for (int i = 0; i < L; i++) {
            cJSON *row = cJSON_CreateArray();
            for (int e = 0; e < C; e++) cJSON_AddItemToArray(row, cJSON_CreateNumber(x[((long)b * L + i) * ld + e]));
            cJSON_AddItemToArray(ab, row);
        }
        cJSON_AddItemToArray(a, ab);
    }
    return a;
}

Test(attention_relation, matches_the_float64_torch_reference_and_is_zero_for_the_teacher, .timeout = 120) {
    ModelConfig ct = tiny_config(ARCH_MBART, 48, 1, 2, 0), cs = tiny_config(ARCH_MBART, 48, 1, 1, 0);
    cs.d_model = 24, cs.enc_heads = cs.dec_heads = 3, cs.enc_ffn = cs.dec_ffn = 40;
    ct.init_std = cs.init_std = 0.3; /* peaked relations, gradients well above rounding */
    Model *t = model_new(&ct, 41), *s = model_new(&cs, 42), *same = model_new(&ct, 41);
    model_alloc_grads(s);
    model_alloc_grads(same);
    PairSet ps;
    BatchBuf bb;
    batch_for(&ct, &ps, &bb);
    const Batch *b = &bb.batch;
    /* the teacher against itself: zero */
    TEST_ASSERT_OK(model_forward(t, b, FWD_INFER));
    TEST_ASSERT_OK(model_forward(same, b, FWD_KEEP));
    int nrel;
    double z = attention_relation_kd(t, same, b, 2, 1, 1.0, &nrel);
    cr_expect(fabs(z) < 1e-9 && nrel == 9, "teacher against itself: %g over %d relations", z, nrel);
    /* a student of another width and head count, re-split into the teacher's 2 heads */
    TEST_ASSERT_OK(model_forward(s, b, FWD_KEEP));
    double loss = attention_relation_kd(t, s, b, 2, 1, 1.0, &nrel);
    cr_assert(isfinite(loss) && loss > 0 && nrel == 9, "loss %g over %d relations", loss, nrel);
    int B = b->B, S = b->S, T = b->T;
    int *vs = malloc(sizeof(int) * B * S), *vt = malloc(sizeof(int) * B * T);
    for (int i = 0; i < B * S; i++) vs[i] = b->src_mask[i];
    for (int i = 0; i < B * T; i++) vt[i] = b->labels[i] != -100;
    cJSON *rels = cJSON_CreateArray();
    real *grads[9];
    int glds[9], gl[9];
    int k9 = 0;
    for (int which = 0; which < 3; which++) {
        AttnQKV qt, qs;
        AttnQKVGrad g;
        TEST_ASSERT_OK(model_attention_qkv(t, which, &qt));
        TEST_ASSERT_OK(model_attention_qkv(s, which, &qs));
        TEST_ASSERT_OK(model_attention_qkv_grad(s, which, 0, &g));
        for (int x = 0; x < 3; x++, k9++) {
            int keys = x > 0;
            int L = which == 0 ? S : (which == 2 && keys ? S : T);
            int causal = which == 1 || (which == 2 && !keys);
            const int *valid = which == 0 || (which == 2 && keys) ? vs : vt;
            cJSON *r = cJSON_CreateObject();
            cJSON_AddItemToObject(r, "xt", rows_json(x == 0 ? qt.q : x == 1 ? qt.k : qt.v, x == 0 ? qt.ldq : qt.ldkv, B, L, ct.d_model));
            cJSON_AddItemToObject(r, "xs", rows_json(x == 0 ? qs.q : x == 1 ? qs.k : qs.v, x == 0 ? qs.ldq : qs.ldkv, B, L, cs.d_model));
            cJSON *va = cJSON_CreateArray();
            for (int bi = 0; bi < B; bi++) {
                cJSON *row = cJSON_CreateArray();
                for (int i = 0; i < L; i++) cJSON_AddItemToArray(row, cJSON_CreateNumber(valid[bi * L + i]));
                cJSON_AddItemToArray(va, row);
            }
            cJSON_AddItemToObject(r, "valid", va);
            cJSON_AddNumberToObject(r, "causal", causal);
            cJSON_AddItemToArray(rels, r);
            grads[k9] = x == 0 ? g.dq : x == 1 ? g.dk : g.dv;
            glds[k9] = x == 0 ? g.ldq : g.ldkv;
            gl[k9] = L;
        }
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "A", 2);
    cJSON_AddItemToObject(root, "relations", rels);
    char dir[128], in[256], out[256], cmd[700];
    test_tmpdir(dir, sizeof dir);
    snprintf(in, sizeof in, "%s/in.json", dir);
    snprintf(out, sizeof out, "%s/out.json", dir);
    char *text = cJSON_PrintUnformatted(root);
    FILE *f = fopen(in, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(root);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/distill/attn_ref.py < %s > %s", in, out);
    cr_assert(system(cmd) == 0, "the PyTorch reference failed");
    size_t n;
    char *rt = read_file_text(out, &n);
    cJSON *ref = cJSON_Parse(rt);
    free(rt);
    double rl = cJSON_GetObjectItem(ref, "loss")->valuedouble;
    cr_expect(fabs(loss - rl) <= 1e-6 * rl, "relation loss %.10g, torch %.10g", loss, rl);
    const cJSON *rg = cJSON_GetObjectItem(ref, "grads");
    for (int k = 0; k < 9; k++) {
        const cJSON *gk = cJSON_GetArrayItem(rg, k);
        double md = 0, mr = 0;
        for (int bi = 0; bi < B; bi++)
            for (int i = 0; i < gl[k]; i++)
                for (int e = 0; e < cs.d_model; e++) {
                    double want = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(gk, bi), i), e)->valuedouble;
                    double got = grads[k][((long)bi * gl[k] + i) * glds[k] + e];
                    md = fmax(md, fabs(got - want));
                    mr = fmax(mr, fabs(want));
                }
        cr_expect(md <= 1e-5 * fmax(mr, 1e-6), "relation %d: gradient differs from autograd by %g (scale %g)", k, md, mr);
    }
    cJSON_Delete(ref);
    /* and through the student's parameters, against finite differences (the gradient path
     * into model_backward) */
    DistillLossOptions o;
    distill_loss_options_default(&o);
    o.teacher = t;
    o.w_kd = 0, o.w_att = 1, o.relation_heads = 2;
    o.max_source_tokens = 8, o.max_target_tokens = 6;
    DistillLoss *l = distill_loss_new(&o, s, 5, 8, 6);
    cr_assert(l, "%s", tt_errmsg());
    dl_loss(l, s, b, 1);
    real *g0 = malloc(sizeof(real) * s->n_params);
    memcpy(g0, s->grads, sizeof(real) * s->n_params);
    for (int probe = 0; probe < 5; probe++) {
        size_t best = 0;
        for (size_t i = 0; i < s->n_params; i++)
            if (fabs(g0[i]) > fabs(g0[best])) best = i;
        real keep = s->params[best], h = 3e-3f;
        s->params[best] = keep + h;
        double up = dl_loss(l, s, b, 0);
        s->params[best] = keep - h;
        double dn = dl_loss(l, s, b, 0);
        s->params[best] = keep;
        double fd = (up - dn) / (2 * (double)h);
        cr_expect(fabs(g0[best]) > 1e-3, "gradient %g too small to check", g0[best]);
        cr_expect(fabs(fd - g0[best]) <= 0.03 * fabs(g0[best]) + 1e-5, "param %zu: gradient %g, differences %g", best,
                  g0[best], fd);
        g0[best] = 0;
    }
    free(g0);
    distill_loss_free(l);
    free(vs);
    free(vt);
    batchbuf_free(&bb);
    pairset_free(&ps);
    model_free(t);
    model_free(s);
    model_free(same);
    test_rmtree(dir);
}

/* Decoder-only: student pseudo-targets continue the prompt (<s> source </s>), MiniLLM's mixed
 * sampling and attention relations (decoder self-attention only) run. */
Test(distill_loss, decoder_only_student_targets_minillm_and_relations) {
    ModelConfig c = tiny_config(ARCH_GPT2, 48, 0, 2, 0);
    Model *t = model_new(&c, 51), *s = model_new(&c, 52);
    model_alloc_grads(s);
    PairSet ps;
    BatchBuf bb;
    batch_for(&c, &ps, &bb);
    TargetMode modes[3] = {TARGETS_STUDENT, TARGETS_MINILLM, TARGETS_DATA};
    for (int k = 0; k < 3; k++) {
        DistillLossOptions o;
        distill_loss_options_default(&o);
        o.teacher = t;
        o.targets = modes[k];
        o.w_att = k == 2 ? 1 : 0;
        o.max_source_tokens = 8, o.max_target_tokens = 6;
        DistillLoss *l = distill_loss_new(&o, s, 5, 0, 14);
        cr_assert(l, "mode %d: %s", k, tt_errmsg());
        double v = dl_loss(l, s, &bb.batch, 1);
        double g = 0;
        for (size_t i = 0; i < s->n_params; i++) g += fabs(s->grads[i]);
        cr_expect(isfinite(v) && v > 0 && g > 0 && isfinite(g), "mode %d: loss %g, |grad| %g", k, v, g);
        distill_loss_free(l);
    }
    batchbuf_free(&bb);
    pairset_free(&ps);
    model_free(t);
    model_free(s);
}
