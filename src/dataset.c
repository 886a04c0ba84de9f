#define _POSIX_C_SOURCE 200809L
/* dataset: reading (whole, a row range, or one rank's shard through parallel HDF5),
 * validating, writing and describing the HDF5 dataset file of DESIGN §4; the validation
 * split and feature standardisation; the IDX (MNIST-style) and CSV importers. Every message
 * names the file and the dataset, or the line and column, at fault; HDF5's own error
 * printer is silenced while these functions run. */
#include "dataset.h"

#include "h5util.h"
#include "csv.h"
#include "dist.h"
#include "model.h"
#include "rng.h"
#include "vec.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
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

enum { IDX_MAGIC_LABELS = 0x00000801, IDX_MAGIC_IMAGES = 0x00000803 };

static int read_file(struct dataset **out, const char *path, size_t row0, size_t nrows,
                     size_t *total_rows, struct file_types *types, struct dmlp_error *err);
static int read_shard(struct dataset **out, const char *path, const struct dist *d,
                      struct dataset_shard *info, struct dmlp_error *err);
static int alloc_rows(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                      struct dmlp_error *err);
static int validate_for_write(const struct dataset *ds, const char *path,
                              struct dmlp_error *err);
static int write_dataset(const struct dataset *ds, const char *path,
                         const char *const *class_names, struct dmlp_error *err);
static int write_file(const struct dataset *ds, const char *tmp, const char *path,
                      const char *const *class_names, struct dmlp_error *err);
static int cmp_int32(const void *a, const void *b);

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
    /* Refuse what cannot fit in memory before asking for it (a header may claim any size;
     * malloc overcommits, and touching the pages would bring the OOM killer). */
    const size_t phys = dmlp_phys_mem();
    size_t total;
    if (dmlp_add_size(&total, fbytes, ybytes) || total > phys)
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "dataset of %zu rows x %zu features needs %zu + %zu bytes, more "
                         "than this machine's %zu bytes of memory", n, d, fbytes, ybytes, phys);
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
    struct file_types types;
    int rc;
    H5UTIL_QUIETLY(rc, read_file(out, path, 0, SIZE_MAX, NULL, &types, err));
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

int dataset_check_network(const struct dataset *ds, const struct model *m, const char *what,
                          struct dmlp_error *err)
{
    const size_t k = model_output_dim(m);
    if (ds->d != model_input_dim(m))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: samples have %zu features, but the network "
                         "takes %zu inputs", what, ds->d, model_input_dim(m));
    if (m->loss == DMLP_LOSS_CROSS_ENTROPY) {
        if (!ds->labels)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: loss cross_entropy needs /labels, but "
                             "the file has /targets (use loss: mse for regression)", what);
        if (ds->k > k)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: the data has %zu classes, but the "
                             "output layer has %zu units", what, ds->k, k);
    } else {
        if (!ds->targets)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: loss mse needs /targets, but the file "
                             "has /labels only (use loss: cross_entropy with a softmax "
                             "output)", what);
        if (ds->k != k)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets has %zu columns, but the "
                             "output layer has %zu units", what, ds->k, k);
    }
    return DMLP_OK;
}

int dataset_write(const struct dataset *ds, const char *path, struct dmlp_error *err)
{
    return write_dataset(ds, path, NULL, err);
}

/* dataset_write, plus the class_names attribute on /labels when class_names is not NULL
 * (ds->k names). */
static int write_dataset(const struct dataset *ds, const char *path,
                         const char *const *class_names, struct dmlp_error *err)
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

    H5UTIL_QUIETLY(rc, write_file(ds, tmp, path, class_names, err));
    if (rc == DMLP_OK)
        rc = dmlp_publish_file(tmp, path, err);
    if (rc != DMLP_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

int dataset_describe(FILE *f, const char *path, struct dmlp_error *err)
{
    struct file_types types;
    struct dataset *ds = NULL;
    int rc;
    H5UTIL_QUIETLY(rc, read_file(&ds, path, 0, SIZE_MAX, NULL, &types, err));
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
        /* Up to 100 classes: a count per class. More: K comes from the file (num_classes,
         * or the largest label, up to 2^31 - 1), so count the sorted labels instead of
         * allocating K counters. */
        const int wide = ds->k > 100;
        size_t *counts = wide ? NULL : calloc(ds->k, sizeof *counts);
        int32_t *sorted = wide ? malloc(ds->n * sizeof *sorted) : NULL;
        if (!counts && !sorted) {
            size_t k = ds->k;
            dataset_free(&ds);
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory counting %zu classes",
                             path, k);
        }
        if (!wide) {
            for (size_t i = 0; i < ds->n; i++)
                counts[ds->labels[i]]++;
            /* Ten classes a line keeps wide label sets readable. */
            fprintf(f, "  class counts:");
            for (size_t c = 0; c < ds->k; c++) {
                if (c > 0 && c % 10 == 0)
                    fprintf(f, "\n               ");
                fprintf(f, " %zu:%zu", c, counts[c]);
            }
            fprintf(f, "\n");
        } else {
            memcpy(sorted, ds->labels, ds->n * sizeof *sorted);
            qsort(sorted, ds->n, sizeof *sorted, cmp_int32);
            /* runs of equal labels, in class order; ties go to the lowest class, as a scan
             * over per-class counts would give */
            size_t cmin = 0, cmax = 0, nmin = SIZE_MAX, nmax = 0, distinct = 0, gap = SIZE_MAX;
            for (size_t i = 0; i < ds->n;) {
                size_t j = i;
                while (j < ds->n && sorted[j] == sorted[i])
                    j++;
                const size_t c = (size_t)sorted[i], run = j - i;
                if (gap == SIZE_MAX && c != distinct)
                    gap = distinct; /* the first class with no rows */
                distinct++;
                if (run < nmin) {
                    nmin = run;
                    cmin = c;
                }
                if (run > nmax) {
                    nmax = run;
                    cmax = c;
                }
                i = j;
            }
            const size_t empty = ds->k - distinct;
            if (empty > 0) {
                nmin = 0;
                cmin = gap != SIZE_MAX ? gap : distinct;
            }
            fprintf(f, "  class counts: smallest %zu (class %zu), largest %zu (class %zu), "
                       "%zu classes empty\n", nmin, cmin, nmax, cmax, empty);
        }
        free(counts);
        free(sorted);
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

/* ---- validation split and standardisation ----------------------------------------------- */

size_t dataset_validation_count(size_t global_n, double fraction)
{
    if (!(fraction > 0.0) || global_n == 0)
        return 0;
    if (fraction >= 1.0)
        return global_n;
    /* fraction·N carries at most about one ulp of relative error (the decimal fraction's
     * own rounding, then the product's); lifting it by 4 ulps makes an exact product floor
     * to itself, and moves nothing that is not within 4 ulps of an integer. */
    const double v = floor(fraction * (double)global_n * (1.0 + 4.0 * DBL_EPSILON));
    return v >= (double)global_n ? global_n : (size_t)v;
}

int dataset_split(struct dataset *ds, size_t global_row0, size_t global_n, double fraction,
                  uint64_t seed, struct dataset **val, struct dmlp_error *err)
{
    *val = NULL;
    if (!(fraction >= 0.0 && fraction < 1.0))
        return dmlp_fail(err, DMLP_ERR_INPUT, "validation fraction %g: expected a number in "
                         "[0, 1)", fraction);
    if (global_row0 > global_n || ds->n > global_n - global_row0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "validation split: rows [%zu, %zu) lie outside "
                         "the %zu rows of the whole set", global_row0, global_row0 + ds->n,
                         global_n);
    unsigned char *mask = calloc(ds->n > 0 ? ds->n : 1, 1);
    if (!mask)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "validation split: out of memory for %zu rows",
                         ds->n);
    /* Selection sampling (Knuth, TAOCP vol. 2, 3.4.2, Algorithm S): row i is taken with
     * probability need / (rows left), which takes exactly `need` rows, every subset of that
     * size equally likely. Each rank replays the same draws up to the end of its own rows. */
    struct rng r;
    rng_seed(&r, seed, DATASET_SPLIT_STREAM);
    size_t need = dataset_validation_count(global_n, fraction), nval = 0;
    const size_t end = global_row0 + ds->n;
    for (size_t i = 0; i < end && need > 0; i++) {
        if (rng_below(&r, global_n - i) < need) {
            need--;
            if (i >= global_row0) {
                mask[i - global_row0] = 1;
                nval++;
            }
        }
    }
    struct dataset *v = NULL;
    int rc = alloc_rows(&v, nval, ds->d, ds->k, ds->labels != NULL, err);
    if (rc != DMLP_OK) {
        free(mask);
        dmlp_error_prefix(err, "validation split");
        return rc;
    }
    const size_t d = ds->d, k = ds->k;
    size_t kept = 0, taken = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const float *x = ds->features + i * d;
        if (mask[i]) {
            memcpy(v->features + taken * d, x, d * sizeof *x);
            if (ds->labels)
                v->labels[taken] = ds->labels[i];
            else
                memcpy(v->targets + taken * k, ds->targets + i * k, k * sizeof(float));
            taken++;
        } else {
            if (kept != i) { /* kept < i: moving rows down, order kept */
                memmove(ds->features + kept * d, x, d * sizeof *x);
                if (ds->labels)
                    ds->labels[kept] = ds->labels[i];
                else
                    memmove(ds->targets + kept * k, ds->targets + i * k, k * sizeof(float));
            }
            kept++;
        }
    }
    ds->n = kept;
    free(mask);
    *val = v;
    return DMLP_OK;
}

void dataset_feature_sums(const struct dataset *ds, double *sum, double *sumsq)
{
    const size_t d = ds->d;
    for (size_t j = 0; j < d; j++)
        sum[j] = sumsq[j] = 0.0;
    kernel_vec()->feature_sums(sum, sumsq, ds->features, ds->n, d);
}

void dataset_stats_finish(const double *sum, const double *sumsq, size_t n, size_t d,
                          float *mean, float *std)
{
    for (size_t j = 0; j < d; j++) {
        if (n == 0) {
            mean[j] = 0.0f;
            std[j] = 1.0f;
            continue;
        }
        const double m = sum[j] / (double)n;
        const double var = sumsq[j] / (double)n - m * m;
        const double s = var > 0.0 ? sqrt(var) : 0.0;
        mean[j] = (float)m;
        std[j] = s < 1e-6 * fmax(1.0, fabs(m)) ? 1.0f : (float)s;
    }
}

void dataset_standardize(struct dataset *ds, const float *mean, const float *std)
{
    kernel_vec()->standardize(ds->features, ds->n, ds->d, mean, std);
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

/* ---- CSV import ------------------------------------------------------------------------- */

enum csv_role { CSV_FEATURE, CSV_LABEL, CSV_TARGET };
enum csv_label_kind { LABELS_UNDECIDED, LABELS_NUMBERS, LABELS_NAMES };

/* Class names seen so far, ids in order of first appearance; an open-addressing hash table
 * (slots hold id + 1, 0 = empty) keeps lookups O(1) for many classes. */
struct name_table {
    char **names; /* [n] by id */
    size_t n, cap;
    size_t *slots;
    size_t n_slots;
};

/* Everything the import accumulates; rows grow by doubling. */
struct csv_import {
    const char *path;
    size_t n_cols;
    char **header;        /* [n_cols] trimmed column names */
    int *role;            /* [n_cols] enum csv_role */
    size_t *slot;         /* [n_cols] index among the features or the targets */
    size_t label_col;
    size_t d, k_targets;
    size_t n, cap;        /* rows stored, rows allocated */
    float *features;      /* [cap, d] */
    float *targets;       /* [cap, k_targets] */
    int32_t *labels;      /* [cap] */
    int label_kind;
    size_t first_label_line;
    char first_label[64]; /* the first row's label, for the numbers-or-names message */
    int32_t max_label;
    struct name_table classes;
};

/* The largest class id, so that K = id + 1 still fits the int32 num_classes attribute; and
 * how many class names fit the class_names attribute (HDF5 keeps attributes in the object
 * header, at most 64 KiB, 16 bytes per variable-length string). */
enum { CSV_MAX_LABEL = INT32_MAX - 1, CSV_MAX_CLASS_NAMES = 4000 };

static char *trim(char *s);
static int csv_header(struct csv_import *im, const struct csv_record *rec,
                      const char *label_column, const char *target_columns,
                      struct dmlp_error *err);
static int csv_row(struct csv_import *im, const struct csv_record *rec, struct dmlp_error *err);
static int csv_finish(struct csv_import *im, const char *output, struct dmlp_error *err);
static void csv_import_free(struct csv_import *im);

int dataset_import_csv(const char *path, const char *label_column, const char *target_columns,
                       const char *output, struct dmlp_error *err)
{
    if (!label_column == !target_columns)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: give exactly one of --label-column NAME "
                         "(classification) and --target-columns A,B,... (regression)", path);
    struct csv_reader *r = NULL;
    struct csv_import im = {.path = path};
    const struct csv_record *rec = NULL;
    int rc = csv_open(&r, path, err);
    if (rc == DMLP_OK)
        rc = csv_next(r, &rec, err);
    if (rc == DMLP_OK && !rec)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: empty file: expected a header row naming "
                       "the columns", path);
    if (rc == DMLP_OK)
        rc = csv_header(&im, rec, label_column, target_columns, err);
    size_t header_line = rec ? rec->line : 0;
    while (rc == DMLP_OK && (rc = csv_next(r, &rec, err)) == DMLP_OK && rec)
        rc = csv_row(&im, rec, err);
    if (rc == DMLP_OK && im.n == 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: no data rows after the header (line %zu)",
                       path, header_line);
    if (rc == DMLP_OK)
        rc = csv_finish(&im, output, err);
    csv_close(&r);
    csv_import_free(&im);
    return rc;
}

/* ---- helpers: CSV import ----------------------------------------------------------------- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Strips surrounding whitespace in place (a quoted field may hold line breaks). */
static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && is_space(s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* "a, b, c" (cut short with "..." past about 600 characters) for "no such column" messages. */
static void column_list(const struct csv_import *im, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < im->n_cols; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", im->header[i]);
        if (w < 0 || (size_t)w >= cap - used || used + (size_t)w > 600) {
            snprintf(out + used, cap - used, "%s... (%zu columns)", i ? ", " : "", im->n_cols);
            return;
        }
        used += (size_t)w;
    }
}

/* Finds the column called name; exactly one must have it. */
static int find_column(const struct csv_import *im, const char *option, const char *name,
                       size_t *col, struct dmlp_error *err)
{
    size_t found = 0, first = 0;
    for (size_t i = 0; i < im->n_cols; i++) {
        if (strcmp(im->header[i], name) == 0) {
            if (found == 0)
                first = i;
            else
                return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s %s: columns %zu and %zu both "
                                 "have this name", im->path, option, name, first + 1, i + 1);
            found++;
        }
    }
    if (!found) {
        char list[700];
        column_list(im, list, sizeof list);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s %s: no such column (columns: %s)",
                         im->path, option, name, list);
    }
    *col = first;
    return DMLP_OK;
}

static int csv_header(struct csv_import *im, const struct csv_record *rec,
                      const char *label_column, const char *target_columns,
                      struct dmlp_error *err)
{
    im->n_cols = rec->n_fields;
    im->header = calloc(im->n_cols, sizeof *im->header);
    im->role = calloc(im->n_cols, sizeof *im->role);
    im->slot = calloc(im->n_cols, sizeof *im->slot);
    if (!im->header || !im->role || !im->slot)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", im->path);
    for (size_t i = 0; i < im->n_cols; i++)
        if (!(im->header[i] = strdup(trim(rec->fields[i]))))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", im->path);

    int rc;
    if (label_column) {
        if ((rc = find_column(im, "--label-column", label_column, &im->label_col, err)))
            return rc;
        im->role[im->label_col] = CSV_LABEL;
    } else {
        /* Each listed name, in the order given, becomes the next /targets column. */
        char *list = strdup(target_columns);
        if (!list)
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", im->path);
        rc = DMLP_OK;
        char *p = list;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            char *name = trim(p);
            size_t col = 0;
            if (!*name)
                rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: --target-columns %s: empty column "
                               "name in the list", im->path, target_columns);
            else if ((rc = find_column(im, "--target-columns", name, &col, err)) == DMLP_OK &&
                     im->role[col] == CSV_TARGET)
                rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: --target-columns %s: column %s is "
                               "listed twice", im->path, target_columns, name);
            if (rc != DMLP_OK)
                break;
            im->role[col] = CSV_TARGET;
            im->slot[col] = im->k_targets++;
            if (!comma)
                break;
            p = comma + 1;
        }
        free(list);
        if (rc != DMLP_OK)
            return rc;
    }
    for (size_t i = 0; i < im->n_cols; i++)
        if (im->role[i] == CSV_FEATURE)
            im->slot[i] = im->d++;
    if (im->d == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: no feature columns: the header has only "
                         "the %s", im->path, rec->line,
                         label_column ? "label column" : "target columns");
    return DMLP_OK;
}

static int add_rows(struct csv_import *im, struct dmlp_error *err)
{
    size_t cap = im->cap ? 2 * im->cap : 1024, fbytes, ybytes;
    if (cap < im->cap || dmlp_mul_size(&fbytes, cap, im->d * sizeof(float)) ||
        dmlp_mul_size(&ybytes, cap, im->k_targets ? im->k_targets * sizeof(float)
                                                  : sizeof(int32_t)))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: too many rows (size overflow)", im->path);
    float *f = realloc(im->features, fbytes);
    if (f)
        im->features = f;
    void *y = f ? realloc(im->k_targets ? (void *)im->targets : (void *)im->labels, ybytes)
                : NULL;
    if (!y)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory at %zu rows", im->path,
                         im->n);
    if (im->k_targets)
        im->targets = y;
    else
        im->labels = y;
    im->cap = cap;
    return DMLP_OK;
}

/* Parses a whole field as a finite number; *is_number = 0 when it is not one at all. */
static int parse_number(const char *s, double *v, int *is_number, int *in_range)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    *is_number = end != s && *end == '\0';
    /* strtod flags underflow with ERANGE too; only overflow is out of range. */
    *in_range = !(errno == ERANGE && fabs(*v) > 1.0);
    return *is_number && *in_range && isfinite(*v);
}

static int csv_float(const struct csv_import *im, size_t line, size_t col, char *field,
                     float *out, struct dmlp_error *err)
{
    const char *s = trim(field), *name = im->header[col];
    double v;
    int is_number, in_range;
    if (!*s)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': empty field (missing "
                         "value)", im->path, line, name);
    if (!parse_number(s, &v, &is_number, &in_range)) {
        if (!is_number)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a number",
                             im->path, line, name, s);
        if (in_range)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a finite "
                             "number", im->path, line, name, s);
    }
    if (!in_range || fabs(v) > FLT_MAX)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is outside the "
                         "float32 range (about 3.4e38)", im->path, line, name, s);
    *out = (float)v;
    return DMLP_OK;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The id of name, adding it as the next id if new; -1 when out of memory. */
static int name_id(struct name_table *t, const char *name, size_t *id)
{
    if (2 * (t->n + 1) > t->n_slots) {
        size_t n_slots = t->n_slots ? 2 * t->n_slots : 64;
        size_t *slots = calloc(n_slots, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = (size_t)hash_name(t->names[i]) & (n_slots - 1);
            while (slots[h])
                h = (h + 1) & (n_slots - 1);
            slots[h] = i + 1;
        }
        free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
    }
    size_t h = (size_t)hash_name(name) & (t->n_slots - 1);
    while (t->slots[h]) {
        if (strcmp(t->names[t->slots[h] - 1], name) == 0) {
            *id = t->slots[h] - 1;
            return 0;
        }
        h = (h + 1) & (t->n_slots - 1);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **names = realloc(t->names, cap * sizeof *names);
        if (!names)
            return -1;
        t->names = names;
        t->cap = cap;
    }
    if (!(t->names[t->n] = strdup(name)))
        return -1;
    t->slots[h] = t->n + 1;
    *id = t->n++;
    return 0;
}

/* A label: a class number (a non-negative integer, "3" or "3.0"), or a class name when the
 * first row's label is not a number. Mixing the two is refused: a typo in a numeric column
 * must not quietly become a class of its own. */
static int csv_label(struct csv_import *im, size_t line, char *field, int32_t *out,
                     struct dmlp_error *err)
{
    const char *s = trim(field), *name = im->header[im->label_col];
    if (!*s)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': empty field (missing "
                         "label)", im->path, line, name);
    double v;
    int is_number, in_range;
    parse_number(s, &v, &is_number, &in_range);
    if (im->label_kind == LABELS_UNDECIDED) {
        im->label_kind = is_number ? LABELS_NUMBERS : LABELS_NAMES;
        im->first_label_line = line;
        snprintf(im->first_label, sizeof im->first_label, "%s", s);
    }
    if (im->label_kind == LABELS_NUMBERS) {
        if (!is_number)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a class "
                             "number (line %zu has the number '%s'; a label column holds "
                             "class numbers or class names, not both)", im->path, line, name,
                             s, im->first_label_line, im->first_label);
        if (!(v >= 0.0) || v != floor(v) || v > (double)CSV_MAX_LABEL)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is not a class "
                             "number (an integer from 0 to %d)", im->path, line, name, s,
                             CSV_MAX_LABEL);
        *out = (int32_t)v;
        if (*out > im->max_label)
            im->max_label = *out;
        return DMLP_OK;
    }
    if (is_number)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': '%s' is a number, but the "
                         "labels are class names (line %zu has '%s'; a label column holds "
                         "class numbers or class names, not both)", im->path, line, name, s,
                         im->first_label_line, im->first_label);
    size_t id;
    if (name_id(&im->classes, s, &id))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory for class names", im->path);
    if (im->classes.n > CSV_MAX_CLASS_NAMES)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: column '%s': more than %d distinct "
                         "class names, the most the class_names attribute holds; number "
                         "the classes instead", im->path, line, name, CSV_MAX_CLASS_NAMES);
    *out = (int32_t)id;
    return DMLP_OK;
}

static int csv_row(struct csv_import *im, const struct csv_record *rec, struct dmlp_error *err)
{
    if (rec->n_fields != im->n_cols)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: %zu field%s, header has %zu", im->path,
                         rec->line, rec->n_fields, rec->n_fields == 1 ? "" : "s", im->n_cols);
    int rc;
    if (im->n == im->cap && (rc = add_rows(im, err)) != DMLP_OK)
        return rc;
    float *x = im->features + im->n * im->d;
    float *t = im->k_targets ? im->targets + im->n * im->k_targets : NULL;
    for (size_t c = 0; c < im->n_cols; c++) {
        switch (im->role[c]) {
        case CSV_FEATURE:
            rc = csv_float(im, rec->line, c, rec->fields[c], x + im->slot[c], err);
            break;
        case CSV_TARGET:
            rc = csv_float(im, rec->line, c, rec->fields[c], t + im->slot[c], err);
            break;
        default:
            rc = csv_label(im, rec->line, rec->fields[c], im->labels + im->n, err);
            break;
        }
        if (rc != DMLP_OK)
            return rc;
    }
    im->n++;
    return DMLP_OK;
}

static int csv_finish(struct csv_import *im, const char *output, struct dmlp_error *err)
{
    const int with_labels = im->k_targets == 0;
    const size_t k = !with_labels                       ? im->k_targets
                     : im->label_kind == LABELS_NAMES ? im->classes.n
                                                        : (size_t)im->max_label + 1;
    struct dataset *ds = NULL;
    int rc = dataset_alloc(&ds, im->n, im->d, k, with_labels, err);
    if (rc != DMLP_OK) {
        dmlp_error_prefix(err, "%s", im->path);
        return rc;
    }
    memcpy(ds->features, im->features, im->n * im->d * sizeof(float));
    if (with_labels)
        memcpy(ds->labels, im->labels, im->n * sizeof(int32_t));
    else
        memcpy(ds->targets, im->targets, im->n * k * sizeof(float));
    ds->k = k;
    rc = write_dataset(ds, output, im->label_kind == LABELS_NAMES
                                       ? (const char *const *)im->classes.names
                                       : NULL, err);
    dataset_free(&ds);
    return rc;
}

static void csv_import_free(struct csv_import *im)
{
    for (size_t i = 0; im->header && i < im->n_cols; i++)
        free(im->header[i]);
    free(im->header);
    free(im->role);
    free(im->slot);
    free(im->features);
    free(im->targets);
    free(im->labels);
    for (size_t i = 0; i < im->classes.n; i++)
        free(im->classes.names[i]);
    free(im->classes.names);
    free(im->classes.slots);
}





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

/* What validating a file's layout learns. Both datasets stay open for the reads, so the
 * whole-file read, a row range and a shard share one validation with one set of messages. */
struct layout {
    hid_t fds, yds;      /* /features, and /labels or /targets */
    struct h5util_info fs, ys; /* ys.is_signed: labels read as int64, else uint64 */
    size_t n, d, k;      /* k: the width of /targets (labels: see has_nc) */
    int has_labels;
    int has_nc;          /* /labels carries num_classes = nc */
    int64_t nc;
    int filtered;        /* either dataset is stored through a filter (compression) */
};

static int is_filtered(hid_t dset)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return 0;
    int n = H5Pget_nfilters(dcpl);
    H5Pclose(dcpl);
    return n > 0;
}

static void layout_close(struct layout *lo)
{
    if (lo->fds >= 0)
        H5Dclose(lo->fds);
    if (lo->yds >= 0)
        H5Dclose(lo->yds);
    lo->fds = lo->yds = H5I_INVALID_HID;
}

/* Validates the layout of an open file: which datasets exist, their types and shapes, and
 * the num_classes attribute. Only metadata is read, identically on every rank. */
static int layout_open(hid_t file, const char *path, struct layout *lo, struct dmlp_error *err)
{
    memset(lo, 0, sizeof *lo);
    lo->fds = lo->yds = H5I_INVALID_HID;
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
    struct h5util_info *fs = &lo->fs, *ys = &lo->ys;
    size_t yn = 0;
    lo->has_labels = has_l;

    /* Class, rank and storage (not virtual, not external, every filter decodable) are
     * checked by h5util before anything is read. */
    if ((rc = h5util_open_dataset(file, path, "/features", H5UTIL_FLOAT | H5UTIL_INTEGER,
                                  "float array", 2, NULL, &lo->fds, fs, err)) != DMLP_OK)
        goto fail;
    if (to_size(fs->dims[0], &lo->n) || to_size(fs->dims[1], &lo->d)) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: shape [%llu, %llu] overflows size_t",
                       path, (unsigned long long)fs->dims[0], (unsigned long long)fs->dims[1]);
        goto fail;
    }
    if (lo->n == 0 || lo->d == 0) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /features: empty (%zu rows, %zu columns); "
                       "expected at least one of each", path, lo->n, lo->d);
        goto fail;
    }

    if (has_l)
        rc = h5util_open_dataset(file, path, "/labels", H5UTIL_INTEGER, "integer class labels",
                                 1, NULL, &lo->yds, ys, err);
    else
        rc = h5util_open_dataset(file, path, "/targets", H5UTIL_FLOAT | H5UTIL_INTEGER,
                                 "float array", 2, NULL, &lo->yds, ys, err);
    if (rc != DMLP_OK)
        goto fail;
    if (!has_l && (to_size(ys->dims[1], &lo->k) || lo->k == 0)) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets: %llu columns; expected at "
                       "least one", path, (unsigned long long)ys->dims[1]);
        goto fail;
    }
    if (to_size(ys->dims[0], &yn) || yn != lo->n) {
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: %llu rows, but /features has %zu", path,
                       yname, (unsigned long long)ys->dims[0], lo->n);
        goto fail;
    }
    if (has_l) {
        /* num_classes: optional, a positive int32 scalar. */
        uint64_t nc = 0;
        if ((rc = h5util_read_uint_attr(file, path, "/labels", "num_classes", 1, INT32_MAX,
                                        &nc, &lo->has_nc, err)) != DMLP_OK)
            goto fail;
        lo->nc = (int64_t)nc;
    }
    lo->filtered = is_filtered(lo->fds) || is_filtered(lo->yds);
    return DMLP_OK;
fail:
    layout_close(lo);
    return rc;
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
static int read_block(const struct layout *lo, const char *path, size_t row0,
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
    return rc;
}

static int check_finite(const float *x, size_t n, size_t cols, size_t row0, const char *path,
                        const char *name, struct dmlp_error *err)
{
    const size_t i = dmlp_first_nonfinite(x, n * cols);
    if (i < n * cols)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: %s: row %zu, column %zu is %s", path, name,
                         row0 + i / cols, i % cols, dmlp_nonfinite_name(x[i]));
    return DMLP_OK;
}

/* Checks the rows just read (row numbers in messages are the file's) and stores the labels.
 * *k_rows: the class count these rows imply, num_classes if the file has it, else the
 * largest label + 1 (0 for no rows); the targets' width for regression. */
static int check_block(const struct layout *lo, const char *path, size_t row0,
                       struct dataset *ds, const int64_t *wide, size_t *k_rows,
                       struct dmlp_error *err)
{
    int rc = check_finite(ds->features, ds->n, ds->d, row0, path, "/features", err);
    if (rc != DMLP_OK)
        return rc;
    if (!lo->has_labels) {
        *k_rows = lo->k;
        return check_finite(ds->targets, ds->n, ds->k, row0, path, "/targets", err);
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

/* dataset_alloc, but n may be 0 (a shard or split part with no rows): the buffers then
 * hold one row, so features and labels/targets are never NULL. */
static int alloc_rows(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                      struct dmlp_error *err)
{
    int rc = dataset_alloc(out, n > 0 ? n : 1, d, k, with_labels, err);
    if (rc == DMLP_OK)
        (*out)->n = n;
    return rc;
}

/* Allocates ds for nrows rows of the file, and the int64 staging buffer for labels. */
static int alloc_block(const struct layout *lo, const char *path, size_t nrows,
                       struct dataset **ds, int64_t **wide, struct dmlp_error *err)
{
    *wide = NULL;
    int rc = alloc_rows(ds, nrows, lo->d, lo->k, lo->has_labels, err);
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

/* Reads rows [row0, row0 + nrows) (nrows == SIZE_MAX: to the end) in this process alone. */
static int read_file(struct dataset **out, const char *path, size_t row0, size_t nrows,
                     size_t *total_rows, struct file_types *types, struct dmlp_error *err)
{
    char why[256];
    *out = NULL;
    int rc = dmlp_check_input_file(path, err);
    if (rc != DMLP_OK)
        return rc;
    if (H5Fis_hdf5(path) <= 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5: %s", path,
                         h5util_reason(why, sizeof why));
    struct layout lo;
    struct dataset *ds = NULL;
    int64_t *wide = NULL;
    size_t k = 0;
    if ((rc = layout_open(file, path, &lo, err)) != DMLP_OK)
        goto close_file;
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
    if ((rc = read_block(&lo, path, row0, ds, wide, H5P_DEFAULT, NULL, err)) == DMLP_OK &&
        (rc = check_block(&lo, path, row0, ds, wide, &k, err)) == DMLP_OK)
        ds->k = k;
    if (types) {
        snprintf(types->features, sizeof types->features, "%s", lo.fs.type_name);
        snprintf(types->y, sizeof types->y, "%s", lo.ys.type_name);
    }
close_layout:
    layout_close(&lo);
close_file:
    free(wide);
    if (H5Fclose(file) < 0 && rc == DMLP_OK)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: closing failed: %s", path,
                       h5util_reason(why, sizeof why));
    if (rc != DMLP_OK)
        dataset_free(&ds);
    *out = ds;
    return rc;
}

/* The collective read behind dataset_read_shard, with HDF5's printer already silenced.
 * Three agreement points keep every rank on the same path: after the local checks (a
 * missing file), after the collective open, validation and allocation, and after the reads
 * and the checks of each rank's rows. Between them every rank makes the same HDF5 calls,
 * in the same order, as parallel HDF5 requires. */
static int read_shard(struct dataset **out, const char *path, const struct dist *d,
                      struct dataset_shard *info, struct dmlp_error *err)
{
    char why[256];
    int rc = dmlp_check_input_file(path, err);
    if (rc == DMLP_OK && H5Fis_hdf5(path) <= 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: not an HDF5 file", path);
    if (dist_agree(d, err) != DMLP_OK)
        return err->code;

    struct layout lo = {.fds = H5I_INVALID_HID, .yds = H5I_INVALID_HID};
    struct dataset *ds = NULL;
    int64_t *wide = NULL;
    size_t k = 0;
    hid_t file = H5I_INVALID_HID;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), dxpl = H5Pcreate(H5P_DATASET_XFER);
    /* MPI-IO underneath, and metadata read by one rank and broadcast rather than by all of
     * them: at a thousand ranks that is one small read instead of a metadata storm. */
    if (fapl < 0 || dxpl < 0 ||
        H5Pset_fapl_mpio(fapl, *(const MPI_Comm *)dist_mpi_comm(d), MPI_INFO_NULL) < 0 ||
        H5Pset_all_coll_metadata_ops(fapl, 1) < 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot set up parallel HDF5 access: %s",
                       path, h5util_reason(why, sizeof why));
    else if ((file = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0)
        rc = dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open as HDF5: %s", path,
                       h5util_reason(why, sizeof why));
    else
        rc = layout_open(file, path, &lo, err);
    if (rc == DMLP_OK) {
        info->global_rows = lo.n;
        uint64_t row0, len;
        dmlp_slice(lo.n, dist_size(d), dist_rank(d), &row0, &len);
        info->row0 = (size_t)row0;
        rc = alloc_block(&lo, path, (size_t)len, &ds, &wide, err);
    }
    /* Collective transfers where the file allows them: always for contiguous (or compact)
     * storage; for filtered (compressed) chunks only from HDF5 1.10.2 on, whose parallel
     * filter support reads them collectively. Decided from the file, so identically on
     * every rank: a rank that fell back on its own would leave the others waiting. */
#if H5_VERSION_GE(1, 10, 2)
    const int collective = 1;
#else
    const int collective = !lo.filtered;
#endif
    if (rc == DMLP_OK &&
        H5Pset_dxpl_mpio(dxpl, collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT) < 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot set up MPI-IO transfers: %s", path,
                       h5util_reason(why, sizeof why));
    if (dist_agree(d, err) != DMLP_OK)
        goto done;

    rc = read_block(&lo, path, info->row0, ds, wide, dxpl, &info->collective, err);
    if (rc == DMLP_OK)
        rc = check_block(&lo, path, info->row0, ds, wide, &k, err);
    if (dist_agree(d, err) != DMLP_OK)
        goto done;
    if (lo.has_labels && !lo.has_nc) {
        /* Without num_classes, K is the largest label anywhere + 1. */
        uint64_t k64 = k;
        dist_allreduce_max_u64(d, &k64, 1);
        k = (size_t)k64;
    }
    ds->k = k;
done:
    /* Closing is collective too; a read-only file has nothing to lose on close, so its
     * status is not worth another agreement. */
    layout_close(&lo);
    if (file >= 0)
        H5Fclose(file);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    free(wide);
    if (err->code != DMLP_OK)
        dataset_free(&ds);
    *out = ds;
    return err->code;
}


/* A 1-D attribute of variable-length UTF-8 strings (h5py reads it as a list of str). */
static int write_names_attr(hid_t file, const char *path, const char *obj, const char *name,
                            const char *const *names, size_t n, struct dmlp_error *err)
{
    char why[256];
    hsize_t dims[1] = {n};
    hid_t type = H5Tcopy(H5T_C_S1);
    int ok = type >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
             H5Tset_cset(type, H5T_CSET_UTF8) >= 0;
    hid_t space = ok ? H5Screate_simple(1, dims, NULL) : H5I_INVALID_HID;
    hid_t attr = space >= 0 ? H5Acreate_by_name(file, obj, name, type, space, H5P_DEFAULT,
                                                H5P_DEFAULT, H5P_DEFAULT)
                            : H5I_INVALID_HID;
    ok = attr >= 0 && H5Awrite(attr, type, names) >= 0;
    if (!ok)
        h5util_reason(why, sizeof why);
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
                      const char *const *class_names, struct dmlp_error *err)
{
    char why[256];
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot create %s: %s", path, tmp,
                         h5util_reason(why, sizeof why));
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
            rc = write_names_attr(file, path, "/labels", "class_names", class_names, ds->k,
                                  err);
    } else if (rc == DMLP_OK) {
        rc = h5util_write_array(file, path, "/targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, ydims,
                         ds->targets, err);
    }
    if (rc == DMLP_OK && H5Fflush(file, H5F_SCOPE_LOCAL) < 0)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: flushing %s failed: %s", path, tmp,
                       h5util_reason(why, sizeof why));
    if (H5Fclose(file) < 0 && rc == DMLP_OK)
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: closing %s failed: %s", path, tmp,
                       h5util_reason(why, sizeof why));
    return rc;
}

/* ---- helpers: files and checks ----------------------------------------------------------- */

/* stat()/access() first, so a missing or unreadable file gets the plain errno message. */
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
    int rc = dmlp_check_input_file(path, err);
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

/* qsort order of int32 values. */
static int cmp_int32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}
