/* bpe_files.c: byte-level BPE tokenizers on disk: Hugging Face's tokenizer.json (read and
 * written, so that HF's own library reads what tutor trains) and GPT-2/BART's older pair
 * vocab.json + merges.txt (GPT-2 names them encoder.json + vocab.bpe). */
#include "bpe_internal.h"
#include "tutor/fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Spellings indexed by id, filled from a vocab object; NULL for holes. */
typedef struct {
    char **spell;
    int n_ids;
} SpellTable;

static void spell_table_free(SpellTable *st) {
    for (int i = 0; i < st->n_ids; i++) free(st->spell[i]);
    free(st->spell);
    memset(st, 0, sizeof *st);
}

static int spell_table_put(SpellTable *st, int id, const char *s, const char *path) {
    if (id < 0 || id >= TOKENIZER_MAX_IDS)
        return tt_err("%s: token '%s' has id %d, outside [0, %d)", path, s, id, TOKENIZER_MAX_IDS);
    if (id >= st->n_ids) {
        int n = id + 1;
        char **p = realloc(st->spell, (size_t)n * sizeof *p);
        if (!p) return tt_err("%s: out of memory", path);
        for (int i = st->n_ids; i < n; i++) p[i] = NULL;
        st->spell = p;
        st->n_ids = n;
    }
    if (st->spell[id]) {
        if (!strcmp(st->spell[id], s)) return 0;
        return tt_err("%s: id %d is both '%s' and '%s'", path, id, st->spell[id], s);
    }
    st->spell[id] = strdup(s);
    return st->spell[id] ? 0 : tt_err("%s: out of memory", path);
}

/* Line number of byte offset off in text (1-based). */
static size_t line_of(const char *text, size_t off) {
    size_t line = 1;
    for (size_t i = 0; i < off && text[i]; i++) line += text[i] == '\n';
    return line;
}

static cJSON *parse_json_file(const char *path) {
    size_t n;
    char *text = read_file_text(path, &n);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - text) : 0;
        tt_err("%s:%zu: invalid JSON", path, line_of(text, off));
    }
    free(text);
    return root;
}

static int vocab_from_json(SpellTable *st, const cJSON *vocab, const char *path) {
    if (!cJSON_IsObject(vocab)) return tt_err("%s: the vocabulary is not a JSON object", path);
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble >= TOKENIZER_MAX_IDS ||
            item->valuedouble != (double)item->valueint)
            return tt_err("%s: token '%s' has no valid id (a whole number in [0, %d))", path, item->string,
                          TOKENIZER_MAX_IDS);
        if (spell_table_put(st, item->valueint, item->string, path)) return -1;
    }
    if (st->n_ids == 0) return tt_err("%s: empty vocabulary", path);
    /* tables are sized by the largest id: a few holes are HF's way, a sea of them is not */
    int used = 0;
    for (int i = 0; i < st->n_ids; i++) used += st->spell[i] != NULL;
    if (st->n_ids > 2 * used + 1024)
        return tt_err("%s: ids go up to %d but only %d are used: refusing tables that size", path, st->n_ids - 1,
                      used);
    return 0;
}

static int json_flag(const cJSON *obj, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *json_type(const cJSON *obj) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* A post-processor's special token: ["<s>", 0] in Roberta/Bert form. */
static int processor_token(const cJSON *pp, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pp, key);
    const cJSON *id = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsArray(v) || !cJSON_IsNumber(id) || id->valueint < 0)
        return tt_err("%s: post_processor.%s is not [token, id]", path, key);
    return id->valueint;
}

/* Reads the post-processor: what goes before and after a single sequence. */
static int read_post_processor(const cJSON *pp, const cJSON *root, int *cls, int *sep,
                               const char *path) {
    if (!pp || cJSON_IsNull(pp)) return 0;
    const char *type = json_type(pp);
    if (!strcmp(type, "ByteLevel")) return 0;
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        if ((*cls = processor_token(pp, "cls", path)) < 0) return -1;
        if ((*sep = processor_token(pp, "sep", path)) < 0) return -1;
        return 0;
    }
    if (!strcmp(type, "Sequence")) {
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(pp, "processors"))
            if (read_post_processor(p, root, cls, sep, path)) return -1;
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        /* only [SpecialToken?] Sequence A [SpecialToken?] */
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"), *piece;
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
        int seen_seq = 0;
        cJSON_ArrayForEach(piece, single) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
            if (cJSON_GetObjectItemCaseSensitive(piece, "Sequence")) {
                if (seen_seq++) return tt_err("%s: post_processor: two sequences in 'single'", path);
                continue;
            }
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(st, "id");
            const cJSON *spec = cJSON_GetObjectItemCaseSensitive(specials, cJSON_IsString(name) ? name->valuestring : "");
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(spec, "ids");
            if (!cJSON_IsString(name) || cJSON_GetArraySize(ids) != 1)
                return tt_err("%s: post_processor: unsupported template piece", path);
            int id = cJSON_GetArrayItem(ids, 0)->valueint;
            if (!seen_seq && *cls < 0) *cls = id;
            else if (seen_seq && *sep < 0) *sep = id;
            else return tt_err("%s: post_processor: unsupported template (more than one token each side)", path);
        }
        return 0;
    }
    return tt_err("%s: post_processor type '%s' is not supported", path, type);
}

static Tokenizer *load_tokenizer_json(const char *path) {
    cJSON *root = parse_json_file(path);
    if (!root) return NULL;
    Tokenizer *tok = NULL;
    SpellTable st = {0};
    AddedToken *added = NULL;
    const char **merges = NULL;
    char *merge_text = NULL;
    int n_added = 0, n_merges = 0, cls = -1, sep = -1, add_prefix_space = 0;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = json_type(model);
    if (!cJSON_IsObject(model) || (*mtype && strcmp(mtype, "BPE"))) {
        tt_err("%s: model type '%s' is not supported (only byte-level BPE)", path, mtype);
        goto done;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!cJSON_IsObject(pre) || strcmp(json_type(pre), "ByteLevel") || !json_flag(pre, "use_regex", 1)) {
        tt_err("%s: the pre_tokenizer is not ByteLevel with GPT-2's regex", path);
        goto done;
    }
    add_prefix_space = json_flag(pre, "add_prefix_space", 0);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        tt_err("%s: normalizer '%s' is not supported", path, json_type(norm));
        goto done;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec) && strcmp(json_type(dec), "ByteLevel")) {
        tt_err("%s: decoder '%s' is not supported (only ByteLevel)", path, json_type(dec));
        goto done;
    }
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(model, "dropout")) && cJSON_IsNumber(v) && v->valuedouble != 0) {
        tt_err("%s: BPE dropout is not supported", path);
        goto done;
    }
    if (json_flag(model, "ignore_merges", 0) || json_flag(model, "byte_fallback", 0)) {
        tt_err("%s: ignore_merges and byte_fallback are not supported", path);
        goto done;
    }
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        v = cJSON_GetObjectItemCaseSensitive(model, affix[k]);
        if (cJSON_IsString(v) && v->valuestring[0]) {
            tt_err("%s: %s is not supported", path, affix[k]);
            goto done;
        }
    }
    if (read_post_processor(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), root, &cls, &sep, path))
        goto done;
    if (vocab_from_json(&st, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path)) goto done;

    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *a;
    added = calloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *added);
    if (!added) {
        tt_err("%s: out of memory", path);
        goto done;
    }
    cJSON_ArrayForEach(a, list) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOKENIZER_MAX_IDS ||
            id->valuedouble != floor(id->valuedouble) || !cJSON_IsString(content) || !content->valuestring[0]) {
            tt_err("%s: added_tokens[%d] needs an id (a whole number in [0, %d)) and a content", path, n_added,
                   TOKENIZER_MAX_IDS);
            goto done;
        }
        AddedToken *t = &added[n_added++];
        t->id = id->valueint;
        t->content = content->valuestring; /* copied by bpe_tokenizer_build */
        t->len = strlen(t->content);
        t->special = json_flag(a, "special", 0);
        t->lstrip = json_flag(a, "lstrip", 0);
        t->rstrip = json_flag(a, "rstrip", 0);
        t->single_word = json_flag(a, "single_word", 0);
        t->normalized = json_flag(a, "normalized", 0);
        if (spell_table_put(&st, t->id, t->content, path)) goto done;
    }

    const cJSON *mlist = cJSON_GetObjectItemCaseSensitive(model, "merges"), *m;
    if (!cJSON_IsArray(mlist)) {
        tt_err("%s: model.merges is not a list", path);
        goto done;
    }
    int cap = cJSON_GetArraySize(mlist);
    merges = malloc(2 * ((size_t)cap + 1) * sizeof *merges);
    size_t text_len = 0;
    cJSON_ArrayForEach(m, mlist) if (cJSON_IsString(m)) text_len += strlen(m->valuestring) + 1;
    merge_text = malloc(text_len + 1);
    if (!merges || !merge_text) {
        tt_err("%s: out of memory", path);
        goto done;
    }
    size_t off = 0;
    cJSON_ArrayForEach(m, mlist) {
        if (cJSON_IsString(m)) { /* "a b" (older files) */
            char *s = merge_text + off;
            strcpy(s, m->valuestring);
            off += strlen(s) + 1;
            char *space = strchr(s, ' ');
            if (!space || space == s || !space[1] || strchr(space + 1, ' ')) {
                tt_err("%s: merge %d ('%s') is not two tokens", path, n_merges + 1, m->valuestring);
                goto done;
            }
            *space = 0;
            merges[2 * n_merges] = s;
            merges[2 * n_merges + 1] = space + 1;
        } else { /* ["a", "b"] */
            const cJSON *l = cJSON_GetArrayItem(m, 0), *r = cJSON_GetArrayItem(m, 1);
            if (cJSON_GetArraySize(m) != 2 || !cJSON_IsString(l) || !cJSON_IsString(r)) {
                tt_err("%s: merge %d is not a pair of strings", path, n_merges + 1);
                goto done;
            }
            merges[2 * n_merges] = l->valuestring;
            merges[2 * n_merges + 1] = r->valuestring;
        }
        n_merges++;
    }
    tok = bpe_tokenizer_build((const char *const *)st.spell, st.n_ids, merges, n_merges, added,
                              n_added, add_prefix_space, cls, sep, path);
done:
    free(merges);
    free(merge_text);
    free(added);
    spell_table_free(&st);
    cJSON_Delete(root);
    return tok;
}

Tokenizer *tokenizer_load_gpt2(const char *vocab_path, const char *merges_path) {
    cJSON *root = parse_json_file(vocab_path);
    if (!root) return NULL;
    Tokenizer *tok = NULL;
    SpellTable st = {0};
    const char **merges = NULL;
    char *text = NULL;
    int n_merges = 0;
    if (vocab_from_json(&st, root, vocab_path)) goto done;
    size_t n;
    if (!(text = read_file_text(merges_path, &n))) goto done;
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    merges = malloc(2 * lines * sizeof *merges);
    if (!merges) {
        tt_err("%s: out of memory", merges_path);
        goto done;
    }
    char *p = text;
    for (size_t line = 1; *p; line++) {
        char *nl = strchr(p, '\n'), *next = nl ? nl + 1 : p + strlen(p);
        if (nl) *nl = 0;
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r') p[--len] = 0;
        if (len && !(line == 1 && !strncmp(p, "#version", 8))) {
            char *space = strchr(p, ' ');
            if (!space || space == p || !space[1] || strchr(space + 1, ' ')) {
                tt_err("%s:%zu: a merge is two tokens separated by one space", merges_path, line);
                goto done;
            }
            *space = 0;
            merges[2 * n_merges] = p;
            merges[2 * n_merges + 1] = space + 1;
            n_merges++;
        }
        p = next;
    }
    /* the special tokens of BART (and RoBERTa) and of GPT-2, when the vocabulary has them */
    static const struct { const char *text; int lstrip; } specials[] = {
        {TOKENIZER_BOS, 0}, {TOKENIZER_PAD, 0}, {TOKENIZER_EOS, 0}, {TOKENIZER_UNK, 0},
        {"<mask>", 1}, {"<|endoftext|>", 0},
    };
    AddedToken added[6];
    int n_added = 0, cls = -1, sep = -1;
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, specials[k].text);
        if (!id) continue;
        added[n_added] = (AddedToken){.id = id->valueint, .content = (char *)specials[k].text,
                                      .len = strlen(specials[k].text), .special = 1,
                                      .lstrip = specials[k].lstrip};
        if (!strcmp(specials[k].text, TOKENIZER_BOS)) cls = id->valueint;
        if (!strcmp(specials[k].text, TOKENIZER_EOS)) sep = id->valueint;
        n_added++;
    }
    if (cls < 0 || sep < 0) cls = sep = -1;
    tok = bpe_tokenizer_build((const char *const *)st.spell, st.n_ids, merges, n_merges, added,
                              n_added, 0, cls, sep, merges_path);
done:
    free(merges);
    free(text);
    spell_table_free(&st);
    cJSON_Delete(root);
    return tok;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

Tokenizer *tokenizer_load(const char *path) {
    if (!file_exists(path)) {
        tt_err("%s: no such file or directory", path);
        return NULL;
    }
    if (!is_dir(path)) return load_tokenizer_json(path);
    size_t n = strlen(path) + 32;
    char *a = malloc(n), *b = malloc(n);
    Tokenizer *tok = NULL;
    if (!a || !b) {
        tt_err("out of memory");
        goto done;
    }
    snprintf(a, n, "%s/tokenizer.json", path);
    if (file_exists(a)) {
        tok = load_tokenizer_json(a);
        goto done;
    }
    static const char *pairs[][2] = {{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}};
    for (int k = 0; k < 2; k++) {
        snprintf(a, n, "%s/%s", path, pairs[k][0]);
        snprintf(b, n, "%s/%s", path, pairs[k][1]);
        if (file_exists(a) && file_exists(b)) {
            tok = tokenizer_load_gpt2(a, b);
            goto done;
        }
    }
    tt_err("%s: no tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe in this directory", path);
done:
    free(a);
    free(b);
    return tok;
}

/* ---- saving ---- */

static cJSON *byte_level_object(int add_prefix_space, int trim_offsets) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", 1);
    return o;
}

static cJSON *processor_pair(const Tokenizer *t, int id) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString(tokenizer_token_str(t, id)));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(id));
    return a;
}

static cJSON *tokenizer_to_json(const Tokenizer *t) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int k = 0; k < t->n_added; k++) {
        const AddedToken *a = &t->added[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", a->id);
        cJSON_AddStringToObject(o, "content", a->content);
        cJSON_AddBoolToObject(o, "single_word", a->single_word);
        cJSON_AddBoolToObject(o, "lstrip", a->lstrip);
        cJSON_AddBoolToObject(o, "rstrip", a->rstrip);
        cJSON_AddBoolToObject(o, "normalized", a->normalized);
        cJSON_AddBoolToObject(o, "special", a->special);
        cJSON_AddItemToArray(added, o);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", byte_level_object(t->add_prefix_space, 1));
    if (t->cls_id >= 0 && t->sep_id >= 0) {
        cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
        cJSON_AddStringToObject(pp, "type", "RobertaProcessing");
        cJSON_AddItemToObject(pp, "sep", processor_pair(t, t->sep_id));
        cJSON_AddItemToObject(pp, "cls", processor_pair(t, t->cls_id));
        cJSON_AddBoolToObject(pp, "trim_offsets", 1);
        cJSON_AddBoolToObject(pp, "add_prefix_space", t->add_prefix_space);
    } else {
        cJSON_AddItemToObject(root, "post_processor", byte_level_object(1, 0));
    }
    cJSON_AddItemToObject(root, "decoder", byte_level_object(1, 1));
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(model, "end_of_word_suffix", "");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < t->n_ids; i++) {
        const char *s = tokenizer_token_str(t, i);
        if (s) cJSON_AddItemToObject(vocab, s, cJSON_CreateNumber(i));
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int r = 0; r < t->n_merges; r++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(tokenizer_token_str(t, t->merge_left[r])));
        cJSON_AddItemToArray(pair, cJSON_CreateString(tokenizer_token_str(t, t->merge_right[r])));
        cJSON_AddItemToArray(merges, pair);
    }
    return root;
}

int tokenizer_save(const Tokenizer *t, const char *path) {
    char *target = NULL;
    if (is_dir(path)) {
        size_t n = strlen(path) + 32;
        if (!(target = malloc(n))) return tt_err("out of memory");
        snprintf(target, n, "%s/tokenizer.json", path);
        path = target;
    }
    cJSON *root = tokenizer_to_json(t);
    /* cJSON returns NULL from these when memory ran out while building */
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    int rc;
    if (!text) rc = tt_err("%s: out of memory writing the tokenizer", path);
    else rc = atomic_write_file(path, text, strlen(text));
    free(text);
    free(target);
    return rc;
}

Tokenizer *tokenizer_add_special(const Tokenizer *tok, const char *content, int lstrip, int *id) {
    int existing = tokenizer_token_id(tok, content);
    int n = tok->n_ids + (existing < 0);
    const char **spell = calloc((size_t)n, sizeof *spell);
    const char **merges = malloc(((size_t)tok->n_merges * 2 + 1) * sizeof *merges);
    AddedToken *added = malloc(((size_t)tok->n_added + 1) * sizeof *added);
    Tokenizer *out = NULL;
    if (!spell || !merges || !added) {
        tt_err("out of memory");
        goto done;
    }
    for (int i = 0; i < tok->n_ids; i++) spell[i] = tokenizer_token_str(tok, i);
    for (int r = 0; r < tok->n_merges; r++) {
        merges[2 * r] = spell[tok->merge_left[r]];
        merges[2 * r + 1] = spell[tok->merge_right[r]];
    }
    memcpy(added, tok->added, (size_t)tok->n_added * sizeof *added);
    int n_added = tok->n_added;
    if (existing < 0) {
        spell[n - 1] = content;
        added[n_added++] = (AddedToken){.id = n - 1, .content = (char *)content, .len = strlen(content),
                                        .special = 1, .lstrip = lstrip};
        existing = n - 1;
    } else if (!tokenizer_is_special(tok, existing)) {
        tt_err("tokenizer: '%s' is an ordinary token (id %d), not a special one", content, existing);
        goto done;
    }
    out = bpe_tokenizer_build(spell, n, merges, tok->n_merges, added, n_added, tok->add_prefix_space,
                              tok->cls_id, tok->sep_id, "tokenizer");
    if (out && id) *id = existing;
done:
    free(spell);
    free(merges);
    free(added);
    return out;
}

/* HF's files beside tokenizer.json that make AutoTokenizer load it as it is: without a
 * tokenizer_class, AutoTokenizer picks the model type's own class (BartTokenizerFast adds
 * its own <mask>, MBart's appends language codes, GPT-2's lacks the specials). */
int tokenizer_save_dir(const Tokenizer *t, const char *dir, int model_max_length) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (tokenizer_save(t, path)) return -1;
    const char *roles[][2] = {{"bos_token", NULL}, {"eos_token", NULL}, {"unk_token", NULL},
                              {"pad_token", NULL}, {"mask_token", NULL}};
    roles[0][1] = t->bos_id >= 0 ? tokenizer_token_str(t, t->bos_id) : NULL;
    roles[1][1] = t->eos_id >= 0 ? tokenizer_token_str(t, t->eos_id) : NULL;
    roles[2][1] = t->unk_id >= 0 ? tokenizer_token_str(t, t->unk_id) : NULL;
    roles[3][1] = t->pad_id >= 0 ? tokenizer_token_str(t, t->pad_id) : NULL;
    int mask = tokenizer_token_id(t, TOKENIZER_MASK);
    roles[4][1] = mask >= 0 && tokenizer_is_special(t, mask) ? TOKENIZER_MASK : NULL;
    if (!roles[2][1] && roles[1][1] && !strcmp(roles[1][1], "<|endoftext|>")) roles[2][1] = roles[1][1];
    cJSON *map = cJSON_CreateObject(), *conf = cJSON_CreateObject();
    for (int i = 0; i < 5; i++)
        if (roles[i][1]) {
            cJSON_AddStringToObject(map, roles[i][0], roles[i][1]);
            cJSON_AddStringToObject(conf, roles[i][0], roles[i][1]);
        }
    cJSON_AddStringToObject(conf, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddBoolToObject(conf, "clean_up_tokenization_spaces", 0);
    if (model_max_length > 0) cJSON_AddNumberToObject(conf, "model_max_length", model_max_length);
    cJSON *dec = cJSON_AddObjectToObject(conf, "added_tokens_decoder");
    for (int k = 0; k < t->n_added; k++) {
        const AddedToken *a = &t->added[k];
        char id[16];
        snprintf(id, sizeof id, "%d", a->id);
        cJSON *o = cJSON_AddObjectToObject(dec, id);
        cJSON_AddStringToObject(o, "content", a->content);
        cJSON_AddBoolToObject(o, "lstrip", a->lstrip);
        cJSON_AddBoolToObject(o, "normalized", a->normalized);
        cJSON_AddBoolToObject(o, "rstrip", a->rstrip);
        cJSON_AddBoolToObject(o, "single_word", a->single_word);
        cJSON_AddBoolToObject(o, "special", a->special);
    }
    char *a = cJSON_Print(map), *b = cJSON_Print(conf);
    cJSON_Delete(map);
    cJSON_Delete(conf);
    int rc = a && b ? 0 : tt_err("out of memory");
    if (!rc) {
        snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
        rc = atomic_write_file(path, a, strlen(a));
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        rc = atomic_write_file(path, b, strlen(b));
    }
    free(a);
    free(b);
    return rc;
}
