/* kernels: the batched numerics of a dense layer (docs/architecture.md, "The math") on float32
 * row-major arrays. OpenMP-parallel over output rows or columns only, never over a summed
 * dimension, and the work split is a fixed tiling independent of the thread count: every output
 * element is computed by the same instructions in the same order whatever OMP_NUM_THREADS is,
 * so results are bit-identical across thread counts (for a given backend, below). No
 * allocation, no MPI, no I/O: callers pass the scratch. Signatures: outputs first, then inputs,
 * sizes last. */
#ifndef DMLP_KERNELS_H
#define DMLP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"

/* The matrix-product backend: one of avx512, avx2, generic (and openblas when built with
 * -DDMLP_BLAS=openblas). The default is the fastest this CPU runs; DMLP_KERNEL=name (or
 * auto) in the environment overrides it. kernel_init applies DMLP_KERNEL and returns -1
 * with *bad = its value when this CPU cannot run it (dmlp reports that and exits). */
int kernel_init(const char **bad);
int kernel_set_backend(const char *name); /* -1: unknown here or not runnable on this CPU */
int kernel_backend_available(const char *name);
const char *kernel_backend(void);             /* the name in use */
const char *kernel_backend_description(void); /* its tiles and instruction set */
const char *kernel_backend_list(void);        /* those this CPU runs: "avx2 | generic" */

/* Floats of scratch (ws below) that the three products of a layer need for a batch. */
size_t kernel_workspace_floats(size_t batch, size_t in, size_t out);

/* C[m×n] (+)= A[m×k] · B[k×n]; leading dimensions lda, ldb, ldc (row-major).
 * accumulate = 0 overwrites C. The sum over k runs in increasing k for every element.
 * ws: kernel_workspace_floats(m, k, 0) floats at least. */
void kernel_gemm(float *restrict C, const float *restrict A, const float *restrict B,
                 size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc,
                 int accumulate, float *restrict ws);

/* Inference on a few rows (include/dmlp/infer.h): kernel_linear_forward with the weights
 * given transposed, Wt [in × ldw] (Wt[p·ldw + j] = W[j·in + p]), and b [ldw], both
 * zero-padded to ldw = a multiple of KERNEL_GEMV_PAD; on the calling thread, no scratch,
 * and the same bits as kernel_linear_forward. Returns -1 (and does nothing) when the
 * backend in use has no such path (openblas): call kernel_linear_forward then. */
enum { KERNEL_GEMV_PAD = 64 };

/* alone = 1: this thread's kernel calls run on it alone, starting no OpenMP team, until
 * alone = 0 (the same bits either way). Returns the previous setting, to restore. */
int kernel_run_alone(int alone);
int kernel_linear_forward_t(float *restrict A, const float *restrict X,
                            const float *restrict Wt, size_t ldw, const float *restrict b,
                            enum dmlp_activation act, size_t batch, size_t in, size_t out);

/* A[B×out] = f(X[B×in] · Wᵀ + 1·bᵀ), with W [out×in] (nn.Linear layout): bias and relu /
 * leaky_relu are applied in the product's store, the other activations by a pass over A. */
void kernel_linear_forward(float *restrict A, float *restrict ws, const float *restrict X,
                           const float *restrict W, const float *restrict b,
                           enum dmlp_activation act, size_t batch, size_t in, size_t out);

/* dW[out×in] = Gᵀ · X  and  db[out] = column sums of G, for G [B×out], X [B×in]
 * (overwrite, not accumulate). Summed over the batch in sample order. */
void kernel_linear_backward_params(float *restrict dW, float *restrict db, float *restrict ws,
                                   const float *restrict G, const float *restrict X,
                                   size_t batch, size_t in, size_t out);

/* The two halves of the above: rows r0 .. r1 of dW (with r0 a multiple of
 * KERNEL_ROW_TILE, each element is computed exactly as by the whole call), and db. */
void kernel_linear_backward_params_rows(float *restrict dW, float *restrict ws,
                                        const float *restrict G, const float *restrict X,
                                        size_t batch, size_t in, size_t out, size_t r0,
                                        size_t r1);
void kernel_bias_grad(float *restrict db, const float *restrict G, size_t batch, size_t out);

/* A multiple of every GEMM backend's row tile (8 rows in the avx512 build, 6 in the
 * others): row chunks of the weight gradient cut at it are whole tiles in every build. */
enum { KERNEL_ROW_TILE = 24 };

/* dX[B×in] = (G[B×out] · W[out×in]) ⊙ f'(·), where D [B×in] = f(Z) holds the previous
 * layer's activations and act its f (fused into the product's store); D = NULL: no f'. */
void kernel_linear_backward_input(float *restrict dX, float *restrict ws,
                                  const float *restrict G, const float *restrict W,
                                  const float *restrict D, enum dmlp_activation act,
                                  size_t batch, size_t in, size_t out);

/* A = f(Z) elementwise over B rows of n (softmax: per row, max-subtracted). A may equal Z. */
void kernel_activation_forward(float *A, const float *Z, enum dmlp_activation act,
                               size_t batch, size_t n);

/* G *= f'(Z) elementwise, written through A = f(Z); not for softmax (fused with
 * cross-entropy). */
void kernel_activation_backward(float *restrict G, const float *restrict A,
                                enum dmlp_activation act, size_t batch, size_t n);

/* Softmax + cross-entropy, fused: given P = softmax(Z) [B×k] and labels, writes
 * G = P − onehot(label) (per-sample gradient w.r.t. Z) and returns Σ_samples −log p_label
 * (in double; p clamped below at FLT_MIN so the loss stays finite). */
double kernel_softmax_xent(float *restrict G, const float *restrict P,
                           const int32_t *restrict labels, size_t batch, size_t k);

/* Squared error ℓ = Σ_k (y−t)²: writes G = 2(Y − T) (∂ℓ/∂Y) and returns Σ_samples ℓ. */
double kernel_mse(float *restrict G, const float *restrict Y, const float *restrict T,
                  size_t batch, size_t k);

/* Number of rows whose argmax of Y [B×k] equals the label (first max wins). */
size_t kernel_count_correct(const float *restrict Y, const int32_t *restrict labels,
                            size_t batch, size_t k);

#endif
