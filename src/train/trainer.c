/* trainer.c: the training loop: batches under a token budget, gradient accumulation to a
 * tokens-per-update target, clipping, AdamW with a schedule, dev evaluation, best-model
 * keeping, early stopping, metrics.jsonl, progress, checkpoints every N steps and on
 * SIGINT/SIGTERM, and resume that continues bit for bit. */
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

void train_options_default(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    jsonl_options_default(&o->jsonl);
    o->jsonl.require_target = 1;
    o->max_source_tokens = 256;
    o->max_target_tokens = 64;
    o->batch_tokens = 4096;
    o->max_batch = 128;
    o->update_tokens = 0;
    adamw_config_default(&o->adam);
    o->adam.lr = 5e-4;
    o->schedule.kind = SCHEDULE_LINEAR;
    o->schedule.peak_lr = 5e-4;
    o->schedule.min_lr = 0;
    o->schedule.warmup_steps = 200;
    o->clip_norm = 1.0;
    o->label_smoothing = 0.1;
    o->max_steps = 10000;
    o->max_epochs = 1000;
    o->eval_every = 500;
    o->save_every = 500;
    o->log_every = 50;
    o->patience = 5;
    o->seed = 1;
    o->threads = 1;
    o->progress = 1;
}

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

double evaluate_loss(Model *m, const PairSet *ps, int batch_tokens, int max_batch, long *n_tokens) {
    const ModelConfig *c = &m->cfg;
    double total = 0;
    long count = 0;
    /* batches in file order, cut by the token budget (padding cost of the longest) */
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < ps->n; i++) {
        int s, t;
        pair_batch_lengths(c, &ps->items[i], &s, &t);
        if (s > max_s) max_s = s;
        if (t > max_t) max_t = t;
    }
    int cap_b = max_batch;
    BatchBuf bb;
    if (batchbuf_init(&bb, cap_b * max_s, cap_b * max_t)) return NAN;
    size_t *idx = malloc(sizeof(size_t) * (size_t)cap_b);
    size_t i = 0;
    while (i < ps->n) {
        int count_b = 0, S = 0, T = 0;
        while (i + count_b < ps->n && count_b < cap_b) {
            int s, t;
            pair_batch_lengths(c, &ps->items[i + count_b], &s, &t);
            int S2 = s > S ? s : S, T2 = t > T ? t : T;
            if (count_b > 0 && (long)(count_b + 1) * (S2 + T2) > batch_tokens) break;
            S = S2, T = T2;
            idx[count_b] = i + count_b;
            count_b++;
        }
        if (batch_assemble(&bb, c, ps, idx, count_b) || model_forward(m, &bb.batch, 0)) {
            total = NAN;
            break;
        }
        long n;
        double loss = model_xent(m, &bb.batch, 0, 0, 1, &n);
        total += loss * (double)n;
        count += n;
        i += (size_t)count_b;
    }
    free(idx);
    batchbuf_free(&bb);
    if (n_tokens) *n_tokens = count;
    return count ? total / (double)count : NAN;
}

static char *options_json(const TrainOptions *o) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "train", o->train_path);
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

/* metrics.jsonl after a resume: keeps only the lines up to the checkpoint's step. */
static int metrics_truncate(const char *path, long step) {
    if (!file_exists(path)) return 0;
    size_t n;
    char *text = read_file_text(path, &n);
    if (!text) return -1;
    char *out = malloc(n + 1);
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
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, f);
        fputc('\n', f);
        fflush(f);
        free(s);
    }
    cJSON_Delete(o);
}

static void format_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)s;
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

typedef struct {
    const TrainOptions *o;
    Model *m;
    const Tokenizer *tok;
    AdamW opt;
    Batcher *batcher;
    PairSet train, dev;
    BatchBuf bb;
    TrainState st;
    FILE *metrics;
    char *opts_json;
    int tty;
} Trainer;

static int save_best(Trainer *t) {
    if (model_save(t->m, t->o->out_dir)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", t->o->out_dir);
    return t->tok ? tokenizer_save(t->tok, path) : 0;
}

/* Dev evaluation; keeps the best model; returns 1 when patience is exhausted. */
static int evaluate_and_keep(Trainer *t, double *dev_loss) {
    const TrainOptions *o = t->o;
    *dev_loss = NAN;
    if (!t->dev.n) return 0;
    long n;
    double loss = evaluate_loss(t->m, &t->dev, o->batch_tokens, o->max_batch, &n);
    *dev_loss = loss;
    if (!isfinite(loss)) return -1;
    if (loss < t->st.best_dev) {
        t->st.best_dev = loss;
        t->st.best_step = t->st.step;
        t->st.bad_evals = 0;
        if (save_best(t)) return -1;
    } else {
        t->st.bad_evals++;
    }
    return o->patience > 0 && t->st.bad_evals >= o->patience;
}

static int trainer_setup(Trainer *t) {
    const TrainOptions *o = t->o;
    const ModelConfig *c = &t->m->cfg;
    Dataset ds = {0};
    if (dataset_load_jsonl(&ds, o->train_path, &o->jsonl, o->max_train_examples)) return -1;
    if (ds.n == 0) {
        dataset_free(&ds);
        return tt_err("%s: no examples", o->train_path);
    }
    int rc = pairset_build(&t->train, &ds, t->tok, o->max_source_tokens, o->max_target_tokens, 0);
    dataset_free(&ds);
    if (rc) return -1;
    if (o->dev_path) {
        if (dataset_load_jsonl(&ds, o->dev_path, &o->jsonl, o->max_dev_examples)) return -1;
        rc = pairset_build(&t->dev, &ds, t->tok, o->max_source_tokens, o->max_target_tokens, 0);
        dataset_free(&ds);
        if (rc) return -1;
    }
    /* positions: a sequence must fit the model */
    int need = model_is_encdec(c) ? (o->max_source_tokens > o->max_target_tokens ? o->max_source_tokens
                                                                               : o->max_target_tokens)
                                  : o->max_source_tokens + o->max_target_tokens;
    if (need > c->max_positions)
        return tt_err("token budgets need %d positions but the model has %d (max_position_embeddings)", need,
                      c->max_positions);
    size_t n = t->train.n;
    int *sl = malloc(sizeof(int) * n), *tl = malloc(sizeof(int) * n);
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < n; i++) {
        pair_batch_lengths(c, &t->train.items[i], &sl[i], &tl[i]);
        if (sl[i] > max_s) max_s = sl[i];
        if (tl[i] > max_t) max_t = tl[i];
    }
    t->batcher = batcher_new(sl, tl, n, o->batch_tokens, o->max_batch, o->seed);
    free(sl);
    free(tl);
    if (!t->batcher) return -1;
    /* buffers for the largest possible batch: count <= budget / longest member */
    int cap_b = o->max_batch > 0 ? o->max_batch : o->batch_tokens;
    if (batchbuf_init(&t->bb, o->batch_tokens + max_s, o->batch_tokens + max_t)) return -1;
    (void)cap_b;
    if (adamw_init(&t->opt, t->m, &o->adam)) return -1;
    if (model_alloc_grads(t->m)) return -1;
    t->st.best_dev = INFINITY;
    return 0;
}

static void trainer_teardown(Trainer *t) {
    pairset_free(&t->train);
    pairset_free(&t->dev);
    batchbuf_free(&t->bb);
    batcher_free(t->batcher);
    adamw_free(&t->opt);
    if (t->metrics) fclose(t->metrics);
    free(t->opts_json);
}

static void scale_grads(Model *m, double s) {
    real f = (real)s;
    for (size_t i = 0; i < m->n_params; i++) m->grads[i] *= f;
}

int train_run(Model *m, const Tokenizer *tok, const TrainOptions *o) {
    Trainer t;
    memset(&t, 0, sizeof t);
    t.o = o;
    t.m = m;
    t.tok = tok;
    tt_set_threads(o->threads);
    if (make_dirs(o->out_dir)) return -1;
    int rc = trainer_setup(&t);
    if (rc) {
        trainer_teardown(&t);
        return -1;
    }
    t.opts_json = options_json(o);
    char metrics_path[4200];
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", o->out_dir);
    if (o->resume && checkpoint_exists(o->out_dir)) {
        if (checkpoint_load(o->out_dir, m, &t.opt, &t.st, t.batcher) || metrics_truncate(metrics_path, t.st.step)) {
            trainer_teardown(&t);
            return -1;
        }
        tt_info("resumed from step %ld (best dev loss %.4f at step %ld)", t.st.step, t.st.best_dev, t.st.best_step);
    } else if (o->resume) {
        tt_info("%s: no checkpoint yet; starting from scratch", o->out_dir);
        if (file_exists(metrics_path)) metrics_truncate(metrics_path, -1);
    } else if (file_exists(metrics_path)) {
        metrics_truncate(metrics_path, -1);
    }
    t.metrics = fopen(metrics_path, "a");
    if (!t.metrics) {
        trainer_teardown(&t);
        return tt_err("%s: cannot open for writing", metrics_path);
    }
    tt_info("training %zu pairs (%zu truncated), dev %zu pairs; %zu parameters; %d threads", t.train.n,
            t.train.truncated, t.dev.n, m->n_params, o->threads);

    /* the arena sized once for the largest batch the budget allows */
    {
        int B = o->max_batch > 0 ? o->max_batch : 1;
        int S = model_is_encdec(&m->cfg) ? o->max_source_tokens : 0;
        int T = model_is_encdec(&m->cfg) ? o->max_target_tokens : o->max_source_tokens + o->max_target_tokens;
        long cap = (long)o->batch_tokens;
        if ((long)B * (S + T) > cap) B = (int)(cap / (S + T > 0 ? S + T : 1));
        if (B < 1) B = 1;
        if (model_reserve(m, B, S, T, 1)) {
            trainer_teardown(&t);
            return -1;
        }
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    stop_signal = 0;
    t.tty = o->progress && isatty(2);
    Schedule sched = o->schedule;
    sched.total_steps = o->max_steps;
    double t_start = tt_now_s(), elapsed0 = t.st.elapsed_s, window_t0 = t_start;
    long window_tokens = 0;
    double window_loss = 0;
    long window_loss_tokens = 0;
    int result = 0, stop = 0;
    const char *why = "max_steps reached";
    while (!stop && t.st.step < o->max_steps) {
        uint64_t epoch;
        size_t pos;
        batcher_position(t.batcher, &epoch, &pos);
        if ((long)epoch >= o->max_epochs) {
            why = "max_epochs reached";
            break;
        }
        model_zero_grads(m);
        long update_tokens = 0;
        double update_loss = 0;
        do {
            const size_t *idx;
            int count;
            if (batcher_next(t.batcher, &idx, &count) < 0 || batch_assemble(&t.bb, &m->cfg, &t.train, idx, count) ||
                model_forward(m, &t.bb.batch, 1)) {
                result = -1;
                break;
            }
            long n;
            double loss = model_xent(m, &t.bb.batch, o->label_smoothing, 1, (double)t.bb.n_target_tokens, &n);
            if (model_backward(m, &t.bb.batch)) {
                result = -1;
                break;
            }
            update_loss += loss * (double)n;
            update_tokens += n;
        } while (update_tokens < o->update_tokens);
        if (result) break;
        scale_grads(m, 1.0 / (double)(update_tokens > 0 ? update_tokens : 1));
        double mean_loss = update_loss / (double)(update_tokens > 0 ? update_tokens : 1);
        double gnorm = grad_clip(m->grads, m->n_params, o->clip_norm);
        if (!isfinite(mean_loss) || !isfinite(gnorm)) {
            result = tt_err("step %ld: the %s is %s; stopping (the last good checkpoint is kept in %s)",
                            t.st.step + 1, isfinite(mean_loss) ? "gradient norm" : "loss",
                            isnan(isfinite(mean_loss) ? gnorm : mean_loss) ? "NaN" : "infinite", o->out_dir);
            break;
        }
        double lr = schedule_lr(&sched, t.st.step);
        adamw_step(&t.opt, m->params, m->grads, lr);
        t.st.step++;
        t.st.tokens_seen += update_tokens;
        window_tokens += update_tokens;
        window_loss += update_loss;
        window_loss_tokens += update_tokens;
        double now = tt_now_s();
        t.st.elapsed_s = elapsed0 + (now - t_start);
        int do_log = o->log_every > 0 && t.st.step % o->log_every == 0;
        int do_eval = o->eval_every > 0 && t.st.step % o->eval_every == 0;
        int last = t.st.step >= o->max_steps;
        double tok_s = window_tokens / (now - window_t0 > 1e-9 ? now - window_t0 : 1e-9);
        if (do_log || last) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "step", (double)t.st.step);
            batcher_position(t.batcher, &epoch, &pos);
            cJSON_AddNumberToObject(j, "epoch", (double)epoch + (double)pos / (double)batcher_epoch_batches(t.batcher));
            cJSON_AddNumberToObject(j, "loss", window_loss / (double)window_loss_tokens);
            cJSON_AddNumberToObject(j, "lr", lr);
            cJSON_AddNumberToObject(j, "grad_norm", gnorm);
            cJSON_AddNumberToObject(j, "tokens_per_s", tok_s);
            cJSON_AddNumberToObject(j, "elapsed_s", t.st.elapsed_s);
            metrics_write(t.metrics, j);
            if (!t.tty)
                tt_info("step %ld  loss %.4f  lr %.2e  |g| %.2f  %.0f tok/s", t.st.step,
                        window_loss / (double)window_loss_tokens, lr, gnorm, tok_s);
        }
        if (t.tty) {
            char eta[32];
            double per_step = t.st.elapsed_s / (double)t.st.step;
            format_eta(eta, sizeof eta, per_step * (double)(o->max_steps - t.st.step));
            int width = 30, fill = (int)(width * (double)t.st.step / (double)o->max_steps);
            char bar[64];
            for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
            bar[width] = 0;
            fprintf(stderr, "\r  step %ld/%ld [%s] loss %.4f  %.0f tok/s  ETA %s   ", t.st.step, o->max_steps, bar,
                    mean_loss, tok_s, eta);
            fflush(stderr);
        }
        if (do_log || last) {
            window_t0 = now;
            window_tokens = 0;
            window_loss = 0;
            window_loss_tokens = 0;
        }
        if (do_eval || last) {
            double dev_loss;
            int patience_out = evaluate_and_keep(&t, &dev_loss);
            if (patience_out < 0) {
                result = -1;
                break;
            }
            if (t.dev.n) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddNumberToObject(j, "step", (double)t.st.step);
                cJSON_AddNumberToObject(j, "dev_loss", dev_loss);
                cJSON_AddNumberToObject(j, "best_dev_loss", t.st.best_dev);
                cJSON_AddNumberToObject(j, "elapsed_s", t.st.elapsed_s);
                metrics_write(t.metrics, j);
                if (t.tty) fputc('\n', stderr);
                tt_info("step %ld  dev loss %.4f  (best %.4f at step %ld)", t.st.step, dev_loss, t.st.best_dev,
                        t.st.best_step);
            }
            if (patience_out) {
                why = "early stopping: dev loss stopped improving";
                stop = 1;
            }
        }
        int do_save = (o->save_every > 0 && t.st.step % o->save_every == 0) || last || stop || stop_signal;
        if (do_save && checkpoint_save(o->out_dir, m, tok, &t.opt, &t.st, t.batcher, t.opts_json)) {
            result = -1;
            break;
        }
        if (stop_signal) {
            why = stop_signal == SIGINT ? "interrupted (SIGINT); checkpoint saved" : "terminated (SIGTERM); checkpoint saved";
            result = 1;
            break;
        }
    }
    if (t.tty) fputc('\n', stderr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (result >= 0) {
        /* without a dev set the last model is the best one */
        if (!t.dev.n && save_best(&t)) result = -1;
        if (result >= 0)
            tt_info("%s at step %ld after %.0f s; best dev loss %.4f (step %ld); model in %s", why, t.st.step,
                    t.st.elapsed_s, t.st.best_dev, t.st.best_step, o->out_dir);
    }
    trainer_teardown(&t);
    return result;
}
