/* test_jsonl.c: the JSONL reader: every malformed-input error with its exact
 * "FILE:LINE: reason", skip_bad and U+FFFD replacement counts, optional targets, custom
 * field names, line ends, long lines, and the shipped debdesc data when it is unpacked. */
#include "../testlib.h"
#include "tutor/data.h"

static char dir[256];

static void setup(void) { test_tmpdir(dir, sizeof dir); }
static void teardown(void) { test_rmtree(dir); }

TestSuite(jsonl, .init = setup, .fini = teardown);

/* Writes n bytes to DIR/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
    return path;
}
#define WRITE(name, lit) write_file(name, lit, sizeof(lit) - 1)

/* Loads with defaults (or opt) and expects failure with exactly "PATH:want". */
static void expect_error(const char *path, const JsonlOptions *opt, const char *want) {
    Dataset ds;
    char full[1024];
    cr_assert_eq(dataset_load_jsonl(&ds, path, opt, 0), -1, "loading should fail with %s", want);
    snprintf(full, sizeof full, "%s:%s", path, want);
    cr_assert_str_eq(tt_errmsg(), full);
    cr_assert_eq(ds.n, 0);
    cr_assert_null(ds.items);
}

Test(jsonl, reads_labeled_and_unlabeled) {
    const char *p = WRITE("a.jsonl",
                          "{\"id\": \"x1\", \"source\": \"hello\", \"target\": \"hi\"}\n"
                          "{\"source\": \"no target here\"}\n"
                          "{\"id\": 7, \"source\": \"s3\", \"target\": null}\n");
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, NULL, 0));
    cr_assert_eq(ds.n, 3);
    cr_assert_str_eq(ds.items[0].id, "x1");
    cr_assert_str_eq(ds.items[0].source, "hello");
    cr_assert_str_eq(ds.items[0].target, "hi");
    cr_assert_eq(ds.items[0].line, 1);
    cr_assert_str_eq(ds.items[1].id, "2", "no id: the line number");
    cr_assert_null(ds.items[1].target);
    cr_assert_str_eq(ds.items[2].id, "7", "integer ids become text");
    cr_assert_null(ds.items[2].target, "null target = unlabeled");
    cr_assert_str_eq(ds.path, p);
    cr_assert_eq(ds.skipped_lines, 0);
    dataset_free(&ds);
}

Test(jsonl, require_target) {
    JsonlOptions opt;
    jsonl_options_default(&opt);
    opt.require_target = 1;
    const char *p = WRITE("r.jsonl", "{\"source\": \"a\", \"target\": \"b\"}\n{\"source\": \"c\"}\n");
    expect_error(p, &opt, "2: missing field \"target\"");
    p = WRITE("n.jsonl", "{\"source\": \"a\", \"target\": null}\n");
    expect_error(p, &opt, "1: missing field \"target\"");
}

Test(jsonl, custom_field_names) {
    JsonlOptions opt;
    jsonl_options_default(&opt);
    opt.source_field = "document";
    opt.target_field = "summary";
    opt.id_field = "key";
    const char *p = WRITE("c.jsonl",
                          "{\"key\": \"k\", \"document\": \"doc\", \"summary\": \"sum\", "
                          "\"source\": \"ignored\"}\n");
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, &opt, 0));
    cr_assert_eq(ds.n, 1);
    cr_assert_str_eq(ds.items[0].id, "k");
    cr_assert_str_eq(ds.items[0].source, "doc");
    cr_assert_str_eq(ds.items[0].target, "sum");
    dataset_free(&ds);
    p = WRITE("d.jsonl", "{\"source\": \"s\", \"target\": \"t\"}\n");
    expect_error(p, &opt, "1: missing field \"document\"");
}

Test(jsonl, every_malformed_line_named) {
    expect_error(WRITE("e1.jsonl", "{\"source\": \"ok\"}\n{\"source\": \"a\"\n"), NULL,
                 "2: not valid JSON (near byte 15)");
    expect_error(WRITE("e2.jsonl", "{\"source\": \"ok\"} trailing\n"), NULL,
                 "1: not valid JSON (near byte 18)");
    expect_error(WRITE("e3.jsonl", "[\"source\", \"x\"]\n"), NULL, "1: not a JSON object");
    expect_error(WRITE("e4.jsonl", "\"just a string\"\n"), NULL, "1: not a JSON object");
    expect_error(WRITE("e5.jsonl", "{\"target\": \"t\"}\n"), NULL, "1: missing field \"source\"");
    expect_error(WRITE("e6.jsonl", "{\"source\": 5}\n"), NULL, "1: field \"source\" is not a string");
    expect_error(WRITE("e7.jsonl", "{\"source\": \"s\", \"target\": [\"t\"]}\n"), NULL,
                 "1: field \"target\" is not a string");
    expect_error(WRITE("e8b.jsonl", "{\"source\": \"s\", \"id\": 1e300}\n"), NULL,
                 "1: field \"id\" is not a string or an integer");
    expect_error(WRITE("e8.jsonl", "{\"source\": \"s\", \"id\": 1.5}\n"), NULL,
                 "1: field \"id\" is not a string or an integer");
    /* Escaped lone surrogates cannot become UTF-8: cJSON refuses them. */
    expect_error(WRITE("e9.jsonl", "{\"source\": \"\\ud800\"}\n"), NULL,
                 "1: not valid JSON (near byte 13)");
    expect_error(write_file("e10.jsonl", "{\"source\": \"a\0b\"}\n", 18), NULL,
                 "1: NUL byte at byte 14");
}

Test(jsonl, invalid_utf8_named_by_byte) {
    /* byte 1-based: {"source": "ab then the bad byte at 15. */
    expect_error(WRITE("u1.jsonl", "{\"source\": \"ok\"}\n{\"source\": \"ab\xff\"}\n"), NULL,
                 "2: invalid UTF-8 at byte 15");
    expect_error(WRITE("u2.jsonl", "{\"source\": \"\xc0\xaf\"}\n"), NULL,
                 "1: invalid UTF-8 at byte 13"); /* overlong '/' */
    expect_error(WRITE("u3.jsonl", "{\"source\": \"\xed\xa0\x80\"}\n"), NULL,
                 "1: invalid UTF-8 at byte 13"); /* surrogate U+D800 */
    expect_error(WRITE("u4.jsonl", "{\"source\": \"\xf4\x90\x80\x80\"}\n"), NULL,
                 "1: invalid UTF-8 at byte 13"); /* U+110000 */
    expect_error(WRITE("u5.jsonl", "{\"source\": \"\xe2\x82\"}\n"), NULL,
                 "1: invalid UTF-8 at byte 13"); /* truncated */
    expect_error(WRITE("u6.jsonl", "{\"source\": \"\xe0\x80\x80\"}\n"), NULL,
                 "1: invalid UTF-8 at byte 13"); /* overlong 3-byte */
}

Test(jsonl, utf8_validator) {
    const char *good = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xed\x9f\xbf";
    cr_assert_eq(utf8_first_invalid(good, strlen(good)), strlen(good));
    cr_assert_eq(utf8_first_invalid("ab\x80", 3), 2);
    cr_assert_eq(utf8_first_invalid("\xf5\x80\x80\x80", 4), 0);
    cr_assert_eq(utf8_first_invalid("x\xc1\xbf", 3), 1);
    size_t n = 0;
    /* Maximal subparts, as Python's errors="replace": E1 80 is one, C0 and AF each one. */
    char *r = utf8_replace_invalid("a\xe1\x80" "b\xc0\xaf" "c", 7, NULL, &n);
    cr_assert_str_eq(r, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c");
    cr_assert_eq(n, 3);
    free(r);
    r = utf8_replace_invalid("\xed\xa0\x80", 3, NULL, &n); /* surrogate: 3 single bytes */
    cr_assert_str_eq(r, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    cr_assert_eq(n, 3);
    free(r);
}

Test(jsonl, replace_invalid_utf8_counts) {
    JsonlOptions opt;
    jsonl_options_default(&opt);
    opt.replace_invalid_utf8 = 1;
    const char *p = WRITE("rep.jsonl",
                          "{\"source\": \"a\xff" "b\", \"target\": \"\xed\xa0\x80\"}\n"
                          "{\"source\": \"clean\"}\n");
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, &opt, 0));
    cr_assert_eq(ds.n, 2);
    cr_assert_str_eq(ds.items[0].source, "a\xef\xbf\xbd" "b");
    cr_assert_str_eq(ds.items[0].target, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    cr_assert_eq(ds.replaced_chars, 4);
    cr_assert_eq(ds.skipped_lines, 0);
    dataset_free(&ds);
}

Test(jsonl, skip_bad_counts) {
    JsonlOptions opt;
    jsonl_options_default(&opt);
    opt.skip_bad = 1;
    opt.require_target = 1;
    const char *p = WRITE("skip.jsonl",
                          "{\"source\": \"one\", \"target\": \"1\"}\n"
                          "not json\n"
                          "{\"source\": \"x\xff\", \"target\": \"t\"}\n"
                          "{\"source\": \"no target\"}\n"
                          "[1]\n"
                          "{\"source\": \"two\", \"target\": \"2\"}\n");
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, &opt, 0));
    cr_assert_eq(ds.n, 2);
    cr_assert_eq(ds.skipped_lines, 4);
    cr_assert_str_eq(ds.items[1].source, "two");
    cr_assert_eq(ds.items[1].line, 6);
    dataset_free(&ds);
}

Test(jsonl, blank_lines_crlf_and_last_line_without_newline) {
    const char *p = WRITE("crlf.jsonl",
                          "{\"source\": \"a\", \"target\": \"b\"}\r\n"
                          "\r\n"
                          "   \t\n"
                          "{\"source\": \"c\\r\"}\r\n"
                          "{\"source\": \"last\"}");
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, NULL, 0));
    cr_assert_eq(ds.n, 3);
    cr_assert_str_eq(ds.items[0].target, "b", "CR is not part of the value");
    cr_assert_str_eq(ds.items[1].source, "c\r", "an escaped CR inside a string stays");
    cr_assert_eq(ds.items[1].line, 4);
    cr_assert_str_eq(ds.items[2].source, "last");
    cr_assert_eq(ds.items[2].line, 5);
    dataset_free(&ds);
}

Test(jsonl, very_long_line) {
    size_t n = 3u << 20; /* 3 MiB of text in one field */
    char *line = malloc(n + 64);
    int k = sprintf(line, "{\"source\": \"");
    for (size_t i = 0; i < n; i++) line[k + i] = (char)('a' + i % 26);
    strcpy(line + k + n, "\"}\n{\"source\": \"short\"}\n");
    const char *p = write_file("long.jsonl", line, strlen(line));
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, NULL, 0));
    cr_assert_eq(ds.n, 2);
    cr_assert_eq(strlen(ds.items[0].source), n);
    cr_assert_eq(ds.items[0].source[n - 1], (char)('a' + (n - 1) % 26));
    cr_assert_str_eq(ds.items[1].source, "short");
    dataset_free(&ds);
    free(line);
}

Test(jsonl, missing_file) {
    char path[512];
    snprintf(path, sizeof path, "%s/nope.jsonl", dir);
    Dataset ds;
    cr_assert_eq(dataset_load_jsonl(&ds, path, NULL, 0), -1);
    char want[600];
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    cr_assert_str_eq(tt_errmsg(), want);
    cr_assert_null(jsonl_open(path, NULL));
    cr_assert_str_eq(tt_errmsg(), want);
}

Test(jsonl, streaming_and_max_lines) {
    const char *p = WRITE("s.jsonl",
                          "{\"source\": \"1\"}\n{\"source\": \"2\"}\nbad\n{\"source\": \"4\"}\n");
    JsonlReader *r = jsonl_open(p, NULL);
    cr_assert(r);
    Example ex;
    cr_assert_eq(jsonl_next(r, &ex), 1);
    cr_assert_str_eq(ex.source, "1");
    example_free(&ex);
    cr_assert_eq(jsonl_next(r, &ex), 1);
    example_free(&ex);
    cr_assert_eq(jsonl_next(r, &ex), -1);
    char want[600];
    snprintf(want, sizeof want, "%s:3: not valid JSON (near byte 1)", p);
    cr_assert_str_eq(tt_errmsg(), want);
    cr_assert_eq(jsonl_next(r, &ex), 1, "the reader goes on after a bad line");
    cr_assert_str_eq(ex.source, "4");
    cr_assert_eq(jsonl_line(r), 4);
    example_free(&ex);
    cr_assert_eq(jsonl_next(r, &ex), 0);
    cr_assert_eq(jsonl_next(r, &ex), 0);
    jsonl_close(r);

    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, p, NULL, 2));
    cr_assert_eq(ds.n, 2, "max_lines stops before the bad line");
    dataset_free(&ds);
}

/* The shipped benchmark, once scripts/debdesc-fetch.sh has unpacked it. */
Test(jsonl, debdesc_shipped_data) {
    const char *labeled = "build/data/debdesc/labeled.jsonl";
    if (access(labeled, R_OK) != 0) cr_skip_test("run scripts/debdesc-fetch.sh first");
    JsonlOptions opt;
    jsonl_options_default(&opt);
    opt.require_target = 1;
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, labeled, &opt, 0));
    cr_assert_eq(ds.n, 20088);
    cr_assert_str_eq(ds.items[0].id, "0ad-data");
    dataset_free(&ds);
    JsonlReader *r = jsonl_open("build/data/debdesc/unlabeled.jsonl", NULL);
    cr_assert(r);
    Example ex;
    size_t n = 0, with_target = 0;
    int got;
    while ((got = jsonl_next(r, &ex)) == 1) {
        with_target += ex.target != NULL;
        n++;
        example_free(&ex);
    }
    cr_assert_eq(got, 0, "%s", tt_errmsg());
    cr_assert_eq(n, 34375);
    cr_assert_eq(with_target, 0);
    jsonl_close(r);
}
