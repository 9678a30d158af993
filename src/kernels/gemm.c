/* gemm.c: the one door to BLAS. Every matrix product of tutor goes through gemm(), which
 * picks sgemm or dgemm by the build's real type. OpenBLAS itself runs single-threaded:
 * a large product is cut into row (or column) blocks run on tutor's own worker pool, so
 * there is one set of threads, no OpenBLAS spin-waiting beside ours, and a product inside
 * a parallel region (per attention head) simply runs on its caller's thread. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tutor/kernels.h"

static void blas(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda, const real *B, int ldb,
                 real beta, real *C, int ldc) {
#if REAL_IS_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
#endif
}

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, split_rows, parts;
    real alpha, beta;
    const real *A, *B;
    real *C;
} GemmJob;

static void gemm_blocks(int begin, int end, int part, void *arg) {
    const GemmJob *g = arg;
    for (int p = begin; p < end; p++) {
        if (g->split_rows) {
            int i0 = (int)((long)g->M * p / g->parts), i1 = (int)((long)g->M * (p + 1) / g->parts);
            const real *A = g->ta ? g->A + i0 : g->A + (long)i0 * g->lda;
            blas(g->ta, g->tb, i1 - i0, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb, g->beta,
                 g->C + (long)i0 * g->ldc, g->ldc);
        } else {
            int j0 = (int)((long)g->N * p / g->parts), j1 = (int)((long)g->N * (p + 1) / g->parts);
            const real *B = g->tb ? g->B + (long)j0 * g->ldb : g->B + j0;
            blas(g->ta, g->tb, g->M, j1 - j0, g->K, g->alpha, g->A, g->lda, B, g->ldb, g->beta, g->C + j0, g->ldc);
        }
    }
}

/* Time and FLOPs spent in gemm() from the calling thread (not nested calls), for the
 * benchmarks' breakdown. */
static double prof_seconds, prof_flops;

void gemm_profile(double *seconds, double *flops) {
    *seconds = prof_seconds;
    *flops = prof_flops;
}

/* Products smaller than this many multiply-adds are not worth waking a thread for. */
#define GEMM_SPLIT_MIN 262144.0

void gemm(int ta, int tb, int M, int N, int K, real alpha, const real *A, int lda, const real *B,
          int ldb, real beta, real *C, int ldc) {
    if (M == 0 || N == 0) return;
    int threads = tt_threads();
    double t0 = tt_now_s();
    prof_flops += 2.0 * M * N * K;
    if (threads <= 1 || (double)M * N * K < GEMM_SPLIT_MIN) {
        blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        prof_seconds += tt_now_s() - t0;
        return;
    }
    /* Blocks along the longer side, a few per thread so that the pool can even out a thread
     * the OS sets aside, each at least 64 wide so that BLAS stays efficient. */
    int split_rows = M >= N;
    int side = split_rows ? M : N;
    int parts = threads * 3;
    while (parts > threads && side / parts < 64) parts--;
    while (parts > 1 && side / parts < 16) parts--;
    GemmJob g = {ta, tb, M, N, K, lda, ldb, ldc, split_rows, parts, alpha, beta, A, B, C};
    tt_parallel_range(parts, gemm_blocks, &g);
    prof_seconds += tt_now_s() - t0;
}

/* ---- OpenBLAS kernel choice -------------------------------------------------------------
 * Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels from the CPU model number. It
 * does not know recent CPUs (Sapphire Rapids under KVM reads as "Prescott", SSE3 only) and
 * then runs sgemm at a fifth of the machine's speed. The choice is made when the library
 * loads, from OPENBLAS_CORETYPE, so the fix is to set that variable and start again. */
char *openblas_get_corename(void);

static int corename_is(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcasecmp(name, *list)) return 1;
    return 0;
}

const char *gemm_blas_core(void) { return openblas_get_corename(); }

const char *gemm_preferred_core(void) {
    const char *core = openblas_get_corename();
    if (!core) return NULL;
    /* cores whose kernels need nothing beyond SSE3/SSSE3/SSE4/AVX(1) */
    static const char *const weak[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                                       "Katmai", "Coppermine", "Northwood", "Banias", "Sandybridge",
                                       "Barcelona", "Bobcat", "Bulldozer", "Piledriver", "Steamroller",
                                       "Excavator", "Unknown", NULL};
    static const char *const avx2_cores[] = {"Haswell", "Zen", NULL};
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx512 && (corename_is(core, weak) || corename_is(core, avx2_cores))) {
        /* Zen 4 has AVX-512 too, but OpenBLAS's Zen kernels are tuned for it; keep them */
        if (corename_is(core, avx2_cores) && !strcasecmp(core, "Zen")) return NULL;
        return "SkylakeX";
    }
    if (avx2 && corename_is(core, weak)) return "Haswell";
    return NULL;
}

void gemm_fix_blas_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("TUTOR_BLAS_CORE_FIXED")) return;
    const char *want = gemm_preferred_core();
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("TUTOR_BLAS_CORE_FIXED", "1", 1);
    execv("/proc/self/exe", argv);
    /* no /proc: carry on with the slow kernels */
    unsetenv("OPENBLAS_CORETYPE");
}
