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
 * to a multiple of 64 with zero weights (any activation byte times 0 adds nothing). */
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q8_X86 1
#else
#define Q8_X86 0
#endif

int q8_padded_k(int K) { return (K + Q8_K_ALIGN - 1) / Q8_K_ALIGN * Q8_K_ALIGN; }

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
    return 0;
}

void q8_weights_free(Q8Weights *w) {
    if (!w) return;
    tt_free(w->q);
    tt_free(w->scale);
    tt_free(w->colsum);
    memset(w, 0, sizeof *w);
}

void q8_quantize_rows(const float *x, int M, int K, int ldx, uint8_t *out, int Kp, float *scale) {
    for (int m = 0; m < M; m++) {
        const float *r = x + (size_t)m * ldx;
        float mx = 0;
        for (int k = 0; k < K; k++) {
            float a = r[k] < 0 ? -r[k] : r[k];
            if (a > mx) mx = a;
        }
        float t = mx > 0 ? mx / 63.0f : 1.0f;
        float inv = 1.0f / t;
        uint8_t *o = out + (size_t)m * Kp;
        for (int k = 0; k < K; k++) o[k] = (uint8_t)(round_clamp(r[k] * inv, 63) + 64);
        memset(o + K, 64, (size_t)(Kp - K));
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
__attribute__((target("avx2"))) static inline int32_t hsum_epi32_256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* vpmaddubsw: u8 x s8 pairs summed into s16 (never saturating here), vpmaddwd with ones:
 * s16 pairs into s32. Four weight rows at a time share each activation load. */
__attribute__((target("avx2"))) static void dot_avx2(const uint8_t *a, int M, const Q8Weights *w, int n0, int n1,
                                                     int32_t *acc, int ldacc) {
    int Kp = w->Kp;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int m = 0; m < M; m++) {
        const uint8_t *ar = a + (size_t)m * Kp;
        int n = n0;
        for (; n + 4 <= n1; n += 4) {
            const int8_t *q0 = w->q + (size_t)n * Kp, *q1 = q0 + Kp, *q2 = q1 + Kp, *q3 = q2 + Kp;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
            for (int k = 0; k < Kp; k += 32) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(ar + k));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_loadu_si256((const __m256i *)(q0 + k))), ones));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_loadu_si256((const __m256i *)(q1 + k))), ones));
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_loadu_si256((const __m256i *)(q2 + k))), ones));
                s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_loadu_si256((const __m256i *)(q3 + k))), ones));
            }
            int32_t *o = acc + (size_t)m * ldacc + n;
            o[0] = hsum_epi32_256(s0), o[1] = hsum_epi32_256(s1), o[2] = hsum_epi32_256(s2), o[3] = hsum_epi32_256(s3);
        }
        for (; n < n1; n++) {
            const int8_t *q = w->q + (size_t)n * Kp;
            __m256i s = _mm256_setzero_si256();
            for (int k = 0; k < Kp; k += 32) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(ar + k));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_loadu_si256((const __m256i *)(q + k))), ones));
            }
            acc[(size_t)m * ldacc + n] = hsum_epi32_256(s);
        }
    }
}

/* vpdpbusd: u8 x s8 quadruples summed straight into s32. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void dot_vnni(const uint8_t *a, int M,
                                                                            const Q8Weights *w, int n0, int n1,
                                                                            int32_t *acc, int ldacc) {
    int Kp = w->Kp;
    for (int m = 0; m < M; m++) {
        const uint8_t *ar = a + (size_t)m * Kp;
        int n = n0;
        for (; n + 4 <= n1; n += 4) {
            const int8_t *q0 = w->q + (size_t)n * Kp, *q1 = q0 + Kp, *q2 = q1 + Kp, *q3 = q2 + Kp;
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (int k = 0; k < Kp; k += 64) {
                __m512i x = _mm512_loadu_si512((const void *)(ar + k));
                s0 = _mm512_dpbusd_epi32(s0, x, _mm512_loadu_si512((const void *)(q0 + k)));
                s1 = _mm512_dpbusd_epi32(s1, x, _mm512_loadu_si512((const void *)(q1 + k)));
                s2 = _mm512_dpbusd_epi32(s2, x, _mm512_loadu_si512((const void *)(q2 + k)));
                s3 = _mm512_dpbusd_epi32(s3, x, _mm512_loadu_si512((const void *)(q3 + k)));
            }
            int32_t *o = acc + (size_t)m * ldacc + n;
            o[0] = _mm512_reduce_add_epi32(s0), o[1] = _mm512_reduce_add_epi32(s1);
            o[2] = _mm512_reduce_add_epi32(s2), o[3] = _mm512_reduce_add_epi32(s3);
        }
        for (; n < n1; n++) {
            const int8_t *q = w->q + (size_t)n * Kp;
            __m512i s = _mm512_setzero_si512();
            for (int k = 0; k < Kp; k += 64)
                s = _mm512_dpbusd_epi32(s, _mm512_loadu_si512((const void *)(ar + k)), _mm512_loadu_si512((const void *)(q + k)));
            acc[(size_t)m * ldacc + n] = _mm512_reduce_add_epi32(s);
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
        dot_vnni(a, M, w, n0, n1, acc, ldacc);
        return;
    }
    if (path == Q8_AVX2 && q8_path_available(Q8_AVX2)) {
        dot_avx2(a, M, w, n0, n1, acc, ldacc);
        return;
    }
#endif
    dot_portable(a, M, w, n0, n1, acc, ldacc);
}

void q8_epilogue(const int32_t *acc, int ldacc, int M, const Q8Weights *w, int n0, int n1, const float *ascale,
                 const float *bias, float *out, int ldo) {
    for (int m = 0; m < M; m++)
        for (int n = n0; n < n1; n++) {
            int32_t v = acc[(size_t)m * ldacc + n] - 64 * w->colsum[n];
            out[(size_t)m * ldo + n] = (float)v * (ascale[m] * w->scale[n]) + (bias ? bias[n] : 0.0f);
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
    q8_quantize_rows(x, M, w->K, ldx, s->a, w->Kp, s->ascale);
    LinJob j = {path, s->a, s->ascale, bias, w, M, ldo, s->acc, out};
    tt_parallel_range((w->N + 15) / 16, lin_part, &j);
    return 0;
}

void q8_scratch_free(Q8Scratch *s) {
    tt_free(s->a);
    tt_free(s->acc);
    tt_free(s->ascale);
    memset(s, 0, sizeof *s);
}
