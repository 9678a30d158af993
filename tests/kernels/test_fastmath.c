/* test_fastmath.c: the vectorised helpers of src/kernels/fastmath.h give exactly what their
 * scalar loops give (maxima with NaNs, -inf and ties; |x| maxima on bit patterns; the beam
 * search's "any of 16 above a threshold" skip), at every length around the vector width, and
 * the decoder's log-sum-exp against a double reference. */
#include <stdint.h>

#include "../testlib.h"
#include "decode/decode_internal.h"
#include "kernels/fastmath.h"

static float scalar_max(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static float scalar_absmax(const float *x, int n) {
    float m = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > m) m = fabsf(x[i]);
    return m;
}

static void fill(float *x, int n, Rng *r) {
    for (int i = 0; i < n; i++) x[i] = (float)(3.0 * rng_normal(r));
}

Test(fastmath, maxima_equal_the_scalar_loops) {
    Rng r;
    rng_seed(&r, 7);
    float x[300];
    for (int n = 0; n <= 200; n++) {
        for (int trial = 0; trial < 4; trial++) {
            fill(x, n, &r);
            if (trial == 1 && n > 0) x[rng_below(&r, (uint32_t)n)] = NAN;      /* never taken */
            if (trial == 2 && n > 0) x[rng_below(&r, (uint32_t)n)] = -INFINITY;
            if (trial == 3 && n > 3) x[n - 1] = x[0] = 50.0f, x[n / 2] = -60.0f; /* ties, |min| > max */
            float a = tt_maxf(x, n), b = scalar_max(x, n);
            cr_assert(a == b || (isinf(a) && isinf(b)), "n %d trial %d: max %g vs the loop's %g", n, trial, (double)a,
                      (double)b);
            /* with a key mask: the masked entries are never taken */
            int keep[300];
            float e = -INFINITY;
            for (int i = 0; i < n; i++) {
                keep[i] = trial == 0 ? (int)(rng_below(&r, 3) != 0) : (i % 5 != 2);
                if (keep[i] && x[i] > e) e = x[i];
            }
            float g = tt_maxf_masked(x, keep, n);
            cr_assert(g == e || (isinf(g) && isinf(e) && g < 0 && e < 0), "n %d trial %d: masked max %g vs the loop's %g",
                      n, trial, (double)g, (double)e);
            float c = tt_absmaxf(x, n), d = scalar_absmax(x, n);
            cr_assert(c == d, "n %d trial %d: max |x| %g vs the loop's %g", n, trial, (double)c, (double)d);
        }
    }
    for (int i = 0; i < 40; i++) x[i] = NAN;
    cr_assert(tt_maxf(x, 40) == -INFINITY, "only NaNs: -inf, as the loop");
    cr_assert(tt_absmaxf(x, 40) == 0, "only NaNs: 0, as the loop");
    for (int i = 0; i < 40; i++) x[i] = -INFINITY;
    cr_assert(isinf(tt_maxf(x, 40)) && tt_maxf(x, 40) < 0);
    cr_assert(isinf(tt_absmaxf(x, 40)));
}

Test(fastmath, any16_gt_is_the_scalar_test) {
    Rng r;
    rng_seed(&r, 11);
    float x[16];
    int seen_true = 0, seen_false = 0;
    for (int trial = 0; trial < 20000; trial++) {
        fill(x, 16, &r);
        if (trial % 7 == 0) x[trial % 16] = NAN;
        float add = (float)(2.0 * rng_normal(&r)), thr = (float)(6.0 + 2.0 * rng_normal(&r));
        if (trial % 5 == 0) thr = x[trial % 16] + add; /* equality is not above */
        int want = 0;
        for (int q = 0; q < 16; q++) want |= x[q] + add > thr;
        int got = tt_any16_gt(x, add, thr);
        cr_assert(got == want, "trial %d: %d vs the loop's %d", trial, got, want);
        seen_true += want, seen_false += !want;
    }
    cr_assert(seen_true > 1000 && seen_false > 1000, "both answers exercised (%d, %d)", seen_true, seen_false);
}

Test(fastmath, logsumexp_against_double) {
    Rng r;
    rng_seed(&r, 3);
    static float x[8001];
    int sizes[] = {1, 7, 15, 16, 17, 33, 1000, 8001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        fill(x, n, &r);
        x[n / 3] = 25.0f;
        if (n > 4) x[1] = -INFINITY;
        double m = -INFINITY, s = 0;
        for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
        for (int i = 0; i < n; i++) s += exp((double)x[i] - m);
        double want = m + log(s), got = row_logsumexp(x, n);
        cr_assert(fabs(got - want) <= 1e-5 * (1 + fabs(want)), "n %d: %.9g vs %.9g", n, got, want);
    }
    for (int i = 0; i < 20; i++) x[i] = -INFINITY;
    cr_assert(row_logsumexp(x, 20) == -INFINITY, "all -inf: -inf");
}

/* the softmax middle: exp(x - max) in place, masked entries 0, and their sum, against double,
 * at lengths around the 16-lane step, with and without a key mask (masked keys may hold values
 * above the maximum of the kept ones: they must still come out 0) */
Test(fastmath, exp_shift_sum_against_double) {
    Rng r;
    rng_seed(&r, 11);
    static float x[300], x0[300];
    static int keep[300];
    int sizes[] = {1, 5, 15, 16, 17, 31, 32, 33, 96, 100, 300};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (int masked = 0; masked < 2; masked++) {
            int n = sizes[k];
            fill(x0, n, &r);
            for (int i = 0; i < n; i++) keep[i] = !masked || i % 3 != 1 || n == 1;
            if (masked && n > 1) x0[1] = 80.0f; /* a masked key far above the rest */
            float mx = -INFINITY;
            for (int i = 0; i < n; i++)
                if (keep[i] && x0[i] > mx) mx = x0[i];
            memcpy(x, x0, sizeof(float) * (size_t)n);
            double got = tt_exp_shift_sum(x, n, mx, masked ? keep : NULL), want = 0;
            for (int i = 0; i < n; i++) {
                double e = keep[i] ? exp((double)(x0[i] - mx)) : 0; /* the float difference, as the code */
                want += e;
                cr_assert(fabs(x[i] - e) <= 1e-6 * (e + 1e-30) + 1e-37, "n %d entry %d: %g vs %g", n, i, (double)x[i], e);
            }
            cr_assert(fabs(got - want) <= 1e-6 * want, "n %d: sum %.9g vs %.9g", n, got, want);
        }
}

/* The build's vector exp (AVX-512's tt_exp16, or AVX2's tt_exp8 where this build has no
 * AVX-512) against libm's, over the whole range, and its special values */
#if defined(__AVX512F__)
enum { EXP_LANES = 16 };
static void vexp(const float *x, float *y) { _mm512_storeu_ps(y, tt_exp16(_mm512_loadu_ps(x))); }
#elif defined(__AVX2__) && defined(__FMA__)
enum { EXP_LANES = 8 };
static void vexp(const float *x, float *y) { _mm256_storeu_ps(y, tt_exp8(_mm256_loadu_ps(x))); }
#endif
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
Test(fastmath, vector_exp_against_libm) {
    float x[EXP_LANES], y[EXP_LANES];
    double worst = 0;
    int blocks = 320000 / EXP_LANES;
    for (int k = 0; k < blocks; k++) {
        for (int q = 0; q < EXP_LANES; q++) x[q] = -100.0f + 188.0f * (float)(k * EXP_LANES + q) / 320000.0f;
        vexp(x, y);
        for (int q = 0; q < EXP_LANES; q++) {
            double want = exp((double)x[q]);
            if (want < 1e-37) { /* the tail: absolute error only */
                cr_assert(fabs((double)y[q] - want) <= 1.3e-38, "exp(%g) = %g", (double)x[q], (double)y[q]);
                continue;
            }
            double rel = fabs((double)y[q] - want) / want;
            if (rel > worst) worst = rel;
        }
    }
    cr_assert(worst < 4e-7, "largest relative error %g", worst);
    float sp[EXP_LANES] = {-INFINITY, NAN, 89.0f, -200.0f, 0.0f, -0.0f, 1.0f, -1.0f};
    vexp(sp, y);
    cr_assert(y[0] == 0.0f, "exp(-inf) = %g", (double)y[0]);
    cr_assert(isnan(y[1]), "exp(NaN) = %g", (double)y[1]);
    cr_assert(isinf(y[2]) && y[2] > 0, "exp(89) = %g (overflow)", (double)y[2]);
    cr_assert(y[3] == 0.0f && y[4] == 1.0f && y[5] == 1.0f);
    cr_assert(fabs(y[6] - 2.718281828) < 1e-6 && fabs(y[7] - 0.3678794412) < 1e-7);
}
#endif



#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
/* AVX2's exp for arguments <= 0: tt_exp8's values from -87 to 0, 0 below -87.3, near
 * libm's in between, -inf 0 and NaN NaN */
Test(fastmath, nonpositive_exp_is_tt_exp8) {
    float x[8], y[8], z[8];
    for (int k = 0; k < 40000; k++) {
        for (int q = 0; q < 8; q++) x[q] = -100.0f * (float)(k * 8 + q) / 320000.0f;
        _mm256_storeu_ps(y, tt_exp8_nonpos(_mm256_loadu_ps(x)));
        _mm256_storeu_ps(z, tt_exp8(_mm256_loadu_ps(x)));
        for (int q = 0; q < 8; q++) {
            if (x[q] >= -87.0f) cr_assert(y[q] == z[q], "exp(%g): %g vs tt_exp8's %g", (double)x[q], (double)y[q], (double)z[q]);
            else if (x[q] < -87.3f) cr_assert(y[q] == 0.0f, "exp(%g) = %g", (double)x[q], (double)y[q]);
            else cr_assert(fabs((double)y[q] - exp((double)x[q])) <= 1.3e-38, "exp(%g) = %g", (double)x[q], (double)y[q]);
        }
    }
    float sp[8] = {-INFINITY, NAN, 0.0f, -0.0f, -1.0f, -200.0f, -87.2f, -1e-30f};
    _mm256_storeu_ps(y, tt_exp8_nonpos(_mm256_loadu_ps(sp)));
    cr_assert(y[0] == 0.0f && isnan(y[1]) && y[2] == 1.0f && y[3] == 1.0f && y[5] == 0.0f && y[7] == 1.0f);
    cr_assert(fabs(y[4] - 0.3678794412) < 1e-7);
}
#endif

/* GELU (both of Hugging Face's forms) against float64, over lengths that leave vector tails,
 * and its special values: +inf stays +inf, NaN stays NaN, large negative goes to -0 or 0 */
Test(fastmath, gelu_against_double) {
    enum { N = 300 };
    float x[N], y[N];
    for (int kind = 0; kind < 2; kind++)
        for (int n = 1; n <= N; n += 37) {
            for (int i = 0; i < n; i++) x[i] = -12.0f + 24.0f * (float)i / (float)n;
            gelu_forward(y, x, n, kind == 0 ? GELU_ERF : GELU_TANH);
            for (int i = 0; i < n; i++) {
                double v = x[i], want = kind == 0 ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                                                  : 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                cr_assert(fabs(y[i] - want) <= 4e-7 * fabs(v) + 1e-6, "kind %d, gelu(%g) = %.9g, want %.9g", kind,
                          v, (double)y[i], want);
            }
        }
    float sp[32];
    for (int i = 0; i < 32; i++) sp[i] = (float)i;
    sp[0] = INFINITY, sp[1] = NAN, sp[2] = 1e30f, sp[3] = -1e30f, sp[4] = -30.0f, sp[5] = 3e38f;
    for (int kind = 0; kind < 2; kind++) {
        gelu_forward(y, sp, 32, kind == 0 ? GELU_ERF : GELU_TANH);
        cr_assert(isinf(y[0]) && y[0] > 0, "kind %d: gelu(inf) = %g", kind, (double)y[0]);
        cr_assert(isnan(y[1]), "kind %d: gelu(NaN) = %g", kind, (double)y[1]);
        cr_assert(y[2] == 1e30f && y[5] == 3e38f, "kind %d: gelu(1e30) = %g", kind, (double)y[2]);
        cr_assert(y[3] == 0.0f && fabsf(y[4]) < 1e-30f, "kind %d: gelu(-1e30) = %g, gelu(-30) = %g", kind,
                  (double)y[3], (double)y[4]);
    }
}
