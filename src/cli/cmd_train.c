/* cmd_train.c: `tutor train`: builds a model from a config (or starts from a model
 * directory) and trains it on gold pairs with the library's training loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"
#include "tutor/cli.h"
#include "tutor/evaluate.h"
#include "tutor/generate.h"

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
            "  --max-source-tokens N --max-target-tokens N   token budgets (default: the training\n"
            "                         data's 95th percentile of sources, 99th of targets)\n"
            "model selection (with --dev):\n"
            "  --select rougeL|loss   keep the model with the best dev ROUGE-L of greedy outputs on the\n"
            "                         first --dev-rouge-examples dev pairs (default), or the lowest dev\n"
            "                         loss; both are logged at every evaluation\n"
            "  --dev-rouge-examples N (300)\n" TRAIN_CLI_OPTIONS_HELP);
}

typedef struct {
    TrainCli *c;
    int select_loss;
    long rouge_examples;
} TrainArgs;

static int train_flags(void *ctx, int *i, int argc, char **argv) {
    TrainArgs *ta = ctx;
    TrainCli *c = ta->c;
    const char *a = argv[*i];
    if (!strcmp(a, "--select")) {
        if (!train_cli_need_arg("train", *i, argc, a)) return -1;
        const char *v = argv[++*i];
        if (!strcmp(v, "loss")) ta->select_loss = 1;
        else if (!strcmp(v, "rougeL") || !strcmp(v, "rouge")) ta->select_loss = 0;
        else {
            fprintf(stderr, "tutor: train: --select is rougeL or loss, not '%s'\n", v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--dev-rouge-examples")) {
        if (!train_cli_need_arg("train", *i, argc, a)) return -1;
        char *end;
        long v = strtol(argv[*i + 1], &end, 10);
        if (*end || v < 1 || v > 100000000) {
            fprintf(stderr, "tutor: train: --dev-rouge-examples needs a count >= 1, not '%s'\n", argv[*i + 1]);
            return -1;
        }
        ta->rouge_examples = v;
        (*i)++;
        return 1;
    }
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
    TrainArgs ta = {&c, 0, 300};
    int pr = train_cli_parse(&c, "train", argc, argv, usage, train_flags, &ta);
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
    Dataset dev = {0};
    PairSet dev_ps = {0};
    const char **refs = NULL;
    if (train_cli_check_output(&c) || train_cli_tokenizer(&c) || train_cli_auto_lengths(&c) || train_cli_model(&c, 0) || train_cli_gen_config(&c))
        goto done;
    if (c.o.dev_path && !ta.select_loss) {
        /* dev ROUGE-L: greedy outputs of the first dev pairs, with the model's decoding limits */
        if (dataset_load_jsonl(&dev, c.o.dev_path, &c.o.jsonl, c.o.max_dev_examples) ||
            pairset_build(&dev_ps, &dev, c.tok, c.o.max_source_tokens, c.o.max_target_tokens, 0))
            goto done;
        refs = malloc((dev.n ? dev.n : 1) * sizeof *refs);
        if (!refs) {
            tt_err("out of memory");
            goto done;
        }
        for (size_t i = 0; i < dev.n; i++) refs[i] = dev.items[i].target;
        DevRougeEval re = {.dev = &dev_ps, .refs = refs, .n_rouge = (size_t)ta.rouge_examples, .tok = c.tok,
                           .batch_size = 32, .batch_tokens = c.o.batch_tokens, .max_batch = c.o.max_batch};
        gen_config_from_model(&re.gen, &c.m->cfg);
        re.gen.max_new_tokens = c.o.max_target_tokens;
        Evaluator ev = dev_rouge_eval_iface(&re);
        rc = train_run_with(c.m, c.tok, &c.o, dev.n ? &ev : NULL);
    } else {
        rc = train_run(c.m, c.tok, &c.o);
    }
done:
    if (rc < 0) fprintf(stderr, "tutor: %s\n", tt_errmsg());
    free(refs);
    pairset_free(&dev_ps);
    dataset_free(&dev);
    train_cli_free(&c);
    return rc < 0 ? 1 : rc == 1 ? 130 : 0;
}
