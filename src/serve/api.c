/* api.c: the request and response shapes of `tutor serve` (docs/serve.md), as Hugging Face's
 * text-generation-inference has them: {"inputs": "..." or [...], "parameters": {...}} in,
 * {"generated_text": "..."} out. Every refusal names the field and the reason. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/data.h"
#include "tutor/fileio.h"
#include "tutor/serve.h"

static int bad(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int get_int(const cJSON *v, const char *name, long lo, long hi, long *out, char *why, size_t n) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return bad(why, n, "parameters.%s: must be a whole number in [%ld, %ld]", name, lo, hi);
    *out = (long)v->valuedouble;
    return 0;
}

void serve_request_free(ServeRequest *r) {
    for (int i = 0; i < r->n_inputs; i++) free(r->inputs[i]);
    free(r->inputs);
    memset(r, 0, sizeof *r);
}

static int take_text(const cJSON *v, const char *what, char **out, char *why, size_t n) {
    if (!cJSON_IsString(v)) return bad(why, n, "%s: must be a string", what);
    size_t len = strlen(v->valuestring);
    if (utf8_first_invalid(v->valuestring, len) != len) return bad(why, n, "%s: invalid UTF-8", what);
    *out = strdup(v->valuestring);
    return *out ? 0 : bad(why, n, "out of memory");
}

int serve_request_parse(const char *body, size_t n, int max_inputs, ServeRequest *out, char *why, size_t why_len) {
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_ParseWithLength(body, n);
    if (!o) return bad(why, why_len, "the body is not JSON");
    int rc = 0;
    if (!cJSON_IsObject(o)) rc = bad(why, why_len, "the body must be a JSON object");
    const char *dup = rc ? NULL : json_duplicate_key(o);
    if (!rc && dup) rc = bad(why, why_len, "%s: appears twice", dup);
    for (const cJSON *it = rc ? NULL : o->child; it && !rc; it = it->next)
        if (strcmp(it->string, "inputs") && strcmp(it->string, "parameters"))
            rc = bad(why, why_len, "%s: unknown field (inputs, parameters)", it->string);
    const cJSON *in = rc ? NULL : cJSON_GetObjectItemCaseSensitive(o, "inputs");
    if (!rc && !in) rc = bad(why, why_len, "inputs: missing");
    if (!rc && cJSON_IsArray(in)) {
        int k = cJSON_GetArraySize(in);
        if (k < 1) rc = bad(why, why_len, "inputs: an empty list");
        else if (k > max_inputs) rc = bad(why, why_len, "inputs: %d inputs, at most %d in one request", k, max_inputs);
        else {
            out->batch_form = 1;
            out->inputs = calloc((size_t)k, sizeof(char *));
            if (!out->inputs) rc = bad(why, why_len, "out of memory");
            int i = 0;
            for (const cJSON *v = in->child; v && !rc; v = v->next, i++) {
                char what[32];
                snprintf(what, sizeof what, "inputs[%d]", i);
                rc = take_text(v, what, &out->inputs[i], why, why_len);
                if (!rc) out->n_inputs = i + 1;
            }
        }
    } else if (!rc) {
        out->inputs = calloc(1, sizeof(char *));
        rc = out->inputs ? take_text(in, "inputs", &out->inputs[0], why, why_len) : bad(why, why_len, "out of memory");
        if (!rc) out->n_inputs = 1;
        if (rc && !cJSON_IsString(in)) rc = bad(why, why_len, "inputs: must be a string or a list of strings");
    }
    const cJSON *pa = rc ? NULL : cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!rc && pa && !cJSON_IsNull(pa)) {
        if (!cJSON_IsObject(pa)) rc = bad(why, why_len, "parameters: must be an object");
        ServeParams *p = &out->p;
        for (const cJSON *v = rc ? NULL : pa->child; v && !rc; v = v->next) {
            const char *k = v->string;
            long x = 0;
            if (!strcmp(k, "max_new_tokens")) {
                rc = get_int(v, k, 1, 1 << 20, &x, why, why_len);
                p->max_new_tokens = (int)x, p->max_new_tokens_set = 1;
            } else if (!strcmp(k, "num_beams")) {
                rc = get_int(v, k, 1, 64, &x, why, why_len);
                p->num_beams = (int)x, p->num_beams_set = 1;
            } else if (!strcmp(k, "num_return_sequences")) {
                rc = get_int(v, k, 1, 64, &x, why, why_len);
                p->num_return_sequences = (int)x, p->num_return_sequences_set = 1;
            } else if (!strcmp(k, "top_k")) {
                rc = get_int(v, k, 0, 1 << 24, &x, why, why_len);
                p->top_k = (int)x, p->top_k_set = 1;
            } else if (!strcmp(k, "seed")) {
                if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
                    v->valuedouble > 9007199254740992.0)
                    rc = bad(why, why_len, "parameters.seed: must be a whole number in [0, 2^53]");
                else p->seed = (uint64_t)v->valuedouble, p->seed_set = 1;
            } else if (!strcmp(k, "do_sample")) {
                if (!cJSON_IsBool(v)) rc = bad(why, why_len, "parameters.do_sample: must be true or false");
                p->do_sample = cJSON_IsTrue(v), p->do_sample_set = 1;
            } else if (!strcmp(k, "temperature")) {
                if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble) || v->valuedouble > 100)
                    rc = bad(why, why_len, "parameters.temperature: must be a number in (0, 100]");
                p->temperature = v->valuedouble, p->temperature_set = 1;
            } else if (!strcmp(k, "top_p")) {
                if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1)
                    rc = bad(why, why_len, "parameters.top_p: must be a number in (0, 1]");
                p->top_p = v->valuedouble, p->top_p_set = 1;
            } else {
                rc = bad(why, why_len,
                         "parameters.%s: unknown (max_new_tokens, num_beams, do_sample, temperature, top_k, top_p, "
                         "num_return_sequences, seed)",
                         k);
            }
        }
    }
    cJSON_Delete(o);
    if (rc) serve_request_free(out);
    return rc;
}

int serve_request_config(const ServeRequest *r, const GenConfig *base, GenConfig *g, char *why, size_t why_len) {
    *g = *base;
    const ServeParams *p = &r->p;
    if (p->max_new_tokens_set) g->max_new_tokens = p->max_new_tokens;
    if (p->num_beams_set) g->num_beams = p->num_beams;
    if (p->do_sample_set) g->do_sample = p->do_sample;
    if (p->do_sample_set && p->do_sample && !p->num_beams_set) g->num_beams = 1; /* sampling, not beam sampling */
    if (p->temperature_set) g->temperature = p->temperature;
    if (p->top_k_set) g->top_k = p->top_k;
    if (p->top_p_set) g->top_p = p->top_p;
    if (p->top_p_set && !p->top_k_set) g->top_k = 0; /* as tutor generate: --top-p alone means no top-k */
    g->num_return_sequences = p->num_return_sequences_set ? p->num_return_sequences : 1;
    if (p->seed_set) g->seed = p->seed;
    if (g->do_sample && g->num_beams > 1)
        return bad(why, why_len, "parameters.num_beams: beam search with sampling is not supported (num_beams 1 with do_sample)");
    if (g->num_beams > 1 && g->num_return_sequences > g->num_beams)
        return bad(why, why_len, "parameters.num_return_sequences: %d, more than num_beams %d", g->num_return_sequences,
                   g->num_beams);
    if (!g->do_sample && g->num_beams == 1 && g->num_return_sequences > 1)
        return bad(why, why_len, "parameters.num_return_sequences: greedy search returns one sequence (use do_sample or num_beams)");
    if (gen_config_check(g)) return bad(why, why_len, "parameters: %s", tt_errmsg());
    return 0;
}

static cJSON *text_obj(const char *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "generated_text", t);
    return o;
}

char *serve_response_json(const ServeRequest *r, char *const *texts, int k) {
    cJSON *root;
    if (!r->batch_form) {
        if (k == 1) {
            root = text_obj(texts[0]);
        } else {
            root = cJSON_CreateArray();
            for (int j = 0; j < k; j++) cJSON_AddItemToArray(root, text_obj(texts[j]));
        }
    } else {
        root = cJSON_CreateArray();
        for (int i = 0; i < r->n_inputs; i++) {
            if (k == 1) {
                cJSON_AddItemToArray(root, text_obj(texts[i]));
            } else {
                cJSON *l = cJSON_CreateArray();
                for (int j = 0; j < k; j++) cJSON_AddItemToArray(l, text_obj(texts[(size_t)i * k + j]));
                cJSON_AddItemToArray(root, l);
            }
        }
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}
