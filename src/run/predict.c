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

/* What the writer needs besides the arrays. */
struct predict_file {
    const char *path;        /* the final output path */
    const float *P;          /* [n × k] */
    const int32_t *labels;   /* [n], or NULL (regression) */
    size_t n, k;
    const char *loss;
    const char *checkpoint;  /* or NULL */
    const char *input;       /* or NULL */
};

enum { PREDICT_CHUNK = 512 };

static int write_predictions(const struct predict_file *pf, struct dmlp_error *err);

/* ---- public functions -------------------------------------------------------------------- */

int predict_run(const struct dist *d, struct model *m, const struct dataset *in,
                const char *output, const char *checkpoint, const char *input,
                struct dmlp_error *err)
{
    const char *what = input ? input : "input data";
    const int rank = dist_rank(d), size = dist_size(d);
    const size_t K = model_output_dim(m), D = model_input_dim(m), N = in->n;
    const int classifier = m->loss == DMLP_LOSS_CROSS_ENTROPY;
    struct dmlp_error e = {0};
    float *mine = NULL, *all = NULL;
    int32_t *labels = NULL;
    size_t *counts = NULL, total = 0, bytes = 0;
    uint64_t off = 0, len = 0;
    dmlp_slice(N, size, rank, &off, &len);

    /* Checks every rank makes alike, then the allocations; one agreement for all. */
    if (!output || !output[0])
        dmlp_fail(&e, DMLP_ERR_INPUT, "predict: no output path given");
    else if (in->d != D)
        dmlp_fail(&e, DMLP_ERR_INPUT, "%s: /features: rows have %zu features, but the network "
                  "takes %zu inputs", what, in->d, D);
    else if (N == 0)
        dmlp_fail(&e, DMLP_ERR_INPUT, "%s: /features: no rows to predict", what);
    else if (dmlp_mul_size(&total, N, K) || dmlp_mul_size(&bytes, total, sizeof(float)))
        dmlp_fail(&e, DMLP_ERR_INPUT, "%s: %zu rows x %zu outputs overflow size_t", what, N, K);
    else if ((input && dmlp_same_file(output, input)) ||
             (checkpoint && dmlp_same_file(output, checkpoint)))
        dmlp_fail(&e, DMLP_ERR_INPUT, "%s: refusing to overwrite the %s with predictions",
                  output, input && dmlp_same_file(output, input) ? "input" : "checkpoint");
    else if (model_reserve(m, PREDICT_CHUNK, &e) == DMLP_OK) {
        counts = malloc((size_t)size * sizeof *counts);
        mine = len ? dmlp_alloc_aligned((size_t)len * K * sizeof(float)) : NULL;
        if (rank == 0) {
            all = dmlp_alloc_aligned(bytes);
            labels = classifier ? dmlp_alloc_aligned(N * sizeof(int32_t)) : NULL;
        }
        if (!counts || (len && !mine) || (rank == 0 && (!all || (classifier && !labels))))
            dmlp_fail(&e, DMLP_ERR_RUNTIME, "%s: out of memory for the predictions of %zu rows "
                      "x %zu outputs", output, rank == 0 ? N : (size_t)len, K);
    }
    int rc = dist_agree(d, &e);
    if (rc == DMLP_OK) {
        for (uint64_t i = off; i < off + len; i += PREDICT_CHUNK) {
            const size_t b = (size_t)(off + len - i < PREDICT_CHUNK ? off + len - i
                                                                    : PREDICT_CHUNK);
            const float *Y = model_forward(m, in->features + (size_t)i * D, b);
            memcpy(mine + (size_t)(i - off) * K, Y, b * K * sizeof(float));
        }
        for (int r = 0; r < size; r++) {
            uint64_t r_off, r_len;
            dmlp_slice(N, size, r, &r_off, &r_len);
            counts[r] = (size_t)r_len * K;
        }
        dist_gatherv_float(d, mine, (size_t)len * K, all, counts, 0);
        if (rank == 0) {
            for (size_t i = 0; labels && i < N; i++)
                labels[i] = (int32_t)dmlp_argmax(all + i * K, K);
            const struct predict_file pf = {
                .path = output, .P = all, .labels = labels, .n = N, .k = K,
                .loss = dmlp_loss_name(m->loss), .checkpoint = checkpoint, .input = input};
            write_predictions(&pf, &e);
        }
        rc = dist_agree(d, &e);
    }
    if (rc != DMLP_OK && err)
        *err = e;
    free(counts);
    dmlp_free_aligned(mine);
    dmlp_free_aligned(all);
    dmlp_free_aligned(labels);
    return rc;
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
