/* stream: the streamed placement (data.placement: streamed, docs/architecture.md, "Data at
 * scale"). The training set stays on disk; a reader thread reads it in windows of
 * window_blocks blocks of block_rows rows, one window ahead of the steps, into two resident
 * slots, with plain file reads (pread) of each file's contiguous arrays. The epoch's order
 * of samples is a function of (seed, epoch) alone, so every rank (each reads whole windows
 * itself) sees the same order whatever the rank count:
 *   - blocks: block j holds the rows [j R, (j + 1) R) of the files' concatenation; the
 *     last one may be short;
 *   - one window (window_blocks >= the block count): the whole set, visited in the
 *     replicated placement's order (the permutation of stream epoch_stream + e, identity
 *     when shuffle is off), so a streamed run with one window trains exactly as replicated;
 *   - several windows: the full blocks are permuted (rng stream STREAM_BLOCKS + e), the
 *     short block goes last, consecutive groups of window_blocks blocks form the windows,
 *     and each window's rows are shuffled (stream STREAM_WINDOW + (e << 32) + w). Without
 *     shuffle both are identities: the files' order.
 * Not MPI: each rank runs its own stream; the caller agrees on errors. */
#ifndef DMLP_STREAM_H
#define DMLP_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "data/dataset.h"

#define STREAM_BLOCKS (UINT64_C(1) << 62)
#define STREAM_WINDOW (UINT64_C(1) << 63)

struct stream_params {
    size_t block_rows;      /* R, >= 1 */
    size_t window_blocks;   /* W, >= 1 */
    size_t memory_bytes;    /* the budget for the resident slots (rows and their order) */
    size_t batch;           /* the global batch: a step must span at most two windows */
    uint64_t seed;
    uint64_t epoch_stream;  /* the replicated placement's stream of epoch 0 */
    int shuffle;
};

/* What the opening pass over every row found (sums in double, in row order: the bits of
 * dataset_feature_sums over the whole set). */
struct stream_stats {
    size_t n, d, k;          /* k: classes (num_classes, else the largest label + 1) or the
                                targets' width */
    int has_labels, has_weights;
    double *fsum, *fsumsq;   /* [d] */
    double *tsum, *tsumsq;   /* [k] for targets, else NULL */
    uint64_t *class_count;   /* [k] for labels, else NULL */
    double weight_sum;       /* Σ /weights (the row count without them) */
    double pass_seconds;     /* the opening pass: its time and the bytes it read */
    double pass_bytes;
};

struct stream;

/* Opens the set f for streaming. Each file's layout is checked as dataset_read_files checks
 * it, and each array must be contiguous and native float32 (/features, /targets,
 * /weights) or int32 (/labels), which plain file reads can take; messages name the file.
 * Then every row is read once, in order, its values checked as dataset_read checks them,
 * and the statistics summed. The budget must hold the two slots (one when the set is one
 * window), and a window must hold p->batch rows. Not collective. */
int stream_open(struct stream **out, const struct dataset_files *f,
                const struct stream_params *p, struct dmlp_error *err);
const struct stream_stats *stream_stats(const struct stream *s);

/* The rows the steps gather from: both slots, one after the other (a dataset the stream
 * owns; dataset_free frees only the struct). Its weights are set by stream_transform. */
struct dataset *stream_resident(struct stream *s);
/* Rows per window (the last may hold fewer), windows per epoch, bytes of the slots. */
size_t stream_window_rows(const struct stream *s);
uint64_t stream_windows(const struct stream *s);
size_t stream_resident_bytes(const struct stream *s);

/* What each window gets as it is read: when w is not NULL, w[i] = /weights × class_w[label]
 * (either factor 1 when absent) for each resident row i (w: stream_resident's rows). Rows
 * are not standardised here: each rank standardises only the rows it gathers. Call before
 * stream_start. */
void stream_weigh(struct stream *s, const double *class_w, float *w);

/* Starts the reader thread, with the seed of the orders (a resumed run's, from its
 * checkpoint). */
int stream_start(struct stream *s, uint64_t seed, struct dmlp_error *err);

/* The resident rows of positions [lo, hi) of epoch e's order (hi - lo <= the batch), into
 * idx, waiting for their windows; then asks the reader for the window after them. Positions
 * never go back within an epoch. An error (a file changed or could not be read) names the
 * file. */
int stream_positions(struct stream *s, uint64_t epoch, uint64_t lo, uint64_t hi,
                     uint64_t *idx, double *waited, struct dmlp_error *err);

void stream_close(struct stream **s);

/* Epoch e's order as global rows of the concatenation (order: [n]), by the rules above:
 * the definition the tests check the reader against. */
int stream_order(uint64_t *order, size_t n, const struct stream_params *p, uint64_t epoch,
                 struct dmlp_error *err);

#endif
