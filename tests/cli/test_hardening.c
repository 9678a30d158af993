/* test_hardening.c: what a hostile user broke in issue 9, each case driven through the
 * `tutor` program: oversized configs, malformed "train" objects, outputs that are inputs,
 * --batch-size far above the input count, NaN weights, tokenizers with huge ids, a junk
 * resume file, and every numeric flag of the training and decoding commands given -1, 0,
 * nan, inf, 1e30 and text. Each either works as documented or exits non-zero naming the
 * flag; none may crash. */
#include <sys/wait.h>

#include "../testlib.h"
#include "tutor/fileio.h"

#define DATA "build/data/debdesc"

/* Runs a shell command; returns its exit status (128 + signal when killed) and its stderr. */
static int run(const char *cmd, char *err, size_t n) {
    char full[8192], errpath[] = "/tmp/tutor-hard-err-XXXXXX";
    int fd = mkstemp(errpath);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(full, sizeof full, "%s >/dev/null 2>%s", cmd, errpath);
    int st = system(full);
    size_t len = 0;
    char *text = read_file_text(errpath, &len);
    snprintf(err, n, "%s", text ? text : "");
    free(text);
    unlink(errpath);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    int rc = WEXITSTATUS(st);
    return rc;
}

/* A shell prefix capping the memory of the command that follows: ulimit -v in release;
 * under ASan (whose shadow memory needs terabytes of address space) an allocation cap. */
static const char *mem_cap(long mb) {
    static char buf[160];
    const char *san = getenv("SANITIZE");
    if (san && !strcmp(san, "1"))
        snprintf(buf, sizeof buf, "ASAN_OPTIONS=$ASAN_OPTIONS:max_allocation_size_mb=%ld", mb);
    else
        snprintf(buf, sizeof buf, "ulimit -v %ld;", mb * 1000);
    return buf;
}

typedef struct {
    char dir[128], tok[256], train[256], model[256];
} Env;

static void setup(Env *e) {
    cr_assert(system("scripts/debdesc-fetch.sh >/dev/null") == 0);
    test_tmpdir(e->dir, sizeof e->dir);
    snprintf(e->train, sizeof e->train, "%s/train.jsonl", e->dir);
    snprintf(e->tok, sizeof e->tok, "%s/tok.json", e->dir);
    snprintf(e->model, sizeof e->model, "%s/model", e->dir);
    char cmd[2048], err[4096];
    snprintf(cmd, sizeof cmd, "head -n 200 %s/labeled.jsonl > %s", DATA, e->train);
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s --vocab 400 -o %s", tutor_bin(), e->train, e->tok);
    cr_assert(run(cmd, err, sizeof err) == 0, "%s", err);
    snprintf(cmd, sizeof cmd,
             "%s train --tokenizer %s --data %s -o %s --d-model 16 --layers 1 --heads 2 --ffn 32 --max-steps 2 "
             "--max-source-tokens 32 --max-target-tokens 16 --no-progress",
             tutor_bin(), e->tok, e->train, e->model);
    cr_assert(run(cmd, err, sizeof err) == 0, "%s", err);
}

static void set_config_key(const Env *e, const char *dir, const char *kv) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && cp %s/model.safetensors %s/ && /usr/bin/python3 -c \"import json,sys; "
             "c=json.load(open('%s/config.json')); c.update(json.loads(sys.argv[1])); "
             "json.dump(c, open('%s/config.json','w'))\" '%s'",
             dir, e->model, dir, e->model, dir, kv);
    cr_assert(system(cmd) == 0, "%s", cmd);
}

Test(hardening, oversized_configs_are_refused_not_crashed, .timeout = 60) {
    Env e;
    setup(&e);
    const char *cases[] = {"{\"d_model\": 60000}", "{\"vocab_size\": 2000000000}", "{\"decoder_layers\": 2147483647}",
                           "{\"max_position_embeddings\": 2147483000}", "{\"d_model\": 1e300}",
                           "{\"encoder_ffn_dim\": 1000000, \"d_model\": 40000}"};
    char dir[300], cmd[1024], err[4096];
    snprintf(dir, sizeof dir, "%s/big", e.dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        set_config_key(&e, dir, cases[i]);
        snprintf(cmd, sizeof cmd, "%s info %s", tutor_bin(), dir);
        int rc = run(cmd, err, sizeof err);
        cr_expect(rc == 1 && strstr(err, "config.json"), "%s: exit %d, '%s'", cases[i], rc, err);
    }
    test_rmtree(e.dir);
}

Test(hardening, nan_weights_are_refused, .timeout = 60) {
    Env e;
    setup(&e);
    char cmd[2048], err[4096];
    /* poison the first float of the first tensor's data */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import struct; f=open('%s/model.safetensors','r+b'); n=struct.unpack('<Q', "
             "f.read(8))[0]; f.seek(8+n); f.write(struct.pack('<f', float('nan')))\"",
             e.model);
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s info %s", tutor_bin(), e.model);
    int rc = run(cmd, err, sizeof err);
    cr_expect(rc == 1 && strstr(err, "NaN") && strstr(err, "model.safetensors"), "exit %d: %s", rc, err);
    test_rmtree(e.dir);
}

Test(hardening, train_object_must_be_an_object, .timeout = 60) {
    Env e;
    setup(&e);
    const char *cases[] = {"{\"train\": [1]}", "{\"train\": 5}", "{\"train\": {\"max_steps\": \"x\"}}",
                           "{\"train\": {\"bogus\": 1}}", "{\"train\": {\"lr\": -1}}", "{\"d_modle\": 8}"};
    char conf[300], cmd[2048], err[4096];
    snprintf(conf, sizeof conf, "%s/conf.json", e.dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(conf, "w");
        fputs(cases[i], f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s train --config %s --tokenizer %s --data %s -o %s/o%zu --no-progress",
                 tutor_bin(), conf, e.tok, e.train, e.dir, i);
        int rc = run(cmd, err, sizeof err);
        cr_expect(rc == 1 && strstr(err, "conf.json"), "%s: exit %d, '%s'", cases[i], rc, err);
    }
    test_rmtree(e.dir);
}

static long file_size(const char *p) {
    size_t n = 0;
    char *t = read_file_text(p, &n);
    free(t);
    return t ? (long)n : -1;
}

Test(hardening, outputs_never_overwrite_inputs, .timeout = 60) {
    Env e;
    setup(&e);
    char cmd[2048], err[4096];
    long before = file_size(e.train);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --input %s -o %s", tutor_bin(), e.model, e.train, e.train);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "input"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s --vocab 300 -o %s", tutor_bin(), e.train, e.train);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "input"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s train --init %s --data %s -o %s --max-steps 1", tutor_bin(), e.model, e.train,
             e.model);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "--init"), "%s", err);
    cr_expect_eq(file_size(e.train), before, "the data file is untouched");
    /* an existing file of another kind is not replaced */
    char other[300];
    snprintf(other, sizeof other, "%s/notes.txt", e.dir);
    FILE *f = fopen(other, "w");
    fputs("my notes\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s --vocab 300 -o %s", tutor_bin(), e.train, other);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "notes.txt"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --input %s -o %s", tutor_bin(), e.model, e.train, other);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "notes.txt"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s train --tokenizer %s --data %s -o %s --max-steps 1", tutor_bin(), e.tok, e.train,
             other);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "notes.txt"), "%s", err);
    cr_expect_eq(file_size(other), 9);
    /* an empty data set makes no tokenizer */
    char empty[300], tok2[300];
    snprintf(empty, sizeof empty, "%s/empty.jsonl", e.dir);
    snprintf(tok2, sizeof tok2, "%s/tok2.json", e.dir);
    fclose(fopen(empty, "w"));
    snprintf(cmd, sizeof cmd, "%s tokenizer train --data %s --vocab 300 -o %s", tutor_bin(), empty, tok2);
    cr_expect(run(cmd, err, sizeof err) != 0 && !file_exists(tok2), "%s", err);
    test_rmtree(e.dir);
}

Test(hardening, batch_size_is_sized_by_the_inputs, .timeout = 60) {
    Env e;
    setup(&e);
    char cmd[2048], err[4096], two[300], out[300];
    snprintf(two, sizeof two, "%s/two.jsonl", e.dir);
    snprintf(out, sizeof out, "%s/out.jsonl", e.dir);
    snprintf(cmd, sizeof cmd, "head -n 2 %s > %s", e.train, two);
    cr_assert(system(cmd) == 0);
    /* 100000 slots would need about 26 GB; two inputs need a few MB: 1 GB of address space is plenty */
    snprintf(cmd, sizeof cmd, "sh -c '%s exec %s generate --model %s --input %s -o %s --batch-size 100000 --threads 1'",
             mem_cap(1500), tutor_bin(), e.model, two, out);
    int rc = run(cmd, err, sizeof err);
    cr_expect(rc == 0, "exit %d: %s", rc, err);
    /* a resume file with more lines than inputs, or junk, is refused */
    snprintf(cmd, sizeof cmd, "cat %s %s > %s/three.jsonl && cp %s/three.jsonl %s", out, out, e.dir, e.dir, out);
    cr_assert(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --input %s -o %s --resume", tutor_bin(), e.model, two, out);
    cr_expect(run(cmd, err, sizeof err) != 0 && strstr(err, "cannot resume"), "%s", err);
    test_rmtree(e.dir);
}

Test(hardening, tokenizer_ids_are_bounded, .timeout = 60) {
    Env e;
    setup(&e);
    char cmd[2048], err[4096], bad[300];
    snprintf(bad, sizeof bad, "%s/bad-tok.json", e.dir);
    const char *edits[] = {"t['model']['vocab']['zzz'] = 1000000000",
                           "t['added_tokens'].append({'id': 2147483647, 'content': '<x>', 'special': True})",
                           "t['model']['vocab']['zzz'] = 3000000"};
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import json; t=json.load(open('%s')); %s; json.dump(t, open('%s','w'))\"",
                 e.tok, edits[i], bad);
        cr_assert(system(cmd) == 0, "%s", cmd);
        snprintf(cmd, sizeof cmd, "sh -c '%s exec %s tokenizer encode --tokenizer %s --text hello'", mem_cap(1000),
                 tutor_bin(), bad);
        int rc = run(cmd, err, sizeof err);
        cr_expect(rc == 1 && strstr(err, "bad-tok.json"), "%s: exit %d, %s", edits[i], rc, err);
    }
    test_rmtree(e.dir);
}

/* Bar 3: every numeric flag, given -1, 0, nan, inf, 1e30 and text: works (exit 0) or exits
 * with 1 or 2 naming the flag; never a crash, never a silent fallback to a default. */
Test(hardening, numeric_flag_scan, .timeout = 600) {
    Env e;
    setup(&e);
    char dev[300], gen_out[300], cmd[4096], err[4096];
    snprintf(dev, sizeof dev, "%s/dev.jsonl", e.dir);
    snprintf(cmd, sizeof cmd, "head -n 4 %s > %s", e.train, dev);
    cr_assert(system(cmd) == 0);
    snprintf(gen_out, sizeof gen_out, "%s/gen.jsonl", e.dir);
    typedef struct {
        const char *cmd, *base;
        const char *flags[32];
    } Scan;
    char train_base[1024], gen_base[1024], eval_base[1024], tune_base[1024], tok_base[1024], pre_base[1024],
        distill_base[1024];
    snprintf(train_base, sizeof train_base,
             "train --tokenizer %s --data %s -o %s/scan-train --d-model 16 --layers 1 --heads 2 --ffn 32 --max-steps 2 "
             "--max-source-tokens 32 --max-target-tokens 16 --no-progress",
             e.tok, dev, e.dir);
    snprintf(pre_base, sizeof pre_base,
             "pretrain --tokenizer %s --data %s -o %s/scan-pre --d-model 16 --layers 1 --heads 2 --ffn 32 --max-steps 2 "
             "--max-source-tokens 32 --no-progress",
             e.tok, dev, e.dir);
    snprintf(distill_base, sizeof distill_base,
             "distill --teacher %s --data %s -o %s/scan-distill --keep-decoder-layers 0 --max-steps 2 "
             "--max-source-tokens 32 --max-target-tokens 16 --no-progress --eval-every 0",
             e.model, dev, e.dir);
    snprintf(gen_base, sizeof gen_base, "generate --model %s --input %s -o %s --threads 1", e.model, dev, gen_out);
    snprintf(eval_base, sizeof eval_base, "eval --model %s --data %s --no-speed --threads 1 -q --resamples 10", e.model,
             dev);
    snprintf(tune_base, sizeof tune_base, "tune --model %s --data %s --dry-run --beams 1 --no-repeat 0 --threads 1",
             e.model, dev);
    snprintf(tok_base, sizeof tok_base, "tokenizer train --data %s -o %s/scan-tok.json", dev, e.dir);
    Scan scans[] = {
        {"train", train_base, {"--d-model", "--layers", "--heads", "--ffn", "--dropout", "--max-source-tokens",
                               "--max-target-tokens", "--batch-tokens", "--max-batch", "--update-tokens", "--lr",
                               "--warmup", "--max-steps", "--max-epochs", "--weight-decay", "--clip",
                               "--label-smoothing", "--seed", "--threads", "--eval-every", "--save-every",
                               "--log-every", "--patience", "--max-train-examples", "--dev-rouge-examples", NULL}},
        {"pretrain", pre_base, {"--mask-ratio", "--poisson-lambda", "--gap-ratio", "--mix-gap-prob", "--heldout",
                                "--preview", NULL}},
        {"generate", gen_base, {"--beam", "--length-penalty", "--temperature", "--top-k", "--top-p", "--num-return",
                                "--max-new-tokens", "--min-new-tokens", "--no-repeat-ngram", "--repetition-penalty",
                                "--seed", "--batch-size", "--threads", "--max-source-tokens", NULL}},
        {"eval", eval_base, {"--beam", "--length-penalty", "--lead", "--max-examples", "--batch-size",
                             "--max-source-tokens", "--max-target-tokens", "--max-new-tokens", "--exposure-len",
                             "--resamples", "--seed", "--no-repeat-ngram", NULL}},
        {"tune", tune_base, {"--max-examples", "--max-source-tokens", "--batch-size", "--threads", NULL}},
        {"tokenizer", tok_base, {"--vocab", "--min-frequency", NULL}},
        {"distill", distill_base, {"--tau", "--beta", "--skew", "--teacher-top-p", "--kd-weight", "--ce-weight",
                                   "--student-fraction", "--student-temperature", "--student-top-p",
                                   "--final-finetune-epochs", "--dev-rouge-examples", "--max-minutes", NULL}},
    };
    const char *values[] = {"-1", "0", "nan", "inf", "1e30", "text"};
    int runs = 0, refused = 0, worked = 0;
    for (size_t s = 0; s < sizeof scans / sizeof scans[0]; s++)
        for (int f = 0; scans[s].flags[f]; f++)
            for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                const char *flag = scans[s].flags[f];
                /* tokenizer train needs --vocab: give the scanned one last so it wins */
                snprintf(cmd, sizeof cmd, "%s %s%s %s %s", tutor_bin(), scans[s].base,
                         !strcmp(scans[s].cmd, "tokenizer") && strcmp(flag, "--vocab") ? " --vocab 300" : "", flag,
                         values[v]);
                unlink(gen_out);
                int rc = run(cmd, err, sizeof err);
                runs++;
                cr_expect(rc == 0 || rc == 1 || rc == 2, "%s %s %s: exit %d (a crash?): %s", scans[s].cmd, flag,
                          values[v], rc, err);
                if (rc) {
                    refused++;
                    cr_expect(strstr(err, flag) != NULL, "%s %s %s: exit %d without naming the flag: %s",
                              scans[s].cmd, flag, values[v], rc, err);
                } else {
                    worked++;
                }
            }
    cr_log_info("flag scan: %d runs, %d refused naming the flag, %d worked", runs, refused, worked);
    test_rmtree(e.dir);
}

/* Item 14: AutoTokenizer reads tokenizer_config.json first; with "tokenizer_class" it loads
 * that class (transformers 4.36, models/auto/tokenization_auto.py: config_tokenizer_class
 * from tokenizer_config.json wins over the model type's mapping), and
 * PreTrainedTokenizerFast builds itself from tokenizer.json with the special tokens named
 * there. Without it, a BART directory gets BartTokenizerFast, which adds its own <mask>. */
Test(hardening, model_dirs_carry_the_files_autotokenizer_needs, .timeout = 60) {
    Env e;
    setup(&e);
    char path[400];
    size_t n;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", e.model);
    char *text = read_file_text(path, &n);
    cr_assert(text, "%s", tt_errmsg());
    cr_expect(strstr(text, "\"tokenizer_class\":\t\"PreTrainedTokenizerFast\""), "%s", text);
    cr_expect(strstr(text, "\"bos_token\":\t\"<s>\"") && strstr(text, "\"eos_token\":\t\"</s>\"") &&
                  strstr(text, "\"pad_token\":\t\"<pad>\"") && strstr(text, "\"unk_token\":\t\"<unk>\""),
              "%s", text);
    free(text);
    snprintf(path, sizeof path, "%s/special_tokens_map.json", e.model);
    cr_expect(file_exists(path));
    snprintf(path, sizeof path, "%s/config.json", e.model);
    text = read_file_text(path, &n);
    cr_expect(strstr(text, "\"dropout\":\t0.1,"), "dropout written as 0.1: %s", text);
    free(text);
    test_rmtree(e.dir);
}

/* Item 8: NUL escapes, duplicate keys and JSON syntax errors are named with file and place. */
Test(hardening, json_inputs_are_refused_with_their_place, .timeout = 60) {
    Env e;
    setup(&e);
    char path[300], cmd[2048], err[4096];
    struct {
        const char *text, *want;
    } lines[] = {{"{\"source\": \"ab\\u0000cd\", \"target\": \"x\"}\n", "NUL"},
                 {"{\"source\": \"a\", \"source\": \"b\", \"target\": \"x\"}\n", "twice"}};
    snprintf(path, sizeof path, "%s/bad.jsonl", e.dir);
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(path, "w");
        fputs(lines[i].text, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s train --tokenizer %s --data %s -o %s/o%zu --max-steps 1 --no-progress",
                 tutor_bin(), e.tok, path, e.dir, i);
        int rc = run(cmd, err, sizeof err);
        cr_expect(rc == 1 && strstr(err, "bad.jsonl:1:") && strstr(err, lines[i].want), "exit %d: %s", rc, err);
    }
    struct {
        const char *text, *want;
    } configs[] = {{"{\"d_model\": 8,\n \"x\": [1,}", "config.json:2:"},
                   {"{\"model_type\": 3}", "must be a string"},
                   {"{\"model_type\": \"bart\", \"model_type\": \"gpt2\"}", "appears twice"}};
    char dir[300];
    snprintf(dir, sizeof dir, "%s/cfg", e.dir);
    for (size_t i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/model.safetensors %s/", dir, e.model, dir);
        cr_assert(system(cmd) == 0);
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "w");
        fputs(configs[i].text, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s info %s", tutor_bin(), dir);
        int rc = run(cmd, err, sizeof err);
        cr_expect(rc == 1 && strstr(err, configs[i].want) && strstr(err, "config.json"), "exit %d: %s", rc, err);
    }
    test_rmtree(e.dir);
}

/* Item 8: a generation config token id outside the vocabulary names the file and the key. */
Test(hardening, generation_config_ids_name_file_and_key, .timeout = 60) {
    Env e;
    setup(&e);
    char path[400], cmd[2048], err[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", e.model);
    FILE *f = fopen(path, "w");
    fputs("{\"eos_token_id\": 99999, \"max_new_tokens\": 4}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --input %s -o %s/g.jsonl", tutor_bin(), e.model, e.train, e.dir);
    int rc = run(cmd, err, sizeof err);
    cr_expect(rc == 1 && strstr(err, "generation_config.json") && strstr(err, "eos_token_id"), "exit %d: %s", rc,
              err);
    test_rmtree(e.dir);
}
