/* partition: how rows are divided among ranks, in one place: every split across ranks (a
 * step's batch, evaluation and prediction rows, a shard of a file, the sharded placement's
 * steps) follows these rules, so that the data-parallel contracts of docs/architecture.md
 * hold everywhere. Pure arithmetic. */
#ifndef DMLP_PARTITION_H
#define DMLP_PARTITION_H

#include <stdint.h>

/* The r-th of n contiguous slices of count items: slices differ by at most one item, the
 * first count % n being one longer. The one partition rule of every split across ranks:
 * a step's batch, evaluation and prediction rows, a shard of a file. */
void dmlp_slice(uint64_t count, int n, int r, uint64_t *offset, uint64_t *len);

/* The sharded placement's step s: each rank draws from its own shard (rows[i] training rows
 * on rank i, N = Σ rows) in proportion to it, floor(s·B·rows_i / N) up to the next step's
 * mark, so that over an epoch every rank visits each of its rows exactly once and a step
 * takes about B samples in all. The last step of an epoch ends at each shard's end (unless
 * drop_last). Gives this rank's offset into its (permuted) shard and length, and the step's
 * global sample count, the same on every rank. */
void dmlp_shard_step(const uint64_t *rows, int n, int rank, uint64_t B, uint64_t s,
                     uint64_t steps_per_epoch, int drop_last, uint64_t *offset,
                     uint64_t *len, uint64_t *count);

#endif
