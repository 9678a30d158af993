/* gelu.c: GELU in both forms Hugging Face uses: exact erf ("gelu", BART/mBART) and the tanh
 * approximation ("gelu_new", GPT-2). */
#include <math.h>

#include "tutor/kernels.h"

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

void gelu_forward(real *out, const real *inp, long n, GeluKind kind) {
    if (kind == GELU_ERF) {
        for (long i = 0; i < n; i++) {
            real x = inp[i];
#if REAL_IS_DOUBLE
            out[i] = 0.5 * x * (1.0 + erf(x * INV_SQRT_2));
#else
            out[i] = 0.5f * x * (1.0f + erff(x * (float)INV_SQRT_2));
#endif
        }
    } else {
        for (long i = 0; i < n; i++) {
            real x = inp[i];
#if REAL_IS_DOUBLE
            out[i] = 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
#else
            out[i] = 0.5f * x * (1.0f + tanhf((float)SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
#endif
        }
    }
}

void gelu_backward(real *dinp, const real *inp, const real *dout, long n, GeluKind kind) {
    if (kind == GELU_ERF) {
        for (long i = 0; i < n; i++) {
            double x = inp[i];
            double cdf = 0.5 * (1.0 + erf(x * INV_SQRT_2));
            double pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
            dinp[i] += (real)((cdf + x * pdf) * dout[i]);
        }
    } else {
        for (long i = 0; i < n; i++) {
            double x = inp[i];
            double u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            double t = tanh(u);
            double du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            double g = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
            dinp[i] += (real)(g * dout[i]);
        }
    }
}
