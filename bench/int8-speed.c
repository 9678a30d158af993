/* int8-speed.c: generation with int8 weights against float32, same model, same inputs, in
 * one run, interleaved rep by rep: greedy at batch 1, greedy at batch 32, beam 4 at batch 32.
 * Every output is forced to the same length (min = max new tokens), so both sides generate
 * the same number of tokens. Prints tokens/s of each, the int8 kernel path and
 *   ratio = int8 tokens/s / float32 tokens/s   (the bar: >= 2.0 with AVX-512 VNNI, >= 1.5 AVX2)
 * The model: --model DIR (a trained student), or --config FILE (random weights of that shape;
 * default: tutor study's debdesc student, mBART d_model 96, 1+1 layers, 3 heads, FFN 384,
 * vocabulary 8001).
 * Usage: int8-speed [--model DIR | --config FILE] [--threads N] [--inputs N] [--src-len S]
 *                   [--out-len L] [--reps R] [--only 0|1|2] [--side 0|1]
 * For profiling: --only M runs one mode (0 greedy batch 1, 1 greedy batch 32, 2 beam 4 batch 32),
 * --side 0|1 only the float32 or the int8 side (its ratio then meaningless), --cpu-time the
 * process's CPU time instead of wall time (for a machine that is busy with something else). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coprocess.h"
#include "tutor/generate.h"
#include "tutor/kernels.h"
#include "tutor/model.h"

static Model *make_model(const char *dir, const char *config) {
    if (dir) return model_load(dir);
    ModelConfig c;
    if (config) {
        if (model_config_load(&c, config)) return NULL;
    } else {
        model_config_default(&c, ARCH_MBART);
        c.vocab_size = 8001, c.d_model = 96, c.enc_layers = c.dec_layers = 1;
        c.enc_heads = c.dec_heads = 3, c.enc_ffn = c.dec_ffn = 384, c.max_positions = 128;
        c.pad_id = 1, c.bos_id = 0, c.eos_id = 2, c.decoder_start_id = 2;
    }
    c.dropout = c.attn_dropout = c.act_dropout = 0;
    return model_new(&c, 5);
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *config = NULL;
    int threads = 1, n_in = 64, S = 96, L = 12, reps = 3, only = -1, only_side = -1, cpu_time = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--inputs") && i + 1 < argc) n_in = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--src-len") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out-len") && i + 1 < argc) L = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--side") && i + 1 < argc) only_side = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-time")) cpu_time = 1;
        else {
            fprintf(stderr, "usage: int8-speed [--model DIR | --config FILE] [--threads N] [--inputs N] [--src-len S] "
                            "[--out-len L] [--reps R] [--only 0|1|2] [--side 0|1] [--cpu-time]\n");
            return 2;
        }
    }
    if (n_in < 1 || S < 3 || L < 1 || reps < 1 || threads < 1) {
        fprintf(stderr, "int8-speed: bad sizes\n");
        return 2;
    }
    tt_set_threads(threads);
    bench_print_machine();
    Model *mf = make_model(dir, config), *mq = make_model(dir, config);
    if (!mf || !mq || model_q8_quantize(mq)) {
        fprintf(stderr, "int8-speed: %s\n", tt_errmsg());
        return 1;
    }
    const ModelConfig *c = &mf->cfg;
    if (S > c->max_positions - (model_is_encdec(c) ? 0 : L)) S = c->max_positions - (model_is_encdec(c) ? 0 : L);
    printf("model: %s, d_model %d, %d+%d layers, vocabulary %d, %zu parameters; %d inputs of %d tokens, %d new tokens "
           "each; %d threads; int8 kernels: %s\n",
           dir ? dir : config ? config : "random (the study's student shape)", c->d_model, c->enc_layers, c->dec_layers,
           c->vocab_size, mf->n_params, n_in, S, L, threads, q8_path_name(mq->q8->path));
    /* random sources: <s> ids </s> */
    int *pool = malloc(sizeof(int) * (size_t)n_in * S);
    const int **src = malloc(sizeof(int *) * (size_t)n_in);
    int *len = malloc(sizeof(int) * (size_t)n_in);
    uint64_t *stream = malloc(sizeof(uint64_t) * (size_t)n_in);
    Rng rng;
    rng_seed(&rng, 9);
    for (int i = 0; i < n_in; i++) {
        int *p = pool + (size_t)i * S;
        p[0] = c->bos_id >= 0 ? c->bos_id : 0;
        for (int k = 1; k < S - 1; k++) p[k] = 3 + (int)rng_below(&rng, (uint32_t)(c->vocab_size - 3));
        p[S - 1] = c->eos_id >= 0 ? c->eos_id : 2;
        src[i] = p, len[i] = S, stream[i] = (uint64_t)i;
    }
    static const struct {
        const char *name;
        int beams, batch;
    } modes[3] = {{"greedy, batch 1", 1, 1}, {"greedy, batch 32", 1, 32}, {"beam 4, batch 32", 4, 32}};
    for (int md = 0; md < 3; md++) {
        if (only >= 0 && md != only) continue;
        GenConfig g;
        gen_config_from_model(&g, c);
        g.num_beams = modes[md].beams, g.num_return_sequences = 1, g.do_sample = 0;
        g.min_new_tokens = g.max_new_tokens = L, g.no_repeat_ngram_size = 0;
        int B = modes[md].batch;
        Generator *gf = generator_new(mf, &g, B, S), *gq = generator_new(mq, &g, B, S);
        if (!gf || !gq) {
            fprintf(stderr, "int8-speed: %s\n", tt_errmsg());
            return 1;
        }
        double tf[16], tq[16];
        int R = reps < 16 ? reps : 16;
        for (int r = -1; r < R; r++) {
            for (int side = 0; side < 2; side++) {
                if (only_side >= 0 && side != only_side) {
                    if (r >= 0) (side ? tq : tf)[r] = 1;
                    continue;
                }
                Generator *gen = side ? gq : gf;
                double t0 = cpu_time ? cpu_s() : tt_now_s();
                for (int b0 = 0; b0 < n_in; b0 += B) {
                    int cnt = n_in - b0 < B ? n_in - b0 : B;
                    const GenOutput *out;
                    if (generator_run(gen, cnt, src + b0, len + b0, stream + b0, &out)) {
                        fprintf(stderr, "int8-speed: %s\n", tt_errmsg());
                        return 1;
                    }
                }
                if (r >= 0) (side ? tq : tf)[r] = (cpu_time ? cpu_s() : tt_now_s()) - t0;
                if (r < 0) break; /* one warm-up pass of the float side; the int8 side's below */
            }
            if (r < 0 && only_side != 0)
                for (int b0 = 0; b0 < n_in; b0 += B) {
                    const GenOutput *out;
                    int cnt = n_in - b0 < B ? n_in - b0 : B;
                    generator_run(gq, cnt, src + b0, len + b0, stream + b0, &out);
                }
        }
        double mf_s = bench_median(tf, R), mq_s = bench_median(tq, R);
        double tok = (double)n_in * L;
        printf("%-18s float32 %8.1f tokens/s   int8 %8.1f tokens/s   ratio %.2f   (median of %d, %s%s)\n", modes[md].name,
               tok / mf_s, tok / mq_s, mf_s / mq_s, R, q8_path_name(mq->q8->path), cpu_time ? ", CPU time" : "");
        generator_free(gf);
        generator_free(gq);
    }
    free(pool), free(src), free(len), free(stream);
    model_free(mf);
    model_free(mq);
    return 0;
}
