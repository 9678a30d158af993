/* test_rouge.c: ROUGE against rouge-score 0.1.2. Cases marked "rouge_scorer_test.py" are
 * that file's tests (google-research/google-research, rouge/), with its test data lines
 * (files in rouge/testdata/) inlined; its expected values are ROUGE-1.5.5's. The other
 * expected values are counted by hand from rouge-score's definitions, as each comment
 * shows. */
#include "../testlib.h"
#include "tutor/metrics.h"

#define EPS 1e-9

static RougeScores score(const char *hyp, const char *ref, int stem) {
    RougeScores s;
    TEST_ASSERT_OK(rouge_score_pair(hyp, ref, stem, &s));
    return s;
}

static void expect_prf(RougeScore s, double p, double r, double f, double eps) {
    cr_expect_float_eq(s.precision, p, eps, "precision %.9f, expected %.9f", s.precision, p);
    cr_expect_float_eq(s.recall, r, eps, "recall %.9f, expected %.9f", s.recall, r);
    cr_expect_float_eq(s.fmeasure, f, eps, "F %.9f, expected %.9f", s.fmeasure, f);
}

/* rouge_scorer_test.py: testRouge1, testRouge2, testRougeLConsecutive,
 * testRougeLNonConsecutive, testMultipleRougeTypes (target first, prediction second). */
Test(rouge, reference_unit_tests) {
    RougeScores s = score("testing", "testing one two", 0);
    expect_prf(s.rouge1, 1, 1.0 / 3, 0.5, EPS);
    s = score("testing one", "testing one two", 0);
    expect_prf(s.rouge2, 1, 0.5, 2.0 / 3, EPS);
    expect_prf(s.rougeL, 1, 2.0 / 3, 0.8, EPS);
    expect_prf(s.rouge1, 1, 2.0 / 3, 0.8, EPS);
    s = score("testing two", "testing one two", 0);
    expect_prf(s.rougeL, 1, 2.0 / 3, 0.8, EPS);
}

/* rouge_scorer_test.py: testRougeEmpty, and testRougeLsum's empty cases: an empty
 * prediction, an empty target, and a prediction of non-word characters all give 0. */
Test(rouge, empty_texts_score_zero) {
    const char *pairs[][2] = {{"", "testing one two"}, {"w1", ""}, {"/", "w1 w2 w3 w4 w5"}, {"", ""}};
    for (size_t i = 0; i < 4; i++) {
        RougeScores s = score(pairs[i][0], pairs[i][1], 0);
        expect_prf(s.rouge1, 0, 0, 0, 0);
        expect_prf(s.rouge2, 0, 0, 0, 0);
        expect_prf(s.rougeL, 0, 0, 0, 0);
        expect_prf(s.rougeLsum, 0, 0, 0, 0);
    }
}

/* rouge/testdata/target.txt and prediction.txt, lines 1 and 2. */
static const char *TARGET0 =
    "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM "
    "EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L";
static const char *TARGET1 =
    "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m "
    "qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing "
    "UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN";
static const char *PRED0 =
    "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi";
static const char *PRED1 =
    "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed "
    "HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD";

/* rouge_scorer_test.py: testRouge1/2/LAgainstRouge155 (5 decimals). */
Test(rouge, against_rouge155) {
    RougeScores s = score(PRED0, TARGET0, 0);
    expect_prf(s.rouge1, 0.68750, 0.40741, 0.51163, 5e-6);
    expect_prf(s.rouge2, 0.53333, 0.30769, 0.39024, 5e-6);
    expect_prf(s.rougeL, 0.68750, 0.40741, 0.51163, 5e-6);
    s = score(PRED1, TARGET1, 0);
    expect_prf(s.rouge1, 0.65385, 0.40476, 0.50000, 5e-6);
    expect_prf(s.rouge2, 0.48000, 0.29268, 0.36364, 5e-6);
    expect_prf(s.rougeL, 0.65385, 0.40476, 0.50000, 5e-6);
}

/* rouge_scorer_test.py: testRouge1/2AgainstRouge155WithStemming. */
Test(rouge, against_rouge155_with_stemming) {
    RougeScores s = score(PRED0, TARGET0, 1);
    expect_prf(s.rouge1, 0.68750, 0.40741, 0.51163, 5e-6);
    expect_prf(s.rouge2, 0.53333, 0.30769, 0.39024, 5e-6);
    s = score(PRED1, TARGET1, 1);
    expect_prf(s.rouge1, 0.69231, 0.42857, 0.52941, 5e-6);
    expect_prf(s.rouge2, 0.48000, 0.29268, 0.36364, 5e-6);
}

/* rouge_scorer_test.py: testRougeLSumAgainstRouge155WithStemming, with
 * rouge/testdata/pyrouge_files/target_multi.0.txt and prediction_multi.0.txt. */
Test(rouge, lsum_against_rouge155_with_stemming) {
    char target[2048], pred[2048];
    snprintf(target, sizeof target, "%s\n%s\n%s\n%s\n", TARGET0, TARGET1,
             "NhETebUbBk'er WOvoHMTjSRizKgH'vHiing Xu,hWxfs VkNE QhgKiLHE -HidivzoM.dO anhtion "
             "jbLQiSGDTCsuhREebUaKM dv J dVN tmbOT",
             "vMR HDm,xOAetion D,tion HJtodT.mHl UIv-p VjWH'BdyWjnfGU-OjT aEMdFICyLWfQMtion "
             "wEMfdOKing AwkeKbO 'DxqNOHBH qKtVvm OYJl mM");
    snprintf(pred, sizeof pred, "%s\n%s\n%s\n%s\n", PRED0, PRED1,
             "xfs VkJE QhgKiLHE -HidivzoM.dO anhing jbLQiSGDTCsuhREebUaKM dv J",
             "VjWH'BdyWjnfGU-OjTNaEMdFICyLWfQMing wEMfdOKijg AwkeKbO 'DxqNO");
    RougeScores s = score(pred, target, 1);
    expect_prf(s.rougeLsum, 0.66667, 0.36538, 0.47205, 5e-6);
}

/* rouge_scorer_test.py: testRougeLsum and testSummaryLevelLcs (the union-LCS example of
 * Lin 2004, section 3.2): union LCS of "w1 w2 w3 w4 w5" with the two candidate sentences
 * is {w1, w2, w3, w5}: 4 hits, recall 4/5, precision 4/10. ROUGE-L on the whole texts:
 * LCS("w1..w5", "w1 w2 w6 w7 w8 w1 w3 w8 w9 w5") = w1 w2 w3 w5, the same 4. */
Test(rouge, lsum_union_lcs) {
    RougeScores s = score("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5", 0);
    expect_prf(s.rougeLsum, 0.4, 0.8, 2 * 0.4 * 0.8 / 1.2, EPS);
    expect_prf(s.rougeL, 0.4, 0.8, 2 * 0.4 * 0.8 / 1.2, EPS);
    /* Hits are de-duplicated by token counts (ROUGE-1.5.5): reference "a b" against
     * candidate sentences "a" and "a": the union covers only ref position 0, one hit;
     * P = 1/2, R = 1/2. Empty lines are dropped before tokenizing. */
    s = score("a\n\na", "a b", 0);
    expect_prf(s.rougeLsum, 0.5, 0.5, 0.5, EPS);
}

/* Identical texts score 1 and disjoint texts 0; fewer than two tokens leave ROUGE-2 at 0
 * with its max(count, 1) denominators. */
Test(rouge, identical_disjoint_short) {
    RougeScores s = score("The cat sat on the mat.", "the CAT sat on the mat", 0);
    expect_prf(s.rouge1, 1, 1, 1, EPS);
    expect_prf(s.rouge2, 1, 1, 1, EPS);
    expect_prf(s.rougeL, 1, 1, 1, EPS);
    expect_prf(s.rougeLsum, 1, 1, 1, EPS);
    s = score("dogs bark loudly", "the cat sat", 0);
    expect_prf(s.rouge1, 0, 0, 0, 0);
    expect_prf(s.rougeL, 0, 0, 0, 0);
    /* "cat" vs "the cat sat": R1 P = 1, R = 1/3; no hypothesis bigram: R2 P = 0/1. */
    s = score("cat", "the cat sat", 0);
    expect_prf(s.rouge1, 1, 1.0 / 3, 0.5, EPS);
    expect_prf(s.rouge2, 0, 0, 0, 0);
}

/* The tokenizer: Python lower(), then every run of characters outside [a-z0-9] is one
 * separator. "İ" lowers to "i" + U+0307 in Python, so "İstanbul" gives "i stanbul";
 * KELVIN SIGN lowers to ASCII "k"; "é" and CJK are separators; "3.5" is "3 5". */
Test(rouge, tokenizer_matches_python) {
    struct { const char *in, *out; int stem; } cases[] = {
        {"Hello, World! It's 3.5%", "hello world it s 3 5", 0},
        {"\xc4\xb0stanbul caf\xc3\xa9 \xe2\x84\xaa" "ELVIN \xe6\x9d\xb1\xe4\xba\xac x", "i stanbul caf kelvin x", 0},
        {"  \t\n ", "", 0},
        {"The runners were running quickly", "the runner were run quickli", 1},
        /* only tokens longer than 3 characters are stemmed: "dies" and "ties" are,
         * "was" is not (NLTK would give "wa") */
        {"was ran dies ties", "was ran die tie", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = rouge_tokenize(cases[i].in, cases[i].stem);
        cr_assert(t != NULL, "%s", tt_errmsg());
        cr_expect_str_eq(t, cases[i].out);
        free(t);
    }
}

/* Stemming changes matches: "running" and "run" both stem to "run". */
Test(rouge, stemming_makes_matches) {
    RougeScores s = score("running dogs", "run dog", 0);
    expect_prf(s.rouge1, 0, 0, 0, 0);
    s = score("running dogs", "run dog", 1);
    expect_prf(s.rouge1, 1, 1, 1, EPS);
}

/* score_multi: per ROUGE type, the reference with the highest F. Against "a b c d",
 * "a b" gives R1 F = 2*1*0.5/1.5 = 2/3; against "a x" F = 0.5. */
Test(rouge, multiple_references_take_best) {
    const char *refs[] = {"a x", "a b c d"};
    RougeScores s;
    TEST_ASSERT_OK(rouge_score_multi("a b", refs, 2, 0, &s));
    expect_prf(s.rouge1, 1, 0.5, 2.0 / 3, EPS);
    expect_prf(s.rouge2, 1, 1.0 / 3, 0.5, EPS);
}

/* Corpus mean of per-example scores; NULL references are skipped. Example 1 is identical
 * (F = 1), example 2 disjoint (F = 0): the mean F is 0.5. */
Test(rouge, corpus_mean) {
    const char *hyps[] = {"a b c", "x y"};
    const char *r0[] = {"a b c", NULL};
    const char *r1[] = {NULL, "p q"};
    const char *const *refs[] = {r0, r1};
    RougeScores per[2], mean;
    TEST_ASSERT_OK(rouge_corpus(hyps, refs, 2, 2, 0, per, &mean));
    cr_expect_float_eq(per[0].rougeL.fmeasure, 1, EPS);
    cr_expect_float_eq(per[1].rougeL.fmeasure, 0, EPS);
    cr_expect_float_eq(mean.rouge1.fmeasure, 0.5, EPS);
    cr_expect_float_eq(mean.rougeLsum.recall, 0.5, EPS);
    const char *none[] = {NULL, NULL};
    const char *const *no_refs[] = {none};
    cr_expect_eq(rouge_corpus(hyps, no_refs, 1, 2, 0, per, &mean), -1);
}

Test(rouge, invalid_utf8_is_an_error) {
    RougeScores s;
    cr_expect_eq(rouge_score_pair("ok \xff", "ok", 0, &s), -1);
    cr_expect(strstr(tt_errmsg(), "invalid UTF-8") != NULL, "%s", tt_errmsg());
    cr_expect_eq(rouge_score_pair("ok", "\xc3", 0, &s), -1);
}
