/* Kernel benchmark: GFLOP/s of the three products of a dense layer (forward X·Wᵀ, weight
 * gradient Gᵀ·X, input gradient G·W) on the demo network's shapes and on wide layers, at
 * the thread count OMP_NUM_THREADS gives. Prints figures; asserts nothing.
 *   build/bench/bench_kernels [batch]        (default batch 128) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "rng.h"
#include "util.h"

static float *randbuf(size_t n, struct rng *r)
{
    float *p = dmlp_alloc_aligned(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(rng_uniform(r) - 0.5);
    return p;
}

/* Runs f repeatedly for at least ~0.3 s; returns seconds per call (best of 3 rounds). */
#define TIME_IT(secs, body)                                                                   \
    do {                                                                                      \
        double best = 1e30;                                                                   \
        for (int round = 0; round < 3; round++) {                                             \
            int reps = 0;                                                                     \
            double t0 = dmlp_now(), t;                                                        \
            do {                                                                              \
                body;                                                                         \
                reps++;                                                                       \
            } while ((t = dmlp_now() - t0) < 0.1);                                            \
            if (t / reps < best)                                                              \
                best = t / reps;                                                              \
        }                                                                                     \
        secs = best;                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    const size_t batch = argc > 1 ? (size_t)atol(argv[1]) : 128;
    const size_t shapes[][2] = {{784, 256}, {256, 128}, {128, 10}, {1024, 1024}, {2048, 2048},
                                {4096, 1024}};
    struct rng r;
    rng_seed(&r, 1, 0);
    printf("batch %zu, %d thread(s)\n", batch, omp_get_max_threads());
    printf("%-12s %10s %10s %10s   (GFLOP/s)\n", "in x out", "X.W^T", "G^T.X", "G.W");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t in = shapes[s][0], out = shapes[s][1];
        float *X = randbuf(batch * in, &r), *W = randbuf(out * in, &r), *b = randbuf(out, &r);
        float *G = randbuf(batch * out, &r), *Z = randbuf(batch * out, &r);
        float *dW = randbuf(out * in, &r), *db = randbuf(out, &r), *dX = randbuf(batch * in, &r);
        float *scratch = randbuf((out * in > batch * out ? out * in : batch * out), &r);
        const double flops = 2.0 * (double)batch * (double)in * (double)out;
        double tf, tw, ti;
        TIME_IT(tf, kernel_linear_forward(Z, scratch, X, W, b, batch, in, out));
        TIME_IT(tw, kernel_linear_backward_params(dW, db, scratch, G, X, batch, in, out));
        TIME_IT(ti, kernel_linear_backward_input(dX, G, W, batch, in, out));
        char name[32];
        snprintf(name, sizeof name, "%zux%zu", in, out);
        printf("%-12s %10.1f %10.1f %10.1f\n", name, flops / tf * 1e-9, flops / tw * 1e-9,
               flops / ti * 1e-9);
        dmlp_free_aligned(X); dmlp_free_aligned(W); dmlp_free_aligned(b);
        dmlp_free_aligned(G); dmlp_free_aligned(Z); dmlp_free_aligned(dW);
        dmlp_free_aligned(db); dmlp_free_aligned(dX); dmlp_free_aligned(scratch);
    }
    return 0;
}
