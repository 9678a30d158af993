/* test_torch_reference.c: checks the PyTorch reference (tests/reference/torch_ref.py) that
 * tutor's engine is compared against: it must reproduce Hugging Face's own outputs on the
 * fixtures, and its `parity` mode must write every tensor the engine's tests look up. */
#include "../testlib.h"

#include <cjson/cJSON.h>
#include <sys/wait.h>

#include "tutor/fileio.h"
#include "tutor/safetensors.h"

#define PYTHON "/usr/bin/python3"
#define TORCH_REF "tests/reference/torch_ref.py"

/* Runs cmd with its output captured in log_path; returns the exit status (-1: no exit). */
static int run_logged(const char *cmd, const char *log_path) {
    char full[4096];
    snprintf(full, sizeof full, "%s > '%s' 2>&1", cmd, log_path);
    int status = system(full);
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static char *slurp(const char *path, size_t *n) {
    char *text = read_file_text(path, n);
    cr_assert(text != NULL, "%s", tt_errmsg());
    return text;
}

Test(torch_reference, reproduces_hf_fixtures) {
    char dir[256], log_path[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(log_path, sizeof log_path, "%s/check.log", dir);
    int rc = run_logged(PYTHON " " TORCH_REF " check-fixtures --dir " FIXTURES_HF, log_path);
    char *log = slurp(log_path, NULL);
    cr_log_info("%s", log);
    cr_assert(rc == 0, "check-fixtures exited with %d:\n%s", rc, log);
    /* One passing line per model: a run that silently skipped a model must not pass. */
    cr_assert(strstr(log, "bart: ok") != NULL, "%s", log);
    cr_assert(strstr(log, "mbart: ok") != NULL, "%s", log);
    cr_assert(strstr(log, "gpt2: ok") != NULL, "%s", log);
    free(log);
    test_rmtree(dir);
}

/* The safetensors header of path, parsed here with cJSON so that this test does not rest
 * on the library's own reader. *data points at the data section inside *file. */
typedef struct {
    char *file; size_t file_bytes;
    cJSON *header;
    const unsigned char *data; size_t data_bytes;
} RefFile;

static void ref_open(RefFile *r, const char *path) {
    r->file = slurp(path, &r->file_bytes);
    cr_assert(r->file_bytes >= 8, "%s: too short", path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | (unsigned char)r->file[i];
    cr_assert(n % 8 == 0 && 8 + n <= r->file_bytes, "%s: header length %llu", path,
              (unsigned long long)n);
    r->header = cJSON_ParseWithLength(r->file + 8, (size_t)n);
    cr_assert(r->header != NULL, "%s: header is not JSON", path);
    r->data = (const unsigned char *)r->file + 8 + n;
    r->data_bytes = r->file_bytes - 8 - n;
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(r->header, "__metadata__");
    cJSON *format = cJSON_GetObjectItemCaseSensitive(meta, "format");
    cr_assert(cJSON_IsString(format) && strcmp(format->valuestring, "pt") == 0,
              "%s: no __metadata__.format = pt", path);
}

static void ref_close(RefFile *r) {
    cJSON_Delete(r->header);
    free(r->file);
}

/* The F32 tensor called name: checks its shape against want (ndim entries), returns its
 * data (copied, aligned) and element count. */
static float *ref_f32(const RefFile *r, const char *name, int ndim, const int64_t *want,
                      size_t *numel) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(r->header, name);
    cr_assert(t != NULL, "reference has no tensor %s", name);
    cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    cr_assert(cJSON_IsString(dtype) && strcmp(dtype->valuestring, "F32") == 0,
              "%s: dtype is not F32", name);
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    cr_assert(cJSON_GetArraySize(shape) == ndim, "%s: ndim %d, expected %d", name,
              cJSON_GetArraySize(shape), ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        int64_t dim = (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
        cr_assert(dim == want[i], "%s: dim %d is %lld, expected %lld", name, i,
                  (long long)dim, (long long)want[i]);
        n *= (size_t)dim;
    }
    cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    size_t begin = (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
    size_t end = (size_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
    cr_assert(begin <= end && end <= r->data_bytes && end - begin == n * sizeof(float),
              "%s: data offsets [%zu, %zu) do not fit", name, begin, end);
    float *out = malloc(n * sizeof(float) + 1);
    cr_assert(out != NULL);
    memcpy(out, r->data + begin, n * sizeof(float));
    *numel = n;
    return out;
}

static double json_number(const char *path, const char *key) {
    char *text = slurp(path, NULL);
    cJSON *root = cJSON_Parse(text);
    cr_assert(root != NULL, "%s: not JSON", path);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    cr_assert(cJSON_IsNumber(v), "%s: no number %s", path, key);
    double x = v->valuedouble;
    cJSON_Delete(root);
    free(text);
    return x;
}

/* Runs `parity` on a fixture model and its inputs, then checks the file it wrote: logits
 * and loss (the loss equal to HF's), and grad.NAME / update.NAME for every tensor of the
 * model's safetensors, no more, each with that tensor's shape; AdamW updates are bounded
 * by steps * lr (Adam's step is at most about lr per element, plus decay). */
static void check_parity(const char *model, int64_t batch, int64_t seq_len, int64_t vocab) {
    const int steps = 2;
    const double lr = 1e-3;
    char dir[256], out[300], log_path[300], cmd[2048], model_dir[256], path[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/ref.safetensors", dir);
    snprintf(log_path, sizeof log_path, "%s/parity.log", dir);
    snprintf(model_dir, sizeof model_dir, FIXTURES_HF "/%s", model);
    snprintf(cmd, sizeof cmd,
             PYTHON " " TORCH_REF " parity --model %s --batch %s/inputs.json --out '%s' "
             "--steps %d --lr %g",
             model_dir, model_dir, out, steps, lr);
    int rc = run_logged(cmd, log_path);
    char *log = slurp(log_path, NULL);
    cr_assert(rc == 0, "parity exited with %d:\n%s", rc, log);
    free(log);

    RefFile ref, weights;
    ref_open(&ref, out);
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
    ref_open(&weights, path);

    size_t n;
    int64_t logits_shape[3] = {batch, seq_len, vocab};
    float *logits = ref_f32(&ref, "logits", 3, logits_shape, &n);
    for (size_t i = 0; i < n; i++) cr_assert(isfinite(logits[i]), "logits[%zu] not finite", i);
    free(logits);
    int64_t one = 1;
    float *loss = ref_f32(&ref, "loss", 1, &one, &n);
    snprintf(path, sizeof path, "%s/expected.json", model_dir);
    double want_loss = json_number(path, "loss");
    cr_assert(fabs(loss[0] - want_loss) <= 1e-6 * fabs(want_loss), "loss %.9g, HF %.9g",
              loss[0], want_loss);
    free(loss);

    int n_params = 0;
    double max_update = 0;
    cJSON *t;
    cJSON_ArrayForEach(t, weights.header) {
        if (strcmp(t->string, "__metadata__") == 0) continue;
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        int ndim = cJSON_GetArraySize(shape);
        int64_t dims[8];
        cr_assert(ndim <= 8);
        for (int i = 0; i < ndim; i++) dims[i] = (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
        char name[512];
        snprintf(name, sizeof name, "grad.%s", t->string);
        float *grad = ref_f32(&ref, name, ndim, dims, &n);
        double grad_max = 0;
        for (size_t i = 0; i < n; i++) {
            cr_assert(isfinite(grad[i]), "%s[%zu] not finite", name, i);
            grad_max = fmax(grad_max, fabs(grad[i]));
        }
        free(grad);
        snprintf(name, sizeof name, "update.%s", t->string);
        float *update = ref_f32(&ref, name, ndim, dims, &n);
        double update_max = 0;
        for (size_t i = 0; i < n; i++) update_max = fmax(update_max, fabs(update[i]));
        free(update);
        /* A parameter with a clearly nonzero gradient must have moved. */
        if (grad_max > 1e-6) cr_assert(update_max > 0, "%s did not move", t->string);
        max_update = fmax(max_update, update_max);
        n_params++;
    }
    cr_assert(n_params > 10, "only %d parameters", n_params);
    cr_assert(max_update > 0.5 * lr, "largest update %g: the optimizer did not run", max_update);
    cr_assert(max_update <= steps * lr * 1.05, "largest update %g > steps * lr", max_update);
    /* logits + loss + grad and update per parameter: nothing duplicated (tied copies). */
    cr_assert_eq(cJSON_GetArraySize(ref.header), 1 + 2 + 2 * n_params,
                 "reference holds %d entries for %d parameters",
                 cJSON_GetArraySize(ref.header), n_params);

    /* tutor's own reader, which the engine's parity tests use, must take the file too. */
    StFile st;
    TEST_ASSERT_OK(st_open(&st, out));
    cr_assert_eq(st.n_tensors, 2 + 2 * n_params);
    const StTensor *t_logits = st_find(&st, "logits");
    cr_assert(t_logits != NULL && t_logits->dtype == ST_F32 && t_logits->ndim == 3);
    float *mine = ref_f32(&ref, "logits", 3, logits_shape, &n);
    cr_assert(st_numel(t_logits) == n);
    cr_assert(memcmp(st_data(&st, t_logits), mine, n * sizeof(float)) == 0,
              "st_data(logits) differs from the bytes in the file");
    free(mine);
    st_close(&st);

    ref_close(&weights);
    ref_close(&ref);
    test_rmtree(dir);
}

Test(torch_reference, parity_gpt2_writes_every_tensor) {
    check_parity("gpt2", 2, 8, 300);
}

Test(torch_reference, parity_bart_writes_every_tensor) {
    check_parity("bart", 2, 5, 300);
}
