/* predict: runs a network over a dataset and writes the predictions file of
 * docs/architecture.md, "Formats":
 *
 *     /                attrs: format="dmlp-predictions", format_version=1, dmlp_version,
 *                             loss, and checkpoint / input when given
 *     /predictions     float32 [N, K]   the network outputs (softmax probabilities for a
 *                                       cross_entropy classifier, raw outputs for mse)
 *     /labels          int32 [N]        argmax of each row (first max wins); classifiers only
 *
 * Every rank computes the outputs of its contiguous slice of the rows (dmlp_slice); rank 0
 * gathers them and writes the file through a temporary name beside the output, fsynced and
 * renamed, so an existing output is never left half-written. An I/O module: includes hdf5.h,
 * silences HDF5's error printer while it runs, and reaches MPI through dist only. */
#ifndef DMLP_PREDICT_H
#define DMLP_PREDICT_H

#include "data/dataset.h"
#include "par/dist.h"
#include "nn/model.h"
#include "core/util.h"

/* Predicts every row of in with m and writes output (rank 0). checkpoint and input name
 * where the weights and rows came from: stored as root attributes and, for input, used in
 * messages; either may be NULL. in may come from dataset_read or dataset_read_features
 * (its labels/targets are ignored). Collective over d; every rank returns the same status
 * (DMLP_ERR_INPUT for a width mismatch or an empty input, DMLP_ERR_RUNTIME for I/O). */
int predict_run(const struct dist *d, struct model *m, const struct dataset *in,
                const char *output, const char *checkpoint, const char *input,
                struct dmlp_error *err);

/* predict_run for an ensemble (ensemble.h) on raw rows: /predictions holds the members'
 * mean, /std their standard deviation, /entropy (classifiers) the mean's entropy, /labels
 * the mean's argmax; the root attribute members counts them, checkpoint lists them. The
 * ensemble must take calls of ENSEMBLE_CALL_ROWS rows. */
struct ensemble;
int predict_run_ensemble(const struct dist *d, struct ensemble *ens, const struct dataset *in,
                         const char *output, const char *checkpoints, const char *input,
                         struct dmlp_error *err);

#endif
