/* main.c: the `tutor` program: dispatches to one subcommand per source file. */
#include <stdio.h>
#include <string.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/kernels.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} Command;

static const Command commands[] = {
    {"tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer, or encode/decode with one"},
    {"pretrain", cmd_pretrain, "pretrain a model on unlabeled text by denoising (text infilling, gap sentences)"},
    {"train", cmd_train, "train a model on gold pairs (a teacher, or a student from scratch)"},
    {"generate", cmd_generate, "generate targets (greedy, beam, sampling): pseudo-targets, serving"},
    {"eval", cmd_eval, "ROUGE, BLEU, exposure bias, speed and size of a model on a test set"},
    {"tune", cmd_tune, "choose the decoding (beams, length penalty, no-repeat) a model is best with on dev"},
    {"score", cmd_score, "ROUGE and BLEU of hypotheses against references"},
    {"distill", cmd_distill, "train a student from a teacher (word-level KD, PTs, Joint-Teaching)"},
    {"serve", cmd_serve, "serve a model over HTTP (POST /generate, GET /health, GET /metrics)"},
    {"quantize", cmd_quantize, "int8 weights for a model directory (tutor generate/eval --int8 use them)"},
    {"study", cmd_study, "rerun the paper's study on a task: every stage, decided on dev, reported on test"},
    {"info", cmd_info, "describe a model directory: architecture, sizes, parameters"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fprintf(f, "usage: tutor COMMAND [ARGS]   (tutor COMMAND --help for its options)\n\n"
               "tutor makes a small, fast text-generation model out of a large one by knowledge\n"
               "distillation.\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tutor: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    gemm_fix_blas_core(argv);
    /* under mpirun: one rank of a data-parallel run (core/dist.c) */
    if (dist_init(&argc, &argv)) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        return 1;
    }
    int rc = run(argc, argv);
    dist_finalize();
    return rc;
}
