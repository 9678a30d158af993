/* dropout.c: inverted dropout with a byte mask drawn from a seeded Rng, so that a run is
 * reproducible and backward uses exactly the forward's mask. */
#include "tutor/kernels.h"

void dropout_forward(real *out, uint8_t *mask, const real *inp, long n, float p, Rng *rng) {
    if (p <= 0) {
        if (out != inp)
            for (long i = 0; i < n; i++) out[i] = inp[i];
        return;
    }
    real keep_scale = (real)(1.0 / (1.0 - p));
    /* 24-bit threshold compare: p is a float anyway. */
    uint32_t threshold = (uint32_t)((double)p * 16777216.0);
    for (long i = 0; i < n; i++) {
        uint32_t r = (uint32_t)(rng_u64(rng) >> 40);
        mask[i] = r >= threshold;
        out[i] = mask[i] ? inp[i] * keep_scale : 0;
    }
}

void dropout_backward(real *dinp, const uint8_t *mask, const real *dout, long n, float p) {
    if (p <= 0) {
        for (long i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    real keep_scale = (real)(1.0 / (1.0 - p));
    for (long i = 0; i < n; i++)
        if (mask[i]) dinp[i] += dout[i] * keep_scale;
}
