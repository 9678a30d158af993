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

#define TEST_ASSERT_OK(expr) cr_assert((expr) == 0, "%s failed: %s", #expr, tt_errmsg())

#endif
