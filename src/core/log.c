/* log.c: the one logging call. Messages go to stderr, prefixed with "tutor: ". */
#include "tutor/core.h"

#include <stdarg.h>
#include <stdio.h>

static int log_level = 1;

void tt_log_set_level(int level) { log_level = level; }
int tt_log_level(void) { return log_level; }

void tt_log(int level, const char *fmt, ...) {
    if (level > log_level) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("tutor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
