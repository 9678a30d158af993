/* test_chrf.c: chrF against sacreBLEU 2.6.0: the cases of its test/test_chrf.py (with
 * their expected values and tolerance 1e-4) and README.md, plus cases counted by hand from
 * metrics/chrf.py as each comment shows. */
#include "../testlib.h"
#include "tutor/metrics.h"

static double chrf1(const char *hyp, const char *ref, const ChrfOptions *opt) {
    const char *h[] = {hyp}, *r[] = {ref};
    const char *const *refs[] = {r};
    ChrfResult res;
    TEST_ASSERT_OK(chrf_corpus(h, refs, 1, 1, opt, &res));
    return res.score;
}

static ChrfOptions beta3(int eps, int whitespace) {
    ChrfOptions o;
    chrf_options_default(&o);
    o.beta = 3;
    o.eps_smoothing = eps;
    o.whitespace = whitespace;
    return o;
}

/* test_chrf.py test_cases: corpus_chrf(char_order=6, word_order=0, beta=3,
 * eps_smoothing=True). */
Test(chrf, eps_smoothing_cases) {
    ChrfOptions o = beta3(1, 0);
    struct { const char *h, *r; double s; } c[] = {
        {"abcdefg", "hijklmnop", 0.0},
        {"a", "b", 0.0},
        {"", "b", 0.0},
        {"", "ref", 0.0},
        {"", "reference", 0.0},
        {"aa", "ab", 8.3333},
        {"a", "a", 16.6667},
        {"a b c", "a b c", 50.0},
        {"a b c", "abc", 50.0},
        {" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .",
         "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .",
         63.361730},
        {" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. ",
         "Das Verh\xc3\xa4ltnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.", 64.1302698},
        {"Niemand hat die Absicht, eine Mauer zu errichten", "Niemand hat die Absicht, eine Mauer zu errichten", 100.0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        double s = chrf1(c[i].h, c[i].r, &o);
        cr_expect_float_eq(s, c[i].s, 1e-4, "case %zu: %.6f, expected %.6f", i, s, c[i].s);
    }
    /* (["a", "b"], ["a", "c"]) -> 8.3333: a two-segment corpus. */
    const char *h[] = {"a", "b"}, *r[] = {"a", "c"};
    const char *const *refs[] = {r};
    ChrfResult res;
    TEST_ASSERT_OK(chrf_corpus(h, refs, 1, 2, &o, &res));
    cr_expect_float_eq(res.score, 8.3333, 1e-4);
}

/* test_chrf.py test_cases_effective_order (sacreBLEU < 2.0 mode, the default). */
Test(chrf, effective_order_cases) {
    ChrfOptions o = beta3(0, 0);
    struct { const char *h, *r; double s; } c[] = {
        {"a", "a", 100.0}, {"", "reference", 0.0}, {"a b c", "a b c", 100.0},
        {"a b c", "abc", 100.0}, {"", "c", 0.0}, {"aa", "ab", 25.0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        cr_expect_float_eq(chrf1(c[i].h, c[i].r, &o), c[i].s, 1e-4, "case %zu", i);
    const char *h[] = {"a", "b"}, *r[] = {"a", "c"};
    const char *const *refs[] = {r};
    ChrfResult res;
    TEST_ASSERT_OK(chrf_corpus(h, refs, 1, 2, &o, &res));
    cr_expect_float_eq(res.score, 50.0, 1e-4);
}

/* test_chrf.py test_cases_keep_whitespace (remove_whitespace=False). */
Test(chrf, keep_whitespace) {
    ChrfOptions o = beta3(0, 1);
    cr_expect_float_eq(chrf1("Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.",
                             "Das Verh\xc3\xa4ltnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.", &o),
                       67.3481606, 1e-4);
    cr_expect_float_eq(chrf1("risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .",
                             "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .", &o),
                       65.2414427, 1e-4);
}

/* test_chrf.py test_sentence_level_chrf: sentence_chrf(eps_smoothing=True), beta 2. */
Test(chrf, sentence_level_czech) {
    ChrfOptions o;
    chrf_options_default(&o);
    o.eps_smoothing = 1;
    struct { const char *h, *r; double s; } c[] = {
        {"Co n\xc3\xa1s nejv\xc3\xad" "c tr\xc3\xa1p\xc3\xad, proto\xc5\xbe" "e l\xc3\xa9ka\xc5\x99i si vyb\xc3\xadraj\xc3\xad, kdo bude \xc5\xbe\xc3\xadt a kdo zem\xc5\x99" "e.",
         "Nejv\xc3\xad" "ce smutn\xc3\xad jsme z toho, \xc5\xbe" "e mus\xc3\xadme rozhodovat o tom, kdo bude \xc5\xbe\xc3\xadt a kdo zem\xc5\x99" "e.",
         39.14078509},
        {"Nebo prost\xc4\x9b nemaj\xc3\xad vybaven\xc3\xad, kter\xc3\xa9 by jim pomohlo, uvedli l\xc3\xa9ka\xc5\x99i.",
         "A n\xc4\x9bkdy nem\xc3\xa1me ani pot\xc5\x99" "ebn\xc3\xbd materi\xc3\xa1l, abychom jim pomohli, popsali l\xc3\xa9ka\xc5\x99i.",
         31.22557079},
        {"Lapali po dechu, jejich \xc5\xbeivoty skon\xc4\x8dily d\xc5\x99\xc3\xadv, ne\xc5\xbe skute\xc4\x8dn\xc4\x9b za\xc4\x8d" "aly.",
         "Lapali po dechu a pak jejich \xc5\xbeivot skon\xc4\x8dil - d\xc5\x99\xc3\xadv, ne\xc5\xbe skute\xc4\x8dn\xc4\x9b mohl za\xc4\x8d\xc3\xadt, p\xc5\x99ipomn\xc4\x9bli.",
         57.15704367},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ChrfResult r;
        const char *refs[] = {c[i].r};
        TEST_ASSERT_OK(chrf_sentence(c[i].h, refs, 1, &o, &r));
        cr_expect_float_eq(r.score, c[i].s, 1e-4, "case %zu: %.8f", i, r.score);
    }
}

/* README.md: CHRF().corpus_score(sys, refs) = chrF2 = 59.73 on its two-reference example;
 * signature as sacreBLEU prints it. chrF2++ (word_order 2) is named with two '+'. */
Test(chrf, readme_and_signature) {
    const char *sys[] = {"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
    const char *a[] = {"The dog bit the man.", "It was not unexpected.", "The man bit him first."};
    const char *b[] = {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."};
    const char *const *refs[] = {a, b};
    ChrfOptions o;
    chrf_options_default(&o);
    ChrfResult r;
    TEST_ASSERT_OK(chrf_corpus(sys, refs, 2, 3, &o, &r));
    char got[16];
    snprintf(got, sizeof got, "%.2f", r.score);
    cr_expect_str_eq(got, "59.73");
    cr_expect_str_eq(r.name, "chrF2");
    cr_expect_str_eq(r.signature, "nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0");
    o.word_order = 2;
    TEST_ASSERT_OK(chrf_corpus(sys, refs, 2, 3, &o, &r));
    cr_expect_str_eq(r.name, "chrF2++");
    cr_expect(strstr(r.signature, "nw:2") != NULL);
}

/* By hand, default options: identical texts 100; disjoint texts 0; non-ASCII counts code
 * points: "über" vs "uber" shares "b", "e", "r" (3 of 4 unigrams each side: P = R = 3/4),
 * bigrams "be", "er" (2 of 3), trigram "ber" (1 of 2), no 4-gram match (0 of 1); orders 5
 * and 6 have no n-grams on either side and do not count. Average P = R =
 * (3/4 + 2/3 + 1/2 + 0) / 4, and F = P when P = R. */
Test(chrf, by_hand) {
    ChrfOptions o;
    chrf_options_default(&o);
    cr_expect_float_eq(chrf1("Mauer zu errichten", "Mauer zu errichten", &o), 100.0, 1e-9);
    cr_expect_eq(chrf1("abc", "xyz", &o), 0.0);
    double p = (3.0 / 4 + 2.0 / 3 + 1.0 / 2 + 0) / 4;
    cr_expect_float_eq(chrf1("\xc3\xbc" "ber", "uber", &o), 100 * p, 1e-9);
}

/* Several references: the one with the best sentence chrF gives the statistics. */
Test(chrf, best_reference) {
    ChrfOptions o;
    chrf_options_default(&o);
    const char *refs[] = {"something else entirely", "the cat sat"};
    ChrfResult r;
    TEST_ASSERT_OK(chrf_sentence("the cat sat", refs, 2, &o, &r));
    cr_expect_float_eq(r.score, 100.0, 1e-9);
    cr_expect_eq(chrf_sentence("x\xff", refs, 2, &o, &r), -1);
}
