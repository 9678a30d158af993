/* test_hf_fixtures.c: tutor reads the models Hugging Face wrote (tests/fixtures/hf) and
 * reproduces HF's own logits and loss; a model directory tutor writes reads back
 * bit-identically (issue 2, bar 1). The edge cases of tests/fixtures/hf-edge (issue 9):
 * untied output projections, MBartConfig's defaults, generation settings only in
 * config.json, a model vocabulary wider than its tokenizer, a prompt past max_length. */
#include <cjson/cJSON.h>

#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"
#include "tutor/model.h"
#include "tutor/tokenizer.h"
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

#define FIXTURES_EDGE "tests/fixtures/hf-edge"

static void fixture_load_from(Fixture *f, const char *root, const char *name) {
    memset(f, 0, sizeof *f);
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
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

static void check_fixture_in(const char *root, const char *name, int train_mode) {
    Fixture f;
    fixture_load_from(&f, root, name);
    TEST_ASSERT_OK(model_forward(f.m, &f.b, train_mode));
    int V = f.m->cfg.vocab_size, N = f.b.B * f.b.T;
    float *logits = malloc(sizeof(float) * N * V);
    model_logits(f.m, 0, N, logits);
    double loss = model_xent(f.m, &f.b, 0, 0, 1, NULL);

    char path[300];
    snprintf(path, sizeof path, "%s/%s/expected.json", root, name);
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

static void check_fixture(const char *name, int train_mode) { check_fixture_in(FIXTURES_HF, name, train_mode); }

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

/* ---- tests/fixtures/hf-edge: directories HF wrote that differ from tutor's own ---- */

static int *json_ints(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int *out = malloc(sizeof(int) * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) out[i] = cJSON_GetArrayItem(a, i)->valueint;
    return out;
}

/* Generates for row 0 of inputs.json (unpadded) with the directory's own settings, then
 * the given overrides; returns the new tokens in out (n_out). */
static void generate_row0_limited(const char *dir, const GenFlags *flags, int *out, int *n_out, double *score,
                                  const Tokenizer *tok) {
    Model *m = model_load(dir);
    cr_assert(m, "%s", tt_errmsg());
    GenConfig g;
    TEST_ASSERT_OK(gen_config_for_dir(&g, &m->cfg, dir));
    if (flags) gen_flags_apply(flags, &g);
    if (tok) gen_config_limit_to_tokenizer(&g, &m->cfg, tok);
    char path[400];
    snprintf(path, sizeof path, "%s/inputs.json", dir);
    cJSON *in = load_json(path);
    const cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(in, "input_ids"), 0);
    const cJSON *mask = cJSON_GetArrayItem(cJSON_GetObjectItem(in, "attention_mask"), 0);
    int n;
    int *src = json_ints(ids, &n);
    int len = 0;
    for (int i = 0; i < n; i++) len += cJSON_GetArrayItem(mask, i)->valueint;
    cJSON_Delete(in);
    Generator *gen = generator_new(m, &g, 1, len);
    cr_assert(gen, "%s", tt_errmsg());
    const int *srcs[1] = {src};
    uint64_t stream = 0;
    const GenOutput *o;
    TEST_ASSERT_OK(generator_run(gen, 1, srcs, &len, &stream, &o));
    *n_out = o[0].hyps[0].n_tokens;
    memcpy(out, o[0].hyps[0].tokens, sizeof(int) * (size_t)*n_out);
    if (score) *score = o[0].hyps[0].score;
    generator_free(gen);
    free(src);
    model_free(m);
}

static void generate_row0(const char *dir, const GenFlags *flags, int *out, int *n_out, double *score) {
    generate_row0_limited(dir, flags, out, n_out, score, NULL);
}

static void expect_tokens(const int *got, int n_got, const cJSON *want, const char *what) {
    int n;
    int *w = json_ints(want, &n);
    char g[512] = "", e[512] = "";
    for (int i = 0; i < n_got && strlen(g) < 480; i++) snprintf(g + strlen(g), sizeof g - strlen(g), " %d", got[i]);
    for (int i = 0; i < n && strlen(e) < 480; i++) snprintf(e + strlen(e), sizeof e - strlen(e), " %d", w[i]);
    cr_expect(n == n_got && !memcmp(w, got, sizeof(int) * (size_t)n), "%s: tutor [%s ], HF [%s ]", what, g, e);
    free(w);
}

static cJSON *edge_expected(const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s/expected.json", FIXTURES_EDGE, name);
    return load_json(path);
}

static void six_new_tokens(GenFlags *f, int beams) {
    gen_flags_init(f);
    f->max_new = 6;
    f->min_new = 6;
    f->num_beams = beams;
}

static void check_untied(const char *name) {
    check_fixture_in(FIXTURES_EDGE, name, 0);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES_EDGE, name);
    Model *m = model_load(dir);
    cr_assert(m);
    cr_expect(m->cfg.untied_lm_head && m->p.lm_head != m->p.tok_emb, "lm_head.weight is its own tensor");
    /* saved as HF saves it: tie_word_embeddings false and lm_head.weight present */
    char tmp[128], out[300], path[400];
    test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/saved", tmp);
    TEST_ASSERT_OK(model_save(m, out));
    snprintf(path, sizeof path, "%s/config.json", out);
    cJSON *c = load_json(path);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(c, "tie_word_embeddings")));
    cJSON_Delete(c);
    Model *m2 = model_load(out);
    cr_assert(m2, "%s", tt_errmsg());
    cr_expect(m2->n_params == m->n_params && !memcmp(m2->params, m->params, m->n_params * sizeof(real)));
    model_free(m2);
    model_free(m);
    test_rmtree(tmp);
    GenFlags f;
    six_new_tokens(&f, 1);
    int toks[64], n;
    generate_row0(dir, &f, toks, &n, NULL);
    cJSON *ex = edge_expected(name);
    expect_tokens(toks, n, cJSON_GetObjectItem(ex, "greedy_first_row_6_tokens"), name);
    cJSON_Delete(ex);
}

Test(hf_edge, gpt2_untied_head) { check_untied("gpt2-untied"); }
Test(hf_edge, bart_untied_head) { check_untied("bart-untied"); }

Test(hf_edge, mbart_defaults_start_from_bos) {
    check_fixture_in(FIXTURES_EDGE, "mbart-defaults", 0);
    const char *dir = FIXTURES_EDGE "/mbart-defaults";
    cJSON *ex = edge_expected("mbart-defaults");
    GenFlags f;
    int toks[64], n;
    six_new_tokens(&f, 1);
    generate_row0(dir, &f, toks, &n, NULL);
    expect_tokens(toks, n, cJSON_GetObjectItem(ex, "greedy_first_row_6_tokens"), "mbart-defaults greedy");
    six_new_tokens(&f, 3);
    double score;
    generate_row0(dir, &f, toks, &n, &score);
    expect_tokens(toks, n, cJSON_GetObjectItem(ex, "beam3_first_row_6_tokens"), "mbart-defaults beam 3");
    double want = cJSON_GetArrayItem(
                      cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "beam3_first_row_all_beams"), "sequences_scores"), 0)
                      ->valuedouble;
    cr_expect(fabs(score - want) < 1e-4, "beam score %.6f vs HF %.6f", score, want);
    /* saving writes no decoder_start_token_id (or null), as HF's MBartConfig has none */
    Model *m = model_load(dir);
    char tmp[128], out[300], path[400];
    test_tmpdir(tmp, sizeof tmp);
    snprintf(out, sizeof out, "%s/saved", tmp);
    TEST_ASSERT_OK(model_save(m, out));
    snprintf(path, sizeof path, "%s/config.json", out);
    cJSON *c = load_json(path);
    const cJSON *ds = cJSON_GetObjectItem(c, "decoder_start_token_id");
    cr_expect(!ds || cJSON_IsNull(ds), "no decoder_start_token_id written back (HF reads null as none)");
    cJSON_Delete(c);
    model_free(m);
    test_rmtree(tmp);
    cJSON_Delete(ex);
}

Test(hf_edge, generation_settings_from_config_json) {
    check_fixture_in(FIXTURES_EDGE, "bart-legacy-genconfig", 0);
    const char *dir = FIXTURES_EDGE "/bart-legacy-genconfig";
    Model *m = model_load(dir);
    cr_assert(m);
    GenConfig g;
    TEST_ASSERT_OK(gen_config_for_dir(&g, &m->cfg, dir));
    cr_expect(g.num_beams == 3 && g.max_length == 12 && g.no_repeat_ngram_size == 2 && g.length_penalty == 1.5 &&
                  g.early_stopping == EARLY_STOP_TRUE,
              "the settings of config.json are in effect");
    model_free(m);
    cJSON *ex = edge_expected("bart-legacy-genconfig");
    const cJSON *row0 = cJSON_GetArrayItem(cJSON_GetObjectItem(ex, "generate_defaults"), 0);
    int toks[64], n;
    generate_row0(dir, NULL, toks, &n, NULL);
    /* HF's sequence starts with the decoder start; tutor returns the new tokens */
    int want_n;
    int *want = json_ints(cJSON_GetObjectItem(row0, "sequence"), &want_n);
    cJSON *tail = cJSON_CreateIntArray(want + 1, want_n - 1);
    expect_tokens(toks, n, tail, "bart-legacy-genconfig defaults");
    cJSON_Delete(tail);
    free(want);
    cJSON_Delete(ex);
}

Test(hf_edge, padded_vocabulary_never_emits_ids_without_text) {
    check_fixture_in(FIXTURES_EDGE, "bart-padded-vocab", 0);
    const char *dir = FIXTURES_EDGE "/bart-padded-vocab";
    Tokenizer *tok = tokenizer_load(dir);
    cr_assert(tok, "%s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(tok), 300);
    GenFlags f;
    six_new_tokens(&f, 1);
    int toks[64], n;
    /* unlimited, as HF: ids >= 300 come out (HF's own greedy output) */
    generate_row0(dir, &f, toks, &n, NULL);
    cJSON *ex = edge_expected("bart-padded-vocab");
    expect_tokens(toks, n, cJSON_GetObjectItem(ex, "greedy_first_row_6_tokens"), "bart-padded-vocab unlimited");
    cJSON_Delete(ex);
    /* limited to the tokenizer, as tutor generates: none, and the text decodes */
    for (int beams = 1; beams <= 3; beams += 2) {
        six_new_tokens(&f, beams);
        generate_row0_limited(dir, &f, toks, &n, NULL, tok);
        for (int i = 0; i < n; i++) cr_expect(toks[i] < 300, "beam %d: token %d is id %d", beams, i, toks[i]);
        char *text = tokenizer_decode(tok, toks, (size_t)n, 1, NULL);
        cr_expect(text != NULL, "%s", tt_errmsg());
        free(text);
    }
    tokenizer_free(tok);
}

Test(hf_edge, prompt_past_max_length_gets_one_token) {
    check_fixture_in(FIXTURES_EDGE, "gpt2-long-prompt", 0);
    const char *dir = FIXTURES_EDGE "/gpt2-long-prompt";
    cJSON *ex = edge_expected("gpt2-long-prompt");
    int toks[64], n;
    generate_row0(dir, NULL, toks, &n, NULL);
    expect_tokens(toks, n, cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "generate_default"), "new_tokens"),
                  "gpt2-long-prompt defaults");
    cJSON_Delete(ex);
}
