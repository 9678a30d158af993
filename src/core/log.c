/* log.c: the one logging call. Messages go to stderr, prefixed with "tutor: ". */
#include "tutor/core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

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

/* ---- progress ---- */

void tt_format_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)s;
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void tt_progress_init(TtProgress *p, const char *what, const char *unit, int enabled) {
    p->what = what;
    p->unit = unit;
    p->enabled = enabled;
    p->tty = enabled && isatty(2);
    p->t0 = tt_now_s();
    p->last_log = p->t0;
    p->last_done = -1;
    p->done0 = -1;
}

void tt_progress(TtProgress *p, long done, long total, const char *extra) {
    if (!p->enabled || done == p->last_done) return;
    double now = tt_now_s();
    if (p->done0 < 0) p->done0 = done, p->t0 = now;
    p->last_done = done;
    double el = now - p->t0;
    double rate = el > 0 ? (done - p->done0) / el : 0;
    char eta[32];
    tt_format_duration(eta, sizeof eta, rate > 0 && total > done ? (total - done) / rate : (done >= total ? 0 : NAN));
    int finished = total > 0 && done >= total;
    if (p->tty) {
        int width = 30, fill = total > 0 ? (int)(width * (double)done / (double)total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[width] = 0;
        fprintf(stderr, "\r  %s %ld/%ld [%s] %.1f %s/s  ETA %s %s  ", p->what, done, total, bar, rate, p->unit, eta,
                extra ? extra : "");
        if (finished) fputc('\n', stderr);
        fflush(stderr);
    } else if (now - p->last_log >= 10 || finished) {
        p->last_log = now;
        tt_info("%s: %ld/%ld %s, %.1f %s/s, ETA %s%s%s", p->what, done, total, p->unit, rate, p->unit, eta,
                extra ? "  " : "", extra ? extra : "");
    }
}
