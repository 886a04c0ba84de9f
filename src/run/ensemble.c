/* ensemble: several networks as one (ensemble.h). */
#include "run/ensemble.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/checkpoint.h"
#include "data/dataset.h"

int model_load_checkpoint(const char *ckpt, struct model **out, struct dmlp_error *err)
{
    size_t in_dim = 0, n_layers = 0;
    struct config_layer *layers = NULL;
    enum dmlp_loss loss = DMLP_LOSS_CROSS_ENTROPY;
    *out = NULL;
    if (checkpoint_read_network(ckpt, &in_dim, &layers, &n_layers, &loss, err) == DMLP_OK &&
        model_create(out, in_dim, layers, n_layers, loss, err) == DMLP_OK &&
        checkpoint_load_layers(ckpt, *out, err) != DMLP_OK)
        model_free(out);
    free(layers);
    return err->code;
}

int ensemble_open(struct ensemble *e, const char *const *ckpt, size_t n, size_t rows,
                  struct dmlp_error *err)
{
    memset(e, 0, sizeof *e);
    if (!(e->m = calloc(n, sizeof *e->m)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory");
    e->n = n;
    e->rows = rows;
    for (size_t i = 0; i < n; i++) {
        if (model_load_checkpoint(ckpt[i], &e->m[i], err) != DMLP_OK)
            return err->code;
        const struct model *a = e->m[0], *b = e->m[i];
        if (model_input_dim(b) != model_input_dim(a) ||
            model_output_dim(b) != model_output_dim(a) || b->loss != a->loss)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: a %zu-input, %zu-output %s network, "
                             "but %s (the ensemble's first) is %zu-input, %zu-output %s; "
                             "an ensemble's members must agree", ckpt[i],
                             model_input_dim(b), model_output_dim(b), dmlp_loss_name(b->loss),
                             ckpt[0], model_input_dim(a), model_output_dim(a),
                             dmlp_loss_name(a->loss));
        if (model_reserve(e->m[i], rows, err) != DMLP_OK)
            return err->code;
    }
    const size_t D = model_input_dim(e->m[0]), K = model_output_dim(e->m[0]);
    e->x = dmlp_alloc_aligned(rows * D * sizeof(float));
    e->outs = dmlp_alloc_aligned(n * rows * K * sizeof(float));
    if (!e->x || !e->outs)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "out of memory for %zu members' outputs", n);
    return DMLP_OK;
}

void ensemble_close(struct ensemble *e)
{
    for (size_t i = 0; e->m && i < e->n; i++)
        model_free(&e->m[i]);
    free(e->m);
    dmlp_free_aligned(e->x);
    dmlp_free_aligned(e->outs);
    memset(e, 0, sizeof *e);
}

void ensemble_forward(struct ensemble *e, const float *X, size_t b, float *mean, float *sd)
{
    const size_t D = model_input_dim(e->m[0]), K = model_output_dim(e->m[0]), n = e->n;
    for (size_t i = 0; i < n; i++) {
        struct model *m = e->m[i];
        memcpy(e->x, X, b * D * sizeof(float));
        if (m->norm_mean) {
            struct dataset view = {.n = b, .d = D, .features = e->x};
            dataset_standardize(&view, m->norm_mean, m->norm_std);
        }
        float *out = e->outs + i * e->rows * K;
        memcpy(out, model_forward(m, e->x, b), b * K * sizeof(float));
        model_unscale_outputs(m, out, b); /* original units */
    }
    ensemble_moments(e->outs, n, e->rows * K, b * K, mean, sd);
}

void ensemble_moments(const float *outs, size_t n, size_t stride, size_t count, float *mean,
                      float *sd)
{
    for (size_t j = 0; j < count; j++) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++)
            s += (double)outs[i * stride + j];
        const double mu = s / (double)n;
        mean[j] = (float)mu;
        if (sd) {
            double v = 0.0;
            for (size_t i = 0; i < n; i++) {
                const double u = (double)outs[i * stride + j] - mu;
                v += u * u;
            }
            sd[j] = (float)sqrt(v / (double)n);
        }
    }
}

void ensemble_entropy(const float *P, size_t b, size_t k, float *h)
{
    for (size_t i = 0; i < b; i++) {
        double s = 0.0;
        for (size_t j = 0; j < k; j++) {
            const double p = (double)P[i * k + j];
            s -= p > 0 ? p * log(p) : 0.0;
        }
        h[i] = (float)s;
    }
}
