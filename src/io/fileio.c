/* fileio.c: whole-file reads and atomic writes. A write goes to a temp file beside the
 * target, is fsync'd, renamed over the target and the directory fsync'd, so that a crash
 * at any moment leaves the old file or the new one, never a torn or empty file. */
#include "tutor/fileio.h"
#include "tutor/core.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct AtomicFile {
    int fd;
    int failed;          /* a write failed: commit must not publish a partial file */
    char *path;
    char *temp_path;
};

/* The directory holding path ("." for a bare name), malloc'd. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* fsync of a directory makes a rename in it durable. Some file systems refuse fsync on a
 * directory (EINVAL); the rename has happened by then, so that is not an error. */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return tt_err("%s: cannot open directory to sync: %s", dir, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = tt_err("%s: fsync of directory failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

int fsync_parent_dir(const char *path) {
    char *dir = dir_of(path);
    int rc = dir ? fsync_dir(dir) : tt_err("%s: out of memory", path);
    free(dir);
    return rc;
}

/* Temp files of earlier writes to path whose process is gone (killed mid-write): removed, so
 * that they do not pile up. A live writer's temp file (another process) is left alone. */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    const char *base = slash ? slash + 1 : path;
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else snprintf(dir, sizeof dir, ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    DIR *d = opendir(dir);
    if (!d) return;
    size_t bl = strlen(base);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp-", 5)) continue;
        char *end;
        long pid = strtol(e->d_name + bl + 5, &end, 10);
        if (end == e->d_name + bl + 5 || *end != '-' || pid <= 0) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[8200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

AtomicFile *atomic_open(const char *path) {
    size_t len = strlen(path);
    if (len == 0) return tt_err("atomic_open: empty path"), NULL;
    if (path[len - 1] == '/') return tt_err("%s: is a directory path, not a file", path), NULL;
    AtomicFile *f = calloc(1, sizeof *f);
    if (!f) return tt_err("%s: out of memory", path), NULL;
    f->fd = -1;
    remove_stale_temps(path);
    f->path = strdup(path);
    f->temp_path = malloc(len + 64);
    if (!f->path || !f->temp_path) {
        tt_err("%s: out of memory", path);
        goto fail;
    }
    /* Our own unique name rather than mkstemp: open(..., 0666) lets the umask set the
     * final file's mode the way a plain fopen would. */
    static atomic_uint counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = atomic_fetch_add(&counter, 1);
        snprintf(f->temp_path, len + 64, "%s.tmp-%ld-%u", path, (long)getpid(), n);
        f->fd = open(f->temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0 || errno != EEXIST) break;
    }
    if (f->fd < 0) {
        tt_err("%s: cannot create temp file %s: %s", path, f->temp_path, strerror(errno));
        goto fail;
    }
    return f;
fail:
    free(f->path);
    free(f->temp_path);
    free(f);
    return NULL;
}

const char *atomic_temp_path(const AtomicFile *f) { return f->temp_path; }

int atomic_write(AtomicFile *f, const void *data, size_t n_bytes) {
    if (f->failed) return tt_err("%s: write after an earlier failed write", f->path);
    const char *p = data;
    while (n_bytes > 0) {
        ssize_t w = write(f->fd, p, n_bytes);
        if (w < 0) {
            if (errno == EINTR) continue;
            f->failed = 1;
            return tt_err("%s: write failed: %s", f->path, strerror(errno));
        }
        p += w;
        n_bytes -= (size_t)w;
    }
    return 0;
}

static void atomic_free(AtomicFile *f) {
    free(f->path);
    free(f->temp_path);
    free(f);
}

void atomic_abort(AtomicFile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    unlink(f->temp_path);
    atomic_free(f);
}

int atomic_commit(AtomicFile *f) {
    if (f->failed) {
        tt_err("%s: not written: an earlier write failed", f->path);
        atomic_abort(f);
        return -1;
    }
    if (fsync(f->fd) != 0) {
        tt_err("%s: fsync failed: %s", f->path, strerror(errno));
        atomic_abort(f);
        return -1;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) {
        tt_err("%s: close failed: %s", f->path, strerror(errno));
        atomic_abort(f);
        return -1;
    }
    if (rename(f->temp_path, f->path) != 0) {
        tt_err("%s: rename from %s failed: %s", f->path, f->temp_path, strerror(errno));
        atomic_abort(f);
        return -1;
    }
    char *dir = dir_of(f->path);
    rc = dir ? fsync_dir(dir) : tt_err("%s: out of memory", f->path);
    free(dir);
    atomic_free(f);
    return rc;
}

int atomic_write_file(const char *path, const void *data, size_t n_bytes) {
    AtomicFile *f = atomic_open(path);
    if (!f) return -1;
    if (atomic_write(f, data, n_bytes) != 0) {
        atomic_abort(f);
        return -1;
    }
    return atomic_commit(f);
}

char *read_file_text(const char *path, size_t *n_bytes) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tt_err("%s: %s", path, strerror(errno)), NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        tt_err("%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        tt_err("%s: is a directory, not a file", path);
        close(fd);
        return NULL;
    }
    /* Start from the size fstat gives, but read to EOF: pipes and /proc report 0. */
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    size_t len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        tt_err("%s: out of memory reading %zu bytes", path, cap);
        close(fd);
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            size_t new_cap = cap * 2;
            char *nb = realloc(buf, new_cap);
            if (!nb) {
                tt_err("%s: out of memory reading %zu bytes", path, new_cap);
                goto fail;
            }
            buf = nb;
            cap = new_cap;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            tt_err("%s: read failed: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    if (n_bytes) *n_bytes = len;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int make_dirs(const char *path) {
    size_t len = strlen(path);
    if (len == 0) return tt_err("make_dirs: empty path");
    char *p = strdup(path);
    if (!p) return tt_err("%s: out of memory", path);
    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (i < len && p[i] != '/') continue;
        if (i < len && p[i - 1] == '/') continue; /* "a//b" */
        char saved = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) != 0) {
            int e = errno;
            struct stat st;
            if (e != EEXIST || stat(p, &st) != 0) {
                tt_err("%s: cannot create directory %s: %s", path, p, strerror(e));
                free(p);
                return -1;
            }
            if (!S_ISDIR(st.st_mode)) {
                tt_err("%s: %s exists and is not a directory", path, p);
                free(p);
                return -1;
            }
        }
        p[i] = saved;
    }
    free(p);
    return 0;
}

int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) || stat(b, &sb)) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int check_not_an_input(const char *out, const char *const *inputs, int n) {
    for (int i = 0; i < n; i++)
        if (inputs[i] && same_file(out, inputs[i]))
            return tt_err("%s is also the input %s: refusing to write over it (choose another output)", out,
                          inputs[i]);
    return 0;
}

/* The first line (up to 64 KB) of a file, NUL-terminated, in buf. */
static size_t first_line(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    char *nl = memchr(buf, '\n', n);
    if (nl) *nl = 0, n = (size_t)(nl - buf);
    return n;
}

int check_output_kind(const char *out, OutputKind kind) {
    struct stat st;
    if (stat(out, &st)) return 0;
    if (kind == OUTPUT_RUN_DIR) {
        if (!S_ISDIR(st.st_mode))
            return tt_err("%s exists and is not a directory: refusing to write a model there", out);
        DIR *d = opendir(out);
        if (!d) return tt_err("%s: %s", out, strerror(errno));
        int entries = 0;
        for (struct dirent *e; (e = readdir(d));)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
        closedir(d);
        if (!entries) return 0;
        /* teacher-cache/: tutor distill builds it there before its first checkpoint */
        const char *marks[] = {"config.json", "checkpoint.json", "metrics.jsonl", "generation_config.json",
                               "teacher-cache"};
        char p[4200];
        for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
            snprintf(p, sizeof p, "%s/%s", out, marks[i]);
            if (file_exists(p)) return 0;
        }
        return tt_err("%s holds files but is not a model or run directory (no config.json, checkpoint.json or "
                      "metrics.jsonl): refusing to write into it",
                      out);
    }
    if (S_ISDIR(st.st_mode)) return kind == OUTPUT_TOKENIZER ? 0 : tt_err("%s is a directory", out);
    if (!st.st_size) return 0;
    char *buf = malloc(65536);
    if (!buf) return tt_err("out of memory");
    size_t n = first_line(out, buf, 65536);
    int ok = 0;
    if (kind == OUTPUT_JSONL_GENERATED) {
        cJSON *o = cJSON_ParseWithLength(buf, n);
        ok = o && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "targets"));
        cJSON_Delete(o);
        if (!ok)
            tt_err("%s exists and is not a file of generated targets (its first line has no \"targets\"): "
                   "refusing to write over it",
                   out);
    } else {
        size_t len;
        char *text = read_file_text(out, &len);
        cJSON *o = text ? cJSON_ParseWithLength(text, len) : NULL;
        ok = o && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "model"));
        cJSON_Delete(o);
        free(text);
        if (!ok) tt_err("%s exists and is not a tokenizer.json: refusing to write a tokenizer over it", out);
    }
    free(buf);
    return ok ? 0 : -1;
}

const char *json_duplicate_key(const cJSON *o) {
    for (const cJSON *a = o ? o->child : NULL; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string)) return a->string;
    return NULL;
}

cJSON *json_parse_object(const char *text, size_t n, const char *what) {
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!o) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        size_t line = 1, col = 1;
        for (size_t i = 0; i < at; i++) {
            if (text[i] == '\n') line++, col = 1;
            else col++;
        }
        tt_err("%s:%zu:%zu: not valid JSON", what, line, col);
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        tt_err("%s: not a JSON object", what);
        return NULL;
    }
    const char *dup = json_duplicate_key(o);
    if (dup) {
        tt_err("%s: key \"%s\" appears twice", what, dup);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *json_load_object(const char *path) {
    size_t n;
    char *text = read_file_text(path, &n);
    if (!text) return NULL;
    cJSON *o = json_parse_object(text, n, path);
    free(text);
    return o;
}
