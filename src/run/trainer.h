/* trainer: what a training run owns and where it stands, shared by its two halves:
 * train_setup.c (data, model, resume, the run's report) and train.c (the epoch loop, the
 * step, the finish). Private to them. */
#ifndef DMLP_TRAINER_H
#define DMLP_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "data/checkpoint.h"
#include "par/gradsum.h"
#include "nn/optim.h"
#include "data/rundir.h"
#include "data/stream.h"
#include "run/runlog.h"
#include "run/train.h"

/* Rows of workspace reserved beyond the batch slice: evaluation forwards in chunks. */
enum { TRAIN_EVAL_CHUNK = 512 };

/* The rng streams: 0 for the weight initialisation, 1 + e for epoch e's permutation. */
enum { TRAIN_STREAM_INIT = 0, TRAIN_STREAM_EPOCH = 1 };

/* Whether the epoch loop goes on: it ends when training.epochs are done, or earlier when
 * max_steps or early stopping says so (DONE), or on a stop request (SIGNALLED, which
 * skips the evaluation and goes straight to the checkpoint). */
enum trainer_state { TRAINER_GOING, TRAINER_DONE, TRAINER_SIGNALLED };

struct trainer {
    /* the run's inputs */
    const struct dist *d;
    const struct config *cfg;
    const char *yaml;          /* the effective config, stored in checkpoints */
    const struct train_options *opt;
    FILE *log;                 /* rank 0's log; NULL elsewhere */
    FILE *info;                /* the same unless --quiet */
    int bar;                   /* info is a terminal: draw a progress bar */
    /* what it owns (trainer_free) */
    struct rundir *dir;        /* rank 0, when saving: checkpoint.dir checked and locked */
    int sharded;
    struct dataset_files train_files, val_files, test_files; /* the config's, expanded */
    struct dataset *train, *val, *test;
    /* replicated: the block of the node that holds train, val and test (one copy per node),
     * or NULL for copies of this rank's own, and then why not (for the report) */
    struct dist_shm *data_shm;
    char data_note[1024];
    /* streamed: the reader (train is its resident rows), the class weights it applies,
     * and a read that failed (a file changed): the step's stop request carries it, and the
     * ranks then agree on data_err */
    struct stream *stream;
    double *stream_cw;
    int data_failed;
    struct dmlp_error data_err;
    struct model *model;
    struct optim *optim;
    struct gradsum *sum;
    float *xb, *tb;            /* the rank's batch slice: features and targets */
    int32_t *lb;               /* labels */
    /* Sample weights ω (docs/architecture.md, "Weighted losses"): each training row's (its
     * /weights value times its class weight), or NULL when every ω is 1; the batch slice's;
     * and, sharded, each step's Σω over all ranks for the epoch under way. */
    float *w, *wb;
    double *step_w;
    double w_total;            /* Σω over the whole training set (its rows when unweighted) */
    /* lbfgs (docs/architecture.md, "L-BFGS"): the full-batch gradient's accumulator (not
     * with the exact sum, which accumulates its pieces itself), the exact sum's per-piece
     * losses, and the rows one chunk of the pass computes (the batch buffers' size). */
    float *acc;
    double *piece_loss;
    size_t chunk_rows;
    uint64_t *perm;            /* the epoch's visiting order (of the local rows if sharded) */
    uint64_t *rows;            /* sharded: training rows held by each rank */
    struct runlog *mlog;       /* rank 0: metrics.jsonl */
    char resumed_from[4096];   /* the checkpoint this run continues, or "" */
    /* the run's shape */
    uint64_t n_train;          /* training rows in all (global) */
    uint64_t steps_per_epoch, total_steps;
    /* where it stands */
    struct checkpoint_state st;
    enum trainer_state state;
    uint64_t saved_step;       /* the step of the last checkpoint written (UINT64_MAX: none) */
    double lr;                 /* the last step's learning rate */
    struct train_result *res;
};

/* Sets up everything from data to the first step's state and reports the run;
 * collective, agreed. On failure t still needs trainer_free. */
int trainer_setup(struct trainer *t, struct dmlp_error *err);
void trainer_free(struct trainer *t);

#endif
