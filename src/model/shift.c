/* shift.c: how Hugging Face turns labels into decoder inputs (BART and mBART differ) and
 * where GPT-2 shifts its labels, so that tutor's losses are HF's losses. */
#include "tutor/model.h"

void model_decoder_inputs(const ModelConfig *c, const int *labels, int B, int T, int *out) {
    int pad = c->pad_id >= 0 ? c->pad_id : 0;
    for (int b = 0; b < B; b++) {
        const int *l = labels + (long)b * T;
        int *o = out + (long)b * T;
        if (c->arch == ARCH_MBART) {
            /* labels with -100 -> pad, then the last non-pad token moves to the front */
            int n_nonpad = 0;
            for (int t = 0; t < T; t++) n_nonpad += (l[t] == -100 ? pad : l[t]) != pad;
            int eos_idx = n_nonpad - 1;
            if (eos_idx < 0) eos_idx += T; /* as torch's gather with index -1 */
            int start = l[eos_idx] == -100 ? pad : l[eos_idx];
            for (int t = T - 1; t >= 1; t--) o[t] = l[t - 1] == -100 ? pad : l[t - 1];
            o[0] = start;
        } else {
            for (int t = T - 1; t >= 1; t--) o[t] = l[t - 1] == -100 ? pad : l[t - 1];
            o[0] = c->decoder_start_id >= 0 ? c->decoder_start_id : pad;
        }
    }
}

void model_shift_labels_left(const int *labels, int B, int T, int *out) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t + 1 < T; t++) out[(long)b * T + t] = labels[(long)b * T + t + 1];
        out[(long)b * T + T - 1] = -100;
    }
}
