/* test_int8_model.c: int8 models. A quantized model's logits stay within a stated bound of
 * the float32 model's (mBART and GPT-2 layouts); the saved int8 file reloads to the same
 * logits; a directory loads as float32 with or without the file, and as int8 only with it;
 * corrupted or mismatched int8 files are refused with the reason; generation through
 * `tutor generate --int8` gives the same bytes on every kernel path this CPU has. */
#include <stdio.h>
#include <sys/stat.h>

#include "../testlib.h"
#include "tutor/kernels.h"
#include "tutor/model.h"

static Model *tiny(Arch arch) {
    ModelConfig c;
    model_config_default(&c, arch);
    c.vocab_size = 300, c.d_model = 64, c.max_positions = 64;
    c.enc_layers = arch == ARCH_GPT2 ? 0 : 2, c.dec_layers = 2;
    c.enc_heads = arch == ARCH_GPT2 ? 0 : 4, c.dec_heads = 4;
    c.enc_ffn = arch == ARCH_GPT2 ? 0 : 128, c.dec_ffn = 128;
    c.dropout = c.attn_dropout = c.act_dropout = 0;
    c.pad_id = 1, c.bos_id = 0, c.eos_id = 2, c.decoder_start_id = 2;
    Model *m = model_new(&c, 11);
    cr_assert(m != NULL, "%s", tt_errmsg());
    /* larger weights than init_std gives, so that logits are far from zero */
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 4;
    return m;
}

/* Logits of a fixed batch (B 2, S 9, T 7) under FWD_INFER into out (B*T*V). */
static void logits_of(Model *m, float *out) {
    int B = 2, S = 9, T = 7;
    int src[18], smask[18], tin[14], tmask[14], labels[14];
    for (int i = 0; i < B * S; i++) src[i] = 3 + (i * 37) % 290, smask[i] = 1;
    for (int i = 0; i < B * T; i++) tin[i] = 3 + (i * 53) % 290, tmask[i] = 1, labels[i] = 3 + (i * 17) % 290;
    Batch b = model_is_encdec(&m->cfg) ? (Batch){B, S, T, src, smask, tin, tmask, labels}
                                       : (Batch){B, 0, T, NULL, NULL, tin, tmask, labels};
    TEST_ASSERT_OK(model_forward(m, &b, FWD_INFER));
    model_logits(m, 0, B * T, out);
}

static void check_arch(Arch arch) {
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    Model *m = tiny(arch);
    TEST_ASSERT_OK(model_save(m, dir));
    int V = m->cfg.vocab_size, n = 2 * 7 * V;
    float *f = malloc(sizeof(float) * n), *q = malloc(sizeof(float) * n), *q2 = malloc(sizeof(float) * n);
    logits_of(m, f);
    TEST_ASSERT_OK(model_q8_quantize(m));
    logits_of(m, q);
    double maxf = 0, maxd = 0;
    for (int i = 0; i < n; i++) {
        maxf = fmax(maxf, fabs(f[i]));
        maxd = fmax(maxd, fabs((double)f[i] - q[i]));
    }
    /* the stated bound (docs/int8.md): on these random models with large weights (a hard case
     * for 7-bit activations) the largest logit difference is at most 10% of the largest logit
     * (measured: 2.5% mBART, 6% GPT-2); a trained student's test cross-entropy moves by 0.0005 */
    cr_assert(maxd <= 0.10 * maxf, "%s: int8 logits differ by %g, 10%% of the largest (%g) is the bound",
              arch == ARCH_GPT2 ? "gpt2" : "mbart", maxd, maxf);
    cr_assert(maxd > 0, "int8 logits equal the float ones exactly: the int8 path did not run");
    cr_log_info("int8 logits: max |diff| %.4g, max |logit| %.4g (%.2f%%)", maxd, maxf, 100 * maxd / maxf);
    char path[400];
    snprintf(path, sizeof path, "%s/model.int8.safetensors", dir);
    TEST_ASSERT_OK(model_q8_save(m, path));
    model_free(m);

    /* float32 with the int8 file beside it; int8 from the file: the same logits as quantized */
    Model *r = model_load(dir);
    cr_assert(r != NULL, "%s", tt_errmsg());
    cr_assert(r->q8 == NULL);
    logits_of(r, q2);
    cr_assert(memcmp(f, q2, sizeof(float) * n) == 0, "float32 load must ignore the int8 file");
    TEST_ASSERT_OK(model_q8_load_dir(r, dir));
    logits_of(r, q2);
    cr_assert(memcmp(q, q2, sizeof(float) * n) == 0, "the saved int8 weights must reload to the same logits");
    model_free(r);

    /* without the file: float32 loads, int8 is refused naming the fix */
    char moved[420];
    snprintf(moved, sizeof moved, "%s.bak", path);
    cr_assert(rename(path, moved) == 0);
    r = model_load(dir);
    cr_assert(r != NULL);
    cr_assert(model_q8_load_dir(r, dir) != 0);
    cr_assert(strstr(tt_errmsg(), "tutor quantize") != NULL, "%s", tt_errmsg());
    model_free(r);
    cr_assert(rename(moved, path) == 0);

    /* corrupted: a truncated file, and a file for another model */
    size_t len;
    char *bytes = read_file_text(path, &len);
    cr_assert(bytes != NULL);
    char bad[420];
    snprintf(bad, sizeof bad, "%s/trunc.safetensors", dir);
    TEST_ASSERT_OK(atomic_write_file(bad, bytes, len / 2));
    r = model_load(dir);
    cr_assert(model_q8_load(r, bad) != 0, "a truncated int8 file must be refused");
    cr_assert(strstr(tt_errmsg(), "trunc.safetensors") != NULL, "%s", tt_errmsg());
    cr_assert(r->q8 == NULL);
    /* the float model's own file is no int8 file */
    char fl[420];
    snprintf(fl, sizeof fl, "%s/model.safetensors", dir);
    cr_assert(model_q8_load(r, fl) != 0);
    cr_assert(strstr(tt_errmsg(), "not a tutor int8 file") != NULL, "%s", tt_errmsg());
    model_free(r);
    Model *other = tiny(arch);
    other->cfg.d_model = 64;
    model_free(other);
    free(bytes);
    free(f), free(q), free(q2);
    test_rmtree(dir);
}

Test(int8_model, mbart_logits_bound_reload_refusals) { check_arch(ARCH_MBART); }
Test(int8_model, gpt2_logits_bound_reload_refusals) { check_arch(ARCH_GPT2); }

Test(int8_model, shape_mismatch_refused) {
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    Model *m = tiny(ARCH_MBART);
    TEST_ASSERT_OK(model_q8_quantize(m));
    char path[400];
    snprintf(path, sizeof path, "%s/model.int8.safetensors", dir);
    TEST_ASSERT_OK(model_q8_save(m, path));
    model_free(m);
    /* a model with another FFN width cannot take these weights */
    ModelConfig c;
    model_config_default(&c, ARCH_MBART);
    c.vocab_size = 300, c.d_model = 64, c.max_positions = 64, c.enc_layers = 2, c.dec_layers = 2;
    c.enc_heads = c.dec_heads = 4, c.enc_ffn = c.dec_ffn = 256;
    c.pad_id = 1, c.bos_id = 0, c.eos_id = 2, c.decoder_start_id = 2;
    Model *o = model_new(&c, 1);
    cr_assert(model_q8_load(o, path) != 0);
    cr_assert(strstr(tt_errmsg(), "another model") != NULL, "%s", tt_errmsg());
    model_free(o);
    test_rmtree(dir);
}

/* tutor quantize + tutor generate --int8 on every kernel path: identical outputs. */
Test(int8_model, generate_same_on_every_path, .timeout = 120) {
    char dir[256], cmd[2000];
    test_tmpdir(dir, sizeof dir);
    snprintf(cmd, sizeof cmd,
             "head -n 200 build/data/debdesc/labeled.jsonl > %s/train.jsonl && head -n 20 build/data/debdesc/test.jsonl "
             "> %s/in.jsonl && %s tokenizer train --data %s/train.jsonl --vocab 500 -o %s/tok.json >/dev/null 2>&1 && "
             "%s train --tokenizer %s/tok.json --data %s/train.jsonl --d-model 64 --layers 1 --heads 2 --ffn 128 "
             "--max-source-tokens 48 --max-target-tokens 16 --batch-tokens 1500 --max-steps 20 --lr 3e-3 "
             "--no-progress --eval-every 0 -o %s/m >/dev/null 2>&1 && %s quantize --model %s/m > %s/q.txt 2>&1",
             dir, dir, tutor_bin(), dir, dir, tutor_bin(), dir, dir, dir, tutor_bin(), dir, dir);
    cr_assert(system(cmd) == 0, "setup failed: %s", cmd);
    static const char *const paths[3] = {"portable", "avx2", "vnni"};
    static const Q8Path ids[3] = {Q8_PORTABLE, Q8_AVX2, Q8_VNNI};
    char first[400] = "";
    for (int p = 0; p < 3; p++) {
        if (!q8_path_available(ids[p])) continue;
        char out[400];
        snprintf(out, sizeof out, "%s/gen-%s.jsonl", dir, paths[p]);
        snprintf(cmd, sizeof cmd,
                 "TUTOR_INT8_PATH=%s %s generate --model %s/m --int8 --input %s/in.jsonl --beam 3 --num-return 2 -o %s "
                 "--threads 2 --no-progress 2>%s.log",
                 paths[p], tutor_bin(), dir, dir, out, out);
        cr_assert(system(cmd) == 0, "%s", cmd);
        if (!first[0]) snprintf(first, sizeof first, "%s", out);
        else cr_assert(test_files_equal(first, out), "%s and %s differ", first, out);
    }
    /* one input at a time on one thread: the same outputs (the int8 logits are made a group of
     * inputs at a time inside the choice; each row must still read its own) */
    char one[400];
    snprintf(one, sizeof one, "%s/gen-one.jsonl", dir);
    snprintf(cmd, sizeof cmd,
             "%s generate --model %s/m --int8 --input %s/in.jsonl --beam 3 --num-return 2 -o %s --threads 1 "
             "--batch-size 1 --no-progress 2>%s.log",
             tutor_bin(), dir, dir, one, one);
    cr_assert(system(cmd) == 0, "%s", cmd);
    cr_assert(test_files_equal(first, one), "%s and %s differ", first, one);
    snprintf(cmd, sizeof cmd,
             "%s generate --model %s/m --int8 --input %s/in.jsonl -o %s/greedy-a.jsonl --threads 2 --batch-size 20 "
             "--no-progress 2>/dev/null && %s generate --model %s/m --int8 --input %s/in.jsonl -o %s/greedy-b.jsonl "
             "--threads 1 --batch-size 1 --no-progress 2>/dev/null && cmp -s %s/greedy-a.jsonl %s/greedy-b.jsonl",
             tutor_bin(), dir, dir, dir, tutor_bin(), dir, dir, dir, dir, dir);
    cr_assert(system(cmd) == 0, "greedy int8: batch 20 on 2 threads and batch 1 on 1 differ");
    /* the float32 run of the same directory is another run: it must also work */
    snprintf(cmd, sizeof cmd, "%s generate --model %s/m --input %s/in.jsonl -o %s/f.jsonl --no-progress 2>/dev/null",
             tutor_bin(), dir, dir, dir);
    cr_assert(system(cmd) == 0);
    /* --int8 without the file: a clear error */
    snprintf(cmd, sizeof cmd,
             "rm %s/m/model.int8.safetensors && %s generate --model %s/m --int8 --input %s/in.jsonl 2>&1 >/dev/null | "
             "grep -q 'tutor quantize'",
             dir, tutor_bin(), dir, dir);
    cr_assert(system(cmd) == 0, "generate --int8 without the file must say how to make it");
    test_rmtree(dir);
}
