/* denoise.c: pretraining noise (BART's text infilling with sentence permutation, PEGASUS's
 * gap sentences) and the batch source that applies it, document by document, with a noise
 * that depends only on (seed, epoch, document). See pretrain.h. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/pretrain.h"

void noise_options_default(NoiseOptions *o) {
    o->objective = NOISE_INFILL;
    o->mask_ratio = 0.3;
    o->poisson_lambda = 3.0;
    o->permute_sentences = 1;
    o->gap_ratio = 0.3;
    o->mix_gap_prob = 0.5;
}

int noise_objective_parse(const char *s, NoiseObjective *out) {
    if (!strcmp(s, "infill") || !strcmp(s, "text-infilling")) *out = NOISE_INFILL;
    else if (!strcmp(s, "gap") || !strcmp(s, "gap-sentences") || !strcmp(s, "gsg")) *out = NOISE_GAP_SENTENCES;
    else if (!strcmp(s, "mix")) *out = NOISE_MIX;
    else return -1;
    return 0;
}

const char *noise_objective_name(NoiseObjective o) {
    return o == NOISE_INFILL ? "infill" : o == NOISE_GAP_SENTENCES ? "gap-sentences" : "mix";
}

/* ---- token classes ---- */

/* Scratch for one document (documents are short: a few KB at most). */
typedef struct NoiseScratch {
    int *perm, *ws, *starts, *order;
    uint8_t *flag_ws, *masked, *insert;
    int cap;
} Scratch;

static void scratch_free(Scratch *s);

int token_classes_init(TokenClasses *tc, const Tokenizer *tok, int mask_id) {
    memset(tc, 0, sizeof *tc);
    int n = tokenizer_vocab_size(tok);
    tc->n_ids = n;
    tc->mask_id = mask_id;
    tc->word_start = calloc((size_t)n, 1);
    tc->sent_end = calloc((size_t)n, 1);
    tc->newline = calloc((size_t)n, 1);
    tc->count_doc = calloc((size_t)n, sizeof(int));
    tc->count_sent = calloc((size_t)n, sizeof(int));
    tc->scratch = calloc(1, sizeof *tc->scratch);
    if (!tc->word_start || !tc->sent_end || !tc->newline || !tc->count_doc || !tc->count_sent || !tc->scratch) {
        token_classes_free(tc);
        return tt_err("out of memory");
    }
    for (int id = 0; id < n; id++) {
        size_t len;
        const char *b = tokenizer_token_bytes(tok, id, &len);
        if (!b || !len || tokenizer_is_special(tok, id)) continue;
        tc->word_start[id] = b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r';
        char last = b[len - 1];
        tc->sent_end[id] = last == '.' || last == '!' || last == '?';
        tc->newline[id] = memchr(b, '\n', len) != NULL;
    }
    return 0;
}

void token_classes_free(TokenClasses *tc) {
    free(tc->word_start);
    free(tc->sent_end);
    free(tc->newline);
    free(tc->count_doc);
    free(tc->count_sent);
    if (tc->scratch) scratch_free(tc->scratch);
    free(tc->scratch);
    memset(tc, 0, sizeof *tc);
}

/* Sentence i of doc covers [starts[i], starts[i+1]). Returns the count (>= 1 for n >= 1). */
static int split_sentences(const TokenClasses *tc, const int *doc, int n, int *starts) {
    int ns = 0;
    starts[ns++] = 0;
    for (int i = 0; i + 1 < n; i++) {
        int id = doc[i], next = doc[i + 1];
        int cut = tc->newline[id] || (tc->sent_end[id] && (tc->word_start[next] || tc->newline[next]));
        if (cut) starts[ns++] = i + 1;
    }
    starts[ns] = n;
    return ns;
}

static int poisson(Rng *r, double lambda) {
    double L = exp(-lambda), p = 1;
    int k = 0;
    do {
        k++;
        p *= rng_uniform(r);
    } while (p > L && k < 256);
    return k - 1;
}


static int scratch_reserve(Scratch *s, int n) {
    if (n + 2 <= s->cap) return 0;
    int cap = n + 2 > 2 * s->cap ? n + 2 : 2 * s->cap;
    int *perm = realloc(s->perm, (size_t)cap * sizeof(int));
    if (perm) s->perm = perm;
    int *ws = realloc(s->ws, (size_t)cap * sizeof(int));
    if (ws) s->ws = ws;
    int *starts = realloc(s->starts, (size_t)cap * sizeof(int));
    if (starts) s->starts = starts;
    int *order = realloc(s->order, (size_t)cap * sizeof(int));
    if (order) s->order = order;
    uint8_t *f = realloc(s->flag_ws, (size_t)cap);
    if (f) s->flag_ws = f;
    uint8_t *m = realloc(s->masked, (size_t)cap);
    if (m) s->masked = m;
    uint8_t *in = realloc(s->insert, (size_t)cap);
    if (in) s->insert = in;
    if (!perm || !ws || !starts || !order || !f || !m || !in) return tt_err("out of memory");
    s->cap = cap;
    return 0;
}

static void scratch_free(Scratch *s) {
    free(s->perm), free(s->ws), free(s->starts), free(s->order);
    free(s->flag_ws), free(s->masked), free(s->insert);
    memset(s, 0, sizeof *s);
}


/* Text infilling over words of doc (word-start flags in ws_flag), into out (capacity n). */
static int infill(const TokenClasses *tc, const NoiseOptions *o, const int *doc, const uint8_t *ws_flag, int n,
                  Rng *rng, Scratch *s, int *out) {
    int nw = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || ws_flag[i]) s->ws[nw++] = i;
    s->ws[nw] = n;
    memset(s->masked, 0, (size_t)nw + 1);
    memset(s->insert, 0, (size_t)nw + 1);
    int to_mask = (int)ceil(nw * o->mask_ratio), done = 0;
    if (to_mask > nw) to_mask = nw;
    for (int attempts = 0; done < to_mask && attempts < 20 * nw + 100; attempts++) {
        int k = poisson(rng, o->poisson_lambda);
        if (k > to_mask - done) k = to_mask - done;
        if (k == 0) {
            s->insert[rng_below(rng, (uint32_t)nw + 1)] = 1;
            continue;
        }
        int j = (int)rng_below(rng, (uint32_t)(nw - k + 1));
        int free_span = 1;
        for (int w = j; w < j + k; w++)
            if (s->masked[w]) free_span = 0;
        if (!free_span) continue;
        for (int w = j; w < j + k; w++) s->masked[w] = 1;
        done += k;
    }
    int len = 0, last_mask = 0;
    for (int w = 0; w <= nw && len < n; w++) {
        if (s->insert[w] && !last_mask) out[len++] = tc->mask_id, last_mask = 1;
        if (w == nw || len >= n) break;
        if (s->masked[w]) {
            if (!last_mask) out[len++] = tc->mask_id;
            last_mask = 1;
        } else {
            for (int i = s->ws[w]; i < s->ws[w + 1] && len < n; i++) out[len++] = doc[i];
            last_mask = 0;
        }
    }
    return len;
}

/* ROUGE-1 F1 (on token ids) of sentence [a, b) against the rest of the document. */
static double sentence_score(const TokenClasses *tc, const int *doc, int n, int a, int b) {
    int len_s = b - a, len_r = n - len_s;
    if (len_s <= 0 || len_r <= 0) return 0;
    for (int i = a; i < b; i++) tc->count_sent[doc[i]]++;
    long overlap = 0;
    for (int i = a; i < b; i++) {
        int id = doc[i], cs = tc->count_sent[id];
        if (!cs) continue;
        int cr = tc->count_doc[id] - cs;
        overlap += cs < cr ? cs : cr;
        tc->count_sent[id] = 0;
    }
    if (!overlap) return 0;
    double p = (double)overlap / len_s, r = (double)overlap / len_r;
    return 2 * p * r / (p + r);
}

static int gap_sentences(const TokenClasses *tc, const NoiseOptions *o, const int *doc, int n, int ns, Scratch *s,
                         int *src, int *src_len, int *tgt, int *tgt_len) {
    for (int i = 0; i < n; i++) tc->count_doc[doc[i]]++;
    double *score = malloc((size_t)ns * sizeof *score);
    if (!score) {
        for (int i = 0; i < n; i++) tc->count_doc[doc[i]] = 0;
        return tt_err("out of memory");
    }
    for (int i = 0; i < ns; i++) score[i] = sentence_score(tc, doc, n, s->starts[i], s->starts[i + 1]);
    for (int i = 0; i < n; i++) tc->count_doc[doc[i]] = 0;
    int m = (int)(ns * o->gap_ratio + 0.5);
    if (m < 1) m = 1;
    if (m > ns - 1) m = ns - 1;
    memset(s->masked, 0, (size_t)ns);
    for (int k = 0; k < m; k++) {
        int best = -1;
        for (int i = 0; i < ns; i++)
            if (!s->masked[i] && (best < 0 || score[i] > score[best])) best = i;
        s->masked[best] = 1;
    }
    free(score);
    int ls = 0, lt = 0;
    for (int i = 0; i < ns; i++) {
        int a = s->starts[i], b = s->starts[i + 1];
        if (s->masked[i]) {
            src[ls++] = tc->mask_id;
            for (int j = a; j < b; j++) tgt[lt++] = doc[j];
        } else {
            for (int j = a; j < b; j++) src[ls++] = doc[j];
        }
    }
    *src_len = ls > n ? n : ls;
    *tgt_len = lt;
    return 0;
}

int noise_document(const TokenClasses *tc, const NoiseOptions *o, const int *doc, int n, Rng *rng, int *src,
                   int *src_len, int *tgt, int *tgt_len) {
    Scratch *s = tc->scratch;
    if (n < 1) {
        *src_len = *tgt_len = 0;
        return 0;
    }
    if (scratch_reserve(s, n)) return -1;
    int ns = split_sentences(tc, doc, n, s->starts);
    int use_gap = o->objective == NOISE_GAP_SENTENCES ||
                  (o->objective == NOISE_MIX && rng_uniform(rng) < o->mix_gap_prob);
    if (use_gap && ns >= 2) return gap_sentences(tc, o, doc, n, ns, s, src, src_len, tgt, tgt_len);
    /* infilling: the target is the document; the source its permuted, masked copy */
    memcpy(tgt, doc, (size_t)n * sizeof(int));
    *tgt_len = n;
    for (int i = 0; i < n; i++) s->flag_ws[i] = i == 0 || tc->word_start[doc[i]] || tc->newline[doc[i - 1]];
    const int *text = doc;
    if (o->permute_sentences && ns > 1) {
        for (int i = 0; i < ns; i++) s->order[i] = i;
        for (int i = ns - 1; i > 0; i--) {
            int j = (int)rng_below(rng, (uint32_t)i + 1), t = s->order[i];
            s->order[i] = s->order[j], s->order[j] = t;
        }
        /* the permuted text in perm, its word-start flags carried along (a sentence's
         * first token starts a word) */
        uint8_t *flags = s->masked; /* free until infill */
        int len = 0;
        for (int k = 0; k < ns; k++) {
            int a = s->starts[s->order[k]], b = s->starts[s->order[k] + 1];
            for (int j = a; j < b; j++, len++) {
                s->perm[len] = doc[j];
                flags[len] = j == a ? 1 : s->flag_ws[j];
            }
        }
        memcpy(s->flag_ws, flags, (size_t)n);
        text = s->perm;
    }
    *src_len = infill(tc, o, text, s->flag_ws, n, rng, s, src);
    return 0;
}

/* ---- documents ---- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int pretrain_docs_load(PairSet *docs, const char *const *paths, int n_paths, const JsonlOptions *jo,
                       const Tokenizer *tok, int max_tokens, size_t *n_dropped) {
    memset(docs, 0, sizeof *docs);
    if (max_tokens < 4) return tt_err("pretraining needs at least 4 tokens per document");
    size_t cap_items = 1024, cap_pool = 1 << 20, used = 0, dropped = 0;
    TokPair *items = malloc(cap_items * sizeof *items);
    int *pool = malloc(cap_pool * sizeof *pool);
    TokenIds ids = {0};
    TokenizerEncodeOptions eo = {0, 0, 0};
    size_t n = 0;
    int rc = 0;
    if (!items || !pool) {
        rc = tt_err("out of memory");
        goto done;
    }
    for (int f = 0; f < n_paths && !rc; f++) {
        int jsonl = ends_with(paths[f], ".jsonl") || ends_with(paths[f], ".json");
        JsonlReader *r = NULL;
        FILE *fp = NULL;
        char *line = NULL;
        size_t line_cap = 0, line_no = 0;
        if (jsonl) {
            JsonlOptions o;
            if (jo) o = *jo;
            else jsonl_options_default(&o);
            o.require_target = 0;
            r = jsonl_open(paths[f], &o);
            if (!r) {
                rc = -1;
                break;
            }
        } else if (!(fp = fopen(paths[f], "rb"))) {
            rc = tt_err("%s: cannot open", paths[f]);
            break;
        }
        for (;;) {
            Example ex = {0};
            const char *text;
            size_t len;
            if (jsonl) {
                int got = jsonl_next(r, &ex);
                if (got < 0) {
                    rc = -1;
                    break;
                }
                if (!got) break;
                text = ex.source;
                len = strlen(text);
                line_no = ex.line;
            } else {
                ssize_t got = getline(&line, &line_cap, fp);
                if (got < 0) break;
                line_no++;
                len = (size_t)got;
                while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
                text = line;
            }
            if (tokenizer_encode(tok, text, len, &eo, &ids, NULL)) {
                rc = tt_err_wrap("%s:%zu", paths[f], line_no);
                example_free(&ex);
                break;
            }
            example_free(&ex);
            int nt = (int)ids.n;
            if (nt > max_tokens - 2) nt = max_tokens - 2;
            if (nt < 2) {
                dropped++;
                continue;
            }
            if (n == cap_items) {
                TokPair *p = realloc(items, 2 * cap_items * sizeof *items);
                if (!p) {
                    rc = tt_err("out of memory");
                    break;
                }
                items = p, cap_items *= 2;
            }
            if (used + (size_t)nt > cap_pool) {
                size_t c2 = 2 * cap_pool + (size_t)nt;
                int *p = realloc(pool, c2 * sizeof *pool);
                if (!p) {
                    rc = tt_err("out of memory");
                    break;
                }
                pool = p, cap_pool = c2;
            }
            memcpy(pool + used, ids.ids, (size_t)nt * sizeof(int));
            /* offsets for now: pointers once the pool stops moving */
            items[n].src = (int *)(uintptr_t)used;
            items[n].src_len = nt;
            items[n].tgt = NULL;
            items[n].tgt_len = 0;
            docs->truncated += (int)ids.n > nt;
            used += (size_t)nt;
            n++;
        }
        if (r) jsonl_close(r);
        if (fp) fclose(fp);
        free(line);
    }
done:
    token_ids_free(&ids);
    if (rc) {
        free(items);
        free(pool);
        memset(docs, 0, sizeof *docs);
        return -1;
    }
    for (size_t i = 0; i < n; i++) items[i].src = pool + (uintptr_t)items[i].src;
    docs->items = items;
    docs->pool = pool;
    docs->n = n;
    if (n_dropped) *n_dropped = dropped;
    if (!n) {
        pairset_free(docs);
        return tt_err("no documents to pretrain on");
    }
    return 0;
}

/* ---- the batch source ---- */

struct DenoiseSource {
    const PairSet *docs;
    const TokenClasses *tc;
    NoiseOptions no;
    const ModelConfig *c;
    Batcher *batcher;
    BatchBuf bb;
    PairSet noised;   /* this batch's pairs */
    size_t *order;    /* 0..max_batch-1: the noised pairs' indices for batch_assemble */
    size_t pool_cap;
    uint64_t seed;
    int bos, eos;
    int B, S, T;
};

static uint64_t doc_seed(uint64_t seed, uint64_t epoch, size_t i) {
    return rng_mix64(rng_mix64(rng_mix64(seed) ^ epoch) ^ (uint64_t)i);
}

/* Noises document i into pair p (<s> src </s>, tgt </s>) at pool. */
static int noise_pair(const TokenClasses *tc, const NoiseOptions *no, const TokPair *d, uint64_t seed, int bos,
                      int eos, int *pool, TokPair *p) {
    Rng r;
    rng_seed(&r, seed);
    int n = d->src_len, ls, lt;
    p->src = pool;
    p->tgt = pool + n + 2;
    if (noise_document(tc, no, d->src, n, &r, p->src + 1, &ls, p->tgt, &lt)) return -1;
    p->src[0] = bos;
    p->src[ls + 1] = eos;
    p->src_len = ls + 2;
    p->tgt[lt] = eos;
    p->tgt_len = lt + 1;
    return 0;
}

DenoiseSource *denoise_source_new(const PairSet *docs, const TokenClasses *tc, const NoiseOptions *no,
                                  const ModelConfig *c, int batch_tokens, int max_batch, int max_tokens,
                                  uint64_t seed) {
    DenoiseSource *s = calloc(1, sizeof *s);
    size_t n = docs->n;
    int *sl = malloc(sizeof(int) * (n ? n : 1)), *tl = malloc(sizeof(int) * (n ? n : 1));
    if (!s || !sl || !tl) {
        free(s), free(sl), free(tl);
        tt_err("out of memory");
        return NULL;
    }
    s->docs = docs;
    s->tc = tc;
    s->no = *no;
    s->c = c;
    s->seed = seed;
    s->bos = c->bos_id >= 0 ? c->bos_id : c->eos_id;
    s->eos = c->eos_id;
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < n; i++) {
        /* upper bounds: noise never makes a source or a target longer than the document */
        TokPair bound = {.src_len = docs->items[i].src_len + 2, .tgt_len = docs->items[i].src_len + 1};
        pair_batch_lengths(c, &bound, &sl[i], &tl[i]);
        if (sl[i] > max_s) max_s = sl[i];
        if (tl[i] > max_t) max_t = tl[i];
    }
    s->batcher = batcher_new(sl, tl, n, batch_tokens, max_batch, seed);
    free(sl);
    free(tl);
    int cap_b = max_batch > 0 ? max_batch : batch_tokens;
    s->pool_cap = (size_t)2 * (size_t)(batch_tokens + 2 * max_tokens + 4);
    s->noised.items = calloc((size_t)cap_b, sizeof(TokPair));
    s->noised.pool = malloc(s->pool_cap * sizeof(int));
    s->order = malloc((size_t)cap_b * sizeof *s->order);
    if (s->order)
        for (int k = 0; k < cap_b; k++) s->order[k] = (size_t)k;
    if (!s->batcher || !s->noised.items || !s->noised.pool || !s->order ||
        batchbuf_init(&s->bb, batch_tokens + max_s, batch_tokens + max_t)) {
        if (!s->noised.items || !s->noised.pool || !s->order) tt_err("out of memory");
        denoise_source_free(s);
        return NULL;
    }
    int B = max_batch > 0 ? max_batch : 1;
    int S = model_is_encdec(c) ? max_tokens : 0;
    int T = model_is_encdec(c) ? max_tokens : 2 * max_tokens;
    if ((long)B * (S + T) > batch_tokens) B = batch_tokens / (S + T > 0 ? S + T : 1);
    if (B < 1) B = 1;
    s->B = B, s->S = S, s->T = T;
    return s;
}

void denoise_source_free(DenoiseSource *s) {
    if (!s) return;
    batcher_free(s->batcher);
    batchbuf_free(&s->bb);
    free(s->noised.items);
    free(s->noised.pool);
    free(s->order);
    free(s);
}

static int ds_next(void *ctx, const Batch **b, long *n_target) {
    DenoiseSource *s = ctx;
    const size_t *idx;
    int count;
    int rc = batcher_next(s->batcher, &idx, &count);
    if (rc < 0) return -1;
    uint64_t epoch = batcher_epoch(s->batcher);
    size_t used = 0;
    for (int k = 0; k < count; k++) {
        const TokPair *d = &s->docs->items[idx[k]];
        if (used + (size_t)(2 * d->src_len + 3) > s->pool_cap) return tt_err("denoise: batch pool overflow");
        if (noise_pair(s->tc, &s->no, d, doc_seed(s->seed, epoch, idx[k]), s->bos, s->eos, s->noised.pool + used,
                       &s->noised.items[k]))
            return -1;
        used += (size_t)(2 * d->src_len + 3);
    }
    s->noised.n = (size_t)count;
    /* the noised pairs are items 0..count-1 */
    if (batch_assemble(&s->bb, s->c, &s->noised, s->order, count)) return -1;
    *b = &s->bb.batch;
    *n_target = s->bb.n_target_tokens;
    return rc;
}

static void ds_position(void *ctx, uint64_t *epoch, double *frac) {
    DenoiseSource *s = ctx;
    size_t pos;
    batcher_position(s->batcher, epoch, &pos);
    *frac = (double)pos / (double)batcher_epoch_batches(s->batcher);
}

static void ds_max_shape(void *ctx, int *B, int *S, int *T) {
    DenoiseSource *s = ctx;
    *B = s->B, *S = s->S, *T = s->T;
}

static cJSON *ds_save(void *ctx) {
    DenoiseSource *s = ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON *b = batcher_state_json(s->batcher);
    if (!o || !b) {
        cJSON_Delete(o), cJSON_Delete(b);
        return NULL;
    }
    cJSON_AddItemToObject(o, "batcher", b);
    cJSON_AddStringToObject(o, "objective", noise_objective_name(s->no.objective));
    cJSON_AddNumberToObject(o, "mask_ratio", s->no.mask_ratio);
    cJSON_AddNumberToObject(o, "poisson_lambda", s->no.poisson_lambda);
    cJSON_AddNumberToObject(o, "gap_ratio", s->no.gap_ratio);
    return o;
}

static int ds_restore(void *ctx, const cJSON *st) {
    DenoiseSource *s = ctx;
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(st, "objective");
    if (!cJSON_IsString(obj)) return tt_err("pretraining state: no objective");
    if (strcmp(obj->valuestring, noise_objective_name(s->no.objective)))
        return tt_err("the checkpoint was made with objective %s, this run asks for %s", obj->valuestring,
                      noise_objective_name(s->no.objective));
    return batcher_restore(s->batcher, cJSON_GetObjectItemCaseSensitive(st, "batcher"));
}

BatchSource denoise_source_iface(DenoiseSource *s) {
    return (BatchSource){.ctx = s, .next = ds_next, .position = ds_position, .max_shape = ds_max_shape,
                         .save = ds_save, .restore = ds_restore};
}

int denoise_fixed_pairs(PairSet *out, const PairSet *docs, const TokenClasses *tc, const NoiseOptions *no,
                        const Tokenizer *tok, uint64_t seed) {
    memset(out, 0, sizeof *out);
    int bos = tokenizer_bos_id(tok), eos = tokenizer_eos_id(tok);
    if (bos < 0) bos = eos;
    size_t total = 0;
    for (size_t i = 0; i < docs->n; i++) total += (size_t)(2 * docs->items[i].src_len + 3);
    out->items = calloc(docs->n ? docs->n : 1, sizeof *out->items);
    out->pool = malloc((total ? total : 1) * sizeof(int));
    if (!out->items || !out->pool) {
        pairset_free(out);
        return tt_err("out of memory");
    }
    size_t used = 0;
    for (size_t i = 0; i < docs->n; i++) {
        if (noise_pair(tc, no, &docs->items[i], doc_seed(seed, 0, i), bos, eos, out->pool + used, &out->items[i])) {
            pairset_free(out);
            return -1;
        }
        used += (size_t)(2 * docs->items[i].src_len + 3);
    }
    out->n = docs->n;
    return 0;
}
