/* generate.h: text generation with a tutor model: greedy search, beam search (Hugging Face's
 * BeamSearchScorer rules) and sampling (temperature, top-k, top-p), K results per input,
 * batched over inputs and hypotheses with a key/value cache. Decoding settings follow Hugging
 * Face's GenerationConfig and are read from / written to its generation_config.json.
 * docs/generation.md describes the methods and the semantics followed. */
#ifndef TUTOR_GENERATE_H
#define TUTOR_GENERATE_H

#include <stdint.h>

#include "tutor/model.h"
#include "tutor/tokenizer.h"

/* Hugging Face's early_stopping: false (heuristic), true, or "never". */
enum { EARLY_STOP_HEURISTIC = 0, EARLY_STOP_TRUE = 1, EARLY_STOP_NEVER = 2 };

typedef struct {
    int max_new_tokens;      /* -1: unset, then max_length applies */
    int max_length;          /* HF: prompt (decoder-only) or decoder start (enc-dec) + new; 20 */
    int min_new_tokens;      /* eos is suppressed until this many new tokens; 0 */
    int min_length;          /* HF's absolute form of the same; 0 */
    int num_beams;           /* 1 = no beam search */
    double length_penalty;   /* beam score = sum_logprobs / new_tokens ** length_penalty; 1.0 */
    int early_stopping;      /* EARLY_STOP_*; HF default false */
    int do_sample;
    double temperature;      /* 1.0 */
    int top_k;               /* 50 as in HF; 0 = off */
    double top_p;            /* 1.0 = off */
    int no_repeat_ngram_size;
    double repetition_penalty; /* 1.0 = off */
    int num_return_sequences;  /* results per input; <= num_beams under beam search */
    int decoder_start_id, bos_id, eos_id, pad_id, forced_bos_id, forced_eos_id; /* -1: none */
    uint64_t seed;             /* sampling; each input draws from its own stream (seed, index) */
    int full_recompute;        /* testing: each step runs the model on the whole prefix, no cache */
    int vocab_limit;           /* ids >= this are never generated (a tokenizer with fewer ids than
                                  the model's vocabulary, padded as HF pads embeddings); 0: none */
} GenConfig;

/* Hugging Face's defaults (GenerationConfig()) with no token ids. */
void gen_config_default(GenConfig *g);
/* Defaults plus the token ids a model's config.json carries. */
void gen_config_from_model(GenConfig *g, const ModelConfig *c);
/* What Hugging Face's generate() uses for a model directory: the model's ids, then
 * DIR/generation_config.json, or, without one (checkpoints saved before transformers 4.26),
 * the generation keys of DIR/config.json (num_beams, max_length, no_repeat_ngram_size, ...).
 * 0 or -1. */
int gen_config_for_dir(GenConfig *g, const ModelConfig *c, const char *dir);
/* Overrides g with the keys present in a generation_config.json. 0 or -1 ("PATH: reason"). */
int gen_config_load(GenConfig *g, const char *path);
/* Writes generation_config.json (atomically), the keys above that differ from HF's defaults
 * plus the token ids. 0 or -1. */
int gen_config_save(const GenConfig *g, const char *path);
/* Sets g->vocab_limit when the tokenizer has fewer ids than the model: those ids have no
 * text, so they are never generated (HF would emit them and its tokenizer drop them). */
void gen_config_limit_to_tokenizer(GenConfig *g, const ModelConfig *c, const Tokenizer *tok);
/* Checks values (ranges, num_return_sequences <= num_beams, ...). 0 or -1 with the reason. */
int gen_config_check(const GenConfig *g);

/* Decoding flags as the commands take them (tutor generate, tutor eval, ...): each unset
 * until given, then applied over a model's generation_config.json. One parser validates
 * every value and names the flag and the accepted range. */
typedef struct {
    int num_beams, top_k, num_return, max_new, min_new, no_repeat_ngram, early_stopping; /* -1: unset */
    int sample;                                           /* --sample given */
    double temperature, top_p, repetition_penalty, length_penalty; /* NAN: unset */
    long long seed;                                       /* -1: unset */
} GenFlags;

void gen_flags_init(GenFlags *f);
/* flag is argv[i], value argv[i+1] (may be NULL at the end). Returns 2 when the flag and
 * its value were taken, 1 when a flag without value was (--sample), 0 when it is not a
 * decoding flag, -1 on a bad or missing value (the message names the flag and the range). */
int gen_flags_parse(GenFlags *f, const char *flag, const char *value);
/* Applies the flags that are set over g (--top-p alone turns top-k off, as nucleus
 * sampling; --beam > 1 turns sampling off). */
void gen_flags_apply(const GenFlags *f, GenConfig *g);
/* The help lines of these flags. */
extern const char GEN_FLAGS_HELP[];

/* One result: the new tokens (eos included when generated, not the prompt or decoder start),
 * their log-probability under the model's unmodified distribution (sum of log-softmax of the
 * raw logits), and the ranking score: beam search's sum_logprobs / len ** length_penalty
 * (sum of the processed scores the search used); for greedy and sampling, the logprob. */
typedef struct {
    const int *tokens;
    int n_tokens;
    double score, logprob;
} GenHypothesis;

typedef struct {
    int n;                 /* num_return_sequences */
    GenHypothesis *hyps;   /* best first under beam search; sample order otherwise */
} GenOutput;

typedef struct Generator Generator;

/* A generator for a model and settings, with every buffer sized for calls of up to
 * max_inputs inputs of up to max_src_tokens tokens (source for encoder-decoders, prompt for
 * decoder-only models). The model must outlive it; its activation arena is used for the
 * encoder. NULL with a reason on error. */
Generator *generator_new(Model *m, const GenConfig *g, int max_inputs, int max_src_tokens);
void generator_free(Generator *gen);
/* Generates for n inputs: src[i] holds src_len[i] token ids (an encoder-decoder's source,
 * with its special tokens; a decoder-only model's prompt), stream[i] picks input i's random
 * stream (its index in the data, so results do not depend on batching or threads).
 * *out receives n outputs, valid until the next call. Allocates nothing. 0 or -1. */
int generator_run(Generator *gen, int n, const int *const *src, const int *src_len, const uint64_t *stream,
                  const GenOutput **out);
/* The same with input i's sampling seed seeds[i] instead of the config's (NULL: the config's):
 * input i draws from stream (seeds[i], stream[i]) whatever else shares the batch. */
int generator_run_seeded(Generator *gen, int n, const int *const *src, const int *src_len, const uint64_t *stream,
                         const uint64_t *seeds, const GenOutput **out);
/* Continuous batching: generator_serve runs one decoding batch that inputs join at step
 * boundaries and leave when finished. Before every step it calls admit(ctx, room, ...) for up
 * to room new inputs (their sources, random streams, seeds and a tag of the caller's), and
 * done(ctx, tag, out) as each input finishes (out NULL when its source was refused; the
 * reason is tt_errmsg()). It returns 0 once nothing is decoding and admit gave nothing, -1 on
 * an error. Each input's result equals generator_run's for it alone. */
typedef struct {
    int (*admit)(void *ctx, int room, const int **src, int *src_len, uint64_t *stream, uint64_t *seed, void **tag);
    void (*done)(void *ctx, void *tag, const GenOutput *out);
    void *ctx;
} GenServe;
int generator_serve(Generator *gen, const GenServe *cb);
/* A generator for generator_serve: its key/value pool holds `waves` full batches' worth of
 * hypotheses (rows are reclaimed only when nothing decodes; 0: generator_new's size). */
Generator *generator_new_pooled(Model *m, const GenConfig *g, int max_inputs, int max_src_tokens, int waves);
/* Largest number of new tokens an input may receive (from max_new_tokens / max_length). */
int gen_max_new_tokens(const GenConfig *g, const ModelConfig *c, int prompt_len);

/* ---- Sampling from a mixture of two models ---------------------------------------------------
 * Token by token from alpha p_b + (1 - alpha) p_a (MiniLLM's teacher-mixed sampling: a the
 * student, b the teacher), both models decoding in lockstep with their own key/value caches.
 * Pure sampling (no logits processors); ids >= vocab_limit (when > 0) are never drawn. Input i
 * draws from stream (seed, stream[i]). */
typedef struct MixedSampler MixedSampler;
MixedSampler *mixed_sampler_new(Model *a, Model *b, int max_inputs, int max_src, int max_new);
void mixed_sampler_free(MixedSampler *s);
/* tokens: input i's new tokens at tokens[i * mixed_sampler_stride(s)], n_tokens[i] of them
 * (eos included when drawn); valid until the next call. 0 or -1. */
int mixed_sampler_run(MixedSampler *s, int n, const int *const *src, const int *src_len, const uint64_t *stream,
                      uint64_t seed, double alpha, int vocab_limit, const int **tokens, const int **n_tokens);
int mixed_sampler_stride(const MixedSampler *s);

/* ---- Pseudo-target files (JSONL) ------------------------------------------------------------ */

/* Generating for a whole JSONL file: each line's source is encoded as training does
 * (<s> text </s>, specials in the text kept as plain text), truncated to max_source_tokens
 * (the closing </s> kept), and one line is written per input, in input order, flushed as
 * soon as its batch is done:
 *   {"id": ..., "source": ..., "targets": [...], "scores": [...], "logprobs": [...]}
 * Targets are decoded with special tokens skipped. Input i draws from random stream i, so
 * results do not depend on batch size, threads or resuming. */
typedef struct {
    const char *input_path;
    const char *output_path;   /* NULL: standard output */
    const char *source_field;  /* default "source" */
    const char *id_field;      /* default "id" */
    int batch_size;            /* inputs per batch (default 16) */
    int max_source_tokens;     /* default 256 */
    int resume;                /* keep the output's complete lines and skip their inputs */
    /* called after each batch: inputs done (skipped ones included), total, seconds */
    void (*progress)(long done, long total, double elapsed_s, void *ctx);
    void *progress_ctx;
} GenFileOptions;

void gen_file_options_default(GenFileOptions *o);
/* 0, or -1 with "FILE:LINE: reason" (input) or another reason. */
int generate_file(Model *m, const Tokenizer *tok, const GenConfig *g, const GenFileOptions *o);

/* For --resume: counts the complete lines of an output file and cuts a partial last line
 * (a killed run's), so that writing may continue after them. A missing file counts 0.
 * 0 or -1. */
int gen_output_resume(const char *path, long *n_complete);

#endif
