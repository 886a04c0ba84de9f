/* test_infer: the embedding interface (include/dmlp/infer.h) against `dmlp predict`.
 * A classifier (tanh, standardised inputs, softmax) and a regression (relu, linear
 * outputs) are trained by the dmlp binary; then, in this process, which never initialises
 * MPI, the loaded net must give the bits of `dmlp predict` on the same rows: all rows in
 * one call, in uneven chunks, and one row per call from inside an OpenMP parallel loop
 * with 1 and 2 threads on the shared net. Bad inputs get a message naming the file or
 * argument and a NULL or non-zero return, never an exit. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dmlp/infer.h"
#include "testutil.h"

#define ROWS 301
#define FEATURES 6

static char dir[4096];

/* ROWS rows of FEATURES features (far from zero mean, so standardisation matters) and a
 * class in [0, 3) or two targets, as CSV. */
static void write_csv(const char *path, int regression)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int j = 0; j < FEATURES; j++)
        fprintf(f, "x%d,", j);
    fprintf(f, regression ? "t0,t1\n" : "y\n");
    unsigned s = 12345;
    for (int i = 0; i < ROWS; i++) {
        double x[FEATURES], sum = 0.0;
        for (int j = 0; j < FEATURES; j++) {
            s = s * 1103515245u + 12345u;
            x[j] = 10.0 + 3.0 * j + (double)(s >> 8) / (double)(1u << 24) * 4.0;
            sum += x[j] * (j % 2 ? 1.0 : -0.5);
            fprintf(f, "%.6f,", x[j]);
        }
        if (regression)
            fprintf(f, "%.6f,%.6f\n", sum, sin(x[0]) + x[1] * 0.1);
        else
            fprintf(f, "%d\n", (int)(fmod(fabs(sum) * 3.7, 3.0)));
    }
    fclose(f);
}

static const char *config(int regression)
{
    return regression ?
        "model:\n  layers:\n    - {units: 16, activation: relu}\n"
        "    - {units: 2, activation: linear}\n"
        "loss: mse\noptimizer: {name: adam, lr: 0.01}\n"
        "data: {train: reg.h5, normalize: standard}\n"
        "training: {epochs: 3, batch_size: 32}\n"
        "checkpoint: {dir: run-reg, every_epochs: 0}\n" :
        "model:\n  layers:\n    - {units: 24, activation: tanh}\n"
        "    - {units: 13, activation: sigmoid}\n"
        "    - {units: 3, activation: softmax}\n"
        "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n"
        "data: {train: cls.h5, normalize: standard}\n"
        "training: {epochs: 3, batch_size: 16}\n"
        "checkpoint: {dir: run-cls, every_epochs: 0}\n";
}

/* Trains one of the two networks and predicts its training rows with the binary. */
static int train_and_predict(int regression)
{
    const char *name = regression ? "reg" : "cls";
    write_csv(tu_fmt("%s/%s.csv", dir, name), regression);
    if (!tu_write_file(tu_fmt("%s/%s.yaml", dir, name), config(regression)) &&
        !tu_sh("cd %s && %s import csv %s.csv %s %s --output %s.h5 && %s train %s.yaml --quiet"
               " && %s predict --checkpoint run-%s/latest.h5 --input %s.h5 --output %s-pred.h5",
               dir, DMLP_BINARY, name, regression ? "--target-columns" : "--label-column",
               regression ? "t0,t1" : "y", name, DMLP_BINARY, name, DMLP_BINARY, name, name,
               name))
        return 0;
    return 1;
}

/* The net's outputs for every way of calling it equal `dmlp predict`'s, bit for bit. */
static void check_same_bits(int regression)
{
    const char *name = regression ? "reg" : "cls";
    CU_ASSERT_EQUAL_FATAL(train_and_predict(regression), 0);
    char err[512] = "";
    dmlp_net *net = dmlp_net_load(tu_fmt("%s/run-%s/latest.h5", dir, name), err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    const size_t D = dmlp_net_inputs(net), K = dmlp_net_outputs(net);
    CU_ASSERT_EQUAL(D, FEATURES);
    CU_ASSERT_EQUAL(K, regression ? 2 : 3);
    size_t nx, ny;
    float *x = tu_read_floats(tu_fmt("%s/%s.h5", dir, name), "/features", &nx);
    float *want = tu_read_floats(tu_fmt("%s/%s-pred.h5", dir, name), "/predictions", &ny);
    CU_ASSERT_EQUAL_FATAL(nx, (size_t)ROWS * D);
    CU_ASSERT_EQUAL_FATAL(ny, (size_t)ROWS * K);
    float *y = malloc(ny * sizeof *y);

    /* All rows in one call: the few-row product on one thread, the threaded GEMM on two. */
    const int threads_were = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        memset(y, 0, ny * sizeof *y);
        CU_ASSERT_EQUAL(dmlp_net_predict(net, ROWS, x, y, err, sizeof err), 0);
        CU_ASSERT_EQUAL(memcmp(y, want, ny * sizeof *y), 0);
    }
    omp_set_num_threads(threads_were);

    memset(y, 0, ny * sizeof *y); /* uneven chunks, the last one short */
    for (size_t i = 0; i < ROWS; i += 7) {
        const size_t n = ROWS - i < 7 ? ROWS - i : 7;
        CU_ASSERT_EQUAL(dmlp_net_predict(net, n, x + i * D, y + i * K, err, sizeof err), 0);
    }
    CU_ASSERT_EQUAL(memcmp(y, want, ny * sizeof *y), 0);

    for (int threads = 1; threads <= 2; threads++) {
        memset(y, 0, ny * sizeof *y);
        int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic) reduction(| : failed)
        for (size_t i = 0; i < ROWS; i++)
            failed |= dmlp_net_predict(net, 1, x + i * D, y + i * K, NULL, 0);
        CU_ASSERT_EQUAL(failed, 0);
        CU_ASSERT_EQUAL(memcmp(y, want, ny * sizeof *y), 0);
    }
    for (size_t i = 0; !regression && i < ROWS; i++) { /* probabilities: rows sum to 1 */
        double s = 0.0;
        for (size_t j = 0; j < K; j++)
            s += y[i * K + j];
        CU_ASSERT_DOUBLE_EQUAL(s, 1.0, 1e-5);
    }
    free(x);
    free(want);
    free(y);
    dmlp_net_free(net);
    int mpi = 1;
    MPI_Initialized(&mpi);
    CU_ASSERT_EQUAL(mpi, 0); /* nothing here needed MPI */
}

static void test_classifier(void) { check_same_bits(0); }
static void test_regression(void) { check_same_bits(1); }

/* dmlp_net_load refuses f with a message holding want. */
static void refused(const char *f, const char *want)
{
    char err[512] = "";
    dmlp_net *net = dmlp_net_load(f, err, sizeof err);
    CU_ASSERT_PTR_NULL(net);
    if (!strstr(err, want)) {
        printf("\n  loading %s: expected \"%s\" in \"%s\"\n", f ? f : "NULL", want, err);
        CU_FAIL("message");
    }
    dmlp_net_free(net);
}

/* Overwrites the first weight of layer 0 of a checkpoint copy with NaN. */
static void poison(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/layers/0/weight", H5P_DEFAULT), s = H5Dget_space(d);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(s, dims, NULL);
    float *w = malloc(dims[0] * dims[1] * sizeof *w);
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
    w[0] = NAN;
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
    free(w);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
}

static void test_bad_input(void)
{
    refused(NULL, "no checkpoint path");
    refused("", "no checkpoint path");
    refused(tu_fmt("%s/nothere.h5", dir), "nothere.h5");
    refused(dir, dir); /* a directory */
    refused(tu_fmt("%s/cls.csv", dir), "cls.csv"); /* not HDF5 */
    refused(tu_fmt("%s/cls.h5", dir), "cls.h5");   /* a dataset, not a checkpoint */
    const char *nan = tu_fmt("%s/nan.h5", dir);
    CU_ASSERT_EQUAL(tu_sh("cp %s/run-cls/latest.h5 %s", dir, nan), 0);
    poison(nan);
    refused(nan, "NaN");

    char err[512] = "";
    dmlp_net *net = dmlp_net_load(tu_fmt("%s/run-cls/latest.h5", dir), err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    float x[FEATURES] = {0}, y[3] = {7, 7, 7};
    CU_ASSERT_NOT_EQUAL(dmlp_net_predict(NULL, 1, x, y, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "net is NULL"));
    CU_ASSERT_NOT_EQUAL(dmlp_net_predict(net, 1, NULL, y, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "x is NULL"));
    CU_ASSERT_NOT_EQUAL(dmlp_net_predict(net, 1, x, NULL, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "y is NULL"));
    CU_ASSERT_NOT_EQUAL(dmlp_net_predict(net, SIZE_MAX / 2, x, y, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "overflow"));
    CU_ASSERT(y[0] == 7 && y[1] == 7 && y[2] == 7); /* untouched on error */
    CU_ASSERT_EQUAL(dmlp_net_predict(net, 0, NULL, NULL, NULL, 0), 0);
    char tiny[8];
    memset(tiny, 'z', sizeof tiny);
    CU_ASSERT_NOT_EQUAL(dmlp_net_predict(NULL, 1, x, y, tiny, 5), 0);
    CU_ASSERT_EQUAL(tiny[4], '\0'); /* cut to errlen, NUL included */
    CU_ASSERT_EQUAL(tiny[5], 'z');
    CU_ASSERT_EQUAL(dmlp_net_inputs(NULL), 0);
    CU_ASSERT_EQUAL(dmlp_net_outputs(NULL), 0);
    dmlp_net_free(net);
    dmlp_net_free(NULL);
}

int main(void)
{
    tu_mkdtemp(dir, sizeof dir, "infer");
    CU_TestInfo tests[] = {
        {"a classifier: the bits of dmlp predict, any split, any thread", test_classifier},
        {"a regression: the bits of dmlp predict, any split, any thread", test_regression},
        {"bad checkpoints and arguments: a message, no exit", test_bad_input},
        CU_TEST_INFO_NULL};
    CU_SuiteInfo suites[] = {{"infer", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    const int rc = tu_run(suites);
    if (rc == 0)
        tu_rmtree(dir);
    return rc;
}
