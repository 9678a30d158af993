/* test_objectives.c: every word-level KD objective and its gradient against a float64
 * PyTorch reference written from the definitions (tests/distill/kd_ref.py, gradients by
 * autograd), against central finite differences, and on its limits: zero when the student
 * is the teacher, JSD at beta 0 and 1 equal to the two KLs, the tau^2 scaling. */
#include <cjson/cJSON.h>

#include "../testlib.h"
#include "tutor/distill.h"
#include "tutor/fileio.h"
#include "kernels/fastmath.h"

#define PYTHON "/usr/bin/python3"
#define V 37

static void random_logits(real *x, int n, uint64_t seed, double scale) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) x[i] = (real)(scale * rng_normal(&r));
}

static double loss_and_grad(const KdObjective *o, const real *t, const real *s, real *g) {
    double scratch[5 * V];
    return kd_token(o, t, s, V, scratch, g, 1.0);
}

typedef struct {
    KdKind kind;
    double tau, beta, skew, top_p;
} Case;

static const Case CASES[] = {
    {KD_FKL, 1, 0.5, 0.1, 1},   {KD_FKL, 2, 0.5, 0.1, 1},   {KD_FKL, 1, 0.5, 0.1, 0.8}, {KD_RKL, 1, 0.5, 0.1, 1},
    {KD_RKL, 2.5, 0.5, 0.1, 1}, {KD_JSD, 1, 0.5, 0.1, 1},   {KD_JSD, 1.5, 0.1, 0.1, 1}, {KD_JSD, 1, 0.9, 0.1, 0.9},
    {KD_JSD, 1, 0.0, 0.1, 1},   {KD_JSD, 1, 1.0, 0.1, 1},   {KD_TVD, 1, 0.5, 0.1, 1},   {KD_TVD, 2, 0.5, 0.1, 0.7},
    {KD_SKL, 1, 0.5, 0.1, 1},   {KD_SKL, 2, 0.5, 0.3, 0.9}, {KD_SRKL, 1, 0.5, 0.1, 1},  {KD_SRKL, 1.5, 0.5, 0.4, 1},
};
#define N_CASES (int)(sizeof CASES / sizeof CASES[0])

static KdObjective objective(const Case *c) {
    KdObjective o;
    kd_objective_default(&o);
    o.kind = c->kind, o.tau = c->tau, o.beta = c->beta, o.skew = c->skew, o.top_p = c->top_p;
    cr_assert(kd_objective_check(&o) == 0, "%s", tt_errmsg());
    return o;
}

Test(objectives, match_the_float64_torch_reference, .timeout = 120) {
    char dir[128], in[256], out[256], cmd[800];
    test_tmpdir(dir, sizeof dir);
    snprintf(in, sizeof in, "%s/cases.json", dir);
    snprintf(out, sizeof out, "%s/ref.json", dir);
    real t[N_CASES][V], s[N_CASES][V];
    cJSON *arr = cJSON_CreateArray();
    static const char *names[] = {"fkl", "rkl", "jsd", "tvd", "skl", "srkl"};
    for (int k = 0; k < N_CASES; k++) {
        random_logits(t[k], V, 100 + k, 2.0);
        random_logits(s[k], V, 200 + k, 2.0);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", names[CASES[k].kind]);
        cJSON_AddNumberToObject(o, "tau", CASES[k].tau);
        cJSON_AddNumberToObject(o, "beta", CASES[k].beta);
        cJSON_AddNumberToObject(o, "skew", CASES[k].skew);
        cJSON_AddNumberToObject(o, "top_p", CASES[k].top_p);
        cJSON *ta = cJSON_CreateArray(), *sa = cJSON_CreateArray();
        for (int v = 0; v < V; v++) {
            cJSON_AddItemToArray(ta, cJSON_CreateNumber(t[k][v]));
            cJSON_AddItemToArray(sa, cJSON_CreateNumber(s[k][v]));
        }
        cJSON_AddItemToObject(o, "teacher", ta);
        cJSON_AddItemToObject(o, "student", sa);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    FILE *f = fopen(in, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    snprintf(cmd, sizeof cmd, PYTHON " tests/distill/kd_ref.py < %s > %s", in, out);
    cr_assert(system(cmd) == 0, "the PyTorch reference failed (python3-torch installed?)");
    size_t n;
    char *rt = read_file_text(out, &n);
    cr_assert(rt);
    cJSON *ref = cJSON_Parse(rt);
    free(rt);
    cr_assert(cJSON_IsArray(ref) && cJSON_GetArraySize(ref) == N_CASES);
    for (int k = 0; k < N_CASES; k++) {
        KdObjective o = objective(&CASES[k]);
        real g[V];
        double loss = loss_and_grad(&o, t[k], s[k], g);
        const cJSON *r = cJSON_GetArrayItem(ref, k);
        double rl = cJSON_GetObjectItem(r, "loss")->valuedouble;
        cr_expect(fabs(loss - rl) <= 1e-9 + 1e-7 * fabs(rl), "case %d (%s tau %g beta %g top-p %g): loss %.12g, torch %.12g",
                  k, names[CASES[k].kind], CASES[k].tau, CASES[k].beta, CASES[k].top_p, loss, rl);
        const cJSON *rg = cJSON_GetObjectItem(r, "grad");
        double md = 0, mr = 0;
        for (int v = 0; v < V; v++) {
            double x = cJSON_GetArrayItem(rg, v)->valuedouble;
            md = fmax(md, fabs(g[v] - x));
            mr = fmax(mr, fabs(x));
        }
        cr_expect(md <= 1e-6 * fmax(mr, 1e-3), "case %d (%s): gradient differs from autograd by %g (scale %g)", k,
                  names[CASES[k].kind], md, mr);
    }
    cJSON_Delete(ref);
    test_rmtree(dir);
}

Test(objectives, gradients_match_finite_differences) {
    for (int k = 0; k < N_CASES; k++) {
        KdObjective o = objective(&CASES[k]);
        real t[V], s[V], g[V];
        random_logits(t, V, 300 + k, 1.5);
        random_logits(s, V, 400 + k, 1.5);
        loss_and_grad(&o, t, s, g);
        double worst = 0, scale = 0;
        for (int v = 0; v < V; v++) {
            real keep = s[v];
            real h = 1e-2f;
            s[v] = keep + h;
            double up = loss_and_grad(&o, t, s, NULL);
            real hu = s[v] - keep;
            s[v] = keep - h;
            double dn = loss_and_grad(&o, t, s, NULL);
            real hd = keep - s[v];
            s[v] = keep;
            double fd = (up - dn) / ((double)hu + (double)hd);
            worst = fmax(worst, fabs(fd - g[v]));
            scale = fmax(scale, fabs(g[v]));
        }
        /* TVD is piecewise linear: differences are exact away from the kinks */
        cr_expect(worst <= 2e-3 * fmax(scale, 1e-2), "case %d (kind %d): finite differences differ by %g (scale %g)", k,
                  CASES[k].kind, worst, scale);
    }
}

Test(objectives, zero_when_the_student_is_the_teacher) {
    real t[V], g[V];
    random_logits(t, V, 7, 2.0);
    for (int k = 0; k < N_CASES; k++) {
        if (CASES[k].top_p < 1) continue; /* a truncated teacher differs from the student */
        KdObjective o = objective(&CASES[k]);
        double loss = loss_and_grad(&o, t, t, g);
        cr_expect(fabs(loss) < 1e-12, "case %d: loss %g when student = teacher", k, loss);
        for (int v = 0; v < V; v++) cr_expect(fabs(g[v]) < 1e-7, "case %d: gradient %g at %d", k, g[v], v);
    }
}

Test(objectives, jsd_at_beta_0_and_1_are_the_two_kls) {
    real t[V], s[V];
    random_logits(t, V, 8, 2.0);
    random_logits(s, V, 9, 2.0);
    KdObjective f, r, j;
    kd_objective_default(&f);
    r = j = f;
    r.kind = KD_RKL;
    j.kind = KD_JSD;
    double fkl = loss_and_grad(&f, t, s, NULL), rkl = loss_and_grad(&r, t, s, NULL);
    j.beta = 0;
    cr_expect(fabs(loss_and_grad(&j, t, s, NULL) - fkl) < 1e-12);
    j.beta = 1;
    cr_expect(fabs(loss_and_grad(&j, t, s, NULL) - rkl) < 1e-12);
    /* and continuity near the ends is not expected (both terms vanish), but JSD is bounded
     * by log 2 and symmetric at beta 0.5 */
    j.beta = 0.5;
    double a = loss_and_grad(&j, t, s, NULL), b = loss_and_grad(&j, s, t, NULL);
    cr_expect(fabs(a - b) < 1e-12 && a > 0 && a <= log(2.0) + 1e-12, "JSD(0.5) %g / %g", a, b);
    cr_expect(fkl > 0 && rkl > 0 && fabs(fkl - rkl) > 1e-6, "KLs %g %g", fkl, rkl);
}

Test(objectives, temperature_scaling_is_tau_squared) {
    real t[V], s[V], t2[V], s2[V];
    random_logits(t, V, 10, 3.0);
    random_logits(s, V, 11, 3.0);
    for (int v = 0; v < V; v++) t2[v] = t[v] / 2, s2[v] = s[v] / 2;
    for (int kind = 0; kind < KD_N_KINDS; kind++) {
        KdObjective o1, o2;
        kd_objective_default(&o1);
        o1.kind = (KdKind)kind;
        o2 = o1;
        o2.tau = 2;
        real g1[V], g2[V];
        double l2 = loss_and_grad(&o2, t, s, g2);
        double l1 = loss_and_grad(&o1, t2, s2, g1);
        cr_expect(fabs(l2 - 4 * l1) <= 1e-10 * fmax(1, l2), "kind %d: tau 2 loss %g, 4 x tau-1 loss on logits/2 %g",
                  kind, l2, 4 * l1);
        /* d/ds of tau^2 L(s / tau) = tau^2 (1/tau) L'(s / tau) = 2 g1 */
        for (int v = 0; v < V; v++)
            cr_expect(fabs(g2[v] - 2 * g1[v]) <= 1e-5 * fmax(1e-3, fabs(g2[v])), "kind %d grad %d: %g vs %g", kind,
                      v, g2[v], 2 * g1[v]);
    }
}

Test(objectives, names_and_checks) {
    for (int k = 0; k < KD_N_KINDS; k++) cr_expect_eq(kd_kind_parse(kd_kind_name((KdKind)k)), k);
    cr_expect_eq(kd_kind_parse("kl"), -1);
    KdObjective o;
    kd_objective_default(&o);
    o.kind = KD_RKL;
    o.top_p = 0.9;
    cr_expect(kd_objective_check(&o) != 0 && strstr(tt_errmsg(), "reverse KL"));
    kd_objective_default(&o);
    o.tau = 0;
    cr_expect(kd_objective_check(&o) != 0);
    kd_objective_default(&o);
    o.beta = 1.5;
    cr_expect(kd_objective_check(&o) != 0);
}

Test(objectives, the_double_fast_exp_matches_libm) {
    Rng r;
    rng_seed(&r, 77);
    double worst = 0;
    for (int i = 0; i < 200000; i++) {
        double x = -700 + 1409 * rng_uniform(&r);
        if (i < 1000) x = -30 + 30 * rng_uniform(&r); /* the range softmaxes use */
        double a = fast_exp(x), b = exp(x);
        worst = fmax(worst, fabs(a - b) / b);
    }
    cr_expect(worst < 1e-15, "fast_exp: worst relative error %g", worst);
    cr_expect(fast_exp(0) == 1.0 && isnan(fast_exp(NAN)) && fast_exp(-1000) < 1e-300);
}
