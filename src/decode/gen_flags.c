/* gen_flags.c: the decoding flags every command that generates takes, parsed and validated
 * in one place and applied over a model's generation_config.json. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/generate.h"

const char GEN_FLAGS_HELP[] =
    "  --beam N                 beam search with N beams (1: greedy)\n"
    "  --length-penalty L       beam score = sum logprobs / length ** L (default 1)\n"
    "  --early-stopping MODE    beam search: true, false (HF's heuristic) or never\n"
    "  --sample                 sample instead of searching\n"
    "  --temperature T          sampling temperature, > 0 (default 1)\n"
    "  --top-k K                sample among the K most likely tokens (0: all; HF's default\n"
    "                           50, but 0 when --top-p is given without --top-k)\n"
    "  --top-p P                nucleus sampling: the smallest set of mass >= P, 0 < P <= 1\n"
    "  --num-return K           results per input (beam: <= N; sampling: K samples)\n"
    "  --max-new-tokens N       at most N new tokens\n"
    "  --min-new-tokens N       no </s> before N new tokens\n"
    "  --no-repeat-ngram N      never repeat an n-gram of N tokens (0: off)\n"
    "  --repetition-penalty P   HF's penalty on tokens already in the sequence, > 0 (1: off)\n"
    "  --seed S                 sampling seed (default 0); input i uses stream (S, i)\n";

void gen_flags_init(GenFlags *f) {
    f->num_beams = f->top_k = f->num_return = f->max_new = f->min_new = f->no_repeat_ngram = f->early_stopping = -1;
    f->sample = 0;
    f->temperature = f->top_p = f->repetition_penalty = f->length_penalty = NAN;
    f->seed = -1;
}

static int int_value(const char *flag, const char *v, long lo, long hi, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi)
        return tt_err("%s needs a whole number in [%ld, %ld], not '%s'", flag, lo, hi, v ? v : "");
    *out = (int)x;
    return 0;
}

static int num_value(const char *flag, const char *v, double lo, double hi, int open_lo, double *out) {
    char *end;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || !*v || *end || !isfinite(x) || x < lo || x > hi || (open_lo && x == lo))
        return tt_err("%s needs a number in %s%g, %g], not '%s'", flag, open_lo ? "(" : "[", lo, hi, v ? v : "");
    *out = x;
    return 0;
}

int gen_flags_parse(GenFlags *f, const char *a, const char *v) {
    if (!strcmp(a, "--sample")) {
        f->sample = 1;
        return 1;
    }
    static const char *const with_value[] = {"--beam", "--length-penalty", "--early-stopping", "--temperature",
                                             "--top-k", "--top-p", "--num-return", "--max-new-tokens",
                                             "--min-new-tokens", "--no-repeat-ngram", "--repetition-penalty",
                                             "--seed", NULL};
    int k = 0;
    while (with_value[k] && strcmp(a, with_value[k])) k++;
    if (!with_value[k]) return 0;
    int rc = 0;
    switch (k) {
    case 0: rc = int_value(a, v, 1, 1000, &f->num_beams); break;
    case 1: rc = num_value(a, v, -100, 100, 0, &f->length_penalty); break;
    case 2:
        if (v && !strcmp(v, "true")) f->early_stopping = EARLY_STOP_TRUE;
        else if (v && !strcmp(v, "false")) f->early_stopping = EARLY_STOP_HEURISTIC;
        else if (v && !strcmp(v, "never")) f->early_stopping = EARLY_STOP_NEVER;
        else rc = tt_err("%s needs true, false or never, not '%s'", a, v ? v : "");
        break;
    case 3: rc = num_value(a, v, 0, 1e6, 1, &f->temperature); break;
    case 4: rc = int_value(a, v, 0, 1000000000, &f->top_k); break;
    case 5: rc = num_value(a, v, 0, 1, 1, &f->top_p); break;
    case 6: rc = int_value(a, v, 1, 1000, &f->num_return); break;
    case 7: rc = int_value(a, v, 1, 1000000, &f->max_new); break;
    case 8: rc = int_value(a, v, 0, 1000000, &f->min_new); break;
    case 9: rc = int_value(a, v, 0, 1000, &f->no_repeat_ngram); break;
    case 10: rc = num_value(a, v, 0, 1e6, 1, &f->repetition_penalty); break;
    default: {
        char *end;
        long long s = v ? strtoll(v, &end, 10) : -1;
        if (!v || !*v || *end || s < 0) rc = tt_err("%s needs a whole number >= 0, not '%s'", a, v ? v : "");
        else f->seed = s;
    }
    }
    return rc ? -1 : 2;
}

void gen_flags_apply(const GenFlags *f, GenConfig *g) {
    if (f->num_beams > 0) g->num_beams = f->num_beams;
    if (f->sample) g->do_sample = 1;
    if (f->num_beams > 1) g->do_sample = 0;
    if (!isnan(f->length_penalty)) g->length_penalty = f->length_penalty;
    if (f->early_stopping >= 0) g->early_stopping = f->early_stopping;
    if (!isnan(f->temperature)) g->temperature = f->temperature;
    if (!isnan(f->top_p)) {
        g->top_p = f->top_p;
        if (f->top_k < 0) g->top_k = 0; /* nucleus sampling alone, as the paper's PTs */
    }
    if (f->top_k >= 0) g->top_k = f->top_k;
    if (f->num_return > 0) g->num_return_sequences = f->num_return;
    if (f->max_new > 0) g->max_new_tokens = f->max_new;
    if (f->min_new >= 0) g->min_new_tokens = f->min_new;
    if (f->no_repeat_ngram >= 0) g->no_repeat_ngram_size = f->no_repeat_ngram;
    if (!isnan(f->repetition_penalty)) g->repetition_penalty = f->repetition_penalty;
    if (f->seed >= 0) g->seed = (uint64_t)f->seed;
}
