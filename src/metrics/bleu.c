/* bleu.c: BLEU exactly as sacreBLEU 2.6.0 computes it (metrics/bleu.py, tokenizer_13a.py,
 * tokenizer_re.py): the mteval-v13a tokenizer with Python re.sub's left-to-right,
 * non-overlapping matching, n-gram counts clipped by the maximum over references, the
 * closest reference length (ties to the shorter), the four smoothing methods, effective
 * order for sentence BLEU, and the reproducibility signature. MT papers report these. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "metrics/ngram.h"
#include "metrics/pystring.h"
#include "tutor/core.h"
#include "tutor/metrics.h"

#define SACREBLEU_VERSION "2.6.0"

void bleu_options_default(BleuOptions *opt) {
    opt->lowercase = 0;
    opt->tokenize = BLEU_TOKENIZE_13A;
    opt->smooth = BLEU_SMOOTH_EXP;
    opt->smooth_value = -1;
    opt->max_ngram_order = 4;
    opt->effective_order = 0;
}

void bleu_options_sentence(BleuOptions *opt) {
    bleu_options_default(opt);
    opt->effective_order = 1;
}

static int bleu_check_options(const BleuOptions *opt) {
    if (opt->max_ngram_order < 1 || opt->max_ngram_order > BLEU_MAX_ORDER_LIMIT)
        return tt_err("bleu: max n-gram order %d outside 1..%d", opt->max_ngram_order,
                      BLEU_MAX_ORDER_LIMIT);
    return 0;
}

/* ------------------------------------------------------------ tokenizer (13a) */

/* A growable byte string. */
typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) return tt_err("out of memory for %zu bytes", cap);
    b->s = s;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const char *s, size_t k) {
    if (buf_reserve(b, k)) return -1;
    memcpy(b->s + b->n, s, k);
    b->n += k;
    b->s[b->n] = 0;
    return 0;
}

static int buf_addc(Buf *b, char c) { return buf_add(b, &c, 1); }

/* Python's str.replace(from, to): every non-overlapping occurrence, left to right. */
static int replace_all(Buf *b, const char *from, const char *to) {
    size_t fn = strlen(from), tn = strlen(to);
    if (!b->s || !strstr(b->s, from)) return 0;
    Buf out = {0};
    const char *p = b->s, *hit;
    while ((hit = strstr(p, from))) {
        if (buf_add(&out, p, (size_t)(hit - p)) || buf_add(&out, to, tn)) {
            free(out.s);
            return -1;
        }
        p = hit + fn;
    }
    if (buf_add(&out, p, strlen(p))) {
        free(out.s);
        return -1;
    }
    free(b->s);
    *b = out;
    return 0;
}

/* tokenizer_re's first rule: every ASCII punctuation or symbol except ' , - . gets a space
 * on each side ([\{-\~\[-\` -\&\(-\+\:-\@\/]). */
static int is_13a_split_char(unsigned char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* One pass of re.sub for a two-character pattern: where first(s[i]) and second(s[i+1])
 * hold, writes the replacement and resumes after both, as re.sub does. Working on bytes
 * is exact: both classes are ASCII or "anything else", and a multi-byte character never
 * has an ASCII byte inside it. */
typedef enum { RE_NONDIGIT_THEN_PUNCT, RE_PUNCT_THEN_NONDIGIT, RE_DIGIT_THEN_DASH } PairRule;

static int apply_pair_rule(Buf *b, PairRule rule) {
    Buf out = {0};
    if (buf_reserve(&out, b->n * 2)) return -1;
    size_t i = 0;
    while (i < b->n) {
        unsigned char a = (unsigned char)b->s[i];
        unsigned char c = i + 1 < b->n ? (unsigned char)b->s[i + 1] : 0;
        int has_next = i + 1 < b->n, hit = 0;
        if (has_next) {
            switch (rule) {
            case RE_NONDIGIT_THEN_PUNCT: hit = !is_digit(a) && (c == '.' || c == ','); break;
            case RE_PUNCT_THEN_NONDIGIT: hit = (a == '.' || a == ',') && !is_digit(c); break;
            case RE_DIGIT_THEN_DASH: hit = is_digit(a) && c == '-'; break;
            }
        }
        if (!hit) {
            if (buf_addc(&out, (char)a)) goto fail;
            i++;
            continue;
        }
        char rep[4];
        if (rule == RE_PUNCT_THEN_NONDIGIT) { /* r' \1 \2' */
            rep[0] = ' ', rep[1] = (char)a, rep[2] = ' ', rep[3] = (char)c;
        } else { /* r'\1 \2 ' */
            rep[0] = (char)a, rep[1] = ' ', rep[2] = (char)c, rep[3] = ' ';
        }
        if (buf_add(&out, rep, 4)) goto fail;
        i += 2;
    }
    free(b->s);
    *b = out;
    return 0;
fail:
    free(out.s);
    return -1;
}

/* ' '.join(line.split()) with Python's whitespace. */
static int normalize_spaces(Buf *b) {
    Buf out = {0};
    if (buf_reserve(&out, b->n)) return -1;
    size_t i = 0, start = 0;
    int in_tok = 0;
    while (i <= b->n) {
        uint32_t c = ' ';
        size_t k = 1;
        if (i < b->n) {
            c = (unsigned char)b->s[i];
            if (c >= 0x80) {
                utf8proc_int32_t cp;
                utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)b->s + i,
                                                      (utf8proc_ssize_t)(b->n - i), &cp);
                if (r <= 0) {
                    free(out.s);
                    return tt_err("invalid UTF-8 at byte %zu", i);
                }
                c = (uint32_t)cp;
                k = (size_t)r;
            }
        }
        int sp = py_isspace(c);
        if (sp && in_tok) {
            if ((out.n && buf_addc(&out, ' ')) || buf_add(&out, b->s + start, i - start)) {
                free(out.s);
                return -1;
            }
            in_tok = 0;
        } else if (!sp && !in_tok) {
            in_tok = 1;
            start = i;
        }
        i += k;
    }
    if (buf_reserve(&out, 0)) return -1;
    out.s[out.n] = 0;
    free(b->s);
    *b = out;
    return 0;
}

/* Python's str.rstrip(): the length without trailing whitespace. */
static size_t rstrip_len(const char *s, size_t len) {
    size_t i = 0, end = 0;
    while (i < len) {
        utf8proc_int32_t c = (unsigned char)s[i];
        utf8proc_ssize_t k = 1;
        if (c >= 0x80) k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) return len; /* validated before; cannot happen */
        i += (size_t)k;
        if (!py_isspace((uint32_t)c)) end = i;
    }
    return end;
}

static int tokenize_13a(Buf *b) {
    if (replace_all(b, "<skipped>", "") || replace_all(b, "-\n", "") || replace_all(b, "\n", " "))
        return -1;
    if (b->s && strchr(b->s, '&')) {
        if (replace_all(b, "&quot;", "\"") || replace_all(b, "&amp;", "&") ||
            replace_all(b, "&lt;", "<") || replace_all(b, "&gt;", ">"))
            return -1;
    }
    /* f' {line} ', then the first regex: isolate punctuation and symbols. */
    Buf out = {0};
    /* Both added spaces are in the class too: each becomes three spaces. */
    if (buf_reserve(&out, b->n * 3 + 6) || buf_add(&out, "   ", 3)) goto fail;
    for (size_t i = 0; i < b->n; i++) {
        unsigned char c = (unsigned char)b->s[i];
        if (is_13a_split_char(c)) {
            char rep[3] = {' ', (char)c, ' '};
            if (buf_add(&out, rep, 3)) goto fail;
        } else if (buf_addc(&out, (char)c)) {
            goto fail;
        }
    }
    if (buf_add(&out, "   ", 3)) goto fail;
    free(b->s);
    *b = out;
    if (apply_pair_rule(b, RE_NONDIGIT_THEN_PUNCT) || apply_pair_rule(b, RE_PUNCT_THEN_NONDIGIT) ||
        apply_pair_rule(b, RE_DIGIT_THEN_DASH))
        return -1;
    return normalize_spaces(b);
fail:
    free(out.s);
    return -1;
}

char *bleu_preprocess(const char *segment, const BleuOptions *opt) {
    size_t len = strlen(segment);
    Buf b = {0};
    if (opt->lowercase) {
        char *low = py_lower_utf8(segment, len);
        if (!low) return NULL;
        b.s = low;
        b.n = strlen(low);
        b.cap = b.n + 1;
    } else {
        if (utf8_validate(segment, len) || buf_add(&b, segment, len)) {
            free(b.s);
            return NULL;
        }
    }
    if (!b.s && buf_reserve(&b, 0)) return NULL;
    b.n = rstrip_len(b.s, b.n);
    b.s[b.n] = 0;
    if (opt->tokenize == BLEU_TOKENIZE_13A && tokenize_13a(&b)) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ------------------------------------------------------------ statistics */

int bleu_segment_stats(const char *hyp, const char *const *refs, int n_refs,
                       const BleuOptions *opt, BleuStats *out) {
    memset(out, 0, sizeof *out);
    if (bleu_check_options(opt)) return -1;
    int max_order = opt->max_ngram_order, rc = -1, n_present = 0;
    TokenTable t;
    token_table_init(&t);
    SymbolSeq hs = {0};
    SymbolSeq *rs = calloc((size_t)(n_refs > 0 ? n_refs : 1), sizeof *rs);
    uint32_t *best = NULL, *cnt = NULL;
    NgramSet hg = {0}, rg = {0};
    if (!rs) return tt_err("out of memory");
    char *h = bleu_preprocess(hyp, opt);
    if (!h) {
        tt_err_wrap("hypothesis");
        goto done;
    }
    int split_rc = split_whitespace_ids(h, strlen(h), &t, &hs);
    free(h);
    if (split_rc) goto done;
    for (int k = 0; k < n_refs; k++) {
        if (!refs[k]) continue;
        char *r = bleu_preprocess(refs[k], opt);
        if (!r) {
            tt_err_wrap("reference %d", k + 1);
            goto done;
        }
        split_rc = split_whitespace_ids(r, strlen(r), &t, &rs[n_present]);
        free(r);
        if (split_rc) goto done;
        n_present++;
    }
    if (n_present == 0) {
        tt_err("bleu: a segment has no reference");
        goto done;
    }
    /* Closest reference length; on a tie the shorter one. */
    long closest = -1, closest_diff = -1, hyp_len = (long)hs.n;
    for (int k = 0; k < n_present; k++) {
        long len = (long)rs[k].n, diff = labs(hyp_len - len);
        if (closest_diff == -1 || diff < closest_diff) {
            closest_diff = diff;
            closest = len;
        } else if (diff == closest_diff && len < closest) {
            closest = len;
        }
    }
    out->sys_len = (double)hyp_len;
    out->ref_len = (double)closest;
    best = malloc((hs.n + 1) * sizeof *best);
    cnt = malloc((hs.n + 1) * sizeof *cnt);
    if (!best || !cnt) {
        tt_err("out of memory");
        goto done;
    }
    for (int order = 1; order <= max_order; order++) {
        if (ngram_set_build(&hg, hs.v, hs.n, (size_t)order)) goto done;
        memset(best, 0, (hs.n + 1) * sizeof *best);
        for (int k = 0; k < n_present; k++) {
            if (ngram_set_build(&rg, rs[k].v, rs[k].n, (size_t)order)) goto done;
            ngram_set_counts_in(&hg, &rg, cnt);
            for (size_t u = 0; u < hg.n_runs; u++)
                if (cnt[u] > best[u]) best[u] = cnt[u];
            ngram_set_free(&rg);
        }
        double correct = 0;
        for (size_t u = 0; u < hg.n_runs; u++)
            correct += hg.run_count[u] < best[u] ? hg.run_count[u] : best[u];
        out->correct[order - 1] = correct;
        out->total[order - 1] = (double)hg.count;
        ngram_set_free(&hg);
    }
    rc = 0;
done:
    ngram_set_free(&hg);
    ngram_set_free(&rg);
    free(best);
    free(cnt);
    symbol_seq_free(&hs);
    for (int k = 0; k < n_refs; k++) symbol_seq_free(&rs[k]);
    free(rs);
    token_table_free(&t);
    return rc;
}

typedef struct {
    const BleuOptions *opt;
    BleuStats *stats;
} BleuStatsJob;

static int bleu_one_segment(const char *hyp, const char **refs, int n_refs, size_t i, void *ctx) {
    BleuStatsJob *j = ctx;
    return bleu_segment_stats(hyp, refs, n_refs, j->opt, &j->stats[i]);
}

int bleu_corpus_stats(const char *const *hyps, const char *const *const *refs, int n_refs,
                      size_t n, const BleuOptions *opt, BleuStats *stats, int *nrefs) {
    BleuStatsJob j = {opt, stats};
    return corpus_for_each_segment(hyps, refs, n_refs, n, "bleu", bleu_one_segment, &j, nrefs);
}

/* sacreBLEU's my_log: log, floored for zero. */
static double floored_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

void bleu_from_stats(const BleuStats *stats, const BleuOptions *opt, BleuResult *out) {
    memset(out, 0, sizeof *out);
    int max_order = opt->max_ngram_order;
    if (max_order < 1) max_order = 1;
    if (max_order > BLEU_MAX_ORDER_LIMIT) max_order = BLEU_MAX_ORDER_LIMIT;
    out->stats = *stats;
    out->max_ngram_order = max_order;
    double sys_len = stats->sys_len, ref_len = stats->ref_len;
    out->ratio = ref_len != 0 ? sys_len / ref_len : 0;
    double smooth_value = opt->smooth_value;
    if (smooth_value < 0) smooth_value = opt->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0;
    out->bp = 1.0;
    if (sys_len < ref_len) out->bp = sys_len > 0 ? exp(1 - ref_len / sys_len) : 0.0;
    int any_correct = 0;
    for (int k = 0; k < max_order; k++) any_correct |= stats->correct[k] != 0;
    if (!any_correct) return; /* score 0 and zero precisions (sacreBLEU #141) */
    double correct[BLEU_MAX_ORDER_LIMIT], total[BLEU_MAX_ORDER_LIMIT];
    memcpy(correct, stats->correct, sizeof correct);
    memcpy(total, stats->total, sizeof total);
    double smooth_mteval = 1.0;
    int eff_order = max_order;
    for (int n = 1; n <= max_order; n++) {
        if (opt->smooth == BLEU_SMOOTH_ADD_K && n > 1) {
            correct[n - 1] += smooth_value;
            total[n - 1] += smooth_value;
        }
        if (total[n - 1] == 0) break;
        if (opt->effective_order) eff_order = n;
        if (correct[n - 1] == 0) {
            if (opt->smooth == BLEU_SMOOTH_EXP) {
                smooth_mteval *= 2;
                out->precisions[n - 1] = 100. / (smooth_mteval * total[n - 1]);
            } else if (opt->smooth == BLEU_SMOOTH_FLOOR) {
                out->precisions[n - 1] = 100. * smooth_value / total[n - 1];
            }
        } else {
            out->precisions[n - 1] = 100. * correct[n - 1] / total[n - 1];
        }
    }
    double sum = 0;
    for (int k = 0; k < eff_order; k++) sum += floored_log(out->precisions[k]);
    out->score = out->bp * exp(sum / eff_order);
}

static const char *smooth_name(BleuSmooth s) {
    switch (s) {
    case BLEU_SMOOTH_NONE: return "none";
    case BLEU_SMOOTH_FLOOR: return "floor";
    case BLEU_SMOOTH_ADD_K: return "add-k";
    case BLEU_SMOOTH_EXP: return "exp";
    }
    return "?";
}

void bleu_signature(const BleuOptions *opt, int nrefs, char *buf, size_t size) {
    char nr[16], smooth[32];
    if (nrefs < 0) snprintf(nr, sizeof nr, "var");
    else snprintf(nr, sizeof nr, "%d", nrefs);
    if (opt->smooth == BLEU_SMOOTH_FLOOR || opt->smooth == BLEU_SMOOTH_ADD_K) {
        double v = opt->smooth_value >= 0 ? opt->smooth_value : (opt->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0);
        snprintf(smooth, sizeof smooth, "%s[%.2f]", smooth_name(opt->smooth), v);
    } else {
        snprintf(smooth, sizeof smooth, "%s", smooth_name(opt->smooth));
    }
    snprintf(buf, size, "nrefs:%s|case:%s|eff:%s|tok:%s|smooth:%s|version:%s", nr,
             opt->lowercase ? "lc" : "mixed", opt->effective_order ? "yes" : "no",
             opt->tokenize == BLEU_TOKENIZE_13A ? "13a" : "none", smooth, SACREBLEU_VERSION);
}

int bleu_corpus(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                const BleuOptions *opt, BleuResult *out) {
    memset(out, 0, sizeof *out);
    if (bleu_check_options(opt)) return -1;
    BleuStats *stats = malloc((n ? n : 1) * sizeof *stats);
    if (!stats) return tt_err("out of memory for %zu segments", n);
    int nrefs;
    if (bleu_corpus_stats(hyps, refs, n_refs, n, opt, stats, &nrefs)) {
        free(stats);
        return -1;
    }
    BleuStats sum;
    memset(&sum, 0, sizeof sum);
    for (size_t i = 0; i < n; i++) {
        sum.sys_len += stats[i].sys_len;
        sum.ref_len += stats[i].ref_len;
        for (int k = 0; k < BLEU_MAX_ORDER_LIMIT; k++) {
            sum.correct[k] += stats[i].correct[k];
            sum.total[k] += stats[i].total[k];
        }
    }
    free(stats);
    bleu_from_stats(&sum, opt, out);
    out->nrefs = nrefs;
    bleu_signature(opt, nrefs, out->signature, sizeof out->signature);
    return 0;
}

int bleu_sentence(const char *hyp, const char *const *refs, int n_refs, const BleuOptions *opt,
                  BleuResult *out) {
    BleuOptions sentence;
    if (!opt) {
        bleu_options_sentence(&sentence);
        opt = &sentence;
    }
    memset(out, 0, sizeof *out);
    BleuStats stats;
    if (bleu_segment_stats(hyp, refs, n_refs, opt, &stats)) return -1;
    bleu_from_stats(&stats, opt, out);
    int m = 0;
    for (int k = 0; k < n_refs; k++) m += refs[k] != NULL;
    out->nrefs = m;
    bleu_signature(opt, m, out->signature, sizeof out->signature);
    return 0;
}

int bleu_format(const BleuResult *r, char *buf, size_t size) {
    char prec[BLEU_MAX_ORDER_LIMIT * 8 + 1];
    size_t o = 0;
    for (int k = 0; k < r->max_ngram_order; k++)
        o += (size_t)snprintf(prec + o, sizeof prec - o, "%s%.1f", k ? "/" : "", r->precisions[k]);
    return snprintf(buf, size, "BLEU|%s = %.2f %s (BP = %.3f ratio = %.3f hyp_len = %.0f ref_len = %.0f)",
                    r->signature, r->score, prec, r->bp, r->ratio, r->stats.sys_len, r->stats.ref_len);
}
