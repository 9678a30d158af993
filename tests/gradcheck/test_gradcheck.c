/* test_gradcheck.c: every kernel's backward and the whole model's loss gradient (GPT-2,
 * BART, mBART, with padding and dropout) against central finite differences, all in double
 * precision (this file links the -DTUTOR_REAL_DOUBLE build of the library). Bar: for at
 * least 100 random coordinates of every tensor (all of them when fewer),
 * |g_fd - g| <= 1e-5 * max(|g|, 1e-3 * the tensor's largest |g|). */
#include "../testlib.h"
#include "tutor/kernels.h"
#include "tutor/model.h"

#if !REAL_IS_DOUBLE
#error "gradcheck tests must be built with -DTUTOR_REAL_DOUBLE"
#endif

/* Fourth-order central differences with step 5e-4: truncation error ~h^4 and rounding
 * error ~1e-16 |L| / h both stay far below the bound. */
#define FD_EPS 5e-4
#define TOL 1e-5

static Rng test_rng;
static double worst_ratio; /* largest |g_fd - g| / bound seen, for the log */

static void fill_normal(real *x, long n, double sd) {
    for (long i = 0; i < n; i++) x[i] = sd * rng_normal(&test_rng);
}

/* Checks analytic gradient g (n) of loss f at x (n) on random coordinates. */
typedef double (*LossFn)(void *ctx);
static void check_tensor(const char *name, real *x, const real *g, long n, LossFn f, void *ctx) {
    double gmax = 0;
    for (long i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    long count = n < 100 ? n : 100;
    int failures = 0;
    double worst = 0;
    for (long c = 0; c < count; c++) {
        long i = n <= 100 ? c : (long)rng_below(&test_rng, (uint32_t)n);
        real save = x[i];
        x[i] = save + FD_EPS;
        double lp = f(ctx);
        x[i] = save - FD_EPS;
        double lm = f(ctx);
        x[i] = save + 2 * FD_EPS;
        double lp2 = f(ctx);
        x[i] = save - 2 * FD_EPS;
        double lm2 = f(ctx);
        x[i] = save;
        double fd = (8 * (lp - lm) - (lp2 - lm2)) / (12 * FD_EPS);
        double bound = TOL * fmax(fabs(g[i]), 1e-3 * gmax);
        /* A tensor whose gradient vanishes identically (e.g. the key bias: softmax ignores a
         * shift shared by all keys) has only rounding noise in g; there finite differences
         * must see zero too. */
        if (gmax < 1e-12) bound = 1e-9;
        double err = fabs(fd - g[i]);
        if (bound > 0 && err / bound > worst) worst = err / bound;
        if (bound > 0 && err / bound > worst_ratio) worst_ratio = err / bound;
        if (err > bound) {
            if (failures++ < 3)
                cr_log_error("%s[%ld]: fd %.12g analytic %.12g (|err| %.3g > %.3g)", name, i, fd, (double)g[i], err,
                             bound);
        }
    }
    (void)worst;
    cr_expect(failures == 0, "%s: %d of %ld coordinates outside the bound (gmax %.3g)", name, failures, count, gmax);
    cr_expect(gmax > 0 || n == 0 || strstr(name, "pad") || strstr(name, "k_proj.bias"),
              "%s: gradient is identically zero", name);
}

/* ---- kernels: loss = sum(out * R) ---- */

typedef struct {
    int N, C, OC, layout, kind;
    real *x, *w, *b, *out, *R;
    real *mean, *rstd;
} KernelCtx;

static double dot(const real *a, const real *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double linear_loss(void *p) {
    KernelCtx *k = p;
    linear_forward(k->out, k->OC, k->x, k->w, k->b, k->N, k->C, k->OC, k->layout);
    return dot(k->out, k->R, (long)k->N * k->OC);
}

static void check_linear(WeightLayout layout) {
    KernelCtx k = {.N = 7, .C = 5, .OC = 6, .layout = layout};
    long nx = k.N * k.C, nw = k.C * k.OC, no = k.N * k.OC;
    k.x = calloc(nx, sizeof(real));
    k.w = calloc(nw, sizeof(real));
    k.b = calloc(k.OC, sizeof(real));
    k.out = calloc(no, sizeof(real));
    k.R = calloc(no, sizeof(real));
    fill_normal(k.x, nx, 1);
    fill_normal(k.w, nw, 1);
    fill_normal(k.b, k.OC, 1);
    fill_normal(k.R, no, 1);
    real *dx = calloc(nx, sizeof(real)), *dw = calloc(nw, sizeof(real)), *db = calloc(k.OC, sizeof(real));
    linear_backward(dx, dw, db, k.R, k.OC, k.x, k.w, k.N, k.C, k.OC, layout);
    check_tensor("linear.x", k.x, dx, nx, linear_loss, &k);
    check_tensor("linear.w", k.w, dw, nw, linear_loss, &k);
    check_tensor("linear.b", k.b, db, k.OC, linear_loss, &k);
    free(k.x), free(k.w), free(k.b), free(k.out), free(k.R), free(dx), free(dw), free(db);
}

Test(gradcheck, linear_out_in) {
    rng_seed(&test_rng, 1);
    check_linear(W_OUT_IN);
}
Test(gradcheck, linear_in_out) {
    rng_seed(&test_rng, 2);
    check_linear(W_IN_OUT);
}

static double layernorm_loss(void *p) {
    KernelCtx *k = p;
    layernorm_forward(k->out, k->mean, k->rstd, k->x, k->w, k->b, k->N, k->C, 1e-5);
    return dot(k->out, k->R, (long)k->N * k->C);
}

Test(gradcheck, layernorm) {
    rng_seed(&test_rng, 3);
    KernelCtx k = {.N = 6, .C = 9};
    long n = k.N * k.C;
    k.x = calloc(n, sizeof(real)), k.w = calloc(k.C, sizeof(real)), k.b = calloc(k.C, sizeof(real));
    k.out = calloc(n, sizeof(real)), k.R = calloc(n, sizeof(real));
    k.mean = calloc(k.N, sizeof(real)), k.rstd = calloc(k.N, sizeof(real));
    fill_normal(k.x, n, 2);
    fill_normal(k.w, k.C, 1);
    fill_normal(k.b, k.C, 1);
    fill_normal(k.R, n, 1);
    layernorm_loss(&k);
    real *dx = calloc(n, sizeof(real)), *dw = calloc(k.C, sizeof(real)), *db = calloc(k.C, sizeof(real));
    layernorm_backward(dx, dw, db, k.R, k.x, k.w, k.mean, k.rstd, k.N, k.C);
    check_tensor("layernorm.x", k.x, dx, n, layernorm_loss, &k);
    check_tensor("layernorm.w", k.w, dw, k.C, layernorm_loss, &k);
    check_tensor("layernorm.b", k.b, db, k.C, layernorm_loss, &k);
}

static double gelu_loss(void *p) {
    KernelCtx *k = p;
    gelu_forward(k->out, k->x, k->N, k->kind);
    return dot(k->out, k->R, k->N);
}

static void check_gelu(GeluKind kind) {
    KernelCtx k = {.N = 150, .kind = kind};
    k.x = calloc(k.N, sizeof(real)), k.out = calloc(k.N, sizeof(real)), k.R = calloc(k.N, sizeof(real));
    fill_normal(k.x, k.N, 2);
    fill_normal(k.R, k.N, 1);
    real *dx = calloc(k.N, sizeof(real));
    gelu_backward(dx, k.x, k.R, k.N, kind);
    check_tensor(kind == GELU_ERF ? "gelu_erf.x" : "gelu_tanh.x", k.x, dx, k.N, gelu_loss, &k);
}

Test(gradcheck, gelu_erf) {
    rng_seed(&test_rng, 4);
    check_gelu(GELU_ERF);
}
Test(gradcheck, gelu_tanh) {
    rng_seed(&test_rng, 5);
    check_gelu(GELU_TANH);
}

typedef struct {
    int B, Tq, Tk, H, C, causal;
    real *q, *k, *v, *out, *probs, *R, *pdrop;
    uint8_t *mask;
    int *key_mask;
    float p;
    uint64_t seed;
} AttnCtx;

static double attn_loss(void *p) {
    AttnCtx *a = p;
    Rng r;
    rng_seed(&r, a->seed);
    AttnDropout d = {a->p, a->pdrop, a->mask, &r};
    attention_forward(a->out, a->probs, a->q, a->C, a->k, a->C, a->v, a->C, a->key_mask, a->B, a->Tq, a->Tk, a->H,
                      a->C, a->causal, 0.7, &d);
    return dot(a->out, a->R, (long)a->B * a->Tq * a->C);
}

static void check_attention(int causal, float p) {
    AttnCtx a = {.B = 3, .Tq = 5, .Tk = causal ? 5 : 7, .H = 2, .C = 8, .causal = causal, .p = p, .seed = 77};
    long nq = (long)a.B * a.Tq * a.C, nk = (long)a.B * a.Tk * a.C, np = (long)a.B * a.H * a.Tq * a.Tk;
    a.q = calloc(nq, sizeof(real)), a.k = calloc(nk, sizeof(real)), a.v = calloc(nk, sizeof(real));
    a.out = calloc(nq, sizeof(real)), a.R = calloc(nq, sizeof(real)), a.probs = calloc(np, sizeof(real));
    a.pdrop = calloc(np, sizeof(real)), a.mask = calloc(np, 1);
    a.key_mask = calloc((size_t)a.B * a.Tk, sizeof(int));
    for (int b = 0; b < a.B; b++)
        for (int t = 0; t < a.Tk; t++) a.key_mask[b * a.Tk + t] = t < a.Tk - b; /* row b: b padding keys */
    fill_normal(a.q, nq, 1);
    fill_normal(a.k, nk, 1);
    fill_normal(a.v, nk, 1);
    fill_normal(a.R, nq, 1);
    attn_loss(&a);
    real *dq = calloc(nq, sizeof(real)), *dk = calloc(nk, sizeof(real)), *dv = calloc(nk, sizeof(real));
    real *scratch = calloc(2L * a.Tq * a.Tk, sizeof(real));
    AttnDropout d = {a.p, a.pdrop, a.mask, NULL};
    attention_backward(dq, dk, dv, a.R, a.probs, a.q, a.C, a.k, a.C, a.v, a.C, a.B, a.Tq, a.Tk, a.H, a.C, 0.7, &d,
                       scratch);
    check_tensor("attention.q", a.q, dq, nq, attn_loss, &a);
    check_tensor("attention.k(pad)", a.k, dk, nk, attn_loss, &a);
    check_tensor("attention.v(pad)", a.v, dv, nk, attn_loss, &a);
}

Test(gradcheck, attention_cross_padding) {
    rng_seed(&test_rng, 6);
    check_attention(0, 0);
}
Test(gradcheck, attention_causal_padding) {
    rng_seed(&test_rng, 7);
    check_attention(1, 0);
}
Test(gradcheck, attention_dropout) {
    rng_seed(&test_rng, 8);
    check_attention(0, 0.3f);
}

typedef struct {
    int B, T, C, V;
    int *ids;
    real *wte, *wpe, *out, *R;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *e = p;
    embedding_forward(e->out, e->ids, e->wte, e->wpe, e->B, e->T, e->C, 1.7, 2);
    return dot(e->out, e->R, (long)e->B * e->T * e->C);
}

Test(gradcheck, embedding) {
    rng_seed(&test_rng, 9);
    EmbCtx e = {.B = 2, .T = 4, .C = 5, .V = 7};
    int ids[8] = {1, 3, 3, 0, 6, 1, 2, 5};
    e.ids = ids;
    long n = (long)e.B * e.T * e.C;
    e.wte = calloc(e.V * e.C, sizeof(real)), e.wpe = calloc((e.T + 2) * e.C, sizeof(real));
    e.out = calloc(n, sizeof(real)), e.R = calloc(n, sizeof(real));
    fill_normal(e.wte, e.V * e.C, 1);
    fill_normal(e.wpe, (e.T + 2) * e.C, 1);
    fill_normal(e.R, n, 1);
    real *dwte = calloc(e.V * e.C, sizeof(real)), *dwpe = calloc((e.T + 2) * e.C, sizeof(real));
    embedding_backward(dwte, dwpe, e.R, ids, e.B, e.T, e.C, 1.7, 2);
    /* rows of tokens 4 (absent) and positions 0-1 (offset) have zero gradient: checked too */
    check_tensor("embedding.wte(pad)", e.wte, dwte, e.V * e.C, emb_loss, &e);
    check_tensor("embedding.wpe(pad)", e.wpe, dwpe, (e.T + 2) * e.C, emb_loss, &e);
}

typedef struct {
    int N, C, V;
    real *x, *w, *bias, *chunk;
    int *labels;
    double ls;
} XentCtx;

static double xent_loss(void *p) {
    XentCtx *c = p;
    return vocab_xent(c->x, c->w, c->bias, c->labels, c->N, c->C, c->V, c->ls, 1, NULL, NULL, NULL, c->chunk, 3, NULL);
}

static void check_xent(double ls) {
    XentCtx c = {.N = 7, .C = 6, .V = 11, .ls = ls};
    int labels[7] = {3, -100, 0, 10, 5, -100, 5};
    c.labels = labels;
    c.x = calloc(c.N * c.C, sizeof(real)), c.w = calloc(c.V * c.C, sizeof(real)), c.bias = calloc(c.V, sizeof(real));
    c.chunk = calloc(3 * c.V, sizeof(real));
    fill_normal(c.x, c.N * c.C, 1);
    fill_normal(c.w, c.V * c.C, 1);
    fill_normal(c.bias, c.V, 1);
    real *dx = calloc(c.N * c.C, sizeof(real)), *dw = calloc(c.V * c.C, sizeof(real)), *db = calloc(c.V, sizeof(real));
    long counted;
    vocab_xent(c.x, c.w, c.bias, labels, c.N, c.C, c.V, ls, 1, dx, dw, db, c.chunk, 3, &counted);
    cr_assert_eq(counted, 5);
    check_tensor("xent.x(pad)", c.x, dx, c.N * c.C, xent_loss, &c);
    check_tensor("xent.w", c.w, dw, c.V * c.C, xent_loss, &c);
    check_tensor("xent.bias", c.bias, db, c.V, xent_loss, &c);
}

Test(gradcheck, vocab_xent) {
    rng_seed(&test_rng, 10);
    check_xent(0);
}
Test(gradcheck, vocab_xent_label_smoothing) {
    rng_seed(&test_rng, 11);
    check_xent(0.1);
}

/* ---- whole models ---- */

typedef struct {
    Model *m;
    Batch b;
    uint64_t seed;
} ModelCtx;

static double model_loss(void *p) {
    ModelCtx *c = p;
    rng_seed(&c->m->dropout_rng, c->seed);
    cr_assert(model_forward(c->m, &c->b, 1) == 0, "%s", tt_errmsg());
    return model_xent(c->m, &c->b, 0.05, 0, 1, NULL);
}

static void check_model(Arch arch, float dropout) {
    ModelConfig cfg;
    model_config_default(&cfg, arch);
    cfg.vocab_size = 23;
    cfg.d_model = 16;
    cfg.max_positions = 12;
    cfg.dec_layers = 2;
    cfg.dec_heads = 2;
    cfg.dec_ffn = 24;
    if (arch != ARCH_GPT2) {
        cfg.enc_layers = 2;
        cfg.enc_heads = 4;
        cfg.enc_ffn = 20;
        cfg.scale_embedding = arch == ARCH_MBART;
    }
    cfg.dropout = cfg.attn_dropout = cfg.act_dropout = dropout;
    cfg.init_std = 0.3;
    Model *m = model_new(&cfg, 42);
    cr_assert(m, "%s", tt_errmsg());
    /* LayerNorm parameters and biases away from 1 and 0, so that every term matters. */
    fill_normal(m->params, (long)m->n_params, 0.3);
    for (int i = 0; i < m->n_tensors; i++)
        if (strstr(m->tensors[i].name, "norm.weight") || strstr(m->tensors[i].name, "ln_"))
            for (size_t j = 0; j < m->tensors[i].numel; j++) m->params[m->tensors[i].offset + j] += 1;
    cr_assert(model_alloc_grads(m) == 0);
    enum { B = 3, S = 6, T = 5 };
    static int src[B * S], src_mask[B * S], tgt_in[B * T], tgt_mask[B * T], labels[B * T];
    for (int b = 0; b < B; b++) {
        for (int s = 0; s < S; s++) {
            src_mask[b * S + s] = s < S - b;              /* row b has b padding tokens */
            src[b * S + s] = src_mask[b * S + s] ? 3 + (int)rng_below(&test_rng, 20) : 1;
        }
        for (int t = 0; t < T; t++) {
            tgt_mask[b * T + t] = t < T - b;
            tgt_in[b * T + t] = 3 + (int)rng_below(&test_rng, 20);
            labels[b * T + t] = tgt_mask[b * T + t] ? (int)rng_below(&test_rng, 23) : -100;
        }
    }
    ModelCtx c = {m, {B, S, T, src, src_mask, tgt_in, arch == ARCH_GPT2 ? tgt_mask : NULL, labels}, 1234};
    if (arch == ARCH_GPT2) c.b.src = c.b.src_mask = NULL, c.b.S = 0;
    model_zero_grads(m);
    model_loss(&c);
    model_xent(m, &c.b, 0.05, 1, 1, NULL);
    cr_assert(model_backward(m, &c.b) == 0, "%s", tt_errmsg());
    real *g = malloc(m->n_params * sizeof(real));
    memcpy(g, m->grads, m->n_params * sizeof(real));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *pi = &m->tensors[i];
        char name[128];
        /* Position rows past the longest sequence, and the padding token's row, get no
         * gradient: allowed to be all zero. */
        snprintf(name, sizeof name, "%s%s", pi->name, strstr(pi->name, "pos") || strstr(pi->name, "wpe") ? "(pad)" : "");
        check_tensor(name, m->params + pi->offset, g + pi->offset, (long)pi->numel, model_loss, &c);
    }
    cr_log_info("arch %d, dropout %.1f: %d tensors, worst |g_fd - g| / bound = %.3f", arch, dropout, m->n_tensors,
                worst_ratio);
    free(g);
    model_free(m);
}

Test(gradcheck, model_gpt2) {
    rng_seed(&test_rng, 20);
    check_model(ARCH_GPT2, 0);
}
Test(gradcheck, model_bart) {
    rng_seed(&test_rng, 21);
    check_model(ARCH_BART, 0);
}
Test(gradcheck, model_mbart) {
    rng_seed(&test_rng, 22);
    check_model(ARCH_MBART, 0);
}
Test(gradcheck, model_gpt2_dropout) {
    rng_seed(&test_rng, 23);
    check_model(ARCH_GPT2, 0.2f);
}
Test(gradcheck, model_bart_dropout) {
    rng_seed(&test_rng, 24);
    check_model(ARCH_BART, 0.2f);
}
Test(gradcheck, model_mbart_dropout) {
    rng_seed(&test_rng, 25);
    check_model(ARCH_MBART, 0.2f);
}
