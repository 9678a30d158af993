/* test_hf_fixtures.c: tutor reads the models Hugging Face wrote (tests/fixtures/hf) and
 * reproduces HF's own logits and loss; a model directory tutor writes reads back
 * bit-identically (issue 2, bar 1). */
#include <cjson/cJSON.h>

#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/model.h"
#include "tutor/safetensors.h"

static cJSON *load_json(const char *path) {
    size_t n;
    char *text = read_file_text(path, &n);
    cr_assert(text, "%s", tt_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "bad JSON in %s", path);
    return j;
}

/* Fills a (rows x cols) int matrix from a JSON array of arrays. */
static int *int_matrix(const cJSON *a, int *rows, int *cols) {
    *rows = cJSON_GetArraySize(a);
    *cols = cJSON_GetArraySize(cJSON_GetArrayItem(a, 0));
    int *out = malloc(sizeof(int) * *rows * *cols);
    for (int r = 0; r < *rows; r++)
        for (int c = 0; c < *cols; c++)
            out[r * *cols + c] = cJSON_GetArrayItem(cJSON_GetArrayItem(a, r), c)->valueint;
    return out;
}

typedef struct {
    Model *m;
    Batch b;
    int *src, *src_mask, *tgt_in, *tgt_mask, *labels;
} Fixture;

static void fixture_load(Fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES_HF, name);
    f->m = model_load(dir);
    cr_assert(f->m, "model_load(%s): %s", dir, tt_errmsg());
    snprintf(path, sizeof path, "%s/inputs.json", dir);
    cJSON *in = load_json(path);
    int B, S, B2, T;
    int *ids = int_matrix(cJSON_GetObjectItem(in, "input_ids"), &B, &S);
    int *mask = int_matrix(cJSON_GetObjectItem(in, "attention_mask"), &B, &S);
    int *labels = int_matrix(cJSON_GetObjectItem(in, "labels"), &B2, &T);
    cJSON_Delete(in);
    memset(&f->b, 0, sizeof f->b);
    f->b.B = B;
    if (model_is_encdec(&f->m->cfg)) {
        f->src = ids;
        f->src_mask = mask;
        f->labels = labels;
        f->tgt_in = malloc(sizeof(int) * B * T);
        model_decoder_inputs(&f->m->cfg, labels, B, T, f->tgt_in);
        f->b.S = S;
        f->b.T = T;
        f->b.src = f->src;
        f->b.src_mask = f->src_mask;
    } else {
        f->tgt_in = ids;
        f->tgt_mask = mask;
        f->labels = malloc(sizeof(int) * B * S);
        model_shift_labels_left(labels, B, S, f->labels);
        free(labels);
        f->b.T = S;
    }
    f->b.tgt_in = f->tgt_in;
    f->b.tgt_mask = f->tgt_mask;
    f->b.labels = f->labels;
}

static void fixture_free(Fixture *f) {
    model_free(f->m);
    free(f->src);
    free(f->src_mask);
    free(f->tgt_in);
    free(f->tgt_mask);
    free(f->labels);
}

static void check_fixture(const char *name, int train_mode) {
    Fixture f;
    fixture_load(&f, name);
    TEST_ASSERT_OK(model_forward(f.m, &f.b, train_mode));
    int V = f.m->cfg.vocab_size, N = f.b.B * f.b.T;
    float *logits = malloc(sizeof(float) * N * V);
    model_logits(f.m, 0, N, logits);
    double loss = model_xent(f.m, &f.b, 0, 0, 1, NULL);

    char path[300];
    snprintf(path, sizeof path, "%s/%s/expected.json", FIXTURES_HF, name);
    cJSON *ex = load_json(path);
    const cJSON *el = cJSON_GetObjectItem(ex, "logits");
    float *want = malloc(sizeof(float) * N * V);
    int i = 0;
    for (int b = 0; b < f.b.B; b++)
        for (int t = 0; t < f.b.T; t++)
            for (int v = 0; v < V; v++)
                want[i++] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(el, b), t), v)->valuedouble;
    double max_diff, max_ref;
    test_maxdiff(logits, want, (size_t)N * V, &max_diff, &max_ref);
    double want_loss = cJSON_GetObjectItem(ex, "loss")->valuedouble;
    cJSON_Delete(ex);
    cr_log_info("%s: max |logit diff| %.3g (bound %.3g), loss %.9f vs HF %.9f", name, max_diff, 1e-5 * max_ref, loss,
                want_loss);
    cr_expect(max_diff <= 1e-5 * max_ref, "%s: logits differ by %g (max |logit| %g)", name, max_diff, max_ref);
    cr_expect(fabs(loss - want_loss) <= 1e-6 * fabs(want_loss), "%s: loss %.9f vs HF %.9f", name, loss, want_loss);
    free(logits);
    free(want);
    fixture_free(&f);
}

Test(hf_fixtures, bart_logits_and_loss) { check_fixture("bart", 0); }
Test(hf_fixtures, mbart_logits_and_loss) { check_fixture("mbart", 0); }
Test(hf_fixtures, gpt2_logits_and_loss) { check_fixture("gpt2", 0); }
/* The training forward (keeping activations) computes the same numbers. */
Test(hf_fixtures, bart_train_forward) { check_fixture("bart", 1); }
Test(hf_fixtures, mbart_train_forward) { check_fixture("mbart", 1); }
Test(hf_fixtures, gpt2_train_forward) { check_fixture("gpt2", 1); }

static void check_roundtrip(const char *name) {
    char dir[256], tmp[128], out[300];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES_HF, name);
    Model *m = model_load(dir);
    cr_assert(m, "%s", tt_errmsg());
    test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/model", tmp);
    TEST_ASSERT_OK(model_save(m, out));
    Model *m2 = model_load(out);
    cr_assert(m2, "%s", tt_errmsg());
    cr_assert_eq(m2->n_params, m->n_params);
    cr_assert(memcmp(m2->params, m->params, m->n_params * sizeof(real)) == 0, "%s: parameters differ after save/load",
              name);
    cr_assert(memcmp(&m2->cfg, &m->cfg, sizeof m->cfg) == 0, "%s: config differs after save/load", name);
    /* Writing again gives the same bytes. */
    char out2[300], f1[400], f2[400];
    snprintf(out2, sizeof out2, "%s/model2", tmp);
    TEST_ASSERT_OK(model_save(m2, out2));
    snprintf(f1, sizeof f1, "%s/model.safetensors", out);
    snprintf(f2, sizeof f2, "%s/model.safetensors", out2);
    size_t n1, n2;
    char *b1 = read_file_text(f1, &n1), *b2 = read_file_text(f2, &n2);
    cr_assert(n1 == n2 && memcmp(b1, b2, n1) == 0, "rewritten safetensors differ");
    free(b1);
    free(b2);
    model_free(m);
    model_free(m2);
    test_rmtree(tmp);
}

Test(hf_fixtures, bart_roundtrip) { check_roundtrip("bart"); }
Test(hf_fixtures, mbart_roundtrip) { check_roundtrip("mbart"); }
Test(hf_fixtures, gpt2_roundtrip) { check_roundtrip("gpt2"); }

Test(hf_fixtures, refuses_bad_dirs) {
    cr_assert_null(model_load("/nonexistent-dir"));
    cr_assert(strstr(tt_errmsg(), "/nonexistent-dir"));
}

/* Checkpoints tutor cannot use are refused with a message saying why. */
Test(hf_fixtures, refuses_non_float32_sharded_and_pickle) {
    char tmp[128], dir[300], path[400], cmd[1200];
    test_tmpdir(tmp, sizeof tmp);
    Model *m = model_load(FIXTURES_HF "/gpt2");
    cr_assert(m);
    /* every tensor as F16 */
    snprintf(dir, sizeof dir, "%s/f16", tmp);
    TEST_ASSERT_OK(model_save(m, dir));
    StWriteTensor *ts = calloc((size_t)m->n_tensors, sizeof *ts);
    uint16_t *half = calloc(m->n_params, sizeof(uint16_t));
    for (int i = 0; i < m->n_tensors; i++) {
        ts[i].name = m->tensors[i].name;
        ts[i].dtype = ST_F16;
        ts[i].ndim = m->tensors[i].ndim;
        for (int d = 0; d < ts[i].ndim; d++) ts[i].shape[d] = m->tensors[i].shape[d];
        ts[i].data = half + m->tensors[i].offset;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    TEST_ASSERT_OK(st_write(path, ts, m->n_tensors, NULL));
    cr_assert_null(model_load(dir));
    cr_expect(strstr(tt_errmsg(), "F16") && strstr(tt_errmsg(), "float32"), "%s", tt_errmsg());
    /* sharded */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/sharded && cp %s/config.json %s/sharded/ && echo '{}' > "
             "%s/sharded/model.safetensors.index.json", tmp, dir, tmp, tmp);
    cr_assert(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/sharded", tmp);
    cr_assert_null(model_load(path));
    cr_expect(strstr(tt_errmsg(), "sharded"), "%s", tt_errmsg());
    /* pickle */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/pickle && cp %s/config.json %s/pickle/ && printf '\\200\\002}q' > "
             "%s/pickle/pytorch_model.bin", tmp, dir, tmp, tmp);
    cr_assert(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/pickle", tmp);
    cr_assert_null(model_load(path));
    cr_expect(strstr(tt_errmsg(), "pickle"), "%s", tt_errmsg());
    /* a shape that disagrees with config.json */
    snprintf(dir, sizeof dir, "%s/shape", tmp);
    TEST_ASSERT_OK(model_save(m, dir));
    snprintf(cmd, sizeof cmd, "sed -i 's/\"n_embd\":[[:space:]]*48/\"n_embd\": 64/' %s/config.json", dir);
    cr_assert(system(cmd) == 0);
    cr_assert_null(model_load(dir));
    cr_expect(strstr(tt_errmsg(), "shape"), "%s", tt_errmsg());
    free(ts);
    free(half);
    model_free(m);
    test_rmtree(tmp);
}
