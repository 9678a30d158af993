/* test_exposure.c: exposure bias and the teacher-forced per-token statistics under it, on
 * cases whose value is known: a model against an identical copy gives R = 0 everywhere; two
 * models whose logits are fixed biases give KL(softmax(b_O) || softmax(b_M)) = ln(2)/4 at
 * every position; random models agree with a direct softmax computation on a separate
 * forward; per-token NLL agrees with evaluate_loss (enc-dec and decoder-only). */
#include <math.h>
#include <sys/stat.h>

#include "../testlib.h"
#include "tutor/evaluate.h"
#include "tutor/fileio.h"

static Model *tiny(Arch arch, int V, uint64_t seed) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.vocab_size = V;
    c.d_model = 16;
    c.enc_layers = arch == ARCH_GPT2 ? 0 : 1;
    c.dec_layers = 1;
    c.enc_heads = arch == ARCH_GPT2 ? 0 : 2;
    c.dec_heads = 2;
    c.enc_ffn = arch == ARCH_GPT2 ? 0 : 32;
    c.dec_ffn = 32;
    c.max_positions = 32;
    c.dropout = c.attn_dropout = c.act_dropout = 0;
    c.init_std = 0.5;
    Model *m = model_new(&c, seed);
    cr_assert(m, "%s", tt_errmsg());
    return m;
}

/* A pair set from literal token lists: sources get <s> ... </s>, targets as given. */
typedef struct {
    PairSet ps;
    int pool[256];
    TokPair items[8];
} TinySet;

static void tiny_set(TinySet *s, const Model *m, int n, const int *src_lens, const int *tgt_lens, uint64_t seed) {
    memset(s, 0, sizeof *s);
    Rng r;
    rng_seed(&r, seed);
    int used = 0, V = m->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        TokPair *p = &s->items[i];
        p->src = s->pool + used;
        p->src_len = src_lens[i] + 2;
        p->src[0] = m->cfg.bos_id;
        for (int k = 0; k < src_lens[i]; k++) p->src[1 + k] = 3 + (int)rng_below(&r, (uint32_t)(V - 3));
        p->src[p->src_len - 1] = m->cfg.eos_id;
        used += p->src_len;
        p->tgt = s->pool + used;
        p->tgt_len = tgt_lens[i];
        for (int k = 0; k < tgt_lens[i]; k++) p->tgt[k] = 3 + (int)rng_below(&r, (uint32_t)(V - 3));
        if (tgt_lens[i]) p->tgt[tgt_lens[i] - 1] = m->cfg.eos_id;
        used += p->tgt_len;
    }
    s->ps.items = s->items;
    s->ps.n = (size_t)n;
    s->ps.pool = s->pool;
}

Test(exposure, accumulate_averages_over_sequences_that_reach_l) {
    /* three sequences of 2, 1 and 3 tokens */
    static const int src_lens[3] = {1, 1, 1}, tgt_lens[3] = {2, 1, 3};
    Model *m = tiny(ARCH_MBART, 12, 1);
    TinySet s;
    tiny_set(&s, m, 3, src_lens, tgt_lens, 5);
    const double v[6] = {1, 2, /**/ 10, /**/ 100, 200, 300};
    double acc[4];
    long count[4];
    exposure_accumulate(v, &s.ps, 4, acc, count);
    /* l=1: (1 + 10 + 100)/3; l=2: (3 + 300)/2; l=3: 600/1; l=4: none */
    cr_expect_float_eq(acc[0], 111.0 / 3, 1e-12);
    cr_expect_float_eq(acc[1], 303.0 / 2, 1e-12);
    cr_expect_float_eq(acc[2], 600.0, 1e-12);
    cr_expect(isnan(acc[3]));
    cr_expect(count[0] == 3 && count[1] == 2 && count[2] == 1 && count[3] == 0);
    model_free(m);
}

Test(exposure, model_against_identical_copy_is_zero_everywhere) {
    Arch archs[2] = {ARCH_MBART, ARCH_GPT2};
    for (int a = 0; a < 2; a++) {
        Model *o = tiny(archs[a], 20, 3), *m = tiny(archs[a], 20, 3);
        static const int src_lens[4] = {3, 5, 2, 4}, ref_lens[4] = {4, 2, 6, 3}, free_lens[4] = {5, 5, 1, 2};
        TinySet ref, fr;
        tiny_set(&ref, m, 4, src_lens, ref_lens, 11);
        tiny_set(&fr, m, 4, src_lens, free_lens, 12);
        for (int i = 0; i < 4; i++) memcpy(fr.items[i].src, ref.items[i].src, sizeof(int) * (size_t)ref.items[i].src_len);
        ExposureBias eb;
        TEST_ASSERT_OK(exposure_bias_compute(o, m, &ref.ps, &fr.ps, 6, 64, 2, &eb));
        for (int l = 0; l < 6; l++) {
            if (eb.n_free[l]) cr_expect(eb.r_free[l] == 0.0, "arch %d R_free(%d) = %g", a, l + 1, eb.r_free[l]);
            else cr_expect(isnan(eb.r_free[l]));
            cr_expect(eb.r_ref[l] == 0.0, "arch %d R_ref(%d) = %g", a, l + 1, eb.r_ref[l]);
            cr_expect(isnan(eb.exacc_err[l]), "0/0 is undefined, not a number");
        }
        cr_expect(eb.n_free[4] == 2 && eb.n_free[5] == 0);
        cr_expect(eb.kl_free_per_token == 0 && eb.kl_ref_per_token == 0);
        cr_expect(eb.tokens_free == 13 && eb.tokens_ref == 15);
        exposure_bias_free(&eb);
        /* the same object as both: zero without running */
        TEST_ASSERT_OK(exposure_bias_compute(m, m, &ref.ps, &fr.ps, 3, 64, 2, &eb));
        cr_expect(eb.r_ref[2] == 0.0);
        exposure_bias_free(&eb);
        model_free(o);
        model_free(m);
    }
}

/* Logits that do not depend on the input: embeddings zero, logits = final_logits_bias. */
static void fix_logits(Model *m, const double *probs) {
    const ParamInfo *e = model_find_tensor(m, "model.shared.weight");
    cr_assert(e);
    memset(m->params + e->offset, 0, sizeof(real) * e->numel);
    for (int v = 0; v < m->cfg.vocab_size; v++) m->p.final_logits_bias[v] = (real)log(probs[v]);
}

Test(exposure, fixed_distributions_give_the_hand_computed_kl) {
    /* O = (1/2, 1/4, 1/8, 1/8), M uniform over 4: KL = 1/2 ln 2 + 1/4 ln 1 + 2/8 ln(1/2) = ln(2)/4 */
    Model *o = tiny(ARCH_BART, 4, 1), *m = tiny(ARCH_BART, 4, 2);
    const double po[4] = {0.5, 0.25, 0.125, 0.125}, pm[4] = {0.25, 0.25, 0.25, 0.25};
    fix_logits(o, po);
    fix_logits(m, pm);
    const double k = log(2.0) / 4;
    /* one position first */
    static const int one_src[1] = {2}, one_tgt[1] = {1};
    TinySet s1;
    tiny_set(&s1, m, 1, one_src, one_tgt, 1);
    double kl1 = -1, nll1 = -1;
    TEST_ASSERT_OK(teacher_forced_token_stats(o, m, &s1.ps, 256, 4, &kl1, &nll1));
    cr_expect(fabs(kl1 - k) < 1e-6, "KL %.9f, by hand %.9f", kl1, k);
    cr_expect(fabs(nll1 - log(4.0)) < 1e-6, "NLL under uniform M is ln 4: %.9f", nll1);
    /* references of 1 and 3 tokens, own outputs of 2 and 2: R(l) = l k wherever defined */
    static const int src_lens[2] = {2, 3}, ref_lens[2] = {1, 3}, free_lens[2] = {2, 2};
    TinySet ref, fr;
    tiny_set(&ref, m, 2, src_lens, ref_lens, 3);
    tiny_set(&fr, m, 2, src_lens, free_lens, 4);
    ExposureBias eb;
    TEST_ASSERT_OK(exposure_bias_compute(o, m, &ref.ps, &fr.ps, 3, 256, 4, &eb));
    for (int l = 0; l < 3; l++) cr_expect(fabs(eb.r_ref[l] - (l + 1) * k) < 1e-6, "R_ref(%d) = %g", l + 1, eb.r_ref[l]);
    cr_expect(eb.n_ref[0] == 2 && eb.n_ref[1] == 1 && eb.n_ref[2] == 1);
    cr_expect(fabs(eb.r_free[1] - 2 * k) < 1e-6 && isnan(eb.r_free[2]));
    cr_expect(fabs(eb.exacc_err[0]) < 1e-4 && fabs(eb.exacc_err[1]) < 1e-4, "equal R: 0%% excess");
    cr_expect(isnan(eb.exacc_err[2]));
    exposure_bias_free(&eb);
    /* KL is not symmetric: the other direction is 1/4 ln(1/2)... by hand: sum 1/4 ln(1/4 / p) */
    double rev = 0.25 * (log(0.25 / 0.5) + log(1.0) + 2 * log(0.25 / 0.125));
    TEST_ASSERT_OK(teacher_forced_token_stats(m, o, &s1.ps, 256, 4, &kl1, NULL));
    cr_expect(fabs(kl1 - rev) < 1e-6, "KL(M || O) %.9f, by hand %.9f", kl1, rev);
    model_free(o);
    model_free(m);
}

/* KL of one position computed directly: a separate forward per model, softmax by exp/sum. */
static double direct_kl(Model *o, Model *m, const TokPair *p, int t) {
    double prob[2][64];
    Model *ms[2] = {o, m};
    for (int k = 0; k < 2; k++) {
        const ModelConfig *c = &ms[k]->cfg;
        int tin[64], mask_s[64], lab[64];
        Batch b = {0};
        b.B = 1;
        int row;
        if (model_is_encdec(c)) {
            tin[0] = c->decoder_start_id;
            for (int i = 0; i < t; i++) tin[1 + i] = p->tgt[i];
            b.T = t + 1;
            for (int s = 0; s < p->src_len; s++) mask_s[s] = 1;
            b.S = p->src_len;
            b.src = p->src;
            b.src_mask = mask_s;
            row = t;
        } else {
            int n = 0;
            for (int s = 0; s < p->src_len; s++) tin[n++] = p->src[s];
            for (int i = 0; i < t; i++) tin[n++] = p->tgt[i];
            b.T = n;
            for (int s = 0; s < n; s++) mask_s[s] = 1;
            b.tgt_mask = mask_s;
            row = n - 1;
        }
        for (int s = 0; s < b.T; s++) lab[s] = -100;
        b.tgt_in = tin;
        b.labels = lab;
        cr_assert(model_forward(ms[k], &b, 0) == 0, "%s", tt_errmsg());
        real logits[64];
        model_logits(ms[k], row, 1, logits);
        double z = 0;
        for (int v = 0; v < c->vocab_size; v++) z += exp((double)logits[v]);
        for (int v = 0; v < c->vocab_size; v++) prob[k][v] = exp((double)logits[v]) / z;
    }
    double kl = 0;
    for (int v = 0; v < o->cfg.vocab_size; v++) kl += prob[0][v] * log(prob[0][v] / prob[1][v]);
    return kl;
}

Test(exposure, random_models_match_a_direct_computation) {
    Arch archs[2] = {ARCH_MBART, ARCH_GPT2};
    for (int a = 0; a < 2; a++) {
        Model *o = tiny(archs[a], 24, 100 + a), *m = tiny(archs[a], 24, 200 + a);
        static const int src_lens[3] = {4, 2, 6}, tgt_lens[3] = {3, 5, 2};
        TinySet s;
        tiny_set(&s, m, 3, src_lens, tgt_lens, 9);
        double kl[10];
        TEST_ASSERT_OK(teacher_forced_token_stats(o, m, &s.ps, 40, 2, kl, NULL));
        int pos = 0;
        for (int i = 0; i < 3; i++)
            for (int t = 0; t < tgt_lens[i]; t++, pos++) {
                double want = direct_kl(o, m, &s.items[i], t);
                cr_expect(want > 1e-4, "random models differ");
                cr_expect(fabs(kl[pos] - want) <= 1e-5 * (1 + want), "arch %d pair %d t %d: %.8f vs direct %.8f", a,
                          i, t, kl[pos], want);
            }
        model_free(o);
        model_free(m);
    }
}

Test(exposure, per_token_nll_agrees_with_evaluate_loss) {
    Arch archs[2] = {ARCH_MBART, ARCH_GPT2};
    for (int a = 0; a < 2; a++) {
        Model *m = tiny(archs[a], 30, 7 + a);
        static const int src_lens[5] = {4, 2, 6, 1, 3}, tgt_lens[5] = {3, 5, 2, 4, 1};
        TinySet s;
        tiny_set(&s, m, 5, src_lens, tgt_lens, 21);
        double nll[15];
        TEST_ASSERT_OK(teacher_forced_token_stats(NULL, m, &s.ps, 30, 3, NULL, nll));
        double sum = 0;
        for (int k = 0; k < 15; k++) sum += nll[k];
        long n;
        double loss = evaluate_loss(m, &s.ps, 4096, 8, &n);
        cr_expect(n == 15);
        cr_expect(fabs(sum / 15 - loss) < 1e-5 * (1 + loss), "arch %d: %.8f vs evaluate_loss %.8f", a, sum / 15, loss);
        model_free(m);
    }
}

Test(exposure, vocabulary_mismatch_is_an_error) {
    Model *o = tiny(ARCH_MBART, 20, 1), *m = tiny(ARCH_MBART, 24, 2);
    static const int src_lens[1] = {2}, tgt_lens[1] = {2};
    TinySet s;
    tiny_set(&s, o, 1, src_lens, tgt_lens, 1);
    ExposureBias eb;
    cr_expect(exposure_bias_compute(o, m, &s.ps, &s.ps, 2, 64, 2, &eb) == -1);
    cr_expect(strstr(tt_errmsg(), "vocabulary") != NULL, "%s", tt_errmsg());
    model_free(o);
    model_free(m);
}

Test(exposure, plot_writes_data_script_and_png) {
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    ExposureBias eb = {0};
    double rf[3] = {0.5, 1.5, NAN}, rr[3] = {0.4, 1.0, 2.0}, ex[3] = {25, 50, NAN};
    long nf[3] = {3, 2, 0}, nr[3] = {3, 3, 1};
    eb.max_len = 3;
    eb.r_free = rf, eb.r_ref = rr, eb.exacc_err = ex, eb.n_free = nf, eb.n_ref = nr;
    char png[128], dat[128], gp[128];
    snprintf(png, sizeof png, "%s/eb.png", dir);
    snprintf(dat, sizeof dat, "%s/eb.dat", dir);
    snprintf(gp, sizeof gp, "%s/eb.gp", dir);
    int plotted = -1;
    TEST_ASSERT_OK(exposure_bias_plot(&eb, png, "test", &plotted));
    size_t n;
    char *text = read_file_text(dat, &n);
    cr_assert(text);
    cr_expect(strstr(text, "\n1 0.5 0.4 25 3 3\n") != NULL, "%s", text);
    cr_expect(strstr(text, "\n2 1.5 1 50 2 3\n") != NULL, "%s", text);
    cr_expect(strstr(text, "\n3 ") == NULL, "l = 3 has no free-running data: %s", text);
    free(text);
    struct stat st;
    cr_expect(stat(gp, &st) == 0);
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        cr_expect(plotted == 1);
        cr_expect(stat(png, &st) == 0 && st.st_size > 1000, "a PNG was made");
    }
    test_rmtree(dir);
}
