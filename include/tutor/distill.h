/* distill.h: knowledge distillation on the open training loop (train.h): the per-token
 * objectives of word-level KD, pseudo-target files and the batch source that cycles them,
 * students made by shrinking the teacher, and the distillation loss (a live teacher, noisy
 * KD, student pseudo-targets sampled online for Joint-Teaching and GKD). docs/distillation.md
 * gives each method with its formula. */
#ifndef TUTOR_DISTILL_H
#define TUTOR_DISTILL_H

#include <stddef.h>
#include <stdint.h>

#include "tutor/data.h"
#include "tutor/generate.h"
#include "tutor/model.h"
#include "tutor/train.h"

/* ---- Objectives: one token, over the vocabulary ---------------------------------------------
 * p = softmax(teacher / tau) (optionally cut to its top-p nucleus and renormalised),
 * q = softmax(student / tau). Every divergence is multiplied by tau^2 (Hinton et al.), so
 * its gradient keeps its size as tau changes. */
typedef enum {
    KD_FKL = 0, /* forward KL(p || q): word-level KD (Kim & Rush 2016) */
    KD_RKL,     /* reverse KL(q || p) */
    KD_JSD,     /* generalised JSD(beta) (GKD): beta KL(p||m) + (1-beta) KL(q||m), m = beta p + (1-beta) q;
                   beta 0 is forward KL, beta 1 reverse KL */
    KD_TVD,     /* total variation 1/2 sum |p - q| */
    KD_SKL,     /* skew KL (DistiLLM): KL(p || a p + (1-a) q) */
    KD_SRKL,    /* skew reverse KL (DistiLLM): KL(q || a q + (1-a) p) */
    KD_N_KINDS
} KdKind;

typedef struct {
    KdKind kind;
    double tau;   /* temperature, > 0 (1) */
    double beta;  /* JSD's beta in [0, 1] (0.5) */
    double skew;  /* skew KL's a in [0, 1) (0.1) */
    double top_p; /* teacher nucleus in (0, 1]; 1 = off */
} KdObjective;

void kd_objective_default(KdObjective *o);
/* "fkl", "rkl", "jsd", "tvd", "skl", "srkl"; -1 for an unknown name. */
int kd_kind_parse(const char *name);
const char *kd_kind_name(KdKind k);
/* Checks ranges (and that top-p is not combined with an objective that needs log p
 * everywhere: reverse KL). 0 or -1 with the reason. */
int kd_objective_check(const KdObjective *o);
/* Scratch doubles kd_token needs for a vocabulary of V. */
size_t kd_scratch_doubles(int V);
/* The loss for one token and, when g is not NULL, scale * d(loss)/d(student logits) written
 * to g (V). scratch: kd_scratch_doubles(V). */
double kd_token(const KdObjective *o, const real *teacher, const real *student, int V, double *scratch,
                real *g, double scale);

/* ---- Batches: gold pairs and pseudo-targets, cycling one PT per input per epoch ---------- */

/* The pairs of epoch e are the gold pairs (when any) and, for each PT input i with K_i
 * targets, its (e mod K_i)-th pseudo-target. The PT sets are borrowed. */
typedef struct PtSource PtSource;
/* gold may be NULL; pts[k] (n_pt sets) hold one tokenised set per PT index: pts[k].items[i]
 * is input i's k-th target (inputs with fewer targets repeat theirs). */
PtSource *pt_source_new(const PairSet *gold, const PairSet *pts, int n_pt, const ModelConfig *c, int batch_tokens,
                        int max_batch, int max_source_tokens, int max_target_tokens, uint64_t seed);
void pt_source_free(PtSource *s);
BatchSource pt_source_iface(PtSource *s);
/* For tests: which PT index epoch e uses. */
int pt_source_index_for_epoch(const PtSource *s, uint64_t epoch);

/* Tokenises a PT file into pts[0..K) as pt_source_new wants (K = the most targets any line
 * has). Sources are encoded like training pairs. *n_pt receives K. */
int ptfile_tokenise(const PtFile *f, const Tokenizer *tok, int max_src, int max_tgt, PairSet **pts, int *n_pt);
/* Concatenates pair sets item by item (each out[k] = a[k] followed by b[k]); the items point
 * into the inputs' pools, which must outlive out. */
int pairset_concat_view(PairSet *out, const PairSet *a, const PairSet *b);

/* The pairs of the last batch pt_source yielded: their indices in PT set *set (gold first,
 * then that set's pseudo-targets, as pt_source_new concatenates them). */
void pt_source_last(const PtSource *s, const size_t **idx, int *count, int *set);
/* The concatenated pair set k (gold + pts[k]) the source batches from. */
const PairSet *pt_source_set(const PtSource *s, int k);

/* ---- The teacher's signal, cached (cache.c) --------------------------------------------- */

typedef struct TeacherCache TeacherCache;
enum { CACHE_EXACT = 0, CACHE_SPARSE = 1 };
uint64_t model_hash(const Model *m);
uint64_t pairset_hash(const PairSet *ps);
/* Runs the teacher over every pair (inference) and writes, atomically, each target token's
 * final hidden state (exact) or top-k log-probabilities (sparse). 0 or -1. */
int teacher_cache_build(const char *path, Model *teacher, const PairSet *ps, int kind, int top_k, int batch_tokens,
                        int max_batch);
/* Maps a cache and checks it (magic, sizes, offsets, ids); teacher / ps (either may be NULL)
 * must be what it was made from (the teacher's hash, the pairs' hash). NULL with a reason. */
TeacherCache *teacher_cache_open(const char *path, const Model *teacher, const PairSet *ps);
void teacher_cache_free(TeacherCache *c);
int teacher_cache_kind(const TeacherCache *c);
int teacher_cache_width(const TeacherCache *c);
uint64_t teacher_cache_pairs(const TeacherCache *c);
void teacher_cache_pair(const TeacherCache *c, size_t p, uint64_t *first, int *n);
const float *teacher_cache_row(const TeacherCache *c, uint64_t row);
const int32_t *teacher_cache_ids(const TeacherCache *c, uint64_t row);

/* Forward KL against a sparse teacher: its top-k log-probabilities (ids, logp) and the rest of
 * its mass as one bucket, against the student's logits s (tau 1): the KL between the two
 * (k+1)-class distributions. g as kd_token (it may be s itself); scratch: k doubles (unused
 * without g). */
double kd_token_sparse(const int32_t *ids, const float *logp, int k, const real *s, int V, real *g, double scale,
                       double *scratch);
/* The sparse cache's bias, measured with the live teacher on the first n pairs of ps: mean
 * per-token full KL(p || q), bucket KL and naive truncated top-k KL (which can go negative),
 * q the student's. 0 or -1. */
int teacher_cache_sparse_bias(const TeacherCache *c, Model *teacher, Model *student, const PairSet *ps, size_t n,
                              double *full, double *bucket, double *truncated, long *tokens);

/* ---- Two models teacher-forced (teacher_forced.c) ---------------------------------------- */

/* Runs oracle O (may be NULL) and model M teacher-forced on the targets of ps and, for the
 * k-th target token of the set (targets laid end to end in ps order; sum of tgt_len
 * entries), writes kl[k] = KL(O(.|x, y_<t) || M(.|x, y_<t)) and nll[k] = -log M(y_t | x,
 * y_<t), both in double from log-softmax of the logits. kl (needs O) and nll may be NULL.
 * O and M must have the same vocabulary size and be distinct objects (each keeps its own
 * activations). Batches hold at most max_batch pairs and batch_tokens padded tokens.
 * 0 or -1. */
int teacher_forced_token_stats(Model *oracle, Model *model, const PairSet *ps, int batch_tokens,
                               int max_batch, double *kl, double *nll);

/* ---- Students ---------------------------------------------------------------------------- */

/* Parses "0,-1" (negative counts from the end) into sorted unique layer indices of a stack
 * of n layers. Returns the count, or -1 with the reason. */
int parse_layer_list(const char *spec, int n, int *out, int cap);
/* The teacher with only the chosen layers kept (copies of their weights; embeddings, layer
 * norms and biases copied). keep_enc NULL: every encoder layer. NULL with a reason. */
Model *model_shrink(const Model *teacher, const int *keep_enc, int n_enc, const int *keep_dec, int n_dec);

/* ---- Attention relations (MiniLM v2) ------------------------------------------------------
 * After the teacher's and the student's forwards on batch b: the mean over the last layer's
 * attentions (encoder self, decoder self, cross; decoder self only for decoder-only models)
 * and over their queries, keys and values of KL(R_teacher || R_student), R = softmax(X X^T /
 * sqrt(d)) per relation head (relation_heads 0: the teacher's decoder heads), each averaged
 * over heads and valid query rows. With grad, scale x its gradient goes into the student's
 * attention gradient path (model_attention_qkv_grad) for the next model_backward.
 * *n_relations: how many relations were averaged. NAN on error. */
double attention_relation_kd(Model *teacher, Model *student, const Batch *b, int relation_heads, int grad,
                             double scale, int *n_relations);

/* ---- The distillation loss ---------------------------------------------------------------- */

/* How the targets of a step are chosen. */
typedef enum {
    TARGETS_DATA = 0,   /* the batch's targets (gold and/or teacher PTs) */
    TARGETS_JOINT,      /* Joint-Teaching: student PTs on a fraction alpha of batches, evenly spread */
    TARGETS_GKD,        /* GKD: each batch is on-policy (student samples) with probability lambda */
    TARGETS_STUDENT,    /* only student PTs */
    TARGETS_MINILLM     /* MiniLLM: teacher-mixed samples, sequence-level reverse KL by policy gradient */
} TargetMode;

typedef struct {
    Model *teacher;
    KdObjective obj;
    double w_kd, w_ce;     /* loss = w_kd * KD + w_ce * CE (per token); w_kd 0: fine-tuning */
    double label_smoothing;
    int noisy;             /* the teacher's dropout on */
    TargetMode targets;
    double student_fraction; /* alpha (Joint-Teaching) or lambda (GKD) */
    GenConfig student_gen;   /* how the student samples its pseudo-targets */
    double mix_alpha;        /* MiniLLM: the teacher's share of the sampling mixture (0.2) */
    double w_att;            /* attention-relation KD weight (0: off), added to the loss per sequence */
    int relation_heads;      /* 0: the teacher's head count */
    uint64_t seed;
    int max_source_tokens, max_target_tokens;
    int autoscale;         /* scale CE and KD to equal size, measured on the first batches */
    /* the teacher's signal from caches instead of its forward (NULL: live): caches[k] for PT set
     * k of source; student pseudo-target batches always use the live teacher */
    TeacherCache *const *caches;
    int n_caches;
    const PtSource *source;
} DistillLossOptions;

void distill_loss_options_default(DistillLossOptions *o);

typedef struct DistillLoss DistillLoss;
/* The student must share the teacher's vocabulary and architecture family (both
 * encoder-decoder or both decoder-only): the same batch feeds both. max_B/max_S/max_T: the
 * largest batch the source yields. NULL with a reason. */
DistillLoss *distill_loss_new(const DistillLossOptions *o, Model *student, int max_B, int max_S, int max_T);
void distill_loss_free(DistillLoss *l);
TrainLoss distill_loss_iface(DistillLoss *l);
/* MiniLLM's single-step importance weight of a sampled token: q / (alpha p + (1 - alpha) q),
 * q the student's probability of it, p the teacher's. */
static inline double minillm_weight(double q, double p, double alpha) {
    double m = alpha * p + (1 - alpha) * q;
    return m > 0 ? q / m : 0;
}
/* MiniLLM's length-normalised future reward of each position of one sequence: adv[t] = the
 * mean of r[t+1 .. n) (0 for the last), r[t] = log p(y_t) - log q(y_t). */
void minillm_advantages(const double *r, int n, double *adv);
/* For tests: whether batch number k (0-based) uses student pseudo-targets. */
int distill_loss_uses_student(const DistillLoss *l, uint64_t k);

/* The rows of a batch that carry a label, in order, and each one's weight 1 / (labelled
 * tokens of its sequence): KD averages a sequence's tokens, then the batch. rows and w
 * need B*T entries. Returns the count; *n_seq receives the sequences with a label. */
long batch_label_rows(const Batch *b, int *rows, double *w, int *n_seq);

#endif
