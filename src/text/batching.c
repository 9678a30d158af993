/* batching.c: cuts a data set into batches of similar lengths under a padded-token budget,
 * reshuffled every epoch from (seed, epoch) alone, so that the position (epoch, batch) is
 * all a checkpoint needs to resume the exact same sequence of batches. Also the helpers
 * that truncate sequences to their token budgets before batching. */
#include "tutor/data.h"
#include "tutor/core.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sorting within a chunk puts similar lengths together; a chunk holds about this many
 * batches, so batches still mix examples from across the shuffled data set. */
enum { CHUNK_BATCHES = 100 };

int tokens_truncate(int32_t *ids, int len, int budget, int keep_tail) {
    if (budget < 1 || keep_tail < 0 || keep_tail >= budget)
        return tt_err("tokens_truncate: budget %d and keep_tail %d: need 0 <= keep_tail < budget",
                      budget, keep_tail);
    if (len <= budget) return len;
    memmove(ids + budget - keep_tail, ids + len - keep_tail, (size_t)keep_tail * sizeof *ids);
    return budget;
}

size_t lengths_clip(int *src_len, int *tgt_len, size_t n, int src_budget, int tgt_budget) {
    size_t clipped = 0;
    for (size_t i = 0; i < n; i++) {
        int hit = 0;
        if (src_len[i] > src_budget) src_len[i] = src_budget, hit = 1;
        if (tgt_len && tgt_len[i] > tgt_budget) tgt_len[i] = tgt_budget, hit = 1;
        clipped += (size_t)hit;
    }
    return clipped;
}

typedef struct {
    int src, tgt;
    size_t pos; /* place in the shuffled order: breaks ties so that sorting is deterministic */
    size_t idx;
} SortItem;

struct Batcher {
    size_t n;
    int *src_len, *tgt_len;
    int max_tokens, max_batch;
    uint64_t seed;
    uint64_t lengths_fnv1a;
    size_t chunk; /* examples per sorting chunk */

    /* The plan of one epoch: examples in batch order, batch b being
     * order[starts[b] .. starts[b+1]), served in the order batch_order[0..n_batches). */
    int plan_valid;
    uint64_t plan_epoch;
    size_t *order, *starts, *batch_order;
    size_t n_batches;
    SortItem *items;

    uint64_t epoch;     /* position of the next batch */
    size_t next;
    uint64_t last_epoch; /* epoch of the batch returned last */
};

static uint64_t fnv1a_ints(uint64_t h, const int *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)v[i];
        for (int k = 0; k < 4; k++) {
            h ^= (x >> (8 * k)) & 0xFF;
            h *= 0x100000001b3ULL;
        }
    }
    return h;
}

/* Seed of an epoch's RNG: a strong mix of (seed, epoch), so that neighbouring epochs or
 * seeds do not give overlapping streams. */
static uint64_t epoch_seed(uint64_t seed, uint64_t epoch) {
    uint64_t z = seed ^ (epoch * 0xD1B54A32D192ED03ULL + 0x8CB92BA72F3D8DD7ULL);
    z = (z ^ (z >> 33)) * 0xFF51AFD7ED558CCDULL;
    z = (z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53ULL;
    return z ^ (z >> 33);
}

Batcher *batcher_new(const int *src_len, const int *tgt_len, size_t n, int max_tokens,
                     int max_batch, uint64_t seed) {
    if (n == 0) {
        tt_err("batcher: the data set is empty");
        return NULL;
    }
    if (n > UINT32_MAX) {
        tt_err("batcher: %zu examples, more than %" PRIu32 " are not supported", n, UINT32_MAX);
        return NULL;
    }
    if (max_tokens < 1 || max_batch < 0) {
        tt_err("batcher: max_tokens %d and max_batch %d: need max_tokens >= 1, max_batch >= 0",
               max_tokens, max_batch);
        return NULL;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int s = src_len[i], t = tgt_len ? tgt_len[i] : 0;
        if (s < 0 || t < 0) {
            tt_err("batcher: example %zu has a negative length", i);
            return NULL;
        }
        if ((long)s + t > max_tokens) {
            tt_err("batcher: example %zu needs %d tokens (source %d + target %d), more than "
                   "max_tokens %d: truncate to budgets that fit first", i, s + t, s, t, max_tokens);
            return NULL;
        }
        sum += s + t;
    }
    Batcher *b = calloc(1, sizeof *b);
    if (!b) goto oom;
    b->n = n;
    b->max_tokens = max_tokens;
    b->max_batch = max_batch;
    b->seed = seed;
    b->src_len = malloc(n * sizeof *b->src_len);
    b->tgt_len = calloc(n, sizeof *b->tgt_len);
    b->order = malloc(n * sizeof *b->order);
    b->starts = malloc((n + 1) * sizeof *b->starts);
    b->batch_order = malloc(n * sizeof *b->batch_order);
    b->items = malloc(n * sizeof *b->items);
    if (!b->src_len || !b->tgt_len || !b->order || !b->starts || !b->batch_order || !b->items)
        goto oom;
    memcpy(b->src_len, src_len, n * sizeof *src_len);
    if (tgt_len) memcpy(b->tgt_len, tgt_len, n * sizeof *tgt_len);
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv1a_ints(h, b->src_len, n);
    h = fnv1a_ints(h, b->tgt_len, n);
    b->lengths_fnv1a = h;

    /* Chunk size from the mean length: about CHUNK_BATCHES batches of typical examples. */
    double mean = sum / (double)n;
    double per_batch = mean > 0 ? (double)max_tokens / mean : (double)n;
    if (max_batch > 0 && per_batch > max_batch) per_batch = max_batch;
    if (per_batch < 1) per_batch = 1;
    double chunk = per_batch * CHUNK_BATCHES;
    b->chunk = chunk >= (double)n ? n : (size_t)chunk;
    if (b->chunk < 1) b->chunk = 1;
    return b;
oom:
    batcher_free(b);
    tt_err("batcher: out of memory for %zu examples", n);
    return NULL;
}

void batcher_free(Batcher *b) {
    if (!b) return;
    free(b->src_len);
    free(b->tgt_len);
    free(b->order);
    free(b->starts);
    free(b->batch_order);
    free(b->items);
    free(b);
}

/* Longest first; equal lengths keep their shuffled order. */
static int compare_items(const void *pa, const void *pb) {
    const SortItem *a = pa, *b = pb;
    if (a->src != b->src) return a->src > b->src ? -1 : 1;
    if (a->tgt != b->tgt) return a->tgt > b->tgt ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static void shuffle(size_t *v, size_t n, Rng *rng) {
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(rng, (uint32_t)i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static void build_plan(Batcher *b, uint64_t epoch) {
    if (b->plan_valid && b->plan_epoch == epoch) return;
    Rng rng;
    rng_seed(&rng, epoch_seed(b->seed, epoch));
    for (size_t i = 0; i < b->n; i++) b->order[i] = i;
    shuffle(b->order, b->n, &rng);

    size_t nb = 0;
    for (size_t c0 = 0; c0 < b->n; c0 += b->chunk) {
        size_t c1 = c0 + b->chunk < b->n ? c0 + b->chunk : b->n;
        for (size_t i = c0; i < c1; i++) {
            size_t e = b->order[i];
            b->items[i] = (SortItem){b->src_len[e], b->tgt_len[e], i, e};
        }
        qsort(b->items + c0, c1 - c0, sizeof *b->items, compare_items);
        /* Greedy cut: grow the batch while its padded cost stays within budget. */
        size_t i = c0;
        while (i < c1) {
            b->starts[nb++] = i;
            int max_src = 0, max_tgt = 0;
            size_t count = 0;
            while (i < c1) {
                int s = b->items[i].src > max_src ? b->items[i].src : max_src;
                int t = b->items[i].tgt > max_tgt ? b->items[i].tgt : max_tgt;
                long cost = (long)(count + 1) * ((long)s + t);
                if (count > 0 && (cost > b->max_tokens ||
                                  (b->max_batch > 0 && count + 1 > (size_t)b->max_batch)))
                    break;
                max_src = s;
                max_tgt = t;
                b->order[i] = b->items[i].idx;
                count++;
                i++;
            }
        }
    }
    b->starts[nb] = b->n;
    b->n_batches = nb;
    for (size_t k = 0; k < nb; k++) b->batch_order[k] = k;
    shuffle(b->batch_order, nb, &rng);
    b->plan_epoch = epoch;
    b->plan_valid = 1;
}

int batcher_next(Batcher *b, const size_t **idx, int *count) {
    build_plan(b, b->epoch);
    size_t k = b->batch_order[b->next++];
    *idx = b->order + b->starts[k];
    *count = (int)(b->starts[k + 1] - b->starts[k]);
    b->last_epoch = b->epoch;
    if (b->next < b->n_batches) return 0;
    /* The position always names a batch that exists: the next epoch's first. */
    b->epoch++;
    b->next = 0;
    return 1;
}

uint64_t batcher_epoch(const Batcher *b) { return b->last_epoch; }

void batcher_position(const Batcher *b, uint64_t *epoch, size_t *batch) {
    *epoch = b->epoch;
    *batch = b->next;
}

int batcher_seek(Batcher *b, uint64_t epoch, size_t batch) {
    build_plan(b, epoch);
    if (batch > b->n_batches)
        return tt_err("batcher: batch %zu is past the end of epoch %" PRIu64 " (%zu batches)",
                      batch, epoch, b->n_batches);
    if (batch == b->n_batches) {
        epoch++;
        batch = 0;
    }
    b->epoch = epoch;
    b->next = batch;
    b->last_epoch = batch > 0 || epoch == 0 ? epoch : epoch - 1;
    return 0;
}

size_t batcher_epoch_batches(Batcher *b) {
    build_plan(b, b->epoch);
    return b->n_batches;
}

cJSON *batcher_state_json(const Batcher *b) {
    uint64_t epoch;
    size_t batch;
    char seed[32], hash[32];
    batcher_position(b, &epoch, &batch);
    snprintf(seed, sizeof seed, "%" PRIu64, b->seed);
    snprintf(hash, sizeof hash, "%016" PRIx64, b->lengths_fnv1a);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddNumberToObject(o, "epoch", (double)epoch) ||
        !cJSON_AddNumberToObject(o, "batch", (double)batch) ||
        !cJSON_AddStringToObject(o, "seed", seed) ||
        !cJSON_AddNumberToObject(o, "n", (double)b->n) ||
        !cJSON_AddNumberToObject(o, "max_tokens", b->max_tokens) ||
        !cJSON_AddNumberToObject(o, "max_batch", b->max_batch) ||
        !cJSON_AddStringToObject(o, "lengths_fnv1a", hash)) {
        cJSON_Delete(o);
        tt_err("batcher: out of memory");
        return NULL;
    }
    return o;
}

/* A non-negative integer field that a double holds exactly. */
static int state_uint(const cJSON *state, const char *name, uint64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(state, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return tt_err("batcher state: \"%s\" is missing or not a non-negative integer", name);
    *out = (uint64_t)v->valuedouble;
    return 0;
}

int batcher_restore(Batcher *b, const cJSON *state) {
    if (!cJSON_IsObject(state)) return tt_err("batcher state: not a JSON object");
    uint64_t epoch = 0, batch = 0, n = 0, max_tokens = 0, max_batch = 0;
    if (state_uint(state, "epoch", &epoch) || state_uint(state, "batch", &batch) ||
        state_uint(state, "n", &n) || state_uint(state, "max_tokens", &max_tokens) ||
        state_uint(state, "max_batch", &max_batch))
        return -1;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(state, "seed");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(state, "lengths_fnv1a");
    if (!cJSON_IsString(seed) || !cJSON_IsString(hash))
        return tt_err("batcher state: \"seed\" and \"lengths_fnv1a\" must be strings");
    char mine[32];
    snprintf(mine, sizeof mine, "%" PRIu64, b->seed);
    if (strcmp(mine, seed->valuestring) != 0)
        return tt_err("batcher state: saved with seed %s, this run has seed %s",
                      seed->valuestring, mine);
    if (n != b->n || max_tokens != (uint64_t)b->max_tokens || max_batch != (uint64_t)b->max_batch)
        return tt_err("batcher state: saved for %" PRIu64 " examples, max_tokens %" PRIu64
                      ", max_batch %" PRIu64 "; this run has %zu, %d, %d",
                      n, max_tokens, max_batch, b->n, b->max_tokens, b->max_batch);
    snprintf(mine, sizeof mine, "%016" PRIx64, b->lengths_fnv1a);
    if (strcmp(mine, hash->valuestring) != 0)
        return tt_err("batcher state: saved for other example lengths (data set or tokenizer "
                      "changed)");
    return batcher_seek(b, epoch, (size_t)batch);
}
