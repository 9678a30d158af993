/* mpi-scaling.c: data-parallel training on this machine. The same training (a model of the
 * shipped teacher's shape by default, random data from the labeled file, the same global
 * batch) run as one process with T threads and as `mpirun -np T` with one thread per rank;
 * prints the training tokens/s of both with their ratio, and the measured allreduce time per
 * update with the share of the update it costs (from the ranks' metrics.jsonl). The volume of
 * an allreduce is the parameter count in floats: docs/scaling.md projects it to N machines.
 * Usage: mpi-scaling --data LABELED.jsonl --tokenizer TOK.json [--tutor PATH] [--ranks T]
 *                    [--steps N] [--config FILE] */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coprocess.h"
#include "tutor/core.h"

/* The mean of key over metrics.jsonl's training lines after the first (warm-up) one. */
static double metric_mean(const char *dir, const char *key, int *n_out) {
    char path[600], line[8192];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    double sum = 0;
    int n = 0, seen = 0;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (cJSON_IsNumber(v) && cJSON_GetObjectItemCaseSensitive(o, "loss")) {
            if (seen++) sum += v->valuedouble, n++;
        }
        cJSON_Delete(o);
    }
    if (f) fclose(f);
    if (n_out) *n_out = n;
    return n ? sum / n : 0;
}

int main(int argc, char **argv) {
    const char *data = NULL, *tok = NULL, *tutor = "build/release/tutor", *config = NULL;
    int ranks = 2, steps = 40;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(argv[i], "--tutor") && i + 1 < argc) tutor = argv[++i];
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc) ranks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else {
            fprintf(stderr, "usage: mpi-scaling --data LABELED.jsonl --tokenizer TOK.json [--tutor PATH] [--ranks T] "
                            "[--steps N] [--config FILE]\n");
            return 2;
        }
    }
    if (!data || !tok || ranks < 2 || steps < 10) {
        fprintf(stderr, "mpi-scaling: --data and --tokenizer are required; --ranks >= 2, --steps >= 10\n");
        return 2;
    }
    bench_print_machine();
    char dir[] = "/tmp/mpi-scaling-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char model[512];
    if (config) snprintf(model, sizeof model, "--config %s", config);
    else snprintf(model, sizeof model, "--d-model 256 --layers 4 --heads 4 --ffn 1024");
    char common[2048];
    snprintf(common, sizeof common,
             "train --tokenizer %s --data %s %s --dropout 0 --max-source-tokens 128 --max-target-tokens 32 "
             "--batch-tokens 4096 --update-tokens %d --max-steps %d --log-every 5 --eval-every 0 --save-every 0 "
             "--lr 5e-4 --no-progress --seed 1",
             tok, data, model, 512 * ranks, steps);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=%d %s %s --threads %d -o %s/one >%s/one.log 2>&1", ranks, tutor, common,
             ranks, dir, dir);
    printf("one process, %d threads ...\n", ranks);
    fflush(stdout);
    if (system(cmd) != 0) {
        fprintf(stderr, "mpi-scaling: %s failed (see %s/one.log)\n", cmd, dir);
        return 1;
    }
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np %d -x OPENBLAS_NUM_THREADS %s %s "
             "--threads 1 -o %s/ranks >%s/ranks.log 2>&1",
             ranks, tutor, common, dir, dir);
    printf("mpirun -np %d, one thread each ...\n", ranks);
    fflush(stdout);
    if (system(cmd) != 0) {
        fprintf(stderr, "mpi-scaling: %s failed (see %s/ranks.log)\n", cmd, dir);
        return 1;
    }
    char one[600], many[600];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(many, sizeof many, "%s/ranks", dir);
    int n1, n2;
    double tps1 = metric_mean(one, "tokens_per_s", &n1), tps2 = metric_mean(many, "tokens_per_s", &n2);
    double ar = metric_mean(many, "allreduce_s", NULL);
    /* the window is log_every = 5 updates: per update; an update's time from elapsed_s */
    double ar_update = ar / 5;
    double update_s = 0;
    {
        char path[700], line[8192];
        snprintf(path, sizeof path, "%s/metrics.jsonl", many);
        FILE *f = fopen(path, "r");
        double first_t = -1, last_t = 0;
        long first_s = 0, last_s = 0;
        while (f && fgets(line, sizeof line, f)) {
            cJSON *o = cJSON_Parse(line);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "elapsed_s"), *st = cJSON_GetObjectItemCaseSensitive(o, "step");
            if (cJSON_IsNumber(t) && cJSON_IsNumber(st) && cJSON_GetObjectItemCaseSensitive(o, "loss")) {
                if (first_t < 0) first_t = t->valuedouble, first_s = (long)st->valuedouble;
                last_t = t->valuedouble, last_s = (long)st->valuedouble;
            }
            cJSON_Delete(o);
        }
        if (f) fclose(f);
        if (last_s > first_s) update_s = (last_t - first_t) / (double)(last_s - first_s);
    }
    printf("one process, %d threads: %.0f tokens/s (%d windows)\n", ranks, tps1, n1);
    printf("mpirun -np %d, 1 thread each: %.0f tokens/s (%d windows)\n", ranks, tps2, n2);
    printf("ratio %.2f  (-np %d / one process with %d threads)\n", tps1 > 0 ? tps2 / tps1 : 0, ranks, ranks);
    printf("allreduce: %.2f ms per update, %.1f%% of an update of %.3f s\n",
           1000 * ar_update, update_s > 0 ? 100 * ar_update / update_s : 0, update_s);
    printf("(outputs in %s)\n", dir);
    return 0;
}
