/* dataset_describe: what `dmlp inspect` prints for a dataset file: the shapes and element
 * types, the range of the features, and per class the row counts (or per target column its
 * range). The file is read and validated by dataset_read's code, so inspect accepts exactly
 * the files training does. */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"

static void describe_features(FILE *f, const struct dataset *ds, const char *type);
static int describe_labels(FILE *f, const struct dataset *ds, const char *path,
                           const char *type, struct dmlp_error *err);
static void describe_targets(FILE *f, const struct dataset *ds, const char *type);

/* ---- public functions -------------------------------------------------------------------- */

/* /weights: the range, the mean and how many samples weigh nothing. */
static void describe_weights(FILE *f, const struct dataset *ds)
{
    double wmin = ds->weights[0], wmax = ds->weights[0], wsum = 0.0;
    size_t zeros = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const double w = ds->weights[i];
        wmin = w < wmin ? w : wmin;
        wmax = w > wmax ? w : wmax;
        wsum += w;
        zeros += w == 0.0;
    }
    fprintf(f, "  weights   [%zu]: min %g, mean %g, max %g, %zu zero\n", ds->n, wmin,
            wsum / (double)ds->n, wmax, zeros);
}

int dataset_describe(FILE *f, const char *path, struct dmlp_error *err)
{
    struct dataset_file_types types;
    struct dataset *ds = NULL;
    int rc = dataset_read_typed(&ds, path, &types, err);
    if (rc != DMLP_OK)
        return rc;
    fprintf(f, "dataset %s\n", path);
    describe_features(f, ds, types.features);
    if (ds->labels)
        rc = describe_labels(f, ds, path, types.y, err);
    else
        describe_targets(f, ds, types.y);
    if (ds->weights)
        describe_weights(f, ds);
    dataset_free(&ds);
    if (rc == DMLP_OK && ferror(f))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: writing the description failed", path);
    return rc;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void describe_features(FILE *f, const struct dataset *ds, const char *type)
{
    size_t nd = ds->n * ds->d; /* checked when the buffers were allocated */
    double fmin = ds->features[0], fmax = ds->features[0], fsum = 0.0;
    for (size_t i = 0; i < nd; i++) {
        double v = ds->features[i];
        fmin = v < fmin ? v : fmin;
        fmax = v > fmax ? v : fmax;
        fsum += v;
    }
    fprintf(f, "  features  %s [%zu, %zu]\n", type, ds->n, ds->d);
    fprintf(f, "  feature values: min %g, mean %g, max %g\n", fmin, fsum / (double)nd, fmax);
}

/* Up to 100 classes: a count per class, ten to a line, which keeps wide label sets
 * readable. */
static void print_class_counts(FILE *f, const struct dataset *ds, size_t *counts)
{
    for (size_t i = 0; i < ds->n; i++)
        counts[ds->labels[i]]++;
    fprintf(f, "  class counts:");
    for (size_t c = 0; c < ds->k; c++) {
        if (c > 0 && c % 10 == 0)
            fprintf(f, "\n               ");
        fprintf(f, " %zu:%zu", c, counts[c]);
    }
    fprintf(f, "\n");
}

static int cmp_int32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* More than 100 classes: K comes from the file (num_classes, or the largest label, up to
 * 2^31 - 1), so the sorted labels are counted instead of allocating K counters, and only
 * the smallest and largest class and the empty ones are reported. */
static void print_class_extremes(FILE *f, const struct dataset *ds, int32_t *sorted)
{
    memcpy(sorted, ds->labels, ds->n * sizeof *sorted);
    qsort(sorted, ds->n, sizeof *sorted, cmp_int32);
    /* runs of equal labels, in class order; ties go to the lowest class, as a scan over
     * per-class counts would give */
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

static int describe_labels(FILE *f, const struct dataset *ds, const char *path,
                           const char *type, struct dmlp_error *err)
{
    fprintf(f, "  labels    %s [%zu], %zu classes\n", type, ds->n, ds->k);
    const int wide = ds->k > 100;
    size_t *counts = wide ? NULL : calloc(ds->k, sizeof *counts);
    int32_t *sorted = wide ? malloc(ds->n * sizeof *sorted) : NULL;
    if (!counts && !sorted)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory counting %zu classes",
                         path, ds->k);
    if (wide)
        print_class_extremes(f, ds, sorted);
    else
        print_class_counts(f, ds, counts);
    free(counts);
    free(sorted);
    return DMLP_OK;
}

static void describe_targets(FILE *f, const struct dataset *ds, const char *type)
{
    fprintf(f, "  targets   %s [%zu, %zu]\n", type, ds->n, ds->k);
    for (size_t j = 0; j < ds->k; j++) {
        double tmin = ds->targets[j], tmax = ds->targets[j], tsum = 0.0;
        for (size_t i = 0; i < ds->n; i++) {
            double v = ds->targets[i * ds->k + j];
            tmin = v < tmin ? v : tmin;
            tmax = v > tmax ? v : tmax;
            tsum += v;
        }
        fprintf(f, "  target %zu: min %g, mean %g, max %g\n", j, tmin, tsum / (double)ds->n,
                tmax);
    }
}
