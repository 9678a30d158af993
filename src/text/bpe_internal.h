/* bpe_internal.h: what the byte-level BPE files of src/text share and nobody else needs:
 * the Tokenizer struct, GPT-2's byte <-> unicode mapping, UTF-8 checking, the GPT-2
 * pre-tokenizer, and the small hash tables the encoder and the trainer are built on. */
#ifndef TUTOR_BPE_INTERNAL_H
#define TUTOR_BPE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tutor/core.h"
#include "tutor/data.h"
#include "tutor/tokenizer.h"

/* ---- byte <-> unicode (GPT-2's bytes_to_unicode) ---- */

/* The code point byte b is spelled with in vocabularies: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for U+0100.. in byte order. */
uint32_t bpe_byte_to_codepoint(uint8_t b);
/* The byte a code point spells, or -1 if it is not one of the 256. */
int bpe_codepoint_to_byte(uint32_t cp);
/* Appends the vocabulary spelling of n bytes (UTF-8, at most 2 bytes per input byte) to dst,
 * NUL-terminated; returns its length. dst must hold 2 * n + 1 bytes. */
size_t bpe_bytes_to_spelling(const uint8_t *src, size_t n, char *dst);
/* Reads a vocabulary spelling back into bytes; dst holds at least strlen(spelling) bytes.
 * Returns the byte count, or -1 if a character is not a byte symbol. */
long bpe_spelling_to_bytes(const char *spelling, size_t n, uint8_t *dst);

/* UTF-8: utf8_first_invalid, utf8_replace_invalid, utf8_sequence_len (data.h, utf8.c). */

/* ---- GPT-2 pre-tokenizer ---- */

/* End of the pre-token starting at i (i < n) under GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s the Unicode White_Space property (as in Python's regex module and Oniguruma).
 * s must be valid UTF-8. */
size_t bpe_pretoken_end(const uint8_t *s, size_t n, size_t i);

/* ---- hashing ---- */

uint64_t bpe_hash_bytes(const void *p, size_t n);
static inline uint64_t bpe_hash_u64(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return x;
}
static inline uint64_t bpe_pair_key(int left, int right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

/* A string -> int map (open addressing; keys are copied into an arena). Used for the
 * vocabulary at load time and for word counts in training. */
typedef struct {
    uint64_t *hashes;  /* 0 = empty slot */
    uint32_t *key_off; /* offset of the key in arena */
    uint32_t *key_len;
    int64_t *values;
    size_t n_slots, n_used;
    char *arena;
    size_t arena_len, arena_cap;
} StrMap;

int strmap_init(StrMap *m, size_t expected);
void strmap_free(StrMap *m);
/* Pointer to the value of key, inserting it with value 0 when absent (*inserted = 1).
 * NULL on allocation failure or a key past 4 GiB of keys. */
int64_t *strmap_upsert(StrMap *m, const void *key, size_t len, int *inserted);
/* Pointer to the value, or NULL if absent. */
int64_t *strmap_get(const StrMap *m, const void *key, size_t len);
/* The key stored in slot i (for iteration over slots with hashes[i] != 0). */
static inline const char *strmap_key(const StrMap *m, size_t slot) {
    return m->arena + m->key_off[slot];
}

/* ---- the tokenizer ---- */

typedef struct {
    int id;
    char *content;
    size_t len;
    int special, lstrip, rstrip, single_word, normalized;
} AddedToken;

/* pre-token bytes -> ids, one per cache slot of a Tokenizer. */
typedef struct WordCache WordCache;
enum { TOKENIZER_CACHE_SLOTS = 8 };

struct Tokenizer {
    int n_ids;           /* largest id + 1 */
    /* vocabulary spellings (NUL-terminated) and raw bytes of each id; a hole (no token with
     * that id) has spell_off[i] == UINT32_MAX */
    char *spell_blob;
    uint32_t *spell_off;
    uint8_t *bytes_blob;
    uint32_t *bytes_off; /* n_ids + 1 entries: bytes of id i are [bytes_off[i], bytes_off[i+1]) */
    StrMap spelling_ids; /* spelling -> id */
    int byte_id[256];    /* id of each byte symbol */

    /* merges in rank order, and (left, right) -> rank << 32 | merged id */
    int n_merges;
    int *merge_left, *merge_right, *merge_result;
    uint64_t *merge_keys; /* UINT64_MAX = empty */
    uint64_t *merge_vals;
    size_t merge_mask;

    AddedToken *added;
    int n_added;
    uint8_t added_first_byte[256]; /* 1 if some added token starts with this byte */
    uint8_t *is_special;           /* n_ids flags */

    int add_prefix_space;
    int cls_id, sep_id; /* post-processor <cls> X <sep>; -1 when there is none */
    int bos_id, eos_id, pad_id, unk_id;

    struct {
        pthread_mutex_t lock;
        WordCache *cache;
    } caches[TOKENIZER_CACHE_SLOTS];
};

/* Builds a tokenizer from vocabulary spellings (spellings[id], NULL for holes), merges as
 * spelling pairs in rank order, and added tokens (copied). what names the source for error
 * messages. cls_id/sep_id: the post-processor, -1 for none. NULL on error. */
Tokenizer *bpe_tokenizer_build(const char *const *spellings, int n_ids,
                               const char *const *merge_pairs /* 2 * n_merges */, int n_merges,
                               const AddedToken *added, int n_added, int add_prefix_space,
                               int cls_id, int sep_id, const char *what);

#endif
