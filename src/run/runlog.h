/* runlog: what a run tells its user. metrics.jsonl in the checkpoint folder (one JSON
 * object per line: a "start" line with the run's config, ranks and threads, then one
 * "epoch" line per epoch; appended, never overwritten, so a resumed run continues the
 * file), and the progress bar rank 0 draws on a terminal. Rank 0 only; no MPI, no HDF5. */
#ifndef DMLP_RUNLOG_H
#define DMLP_RUNLOG_H

#include <stdint.h>
#include <stdio.h>

#include "core/util.h"

struct runlog;

/* Opens (creating dir and the file if needed) <dir>/metrics.jsonl for appending. */
int runlog_open(struct runlog **out, const char *dir, struct dmlp_error *err);
void runlog_close(struct runlog **log);

/* The first line of a run (or of a resumed part of one). */
void runlog_start(struct runlog *log, const char *config_yaml, int ranks, int threads,
                  uint64_t epoch, uint64_t step, const char *resumed_from);

/* Where an epoch's time went, per rank: seconds in each phase. */
enum runlog_timer {
    TIMER_DATA,       /* copying the batch's rows */
    TIMER_FORWARD,    /* forward pass and loss */
    TIMER_BACKWARD,   /* backward pass */
    TIMER_SYNC,       /* the shared-memory gradient sum: waiting for the node's other ranks */
    TIMER_ALLREDUCE,  /* the gradient sum (otherwise: waiting for the slowest rank included) */
    TIMER_UPDATE,     /* clipping and the optimizer step */
    TIMER_EVAL,       /* validation and test evaluation */
    TIMER_CHECKPOINT, /* checkpoint I/O */
    TIMER_COUNT
};
extern const char *const runlog_timer_names[TIMER_COUNT];

/* One epoch's figures; NaN values are written as null. The timers are spread across
 * ranks: min, mean, max and the rank with the max. */
struct runlog_epoch {
    uint64_t epoch, step;
    double lr, train_loss, train_accuracy, val_loss, val_accuracy, test_loss, test_accuracy;
    double samples_per_second, epoch_seconds;
    double t_min[TIMER_COUNT], t_mean[TIMER_COUNT], t_max[TIMER_COUNT];
    int t_max_rank[TIMER_COUNT];
};
void runlog_epoch(struct runlog *log, const struct runlog_epoch *e);

/* Redraws a one-line progress bar with \r (for terminals): the epoch's progress, the
 * running loss (of rank 0's samples), throughput and the epoch's time left:
 *   epoch 3/20 [########----------------] 234/469  loss 0.3123  51234 samples/s  ETA 4s */
void runlog_progress(FILE *f, uint64_t epoch, uint32_t epochs, uint64_t step, uint64_t steps,
                     double loss, double samples_per_second, double eta_seconds);

/* Clears the progress bar's line. */
void runlog_progress_clear(FILE *f);

#endif
