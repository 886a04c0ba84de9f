/* test_kernels: every kernel of src/nn/kernels.c against a naive loop written here, in double
 * where that is the natural reference, over odd shapes (1, 7, 33, 130 and a few layer-sized
 * combinations), with 1 and 2 OpenMP threads, for every GEMM backend this CPU runs (the
 * fused bias/activation and derivative epilogues included). The GEMM-based kernels must
 * also give bit-identical results for both thread counts (kernels.h promises a fixed
 * tiling).
 *
 * Tolerances. Inputs are float32; the reference is computed in double from the same float
 * inputs, where each product a·b is exact (24+24 bits < 53) and the double sum's own error
 * (~k·2^-53) is negligible. A float32 dot product of n terms (bias or old C included),
 * in any order and with or without fused multiply-adds, obeys the classic bound
 *     |fl(Σ a_i b_i) − Σ a_i b_i| <= γ_n · Σ |a_i b_i|,   γ_n = n·u / (1 − n·u), u = 2^-24,
 * so we allow 2·n·u·Σ|a_i b_i| (the factor 2 covers γ_n's denominator with room to spare).
 * This bound is rigorous, so it cannot fail on a correct kernel, yet a wrong index, a
 * missing term or a wrong stride changes the result by O(Σ|a_i b_i|) and fails it.
 * Elementwise kernels get a few ulp (stated at each check). */
#include <CUnit/CUnit.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/kernels.h"
#include "core/rng.h"
#include "testutil.h"
#include "nn/vec.h"

#define U32 (1.0 / 16777216.0) /* unit roundoff of float32, 2^-24 */

static const size_t sizes[] = {1, 7, 33, 130};
enum { N_SIZES = sizeof sizes / sizeof sizes[0] };

/* Layer-shaped extras (batch, in, out): an MNIST-sized layer and a tiny odd one. */
static const size_t extra_shapes[][3] = {{128, 784, 256}, {5, 3, 10}};
enum { N_EXTRA = sizeof extra_shapes / sizeof extra_shapes[0] };

/* ---- helpers ------------------------------------------------------------------------ */

static float *falloc(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

static double *dalloc(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof(double));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

static void fill_uniform(float *x, size_t n, struct rng *r, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * rng_uniform(r));
}

static void fill_value(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

/* The naive reference product in double, on strided views so one loop serves every
 * kernel: ref[i,j] = c_ij + Σ_p A(i,p)·B(p,j), with A(i,p) = A[i·ar + p·ac] and
 * B(p,j) = B[p·br + j·bc], and c_ij = C[i·ldc + j] (or 0 when C is NULL). mag[i,j] gets
 * |c_ij| + Σ_p |A(i,p)·B(p,j)|, the scale of the tolerance. */
static void ref_product(double *ref, double *mag, const float *C, size_t ldc, const float *A,
                        size_t ar, size_t ac, const float *B, size_t br, size_t bc, size_t m,
                        size_t n, size_t k)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = C ? C[i * ldc + j] : 0.0, a = fabs(s);
            for (size_t p = 0; p < k; p++) {
                const double t = (double)A[i * ar + p * ac] * (double)B[p * br + j * bc];
                s += t;
                a += fabs(t);
            }
            ref[i * n + j] = s;
            mag[i * n + j] = a;
        }
}

/* Checks got against ref with |got − ref| <= 2·n·u·mag + tiny (see the file comment);
 * prints the first few failures with their position. */
static void check_sum_close(const char *what, const float *got, size_t ldg, const double *ref,
                              const double *mag, size_t rows, size_t cols, size_t nterms)
{
    size_t bad = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            const double g = got[i * ldg + j], r = ref[i * cols + j];
            const double tol = 2.0 * (double)nterms * U32 * mag[i * cols + j] + 1e-30;
            if (!(fabs(g - r) <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "\n  %s[%zu,%zu] = %.9g, expected %.9g (tol %.3g)", what, i,
                            j, g, r, tol);
                bad++;
            }
        }
    CU_ASSERT_EQUAL(bad, 0);
}

/* Brackets a kernel call run with n OpenMP threads; threads_end restores the setting. */
static int saved_threads;
static void threads_begin(int n)
{
    saved_threads = omp_get_max_threads();
    omp_set_num_threads(n);
}
static void threads_end(void) { omp_set_num_threads(saved_threads); }

/* ---- backends --------------------------------------------------------------------------- */

/* Every GEMM backend this build has and this CPU runs is tested in turn: the fused
 * epilogues and the packing are per backend. */
static const char *const backends[] = {"avx512", "avx2", "generic", "wide16", "openblas"};
enum { N_BACKENDS = sizeof backends / sizeof backends[0] };

/* Runs body once per available backend; the default is restored afterwards. */
#define FOR_EACH_BACKEND(body)                                                                 \
    do {                                                                                       \
        const char *was = kernel_backend();                                                    \
        for (size_t be = 0; be < N_BACKENDS; be++) {                                           \
            if (kernel_set_backend(backends[be]))                                              \
                continue;                                                                      \
            body;                                                                              \
        }                                                                                      \
        kernel_set_backend(was);                                                               \
    } while (0)

static void test_backends(void)
{
    /* At least the portable backend runs everywhere, and the default is one that runs. */
    CU_ASSERT_TRUE(kernel_backend_available("generic"));
    CU_ASSERT_TRUE(kernel_backend_available(kernel_backend()));
    CU_ASSERT_FALSE(kernel_backend_available("nonesuch"));
    CU_ASSERT_EQUAL(kernel_set_backend("nonesuch"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(kernel_backend_list(), "generic"));
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CU_ASSERT_TRUE(kernel_backend_available("avx2"));
    if (!__builtin_cpu_supports("avx512f"))
        CU_ASSERT_EQUAL(kernel_set_backend("avx512"), -1); /* refused, not run and crashed */
#endif
}

static float *ws_for(size_t batch, size_t in, size_t out)
{
    return falloc(kernel_workspace_floats(batch, in, out));
}

/* ---- kernel_gemm ---------------------------------------------------------------------- */

/* C[m×n] (+)= A[m×k]·B[k×n] with padded leading dimensions. The padding of A and B holds
 * NaN (reading it poisons the result); the padding of C holds a sentinel that must survive.
 * For accumulate = 0, C starts as NaN, so a kernel that reads C there fails too. Computes
 * with 1 and 2 threads and requires identical bits. */
static void gemm_case(struct rng *r, size_t m, size_t n, size_t k, int accumulate)
{
    const size_t lda = k + 3, ldb = n + 5, ldc = n + 2;
    const float sentinel = 12345.0f;
    float *A = falloc(m * lda), *B = falloc(k * ldb), *C0 = falloc(m * ldc);
    float *C[2] = {falloc(m * ldc), falloc(m * ldc)}, *ws = ws_for(m, k, 0);
    double *ref = dalloc(m * n), *mag = dalloc(m * n);
    fill_value(A, m * lda, NAN);
    fill_value(B, k * ldb, NAN);
    for (size_t i = 0; i < m; i++)
        fill_uniform(A + i * lda, k, r, -1.0, 1.0);
    for (size_t p = 0; p < k; p++)
        fill_uniform(B + p * ldb, n, r, -1.0, 1.0);
    fill_value(C0, m * ldc, sentinel);
    for (size_t i = 0; i < m; i++) {
        if (accumulate)
            fill_uniform(C0 + i * ldc, n, r, -2.0, 2.0);
        else
            fill_value(C0 + i * ldc, n, NAN);
    }
    ref_product(ref, mag, accumulate ? C0 : NULL, ldc, A, lda, 1, B, ldb, 1, m, n, k);
    for (int t = 0; t < 2; t++) {
        memcpy(C[t], C0, m * ldc * sizeof(float));
        threads_begin(t + 1);
        kernel_gemm(C[t], A, B, m, n, k, lda, ldb, ldc, accumulate, ws);
        threads_end();
    }
    char what[128];
    snprintf(what, sizeof what, "%s gemm %zux%zux%zu acc=%d C", kernel_backend(), m, n, k,
             accumulate);
    check_sum_close(what, C[0], ldc, ref, mag, m, n, k + (size_t)accumulate);
    size_t pad_bad = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = n; j < ldc; j++)
            pad_bad += C[0][i * ldc + j] != sentinel;
    CU_ASSERT_EQUAL(pad_bad, 0);
    CU_ASSERT_EQUAL(memcmp(C[0], C[1], m * ldc * sizeof(float)), 0);
    free(A), free(B), free(C0), free(C[0]), free(C[1]), free(ws), free(ref), free(mag);
}

static void test_gemm(void)
{
    FOR_EACH_BACKEND({
        struct rng r;
        rng_seed(&r, 1, 0);
        for (size_t a = 0; a < N_SIZES; a++)
            for (size_t b = 0; b < N_SIZES; b++)
                for (size_t c = 0; c < N_SIZES; c++)
                    for (int acc = 0; acc < 2; acc++)
                        gemm_case(&r, sizes[a], sizes[b], sizes[c], acc);
        gemm_case(&r, 128, 256, 784, 0);
        gemm_case(&r, 5, 10, 3, 1);
        gemm_case(&r, 300, 40, 600, 1); /* several row groups and k blocks */
        gemm_case(&r, 10, 130, 128, 0); /* the short product (a narrow layer's dW) */
        gemm_case(&r, 128, 128, 10, 0); /* a short sum (its input gradient) */
        /* Every count of last rows (m mod 8 and m mod 6), read in place as a tile of
         * exactly that many rows: a read past row m would be out of bounds. */
        for (size_t m = 17; m <= 23; m++)
            gemm_case(&r, m, 40, 20, m & 1);
    });
}

/* wide16 is the avx512 build's source (16-wide vectors, 8×32 tiles, KC = 256) compiled for
 * AVX2 + FMA. Each element sums its k products in the same order with the same fused
 * multiply-adds in every build, so it must match the AVX2 build bit for bit: on machines
 * without AVX-512 this is how the 8×32 tiling's packing, edges and epilogues are checked
 * (the reference comparisons above check both builds only to a tolerance). Its tile
 * shapes differ from avx2's (8 rows, not 6; short products of up to 12 rows, not 6), so
 * this also checks that the tiling never decides an element's bits. */
static void wide16_case(struct rng *r, size_t m, size_t n, size_t k, int trans_a,
                        const struct gemm_epilogue *e)
{
    const size_t lda = (trans_a ? m : k) + 1, ldb = n + 3, ldc = n + 2;
    float *A = falloc((trans_a ? k : m) * lda), *B = falloc(k * ldb);
    float *C[2] = {falloc(m * ldc), falloc(m * ldc)};
    float *ws = falloc(gemm_wide16_ws(m, k) > gemm_avx2_ws(m, k) ? gemm_wide16_ws(m, k)
                                                                   : gemm_avx2_ws(m, k));
    fill_uniform(A, (trans_a ? k : m) * lda, r, -1.0, 1.0);
    fill_uniform(B, k * ldb, r, -1.0, 1.0);
    fill_uniform(C[0], m * ldc, r, -1.0, 1.0);
    memcpy(C[1], C[0], m * ldc * sizeof(float));
    const struct gemm_operand a = {A, lda, trans_a}, b = {B, ldb, 0};
    gemm_avx2(C[0], ldc, &a, &b, m, n, k, e, ws);
    gemm_wide16(C[1], ldc, &a, &b, m, n, k, e, ws);
    if (memcmp(C[0], C[1], m * ldc * sizeof(float)) != 0)
        fprintf(stderr, "\n  wide16 differs from avx2: %zux%zux%zu trans_a %d acc %d mode %d",
                m, n, k, trans_a, e->accumulate, (int)e->mode);
    CU_ASSERT_EQUAL(memcmp(C[0], C[1], m * ldc * sizeof(float)), 0);
    free(A), free(B), free(C[0]), free(C[1]), free(ws);
}

static void test_wide16_matches_avx2(void)
{
#if defined(__x86_64__)
    if (!kernel_backend_available("avx2")) {
        fprintf(stderr, "\n  (no AVX2 + FMA here: no wide16 build to compare)\n");
        return;
    }
    struct rng r;
    rng_seed(&r, 5, 0);
    float bias[300], D[300 * 300];
    fill_uniform(bias, 300, &r, -1.0, 1.0);
    fill_uniform(D, 300 * 300, &r, -1.0, 1.0); /* signs decide the relu derivative */
    const struct gemm_epilogue epis[] = {
        {.accumulate = 0},
        {.accumulate = 1},
        {.bias = bias, .mode = GEMM_EPI_ACT, .act = DMLP_ACT_RELU},
        {.bias = bias, .mode = GEMM_EPI_ACT, .act = DMLP_ACT_LEAKY_RELU},
        {.mode = GEMM_EPI_DACT, .act = DMLP_ACT_RELU, .D = D, .ldd = 300},
        {.mode = GEMM_EPI_DACT, .act = DMLP_ACT_LEAKY_RELU, .D = D, .ldd = 300},
    };
    /* Edges in every dimension and every path: m at 10 (the short product: one pass of
     * 10 rows in wide16, two of 5 in avx2), 13 (over both builds' short limit, 12 and 6;
     * two and three row tiles), 128 and 150; n around NR = 32 and 16 and the narrow
     * product's n ≤ VW; k at 1 and 10 (short sums: operands read in place), 129 and 300
     * (k blocks, balanced); the demo's shapes; op(A) plain and transposed. Then several
     * row groups (m > MC = 256). */
    static const size_t ms[] = {1, 10, 13, 150, 128}, ns[] = {10, 33, 59, 256};
    static const size_t ks[] = {1, 10, 129, 300};
    for (size_t e = 0; e < sizeof epis / sizeof epis[0]; e++) {
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
                for (size_t p = 0; p < sizeof ks / sizeof ks[0]; p++)
                    for (int t = 0; t < 2; t++)
                        wide16_case(&r, ms[i], ns[j], ks[p], t, &epis[e]);
        for (int t = 0; t < 2; t++)
            wide16_case(&r, 300, 40, 300, t, &epis[e]);
    }
    /* The derivatives of sigmoid and tanh, on full tiles of each route (a full tile read
     * in place has a copy of the tile code per epilogue in the avx2 build), and on the
     * short product. */
    const struct gemm_epilogue smooth[] = {
        {.mode = GEMM_EPI_DACT, .act = DMLP_ACT_SIGMOID, .D = D, .ldd = 300},
        {.mode = GEMM_EPI_DACT, .act = DMLP_ACT_TANH, .D = D, .ldd = 300},
    };
    for (size_t e = 0; e < sizeof smooth / sizeof smooth[0]; e++)
        for (size_t p = 0; p < sizeof ks / sizeof ks[0]; p++) {
            wide16_case(&r, 128, 256, ks[p], 0, &smooth[e]);
            wide16_case(&r, 10, 59, ks[p], 0, &smooth[e]);
        }
#else
    fprintf(stderr, "\n  (not x86-64: no wide16 build to compare)\n");
#endif
}

/* An empty sum: k = 0 writes zeros when overwriting and leaves C alone when accumulating. */
static void test_gemm_k0(void)
{
    float C[3 * 5], A[1] = {NAN}, B[1] = {NAN}, ws[1];
    fill_value(C, 15, 7.0f);
    kernel_gemm(C, A, B, 3, 5, 0, 1, 5, 5, 1, ws);
    for (size_t i = 0; i < 15; i++)
        CU_ASSERT_EQUAL(C[i], 7.0f);
    kernel_gemm(C, A, B, 3, 5, 0, 1, 5, 5, 0, ws);
    for (size_t i = 0; i < 15; i++)
        CU_ASSERT_EQUAL(C[i], 0.0f);
}

/* ---- activations ---------------------------------------------------------------------- */

static const enum dmlp_activation elementwise_acts[] = {
    DMLP_ACT_SIGMOID, DMLP_ACT_TANH, DMLP_ACT_RELU, DMLP_ACT_LEAKY_RELU, DMLP_ACT_LINEAR};
enum { N_ELEMENTWISE = sizeof elementwise_acts / sizeof elementwise_acts[0] };

/* f'(z) in double, written in terms of a = f(z) where that is how the kernel is told to
 * compute it; at z = 0 relu' = 0 and leaky_relu' = 0.01, PyTorch's convention. */
static double act_deriv_ref(enum dmlp_activation act, double z, double a)
{
    switch (act) {
    case DMLP_ACT_SIGMOID:
        return a * (1.0 - a);
    case DMLP_ACT_TANH:
        return 1.0 - a * a;
    case DMLP_ACT_RELU:
        return z > 0.0 ? 1.0 : 0.0;
    case DMLP_ACT_LEAKY_RELU:
        return z > 0.0 ? 1.0 : 0.01;
    case DMLP_ACT_LINEAR:
    case DMLP_ACT_SOFTMAX:
        break;
    }
    return 1.0;
}


/* Checks got = f(ref) where ref is the exact pre-activation: f is 1-Lipschitz for every
 * elementwise activation, so the product's tolerance carries over, plus 16 ulp of f's own
 * float evaluation (expf/tanhf and the sigmoid's two roundings, as below). */
static void check_act_close(const char *what, enum dmlp_activation act, const float *got,
                            const double *ref, const double *mag, size_t rows, size_t cols,
                            size_t nterms)
{
    size_t bad = 0;
    for (size_t i = 0; i < rows * cols; i++) {
        const double want = tu_act_ref(act, ref[i]);
        const double tol = 2.0 * (double)nterms * U32 * mag[i] + 16.0 * U32 * fabs(want) +
                           1e-30;
        if (!(fabs(got[i] - want) <= tol)) {
            if (bad < 3)
                fprintf(stderr, "\n  %s[%zu] = %.9g, expected %.9g (tol %.3g)", what, i,
                        got[i], want, tol);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* ---- kernel_linear_forward ------------------------------------------------------------ */

static void linear_forward_case(struct rng *r, size_t batch, size_t in, size_t out,
                                enum dmlp_activation act)
{
    float *X = falloc(batch * in), *W = falloc(out * in), *b = falloc(out);
    float *A[2] = {falloc(batch * out), falloc(batch * out)}, *ws = ws_for(batch, in, out);
    double *ref = dalloc(batch * out), *mag = dalloc(batch * out);
    fill_uniform(X, batch * in, r, -1.0, 1.0);
    fill_uniform(W, out * in, r, -1.0, 1.0);
    fill_uniform(b, out, r, -1.0, 1.0);
    /* z_ij = b_j + Σ_p x_ip w_jp: the bias row repeated (ldc 0), then X times Wᵀ. */
    ref_product(ref, mag, b, 0, X, in, 1, W, 1, in, batch, out, in);
    for (int t = 0; t < 2; t++) {
        fill_value(A[t], batch * out, NAN);
        threads_begin(t + 1);
        kernel_linear_forward(A[t], ws, X, W, b, act, batch, in, out);
        threads_end();
    }
    char what[128];
    snprintf(what, sizeof what, "%s linear_forward %zux%zu->%zu act %d A", kernel_backend(),
             batch, in, out, (int)act);
    check_act_close(what, act, A[0], ref, mag, batch, out, in + 1);
    CU_ASSERT_EQUAL(memcmp(A[0], A[1], batch * out * sizeof(float)), 0);
    free(X), free(W), free(b), free(A[0]), free(A[1]), free(ws), free(ref), free(mag);
}

static void test_linear_forward(void)
{
    FOR_EACH_BACKEND({
        struct rng r;
        rng_seed(&r, 3, 0);
        for (size_t a = 0; a < N_SIZES; a++)
            for (size_t b = 0; b < N_SIZES; b++)
                for (size_t c = 0; c < N_SIZES; c++)
                    linear_forward_case(&r, sizes[a], sizes[b], sizes[c],
                                        elementwise_acts[(a + b + c) % N_ELEMENTWISE]);
        /* The large shape once (relu, as in the demo); the small one with every f. */
        linear_forward_case(&r, extra_shapes[0][0], extra_shapes[0][1], extra_shapes[0][2],
                            DMLP_ACT_RELU);
        for (size_t f = 0; f < N_ELEMENTWISE; f++)
            linear_forward_case(&r, extra_shapes[1][0], extra_shapes[1][1], extra_shapes[1][2],
                                elementwise_acts[f]);
    });
}

/* ---- kernel_linear_forward_t: the few-row product of inference ------------------------ */

/* The few-row product on transposed, padded weights carries the bits of the GEMM path, for
 * every backend that has it, every activation, rows 1..9 (whole and partial row blocks),
 * widths across the column blocks' edges and sums across the k blocks (KC). */
static void forward_t_case(struct rng *r, size_t batch, size_t in, size_t out,
                           enum dmlp_activation act)
{
    const size_t ld = (out + KERNEL_GEMV_PAD - 1) / KERNEL_GEMV_PAD * KERNEL_GEMV_PAD;
    float *X = falloc(batch * in), *W = falloc(out * in), *b = falloc(out);
    float *Wt = falloc(in * ld), *bt = falloc(ld);
    float *A[2] = {falloc(batch * out), falloc(batch * out)};
    float *ws = ws_for(batch, in, out);
    fill_uniform(X, batch * in, r, -1.0, 1.0);
    fill_uniform(W, out * in, r, -1.0, 1.0);
    fill_uniform(b, out, r, -1.0, 1.0);
    fill_value(Wt, in * ld, 0.0f);
    fill_value(bt, ld, 0.0f);
    for (size_t j = 0; j < out; j++) {
        bt[j] = b[j];
        for (size_t p = 0; p < in; p++)
            Wt[p * ld + j] = W[j * in + p];
    }
    fill_value(A[0], batch * out, 1e6f);
    fill_value(A[1], batch * out, -1e6f);
    kernel_linear_forward(A[0], ws, X, W, b, act, batch, in, out);
    if (kernel_linear_forward_t(A[1], X, Wt, ld, bt, act, batch, in, out) == 0) {
        const int same = memcmp(A[0], A[1], batch * out * sizeof(float)) == 0;
        if (!same)
            printf("\n  %s forward_t %zux%zu->%zu (act %d) differs from the GEMM path\n",
                   kernel_backend(), batch, in, out, (int)act);
        CU_ASSERT(same);
    } else {
        CU_ASSERT_STRING_EQUAL(kernel_backend(), "openblas"); /* the only one without */
    }
    free(X), free(W), free(b), free(Wt), free(bt), free(A[0]), free(A[1]), free(ws);
}

static void test_linear_forward_t(void)
{
    const size_t ins[] = {1, 7, 300, 784}, outs[] = {1, 10, 17, 64, 65, 130};
    const enum dmlp_activation acts[] = {DMLP_ACT_RELU, DMLP_ACT_LEAKY_RELU, DMLP_ACT_LINEAR,
                                         DMLP_ACT_SIGMOID, DMLP_ACT_TANH, DMLP_ACT_SOFTMAX};
    FOR_EACH_BACKEND({
        struct rng r;
        rng_seed(&r, 11, 0);
        for (size_t batch = 1; batch <= 9; batch++)
            for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++)
                for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++)
                    forward_t_case(&r, batch, ins[i], outs[o], acts[(batch + i + o) % 6]);
    });
}

/* ---- kernel_linear_backward_params ---------------------------------------------------- */

static void backward_params_case(struct rng *r, size_t batch, size_t in, size_t out)
{
    float *G = falloc(batch * out), *X = falloc(batch * in);
    float *dW[2] = {falloc(out * in), falloc(out * in)};
    float *db[2] = {falloc(out), falloc(out)};
    float *ws = ws_for(batch, in, out);
    double *rW = dalloc(out * in), *mW = dalloc(out * in), *rb = dalloc(out), *mb = dalloc(out);
    fill_uniform(G, batch * out, r, -1.0, 1.0);
    fill_uniform(X, batch * in, r, -1.0, 1.0);
    /* dW_jp = Σ_i g_ij x_ip  (Gᵀ·X),  db_j = Σ_i g_ij  (Gᵀ·1) */
    const float one[1] = {1.0f};
    ref_product(rW, mW, NULL, 0, G, 1, out, X, in, 1, out, in, batch);
    ref_product(rb, mb, NULL, 0, G, 1, out, one, 0, 0, out, 1, batch);
    for (int t = 0; t < 2; t++) {
        /* Garbage in the outputs: the kernel overwrites, it does not accumulate. */
        fill_value(dW[t], out * in, 1e6f);
        fill_value(db[t], out, 1e6f);
        threads_begin(t + 1);
        kernel_linear_backward_params(dW[t], db[t], ws, G, X, batch, in, out);
        threads_end();
    }
    char what[128];
    snprintf(what, sizeof what, "%s backward_params %zux%zu->%zu dW", kernel_backend(), batch,
             in, out);
    check_sum_close(what, dW[0], in, rW, mW, out, in, batch);
    snprintf(what, sizeof what, "%s backward_params %zux%zu->%zu db", kernel_backend(), batch,
             in, out);
    check_sum_close(what, db[0], 1, rb, mb, out, 1, batch);
    CU_ASSERT_EQUAL(memcmp(dW[0], dW[1], out * in * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(db[0], db[1], out * sizeof(float)), 0);
    free(G), free(X), free(dW[0]), free(dW[1]), free(db[0]), free(db[1]), free(ws);
    free(rW), free(mW), free(rb), free(mb);
}

static void test_linear_backward_params(void)
{
    FOR_EACH_BACKEND({
        struct rng r;
        rng_seed(&r, 4, 0);
        for (size_t a = 0; a < N_SIZES; a++)
            for (size_t b = 0; b < N_SIZES; b++)
                for (size_t c = 0; c < N_SIZES; c++)
                    backward_params_case(&r, sizes[a], sizes[b], sizes[c]);
        for (size_t e = 0; e < N_EXTRA; e++)
            backward_params_case(&r, extra_shapes[e][0], extra_shapes[e][1],
                                 extra_shapes[e][2]);
        /* Every count of last rows of a transposed op(A) (Gᵀ: out rows), read in place. */
        for (size_t out = 17; out <= 23; out++)
            backward_params_case(&r, 24, 40, out);
    });
}

/* An empty batch has zero gradient (a rank with an empty slice still contributes zeros). */
static void test_linear_backward_params_empty(void)
{
    float dW[3 * 4], db[3], ws[1], G[1] = {NAN}, X[1] = {NAN};
    fill_value(dW, 12, 5.0f);
    fill_value(db, 3, 5.0f);
    kernel_linear_backward_params(dW, db, ws, G, X, 0, 4, 3);
    for (size_t i = 0; i < 12; i++)
        CU_ASSERT_EQUAL(dW[i], 0.0f);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(db[i], 0.0f);
}

/* ---- kernel_linear_backward_input ----------------------------------------------------- */

/* dX = (G·W) ⊙ f'(D) with D = f(Z) of the layer below (D = NULL for linear: no factor). */
static void backward_input_case(struct rng *r, size_t batch, size_t in, size_t out,
                                enum dmlp_activation act)
{
    float *G = falloc(batch * out), *W = falloc(out * in), *D = falloc(batch * in);
    float *Zp = falloc(batch * in), *ws = ws_for(batch, in, out);
    float *dX[2] = {falloc(batch * in), falloc(batch * in)};
    double *ref = dalloc(batch * in), *mag = dalloc(batch * in);
    fill_uniform(G, batch * out, r, -1.0, 1.0);
    fill_uniform(W, out * in, r, -1.0, 1.0);
    fill_uniform(Zp, batch * in, r, -3.0, 3.0);
    for (size_t i = 0; i < batch * in; i++)
        D[i] = (float)tu_act_ref(act, Zp[i]);
    const float *Dp = act == DMLP_ACT_LINEAR ? NULL : D;
    /* dX_ip = Σ_j g_ij w_jp  (G·W), then times f'(z_ip) */
    ref_product(ref, mag, NULL, 0, G, out, 1, W, in, 1, batch, in, out);
    for (int t = 0; t < 2; t++) {
        fill_value(dX[t], batch * in, NAN);
        threads_begin(t + 1);
        kernel_linear_backward_input(dX[t], ws, G, W, Dp, act, batch, in, out);
        threads_end();
    }
    /* The factor f' (from the float D, as the kernel sees it) scales the sum's error; its
     * own evaluation and the product add 4 ulp. */
    size_t bad = 0;
    for (size_t i = 0; i < batch * in; i++) {
        const double d = act_deriv_ref(act, Zp[i], D[i]), want = ref[i] * d;
        const double tol = 2.0 * (double)out * U32 * mag[i] * fabs(d) +
                           4.0 * U32 * fabs(want) + 1e-30;
        if (!(fabs(dX[0][i] - want) <= tol)) {
            if (bad < 3)
                fprintf(stderr, "\n  %s backward_input %zux%zu->%zu act %d dX[%zu] = %.9g, "
                        "expected %.9g", kernel_backend(), batch, in, out, (int)act, i,
                        dX[0][i], want);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(memcmp(dX[0], dX[1], batch * in * sizeof(float)), 0);
    free(G), free(W), free(D), free(Zp), free(ws), free(dX[0]), free(dX[1]);
    free(ref), free(mag);
}

static void test_linear_backward_input(void)
{
    FOR_EACH_BACKEND({
        struct rng r;
        rng_seed(&r, 5, 0);
        for (size_t a = 0; a < N_SIZES; a++)
            for (size_t b = 0; b < N_SIZES; b++)
                for (size_t c = 0; c < N_SIZES; c++)
                    backward_input_case(&r, sizes[a], sizes[b], sizes[c],
                                        elementwise_acts[(a + 2 * b + c) % N_ELEMENTWISE]);
        backward_input_case(&r, extra_shapes[0][0], extra_shapes[0][1], extra_shapes[0][2],
                            DMLP_ACT_RELU);
        for (size_t f = 0; f < N_ELEMENTWISE; f++)
            backward_input_case(&r, extra_shapes[1][0], extra_shapes[1][1], extra_shapes[1][2],
                                elementwise_acts[f]);
    });
}

/* ---- activations (standalone) ---------------------------------------------------------- */

/* Pre-activations: uniform in [-8, 8] plus fixed edge values (exact zero, ±0.5, and large
 * magnitudes where a naive sigmoid or tanh would overflow exp). */
static void fill_preact(float *Z, size_t total, struct rng *r)
{
    static const float edges[] = {0.0f, -0.0f, 0.5f, -0.5f, 30.0f, -30.0f, 100.0f, -100.0f,
                                  1000.0f, -1000.0f};
    fill_uniform(Z, total, r, -8.0, 8.0);
    for (size_t i = 0; i < total && i < sizeof edges / sizeof edges[0]; i++)
        Z[i * 7 % total] = edges[i];
}

static void activation_forward_case(struct rng *r, enum dmlp_activation act, size_t batch,
                                    size_t n, int threads, int in_place)
{
    const size_t total = batch * n;
    float *Z = falloc(total), *A = falloc(total);
    fill_preact(Z, total, r);
    /* In place (A == Z, allowed by the contract) or into a NaN-filled A. */
    if (in_place)
        memcpy(A, Z, total * sizeof(float));
    else
        fill_value(A, total, NAN);
    threads_begin(threads);
    kernel_activation_forward(A, in_place ? A : Z, act, batch, n);
    threads_end();
    /* expf/tanhf are within a few ulp and the sigmoid adds two roundings: 16 ulp relative,
     * with an absolute floor at the float denormal range (sigmoid(-100) ~ 4e-44). */
    size_t bad = 0;
    for (size_t i = 0; i < total; i++) {
        const double ref = tu_act_ref(act, Z[i]);
        if (!(fabs(A[i] - ref) <= 16.0 * U32 * fabs(ref) + 1e-37)) {
            if (bad < 3)
                fprintf(stderr, "\n  act %d f(%.9g) = %.9g, expected %.9g", (int)act, Z[i], A[i],
                        ref);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(Z), free(A);
}

static void test_activation_forward(void)
{
    struct rng r;
    rng_seed(&r, 6, 0);
    for (size_t a = 0; a < N_ELEMENTWISE; a++)
        for (size_t b = 0; b < N_SIZES; b++)
            for (size_t c = 0; c < N_SIZES; c++)
                for (int t = 1; t <= 2; t++)
                    for (int ip = 0; ip < 2; ip++)
                        activation_forward_case(&r, elementwise_acts[a], sizes[b], sizes[c], t,
                                                ip);
}

/* softmax(z)_j = e^{z_j} / Σ_i e^{z_i}, reference in double with the max subtracted. The
 * float kernel rounds z_j − max (relative error u, amplified by exp to u·|z_j − max|), then
 * exp (a few ulp), then sums n terms and divides: allow 4·(|z_j − max| + n + 8)·u relative.
 * Rows must also sum to 1 within 2·(n + 2)·u. */
static void softmax_check(const float *Z, const float *A, size_t batch, size_t n)
{
    size_t bad = 0, badsum = 0, nonfinite = 0;
    for (size_t i = 0; i < batch; i++) {
        const float *z = Z + i * n;
        const float *a = A + i * n;
        double mx = z[0];
        for (size_t j = 1; j < n; j++)
            mx = fmax(mx, z[j]);
        double s = 0.0, sum_a = 0.0;
        for (size_t j = 0; j < n; j++)
            s += exp(z[j] - mx);
        for (size_t j = 0; j < n; j++) {
            const double ref = exp(z[j] - mx) / s;
            const double tol = 4.0 * (fabs(z[j] - mx) + (double)n + 8.0) * U32 * ref + 1e-37;
            nonfinite += !isfinite(a[j]);
            if (!(fabs(a[j] - ref) <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "\n  softmax row %zu [%zu] = %.9g, expected %.9g", i, j, a[j],
                            ref);
                bad++;
            }
            sum_a += a[j];
        }
        badsum += !(fabs(sum_a - 1.0) <= 2.0 * (double)(n + 2) * U32);
    }
    CU_ASSERT_EQUAL(nonfinite, 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(badsum, 0);
}

static void test_softmax_forward(void)
{
    struct rng r;
    rng_seed(&r, 7, 0);
    for (size_t b = 0; b < N_SIZES; b++)
        for (size_t c = 0; c < N_SIZES; c++)
            for (int t = 1; t <= 2; t++)
                for (int ip = 0; ip < 2; ip++) {
                    const size_t batch = sizes[b], n = sizes[c], total = batch * n;
                    float *Z = falloc(total), *A = falloc(total);
                    fill_uniform(Z, total, &r, -10.0, 10.0);
                    if (ip)
                        memcpy(A, Z, total * sizeof(float));
                    threads_begin(t);
                    kernel_activation_forward(A, ip ? A : Z, DMLP_ACT_SOFTMAX, batch, n);
                    threads_end();
                    softmax_check(Z, A, batch, n);
                    free(Z), free(A);
                }
}

/* Large logits: e^1000 overflows float and double, so only a max-subtracted softmax gives
 * finite numbers. Checked against the closed form, not only against the reference. */
static void test_softmax_big_logits(void)
{
    /* The maximum sits first, last and in the middle, so a kernel that does not find the
     * row maximum overflows somewhere. */
    const float Z[5 * 3] = {1000.0f,  999.0f,   998.0f,    /* shifted [0, -1, -2] */
                            -1000.0f, -1000.0f, -1000.0f,  /* uniform */
                            -1000.0f, 0.0f,     1000.0f,   /* one-hot in float */
                            88.0f,    89.0f,    90.0f,     /* e^90 overflows float */
                            999.0f,   1000.0f,  998.0f};   /* max in the middle */
    float A[5 * 3];
    kernel_activation_forward(A, Z, DMLP_ACT_SOFTMAX, 5, 3);
    softmax_check(Z, A, 5, 3);
    const double e1 = exp(-1.0), e2 = exp(-2.0), den = 1.0 + e1 + e2;
    const double expect[15] = {1.0 / den, e1 / den, e2 / den, 1.0 / 3,  1.0 / 3,
                               1.0 / 3,   0.0,      0.0,      1.0,      e2 / den,
                               e1 / den,  1.0 / den, e1 / den, 1.0 / den, e2 / den};
    for (size_t i = 0; i < 15; i++)
        CU_ASSERT(fabs(A[i] - expect[i]) <= 1e-6);
    /* The n = 1 softmax is exactly 1 whatever the logit. */
    const float z1[3] = {1000.0f, -1000.0f, 0.0f};
    float a1[3];
    kernel_activation_forward(a1, z1, DMLP_ACT_SOFTMAX, 3, 1);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(a1[i], 1.0f);
}

static void activation_backward_case(struct rng *r, enum dmlp_activation act, size_t batch,
                                     size_t n, int threads)
{
    const size_t total = batch * n;
    float *Z = falloc(total), *A = falloc(total), *G = falloc(total), *G0 = falloc(total);
    fill_preact(Z, total, r);
    /* A = f(Z) correctly rounded from double, as the contract says A = f(Z). */
    for (size_t i = 0; i < total; i++)
        A[i] = (float)tu_act_ref(act, Z[i]);
    fill_uniform(G0, total, r, -2.0, 2.0);
    memcpy(G, G0, total * sizeof(float));
    threads_begin(threads);
    kernel_activation_backward(G, A, act, batch, n);
    threads_end();
    /* g·f'(z) from the float a: at most three float roundings (1 − a, the product(s)),
     * so 4 ulp relative with a tiny absolute floor. */
    size_t bad = 0;
    for (size_t i = 0; i < total; i++) {
        const double ref = (double)G0[i] * act_deriv_ref(act, Z[i], A[i]);
        if (!(fabs(G[i] - ref) <= 4.0 * U32 * fabs(ref) + 1e-37)) {
            if (bad < 3)
                fprintf(stderr, "\n  act %d g=%.9g z=%.9g: got %.9g, expected %.9g", (int)act,
                        G0[i], Z[i], G[i], ref);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(Z), free(A), free(G), free(G0);
}

static void test_activation_backward(void)
{
    struct rng r;
    rng_seed(&r, 8, 0);
    for (size_t a = 0; a < N_ELEMENTWISE; a++)
        for (size_t b = 0; b < N_SIZES; b++)
            for (size_t c = 0; c < N_SIZES; c++)
                for (int t = 1; t <= 2; t++)
                    activation_backward_case(&r, elementwise_acts[a], sizes[b], sizes[c], t);
}

/* ---- losses --------------------------------------------------------------------------- */

static void test_softmax_xent(void)
{
    struct rng r;
    rng_seed(&r, 9, 0);
    for (size_t b = 0; b < N_SIZES; b++)
        for (size_t c = 0; c < N_SIZES; c++) {
            const size_t batch = sizes[b], k = sizes[c], total = batch * k;
            float *Z = falloc(total), *P = falloc(total), *G = falloc(total);
            int32_t *labels = malloc(batch * sizeof *labels);
            CU_ASSERT_PTR_NOT_NULL_FATAL(labels);
            fill_uniform(Z, total, &r, -6.0, 6.0);
            for (size_t i = 0; i < batch; i++)
                labels[i] = (int32_t)rng_below(&r, k);
            kernel_activation_forward(P, Z, DMLP_ACT_SOFTMAX, batch, k);
            fill_value(G, total, NAN);
            const double loss = kernel_softmax_xent(G, P, labels, batch, k);
            /* ∂ℓ/∂z = p − onehot: p − 1 rounds once (error <= u), p itself is exact. */
            double ref_loss = 0.0;
            size_t bad = 0;
            for (size_t i = 0; i < batch; i++) {
                for (size_t j = 0; j < k; j++) {
                    const double ref = (double)P[i * k + j] - (j == (size_t)labels[i]);
                    bad += !(fabs(G[i * k + j] - ref) <= U32);
                }
                ref_loss -= log((double)P[i * k + labels[i]]);
            }
            CU_ASSERT_EQUAL(bad, 0);
            /* Both sums are in double over the same float p: only summation noise. */
            CU_ASSERT(fabs(loss - ref_loss) <= 1e-12 * fmax(1.0, fabs(ref_loss)));
            /* And against the loss from the logits, ℓ = logsumexp(z) − z_label, in double:
             * −log p moves by p's relative error, which is at most about
             * (|z − max| / 2 + n + 4)·u <= 140·u ~ 8.3e-6 here: allow 2e-5 per sample. */
            double direct = 0.0;
            for (size_t i = 0; i < batch; i++) {
                const float *z = Z + i * k;
                double mx = z[0], s = 0.0;
                for (size_t j = 1; j < k; j++)
                    mx = fmax(mx, z[j]);
                for (size_t j = 0; j < k; j++)
                    s += exp(z[j] - mx);
                direct += mx + log(s) - z[labels[i]];
            }
            CU_ASSERT(fabs(loss - direct) <= 2e-5 * (double)batch);
            free(Z), free(P), free(G), free(labels);
        }
}

/* p_label = 0 (a confidently wrong softmax) gives the clamped, finite loss −log FLT_MIN. */
static void test_softmax_xent_clamp(void)
{
    const float P[2 * 3] = {1.0f, 0.0f, 0.0f, 0.25f, 0.25f, 0.5f};
    const int32_t labels[2] = {2, 2};
    float G[6];
    const double loss = kernel_softmax_xent(G, P, labels, 2, 3);
    CU_ASSERT(isfinite(loss));
    CU_ASSERT(fabs(loss - (-log((double)FLT_MIN) - log(0.5))) <= 1e-12);
    const float expect[6] = {1.0f, 0.0f, -1.0f, 0.25f, 0.25f, -0.5f};
    CU_ASSERT_EQUAL(memcmp(G, expect, sizeof G), 0);
}

static void test_mse(void)
{
    struct rng r;
    rng_seed(&r, 10, 0);
    for (size_t b = 0; b < N_SIZES; b++)
        for (size_t c = 0; c < N_SIZES; c++) {
            const size_t batch = sizes[b], k = sizes[c], total = batch * k;
            float *Y = falloc(total), *T = falloc(total), *G = falloc(total);
            fill_uniform(Y, total, &r, -2.0, 2.0);
            fill_uniform(T, total, &r, -2.0, 2.0);
            fill_value(G, total, NAN);
            const double loss = kernel_mse(G, Y, T, batch, k);
            /* ℓ = Σ (y − t)², ∂ℓ/∂y = 2(y − t). The float difference rounds once (u) and
             * doubling is exact, so G is within u relative; each squared term is then
             * within ~2u relative, so the loss within 4u relative (all terms >= 0). */
            double ref_loss = 0.0;
            size_t bad = 0;
            for (size_t i = 0; i < total; i++) {
                const double d = (double)Y[i] - (double)T[i];
                bad += !(fabs(G[i] - 2.0 * d) <= 2.0 * U32 * fabs(d) + 1e-37);
                ref_loss += d * d;
            }
            CU_ASSERT_EQUAL(bad, 0);
            CU_ASSERT(fabs(loss - ref_loss) <= 4.0 * U32 * ref_loss + 1e-30);
            free(Y), free(T), free(G);
        }
    /* A closed-form case: y − t = (1, −2 | 0.5, 0) gives ℓ = 5 + 0.25 and G = 2(y − t). */
    const float Y[4] = {1.0f, -1.0f, 0.75f, 3.0f}, T[4] = {0.0f, 1.0f, 0.25f, 3.0f};
    const float expect[4] = {2.0f, -4.0f, 1.0f, 0.0f};
    float G[4];
    CU_ASSERT_EQUAL(kernel_mse(G, Y, T, 2, 2), 5.25);
    CU_ASSERT_EQUAL(memcmp(G, expect, sizeof G), 0);
}

/* ---- kernel_count_correct ------------------------------------------------------------- */

static void test_count_correct(void)
{
    struct rng r;
    rng_seed(&r, 11, 0);
    for (size_t b = 0; b < N_SIZES; b++)
        for (size_t c = 0; c < N_SIZES; c++) {
            const size_t batch = sizes[b], k = sizes[c];
            float *Y = falloc(batch * k);
            int32_t *labels = malloc(batch * sizeof *labels);
            CU_ASSERT_PTR_NOT_NULL_FATAL(labels);
            fill_uniform(Y, batch * k, &r, 0.0, 1.0);
            size_t expect = 0;
            for (size_t i = 0; i < batch; i++) {
                size_t best = 0; /* first maximum wins */
                for (size_t j = 1; j < k; j++)
                    if (Y[i * k + j] > Y[i * k + best])
                        best = j;
                /* About half the rows labelled with their argmax, the rest at random. */
                labels[i] = rng_below(&r, 2) ? (int32_t)best : (int32_t)rng_below(&r, k);
                expect += (size_t)labels[i] == best;
            }
            CU_ASSERT_EQUAL(kernel_count_correct(Y, labels, batch, k), expect);
            free(Y), free(labels);
        }
    /* Ties: the first maximum is the prediction. Rows: [1 3 3] label 1 (correct),
     * [1 3 3] label 2 (wrong), [5 5 5] label 0 (correct), [-1 -2 -0.5] label 2 (correct),
     * [0 0 1] label 0 (wrong). */
    const float Y[5 * 3] = {1, 3, 3, 1, 3, 3, 5, 5, 5, -1, -2, -0.5f, 0, 0, 1};
    const int32_t labels[5] = {1, 2, 0, 2, 0};
    CU_ASSERT_EQUAL(kernel_count_correct(Y, labels, 5, 3), 3);
    CU_ASSERT_EQUAL(kernel_count_correct(Y, labels, 0, 3), 0);
}

/* ---- the loop builds (vec.h) ------------------------------------------------------------ */

/* The builds of the loops outside the GEMM this CPU runs, through the backend that selects
 * each: the elementwise tests above run once per build. */
static const char *const loop_builds[] = {"avx512", "avx2", "generic"};

#define FOR_EACH_LOOP_BUILD(body)                                                              \
    do {                                                                                       \
        const char *was = kernel_backend();                                                    \
        for (size_t lb = 0; lb < sizeof loop_builds / sizeof loop_builds[0]; lb++) {           \
            if (kernel_set_backend(loop_builds[lb]))                                           \
                continue;                                                                      \
            CU_ASSERT_STRING_EQUAL(kernel_vec()->isa, loop_builds[lb]);                        \
            body;                                                                              \
        }                                                                                      \
        kernel_set_backend(was);                                                               \
    } while (0)

#define PER_LOOP_BUILD(fn)                                                                     \
    static void fn##_each(void) { FOR_EACH_LOOP_BUILD(fn()); }
PER_LOOP_BUILD(test_activation_forward)
PER_LOOP_BUILD(test_softmax_forward)
PER_LOOP_BUILD(test_softmax_big_logits)
PER_LOOP_BUILD(test_activation_backward)
PER_LOOP_BUILD(test_softmax_xent)
PER_LOOP_BUILD(test_softmax_xent_clamp)
PER_LOOP_BUILD(test_mse)
PER_LOOP_BUILD(test_count_correct)

/* Compares one output of a loop build with the portable build's, bit for bit. */
static size_t differ(const char *isa, const char *what, const void *got, const void *want,
                     size_t bytes)
{
    if (!memcmp(got, want, bytes))
        return 0;
    fprintf(stderr, "\n  %s %s differs from generic", isa, what);
    return 1;
}

/* Every loop of every build this CPU runs against the portable build (vec_generic): the
 * same bits, as vec.h promises, on odd lengths that leave vector tails, with values that
 * exercise each branch (negative, zero, near ±1 for tanh's derivative, beyond the fixed
 * point's limit, NaN and infinity). A build that fused a multiply-add the source does not
 * write as fmaf, or that summed in another order, fails here. */
static void vec_compare(const struct vec_ops *v, size_t n)
{
    const struct vec_ops *g = &vec_generic;
    struct rng r;
    rng_seed(&r, 20 + n, 0);
    enum { K = 10 };
    const size_t rows = n, total = rows * K, N = total;
    float *x = falloc(N), *y = falloc(N), *a = falloc(N), *b = falloc(N), *c = falloc(N);
    float *p[2], *m[2], *s[2];
    for (int i = 0; i < 2; i++)
        p[i] = falloc(N), m[i] = falloc(N), s[i] = falloc(N);
    int32_t *labels = malloc(rows * sizeof *labels);
    CU_ASSERT_PTR_NOT_NULL_FATAL(labels);
    fill_uniform(x, N, &r, -3.0, 3.0);
    fill_uniform(y, N, &r, -1.0, 1.0);
    for (size_t i = 0; i < N; i += 5)
        y[i] = i % 2 ? 0.99999f : -0.9999f; /* tanh derivative near |f| = 1 */
    for (size_t i = 0; i < rows; i++)
        labels[i] = (int32_t)rng_below(&r, K);
    size_t bad = 0;
    const char *isa = v->isa;

    for (size_t ai = 0; ai < N_ELEMENTWISE + 1; ai++) {
        const enum dmlp_activation act = ai < N_ELEMENTWISE ? elementwise_acts[ai]
                                                            : DMLP_ACT_SOFTMAX;
        v->act_forward(a, x, act, rows, K);
        g->act_forward(b, x, act, rows, K);
        bad += differ(isa, "act_forward", a, b, N * sizeof(float));
        if (act == DMLP_ACT_SOFTMAX)
            continue;
        memcpy(a, x, N * sizeof(float));
        memcpy(b, x, N * sizeof(float));
        v->act_backward(a, y, act, rows, K);
        g->act_backward(b, y, act, rows, K);
        bad += differ(isa, "act_backward", a, b, N * sizeof(float));
        for (int mode = GEMM_EPI_ACT; mode <= GEMM_EPI_DACT; mode++) {
            const struct gemm_epilogue e = {.mode = (enum gemm_epi_mode)mode, .act = act,
                                            .D = y, .ldd = K};
            memcpy(a, x, N * sizeof(float));
            memcpy(b, x, N * sizeof(float));
            v->epilogue(a, K, rows, 1, K, &e);
            g->epilogue(b, K, rows, 1, K, &e);
            bad += differ(isa, "epilogue", a, b, N * sizeof(float));
        }
    }
    g->act_forward(c, x, DMLP_ACT_SOFTMAX, rows, K);
    const double lx_v = v->softmax_xent(a, c, labels, rows, K);
    const double lx_g = g->softmax_xent(b, c, labels, rows, K);
    bad += differ(isa, "softmax_xent", a, b, N * sizeof(float));
    bad += differ(isa, "softmax_xent loss", &lx_v, &lx_g, sizeof lx_v);
    const double lm_v = v->mse(a, x, y, rows, K), lm_g = g->mse(b, x, y, rows, K);
    bad += differ(isa, "mse", a, b, N * sizeof(float));
    bad += differ(isa, "mse loss", &lm_v, &lm_g, sizeof lm_v);
    bad += v->count_correct(x, labels, rows, K) != g->count_correct(x, labels, rows, K);
    v->bias_grad(a, x, rows, K);
    g->bias_grad(b, x, rows, K);
    bad += differ(isa, "bias_grad", a, b, K * sizeof(float));

    /* Optimizers: three steps of each variant from the same state. */
    const struct vec_adam adams_guard[2] = {
        {0.01f, -0.001f, 0.5f, 1e-8f, 0.999f, 0.001f, 0.1f, 0.01f, 1.0f, 1, 0},
        {0.01f, -0.001f, 0.5f, 1e-8f, 0.999f, 0.001f, -0.9f, 0.0f, 0.999f, 0, 1}};
    const struct vec_sgd sgds[3] = {{0.01f, 0.1f, 0.0f, 0.001f, 0},
                                    {0.01f, 0.1f, 0.9f, 0.001f, 0},
                                    {0.01f, 0.1f, 0.9f, 0.0f, 1}};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 2; i++) {
            memcpy(p[i], x, N * sizeof(float));
            fill_value(m[i], N, 0.0f);
        }
        for (int step = 0; step < 3; step++) {
            CU_ASSERT_EQUAL(v->sgd(p[0], sgds[k].mu != 0.0f ? m[0] : NULL, y, N, &sgds[k]), 0);
            CU_ASSERT_EQUAL(g->sgd(p[1], sgds[k].mu != 0.0f ? m[1] : NULL, y, N, &sgds[k]), 0);
        }
        bad += differ(isa, "sgd", p[0], p[1], N * sizeof(float));
        bad += differ(isa, "sgd momentum", m[0], m[1], N * sizeof(float));
    }
    /* The update is the step's divergence guard: a NaN or an infinite gradient anywhere
     * (here at the start and in the tail) leaves a non-finite parameter and returns 1,
     * at a learning rate of 0 and a scale of 0 too (0·∞ is NaN); so does an update that
     * overflows from finite values. */
    const float poison[2] = {NAN, INFINITY};
    const struct vec_sgd zero_rate = {0.01f, 0.0f, 0.9f, 0.0f, 1};
    const struct vec_sgd zero_scale = {0.0f, 0.1f, 0.0f, 0.0f, 0};
    for (int q = 0; q < 2; q++)
        for (size_t at = 0; at < N; at += N - 1) {
            memcpy(c, y, N * sizeof(float));
            c[at] = poison[q];
            for (int k = 0; k < 5; k++) {
                const struct vec_sgd *cfg = k < 3 ? &sgds[k] : k == 3 ? &zero_rate : &zero_scale;
                memcpy(p[0], x, N * sizeof(float));
                fill_value(m[0], N, 0.0f);
                CU_ASSERT_EQUAL(v->sgd(p[0], cfg->mu != 0.0f ? m[0] : NULL, c, N, cfg), 1);
                CU_ASSERT(!isfinite(p[0][at]));
            }
            for (int k = 0; k < 2; k++) {
                memcpy(p[0], x, N * sizeof(float));
                fill_value(m[0], N, 0.0f);
                fill_value(s[0], N, 0.0f);
                CU_ASSERT_EQUAL(v->adam(p[0], m[0], s[0], c, N, &adams_guard[k]), 1);
                CU_ASSERT(!isfinite(p[0][at]));
            }
        }
    const struct vec_sgd huge = {1.0f, 3.0e38f, 0.0f, 0.0f, 0};
    memcpy(p[0], x, N * sizeof(float));
    fill_value(c, N, 0.0f);
    c[N / 2] = 10.0f;
    CU_ASSERT_EQUAL(v->sgd(p[0], NULL, c, N, &huge), 1);
    CU_ASSERT(isinf(p[0][N / 2]));
    const struct vec_adam *adams = adams_guard;
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 2; i++) {
            memcpy(p[i], x, N * sizeof(float));
            fill_value(m[i], N, 0.0f);
            fill_value(s[i], N, 0.0f);
        }
        for (int step = 0; step < 3; step++) {
            CU_ASSERT_EQUAL(v->adam(p[0], m[0], s[0], y, N, &adams[k]), 0);
            CU_ASSERT_EQUAL(g->adam(p[1], m[1], s[1], y, N, &adams[k]), 0);
        }
        bad += differ(isa, "adam", p[0], p[1], N * sizeof(float));
        bad += differ(isa, "adam exp_avg", m[0], m[1], N * sizeof(float));
        bad += differ(isa, "adam exp_avg_sq", s[0], s[1], N * sizeof(float));
    }
    memcpy(a, x, N * sizeof(float));
    memcpy(b, x, N * sizeof(float));
    v->scale(a, N, 0.3f);
    g->scale(b, N, 0.3f);
    bad += differ(isa, "scale", a, b, N * sizeof(float));
    /* The divergence guard: all finite, then an infinity or a NaN at the end (a tail). */
    memcpy(a, x, N * sizeof(float));
    CU_ASSERT_EQUAL(v->nonfinite(a, N), 0);
    a[N - 1] = INFINITY;
    CU_ASSERT_EQUAL(v->nonfinite(a, N), 1);
    a[N - 1] = NAN;
    CU_ASSERT_EQUAL(v->nonfinite(a, N), 1);
    CU_ASSERT_EQUAL(g->nonfinite(a, N), 1);
    memcpy(a, x, N * sizeof(float));
    memcpy(b, x, N * sizeof(float));
    v->add(a, y, N);
    g->add(b, y, N);
    bad += differ(isa, "add", a, b, N * sizeof(float));

    /* Fixed point: in range, then with one value beyond the limit and one NaN. */
    uint64_t *acc[2] = {malloc(N * sizeof(uint64_t)), malloc(N * sizeof(uint64_t))};
    CU_ASSERT_FATAL(acc[0] && acc[1]);
    for (int round = 0; round < 3; round++) {
        memset(acc[0], 0, N * sizeof(uint64_t));
        memset(acc[1], 0, N * sizeof(uint64_t));
        memcpy(a, x, N * sizeof(float));
        if (round == 1)
            a[N / 2] = 1e30f;
        if (round == 2)
            a[N - 1] = NAN;
        const double sc = ldexp(1.0, 40), limit = ldexp(1.0, 60);
        const unsigned fv = v->fx_add(acc[0], a, N, sc, limit);
        const unsigned fg = g->fx_add(acc[1], a, N, sc, limit);
        CU_ASSERT_EQUAL(fv, fg);
        CU_ASSERT_EQUAL(fg, round == 0   ? 0u
                            : round == 1 ? (unsigned)VEC_FX_OVERFLOW
                                         : (unsigned)VEC_FX_NONFINITE);
        bad += differ(isa, "fx_add", acc[0], acc[1], N * sizeof(uint64_t));
    }
    const float mv = v->fx_load(a, acc[1], N, ldexp(1.0, -40));
    const float mg = g->fx_load(b, acc[1], N, ldexp(1.0, -40));
    bad += differ(isa, "fx_load", a, b, N * sizeof(float));
    bad += differ(isa, "fx_load max", &mv, &mg, sizeof mv);

    double sum[2][K] = {{0}}, sumsq[2][K] = {{0}};
    v->feature_sums(sum[0], sumsq[0], x, rows, K);
    g->feature_sums(sum[1], sumsq[1], x, rows, K);
    bad += differ(isa, "feature_sums", sum[0], sum[1], sizeof sum[0]);
    bad += differ(isa, "feature_sums sq", sumsq[0], sumsq[1], sizeof sumsq[0]);
    float mean[K], sd[K];
    for (size_t j = 0; j < K; j++)
        mean[j] = (float)j * 0.1f - 0.3f, sd[j] = 0.5f + (float)j;
    memcpy(a, x, N * sizeof(float));
    memcpy(b, x, N * sizeof(float));
    v->standardize(a, rows, K, mean, sd);
    g->standardize(b, rows, K, mean, sd);
    bad += differ(isa, "standardize", a, b, N * sizeof(float));
    /* The inverse: a multiply rounded, then an add rounded, in every build (volatile keeps
     * the reference from being fused into one multiply-add). */
    v->unstandardize(a, rows, K, mean, sd);
    g->unstandardize(b, rows, K, mean, sd);
    bad += differ(isa, "unstandardize", a, b, N * sizeof(float));
    for (size_t i = 0; i < N; i++) {
        volatile float prod = b[i] * sd[i % K];
        c[i] = prod + mean[i % K];
    }
    memcpy(a, b, N * sizeof(float));
    v->unstandardize(a, rows, K, mean, sd);
    bad += differ(isa, "unstandardize vs naive", a, c, N * sizeof(float));

    CU_ASSERT_EQUAL(bad, 0);
    free(x), free(y), free(a), free(b), free(c), free(labels), free(acc[0]), free(acc[1]);
    for (int i = 0; i < 2; i++)
        free(p[i]), free(m[i]), free(s[i]);
}

static void test_vec_builds_agree(void)
{
    int compared = 0;
    FOR_EACH_LOOP_BUILD({
        if (kernel_vec() != &vec_generic) {
            compared++;
            for (int t = 1; t <= 2; t++) {
                threads_begin(t);
                vec_compare(kernel_vec(), 1);
                vec_compare(kernel_vec(), 7);
                vec_compare(kernel_vec(), 333);
                threads_end();
            }
        }
    });
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CU_ASSERT(compared >= 1); /* the test compared something */
#endif
    printf("\n    %d build(s) compared with generic", compared);
}

/* ---- registration --------------------------------------------------------------------- */

static CU_TestInfo kernel_tests[] = {
    {"backends: choice and refusal", test_backends},
    {"gemm vs naive, acc 0/1, padded ld, 1 vs 2 threads, every backend", test_gemm},
    {"gemm with k = 0", test_gemm_k0},
    {"wide16 (the avx512 code on AVX2) matches avx2 bit for bit", test_wide16_matches_avx2},
    {"linear_forward + fused bias and activation vs naive", test_linear_forward},
    {"linear_forward_t (few rows, transposed weights) = the GEMM path, bit for bit",
     test_linear_forward_t},
    {"linear_backward_params vs naive", test_linear_backward_params},
    {"linear_backward_params, empty batch", test_linear_backward_params_empty},
    {"linear_backward_input + fused derivative vs naive", test_linear_backward_input},
    {"activation_forward, elementwise", test_activation_forward_each},
    {"activation_forward, softmax", test_softmax_forward_each},
    {"softmax with large logits", test_softmax_big_logits_each},
    {"activation_backward", test_activation_backward_each},
    {"softmax_xent gradient and loss", test_softmax_xent_each},
    {"softmax_xent clamps p = 0", test_softmax_xent_clamp_each},
    {"mse gradient and loss", test_mse_each},
    {"count_correct", test_count_correct_each},
    {"every loop build matches generic bit for bit", test_vec_builds_agree},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"kernels", NULL, NULL, NULL, NULL, kernel_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    /* Every product and pass crosses threads, however small, so the 1-versus-2-thread
     * comparisons reach every tile edge (training keeps small ones on one thread). */
    gemm_fork_macs = vec_fork_elems = 0;
    return tu_run(suites);
}
