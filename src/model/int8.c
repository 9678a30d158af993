/* int8.c: a model's int8 weights (docs/int8.md). Every linear layer of the decoder and the
 * encoder, and the output projection, get per-row symmetric int8 weights (kernels/int8.c);
 * embeddings, LayerNorms and biases stay float32. They live beside the float model, in
 * model.int8.safetensors: for each quantized matrix NAME (Hugging Face's tensor name of its
 * weight), NAME.q8 (I8, out x in) and NAME.scale (F32, out), with metadata naming the format.
 * The directory still loads in Hugging Face as float32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "tutor/core.h"
#include "tutor/fileio.h"
#include "tutor/kernels.h"
#include "tutor/model.h"
#include "tutor/safetensors.h"

#define Q8_FORMAT "tutor-int8-v1"

/* One quantized matrix: where its float weights are, its shape, its name. */
typedef struct {
    const real *w;
    int N, K, transposed;
    char name[128];
    Q8Weights *dst;
} Q8Slot;

/* Lists the model's quantized matrices in a fixed order; returns how many (slots may be NULL
 * to count). The fused blocks follow the layouts decoding uses: self-attention q, k, v as
 * one (3C, C) matrix, cross-attention k, v as one (2C, C). */
static int q8_slots(Model *m, ModelQ8 *q, Q8Slot *slots) {
    const ModelConfig *c = &m->cfg;
    int n = 0, C = c->d_model, gpt2 = c->arch == ARCH_GPT2;
#define SLOT(W, NN, KK, TR, DST, ...)                                                                                  \
    do {                                                                                                               \
        if (slots) {                                                                                                   \
            slots[n] = (Q8Slot){(W), (NN), (KK), (TR), "", (DST)};                                                     \
            snprintf(slots[n].name, sizeof slots[n].name, __VA_ARGS__);                                                \
        }                                                                                                              \
        n++;                                                                                                           \
    } while (0)
    for (int side = 0; side < 2; side++) {
        if (gpt2 && side == 0) continue; /* GPT-2's blocks are the decoder's */
        int L = side ? c->dec_layers : c->enc_layers;
        int F = side ? c->dec_ffn : c->enc_ffn;
        const char *pre = gpt2 ? "transformer.h" : side ? "model.decoder.layers" : "model.encoder.layers";
        for (int l = 0; l < L; l++) {
            const LayerParams *lp = side ? &m->p.dec[l] : &m->p.enc[l];
            Q8Layer *ql = q ? (side ? &q->dec[l] : &q->enc[l]) : NULL;
            if (gpt2) {
                SLOT(lp->self.q_w, 3 * C, C, 1, ql ? &ql->qkv : NULL, "%s.%d.attn.c_attn.weight", pre, l);
                SLOT(lp->self.o_w, C, C, 1, ql ? &ql->o : NULL, "%s.%d.attn.c_proj.weight", pre, l);
                SLOT(lp->fc1_w, F, C, 1, ql ? &ql->fc1 : NULL, "%s.%d.mlp.c_fc.weight", pre, l);
                SLOT(lp->fc2_w, C, F, 1, ql ? &ql->fc2 : NULL, "%s.%d.mlp.c_proj.weight", pre, l);
                continue;
            }
            SLOT(lp->self.q_w, 3 * C, C, 0, ql ? &ql->qkv : NULL, "%s.%d.self_attn.qkv_proj.weight", pre, l);
            SLOT(lp->self.o_w, C, C, 0, ql ? &ql->o : NULL, "%s.%d.self_attn.out_proj.weight", pre, l);
            if (side) {
                SLOT(lp->cross.q_w, C, C, 0, ql ? &ql->cq : NULL, "%s.%d.encoder_attn.q_proj.weight", pre, l);
                SLOT(lp->cross.k_w, 2 * C, C, 0, ql ? &ql->ckv : NULL, "%s.%d.encoder_attn.kv_proj.weight", pre, l);
                SLOT(lp->cross.o_w, C, C, 0, ql ? &ql->co : NULL, "%s.%d.encoder_attn.out_proj.weight", pre, l);
            }
            SLOT(lp->fc1_w, F, C, 0, ql ? &ql->fc1 : NULL, "%s.%d.fc1.weight", pre, l);
            SLOT(lp->fc2_w, C, F, 0, ql ? &ql->fc2 : NULL, "%s.%d.fc2.weight", pre, l);
        }
    }
    SLOT(m->p.lm_head, c->vocab_size, C, 0, q ? &q->lm_head : NULL, "lm_head.weight");
#undef SLOT
    return n;
}

__attribute__((unused)) static ModelQ8 *q8_alloc(const Model *m) { /* unused in the double build */
    ModelQ8 *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->enc = calloc((size_t)(m->cfg.enc_layers > 0 ? m->cfg.enc_layers : 1), sizeof(Q8Layer));
    q->dec = calloc((size_t)(m->cfg.dec_layers > 0 ? m->cfg.dec_layers : 1), sizeof(Q8Layer));
    q->path = q8_best_path();
    if (!q->enc || !q->dec) {
        free(q->enc), free(q->dec), free(q);
        return NULL;
    }
    return q;
}

void model_q8_free(Model *m) {
    ModelQ8 *q = m ? m->q8 : NULL;
    if (!q) return;
    for (int l = 0; l < m->cfg.enc_layers; l++) {
        Q8Layer *x = &q->enc[l];
        Q8Weights *all[7] = {&x->qkv, &x->o, &x->cq, &x->ckv, &x->co, &x->fc1, &x->fc2};
        for (int k = 0; k < 7; k++) q8_weights_free(all[k]);
    }
    for (int l = 0; l < m->cfg.dec_layers; l++) {
        Q8Layer *x = &q->dec[l];
        Q8Weights *all[7] = {&x->qkv, &x->o, &x->cq, &x->ckv, &x->co, &x->fc1, &x->fc2};
        for (int k = 0; k < 7; k++) q8_weights_free(all[k]);
    }
    q8_weights_free(&q->lm_head);
    q8_scratch_free(&q->scratch);
    free(q->enc);
    free(q->dec);
    free(q);
    m->q8 = NULL;
}

int model_q8_quantize(Model *m) {
#if REAL_IS_DOUBLE
    (void)m;
    return tt_err("int8: not in the float64 build");
#else
    model_q8_free(m);
    ModelQ8 *q = q8_alloc(m);
    if (!q) return tt_err("int8: out of memory");
    m->q8 = q;
    int n = q8_slots(m, q, NULL);
    Q8Slot *slots = calloc((size_t)n, sizeof *slots);
    if (!slots) {
        model_q8_free(m);
        return tt_err("int8: out of memory");
    }
    q8_slots(m, q, slots);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = q8_weights_quantize(slots[i].dst, slots[i].w, slots[i].N, slots[i].K, slots[i].transposed);
    free(slots);
    if (rc) model_q8_free(m);
    return rc;
#endif
}

int model_q8_save(const Model *m, const char *path) {
    if (!m->q8) return tt_err("int8: the model has no int8 weights");
    int n = q8_slots((Model *)m, m->q8, NULL);
    Q8Slot *slots = calloc((size_t)n, sizeof *slots);
    StWriteTensor *t = calloc((size_t)n * 2, sizeof *t);
    int8_t **rows = calloc((size_t)n, sizeof *rows);
    char (*names)[144] = calloc((size_t)n * 2, sizeof *names);
    int rc = slots && t && rows && names ? 0 : tt_err("int8: out of memory");
    if (!rc) q8_slots((Model *)m, m->q8, slots);
    for (int i = 0; i < n && !rc; i++) {
        const Q8Weights *w = slots[i].dst;
        /* stored without the padding: (N, K) */
        rows[i] = malloc((size_t)w->N * (size_t)w->K);
        if (!rows[i]) {
            rc = tt_err("int8: out of memory");
            break;
        }
        for (int r = 0; r < w->N; r++) memcpy(rows[i] + (size_t)r * w->K, w->q + (size_t)r * w->Kp, (size_t)w->K);
        snprintf(names[2 * i], sizeof names[0], "%s.q8", slots[i].name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s.scale", slots[i].name);
        t[2 * i] = (StWriteTensor){names[2 * i], ST_I8, 2, {w->N, w->K}, rows[i]};
        t[2 * i + 1] = (StWriteTensor){names[2 * i + 1], ST_F32, 1, {w->N}, w->scale};
    }
    const char *meta[] = {"tutor_format", Q8_FORMAT, "weights", "int8 per output row, symmetric (|q| <= 127)",
                          "activations", "7-bit per row, dynamic", NULL};
    if (!rc) rc = st_write(path, t, 2 * n, meta);
    for (int i = 0; rows && i < n; i++) free(rows[i]);
    free(rows), free(t), free(slots), free(names);
    return rc;
}

int model_q8_load(Model *m, const char *path) {
#if REAL_IS_DOUBLE
    (void)m, (void)path;
    return tt_err("int8: not in the float64 build");
#else
    StFile f;
    if (st_open(&f, path)) return -1;
    const char *fmt = st_metadata_get(&f, "tutor_format");
    if (!fmt || strcmp(fmt, Q8_FORMAT)) {
        char got[64];
        snprintf(got, sizeof got, "%s", fmt ? fmt : "absent"); /* fmt lives in f's metadata */
        st_close(&f);
        return tt_err("%s: not a tutor int8 file (metadata tutor_format is %s, want %s)", path, got, Q8_FORMAT);
    }
    model_q8_free(m);
    ModelQ8 *q = q8_alloc(m);
    if (!q) {
        st_close(&f);
        return tt_err("int8: out of memory");
    }
    m->q8 = q;
    int n = q8_slots(m, q, NULL);
    Q8Slot *slots = calloc((size_t)n, sizeof *slots);
    int rc = slots ? 0 : tt_err("int8: out of memory");
    if (!rc) q8_slots(m, q, slots);
    for (int i = 0; i < n && !rc; i++) {
        char nq[160], ns[160];
        snprintf(nq, sizeof nq, "%s.q8", slots[i].name);
        snprintf(ns, sizeof ns, "%s.scale", slots[i].name);
        const StTensor *tq = st_find(&f, nq), *ts = st_find(&f, ns);
        if (!tq || !ts) {
            rc = tt_err("%s: no tensor %s (the file was made for another model)", path, tq ? ns : nq);
            break;
        }
        if (tq->dtype != ST_I8 || tq->ndim != 2 || tq->shape[0] != slots[i].N || tq->shape[1] != slots[i].K) {
            rc = tt_err("%s: %s is %s with %d dims, want I8 [%d, %d] (the file was made for another model)", path, nq,
                        st_dtype_name(tq->dtype), tq->ndim, slots[i].N, slots[i].K);
            break;
        }
        if (ts->dtype != ST_F32 || ts->ndim != 1 || ts->shape[0] != slots[i].N) {
            rc = tt_err("%s: %s must be F32 [%d]", path, ns, slots[i].N);
            break;
        }
        float *sc = malloc(sizeof(float) * (size_t)slots[i].N);
        if (!sc || st_read_f32(&f, ts, sc, (size_t)slots[i].N)) {
            free(sc);
            rc = tt_err("%s: cannot read %s", path, ns);
            break;
        }
        rc = q8_weights_from_parts(slots[i].dst, st_data(&f, tq), sc, slots[i].N, slots[i].K);
        free(sc);
        if (rc) rc = tt_err_wrap("%s: %s", path, nq);
    }
    free(slots);
    st_close(&f);
    if (rc) model_q8_free(m);
    return rc;
#endif
}

int model_q8_load_dir(Model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.int8.safetensors", dir);
    if (!file_exists(path)) return tt_err("%s has no model.int8.safetensors: make it with tutor quantize --model %s", dir, dir);
    return model_q8_load(m, path);
}
