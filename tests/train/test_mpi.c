/* test_mpi.c: data-parallel training under mpirun (issue 14). `mpirun -np 2 tutor train` for
 * 20 updates equals the single-process run with the same global batch to float rounding
 * (bound: 1e-5 on any parameter), two -np 2 runs are bit-identical, and a -np 2 run stopped at
 * update 10 and resumed reaches the straight run's parameters bit for bit (and, resumed by one
 * process, to float rounding); `mpirun -np 2 tutor
 * generate` writes the single-process file byte for byte, resumed from a partial one too.
 * Skipped when the build has no MPI or mpirun is missing. Under the sanitizers (SANITIZE=1) the
 * ranks run the ASan build with LeakSanitizer suppressions for OpenMPI's own allocations
 * (tests/train/mpi-lsan.supp), full allocation stacks (the fast unwinder stops in libraries
 * built without frame pointers) and OpenMPI's plugins kept loaded at exit (so that their
 * frames have names to match). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/model.h"

static char g_dir[256];

static int sanitized(void) {
    const char *san = getenv("SANITIZE");
    return san && !strcmp(san, "1");
}

/* mpirun with two ranks, as root, on a machine with fewer cores if need be, a rank waiting in
 * a collective yielding its core (OpenMPI busy-polls otherwise: beside other work on a
 * 2-core machine the polling rank starved its peer, and a 12-second run had not finished
 * after 15 minutes); under the sanitizers with what LeakSanitizer needs to tell OpenMPI's
 * allocations from ours */
static const char *np2(void) {
    static char buf[1600];
    if (!sanitized()) return "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 2";
    char supp[PATH_MAX];
    cr_assert(realpath("tests/train/mpi-lsan.supp", supp) != NULL);
    const char *asan = getenv("ASAN_OPTIONS");
    snprintf(buf, sizeof buf,
             "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np 2 "
             "-x OMPI_MCA_mca_base_component_disable_dlclose=1 "
             "-x ASAN_OPTIONS=%s%sfast_unwind_on_malloc=0 -x LSAN_OPTIONS=suppressions=%s:print_suppressions=0",
             asan ? asan : "", asan && *asan ? ":" : "", supp);
    return buf;
}

static int have_mpi(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "command -v mpirun >/dev/null 2>&1 && %s info --mpi 2>/dev/null | grep -q '^on'", tutor_bin());
    return system(cmd) == 0;
}

static void train(const char *launcher, const char *out, const char *extra) {
    char cmd[4000];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=1 %s %s train --tokenizer %s/tok.json --data %s/train.jsonl --d-model 32 --layers 1 "
             "--heads 2 --ffn 64 --dropout 0 --max-source-tokens 48 --max-target-tokens 16 --batch-tokens 600 "
             "--update-tokens 500 --lr 3e-3 --no-progress --eval-every 0 --save-every 5 --threads 1 --seed 3 -o %s/%s "
             "%s >>%s/log 2>&1",
             launcher, tutor_bin(), g_dir, g_dir, g_dir, out, extra, g_dir);
    cr_assert(system(cmd) == 0, "%s (log: %s/log)", cmd, g_dir);
}

static double max_diff(const char *a, const char *b) {
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/%s", g_dir, a);
    snprintf(pb, sizeof pb, "%s/%s", g_dir, b);
    Model *x = model_load(pa), *y = model_load(pb);
    cr_assert(x && y, "%s", tt_errmsg());
    cr_assert(x->n_params == y->n_params);
    double d = 0;
    for (size_t i = 0; i < x->n_params; i++) d = fmax(d, fabs((double)x->params[i] - (double)y->params[i]));
    model_free(x);
    model_free(y);
    return d;
}

Test(mpi, np2_equals_one_process_and_resumes, .timeout = 900) {
    if (!have_mpi()) cr_skip_test("no MPI in this build, or no mpirun");
    test_tmpdir(g_dir, sizeof g_dir);
    char cmd[6000];
    snprintf(cmd, sizeof cmd,
             "head -n 300 build/data/debdesc/labeled.jsonl > %s/train.jsonl && %s tokenizer train --data %s/train.jsonl "
             "--vocab 500 -o %s/tok.json >/dev/null 2>&1",
             g_dir, tutor_bin(), g_dir, g_dir);
    cr_assert(system(cmd) == 0);
    const char *mpi2 = np2();
    train("", "one", "--max-steps 20");
    train(mpi2, "two", "--max-steps 20");
    train(mpi2, "two-again", "--max-steps 20");
    double d = max_diff("one", "two");
    cr_assert(d <= 1e-5, "np 2 and one process differ by %g (bound 1e-5)", d);
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/two/model.safetensors", g_dir);
    snprintf(b, sizeof b, "%s/two-again/model.safetensors", g_dir);
    cr_assert(test_files_equal(a, b), "two -np 2 runs must be bit-identical");
    /* stopped at update 10, resumed to 20: the straight run's parameters */
    train(mpi2, "resumed", "--max-steps 10");
    train(mpi2, "resumed", "--max-steps 20 --resume");
    snprintf(b, sizeof b, "%s/resumed/model.safetensors", g_dir);
    cr_assert(test_files_equal(a, b), "a resumed -np 2 run must end where the straight one does");
    /* killed: SIGTERM to the ranks (mpirun's children) once the first checkpoint is there, as
     * a cluster's scheduler signals every process (mpirun run in the background here did not
     * pass its own SIGTERM on): they stop together at one update after saving; resumed, the
     * run ends where a straight one does, bit for bit */
    train(mpi2, "two40", "--max-steps 40");
    char kbin[4096];
    cr_assert(realpath(tutor_bin(), kbin) != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && (OPENBLAS_NUM_THREADS=1 %s %s train --tokenizer tok.json --data train.jsonl --d-model 32 "
             "--layers 1 --heads 2 --ffn 64 --dropout 0 --max-source-tokens 48 --max-target-tokens 16 --batch-tokens 600 "
             "--update-tokens 500 --lr 3e-3 --no-progress --eval-every 0 --save-every 5 --threads 1 --seed 3 -o %s/killed "
             "--max-steps 40 >>log 2>&1 & pid=$!; while [ ! -f killed/checkpoint.json ] && kill -0 $pid 2>/dev/null; "
             "do sleep 0.01; done; pkill -TERM -P $pid; wait $pid; exit 0)",
             g_dir, mpi2, kbin, g_dir);
    cr_assert(system(cmd) == 0);
    snprintf(a, sizeof a, "%s/killed/checkpoint.json", g_dir);
    cJSON *ck = json_load_object(a);
    cr_assert(ck != NULL, "the killed run left no checkpoint (%s/log)", g_dir);
    int killed_at = cJSON_GetObjectItemCaseSensitive(ck, "step")->valueint;
    cJSON_Delete(ck);
    cr_assert(killed_at >= 5, "checkpoint at step %d", killed_at);
    if (killed_at < 40) {
        train(mpi2, "killed", "--max-steps 40 --resume");
        snprintf(a, sizeof a, "%s/two40/model.safetensors", g_dir);
        snprintf(b, sizeof b, "%s/killed/model.safetensors", g_dir);
        cr_assert(test_files_equal(a, b), "a killed -np 2 run (checkpoint at %d) resumed must end where the straight "
                                          "one does", killed_at);
    } else {
        cr_log_warn("the SIGTERM came after the last update; the killed-run check did not run this time");
    }
    {
        snprintf(cmd, sizeof cmd, "grep -q 'terminated (SIGTERM); checkpoint saved' %s/log", g_dir);
        cr_expect(killed_at == 40 || system(cmd) == 0, "the killed ranks must say they saved (%s/log)", g_dir);
    }
    /* a checkpoint holds nothing rank-specific: an -np 2 run stopped at update 10 resumes in
     * one process to the same parameters, to float rounding */
    train(mpi2, "other-n", "--max-steps 10");
    train("", "other-n", "--max-steps 20 --resume");
    d = max_diff("two", "other-n");
    cr_assert(d <= 1e-5, "np 2 resumed by one process differs from np 2 by %g (bound 1e-5)", d);
    /* only rank 0 wrote: one metrics line per logged step */
    snprintf(cmd, sizeof cmd, "test $(grep -c '\"step\":20,' %s/two/metrics.jsonl) -eq 1", g_dir);
    cr_assert(system(cmd) == 0, "metrics.jsonl must be written once (by rank 0)");
    /* sharded generation: the same bytes as one process, also resumed from a partial file */
    char bin[4096];
    cr_assert(realpath(tutor_bin(), bin) != NULL);
    snprintf(cmd, sizeof cmd,
             "head -n 45 build/data/debdesc/test.jsonl > %s/in.jsonl && cd %s && "
             "OPENBLAS_NUM_THREADS=1 %s generate --model one --input in.jsonl --sample --num-return 2 --batch-size 4 "
             "--threads 1 -o g1.jsonl --no-progress 2>>log && "
             "OPENBLAS_NUM_THREADS=1 %s %s generate --model one --input in.jsonl --sample --num-return 2 --batch-size 4 "
             "--threads 1 -o g2.jsonl --no-progress 2>>log && cmp g1.jsonl g2.jsonl && head -n 13 g1.jsonl > g3.jsonl && "
             "OPENBLAS_NUM_THREADS=1 %s %s generate --model one --input in.jsonl --sample --num-return 2 --batch-size 4 "
             "--threads 1 -o g3.jsonl --resume --no-progress 2>>log && cmp g1.jsonl g3.jsonl",
             g_dir, g_dir, bin, mpi2, bin, mpi2, bin);
    cr_assert(system(cmd) == 0, "sharded generation must equal one process's, resumed too (%s/log)", g_dir);
    /* what is not supported under mpirun is refused, saying so */
    snprintf(cmd, sizeof cmd,
             "cd %s && ! OPENBLAS_NUM_THREADS=1 %s %s distill --teacher one --init one --data train.jsonl "
             "--max-steps 2 --teacher-cache exact --threads 1 --no-progress -o d > cache.log 2>&1 && "
             "grep -q 'teacher-cache is not supported under mpirun' cache.log && test ! -e d/model.safetensors",
             g_dir, mpi2, bin);
    cr_assert(system(cmd) == 0, "--teacher-cache under mpirun must be refused (%s/cache.log)", g_dir);
    test_rmtree(g_dir);
}
