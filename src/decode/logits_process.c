/* logits_process.c: what Hugging Face's LogitsProcessors and LogitsWarpers do to a row of
 * next-token scores before a token is chosen (repetition penalty, no-repeat n-grams, minimum
 * length, forced BOS/EOS; temperature, top-k, top-p), and the choosers (argmax, a draw).
 * Semantics and order are those of transformers 4.36 (docs/generation.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode_internal.h"
#include "kernels/fastmath.h"

static void force_token(real *scores, int V, int tok) {
    for (int v = 0; v < V; v++) scores[v] = -INFINITY;
    scores[tok] = 0;
}

void logits_process(const GenConfig *g, const HypView *h, real *scores, int V, unsigned char *mark) {
    for (int v = g->vocab_limit > 0 ? g->vocab_limit : V; v < V; v++) scores[v] = -INFINITY;
    if (g->repetition_penalty != 1.0) {
        /* each distinct token of the sequence once: logit > 0 ? logit / p : logit * p */
        real pen = (real)g->repetition_penalty;
        for (int i = 0; i < h->len; i++) {
            int t = h->seq[i];
            if (t < 0 || t >= V || mark[t]) continue;
            mark[t] = 1;
            scores[t] = scores[t] < 0 ? scores[t] * pen : scores[t] / pen;
        }
        for (int i = 0; i < h->len; i++)
            if (h->seq[i] >= 0 && h->seq[i] < V) mark[h->seq[i]] = 0;
    }
    int n = g->no_repeat_ngram_size;
    if (n > 0 && h->len + 1 >= n) {
        /* ban every token that would complete an n-gram already in the sequence */
        const int *key = h->seq + h->len - (n - 1);
        for (int i = 0; i + n <= h->len; i++) {
            if (n > 1 && memcmp(h->seq + i, key, sizeof(int) * (size_t)(n - 1))) continue;
            scores[h->seq[i + n - 1]] = -INFINITY;
        }
    }
    if (g->eos_id >= 0 && g->eos_id < V && (h->n_new < g->min_new_tokens || h->len < g->min_length))
        scores[g->eos_id] = -INFINITY;
    if (g->forced_bos_id >= 0 && h->len == 1) force_token(scores, V, g->forced_bos_id);
    /* HF forces eos when cur_len == max_length - 1, i.e. for the last new token allowed */
    if (g->forced_eos_id >= 0 && h->n_new == h->max_new - 1) force_token(scores, V, g->forced_eos_id);
}

/* k-th largest of x (n values, 1 <= k <= n); x is reordered. Hoare-style quickselect. */
static real kth_largest(real *x, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        real pivot = x[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                real t = x[i];
                x[i] = x[j];
                x[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[want];
}

typedef struct {
    float p;
    int id;
} ProbId;

static int cmp_prob_desc(const void *a, const void *b) {
    const ProbId *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

void logits_warp(const GenConfig *g, real *scores, int V, real *work, int *iwork) {
    if (g->temperature != 1.0) {
        real t = (real)g->temperature;
        for (int v = 0; v < V; v++) scores[v] /= t;
    }
    if (g->top_k > 0 && g->top_k < V) {
        /* HF keeps every token whose score reaches the k-th largest (ties kept) */
        memcpy(work, scores, sizeof(real) * (size_t)V);
        real kth = kth_largest(work, V, g->top_k);
        for (int v = 0; v < V; v++)
            if (scores[v] < kth) scores[v] = -INFINITY;
    }
    if (g->top_p < 1.0) {
        /* HF: sort ascending, remove tokens whose cumulative probability is <= 1 - top_p; in
         * descending order that keeps a token iff the mass strictly above it is < top_p. Only
         * tokens of probability >= tau can be kept once the mass of those reaches top_p, so
         * the sort is over those. */
        real mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = scores[v] > mx ? scores[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += scores[v] == -INFINITY ? 0 : exp((double)scores[v] - mx);
        ProbId *cand = (ProbId *)work;
        double tau = 1e-3;
        int nc;
        for (;;) {
            nc = 0;
            double mass = 0;
            for (int v = 0; v < V; v++) {
                if (scores[v] == -INFINITY) continue;
                double pv = exp((double)scores[v] - mx) / sum;
                if (pv >= tau) {
                    cand[nc].p = (float)pv;
                    cand[nc].id = v;
                    nc++;
                    mass += pv;
                }
            }
            if (mass >= g->top_p || tau == 0) break;
            tau = tau < 1e-9 ? 0 : tau * 1e-2;
        }
        qsort(cand, (size_t)nc, sizeof *cand, cmp_prob_desc);
        double above = 0;
        int keep = 0;
        for (; keep < nc; keep++) {
            if (keep > 0 && above >= g->top_p) break;
            above += cand[keep].p;
        }
        unsigned char *kept = (unsigned char *)iwork;
        memset(kept, 0, (size_t)V);
        for (int i = 0; i < keep; i++) kept[cand[i].id] = 1;
        for (int v = 0; v < V; v++)
            if (!kept[v]) scores[v] = -INFINITY;
    }
}

int sample_from_scores(const real *scores, int V, double u) {
    real mx = -INFINITY;
    int last = 0;
    for (int v = 0; v < V; v++) {
        if (scores[v] > mx) mx = scores[v];
        if (scores[v] != -INFINITY) last = v;
    }
    double sum = 0;
    for (int v = 0; v < V; v++)
        if (scores[v] != -INFINITY) sum += exp((double)scores[v] - mx);
    double target = u * sum, acc = 0;
    for (int v = 0; v < V; v++) {
        if (scores[v] == -INFINITY) continue;
        acc += exp((double)scores[v] - mx);
        if (acc > target) return v;
    }
    return last;
}

int argmax_scores(const real *scores, int V) {
    /* 16 lanes, each its running maximum and the first index reaching it (element-wise, so it
     * vectorises); then the largest value, ties to the smallest index: the scalar loop's answer
     * (the first maximum), as HF's argmax */
    enum { W = 16 };
    int V16 = V / W * W;
    if (V16 < W) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (scores[v] > scores[best]) best = v;
        return best;
    }
#if !REAL_IS_DOUBLE && defined(__AVX512F__)
    if (V >= 4 * W && scores[0] == scores[0]) { /* (a NaN first: the loop never leaves index 0) */
        /* four sets of 16 lanes (their compares independent), then the 64 candidates: the
         * largest value, ties to the smallest index */
        __m512 m[4];
        __m512i ix[4];
        const __m512i step = _mm512_set1_epi32(4 * W);
        /* lanes start at (-inf, their own index): all -inf gives 0, as the loop */
        __m512i cur[4];
        for (int q = 0; q < 4; q++) {
            m[q] = _mm512_set1_ps(-INFINITY);
            ix[q] = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     _mm512_set1_epi32(q * W));
            cur[q] = _mm512_sub_epi32(ix[q], step); /* the first step adds it back */
        }
        int v = 0;
        for (; v + 4 * W <= V; v += 4 * W)
            for (int q = 0; q < 4; q++) {
                cur[q] = _mm512_add_epi32(cur[q], step);
                __m512 x = _mm512_loadu_ps(scores + v + q * W);
                __mmask16 gt = _mm512_cmp_ps_mask(x, m[q], _CMP_GT_OQ);
                m[q] = _mm512_mask_blend_ps(gt, m[q], x);
                ix[q] = _mm512_mask_blend_epi32(gt, ix[q], cur[q]);
            }
        float mv[4 * W];
        int iv[4 * W];
        for (int q = 0; q < 4; q++) {
            _mm512_storeu_ps(mv + q * W, m[q]);
            _mm512_storeu_si512((void *)(iv + q * W), ix[q]);
        }
        int best = iv[0];
        float bm = mv[0];
        for (int j = 1; j < 4 * W; j++)
            if (mv[j] > bm || (mv[j] == bm && iv[j] < best)) bm = mv[j], best = iv[j];
        for (; v < V; v++)
            if (scores[v] > bm) bm = scores[v], best = v;
        return best;
    }
#elif !REAL_IS_DOUBLE && defined(__AVX2__)
    if (V >= 4 * 8 && scores[0] == scores[0]) {
        /* the same with four sets of 8 lanes */
        __m256 m[4];
        __m256i ix[4], cur[4];
        const __m256i step = _mm256_set1_epi32(32);
        for (int q = 0; q < 4; q++) {
            m[q] = _mm256_set1_ps(-INFINITY);
            ix[q] = _mm256_add_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32(q * 8));
            cur[q] = _mm256_sub_epi32(ix[q], step);
        }
        int v = 0;
        for (; v + 32 <= V; v += 32)
            for (int q = 0; q < 4; q++) {
                cur[q] = _mm256_add_epi32(cur[q], step);
                __m256 x = _mm256_loadu_ps(scores + v + q * 8);
                __m256 gt = _mm256_cmp_ps(x, m[q], _CMP_GT_OQ);
                m[q] = _mm256_blendv_ps(m[q], x, gt);
                ix[q] = _mm256_blendv_epi8(ix[q], cur[q], _mm256_castps_si256(gt));
            }
        float mv[32];
        int iv[32];
        for (int q = 0; q < 4; q++) {
            _mm256_storeu_ps(mv + q * 8, m[q]);
            _mm256_storeu_si256((__m256i *)(iv + q * 8), ix[q]);
        }
        int best = iv[0];
        float bm = mv[0];
        for (int j = 1; j < 32; j++)
            if (mv[j] > bm || (mv[j] == bm && iv[j] < best)) bm = mv[j], best = iv[j];
        for (; v < V; v++)
            if (scores[v] > bm) bm = scores[v], best = v;
        return best;
    }
#endif
    real mx[W];
    int ix[W];
    for (int j = 0; j < W; j++) mx[j] = scores[j], ix[j] = j;
    for (int v = W; v < V16; v += W)
        for (int j = 0; j < W; j++) {
            int gt = scores[v + j] > mx[j];
            mx[j] = gt ? scores[v + j] : mx[j];
            ix[j] = gt ? v + j : ix[j];
        }
    int best = ix[0];
    real bm = mx[0];
    for (int j = 1; j < W; j++)
        if (mx[j] > bm || (mx[j] == bm && ix[j] < best)) bm = mx[j], best = ix[j];
    for (int v = V16; v < V; v++)
        if (scores[v] > bm) bm = scores[v], best = v;
    return best;
}

double row_logsumexp(const real *x, int V) {
    /* the maximum, then sixteen lanes of exp sums that GCC vectorises (one zmm register with
     * AVX-512), added in a fixed order */
    real acc[16];
    for (int j = 0; j < 16; j++) acc[j] = 0;
    int V16 = V & ~15;
    real m = tt_max_real(x, V);
    if (m == -INFINITY) return -INFINITY;
#if !REAL_IS_DOUBLE && defined(__AVX512F__)
    /* four sums, so that each add waits on its own chain, added pairwise at the end */
    __m512 va = _mm512_setzero_ps(), vb = va, vc = va, vd = va, vm = _mm512_set1_ps(m);
    int i = 0;
    for (; i + 64 <= V16; i += 64) {
        va = _mm512_add_ps(va, tt_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
        vb = _mm512_add_ps(vb, tt_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm)));
        vc = _mm512_add_ps(vc, tt_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vm)));
        vd = _mm512_add_ps(vd, tt_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vm)));
    }
    for (; i < V16; i += 16) va = _mm512_add_ps(va, tt_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
    _mm512_storeu_ps(acc, _mm512_add_ps(_mm512_add_ps(va, vb), _mm512_add_ps(vc, vd)));
#elif !REAL_IS_DOUBLE && defined(__AVX2__) && defined(__FMA__)
    /* the same sixteen lanes as two ymm sums */
    __m256 va = _mm256_setzero_ps(), vb = va, vm = _mm256_set1_ps(m);
    for (int i = 0; i < V16; i += 16) {
        va = _mm256_add_ps(va, tt_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
        vb = _mm256_add_ps(vb, tt_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm)));
    }
    _mm256_storeu_ps(acc, va);
    _mm256_storeu_ps(acc + 8, vb);
#else
    for (int i = 0; i < V16; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += REAL_EXP(x[i + j] - m);
#endif
    double s = 0;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (int i = V16; i < V; i++) s += exp((double)x[i] - m);
    return m + log(s);
}
