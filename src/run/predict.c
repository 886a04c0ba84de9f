#define _POSIX_C_SOURCE 200809L
/* predict: the rank-split forward pass, the gather to rank 0 and the predictions file of
 * docs/architecture.md, "Formats" (its input rows are read by dataset_read_features). Every
 * message names the file; HDF5's own error printer is silenced while the writer runs. */
#include "run/predict.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "nn/activation.h"
#include "data/h5util.h"
#include "core/publish.h"
#include "core/partition.h"
#include "run/ensemble.h"

/* What the writer needs besides the arrays. */
struct predict_file {
    const char *path;        /* the final output path */
    const float *P;          /* [n × k] */
    const int32_t *labels;   /* [n], or NULL (regression) */
    size_t n, k;
    const char *loss;
    const char *checkpoint;  /* or NULL */
    const char *input;       /* or NULL */
    const float *sd;         /* an ensemble's: [n × k] members' standard deviation, */
    const float *entropy;    /* [n] its mean's entropy (classifiers), or NULL */
    size_t members;          /* 0: one network */
};

/* This rank's share of the predictions and rank 0's gathered whole. */
struct predict_bufs {
    float *mine;       /* [len × k]: this rank's rows */
    float *all;        /* [n × k], rank 0 only */
    float *sd_mine, *sd_all, *h_mine, *h_all; /* an ensemble's deviation and entropy */
    size_t *h_counts;
    int32_t *labels;   /* [n], rank 0 and classifiers only */
    size_t *counts;    /* [size]: each rank's share of all, in floats */
};

enum { PREDICT_CHUNK = 512 };
_Static_assert((int)PREDICT_CHUNK <= (int)ENSEMBLE_CALL_ROWS,
               "an ensemble takes a chunk per call");

static int check_request(const struct model *m, const struct dataset *in, const char *output,
                         const char *checkpoint, const char *input, size_t *bytes,
                         struct dmlp_error *e);
static void alloc_bufs(const struct dist *d, int classifier, size_t n, size_t k, uint64_t len,
                       size_t bytes, const char *output, struct predict_bufs *b,
                       struct dmlp_error *e);
static void free_bufs(struct predict_bufs *b);
static void forward_rows(struct model *m, const struct dataset *in, uint64_t off,
                         uint64_t len, float *mine);
static void gather_rows(const struct dist *d, size_t n, size_t k, uint64_t len,
                        struct predict_bufs *b);
static int write_predictions(const struct predict_file *pf, struct dmlp_error *err);

/* ---- public functions -------------------------------------------------------------------- */

/* The ensemble's share of the rows: mean, deviation and (classifiers) entropy, then all
 * three gathered to rank 0. */
static int ensemble_rows(const struct dist *d, struct ensemble *ens, const struct dataset *in,
                         uint64_t off, uint64_t len, struct predict_bufs *b,
                         struct dmlp_error *e)
{
    const size_t K = model_output_dim(ens->m[0]), N = in->n, D = in->d;
    const int rank = dist_rank(d), size = dist_size(d);
    const int classifier = ens->m[0]->loss == DMLP_LOSS_CROSS_ENTROPY;
    b->sd_mine = dmlp_alloc_aligned(((size_t)len * K + 1) * sizeof(float));
    b->h_mine = dmlp_alloc_aligned(((size_t)len + 1) * sizeof(float));
    b->h_counts = malloc((size_t)size * sizeof *b->h_counts);
    if (rank == 0) {
        b->sd_all = dmlp_alloc_aligned(N * K * sizeof(float));
        b->h_all = dmlp_alloc_aligned(N * sizeof(float));
    }
    if (!b->sd_mine || !b->h_mine || !b->h_counts || (rank == 0 && (!b->sd_all || !b->h_all)))
        dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory for the ensemble's predictions");
    if (dist_agree(d, e))
        return e->code;
    for (uint64_t i = off; i < off + len; i += PREDICT_CHUNK) {
        const size_t n = (size_t)(off + len - i < PREDICT_CHUNK ? off + len - i : PREDICT_CHUNK);
        const size_t at = (size_t)(i - off);
        ensemble_forward(ens, in->features + (size_t)i * D, n, b->mine + at * K,
                         b->sd_mine + at * K);
        if (classifier)
            ensemble_entropy(b->mine + at * K, n, K, b->h_mine + at);
    }
    gather_rows(d, N, K, len, b);
    for (int r = 0; r < size; r++) {
        uint64_t r_off, r_len;
        dmlp_slice(N, size, r, &r_off, &r_len);
        b->counts[r] = (size_t)r_len * K;
        b->h_counts[r] = (size_t)r_len;
    }
    dist_gatherv_float(d, b->sd_mine, (size_t)len * K, b->sd_all, b->counts, 0);
    dist_gatherv_float(d, b->h_mine, (size_t)len, b->h_all, b->h_counts, 0);
    return DMLP_OK;
}

/* predict_run for one network (m) or an ensemble (ens, on raw rows). */
static int run(const struct dist *d, struct model *m, struct ensemble *ens,
               const struct dataset *in, const char *output, const char *checkpoint,
               const char *input, struct dmlp_error *err);

int predict_run(const struct dist *d, struct model *m, const struct dataset *in,
                const char *output, const char *checkpoint, const char *input,
                struct dmlp_error *err)
{
    return run(d, m, NULL, in, output, checkpoint, input, err);
}

int predict_run_ensemble(const struct dist *d, struct ensemble *ens, const struct dataset *in,
                         const char *output, const char *checkpoints, const char *input,
                         struct dmlp_error *err)
{
    return run(d, ens->m[0], ens, in, output, checkpoints, input, err);
}

static int run(const struct dist *d, struct model *m, struct ensemble *ens,
               const struct dataset *in, const char *output, const char *checkpoint,
               const char *input, struct dmlp_error *err)
{
    const int rank = dist_rank(d), size = dist_size(d);
    const size_t K = model_output_dim(m), N = in->n;
    const int classifier = m->loss == DMLP_LOSS_CROSS_ENTROPY;
    struct dmlp_error e = {0};
    struct predict_bufs b = {0};
    size_t bytes = 0;
    uint64_t off = 0, len = 0;
    dmlp_slice(N, size, rank, &off, &len);

    /* Checks every rank makes alike, then the allocations; one agreement for all. */
    if (check_request(m, in, output, checkpoint, input, &bytes, &e) == DMLP_OK &&
        model_reserve(m, PREDICT_CHUNK, &e) == DMLP_OK)
        alloc_bufs(d, classifier, N, K, len, bytes, output, &b, &e);
    int rc = dist_agree(d, &e);
    if (rc == DMLP_OK && ens)
        rc = ensemble_rows(d, ens, in, off, len, &b, &e);
    else if (rc == DMLP_OK)
        forward_rows(m, in, off, len, b.mine);
    if (rc == DMLP_OK) {
        if (!ens)
            gather_rows(d, N, K, len, &b);
        if (rank == 0) {
            for (size_t i = 0; b.labels && i < N; i++)
                b.labels[i] = (int32_t)dmlp_argmax(b.all + i * K, K);
            const struct predict_file pf = {
                .path = output, .P = b.all, .labels = b.labels, .n = N, .k = K,
                .loss = dmlp_loss_name(m->loss), .checkpoint = checkpoint, .input = input,
                .sd = b.sd_all, .entropy = classifier ? b.h_all : NULL,
                .members = ens ? ens->n : 0};
            write_predictions(&pf, &e);
        }
        rc = dist_agree(d, &e);
    }
    if (rc != DMLP_OK && err)
        *err = e;
    free_bufs(&b);
    return rc;
}

/* ---- helpers: the prediction ----------------------------------------------------------- */

/* The checks every rank makes alike: an output path, rows of the network's width, at
 * least one row, a size that fits, and no output over the input or the checkpoint.
 * *bytes is the size of all the predictions. */
static int check_request(const struct model *m, const struct dataset *in, const char *output,
                         const char *checkpoint, const char *input, size_t *bytes,
                         struct dmlp_error *e)
{
    const char *what = input ? input : "input data";
    const size_t K = model_output_dim(m), D = model_input_dim(m), N = in->n;
    size_t total = 0;
    if (!output || !output[0])
        return dmlp_fail(e, DMLP_ERR_INPUT, "predict: no output path given");
    if (in->d != D)
        return dmlp_fail(e, DMLP_ERR_INPUT, "%s: /features: rows have %zu features, but the "
                         "network takes %zu inputs", what, in->d, D);
    if (N == 0)
        return dmlp_fail(e, DMLP_ERR_INPUT, "%s: /features: no rows to predict", what);
    if (dmlp_mul_size(&total, N, K) || dmlp_mul_size(bytes, total, sizeof(float)))
        return dmlp_fail(e, DMLP_ERR_INPUT, "%s: %zu rows x %zu outputs overflow size_t", what,
                         N, K);
    if ((input && dmlp_same_file(output, input)) ||
        (checkpoint && dmlp_same_file(output, checkpoint)))
        return dmlp_fail(e, DMLP_ERR_INPUT, "%s: refusing to overwrite the %s with predictions",
                         output, input && dmlp_same_file(output, input) ? "input" : "checkpoint");
    return DMLP_OK;
}

/* This rank's len rows of k outputs, and on rank 0 room for all n rows (bytes) and, for a
 * classifier, their labels. */
static void alloc_bufs(const struct dist *d, int classifier, size_t n, size_t k, uint64_t len,
                       size_t bytes, const char *output, struct predict_bufs *b,
                       struct dmlp_error *e)
{
    const int rank = dist_rank(d), size = dist_size(d);
    b->counts = malloc((size_t)size * sizeof *b->counts);
    b->mine = len ? dmlp_alloc_aligned((size_t)len * k * sizeof(float)) : NULL;
    if (rank == 0) {
        b->all = dmlp_alloc_aligned(bytes);
        b->labels = classifier ? dmlp_alloc_aligned(n * sizeof(int32_t)) : NULL;
    }
    if (!b->counts || (len && !b->mine) ||
        (rank == 0 && (!b->all || (classifier && !b->labels))))
        dmlp_fail(e, DMLP_ERR_RUNTIME, "%s: out of memory for the predictions of %zu rows "
                  "x %zu outputs", output, rank == 0 ? n : (size_t)len, k);
}

static void free_bufs(struct predict_bufs *b)
{
    free(b->counts);
    dmlp_free_aligned(b->mine);
    dmlp_free_aligned(b->all);
    dmlp_free_aligned(b->labels);
    dmlp_free_aligned(b->sd_mine);
    dmlp_free_aligned(b->sd_all);
    dmlp_free_aligned(b->h_mine);
    dmlp_free_aligned(b->h_all);
    free(b->h_counts);
}

/* The forward pass over rows [off, off + len) of in, PREDICT_CHUNK rows at a time, into
 * mine ([len × k]), in the targets' original units when the network was trained on
 * standardised targets. */
static void forward_rows(struct model *m, const struct dataset *in, uint64_t off,
                         uint64_t len, float *mine)
{
    const size_t K = model_output_dim(m), D = model_input_dim(m);
    for (uint64_t i = off; i < off + len; i += PREDICT_CHUNK) {
        const size_t b = (size_t)(off + len - i < PREDICT_CHUNK ? off + len - i
                                                                : PREDICT_CHUNK);
        const float *Y = model_forward(m, in->features + (size_t)i * D, b);
        memcpy(mine + (size_t)(i - off) * K, Y, b * K * sizeof(float));
        model_unscale_outputs(m, mine + (size_t)(i - off) * K, b); /* original units */
    }
}

/* Every rank's rows into rank 0's all, in rank order (each rank's share as dmlp_slice
 * cuts n rows). */
static void gather_rows(const struct dist *d, size_t n, size_t k, uint64_t len,
                        struct predict_bufs *b)
{
    const int size = dist_size(d);
    for (int r = 0; r < size; r++) {
        uint64_t r_off, r_len;
        dmlp_slice(n, size, r, &r_off, &r_len);
        b->counts[r] = (size_t)r_len * k;
    }
    dist_gatherv_float(d, b->mine, (size_t)len * k, b->all, b->counts, 0);
}

/* ---- helpers: files ----------------------------------------------------------------------- */

static int write_h5(const struct predict_file *pf, const char *tmp, struct dmlp_error *err)
{
    const char *path = pf->path;
    const hid_t file = h5util_create_file(tmp, path, err);
    if (file < 0)
        return DMLP_ERR_RUNTIME; /* h5util_create_file said why */
    const hsize_t dims[2] = {pf->n, pf->k};
    const int32_t version = 1;
    int rc = h5util_write_str_attr(file, path, "/", "format", "dmlp-predictions", err);
    if (rc == DMLP_OK)
        rc = h5util_write_num_attr(file, path, "/", "format_version", H5T_STD_I32LE,
                                   H5T_NATIVE_INT32, &version, err);
    if (rc == DMLP_OK)
        rc = h5util_write_str_attr(file, path, "/", "dmlp_version", DMLP_VERSION, err);
    if (rc == DMLP_OK)
        rc = h5util_write_str_attr(file, path, "/", "loss", pf->loss, err);
    if (rc == DMLP_OK && pf->checkpoint)
        rc = h5util_write_str_attr(file, path, "/", "checkpoint", pf->checkpoint, err);
    if (rc == DMLP_OK && pf->input)
        rc = h5util_write_str_attr(file, path, "/", "input", pf->input, err);
    if (rc == DMLP_OK)
        rc = h5util_write_array(file, path, "/predictions", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                                2, dims, pf->P, err);
    if (rc == DMLP_OK && pf->labels)
        rc = h5util_write_array(file, path, "/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1,
                                dims, pf->labels, err);
    if (rc == DMLP_OK && pf->members) {
        const int32_t members = (int32_t)pf->members;
        rc = h5util_write_num_attr(file, path, "/", "members", H5T_STD_I32LE,
                                   H5T_NATIVE_INT32, &members, err);
    }
    if (rc == DMLP_OK && pf->sd)
        rc = h5util_write_array(file, path, "/std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims,
                                pf->sd, err);
    if (rc == DMLP_OK && pf->entropy)
        rc = h5util_write_array(file, path, "/entropy", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1,
                                dims, pf->entropy, err);
    return h5util_finish_file(file, path, tmp, rc, err);
}

/* Writes the file under a temporary name and publishes it (publish.h). */
static int write_predictions(const struct predict_file *pf, struct dmlp_error *err)
{
    struct publish p;
    int rc = publish_begin(&p, pf->path, err);
    if (rc != DMLP_OK)
        return rc;
    H5UTIL_QUIETLY(rc, write_h5(pf, p.tmp, err));
    if (rc == DMLP_OK)
        return publish_commit(&p, err);
    publish_abort(&p);
    return rc;
}
