/* Dense-layer kernels. See kernels.h for the contract.
 *
 * One GEMM serves the three products of a layer: forward X·Wᵀ (with Wᵀ packed once per
 * call), weight gradient Gᵀ·X (with Gᵀ packed) and input gradient G·W. The GEMM walks a
 * fixed grid of MR×NR output tiles; threads take whole tiles (schedule(static)), and each
 * tile sums its full k range in increasing order. An element's arithmetic therefore never
 * depends on the thread count. The micro-kernel holds a 6×16 tile in twelve 8-wide
 * registers (AVX2: 12 of 16 ymm), the classic shape for a broadcast-A, load-B kernel. */
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));

enum { MR = 6, NR = 16 };

static inline v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }

/* Loads nr (< 16) floats into two zero-padded vectors. */
static inline void load_partial(v8f *lo, v8f *hi, const float *p, size_t nr)
{
    float tmp[NR] = {0};
    memcpy(tmp, p, nr * sizeof(float));
    *lo = load8(tmp);
    *hi = load8(tmp + 8);
}

static inline void store_partial(float *p, v8f lo, v8f hi, size_t nr)
{
    float tmp[NR];
    store8(tmp, lo);
    store8(tmp + 8, hi);
    memcpy(p, tmp, nr * sizeof(float));
}

/* C[mr×nr] (+)= A[mr×k]·B[k×nr]; mr <= MR, nr <= NR. Inlined with constant mr = MR and
 * nr = NR for interior tiles, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void
micro_tile(float *restrict C, const float *restrict A, const float *restrict B, size_t mr,
           size_t nr, size_t k, size_t lda, size_t ldb, size_t ldc, int accumulate)
{
    v8f c0[MR], c1[MR];
    for (size_t r = 0; r < mr; r++) {
        if (!accumulate) {
            c0[r] = (v8f){0};
            c1[r] = (v8f){0};
        } else if (nr == NR) {
            c0[r] = load8(C + r * ldc);
            c1[r] = load8(C + r * ldc + 8);
        } else {
            load_partial(&c0[r], &c1[r], C + r * ldc, nr);
        }
    }
    for (size_t p = 0; p < k; p++) {
        v8f b0, b1;
        if (nr == NR) {
            b0 = load8(B + p * ldb);
            b1 = load8(B + p * ldb + 8);
        } else {
            load_partial(&b0, &b1, B + p * ldb, nr);
        }
        for (size_t r = 0; r < mr; r++) {
            float a = A[r * lda + p];
            c0[r] += a * b0;
            c1[r] += a * b1;
        }
    }
    for (size_t r = 0; r < mr; r++) {
        if (nr == NR) {
            store8(C + r * ldc, c0[r]);
            store8(C + r * ldc + 8, c1[r]);
        } else {
            store_partial(C + r * ldc, c0[r], c1[r], nr);
        }
    }
}

/* Dispatches an edge tile to a micro-kernel specialised for its row count, so edge rows
 * keep their accumulators in registers too. */
static void edge_tile(float *restrict C, const float *restrict A, const float *restrict B,
                      size_t mr, size_t nr, size_t k, size_t lda, size_t ldb, size_t ldc,
                      int accumulate)
{
    switch (mr) {
    case 1: micro_tile(C, A, B, 1, nr, k, lda, ldb, ldc, accumulate); break;
    case 2: micro_tile(C, A, B, 2, nr, k, lda, ldb, ldc, accumulate); break;
    case 3: micro_tile(C, A, B, 3, nr, k, lda, ldb, ldc, accumulate); break;
    case 4: micro_tile(C, A, B, 4, nr, k, lda, ldb, ldc, accumulate); break;
    case 5: micro_tile(C, A, B, 5, nr, k, lda, ldb, ldc, accumulate); break;
    default: micro_tile(C, A, B, MR, nr, k, lda, ldb, ldc, accumulate); break;
    }
}

void kernel_gemm(float *restrict C, const float *restrict A, const float *restrict B,
                 size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc,
                 int accumulate)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        if (!accumulate)
            for (size_t i = 0; i < m; i++)
                memset(C + i * ldc, 0, n * sizeof(float));
        return;
    }
    /* The k range is cut into blocks of KC: a tile's B panel (KC×NR, 16 KiB) stays in L1
     * while the MR-row slivers of A stream past it from L2. Blocks are summed in order into
     * C, so every element still adds its k terms in increasing k. Tiles are ordered by
     * column panel, so each thread reuses its panels across all row tiles. */
    enum { KC = 256 };
    const size_t mt = (m + MR - 1) / MR, nt = (n + NR - 1) / NR;
    for (size_t k0 = 0; k0 < k; k0 += KC) {
        const size_t kc = k - k0 < KC ? k - k0 : KC;
        const int acc = accumulate || k0 > 0;
#pragma omp parallel for schedule(static)
        for (size_t t = 0; t < mt * nt; t++) {
            const size_t j = (t / mt) * NR, i = (t % mt) * MR;
            const size_t mr = m - i < MR ? m - i : MR, nr = n - j < NR ? n - j : NR;
            float *c = C + i * ldc + j;
            const float *a = A + i * lda + k0, *b = B + k0 * ldb + j;
            if (mr == MR && nr == NR)
                micro_tile(c, a, b, MR, NR, kc, lda, ldb, ldc, acc);
            else
                edge_tile(c, a, b, mr, nr, kc, lda, ldb, ldc, acc);
        }
    }
}

void kernel_transpose(float *restrict T, const float *restrict S, size_t rows, size_t cols)
{
    enum { TB = 32 };
    const size_t rb = (rows + TB - 1) / TB;
#pragma omp parallel for schedule(static)
    for (size_t bi = 0; bi < rb; bi++) {
        const size_t i0 = bi * TB, i1 = i0 + TB < rows ? i0 + TB : rows;
        for (size_t j0 = 0; j0 < cols; j0 += TB) {
            const size_t j1 = j0 + TB < cols ? j0 + TB : cols;
            for (size_t i = i0; i < i1; i++)
                for (size_t j = j0; j < j1; j++)
                    T[j * rows + i] = S[i * cols + j];
        }
    }
}

void kernel_linear_forward(float *restrict Z, float *restrict Wt, const float *restrict X,
                           const float *restrict W, const float *restrict b,
                           size_t batch, size_t in, size_t out)
{
    if (batch == 0)
        return;
    kernel_transpose(Wt, W, out, in); /* Wt is [in×out] */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < batch; i++)
        memcpy(Z + i * out, b, out * sizeof(float));
    kernel_gemm(Z, X, Wt, batch, out, in, in, out, out, 1);
}

void kernel_linear_backward_params(float *restrict dW, float *restrict db, float *restrict Gt,
                                   const float *restrict G, const float *restrict X,
                                   size_t batch, size_t in, size_t out)
{
    if (batch == 0) {
        memset(dW, 0, out * in * sizeof(float));
        memset(db, 0, out * sizeof(float));
        return;
    }
    kernel_transpose(Gt, G, batch, out); /* Gt is [out×batch] */
    kernel_gemm(dW, Gt, X, out, in, batch, batch, in, in, 0);
    /* Bias gradient: each output's sum over samples in sample order, one thread each. */
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < out; j++) {
        const float *g = Gt + j * batch;
        float s = 0.0f;
        for (size_t i = 0; i < batch; i++)
            s += g[i];
        db[j] = s;
    }
}

void kernel_linear_backward_input(float *restrict dX, const float *restrict G,
                                  const float *restrict W, size_t batch, size_t in, size_t out)
{
    kernel_gemm(dX, G, W, batch, in, out, out, in, in, 0);
}

/* f(z) = 1 / (1 + e^{-z}), written so that exp never overflows. */
static inline float sigmoidf(float z)
{
    if (z >= 0.0f)
        return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
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

void kernel_activation_backward(float *restrict G, const float *restrict Z,
                                const float *restrict A, enum dmlp_activation act,
                                size_t batch, size_t n)
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
            G[i] = Z[i] > 0.0f ? G[i] : 0.0f;
        break;
    case DMLP_ACT_LEAKY_RELU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < total; i++)
            G[i] = Z[i] > 0.0f ? G[i] : 0.01f * G[i];
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
