/* The OpenBLAS backend (built with -DDMLP_BLAS=openblas): cblas_sgemm on a fixed grid of
 * column blocks, one OpenMP thread per block and OpenBLAS itself single-threaded, so there
 * is one threading runtime and no nested pool, and each element's arithmetic (OpenBLAS's
 * own order) does not depend on how many threads share the blocks. It is offered for
 * comparison (bench_gemm) and as a fallback; see the README for which is faster here. */
#if defined(DMLP_HAVE_OPENBLAS)
#include <omp.h>
#include <cblas.h>

#include "nn/gemm.h"

enum { NB = 64 }; /* columns per block: the grid depends on n only */

size_t gemm_openblas_ws(size_t m, size_t k)
{
    (void)m, (void)k;
    return 0;
}

void gemm_openblas(float *restrict C, size_t ldc, const struct gemm_operand *A,
                   const struct gemm_operand *B, size_t m, size_t n, size_t k,
                   const struct gemm_epilogue *e, float *restrict ws)
{
    (void)ws;
    static int single;
    if (!single) { /* our OpenMP threads take the blocks; OpenBLAS must not add its own */
        openblas_set_num_threads(1);
        single = 1;
    }
    const size_t blocks = (n + NB - 1) / NB;
    PARALLEL_FOR_IF(gemm_may_fork(), ,
        for (size_t t = 0; t < blocks; t++) {
            const size_t j0 = t * NB, nb = n - j0 < NB ? n - j0 : NB;
            float beta = e->accumulate ? 1.0f : 0.0f;
            if (!e->accumulate && e->bias) {
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < nb; j++)
                        C[i * ldc + j0 + j] = e->bias[j0 + j];
                beta = 1.0f;
            }
            const float *b = B->trans ? B->p + j0 * B->ld : B->p + j0;
            cblas_sgemm(CblasRowMajor, A->trans ? CblasTrans : CblasNoTrans,
                        B->trans ? CblasTrans : CblasNoTrans, (int)m, (int)nb, (int)k, 1.0f,
                        A->p, (int)A->ld, b, (int)B->ld, beta, C + j0, (int)ldc);
            gemm_epilogue_apply(C, ldc, m, j0, j0 + nb, e);
        });
}
#endif
