/* test_fileio.c: atomic writes leave the old file or the new one and no temp files;
 * read_file_text reads exactly what is there and names the file when it cannot. */
#include <sys/wait.h>

#include "../testlib.h"

#include <dirent.h>
#include <sys/stat.h>

#include "tutor/fileio.h"

static char tmp[512];
static void setup(void) { test_tmpdir(tmp, sizeof tmp); }
static void teardown(void) { test_rmtree(tmp); }
TestSuite(fileio, .init = setup, .fini = teardown);

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmp, name); }

/* Number of entries in dir other than . and .. */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void assert_content(const char *path, const char *want) {
    size_t n;
    char *got = read_file_text(path, &n);
    cr_assert(got, "%s", tt_errmsg());
    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(got, want);
    free(got);
}

Test(fileio, atomic_write_file_creates_and_replaces) {
    char p[600];
    tmp_path(p, sizeof p, "a.json");
    TEST_ASSERT_OK(atomic_write_file(p, "first", 5));
    assert_content(p, "first");
    TEST_ASSERT_OK(atomic_write_file(p, "second, longer", 14));
    assert_content(p, "second, longer");
    TEST_ASSERT_OK(atomic_write_file(p, "", 0));
    assert_content(p, "");
    cr_assert_eq(count_entries(tmp), 1, "temp files left behind");
}

Test(fileio, created_file_mode_follows_umask) {
    char p[600];
    tmp_path(p, sizeof p, "m.txt");
    mode_t old = umask(022);
    TEST_ASSERT_OK(atomic_write_file(p, "x", 1));
    umask(old);
    struct stat st;
    cr_assert(stat(p, &st) == 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "mode %o", st.st_mode & 0777);
}

Test(fileio, streaming_commit_is_invisible_until_commit) {
    char p[600];
    tmp_path(p, sizeof p, "s.bin");
    TEST_ASSERT_OK(atomic_write_file(p, "old", 3));
    AtomicFile *f = atomic_open(p);
    cr_assert(f, "%s", tt_errmsg());
    const char *temp = atomic_temp_path(f);
    cr_assert(strncmp(temp, p, strlen(p)) == 0, "temp file %s is not beside %s", temp, p);
    TEST_ASSERT_OK(atomic_write(f, "new ", 4));
    TEST_ASSERT_OK(atomic_write(f, "content", 7));
    assert_content(p, "old");
    cr_assert_eq(count_entries(tmp), 2, "the temp file exists while writing");
    TEST_ASSERT_OK(atomic_commit(f));
    assert_content(p, "new content");
    cr_assert_eq(count_entries(tmp), 1);
}

Test(fileio, abort_keeps_old_file_and_removes_temp) {
    char p[600];
    tmp_path(p, sizeof p, "keep.txt");
    TEST_ASSERT_OK(atomic_write_file(p, "precious", 8));
    AtomicFile *f = atomic_open(p);
    cr_assert(f);
    char temp[700];
    snprintf(temp, sizeof temp, "%s", atomic_temp_path(f));
    TEST_ASSERT_OK(atomic_write(f, "half-writ", 9));
    cr_assert(file_exists(temp));
    atomic_abort(f);
    cr_assert(!file_exists(temp), "temp file %s left behind", temp);
    assert_content(p, "precious");
    cr_assert_eq(count_entries(tmp), 1);
    atomic_abort(NULL); /* harmless */
}

Test(fileio, two_open_writers_do_not_collide) {
    char p[600];
    tmp_path(p, sizeof p, "twice.txt");
    AtomicFile *a = atomic_open(p), *b = atomic_open(p);
    cr_assert(a && b);
    cr_assert_str_neq(atomic_temp_path(a), atomic_temp_path(b));
    TEST_ASSERT_OK(atomic_write(a, "from a", 6));
    TEST_ASSERT_OK(atomic_write(b, "from b", 6));
    TEST_ASSERT_OK(atomic_commit(a));
    TEST_ASSERT_OK(atomic_commit(b));
    assert_content(p, "from b"); /* the last commit wins, whole */
    cr_assert_eq(count_entries(tmp), 1);
}

Test(fileio, atomic_errors_name_the_path) {
    char p[700];
    snprintf(p, sizeof p, "%s/missing/dir/x.txt", tmp);
    cr_assert_eq(atomic_write_file(p, "x", 1), -1);
    cr_assert(strncmp(tt_errmsg(), p, strlen(p)) == 0, "%s", tt_errmsg());
    cr_assert(strstr(tt_errmsg(), "No such file"), "%s", tt_errmsg());
    cr_assert(atomic_open(p) == NULL);
    snprintf(p, sizeof p, "%s/", tmp);
    cr_assert(atomic_open(p) == NULL);
    cr_assert(strstr(tt_errmsg(), "directory"), "%s", tt_errmsg());
    /* Renaming a file over a directory fails: the temp file must not stay behind. */
    char d[600];
    tmp_path(d, sizeof d, "adir");
    TEST_ASSERT_OK(make_dirs(d));
    cr_assert_eq(atomic_write_file(d, "x", 1), -1);
    cr_assert(strstr(tt_errmsg(), "rename"), "%s", tt_errmsg());
    cr_assert_eq(count_entries(tmp), 1, "temp file left after a failed rename");
}

Test(fileio, read_file_text_exact_bytes) {
    char p[600];
    tmp_path(p, sizeof p, "bin");
    const char data[] = "a\0b\nc";
    TEST_ASSERT_OK(atomic_write_file(p, data, 5));
    size_t n = 0;
    char *got = read_file_text(p, &n);
    cr_assert(got);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(got, data, 5) == 0);
    cr_assert_eq(got[5], 0, "NUL-terminated");
    free(got);
    got = read_file_text(p, NULL);
    cr_assert(got);
    free(got);
    /* A large file, and one whose size stat does not know (procfs). */
    size_t big = 3 * 1000 * 1000 + 7;
    char *buf = malloc(big);
    for (size_t i = 0; i < big; i++) buf[i] = (char)('a' + i % 26);
    TEST_ASSERT_OK(atomic_write_file(p, buf, big));
    got = read_file_text(p, &n);
    cr_assert(got && n == big && memcmp(got, buf, big) == 0);
    free(got);
    free(buf);
    got = read_file_text("/proc/self/status", &n);
    cr_assert(got && n > 0 && strstr(got, "Name:"), "procfs read");
    cr_assert_eq(strlen(got), n);
    free(got);
}

Test(fileio, read_file_text_errors) {
    char p[600];
    tmp_path(p, sizeof p, "absent.txt");
    cr_assert(read_file_text(p, NULL) == NULL);
    char want[700];
    snprintf(want, sizeof want, "%s: No such file or directory", p);
    cr_assert_str_eq(tt_errmsg(), want);
    cr_assert(read_file_text(tmp, NULL) == NULL);
    snprintf(want, sizeof want, "%s: is a directory", tmp);
    cr_assert(strncmp(tt_errmsg(), want, strlen(want)) == 0, "%s", tt_errmsg());
    if (getuid() != 0) { /* root reads anything */
        tmp_path(p, sizeof p, "secret");
        TEST_ASSERT_OK(atomic_write_file(p, "x", 1));
        chmod(p, 0);
        cr_assert(read_file_text(p, NULL) == NULL);
        cr_assert(strstr(tt_errmsg(), "Permission denied"), "%s", tt_errmsg());
    }
}

Test(fileio, make_dirs_nested_and_idempotent) {
    char p[700];
    snprintf(p, sizeof p, "%s/a/b//c/", tmp);
    TEST_ASSERT_OK(make_dirs(p));
    char q[700];
    snprintf(q, sizeof q, "%s/a/b/c", tmp);
    struct stat st;
    cr_assert(stat(q, &st) == 0 && S_ISDIR(st.st_mode));
    TEST_ASSERT_OK(make_dirs(q)); /* already there */
    TEST_ASSERT_OK(make_dirs(tmp));
    snprintf(q, sizeof q, "%s/a/b/c/f.txt", tmp);
    TEST_ASSERT_OK(atomic_write_file(q, "x", 1));
    char r[700];
    snprintf(r, sizeof r, "%s/a/b/c/f.txt/sub", tmp);
    cr_assert_eq(make_dirs(r), -1);
    cr_assert(strstr(tt_errmsg(), "f.txt"), "%s", tt_errmsg());
    cr_assert_eq(make_dirs(q), -1, "a file is not a directory");
    cr_assert(strstr(tt_errmsg(), "not a directory"), "%s", tt_errmsg());
    cr_assert_eq(make_dirs(""), -1);
    TEST_ASSERT_OK(make_dirs("/"));
}

Test(fileio, file_exists_reports) {
    char p[600];
    tmp_path(p, sizeof p, "e");
    cr_assert(!file_exists(p));
    TEST_ASSERT_OK(atomic_write_file(p, "", 0));
    cr_assert(file_exists(p));
    cr_assert(file_exists(tmp));
}

/* issue 9: a killed write leaves PATH.tmp-PID-N; the next write to PATH removes it when
 * that process is gone, and leaves a live process's temp file alone. */
Test(fileio, stale_temp_files_of_killed_writes_are_removed) {
    char dir[64], path[128], stale[200], live[200];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    /* a pid that is not running: a child that has exited and been reaped */
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int st;
    waitpid(pid, &st, 0);
    snprintf(stale, sizeof stale, "%s.tmp-%ld-0", path, (long)pid);
    snprintf(live, sizeof live, "%s.tmp-%ld-0", path, (long)getppid());
    FILE *f = fopen(stale, "w");
    fputs("torn", f);
    fclose(f);
    f = fopen(live, "w");
    fputs("being written", f);
    fclose(f);
    TEST_ASSERT_OK(atomic_write_file(path, "new", 3));
    cr_expect(!file_exists(stale), "the dead writer's temp file is gone");
    cr_expect(file_exists(live), "a live writer's temp file stays");
    test_rmtree(dir);
}

/* A run directory: empty, a model or run (its marks), or one whose distill was stopped while
 * it built its teacher cache (teacher-cache/ only); anything else is refused. */
Test(fileio, run_directory_kinds) {
    char p[700], q[800];
    tmp_path(p, sizeof p, "run");
    TEST_ASSERT_OK(check_output_kind(p, OUTPUT_RUN_DIR)); /* not there yet */
    TEST_ASSERT_OK(make_dirs(p));
    TEST_ASSERT_OK(check_output_kind(p, OUTPUT_RUN_DIR));
    snprintf(q, sizeof q, "%s/notes.txt", p);
    TEST_ASSERT_OK(atomic_write_file(q, "x", 1));
    cr_expect(check_output_kind(p, OUTPUT_RUN_DIR) != 0 && strstr(tt_errmsg(), "not a model or run directory"), "%s",
              tt_errmsg());
    snprintf(q, sizeof q, "%s/teacher-cache", p);
    TEST_ASSERT_OK(make_dirs(q));
    TEST_ASSERT_OK(check_output_kind(p, OUTPUT_RUN_DIR));
    snprintf(q, sizeof q, "%s/file", tmp);
    TEST_ASSERT_OK(atomic_write_file(q, "x", 1));
    cr_expect(check_output_kind(q, OUTPUT_RUN_DIR) != 0 && strstr(tt_errmsg(), "not a directory"), "%s", tt_errmsg());
}
