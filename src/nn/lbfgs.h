/* lbfgs: full-batch L-BFGS with a strong-Wolfe line search, as PyTorch's
 * torch.optim.LBFGS(line_search_fn="strong_wolfe") does it (docs/architecture.md,
 * "L-BFGS"). One lbfgs_step is one call of PyTorch's step(closure): up to max_iter
 * iterations, each a two-loop-recursion direction from the last `history` (s, y) pairs and
 * a line search along it (Nocedal & Wright, algorithms 3.5 and 3.6: bracketing, then a
 * zoom by safeguarded cubic interpolation), with PyTorch's constants: c1 = 1e-4, c2 = 0.9,
 * at most 25 evaluations per search, tolerance_grad 1e-7, tolerance_change 1e-9,
 * max_eval = max_iter · 5/4, a first step of min(1, 1/‖g‖₁)·lr, then lr.
 *
 * The objective is the caller's: eval computes the loss and the gradient of the mean loss
 * at the current parameters. Every decision is made from what eval returns, so ranks that
 * get the same values (allreduced) take the same steps. Vectors are float32 like the
 * parameters; dot products and the scalars are double, summed in element order (the
 * same bits for any thread count). Never touches MPI or HDF5; allocates only in create. */
#ifndef DMLP_LBFGS_H
#define DMLP_LBFGS_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"
#include "core/util.h"

struct lbfgs {
    size_t n;                   /* parameters */
    uint32_t history, max_iter, max_eval;
    double lr;
    /* the state PyTorch keeps between steps (saved in checkpoints) */
    uint64_t n_iter, func_evals;
    float *d, *prev_grad;       /* [n]: the last direction, the gradient before it */
    double t, h_diag, prev_loss;
    float *dirs, *stps;         /* [history × n]: the y and s pairs, in a ring */
    double *ro;                 /* [history]: 1 / yᵀs */
    uint32_t count, first;      /* pairs held; the ring index of the oldest */
    /* scratch */
    float *g, *x0, *g_new, *g_prev, *bracket_g[2];
    double *al;
};

/* Computes the loss and, into grad [n], its gradient at the current parameters; returns 0,
 * or non-zero to abandon the step (the parameters are then restored to where the step's
 * current line search began). */
typedef int lbfgs_eval_fn(void *ctx, float *grad, double *loss);

/* For n parameters, with cfg's lr, history and max_iter; DMLP_ERR_INPUT (naming
 * optimizer.history) when the history does not fit in memory. */
int lbfgs_create(struct lbfgs **out, size_t n, const struct config_optimizer *cfg,
                 struct dmlp_error *err);
void lbfgs_free(struct lbfgs **o);

/* One step(closure) on params [n]. *loss: the loss where the step ended; *evals: the
 * evaluations it made. Returns 0, or eval's non-zero status. */
int lbfgs_step(struct lbfgs *o, float *params, lbfgs_eval_fn *eval, void *ctx, double *loss,
               int *evals);

/* The i-th oldest (s, y) pair held (i < count): views into the ring. */
float *lbfgs_pair_s(const struct lbfgs *o, uint32_t i);
float *lbfgs_pair_y(const struct lbfgs *o, uint32_t i);

#endif
