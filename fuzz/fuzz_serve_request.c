/* fuzz_serve_request.c: tutor serve's request bodies (POST /generate): parsed, checked, turned
 * into a decoding configuration and answered in the documented shapes, whatever the bytes. */
#include "fuzz_common.h"
#include "tutor/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ServeRequest r;
    char why[512];
    if (serve_request_parse((const char *)data, size, 64, &r, why, sizeof why)) return 0;
    GenConfig base, g;
    gen_config_default(&base);
    base.eos_id = 2, base.pad_id = 1, base.bos_id = 0, base.decoder_start_id = 2, base.max_new_tokens = 16;
    if (serve_request_config(&r, &base, &g, why, sizeof why) == 0) {
        int k = g.num_return_sequences;
        char **texts = calloc((size_t)r.n_inputs * (size_t)k, sizeof(char *));
        if (texts) {
            for (int i = 0; i < r.n_inputs * k; i++) texts[i] = r.inputs[i / k];
            char *j = serve_response_json(&r, texts, k);
            free(j);
            free(texts);
        }
    }
    serve_request_free(&r);
    return 0;
}
