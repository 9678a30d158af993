/* test_batching.c: length-bucketed batches under a padded-token budget: coverage of each
 * epoch, the budget, determinism per seed, resume from a saved position, truncation. */
#include "../testlib.h"
#include "tutor/data.h"

#include <cjson/cJSON.h>

enum { N = 2000, MAX_TOKENS = 1024, MAX_BATCH = 48 };

static int src_len[N], tgt_len[N];

/* Lengths spread like a summarisation set: long sources, short targets. */
static void make_lengths(void) {
    Rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < N; i++) {
        src_len[i] = 5 + (int)rng_below(&r, 250);
        tgt_len[i] = 2 + (int)rng_below(&r, 30);
    }
}

TestSuite(batching, .init = make_lengths);

/* Reads one whole epoch (the batcher must be at its start); returns the batch count and
 * writes the concatenated indices to out (N entries). */
static size_t read_epoch(Batcher *b, size_t *out) {
    size_t nb = 0, k = 0;
    for (;;) {
        const size_t *idx;
        int count;
        int last = batcher_next(b, &idx, &count);
        cr_assert(last >= 0);
        cr_assert(count >= 1);
        cr_assert(k + (size_t)count <= N);
        memcpy(out + k, idx, (size_t)count * sizeof *idx);
        k += (size_t)count;
        nb++;
        if (last) break;
    }
    cr_assert_eq(k, N);
    return nb;
}

Test(batching, every_example_once_per_epoch_within_budget) {
    Batcher *b = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 1);
    cr_assert(b, "%s", tt_errmsg());
    for (int epoch = 0; epoch < 3; epoch++) {
        static int seen[N];
        memset(seen, 0, sizeof seen);
        size_t batches = batcher_epoch_batches(b);
        size_t nb = 0;
        double cost_sum = 0;
        for (;;) {
            const size_t *idx;
            int count, max_s = 0, max_t = 0, real = 0;
            int last = batcher_next(b, &idx, &count);
            cr_assert_eq(batcher_epoch(b), (uint64_t)epoch);
            cr_assert(count >= 1 && count <= MAX_BATCH);
            for (int j = 0; j < count; j++) {
                cr_assert(idx[j] < N);
                seen[idx[j]]++;
                if (src_len[idx[j]] > max_s) max_s = src_len[idx[j]];
                if (tgt_len[idx[j]] > max_t) max_t = tgt_len[idx[j]];
                real += src_len[idx[j]] + tgt_len[idx[j]];
            }
            int cost = count * max_s + count * max_t;
            cr_assert(cost <= MAX_TOKENS, "batch cost %d over budget", cost);
            cost_sum += (double)real / cost;
            nb++;
            if (last) break;
        }
        cr_assert_eq(nb, batches);
        for (int i = 0; i < N; i++) cr_assert_eq(seen[i], 1, "example %d seen %d times", i, seen[i]);
        /* Bucketing is the point: little of a batch is padding. */
        cr_assert(cost_sum / nb > 0.7, "mean fill %.2f", cost_sum / nb);
    }
    batcher_free(b);
}

Test(batching, deterministic_per_seed_and_epoch) {
    static size_t a[N], c[N], d[N], e[N];
    Batcher *b1 = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 7);
    Batcher *b2 = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 7);
    Batcher *b3 = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 8);
    read_epoch(b1, a);
    read_epoch(b2, c);
    cr_assert_arr_eq(a, c, sizeof a, "same seed, same epoch 0");
    read_epoch(b3, d);
    cr_assert(memcmp(a, d, sizeof a) != 0, "another seed gives another order");
    read_epoch(b1, e);
    cr_assert(memcmp(a, e, sizeof a) != 0, "epoch 1 differs from epoch 0");
    read_epoch(b2, c);
    cr_assert_arr_eq(e, c, sizeof e, "same seed, same epoch 1");
    batcher_free(b1);
    batcher_free(b2);
    batcher_free(b3);
}

Test(batching, resume_mid_epoch_gives_the_same_remaining_batches) {
    Batcher *b = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 42);
    const size_t *idx;
    int count;
    size_t first = batcher_epoch_batches(b);
    /* Stop in the middle of epoch 1. */
    for (size_t k = 0; k < first + 5; k++) cr_assert(batcher_next(b, &idx, &count) >= 0);
    uint64_t epoch;
    size_t batch;
    batcher_position(b, &epoch, &batch);
    cr_assert_eq(epoch, 1);
    cr_assert_eq(batch, 5);
    cJSON *state = batcher_state_json(b);
    cr_assert(state);
    char *text = cJSON_PrintUnformatted(state);
    cJSON_Delete(state);

    /* The rest of the run, from the original and from a fresh batcher restored from text. */
    Batcher *r = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 42);
    cJSON *parsed = cJSON_Parse(text);
    TEST_ASSERT_OK(batcher_restore(r, parsed));
    cJSON_Delete(parsed);
    for (int k = 0; k < 400; k++) {
        const size_t *i1, *i2;
        int c1, c2;
        int l1 = batcher_next(b, &i1, &c1), l2 = batcher_next(r, &i2, &c2);
        cr_assert_eq(l1, l2);
        cr_assert_eq(c1, c2, "batch %d after resume", k);
        cr_assert_arr_eq(i1, i2, (size_t)c1 * sizeof *i1);
        cr_assert_eq(batcher_epoch(b), batcher_epoch(r));
    }
    batcher_free(r);

    /* A state saved at an epoch's end names the next epoch's first batch. */
    Batcher *c = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 42);
    while (batcher_next(c, &idx, &count) != 1) {
    }
    batcher_position(c, &epoch, &batch);
    cr_assert_eq(epoch, 1);
    cr_assert_eq(batch, 0);
    batcher_free(c);

    /* Restoring into a batcher with another seed or other lengths is refused. */
    Batcher *other = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 43);
    parsed = cJSON_Parse(text);
    cr_assert_eq(batcher_restore(other, parsed), -1);
    cr_assert(strstr(tt_errmsg(), "seed"), "%s", tt_errmsg());
    batcher_free(other);
    src_len[0]--;
    other = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 42);
    cr_assert_eq(batcher_restore(other, parsed), -1);
    cr_assert(strstr(tt_errmsg(), "other example lengths"), "%s", tt_errmsg());
    batcher_free(other);
    cJSON_Delete(parsed);
    free(text);
    batcher_free(b);
}

Test(batching, seek_and_bad_states) {
    Batcher *b = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 3);
    size_t nb = batcher_epoch_batches(b);
    cr_assert_eq(batcher_seek(b, 0, nb + 1), -1);
    TEST_ASSERT_OK(batcher_seek(b, 2, 3));
    const size_t *i1, *i2;
    int c1, c2;
    batcher_next(b, &i1, &c1);
    static size_t copy[N];
    memcpy(copy, i1, (size_t)c1 * sizeof *i1);
    Batcher *f = batcher_new(src_len, tgt_len, N, MAX_TOKENS, MAX_BATCH, 3);
    for (;;) { /* the same batch reached by playing epochs 0 and 1 and 3 batches */
        batcher_next(f, &i2, &c2);
        uint64_t e;
        size_t k;
        batcher_position(f, &e, &k);
        if (e == 2 && k == 4) break;
    }
    cr_assert_eq(c1, c2);
    cr_assert_arr_eq(copy, i2, (size_t)c1 * sizeof *i2);
    cJSON *bad = cJSON_Parse("{\"epoch\": -1, \"batch\": 0}");
    cr_assert_eq(batcher_restore(b, bad), -1);
    cJSON_Delete(bad);
    batcher_free(b);
    batcher_free(f);
}

Test(batching, no_targets_and_max_batch_cap) {
    int s[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    Batcher *b = batcher_new(s, NULL, 10, 1000, 3, 0);
    cr_assert(b, "%s", tt_errmsg());
    int total = 0;
    for (;;) {
        const size_t *idx;
        int count;
        int last = batcher_next(b, &idx, &count);
        cr_assert(count <= 3);
        for (int j = 1; j < count; j++) cr_assert(s[idx[j - 1]] >= s[idx[j]], "longest first");
        total += count;
        if (last) break;
    }
    cr_assert_eq(total, 10);
    cr_assert_eq(batcher_epoch_batches(b), 4, "10 examples, at most 3 a batch");
    batcher_free(b);
}

Test(batching, refuses_what_cannot_fit) {
    int s[3] = {10, 300, 20}, t[3] = {5, 20, 5};
    cr_assert_null(batcher_new(s, t, 3, 256, 0, 1));
    cr_assert(strstr(tt_errmsg(), "example 1 needs 320 tokens"), "%s", tt_errmsg());
    cr_assert_null(batcher_new(s, t, 0, 256, 0, 1));
    /* After clipping to budgets that fit, it works. */
    cr_assert_eq(lengths_clip(s, t, 3, 200, 16), 1);
    cr_assert_eq(s[1], 200);
    cr_assert_eq(t[1], 16);
    cr_assert_eq(t[0], 5);
    Batcher *b = batcher_new(s, t, 3, 256, 0, 1);
    cr_assert(b);
    batcher_free(b);
}

Test(batching, tokens_truncate) {
    int32_t ids[8] = {0, 11, 12, 13, 14, 15, 16, 2};
    cr_assert_eq(tokens_truncate(ids, 8, 8, 1), 8, "fits: unchanged");
    cr_assert_eq(tokens_truncate(ids, 8, 5, 1), 5);
    int32_t want[5] = {0, 11, 12, 13, 2};
    cr_assert_arr_eq(ids, want, sizeof want, "keeps the closing token");
    int32_t ids2[6] = {1, 2, 3, 4, 5, 6};
    cr_assert_eq(tokens_truncate(ids2, 6, 3, 0), 3);
    int32_t want2[3] = {1, 2, 3};
    cr_assert_arr_eq(ids2, want2, sizeof want2);
    cr_assert_eq(tokens_truncate(ids2, 3, 2, 2), -1, "keep_tail must be below the budget");
    cr_assert_eq(tokens_truncate(ids2, 3, 0, 0), -1);
}
