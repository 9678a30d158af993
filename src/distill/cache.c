/* cache.c: the teacher's signal on a fixed set of pairs, computed once. Most of a KD step's
 * cost is the teacher's forward; when the targets are fixed (gold, teacher pseudo-targets)
 * its output on them never changes. Two kinds:
 *   exact:  each target token's final hidden state (C floats); at training time the
 *           teacher's own output layer makes the logits, so the loss equals the live one
 *           to float rounding;
 *   sparse: each token's top-k log-probabilities (at temperature 1) and their ids; the rest
 *           of the mass is one bucket (see kd_token_sparse).
 * File layout (little-endian, mmap'd, validated on open):
 *   "TUTORTC1" | u32 kind | u32 width (C, or k) | u64 n_pairs | u64 n_rows | u64 teacher_hash |
 *   u64 pairs_hash | u64 offsets[n_pairs + 1] | data
 * exact data: float rows[n_rows][C]; sparse: float logp[n_rows][k], int32 ids[n_rows][k]. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tutor/distill.h"
#include "tutor/fileio.h"

#define MAGIC "TUTORTC1"
enum { HEADER_BYTES = 8 + 4 + 4 + 8 * 4 };

uint64_t model_hash(const Model *m) {
    uint64_t h = TT_FNV_OFFSET;
    const ModelConfig *c = &m->cfg;
    int dims[] = {c->arch, c->vocab_size, c->d_model, c->enc_layers, c->dec_layers, c->enc_heads, c->dec_heads};
    h = tt_fnv1a(h, dims, sizeof dims);
    /* every parameter, in 64-bit words (fast enough for tens of millions) */
    const uint32_t *w = (const uint32_t *)m->params;
    for (size_t i = 0; i < m->n_params; i++) h = (h ^ w[i]) * 1099511628211ULL;
    return h;
}

uint64_t pairset_hash(const PairSet *ps) {
    uint64_t h = TT_FNV_OFFSET;
    h = tt_fnv1a(h, &ps->n, sizeof ps->n);
    for (size_t i = 0; i < ps->n; i++) {
        const TokPair *p = &ps->items[i];
        h = tt_fnv1a(h, &p->src_len, sizeof p->src_len);
        h = tt_fnv1a(h, p->src, sizeof(int) * (size_t)p->src_len);
        h = tt_fnv1a(h, &p->tgt_len, sizeof p->tgt_len);
        h = tt_fnv1a(h, p->tgt, sizeof(int) * (size_t)p->tgt_len);
    }
    return h;
}

struct TeacherCache {
    void *map;
    size_t map_bytes;
    int kind, width;
    uint64_t n_pairs, n_rows, teacher_hash, pairs_hash;
    const uint64_t *offsets;
    const float *rows;   /* exact: (n_rows, C); sparse: log-probs (n_rows, k) */
    const int32_t *ids;  /* sparse: (n_rows, k) */
};

void teacher_cache_free(TeacherCache *c) {
    if (!c) return;
    if (c->map) munmap(c->map, c->map_bytes);
    free(c);
}

int teacher_cache_kind(const TeacherCache *c) { return c->kind; }
int teacher_cache_width(const TeacherCache *c) { return c->width; }

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

TeacherCache *teacher_cache_open(const char *path, const Model *teacher, const PairSet *ps) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        tt_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_size < HEADER_BYTES) {
        close(fd);
        tt_err("%s: not a teacher cache (too short)", path);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        tt_err("%s: cannot map: %s", path, strerror(errno));
        return NULL;
    }
    TeacherCache *c = calloc(1, sizeof *c);
    if (!c) {
        munmap(map, size);
        tt_err("out of memory");
        return NULL;
    }
    c->map = map, c->map_bytes = size;
    const unsigned char *b = map;
    uint32_t kind, width;
    if (memcmp(b, MAGIC, 8)) {
        tt_err("%s: not a teacher cache (bad magic)", path);
        goto fail;
    }
    memcpy(&kind, b + 8, 4);
    memcpy(&width, b + 12, 4);
    memcpy(&c->n_pairs, b + 16, 8);
    memcpy(&c->n_rows, b + 24, 8);
    memcpy(&c->teacher_hash, b + 32, 8);
    memcpy(&c->pairs_hash, b + 40, 8);
    if (kind > 1 || width < 1 || width > (1u << 20)) {
        tt_err("%s: bad kind %u or width %u", path, kind, width);
        goto fail;
    }
    c->kind = (int)kind, c->width = (int)width;
    size_t row_bytes = kind == 0 ? 4 * (size_t)width : 8 * (size_t)width;
    size_t avail = size - HEADER_BYTES;
    if (avail < 8 || c->n_pairs > avail / 8 - 1) {
        tt_err("%s: %llu pairs do not fit the file", path, (unsigned long long)c->n_pairs);
        goto fail;
    }
    size_t off_bytes = 8 * ((size_t)c->n_pairs + 1);
    size_t data = HEADER_BYTES + off_bytes;
    if (c->n_rows > (size - data) / row_bytes || data + c->n_rows * row_bytes != size) {
        tt_err("%s: truncated or oversized (%llu rows of %zu bytes after the offsets, file %zu bytes)", path,
               (unsigned long long)c->n_rows, row_bytes, size);
        goto fail;
    }
    c->offsets = (const uint64_t *)(b + HEADER_BYTES);
    if (c->offsets[0] != 0 || c->offsets[c->n_pairs] != c->n_rows) {
        tt_err("%s: offsets do not span the rows", path);
        goto fail;
    }
    for (uint64_t i = 0; i < c->n_pairs; i++)
        if (c->offsets[i + 1] < c->offsets[i]) {
            tt_err("%s: offsets decrease at pair %llu", path, (unsigned long long)i);
            goto fail;
        }
    c->rows = (const float *)(b + data);
    if (kind == 1) {
        c->ids = (const int32_t *)(b + data + c->n_rows * 4 * (size_t)width);
        for (uint64_t i = 0; i < c->n_rows * (uint64_t)width; i++)
            if (c->ids[i] < 0 || (teacher && c->ids[i] >= teacher->cfg.vocab_size)) {
                tt_err("%s: token id %d outside the vocabulary", path, c->ids[i]);
                goto fail;
            }
    }
    if (teacher) {
        if (kind == 0 && (int)width != teacher->cfg.d_model) {
            tt_err("%s: rows of %u values, the teacher's width is %d: made by another teacher", path, width,
                   teacher->cfg.d_model);
            goto fail;
        }
        if (c->teacher_hash != model_hash(teacher)) {
            tt_err("%s: made by another teacher (its hash differs): delete it to rebuild", path);
            goto fail;
        }
    }
    if (ps) {
        if (c->n_pairs != ps->n || c->pairs_hash != pairset_hash(ps)) {
            tt_err("%s: made for other pairs (data, pseudo-targets, budgets or tokenizer changed): delete it to rebuild",
                   path);
            goto fail;
        }
        for (size_t i = 0; i < ps->n; i++)
            if (c->offsets[i + 1] - c->offsets[i] != (uint64_t)ps->items[i].tgt_len) {
                tt_err("%s: pair %zu has %llu cached tokens, its target %d", path, i,
                       (unsigned long long)(c->offsets[i + 1] - c->offsets[i]), ps->items[i].tgt_len);
                goto fail;
            }
    }
    return c;
fail:
    teacher_cache_free(c);
    return NULL;
}

/* Top-k of one row of logits at temperature 1: log-probabilities and ids, largest first. */
static void top_k_row(const real *z, int V, int k, float *logp, int32_t *ids) {
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    for (int v = 0; v < V; v++) s += exp((double)z[v] - mx);
    double lse = mx + log(s);
    /* a small insertion list: k is small (tens) */
    int n = 0;
    for (int v = 0; v < V; v++) {
        if (n == k && z[v] <= z[ids[k - 1]]) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && z[ids[j - 1]] < z[v]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = v;
    }
    for (int j = 0; j < k; j++) logp[j] = (float)((double)z[ids[j]] - lse);
}

/* A build survives a stop. The rows go to PATH.partial (its header and offsets written first,
 * exactly as in the finished file) and, for a sparse cache, the ids to PATH.ids.partial; a build
 * that finds them with the same header (kind, width, pairs, teacher, pairs' hash) cuts them back
 * to the last whole pair and goes on from there. At the end the ids are appended, the file is
 * synced and renamed to PATH. A lock on PATH.partial keeps two builds of one cache apart. */
typedef struct {
    int fd;
    FILE *f;
    char path[4400];
} PartFile;

static int part_open(PartFile *p, const char *path, const char *suffix, int lock) {
    snprintf(p->path, sizeof p->path, "%s%s", path, suffix);
    p->f = NULL;
    p->fd = open(p->path, O_RDWR | O_CREAT, 0644);
    if (p->fd < 0) return tt_err("%s: %s", p->path, strerror(errno));
    if (lock && flock(p->fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        close(p->fd);
        p->fd = -1;
        return e == EWOULDBLOCK ? tt_err("%s: another tutor is building this teacher cache", p->path)
                                : tt_err("%s: cannot lock: %s", p->path, strerror(e));
    }
    return 0;
}

static off_t part_size(const PartFile *p) {
    struct stat st;
    return fstat(p->fd, &st) ? -1 : st.st_size;
}

/* Cut the file to n bytes and open it for appending from there. */
static int part_cut(PartFile *p, off_t n) {
    if (ftruncate(p->fd, n) || lseek(p->fd, n, SEEK_SET) != n)
        return tt_err("%s: cannot truncate: %s", p->path, strerror(errno));
    int dup_fd = dup(p->fd);
    p->f = dup_fd >= 0 ? fdopen(dup_fd, "r+b") : NULL;
    if (!p->f || fseeko(p->f, n, SEEK_SET)) return tt_err("%s: %s", p->path, strerror(errno));
    return 0;
}

static int part_write(PartFile *p, const void *data, size_t n) {
    if (fwrite(data, 1, n, p->f) != n) return tt_err("%s: write failed: %s", p->path, strerror(errno));
    return 0;
}

static int part_sync(PartFile *p) {
    if (fflush(p->f) || fsync(fileno(p->f))) return tt_err("%s: cannot write: %s", p->path, strerror(errno));
    return 0;
}

static void part_close(PartFile *p) {
    if (p->f) fclose(p->f);
    if (p->fd >= 0) close(p->fd); /* releases the lock */
    p->f = NULL, p->fd = -1;
}

int teacher_cache_build(const char *path, Model *teacher, const PairSet *ps, int kind, int top_k, int batch_tokens,
                        int max_batch) {
    const ModelConfig *c = &teacher->cfg;
    int C = c->d_model, V = c->vocab_size;
    int width = kind == 0 ? C : top_k;
    if (kind == 1 && (top_k < 1 || top_k > V)) return tt_err("sparse cache: top-k %d outside [1, %d]", top_k, V);
    uint64_t n_rows = 0;
    for (size_t i = 0; i < ps->n; i++) n_rows += (uint64_t)ps->items[i].tgt_len;
    size_t head_bytes = HEADER_BYTES + 8 * (ps->n + 1);
    unsigned char *head = malloc(head_bytes);
    if (!head) return tt_err("out of memory");
    memcpy(head, MAGIC, 8);
    put_u32(head + 8, (uint32_t)kind);
    put_u32(head + 12, (uint32_t)width);
    put_u64(head + 16, ps->n);
    put_u64(head + 24, n_rows);
    put_u64(head + 32, model_hash(teacher));
    put_u64(head + 40, pairset_hash(ps));
    uint64_t off = 0;
    for (size_t i = 0; i <= ps->n; i++) {
        put_u64(head + HEADER_BYTES + 8 * i, off);
        if (i < ps->n) off += (uint64_t)ps->items[i].tgt_len;
    }
    size_t row_bytes = 4 * (size_t)width; /* the hidden state, or the log-probs; ids alike */
    PartFile main_f = {.fd = -1}, ids_f = {.fd = -1};
    int rc = part_open(&main_f, path, ".partial", 1);
    if (!rc && kind == 1) rc = part_open(&ids_f, path, ".ids.partial", 0);
    /* how far an earlier build got: whole rows in both files, then back to a whole pair */
    size_t start = 0;
    if (!rc) {
        off_t have = part_size(&main_f);
        unsigned char *old = have >= (off_t)head_bytes ? malloc(head_bytes) : NULL;
        int same = old && pread(main_f.fd, old, head_bytes, 0) == (ssize_t)head_bytes && !memcmp(old, head, head_bytes);
        free(old);
        uint64_t rows_done = 0;
        if (same) {
            rows_done = (uint64_t)(have - (off_t)head_bytes) / row_bytes;
            if (kind == 1) {
                off_t ih = part_size(&ids_f);
                uint64_t ir = ih > 0 ? (uint64_t)ih / row_bytes : 0;
                rows_done = ir < rows_done ? ir : rows_done;
            }
            if (rows_done > n_rows) rows_done = n_rows;
            const unsigned char *offs = head + HEADER_BYTES;
            size_t lo = 0, hi = ps->n; /* the last pair boundary at or below rows_done */
            while (lo < hi) {
                size_t mid = (lo + hi + 1) / 2;
                uint64_t o;
                memcpy(&o, offs + 8 * mid, 8);
                if (o <= rows_done) lo = mid;
                else hi = mid - 1;
            }
            start = lo;
            memcpy(&rows_done, offs + 8 * start, 8);
            if (start) tt_info("teacher cache %s: resuming at pair %zu of %zu", path, start, ps->n);
        } else if (have > 0) {
            tt_info("teacher cache %s: %s was made for another teacher or other pairs: starting again", path,
                    main_f.path);
        }
        rc = part_cut(&main_f, same ? (off_t)(head_bytes + rows_done * row_bytes) : 0);
        if (!rc && kind == 1) rc = part_cut(&ids_f, (off_t)(rows_done * row_bytes));
        if (!rc && !same) rc = part_write(&main_f, head, head_bytes);
    }
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < ps->n; i++) {
        int s, t;
        pair_batch_lengths(c, &ps->items[i], &s, &t);
        max_s = s > max_s ? s : max_s;
        max_t = t > max_t ? t : max_t;
    }
    int cap_b = max_batch > 0 ? max_batch : 64;
    BatchBuf bb;
    memset(&bb, 0, sizeof bb);
    size_t *idx = malloc(sizeof(size_t) * (size_t)cap_b);
    int *rows = malloc(sizeof(int) * (size_t)cap_b * (size_t)max_t);
    double *w = malloc(sizeof(double) * (size_t)cap_b * (size_t)max_t);
    real *logits = kind == 1 ? tt_alloc(sizeof(real) * 256 * (size_t)V) : NULL;
    float *lp = kind == 1 ? malloc(sizeof(float) * 256 * (size_t)top_k) : NULL;
    int32_t *ib = kind == 1 ? malloc(sizeof(int32_t) * 256 * (size_t)top_k) : NULL;
    float *hrow = malloc(sizeof(float) * (size_t)C);
    if (!rc && (batchbuf_init(&bb, cap_b * max_s, cap_b * max_t) || !idx || !rows || !w || !hrow ||
                (kind == 1 && (!logits || !lp || !ib))))
        rc = tt_err("out of memory");
    double t0 = tt_now_s(), last = t0;
    size_t i = start;
    while (!rc && i < ps->n) {
        int count = pairset_next_batch(ps, c, i, batch_tokens, cap_b, idx);
        if (batch_assemble(&bb, c, ps, idx, count) || model_forward(teacher, &bb.batch, FWD_INFER)) {
            rc = -1;
            break;
        }
        long n = batch_label_rows(&bb.batch, rows, w, NULL);
        if (kind == 0) {
            const real *h = model_hidden(teacher);
            for (long r = 0; r < n && !rc; r++) {
                for (int k = 0; k < C; k++) hrow[k] = (float)h[(long)rows[r] * C + k];
                rc = part_write(&main_f, hrow, row_bytes);
            }
        } else {
            for (long r0 = 0; r0 < n && !rc; r0 += 256) {
                int R = n - r0 < 256 ? (int)(n - r0) : 256;
                model_logits_rows(teacher, rows + r0, R, logits);
                for (int r = 0; r < R; r++)
                    top_k_row(logits + (long)r * V, V, top_k, lp + (long)r * top_k, ib + (long)r * top_k);
                rc = part_write(&main_f, lp, row_bytes * (size_t)R);
                if (!rc) rc = part_write(&ids_f, ib, row_bytes * (size_t)R);
            }
        }
        i += (size_t)count;
        if (!rc && tt_now_s() - last > 10) {
            last = tt_now_s();
            /* what is on disk is what a resumed build keeps */
            rc = part_sync(&main_f);
            if (!rc && kind == 1) rc = part_sync(&ids_f);
            tt_info("teacher cache %s: %zu/%zu pairs, %.0f pairs/s", path, i, ps->n, (i - start) / (last - t0));
        }
    }
    if (!rc && kind == 1) {
        /* the ids after all the log-probs */
        rc = part_sync(&ids_f);
        if (!rc && fseeko(ids_f.f, 0, SEEK_SET)) rc = tt_err("%s: %s", ids_f.path, strerror(errno));
        size_t got;
        while (!rc && (got = fread(ib, 1, 256 * row_bytes, ids_f.f)) > 0) rc = part_write(&main_f, ib, got);
        if (!rc && ferror(ids_f.f)) rc = tt_err("%s: read failed: %s", ids_f.path, strerror(errno));
    }
    if (!rc) rc = part_sync(&main_f);
    if (!rc && rename(main_f.path, path)) rc = tt_err("cannot rename %s to %s: %s", main_f.path, path, strerror(errno));
    if (!rc) {
        if (kind == 1) unlink(ids_f.path);
        rc = fsync_parent_dir(path);
    }
    part_close(&main_f);
    part_close(&ids_f);
    batchbuf_free(&bb);
    free(head), free(idx), free(rows), free(w), free(hrow), free(lp), free(ib);
    tt_free(logits);
    if (rc) return -1; /* the partial files stay: the next build goes on from them */
    tt_info("teacher cache %s: %zu pairs, %llu tokens, %s, %.0f s", path, ps->n, (unsigned long long)n_rows,
            kind == 0 ? "exact (hidden states)" : "sparse (top-k)", tt_now_s() - t0);
    return 0;
}

/* Rows of pair p: its first row index and count. */
void teacher_cache_pair(const TeacherCache *c, size_t p, uint64_t *first, int *n) {
    *first = c->offsets[p];
    *n = (int)(c->offsets[p + 1] - c->offsets[p]);
}

const float *teacher_cache_row(const TeacherCache *c, uint64_t row) { return c->rows + row * (uint64_t)c->width; }
const int32_t *teacher_cache_ids(const TeacherCache *c, uint64_t row) {
    return c->ids ? c->ids + row * (uint64_t)c->width : NULL;
}
uint64_t teacher_cache_pairs(const TeacherCache *c) { return c->n_pairs; }

int teacher_cache_sparse_bias(const TeacherCache *c, Model *teacher, Model *student, const PairSet *ps, size_t n,
                              double *full, double *bucket, double *truncated, long *tokens) {
    if (c->kind != CACHE_SPARSE) return tt_err("teacher_cache_sparse_bias: not a sparse cache");
    const ModelConfig *mc = &teacher->cfg;
    int V = mc->vocab_size, k = c->width;
    enum { BATCH_TOKENS = 4096, MAX_BATCH = 32 };
    /* the first n pairs, in batches as the cache was built */
    PairSet head = *ps;
    if (n < head.n) head.n = n;
    int max_s = 1, max_t = 1;
    for (size_t i = 0; i < head.n; i++) {
        int sl, tl;
        pair_batch_lengths(mc, &head.items[i], &sl, &tl);
        max_s = sl > max_s ? sl : max_s;
        max_t = tl > max_t ? tl : max_t;
    }
    double sf = 0, sb = 0, st = 0;
    long count = 0;
    KdObjective o;
    kd_objective_default(&o);
    double *scratch = malloc(sizeof(double) * kd_scratch_doubles(V));
    real *tl = tt_alloc(sizeof(real) * (size_t)V), *sl = tt_alloc(sizeof(real) * (size_t)V);
    int *rows = malloc(sizeof(int) * MAX_BATCH * (size_t)max_t);
    double *w = malloc(sizeof(double) * MAX_BATCH * (size_t)max_t);
    size_t idx[MAX_BATCH];
    BatchBuf bb = {0};
    int rc = scratch && tl && sl && rows && w ? batchbuf_init(&bb, MAX_BATCH * max_s, MAX_BATCH * max_t)
                                              : tt_err("out of memory");
    for (size_t i = 0; i < head.n && !rc;) {
        int count_b = pairset_next_batch(&head, mc, i, BATCH_TOKENS, MAX_BATCH, idx);
        if (batch_assemble(&bb, mc, &head, idx, count_b) || model_forward(teacher, &bb.batch, FWD_INFER) ||
            model_forward(student, &bb.batch, FWD_INFER)) {
            rc = -1;
            break;
        }
        long nr = batch_label_rows(&bb.batch, rows, w, NULL), r = 0;
        for (int b = 0; b < count_b && !rc; b++) {
            uint64_t first;
            int nc;
            teacher_cache_pair(c, idx[b], &first, &nc);
            for (int j = 0; j < nc; j++, r++) {
                if (r >= nr || rows[r] / bb.batch.T != b) {
                    rc = tt_err("sparse cache: pair %zu has %d cached tokens, not its batch's", idx[b], nc);
                    break;
                }
                model_logits_rows(teacher, &rows[r], 1, tl);
                model_logits_rows(student, &rows[r], 1, sl);
                const float *lp = teacher_cache_row(c, first + (uint64_t)j);
                const int32_t *id = teacher_cache_ids(c, first + (uint64_t)j);
                sf += kd_token(&o, tl, sl, V, scratch, NULL, 1);
                sb += kd_token_sparse(id, lp, k, sl, V, NULL, 1, NULL);
                /* the naive truncated KL, with the student's log-probabilities kd_token left
                 * in its scratch (log q at tau 1) */
                const double *lq = scratch + 2 * (size_t)V;
                double tr = 0;
                for (int e = 0; e < k; e++) tr += exp((double)lp[e]) * ((double)lp[e] - lq[id[e]]);
                st += tr;
                count++;
            }
        }
        i += (size_t)count_b;
    }
    batchbuf_free(&bb);
    free(scratch);
    free(rows);
    free(w);
    tt_free(tl);
    tt_free(sl);
    if (rc) return -1;
    *full = count ? sf / count : 0;
    *bucket = count ? sb / count : 0;
    *truncated = count ? st / count : 0;
    *tokens = count;
    return 0;
}
