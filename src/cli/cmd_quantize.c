/* cmd_quantize.c: `tutor quantize --model DIR [-o OUT]`: int8 weights for every linear layer
 * and the output projection (per output row, symmetric), written to model.int8.safetensors
 * beside the float32 model, which stays as it is (the directory still loads in Hugging Face
 * as float32). `tutor generate --int8` and `tutor eval --int8` use them. docs/int8.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/cli.h"
#include "tutor/core.h"
#include "tutor/fileio.h"
#include "tutor/kernels.h"
#include "tutor/model.h"
#include "tutor/safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: tutor quantize --model DIR [-o OUT_DIR]\n\n"
               "Writes int8 weights for every linear layer and the output projection (one scale per\n"
               "output row, symmetric, |q| <= 127) to DIR/model.int8.safetensors, or with -o copies the\n"
               "model directory to OUT_DIR and writes them there. Embeddings, LayerNorms and biases stay\n"
               "float32; the float32 model.safetensors is kept, so the directory still loads in Hugging\n"
               "Face. Generation uses the int8 weights with --int8 (tutor generate, tutor eval), with\n"
               "activations quantized per row at run time; the kernel path (AVX-512 VNNI, AVX2 or\n"
               "portable C) is chosen from the CPU's flags (TUTOR_INT8_PATH=portable|avx2|vnni forces one).\n\n"
               "  --model DIR   the model directory (config.json, model.safetensors)\n"
               "  -o DIR        a new directory: the model's files and the int8 weights\n"
               "  -h, --help    this help\n");
}

static int copy_file(const char *src_dir, const char *dst_dir, const char *name, int required) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    if (!file_exists(a)) return required ? tt_err("%s: not found", a) : 0;
    size_t n = 0;
    char *t = read_file_text(a, &n);
    if (!t) return -1;
    int rc = atomic_write_file(b, t, n);
    free(t);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if ((!strcmp(a, "--model") || !strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) {
            if (!strcmp(a, "--model")) dir = argv[++i];
            else out = argv[++i];
            continue;
        }
        fprintf(stderr, "tutor: quantize: %s '%s' (see tutor quantize --help)\n",
                i + 1 >= argc && a[0] == '-' ? "a value is missing after" : "unexpected argument", a);
        return 2;
    }
    if (!dir) {
        fprintf(stderr, "tutor: quantize: --model is required (see tutor quantize --help)\n");
        return 2;
    }
    Model *m = model_load(dir);
    if (!m) {
        fprintf(stderr, "tutor: %s\n", tt_errmsg());
        return 1;
    }
    int rc = model_q8_quantize(m);
    const char *dst = out ? out : dir;
    if (!rc && out) {
        if (same_file(out, dir) == 1) {
            out = NULL;
        } else {
            static const char *const files[] = {"config.json", "model.safetensors", "generation_config.json",
                                                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                                "vocab.json", "merges.txt", NULL};
            rc = make_dirs(out);
            for (int k = 0; files[k] && !rc; k++) rc = copy_file(dir, out, files[k], k < 2);
        }
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.int8.safetensors", dst);
    if (!rc) rc = model_q8_save(m, path);
    if (!rc) {
        /* what was lost: the largest relative error of a weight row, over every matrix */
        Model *check = model_load(dst);
        rc = check ? model_q8_load(check, path) : -1;
        size_t q_bytes = 0, f_bytes = 0;
        if (!rc) {
            ModelQ8 *q = check->q8;
            const ModelConfig *c = &check->cfg;
            q_bytes = (size_t)q->lm_head.N * q->lm_head.K;
            for (int side = 0; side < 2; side++) {
                int L = side ? c->dec_layers : c->enc_layers;
                for (int l = 0; l < L; l++) {
                    const Q8Layer *x = side ? &q->dec[l] : &q->enc[l];
                    const Q8Weights *all[7] = {&x->qkv, &x->o, &x->cq, &x->ckv, &x->co, &x->fc1, &x->fc2};
                    for (int k = 0; k < 7; k++) q_bytes += (size_t)all[k]->N * all[k]->K;
                }
            }
            f_bytes = 4 * q_bytes;
            printf("quantized %s: %zu int8 weights (%.2f MiB, float32 %.2f MiB) in %s; kernel path here: %s\n", dir,
                   q_bytes, q_bytes / 1048576.0, f_bytes / 1048576.0, path, q8_path_name(q8_best_path()));
        }
        model_free(check);
    }
    model_free(m);
    if (rc) {
        fprintf(stderr, "tutor: quantize: %s\n", tt_errmsg());
        return 1;
    }
    return 0;
}
