/* pystring.c: Python str semantics (lower, isspace) on UTF-8 for the metrics, so that
 * tokenization matches rouge-score and sacreBLEU character for character. Case data
 * comes from utf8proc; Python's full-mapping and Final_Sigma rules are added here. */
#include "metrics/pystring.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tutor/core.h"

int utf8_to_codepoints(const char *s, size_t len, uint32_t **out, size_t *out_n) {
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    if (!cps) return tt_err("out of memory decoding %zu bytes of UTF-8", len);
    size_t n = 0, i = 0;
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0 || c < 0) {
            free(cps);
            return tt_err("invalid UTF-8 at byte %zu", i);
        }
        cps[n++] = (uint32_t)c;
        i += (size_t)k;
    }
    *out = cps;
    *out_n = n;
    return 0;
}

int utf8_validate(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0 || c < 0) return tt_err("invalid UTF-8 at byte %zu", i);
        i += (size_t)k;
    }
    return 0;
}

size_t utf8_put(char *buf, uint32_t c) {
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)buf);
}

int py_isspace(uint32_t c) {
    /* Python: bidirectional class WS, B or S, or category Zs. */
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Unicode's Cased property (Lowercase, Uppercase or Lt): letters with a case mapping or
 * a cased category. */
static int is_cased(uint32_t c) {
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT)
        return 1;
    return utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

/* Unicode's Case_Ignorable property: categories Mn, Me, Cf, Lm, Sk and the Word_Break
 * MidLetter, MidNumLet and Single_Quote characters. */
static int is_case_ignorable(uint32_t c) {
    switch (c) {
    case 0x27: case 0x2e: case 0x3a: case 0xb7: case 0x387: case 0x55f: case 0x5f4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xfe13: case 0xfe52:
    case 0xfe55: case 0xff07: case 0xff0e: case 0xff1a:
        return 1;
    default:
        break;
    }
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME ||
           cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_LM ||
           cat == UTF8PROC_CATEGORY_SK;
}

/* Python's handle_capital_sigma: final when preceded by a cased letter and not followed
 * by one, skipping case-ignorable characters on both sides. */
static int sigma_is_final(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) {
        c = s[--j];
        if (!is_case_ignorable(c)) {
            found = 1;
            break;
        }
    }
    if (!found || !is_cased(c)) return 0;
    for (j = i + 1; j < n; j++)
        if (!is_case_ignorable(s[j])) return !is_cased(s[j]);
    return 1;
}

int py_lower_at(const uint32_t *s, size_t n, size_t i, uint32_t out[2]) {
    uint32_t c = s[i];
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) { /* the one unconditional multi-character lowercase mapping */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (c == 0x3a3) {
        out[0] = sigma_is_final(s, n, i) ? 0x3c2 : 0x3c3;
        return 1;
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    return 1;
}

char *py_lower_utf8(const char *s, size_t len) {
    uint32_t *cps;
    size_t n;
    if (utf8_to_codepoints(s, len, &cps, &n)) return NULL;
    /* Each code point lowers to at most 2 of at most 4 bytes; İ (2 bytes) gives 3 bytes. */
    char *out = malloc(len * 2 + 1);
    if (!out) {
        free(cps);
        tt_err("out of memory lowercasing %zu bytes", len);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t low[2];
        int k = py_lower_at(cps, n, i, low);
        for (int t = 0; t < k; t++) o += utf8_put(out + o, low[t]);
    }
    out[o] = 0;
    free(cps);
    return out;
}
