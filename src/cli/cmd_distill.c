/* cmd_distill.c: `tutor distill`: a student trained from a teacher by any method of the
 * study (fine-tuning on gold or pseudo-targets, word-level KD and its divergences, noisy
 * KD, student pseudo-targets, Joint-Teaching, GKD) on the open training loop, with the
 * same checkpoints, resume, progress and metrics.jsonl as `tutor train`. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"
#include "tutor/cli.h"
#include "tutor/distill.h"
#include "tutor/evaluate.h"
#include "tutor/fileio.h"
#include "tutor/generate.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor distill --teacher DIR (--data GOLD.jsonl | --pt PTS.jsonl ...) -o OUT_DIR [options]\n\n"
            "Trains a student from a teacher. OUT_DIR receives the best student (a Hugging Face model\n"
            "directory with the teacher's tokenizer and decoding settings), metrics.jsonl (with the time\n"
            "spent in the teacher's forward, the student's generation and the student's forward and\n"
            "backward) and the last checkpoint for --resume. docs/distillation.md has every formula.\n\n"
            "methods (--method):\n"
            "  ft           fine-tuning: cross-entropy on the batch's targets (gold, and with --pt the\n"
            "               teacher's pseudo-targets: sequence-level KD)\n"
            "  kd           word-level KD (default): the --objective between teacher and student on\n"
            "               every target token (gold and pseudo-targets alike)\n"
            "  noisy-kd     word-level KD with the teacher's dropout on\n"
            "  student-pt   word-level KD on student pseudo-targets only: each batch's targets\n"
            "               sampled online by the current student, scored by the teacher\n"
            "  joint        Joint-Teaching: student PTs on a fraction --student-fraction of batches\n"
            "               (0.5: every second), the data's targets (teacher PTs, gold) on the others\n"
            "  gkd          GKD: each batch on-policy (student samples) with probability\n"
            "               --student-fraction (0.5), objective jsd with --beta (0.5)\n"
            "  attention-kd word-level KD plus attention-relation KD (MiniLM v2): KL between teacher and\n"
            "               student relations softmax(X X^T / sqrt(d)), X the queries, keys, values of\n"
            "               the last layer's encoder self-, decoder self- and cross-attention, in\n"
            "               --relation-heads (the teacher's) heads; weight --attention-weight (1)\n"
            "  minillm      MiniLLM: sequence-level reverse KL by policy gradient on samples from\n"
            "               --mix-alpha (0.2) teacher + the rest student, single-step decomposition,\n"
            "               importance weights q / mixture, length-normalised rewards\n"
            "objectives (--objective, per token over the vocabulary, times tau^2):\n"
            "  fkl          forward KL(teacher || student) (default)\n"
            "  rkl          reverse KL(student || teacher)\n"
            "  jsd          generalised JSD(beta): beta 0 = forward KL, 1 = reverse KL\n"
            "  tvd          total variation distance\n"
            "  skl | srkl   skew KL / skew reverse KL (DistiLLM), mixing weight --skew\n"
            "  --tau X (1) --beta X (0.5) --skew X (0.1) --teacher-top-p P (1: off)\n"
            "  --kd-weight X (1; 0 with ft) --ce-weight X (0; 1 with ft): loss = kd-weight * KD +\n"
            "               ce-weight * CE on the batch's targets\n"
            "  --attention-weight X (0; 1 with attention-kd) --relation-heads N (the teacher's)\n"
            "  --autoscale  scale KD and CE to a mean of 1 each, measured on the first 8 batches\n"
            "student (default: shrink the teacher):\n"
            "  --keep-decoder-layers L  teacher decoder layers the student keeps (default 0,-1)\n"
            "  --keep-encoder-layers L  teacher encoder layers kept (default all)\n"
            "  --init DIR               start from a model directory instead (same tokenizer)\n"
            "  --config FILE, --arch A --d-model N --layers N --heads N --ffn N --dropout P\n"
            "                           a student from scratch (random initialisation)\n"
            "data:\n"
            "  --teacher DIR            the teacher model directory (its tokenizer.json is used)\n"
            "  --data FILE              gold pairs (JSONL); kept in every epoch unless --no-gold\n"
            "  --pt FILE                pseudo-targets from `tutor generate` (repeatable): epoch e\n"
            "                           trains on the (e mod K)-th of each input's K targets\n"
            "  --pt-per-input N         use only the first N targets of each input (default: all)\n"
            "  --no-gold                train on the pseudo-targets only (gold still checks --pt)\n"
            "  --dev FILE               dev pairs: evaluation, best model, early stopping\n"
            "  --max-source-tokens N --max-target-tokens N   (default: from --data, else 256 / 64)\n"
            "  --source-field NAME --target-field NAME --skip-bad --max-train-examples N\n"
            "student pseudo-targets (student-pt, joint, gkd):\n"
            "  --student-fraction X     alpha (joint) or lambda (gkd) (0.5)\n"
            "  --student-temperature T (1) --student-top-p P (1)   how the student samples\n"
            "the teacher's signal, cached (for the data's targets; student PTs use the live teacher):\n"
            "  --teacher-cache exact|sparse   exact: each target token's final teacher hidden state (the\n"
            "                           loss equals the live one to float rounding); sparse: top-k\n"
            "                           log-probabilities plus the rest as one bucket (fkl at tau 1; its\n"
            "                           bias against the live teacher is measured and logged)\n"
            "  --cache-top-k K (20) --cache-dir DIR (OUT_DIR/teacher-cache): built when missing, checked\n"
            "                           against the teacher and the pairs when present; a stopped\n"
            "                           build goes on from where it stopped\n"
            "model selection and the end:\n"
            "  --select rougeL|loss     best model by dev ROUGE-L of greedy outputs on the first\n"
            "                           --dev-rouge-examples (300) dev pairs (default), or dev loss\n"
            "  --final-finetune-epochs N  then fine-tune the best student on gold for N epochs into\n"
            "                           OUT_DIR/final (the paper's recipe ends with one; default 0)\n" TRAIN_CLI_OPTIONS_HELP);
}

typedef struct {
    TrainCli *c;
    const char *teacher_dir, *method, *keep_dec, *keep_enc;
    const char *pts[16];
    int n_pt;
    int no_gold, select_loss, final_epochs;
    long rouge_examples;
    DistillLossOptions lo;
    int kd_weight_set, ce_weight_set, objective_set, beta_set;
    const char *cache_kind, *cache_dir;
    int cache_top_k, att_set, pt_per_input;
} DistillArgs;

static int num_flag(const char *a, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "tutor: distill: %s needs a number in [%g, %g], not '%s'\n", a, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int distill_flags(void *ctx, int *i, int argc, char **argv) {
    DistillArgs *d = ctx;
    const char *a = argv[*i];
    static const char *const with_value[] = {"--teacher", "--method", "--keep-decoder-layers",
                                             "--keep-encoder-layers", "--pt", "--objective", "--tau", "--beta",
                                             "--skew", "--teacher-top-p", "--kd-weight", "--ce-weight",
                                             "--student-fraction", "--student-temperature", "--student-top-p",
                                             "--select", "--dev-rouge-examples", "--final-finetune-epochs",
                                             "--max-train-examples", "--max-dev-examples", "--teacher-cache",
                                             "--cache-top-k", "--cache-dir", "--mix-alpha", "--attention-weight",
                                             "--relation-heads", "--pt-per-input", NULL};
    if (!strcmp(a, "--no-gold")) return d->no_gold = 1, 1;
    if (!strcmp(a, "--autoscale")) return d->lo.autoscale = 1, 1;
    int known = 0;
    for (int k = 0; with_value[k]; k++) known |= !strcmp(a, with_value[k]);
    if (!known) return 0;
    if (!train_cli_need_arg("distill", *i, argc, a)) return -1;
    const char *v = argv[++*i];
    double x;
    if (!strcmp(a, "--teacher")) d->teacher_dir = v;
    else if (!strcmp(a, "--method")) {
        static const char *const methods[] = {"ft", "kd", "noisy-kd", "student-pt", "joint", "gkd", "minillm",
                                               "attention-kd", NULL};
        int ok = 0;
        for (int k = 0; methods[k]; k++) ok |= !strcmp(v, methods[k]);
        if (!ok) {
            fprintf(stderr, "tutor: distill: --method is ft, kd, noisy-kd, student-pt, joint, gkd, minillm or attention-kd, not '%s'\n", v);
            return -1;
        }
        d->method = v;
    } else if (!strcmp(a, "--teacher-cache")) {
        if (strcmp(v, "exact") && strcmp(v, "sparse")) {
            fprintf(stderr, "tutor: distill: --teacher-cache is exact or sparse, not '%s'\n", v);
            return -1;
        }
        d->cache_kind = v;
    } else if (!strcmp(a, "--cache-dir")) d->cache_dir = v;
    else if (!strcmp(a, "--attention-weight")) {
        if (num_flag(a, v, 0, 1000, &d->lo.w_att)) return -1;
        d->att_set = 1;
    } else if (!strcmp(a, "--relation-heads")) {
        if (num_flag(a, v, 1, 4096, &x) || x != floor(x)) return -1;
        d->lo.relation_heads = (int)x;
    } else if (!strcmp(a, "--mix-alpha")) {
        if (num_flag(a, v, 0, 1, &d->lo.mix_alpha)) return -1;
    } else if (!strcmp(a, "--pt-per-input")) {
        if (num_flag(a, v, 1, 1000000, &x) || x != floor(x)) return -1;
        d->pt_per_input = (int)x;
    } else if (!strcmp(a, "--cache-top-k")) {
        if (num_flag(a, v, 1, 100000, &x) || x != floor(x)) return -1;
        d->cache_top_k = (int)x;
    } else if (!strcmp(a, "--keep-decoder-layers")) d->keep_dec = v;
    else if (!strcmp(a, "--keep-encoder-layers")) d->keep_enc = v;
    else if (!strcmp(a, "--pt")) {
        if (d->n_pt == 16) {
            fprintf(stderr, "tutor: distill: at most 16 --pt files\n");
            return -1;
        }
        d->pts[d->n_pt++] = v;
    } else if (!strcmp(a, "--objective")) {
        int k = kd_kind_parse(v);
        if (k < 0) {
            fprintf(stderr, "tutor: distill: --objective is fkl, rkl, jsd, tvd, skl or srkl, not '%s'\n", v);
            return -1;
        }
        d->lo.obj.kind = (KdKind)k;
        d->objective_set = 1;
    } else if (!strcmp(a, "--tau")) {
        if (num_flag(a, v, 0.01, 100, &d->lo.obj.tau)) return -1;
    } else if (!strcmp(a, "--beta")) {
        if (num_flag(a, v, 0, 1, &d->lo.obj.beta)) return -1;
        d->beta_set = 1;
    } else if (!strcmp(a, "--skew")) {
        if (num_flag(a, v, 0, 0.999, &d->lo.obj.skew)) return -1;
    } else if (!strcmp(a, "--teacher-top-p")) {
        if (num_flag(a, v, 0.001, 1, &d->lo.obj.top_p)) return -1;
    } else if (!strcmp(a, "--kd-weight")) {
        if (num_flag(a, v, 0, 1000, &d->lo.w_kd)) return -1;
        d->kd_weight_set = 1;
    } else if (!strcmp(a, "--ce-weight")) {
        if (num_flag(a, v, 0, 1000, &d->lo.w_ce)) return -1;
        d->ce_weight_set = 1;
    } else if (!strcmp(a, "--student-fraction")) {
        if (num_flag(a, v, 0, 1, &d->lo.student_fraction)) return -1;
    } else if (!strcmp(a, "--student-temperature")) {
        if (num_flag(a, v, 0.01, 100, &d->lo.student_gen.temperature)) return -1;
    } else if (!strcmp(a, "--student-top-p")) {
        if (num_flag(a, v, 0.001, 1, &d->lo.student_gen.top_p)) return -1;
    } else if (!strcmp(a, "--select")) {
        if (!strcmp(v, "loss")) d->select_loss = 1;
        else if (!strcmp(v, "rougeL") || !strcmp(v, "rouge")) d->select_loss = 0;
        else {
            fprintf(stderr, "tutor: distill: --select is rougeL or loss, not '%s'\n", v);
            return -1;
        }
    } else if (!strcmp(a, "--dev-rouge-examples")) {
        if (num_flag(a, v, 1, 1e8, &x) || x != floor(x)) return -1;
        d->rouge_examples = (long)x;
    } else if (!strcmp(a, "--final-finetune-epochs")) {
        if (num_flag(a, v, 0, 1000, &x) || x != floor(x)) return -1;
        d->final_epochs = (int)x;
    } else if (!strcmp(a, "--max-train-examples") || !strcmp(a, "--max-dev-examples")) {
        if (num_flag(a, v, 0, 1e12, &x) || x != floor(x)) return -1;
        if (a[6] == 't') d->c->o.max_train_examples = (size_t)x;
        else d->c->o.max_dev_examples = (size_t)x;
    }
    return 1;
}

/* ---- ids of the gold data, to check pseudo-target files against ---- */

typedef struct {
    const char **id, **src;
    size_t cap;
} IdMap;

static uint64_t fnv(const char *s) { return tt_fnv1a(TT_FNV_OFFSET, s, strlen(s)); }

static int idmap_build(IdMap *m, const Dataset *ds) {
    m->cap = 16;
    while (m->cap < 2 * ds->n) m->cap *= 2;
    m->id = calloc(m->cap, sizeof(char *));
    m->src = calloc(m->cap, sizeof(char *));
    if (!m->id || !m->src) return tt_err("out of memory");
    for (size_t i = 0; i < ds->n; i++) {
        size_t h = fnv(ds->items[i].id) & (m->cap - 1);
        while (m->id[h] && strcmp(m->id[h], ds->items[i].id)) h = (h + 1) & (m->cap - 1);
        m->id[h] = ds->items[i].id;
        m->src[h] = ds->items[i].source;
    }
    return 0;
}

static const char *idmap_source(const IdMap *m, const char *id) {
    if (!m->cap) return NULL;
    size_t h = fnv(id) & (m->cap - 1);
    while (m->id[h]) {
        if (!strcmp(m->id[h], id)) return m->src[h];
        h = (h + 1) & (m->cap - 1);
    }
    return NULL;
}

static int write_gen_config(const Model *teacher, const char *teacher_dir, const Model *student, int max_target,
                            const char *out_dir) {
    GenConfig g;
    /* the student decodes as the teacher does (its tuned beams, no-repeat), with its own ids */
    if (gen_config_for_dir(&g, &teacher->cfg, teacher_dir)) return -1;
    GenConfig own;
    gen_config_from_model(&own, &student->cfg);
    g.decoder_start_id = own.decoder_start_id, g.bos_id = own.bos_id, g.eos_id = own.eos_id, g.pad_id = own.pad_id;
    g.max_new_tokens = max_target;
    g.vocab_limit = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", out_dir);
    return make_dirs(out_dir) || gen_config_save(&g, path) ? -1 : 0;
}

int cmd_distill(int argc, char **argv) {
    TrainCli c;
    memset(&c, 0, sizeof c);
    c.data_repeatable = 0;
    DistillArgs d;
    memset(&d, 0, sizeof d);
    d.c = &c;
    d.rouge_examples = 300;
    d.method = "kd";
    d.cache_top_k = 20;
    distill_loss_options_default(&d.lo);
    int pr = train_cli_parse(&c, "distill", argc, argv, usage, distill_flags, &d);
    if (pr) {
        train_cli_free(&c);
        return pr == 1 ? 0 : 2;
    }
    if (!d.teacher_dir || !c.o.out_dir || (!c.o.train_path && !d.n_pt)) {
        fprintf(stderr, "tutor: distill: --teacher, -o and --data or --pt are required (see tutor distill --help)\n");
        train_cli_free(&c);
        return 2;
    }
    if (d.no_gold && !d.n_pt) {
        fprintf(stderr, "tutor: distill: --no-gold needs --pt files to train on\n");
        train_cli_free(&c);
        return 2;
    }
    int scratch = c.init_dir || c.config_path || c.arch || c.d_model || c.layers || c.heads || c.ffn;
    if (scratch && (d.keep_dec || d.keep_enc)) {
        fprintf(stderr, "tutor: distill: --keep-*-layers shrink the teacher; they do not combine with --init or a "
                        "student from scratch\n");
        train_cli_free(&c);
        return 2;
    }
    /* the method's presets, under what was set explicitly */
    DistillLossOptions *lo = &d.lo;
    if (!strcmp(d.method, "ft")) {
        if (!d.kd_weight_set) lo->w_kd = 0;
        if (!d.ce_weight_set) lo->w_ce = 1;
    } else if (!strcmp(d.method, "noisy-kd")) lo->noisy = 1;
    else if (!strcmp(d.method, "student-pt")) lo->targets = TARGETS_STUDENT;
    else if (!strcmp(d.method, "joint")) lo->targets = TARGETS_JOINT;
    else if (!strcmp(d.method, "attention-kd")) {
        if (!d.att_set) lo->w_att = 1;
    } else if (!strcmp(d.method, "minillm")) {
        lo->targets = TARGETS_MINILLM;
        if (!d.kd_weight_set) lo->w_kd = 1;
        if (lo->w_kd == 0) {
            fprintf(stderr, "tutor: distill: --method minillm needs --kd-weight > 0\n");
            train_cli_free(&c);
            return 2;
        }
    } else if (!strcmp(d.method, "gkd")) {
        lo->targets = TARGETS_GKD;
        if (!d.objective_set) lo->obj.kind = KD_JSD;
    }
    lo->label_smoothing = 0;
    int rc = -1;
    Model *teacher = NULL, *student = NULL;
    PtFile *pfs = NULL;
    PairSet **ptsets = NULL;
    int *nk = NULL;
    PairSet gold = {0}, dev_ps = {0}, *merged = NULL;
    int K = 0;
    Dataset gold_ds = {0}, dev = {0};
    IdMap ids = {0};
    PtSource *src = NULL;
    DistillLoss *loss = NULL;
    Trainer *t = NULL;
    const char **refs = NULL;
    TeacherCache **caches = NULL;
    int n_caches = 0;
    char tpath[4200];
    if (same_file(c.o.out_dir, d.teacher_dir)) {
        tt_err("-o %s is the teacher: distillation would write over it", c.o.out_dir);
        goto done;
    }
    if (!c.o.tokenizer_path && !c.init_dir) {
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", d.teacher_dir);
        c.o.tokenizer_path = tpath;
    }
    {
        const char *inputs[20];
        int n = 0;
        for (int i = 0; i < d.n_pt; i++) inputs[n++] = d.pts[i];
        if (check_not_an_input(c.o.out_dir, inputs, n)) goto done;
    }
    if (train_cli_check_output(&c) || train_cli_tokenizer(&c)) goto done;
    teacher = model_load(d.teacher_dir);
    if (!teacher) goto done;
    if (teacher->cfg.vocab_size < tokenizer_vocab_size(c.tok)) {
        tt_err("%s: the teacher's vocabulary (%d) is smaller than the tokenizer's (%d)", d.teacher_dir,
               teacher->cfg.vocab_size, tokenizer_vocab_size(c.tok));
        goto done;
    }
    if (c.init_dir) {
        /* a student from a directory must share the teacher's tokenizer */
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", d.teacher_dir);
        Tokenizer *tt = tokenizer_load(tpath);
        int bad = !tt || tokenizers_check_same(tt, d.teacher_dir, c.tok, c.init_dir);
        tokenizer_free(tt);
        if (bad) goto done;
    }
    if (train_cli_options(&c)) goto done;
    int src_set = c.o.max_source_tokens > 0, tgt_set = c.o.max_target_tokens > 0;
    if (c.o.train_path && train_cli_auto_lengths(&c)) goto done;
    if (c.o.max_source_tokens <= 0) c.o.max_source_tokens = 256;
    if (c.o.max_target_tokens <= 0) c.o.max_target_tokens = 64;
    {
        /* budgets nobody set stay within the teacher's positions */
        int pos = teacher->cfg.max_positions;
        if (!model_is_encdec(&teacher->cfg)) pos = pos / 2;
        if (!src_set && c.o.max_source_tokens > pos) {
            tt_info("source budget %d cut to the teacher's %d positions", c.o.max_source_tokens, pos);
            c.o.max_source_tokens = pos;
        }
        if (!tgt_set && c.o.max_target_tokens > pos) c.o.max_target_tokens = pos;
    }
    if (scratch) {
        if (train_cli_model(&c, 0)) goto done;
        student = c.m;
        c.m = NULL;
    } else {
        int dec[MODEL_MAX_LAYERS], enc[MODEL_MAX_LAYERS];
        int nd = parse_layer_list(d.keep_dec ? d.keep_dec : "0,-1", teacher->cfg.dec_layers, dec, MODEL_MAX_LAYERS);
        if (nd < 0) goto done;
        int ne = 0;
        if (d.keep_enc) {
            if (!model_is_encdec(&teacher->cfg)) {
                tt_err("--keep-encoder-layers: the teacher is decoder-only");
                goto done;
            }
            ne = parse_layer_list(d.keep_enc, teacher->cfg.enc_layers, enc, MODEL_MAX_LAYERS);
            if (ne < 0) goto done;
        }
        student = model_shrink(teacher, d.keep_enc ? enc : NULL, ne, dec, nd);
        if (!student) goto done;
        if (c.dropout >= 0) student->cfg.dropout = (float)c.dropout;
        tt_info("student: the teacher with decoder layers %s and %s encoder layers (%zu parameters, teacher %zu)",
                d.keep_dec ? d.keep_dec : "0,-1", d.keep_enc ? d.keep_enc : "all", student->n_params,
                teacher->n_params);
    }
    int need = model_is_encdec(&student->cfg) ? (c.o.max_source_tokens > c.o.max_target_tokens ? c.o.max_source_tokens
                                                                                            : c.o.max_target_tokens)
                                              : c.o.max_source_tokens + c.o.max_target_tokens;
    if (need > student->cfg.max_positions || need > teacher->cfg.max_positions) {
        tt_err("token budgets need %d positions; the student has %d and the teacher %d", need,
               student->cfg.max_positions, teacher->cfg.max_positions);
        goto done;
    }
    /* gold pairs */
    if (c.o.train_path) {
        if (dataset_load_jsonl(&gold_ds, c.o.train_path, &c.o.jsonl, c.o.max_train_examples)) goto done;
        if (idmap_build(&ids, &gold_ds)) goto done;
        if (!d.no_gold && pairset_build(&gold, &gold_ds, c.tok, c.o.max_source_tokens, c.o.max_target_tokens, 0))
            goto done;
    }
    /* pseudo-targets: each file tokenised into K_f sets; set k of the run is every file's
     * (k mod K_f)-th, concatenated */
    if (d.n_pt) {
        pfs = calloc((size_t)d.n_pt, sizeof *pfs);
        ptsets = calloc((size_t)d.n_pt, sizeof *ptsets);
        nk = calloc((size_t)d.n_pt, sizeof *nk);
        if (!pfs || !ptsets || !nk) {
            tt_err("out of memory");
            goto done;
        }
        size_t n_pairs = 0;
        for (int f = 0; f < d.n_pt; f++) {
            if (ptfile_load(&pfs[f], d.pts[f], c.o.max_train_examples)) goto done;
            ptfile_keep_first(&pfs[f], d.pt_per_input);
            for (size_t i = 0; i < pfs[f].n; i++) {
                const char *gs = idmap_source(&ids, pfs[f].items[i].id);
                if (gs && strcmp(gs, pfs[f].items[i].source)) {
                    tt_err("%s:%zu: id \"%s\" has another source in %s: a pseudo-target file made for other inputs",
                           d.pts[f], pfs[f].items[i].line, pfs[f].items[i].id, c.o.train_path);
                    goto done;
                }
            }
            if (ptfile_tokenise(&pfs[f], c.tok, c.o.max_source_tokens, c.o.max_target_tokens, &ptsets[f], &nk[f]))
                goto done;
            if (nk[f] > K) K = nk[f];
            n_pairs += pfs[f].n;
        }
        merged = calloc((size_t)K, sizeof *merged);
        if (!merged) {
            tt_err("out of memory");
            goto done;
        }
        for (int k = 0; k < K; k++) {
            PairSet acc = {0};
            for (int f = 0; f < d.n_pt; f++) {
                PairSet next;
                if (pairset_concat_view(&next, &acc, &ptsets[f][k % nk[f]])) goto done;
                free(acc.items);
                acc = next;
            }
            merged[k] = acc;
        }
        tt_info("pseudo-targets: %zu inputs from %d file(s), %d per input (epoch e uses the (e mod %d)-th)", n_pairs,
                d.n_pt, K, K);
    }
    src = pt_source_new(gold.n ? &gold : NULL, merged, K, &student->cfg, c.o.batch_tokens, c.o.max_batch,
                        c.o.max_source_tokens, c.o.max_target_tokens, c.o.seed);
    if (!src) goto done;
    BatchSource bs = pt_source_iface(src);
    int mB, mS, mT;
    bs.max_shape(bs.ctx, &mB, &mS, &mT);
    if (d.cache_kind && dist_size() > 1) {
        tt_err("--teacher-cache is not supported under mpirun (each rank would build the whole cache): run "
               "without it (the live teacher, data parallel), or with one process");
        goto done;
    }
    if (d.cache_kind) {
        if (lo->w_kd == 0) {
            tt_err("--teacher-cache: fine-tuning (--method ft) uses no teacher signal");
            goto done;
        }
        if (lo->noisy) {
            tt_err("--teacher-cache: noisy KD draws new teacher dropout every step; a cache cannot hold it");
            goto done;
        }
        char dirbuf[4200];
        const char *cdir = d.cache_dir;
        if (!cdir) {
            snprintf(dirbuf, sizeof dirbuf, "%s/teacher-cache", c.o.out_dir);
            cdir = dirbuf;
        }
        if (make_dirs(cdir)) goto done;
        int kind = !strcmp(d.cache_kind, "exact") ? CACHE_EXACT : CACHE_SPARSE;
        int n_sets = K > 0 ? K : 1;
        caches = calloc((size_t)n_sets, sizeof *caches);
        if (!caches) {
            tt_err("out of memory");
            goto done;
        }
        for (int k = 0; k < n_sets; k++) {
            char path[4400];
            if (kind == CACHE_EXACT) snprintf(path, sizeof path, "%s/exact-%d.bin", cdir, k);
            else snprintf(path, sizeof path, "%s/sparse-top%d-%d.bin", cdir, d.cache_top_k, k);
            const PairSet *set = pt_source_set(src, k);
            if (!file_exists(path) &&
                teacher_cache_build(path, teacher, set, kind, d.cache_top_k, c.o.batch_tokens, c.o.max_batch))
                goto done;
            caches[k] = teacher_cache_open(path, teacher, set);
            if (!caches[k]) goto done;
            n_caches++;
        }
        if (kind == CACHE_SPARSE) {
            double full, bucket, trunc;
            long ntok;
            if (teacher_cache_sparse_bias(caches[0], teacher, student, pt_source_set(src, 0), 200, &full, &bucket,
                                          &trunc, &ntok))
                goto done;
            tt_info("sparse teacher cache (top %d) against the live teacher on %ld tokens of the first 200 pairs, "
                    "with the initial student: KL %.5f (full), %.5f (top-k + rest bucket: bias %+.5f, %+.2f%%), "
                    "%.5f (truncated top-k without the bucket: bias %+.5f)",
                    d.cache_top_k, ntok, full, bucket, bucket - full, full > 0 ? 100 * (bucket - full) / full : 0,
                    trunc, trunc - full);
        }
        lo->caches = caches;
        lo->n_caches = n_caches;
        lo->source = src;
    }
    lo->teacher = teacher;
    lo->seed = c.o.seed;
    lo->max_source_tokens = c.o.max_source_tokens;
    lo->max_target_tokens = c.o.max_target_tokens;
    gen_config_limit_to_tokenizer(&lo->student_gen, &student->cfg, c.tok);
    /* the teacher's arena for the largest batch, once */
    if (model_reserve(teacher, mB, mS, mT, lo->noisy ? FWD_NOISY : FWD_INFER)) goto done;
    /* the most sequences a batch can hold: short ones pack many under the token budget */
    int loss_B = c.o.max_batch > 0 ? c.o.max_batch : c.o.batch_tokens;
    if (loss_B > c.o.batch_tokens / 2) loss_B = c.o.batch_tokens / 2 > 0 ? c.o.batch_tokens / 2 : 1;
    if (loss_B < mB) loss_B = mB;
    /* the student's generator (student PTs) sizes its per-thread state now: the training
     * threads must be set before it is made */
    tt_set_threads(c.o.threads);
    loss = distill_loss_new(lo, student, loss_B, mS, mT);
    if (!loss) goto done;
    if (write_gen_config(teacher, d.teacher_dir, student, c.o.max_target_tokens, c.o.out_dir)) goto done;
    TrainParts parts = {.source = bs, .loss = distill_loss_iface(loss), .tok = c.tok, .what = "distillation"};
    DevLossEval de = {&dev_ps, c.o.batch_tokens, c.o.max_batch};
    DevRougeEval re;
    if (c.o.dev_path) {
        if (dataset_load_jsonl(&dev, c.o.dev_path, &c.o.jsonl, c.o.max_dev_examples) ||
            pairset_build(&dev_ps, &dev, c.tok, c.o.max_source_tokens, c.o.max_target_tokens, 0))
            goto done;
        if (d.select_loss) {
            parts.eval = dev_loss_eval_iface(&de);
        } else {
            refs = malloc((dev.n ? dev.n : 1) * sizeof *refs);
            if (!refs) {
                tt_err("out of memory");
                goto done;
            }
            for (size_t i = 0; i < dev.n; i++) refs[i] = dev.items[i].target;
            re = (DevRougeEval){.dev = &dev_ps, .refs = refs, .n_rouge = (size_t)d.rouge_examples, .tok = c.tok,
                                .batch_size = 32, .batch_tokens = c.o.batch_tokens, .max_batch = c.o.max_batch};
            gen_config_from_model(&re.gen, &student->cfg);
            re.gen.max_new_tokens = c.o.max_target_tokens;
            gen_config_limit_to_tokenizer(&re.gen, &student->cfg, c.tok);
            parts.eval = dev_rouge_eval_iface(&re);
        }
    }
    t = trainer_open(student, &c.o, &parts);
    if (!t) goto done;
    tt_info("distillation: method %s, objective %s (tau %g), kd weight %g, ce weight %g; %zu gold pairs%s; "
            "%zu student parameters; selection by %s",
            d.method, lo->w_kd > 0 ? kd_kind_name(lo->obj.kind) : "none", lo->obj.tau, lo->w_kd, lo->w_ce, gold.n,
            d.no_gold ? " (--no-gold)" : "", student->n_params,
            parts.eval.evaluate ? parts.eval.metric : "none (the last model)");
    rc = trainer_run(t);
    trainer_close(t);
    t = NULL;
    if (rc == 0 && d.final_epochs > 0) {
        if (!c.o.train_path) {
            tt_err("--final-finetune-epochs needs --data (gold pairs)");
            rc = -1;
            goto done;
        }
        /* the best student, fine-tuned on gold with cross-entropy */
        Model *best = model_load(c.o.out_dir);
        if (!best) {
            rc = -1;
            goto done;
        }
        char fdir[4200];
        snprintf(fdir, sizeof fdir, "%s/final", c.o.out_dir);
        TrainOptions fo = c.o;
        fo.out_dir = fdir;
        fo.max_epochs = d.final_epochs;
        fo.max_steps = 100000000;
        fo.schedule.warmup_steps = 0;
        fo.label_smoothing = 0;
        tt_info("final fine-tune on gold: %d epoch(s) into %s", d.final_epochs, fdir);
        if (write_gen_config(teacher, d.teacher_dir, best, c.o.max_target_tokens, fdir)) rc = -1;
        else rc = train_run_with(best, c.tok, &fo, parts.eval.evaluate ? &parts.eval : NULL);
        model_free(best);
    }
done:
    if (rc < 0) fprintf(stderr, "tutor: %s\n", tt_errmsg());
    trainer_close(t);
    distill_loss_free(loss);
    for (int k = 0; k < n_caches; k++) teacher_cache_free(caches[k]);
    free(caches);
    pt_source_free(src);
    if (merged)
        for (int k = 0; k < K; k++) free(merged[k].items);
    free(merged);
    for (int f = 0; f < d.n_pt && pfs; f++) {
        if (ptsets && ptsets[f])
            for (int k = 0; k < nk[f]; k++) pairset_free(&ptsets[f][k]);
        if (ptsets) free(ptsets[f]);
        ptfile_free(&pfs[f]);
    }
    free(pfs);
    free(ptsets);
    free(nk);
    free(ids.id);
    free(ids.src);
    free(refs);
    pairset_free(&gold);
    pairset_free(&dev_ps);
    dataset_free(&gold_ds);
    dataset_free(&dev);
    model_free(student);
    model_free(teacher);
    train_cli_free(&c);
    return rc < 0 ? 1 : rc == 1 ? 130 : 0;
}
