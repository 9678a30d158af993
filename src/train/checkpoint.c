/* checkpoint.c: the resumable state of a training run, written so that a crash at any
 * moment leaves a complete checkpoint behind. Two slots (checkpoint-a, checkpoint-b) take
 * turns; each holds the parameters (a model directory), the AdamW moments and
 * trainer_state.json; OUT/checkpoint.json, replaced atomically after a slot is complete,
 * names the slot to resume from. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "tutor/fileio.h"
#include "tutor/safetensors.h"

static void path_join(char *out, size_t n, const char *a, const char *b) { snprintf(out, n, "%s/%s", a, b); }

static char *u64_str(uint64_t x, char *buf) {
    snprintf(buf, 24, "%llu", (unsigned long long)x);
    return buf;
}

static int write_moments(const char *path, const AdamW *opt, long step) {
    StWriteTensor t[2];
    memset(t, 0, sizeof t);
    t[0].name = "exp_avg";
    t[1].name = "exp_avg_sq";
    t[0].data = opt->m;
    t[1].data = opt->v;
    for (int i = 0; i < 2; i++) {
        t[i].dtype = REAL_IS_DOUBLE ? ST_F64 : ST_F32;
        t[i].ndim = 1;
        t[i].shape[0] = (int64_t)opt->n;
    }
    char step_s[24], adam_s[24];
    snprintf(step_s, sizeof step_s, "%ld", step);
    snprintf(adam_s, sizeof adam_s, "%ld", opt->step);
    const char *meta[] = {"step", step_s, "adam_step", adam_s, NULL};
    return st_write(path, t, 2, meta);
}

static int read_moments(const char *path, AdamW *opt) {
    StFile f;
    if (st_open(&f, path)) return -1;
    int rc = 0;
    const char *names[2] = {"exp_avg", "exp_avg_sq"};
    real *dst[2] = {opt->m, opt->v};
    for (int i = 0; i < 2 && !rc; i++) {
        const StTensor *t = st_find(&f, names[i]);
        if (!t || t->dtype != (REAL_IS_DOUBLE ? ST_F64 : ST_F32) || st_numel(t) != opt->n)
            rc = tt_err("%s: \"%s\" missing or of the wrong size (does the checkpoint match this model?)", path,
                        names[i]);
        else
            memcpy(dst[i], st_data(&f, t), opt->n * sizeof(real));
    }
    const char *as = st_metadata_get(&f, "adam_step");
    if (!rc && as) opt->step = atol(as);
    st_close(&f);
    return rc;
}

int checkpoint_save(const char *out_dir, const Model *m, const Tokenizer *tok, const AdamW *opt,
                    const TrainState *st, const cJSON *components, const char *options_json) {
    char pointer[4096], slot_dir[4096], path[4200];
    path_join(pointer, sizeof pointer, out_dir, "checkpoint.json");
    /* the slot not named by the pointer now */
    const char *slot = "checkpoint-a";
    size_t n;
    char *cur = file_exists(pointer) ? read_file_text(pointer, &n) : NULL;
    if (cur && strstr(cur, "checkpoint-a")) slot = "checkpoint-b";
    free(cur);
    tt_err_clear();
    path_join(slot_dir, sizeof slot_dir, out_dir, slot);
    if (model_save(m, slot_dir)) return -1;
    if (tok && tokenizer_save_dir(tok, slot_dir, m->cfg.max_positions)) return -1;
    path_join(path, sizeof path, slot_dir, "optimizer.safetensors");
    if (write_moments(path, opt, st->step)) return -1;

    cJSON *o = cJSON_CreateObject();
    char buf[24];
    cJSON_AddNumberToObject(o, "step", (double)st->step);
    cJSON_AddNumberToObject(o, "tokens_seen", (double)st->tokens_seen);
    cJSON_AddNumberToObject(o, "elapsed_s", st->elapsed_s);
    cJSON_AddNumberToObject(o, "best_dev_loss", st->best_dev);
    cJSON_AddNumberToObject(o, "best_step", (double)st->best_step);
    cJSON_AddNumberToObject(o, "bad_evals", st->bad_evals);
    cJSON *rng = cJSON_AddArrayToObject(o, "dropout_rng");
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(rng, cJSON_CreateString(u64_str(m->dropout_rng.s[i], buf)));
    for (const cJSON *c = components ? components->child : NULL; c; c = c->next)
        cJSON_AddItemToObject(o, c->string, cJSON_Duplicate(c, 1));
    if (options_json) {
        cJSON *opts = cJSON_Parse(options_json);
        if (opts) cJSON_AddItemToObject(o, "options", opts);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    path_join(path, sizeof path, slot_dir, "trainer_state.json");
    int rc = text ? atomic_write_file(path, text, strlen(text)) : tt_err("out of memory");
    free(text);
    if (rc) return -1;
    char ptr_text[256];
    int len = snprintf(ptr_text, sizeof ptr_text, "{\"slot\": \"%s\", \"step\": %ld}\n", slot, st->step);
    return atomic_write_file(pointer, ptr_text, (size_t)len);
}

int checkpoint_exists(const char *out_dir) {
    char pointer[4096];
    path_join(pointer, sizeof pointer, out_dir, "checkpoint.json");
    return file_exists(pointer);
}

int checkpoint_load(const char *out_dir, Model *m, AdamW *opt, TrainState *st, cJSON **state) {
    *state = NULL;
    char pointer[4096], slot_dir[4096], path[4200];
    path_join(pointer, sizeof pointer, out_dir, "checkpoint.json");
    size_t n;
    char *text = read_file_text(pointer, &n);
    if (!text) return tt_err_wrap("cannot resume");
    cJSON *p = cJSON_Parse(text);
    free(text);
    const cJSON *slot = cJSON_GetObjectItemCaseSensitive(p, "slot");
    if (!cJSON_IsString(slot) || (strcmp(slot->valuestring, "checkpoint-a") && strcmp(slot->valuestring, "checkpoint-b"))) {
        cJSON_Delete(p);
        return tt_err("%s: not a checkpoint pointer", pointer);
    }
    path_join(slot_dir, sizeof slot_dir, out_dir, slot->valuestring);
    cJSON_Delete(p);

    ModelConfig saved;
    path_join(path, sizeof path, slot_dir, "config.json");
    if (model_config_load(&saved, path)) return -1;
    if (memcmp(&saved, &m->cfg, sizeof saved) != 0)
        return tt_err("%s: the checkpoint's model configuration differs from this run's", path);
    path_join(path, sizeof path, slot_dir, "model.safetensors");
    if (model_load_params(m, path)) return -1;
    path_join(path, sizeof path, slot_dir, "optimizer.safetensors");
    if (read_moments(path, opt)) return -1;
    path_join(path, sizeof path, slot_dir, "trainer_state.json");
    text = read_file_text(path, &n);
    if (!text) return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) return tt_err("%s: not valid JSON", path);
    int rc = 0;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(o, "dropout_rng");
    if (!cJSON_IsNumber(step) || !cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != 4) {
        rc = tt_err("%s: incomplete trainer state", path);
    } else {
        st->step = (long)step->valuedouble;
        st->tokens_seen = (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "tokens_seen"));
        st->elapsed_s = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "elapsed_s"));
        const cJSON *bd = cJSON_GetObjectItemCaseSensitive(o, "best_dev_loss");
        st->best_dev = cJSON_IsNumber(bd) ? bd->valuedouble : INFINITY; /* JSON has no infinity */
        st->best_step = (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "best_step"));
        st->bad_evals = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "bad_evals"));
        for (int i = 0; i < 4; i++) {
            const cJSON *x = cJSON_GetArrayItem(rng, i);
            m->dropout_rng.s[i] = cJSON_IsString(x) ? strtoull(x->valuestring, NULL, 10) : 0;
        }
    }
    if (rc) cJSON_Delete(o);
    else *state = o;
    return rc;
}
