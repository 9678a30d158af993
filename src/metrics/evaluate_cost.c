/* evaluate_cost.c: what a model costs to run: parameters, bytes on disk, peak resident
 * memory (measured in a forked child that holds only that model), latency per example at
 * batch 1 (median, p90) and batched throughput, for greedy and beam search. Model and
 * baseline are timed interleaved, example by example, so that load from other processes
 * hits both alike. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics/evaluate_internal.h"
#include "tutor/fileio.h"

int eval_gen_config(const Model *m, const char *dir, int beam, double length_penalty, int max_new_tokens,
                    GenConfig *g) {
    if (gen_config_for_dir(g, &m->cfg, dir)) return -1;
    g->num_beams = beam > 1 ? beam : 1;
    g->do_sample = 0;
    g->num_return_sequences = 1;
    g->max_new_tokens = max_new_tokens;
    g->length_penalty = length_penalty;
    return gen_config_check(g);
}

int eval_quality_gen_config(const ModelConfig *c, const char *dir, const EvalOptions *o, GenConfig *g) {
    if (gen_config_for_dir(g, c, dir)) return -1;
    if (g->max_new_tokens <= 0) g->max_new_tokens = o->max_new_tokens;
    gen_flags_apply(&o->gen, g);
    g->num_return_sequences = 1;
    return gen_config_check(g);
}

int pairset_max_source(const PairSet *ps, size_t n) {
    int mx = 1;
    for (size_t i = 0; i < n && i < ps->n; i++)
        if (ps->items[i].src_len > mx) mx = ps->items[i].src_len;
    return mx;
}

int eval_generate_pairs(Generator *gen, const PairSet *ps, size_t n, int batch_size, int **tokens, int *n_tokens,
                        long *total_tokens, double *seconds,
                        void (*progress)(const char *what, long done, long total, void *ctx), const char *what,
                        void *ctx) {
    const int **src = malloc(sizeof(int *) * (size_t)batch_size);
    int *len = malloc(sizeof(int) * (size_t)batch_size);
    uint64_t *stream = malloc(sizeof(uint64_t) * (size_t)batch_size);
    int rc = src && len && stream ? 0 : tt_err("out of memory");
    *total_tokens = 0;
    *seconds = 0;
    for (size_t b0 = 0; b0 < n && !rc; b0 += (size_t)batch_size) {
        int cnt = n - b0 < (size_t)batch_size ? (int)(n - b0) : batch_size;
        for (int k = 0; k < cnt; k++) {
            src[k] = ps->items[b0 + k].src;
            len[k] = ps->items[b0 + k].src_len;
            stream[k] = b0 + (size_t)k;
        }
        const GenOutput *out;
        double t0 = tt_now_s();
        if (generator_run(gen, cnt, (const int *const *)src, len, stream, &out)) {
            rc = -1;
            break;
        }
        *seconds += tt_now_s() - t0;
        for (int k = 0; k < cnt; k++) {
            const GenHypothesis *h = &out[k].hyps[0];
            if (n_tokens) n_tokens[b0 + k] = h->n_tokens;
            *total_tokens += h->n_tokens;
            if (tokens) {
                tokens[b0 + k] = malloc(sizeof(int) * (size_t)(h->n_tokens ? h->n_tokens : 1));
                if (!tokens[b0 + k]) {
                    rc = tt_err("out of memory");
                    break;
                }
                memcpy(tokens[b0 + k], h->tokens, sizeof(int) * (size_t)h->n_tokens);
            }
        }
        if (progress) progress(what, (long)(b0 + (size_t)cnt), (long)n, ctx);
    }
    free(src);
    free(len);
    free(stream);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double eval_percentile(const double *v, int n, double q) {
    if (n <= 0) return NAN;
    double *s = malloc(sizeof(double) * (size_t)n);
    if (!s) return NAN;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;
    double r = s[lo] + (pos - lo) * (s[hi] - s[lo]);
    free(s);
    return r;
}

/* ---- peak memory in a child ---- */

static long long current_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (!f) return -1;
    int got = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return got == 2 ? resident * (long long)sysconf(_SC_PAGESIZE) : -1;
}

/* The child's work: load, generate greedy then beam over every input, in batches. */
static int memory_child_work(const char *dir, const int *const *src, const int *src_len, int n, int batch_size,
                             int max_new_tokens, int beam) {
    Model *m = model_load(dir);
    if (!m) return -1;
    int max_src = 1;
    for (int i = 0; i < n; i++)
        if (src_len[i] > max_src) max_src = src_len[i];
    int rc = 0;
    uint64_t *stream = malloc(sizeof(uint64_t) * (size_t)batch_size);
    if (!stream) rc = tt_err("out of memory");
    for (int pass = 0; pass < 2 && !rc; pass++) {
        GenConfig g;
        if (eval_gen_config(m, dir, pass ? beam : 1, 1.0, max_new_tokens, &g)) {
            rc = -1;
            break;
        }
        Generator *gen = generator_new(m, &g, batch_size, max_src);
        if (!gen) {
            rc = -1;
            break;
        }
        for (int b0 = 0; b0 < n && !rc; b0 += batch_size) {
            int cnt = n - b0 < batch_size ? n - b0 : batch_size;
            for (int k = 0; k < cnt; k++) stream[k] = (uint64_t)(b0 + k);
            const GenOutput *out;
            rc = generator_run(gen, cnt, src + b0, src_len + b0, stream, &out);
        }
        generator_free(gen);
    }
    free(stream);
    model_free(m);
    return rc;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k, n -= (size_t)k;
    }
    return 0;
}

int eval_measure_memory(const char *dir, const int *const *src, const int *src_len, int n, int batch_size,
                        int max_new_tokens, int beam, long long *peak_rss_bytes, long long *base_rss_bytes) {
    *peak_rss_bytes = *base_rss_bytes = -1;
    if (n < 1 || batch_size < 1) return tt_err("memory measurement: no inputs");
    int fd[2];
    if (pipe(fd)) return tt_err("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return tt_err("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fd[0]);
        /* the parent's worker threads do not exist here: run serially */
        tt_set_threads(1);
        long long base = current_rss_bytes();
        int rc = memory_child_work(dir, src, src_len, n, batch_size, max_new_tokens, beam);
        char msg[512] = "";
        if (rc) snprintf(msg, sizeof msg, "%s", tt_errmsg());
        int ok = write_all(fd[1], &base, sizeof base) == 0 && write_all(fd[1], msg, sizeof msg) == 0;
        _exit(rc == 0 && ok ? 0 : 1);
    }
    close(fd[1]);
    long long base = -1;
    char msg[512] = "";
    size_t got = 0;
    char buf[sizeof base + sizeof msg];
    for (;;) {
        ssize_t k = read(fd[0], buf + got, sizeof buf - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
        if (got == sizeof buf) break;
    }
    close(fd[0]);
    if (got == sizeof buf) {
        memcpy(&base, buf, sizeof base);
        memcpy(msg, buf + sizeof base, sizeof msg);
        msg[sizeof msg - 1] = 0;
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) return tt_err("wait4: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return tt_err("measuring the memory of %s: %s", dir, msg[0] ? msg : "the child process failed");
    /* Linux reports ru_maxrss in KiB */
    *peak_rss_bytes = (long long)ru.ru_maxrss * 1024;
    *base_rss_bytes = base;
    return 0;
}

/* ---- latency and throughput ---- */

typedef struct {
    Model *m;
    const char *dir;
    const PairSet *ps;
    EvalCost *cost;
    Generator *one, *many;
    double *lat_s;
    double many_s;
    long many_tokens;
} Timed;

static int time_mode(Timed *t, int n_sys, int beam, const EvalOptions *o, int n) {
    int rc = 0;
    for (int s = 0; s < n_sys && !rc; s++) {
        GenConfig g;
        if (eval_gen_config(t[s].m, t[s].dir, beam, o->length_penalty, o->max_new_tokens, &g)) {
            rc = -1;
            break;
        }
        int max_src = pairset_max_source(t[s].ps, (size_t)n);
        t[s].one = generator_new(t[s].m, &g, 1, max_src);
        t[s].many = generator_new(t[s].m, &g, o->batch_size, max_src);
        t[s].many_s = 0;
        t[s].many_tokens = 0;
        if (!t[s].one || !t[s].many) rc = -1;
    }
    /* one warm-up input each: first-touch page faults are not the model's latency */
    for (int s = 0; s < n_sys && !rc; s++) {
        const GenOutput *out;
        const int *src = t[s].ps->items[0].src;
        uint64_t stream = 0;
        rc = generator_run(t[s].one, 1, &src, &t[s].ps->items[0].src_len, &stream, &out);
    }
    for (int i = 0; i < n && !rc; i++)
        for (int s = 0; s < n_sys && !rc; s++) {
            const GenOutput *out;
            const int *src = t[s].ps->items[i].src;
            uint64_t stream = (uint64_t)i;
            double t0 = tt_now_s();
            rc = generator_run(t[s].one, 1, &src, &t[s].ps->items[i].src_len, &stream, &out);
            t[s].lat_s[i] = tt_now_s() - t0;
        }
    /* batched: alternate whole batches */
    for (int b0 = 0; b0 < n && !rc; b0 += o->batch_size)
        for (int s = 0; s < n_sys && !rc; s++) {
            int cnt = n - b0 < o->batch_size ? n - b0 : o->batch_size;
            PairSet part = {t[s].ps->items + b0, (size_t)cnt, NULL, 0};
            long tokens;
            double secs;
            rc = eval_generate_pairs(t[s].many, &part, (size_t)cnt, cnt, NULL, NULL, &tokens, &secs, NULL, NULL, NULL);
            t[s].many_s += secs;
            t[s].many_tokens += tokens;
        }
    for (int s = 0; s < n_sys; s++) {
        if (!rc) {
            EvalCost *c = t[s].cost;
            double med = 1000 * eval_percentile(t[s].lat_s, n, 0.5), p90 = 1000 * eval_percentile(t[s].lat_s, n, 0.9);
            double tps = t[s].many_s > 0 ? (double)t[s].many_tokens / t[s].many_s : NAN;
            double ips = t[s].many_s > 0 ? (double)n / t[s].many_s : NAN;
            if (beam > 1)
                c->beam_ms_median = med, c->beam_ms_p90 = p90, c->beam_tokens_per_s = tps, c->beam_inputs_per_s = ips;
            else
                c->greedy_ms_median = med, c->greedy_ms_p90 = p90, c->greedy_tokens_per_s = tps,
                c->greedy_inputs_per_s = ips;
        }
        generator_free(t[s].one);
        generator_free(t[s].many);
        t[s].one = t[s].many = NULL;
    }
    return rc;
}

static long long file_bytes(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int eval_measure_speed(Model *m, const char *dir, const PairSet *ps, Model *other, const char *other_dir,
                       const PairSet *other_ps, const EvalOptions *o, EvalCost *c, EvalCost *other_cost) {
    int n = o->speed_examples < (int)ps->n ? o->speed_examples : (int)ps->n;
    if (n < 1) return tt_err("speed: no examples to time");
    Timed t[2];
    memset(t, 0, sizeof t);
    t[0] = (Timed){m, dir, ps, c, NULL, NULL, NULL, 0, 0};
    t[1] = (Timed){other, other_dir, other_ps, other_cost, NULL, NULL, NULL, 0, 0};
    int n_sys = other ? 2 : 1;
    int rc = 0;
    for (int s = 0; s < n_sys; s++) {
        EvalCost *e = t[s].cost;
        e->n_params = t[s].m->n_params;
        e->disk_bytes = file_bytes(t[s].dir, "model.safetensors");
        e->examples = n;
        e->beam = o->speed_beam;
        e->batch_size = o->batch_size;
        t[s].lat_s = malloc(sizeof(double) * (size_t)n);
        if (!t[s].lat_s) rc = tt_err("out of memory");
    }
    if (!rc) {
        tt_info("eval: timing greedy search on %d inputs (batch 1, then batches of %d)%s", n, o->batch_size,
                other ? ", model and baseline interleaved" : "");
        rc = time_mode(t, n_sys, 1, o, n);
    }
    if (!rc) {
        tt_info("eval: timing beam search (%d beams) on %d inputs", o->speed_beam, n);
        rc = time_mode(t, n_sys, o->speed_beam, o, n);
    }
    for (int s = 0; s < n_sys; s++) {
        free(t[s].lat_s);
        if (!rc) t[s].cost->measured = 1;
    }
    return rc;
}
