/* tokenizer.h: byte-level BPE as GPT-2 and BART use it: training from text, encoding to
 * ids and decoding back, saved and loaded as Hugging Face's tokenizer.json (and GPT-2/BART's
 * vocab.json + merges.txt). decode(encode(x)) == x for every valid UTF-8 string.
 * Thread safety: a loaded Tokenizer is read-only; any number of threads may encode and
 * decode with one Tokenizer at once (encoding caches sit in a small pool of locked slots). */
#ifndef TUTOR_TOKENIZER_H
#define TUTOR_TOKENIZER_H

#include <stddef.h>

typedef struct Tokenizer Tokenizer;

/* BART's special tokens and ids, the ones `tutor tokenizer train` gives a new tokenizer. */
#define TOKENIZER_BOS "<s>"
#define TOKENIZER_PAD "<pad>"
#define TOKENIZER_EOS "</s>"
#define TOKENIZER_UNK "<unk>"
/* Ids a loaded tokenizer may use: [0, TOKENIZER_MAX_IDS). */
#define TOKENIZER_MAX_IDS (1 << 22)

/* Loads a tokenizer from: a tokenizer.json file; a directory holding tokenizer.json; or a
 * directory holding vocab.json + merges.txt (or GPT-2's encoder.json + vocab.bpe).
 * Only byte-level BPE is accepted. NULL with "PATH: reason" on error. */
Tokenizer *tokenizer_load(const char *path);
/* Loads GPT-2/BART's two-file form: vocab (token -> id JSON) and merges ("a b" per line,
 * an optional "#version" first line). Special tokens are taken from the vocabulary:
 * <s> <pad> </s> <unk> <mask> (BART) and <|endoftext|> (GPT-2). BART's form (<s> and </s>
 * present) gets BART's post-processor <s> X </s>; GPT-2's adds nothing. */
Tokenizer *tokenizer_load_gpt2(const char *vocab_path, const char *merges_path);
/* Writes Hugging Face's tokenizer.json atomically (temp file, fsync, rename). A directory
 * path gets DIR/tokenizer.json. 0 or -1. */
int tokenizer_save(const Tokenizer *tok, const char *path);
void tokenizer_free(Tokenizer *tok);
/* Writes DIR/tokenizer.json and the files Hugging Face's AutoTokenizer needs to load it as
 * it is (tokenizer_config.json with tokenizer_class PreTrainedTokenizerFast and the special
 * tokens, special_tokens_map.json). model_max_length <= 0: not written. 0 or -1. */
int tokenizer_save_dir(const Tokenizer *tok, const char *dir, int model_max_length);
/* A copy of tok with content as a special added token (BART's "<mask>", lstrip as BART
 * has it) at the next free id; the same tokenizer copied when it already has it as a
 * special token. *id (may be NULL) gets its id. NULL with an error otherwise. */
Tokenizer *tokenizer_add_special(const Tokenizer *tok, const char *content, int lstrip, int *id);
#define TOKENIZER_MASK "<mask>"

/* Number of ids (largest id + 1), added tokens included. */
int tokenizer_vocab_size(const Tokenizer *tok);
int tokenizer_n_merges(const Tokenizer *tok);
/* Ids of the special tokens, -1 when the tokenizer has none. bos/eos are what the
 * post-processor puts around a sequence (<s> and </s> in BART); GPT-2's <|endoftext|> is
 * its bos and eos. */
int tokenizer_bos_id(const Tokenizer *tok);
int tokenizer_eos_id(const Tokenizer *tok);
int tokenizer_pad_id(const Tokenizer *tok);
int tokenizer_unk_id(const Tokenizer *tok);
/* The id of a token given in its vocabulary spelling (byte-level: "Ġthe" for " the"), or -1. */
int tokenizer_token_id(const Tokenizer *tok, const char *token);
/* The vocabulary spelling of id (NUL-terminated, owned by tok), or NULL if none. */
const char *tokenizer_token_str(const Tokenizer *tok, int id);
/* The raw bytes id stands for (may be part of a UTF-8 character): what a streaming
 * decoder concatenates. NULL if id is not in the vocabulary. */
const char *tokenizer_token_bytes(const Tokenizer *tok, int id, size_t *n_bytes);
/* 1 if id is a special added token (<s>, </s>, <pad>, ...), else 0. */
int tokenizer_is_special(const Tokenizer *tok, int id);

/* A growable array of ids. Zero-initialise it; tokenizer_encode reuses its memory. */
typedef struct {
    int *ids;
    size_t n, cap;
} TokenIds;
void token_ids_free(TokenIds *v);

typedef struct {
    int add_special;     /* 1: the post-processor's template, <s> X </s> in BART */
    int parse_special;   /* 1: added tokens written in the text ("</s>") become their ids,
                          * as Hugging Face does by default; 0: they are plain text */
    int replace_invalid; /* 1: each invalid UTF-8 sequence becomes U+FFFD and is counted;
                          * 0: invalid UTF-8 is an error */
} TokenizerEncodeOptions;

/* Encodes len bytes of text into out (its old contents are replaced). opt NULL means all
 * zero. *n_replaced (may be NULL) gets the number of invalid UTF-8 sequences replaced.
 * 0, or -1 with "invalid UTF-8 at byte N" (N 1-based) or another reason. */
int tokenizer_encode(const Tokenizer *tok, const char *text, size_t len,
                     const TokenizerEncodeOptions *opt, TokenIds *out, size_t *n_replaced);

/* Decodes ids to a malloc'd NUL-terminated UTF-8 string (*n_bytes its length, may be NULL).
 * skip_special drops special added tokens. Byte sequences that are not valid UTF-8 (ids
 * cut inside a character) come out as U+FFFD, as in Hugging Face. NULL on an unknown id. */
char *tokenizer_decode(const Tokenizer *tok, const int *ids, size_t n, int skip_special,
                       size_t *n_bytes);

/* Training: standard BPE over pre-token counts. Feed texts with bpe_trainer_add, then
 * bpe_trainer_finish learns merges of the most frequent pair until the vocabulary has
 * vocab_size ids (4 specials, 256 byte symbols, then merges), or no pair is seen at least
 * min_frequency times. Ties in count go to the pair whose (left, right) byte strings are
 * smallest, so the result depends only on the texts and options. */
typedef struct {
    int vocab_size;      /* at least 260 */
    int min_frequency;   /* default 2 */
    int replace_invalid; /* as in TokenizerEncodeOptions */
} BpeTrainOptions;
void bpe_train_options_default(BpeTrainOptions *opt); /* vocab_size 8000, min_frequency 2 */

typedef struct BpeTrainer BpeTrainer;
BpeTrainer *bpe_trainer_new(const BpeTrainOptions *opt);
/* Adds one text's pre-tokens to the counts. 0, or -1 on invalid UTF-8 (unless replaced). */
int bpe_trainer_add(BpeTrainer *tr, const char *text, size_t len);
/* Invalid UTF-8 sequences replaced so far (under replace_invalid). */
size_t bpe_trainer_replaced(const BpeTrainer *tr);
/* Learns the merges and returns the tokenizer (with BART's specials and post-processor).
 * The trainer is left empty; free it with bpe_trainer_free. */
Tokenizer *bpe_trainer_finish(BpeTrainer *tr);
void bpe_trainer_free(BpeTrainer *tr);

/* The same in one call, over n NUL-terminated texts. */
Tokenizer *bpe_train(const char *const *texts, size_t n, const BpeTrainOptions *opt);

#endif
