/* gen_config.c: decoding settings as Hugging Face's GenerationConfig: its defaults, its
 * generation_config.json (read and written), and the checks generate() makes on them. A model
 * directory carries these as the defaults its `tutor generate` starts from. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/fileio.h"
#include "tutor/generate.h"

void gen_config_default(GenConfig *g) {
    memset(g, 0, sizeof *g);
    g->max_new_tokens = -1;
    g->max_length = 20;
    g->num_beams = 1;
    g->length_penalty = 1.0;
    g->early_stopping = EARLY_STOP_HEURISTIC;
    g->temperature = 1.0;
    g->top_k = 50;
    g->top_p = 1.0;
    g->repetition_penalty = 1.0;
    g->num_return_sequences = 1;
    g->decoder_start_id = g->bos_id = g->eos_id = g->pad_id = -1;
    g->forced_bos_id = g->forced_eos_id = -1;
}

void gen_config_from_model(GenConfig *g, const ModelConfig *c) {
    gen_config_default(g);
    g->decoder_start_id = c->decoder_start_id;
    g->bos_id = c->bos_id;
    g->eos_id = c->eos_id;
    g->pad_id = c->pad_id;
    g->forced_eos_id = c->forced_eos_id;
}

void gen_config_limit_to_tokenizer(GenConfig *g, const ModelConfig *c, const Tokenizer *tok) {
    int n = tokenizer_vocab_size(tok);
    g->vocab_limit = n < c->vocab_size ? n : 0;
}

int gen_config_for_dir(GenConfig *g, const ModelConfig *c, const char *dir) {
    gen_config_from_model(g, c);
    if (!dir) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (!file_exists(path)) snprintf(path, sizeof path, "%s/config.json", dir);
    if (!file_exists(path) || gen_config_load(g, path)) return file_exists(path) ? -1 : 0;
    /* token ids name the file and the key when they do not fit the model */
    const char *keys[] = {"decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id",
                          "forced_bos_token_id", "forced_eos_token_id"};
    const int ids[] = {g->decoder_start_id, g->bos_id, g->eos_id, g->pad_id, g->forced_bos_id, g->forced_eos_id};
    for (int k = 0; k < 6; k++)
        if (ids[k] < -1 || ids[k] >= c->vocab_size)
            return tt_err("%s: \"%s\" is %d, outside the model's vocabulary of %d ids", path, keys[k], ids[k],
                          c->vocab_size);
    return 0;
}

/* Integer key: absent or null leaves *out; a list (HF allows several eos ids) takes its first. */
static int read_int(const cJSON *o, const char *key, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 2147483647.0)
        return tt_err("%s: \"%s\" is not an integer (of at most 2^31 - 1)", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int read_double(const cJSON *o, const char *key, double *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return tt_err("%s: \"%s\" is not a finite number", path, key);
    *out = v->valuedouble;
    return 0;
}

static int read_bool(const cJSON *o, const char *key, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return tt_err("%s: \"%s\" is not true or false", path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int gen_config_load(GenConfig *g, const char *path) {
    cJSON *o = json_load_object(path);
    if (!o) return -1;
    int rc = 0;
    rc |= read_int(o, "max_new_tokens", &g->max_new_tokens, path);
    rc |= read_int(o, "max_length", &g->max_length, path);
    rc |= read_int(o, "min_new_tokens", &g->min_new_tokens, path);
    rc |= read_int(o, "min_length", &g->min_length, path);
    rc |= read_int(o, "num_beams", &g->num_beams, path);
    rc |= read_double(o, "length_penalty", &g->length_penalty, path);
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(o, "early_stopping");
    if (cJSON_IsString(es)) {
        if (strcmp(es->valuestring, "never")) rc |= tt_err("%s: \"early_stopping\" must be true, false or \"never\"", path);
        else g->early_stopping = EARLY_STOP_NEVER;
    } else {
        rc |= read_bool(o, "early_stopping", &g->early_stopping, path);
    }
    rc |= read_bool(o, "do_sample", &g->do_sample, path);
    rc |= read_double(o, "temperature", &g->temperature, path);
    rc |= read_int(o, "top_k", &g->top_k, path);
    rc |= read_double(o, "top_p", &g->top_p, path);
    rc |= read_int(o, "no_repeat_ngram_size", &g->no_repeat_ngram_size, path);
    rc |= read_double(o, "repetition_penalty", &g->repetition_penalty, path);
    rc |= read_int(o, "num_return_sequences", &g->num_return_sequences, path);
    rc |= read_int(o, "decoder_start_token_id", &g->decoder_start_id, path);
    rc |= read_int(o, "bos_token_id", &g->bos_id, path);
    rc |= read_int(o, "eos_token_id", &g->eos_id, path);
    rc |= read_int(o, "pad_token_id", &g->pad_id, path);
    rc |= read_int(o, "forced_bos_token_id", &g->forced_bos_id, path);
    rc |= read_int(o, "forced_eos_token_id", &g->forced_eos_id, path);
    cJSON_Delete(o);
    if (rc) return -1;
    if (gen_config_check(g)) return tt_err_wrap("%s", path);
    return 0;
}

int gen_config_save(const GenConfig *g, const char *path) {
    GenConfig d;
    gen_config_default(&d);
    cJSON *o = cJSON_CreateObject();
    if (!o) return tt_err("out of memory");
    if (g->max_new_tokens >= 0) cJSON_AddNumberToObject(o, "max_new_tokens", g->max_new_tokens);
    if (g->max_length != d.max_length) cJSON_AddNumberToObject(o, "max_length", g->max_length);
    if (g->min_new_tokens) cJSON_AddNumberToObject(o, "min_new_tokens", g->min_new_tokens);
    if (g->min_length) cJSON_AddNumberToObject(o, "min_length", g->min_length);
    if (g->num_beams != 1) cJSON_AddNumberToObject(o, "num_beams", g->num_beams);
    if (g->length_penalty != 1.0) cJSON_AddNumberToObject(o, "length_penalty", g->length_penalty);
    if (g->early_stopping == EARLY_STOP_NEVER) cJSON_AddStringToObject(o, "early_stopping", "never");
    else if (g->early_stopping) cJSON_AddBoolToObject(o, "early_stopping", 1);
    if (g->do_sample) cJSON_AddBoolToObject(o, "do_sample", 1);
    if (g->temperature != 1.0) cJSON_AddNumberToObject(o, "temperature", g->temperature);
    if (g->top_k != 50) cJSON_AddNumberToObject(o, "top_k", g->top_k);
    if (g->top_p != 1.0) cJSON_AddNumberToObject(o, "top_p", g->top_p);
    if (g->no_repeat_ngram_size) cJSON_AddNumberToObject(o, "no_repeat_ngram_size", g->no_repeat_ngram_size);
    if (g->repetition_penalty != 1.0) cJSON_AddNumberToObject(o, "repetition_penalty", g->repetition_penalty);
    if (g->num_return_sequences != 1) cJSON_AddNumberToObject(o, "num_return_sequences", g->num_return_sequences);
    static const char *const id_keys[] = {"decoder_start_token_id", "bos_token_id", "eos_token_id",
                                          "pad_token_id", "forced_bos_token_id", "forced_eos_token_id"};
    const int ids[] = {g->decoder_start_id, g->bos_id, g->eos_id, g->pad_id, g->forced_bos_id, g->forced_eos_id};
    for (int i = 0; i < 6; i++)
        if (ids[i] >= 0) cJSON_AddNumberToObject(o, id_keys[i], ids[i]);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return tt_err("out of memory");
    size_t n = strlen(text);
    char *withnl = realloc(text, n + 2);
    if (!withnl) {
        free(text);
        return tt_err("out of memory");
    }
    withnl[n] = '\n';
    withnl[n + 1] = 0;
    int rc = atomic_write_file(path, withnl, n + 1);
    free(withnl);
    return rc;
}

int gen_config_check(const GenConfig *g) {
    if (g->num_beams < 1 || g->num_beams > 500) return tt_err("num_beams must be in 1..500 (got %d)", g->num_beams);
    if (g->num_return_sequences < 1) return tt_err("num_return_sequences must be at least 1");
    if (g->num_beams > 1 && g->num_return_sequences > g->num_beams)
        return tt_err("num_return_sequences (%d) must not exceed num_beams (%d) in beam search",
                      g->num_return_sequences, g->num_beams);
    if (g->num_beams > 1 && g->do_sample)
        return tt_err("beam search with sampling (beam_sample) is not supported: use one of them");
    if (g->num_beams == 1 && !g->do_sample && g->num_return_sequences > 1)
        return tt_err("greedy search returns one sequence: use beam search or sampling for %d",
                      g->num_return_sequences);
    if (g->max_new_tokens == 0 || g->max_new_tokens < -1) return tt_err("max_new_tokens must be at least 1");
    if (g->max_new_tokens < 0 && g->max_length < 1) return tt_err("max_length must be at least 1");
    if (g->min_new_tokens < 0 || g->min_length < 0) return tt_err("min_new_tokens/min_length must not be negative");
    if (!(g->temperature > 0)) return tt_err("temperature must be positive (got %g)", g->temperature);
    if (g->top_k < 0) return tt_err("top_k must not be negative");
    if (!(g->top_p > 0 && g->top_p <= 1)) return tt_err("top_p must be in (0, 1] (got %g)", g->top_p);
    if (!(g->repetition_penalty > 0)) return tt_err("repetition_penalty must be positive");
    if (g->no_repeat_ngram_size < 0) return tt_err("no_repeat_ngram_size must not be negative");
    if (!isfinite(g->length_penalty)) return tt_err("length_penalty must be finite");
    return 0;
}

int gen_max_new_tokens(const GenConfig *g, const ModelConfig *c, int prompt_len) {
    int decoder_prompt = model_is_encdec(c) ? 1 : prompt_len;
    int n = g->max_new_tokens >= 0 ? g->max_new_tokens : g->max_length - decoder_prompt;
    /* HF checks max_length only after each step: a prompt at or past it still gets one token */
    if (g->max_new_tokens < 0 && n < 1) n = 1;
    /* the decoder's position table bounds the sequence */
    int room = c->max_positions - decoder_prompt + 1;
    if (model_is_encdec(c)) room = c->max_positions; /* positions 0..max-1 hold start + n-1 tokens */
    return n < room ? n : room;
}
