/* test_two_models.c: a teacher and a student of different sizes live in one process, each
 * with its own parameters and activation arena; the teacher's forward keeps nothing for
 * backward (far less memory) yet gives the same logits; the student's gradients are the
 * same with the teacher beside it as alone (issue 2, bar 6). */
#include "../testlib.h"
#include "tutor/model.h"

static Model *make(int d, int layers, int ffn, uint64_t seed) {
    ModelConfig cfg;
    model_config_default(&cfg, ARCH_MBART);
    cfg.vocab_size = 500;
    cfg.d_model = d;
    cfg.max_positions = 64;
    cfg.enc_layers = cfg.dec_layers = layers;
    cfg.enc_ffn = cfg.dec_ffn = ffn;
    cfg.dropout = 0;
    Model *m = model_new(&cfg, seed);
    cr_assert(m, "%s", tt_errmsg());
    return m;
}

enum { B = 4, S = 30, T = 12 };
static int src[B * S], src_mask[B * S], tgt[B * T], labels[B * T];

static Batch make_batch(void) {
    Rng r;
    rng_seed(&r, 4);
    for (int b = 0; b < B; b++) {
        for (int s = 0; s < S; s++) src_mask[b * S + s] = s < S - 3 * b, src[b * S + s] = 4 + (int)rng_below(&r, 496);
        for (int t = 0; t < T; t++) labels[b * T + t] = t < T - b ? 4 + (int)rng_below(&r, 496) : -100;
    }
    ModelConfig c;
    model_config_default(&c, ARCH_MBART);
    model_decoder_inputs(&c, labels, B, T, tgt);
    return (Batch){B, S, T, src, src_mask, tgt, NULL, labels};
}

Test(two_models, teacher_inference_and_student_training) {
    Batch b = make_batch();
    /* The student alone first: reference gradients. */
    Model *alone = make(32, 1, 64, 2);
    TEST_ASSERT_OK(model_alloc_grads(alone));
    TEST_ASSERT_OK(model_forward(alone, &b, 1));
    double loss_alone = model_xent(alone, &b, 0, 1, 1, NULL);
    TEST_ASSERT_OK(model_backward(alone, &b));

    Model *teacher = make(64, 3, 128, 1);
    Model *student = make(32, 1, 64, 2);
    cr_assert_neq(teacher->n_params, student->n_params);
    TEST_ASSERT_OK(model_alloc_grads(student));
    int V = teacher->cfg.vocab_size, N = B * T;
    float *infer_logits = malloc(sizeof(float) * N * V), *train_logits = malloc(sizeof(float) * N * V);

    /* Teacher: inference forward, then the student's whole training step, interleaved. */
    TEST_ASSERT_OK(model_forward(teacher, &b, 0));
    size_t infer_bytes = model_act_bytes(teacher);
    TEST_ASSERT_OK(model_forward(student, &b, 1));
    model_logits(teacher, 0, N, infer_logits);
    double loss_student = model_xent(student, &b, 0, 1, 1, NULL);
    TEST_ASSERT_OK(model_backward(student, &b));
    cr_expect_eq(loss_student, loss_alone, "student loss changed with a teacher beside it");
    cr_expect(memcmp(student->grads, alone->grads, student->n_params * sizeof(real)) == 0,
              "student gradients changed with a teacher beside it");

    /* The same teacher with a training arena gives the same logits. */
    Model *teacher_train = make(64, 3, 128, 1);
    TEST_ASSERT_OK(model_forward(teacher_train, &b, 1));
    size_t train_bytes = model_act_bytes(teacher_train);
    model_logits(teacher_train, 0, N, train_logits);
    double md, mr;
    test_maxdiff(infer_logits, train_logits, (size_t)N * V, &md, &mr);
    cr_expect(md <= 1e-6 * mr, "inference logits differ from training-forward logits by %g", md);
    cr_log_info("teacher activation arena: training forward %.2f MiB, inference forward %.2f MiB", train_bytes / 1048576.0,
                infer_bytes / 1048576.0);
    cr_expect(infer_bytes * 2 < train_bytes, "inference forward should keep far less (%zu vs %zu bytes)", infer_bytes,
              train_bytes);
    free(infer_logits);
    free(train_logits);
    model_free(alone);
    model_free(teacher);
    model_free(teacher_train);
    model_free(student);
}

/* Two threads give the same logits as one (products are split by rows, not by sums). */
Test(two_models, threads_agree) {
    Batch b = make_batch();
    Model *m = make(64, 2, 128, 3);
    int V = m->cfg.vocab_size, N = B * T;
    float *l1 = malloc(sizeof(float) * N * V), *l2 = malloc(sizeof(float) * N * V);
    tt_set_threads(1);
    TEST_ASSERT_OK(model_forward(m, &b, 0));
    model_logits(m, 0, N, l1);
    tt_set_threads(2);
    TEST_ASSERT_OK(model_forward(m, &b, 0));
    model_logits(m, 0, N, l2);
    tt_set_threads(1);
    double md, mr;
    test_maxdiff(l1, l2, (size_t)N * V, &md, &mr);
    cr_expect(md <= 1e-5 * mr, "1 vs 2 threads: logits differ by %g", md);
    free(l1);
    free(l2);
    model_free(m);
}
