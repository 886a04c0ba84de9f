/* train: the data-parallel training loop of docs/architecture.md ("Contracts the tests pin
 * down"). Every rank holds the whole training set (replicated placement), visits epoch e in the
 * order of a permutation drawn from (seed, e), takes the r-th contiguous slice of each global
 * batch, sums its per-sample gradients, joins one allreduce over the flat gradient buffer,
 * divides by the step's global sample count and applies the same update. Steps per epoch come
 * from global counts, so every rank enters every collective. */
#ifndef DMLP_TRAIN_H
#define DMLP_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "core/settings.h"
#include "data/dataset.h"
#include "par/dist.h"
#include "run/metrics.h"
#include "nn/model.h"
#include "run/runlog.h"
#include "core/util.h"

/* Data a caller read once for several runs (dmlp sweep): the raw sets (training,
 * validation, test; NULL: none) as their files hold them, and the files they came from. A
 * replicated run whose data.train (data.validation, data.test) names the same files copies
 * the set from here instead of reading it. The caller keeps it until the runs are done. */
struct train_cache {
    const struct dataset *set[3];
    const struct dataset_files *files[3];
};

struct train_options {
    const char *resume;     /* NULL, "auto" or a checkpoint path */
    const char *init_from;  /* NULL or a checkpoint whose /layers start training */
    FILE *log;              /* rank 0's progress lines; NULL for silence */
    int save_checkpoints;   /* 0: write none nor metrics.jsonl (tests); 1: as configured */
    const struct train_cache *cache; /* NULL, or data read once for several runs */
    int verbosity;          /* 0 quiet (errors and the final checkpoint), 1 normal (one line
                               per epoch, a progress bar on a terminal), 2 verbose (per-rank
                               placement too) */
};

struct train_result {
    struct model *model;    /* the trained network (caller frees with model_free) */
    uint64_t steps;         /* global steps taken in total (resumed ones included) */
    uint64_t epochs_done;
    double train_loss;      /* last epoch's mean training loss */
    double train_accuracy;  /* last epoch's training accuracy (classifiers; else NaN) */
    double test_accuracy;   /* after the last epoch, when data.test is set; else NaN */
    double val_loss;        /* after the last epoch, with data.validation_fraction; else NaN */
    double val_accuracy;
    uint64_t best_epoch;    /* the epoch with the best validation metric (0: none) */
    double best_metric;     /* that metric (training.early_stopping.metric), else NaN */
    int stopped_early;      /* 1 when early stopping ended the run */
    char checkpoint[4096];  /* the last checkpoint written, or "" */
    struct runlog_epoch last_epoch; /* the last epoch's figures and timers (all ranks) */
    double fastest_epoch_seconds;   /* of this run's epochs (benchmarks) */
};

/* The sets cfg's data name (replicated placement with data.share_node), read once per node
 * into a block the node's ranks share, as a cache for runs that follow (dmlp sweep): the
 * run with the same files copies from it. Collective over d, agreed; an empty cache (and
 * *out NULL) for other placements or when no shared window can be had. Close with
 * train_cache_close (collective) after the runs. */
struct train_cache_store;
int train_cache_open(const struct dist *d, const struct config *cfg,
                     struct train_cache_store **out, struct train_cache *cache,
                     struct dmlp_error *err);
void train_cache_close(struct train_cache_store **s);

/* Runs training as cfg says. config_yaml is stored in checkpoints. Collective over d:
 * every rank must call it, and every rank returns the same status. */
int train_run(const struct dist *d, const struct config *cfg, const char *config_yaml,
              const struct train_options *opt, struct train_result *res,
              struct dmlp_error *err);

#endif
