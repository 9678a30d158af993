/* cmd_pretrain.c: `tutor pretrain`: self-supervised pretraining of a model on unlabeled
 * text (text infilling, gap sentences, or a mix) on the open training loop; the result is a
 * model directory that `tutor train --init` fine-tunes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"
#include "tutor/cli.h"
#include "tutor/pretrain.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tutor pretrain --tokenizer TOK --data FILE [--data FILE ...] -o OUT_DIR [options]\n\n"
            "Pretrains a model on unlabeled text by denoising. The text is the source field of JSONL\n"
            "files (targets are ignored) or the lines of plain-text files (one document per line).\n"
            "OUT_DIR receives the best model by held-out denoising loss (a Hugging Face model\n"
            "directory with a tokenizer.json that has <mask>), metrics.jsonl and checkpoints for\n"
            "--resume; `tutor train --init OUT_DIR` fine-tunes it.\n\n"
            "objective:\n"
            "  --objective O          infill (BART: Poisson spans of words -> one <mask> each, sentences\n"
            "                         permuted), gap-sentences (PEGASUS: the sentences most like the\n"
            "                         rest become the target, each masked in the source), or mix (each\n"
            "                         document, each epoch, one of the two; default)\n"
            "  --mask-ratio X (0.3) --poisson-lambda X (3) --no-permute\n"
            "  --gap-ratio X (0.3)    share of sentences removed (at least one, never all)\n"
            "  --mix-gap-prob X (0.5)\n"
            "  --heldout N            documents held out for the denoising dev loss (default 1%%,\n"
            "                         between 50 and 1000)\n"
            "  --preview N            print the first N training documents as noised (epoch 0) and exit\n" TRAIN_CLI_MODEL_HELP
            "data:\n"
            "  --tokenizer FILE       tokenizer.json; <mask> is added when it lacks one\n"
            "  --data FILE            text to pretrain on (repeatable)\n"
            "  --source-field NAME    the JSONL field holding the text (source)\n"
            "  --skip-bad             skip malformed lines (counted) instead of stopping\n"
            "  --max-source-tokens N  tokens per document (default: the 95th percentile of the\n"
            "                         documents' lengths, at most 512); longer ones are cut\n" TRAIN_CLI_OPTIONS_HELP);
}

typedef struct {
    TrainCli *c;
    NoiseOptions no;
    long heldout;
    long preview;
} PretrainArgs;

static int num_arg(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (*end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "tutor: pretrain: %s needs a number in [%g, %g], not '%s'\n", flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int pretrain_flags(void *ctx, int *i, int argc, char **argv) {
    PretrainArgs *p = ctx;
    const char *a = argv[*i];
    if (!strcmp(a, "--no-permute")) {
        p->no.permute_sentences = 0;
        return 1;
    }
    const char *flags[] = {"--objective", "--mask-ratio", "--poisson-lambda", "--gap-ratio", "--mix-gap-prob",
                           "--heldout", "--preview", NULL};
    int k = 0;
    for (; flags[k]; k++)
        if (!strcmp(a, flags[k])) break;
    if (!flags[k]) return 0;
    if (!train_cli_need_arg("pretrain", *i, argc, a)) return -1;
    const char *v = argv[++*i];
    double x = 0;
    switch (k) {
    case 0:
        if (noise_objective_parse(v, &p->no.objective)) {
            fprintf(stderr, "tutor: pretrain: --objective is infill, gap-sentences or mix, not '%s'\n", v);
            return -1;
        }
        return 1;
    case 1:
        if (num_arg(a, v, 0, 1, &x)) return -1;
        p->no.mask_ratio = x;
        return 1;
    case 2:
        if (num_arg(a, v, 0, 64, &x)) return -1;
        p->no.poisson_lambda = x;
        return 1;
    case 3:
        if (num_arg(a, v, 0, 1, &x)) return -1;
        p->no.gap_ratio = x;
        return 1;
    case 4:
        if (num_arg(a, v, 0, 1, &x)) return -1;
        p->no.mix_gap_prob = x;
        return 1;
    default:
        if (num_arg(a, v, 0, 1e9, &x) || x != floor(x)) {
            if (x != floor(x)) fprintf(stderr, "tutor: pretrain: %s needs a whole number\n", a);
            return -1;
        }
        if (k == 5) p->heldout = (long)x;
        else p->preview = (long)x;
        return 1;
    }
}

int cmd_pretrain(int argc, char **argv) {
    TrainCli c;
    memset(&c, 0, sizeof c);
    c.data_repeatable = 1;
    PretrainArgs pa = {.c = &c, .heldout = -1};
    noise_options_default(&pa.no);
    pa.no.objective = NOISE_MIX;
    int pr = train_cli_parse(&c, "pretrain", argc, argv, usage, pretrain_flags, &pa);
    if (pr) {
        train_cli_free(&c);
        return pr == 1 ? 0 : 2;
    }
    if (!c.n_data || !c.o.out_dir || (!c.o.tokenizer_path && !c.init_dir)) {
        fprintf(stderr, "tutor: pretrain: --tokenizer, --data and -o are required (see tutor pretrain --help)\n");
        train_cli_free(&c);
        return 2;
    }
    if (c.o.dev_path) {
        fprintf(stderr, "tutor: pretrain: no --dev: the denoising loss is measured on held-out documents "
                        "of --data (--heldout)\n");
        train_cli_free(&c);
        return 2;
    }
    int rc = -1;
    PairSet docs = {0}, train = {0}, held = {0}, held_pairs = {0};
    TokenClasses tc = {0};
    DenoiseSource *src = NULL;
    Trainer *t = NULL;
    if (train_cli_check_output(&c) || train_cli_tokenizer(&c)) goto done;
    {
        int mask_id;
        Tokenizer *with = tokenizer_add_special(c.tok, TOKENIZER_MASK, 1, &mask_id);
        if (!with) goto done;
        if (tokenizer_vocab_size(with) != tokenizer_vocab_size(c.tok))
            tt_info("added %s to the tokenizer as id %d", TOKENIZER_MASK, mask_id);
        tokenizer_free(c.tok);
        c.tok = with;
        /* the documents at full length first: the budget comes from their lengths */
        size_t dropped = 0;
        if (pretrain_docs_load(&docs, c.data, c.n_data, &c.o.jsonl, c.tok, 1024, &dropped)) goto done;
        int *len = malloc(docs.n * sizeof *len);
        if (!len) {
            tt_err("out of memory");
            goto done;
        }
        for (size_t i = 0; i < docs.n; i++) len[i] = docs.items[i].src_len + 2;
        int p95 = train_cli_length_quantile(len, docs.n, 0.95);
        free(len);
        /* the config file or a flag may set it; otherwise the data decides */
        if (train_cli_options(&c)) goto done;
        if (c.o.max_source_tokens <= 0) {
            int budget = p95;
            if (budget > 512) budget = 512;
            if (budget < 16) budget = 16;
            c.o.max_source_tokens = budget;
        }
        if (train_cli_model(&c, 0)) goto done;
        int budget = c.o.max_source_tokens;
        if (c.o.max_target_tokens < budget) c.o.max_target_tokens = budget;
        size_t cut = 0;
        for (size_t i = 0; i < docs.n; i++)
            if (docs.items[i].src_len > budget - 2) docs.items[i].src_len = budget - 2, cut++;
        if (!model_is_encdec(&c.m->cfg) && c.m->cfg.max_positions < 2 * budget) {
            tt_err("a decoder-only model reads source and target in one sequence: %d positions needed, the "
                   "model has %d",
                   2 * budget, c.m->cfg.max_positions);
            goto done;
        }
        if (model_is_encdec(&c.m->cfg) && c.m->cfg.max_positions < budget) {
            tt_err("documents of %d tokens need %d positions; the model has %d", budget, budget,
                   c.m->cfg.max_positions);
            goto done;
        }
        if (c.m->cfg.vocab_size < tokenizer_vocab_size(c.tok)) {
            tt_err("the model's vocabulary (%d) has no room for %s (the tokenizer has %d ids)", c.m->cfg.vocab_size,
                   TOKENIZER_MASK, tokenizer_vocab_size(c.tok));
            goto done;
        }
        /* held-out documents: every k-th, so they are spread over the files */
        long h = pa.heldout >= 0 ? pa.heldout : (long)(docs.n / 100);
        if (pa.heldout < 0) h = h < 50 ? 50 : h > 1000 ? 1000 : h;
        if (h >= (long)docs.n) h = (long)docs.n / 2;
        size_t step = h > 0 ? docs.n / (size_t)h : 0;
        train.items = calloc(docs.n, sizeof *train.items);
        held.items = calloc((size_t)h + 1, sizeof *held.items);
        if (!train.items || !held.items) {
            tt_err("out of memory");
            goto done;
        }
        for (size_t i = 0; i < docs.n; i++) {
            if (step && i % step == step - 1 && held.n < (size_t)h) held.items[held.n++] = docs.items[i];
            else train.items[train.n++] = docs.items[i];
        }
        if (token_classes_init(&tc, c.tok, mask_id)) goto done;
        if (held.n && denoise_fixed_pairs(&held_pairs, &held, &tc, &pa.no, c.tok, c.o.seed ^ 0x5eed)) goto done;
        if (pa.preview > 0) {
            PairSet shown = {0};
            PairSet first = train;
            if ((size_t)pa.preview < first.n) first.n = (size_t)pa.preview;
            if (denoise_fixed_pairs(&shown, &first, &tc, &pa.no, c.tok, c.o.seed)) goto done;
            for (size_t i = 0; i < shown.n; i++) {
                char *a = tokenizer_decode(c.tok, shown.items[i].src, (size_t)shown.items[i].src_len, 0, NULL);
                char *b = tokenizer_decode(c.tok, shown.items[i].tgt, (size_t)shown.items[i].tgt_len, 0, NULL);
                printf("source: %s\ntarget: %s\n\n", a ? a : "?", b ? b : "?");
                free(a);
                free(b);
            }
            pairset_free(&shown);
            rc = 0;
            goto done;
        }
        src = denoise_source_new(&train, &tc, &pa.no, &c.m->cfg, c.o.batch_tokens, c.o.max_batch, budget,
                                 c.o.seed);
        if (!src || train_cli_gen_config(&c)) goto done;
        tt_info("pretraining (%s) on %zu documents (%zu cut to %d tokens, %zu too short), %zu held out; %zu "
                "parameters; %d threads",
                noise_objective_name(pa.no.objective), train.n, cut, budget, dropped, held.n, c.m->n_params,
                c.o.threads);
        XentLoss xl = {c.o.label_smoothing};
        DevLossEval de = {&held_pairs, c.o.batch_tokens, c.o.max_batch};
        TrainParts parts = {.source = denoise_source_iface(src), .loss = xent_loss_iface(&xl), .tok = c.tok,
                            .what = "pretraining"};
        if (held_pairs.n) parts.eval = dev_loss_eval_iface(&de);
        t = trainer_open(c.m, &c.o, &parts);
        if (!t) goto done;
        rc = trainer_run(t);
    }
done:
    if (rc < 0) fprintf(stderr, "tutor: %s\n", tt_errmsg());
    trainer_close(t);
    denoise_source_free(src);
    token_classes_free(&tc);
    free(train.items);
    free(held.items);
    pairset_free(&held_pairs);
    pairset_free(&docs);
    train_cli_free(&c);
    return rc < 0 ? 1 : rc == 1 ? 130 : 0;
}
