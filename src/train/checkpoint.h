/* checkpoint.h: the resumable state of a training run (see checkpoint.c). */
#ifndef TUTOR_CHECKPOINT_H
#define TUTOR_CHECKPOINT_H

#include "tutor/data.h"
#include "tutor/optim.h"
#include "tutor/tokenizer.h"

typedef struct {
    long step;          /* optimizer updates done */
    long tokens_seen;   /* target tokens trained on */
    double elapsed_s;   /* training wall time, summed over resumes */
    double best_dev;    /* best dev loss so far (INFINITY: none) */
    long best_step;
    int bad_evals;      /* evaluations since the best one */
} TrainState;

/* components: a JSON object of the run's components' states ("source", "loss", "extra"),
 * merged into trainer_state.json (borrowed). */
int checkpoint_save(const char *out_dir, const Model *m, const Tokenizer *tok, const AdamW *opt,
                    const TrainState *st, const struct cJSON *components, const char *options_json);
int checkpoint_exists(const char *out_dir);
/* Restores parameters, moments and state from out_dir's latest slot; *state gets the whole
 * trainer_state.json (the caller restores its components from it and frees it). */
int checkpoint_load(const char *out_dir, Model *m, AdamW *opt, TrainState *st, struct cJSON **state);

#endif
