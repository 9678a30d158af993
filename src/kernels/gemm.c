/* gemm.c: the one door to BLAS. Every matrix product of tutor goes through gemm(), which
 * picks sgemm or dgemm by the build's real type. */
#include <cblas.h>

#include "tutor/kernels.h"

void gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda, const real *B,
          int ldb, real beta, real *C, int ldc) {
    if (M == 0 || N == 0) return;
#if REAL_IS_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
