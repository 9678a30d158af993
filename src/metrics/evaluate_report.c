/* evaluate_report.c: what `tutor eval` hands back: the JSON report (settings, sacreBLEU
 * signatures, every number, per-example scores), the generations file, and the table a
 * person reads (model | baseline | difference [95% CI] | lead, then cost and exposure bias). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/evaluate.h"
#include "tutor/fileio.h"

/* One quality row: how to read it from a system, and how to print it. */
typedef struct {
    const char *key, *label;
    int decimals;
    int model_only; /* not defined for lead-N (no model) */
} Row;

static const Row ROWS[] = {
    {"rouge1", "ROUGE-1 F", 2, 0},        {"rouge2", "ROUGE-2 F", 2, 0},
    {"rougeL", "ROUGE-L F", 2, 0},        {"rougeLsum", "ROUGE-Lsum F", 2, 0},
    {"bleu", "BLEU", 2, 0},               {"chrf", "chrF2", 2, 0},
    {"sentence_bleu", "sentence BLEU", 2, 0}, {"test_xent", "test xent (nats)", 4, 1},
    {"length_ratio", "length ratio", 3, 0}, {"repeat_share", "repeats %", 1, 0},
    {"distinct1", "distinct-1", 3, 0},    {"distinct2", "distinct-2", 3, 0},
    {"copy6_share", "copies 6+ src words %", 1, 0},
};
enum { N_ROWS = sizeof ROWS / sizeof ROWS[0] };

static double row_value(const EvalSystem *s, const char *key) {
    if (!strcmp(key, "rouge1")) return 100 * s->rouge_mean.rouge1.fmeasure;
    if (!strcmp(key, "rouge2")) return 100 * s->rouge_mean.rouge2.fmeasure;
    if (!strcmp(key, "rougeL")) return 100 * s->rouge_mean.rougeL.fmeasure;
    if (!strcmp(key, "rougeLsum")) return 100 * s->rouge_mean.rougeLsum.fmeasure;
    if (!strcmp(key, "bleu")) return s->bleu.score;
    if (!strcmp(key, "chrf")) return s->chrf.score;
    if (!strcmp(key, "sentence_bleu")) return s->sentence_bleu_mean;
    if (!strcmp(key, "test_xent")) return s->has_loss ? s->test_xent : NAN;
    if (!strcmp(key, "length_ratio")) return s->text.length_ratio;
    if (!strcmp(key, "repeat_share")) return 100 * s->text.immediate_repeat_share;
    if (!strcmp(key, "distinct1")) return s->text.distinct1;
    if (!strcmp(key, "distinct2")) return s->text.distinct2;
    if (!strcmp(key, "copy6_share")) return 100 * s->copy6_share;
    return NAN;
}

static const EvalDiff *find_diff(const EvalReport *r, const char *key) {
    for (int k = 0; k < r->n_diffs; k++)
        if (!strcmp(r->diffs[k].key, key)) return &r->diffs[k];
    return NULL;
}

/* ---- JSON ---- */

static void add_num(cJSON *o, const char *key, double v) {
    /* JSON has no NaN: an undefined number is null */
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

static cJSON *rouge_json(const RougeScore *s) {
    cJSON *o = cJSON_CreateObject();
    add_num(o, "precision", s->precision);
    add_num(o, "recall", s->recall);
    add_num(o, "fmeasure", s->fmeasure);
    return o;
}

static cJSON *system_json(const EvalSystem *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    if (s->dir) cJSON_AddStringToObject(o, "dir", s->dir);
    if (s->n_params) add_num(o, "parameters", (double)s->n_params);
    cJSON_AddItemToObject(o, "rouge1", rouge_json(&s->rouge_mean.rouge1));
    cJSON_AddItemToObject(o, "rouge2", rouge_json(&s->rouge_mean.rouge2));
    cJSON_AddItemToObject(o, "rougeL", rouge_json(&s->rouge_mean.rougeL));
    cJSON_AddItemToObject(o, "rougeLsum", rouge_json(&s->rouge_mean.rougeLsum));
    cJSON *b = cJSON_AddObjectToObject(o, "bleu");
    add_num(b, "score", s->bleu.score);
    cJSON_AddStringToObject(b, "signature", s->bleu.signature);
    cJSON *prec = cJSON_AddArrayToObject(b, "precisions");
    for (int k = 0; k < s->bleu.max_ngram_order; k++) cJSON_AddItemToArray(prec, cJSON_CreateNumber(s->bleu.precisions[k]));
    add_num(b, "bp", s->bleu.bp);
    add_num(b, "ratio", s->bleu.ratio);
    add_num(b, "sys_len", s->bleu.stats.sys_len);
    add_num(b, "ref_len", s->bleu.stats.ref_len);
    cJSON *c = cJSON_AddObjectToObject(o, "chrf");
    cJSON_AddStringToObject(c, "name", s->chrf.name);
    add_num(c, "score", s->chrf.score);
    cJSON_AddStringToObject(c, "signature", s->chrf.signature);
    add_num(o, "sentence_bleu_mean", s->sentence_bleu_mean);
    if (s->has_loss) {
        add_num(o, "test_xent", s->test_xent);
        add_num(o, "test_tokens", (double)s->test_tokens);
    } else {
        cJSON_AddNullToObject(o, "test_xent");
    }
    add_num(o, "length_ratio", s->text.length_ratio);
    add_num(o, "output_words", (double)s->text.hyp_tokens);
    add_num(o, "reference_words", (double)s->text.ref_tokens);
    add_num(o, "mean_output_words", s->text.mean_hyp_len);
    add_num(o, "repeat_share", s->text.immediate_repeat_share);
    add_num(o, "distinct1", s->text.distinct1);
    add_num(o, "distinct2", s->text.distinct2);
    add_num(o, "copy6_share", s->copy6_share);
    if (s->dir) {
        add_num(o, "generation_seconds", s->gen_seconds);
        add_num(o, "generated_tokens", (double)s->gen_tokens);
    }
    return o;
}

static cJSON *cost_json(const EvalCost *c) {
    cJSON *o = cJSON_CreateObject();
    add_num(o, "parameters", (double)c->n_params);
    add_num(o, "disk_bytes", (double)c->disk_bytes);
    add_num(o, "peak_rss_bytes", (double)c->peak_rss_bytes);
    add_num(o, "base_rss_bytes", (double)c->base_rss_bytes);
    add_num(o, "greedy_latency_ms_median", c->greedy_ms_median);
    add_num(o, "greedy_latency_ms_p90", c->greedy_ms_p90);
    add_num(o, "beam_latency_ms_median", c->beam_ms_median);
    add_num(o, "beam_latency_ms_p90", c->beam_ms_p90);
    add_num(o, "greedy_tokens_per_s", c->greedy_tokens_per_s);
    add_num(o, "beam_tokens_per_s", c->beam_tokens_per_s);
    add_num(o, "greedy_inputs_per_s", c->greedy_inputs_per_s);
    add_num(o, "beam_inputs_per_s", c->beam_inputs_per_s);
    add_num(o, "timed_examples", c->examples);
    add_num(o, "beam", c->beam);
    add_num(o, "batch_size", c->batch_size);
    return o;
}

static double safe_ratio(double a, double b) { return b != 0 && isfinite(a) && isfinite(b) ? a / b : NAN; }

static cJSON *doubles_json(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, isfinite(v[i]) ? cJSON_CreateNumber(v[i]) : cJSON_CreateNull());
    return a;
}

static cJSON *longs_json(const long *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static cJSON *per_example_json(const EvalSystem *s, size_t i) {
    cJSON *o = cJSON_CreateObject();
    add_num(o, "rouge1", s->rouge[i].rouge1.fmeasure);
    add_num(o, "rouge2", s->rouge[i].rouge2.fmeasure);
    add_num(o, "rougeL", s->rouge[i].rougeL.fmeasure);
    add_num(o, "rougeLsum", s->rouge[i].rougeLsum.fmeasure);
    add_num(o, "sentence_bleu", s->sentence_bleu[i]);
    add_num(o, "output_words", (double)s->hyp_words[i]);
    cJSON_AddBoolToObject(o, "repeats", s->repeats[i]);
    if (s->has_loss) {
        add_num(o, "nll", s->nll_sum[i]);
        add_num(o, "reference_tokens", (double)s->nll_tokens[i]);
    }
    return o;
}

/* "cost": the model's, the baseline's and their ratios, when measured */
static void add_cost(cJSON *root, const EvalReport *r) {
    if (!r->cost_model.measured) return;
    cJSON *c = cJSON_AddObjectToObject(root, "cost");
    cJSON_AddItemToObject(c, "model", cost_json(&r->cost_model));
    if (!r->cost_baseline.measured) return;
    const EvalCost *a = &r->cost_model, *b = &r->cost_baseline;
    cJSON_AddItemToObject(c, "baseline", cost_json(b));
    cJSON *q = cJSON_AddObjectToObject(c, "model_over_baseline");
    add_num(q, "parameters", safe_ratio((double)a->n_params, (double)b->n_params));
    add_num(q, "disk_bytes", safe_ratio((double)a->disk_bytes, (double)b->disk_bytes));
    add_num(q, "peak_rss_bytes", safe_ratio((double)a->peak_rss_bytes, (double)b->peak_rss_bytes));
    add_num(q, "greedy_latency_ms_median", safe_ratio(a->greedy_ms_median, b->greedy_ms_median));
    add_num(q, "beam_latency_ms_median", safe_ratio(a->beam_ms_median, b->beam_ms_median));
    add_num(q, "greedy_tokens_per_s", safe_ratio(a->greedy_tokens_per_s, b->greedy_tokens_per_s));
    add_num(q, "beam_tokens_per_s", safe_ratio(a->beam_tokens_per_s, b->beam_tokens_per_s));
    add_num(q, "greedy_inputs_per_s", safe_ratio(a->greedy_inputs_per_s, b->greedy_inputs_per_s));
    add_num(q, "beam_inputs_per_s", safe_ratio(a->beam_inputs_per_s, b->beam_inputs_per_s));
}

cJSON *eval_report_json(const EvalReport *r) {
    const EvalOptions *o = &r->opt;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON *st = cJSON_AddObjectToObject(root, "settings");
    cJSON_AddStringToObject(st, "model", o->model_dir);
    if (o->baseline_dir) cJSON_AddStringToObject(st, "baseline", o->baseline_dir);
    if (o->oracle_dir) cJSON_AddStringToObject(st, "oracle", o->oracle_dir);
    cJSON_AddStringToObject(st, "data", o->data_path);
    add_num(st, "examples", (double)r->n);
    add_num(st, "max_examples", (double)o->max_examples);
    add_num(st, "max_source_tokens", o->max_source_tokens);
    add_num(st, "source_tokens_used", r->source_budget);
    add_num(st, "max_target_tokens", o->max_target_tokens);
    add_num(st, "max_new_tokens", o->max_new_tokens);
    cJSON_AddStringToObject(st, "decoding", o->beam > 1 ? "beam" : "greedy");
    add_num(st, "beam", o->beam);
    add_num(st, "length_penalty", o->length_penalty);
    add_num(st, "no_repeat_ngram_size", o->no_repeat_ngram);
    add_num(st, "batch_size", o->batch_size);
    cJSON_AddBoolToObject(st, "rouge_stemmer", o->use_stemmer);
    add_num(st, "lead", o->lead);
    add_num(st, "bootstrap_resamples", o->resamples);
    add_num(st, "bootstrap_seed", (double)o->seed);
    add_num(st, "exposure_max_len", o->exposure_max_len);
    cJSON_AddBoolToObject(st, "speed", o->speed);
    add_num(st, "speed_examples", o->speed_examples);
    add_num(st, "speed_beam", o->speed_beam);
    add_num(st, "threads", o->threads);
    add_num(st, "seconds", r->seconds);

    if (r->speed_only) {
        /* the cost only, the same fields as a full report's */
        cJSON_AddBoolToObject(st, "speed_only", 1);
        add_cost(root, r);
        return root;
    }
    cJSON *sig = cJSON_AddObjectToObject(root, "signatures");
    cJSON_AddStringToObject(sig, "bleu", r->model.bleu.signature);
    cJSON_AddStringToObject(sig, "chrf", r->model.chrf.signature);
    cJSON_AddStringToObject(sig, "sentence_bleu", "sacreBLEU sentence_bleu: smooth:exp, eff:yes, tok:13a");
    cJSON_AddStringToObject(sig, "rouge", o->use_stemmer ? "rouge-score 0.1.2, use_stemmer=True, mean of F over examples"
                                                         : "rouge-score 0.1.2, use_stemmer=False, mean of F over examples");
    cJSON_AddStringToObject(root, "scales",
                            "systems: ROUGE 0-1, BLEU/chrF/sentence BLEU 0-100, repeat_share and distinct 0-1; "
                            "differences: as the table (ROUGE x100, repeats in %)");

    cJSON_AddItemToObject(root, "model", system_json(&r->model));
    if (r->has_baseline) cJSON_AddItemToObject(root, "baseline", system_json(&r->baseline));
    if (r->has_lead) cJSON_AddItemToObject(root, "lead", system_json(&r->lead));

    if (r->has_baseline) {
        cJSON *d = cJSON_AddObjectToObject(root, "differences");
        cJSON_AddStringToObject(d, "what", "model - baseline, paired bootstrap 95% percentile interval");
        for (int k = 0; k < r->n_diffs; k++) {
            const BootstrapResult *b = &r->diffs[k].r;
            cJSON *x = cJSON_AddObjectToObject(d, r->diffs[k].key);
            add_num(x, "delta", b->delta);
            add_num(x, "lo95", b->lo);
            add_num(x, "hi95", b->hi);
            add_num(x, "mean", b->mean);
            add_num(x, "share_model_better", b->share_b_better);
            add_num(x, "resamples", b->n_resamples);
            add_num(x, "seed", (double)b->seed);
        }
    }
    add_cost(root, r);
    if (r->has_exposure) {
        const ExposureBias *e = &r->exposure;
        cJSON *x = cJSON_AddObjectToObject(root, "exposure_bias");
        cJSON_AddStringToObject(x, "oracle", r->exposure_oracle);
        cJSON_AddStringToObject(x, "method",
                                "R(l) = mean over inputs whose sequence has >= l tokens of sum_{t<=l} "
                                "KL(oracle(.|x,y_<t) || model(.|x,y_<t)); free: the model's greedy outputs, "
                                "ref: the references; ExAccErr(l) = (R_free - R_ref) / R_ref x 100");
        add_num(x, "max_len", e->max_len);
        double *ls = malloc(sizeof(double) * (size_t)e->max_len);
        if (ls) {
            for (int l = 0; l < e->max_len; l++) ls[l] = l + 1;
            cJSON_AddItemToObject(x, "l", doubles_json(ls, e->max_len));
            free(ls);
        }
        cJSON_AddItemToObject(x, "r_free", doubles_json(e->r_free, e->max_len));
        cJSON_AddItemToObject(x, "r_ref", doubles_json(e->r_ref, e->max_len));
        cJSON_AddItemToObject(x, "exacc_err_percent", doubles_json(e->exacc_err, e->max_len));
        cJSON_AddItemToObject(x, "n_free", longs_json(e->n_free, e->max_len));
        cJSON_AddItemToObject(x, "n_ref", longs_json(e->n_ref, e->max_len));
        add_num(x, "kl_free_per_token", e->kl_free_per_token);
        add_num(x, "kl_ref_per_token", e->kl_ref_per_token);
        add_num(x, "tokens_free", (double)e->tokens_free);
        add_num(x, "tokens_ref", (double)e->tokens_ref);
    }
    cJSON *per = cJSON_AddArrayToObject(root, "per_example");
    for (size_t i = 0; i < r->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", r->ids[i]);
        cJSON_AddItemToObject(e, "model", per_example_json(&r->model, i));
        if (r->has_baseline) cJSON_AddItemToObject(e, "baseline", per_example_json(&r->baseline, i));
        if (r->has_lead) cJSON_AddItemToObject(e, "lead", per_example_json(&r->lead, i));
        cJSON_AddItemToArray(per, e);
    }
    return root;
}

int eval_write_json(const EvalReport *r, const char *path) {
    cJSON *root = eval_report_json(r);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return tt_err("out of memory writing %s", path);
    size_t n = strlen(text);
    char *full = realloc(text, n + 2);
    if (!full) {
        free(text);
        return tt_err("out of memory writing %s", path);
    }
    full[n] = '\n';
    full[n + 1] = 0;
    int rc = atomic_write_file(path, full, n + 1);
    free(full);
    return rc;
}

int eval_write_generations(const EvalReport *r, const char *path) {
    AtomicFile *f = atomic_open(path);
    if (!f) return -1;
    int rc = 0;
    for (size_t i = 0; i < r->n && !rc; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", r->ids[i]);
        cJSON_AddStringToObject(o, "source", r->sources[i]);
        cJSON_AddStringToObject(o, "reference", r->refs[i]);
        cJSON_AddStringToObject(o, "prediction", r->model.hyps[i]);
        if (r->has_baseline) cJSON_AddStringToObject(o, "baseline", r->baseline.hyps[i]);
        if (r->has_lead) cJSON_AddStringToObject(o, "lead", r->lead.hyps[i]);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!line) {
            rc = tt_err("out of memory");
            break;
        }
        rc = atomic_write(f, line, strlen(line));
        if (!rc) rc = atomic_write(f, "\n", 1);
        free(line);
    }
    if (rc) {
        atomic_abort(f);
        return rc;
    }
    return atomic_commit(f);
}

/* ---- table ---- */

static void put_value(FILE *f, double v, int decimals, int width) {
    if (isfinite(v)) fprintf(f, " %*.*f", width, decimals, v);
    else fprintf(f, " %*s", width, "-");
}

static void cost_row(FILE *f, const char *label, double a, double b, int has_b, int decimals) {
    fprintf(f, "%-30s", label);
    put_value(f, a, decimals, 12);
    if (has_b) {
        put_value(f, b, decimals, 12);
        put_value(f, safe_ratio(a, b), 3, 10);
    }
    fprintf(f, "\n");
}

static const char *name_of(const EvalReport *r, int baseline) {
    const char *n = baseline ? r->opt.name_baseline : r->opt.name_model;
    return n && *n ? n : baseline ? "baseline" : "model";
}

static void print_cost(FILE *f, const EvalReport *r) {
    const EvalCost *a = &r->cost_model, *b = &r->cost_baseline;
    int hb = b->measured;
    fprintf(f, "\n%-30s %12s", "cost", name_of(r, 0));
    if (hb) fprintf(f, " %12s %10s", name_of(r, 1), "ratio");
    fprintf(f, "\n");
    const double MB = 1024.0 * 1024.0;
    char lbl[64];
    cost_row(f, "parameters", (double)a->n_params, (double)b->n_params, hb, 0);
    cost_row(f, "model.safetensors (MiB)", a->disk_bytes / MB, b->disk_bytes / MB, hb, 2);
    cost_row(f, "peak resident memory (MiB)", a->peak_rss_bytes / MB, b->peak_rss_bytes / MB, hb, 1);
    cost_row(f, "greedy latency, median (ms)", a->greedy_ms_median, b->greedy_ms_median, hb, 1);
    cost_row(f, "greedy latency, p90 (ms)", a->greedy_ms_p90, b->greedy_ms_p90, hb, 1);
    snprintf(lbl, sizeof lbl, "beam-%d latency, median (ms)", a->beam);
    cost_row(f, lbl, a->beam_ms_median, b->beam_ms_median, hb, 1);
    snprintf(lbl, sizeof lbl, "beam-%d latency, p90 (ms)", a->beam);
    cost_row(f, lbl, a->beam_ms_p90, b->beam_ms_p90, hb, 1);
    snprintf(lbl, sizeof lbl, "greedy tokens/s (batch %d)", a->batch_size);
    cost_row(f, lbl, a->greedy_tokens_per_s, b->greedy_tokens_per_s, hb, 0);
    snprintf(lbl, sizeof lbl, "beam-%d tokens/s (batch %d)", a->beam, a->batch_size);
    cost_row(f, lbl, a->beam_tokens_per_s, b->beam_tokens_per_s, hb, 0);
    snprintf(lbl, sizeof lbl, "greedy inputs/s (batch %d)", a->batch_size);
    cost_row(f, lbl, a->greedy_inputs_per_s, b->greedy_inputs_per_s, hb, 1);
    snprintf(lbl, sizeof lbl, "beam-%d inputs/s (batch %d)", a->beam, a->batch_size);
    cost_row(f, lbl, a->beam_inputs_per_s, b->beam_inputs_per_s, hb, 1);
    fprintf(f,
            "(latency at batch 1 over %d inputs%s; peak memory: a child process that loads the model and\n"
            " generates, %.1f MiB of it already resident at fork)\n",
            a->examples, hb ? ", model and baseline interleaved" : "", a->base_rss_bytes / MB);
}

static void print_exposure(FILE *f, const EvalReport *r) {
    const ExposureBias *e = &r->exposure;
    fprintf(f,
            "\nexposure bias against %s: R(l) = accumulated KL(oracle || model), nats, over the first l\n"
            "tokens, mean over inputs whose sequence has >= l tokens (free: the model's greedy outputs; ref: the\n"
            "references); ExAccErr(l) = (R_free - R_ref) / R_ref x 100\n",
            r->exposure_oracle);
    fprintf(f, "%6s %12s %12s %14s %16s\n", "l", "R_free(l)", "R_ref(l)", "ExAccErr(l) %", "inputs free/ref");
    static const int show[] = {1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128};
    for (size_t k = 0; k < sizeof show / sizeof show[0]; k++) {
        int l = show[k];
        if (l > e->max_len || (e->n_free[l - 1] == 0 && e->n_ref[l - 1] == 0)) continue;
        fprintf(f, "%6d", l);
        put_value(f, e->r_free[l - 1], 4, 12);
        put_value(f, e->r_ref[l - 1], 4, 12);
        put_value(f, e->exacc_err[l - 1], 1, 14);
        fprintf(f, " %8ld/%-7ld\n", e->n_free[l - 1], e->n_ref[l - 1]);
    }
    fprintf(f, "mean KL per token: %.4f on the model's own prefixes, %.4f on reference prefixes\n",
            e->kl_free_per_token, e->kl_ref_per_token);
}

char *eval_report_table(const EvalReport *r) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    const EvalOptions *o = &r->opt;
    if (r->speed_only) {
        fprintf(f, "tutor eval: speed only, %s\n", o->data_path);
        if (r->cost_model.measured) print_cost(f, r);
        fprintf(f, "\nwhole evaluation %.1f s\n", r->seconds);
        if (fclose(f)) {
            free(buf);
            return NULL;
        }
        return buf;
    }
    fprintf(f, "tutor eval: %zu examples of %s; %s; ROUGE %s\n", r->n, o->data_path,
            o->beam > 1 ? "beam search" : "greedy search", o->use_stemmer ? "with Porter stemming" : "without stemming");
    if (o->beam > 1) fprintf(f, "(%d beams, length penalty %g)\n", o->beam, o->length_penalty);
    if (o->no_repeat_ngram > 0) fprintf(f, "(no repeated %d-grams)\n", o->no_repeat_ngram);
    fprintf(f, "\n%-18s %9s", "metric", name_of(r, 0));
    char diff[96];
    snprintf(diff, sizeof diff, "%s - %s [95%% CI]", name_of(r, 0), name_of(r, 1));
    if (r->has_baseline) fprintf(f, " %9s   %-28s", name_of(r, 1), diff);
    if (r->has_lead) fprintf(f, " %9s", r->lead.name);
    fprintf(f, "\n");
    for (int k = 0; k < N_ROWS; k++) {
        const Row *row = &ROWS[k];
        fprintf(f, "%-18s", row->label);
        put_value(f, row_value(&r->model, row->key), row->decimals, 9);
        if (r->has_baseline) {
            put_value(f, row_value(&r->baseline, row->key), row->decimals, 9);
            const EvalDiff *d = find_diff(r, row->key);
            char cell[64] = "-";
            if (d)
                snprintf(cell, sizeof cell, "%+.*f [%+.*f, %+.*f]", row->decimals, d->r.delta, row->decimals, d->r.lo,
                         row->decimals, d->r.hi);
            fprintf(f, "   %-28s", cell);
        }
        if (r->has_lead) put_value(f, row->model_only ? NAN : row_value(&r->lead, row->key), row->decimals, 9);
        fprintf(f, "\n");
    }
    if (r->has_baseline)
        fprintf(f, "(95%% intervals: paired bootstrap, %d resamples, seed %llu)\n", o->resamples,
                (unsigned long long)o->seed);
    char line[512];
    bleu_format(&r->model.bleu, line, sizeof line);
    fprintf(f, "\nmodel: %s\nmodel: %s|%s = %.2f\n", line, r->model.chrf.name, r->model.chrf.signature,
            r->model.chrf.score);
    if (r->cost_model.measured) print_cost(f, r);
    if (r->has_exposure) print_exposure(f, r);
    fprintf(f, "\ngeneration: model %.1f s for %ld tokens", r->model.gen_seconds, r->model.gen_tokens);
    if (r->has_baseline) fprintf(f, "; baseline %.1f s for %ld tokens", r->baseline.gen_seconds, r->baseline.gen_tokens);
    fprintf(f, "; whole evaluation %.1f s\n", r->seconds);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}
