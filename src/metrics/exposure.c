/* exposure.c: exposure bias measured as accumulated error against an oracle (after Arora et
 * al. 2022, "Why Exposure Bias Matters"): per-token KL(oracle || model) on the model's own
 * prefixes versus on reference prefixes, both models teacher-forced on the same batches,
 * KL in double from log-softmax. Also the per-token NLL that test cross-entropy needs. */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>

#include "tutor/evaluate.h"

extern char **environ;

long pairset_target_tokens(const PairSet *ps) {
    long n = 0;
    for (size_t i = 0; i < ps->n; i++) n += ps->items[i].tgt_len;
    return n;
}

int pairset_with_targets(PairSet *out, const PairSet *src, const int *const *tokens, const int *n_tokens) {
    memset(out, 0, sizeof *out);
    size_t total = 0;
    for (size_t i = 0; i < src->n; i++) {
        if (n_tokens[i] < 0) return tt_err("pairset_with_targets: negative length for pair %zu", i);
        total += (size_t)src->items[i].src_len + (size_t)n_tokens[i];
    }
    out->items = calloc(src->n ? src->n : 1, sizeof *out->items);
    out->pool = malloc((total ? total : 1) * sizeof(int));
    if (!out->items || !out->pool) {
        pairset_free(out);
        return tt_err("out of memory copying %zu pairs", src->n);
    }
    size_t used = 0;
    for (size_t i = 0; i < src->n; i++) {
        TokPair *p = &out->items[i];
        p->src = out->pool + used;
        p->src_len = src->items[i].src_len;
        memcpy(p->src, src->items[i].src, sizeof(int) * (size_t)p->src_len);
        used += (size_t)p->src_len;
        p->tgt = out->pool + used;
        p->tgt_len = n_tokens[i];
        if (n_tokens[i]) memcpy(p->tgt, tokens[i], sizeof(int) * (size_t)n_tokens[i]);
        used += (size_t)n_tokens[i];
    }
    out->n = src->n;
    return 0;
}

void exposure_accumulate(const double *per_token, const PairSet *ps, int max_len, double *acc, long *count) {
    for (int l = 0; l < max_len; l++) acc[l] = 0, count[l] = 0;
    long pos = 0;
    for (size_t i = 0; i < ps->n; i++) {
        int len = ps->items[i].tgt_len;
        double sum = 0;
        for (int t = 0; t < len; t++) {
            sum += per_token[pos + t];
            if (t < max_len) {
                acc[t] += sum;
                count[t]++;
            }
        }
        pos += len;
    }
    for (int l = 0; l < max_len; l++) acc[l] = count[l] ? acc[l] / (double)count[l] : NAN;
}

void exposure_bias_free(ExposureBias *eb) {
    free(eb->r_free);
    free(eb->r_ref);
    free(eb->n_free);
    free(eb->n_ref);
    free(eb->exacc_err);
    memset(eb, 0, sizeof *eb);
}

int exposure_bias_compute(Model *oracle, Model *model, const PairSet *ref, const PairSet *free_run, int max_len,
                          int batch_tokens, int max_batch, ExposureBias *out) {
    memset(out, 0, sizeof *out);
    if (max_len < 1) return tt_err("exposure bias: the length L must be at least 1");
    if (ref->n != free_run->n) return tt_err("exposure bias: %zu references but %zu model outputs", ref->n, free_run->n);
    if (oracle->cfg.vocab_size != model->cfg.vocab_size)
        return tt_err("exposure bias: the oracle's vocabulary (%d ids) differs from the model's (%d ids)",
                      oracle->cfg.vocab_size, model->cfg.vocab_size);
    out->max_len = max_len;
    out->r_free = malloc(sizeof(double) * (size_t)max_len);
    out->r_ref = malloc(sizeof(double) * (size_t)max_len);
    out->exacc_err = malloc(sizeof(double) * (size_t)max_len);
    out->n_free = malloc(sizeof(long) * (size_t)max_len);
    out->n_ref = malloc(sizeof(long) * (size_t)max_len);
    out->tokens_free = pairset_target_tokens(free_run);
    out->tokens_ref = pairset_target_tokens(ref);
    double *kl_free = malloc(sizeof(double) * (size_t)(out->tokens_free ? out->tokens_free : 1));
    double *kl_ref = malloc(sizeof(double) * (size_t)(out->tokens_ref ? out->tokens_ref : 1));
    int rc = 0;
    if (!out->r_free || !out->r_ref || !out->exacc_err || !out->n_free || !out->n_ref || !kl_free || !kl_ref)
        rc = tt_err("out of memory");
    if (!rc && oracle == model) {
        /* the same distributions on every prefix: KL is 0 by definition */
        for (long k = 0; k < out->tokens_free; k++) kl_free[k] = 0;
        for (long k = 0; k < out->tokens_ref; k++) kl_ref[k] = 0;
    } else if (!rc) {
        rc = teacher_forced_token_stats(oracle, model, free_run, batch_tokens, max_batch, kl_free, NULL);
        if (!rc) rc = teacher_forced_token_stats(oracle, model, ref, batch_tokens, max_batch, kl_ref, NULL);
    }
    if (!rc) {
        exposure_accumulate(kl_free, free_run, max_len, out->r_free, out->n_free);
        exposure_accumulate(kl_ref, ref, max_len, out->r_ref, out->n_ref);
        double sf = 0, sr = 0;
        for (long k = 0; k < out->tokens_free; k++) sf += kl_free[k];
        for (long k = 0; k < out->tokens_ref; k++) sr += kl_ref[k];
        out->kl_free_per_token = out->tokens_free ? sf / (double)out->tokens_free : NAN;
        out->kl_ref_per_token = out->tokens_ref ? sr / (double)out->tokens_ref : NAN;
        for (int l = 0; l < max_len; l++) {
            double f = out->r_free[l], r = out->r_ref[l];
            out->exacc_err[l] = isfinite(f) && isfinite(r) && r > 0 ? (f - r) / r * 100.0 : NAN;
        }
    }
    free(kl_free);
    free(kl_ref);
    if (rc) exposure_bias_free(out);
    return rc;
}

int tokenizers_check_same(const Tokenizer *a, const char *name_a, const Tokenizer *b, const char *name_b) {
    int va = tokenizer_vocab_size(a), vb = tokenizer_vocab_size(b);
    if (va != vb)
        return tt_err("%s and %s do not share a tokenizer: %d ids against %d", name_a, name_b, va, vb);
    if (tokenizer_bos_id(a) != tokenizer_bos_id(b) || tokenizer_eos_id(a) != tokenizer_eos_id(b) ||
        tokenizer_pad_id(a) != tokenizer_pad_id(b))
        return tt_err("%s and %s do not share a tokenizer: their special token ids differ", name_a, name_b);
    for (int id = 0; id < va; id++) {
        const char *sa = tokenizer_token_str(a, id), *sb = tokenizer_token_str(b, id);
        if ((sa == NULL) != (sb == NULL) || (sa && strcmp(sa, sb)))
            return tt_err("%s and %s do not share a tokenizer: id %d is \"%s\" in one and \"%s\" in the other",
                          name_a, name_b, id, sa ? sa : "(none)", sb ? sb : "(none)");
    }
    return 0;
}

/* ---- plot ---- */

/* Runs argv[0] with stdout/stderr to /dev/null (quiet) or inherited; exit status or -1. */
static int run_program(char *const argv[], int quiet) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int terminal_available(const char *term) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "set terminal %s", term);
    char *argv[] = {"gnuplot", "-e", cmd, NULL};
    return run_program(argv, 1) == 0;
}

/* A path with its extension (after the last '.' of the last component) replaced. */
static char *with_extension(const char *path, const char *ext) {
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    char *s = malloc(stem + strlen(ext) + 1);
    if (!s) return NULL;
    memcpy(s, path, stem);
    strcpy(s + stem, ext);
    return s;
}

static void gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f); /* gnuplot doubles a quote inside '...' */
        fputc(*s, f);
    }
    fputc('\'', f);
}

int exposure_bias_plot(const ExposureBias *eb, const char *png_path, const char *title, int *plotted) {
    *plotted = 0;
    char *dat = with_extension(png_path, ".dat"), *gp = with_extension(png_path, ".gp");
    int rc = 0;
    FILE *f = NULL;
    if (!dat || !gp) {
        rc = tt_err("out of memory");
        goto done;
    }
    f = fopen(dat, "w");
    if (!f) {
        rc = tt_err("%s: %s", dat, strerror(errno));
        goto done;
    }
    fprintf(f, "# l  R_free(l)  R_ref(l)  ExAccErr(l)_percent  n_free  n_ref\n");
    int rows = 0;
    for (int l = 0; l < eb->max_len; l++) {
        if (!isfinite(eb->r_free[l]) || !isfinite(eb->r_ref[l])) continue;
        fprintf(f, "%d %.9g %.9g ", l + 1, eb->r_free[l], eb->r_ref[l]);
        if (isfinite(eb->exacc_err[l])) fprintf(f, "%.9g", eb->exacc_err[l]);
        else fprintf(f, "NaN");
        fprintf(f, " %ld %ld\n", eb->n_free[l], eb->n_ref[l]);
        rows++;
    }
    if (fclose(f)) {
        f = NULL;
        rc = tt_err("%s: write error", dat);
        goto done;
    }
    f = NULL;
    const char *term = terminal_available("pngcairo") ? "pngcairo size 1100,440 font ',10'"
                       : terminal_available("png")    ? "png size 1100,440"
                                                      : NULL;
    f = fopen(gp, "w");
    if (!f) {
        rc = tt_err("%s: %s", gp, strerror(errno));
        goto done;
    }
    fprintf(f, "# exposure bias plot made by tutor eval; data in the .dat beside it\n");
    fprintf(f, "set terminal %s\nset output ", term ? term : "pngcairo size 1100,440");
    gp_quote(f, png_path);
    fprintf(f, "\nset datafile missing 'NaN'\nset multiplot layout 1,2 title ");
    gp_quote(f, title ? title : "exposure bias");
    fprintf(f, "\nset key top left\nset grid\nset xlabel 'l (target tokens)'\n"
               "set ylabel 'accumulated KL(oracle || model), nats'\n"
               "plot ");
    gp_quote(f, dat);
    fprintf(f, " using 1:2 with linespoints title 'R_{free}(l): own prefixes', '' using 1:3 with linespoints "
               "title 'R_{ref}(l): reference prefixes'\n"
               "set ylabel 'ExAccErr(l), %%'\nunset key\nplot ");
    gp_quote(f, dat);
    fprintf(f, " using 1:4 with linespoints lc rgb '#b03030'\nunset multiplot\n");
    if (fclose(f)) {
        f = NULL;
        rc = tt_err("%s: write error", gp);
        goto done;
    }
    f = NULL;
    if (rows == 0) {
        tt_info("exposure bias: no length with data to plot; %s and %s written", dat, gp);
        goto done;
    }
    if (!term) {
        tt_info("exposure bias: gnuplot (with a pngcairo or png terminal) is not available; data in %s, "
                "script in %s (run: gnuplot %s)", dat, gp, gp);
        goto done;
    }
    char *argv[] = {"gnuplot", gp, NULL};
    /* quiet: gnuplot warns about one-point ranges; its exit status says whether it worked */
    int st = run_program(argv, 1);
    if (st != 0) rc = tt_err("gnuplot %s failed (exit status %d; run it by hand to see why)", gp, st);
    else *plotted = 1;
done:
    if (f) fclose(f);
    free(dat);
    free(gp);
    return rc;
}
