/* vec: the elementwise and streaming loops outside the GEMM (activations and their
 * derivatives, softmax/loss, the bias gradient, the optimizer updates, the reproducible
 * mode's fixed-point conversions, the shared-memory gradient sum, standardisation and its
 * inverse),
 * written once (vec_impl.h) and compiled once per instruction set: vec_avx512.c,
 * vec_avx2.c, vec_generic.c. The library itself is built for baseline x86-64, so one
 * binary runs on every node of a cluster; kernels.c picks the build that goes with the
 * GEMM backend in use (kernel_vec), so DMLP_KERNEL=generic runs the portable loops too.
 *
 * The builds give bit-identical results: the loops are compiled with -ffp-contract=off
 * (no multiply-add is fused unless written as fmaf, which rounds once on every CPU), every
 * element is computed by the same IEEE operations whatever the vector width, and every sum
 * over elements runs in one fixed order. Internal to the library; no MPI, no allocation. */
#ifndef DMLP_VEC_H
#define DMLP_VEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"
#include "nn/gemm.h"

/* The scalars of one SGD update (optim.h gives the formulas). */
struct vec_sgd {
    float scale, eta, mu, wd;
    int nesterov;
};

/* The scalars of one Adam/AdamW update, prepared by optim.c in PyTorch's roundings. */
struct vec_adam {
    float scale, neg_step, bc2_sqrt, eps, beta2, w2, lerp_coef, wd, shrink;
    int small, do_shrink;
};

/* Flags returned by fx_add. */
enum { VEC_FX_OVERFLOW = 1, VEC_FX_NONFINITE = 2 };

struct vec_ops {
    const char *isa;

    /* kernels.h: kernel_activation_forward, _backward, _softmax_xent, _mse,
     * _count_correct, _bias_grad, with the same contracts. */
    void (*act_forward)(float *A, const float *Z, enum dmlp_activation act, size_t batch,
                        size_t n);
    void (*act_backward)(float *restrict G, const float *restrict A, enum dmlp_activation act,
                         size_t batch, size_t n);
    double (*softmax_xent)(float *restrict G, const float *restrict P,
                           const int32_t *restrict labels, size_t batch, size_t k);
    double (*mse)(float *restrict G, const float *restrict Y, const float *restrict T,
                  size_t batch, size_t k);
    size_t (*count_correct)(const float *restrict Y, const int32_t *restrict labels,
                            size_t batch, size_t k);
    void (*bias_grad)(float *restrict db, const float *restrict G, size_t batch, size_t out);
    /* gemm.h: gemm_epilogue_apply. */
    void (*epilogue)(float *C, size_t ldc, size_t m, size_t j0, size_t j1,
                     const struct gemm_epilogue *e);

    /* optim.h's updates of params [n] from grads [n]; v (sgd momentum, NULL: none) and
     * m, v (Adam moments) are the state buffers. Return 1 when some updated parameter is
     * NaN or infinite (which every non-finite gradient causes), else 0. */
    int (*sgd)(float *restrict params, float *restrict v, const float *restrict grads,
               size_t n, const struct vec_sgd *c);
    int (*adam)(float *restrict params, float *restrict m, float *restrict v,
                const float *restrict grads, size_t n, const struct vec_adam *c);
    /* x[i] *= c. */
    void (*scale)(float *x, size_t n, float c);

    /* Reproducible mode: acc[i] += (int64) trunc(g[i]·scale) where |g[i]·scale| < limit,
     * computed in double; returns VEC_FX_OVERFLOW if some finite value was not below the
     * limit, VEC_FX_NONFINITE if some was NaN or infinite. */
    unsigned (*fx_add)(uint64_t *restrict acc, const float *restrict g, size_t n,
                       double scale, double limit);
    /* g[i] = (float)((int64) acc[i] · inv); returns max |g[i]|. */
    float (*fx_load)(float *restrict g, const uint64_t *restrict acc, size_t n, double inv);

    /* 1 when some x[i] is NaN or infinite (lbfgs's divergence guard; a step's is the
     * update's own). */
    int (*nonfinite)(const float *x, size_t n);

    /* acc[i] += in[i] (one thread: the gradient sum's slice, in L1-sized blocks). */
    void (*add)(float *restrict acc, const float *restrict in, size_t n);

    /* Over rows of d features: sum[j] += x[i][j], sumsq[j] += x[i][j]² in double, rows in
     * order (the caller zeroes sum and sumsq); and x[i][j] = (x[i][j] − mean[j]) / std[j]. */
    void (*feature_sums)(double *restrict sum, double *restrict sumsq, const float *restrict x,
                         size_t rows, size_t d);
    void (*standardize)(float *restrict x, size_t rows, size_t d, const float *restrict mean,
                        const float *restrict std);
    /* The inverse, back to original units: y[i][j] = y[i][j] · std[j] + mean[j], a multiply
     * then an add (never fused), so every build gives the same bits. */
    void (*unstandardize)(float *restrict y, size_t rows, size_t d, const float *restrict mean,
                          const float *restrict std);
};

/* The build that goes with the GEMM backend in use (kernels.c; the openblas backend takes
 * the fastest this CPU runs). */
const struct vec_ops *kernel_vec(void);

extern const struct vec_ops vec_generic;
#if defined(__x86_64__)
extern const struct vec_ops vec_avx2, vec_avx512;
#endif

#endif
