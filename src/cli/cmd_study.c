/* cmd_study.c: `tutor study`: the stages of Calderon et al. (ACL 2023), rerun on any task by
 * one command. Each stage is a set of rows (one student trained by `tutor distill`, then
 * evaluated by `tutor eval` on dev and test); each stage's decision is made on dev and carried
 * to the next. Everything goes under the output folder, one folder per row with its command
 * log, model, dev and test numbers and test generations; a row whose row.json exists is never
 * rerun, and a killed row resumes from its checkpoint. docs/study.md describes the stages. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "study.h"
#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/data.h"
#include "tutor/evaluate.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"
#include "tutor/metrics.h"
#include "tutor/model.h"
#include "tutor/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor study [--teacher DIR] --labeled F --unlabeled F --dev F --test F -o OUT [options]\n\n"
            "Reruns the study of Calderon et al. (ACL 2023) on a task: which student, which KD objective,\n"
            "which pseudo-targets (PTs), decided stage by stage on dev, reported on test. Stages:\n"
            "  S1 encoder-decoder vs decoder-only student    S2 shrink init vs random init\n"
            "  S3 fine-tune vs word-level KD vs noisy KD vs attention-relation KD (gold)\n"
            "  S4 + one teacher PT per labeled input         S5 PTs for labeled vs labeled + unlabeled\n"
            "  S6 one vs K PTs per input                     S7 beam vs sampling vs high-temperature PTs\n"
            "  S8 teacher PTs vs student PTs vs Joint-Teaching\n"
            "  S9 beside the winner: reverse KL, JSD, skew KL, GKD, MiniLLM, exact and sparse caches\n"
            "  ref: lead-N baseline, the teacher, the student fine-tuned on all gold (--unlabeled-gold)\n"
            "From S3 on the student is the best of S1/S2 that generates >= --speedup times faster than\n"
            "the teacher (narrower and shallower students are added until one does). Every row gets\n"
            "test ROUGE-1/2/L and BLEU with paired bootstrap intervals against the fine-tuned student,\n"
            "exposure bias, parameters, speed-up and training time. OUT receives RESULTS.md,\n"
            "results.json, plots, and rows/NAME/ for each row (log.txt, model/, dev.json, test.json,\n"
            "test-gen.jsonl). Rerun the same command to continue a stopped study.\n\n"
            "task:\n"
            "  --labeled FILE        labeled pairs (JSONL: source and target): teacher and students\n"
            "  --unlabeled FILE      unlabeled inputs (source only is read): PTs\n"
            "  --dev FILE            dev pairs: every decision\n"
            "  --test FILE           test pairs: every reported number\n"
            "  --unlabeled-gold FILE the unlabeled inputs' gold pairs, only for the reference row\n"
            "  --source-field NAME --target-field NAME   JSONL fields (source, target)\n"
            "  --teacher DIR         the teacher (a model directory with its tokenizer); without it one is\n"
            "                        trained first into OUT/teacher: a BPE tokenizer (--vocab, 8000), denoising\n"
            "                        pretraining, fine-tuning, decoding tuned on dev (--teacher-hours, 2)\n"
            "budget and settings:\n"
            "  -o, --output DIR      the study's folder (required)\n"
            "  --budget-hours H      wall time for the whole study (8); each training row gets an equal\n"
            "                        share of what the PTs and evaluations leave\n"
            "  --row-minutes M       training minutes per row instead (overrides --budget-hours)\n"
            "  --threads N           threads (2); --jobs J trainings at once, N/J threads each (1)\n"
            "  --pts K               PTs per input in S6-S9 (4)\n"
            "  --seeds N             seeds of the fine-tune, KD-with-PTs and Joint-Teaching rows (3)\n"
            "  --speedup X           the student must generate >= X times faster than the teacher (5)\n"
            "  --stages LIST         only these stages (e.g. S3,S8; default all); skipped stages take\n"
            "                        the paper's decision\n"
            "  --quick               the same stages on a small subset, tiny budgets: a check\n"
            "  --no-plots            no gnuplot plots\n"
            "  --status              only say where the study in -o OUT stands (rows done, failed,\n"
            "                        training with their step, pseudo-target files); runs nothing\n"
            "  -h, --help            this help\n");
}

/* ---------------------------------------------------------------- the study's state */

typedef struct {
    char name[40];
    int shrink;              /* 1: the teacher's layers kept; 0: random init from cfg */
    char keep_enc[64], keep_dec[64];
    ModelConfig cfg;         /* the shape (random: written to students/NAME.json) */
    char config_path[600];
    char init_dir[600];      /* a pretrained start (tutor pretrain's output), "" none */
    double probe_speedup;    /* forced-length generation speed over the teacher's */
    size_t params;
} Student;

typedef struct {
    const char *teacher, *labeled, *unlabeled, *dev, *test, *unl_gold, *out;
    char teacher_dir[600];   /* the trained teacher when --teacher is not given */
    double teacher_hours;
    int vocab;
    const char *src_field, *tgt_field;
    double budget_hours, row_minutes, speedup;
    int threads, jobs, pts, seeds, quick, plots;
    char stages[128];
    /* derived */
    char lab[600], unl[600], dv[600], tst[600], gold_all[600];
    ModelConfig tcfg;
    int max_src, max_tgt, tgt_median, ex_full, ex_mid, n_dev, n_test;
    size_t n_lab, n_unl;
    int deployed_beam;
    double row_min; /* the training minutes of each row (0 in quick mode: steps) */
    int quick_steps;
    int retimed; /* speed_pass ran: the speed column was re-timed in one sitting */
    RowResult *rows;
    int n_rows, cap_rows;
    char *decisions;
    size_t dec_len;
    double t_start;
} Study;

static void decision(Study *S, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void decision(Study *S, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    char *d = realloc(S->decisions, S->dec_len + (size_t)n + 2);
    if (!d) return;
    S->decisions = d;
    memcpy(d + S->dec_len, buf, (size_t)n);
    S->dec_len += (size_t)n;
    d[S->dec_len++] = '\n';
    d[S->dec_len] = 0;
    tt_info("study: %s", buf);
}

static int stage_on(const Study *S, const char *stage) {
    if (!S->stages[0]) return 1;
    char list[130];
    snprintf(list, sizeof list, ",%s,", S->stages);
    char want[16];
    snprintf(want, sizeof want, ",%s,", stage);
    return strstr(list, want) != NULL;
}

static void pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static RowResult *row_add(Study *S, const RowResult *r) {
    for (int i = 0; i < S->n_rows; i++)
        if (!strcmp(S->rows[i].name, r->name)) {
            S->rows[i] = *r;
            return &S->rows[i];
        }
    if (S->n_rows == S->cap_rows) {
        int cap = S->cap_rows ? S->cap_rows * 2 : 64;
        RowResult *v = realloc(S->rows, sizeof(RowResult) * (size_t)cap);
        if (!v) return NULL;
        S->rows = v, S->cap_rows = cap;
    }
    S->rows[S->n_rows] = *r;
    return &S->rows[S->n_rows++];
}

static const RowResult *row_find(const Study *S, const char *name) {
    for (int i = 0; i < S->n_rows; i++)
        if (!strcmp(S->rows[i].name, name)) return &S->rows[i];
    return NULL;
}

/* ---------------------------------------------------------------- data */

/* Copies the first n lines of src to dst (atomically), unless dst exists. */
static int head_lines(const char *src, const char *dst, size_t n) {
    if (file_exists(dst)) return 0;
    FILE *f = fopen(src, "rb");
    if (!f) return tt_err("%s: %s", src, strerror(errno));
    AtomicFile *o = atomic_open(dst);
    if (!o) {
        fclose(f);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, k = 0;
    ssize_t len;
    int rc = 0;
    while (k < n && (len = getline(&line, &cap, f)) > 0 && !rc) {
        rc = atomic_write(o, line, (size_t)len);
        k++;
    }
    free(line);
    fclose(f);
    if (rc) {
        atomic_abort(o);
        return -1;
    }
    return atomic_commit(o);
}

static int concat_files(const char *a, const char *b, const char *dst) {
    if (file_exists(dst)) return 0;
    AtomicFile *o = atomic_open(dst);
    if (!o) return -1;
    const char *srcs[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        char *t = read_file_text(srcs[k], &n);
        if (!t) {
            atomic_abort(o);
            return -1;
        }
        int rc = atomic_write(o, t, n);
        if (!rc && n && t[n - 1] != '\n') rc = atomic_write(o, "\n", 1);
        free(t);
        if (rc) {
            atomic_abort(o);
            return -1;
        }
    }
    return atomic_commit(o);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static size_t count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = 0;
    int c, last = '\n';
    while ((c = getc(f)) != EOF) {
        if (c == '\n') n++;
        last = c;
    }
    if (last != '\n') n++;
    fclose(f);
    return n;
}

/* Token lengths of the labeled pairs under the teacher's tokenizer: the budgets the data asks
 * for (sources: 95th percentile, targets: 99th) and the exposure-bias lengths. */
static int data_stats(Study *S, const Tokenizer *tok) {
    JsonlOptions jo;
    jsonl_options_default(&jo);
    if (S->src_field) jo.source_field = S->src_field;
    if (S->tgt_field) jo.target_field = S->tgt_field;
    jo.require_target = 1;
    Dataset ds = {0};
    if (dataset_load_jsonl(&ds, S->lab, &jo, 0)) return -1;
    if (ds.n < 2) {
        dataset_free(&ds);
        return tt_err("%s: needs at least 2 labeled pairs", S->lab);
    }
    int *sl = malloc(sizeof(int) * ds.n), *tl = malloc(sizeof(int) * ds.n);
    TokenIds ids = {0};
    int rc = sl && tl ? 0 : tt_err("out of memory");
    for (size_t i = 0; i < ds.n && !rc; i++) {
        if (tokenizer_encode(tok, ds.items[i].source, strlen(ds.items[i].source), NULL, &ids, NULL) ||
            (sl[i] = (int)ids.n + 2,
             tokenizer_encode(tok, ds.items[i].target, strlen(ds.items[i].target), NULL, &ids, NULL))) {
            rc = tt_err_wrap("%s:%zu", S->lab, ds.items[i].line);
            break;
        }
        tl[i] = (int)ids.n + 1;
    }
    if (!rc) {
        qsort(sl, ds.n, sizeof(int), cmp_int);
        qsort(tl, ds.n, sizeof(int), cmp_int);
        S->max_src = sl[(size_t)(0.95 * (double)(ds.n - 1))];
        S->max_tgt = tl[(size_t)(0.99 * (double)(ds.n - 1))];
        S->tgt_median = tl[ds.n / 2];
        S->ex_full = tl[(size_t)(0.9 * (double)(ds.n - 1))];
        if (S->max_src < 8) S->max_src = 8;
        if (S->max_tgt < 4) S->max_tgt = 4;
        if (S->ex_full < 2) S->ex_full = 2;
        if (S->ex_full > S->max_tgt) S->ex_full = S->max_tgt;
        S->ex_mid = S->ex_full / 2 > 0 ? S->ex_full / 2 : 1;
        /* the teacher's positions bound everything (an encoder-decoder's source and target
         * each; both together for a decoder-only teacher) */
        int pos = S->tcfg.max_positions;
        if (model_is_encdec(&S->tcfg)) {
            if (S->max_src > pos) S->max_src = pos;
            if (S->max_tgt > pos) S->max_tgt = pos;
        } else if (S->max_src + S->max_tgt > pos) {
            S->max_src = pos - S->max_tgt > 8 ? pos - S->max_tgt : pos / 2;
        }
    }
    token_ids_free(&ids);
    free(sl);
    free(tl);
    dataset_free(&ds);
    return rc;
}

/* ---------------------------------------------------------------- the lead baseline */

static int load_pairs_max(const Study *S, const char *path, Dataset *ds, size_t max) {
    JsonlOptions jo;
    jsonl_options_default(&jo);
    if (S->src_field) jo.source_field = S->src_field;
    if (S->tgt_field) jo.target_field = S->tgt_field;
    jo.require_target = 1;
    return dataset_load_jsonl(ds, path, &jo, max);
}

static int load_pairs(const Study *S, const char *path, Dataset *ds) { return load_pairs_max(S, path, ds, 0); }

static int lead_scores(const Dataset *ds, int n_words, RougeScores *mean, char ***hyps_out) {
    char **hyps = calloc(ds->n, sizeof(char *));
    const char **refs = calloc(ds->n, sizeof(char *));
    int rc = hyps && refs ? 0 : tt_err("out of memory");
    for (size_t i = 0; i < ds->n && !rc; i++) {
        hyps[i] = lead_words(ds->items[i].source, n_words);
        refs[i] = ds->items[i].target;
        if (!hyps[i]) rc = tt_err("out of memory");
    }
    const char *const *rr[1] = {refs};
    if (!rc) rc = rouge_corpus((const char *const *)hyps, rr, 1, ds->n, 0, NULL, mean);
    free(refs);
    if (hyps_out && !rc) {
        *hyps_out = hyps;
    } else {
        for (size_t i = 0; hyps && i < ds->n; i++) free(hyps[i]);
        free(hyps);
    }
    return rc;
}

static int write_generations(const char *path, const Dataset *ds, char **hyps) {
    AtomicFile *f = atomic_open(path);
    if (!f) return -1;
    int rc = 0;
    for (size_t i = 0; i < ds->n && !rc; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", ds->items[i].id);
        cJSON_AddStringToObject(o, "reference", ds->items[i].target);
        cJSON_AddStringToObject(o, "prediction", hyps[i]);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        rc = line ? atomic_write(f, line, strlen(line)) || atomic_write(f, "\n", 1) : tt_err("out of memory");
        free(line);
    }
    if (rc) {
        atomic_abort(f);
        return -1;
    }
    return atomic_commit(f);
}

static int row_lead(Study *S) {
    char dir[700], path[800];
    pathf(dir, sizeof dir, "%s/rows/ref-lead", S->out);
    pathf(path, sizeof path, "%s/row.json", dir);
    RowResult r;
    if (study_row_load(path, &r)) return -1;
    if (r.have) return row_add(S, &r) ? 0 : tt_err("out of memory");
    if (make_dirs(dir)) return -1;
    Dataset dev = {0}, test = {0};
    int rc = load_pairs(S, S->dv, &dev) || load_pairs(S, S->tst, &test);
    int best_n = 1;
    double best = -1;
    for (int n = 1; n <= 64 && !rc; n++) {
        RougeScores m;
        if ((rc = lead_scores(&dev, n, &m, NULL))) break;
        if (m.rougeL.fmeasure > best + 1e-12) best = m.rougeL.fmeasure, best_n = n;
    }
    char **hyps = NULL;
    RougeScores m;
    if (!rc) rc = lead_scores(&test, best_n, &m, &hyps);
    if (!rc) {
        memset(&r, 0, sizeof r);
        r.have = 1;
        snprintf(r.name, sizeof r.name, "ref-lead");
        snprintf(r.stage, sizeof r.stage, "ref");
        snprintf(r.role, sizeof r.role, "baseline");
        snprintf(r.method, sizeof r.method, "lead-%d", best_n);
        snprintf(r.what, sizeof r.what, "the first %d source words (N chosen on dev: ROUGE-L %.2f)", best_n,
                 100 * best);
        r.dev_rougeL = 100 * best;
        r.r1 = 100 * m.rouge1.fmeasure, r.r2 = 100 * m.rouge2.fmeasure, r.rL = 100 * m.rougeL.fmeasure;
        const char **refs = malloc(sizeof(char *) * test.n);
        BleuOptions bo;
        bleu_options_default(&bo);
        BleuResult br;
        if (!refs) rc = tt_err("out of memory");
        for (size_t i = 0; !rc && i < test.n; i++) refs[i] = test.items[i].target;
        const char *const *rr[1] = {refs};
        if (!rc) rc = bleu_corpus((const char *const *)hyps, rr, 1, test.n, &bo, &br);
        free(refs);
        if (!rc) r.bleu = br.score;
        r.speed_greedy = r.speed_beam = NAN;
        r.exacc_mid = r.exacc_full = NAN;
        r.train_s = r.teacher_s = r.student_gen_s = r.student_s = NAN;
        pathf(r.gen_path, sizeof r.gen_path, "%s/test-gen.jsonl", dir);
        if (!rc) rc = write_generations(r.gen_path, &test, hyps);
        if (!rc) rc = study_row_save(path, &r);
        if (!rc && !row_add(S, &r)) rc = tt_err("out of memory");
    }
    for (size_t i = 0; hyps && i < test.n; i++) free(hyps[i]);
    free(hyps);
    dataset_free(&dev);
    dataset_free(&test);
    return rc;
}

/* ---------------------------------------------------------------- evaluation of a row */

static double jnum(const cJSON *o, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *x = o;
    for (char *tok = strtok(buf, "."); tok && x; tok = strtok(NULL, ".")) x = cJSON_GetObjectItemCaseSensitive(x, tok);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static void common_fields(const Study *S, Argv *a) {
    if (S->src_field) argv_push(a, "--source-field"), argv_push(a, S->src_field);
    if (S->tgt_field) argv_push(a, "--target-field"), argv_push(a, S->tgt_field);
}

static int speed_examples(const Study *S) {
    int n = S->quick ? 6 : 100;
    return n < S->n_test ? n : S->n_test;
}

/* A failed row's numbers: none. */
static void row_numbers_unknown(RowResult *r) {
    r->dev_rougeL = r->r1 = r->r2 = r->rL = r->bleu = NAN;
    r->speed_greedy = r->speed_beam = r->exacc_mid = r->exacc_full = NAN;
    r->train_s = r->teacher_s = r->student_gen_s = r->student_s = NAN;
}

/* dev.json, test.json and test-gen.jsonl of a trained model, then r's numbers from them. */
static int evaluate_model(Study *S, const char *dir, const char *model, int is_teacher, RowResult *r) {
    char log[800], devj[800], testj[800], gen[800];
    pathf(log, sizeof log, "%s/log.txt", dir);
    pathf(devj, sizeof devj, "%s/dev.json", dir);
    pathf(testj, sizeof testj, "%s/test.json", dir);
    pathf(gen, sizeof gen, "%s/test-gen.jsonl", dir);
    if (!file_exists(devj)) {
        Argv a = {0};
        argv_push(&a, "eval");
        argv_push(&a, "--model"), argv_push(&a, model);
        argv_push(&a, "--data"), argv_push(&a, S->dv);
        argv_push(&a, "--no-speed"), argv_push(&a, "-q");
        argv_push(&a, "--threads"), argv_pushf(&a, "%d", S->threads);
        argv_push(&a, "--json"), argv_push(&a, devj);
        common_fields(S, &a);
        int rc = study_run(&a, log);
        argv_free(&a);
        if (rc) return -1;
    }
    if (!file_exists(testj) || !file_exists(gen)) {
        Argv a = {0};
        argv_push(&a, "eval");
        argv_push(&a, "--model"), argv_push(&a, model);
        argv_push(&a, "--data"), argv_push(&a, S->tst);
        if (!is_teacher) {
            argv_push(&a, "--baseline"), argv_push(&a, S->teacher);
            argv_push(&a, "--baseline-speed-only");
            argv_push(&a, "--oracle"), argv_push(&a, S->teacher);
        }
        argv_push(&a, "--exposure-len"), argv_pushf(&a, "%d", S->ex_full);
        argv_push(&a, "--max-target-tokens"), argv_pushf(&a, "%d", S->max_tgt > 2 ? S->max_tgt : 2);
        argv_push(&a, "--speed-examples"), argv_pushf(&a, "%d", speed_examples(S));
        argv_push(&a, "-q");
        argv_push(&a, "--threads"), argv_pushf(&a, "%d", S->threads);
        argv_push(&a, "--json"), argv_push(&a, testj);
        argv_push(&a, "--generations"), argv_push(&a, gen);
        common_fields(S, &a);
        int rc = study_run(&a, log);
        argv_free(&a);
        if (rc) return -1;
    }
    cJSON *d = json_load_object(devj), *t = json_load_object(testj);
    if (!d || !t) {
        cJSON_Delete(d);
        cJSON_Delete(t);
        return -1;
    }
    r->dev_rougeL = 100 * jnum(d, "model.rougeL.fmeasure");
    r->r1 = 100 * jnum(t, "model.rouge1.fmeasure");
    r->r2 = 100 * jnum(t, "model.rouge2.fmeasure");
    r->rL = 100 * jnum(t, "model.rougeL.fmeasure");
    r->bleu = jnum(t, "model.bleu.score");
    r->params = (size_t)jnum(t, "model.parameters");
    if (is_teacher) {
        r->speed_greedy = r->speed_beam = 1;
        r->exacc_mid = r->exacc_full = 0;
    } else {
        r->speed_greedy = jnum(t, "cost.model_over_baseline.greedy_inputs_per_s");
        r->speed_beam = jnum(t, "cost.model_over_baseline.beam_inputs_per_s");
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "exposure_bias"),
                                                           "exacc_err_percent");
        const cJSON *m = cJSON_GetArrayItem(ex, S->ex_mid - 1), *f = cJSON_GetArrayItem(ex, S->ex_full - 1);
        r->exacc_mid = cJSON_IsNumber(m) ? m->valuedouble : NAN;
        r->exacc_full = cJSON_IsNumber(f) ? f->valuedouble : NAN;
    }
    r->exacc_mid_len = S->ex_mid, r->exacc_full_len = S->ex_full;
    snprintf(r->gen_path, sizeof r->gen_path, "%s", gen);
    snprintf(r->dir, sizeof r->dir, "%s", model);
    cJSON_Delete(d);
    cJSON_Delete(t);
    return 0;
}

/* The training times of a distill run, from its metrics.jsonl's last training line. */
static void train_times(const char *model_dir, RowResult *r) {
    char path[800];
    pathf(path, sizeof path, "%s/metrics.jsonl", model_dir);
    FILE *f = fopen(path, "r");
    r->train_s = r->teacher_s = r->student_gen_s = r->student_s = NAN;
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        if (cJSON_GetObjectItemCaseSensitive(o, "total_student_s")) {
            r->train_s = jnum(o, "elapsed_s");
            r->teacher_s = jnum(o, "total_teacher_s");
            r->student_gen_s = jnum(o, "total_student_gen_s");
            r->student_s = jnum(o, "total_student_s");
        } else if (cJSON_GetObjectItemCaseSensitive(o, "elapsed_s")) {
            double e = jnum(o, "elapsed_s");
            if (!(e < r->train_s)) r->train_s = e;
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
}

static int row_teacher(Study *S) {
    char dir[700], path[800];
    pathf(dir, sizeof dir, "%s/rows/ref-teacher", S->out);
    pathf(path, sizeof path, "%s/row.json", dir);
    RowResult r;
    if (study_row_load(path, &r)) return -1;
    if (!r.have) {
        if (make_dirs(dir)) return -1;
        memset(&r, 0, sizeof r);
        r.have = 1;
        snprintf(r.name, sizeof r.name, "ref-teacher");
        snprintf(r.stage, sizeof r.stage, "ref");
        snprintf(r.role, sizeof r.role, "teacher");
        snprintf(r.method, sizeof r.method, "teacher");
        snprintf(r.what, sizeof r.what, "the teacher (%s), its own decoding", S->teacher);
        tt_info("study: ref-teacher: evaluating the teacher on dev and test");
        if (evaluate_model(S, dir, S->teacher, 1, &r)) return -1;
        r.train_s = r.teacher_s = r.student_gen_s = r.student_s = NAN;
        if (study_row_save(path, &r)) return -1;
    }
    return row_add(S, &r) ? 0 : tt_err("out of memory");
}

/* ---------------------------------------------------------------- students */

static void student_random(Student *s, const char *name, const ModelConfig *t, Arch arch, int d, int enc, int dec) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->cfg = *t;
    s->cfg.arch = arch;
    s->cfg.d_model = d;
    int heads = d / 32 > 0 ? d / 32 : 1;
    if (heads > t->dec_heads && t->dec_heads > 0 && d % t->dec_heads == 0) heads = t->dec_heads;
    while (d % heads) heads--;
    if (arch == ARCH_GPT2) {
        s->cfg.enc_layers = s->cfg.enc_heads = s->cfg.enc_ffn = 0;
        s->cfg.dec_layers = enc + dec;
        s->cfg.untied_lm_head = 0;
    } else {
        s->cfg.enc_layers = enc, s->cfg.enc_heads = heads, s->cfg.enc_ffn = 4 * d;
        s->cfg.dec_layers = dec;
    }
    s->cfg.dec_heads = heads, s->cfg.dec_ffn = 4 * d;
}

static void layer_list(char *buf, size_t n, int total, int keep) {
    /* keep layers spread from first to last: 0 and -1 for keep 2 */
    buf[0] = 0;
    size_t len = 0;
    for (int k = 0; k < keep; k++) {
        int l = keep == 1 ? 0 : (int)lround((double)k * (total - 1) / (keep - 1));
        len += (size_t)snprintf(buf + len, n - len, "%s%d", k ? "," : "", l);
    }
}

static void student_shrink(Student *s, const char *name, const ModelConfig *t, int keep_enc, int keep_dec) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->shrink = 1;
    s->cfg = *t;
    if (keep_enc > 0 && keep_enc < t->enc_layers) {
        layer_list(s->keep_enc, sizeof s->keep_enc, t->enc_layers, keep_enc);
        s->cfg.enc_layers = keep_enc;
    }
    layer_list(s->keep_dec, sizeof s->keep_dec, t->dec_layers, keep_dec);
    s->cfg.dec_layers = keep_dec;
}

/* Generation speed of shape c against the teacher, both forced to the same output length
 * (min = max new tokens = the median target), with the teacher's decoding, at batch 32, on
 * dev sources: the speed-up of an architecture, before anything is trained. */
static int probe_speed(Study *S, Model *teacher, const PairSet *ps, const ModelConfig *c, double *speedup) {
    Model *m = model_new(c, 7);
    if (!m) return -1;
    GenConfig gt, gs;
    int rc = gen_config_for_dir(&gt, &teacher->cfg, S->teacher);
    if (rc) {
        model_free(m);
        return -1;
    }
    gt.do_sample = 0, gt.num_return_sequences = 1;
    int L = S->tgt_median > 1 ? S->tgt_median : 2;
    gt.min_new_tokens = gt.max_new_tokens = L;
    gen_config_from_model(&gs, &m->cfg);
    int ds = gs.decoder_start_id, bos = gs.bos_id, eos = gs.eos_id, pad = gs.pad_id;
    gs = gt;
    gs.decoder_start_id = ds, gs.bos_id = bos, gs.eos_id = eos, gs.pad_id = pad;
    int B = (int)ps->n < 32 ? (int)ps->n : 32;
    int max_src = 1;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->items[i].src_len > max_src) max_src = ps->items[i].src_len;
    Generator *g[2] = {generator_new(teacher, &gt, B, max_src), generator_new(m, &gs, B, max_src)};
    double secs[2] = {0, 0};
    const int **src = malloc(sizeof(int *) * (size_t)B);
    int *len = malloc(sizeof(int) * (size_t)B);
    uint64_t *stream = malloc(sizeof(uint64_t) * (size_t)B);
    rc = g[0] && g[1] && src && len && stream ? 0 : -1;
    int rounds = S->quick ? 1 : 2;
    for (int round = -1; round < rounds && !rc; round++)
        for (size_t b0 = 0; b0 < ps->n && !rc; b0 += (size_t)B) {
            int cnt = ps->n - b0 < (size_t)B ? (int)(ps->n - b0) : B;
            for (int k = 0; k < cnt; k++)
                src[k] = ps->items[b0 + k].src, len[k] = ps->items[b0 + k].src_len, stream[k] = b0 + (size_t)k;
            for (int s = 0; s < 2 && !rc; s++) {
                const GenOutput *out;
                double t0 = tt_now_s();
                rc = generator_run(g[s], cnt, (const int *const *)src, len, stream, &out);
                if (round >= 0) secs[s] += tt_now_s() - t0;
            }
            if (round < 0) break; /* one warm-up batch */
        }
    free(src), free(len), free(stream);
    generator_free(g[0]);
    generator_free(g[1]);
    model_free(m);
    if (rc) return -1;
    *speedup = secs[1] > 0 ? secs[0] / secs[1] : 0;
    return 0;
}

static int student_write_config(Study *S, Student *s) {
    pathf(s->config_path, sizeof s->config_path, "%s/students/%s.json", S->out, s->name);
    if (file_exists(s->config_path)) return 0;
    char dir[700];
    pathf(dir, sizeof dir, "%s/students", S->out);
    if (make_dirs(dir)) return -1;
    ModelConfig c = s->cfg;
    int need = model_is_encdec(&c) ? (S->max_src > S->max_tgt ? S->max_src : S->max_tgt) : S->max_src + S->max_tgt;
    c.max_positions = need;
    return model_config_save(&c, s->config_path);
}

static size_t config_params(const ModelConfig *c) {
    Model *m = model_new(c, 1);
    size_t n = m ? m->n_params : 0;
    model_free(m);
    return n;
}

/* The candidate students: S1's encoder-decoder and decoder-only of one size, S2's shrunk
 * teachers and their random twins, and the fast student: the widest and deepest shape on a
 * ladder of narrower, shallower ones whose measured speed-up reaches the bar. */
typedef struct {
    Student ed, dec_only, shrink_dec, random_dec, shrink_encdec, random_encdec;
    int have_encdec_shrink;
} Candidates;

static int plan_students(Study *S, Candidates *cand) {
    const ModelConfig *t = &S->tcfg;
    char probe_path[700];
    pathf(probe_path, sizeof probe_path, "%s/students/probe.json", S->out);
    cJSON *saved = file_exists(probe_path) ? json_load_object(probe_path) : NULL;
    if (file_exists(probe_path) && !saved) return -1;
    int d = 0, enc = 0, dec = 0;
    double sp = 0;
    if (saved) {
        d = (int)jnum(saved, "d_model"), enc = (int)jnum(saved, "encoder_layers"), dec = (int)jnum(saved, "decoder_layers");
        sp = jnum(saved, "speedup");
        cJSON_Delete(saved);
    }
    if (d <= 0) {
        /* the ladder, from the largest shape down */
        Tokenizer *tok = NULL;
        Model *teacher = model_load(S->teacher);
        char tp[700];
        pathf(tp, sizeof tp, "%s/tokenizer.json", S->teacher);
        tok = teacher ? tokenizer_load(tp) : NULL;
        Dataset ds = {0};
        PairSet ps = {0};
        int rc = teacher && tok ? 0 : -1;
        if (!rc) rc = load_pairs_max(S, S->dv, &ds, S->quick ? 8 : 64); /* the first dev inputs are timed */
        if (!rc) rc = pairset_build(&ps, &ds, tok, S->max_src, S->max_tgt, 0);
        tt_set_threads(S->threads);
        int widths[5] = {t->d_model / 2, t->d_model * 3 / 8, t->d_model / 4, t->d_model / 8, 0};
        /* a margin over the bar: timings move by +-10% from run to run on a busy machine */
        double need = S->speedup * 1.15;
        int E = model_is_encdec(t) ? t->enc_layers : t->dec_layers, Dl = t->dec_layers;
        int best_d = 0, best_e = 0, best_l = 0, fast_d = 0, fast_e = 0, fast_l = 0;
        double best_sp = 0, fast_sp = 0;
        cJSON *log = cJSON_CreateArray();
        for (int wi = 0; widths[wi] >= 16 && !rc && !best_d; wi++) {
            int shapes[3][2] = {{E / 2 > 0 ? E / 2 : 1, Dl / 2 > 0 ? Dl / 2 : 1}, {E / 2 > 0 ? E / 2 : 1, 1}, {1, 1}};
            for (int k = 0; k < 3 && !rc; k++) {
                if (k && shapes[k][0] == shapes[k - 1][0] && shapes[k][1] == shapes[k - 1][1]) continue;
                Student s;
                student_random(&s, "probe", t, t->arch, widths[wi], shapes[k][0], shapes[k][1]);
                s.cfg.max_positions = t->max_positions;
                double x;
                rc = probe_speed(S, teacher, &ps, &s.cfg, &x);
                if (rc) break;
                tt_info("study: speed probe: d_model %d, %d+%d layers: %.2fx the teacher", widths[wi], shapes[k][0],
                        shapes[k][1], x);
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "d_model", widths[wi]);
                cJSON_AddNumberToObject(e, "encoder_layers", shapes[k][0]);
                cJSON_AddNumberToObject(e, "decoder_layers", shapes[k][1]);
                cJSON_AddNumberToObject(e, "speedup", x);
                cJSON_AddItemToArray(log, e);
                if (x >= need) {
                    best_d = widths[wi], best_e = shapes[k][0], best_l = shapes[k][1], best_sp = x;
                    break;
                }
                if (x > fast_sp) fast_sp = x, fast_d = widths[wi], fast_e = shapes[k][0], fast_l = shapes[k][1];
            }
        }
        if (!rc && !best_d && fast_d) {
            best_d = fast_d, best_e = fast_e, best_l = fast_l, best_sp = fast_sp;
            tt_info("study: no probed shape reaches %.2fx; the fastest (%.2fx) is used", need, best_sp);
        }
        if (!rc && best_d == 0) rc = tt_err("study: the teacher is too narrow to probe smaller students");
        pairset_free(&ps);
        dataset_free(&ds);
        tokenizer_free(tok);
        model_free(teacher);
        if (!rc) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "d_model", best_d);
            cJSON_AddNumberToObject(o, "encoder_layers", best_e);
            cJSON_AddNumberToObject(o, "decoder_layers", best_l);
            cJSON_AddNumberToObject(o, "speedup", best_sp);
            cJSON_AddNumberToObject(o, "forced_length", S->tgt_median);
            cJSON_AddItemToObject(o, "probed", log);
            char dir[700];
            pathf(dir, sizeof dir, "%s/students", S->out);
            char *text = cJSON_Print(o);
            cJSON_Delete(o);
            rc = make_dirs(dir) || !text || atomic_write_file(probe_path, text, strlen(text));
            free(text);
            if (rc) return -1;
        } else {
            cJSON_Delete(log);
            return -1;
        }
        d = best_d, enc = best_e, dec = best_l, sp = best_sp;
    }
    Arch ed_arch = model_is_encdec(t) ? t->arch : ARCH_MBART;
    student_random(&cand->ed, "ed", t, ed_arch, d, enc, dec);
    cand->ed.probe_speedup = sp;
    student_random(&cand->dec_only, "do", t, ARCH_GPT2, d, enc, dec);
    int Dl = t->dec_layers, E = t->enc_layers;
    int keep_dec = Dl >= 2 ? 2 : 1;
    student_shrink(&cand->shrink_dec, "shrink-dec", t, 0, keep_dec);
    student_random(&cand->random_dec, "random-dec", t, ed_arch, t->d_model, model_is_encdec(t) ? E : 0, keep_dec);
    cand->random_dec.cfg = cand->shrink_dec.cfg;
    cand->have_encdec_shrink = model_is_encdec(t) && E >= 2;
    if (cand->have_encdec_shrink) {
        student_shrink(&cand->shrink_encdec, "shrink-encdec", t, 2, keep_dec);
        student_random(&cand->random_encdec, "random-encdec", t, ed_arch, t->d_model, 2, keep_dec);
        cand->random_encdec.cfg = cand->shrink_encdec.cfg;
    }
    Student *all[6] = {&cand->ed, &cand->dec_only, &cand->random_dec, &cand->random_encdec, &cand->shrink_dec,
                       &cand->shrink_encdec};
    for (int k = 0; k < 6; k++) {
        if (k >= 3 && !model_is_encdec(t) && k != 4) continue;
        if ((k == 3 || k == 5) && !cand->have_encdec_shrink) continue;
        if (!all[k]->shrink && student_write_config(S, all[k])) return -1;
        all[k]->params = config_params(&all[k]->cfg);
    }
    return 0;
}

/* ---------------------------------------------------------------- pseudo-targets */

typedef enum { PT_BEAM, PT_SAMPLE, PT_HIGHTEMP } PtKind;
static const char *const PT_NAMES[] = {"beam", "sample", "hightemp"};

/* OUT/pts/KIND-SPLIT.jsonl, generated by the teacher when missing (K per input). */
static int pts_path(Study *S, PtKind kind, int unlabeled, char *path, size_t n) {
    const char *split = unlabeled ? "unlabeled" : "labeled";
    char dir[700], done[800], log[800];
    pathf(dir, sizeof dir, "%s/pts", S->out);
    pathf(path, n, "%s/%s-%s.jsonl", dir, PT_NAMES[kind], split);
    pathf(done, sizeof done, "%s/%s-%s.done", dir, PT_NAMES[kind], split);
    pathf(log, sizeof log, "%s/%s-%s.log", dir, PT_NAMES[kind], split);
    if (file_exists(done)) return 0;
    if (make_dirs(dir)) return -1;
    Argv a = {0};
    argv_push(&a, "generate");
    argv_push(&a, "--model"), argv_push(&a, S->teacher);
    argv_push(&a, "--input"), argv_push(&a, unlabeled ? S->unl : S->lab);
    argv_push(&a, "-o"), argv_push(&a, path);
    argv_push(&a, "--max-source-tokens"), argv_pushf(&a, "%d", S->max_src);
    if (kind == PT_BEAM) {
        if (S->deployed_beam < S->pts) argv_push(&a, "--beam"), argv_pushf(&a, "%d", S->pts);
    } else {
        argv_push(&a, "--sample"), argv_push(&a, "--beam"), argv_push(&a, "1");
        argv_push(&a, "--top-k"), argv_push(&a, "0");
        argv_push(&a, "--no-repeat-ngram"), argv_push(&a, "0");
        if (kind == PT_SAMPLE) argv_push(&a, "--top-p"), argv_push(&a, "0.95");
        argv_push(&a, "--temperature"), argv_push(&a, kind == PT_SAMPLE ? "1" : "1.5");
        argv_push(&a, "--seed"), argv_pushf(&a, "%d", kind == PT_SAMPLE ? 1 : 2);
    }
    argv_push(&a, "--num-return"), argv_pushf(&a, "%d", S->pts);
    argv_push(&a, "--threads"), argv_pushf(&a, "%d", S->threads);
    argv_push(&a, "--resume"), argv_push(&a, "--no-progress");
    if (S->src_field) argv_push(&a, "--source-field"), argv_push(&a, S->src_field);
    tt_info("study: teacher PTs: %s on the %s inputs, %d per input -> %s", PT_NAMES[kind], split, S->pts, path);
    double t0 = tt_now_s();
    int rc = study_run(&a, log);
    argv_free(&a);
    if (rc) return -1;
    char msg[64];
    snprintf(msg, sizeof msg, "%.1f\n", tt_now_s() - t0);
    return atomic_write_file(done, msg, strlen(msg));
}

/* ---------------------------------------------------------------- training rows */

typedef struct {
    char name[64], stage[8], method[96], what[256], same_as[64];
    const Student *st;
    Argv extra; /* method, objective and data flags */
    int seed;
    const char *data; /* gold pairs (default: labeled) */
    int other_family; /* the student is not of the teacher's family: tutor train (fine-tuning) */
} Spec;

static void spec_init(Spec *p, const char *name, const char *stage, const Student *st, const char *method,
                      const char *what) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    snprintf(p->method, sizeof p->method, "%s", method);
    snprintf(p->what, sizeof p->what, "%s", what);
    p->st = st;
    p->seed = 1;
}

static void spec_free(Spec *p) { argv_free(&p->extra); }

/* The flags every training command of the study shares: a few updates in quick mode,
 * else a wall-time cap with evaluation every eval_every and a checkpoint every 100 updates;
 * a constant learning rate after warm-up; no early stopping; resumable. */
static void schedule_flags(const Study *S, Argv *a, int quick_steps, double minutes, int eval_every, const char *lr,
                           const char *warmup, int threads) {
    if (S->quick) {
        int every = quick_steps / 2 > 0 ? quick_steps / 2 : 1;
        argv_push(a, "--max-steps"), argv_pushf(a, "%d", quick_steps);
        argv_push(a, "--batch-tokens"), argv_push(a, "1024");
        argv_push(a, "--eval-every"), argv_pushf(a, "%d", every);
        argv_push(a, "--save-every"), argv_pushf(a, "%d", every);
    } else {
        argv_push(a, "--max-steps"), argv_push(a, "100000000");
        argv_push(a, "--max-minutes"), argv_pushf(a, "%.2f", minutes);
        argv_push(a, "--eval-every"), argv_pushf(a, "%d", eval_every);
        argv_push(a, "--save-every"), argv_push(a, "100");
    }
    argv_push(a, "--lr"), argv_push(a, lr);
    argv_push(a, "--warmup"), argv_push(a, S->quick ? "2" : warmup);
    argv_push(a, "--schedule"), argv_push(a, "constant");
    argv_push(a, "--patience"), argv_push(a, "0");
    argv_push(a, "--threads"), argv_pushf(a, "%d", threads);
    argv_push(a, "--no-progress"), argv_push(a, "--resume");
}

static void train_args(const Study *S, const Spec *p, const char *model_dir, Argv *a) {
    if (p->other_family) {
        argv_push(a, "train");
        argv_push(a, "--tokenizer"), argv_pushf(a, "%s/tokenizer.json", S->teacher);
    } else {
        argv_push(a, "distill");
        argv_push(a, "--teacher"), argv_push(a, S->teacher);
    }
    argv_push(a, "--data"), argv_push(a, p->data ? p->data : S->lab);
    argv_push(a, "--dev"), argv_push(a, S->dv);
    argv_push(a, "-o"), argv_push(a, model_dir);
    int dre = S->quick ? 8 : 300;
    if (dre > S->n_dev) dre = S->n_dev;
    argv_push(a, "--dev-rouge-examples"), argv_pushf(a, "%d", dre);
    if (S->quick) argv_push(a, "--max-dev-examples"), argv_pushf(a, "%d", dre);
    argv_push(a, "--max-source-tokens"), argv_pushf(a, "%d", S->max_src);
    argv_push(a, "--max-target-tokens"), argv_pushf(a, "%d", S->max_tgt);
    argv_push(a, "--log-every"), argv_push(a, S->quick ? "2" : "50");
    /* pretrained layers (shrink) move gently, random ones need a larger step */
    schedule_flags(S, a, S->quick_steps, S->row_min, 200, p->st->shrink ? "3e-4" : p->st->init_dir[0] ? "5e-4" : "1e-3",
                   p->st->shrink ? "100" : "200", S->threads / S->jobs > 0 ? S->threads / S->jobs : 1);
    argv_push(a, "--seed"), argv_pushf(a, "%d", p->seed);
    if (p->st->init_dir[0]) {
        argv_push(a, "--init"), argv_push(a, p->st->init_dir);
    } else if (p->st->shrink) {
        argv_push(a, "--keep-decoder-layers"), argv_push(a, p->st->keep_dec);
        if (p->st->keep_enc[0]) argv_push(a, "--keep-encoder-layers"), argv_push(a, p->st->keep_enc);
    } else {
        argv_push(a, "--config"), argv_push(a, p->st->config_path);
    }
    common_fields(S, a);
    if (!p->other_family) argv_append(a, &p->extra);
}

/* Trains the specs (up to --jobs at once), evaluates each, records their rows. Rows with a
 * row.json are kept as they are; a spec with same_as becomes a copy of that row's numbers. */
static int run_specs(Study *S, Spec *specs, int n) {
    Argv *cmds = calloc((size_t)(n ? n : 1), sizeof(Argv));
    char **logs = calloc((size_t)(n ? n : 1), sizeof(char *));
    int *to_run = calloc((size_t)(n ? n : 1), sizeof(int));
    int rc = cmds && logs && to_run ? 0 : tt_err("out of memory"), n_to_run = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (specs[i].same_as[0]) continue;
        char dir[700], path[800], model[800], done[800];
        pathf(dir, sizeof dir, "%s/rows/%s", S->out, specs[i].name);
        pathf(path, sizeof path, "%s/row.json", dir);
        pathf(model, sizeof model, "%s/model", dir);
        pathf(done, sizeof done, "%s/train.done", dir);
        if (file_exists(path) || file_exists(done)) continue;
        if (make_dirs(dir)) {
            rc = -1;
            break;
        }
        train_args(S, &specs[i], model, &cmds[n_to_run]);
        char *line = argv_join(&cmds[n_to_run]);
        char cmdp[800];
        pathf(cmdp, sizeof cmdp, "%s/command.txt", dir);
        if (line) {
            char *full = malloc(strlen(line) + 16);
            if (full) {
                sprintf(full, "tutor %s\n", line);
                atomic_write_file(cmdp, full, strlen(full));
                free(full);
            }
            free(line);
        }
        {
            cJSON *ex = cJSON_CreateArray();
            for (int k = 0; k < specs[i].extra.n; k++) cJSON_AddItemToArray(ex, cJSON_CreateString(specs[i].extra.v[k]));
            char *t = cJSON_Print(ex);
            cJSON_Delete(ex);
            char ep[800];
            pathf(ep, sizeof ep, "%s/extra.json", dir);
            if (!t || atomic_write_file(ep, t, strlen(t))) rc = -1;
            free(t);
            if (rc) break;
        }
        char lp[800];
        pathf(lp, sizeof lp, "%s/log.txt", dir);
        logs[n_to_run] = strdup(lp);
        to_run[n_to_run++] = i;
    }
    if (!rc && n_to_run) {
        char names[1024] = "";
        size_t len = 0;
        for (int k = 0; k < n_to_run; k++)
            len += (size_t)snprintf(names + len, len < sizeof names ? sizeof names - len : 0, "%s%s", k ? ", " : "",
                                    specs[to_run[k]].name);
        if (S->quick)
            tt_info("study: training %s (%d steps each)", names, S->quick_steps);
        else
            tt_info("study: training %s (%.1f min each, %d at once)", names, S->row_min, S->jobs);
        int *ok = calloc((size_t)n_to_run, sizeof(int));
        char *errs = calloc((size_t)n_to_run, 256);
        rc = ok && errs ? study_run_each(cmds, (const char *const *)logs, n_to_run, S->jobs, ok, errs, 256)
                        : tt_err("out of memory");
        /* every training that finished is marked; one that failed is recorded as failed (its
         * row has no numbers; delete its folder to run it again) and the study goes on */
        for (int k = 0; k < n_to_run && !rc; k++) {
            if (ok[k]) continue;
            RowResult f;
            memset(&f, 0, sizeof f);
            f.have = f.failed = 1;
            snprintf(f.name, sizeof f.name, "%s", specs[to_run[k]].name);
            snprintf(f.stage, sizeof f.stage, "%s", specs[to_run[k]].stage);
            snprintf(f.role, sizeof f.role, "student");
            snprintf(f.method, sizeof f.method, "%s", specs[to_run[k]].method);
            snprintf(f.what, sizeof f.what, "%s", specs[to_run[k]].what);
            snprintf(f.error, sizeof f.error, "%s", errs + (size_t)k * 256);
            row_numbers_unknown(&f);
            char rp[800];
            pathf(rp, sizeof rp, "%s/rows/%s/row.json", S->out, specs[to_run[k]].name);
            tt_info("study: %s failed (%s); recorded, the study goes on", f.name, f.error);
            if (study_row_save(rp, &f)) rc = -1;
        }
        for (int k = 0; k < n_to_run; k++) {
            char done[800], model[800];
            pathf(model, sizeof model, "%s/rows/%s/model/model.safetensors", S->out, specs[to_run[k]].name);
            pathf(done, sizeof done, "%s/rows/%s/train.done", S->out, specs[to_run[k]].name);
            if (rc || !ok[k] || !file_exists(model)) continue;
            if (specs[to_run[k]].other_family) {
                /* tutor train writes its own decoding; the study's students decode as the teacher */
                char src[800], dst[800];
                pathf(src, sizeof src, "%s/generation_config.json", S->teacher);
                pathf(dst, sizeof dst, "%s/rows/%s/model/generation_config.json", S->out, specs[to_run[k]].name);
                size_t n = 0;
                char *t = file_exists(src) ? read_file_text(src, &n) : NULL;
                if (t && atomic_write_file(dst, t, n)) rc = -1;
                free(t);
            }
            if (!rc) atomic_write_file(done, "done\n", 5);
        }
        free(ok);
        free(errs);
    }
    for (int i = 0; i < n && !rc; i++) {
        char dir[700], path[800], model[800];
        pathf(dir, sizeof dir, "%s/rows/%s", S->out, specs[i].name);
        pathf(path, sizeof path, "%s/row.json", dir);
        pathf(model, sizeof model, "%s/model", dir);
        RowResult r;
        if (specs[i].same_as[0]) {
            const RowResult *o = row_find(S, specs[i].same_as);
            if (!o) {
                rc = tt_err("study: row %s refers to %s, which has no result", specs[i].name, specs[i].same_as);
                break;
            }
            r = *o;
            snprintf(r.name, sizeof r.name, "%s", specs[i].name);
            snprintf(r.stage, sizeof r.stage, "%s", specs[i].stage);
            snprintf(r.method, sizeof r.method, "%s", specs[i].method);
            snprintf(r.what, sizeof r.what, "%s", specs[i].what);
            snprintf(r.same_as, sizeof r.same_as, "%s", o->same_as[0] ? o->same_as : o->name);
            if (!row_add(S, &r)) rc = tt_err("out of memory");
            continue;
        }
        if ((rc = study_row_load(path, &r))) break;
        if (!r.have) {
            memset(&r, 0, sizeof r);
            r.have = 1;
            snprintf(r.name, sizeof r.name, "%s", specs[i].name);
            snprintf(r.stage, sizeof r.stage, "%s", specs[i].stage);
            snprintf(r.role, sizeof r.role, "student");
            snprintf(r.method, sizeof r.method, "%s", specs[i].method);
            snprintf(r.what, sizeof r.what, "%s", specs[i].what);
            r.seed = specs[i].seed;
            tt_info("study: %s: evaluating on dev and test", specs[i].name);
            if (evaluate_model(S, dir, model, 0, &r)) {
                if (study_interrupted()) {
                    rc = -1;
                    break;
                }
                /* an evaluation that fails is recorded like a failed training (delete the
                 * row's row.json to evaluate it again) and the study goes on */
                r.failed = 1;
                snprintf(r.error, sizeof r.error, "%s", tt_errmsg());
                row_numbers_unknown(&r);
                tt_info("study: %s failed (%s); recorded, the study goes on", r.name, r.error);
            } else {
                train_times(model, &r);
            }
            if ((rc = study_row_save(path, &r))) break;
        }
        if (!row_add(S, &r)) rc = tt_err("out of memory");
        else if (!r.failed)
            tt_info("study: %s: dev ROUGE-L %.2f, test ROUGE-L %.2f, %.1fx the teacher's speed (%s)", r.name,
                    r.dev_rougeL, r.rL, S->deployed_beam > 1 ? r.speed_beam : r.speed_greedy, r.method);
    }
    for (int k = 0; k < n_to_run; k++) {
        argv_free(&cmds[k]);
        free(logs[k]);
    }
    free(cmds);
    free(logs);
    free(to_run);
    return rc;
}

static double row_speed(const Study *S, const RowResult *r) {
    return S->deployed_beam > 1 ? r->speed_beam : r->speed_greedy;
}

/* The best of the named rows by dev ROUGE-L (first on ties). */
static int best_of(const Study *S, const char *const *names, int n) {
    int best = -1;
    double b = -1;
    for (int k = 0; k < n; k++) {
        const RowResult *r = row_find(S, names[k]);
        if (r && isfinite(r->dev_rougeL) && r->dev_rougeL > b + 1e-9) b = r->dev_rougeL, best = k;
    }
    return best;
}

static void decide(Study *S, const char *stage, const char *question, const char *const *names,
                   const char *const *labels, int n, int winner, const char *paper) {
    char buf[1536];
    size_t len = 0;
    for (int k = 0; k < n; k++) {
        const RowResult *r = row_find(S, names[k]);
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s %.2f", k ? ", " : "", labels[k],
                                r ? r->dev_rougeL : NAN);
        if (len >= sizeof buf) break;
    }
    /* a winner by less than 0.01 ROUGE-L is a tie: nothing is decided */
    int tie = winner < 0;
    const RowResult *w = winner >= 0 ? row_find(S, names[winner]) : NULL;
    for (int k = 0; k < n && w; k++) {
        const RowResult *r = row_find(S, names[k]);
        if (k != winner && r && fabs(r->dev_rougeL - w->dev_rougeL) < 0.01) tie = 1;
    }
    decision(S, "| %s | %s | %s | **%s** | %s | %s |", stage, question, buf, winner >= 0 ? labels[winner] : "-", paper,
             tie ? "tie (undecided)" : strstr(labels[winner], paper) ? "yes" : "no");
}

/* ---------------------------------------------------------------- the stages */

typedef struct {
    const Student *st; /* the student from S3 on */
    char kd_method[32];  /* S3's winning KD (for S4's KD arm) */
    int s4_kd;           /* S4: 1 word-level KD, 0 fine-tuning on PTs */
    int s5_unl;          /* S5: PTs for the unlabeled inputs too */
    int s6_k;            /* S6: PTs per input */
    PtKind s7;           /* S7: how PTs are made */
    int s8;              /* S8: 0 teacher PTs, 1 student PTs, 2 Joint-Teaching */
    char ft_row[64];     /* the fine-tuned student */
    char w4[64], w5[64], w6[64], w7[64], w8[64]; /* the winning row of each stage */
} Plan;

static void add_pts(Study *S, Spec *p, const Plan *P, PtKind kind, int unl, int k, int *rc) {
    char path[800];
    if (*rc) return;
    if (pts_path(S, kind, 0, path, sizeof path)) {
        *rc = -1;
        return;
    }
    argv_push(&p->extra, "--pt"), argv_push(&p->extra, path);
    if (unl) {
        if (pts_path(S, kind, 1, path, sizeof path)) {
            *rc = -1;
            return;
        }
        argv_push(&p->extra, "--pt"), argv_push(&p->extra, path);
    }
    argv_push(&p->extra, "--pt-per-input"), argv_pushf(&p->extra, "%d", k);
    (void)P;
}

/* Trains and evaluates one stage's rows (unless *rc already holds an error), frees them,
 * and decides the stage on dev: the winner's index, or -1 (with *rc set on an error). */
static int stage_run(Study *S, Spec *sp, int n, int *rc, const char *stage, const char *question,
                     const char *const *labels, const char *paper) {
    if (!*rc) *rc = run_specs(S, sp, n);
    char names[8][64];
    const char *np[8];
    for (int k = 0; k < n && k < 8; k++) {
        snprintf(names[k], sizeof names[k], "%s", sp[k].name);
        np[k] = names[k];
        spec_free(&sp[k]);
    }
    if (*rc) return -1;
    int win = best_of(S, np, n);
    decide(S, stage, question, np, labels, n, win, paper);
    return win;
}

static int fast_enough(const Study *S, const RowResult *r) { return r && row_speed(S, r) >= S->speedup; }

/* No --teacher: one is trained the way the shipped debdesc teacher was (models/debdesc-
 * teacher/README.md): a byte-level BPE tokenizer on the labeled and unlabeled text, denoising
 * pretraining on both (60% of --teacher-hours), fine-tuning on the labeled pairs with dev
 * ROUGE-L selection (40%), then its decoding chosen on dev (tutor tune). Every stage resumes. */
static int train_teacher(Study *S) {
    char dir[700], tok[800], pre[800], fin[800], log[800], done[800];
    pathf(dir, sizeof dir, "%s/teacher", S->out);
    pathf(tok, sizeof tok, "%s/tokenizer.json", dir);
    pathf(pre, sizeof pre, "%s/pretrain", dir);
    pathf(fin, sizeof fin, "%s/model", dir);
    pathf(log, sizeof log, "%s/log.txt", dir);
    pathf(done, sizeof done, "%s/done", dir);
    snprintf(S->teacher_dir, sizeof S->teacher_dir, "%s", fin);
    S->teacher = S->teacher_dir;
    if (file_exists(done)) return 0;
    if (make_dirs(dir)) return -1;
    double pre_min = S->teacher_hours * 60 * 0.6, ft_min = S->teacher_hours * 60 * 0.4;
    tt_info("study: training a teacher: tokenizer (%d ids), %.0f min of denoising pretraining, %.0f min of "
            "fine-tuning, decoding tuned on dev (%s)",
            S->vocab, pre_min, ft_min, dir);
    int rc = 0;
    if (!file_exists(tok)) {
        Argv a = {0};
        argv_push(&a, "tokenizer"), argv_push(&a, "train");
        argv_push(&a, "--data"), argv_push(&a, S->lab), argv_push(&a, "--data"), argv_push(&a, S->unl);
        if (S->src_field) argv_push(&a, "--field"), argv_push(&a, S->src_field);
        if (S->tgt_field) argv_push(&a, "--field"), argv_push(&a, S->tgt_field);
        argv_push(&a, "--vocab"), argv_pushf(&a, "%d", S->vocab);
        argv_push(&a, "-o"), argv_push(&a, tok);
        rc = study_run(&a, log);
        argv_free(&a);
        if (rc) return -1;
    }
    char pre_done[800];
    pathf(pre_done, sizeof pre_done, "%s/pretrain.done", dir);
    if (!file_exists(pre_done)) {
        Argv a = {0};
        argv_push(&a, "pretrain");
        argv_push(&a, "--tokenizer"), argv_push(&a, tok);
        argv_push(&a, "--data"), argv_push(&a, S->lab), argv_push(&a, "--data"), argv_push(&a, S->unl);
        if (S->src_field) argv_push(&a, "--source-field"), argv_push(&a, S->src_field);
        argv_push(&a, "--d-model"), argv_push(&a, S->quick ? "64" : "256");
        argv_push(&a, "--layers"), argv_push(&a, S->quick ? "2" : "4");
        argv_push(&a, "--heads"), argv_push(&a, S->quick ? "2" : "4");
        argv_push(&a, "--ffn"), argv_push(&a, S->quick ? "128" : "1024");
        argv_push(&a, "--dropout"), argv_push(&a, "0.1");
        argv_push(&a, "--max-source-tokens"), argv_push(&a, "128");
        if (S->quick) argv_push(&a, "--heldout"), argv_push(&a, "8");
        else argv_push(&a, "--batch-tokens"), argv_push(&a, "8192"), argv_push(&a, "--max-batch"), argv_push(&a, "256");
        schedule_flags(S, &a, 4, pre_min, 300, "1e-3", "300", S->threads);
        argv_push(&a, "-o"), argv_push(&a, pre);
        rc = study_run(&a, log);
        argv_free(&a);
        if (rc || atomic_write_file(pre_done, "done\n", 5)) return -1;
    }
    char ft_done[800];
    pathf(ft_done, sizeof ft_done, "%s/finetune.done", dir);
    if (!file_exists(ft_done)) {
        Argv a = {0};
        argv_push(&a, "train");
        argv_push(&a, "--init"), argv_push(&a, pre);
        argv_push(&a, "--data"), argv_push(&a, S->lab), argv_push(&a, "--dev"), argv_push(&a, S->dv);
        common_fields(S, &a);
        int dre = S->n_dev < 300 ? S->n_dev : 300;
        argv_push(&a, "--dev-rouge-examples"), argv_pushf(&a, "%d", dre);
        if (S->quick) argv_push(&a, "--max-dev-examples"), argv_pushf(&a, "%d", dre);
        schedule_flags(S, &a, 6, ft_min, 250, "5e-4", "200", S->threads);
        argv_push(&a, "-o"), argv_push(&a, fin);
        rc = study_run(&a, log);
        argv_free(&a);
        if (rc || atomic_write_file(ft_done, "done\n", 5)) return -1;
    }
    {
        Argv a = {0};
        argv_push(&a, "tune");
        argv_push(&a, "--model"), argv_push(&a, fin);
        argv_push(&a, "--data"), argv_push(&a, S->dv);
        common_fields(S, &a);
        argv_push(&a, "--max-examples"), argv_pushf(&a, "%d", S->quick ? 8 : 500);
        argv_push(&a, "--beams"), argv_push(&a, S->quick ? "1,2" : "1,4,6");
        argv_push(&a, "--length-penalties"), argv_push(&a, "1.0");
        argv_push(&a, "--no-repeat"), argv_push(&a, "0,3");
        argv_push(&a, "--threads"), argv_pushf(&a, "%d", S->threads);
        rc = study_run(&a, log);
        argv_free(&a);
        if (rc) return -1;
    }
    return atomic_write_file(done, "done\n", 5);
}

/* The fast shape pretrained by denoising (tutor pretrain: text infilling and gap sentences
 * mixed, the teacher's recipe) on the labeled and unlabeled sources, for as long as one row
 * trains: the paper's students start pretrained. */
static int pretrain_student(Study *S, Student *st) {
    char dir[700], done[800], log[800];
    pathf(dir, sizeof dir, "%s/students/pretrained", S->out);
    pathf(done, sizeof done, "%s/students/pretrained.done", S->out);
    pathf(log, sizeof log, "%s/students/pretrained.log", S->out);
    snprintf(st->init_dir, sizeof st->init_dir, "%s", dir);
    if (file_exists(done)) return 0;
    Argv a = {0};
    argv_push(&a, "pretrain");
    argv_push(&a, "--config"), argv_push(&a, st->config_path);
    argv_push(&a, "--tokenizer"), argv_pushf(&a, "%s/tokenizer.json", S->teacher);
    argv_push(&a, "--data"), argv_push(&a, S->lab);
    argv_push(&a, "--data"), argv_push(&a, S->unl);
    if (S->src_field) argv_push(&a, "--source-field"), argv_push(&a, S->src_field);
    /* a decoder-only model reads the noised text and its reconstruction in one sequence */
    int pre_src = model_is_encdec(&st->cfg) ? S->max_src : (S->max_src + S->max_tgt) / 2;
    argv_push(&a, "--max-source-tokens"), argv_pushf(&a, "%d", pre_src);
    argv_push(&a, "-o"), argv_push(&a, dir);
    if (S->quick) argv_push(&a, "--heldout"), argv_push(&a, "8");
    schedule_flags(S, &a, S->quick_steps, S->row_min, 300, "1e-3", "300", S->threads);
    tt_info("study: pretraining the fast student by denoising on the labeled and unlabeled sources (%s)",
            S->quick ? "a few steps" : "one row's time");
    double t0 = tt_now_s();
    int rc = study_run(&a, log);
    argv_free(&a);
    if (rc) return -1;
    char msg[64];
    snprintf(msg, sizeof msg, "%.1f\n", tt_now_s() - t0);
    return atomic_write_file(done, msg, strlen(msg));
}

static int run_study(Study *S) {
    Candidates C;
    memset(&C, 0, sizeof C);
    Plan P;
    memset(&P, 0, sizeof P);
    int rc = 0;
    if (row_lead(S) || row_teacher(S)) return -1;
    if (plan_students(S, &C)) return -1;
    char ed_what[256], do_what[256];
    snprintf(ed_what, sizeof ed_what, "encoder-decoder d_model %d, %d+%d layers, random init, fine-tuned on gold",
             C.ed.cfg.d_model, C.ed.cfg.enc_layers, C.ed.cfg.dec_layers);
    snprintf(do_what, sizeof do_what, "decoder-only d_model %d, %d layers, random init, fine-tuned on gold",
             C.dec_only.cfg.d_model, C.dec_only.cfg.dec_layers);

    /* S1 and S2: which student */
    const char *cand_names[7];
    const Student *cand_st[7];
    int same_family[7];
    int n_cand = 0;
    {
        Spec sp[7];
        int n = 0;
        int ed_do = model_is_encdec(&S->tcfg);
        static Student pre;
        /* the teacher's family always (the student candidate), the other one for S1 */
        if (ed_do || stage_on(S, "S1")) spec_init(&sp[n++], "S1-ed", "S1", &C.ed, "fine-tune", ed_what);
        if (!ed_do || stage_on(S, "S1")) spec_init(&sp[n++], "S1-do", "S1", &C.dec_only, "fine-tune", do_what);
        if (stage_on(S, "S2")) {
            char w[256];
            snprintf(w, sizeof w, "the teacher shrunk to decoder layers %s (%zu parameters), fine-tuned on gold",
                     C.shrink_dec.keep_dec, C.shrink_dec.params);
            spec_init(&sp[n++], "S2-shrink-dec", "S2", &C.shrink_dec, "fine-tune", w);
            snprintf(w, sizeof w, "random init, the shape of S2-shrink-dec, fine-tuned on gold");
            spec_init(&sp[n++], "S2-random-dec", "S2", &C.random_dec, "fine-tune", w);
            /* the fast shape of the teacher's family, pretrained (not in the paper's S2, whose
             * students all start pretrained) */
            pre = ed_do ? C.ed : C.dec_only;
            snprintf(pre.name, sizeof pre.name, "pretrained");
            if (pretrain_student(S, &pre)) return -1;
            ModelConfig pc;
            char pcp[800];
            pathf(pcp, sizeof pcp, "%s/config.json", pre.init_dir);
            if (model_config_load(&pc, pcp)) return -1;
            if (pc.vocab_size != S->tcfg.vocab_size) {
                /* pretraining adds <mask> to a tokenizer without one: no longer the teacher's */
                decision(S, "| S2 | the fast shape: pretrained or random init | not run: the teacher's tokenizer has no "
                            "<mask> (pretraining made %d ids, the teacher has %d) | - | pretrained | - |",
                         pc.vocab_size, S->tcfg.vocab_size);
            } else {
                snprintf(w, sizeof w, "the fast shape (%s) pretrained by denoising on the labeled and unlabeled "
                         "sources, then fine-tuned on gold", ed_do ? "S1-ed" : "S1-do");
                spec_init(&sp[n++], "S2-pretrained", "S2", &pre, "fine-tune", w);
            }
            if (C.have_encdec_shrink) {
                snprintf(w, sizeof w, "the teacher shrunk to encoder layers %s, decoder layers %s, fine-tuned on gold",
                         C.shrink_encdec.keep_enc, C.shrink_encdec.keep_dec);
                spec_init(&sp[n++], "S2-shrink-encdec", "S2", &C.shrink_encdec, "fine-tune", w);
                spec_init(&sp[n++], "S2-random-encdec", "S2", &C.random_encdec, "fine-tune",
                          "random init, the shape of S2-shrink-encdec, fine-tuned on gold");
            }
        }
        for (int k = 0; k < n; k++) {
            argv_push(&sp[k].extra, "--method"), argv_push(&sp[k].extra, "ft");
            sp[k].other_family = model_is_encdec(&sp[k].st->cfg) != model_is_encdec(&S->tcfg);
        }
        rc = run_specs(S, sp, n);
        for (int k = 0; k < n; k++) {
            cand_names[n_cand] = sp[k].name[0] ? strdup(sp[k].name) : NULL;
            same_family[n_cand] = !sp[k].other_family;
            cand_st[n_cand++] = sp[k].st;
            spec_free(&sp[k]);
        }
        if (rc) goto done;
    }
    {
        /* S1 decision on quality, then the student: the best fast enough */
        const char *s1[2] = {"S1-ed", "S1-do"}, *l1[2] = {"encoder-decoder", "decoder-only"};
        if (stage_on(S, "S1")) decide(S, "S1", "encoder-decoder or decoder-only student", s1, l1, 2, best_of(S, s1, 2), "encoder-decoder");
        if (row_find(S, "S2-shrink-dec")) {
            const char *s2[2] = {"S2-shrink-dec", "S2-random-dec"}, *l2[2] = {"shrink", "random"};
            decide(S, "S2", "shrink init or random init (decoder layers removed)", s2, l2, 2, best_of(S, s2, 2), "shrink");
            if (row_find(S, "S2-shrink-encdec")) {
                const char *s2b[2] = {"S2-shrink-encdec", "S2-random-encdec"};
                decide(S, "S2", "shrink init or random init (encoder and decoder layers removed)", s2b, l2, 2,
                       best_of(S, s2b, 2), "shrink");
            }
        }
        if (row_find(S, "S2-pretrained")) {
            const char *s2c[2] = {"S2-pretrained", model_is_encdec(&S->tcfg) ? "S1-ed" : "S1-do"};
            const char *l2c[2] = {"pretrained", "random"};
            decide(S, "S2", "the fast shape: pretrained (denoising) or random init", s2c, l2c, 2, best_of(S, s2c, 2),
                   "pretrained");
        }
        int best = -1;
        double b = -1;
        for (int k = 0; k < n_cand; k++) {
            const RowResult *r = row_find(S, cand_names[k]);
            if (fast_enough(S, r) && same_family[k] && r->dev_rougeL > b) b = r->dev_rougeL, best = k;
        }
        if (best < 0) {
            /* nothing fast enough after training: the fastest */
            double fs = -1;
            for (int k = 0; k < n_cand; k++) {
                const RowResult *r = row_find(S, cand_names[k]);
                if (r && same_family[k] && row_speed(S, r) > fs) fs = row_speed(S, r), best = k;
            }
            decision(S, "| S1/S2 | the student from S3 on | no candidate reaches %.1fx on test | **%s** (fastest, "
                        "%.2fx) | - | - |", S->speedup, cand_names[best], fs);
        } else {
            const RowResult *r = row_find(S, cand_names[best]);
            decision(S, "| S1/S2 | the student from S3 on (>= %.1fx the teacher's speed) | %s: dev ROUGE-L %.2f, %.2fx | **%s** | - | - |",
                     S->speedup, cand_names[best], r->dev_rougeL, row_speed(S, r), cand_names[best]);
        }
        P.st = cand_st[best];
        snprintf(P.ft_row, sizeof P.ft_row, "%s", cand_names[best]);
    }
    const Student *st = P.st;

    /* S3: the objective on gold */
    snprintf(P.kd_method, sizeof P.kd_method, "kd");
    if (stage_on(S, "S3")) {
        Spec sp[4];
        spec_init(&sp[0], "S3-ft", "S3", st, "fine-tune", "the student fine-tuned on gold");
        snprintf(sp[0].same_as, sizeof sp[0].same_as, "%s", P.ft_row);
        spec_init(&sp[1], "S3-kd", "S3", st, "word-level KD", "word-level KD (forward KL) on gold");
        argv_push(&sp[1].extra, "--method"), argv_push(&sp[1].extra, "kd");
        spec_init(&sp[2], "S3-noisy-kd", "S3", st, "noisy KD", "word-level KD with the teacher's dropout on, gold");
        argv_push(&sp[2].extra, "--method"), argv_push(&sp[2].extra, "noisy-kd");
        spec_init(&sp[3], "S3-attention-kd", "S3", st, "attention-relation KD",
                  "word-level KD + attention-relation KD (MiniLM v2), gold");
        argv_push(&sp[3].extra, "--method"), argv_push(&sp[3].extra, "attention-kd");
        const char *l3[4] = {"fine-tune", "word-level KD", "noisy KD", "attention-relation KD"};
        int w = stage_run(S, sp, 4, &rc, "S3", "objective on gold", l3, "word-level KD");
        if (rc) goto done;
        const char *const m3[4] = {"kd", "kd", "noisy-kd", "attention-kd"};
        snprintf(P.kd_method, sizeof P.kd_method, "%s", w > 0 ? m3[w] : "kd");
    }

    /* S4: one teacher PT per labeled input */
    P.s4_kd = 1;
    if (stage_on(S, "S4")) {
        Spec sp[2];
        spec_init(&sp[0], "S4-ft-pt", "S4", st, "fine-tune + PTs",
                  "fine-tuning on gold + one beam PT per labeled input (sequence-level KD)");
        argv_push(&sp[0].extra, "--method"), argv_push(&sp[0].extra, "ft");
        char w[256];
        snprintf(w, sizeof w, "%s on gold + one beam PT per labeled input", P.kd_method);
        spec_init(&sp[1], "S4-kd-pt", "S4", st, "word-level KD + PTs", w);
        argv_push(&sp[1].extra, "--method"), argv_push(&sp[1].extra, P.kd_method);
        for (int k = 0; k < 2; k++) add_pts(S, &sp[k], &P, PT_BEAM, 0, 1, &rc);
        const char *l4[2] = {"fine-tune", "word-level KD"};
        int win = stage_run(S, sp, 2, &rc, "S4", "with one PT per labeled input: fine-tune or word-level KD", l4,
                            "word-level KD");
        if (rc) goto done;
        P.s4_kd = win != 0;
        snprintf(P.w4, sizeof P.w4, "%s", win == 0 ? "S4-ft-pt" : "S4-kd-pt");
    }
    const char *method = P.s4_kd ? P.kd_method : "ft";
    const char *mlabel = P.s4_kd ? "word-level KD" : "fine-tune";

    /* S5: PTs for the unlabeled inputs too */
    P.s5_unl = 1;
    if (stage_on(S, "S5")) {
        Spec sp[2];
        spec_init(&sp[0], "S5-labeled", "S5", st, mlabel, "one beam PT per labeled input");
        if (P.w4[0]) snprintf(sp[0].same_as, sizeof sp[0].same_as, "%s", P.w4);
        else argv_push(&sp[0].extra, "--method"), argv_push(&sp[0].extra, method), add_pts(S, &sp[0], &P, PT_BEAM, 0, 1, &rc);
        spec_init(&sp[1], "S5-labeled-unlabeled", "S5", st, mlabel, "one beam PT per labeled and unlabeled input");
        argv_push(&sp[1].extra, "--method"), argv_push(&sp[1].extra, method);
        add_pts(S, &sp[1], &P, PT_BEAM, 1, 1, &rc);
        const char *l5[2] = {"labeled", "labeled + unlabeled"};
        int win = stage_run(S, sp, 2, &rc, "S5", "PTs for the labeled inputs only, or the unlabeled too", l5,
                            "labeled + unlabeled");
        if (rc) goto done;
        P.s5_unl = win != 0;
        snprintf(P.w5, sizeof P.w5, "%s", win == 0 ? "S5-labeled" : "S5-labeled-unlabeled");
    }

    /* S6: one or K PTs per input */
    P.s6_k = S->pts;
    if (stage_on(S, "S6")) {
        Spec sp[2];
        char w[256];
        snprintf(w, sizeof w, "one beam PT per input (%s)", P.s5_unl ? "labeled + unlabeled" : "labeled");
        spec_init(&sp[0], "S6-one", "S6", st, mlabel, w);
        if (P.w5[0]) snprintf(sp[0].same_as, sizeof sp[0].same_as, "%s", P.w5);
        else argv_push(&sp[0].extra, "--method"), argv_push(&sp[0].extra, method), add_pts(S, &sp[0], &P, PT_BEAM, P.s5_unl, 1, &rc);
        snprintf(w, sizeof w, "%d beam PTs per input (the K best), epoch e on the (e mod K)-th", S->pts);
        spec_init(&sp[1], "S6-k", "S6", st, mlabel, w);
        argv_push(&sp[1].extra, "--method"), argv_push(&sp[1].extra, method);
        add_pts(S, &sp[1], &P, PT_BEAM, P.s5_unl, S->pts, &rc);
        const char *l6[2] = {"one", "K"};
        int win = stage_run(S, sp, 2, &rc, "S6", "one or K PTs per input", l6, "K");
        if (rc) goto done;
        P.s6_k = win == 0 ? 1 : S->pts;
        snprintf(P.w6, sizeof P.w6, "%s", win == 0 ? "S6-one" : "S6-k");
    }

    /* S7: beam, sampling or high-temperature sampling */
    P.s7 = PT_SAMPLE;
    if (stage_on(S, "S7")) {
        Spec sp[3];
        const char *names[3] = {"S7-beam", "S7-sample", "S7-hightemp"};
        const char *whats[3] = {"beam search PTs", "nucleus sampling PTs (p 0.95, T 1)", "high-temperature sampling PTs (T 1.5)"};
        for (int k = 0; k < 3; k++) {
            char w[256];
            snprintf(w, sizeof w, "%s, %d per input", whats[k], P.s6_k);
            spec_init(&sp[k], names[k], "S7", st, mlabel, w);
            if (k == 0 && P.w6[0]) {
                snprintf(sp[k].same_as, sizeof sp[k].same_as, "%s", P.w6);
                continue;
            }
            argv_push(&sp[k].extra, "--method"), argv_push(&sp[k].extra, method);
            add_pts(S, &sp[k], &P, (PtKind)k, P.s5_unl, P.s6_k, &rc);
        }
        const char *l7[3] = {"beam", "sampling", "high-temperature sampling"};
        int win = stage_run(S, sp, 3, &rc, "S7", "how the teacher's PTs are made", l7, "sampling");
        if (rc) goto done;
        P.s7 = win < 0 ? PT_SAMPLE : (PtKind)win;
        snprintf(P.w7, sizeof P.w7, "%s", names[win < 0 ? 1 : win]);
    }

    /* S8: teacher PTs, student PTs, Joint-Teaching */
    P.s8 = 2;
    if (stage_on(S, "S8")) {
        Spec sp[3];
        char w[256];
        snprintf(w, sizeof w, "teacher PTs only (%s, %d per input)", PT_NAMES[P.s7], P.s6_k);
        spec_init(&sp[0], "S8-teacher-pt", "S8", st, mlabel, w);
        if (P.w7[0]) snprintf(sp[0].same_as, sizeof sp[0].same_as, "%s", P.w7);
        else argv_push(&sp[0].extra, "--method"), argv_push(&sp[0].extra, method), add_pts(S, &sp[0], &P, P.s7, P.s5_unl, P.s6_k, &rc);
        spec_init(&sp[1], "S8-student-pt", "S8", st, "student PTs",
                  "word-level KD on the student's own PTs (sampled online), scored by the teacher");
        argv_push(&sp[1].extra, "--method"), argv_push(&sp[1].extra, "student-pt");
        snprintf(w, sizeof w, "Joint-Teaching: student PTs on half the batches, teacher PTs (%s) and gold on the rest",
                 PT_NAMES[P.s7]);
        spec_init(&sp[2], "S8-joint", "S8", st, "Joint-Teaching", w);
        argv_push(&sp[2].extra, "--method"), argv_push(&sp[2].extra, "joint");
        add_pts(S, &sp[2], &P, P.s7, P.s5_unl, P.s6_k, &rc);
        const char *s8[3] = {"S8-teacher-pt", "S8-student-pt", "S8-joint"};
        const char *l8[3] = {"teacher PTs", "student PTs", "Joint-Teaching"};
        int win = stage_run(S, sp, 3, &rc, "S8", "whose PTs", l8, "Joint-Teaching");
        if (rc) goto done;
        P.s8 = win < 0 ? 2 : win;
        snprintf(P.w8, sizeof P.w8, "%s", s8[win < 0 ? 2 : win]);
    }

    /* S9: later objectives and the caches beside the winner */
    if (stage_on(S, "S9")) {
        const char *base = P.s8 == 2 ? "joint" : !strcmp(method, "ft") ? "kd" : method;
        if (!strcmp(base, "noisy-kd") || !strcmp(base, "attention-kd")) base = "kd";
        Spec sp[7];
        const char *names[7] = {"S9-rkl", "S9-jsd", "S9-skl", "S9-gkd", "S9-minillm", "S9-cache-exact", "S9-cache-sparse"};
        const char *labels[7] = {"reverse KL", "JSD(0.5)", "skew KL (0.1)", "GKD", "MiniLLM", "exact teacher cache",
                                 "sparse teacher cache (top 20)"};
        for (int k = 0; k < 7; k++) {
            char w[256];
            snprintf(w, sizeof w, "%s: %s, with the winner's PTs", labels[k],
                     k == 3 ? "JSD(0.5), on-policy on half the batches" : k == 4 ? "policy gradient, mixed sampling"
                                                                                 : base);
            spec_init(&sp[k], names[k], "S9", st, labels[k], w);
            const char *m = k == 3 ? "gkd" : k == 4 ? "minillm" : base;
            argv_push(&sp[k].extra, "--method"), argv_push(&sp[k].extra, m);
            if (k == 0) argv_push(&sp[k].extra, "--objective"), argv_push(&sp[k].extra, "rkl");
            if (k == 1) argv_push(&sp[k].extra, "--objective"), argv_push(&sp[k].extra, "jsd");
            if (k == 2) argv_push(&sp[k].extra, "--objective"), argv_push(&sp[k].extra, "skl");
            if (k == 5) argv_push(&sp[k].extra, "--teacher-cache"), argv_push(&sp[k].extra, "exact");
            if (k == 6) argv_push(&sp[k].extra, "--teacher-cache"), argv_push(&sp[k].extra, "sparse");
            add_pts(S, &sp[k], &P, P.s7, P.s5_unl, P.s6_k, &rc);
        }
        if (!rc) rc = run_specs(S, sp, 7);
        for (int k = 0; k < 7; k++) spec_free(&sp[k]);
        if (rc) goto done;
        decision(S, "| S9 | beside the winner | (see the table) | - | - | - |");
    }

    /* seeds of the three main rows */
    if (S->seeds > 1) {
        struct {
            const char *row, *name;
        } main_rows[3] = {{P.ft_row, "seeds-ft"}, {P.w7[0] ? P.w7 : NULL, "seeds-kd-pt"}, {row_find(S, "S8-joint") ? "S8-joint" : NULL, "seeds-joint"}};
        for (int m = 0; m < 3 && !rc; m++) {
            if (!main_rows[m].row) continue;
            const RowResult *alias = row_find(S, main_rows[m].row);
            const char *orig = alias && alias->same_as[0] ? alias->same_as : main_rows[m].row;
            const RowResult *base = row_find(S, orig);
            char ep[800];
            pathf(ep, sizeof ep, "%s/rows/%s/extra.json", S->out, orig);
            cJSON *ex = NULL;
            if (!file_exists(ep)) continue; /* a row not trained by this study */
            size_t elen = 0;
            char *etext = read_file_text(ep, &elen);
            ex = etext ? cJSON_ParseWithLength(etext, elen) : NULL;
            free(etext);
            if (!cJSON_IsArray(ex)) {
                cJSON_Delete(ex);
                rc = tt_err("%s: malformed", ep);
                break;
            }
            /* the same row with another seed */
            Spec sp[8];
            int n = 0;
            for (int s = 2; s <= S->seeds && n < 8; s++) {
                char nm[64];
                snprintf(nm, sizeof nm, "%s-seed%d", orig, s);
                spec_init(&sp[n], nm, base ? base->stage : "S3", st, base ? base->method : "", base ? base->what : "");
                sp[n].seed = s;
                for (const cJSON *w = ex->child; w; w = w->next)
                    if (cJSON_IsString(w)) argv_push(&sp[n].extra, w->valuestring);
                n++;
            }
            cJSON_Delete(ex);
            if (!rc) rc = run_specs(S, sp, n);
            for (int k = 0; k < n; k++) spec_free(&sp[k]);
        }
        if (rc) goto done;
    }

    /* the ceiling: the student fine-tuned on all gold */
    if (S->unl_gold && stage_on(S, "ref")) {
        Spec sp;
        spec_init(&sp, "ref-ft-all-gold", "ref", st, "fine-tune (all gold)",
                  "the student fine-tuned on the labeled and the unlabeled inputs' gold: the ceiling of PTs");
        sp.data = S->gold_all;
        argv_push(&sp.extra, "--method"), argv_push(&sp.extra, "ft");
        rc = run_specs(S, &sp, 1);
        spec_free(&sp);
        if (rc) goto done;
    }
done:
    for (int k = 0; k < n_cand; k++) free((char *)cand_names[k]);
    return rc;
}

/* ---------------------------------------------------------------- settings */

static int settings_check(Study *S) {
    char path[700];
    pathf(path, sizeof path, "%s/study.json", S->out);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "teacher", S->teacher);
    cJSON_AddStringToObject(o, "labeled", S->labeled);
    cJSON_AddStringToObject(o, "unlabeled", S->unlabeled);
    cJSON_AddStringToObject(o, "dev", S->dev);
    cJSON_AddStringToObject(o, "test", S->test);
    cJSON_AddStringToObject(o, "unlabeled_gold", S->unl_gold ? S->unl_gold : "");
    cJSON_AddStringToObject(o, "source_field", S->src_field ? S->src_field : "source");
    cJSON_AddStringToObject(o, "target_field", S->tgt_field ? S->tgt_field : "target");
    cJSON_AddNumberToObject(o, "pts", S->pts);
    cJSON_AddNumberToObject(o, "speedup", S->speedup);
    cJSON_AddBoolToObject(o, "quick", S->quick);
    char *now = cJSON_Print(o);
    cJSON_Delete(o);
    if (!now) return tt_err("out of memory");
    int rc = 0;
    if (file_exists(path)) {
        size_t n = 0;
        char *old = read_file_text(path, &n);
        if (!old) rc = -1;
        else if (strcmp(old, now))
            rc = tt_err("%s: this folder holds a study with other settings (task files, teacher, --pts, --speedup or "
                        "--quick); continue it with the same ones or choose another -o",
                        path);
        free(old);
    } else {
        rc = atomic_write_file(path, now, strlen(now));
    }
    free(now);
    if (rc) return -1;
    return 0;
}

static int budget_plan(Study *S) {
    int rc = 0;
    /* the row budget, fixed on the first run so that a resumed study keeps it */
    char bpath[700];
    pathf(bpath, sizeof bpath, "%s/budget.json", S->out);
    cJSON *b = file_exists(bpath) ? json_load_object(bpath) : NULL;
    if (file_exists(bpath) && !b) return -1;
    if (b) {
        S->row_min = jnum(b, "row_minutes");
        S->jobs = (int)jnum(b, "jobs");
        cJSON_Delete(b);
        if (!(S->row_min > 0) || S->jobs < 1) return tt_err("%s: malformed", bpath);
        return 0;
    }
    if (S->row_minutes <= 0) {
        /* rows that train (of the stages asked for): S1 2 (1 without S1), S2 5 + the pretraining,
         * S3 3, S4 2, S5 1, S6 1, S7 2, S8 2 (3 without S7), S9 7, seeds (seeds - 1) each of the
         * fine-tuned student, S7's and S8's winners, the ceiling 1; PTs and evaluations take what
         * the teacher's speed says; the rest is shared equally */
        int on[10];
        static const char *const st[10] = {"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "ref"};
        for (int k = 0; k < 10; k++) on[k] = stage_on(S, st[k]);
        int rows = (on[0] ? 2 : 1) + (on[1] ? 6 : 0) + (on[2] ? 3 : 0) + (on[3] ? 2 : 0) + (on[4] ? 1 : 0) +
                   (on[5] ? 1 : 0) + (on[6] ? 2 : 0) + (on[7] ? (on[6] ? 2 : 3) : 0) + (on[8] ? 7 : 0) +
                   (S->seeds - 1) * (1 + on[6] + on[7]) + (S->unl_gold && on[9] ? 1 : 0);
        /* PT cost: the teacher decodes every input once for beam and K times for each
         * sampling kind; ~40 beam inputs/s and ~80 sampled sequences/s for a teacher of the
         * shipped size at 2 threads, scaled by its parameters */
        double scale = (double)config_params(&S->tcfg) / 9.5e6;
        double inputs = (double)(S->n_lab + S->n_unl);
        double pt_min = scale * (inputs / 40.0 + 2.0 * inputs * S->pts / 80.0) / 60.0;
        double eval_min = 1.5 * rows;
        double left = S->budget_hours * 60 - pt_min - eval_min - (S->teacher_dir[0] ? S->teacher_hours * 60 : 0);
        S->row_min = left * S->jobs / rows;
        if (S->row_min < 2) S->row_min = 2;
        tt_info("study: budget %.1f h: PTs ~%.0f min, evaluations ~%.0f min, %d training rows of %.1f min (%d at once)",
                S->budget_hours, pt_min, eval_min, rows, S->row_min, S->jobs);
    } else {
        S->row_min = S->row_minutes;
    }
    cJSON *nb = cJSON_CreateObject();
    cJSON_AddNumberToObject(nb, "row_minutes", S->row_min);
    cJSON_AddNumberToObject(nb, "jobs", S->jobs);
    cJSON_AddNumberToObject(nb, "budget_hours", S->budget_hours);
    char *t = cJSON_Print(nb);
    cJSON_Delete(nb);
    rc = t ? atomic_write_file(bpath, t, strlen(t)) : tt_err("out of memory");
    free(t);
    return rc;
}

/* Once every row is done: every student's speed-up re-timed in one sitting, on one machine
 * and one build (rows trained in several sessions were evaluated on whatever CPU and build
 * each session had), `tutor eval --speed-only` against the teacher into rows/NAME/speed.json;
 * a row that has the file is not re-timed (delete the files to time again). */
static int speed_pass(Study *S) {
    int n_students = 0;
    for (int i = 0; i < S->n_rows; i++) {
        const RowResult *r = &S->rows[i];
        n_students += !strcmp(r->role, "student") && !r->failed && !r->same_as[0] && r->dir[0];
    }
    int k = 0;
    for (int i = 0; i < S->n_rows; i++) {
        RowResult *r = &S->rows[i];
        if (strcmp(r->role, "student") || r->failed || r->same_as[0] || !r->dir[0]) continue;
        char sp[800], log[800];
        pathf(sp, sizeof sp, "%s/rows/%s/speed.json", S->out, r->name);
        pathf(log, sizeof log, "%s/rows/%s/log.txt", S->out, r->name);
        k++;
        if (!file_exists(sp)) {
            if (k == 1) tt_info("study: re-timing every student against the teacher in one sitting (%d rows)", n_students);
            Argv a = {0};
            argv_push(&a, "eval");
            argv_push(&a, "--model"), argv_push(&a, r->dir);
            argv_push(&a, "--data"), argv_push(&a, S->tst);
            argv_push(&a, "--baseline"), argv_push(&a, S->teacher);
            argv_push(&a, "--speed-only");
            argv_push(&a, "--speed-examples"), argv_pushf(&a, "%d", speed_examples(S));
            argv_push(&a, "-q");
            argv_push(&a, "--threads"), argv_pushf(&a, "%d", S->threads);
            argv_push(&a, "--json"), argv_push(&a, sp);
            common_fields(S, &a);
            int rc = study_run(&a, log);
            argv_free(&a);
            if (rc) {
                if (study_interrupted()) return -1;
                tt_info("study: re-timing %s failed (%s); its speed stays the evaluation's", r->name, tt_errmsg());
                continue;
            }
        }
        cJSON *t = json_load_object(sp);
        if (!t) continue;
        double g = jnum(t, "cost.model_over_baseline.greedy_inputs_per_s"),
               b = jnum(t, "cost.model_over_baseline.beam_inputs_per_s");
        if (g > 0) r->speed_greedy = g;
        if (b > 0) r->speed_beam = b;
        cJSON_Delete(t);
    }
    /* rows that are another row (same_as) take its new speeds */
    for (int i = 0; i < S->n_rows; i++) {
        RowResult *r = &S->rows[i];
        if (!r->same_as[0]) continue;
        const RowResult *o = row_find(S, r->same_as);
        if (o) r->speed_greedy = o->speed_greedy, r->speed_beam = o->speed_beam;
    }
    return 0;
}

static char *header_text(const Study *S) {
    char *h = malloc(8192), train[256];
    if (!h) return NULL;
    const RowResult *t = row_find(S, "ref-teacher");
    if (S->quick) snprintf(train, sizeof train, "%d steps each (--quick)", S->quick_steps);
    else snprintf(train, sizeof train, "%.1f minutes of training each, %d at once", S->row_min, S->jobs);
    snprintf(h, 8192,
             "Task: labeled `%s` (%zu pairs), unlabeled `%s` (%zu inputs), dev `%s` (%d), test `%s` (%d)%s.\n"
             "Teacher: `%s` (%zu parameters, %s, decoding with %d beam%s).\n"
             "Token budgets from the labeled data: sources %d (95th percentile), targets %d (99th); exposure bias "
             "at l = %d and %d (the 90th percentile of target lengths and its half).\n"
             "Training rows: %s; each row's model selected by greedy dev ROUGE-L; every decision below on the "
             "full dev set with the deployed decoding; every number in the table on test.%s\n",
             S->labeled, S->n_lab, S->unlabeled, S->n_unl, S->dev, S->n_dev, S->test, S->n_test,
             S->quick ? " -- **--quick: a small subset and tiny budgets, a check of the machinery, not a result**" : "",
             S->teacher, t ? t->params : 0, model_is_encdec(&S->tcfg) ? "encoder-decoder" : "decoder-only",
             S->deployed_beam, S->deployed_beam > 1 ? "s" : "", S->max_src, S->max_tgt, S->ex_mid, S->ex_full, train,
             S->retimed ? "\nSpeed-ups: every student re-timed against the teacher in one sitting once all rows were "
                          "done (`rows/*/speed.json`, `tutor eval --speed-only`), so that the column shares one "
                          "machine and one build; decisions made during the study (the S3+ student's speed) used "
                          "the speed measured at the row's evaluation."
                        : "");
    return h;
}

/* The last "elapsed_s" and "step" of a training's metrics.jsonl (NAN / -1 when none). */
static void last_progress(const char *metrics, double *elapsed, long *step) {
    *elapsed = NAN, *step = -1;
    FILE *f = fopen(metrics, "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        double e = jnum(o, "elapsed_s"), st = jnum(o, "step");
        if (isfinite(e)) *elapsed = e;
        if (isfinite(st)) *step = (long)st;
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The entries of dir but . and .. (names malloc'ed). 0, or -1 when it cannot be read. */
static int list_dir(const char *dir, char ***names, size_t *n) {
    *names = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            char **t = realloc(*names, cap * sizeof *t);
            if (!t) break;
            *names = t;
        }
        if (!((*names)[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    return 0;
}

/* tutor study --status -o OUT: where a study stands, from its folder alone (nothing runs). */
static int study_status(const char *out) {
    char path[800];
    pathf(path, sizeof path, "%s/study.json", out);
    if (!file_exists(path)) {
        fprintf(stderr, "tutor: study: %s: no study.json, not a study folder (or not started)\n", out);
        return 1;
    }
    cJSON *budget = NULL;
    pathf(path, sizeof path, "%s/budget.json", out);
    if (file_exists(path)) budget = json_load_object(path);
    double row_min = budget ? jnum(budget, "row_minutes") : NAN;
    printf("study %s", out);
    if (budget)
        printf(": %.1f-minute rows, %g at once, budget %g hours", row_min, jnum(budget, "jobs"),
               jnum(budget, "budget_hours"));
    printf("\n\n%-24s %-8s %-40s %8s %8s %9s\n", "row", "stage", "state", "dev R-L", "test R-L", "speed-up");
    cJSON_Delete(budget);
    char rows_dir[800];
    pathf(rows_dir, sizeof rows_dir, "%s/rows", out);
    char **names = NULL;
    size_t n = 0;
    if (list_dir(rows_dir, &names, &n)) n = 0;
    qsort(names, n, sizeof *names, by_name);
    int done = 0, failed = 0, running = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        char rp[1000], state[64] = "", dev[16] = "-", test[16] = "-", speed[16] = "-", stage[8] = "";
        snprintf(rp, sizeof rp, "%s/%s/row.json", rows_dir, names[i]);
        if (file_exists(rp)) {
            cJSON *r = json_load_object(rp);
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "stage");
            if (cJSON_IsString(st)) snprintf(stage, sizeof stage, "%s", st->valuestring);
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "failed"))) {
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
                snprintf(state, sizeof state, "failed: %.30s", cJSON_IsString(e) ? e->valuestring : "?");
                failed++;
            } else {
                snprintf(state, sizeof state, "done");
                double d = jnum(r, "dev_rougeL"), t = jnum(r, "rougeL"), sp = jnum(r, "speedup_beam");
                if (isfinite(d)) snprintf(dev, sizeof dev, "%.2f", d);
                if (isfinite(t)) snprintf(test, sizeof test, "%.2f", t);
                if (isfinite(sp)) snprintf(speed, sizeof speed, "%.2fx", sp);
                done++;
            }
            cJSON_Delete(r);
        } else {
            char td[1000], mj[1000];
            snprintf(td, sizeof td, "%s/%s/train.done", rows_dir, names[i]);
            snprintf(mj, sizeof mj, "%s/%s/model/metrics.jsonl", rows_dir, names[i]);
            double el;
            long step;
            last_progress(mj, &el, &step);
            if (file_exists(td)) snprintf(state, sizeof state, "trained, evaluation to come"), other++;
            else if (step >= 0 && isfinite(row_min))
                snprintf(state, sizeof state, "training: step %ld, %.1f of %.1f min", step, el / 60, row_min), running++;
            else if (step >= 0) snprintf(state, sizeof state, "training: step %ld", step), running++;
            else snprintf(state, sizeof state, "started"), other++;
        }
        if (!stage[0]) {
            /* a row not yet reported: its stage is its name's prefix (S5-..., ref-...) */
            size_t k = strcspn(names[i], "-");
            if (k < sizeof stage) snprintf(stage, sizeof stage, "%.*s", (int)k, names[i]);
        }
        printf("%-24s %-8s %-40s %8s %8s %9s\n", names[i], stage, state, dev, test, speed);
    }
    printf("\n%d rows done, %d failed, %d training, %d other", done, failed, running, other);
    char pts[800];
    pathf(pts, sizeof pts, "%s/pts", out);
    char **pn = NULL;
    size_t np = 0;
    if (!list_dir(pts, &pn, &np) && np) {
        qsort(pn, np, sizeof *pn, by_name);
        printf("; pseudo-targets:");
        for (size_t i = 0; i < np; i++) {
            size_t len = strlen(pn[i]);
            if (len < 6 || strcmp(pn[i] + len - 6, ".jsonl")) continue;
            char f[1000];
            snprintf(f, sizeof f, "%s/%s", pts, pn[i]);
            printf(" %s (%zu lines)", pn[i], count_lines(f));
        }
    }
    printf("\n");
    for (size_t i = 0; i < n; i++) free(names[i]);
    for (size_t i = 0; i < np; i++) free(pn[i]);
    free(names);
    free(pn);
    return 0;
}

int cmd_study(int argc, char **argv) {
    /* --status -o OUT: only reads the folder */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--status")) {
            const char *out = NULL;
            for (int k = 1; k + 1 < argc; k++)
                if (!strcmp(argv[k], "-o") || !strcmp(argv[k], "--output")) out = argv[k + 1];
            if (!out) {
                fprintf(stderr, "tutor: study: --status needs -o OUT, the study's folder\n");
                return 2;
            }
            return study_status(out);
        }
    Study S;
    memset(&S, 0, sizeof S);
    S.budget_hours = 8, S.speedup = 5, S.threads = 2, S.jobs = 1, S.pts = 4, S.seeds = 3, S.plots = 1;
    S.teacher_hours = 2, S.vocab = 8000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quick")) {
            S.quick = 1;
            continue;
        }
        if (!strcmp(a, "--no-plots")) {
            S.plots = 0;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "-", 1)) {
            fprintf(stderr, "tutor: study: %s (see tutor study --help)\n",
                    strncmp(a, "-", 1) ? "unexpected argument" : "a flag needs a value");
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        double x = strtod(v, &end);
        int num_ok = *v && !*end && isfinite(x);
        if (!strcmp(a, "--teacher")) S.teacher = v;
        else if (!strcmp(a, "--labeled")) S.labeled = v;
        else if (!strcmp(a, "--unlabeled")) S.unlabeled = v;
        else if (!strcmp(a, "--dev")) S.dev = v;
        else if (!strcmp(a, "--test")) S.test = v;
        else if (!strcmp(a, "--unlabeled-gold")) S.unl_gold = v;
        else if (!strcmp(a, "--source-field")) S.src_field = v;
        else if (!strcmp(a, "--target-field")) S.tgt_field = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) S.out = v;
        else if (!strcmp(a, "--stages")) snprintf(S.stages, sizeof S.stages, "%s", v);
        else if (!strcmp(a, "--budget-hours") && num_ok && x > 0 && x < 1e4) S.budget_hours = x;
        else if (!strcmp(a, "--row-minutes") && num_ok && x > 0 && x < 1e5) S.row_minutes = x;
        else if (!strcmp(a, "--speedup") && num_ok && x >= 1 && x < 1e4) S.speedup = x;
        else if (!strcmp(a, "--threads") && num_ok && x >= 1 && x <= 4096 && x == floor(x)) S.threads = (int)x;
        else if (!strcmp(a, "--jobs") && num_ok && x >= 1 && x <= 64 && x == floor(x)) S.jobs = (int)x;
        else if (!strcmp(a, "--pts") && num_ok && x >= 2 && x <= 64 && x == floor(x)) S.pts = (int)x;
        else if (!strcmp(a, "--seeds") && num_ok && x >= 1 && x <= 9 && x == floor(x)) S.seeds = (int)x;
        else if (!strcmp(a, "--teacher-hours") && num_ok && x > 0 && x < 1000) S.teacher_hours = x;
        else if (!strcmp(a, "--vocab") && num_ok && x >= 260 && x <= 1000000 && x == floor(x)) S.vocab = (int)x;
        else {
            int known = !strcmp(a, "--budget-hours") || !strcmp(a, "--row-minutes") || !strcmp(a, "--speedup") ||
                        !strcmp(a, "--threads") || !strcmp(a, "--jobs") || !strcmp(a, "--pts") || !strcmp(a, "--seeds") ||
                        !strcmp(a, "--teacher-hours") || !strcmp(a, "--vocab");
            if (known)
                fprintf(stderr, "tutor: study: %s: bad value '%s' (see tutor study --help)\n", a, v);
            else
                fprintf(stderr, "tutor: study: unknown flag %s (see tutor study --help)\n", a);
            return 2;
        }
    }
    if (!S.labeled || !S.unlabeled || !S.dev || !S.test || !S.out) {
        fprintf(stderr, "tutor: study: --labeled, --unlabeled, --dev, --test and -o are required (see "
                        "tutor study --help)\n");
        return 2;
    }
    if (S.jobs > S.threads) S.jobs = S.threads;
    if (S.stages[0]) {
        char list[130];
        snprintf(list, sizeof list, "%s", S.stages);
        for (char *w = strtok(list, ","); w; w = strtok(NULL, ",")) {
            static const char *const ok[] = {"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "ref", NULL};
            int good = 0;
            for (int k = 0; ok[k]; k++) good |= !strcmp(w, ok[k]);
            if (!good) {
                fprintf(stderr, "tutor: study: --stages: unknown stage '%s' (S1..S9, ref)\n", w);
                return 2;
            }
        }
    }
    if (S.quick) {
        S.pts = 2;
        if (S.seeds > 2) S.seeds = 2;
        S.quick_steps = 4;
    }
    const char *inputs[5] = {S.labeled, S.unlabeled, S.dev, S.test, S.unl_gold};
    for (int k = 0; k < 5; k++)
        if (inputs[k] && !file_exists(inputs[k])) {
            fprintf(stderr, "tutor: study: %s: no such file\n", inputs[k]);
            return 1;
        }
    if (check_not_an_input(S.out, inputs, S.unl_gold ? 5 : 4) || make_dirs(S.out)) {
        fprintf(stderr, "tutor: study: %s\n", tt_errmsg());
        return 1;
    }
    S.t_start = tt_now_s();
    study_signals_install();
    int rc = 0;
    char tp[700];
    if (!S.teacher) {
        /* trained below, after the settings are checked; its path is fixed by -o */
        pathf(S.teacher_dir, sizeof S.teacher_dir, "%s/teacher/model", S.out);
        S.teacher = S.teacher_dir;
    }
    /* the task, or its quick subset */
    if (!rc) {
        char dd[700];
        pathf(dd, sizeof dd, "%s/data", S.out);
        if (S.quick) {
            rc = make_dirs(dd);
            pathf(S.lab, sizeof S.lab, "%s/labeled.jsonl", dd);
            pathf(S.unl, sizeof S.unl, "%s/unlabeled.jsonl", dd);
            pathf(S.dv, sizeof S.dv, "%s/dev.jsonl", dd);
            pathf(S.tst, sizeof S.tst, "%s/test.jsonl", dd);
            if (!rc) rc = head_lines(S.labeled, S.lab, 120) || head_lines(S.unlabeled, S.unl, 80) ||
                          head_lines(S.dev, S.dv, 16) || head_lines(S.test, S.tst, 16);
        } else {
            snprintf(S.lab, sizeof S.lab, "%s", S.labeled);
            snprintf(S.unl, sizeof S.unl, "%s", S.unlabeled);
            snprintf(S.dv, sizeof S.dv, "%s", S.dev);
            snprintf(S.tst, sizeof S.tst, "%s", S.test);
        }
        if (!rc && S.unl_gold) {
            char ug[700];
            pathf(ug, sizeof ug, "%s/unlabeled-gold.jsonl", dd);
            if (S.quick) rc = make_dirs(dd) || head_lines(S.unl_gold, ug, 80);
            pathf(S.gold_all, sizeof S.gold_all, "%s/all-gold.jsonl", dd);
            if (!rc) rc = make_dirs(dd) || concat_files(S.lab, S.quick ? ug : S.unl_gold, S.gold_all);
        }
    }
    if (!rc) {
        S.n_lab = count_lines(S.lab), S.n_unl = count_lines(S.unl);
        S.n_dev = (int)count_lines(S.dv), S.n_test = (int)count_lines(S.tst);
        if (S.n_dev < 1 || S.n_test < 1) rc = tt_err("study: dev and test need at least one pair each");
    }
    if (!rc) rc = settings_check(&S);
    if (!rc && S.teacher_dir[0]) rc = train_teacher(&S);
    if (!rc) {
        pathf(tp, sizeof tp, "%s/config.json", S.teacher);
        if (model_config_load(&S.tcfg, tp)) rc = -1;
        GenConfig g;
        if (!rc && gen_config_for_dir(&g, &S.tcfg, S.teacher)) rc = -1;
        if (!rc) S.deployed_beam = g.num_beams > 1 ? g.num_beams : 1;
    }
    if (!rc) {
        pathf(tp, sizeof tp, "%s/tokenizer.json", S.teacher);
        Tokenizer *tok = tokenizer_load(tp);
        rc = tok ? data_stats(&S, tok) : -1;
        tokenizer_free(tok);
    }
    if (!rc) rc = budget_plan(&S);
    if (!rc) rc = run_study(&S);
    if (!rc && !(rc = speed_pass(&S))) S.retimed = 1;
    /* the report, from whatever rows exist (a partial study reports its finished rows) */
    if (S.n_rows) {
        StudyReport rep = {.out_dir = S.out, .test_path = S.tst, .target_field = S.tgt_field, .rows = S.rows,
                           .n_rows = S.n_rows, .teacher = -1, .ft = -1, .best = -1, .speed_bar = S.speedup,
                           .decisions = S.decisions ? S.decisions : "", .seeds = S.seeds};
        char *h = header_text(&S);
        rep.header = h ? h : "";
        for (int i = 0; i < S.n_rows; i++) {
            if (!strcmp(S.rows[i].name, "ref-teacher")) rep.teacher = i;
            if (!strcmp(S.rows[i].name, "S3-ft")) rep.ft = i;
        }
        if (rep.ft < 0)
            for (int i = 0; i < S.n_rows; i++)
                if (!strcmp(S.rows[i].name, "S1-ed")) rep.ft = i;
        /* the best student: the best dev ROUGE-L among students fast enough, from S3 on */
        double b = -1;
        for (int i = 0; i < S.n_rows; i++) {
            const RowResult *r = &S.rows[i];
            if (strcmp(r->role, "student") || !strcmp(r->stage, "S1") || !strcmp(r->stage, "S2") ||
                !strcmp(r->stage, "ref") || strstr(r->name, "-seed"))
                continue;
            if (row_speed(&S, r) >= S.speedup && r->dev_rougeL > b) b = r->dev_rougeL, rep.best = i;
        }
        if (study_report_write(&rep)) rc = -1;
        free(h);
    }
    if (rc) fprintf(stderr, "tutor: study: %s\n", tt_errmsg());
    else {
        char d[64];
        tt_format_duration(d, sizeof d, tt_now_s() - S.t_start);
        fprintf(stderr, "tutor: study: done in %s: %s/RESULTS.md, %s/results.json\n", d, S.out, S.out);
    }
    free(S.rows);
    free(S.decisions);
    return rc ? 1 : 0;
}
