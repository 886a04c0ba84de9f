/* vec_impl.h: the loops of vec.h, written once and compiled once per instruction set
 * (vec_avx512.c, vec_avx2.c, vec_generic.c each define VEC_NAME and include this file).
 * Plain C loops the compiler vectorises for the build's vector width; see vec.h for why the
 * builds agree bit for bit. OpenMP splits the elementwise loops over elements (static
 * schedule); sums over elements stay in one thread, in order. Inside a caller's active
 * parallel region, on a thread running alone, with one thread, or below the work that
 * repays a team, a loop runs on the calling thread outside any parallel region: never a
 * nested team, and no serialised one (gemm_may_fork and PARALLEL_FOR_IF, gemm.h). */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "nn/activation.h"
#include "nn/vec.h"

/* A = softmax(Z) over B rows of n, per row, max-subtracted. A may equal Z.
 * softmax(z)_j = e^{z_j − max z} / Σ e^{z_i − max z}, one row per iteration. */
static void softmax_forward(float *A, const float *Z, size_t batch, size_t n)
{
    PARALLEL_FOR_IF(gemm_may_fork_for(batch * n, VEC_FORK_ELEMS), ,
        for (size_t i = 0; i < batch; i++) {
            const float *z = Z + i * n;
            float *a = A + i * n;
            float mx = z[0];
            for (size_t j = 1; j < n; j++)
                mx = z[j] > mx ? z[j] : mx;
            float s = 0.0f;
            for (size_t j = 0; j < n; j++) {
                a[j] = expf(z[j] - mx);
                s += a[j];
            }
            const float inv = 1.0f / s;
            for (size_t j = 0; j < n; j++)
                a[j] *= inv;
        });
}

/* A = f(Z) over B rows of n (softmax: per row, max-subtracted). A may equal Z. */
static void act_forward(float *A, const float *Z, enum dmlp_activation act, size_t batch,
                        size_t n)
{
    if (act == DMLP_ACT_SOFTMAX) {
        softmax_forward(A, Z, batch, n);
        return;
    }
    const size_t total = batch * n;
    switch (act) {
    case DMLP_ACT_SIGMOID:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                A[i] = dmlp_sigmoid(Z[i]););
        break;
    case DMLP_ACT_TANH:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                A[i] = tanhf(Z[i]););
        break;
    case DMLP_ACT_RELU:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                A[i] = dmlp_relu(Z[i]););
        break;
    case DMLP_ACT_LEAKY_RELU:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                A[i] = dmlp_leaky_relu(Z[i]););
        break;
    case DMLP_ACT_LINEAR:
        if (A != Z)
            memcpy(A, Z, total * sizeof(float));
        break;
    case DMLP_ACT_SOFTMAX:
        break;
    }
}

/* G *= f'(Z), with f' written through A = f(Z) (activation.h). */
static void act_backward(float *restrict G, const float *restrict A, enum dmlp_activation act,
                         size_t batch, size_t n)
{
    const size_t total = batch * n;
    switch (act) {
    case DMLP_ACT_SIGMOID:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                G[i] = dmlp_sigmoid_grad(G[i], A[i]););
        break;
    case DMLP_ACT_TANH:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                G[i] = dmlp_tanh_grad(G[i], A[i]););
        break;
    case DMLP_ACT_RELU:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                G[i] = dmlp_relu_grad(G[i], A[i]););
        break;
    case DMLP_ACT_LEAKY_RELU:
        PARALLEL_FOR_IF(gemm_may_fork_for(total, VEC_FORK_ELEMS), ,
            for (size_t i = 0; i < total; i++)
                G[i] = dmlp_leaky_relu_grad(G[i], A[i]););
        break;
    case DMLP_ACT_LINEAR:
    case DMLP_ACT_SOFTMAX:
        break;
    }
}

static double softmax_xent(float *restrict G, const float *restrict P,
                           const int32_t *restrict labels, size_t batch, size_t k)
{
    double loss = 0.0;
    /* The loss is a sum over samples: summed by one thread in sample order so it is the
     * same for any thread count. The gradient rows are independent. */
    for (size_t i = 0; i < batch; i++) {
        const float *p = P + i * k;
        float *g = G + i * k;
        const size_t y = (size_t)labels[i];
        for (size_t j = 0; j < k; j++)
            g[j] = p[j];
        g[y] -= 1.0f;
        loss -= log(p[y] > FLT_MIN ? (double)p[y] : (double)FLT_MIN);
    }
    return loss;
}

static double mse(float *restrict G, const float *restrict Y, const float *restrict T,
                  size_t batch, size_t k)
{
    const size_t total = batch * k;
    for (size_t i = 0; i < total; i++)
        G[i] = 2.0f * (Y[i] - T[i]);
    double loss = 0.0; /* in element order */
    for (size_t i = 0; i < total; i++) {
        const double d = (double)(Y[i] - T[i]);
        loss += d * d;
    }
    return loss;
}

static size_t count_correct(const float *restrict Y, const int32_t *restrict labels,
                            size_t batch, size_t k)
{
    size_t correct = 0;
    for (size_t i = 0; i < batch; i++)
        correct += dmlp_argmax(Y + i * k, k) == (size_t)labels[i];
    return correct;
}

static void bias_grad(float *restrict db, const float *restrict G, size_t batch, size_t out)
{
    /* Column sums of G, each in sample order; threads take fixed blocks of columns and
     * sweep the rows, so the loads stay contiguous. */
    enum { JB = 64 };
    PARALLEL_FOR_IF(gemm_may_fork_for(batch * out, VEC_FORK_ELEMS), ,
        for (size_t j0 = 0; j0 < out; j0 += JB) {
            const size_t j1 = j0 + JB < out ? j0 + JB : out;
            float s[JB] = {0};
            for (size_t i = 0; i < batch; i++)
                for (size_t j = j0; j < j1; j++)
                    s[j - j0] += G[i * out + j];
            memcpy(db + j0, s, (j1 - j0) * sizeof(float));
        });
}

static void epilogue(float *C, size_t ldc, size_t m, size_t j0, size_t j1,
                     const struct gemm_epilogue *e)
{
    if (e->mode == GEMM_EPI_NONE)
        return;
    for (size_t i = 0; i < m; i++) {
        float *restrict c = C + i * ldc;
        if (e->mode == GEMM_EPI_ACT) {
            if (e->act == DMLP_ACT_RELU)
                for (size_t j = j0; j < j1; j++)
                    c[j] = dmlp_relu(c[j]);
            else if (e->act == DMLP_ACT_LEAKY_RELU)
                for (size_t j = j0; j < j1; j++)
                    c[j] = dmlp_leaky_relu(c[j]);
            continue;
        }
        const float *restrict d = e->D + i * e->ldd;
        switch (e->act) {
        case DMLP_ACT_SIGMOID:
            for (size_t j = j0; j < j1; j++)
                c[j] = dmlp_sigmoid_grad(c[j], d[j]);
            break;
        case DMLP_ACT_TANH:
            for (size_t j = j0; j < j1; j++)
                c[j] = dmlp_tanh_grad(c[j], d[j]);
            break;
        case DMLP_ACT_RELU:
            for (size_t j = j0; j < j1; j++)
                c[j] = dmlp_relu_grad(c[j], d[j]);
            break;
        case DMLP_ACT_LEAKY_RELU:
            for (size_t j = j0; j < j1; j++)
                c[j] = dmlp_leaky_relu_grad(c[j], d[j]);
            break;
        case DMLP_ACT_LINEAR:
        case DMLP_ACT_SOFTMAX:
            break;
        }
    }
}

/* The updates return 1 when some updated parameter is NaN or infinite: a non-finite
 * gradient always makes one (η·NaN and 0·∞ are NaN), so this one test in the update's own
 * pass is the step's divergence guard. */
static inline int not_finite(float x) { return !(fabsf(x) <= FLT_MAX); }

static int sgd(float *restrict params, float *restrict v, const float *restrict grads,
               size_t n, const struct vec_sgd *c)
{
    const float scale = c->scale, eta = c->eta, mu = c->mu, wd = c->wd;
    int bad = 0;
    if (!v) {
        PARALLEL_FOR_IF(gemm_may_fork(), reduction(| : bad),
            for (size_t i = 0; i < n; i++) {
                const float g = grads[i] * scale + wd * params[i];
                params[i] -= eta * g;
                bad |= not_finite(params[i]);
            });
    } else if (c->nesterov) {
        PARALLEL_FOR_IF(gemm_may_fork(), reduction(| : bad),
            for (size_t i = 0; i < n; i++) {
                const float g = grads[i] * scale + wd * params[i];
                v[i] = mu * v[i] + g;
                params[i] -= eta * (g + mu * v[i]);
                bad |= not_finite(params[i]);
            });
    } else {
        PARALLEL_FOR_IF(gemm_may_fork(), reduction(| : bad),
            for (size_t i = 0; i < n; i++) {
                const float g = grads[i] * scale + wd * params[i];
                v[i] = mu * v[i] + g;
                params[i] -= eta * v[i];
                bad |= not_finite(params[i]);
            });
    }
    return bad;
}

static int adam(float *restrict params, float *restrict m, float *restrict v,
                const float *restrict grads, size_t n, const struct vec_adam *c)
{
    const float scale = c->scale, neg_step = c->neg_step, bc2_sqrt = c->bc2_sqrt;
    const float eps = c->eps, beta2 = c->beta2, w2 = c->w2, lerp_coef = c->lerp_coef;
    const float wd = c->wd, shrink = c->shrink;
    const int small = c->small, do_shrink = c->do_shrink;
    int bad = 0;
    PARALLEL_FOR_IF(gemm_may_fork(), reduction(| : bad),
        for (size_t i = 0; i < n; i++) {
            float p = params[i];
            if (do_shrink)
                p *= shrink;
            float g = grads[i] * scale;
            if (wd != 0.0f)
                g = g + wd * p;
            const float mi = m[i];
            const float mn = fmaf(lerp_coef, g - mi, small ? mi : g);
            const float vn = v[i] * beta2 + w2 * g * g;
            const float denom = sqrtf(vn) / bc2_sqrt + eps;
            m[i] = mn;
            v[i] = vn;
            params[i] = p + neg_step * mn / denom;
            bad |= not_finite(params[i]);
        });
    return bad;
}

static void scale(float *x, size_t n, float c)
{
    PARALLEL_FOR_IF(gemm_may_fork(), ,
        for (size_t i = 0; i < n; i++)
            x[i] *= c;);
}

static unsigned fx_add(uint64_t *restrict acc, const float *restrict g, size_t n, double scale,
                       double limit)
{
    /* Truncation toward zero is as deterministic as rounding and much cheaper. One pass:
     * "not below the limit" also catches NaN and infinity. */
    unsigned overflow = 0, nonfinite = 0;
    PARALLEL_FOR_IF(gemm_may_fork(), reduction(| : overflow, nonfinite),
        for (size_t i = 0; i < n; i++) {
            const double q = (double)g[i] * scale;
            if (fabs(q) < limit)
                acc[i] += (uint64_t)(int64_t)q;
            else if (isfinite(q))
                overflow = 1;
            else
                nonfinite = 1;
        });
    return (overflow ? VEC_FX_OVERFLOW : 0u) | (nonfinite ? VEC_FX_NONFINITE : 0u);
}

static float fx_load(float *restrict g, const uint64_t *restrict acc, size_t n, double inv)
{
    float maxg = 0.0f;
    PARALLEL_FOR_IF(gemm_may_fork(), reduction(max : maxg),
        for (size_t i = 0; i < n; i++) {
            const float x = (float)((double)(int64_t)acc[i] * inv);
            g[i] = x;
            const float a = x < 0 ? -x : x;
            maxg = a > maxg ? a : maxg;
        });
    return maxg;
}

static int nonfinite(const float *x, size_t n)
{
    int bad = 0;
    PARALLEL_FOR_IF(gemm_may_fork(), reduction(| : bad),
        for (size_t i = 0; i < n; i++)
            bad |= !isfinite(x[i]););
    return bad;
}

static void add(float *restrict acc, const float *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += in[i];
}

static void feature_sums(double *restrict sum, double *restrict sumsq, const float *restrict x,
                         size_t rows, size_t d)
{
    for (size_t i = 0; i < rows; i++) {
        const float *restrict r = x + i * d;
        for (size_t j = 0; j < d; j++) {
            const double v = r[j];
            sum[j] += v;
            sumsq[j] += v * v;
        }
    }
}

static void standardize(float *restrict x, size_t rows, size_t d, const float *restrict mean,
                        const float *restrict std)
{
    PARALLEL_FOR_IF(gemm_may_fork(), ,
        for (size_t i = 0; i < rows; i++) {
            float *restrict r = x + i * d;
            for (size_t j = 0; j < d; j++)
                r[j] = (r[j] - mean[j]) / std[j];
        });
}

static void unstandardize(float *restrict y, size_t rows, size_t d,
                          const float *restrict mean, const float *restrict std)
{
    PARALLEL_FOR_IF(gemm_may_fork(), ,
        for (size_t i = 0; i < rows; i++) {
            float *restrict r = y + i * d;
            for (size_t j = 0; j < d; j++)
                r[j] = r[j] * std[j] + mean[j];
        });
}

const struct vec_ops VEC_NAME = {
    .isa = VEC_ISA,
    .act_forward = act_forward,
    .act_backward = act_backward,
    .softmax_xent = softmax_xent,
    .mse = mse,
    .count_correct = count_correct,
    .bias_grad = bias_grad,
    .epilogue = epilogue,
    .sgd = sgd,
    .adam = adam,
    .scale = scale,
    .fx_add = fx_add,
    .fx_load = fx_load,
    .nonfinite = nonfinite,
    .add = add,
    .feature_sums = feature_sums,
    .standardize = standardize,
    .unstandardize = unstandardize,
};
