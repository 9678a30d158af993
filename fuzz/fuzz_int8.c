/* fuzz_int8.c: int8 weight files (model.int8.safetensors, tutor quantize): metadata, every
 * tensor's name, dtype, shape and values (-128, scales) checked against the model before use. */
#include "fuzz_common.h"
#include "tutor/model.h"

static Model *g_model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_model) {
        /* a tiny mBART whose int8 file the seed corpus holds */
        ModelConfig c;
        model_config_default(&c, ARCH_MBART);
        c.vocab_size = 40, c.d_model = 8, c.max_positions = 16, c.enc_layers = c.dec_layers = 1;
        c.enc_heads = c.dec_heads = 2, c.enc_ffn = c.dec_ffn = 16;
        c.pad_id = 1, c.bos_id = 0, c.eos_id = 2, c.decoder_start_id = 2;
        g_model = model_new(&c, 1);
        if (!g_model) return 0;
    }
    const char *path = fuzz_file(data, size, "-model.int8.safetensors");
    if (model_q8_load(g_model, path) == 0) {
        /* every row's scale is positive and finite, every weight in [-127, 127] */
        const Q8Weights *w = &g_model->q8->lm_head;
        volatile int sink = 0;
        for (int n = 0; n < w->N; n++) sink += w->q[(size_t)n * w->Kp] + (w->scale[n] > 0);
        (void)sink;
    }
    model_q8_free(g_model);
    return 0;
}
