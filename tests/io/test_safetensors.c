/* test_safetensors.c: the safetensors reader and writer against files Hugging Face wrote,
 * against an independent Python reader (tests/io/safetensors_reader.py: numpy + torch),
 * and against one malformed file per rule of the format, which must fail with a message. */
#include "../testlib.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tutor/fileio.h"
#include "tutor/safetensors.h"

#define PYTHON "/usr/bin/python3"
#define READER "tests/io/safetensors_reader.py"

static char tmp[512];
static void setup(void) { test_tmpdir(tmp, sizeof tmp); }
static void teardown(void) { test_rmtree(tmp); }
TestSuite(safetensors, .init = setup, .fini = teardown);

static const char *fixtures[] = {"bart", "gpt2", "mbart"};

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmp, name); }

/* Runs the Python reader in the given mode; skips the test when numpy or torch is missing
 * (the reader exits with 77). */
static void run_python(const char *mode, const char *args) {
    char cmd[4000];
    snprintf(cmd, sizeof cmd, PYTHON " " READER " %s %s", mode, args);
    int rc = system(cmd);
    if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 77) cr_skip_test("no numpy/torch for " PYTHON);
    cr_assert(rc == 0, "python reader failed: %s", cmd);
}

/* The Python reader's summary of each file (a JSON array, one object per file). */
static cJSON *python_summary(const char *paths) {
    char out[600], args[3000];
    tmp_path(out, sizeof out, "summary.json");
    snprintf(args, sizeof args, "%s > '%s'", paths, out);
    run_python("summary", args);
    char *text = read_file_text(out, NULL);
    cr_assert(text, "%s", tt_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(cJSON_IsArray(j), "python output is not a JSON array");
    return j;
}

/* Little-endian 8-byte length, the header text as given (no padding), then data. */
static void write_raw(const char *path, const char *header, const void *data, size_t data_bytes) {
    size_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    FILE *fp = fopen(path, "wb");
    cr_assert(fp);
    cr_assert(fwrite(len, 1, 8, fp) == 8);
    cr_assert(fwrite(header, 1, n, fp) == n);
    if (data_bytes) cr_assert(fwrite(data, 1, data_bytes, fp) == data_bytes);
    cr_assert(fclose(fp) == 0);
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    cr_assert(fp);
    if (n) cr_assert(fwrite(b, 1, n, fp) == n);
    cr_assert(fclose(fp) == 0);
}

/* st_open must fail, leave f zeroed, and say "PATH: ... want ...". */
static void expect_open_error(const char *path, const char *want) {
    StFile f;
    tt_err_clear();
    int rc = st_open(&f, path);
    if (rc == 0) st_close(&f);
    cr_assert(rc == -1, "st_open accepted a bad file (%s)", want);
    cr_assert(f.map == NULL && f.tensors == NULL && f.path == NULL, "StFile not cleared on error");
    const char *msg = tt_errmsg();
    cr_assert(strncmp(msg, path, strlen(path)) == 0, "message does not name the file: %s", msg);
    cr_assert(strstr(msg, want) != NULL, "message '%s' does not contain '%s'", msg, want);
}

/* A valid header with one F32 [2, 3] tensor "w" over 24 bytes of data, built from parts so
 * that each malformed test changes only one thing. */
static void bad_file(const char *header, size_t data_bytes, const char *want) {
    char path[600];
    tmp_path(path, sizeof path, "bad.safetensors");
    unsigned char data[256] = {0};
    cr_assert(data_bytes <= sizeof data);
    write_raw(path, header, data, data_bytes);
    expect_open_error(path, want);
}

static void bytes_equal_files(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file_text(a, &na), *y = read_file_text(b, &nb);
    cr_assert(x && y, "%s", tt_errmsg());
    cr_assert(na == nb, "%s is %zu bytes, %s is %zu", a, na, b, nb);
    cr_assert(memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* ---- Hugging Face fixtures ---- */

Test(safetensors, reads_hf_fixtures_like_python) {
    char paths[1000] = "";
    for (size_t k = 0; k < sizeof fixtures / sizeof *fixtures; k++)
        snprintf(paths + strlen(paths), sizeof paths - strlen(paths),
                 " " FIXTURES_HF "/%s/model.safetensors", fixtures[k]);
    cJSON *all = python_summary(paths);
    cr_assert_eq(cJSON_GetArraySize(all), 3);
    for (size_t k = 0; k < sizeof fixtures / sizeof *fixtures; k++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES_HF "/%s/model.safetensors", fixtures[k]);
        StFile f;
        TEST_ASSERT_OK(st_open(&f, path));
        cJSON *py = cJSON_GetArrayItem(all, (int)k);
        cJSON *order = cJSON_GetObjectItem(py, "order"), *tensors = cJSON_GetObjectItem(py, "tensors");
        cr_assert_eq(f.n_tensors, cJSON_GetArraySize(order), "%s: tensor count", path);
        cr_assert(f.n_tensors > 30);
        cr_assert_str_eq(st_metadata_get(&f, "format"), "pt");
        int i = 0;
        for (cJSON *name = order->child; name; name = name->next, i++) {
            const StTensor *t = &f.tensors[i];
            cr_assert_str_eq(t->name, name->valuestring, "header order differs at %d", i);
            cr_assert(st_find(&f, t->name) == t);
            cJSON *pt = cJSON_GetObjectItem(tensors, t->name);
            cr_assert_eq(t->dtype, ST_F32);
            cr_assert_str_eq(st_dtype_name(t->dtype), cJSON_GetObjectItem(pt, "dtype")->valuestring);
            cJSON *shape = cJSON_GetObjectItem(pt, "shape");
            cr_assert_eq(t->ndim, cJSON_GetArraySize(shape), "%s ndim", t->name);
            for (int d = 0; d < t->ndim; d++)
                cr_assert_eq(t->shape[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
            cJSON *values = cJSON_GetObjectItem(pt, "values");
            size_t n = st_numel(t);
            cr_assert_eq(n, (size_t)cJSON_GetArraySize(values));
            const float *x = st_data(&f, t);
            cr_assert(((uintptr_t)x & 3) == 0, "F32 tensor %s not aligned", t->name);
            double sum = 0;
            size_t j = 0;
            for (cJSON *v = values->child; v; v = v->next, j++) {
                cr_assert_eq((float)v->valuedouble, x[j], "%s[%zu]: %.9g vs python %.9g", t->name,
                             j, x[j], v->valuedouble);
                sum += x[j];
            }
            double py_sum = cJSON_GetObjectItem(pt, "sum")->valuedouble;
            cr_assert(fabs(sum - py_sum) <= 1e-9 * (1 + fabs(py_sum)), "%s sum", t->name);
            /* st_read_f32 on F32 is a plain copy. */
            float *copy = malloc(n * sizeof *copy);
            TEST_ASSERT_OK(st_read_f32(&f, t, copy, n));
            cr_assert(memcmp(copy, x, n * sizeof *copy) == 0);
            free(copy);
        }
        cr_assert(st_find(&f, "no.such.tensor") == NULL);
        cr_assert(st_find(&f, "") == NULL);
        st_close(&f);
        st_close(&f); /* closing twice is harmless */
    }
    cJSON_Delete(all);
}

Test(safetensors, known_fixture_names_and_shapes) {
    StFile f;
    TEST_ASSERT_OK(st_open(&f, FIXTURES_HF "/gpt2/model.safetensors"));
    const StTensor *wte = st_find(&f, "transformer.wte.weight");
    cr_assert(wte, "transformer.wte.weight missing");
    cr_assert_eq(wte->ndim, 2);
    cr_assert_eq(wte->shape[0], 300); /* vocab 300, n_embd 48 (fixtures README) */
    cr_assert_eq(wte->shape[1], 48);
    const StTensor *attn = st_find(&f, "transformer.h.0.attn.c_attn.weight");
    cr_assert(attn && attn->shape[0] == 48 && attn->shape[1] == 144, "Conv1D weight is [in, out]");
    cr_assert(st_find(&f, "lm_head.weight") == NULL, "tied weights are not saved");
    st_close(&f);
    TEST_ASSERT_OK(st_open(&f, FIXTURES_HF "/bart/model.safetensors"));
    const StTensor *pos = st_find(&f, "model.decoder.embed_positions.weight");
    cr_assert(pos && pos->shape[0] == 42 && pos->shape[1] == 48, "positions are max_pos + 2 rows");
    const StTensor *bias = st_find(&f, "final_logits_bias");
    cr_assert(bias && bias->ndim == 2 && bias->shape[0] == 1 && bias->shape[1] == 300);
    cr_assert_eq(bias->begin, 0);
    cr_assert_eq(bias->end, 1200);
    st_close(&f);
}

/* The strongest check of the writer: Hugging Face's own files come out byte for byte. */
Test(safetensors, rewriting_hf_fixture_is_byte_identical) {
    for (size_t k = 0; k < sizeof fixtures / sizeof *fixtures; k++) {
        char path[256], out[600];
        snprintf(path, sizeof path, FIXTURES_HF "/%s/model.safetensors", fixtures[k]);
        tmp_path(out, sizeof out, "rewritten.safetensors");
        StFile f;
        TEST_ASSERT_OK(st_open(&f, path));
        StWriteTensor *w = calloc((size_t)f.n_tensors, sizeof *w);
        /* Reverse order in: the writer's order must not depend on the caller's. */
        for (int i = 0; i < f.n_tensors; i++) {
            const StTensor *t = &f.tensors[f.n_tensors - 1 - i];
            w[i].name = t->name;
            w[i].dtype = t->dtype;
            w[i].ndim = t->ndim;
            memcpy(w[i].shape, t->shape, sizeof t->shape);
            w[i].data = st_data(&f, t);
        }
        TEST_ASSERT_OK(st_write(out, w, f.n_tensors, NULL));
        bytes_equal_files(path, out);
        free(w);
        st_close(&f);
    }
}

/* ---- writer round trips ---- */

/* One tensor of every dtype, a scalar, an empty tensor; odd sizes so that a wrong
 * alignment order would show. */
static uint8_t u8v[5] = {0, 1, 127, 200, 255};
static int8_t i8v[3] = {-128, 0, 127};
static uint8_t boolv[3] = {1, 0, 1};
static int16_t i16v[3] = {-32768, 7, 32767};
static uint16_t f16v[3] = {0x3C00, 0xC100, 0x7BFF};   /* 1, -2.5, 65504 */
static uint16_t bf16v[3] = {0x3F80, 0xC020, 0x4049}; /* 1, -2.5, 3.140625 */
static int32_t i32v[3] = {INT32_MIN, -1, INT32_MAX};
static float f32v[2][3] = {{0.5f, -1.25f, 3.0e-38f}, {1e30f, -0.0f, 7.0f}};
static double f64v[3] = {1.0 / 3.0, -1e300, 2.5};
static int64_t i64v[2] = {INT64_MIN / 2, 9007199254740993LL};
static float scalar = 42.5f;

static int mixed_tensors(StWriteTensor *w) {
    int n = 0;
    w[n++] = (StWriteTensor){"z.u8", ST_U8, 1, {5}, u8v};
    w[n++] = (StWriteTensor){"a.i8", ST_I8, 1, {3}, i8v};
    w[n++] = (StWriteTensor){"mask", ST_BOOL, 2, {1, 3}, boolv};
    w[n++] = (StWriteTensor){"i16", ST_I16, 1, {3}, i16v};
    w[n++] = (StWriteTensor){"half", ST_F16, 1, {3}, f16v};
    w[n++] = (StWriteTensor){"brain", ST_BF16, 1, {3}, bf16v};
    w[n++] = (StWriteTensor){"i32", ST_I32, 1, {3}, i32v};
    w[n++] = (StWriteTensor){"weight", ST_F32, 2, {2, 3}, f32v};
    w[n++] = (StWriteTensor){"double", ST_F64, 3, {1, 3, 1}, f64v};
    w[n++] = (StWriteTensor){"long", ST_I64, 1, {2}, i64v};
    w[n++] = (StWriteTensor){"scalar", ST_F32, 0, {0}, &scalar};
    w[n++] = (StWriteTensor){"empty", ST_F32, 2, {0, 4}, NULL};
    return n;
}

static size_t write_bytes_of(const StWriteTensor *t) {
    size_t n = st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

Test(safetensors, round_trip_all_dtypes_bit_identical) {
    StWriteTensor w[16];
    int n = mixed_tensors(w);
    char a[600], b[600];
    tmp_path(a, sizeof a, "mixed.safetensors");
    tmp_path(b, sizeof b, "mixed2.safetensors");
    const char *meta[] = {"tutor_version", "0.1", "note", "quote \" and \\ and ü", NULL};
    TEST_ASSERT_OK(st_write(a, w, n, meta));
    StFile f;
    TEST_ASSERT_OK(st_open(&f, a));
    cr_assert_eq(f.n_tensors, n);
    cr_assert_str_eq(st_metadata_get(&f, "format"), "pt");
    cr_assert_str_eq(st_metadata_get(&f, "tutor_version"), "0.1");
    cr_assert_str_eq(st_metadata_get(&f, "note"), "quote \" and \\ and ü");
    cr_assert(st_metadata_get(&f, "absent") == NULL);
    for (int i = 0; i < n; i++) {
        const StTensor *t = st_find(&f, w[i].name);
        cr_assert(t, "%s missing", w[i].name);
        cr_assert_eq(t->dtype, w[i].dtype, "%s dtype", w[i].name);
        cr_assert_eq(t->ndim, w[i].ndim);
        for (int d = 0; d < t->ndim; d++) cr_assert_eq(t->shape[d], w[i].shape[d]);
        size_t bytes = write_bytes_of(&w[i]);
        cr_assert_eq(t->end - t->begin, bytes);
        if (bytes) cr_assert(memcmp(st_data(&f, t), w[i].data, bytes) == 0, "%s bytes", t->name);
        cr_assert(((uintptr_t)st_data(&f, t) % st_dtype_size(t->dtype)) == 0, "%s misaligned",
                  t->name);
    }
    /* Layout: falling alignment (I64 F64 F32 I32 BF16 F16 I16 I8 U8 BOOL), then name. */
    const char *expect_order[] = {"long", "double", "empty", "scalar", "weight", "i32", "brain",
                                  "half", "i16", "a.i8", "z.u8", "mask"};
    for (int i = 0; i < n; i++) cr_assert_str_eq(f.tensors[i].name, expect_order[i]);
    cr_assert(st_numel(st_find(&f, "scalar")) == 1);
    cr_assert(st_numel(st_find(&f, "empty")) == 0);

    /* Rewrite what was read: same bytes. */
    StWriteTensor r[16];
    for (int i = 0; i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        r[i] = (StWriteTensor){t->name, t->dtype, t->ndim, {0}, st_data(&f, t)};
        memcpy(r[i].shape, t->shape, sizeof t->shape);
    }
    TEST_ASSERT_OK(st_write(b, r, f.n_tensors, meta));
    bytes_equal_files(a, b);
    st_close(&f);
}

static double json_num(cJSON *values, int i) { return cJSON_GetArrayItem(values, i)->valuedouble; }

Test(safetensors, python_reads_what_tutor_writes) {
    StWriteTensor w[16];
    int n = mixed_tensors(w);
    char a[600];
    tmp_path(a, sizeof a, "mixed.safetensors");
    TEST_ASSERT_OK(st_write(a, w, n, NULL));
    cJSON *all = python_summary(a);
    cJSON *py = cJSON_GetArrayItem(all, 0);
    cJSON *tensors = cJSON_GetObjectItem(py, "tensors");
    cr_assert_eq(cJSON_GetArraySize(tensors), n);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(py, "metadata"), "format")->valuestring,
                     "pt");
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_GetObjectItem(tensors, w[i].name);
        cr_assert(t, "python does not see %s", w[i].name);
        cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(t, "aligned")), "%s misaligned", w[i].name);
        cr_assert_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring, st_dtype_name(w[i].dtype));
        cJSON *shape = cJSON_GetObjectItem(t, "shape");
        cr_assert_eq(cJSON_GetArraySize(shape), w[i].ndim, "%s ndim", w[i].name);
        for (int d = 0; d < w[i].ndim; d++) cr_assert_eq(json_num(shape, d), (double)w[i].shape[d]);
    }
    cJSON *v;
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "weight"), "values");
    for (int j = 0; j < 6; j++) cr_assert_eq((float)json_num(v, j), f32v[j / 3][j % 3]);
    cr_assert(signbit(json_num(v, 4)), "-0.0 keeps its sign");
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "double"), "values");
    for (int j = 0; j < 3; j++) cr_assert_eq(json_num(v, j), f64v[j]);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "half"), "values");
    cr_assert(json_num(v, 0) == 1.0 && json_num(v, 1) == -2.5 && json_num(v, 2) == 65504.0);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "brain"), "values");
    cr_assert(json_num(v, 0) == 1.0 && json_num(v, 1) == -2.5 && json_num(v, 2) == 3.140625);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "i32"), "values");
    for (int j = 0; j < 3; j++) cr_assert_eq(json_num(v, j), (double)i32v[j]);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "i16"), "values");
    for (int j = 0; j < 3; j++) cr_assert_eq(json_num(v, j), (double)i16v[j]);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "a.i8"), "values");
    for (int j = 0; j < 3; j++) cr_assert_eq(json_num(v, j), (double)i8v[j]);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "z.u8"), "values");
    for (int j = 0; j < 5; j++) cr_assert_eq(json_num(v, j), (double)u8v[j]);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "mask"), "values");
    cr_assert(cJSON_IsTrue(cJSON_GetArrayItem(v, 0)) && cJSON_IsFalse(cJSON_GetArrayItem(v, 1)));
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "long"), "values");
    cr_assert_eq(json_num(v, 0), (double)i64v[0]); /* exact in a double */
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "scalar"), "values");
    cr_assert_eq(json_num(v, 0), 42.5);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "empty"), "values")), 0);
    cJSON_Delete(all);
}

Test(safetensors, empty_file_round_trips) {
    char a[600];
    tmp_path(a, sizeof a, "none.safetensors");
    TEST_ASSERT_OK(st_write(a, NULL, 0, NULL));
    StFile f;
    TEST_ASSERT_OK(st_open(&f, a));
    cr_assert_eq(f.n_tensors, 0);
    cr_assert_eq(f.data_bytes, 0);
    cr_assert(st_find(&f, "x") == NULL);
    cr_assert_str_eq(st_metadata_get(&f, "format"), "pt");
    st_close(&f);
    /* 8-byte length, then {"__metadata__":{"format":"pt"}}: 32 bytes, no padding needed. */
    size_t n;
    char *b = read_file_text(a, &n);
    cr_assert_eq(n, 8 + 32);
    cr_assert_eq((unsigned char)b[0], 32);
    cr_assert(memcmp(b + 8, "{\"__metadata__\":{\"format\":\"pt\"}}", 32) == 0);
    free(b);
    /* 39 bytes of JSON: padded with one space to 40. */
    const char *kv[] = {"k", "", NULL};
    TEST_ASSERT_OK(st_write(a, NULL, 0, kv));
    b = read_file_text(a, &n);
    cr_assert_eq(n, 8 + 40);
    cr_assert_eq((unsigned char)b[0], 40);
    cr_assert(memcmp(b + 8, "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"\"}}       ", 40) == 0,
              "%.40s", b + 8);
    free(b);
}

Test(safetensors, writer_refuses_bad_arguments) {
    char a[600];
    tmp_path(a, sizeof a, "bad.safetensors");
    float x[2] = {1, 2};
    StWriteTensor dup[2] = {{"w", ST_F32, 1, {2}, x}, {"w", ST_F32, 1, {2}, x}};
    cr_assert_eq(st_write(a, dup, 2, NULL), -1);
    cr_assert(strstr(tt_errmsg(), "'w' given twice"), "%s", tt_errmsg());
    cr_assert(!file_exists(a), "a refused write leaves no file");
    StWriteTensor neg = {"w", ST_F32, 1, {-2}, x};
    cr_assert_eq(st_write(a, &neg, 1, NULL), -1);
    StWriteTensor meta_name = {"__metadata__", ST_F32, 1, {2}, x};
    cr_assert_eq(st_write(a, &meta_name, 1, NULL), -1);
    StWriteTensor nodata = {"w", ST_F32, 1, {2}, NULL};
    cr_assert_eq(st_write(a, &nodata, 1, NULL), -1);
    StWriteTensor ok = {"w", ST_F32, 1, {2}, x};
    const char *bad_format[] = {"format", "tf", NULL};
    cr_assert_eq(st_write(a, &ok, 1, bad_format), -1);
    cr_assert(strstr(tt_errmsg(), "format"), "%s", tt_errmsg());
    const char *odd[] = {"key", NULL};
    cr_assert_eq(st_write(a, &ok, 1, odd), -1);
    cr_assert(!file_exists(a));
    const char *pt[] = {"format", "pt", NULL};
    TEST_ASSERT_OK(st_write(a, &ok, 1, pt));
    StFile f;
    TEST_ASSERT_OK(st_open(&f, a));
    cr_assert_eq(cJSON_GetArraySize(f.metadata), 1, "format written once");
    st_close(&f);
    char missing_dir[700];
    snprintf(missing_dir, sizeof missing_dir, "%s/no/such/dir/m.safetensors", tmp);
    cr_assert_eq(st_write(missing_dir, &ok, 1, NULL), -1);
    cr_assert(strstr(tt_errmsg(), missing_dir), "%s", tt_errmsg());
}

Test(safetensors, read_f32_converts_half_bf16_double) {
    StWriteTensor w[16];
    int n = mixed_tensors(w);
    char a[600];
    tmp_path(a, sizeof a, "mixed.safetensors");
    TEST_ASSERT_OK(st_write(a, w, n, NULL));
    StFile f;
    TEST_ASSERT_OK(st_open(&f, a));
    float out[3];
    TEST_ASSERT_OK(st_read_f32(&f, st_find(&f, "half"), out, 3));
    cr_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == 65504.0f);
    TEST_ASSERT_OK(st_read_f32(&f, st_find(&f, "brain"), out, 3));
    cr_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == 3.140625f);
    TEST_ASSERT_OK(st_read_f32(&f, st_find(&f, "double"), out, 3));
    cr_assert(out[0] == (float)(1.0 / 3.0) && isinf(out[1]) && out[1] < 0 && out[2] == 2.5f);
    cr_assert_eq(st_read_f32(&f, st_find(&f, "i32"), out, 3), -1);
    cr_assert(strstr(tt_errmsg(), "I32"), "%s", tt_errmsg());
    cr_assert_eq(st_read_f32(&f, st_find(&f, "half"), out, 2), -1, "size mismatch refused");
    st_close(&f);
}

/* Every one of the 65536 half-precision values, against numpy's conversion. */
Test(safetensors, half_conversion_matches_numpy_for_all_values) {
    char table[600], a[600], args[700];
    tmp_path(table, sizeof table, "f16.bin");
    tmp_path(a, sizeof a, "f16.safetensors");
    snprintf(args, sizeof args, "'%s'", table);
    run_python("f16table", args);
    size_t nb;
    char *ref = read_file_text(table, &nb);
    cr_assert(ref && nb == 65536 * 4);
    uint16_t *bits = malloc(65536 * sizeof *bits);
    for (int i = 0; i < 65536; i++) bits[i] = (uint16_t)i;
    StWriteTensor w = {"all", ST_F16, 1, {65536}, bits};
    TEST_ASSERT_OK(st_write(a, &w, 1, NULL));
    StFile f;
    TEST_ASSERT_OK(st_open(&f, a));
    float *out = malloc(65536 * sizeof *out);
    TEST_ASSERT_OK(st_read_f32(&f, &f.tensors[0], out, 65536));
    for (int i = 0; i < 65536; i++) {
        float r;
        memcpy(&r, ref + 4 * i, 4);
        if (isnan(r)) cr_assert(isnan(out[i]), "half 0x%04x: NaN expected", i);
        else cr_assert(memcmp(&r, &out[i], 4) == 0, "half 0x%04x: %g vs numpy %g", i, out[i], r);
    }
    st_close(&f);
    free(out);
    free(bits);
    free(ref);
}

/* ---- malformed files: one per rule ---- */

#define GOOD_W "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"

Test(safetensors, valid_base_case_opens) {
    /* The malformed cases below differ from this one in one place each. */
    char path[600];
    tmp_path(path, sizeof path, "good.safetensors");
    unsigned char data[24] = {0};
    write_raw(path, "{" GOOD_W "}", data, 24);
    StFile f;
    TEST_ASSERT_OK(st_open(&f, path));
    cr_assert(f.metadata == NULL, "no __metadata__ is allowed on read");
    cr_assert(st_metadata_get(&f, "format") == NULL);
    st_close(&f);
}

Test(safetensors, bad_missing_file) {
    char path[600];
    tmp_path(path, sizeof path, "absent.safetensors");
    expect_open_error(path, "No such file");
}

Test(safetensors, bad_directory_or_fifo) {
    expect_open_error(tmp, "not a regular file");
    char path[600];
    tmp_path(path, sizeof path, "fifo");
    cr_assert(mkfifo(path, 0600) == 0);
    expect_open_error(path, "not a regular file"); /* and does not block */
}

Test(safetensors, bad_empty_file) {
    char path[600];
    tmp_path(path, sizeof path, "e.safetensors");
    write_bytes(path, "", 0);
    expect_open_error(path, "empty file");
}

Test(safetensors, bad_shorter_than_8_bytes) {
    char path[600];
    tmp_path(path, sizeof path, "s.safetensors");
    write_bytes(path, "\x02\0\0\0\0", 5);
    expect_open_error(path, "too short");
}

Test(safetensors, bad_header_longer_than_file) {
    char path[600];
    tmp_path(path, sizeof path, "h.safetensors");
    unsigned char b[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, b, sizeof b);
    expect_open_error(path, "larger than the rest of the file");
}

Test(safetensors, bad_header_over_100mb_bound) {
    char path[600];
    tmp_path(path, sizeof path, "big.safetensors");
    uint64_t n = 200000000;
    unsigned char b[16] = {0};
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    write_bytes(path, b, sizeof b);
    expect_open_error(path, "exceeds the safetensors limit");
    /* 2^64 - 1: no overflow in the bounds check. */
    memset(b, 0xff, 8);
    write_bytes(path, b, sizeof b);
    expect_open_error(path, "exceeds the safetensors limit");
}

Test(safetensors, bad_truncated_hf_file) {
    size_t n;
    char *b = read_file_text(FIXTURES_HF "/gpt2/model.safetensors", &n);
    cr_assert(b);
    char path[600];
    tmp_path(path, sizeof path, "trunc.safetensors");
    write_bytes(path, b, n - 4);
    expect_open_error(path, "run past the end of the data section");
    write_bytes(path, b, 200); /* cut inside the header */
    expect_open_error(path, "larger than the rest of the file");
    free(b);
}

Test(safetensors, bad_json) { bad_file("{\"w\":{\"dtype\":\"F32\",", 24, "not valid JSON"); }

Test(safetensors, bad_json_trailing_garbage) { bad_file("{" GOOD_W "}  x", 24, "not valid JSON"); }

Test(safetensors, bad_not_utf8) {
    bad_file("{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
             "not valid UTF-8");
}

Test(safetensors, bad_nul_in_header) {
    char path[600];
    tmp_path(path, sizeof path, "nul.safetensors");
    const char h[] = "{" GOOD_W "}\0\0\0";
    size_t hn = sizeof h - 1;
    unsigned char b[8 + sizeof h + 24] = {0};
    b[0] = (unsigned char)hn;
    memcpy(b + 8, h, hn);
    write_bytes(path, b, 8 + hn + 24);
    expect_open_error(path, "not valid UTF-8");
}

Test(safetensors, bad_header_not_object) {
    bad_file("[1, 2, 3]", 0, "not a JSON object");
}

Test(safetensors, bad_entry_not_object) { bad_file("{\"w\": 3}", 0, "'w': header entry is not"); }

Test(safetensors, bad_missing_dtype) {
    bad_file("{\"w\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, "'w': missing \"dtype\"");
}

Test(safetensors, bad_missing_shape) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,24]}}", 24, "'w': missing \"shape\"");
}

Test(safetensors, bad_missing_offsets) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3]}}", 24, "'w': missing \"data_offsets\"");
}

Test(safetensors, bad_dtype_type) {
    bad_file("{\"w\":{\"dtype\":4,\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
             "\"dtype\" is not a string");
}

Test(safetensors, bad_unknown_dtype) {
    bad_file("{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
             "unknown or unsupported dtype \"Q4_K\"");
    bad_file("{\"w\":{\"dtype\":\"f32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
             "unknown or unsupported dtype");
}

Test(safetensors, bad_shape_not_array) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":6,\"data_offsets\":[0,24]}}", 24,
             "\"shape\" is not an array");
}

Test(safetensors, bad_shape_element_type) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,\"3\"],\"data_offsets\":[0,24]}}", 24,
             "shape[1] is not a non-negative integer");
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3.5],\"data_offsets\":[0,24]}}", 24,
             "shape[1] is not a non-negative integer");
}

Test(safetensors, bad_negative_shape) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-3],\"data_offsets\":[0,24]}}", 24,
             "shape[0] is not a non-negative integer");
}

Test(safetensors, bad_absurd_shape) {
    /* Each dimension fits a double exactly; the product overflows 64 bits. */
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
             "\"data_offsets\":[0,24]}}", 24, "too large");
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,24]}}", 24,
             "shape[0] is not a non-negative integer");
}

Test(safetensors, bad_too_many_dims) {
    bad_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
             "9 dimensions");
}

Test(safetensors, bad_offsets_wrong_type) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24,48]}}", 24,
             "not an array of two integers");
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":{\"a\":0}}}", 24,
             "not an array of two integers");
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,-24]}}", 24,
             "not non-negative integers");
}

Test(safetensors, bad_offsets_not_ordered) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,0]}}", 24,
             "are not in order");
}

Test(safetensors, bad_offsets_past_data) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]}}", 24,
             "run past the end of the data section");
}

Test(safetensors, bad_size_mismatch) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,24]}}", 24,
             "hold 24 bytes but dtype F32 and shape [2, 2] need 16");
}

Test(safetensors, bad_overlap) {
    bad_file("{" GOOD_W ",\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24,
             "overlap tensor");
}

Test(safetensors, bad_hole) {
    /* The Rust library requires offsets to cover the buffer contiguously from 0. */
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24,
             "leave a hole of 8 bytes");
    bad_file("{\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
             "leave a hole of 8 bytes");
}

Test(safetensors, bad_trailing_bytes) {
    bad_file("{" GOOD_W "}", 32, "cover 24 bytes of the 32-byte data section");
}

Test(safetensors, bad_duplicate_tensor) {
    bad_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
             "\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
             "'w' appears twice");
}

Test(safetensors, bad_metadata) {
    bad_file("{\"__metadata__\":[1]," GOOD_W "}", 24, "\"__metadata__\" is not a JSON object");
    bad_file("{\"__metadata__\":{\"format\":1}," GOOD_W "}", 24, "value for \"format\" is not a string");
    bad_file("{\"__metadata__\":{},\"__metadata__\":{}," GOOD_W "}", 24, "appears twice");
}

Test(safetensors, bad_pickle_file) {
    char path[600];
    tmp_path(path, sizeof path, "pytorch_model.bin");
    /* protocol-2 pickle opening, as torch.save(_use_new_zipfile_serialization=False) writes */
    const unsigned char pk[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8};
    write_bytes(path, pk, sizeof pk);
    expect_open_error(path, "pickle");
    write_bytes(path, pk, 3);
    expect_open_error(path, "pickle");
}

Test(safetensors, bad_torch_zip_file) {
    char path[600];
    tmp_path(path, sizeof path, "pytorch_model.bin");
    const char zip[] = "PK\x03\x04\x00\x00\x08\x08\x00\x00archive/data.pkl";
    write_bytes(path, zip, sizeof zip - 1);
    expect_open_error(path, "convert to model.safetensors");
}

Test(safetensors, bad_real_torch_save_file) {
    char path[600], args[700];
    tmp_path(path, sizeof path, "pytorch_model.bin");
    snprintf(args, sizeof args, "'%s'", path);
    run_python("torchsave", args);
    expect_open_error(path, "not supported: convert to model.safetensors");
}

Test(safetensors, bad_index_json_given_as_model) {
    char path[600];
    tmp_path(path, sizeof path, "model.safetensors.index.json");
    const char *idx = "{\n  \"metadata\": {\"total_size\": 24},\n  \"weight_map\": {\"w\": "
                      "\"model-00001-of-00002.safetensors\"}\n}\n";
    write_bytes(path, idx, strlen(idx));
    expect_open_error(path, "sharded checkpoint");
}

/* Every truncation and many single-byte corruptions of a valid file either open or fail
 * with a message; under ASan this also shows that no byte outside the file is read. */
Test(safetensors, corrupted_files_never_crash) {
    StWriteTensor w[16];
    int n = mixed_tensors(w);
    char a[600], c[600];
    tmp_path(a, sizeof a, "mixed.safetensors");
    tmp_path(c, sizeof c, "corrupt.safetensors");
    TEST_ASSERT_OK(st_write(a, w, n, NULL));
    size_t len;
    unsigned char *orig = (unsigned char *)read_file_text(a, &len);
    unsigned char *b = malloc(len);
    int opened = 0, refused = 0;
    for (size_t cut = 0; cut < len; cut++) {
        write_bytes(c, orig, cut);
        StFile f;
        cr_assert_eq(st_open(&f, c), -1, "file cut to %zu of %zu bytes accepted", cut, len);
        cr_assert(strstr(tt_errmsg(), c) == tt_errmsg());
    }
    Rng rng;
    rng_seed(&rng, 7);
    const unsigned char picks[] = {0, 1, '"', '[', ']', '{', '}', ',', ':', '-', '9', '0', 0xff, 0x80};
    for (int trial = 0; trial < 1000; trial++) {
        memcpy(b, orig, len);
        size_t pos = rng_below(&rng, (uint32_t)len);
        b[pos] = picks[rng_below(&rng, sizeof picks)];
        write_bytes(c, b, len);
        StFile f;
        tt_err_clear();
        if (st_open(&f, c) == 0) {
            for (int i = 0; i < f.n_tensors; i++) {
                const StTensor *t = &f.tensors[i];
                cr_assert(t->begin <= t->end && t->end <= f.data_bytes);
                volatile unsigned char sink = 0;
                const unsigned char *p = st_data(&f, t);
                for (size_t j = 0; j < t->end - t->begin; j++) sink ^= p[j];
                (void)sink;
            }
            st_close(&f);
            opened++;
        } else {
            cr_assert(strlen(tt_errmsg()) > strlen(c), "failure without a message");
            refused++;
        }
    }
    cr_assert(opened > 0 && refused > 0, "opened %d refused %d", opened, refused);
    free(b);
    free(orig);
}

/* ---- model directories ---- */

Test(safetensors, check_model_dir) {
    TEST_ASSERT_OK(st_check_model_dir(FIXTURES_HF "/bart"));
    char d[600], p[700];
    tmp_path(d, sizeof d, "model");
    TEST_ASSERT_OK(make_dirs(d));
    cr_assert_eq(st_check_model_dir(d), -1);
    cr_assert(strstr(tt_errmsg(), "no model.safetensors"), "%s", tt_errmsg());
    snprintf(p, sizeof p, "%s/pytorch_model.bin", d);
    write_bytes(p, "\x80\x02", 2);
    cr_assert_eq(st_check_model_dir(d), -1);
    char want[800];
    snprintf(want, sizeof want, "%s: pytorch_model.bin (pickle) is not supported; convert to "
             "model.safetensors", d);
    cr_assert_str_eq(tt_errmsg(), want);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    write_bytes(p, "{}", 2);
    cr_assert_eq(st_check_model_dir(d), -1);
    snprintf(want, sizeof want, "%s: sharded checkpoints", d);
    cr_assert(strncmp(tt_errmsg(), want, strlen(want)) == 0, "%s", tt_errmsg());
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    TEST_ASSERT_OK(st_write(p, NULL, 0, NULL));
    TEST_ASSERT_OK(st_check_model_dir(d));
    snprintf(p, sizeof p, "%s/absent", tmp);
    cr_assert_eq(st_check_model_dir(p), -1);
    cr_assert(strstr(tt_errmsg(), "No such file"), "%s", tt_errmsg());
}

Test(safetensors, dtype_names_round_trip) {
    for (int d = ST_F32; d <= ST_BOOL; d++) {
        StDtype back;
        cr_assert_eq(st_dtype_parse(st_dtype_name((StDtype)d), &back), 0);
        cr_assert_eq((int)back, d);
        cr_assert(st_dtype_size((StDtype)d) >= 1);
    }
    cr_assert_str_eq(st_dtype_name((StDtype)99), "?");
    StDtype x;
    cr_assert_eq(st_dtype_parse("F8_E4M3", &x), -1);
    cr_assert_eq(st_dtype_size(ST_BF16), 2);
    cr_assert_eq(st_dtype_size(ST_I64), 8);
}
