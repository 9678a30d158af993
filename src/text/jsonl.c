/* jsonl.c: reads data sets given as JSONL (one JSON object per line), streaming, with
 * lines of any length. Each raw line is checked as UTF-8 before cJSON sees it, because
 * cJSON passes invalid bytes through silently; every bad line is named by file and line. */
#include "tutor/data.h"
#include "tutor/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* ---- Reader ------------------------------------------------------------------------------- */

struct JsonlReader {
    FILE *f;
    char *path;
    char *source_field, *target_field, *id_field;
    int require_target, skip_bad, replace_invalid_utf8;
    char *buf; /* getline's buffer, grown to the longest line */
    size_t cap;
    size_t line;
    size_t skipped, replaced;
    size_t first_bad_line;
    char first_bad_reason[256];
    int counts_reported;
};

void jsonl_options_default(JsonlOptions *opt) {
    opt->source_field = "source";
    opt->target_field = "target";
    opt->id_field = "id";
    opt->require_target = 0;
    opt->skip_bad = 0;
    opt->replace_invalid_utf8 = 0;
}

void example_free(Example *ex) {
    if (!ex) return;
    free(ex->id);
    free(ex->source);
    free(ex->target);
    memset(ex, 0, sizeof *ex);
}

void jsonl_close(JsonlReader *r);

JsonlReader *jsonl_open(const char *path, const JsonlOptions *opt) {
    JsonlOptions defaults;
    if (!opt) {
        jsonl_options_default(&defaults);
        opt = &defaults;
    }
    JsonlReader *r = calloc(1, sizeof *r);
    if (!r) {
        tt_err("out of memory");
        return NULL;
    }
    r->f = fopen(path, "rb");
    if (!r->f) {
        tt_err("%s: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    r->path = strdup(path);
    r->source_field = strdup(opt->source_field ? opt->source_field : "source");
    r->target_field = strdup(opt->target_field ? opt->target_field : "target");
    r->id_field = strdup(opt->id_field ? opt->id_field : "id");
    if (!r->path || !r->source_field || !r->target_field || !r->id_field) {
        jsonl_close(r);
        tt_err("out of memory");
        return NULL;
    }
    r->require_target = opt->require_target;
    r->skip_bad = opt->skip_bad;
    r->replace_invalid_utf8 = opt->replace_invalid_utf8;
    return r;
}

static void report_counts(JsonlReader *r) {
    if (r->counts_reported) return;
    r->counts_reported = 1;
    if (r->skipped)
        tt_info("%s: skipped %zu bad line%s (first, line %zu: %s)", r->path, r->skipped,
                r->skipped == 1 ? "" : "s", r->first_bad_line, r->first_bad_reason);
    if (r->replaced)
        tt_info("%s: replaced %zu invalid UTF-8 sequence%s by U+FFFD", r->path, r->replaced,
                r->replaced == 1 ? "" : "s");
}

void jsonl_close(JsonlReader *r) {
    if (!r) return;
    if (r->path) report_counts(r);
    if (r->f) fclose(r->f);
    free(r->path);
    free(r->source_field);
    free(r->target_field);
    free(r->id_field);
    free(r->buf);
    free(r);
}

size_t jsonl_skipped_lines(const JsonlReader *r) { return r->skipped; }
size_t jsonl_replaced_chars(const JsonlReader *r) { return r->replaced; }
size_t jsonl_line(const JsonlReader *r) { return r->line; }

/* A bad line: an error (returns -1), or under skip_bad a count (returns 0: go on). */
static int bad_line(JsonlReader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_line(JsonlReader *r, const char *fmt, ...) {
    char reason[sizeof r->first_bad_reason];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (!r->skip_bad) return tt_err("%s:%zu: %s", r->path, r->line, reason);
    if (r->skipped++ == 0) {
        r->first_bad_line = r->line;
        memcpy(r->first_bad_reason, reason, sizeof reason);
    }
    return 0;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* Copies a string field (absent or null: *out = NULL). -1: a bad line was recorded. */
static int field_count(const cJSON *obj, const char *name) {
    int n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n += c->string && !strcmp(c->string, name);
    return n;
}

static int take_string(JsonlReader *r, const cJSON *obj, const char *name, int required,
                       char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (field_count(obj, name) > 1) return bad_line(r, "field \"%s\" appears twice", name), -1;
    if (!v || cJSON_IsNull(v)) {
        if (required) return bad_line(r, "missing field \"%s\"", name), -1;
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return bad_line(r, "field \"%s\" is not a string", name), -1;
    *out = strdup(v->valuestring);
    if (!*out) return tt_err("out of memory"), -2;
    return 0;
}

/* The id: a string, an integer (pseudo-target files may number their inputs), or the
 * line number when absent. */
static int take_id(JsonlReader *r, const cJSON *obj, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, r->id_field);
    char text[64];
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        snprintf(text, sizeof text, "%zu", r->line);
    } else if (cJSON_IsString(v) && v->valuestring) {
        *out = strdup(v->valuestring);
        if (!*out) return tt_err("out of memory"), -2;
        return 0;
    } else if (cJSON_IsNumber(v) && v->valuedouble > -9e18 && v->valuedouble < 9e18 &&
               v->valuedouble == (double)(long long)v->valuedouble) {
        snprintf(text, sizeof text, "%lld", (long long)v->valuedouble);
    } else {
        return bad_line(r, "field \"%s\" is not a string or an integer", r->id_field), -1;
    }
    *out = strdup(text);
    if (!*out) return tt_err("out of memory"), -2;
    return 0;
}

/* Parses one non-blank line (text[0..n), NUL-terminated). 1: *ex filled; 0: the line was
 * bad and skipped; -1: error. */
static int parse_line(JsonlReader *r, char *text, size_t n, Example *ex) {
    const char *nul = memchr(text, 0, n);
    size_t bad = utf8_first_invalid(text, nul ? (size_t)(nul - text) : n);
    char *fixed = NULL;
    if (bad < (nul ? (size_t)(nul - text) : n)) {
        if (!r->replace_invalid_utf8)
            return bad_line(r, "invalid UTF-8 at byte %zu", bad + 1) < 0 ? -1 : 0;
    }
    if (nul) return bad_line(r, "NUL byte at byte %zu", (size_t)(nul - text) + 1) < 0 ? -1 : 0;
    if (bad < n) {
        size_t count = 0;
        fixed = utf8_replace_invalid(text, n, NULL, &count);
        if (!fixed) return -1;
        r->replaced += count;
        text = fixed;
    }

    /* cJSON decodes \u0000 into a NUL that would silently cut the string */
    for (const char *p = text; (p = strstr(p, "\\u")); p += 2) {
        size_t backslashes = 0;
        for (const char *q = p; q > text && q[-1] == '\\'; q--) backslashes++;
        if (backslashes % 2 == 0 && !strncmp(p + 2, "0000", 4)) {
            free(fixed);
            return bad_line(r, "a \\u0000 (NUL) escape at byte %zu: text fields cannot hold NUL",
                            (size_t)(p - text) + 1) < 0
                       ? -1
                       : 0;
        }
    }
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithOpts(text, &end, 1);
    int rc = 0;
    if (!obj) {
        size_t at = end && end >= text ? (size_t)(end - text) + 1 : 1;
        rc = bad_line(r, "not valid JSON (near byte %zu)", at) < 0 ? -1 : 0;
        free(fixed);
        return rc;
    }
    free(fixed);
    if (!cJSON_IsObject(obj)) {
        rc = bad_line(r, "not a JSON object") < 0 ? -1 : 0;
        cJSON_Delete(obj);
        return rc;
    }
    Example e = {0};
    e.line = r->line;
    int s = take_string(r, obj, r->source_field, 1, &e.source);
    if (s == 0) s = take_string(r, obj, r->target_field, r->require_target, &e.target);
    if (s == 0) s = take_id(r, obj, &e.id);
    cJSON_Delete(obj);
    if (s != 0) {
        example_free(&e);
        /* -1: a bad line, fatal unless skip_bad; -2: out of memory, always fatal. */
        return s == -2 || !r->skip_bad ? -1 : 0;
    }
    *ex = e;
    return 1;
}

int jsonl_next(JsonlReader *r, Example *ex) {
    memset(ex, 0, sizeof *ex);
    for (;;) {
        errno = 0;
        ssize_t got = getline(&r->buf, &r->cap, r->f);
        if (got < 0) {
            if (ferror(r->f)) return tt_err("%s: %s", r->path, strerror(errno ? errno : EIO));
            report_counts(r);
            return 0;
        }
        r->line++;
        size_t n = (size_t)got;
        if (n && r->buf[n - 1] == '\n') n--;
        if (n && r->buf[n - 1] == '\r') n--;
        r->buf[n] = 0;
        if (is_blank(r->buf, n)) continue;
        int rc = parse_line(r, r->buf, n, ex);
        if (rc != 0) return rc;
    }
}

/* ---- Whole data sets ---------------------------------------------------------------------- */

void dataset_free(Dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n; i++) example_free(&ds->items[i]);
    free(ds->items);
    free(ds->path);
    memset(ds, 0, sizeof *ds);
}

int dataset_load_jsonl(Dataset *ds, const char *path, const JsonlOptions *opt, size_t max_lines) {
    memset(ds, 0, sizeof *ds);
    JsonlReader *r = jsonl_open(path, opt);
    if (!r) return -1;
    size_t cap = 0;
    int rc = 0;
    ds->path = strdup(path);
    if (!ds->path) rc = tt_err("out of memory");
    while (rc == 0 && (max_lines == 0 || ds->n < max_lines)) {
        if (ds->n == cap) {
            size_t ncap = cap ? 2 * cap : 1024;
            Example *items = realloc(ds->items, ncap * sizeof *items);
            if (!items) {
                rc = tt_err("%s: out of memory after %zu examples", path, ds->n);
                break;
            }
            ds->items = items;
            cap = ncap;
        }
        int got = jsonl_next(r, &ds->items[ds->n]);
        if (got < 0) rc = -1;
        if (got <= 0) break;
        ds->n++;
    }
    ds->skipped_lines = jsonl_skipped_lines(r);
    ds->replaced_chars = jsonl_replaced_chars(r);
    jsonl_close(r);
    if (rc != 0) {
        dataset_free(ds);
        return -1;
    }
    return 0;
}
