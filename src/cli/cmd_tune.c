/* cmd_tune.c: `tutor tune`: chooses the decoding a model is best with on dev data (beam
 * size, length penalty, no-repeat n-gram size) by dev ROUGE-L, and writes it into the
 * model's generation_config.json, as Hugging Face's summarisation checkpoints ship theirs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tutor/cli.h"
#include "tutor/evaluate.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor tune --model DIR --data DEV.jsonl [options]\n\n"
            "Tries every decoding of a small grid on the first dev pairs, scores each by ROUGE-L F\n"
            "(rouge-score conventions), prints the table, and writes the best (num_beams,\n"
            "length_penalty, no_repeat_ngram_size) into DIR/generation_config.json, keeping its\n"
            "other keys. Ties go to the cheaper search (fewer beams, listed first).\n\n"
            "options:\n"
            "  --model DIR              the model directory (required)\n"
            "  --data FILE              JSONL dev pairs (required; never the test set)\n"
            "  --max-examples N         dev pairs scored per setting (300)\n"
            "  --beams LIST             beam sizes to try (1,4,6)\n"
            "  --length-penalties LIST  length penalties for beam search (0.8,1.0,1.5)\n"
            "  --no-repeat LIST         no-repeat n-gram sizes (0,3)\n"
            "  --max-source-tokens N    sources cut to N tokens (256, at most the model's positions)\n"
            "  --batch-size N           inputs per generation batch (32)\n"
            "  --threads N              threads (default: all cores)\n"
            "  --source-field NAME --target-field NAME   JSONL fields (source, target)\n"
            "  --dry-run                print the table and the choice, write nothing\n"
            "  -h, --help               this help\n");
}

/* "1,4,6" -> values; -1 on a bad list */
static int parse_list(const char *flag, const char *s, double *out, int cap, double lo, double hi, int whole) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || v < lo || v > hi || (whole && v != floor(v)) || n == cap) {
            fprintf(stderr, "tutor: tune: %s needs a comma-separated list of %s in [%g, %g] (at most %d), not '%s'\n",
                    flag, whole ? "whole numbers" : "numbers", lo, hi, cap, s);
            return -1;
        }
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) {
            fprintf(stderr, "tutor: tune: %s: unexpected '%c' in '%s'\n", flag, *p, s);
            return -1;
        }
    }
    if (!n) {
        fprintf(stderr, "tutor: tune: %s is empty\n", flag);
        return -1;
    }
    return n;
}

static int parse_count(const char *flag, const char *v, long lo, long *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > 1000000000) {
        fprintf(stderr, "tutor: tune: %s needs a whole number >= %ld, not '%s'\n", flag, lo, v);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_tune(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL;
    double beams[16] = {1, 4, 6}, lps[16] = {0.8, 1.0, 1.5}, ngrams[16] = {0, 3};
    int nb = 3, nl = 3, nn = 2, dry = 0;
    long max_examples = 300, max_src = 256, batch = 32, threads = 0;
    JsonlOptions jo;
    jsonl_options_default(&jo);
    jo.require_target = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--dry-run")) {
            dry = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tutor: tune: %s needs a value (see tutor tune --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--source-field")) jo.source_field = v;
        else if (!strcmp(a, "--target-field")) jo.target_field = v;
        else if (!strcmp(a, "--beams")) rc = (nb = parse_list(a, v, beams, 16, 1, 64, 1)) < 0;
        else if (!strcmp(a, "--length-penalties")) rc = (nl = parse_list(a, v, lps, 16, -10, 10, 0)) < 0;
        else if (!strcmp(a, "--no-repeat")) rc = (nn = parse_list(a, v, ngrams, 16, 0, 16, 1)) < 0;
        else if (!strcmp(a, "--max-examples")) rc = parse_count(a, v, 1, &max_examples);
        else if (!strcmp(a, "--max-source-tokens")) rc = parse_count(a, v, 3, &max_src);
        else if (!strcmp(a, "--batch-size")) rc = parse_count(a, v, 1, &batch);
        else if (!strcmp(a, "--threads")) rc = parse_count(a, v, 1, &threads);
        else {
            fprintf(stderr, "tutor: tune: unknown argument '%s' (see tutor tune --help)\n", a);
            return 2;
        }
        if (rc) return 2;
    }
    if (!model_dir || !data) {
        fprintf(stderr, "tutor: tune: --model and --data are required (see tutor tune --help)\n");
        return 2;
    }
    tt_set_threads(threads > 0 ? (int)threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    int rc = 1;
    Model *m = model_load(model_dir);
    Tokenizer *tok = NULL;
    Dataset ds = {0};
    PairSet ps = {0};
    const char **refs = NULL;
    char path[4200];
    if (!m) goto done;
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    if (!(tok = tokenizer_load(path))) goto done;
    if (dataset_load_jsonl(&ds, data, &jo, (size_t)max_examples)) goto done;
    if (!ds.n) {
        tt_err("%s: no examples", data);
        goto done;
    }
    int src_budget = (int)max_src;
    if (model_is_encdec(&m->cfg) && src_budget > m->cfg.max_positions) src_budget = m->cfg.max_positions;
    GenConfig base;
    if (gen_config_for_dir(&base, &m->cfg, model_dir)) goto done;
    snprintf(path, sizeof path, "%s/generation_config.json", model_dir);
    if (base.max_new_tokens <= 0) base.max_new_tokens = 64;
    base.do_sample = 0;
    if (!model_is_encdec(&m->cfg) && src_budget > m->cfg.max_positions - base.max_new_tokens)
        src_budget = m->cfg.max_positions - base.max_new_tokens;
    if (pairset_build(&ps, &ds, tok, src_budget, 8, 0)) goto done;
    refs = malloc(ds.n * sizeof *refs);
    if (!refs) {
        tt_err("out of memory");
        goto done;
    }
    for (size_t i = 0; i < ds.n; i++) refs[i] = ds.items[i].target;
    printf("decoding on %zu dev pairs of %s (ROUGE-L F, rouge-score conventions)\n\n", ds.n, data);
    printf("  beams  length_penalty  no_repeat  ROUGE-L   seconds\n");
    double best = -1;
    GenConfig chosen = base;
    for (int b = 0; b < nb; b++)
        for (int l = 0; l < (beams[b] > 1 ? nl : 1); l++)
            for (int k = 0; k < nn; k++) {
                GenConfig g = base;
                g.num_beams = (int)beams[b];
                g.length_penalty = beams[b] > 1 ? lps[l] : 1.0;
                g.no_repeat_ngram_size = (int)ngrams[k];
                if (gen_config_check(&g)) goto done;
                double rl, secs;
                if (rouge_of_outputs(m, tok, &ps, refs, ps.n, &g, (int)batch, &rl, &secs)) goto done;
                char lp[16];
                if (g.num_beams > 1) snprintf(lp, sizeof lp, "%g", g.length_penalty);
                else snprintf(lp, sizeof lp, "-");
                printf("  %5d  %14s  %9d  %7.2f  %8.1f\n", g.num_beams, lp, g.no_repeat_ngram_size, rl, secs);
                fflush(stdout);
                if (rl > best) best = rl, chosen = g;
            }
    printf("\nbest: num_beams %d, length_penalty %g, no_repeat_ngram_size %d: ROUGE-L %.2f\n", chosen.num_beams,
           chosen.length_penalty, chosen.no_repeat_ngram_size, best);
    if (dry) {
        rc = 0;
        goto done;
    }
    if (gen_config_save(&chosen, path)) goto done;
    printf("written to %s\n", path);
    rc = 0;
done:
    if (rc) fprintf(stderr, "tutor: %s\n", tt_errmsg());
    free(refs);
    pairset_free(&ps);
    dataset_free(&ds);
    tokenizer_free(tok);
    model_free(m);
    return rc;
}
