/* cmd_eval.c: `tutor eval`: a model on a labeled test set: quality (ROUGE, BLEU, chrF, test
 * cross-entropy, length, repetition) beside a baseline model and a lead-N baseline with
 * paired bootstrap intervals, exposure bias against an oracle, and cost. All computing is in
 * the library (evaluate.h); this file parses arguments and prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/evaluate.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor eval --model DIR --data TEST.jsonl [options]\n"
            "\n"
            "Generates with the model for every test input and scores it: ROUGE-1/2/L/Lsum F\n"
            "(rouge-score conventions), corpus BLEU and chrF (sacreBLEU, with signatures), mean\n"
            "sentence BLEU, test cross-entropy on the references (teacher-forced), length ratio,\n"
            "repetition and distinct-1/2. With --baseline, the baseline generates on the same inputs\n"
            "and every difference gets a paired bootstrap 95%% interval; with --oracle, exposure bias\n"
            "(accumulated KL(oracle || model) on the model's own prefixes against reference\n"
            "prefixes); unless --no-speed, the cost: parameters, size, peak memory, latency and\n"
            "throughput for greedy and beam search, interleaved with the baseline's.\n"
            "\n"
            "options:\n"
            "  --model DIR            the model directory to evaluate (required)\n"
            "  --data FILE            JSONL test set with source and target (required)\n"
            "  --baseline DIR         a model to compare with (normally the teacher)\n"
            "  --int8                 the model runs on DIR/model.int8.safetensors (tutor quantize);\n"
            "                         the baseline stays as it is (give the same DIR to compare)\n"
            "  --baseline-speed-only  only time the baseline beside the model (the cost table's\n"
            "                         ratios); no baseline outputs, scores or intervals\n"
            "  --speed-only           only the cost table (speed, memory, size) of the model and the\n"
            "                         baseline: nothing generated for scoring (to re-time models\n"
            "                         in one sitting)\n"
            "  --oracle DIR           oracle for exposure bias (normally the teacher; same tokenizer)\n"
            "  decoding: the model's (and the baseline's) generation_config.json, with these over it:\n"
            "%s"
            "  --lead N               also score lead-N: the first N words of each source\n"
            "  --names A,B            call the model A and the baseline B in the printed tables\n"
            "  --show-examples N      print the first N test examples: source, reference and every\n"
            "                         system's output\n"
            "  --max-examples N       only the first N test examples\n"
            "  --batch-size N         inputs per generation batch (32)\n"
            "  --max-source-tokens N  source budget (256; cut to the models' positions)\n"
            "  --max-target-tokens N  reference budget for cross-entropy and exposure bias (64)\n"
            "  (without a budget in generation_config.json or --max-new-tokens: 64 new tokens)\n"
            "  --exposure-len L       lengths l = 1..L of the exposure bias curve (default: max target)\n"
            "  --stem                 Porter stemming in ROUGE (rouge-score use_stemmer=True)\n"
            "  --resamples N --seed N paired bootstrap settings (1000, 12345; the sampling seed of\n"
            "                         --sample is 0 here)\n"
            "  --speed-examples N     inputs timed for latency and throughput (50)\n"
            "  --no-speed             skip the cost measurements\n"
            "  --threads N            threads (1)\n"
            "  --source-field NAME --target-field NAME   JSONL fields (source, target)\n"
            "  --json FILE            write every number, the settings and signatures as JSON\n"
            "  --generations FILE     write the outputs (JSONL: id, source, reference, prediction, ...)\n"
            "  --plot FILE.png        plot the exposure bias curves (gnuplot; needs --oracle)\n"
            "  -q, --quiet            no progress on stderr\n"
            "  -h, --help             this help\n",
            GEN_FLAGS_HELP);
}

typedef struct {
    TtProgress p;
    char raw[96], what[112];
} Progress;

static void on_progress(const char *what, long done, long total, void *ctx) {
    Progress *p = ctx;
    if (strcmp(p->raw, what)) {
        snprintf(p->raw, sizeof p->raw, "%s", what);
        snprintf(p->what, sizeof p->what, "generating: %s", what);
        tt_progress_init(&p->p, p->what, "inputs", 1);
    }
    tt_progress(&p->p, done, total, NULL);
}

static int parse_int(const char *flag, const char *value, long min, long *out) {
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < min) {
        fprintf(stderr, "tutor: eval: %s: '%s' is not a whole number >= %ld\n", flag, value, min);
        return -1;
    }
    *out = v;
    return 0;
}

/* The first characters of s (at most max bytes, cut at a UTF-8 boundary, newlines as spaces). */
static void print_clipped(const char *label, const char *s, size_t max) {
    size_t n = strlen(s);
    size_t cut = n <= max ? n : max;
    while (cut < n && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    printf("  %-10s ", label);
    for (size_t i = 0; i < cut; i++) putchar(s[i] == '\n' ? ' ' : s[i]);
    printf("%s\n", cut < n ? " ..." : "");
}

static void print_examples(const EvalReport *r, size_t k) {
    printf("\nthe first %zu test examples:\n", k < r->n ? k : r->n);
    for (size_t i = 0; i < k && i < r->n; i++) {
        printf("\n[%s]\n", r->ids[i]);
        print_clipped("source:", r->sources[i], 160);
        print_clipped("reference:", r->refs[i], 300);
        char a[40], b[40];
        snprintf(a, sizeof a, "%s:", r->opt.name_model ? r->opt.name_model : "model");
        snprintf(b, sizeof b, "%s:", r->opt.name_baseline ? r->opt.name_baseline : "baseline");
        print_clipped(a, r->model.hyps[i], 300);
        if (r->has_baseline) print_clipped(b, r->baseline.hyps[i], 300);
        if (r->has_lead) print_clipped(r->lead.name, r->lead.hyps[i], 300);
    }
}

int cmd_eval(int argc, char **argv) {
    EvalOptions o;
    eval_options_default(&o);
    const char *json_path = NULL, *gen_path = NULL, *plot_path = NULL;
    int quiet = 0;
    size_t show = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        /* --seed is the bootstrap's here */
        int took = strcmp(a, "--seed") ? gen_flags_parse(&o.gen, a, i + 1 < argc ? argv[i + 1] : NULL) : 0;
        if (took < 0) {
            fprintf(stderr, "tutor: eval: %s\n", tt_errmsg());
            return 2;
        }
        if (took) {
            i += took - 1;
            continue;
        }
        if (!strcmp(a, "--stem")) {
            o.use_stemmer = 1;
            continue;
        }
        if (!strcmp(a, "--no-speed")) {
            o.speed = 0;
            continue;
        }
        if (!strcmp(a, "--int8")) {
            o.int8 = 1;
            continue;
        }
        if (!strcmp(a, "--baseline-speed-only")) {
            o.baseline_speed_only = 1;
            continue;
        }
        if (!strcmp(a, "--speed-only")) {
            o.speed_only = 1;
            continue;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "tutor: eval: unexpected argument '%s' (see tutor eval --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tutor: eval: %s needs a value (see tutor eval --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long n;
        if (!strcmp(a, "--model")) o.model_dir = v;
        else if (!strcmp(a, "--data")) o.data_path = v;
        else if (!strcmp(a, "--baseline")) o.baseline_dir = v;
        else if (!strcmp(a, "--oracle")) o.oracle_dir = v;
        else if (!strcmp(a, "--names")) {
            static char names[256];
            snprintf(names, sizeof names, "%s", v);
            char *comma = strchr(names, ',');
            if (!comma || comma == names || !comma[1] || strchr(comma + 1, ',')) {
                fprintf(stderr, "tutor: eval: --names is MODEL,BASELINE (two names), not '%s'\n", v);
                return 2;
            }
            *comma = 0;
            o.name_model = names, o.name_baseline = comma + 1;
        }
        else if (!strcmp(a, "--json")) json_path = v;
        else if (!strcmp(a, "--generations")) gen_path = v;
        else if (!strcmp(a, "--plot")) plot_path = v;
        else if (!strcmp(a, "--source-field")) o.jsonl.source_field = v;
        else if (!strcmp(a, "--target-field")) o.jsonl.target_field = v;
        else {
            static const struct {
                const char *flag;
                long min;
            } ints[] = {{"--lead", 1},          {"--max-examples", 1},      {"--batch-size", 1},
                        {"--threads", 1},       {"--speed-examples", 1},    {"--max-source-tokens", 3},
                        {"--max-target-tokens", 2}, {"--exposure-len", 1}, {"--resamples", 1},
                        {"--seed", 0},          {"--show-examples", 0}};
            int k = 0, nk = (int)(sizeof ints / sizeof ints[0]);
            while (k < nk && strcmp(a, ints[k].flag)) k++;
            if (k == nk) {
                fprintf(stderr, "tutor: eval: unknown option '%s' (see tutor eval --help)\n", a);
                return 2;
            }
            if (parse_int(a, v, ints[k].min, &n)) return 2;
            switch (k) {
            case 0: o.lead = (int)n; break;
            case 1: o.max_examples = (size_t)n; break;
            case 2: o.batch_size = (int)n; break;
            case 3: o.threads = (int)n; break;
            case 4: o.speed_examples = (int)n; break;
            case 5: o.max_source_tokens = (int)n; break;
            case 6: o.max_target_tokens = (int)n; break;
            case 7: o.exposure_max_len = (int)n; break;
            case 8: o.resamples = (int)n; break;
            case 10: show = (size_t)n; break;
            default: o.seed = (uint64_t)n; break;
            }
        }
    }
    if (!o.model_dir || !o.data_path) {
        fprintf(stderr, "tutor: eval: --model and --data are required (see tutor eval --help)\n");
        return 2;
    }
    if (o.baseline_speed_only && (!o.baseline_dir || !o.speed)) {
        fprintf(stderr, "tutor: eval: --baseline-speed-only needs --baseline and the speed measurements (no --no-speed)\n");
        return 2;
    }
    if (o.speed_only && (!o.speed || o.oracle_dir || gen_path || show || plot_path)) {
        fprintf(stderr, "tutor: eval: --speed-only measures the cost only: not with --no-speed, --oracle, "
                        "--generations, --show-examples or --plot\n");
        return 2;
    }
    if (plot_path && !o.oracle_dir) {
        fprintf(stderr, "tutor: eval: --plot draws exposure bias, which needs --oracle\n");
        return 2;
    }
    Progress prog;
    memset(&prog, 0, sizeof prog);
    if (quiet) tt_log_set_level(0);
    else o.progress = on_progress, o.progress_ctx = &prog;

    EvalReport r;
    if (eval_run(&o, &r)) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        return 1;
    }
    int status = 0;
    char *table = eval_report_table(&r);
    if (table) {
        fputs("\n", stdout);
        fputs(table, stdout);
        fflush(stdout);
        free(table);
    }
    if (show) print_examples(&r, show);
    if (json_path) {
        if (eval_write_json(&r, json_path)) {
            fprintf(stderr, "tutor: %s\n", tt_errmsg());
            status = 1;
        } else if (!quiet) {
            fprintf(stderr, "eval: wrote %s\n", json_path);
        }
    }
    if (gen_path) {
        if (eval_write_generations(&r, gen_path)) {
            fprintf(stderr, "tutor: %s\n", tt_errmsg());
            status = 1;
        } else if (!quiet) {
            fprintf(stderr, "eval: wrote %s\n", gen_path);
        }
    }
    if (plot_path && r.has_exposure) {
        int plotted;
        char title[1024];
        snprintf(title, sizeof title, "exposure bias of %s against oracle %s", o.model_dir, o.oracle_dir);
        if (exposure_bias_plot(&r.exposure, plot_path, title, &plotted)) {
            fprintf(stderr, "tutor: %s\n", tt_errmsg());
            status = 1;
        } else if (plotted && !quiet) {
            fprintf(stderr, "eval: wrote %s\n", plot_path);
        }
    }
    eval_report_free(&r);
    return status;
}
