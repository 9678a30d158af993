/* data.h: data sets as users give them (JSONL, one object per line) and the batches the
 * trainer consumes. Reading is streaming and validated: a bad line is an error naming
 * file, line and reason, or, with skip_bad, a counted warning. docs/data.md has the details. */
#ifndef TUTOR_DATA_H
#define TUTOR_DATA_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

/* ---- JSONL ---------------------------------------------------------------------------- */

typedef struct {
    char *id;     /* the id field (a string, or an integer written as text), or the line
                     number as text when the line has none */
    char *source;
    char *target; /* NULL for unlabeled data (field absent or null) */
    size_t line;  /* 1-based line in its file */
} Example;

typedef struct {
    const char *source_field;  /* default "source" */
    const char *target_field;  /* default "target" */
    const char *id_field;      /* default "id" */
    int require_target;        /* 1: a missing target is an error; 0: target optional */
    int skip_bad;              /* 1: bad lines are skipped and counted, not fatal */
    int replace_invalid_utf8;  /* 1: invalid UTF-8 becomes U+FFFD, counted */
} JsonlOptions;

/* Fills opt with the defaults above (require_target 0, skip_bad 0). */
void jsonl_options_default(JsonlOptions *opt);

/* Streaming reader, for files too big to hold (unlabeled inputs, pseudo-targets).
 * Blank lines (empty or only spaces, tabs, CR) are skipped silently wherever they are;
 * lines may be of any length; CRLF line ends and a last line without newline are fine.
 * Errors read "PATH:LINE: reason", reasons being:
 *   invalid UTF-8 at byte N   (N: 1-based byte offset in the line)
 *   NUL byte at byte N
 *   not valid JSON (near byte N)
 *   not a JSON object
 *   missing field "NAME"
 *   field "NAME" is not a string
 * A file that cannot be opened or read gives "PATH: strerror". */
typedef struct JsonlReader JsonlReader;

/* NULL with an error when the file cannot be opened. opt NULL = defaults. The options'
 * field names are copied. */
JsonlReader *jsonl_open(const char *path, const JsonlOptions *opt);
/* Reads the next example into *ex (its strings are malloc'd and owned by the caller:
 * release them with example_free). Returns 1 on an example, 0 at the end of the file,
 * -1 on an error (the reader stays at the line after the bad one). With skip_bad, bad
 * lines are counted instead, and at the end of the file one tt_info line gives the count
 * and the first reason; the same for replacements under replace_invalid_utf8. */
int jsonl_next(JsonlReader *r, Example *ex);
size_t jsonl_skipped_lines(const JsonlReader *r);
size_t jsonl_replaced_chars(const JsonlReader *r);
/* Last line number read (1-based; 0 before the first). */
size_t jsonl_line(const JsonlReader *r);
void jsonl_close(JsonlReader *r);

void example_free(Example *ex);

/* A whole data set in memory. */
typedef struct {
    Example *items;
    size_t n;
    char *path;
    size_t skipped_lines;   /* bad lines skipped under skip_bad */
    size_t replaced_chars;  /* invalid UTF-8 sequences replaced */
} Dataset;

/* Reads a JSONL file; 0 or -1 with "PATH:LINE: reason". max_lines 0 = all, otherwise
 * stops after that many examples (blank and skipped lines do not count). On error ds is
 * left empty. */
int dataset_load_jsonl(Dataset *ds, const char *path, const JsonlOptions *opt, size_t max_lines);
void dataset_free(Dataset *ds);

/* UTF-8 as Unicode defines it: no overlong forms, no surrogates (U+D800..DFFF), nothing
 * above U+10FFFF. Returns the 0-based offset of the first invalid byte, or n when all of
 * s[0..n) is valid. */
size_t utf8_first_invalid(const char *s, size_t n);
/* Copies s[0..n) to a new NUL-terminated string in which each maximal invalid subpart
 * (Unicode's "U+FFFD substitution of maximal subparts", as Python's errors="replace")
 * becomes U+FFFD; *n_out (may be NULL) gets its length, *replaced (may be NULL) how many
 * subparts were replaced. NULL on allocation failure. */
char *utf8_replace_invalid(const char *s, size_t n, size_t *n_out, size_t *replaced);
/* The sequence at s[0] (n >= 1 bytes left): its length when valid, else 0 with the length
 * of its maximal invalid subpart in *bad_len (may be NULL). */
size_t utf8_sequence_len(const uint8_t *s, size_t n, size_t *bad_len);

/* ---- Pseudo-target files ------------------------------------------------------------------ */

/* What `tutor generate` writes: {"id", "source", "targets": [K strings], ...} per line. */
typedef struct {
    char *id, *source;
    char **targets;
    int n_targets;
    size_t line;
} PtItem;

typedef struct {
    PtItem *items;
    size_t n;
    char *path;
} PtFile;

/* Reads a pseudo-target file; 0 or -1 with "PATH:LINE: reason" (not JSON, no "source",
 * no "targets" or an empty list, a target that is not a string, invalid UTF-8, a NUL).
 * max_lines 0: all. */
int ptfile_load(PtFile *f, const char *path, size_t max_lines);
void ptfile_free(PtFile *f);
/* Keeps only the first k targets of each input (k >= 1; inputs with fewer keep theirs). */
void ptfile_keep_first(PtFile *f, int k);

/* One line: 1 when it is a line of generated targets (an object with a "targets" array),
 * 0 otherwise. Used to recognise files the generator wrote. */
int pt_line_is_generated(const char *line, size_t len);

/* ---- Truncation to budgets --------------------------------------------------------------- */

/* Truncates a token sequence to at most budget tokens in place and returns its new length.
 * keep_tail final tokens are kept (e.g. 1 for a closing </s>): the result is the first
 * budget - keep_tail tokens followed by the last keep_tail. len <= budget: unchanged.
 * -1 with an error when budget < 1 or keep_tail is not in [0, budget). */
int tokens_truncate(int32_t *ids, int len, int budget, int keep_tail);
/* Clips lengths to budgets in place (src_len[i] = min(src_len[i], src_budget), the same
 * for targets; tgt_len may be NULL) and returns how many examples were clipped. */
size_t lengths_clip(int *src_len, int *tgt_len, size_t n, int src_budget, int tgt_budget);

/* ---- Length-bucketed batches under a token budget ----------------------------------------- */

/* A batch's padded cost is B*max_src + B*max_tgt tokens; every batch keeps it within
 * max_tokens and B within max_batch. Each epoch the batcher shuffles the examples (seeded
 * by seed and the epoch number), sorts them by length within chunks of about 100 batches,
 * cuts the chunks into batches and shuffles the batch order: every example appears in
 * exactly one batch per epoch, and the sequence depends only on (lengths, budgets, seed).
 * The position (epoch, batch) is the whole resumable state. */
typedef struct Batcher Batcher;

/* src_len/tgt_len: token counts after truncation (tgt_len NULL: no targets). max_batch
 * 0 = no cap on examples per batch. NULL with an error when n is 0, max_tokens < 1, or
 * an example alone does not fit max_tokens (its index and lengths named: truncate first).
 * The lengths are copied. */
Batcher *batcher_new(const int *src_len, const int *tgt_len, size_t n, int max_tokens,
                     int max_batch, uint64_t seed);
void batcher_free(Batcher *b);

/* Returns the next batch: *idx points at *count example indices (valid until the next
 * call), sorted by decreasing length. Starts a new epoch when one ends. Returns 1 when
 * this batch is the last of its epoch, 0 otherwise, -1 on an error. */
int batcher_next(Batcher *b, const size_t **idx, int *count);
/* Epoch of the batch batcher_next returned last (0 before the first call). */
uint64_t batcher_epoch(const Batcher *b);
/* Where the next batch comes from: its epoch and its index in that epoch. */
void batcher_position(const Batcher *b, uint64_t *epoch, size_t *batch);
/* Moves to a position; -1 with an error if batch is past the end of that epoch. */
int batcher_seek(Batcher *b, uint64_t epoch, size_t batch);
/* Number of batches in the epoch of the position (it can differ by a few between epochs). */
size_t batcher_epoch_batches(Batcher *b);

/* The position as a small JSON object (caller frees with cJSON_Delete), with what makes it
 * meaningful: {"epoch":E,"batch":I,"seed":"S","n":N,"max_tokens":T,"max_batch":M,
 * "lengths_fnv1a":"HEX"}. NULL on allocation failure. */
struct cJSON *batcher_state_json(const Batcher *b);
/* Restores a position saved by batcher_state_json; -1 with an error when the state is
 * malformed or was saved for other lengths, budgets or seed. */
int batcher_restore(Batcher *b, const struct cJSON *state);

#endif
