/* rouge.c: ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum exactly as Google's rouge-score 0.1.2
 * (rouge_scorer.py, tokenize.py, scoring.py): its tokenizer, its clipped n-gram counts,
 * its LCS with the same backtracking (which decides the union LCS of ROUGE-Lsum) and its
 * de-duplicated summary-level hit counting. Summarization papers report these numbers. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "metrics/ngram.h"
#include "metrics/pystring.h"
#include "tutor/core.h"
#include "tutor/metrics.h"

/* The lowercase ASCII letter or digit that code point c becomes under Python's lower(),
 * or 0 when it becomes something outside [a-z0-9] (a separator for rouge-score). */
static char rouge_char(uint32_t c) {
    if (c < 0x80) {
        if (c >= 'A' && c <= 'Z') return (char)(c + 32);
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return (char)c;
        return 0;
    }
    /* U+0130 lowers to "i" + U+0307 in Python: handled by the caller. Otherwise only
     * U+212A KELVIN SIGN lowers into ASCII; ask utf8proc rather than assume it. */
    utf8proc_int32_t low = utf8proc_tolower((utf8proc_int32_t)c);
    if ((low >= 'a' && low <= 'z') || (low >= '0' && low <= '9')) return (char)low;
    return 0;
}

/* Appends the rouge-score tokens of text[0..len) to out, as ids of t. */
static int rouge_tokens(const char *text, size_t len, int use_stemmer, TokenTable *t,
                        SymbolSeq *out) {
    char *tok = malloc(len + 2), *stem = malloc(len + 2);
    if (!tok || !stem) {
        free(tok);
        free(stem);
        return tt_err("out of memory tokenizing %zu bytes", len);
    }
    size_t n = 0, i = 0;
    int rc = 0;
    while (i <= len && rc == 0) {
        char ch = 0;
        int ends_token = 0; /* Python's "i" + U+0307: a letter, then a separator */
        size_t step = 1;
        if (i < len) {
            utf8proc_int32_t c = (unsigned char)text[i];
            if (c >= 0x80) {
                utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i,
                                                      (utf8proc_ssize_t)(len - i), &c);
                if (k <= 0) {
                    rc = tt_err("invalid UTF-8 at byte %zu", i);
                    break;
                }
                step = (size_t)k;
            }
            if (c == 0x130) {
                ch = 'i';
                ends_token = 1;
            } else {
                ch = rouge_char((uint32_t)c);
            }
        }
        if (ch) tok[n++] = ch;
        if ((!ch || ends_token) && n > 0) {
            const char *word = tok;
            size_t wn = n;
            if (use_stemmer && n > 3) {
                wn = porter_stem(tok, n, stem);
                word = stem;
            }
            if (wn > 0) {
                int64_t id = token_table_intern(t, word, wn);
                if (id < 0 || symbol_seq_push(out, (uint32_t)id)) rc = -1;
            }
            n = 0;
        }
        i += step;
    }
    free(tok);
    free(stem);
    return rc;
}

char *rouge_tokenize(const char *text, int use_stemmer) {
    TokenTable t;
    SymbolSeq seq = {0};
    token_table_init(&t);
    char *joined = NULL;
    size_t len = strlen(text);
    if (rouge_tokens(text, len, use_stemmer, &t, &seq) == 0) {
        size_t total = 1;
        for (size_t i = 0; i < seq.n; i++) total += t.length[seq.v[i]] + 1;
        joined = malloc(total);
        if (!joined) {
            tt_err("out of memory joining tokens");
        } else {
            size_t o = 0;
            for (size_t i = 0; i < seq.n; i++) {
                size_t k;
                const char *s = token_table_text(&t, seq.v[i], &k);
                if (i) joined[o++] = ' ';
                memcpy(joined + o, s, k);
                o += k;
            }
            joined[o] = 0;
        }
    }
    symbol_seq_free(&seq);
    token_table_free(&t);
    return joined;
}

/* scoring.fmeasure, with Python's evaluation order. */
static double rouge_fmeasure(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

static RougeScore rouge_make(double p, double r) {
    RougeScore s = {p, r, rouge_fmeasure(p, r)};
    return s;
}

static int rouge_ngram_score(const SymbolSeq *target, const SymbolSeq *pred, size_t order,
                             RougeScore *out) {
    NgramSet gt, gp;
    if (ngram_set_build(&gt, target->v, target->n, order)) return -1;
    if (ngram_set_build(&gp, pred->v, pred->n, order)) {
        ngram_set_free(&gt);
        return -1;
    }
    double inter = (double)ngram_set_overlap(&gt, &gp);
    double np = (double)(gp.count > 0 ? gp.count : 1), nt = (double)(gt.count > 0 ? gt.count : 1);
    *out = rouge_make(inter / np, inter / nt);
    ngram_set_free(&gt);
    ngram_set_free(&gp);
    return 0;
}

static int lcs_length(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t *out) {
    uint32_t *prev = calloc(nb + 1, sizeof *prev), *cur = calloc(nb + 1, sizeof *cur);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return tt_err("out of memory for an LCS row of %zu", nb + 1);
    }
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        uint32_t *t = prev;
        prev = cur;
        cur = t;
    }
    *out = prev[nb];
    free(prev);
    free(cur);
    return 0;
}

/* Marks in used[] the positions of ref in the LCS that rouge-score's _backtrack_norec
 * reads out of the full table against can. */
static int lcs_mark(const uint32_t *ref, size_t nr, const uint32_t *can, size_t nc, char *used) {
    if (nr == 0 || nc == 0) return 0;
    size_t cols = nc + 1;
    uint32_t *t = calloc((nr + 1) * cols, sizeof *t);
    if (!t) return tt_err("out of memory for a %zu x %zu LCS table", nr + 1, cols);
    for (size_t i = 1; i <= nr; i++)
        for (size_t j = 1; j <= nc; j++) {
            uint32_t up = t[(i - 1) * cols + j], left = t[i * cols + j - 1];
            t[i * cols + j] = ref[i - 1] == can[j - 1] ? t[(i - 1) * cols + j - 1] + 1
                                                       : (up > left ? up : left);
        }
    size_t i = nr, j = nc;
    while (i > 0 && j > 0) {
        if (ref[i - 1] == can[j - 1]) {
            used[i - 1] = 1;
            i--;
            j--;
        } else if (t[i * cols + j - 1] > t[(i - 1) * cols + j]) {
            j--;
        } else {
            i--;
        }
    }
    free(t);
    return 0;
}

/* A text split at '\n' into non-empty lines, each tokenized: sentence s is
 * tokens.v[first[s] .. first[s + 1]). */
typedef struct {
    SymbolSeq tokens;
    size_t *first;
    size_t n;
} Sentences;

static int sentences_split(const char *text, int use_stemmer, TokenTable *t, Sentences *out) {
    memset(out, 0, sizeof *out);
    size_t lines = 1;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    out->first = malloc((lines + 1) * sizeof *out->first);
    if (!out->first) return tt_err("out of memory splitting %zu lines", lines);
    const char *p = text;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t k = nl ? (size_t)(nl - p) : strlen(p);
        if (k > 0) {
            out->first[out->n++] = out->tokens.n;
            if (rouge_tokens(p, k, use_stemmer, t, &out->tokens)) return -1;
        }
        if (!nl) break;
        p = nl + 1;
    }
    out->first[out->n] = out->tokens.n;
    return 0;
}

static void sentences_free(Sentences *s) {
    symbol_seq_free(&s->tokens);
    free(s->first);
}

/* rouge-score's _summary_level_lcs. */
static int rouge_lsum(const Sentences *ref, const Sentences *can, size_t vocab, RougeScore *out) {
    *out = rouge_make(0, 0);
    size_t m = ref->tokens.n, n = can->tokens.n;
    if (ref->n == 0 || can->n == 0 || m == 0 || n == 0) return 0;
    uint32_t *cnt_r = calloc(vocab, sizeof *cnt_r), *cnt_c = calloc(vocab, sizeof *cnt_c);
    char *used = malloc(m);
    int rc = 0;
    if (!cnt_r || !cnt_c || !used) {
        rc = tt_err("out of memory for ROUGE-Lsum counts");
        goto done;
    }
    for (size_t i = 0; i < m; i++) cnt_r[ref->tokens.v[i]]++;
    for (size_t i = 0; i < n; i++) cnt_c[can->tokens.v[i]]++;
    size_t hits = 0;
    for (size_t s = 0; s < ref->n && rc == 0; s++) {
        const uint32_t *r = ref->tokens.v + ref->first[s];
        size_t nr = ref->first[s + 1] - ref->first[s];
        memset(used, 0, nr);
        for (size_t c = 0; c < can->n && rc == 0; c++)
            rc = lcs_mark(r, nr, can->tokens.v + can->first[c], can->first[c + 1] - can->first[c],
                          used);
        for (size_t i = 0; i < nr && rc == 0; i++) {
            uint32_t tok = r[i];
            if (used[i] && cnt_c[tok] > 0 && cnt_r[tok] > 0) {
                hits++;
                cnt_c[tok]--;
                cnt_r[tok]--;
            }
        }
    }
    if (rc == 0) *out = rouge_make((double)hits / (double)n, (double)hits / (double)m);
done:
    free(cnt_r);
    free(cnt_c);
    free(used);
    return rc;
}

int rouge_score_pair(const char *hyp, const char *ref, int use_stemmer, RougeScores *out) {
    if (!hyp || !ref) return tt_err("rouge: NULL text");
    memset(out, 0, sizeof *out);
    TokenTable t;
    token_table_init(&t);
    SymbolSeq target = {0}, pred = {0};
    Sentences ref_s = {0}, hyp_s = {0};
    int rc = -1;
    if (rouge_tokens(ref, strlen(ref), use_stemmer, &t, &target)) {
        tt_err_wrap("reference");
        goto done;
    }
    if (rouge_tokens(hyp, strlen(hyp), use_stemmer, &t, &pred)) {
        tt_err_wrap("hypothesis");
        goto done;
    }
    if (rouge_ngram_score(&target, &pred, 1, &out->rouge1) ||
        rouge_ngram_score(&target, &pred, 2, &out->rouge2))
        goto done;
    if (target.n > 0 && pred.n > 0) {
        size_t lcs = 0;
        if (lcs_length(target.v, target.n, pred.v, pred.n, &lcs)) goto done;
        out->rougeL = rouge_make((double)lcs / (double)pred.n, (double)lcs / (double)target.n);
    }
    if (sentences_split(ref, use_stemmer, &t, &ref_s) || sentences_split(hyp, use_stemmer, &t, &hyp_s))
        goto done;
    if (rouge_lsum(&ref_s, &hyp_s, t.n, &out->rougeLsum)) goto done;
    rc = 0;
done:
    symbol_seq_free(&target);
    symbol_seq_free(&pred);
    sentences_free(&ref_s);
    sentences_free(&hyp_s);
    token_table_free(&t);
    return rc;
}

int rouge_score_multi(const char *hyp, const char *const *refs, int n_refs, int use_stemmer,
                      RougeScores *out) {
    if (n_refs < 1) return tt_err("rouge: no reference");
    for (int k = 0; k < n_refs; k++) {
        RougeScores s;
        if (rouge_score_pair(hyp, refs[k], use_stemmer, &s)) return -1;
        if (k == 0) {
            *out = s;
            continue;
        }
        /* np.argmax over F: the first reference with the highest F wins, per type. */
        if (s.rouge1.fmeasure > out->rouge1.fmeasure) out->rouge1 = s.rouge1;
        if (s.rouge2.fmeasure > out->rouge2.fmeasure) out->rouge2 = s.rouge2;
        if (s.rougeL.fmeasure > out->rougeL.fmeasure) out->rougeL = s.rougeL;
        if (s.rougeLsum.fmeasure > out->rougeLsum.fmeasure) out->rougeLsum = s.rougeLsum;
    }
    return 0;
}

static void rouge_accumulate(RougeScore *acc, const RougeScore *s) {
    acc->precision += s->precision;
    acc->recall += s->recall;
    acc->fmeasure += s->fmeasure;
}

static void rouge_divide(RougeScore *acc, double n) {
    acc->precision /= n;
    acc->recall /= n;
    acc->fmeasure /= n;
}

int rouge_corpus(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                 int use_stemmer, RougeScores *per_example, RougeScores *mean) {
    if (n_refs < 1) return tt_err("rouge: no reference set");
    RougeScores sum;
    memset(&sum, 0, sizeof sum);
    const char **these = malloc((size_t)n_refs * sizeof *these);
    if (!these) return tt_err("out of memory");
    for (size_t i = 0; i < n; i++) {
        int m = 0;
        for (int k = 0; k < n_refs; k++)
            if (refs[k][i]) these[m++] = refs[k][i];
        RougeScores s;
        if (m == 0) {
            free(these);
            return tt_err("example %zu has no reference", i + 1);
        }
        if (rouge_score_multi(hyps[i], these, m, use_stemmer, &s)) {
            free(these);
            return tt_err_wrap("example %zu", i + 1);
        }
        if (per_example) per_example[i] = s;
        rouge_accumulate(&sum.rouge1, &s.rouge1);
        rouge_accumulate(&sum.rouge2, &s.rouge2);
        rouge_accumulate(&sum.rougeL, &s.rougeL);
        rouge_accumulate(&sum.rougeLsum, &s.rougeLsum);
    }
    free(these);
    if (n > 0) {
        rouge_divide(&sum.rouge1, (double)n);
        rouge_divide(&sum.rouge2, (double)n);
        rouge_divide(&sum.rougeL, (double)n);
        rouge_divide(&sum.rougeLsum, (double)n);
    }
    if (mean) *mean = sum;
    return 0;
}
