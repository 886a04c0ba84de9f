/* The streamed placement (data.placement: streamed):
 * - the order's rules: a permutation of the rows; windows of whole blocks, the short block
 *   last; without shuffle the files' order; one window: the replicated permutation;
 * - the reader gives the rows of that order, step by step across windows, files and epochs,
 *   and its opening pass sums the statistics with dataset_feature_sums's bits;
 * - training: the weights at 1, 2 and 3 ranks are the same bit for bit in reproducible mode
 *   (with standardisation, balanced class weights and /weights); one window trains exactly
 *   as the replicated placement; a run stopped mid-epoch and resumed equals one that was not;
 * - refusals: a budget too small for the windows, a window smaller than the batch, a
 *   chunked file, a bad value in the second file, a file changed while training (every
 *   rank stops with its name, nothing hangs). */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/dataset.h"
#include "data/stream.h"
#include "testutil.h"

#define MPIRUN DMLP_MPIEXEC " --oversubscribe --bind-to none -np "

enum { N = 1000, D = 4, SPLIT = 600 };

static char g_dir[512], g_a[600], g_b[600], g_whole[600], g_cfg[600];

/* Rows [row0, row0 + n): feature 0 is the row's index (a row says which it is), label
 * i % 3, weight 0.5 + (i % 5) / 4. */
static int write_rows(const char *path, size_t row0, size_t n)
{
    struct dataset *ds = NULL;
    struct dmlp_error e;
    if (dataset_alloc(&ds, n, D, 3, 1, &e) != DMLP_OK)
        return -1;
    ds->weights = malloc(n * sizeof *ds->weights);
    for (size_t i = 0; i < n; i++) {
        const size_t r = row0 + i;
        ds->features[i * D] = (float)r;
        ds->features[i * D + 1] = (float)sin(0.1 * (double)r) + 3.0f * (float)(r % 3);
        ds->features[i * D + 2] = (float)((r * 7) % 11) - 5.0f;
        ds->features[i * D + 3] = 100.0f + (float)(r % 13);
        ds->labels[i] = (int32_t)(r % 3);
        ds->weights[i] = 0.5f + (float)(r % 5) / 4.0f;
    }
    const int rc = dataset_write(ds, path, &e);
    dataset_free(&ds);
    return rc == DMLP_OK ? 0 : -1;
}

static struct stream_params params(size_t R, size_t W, int shuffle)
{
    return (struct stream_params){.block_rows = R, .window_blocks = W,
                                  .memory_bytes = (size_t)1 << 30, .batch = 50, .seed = 7,
                                  .epoch_stream = 1, .shuffle = shuffle};
}

/* ---- the order ----------------------------------------------------------------------- */

static void test_order_rules(void)
{
    uint64_t *o = malloc(N * sizeof *o), *o1 = malloc(N * sizeof *o1), *ref = malloc(N * 8);
    char *seen = calloc(N, 1);
    struct dmlp_error e;
    /* 15 blocks of 64 rows and a short one of 40; windows of 3 blocks: 6 windows */
    struct stream_params p = params(64, 3, 1);
    CU_ASSERT_EQUAL_FATAL(stream_order(o, N, &p, 0, &e), DMLP_OK);
    int perm = 1;
    for (size_t i = 0; i < N; i++) {
        perm &= o[i] < N && !seen[o[i]];
        if (o[i] < N)
            seen[o[i]] = 1;
    }
    CU_ASSERT(perm);
    int whole_blocks = 1, short_last = 1;
    for (size_t w = 0; w < 6; w++) {
        char blocks[16] = {0};
        int distinct = 0;
        for (size_t i = w * 192; i < N && i < (w + 1) * 192; i++) {
            const size_t b = (size_t)o[i] / 64;
            distinct += !blocks[b];
            blocks[b] = 1;
            short_last &= b != 15 || w == 5;
        }
        whole_blocks &= distinct <= 3 && (w < 5 ? distinct == 3 : 1);
    }
    CU_ASSERT(whole_blocks);
    CU_ASSERT(short_last);
    CU_ASSERT_EQUAL(stream_order(o1, N, &p, 1, &e), DMLP_OK);
    CU_ASSERT(memcmp(o, o1, N * sizeof *o) != 0); /* each epoch its own */
    /* without shuffle: the files' order */
    p.shuffle = 0;
    CU_ASSERT_EQUAL(stream_order(o, N, &p, 3, &e), DMLP_OK);
    int identity = 1;
    for (size_t i = 0; i < N; i++)
        identity &= o[i] == i;
    CU_ASSERT(identity);
    /* one window: the replicated placement's permutation of epoch e */
    p = params(64, 100, 1);
    for (uint64_t ep = 0; ep < 2; ep++) {
        struct rng r;
        rng_seed(&r, 7, 1 + ep);
        rng_permutation(&r, ref, N);
        CU_ASSERT_EQUAL(stream_order(o, N, &p, ep, &e), DMLP_OK);
        CU_ASSERT_EQUAL(memcmp(o, ref, N * sizeof *o), 0);
    }
    free(o);
    free(o1);
    free(ref);
    free(seen);
}

/* The reader hands out the rows of stream_order, step after step (crossing windows, the
 * two files and an epoch boundary, read ahead on its thread), and its opening pass has the
 * sums and counts of the whole set. */
static void test_reader_follows_order(void)
{
    struct dataset_files f;
    struct dmlp_error e;
    char *entries[] = {g_a, g_b};
    CU_ASSERT_EQUAL_FATAL(dataset_files_expand(&f, entries, 2, "data.train", &e), DMLP_OK);
    struct stream_params p = params(64, 3, 1);
    struct stream *s = NULL;
    CU_ASSERT_EQUAL_FATAL(stream_open(&s, &f, &p, &e), DMLP_OK);
    const struct stream_stats *st = stream_stats(s);
    CU_ASSERT_EQUAL(st->n, N);
    CU_ASSERT_EQUAL(st->k, 3);
    CU_ASSERT_EQUAL(stream_windows(s), 6);
    struct dataset *whole = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&whole, g_whole, &e), DMLP_OK);
    double sum[2 * D];
    dataset_feature_sums(whole, sum, sum + D);
    CU_ASSERT_EQUAL(memcmp(sum, st->fsum, D * sizeof(double)), 0);
    CU_ASSERT_EQUAL(memcmp(sum + D, st->fsumsq, D * sizeof(double)), 0);
    CU_ASSERT_EQUAL(st->class_count[0] + st->class_count[1] + st->class_count[2], N);
    CU_ASSERT_EQUAL(st->class_count[1], N / 3);
    stream_weigh(s, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(stream_start(s, 7, &e), DMLP_OK);
    uint64_t order[N], idx[50];
    const struct dataset *res = stream_resident(s);
    int same = 1;
    for (uint64_t ep = 0; ep < 3; ep++) {
        CU_ASSERT_EQUAL_FATAL(stream_order(order, N, &p, ep, &e), DMLP_OK);
        for (uint64_t lo = 0; lo < N; lo += 50) {
            double waited;
            CU_ASSERT_EQUAL_FATAL(stream_positions(s, ep, lo, lo + 50, idx, &waited, &e),
                                  DMLP_OK);
            for (size_t j = 0; j < 50; j++) {
                const float x = res->features[idx[j] * D];
                same &= x == (float)order[lo + j] &&
                        res->labels[idx[j]] == (int32_t)(order[lo + j] % 3);
            }
        }
    }
    CU_ASSERT(same);
    stream_close(&s);
    CU_ASSERT_PTR_NULL(s);
    dataset_free(&whole);
    dataset_files_free(&f);
}

/* ---- training ------------------------------------------------------------------------ */

static int train(int ranks, const char *dir, const char *extra)
{
    return tu_sh(MPIRUN "%d %s train %s --set checkpoint.dir=%s/%s %s", ranks, DMLP_BINARY,
                 g_cfg, g_dir, dir, extra);
}

static double diff(const char *a, const char *b)
{
    return tu_checkpoint_diff(tu_fmt("%s/%s/latest.h5", g_dir, a),
                              tu_fmt("%s/%s/latest.h5", g_dir, b));
}

/* Several windows, reproducible: the same weights at 1, 2 and 3 ranks. */
static void test_rank_counts_agree(void)
{
    const char *repro = "--set training.reproducible=true";
    CU_ASSERT_EQUAL(train(1, "r1", repro), 0);
    CU_ASSERT(tu_has("streamed: 6 windows of 192 rows an epoch"));
    CU_ASSERT_EQUAL(train(2, "r2", repro), 0);
    CU_ASSERT_EQUAL(train(3, "r3", repro), 0);
    CU_ASSERT_EQUAL(diff("r1", "r2"), 0.0);
    CU_ASSERT_EQUAL(diff("r1", "r3"), 0.0);
    /* and the plain sum: the same trajectory to float tolerance */
    CU_ASSERT_EQUAL(train(1, "f1", ""), 0);
    CU_ASSERT_EQUAL(train(2, "f2", ""), 0);
    const double d = diff("f1", "f2");
    CU_ASSERT(d >= 0 && d < 1e-4);
    printf("\n    1 vs 2 ranks, plain sums: max relative difference %.2g", d);
}

/* One window covering the set: exactly the replicated placement. */
static void test_one_window_is_replicated(void)
{
    CU_ASSERT_EQUAL(train(2, "one", "--set data.shuffle_window=1000"), 0);
    CU_ASSERT(tu_has("streamed: 1 window of 1000 rows an epoch"));
    CU_ASSERT_EQUAL(train(2, "rep", "--set data.placement=replicated"), 0);
    CU_ASSERT_EQUAL(diff("one", "rep"), 0.0);
}

/* Stopped at step 7 (inside the second window of epoch 1) and resumed: the same weights as
 * a run that went straight through. */
static void test_resume_mid_epoch(void)
{
    CU_ASSERT_EQUAL(train(2, "straight", ""), 0);
    CU_ASSERT_EQUAL(train(2, "resumed", "--set training.max_steps=7"), 0);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s train %s --set checkpoint.dir=%s/resumed --resume auto",
                          DMLP_BINARY, g_cfg, g_dir), 0);
    CU_ASSERT(tu_has("resumed from"));
    CU_ASSERT_EQUAL(diff("straight", "resumed"), 0.0);
}

/* ---- refusals ------------------------------------------------------------------------ */

static void expect_refused(int ranks, const char *extra, const char *needle)
{
    const int rc = train(ranks, "bad", extra);
    CU_ASSERT(rc == 2 || rc == 1);
    CU_ASSERT(rc != 124);
    if (!tu_has(needle))
        printf("\n    output lacks '%s':\n%s", needle, tu_out);
    CU_ASSERT(tu_has(needle));
}

/* A wide set (300 columns of zeros, label 0): 1000 rows need more than 1 MiB. */
static int write_wide(const char *path)
{
    struct dataset *ds = NULL;
    struct dmlp_error e;
    int rc = dataset_alloc(&ds, N, 300, 3, 1, &e);
    if (rc == DMLP_OK)
        rc = dataset_write(ds, path, &e);
    dataset_free(&ds);
    return rc == DMLP_OK ? 0 : -1;
}

/* Sets /features[row, 1] of a written file to NaN, in place. */
static int poison(const char *path, hsize_t row)
{
    const float nan = NAN;
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(file, "/features", H5P_DEFAULT);
    hid_t fs = H5Dget_space(ds);
    hsize_t at[2] = {row, 1}, one[2] = {1, 1};
    hid_t ms = H5Screate_simple(2, one, NULL);
    const int ok = H5Sselect_hyperslab(fs, H5S_SELECT_SET, at, NULL, one, NULL) >= 0 &&
                   H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &nan) >= 0;
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(ds);
    return H5Fclose(file) >= 0 && ok ? 0 : -1;
}

/* A chunked, compressed copy of the set's first file. */
static int write_chunked(const char *path)
{
    float x[SPLIT * D] = {0};
    int32_t y[SPLIT] = {0};
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t fd[2] = {SPLIT, D}, yd[1] = {SPLIT}, fc[2] = {64, D}, yc[1] = {64};
    hid_t fp = H5Pcreate(H5P_DATASET_CREATE), yp = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(fp, 2, fc);
    H5Pset_deflate(fp, 4);
    H5Pset_chunk(yp, 1, yc);
    hid_t fs = H5Screate_simple(2, fd, NULL), ys = H5Screate_simple(1, yd, NULL);
    hid_t f = H5Dcreate2(file, "/features", H5T_IEEE_F32LE, fs, H5P_DEFAULT, fp, H5P_DEFAULT);
    hid_t l = H5Dcreate2(file, "/labels", H5T_STD_I32LE, ys, H5P_DEFAULT, yp, H5P_DEFAULT);
    const int ok = H5Dwrite(f, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0 &&
                   H5Dwrite(l, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0;
    H5Dclose(f);
    H5Dclose(l);
    H5Sclose(fs);
    H5Sclose(ys);
    H5Pclose(fp);
    H5Pclose(yp);
    return H5Fclose(file) >= 0 && ok ? 0 : -1;
}

static void test_refusals(void)
{
    char wide[700];
    snprintf(wide, sizeof wide, "%s/wide.h5", g_dir);
    CU_ASSERT_EQUAL_FATAL(write_wide(wide), 0);
    expect_refused(2, tu_fmt("--set data.train=%s --set data.memory_mb=1 --set "
                             "data.block_rows=100000 --set data.class_weights=", wide),
                   "data.memory_mb 1 cannot hold the 1 window of 1000 rows");
    expect_refused(2, "--set data.block_rows=8 --set data.shuffle_window=2",
                   "data.block_rows × data.shuffle_window = 16 rows is less than "
                   "training.batch_size 50");
    char chunked[700], nan[700];
    snprintf(chunked, sizeof chunked, "%s/chunked.h5", g_dir);
    snprintf(nan, sizeof nan, "%s/nan.h5", g_dir);
    CU_ASSERT_EQUAL_FATAL(write_chunked(chunked), 0);
    expect_refused(2, tu_fmt("--set data.train=%s", chunked),
                   "chunked.h5: /features: the streamed placement reads plain contiguous, "
                   "uncompressed float32 arrays; this one is chunked or compact");
    CU_ASSERT_EQUAL_FATAL(write_rows(nan, SPLIT, N - SPLIT), 0);
    CU_ASSERT_EQUAL_FATAL(poison(nan, 5), 0);
    expect_refused(2, tu_fmt("--set data.train=[%s,%s]", g_a, nan),
                   "nan.h5: /features: row 5, column 1 is NaN");
    expect_refused(1, "--set data.validation_fraction=0.1",
                   "data.validation_fraction: is not available with data.placement streamed");
}

/* A file touched while a run streams it (once the run has logged an epoch, so after its
 * opening pass recorded the file: an event, not a time): every rank stops at the same step
 * with its name; the run does not hang and leaves its last checkpoint as it was. */
static void test_file_changed(void)
{
    char copy[700];
    snprintf(copy, sizeof copy, "%s/moving.h5", g_dir);
    CU_ASSERT_EQUAL_FATAL(write_rows(copy, SPLIT, N - SPLIT), 0);
    const int rc = tu_sh("( " MPIRUN "2 %s train %s --quiet --set data.train=[%s,%s] "
                         "--set training.epochs=1000000 --set checkpoint.every_epochs=0 "
                         "--set checkpoint.dir=%s/moving & pid=$!; t=$(( $(date +%%s) + 60 )); "
                         "until grep -qs '\"event\": \"epoch\"' %s/moving/metrics.jsonl; do "
                         "if [ $(date +%%s) -ge $t ] || ! kill -0 $pid 2>/dev/null; then break; "
                         "fi; sleep 0.05; done; touch %s; wait $pid )", DMLP_BINARY, g_cfg, g_a,
                         copy, g_dir, g_dir, copy);
    CU_ASSERT(rc == 2);
    CU_ASSERT(tu_has("moving.h5: the file changed while training"));
}

static CU_TestInfo order_tests[] = {
    {"the order: whole blocks in windows, short block last, one window = replicated",
     test_order_rules},
    {"the reader follows the order across windows, files and epochs", test_reader_follows_order},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo train_tests[] = {
    {"1, 2 and 3 ranks: the same weights (reproducible: bit for bit)", test_rank_counts_agree},
    {"one window trains as replicated, bit for bit", test_one_window_is_replicated},
    {"stopped mid-epoch and resumed: the same weights", test_resume_mid_epoch},
    {"refusals: budget, window, chunked file, bad value, validation split", test_refusals},
    {"a file changed while training stops every rank", test_file_changed},
    CU_TEST_INFO_NULL,
};
static CU_SuiteInfo suites[] = {
    {"stream: order and reader", NULL, NULL, NULL, NULL, order_tests},
    {"stream: training", NULL, NULL, NULL, NULL, train_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "stream");
    snprintf(g_a, sizeof g_a, "%s/part-a.h5", g_dir);
    snprintf(g_b, sizeof g_b, "%s/part-b.h5", g_dir);
    snprintf(g_whole, sizeof g_whole, "%s/whole.h5", g_dir);
    snprintf(g_cfg, sizeof g_cfg, "%s/stream.yaml", g_dir);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - {units: 8, activation: tanh}\n"
             "    - {units: 3, activation: softmax}\n"
             "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
             "data:\n  train: [%s, %s]\n  placement: streamed\n  block_rows: 64\n"
             "  shuffle_window: 3\n  normalize: standard\n  class_weights: balanced\n"
             "training: {epochs: 3, batch_size: 50, seed: 11}\n"
             "checkpoint: {every_epochs: 1}\n", g_a, g_b);
    if (write_rows(g_a, 0, SPLIT) || write_rows(g_b, SPLIT, N - SPLIT) ||
        write_rows(g_whole, 0, N) || tu_write_file(g_cfg, yaml)) {
        fprintf(stderr, "test_stream: cannot write the test files in %s\n", g_dir);
        return 1;
    }
    int rc = tu_run(suites);
    tu_rmtree(g_dir);
    return rc;
}
