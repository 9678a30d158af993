/* cmd_train.c: `tutor train`: builds a model from a config (or starts from a model
 * directory) and trains it on gold pairs with the library's training loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"
#include "tutor/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor train --tokenizer TOK --data TRAIN.jsonl -o OUT_DIR [options]\n\n"
            "Trains a model on gold (source, target) pairs. OUT_DIR receives the best model by dev\n"
            "loss (a Hugging Face model directory), metrics.jsonl, and the last checkpoint for\n"
            "--resume. SIGINT/SIGTERM save a checkpoint before exiting.\n\n" TRAIN_CLI_MODEL_HELP
            "data:\n"
            "  --tokenizer FILE       tokenizer.json (tutor tokenizer train makes one)\n"
            "  --data FILE            training pairs (JSONL)\n"
            "  --dev FILE             dev pairs for evaluation, best-model choice, early stopping\n"
            "  --source-field NAME --target-field NAME   (default source, target)\n"
            "  --skip-bad             skip malformed lines (counted) instead of stopping\n"
            "  --max-train-examples N --max-dev-examples N   (default all)\n"
            "  --max-source-tokens N (256) --max-target-tokens N (64)\n" TRAIN_CLI_OPTIONS_HELP);
}

static int train_flags(void *ctx, int *i, int argc, char **argv) {
    TrainCli *c = ctx;
    const char *a = argv[*i];
    if (!strcmp(a, "--max-train-examples") || !strcmp(a, "--max-dev-examples")) {
        if (!train_cli_need_arg("train", *i, argc, a)) return -1;
        char *end;
        long long v = strtoll(argv[*i + 1], &end, 10);
        if (*end || v < 0) {
            fprintf(stderr, "tutor: train: %s needs a count >= 0, not '%s'\n", a, argv[*i + 1]);
            return -1;
        }
        if (a[6] == 't') c->o.max_train_examples = (size_t)v;
        else c->o.max_dev_examples = (size_t)v;
        (*i)++;
        return 1;
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    TrainCli c;
    memset(&c, 0, sizeof c);
    int pr = train_cli_parse(&c, "train", argc, argv, usage, train_flags, &c);
    if (pr) {
        train_cli_free(&c);
        return pr == 1 ? 0 : 2;
    }
    if (!c.o.train_path || !c.o.out_dir || (!c.o.tokenizer_path && !c.init_dir)) {
        fprintf(stderr, "tutor: train: --tokenizer, --data and -o are required (see tutor train --help)\n");
        train_cli_free(&c);
        return 2;
    }
    int rc = -1;
    if (train_cli_tokenizer(&c) || train_cli_model(&c, 0) || train_cli_gen_config(&c)) goto done;
    rc = train_run(c.m, c.tok, &c.o);
done:
    if (rc < 0) fprintf(stderr, "tutor: %s\n", tt_errmsg());
    train_cli_free(&c);
    return rc < 0 ? 1 : rc == 1 ? 130 : 0;
}
