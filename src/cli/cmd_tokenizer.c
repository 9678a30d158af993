/* cmd_tokenizer.c: `tutor tokenizer train|encode|decode`: learns a byte-level BPE tokenizer
 * from JSONL data and writes Hugging Face's tokenizer.json; encodes text to ids and decodes
 * ids to text with one. All the work is in the library (tokenizer.h, data.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/cli.h"
#include "tutor/fileio.h"
#include "tutor/core.h"
#include "tutor/data.h"
#include "tutor/tokenizer.h"

enum { MAX_DATA_FILES = 64 };

static void usage_main(FILE *f) {
    fprintf(f, "usage: tutor tokenizer COMMAND [options]   (tutor tokenizer COMMAND --help)\n\n"
               "Byte-level BPE, as GPT-2 and BART use it, saved as Hugging Face's tokenizer.json.\n\n"
               "commands:\n"
               "  train    learn a tokenizer from JSONL data\n"
               "  encode   text to ids\n"
               "  decode   ids to text\n");
}

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: tutor tokenizer train --data FILE [--data FILE ...] --vocab N -o OUT [options]\n\n"
            "Learns byte-level BPE merges (GPT-2's pre-tokenizer, the 256 bytes as base symbols)\n"
            "until the vocabulary has N ids, with BART's special tokens <s>=0 <pad>=1 </s>=2\n"
            "<unk>=3, and writes Hugging Face's tokenizer.json.\n\n"
            "options:\n"
            "  --data FILE         JSONL data, one object per line; repeat for more files\n"
            "  --field NAME        a field to learn from; repeat for two (default: source and\n"
            "                      target; a line without the second field is fine)\n"
            "  --vocab N           vocabulary size, specials and bytes included (at least 260)\n"
            "  --min-frequency N   merge no pair seen fewer times (default 2)\n"
            "  --replace-invalid   invalid UTF-8 becomes U+FFFD (counted) instead of an error\n"
            "  -o, --output PATH   the tokenizer.json to write (a directory: DIR/tokenizer.json)\n"
            "  -h, --help          this help\n");
}

static void usage_encode(FILE *f) {
    fprintf(f,
            "usage: tutor tokenizer encode --tokenizer PATH [--text TEXT] [options]\n\n"
            "Prints the ids of TEXT, or of each line of standard input (one line of ids each).\n\n"
            "options:\n"
            "  --tokenizer PATH    tokenizer.json, or a directory holding it (or vocab.json +\n"
            "                      merges.txt, or GPT-2's encoder.json + vocab.bpe)\n"
            "  --text TEXT         the text to encode\n"
            "  --add-special       wrap in the tokenizer's template (<s> ... </s> for BART's)\n"
            "  --parse-special     special tokens written in the text (\"</s>\") become their ids;\n"
            "                      by default they are plain text\n"
            "  --replace-invalid   invalid UTF-8 becomes U+FFFD (counted) instead of an error\n"
            "  --tokens            print the tokens' vocabulary spellings instead of ids\n"
            "  -h, --help          this help\n");
}

static void usage_decode(FILE *f) {
    fprintf(f,
            "usage: tutor tokenizer decode --tokenizer PATH [--ids IDS] [--skip-special]\n\n"
            "Prints the text of IDS, or of each line of standard input: ids separated by spaces\n"
            "or commas (brackets are ignored, so a JSON list works).\n\n"
            "options:\n"
            "  --tokenizer PATH    tokenizer.json, or a directory holding it\n"
            "  --ids IDS           the ids to decode, e.g. \"0 713 16 2\"\n"
            "  --skip-special      leave out special tokens (<s>, </s>, <pad>, ...)\n"
            "  -h, --help          this help\n");
}

static int is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

/* The value after option argv[*i], or NULL with a message. */
static const char *option_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "tutor: tokenizer: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int parse_int(const char *s, const char *what, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 1000000000) {
        fprintf(stderr, "tutor: tokenizer: %s must be a non-negative integer, not '%s'\n", what, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int fail(void) {
    fprintf(stderr, "tutor: %s\n", tt_errmsg());
    return 1;
}

/* ---- train ---- */

static int add_field(BpeTrainer *tr, const char *text, const char *path, size_t line,
                     const char *field) {
    if (!text) return 0;
    if (bpe_trainer_add(tr, text, strlen(text)) == 0) return 0;
    return tt_err_wrap("%s:%zu: field \"%s\"", path, line, field);
}

static int train_main(int argc, char **argv) {
    const char *data[MAX_DATA_FILES], *fields[2] = {"source", "target"}, *out = NULL;
    int n_data = 0, n_fields = 0, vocab = -1;
    BpeTrainOptions opt;
    bpe_train_options_default(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (is_help(a)) {
            usage_train(stdout);
            return 0;
        } else if (!strcmp(a, "--data")) {
            if (!(v = option_value(argc, argv, &i))) return 2;
            if (n_data == MAX_DATA_FILES) {
                fprintf(stderr, "tutor: tokenizer train: at most %d --data files\n", MAX_DATA_FILES);
                return 2;
            }
            data[n_data++] = v;
        } else if (!strcmp(a, "--field")) {
            if (!(v = option_value(argc, argv, &i))) return 2;
            if (n_fields == 2) {
                fprintf(stderr, "tutor: tokenizer train: at most two --field\n");
                return 2;
            }
            fields[n_fields++] = v;
        } else if (!strcmp(a, "--vocab")) {
            if (!(v = option_value(argc, argv, &i)) || parse_int(v, "--vocab", &vocab)) return 2;
        } else if (!strcmp(a, "--min-frequency")) {
            if (!(v = option_value(argc, argv, &i)) || parse_int(v, "--min-frequency", &opt.min_frequency))
                return 2;
        } else if (!strcmp(a, "--replace-invalid")) {
            opt.replace_invalid = 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = option_value(argc, argv, &i))) return 2;
        } else {
            fprintf(stderr, "tutor: tokenizer train: unknown option '%s'\n", a);
            usage_train(stderr);
            return 2;
        }
    }
    if (vocab >= 0 && (vocab < 260 || vocab > TOKENIZER_MAX_IDS)) {
        fprintf(stderr, "tutor: tokenizer train: --vocab needs a whole number in [260, %d] (4 specials and 256 "
                        "bytes come first), not %d\n",
                TOKENIZER_MAX_IDS, vocab);
        return 2;
    }
    if (!n_data || vocab < 0 || !out) {
        fprintf(stderr, "tutor: tokenizer train: --data, --vocab and -o are required\n");
        usage_train(stderr);
        return 2;
    }
    if (check_not_an_input(out, (const char *const *)data, n_data) || check_output_kind(out, OUTPUT_TOKENIZER)) {
        fprintf(stderr, "tutor: tokenizer train: %s\n", tt_errmsg());
        return 1;
    }
    if (n_fields == 0) n_fields = 2;
    opt.vocab_size = vocab;
    BpeTrainer *tr = bpe_trainer_new(&opt);
    if (!tr) return fail();
    JsonlOptions jo;
    jsonl_options_default(&jo);
    jo.source_field = fields[0];
    jo.target_field = n_fields == 2 ? fields[1] : fields[0]; /* a second copy, not used */
    jo.replace_invalid_utf8 = opt.replace_invalid;
    size_t n_texts = 0, replaced = 0;
    double t0 = tt_now_s();
    for (int f = 0; f < n_data; f++) {
        JsonlReader *r = jsonl_open(data[f], &jo);
        if (!r) goto error;
        Example ex;
        int rc;
        while ((rc = jsonl_next(r, &ex)) == 1) {
            size_t line = jsonl_line(r);
            rc = add_field(tr, ex.source, data[f], line, fields[0]);
            if (rc == 0 && n_fields == 2) rc = add_field(tr, ex.target, data[f], line, fields[1]);
            n_texts += 1 + (n_fields == 2 && ex.target);
            example_free(&ex);
            if (rc) break;
        }
        replaced += jsonl_replaced_chars(r);
        jsonl_close(r);
        if (rc) goto error;
    }
    replaced += bpe_trainer_replaced(tr);
    if (!n_texts) {
        tt_err("no texts in the --data files: nothing to learn a tokenizer from");
        goto error;
    }
    Tokenizer *tok = bpe_trainer_finish(tr);
    bpe_trainer_free(tr);
    tr = NULL;
    if (!tok) return fail();
    if (tokenizer_save(tok, out)) {
        tokenizer_free(tok);
        return fail();
    }
    if (replaced) fprintf(stderr, "tutor: warning: %zu invalid UTF-8 sequences replaced by U+FFFD\n", replaced);
    tt_info("tokenizer: %zu texts, %d ids (%d merges) in %.1f s -> %s", n_texts,
            tokenizer_vocab_size(tok), tokenizer_n_merges(tok), tt_now_s() - t0, out);
    tokenizer_free(tok);
    return 0;
error:
    bpe_trainer_free(tr);
    return fail();
}

/* ---- encode ---- */

static int print_ids(const Tokenizer *tok, const TokenIds *ids, int spellings) {
    for (size_t i = 0; i < ids->n; i++) {
        if (i) putchar(' ');
        if (spellings) fputs(tokenizer_token_str(tok, ids->ids[i]), stdout);
        else printf("%d", ids->ids[i]);
    }
    putchar('\n');
    return 0;
}

static int encode_main(int argc, char **argv) {
    const char *tok_path = NULL, *text = NULL;
    TokenizerEncodeOptions opt = {0};
    int spellings = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage_encode(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer")) {
            if (!(tok_path = option_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--text")) {
            if (!(text = option_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--add-special")) {
            opt.add_special = 1;
        } else if (!strcmp(a, "--parse-special")) {
            opt.parse_special = 1;
        } else if (!strcmp(a, "--replace-invalid")) {
            opt.replace_invalid = 1;
        } else if (!strcmp(a, "--tokens")) {
            spellings = 1;
        } else {
            fprintf(stderr, "tutor: tokenizer encode: unknown option '%s'\n", a);
            usage_encode(stderr);
            return 2;
        }
    }
    if (!tok_path) {
        fprintf(stderr, "tutor: tokenizer encode: --tokenizer is required\n");
        return 2;
    }
    Tokenizer *tok = tokenizer_load(tok_path);
    if (!tok) return fail();
    TokenIds ids = {0};
    size_t replaced = 0, r;
    int rc = 0;
    if (text) {
        if (tokenizer_encode(tok, text, strlen(text), &opt, &ids, &replaced)) {
            tt_err_wrap("--text");
            rc = fail();
        } else {
            print_ids(tok, &ids, spellings);
        }
    } else {
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            if (n > 0 && line[n - 1] == '\n') n--;
            if (tokenizer_encode(tok, line, (size_t)n, &opt, &ids, &r)) {
                tt_err_wrap("<stdin>:%zu", lineno);
                rc = fail();
                break;
            }
            replaced += r;
            print_ids(tok, &ids, spellings);
        }
        free(line);
    }
    if (replaced) fprintf(stderr, "tutor: warning: %zu invalid UTF-8 sequences replaced by U+FFFD\n", replaced);
    token_ids_free(&ids);
    tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "tutor: tokenizer encode: writing the output failed\n");
        rc = 1;
    }
    return rc;
}

/* ---- decode ---- */

/* Parses ids separated by spaces, commas or brackets into ids. 0 or -1. */
static int parse_ids(const char *s, TokenIds *ids) {
    ids->n = 0;
    while (*s) {
        if (*s == ' ' || *s == ',' || *s == '\t' || *s == '[' || *s == ']' || *s == '\r' || *s == '\n') {
            s++;
            continue;
        }
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 2000000000) {
            char bad[32];
            snprintf(bad, sizeof bad, "%.20s", s);
            return tt_err("not a token id: '%s'", bad);
        }
        if (ids->n == ids->cap) {
            size_t cap = ids->cap ? 2 * ids->cap : 64;
            int *p = realloc(ids->ids, cap * sizeof *p);
            if (!p) return tt_err("out of memory");
            ids->ids = p;
            ids->cap = cap;
        }
        ids->ids[ids->n++] = (int)v;
        s = end;
    }
    return 0;
}

static int decode_one(const Tokenizer *tok, const char *s, TokenIds *ids, int skip_special) {
    if (parse_ids(s, ids)) return -1;
    size_t n;
    char *text = tokenizer_decode(tok, ids->ids, ids->n, skip_special, &n);
    if (!text) return -1;
    fwrite(text, 1, n, stdout);
    putchar('\n');
    free(text);
    return 0;
}

static int decode_main(int argc, char **argv) {
    const char *tok_path = NULL, *given = NULL;
    int skip_special = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            usage_decode(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer")) {
            if (!(tok_path = option_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--ids")) {
            if (!(given = option_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--skip-special")) {
            skip_special = 1;
        } else {
            fprintf(stderr, "tutor: tokenizer decode: unknown option '%s'\n", a);
            usage_decode(stderr);
            return 2;
        }
    }
    if (!tok_path) {
        fprintf(stderr, "tutor: tokenizer decode: --tokenizer is required\n");
        return 2;
    }
    Tokenizer *tok = tokenizer_load(tok_path);
    if (!tok) return fail();
    TokenIds ids = {0};
    int rc = 0;
    if (given) {
        if (decode_one(tok, given, &ids, skip_special)) {
            tt_err_wrap("--ids");
            rc = fail();
        }
    } else {
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        while (getline(&line, &cap, stdin) >= 0) {
            lineno++;
            if (decode_one(tok, line, &ids, skip_special)) {
                tt_err_wrap("<stdin>:%zu", lineno);
                rc = fail();
                break;
            }
        }
        free(line);
    }
    token_ids_free(&ids);
    tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "tutor: tokenizer decode: writing the output failed\n");
        rc = 1;
    }
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (is_help(sub)) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(sub, "train")) return train_main(argc - 1, argv + 1);
    if (!strcmp(sub, "encode")) return encode_main(argc - 1, argv + 1);
    if (!strcmp(sub, "decode")) return decode_main(argc - 1, argv + 1);
    fprintf(stderr, "tutor: tokenizer: unknown command '%s'\n", sub);
    usage_main(stderr);
    return 2;
}
