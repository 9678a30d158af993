/* distill_loss.c: the loss of a distillation step, as a TrainLoss for the open training
 * loop. A step takes the batch's targets (gold or teacher pseudo-targets) or replaces them
 * by the student's own samples (student PTs: Joint-Teaching, GKD, only-student), runs the
 * teacher (dropout on for noisy KD) and the student on the same batch, and adds on each
 * labelled token w_kd * KD(p_teacher, q_student) + w_ce * CE(label, q_student). With KD the
 * tokens of a sequence are averaged, then the sequences (weight: sequences); fine-tuning
 * alone averages tokens as `tutor train` does (weight: tokens). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/distill.h"

enum { AUTOSCALE_BATCHES = 8 };

struct DistillLoss {
    DistillLossOptions o;
    Model *student;
    int V, max_B, max_S, max_T;
    int *rows;
    double *w;
    real *t_logits;        /* (chunk_rows, V) teacher logits of a chunk */
    double *scratch;       /* per thread: kd_scratch_doubles(V) + V */
    int scratch_parts;
    double *row_loss, *row_kd, *row_ce; /* per chunk row */
    int chunk_rows;
    /* the rows' weights and labels of the current batch */
    const Batch *cur;
    int ce_only;
    /* the teacher's signal from a cache for this batch */
    const TeacherCache *cache; /* NULL: live */
    real *hbuf;                /* exact: gathered hidden states (rows, C) */
    uint64_t *crow;            /* the cache row of each labelled row */
    /* student pseudo-targets */
    Generator *gen;
    MixedSampler *mixed;     /* MiniLLM */
    double *mr, *mrho, *madv; /* MiniLLM per labelled row: reward, importance weight, advantage */
    int minillm_pass;        /* 1: the statistics pass, 2: the gradient pass */
    BatchBuf sbb;
    PairSet sps;
    int *spool;
    const int **src_ptr;
    size_t *sidx;            /* 0 .. max_B - 1, the student batch's pair order */
    int *src_len;
    uint64_t *streams;
    /* schedule and state */
    uint64_t batches;      /* batches seen (the schedule's clock) */
    double scale_kd, scale_ce;
    double sum_kd, sum_ce; /* autoscale measurement: component means over the first batches */
    long n_measured;
    /* timings since the last log line, and totals */
    double t_teacher, t_gen, t_student, tot_teacher, tot_gen, tot_student;
    long n_student_batches, log_student_batches;
    double log_kd, log_ce, log_weight, log_att;
};

void distill_loss_options_default(DistillLossOptions *o) {
    memset(o, 0, sizeof *o);
    kd_objective_default(&o->obj);
    o->w_kd = 1;
    o->w_ce = 0;
    o->label_smoothing = 0;
    o->targets = TARGETS_DATA;
    o->student_fraction = 0.5;
    o->mix_alpha = 0.2;
    gen_config_default(&o->student_gen);
    o->student_gen.do_sample = 1;
    o->student_gen.top_k = 0;
    o->student_gen.top_p = 1.0;
    o->student_gen.temperature = 1.0;
    o->seed = 1;
    o->max_source_tokens = 256;
    o->max_target_tokens = 64;
}

long batch_label_rows(const Batch *b, int *rows, double *w, int *n_seq) {
    long n = 0;
    int seqs = 0;
    for (int i = 0; i < b->B; i++) {
        long first = n;
        for (int t = 0; t < b->T; t++)
            if (b->labels[(long)i * b->T + t] != -100) rows[n++] = i * b->T + t;
        long len = n - first;
        if (len) seqs++;
        for (long r = first; r < n; r++) w[r] = 1.0 / (double)len;
    }
    if (n_seq) *n_seq = seqs;
    return n;
}

int distill_loss_uses_student(const DistillLoss *l, uint64_t k) {
    double a = l->o.student_fraction;
    switch (l->o.targets) {
    case TARGETS_STUDENT:
    case TARGETS_MINILLM:
        return 1;
    case TARGETS_JOINT:
        /* evenly spread: batch k is the student's when floor((k+1) a) > floor(k a); a = 0.5
         * gives every second batch */
        return floor((double)(k + 1) * a + 1e-9) > floor((double)k * a + 1e-9);
    case TARGETS_GKD: {
        /* a uniform draw per batch from (seed, k): resumable without any stored RNG state */
        double u = (double)(rng_mix64(l->o.seed * 0x100000001b3ULL ^ rng_mix64(k)) >> 11) * 0x1.0p-53;
        return u < a;
    }
    default:
        return 0;
    }
}

void distill_loss_free(DistillLoss *l) {
    if (!l) return;
    free(l->rows);
    free(l->w);
    tt_free(l->t_logits);
    free(l->scratch);
    free(l->row_loss);
    free(l->row_kd);
    free(l->row_ce);
    tt_free(l->hbuf);
    free(l->crow);
    generator_free(l->gen);
    mixed_sampler_free(l->mixed);
    free(l->mr), free(l->mrho), free(l->madv);
    batchbuf_free(&l->sbb);
    free(l->sps.items);
    free(l->spool);
    free(l->src_ptr);
    free(l->sidx);
    free(l->src_len);
    free(l->streams);
    free(l);
}

static int ensure_scratch(DistillLoss *l) {
    int parts = tt_threads();
    if (parts <= l->scratch_parts) return 0;
    free(l->scratch);
    l->scratch = malloc(sizeof(double) * (kd_scratch_doubles(l->V) + (size_t)l->V) * (size_t)parts);
    l->scratch_parts = l->scratch ? parts : 0;
    return l->scratch ? 0 : tt_err("out of memory");
}

DistillLoss *distill_loss_new(const DistillLossOptions *o, Model *student, int max_B, int max_S, int max_T) {
    const ModelConfig *sc = &student->cfg;
    int uses_teacher = o->w_kd > 0 || o->targets != TARGETS_DATA;
    if (uses_teacher && !o->teacher) return tt_err("distillation: no teacher"), NULL;
    if (o->teacher) {
        const ModelConfig *tc = &o->teacher->cfg;
        if (model_is_encdec(tc) != model_is_encdec(sc)) {
            tt_err("the teacher is %s and the student %s: word-level distillation feeds one batch to both, so "
                   "both must be encoder-decoders or both decoder-only",
                   model_is_encdec(tc) ? "an encoder-decoder" : "decoder-only",
                   model_is_encdec(sc) ? "an encoder-decoder" : "decoder-only");
            return NULL;
        }
        if (tc->vocab_size != sc->vocab_size) {
            tt_err("the teacher's vocabulary has %d entries and the student's %d: they must share the tokenizer",
                   tc->vocab_size, sc->vocab_size);
            return NULL;
        }
    }
    if (kd_objective_check(&o->obj)) return NULL;
    if (!(o->w_kd >= 0 && o->w_ce >= 0 && o->w_kd + o->w_ce + o->w_att > 0))
        return tt_err("--kd-weight %g and --ce-weight %g: the loss weights must be >= 0 and not both 0", o->w_kd, o->w_ce), NULL;
    if (!(o->student_fraction >= 0 && o->student_fraction <= 1))
        return tt_err("the student fraction %g is outside [0, 1]", o->student_fraction), NULL;
    DistillLoss *l = calloc(1, sizeof *l);
    if (!l) return tt_err("out of memory"), NULL;
    l->o = *o;
    l->student = student;
    l->V = sc->vocab_size;
    l->max_B = max_B, l->max_S = max_S, l->max_T = max_T;
    l->scale_kd = l->scale_ce = 1;
    l->chunk_rows = 256;
    long cells = (long)max_B * max_T;
    l->rows = malloc(sizeof(int) * (size_t)cells);
    l->w = malloc(sizeof(double) * (size_t)cells);
    l->t_logits = tt_alloc(sizeof(real) * (size_t)l->chunk_rows * (size_t)l->V);
    l->row_loss = malloc(sizeof(double) * (size_t)l->chunk_rows);
    l->row_kd = malloc(sizeof(double) * (size_t)l->chunk_rows);
    l->row_ce = malloc(sizeof(double) * (size_t)l->chunk_rows);
    if (o->w_att < 0) return tt_err("the attention-relation weight %g is negative", o->w_att), distill_loss_free(l), NULL;
    if (o->w_att > 0 && o->n_caches > 0)
        return tt_err("attention-relation KD needs the teacher's attention: it does not combine with a teacher cache"),
               distill_loss_free(l), NULL;
    if (o->n_caches > 0) {
        if (!o->source) return tt_err("distillation: a teacher cache needs its batch source"), distill_loss_free(l), NULL;
        if (o->obj.kind != KD_FKL && teacher_cache_kind(o->caches[0]) == CACHE_SPARSE)
            return tt_err("the sparse teacher cache holds top-k log-probabilities at tau 1: only --objective fkl "
                          "with --tau 1 uses it"), distill_loss_free(l), NULL;
        if (teacher_cache_kind(o->caches[0]) == CACHE_SPARSE && o->obj.tau != 1)
            return tt_err("the sparse teacher cache holds log-probabilities at tau 1: --tau must be 1"),
                   distill_loss_free(l), NULL;
        if (teacher_cache_kind(o->caches[0]) == CACHE_SPARSE && o->obj.top_p < 1)
            return tt_err("--teacher-top-p does not apply to the sparse cache (it is already top-k)"),
                   distill_loss_free(l), NULL;
        l->crow = malloc(sizeof(uint64_t) * (size_t)cells);
        if (teacher_cache_kind(o->caches[0]) == CACHE_EXACT)
            l->hbuf = tt_alloc(sizeof(real) * (size_t)cells * (size_t)o->teacher->cfg.d_model);
        if (!l->crow || (teacher_cache_kind(o->caches[0]) == CACHE_EXACT && !l->hbuf)) {
            tt_err("out of memory");
            goto fail;
        }
    }
    if (!l->rows || !l->w || !l->t_logits || !l->row_loss || !l->row_kd || !l->row_ce || ensure_scratch(l)) {
        tt_err("out of memory");
        goto fail;
    }
    if (o->targets != TARGETS_DATA) {
        GenConfig g = o->student_gen;
        gen_config_from_model(&g, sc);
        g.do_sample = o->student_gen.do_sample;
        g.top_k = o->student_gen.top_k;
        g.top_p = o->student_gen.top_p;
        g.temperature = o->student_gen.temperature;
        g.num_beams = 1;
        g.num_return_sequences = 1;
        g.seed = o->seed;
        g.vocab_limit = o->student_gen.vocab_limit;
        /* the target budget includes </s> */
        g.max_new_tokens = o->max_target_tokens;
        int prompt = model_is_encdec(sc) ? max_S : o->max_source_tokens;
        if (!model_is_encdec(sc) && prompt + g.max_new_tokens > sc->max_positions)
            g.max_new_tokens = sc->max_positions - prompt;
        if (o->targets == TARGETS_MINILLM) {
            if (!(o->mix_alpha >= 0 && o->mix_alpha <= 1)) {
                tt_err("MiniLLM's mixing weight %g is outside [0, 1]", o->mix_alpha);
                goto fail;
            }
            l->mixed = mixed_sampler_new(student, o->teacher, max_B, prompt > 0 ? prompt : 1, g.max_new_tokens);
            l->mr = malloc(sizeof(double) * (size_t)cells);
            l->mrho = malloc(sizeof(double) * (size_t)cells);
            l->madv = malloc(sizeof(double) * (size_t)cells);
            if (!l->mixed || !l->mr || !l->mrho || !l->madv) goto fail;
        } else {
            l->gen = generator_new(student, &g, max_B, prompt > 0 ? prompt : 1);
            if (!l->gen) goto fail;
        }
        int src_cap = model_is_encdec(sc) ? max_S : o->max_source_tokens;
        if (src_cap < 1) src_cap = 1;
        l->spool = malloc(sizeof(int) * (size_t)max_B * (size_t)(src_cap + o->max_target_tokens + 1));
        l->sps.items = calloc((size_t)max_B, sizeof(TokPair));
        l->src_ptr = malloc(sizeof(int *) * (size_t)max_B);
        l->sidx = malloc(sizeof(size_t) * (size_t)max_B);
        for (int i = 0; l->sidx && i < max_B; i++) l->sidx[i] = (size_t)i;
        l->src_len = malloc(sizeof(int) * (size_t)max_B);
        l->streams = malloc(sizeof(uint64_t) * (size_t)max_B);
        if (!l->spool || !l->sps.items || !l->src_ptr || !l->sidx || !l->src_len || !l->streams ||
            batchbuf_init(&l->sbb, max_B * (src_cap + 1), max_B * (src_cap + o->max_target_tokens + 2))) {
            tt_err("out of memory");
            goto fail;
        }
    }
    return l;
fail:
    distill_loss_free(l);
    return NULL;
}

/* ---- the per-token loss on a chunk of rows ---- */

typedef struct {
    DistillLoss *l;
    const int *rows;
    real *logits;
    int grad;
} ChunkJob;

static void chunk_rows_fn(int begin, int end, int part, void *arg) {
    ChunkJob *j = arg;
    DistillLoss *l = j->l;
    int V = l->V;
    double *scratch = l->scratch + (size_t)part * (kd_scratch_doubles(V) + (size_t)V);
    double *lq1 = scratch + kd_scratch_doubles(V);
    const Batch *b = l->cur;
    double eps = l->o.label_smoothing;
    for (int r = begin; r < end; r++) {
        real *z = j->logits + (long)r * V;
        int row = j->rows[r];
        int y = b->labels[row];
        if (l->minillm_pass) {
            long ix = j->rows - l->rows + r;
            const real *t = l->t_logits + (long)r * V;
            if (l->minillm_pass == 1) {
                /* statistics: r_t = log p(y) - log q(y), rho_t = q / (alpha p + (1 - alpha) q) */
                double mt = -INFINITY, ms = -INFINITY, st = 0, ss = 0;
                for (int v = 0; v < V; v++) mt = t[v] > mt ? t[v] : mt, ms = z[v] > ms ? z[v] : ms;
                for (int v = 0; v < V; v++) st += exp((double)t[v] - mt), ss += exp((double)z[v] - ms);
                double lp = (double)t[y] - mt - log(st), lq = (double)z[y] - ms - log(ss);
                l->mr[ix] = lp - lq;
                l->mrho[ix] = minillm_weight(exp(lq), exp(lp), l->o.mix_alpha);
                l->row_kd[r] = l->row_ce[r] = l->row_loss[r] = 0;
                continue;
            }
            /* gradient: rho (single-step reverse KL) - rho A log q(y) */
            double wr = l->w[ix], rho = l->mrho[ix], A = l->madv[ix];
            KdObjective rk = l->o.obj;
            rk.kind = KD_RKL, rk.tau = 1, rk.top_p = 1;
            double kd = kd_token(&rk, t, z, V, scratch, j->grad ? z : NULL, wr * rho);
            /* log q(y) from the scratch kd_token left (log q at tau 1) */
            double lqy = scratch[2 * (size_t)V + y];
            if (j->grad) {
                const double *q = scratch + 3 * (size_t)V;
                double c = wr * rho * A;
                for (int v = 0; v < V; v++) z[v] += (real)(c * q[v]);
                z[y] -= (real)c;
            }
            l->row_kd[r] = kd;
            l->row_ce[r] = 0;
            l->row_loss[r] = wr * rho * (kd - A * lqy);
            continue;
        }
        double wr = l->ce_only ? 1.0 : l->w[j->rows - l->rows + r];
        double a_kd = l->o.w_kd * l->scale_kd * wr, a_ce = l->o.w_ce * l->scale_ce * wr;
        double ce = 0, kd = 0;
        double mean_lq = 0;
        if (l->o.w_ce > 0 || l->ce_only) {
            /* cross-entropy at temperature 1 (with label smoothing), before z is overwritten */
            log_softmax_row(z, V, 1.0, lq1);
            for (int v = 0; v < V; v++) mean_lq += lq1[v];
            mean_lq /= V;
            ce = -(1 - eps) * lq1[y] - eps * mean_lq;
        }
        if (l->o.w_kd > 0 && l->cache && teacher_cache_kind(l->cache) == CACHE_SPARSE) {
            uint64_t cr = l->crow[j->rows - l->rows + r];
            kd = kd_token_sparse(teacher_cache_ids(l->cache, cr), teacher_cache_row(l->cache, cr),
                                 teacher_cache_width(l->cache), z, V, j->grad ? z : NULL, a_kd, scratch);
        } else if (l->o.w_kd > 0) {
            kd = kd_token(&l->o.obj, l->t_logits + (long)r * V, z, V, scratch, j->grad ? z : NULL, a_kd);
        } else if (j->grad) {
            for (int v = 0; v < V; v++) z[v] = 0;
        }
        if (j->grad && a_ce > 0) {
            for (int v = 0; v < V; v++) z[v] += (real)(a_ce * (exp(lq1[v]) - eps / V));
            z[y] -= (real)(a_ce * (1 - eps));
        }
        l->row_kd[r] = kd;
        l->row_ce[r] = ce;
        l->row_loss[r] = a_kd * kd + a_ce * ce;
    }
}

static double token_loss_fn(void *ctx, const int *rows, int n, real *logits, int grad) {
    DistillLoss *l = ctx;
    if (l->o.w_kd > 0 && l->cache) {
        if (teacher_cache_kind(l->cache) == CACHE_EXACT) {
            /* the teacher's own output layer on its cached final hidden states */
            const Model *t = l->o.teacher;
            linear_forward(l->t_logits, l->V, l->hbuf + (long)(rows - l->rows) * t->cfg.d_model, t->p.lm_head,
                           t->p.final_logits_bias, n, t->cfg.d_model, l->V, W_OUT_IN);
        }
    } else if (l->o.w_kd > 0) {
        model_logits_rows(l->o.teacher, rows, n, l->t_logits);
    }
    ChunkJob j = {l, rows, logits, grad};
    tt_parallel_range(n, chunk_rows_fn, &j);
    double total = 0;
    if (l->minillm_pass == 1) return 0;
    for (int r = 0; r < n; r++) {
        total += l->row_loss[r];
        double wr = l->ce_only ? 1.0 : l->w[rows - l->rows + r];
        l->log_kd += wr * l->row_kd[r];
        l->log_ce += wr * l->row_ce[r];
        if (l->batches <= AUTOSCALE_BATCHES) {
            l->sum_kd += wr * l->row_kd[r];
            l->sum_ce += wr * l->row_ce[r];
        }
    }
    return total;
}

void minillm_advantages(const double *r, int n, double *adv) {
    double tail = 0;
    for (int t = n - 1; t >= 0; t--) {
        int after = n - 1 - t;
        adv[t] = after ? tail / after : 0;
        tail += r[t];
    }
}

/* ---- student pseudo-targets ---- */

static int student_batch(DistillLoss *l, Model *m, const Batch *b, uint64_t k, const Batch **out) {
    const ModelConfig *c = &m->cfg;
    int encdec = model_is_encdec(c);
    int B = b->B;
    if (B > l->max_B) return tt_err("student pseudo-targets: a batch of %d sequences (at most %d)", B, l->max_B);
    int *pool = l->spool;
    long used = 0;
    for (int i = 0; i < B; i++) {
        int len = 0;
        if (encdec) {
            while (len < b->S && b->src_mask[(long)i * b->S + len]) len++;
            memcpy(pool + used, b->src + (long)i * b->S, sizeof(int) * (size_t)len);
        } else {
            /* the prompt: up to the first labelled position (<s> source </s>) */
            while (len < b->T && b->labels[(long)i * b->T + len] == -100) len++;
            len++;
            if (len > b->T) len = b->T;
            memcpy(pool + used, b->tgt_in + (long)i * b->T, sizeof(int) * (size_t)len);
        }
        l->src_ptr[i] = pool + used;
        l->src_len[i] = len;
        l->streams[i] = (k << 20) | (uint64_t)i;
        used += len;
    }
    const GenOutput *go = NULL;
    const int *mt = NULL, *mn = NULL;
    if (l->mixed) {
        if (mixed_sampler_run(l->mixed, B, l->src_ptr, l->src_len, l->streams, l->o.seed, l->o.mix_alpha,
                              l->o.student_gen.vocab_limit, &mt, &mn))
            return -1;
    } else if (generator_run(l->gen, B, l->src_ptr, l->src_len, l->streams, &go)) {
        return -1;
    }
    int eos = c->eos_id;
    int max_t = l->o.max_target_tokens;
    for (int i = 0; i < B; i++) {
        TokPair *p = &l->sps.items[i];
        p->src = (int *)l->src_ptr[i];
        p->src_len = l->src_len[i];
        p->tgt = pool + used;
        const int *toks = go ? go[i].hyps[0].tokens : mt + (long)i * mixed_sampler_stride(l->mixed);
        int n = go ? go[i].hyps[0].n_tokens : mn[i];
        if (n > max_t) n = max_t;
        memcpy(p->tgt, toks, sizeof(int) * (size_t)n);
        if (n == 0 || p->tgt[n - 1] != eos) {
            if (n == max_t) n--;
            p->tgt[n++] = eos;
        }
        p->tgt_len = n;
        used += n;
    }
    l->sps.n = (size_t)B;
    if (batch_assemble(&l->sbb, c, &l->sps, l->sidx, B)) return -1;
    *out = &l->sbb.batch;
    return 0;
}

/* ---- the teacher's signal from a cache ---- */

static int cache_rows(DistillLoss *l, const Batch *b, long n) {
    const size_t *idx;
    int count, set;
    pt_source_last(l->o.source, &idx, &count, &set);
    if (set >= l->o.n_caches) return tt_err("no teacher cache for pseudo-target set %d", set);
    if (count != b->B) return tt_err("teacher cache: the batch has %d sequences, the source's last %d", b->B, count);
    const TeacherCache *c = l->o.caches[set];
    int C = l->o.teacher->cfg.d_model;
    long r = 0;
    for (int i = 0; i < b->B; i++) {
        uint64_t first;
        int nc;
        if (idx[i] >= teacher_cache_pairs(c)) return tt_err("teacher cache: pair %zu is not in it", idx[i]);
        teacher_cache_pair(c, idx[i], &first, &nc);
        for (int j = 0; j < nc; j++, r++) {
            if (r >= n || l->rows[r] / b->T != i)
                return tt_err("teacher cache: pair %zu has %d cached tokens, not what its batch row holds", idx[i], nc);
            l->crow[r] = first + (uint64_t)j;
            if (l->hbuf) {
                const float *h = teacher_cache_row(c, first + (uint64_t)j);
                real *d = l->hbuf + r * C;
                for (int k = 0; k < C; k++) d[k] = (real)h[k];
            }
        }
    }
    if (r != n) return tt_err("teacher cache: %ld cached tokens for %ld labelled rows", r, n);
    l->cache = c;
    return 0;
}

/* ---- the step ---- */

static int dl_step(void *ctx, Model *m, const Batch *b, double *loss_sum, double *weight) {
    DistillLoss *l = ctx;
    uint64_t k = l->batches++;
    if (ensure_scratch(l)) return -1;
    const Batch *use = b;
    if (distill_loss_uses_student(l, k)) {
        double t0 = tt_now_s();
        if (student_batch(l, m, b, k, &use)) return -1;
        l->t_gen += tt_now_s() - t0;
        l->n_student_batches++;
        l->log_student_batches++;
    }
    int n_seq;
    long n = batch_label_rows(use, l->rows, l->w, &n_seq);
    l->cache = NULL;
    if (l->o.w_kd > 0 && l->o.n_caches > 0 && use == b) {
        double t0 = tt_now_s();
        if (cache_rows(l, use, n)) return -1;
        l->t_teacher += tt_now_s() - t0;
    } else if (l->o.w_kd > 0 || l->o.w_att > 0) {
        double t0 = tt_now_s();
        if (model_forward(l->o.teacher, use, l->o.noisy ? FWD_NOISY : FWD_INFER)) return -1;
        l->t_teacher += tt_now_s() - t0;
    }
    double t0 = tt_now_s();
    if (model_forward(m, use, FWD_TRAIN)) return -1;
    l->cur = use;
    l->ce_only = l->o.w_kd == 0 && l->o.w_att == 0;
    double loss;
    if (l->mixed && n) {
        /* MiniLLM: rewards and weights of every token first, then the advantages, then the
         * gradient pass */
        l->minillm_pass = 1;
        if (isnan(model_token_loss(m, l->rows, n, token_loss_fn, l, 0))) return -1;
        for (long r0 = 0; r0 < n;) {
            long r1 = r0;
            while (r1 < n && l->rows[r1] / use->T == l->rows[r0] / use->T) r1++;
            minillm_advantages(l->mr + r0, (int)(r1 - r0), l->madv + r0);
            r0 = r1;
        }
        l->minillm_pass = 2;
        loss = model_token_loss(m, l->rows, n, token_loss_fn, l, 1);
        l->minillm_pass = 0;
    } else {
        loss = n ? model_token_loss(m, l->rows, n, token_loss_fn, l, 1) : 0;
    }
    if (isnan(loss)) return -1;
    if (l->o.w_att > 0 && n_seq > 0) {
        /* the relation loss is a batch mean: times the sequences, like the per-sequence KD sum */
        double rel = attention_relation_kd(l->o.teacher, m, use, l->o.relation_heads, 1, l->o.w_att * n_seq, NULL);
        if (isnan(rel)) return -1;
        loss += l->o.w_att * rel * n_seq;
        l->log_att += rel * n_seq;
    }
    if (model_backward(m, use)) return -1;
    l->t_student += tt_now_s() - t0;
    double wt = l->ce_only ? (double)n : (double)n_seq;
    l->log_weight += wt;
    if (l->o.autoscale && l->batches <= AUTOSCALE_BATCHES) l->n_measured += (long)wt;
    if (l->o.autoscale && l->batches == AUTOSCALE_BATCHES && l->n_measured > 0) {
        /* scale each component to a mean of 1 on the measured batches */
        double mk = l->sum_kd / l->n_measured, mc = l->sum_ce / l->n_measured;
        if (l->o.w_kd > 0 && mk > 0) l->scale_kd = 1 / mk;
        if (l->o.w_ce > 0 && mc > 0) l->scale_ce = 1 / mc;
        tt_info("autoscale after %d batches: KD mean %.4g -> scale %.4g; CE mean %.4g -> scale %.4g",
                AUTOSCALE_BATCHES, mk, l->scale_kd, mc, l->scale_ce);
    }
    *loss_sum = loss;
    *weight = wt;
    return 0;
}

static void dl_log(void *ctx, cJSON *line) {
    DistillLoss *l = ctx;
    l->tot_teacher += l->t_teacher;
    l->tot_gen += l->t_gen;
    l->tot_student += l->t_student;
    cJSON_AddNumberToObject(line, "time_teacher_s", l->t_teacher);
    cJSON_AddNumberToObject(line, "time_student_gen_s", l->t_gen);
    cJSON_AddNumberToObject(line, "time_student_s", l->t_student);
    cJSON_AddNumberToObject(line, "total_teacher_s", l->tot_teacher);
    cJSON_AddNumberToObject(line, "total_student_gen_s", l->tot_gen);
    cJSON_AddNumberToObject(line, "total_student_s", l->tot_student);
    if (l->log_weight > 0) {
        if (l->o.w_kd > 0) cJSON_AddNumberToObject(line, "kd", l->log_kd / l->log_weight);
        if (l->o.w_ce > 0 || l->o.w_kd == 0) cJSON_AddNumberToObject(line, "ce", l->log_ce / l->log_weight);
        if (l->o.w_att > 0) cJSON_AddNumberToObject(line, "attention_relation", l->log_att / l->log_weight);
    }
    cJSON_AddNumberToObject(line, "student_pt_batches", (double)l->log_student_batches);
    l->t_teacher = l->t_gen = l->t_student = 0;
    l->log_kd = l->log_ce = l->log_weight = l->log_att = 0;
    l->log_student_batches = 0;
}

static cJSON *dl_save(void *ctx) {
    DistillLoss *l = ctx;
    cJSON *o = cJSON_CreateObject();
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)l->batches);
    if (!o || !cJSON_AddStringToObject(o, "batches", buf) || !cJSON_AddNumberToObject(o, "scale_kd", l->scale_kd) ||
        !cJSON_AddNumberToObject(o, "scale_ce", l->scale_ce) || !cJSON_AddNumberToObject(o, "sum_kd", l->sum_kd) ||
        !cJSON_AddNumberToObject(o, "sum_ce", l->sum_ce) ||
        !cJSON_AddNumberToObject(o, "n_measured", (double)l->n_measured) ||
        !cJSON_AddNumberToObject(o, "total_teacher_s", l->tot_teacher + l->t_teacher) ||
        !cJSON_AddNumberToObject(o, "total_student_gen_s", l->tot_gen + l->t_gen) ||
        !cJSON_AddNumberToObject(o, "total_student_s", l->tot_student + l->t_student)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int get_num(const cJSON *st, const char *key, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(st, key);
    if (!cJSON_IsNumber(x)) return tt_err("distillation loss state: \"%s\" missing", key);
    *v = x->valuedouble;
    return 0;
}

static int dl_restore(void *ctx, const cJSON *st) {
    DistillLoss *l = ctx;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "batches");
    if (!cJSON_IsString(b)) return tt_err("distillation loss state: \"batches\" missing");
    char *end;
    unsigned long long k = strtoull(b->valuestring, &end, 10);
    if (*end) return tt_err("distillation loss state: bad \"batches\"");
    double nm = 0, tt = 0, tg = 0, ts = 0;
    if (get_num(st, "scale_kd", &l->scale_kd) || get_num(st, "scale_ce", &l->scale_ce) ||
        get_num(st, "sum_kd", &l->sum_kd) || get_num(st, "sum_ce", &l->sum_ce) || get_num(st, "n_measured", &nm) ||
        get_num(st, "total_teacher_s", &tt) || get_num(st, "total_student_gen_s", &tg) ||
        get_num(st, "total_student_s", &ts))
        return -1;
    l->batches = k;
    l->n_measured = (long)nm;
    l->tot_teacher = tt, l->tot_gen = tg, l->tot_student = ts;
    l->t_teacher = l->t_gen = l->t_student = 0;
    return 0;
}

TrainLoss distill_loss_iface(DistillLoss *l) {
    return (TrainLoss){.ctx = l, .name = "distill", .step = dl_step, .log = dl_log, .save = dl_save,
                       .restore = dl_restore};
}
