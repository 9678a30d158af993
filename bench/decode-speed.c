/* decode-speed.c: tutor's generation against PyTorch eager with a key/value cache
 * (bench/decode_speed_torch.py --serve) on the same random weights, in one run, alternating
 * run by run so that both see the same machine load. Each side runs at 1 and 2 threads
 * (PyTorch in two processes) and its faster median counts. Both sides must return the same tokens (greedy) and
 * the same best hypothesis (beam); the bench checks and prints it.
 *   encoder-decoder: mBART-style pre-LN, d_model 256, 4+4 layers, 4 heads, FFN 1024, vocab 8000;
 *     16 sources of 128 tokens, exactly 32 new tokens (</s> suppressed); greedy and beam 4.
 *   decoder-only: GPT-2 style, d_model 256, 4 layers, 4 heads, FFN 1024, vocab 8192, 288
 *     positions; batch 1, 32-token prompt, 256 new tokens, greedy.
 * Throughput: the returned best hypotheses' new tokens per second (encoding included).
 * Usage (from the repository root): decode-speed [--reps N] [--no-torch] [--only encdec|gpt2] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coprocess.h"
#include "tutor/generate.h"

enum { B = 16, S = 128, NEW = 32, BEAMS = 4, GPT_PROMPT = 32, GPT_NEW = 256 };

typedef struct {
    Coprocess cp;
    int threads;
} Torch;

static int torch_start(Torch *t, const char *model_dir, const char *sources, int n_new, int threads) {
    char th[16], nn[16], nb[16];
    snprintf(th, sizeof th, "%d", threads);
    snprintf(nn, sizeof nn, "%d", n_new);
    snprintf(nb, sizeof nb, "%d", BEAMS);
    char *argv[] = {"python3", "bench/decode_speed_torch.py", "--serve", "--model", (char *)model_dir,
                    "--sources", (char *)sources, "--new", nn, "--beams", nb, "--threads", th, NULL};
    t->threads = threads;
    return coprocess_start(&t->cp, argv);
}

static void torch_stop(Torch *t) { coprocess_stop(&t->cp); }

/* One decode on the PyTorch side: seconds, and the tokens (n expected) into toks. */
static double torch_run(Torch *t, const char *mode, int *toks, int n) {
    fprintf(t->cp.to, "%s\n", mode);
    fflush(t->cp.to);
    char *line = NULL;
    size_t cap = 0;
    if (getline(&line, &cap, t->cp.from) < 0) {
        free(line);
        return -1;
    }
    char *p = line, *end;
    double dt = strtod(p, &end);
    p = end;
    for (int i = 0; i < n; i++) {
        toks[i] = (int)strtol(p, &end, 10);
        if (end == p) dt = -1;
        p = end;
    }
    free(line);
    return dt;
}

typedef struct {
    const char *name;
    const char *torch_mode;
    Generator *gen;
    int n_inputs, n_new;
    double *t_tutor[2], *t_torch[2]; /* [k]: k + 1 threads */
    int mismatches;
} Mode;

static void write_sources(const char *path, int *const *src, int n, int len) {
    FILE *f = fopen(path, "w");
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        fputc('[', f);
        for (int t = 0; t < len; t++) fprintf(f, "%d%s", src[i][t], t + 1 < len ? "," : "");
        fprintf(f, "]%s", i + 1 < n ? "," : "");
    }
    fputs("]\n", f);
    fclose(f);
}

/* Times mode m `reps` times after one warm-up, alternating tutor and the PyTorch sides. */
static int run_mode(Mode *m, Torch *torch, int n_torch, int reps, int *const *src, const int *src_len) {
    int total = m->n_inputs * m->n_new;
    int *toks = malloc(sizeof(int) * total);
    uint64_t stream[B];
    for (int i = 0; i < B; i++) stream[i] = (uint64_t)i;
    for (int r = -1; r < reps; r++) {
        const GenOutput *out = NULL;
        double dt[2];
        for (int k = 0; k < 2; k++) {
            tt_set_threads(k + 1);
            double t0 = tt_now_s();
            if (generator_run(m->gen, m->n_inputs, (const int *const *)src, src_len, stream, &out)) {
                fprintf(stderr, "decode-speed: %s\n", tt_errmsg());
                return -1;
            }
            dt[k] = tt_now_s() - t0;
            if (r >= 0) m->t_tutor[k][r] = dt[k];
        }
        for (int k = 0; k < n_torch; k++) {
            double tt = torch_run(&torch[k], m->torch_mode, toks, strcmp(m->torch_mode, "encode") ? total : 0);
            if (tt < 0) {
                fprintf(stderr, "decode-speed: the PyTorch side stopped\n");
                return -1;
            }
            if (r >= 0) m->t_torch[k][r] = tt;
            for (int i = 0; strcmp(m->torch_mode, "encode") && i < m->n_inputs; i++) {
                const GenHypothesis *h = &out[i].hyps[0];
                int same = h->n_tokens == m->n_new;
                for (int t = 0; same && t < m->n_new; t++) same = h->tokens[t] == toks[i * m->n_new + t];
                if (!same) m->mismatches++;
            }
        }
        fprintf(stderr, "%s run %d: tutor(1 thr) %.3fs, tutor(2 thr) %.3fs", m->name, r, dt[0], dt[1]);
        for (int k = 0; k < n_torch; k++) fprintf(stderr, ", torch(%d thr) %.3fs", torch[k].threads, r >= 0 ? m->t_torch[k][r] : 0);
        fputc('\n', stderr);
    }
    free(toks);
    return 0;
}

/* The encoder-only breakdown: milliseconds, not tokens. */
static void report_encode(const Mode *m, const Torch *torch, int n_torch, int reps) {
    double tut = 1e30, tor = 1e30;
    for (int k = 0; k < 2; k++) tut = fmin(tut, bench_median(m->t_tutor[k], reps));
    for (int k = 0; k < n_torch; k++) tor = fmin(tor, bench_median(m->t_torch[k], reps));
    printf("%-20s tutor %.1f ms", m->name, 1e3 * tut);
    if (n_torch) printf("  pytorch %.1f ms  ratio %.2f", 1e3 * tor, tor / tut);
    putchar('\n');
}

static void report(const Mode *m, const Torch *torch, int n_torch, int reps) {
    double tokens = (double)m->n_inputs * m->n_new;
    double tut = 0;
    printf("%-20s", m->name);
    for (int k = 0; k < 2; k++) {
        double x = tokens / bench_median(m->t_tutor[k], reps);
        printf(" tutor(%d thr) %6.1f", k + 1, x);
        if (x > tut) tut = x;
    }
    double best = 0;
    for (int k = 0; k < n_torch; k++) {
        double tor = tokens / bench_median(m->t_torch[k], reps);
        printf("  pytorch(%d thr) %6.1f", torch[k].threads, tor);
        if (tor > best) best = tor;
    }
    if (n_torch) {
        printf("  tok/s  ratio %.2f", tut / best);
        printf("  tokens %s", m->mismatches ? "DIFFER" : "identical");
        if (m->mismatches) printf(" (%d sequence comparisons differ)", m->mismatches);
    }
    putchar('\n');
}

/* The temporary model directory goes however the bench ends. */
static char tmp_dir[64] = "/tmp/tutor-decode-speed-XXXXXX";
static void remove_tmp_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) fprintf(stderr, "decode-speed: could not remove %s\n", tmp_dir);
}

static Model *bench_model(Arch arch) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.d_model = 256;
    c.dec_layers = 4;
    c.dec_heads = 4;
    c.dec_ffn = 1024;
    if (arch == ARCH_GPT2) {
        c.vocab_size = 8192;
        c.max_positions = GPT_PROMPT + GPT_NEW;
    } else {
        c.vocab_size = 8000;
        c.enc_layers = 4;
        c.enc_heads = 4;
        c.enc_ffn = 1024;
    }
    c.dropout = c.attn_dropout = c.act_dropout = 0;
    /* wide enough weights that the next-token distributions are peaked: near ties would let
     * float rounding pick different tokens on the two sides */
    c.init_std = 0.1;
    return model_new(&c, 1);
}

int main(int argc, char **argv) {
    int reps = 5, use_torch = 1, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) use_torch = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            i++;
            only = !strcmp(argv[i], "encdec") ? 0 : !strcmp(argv[i], "gpt2") ? 1 : -2;
            if (only == -2) {
                fprintf(stderr, "decode-speed: --only encdec or gpt2\n");
                return 2;
            }
        }
        else {
            fprintf(stderr, "usage: decode-speed [--reps N (>= 5)] [--no-torch] [--only encdec|gpt2]\n");
            return 2;
        }
    }
    if (reps < 5) reps = 5;
    tt_set_threads(2); /* buffers for up to 2 threads; each run sets its count */
    double load[3] = {0};
    if (getloadavg(load, 3) < 0) load[0] = -1;
    if (!mkdtemp(tmp_dir)) return 1;
    atexit(remove_tmp_dir);
    const char *dir = tmp_dir;
    char ed_dir[128], gp_dir[128], ed_src[160], gp_src[160];
    snprintf(ed_dir, sizeof ed_dir, "%s/encdec", dir);
    snprintf(gp_dir, sizeof gp_dir, "%s/gpt2", dir);
    snprintf(ed_src, sizeof ed_src, "%s/sources-encdec.json", dir);
    snprintf(gp_src, sizeof gp_src, "%s/sources-gpt2.json", dir);

    Model *ed = bench_model(ARCH_MBART), *gp = bench_model(ARCH_GPT2);
    if (!ed || !gp || model_save(ed, ed_dir) || model_save(gp, gp_dir)) {
        fprintf(stderr, "decode-speed: %s\n", tt_errmsg());
        return 1;
    }
    Rng rng;
    rng_seed(&rng, 5);
    static int src_store[B][S], gp_store[1][GPT_PROMPT];
    int *src[B], *gsrc[1], src_len[B], gp_len[1] = {GPT_PROMPT};
    for (int i = 0; i < B; i++) {
        for (int t = 0; t < S; t++) src_store[i][t] = 4 + (int)rng_below(&rng, 8000 - 4);
        src[i] = src_store[i];
        src_len[i] = S;
    }
    for (int t = 0; t < GPT_PROMPT; t++) gp_store[0][t] = 4 + (int)rng_below(&rng, 8192 - 4);
    gsrc[0] = gp_store[0];
    write_sources(ed_src, src, B, S);
    write_sources(gp_src, gsrc, 1, GPT_PROMPT);

    /* exactly NEW tokens: </s> suppressed by min_new_tokens, no forced eos */
    GenConfig g;
    gen_config_from_model(&g, &ed->cfg);
    g.max_new_tokens = g.min_new_tokens = NEW;
    g.forced_eos_id = -1;
    GenConfig gb = g;
    gb.num_beams = BEAMS;
    GenConfig gg;
    gen_config_from_model(&gg, &gp->cfg);
    gg.max_new_tokens = gg.min_new_tokens = GPT_NEW;
    gg.forced_eos_id = -1;

    GenConfig g1 = g;
    g1.max_new_tokens = g1.min_new_tokens = 1;
    double *times = calloc((size_t)16 * reps, sizeof(double));
    Mode modes[4] = {
        {"enc-dec greedy", "greedy", generator_new(ed, &g, B, S), B, NEW, {0}, {0}, 0},
        {"enc-dec beam 4", "beam", generator_new(ed, &gb, B, S), B, NEW, {0}, {0}, 0},
        {"decoder-only greedy", "greedy", generator_new(gp, &gg, 1, GPT_PROMPT), 1, GPT_NEW, {0}, {0}, 0},
        /* breakdown: tutor's side also runs one decoder step */
        {"enc-dec encode only", "encode", generator_new(ed, &g1, B, S), B, 1, {0}, {0}, 0},
    };
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < 2; t++) {
            modes[k].t_tutor[t] = times + (4 * k + t) * reps;
            modes[k].t_torch[t] = times + (4 * k + 2 + t) * reps;
        }
    for (int k = 0; k < 4; k++)
        if (!modes[k].gen) {
            fprintf(stderr, "decode-speed: %s\n", tt_errmsg());
            return 1;
        }
    Torch torch[2];
    memset(torch, 0, sizeof torch);
    int n_torch = use_torch ? 2 : 0;
    if (only != 1) {
        for (int k = 0; k < n_torch; k++)
            if (torch_start(&torch[k], ed_dir, ed_src, NEW, k + 1)) {
                fprintf(stderr, "decode-speed: cannot start bench/decode_speed_torch.py (run from the repository root)\n");
                return 1;
            }
        if (run_mode(&modes[0], torch, n_torch, reps, src, src_len) ||
            run_mode(&modes[1], torch, n_torch, reps, src, src_len) ||
            run_mode(&modes[3], torch, n_torch, reps, src, src_len))
            return 1;
        for (int k = 0; k < n_torch; k++) torch_stop(&torch[k]);
    }
    if (only != 0) {
        for (int k = 0; k < n_torch; k++)
            if (torch_start(&torch[k], gp_dir, gp_src, GPT_NEW, k + 1)) {
                fprintf(stderr, "decode-speed: cannot start bench/decode_speed_torch.py\n");
                return 1;
            }
        if (run_mode(&modes[2], torch, n_torch, reps, gsrc, gp_len)) return 1;
        for (int k = 0; k < n_torch; k++) torch_stop(&torch[k]);
    }
    double load_end[3] = {0};
    if (getloadavg(load_end, 3) < 0) load_end[0] = -1;

    printf("decode-speed: median of %d runs after 1 warm-up, tutor and PyTorch%s at 1 and 2 threads, the faster\n"
           "counts; PyTorch eager with a KV cache; new tokens of the best hypotheses per second\n",
           reps, n_torch ? "" : " (skipped)");
    printf("enc-dec: mBART-style d_model 256, 4+4 layers, 4 heads, FFN 1024, vocab 8000; %d sources x %d tokens, %d new\n",
           B, S, NEW);
    printf("decoder-only: GPT-2 style d_model 256, 4 layers, 4 heads, FFN 1024, vocab 8192; batch 1, prompt %d, %d new\n",
           GPT_PROMPT, GPT_NEW);
    for (int k = 0; k < 3; k++)
        if (only < 0 || (k < 2) == (only == 0)) report(&modes[k], torch, n_torch, reps);
    if (only != 1) report_encode(&modes[3], torch, n_torch, reps);
    printf("load average at start %.2f, at end %.2f (2 cores)\n", load[0], load_end[0]);
    for (int k = 0; k < 4; k++) generator_free(modes[k].gen);
    model_free(ed);
    model_free(gp);
    free(times);
    return 0;
}
