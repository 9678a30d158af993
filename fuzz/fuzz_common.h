/* fuzz_common.h: what the libFuzzer harnesses share: the input written to a file of its
 * own (the loaders read paths, as users give them), and quiet logging. */
#ifndef TUTOR_FUZZ_COMMON_H
#define TUTOR_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tutor/core.h"

/* Writes data to a per-process file under /dev/shm (or /tmp) named with suffix; returns
 * its path (static storage). */
static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
    static char path[256];
    if (!path[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(path, sizeof path, "%s/tutor-fuzz-%ld%s", dir, (long)getpid(), suffix);
        tt_log_set_level(0);
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}

#endif
