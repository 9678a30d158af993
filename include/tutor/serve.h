/* serve.h: `tutor serve`, a model behind an HTTP API (libmicrohttpd): POST /generate in the
 * request shape of Hugging Face's text-generation-inference, GET /health, GET /metrics in
 * Prometheus' text format; requests queued and batched into the generator, with limits on
 * body size, input tokens and queue length, a per-request timeout and a graceful stop.
 * docs/serve.md gives the exact request and response shapes and status codes. */
#ifndef TUTOR_SERVE_H
#define TUTOR_SERVE_H
#include <stddef.h>
#include <stdint.h>

#include "tutor/generate.h"
#include "tutor/model.h"
#include "tutor/tokenizer.h"

/* ---- requests (serve/api.c) ---- */

/* The decoding parameters a request may set; *_set says which it did (the rest come from the
 * model's generation_config.json). */
typedef struct {
    int max_new_tokens, num_beams, do_sample, top_k, num_return_sequences;
    double temperature, top_p;
    uint64_t seed;
    int max_new_tokens_set, num_beams_set, do_sample_set, top_k_set, num_return_sequences_set;
    int temperature_set, top_p_set, seed_set;
} ServeParams;

typedef struct {
    char **inputs;   /* n_inputs UTF-8 texts */
    int n_inputs;
    int batch_form;  /* 1: "inputs" was a list (the answer is a list too) */
    ServeParams p;
} ServeRequest;

/* Parses a POST /generate body. On a bad request returns -1 with a message naming the field
 * in why (e.g. "parameters.top_p: must be a number in (0, 1]"). */
int serve_request_parse(const char *body, size_t n, int max_inputs, ServeRequest *out, char *why, size_t why_len);
void serve_request_free(ServeRequest *r);
/* base (the model's decoding) with the request's parameters over it, checked: -1 with why. */
int serve_request_config(const ServeRequest *r, const GenConfig *base, GenConfig *out, char *why, size_t why_len);
/* The answer: texts[i * k + j] is sequence j of input i. A single input with k = 1 answers
 * {"generated_text": ...}; with k > 1 a list of k such objects; the batch form a list with one
 * entry per input, each an object (k = 1) or a list of k objects. malloc'd JSON. */
char *serve_response_json(const ServeRequest *r, char *const *texts, int k);

/* ---- the server (serve/server.c) ---- */

typedef struct {
    const char *host;        /* 127.0.0.1 */
    int port;                /* 0: any free port (printed) */
    int threads;             /* generation threads */
    int max_batch;           /* inputs generated together (32) */
    int queue_cap;           /* requests waiting at most (64); more get 503 */
    size_t max_body;         /* bytes of a request body (1 MiB); more get 413 */
    int max_input_tokens;    /* tokens of one input; more get 400 (0: none; longer sources are cut to
                                max_source_tokens, as tutor generate does) */
    int max_inputs;          /* inputs in one request (64) */
    double timeout_s;        /* per request, queued + generating (60); then 503 */
    int max_source_tokens;   /* sources cut to this many tokens, as tutor generate (256) */
} ServeOptions;
void serve_options_default(ServeOptions *o);

typedef struct Server Server;
/* Starts listening (the port chosen is serve_port); m, tok and base outlive the server. */
Server *serve_start(Model *m, const Tokenizer *tok, const GenConfig *base, const ServeOptions *o);
int serve_port(const Server *s);
/* Stops accepting, answers what is queued or running (503 after timeout_s), stops. */
void serve_stop(Server *s);

#endif
