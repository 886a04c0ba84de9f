/* gemm: the matrix product behind every dense-layer kernel, C = op(A)·op(B) with an
 * optional fused epilogue, in several builds of one implementation (gemm_impl.h): AVX-512,
 * AVX2 + FMA and a portable one (SSE2 on x86-64, whatever the compiler's vectors give
 * elsewhere), plus OpenBLAS when configured with -DDMLP_BLAS=openblas. kernels.c chooses
 * one at run time. Internal to the library: kernels.h is the public face. */
#ifndef DMLP_GEMM_H
#define DMLP_GEMM_H

#include <omp.h>
#include <stddef.h>

#include "core/settings.h"

/* Whether the products and loops may start an OpenMP team: not inside a caller's active
 * parallel region (a program's threads calling the inference interface), not on a
 * thread that asked to run alone (kernel_run_alone: inference on a few rows, where waking
 * a team costs more than the work), and not when the team would be this thread alone.
 * Either way the bits are the same: the work split never decides an element's
 * arithmetic. */
extern _Thread_local int gemm_alone;
static inline int gemm_may_fork(void)
{
    return !gemm_alone && !omp_in_parallel() && omp_get_max_threads() > 1;
}

/* Work below which a team costs more than it saves: a product of fewer multiply-adds than
 * gemm_fork_macs (default 2^20, about 20 µs of one core: the output layer's 128×10 at any
 * batch) or an elementwise pass over fewer than vec_fork_elems values (default 2^14) runs
 * on the calling thread. Tests set both to 0 so that small shapes still cross threads. */
extern size_t gemm_fork_macs, vec_fork_elems;
#define GEMM_FORK_MACS gemm_fork_macs
#define VEC_FORK_ELEMS vec_fork_elems
static inline int gemm_may_fork_for(size_t work, size_t threshold)
{
    return work >= threshold && gemm_may_fork();
}

/* The products split their work themselves rather than through work-sharing loops, so
 * that a product too small for a team runs on the calling thread outside any parallel
 * region: a serialised region (`parallel if (0)`) still costs libgomp about half a
 * microsecond, a sixth of the output layer's whole product, and an orphaned work-sharing
 * loop would bind to a caller's team. team: the call runs inside its own region. The
 * calling thread's share [*lo, *hi) of n items: a contiguous block of a static split. */
static inline void gemm_share(size_t n, int team, size_t *lo, size_t *hi)
{
    const size_t T = team ? (size_t)omp_get_num_threads() : 1;
    const size_t t = team ? (size_t)omp_get_thread_num() : 0;
    const size_t q = n / T, r = n % T;
    *lo = t * q + (t < r ? t : r);
    *hi = *lo + q + (t < r);
}

/* PARALLEL_FOR_IF(fork, clauses, for-loop): the loop on a team, with schedule(static) and
 * the OpenMP clauses given (a reduction, or nothing), when fork holds; otherwise the same
 * loop on the calling thread outside any parallel region. A serialised region
 * (`parallel if (0)`, or a team of one) still costs libgomp about half a microsecond,
 * which the elementwise passes of a small step would pay a dozen times. */
#define DMLP_PRAGMA(x) _Pragma(#x)
#define PARALLEL_FOR_IF(fork, clauses, ...)                                                   \
    do {                                                                                      \
        if (fork) {                                                                           \
            DMLP_PRAGMA(omp parallel for schedule(static) clauses)                            \
            __VA_ARGS__                                                                       \
        } else {                                                                              \
            __VA_ARGS__                                                                       \
        }                                                                                     \
    } while (0)

/* A row-major operand and whether the product uses its transpose:
 * op(A)(i,p) = trans ? p[p·ld + i] : p[i·ld + p]. */
struct gemm_operand {
    const float *p;
    size_t ld;
    int trans;
};

enum gemm_epi_mode {
    GEMM_EPI_NONE, /* C = op(A)·op(B) (+ C, + bias) */
    GEMM_EPI_ACT,  /* then C = f(C) (relu and leaky_relu in registers; see kernels.c) */
    GEMM_EPI_DACT, /* then C = C ⊙ f'(·), f' written through D = f(Z) [m×n], stride ldd */
};

struct gemm_epilogue {
    int accumulate;    /* the sum starts from C instead of 0 */
    const float *bias; /* or from this row [n] (when not accumulating); NULL: none */
    enum gemm_epi_mode mode;
    enum dmlp_activation act;
    const float *D;
    size_t ldd;
};

/* One backend: computes C[m×n] (stride ldc) for k >= 1, with ws of at least
 * ws_floats(m, k) floats of scratch. The sum over k runs in increasing k for every
 * element, and the arithmetic of an element never depends on the thread count. */
typedef void gemm_fn(float *restrict C, size_t ldc, const struct gemm_operand *A,
                     const struct gemm_operand *B, size_t m, size_t n, size_t k,
                     const struct gemm_epilogue *e, float *restrict ws);
typedef size_t gemm_ws_fn(size_t m, size_t k);

/* Applies e's activation or derivative (not bias or accumulate) to columns j0..j1 of an
 * m-row C, one element at a time: for backends without a fused store (kernels.c). */
void gemm_epilogue_apply(float *C, size_t ldc, size_t m, size_t j0, size_t j1,
                         const struct gemm_epilogue *e);

/* The few-row forward product of inference: C[m×n] = epilogue(bias + A[m×k]·Bt), with A
 * row-major (stride lda), Bt [k × ldb] the weights transposed and zero-padded to ldb, a
 * multiple of KERNEL_GEMV_PAD (kernels.h), and bias (if any) padded likewise; epilogue
 * modes NONE and ACT only. Single-threaded, no scratch, and every element carries the bits
 * gemm_fn of the same build gives it (the same start, the same sum order). */
typedef void gemv_fn(float *restrict C, size_t ldc, const float *restrict A, size_t lda,
                     const float *restrict Bt, size_t ldb, size_t m, size_t n, size_t k,
                     const struct gemm_epilogue *e);

gemm_fn gemm_generic, gemm_avx2, gemm_avx512, gemm_wide16, gemm_openblas;
gemv_fn gemv_generic, gemv_avx2, gemv_avx512, gemv_wide16;
gemm_ws_fn gemm_generic_ws, gemm_avx2_ws, gemm_avx512_ws, gemm_wide16_ws, gemm_openblas_ws;

#endif
