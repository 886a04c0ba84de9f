/* dataset: the life of an in-memory dataset and what is done to one before training:
 * allocating and freeing it, checking it fits a network, the seeded validation split and
 * feature standardisation. No file I/O: reading is dataset_read.c, writing
 * dataset_write.c, inspect's description dataset_describe.c, the importers import_idx.c
 * and import_csv.c (the whole module's API is dataset.h). */
#include "data/dataset.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"
#include "nn/model.h"
#include "core/rng.h"
#include "nn/vec.h"

/* ---- lifecycle ----------------------------------------------------------------------------- */

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
    if (!(*ds)->placed) {
        dmlp_free_aligned((*ds)->features);
        dmlp_free_aligned((*ds)->labels);
        dmlp_free_aligned((*ds)->targets);
        free((*ds)->weights);
    }
    free(*ds);
    *ds = NULL;
}

int dataset_alloc_rows(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                       struct dmlp_error *err)
{
    int rc = dataset_alloc(out, n > 0 ? n : 1, d, k, with_labels, err);
    if (rc == DMLP_OK)
        (*out)->n = n;
    return rc;
}

int dataset_alloc_weights(struct dataset *ds, struct dmlp_error *err)
{
    if (!(ds->weights = malloc((ds->n > 0 ? ds->n : 1) * sizeof(float))))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for %zu sample weights", ds->n);
    return DMLP_OK;
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

/* Marks in mask[0, n) the validation rows among global rows [global_row0, global_row0 + n)
 * of global_n, and returns how many it marked.
 * Selection sampling (Knuth, TAOCP vol. 2, 3.4.2, Algorithm S): row i is taken with
 * probability need / (rows left), which takes exactly `need` rows, every subset of that
 * size equally likely. Each rank replays the same draws up to the end of its own rows. */
static size_t draw_validation_rows(unsigned char *mask, size_t global_row0, size_t n,
                                   size_t global_n, double fraction, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed, DATASET_SPLIT_STREAM);
    size_t need = dataset_validation_count(global_n, fraction), nval = 0;
    const size_t end = global_row0 + n;
    for (size_t i = 0; i < end && need > 0; i++) {
        if (rng_below(&r, global_n - i) < need) {
            need--;
            if (i >= global_row0) {
                mask[i - global_row0] = 1;
                nval++;
            }
        }
    }
    return nval;
}

/* Moves the rows mask marks from ds to v (allocated for them), in order, and closes the
 * gaps they leave in ds, keeping its order. */
static void move_marked_rows(struct dataset *ds, const unsigned char *mask, struct dataset *v)
{
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
            if (ds->weights)
                v->weights[taken] = ds->weights[i];
            taken++;
        } else {
            if (kept != i) { /* kept < i: moving rows down, order kept */
                memmove(ds->features + kept * d, x, d * sizeof *x);
                if (ds->labels)
                    ds->labels[kept] = ds->labels[i];
                else
                    memmove(ds->targets + kept * k, ds->targets + i * k, k * sizeof(float));
                if (ds->weights)
                    ds->weights[kept] = ds->weights[i];
            }
            kept++;
        }
    }
    ds->n = kept;
}

/* The checks of a split's arguments, then the held-out rows of ds marked in *mask
 * (malloc'd) and counted in *nval. */
static int split_mask(const struct dataset *ds, size_t global_row0, size_t global_n,
                      double fraction, uint64_t seed, unsigned char **mask, size_t *nval,
                      struct dmlp_error *err)
{
    *mask = NULL;
    if (!(fraction >= 0.0 && fraction < 1.0))
        return dmlp_fail(err, DMLP_ERR_INPUT, "validation fraction %g: expected a number in "
                         "[0, 1)", fraction);
    if (global_row0 > global_n || ds->n > global_n - global_row0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "validation split: rows [%zu, %zu) lie outside "
                         "the %zu rows of the whole set", global_row0, global_row0 + ds->n,
                         global_n);
    if (!(*mask = calloc(ds->n > 0 ? ds->n : 1, 1)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "validation split: out of memory for %zu rows",
                         ds->n);
    *nval = draw_validation_rows(*mask, global_row0, ds->n, global_n, fraction, seed);
    return DMLP_OK;
}

int dataset_split(struct dataset *ds, size_t global_row0, size_t global_n, double fraction,
                  uint64_t seed, struct dataset **val, struct dmlp_error *err)
{
    *val = NULL;
    unsigned char *mask;
    size_t nval = 0;
    int rc = split_mask(ds, global_row0, global_n, fraction, seed, &mask, &nval, err);
    if (rc != DMLP_OK)
        return rc;
    struct dataset *v = NULL;
    rc = dataset_alloc_rows(&v, nval, ds->d, ds->k, ds->labels != NULL, err);
    if (rc == DMLP_OK && ds->weights && (rc = dataset_alloc_weights(v, err)) != DMLP_OK)
        dataset_free(&v);
    if (rc != DMLP_OK) {
        free(mask);
        dmlp_error_prefix(err, "validation split");
        return rc;
    }
    move_marked_rows(ds, mask, v);
    free(mask);
    *val = v;
    return DMLP_OK;
}

int dataset_split_into(struct dataset *ds, size_t global_row0, size_t global_n,
                       double fraction, uint64_t seed, struct dataset *val,
                       struct dmlp_error *err)
{
    unsigned char *mask;
    size_t nval = 0;
    const int rc = split_mask(ds, global_row0, global_n, fraction, seed, &mask, &nval, err);
    if (rc != DMLP_OK)
        return rc;
    if (nval != val->n || val->d != ds->d || !val->labels != !ds->labels ||
        !val->weights != !ds->weights || (!ds->labels && val->k != ds->k)) {
        free(mask);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "validation split: room for %zu rows of "
                         "another shape, for %zu rows", val->n, nval);
    }
    val->k = ds->k;
    move_marked_rows(ds, mask, val);
    free(mask);
    return DMLP_OK;
}

/* ---- datasets laid out in memory they do not own ----------------------------------------- */

/* The bytes of one array of n rows (at least one) of cols 4-byte values, in whole lines. */
static size_t array_bytes(size_t n, size_t cols)
{
    return ((n > 0 ? n : 1) * cols * 4 + 63) / 64 * 64;
}

int dataset_check_fits(const struct dataset_shape *s, size_t n, const char *what,
                       struct dmlp_error *err)
{
    const double cols = (double)s->d + (double)(s->has_labels ? 1 : s->k) +
                        (s->has_weights ? 1.0 : 0.0);
    const double bytes = (double)n * cols * 4.0, phys = (double)dmlp_phys_mem();
    if (bytes > phys || bytes > (double)(SIZE_MAX / 2))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: dataset of %zu rows x %zu features needs "
                         "%.0f bytes, more than this machine's %.0f bytes of memory", what, n,
                         s->d, bytes, phys);
    return DMLP_OK;
}

struct dataset_shape dataset_shape_of(const struct dataset *src)
{
    return (struct dataset_shape){.n = src->n, .d = src->d, .k = src->k,
                                  .has_labels = src->labels != NULL,
                                  .has_weights = src->weights != NULL};
}

int dataset_copy_into(struct dataset *dst, const struct dataset *src, struct dmlp_error *err)
{
    if (dst->n != src->n || dst->d != src->d || !dst->labels != !src->labels ||
        !dst->weights != !src->weights || (!src->labels && dst->k != src->k))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "dataset copy: room for %zu rows of another "
                         "shape, for %zu", dst->n, src->n);
    memcpy(dst->features, src->features, src->n * src->d * sizeof(float));
    if (src->labels)
        memcpy(dst->labels, src->labels, src->n * sizeof(int32_t));
    else
        memcpy(dst->targets, src->targets, src->n * src->k * sizeof(float));
    if (src->weights)
        memcpy(dst->weights, src->weights, src->n * sizeof(float));
    dst->k = src->k;
    return DMLP_OK;
}

int dataset_clone(struct dataset **out, const struct dataset *src, struct dmlp_error *err)
{
    int rc = dataset_alloc_rows(out, src->n, src->d, src->k, src->labels != NULL, err);
    if (rc == DMLP_OK && src->weights)
        rc = dataset_alloc_weights(*out, err);
    if (rc == DMLP_OK)
        rc = dataset_copy_into(*out, src, err);
    if (rc != DMLP_OK)
        dataset_free(out);
    return rc;
}

size_t dataset_bytes(const struct dataset_shape *s, size_t n)
{
    return array_bytes(n, s->d) + array_bytes(n, s->has_labels ? 1 : s->k) +
           (s->has_weights ? array_bytes(n, 1) : 0);
}

int dataset_place(struct dataset **out, const struct dataset_shape *s, size_t n, void *mem,
                  struct dmlp_error *err)
{
    struct dataset *ds = calloc(1, sizeof *ds);
    *out = NULL;
    if (!ds)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    char *at = mem;
    ds->n = n;
    ds->d = s->d;
    ds->k = s->k;
    ds->placed = 1;
    ds->features = (float *)at;
    at += array_bytes(n, s->d);
    if (s->has_labels)
        ds->labels = (int32_t *)at;
    else
        ds->targets = (float *)at;
    at += array_bytes(n, s->has_labels ? 1 : s->k);
    if (s->has_weights)
        ds->weights = (float *)at;
    *out = ds;
    return DMLP_OK;
}

void dataset_feature_sums(const struct dataset *ds, double *sum, double *sumsq)
{
    const size_t d = ds->d;
    for (size_t j = 0; j < d; j++)
        sum[j] = sumsq[j] = 0.0;
    kernel_vec()->feature_sums(sum, sumsq, ds->features, ds->n, d);
}

void dataset_target_sums(const struct dataset *ds, double *sum, double *sumsq)
{
    const size_t k = ds->k;
    for (size_t j = 0; j < k; j++)
        sum[j] = sumsq[j] = 0.0;
    if (ds->targets)
        kernel_vec()->feature_sums(sum, sumsq, ds->targets, ds->n, k);
}

/* mean and std from sums; a std below 1e-6·max(floor, |mean|), or 0, becomes 1. */
static void stats_finish(const double *sum, const double *sumsq, size_t n, size_t d,
                         double floor, float *mean, float *std)
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
        std[j] = s == 0.0 || s < 1e-6 * fmax(floor, fabs(m)) ? 1.0f : (float)s;
    }
}

void dataset_stats_finish(const double *sum, const double *sumsq, size_t n, size_t d,
                          float *mean, float *std)
{
    stats_finish(sum, sumsq, n, d, 1.0, mean, std);
}

void dataset_target_stats_finish(const double *sum, const double *sumsq, size_t n, size_t k,
                                 float *mean, float *std)
{
    stats_finish(sum, sumsq, n, k, 0.0, mean, std);
}

void dataset_standardize(struct dataset *ds, const float *mean, const float *std)
{
    kernel_vec()->standardize(ds->features, ds->n, ds->d, mean, std);
}

void dataset_standardize_targets(struct dataset *ds, const float *mean, const float *std)
{
    if (ds->targets)
        kernel_vec()->standardize(ds->targets, ds->n, ds->k, mean, std);
}
