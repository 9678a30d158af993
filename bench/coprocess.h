/* coprocess.h: what the benchmarks share: the PyTorch side run as a coprocess on a pipe (it
 * prints "ready" when built, then answers one line per request line, and exits on "quit"),
 * and the median of a set of timings. Header-only: each benchmark is one executable. */
#ifndef TUTOR_BENCH_COPROCESS_H
#define TUTOR_BENCH_COPROCESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    FILE *to, *from;
    pid_t pid;
} Coprocess;

/* Starts /usr/bin/python3 with argv (argv[0] "python3", NULL-terminated) and waits for its
 * "ready" line. 0 or -1. */
static inline int coprocess_start(Coprocess *c, char *const argv[]) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv("/usr/bin/python3", argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->to = fdopen(in[1], "w");
    c->from = fdopen(out[0], "r");
    c->pid = pid;
    char line[256];
    if (!fgets(line, sizeof line, c->from) || strncmp(line, "ready", 5)) return -1;
    return 0;
}

static inline void coprocess_stop(Coprocess *c) {
    if (!c->to) return;
    fprintf(c->to, "quit\n");
    fclose(c->to);
    fclose(c->from);
    waitpid(c->pid, NULL, 0);
    c->to = NULL;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of x[0..n) (x is left as it is). */
static inline double bench_median(const double *x, int n) {
    double *c = malloc(sizeof(double) * (size_t)n);
    memcpy(c, x, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* The machine a benchmark ran on: CPU model and the instruction sets tutor's kernels and
 * OpenBLAS may use, detected at run time. */
static inline void bench_print_machine(void) {
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        fclose(f);
    }
    __builtin_cpu_init();
    printf("machine: %s; %s%s%s%s; %ld cores online\n", model, __builtin_cpu_supports("avx2") ? "AVX2" : "no AVX2",
           __builtin_cpu_supports("fma") ? " FMA" : "", __builtin_cpu_supports("avx512f") ? " AVX-512F" : "",
           __builtin_cpu_supports("avx512vnni") ? " AVX-512-VNNI" : "", sysconf(_SC_NPROCESSORS_ONLN));
}

#endif
