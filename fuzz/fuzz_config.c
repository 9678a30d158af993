/* fuzz_config.c: config.json (HF's BART, mBART and GPT-2 keys): read, checked against the
 * size limits, and written back. */
#include "fuzz_common.h"
#include "tutor/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, "-config.json");
    ModelConfig c;
    if (model_config_load(&c, path)) return 0;
    char out[300];
    snprintf(out, sizeof out, "%s.out", path);
    model_config_save(&c, out);
    unlink(out);
    return 0;
}
