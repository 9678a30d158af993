/* ptfile.c: pseudo-target files as `tutor generate` writes them, one JSON object per line:
 * {"id": ..., "source": "...", "targets": ["...", ...], ...}. Reading is validated line by
 * line: every error names the file, the line and the reason. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/data.h"

int pt_line_is_generated(const char *line, size_t len) {
    cJSON *o = cJSON_ParseWithLength(line, len);
    int ok = o && cJSON_IsObject(o) && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "targets"));
    cJSON_Delete(o);
    return ok;
}

static void item_free(PtItem *it) {
    free(it->id);
    free(it->source);
    for (int k = 0; k < it->n_targets; k++) free(it->targets[k]);
    free(it->targets);
    memset(it, 0, sizeof *it);
}

void ptfile_free(PtFile *f) {
    for (size_t i = 0; i < f->n; i++) item_free(&f->items[i]);
    free(f->items);
    free(f->path);
    memset(f, 0, sizeof *f);
}

void ptfile_keep_first(PtFile *f, int k) {
    if (k < 1) return;
    for (size_t i = 0; i < f->n; i++) {
        PtItem *it = &f->items[i];
        for (int j = k; j < it->n_targets; j++) free(it->targets[j]);
        if (it->n_targets > k) it->n_targets = k;
    }
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* Parses one line into *it; returns 0, or -1 with the reason in why. */
static int parse_line(const char *line, size_t len, size_t lineno, PtItem *it, char *why, size_t why_len) {
    memset(it, 0, sizeof *it);
    it->line = lineno;
    if (memchr(line, 0, len)) return snprintf(why, why_len, "NUL byte"), -1;
    size_t bad = utf8_first_invalid(line, len);
    if (bad < len) return snprintf(why, why_len, "invalid UTF-8 at byte %zu", bad + 1), -1;
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) return snprintf(why, why_len, "not valid JSON"), -1;
    int rc = -1;
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    const cJSON *tg = cJSON_GetObjectItemCaseSensitive(o, "targets");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    char num[32];
    if (!cJSON_IsObject(o)) snprintf(why, why_len, "not a JSON object");
    else if (!cJSON_IsString(src)) snprintf(why, why_len, "missing string field \"source\"");
    else if (!cJSON_IsArray(tg)) snprintf(why, why_len, "missing field \"targets\" (a list of strings)");
    else if (cJSON_GetArraySize(tg) < 1) snprintf(why, why_len, "\"targets\" is empty");
    else if (cJSON_GetArraySize(tg) > 4096) snprintf(why, why_len, "more than 4096 targets");
    else {
        int n = cJSON_GetArraySize(tg);
        it->targets = calloc((size_t)n, sizeof(char *));
        it->source = strdup(src->valuestring);
        if (cJSON_IsString(id)) it->id = strdup(id->valuestring);
        else if (cJSON_IsNumber(id)) snprintf(num, sizeof num, "%.0f", id->valuedouble), it->id = strdup(num);
        else snprintf(num, sizeof num, "%zu", lineno), it->id = strdup(num);
        if (!it->targets || !it->source || !it->id) {
            snprintf(why, why_len, "out of memory");
        } else {
            rc = 0;
            for (int k = 0; k < n; k++) {
                const cJSON *t = cJSON_GetArrayItem(tg, k);
                if (!cJSON_IsString(t)) {
                    snprintf(why, why_len, "target %d is not a string", k);
                    rc = -1;
                    break;
                }
                if (!(it->targets[k] = strdup(t->valuestring))) {
                    snprintf(why, why_len, "out of memory");
                    rc = -1;
                    break;
                }
                it->n_targets = k + 1;
            }
        }
    }
    cJSON_Delete(o);
    if (rc) item_free(it);
    return rc;
}

int ptfile_load(PtFile *f, const char *path, size_t max_lines) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return tt_err("%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0, n_cap = 0;
    ssize_t len;
    int rc = 0;
    char why[160];
    while ((len = getline(&line, &cap, fp)) > 0) {
        lineno++;
        if (blank(line, (size_t)len)) continue;
        if (max_lines && f->n >= max_lines) break;
        if (f->n == n_cap) {
            size_t nc = n_cap ? 2 * n_cap : 1024;
            PtItem *ni = realloc(f->items, nc * sizeof *ni);
            if (!ni) {
                rc = tt_err("out of memory");
                break;
            }
            f->items = ni;
            n_cap = nc;
        }
        size_t l = (size_t)len;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) l--;
        if (parse_line(line, l, lineno, &f->items[f->n], why, sizeof why)) {
            rc = tt_err("%s:%zu: %s", path, lineno, why);
            break;
        }
        f->n++;
    }
    if (!rc && ferror(fp)) rc = tt_err("%s: read error", path);
    free(line);
    fclose(fp);
    if (!rc && f->n == 0) rc = tt_err("%s: no pseudo-targets (an empty file)", path);
    if (!rc && !(f->path = strdup(path))) rc = tt_err("out of memory");
    if (rc) ptfile_free(f);
    return rc;
}
