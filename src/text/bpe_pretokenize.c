/* bpe_pretokenize.c: the text side of byte-level BPE: UTF-8 checking and repair, GPT-2's
 * byte <-> unicode spelling of vocabularies, and GPT-2's pre-tokenizer regex written out by
 * hand over utf8proc's character categories (no regex engine, no backtracking). */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- byte <-> unicode ---- */

/* Bytes GPT-2 keeps as themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'. */
static int byte_is_kept(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t bpe_byte_to_codepoint(uint8_t b) {
    if (byte_is_kept(b)) return b;
    /* the others count up from U+0100 in byte order */
    uint32_t k = 0;
    for (unsigned c = 0; c < b; c++) k += !byte_is_kept(c);
    return 0x100 + k;
}

int bpe_codepoint_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_kept(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    uint32_t k = cp - 0x100;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_is_kept(c) && k-- == 0) return (int)c;
    return -1;
}

/* Spellings of the 256 bytes as UTF-8 (1 or 2 bytes each), built once. */
static struct {
    uint8_t len[256];
    char utf8[256][2];
    int16_t from_cp[0x100 + 68]; /* code point -> byte, -1 if none */
} spell_table;
static pthread_once_t spell_once = PTHREAD_ONCE_INIT;

static void spell_table_init(void) {
    for (uint32_t cp = 0; cp < 0x100 + 68; cp++) spell_table.from_cp[cp] = -1;
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = bpe_byte_to_codepoint((uint8_t)b);
        spell_table.from_cp[cp] = (int16_t)b;
        if (cp < 0x80) {
            spell_table.len[b] = 1;
            spell_table.utf8[b][0] = (char)cp;
        } else {
            spell_table.len[b] = 2;
            spell_table.utf8[b][0] = (char)(0xC0 | (cp >> 6));
            spell_table.utf8[b][1] = (char)(0x80 | (cp & 0x3F));
        }
    }
}

size_t bpe_bytes_to_spelling(const uint8_t *src, size_t n, char *dst) {
    pthread_once(&spell_once, spell_table_init);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(dst + k, spell_table.utf8[src[i]], spell_table.len[src[i]]);
        k += spell_table.len[src[i]];
    }
    dst[k] = 0;
    return k;
}

long bpe_spelling_to_bytes(const char *spelling, size_t n, uint8_t *dst) {
    pthread_once(&spell_once, spell_table_init);
    const uint8_t *s = (const uint8_t *)spelling;
    size_t i = 0, k = 0;
    while (i < n) {
        int32_t cp;
        utf8proc_ssize_t m = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (m <= 0 || cp < 0 || cp >= 0x100 + 68 || spell_table.from_cp[cp] < 0) return -1;
        dst[k++] = (uint8_t)spell_table.from_cp[cp];
        i += (size_t)m;
    }
    return (long)k;
}

/* ---- pre-tokenizer ---- */

enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER };

static uint8_t ascii_class[128];
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static void ascii_class_init(void) {
    for (int c = 0; c < 128; c++) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) ascii_class[c] = CL_LETTER;
        else if (c >= '0' && c <= '9') ascii_class[c] = CL_NUMBER;
        else if (c == ' ' || (c >= 0x09 && c <= 0x0D)) ascii_class[c] = CL_SPACE;
        else ascii_class[c] = CL_OTHER;
    }
}

/* Unicode White_Space, beyond ASCII. */
static int is_unicode_space(int32_t cp) {
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Class of the character at s[i] (valid UTF-8); *len gets its byte length. */
static inline int char_class(const uint8_t *s, size_t n, size_t i, size_t *len) {
    if (s[i] < 0x80) {
        *len = 1;
        return ascii_class[s[i]];
    }
    int32_t cp;
    utf8proc_ssize_t m = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
    *len = m > 0 ? (size_t)m : 1;
    if (m <= 0) return CL_OTHER;
    if (is_unicode_space(cp)) return CL_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CL_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CL_NUMBER;
    default: return CL_OTHER;
    }
}

size_t bpe_pretoken_end(const uint8_t *s, size_t n, size_t i) {
    pthread_once(&class_once, ascii_class_init);
    /* 's 't 're 've 'm 'll 'd come first, lower case only, as in the pattern */
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
        if (i + 2 < n && ((c == 'r' && s[i + 2] == 'e') || (c == 'v' && s[i + 2] == 'e') ||
                          (c == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    size_t len, j = i;
    int cls = char_class(s, n, i, &len);
    /* " ?X+": an ASCII space joins the run of letters, digits or symbols after it */
    if (s[i] == ' ' && i + 1 < n) {
        size_t len2;
        int next = char_class(s, n, i + 1, &len2);
        if (next != CL_SPACE) {
            cls = next;
            j = i + 1;
            len = len2;
        }
    }
    if (cls != CL_SPACE) {
        size_t k = j + len;
        while (k < n) {
            int c = char_class(s, n, k, &len);
            if (c != cls) break;
            k += len;
        }
        return k;
    }
    /* whitespace: "\s+(?!\S)" leaves the last space of a run to the word after it;
     * a single space before a word is taken by "\s+" */
    size_t k = i + len, last = i;
    while (k < n) {
        if (char_class(s, n, k, &len) != CL_SPACE) break;
        last = k;
        k += len;
    }
    if (k == n || last == i) return k;
    return last;
}
