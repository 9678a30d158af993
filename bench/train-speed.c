/* train-speed.c: the training step (forward, backward, AdamW) of tutor against the same
 * model in PyTorch eager (bench/train_speed_torch.py --serve), in one run, alternating step
 * by step so that both see the same machine load. Model: mBART-style encoder-decoder,
 * d_model 256, 4+4 layers, 4 heads, FFN 1024, vocabulary 8000; batch 16 x (128 source,
 * 32 target) tokens; no dropout. Prints target tokens/s for both, `ratio` (tutor / PyTorch),
 * tutor's GFLOP/s, the machine's sgemm rate measured here, and activation memory of the
 * training and the inference forward.
 * Usage: train-speed [--steps N] [--threads N] [--no-torch] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coprocess.h"
#include "tutor/kernels.h"
#include "tutor/model.h"

void model_acts_free(Model *m); /* from src/model/model_internal.h */
#include "tutor/optim.h"

enum { B = 16, S = 128, T = 32 };

/* sgemm rate on square products large enough to reach BLAS's peak. */
static double measure_sgemm_gflops(void) {
    int n = 1024;
    real *a = tt_alloc(sizeof(real) * n * n), *b = tt_alloc(sizeof(real) * n * n), *c = tt_alloc(sizeof(real) * n * n);
    for (long i = 0; i < (long)n * n; i++) a[i] = (real)(i % 7) * 0.1f, b[i] = (real)(i % 5) * 0.1f;
    gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = tt_now_s();
        for (int k = 0; k < 4; k++) gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = tt_now_s() - t0;
        double g = 4 * 2.0 * n * (double)n * n / dt / 1e9;
        if (g > best) best = g;
    }
    tt_free(a), tt_free(b), tt_free(c);
    return best;
}

/* FLOPs of one forward pass (matrix products and attention). */
static double forward_flops(const ModelConfig *c) {
    double C = c->d_model, Fe = c->enc_ffn, Fd = c->dec_ffn, V = c->vocab_size;
    double Ns = (double)B * S, Nt = (double)B * T;
    double enc = c->enc_layers * (2 * Ns * 4 * C * C + 2 * Ns * 2 * C * Fe + 4.0 * B * S * S * C);
    double dec = c->dec_layers * (2 * Nt * 4 * C * C + 2 * Nt * 2 * C * C + 2 * Ns * 2 * C * C +
                                  2 * Nt * 2 * C * Fd + 4.0 * B * T * T * C + 4.0 * B * T * S * C);
    return enc + dec + 2 * Nt * C * V;
}

static int torch_start(Coprocess *t, int threads) {
    char th[16];
    snprintf(th, sizeof th, "%d", threads);
    char *argv[] = {"python3", "bench/train_speed_torch.py", "--serve", "--threads", th, NULL};
    return coprocess_start(t, argv);
}

static double torch_step(Coprocess *t) {
    char line[256];
    fprintf(t->to, "step\n");
    fflush(t->to);
    if (!fgets(line, sizeof line, t->from)) return -1;
    return atof(line);
}

int main(int argc, char **argv) {
    int steps = 7, threads = 2, use_torch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) use_torch = 0;
        else {
            fprintf(stderr, "usage: train-speed [--steps N (>= 5)] [--threads N] [--no-torch]\n");
            return 2;
        }
    }
    if (steps < 5) steps = 5;
    tt_set_threads(threads);
    ModelConfig cfg;
    model_config_default(&cfg, ARCH_MBART);
    cfg.vocab_size = 8000;
    cfg.d_model = 256;
    cfg.enc_layers = cfg.dec_layers = 4;
    cfg.enc_heads = cfg.dec_heads = 4;
    cfg.enc_ffn = cfg.dec_ffn = 1024;
    cfg.dropout = cfg.attn_dropout = cfg.act_dropout = 0;
    Model *m = model_new(&cfg, 1);
    if (!m || model_alloc_grads(m)) {
        fprintf(stderr, "train-speed: %s\n", tt_errmsg());
        return 1;
    }
    static int src[B * S], src_mask[B * S], tgt_in[B * T], labels[B * T];
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < B * S; i++) src[i] = 4 + (int)rng_below(&rng, 7996), src_mask[i] = 1;
    for (int i = 0; i < B * T; i++) labels[i] = 4 + (int)rng_below(&rng, 7996);
    model_decoder_inputs(&cfg, labels, B, T, tgt_in);
    Batch batch = {B, S, T, src, src_mask, tgt_in, NULL, labels};

    /* inference forward's memory beside the training forward's */
    model_reserve(m, B, S, T, 0);
    size_t infer_bytes = model_act_bytes(m);
    model_acts_free(m);
    model_reserve(m, B, S, T, 1);
    size_t train_bytes = model_act_bytes(m);

    AdamW opt;
    AdamWConfig oc;
    adamw_config_default(&oc);
    adamw_init(&opt, m, &oc);
    Coprocess torch = {0};
    if (use_torch && torch_start(&torch, threads)) {
        fprintf(stderr, "train-speed: cannot start bench/train_speed_torch.py (run from the repository root)\n");
        return 1;
    }
    double sgemm = measure_sgemm_gflops();
    double *t_tutor = calloc((size_t)steps, sizeof(double)), *t_torch = calloc((size_t)steps, sizeof(double));
    uint64_t allocs_before = 0;
    double *t_gemm = calloc((size_t)steps, sizeof(double)), *f_gemm = calloc((size_t)steps, sizeof(double));
    for (int i = -2; i < steps; i++) {
        /* A pause between the sides: OpenBLAS threads spin for a while after a product, and
         * neither side should pay for the other's. */
        if (use_torch) usleep(200000);
        if (use_torch) {
            double dt = torch_step(&torch);
            if (dt < 0) {
                fprintf(stderr, "train-speed: PyTorch side stopped\n");
                return 1;
            }
            if (i >= 0) t_torch[i] = dt;
        }
        if (use_torch) usleep(200000);
        if (i == 0) allocs_before = tt_alloc_count();
        double g0, gf0, g1, gf1;
        gemm_profile(&g0, &gf0);
        double t0 = tt_now_s();
        model_zero_grads(m);
        model_forward(m, &batch, 1);
        model_xent(m, &batch, 0, 1, 1, NULL);
        model_backward(m, &batch);
        grad_clip(m->grads, m->n_params, 1.0);
        adamw_step(&opt, m->params, m->grads, 1e-4);
        double dt = tt_now_s() - t0;
        gemm_profile(&g1, &gf1);
        if (i >= 0) t_tutor[i] = dt, t_gemm[i] = g1 - g0, f_gemm[i] = gf1 - gf0;
        fprintf(stderr, "step %d: tutor %.3fs%s", i, dt, use_torch ? "" : "\n");
        if (use_torch) fprintf(stderr, ", torch %.3fs\n", i >= 0 ? t_torch[i] : 0.0);
    }
    uint64_t step_allocs = tt_alloc_count() - allocs_before;
    double med_tutor = bench_median(t_tutor, steps);
    double flops = 3 * forward_flops(&cfg);
    double tok_tutor = B * T / med_tutor;
    printf("model: mBART-style d_model 256, 4+4 layers, 4 heads, FFN 1024, vocab 8000; batch %d x (%d src, %d tgt); "
           "%d threads; median of %d steps after 2 warm-up\n",
           B, S, T, threads, steps);
    printf("tutor:   %8.1f target tokens/s  (%.3f s/step, %.1f GFLOP/s)\n", tok_tutor, med_tutor, flops / med_tutor / 1e9);
    if (use_torch) {
        double med_torch = bench_median(t_torch, steps);
        double tok_torch = B * T / med_torch;
        printf("pytorch: %8.1f target tokens/s  (%.3f s/step, %.1f GFLOP/s)\n", tok_torch, med_torch,
               flops / med_torch / 1e9);
        printf("ratio %.2f\n", tok_tutor / tok_torch);
        coprocess_stop(&torch);
    }
    double gemm_flops = f_gemm[0], med_gemm = bench_median(t_gemm, steps);
    printf("tutor breakdown: %.3f s/step in matrix products outside attention (%.1f GFLOP at %.1f GFLOP/s), "
           "%.3f s in the rest\n", med_gemm, gemm_flops / 1e9, gemm_flops / med_gemm / 1e9, med_tutor - med_gemm);
    printf("sgemm: %.1f GFLOP/s on this machine now (1024^3, %d threads); tutor reaches %.0f%% of it\n", sgemm, threads,
           100 * flops / med_tutor / 1e9 / sgemm);
    printf("activation memory: training forward %.1f MiB, inference forward %.1f MiB\n", train_bytes / 1048576.0,
           infer_bytes / 1048576.0);
    printf("tt_alloc calls during %d timed steps: %llu\n", steps, (unsigned long long)step_allocs);
    adamw_free(&opt);
    model_free(m);
    free(t_tutor);
    free(t_torch);
    return 0;
}
