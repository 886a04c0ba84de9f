/* Hostile HDF5 files through the dmlp binary, at 1 and at 2 ranks under `timeout 60`:
 * checkpoints whose attributes have the wrong shape or class (an array where a scalar
 * belongs, a float where an integer belongs, a string where a number belongs), whose
 * weight arrays have the wrong rank, class or dimensions, or hold a NaN or an infinity
 * (weights, biases, optimizer state, standardisation), or target statistics with a zero,
 * negative or NaN std or a mean of the wrong length; data files whose /features is stored
 * through a filter this HDF5 cannot decode, mapped from a deleted file (a virtual dataset)
 * or kept in an external file shorter than declared; a uint64 label of 2^64 - 1. Each is
 * fed to every command that reads it (eval, predict, inspect, train --resume, train
 * --init-from, train with either data placement), and each run must exit 2 without a crash
 * (no signal, no sanitizer report, no raw HDF5 error stack) and print one error line that
 * names the file and the object at fault; a refused train writes no checkpoint. A good
 * checkpoint (and one with h5py's variable-length string attributes) must load, so that
 * every refusal is down to the one change made to it. The files are written here with the
 * HDF5 C API. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "core/rng.h"
#include "dmlp/infer.h"
#include "testutil.h"

#define MPIRUN DMLP_MPIEXEC " --oversubscribe --bind-to none -np "

static char g_dir[512];
static int g_ready;
/* the training set, its config, the good checkpoint, an empty plugin directory (so that no
 * filter plugin installed on the machine can decode the "LZF" file), where refused training
 * runs point their checkpoints */
static char p_data[700], p_cfg[700], p_base[800], p_plugins[700], p_out[700];
/* a regression set, its config (data.normalize_targets) and its good checkpoint */
static char p_reg_data[700], p_reg_cfg[700], p_reg_base[800];

/* Paths built inline (testutil's rotating buffers). */
#define P tu_fmt

/* ---- running the binary ------------------------------------------------------------------ */

static int run_np(int np, const char *args)
{
    return tu_sh("HDF5_PLUGIN_PATH=%s timeout 60 " MPIRUN "%d %s %s", p_plugins, np,
                 DMLP_BINARY, args);
}

/* The output holds no trace of a crash or of HDF5's own error printer. */
static int clean_output(void)
{
    static const char *bad[] = {"Sanitizer", "runtime error:", "Segmentation", "signal",
                                "MPI_ABORT", "HDF5-DIAG", "#000:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (strstr(tu_out, bad[i])) {
            printf("    output holds '%s':\n%s\n", bad[i], tu_out);
            return 0;
        }
    return 1;
}

/* Step-*.h5 files in the directory refused runs write to (none may appear). */
static int checkpoints_written(void)
{
    char cmd[1024], out[64];
    snprintf(cmd, sizeof cmd, "ls '%s' 2>/dev/null | grep -c 'h5$'", p_out);
    tu_run_cmd(cmd, out, sizeof out);
    return atoi(out);
}

/* Runs `dmlp ARGS` at 1 and 2 ranks: exit 2 (so no signal and no hang), a clean output, one
 * line starting "dmlp: " (printed once, not once per rank), holding every needle (up to
 * the NULL), and no checkpoint written. */
static void refused(const char *args, ...) __attribute__((sentinel));
static void refused(const char *args_in, ...)
{
    CU_ASSERT_FATAL(g_ready);
    char args[2048];
    snprintf(args, sizeof args, "%s", args_in);
    for (int np = 1; np <= 2; np++) {
        const int rc = run_np(np, args);
        CU_ASSERT_NOT_EQUAL(rc, 124); /* a hang */
        CU_ASSERT(rc >= 0 && rc < 128); /* -1: killed by a signal */
        CU_ASSERT_EQUAL(rc, 2);
        CU_ASSERT(clean_output());
        const char *line = NULL;
        int lines = 0;
        for (const char *p = tu_out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
            if (!strncmp(p, "dmlp: ", 6) && lines++ == 0)
                line = p;
        if (lines != 1)
            printf("    expected one 'dmlp: ' line, got %d:\n%s\n", lines, tu_out);
        CU_ASSERT_EQUAL(lines, 1);
        char msg[4096] = "";
        if (line)
            snprintf(msg, sizeof msg, "%.*s", (int)strcspn(line, "\n"), line);
        va_list ap;
        va_start(ap, args_in);
        for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;) {
            const int found = strstr(msg, needle) != NULL;
            if (!found)
                printf("    the error line lacks '%s': %s\n", needle, msg);
            CU_ASSERT(found);
        }
        va_end(ap);
        CU_ASSERT_EQUAL(checkpoints_written(), 0);
    }
}

static void accepted(const char *args)
{
    CU_ASSERT_FATAL(g_ready);
    const int rc = run_np(1, args);
    if (rc != 0)
        printf("    expected exit 0:\n%s\n", tu_out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(clean_output());
}

/* The commands, on a checkpoint ck or a data file data. */
static const char *eval_ck(const char *ck)
{
    return P("eval --checkpoint %s --data %s", ck, p_data);
}
static const char *predict_ck(const char *ck)
{
    return P("predict --checkpoint %s --input %s --output %s/pred.h5", ck, p_data, g_dir);
}
static const char *inspect(const char *path)
{
    return P("inspect %s", path);
}
static const char *resume(const char *ck)
{
    return P("train %s --resume %s --set training.epochs=2 --set checkpoint.dir=%s", p_cfg, ck,
             p_out);
}
static const char *init_from(const char *ck)
{
    return P("train %s --init-from %s --set checkpoint.dir=%s", p_cfg, ck, p_out);
}
static const char *train_on(const char *data, const char *placement)
{
    return P("train %s --set data.train=%s --set data.placement=%s --set checkpoint.dir=%s",
             p_cfg, data, placement, p_out);
}
/* The same on the regression checkpoint ck, with the regression set and config. */
static const char *reg_eval_ck(const char *ck)
{
    return P("eval --checkpoint %s --data %s", ck, p_reg_data);
}
static const char *reg_predict_ck(const char *ck)
{
    return P("predict --checkpoint %s --input %s --output %s/pred.h5", ck, p_reg_data, g_dir);
}
static const char *reg_resume(const char *ck)
{
    return P("train %s --resume %s --set training.epochs=2 --set checkpoint.dir=%s", p_reg_cfg,
             ck, p_out);
}
static const char *eval_on(const char *data)
{
    return P("eval --checkpoint %s --data %s", p_base, data);
}
static const char *predict_on(const char *data)
{
    return P("predict --checkpoint %s --input %s --output %s/pred.h5", p_base, data, g_dir);
}

/* ---- writing hostile files ----------------------------------------------------------------- */

/* A copy of the good checkpoint src at g_dir/name (path: PATH_CAP bytes), opened for
 * writing. */
enum { PATH_CAP = 800 };
static hid_t ck_copy_of(const char *src, const char *name, char *path)
{
    snprintf(path, PATH_CAP, "%s/%s", g_dir, name);
    CU_ASSERT_EQUAL_FATAL(tu_sh("cp -L %s %s", src, path), 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    return f;
}
static hid_t ck_copy(const char *name, char *path)
{
    return ck_copy_of(p_base, name, path);
}

/* A fixed-length (size n) or variable-length UTF-8 (n == 0, as h5py writes) string type. */
static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (n) {
        H5Tset_size(t, n);
    } else {
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
    }
    return t;
}

/* Replaces (or adds) the attribute name of obj: type, rank (0: a scalar), dims, data. */
static void put_attr(hid_t f, const char *obj, const char *name, hid_t type, int rank,
                     const hsize_t *dims, const void *data)
{
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0)
        CU_ASSERT(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0);
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(a >= 0);
    CU_ASSERT(H5Awrite(a, type, data) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

/* Replaces (or adds) the dataset name: contiguous, of type, rank, dims, with data. */
static void put_dset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                     const void *data)
{
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        CU_ASSERT(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    CU_ASSERT(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

/* Sets element i of the float dataset name (in place: its checksum is rewritten). */
static void poke(hid_t f, const char *name, size_t i, float v)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    hid_t sp = H5Dget_space(d);
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    CU_ASSERT_FATAL(n > 0 && (size_t)n > i);
    float *x = malloc((size_t)n * sizeof *x);
    CU_ASSERT_FATAL(x != NULL);
    CU_ASSERT(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    x[i] = v;
    CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    free(x);
    H5Sclose(sp);
    H5Dclose(d);
}

enum { ROWS = 60, COLS = 6, CLASSES = 3 };

/* Three blobs: row i of class i % 3. */
static void blob_features(float *x, size_t n)
{
    struct rng r;
    rng_seed(&r, 7, 1);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < COLS; j++)
            x[i * COLS + j] = (float)(0.5 * rng_normal(&r) + (j == i % CLASSES ? 2.0 : 0.0));
}

/* A data file whose /features (ROWS x COLS float32) is created with dcpl, and int32 labels. */
static void make_data(const char *path, hid_t dcpl)
{
    static float x[ROWS * COLS];
    int32_t y[ROWS];
    blob_features(x, ROWS);
    for (size_t i = 0; i < ROWS; i++)
        y[i] = (int32_t)(i % CLASSES);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hsize_t fd[2] = {ROWS, COLS}, yd[1] = {ROWS};
    hid_t sp = H5Screate_simple(2, fd, NULL);
    hid_t d = H5Dcreate2(f, "features", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    put_dset(f, "labels", H5T_STD_I32LE, 1, yd, y);
    CU_ASSERT(H5Fclose(f) >= 0);
}

/* ---- fixture ------------------------------------------------------------------------------- */

static void test_fixture(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "hostile");
    snprintf(p_data, sizeof p_data, "%s/train.h5", g_dir);
    snprintf(p_cfg, sizeof p_cfg, "%s/train.yaml", g_dir);
    snprintf(p_base, sizeof p_base, "%s/base/latest.h5", g_dir);
    snprintf(p_plugins, sizeof p_plugins, "%s/no-plugins", g_dir);
    snprintf(p_out, sizeof p_out, "%s/out", g_dir);
    CU_ASSERT_EQUAL_FATAL(tu_sh("mkdir -p %s", p_plugins), 0);
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(dataset_alloc(&ds, ROWS, COLS, CLASSES, 1, &e), DMLP_OK);
    blob_features(ds->features, ROWS);
    for (size_t i = 0; i < ROWS; i++)
        ds->labels[i] = (int32_t)(i % CLASSES);
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p_data, &e), DMLP_OK);
    dataset_free(&ds);
    /* adam: the checkpoint holds exp_avg and exp_avg_sq; standardised inputs: it holds
     * /normalization too */
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - {units: 8, activation: relu}\n"
             "    - {units: 3, activation: softmax}\n"
             "loss: cross_entropy\n"
             "optimizer: {name: adam, lr: 0.01}\n"
             "data: {train: %s, normalize: standard}\n"
             "training: {epochs: 1, batch_size: 16, seed: 3}\n"
             "checkpoint: {dir: %s/base}\n",
             p_data, g_dir);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(p_cfg, yaml), 0);
    CU_ASSERT_EQUAL_FATAL(tu_sh("%s train %s", DMLP_BINARY, p_cfg), 0);
    g_ready = 1;
    /* The controls: the good checkpoint passes every command that the hostile copies fail. */
    accepted(eval_ck(p_base));
    accepted(predict_ck(p_base));
    accepted(inspect(p_base));
    accepted(inspect(p_data));
    accepted(P("train %s --resume %s --set training.epochs=2 --set checkpoint.dir=%s/ok-resume",
               p_cfg, p_base, g_dir));
    accepted(P("train %s --init-from %s --set checkpoint.dir=%s/ok-init", p_cfg, p_base, g_dir));
    accepted(P("train %s --set data.placement=sharded --set checkpoint.dir=%s/ok-sharded",
               p_cfg, g_dir));
}

/* h5py writes string attributes variable-length UTF-8, dmlp fixed-length ASCII: both load. */
static void test_vlen_strings_load(void)
{
    char ck[PATH_CAP];
    hid_t f = ck_copy("vlen.h5", ck);
    hid_t vs = str_type(0);
    const char *relu = "relu", *softmax = "softmax", *fmt = "dmlp-checkpoint";
    put_attr(f, "/layers/0", "activation", vs, 0, NULL, &relu);
    put_attr(f, "/layers/1", "activation", vs, 0, NULL, &softmax);
    put_attr(f, "/", "format", vs, 0, NULL, &fmt);
    H5Tclose(vs);
    H5Fclose(f);
    accepted(eval_ck(ck));
    accepted(inspect(ck));
    CU_ASSERT(tu_has("relu"));
    accepted(P("train %s --resume %s --set training.epochs=2 --set checkpoint.dir=%s/ok-vlen",
               p_cfg, ck, g_dir));
}

/* ---- attributes ---------------------------------------------------------------------------- */

/* A 3-element array where the scalar activation belongs: HDF5 used to write all three
 * into a one-value buffer (heap corruption; for h5py's variable-length strings, three
 * pointers onto the stack). */
static void test_attr_array_for_scalar(void)
{
    for (int vlen = 0; vlen <= 1; vlen++) {
        char ck[PATH_CAP];
        hid_t f = ck_copy(vlen ? "act-array-vlen.h5" : "act-array.h5", ck);
        hsize_t three[1] = {3};
        if (vlen) {
            hid_t t = str_type(0);
            const char *v[3] = {"relu", "relu", "relu"};
            put_attr(f, "/layers/0", "activation", t, 1, three, v);
            H5Tclose(t);
        } else {
            hid_t t = str_type(8);
            put_attr(f, "/layers/0", "activation", t, 1, three, "relu\0\0\0\0relu\0\0\0\0relu\0\0\0");
            H5Tclose(t);
        }
        H5Fclose(f);
        const char *n1 = ck, *n2 = "/layers/0 attribute 'activation'", *n3 = "3-element array";
        refused(eval_ck(ck), n1, n2, n3, "expected a scalar string", NULL);
        refused(predict_ck(ck), n1, n2, n3, NULL);
        refused(inspect(ck), n1, n2, n3, NULL);
        refused(resume(ck), n1, n2, n3, NULL);
        refused(init_from(ck), n1, n2, n3, NULL);
    }
}

/* Root attributes as arrays: step (read by --resume and inspect) and format. */
static void test_root_attr_arrays(void)
{
    char ck[PATH_CAP];
    hid_t f = ck_copy("step-array.h5", ck);
    uint64_t steps[100] = {0};
    hsize_t hundred[1] = {100};
    put_attr(f, "/", "step", H5T_NATIVE_UINT64, 1, hundred, steps);
    H5Fclose(f);
    refused(resume(ck), ck, "root attribute 'step'", "100-element array", NULL);
    refused(inspect(ck), ck, "root attribute 'step'", "100-element array", NULL);

    f = ck_copy("format-array.h5", ck);
    hid_t t = str_type(16);
    hsize_t five[1] = {5};
    static char fmts[5][16] = {"dmlp-checkpoint", "dmlp-checkpoint", "dmlp-checkpoint",
                               "dmlp-checkpoint", "dmlp-checkpoint"};
    put_attr(f, "/", "format", t, 1, five, fmts);
    H5Tclose(t);
    H5Fclose(f);
    refused(resume(ck), ck, "root attribute 'format'", "5-element array", NULL);
    refused(inspect(ck), ck, "root attribute 'format'", "5-element array", NULL);

    /* /optimizer name as h5py would write a list of two strings */
    f = ck_copy("optname-array.h5", ck);
    t = str_type(0);
    const char *names[2] = {"adam", "adam"};
    hsize_t two[1] = {2};
    put_attr(f, "/optimizer", "name", t, 1, two, names);
    H5Tclose(t);
    H5Fclose(f);
    refused(resume(ck), ck, "/optimizer attribute 'name'", "2-element array", NULL);
    refused(inspect(ck), ck, "/optimizer attribute 'name'", "2-element array", NULL);
}

/* An attribute of the wrong class: a float format_version (printed as 0 before), an integer
 * activation, a string seed. */
static void test_attr_wrong_class(void)
{
    char ck[PATH_CAP];
    hid_t f = ck_copy("version-float.h5", ck);
    const double v = 1.5;
    put_attr(f, "/", "format_version", H5T_NATIVE_DOUBLE, 0, NULL, &v);
    H5Fclose(f);
    refused(resume(ck), ck, "root attribute 'format_version'", "float64 (1.5)",
            "expected a scalar non-negative integer", NULL);
    refused(inspect(ck), ck, "root attribute 'format_version'", "float64 (1.5)", NULL);

    f = ck_copy("act-int.h5", ck);
    const int32_t three = 3;
    put_attr(f, "/layers/1", "activation", H5T_NATIVE_INT32, 0, NULL, &three);
    H5Fclose(f);
    refused(eval_ck(ck), ck, "/layers/1 attribute 'activation'", "int32 (3)",
            "expected a scalar string", NULL);
    refused(predict_ck(ck), ck, "/layers/1 attribute 'activation'", "int32", NULL);
    refused(inspect(ck), ck, "/layers/1 attribute 'activation'", "int32", NULL);
    refused(resume(ck), ck, "/layers/1 attribute 'activation'", "int32", NULL);
    refused(init_from(ck), ck, "/layers/1 attribute 'activation'", "int32", NULL);

    f = ck_copy("seed-string.h5", ck);
    hid_t t = str_type(0);
    const char *abc = "abc";
    put_attr(f, "/rng", "seed", t, 0, NULL, &abc);
    H5Tclose(t);
    H5Fclose(f);
    refused(resume(ck), ck, "/rng attribute 'seed'", "string ('abc')",
            "expected a scalar non-negative integer", NULL);
    refused(inspect(ck), ck, "/rng attribute 'seed'", "string", NULL);
}

/* ---- datasets ------------------------------------------------------------------------------ */

static void test_weight_rank_class_dims(void)
{
    char ck[PATH_CAP];
    /* rank 3 where [out, in] belongs */
    hid_t f = ck_copy("weight-3d.h5", ck);
    static float w[8 * 6];
    hsize_t d3[3] = {8, 6, 1};
    put_dset(f, "/layers/0/weight", H5T_NATIVE_FLOAT, 3, d3, w);
    H5Fclose(f);
    const char *n = "/layers/0/weight";
    refused(eval_ck(ck), ck, n, "expected 2-D float array, got 3-D", NULL);
    refused(predict_ck(ck), ck, n, "3-D", NULL);
    refused(inspect(ck), ck, n, "3-D", NULL);
    refused(resume(ck), ck, n, "3-D", NULL);
    refused(init_from(ck), ck, n, "3-D", NULL);

    /* a string array where floats belong */
    f = ck_copy("weight-string.h5", ck);
    hid_t t = str_type(4);
    static char s[8 * 6][4];
    hsize_t d2[2] = {8, 6};
    put_dset(f, "/layers/0/weight", t, 2, d2, s);
    H5Tclose(t);
    H5Fclose(f);
    refused(eval_ck(ck), ck, n, "expected float array, got string", NULL);
    refused(inspect(ck), ck, n, "string", NULL);
    refused(resume(ck), ck, n, "string", NULL);

    /* a bias of 4 where the layer has 3 outputs */
    f = ck_copy("bias-dims.h5", ck);
    static float b[4];
    hsize_t d1[1] = {4};
    put_dset(f, "/layers/1/bias", H5T_NATIVE_FLOAT, 1, d1, b);
    H5Fclose(f);
    refused(eval_ck(ck), ck, "/layers/1/bias has shape [4], expected [3]", NULL);
    refused(predict_ck(ck), ck, "/layers/1/bias", "[4]", NULL);
    refused(inspect(ck), ck, "/layers/1/bias", "[4]", NULL);
    refused(resume(ck), ck, "/layers/1/bias", "[4]", NULL);
    refused(init_from(ck), ck, "/layers/1/bias", "[4]", NULL);
}

/* NaN and infinity in weights, biases, optimizer state and the standardisation: refused
 * by everything that loads them, so no new checkpoint can carry them on. */
static void test_nonfinite_values(void)
{
    char ck[PATH_CAP];
    hid_t f = ck_copy("weight-nan.h5", ck);
    poke(f, "/layers/0/weight", 1 * COLS + 2, NAN);
    H5Fclose(f);
    const char *n = "/layers/0/weight: element [1, 2] is NaN";
    refused(eval_ck(ck), ck, n, NULL);
    refused(predict_ck(ck), ck, n, NULL);
    refused(resume(ck), ck, n, NULL);
    refused(init_from(ck), ck, n, NULL);

    f = ck_copy("bias-inf.h5", ck);
    poke(f, "/layers/1/bias", 2, -INFINITY);
    H5Fclose(f);
    n = "/layers/1/bias: element [2] is -inf";
    refused(eval_ck(ck), ck, n, NULL);
    refused(predict_ck(ck), ck, n, NULL);
    refused(resume(ck), ck, n, NULL);
    refused(init_from(ck), ck, n, NULL);

    /* optimizer state: element 5 of the flat layout is layer 0's weight [0, 5] */
    f = ck_copy("exp-avg-nan.h5", ck);
    poke(f, "/optimizer/exp_avg", 5, NAN);
    H5Fclose(f);
    refused(resume(ck), ck, "/optimizer/exp_avg: element [5] (layer 0 weight [0, 5]) is NaN",
            NULL);
    f = ck_copy("exp-avg-sq-inf.h5", ck);
    poke(f, "/optimizer/exp_avg_sq", 0, INFINITY);
    H5Fclose(f);
    refused(resume(ck), ck, "/optimizer/exp_avg_sq: element [0]", "+inf", NULL);

    f = ck_copy("mean-nan.h5", ck);
    poke(f, "/normalization/mean", 3, NAN);
    H5Fclose(f);
    n = "/normalization/mean: element [3] is NaN";
    refused(eval_ck(ck), ck, n, NULL);
    refused(predict_ck(ck), ck, n, NULL);
    refused(resume(ck), ck, n, NULL);
    refused(init_from(ck), ck, n, NULL);

    f = ck_copy("std-zero.h5", ck);
    poke(f, "/normalization/std", 4, 0.0f);
    H5Fclose(f);
    n = "/normalization/std: feature 4";
    refused(eval_ck(ck), ck, n, "std 0", NULL);
    refused(resume(ck), ck, n, NULL);
    refused(init_from(ck), ck, n, NULL);
}

/* dmlp_net_load (the inference library) refuses ck too, with a message naming the file and
 * every needle (up to the NULL). */
static void net_refused(const char *ck, ...) __attribute__((sentinel));
static void net_refused(const char *ck, ...)
{
    char err[1024] = "";
    dmlp_net *net = dmlp_net_load(ck, err, sizeof err);
    CU_ASSERT_PTR_NULL(net);
    dmlp_net_free(net);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ck));
    va_list ap;
    va_start(ap, ck);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;) {
        const int found = strstr(err, needle) != NULL;
        if (!found)
            printf("    dmlp_net_load's error lacks '%s': %s\n", needle, err);
        CU_ASSERT(found);
    }
    va_end(ap);
}

/* Target statistics (data.normalize_targets): a std of 0, negative or NaN, and a mean of
 * the wrong length, are refused by eval, predict, a resume and dmlp_net_load, naming the
 * file and the dataset; the good regression checkpoint passes them all. */
static void test_target_statistics(void)
{
    CU_ASSERT_FATAL(g_ready);
    snprintf(p_reg_data, sizeof p_reg_data, "%s/reg.h5", g_dir);
    snprintf(p_reg_cfg, sizeof p_reg_cfg, "%s/reg.yaml", g_dir);
    snprintf(p_reg_base, sizeof p_reg_base, "%s/reg-base/latest.h5", g_dir);
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(dataset_alloc(&ds, ROWS, COLS, 2, 0, &e), DMLP_OK);
    blob_features(ds->features, ROWS);
    for (size_t i = 0; i < ROWS; i++) { /* outputs of scales 1e4 and 1e-3 */
        ds->targets[i * 2] = 1e4f * ds->features[i * COLS] + 3e4f;
        ds->targets[i * 2 + 1] = 1e-3f * ds->features[i * COLS + 1] + 2e-3f;
    }
    CU_ASSERT_EQUAL_FATAL(dataset_write(ds, p_reg_data, &e), DMLP_OK);
    dataset_free(&ds);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - {units: 8, activation: tanh}\n"
             "    - {units: 2, activation: linear}\n"
             "loss: mse\n"
             "optimizer: {name: adam, lr: 0.01}\n"
             "data: {train: %s, normalize: standard, normalize_targets: true}\n"
             "training: {epochs: 1, batch_size: 16, seed: 3}\n"
             "checkpoint: {dir: %s/reg-base}\n",
             p_reg_data, g_dir);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(p_reg_cfg, yaml), 0);
    CU_ASSERT_EQUAL_FATAL(tu_sh("%s train %s", DMLP_BINARY, p_reg_cfg), 0);
    /* The controls. */
    accepted(reg_eval_ck(p_reg_base));
    accepted(reg_predict_ck(p_reg_base));
    accepted(P("train %s --resume %s --set training.epochs=2 --set checkpoint.dir=%s/ok-reg",
               p_reg_cfg, p_reg_base, g_dir));
    char err[1024] = "";
    dmlp_net *net = dmlp_net_load(p_reg_base, err, sizeof err);
    if (!net)
        printf("    dmlp_net_load: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL(net);
    dmlp_net_free(net);

    char ck[PATH_CAP];
    hid_t f = ck_copy_of(p_reg_base, "target-std-zero.h5", ck);
    poke(f, "/normalization/target_std", 1, 0.0f);
    H5Fclose(f);
    const char *n = "/normalization/target_std: output 1";
    refused(reg_eval_ck(ck), ck, n, "std 0", NULL);
    refused(reg_predict_ck(ck), ck, n, "std 0", NULL);
    refused(reg_resume(ck), ck, n, NULL);
    net_refused(ck, n, "std 0", NULL);

    f = ck_copy_of(p_reg_base, "target-std-negative.h5", ck);
    poke(f, "/normalization/target_std", 0, -2.5f);
    H5Fclose(f);
    n = "/normalization/target_std: output 0";
    refused(reg_eval_ck(ck), ck, n, "std -2.5", NULL);
    refused(reg_predict_ck(ck), ck, n, "std -2.5", NULL);
    refused(reg_resume(ck), ck, n, NULL);
    net_refused(ck, n, "std -2.5", NULL);

    f = ck_copy_of(p_reg_base, "target-std-nan.h5", ck);
    poke(f, "/normalization/target_std", 1, NAN);
    H5Fclose(f);
    n = "/normalization/target_std: element [1] is NaN";
    refused(reg_eval_ck(ck), ck, n, NULL);
    refused(reg_predict_ck(ck), ck, n, NULL);
    refused(reg_resume(ck), ck, n, NULL);
    net_refused(ck, n, NULL);

    /* three means for a network of two outputs */
    f = ck_copy_of(p_reg_base, "target-mean-length.h5", ck);
    static const float mean3[3] = {3e4f, 2e-3f, 1.0f};
    hsize_t d1[1] = {3};
    put_dset(f, "/normalization/target_mean", H5T_NATIVE_FLOAT, 1, d1, mean3);
    H5Fclose(f);
    n = "/normalization/target_mean has shape [3], expected [2]";
    refused(reg_eval_ck(ck), ck, n, NULL);
    refused(reg_predict_ck(ck), ck, n, NULL);
    refused(reg_resume(ck), ck, n, NULL);
    net_refused(ck, n, NULL);
}

/* ---- data files ---------------------------------------------------------------------------- */

/* /features through filter 32000 (LZF, which h5py registers and HDF5 does not): created
 * with the optional flag, as h5py does, so that HDF5 writes it without the filter here. */
static void test_filter_unavailable(void)
{
    char d[PATH_CAP];
    snprintf(d, sizeof d, "%s/lzf.h5", g_dir);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {20, COLS};
    CU_ASSERT_FATAL(H5Pset_chunk(dcpl, 2, chunk) >= 0);
    CU_ASSERT_FATAL(H5Pset_filter(dcpl, 32000, H5Z_FLAG_OPTIONAL, 0, NULL) >= 0);
    make_data(d, dcpl);
    H5Pclose(dcpl);
    const char *n = "/features is stored through the HDF5 filter 'lzf' (id 32000)";
    refused(train_on(d, "replicated"), d, n, "h5repack -f NONE", NULL);
    refused(train_on(d, "sharded"), d, n, NULL);
    refused(eval_on(d), d, n, NULL);
    refused(predict_on(d), d, n, NULL);
    refused(inspect(d), d, n, NULL);
}

/* A virtual /features whose source file has been deleted: it used to read as zeros. */
static void test_virtual_source_gone(void)
{
    char src[PATH_CAP], d[PATH_CAP];
    snprintf(src, sizeof src, "%s/vds-source.h5", g_dir);
    snprintf(d, sizeof d, "%s/vds.h5", g_dir);
    make_data(src, H5P_DEFAULT);
    hsize_t fd[2] = {ROWS, COLS};
    hid_t vspace = H5Screate_simple(2, fd, NULL), sspace = H5Screate_simple(2, fd, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    CU_ASSERT_FATAL(H5Pset_virtual(dcpl, vspace, "vds-source.h5", "/features", sspace) >= 0);
    hid_t f = H5Fcreate(d, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t ds = H5Dcreate2(f, "features", H5T_IEEE_F32LE, vspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CU_ASSERT_FATAL(ds >= 0);
    H5Dclose(ds);
    int32_t y[ROWS];
    for (size_t i = 0; i < ROWS; i++)
        y[i] = (int32_t)(i % CLASSES);
    hsize_t yd[1] = {ROWS};
    put_dset(f, "labels", H5T_STD_I32LE, 1, yd, y);
    H5Fclose(f);
    H5Pclose(dcpl);
    H5Sclose(vspace);
    H5Sclose(sspace);
    CU_ASSERT_EQUAL(remove(src), 0);
    const char *n = "/features is a virtual dataset";
    refused(train_on(d, "replicated"), d, n, "vds-source.h5' (missing)", "h5repack", NULL);
    refused(train_on(d, "sharded"), d, n, NULL);
    refused(eval_on(d), d, n, NULL);
    refused(predict_on(d), d, n, NULL);
    refused(inspect(d), d, n, NULL);
}

/* /features kept in an external file, then cut short: the rest used to read as zeros. */
static void test_external_storage_short(void)
{
    char d[PATH_CAP], rawpath[PATH_CAP];
    snprintf(d, sizeof d, "%s/external.h5", g_dir);
    snprintf(rawpath, sizeof rawpath, "%s/external.bin", g_dir);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    CU_ASSERT_FATAL(H5Pset_external(dcpl, rawpath, 0, ROWS * COLS * sizeof(float)) >= 0);
    make_data(d, dcpl);
    H5Pclose(dcpl);
    CU_ASSERT_EQUAL(tu_sh("truncate -s 100 %s", rawpath), 0);
    const char *n = "/features keeps its data in 1 external file(s)";
    refused(train_on(d, "replicated"), d, n, "external.bin", NULL);
    refused(train_on(d, "sharded"), d, n, NULL);
    refused(eval_on(d), d, n, NULL);
    refused(predict_on(d), d, n, NULL);
    refused(inspect(d), d, n, NULL);
}

/* A uint64 label of 2^64 - 1 is reported as stored (it used to read 2^63 - 1), and a
 * num_classes attribute that is an array is refused before it is read. */
static void test_label_values(void)
{
    char d[PATH_CAP], g[PATH_CAP];
    snprintf(d, sizeof d, "%s/u64-labels.h5", g_dir);
    snprintf(g, sizeof g, "%s/nc-array.h5", g_dir);
    make_data(d, H5P_DEFAULT);
    hid_t f = H5Fopen(d, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    uint64_t y[ROWS];
    for (size_t i = 0; i < ROWS; i++)
        y[i] = i % CLASSES;
    y[7] = UINT64_MAX;
    hsize_t yd[1] = {ROWS};
    put_dset(f, "labels", H5T_STD_U64LE, 1, yd, y);
    H5Fclose(f);
    const char *n = "/labels: value 18446744073709551615 at row 7";
    refused(train_on(d, "replicated"), d, n, NULL);
    refused(train_on(d, "sharded"), d, n, NULL);
    refused(eval_on(d), d, n, NULL);
    refused(inspect(d), d, n, NULL);

    make_data(g, H5P_DEFAULT);
    f = H5Fopen(g, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    const int64_t nc[2] = {3, 3};
    hsize_t two[1] = {2};
    put_attr(f, "/labels", "num_classes", H5T_NATIVE_INT64, 1, two, nc);
    H5Fclose(f);
    n = "/labels attribute 'num_classes' is a 2-element array";
    refused(train_on(g, "replicated"), g, n, NULL);
    refused(train_on(g, "sharded"), g, n, NULL);
    refused(eval_on(g), g, n, NULL);
    refused(inspect(g), g, n, NULL);
}

static CU_TestInfo checkpoint_tests[] = {
    {"fixture: data, a checkpoint, the controls", test_fixture},
    {"variable-length string attributes load", test_vlen_strings_load},
    {"an array where the scalar activation belongs", test_attr_array_for_scalar},
    {"root and /optimizer attributes as arrays", test_root_attr_arrays},
    {"attributes of the wrong class", test_attr_wrong_class},
    {"weights of the wrong rank, class or dims", test_weight_rank_class_dims},
    {"NaN and inf in weights, biases, optimizer state, standardisation", test_nonfinite_values},
    {"target statistics: std 0, negative, NaN; mean of the wrong length",
     test_target_statistics},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo data_tests[] = {
    {"a filter this HDF5 cannot decode", test_filter_unavailable},
    {"a virtual dataset whose source is gone", test_virtual_source_gone},
    {"external storage shorter than declared", test_external_storage_short},
    {"label 2^64 - 1 and an array num_classes", test_label_values},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"hostile checkpoints", NULL, NULL, NULL, NULL, checkpoint_tests},
    {"hostile data files", NULL, NULL, NULL, NULL, data_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = tu_run(suites);
    if (g_dir[0])
        tu_rmtree(g_dir);
    return rc;
}
