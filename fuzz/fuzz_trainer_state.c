/* fuzz_trainer_state.c: the batch source state in a checkpoint's trainer_state.json, as
 * --resume restores it into a batcher of fixed lengths. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "tutor/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Batcher *b;
    if (!b) {
        int src[64], tgt[64];
        for (int i = 0; i < 64; i++) src[i] = 3 + i % 17, tgt[i] = 2 + i % 5;
        b = batcher_new(src, tgt, 64, 128, 8, 7);
        tt_log_set_level(0);
        if (!b) abort();
    }
    cJSON *o = cJSON_ParseWithLength((const char *)data, size);
    if (!o) return 0;
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(o, "source");
    if (!state) state = cJSON_GetObjectItemCaseSensitive(o, "batcher");
    if (!batcher_restore(b, state ? state : o)) {
        const size_t *idx;
        int count;
        for (int k = 0; k < 3; k++)
            if (batcher_next(b, &idx, &count) < 0) break;
    }
    cJSON_Delete(o);
    return 0;
}
