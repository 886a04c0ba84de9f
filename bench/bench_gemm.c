/* bench_gemm: GFLOP/s of the three products of a dense layer (forward X·Wᵀ + bias, weight
 * gradient Gᵀ·X, input gradient G·W) on the demo network's shapes and on wide layers,
 * for every GEMM backend this CPU runs and, when built with -DDMLP_BLAS=openblas, for
 * OpenBLAS's own multithreaded cblas_sgemm on the whole product (the ceiling to beat).
 * Threads: OMP_NUM_THREADS (OpenBLAS gets the same count). Prints a table and a JSON line;
 * asserts nothing.
 *   build/bench/bench_gemm [batch] [--shape INxOUT] [--backend NAME]   (default batch 128,
 *                                                     every shape and backend) 
 * When measuring OpenBLAS's best kernel, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(DMLP_HAVE_OPENBLAS)
#include <cblas.h>
#endif

#include "nn/kernels.h"
#include "core/rng.h"
#include "core/util.h"

static float *randbuf(size_t n, struct rng *r)
{
    float *p = dmlp_alloc_aligned((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(rng_uniform(r) - 0.5);
    return p;
}

/* Seconds per call of body, one round of at least ROUND_S s, kept in best when faster.
 * Every cell of a shape's row gets ROUNDS rounds, taken in turn over the whole row (all
 * backends, all three products), so that a slow spell of a shared host spoils one round
 * of a cell rather than all of them. */
enum { ROUNDS = 5 };
#define ROUND_S 0.06
#define TIME_ROUND(best, body)                                                                \
    do {                                                                                      \
        int reps = 0;                                                                         \
        double t0 = dmlp_now(), t;                                                            \
        do {                                                                                  \
            body;                                                                             \
            reps++;                                                                           \
        } while ((t = dmlp_now() - t0) < ROUND_S);                                            \
        if (t / reps < (best))                                                                \
            (best) = t / reps;                                                                \
    } while (0)

static const char *const names[] = {"avx512", "avx2", "generic", "openblas"};
enum { N_NAMES = sizeof names / sizeof names[0] };

int main(int argc, char **argv)
{
    size_t batch = 128;
    const char *only_shape = NULL, *only_backend = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            only_shape = argv[++i];
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            only_backend = argv[++i];
        } else if (argv[i][0] >= '1' && argv[i][0] <= '9') {
            batch = (size_t)atol(argv[i]);
        } else {
            printf("usage: bench_gemm [batch] [--shape INxOUT] [--backend NAME]\n"
                   "  OMP_NUM_THREADS threads; default batch 128, every shape below and every\n"
                   "  backend this CPU runs (and sgemm, when built with OpenBLAS)\n");
            return strcmp(argv[i], "-h") && strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    const size_t shapes[][2] = {{784, 256}, {256, 128}, {128, 10}, {1024, 1024},
                                {2048, 2048}, {4096, 1024}, {4096, 4096}};
    enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };
    const int threads = omp_get_max_threads();
    struct rng r;
    rng_seed(&r, 1, 0);
    int known = !only_shape;
    for (size_t s = 0; s < N_SHAPES && !known; s++) {
        char name[32];
        snprintf(name, sizeof name, "%zux%zu", shapes[s][0], shapes[s][1]);
        known = !strcmp(name, only_shape);
    }
    if (!known) {
        fprintf(stderr, "bench_gemm: --shape %s is not one of", only_shape);
        for (size_t s = 0; s < N_SHAPES; s++)
            fprintf(stderr, " %zux%zu", shapes[s][0], shapes[s][1]);
        fprintf(stderr, "\n");
        return 2;
    }
    const char *cols[N_NAMES + 1];
    int ncols = 0;
    for (int b = 0; b < N_NAMES; b++)
        if (kernel_backend_available(names[b]) &&
            (!only_backend || !strcmp(only_backend, names[b])))
            cols[ncols++] = names[b];
#if defined(DMLP_HAVE_OPENBLAS)
    if (!only_backend || !strcmp(only_backend, "sgemm"))
        cols[ncols++] = "sgemm";
#endif
    if (ncols == 0) {
        fprintf(stderr, "bench_gemm: --backend %s does not run here; this CPU and build run:",
                only_backend);
        for (int b = 0; b < N_NAMES; b++)
            if (kernel_backend_available(names[b]))
                fprintf(stderr, " %s", names[b]);
#if defined(DMLP_HAVE_OPENBLAS)
        fprintf(stderr, " sgemm");
#endif
        fprintf(stderr, "\n");
        return 2;
    }
    printf("batch %zu, %d thread(s); GFLOP/s of forward X.W^T / weight grad G^T.X / input "
           "grad G.W\n", batch, threads);
#if defined(DMLP_HAVE_OPENBLAS)
    printf("OpenBLAS %s, core %s (OPENBLAS_CORETYPE=%s)\n", openblas_get_config(),
           openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
#endif
    printf("%-11s", "in x out");
    for (int c = 0; c < ncols; c++)
        printf(" %22s", cols[c]);
    printf("\n");
    char json[8192];
    int jn = snprintf(json, sizeof json, "{\"bench\":\"gemm\",\"batch\":%zu,\"threads\":%d,"
                      "\"gflops\":{", batch, threads);
    for (size_t s = 0; s < N_SHAPES; s++) {
        const size_t in = shapes[s][0], out = shapes[s][1];
        char name[32];
        snprintf(name, sizeof name, "%zux%zu", in, out);
        if (only_shape && strcmp(only_shape, name))
            continue;
        float *X = randbuf(batch * in, &r), *W = randbuf(out * in, &r), *b = randbuf(out, &r);
        float *G = randbuf(batch * out, &r), *Z = randbuf(batch * out, &r);
        float *dW = randbuf(out * in, &r), *db = randbuf(out, &r), *dX = randbuf(batch * in, &r);
        float *ws = randbuf(kernel_workspace_floats(batch, in, out), &r);
        const double flops = 2.0 * (double)batch * (double)in * (double)out;
        printf("%-11s", name);
        jn += snprintf(json + jn, sizeof json - (size_t)jn, "%s\"%s\":{",
                       json[jn - 1] == '{' ? "" : ",", name);
        double best[N_NAMES + 1][3];
        for (int c = 0; c < ncols; c++)
            best[c][0] = best[c][1] = best[c][2] = 1e30;
        for (int round = 0; round < ROUNDS; round++)
            for (int c = 0; c < ncols; c++) {
                double *cell = best[c];
                if (!strcmp(cols[c], "sgemm")) {
#if defined(DMLP_HAVE_OPENBLAS)
                    const int bb = (int)batch, ii = (int)in, oo = (int)out;
                    openblas_set_num_threads(threads);
                    TIME_ROUND(cell[0], cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                                                    bb, oo, ii, 1.0f, X, ii, W, ii, 0.0f, Z,
                                                    oo));
                    TIME_ROUND(cell[1], cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
                                                    oo, ii, bb, 1.0f, G, oo, X, ii, 0.0f, dW,
                                                    ii));
                    TIME_ROUND(cell[2], cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                                                    bb, ii, oo, 1.0f, G, oo, W, ii, 0.0f, dX,
                                                    ii));
                    openblas_set_num_threads(1);
#endif
                } else {
                    kernel_set_backend(cols[c]);
                    TIME_ROUND(cell[0], kernel_linear_forward(Z, ws, X, W, b, DMLP_ACT_LINEAR,
                                                              batch, in, out));
                    TIME_ROUND(cell[1], kernel_linear_backward_params(dW, db, ws, G, X, batch,
                                                                      in, out));
                    TIME_ROUND(cell[2], kernel_linear_backward_input(dX, ws, G, W, NULL,
                                                                     DMLP_ACT_LINEAR, batch,
                                                                     in, out));
                }
            }
        for (int c = 0; c < ncols; c++) {
            const double tf = best[c][0], tw = best[c][1], ti = best[c][2];
            const double g[3] = {flops / tf * 1e-9, flops / tw * 1e-9, flops / ti * 1e-9};
            printf("   %6.1f /%6.1f /%6.1f", g[0], g[1], g[2]);
            jn += snprintf(json + jn, sizeof json - (size_t)jn, "%s\"%s\":[%.1f,%.1f,%.1f]",
                           c ? "," : "", cols[c], g[0], g[1], g[2]);
        }
        printf("\n");
        jn += snprintf(json + jn, sizeof json - (size_t)jn, "}");
        dmlp_free_aligned(X), dmlp_free_aligned(W), dmlp_free_aligned(b);
        dmlp_free_aligned(G), dmlp_free_aligned(Z), dmlp_free_aligned(dW);
        dmlp_free_aligned(db), dmlp_free_aligned(dX), dmlp_free_aligned(ws);
    }
    printf("JSON %s}}\n", json);
    return 0;
}
