/* test_continuous.c: continuous batching (generator_serve). Inputs that join a running batch
 * at different steps, and leave it as they finish, get exactly the tokens generator_run gives
 * each of them alone, and its scores and log-probabilities to float rounding: greedy, beam
 * search and sampling, on the BART, mBART and GPT-2 fixture models. */
#include "../testlib.h"
#include "tutor/generate.h"

enum { N_IN = 7 };

typedef struct {
    int src[N_IN][20], len[N_IN];
    int next, per_call;    /* admit per_call inputs per step */
    int n_done;
    GenHypothesis got[N_IN][4];
    int got_tokens[N_IN][4][64];
    int got_n[N_IN];
} Feed;

static int admit(void *ctx, int room, const int **src, int *len, uint64_t *stream, uint64_t *seed, void **tag) {
    Feed *f = ctx;
    int k = 0;
    while (k < room && k < f->per_call && f->next < N_IN) {
        int i = f->next++;
        src[k] = f->src[i], len[k] = f->len[i], stream[k] = (uint64_t)i, seed[k] = 11 + (uint64_t)i;
        tag[k] = (void *)(intptr_t)(i + 1);
        k++;
    }
    return k;
}

static void done(void *ctx, void *tag, const GenOutput *out) {
    Feed *f = ctx;
    int i = (int)(intptr_t)tag - 1;
    cr_assert(out != NULL && i >= 0 && i < N_IN);
    f->got_n[i] = out->n;
    for (int k = 0; k < out->n; k++) {
        f->got[i][k] = out->hyps[k];
        memcpy(f->got_tokens[i][k], out->hyps[k].tokens, sizeof(int) * (size_t)out->hyps[k].n_tokens);
    }
    f->n_done++;
}

static void check(const char *fixture, int beams, int sample, int num_return, int per_call) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES_HF, fixture);
    Model *m = model_load(dir);
    cr_assert(m, "%s", tt_errmsg());
    GenConfig g;
    gen_config_from_model(&g, &m->cfg);
    g.max_new_tokens = 12, g.num_beams = beams, g.do_sample = sample, g.num_return_sequences = num_return;
    g.top_k = 0, g.temperature = 1.3;
    Feed f;
    memset(&f, 0, sizeof f);
    f.per_call = per_call;
    Rng r;
    rng_seed(&r, 77);
    for (int i = 0; i < N_IN; i++) {
        f.len[i] = 3 + (int)rng_below(&r, 14);
        f.src[i][0] = 0;
        for (int t = 1; t < f.len[i] - 1; t++) f.src[i][t] = 4 + (int)rng_below(&r, (uint32_t)(m->cfg.vocab_size - 4));
        f.src[i][f.len[i] - 1] = 2;
    }
    /* alone: generator_run one input at a time */
    Generator *one = generator_new(m, &g, 1, 20);
    cr_assert(one, "%s", tt_errmsg());
    Generator *many = generator_new_pooled(m, &g, 3, 20, 2);
    cr_assert(many, "%s", tt_errmsg());
    GenServe cb = {admit, done, &f};
    TEST_ASSERT_OK(generator_serve(many, &cb));
    cr_assert(f.n_done == N_IN, "%d of %d inputs answered", f.n_done, N_IN);
    for (int i = 0; i < N_IN; i++) {
        const int *src = f.src[i];
        uint64_t stream = (uint64_t)i, seed = 11 + (uint64_t)i;
        const GenOutput *out;
        TEST_ASSERT_OK(generator_run_seeded(one, 1, &src, &f.len[i], &stream, &seed, &out));
        cr_assert(out->n == f.got_n[i]);
        for (int k = 0; k < out->n; k++) {
            const GenHypothesis *a = &out->hyps[k], *b = &f.got[i][k];
            cr_assert(a->n_tokens == b->n_tokens && !memcmp(a->tokens, f.got_tokens[i][k], sizeof(int) * (size_t)a->n_tokens),
                      "%s beams %d sample %d: input %d sequence %d differs", fixture, beams, sample, i, k);
            /* the tokens exactly; the scores to float rounding (batched matrix products round
             * a little differently from a single row's) */
            cr_assert(fabs(a->score - b->score) <= 1e-5 * (1 + fabs(a->score)) &&
                          fabs(a->logprob - b->logprob) <= 1e-5 * (1 + fabs(a->logprob)),
                      "%s: input %d sequence %d: scores differ: %.17g %.17g vs %.17g %.17g", fixture, i, k, a->score,
                      a->logprob, b->score, b->logprob);
        }
    }
    generator_free(one);
    generator_free(many);
    model_free(m);
}

Test(continuous, greedy_joins_equal_alone) {
    check("bart", 1, 0, 1, 1);
    check("mbart", 1, 0, 1, 2);
    check("gpt2", 1, 0, 1, 1);
}

Test(continuous, beam_joins_equal_alone) {
    check("bart", 3, 0, 2, 1);
    check("mbart", 4, 0, 1, 3);
    check("gpt2", 3, 0, 2, 2);
}

Test(continuous, sampling_joins_equal_alone) {
    check("bart", 1, 1, 3, 1);
    check("gpt2", 1, 1, 2, 2);
}
