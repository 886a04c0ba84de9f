/* config: the run configuration (DESIGN §6), read from YAML (libyaml) against one table of
 * keys (src/config.c) that also gives the defaults, ranges, --set paths and help text.
 * Every error names the file, line and key path
 * ("runs/x.yaml:7: model.layers[1].units: -8 is not a positive integer").
 * Never touches MPI or HDF5; each rank loads its own copy. */
#ifndef DMLP_CONFIG_H
#define DMLP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

enum dmlp_activation {
    DMLP_ACT_SIGMOID,
    DMLP_ACT_TANH,
    DMLP_ACT_RELU,
    DMLP_ACT_LEAKY_RELU, /* slope DMLP_LEAKY_SLOPE */
    DMLP_ACT_LINEAR,
    DMLP_ACT_SOFTMAX     /* output layer only, with cross_entropy */
};

/* leaky_relu: f(z) = z for z > 0, DMLP_LEAKY_SLOPE·z otherwise (PyTorch's default). */
#define DMLP_LEAKY_SLOPE 0.01f

/* The predicted class of a row of k scores: the first index of its maximum. Every count of
 * correct predictions, confusion matrix and /labels of predictions uses this rule. */
static inline size_t dmlp_argmax(const float *y, size_t k)
{
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (y[j] > y[best])
            best = j;
    return best;
}

enum dmlp_loss { DMLP_LOSS_CROSS_ENTROPY, DMLP_LOSS_MSE };
enum dmlp_init { DMLP_INIT_HE, DMLP_INIT_XAVIER };
enum dmlp_optimizer { DMLP_OPT_SGD, DMLP_OPT_ADAM, DMLP_OPT_ADAMW };
enum dmlp_placement { DMLP_PLACEMENT_REPLICATED, DMLP_PLACEMENT_SHARDED };
enum dmlp_schedule { DMLP_SCHEDULE_CONSTANT, DMLP_SCHEDULE_STEP, DMLP_SCHEDULE_COSINE };
enum dmlp_lr_scaling { DMLP_LR_SCALING_NONE, DMLP_LR_SCALING_LINEAR };
enum dmlp_normalize { DMLP_NORMALIZE_NONE, DMLP_NORMALIZE_STANDARD };
enum dmlp_metric { DMLP_METRIC_VAL_LOSS, DMLP_METRIC_VAL_ACCURACY };

/* Names as they appear in YAML and in checkpoints ("relu", "cross_entropy", ...). */
const char *config_activation_name(enum dmlp_activation a);
const char *config_loss_name(enum dmlp_loss l);
const char *config_optimizer_name(enum dmlp_optimizer o);
/* Parses an activation name; returns 0, or -1 if the name is unknown. */
int config_activation_parse(const char *name, enum dmlp_activation *out);

struct config_layer {
    uint32_t units;                  /* >= 1 */
    enum dmlp_activation activation;
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
    double min_lr;                   /* cosine: [0, lr], default 0 */
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
    enum dmlp_lr_scaling lr_scaling; /* linear: lr × batch_size / base_batch_size */
    uint32_t base_batch_size;        /* >= 1, default 128 */
    struct config_schedule schedule;
};

struct config_data {
    char *train;                     /* required: HDF5 dataset path */
    char *test;                      /* optional (NULL): evaluated after every epoch */
    double validation_fraction;      /* [0, 1), default 0: a seeded split of train held out */
    enum dmlp_normalize normalize;   /* default none; standard: (x − mean) / std of train */
    bool shuffle;                    /* default true */
    bool drop_last;                  /* default false */
    enum dmlp_placement placement;   /* default replicated */
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
    struct config_optimizer optimizer;
    struct config_data data;
    struct config_training training;
    struct config_checkpoint checkpoint;
    struct config_comm comm;
};

/* Loads and validates the YAML file at path, then applies each "key.path=value" in sets
 * (e.g. "optimizer.lr=0.1", "model.layers[0].units=64", "data.test=" clears a string)
 * and validates again. Relative data paths stay as written (relative to the cwd).
 * On error returns DMLP_ERR_INPUT with a message naming file, line and key; *out is NULL. */
int config_load(struct config **out, const char *path, const char *const *sets, size_t n_sets,
                struct dmlp_error *err);

/* Same, from YAML text in memory; name is used in messages in place of the file name. */
int config_load_string(struct config **out, const char *yaml, size_t len, const char *name,
                       const char *const *sets, size_t n_sets, struct dmlp_error *err);

/* Serializes the effective config (after --set) back to YAML text (malloc'd, NUL-ended),
 * for the checkpoint's config attribute. Loading that text gives an equal config. */
int config_to_yaml(const struct config *cfg, char **out, struct dmlp_error *err);

/* Frees a config from config_load* and sets *cfg to NULL. */
void config_free(struct config **cfg);

/* Every key path the table accepts, one per scalar value, in table order, with list
 * indices written "[]" ("model.layers[].units", "optimizer.schedule.name", ...). Stores up
 * to cap static strings into out (out may be NULL when cap is 0) and returns the total
 * count. */
size_t config_key_paths(const char **out, size_t cap);

/* Writes the key table as Markdown: one row per key (and one for each list) with its
 * type and range, default and meaning. `dmlp help config` prints it, and README.md holds
 * a copy that test_readme_keys compares with it. */
void config_write_key_table(FILE *out);

#endif
