/* utf8.c: UTF-8 as Unicode defines it, the one validator of tutor (JSONL lines, tokenizer
 * input and output, pseudo-target files): no overlong forms, no surrogates, nothing above
 * U+10FFFF; invalid input replaced by U+FFFD per maximal subpart (Unicode's recommended
 * practice, as Python's errors="replace"). ASCII runs are checked eight bytes at a time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/data.h"

size_t utf8_sequence_len(const uint8_t *s, size_t n, size_t *bad_len) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        if (bad_len) *bad_len = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < need && i < n; i++) {
        uint8_t b = s[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
    }
    if (i == need) return need;
    if (bad_len) *bad_len = i;
    return 0;
}

size_t utf8_first_invalid(const char *text, size_t n) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < n) {
        /* eight ASCII bytes at a time: the common case */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t m = utf8_sequence_len(s + i, n - i, NULL);
        if (!m) return i;
        i += m;
    }
    return n;
}

char *utf8_replace_invalid(const char *text, size_t n, size_t *n_out, size_t *n_replaced) {
    const uint8_t *s = (const uint8_t *)text;
    /* U+FFFD is 3 bytes and replaces at least one byte */
    uint8_t *out = malloc(3 * n + 1);
    if (!out) {
        tt_err("out of memory (%zu bytes)", 3 * n + 1);
        return NULL;
    }
    size_t i = 0, k = 0, count = 0;
    while (i < n) {
        size_t bad = 0, m = utf8_sequence_len(s + i, n - i, &bad);
        if (m) {
            memcpy(out + k, s + i, m);
            k += m;
            i += m;
        } else {
            out[k++] = 0xEF;
            out[k++] = 0xBF;
            out[k++] = 0xBD;
            i += bad;
            count++;
        }
    }
    out[k] = 0;
    if (n_out) *n_out = k;
    if (n_replaced) *n_replaced = count;
    return (char *)out;
}

