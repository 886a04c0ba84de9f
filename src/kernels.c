/* Dense-layer kernels. See kernels.h for the contract.
 *
 * The three products of a layer go through one GEMM (gemm.h) with packed operands, so
 * nothing is transposed in memory: forward X·Wᵀ (+ bias, activation fused into the store),
 * weight gradient Gᵀ·X, input gradient G·W (times the previous layer's activation
 * derivative, fused into the store). The GEMM comes in several builds; the fastest one this
 * CPU runs is chosen on first use, or the one named by DMLP_KERNEL. Every build keeps each
 * output element's arithmetic independent of the thread count (see gemm_impl.h). */
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

/* What a build needs of the CPU. */
enum isa { ISA_ANY, ISA_AVX2_FMA, ISA_AVX512F };

struct backend {
    const char *name, *what;
    gemm_fn *gemm;
    gemm_ws_fn *ws;
    int automatic; /* a candidate for the default (dmlp's own kernels) */
    enum isa needs;
};

/* Fastest first: the default is the first of dmlp's own builds this CPU runs (wide16 only
 * checks the avx512 build's code). With -DDMLP_BLAS=openblas the OpenBLAS backend is
 * offered but not the default (bench_gemm shows why; README). */
static const struct backend backends[] = {
#if defined(__x86_64__)
    {"avx512", "6x32 tiles of 16-wide vectors (AVX-512)", gemm_avx512, gemm_avx512_ws, 1,
     ISA_AVX512F},
    {"avx2", "6x16 tiles of 8-wide vectors (AVX2 + FMA)", gemm_avx2, gemm_avx2_ws, 1,
     ISA_AVX2_FMA},
#endif
    {"generic", "6x8 tiles of 4-wide vectors (portable)", gemm_generic, gemm_generic_ws, 1,
     ISA_ANY},
#if defined(__x86_64__)
    /* The avx512 build's code in AVX2 instructions: for testing it without AVX-512. */
    {"wide16", "the avx512 build's 6x32 tiles, compiled for AVX2 + FMA (for testing)",
     gemm_wide16, gemm_wide16_ws, 0, ISA_AVX2_FMA},
#endif
#if defined(DMLP_HAVE_OPENBLAS)
    {"openblas", "OpenBLAS sgemm on fixed column blocks, one thread per block", gemm_openblas,
     gemm_openblas_ws, 0, ISA_ANY},
#endif
};
enum { N_BACKENDS = sizeof backends / sizeof backends[0] };

static const struct backend *active;

static int runs_here(const struct backend *b)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    switch (b->needs) {
    case ISA_AVX512F:
        return __builtin_cpu_supports("avx512f");
    case ISA_AVX2_FMA:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case ISA_ANY:
        break;
    }
#endif
    (void)b;
    return 1;
}

static const struct backend *find(const char *name)
{
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (!strcmp(backends[i].name, name))
            return &backends[i];
    return NULL;
}

int kernel_backend_available(const char *name)
{
    const struct backend *b = find(name);
    return b && runs_here(b);
}

int kernel_set_backend(const char *name)
{
    const struct backend *b = find(name);
    if (!b || !runs_here(b))
        return -1;
    active = b;
    return 0;
}

const char *kernel_backend_list(void)
{
    static char list[96];
    if (!list[0])
        for (size_t i = 0; i < N_BACKENDS; i++)
            if (runs_here(&backends[i]))
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         list[0] ? " | " : "", backends[i].name);
    return list;
}

int kernel_init(const char **bad)
{
    const char *want = getenv("DMLP_KERNEL");
    const int named = want && *want && strcmp(want, "auto");
    *bad = NULL;
    if (named && !kernel_set_backend(want))
        return 0;
    active = NULL; /* the default: the first of dmlp's own kernels this CPU runs */
    for (size_t i = 0; i < N_BACKENDS && !active; i++)
        if (backends[i].automatic && runs_here(&backends[i]))
            active = &backends[i];
    if (named) {
        *bad = want;
        return -1;
    }
    return 0;
}

static const struct backend *backend(void)
{
    const char *bad;
    if (!active && kernel_init(&bad)) /* dmlp itself refuses this at start-up */
        fprintf(stderr, "dmlp: DMLP_KERNEL=%s is not a kernel this CPU runs (%s); using %s\n",
                bad, kernel_backend_list(), active->name);
    return active;
}

const char *kernel_backend(void) { return backend()->name; }
const char *kernel_backend_description(void) { return backend()->what; }

size_t kernel_workspace_floats(size_t batch, size_t in, size_t out)
{
    size_t most = 1;
    for (size_t i = 0; i < N_BACKENDS; i++) {
        const size_t w[3] = {backends[i].ws(batch, in), backends[i].ws(out, batch),
                             backends[i].ws(batch, out)};
        for (int j = 0; j < 3; j++)
            most = w[j] > most ? w[j] : most;
    }
    return most;
}

void gemm_epilogue_apply(float *C, size_t ldc, size_t m, size_t j0, size_t j1,
                         const struct gemm_epilogue *e)
{
    if (e->mode == GEMM_EPI_NONE)
        return;
    for (size_t i = 0; i < m; i++) {
        float *c = C + i * ldc;
        const float *d = e->mode == GEMM_EPI_DACT ? e->D + i * e->ldd : NULL;
        for (size_t j = j0; j < j1; j++) {
            if (e->mode == GEMM_EPI_ACT) {
                if (e->act == DMLP_ACT_RELU)
                    c[j] = c[j] > 0.0f ? c[j] : 0.0f;
                else if (e->act == DMLP_ACT_LEAKY_RELU)
                    c[j] = c[j] > 0.0f ? c[j] : 0.01f * c[j];
                continue;
            }
            switch (e->act) {
            case DMLP_ACT_SIGMOID: c[j] *= d[j] * (1.0f - d[j]); break;
            case DMLP_ACT_TANH: c[j] *= 1.0f - d[j] * d[j]; break;
            case DMLP_ACT_RELU: c[j] = d[j] > 0.0f ? c[j] : 0.0f; break;
            case DMLP_ACT_LEAKY_RELU: c[j] = d[j] > 0.0f ? c[j] : 0.01f * c[j]; break;
            case DMLP_ACT_LINEAR:
            case DMLP_ACT_SOFTMAX: break;
            }
        }
    }
}

/* C = op(A)·op(B) with the epilogue; k = 0 (an empty sum) is handled here. */
static void gemm(float *C, size_t ldc, const struct gemm_operand *A,
                 const struct gemm_operand *B, size_t m, size_t n, size_t k,
                 const struct gemm_epilogue *e, float *ws)
{
    if (m == 0 || n == 0)
        return;
    if (k > 0) {
        backend()->gemm(C, ldc, A, B, m, n, k, e, ws);
        return;
    }
    for (size_t i = 0; i < m && !e->accumulate; i++)
        for (size_t j = 0; j < n; j++)
            C[i * ldc + j] = e->bias ? e->bias[j] : 0.0f;
    gemm_epilogue_apply(C, ldc, m, 0, n, e);
}

void kernel_gemm(float *restrict C, const float *restrict A, const float *restrict B,
                 size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc,
                 int accumulate, float *restrict ws)
{
    const struct gemm_operand a = {A, lda, 0}, b = {B, ldb, 0};
    const struct gemm_epilogue e = {.accumulate = accumulate};
    gemm(C, ldc, &a, &b, m, n, k, &e, ws);
}

/* f(z) = 1 / (1 + e^{-z}), written so that exp never overflows. */
static inline float sigmoidf(float z)
{
    if (z >= 0.0f)
        return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

void kernel_linear_forward(float *restrict A, float *restrict ws, const float *restrict X,
                           const float *restrict W, const float *restrict b,
                           enum dmlp_activation act, size_t batch, size_t in, size_t out)
{
    const struct gemm_operand x = {X, in, 0}, wt = {W, in, 1};
    const int in_store = act == DMLP_ACT_RELU || act == DMLP_ACT_LEAKY_RELU;
    const struct gemm_epilogue e = {.bias = b, .mode = in_store ? GEMM_EPI_ACT : GEMM_EPI_NONE,
                                    .act = act};
    gemm(A, out, &x, &wt, batch, out, in, &e, ws);
    if (!in_store)
        kernel_activation_forward(A, A, act, batch, out);
}

void kernel_linear_backward_params_rows(float *restrict dW, float *restrict ws,
                                        const float *restrict G, const float *restrict X,
                                        size_t batch, size_t in, size_t out, size_t r0,
                                        size_t r1)
{
    const struct gemm_operand gt = {G + r0, out, 1}, x = {X, in, 0};
    const struct gemm_epilogue e = {0};
    gemm(dW + r0 * in, in, &gt, &x, r1 - r0, in, batch, &e, ws);
}

void kernel_bias_grad(float *restrict db, const float *restrict G, size_t batch, size_t out)
{
    /* Column sums of G, each in sample order; threads take fixed blocks of columns and
     * sweep the rows, so the loads stay contiguous. */
    enum { JB = 64 };
#pragma omp parallel for schedule(static)
    for (size_t j0 = 0; j0 < out; j0 += JB) {
        const size_t j1 = j0 + JB < out ? j0 + JB : out;
        float s[JB] = {0};
        for (size_t i = 0; i < batch; i++)
            for (size_t j = j0; j < j1; j++)
                s[j - j0] += G[i * out + j];
        memcpy(db + j0, s, (j1 - j0) * sizeof(float));
    }
}

void kernel_linear_backward_params(float *restrict dW, float *restrict db, float *restrict ws,
                                   const float *restrict G, const float *restrict X,
                                   size_t batch, size_t in, size_t out)
{
    kernel_linear_backward_params_rows(dW, ws, G, X, batch, in, out, 0, out);
    kernel_bias_grad(db, G, batch, out);
}

void kernel_linear_backward_input(float *restrict dX, float *restrict ws,
                                  const float *restrict G, const float *restrict W,
                                  const float *restrict D, enum dmlp_activation act,
                                  size_t batch, size_t in, size_t out)
{
    const struct gemm_operand g = {G, out, 0}, w = {W, in, 0};
    const struct gemm_epilogue e = {.mode = D ? GEMM_EPI_DACT : GEMM_EPI_NONE, .act = act,
                                    .D = D, .ldd = in};
    gemm(dX, in, &g, &w, batch, in, out, &e, ws);
}
void kernel_activation_forward(float *A, const float *Z, enum dmlp_activation act,
                               size_t batch, size_t n)
{
    if (act == DMLP_ACT_SOFTMAX) {
        /* softmax(z)_j = e^{z_j − max z} / Σ e^{z_i − max z}, one row per iteration. */
#pragma omp parallel for schedule(static)
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
        }
        return;
    }
    const size_t total = batch * n;
    switch (act) {
    case DMLP_ACT_SIGMOID:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            A[i] = sigmoidf(Z[i]);
        break;
    case DMLP_ACT_TANH:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            A[i] = tanhf(Z[i]);
        break;
    case DMLP_ACT_RELU: /* f(z) = max(0, z) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            A[i] = Z[i] > 0.0f ? Z[i] : 0.0f;
        break;
    case DMLP_ACT_LEAKY_RELU: /* f(z) = z for z > 0, 0.01 z otherwise */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            A[i] = Z[i] > 0.0f ? Z[i] : 0.01f * Z[i];
        break;
    case DMLP_ACT_LINEAR:
        if (A != Z)
            memcpy(A, Z, total * sizeof(float));
        break;
    case DMLP_ACT_SOFTMAX:
        break;
    }
}

void kernel_activation_backward(float *restrict G, const float *restrict A,
                                enum dmlp_activation act, size_t batch, size_t n)
{
    const size_t total = batch * n;
    switch (act) {
    case DMLP_ACT_SIGMOID: /* f' = f (1 − f) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            G[i] *= A[i] * (1.0f - A[i]);
        break;
    case DMLP_ACT_TANH: /* f' = 1 − f² */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            G[i] *= 1.0f - A[i] * A[i];
        break;
    case DMLP_ACT_RELU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            G[i] = A[i] > 0.0f ? G[i] : 0.0f; /* f(z) > 0 exactly when z > 0 */
        break;
    case DMLP_ACT_LEAKY_RELU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            G[i] = A[i] > 0.0f ? G[i] : 0.01f * G[i];
        break;
    case DMLP_ACT_LINEAR:
    case DMLP_ACT_SOFTMAX:
        break;
    }
}

double kernel_softmax_xent(float *restrict G, const float *restrict P,
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

double kernel_mse(float *restrict G, const float *restrict Y, const float *restrict T,
                  size_t batch, size_t k)
{
    double loss = 0.0;
    for (size_t i = 0; i < batch * k; i++) {
        const float d = Y[i] - T[i];
        G[i] = 2.0f * d;
        loss += (double)d * (double)d;
    }
    return loss;
}

size_t kernel_count_correct(const float *restrict Y, const int32_t *restrict labels,
                            size_t batch, size_t k)
{
    size_t correct = 0;
    for (size_t i = 0; i < batch; i++) {
        const float *y = Y + i * k;
        size_t best = 0;
        for (size_t j = 1; j < k; j++)
            if (y[j] > y[best])
                best = j;
        correct += best == (size_t)labels[i];
    }
    return correct;
}
