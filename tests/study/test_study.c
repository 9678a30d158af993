/* test_study.c: `tutor study --quick` end to end on a tiny teacher: every row of every stage
 * is produced with finite numbers, results.json has the documented shape, RESULTS.md and the
 * decisions are written, a rerun trains nothing again, and bad flags are refused. */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "../testlib.h"

static char g_dir[256], g_teacher[300], g_lab[300], g_unl[300], g_dev[300], g_test[300], g_gold[300];

/* A tiny teacher (d_model 64, 2 + 2 layers; a pretraining step gives its tokenizer <mask>,
 * as the study's pretrained student needs) trained for a few steps on debdesc pairs: the
 * study's machinery, not its numbers, is under test. */
static void setup_task(void) {
    test_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_lab, sizeof g_lab, "%s/labeled.jsonl", g_dir);
    snprintf(g_unl, sizeof g_unl, "%s/unlabeled.jsonl", g_dir);
    snprintf(g_gold, sizeof g_gold, "%s/unlabeled-gold.jsonl", g_dir);
    snprintf(g_dev, sizeof g_dev, "%s/dev.jsonl", g_dir);
    snprintf(g_test, sizeof g_test, "%s/test.jsonl", g_dir);
    snprintf(g_teacher, sizeof g_teacher, "%s/teacher", g_dir);
    const char *d = "build/data/debdesc";
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "head -n 400 %s/labeled.jsonl > %s && head -n 200 %s/unlabeled.jsonl > %s && "
             "head -n 200 %s/unlabeled-gold.jsonl > %s && head -n 40 %s/dev.jsonl > %s && head -n 40 %s/test.jsonl > %s && "
             "%s tokenizer train --data %s --vocab 700 -o %s/tok.json >/dev/null 2>&1 && "
             "%s pretrain --tokenizer %s/tok.json --data %s --d-model 64 --layers 2 --heads 2 --ffn 128 "
             "--max-source-tokens 48 --batch-tokens 1500 --max-steps 2 --heldout 8 --no-progress -o %s/pre "
             ">/dev/null 2>&1 && "
             "%s train --init %s/pre --data %s --max-source-tokens 48 --max-target-tokens 16 --batch-tokens 1500 "
             "--max-steps 40 --lr 3e-3 --no-progress --eval-every 0 -o %s >/dev/null 2>&1",
             d, g_lab, d, g_unl, d, g_gold, d, g_dev, d, g_test, tutor_bin(), g_lab, g_dir, tutor_bin(), g_dir, g_lab,
             g_dir, tutor_bin(), g_dir, g_lab, g_teacher);
    cr_assert(system(cmd) == 0, "setup failed: %s", cmd);
}

/* Under the sanitizers (make test SANITIZE=1, ten times slower) only the main --quick test
 * runs: the others cover paths the release run checks. */
static void skip_under_sanitizer(void) {
    const char *san = getenv("SANITIZE");
    if (san && !strcmp(san, "1")) cr_skip_test("release build only (SANITIZE=1 runs the main --quick test)");
}

static int run_study(const char *out, const char *extra, const char *log) {
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "%s study --quick --teacher %s --labeled %s --unlabeled %s --dev %s --test %s --unlabeled-gold %s "
             "-o %s --threads 1 %s >%s 2>&1",
             tutor_bin(), g_teacher, g_lab, g_unl, g_dev, g_test, g_gold, out, extra, log);
    return system(cmd);
}

static const cJSON *row_named(const cJSON *rows, const char *name) {
    for (const cJSON *r = rows->child; r; r = r->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "row");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return r;
    }
    return NULL;
}

static double num_at(const cJSON *o, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static time_t mtime(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_mtime : 0;
}

Test(study, quick_every_row_and_resume, .timeout = 900) {
    setup_task();
    char out[400], log[400];
    snprintf(out, sizeof out, "%s/study", g_dir);
    snprintf(log, sizeof log, "%s/study.log", g_dir);
    int rc = run_study(out, "", log);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 30 %s >&2", log);
    if (rc) cr_assert(system(cmd) >= 0);
    cr_assert(rc == 0, "tutor study --quick failed");

    char path[500];
    snprintf(path, sizeof path, "%s/results.json", out);
    cJSON *root = json_load_object(path);
    cr_assert(root != NULL, "%s: %s", path, tt_errmsg());
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    cr_assert(cJSON_IsArray(rows));
    static const char *const want[] = {
        "ref-lead", "ref-teacher", "S1-ed", "S1-do", "S2-shrink-dec", "S2-random-dec", "S2-shrink-encdec",
        "S2-random-encdec", "S2-pretrained", "S3-ft", "S3-kd", "S3-noisy-kd", "S3-attention-kd", "S4-ft-pt", "S4-kd-pt",
        "S5-labeled", "S5-labeled-unlabeled", "S6-one", "S6-k", "S7-beam", "S7-sample", "S7-hightemp",
        "S8-teacher-pt", "S8-student-pt", "S8-joint", "S9-rkl", "S9-jsd", "S9-skl", "S9-gkd", "S9-minillm",
        "S9-cache-exact", "S9-cache-sparse", "ref-ft-all-gold", NULL};
    for (int k = 0; want[k]; k++) {
        const cJSON *r = row_named(rows, want[k]);
        cr_assert(r != NULL, "row %s missing from results.json", want[k]);
        for (const char *const *m = (const char *const[]){"rouge1", "rouge2", "rougeL", "bleu", NULL}; *m; m++) {
            double v = num_at(r, "test", *m);
            cr_assert(isfinite(v) && v >= 0 && v <= 100, "%s: test %s = %g", want[k], *m, v);
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(r, "role");
        cr_assert(cJSON_IsString(role));
        if (!strcmp(role->valuestring, "student")) {
            cr_assert(num_at(r, "params", NULL) > 0, "%s: no parameter count", want[k]);
            double sp = num_at(r, "speedup_vs_teacher", NULL);
            cr_assert(isfinite(sp) && sp > 0, "%s: speed-up %g", want[k], sp);
            cr_assert(isfinite(num_at(r, "train_s", NULL)), "%s: no training time", want[k]);
            cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r, "exaccerr")), "%s: no exposure bias", want[k]);
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "stage");
            cr_assert(cJSON_IsString(st) && (st->valuestring[0] == 'S' || !strcmp(st->valuestring, "ref")));
        }
    }
    /* the teacher's speed-up is 1 by definition; the fine-tuned student is S3-ft */
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "teacher");
    cr_assert(num_at(t, "speedup_vs_teacher", NULL) == 1);
    const cJSON *ft = cJSON_GetObjectItemCaseSensitive(root, "ft_student");
    cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ft, "row")));
    cr_assert(!strcmp(cJSON_GetObjectItemCaseSensitive(ft, "row")->valuestring, "S3-ft"));
    /* seeds: the three main rows have a second seed */
    int seeds = 0;
    for (const cJSON *r = rows->child; r; r = r->next) seeds += strstr(cJSON_GetObjectItemCaseSensitive(r, "row")->valuestring, "-seed2") != NULL;
    cr_assert(seeds == 3, "%d second-seed rows, want 3", seeds);
    /* a row compared with the fine-tuned student carries an interval */
    const cJSON *kd = row_named(rows, "S3-kd");
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(kd, "ci_vs_ft");
    cr_assert(cJSON_IsObject(ci), "S3-kd has no interval against the fine-tuned student");
    double lo = num_at(cJSON_GetObjectItemCaseSensitive(ci, "rougeL"), "lo95", NULL);
    double hi = num_at(cJSON_GetObjectItemCaseSensitive(ci, "rougeL"), "hi95", NULL);
    double dl = num_at(cJSON_GetObjectItemCaseSensitive(ci, "rougeL"), "delta", NULL);
    cr_assert(lo <= dl + 1e-9 && dl <= hi + 1e-9, "interval [%g, %g] around %g", lo, hi, dl);
    cJSON_Delete(root);
    size_t n0;

    /* S4 trains on the first of each input's K = 2 beam PTs, S6 on both (--pt-per-input) */
    snprintf(path, sizeof path, "%s/rows/S4-kd-pt/log.txt", out);
    char *s4 = read_file_text(path, &n0);
    cr_assert(s4 && strstr(s4, "1 per input"), "S4 must use one PT per input");
    free(s4);
    snprintf(path, sizeof path, "%s/rows/S6-k/log.txt", out);
    char *s6 = read_file_text(path, &n0);
    cr_assert(s6 && strstr(s6, "2 per input"), "S6-k must use K = 2 PTs per input");
    free(s6);
    /* a row's test evaluation timed the teacher beside it without scoring it
     * (tutor eval --baseline-speed-only) */
    snprintf(path, sizeof path, "%s/rows/S3-kd/test.json", out);
    cJSON *tj = json_load_object(path);
    cr_assert(tj != NULL);
    cr_assert(!cJSON_GetObjectItemCaseSensitive(tj, "baseline") && !cJSON_GetObjectItemCaseSensitive(tj, "differences"));
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "cost"), "model_over_baseline");
    cr_assert(num_at(q, "beam_inputs_per_s", NULL) > 0 && num_at(q, "greedy_inputs_per_s", NULL) > 0);
    cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(tj, "exposure_bias")));
    cJSON_Delete(tj);

    snprintf(path, sizeof path, "%s/RESULTS.md", out);
    size_t n;
    char *md = read_file_text(path, &n);
    cr_assert(md != NULL);
    cr_assert(strstr(md, "| S8 | whose PTs |") != NULL, "RESULTS.md has no S8 decision");
    cr_assert(strstr(md, "| S3-kd |") != NULL);
    cr_assert(strstr(md, "re-timed against the teacher in one sitting") != NULL, "RESULTS.md does not say the speeds "
                                                                                "were re-timed");
    free(md);
    /* every student re-timed in one sitting: a speed-only report beside its row */
    snprintf(path, sizeof path, "%s/rows/S3-kd/speed.json", out);
    cJSON *sj = json_load_object(path);
    cr_assert(sj != NULL, "no %s", path);
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sj, "cost"), "model_over_baseline");
    cr_assert(num_at(sq, "beam_inputs_per_s", NULL) > 0 && num_at(sq, "greedy_inputs_per_s", NULL) > 0);
    cr_assert(!cJSON_GetObjectItemCaseSensitive(sj, "model"), "a speed-only report has no scores");
    cJSON_Delete(sj);

    /* a rerun finds every row done: nothing is trained or evaluated again */
    char row[500];
    snprintf(row, sizeof row, "%s/rows/S3-kd/row.json", out);
    time_t before = mtime(row);
    snprintf(path, sizeof path, "%s/rows/S3-kd/model/model.safetensors", out);
    time_t model_before = mtime(path);
    sleep(1);
    snprintf(log, sizeof log, "%s/study2.log", g_dir);
    cr_assert(run_study(out, "", log) == 0);
    cr_assert(mtime(row) == before && mtime(path) == model_before, "a finished row was redone");
    char *text = read_file_text(log, &n);
    cr_assert(text && !strstr(text, "study: training"), "the rerun trained something:\n%s", text ? text : "");
    free(text);

    /* --status reads the folder and says where it stands */
    snprintf(log, sizeof log, "%s/status.log", g_dir);
    char scmd[1200];
    snprintf(scmd, sizeof scmd, "%s study --status -o %s > %s 2>&1", tutor_bin(), out, log);
    cr_assert(system(scmd) == 0, "tutor study --status failed");
    text = read_file_text(log, &n);
    cr_assert(text && strstr(text, "S3-kd") && strstr(text, " done ") && strstr(text, "0 failed, 0 training"),
              "%s", text ? text : "");
    free(text);
    snprintf(scmd, sizeof scmd, "%s study --status -o %s/nothing-here > /dev/null 2>&1", tutor_bin(), g_dir);
    cr_assert(system(scmd) != 0, "--status on a folder that is no study must fail");

    /* other settings in the same folder are refused */
    snprintf(log, sizeof log, "%s/study3.log", g_dir);
    cr_assert(run_study(out, "--speedup 3", log) != 0);
    text = read_file_text(log, &n);
    cr_assert(text && strstr(text, "other settings"), "%s", text ? text : "");
    free(text);
    test_rmtree(g_dir);
}

Test(study, bad_flags) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s study --teacher x --labeled x >/dev/null 2>&1", tutor_bin());
    cr_assert(WEXITSTATUS(system(cmd)) == 2, "missing flags must be refused");
    snprintf(cmd, sizeof cmd,
             "%s study --teacher x --labeled x --unlabeled x --dev x --test x -o /tmp/x --stages S3,S12 2>&1 | "
             "grep -q 'unknown stage'",
             tutor_bin());
    cr_assert(system(cmd) == 0, "an unknown stage must be named");
    snprintf(cmd, sizeof cmd, "%s study --help | grep -q 'S8 teacher PTs vs student PTs'", tutor_bin());
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd,
             "%s study --teacher x --labeled /nonexistent --unlabeled x --dev x --test x -o /tmp/x 2>&1 | grep -q "
             "'/nonexistent: no such file'",
             tutor_bin());
    cr_assert(system(cmd) == 0);
}

/* Without --teacher the study trains one first (tokenizer, pretraining, fine-tuning, tuned
 * decoding) into OUT/teacher, then runs the stages asked for (here S3 only). */
Test(study, trains_its_teacher, .timeout = 600) {
    skip_under_sanitizer();
    char dir[256], cmd[3000];
    test_tmpdir(dir, sizeof dir);
    const char *d = "build/data/debdesc";
    snprintf(cmd, sizeof cmd,
             "%s study --quick --labeled %s/labeled.jsonl --unlabeled %s/unlabeled.jsonl --dev %s/dev.jsonl "
             "--test %s/test.jsonl --vocab 400 --stages S3 --seeds 1 --threads 1 -o %s/study >%s/log 2>&1",
             tutor_bin(), d, d, d, d, dir, dir);
    int rc = system(cmd);
    if (rc) {
        snprintf(cmd, sizeof cmd, "tail -n 20 %s/log >&2", dir);
        cr_assert(system(cmd) >= 0);
    }
    cr_assert(rc == 0, "tutor study --quick without --teacher failed");
    char path[400];
    snprintf(path, sizeof path, "%s/study/teacher/model/model.safetensors", dir);
    cr_assert(file_exists(path), "no trained teacher");
    snprintf(path, sizeof path, "%s/study/teacher/model/generation_config.json", dir);
    cr_assert(file_exists(path), "the trained teacher's decoding was not tuned");
    snprintf(path, sizeof path, "%s/study/results.json", dir);
    cJSON *root = json_load_object(path);
    cr_assert(root != NULL);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    static const char *const want[] = {"ref-lead", "ref-teacher", "S1-ed", "S3-ft", "S3-kd", "S3-noisy-kd",
                                       "S3-attention-kd", NULL};
    for (int k = 0; want[k]; k++) cr_assert(row_named(rows, want[k]) != NULL, "row %s missing", want[k]);
    cr_assert(row_named(rows, "S4-kd-pt") == NULL && row_named(rows, "S8-joint") == NULL, "only S3 was asked for");
    cJSON_Delete(root);
    test_rmtree(dir);
}

/* A decoder-only (GPT-2) teacher: the other family's student is fine-tuned without it, and
 * KD, attention-relation KD, student PTs and Joint-Teaching run on decoder-only students. */
Test(study, decoder_only_teacher, .timeout = 600) {
    skip_under_sanitizer();
    char dir[256], cmd[3000];
    test_tmpdir(dir, sizeof dir);
    const char *d = "build/data/debdesc";
    snprintf(cmd, sizeof cmd,
             "head -n 300 %s/labeled.jsonl > %s/lab.jsonl && %s tokenizer train --data %s/lab.jsonl --vocab 600 -o "
             "%s/tok.json >/dev/null 2>&1 && %s pretrain --arch gpt2 --tokenizer %s/tok.json --data %s/lab.jsonl "
             "--d-model 64 --layers 2 --heads 2 --ffn 128 --max-source-tokens 48 --batch-tokens 1500 --max-steps 2 "
             "--heldout 8 --no-progress -o %s/pre >/dev/null 2>&1 && %s train --init %s/pre --data %s/lab.jsonl "
             "--max-source-tokens 48 --max-target-tokens 16 --batch-tokens 1500 --max-steps 20 --lr 3e-3 --no-progress "
             "--eval-every 0 -o %s/teacher >/dev/null 2>&1 && "
             "%s study --quick --teacher %s/teacher --labeled %s/labeled.jsonl --unlabeled %s/unlabeled.jsonl --dev "
             "%s/dev.jsonl --test %s/test.jsonl --stages S1,S3,S8 --seeds 1 --threads 1 -o %s/study >%s/log 2>&1",
             d, dir, tutor_bin(), dir, dir, tutor_bin(), dir, dir, dir, tutor_bin(), dir, dir, dir, tutor_bin(), dir, d,
             d, d, d, dir, dir);
    int rc = system(cmd);
    if (rc) {
        snprintf(cmd, sizeof cmd, "tail -n 20 %s/log >&2", dir);
        cr_assert(system(cmd) >= 0);
    }
    cr_assert(rc == 0, "tutor study --quick with a GPT-2 teacher failed");
    char path[400];
    snprintf(path, sizeof path, "%s/study/results.json", dir);
    cJSON *root = json_load_object(path);
    cr_assert(root != NULL);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    static const char *const want[] = {"S1-ed", "S1-do", "S3-ft", "S3-kd", "S3-noisy-kd", "S3-attention-kd",
                                       "S8-teacher-pt", "S8-student-pt", "S8-joint", NULL};
    for (int k = 0; want[k]; k++) cr_assert(row_named(rows, want[k]) != NULL, "row %s missing", want[k]);
    /* the student from S3 on is of the teacher's family */
    snprintf(path, sizeof path, "%s/study/rows/S3-kd/model/config.json", dir);
    char *cfg = read_file_text(path, &(size_t){0});
    cr_assert(cfg && strstr(cfg, "gpt2"), "the S3 student must be decoder-only like its teacher");
    free(cfg);
    cJSON_Delete(root);
    test_rmtree(dir);
}

/* A row whose training fails is recorded as failed (with the reason) and the study goes on:
 * here S3-noisy-kd finds a corrupted checkpoint in its folder. */
Test(study, failed_row_recorded_and_study_goes_on, .timeout = 600) {
    skip_under_sanitizer();
    setup_task();
    char out[400], path[500], log[400];
    snprintf(out, sizeof out, "%s/study", g_dir);
    snprintf(path, sizeof path, "%s/rows/S3-noisy-kd/model", out);
    cr_assert(make_dirs(path) == 0);
    snprintf(path, sizeof path, "%s/rows/S3-noisy-kd/model/checkpoint.json", out);
    TEST_ASSERT_OK(atomic_write_file(path, "{not json", 9));
    snprintf(log, sizeof log, "%s/failed.log", g_dir);
    /* run by a copy of tutor that is deleted as soon as it has started: the rows must still
     * run (the study execs the program it was started as, not a path that no longer exists) */
    char cmd[4000];
    snprintf(cmd, sizeof cmd,
             "cp %s %s/tutor-gone && (%s/tutor-gone study --quick --teacher %s --labeled %s --unlabeled %s --dev %s "
             "--test %s --unlabeled-gold %s -o %s --threads 1 --stages S3 --seeds 1 >%s 2>&1 & sleep 1; rm -f "
             "%s/tutor-gone; wait $!)",
             tutor_bin(), g_dir, g_dir, g_teacher, g_lab, g_unl, g_dev, g_test, g_gold, out, log, g_dir);
    int rc = system(cmd);
    cr_assert(rc == 0, "the study must finish despite one failed row (log %s)", log);
    snprintf(path, sizeof path, "%s/results.json", out);
    cJSON *root = json_load_object(path);
    cr_assert(root != NULL);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    const cJSON *bad = row_named(rows, "S3-noisy-kd");
    cr_assert(bad && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bad, "failed")), "S3-noisy-kd must be marked failed");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(bad, "error");
    cr_assert(cJSON_IsString(err) && strstr(err->valuestring, "log"), "the failure must point at its log");
    const cJSON *kd = row_named(rows, "S3-kd");
    cr_assert(kd && !cJSON_GetObjectItemCaseSensitive(kd, "failed") && isfinite(num_at(kd, "test", "rougeL")));
    cJSON_Delete(root);
    test_rmtree(g_dir);
}
