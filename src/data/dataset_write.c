#define _POSIX_C_SOURCE 200809L
/* dataset_write: the dataset file's writer (docs/architecture.md, "Formats"), for the importers
 * and the tests. What dataset_read would reject is refused before anything is written, and the
 * file appears under its name only when complete (publish.h). Every message names the file;
 * HDF5's own error printer is silenced while the writer runs. */
#include "data/dataset.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"
#include "data/h5util.h"
#include "core/publish.h"

static int validate_for_write(const struct dataset *ds, const char *path,
                              struct dmlp_error *err);
static int write_file(const struct dataset *ds, const char *tmp, const char *path,
                      const char *const *class_names, struct dmlp_error *err);

/* ---- public functions -------------------------------------------------------------------- */

int dataset_write(const struct dataset *ds, const char *path, struct dmlp_error *err)
{
    return dataset_write_named(ds, path, NULL, err);
}

int dataset_write_named(const struct dataset *ds, const char *path,
                        const char *const *class_names, struct dmlp_error *err)
{
    int rc = validate_for_write(ds, path, err);
    if (rc != DMLP_OK)
        return rc;
    struct publish p;
    if ((rc = publish_begin(&p, path, err)) != DMLP_OK)
        return rc;
    H5UTIL_QUIETLY(rc, write_file(ds, p.tmp, path, class_names, err));
    if (rc == DMLP_OK)
        return publish_commit(&p, err);
    publish_abort(&p);
    return rc;
}

/* ---- helpers --------------------------------------------------------------------------- */

static int write_file(const struct dataset *ds, const char *tmp, const char *path,
                      const char *const *class_names, struct dmlp_error *err)
{
    const hid_t file = h5util_create_file(tmp, path, err);
    if (file < 0)
        return DMLP_ERR_RUNTIME; /* h5util_create_file said why */
    /* Contiguous, uncompressed: every rank reads the whole file at start-up, and a plain
     * layout is read at disk speed with no per-rank decompression; it also keeps any row
     * range a cheap hyperslab for a sharded placement. The cost is disk space only. */
    hsize_t fdims[2] = {ds->n, ds->d}, ydims[2] = {ds->n, ds->k};
    const int32_t version = 1, classes = (int32_t)ds->k;
    int rc = h5util_write_str_attr(file, path, "/", "format", "dmlp-dataset", err);
    if (rc == DMLP_OK)
        rc = h5util_write_num_attr(file, path, "/", "format_version", H5T_STD_I32LE,
                                   H5T_NATIVE_INT32, &version, err);
    if (rc == DMLP_OK)
        rc = h5util_write_array(file, path, "/features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2,
                                fdims, ds->features, err);
    if (rc == DMLP_OK && ds->labels) {
        rc = h5util_write_array(file, path, "/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1,
                                ydims, ds->labels, err);
        if (rc == DMLP_OK)
            rc = h5util_write_num_attr(file, path, "/labels", "num_classes", H5T_STD_I32LE,
                                       H5T_NATIVE_INT32, &classes, err);
        if (rc == DMLP_OK && class_names)
            rc = h5util_write_str_list_attr(file, path, "/labels", "class_names", class_names,
                                            ds->k, err);
    } else if (rc == DMLP_OK) {
        rc = h5util_write_array(file, path, "/targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, ydims,
                         ds->targets, err);
    }
    if (rc == DMLP_OK && ds->weights)
        rc = h5util_write_array(file, path, "/weights", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1,
                                ydims, ds->weights, err);
    return h5util_finish_file(file, path, tmp, rc, err);
}

/* Refuses, naming what is wrong, a dataset that would not make a valid file. */
static int validate_for_write(const struct dataset *ds, const char *path,
                              struct dmlp_error *err)
{
    if (!ds)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: no dataset given", path);
    if (!ds->features || ds->n == 0 || ds->d == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: the dataset has no "
                         "features (0 rows or columns)", path);
    if (ds->labels && ds->targets)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: the dataset has both "
                         "labels and targets", path);
    if (!ds->labels && !ds->targets)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: the dataset has neither "
                         "labels nor targets", path);
    if (ds->k == 0 || (ds->labels && ds->k > INT32_MAX))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: k = %zu, expected "
                         "1 to %d", path, ds->k, INT32_MAX);
    size_t nd, nk;
    if (dmlp_mul_size(&nd, ds->n, ds->d) || (ds->targets && dmlp_mul_size(&nk, ds->n, ds->k)))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: %zu rows x %zu "
                         "features or %zu targets overflows size_t", path, ds->n, ds->d,
                         ds->k);
    /* Whatever dataset_read would reject is refused here, so a written file always reads. */
    size_t i = dmlp_first_nonfinite(ds->features, ds->n * ds->d);
    if (i < ds->n * ds->d)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: features row %zu, "
                         "column %zu is %s", path, i / ds->d, i % ds->d,
                         dmlp_nonfinite_name(ds->features[i]));
    i = ds->targets ? dmlp_first_nonfinite(ds->targets, ds->n * ds->k) : 0;
    if (ds->targets && i < ds->n * ds->k)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: targets row %zu, "
                         "column %zu is %s", path, i / ds->k, i % ds->k,
                         dmlp_nonfinite_name(ds->targets[i]));
    for (size_t i = 0; ds->labels && i < ds->n; i++)
        if (ds->labels[i] < 0 || (size_t)ds->labels[i] >= ds->k)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: label %" PRId32
                             " at row %zu is outside [0, %zu)", path, ds->labels[i], i, ds->k);
    return DMLP_OK;
}
