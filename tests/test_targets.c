/* test_targets: data.normalize_targets end to end, through the dmlp binary. A regression
 * with two outputs of scales ~1e4 and ~1e-3 is trained on standardised targets; then the
 * checkpoint's target statistics must be the mean and std of the training targets
 * computed here in double, `dmlp predict` must give values in the original units (each
 * output's mean near the targets', R² > 0.5 for both), `dmlp eval --json`'s per-output MSE
 * must be the MSE of those predictions against the targets, and the inference library
 * must give predict's bits. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dmlp/infer.h"
#include "testutil.h"

#define ROWS 400
#define FEATURES 4
#define K 2

static char dir[4096];

/* ROWS rows: t0 = 1e4·(x0 + 0.5·x1) + 3e4 (scale 1e4), t1 = 1e-3·(x2 − x3) + 2e-3 (scale
 * 1e-3), with x uniform in [0, 1). */
static void write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "x0,x1,x2,x3,t0,t1\n");
    unsigned s = 777;
    for (int i = 0; i < ROWS; i++) {
        double x[FEATURES];
        for (int j = 0; j < FEATURES; j++) {
            s = s * 1103515245u + 12345u;
            x[j] = (double)(s >> 8) / (double)(1u << 24);
            fprintf(f, "%.6f,", x[j]);
        }
        fprintf(f, "%.3f,%.9f\n", 1e4 * (x[0] + 0.5 * x[1]) + 3e4, 1e-3 * (x[2] - x[3]) + 2e-3);
    }
    fclose(f);
}

static const char *const config =
    "model:\n  layers:\n    - {units: 16, activation: tanh}\n"
    "    - {units: 2, activation: linear}\n"
    "loss: mse\noptimizer: {name: adam, lr: 0.01}\n"
    "data: {train: reg.h5, normalize: standard, normalize_targets: true}\n"
    "training: {epochs: 40, batch_size: 32}\n"
    "checkpoint: {dir: run, every_epochs: 0}\n";

static void test_round_trip(void)
{
    write_csv(tu_fmt("%s/reg.csv", dir));
    CU_ASSERT_EQUAL_FATAL(tu_write_file(tu_fmt("%s/reg.yaml", dir), config), 0);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh("cd %s && %s import csv reg.csv --target-columns t0,t1 --output reg.h5 && "
              "%s train reg.yaml --quiet && %s predict --checkpoint run/latest.h5 --input "
              "reg.h5 --output pred.h5", dir, DMLP_BINARY, DMLP_BINARY, DMLP_BINARY), 0);
    size_t nt, np, nm, ns, nx;
    float *t = tu_read_floats(tu_fmt("%s/reg.h5", dir), "/targets", &nt);
    float *p = tu_read_floats(tu_fmt("%s/pred.h5", dir), "/predictions", &np);
    float *mean = tu_read_floats(tu_fmt("%s/run/latest.h5", dir), "/normalization/target_mean",
                              &nm);
    float *sd = tu_read_floats(tu_fmt("%s/run/latest.h5", dir), "/normalization/target_std", &ns);
    float *x = tu_read_floats(tu_fmt("%s/reg.h5", dir), "/features", &nx);
    CU_ASSERT_EQUAL_FATAL(nt, (size_t)ROWS * K);
    CU_ASSERT_EQUAL_FATAL(np, (size_t)ROWS * K);
    CU_ASSERT_EQUAL_FATAL(nm, (size_t)K);
    CU_ASSERT_EQUAL_FATAL(ns, (size_t)K);
    CU_ASSERT_EQUAL_FATAL(nx, (size_t)ROWS * FEATURES);

    /* The statistics: numpy's mean and (population) std in double over every row (no
     * validation split). dmlp sums in double too and stores floats: 1e-6 relative is a few
     * float roundings, far below any real error (a wrong row count or ddof is 1e-3). */
    double tm[K] = {0}, ts[K] = {0}, pm[K] = {0}, sse[K] = {0};
    for (size_t i = 0; i < ROWS; i++)
        for (size_t j = 0; j < K; j++)
            tm[j] += t[i * K + j], pm[j] += p[i * K + j];
    for (size_t j = 0; j < K; j++)
        tm[j] /= ROWS, pm[j] /= ROWS;
    for (size_t i = 0; i < ROWS; i++)
        for (size_t j = 0; j < K; j++) {
            const double c = t[i * K + j] - tm[j], e = (double)p[i * K + j] - t[i * K + j];
            ts[j] += c * c;
            sse[j] += e * e;
        }
    for (size_t j = 0; j < K; j++) {
        const double std = sqrt(ts[j] / ROWS), r2 = 1.0 - sse[j] / ts[j];
        printf("\n    output %zu: mean %.6g (stored %.6g), std %.6g (stored %.6g), "
               "prediction mean %.6g, R2 %.4f", j, tm[j], (double)mean[j], std, (double)sd[j],
               pm[j], r2);
        CU_ASSERT(tu_reldiff(mean[j], tm[j], 1e-300) <= 1e-6);
        CU_ASSERT(tu_reldiff(sd[j], std, 1e-300) <= 1e-6);
        /* Original units: a prediction left standardised would have mean ~0 and R² < 0. */
        CU_ASSERT(fabs(pm[j] - tm[j]) <= 0.05 * fabs(tm[j]));
        CU_ASSERT(r2 > 0.5);
    }

    /* eval's per-output MSE is that of the predictions (printed with 9 digits: 1e-5
     * relative covers it and the double sums' order). */
    CU_ASSERT_EQUAL_FATAL(tu_sh("cd %s && %s eval --checkpoint run/latest.h5 --data reg.h5 "
                                "--json", dir, DMLP_BINARY), 0);
    const char *arr = strstr(tu_out, "\"mse_per_target\": [");
    CU_ASSERT_PTR_NOT_NULL_FATAL(arr);
    char *end;
    const double m0 = strtod(arr + strlen("\"mse_per_target\": ["), &end);
    CU_ASSERT_EQUAL_FATAL(strncmp(end, ", ", 2), 0);
    const double m1 = strtod(end + 2, NULL);
    CU_ASSERT(tu_reldiff(m0, sse[0] / ROWS, 1e-300) <= 1e-5);
    CU_ASSERT(tu_reldiff(m1, sse[1] / ROWS, 1e-300) <= 1e-5);

    /* The inference library: predict's bits. */
    char err[512] = "";
    dmlp_net *net = dmlp_net_load(tu_fmt("%s/run/latest.h5", dir), err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    float *y = malloc(np * sizeof *y);
    CU_ASSERT_EQUAL(dmlp_net_predict(net, ROWS, x, y, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(y, p, np * sizeof *y), 0);
    dmlp_net_free(net);
    free(y), free(t), free(p), free(mean), free(sd), free(x);
}

int main(void)
{
    tu_mkdtemp(dir, sizeof dir, "targets");
    CU_TestInfo tests[] = {
        {"scales 1e4 and 1e-3: statistics, predict, eval, inference library", test_round_trip},
        CU_TEST_INFO_NULL};
    CU_SuiteInfo suites[] = {{"targets", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    const int rc = tu_run(suites);
    if (rc == 0)
        tu_rmtree(dir);
    return rc;
}
