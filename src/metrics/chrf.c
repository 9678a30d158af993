/* chrf.c: chrF and chrF++ exactly as sacreBLEU 2.6.0 computes them (metrics/chrf.py,
 * metrics/helpers.py): character n-grams over code points with whitespace removed, word
 * n-grams after its punctuation splitter, per segment the statistics of the reference
 * with the best sentence chrF, and its two smoothing modes (effective order by default,
 * or chrF++.py's epsilon). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/ngram.h"
#include "metrics/pystring.h"
#include "tutor/core.h"
#include "tutor/metrics.h"

#define SACREBLEU_VERSION "2.6.0"

void chrf_options_default(ChrfOptions *opt) {
    opt->char_order = 6;
    opt->word_order = 0;
    opt->beta = 2;
    opt->lowercase = 0;
    opt->whitespace = 0;
    opt->eps_smoothing = 0;
}

static int chrf_check_options(const ChrfOptions *opt) {
    if (opt->char_order < 0 || opt->word_order < 0 ||
        opt->char_order + opt->word_order > CHRF_MAX_ORDER_LIMIT || opt->char_order + opt->word_order < 1)
        return tt_err("chrf: orders (char %d, word %d) outside 1..%d in total", opt->char_order,
                      opt->word_order, CHRF_MAX_ORDER_LIMIT);
    return 0;
}

/* string.punctuation, which chrF's word splitter peels off word ends. */
static int is_ascii_punct(uint32_t c) {
    return c < 0x80 && c > 0x20 && c != 0x7f &&
           !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
}

/* One text, ready for matching: code points for character n-grams, word ids for word
 * n-grams, and the n-gram sets of every order (characters first). */
typedef struct {
    uint32_t *chars;
    size_t n_chars;
    SymbolSeq words;
    NgramSet sets[CHRF_MAX_ORDER_LIMIT];
    int n_sets;
} ChrfText;

static void chrf_text_free(ChrfText *x) {
    free(x->chars);
    symbol_seq_free(&x->words);
    for (int k = 0; k < x->n_sets; k++) ngram_set_free(&x->sets[k]);
    memset(x, 0, sizeof *x);
}

/* sacreBLEU's _remove_punctuation: whitespace words; a word longer than one character
 * with a punctuation mark at its end (else at its start) is split in two. */
static int chrf_words(const uint32_t *cps, size_t n, TokenTable *t, SymbolSeq *out) {
    char *buf = malloc(n * 4 + 1);
    if (!buf) return tt_err("out of memory");
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        while (i < n && py_isspace(cps[i])) i++;
        size_t s = i;
        while (i < n && !py_isspace(cps[i])) i++;
        if (i == s) break;
        size_t parts[3] = {s, i, i}, n_parts = 1;
        if (i - s > 1) {
            if (is_ascii_punct(cps[i - 1])) {
                parts[1] = i - 1, parts[2] = i, n_parts = 2;
            } else if (is_ascii_punct(cps[s])) {
                parts[1] = s + 1, parts[2] = i, n_parts = 2;
            }
        }
        for (size_t p = 0; p < n_parts && rc == 0; p++) {
            size_t a = parts[p], b = parts[p + 1], o = 0;
            for (size_t k = a; k < b; k++) o += utf8_put(buf + o, cps[k]);
            int64_t id = token_table_intern(t, buf, o);
            if (id < 0 || symbol_seq_push(out, (uint32_t)id)) rc = -1;
        }
    }
    free(buf);
    return rc;
}

static int chrf_text_build(const char *text, const ChrfOptions *opt, TokenTable *t, ChrfText *x) {
    memset(x, 0, sizeof *x);
    size_t len = strlen(text);
    uint32_t *cps;
    size_t n;
    if (opt->lowercase) {
        char *low = py_lower_utf8(text, len);
        if (!low) return -1;
        int rc = utf8_to_codepoints(low, strlen(low), &cps, &n);
        free(low);
        if (rc) return -1;
    } else if (utf8_to_codepoints(text, len, &cps, &n)) {
        return -1;
    }
    x->chars = cps;
    x->n_chars = n;
    if (opt->word_order > 0 && chrf_words(cps, n, t, &x->words)) return -1;
    if (!opt->whitespace) { /* ''.join(line.split()) */
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!py_isspace(cps[i])) cps[m++] = cps[i];
        x->n_chars = m;
    }
    for (int k = 0; k < opt->char_order; k++, x->n_sets++)
        if (ngram_set_build(&x->sets[x->n_sets], x->chars, x->n_chars, (size_t)k + 1)) return -1;
    for (int k = 0; k < opt->word_order; k++, x->n_sets++)
        if (ngram_set_build(&x->sets[x->n_sets], x->words.v, x->words.n, (size_t)k + 1)) return -1;
    return 0;
}

double chrf_from_stats(const ChrfStats *s, const ChrfOptions *opt) {
    const double eps = 1e-16;
    int order = opt->char_order + opt->word_order, effective_order = 0;
    double factor = (double)opt->beta * opt->beta, score = 0, avg_prec = 0, avg_rec = 0;
    for (int i = 0; i < order; i++) {
        double n_hyp = s->hyp[i], n_ref = s->ref[i], n_match = s->match[i];
        double prec = n_hyp > 0 ? n_match / n_hyp : eps;
        double rec = n_ref > 0 ? n_match / n_ref : eps;
        double denom = factor * prec + rec;
        score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
        if (n_hyp > 0 && n_ref > 0) {
            avg_prec += prec;
            avg_rec += rec;
            effective_order++;
        }
    }
    if (opt->eps_smoothing) return 100 * score / order;
    if (effective_order == 0) {
        avg_prec = avg_rec = 0.0;
    } else {
        avg_prec /= effective_order;
        avg_rec /= effective_order;
    }
    if (avg_prec + avg_rec == 0) return 0.0;
    score = (1 + factor) * avg_prec * avg_rec;
    score /= (factor * avg_prec) + avg_rec;
    return 100 * score;
}

int chrf_segment_stats(const char *hyp, const char *const *refs, int n_refs,
                       const ChrfOptions *opt, ChrfStats *out) {
    memset(out, 0, sizeof *out);
    if (chrf_check_options(opt)) return -1;
    TokenTable t;
    token_table_init(&t);
    ChrfText h, r;
    memset(&r, 0, sizeof r);
    int rc = -1, n_present = 0;
    double best_f = -1.0;
    if (chrf_text_build(hyp, opt, &t, &h)) {
        tt_err_wrap("hypothesis");
        goto done;
    }
    for (int k = 0; k < n_refs; k++) {
        if (!refs[k]) continue;
        n_present++;
        if (chrf_text_build(refs[k], opt, &t, &r)) {
            tt_err_wrap("reference %d", k + 1);
            goto done;
        }
        ChrfStats s;
        memset(&s, 0, sizeof s);
        for (int i = 0; i < h.n_sets; i++) {
            /* A hypothesis n-gram of an order the reference lacks counts for nothing. */
            s.hyp[i] = r.sets[i].count > 0 ? (double)h.sets[i].count : 0;
            s.ref[i] = (double)r.sets[i].count;
            s.match[i] = (double)ngram_set_overlap(&h.sets[i], &r.sets[i]);
        }
        double f = chrf_from_stats(&s, opt);
        if (f > best_f) {
            best_f = f;
            *out = s;
        }
        chrf_text_free(&r);
    }
    if (n_present == 0) {
        tt_err("chrf: a segment has no reference");
        goto done;
    }
    rc = 0;
done:
    chrf_text_free(&h);
    chrf_text_free(&r);
    token_table_free(&t);
    return rc;
}

typedef struct {
    const ChrfOptions *opt;
    ChrfStats *stats;
} ChrfStatsJob;

static int chrf_one_segment(const char *hyp, const char **refs, int n_refs, size_t i, void *ctx) {
    ChrfStatsJob *j = ctx;
    return chrf_segment_stats(hyp, refs, n_refs, j->opt, &j->stats[i]);
}

int chrf_corpus_stats(const char *const *hyps, const char *const *const *refs, int n_refs,
                      size_t n, const ChrfOptions *opt, ChrfStats *stats, int *nrefs) {
    ChrfStatsJob j = {opt, stats};
    return corpus_for_each_segment(hyps, refs, n_refs, n, "chrf", chrf_one_segment, &j, nrefs);
}

void chrf_signature(const ChrfOptions *opt, int nrefs, char *buf, size_t size) {
    char nr[16];
    if (nrefs < 0) snprintf(nr, sizeof nr, "var");
    else snprintf(nr, sizeof nr, "%d", nrefs);
    snprintf(buf, size, "nrefs:%s|case:%s|eff:%s|nc:%d|nw:%d|space:%s|version:%s", nr,
             opt->lowercase ? "lc" : "mixed", opt->eps_smoothing ? "no" : "yes", opt->char_order,
             opt->word_order, opt->whitespace ? "yes" : "no", SACREBLEU_VERSION);
}

static void chrf_fill_names(const ChrfOptions *opt, int nrefs, ChrfResult *out) {
    int o = snprintf(out->name, sizeof out->name, "chrF%d", opt->beta);
    for (int k = 0; k < opt->word_order && o + 1 < (int)sizeof out->name; k++) out->name[o++] = '+';
    out->name[o < (int)sizeof out->name ? o : (int)sizeof out->name - 1] = 0;
    out->nrefs = nrefs;
    chrf_signature(opt, nrefs, out->signature, sizeof out->signature);
}

int chrf_corpus(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                const ChrfOptions *opt, ChrfResult *out) {
    memset(out, 0, sizeof *out);
    if (chrf_check_options(opt)) return -1;
    ChrfStats *stats = malloc((n ? n : 1) * sizeof *stats);
    if (!stats) return tt_err("out of memory for %zu segments", n);
    int nrefs;
    if (chrf_corpus_stats(hyps, refs, n_refs, n, opt, stats, &nrefs)) {
        free(stats);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < CHRF_MAX_ORDER_LIMIT; k++) {
            out->stats.hyp[k] += stats[i].hyp[k];
            out->stats.ref[k] += stats[i].ref[k];
            out->stats.match[k] += stats[i].match[k];
        }
    free(stats);
    out->score = chrf_from_stats(&out->stats, opt);
    chrf_fill_names(opt, nrefs, out);
    return 0;
}

int chrf_sentence(const char *hyp, const char *const *refs, int n_refs, const ChrfOptions *opt,
                  ChrfResult *out) {
    ChrfOptions defaults;
    if (!opt) {
        chrf_options_default(&defaults);
        opt = &defaults;
    }
    memset(out, 0, sizeof *out);
    if (chrf_segment_stats(hyp, refs, n_refs, opt, &out->stats)) return -1;
    out->score = chrf_from_stats(&out->stats, opt);
    int m = 0;
    for (int k = 0; k < n_refs; k++) m += refs[k] != NULL;
    chrf_fill_names(opt, m, out);
    return 0;
}
