/* gelu.c: GELU in both forms Hugging Face uses: exact erf ("gelu", BART/mBART) and the tanh
 * approximation ("gelu_new", GPT-2), elementwise over the thread pool. */
#include <math.h>

#include "fastmath.h"
#include "tutor/kernels.h"

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

#define R_ERF REAL_ERF
#define R_TANH REAL_TANH
#define R_EXP REAL_EXP

static inline real gelu_value(real x, GeluKind kind) {
    if (kind == GELU_ERF) return (real)0.5 * x * ((real)1 + R_ERF(x * (real)INV_SQRT_2));
    return (real)0.5 * x * ((real)1 + R_TANH((real)SQRT_2_OVER_PI * (x + (real)0.044715 * x * x * x)));
}

static inline real gelu_grad(real x, GeluKind kind) {
    if (kind == GELU_ERF) {
        real cdf = (real)0.5 * ((real)1 + R_ERF(x * (real)INV_SQRT_2));
        real pdf = (real)INV_SQRT_2PI * R_EXP((real)-0.5 * x * x);
        return cdf + x * pdf;
    }
    real u = (real)SQRT_2_OVER_PI * (x + (real)0.044715 * x * x * x);
    real t = R_TANH(u);
    real du = (real)SQRT_2_OVER_PI * ((real)1 + (real)3 * (real)0.044715 * x * x);
    return (real)0.5 * ((real)1 + t) + (real)0.5 * x * ((real)1 - t * t) * du;
}

enum { GELU_BLOCK = 4096 };

typedef struct {
    real *out;
    const real *inp, *dout;
    long n;
    GeluKind kind;
    int set; /* backward: overwrite rather than accumulate */
} GeluJob;

static void block_range(const GeluJob *j, int begin, int end, long *lo, long *hi) {
    *lo = (long)begin * GELU_BLOCK;
    *hi = (long)end * GELU_BLOCK;
    if (*hi > j->n) *hi = j->n;
}

#if !REAL_IS_DOUBLE && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)))
/* The vector forms, the scalar expressions' operations in their order (fast_erff's
 * Abramowitz-Stegun 7.1.26 and the tanh identity; products and sums kept apart, as the scalar
 * code is compiled without contraction) with the vector exp: GCC's own vectorisation of the
 * scalar loop ran at 1.2 ns an element. */
#if defined(__AVX512F__)
typedef __m512 VF;
#define VL 16
#define V_SET1 _mm512_set1_ps
#define V_LOAD _mm512_loadu_ps
#define V_STORE _mm512_storeu_ps
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_AND(a, b) _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define V_OR(a, b) _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define V_XOR(a, b) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define V_ABSMASK _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff))
#define V_EXP_NONPOS tt_exp16
#define V_EXP tt_exp16
#define V_RCP _mm512_rcp14_ps
#define V_MIN _mm512_min_ps
#else
typedef __m256 VF;
#define VL 8
#define V_SET1 _mm256_set1_ps
#define V_LOAD _mm256_loadu_ps
#define V_STORE _mm256_storeu_ps
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_AND _mm256_and_ps
#define V_OR _mm256_or_ps
#define V_XOR _mm256_xor_ps
#define V_ABSMASK _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))
#define V_EXP_NONPOS tt_exp8_nonpos
#define V_EXP tt_exp8
#define V_RCP _mm256_rcp_ps
#define V_MIN _mm256_min_ps
#endif

static inline VF v_gelu(VF x, GeluKind kind) {
    const VF one = V_SET1(1.0f), sgn = V_SET1(-0.0f);
    VF half_x = V_MUL(V_SET1(0.5f), x);
    if (kind == GELU_ERF) {
        /* fast_erff(z), z = x / sqrt 2 */
        VF z = V_MUL(x, V_SET1((float)INV_SQRT_2));
        VF az = V_AND(z, V_ABSMASK);
        /* 1 / d by the reciprocal estimate and one Newton step (a division is most of the
         * cost otherwise; the step leaves ~2^-24 relative error against A-S's own 1.5e-7);
         * |z| capped at 1e6 so that an infinite d cannot make 0 * inf (erf is 1 there anyway,
         * and a NaN passes: vminps returns its second operand) */
        VF d = V_ADD(one, V_MUL(V_SET1(0.3275911f), V_MIN(V_SET1(1e6f), az))), r = V_RCP(d);
        VF t = V_MUL(r, V_SUB(V_SET1(2.0f), V_MUL(d, r)));
        VF p = V_SUB(V_MUL(V_SET1(1.061405429f), t), V_SET1(1.453152027f));
        p = V_ADD(V_MUL(p, t), V_SET1(1.421413741f));
        p = V_SUB(V_MUL(p, t), V_SET1(0.284496736f));
        p = V_ADD(V_MUL(p, t), V_SET1(0.254829592f));
        p = V_MUL(p, t);
        VF e = V_EXP_NONPOS(V_MUL(V_XOR(az, sgn), az)); /* (-|z|) |z| <= 0 */
        VF y = V_SUB(one, V_MUL(p, e));
        VF erf = V_OR(V_AND(y, V_ABSMASK), V_AND(z, sgn)); /* copysign(y, z) */
        return V_MUL(half_x, V_ADD(one, erf));
    }
    /* tanh(u) = 1 - 2 / (exp(2u) + 1), u = sqrt(2/pi) (x + 0.044715 x^3) */
    VF c = V_MUL(V_MUL(V_MUL(V_SET1(0.044715f), x), x), x);
    VF u = V_MUL(V_SET1((float)SQRT_2_OVER_PI), V_ADD(x, c));
    VF th = V_SUB(one, V_DIV(V_SET1(2.0f), V_ADD(V_EXP(V_MUL(V_SET1(2.0f), u)), one)));
    return V_MUL(half_x, V_ADD(one, th));
}
#endif

/* One loop per kind, on restrict pointers, so that each vectorises (and the vector form first
 * where the build has one). */
static void gelu_forward_range(int begin, int end, int part, void *arg) {
    const GeluJob *j = arg;
    long lo, hi;
    block_range(j, begin, end, &lo, &hi);
    real *restrict out = j->out;
    const real *restrict inp = j->inp;
#if !REAL_IS_DOUBLE && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)))
    for (; lo + VL <= hi; lo += VL) V_STORE(out + lo, v_gelu(V_LOAD(inp + lo), j->kind));
#endif
    if (j->kind == GELU_ERF)
        for (long i = lo; i < hi; i++) out[i] = gelu_value(inp[i], GELU_ERF);
    else
        for (long i = lo; i < hi; i++) out[i] = gelu_value(inp[i], GELU_TANH);
}

static void gelu_backward_range(int begin, int end, int part, void *arg) {
    const GeluJob *j = arg;
    long lo, hi;
    block_range(j, begin, end, &lo, &hi);
    real *restrict dinp = j->out;
    const real *restrict inp = j->inp, *restrict dout = j->dout;
    if (j->set) {
        if (j->kind == GELU_ERF)
            for (long i = lo; i < hi; i++) dinp[i] = gelu_grad(inp[i], GELU_ERF) * dout[i];
        else
            for (long i = lo; i < hi; i++) dinp[i] = gelu_grad(inp[i], GELU_TANH) * dout[i];
    } else {
        if (j->kind == GELU_ERF)
            for (long i = lo; i < hi; i++) dinp[i] += gelu_grad(inp[i], GELU_ERF) * dout[i];
        else
            for (long i = lo; i < hi; i++) dinp[i] += gelu_grad(inp[i], GELU_TANH) * dout[i];
    }
}

static int n_blocks(long n) { return (int)((n + GELU_BLOCK - 1) / GELU_BLOCK); }

void gelu_forward(real *out, const real *inp, long n, GeluKind kind) {
    GeluJob j = {out, inp, NULL, n, kind, 0};
    tt_parallel_range_work(n_blocks(n), 30.0 * (double)n, gelu_forward_range, &j);
}

void gelu_backward(real *dinp, const real *inp, const real *dout, long n, GeluKind kind) {
    GeluJob j = {dinp, inp, dout, n, kind, 0};
    tt_parallel_range(n_blocks(n), gelu_backward_range, &j);
}

void gelu_backward_set(real *dinp, const real *inp, const real *dout, long n, GeluKind kind) {
    GeluJob j = {dinp, inp, dout, n, kind, 1};
    tt_parallel_range(n_blocks(n), gelu_backward_range, &j);
}
