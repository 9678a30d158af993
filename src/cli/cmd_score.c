/* cmd_score.c: `tutor score`: ROUGE (rouge-score conventions), BLEU and chrF (sacreBLEU
 * conventions) and length/repetition statistics of hypotheses against references, read
 * from text files (one example per line) or JSONL fields; optionally a paired bootstrap
 * against a baseline's outputs. All computing is in the library (metrics.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/data.h"
#include "tutor/fileio.h"
#include "tutor/metrics.h"

#define MAX_REF_FILES 16

static void score_usage(FILE *f) {
    fprintf(f,
            "usage: tutor score --hyp FILE --ref FILE [--ref FILE ...] [options]\n"
            "\n"
            "Scores hypotheses against references: ROUGE-1/2/L/Lsum F (as rouge-score 0.1.2),\n"
            "corpus BLEU and chrF (as sacreBLEU 2.6.0, with their signatures), output/reference\n"
            "length ratio, immediate repetitions and distinct-1/2.\n"
            "\n"
            "Files hold one example per line, or are JSONL (a .jsonl name or a --*-field option):\n"
            "one object per line, the text in a field. ROUGE-Lsum splits sentences at newlines,\n"
            "which only JSONL texts can hold. Several --ref files give several references.\n"
            "\n"
            "options:\n"
            "  --hyp FILE          hypotheses (system outputs)\n"
            "  --ref FILE          references; repeat for more references per example\n"
            "  --hyp-field NAME    JSONL field of the hypotheses (default \"prediction\")\n"
            "  --ref-field NAME    JSONL field of the references (default \"target\")\n"
            "  --lowercase         lowercased BLEU (sacreBLEU -lc); ROUGE always lowercases\n"
            "  --stem              Porter stemming for ROUGE (rouge-score use_stemmer=True)\n"
            "  --baseline FILE     a baseline's outputs (same format as --hyp): paired bootstrap\n"
            "                      95%% intervals of (hyp - baseline) for every metric\n"
            "  --resamples N       bootstrap resamples (default 1000)\n"
            "  --seed N            bootstrap seed (default 12345)\n"
            "  --json FILE         also write every number, and per-example scores, as JSON\n"
            "  -h, --help          this help\n");
}

/* One column of texts: from a text file (one per line) or a JSONL field. */
typedef struct {
    char **text;
    size_t n;
} Texts;

static void texts_free(Texts *t) {
    for (size_t i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
    memset(t, 0, sizeof *t);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static size_t first_invalid_utf8(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) return i;
        i += (size_t)k;
    }
    return n;
}

static int texts_push(Texts *t, char *s, size_t *cap) {
    if (t->n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        char **v = realloc(t->text, *cap * sizeof *v);
        if (!v) {
            free(s);
            return tt_err("out of memory");
        }
        t->text = v;
    }
    t->text[t->n++] = s;
    return 0;
}

static int read_text_lines(const char *path, Texts *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return tt_err("%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0, vcap = 0, lineno = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        if (n && line[n - 1] == '\n') n--;
        if (n && line[n - 1] == '\r') n--;
        line[n] = 0;
        if (memchr(line, 0, n)) {
            rc = tt_err("%s:%zu: NUL byte in the line", path, lineno);
            break;
        }
        size_t bad = first_invalid_utf8(line, n);
        if (bad < n) {
            rc = tt_err("%s:%zu: invalid UTF-8 at byte %zu", path, lineno, bad + 1);
            break;
        }
        char *copy = strdup(line);
        if (!copy || texts_push(out, copy, &vcap)) {
            rc = tt_err("out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc) texts_free(out);
    return rc;
}

static int read_jsonl_field(const char *path, const char *field, Texts *out) {
    memset(out, 0, sizeof *out);
    JsonlOptions opt;
    jsonl_options_default(&opt);
    /* The wanted field is read as the "source": the one field the reader requires. */
    opt.source_field = field;
    opt.target_field = field;
    opt.require_target = 0;
    Dataset ds;
    if (dataset_load_jsonl(&ds, path, &opt, 0)) return -1;
    out->text = calloc(ds.n ? ds.n : 1, sizeof *out->text);
    if (!out->text) {
        dataset_free(&ds);
        return tt_err("out of memory");
    }
    for (size_t i = 0; i < ds.n; i++) {
        out->text[i] = ds.items[i].source;
        ds.items[i].source = NULL;
    }
    out->n = ds.n;
    dataset_free(&ds);
    return 0;
}

static int read_texts(const char *path, const char *field, int force_jsonl, Texts *out) {
    if (force_jsonl || ends_with(path, ".jsonl")) return read_jsonl_field(path, field, out);
    return read_text_lines(path, out);
}

/* Everything computed for one system. */
typedef struct {
    RougeScores *rouge;    /* per example */
    RougeScores rouge_mean;
    BleuStats *bleu_stats; /* per example */
    BleuResult bleu;
    ChrfStats *chrf_stats;
    ChrfResult chrf;
    TextStats text;
} SystemScores;

static void system_scores_free(SystemScores *s) {
    free(s->rouge);
    free(s->bleu_stats);
    free(s->chrf_stats);
    memset(s, 0, sizeof *s);
}

static int score_system(const Texts *hyp, const char *const *const *refs, int n_refs, int stem,
                        const BleuOptions *bopt, const ChrfOptions *copt, SystemScores *s) {
    size_t n = hyp->n;
    const char *const *h = (const char *const *)hyp->text;
    memset(s, 0, sizeof *s);
    s->rouge = malloc((n ? n : 1) * sizeof *s->rouge);
    s->bleu_stats = malloc((n ? n : 1) * sizeof *s->bleu_stats);
    s->chrf_stats = malloc((n ? n : 1) * sizeof *s->chrf_stats);
    if (!s->rouge || !s->bleu_stats || !s->chrf_stats) return tt_err("out of memory");
    if (rouge_corpus(h, refs, n_refs, n, stem, s->rouge, &s->rouge_mean)) return tt_err_wrap("ROUGE");
    if (bleu_corpus(h, refs, n_refs, n, bopt, &s->bleu)) return tt_err_wrap("BLEU");
    if (bleu_corpus_stats(h, refs, n_refs, n, bopt, s->bleu_stats, NULL)) return tt_err_wrap("BLEU");
    if (chrf_corpus(h, refs, n_refs, n, copt, &s->chrf)) return tt_err_wrap("chrF");
    if (chrf_corpus_stats(h, refs, n_refs, n, copt, s->chrf_stats, NULL)) return tt_err_wrap("chrF");
    if (text_stats(h, refs[0], n, &s->text)) return tt_err_wrap("text statistics");
    return 0;
}

typedef struct {
    const char *name;
    BootstrapResult r;
} Comparison;

enum { N_COMPARISONS = 6 };

static int compare_systems(const SystemScores *base, const SystemScores *sys, size_t n,
                           const BleuOptions *bopt, const ChrfOptions *copt, int resamples,
                           uint64_t seed, Comparison *cmp) {
    double *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return tt_err("out of memory");
    }
    static const char *names[4] = {"ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "ROUGE-Lsum F"};
    int rc = 0;
    for (int m = 0; m < 4 && rc == 0; m++) {
        for (size_t i = 0; i < n; i++) {
            const RougeScore *ra[4] = {&base->rouge[i].rouge1, &base->rouge[i].rouge2,
                                       &base->rouge[i].rougeL, &base->rouge[i].rougeLsum};
            const RougeScore *rb[4] = {&sys->rouge[i].rouge1, &sys->rouge[i].rouge2,
                                       &sys->rouge[i].rougeL, &sys->rouge[i].rougeLsum};
            a[i] = 100 * ra[m]->fmeasure;
            b[i] = 100 * rb[m]->fmeasure;
        }
        cmp[m].name = names[m];
        rc = bootstrap_paired_mean(a, b, n, resamples, seed, &cmp[m].r);
    }
    free(a);
    free(b);
    if (rc) return -1;
    cmp[4].name = "BLEU";
    if (bootstrap_paired_bleu(base->bleu_stats, sys->bleu_stats, n, bopt, resamples, seed, &cmp[4].r))
        return -1;
    cmp[5].name = sys->chrf.name;
    return bootstrap_paired_chrf(base->chrf_stats, sys->chrf_stats, n, copt, resamples, seed, &cmp[5].r);
}

static void print_table(const SystemScores *s, size_t n, int n_refs, const Comparison *cmp) {
    char line[512];
    printf("tutor score: %zu examples, %d reference%s each\n\n", n, n_refs, n_refs == 1 ? "" : "s");
    printf("%-14s %8s%s\n", "metric", "score", cmp ? "   vs baseline: delta [95% interval]" : "");
    const double values[6] = {100 * s->rouge_mean.rouge1.fmeasure, 100 * s->rouge_mean.rouge2.fmeasure,
                              100 * s->rouge_mean.rougeL.fmeasure, 100 * s->rouge_mean.rougeLsum.fmeasure,
                              s->bleu.score, s->chrf.score};
    const char *names[6] = {"ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "ROUGE-Lsum F", "BLEU", s->chrf.name};
    for (int m = 0; m < 6; m++) {
        printf("%-14s %8.2f", names[m], values[m]);
        if (cmp)
            printf("   %+7.2f [%+.2f, %+.2f]  B better in %.1f%%", cmp[m].r.delta, cmp[m].r.lo,
                   cmp[m].r.hi, 100 * cmp[m].r.share_b_better);
        printf("\n");
    }
    printf("%-14s %8.3f   (%zu / %zu whitespace tokens)\n", "length ratio", s->text.length_ratio,
           s->text.hyp_tokens, s->text.ref_tokens);
    printf("%-14s %7.1f%%   of outputs repeat a token at once\n", "repeats",
           100 * s->text.immediate_repeat_share);
    printf("%-14s %8.3f / %.3f\n\n", "distinct-1/2", s->text.distinct1, s->text.distinct2);
    bleu_format(&s->bleu, line, sizeof line);
    printf("%s\n", line);
    printf("%s|%s = %.2f\n", s->chrf.name, s->chrf.signature, s->chrf.score);
    printf("ROUGE: rouge-score 0.1.2 conventions; 100 x the mean over examples of F (with several\n"
           "references, the best reference per example and ROUGE type)\n");
}

static cJSON *rouge_json(const RougeScore *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "precision", r->precision);
    cJSON_AddNumberToObject(o, "recall", r->recall);
    cJSON_AddNumberToObject(o, "fmeasure", r->fmeasure);
    return o;
}

static int write_json(const char *path, const SystemScores *s, size_t n, int n_refs, int stem,
                      const Texts *hyp, const char *const *const *refs, const BleuOptions *bopt,
                      const Comparison *cmp) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "n_examples", (double)n);
    cJSON_AddNumberToObject(root, "n_refs", n_refs);
    cJSON *rouge = cJSON_AddObjectToObject(root, "rouge");
    cJSON_AddStringToObject(rouge, "conventions", "rouge-score 0.1.2; mean over examples; scale 0-1");
    cJSON_AddBoolToObject(rouge, "use_stemmer", stem);
    cJSON_AddItemToObject(rouge, "rouge1", rouge_json(&s->rouge_mean.rouge1));
    cJSON_AddItemToObject(rouge, "rouge2", rouge_json(&s->rouge_mean.rouge2));
    cJSON_AddItemToObject(rouge, "rougeL", rouge_json(&s->rouge_mean.rougeL));
    cJSON_AddItemToObject(rouge, "rougeLsum", rouge_json(&s->rouge_mean.rougeLsum));
    cJSON *bleu = cJSON_AddObjectToObject(root, "bleu");
    cJSON_AddNumberToObject(bleu, "score", s->bleu.score);
    cJSON_AddStringToObject(bleu, "signature", s->bleu.signature);
    cJSON *prec = cJSON_AddArrayToObject(bleu, "precisions");
    cJSON *counts = cJSON_AddArrayToObject(bleu, "counts");
    cJSON *totals = cJSON_AddArrayToObject(bleu, "totals");
    for (int k = 0; k < s->bleu.max_ngram_order; k++) {
        cJSON_AddItemToArray(prec, cJSON_CreateNumber(s->bleu.precisions[k]));
        cJSON_AddItemToArray(counts, cJSON_CreateNumber(s->bleu.stats.correct[k]));
        cJSON_AddItemToArray(totals, cJSON_CreateNumber(s->bleu.stats.total[k]));
    }
    cJSON_AddNumberToObject(bleu, "bp", s->bleu.bp);
    cJSON_AddNumberToObject(bleu, "ratio", s->bleu.ratio);
    cJSON_AddNumberToObject(bleu, "sys_len", s->bleu.stats.sys_len);
    cJSON_AddNumberToObject(bleu, "ref_len", s->bleu.stats.ref_len);
    cJSON *chrf = cJSON_AddObjectToObject(root, "chrf");
    cJSON_AddStringToObject(chrf, "name", s->chrf.name);
    cJSON_AddNumberToObject(chrf, "score", s->chrf.score);
    cJSON_AddStringToObject(chrf, "signature", s->chrf.signature);
    cJSON *text = cJSON_AddObjectToObject(root, "text");
    cJSON_AddNumberToObject(text, "length_ratio", s->text.length_ratio);
    cJSON_AddNumberToObject(text, "hyp_tokens", (double)s->text.hyp_tokens);
    cJSON_AddNumberToObject(text, "ref_tokens", (double)s->text.ref_tokens);
    cJSON_AddNumberToObject(text, "mean_hyp_len", s->text.mean_hyp_len);
    cJSON_AddNumberToObject(text, "immediate_repeat_share", s->text.immediate_repeat_share);
    cJSON_AddNumberToObject(text, "distinct1", s->text.distinct1);
    cJSON_AddNumberToObject(text, "distinct2", s->text.distinct2);
    if (cmp) {
        cJSON *b = cJSON_AddObjectToObject(root, "vs_baseline");
        for (int m = 0; m < N_COMPARISONS; m++) {
            cJSON *o = cJSON_AddObjectToObject(b, cmp[m].name);
            cJSON_AddNumberToObject(o, "delta", cmp[m].r.delta);
            cJSON_AddNumberToObject(o, "lo95", cmp[m].r.lo);
            cJSON_AddNumberToObject(o, "hi95", cmp[m].r.hi);
            cJSON_AddNumberToObject(o, "share_better", cmp[m].r.share_b_better);
            cJSON_AddNumberToObject(o, "resamples", cmp[m].r.n_resamples);
            cJSON_AddNumberToObject(o, "seed", (double)cmp[m].r.seed);
        }
    }
    cJSON *per = cJSON_AddArrayToObject(root, "per_example");
    BleuOptions sent = *bopt;
    sent.effective_order = 1;
    const char **these = malloc((size_t)n_refs * sizeof *these);
    int rc = these ? 0 : tt_err("out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rouge1_f", s->rouge[i].rouge1.fmeasure);
        cJSON_AddNumberToObject(o, "rouge2_f", s->rouge[i].rouge2.fmeasure);
        cJSON_AddNumberToObject(o, "rougeL_f", s->rouge[i].rougeL.fmeasure);
        cJSON_AddNumberToObject(o, "rougeLsum_f", s->rouge[i].rougeLsum.fmeasure);
        for (int k = 0; k < n_refs; k++) these[k] = refs[k][i];
        BleuResult sb;
        rc = bleu_sentence(hyp->text[i], these, n_refs, &sent, &sb);
        cJSON_AddNumberToObject(o, "sentence_bleu", sb.score);
        cJSON_AddItemToArray(per, o);
    }
    free(these);
    char *out = rc == 0 ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (rc == 0 && !out) rc = tt_err("out of memory printing JSON");
    if (rc == 0) {
        size_t len = strlen(out);
        out[len] = '\n';
        rc = atomic_write_file(path, out, len + 1);
    }
    free(out);
    return rc;
}

static int parse_count(const char *flag, const char *value, long long min, long long *out) {
    char *end;
    long long v = strtoll(value, &end, 10);
    if (*value == 0 || *end || v < min) return tt_err("%s: '%s' is not a whole number >= %lld", flag, value, min);
    *out = v;
    return 0;
}

int cmd_score(int argc, char **argv) {
    const char *hyp_path = NULL, *baseline_path = NULL, *json_path = NULL;
    const char *ref_paths[MAX_REF_FILES];
    const char *hyp_field = "prediction", *ref_field = "target";
    int n_refs = 0, lowercase = 0, stem = 0, hyp_jsonl = 0, ref_jsonl = 0;
    long long resamples = 1000, seed = 12345;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            score_usage(stdout);
            return 0;
        }
        int takes_value = !strcmp(a, "--hyp") || !strcmp(a, "--ref") || !strcmp(a, "--hyp-field") ||
                          !strcmp(a, "--ref-field") || !strcmp(a, "--baseline") || !strcmp(a, "--json") ||
                          !strcmp(a, "--resamples") || !strcmp(a, "--seed");
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "tutor: score: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--hyp")) {
            hyp_path = argv[++i];
        } else if (!strcmp(a, "--ref")) {
            if (n_refs == MAX_REF_FILES) {
                fprintf(stderr, "tutor: score: at most %d --ref files\n", MAX_REF_FILES);
                return 2;
            }
            ref_paths[n_refs++] = argv[++i];
        } else if (!strcmp(a, "--hyp-field")) {
            hyp_field = argv[++i];
            hyp_jsonl = 1;
        } else if (!strcmp(a, "--ref-field")) {
            ref_field = argv[++i];
            ref_jsonl = 1;
        } else if (!strcmp(a, "--baseline")) {
            baseline_path = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json_path = argv[++i];
        } else if (!strcmp(a, "--resamples") || !strcmp(a, "--seed")) {
            long long *dst = a[2] == 'r' ? &resamples : &seed;
            if (parse_count(a, argv[++i], a[2] == 'r' ? 1 : 0, dst)) {
                fprintf(stderr, "tutor: score: %s\n", tt_errmsg());
                return 2;
            }
        } else if (!strcmp(a, "--lowercase")) {
            lowercase = 1;
        } else if (!strcmp(a, "--stem")) {
            stem = 1;
        } else {
            fprintf(stderr, "tutor: score: unknown option '%s'\n", a);
            score_usage(stderr);
            return 2;
        }
    }
    if (!hyp_path || n_refs == 0) {
        fprintf(stderr, "tutor: score: --hyp and at least one --ref are required\n");
        score_usage(stderr);
        return 2;
    }

    Texts hyp = {0}, base = {0}, refs[MAX_REF_FILES];
    memset(refs, 0, sizeof refs);
    SystemScores sys_scores = {0}, base_scores = {0};
    Comparison cmp[N_COMPARISONS];
    const char **ref_cols[MAX_REF_FILES];
    int status = 1;
    if (read_texts(hyp_path, hyp_field, hyp_jsonl, &hyp)) goto fail;
    for (int k = 0; k < n_refs; k++) {
        if (read_texts(ref_paths[k], ref_field, ref_jsonl, &refs[k])) goto fail;
        if (refs[k].n != hyp.n) {
            tt_err("%s: %zu examples, but %s has %zu", ref_paths[k], refs[k].n, hyp_path, hyp.n);
            goto fail;
        }
        ref_cols[k] = (const char **)refs[k].text;
    }
    if (hyp.n == 0) {
        tt_err("%s: no examples", hyp_path);
        goto fail;
    }
    if (baseline_path) {
        if (read_texts(baseline_path, hyp_field, hyp_jsonl, &base)) goto fail;
        if (base.n != hyp.n) {
            tt_err("%s: %zu examples, but %s has %zu", baseline_path, base.n, hyp_path, hyp.n);
            goto fail;
        }
    }
    BleuOptions bopt;
    bleu_options_default(&bopt);
    bopt.lowercase = lowercase;
    ChrfOptions copt;
    chrf_options_default(&copt);
    const char *const *const *rc = (const char *const *const *)ref_cols;
    if (score_system(&hyp, rc, n_refs, stem, &bopt, &copt, &sys_scores)) {
        tt_err_wrap("%s", hyp_path);
        goto fail;
    }
    if (baseline_path) {
        if (score_system(&base, rc, n_refs, stem, &bopt, &copt, &base_scores)) {
            tt_err_wrap("%s", baseline_path);
            goto fail;
        }
        if (compare_systems(&base_scores, &sys_scores, hyp.n, &bopt, &copt, (int)resamples,
                            (uint64_t)seed, cmp))
            goto fail;
    }
    print_table(&sys_scores, hyp.n, n_refs, baseline_path ? cmp : NULL);
    if (json_path && write_json(json_path, &sys_scores, hyp.n, n_refs, stem, &hyp, rc, &bopt,
                                baseline_path ? cmp : NULL))
        goto fail;
    status = 0;
fail:
    if (status) fprintf(stderr, "tutor: %s\n", tt_errmsg());
    system_scores_free(&sys_scores);
    system_scores_free(&base_scores);
    texts_free(&hyp);
    texts_free(&base);
    for (int k = 0; k < n_refs; k++) texts_free(&refs[k]);
    return status;
}
