#include "nn/optim.h"

#include <math.h>
#include <stdlib.h>

#include "nn/lbfgs.h"
#include "nn/vec.h"

/* Chunking of the gradient-norm sum: each chunk of CLIP_CHUNK elements is summed in order
 * by one thread, and the chunk sums are added in order, CLIP_BATCH chunks at a time from a
 * stack array (no allocation), so the total has one fixed summation order. */
enum { CLIP_CHUNK = 4096, CLIP_BATCH = 256 };

static int sgd_step(struct optim *o, float *restrict params, const float *restrict grads,
                    float scale, double lr);
static int adam_step(struct optim *o, float *restrict params, const float *restrict grads,
                     float scale, double lr);
static float *alloc_state(size_t n);
static int check_config(const struct config_optimizer *cfg, struct dmlp_error *err);
static int alloc_states(struct optim *o);

int optim_create(struct optim **out, const struct config_optimizer *cfg, size_t n,
                 struct dmlp_error *err)
{
    *out = NULL;
    if (n == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer: the model has no parameters");
    size_t bytes;
    if (dmlp_mul_size(&bytes, n, sizeof(float)))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "optimizer: %zu parameters overflow size_t", n);
    const int rc = check_config(cfg, err);
    if (rc)
        return rc;

    struct optim *o = calloc(1, sizeof *o);
    if (!o)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "optimizer: out of memory");
    o->cfg = *cfg;
    o->n = n;
    if (cfg->name == DMLP_OPT_LBFGS) {
        const int lrc = lbfgs_create(&o->lbfgs, n, cfg, err);
        if (lrc)
            optim_free(&o);
        *out = o;
        return lrc;
    }
    if (!alloc_states(o)) {
        optim_free(&o);
        return dmlp_fail(err, DMLP_ERR_RUNTIME,
                         "optimizer: cannot allocate the state for %zu parameters", n);
    }
    *out = o;
    return DMLP_OK;
}

void optim_free(struct optim **op)
{
    if (!*op)
        return;
    dmlp_free_aligned((*op)->momentum);
    dmlp_free_aligned((*op)->exp_avg);
    dmlp_free_aligned((*op)->exp_avg_sq);
    lbfgs_free(&(*op)->lbfgs);
    free(*op);
    *op = NULL;
}

int optim_step(struct optim *o, float *params, const float *grads, float scale, double lr)
{
    o->steps++;
    if (o->cfg.name == DMLP_OPT_SGD)
        return sgd_step(o, params, grads, scale, lr);
    return adam_step(o, params, grads, scale, lr);
}

double optim_clip_grad_norm(float *grads, size_t n, float scale, double max_norm)
{
    const double s = scale;
    const size_t n_chunks = (n + CLIP_CHUNK - 1) / CLIP_CHUNK;
    double total_sq = 0.0;
    for (size_t c0 = 0; c0 < n_chunks; c0 += CLIP_BATCH) {
        const size_t nb = n_chunks - c0 < CLIP_BATCH ? n_chunks - c0 : CLIP_BATCH;
        double partial[CLIP_BATCH];
        PARALLEL_FOR_IF(gemm_may_fork(), ,
            for (size_t b = 0; b < nb; b++) {
                const size_t lo = (c0 + b) * CLIP_CHUNK;
                const size_t hi = n - lo < CLIP_CHUNK ? n : lo + CLIP_CHUNK;
                double sum = 0.0;
                for (size_t i = lo; i < hi; i++) {
                    const double x = (double)grads[i] * s;
                    sum += x * x;
                }
                partial[b] = sum;
            });
        for (size_t b = 0; b < nb; b++)
            total_sq += partial[b];
    }
    const double total = sqrt(total_sq);
    if (max_norm > 0.0) {
        const double coef = max_norm / (total + 1e-6);
        if (coef < 1.0)
            kernel_vec()->scale(grads, n, (float)coef);
    }
    return total;
}

size_t optim_state_buffers(const struct optim *o, const char **names, float **bufs)
{
    size_t k = 0;
#define OPTIM_STATE(field)                                                                  \
    do {                                                                                    \
        if (o->field) {                                                                     \
            if (names)                                                                      \
                names[k] = #field;                                                          \
            if (bufs)                                                                       \
                bufs[k] = o->field;                                                         \
            k++;                                                                            \
        }                                                                                   \
    } while (0)
    OPTIM_STATE(momentum);
    OPTIM_STATE(exp_avg);
    OPTIM_STATE(exp_avg_sq);
#undef OPTIM_STATE
    return k;
}

/* ---- helpers ------------------------------------------------------------------------ */

static float *alloc_state(size_t n) { return dmlp_alloc_aligned(n * sizeof(float)); }

/* The settings the chosen optimizer reads: a known name, weight_decay >= 0, and Adam's
 * betas in [0, 1) and eps > 0, or SGD's momentum in [0, 1) (> 0 for Nesterov). */
static int check_config(const struct config_optimizer *cfg, struct dmlp_error *err)
{
    const int adam = cfg->name == DMLP_OPT_ADAM || cfg->name == DMLP_OPT_ADAMW;
    if (cfg->name == DMLP_OPT_LBFGS)
        return cfg->history >= 1 && cfg->max_iter >= 1 && cfg->lr > 0
                   ? DMLP_OK
                   : dmlp_fail(err, DMLP_ERR_INPUT, "optimizer: lbfgs needs lr > 0, "
                               "history >= 1 and max_iter >= 1");
    if (cfg->name != DMLP_OPT_SGD && !adam)
        return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.name: unknown optimizer %d",
                         (int)cfg->name);
    if (!(cfg->weight_decay >= 0.0))
        return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.weight_decay: %g is not >= 0",
                         cfg->weight_decay);
    if (adam) {
        if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0))
            return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.beta1: %g is not in [0, 1)",
                             cfg->beta1);
        if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
            return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.beta2: %g is not in [0, 1)",
                             cfg->beta2);
        if (!(cfg->eps > 0.0))
            return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.eps: %g is not > 0", cfg->eps);
    } else {
        if (!(cfg->momentum >= 0.0 && cfg->momentum < 1.0))
            return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.momentum: %g is not in [0, 1)",
                             cfg->momentum);
        if (cfg->nesterov && cfg->momentum == 0.0)
            return dmlp_fail(err, DMLP_ERR_INPUT,
                             "optimizer.nesterov: true requires optimizer.momentum > 0");
    }
    return DMLP_OK;
}

/* The state o's optimizer keeps, o->n floats each: Adam's two moments, or SGD's momentum
 * buffer when momentum is on (else none). 0 when an allocation failed. */
static int alloc_states(struct optim *o)
{
    if (o->cfg.name == DMLP_OPT_ADAM || o->cfg.name == DMLP_OPT_ADAMW) {
        o->exp_avg = alloc_state(o->n);
        o->exp_avg_sq = alloc_state(o->n);
        return o->exp_avg && o->exp_avg_sq;
    }
    if (o->cfg.momentum != 0.0) {
        o->momentum = alloc_state(o->n);
        return o->momentum != NULL;
    }
    return 1;
}

/* torch.optim.SGD: d_p = grad + λθ; buf = μ·buf + d_p; d_p = d_p + μ·buf (Nesterov) or buf;
 * θ = θ + (−η)·d_p. The scalars are rounded to float as PyTorch does for a float tensor. */
static int sgd_step(struct optim *o, float *restrict params, const float *restrict grads,
                    float scale, double lr)
{
    const struct vec_sgd c = {.scale = scale,
                              .eta = (float)lr,
                              .mu = (float)o->cfg.momentum,
                              .wd = (float)o->cfg.weight_decay,
                              .nesterov = o->cfg.nesterov};
    return kernel_vec()->sgd(params, o->momentum, grads, o->n, &c);
}

/* torch.optim.Adam / AdamW, _single_tensor_adam(w) in PyTorch 2.x, step by step:
 *   adamw:  param.mul_(1 − lr·wd)                          (1 − lr·wd in double → float)
 *   adam:   grad = grad.add(param, alpha=wd)
 *           exp_avg.lerp_(grad, 1 − β1)
 *           exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1 − β2)
 *           bc1 = 1 − β1^t; bc2 = 1 − β2^t; step_size = lr / bc1   (python floats: double)
 *           denom = exp_avg_sq.sqrt() / sqrt(bc2) + eps
 *           param.addcdiv_(exp_avg, denom, value=−step_size)
 * Tensor ops on float tensors round their scalar arguments to float. lerp(a, b, w) is
 * PyTorch's a + w·(b − a) for |w| < 0.5, else b − (b − a)·(1 − w); its vectorised CPU
 * kernel (which handles all but the tail of each tensor) computes both as one fused
 * multiply-add, fma(w or w − 1, b − a, a or b), so the loop (vec_impl.h) uses fmaf. */
static int adam_step(struct optim *o, float *restrict params, const float *restrict grads,
                     float scale, double lr)
{
    const struct config_optimizer *c = &o->cfg;
    const double t = (double)o->steps;
    const double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    const float w1 = (float)(1.0 - c->beta1);
    const int small = fabsf(w1) < 0.5f;
    const int decoupled = c->name == DMLP_OPT_ADAMW;
    const struct vec_adam a = {.scale = scale,
                               .neg_step = (float)(-(lr / bc1)),
                               .bc2_sqrt = (float)sqrt(bc2),
                               .eps = (float)c->eps,
                               .beta2 = (float)c->beta2,
                               .w2 = (float)(1.0 - c->beta2),
                               .lerp_coef = small ? w1 : w1 - 1.0f,
                               .wd = decoupled ? 0.0f : (float)c->weight_decay,
                               .shrink = (float)(1.0 - lr * c->weight_decay),
                               .small = small,
                               .do_shrink = decoupled && c->weight_decay != 0.0};
    return kernel_vec()->adam(params, o->exp_avg, o->exp_avg_sq, grads, o->n, &a);
}
