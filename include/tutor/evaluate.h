/* evaluate.h: what `tutor eval` measures of a model on a test set: quality (ROUGE, BLEU,
 * chrF, test cross-entropy, length and repetition) with paired bootstrap intervals against
 * a baseline, exposure bias against an oracle (after Arora et al. 2022), and cost (size,
 * peak memory, latency, throughput). docs/evaluation.md describes every measure. */
#ifndef TUTOR_EVALUATE_H
#define TUTOR_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "tutor/data.h"
#include "tutor/distill.h"
#include "tutor/generate.h"
#include "tutor/metrics.h"
#include "tutor/model.h"
#include "tutor/tokenizer.h"
#include "tutor/train.h"

/* ---- Teacher-forced per-token statistics ------------------------------------------------ */

/* Total target tokens of a pair set. */
long pairset_target_tokens(const PairSet *ps);

/* A pair set with the sources of src and the targets given (tokens[i], n_tokens[i]), e.g. a
 * model's own outputs: the "free-running" prefixes of exposure bias. out owns its ids. */
int pairset_with_targets(PairSet *out, const PairSet *src, const int *const *tokens, const int *n_tokens);

/* ---- Exposure bias ---------------------------------------------------------------------- */

/* Accumulated per-token values: acc[l-1] = mean, over the sequences of ps with at least l
 * target tokens, of sum_{t <= l} v_t (v laid out as in teacher_forced_token_stats);
 * count[l-1] = how many such sequences (acc NAN when none). l = 1..max_len. */
void exposure_accumulate(const double *per_token, const PairSet *ps, int max_len, double *acc, long *count);

typedef struct {
    int max_len;            /* L */
    double *r_free, *r_ref; /* (L) R_free(l), R_ref(l); NAN where no sequence reaches l */
    long *n_free, *n_ref;   /* (L) sequences with >= l tokens */
    double *exacc_err;      /* (L) (R_free - R_ref) / R_ref x 100; NAN when undefined */
    double kl_free_per_token, kl_ref_per_token; /* mean KL over every token position */
    long tokens_free, tokens_ref;
} ExposureBias;

/* R_free on free_run's targets (M's own outputs), R_ref on ref's (the references); both
 * sets have the same sources. oracle == model gives zeros without running anything. 0 or -1. */
int exposure_bias_compute(Model *oracle, Model *model, const PairSet *ref, const PairSet *free_run,
                          int max_len, int batch_tokens, int max_batch, ExposureBias *out);
void exposure_bias_free(ExposureBias *eb);

/* Writes PNG_PATH's data (.dat) and gnuplot script (.gp) beside it and runs gnuplot
 * (pngcairo, else png). *plotted is 1 when the PNG was made, 0 when gnuplot or both
 * terminals are missing (the .dat and .gp stay, and a message says so). 0 or -1. */
int exposure_bias_plot(const ExposureBias *eb, const char *png_path, const char *title, int *plotted);

/* Same tokenizer for two models (oracle and model, or model and baseline): same vocabulary
 * size, same token spelling for every id, same special ids. 0, or -1 naming the first
 * difference (name_a, name_b say whose). */
int tokenizers_check_same(const Tokenizer *a, const char *name_a, const Tokenizer *b, const char *name_b);

/* ---- Lead-N baseline -------------------------------------------------------------------- */

/* The first n_words whitespace tokens (Python str.split()) of text joined by single spaces:
 * malloc'd (free()), or NULL on allocation failure. */
char *lead_words(const char *text, int n_words);

/* ---- The evaluation --------------------------------------------------------------------- */

typedef struct {
    const char *model_dir;     /* required */
    const char *baseline_dir;  /* NULL: no baseline, no differences */
    int baseline_speed_only;   /* 1: the baseline is only timed (cost), not generated or scored */
    int speed_only;            /* 1: only the cost (speed, memory, size) of both; nothing generated for
                                  scoring, no references needed beyond the sources */
    int int8;                  /* 1: the model (not the baseline) runs on its int8 weights */
    const char *name_model, *name_baseline; /* column names in the printed tables (NULL: "model",
                                               "baseline"); the JSON keys stay */
    const char *oracle_dir;    /* NULL: no exposure bias */
    const char *data_path;     /* JSONL with source and target */
    JsonlOptions jsonl;
    size_t max_examples;       /* 0: all */
    int max_source_tokens;     /* 256 (clipped to the models' positions) */
    int max_target_tokens;     /* references for cross-entropy and exposure bias: 64 */
    int max_new_tokens;        /* generation budget when the model's config sets none: 64 */
    GenFlags gen;              /* decoding flags over each model's generation_config.json */
    /* the model's decoding as resolved by eval_run (for the report): */
    int beam;                  /* 1: greedy */
    double length_penalty;
    int no_repeat_ngram;
    int batch_size;            /* inputs per generation batch: 32 */
    int use_stemmer;           /* ROUGE Porter stemming */
    int lead;                  /* words of the lead baseline; 0: none */
    int resamples;             /* bootstrap: 1000 */
    uint64_t seed;             /* bootstrap: 12345 */
    int exposure_max_len;      /* L; 0: max_target_tokens */
    int speed;                 /* 1: measure cost (memory, latency, throughput) */
    int speed_examples;        /* inputs timed: 50 */
    int speed_beam;            /* beam width of the beam-search timings: --beam, else 4 */
    int threads;
    /* called while generating: (what, done, total) */
    void (*progress)(const char *what, long done, long total, void *ctx);
    void *progress_ctx;
} EvalOptions;

void eval_options_default(EvalOptions *o);

/* One system's outputs and scores on the n examples. */
typedef struct {
    char *name;                /* "model", "baseline", "lead-10" */
    char *dir;                 /* model directory, NULL for lead */
    char **hyps;               /* (n) outputs, special tokens skipped */
    RougeScores *rouge;        /* (n) */
    RougeScores rouge_mean;
    double *sentence_bleu;     /* (n) */
    double sentence_bleu_mean;
    BleuStats *bleu_stats;     /* (n) */
    BleuResult bleu;
    ChrfStats *chrf_stats;     /* (n) */
    ChrfResult chrf;
    TextStats text;
    size_t *hyp_words, *ref_words; /* (n) whitespace tokens */
    unsigned char *repeats;    /* (n) 1 when the output repeats a token at once */
    double copy6_share;        /* outputs that copy >= 6 consecutive source words (0-1) */
    int has_loss;              /* models only */
    double test_xent;          /* evaluate_loss: mean token cross-entropy on the references */
    long test_tokens;
    double *nll_sum;           /* (n) per-example summed NLL of the reference tokens */
    long *nll_tokens;          /* (n) */
    double gen_seconds;        /* generating the n outputs */
    long gen_tokens;           /* new tokens generated, eos included */
    size_t n_params;
} EvalSystem;

typedef struct {
    int measured;
    size_t n_params;
    long long disk_bytes;        /* model.safetensors */
    long long peak_rss_bytes;    /* child that loaded the model and generated (ru_maxrss) */
    long long base_rss_bytes;    /* that child's resident set right after fork */
    double greedy_ms_median, greedy_ms_p90, beam_ms_median, beam_ms_p90; /* batch 1 */
    double greedy_tokens_per_s, beam_tokens_per_s;                       /* batched */
    double greedy_inputs_per_s, beam_inputs_per_s; /* batched: inputs done per second (the same
                                                      inputs for model and baseline: the speed-up) */
    int examples, beam, batch_size;
} EvalCost;

enum { EVAL_MAX_DIFFS = 16 };

typedef struct {
    const char *key;    /* JSON key: "rouge1", "bleu", ... */
    const char *label;  /* table label */
    BootstrapResult r;  /* model - baseline */
} EvalDiff;

typedef struct {
    EvalOptions opt;
    size_t n;
    char **ids, **sources, **refs;
    int source_budget;           /* tokens after clipping to the models' positions */
    EvalSystem model, baseline, lead;
    int has_baseline, has_lead;
    EvalCost cost_model, cost_baseline;
    int has_exposure;
    ExposureBias exposure;
    char *exposure_oracle;
    EvalDiff diffs[EVAL_MAX_DIFFS];
    int n_diffs;
    BleuOptions bleu_opt;
    ChrfOptions chrf_opt;
    double seconds;
    int speed_only;              /* the report holds the cost only (EvalOptions.speed_only) */
} EvalReport;

/* Runs the whole evaluation. Cost (when o->speed) is measured first, in forked children, so
 * that no model is resident in the parent. 0 or -1 ("FILE:LINE: reason" for bad data). */
int eval_run(const EvalOptions *o, EvalReport *r);
void eval_report_free(EvalReport *r);

/* The report as a JSON object (cJSON; free with cJSON_Delete): settings, signatures, every
 * number, per-example scores. NULL on allocation failure. */
struct cJSON *eval_report_json(const EvalReport *r);
int eval_write_json(const EvalReport *r, const char *path);
/* One JSON line per example: id, source, reference, prediction (and baseline, lead). */
int eval_write_generations(const EvalReport *r, const char *path);
/* The table a person reads: model | baseline | difference [95% CI] | lead, then cost and
 * exposure bias. malloc'd text (free()), NULL on allocation failure. */
char *eval_report_table(const EvalReport *r);

/* ---- Cost ------------------------------------------------------------------------------- */

/* Forks a child that loads dir's model, generates (greedy and beam) for the given sources,
 * and exits; *peak_rss_bytes gets its maximum resident set (wait4's ru_maxrss, the same
 * figure getrusage(RUSAGE_CHILDREN) gives a fresh parent), *base_rss_bytes its resident
 * set right after fork. 0 or -1. */
int eval_measure_memory(const char *dir, const int *const *src, const int *src_len, int n, int batch_size,
                        int max_new_tokens, int beam, long long *peak_rss_bytes, long long *base_rss_bytes);

/* Median and p90 of n values (sorted copy; linear interpolation as numpy's default). */
double eval_percentile(const double *v, int n, double q);

/* ---- Dev ROUGE-L during training ------------------------------------------------------- */

/* An evaluator for the training loop (train.h): dev loss on every dev pair (logged as
 * dev_loss) and ROUGE-L F (x100, rouge-score conventions, no stemming) of the model's
 * outputs on the first n_rouge dev pairs, decoded with gen (logged as dev_rougeL). The
 * selection value (higher is better) is ROUGE-L - 1e-4 x dev loss: ties, as when nothing
 * is generated yet, go to the lower loss. refs[i] is pair i's reference text. */
typedef struct {
    const PairSet *dev;
    const char *const *refs;
    size_t n_rouge;
    const Tokenizer *tok;
    GenConfig gen;
    int batch_size;        /* inputs per generation batch */
    int batch_tokens, max_batch;
    double last_seconds;   /* the last evaluation's generation time */
} DevRougeEval;

Evaluator dev_rouge_eval_iface(DevRougeEval *e);

/* Mean ROUGE-L F x100 of m's outputs (decoded with gc, batch inputs at a time) on the first
 * n pairs of ps against refs; *seconds (may be NULL) the generation time. 0 or -1. */
int rouge_of_outputs(Model *m, const Tokenizer *tok, const PairSet *ps, const char *const *refs, size_t n,
                     const GenConfig *gc, int batch, double *rougeL, double *seconds);

#endif
