/* bpe_train.c: learning byte-level BPE merges. Texts are cut into GPT-2 pre-tokens and
 * counted; then the most frequent adjacent pair is merged again and again, with pair counts
 * updated only in the words that held the merged pair (a pair -> words index) and a lazy
 * max-heap of pair counts, so that 8000 merges over a corpus take seconds. */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

#define N_SPECIALS 4

struct BpeTrainer {
    BpeTrainOptions opt;
    StrMap words; /* pre-token bytes -> count */
    size_t replaced;
};

void bpe_train_options_default(BpeTrainOptions *opt) {
    memset(opt, 0, sizeof *opt);
    opt->vocab_size = 8000;
    opt->min_frequency = 2;
}

BpeTrainer *bpe_trainer_new(const BpeTrainOptions *opt) {
    if (opt->vocab_size < N_SPECIALS + 256) {
        tt_err("vocabulary size %d is too small: 4 special tokens and 256 bytes need 260", opt->vocab_size);
        return NULL;
    }
    BpeTrainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        tt_err("out of memory");
        return NULL;
    }
    tr->opt = *opt;
    if (tr->opt.min_frequency < 1) tr->opt.min_frequency = 1;
    if (strmap_init(&tr->words, 1 << 16)) {
        free(tr);
        return NULL;
    }
    return tr;
}

void bpe_trainer_free(BpeTrainer *tr) {
    if (!tr) return;
    strmap_free(&tr->words);
    free(tr);
}

size_t bpe_trainer_replaced(const BpeTrainer *tr) { return tr->replaced; }

int bpe_trainer_add(BpeTrainer *tr, const char *text, size_t len) {
    const uint8_t *s = (const uint8_t *)text;
    uint8_t *fixed = NULL;
    size_t bad = utf8_first_invalid((const char *)s, len);
    if (bad < len) {
        /* byte offsets in messages are 1-based, as data.h counts them */
        if (!tr->opt.replace_invalid) return tt_err("invalid UTF-8 at byte %zu", bad + 1);
        size_t count;
        if (!(fixed = (uint8_t *)utf8_replace_invalid((const char *)s, len, &len, &count))) return -1;
        tr->replaced += count;
        s = fixed;
    }
    int rc = 0;
    for (size_t i = 0; i < len;) {
        size_t e = bpe_pretoken_end(s, len, i);
        int64_t *count = strmap_upsert(&tr->words, s + i, e - i, NULL);
        if (!count) {
            rc = -1;
            break;
        }
        (*count)++;
        i = e;
    }
    free(fixed);
    return rc;
}

/* ---- the learning state ---- */

typedef struct {
    int32_t *w;
    uint32_t n, cap;
} WordList;

typedef struct {
    int64_t count;
    int32_t pair;
} HeapEntry;

typedef struct {
    /* tokens: raw bytes of each id */
    uint8_t *tok_bytes;
    size_t tok_len, tok_cap;
    uint32_t *tok_off; /* n_tok + 1 */
    int n_tok, tok_slots;
    StrMap tok_ids; /* bytes -> id */

    /* words: symbols of each distinct pre-token, and its count */
    int32_t *sym;
    size_t *word_off;
    uint32_t *word_len;
    int64_t *word_count;
    uint32_t *word_stamp;
    size_t n_words;

    /* pairs: (left, right) -> index; count and the words that hold it */
    uint64_t *pair_keys; /* UINT64_MAX empty */
    int32_t *pair_index;
    size_t pair_mask;
    int32_t *pair_left, *pair_right;
    int64_t *pair_count;
    WordList *pair_words;
    uint32_t *pair_stamp;
    size_t n_pairs, pairs_cap;

    HeapEntry *heap;
    size_t heap_n, heap_cap;
} Learner;

static int learner_add_token(Learner *L, const uint8_t *b, size_t n, int *id) {
    int inserted;
    int64_t *v = strmap_upsert(&L->tok_ids, b, n, &inserted);
    if (!v) return -1;
    if (!inserted) {
        *id = (int)*v;
        return 0;
    }
    if (L->n_tok + 1 >= L->tok_slots) {
        int slots = L->tok_slots * 2;
        uint32_t *o = realloc(L->tok_off, ((size_t)slots + 1) * sizeof *o);
        if (!o) return tt_err("out of memory");
        L->tok_off = o;
        L->tok_slots = slots;
    }
    if (L->tok_len + n > L->tok_cap) {
        size_t cap = 2 * (L->tok_cap + n);
        uint8_t *p = realloc(L->tok_bytes, cap);
        if (!p) return tt_err("out of memory");
        L->tok_bytes = p;
        L->tok_cap = cap;
    }
    memcpy(L->tok_bytes + L->tok_len, b, n);
    L->tok_len += n;
    *v = *id = L->n_tok++;
    L->tok_off[L->n_tok] = (uint32_t)L->tok_len;
    return 0;
}

/* The pair's index, created with count 0 when create is set; -1 if absent (or no memory). */
static int32_t pair_find(Learner *L, int a, int b, int create) {
    uint64_t key = bpe_pair_key(a, b);
    size_t i = bpe_hash_u64(key) & L->pair_mask;
    while (L->pair_keys[i] != UINT64_MAX) {
        if (L->pair_keys[i] == key) return L->pair_index[i];
        i = (i + 1) & L->pair_mask;
    }
    if (!create) return -1;
    if ((L->n_pairs + 1) * 2 > L->pair_mask + 1) {
        size_t slots = 2 * (L->pair_mask + 1);
        uint64_t *k = malloc(slots * sizeof *k);
        int32_t *x = malloc(slots * sizeof *x);
        if (!k || !x) {
            free(k);
            free(x);
            return -1;
        }
        memset(k, 0xFF, slots * sizeof *k);
        for (size_t j = 0; j <= L->pair_mask; j++) {
            if (L->pair_keys[j] == UINT64_MAX) continue;
            size_t h = bpe_hash_u64(L->pair_keys[j]) & (slots - 1);
            while (k[h] != UINT64_MAX) h = (h + 1) & (slots - 1);
            k[h] = L->pair_keys[j];
            x[h] = L->pair_index[j];
        }
        free(L->pair_keys);
        free(L->pair_index);
        L->pair_keys = k;
        L->pair_index = x;
        L->pair_mask = slots - 1;
        i = bpe_hash_u64(key) & L->pair_mask;
        while (L->pair_keys[i] != UINT64_MAX) i = (i + 1) & L->pair_mask;
    }
    if (L->n_pairs == L->pairs_cap) {
        size_t cap = L->pairs_cap ? 2 * L->pairs_cap : 1 << 16;
        int32_t *pl = realloc(L->pair_left, cap * sizeof *pl);
        if (pl) L->pair_left = pl;
        int32_t *pr = realloc(L->pair_right, cap * sizeof *pr);
        if (pr) L->pair_right = pr;
        int64_t *pc = realloc(L->pair_count, cap * sizeof *pc);
        if (pc) L->pair_count = pc;
        WordList *pw = realloc(L->pair_words, cap * sizeof *pw);
        if (pw) L->pair_words = pw;
        uint32_t *ps = realloc(L->pair_stamp, cap * sizeof *ps);
        if (ps) L->pair_stamp = ps;
        if (!pl || !pr || !pc || !pw || !ps) return -1;
        L->pairs_cap = cap;
    }
    int32_t p = (int32_t)L->n_pairs++;
    L->pair_keys[i] = key;
    L->pair_index[i] = p;
    L->pair_left[p] = a;
    L->pair_right[p] = b;
    L->pair_count[p] = 0;
    L->pair_words[p] = (WordList){0};
    L->pair_stamp[p] = 0;
    return p;
}

static int wordlist_add(WordList *l, int32_t w) {
    if (l->n && l->w[l->n - 1] == w) return 0;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 4;
        int32_t *p = realloc(l->w, cap * sizeof *p);
        if (!p) return tt_err("out of memory");
        l->w = p;
        l->cap = cap;
    }
    l->w[l->n++] = w;
    return 0;
}

/* Heap order: higher count first; equal counts, the smaller (left, right) bytes first. */
static int heap_before(const Learner *L, const HeapEntry *x, const HeapEntry *y) {
    if (x->count != y->count) return x->count > y->count;
    for (int side = 0; side < 2; side++) {
        int a = side ? L->pair_right[x->pair] : L->pair_left[x->pair];
        int b = side ? L->pair_right[y->pair] : L->pair_left[y->pair];
        if (a == b) continue;
        size_t la = L->tok_off[a + 1] - L->tok_off[a], lb = L->tok_off[b + 1] - L->tok_off[b];
        int c = memcmp(L->tok_bytes + L->tok_off[a], L->tok_bytes + L->tok_off[b], la < lb ? la : lb);
        if (c) return c < 0;
        return la < lb;
    }
    return x->pair < y->pair; /* the same pair twice */
}

static int heap_push(Learner *L, int64_t count, int32_t pair) {
    if (L->heap_n == L->heap_cap) {
        size_t cap = L->heap_cap ? 2 * L->heap_cap : 1 << 16;
        HeapEntry *h = realloc(L->heap, cap * sizeof *h);
        if (!h) return tt_err("out of memory");
        L->heap = h;
        L->heap_cap = cap;
    }
    HeapEntry v = {count, pair};
    size_t i = L->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_before(L, &v, &L->heap[p])) break;
        L->heap[i] = L->heap[p];
        i = p;
    }
    L->heap[i] = v;
    return 0;
}

static HeapEntry heap_pop(Learner *L) {
    HeapEntry top = L->heap[0], v = L->heap[--L->heap_n];
    size_t i = 0, n = L->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(L, &L->heap[c + 1], &L->heap[c])) c++;
        if (!heap_before(L, &L->heap[c], &v)) break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    L->heap[i] = v;
    return top;
}

static void learner_free(Learner *L) {
    free(L->tok_bytes);
    free(L->tok_off);
    strmap_free(&L->tok_ids);
    free(L->sym);
    free(L->word_off);
    free(L->word_len);
    free(L->word_count);
    free(L->word_stamp);
    free(L->pair_keys);
    free(L->pair_index);
    for (size_t p = 0; p < L->n_pairs; p++) free(L->pair_words[p].w);
    free(L->pair_left);
    free(L->pair_right);
    free(L->pair_count);
    free(L->pair_words);
    free(L->pair_stamp);
    free(L->heap);
}

/* Ids 0-3 BART's specials, 4-259 the bytes in the order of their spellings' code points
 * (GPT-2's order), then one id per merge whose result is new. */
static int learner_init(Learner *L, const StrMap *words) {
    memset(L, 0, sizeof *L);
    L->tok_slots = 1024;
    L->tok_off = malloc(((size_t)L->tok_slots + 1) * sizeof *L->tok_off);
    if (!L->tok_off || strmap_init(&L->tok_ids, 1 << 14)) return tt_err("out of memory");
    L->tok_off[0] = 0;
    static const char *specials[N_SPECIALS] = {TOKENIZER_BOS, TOKENIZER_PAD, TOKENIZER_EOS, TOKENIZER_UNK};
    int id;
    for (int k = 0; k < N_SPECIALS; k++)
        if (learner_add_token(L, (const uint8_t *)specials[k], strlen(specials[k]), &id)) return -1;
    for (uint32_t cp = 0; cp < 0x100 + 68; cp++) {
        int b = bpe_codepoint_to_byte(cp);
        uint8_t byte = (uint8_t)b;
        if (b >= 0 && learner_add_token(L, &byte, 1, &id)) return -1;
    }
    int byte_id[256];
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        byte_id[b] = (int)*strmap_get(&L->tok_ids, &byte, 1);
    }

    size_t n_sym = 0;
    for (size_t s = 0; s < words->n_slots; s++)
        if (words->hashes[s]) n_sym += words->key_len[s];
    L->n_words = words->n_used;
    L->sym = malloc((n_sym + 1) * sizeof *L->sym);
    L->word_off = malloc((L->n_words + 1) * sizeof *L->word_off);
    L->word_len = malloc((L->n_words + 1) * sizeof *L->word_len);
    L->word_count = malloc((L->n_words + 1) * sizeof *L->word_count);
    L->word_stamp = calloc(L->n_words + 1, sizeof *L->word_stamp);
    L->pair_mask = (1 << 16) - 1;
    L->pair_keys = malloc((L->pair_mask + 1) * sizeof *L->pair_keys);
    L->pair_index = malloc((L->pair_mask + 1) * sizeof *L->pair_index);
    if (!L->sym || !L->word_off || !L->word_len || !L->word_count || !L->word_stamp ||
        !L->pair_keys || !L->pair_index)
        return tt_err("out of memory for %zu words", L->n_words);
    memset(L->pair_keys, 0xFF, (L->pair_mask + 1) * sizeof *L->pair_keys);

    size_t w = 0, off = 0;
    for (size_t s = 0; s < words->n_slots; s++) {
        if (!words->hashes[s]) continue;
        const uint8_t *key = (const uint8_t *)strmap_key(words, s);
        uint32_t len = words->key_len[s];
        L->word_off[w] = off;
        L->word_len[w] = len;
        L->word_count[w] = words->values[s];
        for (uint32_t i = 0; i < len; i++) L->sym[off + i] = byte_id[key[i]];
        for (uint32_t i = 0; i + 1 < len; i++) {
            int32_t p = pair_find(L, L->sym[off + i], L->sym[off + i + 1], 1);
            if (p < 0) return tt_err("out of memory for pairs");
            L->pair_count[p] += L->word_count[w];
            if (wordlist_add(&L->pair_words[p], (int32_t)w)) return -1;
        }
        off += len;
        w++;
    }
    return 0;
}

/* Merges pair p everywhere (as stamp-th merge) into token c; pushes the pairs it made. */
static int learner_merge(Learner *L, int32_t p, int c, uint32_t stamp) {
    int a = L->pair_left[p], b = L->pair_right[p];
    WordList list = L->pair_words[p]; /* taken over: p is gone after this merge */
    L->pair_words[p] = (WordList){0};
    int32_t *touched = NULL;
    size_t n_touched = 0, cap_touched = 0;
    int rc = 0;
    for (uint32_t k = 0; k < list.n && rc == 0; k++) {
        int32_t w = list.w[k];
        if (L->word_stamp[w] == stamp) continue;
        L->word_stamp[w] = stamp;
        int32_t *sym = L->sym + L->word_off[w];
        uint32_t len = L->word_len[w], i;
        for (i = 0; i + 1 < len; i++)
            if (sym[i] == a && sym[i + 1] == b) break;
        if (i + 1 >= len) continue; /* an older entry: the pair left this word */
        int64_t f = L->word_count[w];
        for (i = 0; i + 1 < len; i++) L->pair_count[pair_find(L, sym[i], sym[i + 1], 0)] -= f;
        uint32_t n = 0;
        for (i = 0; i < len;) {
            if (i + 1 < len && sym[i] == a && sym[i + 1] == b) {
                sym[n++] = c;
                i += 2;
            } else {
                sym[n++] = sym[i++];
            }
        }
        L->word_len[w] = n;
        for (i = 0; i + 1 < n; i++) {
            int32_t q = pair_find(L, sym[i], sym[i + 1], 1);
            if (q < 0) {
                rc = tt_err("out of memory for pairs");
                break;
            }
            L->pair_count[q] += f;
            if (sym[i] != c && sym[i + 1] != c) continue;
            if ((rc = wordlist_add(&L->pair_words[q], w))) break;
            if (L->pair_stamp[q] == stamp) continue;
            L->pair_stamp[q] = stamp;
            if (n_touched == cap_touched) {
                cap_touched = cap_touched ? 2 * cap_touched : 256;
                int32_t *t = realloc(touched, cap_touched * sizeof *t);
                if (!t) {
                    rc = tt_err("out of memory");
                    break;
                }
                touched = t;
            }
            touched[n_touched++] = q;
        }
    }
    for (size_t k = 0; k < n_touched && rc == 0; k++)
        if (L->pair_count[touched[k]] > 0) rc = heap_push(L, L->pair_count[touched[k]], touched[k]);
    free(touched);
    free(list.w);
    return rc;
}

Tokenizer *bpe_trainer_finish(BpeTrainer *tr) {
    Learner L;
    Tokenizer *tok = NULL;
    int32_t *merged = NULL; /* 2 ids per merge */
    char **spell = NULL;
    const char **merge_spell = NULL;
    int n_merges = 0, merges_cap = 0;
    double t0 = tt_now_s();
    if (learner_init(&L, &tr->words)) goto done;
    strmap_free(&tr->words);
    if (strmap_init(&tr->words, 16)) goto done;

    for (size_t p = 0; p < L.n_pairs; p++)
        if (L.pair_count[p] >= tr->opt.min_frequency && heap_push(&L, L.pair_count[p], (int32_t)p))
            goto done;
    uint32_t stamp = 0;
    while (L.n_tok < tr->opt.vocab_size && L.heap_n > 0) {
        HeapEntry top = heap_pop(&L);
        int64_t now = L.pair_count[top.pair];
        if (now != top.count) { /* stale: the pair lost words since it was pushed */
            if (now >= tr->opt.min_frequency && heap_push(&L, now, top.pair)) goto done;
            continue;
        }
        if (now < tr->opt.min_frequency) break;
        int a = L.pair_left[top.pair], b = L.pair_right[top.pair], c;
        size_t la = L.tok_off[a + 1] - L.tok_off[a], lb = L.tok_off[b + 1] - L.tok_off[b];
        uint8_t *joined = malloc(la + lb);
        if (!joined) {
            tt_err("out of memory");
            goto done;
        }
        memcpy(joined, L.tok_bytes + L.tok_off[a], la);
        memcpy(joined + la, L.tok_bytes + L.tok_off[b], lb);
        int rc = learner_add_token(&L, joined, la + lb, &c);
        free(joined);
        if (rc) goto done;
        if (n_merges == merges_cap) {
            merges_cap = merges_cap ? 2 * merges_cap : 1024;
            int32_t *m = realloc(merged, 2 * (size_t)merges_cap * sizeof *m);
            if (!m) {
                tt_err("out of memory");
                goto done;
            }
            merged = m;
        }
        merged[2 * n_merges] = a;
        merged[2 * n_merges + 1] = b;
        n_merges++;
        if (learner_merge(&L, top.pair, c, ++stamp)) goto done;
        if (n_merges % 1000 == 0)
            tt_debug("bpe: %d merges, %d tokens, last count %lld", n_merges, L.n_tok, (long long)now);
    }
    if (L.n_tok < tr->opt.vocab_size)
        tt_info("bpe: stopped at %d tokens (asked for %d): no pair occurs %d times or more",
                L.n_tok, tr->opt.vocab_size, tr->opt.min_frequency);

    spell = calloc((size_t)L.n_tok, sizeof *spell);
    merge_spell = malloc(2 * ((size_t)n_merges + 1) * sizeof *merge_spell);
    if (!spell || !merge_spell) {
        tt_err("out of memory");
        goto done;
    }
    for (int i = 0; i < L.n_tok; i++) {
        size_t len = L.tok_off[i + 1] - L.tok_off[i];
        if (!(spell[i] = malloc(2 * len + 1))) {
            tt_err("out of memory");
            goto done;
        }
        if (i < N_SPECIALS) {
            memcpy(spell[i], L.tok_bytes + L.tok_off[i], len);
            spell[i][len] = 0;
        } else {
            bpe_bytes_to_spelling(L.tok_bytes + L.tok_off[i], len, spell[i]);
        }
    }
    for (int r = 0; r < n_merges; r++) {
        merge_spell[2 * r] = spell[merged[2 * r]];
        merge_spell[2 * r + 1] = spell[merged[2 * r + 1]];
    }
    AddedToken added[N_SPECIALS];
    for (int k = 0; k < N_SPECIALS; k++)
        added[k] = (AddedToken){.id = k, .content = spell[k], .len = strlen(spell[k]), .special = 1};
    tok = bpe_tokenizer_build((const char *const *)spell, L.n_tok, merge_spell, n_merges, added,
                              N_SPECIALS, 0, 0, 2, "trained tokenizer");
    if (tok)
        tt_debug("bpe: %d merges, %d tokens from %zu distinct pre-tokens in %.1f s", n_merges,
                 L.n_tok, L.n_words, tt_now_s() - t0);
done:
    if (spell)
        for (int i = 0; i < L.n_tok; i++) free(spell[i]);
    free(spell);
    free(merge_spell);
    free(merged);
    learner_free(&L);
    return tok;
}

Tokenizer *bpe_train(const char *const *texts, size_t n, const BpeTrainOptions *opt) {
    BpeTrainer *tr = bpe_trainer_new(opt);
    if (!tr) return NULL;
    Tokenizer *tok = NULL;
    for (size_t i = 0; i < n; i++)
        if (bpe_trainer_add(tr, texts[i], strlen(texts[i]))) {
            tt_err_wrap("text %zu", i + 1);
            goto done;
        }
    tok = bpe_trainer_finish(tr);
done:
    bpe_trainer_free(tr);
    return tok;
}
