/* test_gen_files.c: generation_config.json written and read back as Hugging Face's keys, the
 * fixtures' HF-written files read, bad values refused; the resume point of an output file
 * (complete lines counted, a torn last line cut) (issue 4). */
#include "../testlib.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"

Test(gen_files, generation_config_round_trip) {
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    GenConfig g, back;
    gen_config_default(&g);
    g.max_new_tokens = 64;
    g.num_beams = 4;
    g.length_penalty = 2.0;
    g.early_stopping = EARLY_STOP_NEVER;
    g.no_repeat_ngram_size = 3;
    g.repetition_penalty = 1.2;
    g.num_return_sequences = 2;
    g.top_k = 0;
    g.top_p = 0.95;
    g.temperature = 1.5;
    g.min_new_tokens = 5;
    g.decoder_start_id = 2;
    g.eos_id = 2;
    g.pad_id = 1;
    g.bos_id = 0;
    g.forced_eos_id = 2;
    TEST_ASSERT_OK(gen_config_save(&g, path));
    char *text = read_file_text(path, NULL);
    cr_assert(text);
    cr_expect(strstr(text, "\"early_stopping\"") && strstr(text, "\"never\"") && strstr(text, "\"num_beams\"") &&
                  strstr(text, "\"forced_eos_token_id\"") && !strstr(text, "\"top_p\": 1"),
              "%s", text);
    free(text);
    gen_config_default(&back);
    TEST_ASSERT_OK(gen_config_load(&back, path));
    cr_expect_eq(back.max_new_tokens, 64);
    cr_expect_eq(back.num_beams, 4);
    cr_expect_eq(back.length_penalty, 2.0);
    cr_expect_eq(back.early_stopping, EARLY_STOP_NEVER);
    cr_expect_eq(back.no_repeat_ngram_size, 3);
    cr_expect_eq(back.repetition_penalty, 1.2);
    cr_expect_eq(back.num_return_sequences, 2);
    cr_expect_eq(back.top_k, 0);
    cr_expect_eq(back.top_p, 0.95);
    cr_expect_eq(back.temperature, 1.5);
    cr_expect_eq(back.min_new_tokens, 5);
    cr_expect_eq(back.decoder_start_id, 2);
    cr_expect_eq(back.forced_eos_id, 2);
    cr_expect_eq(back.pad_id, 1);
    /* a bad value is refused with the file named */
    const char *bad = "{\"num_beams\": 2, \"num_return_sequences\": 3}";
    TEST_ASSERT_OK(atomic_write_file(path, bad, strlen(bad)));
    gen_config_default(&back);
    cr_expect(gen_config_load(&back, path) < 0);
    cr_expect(strstr(tt_errmsg(), "generation_config.json"), "%s", tt_errmsg());
    test_rmtree(dir);
}

Test(gen_files, reads_hf_written_generation_config) {
    GenConfig g;
    gen_config_default(&g);
    TEST_ASSERT_OK(gen_config_load(&g, FIXTURES_HF "/bart/generation_config.json"));
    cr_expect_eq(g.decoder_start_id, 2);
    cr_expect_eq(g.forced_eos_id, 2);
    cr_expect_eq(g.pad_id, 1);
    cr_expect_eq(g.bos_id, 0);
    cr_expect_eq(g.max_length, 20, "HF's default when absent");
    cr_expect_eq(g.top_k, 50, "HF's default when absent");
}

Test(gen_files, resume_counts_lines_and_cuts_a_torn_one) {
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.jsonl", dir);
    long n = -1;
    TEST_ASSERT_OK(gen_output_resume(path, &n));
    cr_expect_eq(n, 0, "a missing file");
    const char *text = "{\"id\":\"a\",\"targets\":[]}\n{\"id\":\"b\",\"targets\":[\"x\"]}\n{\"id\":\"c\",\"tar";
    TEST_ASSERT_OK(atomic_write_file(path, text, strlen(text)));
    TEST_ASSERT_OK(gen_output_resume(path, &n));
    cr_expect_eq(n, 2);
    size_t len;
    char *back = read_file_text(path, &len);
    cr_expect_str_eq(back, "{\"id\":\"a\",\"targets\":[]}\n{\"id\":\"b\",\"targets\":[\"x\"]}\n");
    free(back);
    TEST_ASSERT_OK(gen_output_resume(path, &n));
    cr_expect_eq(n, 2, "a complete file is left as it is");
    /* a complete line that this command did not write is refused with its line number */
    const char *junk = "{\"id\":\"a\",\"targets\":[]}\nnot json\n";
    TEST_ASSERT_OK(atomic_write_file(path, junk, strlen(junk)));
    cr_expect(gen_output_resume(path, &n) < 0);
    cr_expect(strstr(tt_errmsg(), "out.jsonl:2:") != NULL, "%s", tt_errmsg());
    test_rmtree(dir);
}
