/* fileio.h: whole-file reads and crash-safe writes. Every file tutor writes (models,
 * optimizer state, logs snapshots) goes through atomic_* so that a crash or a full disk
 * leaves either the old file or the new one, never a torn mix. */
#ifndef TUTOR_FILEIO_H
#define TUTOR_FILEIO_H

#include <stddef.h>

/* Atomic whole-file write: temp file in the same dir, fsync, rename, fsync dir.
 * 0 or -1 (tt_err "PATH: reason"). */
int atomic_write_file(const char *path, const void *data, size_t n_bytes);

/* Streaming variant: atomic_open creates "PATH.tmp-XXXXXX" beside PATH; nothing is visible
 * at PATH until atomic_commit. Both atomic_commit and atomic_abort free f. */
typedef struct AtomicFile AtomicFile;
AtomicFile *atomic_open(const char *path);          /* NULL on error */
int atomic_write(AtomicFile *f, const void *data, size_t n_bytes);
int atomic_commit(AtomicFile *f);                   /* fsync + rename + fsync dir; frees f */
void atomic_abort(AtomicFile *f);                   /* removes the temp file; frees f */
/* Path of the temp file (for messages and tests). */
const char *atomic_temp_path(const AtomicFile *f);

/* Reads a whole file into a NUL-terminated malloc'd buffer (free with free());
 * *n_bytes (may be NULL) gets the length without the NUL. NULL on error ("PATH: reason"). */
char *read_file_text(const char *path, size_t *n_bytes);

/* fsync of the directory holding path (a rename into it made durable). 0 or -1. */
int fsync_parent_dir(const char *path);
/* mkdir -p: creates path and its missing parents (mode 0777 & umask). 0 or -1. */
int make_dirs(const char *path);

/* 1 if path exists (any type), 0 if not. */
int file_exists(const char *path);

/* 1 when a and b name the same existing file (device and inode), 0 otherwise. */
int same_file(const char *a, const char *b);
/* Guards a command's output: -1 with "OUT is also the input IN: ..." when out is one of
 * inputs[0..n) (NULLs skipped), else 0. */
int check_not_an_input(const char *out, const char *const *inputs, int n);

/* What an existing output path must already be before a command may replace it. */
typedef enum {
    OUTPUT_JSONL_GENERATED, /* a file of tutor generate's lines (or empty) */
    OUTPUT_TOKENIZER,       /* a tokenizer.json (a JSON object with "model") */
    OUTPUT_RUN_DIR,         /* a directory: empty, or a model / run directory */
} OutputKind;
/* 0 when out does not exist or is of that kind; otherwise -1 with a message naming it and
 * what it holds (so that a model never lands on a text file, nor a tokenizer on data). */
int check_output_kind(const char *out, OutputKind kind);

/* Parses text[0..n) as one JSON object: NULL with "WHAT:LINE:COLUMN: not valid JSON",
 * "WHAT: not a JSON object", or "WHAT: key \"K\" appears twice" (Hugging Face's Python
 * reader would take the last, cJSON the first: neither silently). Free with cJSON_Delete. */
struct cJSON;
struct cJSON *json_parse_object(const char *text, size_t n, const char *what);
/* Reads and parses a whole file as one JSON object, as above. */
struct cJSON *json_load_object(const char *path);
/* The first key of o that occurs twice, or NULL. */
const char *json_duplicate_key(const struct cJSON *o);

#endif
