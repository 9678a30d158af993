/* test_int8.c: the int8 kernels. The integer products against a float64 sum of the same
 * quantized values (exact), the portable, AVX2 and AVX-512 VNNI paths bit-identical wherever
 * this machine has them (including the largest operands, where a 16-bit pair sum would
 * saturate if the ranges were not chosen to prevent it), quantization error within its
 * bound, the float epilogue against its rigorous error bound, stored weights checked. */
#include <math.h>
#include <stdint.h>

#include "../testlib.h"
#include "tutor/kernels.h"

static void fill(float *v, size_t n, uint64_t seed, float amp) {
    Rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = (float)(amp * rng_normal(&r));
}

static const Q8Path PATHS[3] = {Q8_PORTABLE, Q8_AVX2, Q8_VNNI};
enum { NPATHS = 3 };

Test(int8, weight_quantization_error_and_layouts) {
    int N = 37, K = 70;
    float *w = malloc(sizeof(float) * N * K), *wt = malloc(sizeof(float) * N * K);
    fill(w, (size_t)N * K, 1, 0.3f);
    w[5] = 0;  /* a zero somewhere */
    for (int k = 0; k < K; k++) w[3 * K + k] = 0; /* an all-zero row gets scale 1 and q 0 */
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) wt[(size_t)k * N + n] = w[(size_t)n * K + k];
    Q8Weights a, b;
    TEST_ASSERT_OK(q8_weights_quantize(&a, w, N, K, 0));
    TEST_ASSERT_OK(q8_weights_quantize(&b, wt, N, K, 1));
    cr_assert(a.Kp == 72 && a.Kp % Q8_K_ALIGN == 0);
    cr_assert(memcmp(a.q, b.q, (size_t)N * a.Kp) == 0, "the transposed layout must quantize the same");
    for (int n = 0; n < N; n++) {
        int32_t cs = 0;
        int mx = 0;
        for (int k = 0; k < K; k++) {
            int q = a.q[(size_t)n * a.Kp + k];
            cr_assert(q >= -127 && q <= 127);
            if (abs(q) > mx) mx = abs(q);
            cs += q;
            double err = fabs((double)w[(size_t)n * K + k] - (double)q * a.scale[n]);
            cr_assert(err <= 0.5 * a.scale[n] * (1 + 1e-6), "row %d col %d: error %g > scale/2 %g", n, k, err,
                      0.5 * a.scale[n]);
        }
        for (int k = K; k < a.Kp; k++) cr_assert(a.q[(size_t)n * a.Kp + k] == 0, "padding must be zero weights");
        cr_assert(cs == a.colsum[n]);
        cr_assert(n == 3 ? mx == 0 : mx == 127, "row %d: the largest |q| is %d", n, mx);
    }
    q8_weights_free(&a);
    q8_weights_free(&b);
    free(w);
    free(wt);
}

/* The integer sums: exact against a float64 sum of the same bytes, identical on every path. */
static void check_dot(int M, int N, int K, uint64_t seed, int extreme) {
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * M * K);
    fill(w, (size_t)N * K, seed, 1);
    fill(x, (size_t)M * K, seed + 1, 2);
    if (extreme) {
        /* every activation byte 127 or 1 and every weight +-127: the pair sums reach
         * 2 * 127 * 127, the most a u8 x s8 pair can make in these ranges */
        for (int i = 0; i < N * K; i++) w[i] = (i % 3) ? 1.0f : -1.0f;
        for (int i = 0; i < M * K; i++) x[i] = (i % 5) ? 1.0f : -1.0f;
    }
    Q8Weights q;
    TEST_ASSERT_OK(q8_weights_quantize(&q, w, N, K, 0));
    uint8_t *a = malloc((size_t)M * q.Kp);
    float *as = malloc(sizeof(float) * M);
    q8_quantize_rows(Q8_PORTABLE, x, M, K, K, a, q.Kp, as);
    for (int i = 0; i < M * q.Kp; i++) cr_assert(a[i] >= 1 && a[i] <= 127, "activation byte %d out of [1, 127]", a[i]);
    int32_t *acc[NPATHS];
    for (int p = 0; p < NPATHS; p++) {
        acc[p] = calloc((size_t)M * N, sizeof(int32_t));
        q8_dot(PATHS[p], a, M, &q, 0, N, acc[p], N);
    }
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double ref = 0;
            for (int k = 0; k < q.Kp; k++) ref += (double)a[(size_t)m * q.Kp + k] * (double)q.q[(size_t)n * q.Kp + k];
            cr_assert(acc[0][(size_t)m * N + n] == (int32_t)ref, "portable [%d][%d]: %d != %.0f", m, n,
                      acc[0][(size_t)m * N + n], ref);
        }
    for (int p = 1; p < NPATHS; p++) {
        if (!q8_path_available(PATHS[p])) {
            cr_log_info("int8: %s not on this CPU, not compared", q8_path_name(PATHS[p]));
            continue;
        }
        cr_assert(memcmp(acc[0], acc[p], sizeof(int32_t) * M * N) == 0, "%s differs from the portable path (M %d N %d K %d)",
                  q8_path_name(PATHS[p]), M, N, K);
    }
    for (int p = 0; p < NPATHS; p++) free(acc[p]);
    free(a), free(as), free(w), free(x);
    q8_weights_free(&q);
}

/* The activation bytes and scales of every path alike, on rows with the hard cases: ties at
 * +-0.5 steps, -0, the clamp edge, NaN and infinities, denormals, an all-zero row, and lengths
 * around the 16- and 32-lane steps. */
Test(int8, activation_quantization_identical_on_every_path) {
    static const int lens[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 96, 100, 384};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int K = lens[li], M = 6, Kp = q8_padded_k(K);
        float *x = malloc(sizeof(float) * M * K);
        fill(x, (size_t)M * K, 40 + li, 3);
        for (int k = 0; k < K; k++) {
            x[k] = k ? (float)(k % 127 - 63) * 0.25f : -31.5f; /* row 0: t 0.5, every other value a tie */
            x[K + k] = 0;                          /* row 1: all zero */
            if (k % 4 == 1) x[2 * K + k] = -0.0f;  /* row 2: -0 among others */
            if (k % 7 == 3) x[3 * K + k] = 1e-40f; /* row 3: denormals */
        }
        if (K > 2) x[4 * K + 1] = NAN, x[4 * K + 2] = -INFINITY; /* row 4: NaN and -inf */
        uint8_t *a[NPATHS];
        float *sc[NPATHS];
        for (int p = 0; p < NPATHS; p++) {
            a[p] = malloc((size_t)M * Kp), sc[p] = malloc(sizeof(float) * M);
            if (q8_path_available(PATHS[p])) q8_quantize_rows(PATHS[p], x, M, K, K, a[p], Kp, sc[p]);
        }
        for (int k = 0; k < K; k++)
            cr_assert(a[0][k] == (uint8_t)(64 + (int)lroundf(x[k] / sc[0][0])), "tie at %g: byte %d", (double)x[k],
                      a[0][k]);
        for (int p = 1; p < NPATHS; p++) {
            if (!q8_path_available(PATHS[p])) continue;
            cr_assert(memcmp(a[0], a[p], (size_t)M * Kp) == 0, "%s: activation bytes differ (K %d)",
                      q8_path_name(PATHS[p]), K);
            cr_assert(memcmp(sc[0], sc[p], sizeof(float) * M) == 0, "%s: activation scales differ (K %d)",
                      q8_path_name(PATHS[p]), K);
        }
        for (int p = 0; p < NPATHS; p++) free(a[p]), free(sc[p]);
        free(x);
    }
}

Test(int8, products_exact_and_paths_identical) {
    /* row counts on both sides of the VNNI tiles' 8, 4, 2 and 1 */
    static const int shapes[][3] = {{1, 1, 1},     {1, 5, 63},    {2, 7, 64},      {3, 9, 65},    {5, 33, 200},
                                    {1, 8001, 96}, {17, 13, 384}, {4, 4, 1000},    {16, 16, 64},  {32, 50, 96},
                                    {33, 47, 96},  {64, 37, 384}, {40, 300, 1000}, {100, 8001, 96}, {20, 3, 4}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_dot(shapes[s][0], shapes[s][1], shapes[s][2], 10 + s, 0);
    check_dot(3, 11, 512, 99, 1);
    check_dot(1, 4, 64, 98, 1);
}

/* y = x W^T + b through q8_linear, against float64, within the rigorous quantization bound
 * |y - y_q| <= sum_k (|x_k| s_n / 2 + |w_k| t_m / 2 + t_m s_n / 4) (plus float rounding). */
Test(int8, linear_within_bound_and_thread_independent) {
    int M = 6, N = 50, K = 96;
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * M * N), *y2 = malloc(sizeof(float) * M * N);
    fill(w, (size_t)N * K, 3, 0.2f);
    fill(x, (size_t)M * K, 4, 1.5f);
    fill(b, (size_t)N, 5, 0.1f);
    Q8Weights q;
    TEST_ASSERT_OK(q8_weights_quantize(&q, w, N, K, 0));
    Q8Scratch s = {0};
    tt_set_threads(1);
    TEST_ASSERT_OK(q8_linear(q8_best_path(), x, M, K, &q, b, y, N, &s));
    for (int m = 0; m < M; m++) {
        float mx = 0;
        for (int k = 0; k < K; k++) mx = fmaxf(mx, fabsf(x[(size_t)m * K + k]));
        double t = mx / 63.0;
        for (int n = 0; n < N; n++) {
            double ref = b[n], bound = 0;
            for (int k = 0; k < K; k++) {
                double xv = x[(size_t)m * K + k], wv = w[(size_t)n * K + k];
                ref += xv * wv;
                bound += fabs(xv) * q.scale[n] / 2 + fabs(wv) * t / 2 + t * q.scale[n] / 4;
            }
            double err = fabs(y[(size_t)m * N + n] - ref);
            cr_assert(err <= bound * 1.0001 + 1e-5, "[%d][%d]: error %g over the bound %g", m, n, err, bound);
        }
    }
    tt_set_threads(2);
    TEST_ASSERT_OK(q8_linear(q8_best_path(), x, M, K, &q, b, y2, N, &s));
    tt_set_threads(1);
    cr_assert(memcmp(y, y2, sizeof(float) * M * N) == 0, "the output must not depend on the thread count");
    /* every path: the same floats */
    for (int p = 0; p < NPATHS; p++) {
        if (!q8_path_available(PATHS[p])) continue;
        TEST_ASSERT_OK(q8_linear(PATHS[p], x, M, K, &q, b, y2, N, &s));
        cr_assert(memcmp(y, y2, sizeof(float) * M * N) == 0, "%s: other floats", q8_path_name(PATHS[p]));
    }
    /* and with more rows (37: four tiles of 8, then 5), on 1 and 2 threads */
    int M2 = 37;
    float *x2 = malloc(sizeof(float) * M2 * K), *z0 = malloc(sizeof(float) * M2 * N), *z1 = malloc(sizeof(float) * M2 * N);
    fill(x2, (size_t)M2 * K, 6, 1.0f);
    TEST_ASSERT_OK(q8_linear(Q8_PORTABLE, x2, M2, K, &q, b, z0, N, &s));
    for (int th = 1; th <= 2; th++) {
        tt_set_threads(th);
        for (int p = 1; p < NPATHS; p++) {
            if (!q8_path_available(PATHS[p])) continue;
            TEST_ASSERT_OK(q8_linear(PATHS[p], x2, M2, K, &q, b, z1, N, &s));
            cr_assert(memcmp(z0, z1, sizeof(float) * M2 * N) == 0, "%s, %d threads: other floats for %d rows",
                      q8_path_name(PATHS[p]), th, M2);
        }
    }
    tt_set_threads(1);
    q8_scratch_free(&s);
    q8_weights_free(&q);
    free(w), free(x), free(b), free(y), free(y2), free(x2), free(z0), free(z1);
}

Test(int8, stored_parts_checked) {
    int8_t q[6] = {1, -2, 3, 127, -127, 0};
    float sc[2] = {0.5f, 0.25f};
    Q8Weights w;
    TEST_ASSERT_OK(q8_weights_from_parts(&w, q, sc, 2, 3));
    cr_assert(w.colsum[0] == 2 && w.colsum[1] == 0 && w.Kp == 4);
    q8_weights_free(&w);
    q[2] = -128;
    cr_assert(q8_weights_from_parts(&w, q, sc, 2, 3) != 0);
    cr_assert(strstr(tt_errmsg(), "-128") != NULL, "%s", tt_errmsg());
    q[2] = 3;
    sc[1] = 0;
    cr_assert(q8_weights_from_parts(&w, q, sc, 2, 3) != 0);
    cr_assert(strstr(tt_errmsg(), "scale") != NULL, "%s", tt_errmsg());
    sc[1] = NAN;
    cr_assert(q8_weights_from_parts(&w, q, sc, 2, 3) != 0);
}
