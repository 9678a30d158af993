/* test_no_alloc.c: once the activation arena is sized for the largest batch, a training
 * step (forward, loss, backward, clipping, AdamW) allocates nothing: no tt_alloc and no
 * malloc/calloc/realloc/posix_memalign from any code in the process, OpenBLAS included
 * (issue 2, bar 5). malloc is counted by interposing it in this executable. */
#include <stdatomic.h>

#include "../testlib.h"
#include "tutor/model.h"
#include "tutor/optim.h"

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_MALLOC 0 /* ASan owns malloc; the tt_alloc count still runs */
#else
#define COUNT_MALLOC 1
#endif

static _Atomic long malloc_calls;
static _Atomic int counting;

#if COUNT_MALLOC
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);

void *malloc(size_t n) {
    if (counting) malloc_calls++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (counting) malloc_calls++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (counting) malloc_calls++;
    return __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
    if (counting) malloc_calls++;
    *out = __libc_memalign(align, n);
    return *out ? 0 : 12;
}
#endif

static void run_steps(Arch arch, int threads) {
    tt_set_threads(threads);
    ModelConfig cfg;
    model_config_default(&cfg, arch);
    cfg.vocab_size = 300;
    cfg.d_model = 64;
    cfg.max_positions = 64;
    cfg.dec_layers = 2;
    cfg.dec_ffn = 128;
    if (arch != ARCH_GPT2) cfg.enc_layers = 2, cfg.enc_ffn = 128;
    cfg.dropout = cfg.attn_dropout = cfg.act_dropout = 0.1f;
    Model *m = model_new(&cfg, 5);
    cr_assert(m);
    TEST_ASSERT_OK(model_alloc_grads(m));
    AdamW opt;
    AdamWConfig oc;
    adamw_config_default(&oc);
    TEST_ASSERT_OK(adamw_init(&opt, m, &oc));
    enum { BMAX = 8, SMAX = 40, TMAX = 24 };
    static int src[BMAX * SMAX], src_mask[BMAX * SMAX], tgt[BMAX * TMAX], labels[BMAX * TMAX];
    Rng rng;
    rng_seed(&rng, 9);
    for (int i = 0; i < BMAX * SMAX; i++) src[i] = 4 + (int)rng_below(&rng, 296), src_mask[i] = 1;
    for (int i = 0; i < BMAX * TMAX; i++) tgt[i] = 4 + (int)rng_below(&rng, 296), labels[i] = tgt[i];
    int encdec = model_is_encdec(&cfg);
    TEST_ASSERT_OK(model_reserve(m, BMAX, SMAX, TMAX, 1));
    int shapes[4][3] = {{BMAX, SMAX, TMAX}, {4, 30, 20}, {8, 12, 24}, {2, 40, 7}};
#if COUNT_MALLOC
    /* The counter itself works: */
    malloc_calls = 0;
    counting = 1;
    void *volatile probe = malloc(16);
    counting = 0;
    free(probe);
    cr_assert_eq(malloc_calls, 1, "malloc interposition is not counting");
#endif
    uint64_t tt_before = tt_alloc_count();
    malloc_calls = 0;
    counting = 1;
    for (int s = 0; s < 4; s++) {
        Batch b = {shapes[s][0], encdec ? shapes[s][1] : 0, shapes[s][2], encdec ? src : NULL,
                   encdec ? src_mask : NULL, tgt, NULL, labels};
        model_zero_grads(m);
        TEST_ASSERT_OK(model_forward(m, &b, 1));
        model_xent(m, &b, 0.1, 1, 1, NULL);
        TEST_ASSERT_OK(model_backward(m, &b));
        grad_clip(m->grads, m->n_params, 1.0);
        adamw_step(&opt, m->params, m->grads, 1e-3);
    }
    counting = 0;
    uint64_t tt_calls = tt_alloc_count() - tt_before;
    cr_log_info("arch %d, %d threads: %llu tt_alloc and %ld malloc-family calls in 4 training steps", arch, threads,
                (unsigned long long)tt_calls, (long)malloc_calls);
    cr_expect_eq(tt_calls, 0, "tt_alloc called %llu times inside training steps", (unsigned long long)tt_calls);
    cr_expect_eq(malloc_calls, 0, "malloc family called %ld times inside training steps", (long)malloc_calls);
    /* A batch larger than the reservation grows the arena: the counter must see it. */
    uint64_t before_grow = tt_alloc_count();
    TEST_ASSERT_OK(model_reserve(m, BMAX * 2, SMAX, TMAX, 1));
    cr_expect_gt(tt_alloc_count(), before_grow, "growing the arena should allocate");
    adamw_free(&opt);
    model_free(m);
    tt_set_threads(1);
}

Test(no_alloc, mbart_one_thread) { run_steps(ARCH_MBART, 1); }
Test(no_alloc, bart_two_threads) { run_steps(ARCH_BART, 2); }
Test(no_alloc, gpt2_two_threads) { run_steps(ARCH_GPT2, 2); }
