/* predict and metrics_evaluate under MPI, run by ctest at 1, 2 and 3 ranks:
 * - predict_run over 11 rows (divisible by neither 2 nor 3; at 3 ranks the slices are
 *   4, 4, 3) writes /predictions float32 [11, K] and, for a classifier, /labels int32 [11];
 *   rank 0 reads the file back with the HDF5 API and checks names, shapes, types and root
 *   attributes, and every row against a forward pass of that row alone;
 * - a regression model writes /predictions only; 2 rows leave a rank with an empty slice;
 * - an existing output is replaced whole; errors (feature width, a missing output
 *   directory, overwriting the input) come back identically on every rank;
 * - dataset_read_features reads a file with /features only, and names the file in errors;
 * - metrics_evaluate gives identical counts over the world and over MPI_COMM_SELF (sums
 *   within double reordering), and an out-of-range label fails on every rank alike.
 * Every rank runs every test (they contain collectives); failure counts are reduced, and
 * no FATAL assertion sits where a rank could skip a collective. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/dataset.h"
#include "par/dist.h"
#include "nn/kernels.h"
#include "run/metrics.h"
#include "nn/model.h"
#include "run/predict.h"
#include "core/publish.h"
#include "core/rng.h"
#include "testutil.h"

enum { N_ROWS = 11, D_IN = 5, K_OUT = 4 };

static int g_rank, g_size;
static char g_dir[512]; /* scratch directory shared by all ranks (same host) */

/* 5 -> 7 (tanh) -> 4 (softmax, cross_entropy) or 4 (linear, mse), He init from a fixed
 * seed: every rank builds the same weights. */
static struct model *make_model(int classifier)
{
    const struct config_layer layers[2] = {
        {.units = 7, .activation = DMLP_ACT_TANH},
        {.units = K_OUT, .activation = classifier ? DMLP_ACT_SOFTMAX : DMLP_ACT_LINEAR},
    };
    struct model *m = NULL;
    struct dmlp_error e = {0};
    if (model_create(&m, D_IN, layers, 2, classifier ? DMLP_LOSS_CROSS_ENTROPY : DMLP_LOSS_MSE,
                     &e) != DMLP_OK) {
        fprintf(stderr, "rank %d: model_create: %s\n", g_rank, e.msg);
        return NULL;
    }
    struct rng r;
    rng_seed(&r, 1234, 5);
    model_init_params(m, DMLP_INIT_HE, &r);
    /* Non-zero biases, so a forgotten bias would show. */
    for (size_t l = 0; l < m->n_layers; l++)
        for (size_t j = 0; j < m->layers[l].out; j++)
            m->layers[l].b[j] = (float)(0.1 * rng_normal(&r));
    return m;
}

/* n rows of normal features; labels i mod K or targets from a fixed formula. */
static struct dataset *make_data(size_t n, size_t d, int with_labels)
{
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    if (dataset_alloc(&ds, n, d, K_OUT, with_labels, &e) != DMLP_OK)
        return NULL;
    struct rng r;
    rng_seed(&r, 77, 1);
    for (size_t i = 0; i < n * d; i++)
        ds->features[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < n; i++) {
        if (with_labels)
            ds->labels[i] = (int32_t)(i % K_OUT);
        else
            for (size_t j = 0; j < K_OUT; j++)
                ds->targets[i * K_OUT + j] = (float)(0.5 * rng_normal(&r) + (double)j);
    }
    return ds;
}

/* ---- reading the predictions file back (rank 0) ------------------------------------------ */

/* Opens /name, checks its rank, dims and stored type; returns the dataset or -1. */
static hid_t open_checked(hid_t f, const char *name, int rank, const hsize_t *want,
                          H5T_class_t cls, size_t size, H5T_sign_t sign)
{
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        fprintf(stderr, "%s: missing\n", name);
        return -1;
    }
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    hsize_t dims[2] = {0, 0};
    int ok = H5Sget_simple_extent_ndims(sp) == rank &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = dims[i] == want[i];
    ok = ok && H5Tget_class(ty) == cls && H5Tget_size(ty) == size &&
         H5Tget_order(ty) == H5T_ORDER_LE && (cls != H5T_INTEGER || H5Tget_sign(ty) == sign);
    H5Sclose(sp);
    H5Tclose(ty);
    if (!ok) {
        fprintf(stderr, "%s: wrong shape or type\n", name);
        H5Dclose(ds);
        return -1;
    }
    return ds;
}

/* The root string attribute name, into out ("" when missing). */
static void read_str_attr(hid_t f, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    if (H5Aexists(f, name) <= 0)
        return;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    if (H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft) && H5Tget_size(ft) < cap) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5Tget_size(ft) + 1);
        if (H5Aread(a, mt, out) < 0)
            out[0] = '\0';
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
}

/* Rank 0: checks the file at path against m on ds row by row. Returns the number of
 * problems found (0 = all good), printing each. */
static int check_predictions(const char *path, struct model *m, const struct dataset *ds,
                             const char *checkpoint, const char *input)
{
    const int classifier = m->loss == DMLP_LOSS_CROSS_ENTROPY;
    const size_t n = ds->n, k = model_output_dim(m);
    int bad = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    char s[512];
    read_str_attr(f, "format", s, sizeof s);
    bad += strcmp(s, "dmlp-predictions") != 0;
    read_str_attr(f, "loss", s, sizeof s);
    bad += strcmp(s, classifier ? "cross_entropy" : "mse") != 0;
    read_str_attr(f, "checkpoint", s, sizeof s);
    bad += strcmp(s, checkpoint ? checkpoint : "") != 0;
    read_str_attr(f, "input", s, sizeof s);
    bad += strcmp(s, input ? input : "") != 0;
    if (bad)
        fprintf(stderr, "%s: root attributes wrong\n", path);

    const hsize_t pdims[2] = {n, k};
    hid_t pd = open_checked(f, "/predictions", 2, pdims, H5T_FLOAT, 4, H5T_SGN_ERROR);
    hid_t ld = -1;
    if (classifier)
        ld = open_checked(f, "/labels", 1, pdims, H5T_INTEGER, 4, H5T_SGN_2);
    else if (H5Lexists(f, "/labels", H5P_DEFAULT) != 0) {
        fprintf(stderr, "%s: a regression file has /labels\n", path);
        bad++;
    }
    float *P = malloc(n * k * sizeof *P);
    int32_t *L = malloc(n * sizeof *L);
    if (pd < 0 || (classifier && ld < 0) || !P || !L ||
        H5Dread(pd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, P) < 0 ||
        (classifier && H5Dread(ld, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, L) < 0)) {
        bad++;
    } else {
        /* Each row alone through the network. Rows of a batch are independent, but the
         * kernels take different (vector vs edge) tiles for a 1-row and a 4-row batch, so
         * the float rounding may differ in the last bits: 1e-6 absolute on values of order
         * 1 is a few ulps. */
        for (size_t i = 0; i < n; i++) {
            const float *y = model_forward(m, ds->features + i * ds->d, 1);
            for (size_t j = 0; j < k; j++) {
                if (!(fabsf(y[j] - P[i * k + j]) <= 1e-6f)) {
                    fprintf(stderr, "row %zu, output %zu: file %.9g, direct %.9g\n", i, j,
                            (double)P[i * k + j], (double)y[j]);
                    bad++;
                }
            }
            if (classifier) {
                size_t best = 0;
                double sum = 0;
                for (size_t j = 0; j < k; j++) {
                    best = P[i * k + j] > P[i * k + best] ? j : best;
                    sum += P[i * k + j];
                }
                if (L[i] != (int32_t)best || fabs(sum - 1.0) > 1e-5) {
                    fprintf(stderr, "row %zu: label %d, argmax %zu, probabilities sum %.9g\n",
                            i, L[i], best, sum);
                    bad++;
                }
            }
        }
    }
    free(P);
    free(L);
    if (pd >= 0)
        H5Dclose(pd);
    if (ld >= 0)
        H5Dclose(ld);
    H5Fclose(f);
    return bad;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void run_and_check(int classifier, const char *name, size_t n_rows)
{
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct model *m = make_model(classifier);
    struct dataset *ds = make_data(n_rows, D_IN, classifier);
    char out[700];
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    int rc = DMLP_ERR_RUNTIME;
    if (world && m && ds)
        rc = predict_run(world, m, ds, out, "ck/step-00000003.h5", "rows.h5", &e);
    if (rc)
        fprintf(stderr, "rank %d: predict_run: %s\n", g_rank, e.msg);
    CU_ASSERT_EQUAL(rc, DMLP_OK);
    if (g_rank == 0 && rc == DMLP_OK) {
        int bad = check_predictions(out, m, ds, "ck/step-00000003.h5", "rows.h5");
        CU_ASSERT_EQUAL(bad, 0);
        /* No temporary file is left beside the output. */
        char tmp[800];
        CU_ASSERT_EQUAL(publish_temp_name(tmp, sizeof tmp, out), 0);
        struct stat st;
        CU_ASSERT_NOT_EQUAL(stat(tmp, &st), 0);
    }
    dist_barrier(world);
    model_free(&m);
    dataset_free(&ds);
    dist_free(&world);
}

static void test_predict_classifier(void) { run_and_check(1, "pred_cls.h5", N_ROWS); }
static void test_predict_regression(void) { run_and_check(0, "pred_reg.h5", N_ROWS); }
/* Two rows: at 3 ranks the last rank's slice is empty and it still joins the gather. */
static void test_predict_few_rows(void) { run_and_check(1, "pred_two.h5", 2); }

/* An existing output (here a text file) is replaced by the complete predictions file. */
static void test_predict_replaces_output(void)
{
    char out[700];
    snprintf(out, sizeof out, "%s/replace.h5", g_dir);
    if (g_rank == 0)
        CU_ASSERT_EQUAL(tu_write_file(out, "not an HDF5 file\n"), 0);
    MPI_Barrier(MPI_COMM_WORLD);
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct model *m = make_model(1);
    struct dataset *ds = make_data(N_ROWS, D_IN, 1);
    int rc = world && m && ds ? predict_run(world, m, ds, out, NULL, NULL, &e) : -1;
    CU_ASSERT_EQUAL(rc, DMLP_OK);
    if (g_rank == 0 && rc == DMLP_OK)
        CU_ASSERT_EQUAL(check_predictions(out, m, ds, NULL, NULL), 0);
    dist_barrier(world);
    model_free(&m);
    dataset_free(&ds);
    dist_free(&world);
}

/* Errors found on one rank or all come back the same on every rank. */
static void test_predict_errors(void)
{
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct model *m = make_model(1);
    struct dataset *wide = make_data(N_ROWS, D_IN + 1, 1), *ds = make_data(N_ROWS, D_IN, 1);
    char out[700], input[700];
    snprintf(out, sizeof out, "%s/never.h5", g_dir);

    /* Feature width: the message names the input and both widths. */
    int rc = predict_run(world, m, wide, out, NULL, "wide.h5", &e);
    CU_ASSERT_EQUAL(rc, DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "wide.h5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "6 features"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "takes 5 inputs"));
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);

    /* Only rank 0 writes, so only rank 0 finds the missing directory; all ranks agree. */
    snprintf(out, sizeof out, "%s/no/such/dir/p.h5", g_dir);
    dmlp_error_clear(&e);
    rc = predict_run(world, m, ds, out, NULL, NULL, &e);
    CU_ASSERT_EQUAL(rc, DMLP_ERR_RUNTIME);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no/such/dir/p.h5"));
    if (g_size > 1)
        CU_ASSERT_EQUAL(strncmp(e.msg, "rank 0: ", 8), 0);

    /* The output must not be the input. */
    snprintf(input, sizeof input, "%s/input.h5", g_dir);
    if (g_rank == 0) {
        struct dmlp_error we = {0};
        CU_ASSERT_EQUAL(dataset_write(ds, input, &we), DMLP_OK);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    dmlp_error_clear(&e);
    rc = predict_run(world, m, ds, input, NULL, input, &e);
    CU_ASSERT_EQUAL(rc, DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "refusing to overwrite the input"));
    struct dataset *back = NULL;
    CU_ASSERT_EQUAL(dataset_read(&back, input, &e), DMLP_OK);
    dataset_free(&back);

    dist_barrier(world);
    model_free(&m);
    dataset_free(&wide);
    dataset_free(&ds);
    dist_free(&world);
}

/* A features-only file (written here with plain HDF5, as h5py would) reads, and feeds
 * predict_run; a file without /features is refused with its name. */
static void test_read_features(void)
{
    char path[700], bad[700], out[700];
    snprintf(path, sizeof path, "%s/features_only.h5", g_dir);
    snprintf(bad, sizeof bad, "%s/no_features.h5", g_dir);
    snprintf(out, sizeof out, "%s/pred_features_only.h5", g_dir);
    struct dataset *ref = make_data(N_ROWS, D_IN, 1);
    if (g_rank == 0 && ref) {
        /* float64 on disk: the reader converts. */
        double *x = malloc(N_ROWS * D_IN * sizeof *x);
        for (size_t i = 0; x && i < N_ROWS * D_IN; i++)
            x[i] = ref->features[i];
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dims[2] = {N_ROWS, D_IN};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t ds = H5Dcreate2(f, "features", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        CU_ASSERT(x && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
        H5Dclose(ds);
        ds = H5Dcreate2(f, "other", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(ds);
        H5Sclose(sp);
        H5Fclose(f);
        f = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        H5Fclose(f);
        free(x);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    struct dataset *in = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL(dataset_read_features(&in, path, &e), DMLP_OK);
    CU_ASSERT(in && ref && in->n == N_ROWS && in->d == D_IN && !in->labels && !in->targets);
    if (in && ref)
        CU_ASSERT_EQUAL(memcmp(in->features, ref->features, N_ROWS * D_IN * sizeof(float)), 0);

    struct dataset *none = NULL;
    CU_ASSERT_EQUAL(dataset_read_features(&none, bad, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no_features.h5: /features: missing"));
    CU_ASSERT_EQUAL(dataset_read_features(&none, "/nonexistent/x.h5", &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "/nonexistent/x.h5: cannot open"));

    /* A dataset file with labels reads too (they are ignored). */
    struct dist *world = NULL;
    dist_create_world(&world, &e);
    struct model *m = make_model(1);
    int rc = world && m && in ? predict_run(world, m, in, out, NULL, path, &e) : -1;
    CU_ASSERT_EQUAL(rc, DMLP_OK);
    if (g_rank == 0 && rc == DMLP_OK)
        CU_ASSERT_EQUAL(check_predictions(out, m, in, NULL, path), 0);
    dist_barrier(world);
    model_free(&m);
    dist_free(&world);
    dataset_free(&in);
    dataset_free(&ref);
}

/* The same counts over n ranks and over one; sums within double reordering. */
static void check_evaluate(int classifier, size_t n_rows)
{
    struct dist *world = NULL, *self = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    struct model *m = make_model(classifier);
    struct dataset *ds = make_data(n_rows, D_IN, classifier);
    struct metrics *mw = NULL, *ms = NULL;
    CU_ASSERT_EQUAL(metrics_evaluate(world, m, ds, &mw, &e), DMLP_OK);
    CU_ASSERT_EQUAL(metrics_evaluate(self, m, ds, &ms, &e), DMLP_OK);
    if (mw && ms) {
        size_t ncw, ncs, nsw, nss;
        const uint64_t *cw = metrics_counts(mw, &ncw), *cs = metrics_counts(ms, &ncs);
        const double *sw = metrics_sums(mw, &nsw), *ss = metrics_sums(ms, &nss);
        CU_ASSERT_EQUAL(ncw, ncs);
        CU_ASSERT_EQUAL(nsw, nss);
        CU_ASSERT(ncw == ncs && memcmp(cw, cs, ncw * sizeof *cw) == 0);
        /* n partial sums of ~1000 doubles instead of one: reordering costs ~1e-15. */
        for (size_t i = 0; nsw == nss && i < nsw; i++)
            CU_ASSERT(tu_reldiff(sw[i], ss[i], 1e-300) <= 1e-12);
        struct metrics_report rw, rs;
        metrics_finish(mw, &rw);
        metrics_finish(ms, &rs);
        CU_ASSERT_EQUAL(rw.samples, n_rows);
        CU_ASSERT_EQUAL(rs.samples, n_rows);
        if (classifier) {
            CU_ASSERT_EQUAL(rw.correct, rs.correct);
            CU_ASSERT_EQUAL(rw.accuracy, rs.accuracy);
            /* The confusion matrix's trace is the training loop's count of correct rows. */
            size_t correct = 0;
            for (size_t i = 0; i < ds->n; i += 512) {
                const size_t b = ds->n - i < 512 ? ds->n - i : 512;
                correct += kernel_count_correct(model_forward(m, ds->features + i * D_IN, b),
                                                ds->labels + i, b, K_OUT);
            }
            CU_ASSERT_EQUAL(rw.correct, correct);
        } else {
            CU_ASSERT(tu_reldiff(rw.r2, rs.r2, 1e-300) <= 1e-9);
            CU_ASSERT(isfinite(rw.mse) && rw.mse > 0);
            CU_ASSERT(n_rows < 3 || isfinite(rw.r2));
        }
    }
    metrics_free(&mw);
    metrics_free(&ms);

    /* A bad label on one row: every rank fails alike, and nothing is returned. */
    if (classifier && ds) {
        char want[64];
        snprintf(want, sizeof want, "row %zu", n_rows - 1);
        ds->labels[n_rows - 1] = K_OUT;
        CU_ASSERT_EQUAL(metrics_evaluate(world, m, ds, &mw, &e), DMLP_ERR_INPUT);
        CU_ASSERT_PTR_NULL(mw);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, want));
    }
    model_free(&m);
    dataset_free(&ds);
    dist_free(&self);
    dist_free(&world);
}

/* 1037 rows: two and a bit chunks of 512 on one rank, uneven slices on 2 and 3 ranks;
 * 2 rows: an empty slice at 3 ranks. */
static void test_evaluate_classifier(void)
{
    check_evaluate(1, 1037);
    check_evaluate(1, 2);
}

static void test_evaluate_regression(void)
{
    check_evaluate(0, 1037);
    check_evaluate(0, 2);
}

static CU_TestInfo predict_tests[] = {
    {"classifier predictions file: layout and every row", test_predict_classifier},
    {"regression predictions file: layout and every row", test_predict_regression},
    {"fewer rows than ranks", test_predict_few_rows},
    {"an existing output is replaced", test_predict_replaces_output},
    {"errors are agreed on every rank", test_predict_errors},
    {"features-only input", test_read_features},
    {"metrics_evaluate: classifier counts independent of ranks", test_evaluate_classifier},
    {"metrics_evaluate: regression sums independent of ranks", test_evaluate_regression},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"predict", NULL, NULL, NULL, NULL, predict_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    if (tu_mpi_begin(&argc, &argv, &g_rank, &g_size, g_dir, sizeof g_dir, "predict"))
        return 1;

    const int code = tu_run_mpi(suites, g_rank, g_dir);
    dist_finalize();
    return code;
}
