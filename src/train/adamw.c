/* adamw.c: AdamW as torch.optim.AdamW computes it (decoupled decay p *= 1 - lr*wd, then the
 * bias-corrected Adam step), plus global-norm gradient clipping. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/optim.h"

void adamw_config_default(AdamWConfig *c) {
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.01;
}

int adamw_init(AdamW *o, const Model *m, const AdamWConfig *cfg) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = m->n_params;
    o->m = tt_alloc(o->n * sizeof(real));
    o->v = tt_alloc(o->n * sizeof(real));
    o->decay = tt_alloc(o->n);
    if (!o->m || !o->v || !o->decay) {
        adamw_free(o);
        return -1;
    }
    for (int i = 0; i < m->n_tensors; i++)
        memset(o->decay + m->tensors[i].offset, m->tensors[i].decay ? 1 : 0, m->tensors[i].numel);
    return 0;
}

void adamw_free(AdamW *o) {
    tt_free(o->m);
    tt_free(o->v);
    tt_free(o->decay);
    o->m = o->v = NULL;
    o->decay = NULL;
}

typedef struct {
    AdamW *o;
    real *p;
    const real *g;
    double step_size, inv_sqrt_bc2;
    real decay_mul;
} AdamJob;

enum { ADAM_BLOCK = 16384 };

static void adamw_range(int begin, int end, int part, void *arg) {
    const AdamJob *j = arg;
    AdamW *o = j->o;
    size_t lo = (size_t)begin * ADAM_BLOCK, hi = (size_t)end * ADAM_BLOCK;
    if (hi > o->n) hi = o->n;
    const real b1 = (real)o->cfg.beta1, b2 = (real)o->cfg.beta2, eps = (real)o->cfg.eps;
    const real one_b1 = (real)(1.0 - o->cfg.beta1), one_b2 = (real)(1.0 - o->cfg.beta2);
    const real step_size = (real)j->step_size, inv_sqrt_bc2 = (real)j->inv_sqrt_bc2;
    real *m = o->m, *v = o->v, *p = j->p;
    const real *g = j->g;
    const uint8_t *decay = o->decay;
    for (size_t i = lo; i < hi; i++) {
        real gi = g[i];
        m[i] = b1 * m[i] + one_b1 * gi;
        v[i] = b2 * v[i] + one_b2 * gi * gi;
        if (decay[i]) p[i] *= j->decay_mul;
        real denom = (real)sqrt(v[i]) * inv_sqrt_bc2 + eps;
        p[i] -= step_size * m[i] / denom;
    }
}

void adamw_step(AdamW *o, real *p, const real *g, double lr) {
    o->step++;
    const double bc1 = 1.0 - pow(o->cfg.beta1, (double)o->step), bc2 = 1.0 - pow(o->cfg.beta2, (double)o->step);
    AdamJob j = {o, p, g, lr / bc1, 1.0 / sqrt(bc2), (real)(1.0 - lr * o->cfg.weight_decay)};
    tt_parallel_range((int)((o->n + ADAM_BLOCK - 1) / ADAM_BLOCK), adamw_range, &j);
}

double grad_global_norm(const real *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

double grad_clip(real *g, size_t n, double max_norm) {
    double norm = grad_global_norm(g, n);
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) {
        real s = (real)(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}
