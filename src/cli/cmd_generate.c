/* cmd_generate.c: `tutor generate`: targets for a JSONL file of inputs with a model directory
 * (greedy, beam search, sampling), one JSON line per input, resumable. The decoding defaults
 * come from the model's generation_config.json; flags override them. The work is in the
 * library (generate.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor generate --model DIR --input FILE.jsonl [-o OUT.jsonl] [options]\n\n"
            "Generates targets for each line's source and writes one JSON line per input, in input\n"
            "order: {\"id\", \"source\", \"targets\": [...], \"scores\": [...], \"logprobs\": [...]}.\n"
            "Sources are encoded as training does (<s> text </s>); a decoder-only model continues\n"
            "that prompt. logprobs: log-probability of each target under the model's unmodified\n"
            "distribution; scores: beam search's length-penalised score (= logprobs otherwise).\n"
            "Defaults come from DIR/generation_config.json (Hugging Face's keys), else HF's.\n\n"
            "options:\n"
            "  --model DIR              model directory (config.json, model.safetensors)\n"
            "  --input FILE             JSONL inputs\n"
            "  -o, --output FILE        output JSONL (default: standard output)\n"
            "  --tokenizer PATH         tokenizer.json (default: DIR/tokenizer.json)\n"
            "  --source-field NAME      the input field to generate from (default \"source\")\n"
            "  --id-field NAME          the id field (default \"id\"; the line number if absent)\n"
            "  --beam N                 beam search with N beams\n"
            "  --length-penalty L       beam score = sum logprobs / length ** L (default 1)\n"
            "  --early-stopping MODE    beam search: true, false (HF's heuristic) or never\n"
            "  --sample                 sample instead of searching\n"
            "  --temperature T          sampling temperature (default 1)\n"
            "  --top-k K                sample among the K most likely tokens (0: all; HF's default\n"
            "                           50, but 0 when --top-p is given without --top-k)\n"
            "  --top-p P                nucleus sampling: the smallest set of mass >= P\n"
            "  --num-return K           results per input (beam: <= N; sampling: K samples)\n"
            "  --max-new-tokens N       at most N new tokens\n"
            "  --min-new-tokens N       no </s> before N new tokens\n"
            "  --no-repeat-ngram N      never repeat an n-gram of N tokens\n"
            "  --repetition-penalty P   HF's penalty on tokens already in the sequence\n"
            "  --seed S                 sampling seed (default 0); input i uses stream (S, i)\n"
            "  --batch-size N           inputs decoded together (default 16)\n"
            "  --threads N              threads (default: all cores)\n"
            "  --max-source-tokens N    sources cut to N tokens, </s> kept (default 256)\n"
            "  --resume                 keep OUT's complete lines and continue after them\n"
            "  --no-progress            plain log lines even on a terminal\n"
            "  -h, --help               this help\n");
}

typedef struct {
    int tty;
    double last_s;
    long last_done;
} Progress;

static void show_progress(long done, long total, double elapsed_s, void *ctx) {
    Progress *p = ctx;
    if (done == p->last_done) return;
    p->last_done = done;
    double rate = elapsed_s > 0 ? done / elapsed_s : 0;
    double eta = rate > 0 && total > done ? (total - done) / rate : 0;
    if (p->tty) {
        fprintf(stderr, "\r%ld/%ld inputs  %.1f inputs/s  ETA %02d:%02d:%02d ", done, total, rate, (int)(eta / 3600),
                (int)(eta / 60) % 60, (int)eta % 60);
        if (done >= total) fputc('\n', stderr);
        fflush(stderr);
    } else if (elapsed_s - p->last_s >= 10 || done >= total) {
        p->last_s = elapsed_s;
        tt_info("generate: %ld/%ld inputs, %.1f inputs/s, ETA %.0f s", done, total, rate, eta);
    }
}

static int parse_int(const char *flag, const char *s, int lo, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > 1000000000) {
        fprintf(stderr, "tutor: generate: %s wants an integer >= %d, not '%s'\n", flag, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_double(const char *flag, const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end) {
        fprintf(stderr, "tutor: generate: %s wants a number, not '%s'\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *tok_path = NULL;
    GenFileOptions fo;
    gen_file_options_default(&fo);
    /* flags are applied after generation_config.json is read: keep them */
    int beam = -1, sample = 0, top_k = -1, num_return = -1, max_new = -1, min_new = -1, ngram = -1, threads = 0;
    int progress = 1, early = -1;
    double temperature = -1, top_p = -1, rep = -1, lp = 0;
    int have_lp = 0;
    long long seed = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int flag_only = !strcmp(a, "--sample") || !strcmp(a, "--resume") || !strcmp(a, "--no-progress");
        if (!flag_only && i + 1 >= argc) {
            fprintf(stderr, "tutor: generate: %s needs a value (see tutor generate --help)\n", a);
            return 2;
        }
        const char *v = flag_only ? NULL : argv[i + 1];
        int rc = 0;
        if (!strcmp(a, "--sample")) sample = 1;
        else if (!strcmp(a, "--resume")) fo.resume = 1;
        else if (!strcmp(a, "--no-progress")) progress = 0;
        else if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--input")) fo.input_path = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) fo.output_path = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--source-field")) fo.source_field = v;
        else if (!strcmp(a, "--id-field")) fo.id_field = v;
        else if (!strcmp(a, "--beam")) rc = parse_int(a, v, 1, &beam);
        else if (!strcmp(a, "--length-penalty")) rc = parse_double(a, v, &lp), have_lp = 1;
        else if (!strcmp(a, "--early-stopping")) {
            if (!strcmp(v, "true")) early = EARLY_STOP_TRUE;
            else if (!strcmp(v, "false")) early = EARLY_STOP_HEURISTIC;
            else if (!strcmp(v, "never")) early = EARLY_STOP_NEVER;
            else {
                fprintf(stderr, "tutor: generate: --early-stopping wants true, false or never\n");
                rc = -1;
            }
        } else if (!strcmp(a, "--temperature")) rc = parse_double(a, v, &temperature);
        else if (!strcmp(a, "--top-k")) rc = parse_int(a, v, 0, &top_k);
        else if (!strcmp(a, "--top-p")) rc = parse_double(a, v, &top_p);
        else if (!strcmp(a, "--num-return")) rc = parse_int(a, v, 1, &num_return);
        else if (!strcmp(a, "--max-new-tokens")) rc = parse_int(a, v, 1, &max_new);
        else if (!strcmp(a, "--min-new-tokens")) rc = parse_int(a, v, 0, &min_new);
        else if (!strcmp(a, "--no-repeat-ngram")) rc = parse_int(a, v, 0, &ngram);
        else if (!strcmp(a, "--repetition-penalty")) rc = parse_double(a, v, &rep);
        else if (!strcmp(a, "--seed")) {
            char *end;
            seed = strtoll(v, &end, 10);
            if (!*v || *end || seed < 0) {
                fprintf(stderr, "tutor: generate: --seed wants a non-negative integer\n");
                rc = -1;
            }
        } else if (!strcmp(a, "--batch-size")) rc = parse_int(a, v, 1, &fo.batch_size);
        else if (!strcmp(a, "--threads")) rc = parse_int(a, v, 1, &threads);
        else if (!strcmp(a, "--max-source-tokens")) rc = parse_int(a, v, 3, &fo.max_source_tokens);
        else {
            fprintf(stderr, "tutor: generate: unknown argument '%s' (see tutor generate --help)\n", a);
            return 2;
        }
        if (rc) return 2;
        if (!flag_only) i++;
    }
    if (!model_dir || !fo.input_path) {
        fprintf(stderr, "tutor: generate: --model and --input are required (see tutor generate --help)\n");
        return 2;
    }
    if (fo.resume && !fo.output_path) {
        fprintf(stderr, "tutor: generate: --resume needs -o FILE\n");
        return 2;
    }
    if (threads > 0) tt_set_threads(threads);
    else tt_set_threads((int)sysconf(_SC_NPROCESSORS_ONLN));
    Model *m = model_load(model_dir);
    if (!m) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        return 1;
    }
    GenConfig g;
    gen_config_from_model(&g, &m->cfg);
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", model_dir);
    if (file_exists(path) && gen_config_load(&g, path)) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        model_free(m);
        return 1;
    }
    if (beam > 0) g.num_beams = beam;
    if (sample) g.do_sample = 1;
    if (beam > 1) g.do_sample = 0;
    if (have_lp) g.length_penalty = lp;
    if (early >= 0) g.early_stopping = early;
    if (temperature >= 0) g.temperature = temperature;
    if (top_p >= 0) {
        g.top_p = top_p;
        if (top_k < 0) g.top_k = 0; /* nucleus sampling alone, as the paper's PTs */
    }
    if (top_k >= 0) g.top_k = top_k;
    if (num_return > 0) g.num_return_sequences = num_return;
    if (max_new > 0) g.max_new_tokens = max_new;
    if (min_new >= 0) g.min_new_tokens = min_new;
    if (ngram >= 0) g.no_repeat_ngram_size = ngram;
    if (rep >= 0) g.repetition_penalty = rep;
    if (seed >= 0) g.seed = (uint64_t)seed;
    if (gen_config_check(&g)) {
        fprintf(stderr, "tutor: generate: %s\n", tt_errmsg());
        model_free(m);
        return 2;
    }
    if (!tok_path) {
        snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
        tok_path = path;
    }
    Tokenizer *tok = tokenizer_load(tok_path);
    if (!tok) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        model_free(m);
        return 1;
    }
    Progress pr = {isatty(2), 0, -1};
    if (progress || !pr.tty) {
        pr.tty = progress && pr.tty;
        fo.progress = show_progress;
        fo.progress_ctx = &pr;
    }
    int rc = generate_file(m, tok, &g, &fo);
    if (rc) fprintf(stderr, "%stutor: %s\n", pr.tty ? "\n" : "", tt_errmsg());
    tokenizer_free(tok);
    model_free(m);
    return rc ? 1 : 0;
}
