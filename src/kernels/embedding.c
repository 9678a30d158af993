/* embedding.c: token embedding (optionally scaled, as BART's scale_embedding) plus learned
 * positions, and its backward into the embedding tables. */
#include "tutor/kernels.h"

void embedding_forward(real *out, const int *ids, const real *wte, const real *wpe, int B, int T,
                       int C, real scale, int pos_offset) {
    // ids (B,T), wte (V,C), wpe (P,C), out (B,T,C)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            long n = (long)b * T + t;
            const real *e = wte + (long)ids[n] * C;
            real *o = out + n * C;
            if (wpe) {
                const real *p = wpe + (long)(t + pos_offset) * C;
                for (int i = 0; i < C; i++) o[i] = e[i] * scale + p[i];
            } else {
                for (int i = 0; i < C; i++) o[i] = e[i] * scale;
            }
        }
}

void embedding_backward(real *dwte, real *dwpe, const real *dout, const int *ids, int B, int T,
                        int C, real scale, int pos_offset) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            long n = (long)b * T + t;
            const real *d = dout + n * C;
            if (dwte) {
                real *e = dwte + (long)ids[n] * C;
                for (int i = 0; i < C; i++) e[i] += d[i] * scale;
            }
            if (dwpe) {
                real *p = dwpe + (long)(t + pos_offset) * C;
                for (int i = 0; i < C; i++) p[i] += d[i];
            }
        }
}
