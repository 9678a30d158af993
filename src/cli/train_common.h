/* train_common.h: what `tutor train`, `tutor pretrain` (and later `tutor distill`) parse
 * alike: the model (a config file and flags, or --init DIR), the tokenizer, and the
 * training options (flags, or the config file's "train" object). */
#ifndef TUTOR_CLI_TRAIN_COMMON_H
#define TUTOR_CLI_TRAIN_COMMON_H

#include <stdio.h>

#include "tutor/model.h"
#include "tutor/tokenizer.h"
#include "tutor/train.h"

struct cJSON;

typedef struct {
    const char *cmd;             /* "train", "pretrain": for messages */
    TrainOptions o;
    const char *config_path, *init_dir, *arch;
    int d_model, layers, heads, ffn;
    double dropout;
    const char *data[16];        /* --data, repeatable where the command allows it */
    int n_data;
    int data_repeatable;
    Tokenizer *tok;
    Model *m;
    struct cJSON *conf;
    char **targv;                /* training flags, applied after the config file */
    int argc_train;
    int options_applied;
} TrainCli;

/* A command's own flag: returns 1 if it took argv[*i] (advancing *i past a value), 0 if
 * not its flag, -1 on a usage error (message printed). */
typedef int (*TrainCliFlag)(void *ctx, int *i, int argc, char **argv);

/* Parses argv. Returns 0 to go on, 1 when --help was printed (exit 0), 2 on a usage error
 * (message printed). */
int train_cli_parse(TrainCli *c, const char *cmd, int argc, char **argv, void (*usage)(FILE *),
                    TrainCliFlag extra, void *extra_ctx);
/* Loads the tokenizer (--tokenizer, or the --init directory's tokenizer.json), applies
 * the config file and training flags, and builds or loads the model (vocab_size from the
 * tokenizer; positions enough for need_positions). 0 or -1 with an error. */
int train_cli_tokenizer(TrainCli *c);
/* Refuses an output directory that is an input, the --init model, or an existing file or
 * directory that is not a model or run directory. 0 or -1 with the reason. */
int train_cli_check_output(TrainCli *c);
int train_cli_model(TrainCli *c, int need_positions);
/* Applies the config file's "train" object and the training flags to c->o (once). */
int train_cli_options(TrainCli *c);
/* Token budgets that neither the config nor a flag set, from the training data's lengths
 * (95th percentile of sources, 99th of targets, multiples of 8). Needs the tokenizer. */
int train_cli_auto_lengths(TrainCli *c);
/* Writes OUT/generation_config.json from the model (Hugging Face's decoding defaults). */
int train_cli_gen_config(TrainCli *c);
void train_cli_free(TrainCli *c);
/* The q-quantile (0..1, nearest rank below) of n lengths, rounded up to a multiple of 8;
 * len is sorted in place. n >= 1. */
int train_cli_length_quantile(int *len, size_t n, double q);
/* A value for a flag, or a message and 0. */
int train_cli_need_arg(const char *cmd, int i, int argc, const char *flag);

/* The training-option flags every training command shares, for --help. */
#define TRAIN_CLI_OPTIONS_HELP                                                                       \
    "optimisation:\n"                                                                                \
    "  --batch-tokens N       padded tokens per batch (4096)\n"                                      \
    "  --max-batch N          sequences per batch (128)\n"                                           \
    "  --update-tokens N      target tokens per update: gradient accumulation (0: one batch)\n"      \
    "  --lr X (5e-4) --warmup N (200) --schedule linear|cosine|constant (linear)\n"                 \
    "  --max-steps N (10000) --max-epochs N --weight-decay X (0.01) --clip X (1.0)\n"              \
    "  --max-minutes X        stop after X minutes of training (resumed runs count their past)\n" \
    "  --label-smoothing X (0.1) --seed N (1) --threads N (1)\n"                                    \
    "evaluation and checkpoints:\n"                                                                  \
    "  --eval-every N (500) --save-every N (500) --log-every N (50) --patience N (5, 0: off)\n"    \
    "  --resume               continue from OUT_DIR's last checkpoint\n"                             \
    "  --no-progress          plain log lines even on a terminal\n"

#define TRAIN_CLI_MODEL_HELP                                                                         \
    "model (from scratch unless --init):\n"                                                          \
    "  --config FILE          JSON: model keys as in HF's config.json (model_type bart, mbart\n"     \
    "                         or gpt2; d_model, encoder_layers, ...) and an optional \"train\"\n"    \
    "                         object with the training options below (names with _)\n"              \
    "  --init DIR             start from an existing model directory instead (its tokenizer.json\n" \
    "                         is the default --tokenizer)\n"                                         \
    "  --arch A               mbart (pre-LN, default), bart (post-LN) or gpt2\n"                     \
    "  --d-model N --layers N (encoder and decoder) --heads N --ffn N --dropout P\n"

#endif
