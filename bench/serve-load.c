/* serve-load.c: `tutor serve` under load, on 127.0.0.1 only, bounded in requests and time.
 * Starts the server on a model, then for 1, 8 and 32 concurrent clients sends the test inputs
 * (one input per request, the model's decoding), and prints requests/s, p50/p99 latency and
 * errors for each; beside it, `tutor generate` on the same inputs at batch 1 (one process,
 * timed whole) as the reference for one client; and the server's resident memory after the
 * warm-up and at the end. Prints
 *   ratio_1   = server throughput at 1 client / tutor generate at batch 1   (bar: >= 0.85)
 *   ratio_32  = server throughput at 32 clients / at 1 client               (bar: >= 4)
 *   rss_drift = RSS at the end / RSS after warm-up                          (bar: <= 1.05)
 * Usage: serve-load --model DIR --data TEST.jsonl [--tutor PATH] [--requests N] [--threads N]
 *                   [--max-seconds S] [--num-beams N]
 * --num-beams N sends "parameters": {"num_beams": N} with every request (and times tutor
 * generate --beam N); without it, the model's own decoding (its generation_config.json). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coprocess.h"
#include "tutor/core.h"

static int http_post(int port, const char *body, int *status) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    char head[256];
    size_t blen = strlen(body);
    int hn = snprintf(head, sizeof head, "POST /generate HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", blen);
    if (write(fd, head, (size_t)hn) != hn || write(fd, body, blen) != (ssize_t)blen) {
        close(fd);
        return -1;
    }
    char buf[8192];
    ssize_t got, n = 0;
    while ((got = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0) {
        n += got;
        if ((size_t)n >= sizeof buf - 1) n = 0; /* only the status line matters */
    }
    close(fd);
    buf[n] = 0;
    *status = -1;
    sscanf(buf, "HTTP/1.%*d %d", status);
    return 0;
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

typedef struct {
    int port, n_bodies;
    char **bodies;
    int next, total, errors;
    double *lat, t_end;
    pthread_mutex_t mu;
} Load;

static void *client(void *arg) {
    Load *L = arg;
    for (;;) {
        pthread_mutex_lock(&L->mu);
        int i = L->next < L->total && tt_now_s() < L->t_end ? L->next++ : -1;
        pthread_mutex_unlock(&L->mu);
        if (i < 0) break;
        int st;
        double t0 = tt_now_s();
        int rc = http_post(L->port, L->bodies[i % L->n_bodies], &st);
        double dt = tt_now_s() - t0;
        pthread_mutex_lock(&L->mu);
        L->lat[i] = dt;
        if (rc || st != 200) L->errors++;
        pthread_mutex_unlock(&L->mu);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *tutor = "build/release/tutor";
    int requests = 128, threads = 2, beams = 0;
    double max_s = 120;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--tutor") && i + 1 < argc) tutor = argv[++i];
        else if (!strcmp(argv[i], "--requests") && i + 1 < argc) requests = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--num-beams") && i + 1 < argc) beams = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: serve-load --model DIR --data TEST.jsonl [--tutor PATH] [--requests N] [--threads N] "
                            "[--max-seconds S] [--num-beams N]\n");
            return 2;
        }
    }
    if (!model || !data || requests < 1) {
        fprintf(stderr, "serve-load: --model and --data are required\n");
        return 2;
    }
    bench_print_machine();
    if (beams > 0) printf("decoding: num_beams %d in every request (the rest of the model's generation_config.json)\n", beams);
    else printf("decoding: the model's generation_config.json\n");
    /* the request bodies: the first `requests` sources */
    FILE *f = fopen(data, "r");
    if (!f) {
        fprintf(stderr, "serve-load: %s: cannot open\n", data);
        return 1;
    }
    char **bodies = calloc((size_t)requests, sizeof(char *));
    char line[1 << 16];
    int nb = 0;
    char inputs_path[] = "/tmp/serve-load-XXXXXX";
    int tfd = mkstemp(inputs_path);
    FILE *inputs = tfd >= 0 ? fdopen(tfd, "w") : NULL;
    while (nb < requests && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "source");
        if (cJSON_IsString(s)) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "inputs", s->valuestring);
            if (beams > 0) cJSON_AddNumberToObject(cJSON_AddObjectToObject(b, "parameters"), "num_beams", beams);
            bodies[nb++] = cJSON_PrintUnformatted(b);
            cJSON_Delete(b);
            if (inputs) fprintf(inputs, "%s", line);
        }
        cJSON_Delete(o);
    }
    fclose(f);
    if (inputs) fclose(inputs);
    if (nb == 0) {
        fprintf(stderr, "serve-load: no sources in %s\n", data);
        return 1;
    }
    /* the reference: tutor generate at batch 1 on the same inputs */
    char cmd[4096];
    char beam_flag[32] = "";
    if (beams > 0) snprintf(beam_flag, sizeof beam_flag, " --beam %d", beams);
    snprintf(cmd, sizeof cmd,
             "%s generate --model %s --input %s --batch-size 1 --threads %d%s --no-progress -o /dev/null 2>/dev/null",
             tutor, model, inputs_path, threads, beam_flag);
    double t0 = tt_now_s();
    if (system(cmd) != 0) {
        fprintf(stderr, "serve-load: %s failed\n", cmd);
        return 1;
    }
    double gen_rps = nb / (tt_now_s() - t0);
    /* the server */
    int fds[2];
    if (pipe(fds)) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        char th[16];
        snprintf(th, sizeof th, "%d", threads);
        execl(tutor, "tutor", "serve", "--model", model, "--port", "0", "--threads", th, "--queue", "1024", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *po = fdopen(fds[0], "r");
    int port = 0;
    if (po && fgets(line, sizeof line, po)) {
        char *p = strstr(line, "127.0.0.1:");
        if (p) port = atoi(p + 10);
    }
    if (!port) {
        fprintf(stderr, "serve-load: the server did not start\n");
        kill(pid, SIGKILL);
        return 1;
    }
    /* warm-up: every body once from one client, then once from 32 at a time (the largest
     * batches size the server's buffers) */
    for (int i = 0; i < nb; i++) {
        int st;
        http_post(port, bodies[i], &st);
    }
    {
        Load W = {port, nb, bodies, 0, nb, 0, calloc((size_t)nb, sizeof(double)), tt_now_s() + max_s, PTHREAD_MUTEX_INITIALIZER};
        pthread_t th[32];
        for (int k = 0; k < 32; k++) pthread_create(&th[k], NULL, client, &W);
        for (int k = 0; k < 32; k++) pthread_join(th[k], NULL);
        free(W.lat);
    }
    long rss0 = rss_kb(pid);
    static const int conc[3] = {1, 8, 32};
    double rps[3];
    int errors = 0;
    for (int c = 0; c < 3; c++) {
        Load L = {port, nb, bodies, 0, nb, 0, calloc((size_t)nb, sizeof(double)), tt_now_s() + max_s, PTHREAD_MUTEX_INITIALIZER};
        pthread_t th[32];
        double s0 = tt_now_s();
        for (int k = 0; k < conc[c]; k++) pthread_create(&th[k], NULL, client, &L);
        for (int k = 0; k < conc[c]; k++) pthread_join(th[k], NULL);
        double el = tt_now_s() - s0;
        int done = L.next;
        qsort(L.lat, (size_t)done, sizeof(double), cmp_d);
        rps[c] = done / el;
        errors += L.errors;
        printf("%2d clients: %4d requests in %6.2f s, %7.2f requests/s, latency p50 %7.1f ms, p99 %7.1f ms, %d errors\n",
               conc[c], done, el, rps[c], 1000 * L.lat[done / 2], 1000 * L.lat[(int)(0.99 * (done - 1))], L.errors);
        free(L.lat);
    }
    long rss1 = rss_kb(pid);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    printf("tutor generate --batch-size 1 on the same %d inputs: %.2f inputs/s\n", nb, gen_rps);
    printf("ratio_1 %.2f  (server at 1 client / tutor generate at batch 1; bar >= 0.85)\n", rps[0] / gen_rps);
    printf("ratio_32 %.2f  (server at 32 clients / at 1 client; bar >= 4)\n", rps[2] / rps[0]);
    printf("rss after warm-up %ld kB, at the end %ld kB: rss_drift %.3f (bar <= 1.05); errors %d; server exit %d\n", rss0, rss1,
           rss0 > 0 ? (double)rss1 / rss0 : 0, errors, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    unlink(inputs_path);
    for (int i = 0; i < nb; i++) free(bodies[i]);
    free(bodies);
    return 0;
}
