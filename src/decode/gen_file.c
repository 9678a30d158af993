/* gen_file.c: generation over a JSONL file, streamed: read a batch of inputs, encode them as
 * training does, generate, write one JSON line per input in input order and flush, so that a
 * killed run keeps every finished line and --resume continues after them (gen_output.c). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/data.h"
#include "tutor/generate.h"

void gen_file_options_default(GenFileOptions *o) {
    memset(o, 0, sizeof *o);
    o->source_field = "source";
    o->id_field = "id";
    o->batch_size = 16;
    o->max_source_tokens = 256;
}

/* Non-blank lines of a file: the progress total. */
static long count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = 0;
    int c, blank = 1;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            n += !blank;
            blank = 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            blank = 0;
        }
    }
    n += !blank;
    fclose(f);
    return n;
}

typedef struct {
    Example *ex;
    int *ids;      /* (batch, max_source_tokens) */
    int *len;
    const int **ptr;
    uint64_t *stream;
} BatchIn;

/* Writes one output line; 0 or -1. */
static int write_line(FILE *out, const Tokenizer *tok, const Example *ex, const GenOutput *o, const char *out_name) {
    cJSON *line = cJSON_CreateObject(), *targets = cJSON_CreateArray(), *scores = cJSON_CreateArray(),
          *lps = cJSON_CreateArray();
    int rc = 0;
    if (!line || !targets || !scores || !lps) rc = tt_err("out of memory");
    cJSON_AddStringToObject(line, "id", ex->id);
    cJSON_AddStringToObject(line, "source", ex->source);
    for (int k = 0; !rc && k < o->n; k++) {
        const GenHypothesis *h = &o->hyps[k];
        char *text = tokenizer_decode(tok, h->tokens, (size_t)h->n_tokens, 1, NULL);
        if (!text) {
            rc = tt_err_wrap("decoding a result");
            break;
        }
        cJSON_AddItemToArray(targets, cJSON_CreateString(text));
        free(text);
        /* JSON has no -inf: a result the search could not score is null */
        cJSON_AddItemToArray(scores, isfinite(h->score) ? cJSON_CreateNumber(h->score) : cJSON_CreateNull());
        cJSON_AddItemToArray(lps, isfinite(h->logprob) ? cJSON_CreateNumber(h->logprob) : cJSON_CreateNull());
    }
    cJSON_AddItemToObject(line, "targets", targets);
    cJSON_AddItemToObject(line, "scores", scores);
    cJSON_AddItemToObject(line, "logprobs", lps);
    if (!rc) {
        char *s = cJSON_PrintUnformatted(line);
        if (!s) rc = tt_err("out of memory");
        else if (fputs(s, out) < 0 || fputc('\n', out) < 0) rc = tt_err("%s: write error: %s", out_name, strerror(errno));
        free(s);
    }
    cJSON_Delete(line);
    return rc;
}

int generate_file(Model *m, const Tokenizer *tok, const GenConfig *g, const GenFileOptions *o) {
    const ModelConfig *c = &m->cfg;
    int encdec = model_is_encdec(c);
    int bos = tokenizer_bos_id(tok), eos = tokenizer_eos_id(tok);
    if (bos < 0 || eos < 0) return tt_err("tokenizer has no <s> or </s> token");
    if (tokenizer_vocab_size(tok) > c->vocab_size)
        return tt_err("tokenizer has %d ids, the model's vocabulary %d", tokenizer_vocab_size(tok), c->vocab_size);
    int B = o->batch_size > 0 ? o->batch_size : 16;
    int max_src = o->max_source_tokens > 0 ? o->max_source_tokens : 256;
    if (max_src > c->max_positions) max_src = c->max_positions;
    if (!encdec && g->max_new_tokens > 0 && max_src > c->max_positions - g->max_new_tokens + 1)
        max_src = c->max_positions - g->max_new_tokens + 1;
    if (max_src < 3) return tt_err("no room for a prompt: %d positions, %d new tokens", c->max_positions, g->max_new_tokens);
    const char *out_name = o->output_path ? o->output_path : "standard output";
    long done = 0;
    /* under mpirun the inputs are sharded: rank r generates batches r, r + N, ... of every
     * round of N batches, and rank 0 writes each round's lines in input order (so the output
     * stays a prefix of the single-process one, resumable as always) */
    int N = dist_size(), rank = dist_rank();
    if (rank == 0 && o->resume && o->output_path && gen_output_resume(o->output_path, &done)) return -1;
    if (N > 1) {
        double d = (double)done;
        if (dist_bcast_f64(&d, 1)) return -1;
        done = (long)d;
    }
    long total = count_lines(o->input_path);
    if (total >= 0 && done > total)
        return tt_err("%s has %ld lines but %s only %ld inputs: it is not this input's output; cannot resume", out_name,
                      done, o->input_path, total);
    /* buffers for at most the inputs there are */
    if (total >= 0 && B > total - done) B = total - done > 0 ? (int)(total - done) : 1;
    JsonlOptions jo;
    jsonl_options_default(&jo);
    if (o->source_field) jo.source_field = o->source_field;
    if (o->id_field) jo.id_field = o->id_field;
    JsonlReader *r = jsonl_open(o->input_path, &jo);
    if (!r) return -1;
    FILE *out = rank != 0 ? NULL : o->output_path ? fopen(o->output_path, o->resume ? "ab" : "wb") : stdout;
    if (!out && rank == 0) {
        jsonl_close(r);
        return tt_err("%s: %s", o->output_path, strerror(errno));
    }
    GenConfig gl = *g;
    gen_config_limit_to_tokenizer(&gl, c, tok);
    Generator *gen = generator_new(m, &gl, B, max_src);
    BatchIn bi = {calloc((size_t)B, sizeof(Example)), malloc(sizeof(int) * (size_t)B * max_src),
                  malloc(sizeof(int) * (size_t)B), malloc(sizeof(int *) * (size_t)B), malloc(sizeof(uint64_t) * (size_t)B)};
    TokenIds ids = {0};
    TokenizerEncodeOptions eo = {0, 0, 0};
    int rc = 0;
    if (!gen || !bi.ex || !bi.ids || !bi.len || !bi.ptr || !bi.stream) rc = gen ? tt_err("out of memory") : -1;
    long index = 0; /* examples read so far */
    double t0 = tt_now_s();
    while (!rc) {
        int n = 0, round_read = 0, eof = 0;
        for (int part = 0; part < N && !eof && !rc; part++) {
        int got_part = 0;
        while (got_part < B) {
            Example other; /* another rank's example, read only to be skipped */
            Example *ex = part == rank ? &bi.ex[n] : &other;
            int got = jsonl_next(r, ex);
            if (got < 0) {
                rc = -1;
                break;
            }
            if (got == 0) {
                eof = 1;
                break;
            }
            if (index++ < done) {
                example_free(ex);
                continue;
            }
            got_part++;
            if (part != rank) {
                example_free(ex); /* another rank's */
                continue;
            }
            if (tokenizer_encode(tok, ex->source, strlen(ex->source), &eo, &ids, NULL)) {
                rc = tt_err_wrap("%s:%zu", o->input_path, ex->line);
                example_free(ex);
                break;
            }
            int *p = bi.ids + (long)n * max_src, len = 0;
            p[len++] = bos;
            int text = (int)ids.n < max_src - 2 ? (int)ids.n : max_src - 2;
            memcpy(p + len, ids.ids, sizeof(int) * (size_t)text);
            len += text;
            p[len++] = eos;
            bi.len[n] = len;
            bi.ptr[n] = p;
            bi.stream[n] = (uint64_t)(index - 1);
            n++;
        }
        round_read += got_part;
        }
        if (N == 1) {
            if (n > 0 && !rc) {
                const GenOutput *res;
                if (generator_run(gen, n, bi.ptr, bi.len, bi.stream, &res)) {
                    rc = tt_err_wrap("%s:%zu", o->input_path, bi.ex[0].line);
                } else {
                    for (int i = 0; i < n && !rc; i++) rc = write_line(out, tok, &bi.ex[i], &res[i], out_name);
                    if (!rc && fflush(out)) rc = tt_err("%s: write error: %s", out_name, strerror(errno));
                }
            }
        } else {
            /* this rank's lines in memory, every rank's to rank 0, written in rank order */
            char *mem = NULL;
            size_t mem_n = 0;
            FILE *ms = open_memstream(&mem, &mem_n);
            if (!ms) rc = tt_err("out of memory");
            if (n > 0 && !rc) {
                const GenOutput *res;
                if (generator_run(gen, n, bi.ptr, bi.len, bi.stream, &res)) rc = tt_err_wrap("%s:%zu", o->input_path, bi.ex[0].line);
                else
                    for (int i = 0; i < n && !rc; i++) rc = write_line(ms, tok, &bi.ex[i], &res[i], out_name);
            }
            if (ms) fclose(ms);
            /* every rank takes part in the gather, even after an error (then it sends nothing
             * and the error ends the run everywhere below) */
            double err = rc ? 1 : 0;
            char *all = NULL;
            size_t *lens = NULL;
            if (dist_sum_f64(&err, 1) || dist_gather_bytes(rc ? "" : mem, rc ? 0 : mem_n, &all, &lens)) rc = -1;
            if (!rc && err > 0) rc = tt_err("generation failed on another rank");
            if (!rc && rank == 0 && all && lens) {
                /* rank 0's lines, then rank 1's, ...: input order */
                size_t total_bytes = 0;
                for (int q = 0; q < N; q++) total_bytes += lens[q];
                if (fwrite(all, 1, total_bytes, out) != total_bytes || fflush(out))
                    rc = tt_err("%s: write error: %s", out_name, strerror(errno));
            }
            free(lens);
            free(all);
            free(mem);
        }
        for (int i = 0; i < n; i++) example_free(&bi.ex[i]);
        if (rc || round_read == 0) break;
        if (o->progress && rank == 0) o->progress(index, total, tt_now_s() - t0, o->progress_ctx);
        if (eof || round_read < N * B) break;
    }
    if (!rc && o->progress) o->progress(index, total, tt_now_s() - t0, o->progress_ctx);
    token_ids_free(&ids);
    generator_free(gen);
    free(bi.ex);
    free(bi.ids);
    free(bi.len);
    free(bi.ptr);
    free(bi.stream);
    jsonl_close(r);
    if (out && out != stdout && fclose(out) && !rc) rc = tt_err("%s: %s", o->output_path, strerror(errno));
    return rc;
}
