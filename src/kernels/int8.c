/* int8.c: 8-bit integer matrix products for int8 students (docs/int8.md).
 *
 * Weights W [N, K] (nn.Linear's layout) are quantized per output row, symmetric:
 * q[n][k] = round(w[n][k] / s_n), s_n = max_k |w[n][k]| / 127, |q| <= 127. Activations are
 * quantized per row, symmetric, to 7 bits: a[m][k] = round(x[m][k] / t_m), t_m = max_k
 * |x[m][k]| / 63, |a| <= 63, and stored unsigned as a + 64 in [1, 127] (the u8 operand of
 * vpmaddubsw / vpdpbusd). Then
 *     sum_k (a + 64) q = sum_k a q + 64 colsum_n,   colsum_n = sum_k q[n][k],
 * and y[m][n] = t_m s_n (sum_k (a+64) q - 64 colsum_n) + b_n.
 * With u8 <= 127 and |s8| <= 127 a pair of products is at most 2 * 127 * 127 = 32258 < 2^15:
 * vpmaddubsw never saturates, so the AVX2 path (vpmaddubsw + vpmaddwd), the AVX-512 VNNI path
 * (vpdpbusd) and the portable C loop compute the same int32 sums exactly, and the float
 * epilogue is one shared function: the three paths give bit-identical outputs. K is padded
 * to a multiple of 4 (Q8_K_ALIGN: one vpdpbusd quadruple) with zero weights (any activation
 * byte times 0 adds nothing). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/kernels.h"
#include "fastmath.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q8_X86 1
#else
#define Q8_X86 0
#endif

int q8_padded_k(int K) { return (K + Q8_K_ALIGN - 1) / Q8_K_ALIGN * Q8_K_ALIGN; }

/* [block][k / 4][column][k % 4]: one 64-byte load gives 16 columns x 4 consecutive k, the
 * operand of vpdpbusd against 4 activation bytes broadcast to every lane. */
static int pack(Q8Weights *w) {
    int blocks = (w->N + 15) / 16, g = w->Kp / 4;
    w->packed = tt_alloc((size_t)blocks * (size_t)g * 64);
    if (!w->packed) return tt_err("q8: out of memory packing a %d x %d matrix", w->N, w->K);
    for (int b = 0; b < blocks; b++)
        for (int k4 = 0; k4 < g; k4++) {
            int8_t *dst = w->packed + ((size_t)b * g + k4) * 64;
            for (int c = 0; c < 16; c++) {
                int n = b * 16 + c;
                for (int kk = 0; kk < 4; kk++) dst[c * 4 + kk] = n < w->N ? w->q[(size_t)n * w->Kp + k4 * 4 + kk] : 0;
            }
        }
    return 0;
}

static inline int round_clamp(float v, int lim) {
    /* round half away from zero, as nearbyint would not (ties to even depend on the mode) */
    float r = v >= 0 ? v + 0.5f : v - 0.5f;
    int i = (int)r;
    return i > lim ? lim : i < -lim ? -lim : i;
}

int q8_weights_quantize(Q8Weights *w, const float *src, int N, int K, int transposed) {
    memset(w, 0, sizeof *w);
    if (N < 1 || K < 1) return tt_err("q8: empty weight matrix (%d x %d)", N, K);
    int Kp = q8_padded_k(K);
    w->q = tt_alloc((size_t)N * (size_t)Kp);
    w->scale = tt_alloc(sizeof(float) * (size_t)N);
    w->colsum = tt_alloc(sizeof(int32_t) * (size_t)N);
    if (!w->q || !w->scale || !w->colsum) {
        q8_weights_free(w);
        return tt_err("q8: out of memory for a %d x %d weight matrix", N, K);
    }
    w->N = N, w->K = K, w->Kp = Kp;
    for (int n = 0; n < N; n++) {
        float mx = 0;
        for (int k = 0; k < K; k++) {
            float v = transposed ? src[(size_t)k * N + n] : src[(size_t)n * K + k];
            float a = v < 0 ? -v : v;
            if (a > mx) mx = a;
        }
        float s = mx > 0 ? mx / 127.0f : 1.0f;
        int8_t *q = w->q + (size_t)n * Kp;
        int32_t cs = 0;
        for (int k = 0; k < K; k++) {
            float v = transposed ? src[(size_t)k * N + n] : src[(size_t)n * K + k];
            q[k] = (int8_t)round_clamp(v / s, 127);
            cs += q[k];
        }
        memset(q + K, 0, (size_t)(Kp - K));
        w->scale[n] = s;
        w->colsum[n] = cs;
    }
    if (pack(w)) {
        q8_weights_free(w);
        return -1;
    }
    return 0;
}

int q8_weights_from_parts(Q8Weights *w, const int8_t *q, const float *scale, int N, int K) {
    memset(w, 0, sizeof *w);
    int Kp = q8_padded_k(K);
    w->q = tt_alloc((size_t)N * (size_t)Kp);
    w->scale = tt_alloc(sizeof(float) * (size_t)N);
    w->colsum = tt_alloc(sizeof(int32_t) * (size_t)N);
    if (!w->q || !w->scale || !w->colsum) {
        q8_weights_free(w);
        return tt_err("q8: out of memory");
    }
    w->N = N, w->K = K, w->Kp = Kp;
    for (int n = 0; n < N; n++) {
        int32_t cs = 0;
        for (int k = 0; k < K; k++) {
            int8_t v = q[(size_t)n * K + k];
            if (v < -127) {
                q8_weights_free(w);
                return tt_err("q8: weight %d of row %d is -128 (the format keeps |q| <= 127)", k, n);
            }
            w->q[(size_t)n * Kp + k] = v;
            cs += v;
        }
        memset(w->q + (size_t)n * Kp + K, 0, (size_t)(Kp - K));
        if (!(scale[n] > 0) || scale[n] > 1e30f) {
            q8_weights_free(w);
            return tt_err("q8: scale of row %d is %g (must be positive and finite)", n, (double)scale[n]);
        }
        w->scale[n] = scale[n];
        w->colsum[n] = cs;
    }
    if (pack(w)) {
        q8_weights_free(w);
        return -1;
    }
    return 0;
}

void q8_weights_free(Q8Weights *w) {
    if (!w) return;
    tt_free(w->q);
    tt_free(w->packed);
    tt_free(w->scale);
    tt_free(w->colsum);
    memset(w, 0, sizeof *w);
}

/* The activation bytes of one row: round half away from zero after clamping to +-63 (the
 * same as round_clamp), written without branches so that it vectorises */
static void quantize_row(const float *restrict r, int K, float inv, uint8_t *restrict o) {
    for (int k = 0; k < K; k++) {
        float v = r[k] * inv;
        v = v > 63.0f ? 63.0f : v;
        v = v < -63.0f ? -63.0f : v;
        o[k] = (uint8_t)((int)(v + (v >= 0 ? 0.5f : -0.5f)) + 64);
    }
}

#if Q8_X86
/* The same operations 16 lanes at a time. The largest |x| by vmaxps, which returns its second
 * operand when the first is NaN, so NaN counts as 0 as in tt_absmaxf (for non-negative floats
 * the float order is the order of their bits: the same maximum). Then the product, the
 * clamp, +-0.5 by the sign (for -0 that is -0.5 where the scalar code adds +0.5: both
 * truncate to 0), truncation, + 64, and the low byte of each lane. */
__attribute__((target("avx512f,avx512bw"))) static void quantize_rows_avx512(const float *x, int M, int K, int ldx,
                                                                           uint8_t *out, int Kp, float *scale) {
    const __m512 hi = _mm512_set1_ps(63.0f), lo = _mm512_set1_ps(-63.0f), half = _mm512_set1_ps(0.5f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), z = _mm512_set1_epi32(64);
    for (int m = 0; m < M; m++) {
        const float *restrict r = x + (size_t)m * ldx;
        __m512 m0 = _mm512_setzero_ps(), m1 = m0;
        int k = 0;
        for (; k + 32 <= K; k += 32) {
            m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + k)), m0);
            m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + k + 16)), m1);
        }
        for (; k < K; k += 16) {
            __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(mk, r + k)), m0);
        }
        float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        float t = mx > 0 ? mx / 63.0f : 1.0f;
        const __m512 vinv = _mm512_set1_ps(1.0f / t);
        uint8_t *restrict o = out + (size_t)m * Kp;
        for (k = 0; k < K; k += 16) {
            __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, r + k), vinv);
            v = _mm512_min_ps(hi, v); /* hi < v ? hi : v, NaN kept, as the C code */
            v = _mm512_max_ps(lo, v);
            __m512 h = _mm512_castsi512_ps(
                _mm512_or_si512(_mm512_castps_si512(half), _mm512_and_si512(_mm512_castps_si512(v), sign)));
            __m512i i = _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_add_ps(v, h)), z);
            _mm512_mask_cvtepi32_storeu_epi8(o + k, mk, i);
        }
        if (Kp > K) memset(o + K, 64, (size_t)(Kp - K));
        scale[m] = t;
    }
}

/* The same with AVX2, 8 lanes at a time (the tail of a row in C, the same operations), the
 * low byte of each lane gathered by a byte shuffle (as the scalar cast keeps it: a NaN's lane
 * gives 64 on every path). */
__attribute__((target("avx2"))) static void quantize_rows_avx2(const float *x, int M, int K, int ldx, uint8_t *out,
                                                               int Kp, float *scale) {
    const __m256 hi = _mm256_set1_ps(63.0f), lo = _mm256_set1_ps(-63.0f), half = _mm256_set1_ps(0.5f);
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u), z = _mm256_set1_epi32(64);
    const __m256i low = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    int K8 = K & ~7;
    for (int m = 0; m < M; m++) {
        const float *restrict r = x + (size_t)m * ldx;
        float mx = tt_absmaxf(r, K);
        float t = mx > 0 ? mx / 63.0f : 1.0f;
        float inv = 1.0f / t;
        const __m256 vinv = _mm256_set1_ps(inv);
        uint8_t *restrict o = out + (size_t)m * Kp;
        for (int k = 0; k < K8; k += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(r + k), vinv);
            v = _mm256_max_ps(lo, _mm256_min_ps(hi, v)); /* NaN kept, as the C code */
            __m256 h = _mm256_or_ps(half, _mm256_and_ps(v, _mm256_castsi256_ps(sign)));
            __m256i i = _mm256_shuffle_epi8(_mm256_add_epi32(_mm256_cvttps_epi32(_mm256_add_ps(v, h)), z), low);
            __m128i b = _mm_unpacklo_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
            _mm_storel_epi64((__m128i *)(void *)(o + k), b);
        }
        quantize_row(r + K8, K - K8, inv, o + K8);
        if (Kp > K) memset(o + K, 64, (size_t)(Kp - K));
        scale[m] = t;
    }
}
#endif

void q8_quantize_rows(Q8Path path, const float *x, int M, int K, int ldx, uint8_t *out, int Kp, float *scale) {
#if Q8_X86
    if (path == Q8_VNNI && q8_path_available(Q8_VNNI)) {
        quantize_rows_avx512(x, M, K, ldx, out, Kp, scale);
        return;
    }
    if (path == Q8_AVX2 && q8_path_available(Q8_AVX2)) {
        quantize_rows_avx2(x, M, K, ldx, out, Kp, scale);
        return;
    }
#endif
    for (int m = 0; m < M; m++) {
        const float *r = x + (size_t)m * ldx;
        float mx = tt_absmaxf(r, K);
        float t = mx > 0 ? mx / 63.0f : 1.0f;
        uint8_t *o = out + (size_t)m * Kp;
        quantize_row(r, K, 1.0f / t, o);
        if (Kp > K) memset(o + K, 64, (size_t)(Kp - K));
        scale[m] = t;
    }
}

/* ---- the integer products: acc[m][n] = sum_k a[m][k] * q[n][k] (a the u8 bytes) ---- */

static void dot_portable(const uint8_t *a, int M, const Q8Weights *w, int n0, int n1, int32_t *acc, int ldacc) {
    int Kp = w->Kp;
    for (int m = 0; m < M; m++) {
        const uint8_t *ar = a + (size_t)m * Kp;
        for (int n = n0; n < n1; n++) {
            const int8_t *q = w->q + (size_t)n * Kp;
            int32_t s = 0;
            for (int k = 0; k < Kp; k++) s += (int32_t)ar[k] * (int32_t)q[k];
            acc[(size_t)m * ldacc + n] = s;
        }
    }
}

#if Q8_X86
/* Both SIMD kernels walk the packed layout: per group of 4 k, 4 activation bytes of a row
 * are broadcast to every 32-bit lane and multiplied with 16 columns x 4 k of weights, so each
 * lane accumulates one output column and no horizontal sums are needed. n0 is a multiple of
 * 16 (the callers split columns in blocks of 16). */
/* What a fused kernel does with a finished tile instead of storing its int32 sums: the same
 * expression as q8_epilogue, element by element (so every path rounds alike). */
typedef struct {
    const float *ascale, *bias;
    float *out;
    int ldo;
} Ep;

static inline void tile_out(const Ep *ep, const Q8Weights *w, const int32_t *t, int ldt, int m, int rows, int n, int cols) {
    const int32_t *restrict cs = w->colsum + n;
    const float *restrict sc = w->scale + n, *restrict bi = ep->bias ? ep->bias + n : NULL;
    for (int r = 0; r < rows; r++) {
        float am = ep->ascale[m + r];
        float *restrict o = ep->out + (size_t)(m + r) * ep->ldo + n;
        const int32_t *restrict a = t + (size_t)r * ldt;
        if (bi)
            for (int c = 0; c < cols; c++) o[c] = (float)(a[c] - 64 * cs[c]) * (am * sc[c]) + bi[c];
        else
            for (int c = 0; c < cols; c++) o[c] = (float)(a[c] - 64 * cs[c]) * (am * sc[c]);
    }
}

static inline int32_t load4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* AVX2: vpmaddubsw (u8 x s8 pairs into s16: never saturating here) then vpmaddwd with ones
 * (the two s16 of a column into its s32); the 16 columns as two ymm halves; tiles of 2 rows
 * x 16 columns (4 accumulators). */
__attribute__((target("avx2"))) static void dot_avx2(const uint8_t *a, int M, const Q8Weights *w, int n0, int n1,
                                                     int32_t *acc, int ldacc, const Ep *ep) {
    int Kp = w->Kp, g = Kp / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int b = n0 / 16; b * 16 < n1; b++) {
        const int8_t *wb = w->packed + (size_t)b * g * 64;
        int cols = n1 - b * 16 < 16 ? n1 - b * 16 : 16;
        for (int m = 0; m < M; m += 2) {
            int two = m + 1 < M;
            const uint8_t *a0 = a + (size_t)m * Kp, *a1 = two ? a0 + Kp : a0;
            __m256i s0l = _mm256_setzero_si256(), s0h = s0l, s1l = s0l, s1h = s0l;
            for (int k4 = 0; k4 < g; k4++) {
                __m256i wl = _mm256_loadu_si256((const __m256i *)(wb + (size_t)k4 * 64));
                __m256i wh = _mm256_loadu_si256((const __m256i *)(wb + (size_t)k4 * 64 + 32));
                __m256i x0 = _mm256_set1_epi32(load4(a0 + 4 * k4)), x1 = _mm256_set1_epi32(load4(a1 + 4 * k4));
                s0l = _mm256_add_epi32(s0l, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, wl), ones));
                s0h = _mm256_add_epi32(s0h, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, wh), ones));
                s1l = _mm256_add_epi32(s1l, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, wl), ones));
                s1h = _mm256_add_epi32(s1h, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, wh), ones));
            }
            if (ep && cols == 16) {
                /* the epilogue on the registers: tile_out's operations in its order */
                int n = b * 16;
                __m256i s[2][2] = {{s0l, s0h}, {s1l, s1h}};
                for (int hh = 0; hh < 2; hh++) {
                    __m256i cs64 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(w->colsum + n + 8 * hh)), 6);
                    __m256 sc = _mm256_loadu_ps(w->scale + n + 8 * hh);
                    for (int r = 0; r < 1 + two; r++) {
                        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s[r][hh], cs64)),
                                                 _mm256_mul_ps(_mm256_set1_ps(ep->ascale[m + r]), sc));
                        if (ep->bias) y = _mm256_add_ps(y, _mm256_loadu_ps(ep->bias + n + 8 * hh));
                        _mm256_storeu_ps(ep->out + (size_t)(m + r) * ep->ldo + n + 8 * hh, y);
                    }
                }
                continue;
            }
            int32_t t[2][16];
            _mm256_storeu_si256((__m256i *)t[0], s0l), _mm256_storeu_si256((__m256i *)(t[0] + 8), s0h);
            _mm256_storeu_si256((__m256i *)t[1], s1l), _mm256_storeu_si256((__m256i *)(t[1] + 8), s1h);
            if (ep) {
                tile_out(ep, w, t[0], 16, m, 1 + two, b * 16, cols);
                continue;
            }
            memcpy(acc + (size_t)m * ldacc + b * 16, t[0], sizeof(int32_t) * (size_t)cols);
            if (two) memcpy(acc + (size_t)(m + 1) * ldacc + b * 16, t[1], sizeof(int32_t) * (size_t)cols);
        }
    }
}

/* AVX-512 VNNI: vpdpbusd (u8 x s8 quadruples straight into s32). A tile is R rows x NB
 * blocks of 16 columns with R * NB <= 16 accumulators (enough independent sums to cover
 * vpdpbusd's latency at two per cycle): 8 x 2, 4 x 4, 2 x 8, 1 x 8, so a batch of one row
 * does no work for rows it does not have. The epilogue runs on the accumulators in registers:
 * the same operations, in the same order, as tile_out and q8_epilogue (an int32 subtraction,
 * the conversion, two float products and the bias: no fused multiply-add), so the output
 * bits do not depend on the path. */
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* The body of one tile shape, R and NB constants (arrays of exactly R x NB, loops unrolled,
 * so that the accumulators live in registers) */
#define VNNI_TILE(R, NB)                                                                                              \
    static VNNI_TARGET void vnni_tile_##R(const uint8_t *a, int m, const Q8Weights *w, int b, int n1, int32_t *acc, \
                                          int ldacc, const Ep *ep) {                                                  \
        int Kp = w->Kp, g = Kp / 4, nblocks = (w->N + 15) / 16;                                                       \
        const uint8_t *ar[R];                                                                                         \
        const int8_t *wp[NB];                                                                                         \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) ar[r] = a + (size_t)(m + r) * Kp;                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) wp[j] =                                                  \
            w->packed + (size_t)(b + j < nblocks ? b + j : b) * g * 64;                                               \
        __m512i s[R][NB];                                                                                             \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                           \
            _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) s[r][j] = _mm512_setzero_si512();                    \
        for (int k4 = 0; k4 < g; k4++) {                                                                              \
            __m512i v[NB];                                                                                            \
            _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) v[j] =                                               \
                _mm512_loadu_si512((const void *)(wp[j] + (size_t)k4 * 64));                                          \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                     \
                __m512i x = _mm512_set1_epi32(load4(ar[r] + 4 * k4));                                                 \
                _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) s[r][j] = _mm512_dpbusd_epi32(s[r][j], x, v[j]); \
            }                                                                                                         \
        }                                                                                                             \
        _Pragma("GCC unroll 8") for (int j = 0; j < NB; j++) {                                                        \
            int n = (b + j) * 16;                                                                                     \
            if (n >= n1) break;                                                                                       \
            __mmask16 mk = n1 - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n1 - n)) - 1);                      \
            if (!ep) {                                                                                                \
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                   \
                    _mm512_mask_storeu_epi32(acc + (size_t)(m + r) * ldacc + n, mk, s[r][j]);                         \
                continue;                                                                                             \
            }                                                                                                         \
            __m512i cs64 = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(mk, w->colsum + n), 6);                         \
            __m512 sc = _mm512_maskz_loadu_ps(mk, w->scale + n);                                                      \
            __m512 bi = ep->bias ? _mm512_maskz_loadu_ps(mk, ep->bias + n) : _mm512_setzero_ps();                     \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                     \
                __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s[r][j], cs64)),                         \
                                         _mm512_mul_ps(_mm512_set1_ps(ep->ascale[m + r]), sc));                       \
                if (ep->bias) y = _mm512_add_ps(y, bi);                                                               \
                _mm512_mask_storeu_ps(ep->out + (size_t)(m + r) * ep->ldo + n, mk, y);                                \
            }                                                                                                         \
        }                                                                                                             \
    }
VNNI_TILE(1, 8)
VNNI_TILE(2, 8)
VNNI_TILE(3, 4)
VNNI_TILE(4, 4)
VNNI_TILE(5, 2)
VNNI_TILE(6, 2)
VNNI_TILE(7, 2)
VNNI_TILE(8, 2)

typedef void (*VnniTileFn)(const uint8_t *, int, const Q8Weights *, int, int, int32_t *, int, const Ep *);
static const VnniTileFn vnni_tiles[9] = {NULL,        vnni_tile_1, vnni_tile_2, vnni_tile_3, vnni_tile_4,
                                         vnni_tile_5, vnni_tile_6, vnni_tile_7, vnni_tile_8};
static const int vnni_blocks[9] = {0, 8, 8, 4, 4, 2, 2, 2, 2};

VNNI_TARGET static void dot_vnni(const uint8_t *a, int M, const Q8Weights *w, int n0, int n1, int32_t *acc, int ldacc,
                                 const Ep *ep) {
    /* columns in chunks whose weights fit in L1 (about 32 KB); in a chunk, rows outside and
     * columns inside, so that a tile's activation rows and the chunk's weights stay close */
    int chunk = (32768 / w->Kp) / 128 * 128;
    if (chunk < 128) chunk = 128;
    for (int c0 = n0; c0 < n1; c0 += chunk) {
        int c1 = c0 + chunk < n1 ? c0 + chunk : n1;
        for (int m = 0; m < M; m += 8) {
            int R = M - m < 8 ? M - m : 8, NB = vnni_blocks[R];
            for (int b = c0 / 16; b * 16 < c1; b += NB) vnni_tiles[R](a, m, w, b, c1, acc, ldacc, ep);
        }
    }
}
#endif

int q8_path_available(Q8Path p) {
    switch (p) {
    case Q8_PORTABLE: return 1;
#if Q8_X86
    case Q8_AVX2: return __builtin_cpu_supports("avx2");
    case Q8_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
#endif
    default: return 0;
    }
}

Q8Path q8_best_path(void) {
    static int best = -1;
    if (best < 0) {
        const char *force = getenv("TUTOR_INT8_PATH");
        best = q8_path_available(Q8_VNNI) ? Q8_VNNI : q8_path_available(Q8_AVX2) ? Q8_AVX2 : Q8_PORTABLE;
        if (force) {
            Q8Path want = !strcmp(force, "portable") ? Q8_PORTABLE : !strcmp(force, "avx2") ? Q8_AVX2
                                                                   : !strcmp(force, "vnni") ? Q8_VNNI : (Q8Path)-1;
            if ((int)want >= 0 && q8_path_available(want)) best = want;
        }
    }
    return (Q8Path)best;
}

const char *q8_path_name(Q8Path p) {
    return p == Q8_VNNI ? "avx512-vnni (vpdpbusd)" : p == Q8_AVX2 ? "avx2 (vpmaddubsw)" : "portable C";
}

void q8_dot(Q8Path path, const uint8_t *a, int M, const Q8Weights *w, int n0, int n1, int32_t *acc, int ldacc) {
#if Q8_X86
    if (path == Q8_VNNI && q8_path_available(Q8_VNNI)) {
        dot_vnni(a, M, w, n0, n1, acc, ldacc, NULL);
        return;
    }
    if (path == Q8_AVX2 && q8_path_available(Q8_AVX2)) {
        dot_avx2(a, M, w, n0, n1, acc, ldacc, NULL);
        return;
    }
#endif
    dot_portable(a, M, w, n0, n1, acc, ldacc);
}

void q8_epilogue(const int32_t *acc, int ldacc, int M, const Q8Weights *w, int n0, int n1, const float *ascale,
                 const float *bias, float *out, int ldo) {
    const int32_t *restrict cs = w->colsum;
    const float *restrict sc = w->scale;
    for (int m = 0; m < M; m++) {
        const int32_t *restrict a = acc + (size_t)m * ldacc;
        float *restrict o = out + (size_t)m * ldo;
        float am = ascale[m];
        if (bias)
            for (int n = n0; n < n1; n++) o[n] = (float)(a[n] - 64 * cs[n]) * (am * sc[n]) + bias[n];
        else
            for (int n = n0; n < n1; n++) o[n] = (float)(a[n] - 64 * cs[n]) * (am * sc[n]);
    }
}

typedef struct {
    Q8Path path;
    const uint8_t *a;
    const float *ascale, *bias;
    const Q8Weights *w;
    int M, ldo;
    int32_t *acc;
    float *out;
} LinJob;

static void lin_part(int begin, int end, int part, void *ctx) {
    const LinJob *j = ctx;
    int n0 = begin * 16, n1 = end * 16 < j->w->N ? end * 16 : j->w->N;
    if (n0 >= n1) return;
#if Q8_X86
    /* the SIMD paths finish each tile in registers' reach: no (M, N) int32 round trip */
    Ep ep = {j->ascale, j->bias, j->out, j->ldo};
    if (j->path == Q8_VNNI && q8_path_available(Q8_VNNI)) {
        dot_vnni(j->a, j->M, j->w, n0, n1, NULL, 0, &ep);
        return;
    }
    if (j->path == Q8_AVX2 && q8_path_available(Q8_AVX2)) {
        dot_avx2(j->a, j->M, j->w, n0, n1, NULL, 0, &ep);
        return;
    }
#endif
    q8_dot(j->path, j->a, j->M, j->w, n0, n1, j->acc, j->w->N);
    q8_epilogue(j->acc, j->w->N, j->M, j->w, n0, n1, j->ascale, j->bias, j->out, j->ldo);
}

int q8_linear(Q8Path path, const float *x, int M, int ldx, const Q8Weights *w, const float *bias, float *out, int ldo,
              Q8Scratch *s) {
    size_t need_a = (size_t)M * (size_t)w->Kp, need_acc = (size_t)M * (size_t)w->N;
    /* grows once to the largest call; decoding reuses it */
    if (s->cap_a < need_a) {
        tt_free(s->a);
        s->cap_a = (s->a = tt_alloc(need_a)) ? need_a : 0;
    }
    if (s->cap_acc < need_acc) {
        tt_free(s->acc);
        s->cap_acc = (s->acc = tt_alloc(sizeof(int32_t) * need_acc)) ? need_acc : 0;
    }
    if (s->cap_rows < (size_t)M) {
        tt_free(s->ascale);
        s->cap_rows = (s->ascale = tt_alloc(sizeof(float) * (size_t)M)) ? (size_t)M : 0;
    }
    if (s->cap_a < need_a || s->cap_acc < need_acc || s->cap_rows < (size_t)M)
        return tt_err("q8: out of memory for %d rows of %d x %d", M, w->N, w->K);
    q8_quantize_rows(path, x, M, w->K, ldx, s->a, w->Kp, s->ascale);
    LinJob j = {path, s->a, s->ascale, bias, w, M, ldo, s->acc, out};
    /* a small product runs on the caller's thread (an int8 multiply-add counted as half an
     * operation: VNNI does four per lane where float does one) */
    tt_parallel_range_work((w->N + 15) / 16, 0.5 * M * w->N * w->K, lin_part, &j);
    return 0;
}

void q8_scratch_free(Q8Scratch *s) {
    tt_free(s->a);
    tt_free(s->acc);
    tt_free(s->ascale);
    memset(s, 0, sizeof *s);
}
