#define _POSIX_C_SOURCE 200809L
/* dataset_read: reading a dataset file into memory, whole, a row range, or one rank's shard
 * through parallel HDF5 (MPI-IO), with one validation of its layout (which datasets, their
 * types and shapes, num_classes) and of the values read (finite, labels in range) shared by
 * all three. Every message names the file and the dataset at fault, with the file's row
 * numbers; HDF5's own error printer is silenced while these functions run. */
#include "data/dataset.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"
#include "par/dist.h"
#include "data/h5util.h"
#include "core/partition.h"

static int read_file(struct dataset **out, const char *path, size_t row0, size_t nrows,
                     size_t *total_rows, struct dataset_file_types *types,
                     struct dmlp_error *err);
static int read_shard(struct dataset **out, const char *path, const struct dist *d,
                      struct dataset_shard *info, struct dmlp_error *err);
static int read_features(struct dataset **out, const char *path, struct dmlp_error *err);

/* ---- public functions -------------------------------------------------------------------- */

int dataset_read(struct dataset **out, const char *path, struct dmlp_error *err)
{
    return dataset_read_typed(out, path, NULL, err);
}

int dataset_read_typed(struct dataset **out, const char *path, struct dataset_file_types *types,
                       struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, read_file(out, path, 0, SIZE_MAX, NULL, types, err));
    return rc;
}

int dataset_read_rows(struct dataset **out, const char *path, size_t row0, size_t nrows,
                      size_t *total_rows, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, read_file(out, path, row0, nrows, total_rows, NULL, err));
    return rc;
}

int dataset_read_shard(struct dataset **out, const char *path, const struct dist *d,
                       struct dataset_shard *shard, struct dmlp_error *err)
{
    struct dmlp_error e;
    struct dataset_shard info = {0};
    dmlp_error_clear(&e);
    *out = NULL;
    int rc;
    H5UTIL_QUIETLY(rc, read_shard(out, path, d, &info, &e));
    if (shard)
        *shard = info;
    if (err)
        *err = e;
    return rc;
}

int dataset_read_features(struct dataset **out, const char *path, struct dmlp_error *err)
{
    int rc;
    H5UTIL_QUIETLY(rc, read_features(out, path, err));
    return rc;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* hsize_t -> size_t without a warning on platforms where they are the same width. */
static int to_size(hsize_t v, size_t *out)
{
    *out = (size_t)v;
    return (hsize_t)*out == v ? 0 : -1;
}

static int link_exists(hid_t file, const char *path, const char *name, int *exists,
                       struct dmlp_error *err)
{
    char why[256];
    htri_t e = H5Lexists(file, name, H5P_DEFAULT);
    if (e < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot look up %s: %s", path, name,
                         h5util_reason(why, sizeof why));
    *exists = e > 0;
    return DMLP_OK;
}

static int is_filtered(hid_t dset)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return 0;
    int n = H5Pget_nfilters(dcpl);
    H5Pclose(dcpl);
    return n > 0;
}

void dsr_layout_close(struct layout *lo)
{
    if (lo->fds >= 0)
        H5Dclose(lo->fds);
    if (lo->yds >= 0)
        H5Dclose(lo->yds);
    if (lo->wds >= 0)
        H5Dclose(lo->wds);
    lo->fds = lo->yds = lo->wds = H5I_INVALID_HID;
}

/* /features must exist: every dataset file has it, and so does every input to predict. */
static int features_exist(hid_t file, const char *path, struct dmlp_error *err)
{
    int has = 0;
    const int rc = link_exists(file, path, "/features", &has, err);
    if (rc == DMLP_OK && !has)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: missing (expected float32 "
                         "[N, D])", path);
    return rc;
}

/* Opens /features into lo (fds, fs, n, d): a 2-D float-convertible array with at least one
 * row and column. Class, rank and storage (not virtual, not external, every filter
 * decodable) are checked by h5util before anything is read. On failure lo->fds may be open:
 * dsr_layout_close closes it. */
static int features_open(hid_t file, const char *path, struct layout *lo,
                         struct dmlp_error *err)
{
    const struct h5util_info *fs = &lo->fs;
    const int rc = h5util_open_dataset(file, path, "/features", H5UTIL_FLOAT | H5UTIL_INTEGER,
                                       "float array", 2, NULL, &lo->fds, &lo->fs, err);
    if (rc != DMLP_OK)
        return rc;
    if (to_size(fs->dims[0], &lo->n) || to_size(fs->dims[1], &lo->d))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: shape [%llu, %llu] overflows "
                         "size_t", path, (unsigned long long)fs->dims[0],
                         (unsigned long long)fs->dims[1]);
    if (lo->n == 0 || lo->d == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: empty (%zu rows, %zu columns); "
                         "expected at least one of each", path, lo->n, lo->d);
    return DMLP_OK;
}

/* Which answers the file holds: /features and exactly one of /labels (classification) and
 * /targets (regression); sets lo->has_labels. */
static int answers_kind(hid_t file, const char *path, struct layout *lo,
                        struct dmlp_error *err)
{
    int has_l = 0, has_t = 0, rc;
    if ((rc = features_exist(file, path, err)) != DMLP_OK ||
        (rc = link_exists(file, path, "/labels", &has_l, err)) != DMLP_OK ||
        (rc = link_exists(file, path, "/targets", &has_t, err)) != DMLP_OK)
        return rc;
    if (has_l && has_t)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: has both /labels and /targets; expected "
                         "exactly one", path);
    if (!has_l && !has_t)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: has neither /labels nor /targets; expected "
                         "exactly one", path);
    lo->has_labels = has_l;
    return DMLP_OK;
}

/* Opens /labels or /targets into lo (yds, ys, k, and num_classes when present): one row
 * per row of /features, integer labels or at least one target column. On failure lo->yds
 * may be open: dsr_layout_close closes it. */
static int answers_open(hid_t file, const char *path, struct layout *lo,
                        struct dmlp_error *err)
{
    const int has_l = lo->has_labels;
    const char *yname = has_l ? "/labels" : "/targets";
    struct h5util_info *ys = &lo->ys;
    size_t yn = 0;
    int rc;
    if (has_l)
        rc = h5util_open_dataset(file, path, "/labels", H5UTIL_INTEGER, "integer class labels",
                                 1, NULL, &lo->yds, ys, err);
    else
        rc = h5util_open_dataset(file, path, "/targets", H5UTIL_FLOAT | H5UTIL_INTEGER,
                                 "float array", 2, NULL, &lo->yds, ys, err);
    if (rc != DMLP_OK)
        return rc;
    if (!has_l && (to_size(ys->dims[1], &lo->k) || lo->k == 0))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets: %llu columns; expected at "
                         "least one", path, (unsigned long long)ys->dims[1]);
    if (to_size(ys->dims[0], &yn) || yn != lo->n)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: %llu rows, but /features has %zu", path,
                         yname, (unsigned long long)ys->dims[0], lo->n);
    if (has_l) {
        /* num_classes: optional, a positive int32 scalar. */
        uint64_t nc = 0;
        if ((rc = h5util_read_uint_attr(file, path, "/labels", "num_classes", 1, INT32_MAX,
                                        &nc, &lo->has_nc, err)) != DMLP_OK)
            return rc;
        lo->nc = (int64_t)nc;
    }
    return DMLP_OK;
}

/* Opens the optional /weights into lo (wds, ws): one float-convertible value per row. */
static int weights_open(hid_t file, const char *path, struct layout *lo,
                        struct dmlp_error *err)
{
    int has = 0;
    size_t wn = 0;
    int rc = link_exists(file, path, "/weights", &has, err);
    if (rc != DMLP_OK || !has)
        return rc;
    if ((rc = h5util_open_dataset(file, path, "/weights", H5UTIL_FLOAT | H5UTIL_INTEGER,
                                  "float array (one weight per sample)", 1, NULL, &lo->wds,
                                  &lo->ws, err)) != DMLP_OK)
        return rc;
    if (to_size(lo->ws.dims[0], &wn) || wn != lo->n)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /weights: %llu rows, but /features has %zu",
                         path, (unsigned long long)lo->ws.dims[0], lo->n);
    return DMLP_OK;
}

/* Validates the layout of an open file: which datasets exist, their types and shapes, and
 * the num_classes attribute. Only metadata is read, identically on every rank. */
int dsr_layout_open(hid_t file, const char *path, struct layout *lo, struct dmlp_error *err)
{
    memset(lo, 0, sizeof *lo);
    lo->fds = lo->yds = lo->wds = H5I_INVALID_HID;
    int rc = answers_kind(file, path, lo, err);
    if (rc != DMLP_OK)
        return rc;
    if ((rc = features_open(file, path, lo, err)) != DMLP_OK ||
        (rc = answers_open(file, path, lo, err)) != DMLP_OK ||
        (rc = weights_open(file, path, lo, err)) != DMLP_OK) {
        dsr_layout_close(lo);
        return rc;
    }
    lo->filtered = is_filtered(lo->fds) || is_filtered(lo->yds);
    return DMLP_OK;
}

/* Reads rows [row0, row0 + nrows) of a 1-D or 2-D dataset (cols columns) into buf with a
 * hyperslab. nrows may be 0: the read then selects nothing, which a collective transfer
 * still needs every rank to join. */
static int read_rows_of(hid_t dset, const char *path, const char *name, hid_t mem_type,
                        int rank, size_t row0, size_t nrows, size_t cols, void *buf, hid_t dxpl,
                        struct dmlp_error *err)
{
    char why[256];
    hsize_t start[2] = {row0, 0}, count[2] = {nrows, cols};
    hsize_t mdims[2] = {nrows > 0 ? nrows : 1, cols};
    hid_t fspace = H5Dget_space(dset);
    hid_t mspace = H5Screate_simple(rank, mdims, NULL);
    int ok = fspace >= 0 && mspace >= 0;
    if (ok && nrows == 0)
        ok = H5Sselect_none(fspace) >= 0 && H5Sselect_none(mspace) >= 0;
    else if (ok)
        ok = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0;
    ok = ok && H5Dread(dset, mem_type, mspace, fspace, dxpl, buf) >= 0;
    if (!ok)
        h5util_reason(why, sizeof why);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    return ok ? DMLP_OK
              : dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: %s: read failed: %s", path, name, why);
}

/* Reads rows [row0, row0 + ds->n): features into ds, labels into wide (64 bits in the
 * file's signedness: int64, or uint64 for an unsigned type, so that any stored value, up to
 * 2^64 - 1, is reported with its row as stored rather than clipped by HDF5's conversion) or
 * targets into ds. Both reads are always attempted, so that under collective I/O every rank
 * joins both whatever happened to the first. *collective (if not NULL) tells whether the
 * features transfer actually ran collectively. */
int dsr_read_block(const struct layout *lo, const char *path, size_t row0,
                      struct dataset *ds, int64_t *wide, hid_t dxpl, int *collective,
                      struct dmlp_error *err)
{
    /* H5T_NATIVE_FLOAT as the memory type: HDF5 converts float64 or integer files. */
    int rc = read_rows_of(lo->fds, path, "/features", H5T_NATIVE_FLOAT, 2, row0, ds->n, ds->d,
                          ds->features, dxpl, err);
    if (collective) {
        H5D_mpio_actual_io_mode_t mode = H5D_MPIO_NO_COLLECTIVE;
        *collective = H5Pget_mpio_actual_io_mode(dxpl, &mode) >= 0 &&
                      mode != H5D_MPIO_NO_COLLECTIVE;
    }
    struct dmlp_error e2;
    int rc2 = lo->has_labels
                  ? read_rows_of(lo->yds, path, "/labels",
                                 lo->ys.is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, 1,
                                 row0, ds->n, 1, wide, dxpl, &e2)
                  : read_rows_of(lo->yds, path, "/targets", H5T_NATIVE_FLOAT, 2, row0, ds->n,
                                 ds->k, ds->targets, dxpl, &e2);
    if (rc == DMLP_OK && rc2 != DMLP_OK) {
        rc = rc2;
        if (err)
            *err = e2;
    }
    if (lo->wds >= 0) {
        rc2 = read_rows_of(lo->wds, path, "/weights", H5T_NATIVE_FLOAT, 1, row0, ds->n, 1,
                           ds->weights, dxpl, &e2);
        if (rc == DMLP_OK && rc2 != DMLP_OK) {
            rc = rc2;
            if (err)
                *err = e2;
        }
    }
    return rc;
}

int dsr_check_finite(const float *x, size_t n, size_t cols, size_t row0, const char *path,
                        const char *name, struct dmlp_error *err)
{
    const size_t i = dmlp_first_nonfinite(x, n * cols);
    if (i < n * cols)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: row %zu, column %zu is %s", path, name,
                         row0 + i / cols, i % cols, dmlp_nonfinite_name(x[i]));
    return DMLP_OK;
}

/* Sample weights: finite and not negative (a weight of 0 leaves the sample out). */
int dsr_check_weights(const float *w, size_t n, size_t row0, const char *path,
                         struct dmlp_error *err)
{
    const int rc = dsr_check_finite(w, n, 1, row0, path, "/weights", err);
    for (size_t i = 0; rc == DMLP_OK && i < n; i++)
        if (w[i] < 0)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /weights: row %zu is %g; sample "
                             "weights must be >= 0", path, row0 + i, (double)w[i]);
    return rc;
}

/* Checks the rows just read (row numbers in messages are the file's) and stores the labels.
 * *k_rows: the class count these rows imply, num_classes if the file has it, else the
 * largest label + 1 (0 for no rows); the targets' width for regression. */
int dsr_check_block(const struct layout *lo, const char *path, size_t row0,
                       struct dataset *ds, const int64_t *wide, size_t *k_rows,
                       struct dmlp_error *err)
{
    int rc = dsr_check_finite(ds->features, ds->n, ds->d, row0, path, "/features", err);
    if (rc == DMLP_OK && ds->weights)
        rc = dsr_check_weights(ds->weights, ds->n, row0, path, err);
    if (rc != DMLP_OK)
        return rc;
    if (!lo->has_labels) {
        *k_rows = lo->k;
        return dsr_check_finite(ds->targets, ds->n, ds->k, row0, path, "/targets", err);
    }
    int64_t max = -1;
    size_t max_row = 0;
    /* Unsigned labels were read as uint64 into the same buffer (the signed and unsigned
     * variants of one type may alias). */
    const uint64_t *uwide = (const uint64_t *)wide;
    for (size_t i = 0; i < ds->n; i++) {
        if (!lo->ys.is_signed && uwide[i] > INT32_MAX)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: value %" PRIu64
                             " at row %zu does not fit in int32", path, uwide[i], row0 + i);
        if (wide[i] < 0)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: value %" PRId64
                             " at row %zu is negative", path, wide[i], row0 + i);
        if (wide[i] > INT32_MAX)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: value %" PRId64
                             " at row %zu does not fit in int32", path, wide[i], row0 + i);
        if (wide[i] > max) {
            max = wide[i];
            max_row = row0 + i;
        }
        ds->labels[i] = (int32_t)wide[i];
    }
    if (lo->has_nc && lo->nc <= max)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: /labels: num_classes attribute is %" PRId64 ", but label %" PRId64
                         " at row %zu is not below it", path, lo->nc, max, max_row);
    *k_rows = lo->has_nc ? (size_t)lo->nc : (size_t)(max + 1);
    return DMLP_OK;
}

/* Allocates ds for nrows rows of the file, and the int64 staging buffer for labels. */
static int alloc_block(const struct layout *lo, const char *path, size_t nrows,
                       struct dataset **ds, int64_t **wide, struct dmlp_error *err)
{
    *wide = NULL;
    int rc = dataset_alloc_rows(ds, nrows, lo->d, lo->k, lo->has_labels, err);
    if (rc == DMLP_OK && lo->wds >= 0 && (rc = dataset_alloc_weights(*ds, err)) != DMLP_OK)
        dataset_free(ds);
    if (rc != DMLP_OK) {
        dmlp_error_prefix(err, "%s", path);
        return rc;
    }
    if (lo->has_labels) {
        size_t bytes;
        if (dmlp_mul_size(&bytes, nrows > 0 ? nrows : 1, sizeof(int64_t)) ||
            !(*wide = malloc(bytes))) {
            dataset_free(ds);
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: /labels: out of memory for %zu rows",
                             path, nrows);
        }
    }
    return DMLP_OK;
}

/* Opens path for reading in this process alone: a regular file, and HDF5. */
int dsr_open_file(const char *path, hid_t *file, struct dmlp_error *err)
{
    char why[256];
    *file = H5I_INVALID_HID;
    const int rc = dmlp_check_input_file(path, err);
    if (rc != DMLP_OK)
        return rc;
    if (H5Fis_hdf5(path) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file", path);
    if ((*file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5: %s", path,
                         h5util_reason(why, sizeof why));
    return DMLP_OK;
}

/* Closes a file of dsr_open_file after a read that ended with rc; a failed close fails the
 * read. On failure *ds is freed. Returns the read's status. */
int dsr_close_file(hid_t file, const char *path, int rc, struct dataset **ds,
                      struct dmlp_error *err)
{
    char why[256];
    if (H5Fclose(file) < 0 && rc == DMLP_OK)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: closing failed: %s", path,
                       h5util_reason(why, sizeof why));
    if (rc != DMLP_OK)
        dataset_free(ds);
    return rc;
}

/* Reads rows [row0, row0 + nrows) (nrows == SIZE_MAX: to the end) in this process alone. */
static int read_file(struct dataset **out, const char *path, size_t row0, size_t nrows,
                     size_t *total_rows, struct dataset_file_types *types, struct dmlp_error *err)
{
    hid_t file;
    *out = NULL;
    int rc = dsr_open_file(path, &file, err);
    if (rc != DMLP_OK)
        return rc;
    struct layout lo;
    struct dataset *ds = NULL;
    int64_t *wide = NULL;
    size_t k = 0;
    if ((rc = dsr_layout_open(file, path, &lo, err)) != DMLP_OK)
        goto dsr_close_file;
    if (total_rows)
        *total_rows = lo.n;
    if (nrows == SIZE_MAX)
        nrows = row0 <= lo.n ? lo.n - row0 : 0;
    if (row0 > lo.n || nrows > lo.n - row0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: rows [%zu, %zu) requested, but /features has "
                       "%zu rows", path, row0, row0 + nrows, lo.n);
        goto close_layout;
    }
    if ((rc = alloc_block(&lo, path, nrows, &ds, &wide, err)) != DMLP_OK)
        goto close_layout;
    if ((rc = dsr_read_block(&lo, path, row0, ds, wide, H5P_DEFAULT, NULL, err)) == DMLP_OK &&
        (rc = dsr_check_block(&lo, path, row0, ds, wide, &k, err)) == DMLP_OK)
        ds->k = k;
    if (types) {
        snprintf(types->features, sizeof types->features, "%s", lo.fs.type_name);
        snprintf(types->y, sizeof types->y, "%s", lo.ys.type_name);
    }
close_layout:
    dsr_layout_close(&lo);
dsr_close_file:
    free(wide);
    rc = dsr_close_file(file, path, rc, &ds, err);
    *out = ds;
    return rc;
}

/* A features-only dataset of n rows x d columns (labels = targets = NULL, k = 0). The size
 * is refused before allocating when it cannot fit this machine's memory. */
static int alloc_features(const char *path, size_t n, size_t d, struct dataset **out,
                          struct dmlp_error *err)
{
    size_t nd = 0, bytes = 0;
    if (dmlp_mul_size(&nd, n, d) || dmlp_mul_size(&bytes, nd, sizeof(float)))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: shape [%zu, %zu] overflows "
                         "size_t", path, n, d);
    if (bytes > dmlp_phys_mem())
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: %zu rows x %zu features need %zu "
                         "bytes, more than this machine's %zu bytes of memory", path, n, d,
                         bytes, dmlp_phys_mem());
    struct dataset *ds = calloc(1, sizeof *ds);
    if (ds)
        ds->features = dmlp_alloc_aligned(bytes);
    if (!ds || !ds->features) {
        dataset_free(&ds);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: /features: out of memory for %zu rows x "
                         "%zu features", path, n, d);
    }
    ds->n = n;
    ds->d = d;
    *out = ds;
    return DMLP_OK;
}

/* The read behind dataset_read_features: /features validated as read_file validates it. */
static int read_features(struct dataset **out, const char *path, struct dmlp_error *err)
{
    hid_t file;
    *out = NULL;
    int rc = dsr_open_file(path, &file, err);
    if (rc != DMLP_OK)
        return rc;
    struct layout lo = {.fds = H5I_INVALID_HID, .yds = H5I_INVALID_HID,
                        .wds = H5I_INVALID_HID};
    struct dataset *ds = NULL;
    if ((rc = features_exist(file, path, err)) == DMLP_OK &&
        (rc = features_open(file, path, &lo, err)) == DMLP_OK &&
        (rc = alloc_features(path, lo.n, lo.d, &ds, err)) == DMLP_OK &&
        (rc = read_rows_of(lo.fds, path, "/features", H5T_NATIVE_FLOAT, 2, 0, lo.n, lo.d,
                           ds->features, H5P_DEFAULT, err)) == DMLP_OK)
        rc = dsr_check_finite(ds->features, lo.n, lo.d, 0, path, "/features", err);
    dsr_layout_close(&lo);
    rc = dsr_close_file(file, path, rc, &ds, err);
    *out = ds;
    return rc;
}

/* Opens path through MPI-IO on every rank of d (collective) and validates its layout into
 * lo; fapl and dxpl are fresh property lists (a negative id: their creation failed). */
static int open_parallel(const char *path, const struct dist *d, hid_t fapl, hid_t dxpl,
                         hid_t *file, struct layout *lo, struct dmlp_error *err)
{
    char why[256];
    /* MPI-IO underneath, and metadata read by one rank and broadcast rather than by all of
     * them: at a thousand ranks that is one small read instead of a metadata storm. */
    if (fapl < 0 || dxpl < 0 ||
        H5Pset_fapl_mpio(fapl, *(const MPI_Comm *)dist_mpi_comm(d), MPI_INFO_NULL) < 0 ||
        H5Pset_all_coll_metadata_ops(fapl, 1) < 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot set up parallel HDF5 access: %s",
                         path, h5util_reason(why, sizeof why));
    if ((*file = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5: %s", path,
                         h5util_reason(why, sizeof why));
    return dsr_layout_open(*file, path, lo, err);
}

/* Collective transfers where the file allows them: always for contiguous (or compact)
 * storage; for filtered (compressed) chunks only from HDF5 1.10.2 on, whose parallel
 * filter support reads them collectively. Decided from the file, so identically on every
 * rank: a rank that fell back on its own would leave the others waiting. */
static int set_transfer_mode(hid_t dxpl, const struct layout *lo, const char *path,
                             struct dmlp_error *err)
{
    char why[256];
#if H5_VERSION_GE(1, 10, 2)
    const int collective = 1;
    (void)lo;
#else
    const int collective = !lo->filtered;
#endif
    if (H5Pset_dxpl_mpio(dxpl, collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT) < 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot set up MPI-IO transfers: %s", path,
                         h5util_reason(why, sizeof why));
    return DMLP_OK;
}

/* read_shard's first agreement: path is a readable HDF5 file on every rank. */
static int agree_file_ok(const char *path, const struct dist *d, struct dmlp_error *err)
{
    const int rc = dmlp_check_input_file(path, err);
    if (rc == DMLP_OK && H5Fis_hdf5(path) <= 0)
        dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file", path);
    return dist_agree(d, err);
}

/* This rank's slice of lo's rows (info: the whole set's rows and the slice's first row)
 * and room for it: *ds, and *wide, the int64 staging buffer for labels. */
static int alloc_slice(const struct layout *lo, const char *path, const struct dist *d,
                       struct dataset_shard *info, struct dataset **ds, int64_t **wide,
                       struct dmlp_error *err)
{
    info->global_rows = lo->n;
    uint64_t row0, len;
    dmlp_slice(lo->n, dist_size(d), dist_rank(d), &row0, &len);
    info->row0 = (size_t)row0;
    return alloc_block(lo, path, (size_t)len, ds, wide, err);
}

/* Without num_classes, K is the largest label anywhere + 1: each rank's k (its own
 * largest + 1) becomes the maximum over all ranks. Collective. */
static size_t agree_classes(const struct layout *lo, const struct dist *d, size_t k)
{
    if (!lo->has_labels || lo->has_nc)
        return k;
    uint64_t k64 = k;
    dist_allreduce_max_u64(d, &k64, 1);
    return (size_t)k64;
}

/* Closing is collective too; a read-only file has nothing to lose on close, so its
 * status is not worth another agreement. */
static void close_shard(struct layout *lo, hid_t file, hid_t fapl, hid_t dxpl)
{
    dsr_layout_close(lo);
    if (file >= 0)
        H5Fclose(file);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (dxpl >= 0)
        H5Pclose(dxpl);
}

/* The collective read behind dataset_read_shard, with HDF5's printer already silenced.
 * Three agreement points keep every rank on the same path: after the local checks (a
 * missing file), after the collective open, validation and allocation, and after the reads
 * and the checks of each rank's rows. Between them every rank makes the same HDF5 calls,
 * in the same order, as parallel HDF5 requires. */
static int read_shard(struct dataset **out, const char *path, const struct dist *d,
                      struct dataset_shard *info, struct dmlp_error *err)
{
    if (agree_file_ok(path, d, err) != DMLP_OK)
        return err->code;

    struct layout lo = {.fds = H5I_INVALID_HID, .yds = H5I_INVALID_HID,
                        .wds = H5I_INVALID_HID};
    struct dataset *ds = NULL;
    int64_t *wide = NULL;
    size_t k = 0;
    hid_t file = H5I_INVALID_HID;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), dxpl = H5Pcreate(H5P_DATASET_XFER);
    int rc = open_parallel(path, d, fapl, dxpl, &file, &lo, err);
    if (rc == DMLP_OK)
        rc = alloc_slice(&lo, path, d, info, &ds, &wide, err);
    if (rc == DMLP_OK)
        rc = set_transfer_mode(dxpl, &lo, path, err);
    if (dist_agree(d, err) != DMLP_OK)
        goto done;

    rc = dsr_read_block(&lo, path, info->row0, ds, wide, dxpl, &info->collective, err);
    if (rc == DMLP_OK)
        rc = dsr_check_block(&lo, path, info->row0, ds, wide, &k, err);
    if (dist_agree(d, err) != DMLP_OK)
        goto done;
    ds->k = agree_classes(&lo, d, k);
done:
    close_shard(&lo, file, fapl, dxpl);
    free(wide);
    if (err->code != DMLP_OK)
        dataset_free(&ds);
    *out = ds;
    return err->code;
}
