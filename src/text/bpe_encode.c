/* bpe_encode.c: the byte-level BPE tokenizer at run time: built from a vocabulary and
 * merges, it encodes text (pre-tokenize, then merge each pre-token's bytes by rank) and
 * decodes ids. Speed comes from a cache of pre-token -> ids and a merge loop over a pair
 * -> rank hash table: a linear scan of ranks for short words, a heap for long ones. */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

#define NO_MERGE UINT64_MAX
#define NO_RANK UINT32_MAX
/* Pre-tokens up to this many bytes merge with the linear scan; longer ones use the heap. */
#define SHORT_WORD_BYTES 48

/* ---- the word cache ---- */

typedef struct {
    uint64_t hash; /* 0 = empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} CacheEntry;

struct WordCache {
    CacheEntry *slots;
    size_t n_slots, n_used;
    uint8_t *keys;
    size_t keys_len, keys_cap;
    int *ids;
    size_t ids_len, ids_cap;
};

/* Words longer than this are not cached (rare, and would crowd the arenas). */
#define CACHE_MAX_KEY 255
/* A full cache is emptied and refilled: simple, and the common words come back at once. */
#define CACHE_MAX_ENTRIES (1u << 18)
#define CACHE_MAX_BYTES (16u << 20)

static WordCache *word_cache_new(void) {
    WordCache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->n_slots = 1 << 12;
    c->slots = calloc(c->n_slots, sizeof *c->slots);
    c->keys_cap = 1 << 16;
    c->keys = malloc(c->keys_cap);
    c->ids_cap = 1 << 14;
    c->ids = malloc(c->ids_cap * sizeof *c->ids);
    if (!c->slots || !c->keys || !c->ids) {
        free(c->slots);
        free(c->keys);
        free(c->ids);
        free(c);
        return NULL;
    }
    return c;
}

static void word_cache_free(WordCache *c) {
    if (!c) return;
    free(c->slots);
    free(c->keys);
    free(c->ids);
    free(c);
}

static const CacheEntry *word_cache_get(const WordCache *c, uint64_t h, const uint8_t *w, size_t n) {
    size_t mask = c->n_slots - 1, i = h & mask;
    for (;;) {
        const CacheEntry *e = &c->slots[i];
        if (!e->hash) return NULL;
        if (e->hash == h && e->key_len == n && !memcmp(c->keys + e->key_off, w, n)) return e;
        i = (i + 1) & mask;
    }
}

static void word_cache_clear(WordCache *c) {
    memset(c->slots, 0, c->n_slots * sizeof *c->slots);
    c->n_used = 0;
    c->keys_len = 0;
    c->ids_len = 0;
}

/* Best effort: when memory runs short the word is simply not cached. */
static void word_cache_put(WordCache *c, uint64_t h, const uint8_t *w, size_t n, const int *ids,
                           size_t n_ids) {
    if (n > CACHE_MAX_KEY) return;
    if (c->n_used >= CACHE_MAX_ENTRIES || c->keys_len + n > CACHE_MAX_BYTES) word_cache_clear(c);
    if ((c->n_used + 1) * 2 > c->n_slots) {
        size_t slots = c->n_slots * 2;
        CacheEntry *g = calloc(slots, sizeof *g);
        if (!g) return;
        for (size_t i = 0; i < c->n_slots; i++) {
            if (!c->slots[i].hash) continue;
            size_t j = c->slots[i].hash & (slots - 1);
            while (g[j].hash) j = (j + 1) & (slots - 1);
            g[j] = c->slots[i];
        }
        free(c->slots);
        c->slots = g;
        c->n_slots = slots;
    }
    if (c->keys_len + n > c->keys_cap) {
        size_t cap = c->keys_cap * 2;
        uint8_t *k = realloc(c->keys, cap);
        if (!k) return;
        c->keys = k;
        c->keys_cap = cap;
    }
    if (c->ids_len + n_ids > c->ids_cap) {
        size_t cap = c->ids_cap * 2;
        int *v = realloc(c->ids, cap * sizeof *v);
        if (!v) return;
        c->ids = v;
        c->ids_cap = cap;
    }
    size_t mask = c->n_slots - 1, i = h & mask;
    while (c->slots[i].hash) i = (i + 1) & mask;
    CacheEntry *e = &c->slots[i];
    e->hash = h;
    e->key_off = (uint32_t)c->keys_len;
    e->key_len = (uint16_t)n;
    e->ids_off = (uint32_t)c->ids_len;
    e->n_ids = (uint16_t)n_ids;
    memcpy(c->keys + c->keys_len, w, n);
    c->keys_len += n;
    memcpy(c->ids + c->ids_len, ids, n_ids * sizeof *ids);
    c->ids_len += n_ids;
    c->n_used++;
}

/* ---- merges ---- */

static inline uint64_t merge_lookup(const Tokenizer *t, int left, int right) {
    uint64_t key = bpe_pair_key(left, right);
    size_t i = bpe_hash_u64(key) & t->merge_mask;
    for (;;) {
        uint64_t k = t->merge_keys[i];
        if (k == key) return t->merge_vals[i];
        if (k == NO_MERGE) return NO_MERGE;
        i = (i + 1) & t->merge_mask;
    }
}

/* Merges a short word in place: sym[0..n) -> sym[0..*n). The leftmost pair of lowest
 * rank merges first, as GPT-2's loop merging every occurrence of its best pair does. */
static size_t merge_short(const Tokenizer *t, int *sym, size_t n) {
    uint32_t rank[SHORT_WORD_BYTES];
    int res[SHORT_WORD_BYTES];
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t v = merge_lookup(t, sym[i], sym[i + 1]);
        rank[i] = v == NO_MERGE ? NO_RANK : (uint32_t)(v >> 32);
        res[i] = (int)(uint32_t)v;
    }
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == NO_RANK) break;
        sym[best] = res[best];
        for (size_t i = best + 1; i + 1 < n; i++) sym[i] = sym[i + 1];
        for (size_t i = best + 1; i + 2 < n; i++) {
            rank[i] = rank[i + 1];
            res[i] = res[i + 1];
        }
        n--;
        if (best + 1 < n) {
            uint64_t v = merge_lookup(t, sym[best], sym[best + 1]);
            rank[best] = v == NO_MERGE ? NO_RANK : (uint32_t)(v >> 32);
            res[best] = (int)(uint32_t)v;
        } else {
            rank[best] = NO_RANK;
        }
        if (best > 0) {
            uint64_t v = merge_lookup(t, sym[best - 1], sym[best]);
            rank[best - 1] = v == NO_MERGE ? NO_RANK : (uint32_t)(v >> 32);
            res[best - 1] = (int)(uint32_t)v;
        }
    }
    return n;
}

/* Min-heap of (rank << 32 | position): lowest rank first, leftmost among equals. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

/* Merges a long word (a linked list over positions, a heap of candidate pairs): the same
 * order as merge_short in O(n log n). -1 on allocation failure. */
static long merge_long(const Tokenizer *t, int *sym, size_t n) {
    int *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    uint64_t *heap = malloc(3 * n * sizeof *heap); /* n - 1 pairs, then at most 2 per merge */
    if (!next || !prev || !heap) {
        free(next);
        free(prev);
        free(heap);
        return tt_err("out of memory encoding a %zu-byte word", n);
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int)(i + 1) : -1;
        prev[i] = (int)i - 1;
        if (i + 1 < n) {
            uint64_t v = merge_lookup(t, sym[i], sym[i + 1]);
            if (v != NO_MERGE) heap_push(heap, &hn, (v & 0xFFFFFFFF00000000ull) | i);
        }
    }
    while (hn > 0) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t rank = (uint32_t)(top >> 32);
        int i = (int)(uint32_t)top, j;
        if (sym[i] < 0 || (j = next[i]) < 0) continue;
        uint64_t v = merge_lookup(t, sym[i], sym[j]);
        if (v == NO_MERGE || (uint32_t)(v >> 32) != rank) continue; /* stale entry */
        sym[i] = (int)(uint32_t)v;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        if (prev[i] >= 0) {
            uint64_t w = merge_lookup(t, sym[prev[i]], sym[i]);
            if (w != NO_MERGE) heap_push(heap, &hn, (w & 0xFFFFFFFF00000000ull) | (uint32_t)prev[i]);
        }
        if (next[i] >= 0) {
            uint64_t w = merge_lookup(t, sym[i], sym[next[i]]);
            if (w != NO_MERGE) heap_push(heap, &hn, (w & 0xFFFFFFFF00000000ull) | (uint32_t)i);
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (sym[i] >= 0) sym[k++] = sym[i];
    free(next);
    free(prev);
    free(heap);
    return (long)k;
}

/* ---- encoding ---- */

static int ids_reserve(TokenIds *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < v->n + extra) cap *= 2;
    int *p = realloc(v->ids, cap * sizeof *p);
    if (!p) return tt_err("out of memory for %zu token ids", cap);
    v->ids = p;
    v->cap = cap;
    return 0;
}

void token_ids_free(TokenIds *v) {
    free(v->ids);
    memset(v, 0, sizeof *v);
}

/* Appends the ids of one pre-token (bytes w[0..n)). */
static int encode_word(const Tokenizer *t, WordCache *cache, const uint8_t *w, size_t n,
                       TokenIds *out) {
    uint64_t h = 0;
    if (cache && n <= CACHE_MAX_KEY) {
        h = bpe_hash_bytes(w, n);
        const CacheEntry *e = word_cache_get(cache, h, w, n);
        if (e) {
            if (ids_reserve(out, e->n_ids)) return -1;
            memcpy(out->ids + out->n, cache->ids + e->ids_off, e->n_ids * sizeof(int));
            out->n += e->n_ids;
            return 0;
        }
    }
    if (ids_reserve(out, n)) return -1;
    int *sym = out->ids + out->n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    long m;
    if (n <= SHORT_WORD_BYTES) m = (long)merge_short(t, sym, n);
    else if ((m = merge_long(t, sym, n)) < 0) return -1;
    if (cache && n <= CACHE_MAX_KEY) word_cache_put(cache, h, w, n, sym, (size_t)m);
    out->n += (size_t)m;
    return 0;
}

/* Encodes a piece of text between added tokens: pre-tokens, each merged. */
static int encode_segment(const Tokenizer *t, WordCache *cache, const uint8_t *s, size_t n,
                          TokenIds *out) {
    if (n == 0) return 0;
    uint8_t *prefixed = NULL;
    if (t->add_prefix_space && s[0] != ' ') {
        prefixed = malloc(n + 1);
        if (!prefixed) return tt_err("out of memory");
        prefixed[0] = ' ';
        memcpy(prefixed + 1, s, n);
        s = prefixed;
        n++;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t e = bpe_pretoken_end(s, n, i);
        rc = encode_word(t, cache, s + i, e - i, out);
        i = e;
    }
    free(prefixed);
    return rc;
}

static int is_ascii_space(uint8_t c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }

/* The leftmost-longest added token at or after from: its id, and the span it takes
 * (with lstrip/rstrip whitespace). -1 if none. */
static int find_added(const Tokenizer *t, const uint8_t *s, size_t n, size_t from, size_t *start,
                      size_t *end) {
    for (size_t p = from; p < n; p++) {
        if (!t->added_first_byte[s[p]]) continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < t->n_added; k++) {
            const AddedToken *a = &t->added[k];
            if (a->len > best_len && a->len <= n - p && !memcmp(s + p, a->content, a->len)) {
                best = k;
                best_len = a->len;
            }
        }
        if (best < 0) continue;
        size_t b = p, e = p + best_len;
        if (t->added[best].lstrip)
            while (b > from && is_ascii_space(s[b - 1])) b--;
        if (t->added[best].rstrip)
            while (e < n && is_ascii_space(s[e])) e++;
        *start = b;
        *end = e;
        return t->added[best].id;
    }
    return -1;
}

static WordCache *cache_acquire(const Tokenizer *t, int *slot) {
    Tokenizer *m = (Tokenizer *)t; /* the cache pool is the one mutable part; locked */
    for (int k = 0; k < TOKENIZER_CACHE_SLOTS; k++) {
        if (pthread_mutex_trylock(&m->caches[k].lock) != 0) continue;
        if (!m->caches[k].cache) m->caches[k].cache = word_cache_new();
        if (!m->caches[k].cache) {
            pthread_mutex_unlock(&m->caches[k].lock);
            return NULL;
        }
        *slot = k;
        return m->caches[k].cache;
    }
    return NULL; /* every slot busy: encode without a cache */
}

static void cache_release(const Tokenizer *t, int slot) {
    if (slot >= 0) pthread_mutex_unlock(&((Tokenizer *)t)->caches[slot].lock);
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len,
                     const TokenizerEncodeOptions *opt, TokenIds *out, size_t *n_replaced) {
    static const TokenizerEncodeOptions zero;
    if (!opt) opt = &zero;
    out->n = 0;
    if (n_replaced) *n_replaced = 0;
    const uint8_t *s = (const uint8_t *)text;
    size_t n = len;
    uint8_t *fixed = NULL;
    size_t bad = utf8_first_invalid((const char *)s, n);
    if (bad < n) {
        /* byte offsets in messages are 1-based, as data.h counts them */
        if (!opt->replace_invalid) return tt_err("invalid UTF-8 at byte %zu", bad + 1);
        size_t count;
        fixed = (uint8_t *)utf8_replace_invalid((const char *)s, n, &n, &count);
        if (!fixed) return tt_err("out of memory");
        s = fixed;
        if (n_replaced) *n_replaced = count;
    }
    int slot = -1, rc = 0;
    WordCache *cache = cache_acquire(t, &slot);
    if (opt->add_special && t->cls_id >= 0) {
        if ((rc = ids_reserve(out, 1)) == 0) out->ids[out->n++] = t->cls_id;
    }
    if (rc == 0 && opt->parse_special && t->n_added > 0) {
        size_t pos = 0, b, e;
        while (rc == 0 && pos < n) {
            int id = find_added(t, s, n, pos, &b, &e);
            if (id < 0) {
                rc = encode_segment(t, cache, s + pos, n - pos, out);
                break;
            }
            rc = encode_segment(t, cache, s + pos, b - pos, out);
            if (rc == 0 && (rc = ids_reserve(out, 1)) == 0) out->ids[out->n++] = id;
            pos = e;
        }
    } else if (rc == 0) {
        rc = encode_segment(t, cache, s, n, out);
    }
    if (rc == 0 && opt->add_special && t->sep_id >= 0) {
        if ((rc = ids_reserve(out, 1)) == 0) out->ids[out->n++] = t->sep_id;
    }
    cache_release(t, slot);
    free(fixed);
    return rc;
}

/* ---- decoding ---- */

static int id_known(const Tokenizer *t, int id) {
    return id >= 0 && id < t->n_ids && t->spell_off[id] != UINT32_MAX;
}

char *tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, int skip_special,
                       size_t *n_bytes) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_known(t, ids[i])) {
            tt_err("token id %d at position %zu is not in the vocabulary (%d ids)", ids[i], i,
                   t->n_ids);
            return NULL;
        }
        total += t->bytes_off[ids[i] + 1] - t->bytes_off[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) {
        tt_err("out of memory decoding %zu ids", n);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->is_special[ids[i]]) continue;
        size_t b = t->bytes_off[ids[i]], e = t->bytes_off[ids[i] + 1];
        memcpy(out + k, t->bytes_blob + b, e - b);
        k += e - b;
    }
    out[k] = 0;
    if (utf8_first_invalid(out, k) < k) {
        size_t m, count;
        uint8_t *fixed = (uint8_t *)utf8_replace_invalid(out, k, &m, &count);
        free(out);
        if (!fixed) {
            tt_err("out of memory decoding %zu ids", n);
            return NULL;
        }
        out = (char *)fixed;
        k = m;
    }
    if (n_bytes) *n_bytes = k;
    return out;
}

/* ---- accessors ---- */

int tokenizer_vocab_size(const Tokenizer *t) { return t->n_ids; }
int tokenizer_n_merges(const Tokenizer *t) { return t->n_merges; }
int tokenizer_bos_id(const Tokenizer *t) { return t->bos_id; }
int tokenizer_eos_id(const Tokenizer *t) { return t->eos_id; }
int tokenizer_pad_id(const Tokenizer *t) { return t->pad_id; }
int tokenizer_unk_id(const Tokenizer *t) { return t->unk_id; }

int tokenizer_token_id(const Tokenizer *t, const char *token) {
    int64_t *v = strmap_get(&t->spelling_ids, token, strlen(token));
    return v ? (int)*v : -1;
}

const char *tokenizer_token_str(const Tokenizer *t, int id) {
    return id_known(t, id) ? t->spell_blob + t->spell_off[id] : NULL;
}

const char *tokenizer_token_bytes(const Tokenizer *t, int id, size_t *n_bytes) {
    if (!id_known(t, id)) return NULL;
    if (n_bytes) *n_bytes = t->bytes_off[id + 1] - t->bytes_off[id];
    return (const char *)t->bytes_blob + t->bytes_off[id];
}

int tokenizer_is_special(const Tokenizer *t, int id) {
    return id >= 0 && id < t->n_ids && t->is_special[id];
}

/* ---- building ---- */

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->spell_blob);
    free(t->spell_off);
    free(t->bytes_blob);
    free(t->bytes_off);
    strmap_free(&t->spelling_ids);
    free(t->merge_left);
    free(t->merge_right);
    free(t->merge_result);
    free(t->merge_keys);
    free(t->merge_vals);
    for (int k = 0; k < t->n_added; k++) free(t->added[k].content);
    free(t->added);
    free(t->is_special);
    for (int k = 0; k < TOKENIZER_CACHE_SLOTS; k++) {
        word_cache_free(t->caches[k].cache);
        pthread_mutex_destroy(&t->caches[k].lock);
    }
    free(t);
}

static int spelling_id(const Tokenizer *t, const char *s) {
    int64_t *v = strmap_get(&t->spelling_ids, s, strlen(s));
    return v ? (int)*v : -1;
}

Tokenizer *bpe_tokenizer_build(const char *const *spellings, int n_ids,
                               const char *const *merge_pairs, int n_merges,
                               const AddedToken *added, int n_added, int add_prefix_space,
                               int cls_id, int sep_id, const char *what) {
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        tt_err("%s: out of memory", what);
        return NULL;
    }
    for (int k = 0; k < TOKENIZER_CACHE_SLOTS; k++) pthread_mutex_init(&t->caches[k].lock, NULL);
    t->n_ids = n_ids;
    t->add_prefix_space = add_prefix_space;
    t->cls_id = cls_id;
    t->sep_id = sep_id;

    size_t spell_total = 0;
    for (int i = 0; i < n_ids; i++)
        if (spellings[i]) spell_total += strlen(spellings[i]) + 1;
    t->spell_blob = malloc(spell_total + 1);
    t->spell_off = malloc((size_t)n_ids * sizeof *t->spell_off + 1);
    t->bytes_blob = malloc(spell_total + 1); /* raw bytes are never longer than spellings */
    t->bytes_off = malloc(((size_t)n_ids + 1) * sizeof *t->bytes_off);
    t->is_special = calloc((size_t)n_ids + 1, 1);
    t->added = calloc((size_t)n_added + 1, sizeof *t->added);
    if (!t->spell_blob || !t->spell_off || !t->bytes_blob || !t->bytes_off || !t->is_special ||
        !t->added || strmap_init(&t->spelling_ids, (size_t)n_ids)) {
        tt_err("%s: out of memory", what);
        goto fail;
    }
    if (spell_total > UINT32_MAX - 1) {
        tt_err("%s: vocabulary too large", what);
        goto fail;
    }
    size_t so = 0, bo = 0;
    for (int i = 0; i < n_ids; i++) {
        t->bytes_off[i] = (uint32_t)bo;
        if (!spellings[i]) {
            t->spell_off[i] = UINT32_MAX;
            continue;
        }
        size_t len = strlen(spellings[i]);
        t->spell_off[i] = (uint32_t)so;
        memcpy(t->spell_blob + so, spellings[i], len + 1);
        so += len + 1;
        int inserted;
        int64_t *v = strmap_upsert(&t->spelling_ids, spellings[i], len, &inserted);
        if (!v) goto fail;
        if (!inserted) {
            tt_err("%s: token '%s' has two ids, %d and %d", what, spellings[i], (int)*v, i);
            goto fail;
        }
        *v = i;
        long m = bpe_spelling_to_bytes(spellings[i], len, t->bytes_blob + bo);
        if (m < 0) { /* not byte-level (an added token like "<s>" is): the text itself */
            memcpy(t->bytes_blob + bo, spellings[i], len);
            m = (long)len;
        }
        bo += (size_t)m;
    }
    t->bytes_off[n_ids] = (uint32_t)bo;

    for (int k = 0; k < n_added; k++) {
        const AddedToken *a = &added[k];
        if (a->id < 0 || a->id >= n_ids || !spellings[a->id] || strcmp(spellings[a->id], a->content)) {
            tt_err("%s: added token '%s' (id %d) does not match the vocabulary", what, a->content, a->id);
            goto fail;
        }
        t->added[k] = *a;
        t->added[k].content = strdup(a->content);
        if (!t->added[k].content) {
            tt_err("%s: out of memory", what);
            goto fail;
        }
        t->n_added = k + 1;
        if (a->len == 0) {
            tt_err("%s: empty added token (id %d)", what, a->id);
            goto fail;
        }
        /* an added token decodes to its text, whatever its bytes would spell */
        size_t b = t->bytes_off[a->id], e = t->bytes_off[a->id + 1];
        if (e - b != a->len || memcmp(t->bytes_blob + b, a->content, a->len)) {
            tt_err("%s: added token '%s' is not plain text", what, a->content);
            goto fail;
        }
        t->added_first_byte[(uint8_t)a->content[0]] = 1;
        if (a->special) t->is_special[a->id] = 1;
    }

    for (int b = 0; b < 256; b++) {
        char sp[3];
        uint8_t byte = (uint8_t)b;
        bpe_bytes_to_spelling(&byte, 1, sp);
        t->byte_id[b] = spelling_id(t, sp);
        if (t->byte_id[b] < 0) {
            tt_err("%s: the vocabulary lacks the symbol '%s' of byte 0x%02X", what, sp, b);
            goto fail;
        }
    }

    size_t slots = 16;
    while (slots < (size_t)n_merges * 2 + 2) slots *= 2;
    t->merge_mask = slots - 1;
    t->merge_keys = malloc(slots * sizeof *t->merge_keys);
    t->merge_vals = malloc(slots * sizeof *t->merge_vals);
    t->merge_left = malloc(((size_t)n_merges + 1) * sizeof(int));
    t->merge_right = malloc(((size_t)n_merges + 1) * sizeof(int));
    t->merge_result = malloc(((size_t)n_merges + 1) * sizeof(int));
    if (!t->merge_keys || !t->merge_vals || !t->merge_left || !t->merge_right || !t->merge_result) {
        tt_err("%s: out of memory", what);
        goto fail;
    }
    memset(t->merge_keys, 0xFF, slots * sizeof *t->merge_keys);
    char *joined = NULL;
    size_t joined_cap = 0;
    for (int r = 0; r < n_merges; r++) {
        const char *a = merge_pairs[2 * r], *b = merge_pairs[2 * r + 1];
        size_t la = strlen(a), lb = strlen(b);
        if (la + lb + 1 > joined_cap) {
            joined_cap = 2 * (la + lb + 1);
            char *j = realloc(joined, joined_cap);
            if (!j) {
                free(joined);
                tt_err("%s: out of memory", what);
                goto fail;
            }
            joined = j;
        }
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb + 1);
        int ia = spelling_id(t, a), ib = spelling_id(t, b), ij = spelling_id(t, joined);
        if (ia < 0 || ib < 0 || ij < 0) {
            tt_err("%s: merge %d ('%s' '%s'): '%s' is not in the vocabulary", what, r + 1, a, b,
                   ia < 0 ? a : ib < 0 ? b : joined);
            free(joined);
            goto fail;
        }
        t->merge_left[r] = ia;
        t->merge_right[r] = ib;
        t->merge_result[r] = ij;
        /* a pair listed twice takes its later rank, as GPT-2's dict and HF's map do */
        uint64_t key = bpe_pair_key(ia, ib);
        size_t i = bpe_hash_u64(key) & t->merge_mask;
        while (t->merge_keys[i] != NO_MERGE && t->merge_keys[i] != key) i = (i + 1) & t->merge_mask;
        t->merge_keys[i] = key;
        t->merge_vals[i] = ((uint64_t)(uint32_t)r << 32) | (uint32_t)ij;
    }
    free(joined);
    t->n_merges = n_merges;

    t->bos_id = cls_id >= 0 ? cls_id : spelling_id(t, TOKENIZER_BOS);
    if (t->bos_id < 0) t->bos_id = spelling_id(t, "<|endoftext|>");
    t->eos_id = sep_id >= 0 ? sep_id : spelling_id(t, TOKENIZER_EOS);
    if (t->eos_id < 0) t->eos_id = spelling_id(t, "<|endoftext|>");
    t->pad_id = spelling_id(t, TOKENIZER_PAD);
    t->unk_id = spelling_id(t, TOKENIZER_UNK);
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}
