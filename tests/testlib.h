/* testlib.h: small helpers shared by tutor's Criterion tests: where fixtures live,
 * temporary directories, and array comparisons with useful messages. */
#ifndef TUTOR_TESTLIB_H
#define TUTOR_TESTLIB_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tutor/core.h"
#include "tutor/fileio.h"

/* Tests run from the repository root (make test does so). */
#define FIXTURES_HF "tests/fixtures/hf"

/* Makes a fresh temporary directory; the path is written to buf. */
static inline void test_tmpdir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/tutor-test-XXXXXX");
    cr_assert(mkdtemp(buf) != NULL, "mkdtemp failed");
}

static inline void test_rmtree(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(system(cmd) == 0);
}

/* Largest |a_i - b_i| and largest |b_i|. */
static inline void test_maxdiff(const float *a, const float *b, size_t n, double *max_diff,
                                double *max_ref) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > d || isnan(e)) d = isnan(e) ? INFINITY : e;
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    *max_diff = d;
    *max_ref = r;
}

/* The tutor program of the build under test (TUTOR_BUILD, set by scripts/run-tests.sh). */
static inline const char *tutor_bin(void) {
    static char path[512];
    const char *b = getenv("TUTOR_BUILD");
    snprintf(path, sizeof path, "%s/tutor", b ? b : "build/release");
    return path;
}

/* The step of a run directory's last checkpoint (checkpoint.json), -1 when there is none. */
static inline long test_checkpoint_step(const char *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint.json", out);
    size_t n;
    char *t = file_exists(path) ? read_file_text(path, &n) : NULL;
    long step = -1;
    if (t) {
        char *p = strstr(t, "\"step\":");
        if (p) step = atol(p + 7);
        free(t);
    }
    return step;
}

/* 1 when two files hold the same bytes. */
static inline int test_files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file_text(a, &na), *y = read_file_text(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

#define TEST_ASSERT_OK(expr) cr_assert((expr) == 0, "%s failed: %s", #expr, tt_errmsg())

#endif
