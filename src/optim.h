/* optim: the descent step on the flat parameter buffer, with state (momentum buffer, step
 * count) in flat buffers mirroring the parameters, so the update is one loop and the state
 * one checkpoint dataset. SGD follows PyTorch's torch.optim.SGD exactly (dampening 0):
 *     g ← ĝ + λ·θ                 (ĝ = summed gradient × scale; λ = weight_decay)
 *     v ← μ·v + g                 (v starts at 0, so the first v = g as in PyTorch)
 *     d ← g + μ·v  (Nesterov)  or  d ← v
 *     θ ← θ − η·d
 * Never touches MPI or HDF5. */
#ifndef DMLP_OPTIM_H
#define DMLP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

struct optim {
    struct config_optimizer cfg;
    size_t n;          /* floats in each buffer */
    float *momentum;   /* [n], NULL when momentum == 0 */
    uint64_t steps;    /* updates applied so far */
};

int optim_create(struct optim **out, const struct config_optimizer *cfg, size_t n,
                 struct dmlp_error *err);
void optim_free(struct optim **o);

/* One update: params −= lr·d(grads·scale) as above. scale is 1 / (global samples in the
 * step), turning the all-reduced sum into the batch mean. Parallel over elements;
 * elementwise, so the result does not depend on the thread count. */
void optim_step(struct optim *o, float *params, const float *grads, float scale, double lr);

#endif
