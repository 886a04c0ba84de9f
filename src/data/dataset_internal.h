/* dataset_internal: what the files of the dataset module (dataset.c, dataset_read.c,
 * dataset_write.c, dataset_describe.c, import_idx.c, import_csv.c) share with each other
 * and nothing else includes. The public API is dataset.h. */
#ifndef DMLP_DATASET_INTERNAL_H
#define DMLP_DATASET_INTERNAL_H

#include <hdf5.h>

#include "data/dataset.h"
#include "data/h5util.h"

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

/* ---- the reader's pieces, shared by dataset_read.c and dataset_files.c ---------------- */

/* What validating a file's layout learns. Both datasets stay open for the reads, so the
 * whole-file read, a row range and a shard share one validation with one set of messages. */
struct layout {
    hid_t fds, yds;      /* /features, and /labels or /targets */
    hid_t wds;           /* /weights when the file has it, else H5I_INVALID_HID */
    struct h5util_info fs, ys, ws; /* ys.is_signed: labels read as int64, else uint64 */
    size_t n, d, k;      /* k: the width of /targets (labels: see has_nc) */
    int has_labels;
    int has_nc;          /* /labels carries num_classes = nc */
    int64_t nc;
    int filtered;        /* either dataset is stored through a filter (compression) */
};

/* Opens path for reading in this process alone: a regular file, and HDF5. */
int dsr_open_file(const char *path, hid_t *file, struct dmlp_error *err);

/* Closes a file of dsr_open_file after a read that ended with rc; a failed close fails the
 * read. On failure *ds is freed. Returns the read's status. */
int dsr_close_file(hid_t file, const char *path, int rc, struct dataset **ds,
                   struct dmlp_error *err);

/* Validates the layout of an open file into lo (which datasets, their types and shapes,
 * num_classes); only metadata is read. dsr_layout_close closes what it opened. */
int dsr_layout_open(hid_t file, const char *path, struct layout *lo, struct dmlp_error *err);
void dsr_layout_close(struct layout *lo);

/* Reads the file's rows [row0, row0 + ds->n) into ds (labels into the int64 staging
 * buffer wide) through the transfer list dxpl; *collective (may be NULL) tells whether
 * the features' transfer ran collectively. */
int dsr_read_block(const struct layout *lo, const char *path, size_t row0, struct dataset *ds,
                   int64_t *wide, hid_t dxpl, int *collective, struct dmlp_error *err);

/* The first non-finite value of x [n × cols] named as dataset_read names it ("path: name:
 * row R, column C is NaN", R counted from row0), or DMLP_OK. */
int dsr_check_finite(const float *x, size_t n, size_t cols, size_t row0, const char *path,
                     const char *name, struct dmlp_error *err);

/* Sample weights w [n]: finite and not negative, with dataset_read's messages. */
int dsr_check_weights(const float *w, size_t n, size_t row0, const char *path,
                      struct dmlp_error *err);

/* What dataset_files_survey calls for file i of a set while it is open, its layout checked
 * against the set's first file, its rows starting at row0 of the concatenation. */
typedef int dataset_file_visit(hid_t file, const char *path, const struct layout *lo,
                               size_t i, size_t row0, void *ctx, struct dmlp_error *err);

/* The checks dataset_read_files makes of every file's layout before it reads a value
 * (dataset_files_shape's), calling visit (may be NULL) on each file; *shape is the set's
 * (k of labels: the largest num_classes, 0 if none). */
int dataset_files_survey(const struct dataset_files *f, dataset_file_visit *visit, void *ctx,
                         struct dataset_shape *shape, struct dmlp_error *err);

/* Checks the rows just read (messages give the file's row numbers) and stores the labels
 * from wide; *k_rows: num_classes when the file has it, else the largest label + 1 (0 for
 * no rows), or the targets' width. */
int dsr_check_block(const struct layout *lo, const char *path, size_t row0,
                    struct dataset *ds, const int64_t *wide, size_t *k_rows,
                    struct dmlp_error *err);

#endif
