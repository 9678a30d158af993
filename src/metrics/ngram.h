/* ngram.h: tokens interned to dense ids, and n-gram multisets as sorted lists, shared by
 * ROUGE, BLEU, chrF and the text statistics. An n-gram is a run of n symbols (token ids
 * or code points) of one sequence; a multiset sorts its start offsets by content, so that
 * counts and clipped matches come from merging two sorted lists. Internal to src/metrics. */
#ifndef TUTOR_METRICS_NGRAM_H
#define TUTOR_METRICS_NGRAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *bytes;        /* token texts, back to back */
    size_t bytes_len, bytes_cap;
    size_t *offset;     /* id -> start in bytes */
    uint32_t *length;   /* id -> byte length */
    size_t n, cap;      /* ids in use */
    uint32_t *slots;    /* open addressing: id + 1, or 0 when empty */
    size_t n_slots;     /* a power of two */
} TokenTable;

void token_table_init(TokenTable *t);
void token_table_free(TokenTable *t);
/* The id of the token s[0..len), adding it if new; -1 on allocation failure (tt_err). */
int64_t token_table_intern(TokenTable *t, const char *s, size_t len);
const char *token_table_text(const TokenTable *t, uint32_t id, size_t *len);

/* A growable array of uint32 symbols. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} SymbolSeq;

int symbol_seq_push(SymbolSeq *s, uint32_t x);
void symbol_seq_free(SymbolSeq *s);

/* The multiset of the order-n n-grams of seq[0..len): starts sorted by content, grouped
 * in runs of equal n-grams. Holds a pointer to seq, which must outlive it. */
typedef struct {
    const uint32_t *seq;
    size_t order;
    size_t count;        /* n-grams in total: max(len - order + 1, 0) */
    size_t *start;       /* count offsets into seq, sorted by n-gram */
    size_t n_runs;       /* distinct n-grams */
    size_t *run_first;   /* index into start of each run's first n-gram */
    uint32_t *run_count; /* size of each run */
} NgramSet;

int ngram_set_build(NgramSet *g, const uint32_t *seq, size_t len, size_t order);
void ngram_set_free(NgramSet *g);

/* For each distinct n-gram of h (each run), its count in r (0 when absent); counts has
 * h->n_runs entries. h and r must have the same order. */
void ngram_set_counts_in(const NgramSet *h, const NgramSet *r, uint32_t *counts);

/* Sum over distinct n-grams of min(count in a, count in b). */
size_t ngram_set_overlap(const NgramSet *a, const NgramSet *b);

/* Splits s[0..len) at Python whitespace (str.split() without arguments) and interns each
 * piece; ids go to out. Requires valid UTF-8. -1 on allocation failure. */
int split_whitespace_ids(const char *s, size_t len, TokenTable *t, SymbolSeq *out);

/* Runs segment(hyp, refs_i, n_refs, i, ctx) for each segment i of a corpus, refs_i being the
 * i-th line of every reference set (NULL where a set lacks it), and sets *nrefs to the number
 * of references per segment (-1: it varies, sacreBLEU's "var"). what names the metric in
 * errors. 0 or -1. */
int corpus_for_each_segment(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                            const char *what,
                            int (*segment)(const char *hyp, const char **refs, int n_refs, size_t i, void *ctx),
                            void *ctx, int *nrefs);

#endif
