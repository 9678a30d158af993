/* kernels.h: the numerical building blocks of the transformer, as plain functions on
 * real arrays (float, or double in the gradient-check build). Each has a _forward and a
 * _backward; backward functions ACCUMULATE (+=) into every gradient they write, so that
 * tied weights, residual branches and gradient accumulation need no extra code.
 * Shapes are given in comments: N rows (tokens), C channels, OC output channels. */
#ifndef TUTOR_KERNELS_H
#define TUTOR_KERNELS_H

#include <stdint.h>

#include "tutor/core.h"

/* C = alpha * op(A) op(B) + beta * C, row-major; ta/tb: 1 = transpose. BLAS underneath. */
void gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda, const real *B,
          int ldb, real beta, real *C, int ldc);

/* Seconds and FLOPs spent in gemm() so far (calls made from parallel regions, as in
 * attention, are not counted): for benchmark breakdowns. Not thread-safe. */
void gemm_profile(double *seconds, double *flops);

/* OpenBLAS's kernel set ("Haswell", "SkylakeX", ...), and the one tutor asks for when
 * OpenBLAS misreads the CPU (a weaker set than the CPU's instructions allow: Debian 12's
 * OpenBLAS takes Sapphire Rapids for "Prescott" and runs sgemm 5x slower), else NULL. */
const char *gemm_blas_core(void);
const char *gemm_preferred_core(void);
/* Called first thing by programs: when gemm_preferred_core() names a better set and the
 * user has not set OPENBLAS_CORETYPE, sets it and re-executes the program (OpenBLAS reads
 * it only when it loads). Returns when nothing needs doing or the re-exec failed. */
void gemm_fix_blas_core(char **argv);

/* Weight layouts: Hugging Face's nn.Linear stores [OC, C]; GPT-2's Conv1D stores [C, OC]. */
typedef enum { W_OUT_IN = 0, W_IN_OUT = 1 } WeightLayout;

/* out (N, ldo) cols [0,OC) = inp (N,C) @ W + b; b may be NULL. ldo >= OC lets q, k and v be
 * written side by side into one (N, 3C) buffer. */
void linear_forward(real *out, int ldo, const real *inp, const real *w, const real *b, int N, int C,
                    int OC, WeightLayout layout);
/* dinp (N,C) += dout W; dw += dout^T inp (shape of w); db += column sums of dout.
 * dout is (N, ldd) cols [0,OC). dinp may be NULL (no input gradient needed). */
void linear_backward(real *dinp, real *dw, real *db, const real *dout, int ldd, const real *inp,
                     const real *w, int N, int C, int OC, WeightLayout layout);

/* The same, but dinp is overwritten (= dout W) rather than accumulated: saves clearing a
 * scratch buffer first. */
void linear_backward_set(real *dinp, real *dw, real *db, const real *dout, int ldd, const real *inp,
                         const real *w, int N, int C, int OC, WeightLayout layout);

/* out (N,C) = layernorm(inp) * w + b; mean, rstd (N) kept for backward (may be NULL when
 * backward is not needed). */
void layernorm_forward(real *out, real *mean, real *rstd, const real *inp, const real *w,
                       const real *b, int N, int C, double eps);
void layernorm_backward(real *dinp, real *dw, real *db, const real *dout, const real *inp,
                        const real *w, const real *mean, const real *rstd, int N, int C);

typedef enum { GELU_ERF = 0, GELU_TANH = 1 } GeluKind;
/* out (n) = gelu(inp); in place (out == inp) allowed. */
void gelu_forward(real *out, const real *inp, long n, GeluKind kind);
/* dinp (n) += gelu'(inp) * dout */
void gelu_backward(real *dinp, const real *inp, const real *dout, long n, GeluKind kind);
/* dinp (n) = gelu'(inp) * dout (overwrites) */
void gelu_backward_set(real *dinp, const real *inp, const real *dout, long n, GeluKind kind);

/* out (N,C) = scale * wte[ids[i]] + wpe[pos_offset + i % T] for i in [0, N), N = B*T.
 * wpe may be NULL. */
void embedding_forward(real *out, const int *ids, const real *wte, const real *wpe, int B, int T,
                       int C, real scale, int pos_offset);
void embedding_backward(real *dwte, real *dwpe, const real *dout, const int *ids, int B, int T,
                        int C, real scale, int pos_offset);

/* Dropout on attention weights: probs_drop (B,H,Tq,Tk) receives the dropped weights that
 * multiply v, mask their bytes. NULL or p == 0: none. */
typedef struct {
    float p;
    real *probs_drop;
    uint8_t *mask;
    Rng *rng;
} AttnDropout;

/* Multi-head attention core for B sequences, H heads of size D = C/H.
 * q (B, Tq, ldq): the query of row t is q[(b*Tq + t)*ldq + h*D + i]; likewise k, v (B, Tk, ld).
 * key_mask (B, Tk): 0 = padding key, ignored; NULL = every key valid. causal: key j > query t
 * is ignored (Tq == Tk). scale multiplies q.k. probs (B, H, Tq, Tk) receives the attention
 * weights (kept for backward); out (B, Tq, C) the heads side by side. A query whose keys are
 * all masked gets zero weights and a zero output. */
void attention_forward(real *out, real *probs, const real *q, int ldq, const real *k, int ldk,
                       const real *v, int ldv, const int *key_mask, int B, int Tq, int Tk, int H,
                       int C, int causal, real scale, const AttnDropout *drop);
/* dq, dk, dv (same layouts as q, k, v) from dout (B,Tq,C). Unlike the other backward
 * functions these are WRITTEN, not accumulated: each (sequence, head) block of them is
 * produced by exactly one product. scratch: 2*Tq*Tk reals for each of tt_threads() threads. */
void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *probs,
                        const real *q, int ldq, const real *k, int ldk, const real *v, int ldv,
                        int B, int Tq, int Tk, int H, int C, real scale, const AttnDropout *drop,
                        real *scratch);

/* Dropout with probability p: out = inp * mask / (1 - p), mask (n) bytes drawn from rng.
 * In place allowed. p == 0: copy. */
void dropout_forward(real *out, uint8_t *mask, const real *inp, long n, float p, Rng *rng);
void dropout_backward(real *dinp, const uint8_t *mask, const real *dout, long n, float p);

/* Log-softmax statistics of one row of logits (V): max and log-sum-exp, in double. */
void logsumexp_row(const real *logits, int V, double *max_out, double *lse_out);

/* out = log_softmax(x / tau) of one row of V logits, in double: the one log-softmax every
 * distribution comparison (KD objectives, exposure bias, rewards) uses. */
void log_softmax_row(const real *x, int V, double tau, double *out);
/* Both log_softmax(x / tau) and softmax(x / tau), one exp per entry. */
void softmax_row_both(const real *x, int V, double tau, double *logp, double *p);

/* Cross-entropy fused with the vocabulary projection, chunked so that no (N, V) logits
 * matrix is kept. x (N,C) final hidden states, w (V,C) the (tied) output embedding, bias (V)
 * or NULL; labels (N), -100 = ignored. Returns the sum over counted tokens of the token loss
 * (label smoothing eps as PyTorch's CrossEntropyLoss: (1-eps)*nll + eps*mean_v(-logp)),
 * and with dx != NULL adds grad_scale * d(sum loss)/dx to dx, dw, dbias.
 * chunk: logits (rows, V) scratch of chunk_rows*V reals. n_counted receives the number of
 * labels != -100. */
double vocab_xent(const real *x, const real *w, const real *bias, const int *labels, int N, int C,
                  int V, double label_smoothing, double grad_scale, real *dx, real *dw, real *dbias,
                  real *chunk, int chunk_rows, long *n_counted);

/* ---- int8 matrix products (kernels/int8.c; docs/int8.md) ------------------------------------
 * Weights per output row symmetric int8 (|q| <= 127), activations per row symmetric 7-bit
 * stored as u8 = a + 64: no path can saturate, so the portable, AVX2 (vpmaddubsw) and AVX-512
 * VNNI (vpdpbusd) products are the same integers, and outputs are bit-identical. */
#define Q8_K_ALIGN 4
typedef enum { Q8_PORTABLE = 0, Q8_AVX2 = 1, Q8_VNNI = 2 } Q8Path;
typedef struct {
    int N, K, Kp;      /* out x in; Kp = K padded to Q8_K_ALIGN with zero weights */
    int8_t *q;         /* (N, Kp) */
    int8_t *packed;    /* the SIMD layout: blocks of 16 columns (N padded with zero rows), each
                          Kp / 4 groups of 16 x 4 bytes: [block][k / 4][column][k % 4] */
    float *scale;      /* (N): w[n][k] ~ q[n][k] * scale[n] */
    int32_t *colsum;   /* (N): sum_k q[n][k] */
} Q8Weights;
typedef struct {
    uint8_t *a;
    int32_t *acc;
    float *ascale;
    size_t cap_a, cap_acc, cap_rows;
} Q8Scratch;
int q8_padded_k(int K);
/* From float weights: src is (N, K) row-major, or (K, N) when transposed (GPT-2's Conv1D). */
int q8_weights_quantize(Q8Weights *w, const float *src, int N, int K, int transposed);
/* From stored int8 rows (N, K) and their scales; refuses -128 and non-positive scales. */
int q8_weights_from_parts(Q8Weights *w, const int8_t *q, const float *scale, int N, int K);
void q8_weights_free(Q8Weights *w);
/* Rows of x (M, K, stride ldx) to u8 = round(x / t) + 64, t = max|x| / 63 per row (scale[m] = t);
 * out is (M, Kp), the padding 64. The VNNI path quantizes with AVX-512, the AVX2 one with
 * AVX2, the portable one in C: the same bytes and scales. */
void q8_quantize_rows(Q8Path path, const float *x, int M, int K, int ldx, uint8_t *out, int Kp, float *scale);
int q8_path_available(Q8Path p);
/* The fastest path this CPU has (TUTOR_INT8_PATH=portable|avx2|vnni forces an available one). */
Q8Path q8_best_path(void);
const char *q8_path_name(Q8Path p);
/* acc[m][n] = sum_k a[m][k] * q[n][k] over the padded K, for n in [n0, n1); n0 a multiple of 16
 * for the SIMD paths (the portable one takes any). */
void q8_dot(Q8Path path, const uint8_t *a, int M, const Q8Weights *w, int n0, int n1, int32_t *acc, int ldacc);
/* out[m][n] = (acc - 64 colsum[n]) * ascale[m] * scale[n] + bias[n] (bias may be NULL). */
void q8_epilogue(const int32_t *acc, int ldacc, int M, const Q8Weights *w, int n0, int n1, const float *ascale,
                 const float *bias, float *out, int ldo);
/* y = x W^T + b with x quantized on the fly; columns split over the worker pool; s grows to
 * the largest call and is reused. 0, or -1 when its scratch cannot be had. */
int q8_linear(Q8Path path, const float *x, int M, int ldx, const Q8Weights *w, const float *bias, float *out,
              int ldo, Q8Scratch *s);
void q8_scratch_free(Q8Scratch *s);

#endif
