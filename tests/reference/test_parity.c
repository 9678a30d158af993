/* test_parity.c: tutor against the PyTorch reference (tests/reference/torch_ref.py, itself
 * checked against Hugging Face's fixtures by test_torch_reference): on the same
 * model.safetensors and a padded batch, logits, loss and every gradient agree to 1e-4 of
 * the tensor's largest magnitude, and 5 AdamW steps move the parameters alike
 * (||d_tutor - d_torch|| <= 1e-3 ||d_torch||), for GPT-2, BART and mBART (issue 2, bar 3). */
#include "../testlib.h"
#include "tutor/model.h"
#include "tutor/optim.h"
#include "tutor/safetensors.h"

enum { B = 3, S = 9, T = 7 };

typedef struct {
    int src[B * S], src_mask[B * S], ids[B * T], mask[B * T], hf_labels[B * T];
    int tgt_in[B * T], labels[B * T];
    Batch batch;
} ParityBatch;

static Model *make_model(Arch arch, Rng *rng) {
    ModelConfig cfg;
    model_config_default(&cfg, arch);
    cfg.vocab_size = 61;
    cfg.d_model = 32;
    cfg.max_positions = 16;
    cfg.dec_layers = 2;
    cfg.dec_heads = 4;
    cfg.dec_ffn = 48;
    if (arch != ARCH_GPT2) {
        cfg.enc_layers = 2;
        cfg.enc_heads = 2;
        cfg.enc_ffn = 40;
    }
    cfg.dropout = cfg.attn_dropout = cfg.act_dropout = 0;
    cfg.init_std = 0.2;
    Model *m = model_new(&cfg, 7);
    cr_assert(m, "%s", tt_errmsg());
    /* Non-trivial LayerNorm and bias values, so every parameter shows in the outputs. */
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *pi = &m->tensors[i];
        if (pi->decay) continue;
        int is_w = strstr(pi->name, ".weight") != NULL;
        for (size_t j = 0; j < pi->numel; j++)
            m->params[pi->offset + j] = (real)((is_w ? 1.0 : 0.0) + 0.2 * rng_normal(rng));
    }
    return m;
}

static void make_batch(const Model *m, ParityBatch *pb, Rng *rng) {
    int V = m->cfg.vocab_size;
    memset(pb, 0, sizeof *pb);
    for (int b = 0; b < B; b++) {
        int src_len = S - 2 * b, tgt_len = T - 2 * b;
        for (int s = 0; s < S; s++) {
            pb->src_mask[b * S + s] = s < src_len;
            pb->src[b * S + s] = s < src_len ? (s == 0 ? 0 : s == src_len - 1 ? 2 : 4 + (int)rng_below(rng, V - 4)) : 1;
        }
        for (int t = 0; t < T; t++) {
            int real_tok = t < tgt_len;
            pb->mask[b * T + t] = real_tok;
            pb->ids[b * T + t] = real_tok ? (t == tgt_len - 1 ? 2 : 4 + (int)rng_below(rng, V - 4)) : 1;
            pb->hf_labels[b * T + t] = real_tok ? pb->ids[b * T + t] : -100;
        }
    }
    Batch *bt = &pb->batch;
    bt->B = B;
    bt->T = T;
    if (model_is_encdec(&m->cfg)) {
        bt->S = S;
        bt->src = pb->src;
        bt->src_mask = pb->src_mask;
        memcpy(pb->labels, pb->hf_labels, sizeof pb->labels);
        model_decoder_inputs(&m->cfg, pb->hf_labels, B, T, pb->tgt_in);
        bt->tgt_in = pb->tgt_in;
    } else {
        bt->tgt_in = pb->ids;
        bt->tgt_mask = pb->mask;
        model_shift_labels_left(pb->hf_labels, B, T, pb->labels);
    }
    bt->labels = pb->labels;
}

static void write_int_rows(FILE *f, const char *key, const int *x, int rows, int cols, int last) {
    fprintf(f, "\"%s\": [", key);
    for (int r = 0; r < rows; r++) {
        fprintf(f, "%s[", r ? ", " : "");
        for (int c = 0; c < cols; c++) fprintf(f, "%s%d", c ? ", " : "", x[r * cols + c]);
        fprintf(f, "]");
    }
    fprintf(f, "]%s", last ? "" : ", ");
}

static void write_batch_json(const char *path, const Model *m, const ParityBatch *pb) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "{");
    if (model_is_encdec(&m->cfg)) {
        write_int_rows(f, "input_ids", pb->src, B, S, 0);
        write_int_rows(f, "attention_mask", pb->src_mask, B, S, 0);
    } else {
        write_int_rows(f, "input_ids", pb->ids, B, T, 0);
        write_int_rows(f, "attention_mask", pb->mask, B, T, 0);
    }
    write_int_rows(f, "labels", pb->hf_labels, B, T, 1);
    fprintf(f, "}\n");
    fclose(f);
}

static const float *ref_tensor(const StFile *f, const char *name, size_t numel) {
    const StTensor *t = st_find(f, name);
    cr_assert(t, "reference lacks %s", name);
    cr_assert_eq(st_numel(t), numel, "%s: %zu elements, tutor has %zu", name, st_numel(t), numel);
    return st_data(f, t);
}

/* In exact arithmetic the key projection's bias gets zero gradient (softmax ignores a shift
 * shared by all keys); in float32 both sides see rounding noise there, which Adam's
 * normalisation turns into updates of random sign. Those coordinates are checked to be noise
 * on both sides and left out of the update comparison. */
static int is_key_bias(const Model *m, const ParamInfo *pi, size_t j) {
    if (strstr(pi->name, "k_proj.bias")) return 1;
    int C = m->cfg.d_model;
    return strstr(pi->name, "c_attn.bias") && (int)j >= C && (int)j < 2 * C;
}

static void check_parity(Arch arch) {
    Rng rng;
    rng_seed(&rng, 100 + arch);
    Model *m = make_model(arch, &rng);
    ParityBatch pb;
    make_batch(m, &pb, &rng);
    char dir[128], path[512], ref[512], cmd[2048];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model", dir);
    TEST_ASSERT_OK(model_save(m, path));
    snprintf(path, sizeof path, "%s/batch.json", dir);
    write_batch_json(path, m, &pb);
    snprintf(ref, sizeof ref, "%s/ref.safetensors", dir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/reference/torch_ref.py parity --model %s/model --batch %s --out %s "
             "--steps 5 --lr 1e-3 --beta1 0.9 --beta2 0.999 --eps 1e-8 --weight-decay 0.01 >%s/torch.log 2>&1",
             dir, path, ref, dir);
    int rc = system(cmd);
    if (rc != 0) {
        char show[700];
        snprintf(show, sizeof show, "cat %s/torch.log >&2", dir);
        (void)system(show);
    }
    cr_assert_eq(rc, 0, "torch reference failed: %s", cmd);
    StFile f;
    TEST_ASSERT_OK(st_open(&f, ref));

    /* logits and loss */
    TEST_ASSERT_OK(model_alloc_grads(m));
    model_zero_grads(m);
    TEST_ASSERT_OK(model_forward(m, &pb.batch, 1));
    int V = m->cfg.vocab_size, N = B * T;
    float *logits = malloc(sizeof(float) * N * V);
    model_logits(m, 0, N, logits);
    double md, mr;
    test_maxdiff(logits, ref_tensor(&f, "logits", (size_t)N * V), (size_t)N * V, &md, &mr);
    cr_log_info("arch %d: logits max diff %.3g (max %.3g)", arch, md, mr);
    cr_expect(md <= 1e-4 * mr, "logits differ by %g (max |logit| %g)", md, mr);
    double loss = model_xent(m, &pb.batch, 0, 1, 1, NULL);
    double ref_loss = ref_tensor(&f, "loss", 1)[0];
    cr_expect(fabs(loss - ref_loss) <= 1e-4 * fabs(ref_loss), "loss %.9f vs torch %.9f", loss, ref_loss);
    TEST_ASSERT_OK(model_backward(m, &pb.batch));

    /* every gradient */
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *pi = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "grad.%s", pi->name);
        const float *g = ref_tensor(&f, name, pi->numel);
        test_maxdiff(m->grads + pi->offset, g, pi->numel, &md, &mr);
        if (strstr(pi->name, "k_proj.bias")) {
            cr_expect(md < 1e-5 && mr < 1e-5, "%s should be rounding noise: diff %g, max %g", name, md, mr);
            continue;
        }
        cr_expect(md <= 1e-4 * mr, "%s: max diff %g, largest |g| %g", name, md, mr);
        if (mr > 0 && md / mr > worst) worst = md / mr;
    }
    cr_log_info("arch %d: worst gradient diff / max = %.3g", arch, worst);

    /* 5 AdamW steps on the same batch */
    real *before = malloc(m->n_params * sizeof(real));
    memcpy(before, m->params, m->n_params * sizeof(real));
    AdamW opt;
    AdamWConfig oc;
    adamw_config_default(&oc);
    TEST_ASSERT_OK(adamw_init(&opt, m, &oc));
    for (int step = 0; step < 5; step++) {
        model_zero_grads(m);
        TEST_ASSERT_OK(model_forward(m, &pb.batch, 1));
        model_xent(m, &pb.batch, 0, 1, 1, NULL);
        TEST_ASSERT_OK(model_backward(m, &pb.batch));
        adamw_step(&opt, m->params, m->grads, 1e-3);
    }
    double diff2 = 0, ref2 = 0;
    long excluded = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *pi = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "update.%s", pi->name);
        const float *u = ref_tensor(&f, name, pi->numel);
        for (size_t j = 0; j < pi->numel; j++) {
            if (is_key_bias(m, pi, j)) {
                excluded++;
                continue;
            }
            double d = (double)(m->params[pi->offset + j] - before[pi->offset + j]);
            diff2 += (d - u[j]) * (d - u[j]);
            ref2 += (double)u[j] * u[j];
        }
    }
    cr_log_info("arch %d: ||d_tutor - d_torch|| / ||d_torch|| = %.3g over %zu parameters (%ld key-bias excluded)",
                arch, sqrt(diff2 / ref2), m->n_params, excluded);
    cr_expect(sqrt(diff2) <= 1e-3 * sqrt(ref2), "AdamW updates differ: %g relative", sqrt(diff2 / ref2));
    adamw_free(&opt);
    free(before);
    free(logits);
    st_close(&f);
    model_free(m);
    test_rmtree(dir);
}

Test(parity, gpt2, .timeout = 120) { check_parity(ARCH_GPT2); }
Test(parity, bart, .timeout = 120) { check_parity(ARCH_BART); }
Test(parity, mbart, .timeout = 120) { check_parity(ARCH_MBART); }
