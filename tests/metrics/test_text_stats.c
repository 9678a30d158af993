/* test_text_stats.c: length ratio, immediate repetitions and distinct-n, with expected
 * values counted by hand over whitespace tokens. */
#include "../testlib.h"
#include "tutor/metrics.h"

/* Outputs: "the the cat" (3 tokens, repeats "the"), "a cat sat" (3), "" (0).
 * References: 4 + 2 + 2 = 8 tokens. Ratio 6 / 8. Unigrams: the the cat a cat sat ->
 * 6 total, distinct {the, cat, a, sat} = 4. Bigrams (not across outputs): (the the)
 * (the cat) (a cat) (cat sat) -> 4 total, all distinct. One output of three repeats. */
Test(text_stats, by_hand) {
    const char *hyps[] = {"the the cat", "a cat  sat", ""};
    const char *refs[] = {"the cat is here", "a cat", "two words"};
    TextStats s;
    TEST_ASSERT_OK(text_stats(hyps, refs, 3, &s));
    cr_expect_eq(s.hyp_tokens, 6);
    cr_expect_eq(s.ref_tokens, 8);
    cr_expect_float_eq(s.length_ratio, 0.75, 1e-12);
    cr_expect_float_eq(s.mean_hyp_len, 2.0, 1e-12);
    cr_expect_eq(s.n_immediate_repeat, 1);
    cr_expect_float_eq(s.immediate_repeat_share, 1.0 / 3, 1e-12);
    cr_expect_eq(s.unigrams, 6);
    cr_expect_eq(s.distinct_unigrams, 4);
    cr_expect_float_eq(s.distinct1, 4.0 / 6, 1e-12);
    cr_expect_eq(s.bigrams, 4);
    cr_expect_eq(s.distinct_bigrams, 4);
    cr_expect_float_eq(s.distinct2, 1.0, 1e-12);
}

/* Repeated outputs lower distinct-n: two copies of "x y" give unigrams 4 (2 distinct)
 * and bigrams 2 (1 distinct). "x\u00a0x" is two tokens under Python's split (no-break
 * space is whitespace), an immediate repetition; "x.x" is one token. Without references
 * the ratio is 0. */
Test(text_stats, repeats_and_unicode_whitespace) {
    const char *hyps[] = {"x y", "x y", "x\xc2\xa0x", "x.x"};
    TextStats s;
    TEST_ASSERT_OK(text_stats(hyps, NULL, 4, &s));
    cr_expect_eq(s.unigrams, 7);
    cr_expect_eq(s.distinct_unigrams, 3);
    cr_expect_eq(s.bigrams, 3);
    cr_expect_eq(s.distinct_bigrams, 2);
    cr_expect_eq(s.n_immediate_repeat, 1);
    cr_expect_eq(s.length_ratio, 0.0);
    const char *bad[] = {"\xc0\xaf"};
    cr_expect_eq(text_stats(bad, NULL, 1, &s), -1);
}

/* How much of an output is copied from its source (teacher bar: <= 20% copy 6+ words). */
Test(text_stats, longest_copied_run) {
    cr_expect_eq(longest_copied_run("a b c d", "x a b c y d"), 3);
    cr_expect_eq(longest_copied_run("The Quick fox", "the quick  fox jumps"), 3, "case folded, any spacing");
    cr_expect_eq(longest_copied_run("", "a b"), 0);
    cr_expect_eq(longest_copied_run("a b", ""), 0);
    cr_expect_eq(longest_copied_run("one two three four five six", "one two three four five six seven"), 6);
    cr_expect_eq(longest_copied_run("a b a b a", "b a b"), 3);
    cr_expect_eq(longest_copied_run("library", "libraries"), 0, "whole tokens only");
}
