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

#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

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

/* Maxima over float arrays in 16 lanes of GCC's vector extension (one zmm register with
 * AVX-512, two ymm with AVX2): GCC 12 does not vectorise a running maximum written as a loop,
 * which then costs a dependent compare per element. Both give exactly what the scalar loop
 * `m = x[i] > m ? x[i] : m` gives: NaNs are never taken, and the order of equal values does
 * not matter for a maximum. */
typedef float tt_v16f __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t tt_v16i __attribute__((vector_size(64), aligned(4), may_alias));
typedef uint32_t tt_v16u __attribute__((vector_size(64), aligned(4), may_alias));
typedef uint32_t tt_u32a __attribute__((may_alias));

/* A float vector of the machine's own width (16 lanes with AVX-512, 8 otherwise), for loops of
 * plain arithmetic: GCC lowers a 64-byte generic vector without AVX-512 through the stack
 * (the AVX2 build's attention scores ran 3x slower for it). */
#if defined(__AVX512F__)
#define TT_VL 16
#else
#define TT_VL 8
#endif
typedef float tt_vf __attribute__((vector_size(4 * TT_VL), aligned(4), may_alias));

/* m = max(a, m) lane by lane, as `a > m ? a : m` (a macro: a function passing 64-byte vectors
 * by value changes the ABI where AVX-512 is off, which GCC warns about) */
#define TT_V16_MAX_INTO(m, a)                                                                      \
    do {                                                                                           \
        tt_v16f a_ = (a);                                                                          \
        tt_v16i gt_ = a_ > (m);                                                                    \
        (m) = (tt_v16f)(((tt_v16i)a_ & gt_) | ((tt_v16i)(m) & ~gt_));                              \
    } while (0)

/* max of x[0, n) over the entries with keep[i] != 0 (keep NULL: all); -inf when there are
 * none or every one is -inf or NaN. With AVX-512 or AVX2 in intrinsics: vmaxps(a, m) is
 * `a > m ? a : m`, the scalar loop's own expression (GCC lowers the 64-byte generic vectors
 * below to scalar compares where AVX-512 is off: 2.6 ns a logit against 0.1). */
static inline float tt_maxf_masked(const float *x, const int *keep, int n) {
    int i = 0;
    float m = -INFINITY;
#if defined(__AVX512F__)
    if (n >= 16) {
        const __m512 ninf = _mm512_set1_ps(-INFINITY);
        __m512 v0 = ninf, v1 = ninf, v2 = ninf, v3 = ninf;
        if (!keep)
            for (; i + 64 <= n; i += 64) {
                v0 = _mm512_max_ps(_mm512_loadu_ps(x + i), v0);
                v1 = _mm512_max_ps(_mm512_loadu_ps(x + i + 16), v1);
                v2 = _mm512_max_ps(_mm512_loadu_ps(x + i + 32), v2);
                v3 = _mm512_max_ps(_mm512_loadu_ps(x + i + 48), v3);
            }
        for (; i + 16 <= n; i += 16) {
            __m512 a = _mm512_loadu_ps(x + i);
            if (keep) {
                __m512i k = _mm512_loadu_si512((const void *)(keep + i));
                a = _mm512_mask_blend_ps(_mm512_test_epi32_mask(k, k), ninf, a);
            }
            v0 = _mm512_max_ps(a, v0);
        }
        m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(v0, v1), _mm512_max_ps(v2, v3)));
    }
#elif defined(__AVX2__)
    if (n >= 8) {
        const __m256 ninf = _mm256_set1_ps(-INFINITY);
        __m256 v0 = ninf, v1 = ninf, v2 = ninf, v3 = ninf;
        if (!keep)
            for (; i + 32 <= n; i += 32) {
                v0 = _mm256_max_ps(_mm256_loadu_ps(x + i), v0);
                v1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), v1);
                v2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), v2);
                v3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), v3);
            }
        for (; i + 8 <= n; i += 8) {
            __m256 a = _mm256_loadu_ps(x + i);
            if (keep) {
                __m256i k = _mm256_loadu_si256((const __m256i *)(const void *)(keep + i));
                __m256 drop = _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_setzero_si256()));
                a = _mm256_blendv_ps(a, ninf, drop);
            }
            v0 = _mm256_max_ps(a, v0);
        }
        __m256 v = _mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        m = _mm_cvtss_f32(h);
    }
#else
    if (n >= 16) {
        /* every lane starts at -inf (a NaN loaded as a start would stay and hide its lane) */
        tt_v16f v = {0};
        v -= INFINITY;
        const tt_v16f ninf = v;
        for (; i + 16 <= n; i += 16) {
            tt_v16f a = *(const tt_v16f *)(x + i);
            if (keep) {
                tt_v16i k = *(const tt_v16i *)(keep + i) != 0;
                a = (tt_v16f)(((tt_v16i)a & k) | ((tt_v16i)ninf & ~k));
            }
            TT_V16_MAX_INTO(v, a);
        }
        for (int q = 0; q < 16; q++) m = v[q] > m ? v[q] : m;
    }
#endif
    for (; i < n; i++)
        if ((!keep || keep[i]) && x[i] > m) m = x[i];
    return m;
}

/* max of x[0, n); -inf when n is 0 or every value is -inf or NaN */
static inline float tt_maxf(const float *x, int n) { return tt_maxf_masked(x, NULL, n); }

/* the same for the build's real type (the plain loop in the double build) */
static inline real tt_max_real(const real *x, int n) {
#if REAL_IS_DOUBLE
    real m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
#else
    return tt_maxf(x, n);
#endif
}

/* max |x[i]| over [0, n), NaNs ignored, 0 for n = 0: on the bit patterns, where for
 * non-negative floats the unsigned order is the float order */
static inline float tt_absmaxf(const float *x, int n) {
    const tt_u32a *u = (const tt_u32a *)(const void *)x;
    uint32_t m = 0;
    int i = 0;
#if defined(__AVX512F__)
    if (n >= 16) {
        __m512i v = _mm512_setzero_si512();
        const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
        for (; i + 16 <= n; i += 16) {
            __m512i a = _mm512_and_si512(_mm512_loadu_si512((const void *)(u + i)), abs);
            /* NaN (above inf's pattern) -> not taken; signed compares: both are below 2^31 */
            v = _mm512_mask_max_epi32(v, _mm512_cmple_epi32_mask(a, inf), v, a);
        }
        m = (uint32_t)_mm512_reduce_max_epi32(v);
    }
#elif defined(__AVX2__)
    if (n >= 8) {
        __m256i v = _mm256_setzero_si256();
        const __m256i abs = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
        for (; i + 8 <= n; i += 8) {
            __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(u + i)), abs);
            a = _mm256_andnot_si256(_mm256_cmpgt_epi32(a, inf), a); /* NaN -> 0 */
            v = _mm256_max_epi32(v, a);
        }
        uint32_t l[8];
        _mm256_storeu_si256((__m256i *)(void *)l, v);
        for (int q = 0; q < 8; q++) m = l[q] > m ? l[q] : m;
    }
#else
    if (n >= 16) {
        tt_v16u v = {0};
        for (; i + 16 <= n; i += 16) {
            tt_v16u a = *(const tt_v16u *)(u + i) & 0x7fffffffu;
            a &= (tt_v16u)(a <= 0x7f800000u); /* NaN -> 0 */
            tt_v16u gt = (tt_v16u)(a > v);
            v = (a & gt) | (v & ~gt);
        }
        for (int q = 0; q < 16; q++) m = v[q] > m ? v[q] : m;
    }
#endif
    for (; i < n; i++) {
        uint32_t a = u[i] & 0x7fffffffu;
        if (a <= 0x7f800000u && a > m) m = a;
    }
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

/* Whether any of x[0, 16) + add > thr (the float ops of the scalar expression, so the answer
 * is the scalar loop's): one compare into a mask register with AVX-512, a movemask with AVX
 * (the build targets this machine: see the Makefile's CPU stamp), else the generic lanes. */
static inline int tt_any16_gt(const float *x, float add, float thr) {
#if defined(__AVX512F__)
    __m512 c = _mm512_add_ps(_mm512_loadu_ps(x), _mm512_set1_ps(add));
    return _mm512_cmp_ps_mask(c, _mm512_set1_ps(thr), _CMP_GT_OQ) != 0;
#elif defined(__AVX__)
    __m256 a = _mm256_add_ps(_mm256_loadu_ps(x), _mm256_set1_ps(add));
    __m256 b = _mm256_add_ps(_mm256_loadu_ps(x + 8), _mm256_set1_ps(add));
    __m256 t = _mm256_set1_ps(thr);
    return _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(a, t, _CMP_GT_OQ), _mm256_cmp_ps(b, t, _CMP_GT_OQ))) != 0;
#else
    int any = 0;
    for (int q = 0; q < 16; q++) any |= x[q] + add > thr;
    return any;
#endif
}

/* The vector exps' middle, for a vector type T whose intrinsics start with P (_mm512_,
 * _mm256_): r = x - n ln2 (ln 2 in two parts, as fast_expf), then p = exp(r) by fast_expf's
 * polynomial. */
#define TT_EXP_REDUCE_POLY(T, P, x, n, p)                                                          \
    do {                                                                                           \
        T r_ = P##fnmadd_ps(n, P##set1_ps(0.693359375f), x);                                       \
        r_ = P##fmadd_ps(n, P##set1_ps(2.12194440e-4f), r_);                                       \
        p = P##set1_ps(1.9875691500e-4f);                                                          \
        p = P##fmadd_ps(p, r_, P##set1_ps(1.3981999507e-3f));                                      \
        p = P##fmadd_ps(p, r_, P##set1_ps(8.3334519073e-3f));                                      \
        p = P##fmadd_ps(p, r_, P##set1_ps(4.1665795894e-2f));                                      \
        p = P##fmadd_ps(p, r_, P##set1_ps(1.6666665459e-1f));                                      \
        p = P##fmadd_ps(p, r_, P##set1_ps(5.0000001201e-1f));                                      \
        p = P##fmadd_ps(P##mul_ps(p, r_), r_, P##add_ps(r_, P##set1_ps(1.0f)));                    \
    } while (0)

#if defined(__AVX512F__)
/* exp of 16 floats with AVX-512: fast_expf's range reduction and polynomial, the power of 2
 * applied by vscalefps (it overflows to inf by itself); 0 below e^-87.3 (so -inf gives 0, as
 * tt_exp8), where the result would be a denormal: making one costs a microcode assist of
 * ~150 cycles (a row of logits spread over more than 87, or -inf logits, ran 10x slower);
 * a NaN stays NaN. About half of fast_expf's instructions; the same values to within an ulp
 * (rounding to nearest instead of floor(t + 0.5) differs only at exact halves). */
static inline __m512 tt_exp16(__m512 x0) {
    const __m512 lo = _mm512_set1_ps(-87.3f);
    __mmask16 keep = _mm512_cmp_ps_mask(x0, lo, _CMP_NLT_UQ); /* x0 >= -87.3, or NaN */
    __m512 x = _mm512_max_ps(lo, x0);                          /* NaN stays (2nd operand) */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 p;
    TT_EXP_REDUCE_POLY(__m512, _mm512_, x, n, p);
    return _mm512_maskz_scalef_ps(keep, p, n);
}
#endif

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
/* exp of 8 floats with AVX2 and FMA, for machines without AVX-512: tt_exp16's reduction and
 * polynomial, the power of 2 built in the exponent bits (x clamped to [-87, 88] for that), 0
 * below e^-87.3 (so -inf gives 0, as tt_exp16) and inf above e^88.72; a NaN stays NaN. */
static inline __m256 tt_exp8(__m256 x0) {
    __m256 x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x0));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 p;
    TT_EXP_REDUCE_POLY(__m256, _mm256_, x, n, p);
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    /* keep where x0 >= -87.3 or x0 is NaN (not-less-than, unordered true); inf above 88.72 */
    y = _mm256_and_ps(y, _mm256_cmp_ps(x0, _mm256_set1_ps(-87.3f), _CMP_NLT_UQ));
    return _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x0, _mm256_set1_ps(88.72f), _CMP_GT_OQ));
}
#endif

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
/* tt_exp8 for arguments <= 0 (or NaN), as a softmax's and a log-sum-exp's x - max are: the same
 * values without the overflow side (its clamp and blend), three instructions of about twenty.
 * A positive argument gives garbage: callers zero such lanes (masked keys) or have none. */
static inline __m256 tt_exp8_nonpos(__m256 x0) {
    __m256 x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x0); /* NaN stays (2nd operand) */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 p;
    TT_EXP_REDUCE_POLY(__m256, _mm256_, x, n, p);
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(y, _mm256_cmp_ps(x0, _mm256_set1_ps(-87.3f), _CMP_NLT_UQ));
}
#endif

/* sum of x[0, n) in eight double lanes (a serial double sum is a chain of dependent adds; the
 * lanes vectorise), the lanes added in a fixed order: the same result on every run */
static inline double tt_sum_lanes(const real *x, int n) {
    double ls[8] = {0};
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8)
        for (int q = 0; q < 8; q++) ls[q] += x[i + q];
    double s = ((ls[0] + ls[4]) + (ls[1] + ls[5])) + ((ls[2] + ls[6]) + (ls[3] + ls[7]));
    for (int i = n8; i < n; i++) s += x[i];
    return s;
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

/* The middle of a softmax: x[0, n) = exp(x - mx), entries j with keep[j] == 0 set to 0 (keep
 * NULL: every entry kept), and the sum of the results. With AVX-512: tt_exp16 on 16 lanes and
 * the sum in eight double lanes (each 16-block's low then high half, the order of
 * tt_sum_lanes); else the scalar loops. Either is the same on every run. */
static inline double tt_exp_shift_sum(real *x, int n, real mx, const int *keep) {
#if !REAL_IS_DOUBLE && defined(__AVX512F__)
    const __m512 vm = _mm512_set1_ps(mx);
    __m512d acc = _mm512_setzero_pd();
    for (int j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512 e = tt_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), vm));
        __mmask16 use = mk;
        if (keep) use &= _mm512_mask_cmpneq_epi32_mask(mk, _mm512_maskz_loadu_epi32(mk, keep + j), _mm512_setzero_si512());
        e = _mm512_maskz_mov_ps(use, e);
        _mm512_mask_storeu_ps(x + j, mk, e);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double ls[8];
    _mm512_storeu_pd(ls, acc);
    return ((ls[0] + ls[4]) + (ls[1] + ls[5])) + ((ls[2] + ls[6]) + (ls[3] + ls[7]));
#else
#if !REAL_IS_DOUBLE && defined(__AVX2__) && defined(__FMA__)
    {
        const __m256 vm = _mm256_set1_ps(mx);
        int j = 0;
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, tt_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm)));
        for (; j < n; j++) x[j] = REAL_EXP(x[j] - mx);
    }
#else
    for (int j = 0; j < n; j++) x[j] = REAL_EXP(x[j] - mx);
#endif
    if (keep)
        for (int j = 0; j < n; j++) x[j] = keep[j] ? x[j] : 0;
    return tt_sum_lanes(x, n);
#endif
}

#endif
