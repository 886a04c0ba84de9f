/* Dense-layer kernels. See kernels.h for the contract.
 *
 * The three products of a layer go through one GEMM (gemm.h) with packed operands, so
 * nothing is transposed in memory: forward X·Wᵀ (+ bias, activation fused into the store),
 * weight gradient Gᵀ·X, input gradient G·W (times the previous layer's activation
 * derivative, fused into the store). The GEMM comes in several builds; the fastest one this
 * CPU runs is chosen on first use, or the one named by DMLP_KERNEL. Every build keeps each
 * output element's arithmetic independent of the thread count (see gemm_impl.h). */
#include "nn/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"
#include "nn/vec.h"

/* What a build needs of the CPU. */
enum isa { ISA_ANY, ISA_AVX2_FMA, ISA_AVX512 };

struct backend {
    const char *name, *what;
    gemm_fn *gemm;
    gemm_ws_fn *ws;
    gemv_fn *gemv;  /* the few-row forward product; NULL: none (openblas) */
    int automatic; /* a candidate for the default (dmlp's own kernels) */
    enum isa needs;
    const struct vec_ops *vec; /* the loops outside the GEMM; NULL: the default's */
};

/* Fastest first: the default is the first of dmlp's own builds this CPU runs (wide16 only
 * checks the avx512 build's code). With -DDMLP_BLAS=openblas the OpenBLAS backend is
 * offered but not the default (bench_gemm shows why; README). */
static const struct backend backends[] = {
#if defined(__x86_64__)
    {"avx512", "8x32 tiles of 16-wide vectors (AVX-512)", gemm_avx512, gemm_avx512_ws,
     gemv_avx512, 1, ISA_AVX512, &vec_avx512},
    {"avx2", "6x16 tiles of 8-wide vectors (AVX2 + FMA)", gemm_avx2, gemm_avx2_ws, gemv_avx2,
     1, ISA_AVX2_FMA, &vec_avx2},
#endif
    {"generic", "6x8 tiles of 4-wide vectors (portable)", gemm_generic, gemm_generic_ws,
     gemv_generic, 1, ISA_ANY, &vec_generic},
#if defined(__x86_64__)
    /* The avx512 build's code in AVX2 instructions: for testing it without AVX-512. */
    {"wide16", "the avx512 build's 8x32 tiles, compiled for AVX2 + FMA (for testing)",
     gemm_wide16, gemm_wide16_ws, gemv_wide16, 0, ISA_AVX2_FMA, &vec_avx2},
#endif
#if defined(DMLP_HAVE_OPENBLAS)
    {"openblas", "OpenBLAS sgemm on fixed column blocks, one thread per block", gemm_openblas,
     gemm_openblas_ws, NULL, 0, ISA_ANY, NULL},
#endif
};
enum { N_BACKENDS = sizeof backends / sizeof backends[0] };

static const struct backend *active;
static const struct vec_ops *active_vec;

static int runs_here(const struct backend *b)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    switch (b->needs) {
    case ISA_AVX512: /* what vec_avx512.c is compiled for */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
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

/* The first of dmlp's own builds this CPU runs. */
static const struct backend *fastest(void)
{
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (backends[i].automatic && runs_here(&backends[i]))
            return &backends[i];
    return NULL; /* not reached: generic runs everywhere */
}

static void activate(const struct backend *b)
{
    active = b;
    active_vec = b->vec ? b->vec : fastest()->vec;
}

int kernel_set_backend(const char *name)
{
    const struct backend *b = find(name);
    if (!b || !runs_here(b))
        return -1;
    activate(b);
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
    activate(fastest());
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

/* The loops that go with the backend in use. */
static const struct vec_ops *vec(void)
{
    backend();
    return active_vec;
}

const char *kernel_backend(void) { return backend()->name; }
const struct vec_ops *kernel_vec(void) { return vec(); }
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
    vec()->epilogue(C, ldc, m, j0, j1, e);
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

_Thread_local int gemm_alone;
size_t gemm_fork_macs = (size_t)1 << 20, vec_fork_elems = (size_t)1 << 14;

int kernel_run_alone(int alone)
{
    const int was = gemm_alone;
    gemm_alone = alone;
    return was;
}

int kernel_linear_forward_t(float *restrict A, const float *restrict X,
                            const float *restrict Wt, size_t ldw, const float *restrict b,
                            enum dmlp_activation act, size_t batch, size_t in, size_t out)
{
    const struct backend *be = backend();
    if (!be->gemv)
        return -1;
    const int in_store = act == DMLP_ACT_RELU || act == DMLP_ACT_LEAKY_RELU;
    const struct gemm_epilogue e = {.bias = b, .mode = in_store ? GEMM_EPI_ACT : GEMM_EPI_NONE,
                                    .act = act};
    be->gemv(A, out, X, in, Wt, ldw, batch, out, in, &e);
    if (!in_store)
        kernel_activation_forward(A, A, act, batch, out);
    return 0;
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
    vec()->bias_grad(db, G, batch, out);
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
    vec()->act_forward(A, Z, act, batch, n);
}

void kernel_activation_backward(float *restrict G, const float *restrict A,
                                enum dmlp_activation act, size_t batch, size_t n)
{
    vec()->act_backward(G, A, act, batch, n);
}

double kernel_softmax_xent(float *restrict G, const float *restrict P,
                           const int32_t *restrict labels, size_t batch, size_t k)
{
    return vec()->softmax_xent(G, P, labels, batch, k);
}

double kernel_mse(float *restrict G, const float *restrict Y, const float *restrict T,
                  size_t batch, size_t k)
{
    return vec()->mse(G, Y, T, batch, k);
}

size_t kernel_count_correct(const float *restrict Y, const int32_t *restrict labels,
                            size_t batch, size_t k)
{
    return vec()->count_correct(Y, labels, batch, k);
}
