/* params.c: the parameter table of a model: every tensor's Hugging Face name, shape and
 * place in the one parameter buffer; binding of the structured pointers (for parameters
 * and gradients alike); initialisation; and model directories in HF's layout. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_internal.h"
#include "tutor/fileio.h"
#include "tutor/safetensors.h"

typedef struct {
    Model *m;
    real *base;  /* NULL while building the table */
    int build;
    int index;
} Walk;

static real *tensor(Walk *w, int decay, int ndim, int s0, int s1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static real *tensor(Walk *w, int decay, int ndim, int s0, int s1, const char *fmt, ...) {
    Model *m = w->m;
    if (w->build) {
        ParamInfo *pi = &m->tensors[m->n_tensors++];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pi->name, sizeof pi->name, fmt, ap);
        va_end(ap);
        pi->ndim = ndim;
        pi->shape[0] = s0;
        pi->shape[1] = s1;
        pi->numel = (size_t)s0 * (ndim > 1 ? (size_t)s1 : 1);
        pi->offset = m->n_params;
        pi->decay = decay;
        m->n_params += pi->numel;
        return NULL;
    }
    return w->base + m->tensors[w->index++].offset;
}

/* q, k and v weights sit side by side ([3C, C] in HF's [out, in] layout), and so do their
 * biases, so that one product computes all three (or k and v for cross-attention). */
static void attn_tensors(Walk *w, AttnParams *a, const char *prefix, int C) {
    a->q_w = tensor(w, 1, 2, C, C, "%s.q_proj.weight", prefix);
    a->k_w = tensor(w, 1, 2, C, C, "%s.k_proj.weight", prefix);
    a->v_w = tensor(w, 1, 2, C, C, "%s.v_proj.weight", prefix);
    a->q_b = tensor(w, 0, 1, C, 0, "%s.q_proj.bias", prefix);
    a->k_b = tensor(w, 0, 1, C, 0, "%s.k_proj.bias", prefix);
    a->v_b = tensor(w, 0, 1, C, 0, "%s.v_proj.bias", prefix);
    a->o_w = tensor(w, 1, 2, C, C, "%s.out_proj.weight", prefix);
    a->o_b = tensor(w, 0, 1, C, 0, "%s.out_proj.bias", prefix);
}

static void bart_stack(Walk *w, ModelParams *p, int enc) {
    const ModelConfig *c = &w->m->cfg;
    int C = c->d_model, L = enc ? c->enc_layers : c->dec_layers, F = enc ? c->enc_ffn : c->dec_ffn;
    const char *side = enc ? "encoder" : "decoder";
    real **pos = enc ? &p->enc_pos : &p->dec_pos;
    *pos = tensor(w, 1, 2, c->max_positions + 2, C, "model.%s.embed_positions.weight", side);
    real *lnw = tensor(w, 0, 1, C, 0, "model.%s.layernorm_embedding.weight", side);
    real *lnb = tensor(w, 0, 1, C, 0, "model.%s.layernorm_embedding.bias", side);
    if (enc) {
        p->enc_ln_emb_w = lnw;
        p->enc_ln_emb_b = lnb;
    } else {
        p->dec_ln_emb_w = lnw;
        p->dec_ln_emb_b = lnb;
    }
    LayerParams *layers = enc ? p->enc : p->dec;
    for (int l = 0; l < L; l++) {
        LayerParams *lp = &layers[l];
        char pre[96];
        snprintf(pre, sizeof pre, "model.%s.layers.%d", side, l);
        char sub[128];
        snprintf(sub, sizeof sub, "%s.self_attn", pre);
        attn_tensors(w, &lp->self, sub, C);
        lp->ln_self_w = tensor(w, 0, 1, C, 0, "%s.self_attn_layer_norm.weight", pre);
        lp->ln_self_b = tensor(w, 0, 1, C, 0, "%s.self_attn_layer_norm.bias", pre);
        if (!enc) {
            snprintf(sub, sizeof sub, "%s.encoder_attn", pre);
            attn_tensors(w, &lp->cross, sub, C);
            lp->ln_cross_w = tensor(w, 0, 1, C, 0, "%s.encoder_attn_layer_norm.weight", pre);
            lp->ln_cross_b = tensor(w, 0, 1, C, 0, "%s.encoder_attn_layer_norm.bias", pre);
        }
        lp->fc1_w = tensor(w, 1, 2, F, C, "%s.fc1.weight", pre);
        lp->fc1_b = tensor(w, 0, 1, F, 0, "%s.fc1.bias", pre);
        lp->fc2_w = tensor(w, 1, 2, C, F, "%s.fc2.weight", pre);
        lp->fc2_b = tensor(w, 0, 1, C, 0, "%s.fc2.bias", pre);
        lp->ln_ffn_w = tensor(w, 0, 1, C, 0, "%s.final_layer_norm.weight", pre);
        lp->ln_ffn_b = tensor(w, 0, 1, C, 0, "%s.final_layer_norm.bias", pre);
    }
    if (c->arch == ARCH_MBART) {
        real *fw = tensor(w, 0, 1, C, 0, "model.%s.layer_norm.weight", side);
        real *fb = tensor(w, 0, 1, C, 0, "model.%s.layer_norm.bias", side);
        if (enc) {
            p->enc_ln_final_w = fw;
            p->enc_ln_final_b = fb;
        } else {
            p->dec_ln_final_w = fw;
            p->dec_ln_final_b = fb;
        }
    }
}

/* Walks every tensor in a fixed order: builds the table, or binds p to base. */
static void walk_params(Walk *w, ModelParams *p) {
    const ModelConfig *c = &w->m->cfg;
    int C = c->d_model, V = c->vocab_size;
    if (c->arch == ARCH_GPT2) {
        int F = c->dec_ffn;
        p->tok_emb = tensor(w, 1, 2, V, C, "transformer.wte.weight");
        p->dec_pos = tensor(w, 1, 2, c->max_positions, C, "transformer.wpe.weight");
        for (int l = 0; l < c->dec_layers; l++) {
            LayerParams *lp = &p->dec[l];
            lp->ln_self_w = tensor(w, 0, 1, C, 0, "transformer.h.%d.ln_1.weight", l);
            lp->ln_self_b = tensor(w, 0, 1, C, 0, "transformer.h.%d.ln_1.bias", l);
            lp->self.q_w = tensor(w, 1, 2, C, 3 * C, "transformer.h.%d.attn.c_attn.weight", l);
            lp->self.q_b = tensor(w, 0, 1, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l);
            lp->self.o_w = tensor(w, 1, 2, C, C, "transformer.h.%d.attn.c_proj.weight", l);
            lp->self.o_b = tensor(w, 0, 1, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
            lp->ln_ffn_w = tensor(w, 0, 1, C, 0, "transformer.h.%d.ln_2.weight", l);
            lp->ln_ffn_b = tensor(w, 0, 1, C, 0, "transformer.h.%d.ln_2.bias", l);
            lp->fc1_w = tensor(w, 1, 2, C, F, "transformer.h.%d.mlp.c_fc.weight", l);
            lp->fc1_b = tensor(w, 0, 1, F, 0, "transformer.h.%d.mlp.c_fc.bias", l);
            lp->fc2_w = tensor(w, 1, 2, F, C, "transformer.h.%d.mlp.c_proj.weight", l);
            lp->fc2_b = tensor(w, 0, 1, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
        }
        p->dec_ln_final_w = tensor(w, 0, 1, C, 0, "transformer.ln_f.weight");
        p->dec_ln_final_b = tensor(w, 0, 1, C, 0, "transformer.ln_f.bias");
    } else {
        p->final_logits_bias = tensor(w, 0, 2, 1, V, "final_logits_bias");
        bart_stack(w, p, 0);
        bart_stack(w, p, 1);
        p->tok_emb = tensor(w, 1, 2, V, C, "model.shared.weight");
    }
    /* the output projection: the token embedding, or its own tensor when untied */
    p->lm_head = !c->untied_lm_head ? p->tok_emb : tensor(w, 1, 2, V, C, "lm_head.weight");
}

static int total_layers(const ModelConfig *c) { return c->enc_layers + c->dec_layers; }

void model_bind(Model *m, real *base, ModelParams *p) {
    LayerParams *enc = p->enc, *dec = p->dec;
    memset(p, 0, sizeof *p);
    p->enc = enc;
    p->dec = dec;
    Walk w = {m, base, 0, 0};
    walk_params(&w, p);
}

static int alloc_layer_arrays(Model *m, ModelParams *p) {
    const ModelConfig *c = &m->cfg;
    p->enc = calloc((size_t)c->enc_layers + 1, sizeof *p->enc);
    p->dec = calloc((size_t)c->dec_layers + 1, sizeof *p->dec);
    if (!p->enc || !p->dec) return tt_err("out of memory");
    return 0;
}

static double param_init_std(const Model *m, const ParamInfo *pi) {
    (void)pi;
    return m->cfg.init_std;
}

/* init 0: the parameters are left as allocated (model_load overwrites every one of them). */
static Model *model_create(const ModelConfig *cfg, uint64_t seed, int init) {
    if (model_config_check(cfg)) return NULL;
    Model *m = calloc(1, sizeof *m);
    if (!m) {
        tt_err("out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    int max_tensors = 32 + 32 * total_layers(cfg);
    m->tensors = calloc((size_t)max_tensors, sizeof *m->tensors);
    if (!m->tensors || alloc_layer_arrays(m, &m->p) || alloc_layer_arrays(m, &m->g)) {
        model_free(m);
        return NULL;
    }
    Walk w = {m, NULL, 1, 0};
    ModelParams scratch = m->p;
    walk_params(&w, &scratch);
    m->params = tt_alloc(m->n_params * sizeof(real));
    if (!m->params) {
        model_free(m);
        return NULL;
    }
    model_bind(m, m->params, &m->p);
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->n_tensors && init; i++) {
        const ParamInfo *pi = &m->tensors[i];
        real *x = m->params + pi->offset;
        const char *name = pi->name;
        size_t len = strlen(name);
        int is_ln_weight = (strstr(name, "norm") || strstr(name, "ln_")) && len > 7 &&
                           !strcmp(name + len - 7, ".weight");
        if (is_ln_weight) {
            for (size_t j = 0; j < pi->numel; j++) x[j] = 1;
        } else if (pi->decay) {
            double sd = param_init_std(m, pi);
            for (size_t j = 0; j < pi->numel; j++) x[j] = (real)(sd * rng_normal(&rng));
        }
    }
    /* HF zeroes the padding token's embedding row. */
    if (cfg->pad_id >= 0 && cfg->pad_id < cfg->vocab_size)
        memset(m->p.tok_emb + (size_t)cfg->pad_id * cfg->d_model, 0, cfg->d_model * sizeof(real));
    rng_seed(&m->dropout_rng, seed ^ 0x5eed5eedULL);
    return m;
}

Model *model_new(const ModelConfig *cfg, uint64_t seed) { return model_create(cfg, seed, 1); }

void model_free(Model *m) {
    if (!m) return;
    model_acts_free(m);
    model_q8_free(m);
    tt_free(m->params);
    tt_free(m->grads);
    free(m->p.enc);
    free(m->p.dec);
    free(m->g.enc);
    free(m->g.dec);
    free(m->tensors);
    free(m);
}

int model_alloc_grads(Model *m) {
    if (m->grads) return 0;
    m->grads = tt_alloc(m->n_params * sizeof(real));
    if (!m->grads) return -1;
    model_bind(m, m->grads, &m->g);
    return 0;
}

void model_zero_grads(Model *m) {
    if (m->grads) memset(m->grads, 0, m->n_params * sizeof(real));
}

const ParamInfo *model_find_tensor(const Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

/* Names Hugging Face may store that tutor ties to another tensor, or keeps as a constant. */
static int is_tied_or_buffer(const Model *m, const char *name) {
    if (m->cfg.untied_lm_head && !strcmp(name, "lm_head.weight")) return 0;
    static const char *names[] = {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
                                  "lm_head.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    size_t n = strlen(name);
    if (n > 9 && !strcmp(name + n - 9, ".attn.bias")) return 1;
    if (n > 16 && !strcmp(name + n - 16, ".attn.masked_bias")) return 1;
    return 0;
}

int model_load_params(Model *m, const char *path) {
    StFile f;
    if (st_open(&f, path)) return -1;
    int rc = 0;
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const ParamInfo *pi = &m->tensors[i];
        const StTensor *t = st_find(&f, pi->name);
        real *dst = m->params + pi->offset;
        if (!t) {
            if (!strcmp(pi->name, "final_logits_bias")) {
                memset(dst, 0, pi->numel * sizeof(real));
                continue;
            }
            rc = tt_err("%s: missing tensor \"%s\"", path, pi->name);
            break;
        }
        if (t->dtype != ST_F32) {
            rc = tt_err("%s: tensor \"%s\" is %s; tutor reads float32 (F32) checkpoints only", path,
                        pi->name, st_dtype_name(t->dtype));
            break;
        }
        int shape_ok = t->ndim == pi->ndim;
        for (int d = 0; shape_ok && d < pi->ndim; d++) shape_ok = t->shape[d] == pi->shape[d];
        if (!shape_ok) {
            char want[64], got[64];
            snprintf(want, sizeof want, "[%d%s%.0d]", pi->shape[0], pi->ndim > 1 ? ", " : "",
                     pi->ndim > 1 ? pi->shape[1] : 0);
            int k = snprintf(got, sizeof got, "[");
            for (int d = 0; d < t->ndim && k < 50; d++)
                k += snprintf(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            snprintf(got + k, sizeof got - k, "]");
            rc = tt_err("%s: tensor \"%s\" has shape %s, config.json implies %s", path, pi->name, got, want);
            break;
        }
#if REAL_IS_DOUBLE
        float *tmp = malloc(pi->numel * sizeof(float));
        if (!tmp || st_read_f32(&f, t, tmp, pi->numel)) {
            free(tmp);
            rc = tt_err("%s: cannot read \"%s\"", path, pi->name);
            break;
        }
        for (size_t j = 0; j < pi->numel; j++) dst[j] = tmp[j];
        free(tmp);
#else
        if (st_read_f32(&f, t, dst, pi->numel)) {
            rc = tt_err("%s: cannot read \"%s\"", path, pi->name);
            break;
        }
#endif
        /* a NaN or infinite weight would only show up later as empty outputs */
        for (size_t j = 0; j < pi->numel; j++)
            if (!isfinite(dst[j])) {
                rc = tt_err("%s: tensor \"%s\" holds %s at element %zu: the checkpoint is corrupt (or was "
                            "saved after training diverged)",
                            path, pi->name, isnan(dst[j]) ? "NaN" : "an infinite value", j);
                break;
            }
    }
    if (!rc) {
        for (int i = 0; i < f.n_tensors; i++) {
            const char *name = f.tensors[i].name;
            if (!model_find_tensor(m, name) && !is_tied_or_buffer(m, name)) {
                rc = tt_err("%s: unexpected tensor \"%s\" (does config.json match this file?)", path, name);
                break;
            }
        }
    }
    st_close(&f);
    return rc;
}

int model_save_params(const Model *m, const char *path) {
    StWriteTensor *ts = calloc((size_t)m->n_tensors, sizeof *ts);
    if (!ts) return tt_err("out of memory");
#if REAL_IS_DOUBLE
    float *f32 = malloc(m->n_params * sizeof(float));
    if (!f32) {
        free(ts);
        return tt_err("out of memory");
    }
    for (size_t j = 0; j < m->n_params; j++) f32[j] = (float)m->params[j];
    const float *src = f32;
#else
    const float *src = m->params;
#endif
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *pi = &m->tensors[i];
        ts[i].name = pi->name;
        ts[i].dtype = ST_F32;
        ts[i].ndim = pi->ndim;
        for (int d = 0; d < pi->ndim; d++) ts[i].shape[d] = pi->shape[d];
        ts[i].data = src + pi->offset;
    }
    int rc = st_write(path, ts, m->n_tensors, NULL);
#if REAL_IS_DOUBLE
    free(f32);
#endif
    free(ts);
    return rc;
}

static void join_path(char *out, size_t n, const char *dir, const char *file) {
    snprintf(out, n, "%s/%s", dir, file);
}

Model *model_load(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tt_err("%s: not a model directory", dir);
        return NULL;
    }
    if (st_check_model_dir(dir)) return NULL;
    char path[4096];
    ModelConfig cfg;
    join_path(path, sizeof path, dir, "config.json");
    if (model_config_load(&cfg, path)) return NULL;
    Model *m = model_create(&cfg, 0, 0); /* every parameter comes from the file */
    if (!m) return NULL;
    join_path(path, sizeof path, dir, "model.safetensors");
    if (model_load_params(m, path)) {
        model_free(m);
        return NULL;
    }
    return m;
}

int model_save(const Model *m, const char *dir) {
    if (make_dirs(dir)) return -1;
    char path[4096];
    join_path(path, sizeof path, dir, "config.json");
    if (model_config_save(&m->cfg, path)) return -1;
    join_path(path, sizeof path, dir, "model.safetensors");
    return model_save_params(m, path);
}
