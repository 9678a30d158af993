/* pystring.h: the few Python str operations that the reference metric tools apply to text
 * (str.lower, str.isspace as used by split/rstrip), on UTF-8. The metrics must tokenize
 * exactly as rouge-score and sacreBLEU do, and those are Python programs. Internal to
 * src/metrics. */
#ifndef TUTOR_METRICS_PYSTRING_H
#define TUTOR_METRICS_PYSTRING_H

#include <stddef.h>
#include <stdint.h>

/* Decodes UTF-8 into code points (malloc'd, *out_n of them; free()). -1 with tt_err
 * naming the byte offset on invalid UTF-8 (including surrogates and overlong forms). */
int utf8_to_codepoints(const char *s, size_t len, uint32_t **out, size_t *out_n);

/* Checks that s is valid UTF-8; 0 or -1 with tt_err. */
int utf8_validate(const char *s, size_t len);

/* Appends the UTF-8 encoding of c to buf (at least 4 bytes free); returns bytes written. */
size_t utf8_put(char *buf, uint32_t c);

/* Python's str.isspace() for one code point (the set str.split() and str.rstrip() use). */
int py_isspace(uint32_t c);

/* Python's str.lower() of s[i]: writes 1 or 2 code points to out and returns the count.
 * Full case mapping: U+0130 becomes "i" + U+0307, and capital sigma becomes final sigma
 * at the end of a word (Python's Final_Sigma rule), so the whole string is needed. */
int py_lower_at(const uint32_t *s, size_t n, size_t i, uint32_t out[2]);

/* Python's str.lower() of a UTF-8 string: malloc'd result (free()), or NULL with tt_err. */
char *py_lower_utf8(const char *s, size_t len);

#endif
