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

void adamw_step(AdamW *o, real *p, const real *g, double lr) {
    o->step++;
    const double b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    const double bc1 = 1.0 - pow(b1, (double)o->step), bc2 = 1.0 - pow(b2, (double)o->step);
    const double step_size = lr / bc1, sqrt_bc2 = sqrt(bc2);
    const real decay_mul = (real)(1.0 - lr * o->cfg.weight_decay);
    real *m = o->m, *v = o->v;
    for (size_t i = 0; i < o->n; i++) {
        real gi = g[i];
        m[i] = (real)b1 * m[i] + (real)(1.0 - b1) * gi;
        v[i] = (real)b2 * v[i] + (real)(1.0 - b2) * gi * gi;
        if (o->decay[i]) p[i] *= decay_mul;
        real denom = (real)(sqrt((double)v[i]) / sqrt_bc2 + eps);
        p[i] -= (real)step_size * m[i] / denom;
    }
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
