/* test_serve.c: `tutor serve` on a free loopback port. Answers equal `tutor generate` for the
 * same inputs and parameters (greedy, beam, sampling with a seed); answers do not depend on
 * concurrency; malformed JSON, wrong types, unknown fields, oversize bodies, wrong endpoints
 * and a full queue get their status codes; SIGTERM answers the request in flight and exits 0.
 * The client is a few lines of sockets (no curl). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "../testlib.h"

static char g_dir[256], g_model[300];

static void setup_model(void) {
    if (g_dir[0]) return;
    test_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_model, sizeof g_model, "%s/m", g_dir);
    char cmd[2000];
    snprintf(cmd, sizeof cmd,
             "head -n 200 build/data/debdesc/labeled.jsonl > %s/train.jsonl && head -n 12 build/data/debdesc/test.jsonl "
             "> %s/in.jsonl && %s tokenizer train --data %s/train.jsonl --vocab 500 -o %s/tok.json >/dev/null 2>&1 && "
             "%s train --tokenizer %s/tok.json --data %s/train.jsonl --d-model 64 --layers 1 --heads 2 --ffn 128 "
             "--max-source-tokens 48 --max-target-tokens 16 --batch-tokens 1500 --max-steps 20 --lr 3e-3 --no-progress "
             "--eval-every 0 -o %s >/dev/null 2>&1",
             g_dir, g_dir, tutor_bin(), g_dir, g_dir, tutor_bin(), g_dir, g_dir, g_model);
    cr_assert(system(cmd) == 0, "setup failed: %s", cmd);
}

static void cleanup(void) {
    if (g_dir[0]) test_rmtree(g_dir);
    g_dir[0] = 0;
}

typedef struct {
    pid_t pid;
    int port;
} Srv;

/* Starts tutor serve with extra flags (and env), reads the port it prints. */
static Srv start(const char *extra, const char *env) {
    int fds[2];
    cr_assert(pipe(fds) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        char cmd[1500];
        snprintf(cmd, sizeof cmd, "exec env %s %s serve --model %s --port 0 --threads 1 %s 2>>%s/serve.log",
                 env ? env : "", tutor_bin(), g_model, extra, g_dir);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[512] = "";
    cr_assert(fgets(line, sizeof line, f) != NULL, "tutor serve printed nothing (see %s/serve.log)", g_dir);
    fclose(f);
    char *p = strstr(line, "127.0.0.1:");
    cr_assert(p != NULL, "no address in: %s", line);
    return (Srv){pid, atoi(p + 10)};
}

static int stop(Srv *s) {
    kill(s->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        usleep(100000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    return -1; /* did not stop within 10 s */
}

/* One HTTP/1.0 request; the status, and the body into out (malloc'd). */
static int http(int port, const char *method, const char *path, const char *body, char **out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[512];
    int hn = snprintf(head, sizeof head, "%s %s HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, path, blen);
    if (write(fd, head, (size_t)hn) != hn || (blen && write(fd, body, blen) != (ssize_t)blen)) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while ((got = read(fd, buf + n, cap - n - 1)) > 0) {
        n += (size_t)got;
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[n] = 0;
    int status = -1;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    char *b = strstr(buf, "\r\n\r\n");
    if (out) *out = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

/* The targets `tutor generate` writes for in.jsonl with these flags, as one JSON list per line. */
static char **generate_file(const char *flags, int *n_lines) {
    char cmd[1500], path[400];
    snprintf(path, sizeof path, "%s/gen.jsonl", g_dir);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --input %s/in.jsonl -o %s --threads 1 --no-progress %s 2>/dev/null",
             tutor_bin(), g_model, g_dir, path, flags);
    cr_assert(system(cmd) == 0, "%s", cmd);
    FILE *f = fopen(path, "r");
    char **lines = calloc(64, sizeof(char *));
    char buf[1 << 15];
    int n = 0;
    while (n < 64 && fgets(buf, sizeof buf, f)) {
        cJSON *o = cJSON_Parse(buf);
        lines[n++] = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(o, "targets"));
        cJSON_Delete(o);
    }
    fclose(f);
    *n_lines = n;
    return lines;
}

/* The request body for every source of in.jsonl. */
static char *batch_body(const char *params) {
    char path[400];
    snprintf(path, sizeof path, "%s/in.jsonl", g_dir);
    FILE *f = fopen(path, "r");
    cJSON *root = cJSON_CreateObject(), *in = cJSON_AddArrayToObject(root, "inputs");
    char buf[1 << 15];
    while (fgets(buf, sizeof buf, f)) {
        cJSON *o = cJSON_Parse(buf);
        cJSON_AddItemToArray(in, cJSON_CreateString(cJSON_GetObjectItemCaseSensitive(o, "source")->valuestring));
        cJSON_Delete(o);
    }
    fclose(f);
    cJSON_AddItemToObject(root, "parameters", cJSON_Parse(params));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* The answer of a batch request as one list of texts per input, printed like generate's. */
static void check_equal(int port, const char *params, const char *flags, int k) {
    int n;
    char **want = generate_file(flags, &n);
    char *body = batch_body(params), *resp;
    int st = http(port, "POST", "/generate", body, &resp);
    cr_assert(st == 200, "status %d: %s", st, resp);
    cJSON *r = cJSON_Parse(resp);
    cr_assert(cJSON_IsArray(r) && cJSON_GetArraySize(r) == n, "%s", resp);
    int i = 0;
    for (const cJSON *e = r->child; e; e = e->next, i++) {
        cJSON *texts = cJSON_CreateArray();
        if (k == 1) {
            cJSON_AddItemToArray(texts, cJSON_CreateString(cJSON_GetObjectItemCaseSensitive(e, "generated_text")->valuestring));
        } else {
            for (const cJSON *x = e->child; x; x = x->next)
                cJSON_AddItemToArray(texts, cJSON_CreateString(cJSON_GetObjectItemCaseSensitive(x, "generated_text")->valuestring));
        }
        char *got = cJSON_PrintUnformatted(texts);
        cr_assert(!strcmp(got, want[i]), "input %d (%s): server %s, tutor generate %s", i, params, got, want[i]);
        free(got);
        cJSON_Delete(texts);
        free(want[i]);
    }
    cJSON_Delete(r);
    free(want);
    free(body);
    free(resp);
}

Test(serve, answers_equal_tutor_generate, .timeout = 120, .fini = cleanup) {
    setup_model();
    Srv s = start("", NULL);
    check_equal(s.port, "{}", "", 1);
    check_equal(s.port, "{\"num_beams\": 4, \"num_return_sequences\": 2, \"max_new_tokens\": 12}",
                "--beam 4 --num-return 2 --max-new-tokens 12", 2);
    check_equal(s.port, "{\"do_sample\": true, \"top_p\": 0.9, \"temperature\": 1.3, \"seed\": 7, \"num_return_sequences\": 3}",
                "--sample --top-p 0.9 --temperature 1.3 --seed 7 --num-return 3", 3);
    char *r;
    cr_assert(http(s.port, "GET", "/health", NULL, &r) == 200 && strstr(r, "ok"));
    free(r);
    cr_assert(http(s.port, "GET", "/metrics", NULL, &r) == 200);
    cr_assert(strstr(r, "tutor_requests_total{code=\"200\"} 3") != NULL, "%s", r);
    cr_assert(strstr(r, "tutor_request_seconds_count 3") != NULL, "%s", r);
    free(r);
    cr_assert(stop(&s) == 0, "SIGTERM must stop the server with status 0");
}

typedef struct {
    int port, i;
    char *answer;
} Client;

static void *client(void *arg) {
    Client *c = arg;
    char body[256];
    snprintf(body, sizeof body, "{\"inputs\": \"package number %d provides a library\", \"parameters\": "
                                "{\"do_sample\": true, \"seed\": %d, \"max_new_tokens\": 10}}", c->i, c->i);
    int st = http(c->port, "POST", "/generate", body, &c->answer);
    if (st != 200) {
        free(c->answer);
        c->answer = NULL;
    }
    return NULL;
}

Test(serve, answers_independent_of_concurrency, .timeout = 120, .fini = cleanup) {
    setup_model();
    Srv s = start("--max-batch 8", NULL);
    enum { N = 12 };
    Client alone[N], together[N];
    for (int i = 0; i < N; i++) {
        alone[i] = (Client){s.port, i, NULL};
        client(&alone[i]);
        cr_assert(alone[i].answer != NULL);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        together[i] = (Client){s.port, i, NULL};
        pthread_create(&th[i], NULL, client, &together[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        cr_assert(together[i].answer != NULL, "concurrent request %d failed", i);
        cr_assert(!strcmp(alone[i].answer, together[i].answer), "request %d: alone %s, concurrently %s", i,
                  alone[i].answer, together[i].answer);
        free(alone[i].answer);
        free(together[i].answer);
    }
    char *m;
    cr_assert(http(s.port, "GET", "/metrics", NULL, &m) == 200);
    free(m);
    cr_assert(stop(&s) == 0);
}

Test(serve, bad_requests_and_limits, .timeout = 120, .fini = cleanup) {
    setup_model();
    Srv s = start("--max-body 400 --max-input-tokens 30", NULL);
    static const struct {
        const char *body, *want;
        int status;
    } cases[] = {
        {"{\"inputs\": ", "not JSON", 400},
        {"[1, 2]", "JSON object", 400},
        {"{\"inputs\": 5}", "inputs", 400},
        {"{\"inputs\": []}", "inputs", 400},
        {"{\"inputs\": [\"a\", 3]}", "inputs[1]", 400},
        {"{\"input\": \"a\"}", "input: unknown", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"top_p\": 2}}", "parameters.top_p", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"max_new_tokens\": \"9\"}}", "parameters.max_new_tokens", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"do_sample\": 1}}", "parameters.do_sample", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"temperature\": 0}}", "parameters.temperature", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"colour\": 1}}", "parameters.colour: unknown", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"num_beams\": 2, \"num_return_sequences\": 3}}", "num_return_sequences", 400},
        {"{\"inputs\": \"a\", \"parameters\": {\"num_beams\": 2, \"do_sample\": true}}", "num_beams", 400},
        {"{\"inputs\": \"a\", \"inputs\": \"b\"}", "twice", 400},
        {"{\"inputs\": \"one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen twenty twenty-one twenty-two\"}",
         "tokens, at most 30", 400},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *r;
        int st = http(s.port, "POST", "/generate", cases[k].body, &r);
        cr_assert(st == cases[k].status, "%s: status %d, want %d (%s)", cases[k].body, st, cases[k].status, r);
        cr_assert(strstr(r, cases[k].want) != NULL, "%s: the message must name %s: %s", cases[k].body, cases[k].want, r);
        free(r);
    }
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char body[1100];
    snprintf(body, sizeof body, "{\"inputs\": \"%s\"}", big);
    char *r;
    cr_assert(http(s.port, "POST", "/generate", body, &r) == 413, "%s", r);
    free(r);
    cr_assert(http(s.port, "GET", "/nowhere", NULL, &r) == 404);
    free(r);
    cr_assert(http(s.port, "GET", "/generate", NULL, &r) == 405);
    free(r);
    /* still answering after all that */
    cr_assert(http(s.port, "POST", "/generate", "{\"inputs\": \"a small tool\"}", &r) == 200, "%s", r);
    free(r);
    cr_assert(stop(&s) == 0);
}

typedef struct {
    int port, status;
} Slow;

static void *slow_client(void *arg) {
    Slow *c = arg;
    char *r = NULL;
    c->status = http(c->port, "POST", "/generate", "{\"inputs\": \"a small tool\"}", &r);
    free(r);
    return NULL;
}

/* Polls /metrics (up to 5 s) until the server holds a request (busy 1: queued or running) or
 * holds none (busy 0). 1 when it did. */
static int wait_gauges(int port, int busy) {
    for (int i = 0; i < 500; i++) {
        char *m = NULL;
        int got = -1;
        if (http(port, "GET", "/metrics", NULL, &m) == 200 && m)
            got = !(strstr(m, "tutor_queue_length 0\n") && strstr(m, "tutor_running_requests 0\n"));
        free(m);
        if (got == busy) return 1;
        usleep(10000);
    }
    return 0;
}

/* A slow worker (TUTOR_SERVE_DELAY_MS) and a queue of one: of many requests at once some are
 * refused with 503, none is lost; SIGTERM while one runs still answers it. */
Test(serve, full_queue_and_sigterm, .timeout = 120, .fini = cleanup) {
    setup_model();
    Srv s = start("--queue 1 --max-batch 1", "TUTOR_SERVE_DELAY_MS=300");
    enum { N = 6 };
    Slow c[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        c[i] = (Slow){s.port, 0};
        pthread_create(&th[i], NULL, slow_client, &c[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    int ok = 0, full = 0;
    for (int i = 0; i < N; i++) ok += c[i].status == 200, full += c[i].status == 503;
    cr_assert(ok + full == N, "every request is answered 200 or 503 (%d and %d of %d)", ok, full, N);
    cr_assert(ok >= 1 && full >= 1, "with a queue of 1 and a slow worker, some must be refused (200: %d, 503: %d)", ok, full);
    /* a request in flight when SIGTERM comes is still answered: the server idle first (its
     * gauges can trail the answers above), then SIGTERM once it has the request (queued or
     * running), however loaded the machine is */
    cr_assert(wait_gauges(s.port, 0), "the server never went idle");
    Slow last = {s.port, 0};
    pthread_t t;
    pthread_create(&t, NULL, slow_client, &last);
    cr_assert(wait_gauges(s.port, 1), "the last request never reached the server");
    int rc = stop(&s);
    pthread_join(t, NULL);
    cr_assert(rc == 0, "the server must exit 0 on SIGTERM (got %d)", rc);
    cr_assert(last.status == 200, "the request in flight at SIGTERM got %d", last.status);
}

/* --int8: the server generates on the int8 weights, as tutor generate --int8 does. */
Test(serve, int8_answers_equal_tutor_generate_int8, .timeout = 120, .fini = cleanup) {
    setup_model();
    char cmd[800];
    snprintf(cmd, sizeof cmd, "%s quantize --model %s >/dev/null 2>&1", tutor_bin(), g_model);
    cr_assert(system(cmd) == 0);
    Srv s = start("--int8", NULL);
    check_equal(s.port, "{\"num_beams\": 3, \"max_new_tokens\": 10}", "--int8 --beam 3 --max-new-tokens 10", 1);
    cr_assert(stop(&s) == 0);
}
