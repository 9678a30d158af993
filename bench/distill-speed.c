/* distill-speed.c: what a word-level KD step costs next to its parts, on the study's shapes:
 * teacher mBART-style d_model 256, 4+4 layers, 4 heads, FFN 1024, vocabulary 8000; students:
 * the teacher shrunk to decoder layers 0 and 3 with all encoder layers (4:2, tutor distill's
 * default), with encoder layers 0 and 3 too (2:2), or random: d_model 128, 2+2 layers, FFN 512
 * (small, 2.6x the teacher's greedy speed) or d_model 64, 1+1 layers, FFN 256 (tiny, 6.8x);
 * batch 16 x (128 source, 32 target) tokens; no dropout. Times, in one run and interleaved
 * step by step: the teacher's inference forward with its output layer on the target tokens
 * (the logits a Hugging Face forward returns) alone, the student's forward + backward with
 * cross-entropy alone, a full KD step (tutor distill's loss: teacher forward, student
 * forward, forward KL on every target token over the vocabulary, backward), and the same
 * step from the exact teacher cache. Prints
 *   ratio = KD step / (teacher forward + student forward-backward)   (the bar: <= 1.3)
 *   ratio = KD step from the exact teacher cache / live KD step       (the bar: <= 0.6)
 * Usage: distill-speed [--steps N] [--threads N] [--student 4:2|2:2|small|tiny|CONFIG.json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coprocess.h"
#include "tutor/distill.h"

enum { B = 16, S = 128, T = 32 };

int main(int argc, char **argv) {
    int steps = 7, threads = 1;
    const char *layers = "4:2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--student") && i + 1 < argc) layers = argv[++i];
        else {
            fprintf(stderr, "usage: distill-speed [--steps N (>= 3)] [--threads N] [--student 4:2|2:2|small|tiny|CONFIG.json]\n");
            return 2;
        }
    }
    if (steps < 3) steps = 3;
    tt_set_threads(threads);
    bench_print_machine();
    ModelConfig cfg;
    model_config_default(&cfg, ARCH_MBART);
    cfg.vocab_size = 8000, cfg.d_model = 256;
    cfg.enc_layers = cfg.dec_layers = 4;
    cfg.enc_heads = cfg.dec_heads = 4;
    cfg.enc_ffn = cfg.dec_ffn = 1024;
    cfg.dropout = cfg.attn_dropout = cfg.act_dropout = 0;
    cfg.pad_id = 1, cfg.bos_id = 0, cfg.eos_id = 2, cfg.decoder_start_id = 2;
    Model *teacher = model_new(&cfg, 1);
    /* the student: the teacher's first and last decoder layers, and all its encoder layers
     * (4:2) or its first and last (2:2) */
    int keep[2] = {0, 3};
    int enc_layers = atoi(layers), small = !strcmp(layers, "small"), tiny = !strcmp(layers, "tiny");
    size_t ll = strlen(layers);
    int from_file = ll > 5 && !strcmp(layers + ll - 5, ".json");
    Model *student = NULL;
    if (from_file) {
        /* a student configuration (e.g. tutor study's students/ed.json), random weights, the
         * teacher's vocabulary and special ids */
        ModelConfig sc;
        if (model_config_load(&sc, layers)) {
            fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
            return 1;
        }
        sc.vocab_size = cfg.vocab_size, sc.pad_id = cfg.pad_id, sc.bos_id = cfg.bos_id, sc.eos_id = cfg.eos_id;
        sc.decoder_start_id = cfg.decoder_start_id;
        if (sc.max_positions < cfg.max_positions) sc.max_positions = cfg.max_positions;
        sc.dropout = sc.attn_dropout = sc.act_dropout = 0;
        student = model_new(&sc, 2);
    } else if (small || tiny) {
        ModelConfig sc = cfg;
        sc.d_model = small ? 128 : 64, sc.enc_layers = sc.dec_layers = small ? 2 : 1;
        sc.enc_heads = sc.dec_heads = small ? 4 : 2;
        sc.enc_ffn = sc.dec_ffn = small ? 512 : 256;
        student = model_new(&sc, 2);
    } else if (teacher) {
        student = model_shrink(teacher, enc_layers == 2 ? keep : NULL, enc_layers == 2 ? 2 : 0, keep, 2);
    }
    if (!student || model_alloc_grads(student)) {
        fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
        return 1;
    }
    /* B pairs of S source and T target tokens (random ids), one batch per epoch */
    PairSet ps = {0};
    ps.n = B;
    ps.items = calloc(B, sizeof(TokPair));
    ps.pool = malloc(sizeof(int) * B * (S + T));
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < B; i++) {
        TokPair *p = &ps.items[i];
        p->src = ps.pool + i * (S + T), p->src_len = S;
        p->tgt = p->src + S, p->tgt_len = T;
        for (int k = 0; k < S; k++) p->src[k] = 4 + (int)rng_below(&rng, 7996);
        for (int k = 0; k < T; k++) p->tgt[k] = 4 + (int)rng_below(&rng, 7996);
    }
    PtSource *src = pt_source_new(&ps, NULL, 0, &cfg, B * (S + T), B, S, T, 1);
    char cache_path[] = "/tmp/distill-speed-cache-XXXXXX";
    int fd = mkstemp(cache_path);
    if (fd >= 0) close(fd);
    if (!src || teacher_cache_build(cache_path, teacher, pt_source_set(src, 0), CACHE_EXACT, 0, B * (S + T), B)) {
        fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
        return 1;
    }
    TeacherCache *tc = teacher_cache_open(cache_path, teacher, pt_source_set(src, 0));
    if (!tc) {
        fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
        return 1;
    }
    BatchSource bs = pt_source_iface(src);
    DistillLossOptions o;
    distill_loss_options_default(&o);
    o.teacher = teacher;
    o.max_source_tokens = S, o.max_target_tokens = T;
    DistillLoss *dl = distill_loss_new(&o, student, B, S, T);
    TeacherCache *caches[1] = {tc};
    o.caches = caches, o.n_caches = 1, o.source = src;
    DistillLoss *dc = dl ? distill_loss_new(&o, student, B, S, T) : NULL;
    if (!dl || !dc) {
        fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
        return 1;
    }
    TrainLoss loss = distill_loss_iface(dl), cached = distill_loss_iface(dc);
    int *rows = malloc(sizeof(int) * B * T);
    double *wts = malloc(sizeof(double) * B * T);
    real *tlogits = tt_alloc(sizeof(real) * (size_t)B * T * cfg.vocab_size);
    double *tt = calloc((size_t)steps, sizeof(double)), *ts = calloc((size_t)steps, sizeof(double)),
           *tk = calloc((size_t)steps, sizeof(double)), *tc_s = calloc((size_t)steps, sizeof(double));
    for (int i = -1; i < steps; i++) {
        const Batch *bp;
        long nt;
        if (bs.next(bs.ctx, &bp, &nt) < 0) {
            fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
            return 1;
        }
        double t0 = tt_now_s();
        model_forward(teacher, bp, FWD_INFER);
        long nr = batch_label_rows(bp, rows, wts, NULL);
        model_logits_rows(teacher, rows, (int)nr, tlogits);
        double t1 = tt_now_s();
        model_zero_grads(student);
        model_forward(student, bp, FWD_TRAIN);
        model_xent(student, bp, 0, 1, 1, NULL);
        model_backward(student, bp);
        double t2 = tt_now_s();
        model_zero_grads(student);
        double sum, w, sum_c;
        if (loss.step(loss.ctx, student, bp, &sum, &w)) {
            fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
            return 1;
        }
        double t3 = tt_now_s();
        model_zero_grads(student);
        if (cached.step(cached.ctx, student, bp, &sum_c, &w)) {
            fprintf(stderr, "distill-speed: %s\n", tt_errmsg());
            return 1;
        }
        double t4 = tt_now_s();
        if (i >= 0) tt[i] = t1 - t0, ts[i] = t2 - t1, tk[i] = t3 - t2, tc_s[i] = t4 - t3;
        fprintf(stderr, "step %d: teacher forward %.3fs, student fwd+bwd %.3fs, KD step %.3fs, from the cache %.3fs "
                        "(loss %.6g vs %.6g)\n",
                i, t1 - t0, t2 - t1, t3 - t2, t4 - t3, sum, sum_c);
    }
    double mt = bench_median(tt, steps), ms = bench_median(ts, steps), mk = bench_median(tk, steps),
           mc = bench_median(tc_s, steps);
    char shape[256];
    snprintf(shape, sizeof shape, "%s, d_model %d, %d+%d layers, FFN %d", layers, student->cfg.d_model,
             student->cfg.enc_layers, student->cfg.dec_layers, student->cfg.dec_ffn);
    printf("teacher %zu parameters (4+4 layers), student %zu (%s); batch %d x (%d src, %d tgt); %d threads; median "
           "of %d steps after 1 warm-up\n",
           teacher->n_params, student->n_params,
           from_file ? shape : small ? "random, d_model 128, 2+2 layers, FFN 512"
           : tiny  ? "random, d_model 64, 1+1 layers, FFN 256"
                 : enc_layers == 2 ? "2:2, the teacher's encoder and decoder layers 0 and 3"
                                   : "4:2, the teacher's encoder and its decoder layers 0 and 3",
           B, S, T, threads, steps);
    printf("teacher forward %.3f s, student forward+backward %.3f s, sum %.3f s; KD step (live teacher) %.3f s\n", mt,
           ms, mt + ms, mk);
    printf("ratio %.2f  (live KD step / (teacher forward + student forward-backward); bar <= 1.3)\n", mk / (mt + ms));
    printf("KD step from the exact teacher cache %.3f s\n", mc);
    printf("ratio %.2f  (KD step from the exact cache / live KD step; bar <= 0.6)\n", mc / mk);
    distill_loss_free(dl);
    distill_loss_free(dc);
    teacher_cache_free(tc);
    unlink(cache_path);
    pt_source_free(src);
    pairset_free(&ps);
    model_free(student);
    model_free(teacher);
    free(tt), free(ts), free(tk), free(tc_s);
    free(rows), free(wts);
    tt_free(tlogits);
    return 0;
}
