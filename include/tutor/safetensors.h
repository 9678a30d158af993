/* safetensors.h: the Hugging Face safetensors format, read by mmap with full validation
 * (a malformed file gives an error, never a crash or an out-of-bounds read) and written
 * atomically in a form that transformers' from_pretrained loads. See docs/formats.md. */
#ifndef TUTOR_SAFETENSORS_H
#define TUTOR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define ST_MAX_DIMS 8

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } StDtype;

typedef struct {
    char *name; StDtype dtype; int ndim; int64_t shape[ST_MAX_DIMS];
    size_t begin, end;   /* byte offsets into the data section */
} StTensor;

typedef struct {
    char *path; void *map; size_t map_bytes;
    const unsigned char *data; size_t data_bytes;   /* the data section */
    int n_tensors; StTensor *tensors;               /* in header order */
    struct cJSON *metadata;                         /* the __metadata__ object or NULL */
    int *by_name;                                   /* private: indices sorted by name */
} StFile;

/* mmap + full validation; 0 or -1 ("PATH: reason"). On error f is left closed (zeroed). */
int st_open(StFile *f, const char *path);
/* The tensor called name, or NULL (no error recorded). */
const StTensor *st_find(const StFile *f, const char *name);
/* Pointer to t's bytes in the mapped file (little-endian). Files written by tutor or by the
 * safetensors library have every tensor aligned to its element size (header padded to 8,
 * tensors ordered by falling alignment); other writers may not: st_read_f32 is always safe. */
const void *st_data(const StFile *f, const StTensor *t);
size_t st_numel(const StTensor *t);
/* "F32", "BF16", ...; "?" for an out-of-range value. */
const char *st_dtype_name(StDtype d);
/* Bytes per element (1 for BOOL). */
size_t st_dtype_size(StDtype d);
/* Parses "F32" etc.; 0 or -1 (no error recorded). */
int st_dtype_parse(const char *s, StDtype *out);
/* Copies t into out[0..n) as float, converting F16, BF16 and F64; n must equal
 * st_numel(t). 0 or -1 (other dtypes, or a size mismatch). */
int st_read_f32(const StFile *f, const StTensor *t, float *out, size_t n);
/* A metadata string value, or NULL. */
const char *st_metadata_get(const StFile *f, const char *key);
/* Unmaps and frees; safe on a zeroed or already closed StFile. */
void st_close(StFile *f);

typedef struct { const char *name; StDtype dtype; int ndim; int64_t shape[ST_MAX_DIMS]; const void *data; } StWriteTensor;
/* Writes atomically; metadata: NULL-terminated key,value string pairs (may be NULL);
 * "format":"pt" is always written first. Tensors are laid out as the safetensors library
 * lays them out (by falling dtype alignment, then by name, bytewise), so the bytes depend
 * only on the contents and every tensor is aligned. Duplicate names are an error. 0 or -1. */
int st_write(const char *path, const StWriteTensor *tensors, int n, const char *const *metadata_kv);

/* Checks that DIR holds a loadable single-file checkpoint: 0 if DIR/model.safetensors
 * exists; otherwise -1 with "DIR: sharded checkpoints are not supported ...",
 * "DIR: pytorch_model.bin (pickle) is not supported; convert to model.safetensors", or
 * "DIR: no model.safetensors". */
int st_check_model_dir(const char *dir);

#endif
