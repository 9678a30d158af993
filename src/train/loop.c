/* loop.c: the open training loop. A run is a model and three parts passed in (a batch
 * source, a loss, an evaluator) plus extra resumable state; the loop owns gradient
 * accumulation to a tokens-per-update target, clipping, AdamW with a schedule, metrics.jsonl,
 * progress, dev evaluation with best-model keeping and early stopping, checkpoints every N
 * steps and on SIGINT/SIGTERM, and resume that continues bit for bit. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "tutor/fileio.h"
#include "tutor/train.h"

struct Trainer {
    TrainOptions o;
    TrainParts parts;
    Model *m;
    AdamW opt;
    TrainState st;
    Schedule sched;
    FILE *metrics;
    char *opts_json;
    int tty;
    TtProgress prog;
    /* this process's clock and the window of the current log line */
    double t_start, elapsed0, window_t0;
    long window_tokens, window_loss_tokens;
    double window_loss, window_weight, window_allreduce_s;
    long step0; /* the step this process started from */
};

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

/* metrics.jsonl after a resume: keeps only the lines up to the checkpoint's step. */
static int metrics_truncate(const char *path, long step) {
    if (!file_exists(path)) return 0;
    size_t n;
    char *text = read_file_text(path, &n);
    if (!text) return -1;
    char *out = malloc(n + 1);
    if (!out) {
        free(text);
        return tt_err("out of memory");
    }
    size_t w = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        cJSON *o = nl ? cJSON_ParseWithLength(line, len) : NULL;
        const cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        if (cJSON_IsNumber(s) && s->valuedouble <= (double)step) {
            memcpy(out + w, line, len);
            w += len;
        }
        cJSON_Delete(o);
        line += len;
    }
    int rc = atomic_write_file(path, out, w);
    free(out);
    free(text);
    return rc;
}

static void metrics_write(FILE *f, cJSON *o) {
    char *s = f ? cJSON_PrintUnformatted(o) : NULL; /* ranks other than 0 write nothing */
    if (s) {
        fputs(s, f);
        fputc('\n', f);
        fflush(f);
        free(s);
    }
    cJSON_Delete(o);
}

static char *options_json(const TrainOptions *o) {
    cJSON *j = cJSON_CreateObject();
    if (o->train_path) cJSON_AddStringToObject(j, "train", o->train_path);
    if (o->dev_path) cJSON_AddStringToObject(j, "dev", o->dev_path);
    cJSON_AddNumberToObject(j, "max_source_tokens", o->max_source_tokens);
    cJSON_AddNumberToObject(j, "max_target_tokens", o->max_target_tokens);
    cJSON_AddNumberToObject(j, "batch_tokens", o->batch_tokens);
    cJSON_AddNumberToObject(j, "max_batch", o->max_batch);
    cJSON_AddNumberToObject(j, "update_tokens", o->update_tokens);
    cJSON_AddNumberToObject(j, "lr", o->schedule.peak_lr);
    cJSON_AddNumberToObject(j, "warmup_steps", (double)o->schedule.warmup_steps);
    cJSON_AddNumberToObject(j, "max_steps", (double)o->max_steps);
    cJSON_AddNumberToObject(j, "weight_decay", o->adam.weight_decay);
    cJSON_AddNumberToObject(j, "clip_norm", o->clip_norm);
    cJSON_AddNumberToObject(j, "label_smoothing", o->label_smoothing);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static int has_eval(const Trainer *t) { return t->parts.eval.evaluate != NULL; }

static int better(const Trainer *t, double a, double b) {
    return t->parts.eval.higher_is_better ? a > b : a < b;
}

int trainer_save_model(Trainer *t) {
    if (dist_rank() != 0) return 0; /* rank 0 writes models, checkpoints and logs */
    if (model_save(t->m, t->o.out_dir)) return -1;
    return t->parts.tok ? tokenizer_save_dir(t->parts.tok, t->o.out_dir, t->m->cfg.max_positions) : 0;
}

/* The components' states, as they go into trainer_state.json. */
static cJSON *components_json(Trainer *t) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    const TrainParts *p = &t->parts;
    if (p->source.save) {
        cJSON *s = p->source.save(p->source.ctx);
        if (!s) goto oom;
        cJSON_AddItemToObject(c, "source", s);
    }
    if (p->loss.save) {
        cJSON *s = p->loss.save(p->loss.ctx);
        if (!s) goto oom;
        cJSON_AddItemToObject(c, "loss", s);
    }
    if (p->n_extras) {
        cJSON *e = cJSON_AddObjectToObject(c, "extra");
        for (int i = 0; i < p->n_extras; i++) {
            cJSON *s = p->extras[i].save(p->extras[i].ctx);
            if (!s) goto oom;
            cJSON_AddItemToObject(e, p->extras[i].name, s);
        }
    }
    if (has_eval(t)) cJSON_AddStringToObject(c, "best_metric", p->eval.metric);
    return c;
oom:
    cJSON_Delete(c);
    tt_err("out of memory");
    return NULL;
}

static int components_restore(Trainer *t, const cJSON *state, const char *where) {
    const TrainParts *p = &t->parts;
    if (p->source.restore) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(state, "source");
        if (!s) s = cJSON_GetObjectItemCaseSensitive(state, "batcher"); /* checkpoints before the open loop */
        if (!s) return tt_err("%s: no batch source state", where);
        if (p->source.restore(p->source.ctx, s)) return tt_err_wrap("%s", where);
    }
    if (p->loss.restore) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(state, "loss");
        if (!s) return tt_err("%s: no loss state", where);
        if (p->loss.restore(p->loss.ctx, s)) return tt_err_wrap("%s", where);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(state, "extra");
    for (int i = 0; i < p->n_extras; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, p->extras[i].name);
        if (!s) return tt_err("%s: no state for \"%s\"", where, p->extras[i].name);
        if (p->extras[i].restore(p->extras[i].ctx, s)) return tt_err_wrap("%s", where);
    }
    if (has_eval(t)) {
        const cJSON *bm = cJSON_GetObjectItemCaseSensitive(state, "best_metric");
        const char *saved = cJSON_IsString(bm) ? bm->valuestring : "dev_loss";
        if (strcmp(saved, p->eval.metric))
            return tt_err("%s: the run selected its best model by %s, this one by %s; resume with the same "
                          "selection", where, saved, p->eval.metric);
        if (!isfinite(t->st.best_dev)) t->st.best_dev = p->eval.higher_is_better ? -INFINITY : INFINITY;
    }
    return 0;
}

Trainer *trainer_open(Model *m, const TrainOptions *o, const TrainParts *parts) {
    if (!parts->source.next || !parts->loss.step) {
        tt_err("trainer: a batch source and a loss are required");
        return NULL;
    }
    Trainer *t = calloc(1, sizeof *t);
    if (!t) {
        tt_err("out of memory");
        return NULL;
    }
    t->o = *o;
    t->parts = *parts;
    if (!t->parts.what) t->parts.what = "training";
    t->m = m;
    tt_set_threads(o->threads);
    if (make_dirs(o->out_dir)) goto fail;
    if (adamw_init(&t->opt, m, &o->adam)) goto fail;
    if (model_alloc_grads(m)) goto fail;
    t->st.best_dev = parts->eval.higher_is_better ? -INFINITY : INFINITY;
    t->opts_json = options_json(o);
    char metrics_path[4200];
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", o->out_dir);
    if (o->resume && checkpoint_exists(o->out_dir)) {
        cJSON *state = NULL;
        if (checkpoint_load(o->out_dir, m, &t->opt, &t->st, &state)) goto fail;
        char where[4200];
        snprintf(where, sizeof where, "%s (checkpoint)", o->out_dir);
        int rc = components_restore(t, state, where);
        cJSON_Delete(state);
        if (rc || (dist_rank() == 0 && metrics_truncate(metrics_path, t->st.step))) goto fail;
        tt_info("resumed from step %ld (best %s %.4f at step %ld)", t->st.step,
                has_eval(t) ? parts->eval.metric : "-", t->st.best_dev, t->st.best_step);
    } else {
        if (o->resume) tt_info("%s: no checkpoint yet; starting from scratch", o->out_dir);
        if (dist_rank() == 0 && file_exists(metrics_path) && metrics_truncate(metrics_path, -1)) goto fail;
    }
    t->metrics = dist_rank() == 0 ? fopen(metrics_path, "a") : NULL;
    if (!t->metrics && dist_rank() == 0) {
        tt_err("%s: cannot open for writing", metrics_path);
        goto fail;
    }
    /* the arena sized once for the largest batch the source can yield */
    int B = 1, S = 0, T = 1;
    if (parts->source.max_shape) parts->source.max_shape(parts->source.ctx, &B, &S, &T);
    if (model_reserve(m, B, S, T, 1)) goto fail;
    t->sched = o->schedule;
    t->sched.total_steps = o->max_steps;
    t->tty = o->progress && isatty(2);
    tt_progress_init(&t->prog, "step", "steps", t->tty);
    t->t_start = tt_now_s();
    t->elapsed0 = t->st.elapsed_s;
    t->step0 = t->st.step;
    t->window_t0 = t->t_start;
    return t;
fail:
    trainer_close(t);
    return NULL;
}

void trainer_close(Trainer *t) {
    if (!t) return;
    adamw_free(&t->opt);
    if (t->metrics) fclose(t->metrics);
    free(t->opts_json);
    free(t);
}

long trainer_step_count(const Trainer *t) { return t->st.step; }

double trainer_best(const Trainer *t, long *best_step) {
    if (best_step) *best_step = t->st.best_step;
    return t->st.best_dev;
}

const char *trainer_done(Trainer *t) {
    if (t->st.step >= t->o.max_steps) return "max_steps reached";
    uint64_t epoch = 0;
    double frac = 0;
    if (t->parts.source.position) t->parts.source.position(t->parts.source.ctx, &epoch, &frac);
    if ((long)epoch >= t->o.max_epochs) return "max_epochs reached";
    if (t->o.max_minutes > 0 && t->elapsed0 + (tt_now_s() - t->t_start) >= 60 * t->o.max_minutes)
        return "max_minutes reached";
    return NULL;
}

static void scale_grads(Model *m, double s) {
    real f = (real)s;
    for (size_t i = 0; i < m->n_params; i++) m->grads[i] *= f;
}

int trainer_step(Trainer *t) {
    const TrainOptions *o = &t->o;
    Model *m = t->m;
    const BatchSource *src = &t->parts.source;
    const TrainLoss *loss = &t->parts.loss;
    model_zero_grads(m);
    long update_tokens = 0;
    double update_loss = 0, update_weight = 0;
    /* data parallel (N ranks): every rank walks the same batches; rank r computes batches
     * r, r + N, ...; an update takes at least N batches; then the gradient sums and their
     * weights are summed over the ranks: the update one process would make on them all */
    int N = dist_size(), R = dist_rank();
    long batches = 0;
    do {
        const Batch *b;
        long n_target;
        if (src->next(src->ctx, &b, &n_target) < 0) return -1;
        if (N == 1 || batches % N == R) {
            double sum = 0, weight = 0;
            if (loss->step(loss->ctx, m, b, &sum, &weight)) return -1;
            update_loss += sum;
            update_weight += weight;
        }
        update_tokens += n_target;
        batches++;
    } while (update_tokens < o->update_tokens || batches < N);
    if (N > 1) {
        double t_ar = tt_now_s();
        double lw[2] = {update_loss, update_weight};
#if REAL_IS_DOUBLE
        int bad = dist_sum_f64(m->grads, m->n_params);
#else
        int bad = dist_sum_f32(m->grads, m->n_params);
#endif
        if (bad || dist_sum_f64(lw, 2)) return -1;
        update_loss = lw[0], update_weight = lw[1];
        t->window_allreduce_s += tt_now_s() - t_ar;
    }
    double w = update_weight > 0 ? update_weight : 1;
    scale_grads(m, 1.0 / w);
    double mean_loss = update_loss / w;
    double gnorm = grad_clip(m->grads, m->n_params, o->clip_norm);
    if (!isfinite(mean_loss) || !isfinite(gnorm))
        return tt_err("step %ld: the %s is %s; stopping (the last good checkpoint is kept in %s)", t->st.step + 1,
                      isfinite(mean_loss) ? "gradient norm" : "loss",
                      isnan(isfinite(mean_loss) ? gnorm : mean_loss) ? "NaN" : "infinite", o->out_dir);
    double lr = schedule_lr(&t->sched, t->st.step);
    adamw_step(&t->opt, m->params, m->grads, lr);
    t->st.step++;
    t->st.tokens_seen += update_tokens;
    t->window_tokens += update_tokens;
    t->window_loss += update_loss;
    t->window_weight += update_weight;
    double now = tt_now_s();
    t->st.elapsed_s = t->elapsed0 + (now - t->t_start);
    int do_log = o->log_every > 0 && t->st.step % o->log_every == 0;
    int last = t->st.step >= o->max_steps;
    double tok_s = t->window_tokens / (now - t->window_t0 > 1e-9 ? now - t->window_t0 : 1e-9);
    double window_mean = t->window_loss / (t->window_weight > 0 ? t->window_weight : 1);
    if (do_log || last) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", (double)t->st.step);
        uint64_t epoch = 0;
        double frac = 0;
        if (src->position) src->position(src->ctx, &epoch, &frac);
        cJSON_AddNumberToObject(j, "epoch", (double)epoch + frac);
        cJSON_AddNumberToObject(j, "loss", window_mean);
        cJSON_AddNumberToObject(j, "lr", lr);
        cJSON_AddNumberToObject(j, "grad_norm", gnorm);
        cJSON_AddNumberToObject(j, "tokens_per_s", tok_s);
        cJSON_AddNumberToObject(j, "elapsed_s", t->st.elapsed_s);
        if (dist_size() > 1) {
            /* time in the gradient allreduce over this window, and the ranks */
            cJSON_AddNumberToObject(j, "allreduce_s", t->window_allreduce_s);
            cJSON_AddNumberToObject(j, "ranks", dist_size());
        }
        if (loss->log) loss->log(loss->ctx, j);
        metrics_write(t->metrics, j);
        if (!t->tty)
            tt_info("step %ld  loss %.4f  lr %.2e  |g| %.2f  %.0f tok/s", t->st.step, window_mean, lr, gnorm, tok_s);
    }
    if (t->tty) {
        char extra[64];
        snprintf(extra, sizeof extra, "loss %.4f  %.0f tok/s", mean_loss, tok_s);
        tt_progress(&t->prog, t->st.step, o->max_steps, extra);
    }
    if (do_log || last) {
        t->window_t0 = now;
        t->window_tokens = 0;
        t->window_loss = 0;
        t->window_weight = 0;
        t->window_allreduce_s = 0;
    }
    return 0;
}

int trainer_evaluate(Trainer *t) {
    if (!has_eval(t)) return 0;
    const Evaluator *ev = &t->parts.eval;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)t->st.step);
    double value = NAN;
    /* rank 0 evaluates; every rank takes its value, so that best model, patience and stop
     * agree everywhere */
    if (dist_rank() == 0 && ev->evaluate(ev->ctx, t->m, &value, j)) {
        cJSON_Delete(j);
        return -1;
    }
    if (dist_size() > 1 && dist_bcast_f64(&value, 1)) {
        cJSON_Delete(j);
        return -1;
    }
    if (!isfinite(value)) {
        cJSON_Delete(j);
        return tt_err("step %ld: %s is not finite", t->st.step, ev->metric);
    }
    if (better(t, value, t->st.best_dev)) {
        t->st.best_dev = value;
        t->st.best_step = t->st.step;
        t->st.bad_evals = 0;
        if (trainer_save_model(t)) {
            cJSON_Delete(j);
            return -1;
        }
    } else {
        t->st.bad_evals++;
    }
    if (!cJSON_GetObjectItemCaseSensitive(j, ev->metric)) cJSON_AddNumberToObject(j, ev->metric, value);
    char best_key[80];
    snprintf(best_key, sizeof best_key, "best_%s", ev->metric);
    cJSON_AddNumberToObject(j, best_key, t->st.best_dev);
    cJSON_AddNumberToObject(j, "elapsed_s", t->st.elapsed_s);
    metrics_write(t->metrics, j);
    if (t->tty) fputc('\n', stderr);
    tt_info("step %ld  %s %.4f  (best %.4f at step %ld)", t->st.step, ev->metric, value, t->st.best_dev,
            t->st.best_step);
    return t->o.patience > 0 && t->st.bad_evals >= t->o.patience;
}

int trainer_save(Trainer *t) {
    if (dist_rank() != 0) return 0;
    cJSON *c = components_json(t);
    if (!c) return -1;
    int rc = checkpoint_save(t->o.out_dir, t->m, t->parts.tok, &t->opt, &t->st, c, t->opts_json);
    cJSON_Delete(c);
    return rc;
}

int trainer_run(Trainer *t) {
    const TrainOptions *o = &t->o;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    stop_signal = 0;
    int result = 0, stop = 0;
    const char *why = "max_steps reached";
    while (!stop) {
        const char *done = trainer_done(t);
        if (dist_size() > 1) {
            /* rank 0's clock decides a time limit */
            double f = done ? 1 : 0;
            if (dist_bcast_f64(&f, 1)) {
                result = -1;
                break;
            }
            done = f > 0 ? (done ? done : "stopped with rank 0") : NULL;
        }
        if (done) {
            why = done;
            break;
        }
        if (trainer_step(t)) {
            result = -1;
            break;
        }
        int do_eval = o->eval_every > 0 && t->st.step % o->eval_every == 0;
        int last = t->st.step >= o->max_steps;
        if (do_eval || last) {
            int patience_out = trainer_evaluate(t);
            if (patience_out < 0) {
                result = -1;
                break;
            }
            if (patience_out) {
                why = "early stopping: the dev score stopped improving";
                stop = 1;
            }
        }
        if (dist_size() > 1) {
            /* a signal on any rank stops every rank, at the same step */
            double f = stop_signal ? 1 : 0;
            if (dist_sum_f64(&f, 1)) {
                result = -1;
                break;
            }
            if (f > 0 && !stop_signal) stop_signal = SIGTERM;
        }
        int do_save = (o->save_every > 0 && t->st.step % o->save_every == 0) || last || stop || stop_signal;
        if (do_save && trainer_save(t)) {
            result = -1;
            break;
        }
        if (stop_signal) {
            why = stop_signal == SIGINT ? "interrupted (SIGINT); checkpoint saved" : "terminated (SIGTERM); checkpoint saved";
            result = 1;
            break;
        }
    }
    if (t->tty) fputc('\n', stderr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (result >= 0) {
        /* without an evaluator the last model is the best one */
        if (!has_eval(t) && trainer_save_model(t)) result = -1;
        if (result >= 0) {
            if (has_eval(t))
                tt_info("%s at step %ld after %.0f s; best %s %.4f (step %ld); model in %s", why, t->st.step,
                        t->st.elapsed_s, t->parts.eval.metric, t->st.best_dev, t->st.best_step, o->out_dir);
            else
                tt_info("%s at step %ld after %.0f s; model in %s", why, t->st.step, t->st.elapsed_s, o->out_dir);
        }
    }
    return result;
}
