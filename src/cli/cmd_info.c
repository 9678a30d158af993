/* cmd_info.c: `tutor info DIR`: what a model directory holds: architecture, sizes, the
 * parameter count and the tensor table. */
#include <stdio.h>
#include <string.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/kernels.h"
#include "tutor/model.h"

static const char *arch_name(Arch a) {
    return a == ARCH_GPT2 ? "gpt2 (decoder-only)" : a == ARCH_BART ? "bart (post-LN encoder-decoder)"
                                                                   : "mbart (pre-LN encoder-decoder)";
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int tensors = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: tutor info [--tensors] MODEL_DIR\n"
                   "       tutor info --blas | --mpi\n\n"
                   "Prints a model directory's architecture, sizes and parameter count.\n"
                   "  --tensors   also list every tensor with its shape\n"
                   "  --blas      print the OpenBLAS kernel set in use (tutor sets OPENBLAS_CORETYPE\n"
                   "              itself when OpenBLAS misreads the CPU; scripts export this value)\n"
                   "  --mpi       whether this build has MPI (data-parallel runs under mpirun)\n");
            return 0;
        } else if (!strcmp(argv[i], "--blas")) {
            printf("%s\n", gemm_blas_core());
            return 0;
        } else if (!strcmp(argv[i], "--mpi")) {
#ifdef TUTOR_MPI
            printf("on (rank %d of %d)\n", dist_rank(), dist_size());
#else
            printf("off (built without MPI)\n");
#endif
            return 0;
        } else if (!strcmp(argv[i], "--tensors")) {
            tensors = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "tutor: info: unknown option '%s' (see tutor info --help)\n", argv[i]);
            return 2;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        fprintf(stderr, "tutor: info: which model directory? (see tutor info --help)\n");
        return 2;
    }
    Model *m = model_load(dir);
    if (!m) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        return 1;
    }
    const ModelConfig *c = &m->cfg;
    printf("model       %s\n", dir);
    printf("arch        %s\n", arch_name(c->arch));
    printf("d_model     %d\n", c->d_model);
    if (model_is_encdec(c)) printf("encoder     %d layers, %d heads, FFN %d\n", c->enc_layers, c->enc_heads, c->enc_ffn);
    printf("decoder     %d layers, %d heads, FFN %d\n", c->dec_layers, c->dec_heads, c->dec_ffn);
    printf("vocabulary  %d\n", c->vocab_size);
    printf("positions   %d\n", c->max_positions);
    printf("parameters  %zu (%.2fM, %.1f MiB as float32)\n", m->n_params, m->n_params / 1e6,
           m->n_params * 4.0 / 1048576.0);
    if (tensors)
        for (int i = 0; i < m->n_tensors; i++) {
            const ParamInfo *pi = &m->tensors[i];
            printf("  %-60s [%d%s", pi->name, pi->shape[0], pi->ndim > 1 ? ", " : "]\n");
            if (pi->ndim > 1) printf("%d]\n", pi->shape[1]);
        }
    model_free(m);
    return 0;
}
