/* bootstrap.c: paired bootstrap resampling (Koehn 2004) for the difference between two
 * systems on one test set: is B's gain over A larger than what resampling the test set
 * produces? Corpus metrics (BLEU, chrF) are recomputed from resampled sufficient
 * statistics, per-example metrics (ROUGE) are averaged. Seeded with tutor's Rng. */
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/metrics.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bootstrap_summarize(double *deltas, int n_resamples, uint64_t seed, BootstrapResult *out) {
    double mean = 0;
    int b_better = 0;
    for (int r = 0; r < n_resamples; r++) {
        mean += deltas[r];
        b_better += deltas[r] > 0;
    }
    qsort(deltas, (size_t)n_resamples, sizeof *deltas, cmp_double);
    int lower = n_resamples / 40, upper = n_resamples - lower - 1;
    out->lo = deltas[lower];
    out->hi = deltas[upper];
    out->mean = mean / n_resamples;
    out->share_b_better = (double)b_better / n_resamples;
    out->n_resamples = n_resamples;
    out->seed = seed;
}

int bootstrap_paired(const double *stats_a, const double *stats_b, size_t n, size_t stats_dim,
                     BootstrapMetricFn metric, const void *ctx, int n_resamples, uint64_t seed,
                     BootstrapResult *out) {
    memset(out, 0, sizeof *out);
    if (n == 0) return tt_err("bootstrap: no examples");
    if (n > UINT32_MAX) return tt_err("bootstrap: %zu examples is too many", n);
    if (stats_dim == 0) return tt_err("bootstrap: empty statistics");
    if (n_resamples <= 0) n_resamples = 1000;
    double *sum_a = calloc(stats_dim, sizeof *sum_a), *sum_b = calloc(stats_dim, sizeof *sum_b);
    double *deltas = malloc((size_t)n_resamples * sizeof *deltas);
    if (!sum_a || !sum_b || !deltas) {
        free(sum_a);
        free(sum_b);
        free(deltas);
        return tt_err("out of memory for %d resamples", n_resamples);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < stats_dim; d++) {
            sum_a[d] += stats_a[i * stats_dim + d];
            sum_b[d] += stats_b[i * stats_dim + d];
        }
    out->delta = metric(sum_b, stats_dim, ctx) - metric(sum_a, stats_dim, ctx);
    Rng rng;
    rng_seed(&rng, seed);
    for (int r = 0; r < n_resamples; r++) {
        memset(sum_a, 0, stats_dim * sizeof *sum_a);
        memset(sum_b, 0, stats_dim * sizeof *sum_b);
        for (size_t k = 0; k < n; k++) {
            size_t i = rng_below(&rng, (uint32_t)n); /* the same draw for both systems */
            for (size_t d = 0; d < stats_dim; d++) {
                sum_a[d] += stats_a[i * stats_dim + d];
                sum_b[d] += stats_b[i * stats_dim + d];
            }
        }
        deltas[r] = metric(sum_b, stats_dim, ctx) - metric(sum_a, stats_dim, ctx);
    }
    bootstrap_summarize(deltas, n_resamples, seed, out);
    free(sum_a);
    free(sum_b);
    free(deltas);
    return 0;
}

/* The statistic of a mean is (score, 1): the metric divides the two sums. */
static double mean_metric(const double *summed, size_t dim, const void *ctx) {
    return summed[1] > 0 ? summed[0] / summed[1] : 0;
}

int bootstrap_paired_mean(const double *scores_a, const double *scores_b, size_t n,
                          int n_resamples, uint64_t seed, BootstrapResult *out) {
    double *a = malloc((n ? n : 1) * 2 * sizeof *a), *b = malloc((n ? n : 1) * 2 * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return tt_err("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        a[2 * i] = scores_a[i], a[2 * i + 1] = 1;
        b[2 * i] = scores_b[i], b[2 * i + 1] = 1;
    }
    int rc = bootstrap_paired(a, b, n, 2, mean_metric, NULL, n_resamples, seed, out);
    free(a);
    free(b);
    return rc;
}

enum { BLEU_DIM = 2 + 2 * BLEU_MAX_ORDER_LIMIT, CHRF_DIM = 3 * CHRF_MAX_ORDER_LIMIT };

static void bleu_pack(const BleuStats *s, double *v) {
    v[0] = s->sys_len;
    v[1] = s->ref_len;
    for (int k = 0; k < BLEU_MAX_ORDER_LIMIT; k++) {
        v[2 + k] = s->correct[k];
        v[2 + BLEU_MAX_ORDER_LIMIT + k] = s->total[k];
    }
}

static double bleu_metric(const double *v, size_t dim, const void *ctx) {
    BleuStats s;
    s.sys_len = v[0];
    s.ref_len = v[1];
    for (int k = 0; k < BLEU_MAX_ORDER_LIMIT; k++) {
        s.correct[k] = v[2 + k];
        s.total[k] = v[2 + BLEU_MAX_ORDER_LIMIT + k];
    }
    BleuResult r;
    bleu_from_stats(&s, ctx, &r);
    return r.score;
}

static void chrf_pack(const ChrfStats *s, double *v) {
    for (int k = 0; k < CHRF_MAX_ORDER_LIMIT; k++) {
        v[k] = s->hyp[k];
        v[CHRF_MAX_ORDER_LIMIT + k] = s->ref[k];
        v[2 * CHRF_MAX_ORDER_LIMIT + k] = s->match[k];
    }
}

static double chrf_metric(const double *v, size_t dim, const void *ctx) {
    ChrfStats s;
    for (int k = 0; k < CHRF_MAX_ORDER_LIMIT; k++) {
        s.hyp[k] = v[k];
        s.ref[k] = v[CHRF_MAX_ORDER_LIMIT + k];
        s.match[k] = v[2 * CHRF_MAX_ORDER_LIMIT + k];
    }
    return chrf_from_stats(&s, ctx);
}

int bootstrap_paired_bleu(const BleuStats *a, const BleuStats *b, size_t n, const BleuOptions *opt,
                          int n_resamples, uint64_t seed, BootstrapResult *out) {
    double *va = malloc((n ? n : 1) * BLEU_DIM * sizeof *va), *vb = malloc((n ? n : 1) * BLEU_DIM * sizeof *vb);
    if (!va || !vb) {
        free(va);
        free(vb);
        return tt_err("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        bleu_pack(&a[i], va + i * BLEU_DIM);
        bleu_pack(&b[i], vb + i * BLEU_DIM);
    }
    int rc = bootstrap_paired(va, vb, n, BLEU_DIM, bleu_metric, opt, n_resamples, seed, out);
    free(va);
    free(vb);
    return rc;
}

int bootstrap_paired_chrf(const ChrfStats *a, const ChrfStats *b, size_t n, const ChrfOptions *opt,
                          int n_resamples, uint64_t seed, BootstrapResult *out) {
    double *va = malloc((n ? n : 1) * CHRF_DIM * sizeof *va), *vb = malloc((n ? n : 1) * CHRF_DIM * sizeof *vb);
    if (!va || !vb) {
        free(va);
        free(vb);
        return tt_err("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        chrf_pack(&a[i], va + i * CHRF_DIM);
        chrf_pack(&b[i], vb + i * CHRF_DIM);
    }
    int rc = bootstrap_paired(va, vb, n, CHRF_DIM, chrf_metric, opt, n_resamples, seed, out);
    free(va);
    free(vb);
    return rc;
}
