/* dataset_internal: what the files of the dataset module (dataset.c, dataset_read.c,
 * dataset_write.c, dataset_describe.c, import_idx.c, import_csv.c) share with each other
 * and nothing else includes. The public API is dataset.h. */
#ifndef DMLP_DATASET_INTERNAL_H
#define DMLP_DATASET_INTERNAL_H

#include "data/dataset.h"

/* The on-disk element types of the file just read ("float32", "uint8", ...), kept for
 * dataset_describe. */
struct dataset_file_types {
    char features[32];
    char y[32]; /* of /labels or /targets */
};

/* dataset_alloc, but n may be 0 (a shard or split part with no rows): the buffers then
 * hold one row, so features and labels/targets are never NULL. */
int dataset_alloc_rows(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                       struct dmlp_error *err);

/* Room for ds->n sample weights (at least one) in ds->weights. */
int dataset_alloc_weights(struct dataset *ds, struct dmlp_error *err);

/* dataset_read, also filling *types with the file's element types. */
int dataset_read_typed(struct dataset **out, const char *path, struct dataset_file_types *types,
                       struct dmlp_error *err);

/* dataset_write, plus the class_names attribute on /labels when class_names is not NULL
 * (ds->k names, by class id). */
int dataset_write_named(const struct dataset *ds, const char *path,
                        const char *const *class_names, struct dmlp_error *err);

#endif
