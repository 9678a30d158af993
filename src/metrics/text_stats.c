/* text_stats.c: length and repetition statistics of generated outputs, the symptoms that
 * distillation papers watch beside ROUGE/BLEU: output/reference length ratio, the share
 * of outputs that repeat a token at once ("the the"), and distinct-1/2 (Li et al. 2016),
 * all over whitespace tokens (Python str.split()). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "metrics/ngram.h"
#include "metrics/pystring.h"
#include "tutor/core.h"
#include "tutor/metrics.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int text_stats(const char *const *hyps, const char *const *refs, size_t n, TextStats *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    TokenTable t;
    token_table_init(&t);
    SymbolSeq all = {0}, ref_tokens = {0};
    uint64_t *pairs = NULL;
    char *seen = NULL;
    int rc = -1;
    size_t n_pairs = 0, cap_pairs = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(hyps[i]), before = all.n;
        if (utf8_validate(hyps[i], len) || split_whitespace_ids(hyps[i], len, &t, &all)) {
            tt_err_wrap("output %zu", i + 1);
            goto done;
        }
        int repeats = 0;
        for (size_t k = before + 1; k < all.n; k++) {
            repeats |= all.v[k] == all.v[k - 1];
            if (n_pairs == cap_pairs) {
                cap_pairs = cap_pairs ? cap_pairs * 2 : 256;
                uint64_t *p = realloc(pairs, cap_pairs * sizeof *p);
                if (!p) {
                    tt_err("out of memory for %zu bigrams", cap_pairs);
                    goto done;
                }
                pairs = p;
            }
            pairs[n_pairs++] = ((uint64_t)all.v[k - 1] << 32) | all.v[k];
        }
        out->n_immediate_repeat += repeats;
        if (refs) {
            size_t rlen = strlen(refs[i]);
            ref_tokens.n = 0;
            if (utf8_validate(refs[i], rlen) || split_whitespace_ids(refs[i], rlen, &t, &ref_tokens)) {
                tt_err_wrap("reference %zu", i + 1);
                goto done;
            }
            out->ref_tokens += ref_tokens.n;
        }
    }
    out->hyp_tokens = all.n;
    out->unigrams = all.n;
    out->bigrams = n_pairs;
    seen = calloc(t.n ? t.n : 1, 1);
    if (!seen) {
        tt_err("out of memory");
        goto done;
    }
    for (size_t k = 0; k < all.n; k++) {
        out->distinct_unigrams += !seen[all.v[k]];
        seen[all.v[k]] = 1;
    }
    if (n_pairs) {
        qsort(pairs, n_pairs, sizeof *pairs, cmp_u64);
        for (size_t k = 0; k < n_pairs; k++) out->distinct_bigrams += k == 0 || pairs[k] != pairs[k - 1];
    }
    out->length_ratio = out->ref_tokens ? (double)out->hyp_tokens / (double)out->ref_tokens : 0;
    out->mean_hyp_len = n ? (double)out->hyp_tokens / (double)n : 0;
    out->immediate_repeat_share = n ? (double)out->n_immediate_repeat / (double)n : 0;
    out->distinct1 = out->unigrams ? (double)out->distinct_unigrams / (double)out->unigrams : 0;
    out->distinct2 = out->bigrams ? (double)out->distinct_bigrams / (double)out->bigrams : 0;
    rc = 0;
done:
    free(seen);
    free(pairs);
    symbol_seq_free(&all);
    symbol_seq_free(&ref_tokens);
    token_table_free(&t);
    return rc;
}

/* Whitespace tokens of s as (start, length) pairs. */
static size_t split_ws(const char *s, const char ***start, size_t **len) {
    size_t cap = 16, n = 0;
    *start = malloc(cap * sizeof **start);
    *len = malloc(cap * sizeof **len);
    if (!*start || !*len) return (size_t)-1;
    for (const char *p = s; *p;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *q = p;
        while (*q && !isspace((unsigned char)*q)) q++;
        if (n == cap) {
            cap *= 2;
            const char **a = realloc(*start, cap * sizeof **start);
            size_t *b = realloc(*len, cap * sizeof **len);
            if (a) *start = a;
            if (b) *len = b;
            if (!a || !b) return (size_t)-1;
        }
        (*start)[n] = p;
        (*len)[n] = (size_t)(q - p);
        n++;
        p = q;
    }
    return n;
}

long longest_copied_run(const char *hyp, const char *src) {
    const char **hs = NULL, **ss = NULL;
    size_t *hl = NULL, *sl = NULL;
    size_t nh = split_ws(hyp, &hs, &hl), ns = split_ws(src, &ss, &sl);
    long best = -1;
    long *prev = NULL, *cur = NULL;
    if (nh == (size_t)-1 || ns == (size_t)-1) goto done;
    prev = calloc(ns + 1, sizeof *prev);
    cur = calloc(ns + 1, sizeof *cur);
    if (!prev || !cur) goto done;
    best = 0;
    /* run[i][j]: common run ending at hyp token i and source token j */
    for (size_t i = 0; i < nh; i++) {
        for (size_t j = 0; j < ns; j++) {
            int eq = hl[i] == sl[j] && !strncasecmp(hs[i], ss[j], hl[i]);
            cur[j + 1] = eq ? prev[j] + 1 : 0;
            if (cur[j + 1] > best) best = cur[j + 1];
        }
        long *t = prev;
        prev = cur;
        cur = t;
    }
done:
    free(hs), free(hl), free(ss), free(sl), free(prev), free(cur);
    return best;
}
