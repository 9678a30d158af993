/* train_common.c: the model, tokenizer and training options of the training commands
 * (see train_common.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"

typedef struct {
    const char *name;
    int kind; /* 0 int, 1 long, 2 double, 3 string(schedule), 4 seed */
    void *dst;
    double lo, hi;
    int open_lo; /* lo itself excluded */
} TrainKey;

/* what: "FILE: training key \"k\"" or "--k" */
static int bad_value(const char *what, const TrainKey *k, const char *shown) {
    if (k->kind == 2)
        return tt_err("%s needs a number in %s%g, %g], not %s", what, k->open_lo ? "(" : "[", k->lo, k->hi, shown);
    return tt_err("%s needs a whole number in [%.0f, %.0f], not %s", what, k->lo, k->hi, shown);
}

static int apply_train_json(TrainOptions *o, const cJSON *tr, const char *path, int from_flags) {
    TrainKey keys[] = {
        {"max_source_tokens", 0, &o->max_source_tokens, 3, 1 << 20, 0},
        {"max_target_tokens", 0, &o->max_target_tokens, 2, 1 << 20, 0},
        {"batch_tokens", 0, &o->batch_tokens, 1, 1 << 30, 0},
        {"max_batch", 0, &o->max_batch, 0, 1 << 24, 0},
        {"update_tokens", 0, &o->update_tokens, 0, 1 << 30, 0},
        {"lr", 2, &o->schedule.peak_lr, 0, 10, 1},
        {"warmup", 1, &o->schedule.warmup_steps, 0, 1e12, 0},
        {"warmup_steps", 1, &o->schedule.warmup_steps, 0, 1e12, 0},
        {"max_steps", 1, &o->max_steps, 1, 1e15, 0},
        {"max_epochs", 0, &o->max_epochs, 1, 1e9, 0},
        {"max_minutes", 2, &o->max_minutes, 0, 1e9, 0},
        {"weight_decay", 2, &o->adam.weight_decay, 0, 10, 0},
        {"clip", 2, &o->clip_norm, 0, 1e9, 0},
        {"label_smoothing", 2, &o->label_smoothing, 0, 0.999, 0},
        {"eval_every", 0, &o->eval_every, 0, 1e9, 0},
        {"save_every", 0, &o->save_every, 0, 1e9, 0},
        {"log_every", 0, &o->log_every, 0, 1e9, 0},
        {"patience", 0, &o->patience, 0, 1e9, 0},
        {"threads", 0, &o->threads, 1, 4096, 0},
        {"schedule", 3, &o->schedule.kind, 0, 0, 0},
        {"seed", 4, &o->seed, 0, 9007199254740992.0, 0},
    };
    if (!cJSON_IsObject(tr)) return tt_err("%s: \"train\" must be an object of training options", path);
    for (const cJSON *it = tr->child; it; it = it->next) {
        size_t k = 0;
        for (; k < sizeof keys / sizeof keys[0]; k++)
            if (it->string && !strcmp(keys[k].name, it->string)) break;
        char what[300];
        if (from_flags) {
            snprintf(what, sizeof what, "--%s", it->string ? it->string : "?");
            for (char *p = what; *p; p++)
                if (*p == '_') *p = '-';
        } else {
            snprintf(what, sizeof what, "%s: training key \"%s\"", path, it->string ? it->string : "?");
        }
        if (k == sizeof keys / sizeof keys[0]) {
            if (from_flags) return tt_err("unknown option %s", what);
            return tt_err("%s: unknown training key \"%s\"", path, it->string ? it->string : "?");
        }
        const TrainKey *key = &keys[k];
        if (key->kind == 3) {
            if (!cJSON_IsString(it) || schedule_parse_kind(it->valuestring, key->dst))
                return tt_err("%s must be linear, cosine or constant", what);
            continue;
        }
        char shown[64];
        if (cJSON_IsString(it)) snprintf(shown, sizeof shown, "'%.40s'", it->valuestring);
        else if (cJSON_IsNumber(it)) snprintf(shown, sizeof shown, "%g", it->valuedouble);
        else snprintf(shown, sizeof shown, "a JSON %s", cJSON_IsArray(it) ? "array" : cJSON_IsObject(it) ? "object" : "value");
        if (!cJSON_IsNumber(it)) return bad_value(what, key, shown);
        double v = it->valuedouble;
        int whole = key->kind != 2;
        if (!isfinite(v) || v < key->lo || v > key->hi || (key->open_lo && v == key->lo) || (whole && v != floor(v)))
            return bad_value(what, key, shown);
        if (key->kind == 0) *(int *)key->dst = (int)v;
        else if (key->kind == 1) *(long *)key->dst = (long)v;
        else if (key->kind == 4) *(uint64_t *)key->dst = (uint64_t)v;
        else *(double *)key->dst = v;
    }
    return 0;
}

int train_cli_need_arg(const char *cmd, int i, int argc, const char *flag) {
    if (i + 1 >= argc) {
        fprintf(stderr, "tutor: %s: %s needs a value\n", cmd, flag);
        return 0;
    }
    return 1;
}

int train_cli_parse(TrainCli *c, const char *cmd, int argc, char **argv, void (*usage)(FILE *),
                    TrainCliFlag extra, void *extra_ctx) {
    c->cmd = cmd;
    train_options_default(&c->o);
    c->o.max_source_tokens = c->o.max_target_tokens = 0; /* unset: from the data */
    c->dropout = -1;
    c->targv = calloc((size_t)argc + 1, sizeof(char *));
    if (!c->targv) return 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (extra) {
            int r = extra(extra_ctx, &i, argc, argv);
            if (r < 0) return 2;
            if (r > 0) continue;
        }
#define STR(flag, var)                                                                                             \
    else if (!strcmp(a, flag)) {                                                                                   \
        if (!train_cli_need_arg(cmd, i, argc, flag)) return 2;                                                     \
        var = argv[++i];                                                                                           \
    }
        if (0) {
        }
        STR("--config", c->config_path)
        STR("--init", c->init_dir)
        STR("--arch", c->arch)
        STR("--tokenizer", c->o.tokenizer_path)
        STR("--dev", c->o.dev_path)
        STR("-o", c->o.out_dir)
        STR("--out", c->o.out_dir)
        STR("--source-field", c->o.jsonl.source_field)
        STR("--target-field", c->o.jsonl.target_field)
        else if (!strcmp(a, "--data")) {
            if (!train_cli_need_arg(cmd, i, argc, a)) return 2;
            if (c->n_data && !c->data_repeatable) {
                fprintf(stderr, "tutor: %s: --data is given once\n", cmd);
                return 2;
            }
            if (c->n_data == (int)(sizeof c->data / sizeof c->data[0])) {
                fprintf(stderr, "tutor: %s: at most %d --data files\n", cmd, c->n_data);
                return 2;
            }
            c->data[c->n_data++] = argv[++i];
            c->o.train_path = c->data[0];
        }
        else if (!strcmp(a, "--d-model") || !strcmp(a, "--layers") || !strcmp(a, "--heads") || !strcmp(a, "--ffn") ||
                 !strcmp(a, "--dropout")) {
            if (!train_cli_need_arg(cmd, i, argc, a)) return 2;
            const char *v = argv[++i];
            char *end;
            double x = strtod(v, &end);
            int is_dropout = !strcmp(a, "--dropout");
            double hi = is_dropout ? 0.999 : !strcmp(a, "--layers") ? 1024 : !strcmp(a, "--heads") ? 1024 : 1 << 20;
            if (!*v || *end || !isfinite(x) || x < (is_dropout ? 0 : 1) || x > hi || (!is_dropout && x != floor(x))) {
                fprintf(stderr, "tutor: %s: %s needs %s in [%.0f, %.0f], not '%s'\n", cmd, a,
                        is_dropout ? "a number" : "a whole number", is_dropout ? 0.0 : 1.0, hi, v);
                return 2;
            }
            if (is_dropout) c->dropout = x;
            else if (a[2] == 'd') c->d_model = (int)x;
            else if (a[2] == 'l') c->layers = (int)x;
            else if (a[2] == 'h') c->heads = (int)x;
            else c->ffn = (int)x;
        }
        else if (!strcmp(a, "--skip-bad")) c->o.jsonl.skip_bad = 1;
        else if (!strcmp(a, "--resume")) c->o.resume = 1;
        else if (!strcmp(a, "--no-progress")) c->o.progress = 0;
        else if (!strncmp(a, "--", 2)) {
            if (!train_cli_need_arg(cmd, i, argc, a)) return 2;
            c->targv[c->argc_train++] = argv[i];
            c->targv[c->argc_train++] = argv[++i];
        } else {
            fprintf(stderr, "tutor: %s: unknown argument '%s' (see tutor %s --help)\n", cmd, a, cmd);
            return 2;
        }
#undef STR
    }
    return 0;
}

int train_cli_check_output(TrainCli *c) {
    const char *out = c->o.out_dir;
    const char *inputs[20];
    int n = 0;
    for (int i = 0; i < c->n_data; i++) inputs[n++] = c->data[i];
    inputs[n++] = c->o.dev_path;
    inputs[n++] = c->o.tokenizer_path;
    inputs[n++] = c->config_path;
    if (check_not_an_input(out, inputs, n)) return -1;
    if (c->init_dir && same_file(out, c->init_dir))
        return tt_err("-o %s is the --init model: training would write over the model it starts from; choose "
                      "another output directory",
                      out);
    return check_output_kind(out, OUTPUT_RUN_DIR);
}

int train_cli_tokenizer(TrainCli *c) {
    char path[4200];
    const char *tp = c->o.tokenizer_path;
    if (!tp && c->init_dir) {
        snprintf(path, sizeof path, "%s/tokenizer.json", c->init_dir);
        tp = path;
    }
    if (!tp) return tt_err("%s: --tokenizer is required (or --init DIR with a tokenizer.json)", c->cmd);
    c->tok = tokenizer_load(tp);
    return c->tok ? 0 : -1;
}

/* Keys a --config file may hold: what tutor reads of HF's BartConfig, MBartConfig and
 * GPT2Config, and the keys HF writes that do not change the architecture tutor builds. A
 * key outside this list is a typo or a setting tutor would silently not apply: refused. */
static int config_key_known(const char *k) {
    static const char *const known[] = {
        /* read by tutor */
        "model_type", "vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
        "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings",
        "scale_embedding", "dropout", "attention_dropout", "activation_dropout", "init_std", "pad_token_id",
        "bos_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id", "activation_function",
        "tie_word_embeddings", "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "n_ctx",
        "layer_norm_epsilon", "resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range",
        "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "train",
        /* written by HF, no effect on what tutor builds */
        "architectures", "torch_dtype", "transformers_version", "use_cache", "is_encoder_decoder",
        "num_hidden_layers", "encoder_layerdrop", "decoder_layerdrop", "classifier_dropout", "id2label",
        "label2id", "num_labels", "_name_or_path", "add_bias_logits", "add_final_layer_norm", "normalize_before",
        "normalize_embedding", "static_position_embeddings", "forced_bos_token_id", "gradient_checkpointing",
        "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
        "summary_first_dropout", "reorder_and_upcast_attn", "task_specific_params", "num_beams", "max_length",
        "min_length", "no_repeat_ngram_size", "length_penalty", "early_stopping", "do_sample", "temperature",
        "top_k", "top_p", "repetition_penalty", "num_return_sequences", "max_new_tokens", "min_new_tokens",
        "output_past", "prefix", "chunk_size_feed_forward", "problem_type", NULL};
    for (int i = 0; known[i]; i++)
        if (!strcmp(k, known[i])) return 1;
    return 0;
}

int train_cli_options(TrainCli *c) {
    TrainOptions *o = &c->o;
    if (c->options_applied) return 0;
    c->options_applied = 1;
    if (c->config_path) {
        size_t n = 0;
        char *text = read_file_text(c->config_path, &n);
        c->conf = text ? cJSON_ParseWithLength(text, n) : NULL;
        free(text);
        if (!c->conf || !cJSON_IsObject(c->conf)) {
            if (c->conf || n) tt_err("%s: not a JSON object", c->config_path);
            return -1;
        }
        const char *dup = json_duplicate_key(c->conf);
        if (dup) return tt_err("%s: key \"%s\" appears twice", c->config_path, dup);
        for (const cJSON *it = c->conf->child; it; it = it->next)
            if (it->string && !config_key_known(it->string))
                return tt_err("%s: unknown key \"%s\" (model keys are Hugging Face's config.json keys; training "
                              "options go in \"train\")",
                              c->config_path, it->string);
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(c->conf, "train");
        if (tr && apply_train_json(o, tr, c->config_path, 0)) return -1;
    }
    /* command-line training flags, applied after the config file */
    cJSON *tr = cJSON_CreateObject();
    for (int i = 0; i < c->argc_train; i += 2) {
        char key[64];
        snprintf(key, sizeof key, "%s", c->targv[i] + 2);
        for (char *p = key; *p; p++)
            if (*p == '-') *p = '_';
        char *end;
        double v = strtod(c->targv[i + 1], &end);
        if (*end) cJSON_AddStringToObject(tr, key, c->targv[i + 1]);
        else cJSON_AddNumberToObject(tr, key, v);
    }
    int rc = apply_train_json(o, tr, "command line", 1);
    cJSON_Delete(tr);
    if (rc) return -1;
    o->adam.lr = o->schedule.peak_lr;
    return 0;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int train_cli_length_quantile(int *len, size_t n, double q) {
    qsort(len, n, sizeof *len, cmp_int);
    int x = len[(size_t)(q * (double)(n - 1))];
    return (x + 7) / 8 * 8;
}

int train_cli_auto_lengths(TrainCli *c) {
    TrainOptions *o = &c->o;
    if (train_cli_options(c)) return -1;
    if (o->max_source_tokens > 0 && o->max_target_tokens > 0) return 0;
    /* the budgets nobody set come from the training data: the 95th percentile of source
     * lengths and the 99th of target lengths (in tokens, specials included) */
    Dataset ds = {0};
    if (dataset_load_jsonl(&ds, o->train_path, &o->jsonl, o->max_train_examples)) return -1;
    size_t n = ds.n;
    int *sl = malloc((n ? n : 1) * sizeof *sl), *tl = malloc((n ? n : 1) * sizeof *tl);
    TokenIds ids = {0};
    int rc = sl && tl ? 0 : tt_err("out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const Example *ex = &ds.items[i];
        if (tokenizer_encode(c->tok, ex->source, strlen(ex->source), NULL, &ids, NULL)) {
            rc = tt_err_wrap("%s:%zu", o->train_path, ex->line);
            break;
        }
        sl[i] = (int)ids.n + 2;
        tl[i] = 1;
        if (ex->target) {
            if (tokenizer_encode(c->tok, ex->target, strlen(ex->target), NULL, &ids, NULL)) {
                rc = tt_err_wrap("%s:%zu", o->train_path, ex->line);
                break;
            }
            tl[i] = (int)ids.n + 1;
        }
    }
    if (!rc && n) {
        int s95 = train_cli_length_quantile(sl, n, 0.95), t99 = train_cli_length_quantile(tl, n, 0.99);
        if (s95 > 512) s95 = 512;
        if (t99 > 256) t99 = 256;
        if (s95 < 8) s95 = 8;
        if (t99 < 8) t99 = 8;
        if (o->max_source_tokens <= 0) o->max_source_tokens = s95;
        if (o->max_target_tokens <= 0) o->max_target_tokens = t99;
        tt_info("token budgets from %s: sources %d (95th percentile), targets %d (99th)", o->train_path,
                o->max_source_tokens, o->max_target_tokens);
    }
    token_ids_free(&ids);
    free(sl);
    free(tl);
    dataset_free(&ds);
    return rc;
}

int train_cli_model(TrainCli *c, int need_positions) {
    TrainOptions *o = &c->o;
    if (train_cli_options(c)) return -1;
    if (o->max_source_tokens <= 0) o->max_source_tokens = 256;
    if (o->max_target_tokens <= 0) o->max_target_tokens = 64;
    if (need_positions <= 0)
        need_positions = o->max_source_tokens > o->max_target_tokens ? o->max_source_tokens : o->max_target_tokens;
    if (c->init_dir) {
        c->m = model_load(c->init_dir);
        if (!c->m) return -1;
    } else {
        ModelConfig cfg;
        cJSON *mc = c->conf ? cJSON_Duplicate(c->conf, 1) : cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(mc, "train");
        if (c->arch) {
            cJSON_DeleteItemFromObjectCaseSensitive(mc, "model_type");
            cJSON_AddStringToObject(mc, "model_type", c->arch);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(mc, "vocab_size");
        cJSON_AddNumberToObject(mc, "vocab_size", tokenizer_vocab_size(c->tok));
        int rc = model_config_from_json(&cfg, mc, c->config_path ? c->config_path : "config", "mbart");
        cJSON_Delete(mc);
        if (rc) return -1;
        if (c->d_model) cfg.d_model = c->d_model;
        if (c->layers) cfg.dec_layers = c->layers, cfg.enc_layers = model_is_encdec(&cfg) ? c->layers : 0;
        if (c->heads) cfg.dec_heads = c->heads, cfg.enc_heads = model_is_encdec(&cfg) ? c->heads : 0;
        if (c->ffn) cfg.dec_ffn = c->ffn, cfg.enc_ffn = model_is_encdec(&cfg) ? c->ffn : 0;
        if (c->dropout >= 0) cfg.dropout = (float)c->dropout;
        int need = model_is_encdec(&cfg) ? need_positions : o->max_source_tokens + o->max_target_tokens;
        if (cfg.max_positions < need) cfg.max_positions = need;
        cfg.pad_id = tokenizer_pad_id(c->tok);
        cfg.bos_id = tokenizer_bos_id(c->tok);
        cfg.eos_id = tokenizer_eos_id(c->tok);
        if (model_is_encdec(&cfg)) cfg.decoder_start_id = cfg.eos_id, cfg.forced_eos_id = cfg.eos_id;
        c->m = model_new(&cfg, o->seed);
        if (!c->m) return -1;
    }
    if (c->m->cfg.vocab_size < tokenizer_vocab_size(c->tok))
        return tt_err("the model's vocabulary (%d) is smaller than the tokenizer's (%d)", c->m->cfg.vocab_size,
                      tokenizer_vocab_size(c->tok));
    return 0;
}

int train_cli_gen_config(TrainCli *c) {
    GenConfig g;
    gen_config_from_model(&g, &c->m->cfg);
    /* outputs as long as the training targets (HF's max_length of 20 would cut them) */
    if (c->o.max_target_tokens > 0) g.max_new_tokens = c->o.max_target_tokens;
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", c->o.out_dir);
    return make_dirs(c->o.out_dir) || gen_config_save(&g, path) ? -1 : 0;
}

void train_cli_free(TrainCli *c) {
    model_free(c->m);
    tokenizer_free(c->tok);
    cJSON_Delete(c->conf);
    free(c->targv);
    memset(c, 0, sizeof *c);
}
