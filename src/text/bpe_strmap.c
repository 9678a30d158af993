/* bpe_strmap.c: the byte-string hash and the string -> integer map that the BPE loader
 * (spelling -> id) and trainer (pre-token -> count) use. Open addressing, linear probing,
 * keys copied into one arena. */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

uint64_t bpe_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ bpe_hash_u64(w)) * 0xBF58476D1CE4E5B9ull;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, s + i, n - i);
        h = (h ^ bpe_hash_u64(w ^ 0xFF)) * 0xBF58476D1CE4E5B9ull;
    }
    h = bpe_hash_u64(h);
    return h ? h : 1; /* 0 marks an empty slot */
}

int strmap_init(StrMap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t slots = 64;
    while (slots < expected * 2) slots *= 2;
    m->n_slots = slots;
    m->hashes = calloc(slots, sizeof *m->hashes);
    m->key_off = malloc(slots * sizeof *m->key_off);
    m->key_len = malloc(slots * sizeof *m->key_len);
    m->values = malloc(slots * sizeof *m->values);
    m->arena_cap = 4096;
    m->arena = malloc(m->arena_cap);
    if (!m->hashes || !m->key_off || !m->key_len || !m->values || !m->arena) {
        strmap_free(m);
        return tt_err("out of memory for a string map");
    }
    return 0;
}

void strmap_free(StrMap *m) {
    free(m->hashes);
    free(m->key_off);
    free(m->key_len);
    free(m->values);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static size_t strmap_find(const StrMap *m, uint64_t h, const void *key, size_t len) {
    size_t mask = m->n_slots - 1, i = h & mask;
    while (m->hashes[i]) {
        if (m->hashes[i] == h && m->key_len[i] == len && !memcmp(m->arena + m->key_off[i], key, len))
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int strmap_grow(StrMap *m) {
    StrMap g = *m;
    size_t slots = m->n_slots * 2;
    g.n_slots = slots;
    g.hashes = calloc(slots, sizeof *g.hashes);
    g.key_off = malloc(slots * sizeof *g.key_off);
    g.key_len = malloc(slots * sizeof *g.key_len);
    g.values = malloc(slots * sizeof *g.values);
    if (!g.hashes || !g.key_off || !g.key_len || !g.values) {
        free(g.hashes);
        free(g.key_off);
        free(g.key_len);
        free(g.values);
        return tt_err("out of memory for a string map");
    }
    for (size_t i = 0; i < m->n_slots; i++) {
        if (!m->hashes[i]) continue;
        size_t j = m->hashes[i] & (slots - 1);
        while (g.hashes[j]) j = (j + 1) & (slots - 1);
        g.hashes[j] = m->hashes[i];
        g.key_off[j] = m->key_off[i];
        g.key_len[j] = m->key_len[i];
        g.values[j] = m->values[i];
    }
    free(m->hashes);
    free(m->key_off);
    free(m->key_len);
    free(m->values);
    *m = g;
    return 0;
}

int64_t *strmap_upsert(StrMap *m, const void *key, size_t len, int *inserted) {
    uint64_t h = bpe_hash_bytes(key, len);
    size_t i = strmap_find(m, h, key, len);
    if (m->hashes[i]) {
        if (inserted) *inserted = 0;
        return &m->values[i];
    }
    if ((m->n_used + 1) * 2 > m->n_slots) {
        if (strmap_grow(m)) return NULL;
        i = strmap_find(m, h, key, len);
    }
    if (m->arena_len + len + 1 > UINT32_MAX) {
        tt_err("string map: more than 4 GiB of keys");
        return NULL;
    }
    if (m->arena_len + len + 1 > m->arena_cap) {
        size_t cap = m->arena_cap * 2;
        while (cap < m->arena_len + len + 1) cap *= 2;
        char *a = realloc(m->arena, cap);
        if (!a) {
            tt_err("out of memory for a string map");
            return NULL;
        }
        m->arena = a;
        m->arena_cap = cap;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->arena[m->arena_len + len] = 0; /* keys read back as C strings */
    m->hashes[i] = h;
    m->key_off[i] = (uint32_t)m->arena_len;
    m->key_len[i] = (uint32_t)len;
    m->values[i] = 0;
    m->arena_len += len + 1;
    m->n_used++;
    if (inserted) *inserted = 1;
    return &m->values[i];
}

int64_t *strmap_get(const StrMap *m, const void *key, size_t len) {
    if (!m->n_slots) return NULL;
    size_t i = strmap_find(m, bpe_hash_bytes(key, len), key, len);
    return m->hashes[i] ? &m->values[i] : NULL;
}
