/* fuzz_ptfile.c: pseudo-target files as `tutor distill --pt` reads them (every line
 * validated: JSON, "source", a non-empty "targets" list of strings, UTF-8). */
#include "fuzz_common.h"
#include "tutor/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, "-pts.jsonl");
    PtFile f;
    if (!ptfile_load(&f, path, 0)) ptfile_free(&f);
    if (!ptfile_load(&f, path, 2)) ptfile_free(&f);
    return 0;
}
