/* fuzz_jsonl.c: JSONL data sets (pairs, unlabeled inputs) read strictly and with
 * --skip-bad and --replace-invalid. */
#include "fuzz_common.h"
#include "tutor/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".jsonl");
    for (int mode = 0; mode < 3; mode++) {
        JsonlOptions o;
        jsonl_options_default(&o);
        o.require_target = mode == 0;
        o.skip_bad = mode == 1;
        o.replace_invalid_utf8 = mode == 2;
        Dataset ds;
        if (!dataset_load_jsonl(&ds, path, &o, 0)) dataset_free(&ds);
    }
    return 0;
}
