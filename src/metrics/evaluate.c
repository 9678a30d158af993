/* evaluate.c: the `tutor eval` pipeline: read a labeled test set, generate with the model
 * (and a baseline on the same inputs), score both and a lead-N baseline the same way, test
 * cross-entropy on the references, exposure bias against an oracle, cost, and paired
 * bootstrap intervals of every difference. Reporting is in evaluate_report.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "metrics/evaluate_internal.h"
#include "metrics/ngram.h"
#include "metrics/pystring.h"
#include "tutor/fileio.h"

enum { LOSS_BATCH_TOKENS = 4096, LOSS_MAX_BATCH = 64 };

void eval_options_default(EvalOptions *o) {
    memset(o, 0, sizeof *o);
    jsonl_options_default(&o->jsonl);
    o->jsonl.require_target = 1;
    o->max_source_tokens = 256;
    o->max_target_tokens = 64;
    o->max_new_tokens = 64;
    o->beam = 1;
    o->length_penalty = 1.0;
    gen_flags_init(&o->gen);
    o->batch_size = 32;
    o->resamples = 1000;
    o->seed = 12345;
    o->speed = 1;
    o->speed_examples = 50;
    o->threads = 1;
}

char *lead_words(const char *text, int n_words) {
    size_t len = strlen(text);
    char *out = malloc(len + 1);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    int words = 0;
    while (i < len && words < n_words) {
        /* skip whitespace, then copy one word (Python str.split(): Unicode whitespace) */
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) k = 1, c = 0xFFFD;
        if (py_isspace((uint32_t)c)) {
            i += (size_t)k;
            continue;
        }
        if (words) out[o++] = ' ';
        while (i < len) {
            k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
            if (k <= 0) k = 1, c = 0xFFFD;
            if (py_isspace((uint32_t)c)) break;
            memcpy(out + o, text + i, (size_t)k);
            o += (size_t)k, i += (size_t)k;
        }
        words++;
    }
    out[o] = 0;
    return out;
}

/* ---- scoring one system ---- */

static void system_free(EvalSystem *s, size_t n) {
    if (s->hyps)
        for (size_t i = 0; i < n; i++) free(s->hyps[i]);
    free(s->hyps);
    free(s->name);
    free(s->dir);
    free(s->rouge);
    free(s->sentence_bleu);
    free(s->bleu_stats);
    free(s->chrf_stats);
    free(s->hyp_words);
    free(s->ref_words);
    free(s->repeats);
    free(s->nll_sum);
    free(s->nll_tokens);
    memset(s, 0, sizeof *s);
}

static int system_init(EvalSystem *s, const char *name, const char *dir, size_t n) {
    memset(s, 0, sizeof *s);
    size_t m = n ? n : 1;
    s->name = strdup(name);
    s->dir = dir ? strdup(dir) : NULL;
    s->hyps = calloc(m, sizeof *s->hyps);
    if (!s->name || (dir && !s->dir) || !s->hyps) return tt_err("out of memory");
    return 0;
}

static int score_system(EvalSystem *s, const char *const *refs, size_t n, int stem, const BleuOptions *bo,
                        const ChrfOptions *co) {
    size_t m = n ? n : 1;
    s->rouge = malloc(m * sizeof *s->rouge);
    s->sentence_bleu = malloc(m * sizeof *s->sentence_bleu);
    s->bleu_stats = malloc(m * sizeof *s->bleu_stats);
    s->chrf_stats = malloc(m * sizeof *s->chrf_stats);
    s->hyp_words = malloc(m * sizeof *s->hyp_words);
    s->ref_words = malloc(m * sizeof *s->ref_words);
    s->repeats = malloc(m * sizeof *s->repeats);
    if (!s->rouge || !s->sentence_bleu || !s->bleu_stats || !s->chrf_stats || !s->hyp_words || !s->ref_words ||
        !s->repeats)
        return tt_err("out of memory");
    const char *const *h = (const char *const *)s->hyps;
    const char *const *rr[1] = {refs};
    const char *const *const *ref_sets = rr;
    if (rouge_corpus(h, ref_sets, 1, n, stem, s->rouge, &s->rouge_mean)) return tt_err_wrap("%s: ROUGE", s->name);
    if (bleu_corpus(h, ref_sets, 1, n, bo, &s->bleu) || bleu_corpus_stats(h, ref_sets, 1, n, bo, s->bleu_stats, NULL))
        return tt_err_wrap("%s: BLEU", s->name);
    if (chrf_corpus(h, ref_sets, 1, n, co, &s->chrf) || chrf_corpus_stats(h, ref_sets, 1, n, co, s->chrf_stats, NULL))
        return tt_err_wrap("%s: chrF", s->name);
    BleuOptions so;
    bleu_options_sentence(&so);
    so.lowercase = bo->lowercase;
    so.tokenize = bo->tokenize;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        BleuResult br;
        TextStats ts;
        if (bleu_sentence(h[i], &refs[i], 1, &so, &br)) return tt_err_wrap("%s: sentence BLEU", s->name);
        s->sentence_bleu[i] = br.score;
        sum += br.score;
        if (text_stats(&h[i], &refs[i], 1, &ts)) return tt_err_wrap("%s: text statistics", s->name);
        s->hyp_words[i] = ts.hyp_tokens;
        s->ref_words[i] = ts.ref_tokens;
        s->repeats[i] = ts.n_immediate_repeat > 0;
    }
    s->sentence_bleu_mean = n ? sum / (double)n : 0;
    if (text_stats(h, refs, n, &s->text)) return tt_err_wrap("%s: text statistics", s->name);
    return 0;
}

/* ---- distinct-n under resampling ---- */

/* Each output's n-grams (order 1 or 2, over whitespace tokens) as dense ids. */
typedef struct {
    size_t *off;   /* (n + 1) */
    uint32_t *ids;
    size_t n_ids;  /* distinct n-grams */
} NgramIds;

static void ngram_ids_free(NgramIds *g) {
    free(g->off);
    free(g->ids);
    memset(g, 0, sizeof *g);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int ngram_ids_build(char *const *hyps, size_t n, int order, NgramIds *g) {
    memset(g, 0, sizeof *g);
    TokenTable t;
    token_table_init(&t);
    SymbolSeq seq = {0};
    uint64_t *keys = NULL, *uniq = NULL;
    size_t n_keys = 0, cap = 0;
    int rc = 0;
    g->off = calloc(n + 1, sizeof *g->off);
    if (!g->off) rc = tt_err("out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        seq.n = 0;
        if (split_whitespace_ids(hyps[i], strlen(hyps[i]), &t, &seq)) {
            rc = -1;
            break;
        }
        for (size_t k = (size_t)order - 1; k < seq.n; k++) {
            if (n_keys == cap) {
                cap = cap ? 2 * cap : 1024;
                uint64_t *p = realloc(keys, cap * sizeof *p);
                if (!p) {
                    rc = tt_err("out of memory");
                    break;
                }
                keys = p;
            }
            keys[n_keys++] = order == 1 ? seq.v[k] : ((uint64_t)seq.v[k - 1] << 32) | seq.v[k];
        }
        g->off[i + 1] = n_keys;
    }
    if (!rc) {
        uniq = malloc((n_keys ? n_keys : 1) * sizeof *uniq);
        g->ids = malloc((n_keys ? n_keys : 1) * sizeof *g->ids);
        if (!uniq || !g->ids) rc = tt_err("out of memory");
    }
    if (!rc) {
        if (n_keys) memcpy(uniq, keys, n_keys * sizeof *uniq);
        qsort(uniq, n_keys, sizeof *uniq, cmp_u64);
        size_t u = 0;
        for (size_t k = 0; k < n_keys; k++)
            if (k == 0 || uniq[k] != uniq[u - 1]) uniq[u++] = uniq[k];
        g->n_ids = u;
        for (size_t k = 0; k < n_keys; k++) {
            uint64_t *p = bsearch(&keys[k], uniq, u, sizeof *uniq, cmp_u64);
            g->ids[k] = (uint32_t)(p - uniq);
        }
    }
    free(keys);
    free(uniq);
    symbol_seq_free(&seq);
    token_table_free(&t);
    if (rc) ngram_ids_free(g);
    return rc;
}

/* distinct / total over the outputs draw[0..n) (with repeats); stamp (n_ids) marks seen ids
 * with the value mark. */
static double distinct_of(const NgramIds *g, const uint32_t *draw, size_t n, uint32_t *stamp, uint32_t mark) {
    size_t distinct = 0, total = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = draw ? draw[k] : k;
        for (size_t j = g->off[i]; j < g->off[i + 1]; j++) {
            total++;
            if (stamp[g->ids[j]] != mark) stamp[g->ids[j]] = mark, distinct++;
        }
    }
    return total ? (double)distinct / (double)total : 0;
}

/* The paired bootstrap of bootstrap_paired (same draws from the same seed, same percentile
 * indices) for distinct-n, which is not a sum of per-example statistics. */
static int bootstrap_paired_distinct(const NgramIds *a, const NgramIds *b, size_t n, int n_resamples, uint64_t seed,
                                     BootstrapResult *out) {
    memset(out, 0, sizeof *out);
    if (n == 0) return tt_err("bootstrap: no examples");
    if (n_resamples <= 0) n_resamples = 1000;
    uint32_t *draw = malloc(n * sizeof *draw);
    uint32_t *stamp_a = calloc(a->n_ids ? a->n_ids : 1, sizeof *stamp_a);
    uint32_t *stamp_b = calloc(b->n_ids ? b->n_ids : 1, sizeof *stamp_b);
    double *deltas = malloc((size_t)n_resamples * sizeof *deltas);
    int rc = 0;
    if (!draw || !stamp_a || !stamp_b || !deltas) {
        rc = tt_err("out of memory");
        goto done;
    }
    out->delta = distinct_of(b, NULL, n, stamp_b, 1) - distinct_of(a, NULL, n, stamp_a, 1);
    Rng rng;
    rng_seed(&rng, seed);
    for (int r = 0; r < n_resamples; r++) {
        for (size_t k = 0; k < n; k++) draw[k] = rng_below(&rng, (uint32_t)n);
        deltas[r] = distinct_of(b, draw, n, stamp_b, (uint32_t)r + 2) - distinct_of(a, draw, n, stamp_a, (uint32_t)r + 2);
    }
    bootstrap_summarize(deltas, n_resamples, seed, out);
    /* A resample repeats outputs, and a repeated output adds to the totals but not to the
     * distinct set: distinct-n is biased low under resampling, the more diverse system more.
     * The percentile interval is shifted by that bias (mean of the resampled deltas minus the
     * full-sample delta), the bootstrap's bias correction, so that it brackets the estimate. */
    double bias = out->mean - out->delta;
    out->lo -= bias;
    out->hi -= bias;
done:
    free(draw);
    free(stamp_a);
    free(stamp_b);
    free(deltas);
    return rc;
}

/* ---- differences model - baseline ---- */

static double ratio_metric(const double *v, size_t dim, const void *ctx) { return v[1] > 0 ? v[0] / v[1] : 0; }

static EvalDiff *next_diff(EvalReport *r, const char *key, const char *label) {
    EvalDiff *d = &r->diffs[r->n_diffs++];
    d->key = key;
    d->label = label;
    return d;
}

static int compute_diffs(EvalReport *r) {
    const EvalSystem *a = &r->baseline, *b = &r->model;
    size_t n = r->n;
    int R = r->opt.resamples;
    uint64_t seed = r->opt.seed;
    double *va = malloc(2 * n * sizeof *va), *vb = malloc(2 * n * sizeof *vb);
    int rc = va && vb ? 0 : tt_err("out of memory");
    static const char *keys[4] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};
    static const char *labels[4] = {"ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "ROUGE-Lsum F"};
    for (int k = 0; k < 4 && !rc; k++) {
        for (size_t i = 0; i < n; i++) {
            const RougeScore *sa[4] = {&a->rouge[i].rouge1, &a->rouge[i].rouge2, &a->rouge[i].rougeL, &a->rouge[i].rougeLsum};
            const RougeScore *sb[4] = {&b->rouge[i].rouge1, &b->rouge[i].rouge2, &b->rouge[i].rougeL, &b->rouge[i].rougeLsum};
            va[i] = 100 * sa[k]->fmeasure;
            vb[i] = 100 * sb[k]->fmeasure;
        }
        rc = bootstrap_paired_mean(va, vb, n, R, seed, &next_diff(r, keys[k], labels[k])->r);
    }
    if (!rc) rc = bootstrap_paired_bleu(a->bleu_stats, b->bleu_stats, n, &r->bleu_opt, R, seed, &next_diff(r, "bleu", "BLEU")->r);
    if (!rc) rc = bootstrap_paired_chrf(a->chrf_stats, b->chrf_stats, n, &r->chrf_opt, R, seed, &next_diff(r, "chrf", "chrF2")->r);
    if (!rc) rc = bootstrap_paired_mean(a->sentence_bleu, b->sentence_bleu, n, R, seed,
                                        &next_diff(r, "sentence_bleu", "sentence BLEU")->r);
    if (!rc && a->has_loss && b->has_loss) {
        for (size_t i = 0; i < n; i++) {
            va[2 * i] = a->nll_sum[i], va[2 * i + 1] = (double)a->nll_tokens[i];
            vb[2 * i] = b->nll_sum[i], vb[2 * i + 1] = (double)b->nll_tokens[i];
        }
        rc = bootstrap_paired(va, vb, n, 2, ratio_metric, NULL, R, seed, &next_diff(r, "test_xent", "test xent")->r);
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) {
            va[2 * i] = (double)a->hyp_words[i], va[2 * i + 1] = (double)a->ref_words[i];
            vb[2 * i] = (double)b->hyp_words[i], vb[2 * i + 1] = (double)b->ref_words[i];
        }
        rc = bootstrap_paired(va, vb, n, 2, ratio_metric, NULL, R, seed, &next_diff(r, "length_ratio", "length ratio")->r);
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) va[i] = 100.0 * a->repeats[i], vb[i] = 100.0 * b->repeats[i];
        rc = bootstrap_paired_mean(va, vb, n, R, seed, &next_diff(r, "repeat_share", "repeats %")->r);
    }
    static const char *dkeys[2] = {"distinct1", "distinct2"}, *dlabels[2] = {"distinct-1", "distinct-2"};
    for (int order = 1; order <= 2 && !rc; order++) {
        NgramIds ga, gb;
        rc = ngram_ids_build(a->hyps, n, order, &ga);
        if (!rc) {
            rc = ngram_ids_build(b->hyps, n, order, &gb);
            if (!rc) {
                rc = bootstrap_paired_distinct(&ga, &gb, n, R, seed, &next_diff(r, dkeys[order - 1], dlabels[order - 1])->r);
                ngram_ids_free(&gb);
            }
            ngram_ids_free(&ga);
        }
    }
    free(va);
    free(vb);
    return rc;
}

/* ---- generation and losses of one model ---- */

static void free_token_lists(int **tokens, size_t n) {
    if (!tokens) return;
    for (size_t i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
}

/* Generates for every pair of ps; texts into s->hyps; tokens kept when keep_tokens. */
static int generate_system(Model *m, const char *dir, const Tokenizer *tok, const PairSet *ps, size_t n, int greedy,
                           const EvalOptions *o, EvalSystem *s, int ***keep_tokens, int **keep_lens) {
    GenConfig g;
    if (eval_quality_gen_config(&m->cfg, dir, o, &g)) return tt_err_wrap("%s", dir);
    if (greedy) g.num_beams = 1, g.do_sample = 0; /* exposure bias: greedy free-running prefixes */
    int beam = g.num_beams;
    gen_config_limit_to_tokenizer(&g, &m->cfg, tok);
    Generator *gen = generator_new(m, &g, o->batch_size, pairset_max_source(ps, n));
    if (!gen) return tt_err_wrap("%s", dir);
    int **tokens = calloc(n ? n : 1, sizeof *tokens);
    int *lens = calloc(n ? n : 1, sizeof *lens);
    int rc = tokens && lens ? 0 : tt_err("out of memory");
    char what[96];
    snprintf(what, sizeof what, "%s (%s)", s->name, beam > 1 ? "beam" : "greedy");
    if (!rc)
        rc = eval_generate_pairs(gen, ps, n, o->batch_size, tokens, lens, &s->gen_tokens, &s->gen_seconds, o->progress,
                                 what, o->progress_ctx);
    for (size_t i = 0; i < n && !rc; i++) {
        s->hyps[i] = tokenizer_decode(tok, tokens[i], (size_t)lens[i], 1, NULL);
        if (!s->hyps[i]) rc = tt_err_wrap("decoding output %zu of %s", i + 1, s->name);
    }
    generator_free(gen);
    if (!rc && keep_tokens) {
        *keep_tokens = tokens;
        *keep_lens = lens;
    } else {
        free_token_lists(tokens, n);
        free(lens);
    }
    return rc;
}

static int system_losses(Model *m, const PairSet *ps, EvalSystem *s) {
    size_t n = ps->n;
    s->test_xent = evaluate_loss(m, ps, LOSS_BATCH_TOKENS, LOSS_MAX_BATCH, &s->test_tokens);
    if (s->test_tokens < 0) return tt_err_wrap("%s: test cross-entropy", s->name);
    if (!isfinite(s->test_xent)) return tt_err("%s: test cross-entropy is not finite", s->name);
    long total = pairset_target_tokens(ps);
    double *nll = malloc(sizeof(double) * (size_t)(total ? total : 1));
    s->nll_sum = calloc(n ? n : 1, sizeof *s->nll_sum);
    s->nll_tokens = calloc(n ? n : 1, sizeof *s->nll_tokens);
    int rc = nll && s->nll_sum && s->nll_tokens ? 0 : tt_err("out of memory");
    if (!rc) rc = teacher_forced_token_stats(NULL, m, ps, LOSS_BATCH_TOKENS, LOSS_MAX_BATCH, NULL, nll);
    long pos = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        for (int t = 0; t < ps->items[i].tgt_len; t++) s->nll_sum[i] += nll[pos + t];
        s->nll_tokens[i] = ps->items[i].tgt_len;
        pos += ps->items[i].tgt_len;
    }
    free(nll);
    if (!rc) s->has_loss = 1;
    return rc;
}

/* ---- the run ---- */

static int load_config(const char *dir, ModelConfig *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!file_exists(path)) return tt_err("%s: not a model directory (no config.json)", dir);
    return model_config_load(c, path);
}

void eval_report_free(EvalReport *r) {
    for (size_t i = 0; i < r->n; i++) {
        if (r->ids) free(r->ids[i]);
        if (r->sources) free(r->sources[i]);
        if (r->refs) free(r->refs[i]);
    }
    free(r->ids);
    free(r->sources);
    free(r->refs);
    system_free(&r->model, r->n);
    system_free(&r->baseline, r->n);
    system_free(&r->lead, r->n);
    exposure_bias_free(&r->exposure);
    free(r->exposure_oracle);
    memset(r, 0, sizeof *r);
}

/* Source tokens every model involved can take: an encoder-decoder's positions bound the
 * source; a decoder-only model's hold the prompt and the target together. */
/* The reference tokens scored (cross-entropy, exposure bias) must fit the model's positions:
 * an encoder-decoder's target all of them, a decoder-only model's target beside a source of
 * at least 3 tokens. Longer references are cut for scoring only (ROUGE and BLEU see them
 * whole). */
static int target_budget(int budget, const ModelConfig *c) {
    int cap = model_is_encdec(c) ? c->max_positions : c->max_positions - 3;
    return cap < budget ? cap : budget;
}

static int source_budget(int budget, const ModelConfig *c, const EvalOptions *o, int tgt_budget) {
    int cap = c->max_positions;
    if (!model_is_encdec(c)) {
        int tgt = tgt_budget > o->max_new_tokens ? tgt_budget : o->max_new_tokens;
        cap = c->max_positions - tgt;
    }
    return cap < budget ? cap : budget;
}

typedef struct {
    const char *dir;
    const char *role;       /* "model", "baseline", "oracle" */
    ModelConfig cfg;
    Tokenizer *tok;
    PairSet ps;
    Model *m;
} Side;

static void side_free(Side *s) {
    tokenizer_free(s->tok);
    pairset_free(&s->ps);
    model_free(s->m);
    memset(s, 0, sizeof *s);
}

static int side_open(Side *s, const char *dir, const char *role) {
    memset(s, 0, sizeof *s);
    s->dir = dir;
    s->role = role;
    if (load_config(dir, &s->cfg)) return tt_err_wrap("%s", role);
    s->tok = tokenizer_load(dir);
    if (!s->tok) return tt_err_wrap("%s", role);
    if (tokenizer_vocab_size(s->tok) > s->cfg.vocab_size)
        return tt_err("%s: the tokenizer has %d ids but the model's vocabulary only %d", dir,
                      tokenizer_vocab_size(s->tok), s->cfg.vocab_size);
    return 0;
}

static int side_load_model(Side *s) {
    if (s->m) return 0;
    s->m = model_load(s->dir);
    return s->m ? 0 : tt_err_wrap("%s", s->role);
}

int eval_run(const EvalOptions *o_in, EvalReport *r) {
    memset(r, 0, sizeof *r);
    r->opt = *o_in;
    EvalOptions *o = &r->opt;
    double t_start = tt_now_s();
    if (!o->model_dir || !o->data_path) return tt_err("eval: a model directory and a data file are needed");
    {
        /* the model's own decoding, with the flags over it */
        ModelConfig mc;
        GenConfig g;
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", o->model_dir);
        if (!file_exists(path)) return tt_err("%s: not a model directory (no config.json)", o->model_dir);
        if (model_config_load(&mc, path) || eval_quality_gen_config(&mc, o->model_dir, o, &g))
            return tt_err_wrap("%s", o->model_dir);
        o->beam = g.num_beams;
        o->length_penalty = g.length_penalty;
        o->no_repeat_ngram = g.no_repeat_ngram_size;
        if (g.max_new_tokens > o->max_new_tokens) o->max_new_tokens = g.max_new_tokens;
    }
    if (o->speed_beam < 2) o->speed_beam = o->beam > 1 ? o->beam : 4;
    if (o->batch_size < 1) o->batch_size = 32;
    if (o->max_target_tokens < 2 || o->max_new_tokens < 1) return tt_err("eval: token budgets too small");
    if (o->exposure_max_len <= 0) o->exposure_max_len = o->max_target_tokens;
    if (o->threads < 1) o->threads = 1;
    bleu_options_default(&r->bleu_opt);
    chrf_options_default(&r->chrf_opt);

    Side sides[3]; /* model, baseline, oracle */
    memset(sides, 0, sizeof sides);
    Side *sm = &sides[0], *sb = &sides[1], *so = &sides[2];
    Dataset ds = {0};
    int **free_tokens = NULL, *free_lens = NULL;
    PairSet free_run = {0};
    int rc = -1;
    size_t n_examples = 0; /* for cleanup: r is emptied on failure */

    /* data and tokenizers */
    JsonlOptions jo = o->jsonl;
    jo.require_target = 1;
    if (dataset_load_jsonl(&ds, o->data_path, &jo, o->max_examples)) goto done;
    if (ds.n == 0) {
        tt_err("%s: no examples", o->data_path);
        goto done;
    }
    r->n = n_examples = ds.n;
    if (side_open(sm, o->model_dir, "model")) goto done;
    if (o->baseline_dir && side_open(sb, o->baseline_dir, "baseline")) goto done;
    if (o->oracle_dir) {
        if (side_open(so, o->oracle_dir, "oracle")) goto done;
        if (tokenizers_check_same(sm->tok, o->model_dir, so->tok, o->oracle_dir)) goto done;
        if (sm->cfg.vocab_size != so->cfg.vocab_size) {
            tt_err("%s and %s do not share a vocabulary: %d ids against %d", o->model_dir, o->oracle_dir,
                   sm->cfg.vocab_size, so->cfg.vocab_size);
            goto done;
        }
    }
    int tbudget = o->max_target_tokens, budget = o->max_source_tokens;
    for (int k = 0; k < 3; k++)
        if (sides[k].dir) tbudget = target_budget(tbudget, &sides[k].cfg);
    for (int k = 0; k < 3; k++) {
        /* a decoder-only model holds source and target in one sequence: when the budgets do
         * not fit its positions, the target and new-token budgets give way, keeping at least
         * half of the positions (or the source budget, if smaller) for the source */
        const ModelConfig *c = &sides[k].cfg;
        if (!sides[k].dir || model_is_encdec(c)) continue;
        int keep = o->max_source_tokens < c->max_positions / 2 ? o->max_source_tokens : c->max_positions / 2;
        int room = c->max_positions - (keep > 3 ? keep : 3);
        if (room >= 2 && (tbudget > room || o->max_new_tokens > room)) {
            if (tbudget > room) tbudget = room;
            if (o->max_new_tokens > room) o->max_new_tokens = room;
            tt_info("eval: %s has %d positions: references scored up to %d tokens, at most %d new tokens", sides[k].dir,
                    c->max_positions, tbudget, o->max_new_tokens);
        }
    }
    for (int k = 0; k < 3; k++)
        if (sides[k].dir) budget = source_budget(budget, &sides[k].cfg, o, tbudget);
    if (budget < 3) {
        tt_err("eval: no room for a source: the models have too few positions");
        goto done;
    }
    r->source_budget = budget;
    for (int k = 0; k < 2; k++)
        if (sides[k].dir && pairset_build(&sides[k].ps, &ds, sides[k].tok, budget, tbudget, 0)) goto done;
    r->ids = calloc(r->n, sizeof *r->ids);
    r->sources = calloc(r->n, sizeof *r->sources);
    r->refs = calloc(r->n, sizeof *r->refs);
    if (!r->ids || !r->sources || !r->refs) {
        tt_err("out of memory");
        goto done;
    }
    for (size_t i = 0; i < r->n; i++) {
        r->ids[i] = ds.items[i].id, ds.items[i].id = NULL;
        r->sources[i] = ds.items[i].source, ds.items[i].source = NULL;
        r->refs[i] = ds.items[i].target, ds.items[i].target = NULL;
    }
    tt_info("eval: %zu examples from %s (sources cut to %d tokens, references to %d for scoring)", r->n,
            o->data_path, budget, tbudget);

    /* peak memory first, while no model is resident in this process */
    if (o->speed) {
        for (int k = 0; k < 2; k++) {
            if (!sides[k].dir) continue;
            int n = o->speed_examples < (int)r->n ? o->speed_examples : (int)r->n;
            const int **src = malloc(sizeof(int *) * (size_t)n);
            int *len = malloc(sizeof(int) * (size_t)n);
            int bad = !src || !len;
            for (int i = 0; i < n && !bad; i++) src[i] = sides[k].ps.items[i].src, len[i] = sides[k].ps.items[i].src_len;
            EvalCost *c = k ? &r->cost_baseline : &r->cost_model;
            tt_info("eval: peak memory of the %s (a child process loads it and generates)", sides[k].role);
            bad = bad ? tt_err("out of memory")
                      : eval_measure_memory(sides[k].dir, (const int *const *)src, len, n, o->batch_size,
                                            o->max_new_tokens, o->speed_beam, &c->peak_rss_bytes, &c->base_rss_bytes);
            free(src);
            free(len);
            if (bad) goto done;
        }
    }
    tt_set_threads(o->threads);
    if (side_load_model(sm) || (sb->dir && side_load_model(sb))) goto done;
    if (o->int8 && model_q8_load_dir(sm->m, sm->dir)) goto done;
    r->has_baseline = sb->dir != NULL && !o->baseline_speed_only;
    if (o->speed &&
        eval_measure_speed(sm->m, sm->dir, &sm->ps, sb->m, sb->dir, sb->dir ? &sb->ps : NULL, o, &r->cost_model,
                           &r->cost_baseline))
        goto done;
    if (o->speed_only) {
        r->speed_only = 1;
        r->has_baseline = 0;
        r->seconds = tt_now_s() - t_start;
        rc = 0;
        goto done;
    }

    /* outputs */
    if (system_init(&r->model, "model", o->model_dir, r->n)) goto done;
    r->model.n_params = sm->m->n_params;
    int keep = o->oracle_dir && o->beam == 1;
    if (generate_system(sm->m, sm->dir, sm->tok, &sm->ps, r->n, 0, o, &r->model, keep ? &free_tokens : NULL,
                        keep ? &free_lens : NULL))
        goto done;
    if (r->has_baseline) {
        if (system_init(&r->baseline, "baseline", o->baseline_dir, r->n)) goto done;
        r->baseline.n_params = sb->m->n_params;
        if (generate_system(sb->m, sb->dir, sb->tok, &sb->ps, r->n, 0, o, &r->baseline, NULL, NULL)) goto done;
    }
    if (o->lead > 0) {
        char name[32];
        snprintf(name, sizeof name, "lead-%d", o->lead);
        if (system_init(&r->lead, name, NULL, r->n)) goto done;
        for (size_t i = 0; i < r->n; i++)
            if (!(r->lead.hyps[i] = lead_words(r->sources[i], o->lead))) {
                tt_err("out of memory");
                goto done;
            }
        r->has_lead = 1;
    }

    /* scores */
    tt_info("eval: scoring (ROUGE, BLEU, chrF, sentence BLEU, text statistics)");
    const char *const *refs = (const char *const *)r->refs;
    if (score_system(&r->model, refs, r->n, o->use_stemmer, &r->bleu_opt, &r->chrf_opt)) goto done;
    if (r->has_baseline && score_system(&r->baseline, refs, r->n, o->use_stemmer, &r->bleu_opt, &r->chrf_opt)) goto done;
    if (r->has_lead && score_system(&r->lead, refs, r->n, o->use_stemmer, &r->bleu_opt, &r->chrf_opt)) goto done;
    {
        EvalSystem *systems[3] = {&r->model, r->has_baseline ? &r->baseline : NULL, r->has_lead ? &r->lead : NULL};
        for (int k = 0; k < 3; k++) {
            if (!systems[k]) continue;
            size_t copies = 0;
            for (size_t i = 0; i < r->n; i++) {
                long run = longest_copied_run(systems[k]->hyps[i], r->sources[i]);
                if (run < 0) {
                    tt_err("out of memory");
                    goto done;
                }
                copies += run >= 6;
            }
            systems[k]->copy6_share = r->n ? (double)copies / (double)r->n : 0;
        }
    }
    tt_info("eval: test cross-entropy (teacher-forced on the references)");
    if (system_losses(sm->m, &sm->ps, &r->model)) goto done;
    if (r->has_baseline && system_losses(sb->m, &sb->ps, &r->baseline)) goto done;

    /* exposure bias against the oracle */
    if (o->oracle_dir) {
        Model *oracle = NULL;
        if (sb->dir && !strcmp(sb->dir, so->dir)) {
            oracle = sb->m;
        } else {
            if (side_load_model(so)) goto done;
            oracle = so->m;
        }
        if (!keep) {
            tt_info("eval: greedy outputs of the model for exposure bias");
            EvalSystem tmp;
            if (system_init(&tmp, "model", o->model_dir, r->n)) goto done;
            int bad = generate_system(sm->m, sm->dir, sm->tok, &sm->ps, r->n, 1, o, &tmp, &free_tokens, &free_lens);
            system_free(&tmp, r->n);
            if (bad) goto done;
        }
        tt_info("eval: exposure bias against %s (L = %d)", o->oracle_dir, o->exposure_max_len);
        if (pairset_with_targets(&free_run, &sm->ps, (const int *const *)free_tokens, free_lens)) goto done;
        if (exposure_bias_compute(oracle, sm->m, &sm->ps, &free_run, o->exposure_max_len, LOSS_BATCH_TOKENS,
                                  LOSS_MAX_BATCH, &r->exposure))
            goto done;
        r->has_exposure = 1;
        r->exposure_oracle = strdup(o->oracle_dir);
    }

    if (r->has_baseline) {
        tt_info("eval: paired bootstrap (%d resamples) of model - baseline", o->resamples);
        if (compute_diffs(r)) goto done;
    }
    r->seconds = tt_now_s() - t_start;
    rc = 0;
done:
    free_token_lists(free_tokens, n_examples);
    free(free_lens);
    pairset_free(&free_run);
    for (int k = 0; k < 3; k++) side_free(&sides[k]);
    dataset_free(&ds);
    if (rc) eval_report_free(r);
    return rc;
}
