/* fuzz_generated.c: files of generated targets (pseudo-target files), as --resume reads
 * them: complete lines counted and checked, a torn last line cut. */
#include "fuzz_common.h"
#include "tutor/generate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, "-generated.jsonl");
    long n;
    gen_output_resume(path, &n);
    return 0;
}
