/* optim: the descent step on the flat parameter buffer, and gradient clipping by global
 * norm. Optimizer state (momentum, Adam moments) lives in flat buffers mirroring the
 * parameters, so each update is one elementwise loop and each state buffer one checkpoint
 * dataset (/optimizer/<name>, listed by optim_state_buffers). Never touches MPI or HDF5;
 * never allocates after optim_create.
 *
 * The updates follow PyTorch's torch.optim (2.x, single-tensor CPU path) operation by
 * operation, in float32, so a run can be compared against it. With ĝ = grads·scale (the
 * all-reduced gradient sum times 1/global samples: the batch mean), λ = weight_decay,
 * η = lr of the step, t = steps after this update (1 on the first):
 *
 *   sgd   (torch.optim.SGD, dampening 0)
 *     g ← ĝ + λ·θ
 *     v ← μ·v + g                 (v starts at 0, so the first v = g as in PyTorch's clone)
 *     d ← g + μ·v  (Nesterov)  or  d ← v;   without momentum d ← g and no buffer exists
 *     θ ← θ − η·d
 *
 *   adam  (torch.optim.Adam; weight decay coupled, i.e. L2 added to the gradient)
 *     g ← ĝ + λ·θ
 *     m ← lerp(m, g, 1 − β1)      (= β1·m + (1 − β1)·g; PyTorch's exp_avg.lerp_)
 *     v ← β2·v + (1 − β2)·g²
 *     bc1 = 1 − β1^t,  bc2 = 1 − β2^t             (in double, once per step)
 *     denom ← sqrt(v) / sqrt(bc2) + ε
 *     θ ← θ − (η / bc1)·m / denom
 *   which is θ − η·m̂ / (sqrt(v̂) + ε) with m̂ = m/bc1, v̂ = v/bc2 (Kingma & Ba, with ε
 *   outside the bias correction as PyTorch places it).
 *
 *   adamw (torch.optim.AdamW; weight decay decoupled, Loshchilov & Hutter)
 *     θ ← θ·(1 − η·λ)             first, then the adam update above with g ← ĝ
 *
 * Every update is elementwise and parallel over elements (schedule(static)), so the result
 * does not depend on the number of threads. */
#ifndef DMLP_OPTIM_H
#define DMLP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"
#include "core/util.h"

/* The most state buffers any optimizer keeps (adam: exp_avg and exp_avg_sq). */
#define OPTIM_MAX_STATE 2

struct optim {
    struct config_optimizer cfg;
    size_t n;            /* floats in each buffer (the parameter count) */
    float *momentum;     /* [n] sgd with momentum > 0; NULL otherwise */
    float *exp_avg;      /* [n] adam/adamw: first moment m; NULL otherwise */
    float *exp_avg_sq;   /* [n] adam/adamw: second moment v; NULL otherwise */
    uint64_t steps;      /* updates applied so far (Adam's t before the next step) */
    struct lbfgs *lbfgs; /* lbfgs: its state and scratch (nn/lbfgs.h); NULL otherwise */
};

/* Creates an optimizer for n > 0 parameters with zeroed state and steps = 0. Checks the
 * values the update depends on (adam/adamw: β1, β2 in [0, 1), ε > 0; sgd: momentum in
 * [0, 1), Nesterov only with momentum); DMLP_ERR_INPUT names the key, DMLP_ERR_RUNTIME
 * reports an allocation failure. *out is NULL on failure. */
int optim_create(struct optim **out, const struct config_optimizer *cfg, size_t n,
                 struct dmlp_error *err);

/* Frees the optimizer and its buffers and sets *o to NULL; accepts a NULL *o. */
void optim_free(struct optim **o);

/* (lbfgs takes no optim_step: its epochs are lbfgs_step over the whole training set.) */

/* One update of params [n] from grads [n] (the all-reduced per-sample gradient sums) with
 * the formulas above, ĝ = grads·scale and η = lr (the schedule's rate for this step);
 * increments o->steps. No allocation; identical on every rank given identical inputs.
 * Returns 1 when some updated parameter is NaN or infinite, which any non-finite gradient
 * causes: the step has then diverged, and its parameters and state are not to be used
 * (the trainer stops, keeping its last checkpoint), else 0. */
int optim_step(struct optim *o, float *params, const float *grads, float scale, double lr);

/* Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ on ĝ = grads·scale:
 *     total = sqrt(Σ_i (grads_i·scale)²)                   (in double)
 *     if max_norm > 0 and c = max_norm / (total + 1e-6) < 1:  grads_i ← grads_i·c
 * Scaling the sums by c scales ĝ by c, so the clipped ĝ has norm max_norm (to 1e-6).
 * The sum runs over fixed chunks of 4096 elements, each summed in order and the chunk sums
 * added in order, so total is bit-identical for any thread count. Returns total (before
 * clipping); with max_norm <= 0 it only measures. Call it after the allreduce, where every
 * rank holds the same buffer, so every rank clips the same way. */
double optim_clip_grad_norm(float *grads, size_t n, float scale, double max_norm);

/* The optimizer's state buffers as (name, buffer of o->n floats) pairs, for checkpoints to
 * save and restore as /optimizer/<name>: "momentum" (sgd with momentum), "exp_avg" and
 * "exp_avg_sq" (adam, adamw), none for plain sgd. Fills names[i] and bufs[i] (either array
 * may be NULL; otherwise each holds OPTIM_MAX_STATE entries) and returns how many.
 * The step count is o->steps. */
size_t optim_state_buffers(const struct optim *o, const char **names, float **bufs);

#endif
