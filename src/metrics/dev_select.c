/* dev_select.c: dev ROUGE-L as the training loop's evaluator, so that a run keeps the model
 * that generates best, as the field selects (the paper selects by the task metric), while
 * train itself never calls decode or metrics. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "metrics/evaluate_internal.h"
#include "tutor/evaluate.h"

static int dev_rouge_evaluate(void *ctx, Model *m, double *value, cJSON *line) {
    DevRougeEval *e = ctx;
    double loss = evaluate_loss(m, e->dev, e->batch_tokens, e->max_batch, NULL);
    if (!isfinite(loss)) return tt_err("dev loss is not finite");
    cJSON_AddNumberToObject(line, "dev_loss", loss);
    size_t n = e->n_rouge < e->dev->n ? e->n_rouge : e->dev->n;
    GenConfig g = e->gen;
    g.num_return_sequences = 1;
    int batch = e->batch_size > 0 ? e->batch_size : 32;
    Generator *gen = generator_new(m, &g, batch, pairset_max_source(e->dev, n));
    if (!gen) return -1;
    int **tokens = calloc(n ? n : 1, sizeof *tokens);
    int *lens = calloc(n ? n : 1, sizeof *lens);
    char **hyps = calloc(n ? n : 1, sizeof *hyps);
    const char **refs = calloc(n ? n : 1, sizeof *refs);
    int rc = tokens && lens && hyps && refs ? 0 : tt_err("out of memory");
    long total = 0;
    double seconds = 0;
    if (!rc) rc = eval_generate_pairs(gen, e->dev, n, batch, tokens, lens, &total, &seconds, NULL, NULL, NULL);
    for (size_t i = 0; i < n && !rc; i++) {
        hyps[i] = tokenizer_decode(e->tok, tokens[i], (size_t)lens[i], 1, NULL);
        refs[i] = e->refs[i];
        if (!hyps[i]) rc = tt_err_wrap("decoding dev output %zu", i + 1);
    }
    RougeScores mean;
    const char *const *refsets[1] = {refs};
    if (!rc) rc = rouge_corpus((const char *const *)hyps, refsets, 1, n, 0, NULL, &mean);
    if (!rc) {
        double rl = 100.0 * mean.rougeL.fmeasure;
        cJSON_AddNumberToObject(line, "dev_rougeL", rl);
        /* the selection value: ROUGE-L, ties (all zero early in training) broken by dev loss */
        *value = rl - 1e-4 * loss;
        cJSON_AddNumberToObject(line, "dev_rouge_examples", (double)n);
        cJSON_AddNumberToObject(line, "dev_gen_s", seconds);
        tt_info("dev loss %.4f, dev ROUGE-L %.2f on %zu examples (%.1f s to generate)", loss, rl, n, seconds);
    }
    e->last_seconds = seconds;
    for (size_t i = 0; i < n; i++) {
        if (tokens) free(tokens[i]);
        if (hyps) free(hyps[i]);
    }
    free(tokens);
    free(lens);
    free(hyps);
    free(refs);
    generator_free(gen);
    return rc;
}

Evaluator dev_rouge_eval_iface(DevRougeEval *e) {
    return (Evaluator){.ctx = e, .metric = "dev_rougeL", .higher_is_better = 1, .evaluate = dev_rouge_evaluate};
}
