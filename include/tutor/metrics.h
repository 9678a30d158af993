/* metrics.h: quality metrics of generated text, computed exactly as the reference tools
 * compute them, so that tutor's numbers can be compared with published ones:
 * ROUGE-1/2/L/Lsum as Google's rouge-score 0.1.2 (with NLTK's Porter stemmer), corpus and
 * sentence BLEU and chrF as sacreBLEU 2.6.0, plus length/repetition statistics and paired
 * bootstrap resampling. All texts are UTF-8; invalid UTF-8 is an error (tt_err, -1).
 * See docs/metrics.md for the conventions and citations. */
#ifndef TUTOR_METRICS_H
#define TUTOR_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- ROUGE (rouge-score) */

typedef struct {
    double precision, recall, fmeasure; /* in [0, 1], as rouge-score reports them */
} RougeScore;

typedef struct {
    RougeScore rouge1, rouge2, rougeL, rougeLsum;
} RougeScores;

/* Scores one hypothesis against one reference, as RougeScorer(["rouge1", "rouge2",
 * "rougeL", "rougeLsum"], use_stemmer).score(target=ref, prediction=hyp). ROUGE-Lsum
 * splits both texts into sentences at '\n'. 0, or -1 on invalid UTF-8. */
int rouge_score_pair(const char *hyp, const char *ref, int use_stemmer, RougeScores *out);

/* Several references: per ROUGE type, the scores against the reference with the highest
 * F (the first such), as RougeScorer.score_multi. n_refs >= 1. */
int rouge_score_multi(const char *hyp, const char *const *refs, int n_refs, int use_stemmer,
                      RougeScores *out);

/* Corpus: refs[k][i] is reference k of example i (k < n_refs; NULL entries are skipped,
 * but each example needs one). per_example (n entries) may be NULL; mean receives the
 * mean over examples of each precision, recall and F (all zero when n is 0). */
int rouge_corpus(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                 int use_stemmer, RougeScores *per_example, RougeScores *mean);

/* rouge-score's tokenizer: lowercase (Python str.lower), every character outside [a-z0-9]
 * becomes a separator, optional Porter stemming of tokens longer than 3 characters.
 * Returns a malloc'd string of the tokens joined by single spaces (free()), or NULL. */
char *rouge_tokenize(const char *text, int use_stemmer);

/* NLTK's PorterStemmer (mode NLTK_EXTENSIONS, to_lowercase=True) on an ASCII word of len
 * bytes. Writes the NUL-terminated stem to out (at least len + 1 bytes; a stem is never
 * longer than its word) and returns its length. */
size_t porter_stem(const char *word, size_t len, char *out);

/* ---------------------------------------------------------------- BLEU (sacreBLEU) */

#define BLEU_MAX_ORDER_LIMIT 8

typedef enum { BLEU_SMOOTH_NONE, BLEU_SMOOTH_FLOOR, BLEU_SMOOTH_ADD_K, BLEU_SMOOTH_EXP } BleuSmooth;
typedef enum { BLEU_TOKENIZE_13A, BLEU_TOKENIZE_NONE } BleuTokenize;

typedef struct {
    int lowercase;         /* case:lc */
    BleuTokenize tokenize; /* default 13a */
    BleuSmooth smooth;     /* default exp */
    double smooth_value;   /* < 0: the method's default (floor 0.1, add-k 1) */
    int max_ngram_order;   /* default 4, at most BLEU_MAX_ORDER_LIMIT */
    int effective_order;   /* 0 for corpus BLEU (default), 1 for sentence BLEU */
} BleuOptions;

/* sacreBLEU's BLEU() defaults (corpus_bleu); bleu_options_sentence: sentence_bleu's
 * (the same but effective_order = 1). */
void bleu_options_default(BleuOptions *opt);
void bleu_options_sentence(BleuOptions *opt);

/* Sufficient statistics of one segment or a sum of segments. Doubles so that sums over
 * bootstrap resamples stay exact up to 2^53. */
typedef struct {
    double sys_len, ref_len;
    double correct[BLEU_MAX_ORDER_LIMIT], total[BLEU_MAX_ORDER_LIMIT];
} BleuStats;

typedef struct {
    double score;                              /* 0-100 */
    double precisions[BLEU_MAX_ORDER_LIMIT];   /* 0-100, as sacreBLEU prints them */
    double bp, ratio;                          /* brevity penalty; sys_len / ref_len */
    BleuStats stats;                           /* summed counts */
    int max_ngram_order;
    int nrefs;                                 /* references per segment, -1 if it varies */
    char signature[160];                       /* e.g. nrefs:1|case:mixed|eff:no|tok:13a|... */
} BleuResult;

/* sacreBLEU's preprocessing of one segment: optional Python lower(), rstrip(), then the
 * 13a tokenizer (mteval-v13a) or none. Returns a malloc'd string (free()), or NULL. */
char *bleu_preprocess(const char *segment, const BleuOptions *opt);

/* Statistics of one hypothesis against its references (refs[k], NULL entries skipped;
 * at least one needed): n-gram matches clipped by the maximum count over references,
 * ref_len the closest reference length (ties to the shorter). */
int bleu_segment_stats(const char *hyp, const char *const *refs, int n_refs,
                       const BleuOptions *opt, BleuStats *out);

/* Per-segment statistics of a corpus; refs[k][i] is reference k of segment i, NULL when
 * segment i has no k-th reference. stats has n entries. *nrefs (may be NULL) receives the
 * references per segment, or -1 if the count varies ("nrefs:var"). */
int bleu_corpus_stats(const char *const *hyps, const char *const *const *refs, int n_refs,
                      size_t n, const BleuOptions *opt, BleuStats *stats, int *nrefs);

/* BLEU from summed statistics (sacreBLEU's BLEU.compute_bleu). Never fails. */
void bleu_from_stats(const BleuStats *stats, const BleuOptions *opt, BleuResult *out);

/* Corpus BLEU (sacreBLEU's corpus_score) with the signature filled in. */
int bleu_corpus(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                const BleuOptions *opt, BleuResult *out);

/* Sentence BLEU (sacreBLEU's sentence_bleu); opt NULL means bleu_options_sentence. */
int bleu_sentence(const char *hyp, const char *const *refs, int n_refs, const BleuOptions *opt,
                  BleuResult *out);

/* "nrefs:N|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0" into buf. */
void bleu_signature(const BleuOptions *opt, int nrefs, char *buf, size_t size);

/* sacreBLEU's printed line: "BLEU|SIG = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio =
 * 0.944 hyp_len = 17 ref_len = 18)". Returns snprintf's count. */
int bleu_format(const BleuResult *r, char *buf, size_t size);

/* ---------------------------------------------------------------- chrF (sacreBLEU) */

#define CHRF_MAX_ORDER_LIMIT 12 /* char_order + word_order */

typedef struct {
    int char_order;    /* default 6 */
    int word_order;    /* default 0; 2 gives chrF++ */
    int beta;          /* default 2 */
    int lowercase;     /* default 0 */
    int whitespace;    /* 1: keep whitespace in character n-grams; default 0 */
    int eps_smoothing; /* 1: chrF++.py epsilon smoothing; default 0 (effective order) */
} ChrfOptions;

void chrf_options_default(ChrfOptions *opt);

/* Per order i (characters first, then words): hyp, ref and matching n-gram counts. */
typedef struct {
    double hyp[CHRF_MAX_ORDER_LIMIT], ref[CHRF_MAX_ORDER_LIMIT], match[CHRF_MAX_ORDER_LIMIT];
} ChrfStats;

typedef struct {
    double score; /* 0-100 */
    ChrfStats stats;
    int nrefs;
    char name[16];       /* "chrF2", "chrF2++" */
    char signature[160]; /* nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 */
} ChrfResult;

/* Statistics of one hypothesis: those of the reference with the best sentence chrF. */
int chrf_segment_stats(const char *hyp, const char *const *refs, int n_refs,
                       const ChrfOptions *opt, ChrfStats *out);
int chrf_corpus_stats(const char *const *hyps, const char *const *const *refs, int n_refs,
                      size_t n, const ChrfOptions *opt, ChrfStats *stats, int *nrefs);
double chrf_from_stats(const ChrfStats *stats, const ChrfOptions *opt);
int chrf_corpus(const char *const *hyps, const char *const *const *refs, int n_refs, size_t n,
                const ChrfOptions *opt, ChrfResult *out);
int chrf_sentence(const char *hyp, const char *const *refs, int n_refs, const ChrfOptions *opt,
                  ChrfResult *out);
void chrf_signature(const ChrfOptions *opt, int nrefs, char *buf, size_t size);

/* ---------------------------------------------------------------- text statistics */

/* Over whitespace tokens (Python str.split()). */
typedef struct {
    size_t n;                      /* examples */
    size_t hyp_tokens, ref_tokens; /* totals; ref_tokens 0 when no references */
    double length_ratio;           /* hyp_tokens / ref_tokens (0 if ref_tokens is 0) */
    double mean_hyp_len;
    size_t n_immediate_repeat;     /* outputs with a token repeated at once ("the the") */
    double immediate_repeat_share; /* n_immediate_repeat / n */
    size_t unigrams, bigrams;      /* totals over the corpus */
    size_t distinct_unigrams, distinct_bigrams;
    double distinct1, distinct2;   /* distinct / total (0 when the total is 0) */
} TextStats;

/* refs may be NULL (no length ratio); otherwise refs[i] is the reference of example i. */
int text_stats(const char *const *hyps, const char *const *refs, size_t n, TextStats *out);

/* The longest run of consecutive whitespace tokens of hyp that also occurs, consecutively,
 * in src (tokens compared with ASCII case folded): how much of an output is copied from its
 * input. -1 on allocation failure. */
long longest_copied_run(const char *hyp, const char *src);

/* ---------------------------------------------------------------- paired bootstrap */

typedef struct {
    double delta;          /* metric(B) - metric(A) on the full sample */
    double lo, hi;         /* 95% percentile interval of the resampled deltas */
    double mean;           /* mean of the resampled deltas */
    double share_b_better; /* share of resamples with delta > 0 */
    int n_resamples;
    uint64_t seed;
} BootstrapResult;

/* The metric of a summed statistic vector (stats_dim doubles). */
typedef double (*BootstrapMetricFn)(const double *summed, size_t stats_dim, const void *ctx);

/* Paired bootstrap (Koehn 2004): each resample draws n example indices with replacement
 * (tutor's Rng seeded with seed), sums the per-example statistic vectors of A and B
 * (n x stats_dim, row-major) over those indices, and records metric(B) - metric(A).
 * n_resamples <= 0 means 1000. The interval uses sacreBLEU's percentile indices
 * (R/40 and R - R/40 - 1 of the sorted deltas). */
/* Fills out's 95% interval (2.5th and 97.5th percentiles), mean and share of resamples where
 * B is better from the n_resamples resampled differences (sorted in place). out->delta is
 * left as it is. */
void bootstrap_summarize(double *deltas, int n_resamples, uint64_t seed, BootstrapResult *out);
int bootstrap_paired(const double *stats_a, const double *stats_b, size_t n, size_t stats_dim,
                     BootstrapMetricFn metric, const void *ctx, int n_resamples, uint64_t seed,
                     BootstrapResult *out);

/* Mean of per-example scores (ROUGE F, sentence scores): metric = mean. */
int bootstrap_paired_mean(const double *scores_a, const double *scores_b, size_t n,
                          int n_resamples, uint64_t seed, BootstrapResult *out);

/* Corpus BLEU / chrF recomputed from resampled per-segment statistics. */
int bootstrap_paired_bleu(const BleuStats *a, const BleuStats *b, size_t n, const BleuOptions *opt,
                          int n_resamples, uint64_t seed, BootstrapResult *out);
int bootstrap_paired_chrf(const ChrfStats *a, const ChrfStats *b, size_t n, const ChrfOptions *opt,
                          int n_resamples, uint64_t seed, BootstrapResult *out);

#endif
