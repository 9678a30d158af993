/* cmd_serve.c: `tutor serve --model DIR`: the model behind an HTTP API until SIGTERM/SIGINT
 * (src/serve/, docs/serve.md). */
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/generate.h"
#include "tutor/model.h"
#include "tutor/serve.h"
#include "tutor/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: tutor serve --model DIR [options]\n\n"
               "Serves the model over HTTP until SIGTERM or SIGINT (then it stops taking requests, answers\n"
               "the ones it has, and exits 0). Endpoints (docs/serve.md):\n"
               "  POST /generate  {\"inputs\": \"text\" | [\"text\", ...], \"parameters\": {\"max_new_tokens\",\n"
               "                  \"num_beams\", \"do_sample\", \"temperature\", \"top_k\", \"top_p\",\n"
               "                  \"num_return_sequences\", \"seed\"}} -> {\"generated_text\": \"...\"} (a list for\n"
               "                  a list of inputs or several sequences); unset parameters come from the\n"
               "                  model's generation_config.json; the same seed gives the same answer\n"
               "                  whatever else is being generated\n"
               "  GET /health     {\"status\": \"ok\"} (503 while stopping)\n"
               "  GET /metrics    Prometheus text: requests by status, tokens, queue, batch size, latency\n"
               "Status codes: 400 a bad request (the message names the field), 404/405 wrong endpoint or\n"
               "method, 413 a body over --max-body, 503 a full queue, a stopping server or a timeout.\n\n"
               "options:\n"
               "  --model DIR            the model directory\n"
               "  --int8                 generate with DIR/model.int8.safetensors (tutor quantize)\n"
               "  --host A               the IPv4 address to listen on (127.0.0.1)\n"
               "  --port N               the port (default 0: any free port; the chosen one is printed)\n"
               "  --threads N            generation threads (1)\n"
               "  --max-batch N          inputs generated together (32)\n"
               "  --queue N              requests waiting at most (64)\n"
               "  --max-body BYTES       request body size (1048576)\n"
               "  --max-input-tokens N   refuse (400) an input of more tokens (default: none; sources are cut\n"
               "                         to --max-source-tokens, as tutor generate does)\n"
               "  --max-inputs N         inputs in one request (64)\n"
               "  --timeout S            seconds a request may wait and run (60)\n"
               "  --max-source-tokens N  sources cut to N tokens, as tutor generate (256)\n"
               "  -h, --help             this help\n");
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

int cmd_serve(int argc, char **argv) {
    ServeOptions o;
    serve_options_default(&o);
    const char *dir = NULL;
    int int8 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--int8")) {
            int8 = 1;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2)) {
            fprintf(stderr, "tutor: serve: %s '%s' (see tutor serve --help)\n",
                    strncmp(a, "--", 2) ? "unexpected argument" : "a value is missing after", a);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        double x = strtod(v, &end);
        int num = *v && !*end;
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port") && num && x >= 0 && x <= 65535 && x == (int)x) o.port = (int)x;
        else if (!strcmp(a, "--threads") && num && x >= 1 && x <= 4096 && x == (int)x) o.threads = (int)x;
        else if (!strcmp(a, "--max-batch") && num && x >= 1 && x <= 4096 && x == (int)x) o.max_batch = (int)x;
        else if (!strcmp(a, "--queue") && num && x >= 1 && x <= 1000000 && x == (int)x) o.queue_cap = (int)x;
        else if (!strcmp(a, "--max-body") && num && x >= 16 && x <= 1e9 && x == (long)x) o.max_body = (size_t)x;
        else if (!strcmp(a, "--max-input-tokens") && num && x >= 1 && x <= 1 << 20 && x == (int)x) o.max_input_tokens = (int)x;
        else if (!strcmp(a, "--max-inputs") && num && x >= 1 && x <= 1 << 16 && x == (int)x) o.max_inputs = (int)x;
        else if (!strcmp(a, "--timeout") && num && x > 0 && x <= 86400) o.timeout_s = x;
        else if (!strcmp(a, "--max-source-tokens") && num && x >= 3 && x <= 1 << 20 && x == (int)x) o.max_source_tokens = (int)x;
        else {
            fprintf(stderr, "tutor: serve: %s: bad or unknown option value '%s' (see tutor serve --help)\n", a, v);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "tutor: serve: --model is required (see tutor serve --help)\n");
        return 2;
    }
    tt_set_threads(o.threads);
    Model *m = model_load(dir);
    if (!m || (int8 && model_q8_load_dir(m, dir))) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        model_free(m);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    Tokenizer *tok = tokenizer_load(path);
    GenConfig g;
    if (!tok || gen_config_for_dir(&g, &m->cfg, dir)) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        tokenizer_free(tok);
        model_free(m);
        return 1;
    }
    if (g.max_new_tokens <= 0 && g.max_length <= 0) g.max_new_tokens = 64;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    Server *s = serve_start(m, tok, &g, &o);
    if (!s) {
        fprintf(stderr, "tutor: serve: %s\n", tt_errmsg());
        tokenizer_free(tok);
        model_free(m);
        return 1;
    }
    printf("tutor: serve: listening on http://%s:%d (%s%s, %d threads)\n", o.host, serve_port(s), dir,
           int8 ? ", int8" : "", o.threads);
    fflush(stdout);
    while (!g_stop) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "tutor: serve: stopping: answering the requests it has, taking no more\n");
    serve_stop(s);
    tokenizer_free(tok);
    model_free(m);
    fprintf(stderr, "tutor: serve: stopped\n");
    return 0;
}
