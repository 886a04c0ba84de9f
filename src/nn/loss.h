/* loss: the per-sample losses of docs/architecture.md, "The math", with their weights, and
 * the gradient each sends back into the network (∂ℓ/∂Y, before the output activation's
 * derivative). PyTorch's definitions: MSELoss, L1Loss and HuberLoss summed over the outputs
 * (each output's term × its weight w_k), CrossEntropyLoss after softmax; a sample weight ω_i
 * multiplies the sample's loss and gradient. The batch mean (÷ Σω over the global batch)
 * is the caller's, after the gradient sum.
 *
 * The unweighted mse and cross_entropy go through the vec kernels (nn/vec.h), as they
 * always have (so those runs keep their bits); this file serves the rest, in plain C with
 * each term in double (the output layer is a few values per sample). */
#ifndef DMLP_LOSS_H
#define DMLP_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"

struct loss_spec {
    enum dmlp_loss kind;
    double delta;            /* huber's δ */
    const float *out_w;      /* [k] per-output weights, or NULL (all 1); regression only */
};

/* Regression (mse, mae, huber): G[i,k] = ω_i·w_k·∂h/∂y at u = Y − T, for batch rows of k
 * outputs; returns Σ_i ω_i Σ_k w_k h(u_ik) in double, summed in row order. row_w: [batch]
 * sample weights, or NULL (all 1). */
double loss_regression(float *G, const float *Y, const float *T, const float *row_w,
                       size_t batch, size_t k, const struct loss_spec *s);

/* Cross-entropy after softmax, weighted: G = ω_i (P − onehot); returns
 * Σ_i ω_i·(−log p_y). */
double loss_xent_weighted(float *G, const float *P, const int32_t *labels, const float *row_w,
                          size_t batch, size_t k);

/* The per-sample loss of one row (no gradient), for checks and evaluation: ℓ(y, t). */
double loss_row(const float *y, const float *t, size_t k, const struct loss_spec *s);

#endif
