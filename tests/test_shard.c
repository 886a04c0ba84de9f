#define _POSIX_C_SOURCE 200809L
/* MPI tests of the sharded placement, run by ctest at 1, 2 and 3 ranks:
 * - dataset_read_shard gives rank r exactly the rows dmlp_slice(N, n, r) and nothing else
 *   (feature 0 holds the row index, so every row is recognisable), the ranks together hold
 *   every row exactly once, and K is agreed (from the largest label anywhere when the file
 *   has no num_classes, which only the last rank sees), for a contiguous file and for a
 *   chunked, deflate-compressed one (collective reads of filtered data);
 * - a rank may hold no rows (N < n) and still takes part;
 * - the validation split of the shards is, row for row, the split of the whole set;
 * - feature statistics summed over the shards equal the one-process ones (1e-12 relative);
 * - a missing file, and a bad value that only one rank sees, give every rank the same error.
 * Every rank runs every test (they contain collectives); failure counts are reduced. */
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "par/dist.h"
#include "testutil.h"
#include "run/train.h"
#include "core/partition.h"

enum { N = 101, D = 3, BIG_LABEL_ROW = 100, BIG_LABEL = 9 };

static int g_rank, g_size;
static char g_dir[512];
static char g_contig[600];  /* contiguous, no num_classes: K = 10 from row 100's label */
static char g_chunked[600]; /* chunked + deflate, num_classes = 12 */
static char g_nan[600];     /* contiguous, NaN in /features row 77, column 1 */
static char g_tiny[600];    /* 2 rows: at 3 ranks the last rank holds none */

/* Row i: features (i, 3 sin i + 0.5, 7) (the last constant, for the std floor), label
 * i % 4 except row 100, whose label 9 is the largest. */
static float feature(size_t i, size_t j)
{
    return j == 0 ? (float)i : j == 1 ? 3.0f * (float)sin((double)i) + 0.5f : 7.0f;
}
static int32_t label(size_t i) { return i == BIG_LABEL_ROW ? BIG_LABEL : (int32_t)(i % 4); }

/* Writes rows [row0, row0 + n) of the test set with plain (serial) HDF5, on rank 0 only. */
static int make_rows(const char *path, size_t row0, size_t n, int chunked, int num_classes,
                     long nan_row)
{
    float *x = malloc(n * D * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < D; j++)
            x[i * D + j] = feature(row0 + i, j);
        y[i] = label(row0 + i);
    }
    if (nan_row >= 0)
        x[(size_t)nan_row * D + 1] = NAN;
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t fdims[2] = {n, D}, ydims[1] = {n}, fchunk[2] = {16, D}, ychunk[1] = {16};
    hid_t fdcpl = H5Pcreate(H5P_DATASET_CREATE), ydcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunked) {
        H5Pset_chunk(fdcpl, 2, fchunk);
        H5Pset_deflate(fdcpl, 4);
        H5Pset_chunk(ydcpl, 1, ychunk);
        H5Pset_deflate(ydcpl, 4);
    }
    hid_t fs = H5Screate_simple(2, fdims, NULL), ys = H5Screate_simple(1, ydims, NULL);
    hid_t fd = H5Dcreate2(file, "/features", H5T_IEEE_F32LE, fs, H5P_DEFAULT, fdcpl,
                          H5P_DEFAULT);
    hid_t yd = H5Dcreate2(file, "/labels", H5T_STD_I32LE, ys, H5P_DEFAULT, ydcpl, H5P_DEFAULT);
    int ok = file >= 0 && fd >= 0 && yd >= 0 &&
             H5Dwrite(fd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0 &&
             H5Dwrite(yd, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0;
    if (ok && num_classes > 0) {
        hid_t as = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(yd, "num_classes", H5T_STD_I32LE, as, H5P_DEFAULT, H5P_DEFAULT);
        ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &num_classes) >= 0;
        H5Aclose(a);
        H5Sclose(as);
    }
    H5Dclose(fd);
    H5Dclose(yd);
    H5Sclose(fs);
    H5Sclose(ys);
    H5Pclose(fdcpl);
    H5Pclose(ydcpl);
    ok = H5Fclose(file) >= 0 && ok;
    free(x);
    free(y);
    return ok ? 0 : -1;
}

static int make_file(const char *path, size_t n, int chunked, int num_classes, long nan_row)
{
    return make_rows(path, 0, n, chunked, num_classes, nan_row);
}

/* Sums a per-rank value into slot [rank] of an array of g_size, so rank 0 can print all. */
static void gather_u64(uint64_t mine, uint64_t *all)
{
    memset(all, 0, (size_t)g_size * sizeof *all);
    all[g_rank] = mine;
    MPI_Allreduce(MPI_IN_PLACE, all, g_size, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
}

/* Reads path sharded and checks the slice, the values, the coverage of every row and K. */
static void check_shard(const char *path, size_t expect_k)
{
    struct dist *world = NULL;
    struct dmlp_error e;
    dist_create_world(&world, &e);
    struct dataset *ds = NULL;
    struct dataset_shard sh;
    int rc = dataset_read_shard(&ds, path, world, &sh, &e);
    CU_ASSERT_EQUAL(rc, DMLP_OK);
    if (rc != DMLP_OK)
        fprintf(stderr, "rank %d: %s\n", g_rank, e.msg);
    uint64_t off, len;
    dmlp_slice(N, g_size, g_rank, &off, &len);
    uint64_t count[N] = {0};
    if (ds) {
        /* Only this rank's rows are held: the memory per rank is 1/n of the set. */
        CU_ASSERT_EQUAL(ds->n, len);
        CU_ASSERT_EQUAL(sh.row0, off);
        CU_ASSERT_EQUAL(sh.global_rows, N);
        CU_ASSERT_EQUAL(ds->d, D);
        CU_ASSERT_EQUAL(ds->k, expect_k);
        int values_ok = 1;
        for (size_t i = 0; i < ds->n; i++) {
            const size_t row = (size_t)ds->features[i * D];
            values_ok &= row == off + i && row < N;
            for (size_t j = 0; j < D && row < N; j++)
                values_ok &= ds->features[i * D + j] == feature(row, j);
            values_ok &= row < N && ds->labels[i] == label(row);
            if (row < N)
                count[row]++;
        }
        CU_ASSERT(values_ok);

        /* The same rows read in this process alone (independent, no MPI-IO) are identical. */
        struct dataset *alone = NULL;
        size_t total = 0;
        CU_ASSERT_EQUAL(dataset_read_rows(&alone, path, off, len, &total, &e), DMLP_OK);
        CU_ASSERT_EQUAL(total, N);
        if (alone && alone->n == ds->n) {
            CU_ASSERT_EQUAL(memcmp(alone->features, ds->features, ds->n * D * sizeof(float)),
                            0);
            CU_ASSERT_EQUAL(memcmp(alone->labels, ds->labels, ds->n * sizeof(int32_t)), 0);
        }
        dataset_free(&alone);
    }
    /* Every row held by exactly one rank. */
    MPI_Allreduce(MPI_IN_PLACE, count, N, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    int once = 1;
    for (size_t i = 0; i < N; i++)
        once &= count[i] == 1;
    CU_ASSERT(once);

    uint64_t bytes[64], coll[64];
    const uint64_t mine = ds ? ds->n * (D * sizeof(float) + sizeof(int32_t)) : 0;
    gather_u64(mine, bytes);
    gather_u64(ds ? (uint64_t)sh.collective : 0, coll);
    if (g_rank == 0) {
        printf("\n    %s: bytes held per rank (whole set %zu):", strrchr(path, '/') + 1,
               (size_t)N * (D * sizeof(float) + sizeof(int32_t)));
        for (int r = 0; r < g_size; r++)
            printf(" %llu%s", (unsigned long long)bytes[r], coll[r] ? " (collective)" : "");
    }
    dataset_free(&ds);
    dist_free(&world);
}

static void test_shard_contiguous(void) { check_shard(g_contig, BIG_LABEL + 1); }
static void test_shard_chunked(void) { check_shard(g_chunked, 12); }

static void test_shard_empty_rank(void)
{
    struct dist *world = NULL;
    struct dmlp_error e;
    dist_create_world(&world, &e);
    struct dataset *ds = NULL;
    struct dataset_shard sh;
    CU_ASSERT_EQUAL(dataset_read_shard(&ds, g_tiny, world, &sh, &e), DMLP_OK);
    uint64_t off, len;
    dmlp_slice(2, g_size, g_rank, &off, &len);
    CU_ASSERT_PTR_NOT_NULL(ds);
    if (ds) {
        CU_ASSERT_EQUAL(ds->n, len);
        CU_ASSERT_PTR_NOT_NULL(ds->features); /* usable pointers even with no rows */
        CU_ASSERT_PTR_NOT_NULL(ds->labels);
        CU_ASSERT_EQUAL(ds->k, 2); /* labels 0 and 1, no num_classes */
        for (size_t i = 0; i < ds->n; i++)
            CU_ASSERT_EQUAL(ds->features[i * D], (float)(off + i));
    }
    dataset_free(&ds);
    dist_free(&world);
}

/* The sharded validation split is the replicated one, row for row. */
static void test_split_consistent(void)
{
    struct dist *world = NULL;
    struct dmlp_error e;
    dist_create_world(&world, &e);
    const double fraction = 0.3;
    const uint64_t seed = 1234;
    const size_t expect_val = 30; /* floor(0.3 * 101) */

    /* Replicated: every rank holds the whole set and splits it. */
    struct dataset *whole = NULL, *whole_val = NULL;
    int in_val[N] = {0};
    CU_ASSERT_EQUAL(dataset_read(&whole, g_contig, &e), DMLP_OK);
    if (whole) {
        CU_ASSERT_EQUAL(dataset_split(whole, 0, N, fraction, seed, &whole_val, &e), DMLP_OK);
        if (whole_val) {
            CU_ASSERT_EQUAL(whole_val->n, expect_val);
            CU_ASSERT_EQUAL(whole->n, N - expect_val);
            for (size_t i = 0; i < whole_val->n; i++)
                in_val[(size_t)whole_val->features[i * D]] = 1;
        }
    }

    /* Sharded: each rank splits its own rows; the union must be the replicated split. */
    struct dataset *ds = NULL, *val = NULL;
    struct dataset_shard sh;
    CU_ASSERT_EQUAL(dataset_read_shard(&ds, g_contig, world, &sh, &e), DMLP_OK);
    uint64_t seen_val[N] = {0}, seen_train[N] = {0};
    if (ds) {
        CU_ASSERT_EQUAL(dataset_split(ds, sh.row0, N, fraction, seed, &val, &e), DMLP_OK);
        int ordered = 1;
        for (size_t i = 0; val && i < val->n; i++) {
            const size_t row = (size_t)val->features[i * D];
            seen_val[row]++;
            ordered &= val->labels[i] == label(row) && val->features[i * D + 1] == feature(row, 1);
            if (i > 0)
                ordered &= val->features[i * D] > val->features[(i - 1) * D];
        }
        for (size_t i = 0; i < ds->n; i++) {
            const size_t row = (size_t)ds->features[i * D];
            seen_train[row]++;
            ordered &= ds->labels[i] == label(row) && ds->features[i * D + 1] == feature(row, 1);
            if (i > 0)
                ordered &= ds->features[i * D] > ds->features[(i - 1) * D];
        }
        CU_ASSERT(ordered); /* rows kept whole and in order in both parts */
    }
    MPI_Allreduce(MPI_IN_PLACE, seen_val, N, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, seen_train, N, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    size_t n_val = 0, same = 1, once = 1;
    for (size_t i = 0; i < N; i++) {
        n_val += seen_val[i];
        same &= (seen_val[i] == 1) == (in_val[i] == 1);
        once &= seen_val[i] + seen_train[i] == 1; /* no overlap, nothing lost */
    }
    CU_ASSERT_EQUAL(n_val, expect_val);
    CU_ASSERT(same);
    CU_ASSERT(once);
    dataset_free(&val);
    dataset_free(&ds);
    dataset_free(&whole_val);
    dataset_free(&whole);
    dist_free(&world);
}

/* Statistics from the shards' sums equal the one-process ones and a naive two-pass
 * computation; standardising the shards gives a global mean 0 and std 1. */
static void test_stats_reduced(void)
{
    struct dist *world = NULL;
    struct dmlp_error e;
    dist_create_world(&world, &e);
    struct dataset *ds = NULL, *whole = NULL;
    struct dataset_shard sh;
    CU_ASSERT_EQUAL(dataset_read_shard(&ds, g_contig, world, &sh, &e), DMLP_OK);
    CU_ASSERT_EQUAL(dataset_read(&whole, g_contig, &e), DMLP_OK);
    double sum[D] = {0}, sumsq[D] = {0}, wsum[D], wsumsq[D];
    if (ds)
        dataset_feature_sums(ds, sum, sumsq);
    dist_allreduce_sum_double(world, sum, D);
    dist_allreduce_sum_double(world, sumsq, D);
    if (!ds || !whole) {
        dataset_free(&ds);
        dataset_free(&whole);
        dist_free(&world);
        return;
    }
    dataset_feature_sums(whole, wsum, wsumsq);
    float mean[D], std[D], wmean[D], wstd[D];
    dataset_stats_finish(sum, sumsq, N, D, mean, std);
    dataset_stats_finish(wsum, wsumsq, N, D, wmean, wstd);
    for (size_t j = 0; j < D; j++) {
        /* Only the summation order differs (n partial sums added): 101 terms in double
         * stay far inside 1e-12 relative. */
        CU_ASSERT(tu_reldiff(sum[j], wsum[j], 1e-300) <= 1e-12);
        CU_ASSERT(tu_reldiff(sumsq[j], wsumsq[j], 1e-300) <= 1e-12);
        /* Naive two-pass mean and population deviation over the known values. */
        double m = 0, v = 0;
        for (size_t i = 0; i < N; i++)
            m += feature(i, j);
        m /= N;
        for (size_t i = 0; i < N; i++)
            v += (feature(i, j) - m) * (feature(i, j) - m);
        const double s = sqrt(v / N);
        CU_ASSERT(tu_reldiff(mean[j], m, 1e-30) <= 1e-6); /* float result */
        if (j < 2)
            CU_ASSERT(tu_reldiff(std[j], s, 1e-30) <= 1e-6);
        CU_ASSERT_EQUAL(mean[j], wmean[j]);
        CU_ASSERT_EQUAL(std[j], wstd[j]);
    }
    CU_ASSERT_EQUAL(std[2], 1.0f); /* constant feature: floored to 1, centred to 0 */

    dataset_standardize(ds, mean, std);
    dataset_feature_sums(ds, sum, sumsq);
    dist_allreduce_sum_double(world, sum, D);
    dist_allreduce_sum_double(world, sumsq, D);
    for (size_t j = 0; j < D; j++) {
        CU_ASSERT(fabs(sum[j] / N) <= 1e-6);
        CU_ASSERT(fabs(sumsq[j] / N - (j < 2 ? 1.0 : 0.0)) <= 1e-5);
    }
    dataset_free(&ds);
    dataset_free(&whole);
    dist_free(&world);
}

/* Every rank returns the same code and message, whichever rank found the fault: reading
 * path sharded, or (files not NULL) the set files, whose message must name path. */
static void expect_agreed_in(const struct dataset_files *files, const char *path,
                             const char *needle)
{
    struct dist *world = NULL;
    struct dmlp_error e;
    dist_create_world(&world, &e);
    struct dataset *ds = (struct dataset *)&e; /* must come back NULL */
    int rc = files ? dataset_read_files_shard(&ds, files, world, NULL, &e)
                   : dataset_read_shard(&ds, path, world, NULL, &e);
    CU_ASSERT_EQUAL(rc, DMLP_ERR_INPUT);
    CU_ASSERT_EQUAL(e.code, DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NULL(ds);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));
    /* The same message everywhere: compare a checksum of it. */
    uint64_t h = 1469598103934665603ull, lo = 0, hi = 0;
    for (const char *p = e.msg; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    CU_ASSERT_EQUAL(lo, hi);
    if (g_rank == 0)
        printf("\n    every rank: %s", e.msg);
    dist_free(&world);
}

static void expect_agreed(const char *path, const char *needle)
{
    expect_agreed_in(NULL, path, needle);
}

static void test_errors_agreed(void)
{
    char missing[700];
    snprintf(missing, sizeof missing, "%s/missing.h5", g_dir);
    expect_agreed(missing, "cannot open: No such file or directory");
    /* Row 77 lies in one rank's shard only (the last at 2 and 3 ranks). */
    expect_agreed(g_nan, "/features: row 77, column 1 is NaN");
    if (g_size > 1) {
        struct dist *world = NULL;
        struct dmlp_error e;
        dist_create_world(&world, &e);
        struct dataset *ds = NULL;
        dataset_read_shard(&ds, g_nan, world, NULL, &e);
        char want[32];
        snprintf(want, sizeof want, "rank %d: ", g_size - 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, want));
        dist_free(&world);
    }
}

/* ---- a set of several files ---------------------------------------------------------- */

/* The test set in three files, part-0.h5 [0, 30), part-1.h5 [30, 70), part-2.h5 [70, 101),
 * written by main; part-2 holds the largest label (row 100's), and none has num_classes. */
static const size_t part_rows[4] = {0, 30, 70, N};

static void expand(struct dataset_files *f, const char *const *entries, size_t n)
{
    struct dmlp_error e;
    CU_ASSERT_EQUAL_FATAL(dataset_files_expand(f, (char *const *)entries, n, "data.train",
                                               &e), DMLP_OK);
}

static void same_rows(const struct dataset *a, const struct dataset *b)
{
    CU_ASSERT_EQUAL_FATAL(a->n, b->n);
    CU_ASSERT_EQUAL(a->d, b->d);
    CU_ASSERT_EQUAL(a->k, b->k);
    CU_ASSERT_EQUAL(memcmp(a->features, b->features, a->n * a->d * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(a->labels, b->labels, a->n * sizeof(int32_t)), 0);
}

/* A glob gives the parts in name order, and their concatenation read whole or sharded
 * (a shard may span two files) is, row for row, the one file's: rows, K, the shard's
 * place in the whole. */
static void test_files_concatenation(void)
{
    char pattern[700];
    snprintf(pattern, sizeof pattern, "%s/part-*.h5", g_dir);
    struct dataset_files f;
    expand(&f, (const char *[]){pattern}, 1);
    CU_ASSERT_EQUAL_FATAL(f.n, 3);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(f.path[i], tu_fmt("/part-%zu.h5", i)));
    CU_ASSERT_PTR_NOT_NULL(strstr(f.name, "part-0.h5 and 2 more files"));

    struct dmlp_error e;
    struct dataset *one = NULL, *many = NULL;
    CU_ASSERT_EQUAL(dataset_read(&one, g_contig, &e), DMLP_OK);
    CU_ASSERT_EQUAL(dataset_read_files(&many, &f, &e), DMLP_OK);
    if (one && many)
        same_rows(one, many);
    CU_ASSERT_EQUAL(many ? many->k : 0, BIG_LABEL + 1);
    dataset_free(&one);
    dataset_free(&many);

    struct dist *world = NULL;
    dist_create_world(&world, &e);
    struct dataset_shard a, b;
    CU_ASSERT_EQUAL(dataset_read_shard(&one, g_contig, world, &a, &e), DMLP_OK);
    CU_ASSERT_EQUAL(dataset_read_files_shard(&many, &f, world, &b, &e), DMLP_OK);
    if (one && many) {
        same_rows(one, many); /* K agreed: only the last rank holds label 9 */
        CU_ASSERT_EQUAL(a.row0, b.row0);
        CU_ASSERT_EQUAL(a.global_rows, b.global_rows);
    }
    dataset_free(&one);
    dataset_free(&many);
    dist_free(&world);
    dataset_files_free(&f);
}

/* Each file is checked before any value is read, and every rank gets the same message,
 * naming the file at fault (and, for a difference, the set's first file). */
static void test_files_errors(void)
{
    char p0[700], wide[700], missing[700], pattern[700];
    snprintf(p0, sizeof p0, "%s/part-0.h5", g_dir);
    snprintf(wide, sizeof wide, "%s/wide.h5", g_dir);
    snprintf(missing, sizeof missing, "%s/gone.h5", g_dir);
    struct dataset_files f;
    expand(&f, (const char *[]){p0, wide}, 2);
    expect_agreed_in(&f, wide, tu_fmt("/features: columns 4, but %s (the first file of the "
                                      "set) has 3", p0));
    dataset_files_free(&f);
    expand(&f, (const char *[]){p0, missing}, 2);
    expect_agreed_in(&f, missing, "cannot open: No such file or directory");
    dataset_files_free(&f);
    /* the second file's row 77: the file's own row numbers, not the concatenation's */
    expand(&f, (const char *[]){p0, g_nan}, 2);
    expect_agreed_in(&f, g_nan, "/features: row 77, column 1 is NaN");
    dataset_files_free(&f);

    struct dmlp_error e;
    snprintf(pattern, sizeof pattern, "%s/nothing-*.h5", g_dir);
    CU_ASSERT_EQUAL(dataset_files_expand(&f, (char *[]){pattern}, 1, "data.test", &e),
                    DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, tu_fmt("data.test: '%s' matches no file", pattern)));
    CU_ASSERT_EQUAL(f.n, 0);
}

static CU_TestInfo shard_tests[] = {
    {"contiguous file: own slice only, every row once, K agreed", test_shard_contiguous},
    {"chunked + deflate file: the same, through filtered reads", test_shard_chunked},
    {"a rank with no rows (N < n) takes part", test_shard_empty_rank},
    {"validation split: union of shard splits == replicated split", test_split_consistent},
    {"standardisation stats reduced == one process", test_stats_reduced},
    {"missing file and one rank's bad row: same error everywhere", test_errors_agreed},
    {"several files (a glob): the one file's rows, whole and sharded", test_files_concatenation},
    {"several files: a different width, a missing file, a bad row", test_files_errors},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"shard", NULL, NULL, NULL, NULL, shard_tests},
    CU_SUITE_INFO_NULL,
};

/* The parts of test_files_*, and wide.h5 (D + 1 columns). */
static int make_parts(void)
{
    for (size_t i = 0; i < 3; i++)
        if (make_rows(tu_fmt("%s/part-%zu.h5", g_dir, i), part_rows[i],
                      part_rows[i + 1] - part_rows[i], 0, 0, -1))
            return -1;
    struct dataset *w = NULL;
    struct dmlp_error e;
    int rc = dataset_alloc(&w, 5, D + 1, 4, 1, &e);
    if (rc == DMLP_OK)
        rc = dataset_write(w, tu_fmt("%s/wide.h5", g_dir), &e);
    dataset_free(&w);
    return rc == DMLP_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (tu_mpi_begin(&argc, &argv, &g_rank, &g_size, g_dir, sizeof g_dir, "shard"))
        return 1;
    if (g_size > 64) {
        if (g_rank == 0) {
            fprintf(stderr, "test_shard: at most 64 ranks\n");
            tu_rmtree(g_dir);
        }
        MPI_Finalize();
        return 1;
    }
    snprintf(g_contig, sizeof g_contig, "%s/contig.h5", g_dir);
    snprintf(g_chunked, sizeof g_chunked, "%s/chunked.h5", g_dir);
    snprintf(g_nan, sizeof g_nan, "%s/nan.h5", g_dir);
    snprintf(g_tiny, sizeof g_tiny, "%s/tiny.h5", g_dir);
    int bad = 0;
    if (g_rank == 0)
        bad = make_file(g_contig, N, 0, 0, -1) || make_file(g_chunked, N, 1, 12, -1) ||
              make_file(g_nan, N, 0, 0, 77) || make_file(g_tiny, 2, 0, 0, -1) ||
              make_parts();
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad) {
        if (g_rank == 0)
            fprintf(stderr, "test_shard: cannot write the test files in %s\n", g_dir);
        MPI_Finalize();
        return 1;
    }

    const int code = tu_run_mpi(suites, g_rank, g_dir);
    dist_finalize();
    return code;
}
