/* test_generate.c: generation is right: greedy output of the three Hugging Face fixture models
 * equals HF's own; decoding with the key/value cache gives the tokens and scores of full
 * recomputation; beam size 1 is greedy; beam search with a wide beam finds what exhaustive
 * search finds; log-probabilities are the model's own; results do not depend on batching;
 * the step loop allocates nothing (issue 4). */
#include <cjson/cJSON.h>

#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"
#include "decode/decode_internal.h"

static cJSON *load_json(const char *path) {
    char *text = read_file_text(path, NULL);
    cr_assert(text, "%s", tt_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "bad JSON in %s", path);
    return j;
}

/* The fixture's two input rows without their padding. */
typedef struct {
    Model *m;
    GenConfig g;
    int src[2][16], len[2];
    const int *ptr[2];
} Fix;

static void fix_load(Fix *f, const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES_HF, name);
    f->m = model_load(dir);
    cr_assert(f->m, "%s", tt_errmsg());
    gen_config_from_model(&f->g, &f->m->cfg);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    TEST_ASSERT_OK(gen_config_load(&f->g, path));
    snprintf(path, sizeof path, "%s/inputs.json", dir);
    cJSON *in = load_json(path);
    const cJSON *ids = cJSON_GetObjectItem(in, "input_ids"), *mask = cJSON_GetObjectItem(in, "attention_mask");
    for (int r = 0; r < 2; r++) {
        f->len[r] = 0;
        for (int t = 0; t < cJSON_GetArraySize(cJSON_GetArrayItem(ids, r)); t++)
            if (cJSON_GetArrayItem(cJSON_GetArrayItem(mask, r), t)->valueint)
                f->src[r][f->len[r]++] = cJSON_GetArrayItem(cJSON_GetArrayItem(ids, r), t)->valueint;
        f->ptr[r] = f->src[r];
    }
    cJSON_Delete(in);
}

static const GenOutput *run(Generator **gen, Model *m, const GenConfig *g, int n, const int *const *src,
                            const int *len) {
    *gen = generator_new(m, g, 4, 16);
    cr_assert(*gen, "generator_new: %s", tt_errmsg());
    const GenOutput *out;
    uint64_t stream[4] = {0, 1, 2, 3};
    TEST_ASSERT_OK(generator_run(*gen, n, src, len, stream, &out));
    return out;
}

static void check_hf_greedy(const char *name) {
    Fix f;
    fix_load(&f, name);
    f.g.max_new_tokens = 6;
    Generator *gen;
    const GenOutput *out = run(&gen, f.m, &f.g, 1, f.ptr, f.len);
    char path[320];
    snprintf(path, sizeof path, "%s/%s/expected.json", FIXTURES_HF, name);
    cJSON *ex = load_json(path);
    const cJSON *want = cJSON_GetObjectItem(ex, "greedy_first_row_6_tokens");
    const GenHypothesis *h = &out[0].hyps[0];
    cr_assert_eq(h->n_tokens, cJSON_GetArraySize(want), "%s: %d tokens", name, h->n_tokens);
    for (int t = 0; t < h->n_tokens; t++)
        cr_expect_eq(h->tokens[t], cJSON_GetArrayItem(want, t)->valueint, "%s: token %d is %d, HF %d", name, t,
                     h->tokens[t], cJSON_GetArrayItem(want, t)->valueint);
    cJSON_Delete(ex);
    generator_free(gen);
    model_free(f.m);
}

Test(generate, hf_greedy_bart) { check_hf_greedy("bart"); }
Test(generate, hf_greedy_mbart) { check_hf_greedy("mbart"); }
Test(generate, hf_greedy_gpt2) { check_hf_greedy("gpt2"); }

/* Same tokens; scores and logprobs within tol relative to their size (at least 1): a sum of
 * ten log-probabilities of magnitude ~20 carries float rounding of the order of 1e-6. */
static double expect_same_outputs(const GenOutput *a, const GenOutput *b, int n, double tol, const char *what) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(a[i].n, b[i].n);
        for (int k = 0; k < a[i].n; k++) {
            const GenHypothesis *x = &a[i].hyps[k], *y = &b[i].hyps[k];
            cr_assert_eq(x->n_tokens, y->n_tokens, "%s: input %d result %d: %d vs %d tokens", what, i, k, x->n_tokens,
                         y->n_tokens);
            for (int t = 0; t < x->n_tokens; t++)
                cr_assert_eq(x->tokens[t], y->tokens[t], "%s: input %d result %d token %d: %d vs %d", what, i, k, t,
                             x->tokens[t], y->tokens[t]);
            double dl = fabs(x->logprob - y->logprob) / fmax(1, fabs(y->logprob));
            double ds = fabs(x->score - y->score) / fmax(1, fabs(y->score));
            worst = fmax(worst, fmax(dl, ds));
            cr_expect(dl <= tol, "%s: input %d result %d logprob %.9g vs %.9g", what, i, k, x->logprob, y->logprob);
            cr_expect(ds <= tol, "%s: input %d result %d score %.9g vs %.9g", what, i, k, x->score, y->score);
        }
    }
    return worst;
}

/* The same settings with and without the cache. */
static void check_cached_vs_full(const char *name, int beams, int sample) {
    Fix f;
    fix_load(&f, name);
    f.g.max_new_tokens = 10;
    f.g.forced_eos_id = -1;
    f.g.num_beams = beams;
    f.g.do_sample = sample;
    f.g.num_return_sequences = beams > 1 ? 2 : (sample ? 3 : 1);
    f.g.temperature = 1.3;
    f.g.top_k = 0;
    f.g.seed = 7;
    Generator *g1, *g2;
    const GenOutput *cached = run(&g1, f.m, &f.g, 2, f.ptr, f.len);
    GenConfig full = f.g;
    full.full_recompute = 1;
    const GenOutput *recomputed = run(&g2, f.m, &full, 2, f.ptr, f.len);
    char what[64];
    snprintf(what, sizeof what, "%s beams %d sample %d", name, beams, sample);
    double worst = expect_same_outputs(cached, recomputed, 2, 1e-5, what);
    cr_log_info("%s: same tokens, scores within %.2g (relative)", what, worst);
    generator_free(g1);
    generator_free(g2);
    model_free(f.m);
}

Test(generate, cached_equals_recomputed_greedy) {
    check_cached_vs_full("bart", 1, 0);
    check_cached_vs_full("mbart", 1, 0);
    check_cached_vs_full("gpt2", 1, 0);
}
Test(generate, cached_equals_recomputed_beam) {
    check_cached_vs_full("bart", 3, 0);
    check_cached_vs_full("mbart", 4, 0);
    check_cached_vs_full("gpt2", 3, 0);
}
Test(generate, cached_equals_recomputed_sampling) {
    check_cached_vs_full("bart", 1, 1);
    check_cached_vs_full("mbart", 1, 1);
    check_cached_vs_full("gpt2", 1, 1);
}

Test(generate, beam_one_is_greedy) {
    const char *names[] = {"bart", "mbart", "gpt2"};
    for (int i = 0; i < 3; i++) {
        Fix f;
        fix_load(&f, names[i]);
        f.g.max_new_tokens = 12;
        f.g.forced_eos_id = -1;
        Generator *g1;
        const GenOutput *greedy = run(&g1, f.m, &f.g, 2, f.ptr, f.len);
        /* the beam search path itself, with one beam (HF would take its greedy path) */
        Generator *g2 = generator_new(f.m, &f.g, 4, 16);
        cr_assert(g2);
        generator_use_beam_search(g2);
        const GenOutput *beam1;
        TEST_ASSERT_OK(generator_run(g2, 2, f.ptr, f.len, NULL, &beam1));
        for (int r = 0; r < 2; r++) {
            const GenHypothesis *a = &greedy[r].hyps[0], *b = &beam1[r].hyps[0];
            cr_assert_eq(a->n_tokens, b->n_tokens, "%s input %d", names[i], r);
            for (int t = 0; t < a->n_tokens; t++) cr_expect_eq(a->tokens[t], b->tokens[t]);
            cr_expect(fabs(a->logprob - b->logprob) < 1e-9);
            cr_expect(fabs(b->score - b->logprob / b->n_tokens) < 1e-6, "beam score = logprob / length");
        }
        generator_free(g1);
        generator_free(g2);
        model_free(f.m);
    }
}

/* The model's own log-probability of a result: model_forward over prompt + result. */
static double model_logprob(Model *m, const GenConfig *g, const int *src, int src_len, const int *toks, int n) {
    int seq[64], len = 0;
    Batch b = {0};
    b.B = 1;
    if (model_is_encdec(&m->cfg)) {
        seq[len++] = g->decoder_start_id;
        b.src = src;
        b.S = src_len;
    } else {
        for (int t = 0; t < src_len; t++) seq[len++] = src[t];
    }
    int first = len;
    for (int t = 0; t < n; t++) seq[len++] = toks[t];
    b.T = len - 1;
    b.tgt_in = seq;
    TEST_ASSERT_OK(model_forward(m, &b, 0));
    int V = m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * V);
    double lp = 0;
    for (int t = 0; t < n; t++) {
        model_logits(m, first - 1 + t, 1, logits);
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
        for (int v = 0; v < V; v++) s += exp(logits[v] - mx);
        lp += logits[toks[t]] - mx - log(s);
    }
    free(logits);
    return lp;
}

Test(generate, logprobs_are_the_models_own) {
    const char *names[] = {"bart", "mbart", "gpt2"};
    for (int i = 0; i < 3; i++) {
        Fix f;
        fix_load(&f, names[i]);
        f.g.max_new_tokens = 9;
        f.g.do_sample = 1;
        f.g.temperature = 1.7; /* the score must still be the unmodified distribution's */
        f.g.top_k = 20;
        f.g.repetition_penalty = 1.3;
        f.g.num_return_sequences = 3;
        f.g.seed = 11;
        Generator *gen;
        const GenOutput *out = run(&gen, f.m, &f.g, 2, f.ptr, f.len);
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < 3; k++) {
                const GenHypothesis *h = &out[r].hyps[k];
                cr_assert(h->n_tokens > 0);
                double want = model_logprob(f.m, &f.g, f.src[r], f.len[r], h->tokens, h->n_tokens);
                cr_expect(fabs(h->logprob - want) <= 1e-5 * (1 + fabs(want)), "%s input %d sample %d: %.8f vs model %.8f",
                          names[i], r, k, h->logprob, want);
            }
        generator_free(gen);
        model_free(f.m);
    }
}

/* A tiny random model (vocabulary 6, eos 2) whose every sequence of up to 4 new tokens can be
 * scored: the best by sum_logprobs / len ** length_penalty is what a wide beam must return. */
static Model *tiny_model(Arch arch, uint64_t seed) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.vocab_size = 6;
    c.d_model = 16;
    c.enc_layers = arch == ARCH_GPT2 ? 0 : 1;
    c.dec_layers = 2;
    c.enc_heads = c.dec_heads = 2;
    c.enc_ffn = arch == ARCH_GPT2 ? 0 : 32;
    c.dec_ffn = 32;
    c.max_positions = 16;
    c.dropout = c.attn_dropout = c.act_dropout = 0;
    c.init_std = 0.3;
    if (arch == ARCH_GPT2) c.pad_id = -1;
    Model *m = model_new(&c, seed);
    cr_assert(m, "%s", tt_errmsg());
    return m;
}

typedef struct {
    Model *m;
    const GenConfig *g;
    const int *src;
    int src_len, max_new;
    double best_score, best_lp;
    int best[8], best_n;
} Exhaustive;

static void exhaust(Exhaustive *x, int *toks, int n, double lp) {
    /* lp: log-probability of toks[0..n); expand each continuation */
    int seq[32], len = 0;
    Batch b = {0};
    b.B = 1;
    if (model_is_encdec(&x->m->cfg)) {
        seq[len++] = x->g->decoder_start_id;
        b.src = x->src;
        b.S = x->src_len;
    } else {
        for (int t = 0; t < x->src_len; t++) seq[len++] = x->src[t];
    }
    for (int t = 0; t < n; t++) seq[len++] = toks[t];
    b.T = len;
    b.tgt_in = seq;
    TEST_ASSERT_OK(model_forward(x->m, &b, 0));
    float logits[6];
    model_logits(x->m, len - 1, 1, logits);
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < 6; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int v = 0; v < 6; v++) s += exp(logits[v] - mx);
    for (int v = 0; v < 6; v++) {
        double l = lp + logits[v] - mx - log(s);
        toks[n] = v;
        if (v == x->g->eos_id || n + 1 == x->max_new) {
            double score = l / pow(n + 1, x->g->length_penalty);
            if (score > x->best_score) {
                x->best_score = score;
                x->best_lp = l;
                x->best_n = n + 1;
                memcpy(x->best, toks, sizeof(int) * (n + 1));
            }
        } else {
            exhaust(x, toks, n + 1, l);
        }
    }
}

/* Returns 1 when the best sequence ends with eos. */
static int check_exhaustive(Arch arch, double length_penalty, uint64_t seed) {
    Model *m = tiny_model(arch, seed);
    GenConfig g;
    gen_config_from_model(&g, &m->cfg);
    g.forced_eos_id = -1;
    g.max_new_tokens = 4;
    g.num_beams = 300; /* wider than the 5^3 = 125 open prefixes of the last step */
    g.length_penalty = length_penalty;
    g.early_stopping = EARLY_STOP_NEVER;
    int src[4] = {0, 3, 4, 2};
    int src_len = arch == ARCH_GPT2 ? 2 : 4;
    const int *srcp = arch == ARCH_GPT2 ? src + 1 : src;
    Generator *gen = generator_new(m, &g, 1, 4);
    cr_assert(gen, "%s", tt_errmsg());
    const GenOutput *out;
    TEST_ASSERT_OK(generator_run(gen, 1, &srcp, &src_len, NULL, &out));
    Exhaustive x = {m, &g, srcp, src_len, 4, -INFINITY, 0, {0}, 0};
    int toks[8];
    exhaust(&x, toks, 0, 0);
    const GenHypothesis *h = &out[0].hyps[0];
    cr_log_info("arch %d lp %.1f: exhaustive best score %.6f (%d tokens), beam %.6f (%d tokens)", arch, length_penalty,
                x.best_score, x.best_n, h->score, h->n_tokens);
    cr_assert_eq(h->n_tokens, x.best_n);
    for (int t = 0; t < x.best_n; t++) cr_expect_eq(h->tokens[t], x.best[t]);
    cr_expect(fabs(h->score - x.best_score) < 1e-5, "score %.7f vs %.7f", h->score, x.best_score);
    cr_expect(fabs(h->logprob - x.best_lp) < 1e-5);
    int ends_eos = x.best[x.best_n - 1] == g.eos_id;
    generator_free(gen);
    model_free(m);
    return ends_eos;
}

Test(generate, wide_beam_finds_the_exhaustive_best) {
    const Arch archs[] = {ARCH_BART, ARCH_MBART, ARCH_GPT2};
    const double penalties[] = {0.0, 1.0, 2.0, -0.5};
    int eos_best = 0, cases = 0;
    for (int a = 0; a < 3; a++)
        for (int p = 0; p < 4; p++)
            for (uint64_t seed = 1; seed <= 3; seed++, cases++) eos_best += check_exhaustive(archs[a], penalties[p], seed + 10 * p);
    cr_log_info("%d of %d best sequences end with eos", eos_best, cases);
    cr_expect(eos_best > 0 && eos_best < cases, "both kinds of best sequence are covered");
}

Test(generate, batching_does_not_change_results) {
    Fix f;
    fix_load(&f, "gpt2");
    f.g.max_new_tokens = 8;
    f.g.do_sample = 1;
    f.g.top_k = 0;
    f.g.top_p = 0.9;
    f.g.num_return_sequences = 2;
    f.g.seed = 3;
    Generator *gen = generator_new(f.m, &f.g, 2, 16);
    cr_assert(gen);
    const GenOutput *out;
    uint64_t streams[2] = {40, 41};
    TEST_ASSERT_OK(generator_run(gen, 2, f.ptr, f.len, streams, &out));
    int both[2][2][16], nboth[2][2];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
            nboth[i][k] = out[i].hyps[k].n_tokens;
            memcpy(both[i][k], out[i].hyps[k].tokens, sizeof(int) * nboth[i][k]);
        }
    TEST_ASSERT_OK(generator_run(gen, 1, f.ptr + 1, f.len + 1, streams + 1, &out));
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(out[0].hyps[k].n_tokens, nboth[1][k]);
        for (int t = 0; t < nboth[1][k]; t++) cr_expect_eq(out[0].hyps[k].tokens[t], both[1][k][t]);
    }
    /* and another stream gives other samples */
    uint64_t other = 99;
    TEST_ASSERT_OK(generator_run(gen, 1, f.ptr + 1, f.len + 1, &other, &out));
    int same = out[0].hyps[0].n_tokens == nboth[1][0];
    for (int t = 0; same && t < nboth[1][0]; t++) same = out[0].hyps[0].tokens[t] == both[1][0][t];
    cr_expect(!same, "stream 99 repeated stream 41's sample");
    generator_free(gen);
    model_free(f.m);
}

Test(generate, step_loop_allocates_nothing) {
    Fix f;
    fix_load(&f, "mbart");
    f.g.max_new_tokens = 12;
    f.g.num_beams = 3;
    Generator *gen = generator_new(f.m, &f.g, 2, 16);
    cr_assert(gen);
    const GenOutput *out;
    TEST_ASSERT_OK(generator_run(gen, 2, f.ptr, f.len, NULL, &out));
    uint64_t before = tt_alloc_count();
    TEST_ASSERT_OK(generator_run(gen, 2, f.ptr, f.len, NULL, &out));
    TEST_ASSERT_OK(generator_run(gen, 1, f.ptr + 1, f.len + 1, NULL, &out));
    cr_expect_eq(tt_alloc_count(), before, "%llu allocations", (unsigned long long)(tt_alloc_count() - before));
    generator_free(gen);
    model_free(f.m);
}

Test(generate, min_and_max_new_tokens) {
    Fix f;
    fix_load(&f, "bart");
    f.g.max_new_tokens = 9;
    f.g.min_new_tokens = 9;
    f.g.forced_eos_id = -1;
    Generator *gen;
    const GenOutput *out = run(&gen, f.m, &f.g, 2, f.ptr, f.len);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(out[i].hyps[0].n_tokens, 9);
        for (int t = 0; t < 9; t++) cr_expect_neq(out[i].hyps[0].tokens[t], 2, "eos before min_new_tokens");
    }
    generator_free(gen);
    /* forced eos: the last allowed token is eos */
    f.g.min_new_tokens = 0;
    f.g.forced_eos_id = 2;
    f.g.max_new_tokens = 5;
    out = run(&gen, f.m, &f.g, 2, f.ptr, f.len);
    for (int i = 0; i < 2; i++) {
        const GenHypothesis *h = &out[i].hyps[0];
        cr_expect(h->n_tokens <= 5);
        cr_expect_eq(h->tokens[h->n_tokens - 1], 2);
    }
    generator_free(gen);
    model_free(f.m);
}

Test(generate, no_repeat_ngram_and_repetition_penalty) {
    Fix f;
    fix_load(&f, "bart");
    /* greedy BART repeats token 188; a 2-gram ban must break that */
    f.g.max_new_tokens = 12;
    f.g.forced_eos_id = -1;
    f.g.no_repeat_ngram_size = 2;
    Generator *gen;
    const GenOutput *out = run(&gen, f.m, &f.g, 2, f.ptr, f.len);
    for (int i = 0; i < 2; i++) {
        const GenHypothesis *h = &out[i].hyps[0];
        int seq[32], n = 0;
        seq[n++] = 2;
        for (int t = 0; t < h->n_tokens; t++) seq[n++] = h->tokens[t];
        for (int a = 0; a + 1 < n; a++)
            for (int b = a + 1; b + 1 < n; b++)
                cr_expect(!(seq[a] == seq[b] && seq[a + 1] == seq[b + 1]), "2-gram (%d %d) repeated", seq[a], seq[a + 1]);
    }
    generator_free(gen);
    f.g.no_repeat_ngram_size = 0;
    f.g.repetition_penalty = 1e6; /* any repeat is then all but impossible */
    out = run(&gen, f.m, &f.g, 1, f.ptr, f.len);
    const GenHypothesis *h = &out[0].hyps[0];
    for (int a = 0; a < h->n_tokens; a++)
        for (int b = a + 1; b < h->n_tokens; b++) cr_expect_neq(h->tokens[a], h->tokens[b]);
    generator_free(gen);
    model_free(f.m);
}
