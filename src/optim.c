#include "optim.h"

#include <stdlib.h>

int optim_create(struct optim **out, const struct config_optimizer *cfg, size_t n,
                 struct dmlp_error *err)
{
    *out = NULL;
    struct optim *o = calloc(1, sizeof *o);
    if (!o)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "optimizer: out of memory");
    o->cfg = *cfg;
    o->n = n;
    if (cfg->momentum != 0.0) {
        o->momentum = dmlp_alloc_aligned(n * sizeof(float));
        if (!o->momentum) {
            free(o);
            return dmlp_fail(err, DMLP_ERR_RUNTIME,
                             "optimizer: cannot allocate momentum for %zu parameters", n);
        }
    }
    *out = o;
    return DMLP_OK;
}

void optim_free(struct optim **op)
{
    if (!*op)
        return;
    dmlp_free_aligned((*op)->momentum);
    free(*op);
    *op = NULL;
}

void optim_step(struct optim *o, float *params, const float *grads, float scale, double lr)
{
    const float eta = (float)lr, mu = (float)o->cfg.momentum, wd = (float)o->cfg.weight_decay;
    const size_t n = o->n;
    float *v = o->momentum;
    if (!v) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float g = grads[i] * scale + wd * params[i];
            params[i] -= eta * g;
        }
    } else if (o->cfg.nesterov) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float g = grads[i] * scale + wd * params[i];
            v[i] = mu * v[i] + g;
            params[i] -= eta * (g + mu * v[i]);
        }
    } else {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float g = grads[i] * scale + wd * params[i];
            v[i] = mu * v[i] + g;
            params[i] -= eta * v[i];
        }
    }
    o->steps++;
}
