/* error.c: tutor's one error channel, a per-thread message buffer. Functions that fail
 * record why with tt_err() and return -1 or NULL; callers add context with tt_err_wrap(). */
#include "tutor/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[2048];

int tt_err(const char *fmt, ...) {
    /* formatted aside first: an argument may be tt_errmsg() itself */
    char tmp[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(err_msg, tmp, sizeof err_msg);
    return -1;
}

int tt_err_wrap(const char *fmt, ...) {
    char prefix[1024], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, old);
    return -1;
}

const char *tt_errmsg(void) { return err_msg; }
void tt_err_clear(void) { err_msg[0] = 0; }
