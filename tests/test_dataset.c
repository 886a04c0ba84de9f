#define _POSIX_C_SOURCE 200809L
/* Tests of the dataset module: HDF5 round trips with exact values, the IDX importer on
 * small generated files (gzip and plain), every rejected input with a message naming the
 * file and the culprit, the atomic write, dataset_describe's output, row-range reads, the
 * validation split and standardisation. Bad HDF5 files are built here with the HDF5 API,
 * so each test shows exactly what it feeds in. */
#include "data/dataset.h"
#include "testutil.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define PATH_CAP 1024

static char g_dir[512];

static int suite_init(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "dataset");
    return 0;
}

static int suite_clean(void)
{
    tu_rmtree(g_dir);
    return 0;
}

/* Open HDF5 files and objects in them (datasets, groups, attributes, named types), which
 * must all be closed after every call: HDF5 frees them at exit, so a leaked id would
 * escape valgrind, but it keeps the file open. (Transient dataspaces and types cannot be
 * counted through the public API.) */
static long long g_ids_baseline = -1;

static long long h5_open_ids(void)
{
    return (long long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
}

static void check_ids_at(int line)
{
    long long now = h5_open_ids();
    if (now != g_ids_baseline)
        fprintf(stderr, "\n  line %d: %lld HDF5 ids open, %lld at start\n", line, now,
                g_ids_baseline);
    CU_assertImplementation(now == g_ids_baseline, (unsigned)line, "no HDF5 id left open",
                            __FILE__, "", CU_FALSE);
}
#define CHECK_IDS() check_ids_at(__LINE__)

static void tpath(char *out, const char *name) { snprintf(out, PATH_CAP, "%s/%s", g_dir, name); }

/* Asserts a failure with the given code whose message contains every non-NULL needle;
 * reports the caller's line and prints the message on a mismatch. */
static void expect_fail_at(int line, int rc, const struct dmlp_error *err, int code,
                           const char *n1, const char *n2, const char *n3)
{
    CU_assertImplementation(rc == code, (unsigned)line, "status code", __FILE__, "", CU_FALSE);
    CU_assertImplementation(err->code == code, (unsigned)line, "err->code", __FILE__, "",
                            CU_FALSE);
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++) {
        if (!needles[i])
            continue;
        int found = strstr(err->msg, needles[i]) != NULL;
        if (!found)
            fprintf(stderr, "\n  line %d: message \"%s\" lacks \"%s\"\n", line, err->msg,
                    needles[i]);
        CU_assertImplementation(found, (unsigned)line, "message names the culprit", __FILE__,
                                "", CU_FALSE);
    }
    if (rc != code)
        fprintf(stderr, "\n  line %d: rc %d (expected %d): %s\n", line, rc, code, err->msg);
    check_ids_at(line);
}
#define EXPECT_FAIL(rc, err, code, n1, n2, n3) expect_fail_at(__LINE__, rc, err, code, n1, n2, n3)

/* ---- fixtures ---------------------------------------------------------------------------- */

/* A labelled dataset [5, 3] with labels {0,1,2,1,0} and k = 4 (one class unused). */
static struct dataset *make_labelled(void)
{
    struct dataset *ds;
    struct dmlp_error err;
    if (dataset_alloc(&ds, 5, 3, 4, 1, &err) != DMLP_OK)
        return NULL;
    for (size_t i = 0; i < 15; i++)
        ds->features[i] = (float)i * 0.1f - 0.7f + 1e-7f * (float)(i * i);
    const int32_t y[5] = {0, 1, 2, 1, 0};
    memcpy(ds->labels, y, sizeof y);
    return ds;
}

static struct dataset *make_regression(void)
{
    struct dataset *ds;
    struct dmlp_error err;
    if (dataset_alloc(&ds, 4, 2, 3, 0, &err) != DMLP_OK)
        return NULL;
    for (size_t i = 0; i < 8; i++)
        ds->features[i] = 1.0f / (float)(i + 3);
    for (size_t i = 0; i < 12; i++)
        ds->targets[i] = (float)i * -2.5f + 3.0f;
    return ds;
}

/* Writes one array to an open HDF5 file (data NULL: create only). */
static void h5_put(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int rank,
                   const hsize_t *dims, const void *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dset = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT);
    CU_ASSERT_FATAL(dset >= 0);
    if (data)
        CU_ASSERT(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(dset);
    H5Sclose(space);
}

static void h5_put_int_attr(hid_t file, const char *obj, const char *name, int value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate_by_name(file, obj, name, H5T_STD_I32LE, space, H5P_DEFAULT,
                                   H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(attr >= 0);
    H5Awrite(attr, H5T_NATIVE_INT, &value);
    H5Aclose(attr);
    H5Sclose(space);
}

/* A file with /features float [rows, 3] (values 0.1*i, with nan_at >= 0 made NaN) and,
 * as asked, /labels int32 [label_rows] from labels, and /targets float [rows, 2]. */
struct h5_spec {
    int features;         /* write /features */
    size_t rows;          /* of /features */
    long nan_at;          /* flat index made NaN, or -1 */
    int features_rank;    /* 2, or 3 for the wrong shape */
    const int32_t *labels;/* NULL: no /labels */
    size_t label_rows;
    int float_labels;     /* /labels as float64 */
    int num_classes;      /* attribute on /labels when > 0 */
    int targets;          /* write /targets [rows, 2] */
};

static void make_h5(const char *path, const struct h5_spec *s)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(file >= 0);
    float f[64] = {0};
    for (size_t i = 0; i < 64; i++)
        f[i] = 0.1f * (float)i;
    if (s->nan_at >= 0)
        f[s->nan_at] = NAN;
    if (s->features) {
        hsize_t dims3[3] = {s->rows, 3, 2};
        h5_put(file, "/features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, s->features_rank, dims3,
               s->rows ? f : NULL);
    }
    if (s->labels || s->float_labels) {
        hsize_t dims[1] = {s->label_rows};
        if (s->float_labels) {
            double y[8] = {0, 1, 0, 1, 0, 1, 0, 1};
            h5_put(file, "/labels", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dims, y);
        } else {
            h5_put(file, "/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims,
                   s->label_rows ? s->labels : NULL);
        }
        if (s->num_classes > 0)
            h5_put_int_attr(file, "/labels", "num_classes", s->num_classes);
    }
    if (s->targets) {
        hsize_t dims[2] = {s->rows, 2};
        h5_put(file, "/targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, f);
    }
    H5Fclose(file);
}

static void be32_put(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* Writes bytes to path, gzip-compressed (gzopen "wb") or plain. */
static void write_bytes(const char *path, const unsigned char *b, size_t n, int gzip)
{
    if (gzip) {
        gzFile gz = gzopen(path, "wb");
        CU_ASSERT_FATAL(gz != NULL);
        CU_ASSERT(gzwrite(gz, b, (unsigned)n) == (int)n);
        CU_ASSERT(gzclose(gz) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT(fwrite(b, 1, n, f) == n);
        CU_ASSERT(fclose(f) == 0);
    }
}

/* An IDX images file: magic, dims (n, rows, cols), then `have` pixel bytes (pixel i = 37*i
 * mod 256, which covers 0 and 255 across a few images). */
static void write_idx_images(const char *path, uint32_t magic, uint32_t n, uint32_t rows,
                             uint32_t cols, size_t have, int gzip)
{
    size_t len = 16 + have;
    unsigned char *b = malloc(len);
    CU_ASSERT_FATAL(b != NULL);
    be32_put(b, magic);
    be32_put(b + 4, n);
    be32_put(b + 8, rows);
    be32_put(b + 12, cols);
    for (size_t i = 0; i < have; i++)
        b[16 + i] = (unsigned char)((37 * i) % 256);
    write_bytes(path, b, len, gzip);
    free(b);
}

static void write_idx_labels(const char *path, uint32_t magic, uint32_t n,
                             const unsigned char *y, size_t have, int gzip)
{
    unsigned char b[64];
    be32_put(b, magic);
    be32_put(b + 4, n);
    memcpy(b + 8, y, have);
    write_bytes(path, b, 8 + have, gzip);
}

/* Whole file into memory (for byte comparisons); *len set. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *b = malloc(size > 0 ? (size_t)size : 1);
    *len = b ? fread(b, 1, (size_t)size, f) : 0;
    fclose(f);
    return b;
}

static int leftover_tmp_files(void)
{
    DIR *d = opendir(g_dir);
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        count += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return count;
}

/* ---- round trips ------------------------------------------------------------------------- */

static void test_roundtrip_labels(void)
{
    char p[PATH_CAP];
    tpath(p, "labels.h5");
    struct dataset *ds = make_labelled(), *back = NULL;
    struct dmlp_error err;
    CU_ASSERT_FATAL(ds != NULL);
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p, &err), DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(dataset_read(&back, p, &err), DMLP_OK);
    CU_ASSERT_EQUAL(back->n, 5);
    CU_ASSERT_EQUAL(back->d, 3);
    CU_ASSERT_EQUAL(back->k, 4); /* from num_classes, though the largest label is 2 */
    CU_ASSERT_PTR_NULL(back->targets);
    CU_ASSERT_FATAL(back->labels != NULL);
    /* float32 in, float32 out: bit-exact. */
    CU_ASSERT(memcmp(back->features, ds->features, 15 * sizeof(float)) == 0);
    CU_ASSERT(memcmp(back->labels, ds->labels, 5 * sizeof(int32_t)) == 0);
    CU_ASSERT_EQUAL((uintptr_t)back->features % 64, 0);
    CU_ASSERT_EQUAL((uintptr_t)back->labels % 64, 0);
    CU_ASSERT_EQUAL(leftover_tmp_files(), 0);

    /* The root attribute marks the file's format. */
    hid_t file = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(file >= 0);
    hid_t attr = H5Aopen(file, "format", H5P_DEFAULT);
    CU_ASSERT_FATAL(attr >= 0);
    hid_t type = H5Aget_type(attr);
    char text[64] = {0};
    CU_ASSERT(H5Tget_size(type) < sizeof text);
    CU_ASSERT(H5Aread(attr, type, text) >= 0);
    CU_ASSERT_STRING_EQUAL(text, "dmlp-dataset");
    H5Tclose(type);
    H5Aclose(attr);
    H5Fclose(file);

    dataset_free(&ds);
    dataset_free(&back);
    CU_ASSERT_PTR_NULL(back);
    CHECK_IDS();
}

static void test_roundtrip_targets(void)
{
    char p[PATH_CAP];
    tpath(p, "targets.h5");
    struct dataset *ds = make_regression(), *back = NULL;
    struct dmlp_error err;
    CU_ASSERT_FATAL(ds != NULL);
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p, &err), DMLP_OK);
    /* Writing again over an existing file replaces it. */
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p, &err), DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(dataset_read(&back, p, &err), DMLP_OK);
    CU_ASSERT_EQUAL(back->n, 4);
    CU_ASSERT_EQUAL(back->d, 2);
    CU_ASSERT_EQUAL(back->k, 3);
    CU_ASSERT_PTR_NULL(back->labels);
    CU_ASSERT_FATAL(back->targets != NULL);
    CU_ASSERT(memcmp(back->features, ds->features, 8 * sizeof(float)) == 0);
    CU_ASSERT(memcmp(back->targets, ds->targets, 12 * sizeof(float)) == 0);
    dataset_free(&ds);
    dataset_free(&back);
}

/* A file as another tool would write it: float64 features, uint8 labels, no num_classes.
 * Values are exactly representable in float, so the conversion must be exact; K is
 * max label + 1. */
static void test_read_foreign_types(void)
{
    char p[PATH_CAP];
    tpath(p, "foreign.h5");
    hid_t file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(file >= 0);
    double f[6] = {0.5, -0.25, 1024.0, 3.0, -7.125, 0.0};
    uint8_t y[3] = {6, 0, 2};
    hsize_t fd[2] = {3, 2}, yd[1] = {3};
    h5_put(file, "/features", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, fd, f);
    h5_put(file, "/labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, y);
    const double w[3] = {1.0, 0.0, 2.5}; /* sample weights, stored as float64 */
    h5_put(file, "/weights", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, yd, w);
    H5Fclose(file);

    struct dataset *ds = NULL;
    struct dmlp_error err;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, p, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->k, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds->weights);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(ds->weights[i], (float)w[i]);
    for (size_t i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(ds->features[i], (float)f[i]);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(ds->labels[i], y[i]);
    dataset_free(&ds);

    FILE *out = tmpfile();
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_EQUAL(dataset_describe(out, p, &err), DMLP_OK);
    char text[2048] = {0};
    rewind(out);
    CU_ASSERT(fread(text, 1, sizeof text - 1, out) > 0);
    fclose(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "features  float64 [3, 2]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "labels    uint8 [3], 7 classes"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "weights   [3]: min 0, mean 1.16667, max 2.5, 1 zero"));
    CHECK_IDS();
}

/* ---- IDX import -------------------------------------------------------------------------- */

/* 3 images of 2 x 4 and labels; checks shape, features == pixel / 255 and labels. */
static void check_idx_import(int gzip, const unsigned char *y, size_t expect_k)
{
    char im[PATH_CAP], lb[PATH_CAP], out[PATH_CAP];
    tpath(im, gzip ? "img.idx3.gz" : "img.idx3");
    tpath(lb, gzip ? "lbl.idx1.gz" : "lbl.idx1");
    tpath(out, gzip ? "idx_gz.h5" : "idx_plain.h5");
    write_idx_images(im, 0x00000803, 3, 2, 4, 24, gzip);
    write_idx_labels(lb, 0x00000801, 3, y, 3, gzip);

    struct dmlp_error err;
    int rc = dataset_import_idx(im, lb, out, &err);
    if (rc != DMLP_OK)
        fprintf(stderr, "\n  import failed: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, DMLP_OK);
    struct dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, out, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->n, 3);
    CU_ASSERT_EQUAL(ds->d, 8);
    CU_ASSERT_EQUAL(ds->k, expect_k);
    int exact = 1;
    for (size_t i = 0; i < 24; i++)
        exact &= ds->features[i] == (float)((37 * i) % 256) / 255.0f;
    CU_ASSERT(exact);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(ds->labels[i], y[i]);
    dataset_free(&ds);
    CHECK_IDS();
}

static void test_idx_gzip(void)
{
    const unsigned char y[3] = {3, 0, 9};
    check_idx_import(1, y, 10); /* ten classes even when a small file misses some */
}

static void test_idx_plain(void)
{
    const unsigned char y[3] = {11, 0, 4};
    check_idx_import(0, y, 12); /* max label + 1 when above ten */
}

/* The real Fashion-MNIST test set, if this machine has it: every pixel and label is
 * compared against the raw bytes read independently through zlib. */
static void test_idx_fashion_mnist(void)
{
    const char *im = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lb = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(im, R_OK) != 0 || access(lb, R_OK) != 0) {
        printf("\n  note: %s not present; skipping the real-data import\n", im);
        return;
    }
    char out[PATH_CAP];
    tpath(out, "fashion_t10k.h5");
    struct dmlp_error err;
    CU_ASSERT_EQUAL_FATAL(dataset_import_idx(im, lb, out, &err), DMLP_OK);
    struct dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, out, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->n, 10000);
    CU_ASSERT_EQUAL(ds->d, 784);
    CU_ASSERT_EQUAL(ds->k, 10);

    size_t nbytes = 16 + 10000 * 784;
    unsigned char *raw = malloc(nbytes);
    CU_ASSERT_FATAL(raw != NULL);
    gzFile gz = gzopen(im, "rb");
    CU_ASSERT_FATAL(gz != NULL);
    CU_ASSERT(gzread(gz, raw, (unsigned)nbytes) == (int)nbytes);
    gzclose(gz);
    size_t bad = 0;
    for (size_t i = 0; i < 10000 * 784; i++)
        bad += ds->features[i] != (float)raw[16 + i] / 255.0f;
    CU_ASSERT_EQUAL(bad, 0);
    gz = gzopen(lb, "rb");
    CU_ASSERT_FATAL(gz != NULL);
    CU_ASSERT(gzread(gz, raw, 8 + 10000) == 8 + 10000);
    gzclose(gz);
    bad = 0;
    for (size_t i = 0; i < 10000; i++)
        bad += ds->labels[i] != raw[8 + i];
    CU_ASSERT_EQUAL(bad, 0);
    free(raw);
    dataset_free(&ds);
    CHECK_IDS();
}

static void test_idx_errors(void)
{
    char im[PATH_CAP], lb[PATH_CAP], out[PATH_CAP], missing[PATH_CAP];
    const unsigned char y[4] = {1, 2, 3, 4};
    struct dmlp_error err;
    tpath(lb, "ok_labels.idx1.gz");
    tpath(out, "never.h5");
    write_idx_labels(lb, 0x00000801, 3, y, 3, 1);

    /* Truncated, gzip: the short read is found while decompressing. */
    tpath(im, "trunc.idx3.gz");
    write_idx_images(im, 0x00000803, 3, 2, 4, 20, 1);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "trunc.idx3.gz",
                "truncated", "expected 24 bytes of pixels");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "found 20"));

    /* Truncated, plain: found from the file size, before allocating. */
    tpath(im, "trunc.idx3");
    write_idx_images(im, 0x00000803, 3, 2, 4, 23, 0);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "trunc.idx3",
                "expected 24 bytes of pixels", "found 23");

    /* Truncated header. */
    tpath(im, "short_header.idx3");
    write_bytes(im, (const unsigned char *)"\0\0\x08\x03\0\0", 6, 0);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT,
                "short_header.idx3", "16-byte IDX header", "found 6");

    /* Bad magic, and images and labels swapped. */
    tpath(im, "magic.idx3.gz");
    write_idx_images(im, 0x00000804, 3, 2, 4, 24, 1);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "magic.idx3.gz",
                "0x00000804", "expected 0x00000803");
    tpath(im, "good.idx3.gz");
    write_idx_images(im, 0x00000803, 3, 2, 4, 24, 1);
    EXPECT_FAIL(dataset_import_idx(lb, im, out, &err), &err, DMLP_ERR_INPUT, "ok_labels.idx1.gz",
                "bad magic 0x00000801", "expected 0x00000803");

    /* Counts that disagree. */
    tpath(lb, "four_labels.idx1");
    write_idx_labels(lb, 0x00000801, 4, y, 4, 0);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT,
                "four_labels.idx1 has 4 labels", "good.idx3.gz has 3 images", NULL);

    /* Labels truncated. */
    tpath(lb, "short_labels.idx1.gz");
    write_idx_labels(lb, 0x00000801, 3, y, 2, 1);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT,
                "short_labels.idx1.gz", "truncated", "found 2");

    /* More data than the header announces. */
    tpath(lb, "ok_labels.idx1.gz");
    tpath(im, "long.idx3");
    write_idx_images(im, 0x00000803, 3, 2, 4, 25, 0);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "long.idx3",
                "more data after the 3 images", NULL);

    /* Implausible dims: zero, a product that overflows, a header promising far more than a
     * small gzip file can hold. */
    tpath(im, "zero.idx3");
    write_idx_images(im, 0x00000803, 3, 0, 4, 0, 0);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "zero.idx3",
                "3 images of 0 x 4", NULL);
    tpath(im, "huge.idx3.gz");
    tpath(lb, "huge_labels.idx1");
    write_idx_images(im, 0x00000803, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0, 1);
    write_idx_labels(lb, 0x00000801, 0xffffffffu, y, 0, 0);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "huge.idx3.gz",
                "overflows", NULL);
    write_idx_images(im, 0x00000803, 0xffffffffu, 28, 28, 0, 1);
    EXPECT_FAIL(dataset_import_idx(im, lb, out, &err), &err, DMLP_ERR_INPUT, "huge.idx3.gz",
                "truncated", "compressed bytes");

    /* Missing file. */
    tpath(missing, "no_such_images.gz");
    tpath(lb, "ok_labels.idx1.gz");
    EXPECT_FAIL(dataset_import_idx(missing, lb, out, &err), &err, DMLP_ERR_INPUT,
                "no_such_images.gz", "No such file", NULL);

    CU_ASSERT_EQUAL(access(out, F_OK), -1); /* no failed import wrote an output */
}

/* ---- rejected HDF5 files ------------------------------------------------------------------ */

static const int32_t good_labels[8] = {0, 1, 2, 1, 0, 1, 2, 0};

/* Builds the file from spec, reads it, and expects DMLP_ERR_INPUT naming file and culprit. */
static void expect_bad_at(int line, const char *name, const struct h5_spec *spec,
                          const char *n1, const char *n2)
{
    char p[PATH_CAP];
    tpath(p, name);
    make_h5(p, spec);
    static struct dataset sentinel;
    struct dataset *ds = &sentinel; /* must be set to NULL on failure */
    struct dmlp_error err;
    int rc = dataset_read(&ds, p, &err);
    expect_fail_at(line, rc, &err, DMLP_ERR_INPUT, name, n1, n2);
    CU_assertImplementation(ds == NULL, (unsigned)line, "*out is NULL on error", __FILE__, "",
                            CU_FALSE);
}
#define EXPECT_BAD(name, spec, n1, n2) expect_bad_at(__LINE__, name, spec, n1, n2)

static void test_read_errors(void)
{
    struct h5_spec s;
    struct dmlp_error err;
    struct dataset *ds = NULL;
    char p[PATH_CAP];

    /* A good file first, so the failures below are each down to their one change. */
    s = (struct h5_spec){1, 5, -1, 2, good_labels, 5, 0, 0, 0};
    tpath(p, "good.h5");
    make_h5(p, &s);
    CU_ASSERT_EQUAL(dataset_read(&ds, p, &err), DMLP_OK);
    CU_ASSERT(ds && ds->k == 3);
    dataset_free(&ds);

    tpath(p, "missing.h5");
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "missing.h5",
                "cannot open: No such file or directory", NULL);
    CU_ASSERT_PTR_NULL(ds);
    tpath(p, "text.h5");
    CU_ASSERT_EQUAL_FATAL(tu_write_file(p, "features,label\n1,2\n"), 0);
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "text.h5",
                "not an HDF5 file", NULL);
    EXPECT_FAIL(dataset_read(&ds, g_dir, &err), &err, DMLP_ERR_INPUT, g_dir, "directory",
                NULL);

    s = (struct h5_spec){1, 5, -1, 2, good_labels, 4, 0, 0, 0};
    EXPECT_BAD("rows.h5", &s, "/labels: 4 rows, but /features has 5", NULL);
    const int32_t neg[5] = {0, 1, -1, 1, 0};
    s = (struct h5_spec){1, 5, -1, 2, neg, 5, 0, 0, 0};
    EXPECT_BAD("negative.h5", &s, "/labels: value -1 at row 2 is negative", NULL);
    s = (struct h5_spec){1, 5, 5, 2, good_labels, 5, 0, 0, 0};
    EXPECT_BAD("nan.h5", &s, "/features: row 1, column 2 is NaN", NULL);
    s = (struct h5_spec){0, 5, -1, 2, good_labels, 5, 0, 0, 0};
    EXPECT_BAD("nofeatures.h5", &s, "/features: missing", NULL);
    s = (struct h5_spec){1, 5, -1, 2, good_labels, 5, 0, 0, 1};
    EXPECT_BAD("both.h5", &s, "has both /labels and /targets", NULL);
    s = (struct h5_spec){1, 5, -1, 2, NULL, 0, 0, 0, 0};
    EXPECT_BAD("neither.h5", &s, "has neither /labels nor /targets", NULL);
    s = (struct h5_spec){1, 5, -1, 3, good_labels, 5, 0, 0, 0};
    EXPECT_BAD("rank3.h5", &s, "/features: expected 2-D float array, got 3-D", NULL);
    s = (struct h5_spec){1, 0, -1, 2, good_labels, 0, 0, 0, 0};
    EXPECT_BAD("empty.h5", &s, "/features: empty (0 rows", NULL);
    s = (struct h5_spec){1, 5, -1, 2, NULL, 5, 1, 0, 0};
    EXPECT_BAD("floatlabels.h5", &s, "/labels: expected integer class labels, got float64",
               NULL);
    s = (struct h5_spec){1, 5, -1, 2, good_labels, 5, 0, 2, 0};
    EXPECT_BAD("numclasses.h5", &s, "/labels: num_classes attribute is 2, but label 2 at row 2",
               NULL);
    s = (struct h5_spec){1, 5, 13, 2, NULL, 0, 0, 0, 1};
    EXPECT_BAD("nan_regression.h5", &s, "/features: row 4, column 1 is NaN", NULL);

    /* /targets with the wrong row count, and a non-finite target. */
    tpath(p, "targets_rows.h5");
    hid_t file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    float f[6] = {1, 2, 3, 4, 5, 6}, t[3] = {1, INFINITY, 3};
    hsize_t fd[2] = {3, 2}, td[2] = {3, 1}, td2[2] = {2, 1};
    h5_put(file, "/features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, fd, f);
    h5_put(file, "/targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, td2, t);
    H5Fclose(file);
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "targets_rows.h5",
                "/targets: 2 rows, but /features has 3", NULL);
    tpath(p, "targets_inf.h5");
    file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    h5_put(file, "/features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, fd, f);
    h5_put(file, "/targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, td, t);
    H5Fclose(file);
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "targets_inf.h5",
                "/targets: row 1, column 0 is +inf", NULL);

    /* A label beyond int32 in an int64 file is reported, not clipped. */
    tpath(p, "wide.h5");
    file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int64_t wide[3] = {0, 1, (int64_t)1 << 40};
    hsize_t yd[1] = {3};
    h5_put(file, "/features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, fd, f);
    h5_put(file, "/labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, wide);
    H5Fclose(file);
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "wide.h5",
                "/labels: value 1099511627776 at row 2 does not fit in int32", NULL);

    /* An HDF5 file cut short: the signature is there, the rest is not. */
    size_t len = 0;
    tpath(p, "good.h5");
    unsigned char *bytes = slurp(p, &len);
    CU_ASSERT_FATAL(bytes != NULL && len > 1000);
    tpath(p, "cut.h5");
    FILE *cut = fopen(p, "wb");
    CU_ASSERT_FATAL(cut != NULL);
    CU_ASSERT(fwrite(bytes, 1, 1000, cut) == 1000);
    fclose(cut);
    free(bytes);
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "cut.h5", "cannot open as HDF5",
                NULL);

    /* /features a group, not a dataset. */
    tpath(p, "group.h5");
    file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(file, "/features", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    h5_put(file, "/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, good_labels);
    H5Fclose(file);
    EXPECT_FAIL(dataset_read(&ds, p, &err), &err, DMLP_ERR_INPUT, "group.h5",
                "/features: is a group", NULL);
}

/* ---- atomic write ------------------------------------------------------------------------ */

static void test_write_never_corrupts(void)
{
    char p[PATH_CAP], q[PATH_CAP];
    tpath(p, "keep.h5");
    struct dataset *ds = make_labelled(), *back = NULL;
    struct dmlp_error err;
    CU_ASSERT_FATAL(ds != NULL);
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p, &err), DMLP_OK);
    size_t len0 = 0, len1 = 0;
    unsigned char *before = slurp(p, &len0);
    CU_ASSERT_FATAL(before != NULL);

    /* Neither labels nor targets. */
    int32_t *labels = ds->labels;
    ds->labels = NULL;
    EXPECT_FAIL(dataset_write(ds, p, &err), &err, DMLP_ERR_INPUT, "keep.h5",
                "neither labels nor targets", NULL);
    ds->labels = labels;
    /* A label outside [0, k). */
    ds->labels[3] = 4;
    EXPECT_FAIL(dataset_write(ds, p, &err), &err, DMLP_ERR_INPUT, "keep.h5",
                "label 4 at row 3 is outside [0, 4)", NULL);
    ds->labels[3] = 1;
    /* A NaN feature. */
    ds->features[7] = NAN;
    EXPECT_FAIL(dataset_write(ds, p, &err), &err, DMLP_ERR_INPUT, "keep.h5",
                "features row 2, column 1 is NaN", NULL);
    ds->features[7] = 0.0f;
    /* NULL dataset. */
    EXPECT_FAIL(dataset_write(NULL, p, &err), &err, DMLP_ERR_INPUT, "keep.h5",
                "refusing to write: no dataset", NULL);

    unsigned char *after = slurp(p, &len1);
    CU_ASSERT_FATAL(after != NULL);
    CU_ASSERT(len0 == len1 && memcmp(before, after, len0) == 0);
    CU_ASSERT_EQUAL(dataset_read(&back, p, &err), DMLP_OK);
    CU_ASSERT(back && back->n == 5 && back->k == 4);
    CU_ASSERT_EQUAL(leftover_tmp_files(), 0);

    /* An unwritable destination: a runtime error naming it, nothing created. */
    tpath(q, "no_such_dir/out.h5");
    EXPECT_FAIL(dataset_write(ds, q, &err), &err, DMLP_ERR_RUNTIME, "no_such_dir/out.h5",
                "No such file or directory", NULL);

    free(before);
    free(after);
    dataset_free(&ds);
    dataset_free(&back);
}

static void test_alloc_errors(void)
{
    static struct dataset sentinel;
    struct dataset *ds = &sentinel;
    struct dmlp_error err;
    EXPECT_FAIL(dataset_alloc(&ds, SIZE_MAX / 2, 3, 10, 1, &err), &err, DMLP_ERR_INPUT,
                "too large", "x 3 features", NULL);
    CU_ASSERT_PTR_NULL(ds);
    EXPECT_FAIL(dataset_alloc(&ds, 0, 3, 10, 1, &err), &err, DMLP_ERR_INPUT, "0 rows", NULL,
                NULL);
    EXPECT_FAIL(dataset_alloc(&ds, 3, 3, 0, 0, &err), &err, DMLP_ERR_INPUT, "width 0", NULL,
                NULL);
    dataset_free(&ds); /* NULL is fine */
    dataset_free(NULL);
}

/* ---- describe ---------------------------------------------------------------------------- */

static void describe_to(const char *path, char *text, size_t cap, int expect_rc)
{
    FILE *out = tmpfile();
    CU_ASSERT_FATAL(out != NULL);
    struct dmlp_error err;
    CU_ASSERT_EQUAL(dataset_describe(out, path, &err), expect_rc);
    rewind(out);
    size_t got = fread(text, 1, cap - 1, out);
    text[got] = '\0';
    fclose(out);
}

static void test_describe(void)
{
    char p[PATH_CAP], text[4096];
    struct dmlp_error err;
    tpath(p, "describe_labels.h5");
    struct dataset *ds = make_labelled();
    CU_ASSERT_FATAL(ds != NULL);
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p, &err), DMLP_OK);
    dataset_free(&ds);
    describe_to(p, text, sizeof text, DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "dataset "));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "describe_labels.h5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  features  float32 [5, 3]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  labels    int32 [5], 4 classes\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  class counts: 0:2 1:2 2:1 3:0\n"));

    tpath(p, "describe_targets.h5");
    ds = make_regression();
    CU_ASSERT_FATAL(ds != NULL);
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p, &err), DMLP_OK);
    dataset_free(&ds);
    describe_to(p, text, sizeof text, DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  targets   float32 [4, 3]\n"));
    /* Column 0 holds 3 - 2.5*{0,3,6,9} = {3, -4.5, -12, -19.5}: mean -8.25. */
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  target 0: min -19.5, mean -8.25, max 3\n"));

    tpath(p, "describe_missing.h5");
    describe_to(p, text, sizeof text, DMLP_ERR_INPUT);
    CU_ASSERT_EQUAL(text[0], '\0');
    CHECK_IDS();
}

/* ---- row ranges, validation split, standardisation ----------------------------------- */

static void test_read_rows(void)
{
    struct h5_spec s = {1, 5, -1, 2, good_labels, 5, 0, 0, 0};
    struct dmlp_error err;
    struct dataset *ds = NULL;
    char p[PATH_CAP];
    tpath(p, "rows.h5");
    make_h5(p, &s);

    size_t total = 0;
    CU_ASSERT_EQUAL_FATAL(dataset_read_rows(&ds, p, 1, 2, &total, &err), DMLP_OK);
    CU_ASSERT_EQUAL(total, 5);
    CU_ASSERT_EQUAL(ds->n, 2);
    CU_ASSERT_EQUAL(ds->d, 3);
    for (size_t i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(ds->features[i], 0.1f * (float)(i + 3));
    CU_ASSERT_EQUAL(ds->labels[0], good_labels[1]);
    CU_ASSERT_EQUAL(ds->labels[1], good_labels[2]);
    CU_ASSERT_EQUAL(ds->k, 3); /* no num_classes: max label of these rows + 1 */
    dataset_free(&ds);
    CU_ASSERT_EQUAL_FATAL(dataset_read_rows(&ds, p, 3, SIZE_MAX, NULL, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->n, 2); /* to the end */
    CU_ASSERT_EQUAL(ds->k, 2); /* labels {1, 0} */
    dataset_free(&ds);
    CU_ASSERT_EQUAL_FATAL(dataset_read_rows(&ds, p, 5, 0, NULL, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->n, 0);
    CU_ASSERT(ds->features && ds->labels); /* usable pointers even with no rows */
    dataset_free(&ds);
    EXPECT_FAIL(dataset_read_rows(&ds, p, 4, 2, &total, &err), &err, DMLP_ERR_INPUT,
                "rows.h5: rows [4, 6) requested, but /features has 5 rows", NULL, NULL);
    CU_ASSERT_PTR_NULL(ds);

    /* With num_classes, K is the file's whatever the rows hold. */
    s = (struct h5_spec){1, 5, -1, 2, good_labels, 5, 0, 7, 0};
    make_h5(p, &s);
    CU_ASSERT_EQUAL_FATAL(dataset_read_rows(&ds, p, 0, 1, NULL, &err), DMLP_OK);
    CU_ASSERT_EQUAL(ds->k, 7);
    dataset_free(&ds);

    /* Values are checked on the rows read, and messages give the file's row numbers. */
    s = (struct h5_spec){1, 5, 5, 2, good_labels, 5, 0, 0, 0}; /* NaN at row 1, column 2 */
    make_h5(p, &s);
    EXPECT_FAIL(dataset_read_rows(&ds, p, 1, 1, NULL, &err), &err, DMLP_ERR_INPUT,
                "/features: row 1, column 2 is NaN", NULL, NULL);
    CU_ASSERT_EQUAL(dataset_read_rows(&ds, p, 2, 3, NULL, &err), DMLP_OK);
    dataset_free(&ds);
    const int32_t neg[5] = {0, 1, 2, -1, 0};
    s = (struct h5_spec){1, 5, -1, 2, neg, 5, 0, 0, 0};
    make_h5(p, &s);
    EXPECT_FAIL(dataset_read_rows(&ds, p, 2, 2, NULL, &err), &err, DMLP_ERR_INPUT,
                "/labels: value -1 at row 3 is negative", NULL, NULL);
    /* Layout errors concern the whole file, whatever the range. */
    s = (struct h5_spec){1, 5, -1, 2, good_labels, 4, 0, 0, 0};
    make_h5(p, &s);
    EXPECT_FAIL(dataset_read_rows(&ds, p, 0, 1, NULL, &err), &err, DMLP_ERR_INPUT,
                "/labels: 4 rows, but /features has 5", NULL, NULL);
    CHECK_IDS();
}

/* n rows, d = 2: feature 0 = the row index, feature 1 = -index; label index % 7 (or
 * targets [index, 2·index]). */
static struct dataset *make_indexed(size_t n, size_t row0, int with_labels)
{
    struct dataset *ds;
    struct dmlp_error err;
    if (dataset_alloc(&ds, n, 2, with_labels ? 7 : 2, with_labels, &err) != DMLP_OK)
        return NULL;
    ds->weights = malloc((n ? n : 1) * sizeof(float)); /* sample weights travel with rows */
    for (size_t i = 0; i < n; i++) {
        ds->weights[i] = 0.5f * (float)(row0 + i);
        ds->features[2 * i] = (float)(row0 + i);
        ds->features[2 * i + 1] = -(float)(row0 + i);
        if (with_labels) {
            ds->labels[i] = (int32_t)((row0 + i) % 7);
        } else {
            ds->targets[2 * i] = (float)(row0 + i);
            ds->targets[2 * i + 1] = 2.0f * (float)(row0 + i);
        }
    }
    return ds;
}

/* Marks the rows of part (by feature 0) in mark[], asserting rows stay whole and ordered. */
static int mark_rows(const struct dataset *part, unsigned char *mark, size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < part->n; i++) {
        const float *x = part->features + 2 * i;
        const size_t row = (size_t)x[0];
        ok &= row < n && x[1] == -x[0] && (i == 0 || x[0] > x[-2]);
        ok &= part->labels ? part->labels[i] == (int32_t)(row % 7)
                           : part->targets[2 * i + 1] == 2.0f * x[0];
        ok &= part->weights && part->weights[i] == 0.5f * x[0];
        if (row < n)
            mark[row]++;
    }
    return ok;
}

static void test_split(void)
{
    CU_ASSERT_EQUAL(dataset_validation_count(100, 0.29), 29); /* 0.29·100 = 28.999... */
    CU_ASSERT_EQUAL(dataset_validation_count(101, 0.3), 30);
    CU_ASSERT_EQUAL(dataset_validation_count(10, 0.7), 7);
    CU_ASSERT_EQUAL(dataset_validation_count(3, 0.999), 2);
    CU_ASSERT_EQUAL(dataset_validation_count(1000, 0.001), 1);
    CU_ASSERT_EQUAL(dataset_validation_count(999, 0.001), 0);
    CU_ASSERT_EQUAL(dataset_validation_count(5, 0.0), 0);
    CU_ASSERT_EQUAL(dataset_validation_count(0, 0.5), 0);

    enum { NR = 1000 };
    struct dmlp_error err;
    for (int with_labels = 1; with_labels >= 0; with_labels--) {
        struct dataset *ds = make_indexed(NR, 0, with_labels), *val = NULL;
        CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
        CU_ASSERT_EQUAL_FATAL(dataset_split(ds, 0, NR, 0.2, 5, &val, &err), DMLP_OK);
        CU_ASSERT_EQUAL(val->n, 200);
        CU_ASSERT_EQUAL(ds->n, 800);
        CU_ASSERT_EQUAL(val->k, ds->k);
        CU_ASSERT_EQUAL(val->labels != NULL, with_labels);
        unsigned char in_val[NR] = {0}, in_train[NR] = {0};
        CU_ASSERT(mark_rows(val, in_val, NR));
        CU_ASSERT(mark_rows(ds, in_train, NR));
        int once = 1;
        size_t low = 0;
        for (size_t i = 0; i < NR; i++) {
            once &= in_val[i] + in_train[i] == 1;
            low += i < NR / 2 && in_val[i];
        }
        CU_ASSERT(once);
        /* Spread over the set, not a block: a fair subset puts about half (100 ± 14) of
         * its 200 rows in the first half; 60..140 fails a correct split with p < 1e-7. */
        CU_ASSERT(low > 60 && low < 140);

        /* The same seed in three pieces, as three ranks would split their shards. */
        const size_t cut[4] = {0, 333, 334, NR}; /* the middle piece has one row */
        unsigned char pieces[NR] = {0};
        for (int p = 0; p < 3; p++) {
            struct dataset *part = make_indexed(cut[p + 1] - cut[p], cut[p], with_labels);
            struct dataset *pval = NULL;
            CU_ASSERT_EQUAL(dataset_split(part, cut[p], NR, 0.2, 5, &pval, &err), DMLP_OK);
            if (pval)
                CU_ASSERT(mark_rows(pval, pieces, NR));
            dataset_free(&pval);
            dataset_free(&part);
        }
        CU_ASSERT_EQUAL(memcmp(pieces, in_val, NR), 0);

        /* Another seed, another subset. */
        struct dataset *ds2 = make_indexed(NR, 0, with_labels), *val2 = NULL;
        CU_ASSERT_EQUAL(dataset_split(ds2, 0, NR, 0.2, 6, &val2, &err), DMLP_OK);
        unsigned char in_val2[NR] = {0};
        if (val2)
            mark_rows(val2, in_val2, NR);
        CU_ASSERT_NOT_EQUAL(memcmp(in_val2, in_val, NR), 0);
        dataset_free(&val2);
        dataset_free(&ds2);
        dataset_free(&val);
        dataset_free(&ds);
    }

    /* Fraction 0: nothing moves; bad fractions and ranges are refused. */
    struct dataset *ds = make_indexed(10, 0, 1), *val = NULL;
    CU_ASSERT_EQUAL(dataset_split(ds, 0, 10, 0.0, 1, &val, &err), DMLP_OK);
    CU_ASSERT(val && val->n == 0 && ds->n == 10);
    dataset_free(&val);
    EXPECT_FAIL(dataset_split(ds, 0, 10, 1.0, 1, &val, &err), &err, DMLP_ERR_INPUT,
                "validation fraction 1: expected a number in [0, 1)", NULL, NULL);
    EXPECT_FAIL(dataset_split(ds, 0, 10, -0.5, 1, &val, &err), &err, DMLP_ERR_INPUT,
                "validation fraction -0.5", NULL, NULL);
    EXPECT_FAIL(dataset_split(ds, 0, 10, NAN, 1, &val, &err), &err, DMLP_ERR_INPUT,
                "validation fraction nan", NULL, NULL);
    EXPECT_FAIL(dataset_split(ds, 5, 10, 0.5, 1, &val, &err), &err, DMLP_ERR_INPUT,
                "rows [5, 15) lie outside the 10 rows", NULL, NULL);
    CU_ASSERT_PTR_NULL(val);
    dataset_free(&ds);
}

static void test_standardize(void)
{
    enum { NR = 50, DD = 4 };
    struct dataset *ds;
    struct dmlp_error err;
    CU_ASSERT_EQUAL_FATAL(dataset_alloc(&ds, NR, DD, 2, 1, &err), DMLP_OK);
    /* Column 0: spread values; 1: offset 100 with unit-size spread; 2: constant; 3: a
     * near-constant 1000 ± 1e-4 (in float ±6e-5 or more, but below the floor
     * 1e-6·1000 = 1e-3). */
    for (size_t i = 0; i < NR; i++) {
        float *x = ds->features + i * DD;
        x[0] = (float)((double)(i * 37 % 11) - 4.5 + 0.01 * (double)i);
        x[1] = 100.0f + (float)sin((double)i);
        x[2] = -3.0f;
        x[3] = 1000.0f + (i % 2 ? 1e-4f : -1e-4f);
    }
    double sum[DD], sumsq[DD];
    float mean[DD], std[DD];
    dataset_feature_sums(ds, sum, sumsq);
    dataset_stats_finish(sum, sumsq, NR, DD, mean, std);
    for (size_t j = 0; j < 2; j++) {
        /* Naive two-pass mean and population deviation in double. */
        double m = 0, v = 0;
        for (size_t i = 0; i < NR; i++)
            m += ds->features[i * DD + j];
        m /= NR;
        for (size_t i = 0; i < NR; i++) {
            const double dx = ds->features[i * DD + j] - m;
            v += dx * dx;
        }
        /* The float results carry one rounding (6e-8); the one-pass variance loses
         * ~1e-16·mean²/var relative, negligible here (mean²/var <= 2e4). */
        CU_ASSERT(tu_reldiff(mean[j], m, 1e-30) <= 2e-7);
        CU_ASSERT(tu_reldiff(std[j], sqrt(v / NR), 1e-30) <= 2e-7);
    }
    CU_ASSERT_EQUAL(mean[2], -3.0f);
    CU_ASSERT_EQUAL(std[2], 1.0f); /* constant: std 0 floored to 1 */
    CU_ASSERT(fabs(mean[3] - 1000.0f) < 1e-3f);
    CU_ASSERT_EQUAL(std[3], 1.0f); /* below 1e-6·|mean| */

    /* The floor is relative to max(1, |mean|): std 2e-6 survives around mean 0... */
    const double s1[1] = {0.0}, q1[1] = {4 * 4e-12};
    dataset_stats_finish(s1, q1, 4, 1, mean, std);
    CU_ASSERT_EQUAL(mean[0], 0.0f);
    CU_ASSERT(fabs(std[0] - 2e-6f) < 1e-12f);
    /* ...and no rows gives mean 0, std 1. */
    dataset_stats_finish(s1, q1, 0, 1, mean, std);
    CU_ASSERT(mean[0] == 0.0f && std[0] == 1.0f);
    /* Targets keep a std of any scale: a mass fraction of mean 1e-7 and std 5e-8 (values
     * 0.5e-7 and 1.5e-7), which the features' absolute floor would have taken for a
     * constant; a constant target column still gets 1, at any scale. */
    const double ts[2] = {2e-7, 2 * 3e7}, tq[2] = {0.25e-14 + 2.25e-14, 2 * 9e14};
    dataset_target_stats_finish(ts, tq, 2, 2, mean, std);
    CU_ASSERT(fabs(mean[0] - 1e-7f) < 1e-13f);
    CU_ASSERT(fabs(std[0] - 5e-8f) < 1e-13f);
    CU_ASSERT(fabs(mean[1] - 3e7f) < 1.0f);
    CU_ASSERT_EQUAL(std[1], 1.0f);
    dataset_stats_finish(ts, tq, 2, 2, mean, std);
    CU_ASSERT_EQUAL(std[0], 1.0f); /* what the features' rule does to it */

    dataset_stats_finish(sum, sumsq, NR, DD, mean, std);
    struct dataset *copy = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_alloc(&copy, NR, DD, 2, 1, &err), DMLP_OK);
    memcpy(copy->features, ds->features, (size_t)NR * DD * sizeof(float));
    dataset_standardize(ds, mean, std);
    for (size_t i = 0; i < NR * DD; i++)
        CU_ASSERT_EQUAL(ds->features[i], (copy->features[i] - mean[i % DD]) / std[i % DD]);
    dataset_feature_sums(ds, sum, sumsq);
    for (size_t j = 0; j < DD; j++)
        CU_ASSERT(fabs(sum[j] / NR) < 1e-5);
    CU_ASSERT(fabs(sumsq[0] / NR - 1.0) < 1e-5 && fabs(sumsq[1] / NR - 1.0) < 1e-5);
    dataset_free(&copy);
    dataset_free(&ds);
}

/* ---- registration ------------------------------------------------------------------------ */

static CU_TestInfo roundtrip_tests[] = {
    {"labels: write, read, exact values, K from num_classes", test_roundtrip_labels},
    {"targets: write, overwrite, read, exact values", test_roundtrip_targets},
    {"float64 features and uint8 labels convert; K = max + 1", test_read_foreign_types},
    {"alloc: overflow and empty shapes are refused", test_alloc_errors},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo idx_tests[] = {
    {"gzip IDX: shape, pixel/255, labels, K = 10", test_idx_gzip},
    {"plain IDX: shape, pixel/255, labels, K = max + 1", test_idx_plain},
    {"bad IDX files name the file and the problem", test_idx_errors},
    {"Fashion-MNIST t10k, if present, matches the raw bytes", test_idx_fashion_mnist},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo error_tests[] = {
    {"bad dataset files name the file and the culprit", test_read_errors},
    {"a refused write leaves the existing file untouched", test_write_never_corrupts},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo part_tests[] = {
    {"row ranges: exact rows, K, file row numbers in errors", test_read_rows},
    {"validation split: exact count, order, pieces == whole", test_split},
    {"standardisation: stats vs naive, std floor, apply", test_standardize},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo describe_tests[] = {
    {"describe prints shapes, classes, target ranges", test_describe},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"dataset round trips", suite_init, suite_clean, NULL, NULL, roundtrip_tests},
    {"dataset IDX import", suite_init, suite_clean, NULL, NULL, idx_tests},
    {"dataset errors", suite_init, suite_clean, NULL, NULL, error_tests},
    {"dataset describe", suite_init, suite_clean, NULL, NULL, describe_tests},
    {"dataset parts", suite_init, suite_clean, NULL, NULL, part_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    H5open();
    g_ids_baseline = h5_open_ids();
    return tu_run(suites);
}
