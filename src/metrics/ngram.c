/* ngram.c: token interning (an open-addressing hash table over one byte arena) and
 * sorted n-gram multisets, the counting machinery under every metric in src/metrics. */
#include "metrics/ngram.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "metrics/pystring.h"
#include "tutor/core.h"

void token_table_init(TokenTable *t) { memset(t, 0, sizeof *t); }

void token_table_free(TokenTable *t) {
    free(t->bytes);
    free(t->offset);
    free(t->length);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int token_table_rehash(TokenTable *t, size_t n_slots) {
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return tt_err("out of memory for a token table of %zu slots", n_slots);
    for (size_t id = 0; id < t->n; id++) {
        size_t k = hash_bytes(t->bytes + t->offset[id], t->length[id]) & (n_slots - 1);
        while (slots[k]) k = (k + 1) & (n_slots - 1);
        slots[k] = (uint32_t)id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

int64_t token_table_intern(TokenTable *t, const char *s, size_t len) {
    if ((t->n + 1) * 2 > t->n_slots && token_table_rehash(t, t->n_slots ? t->n_slots * 2 : 64))
        return -1;
    size_t mask = t->n_slots - 1, k = hash_bytes(s, len) & mask;
    while (t->slots[k]) {
        uint32_t id = t->slots[k] - 1;
        if (t->length[id] == len && !memcmp(t->bytes + t->offset[id], s, len)) return id;
        k = (k + 1) & mask;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        size_t *off = realloc(t->offset, cap * sizeof *off);
        if (off) t->offset = off;
        uint32_t *lens = realloc(t->length, cap * sizeof *lens);
        if (lens) t->length = lens;
        if (!off || !lens) return tt_err("out of memory for %zu tokens", cap);
        t->cap = cap;
    }
    if (t->bytes_len + len + 1 > t->bytes_cap) {
        size_t cap = t->bytes_cap ? t->bytes_cap : 1024;
        while (cap < t->bytes_len + len + 1) cap *= 2;
        char *b = realloc(t->bytes, cap);
        if (!b) return tt_err("out of memory for %zu bytes of tokens", cap);
        t->bytes = b;
        t->bytes_cap = cap;
    }
    memcpy(t->bytes + t->bytes_len, s, len);
    t->bytes[t->bytes_len + len] = 0;
    t->offset[t->n] = t->bytes_len;
    t->length[t->n] = (uint32_t)len;
    t->bytes_len += len + 1;
    t->slots[k] = (uint32_t)t->n + 1;
    return (int64_t)t->n++;
}

const char *token_table_text(const TokenTable *t, uint32_t id, size_t *len) {
    if (len) *len = t->length[id];
    return t->bytes + t->offset[id];
}

int symbol_seq_push(SymbolSeq *s, uint32_t x) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        uint32_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) return tt_err("out of memory for %zu symbols", cap);
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

void symbol_seq_free(SymbolSeq *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int ngram_cmp(const uint32_t *a, const uint32_t *b, size_t order) {
    for (size_t i = 0; i < order; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

typedef struct {
    const uint32_t *seq;
    size_t order;
} NgramSortCtx;

static int ngram_start_cmp(const void *x, const void *y, void *arg) {
    const NgramSortCtx *c = arg;
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    int r = ngram_cmp(c->seq + a, c->seq + b, c->order);
    return r ? r : (a < b ? -1 : a > b);
}

int ngram_set_build(NgramSet *g, const uint32_t *seq, size_t len, size_t order) {
    memset(g, 0, sizeof *g);
    g->seq = seq;
    g->order = order;
    if (order == 0 || len < order) return 0;
    size_t count = len - order + 1;
    g->start = malloc(count * sizeof *g->start);
    g->run_first = malloc(count * sizeof *g->run_first);
    g->run_count = malloc(count * sizeof *g->run_count);
    if (!g->start || !g->run_first || !g->run_count) {
        ngram_set_free(g);
        return tt_err("out of memory for %zu n-grams", count);
    }
    g->count = count;
    for (size_t i = 0; i < count; i++) g->start[i] = i;
    NgramSortCtx ctx = {seq, order};
    qsort_r(g->start, count, sizeof *g->start, ngram_start_cmp, &ctx);
    for (size_t i = 0; i < count; i++) {
        if (g->n_runs == 0 ||
            ngram_cmp(seq + g->start[g->run_first[g->n_runs - 1]], seq + g->start[i], order)) {
            g->run_first[g->n_runs] = i;
            g->run_count[g->n_runs] = 0;
            g->n_runs++;
        }
        g->run_count[g->n_runs - 1]++;
    }
    return 0;
}

void ngram_set_free(NgramSet *g) {
    free(g->start);
    free(g->run_first);
    free(g->run_count);
    memset(g, 0, sizeof *g);
}

static const uint32_t *run_ngram(const NgramSet *g, size_t run) {
    return g->seq + g->start[g->run_first[run]];
}

void ngram_set_counts_in(const NgramSet *h, const NgramSet *r, uint32_t *counts) {
    size_t j = 0;
    for (size_t i = 0; i < h->n_runs; i++) {
        counts[i] = 0;
        while (j < r->n_runs) {
            int c = ngram_cmp(run_ngram(r, j), run_ngram(h, i), h->order);
            if (c < 0) {
                j++;
                continue;
            }
            if (c == 0) counts[i] = r->run_count[j];
            break;
        }
    }
}

size_t ngram_set_overlap(const NgramSet *a, const NgramSet *b) {
    size_t i = 0, j = 0, total = 0;
    while (i < a->n_runs && j < b->n_runs) {
        int c = ngram_cmp(run_ngram(a, i), run_ngram(b, j), a->order);
        if (c < 0) {
            i++;
        } else if (c > 0) {
            j++;
        } else {
            total += a->run_count[i] < b->run_count[j] ? a->run_count[i] : b->run_count[j];
            i++;
            j++;
        }
    }
    return total;
}

int split_whitespace_ids(const char *s, size_t len, TokenTable *t, SymbolSeq *out) {
    size_t i = 0, tok_start = 0;
    int in_token = 0;
    while (i <= len) {
        uint32_t c = ' ';
        size_t k = 1;
        if (i < len) {
            if ((unsigned char)s[i] < 0x80) {
                c = (unsigned char)s[i];
            } else {
                utf8proc_int32_t cp;
                utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                                      (utf8proc_ssize_t)(len - i), &cp);
                if (r <= 0) return tt_err("invalid UTF-8 at byte %zu", i);
                c = (uint32_t)cp;
                k = (size_t)r;
            }
        }
        int space = py_isspace(c);
        if (space && in_token) {
            int64_t id = token_table_intern(t, s + tok_start, i - tok_start);
            if (id < 0 || symbol_seq_push(out, (uint32_t)id)) return -1;
            in_token = 0;
        } else if (!space && !in_token) {
            in_token = 1;
            tok_start = i;
        }
        i += k;
    }
    return 0;
}

int corpus_for_each_segment(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                            const char *what,
                            int (*segment)(const char *hyp, const char **refs, int n_refs, size_t i, void *ctx),
                            void *ctx, int *nrefs) {
    if (n_refs < 1) return tt_err("%s: no reference set", what);
    const char **these = malloc((size_t)n_refs * sizeof *these);
    if (!these) return tt_err("out of memory");
    int count = -2; /* references per segment; -2 before the first segment */
    for (size_t i = 0; i < n; i++) {
        int m = 0;
        for (int k = 0; k < n_refs; k++) {
            these[k] = refs[k][i];
            m += these[k] != NULL;
        }
        count = count == -2 ? m : (count == m ? m : -1);
        if (segment(hyps[i], these, n_refs, i, ctx)) {
            free(these);
            return tt_err_wrap("segment %zu", i + 1);
        }
    }
    free(these);
    if (nrefs) *nrefs = count == -2 ? n_refs : count;
    return 0;
}
