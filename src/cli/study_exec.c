/* study_exec.c: the study's child processes. Each stage of `tutor study` is one of tutor's
 * own commands (generate, distill, eval) run as a child of this program, its output appended
 * to a log in the row's folder, so that a failure stays readable and a killed study resumes
 * each command with its own --resume. SIGINT and SIGTERM reach the children (which save a
 * checkpoint and stop) and then stop the study. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "study.h"
#include "tutor/core.h"

void argv_push(Argv *a, const char *s) {
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, sizeof(char *) * (size_t)cap);
        if (!v) {
            fprintf(stderr, "tutor: study: out of memory\n");
            exit(1);
        }
        a->v = v, a->cap = cap;
    }
    a->v[a->n] = strdup(s);
    if (!a->v[a->n]) {
        fprintf(stderr, "tutor: study: out of memory\n");
        exit(1);
    }
    a->v[++a->n] = NULL;
}

void argv_pushf(Argv *a, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    argv_push(a, buf);
}

void argv_append(Argv *a, const Argv *b) {
    for (int i = 0; i < b->n; i++) argv_push(a, b->v[i]);
}

void argv_free(Argv *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

char *argv_join(const Argv *a) {
    size_t n = 1;
    for (int i = 0; i < a->n; i++) n += strlen(a->v[i]) * 4 + 3;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    for (int i = 0; i < a->n; i++) {
        const char *w = a->v[i];
        int plain = *w != 0;
        for (const char *c = w; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./,:=+@%", *c)) plain = 0;
        if (i) *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", w);
        } else {
            *p++ = '\'';
            for (const char *c = w; *c; c++) {
                if (*c == '\'') p += sprintf(p, "'\\''");
                else *p++ = *c;
            }
            *p++ = '\'';
        }
    }
    *p = 0;
    return s;
}

/* ---- signals ---- */

enum { MAX_CHILDREN = 64 };
static volatile sig_atomic_t g_interrupted;
static pid_t g_children[MAX_CHILDREN];

static void on_signal(int sig) {
    g_interrupted = 1;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] > 0) kill(g_children[i], sig == SIGINT ? SIGINT : SIGTERM);
}

/* The binary this study runs, held open from its start: every row runs the very same program
 * even when the file is replaced or deleted meanwhile (a rebuild while a study runs, or a
 * study binary swapped: a path resolved in the child named "... (deleted)" and every later
 * row failed to start). */
static int g_self_fd = -1;

void study_signals_install(void) {
    if (g_self_fd < 0) g_self_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int study_interrupted(void) { return g_interrupted != 0; }

static const char *self_path(void) {
    static char path[4096];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n <= 0) snprintf(path, sizeof path, "tutor");
        else path[n] = 0;
    }
    return path;
}

static pid_t spawn(const Argv *args, const char *log_path) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        tt_err("%s: cannot open: %s", log_path, strerror(errno));
        return -1;
    }
    char *line = argv_join(args);
    if (line) {
        dprintf(fd, "\n$ tutor %s\n", line);
        free(line);
    }
    const char *path = self_path(); /* resolved here, in the parent, once */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        tt_err("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* the child ignores nothing the parent set up: default signal handling */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(fd, 1);
        dup2(fd, 2);
        int nullfd = open("/dev/null", O_RDONLY);
        if (nullfd >= 0) dup2(nullfd, 0);
        char **v = calloc((size_t)args->n + 2, sizeof(char *));
        if (!v) _exit(127);
        v[0] = (char *)"tutor";
        for (int i = 0; i < args->n; i++) v[i + 1] = args->v[i];
        extern char **environ;
        if (g_self_fd >= 0) fexecve(g_self_fd, v, environ);
        execv(path, v);
        dprintf(2, "tutor: study: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fd);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] <= 0) {
            g_children[i] = pid;
            break;
        }
    return pid;
}

static void forget(pid_t pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] == pid) g_children[i] = 0;
}

/* The last non-empty line of a log (at most n - 1 bytes of it), or "". */
static void last_line(const char *path, char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char buf[4096];
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
        if (fseek(f, from, SEEK_SET) == 0) {
            size_t got = fread(buf, 1, sizeof buf - 1, f);
            buf[got] = 0;
            while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r')) buf[--got] = 0;
            char *nl = strrchr(buf, '\n');
            snprintf(out, n, "%s", nl ? nl + 1 : buf);
        }
    }
    fclose(f);
}

/* Waits for a child; every STUDY_PROGRESS_S seconds meanwhile, one line per running command:
 * the last line of its log. */
enum { STUDY_PROGRESS_S = 120 };
static int wait_one(pid_t *pid, int *status, const pid_t *pids, const char *const *logs, int n) {
    double last = tt_now_s();
    for (;;) {
        pid_t p = waitpid(-1, status, WNOHANG);
        if (p > 0) {
            forget(p);
            *pid = p;
            return 0;
        }
        if (p < 0 && errno != EINTR) return tt_err("waitpid: %s", strerror(errno));
        if (tt_now_s() - last >= STUDY_PROGRESS_S) {
            last = tt_now_s();
            for (int i = 0; i < n; i++) {
                if (pids[i] <= 0) continue;
                int running = 0;
                for (int c = 0; c < MAX_CHILDREN; c++) running |= g_children[c] == pids[i];
                if (!running) continue;
                /* named by the log's file (pts/beam-labeled.log), or its folder (rows/S3-kd/log.txt) */
                char line[300], dir[300];
                last_line(logs[i], line, sizeof line);
                snprintf(dir, sizeof dir, "%s", logs[i]);
                char *slash = strrchr(dir, '/');
                const char *file = slash ? slash + 1 : dir;
                if (strcmp(file, "log.txt")) {
                    char *dot = strrchr(dir, '.');
                    if (dot && dot > slash) *dot = 0;
                } else if (slash) {
                    *slash = 0;
                }
                const char *name = strcmp(file, "log.txt") ? file : strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
                if (line[0]) tt_info("study: [%s] %s", name, line);
            }
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int status_error(int status, const char *log_path, const Argv *args) {
    const char *cmd = args->n ? args->v[0] : "?";
    if (WIFEXITED(status))
        return tt_err("tutor %s exited with status %d; its log: %s", cmd, WEXITSTATUS(status), log_path);
    if (WIFSIGNALED(status))
        return tt_err("tutor %s was stopped by signal %d; its log: %s", cmd, WTERMSIG(status), log_path);
    return tt_err("tutor %s failed; its log: %s", cmd, log_path);
}

int study_run(const Argv *args, const char *log_path) {
    const char *const logs[1] = {log_path};
    return study_run_parallel(args, logs, 1, 1);
}

int study_run_parallel(const Argv *args, const char *const *logs, int n, int jobs) {
    return study_run_each(args, logs, n, jobs, NULL, NULL, 0);
}

int study_run_each(const Argv *args, const char *const *logs, int n, int jobs, int *ok, char *errs, size_t err_len) {
    if (jobs < 1) jobs = 1;
    if (jobs > MAX_CHILDREN) jobs = MAX_CHILDREN;
    pid_t *pids = calloc((size_t)(n ? n : 1), sizeof(pid_t));
    if (!pids) return tt_err("out of memory");
    int next = 0, running = 0, rc = 0;
    for (int i = 0; ok && i < n; i++) ok[i] = 0;
    while ((next < n && !rc && !g_interrupted) || running) {
        if (next < n && !rc && !g_interrupted && running < jobs) {
            pids[next] = spawn(&args[next], logs[next]);
            if (pids[next] < 0) rc = -1;
            else running++;
            next++;
            continue;
        }
        pid_t p = -1;
        int status = 0;
        if (wait_one(&p, &status, pids, logs, next)) {
            rc = -1;
            break;
        }
        for (int i = 0; i < next; i++)
            if (pids[i] == p) {
                running--;
                int good = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (ok) {
                    /* each command on its own: a failure is recorded, the others go on */
                    ok[i] = good;
                    if (!good && !g_interrupted) {
                        status_error(status, logs[i], &args[i]);
                        if (errs) snprintf(errs + (size_t)i * err_len, err_len, "%s", tt_errmsg());
                    }
                } else if (!good && !rc) {
                    rc = status_error(status, logs[i], &args[i]);
                }
            }
    }
    free(pids);
    if (!rc && g_interrupted) rc = tt_err("interrupted: rerun the same command to continue");
    return rc;
}
