/* bench_infer: the inference interface (include/dmlp/infer.h) on the demo network
 * (784-256-128-10, relu, softmax, standardised inputs), the in-situ case: the time of one
 * dmlp_net_predict call for 1, 8 and 64 rows (median of many calls), and rows per second
 * for 10,000 rows, at OMP_NUM_THREADS. It writes the network it times (random weights, a
 * dmlp checkpoint) to CKPT, so that bench/infer_compare.py can time numpy and PyTorch on
 * the same weights. Prints a table and one JSON line; asserts nothing.
 *
 *   OMP_NUM_THREADS=1 build/bench/bench_infer /tmp/infer.h5 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmlp/infer.h"

#include "core/rng.h"
#include "core/util.h"
#include "data/checkpoint.h"
#include "nn/model.h"

/* The demo network with He-initialised weights and a standardisation, saved as path. */
static int write_network(const char *path, struct dmlp_error *e)
{
    const struct config_layer layers[] = {
        {256, DMLP_ACT_RELU, 0}, {128, DMLP_ACT_RELU, 0}, {10, DMLP_ACT_SOFTMAX, 0}};
    struct model *m = NULL;
    if (model_create(&m, 784, layers, 3, DMLP_LOSS_CROSS_ENTROPY, e))
        return e->code;
    struct rng r;
    rng_seed(&r, 7, 0);
    model_init_params(m, DMLP_INIT_HE, &r);
    float mean[784], sd[784];
    for (int j = 0; j < 784; j++) {
        mean[j] = 0.3f;
        sd[j] = 0.35f;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : path;
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    struct checkpoint_state st = {.seed = 7, .best_metric = NAN};
    if (!model_set_normalization(m, mean, sd, e))
        checkpoint_save_as(dir, name, m, NULL, &st, "", e);
    model_free(&m);
    return e->code;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of one call for n rows, over enough calls to fill about 0.3 s. */
static double time_call(const dmlp_net *net, size_t n, const float *x, float *y)
{
    enum { SAMPLES = 41 };
    double t[SAMPLES];
    size_t reps = 1;
    for (;;) { /* calls per sample: about 7 ms each */
        const double t0 = dmlp_now();
        for (size_t r = 0; r < reps; r++)
            dmlp_net_predict(net, n, x, y, NULL, 0);
        if (dmlp_now() - t0 > 0.007 || reps > (1u << 20))
            break;
        reps *= 2;
    }
    for (int s = 0; s < SAMPLES; s++) {
        const double t0 = dmlp_now();
        for (size_t r = 0; r < reps; r++)
            dmlp_net_predict(net, n, x, y, NULL, 0);
        t[s] = (dmlp_now() - t0) / (double)reps;
    }
    qsort(t, SAMPLES, sizeof t[0], cmp_double);
    return t[SAMPLES / 2];
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "bench_infer.h5";
    struct dmlp_error e = {0};
    char err[512];
    if (write_network(path, &e)) {
        fprintf(stderr, "bench_infer: %s\n", e.msg);
        return 1;
    }
    dmlp_net *net = dmlp_net_load(path, err, sizeof err);
    if (!net) {
        fprintf(stderr, "bench_infer: %s\n", err);
        return 1;
    }
    enum { BIG = 10000 };
    float *x = malloc((size_t)BIG * 784 * sizeof *x), *y = malloc((size_t)BIG * 10 * sizeof *y);
    struct rng r;
    rng_seed(&r, 3, 0);
    for (size_t i = 0; i < (size_t)BIG * 784; i++)
        x[i] = (float)rng_uniform(&r);
    const size_t rows[] = {1, 8, 64};
    double us[3];
    printf("dmlp_net_predict, demo network 784-256-128-10, %d thread%s\n",
           omp_get_max_threads(), omp_get_max_threads() > 1 ? "s" : "");
    printf("  %-8s %14s %14s\n", "rows", "us per call", "rows/s");
    for (int i = 0; i < 3; i++) {
        us[i] = time_call(net, rows[i], x, y) * 1e6;
        printf("  %-8zu %14.2f %14.0f\n", rows[i], us[i], (double)rows[i] / us[i] * 1e6);
    }
    const double big = time_call(net, BIG, x, y);
    printf("  %-8d %14.0f %14.0f\n", BIG, big * 1e6, BIG / big);
    printf("JSON {\"bench\": \"infer\", \"threads\": %d, \"us_1\": %.3f, \"us_8\": %.3f, "
           "\"us_64\": %.3f, \"rows_per_s_10000\": %.0f}\n",
           omp_get_max_threads(), us[0], us[1], us[2], BIG / big);
    dmlp_net_free(net);
    free(x);
    free(y);
    return 0;
}
