/* test_evaluate.c: `tutor eval` end to end on tiny random-weight models and a hand-made test
 * file: the JSON has every field, per-example ROUGE averages to the table's number, lead-N
 * is what it should be, a model against itself gives differences of exactly 0, the cost is
 * measured, exposure bias runs through the pipeline, and bad inputs give clear errors. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../testlib.h"
#include "tutor/evaluate.h"
#include "tutor/fileio.h"

static const char *TEXTS[] = {
    "the quick brown fox jumps over the lazy dog",
    "a library for reading and writing image files",
    "command line tool to convert audio formats",
    "fonts for the terminal with many glyphs",
    "python bindings for the networking library",
    "documentation for the image library and tools",
};

/* A test file of n examples built from TEXTS; example 0 has a newline and odd spacing. */
static void write_data(const char *path, int n) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "{\"id\": \"e0\", \"source\": \"  Alpha  beta\\ngamma\\tdelta epsilon zeta\", \"target\": \"alpha beta gamma\"}\n");
    for (int i = 1; i < n; i++)
        fprintf(f, "{\"id\": \"e%d\", \"source\": \"%s, %s\", \"target\": \"%s\"}\n", i, TEXTS[i % 6], TEXTS[(i + 1) % 6],
                TEXTS[(i + 2) % 6]);
    fclose(f);
}

static Tokenizer *make_tokenizer(int vocab) {
    BpeTrainOptions opt;
    bpe_train_options_default(&opt);
    opt.vocab_size = vocab;
    opt.min_frequency = 1;
    Tokenizer *tok = bpe_train(TEXTS, 6, &opt);
    cr_assert(tok, "%s", tt_errmsg());
    return tok;
}

/* A random-weight encoder-decoder with the tokenizer's vocabulary, saved as a model dir. */
static void make_model_arch(const char *dir, Tokenizer *tok, uint64_t seed, int positions, Arch arch) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.vocab_size = tokenizer_vocab_size(tok);
    c.d_model = 16;
    c.enc_layers = c.dec_layers = 1;
    c.enc_heads = c.dec_heads = 2;
    c.enc_ffn = c.dec_ffn = 32;
    c.max_positions = positions;
    c.pad_id = tokenizer_pad_id(tok);
    c.bos_id = tokenizer_bos_id(tok);
    c.eos_id = c.decoder_start_id = c.forced_eos_id = tokenizer_eos_id(tok);
    c.init_std = 0.2;
    Model *m = model_new(&c, seed);
    cr_assert(m);
    cr_assert(make_dirs(dir) == 0);
    TEST_ASSERT_OK(model_save(m, dir));
    TEST_ASSERT_OK(tokenizer_save(tok, dir));
    model_free(m);
}

static void make_model(const char *dir, Tokenizer *tok, uint64_t seed) { make_model_arch(dir, tok, seed, 64, ARCH_MBART); }

typedef struct {
    char dir[64], data[128], model[128], other[128], wrong_vocab[128];
} Fixture;

static void fixture(Fixture *f) {
    test_tmpdir(f->dir, sizeof f->dir);
    snprintf(f->data, sizeof f->data, "%s/test.jsonl", f->dir);
    snprintf(f->model, sizeof f->model, "%s/model", f->dir);
    snprintf(f->other, sizeof f->other, "%s/other", f->dir);
    snprintf(f->wrong_vocab, sizeof f->wrong_vocab, "%s/wrong", f->dir);
    write_data(f->data, 12);
    Tokenizer *tok = make_tokenizer(300), *tok2 = make_tokenizer(290);
    make_model(f->model, tok, 1);
    make_model(f->other, tok, 2);
    make_model(f->wrong_vocab, tok2, 3);
    tokenizer_free(tok);
    tokenizer_free(tok2);
}

static void small_options(EvalOptions *o, const Fixture *f) {
    eval_options_default(o);
    o->model_dir = f->model;
    o->data_path = f->data;
    o->max_new_tokens = 6;
    o->max_target_tokens = 16;
    o->batch_size = 5;
    o->resamples = 200;
    o->speed = 0;
}

Test(lead, first_words_at_python_whitespace) {
    char *s = lead_words("  Alpha  beta\ngamma\tdelta", 3);
    cr_expect_str_eq(s, "Alpha beta gamma");
    free(s);
    s = lead_words("one\xe3\x80\x80two three", 2); /* U+3000 ideographic space splits in Python */
    cr_expect_str_eq(s, "one two");
    free(s);
    s = lead_words("caf\xc3\xa9 au lait", 10);
    cr_expect_str_eq(s, "caf\xc3\xa9 au lait");
    free(s);
    s = lead_words(" \n ", 4);
    cr_expect_str_eq(s, "");
    free(s);
}

Test(eval, report_fields_means_and_lead) {
    Fixture f;
    fixture(&f);
    EvalOptions o;
    small_options(&o, &f);
    o.baseline_dir = f.other;
    o.oracle_dir = f.other;
    o.lead = 3;
    o.exposure_max_len = 5;
    EvalReport r;
    TEST_ASSERT_OK(eval_run(&o, &r));
    cr_assert(r.n == 12);
    /* lead-3 of the hand-made first example */
    cr_expect_str_eq(r.lead.hyps[0], "Alpha beta gamma");
    cr_expect_float_eq(r.lead.rouge[0].rougeL.fmeasure, 1.0, 1e-12, "ROUGE lowercases: the lead is the reference");
    cr_expect(r.has_exposure && r.exposure.max_len == 5);
    cr_expect(r.exposure.n_ref[0] == 12);
    cr_expect(isfinite(r.exposure.r_ref[0]) && r.exposure.r_ref[0] > 0, "different random models disagree");
    cr_expect(r.model.has_loss && r.model.test_xent > 0);

    cJSON *j = eval_report_json(&r);
    cr_assert(j);
    static const char *top[] = {"settings", "signatures", "model", "baseline", "lead", "differences", "exposure_bias",
                                "per_example"};
    for (size_t k = 0; k < sizeof top / sizeof top[0]; k++)
        cr_expect(cJSON_GetObjectItemCaseSensitive(j, top[k]), "JSON lacks \"%s\"", top[k]);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    static const char *fields[] = {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "sentence_bleu_mean",
                                   "test_xent", "length_ratio", "repeat_share", "distinct1", "distinct2"};
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
        cr_expect(cJSON_GetObjectItemCaseSensitive(model, fields[k]), "model lacks \"%s\"", fields[k]);
    const cJSON *diffs = cJSON_GetObjectItemCaseSensitive(j, "differences");
    static const char *dkeys[] = {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "sentence_bleu",
                                  "test_xent", "length_ratio", "repeat_share", "distinct1", "distinct2"};
    for (size_t k = 0; k < sizeof dkeys / sizeof dkeys[0]; k++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(diffs, dkeys[k]);
        cr_expect(d && cJSON_GetObjectItemCaseSensitive(d, "lo95") && cJSON_GetObjectItemCaseSensitive(d, "hi95"),
                  "difference \"%s\" missing", dkeys[k]);
    }
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(j, "signatures");
    cr_expect(strstr(cJSON_GetObjectItemCaseSensitive(sig, "bleu")->valuestring, "nrefs:1|case:mixed|eff:no|tok:13a"));
    cr_expect(strstr(cJSON_GetObjectItemCaseSensitive(sig, "chrf")->valuestring, "nc:6|nw:0"));
    /* per-example ROUGE-L averages to the reported mean, for every system */
    const char *systems[3] = {"model", "baseline", "lead"};
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(j, "per_example");
    cr_assert(cJSON_GetArraySize(per) == 12);
    for (int s = 0; s < 3; s++) {
        double sum = 0;
        for (int i = 0; i < 12; i++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(per, i), systems[s]);
            sum += cJSON_GetObjectItemCaseSensitive(e, "rougeL")->valuedouble;
        }
        const cJSON *sys = cJSON_GetObjectItemCaseSensitive(j, systems[s]);
        double mean = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sys, "rougeL"), "fmeasure")->valuedouble;
        cr_expect(fabs(sum / 12 - mean) < 1e-12, "%s: per-example mean %.15f vs reported %.15f", systems[s], sum / 12, mean);
    }
    /* the table prints the same number (x100, 2 decimals) in the lead column */
    char *table = eval_report_table(&r);
    cr_assert(table);
    char want[64];
    snprintf(want, sizeof want, "%.2f", 100 * r.lead.rouge_mean.rougeL.fmeasure);
    const char *row = strstr(table, "ROUGE-L F");
    cr_assert(row);
    const char *eol = strchr(row, '\n');
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(eol - row), row);
    cr_expect(strstr(line, want), "table row '%s' lacks the lead mean %s", line, want);
    cr_expect(strstr(table, "exposure bias against"));
    free(table);
    cJSON_Delete(j);

    char json_path[160], gen_path[160];
    snprintf(json_path, sizeof json_path, "%s/r.json", f.dir);
    snprintf(gen_path, sizeof gen_path, "%s/g.jsonl", f.dir);
    TEST_ASSERT_OK(eval_write_json(&r, json_path));
    TEST_ASSERT_OK(eval_write_generations(&r, gen_path));
    size_t n;
    char *g = read_file_text(gen_path, &n);
    cr_assert(g);
    int lines = 0;
    for (size_t k = 0; k < n; k++) lines += g[k] == '\n';
    cr_expect(lines == 12);
    cr_expect(strstr(g, "\"lead\":\"Alpha beta gamma\""), "%.200s", g);
    free(g);
    eval_report_free(&r);
    test_rmtree(f.dir);
}

Test(eval, model_against_itself_differs_by_exactly_zero) {
    Fixture f;
    fixture(&f);
    EvalOptions o;
    small_options(&o, &f);
    o.baseline_dir = f.model;
    o.oracle_dir = f.model;
    o.speed = 1;
    o.speed_examples = 3;
    o.speed_beam = 2;
    EvalReport r;
    TEST_ASSERT_OK(eval_run(&o, &r));
    cr_assert(r.n_diffs >= 12);
    for (int k = 0; k < r.n_diffs; k++) {
        const BootstrapResult *b = &r.diffs[k].r;
        cr_expect(b->delta == 0.0, "%s: delta %g", r.diffs[k].key, b->delta);
        cr_expect(b->lo <= 0 && b->hi >= 0, "%s: [%g, %g]", r.diffs[k].key, b->lo, b->hi);
        cr_expect(b->lo == 0.0 && b->hi == 0.0, "%s: identical outputs resample identically", r.diffs[k].key);
    }
    for (size_t i = 0; i < r.n; i++) cr_expect_str_eq(r.model.hyps[i], r.baseline.hyps[i]);
    /* the oracle is the same model loaded again: KL 0 at every length */
    for (int l = 0; l < r.exposure.max_len; l++)
        if (r.exposure.n_ref[l]) cr_expect(r.exposure.r_ref[l] == 0.0, "R_ref(%d) = %g", l + 1, r.exposure.r_ref[l]);
    /* cost */
    const EvalCost *c = &r.cost_model, *b = &r.cost_baseline;
    cr_expect(c->measured && b->measured);
    cr_expect(c->n_params == b->n_params && c->n_params > 0);
    struct stat st;
    char path[200];
    snprintf(path, sizeof path, "%s/model.safetensors", f.model);
    cr_assert(stat(path, &st) == 0);
    cr_expect(c->disk_bytes == (long long)st.st_size);
    cr_expect(c->peak_rss_bytes > c->base_rss_bytes && c->base_rss_bytes > 0, "peak %lld base %lld", c->peak_rss_bytes,
              c->base_rss_bytes);
    cr_expect(c->greedy_ms_median > 0 && c->greedy_ms_p90 >= c->greedy_ms_median);
    cr_expect(c->beam_ms_median > 0 && c->beam_tokens_per_s > 0 && c->greedy_tokens_per_s > 0);
    cr_expect(c->beam == 2 && c->examples == 3);
    eval_report_free(&r);
    test_rmtree(f.dir);
}

/* references longer than the model's positions are cut for scoring (cross-entropy, exposure
 * bias), not an error: a model made with few positions is still evaluated */
Test(eval, references_longer_than_the_positions) {
    Fixture f;
    fixture(&f);
    Tokenizer *tok = make_tokenizer(300);
    for (int arch = 0; arch < 2; arch++) {
        char shortm[160];
        snprintf(shortm, sizeof shortm, "%s/short%d", f.dir, arch);
        /* an encoder-decoder with 8 positions; a decoder-only model with 24, where the default
         * budgets (64 reference tokens, 64 new ones) leave no room for a source */
        make_model_arch(shortm, tok, 4, arch ? 24 : 8, arch ? ARCH_GPT2 : ARCH_MBART);
        EvalOptions o;
        small_options(&o, &f);
        o.model_dir = shortm;
        o.oracle_dir = shortm;
        o.max_target_tokens = 64;
        o.max_new_tokens = 64;
        EvalReport r;
        TEST_ASSERT_OK(eval_run(&o, &r));
        int P = arch ? 24 : 8;
        cr_assert(r.source_budget >= 3 && r.source_budget <= P, "arch %d: source budget %d", arch, r.source_budget);
        cr_assert(isfinite(r.model.test_xent) && r.model.test_xent > 0, "arch %d: xent %g", arch, r.model.test_xent);
        cr_assert(r.model.test_tokens > 0 && r.model.test_tokens <= (long)r.n * P, "%ld tokens", r.model.test_tokens);
        eval_report_free(&r);
    }
    tokenizer_free(tok);
    test_rmtree(f.dir);
}

Test(eval, bad_inputs_give_clear_errors) {
    Fixture f;
    fixture(&f);
    EvalOptions o;
    EvalReport r;

    small_options(&o, &f);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nope.jsonl", f.dir);
    o.data_path = missing;
    cr_expect(eval_run(&o, &r) == -1);
    cr_expect(strstr(tt_errmsg(), missing) != NULL, "%s", tt_errmsg());

    small_options(&o, &f);
    o.model_dir = f.dir; /* a directory without config.json */
    cr_expect(eval_run(&o, &r) == -1);
    cr_expect(strstr(tt_errmsg(), "not a model directory") != NULL, "%s", tt_errmsg());

    small_options(&o, &f);
    o.oracle_dir = f.wrong_vocab;
    cr_expect(eval_run(&o, &r) == -1);
    cr_expect(strstr(tt_errmsg(), "do not share a tokenizer") != NULL, "%s", tt_errmsg());

    small_options(&o, &f);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", f.dir);
    FILE *fp = fopen(bad, "w");
    fprintf(fp, "{\"source\": \"a b c\", \"target\": \"a\"}\n{\"source\": \"no target\"}\n");
    fclose(fp);
    o.data_path = bad;
    cr_expect(eval_run(&o, &r) == -1);
    char where[200];
    snprintf(where, sizeof where, "%s:2:", bad);
    cr_expect(strstr(tt_errmsg(), where) != NULL, "%s", tt_errmsg());
    test_rmtree(f.dir);
}

Test(eval, command_line_end_to_end) {
    Fixture f;
    fixture(&f);
    char cmd[2048], json_path[160], png[160], err[160];
    snprintf(json_path, sizeof json_path, "%s/out.json", f.dir);
    snprintf(png, sizeof png, "%s/eb.png", f.dir);
    snprintf(err, sizeof err, "%s/err.txt", f.dir);
    snprintf(cmd, sizeof cmd,
             "%s eval --model %s --data %s --baseline %s --oracle %s --lead 2 --max-new-tokens 5 --speed-examples 2 "
             "--resamples 100 --json %s --plot %s --threads 1 >%s/table.txt 2>%s",
             tutor_bin(), f.model, f.data, f.other, f.other, json_path, png, f.dir, err);
    cr_assert(system(cmd) == 0, "%s", cmd);
    size_t n;
    char *t = NULL;
    char table_path[160];
    snprintf(table_path, sizeof table_path, "%s/table.txt", f.dir);
    t = read_file_text(table_path, &n);
    cr_assert(t);
    cr_expect(strstr(t, "model - baseline [95% CI]") && strstr(t, "lead-2") && strstr(t, "peak resident memory"), "%s", t);
    free(t);
    cr_expect(file_exists(json_path));
    cr_expect(file_exists(png) || system("command -v gnuplot >/dev/null") != 0);
    /* an error: exit status 1 and "tutor: " on stderr */
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s/missing.jsonl --no-speed 2>%s", tutor_bin(), f.model, f.dir, err);
    int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    t = read_file_text(err, &n);
    cr_assert(t);
    cr_expect(strncmp(t, "tutor: ", 7) == 0 && strstr(t, "missing.jsonl"), "%s", t);
    free(t);
    snprintf(cmd, sizeof cmd, "%s eval --model %s 2>/dev/null", tutor_bin(), f.model);
    st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "usage error");
    test_rmtree(f.dir);
}

Test(eval, percentiles_as_numpy) {
    const double v[5] = {4, 1, 3, 2, 10};
    cr_expect_float_eq(eval_percentile(v, 4, 0.5), 2.5, 1e-12);  /* numpy.percentile([4,1,3,2], 50) */
    cr_expect_float_eq(eval_percentile(v, 4, 0.9), 3.7, 1e-12);  /* ... 90 */
    cr_expect_float_eq(eval_percentile(v, 5, 0.9), 7.6, 1e-12);  /* [1,2,3,4,10]: 4 + 0.6 * 6 */
    cr_expect_float_eq(eval_percentile(v, 1, 0.9), 4.0, 1e-12);
}
