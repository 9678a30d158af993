/* test_pretrain.c: the pretraining noise (issue 8): text infilling masks about mask_ratio of
 * the words in spans of mean about lambda, one <mask> per span, keeps the rest in order (within
 * permuted sentences) and targets the document; gap sentences removes the sentence most like
 * the rest and targets it; the noise depends only on the seed; the batch source yields every
 * document once per epoch and restores its position. */
#include "../testlib.h"
#include "tutor/pretrain.h"

static Tokenizer *small_tokenizer(void) {
    static const char *texts[] = {
        "The quick brown fox jumps over the lazy dog. A library for parsing XML files.",
        "This package contains the development files. It provides a command line tool!",
        "Tools for managing disk partitions and file systems.\nThis is the documentation package.",
    };
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = 300;
    Tokenizer *t = bpe_train(texts, 3, &o);
    cr_assert(t, "%s", tt_errmsg());
    int id;
    Tokenizer *m = tokenizer_add_special(t, TOKENIZER_MASK, 1, &id);
    cr_assert(m, "%s", tt_errmsg());
    cr_assert_eq(id, tokenizer_vocab_size(t), "the mask takes the next id");
    cr_assert_eq(tokenizer_token_id(m, TOKENIZER_MASK), id);
    cr_assert(tokenizer_is_special(m, id));
    /* adding it again changes nothing */
    int id2;
    Tokenizer *again = tokenizer_add_special(m, TOKENIZER_MASK, 1, &id2);
    cr_assert(again && id2 == id && tokenizer_vocab_size(again) == tokenizer_vocab_size(m));
    tokenizer_free(again);
    tokenizer_free(t);
    return m;
}

static int encode(const Tokenizer *t, const char *s, int *out, int cap) {
    TokenIds ids = {0};
    TEST_ASSERT_OK(tokenizer_encode(t, s, strlen(s), NULL, &ids, NULL));
    cr_assert((int)ids.n <= cap);
    memcpy(out, ids.ids, ids.n * sizeof(int));
    int n = (int)ids.n;
    token_ids_free(&ids);
    return n;
}

Test(pretrain, mask_token_is_matched_in_text) {
    Tokenizer *t = small_tokenizer();
    int ids[64];
    TokenizerEncodeOptions eo = {0, 1, 0};
    TokenIds v = {0};
    const char *s = "fox <mask> dog";
    TEST_ASSERT_OK(tokenizer_encode(t, s, strlen(s), &eo, &v, NULL));
    int found = 0;
    for (size_t i = 0; i < v.n; i++) found += v.ids[i] == tokenizer_token_id(t, TOKENIZER_MASK);
    cr_assert_eq(found, 1, "<mask> in text becomes its id under parse_special");
    token_ids_free(&v);
    (void)ids;
    tokenizer_free(t);
}

Test(pretrain, infilling_statistics) {
    Tokenizer *t = small_tokenizer();
    TokenClasses tc;
    int mask = tokenizer_token_id(t, TOKENIZER_MASK);
    TEST_ASSERT_OK(token_classes_init(&tc, t, mask));
    NoiseOptions o;
    noise_options_default(&o);
    o.permute_sentences = 0;
    const char *text = "The quick brown fox jumps over the lazy dog and the quick brown fox jumps over the lazy "
                       "dog again while the lazy dog sleeps under the quick brown tree in the sun";
    int doc[256], src[256], tgt[256];
    int n = encode(t, text, doc, 256);
    /* words: tokens that start with a space, plus the first */
    int nw = 1;
    for (int i = 1; i < n; i++) nw += tc.word_start[doc[i]];
    Rng r;
    rng_seed(&r, 42);
    double masked_share = 0, spans = 0;
    int trials = 2000;
    for (int k = 0; k < trials; k++) {
        int ls, lt;
        TEST_ASSERT_OK(noise_document(&tc, &o, doc, n, &r, src, &ls, tgt, &lt));
        cr_assert_eq(lt, n);
        cr_assert(memcmp(tgt, doc, (size_t)n * sizeof(int)) == 0, "the target is the document");
        cr_assert(ls <= n);
        /* the source without masks is a subsequence of the document, made of whole words */
        int j = 0, kept_words = 0, masks = 0;
        for (int i = 0; i < ls; i++) {
            if (src[i] == mask) {
                masks++;
                cr_assert(i == 0 || src[i - 1] != mask, "one <mask> per span");
                continue;
            }
            while (j < n && doc[j] != src[i]) j++;
            cr_assert(j < n, "trial %d: source token %d is not in order", k, i);
            kept_words += j == 0 || tc.word_start[doc[j]];
            j++;
        }
        masked_share += 1.0 - (double)kept_words / nw;
        spans += masks;
    }
    masked_share /= trials;
    double mean_span = masked_share * nw / (spans / trials);
    cr_log_info("masked share %.3f, words per <mask> %.2f (%d words)", masked_share, mean_span, nw);
    /* ceil(0.3 * words) are masked; adjacent spans merge, zero-length spans insert a mask */
    cr_assert(masked_share > 0.28 && masked_share < 0.36, "masked share %.3f", masked_share);
    cr_assert(mean_span > 2.0 && mean_span < 4.5, "words per mask %.2f", mean_span);
    token_classes_free(&tc);
    tokenizer_free(t);
}

Test(pretrain, permutation_keeps_sentences_whole) {
    Tokenizer *t = small_tokenizer();
    TokenClasses tc;
    int mask = tokenizer_token_id(t, TOKENIZER_MASK);
    TEST_ASSERT_OK(token_classes_init(&tc, t, mask));
    NoiseOptions o;
    noise_options_default(&o);
    o.mask_ratio = 0; /* permutation only */
    const char *text = "A library for parsing XML files. It provides a command line tool! This is the "
                       "documentation package.";
    int doc[256], src[256], tgt[256];
    int n = encode(t, text, doc, 256);
    Rng r;
    rng_seed(&r, 7);
    int changed = 0;
    for (int k = 0; k < 50; k++) {
        int ls, lt;
        TEST_ASSERT_OK(noise_document(&tc, &o, doc, n, &r, src, &ls, tgt, &lt));
        cr_assert_eq(ls, n, "no masks, no length change");
        char *a = tokenizer_decode(t, src, (size_t)ls, 0, NULL);
        cr_assert(strstr(a, "A library for parsing XML files.") && strstr(a, " It provides a command line tool!") &&
                      strstr(a, " This is the documentation package."),
                  "sentences stay whole: '%s'", a);
        changed += memcmp(src, doc, (size_t)n * sizeof(int)) != 0;
        free(a);
    }
    cr_assert(changed > 30, "3 sentences: 5 of 6 orders differ from the original (%d of 50)", changed);
    token_classes_free(&tc);
    tokenizer_free(t);
}

Test(pretrain, gap_sentence_is_the_most_central) {
    Tokenizer *t = small_tokenizer();
    TokenClasses tc;
    int mask = tokenizer_token_id(t, TOKENIZER_MASK);
    TEST_ASSERT_OK(token_classes_init(&tc, t, mask));
    NoiseOptions o;
    noise_options_default(&o);
    o.objective = NOISE_GAP_SENTENCES;
    o.gap_ratio = 0.2; /* one of three sentences */
    /* the second sentence shares most words with the other two */
    const char *text = "The quick brown fox sleeps. The lazy dog and the quick brown fox play. A lazy dog runs.";
    int doc[256], src[256], tgt[256];
    int n = encode(t, text, doc, 256);
    Rng r;
    rng_seed(&r, 1);
    int ls, lt;
    TEST_ASSERT_OK(noise_document(&tc, &o, doc, n, &r, src, &ls, tgt, &lt));
    char *a = tokenizer_decode(t, src, (size_t)ls, 0, NULL), *b = tokenizer_decode(t, tgt, (size_t)lt, 0, NULL);
    cr_assert_str_eq(b, " The lazy dog and the quick brown fox play.");
    cr_assert_str_eq(a, "The quick brown fox sleeps.<mask> A lazy dog runs.");
    free(a);
    free(b);
    /* one sentence: gap sentences falls back to infilling (the target is the document) */
    n = encode(t, "A library for parsing XML files and more files", doc, 256);
    TEST_ASSERT_OK(noise_document(&tc, &o, doc, n, &r, src, &ls, tgt, &lt));
    cr_assert_eq(lt, n);
    token_classes_free(&tc);
    tokenizer_free(t);
}

Test(pretrain, noise_depends_only_on_the_seed) {
    Tokenizer *t = small_tokenizer();
    TokenClasses tc;
    TEST_ASSERT_OK(token_classes_init(&tc, t, tokenizer_token_id(t, TOKENIZER_MASK)));
    NoiseOptions o;
    noise_options_default(&o);
    o.objective = NOISE_MIX;
    const char *text = "The quick brown fox sleeps. The lazy dog and the quick brown fox play. A lazy dog runs.";
    int doc[256], s1[256], t1[256], s2[256], t2[256];
    int n = encode(t, text, doc, 256);
    for (uint64_t seed = 0; seed < 20; seed++) {
        Rng a, b;
        rng_seed(&a, seed);
        rng_seed(&b, seed);
        int l1, m1, l2, m2;
        TEST_ASSERT_OK(noise_document(&tc, &o, doc, n, &a, s1, &l1, t1, &m1));
        TEST_ASSERT_OK(noise_document(&tc, &o, doc, n, &b, s2, &l2, t2, &m2));
        cr_assert(l1 == l2 && m1 == m2 && !memcmp(s1, s2, (size_t)l1 * sizeof(int)) &&
                  !memcmp(t1, t2, (size_t)m1 * sizeof(int)));
    }
    token_classes_free(&tc);
    tokenizer_free(t);
}

Test(pretrain, source_covers_every_document_and_resumes) {
    Tokenizer *t = small_tokenizer();
    TokenClasses tc;
    TEST_ASSERT_OK(token_classes_init(&tc, t, tokenizer_token_id(t, TOKENIZER_MASK)));
    NoiseOptions o;
    noise_options_default(&o);
    o.objective = NOISE_MIX;
    char dir[128], path[256];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/docs.txt", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "Document %d. The quick brown fox jumps over the lazy dog %d times. It provides a tool!\n", i,
                i * 7);
    fputs("\nx\n", f); /* too short: dropped */
    fclose(f);
    PairSet docs;
    size_t dropped;
    const char *paths[] = {path};
    TEST_ASSERT_OK(pretrain_docs_load(&docs, paths, 1, NULL, t, 64, &dropped));
    cr_assert_eq(docs.n, 40);
    cr_assert_eq(dropped, 2, "the empty line and 'x'");
    ModelConfig c;
    model_config_default(&c, ARCH_MBART);
    c.bos_id = 0, c.pad_id = 1, c.eos_id = 2, c.decoder_start_id = 2;
    DenoiseSource *s = denoise_source_new(&docs, &tc, &o, &c, 512, 8, 64, 3);
    cr_assert(s, "%s", tt_errmsg());
    BatchSource bs = denoise_source_iface(s);
    /* one epoch: every document's target ends with </s>, batches within budget */
    long targets = 0;
    int batches = 0, last = 0;
    while (!last) {
        const Batch *b;
        long nt;
        last = bs.next(bs.ctx, &b, &nt);
        cr_assert(last >= 0, "%s", tt_errmsg());
        cr_assert(b->B * (b->S + b->T) <= 512 + 64, "batch of %d x (%d + %d)", b->B, b->S, b->T);
        targets += b->B;
        batches++;
    }
    cr_assert_eq(targets, 40, "each document once per epoch");
    /* the state after 2 batches of epoch 1 restores into a fresh source: same batches after */
    const Batch *b;
    long nt;
    bs.next(bs.ctx, &b, &nt);
    bs.next(bs.ctx, &b, &nt);
    struct cJSON *st = bs.save(bs.ctx);
    cr_assert(st);
    bs.next(bs.ctx, &b, &nt);
    int B = b->B, S = b->S;
    int *src = malloc(sizeof(int) * (size_t)(B * S));
    memcpy(src, b->src, sizeof(int) * (size_t)(B * S));
    DenoiseSource *s2 = denoise_source_new(&docs, &tc, &o, &c, 512, 8, 64, 3);
    BatchSource bs2 = denoise_source_iface(s2);
    TEST_ASSERT_OK(bs2.restore(bs2.ctx, st));
    bs2.next(bs2.ctx, &b, &nt);
    cr_assert(b->B == B && b->S == S && !memcmp(b->src, src, sizeof(int) * (size_t)(B * S)),
              "a restored source yields the same noised batch");
    /* another objective's state is refused */
    NoiseOptions o2 = o;
    o2.objective = NOISE_INFILL;
    DenoiseSource *s3 = denoise_source_new(&docs, &tc, &o2, &c, 512, 8, 64, 3);
    BatchSource bs3 = denoise_source_iface(s3);
    cr_assert(bs3.restore(bs3.ctx, st) < 0);
    cr_assert(strstr(tt_errmsg(), "objective"), "%s", tt_errmsg());
    extern void cJSON_Delete(struct cJSON *);
    cJSON_Delete(st);
    free(src);
    denoise_source_free(s);
    denoise_source_free(s2);
    denoise_source_free(s3);
    pairset_free(&docs);
    token_classes_free(&tc);
    tokenizer_free(t);
    test_rmtree(dir);
}
