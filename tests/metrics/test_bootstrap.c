/* test_bootstrap.c: paired bootstrap resampling: determinism for a seed, the full-sample
 * delta, intervals that contain it, and degenerate cases whose answer is known exactly. */
#include "../testlib.h"
#include "tutor/metrics.h"

/* B = A + 0.1 on every example: every resample's delta of means is exactly 0.1 (up to
 * rounding), so the interval collapses onto it and B is better in every resample. */
Test(bootstrap, constant_shift) {
    double a[50], b[50];
    for (int i = 0; i < 50; i++) {
        a[i] = (i * 37 % 11) / 10.0;
        b[i] = a[i] + 0.1;
    }
    BootstrapResult r;
    TEST_ASSERT_OK(bootstrap_paired_mean(a, b, 50, 0, 7, &r));
    cr_expect_eq(r.n_resamples, 1000);
    cr_expect_float_eq(r.delta, 0.1, 1e-12);
    cr_expect_float_eq(r.lo, 0.1, 1e-12);
    cr_expect_float_eq(r.hi, 0.1, 1e-12);
    cr_expect_float_eq(r.share_b_better, 1.0, 1e-12);
}

/* Identical systems: every delta is 0, B better in no resample. */
Test(bootstrap, identical_systems) {
    double a[5] = {0.1, 0.5, 0.2, 0.9, 0.3};
    BootstrapResult r;
    TEST_ASSERT_OK(bootstrap_paired_mean(a, a, 5, 200, 1, &r));
    cr_expect_eq(r.delta, 0.0);
    cr_expect_eq(r.lo, 0.0);
    cr_expect_eq(r.hi, 0.0);
    cr_expect_eq(r.share_b_better, 0.0);
}

/* A noisy difference: the same seed gives the same interval, another seed another one;
 * the interval is ordered and contains the full-sample delta. */
Test(bootstrap, seeded_and_ordered) {
    double a[40], b[40];
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < 40; i++) {
        a[i] = rng_uniform(&rng);
        b[i] = a[i] + 0.05 + 0.3 * (rng_uniform(&rng) - 0.5);
    }
    BootstrapResult r1, r2, r3;
    TEST_ASSERT_OK(bootstrap_paired_mean(a, b, 40, 500, 11, &r1));
    TEST_ASSERT_OK(bootstrap_paired_mean(a, b, 40, 500, 11, &r2));
    TEST_ASSERT_OK(bootstrap_paired_mean(a, b, 40, 500, 12, &r3));
    cr_expect_eq(r1.lo, r2.lo);
    cr_expect_eq(r1.hi, r2.hi);
    cr_expect(r1.lo != r3.lo || r1.hi != r3.hi);
    cr_expect(r1.lo < r1.delta && r1.delta < r1.hi, "%g < %g < %g", r1.lo, r1.delta, r1.hi);
    cr_expect_eq(r1.seed, 11);
}

/* BLEU from resampled statistics: system B copies the references (BLEU 100), A shares
 * nothing with them (0). Every resample gives delta 100. */
Test(bootstrap, bleu_statistics) {
    const char *refs_text[] = {"the cat sat on the mat today", "a dog barked at the moon loudly",
                               "we went home after the long game"};
    const char *a_text[] = {"x y z w v u t", "p q r s o n m", "k j i h g f e"};
    const char *const *refs[] = {refs_text};
    BleuOptions opt;
    bleu_options_default(&opt);
    BleuStats a[3], b[3];
    TEST_ASSERT_OK(bleu_corpus_stats(a_text, refs, 1, 3, &opt, a, NULL));
    TEST_ASSERT_OK(bleu_corpus_stats(refs_text, refs, 1, 3, &opt, b, NULL));
    BootstrapResult r;
    TEST_ASSERT_OK(bootstrap_paired_bleu(a, b, 3, &opt, 100, 5, &r));
    cr_expect_float_eq(r.delta, 100.0, 1e-9);
    cr_expect_float_eq(r.lo, 100.0, 1e-9);
    cr_expect_float_eq(r.hi, 100.0, 1e-9);
    ChrfOptions copt;
    chrf_options_default(&copt);
    ChrfStats ca[3], cb[3];
    TEST_ASSERT_OK(chrf_corpus_stats(refs_text, refs, 1, 3, &copt, ca, NULL));
    TEST_ASSERT_OK(chrf_corpus_stats(refs_text, refs, 1, 3, &copt, cb, NULL));
    TEST_ASSERT_OK(bootstrap_paired_chrf(ca, cb, 3, &copt, 100, 5, &r));
    cr_expect_eq(r.delta, 0.0);
    cr_expect_eq(r.hi, 0.0);
}

Test(bootstrap, errors) {
    BootstrapResult r;
    double a[1] = {0};
    cr_expect_eq(bootstrap_paired_mean(a, a, 0, 10, 1, &r), -1);
}
