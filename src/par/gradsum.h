/* gradsum: a step's gradient sum across the ranks, three strategies behind one interface
 * (docs/architecture.md, "The gradient sum"). A step calls
 *
 *     gradsum_begin(g, count, stop_requested())   with the step's global sample count
 *     for each piece of its rows:             one piece, or REPRO_CHUNK-row pieces (exact)
 *         forward, loss, backward             backward calls gradsum_ready as layers finish
 *                                             when gradsum_bucket(g) > 0
 *         gradsum_piece(g)
 *     gradsum_finish(g, &st)
 *
 * after which m->grads holds the sum over all ranks of the per-sample gradients, the same
 * bits on every rank, or st says why not (whether the sum is finite: see
 * gradsum_check_finite). The strategies:
 *   blocking   after backward, one sum of the whole buffer (dist_sum_float: shared memory
 *              within a node, MPI_Allreduce across nodes);
 *   overlapped comm.overlap: buckets of comm.bucket_kb start (MPI_Iallreduce) as backward
 *              finishes them, top of the buffer first; finish waits for what is left;
 *   exact      training.reproducible: each piece's gradient is turned into 64-bit fixed
 *              point and added as integers, one integer allreduce: bit-identical for any
 *              rank count (pieces are cut by position in the global batch, not by rank).
 * A stop request rides along in the sum's control slot, so agreeing on it costs nothing.
 * No allocation after create. */
#ifndef DMLP_GRADSUM_H
#define DMLP_GRADSUM_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"
#include "par/dist.h"
#include "nn/model.h"
#include "core/util.h"

/* training.reproducible: samples per piece, fixed whatever the rank count. */
enum { GRADSUM_EXACT_PIECE = 32 };

struct gradsum;

/* What finish found, the same on every rank. */
struct gradsum_status {
    int signalled;       /* some rank had a stop request */
    int retry;           /* exact: a fixed-point total could overflow; redo the step's
                            pieces (finish has moved the binary point down already) */
    int bad;             /* a summed gradient is not finite: in bad_layer, a bad_what
                            (exact: found while adding; the others: gradsum_check_finite) */
    size_t bad_layer;
    const char *bad_what;
    double waited;       /* seconds spent waiting for the node's other ranks (blocking,
                            shared memory; else 0) */
};

/* The strategy the config asks for, over the ranks of d, for m's gradient buffer. */
int gradsum_create(struct gradsum **out, const struct dist *d, struct model *m,
                   const struct config *cfg, struct dmlp_error *err);
void gradsum_free(struct gradsum **g);

/* Which strategy, for the run's report ("exact fixed point", "overlapped", or how the
 * blocking sum is done). */
const char *gradsum_method(const struct gradsum *g);

/* This rank's samples [begin, end) of a step's global batch of count rows held by every
 * rank (replicated placement): its dmlp_slice, or for the exact strategy its slice of the
 * whole pieces. Pieces of gradsum_piece_rows(g) rows (0: one piece of them all). */
void gradsum_rows(const struct gradsum *g, uint64_t count, uint64_t *begin, uint64_t *end);
size_t gradsum_piece_rows(const struct gradsum *g);

void gradsum_begin(struct gradsum *g, uint64_t count, int stop_request);
/* Floats per bucket to pass to model_backward_chunked with gradsum_ready; 0 when the
 * strategy needs no calls during backward (use model_backward). */
size_t gradsum_bucket(const struct gradsum *g);
model_grad_ready_fn gradsum_ready; /* ctx is the struct gradsum */
void gradsum_piece(struct gradsum *g);
void gradsum_finish(struct gradsum *g, struct gradsum_status *st);

/* Blocking and overlapped: sets st->bad from a scan of the summed gradient (the exact
 * strategy finds it while adding, for free). A step does without: its update's own pass
 * sees any non-finite gradient (optim_step), and a scan would read the whole buffer once
 * more; lbfgs, which evaluates several times before it updates, calls this. */
void gradsum_check_finite(const struct gradsum *g, struct gradsum_status *st);

/* exact: the binary point of the next step's fixed point, saved in checkpoints so that a
 * resumed run continues with the same one (0 for the other strategies). */
int gradsum_fx_shift(const struct gradsum *g);
void gradsum_set_fx_shift(struct gradsum *g, int shift);

#endif
