/* teacher_forced.c: two models teacher-forced on the same pairs, token by token: the
 * per-token KL(teacher || model) and the model's NLL, in double from log-softmax. Exposure
 * bias (metrics) and KD diagnostics use it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/distill.h"

enum { LOGIT_CHUNK_ROWS = 32 };

/* KL(p || q) from log-probabilities; terms with p = 0 contribute 0. */
static double kl_from_logprobs(const double *lp, const double *lq, int V) {
    double kl = 0;
    for (int v = 0; v < V; v++) {
        double p = exp(lp[v]);
        if (p > 0) kl += p * (lp[v] - lq[v]);
    }
    return kl < 0 ? 0 : kl; /* rounding can leave -1e-17 when p == q */
}

/* First labeled row of example b in an assembled batch: labeled rows of one example are
 * consecutive (enc-dec: from 0; decoder-only: from the source's </s>). */
static int first_label_row(const Batch *bt, int b) {
    for (int t = 0; t < bt->T; t++)
        if (bt->labels[(long)b * bt->T + t] != -100) return b * bt->T + t;
    return -1;
}

int teacher_forced_token_stats(Model *oracle, Model *model, const PairSet *ps, int batch_tokens, int max_batch,
                               double *kl, double *nll) {
    if (oracle == model) return tt_err("teacher_forced_token_stats: oracle and model must be distinct objects");
    if (!oracle) kl = NULL;
    const int V = model->cfg.vocab_size;
    if (oracle && oracle->cfg.vocab_size != V)
        return tt_err("the oracle's vocabulary (%d ids) differs from the model's (%d ids)", oracle->cfg.vocab_size, V);
    if (max_batch < 1) max_batch = 1;
    Model *models[2] = {model, oracle};
    int n_models = oracle ? 2 : 1;
    int max_s[2] = {1, 1}, max_t[2] = {1, 1};
    for (int k = 0; k < n_models; k++)
        for (size_t i = 0; i < ps->n; i++) {
            int s, t;
            pair_batch_lengths(&models[k]->cfg, &ps->items[i], &s, &t);
            if (s > max_s[k]) max_s[k] = s;
            if (t > max_t[k]) max_t[k] = t;
        }
    BatchBuf bb[2];
    memset(bb, 0, sizeof bb);
    size_t *idx = malloc(sizeof(size_t) * (size_t)max_batch);
    real *logits[2] = {tt_alloc(sizeof(real) * (size_t)LOGIT_CHUNK_ROWS * V),
                       oracle ? tt_alloc(sizeof(real) * (size_t)LOGIT_CHUNK_ROWS * V) : NULL};
    double *lp[2] = {malloc(sizeof(double) * (size_t)V), malloc(sizeof(double) * (size_t)V)};
    int rc = 0;
    if (!idx || !logits[0] || (oracle && !logits[1]) || !lp[0] || !lp[1]) rc = tt_err("out of memory");
    for (int k = 0; k < n_models && !rc; k++) rc = batchbuf_init(&bb[k], max_batch * max_s[k], max_batch * max_t[k]);
    size_t i = 0;
    long out_pos = 0;
    while (!rc && i < ps->n) {
        /* batches in set order, cut by the padded cost of the longest pair (either model) */
        int count = 0, S = 0, T = 0;
        while (i + count < ps->n && count < max_batch) {
            int s = 0, t = 0;
            for (int k = 0; k < n_models; k++) {
                int sk, tk;
                pair_batch_lengths(&models[k]->cfg, &ps->items[i + count], &sk, &tk);
                if (sk > s) s = sk;
                if (tk > t) t = tk;
            }
            int S2 = s > S ? s : S, T2 = t > T ? t : T;
            if (count > 0 && (long)(count + 1) * (S2 + T2) > batch_tokens) break;
            S = S2, T = T2;
            idx[count] = i + count;
            count++;
        }
        for (int k = 0; k < n_models && !rc; k++) {
            if (batch_assemble(&bb[k], &models[k]->cfg, ps, idx, count) || model_forward(models[k], &bb[k].batch, 0))
                rc = tt_err_wrap("teacher-forced pass of the %s", k ? "oracle" : "model");
        }
        for (int b = 0; b < count && !rc; b++) {
            const TokPair *p = &ps->items[idx[b]];
            int row[2] = {0, 0};
            for (int k = 0; k < n_models; k++) row[k] = first_label_row(&bb[k].batch, b);
            if (p->tgt_len == 0) continue;
            if (row[0] < 0 || (oracle && row[1] < 0)) {
                rc = tt_err("teacher_forced_token_stats: pair %zu has no labeled position", idx[b]);
                break;
            }
            for (int t0 = 0; t0 < p->tgt_len; t0 += LOGIT_CHUNK_ROWS) {
                int n = p->tgt_len - t0 < LOGIT_CHUNK_ROWS ? p->tgt_len - t0 : LOGIT_CHUNK_ROWS;
                for (int k = 0; k < n_models; k++) model_logits(models[k], row[k] + t0, n, logits[k]);
                for (int r = 0; r < n; r++) {
                    long pos = out_pos + t0 + r;
                    log_softmax_row(logits[0] + (long)r * V, V, 1.0, lp[0]);
                    if (nll) nll[pos] = -lp[0][p->tgt[t0 + r]];
                    if (kl) {
                        log_softmax_row(logits[1] + (long)r * V, V, 1.0, lp[1]);
                        kl[pos] = kl_from_logprobs(lp[1], lp[0], V);
                    }
                }
            }
            out_pos += p->tgt_len;
        }
        i += (size_t)count;
    }
    for (int k = 0; k < 2; k++) {
        batchbuf_free(&bb[k]);
        tt_free(logits[k]);
        free(lp[k]);
    }
    free(idx);
    return rc;
}

