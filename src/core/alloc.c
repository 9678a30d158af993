/* alloc.c: aligned allocation with accounting. Every large buffer of tutor (parameters,
 * gradients, optimizer moments, activation arenas) comes from here, so that tests can
 * count allocations made during a training step and report peak memory. */
#include "tutor/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64

static _Atomic size_t live_bytes, peak_bytes;
static _Atomic uint64_t alloc_calls;

void *tt_alloc(size_t bytes) {
    size_t padded = (bytes + ALIGN - 1) / ALIGN * ALIGN + ALIGN;
    unsigned char *raw = NULL;
    if (posix_memalign((void **)&raw, ALIGN, padded) != 0 || !raw) {
        tt_err("out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(raw, 0, padded);
    /* The first ALIGN bytes hold the size, so tt_free can keep the books. */
    memcpy(raw, &bytes, sizeof bytes);
    size_t now = atomic_fetch_add(&live_bytes, bytes) + bytes;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {}
    atomic_fetch_add(&alloc_calls, 1);
    return raw + ALIGN;
}

void tt_free(void *p) {
    if (!p) return;
    unsigned char *raw = (unsigned char *)p - ALIGN;
    size_t bytes;
    memcpy(&bytes, raw, sizeof bytes);
    atomic_fetch_sub(&live_bytes, bytes);
    free(raw);
}

size_t tt_alloc_live_bytes(void) { return atomic_load(&live_bytes); }
size_t tt_alloc_peak_bytes(void) { return atomic_load(&peak_bytes); }
uint64_t tt_alloc_count(void) { return atomic_load(&alloc_calls); }
void tt_alloc_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
