/* fastmath.h: exp and erf in float written so that GCC vectorises loops over them (no libm
 * calls, no branches), accurate to a few float ulps: exp by range reduction to
 * [-ln2/2, ln2/2] and a degree-6 polynomial (Cephes' coefficients), erf by Abramowitz and
 * Stegun 7.1.26 (absolute error < 1.5e-7). Used by the float build's softmax, cross-entropy
 * and GELU; the double build (gradient checks) keeps libm. */
#ifndef TUTOR_FASTMATH_H
#define TUTOR_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tutor/core.h"

static inline float fast_expf(float x_in) {
    /* clamp, and a NaN (which fails every comparison) computes on 0 and is returned as is */
    float x = x_in < -87.0f ? -87.0f : (x_in > 88.0f ? 88.0f : x_in);
    x = x == x ? x : 0.0f;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    /* ln 2 in two parts, so that x - n ln2 is exact */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* n in [-126, 127]: a normal power of 2 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float r2 = p * scale;
    return x_in == x_in ? r2 : x_in;
}

/* exp in double, vectorisable, to about 2 ulps: x = n ln2 + r with |r| <= ln2/2 (ln 2 in two
 * parts), exp(r) by its Taylor series to degree 13 (truncation < 2e-16 relative), times 2^n.
 * Results below 2^-1021 (x < -708) are clamped there. For the distribution comparisons of KD,
 * where both distributions go through it, so that equal logits give equal probabilities. */
static inline double fast_exp(double x_in) {
    double x = x_in < -708.0 ? -708.0 : (x_in > 709.0 ? 709.0 : x_in);
    x = x == x ? x : 0.0;
    double n = floor(x * 1.4426950408889634 + 0.5);
    double r = (x - n * 0.693147180369123816490) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits = (uint64_t)((int64_t)n + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double y = p * scale;
    return x_in == x_in ? y : x_in;
}

static inline float fast_erff(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
    float y = 1.0f - poly * fast_expf(-ax * ax);
    return copysignf(y, x);
}

static inline float fast_tanhf(float x) {
    /* tanh(x) = 1 - 2 / (exp(2x) + 1); saturates cleanly at both ends */
    return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f);
}

/* The exp/erf/tanh of the build's real type. */
#if REAL_IS_DOUBLE
#define REAL_EXP exp
#define REAL_ERF erf
#define REAL_TANH tanh
#else
#define REAL_EXP fast_expf
#define REAL_ERF fast_erff
#define REAL_TANH fast_tanhf
#endif

#endif
