/* shrink.c: students made from the teacher by keeping chosen layers (Shleifer & Rush's
 * "shrink and fine-tune"; the paper's BART 6:2 students keep decoder layers 0 and 5). The
 * student has the teacher's configuration with fewer layers; each of its tensors is the
 * teacher's tensor of the same name, the layer index mapped through the kept list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/distill.h"

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int parse_layer_list(const char *spec, int n, int *out, int cap) {
    int count = 0;
    const char *p = spec;
    if (!*p) return tt_err("empty layer list");
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',')) return tt_err("layer list \"%s\": not a comma-separated list of integers", spec);
        if (v < -n || v >= n)
            return tt_err("layer list \"%s\": layer %ld does not exist (the teacher has %d: 0..%d or -%d..-1)", spec, v,
                          n, n - 1, n);
        int idx = (int)(v < 0 ? v + n : v);
        for (int i = 0; i < count; i++)
            if (out[i] == idx) return tt_err("layer list \"%s\": layer %d named twice", spec, idx);
        if (count == cap) return tt_err("layer list \"%s\": too many layers", spec);
        out[count++] = idx;
        p = *end ? end + 1 : end;
    }
    qsort(out, (size_t)count, sizeof(int), cmp_int);
    return count;
}

/* The teacher's name for a student tensor: the layer number after one of the prefixes is
 * mapped through keep. */
static int teacher_name(const char *name, char *out, size_t cap, const int *keep_enc, int n_enc, const int *keep_dec,
                        int n_dec) {
    static const struct {
        const char *prefix;
        int dec;
    } stacks[] = {{"model.encoder.layers.", 0}, {"model.decoder.layers.", 1}, {"transformer.h.", 1}};
    for (size_t s = 0; s < sizeof stacks / sizeof stacks[0]; s++) {
        size_t pl = strlen(stacks[s].prefix);
        if (strncmp(name, stacks[s].prefix, pl)) continue;
        char *end;
        long l = strtol(name + pl, &end, 10);
        const int *keep = stacks[s].dec ? keep_dec : keep_enc;
        int n = stacks[s].dec ? n_dec : n_enc;
        if (l < 0 || l >= n) return tt_err("shrink: tensor %s has no layer to copy", name);
        int t = keep ? keep[l] : (int)l;
        snprintf(out, cap, "%.*s%d%s", (int)pl, name, t, end);
        return 0;
    }
    snprintf(out, cap, "%s", name);
    return 0;
}

Model *model_shrink(const Model *teacher, const int *keep_enc, int n_enc, const int *keep_dec, int n_dec) {
    ModelConfig c = teacher->cfg;
    if (!model_is_encdec(&c) && keep_enc) {
        tt_err("shrink: a decoder-only teacher has no encoder layers to keep");
        return NULL;
    }
    if (model_is_encdec(&c)) c.enc_layers = keep_enc ? n_enc : c.enc_layers;
    else n_enc = 0;
    if (keep_dec) c.dec_layers = n_dec;
    if (c.dec_layers < 1 || (model_is_encdec(&c) && c.enc_layers < 1)) {
        tt_err("shrink: a student needs at least one layer in each stack");
        return NULL;
    }
    Model *m = model_new(&c, 1);
    if (!m) return NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *si = &m->tensors[i];
        char tn[sizeof si->name + 16];
        if (teacher_name(si->name, tn, sizeof tn, keep_enc, c.enc_layers, keep_dec, c.dec_layers)) goto fail;
        const ParamInfo *ti = model_find_tensor(teacher, tn);
        if (!ti || ti->numel != si->numel) {
            tt_err("shrink: the teacher has no tensor %s of %zu values", tn, si->numel);
            goto fail;
        }
        memcpy(m->params + si->offset, teacher->params + ti->offset, si->numel * sizeof(real));
    }
    m->dropout_rng = teacher->dropout_rng;
    return m;
fail:
    model_free(m);
    return NULL;
}
