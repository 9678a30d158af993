/* fuzz_safetensors.c: model.safetensors as a user may give it: st_open validates the header
 * and offsets; every tensor is then read as float32 where its dtype allows. */
#include "fuzz_common.h"
#include "tutor/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".safetensors");
    StFile f;
    if (st_open(&f, path)) return 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        size_t n = st_numel(t);
        if (t->dtype != ST_F32 || n > (1u << 20)) continue;
        float *buf = malloc(n * sizeof(float) + 1);
        if (buf) st_read_f32(&f, t, buf, n);
        free(buf);
    }
    st_metadata_get(&f, "format");
    st_close(&f);
    return 0;
}
