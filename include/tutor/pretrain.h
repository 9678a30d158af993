/* pretrain.h: self-supervised pretraining of an encoder-decoder on unlabeled text, as a batch
 * source for the open training loop (train.h). Objectives:
 *   - text infilling (BART): spans of whole words with Poisson(lambda) lengths cover
 *     mask_ratio of the words; each span becomes one <mask> (a zero-length span inserts
 *     one); the sentences are first permuted; the target is the original text.
 *   - gap sentences (PEGASUS, "Ind-Orig"): the sentences most similar to the rest of the
 *     document (ROUGE-1 F1 on token ids) are removed, each replaced by <mask>; the target
 *     is those sentences in document order. Documents of one sentence fall back to
 *     infilling.
 *   - mix: each document, each epoch, takes one of the two at random.
 * The noise of document i in epoch e depends only on (seed, e, i), so a run's position in
 * the batcher is its whole resumable state. docs/pretraining.md has the details. */
#ifndef TUTOR_PRETRAIN_H
#define TUTOR_PRETRAIN_H

#include <stdint.h>

#include "tutor/train.h"

typedef enum { NOISE_INFILL = 0, NOISE_GAP_SENTENCES = 1, NOISE_MIX = 2 } NoiseObjective;

typedef struct {
    NoiseObjective objective;
    double mask_ratio;      /* share of words infilling masks (0.3) */
    double poisson_lambda;  /* span lengths (3) */
    int permute_sentences;  /* infilling permutes sentences first (1) */
    double gap_ratio;       /* share of sentences gap-sentence selection removes (0.3; at least 1) */
    double mix_gap_prob;    /* mix: probability of gap sentences (0.5) */
} NoiseOptions;

void noise_options_default(NoiseOptions *o);
int noise_objective_parse(const char *s, NoiseObjective *out);
const char *noise_objective_name(NoiseObjective o);

/* Where words and sentences start in a token sequence, from the tokens' bytes: a word
 * starts at a token that begins with white space (or after a line break); a sentence ends
 * after a token ending in . ! or ? followed by white space, and after a line break. */
typedef struct {
    uint8_t *word_start; /* per id: the token begins with white space */
    uint8_t *sent_end;   /* per id: the token ends in . ! ? */
    uint8_t *newline;    /* per id: the token holds a line break */
    int n_ids;
    int mask_id;
    /* scratch of the noise functions: one TokenClasses per thread */
    int *count_doc, *count_sent;
    struct NoiseScratch *scratch;
} TokenClasses;

int token_classes_init(TokenClasses *tc, const Tokenizer *tok, int mask_id);
void token_classes_free(TokenClasses *tc);

/* Noises doc[0..n) (text tokens, no <s> or </s>) for one example: writes the noised
 * source to src (at most n tokens; capacity n) and the target to tgt (capacity n); returns
 * 0 and the lengths, or -1 with an error. rng drives every choice. */
int noise_document(const TokenClasses *tc, const NoiseOptions *o, const int *doc, int n, Rng *rng, int *src,
                   int *src_len, int *tgt, int *tgt_len);

/* The pretraining batch source over documents (text tokens, each at most max_tokens - 2,
 * stored in ps's src fields without <s> </s>). */
typedef struct DenoiseSource DenoiseSource;
DenoiseSource *denoise_source_new(const PairSet *docs, const TokenClasses *tc, const NoiseOptions *no,
                                  const ModelConfig *c, int batch_tokens, int max_batch, int max_tokens,
                                  uint64_t seed);
void denoise_source_free(DenoiseSource *s);
BatchSource denoise_source_iface(DenoiseSource *s);
/* Noises every document once with a fixed seed into a PairSet (<s> src </s>, tgt </s>): the
 * held-out set the denoising loss is evaluated on. */
int denoise_fixed_pairs(PairSet *out, const PairSet *docs, const TokenClasses *tc, const NoiseOptions *no,
                        const Tokenizer *tok, uint64_t seed);

/* Documents for pretraining: the source field of JSONL files (targets are ignored), or the
 * lines of plain-text files (a path not ending in .jsonl: one document per line), tokenised
 * and cut to max_tokens - 2 text tokens. Documents of fewer than 2 tokens are dropped and
 * counted in *n_dropped. */
int pretrain_docs_load(PairSet *docs, const char *const *paths, int n_paths, const JsonlOptions *jo,
                       const Tokenizer *tok, int max_tokens, size_t *n_dropped);

#endif
