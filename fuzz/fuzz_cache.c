/* fuzz_cache.c: teacher caches (tutor distill --teacher-cache): header, sizes, offsets and
 * token ids validated before anything is read through the map. */
#include "fuzz_common.h"
#include "tutor/distill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, "-cache.bin");
    TeacherCache *c = teacher_cache_open(path, NULL, NULL);
    if (c) {
        /* touch every row through the accessors */
        volatile float sink = 0;
        for (uint64_t p = 0; p < teacher_cache_pairs(c); p++) {
            uint64_t first;
            int n;
            teacher_cache_pair(c, p, &first, &n);
            for (int j = 0; j < n; j++) {
                const float *r = teacher_cache_row(c, first + (uint64_t)j);
                sink += r[0] + r[teacher_cache_width(c) - 1];
                const int32_t *ids = teacher_cache_ids(c, first + (uint64_t)j);
                if (ids) sink += (float)ids[0];
            }
        }
        (void)sink;
        teacher_cache_free(c);
    }
    return 0;
}
