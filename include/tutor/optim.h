/* optim.h: AdamW with decoupled weight decay and bias correction (PyTorch's torch.optim.AdamW
 * semantics), learning-rate schedules, and global-norm gradient clipping, each one loop over
 * the model's single parameter and gradient buffers. */
#ifndef TUTOR_OPTIM_H
#define TUTOR_OPTIM_H

#include "tutor/model.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} AdamWConfig;

typedef struct {
    AdamWConfig cfg;
    size_t n;
    real *m, *v;      /* first and second moments, one buffer each */
    uint8_t *decay;   /* per parameter: weight decay applies (from the model's name table) */
    long step;
} AdamW;

void adamw_config_default(AdamWConfig *c); /* lr 1e-3, betas 0.9/0.999, eps 1e-8, wd 0.01 */
/* Decay goes to matrices and embeddings only (ParamInfo.decay), as is usual for transformers. */
int adamw_init(AdamW *o, const Model *m, const AdamWConfig *cfg);
void adamw_free(AdamW *o);
/* One update of params from grads with learning rate lr. */
void adamw_step(AdamW *o, real *params, const real *grads, double lr);

/* Global L2 norm of the gradient (double accumulation). */
double grad_global_norm(const real *g, size_t n);
/* Scales g so that its norm is at most max_norm (max_norm <= 0: no clipping). Returns the
 * norm before clipping. */
double grad_clip(real *g, size_t n, double max_norm);

typedef enum { SCHEDULE_CONSTANT = 0, SCHEDULE_LINEAR = 1, SCHEDULE_COSINE = 2 } ScheduleKind;
typedef struct {
    ScheduleKind kind;
    double peak_lr, min_lr;
    long warmup_steps, total_steps;
} Schedule;
/* Linear warmup from 0 to peak over warmup_steps, then constant, linear or cosine decay to
 * min_lr at total_steps. step counts from 0. */
double schedule_lr(const Schedule *s, long step);
int schedule_parse_kind(const char *name, ScheduleKind *out);

#endif
