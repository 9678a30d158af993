/* cmd_train.c: `tutor train`: builds a model from a config (or starts from a model
 * directory) and trains it on gold pairs with the library's training loop. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/cli.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"
#include "tutor/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor train --tokenizer TOK --data TRAIN.jsonl -o OUT_DIR [options]\n\n"
            "Trains a model on gold (source, target) pairs. OUT_DIR receives the best model by dev\n"
            "loss (a Hugging Face model directory), metrics.jsonl, and the last checkpoint for\n"
            "--resume. SIGINT/SIGTERM save a checkpoint before exiting.\n\n"
            "model (from scratch unless --init):\n"
            "  --config FILE          JSON: model keys as in HF's config.json (model_type bart, mbart\n"
            "                         or gpt2; d_model, encoder_layers, ...) and an optional \"train\"\n"
            "                         object with the training options below (names with _)\n"
            "  --init DIR             start from an existing model directory instead\n"
            "  --arch A               mbart (pre-LN, default), bart (post-LN) or gpt2\n"
            "  --d-model N --layers N (encoder and decoder) --heads N --ffn N --dropout P\n"
            "data:\n"
            "  --tokenizer FILE       tokenizer.json (tutor tokenizer train makes one)\n"
            "  --data FILE            training pairs (JSONL)\n"
            "  --dev FILE             dev pairs for evaluation, best-model choice, early stopping\n"
            "  --source-field NAME --target-field NAME   (default source, target)\n"
            "  --skip-bad             skip malformed lines (counted) instead of stopping\n"
            "  --max-train-examples N --max-dev-examples N   (default all)\n"
            "  --max-source-tokens N (256) --max-target-tokens N (64)\n"
            "optimisation:\n"
            "  --batch-tokens N       padded tokens per batch (4096)\n"
            "  --max-batch N          sequences per batch (128)\n"
            "  --update-tokens N      target tokens per update: gradient accumulation (0: one batch)\n"
            "  --lr X (5e-4) --warmup N (200) --schedule linear|cosine|constant (linear)\n"
            "  --max-steps N (10000) --max-epochs N --weight-decay X (0.01) --clip X (1.0)\n"
            "  --label-smoothing X (0.1) --seed N (1) --threads N (1)\n"
            "evaluation and checkpoints:\n"
            "  --eval-every N (500) --save-every N (500) --log-every N (50) --patience N (5, 0: off)\n"
            "  --resume               continue from OUT_DIR's last checkpoint\n"
            "  --no-progress          plain log lines even on a terminal\n");
}

typedef struct {
    const char *name;
    int kind; /* 0 int, 1 long, 2 double, 3 string(schedule) */
    void *dst;
} TrainKey;

static int apply_train_json(TrainOptions *o, const cJSON *tr, const char *path) {
    TrainKey keys[] = {
        {"max_source_tokens", 0, &o->max_source_tokens}, {"max_target_tokens", 0, &o->max_target_tokens},
        {"batch_tokens", 0, &o->batch_tokens},           {"max_batch", 0, &o->max_batch},
        {"update_tokens", 0, &o->update_tokens},         {"lr", 2, &o->schedule.peak_lr},
        {"warmup", 1, &o->schedule.warmup_steps},        {"warmup_steps", 1, &o->schedule.warmup_steps},
        {"max_steps", 1, &o->max_steps},                 {"max_epochs", 0, &o->max_epochs},
        {"weight_decay", 2, &o->adam.weight_decay},      {"clip", 2, &o->clip_norm},
        {"label_smoothing", 2, &o->label_smoothing},     {"eval_every", 0, &o->eval_every},
        {"save_every", 0, &o->save_every},               {"log_every", 0, &o->log_every},
        {"patience", 0, &o->patience},                   {"threads", 0, &o->threads},
        {"schedule", 3, &o->schedule.kind},
    };
    for (const cJSON *it = tr->child; it; it = it->next) {
        size_t k = 0;
        for (; k < sizeof keys / sizeof keys[0]; k++)
            if (!strcmp(keys[k].name, it->string)) break;
        if (k == sizeof keys / sizeof keys[0]) {
            if (!strcmp(it->string, "seed") && cJSON_IsNumber(it)) {
                o->seed = (uint64_t)it->valuedouble;
                continue;
            }
            return tt_err("%s: unknown training key \"%s\"", path, it->string);
        }
        if (keys[k].kind == 3) {
            if (!cJSON_IsString(it) || schedule_parse_kind(it->valuestring, keys[k].dst))
                return tt_err("%s: \"schedule\" must be linear, cosine or constant", path);
            continue;
        }
        if (!cJSON_IsNumber(it)) return tt_err("%s: training key \"%s\" must be a number", path, it->string);
        if (keys[k].kind == 0) *(int *)keys[k].dst = (int)it->valuedouble;
        else if (keys[k].kind == 1) *(long *)keys[k].dst = (long)it->valuedouble;
        else *(double *)keys[k].dst = it->valuedouble;
    }
    return 0;
}

static int need_arg(int i, int argc, const char *flag) {
    if (i + 1 >= argc) {
        fprintf(stderr, "tutor: train: %s needs a value\n", flag);
        return 0;
    }
    return 1;
}

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    train_options_default(&o);
    const char *config_path = NULL, *init_dir = NULL, *arch = NULL;
    int d_model = 0, layers = 0, heads = 0, ffn = 0;
    double dropout = -1;
    /* flags given on the command line override the config file: remember them */
    int argc_train = 0;
    char **targv = calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(targv);
            return 0;
        }
#define STR(flag, var) else if (!strcmp(a, flag)) { if (!need_arg(i, argc, flag)) goto usage_error; var = argv[++i]; }
        if (0) {
        }
        STR("--config", config_path)
        STR("--init", init_dir)
        STR("--arch", arch)
        STR("--tokenizer", o.tokenizer_path)
        STR("--data", o.train_path)
        STR("--dev", o.dev_path)
        STR("-o", o.out_dir)
        STR("--out", o.out_dir)
        STR("--source-field", o.jsonl.source_field)
        STR("--target-field", o.jsonl.target_field)
        else if (!strcmp(a, "--d-model") && need_arg(i, argc, a)) d_model = atoi(argv[++i]);
        else if (!strcmp(a, "--layers") && need_arg(i, argc, a)) layers = atoi(argv[++i]);
        else if (!strcmp(a, "--heads") && need_arg(i, argc, a)) heads = atoi(argv[++i]);
        else if (!strcmp(a, "--ffn") && need_arg(i, argc, a)) ffn = atoi(argv[++i]);
        else if (!strcmp(a, "--dropout") && need_arg(i, argc, a)) dropout = atof(argv[++i]);
        else if (!strcmp(a, "--skip-bad")) o.jsonl.skip_bad = 1;
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--no-progress")) o.progress = 0;
        else if (!strncmp(a, "--", 2)) {
            if (!need_arg(i, argc, a)) goto usage_error;
            targv[argc_train++] = argv[i];
            targv[argc_train++] = argv[++i];
        } else {
            fprintf(stderr, "tutor: train: unknown argument '%s' (see tutor train --help)\n", a);
            goto usage_error;
        }
#undef STR
    }
    if (!o.tokenizer_path || !o.train_path || !o.out_dir) {
        fprintf(stderr, "tutor: train: --tokenizer, --data and -o are required (see tutor train --help)\n");
        goto usage_error;
    }
    Tokenizer *tok = tokenizer_load(o.tokenizer_path);
    if (!tok) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        free(targv);
        return 1;
    }
    ModelConfig cfg;
    Model *m = NULL;
    cJSON *conf = NULL;
    if (config_path) {
        size_t n;
        char *text = read_file_text(config_path, &n);
        conf = text ? cJSON_ParseWithLength(text, n) : NULL;
        free(text);
        if (!conf || !cJSON_IsObject(conf)) {
            if (conf || n) tt_err("%s: not a JSON object", config_path);
            goto fail;
        }
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(conf, "train");
        if (tr && apply_train_json(&o, tr, config_path)) goto fail;
    }
    /* command-line training flags, applied after the config file */
    {
        cJSON *tr = cJSON_CreateObject();
        for (int i = 0; i < argc_train; i += 2) {
            char key[64];
            snprintf(key, sizeof key, "%s", targv[i] + 2);
            for (char *p = key; *p; p++)
                if (*p == '-') *p = '_';
            char *end;
            double v = strtod(targv[i + 1], &end);
            if (*end) cJSON_AddStringToObject(tr, key, targv[i + 1]);
            else cJSON_AddNumberToObject(tr, key, v);
        }
        int rc = apply_train_json(&o, tr, "command line");
        cJSON_Delete(tr);
        if (rc) goto fail;
    }
    o.adam.lr = o.schedule.peak_lr;
    if (init_dir) {
        m = model_load(init_dir);
        if (!m) goto fail;
    } else {
        cJSON *mc = conf ? cJSON_Duplicate(conf, 1) : cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(mc, "train");
        if (arch) {
            cJSON_DeleteItemFromObjectCaseSensitive(mc, "model_type");
            cJSON_AddStringToObject(mc, "model_type", arch);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(mc, "vocab_size");
        cJSON_AddNumberToObject(mc, "vocab_size", tokenizer_vocab_size(tok));
        int rc = model_config_from_json(&cfg, mc, config_path ? config_path : "config", "mbart");
        cJSON_Delete(mc);
        if (rc) goto fail;
        if (d_model) cfg.d_model = d_model;
        if (layers) cfg.dec_layers = layers, cfg.enc_layers = model_is_encdec(&cfg) ? layers : 0;
        if (heads) cfg.dec_heads = heads, cfg.enc_heads = model_is_encdec(&cfg) ? heads : 0;
        if (ffn) cfg.dec_ffn = ffn, cfg.enc_ffn = model_is_encdec(&cfg) ? ffn : 0;
        if (dropout >= 0) cfg.dropout = (float)dropout;
        int need = model_is_encdec(&cfg) ? o.max_source_tokens : o.max_source_tokens + o.max_target_tokens;
        if (cfg.max_positions < need) cfg.max_positions = need;
        cfg.pad_id = tokenizer_pad_id(tok);
        cfg.bos_id = tokenizer_bos_id(tok);
        cfg.eos_id = tokenizer_eos_id(tok);
        if (model_is_encdec(&cfg)) cfg.decoder_start_id = cfg.eos_id, cfg.forced_eos_id = cfg.eos_id;
        m = model_new(&cfg, o.seed);
        if (!m) goto fail;
    }
    if (m->cfg.vocab_size < tokenizer_vocab_size(tok)) {
        tt_err("the model's vocabulary (%d) is smaller than the tokenizer's (%d)", m->cfg.vocab_size,
               tokenizer_vocab_size(tok));
        goto fail;
    }
    /* the model directory carries its decoding defaults, as Hugging Face's do */
    {
        GenConfig g;
        gen_config_from_model(&g, &m->cfg);
        char path[4200];
        snprintf(path, sizeof path, "%s/generation_config.json", o.out_dir);
        if (make_dirs(o.out_dir) || gen_config_save(&g, path)) goto fail;
    }
    int rc = train_run(m, tok, &o);
    if (rc < 0) goto fail;
    model_free(m);
    tokenizer_free(tok);
    cJSON_Delete(conf);
    free(targv);
    return rc == 1 ? 130 : 0;
fail:
    fprintf(stderr, "tutor: %s\n", tt_errmsg());
    model_free(m);
    tokenizer_free(tok);
    cJSON_Delete(conf);
    free(targv);
    return 1;
usage_error:
    free(targv);
    return 2;
}
