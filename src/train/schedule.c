/* schedule.c: learning-rate schedules: linear warmup, then constant, linear or cosine decay. */
#include <math.h>
#include <string.h>

#include "tutor/optim.h"

double schedule_lr(const Schedule *s, long step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return s->peak_lr * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == SCHEDULE_CONSTANT || s->total_steps <= s->warmup_steps) return s->peak_lr;
    double progress = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    if (progress > 1) progress = 1;
    if (progress < 0) progress = 0;
    double f = s->kind == SCHEDULE_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return s->min_lr + (s->peak_lr - s->min_lr) * f;
}

int schedule_parse_kind(const char *name, ScheduleKind *out) {
    if (!strcmp(name, "constant")) *out = SCHEDULE_CONSTANT;
    else if (!strcmp(name, "linear")) *out = SCHEDULE_LINEAR;
    else if (!strcmp(name, "cosine")) *out = SCHEDULE_COSINE;
    else return tt_err("unknown schedule \"%s\" (constant, linear or cosine)", name);
    return 0;
}
