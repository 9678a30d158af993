/* fuzz_gen_config.c: generation_config.json: read over a model's defaults and checked. */
#include "fuzz_common.h"
#include "tutor/generate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, "-generation_config.json");
    ModelConfig c;
    model_config_default(&c, ARCH_BART);
    GenConfig g;
    gen_config_from_model(&g, &c);
    if (gen_config_load(&g, path)) return 0;
    if (gen_config_check(&g)) return 0;
    gen_max_new_tokens(&g, &c, 10);
    return 0;
}
