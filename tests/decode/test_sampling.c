/* test_sampling.c: the sampler draws from the distribution Hugging Face's warpers define:
 * softmax at the temperature, after top-k and top-p truncation. Frequencies of many draws at a
 * fixed seed pass a chi-square test against that distribution, truncated tokens are never
 * drawn, and the same counts fail against deliberately wrong distributions (issue 4). */
#include "../testlib.h"
#include "decode/decode_internal.h"

enum { V = 12, DRAWS = 200000 };

static const float LOGITS[V] = {2.0f, 1.7f, 1.5f, 1.2f, 1.0f, 0.6f, 0.5f, 0.1f, -0.3f, -0.8f, -1.5f, -2.5f};

/* 0.999 quantiles of chi-square with df = 1..11 */
static const double CHI2_999[12] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26};

/* The target distribution written out plainly: tokens in descending order of logit (LOGITS is
 * sorted), top-k keeps k, top-p keeps tokens while the mass before them is < top_p. */
static void reference(double temperature, int top_k, double top_p, double *p) {
    double w[V], sum = 0;
    int keep = top_k > 0 && top_k < V ? top_k : V;
    for (int v = 0; v < keep; v++) sum += w[v] = exp(LOGITS[v] / temperature);
    for (int v = keep; v < V; v++) w[v] = 0;
    if (top_p < 1) {
        double before = 0;
        int n = 0;
        while (n < keep && (n == 0 || before < top_p)) before += w[n++] / sum;
        keep = n;
        for (int v = keep; v < V; v++) w[v] = 0;
    }
    sum = 0;
    for (int v = 0; v < V; v++) sum += w[v];
    for (int v = 0; v < V; v++) p[v] = w[v] / sum;
}

static void draw_counts(double temperature, int top_k, double top_p, long *counts) {
    GenConfig g;
    gen_config_default(&g);
    g.do_sample = 1;
    g.temperature = temperature;
    g.top_k = top_k;
    g.top_p = top_p;
    Rng rng;
    rng_seed(&rng, 1234);
    float scores[V], work[2 * V];
    int iwork[V];
    memset(counts, 0, sizeof(long) * V);
    for (int i = 0; i < DRAWS; i++) {
        memcpy(scores, LOGITS, sizeof scores);
        logits_warp(&g, scores, V, work, iwork);
        counts[sample_from_scores(scores, V, rng_uniform(&rng))]++;
    }
}

/* Chi-square statistic over the tokens of nonzero expected probability; *df their count - 1;
 * *impossible the draws of tokens the distribution excludes. */
static double chi2(const long *counts, const double *p, int *df, long *impossible) {
    double x = 0;
    int k = 0;
    *impossible = 0;
    for (int v = 0; v < V; v++) {
        if (p[v] == 0) {
            *impossible += counts[v];
            continue;
        }
        double e = p[v] * DRAWS;
        x += (counts[v] - e) * (counts[v] - e) / e;
        k++;
    }
    *df = k - 1;
    return x;
}

static void check(double temperature, int top_k, double top_p, int expect_kept) {
    long counts[V];
    double p[V];
    draw_counts(temperature, top_k, top_p, counts);
    reference(temperature, top_k, top_p, p);
    int df, kept = 0;
    long impossible;
    for (int v = 0; v < V; v++) kept += p[v] > 0;
    cr_assert_eq(kept, expect_kept, "reference keeps %d tokens", kept);
    double x = chi2(counts, p, &df, &impossible);
    cr_log_info("T %.2f top_k %d top_p %.2f: chi2 %.2f (df %d, 0.999 quantile %.2f), %ld impossible draws", temperature,
                top_k, top_p, x, df, CHI2_999[df], impossible);
    cr_expect_eq(impossible, 0, "drew %ld truncated tokens", impossible);
    if (df > 0) cr_expect(x < CHI2_999[df], "chi2 %.2f >= %.2f", x, CHI2_999[df]);
}

Test(sampling, temperature_only) { check(0.7, 0, 1.0, V); }
Test(sampling, hot_temperature) { check(1.5, 0, 1.0, V); }
Test(sampling, top_k) { check(1.0, 4, 1.0, 4); }
Test(sampling, top_p) { check(1.0, 0, 0.8, 6); }
Test(sampling, top_p_after_temperature) { check(1.5, 0, 0.8, 7); }
Test(sampling, top_k_then_top_p) { check(1.0, 5, 0.7, 3); }
Test(sampling, top_p_keeps_at_least_one) { check(0.2, 0, 0.05, 1); }

/* The same test rejects what a wrong sampler would produce. */
Test(sampling, chi_square_rejects_wrong_distributions) {
    long counts[V];
    double p[V], x;
    int df;
    long impossible;
    /* temperature ignored */
    draw_counts(0.7, 0, 1.0, counts);
    reference(1.0, 0, 1.0, p);
    x = chi2(counts, p, &df, &impossible);
    cr_expect(x > 10 * CHI2_999[df], "temperature 1 vs 0.7 not rejected: chi2 %.1f", x);
    /* nucleus one token too wide (what "cumulative <= top_p" instead of "< top_p before" gives
     * here): the extra token is never drawn, so the fit fails */
    draw_counts(1.0, 0, 0.8, counts);
    double wide[V];
    reference(1.0, 0, 0.8, p);
    int kept = 0;
    for (int v = 0; v < V; v++) kept += p[v] > 0;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += wide[v] = v <= kept ? exp(LOGITS[v]) : 0;
    for (int v = 0; v < V; v++) wide[v] /= sum;
    x = chi2(counts, wide, &df, &impossible);
    cr_expect(x > 10 * CHI2_999[df], "a nucleus one token too wide not rejected: chi2 %.1f", x);
    /* top-k truncation skipped */
    draw_counts(1.0, 4, 1.0, counts);
    reference(1.0, 0, 1.0, p);
    x = chi2(counts, p, &df, &impossible);
    cr_expect(x > 10 * CHI2_999[df], "untruncated distribution not rejected: chi2 %.1f", x);
}

Test(sampling, top_k_keeps_ties) {
    GenConfig g;
    gen_config_default(&g);
    g.top_k = 2;
    float s[5] = {1.0f, 3.0f, 2.0f, 2.0f, 0.5f}, work[10];
    int iwork[5];
    logits_warp(&g, s, 5, work, iwork);
    cr_expect(s[1] == 3.0f && s[2] == 2.0f && s[3] == 2.0f, "tokens tied with the k-th are kept (HF)");
    cr_expect(isinf(s[0]) && isinf(s[4]));
}

/* argmax_scores (vectorised, 16 lanes) returns what the plain loop returns: the first index of
 * the maximum, also with ties, -inf entries, lengths around the lane width and a leading NaN. */
Test(sampling, argmax_first_maximum) {
    Rng r;
    rng_seed(&r, 5);
    real v[300];
    for (int trial = 0; trial < 400; trial++) {
        int V = 1 + (int)rng_below(&r, 300);
        for (int i = 0; i < V; i++) {
            int kind = (int)rng_below(&r, 10);
            v[i] = kind == 0 ? -INFINITY : kind < 4 ? (real)(int)rng_below(&r, 4) : (real)rng_normal(&r);
        }
        if (trial % 50 == 7) v[0] = NAN;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (v[i] > v[best]) best = i;
        cr_assert(argmax_scores(v, V) == best, "V %d trial %d: %d != %d", V, trial, argmax_scores(v, V), best);
    }
}
