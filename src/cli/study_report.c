/* study_report.c: what `tutor study` writes from its rows: results.json for tools, RESULTS.md
 * for people (the table with paired bootstrap intervals against the fine-tuned student, the
 * stage decisions, the main claim's numbers, seeds, costs) and two gnuplot plots (dev ROUGE-L
 * against training time; test ROUGE-L against speed-up). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "study.h"
#include "tutor/core.h"
#include "tutor/fileio.h"
#include "tutor/metrics.h"

/* ---- row.json ---- */

static void put_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static double get_num(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static void get_str(const cJSON *o, const char *k, char *dst, size_t n) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    snprintf(dst, n, "%s", cJSON_IsString(x) ? x->valuestring : "");
}

int study_row_save(const char *path, const RowResult *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", r->name);
    cJSON_AddStringToObject(o, "stage", r->stage);
    cJSON_AddStringToObject(o, "role", r->role);
    cJSON_AddStringToObject(o, "method", r->method);
    cJSON_AddStringToObject(o, "what", r->what);
    cJSON_AddStringToObject(o, "dir", r->dir);
    cJSON_AddStringToObject(o, "generations", r->gen_path);
    if (r->failed) cJSON_AddBoolToObject(o, "failed", 1), cJSON_AddStringToObject(o, "error", r->error);
    put_num(o, "seed", r->seed);
    put_num(o, "params", (double)r->params);
    put_num(o, "dev_rougeL", r->dev_rougeL);
    put_num(o, "rouge1", r->r1);
    put_num(o, "rouge2", r->r2);
    put_num(o, "rougeL", r->rL);
    put_num(o, "bleu", r->bleu);
    put_num(o, "speedup_greedy", r->speed_greedy);
    put_num(o, "speedup_beam", r->speed_beam);
    put_num(o, "exaccerr_mid", r->exacc_mid);
    put_num(o, "exaccerr_full", r->exacc_full);
    put_num(o, "exaccerr_mid_len", r->exacc_mid_len);
    put_num(o, "exaccerr_full_len", r->exacc_full_len);
    put_num(o, "train_s", r->train_s);
    put_num(o, "teacher_s", r->teacher_s);
    put_num(o, "student_gen_s", r->student_gen_s);
    put_num(o, "student_s", r->student_s);
    char *t = cJSON_Print(o);
    cJSON_Delete(o);
    int rc = t ? atomic_write_file(path, t, strlen(t)) : tt_err("out of memory");
    free(t);
    return rc;
}

int study_row_load(const char *path, RowResult *r) {
    memset(r, 0, sizeof *r);
    if (!file_exists(path)) return 0;
    cJSON *o = json_load_object(path);
    if (!o) return -1;
    get_str(o, "name", r->name, sizeof r->name);
    get_str(o, "stage", r->stage, sizeof r->stage);
    get_str(o, "role", r->role, sizeof r->role);
    get_str(o, "method", r->method, sizeof r->method);
    get_str(o, "what", r->what, sizeof r->what);
    get_str(o, "dir", r->dir, sizeof r->dir);
    get_str(o, "generations", r->gen_path, sizeof r->gen_path);
    r->failed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "failed"));
    get_str(o, "error", r->error, sizeof r->error);
    double seed = get_num(o, "seed"), params = get_num(o, "params");
    r->seed = isfinite(seed) ? (int)seed : 0;
    r->params = isfinite(params) ? (size_t)params : 0;
    r->dev_rougeL = get_num(o, "dev_rougeL");
    r->r1 = get_num(o, "rouge1"), r->r2 = get_num(o, "rouge2"), r->rL = get_num(o, "rougeL");
    r->bleu = get_num(o, "bleu");
    r->speed_greedy = get_num(o, "speedup_greedy"), r->speed_beam = get_num(o, "speedup_beam");
    r->exacc_mid = get_num(o, "exaccerr_mid"), r->exacc_full = get_num(o, "exaccerr_full");
    r->exacc_mid_len = (int)get_num(o, "exaccerr_mid_len"), r->exacc_full_len = (int)get_num(o, "exaccerr_full_len");
    r->train_s = get_num(o, "train_s"), r->teacher_s = get_num(o, "teacher_s");
    r->student_gen_s = get_num(o, "student_gen_s"), r->student_s = get_num(o, "student_s");
    cJSON_Delete(o);
    if (!r->name[0]) return tt_err("%s: no row name", path);
    r->have = 1;
    return 0;
}

/* ---- paired bootstrap against the fine-tuned student ---- */

typedef struct {
    size_t n;
    char **hyp, **ref;
} Gens;

static void gens_free(Gens *g) {
    for (size_t i = 0; i < g->n; i++) free(g->hyp[i]), free(g->ref[i]);
    free(g->hyp), free(g->ref);
    memset(g, 0, sizeof *g);
}

static int gens_load(const char *path, Gens *g) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "r");
    if (!f) return tt_err("%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0, cap_n = 0, lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0 && !rc) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prediction");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "reference");
        if (!cJSON_IsString(p) || !cJSON_IsString(r)) {
            rc = tt_err("%s:%zu: no prediction and reference", path, lineno);
        } else {
            if (g->n == cap_n) {
                cap_n = cap_n ? cap_n * 2 : 256;
                char **a = realloc(g->hyp, sizeof(char *) * cap_n), **b = a ? realloc(g->ref, sizeof(char *) * cap_n) : NULL;
                if (a) g->hyp = a;
                if (b) g->ref = b;
                if (!a || !b) rc = tt_err("out of memory");
            }
            if (!rc) {
                g->hyp[g->n] = strdup(p->valuestring);
                g->ref[g->n] = strdup(r->valuestring);
                g->n++;
            }
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (rc) gens_free(g);
    return rc;
}

typedef struct {
    int have;
    BootstrapResult r1, r2, rL, bleu;
} Ci;

static int per_example(const Gens *g, double *r1, double *r2, double *rL, BleuStats *bs) {
    const char *const *refs[1] = {(const char *const *)g->ref};
    RougeScores *pe = malloc(sizeof(RougeScores) * (g->n ? g->n : 1)), mean;
    if (!pe) return tt_err("out of memory");
    int rc = rouge_corpus((const char *const *)g->hyp, refs, 1, g->n, 0, pe, &mean);
    for (size_t i = 0; !rc && i < g->n; i++)
        r1[i] = pe[i].rouge1.fmeasure * 100, r2[i] = pe[i].rouge2.fmeasure * 100, rL[i] = pe[i].rougeL.fmeasure * 100;
    free(pe);
    BleuOptions bo;
    bleu_options_default(&bo);
    if (!rc) rc = bleu_corpus_stats((const char *const *)g->hyp, refs, 1, g->n, &bo, bs, NULL);
    return rc;
}

static int ci_against(const char *base_path, const char *row_path, Ci *ci) {
    memset(ci, 0, sizeof *ci);
    Gens a, b;
    if (gens_load(base_path, &a)) return -1;
    if (gens_load(row_path, &b)) {
        gens_free(&a);
        return -1;
    }
    int rc = 0;
    if (a.n != b.n || a.n == 0) rc = tt_err("%s and %s: different test sets (%zu and %zu lines)", base_path, row_path, a.n, b.n);
    for (size_t i = 0; !rc && i < a.n; i++)
        if (strcmp(a.ref[i], b.ref[i])) rc = tt_err("%s and %s: line %zu has another reference", base_path, row_path, i + 1);
    size_t n = a.n;
    double *v = rc ? NULL : malloc(sizeof(double) * n * 6);
    BleuStats *sa = rc ? NULL : malloc(sizeof(BleuStats) * n * 2);
    if (!rc && (!v || !sa)) rc = tt_err("out of memory");
    if (!rc) rc = per_example(&a, v, v + n, v + 2 * n, sa) || per_example(&b, v + 3 * n, v + 4 * n, v + 5 * n, sa + n);
    if (!rc) {
        BootstrapResult *out[3] = {&ci->r1, &ci->r2, &ci->rL};
        for (int k = 0; k < 3 && !rc; k++) rc = bootstrap_paired_mean(v + (size_t)k * n, v + (size_t)(k + 3) * n, n, 1000, 12345, out[k]);
        BleuOptions bo;
        bleu_options_default(&bo);
        if (!rc) rc = bootstrap_paired_bleu(sa, sa + n, n, &bo, 1000, 12345, &ci->bleu);
        ci->have = !rc;
    }
    free(v);
    free(sa);
    gens_free(&a);
    gens_free(&b);
    return rc;
}

/* ---- seeds ---- */

/* The row name without a "-seedN" suffix. */
static void base_name(const char *name, char *out, size_t n) {
    snprintf(out, n, "%s", name);
    char *p = strstr(out, "-seed");
    if (p) *p = 0;
}

typedef struct {
    int n;
    double mean, sd, min, max;
} Spread;

static Spread seed_spread(const StudyReport *rep, const char *base) {
    Spread s = {0, 0, 0, INFINITY, -INFINITY};
    double sum = 0, sq = 0;
    for (int i = 0; i < rep->n_rows; i++) {
        const RowResult *r = &rep->rows[i];
        char b[64];
        base_name(r->name, b, sizeof b);
        if (strcmp(b, base) || r->same_as[0] || !isfinite(r->rL)) continue;
        s.n++, sum += r->rL, sq += r->rL * r->rL;
        if (r->rL < s.min) s.min = r->rL;
        if (r->rL > s.max) s.max = r->rL;
    }
    if (s.n) {
        s.mean = sum / s.n;
        s.sd = s.n > 1 ? sqrt(fmax(0, (sq - s.n * s.mean * s.mean) / (s.n - 1))) : 0;
    }
    return s;
}

/* ---- the report ---- */

static cJSON *ci_json(const BootstrapResult *b) {
    cJSON *o = cJSON_CreateObject();
    put_num(o, "delta", b->delta);
    put_num(o, "lo95", b->lo);
    put_num(o, "hi95", b->hi);
    return o;
}

static double deployed_speed(const RowResult *r) { return isfinite(r->speed_beam) ? r->speed_beam : r->speed_greedy; }

static cJSON *row_json(const StudyReport *rep, const RowResult *r, const Ci *ci) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "row", r->name);
    cJSON_AddStringToObject(o, "stage", r->stage);
    cJSON_AddStringToObject(o, "role", r->role);
    cJSON_AddStringToObject(o, "method", r->method);
    cJSON_AddStringToObject(o, "what", r->what);
    if (r->same_as[0]) cJSON_AddStringToObject(o, "same_run_as", r->same_as);
    if (r->failed) cJSON_AddBoolToObject(o, "failed", 1), cJSON_AddStringToObject(o, "error", r->error);
    if (r->seed) cJSON_AddNumberToObject(o, "seed", r->seed);
    cJSON *t = cJSON_AddObjectToObject(o, "test");
    put_num(t, "rouge1", r->r1);
    put_num(t, "rouge2", r->r2);
    put_num(t, "rougeL", r->rL);
    put_num(t, "bleu", r->bleu);
    put_num(o, "dev_rougeL", r->dev_rougeL);
    if (ci && ci->have) {
        cJSON *c = cJSON_AddObjectToObject(o, "ci_vs_ft");
        cJSON_AddItemToObject(c, "rouge1", ci_json(&ci->r1));
        cJSON_AddItemToObject(c, "rouge2", ci_json(&ci->r2));
        cJSON_AddItemToObject(c, "rougeL", ci_json(&ci->rL));
        cJSON_AddItemToObject(c, "bleu", ci_json(&ci->bleu));
    } else {
        cJSON_AddNullToObject(o, "ci_vs_ft");
    }
    cJSON *e = cJSON_AddObjectToObject(o, "exaccerr");
    put_num(e, "l_mid", r->exacc_mid_len);
    put_num(e, "mid", r->exacc_mid);
    put_num(e, "l_full", r->exacc_full_len);
    put_num(e, "full", r->exacc_full);
    put_num(o, "params", (double)r->params);
    put_num(o, "speedup_vs_teacher", deployed_speed(r));
    put_num(o, "speedup_greedy", r->speed_greedy);
    put_num(o, "speedup_beam", r->speed_beam);
    put_num(o, "train_s", r->train_s);
    cJSON *sp = cJSON_AddObjectToObject(o, "train_split_s");
    put_num(sp, "teacher_forward", r->teacher_s);
    put_num(sp, "student_generation", r->student_gen_s);
    put_num(sp, "student_step", r->student_s);
    char b[64];
    base_name(r->name, b, sizeof b);
    Spread s = seed_spread(rep, b);
    if (s.n > 1) {
        cJSON *x = cJSON_AddObjectToObject(o, "seeds_rougeL");
        put_num(x, "n", s.n);
        put_num(x, "mean", s.mean);
        put_num(x, "sd", s.sd);
    }
    return o;
}

static void fmt(char *buf, size_t n, double v, int dec) {
    if (isfinite(v)) snprintf(buf, n, "%.*f", dec, v);
    else snprintf(buf, n, "-");
}

static void fmt_ci(char *buf, size_t n, const Ci *ci) {
    if (!ci->have) {
        snprintf(buf, n, "-");
        return;
    }
    snprintf(buf, n, "%+.2f [%+.2f, %+.2f]%s", ci->rL.delta, ci->rL.lo, ci->rL.hi,
             ci->rL.lo > 0 ? " ▲" : ci->rL.hi < 0 ? " ▼" : "");
}

static void fmt_minutes(char *buf, size_t n, double s) {
    if (isfinite(s)) snprintf(buf, n, "%.1f", s / 60);
    else snprintf(buf, n, "-");
}

static int run_gnuplot(const char *gp) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' >/dev/null 2>&1", gp);
    return system(cmd) == 0;
}

static void plots(const StudyReport *rep, FILE *md) {
    char dat[800], gp[800], png[800];
    /* dev ROUGE-L against training time, one curve per trained row */
    snprintf(dat, sizeof dat, "%s/dev-vs-time.dat", rep->out_dir);
    snprintf(gp, sizeof gp, "%s/dev-vs-time.gp", rep->out_dir);
    snprintf(png, sizeof png, "%s/dev-vs-time.png", rep->out_dir);
    FILE *f = fopen(dat, "w");
    int curves = 0;
    char titles[64][64];
    for (int i = 0; f && i < rep->n_rows && curves < 64; i++) {
        const RowResult *r = &rep->rows[i];
        if (r->same_as[0] || !r->dir[0] || strcmp(r->role, "student") || strstr(r->name, "-seed")) continue;
        char mp[700];
        snprintf(mp, sizeof mp, "%s/metrics.jsonl", r->dir);
        FILE *m = fopen(mp, "r");
        if (!m) continue;
        char *line = NULL;
        size_t cap = 0;
        int pts = 0;
        while (getline(&line, &cap, m) > 0) {
            cJSON *o = cJSON_Parse(line);
            double d = get_num(o, "dev_rougeL"), t = get_num(o, "elapsed_s");
            if (isfinite(d) && isfinite(t)) fprintf(f, "%g %g\n", t / 60, d), pts++;
            cJSON_Delete(o);
        }
        free(line);
        fclose(m);
        if (pts) {
            fprintf(f, "\n\n");
            snprintf(titles[curves++], 64, "%s", r->name);
        }
    }
    if (f) fclose(f);
    FILE *g = curves ? fopen(gp, "w") : NULL;
    if (g) {
        fprintf(g, "set terminal pngcairo size 1100,700\nset output '%s'\nset xlabel 'training time (min)'\n"
                   "set ylabel 'dev ROUGE-L (greedy, first dev pairs)'\nset key outside right\nset grid\nplot ",
                png);
        for (int k = 0; k < curves; k++)
            fprintf(g, "%s'%s' index %d with linespoints title '%s'", k ? ", " : "", dat, k, titles[k]);
        fprintf(g, "\n");
        fclose(g);
        if (run_gnuplot(gp)) fprintf(md, "![dev ROUGE-L against training time](dev-vs-time.png)\n\n");
        else fprintf(md, "(gnuplot could not draw %s; its data and script are beside it)\n\n", png);
    }
    /* quality against speed */
    snprintf(dat, sizeof dat, "%s/quality-vs-speed.dat", rep->out_dir);
    snprintf(gp, sizeof gp, "%s/quality-vs-speed.gp", rep->out_dir);
    snprintf(png, sizeof png, "%s/quality-vs-speed.png", rep->out_dir);
    f = fopen(dat, "w");
    int n = 0;
    for (int i = 0; f && i < rep->n_rows; i++) {
        const RowResult *r = &rep->rows[i];
        if (r->same_as[0] || !isfinite(deployed_speed(r)) || !isfinite(r->rL)) continue;
        fprintf(f, "%g %g \"%s\"\n", deployed_speed(r), r->rL, r->name);
        n++;
    }
    if (f) fclose(f);
    g = n ? fopen(gp, "w") : NULL;
    if (g) {
        fprintf(g,
                "set terminal pngcairo size 1100,700\nset output '%s'\nset xlabel 'generation speed-up over the "
                "teacher (batch 32, the deployed search)'\nset ylabel 'test ROUGE-L'\nset logscale x 2\nset grid\n"
                "set arrow from %g, graph 0 to %g, graph 1 nohead dashtype 2\n"
                "plot '%s' using 1:2 with points pt 7 notitle, '' using 1:2:3 with labels offset 0.5,0.5 left font ',8' notitle\n",
                png, rep->speed_bar, rep->speed_bar, dat);
        fclose(g);
        if (run_gnuplot(gp)) fprintf(md, "![test ROUGE-L against speed-up](quality-vs-speed.png)\n\n");
        else fprintf(md, "(gnuplot could not draw %s; its data and script are beside it)\n\n", png);
    }
}

int study_report_write(const StudyReport *rep) {
    Ci *cis = calloc((size_t)rep->n_rows + 1, sizeof(Ci));
    if (!cis) return tt_err("out of memory");
    const RowResult *ft = rep->ft >= 0 ? &rep->rows[rep->ft] : NULL;
    for (int i = 0; ft && i < rep->n_rows; i++) {
        const RowResult *r = &rep->rows[i];
        if (!r->gen_path[0] || !ft->gen_path[0] || !strcmp(r->gen_path, ft->gen_path)) continue;
        if (ci_against(ft->gen_path, r->gen_path, &cis[i])) {
            tt_info("study: report: no interval for %s: %s", r->name, tt_errmsg());
            cis[i].have = 0;
        }
    }
    /* results.json */
    cJSON *root = cJSON_CreateObject();
    const int picks[3] = {rep->teacher, rep->ft, rep->best};
    const char *keys[3] = {"teacher", "ft_student", "best"};
    for (int k = 0; k < 3; k++) {
        if (picks[k] >= 0) cJSON_AddItemToObject(root, keys[k], row_json(rep, &rep->rows[picks[k]], &cis[picks[k]]));
        else cJSON_AddNullToObject(root, keys[k]);
    }
    cJSON *rows = cJSON_AddArrayToObject(root, "rows");
    for (int i = 0; i < rep->n_rows; i++) cJSON_AddItemToArray(rows, row_json(rep, &rep->rows[i], &cis[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char path[800];
    snprintf(path, sizeof path, "%s/results.json", rep->out_dir);
    int rc = text ? atomic_write_file(path, text, strlen(text)) : tt_err("out of memory");
    free(text);
    if (rc) {
        free(cis);
        return -1;
    }

    /* RESULTS.md */
    char mdp[800];
    snprintf(mdp, sizeof mdp, "%s/RESULTS.md.tmp", rep->out_dir);
    FILE *md = fopen(mdp, "w");
    if (!md) {
        free(cis);
        return tt_err("%s: cannot write", mdp);
    }
    fprintf(md, "# Study results\n\nWritten by `tutor study`.\n\n%s\n", rep->header);
    const RowResult *T = rep->teacher >= 0 ? &rep->rows[rep->teacher] : NULL;
    const RowResult *B = rep->best >= 0 ? &rep->rows[rep->best] : NULL;
    fprintf(md, "## The main claim\n\n");
    if (T && ft && B) {
        double keep = 100 * B->rL / T->rL, gap = T->rL - ft->rL;
        double closed = gap != 0 ? 100 * (B->rL - ft->rL) / gap : NAN;
        const Ci *bc = &cis[rep->best];
        char rl[96] = "-", bl[96] = "-";
        if (bc->have) {
            snprintf(rl, sizeof rl, "%+.2f [%+.2f, %+.2f]", bc->rL.delta, bc->rL.lo, bc->rL.hi);
            snprintf(bl, sizeof bl, "%+.2f [%+.2f, %+.2f]", bc->bleu.delta, bc->bleu.lo, bc->bleu.hi);
        }
        fprintf(md,
                "- Best student (by dev ROUGE-L among students >= %.1fx the teacher's speed, S3 on): **%s** (%s).\n"
                "- Test ROUGE-L: teacher %.2f, fine-tuned student (%s) %.2f, best %.2f: the best keeps **%.1f%%** of the "
                "teacher's ROUGE-L at **%.2fx** its generation speed (greedy %.2fx).\n"
                "- Share of the fine-tuned-student-to-teacher gap closed: **%.1f%%** (gap %.2f ROUGE-L).\n"
                "- Best - fine-tuned, paired bootstrap 95%% interval: ROUGE-L %s; BLEU %s.\n\n",
                rep->speed_bar, B->name, B->what, T->rL, ft->name, ft->rL, B->rL, keep, deployed_speed(B),
                B->speed_greedy, closed, gap, rl, bl);
        /* the bars of the study (issue 11): each met or not, with its number */
        int b1 = keep >= 90, b2 = deployed_speed(B) >= rep->speed_bar, b3 = isfinite(closed) && closed >= 60,
            b4 = bc->have && bc->rL.lo > 0;
        fprintf(md,
                "| bar | needed | here | met |\n|---|---|---|---|\n"
                "| share of the teacher's test ROUGE-L | >= 90%% | %.1f%% | %s |\n"
                "| generation speed-up over the teacher | >= %.1fx | %.2fx | %s |\n"
                "| share of the fine-tuned-to-teacher gap closed | >= 60%% | %.1f%% | %s |\n"
                "| 95%% interval of best - fine-tuned (ROUGE-L) | above 0 | %s | %s |\n\n",
                keep, b1 ? "yes" : "**no**", rep->speed_bar, deployed_speed(B), b2 ? "yes" : "**no**", closed,
                b3 ? "yes" : "**no**", rl, b4 ? "yes" : "**no**");
    } else {
        fprintf(md, "Not all of teacher, fine-tuned student and best student have results yet.\n\n");
    }
    fprintf(md, "## Every row (test set)\n\n"
                "ROUGE as F x 100 (rouge-score, no stemming), BLEU sacreBLEU's corpus BLEU; Δ RL vs FT: the row's "
                "ROUGE-L minus the fine-tuned student's with the paired bootstrap 95%% interval (▲/▼: the interval "
                "excludes 0); speed-up: inputs per second over the teacher's at batch 32 with the deployed search "
                "(greedy in brackets); ExAccErr: exposure bias (%%, the teacher as oracle) at the middle and the "
                "full length; train: minutes of training (teacher forward / student generation / student step).\n\n");
    fprintf(md, "| row | stage | method | R-1 | R-2 | R-L | BLEU | Δ R-L vs FT [95%% CI] | dev R-L | params | "
                "speed-up | ExAccErr mid / full | train min (teacher / gen / step) |\n"
                "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < rep->n_rows; i++) {
        const RowResult *r = &rep->rows[i];
        char a[5][32], ci[96], sp[64], ex[64], tr[128], t1[16], t2[16], t3[16], t4[16], sg[32];
        fmt(a[0], 32, r->r1, 2), fmt(a[1], 32, r->r2, 2), fmt(a[2], 32, r->rL, 2), fmt(a[3], 32, r->bleu, 2);
        fmt(a[4], 32, r->dev_rougeL, 2);
        fmt_ci(ci, sizeof ci, &cis[i]);
        fmt(sg, sizeof sg, r->speed_greedy, 2);
        if (isfinite(deployed_speed(r))) snprintf(sp, sizeof sp, "%.2fx (%s)", deployed_speed(r), sg);
        else snprintf(sp, sizeof sp, "-");
        char e1[16], e2[16];
        fmt(e1, 16, r->exacc_mid, 1), fmt(e2, 16, r->exacc_full, 1);
        snprintf(ex, sizeof ex, "%s / %s", e1, e2);
        fmt_minutes(t1, 16, r->train_s), fmt_minutes(t2, 16, r->teacher_s), fmt_minutes(t3, 16, r->student_gen_s);
        fmt_minutes(t4, 16, r->student_s);
        if (isfinite(r->train_s)) snprintf(tr, sizeof tr, "%s (%s / %s / %s)", t1, t2, t3, t4);
        else snprintf(tr, sizeof tr, "-");
        char name[160];
        if (r->same_as[0]) snprintf(name, sizeof name, "%s (= %s)", r->name, r->same_as);
        else if (r->failed) snprintf(name, sizeof name, "%s (**failed**: %.100s)", r->name, r->error);
        else snprintf(name, sizeof name, "%s", r->name);
        fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %zu | %s | %s | %s |\n", name, r->stage, r->method,
                a[0], a[1], a[2], a[3], ci, a[4], r->params, sp, ex, tr);
    }
    fprintf(md, "\n## The stage decisions (on dev), against the paper's\n\n"
                "| stage | question | dev ROUGE-L of each arm | decision here | paper | reproduces |\n"
                "|---|---|---|---|---|---|\n%s\n",
                rep->decisions);
    /* seeds */
    fprintf(md, "## Seeds (test ROUGE-L)\n\n| row | seeds | mean | sd | min | max |\n|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < rep->n_rows; i++) {
        const RowResult *r = &rep->rows[i];
        if (r->same_as[0] || strstr(r->name, "-seed")) continue;
        Spread s = seed_spread(rep, r->name);
        if (s.n > 1)
            fprintf(md, "| %s | %d | %.2f | %.2f | %.2f | %.2f |\n", r->name, s.n, s.mean, s.sd, s.min, s.max);
    }
    /* cost per stage */
    fprintf(md, "\n## What each stage cost (training wall time of its rows)\n\n| stage | rows trained | minutes |\n|---|---:|---:|\n");
    const char *stages[] = {"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "ref", NULL};
    for (int k = 0; stages[k]; k++) {
        double s = 0;
        int n = 0;
        for (int i = 0; i < rep->n_rows; i++) {
            const RowResult *r = &rep->rows[i];
            if (strcmp(r->stage, stages[k]) || r->same_as[0] || !isfinite(r->train_s)) continue;
            s += r->train_s, n++;
        }
        if (n) fprintf(md, "| %s | %d | %.1f |\n", stages[k], n, s / 60);
    }
    fprintf(md, "\n");
    if (rep->n_rows) plots(rep, md);
    int bad = ferror(md);
    bad |= fclose(md) != 0;
    char final[800];
    snprintf(final, sizeof final, "%s/RESULTS.md", rep->out_dir);
    if (bad || rename(mdp, final)) {
        free(cis);
        return tt_err("%s: cannot write", final);
    }
    free(cis);
    return 0;
}
