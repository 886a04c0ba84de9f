#define _POSIX_C_SOURCE 200809L
/* dataset: reading, validating, writing and describing the HDF5 dataset file of DESIGN §4,
 * and the IDX (MNIST-style) importer. Every message names the file and the dataset at
 * fault; HDF5's own error printer is silenced while these functions run. */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The on-disk element types of the file just read, kept for dataset_describe. */
struct file_types {
    char features[32];
    char y[32]; /* of /labels or /targets */
};

/* What get_shape learns about one HDF5 dataset. */
struct h5_shape {
    int rank;
    hsize_t dims[H5S_MAX_RANK];
    H5T_class_t cls;
    char type_name[32];
};

/* HDF5's automatic error printer, saved and switched off while a public function runs so
 * that only our messages reach the user, then restored (the setting is per process, and
 * other modules may want it). */
struct h5_quiet {
    H5E_auto2_t func;
    void *data;
};

enum { IDX_MAGIC_LABELS = 0x00000801, IDX_MAGIC_IMAGES = 0x00000803 };

static void h5_quiet_begin(struct h5_quiet *q);
static void h5_quiet_end(const struct h5_quiet *q);
static const char *h5_reason(char *buf, size_t cap);
static int check_readable(const char *path, struct dmlp_error *err);
static int read_file(struct dataset **out, const char *path, struct file_types *types,
                     struct dmlp_error *err);
static int validate_for_write(const struct dataset *ds, const char *path,
                              struct dmlp_error *err);
static int write_file(const struct dataset *ds, const char *tmp, const char *path,
                      struct dmlp_error *err);
static int sync_and_rename(const char *tmp, const char *path, struct dmlp_error *err);
static const char *nonfinite_name(float x);
static int find_nonfinite(const float *x, size_t n, size_t cols, size_t *row, size_t *col);

/* ---- public functions -------------------------------------------------------------------- */

int dataset_alloc(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                  struct dmlp_error *err)
{
    *out = NULL;
    if (n == 0 || d == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "dataset of %zu rows x %zu features: need at least one of each", n, d);
    if (!with_labels && k == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "dataset with targets of width 0");
    size_t nd, fbytes, ybytes;
    if (dmlp_mul_size(&nd, n, d) || dmlp_mul_size(&fbytes, nd, sizeof(float)))
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "dataset of %zu rows x %zu features is too large (size overflow)", n, d);
    if (with_labels) {
        if (dmlp_mul_size(&ybytes, n, sizeof(int32_t)))
            return dmlp_fail(err, DMLP_ERR_INPUT, "%zu labels: size overflow", n);
    } else {
        size_t nk;
        if (dmlp_mul_size(&nk, n, k) || dmlp_mul_size(&ybytes, nk, sizeof(float)))
            return dmlp_fail(err, DMLP_ERR_INPUT,
                             "targets of %zu rows x %zu columns are too large (size overflow)",
                             n, k);
    }
    struct dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory allocating a dataset");
    ds->n = n;
    ds->d = d;
    ds->k = k;
    ds->features = dmlp_alloc_aligned(fbytes);
    if (with_labels)
        ds->labels = dmlp_alloc_aligned(ybytes);
    else
        ds->targets = dmlp_alloc_aligned(ybytes);
    if (!ds->features || (!ds->labels && !ds->targets)) {
        dataset_free(&ds);
        return dmlp_fail(err, DMLP_ERR_RUNTIME,
                         "out of memory allocating a dataset of %zu rows x %zu features "
                         "(%zu + %zu bytes)", n, d, fbytes, ybytes);
    }
    *out = ds;
    return DMLP_OK;
}

void dataset_free(struct dataset **ds)
{
    if (!ds || !*ds)
        return;
    dmlp_free_aligned((*ds)->features);
    dmlp_free_aligned((*ds)->labels);
    dmlp_free_aligned((*ds)->targets);
    free(*ds);
    *ds = NULL;
}

int dataset_read(struct dataset **out, const char *path, struct dmlp_error *err)
{
    struct h5_quiet q;
    struct file_types types;
    h5_quiet_begin(&q);
    int rc = read_file(out, path, &types, err);
    h5_quiet_end(&q);
    return rc;
}

int dataset_write(const struct dataset *ds, const char *path, struct dmlp_error *err)
{
    int rc = validate_for_write(ds, path, err);
    if (rc != DMLP_OK)
        return rc;
    /* A name beside the output, so the final rename() stays within one file system and is
     * atomic; the pid keeps concurrent writers (say, two ranks by mistake) apart. */
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", path);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());

    /* O_EXCL: never clobber a file that is not ours; it also gives a plain errno message
     * (missing directory, permissions) rather than HDF5's. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0) {
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot create %s: %s", path, tmp,
                       strerror(errno));
        free(tmp);
        return rc;
    }
    close(fd);

    struct h5_quiet q;
    h5_quiet_begin(&q);
    rc = write_file(ds, tmp, path, err);
    h5_quiet_end(&q);
    if (rc == DMLP_OK)
        rc = sync_and_rename(tmp, path, err);
    if (rc != DMLP_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

int dataset_describe(FILE *f, const char *path, struct dmlp_error *err)
{
    struct h5_quiet q;
    struct file_types types;
    struct dataset *ds = NULL;
    h5_quiet_begin(&q);
    int rc = read_file(&ds, path, &types, err);
    h5_quiet_end(&q);
    if (rc != DMLP_OK)
        return rc;

    size_t nd = ds->n * ds->d; /* checked when the buffers were allocated */
    double fmin = ds->features[0], fmax = ds->features[0], fsum = 0.0;
    for (size_t i = 0; i < nd; i++) {
        double v = ds->features[i];
        fmin = v < fmin ? v : fmin;
        fmax = v > fmax ? v : fmax;
        fsum += v;
    }
    fprintf(f, "dataset %s\n", path);
    fprintf(f, "  features  %s [%zu, %zu]\n", types.features, ds->n, ds->d);
    fprintf(f, "  feature values: min %g, mean %g, max %g\n", fmin, fsum / (double)nd, fmax);

    if (ds->labels) {
        fprintf(f, "  labels    %s [%zu], %zu classes\n", types.y, ds->n, ds->k);
        size_t *counts = calloc(ds->k, sizeof *counts);
        if (!counts) {
            size_t k = ds->k;
            dataset_free(&ds);
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory counting %zu classes",
                             path, k);
        }
        for (size_t i = 0; i < ds->n; i++)
            counts[ds->labels[i]]++;
        if (ds->k <= 100) {
            /* Ten classes a line keeps wide label sets readable. */
            fprintf(f, "  class counts:");
            for (size_t c = 0; c < ds->k; c++) {
                if (c > 0 && c % 10 == 0)
                    fprintf(f, "\n               ");
                fprintf(f, " %zu:%zu", c, counts[c]);
            }
            fprintf(f, "\n");
        } else {
            size_t cmin = 0, cmax = 0, empty = 0;
            for (size_t c = 0; c < ds->k; c++) {
                cmin = counts[c] < counts[cmin] ? c : cmin;
                cmax = counts[c] > counts[cmax] ? c : cmax;
                empty += counts[c] == 0;
            }
            fprintf(f, "  class counts: smallest %zu (class %zu), largest %zu (class %zu), "
                       "%zu classes empty\n", counts[cmin], cmin, counts[cmax], cmax, empty);
        }
        free(counts);
    } else {
        fprintf(f, "  targets   %s [%zu, %zu]\n", types.y, ds->n, ds->k);
        for (size_t j = 0; j < ds->k; j++) {
            double tmin = ds->targets[j], tmax = ds->targets[j], tsum = 0.0;
            for (size_t i = 0; i < ds->n; i++) {
                double v = ds->targets[i * ds->k + j];
                tmin = v < tmin ? v : tmin;
                tmax = v > tmax ? v : tmax;
                tsum += v;
            }
            fprintf(f, "  target %zu: min %g, mean %g, max %g\n", j, tmin,
                    tsum / (double)ds->n, tmax);
        }
    }
    dataset_free(&ds);
    if (ferror(f))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: writing the description failed", path);
    return DMLP_OK;
}

/* ---- IDX import ------------------------------------------------------------------------- */

/* One open IDX file: its header, and the stream positioned at the first data byte. */
struct idx_file {
    const char *path;
    gzFile gz;
    size_t header_bytes;
    uint32_t dims[3];
    off_t file_bytes; /* on disk (compressed, if gzip) */
};

static int idx_open(struct idx_file *f, const char *path, uint32_t magic, int ndims,
                    struct dmlp_error *err);
static int idx_read(struct idx_file *f, unsigned char *buf, size_t len, size_t *got,
                    struct dmlp_error *err);
static int idx_check_size(const struct idx_file *f, size_t need, const char *what,
                          struct dmlp_error *err);
static int idx_check_end(struct idx_file *f, const char *what, struct dmlp_error *err);
static void idx_close(struct idx_file *f);

int dataset_import_idx(const char *images, const char *labels, const char *output,
                       struct dmlp_error *err)
{
    struct idx_file im = {0}, lb = {0};
    struct dataset *ds = NULL;
    unsigned char *buf = NULL;
    int rc = idx_open(&im, images, IDX_MAGIC_IMAGES, 3, err);
    if (rc == DMLP_OK)
        rc = idx_open(&lb, labels, IDX_MAGIC_LABELS, 1, err);
    if (rc != DMLP_OK)
        goto done;

    size_t n = im.dims[0], rows = im.dims[1], cols = im.dims[2];
    if (n == 0 || rows == 0 || cols == 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT,
                       "%s: header says %zu images of %zu x %zu; expected at least one "
                       "non-empty image", images, n, rows, cols);
        goto done;
    }
    if (lb.dims[0] != n) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s has %" PRIu32 " labels, but %s has %zu images",
                       labels, lb.dims[0], images, n);
        goto done;
    }
    size_t d, nd;
    if (dmlp_mul_size(&d, rows, cols) || dmlp_mul_size(&nd, n, d)) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT,
                       "%s: header says %zu images of %zu x %zu, which overflows size_t",
                       images, n, rows, cols);
        goto done;
    }
    /* Reject a header that promises more than the file can hold before allocating for it. */
    if ((rc = idx_check_size(&im, nd, "pixels", err)) != DMLP_OK ||
        (rc = idx_check_size(&lb, n, "labels", err)) != DMLP_OK)
        goto done;
    if ((rc = dataset_alloc(&ds, n, d, 10, 1, err)) != DMLP_OK) {
        dmlp_error_prefix(err, "%s", images);
        goto done;
    }

    /* Pixels go through a small staging buffer so memory stays at the float array alone. */
    enum { STAGE = 1 << 16 };
    buf = malloc(STAGE);
    if (!buf) {
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", images);
        goto done;
    }
    for (size_t at = 0; at < nd;) {
        size_t want = nd - at < STAGE ? nd - at : STAGE, got;
        if ((rc = idx_read(&im, buf, want, &got, err)) != DMLP_OK)
            goto done;
        for (size_t i = 0; i < got; i++)
            ds->features[at + i] = (float)buf[i] / 255.0f;
        at += got;
        if (got < want) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT,
                           "%s: truncated: expected %zu bytes of pixels (%zu images of "
                           "%zu x %zu) after the %zu-byte header, found %zu",
                           images, nd, n, rows, cols, im.header_bytes, at);
            goto done;
        }
    }
    if ((rc = idx_check_end(&im, "images", err)) != DMLP_OK)
        goto done;

    size_t max_label = 0;
    for (size_t at = 0; at < n;) {
        size_t want = n - at < STAGE ? n - at : STAGE, got;
        if ((rc = idx_read(&lb, buf, want, &got, err)) != DMLP_OK)
            goto done;
        for (size_t i = 0; i < got; i++) {
            ds->labels[at + i] = buf[i];
            max_label = buf[i] > max_label ? buf[i] : max_label;
        }
        at += got;
        if (got < want) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT,
                           "%s: truncated: expected %zu bytes of labels after the %zu-byte "
                           "header, found %zu", labels, n, lb.header_bytes, at);
            goto done;
        }
    }
    if ((rc = idx_check_end(&lb, "labels", err)) != DMLP_OK)
        goto done;
    /* MNIST-style sets have ten classes even when a small file misses some of them. */
    ds->k = max_label + 1 > 10 ? max_label + 1 : 10;

    idx_close(&im);
    idx_close(&lb);
    rc = dataset_write(ds, output, err);
done:
    free(buf);
    idx_close(&im);
    idx_close(&lb);
    dataset_free(&ds);
    return rc;
}

/* ---- helpers: HDF5 ------------------------------------------------------------------------ */

static void h5_quiet_begin(struct h5_quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void h5_quiet_end(const struct h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

struct h5_reason_buf {
    char *buf;
    size_t cap;
};

static herr_t h5_reason_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    struct h5_reason_buf *r = data;
    if (n == 0 && e->desc)
        snprintf(r->buf, r->cap, "%s", e->desc);
    return 0;
}

/* The innermost description on HDF5's error stack (walking upward starts at the most
 * specific entry, e.g. "required filter 'blosc' is not registered"), for the tail of our
 * own messages. */
static const char *h5_reason(char *buf, size_t cap)
{
    struct h5_reason_buf r = {buf, cap};
    snprintf(buf, cap, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_reason_walk, &r);
    return buf;
}

/* hsize_t -> size_t without a warning on platforms where they are the same width. */
static int to_size(hsize_t v, size_t *out)
{
    *out = (size_t)v;
    return (hsize_t)*out == v ? 0 : -1;
}

static void type_name(hid_t type, char *out, size_t cap)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    switch (cls) {
    case H5T_FLOAT:
        snprintf(out, cap, "float%zu", bits);
        break;
    case H5T_INTEGER:
        snprintf(out, cap, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_STRING:
        snprintf(out, cap, "string");
        break;
    case H5T_COMPOUND:
        snprintf(out, cap, "compound");
        break;
    case H5T_ENUM:
        snprintf(out, cap, "enum");
        break;
    case H5T_ARRAY:
        snprintf(out, cap, "array type");
        break;
    default:
        snprintf(out, cap, "non-numeric type");
        break;
    }
}

/* Opens /name as a dataset and reads its element class, type name, rank and dims. */
static int open_dataset(hid_t file, const char *path, const char *name, hid_t *dset,
                        struct h5_shape *s, struct dmlp_error *err)
{
    char why[256];
    *dset = H5I_INVALID_HID;
    hid_t obj = H5Oopen(file, name, H5P_DEFAULT);
    if (obj < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot open: %s", path, name,
                         h5_reason(why, sizeof why));
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: is a group or named type, expected a "
                         "dataset", path, name);
    }
    hid_t type = H5Dget_type(obj);
    hid_t space = H5Dget_space(obj);
    int rc = DMLP_OK;
    if (type < 0 || space < 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read its type or shape: %s",
                       path, name, h5_reason(why, sizeof why));
    } else {
        s->cls = H5Tget_class(type);
        type_name(type, s->type_name, sizeof s->type_name);
        H5S_class_t sc = H5Sget_simple_extent_type(space);
        s->rank = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(space) : 0;
        if (sc == H5S_NULL)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: has no data (null dataspace)", path,
                           name);
        else if (s->rank < 0 || H5Sget_simple_extent_dims(space, s->dims, NULL) < 0)
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: cannot read its shape: %s", path,
                           name, h5_reason(why, sizeof why));
    }
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    if (rc != DMLP_OK)
        H5Dclose(obj);
    else
        *dset = obj;
    return rc;
}

static int link_exists(hid_t file, const char *path, const char *name, int *exists,
                       struct dmlp_error *err)
{
    char why[256];
    htri_t e = H5Lexists(file, name, H5P_DEFAULT);
    if (e < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot look up %s: %s", path, name,
                         h5_reason(why, sizeof why));
    *exists = e > 0;
    return DMLP_OK;
}

/* Reads the optional num_classes attribute of /labels: a positive integer scalar. */
static int read_num_classes(hid_t labels, const char *path, int64_t *nc, int *present,
                            struct dmlp_error *err)
{
    char why[256];
    *present = 0;
    htri_t has = H5Aexists(labels, "num_classes");
    if (has < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: cannot look up num_classes: %s",
                         path, h5_reason(why, sizeof why));
    if (!has)
        return DMLP_OK;
    hid_t attr = H5Aopen(labels, "num_classes", H5P_DEFAULT);
    if (attr < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: cannot open num_classes: %s",
                         path, h5_reason(why, sizeof why));
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr);
    int rc = DMLP_OK;
    char tname[32] = "unknown";
    if (type >= 0)
        type_name(type, tname, sizeof tname);
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (type < 0 || H5Tget_class(type) != H5T_INTEGER)
        rc = dmlp_fail(err, DMLP_ERR_INPUT,
                       "%s: /labels: num_classes attribute must be an integer, got %s", path,
                       tname);
    else if (npoints != 1)
        rc = dmlp_fail(err, DMLP_ERR_INPUT,
                       "%s: /labels: num_classes attribute must be one integer, has %lld values",
                       path, (long long)npoints);
    else if (H5Aread(attr, H5T_NATIVE_INT64, nc) < 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: cannot read num_classes: %s", path,
                       h5_reason(why, sizeof why));
    else if (*nc <= 0 || *nc > INT32_MAX)
        rc = dmlp_fail(err, DMLP_ERR_INPUT,
                       "%s: /labels: num_classes attribute is %" PRId64
                       ", expected a positive int32", path, *nc);
    else
        *present = 1;
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    H5Aclose(attr);
    return rc;
}

/* Reads /labels into ds->labels (int32) and sets ds->k. The file values go through int64 so
 * a value outside int32 is reported with its row rather than clipped by HDF5's conversion. */
static int read_labels(hid_t dset, const char *path, struct dataset *ds,
                       struct dmlp_error *err)
{
    char why[256];
    int64_t nc = 0;
    int has_nc = 0;
    int rc = read_num_classes(dset, path, &nc, &has_nc, err);
    if (rc != DMLP_OK)
        return rc;
    size_t bytes;
    if (dmlp_mul_size(&bytes, ds->n, sizeof(int64_t)))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: %zu rows overflow size_t", path,
                         ds->n);
    int64_t *wide = malloc(bytes);
    if (!wide)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: /labels: out of memory for %zu rows",
                         path, ds->n);
    if (H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, wide) < 0) {
        free(wide);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: /labels: read failed: %s", path,
                         h5_reason(why, sizeof why));
    }
    int64_t max = 0;
    size_t max_row = 0;
    for (size_t i = 0; i < ds->n; i++) {
        if (wide[i] < 0) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: value %" PRId64
                           " at row %zu is negative", path, wide[i], i);
            break;
        }
        if (wide[i] > INT32_MAX) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: value %" PRId64
                           " at row %zu does not fit in int32", path, wide[i], i);
            break;
        }
        if (wide[i] > max) {
            max = wide[i];
            max_row = i;
        }
        ds->labels[i] = (int32_t)wide[i];
    }
    free(wide);
    if (rc != DMLP_OK)
        return rc;
    if (has_nc && nc <= max)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: /labels: num_classes attribute is %" PRId64 ", but label %" PRId64
                         " at row %zu is not below it", path, nc, max, max_row);
    ds->k = has_nc ? (size_t)nc : (size_t)max + 1;
    return DMLP_OK;
}

static int check_finite(const float *x, size_t n, size_t cols, const char *path,
                        const char *name, struct dmlp_error *err)
{
    size_t row, col;
    if (find_nonfinite(x, n, cols, &row, &col))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: row %zu, column %zu is %s", path, name,
                         row, col, nonfinite_name(x[row * cols + col]));
    return DMLP_OK;
}

/* Validates the layout of an open file and reads it whole. */
static int read_open_file(hid_t file, const char *path, struct dataset **out,
                          struct file_types *types, struct dmlp_error *err)
{
    char why[256];
    int has_f = 0, has_l = 0, has_t = 0, rc;
    if ((rc = link_exists(file, path, "/features", &has_f, err)) != DMLP_OK ||
        (rc = link_exists(file, path, "/labels", &has_l, err)) != DMLP_OK ||
        (rc = link_exists(file, path, "/targets", &has_t, err)) != DMLP_OK)
        return rc;
    if (!has_f)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: missing (expected float32 "
                         "[N, D])", path);
    if (has_l && has_t)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: has both /labels and /targets; expected "
                         "exactly one", path);
    if (!has_l && !has_t)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: has neither /labels nor /targets; expected "
                         "exactly one", path);
    const char *yname = has_l ? "/labels" : "/targets";

    hid_t fds = H5I_INVALID_HID, yds = H5I_INVALID_HID;
    struct h5_shape fs, ys;
    struct dataset *ds = NULL;
    size_t n = 0, d = 0, yn = 0, k = 0;
    if ((rc = open_dataset(file, path, "/features", &fds, &fs, err)) != DMLP_OK)
        goto done;
    if (fs.cls != H5T_FLOAT && fs.cls != H5T_INTEGER) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: expected a float array, got %s",
                       path, fs.type_name);
        goto done;
    }
    if (fs.rank != 2) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: expected 2-D float array, got %d-D",
                       path, fs.rank);
        goto done;
    }
    if (to_size(fs.dims[0], &n) || to_size(fs.dims[1], &d)) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: shape [%llu, %llu] overflows size_t",
                       path, (unsigned long long)fs.dims[0], (unsigned long long)fs.dims[1]);
        goto done;
    }
    if (n == 0 || d == 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: empty (%zu rows, %zu columns); "
                       "expected at least one of each", path, n, d);
        goto done;
    }

    if ((rc = open_dataset(file, path, yname, &yds, &ys, err)) != DMLP_OK)
        goto done;
    if (has_l) {
        if (ys.cls != H5T_INTEGER) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: expected integer class labels, "
                           "got %s", path, ys.type_name);
            goto done;
        }
        if (ys.rank != 1) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /labels: expected 1-D integer array, "
                           "got %d-D", path, ys.rank);
            goto done;
        }
    } else {
        if (ys.cls != H5T_FLOAT && ys.cls != H5T_INTEGER) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets: expected a float array, got %s",
                           path, ys.type_name);
            goto done;
        }
        if (ys.rank != 2) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets: expected 2-D float array, "
                           "got %d-D", path, ys.rank);
            goto done;
        }
        if (to_size(ys.dims[1], &k) || k == 0) {
            rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets: %llu columns; expected at "
                           "least one", path, (unsigned long long)ys.dims[1]);
            goto done;
        }
    }
    if (to_size(ys.dims[0], &yn) || yn != n) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: %llu rows, but /features has %zu", path,
                       yname, (unsigned long long)ys.dims[0], n);
        goto done;
    }

    if ((rc = dataset_alloc(&ds, n, d, k, has_l, err)) != DMLP_OK) {
        dmlp_error_prefix(err, "%s", path);
        goto done;
    }
    /* H5T_NATIVE_FLOAT as the memory type: HDF5 converts float64 or integer files. */
    if (H5Dread(fds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->features) < 0) {
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: /features: read failed: %s", path,
                       h5_reason(why, sizeof why));
        goto done;
    }
    if ((rc = check_finite(ds->features, n, d, path, "/features", err)) != DMLP_OK)
        goto done;
    if (has_l) {
        rc = read_labels(yds, path, ds, err);
    } else if (H5Dread(yds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->targets) < 0) {
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: /targets: read failed: %s", path,
                       h5_reason(why, sizeof why));
    } else {
        rc = check_finite(ds->targets, n, k, path, "/targets", err);
    }
    if (types) {
        snprintf(types->features, sizeof types->features, "%s", fs.type_name);
        snprintf(types->y, sizeof types->y, "%s", ys.type_name);
    }
done:
    if (fds >= 0)
        H5Dclose(fds);
    if (yds >= 0)
        H5Dclose(yds);
    if (rc != DMLP_OK)
        dataset_free(&ds);
    *out = ds;
    return rc;
}

static int read_file(struct dataset **out, const char *path, struct file_types *types,
                     struct dmlp_error *err)
{
    char why[256];
    *out = NULL;
    int rc = check_readable(path, err);
    if (rc != DMLP_OK)
        return rc;
    if (H5Fis_hdf5(path) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5: %s", path,
                         h5_reason(why, sizeof why));
    rc = read_open_file(file, path, out, types, err);
    if (H5Fclose(file) < 0 && rc == DMLP_OK) {
        dataset_free(out);
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: closing failed: %s", path,
                       h5_reason(why, sizeof why));
    }
    return rc;
}

/* A fresh file refuses nothing we write, so any failure here is I/O (disk full, quota). */
static int write_array(hid_t file, const char *path, const char *name, hid_t file_type,
                       hid_t mem_type, int rank, const hsize_t *dims, const void *data,
                       struct dmlp_error *err)
{
    char why[256];
    /* Contiguous, uncompressed: every rank reads the whole file at start-up, and a plain
     * layout is read at disk speed with no per-rank decompression; it also keeps any row
     * range a cheap hyperslab for a sharded placement. The cost is disk space only. */
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dset = space >= 0 ? H5Dcreate2(file, name, file_type, space, H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT)
                            : H5I_INVALID_HID;
    int ok = dset >= 0 && H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (!ok)
        h5_reason(why, sizeof why);
    if (dset >= 0 && H5Dclose(dset) < 0 && ok) {
        ok = 0;
        h5_reason(why, sizeof why);
    }
    if (space >= 0)
        H5Sclose(space);
    return ok ? DMLP_OK
              : dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: writing %s failed: %s", path, name, why);
}

/* Attaches a scalar int32 (value) or a fixed-length string (text) attribute to obj. */
static int write_attr(hid_t file, const char *path, const char *obj, const char *name,
                      int32_t value, const char *text, struct dmlp_error *err)
{
    char why[256];
    hid_t type = text ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_STD_I32LE);
    int ok = type >= 0;
    if (ok && text)
        ok = H5Tset_size(type, strlen(text) + 1) >= 0 &&
             H5Tset_strpad(type, H5T_STR_NULLTERM) >= 0;
    hid_t space = ok ? H5Screate(H5S_SCALAR) : H5I_INVALID_HID;
    hid_t attr = space >= 0 ? H5Acreate_by_name(file, obj, name, type, space, H5P_DEFAULT,
                                                H5P_DEFAULT, H5P_DEFAULT)
                            : H5I_INVALID_HID;
    ok = attr >= 0 && (text ? H5Awrite(attr, type, text)
                            : H5Awrite(attr, H5T_NATIVE_INT32, &value)) >= 0;
    if (!ok)
        h5_reason(why, sizeof why);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    return ok ? DMLP_OK
              : dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: writing attribute %s on %s failed: %s",
                          path, name, obj, why);
}

static int write_file(const struct dataset *ds, const char *tmp, const char *path,
                      struct dmlp_error *err)
{
    char why[256];
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot create %s: %s", path, tmp,
                         h5_reason(why, sizeof why));
    hsize_t fdims[2] = {ds->n, ds->d}, ydims[2] = {ds->n, ds->k};
    int rc = write_attr(file, path, "/", "format", 0, "dmlp-dataset", err);
    if (rc == DMLP_OK)
        rc = write_attr(file, path, "/", "format_version", 1, NULL, err);
    if (rc == DMLP_OK)
        rc = write_array(file, path, "/features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, fdims,
                         ds->features, err);
    if (rc == DMLP_OK && ds->labels) {
        rc = write_array(file, path, "/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, ydims,
                         ds->labels, err);
        if (rc == DMLP_OK)
            rc = write_attr(file, path, "/labels", "num_classes", (int32_t)ds->k, NULL, err);
    } else if (rc == DMLP_OK) {
        rc = write_array(file, path, "/targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, ydims,
                         ds->targets, err);
    }
    if (rc == DMLP_OK && H5Fflush(file, H5F_SCOPE_LOCAL) < 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: flushing %s failed: %s", path, tmp,
                       h5_reason(why, sizeof why));
    if (H5Fclose(file) < 0 && rc == DMLP_OK)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: closing %s failed: %s", path, tmp,
                       h5_reason(why, sizeof why));
    return rc;
}

/* ---- helpers: files and checks ----------------------------------------------------------- */

/* stat()/access() first, so a missing or unreadable file gets the plain errno message. */
static int check_readable(const char *path, struct dmlp_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: Is a directory", path);
    return DMLP_OK;
}

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
    size_t row, col;
    if (find_nonfinite(ds->features, ds->n, ds->d, &row, &col))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: features row %zu, "
                         "column %zu is %s", path, row, col,
                         nonfinite_name(ds->features[row * ds->d + col]));
    if (ds->targets && find_nonfinite(ds->targets, ds->n, ds->k, &row, &col))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: targets row %zu, "
                         "column %zu is %s", path, row, col,
                         nonfinite_name(ds->targets[row * ds->k + col]));
    for (size_t i = 0; ds->labels && i < ds->n; i++)
        if (ds->labels[i] < 0 || (size_t)ds->labels[i] >= ds->k)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: refusing to write: label %" PRId32
                             " at row %zu is outside [0, %zu)", path, ds->labels[i], i, ds->k);
    return DMLP_OK;
}

/* fsync the finished file, then rename it over the output: a crash leaves either the old
 * file or the complete new one. */
static int sync_and_rename(const char *tmp, const char *path, struct dmlp_error *err)
{
    int fd = open(tmp, O_RDONLY);
    if (fd < 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot reopen %s: %s", path, tmp,
                         strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: fsync of %s failed: %s", path, tmp,
                         strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot rename %s into place: %s", path,
                         tmp, strerror(errno));
    /* Make the rename itself durable. Best effort: some file systems refuse fsync on a
     * directory, and the file is complete either way. */
    size_t len = strlen(path);
    char *dir = malloc(len + 2);
    if (dir) {
        memcpy(dir, path, len + 1);
        char *slash = strrchr(dir, '/');
        if (!slash)
            strcpy(dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return DMLP_OK;
}

static const char *nonfinite_name(float x)
{
    if (isnan(x))
        return "NaN";
    return x > 0 ? "+inf" : "-inf";
}

/* Finds the first non-finite value of x [n, cols]; returns 1 and its position if any. */
static int find_nonfinite(const float *x, size_t n, size_t cols, size_t *row, size_t *col)
{
    size_t total = n * cols;
    for (size_t i = 0; i < total; i++) {
        if (!isfinite(x[i])) {
            *row = i / cols;
            *col = i % cols;
            return 1;
        }
    }
    return 0;
}

/* ---- helpers: IDX ----------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads up to len bytes; *got < len means end of data (a truncated gzip stream ends the
 * same way). Corrupt compressed data and read errors are failures. */
static int idx_read(struct idx_file *f, unsigned char *buf, size_t len, size_t *got,
                    struct dmlp_error *err)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        unsigned chunk = want > (1u << 30) ? 1u << 30 : (unsigned)want;
        int r = gzread(f->gz, buf + *got, chunk);
        if (r < 0) {
            int zerr = Z_OK;
            const char *msg = gzerror(f->gz, &zerr);
            if (zerr == Z_BUF_ERROR)
                break;
            if (zerr == Z_ERRNO)
                return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: read error: %s", f->path,
                                 strerror(errno));
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: corrupt gzip data: %s", f->path, msg);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return DMLP_OK;
}

static int idx_open(struct idx_file *f, const char *path, uint32_t magic, int ndims,
                    struct dmlp_error *err)
{
    const char *what = magic == IDX_MAGIC_IMAGES ? "images: uint8, 3 dimensions"
                                                 : "labels: uint8, 1 dimension";
    f->path = path;
    f->header_bytes = 4 + 4 * (size_t)ndims;
    int rc = check_readable(path, err);
    if (rc != DMLP_OK)
        return rc;
    struct stat st;
    f->file_bytes = stat(path, &st) == 0 ? st.st_size : 0;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(f->gz, 1u << 17);
    unsigned char hdr[16];
    size_t got;
    if ((rc = idx_read(f, hdr, f->header_bytes, &got, err)) != DMLP_OK)
        return rc;
    if (got >= 4 && be32(hdr) != magic) {
        uint32_t found = be32(hdr);
        const char *hint = found == IDX_MAGIC_IMAGES   ? " (an images file; swapped?)"
                           : found == IDX_MAGIC_LABELS ? " (a labels file; swapped?)"
                                                       : "";
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: bad magic 0x%08" PRIx32 "%s, expected 0x%08" PRIx32 " (IDX %s)",
                         path, found, hint, magic, what);
    }
    if (got < f->header_bytes)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "%s: truncated: expected a %zu-byte IDX header, found %zu bytes",
                         path, f->header_bytes, got);
    for (int i = 0; i < ndims; i++)
        f->dims[i] = be32(hdr + 4 + 4 * (size_t)i);
    return DMLP_OK;
}

/* A file cannot hold more data than its size allows: exactly for a plain file, and at most
 * 1032 bytes per compressed byte (deflate's limit) for gzip. Checked before allocating, so
 * a corrupt header cannot ask for terabytes. */
static int idx_check_size(const struct idx_file *f, size_t need, const char *what,
                          struct dmlp_error *err)
{
    size_t disk = f->file_bytes > 0 ? (size_t)f->file_bytes : 0;
    size_t have = disk > f->header_bytes ? disk - f->header_bytes : 0;
    if (gzdirect(f->gz)) {
        if (have < need)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated: expected %zu bytes of %s "
                             "after the %zu-byte header, found %zu", f->path, need, what,
                             f->header_bytes, have);
    } else if (disk <= SIZE_MAX / 1032 && disk * 1032 < need) {
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated: the header promises %zu bytes "
                         "of %s, more than %zu compressed bytes can hold", f->path, need,
                         what, disk);
    }
    return DMLP_OK;
}

/* Data after the promised count means the header's dimensions are wrong. */
static int idx_check_end(struct idx_file *f, const char *what, struct dmlp_error *err)
{
    unsigned char extra;
    size_t got;
    int rc = idx_read(f, &extra, 1, &got, err);
    if (rc == DMLP_OK && got > 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: more data after the %" PRIu32 " %s the header "
                       "announces; are its dimensions right?", f->path, f->dims[0], what);
    return rc;
}

static void idx_close(struct idx_file *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}
