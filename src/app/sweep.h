/* sweep: many models in one MPI job (dmlp sweep). The members are the cross product of the
 * grids (--grid key=v1,v2,...; the last grid varies fastest) times --seeds N (innermost:
 * training.seed + s for s = 0..N-1). The job's ranks form groups of group_size ranks; each
 * group takes the next member from a queue on rank 0 (a one-sided fetch-and-add, so groups
 * that finish early take more) and trains it exactly as `dmlp train CONFIG --set ...` would
 * with that member's settings on group_size ranks, into checkpoint.dir/member-NNN/. A member
 * that fails is recorded with its message and the sweep goes on; a stop signal ends every
 * group's member at its next step with a checkpoint, and the sweep exits 75. Each finished
 * member leaves member-NNN/result.txt, so --resume skips it (and resumes interrupted ones
 * from their latest.h5). At the end rank 0 writes checkpoint.dir/sweep.jsonl and prints the
 * members sorted by validation loss (else training loss). */
#ifndef DMLP_SWEEP_H
#define DMLP_SWEEP_H

#include <stddef.h>
#include <stdio.h>

#include "core/util.h"
#include "par/dist.h"

struct sweep_options {
    const char *config_path;
    const char *const *sets;  /* --set, for every member */
    size_t n_sets;
    const char *const *grids; /* --grid key=v1,v2,... */
    size_t n_grids;
    unsigned seeds;           /* >= 1 */
    int group_size;           /* >= 1, divides the rank count */
    int resume;               /* --resume auto */
    FILE *log;                /* rank 0's report; each group's first rank prints its members */
};

/* Collective over d. A bad grid or a member's bad config is an input error before anything
 * runs (every rank, the same message); DMLP_STOPPED after a signal; else DMLP_OK, failed
 * members included. */
int sweep_run(const struct dist *d, const struct sweep_options *o, struct dmlp_error *err);

/* The latest.h5 of the top finished members of the sweep in dir (from dir/sweep.jsonl),
 * by validation loss (else training loss), best first: *n = min(top, finished members).
 * *paths and its strings are the caller's to free. An error names the file. */
int sweep_best_members(const char *dir, size_t top, char ***paths, size_t *n,
                       struct dmlp_error *err);

#endif
