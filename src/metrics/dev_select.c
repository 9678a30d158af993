/* dev_select.c: dev ROUGE-L as the training loop's evaluator, so that a run keeps the model
 * that generates best, as the field selects (the paper selects by the task metric), while
 * train itself never calls decode or metrics. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "metrics/evaluate_internal.h"
#include "tutor/evaluate.h"

int rouge_of_outputs(Model *m, const Tokenizer *tok, const PairSet *ps, const char *const *refs, size_t n,
                     const GenConfig *gc, int batch, double *rougeL, double *seconds) {
    GenConfig g = *gc;
    g.num_return_sequences = 1;
    if (batch < 1) batch = 32;
    if (n > ps->n) n = ps->n;
    gen_config_limit_to_tokenizer(&g, &m->cfg, tok);
    Generator *gen = generator_new(m, &g, batch, pairset_max_source(ps, n));
    if (!gen) return -1;
    int **tokens = calloc(n ? n : 1, sizeof *tokens);
    int *lens = calloc(n ? n : 1, sizeof *lens);
    char **hyps = calloc(n ? n : 1, sizeof *hyps);
    int rc = tokens && lens && hyps ? 0 : tt_err("out of memory");
    long total = 0;
    double secs = 0;
    if (!rc) rc = eval_generate_pairs(gen, ps, n, batch, tokens, lens, &total, &secs, NULL, NULL, NULL);
    for (size_t i = 0; i < n && !rc; i++) {
        hyps[i] = tokenizer_decode(tok, tokens[i], (size_t)lens[i], 1, NULL);
        if (!hyps[i]) rc = tt_err_wrap("decoding output %zu", i + 1);
    }
    RougeScores mean;
    const char *const *refsets[1] = {refs};
    if (!rc) rc = rouge_corpus((const char *const *)hyps, refsets, 1, n, 0, NULL, &mean);
    if (!rc) *rougeL = 100.0 * mean.rougeL.fmeasure;
    if (seconds) *seconds = secs;
    for (size_t i = 0; i < n; i++) {
        if (tokens) free(tokens[i]);
        if (hyps) free(hyps[i]);
    }
    free(tokens);
    free(lens);
    free(hyps);
    generator_free(gen);
    return rc;
}

static int dev_rouge_evaluate(void *ctx, Model *m, double *value, cJSON *line) {
    DevRougeEval *e = ctx;
    long n_tok;
    double loss = evaluate_loss(m, e->dev, e->batch_tokens, e->max_batch, &n_tok);
    if (n_tok < 0) return tt_err_wrap("dev loss");
    if (!isfinite(loss)) return tt_err("dev loss is not finite");
    cJSON_AddNumberToObject(line, "dev_loss", loss);
    size_t n = e->n_rouge < e->dev->n ? e->n_rouge : e->dev->n;
    double rl, seconds;
    if (rouge_of_outputs(m, e->tok, e->dev, e->refs, n, &e->gen, e->batch_size, &rl, &seconds)) return -1;
    cJSON_AddNumberToObject(line, "dev_rougeL", rl);
    cJSON_AddNumberToObject(line, "dev_rouge_examples", (double)n);
    cJSON_AddNumberToObject(line, "dev_gen_s", seconds);
    /* the selection value: ROUGE-L, ties (all zero early in training) broken by dev loss */
    *value = rl - 1e-4 * loss;
    e->last_seconds = seconds;
    tt_info("dev loss %.4f, dev ROUGE-L %.2f on %zu examples (%.1f s to generate)", loss, rl, n, seconds);
    return 0;
}

Evaluator dev_rouge_eval_iface(DevRougeEval *e) {
    return (Evaluator){.ctx = e, .metric = "dev_rougeL", .higher_is_better = 1, .evaluate = dev_rouge_evaluate};
}
