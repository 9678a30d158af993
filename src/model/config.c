/* config.c: the model configuration and its Hugging Face config.json form (BartConfig,
 * MBartConfig, GPT2Config keys), so that a tutor model directory reads as HF's own. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/fileio.h"
#include "tutor/model.h"

void model_config_default(ModelConfig *c, Arch arch) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    c->vocab_size = 8000;
    c->d_model = 256;
    c->max_positions = 512;
    c->dec_layers = 4;
    c->dec_heads = 4;
    c->dec_ffn = 1024;
    if (arch != ARCH_GPT2) {
        c->enc_layers = 4;
        c->enc_heads = 4;
        c->enc_ffn = 1024;
        c->scale_embedding = arch == ARCH_MBART;
        c->act = GELU_ERF;
        c->pad_id = 1;
        c->bos_id = 0;
        c->eos_id = 2;
        c->decoder_start_id = 2;
        c->forced_eos_id = 2;
    } else {
        c->act = GELU_TANH;
        c->pad_id = -1;
        c->bos_id = 2;
        c->eos_id = 2;
        c->decoder_start_id = -1;
        c->forced_eos_id = -1;
    }
    c->ln_eps = 1e-5;
    c->dropout = 0.1f;
    c->attn_dropout = 0.0f;
    c->act_dropout = 0.0f;
    c->init_std = 0.02;
}

/* Parameters of a configuration, in double (no overflow whatever the sizes). */
static double config_param_count(const ModelConfig *c) {
    double d = c->d_model, V = c->vocab_size, P = c->max_positions + 2.0;
    double attn = 4 * d * d + 4 * d, ln = 2 * d;
    double enc_layer = attn + ln + 2 * d * c->enc_ffn + c->enc_ffn + d + ln;
    double dec_layer = 2 * (attn + ln) + 2 * d * c->dec_ffn + c->dec_ffn + d + ln;
    return V * d + V + 2 * P * d + (double)c->enc_layers * enc_layer + (double)c->dec_layers * dec_layer + 6 * ln;
}

int model_config_check(const ModelConfig *c) {
    /* sizes are bounded before anything is sized from them, so no product overflows */
    if (c->vocab_size < 4) return tt_err("config: vocab_size %d is too small", c->vocab_size);
    if (c->vocab_size > MODEL_MAX_VOCAB)
        return tt_err("config: vocab_size %d is above the limit of %d", c->vocab_size, MODEL_MAX_VOCAB);
    if (c->d_model > MODEL_MAX_WIDTH || c->dec_ffn > MODEL_MAX_FFN || c->enc_ffn > MODEL_MAX_FFN)
        return tt_err("config: d_model %d / ffn %d, %d above the limits (%d, %d)", c->d_model, c->enc_ffn, c->dec_ffn,
                      MODEL_MAX_WIDTH, MODEL_MAX_FFN);
    if (c->enc_layers > MODEL_MAX_LAYERS || c->dec_layers > MODEL_MAX_LAYERS)
        return tt_err("config: %d encoder / %d decoder layers, above the limit of %d", c->enc_layers, c->dec_layers,
                      MODEL_MAX_LAYERS);
    if (c->max_positions > MODEL_MAX_POSITIONS)
        return tt_err("config: max_position_embeddings %d is above the limit of %d", c->max_positions,
                      MODEL_MAX_POSITIONS);
    if (c->enc_heads > c->d_model || c->dec_heads > c->d_model)
        return tt_err("config: more attention heads than d_model");
    if (c->d_model >= 1 && c->dec_layers >= 0 && c->enc_layers >= 0 && c->enc_ffn >= 0 && c->dec_ffn >= 0 &&
        c->max_positions >= 1 && config_param_count(c) > MODEL_MAX_PARAMS)
        return tt_err("config: %.3g parameters, above the limit of %.3g (%.0f GiB as float32)", config_param_count(c),
                      MODEL_MAX_PARAMS, MODEL_MAX_PARAMS * 4 / 1073741824.0);
    if (c->d_model < 1) return tt_err("config: d_model must be positive");
    if (c->max_positions < 1) return tt_err("config: max_position_embeddings must be positive");
    if (c->dec_layers < 1 || c->dec_heads < 1 || c->dec_ffn < 1)
        return tt_err("config: decoder layers, heads and ffn size must be positive");
    if (c->d_model % c->dec_heads) return tt_err("config: d_model %d not divisible by %d heads", c->d_model, c->dec_heads);
    if (model_is_encdec(c)) {
        if (c->enc_layers < 1 || c->enc_heads < 1 || c->enc_ffn < 1)
            return tt_err("config: encoder layers, heads and ffn size must be positive");
        if (c->d_model % c->enc_heads) return tt_err("config: d_model %d not divisible by %d heads", c->d_model, c->enc_heads);
    }
    if (c->dropout < 0 || c->dropout >= 1 || c->attn_dropout < 0 || c->attn_dropout >= 1 ||
        c->act_dropout < 0 || c->act_dropout >= 1)
        return tt_err("config: dropout probabilities must be in [0, 1)");
    return 0;
}

static int config_from_json_typed(ModelConfig *c, const cJSON *o, const char *path, const char *type, int lenient);

static int get_int(const cJSON *o, const char *key, int *out, int required, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return tt_err("%s: missing \"%s\"", path, key);
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0 ||
        v->valuedouble != floor(v->valuedouble))
        return tt_err("%s: \"%s\" must be an integer (of at most 2^31 - 1)", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_float(const cJSON *o, const char *key, float *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
        return tt_err("%s: \"%s\" must be a finite number", path, key);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_double(const cJSON *o, const char *key, double *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return tt_err("%s: \"%s\" must be a number", path, key);
    *out = v->valuedouble;
    return 0;
}

static int parse_act(const cJSON *o, GeluKind *act, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "activation_function");
    if (!v) return 0;
    if (!cJSON_IsString(v)) return tt_err("%s: \"activation_function\" must be a string", path);
    if (!strcmp(v->valuestring, "gelu")) *act = GELU_ERF;
    else if (!strcmp(v->valuestring, "gelu_new") || !strcmp(v->valuestring, "gelu_pytorch_tanh"))
        *act = GELU_TANH;
    else
        return tt_err("%s: activation_function \"%s\" is not supported (gelu, gelu_new)", path, v->valuestring);
    return 0;
}

int model_config_from_json(ModelConfig *c, const cJSON *o, const char *path, const char *default_type) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    if (!mt && default_type) return config_from_json_typed(c, o, path, default_type, 1);
    if (!mt) return tt_err("%s: missing \"model_type\" (bart, mbart or gpt2)", path);
    if (!cJSON_IsString(mt)) return tt_err("%s: \"model_type\" must be a string: bart, mbart or gpt2", path);
    return config_from_json_typed(c, o, path, mt->valuestring, default_type != NULL);
}

/* Fills c from a parsed config object; path names the source in errors. */
/* lenient: keys absent from o keep model_config_default's values (configs written by hand
 * for training from scratch); otherwise the size keys are required (HF's files). */
static int config_from_json_typed(ModelConfig *c, const cJSON *o, const char *path, const char *type, int lenient) {
    int req = !lenient;
    Arch arch;
    if (!strcmp(type, "gpt2")) arch = ARCH_GPT2;
    else if (!strcmp(type, "bart")) arch = ARCH_BART;
    else if (!strcmp(type, "mbart")) arch = ARCH_MBART;
    else return tt_err("%s: model_type \"%s\" is not supported (bart, mbart or gpt2)", path, type);
    model_config_default(c, arch);
    int rc = 0;
    if (arch == ARCH_GPT2) {
        rc |= get_int(o, "vocab_size", &c->vocab_size, req, path);
        rc |= get_int(o, "n_embd", &c->d_model, req, path);
        rc |= get_int(o, "n_layer", &c->dec_layers, req, path);
        rc |= get_int(o, "n_head", &c->dec_heads, req, path);
        rc |= get_int(o, "n_positions", &c->max_positions, req, path);
        c->dec_ffn = 4 * c->d_model;
        rc |= get_int(o, "n_inner", &c->dec_ffn, 0, path);
        rc |= get_double(o, "layer_norm_epsilon", &c->ln_eps, path);
        rc |= get_float(o, "resid_pdrop", &c->dropout, path);
        rc |= get_float(o, "attn_pdrop", &c->attn_dropout, path);
        rc |= get_double(o, "initializer_range", &c->init_std, path);
        rc |= get_int(o, "bos_token_id", &c->bos_id, 0, path);
        rc |= get_int(o, "eos_token_id", &c->eos_id, 0, path);
        rc |= get_int(o, "pad_token_id", &c->pad_id, 0, path);
        c->act_dropout = 0;
        const cJSON *tie = cJSON_GetObjectItemCaseSensitive(o, "tie_word_embeddings");
        if (tie && !cJSON_IsBool(tie)) return tt_err("%s: \"tie_word_embeddings\" must be true or false", path);
        c->untied_lm_head = tie && cJSON_IsFalse(tie);
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(o, "scale_attn_weights");
        if (sa && cJSON_IsFalse(sa)) return tt_err("%s: scale_attn_weights false is not supported", path);
        const cJSON *si = cJSON_GetObjectItemCaseSensitive(o, "scale_attn_by_inverse_layer_idx");
        if (si && cJSON_IsTrue(si)) return tt_err("%s: scale_attn_by_inverse_layer_idx is not supported", path);
    } else {
        rc |= get_int(o, "vocab_size", &c->vocab_size, req, path);
        rc |= get_int(o, "d_model", &c->d_model, req, path);
        rc |= get_int(o, "encoder_layers", &c->enc_layers, req, path);
        rc |= get_int(o, "decoder_layers", &c->dec_layers, req, path);
        rc |= get_int(o, "encoder_attention_heads", &c->enc_heads, req, path);
        rc |= get_int(o, "decoder_attention_heads", &c->dec_heads, req, path);
        rc |= get_int(o, "encoder_ffn_dim", &c->enc_ffn, req, path);
        rc |= get_int(o, "decoder_ffn_dim", &c->dec_ffn, req, path);
        rc |= get_int(o, "max_position_embeddings", &c->max_positions, req, path);
        const cJSON *se = cJSON_GetObjectItemCaseSensitive(o, "scale_embedding");
        c->scale_embedding = se && cJSON_IsTrue(se);
        const cJSON *tie = cJSON_GetObjectItemCaseSensitive(o, "tie_word_embeddings");
        if (tie && !cJSON_IsBool(tie)) return tt_err("%s: \"tie_word_embeddings\" must be true or false", path);
        c->untied_lm_head = tie && cJSON_IsFalse(tie);
        rc |= get_float(o, "dropout", &c->dropout, path);
        rc |= get_float(o, "attention_dropout", &c->attn_dropout, path);
        rc |= get_float(o, "activation_dropout", &c->act_dropout, path);
        rc |= get_double(o, "init_std", &c->init_std, path);
        rc |= get_int(o, "pad_token_id", &c->pad_id, 0, path);
        rc |= get_int(o, "bos_token_id", &c->bos_id, 0, path);
        rc |= get_int(o, "eos_token_id", &c->eos_id, 0, path);
        /* BartConfig defaults decoder_start_token_id to 2; MBartConfig has none (generation then
         * starts from bos_token_id, as Hugging Face does) */
        if (!strcmp(type, "mbart")) c->decoder_start_id = -1;
        rc |= get_int(o, "decoder_start_token_id", &c->decoder_start_id, 0, path);
        rc |= get_int(o, "forced_eos_token_id", &c->forced_eos_id, 0, path);
    }
    if (rc) return -1;
    if (parse_act(o, &c->act, path)) return -1;
    if (model_config_check(c)) return tt_err_wrap("%s", path);
    return 0;
}

int model_config_load(ModelConfig *c, const char *path) {
    cJSON *o = json_load_object(path);
    if (!o) return -1;
    int rc = model_config_from_json(c, o, path, NULL);
    cJSON_Delete(o);
    return rc;
}

static void add_opt_int(cJSON *o, const char *key, int v) {
    if (v >= 0) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

/* A float as the shortest decimal that reads back to it (0.1, not 0.10000000149011612). */
static double float_decimal(float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x) return strtod(buf, NULL);
    }
    return (double)x;
}

int model_config_save(const ModelConfig *c, const char *path) {
    cJSON *o = cJSON_CreateObject();
    if (c->arch == ARCH_GPT2) {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        cJSON_AddItemToArray(a, cJSON_CreateString("GPT2LMHeadModel"));
        cJSON_AddStringToObject(o, "model_type", "gpt2");
        cJSON_AddStringToObject(o, "activation_function", c->act == GELU_TANH ? "gelu_new" : "gelu");
        cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(o, "n_embd", c->d_model);
        cJSON_AddNumberToObject(o, "n_layer", c->dec_layers);
        cJSON_AddNumberToObject(o, "n_head", c->dec_heads);
        cJSON_AddNumberToObject(o, "n_inner", c->dec_ffn);
        cJSON_AddNumberToObject(o, "n_positions", c->max_positions);
        cJSON_AddNumberToObject(o, "layer_norm_epsilon", c->ln_eps);
        cJSON_AddNumberToObject(o, "resid_pdrop", float_decimal(c->dropout));
        cJSON_AddNumberToObject(o, "embd_pdrop", float_decimal(c->dropout));
        cJSON_AddNumberToObject(o, "attn_pdrop", float_decimal(c->attn_dropout));
        cJSON_AddNumberToObject(o, "initializer_range", c->init_std);
        cJSON_AddBoolToObject(o, "scale_attn_weights", 1);
        add_opt_int(o, "bos_token_id", c->bos_id);
        add_opt_int(o, "eos_token_id", c->eos_id);
        if (c->pad_id >= 0) cJSON_AddNumberToObject(o, "pad_token_id", c->pad_id);
    } else {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        cJSON_AddItemToArray(a, cJSON_CreateString(c->arch == ARCH_BART ? "BartForConditionalGeneration"
                                                                       : "MBartForConditionalGeneration"));
        cJSON_AddStringToObject(o, "model_type", c->arch == ARCH_BART ? "bart" : "mbart");
        cJSON_AddStringToObject(o, "activation_function", c->act == GELU_TANH ? "gelu_new" : "gelu");
        cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(o, "d_model", c->d_model);
        cJSON_AddNumberToObject(o, "encoder_layers", c->enc_layers);
        cJSON_AddNumberToObject(o, "decoder_layers", c->dec_layers);
        cJSON_AddNumberToObject(o, "num_hidden_layers", c->enc_layers);
        cJSON_AddNumberToObject(o, "encoder_attention_heads", c->enc_heads);
        cJSON_AddNumberToObject(o, "decoder_attention_heads", c->dec_heads);
        cJSON_AddNumberToObject(o, "encoder_ffn_dim", c->enc_ffn);
        cJSON_AddNumberToObject(o, "decoder_ffn_dim", c->dec_ffn);
        cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_positions);
        cJSON_AddBoolToObject(o, "scale_embedding", c->scale_embedding);
        cJSON_AddNumberToObject(o, "dropout", float_decimal(c->dropout));
        cJSON_AddNumberToObject(o, "attention_dropout", float_decimal(c->attn_dropout));
        cJSON_AddNumberToObject(o, "activation_dropout", float_decimal(c->act_dropout));
        cJSON_AddNumberToObject(o, "init_std", c->init_std);
        cJSON_AddNumberToObject(o, "encoder_layerdrop", 0);
        cJSON_AddNumberToObject(o, "decoder_layerdrop", 0);
        cJSON_AddBoolToObject(o, "is_encoder_decoder", 1);
        add_opt_int(o, "pad_token_id", c->pad_id);
        add_opt_int(o, "bos_token_id", c->bos_id);
        add_opt_int(o, "eos_token_id", c->eos_id);
        add_opt_int(o, "decoder_start_token_id", c->decoder_start_id);
        add_opt_int(o, "forced_eos_token_id", c->forced_eos_id);
    }
    if (c->untied_lm_head) cJSON_AddBoolToObject(o, "tie_word_embeddings", 0);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    cJSON_AddBoolToObject(o, "use_cache", 1);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return tt_err("%s: out of memory writing config", path);
    size_t n = strlen(text);
    char *with_nl = realloc(text, n + 2);
    if (!with_nl) {
        free(text);
        return tt_err("out of memory");
    }
    with_nl[n] = '\n';
    with_nl[n + 1] = 0;
    int rc = atomic_write_file(path, with_nl, n + 1);
    free(with_nl);
    return rc;
}
