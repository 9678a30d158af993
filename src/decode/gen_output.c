/* gen_output.c: the pseudo-target file's resume point. Results are written one JSON line per
 * input and flushed, so a killed run leaves complete lines and perhaps one torn line; resuming
 * keeps the complete ones, cuts the torn one and skips that many inputs. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tutor/data.h"
#include "tutor/generate.h"

int gen_output_resume(const char *path, long *n_complete) {
    *n_complete = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        return tt_err("%s: %s", path, strerror(errno));
    }
    long lines = 0, end_of_last = 0, pos = 0;
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++)
            if (buf[i] == '\n') {
                lines++;
                end_of_last = pos + (long)i + 1;
            }
        pos += (long)got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return tt_err("%s: read error", path);
    /* every complete line must be one this command wrote */
    f = fopen(path, "rb");
    if (!f) return tt_err("%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long k = 0;
    long off = 0;
    int rc = 0;
    while (off < end_of_last && (len = getline(&line, &cap, f)) > 0) {
        k++;
        off += len;
        if (!pt_line_is_generated(line, (size_t)len)) {
            rc = tt_err("%s:%ld: not a line of generated targets (JSON with \"targets\"); cannot resume after it",
                        path, k);
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc) return -1;
    if (pos != end_of_last && truncate(path, end_of_last))
        return tt_err("%s: cannot cut the partial last line: %s", path, strerror(errno));
    *n_complete = lines;
    return 0;
}
