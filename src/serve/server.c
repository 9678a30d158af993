/* server.c: `tutor serve` on libmicrohttpd. Connection threads parse and check a request,
 * queue it and wait; one worker thread owns the model: it takes the oldest queued request and
 * every other queued one that decodes the same way (seed aside), up to max_batch inputs, and
 * generates them together, each input on its own random stream (the request's seed, its
 * index in the request), so that an answer does not depend on what shared its batch. A full
 * queue answers 503, an oversize body 413, a bad request 400 naming the field; serve_stop
 * refuses new requests, lets the queued and running ones finish (bounded by the timeout) and
 * stops. GET /metrics: Prometheus text format. docs/serve.md. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tutor/core.h"
#include "tutor/serve.h"

void serve_options_default(ServeOptions *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 0;
    o->threads = 1;
    o->max_batch = 32;
    o->queue_cap = 64;
    o->max_body = 1 << 20;
    o->max_input_tokens = 0;
    o->max_inputs = 64;
    o->timeout_s = 60;
    o->max_source_tokens = 256;
}

struct Job;
typedef struct {
    struct Job *j;
    int i; /* the input's index in its request */
} InTag;

typedef struct Job {
    ServeRequest req;
    InTag *tags;           /* per input: what the generator hands back when it is done */
    int admitted, n_done;  /* inputs admitted into the decoding batch; answered */
    GenConfig g;
    int **ids;             /* per input: <s> tokens </s> */
    int *len;
    char **texts;          /* n_inputs * k answers */
    int k;
    int done, failed, abandoned;
    char error[256];
    double t_enqueued;
    pthread_cond_t cond;
    struct Job *next;      /* the queue */
    struct Job *rnext;     /* the running list (wholly admitted, not yet answered) */
} Job;

enum { N_BUCKETS = 12 };
static const double BUCKETS[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

static int same_decoding(const GenConfig *a, const GenConfig *b) {
    GenConfig x = *a, y = *b;
    x.seed = y.seed = 0;
    return !memcmp(&x, &y, sizeof x);
}

struct Server {
    Model *m;
    const Tokenizer *tok;
    GenConfig base;
    ServeOptions o;
    struct MHD_Daemon *d;
    int port, max_src, bos, eos;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t worker;
    Job *head, *tail, *run;
    int queued, running, stopping, worker_up;
    /* metrics */
    unsigned long req_ok, req_400, req_413, req_503, req_404, req_500, tokens_out, batches, batch_inputs;
    unsigned long lat_count, lat_bucket[N_BUCKETS];
    double lat_sum;
    int last_batch, live_inputs;
    int delay_ms;
    /* generators by decoding (the worker's only), each sized for max_batch inputs: reused, so
     * that a steady load allocates nothing */
    struct {
        GenConfig g;
        Generator *gen;
        unsigned long used;
    } cache[4];
    unsigned long uses;
};

static Generator *generator_for(Server *s, const GenConfig *g) {
    int slot = -1, oldest = 0;
    for (int k = 0; k < 4; k++) {
        if (s->cache[k].gen && same_decoding(&s->cache[k].g, g)) {
            slot = k;
            break;
        }
        if (!s->cache[k].gen || s->cache[k].used < s->cache[oldest].used) oldest = k;
    }
    if (slot < 0) {
        slot = oldest;
        generator_free(s->cache[slot].gen);
        s->cache[slot].g = *g;
        s->cache[slot].gen = generator_new_pooled(s->m, g, s->o.max_batch, s->max_src, 4);
    }
    s->cache[slot].used = ++s->uses;
    return s->cache[slot].gen;
}

/* ---- the worker ---- */


static void job_free(Job *j) {
    if (!j) return;
    for (int i = 0; i < j->req.n_inputs; i++) free(j->ids ? j->ids[i] : NULL);
    free(j->ids);
    free(j->len);
    free(j->tags);
    if (j->texts)
        for (int i = 0; i < j->req.n_inputs * j->k; i++) free(j->texts[i]);
    free(j->texts);
    serve_request_free(&j->req);
    pthread_cond_destroy(&j->cond);
    free(j);
}

/* The worker's continuous batching (generator_serve): at every step boundary the generator
 * asks for inputs; they come from the queue in order, request after request, while requests
 * decode as the running batch does; each input leaves the batch when it is done, and its
 * request is answered when its last input is. */
typedef struct {
    Server *s;
    GenConfig g;
} Work;

static int admit_cb(void *ctx, int room, const int **src, int *len, uint64_t *stream, uint64_t *seed, void **tag) {
    Work *w = ctx;
    Server *s = w->s;
    int k = 0;
    pthread_mutex_lock(&s->mu);
    while (k < room && s->head && same_decoding(&s->head->g, &w->g)) {
        Job *j = s->head;
        while (k < room && j->admitted < j->req.n_inputs) {
            int t = j->admitted++;
            src[k] = j->ids[t], len[k] = j->len[t], stream[k] = (uint64_t)t, seed[k] = j->g.seed;
            tag[k] = &j->tags[t];
            k++;
        }
        if (j->admitted < j->req.n_inputs) break;
        /* wholly admitted: out of the queue, running */
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        j->next = NULL;
        s->queued--;
        s->running++;
        j->rnext = s->run;
        s->run = j;
    }
    s->live_inputs += k;
    if (s->live_inputs > 0) s->last_batch = s->live_inputs;
    pthread_mutex_unlock(&s->mu);
    if (k && s->delay_ms > 0) {
        /* testing (TUTOR_SERVE_DELAY_MS): a slow model, so that queues fill */
        struct timespec ts = {s->delay_ms / 1000, (long)(s->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return k;
}

static void done_cb(void *ctx, void *tag, const GenOutput *out) {
    Work *w = ctx;
    Server *s = w->s;
    InTag *t = tag;
    Job *j = t->j;
    unsigned long tokens = 0;
    if (!out) {
        j->failed = 1;
        snprintf(j->error, sizeof j->error, "%s", tt_errmsg());
    } else {
        for (int k = 0; k < j->k && k < out->n; k++) {
            const GenHypothesis *h = &out->hyps[k];
            tokens += (unsigned long)h->n_tokens;
            char **slot = &j->texts[(size_t)t->i * j->k + k];
            *slot = tokenizer_decode(s->tok, h->tokens, (size_t)h->n_tokens, 1, NULL);
            if (!*slot) j->failed = 1, snprintf(j->error, sizeof j->error, "out of memory");
        }
    }
    pthread_mutex_lock(&s->mu);
    s->tokens_out += tokens;
    s->live_inputs--;
    if (++j->n_done == j->req.n_inputs) {
        for (Job **pp = &s->run; *pp; pp = &(*pp)->rnext)
            if (*pp == j) {
                *pp = j->rnext;
                break;
            }
        j->done = 1;
        s->running--;
        s->batches++;
        s->batch_inputs += (unsigned long)j->req.n_inputs;
        if (j->abandoned) job_free(j); /* its connection timed out and left */
        else pthread_cond_signal(&j->cond);
    }
    pthread_mutex_unlock(&s->mu);
}

/* After a generation error: every request the generator held (running, or partly
 * admitted at the queue's head) is answered 500 with the reason. */
static void fail_held(Server *s, const char *why) {
    pthread_mutex_lock(&s->mu);
    Job *held[2] = {s->run, s->head && s->head->admitted > 0 ? s->head : NULL};
    s->run = NULL;
    if (held[1]) {
        s->head = held[1]->next;
        if (!s->head) s->tail = NULL;
        s->queued--;
        held[1]->next = NULL;
        held[1]->rnext = NULL;
    }
    for (int h = 0; h < 2; h++)
        for (Job *j = held[h], *nx; j; j = nx) {
            nx = h == 0 ? j->rnext : NULL;
            j->failed = 1, j->done = 1;
            snprintf(j->error, sizeof j->error, "generation failed: %s", why);
            if (h == 0) s->running--;
            if (j->abandoned) job_free(j);
            else pthread_cond_signal(&j->cond);
        }
    s->live_inputs = 0;
    pthread_mutex_unlock(&s->mu);
}

static void *worker_main(void *arg) {
    Server *s = arg;
    tt_set_threads(s->o.threads);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping) pthread_cond_wait(&s->wake, &s->mu);
        if (!s->head && s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        Work w = {s, s->head->g};
        pthread_mutex_unlock(&s->mu);
        GenConfig g = w.g;
        gen_config_limit_to_tokenizer(&g, &s->m->cfg, s->tok);
        Generator *gen = generator_for(s, &g);
        GenServe cb = {admit_cb, done_cb, &w};
        if (!gen || generator_serve(gen, &cb)) {
            /* the model failed: every request it was decoding is answered 500 */
            char why[256];
            snprintf(why, sizeof why, "%s", tt_errmsg());
            tt_info("serve: generation failed: %s", why);
            fail_held(s, why);
            /* the generator's state is gone with the error: a new one next time */
            for (int k = 0; k < 4; k++)
                if (gen && s->cache[k].gen == gen) generator_free(gen), s->cache[k].gen = NULL;
            if (!gen) {
                /* no generator could be made for the head's decoding: it fails too */
                pthread_mutex_lock(&s->mu);
                Job *j = s->head;
                if (j && same_decoding(&j->g, &w.g)) {
                    s->head = j->next;
                    if (!s->head) s->tail = NULL;
                    s->queued--;
                    j->failed = 1, j->done = 1;
                    snprintf(j->error, sizeof j->error, "%s", why);
                    if (j->abandoned) job_free(j);
                    else pthread_cond_signal(&j->cond);
                }
                pthread_mutex_unlock(&s->mu);
            }
        }
    }
    return NULL;
}

/* ---- HTTP ---- */

typedef struct {
    char *body;
    size_t n, cap;
    int too_big;
} Upload;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, const char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(Server *s, struct MHD_Connection *c, unsigned code, const char *msg) {
    pthread_mutex_lock(&s->mu);
    if (code == 400) s->req_400++;
    else if (code == 413) s->req_413++;
    else if (code == 503) s->req_503++;
    else if (code == 404 || code == 405) s->req_404++;
    else s->req_500++;
    pthread_mutex_unlock(&s->mu);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddNumberToObject(o, "status", code);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    enum MHD_Result ret = reply(c, code, "application/json", t ? t : "{\"error\":\"out of memory\"}");
    free(t);
    return ret;
}

static char *metrics_text(Server *s) {
    size_t cap = 8192;
    char *b = malloc(cap);
    if (!b) return NULL;
    pthread_mutex_lock(&s->mu);
    int n = snprintf(b, cap,
                     "# HELP tutor_requests_total Requests answered, by status code.\n"
                     "# TYPE tutor_requests_total counter\n"
                     "tutor_requests_total{code=\"200\"} %lu\ntutor_requests_total{code=\"400\"} %lu\n"
                     "tutor_requests_total{code=\"404\"} %lu\ntutor_requests_total{code=\"413\"} %lu\n"
                     "tutor_requests_total{code=\"500\"} %lu\ntutor_requests_total{code=\"503\"} %lu\n"
                     "# HELP tutor_generated_tokens_total Tokens generated.\n# TYPE tutor_generated_tokens_total counter\n"
                     "tutor_generated_tokens_total %lu\n"
                     "# HELP tutor_queue_length Requests waiting.\n# TYPE tutor_queue_length gauge\ntutor_queue_length %d\n"
                     "# HELP tutor_running_requests Requests being generated.\n# TYPE tutor_running_requests gauge\n"
                     "tutor_running_requests %d\n"
                     "# HELP tutor_batch_size Inputs in the last batch.\n# TYPE tutor_batch_size gauge\ntutor_batch_size %d\n"
                     "# HELP tutor_batches_total Batches generated.\n# TYPE tutor_batches_total counter\n"
                     "tutor_batches_total %lu\ntutor_batch_inputs_total %lu\n"
                     "# HELP tutor_request_seconds Latency of answered generation requests.\n"
                     "# TYPE tutor_request_seconds histogram\n",
                     s->req_ok, s->req_400, s->req_404, s->req_413, s->req_500, s->req_503, s->tokens_out, s->queued,
                     s->running, s->last_batch, s->batches, s->batch_inputs);
    for (int k = 0; k < N_BUCKETS && n > 0 && (size_t)n < cap; k++)
        n += snprintf(b + n, cap - (size_t)n, "tutor_request_seconds_bucket{le=\"%g\"} %lu\n", BUCKETS[k], s->lat_bucket[k]);
    if (n > 0 && (size_t)n < cap)
        snprintf(b + n, cap - (size_t)n,
                 "tutor_request_seconds_bucket{le=\"+Inf\"} %lu\ntutor_request_seconds_sum %.6f\n"
                 "tutor_request_seconds_count %lu\n",
                 s->lat_count, s->lat_sum, s->lat_count);
    pthread_mutex_unlock(&s->mu);
    return b;
}

/* Encodes and checks a request's inputs as tutor generate does: <s> text </s>, the text cut
 * to max_source_tokens - 2; inputs over max_input_tokens are refused. */
static int prepare(Server *s, Job *j, char *why, size_t why_len) {
    int n = j->req.n_inputs;
    j->ids = calloc((size_t)n, sizeof(int *));
    j->len = calloc((size_t)n, sizeof(int));
    j->tags = calloc((size_t)n, sizeof(InTag));
    j->texts = calloc((size_t)n * (size_t)(j->g.num_return_sequences > 0 ? j->g.num_return_sequences : 1), sizeof(char *));
    if (!j->ids || !j->len || !j->tags || !j->texts) return snprintf(why, why_len, "out of memory"), -1;
    for (int i = 0; i < n; i++) j->tags[i] = (InTag){j, i};
    TokenIds ids = {0};
    TokenizerEncodeOptions eo = {0, 0, 0};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (tokenizer_encode(s->tok, j->req.inputs[i], strlen(j->req.inputs[i]), &eo, &ids, NULL)) {
            snprintf(why, why_len, "%s%s: cannot be encoded: %s", j->req.batch_form ? "inputs[" : "inputs", "", tt_errmsg());
            rc = -1;
            break;
        }
        int cap = s->o.max_input_tokens;
        if (cap > 0 && (int)ids.n > cap) {
            if (j->req.batch_form) snprintf(why, why_len, "inputs[%d]: %zu tokens, at most %d", i, ids.n, cap);
            else snprintf(why, why_len, "inputs: %zu tokens, at most %d", ids.n, cap);
            rc = -1;
            break;
        }
        int text = (int)ids.n < s->max_src - 2 ? (int)ids.n : s->max_src - 2;
        j->ids[i] = malloc(sizeof(int) * (size_t)(text + 2));
        if (!j->ids[i]) {
            snprintf(why, why_len, "out of memory");
            rc = -1;
            break;
        }
        j->ids[i][0] = s->bos;
        memcpy(j->ids[i] + 1, ids.ids, sizeof(int) * (size_t)text);
        j->ids[i][text + 1] = s->eos;
        j->len[i] = text + 2;
    }
    token_ids_free(&ids);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *size, void **con_cls) {
    Server *s = cls;
    (void)version;
    int post = !strcmp(method, "POST");
    if (!*con_cls) {
        Upload *u = calloc(1, sizeof *u);
        if (!u) return MHD_NO;
        *con_cls = u;
        return MHD_YES;
    }
    Upload *u = *con_cls;
    if (post && *size) {
        if (u->n + *size > s->o.max_body) u->too_big = 1;
        if (!u->too_big) {
            if (u->n + *size + 1 > u->cap) {
                size_t cap = (u->n + *size + 1) * 2;
                char *b = realloc(u->body, cap);
                if (!b) return MHD_NO;
                u->body = b, u->cap = cap;
            }
            memcpy(u->body + u->n, data, *size);
            u->n += *size;
        }
        *size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/health")) {
        if (strcmp(method, "GET")) return reply_error(s, c, 405, "use GET /health");
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        return stopping ? reply_error(s, c, 503, "stopping") : reply(c, 200, "application/json", "{\"status\":\"ok\"}");
    }
    if (!strcmp(url, "/metrics")) {
        if (strcmp(method, "GET")) return reply_error(s, c, 405, "use GET /metrics");
        char *t = metrics_text(s);
        enum MHD_Result ret = t ? reply(c, 200, "text/plain; version=0.0.4", t) : MHD_NO;
        free(t);
        return ret;
    }
    if (strcmp(url, "/generate")) return reply_error(s, c, 404, "no such endpoint (POST /generate, GET /health, GET /metrics)");
    if (!post) return reply_error(s, c, 405, "use POST /generate");
    if (u->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the body is over %zu bytes", s->o.max_body);
        return reply_error(s, c, 413, msg);
    }
    double t0 = tt_now_s();
    Job *j = calloc(1, sizeof *j);
    if (!j) return reply_error(s, c, 500, "out of memory");
    pthread_cond_init(&j->cond, NULL);
    char why[512];
    if (serve_request_parse(u->body ? u->body : "", u->n, s->o.max_inputs, &j->req, why, sizeof why) ||
        serve_request_config(&j->req, &s->base, &j->g, why, sizeof why) ||
        (j->k = j->g.num_return_sequences, prepare(s, j, why, sizeof why))) {
        job_free(j);
        return reply_error(s, c, 400, why);
    }
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->queued >= s->o.queue_cap) {
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        return reply_error(s, c, 503, stopping ? "the server is stopping" : "the queue is full; retry later");
    }
    j->t_enqueued = t0;
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->wake);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double end = until.tv_sec + until.tv_nsec * 1e-9 + s->o.timeout_s;
    until.tv_sec = (time_t)end, until.tv_nsec = (long)((end - floor(end)) * 1e9);
    while (!j->done) {
        if (pthread_cond_timedwait(&j->cond, &s->mu, &until) == ETIMEDOUT && !j->done) break;
    }
    if (!j->done) {
        /* still queued and none of it admitted: take it out; otherwise the worker frees it
         * when its admitted inputs are done */
        Job **pp = &s->head, *prev = NULL;
        int was_queued = 0;
        while (*pp && j->admitted == 0) {
            if (*pp == j) {
                *pp = j->next;
                if (s->tail == j) s->tail = prev;
                s->queued--;
                was_queued = 1;
                break;
            }
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (!was_queued) j->abandoned = 1;
        pthread_mutex_unlock(&s->mu);
        if (was_queued) job_free(j);
        char msg[96];
        snprintf(msg, sizeof msg, "not answered within %.1f s", s->o.timeout_s);
        return reply_error(s, c, 503, msg);
    }
    double lat = tt_now_s() - t0;
    if (!j->failed) {
        s->req_ok++;
        s->lat_count++;
        s->lat_sum += lat;
        for (int k = 0; k < N_BUCKETS; k++)
            if (lat <= BUCKETS[k]) s->lat_bucket[k]++;
    }
    pthread_mutex_unlock(&s->mu);
    enum MHD_Result ret;
    if (j->failed) {
        ret = reply_error(s, c, 500, j->error);
    } else {
        char *t = serve_response_json(&j->req, j->texts, j->k);
        ret = t ? reply(c, 200, "application/json", t) : reply_error(s, c, 500, "out of memory");
        free(t);
    }
    job_free(j);
    return ret;
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    Upload *u = *con_cls;
    if (u) free(u->body), free(u);
    *con_cls = NULL;
}

Server *serve_start(Model *m, const Tokenizer *tok, const GenConfig *base, const ServeOptions *o) {
    Server *s = calloc(1, sizeof *s);
    if (!s) {
        tt_err("out of memory");
        return NULL;
    }
    s->m = m, s->tok = tok, s->base = *base, s->o = *o;
    const char *delay = getenv("TUTOR_SERVE_DELAY_MS");
    s->delay_ms = delay ? atoi(delay) : 0;
    s->bos = tokenizer_bos_id(tok), s->eos = tokenizer_eos_id(tok);
    if (s->bos < 0 || s->eos < 0) {
        free(s);
        tt_err("the tokenizer has no <s> or </s> token");
        return NULL;
    }
    const ModelConfig *c = &m->cfg;
    s->max_src = o->max_source_tokens > 0 ? o->max_source_tokens : 256;
    if (s->max_src > c->max_positions) s->max_src = c->max_positions;
    if (!model_is_encdec(c) && base->max_new_tokens > 0 && s->max_src > c->max_positions - base->max_new_tokens + 1)
        s->max_src = c->max_positions - base->max_new_tokens + 1;
    if (s->max_src < 3) {
        free(s);
        tt_err("no room for a prompt");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->worker, NULL, worker_main, s)) {
        free(s);
        tt_err("cannot start the worker thread");
        return NULL;
    }
    s->worker_up = 1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        tt_err("--host %s: not an IPv4 address", o->host);
        serve_stop(s);
        return NULL;
    }
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
                            (uint16_t)o->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)(o->timeout_s + 30), MHD_OPTION_END);
    if (!s->d) {
        tt_err("cannot listen on %s:%d: %s", o->host, o->port, strerror(errno));
        serve_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : o->port;
    return s;
}

int serve_port(const Server *s) { return s->port; }

void serve_stop(Server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->d) {
        /* no new connections; what is queued or running is answered, then the worker ends */
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    if (s->worker_up) pthread_join(s->worker, NULL);
    for (int k = 0; k < 4; k++) generator_free(s->cache[k].gen);
    if (s->d) MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    free(s);
}
