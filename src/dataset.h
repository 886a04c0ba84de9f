/* dataset: the HDF5 dataset file of DESIGN §4 (/features float32 [N, D]; /labels int32 [N]
 * in [0, K) for classification, or /targets float32 [N, K] for regression), read whole into
 * memory (the replicated placement), written by the importers, and described by inspect.
 * Only this module and the other I/O modules include hdf5.h. Never touches MPI. */
#ifndef DMLP_DATASET_H
#define DMLP_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

struct dataset {
    size_t n;          /* rows (samples) */
    size_t d;          /* features per row */
    size_t k;          /* classes (labels) or target width (targets) */
    float *features;   /* [n, d], row-major, 64-byte aligned */
    int32_t *labels;   /* [n] in [0, k), or NULL */
    float *targets;    /* [n, k], or NULL; exactly one of labels/targets is set */
};

/* Reads and validates the file at path: /features present, 2-D, float-convertible, finite;
 * exactly one of /labels (1-D, N rows, values >= 0) or /targets (2-D, N rows, finite).
 * The class count K is max(label)+1, or the file's "num_classes" attribute on /labels
 * when present (which must exceed every label). Every error names the file and dataset.
 * On error *out is NULL. */
int dataset_read(struct dataset **out, const char *path, struct dmlp_error *err);

/* Writes ds to path (via a temporary file renamed into place, so an existing file is never
 * left half-written). /labels gets the attribute num_classes = ds->k. */
int dataset_write(const struct dataset *ds, const char *path, struct dmlp_error *err);

/* Allocates an empty dataset with room for n rows (features zeroed); with_labels selects
 * /labels (else /targets of width k). */
int dataset_alloc(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                  struct dmlp_error *err);

void dataset_free(struct dataset **ds);

/* Prints a description of a dataset file (shapes, dtype, label kind, class counts) to f.
 * Returns DMLP_ERR_INPUT if the file is not a valid dataset. */
int dataset_describe(FILE *f, const char *path, struct dmlp_error *err);

/* Imports MNIST-style IDX files (gzip-compressed or plain): images (magic 0x00000803,
 * uint8 [N, rows, cols]) and labels (magic 0x00000801, uint8 [N]) into a dataset with
 * features = pixel / 255 (in [0, 1]), D = rows*cols, K = 10 (or max label + 1 if larger).
 * Writes the result to output. Errors name the file and what is wrong (bad magic,
 * truncated, counts that disagree). */
int dataset_import_idx(const char *images, const char *labels, const char *output,
                       struct dmlp_error *err);

#endif
