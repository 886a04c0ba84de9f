/* settings: what a run is told to do, as plain data: the enums and structs of the run
 * configuration (README, Config; docs/architecture.md), shared by every layer above. The
 * YAML loader that fills them is app/config; the modules that act on them (model, optim,
 * gradsum, train, ...) see only these types. Names as in YAML and in checkpoints. */
#ifndef DMLP_SETTINGS_H
#define DMLP_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dmlp_activation {
    DMLP_ACT_SIGMOID,
    DMLP_ACT_TANH,
    DMLP_ACT_RELU,
    DMLP_ACT_LEAKY_RELU, /* slope DMLP_LEAKY_SLOPE (nn/activation.h) */
    DMLP_ACT_LINEAR,
    DMLP_ACT_SOFTMAX     /* output layer only, with cross_entropy */
};

/* The regression losses (all but cross_entropy) read /targets: mse, mae and huber. */
enum dmlp_loss { DMLP_LOSS_CROSS_ENTROPY, DMLP_LOSS_MSE, DMLP_LOSS_MAE, DMLP_LOSS_HUBER };
enum dmlp_init { DMLP_INIT_HE, DMLP_INIT_XAVIER };
enum dmlp_optimizer { DMLP_OPT_SGD, DMLP_OPT_ADAM, DMLP_OPT_ADAMW, DMLP_OPT_LBFGS };
enum dmlp_placement { DMLP_PLACEMENT_REPLICATED, DMLP_PLACEMENT_SHARDED, DMLP_PLACEMENT_STREAMED };
enum dmlp_schedule {
    DMLP_SCHEDULE_CONSTANT,
    DMLP_SCHEDULE_STEP,
    DMLP_SCHEDULE_COSINE,
    DMLP_SCHEDULE_PLATEAU /* × factor when the watched loss stalls for patience epochs */
};
enum dmlp_lr_scaling { DMLP_LR_SCALING_NONE, DMLP_LR_SCALING_LINEAR };
enum dmlp_normalize { DMLP_NORMALIZE_NONE, DMLP_NORMALIZE_STANDARD };
enum dmlp_metric { DMLP_METRIC_VAL_LOSS, DMLP_METRIC_VAL_ACCURACY };
enum dmlp_plateau_metric { DMLP_PLATEAU_VAL_LOSS, DMLP_PLATEAU_TRAIN_LOSS };

/* Names in enum order (NULL-ended), as they appear in YAML and in checkpoints. */
extern const char *const dmlp_activation_names[];
extern const char *const dmlp_init_names[];
extern const char *const dmlp_loss_names[];
extern const char *const dmlp_optimizer_names[];
extern const char *const dmlp_placement_names[];
extern const char *const dmlp_schedule_names[];
extern const char *const dmlp_lr_scaling_names[];
extern const char *const dmlp_normalize_names[];
extern const char *const dmlp_metric_names[];
extern const char *const dmlp_plateau_metric_names[];
extern const char *const dmlp_class_weight_words[]; /* "balanced" */

/* The name of value v in a NULL-ended list ("unknown" when out of range), and the names
 * of the values that matter outside the config ("relu", "cross_entropy", ...). */
const char *dmlp_name_of(const char *const *names, int v);
const char *dmlp_activation_name(enum dmlp_activation a);
const char *dmlp_loss_name(enum dmlp_loss l);
const char *dmlp_optimizer_name(enum dmlp_optimizer o);
/* Parses an activation name; returns 0, or -1 if the name is unknown. */
int dmlp_activation_parse(const char *name, enum dmlp_activation *out);

struct config_layer {
    uint32_t units;                  /* >= 1 */
    enum dmlp_activation activation;
    double dropout;                  /* [0, 1), default 0; hidden layers only */
};

/* A list of numbers (loss_weights: [1, 10]), or a word the key allows instead
 * (class_weights: balanced). Neither given: n = 0, word = 0. */
struct config_numbers {
    double *v;                       /* [n], owned */
    uint32_t n;
    int word;                        /* 0, or 1 + the index of the word in the key's list */
};

/* Data files (data.train, data.test): each entry a path or a glob pattern (with *, ? or
 * [...]), as the config gives them; the data module expands the patterns (their matches
 * sorted by name) and reads the files as one concatenation, in order. None: n = 0. */
struct config_files {
    char **v;                        /* [n], owned */
    uint32_t n;
};

struct config_model {
    struct config_layer *layers;     /* >= 1 entries */
    uint32_t n_layers;
    enum dmlp_init init;             /* default he */
};

/* The learning rate of a step: optional linear warm-up from 0 over warmup_epochs, then
 * constant, step (× gamma every step_epochs) or cosine (down to min_lr at the end). */
struct config_schedule {
    enum dmlp_schedule name;         /* default constant */
    double warmup_epochs;            /* >= 0, default 0 (fractions allowed) */
    uint32_t step_epochs;            /* step: >= 1, default 10 */
    double gamma;                    /* step: (0, 1], default 0.1 */
    double min_lr;                   /* cosine, plateau: [0, lr], default 0 */
    double factor;                   /* plateau: (0, 1), default 0.1 */
    uint32_t patience;               /* plateau: epochs without improvement, default 10 */
    double threshold;                /* plateau: relative improvement that counts, 1e-4 */
    enum dmlp_plateau_metric metric; /* plateau: val_loss (default) or train_loss */
};

struct config_optimizer {
    enum dmlp_optimizer name;        /* default sgd */
    double lr;                       /* > 0, required */
    double momentum;                 /* sgd: [0, 1), default 0 */
    bool nesterov;                   /* sgd: default false; needs momentum > 0 */
    double weight_decay;             /* >= 0, default 0; coupled (L2) for sgd and adam,
                                        decoupled for adamw */
    double beta1, beta2;             /* adam/adamw: [0, 1), defaults 0.9, 0.999 */
    double eps;                      /* adam/adamw: > 0, default 1e-8 */
    double clip_norm;                /* > 0: clip the global gradient norm to it; 0 = off */
    uint32_t history;                /* lbfgs: (s, y) pairs kept, >= 1, default 100 */
    uint32_t max_iter;               /* lbfgs: iterations per epoch, >= 1, default 20 */
    enum dmlp_lr_scaling lr_scaling; /* linear: lr × batch_size / base_batch_size */
    uint32_t base_batch_size;        /* >= 1, default 128 */
    struct config_schedule schedule;
};

struct config_data {
    struct config_files train;       /* required: one or more HDF5 datasets */
    struct config_files test;        /* optional (n = 0): evaluated after every epoch */
    struct config_files validation;  /* optional: a validation set of its own (not with
                                        validation_fraction) */
    double validation_fraction;      /* [0, 1), default 0: a seeded split of train held out */
    enum dmlp_normalize normalize;   /* default none; standard: (x − mean) / std of train */
    bool normalize_targets;          /* default false; regression only: train on (t − mean) /
                                        std of train's targets, report in original units */
    struct config_numbers class_weights; /* cross_entropy: one per class, or balanced */
    bool shuffle;                    /* default true */
    bool drop_last;                  /* default false */
    enum dmlp_placement placement;   /* default replicated */
    bool share_node;                 /* default true; replicated: one copy per node, shared */
    uint32_t block_rows;             /* streamed: rows per block read, default 4096 */
    uint32_t shuffle_window;         /* streamed: blocks per window shuffled, default 8 */
    uint32_t memory_mb;              /* streamed: the resident windows' budget, default 1024 */
};

/* Stop when the metric has not improved by more than min_delta for patience epochs. */
struct config_early_stopping {
    uint32_t patience;               /* 0 = off (default) */
    enum dmlp_metric metric;         /* default val_loss; needs validation_fraction > 0 */
    double min_delta;                /* >= 0, default 0 */
};

struct config_training {
    uint32_t epochs;                 /* >= 1, default 10 */
    uint32_t batch_size;             /* >= 1, default 128: the GLOBAL batch */
    uint64_t seed;                   /* default 42 */
    uint64_t max_steps;              /* 0 = no limit */
    bool reproducible;               /* weights bit-identical for any rank count (see train.h) */
    struct config_early_stopping early_stopping;
};

struct config_checkpoint {
    char *dir;                       /* default "runs/default" */
    uint32_t every_epochs;           /* 0 = only the final checkpoint; default 1 */
    uint32_t keep_last;              /* 0 = keep all; default 3 */
};

struct config_comm {
    bool shared_memory;              /* default true: ranks of a node add through shared memory */
    bool overlap;                    /* start each bucket's allreduce during backward */
    uint32_t bucket_kb;              /* >= 1, default 256: gradient floats per allreduce */
};

struct config {
    struct config_model model;
    enum dmlp_loss loss;             /* default cross_entropy */
    double loss_delta;               /* huber's δ, > 0, default 1 */
    struct config_numbers loss_weights; /* regression: one weight per output (default 1) */
    struct config_optimizer optimizer;
    struct config_data data;
    struct config_training training;
    struct config_checkpoint checkpoint;
    struct config_comm comm;
};

#endif
