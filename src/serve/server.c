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

typedef struct Job {
    ServeRequest req;
    GenConfig g;
    int **ids;             /* per input: <s> tokens </s> */
    int *len;
    char **texts;          /* n_inputs * k answers */
    int k;
    int done, failed, abandoned;
    char error[256];
    double t_enqueued;
    pthread_cond_t cond;
    struct Job *next;
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
    Job *head, *tail;
    int queued, running, stopping, worker_up;
    /* metrics */
    unsigned long req_ok, req_400, req_413, req_503, req_404, req_500, tokens_out, batches, batch_inputs;
    unsigned long lat_count, lat_bucket[N_BUCKETS];
    double lat_sum;
    int last_batch;
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
        s->cache[slot].gen = generator_new(s->m, g, s->o.max_batch, s->max_src);
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
    if (j->texts)
        for (int i = 0; i < j->req.n_inputs * j->k; i++) free(j->texts[i]);
    free(j->texts);
    serve_request_free(&j->req);
    pthread_cond_destroy(&j->cond);
    free(j);
}

static void run_batch(Server *s, Job **jobs, int n_jobs) {
    int n = 0;
    for (int q = 0; q < n_jobs; q++) n += jobs[q]->req.n_inputs;
    const int **src = malloc(sizeof(int *) * (size_t)n);
    int *len = malloc(sizeof(int) * (size_t)n);
    uint64_t *stream = malloc(sizeof(uint64_t) * (size_t)n), *seeds = malloc(sizeof(uint64_t) * (size_t)n);
    int rc = src && len && stream && seeds ? 0 : tt_err("out of memory");
    int i = 0;
    for (int q = 0; q < n_jobs && !rc; q++)
        for (int t = 0; t < jobs[q]->req.n_inputs; t++, i++) {
            src[i] = jobs[q]->ids[t], len[i] = jobs[q]->len[t];
            stream[i] = (uint64_t)t, seeds[i] = jobs[q]->g.seed;
        }
    GenConfig g = jobs[0]->g;
    gen_config_limit_to_tokenizer(&g, &s->m->cfg, s->tok);
    Generator *gen = rc ? NULL : generator_for(s, &g);
    const GenOutput *out = NULL;
    if (!rc) rc = gen ? generator_run_seeded(gen, n, src, len, stream, seeds, &out) : -1;
    unsigned long tokens = 0;
    i = 0;
    for (int q = 0; q < n_jobs; q++) {
        Job *j = jobs[q];
        if (rc) {
            j->failed = 1;
            snprintf(j->error, sizeof j->error, "%s", tt_errmsg());
            continue;
        }
        j->texts = calloc((size_t)j->req.n_inputs * j->k, sizeof(char *));
        for (int t = 0; t < j->req.n_inputs; t++, i++)
            for (int k = 0; k < j->k; k++) {
                const GenHypothesis *h = &out[i].hyps[k];
                tokens += (unsigned long)h->n_tokens;
                if (j->texts) j->texts[(size_t)t * j->k + k] = tokenizer_decode(s->tok, h->tokens, (size_t)h->n_tokens, 1, NULL);
            }
        if (!j->texts) j->failed = 1, snprintf(j->error, sizeof j->error, "out of memory");
    }
    free(src), free(len), free(stream), free(seeds);
    pthread_mutex_lock(&s->mu);
    s->tokens_out += tokens;
    s->batches++;
    s->batch_inputs += (unsigned long)n;
    s->last_batch = n;
    for (int q = 0; q < n_jobs; q++) {
        jobs[q]->done = 1;
        if (jobs[q]->abandoned) job_free(jobs[q]); /* its connection timed out and left */
        else pthread_cond_signal(&jobs[q]->cond);
    }
    s->running = 0;
    pthread_mutex_unlock(&s->mu);
}

static void *worker_main(void *arg) {
    Server *s = arg;
    tt_set_threads(s->o.threads);
    Job **batch = malloc(sizeof(Job *) * (size_t)(s->o.queue_cap + 1));
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping) pthread_cond_wait(&s->wake, &s->mu);
        if (!s->head && s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* the oldest request, and every queued one that decodes alike while inputs fit */
        int nb = 0, inputs = 0;
        Job **pp = &s->head, *prev = NULL;
        GenConfig first = s->head->g;
        while (*pp) {
            Job *j = *pp;
            int fits = nb == 0 || (inputs + j->req.n_inputs <= s->o.max_batch && same_decoding(&first, &j->g));
            if (fits && batch) {
                batch[nb++] = j;
                inputs += j->req.n_inputs;
                *pp = j->next;
                if (s->tail == j) s->tail = prev;
                s->queued--;
            } else {
                prev = j;
                pp = &j->next;
            }
        }
        s->running = nb;
        pthread_mutex_unlock(&s->mu);
        if (s->delay_ms > 0) {
            /* testing (TUTOR_SERVE_DELAY_MS): a slow model, so that queues fill */
            struct timespec ts = {s->delay_ms / 1000, (long)(s->delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (nb) run_batch(s, batch, nb);
    }
    free(batch);
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
    if (!j->ids || !j->len) return snprintf(why, why_len, "out of memory"), -1;
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
        serve_request_config(&j->req, &s->base, &j->g, why, sizeof why) || prepare(s, j, why, sizeof why)) {
        job_free(j);
        return reply_error(s, c, 400, why);
    }
    j->k = j->g.num_return_sequences;
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
        /* still queued: take it out; running: the worker frees it when done */
        Job **pp = &s->head, *prev = NULL;
        int was_queued = 0;
        while (*pp) {
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
