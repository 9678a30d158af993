/* pairs.c: tokenised (source, target) pairs and the padded batches built from them, in the
 * layout each architecture trains on: BART-style decoder inputs (</s> first, loss on the
 * target and its </s>) or GPT-2 style sequences (<s> source </s> target </s>). */
#include <stdlib.h>
#include <string.h>

#include "tutor/train.h"

int pairset_build(PairSet *ps, const Dataset *ds, const Tokenizer *tok, int max_src, int max_tgt,
                  int allow_unlabeled) {
    memset(ps, 0, sizeof *ps);
    int bos = tokenizer_bos_id(tok), eos = tokenizer_eos_id(tok);
    if (bos < 0 || eos < 0) return tt_err("tokenizer has no <s> or </s> token");
    if (max_src < 3 || max_tgt < 2) return tt_err("token budgets too small (source >= 3, target >= 2)");
    ps->items = calloc(ds->n ? ds->n : 1, sizeof *ps->items);
    size_t cap = ds->n * (size_t)(max_src + max_tgt);
    ps->pool = malloc((cap ? cap : 1) * sizeof(int));
    if (!ps->items || !ps->pool) {
        pairset_free(ps);
        return tt_err("out of memory tokenising %zu examples", ds->n);
    }
    TokenIds ids = {0};
    TokenizerEncodeOptions eo = {0, 0, 0};
    size_t used = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const Example *ex = &ds->items[i];
        TokPair *p = &ps->items[i];
        if (tokenizer_encode(tok, ex->source, strlen(ex->source), &eo, &ids, NULL)) {
            tt_err_wrap("%s:%zu", ds->path ? ds->path : "data", ex->line);
            token_ids_free(&ids);
            pairset_free(ps);
            return -1;
        }
        int cut = 0;
        int n = (int)ids.n;
        if (n > max_src - 2) n = max_src - 2, cut = 1;
        p->src = ps->pool + used;
        p->src[0] = bos;
        memcpy(p->src + 1, ids.ids, (size_t)n * sizeof(int));
        p->src[n + 1] = eos;
        p->src_len = n + 2;
        used += (size_t)p->src_len;
        p->tgt = ps->pool + used;
        if (ex->target) {
            if (tokenizer_encode(tok, ex->target, strlen(ex->target), &eo, &ids, NULL)) {
                tt_err_wrap("%s:%zu", ds->path ? ds->path : "data", ex->line);
                token_ids_free(&ids);
                pairset_free(ps);
                return -1;
            }
            n = (int)ids.n;
            if (n > max_tgt - 1) n = max_tgt - 1, cut = 1;
            memcpy(p->tgt, ids.ids, (size_t)n * sizeof(int));
            p->tgt[n] = eos;
            p->tgt_len = n + 1;
        } else if (!allow_unlabeled) {
            token_ids_free(&ids);
            tt_err("%s:%zu: missing target (training needs labeled pairs)", ds->path ? ds->path : "data", ex->line);
            pairset_free(ps);
            return -1;
        }
        used += (size_t)p->tgt_len;
        ps->truncated += cut;
    }
    ps->n = ds->n;
    token_ids_free(&ids);
    return 0;
}

void pairset_free(PairSet *ps) {
    free(ps->items);
    free(ps->pool);
    memset(ps, 0, sizeof *ps);
}

int batchbuf_init(BatchBuf *bb, int cap_src_tokens, int cap_tgt_tokens) {
    memset(bb, 0, sizeof *bb);
    bb->cap_tokens_src = cap_src_tokens;
    bb->cap_tokens_tgt = cap_tgt_tokens;
    size_t s = (size_t)(cap_src_tokens > 0 ? cap_src_tokens : 1), t = (size_t)cap_tgt_tokens;
    bb->src = malloc(s * sizeof(int));
    bb->src_mask = malloc(s * sizeof(int));
    bb->tgt_in = malloc(t * sizeof(int));
    bb->tgt_mask = malloc(t * sizeof(int));
    bb->labels = malloc(t * sizeof(int));
    if (!bb->src || !bb->src_mask || !bb->tgt_in || !bb->tgt_mask || !bb->labels) {
        batchbuf_free(bb);
        return tt_err("out of memory");
    }
    return 0;
}

void batchbuf_free(BatchBuf *bb) {
    free(bb->src);
    free(bb->src_mask);
    free(bb->tgt_in);
    free(bb->tgt_mask);
    free(bb->labels);
    memset(bb, 0, sizeof *bb);
}

void pair_batch_lengths(const ModelConfig *c, const TokPair *p, int *src_len, int *seq_len) {
    if (model_is_encdec(c)) {
        *src_len = p->src_len;
        *seq_len = p->tgt_len;
    } else {
        *src_len = 0;
        *seq_len = p->src_len + p->tgt_len; /* <s> source </s> target </s> */
    }
}

int pairset_next_batch(const PairSet *ps, const ModelConfig *c, size_t pos, int batch_tokens, int max_batch,
                       size_t *idx) {
    int count = 0, S = 0, T = 0;
    while (pos + count < ps->n && count < max_batch) {
        int s, t;
        pair_batch_lengths(c, &ps->items[pos + count], &s, &t);
        int S2 = s > S ? s : S, T2 = t > T ? t : T;
        if (count > 0 && (long)(count + 1) * (S2 + T2) > batch_tokens) break;
        S = S2, T = T2;
        idx[count] = pos + count;
        count++;
    }
    return count;
}

int batch_assemble(BatchBuf *bb, const ModelConfig *c, const PairSet *ps, const size_t *idx, int count) {
    int S = 0, T = 0;
    for (int i = 0; i < count; i++) {
        int s, t;
        pair_batch_lengths(c, &ps->items[idx[i]], &s, &t);
        if (s > S) S = s;
        if (t > T) T = t;
    }
    if ((long)count * S > bb->cap_tokens_src || (long)count * T > bb->cap_tokens_tgt)
        return tt_err("batch of %d x (%d, %d) tokens exceeds the buffers", count, S, T);
    int pad = c->pad_id >= 0 ? c->pad_id : c->eos_id;
    int start = c->decoder_start_id >= 0 ? c->decoder_start_id : c->eos_id;
    long n_target = 0;
    for (int i = 0; i < count; i++) {
        const TokPair *p = &ps->items[idx[i]];
        int *tin = bb->tgt_in + (long)i * T, *tm = bb->tgt_mask + (long)i * T, *lab = bb->labels + (long)i * T;
        for (int t = 0; t < T; t++) tin[t] = pad, tm[t] = 0, lab[t] = -100;
        if (model_is_encdec(c)) {
            int *src = bb->src + (long)i * S, *sm = bb->src_mask + (long)i * S;
            for (int s = 0; s < S; s++) {
                src[s] = s < p->src_len ? p->src[s] : pad;
                sm[s] = s < p->src_len;
            }
            for (int t = 0; t < p->tgt_len; t++) {
                tin[t] = t == 0 ? start : p->tgt[t - 1];
                tm[t] = 1;
                lab[t] = p->tgt[t];
            }
            n_target += p->tgt_len;
        } else {
            /* sequence: source ids (<s> ... </s>) then target ids (... </s>); position t
             * predicts t + 1, counted from the source's </s> on */
            int L = p->src_len + p->tgt_len;
            for (int t = 0; t < L; t++) {
                tin[t] = t < p->src_len ? p->src[t] : p->tgt[t - p->src_len];
                tm[t] = 1;
            }
            for (int t = p->src_len - 1; t < L - 1; t++) lab[t] = p->tgt[t + 1 - p->src_len];
            n_target += p->tgt_len;
        }
    }
    Batch *b = &bb->batch;
    b->B = count;
    b->S = model_is_encdec(c) ? S : 0;
    b->T = T;
    b->src = model_is_encdec(c) ? bb->src : NULL;
    b->src_mask = model_is_encdec(c) ? bb->src_mask : NULL;
    b->tgt_in = bb->tgt_in;
    /* HF's decoder self-attention is causal only; GPT-2 also masks padding keys */
    b->tgt_mask = model_is_encdec(c) ? NULL : bb->tgt_mask;
    b->labels = bb->labels;
    bb->n_target_tokens = n_target;
    return 0;
}
