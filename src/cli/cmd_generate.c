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
            "%s"
            "  --batch-size N           inputs decoded together (default 16)\n"
            "  --threads N              threads (default: all cores)\n"
            "  --max-source-tokens N    sources cut to N tokens, </s> kept (default 256)\n"
            "  --resume                 keep OUT's complete lines and continue after them\n"
            "  --int8                   use DIR/model.int8.safetensors (tutor quantize) for every linear\n"
            "                           layer and the output projection\n"
            "  --no-progress            plain log lines even on a terminal\n"
            "  -h, --help               this help\n",
            GEN_FLAGS_HELP);
}

static void show_progress(long done, long total, double elapsed_s, void *ctx) {
    (void)elapsed_s;
    tt_progress(ctx, done, total, NULL);
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

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *tok_path = NULL;
    GenFileOptions fo;
    gen_file_options_default(&fo);
    /* flags are applied after generation_config.json is read: keep them */
    GenFlags gf;
    gen_flags_init(&gf);
    int threads = 0, progress = 1, int8 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int took = gen_flags_parse(&gf, a, i + 1 < argc ? argv[i + 1] : NULL);
        if (took < 0) {
            fprintf(stderr, "tutor: generate: %s\n", tt_errmsg());
            return 2;
        }
        if (took) {
            i += took - 1;
            continue;
        }
        int flag_only = !strcmp(a, "--resume") || !strcmp(a, "--no-progress") || !strcmp(a, "--int8");
        if (!flag_only && i + 1 >= argc) {
            fprintf(stderr, "tutor: generate: %s needs a value (see tutor generate --help)\n", a);
            return 2;
        }
        const char *v = flag_only ? NULL : argv[i + 1];
        int rc = 0;
        if (!strcmp(a, "--resume")) fo.resume = 1;
        else if (!strcmp(a, "--no-progress")) progress = 0;
        else if (!strcmp(a, "--int8")) int8 = 1;
        else if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--input")) fo.input_path = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) fo.output_path = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--source-field")) fo.source_field = v;
        else if (!strcmp(a, "--id-field")) fo.id_field = v;
        else if (!strcmp(a, "--batch-size")) rc = parse_int(a, v, 1, &fo.batch_size);
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
    if (fo.output_path) {
        const char *inputs[] = {fo.input_path};
        if (check_not_an_input(fo.output_path, inputs, 1) || check_output_kind(fo.output_path, OUTPUT_JSONL_GENERATED)) {
            fprintf(stderr, "tutor: generate: %s\n", tt_errmsg());
            return 1;
        }
    }
    if (threads > 0) tt_set_threads(threads);
    else tt_set_threads((int)sysconf(_SC_NPROCESSORS_ONLN));
    Model *m = model_load(model_dir);
    if (!m || (int8 && model_q8_load_dir(m, model_dir))) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        model_free(m);
        return 1;
    }
    if (int8) fprintf(stderr, "tutor: generate: int8 weights, %s kernels\n", q8_path_name(m->q8->path));
    GenConfig g;
    char path[4096];
    if (gen_config_for_dir(&g, &m->cfg, model_dir)) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        model_free(m);
        return 1;
    }
    gen_flags_apply(&gf, &g);
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
    TtProgress pr;
    tt_progress_init(&pr, "generate", "inputs", 1);
    if (!progress) pr.tty = 0;
    {
        fo.progress = show_progress;
        fo.progress_ctx = &pr;
    }
    int rc = generate_file(m, tok, &g, &fo);
    if (rc) fprintf(stderr, "%stutor: %s\n", pr.tty ? "\n" : "", tt_errmsg());
    tokenizer_free(tok);
    model_free(m);
    return rc ? 1 : 0;
}
