/* safetensors.c: Hugging Face's safetensors format. The reader maps the file and checks
 * everything the safetensors library checks (header bounds, JSON, dtypes, shapes, offsets
 * that tile the data section exactly) before any tensor byte is touched; the writer lays
 * the file out byte for byte as the safetensors library does, so transformers loads it. */
#include "tutor/safetensors.h"
#include "tutor/core.h"
#include "tutor/fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c maps little-endian tensor data directly: a big-endian host needs byte swaps"
#endif

/* The safetensors library refuses headers above this size (MAX_HEADER_SIZE). */
#define ST_MAX_HEADER_BYTES 100000000ull
/* JSON numbers are read as doubles: integers above 2^53 cannot be represented exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

static const struct {
    const char *name;
    size_t size;
    int align_rank; /* position in the safetensors library's Dtype enum (rising alignment) */
} dtype_info[] = {
    [ST_F32] = {"F32", 4, 11}, [ST_F16] = {"F16", 2, 7},  [ST_BF16] = {"BF16", 2, 8},
    [ST_F64] = {"F64", 8, 12}, [ST_I64] = {"I64", 8, 13}, [ST_I32] = {"I32", 4, 9},
    [ST_I16] = {"I16", 2, 5},  [ST_I8] = {"I8", 1, 2},    [ST_U8] = {"U8", 1, 1},
    [ST_BOOL] = {"BOOL", 1, 0},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

const char *st_dtype_name(StDtype d) {
    return (int)d >= 0 && (int)d < N_DTYPES ? dtype_info[d].name : "?";
}

size_t st_dtype_size(StDtype d) {
    return (int)d >= 0 && (int)d < N_DTYPES ? dtype_info[d].size : 0;
}

int st_dtype_parse(const char *s, StDtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (StDtype)i;
            return 0;
        }
    return -1;
}

size_t st_numel(const StTensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* numel * element size with overflow checks; -1 on overflow. */
static int shape_bytes(const int64_t *shape, int ndim, StDtype dtype, size_t *out) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (__builtin_mul_overflow(n, (size_t)shape[i], &n)) return -1;
    }
    if (__builtin_mul_overflow(n, st_dtype_size(dtype), &n)) return -1;
    *out = n;
    return 0;
}

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

void st_close(StFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors && f->tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    if (f->metadata) cJSON_Delete(f->metadata);
    if (f->map) munmap(f->map, f->map_bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* ---- reading ---- */

/* What a file that is not safetensors looks like, for a message that says what to do. */
static int refuse_foreign_format(const char *path, const unsigned char *b, size_t n) {
    if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
        return tt_err("%s: a PyTorch zip checkpoint (torch.save / pytorch_model.bin), not "
                      "safetensors; pickle files are not supported: convert to model.safetensors",
                      path);
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return tt_err("%s: a Python pickle (pytorch_model.bin format), not safetensors; pickle "
                      "files are not supported: convert to model.safetensors", path);
    size_t i = 0;
    while (i < n && i < 64 && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    if (i < n && b[i] == '{')
        return tt_err("%s: a JSON file (a sharded checkpoint's model.safetensors.index.json?), "
                      "not safetensors", path);
    return 0;
}

static int header_is_utf8(const unsigned char *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            if (s[i] == 0) break;
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (len <= 0) break;
        i += (size_t)len;
    }
    *bad_at = i;
    return i == n;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || floor(d) != d) return -1;
    *out = (int64_t)d;
    return 0;
}

/* Fills t from one header entry; the caller frees t->name on error too. */
static int parse_tensor_entry(const char *path, const cJSON *e, StTensor *t) {
    const char *name = t->name;
    if (!cJSON_IsObject(e))
        return tt_err("%s: tensor '%s': header entry is not a JSON object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dtype) return tt_err("%s: tensor '%s': missing \"dtype\"", path, name);
    if (!shape) return tt_err("%s: tensor '%s': missing \"shape\"", path, name);
    if (!offs) return tt_err("%s: tensor '%s': missing \"data_offsets\"", path, name);
    if (!cJSON_IsString(dtype))
        return tt_err("%s: tensor '%s': \"dtype\" is not a string", path, name);
    if (st_dtype_parse(dtype->valuestring, &t->dtype) != 0)
        return tt_err("%s: tensor '%s': unknown or unsupported dtype \"%s\"", path, name,
                      dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return tt_err("%s: tensor '%s': \"shape\" is not an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return tt_err("%s: tensor '%s': shape has %d dimensions, more than the %d supported",
                      path, name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++)
        if (json_uint(d, &t->shape[i]) != 0)
            return tt_err("%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return tt_err("%s: tensor '%s': \"data_offsets\" is not an array of two integers", path,
                      name);
    int64_t b, en;
    if (json_uint(offs->child, &b) != 0 || json_uint(offs->child->next, &en) != 0)
        return tt_err("%s: tensor '%s': \"data_offsets\" are not non-negative integers", path,
                      name);
    t->begin = (size_t)b;
    t->end = (size_t)en;
    return 0;
}

static _Thread_local const StTensor *sort_tensors;

static int cmp_by_offset(const void *a, const void *b) {
    const StTensor *x = &sort_tensors[*(const int *)a], *y = &sort_tensors[*(const int *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(sort_tensors[*(const int *)a].name, sort_tensors[*(const int *)b].name);
}

/* The tensors must tile [0, data_bytes) exactly, each with the bytes its shape needs:
 * the safetensors library refuses gaps, overlaps and trailing bytes alike. */
static int check_layout(StFile *f) {
    const char *path = f->path;
    char sh[160];
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        if (t->end < t->begin)
            return tt_err("%s: tensor '%s': data_offsets [%zu, %zu] are not in order", path,
                          t->name, t->begin, t->end);
        if (t->end > f->data_bytes)
            return tt_err("%s: tensor '%s': data_offsets [%zu, %zu] run past the end of the data "
                          "section (%zu bytes)", path, t->name, t->begin, t->end, f->data_bytes);
        size_t need;
        format_shape(t->shape, t->ndim, sh, sizeof sh);
        if (shape_bytes(t->shape, t->ndim, t->dtype, &need) != 0)
            return tt_err("%s: tensor '%s': shape %s is too large (its byte size overflows)", path,
                          t->name, sh);
        if (t->end - t->begin != need)
            return tt_err("%s: tensor '%s': data_offsets [%zu, %zu] hold %zu bytes but dtype %s "
                          "and shape %s need %zu", path, t->name, t->begin, t->end,
                          t->end - t->begin, st_dtype_name(t->dtype), sh, need);
    }
    int *order = malloc(sizeof(int) * (size_t)(f->n_tensors ? f->n_tensors : 1));
    if (!order) return tt_err("%s: out of memory", path);
    for (int i = 0; i < f->n_tensors; i++) order[i] = i;
    sort_tensors = f->tensors;
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_by_offset);
    size_t at = 0;
    const StTensor *prev = NULL;
    for (int k = 0; k < f->n_tensors; k++) {
        const StTensor *t = &f->tensors[order[k]];
        if (t->begin < at) {
            tt_err("%s: tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' [%zu, %zu]", path,
                   t->name, t->begin, t->end, prev->name, prev->begin, prev->end);
            free(order);
            return -1;
        }
        if (t->begin > at) {
            tt_err("%s: tensor '%s': data_offsets [%zu, %zu] leave a hole of %zu bytes before it "
                   "(the tensors must cover the data section contiguously)", path, t->name,
                   t->begin, t->end, t->begin - at);
            free(order);
            return -1;
        }
        at = t->end;
        prev = t;
    }
    free(order);
    if (at != f->data_bytes)
        return tt_err("%s: the tensors cover %zu bytes of the %zu-byte data section; the rest is "
                      "unaccounted for (truncated header or trailing garbage)", path, at,
                      f->data_bytes);
    return 0;
}

static int build_name_index(StFile *f) {
    f->by_name = malloc(sizeof(int) * (size_t)(f->n_tensors ? f->n_tensors : 1));
    if (!f->by_name) return tt_err("%s: out of memory", f->path);
    for (int i = 0; i < f->n_tensors; i++) f->by_name[i] = i;
    sort_tensors = f->tensors;
    qsort(f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_by_name);
    for (int k = 1; k < f->n_tensors; k++)
        if (strcmp(f->tensors[f->by_name[k]].name, f->tensors[f->by_name[k - 1]].name) == 0)
            return tt_err("%s: tensor '%s' appears twice in the header", f->path,
                          f->tensors[f->by_name[k]].name);
    return 0;
}

static int parse_header(StFile *f, const char *json_text, size_t n) {
    const char *path = f->path;
    size_t bad_at;
    if (!header_is_utf8((const unsigned char *)json_text, n, &bad_at))
        return tt_err("%s: header is not valid UTF-8 text (byte %zu of the header)", path, bad_at);
    /* Copy so the JSON is NUL-terminated and the parser must consume all of it. */
    char *text = malloc(n + 1);
    if (!text) return tt_err("%s: out of memory for a %zu-byte header", path, n);
    memcpy(text, json_text, n);
    text[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        size_t pos = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        free(text);
        return tt_err("%s: header is not valid JSON (error near byte %zu of the header)", path, pos);
    }
    free(text);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        tt_err("%s: header is not a JSON object", path);
        goto out;
    }
    int n_entries = cJSON_GetArraySize(root);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (meta) {
        if (!cJSON_IsObject(meta)) {
            tt_err("%s: \"__metadata__\" is not a JSON object", path);
            goto out;
        }
        for (const cJSON *kv = meta->child; kv; kv = kv->next)
            if (!cJSON_IsString(kv)) {
                tt_err("%s: \"__metadata__\" value for \"%s\" is not a string", path, kv->string);
                goto out;
            }
        f->metadata = cJSON_DetachItemViaPointer(root, meta);
        n_entries--;
    }
    f->tensors = calloc((size_t)(n_entries ? n_entries : 1), sizeof *f->tensors);
    if (!f->tensors) {
        tt_err("%s: out of memory", path);
        goto out;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            tt_err("%s: \"__metadata__\" appears twice in the header", path);
            goto out;
        }
        StTensor *t = &f->tensors[f->n_tensors];
        t->name = strdup(e->string);
        if (!t->name) {
            tt_err("%s: out of memory", path);
            goto out;
        }
        f->n_tensors++;
        if (parse_tensor_entry(path, e, t) != 0) goto out;
    }
    if (check_layout(f) != 0 || build_name_index(f) != 0) goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int st_open(StFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return tt_err("%s: out of memory", path);
    /* O_NONBLOCK: opening a FIFO by mistake must not hang; no effect on regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        tt_err("%s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        tt_err("%s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        tt_err("%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        tt_err("%s: empty file, not safetensors", path);
        close(fd);
        goto fail;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        tt_err("%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    f->map = map;
    f->map_bytes = size;
    const unsigned char *b = map;
    if (size < 8) {
        if (refuse_foreign_format(path, b, size) == 0)
            tt_err("%s: file is %zu bytes, too short for a safetensors header (8-byte length)",
                   path, size);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > ST_MAX_HEADER_BYTES || n > size - 8) {
        if (refuse_foreign_format(path, b, size) != 0) goto fail;
        if (n > ST_MAX_HEADER_BYTES)
            tt_err("%s: header length %llu exceeds the safetensors limit of %llu bytes (corrupt "
                   "or not a safetensors file)", path, (unsigned long long)n, ST_MAX_HEADER_BYTES);
        else
            tt_err("%s: header length %llu is larger than the rest of the file (%zu bytes): "
                   "truncated or not a safetensors file", path, (unsigned long long)n, size - 8);
        goto fail;
    }
    f->data = b + 8 + n;
    f->data_bytes = size - 8 - (size_t)n;
    if (parse_header(f, (const char *)b + 8, (size_t)n) != 0) goto fail;
    return 0;
fail:
    st_close(f);
    return -1;
}

const StTensor *st_find(const StFile *f, const char *name) {
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const StTensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const void *st_data(const StFile *f, const StTensor *t) { return f->data + t->begin; }

const char *st_metadata_get(const StFile *f, const char *key) {
    if (!f->metadata) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* IEEE half to float, exact (every half is a float). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal half: normalise */
        int e = -1;
        do {
            mant <<= 1;
            e++;
        } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

int st_read_f32(const StFile *f, const StTensor *t, float *out, size_t n) {
    size_t numel = st_numel(t);
    if (n != numel)
        return tt_err("%s: tensor '%s' has %zu elements, caller expected %zu", f->path, t->name,
                      numel, n);
    const unsigned char *p = st_data(f, t);
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, n * sizeof(float)); return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = half_to_float(h);
        }
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&out[i], &bits, 4);
        }
        return 0;
    default:
        return tt_err("%s: tensor '%s' has dtype %s, not a floating-point type", f->path, t->name,
                      st_dtype_name(t->dtype));
    }
}

/* ---- writing ---- */

static _Thread_local const StWriteTensor *sort_write;

/* The safetensors library's order: falling alignment, then name (bytewise). */
static int cmp_write_order(const void *a, const void *b) {
    const StWriteTensor *x = &sort_write[*(const int *)a], *y = &sort_write[*(const int *)b];
    int rx = dtype_info[x->dtype].align_rank, ry = dtype_info[y->dtype].align_rank;
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_write_name(const void *a, const void *b) {
    return strcmp(sort_write[*(const int *)a].name, sort_write[*(const int *)b].name);
}

static int check_write_args(const char *path, const StWriteTensor *ts, int n,
                            const char *const *kv, int *order) {
    for (int i = 0; i < n; i++) {
        const StWriteTensor *t = &ts[i];
        if (!t->name) return tt_err("%s: tensor %d has no name", path, i);
        if (strcmp(t->name, "__metadata__") == 0)
            return tt_err("%s: \"__metadata__\" cannot be a tensor name", path);
        if ((int)t->dtype < 0 || (int)t->dtype >= N_DTYPES)
            return tt_err("%s: tensor '%s': invalid dtype %d", path, t->name, (int)t->dtype);
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
            return tt_err("%s: tensor '%s': %d dimensions (0..%d allowed)", path, t->name, t->ndim,
                          ST_MAX_DIMS);
        size_t bytes = 0;
        if (shape_bytes(t->shape, t->ndim, t->dtype, &bytes) != 0)
            return tt_err("%s: tensor '%s': negative or overflowing shape", path, t->name);
        for (int d = 0; d < t->ndim; d++)
            if ((double)t->shape[d] > ST_MAX_JSON_INT)
                return tt_err("%s: tensor '%s': shape[%d] too large", path, t->name, d);
        if (bytes > 0 && !t->data) return tt_err("%s: tensor '%s': no data", path, t->name);
    }
    for (int i = 0; i < n; i++) order[i] = i;
    sort_write = ts;
    qsort(order, (size_t)n, sizeof *order, cmp_write_name);
    for (int k = 1; k < n; k++)
        if (strcmp(ts[order[k]].name, ts[order[k - 1]].name) == 0)
            return tt_err("%s: tensor '%s' given twice", path, ts[order[k]].name);
    for (int i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1]) return tt_err("%s: metadata key '%s' has no value", path, kv[i]);
        if (strcmp(kv[i], "format") == 0 && strcmp(kv[i + 1], "pt") != 0)
            return tt_err("%s: metadata \"format\" must be \"pt\" (Hugging Face requires it)", path);
        for (int j = 0; j < i; j += 2)
            if (strcmp(kv[i], kv[j]) == 0)
                return tt_err("%s: metadata key '%s' given twice", path, kv[i]);
    }
    qsort(order, (size_t)n, sizeof *order, cmp_write_order);
    return 0;
}

/* The header JSON, compact as serde_json writes it, padded with spaces to a multiple of 8
 * so that the data section, and with the alignment order every tensor, is aligned. */
static char *build_header(const char *path, const StWriteTensor *ts, int n, const int *order,
                          const char *const *kv, size_t *out_len) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    int ok = root && meta && cJSON_AddStringToObject(meta, "format", "pt");
    for (int i = 0; ok && kv && kv[i]; i += 2)
        if (strcmp(kv[i], "format") != 0) ok = cJSON_AddStringToObject(meta, kv[i], kv[i + 1]) != NULL;
    size_t offset = 0;
    for (int k = 0; ok && k < n; k++) {
        const StWriteTensor *t = &ts[order[k]];
        size_t bytes = 0;
        shape_bytes(t->shape, t->ndim, t->dtype, &bytes);
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_CreateArray() : NULL;
        cJSON *offs = e ? cJSON_CreateArray() : NULL;
        ok = e && shape && offs && cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype));
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        ok = ok && cJSON_AddItemToObject(e, "shape", shape);
        if (!ok) cJSON_Delete(shape);
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes))) &&
             cJSON_AddItemToObject(e, "data_offsets", offs);
        if (!ok) cJSON_Delete(offs);
        offset += bytes;
    }
    if ((double)offset > ST_MAX_JSON_INT) ok = 0;
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return tt_err("%s: cannot build the safetensors header (out of memory)", path), NULL;
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    char *h = realloc(json, padded + 1);
    if (!h) {
        free(json);
        return tt_err("%s: out of memory", path), NULL;
    }
    memset(h + len, ' ', padded - len);
    h[padded] = 0;
    *out_len = padded;
    return h;
}

int st_write(const char *path, const StWriteTensor *tensors, int n, const char *const *metadata_kv) {
    if (n < 0) return tt_err("%s: negative tensor count %d", path, n);
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!order) return tt_err("%s: out of memory", path);
    size_t header_len = 0;
    char *header = NULL;
    if (check_write_args(path, tensors, n, metadata_kv, order) != 0 ||
        !(header = build_header(path, tensors, n, order, metadata_kv, &header_len))) {
        free(order);
        return -1;
    }
    if (header_len > ST_MAX_HEADER_BYTES) {
        free(order);
        free(header);
        return tt_err("%s: header of %zu bytes exceeds the safetensors limit", path, header_len);
    }
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    AtomicFile *af = atomic_open(path);
    int rc = af ? 0 : -1;
    if (af) rc = atomic_write(af, len_le, 8);
    if (!rc) rc = atomic_write(af, header, header_len);
    for (int k = 0; !rc && k < n; k++) {
        const StWriteTensor *t = &tensors[order[k]];
        size_t bytes = 0;
        shape_bytes(t->shape, t->ndim, t->dtype, &bytes);
        if (bytes) rc = atomic_write(af, t->data, bytes);
    }
    if (af) {
        if (rc) atomic_abort(af);
        else rc = atomic_commit(af);
    }
    free(order);
    free(header);
    return rc;
}

/* ---- model directories ---- */

int st_check_model_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return tt_err("%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return tt_err("%s: not a directory", dir);
    size_t cap = strlen(dir) + 64;
    char *p = malloc(cap);
    if (!p) return tt_err("%s: out of memory", dir);
#define DIR_HAS(name) (snprintf(p, cap, "%s/%s", dir, name), file_exists(p))
    int rc;
    if (DIR_HAS("model.safetensors"))
        rc = 0;
    else if (DIR_HAS("model.safetensors.index.json"))
        rc = tt_err("%s: sharded checkpoints (model.safetensors.index.json) are not supported; "
                    "merge the shards into one model.safetensors", dir);
    else if (DIR_HAS("pytorch_model.bin") || DIR_HAS("pytorch_model.bin.index.json"))
        rc = tt_err("%s: pytorch_model.bin (pickle) is not supported; convert to model.safetensors",
                    dir);
    else
        rc = tt_err("%s: no model.safetensors in this directory", dir);
#undef DIR_HAS
    free(p);
    return rc;
}
