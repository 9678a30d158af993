/* evaluate_internal.h: what the files of `tutor eval` (evaluate.c, evaluate_cost.c,
 * evaluate_report.c) share and nobody else needs: the decoding settings an evaluation uses,
 * and batched generation over a pair set's sources. Internal to src/metrics. */
#ifndef TUTOR_METRICS_EVALUATE_INTERNAL_H
#define TUTOR_METRICS_EVALUATE_INTERNAL_H

#include "tutor/evaluate.h"

/* The model's generation_config.json when its directory has one (dir may be NULL), then
 * deterministic search: num_beams = beam (1: greedy), no sampling, one result, at most
 * max_new_tokens new tokens, the given length penalty. 0 or -1. */
/* The decoding of the quality measurements: the model's generation_config.json (HF's
 * defaults without one; o->max_new_tokens when it sets no budget), then o->gen's flags;
 * one result per input. 0 or -1. */
int eval_quality_gen_config(const ModelConfig *c, const char *dir, const EvalOptions *o, GenConfig *g);
int eval_gen_config(const Model *m, const char *dir, int beam, double length_penalty, int max_new_tokens,
                    GenConfig *g);

/* Generates for pairs [0, n) of ps in batches of batch_size with gen (sized for it). For
 * each pair i: tokens[i] (malloc'd, may be NULL when tokens is NULL) and n_tokens[i] the
 * new tokens; *total_tokens their sum; *seconds the time spent in generator_run. */
int eval_generate_pairs(Generator *gen, const PairSet *ps, size_t n, int batch_size, int **tokens, int *n_tokens,
                        long *total_tokens, double *seconds,
                        void (*progress)(const char *what, long done, long total, void *ctx), const char *what,
                        void *ctx);

/* Longest source among the first n pairs. */
int pairset_max_source(const PairSet *ps, size_t n);

/* Cost measures of one model (loaded in the parent) into c; times interleaved with other's
 * when other is not NULL (the baseline): model, baseline, model, baseline ... */
int eval_measure_speed(Model *m, const char *dir, const PairSet *ps, Model *other, const char *other_dir,
                       const PairSet *other_ps, const EvalOptions *o, EvalCost *c, EvalCost *other_cost);

#endif
