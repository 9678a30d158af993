/* study.h: `tutor study`, the paper's study rerun on any task (cmd_study.c: the plan and its
 * stages; study_exec.c: running tutor's own commands as child processes, logged and resumable;
 * study_report.c: results.json, RESULTS.md and the plots). docs/study.md describes it. */
#ifndef TUTOR_STUDY_H
#define TUTOR_STUDY_H
#include <cjson/cJSON.h>
#include <stddef.h>

#include "tutor/model.h"

/* ---- argument vectors ---- */
typedef struct {
    char **v;
    int n, cap;
} Argv;
void argv_push(Argv *a, const char *s);
void argv_pushf(Argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void argv_append(Argv *a, const Argv *b);
void argv_free(Argv *a);
/* The arguments joined for a log line or a shell (quoted where needed), malloc'd. */
char *argv_join(const Argv *a);

/* ---- child processes ---- */
/* Runs `tutor ARGS` (this program) with stdout and stderr appended to log_path; waits.
 * 0 when it exited with status 0; -1 with an error naming the log otherwise. */
int study_run(const Argv *args, const char *log_path);
/* Up to `jobs` of the n commands at once; each its own log. ok[i] receives 1 for success.
 * Returns 0 when all succeeded, else -1 naming the first failure's log. */
int study_run_parallel(const Argv *args, const char *const *logs, int n, int jobs);
/* The same, but a failed command does not stop the others: ok[i] says whether command i
 * succeeded, errs (n strings of err_len, may be NULL) why not. -1 only when interrupted or a
 * command could not be started. */
int study_run_each(const Argv *args, const char *const *logs, int n, int jobs, int *ok, char *errs, size_t err_len);
/* SIGINT/SIGTERM: forwarded to the running children (which save and stop); the study stops
 * after them. */
void study_signals_install(void);
int study_interrupted(void);

/* ---- results of one row ---- */
typedef struct {
    int have;
    int failed;                       /* training failed: error says why; no numbers */
    char error[256];
    char name[64], stage[8], role[16], method[96], what[256], same_as[64];
    int seed;
    size_t params;
    double dev_rougeL;                /* full dev set, the deployed decoding */
    double r1, r2, rL, bleu;          /* test, 0-100 */
    double speed_greedy, speed_beam;  /* inputs/s over the teacher's, batch 32, same search */
    double exacc_mid, exacc_full;     /* ExAccErr (%) at the middle and the full length */
    int exacc_mid_len, exacc_full_len;
    double train_s, teacher_s, student_gen_s, student_s;
    char dir[512];                    /* the model directory ("" for lead) */
    char gen_path[512];               /* test generations (JSONL with "prediction") */
} RowResult;

/* Reads a row's row.json (written by study_row_save); 0 with r->have = 0 when absent. */
int study_row_load(const char *path, RowResult *r);
int study_row_save(const char *path, const RowResult *r);

/* ---- the report ---- */
typedef struct {
    const char *out_dir;
    const char *test_path;
    const char *target_field;
    RowResult *rows;
    int n_rows;
    int teacher, ft, best; /* indices into rows, -1 when missing */
    double speed_bar;      /* the student's required speed-up */
    const char *decisions; /* markdown: one line per stage decision */
    const char *header;    /* markdown: the settings, data and budget */
    int seeds;
} StudyReport;
/* results.json, RESULTS.md and the gnuplot plots into out_dir. 0 or -1. */
int study_report_write(const StudyReport *rep);

#endif
