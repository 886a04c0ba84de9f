/* activation: every activation's f and its derivative, written once (docs/architecture.md,
 * "The math"). The derivative is always taken through the output, f' as a function of
 * f = f(z): the forward pass stores f(Z) and never Z. Each formula is a macro over its
 * operands' type, so the same text serves scalars (the vec loops, with DMLP_SEL_SCALAR)
 * and GCC vectors (the GEMM tiles, with their lane select); the _grad forms return
 * g·f'(z). Softmax lives with its loss (vec_impl.h: softmax and cross-entropy fuse to
 * P − T). Pure: no state, no includes beyond the enum. */
#ifndef DMLP_ACTIVATION_H
#define DMLP_ACTIVATION_H

#include <math.h>
#include <stddef.h>

#include "core/settings.h"

/* leaky_relu: f(z) = z for z > 0, DMLP_LEAKY_SLOPE·z otherwise (PyTorch's default). */
#define DMLP_LEAKY_SLOPE 0.01f

/* The predicted class of a row of k scores: the first index of its maximum. Every count of
 * correct predictions, confusion matrix and /labels of predictions uses this rule. */
static inline size_t dmlp_argmax(const float *y, size_t k)
{
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (y[j] > y[best])
            best = j;
    return best;
}

/* SEL(mask, a, b): a where mask holds, else b. */
#define DMLP_SEL_SCALAR(mask, a, b) ((mask) ? (a) : (b))

/* relu: f = max(0, z); f > 0 exactly when z > 0, so f' = [f > 0]. */
#define DMLP_RELU(z, zero, SEL) SEL((z) > (zero), (z), (zero))
#define DMLP_RELU_GRAD(g, f, zero, SEL) SEL((f) > (zero), (g), (zero))

/* leaky_relu: f = z for z > 0, else DMLP_LEAKY_SLOPE·z; its sign is z's. */
#define DMLP_LEAKY_RELU(z, zero, slope, SEL) SEL((z) > (zero), (z), (slope) * (z))
#define DMLP_LEAKY_RELU_GRAD(g, f, zero, slope, SEL) SEL((f) > (zero), (g), (slope) * (g))

/* sigmoid: f' = f (1 − f). */
#define DMLP_SIGMOID_GRAD(g, f, one) ((g) * ((f) * ((one) - (f))))

/* tanh: f' = 1 − f², taken as (1 − f)(1 + f): near |f| = 1, 1 − fl(f²) would lose most of
 * its bits to cancellation unless the CPU fuses the multiply-add, and every build must
 * give the same bits. */
#define DMLP_TANH_GRAD(g, f, one) ((g) * (((one) - (f)) * ((one) + (f))))

/* sigmoid f(z) = 1 / (1 + e^{-z}), written so that exp never overflows. */
static inline float dmlp_sigmoid(float z)
{
    if (z >= 0.0f)
        return 1.0f / (1.0f + expf(-z));
    const float e = expf(z);
    return e / (1.0f + e);
}

static inline float dmlp_relu(float z) { return DMLP_RELU(z, 0.0f, DMLP_SEL_SCALAR); }
static inline float dmlp_relu_grad(float g, float f)
{
    return DMLP_RELU_GRAD(g, f, 0.0f, DMLP_SEL_SCALAR);
}
static inline float dmlp_leaky_relu(float z)
{
    return DMLP_LEAKY_RELU(z, 0.0f, DMLP_LEAKY_SLOPE, DMLP_SEL_SCALAR);
}
static inline float dmlp_leaky_relu_grad(float g, float f)
{
    return DMLP_LEAKY_RELU_GRAD(g, f, 0.0f, DMLP_LEAKY_SLOPE, DMLP_SEL_SCALAR);
}
static inline float dmlp_sigmoid_grad(float g, float f) { return DMLP_SIGMOID_GRAD(g, f, 1.0f); }
static inline float dmlp_tanh_grad(float g, float f) { return DMLP_TANH_GRAD(g, f, 1.0f); }

#endif
