/* pt_source.c: the batch source of sequence-level distillation. Epoch e trains on the gold
 * pairs (when given) and on the (e mod K_i)-th pseudo-target of each PT input i, so that K
 * pseudo-targets per input are all seen over K epochs (Calderon et al., section 4). Each PT
 * index k has its own batcher over gold + PT set k; the batcher of epoch e is moved to
 * (e, batch), so the shuffle of every epoch depends only on (seed, e) and the position
 * (epoch, batch) is the whole resumable state. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/distill.h"

struct PtSource {
    const ModelConfig *c;
    int n_sets;          /* K (1 when there are no PTs: gold only) */
    PairSet *combined;   /* views: gold + pts[k] */
    Batcher **batchers;
    BatchBuf bb;
    uint64_t epoch;      /* epoch of the next batch */
    size_t *last_idx;    /* a copy: seeking the next epoch's batcher replans its arrays */
    int last_count, last_cap, last_set;
    int B, S, T;
};

int pairset_concat_view(PairSet *out, const PairSet *a, const PairSet *b) {
    memset(out, 0, sizeof *out);
    size_t na = a ? a->n : 0, nb = b ? b->n : 0;
    out->items = malloc(sizeof(TokPair) * (na + nb ? na + nb : 1));
    if (!out->items) return tt_err("out of memory");
    if (na) memcpy(out->items, a->items, na * sizeof(TokPair));
    if (nb) memcpy(out->items + na, b->items, nb * sizeof(TokPair));
    out->n = na + nb;
    out->truncated = (a ? a->truncated : 0) + (b ? b->truncated : 0);
    return 0;
}

void pt_source_free(PtSource *s) {
    if (!s) return;
    for (int k = 0; k < s->n_sets; k++) {
        if (s->batchers) batcher_free(s->batchers[k]);
        if (s->combined) pairset_free(&s->combined[k]);
    }
    free(s->batchers);
    free(s->combined);
    free(s->last_idx);
    batchbuf_free(&s->bb);
    free(s);
}

PtSource *pt_source_new(const PairSet *gold, const PairSet *pts, int n_pt, const ModelConfig *c, int batch_tokens,
                        int max_batch, int max_source_tokens, int max_target_tokens, uint64_t seed) {
    if ((!gold || !gold->n) && n_pt < 1) {
        tt_err("distillation needs gold pairs or pseudo-targets");
        return NULL;
    }
    for (int k = 1; k < n_pt; k++)
        if (pts[k].n != pts[0].n) {
            tt_err("pseudo-target set %d has %zu inputs, set 0 %zu", k, pts[k].n, pts[0].n);
            return NULL;
        }
    PtSource *s = calloc(1, sizeof *s);
    if (!s) return tt_err("out of memory"), NULL;
    s->c = c;
    s->n_sets = n_pt > 0 ? n_pt : 1;
    s->combined = calloc((size_t)s->n_sets, sizeof(PairSet));
    s->batchers = calloc((size_t)s->n_sets, sizeof(Batcher *));
    if (!s->combined || !s->batchers) goto fail;
    int max_s = 1, max_t = 1;
    for (int k = 0; k < s->n_sets; k++) {
        if (pairset_concat_view(&s->combined[k], gold, n_pt > 0 ? &pts[k] : NULL)) goto fail;
        size_t n = s->combined[k].n;
        int *sl = malloc(sizeof(int) * n), *tl = malloc(sizeof(int) * n);
        if (!sl || !tl) {
            free(sl), free(tl);
            tt_err("out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            pair_batch_lengths(c, &s->combined[k].items[i], &sl[i], &tl[i]);
            if (sl[i] > max_s) max_s = sl[i];
            if (tl[i] > max_t) max_t = tl[i];
        }
        s->batchers[k] = batcher_new(sl, tl, n, batch_tokens, max_batch, seed);
        free(sl);
        free(tl);
        if (!s->batchers[k]) goto fail;
    }
    if (batchbuf_init(&s->bb, batch_tokens + max_s, batch_tokens + max_t)) goto fail;
    int B = max_batch > 0 ? max_batch : 1;
    int S = model_is_encdec(c) ? max_source_tokens : 0;
    int T = model_is_encdec(c) ? max_target_tokens : max_source_tokens + max_target_tokens;
    if ((long)B * (S + T) > batch_tokens) B = batch_tokens / (S + T > 0 ? S + T : 1);
    if (B < 1) B = 1;
    s->B = B, s->S = S, s->T = T;
    if (batcher_seek(s->batchers[0], 0, 0)) goto fail;
    return s;
fail:
    pt_source_free(s);
    return NULL;
}

int pt_source_index_for_epoch(const PtSource *s, uint64_t epoch) { return (int)(epoch % (uint64_t)s->n_sets); }

static Batcher *current(PtSource *s) { return s->batchers[pt_source_index_for_epoch(s, s->epoch)]; }

static int pts_next(void *ctx, const Batch **b, long *n_target) {
    PtSource *s = ctx;
    int k = pt_source_index_for_epoch(s, s->epoch);
    const size_t *idx;
    int count;
    int rc = batcher_next(s->batchers[k], &idx, &count);
    if (rc < 0 || batch_assemble(&s->bb, s->c, &s->combined[k], idx, count)) return -1;
    if (count > s->last_cap) {
        size_t *ni = realloc(s->last_idx, sizeof(size_t) * (size_t)count);
        if (!ni) return tt_err("out of memory");
        s->last_idx = ni, s->last_cap = count;
    }
    memcpy(s->last_idx, idx, sizeof(size_t) * (size_t)count);
    s->last_count = count, s->last_set = k;
    if (rc == 1) {
        s->epoch++;
        if (batcher_seek(current(s), s->epoch, 0)) return -1;
    }
    *b = &s->bb.batch;
    *n_target = s->bb.n_target_tokens;
    return rc;
}

void pt_source_last(const PtSource *s, const size_t **idx, int *count, int *set) {
    *idx = s->last_idx, *count = s->last_count, *set = s->last_set;
}

const PairSet *pt_source_set(const PtSource *s, int k) { return k >= 0 && k < s->n_sets ? &s->combined[k] : NULL; }

static void pts_position(void *ctx, uint64_t *epoch, double *frac) {
    PtSource *s = ctx;
    size_t pos;
    uint64_t e;
    batcher_position(current(s), &e, &pos);
    *epoch = s->epoch;
    *frac = (double)pos / (double)batcher_epoch_batches(current(s));
}

static void pts_max_shape(void *ctx, int *B, int *S, int *T) {
    PtSource *s = ctx;
    *B = s->B, *S = s->S, *T = s->T;
}

static cJSON *pts_save(void *ctx) {
    PtSource *s = ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON *b = batcher_state_json(current(s));
    if (!o || !b || !cJSON_AddNumberToObject(o, "sets", s->n_sets) || !cJSON_AddNumberToObject(o, "pt_index",
                                                                                               pt_source_index_for_epoch(s, s->epoch))) {
        cJSON_Delete(o);
        cJSON_Delete(b);
        return NULL;
    }
    cJSON_AddItemToObject(o, "batcher", b);
    return o;
}

static int pts_restore(void *ctx, const cJSON *st) {
    PtSource *s = ctx;
    const cJSON *sets = cJSON_GetObjectItemCaseSensitive(st, "sets");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "batcher");
    const cJSON *e = b ? cJSON_GetObjectItemCaseSensitive(b, "epoch") : NULL;
    if (!cJSON_IsNumber(sets) || !cJSON_IsObject(b) || !cJSON_IsNumber(e) || e->valuedouble < 0)
        return tt_err("pseudo-target source state: malformed");
    if ((int)sets->valuedouble != s->n_sets)
        return tt_err("pseudo-target source state: saved with %d pseudo-targets per input, now %d",
                      (int)sets->valuedouble, s->n_sets);
    s->epoch = (uint64_t)e->valuedouble;
    return batcher_restore(current(s), b);
}

BatchSource pt_source_iface(PtSource *s) {
    return (BatchSource){.ctx = s, .next = pts_next, .position = pts_position, .max_shape = pts_max_shape,
                         .save = pts_save, .restore = pts_restore};
}

/* ---- tokenising a PT file ---- */

int ptfile_tokenise(const PtFile *f, const Tokenizer *tok, int max_src, int max_tgt, PairSet **pts, int *n_pt) {
    int K = 1;
    for (size_t i = 0; i < f->n; i++)
        if (f->items[i].n_targets > K) K = f->items[i].n_targets;
    PairSet *sets = calloc((size_t)K, sizeof(PairSet));
    Example *ex = calloc(f->n ? f->n : 1, sizeof(Example));
    if (!sets || !ex) {
        free(sets), free(ex);
        return tt_err("out of memory");
    }
    Dataset ds = {.items = ex, .n = f->n, .path = f->path};
    for (int k = 0; k < K; k++) {
        for (size_t i = 0; i < f->n; i++) {
            const PtItem *it = &f->items[i];
            ex[i] = (Example){.id = it->id, .source = it->source, .target = it->targets[k % it->n_targets],
                              .line = it->line};
        }
        if (pairset_build(&sets[k], &ds, tok, max_src, max_tgt, 0)) {
            for (int j = 0; j < k; j++) pairset_free(&sets[j]);
            free(sets);
            free(ex);
            return -1;
        }
    }
    free(ex);
    *pts = sets;
    *n_pt = K;
    return 0;
}
