/* Command-line tests: the dmlp binary run as a user runs it, alone and under mpirun:
 * usage errors and exit codes, import idx, train on the shipped XOR config (it must learn
 * XOR), train a classifier on 2 ranks, eval --json identical at 1 and 3 ranks, inspect,
 * --resume auto, --init-from, and config errors that name the key. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <hdf5.h>

#include "data/checkpoint.h"
#include "data/dataset.h"
#include "nn/model.h"
#include "core/rng.h"
#include "testutil.h"

#define MPIRUN DMLP_MPIEXEC " --oversubscribe --bind-to none -np "

static char g_dir[512];

static void test_usage_and_exit_codes(void)
{
    CU_ASSERT_EQUAL(tu_sh("%s --help", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("usage: dmlp <command>"));
    CU_ASSERT(tu_has("DMLP_KERNEL=NAME"));
    CU_ASSERT_EQUAL(tu_sh("%s", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("missing command"));
    CU_ASSERT_EQUAL(tu_sh("%s frobnicate", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("unknown command 'frobnicate'"));
    CU_ASSERT_EQUAL(tu_sh("%s train --help", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("--resume PATH|auto"));
    CU_ASSERT(tu_has("dmlp help config"));
    CU_ASSERT_EQUAL(tu_sh("%s help config", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("| `optimizer.schedule.gamma` | float (0, 1] | `0.1` |"));
    CU_ASSERT_EQUAL(tu_sh("%s eval --help", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("--checkpoint PATH"));
    CU_ASSERT_EQUAL(tu_sh("%s import --help", DMLP_BINARY), 0);
    CU_ASSERT_EQUAL(tu_sh("%s inspect --help", DMLP_BINARY), 0);
    CU_ASSERT_EQUAL(tu_sh("%s export onnx --help", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("usage: dmlp export onnx"));
    CU_ASSERT_EQUAL(tu_sh("%s help predict", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("usage: dmlp predict"));
    CU_ASSERT_EQUAL(tu_sh("%s help frobnicate", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("help: no topic 'frobnicate'"));
    CU_ASSERT_EQUAL(tu_sh("%s train", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("missing CONFIG.yaml"));
    CU_ASSERT_EQUAL(tu_sh("%s train x.yaml --frob", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("unknown option '--frob'"));
    CU_ASSERT_EQUAL(tu_sh("%s train /nonexistent.yaml", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("/nonexistent.yaml"));
    CU_ASSERT_EQUAL(tu_sh("%s eval --data x.h5", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("--checkpoint (or --sweep) and --data are required"));
    CU_ASSERT_EQUAL(tu_sh("%s --version", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("dmlp "));
    CU_ASSERT(tu_has("kernels   "));
    /* The kernel choice: the portable one runs anywhere and --version says so; a name
     * that is not a kernel is refused on every rank with the value and the choices. */
    CU_ASSERT_EQUAL(tu_sh("DMLP_KERNEL=generic %s --version", DMLP_BINARY), 0);
    CU_ASSERT(tu_has("kernels   generic: "));
    CU_ASSERT_EQUAL(tu_sh("DMLP_KERNEL=avx3000 " MPIRUN "2 %s --version", DMLP_BINARY), 2);
    CU_ASSERT(tu_has("DMLP_KERNEL=avx3000: not a kernel this CPU runs (it runs "));
    CU_ASSERT(tu_has("generic"));
}

/* Writes big-endian IDX files through zlib (gzip). */
static void put_be32(gzFile f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    gzwrite(f, b, 4);
}

static void test_import_idx(void)
{
    char img[700], lab[700], out[700];
    snprintf(img, sizeof img, "%s/img.gz", g_dir);
    snprintf(lab, sizeof lab, "%s/lab.gz", g_dir);
    snprintf(out, sizeof out, "%s/idx.h5", g_dir);
    gzFile f = gzopen(img, "wb");
    put_be32(f, 0x803);
    put_be32(f, 3);
    put_be32(f, 2);
    put_be32(f, 2);
    unsigned char px[12] = {0, 255, 51, 102, 1, 2, 3, 4, 200, 100, 50, 25};
    gzwrite(f, px, sizeof px);
    gzclose(f);
    f = gzopen(lab, "wb");
    put_be32(f, 0x801);
    put_be32(f, 3);
    unsigned char ls[3] = {7, 0, 9};
    gzwrite(f, ls, 3);
    gzclose(f);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s import idx --images %s --labels %s --output %s",
                           DMLP_BINARY, img, lab, out), 0);
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, out, &e), DMLP_OK);
    CU_ASSERT_EQUAL(ds->n, 3);
    CU_ASSERT_EQUAL(ds->d, 4);
    CU_ASSERT_EQUAL(ds->k, 10);
    for (size_t i = 0; i < 12; i++)
        CU_ASSERT_DOUBLE_EQUAL(ds->features[i], px[i] / 255.0, 1e-7);
    CU_ASSERT_EQUAL(ds->labels[0], 7);
    CU_ASSERT_EQUAL(ds->labels[2], 9);
    dataset_free(&ds);
    CU_ASSERT_EQUAL(tu_sh("%s inspect %s", DMLP_BINARY, out), 0);
    CU_ASSERT(tu_has("[3, 4]"));
    /* images and labels swapped: a clear error naming the file, exit 2 */
    CU_ASSERT_EQUAL(tu_sh("%s import idx --images %s --labels %s --output %s/bad.h5",
                           DMLP_BINARY, lab, img, g_dir), 2);
    CU_ASSERT(tu_has(lab));
}

static void make_xor(const char *path)
{
    struct dataset *ds;
    struct dmlp_error e = {0};
    dataset_alloc(&ds, 4, 2, 1, 0, &e);
    for (int i = 0; i < 4; i++) {
        ds->features[2 * i] = (float)(i >> 1);
        ds->features[2 * i + 1] = (float)(i & 1);
        ds->targets[i] = (float)((i >> 1) ^ (i & 1));
    }
    CU_ASSERT_EQUAL(dataset_write(ds, path, &e), DMLP_OK);
    dataset_free(&ds);
}

static void test_xor_learns(void)
{
    char data[700], runs[700], latest[800];
    snprintf(data, sizeof data, "%s/xor.h5", g_dir);
    snprintf(runs, sizeof runs, "%s/xor-run", g_dir);
    make_xor(data);
    CU_ASSERT_EQUAL(tu_sh("%s train %s/configs/xor.yaml --set data.train=%s "
                          "--set checkpoint.dir=%s", DMLP_BINARY, DMLP_SOURCE_DIR, data, runs),
                    0);
    snprintf(latest, sizeof latest, "%s/latest.h5", runs);
    /* The trained network's outputs round to XOR of the inputs. */
    size_t in_dim, n;
    struct config_layer *ls = NULL;
    enum dmlp_loss loss;
    struct model *m = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_network(latest, &in_dim, &ls, &n, &loss, &e), 0);
    CU_ASSERT_EQUAL_FATAL(model_create(&m, in_dim, ls, n, loss, &e), 0);
    CU_ASSERT_EQUAL(checkpoint_load_layers(latest, m, &e), 0);
    model_reserve(m, 4, &e);
    const float X[8] = {0, 0, 0, 1, 1, 0, 1, 1};
    const float *Y = model_forward(m, X, 4);
    for (int i = 0; i < 4; i++) {
        printf("    xor(%g, %g) = %.4f\n", X[2 * i], X[2 * i + 1], Y[i]);
        CU_ASSERT(fabsf(Y[i] - (float)((i >> 1) ^ (i & 1))) < 0.2f);
    }
    model_free(&m);
    free(ls);
    CU_ASSERT_EQUAL(tu_sh("%s eval --checkpoint %s --data %s --json", DMLP_BINARY, latest, data),
                    0);
    CU_ASSERT(tu_has("\"samples\": 4"));
    /* a labels-free set has no accuracy */
    CU_ASSERT(strstr(tu_out, "accuracy") == NULL);
}

static void make_blobs(const char *path, size_t n, uint64_t seed)
{
    struct dataset *ds;
    struct dmlp_error e = {0};
    const size_t d = 6, k = 3;
    dataset_alloc(&ds, n, d, k, 1, &e);
    struct rng r;
    rng_seed(&r, seed, 1);
    for (size_t i = 0; i < n; i++) {
        const int32_t c = (int32_t)(i % k);
        ds->labels[i] = c;
        for (size_t j = 0; j < d; j++)
            ds->features[i * d + j] = (float)(0.6 * rng_normal(&r) + (j == (size_t)c ? 2.0 : 0));
    }
    CU_ASSERT_EQUAL(dataset_write(ds, path, &e), DMLP_OK);
    dataset_free(&ds);
}

/* Standardisation travels with the network: on features offset by +100, a network trained
 * on standardised inputs only scores when eval and predict standardise as training did. */
static void test_standardisation_applied_by_eval(void)
{
    char train[700], runs[700], latest[800];
    snprintf(train, sizeof train, "%s/shifted.h5", g_dir);
    snprintf(runs, sizeof runs, "%s/shifted-run", g_dir);
    snprintf(latest, sizeof latest, "%s/latest.h5", runs);
    struct dataset *ds;
    struct dmlp_error e = {0};
    dataset_alloc(&ds, 300, 4, 2, 1, &e);
    struct rng r;
    rng_seed(&r, 5, 1);
    for (size_t i = 0; i < 300; i++) {
        ds->labels[i] = (int32_t)(i % 2);
        for (size_t j = 0; j < 4; j++)
            ds->features[i * 4 + j] = (float)(100.0 + 0.3 * rng_normal(&r) +
                                              (j == 0 ? (i % 2 ? 0.5 : -0.5) : 0.0));
    }
    CU_ASSERT_EQUAL(dataset_write(ds, train, &e), DMLP_OK);
    dataset_free(&ds);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s train %s/configs/xor.yaml --set data.train=%s "
                           "--set checkpoint.dir=%s --set loss=cross_entropy "
                           "--set model.layers[0].activation=tanh "
                           "--set model.layers[1].units=2 --set model.layers[1].activation=softmax "
                           "--set data.normalize=standard --set training.epochs=30 "
                           "--set training.batch_size=16 --set optimizer.lr=0.1 "
                           "--set data.shuffle=true",
                           DMLP_BINARY, DMLP_SOURCE_DIR, train, runs), 0);
    CU_ASSERT(tu_has("standardised"));
    CU_ASSERT_EQUAL(tu_sh("%s eval --checkpoint %s --data %s --json", DMLP_BINARY, latest, train),
                    0);
    const char *a = strstr(tu_out, "\"accuracy\": ");
    CU_ASSERT_PTR_NOT_NULL(a);
    if (a)
        CU_ASSERT(atof(a + 12) > 0.85);
    CU_ASSERT_EQUAL(tu_sh("%s inspect %s", DMLP_BINARY, latest), 0);
    CU_ASSERT(tu_has("normalization  standard"));
}

static void test_classifier_mpi_train_eval_resume(void)
{
    char train[700], test[700], cfg[700], runs[700], yaml[4096], latest[800];
    snprintf(train, sizeof train, "%s/blobs-train.h5", g_dir);
    snprintf(test, sizeof test, "%s/blobs-test.h5", g_dir);
    snprintf(cfg, sizeof cfg, "%s/blobs.yaml", g_dir);
    snprintf(runs, sizeof runs, "%s/blobs-run", g_dir);
    snprintf(latest, sizeof latest, "%s/latest.h5", runs);
    make_blobs(train, 301, 1);
    make_blobs(test, 97, 2);
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - {units: 16, activation: relu}\n"
             "    - {units: 3, activation: softmax}\n"
             "loss: cross_entropy\n"
             "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n"
             "data: {train: %s, test: %s}\n"
             "training: {epochs: 3, batch_size: 32, seed: 3}\n"
             "checkpoint: {dir: %s, every_epochs: 1, keep_last: 2}\n",
             train, test, runs);
    tu_write_file(cfg, yaml);

    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s train %s --resume auto", DMLP_BINARY, cfg), 0);
    CU_ASSERT(tu_has("no checkpoint in"));
    CU_ASSERT(tu_has("2 ranks"));
    CU_ASSERT(tu_has("epoch    3/3"));
    CU_ASSERT(tu_has("test_acc"));
    CU_ASSERT(tu_has("samples/s"));
    CU_ASSERT(tu_has("checkpoint: "));
    struct stat sb;
    CU_ASSERT_EQUAL(stat(latest, &sb), 0);

    /* eval: the same numbers for 1 and 3 ranks */
    char one[4096], three[4096];
    CU_ASSERT_EQUAL(tu_sh("%s eval --checkpoint %s --data %s --json 2>/dev/null", DMLP_BINARY,
                           latest, test), 0);
    snprintf(one, sizeof one, "%.4000s", tu_out);
    CU_ASSERT(tu_has("\"accuracy\": "));
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "3 %s eval --checkpoint %s --data %s --json 2>/dev/null",
                           DMLP_BINARY, latest, test), 0);
    snprintf(three, sizeof three, "%.4000s", tu_out);
    const char *a1 = strstr(one, "\"correct\""), *a3 = strstr(three, "\"correct\"");
    CU_ASSERT(a1 && a3);
    if (a1 && a3) {
        CU_ASSERT_EQUAL(strncmp(a1, a3, 40), 0);
        double acc = atof(strstr(a1, "\"accuracy\": ") + 12);
        printf("    test accuracy %.4f\n", acc);
        CU_ASSERT(acc > 0.9); /* blobs 2σ apart per axis: well separated */
    }

    /* predict on 2 ranks: one file, /labels agreeing with eval's count of correct answers */
    char preds[800];
    snprintf(preds, sizeof preds, "%s/preds.h5", g_dir);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s predict --checkpoint %s --input %s --output %s",
                           DMLP_BINARY, latest, test, preds), 0);
    CU_ASSERT(tu_has("predicted 97 rows"));
    {
        hid_t f = H5Fopen(preds, H5F_ACC_RDONLY, H5P_DEFAULT);
        CU_ASSERT(f >= 0);
        int32_t plabels[97];
        float probs[97 * 3];
        if (f >= 0) {
            hid_t dl = H5Dopen2(f, "/labels", H5P_DEFAULT), dp = H5Dopen2(f, "/predictions",
                                                                         H5P_DEFAULT);
            CU_ASSERT(H5Dread(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, plabels) >= 0);
            CU_ASSERT(H5Dread(dp, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, probs) >= 0);
            H5Dclose(dl);
            H5Dclose(dp);
            H5Fclose(f);
            struct dataset *ds = NULL;
            struct dmlp_error e = {0};
            dataset_read(&ds, test, &e);
            long agree = 0;
            for (int i = 0; ds && i < 97; i++) {
                agree += plabels[i] == ds->labels[i];
                CU_ASSERT(fabs(probs[3 * i] + probs[3 * i + 1] + probs[3 * i + 2] - 1.0) < 1e-5);
            }
            dataset_free(&ds);
            const char *c1 = a1 ? strstr(a1, "\"correct\": ") : NULL;
            CU_ASSERT(c1 && atol(c1 + 11) == agree);
        }
    }
    CU_ASSERT(strstr(one, "\"confusion_matrix\": [[") != NULL);
    CU_ASSERT(strstr(one, "\"per_class_accuracy\": [") != NULL);

    /* inspect the checkpoint */
    CU_ASSERT_EQUAL(tu_sh("%s inspect %s", DMLP_BINARY, latest), 0);
    CU_ASSERT(tu_has("weight [16, 6]"));
    CU_ASSERT(tu_has("weight [3, 16]"));
    CU_ASSERT(tu_has("softmax"));
    CU_ASSERT(tu_has("step "));

    /* resume auto with raised epochs continues from epoch 3 */
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "3 %s train %s --resume auto --set training.epochs=4",
                           DMLP_BINARY, cfg), 0);
    CU_ASSERT(tu_has("resumed from"));
    CU_ASSERT(tu_has("epoch    4/4"));
    CU_ASSERT(strstr(tu_out, "epoch    1/4") == NULL);

    /* a different network cannot resume */
    CU_ASSERT_EQUAL(tu_sh("%s train %s --resume auto --set model.layers[0].units=8",
                           DMLP_BINARY, cfg), 2);
    CU_ASSERT(tu_has("/layers/0/weight"));

    /* --init-from with the same network */
    char runs2[800];
    snprintf(runs2, sizeof runs2, "%s2", runs);
    CU_ASSERT_EQUAL(tu_sh("%s train %s --init-from %s --set checkpoint.dir=%s "
                           "--set training.epochs=1", DMLP_BINARY, cfg, latest, runs2), 0);
    CU_ASSERT(tu_has("initialised /layers from"));

    /* a bad --set names the key; nothing is written */
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s train %s --set optimizer.lrr=1", DMLP_BINARY, cfg), 2);
    CU_ASSERT(tu_has("lrr"));
    /* a missing data file names it, on 2 ranks, exit 2, printed once */
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s train %s --set data.test=%s/none.h5", DMLP_BINARY, cfg,
                           g_dir), 2);
    CU_ASSERT(tu_has("none.h5"));
}

static void test_import_csv(void)
{
    char csv[700], out[700];
    snprintf(csv, sizeof csv, "%s/iris.csv", g_dir);
    snprintf(out, sizeof out, "%s/iris.h5", g_dir);
    tu_write_file(csv, "sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n"
                       "5.0,1.3,setosa\n6.3,6.0,virginica\n");
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s import csv %s --label-column species --output %s",
                           DMLP_BINARY, csv, out), 0);
    CU_ASSERT_EQUAL(tu_sh("%s inspect %s", DMLP_BINARY, out), 0);
    CU_ASSERT(tu_has("[4, 2]"));
    CU_ASSERT(tu_has("3 classes"));
    tu_write_file(csv, "a,b,y\n1,2,0\n1,x,1\n");
    CU_ASSERT_EQUAL(tu_sh("%s import csv %s --label-column y --output %s.bad", DMLP_BINARY, csv,
                           out), 2);
    CU_ASSERT(tu_has(":3:"));
    CU_ASSERT(tu_has("'x' is not a number"));
    CU_ASSERT_EQUAL(tu_sh("%s import csv %s --output %s.bad", DMLP_BINARY, csv, out), 2);
    CU_ASSERT(tu_has("exactly one of --label-column and --target-columns"));
}

/* data.train as a glob over three files (and data.test as a list) trains to the same
 * weights, bit for bit, as the one file holding their concatenation: replicated at 2 ranks
 * (with standardisation and a validation split, which see the rows as one set) and sharded
 * at 3 ranks (where shards span two files). */
static void test_many_files_same_weights(void)
{
    char whole[700], pattern[700], one[800], many[800];
    snprintf(whole, sizeof whole, "%s/blobs-all.h5", g_dir);
    snprintf(pattern, sizeof pattern, "%s/blobs-part-*.h5", g_dir);
    make_blobs(whole, 300, 11);
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, whole, &e), DMLP_OK);
    const size_t cut[4] = {0, 70, 190, 300}; /* not multiples of the batch or the shard */
    for (size_t i = 0; i < 3; i++) {
        struct dataset part = {.n = cut[i + 1] - cut[i], .d = ds->d, .k = ds->k,
                               .features = ds->features + cut[i] * ds->d,
                               .labels = ds->labels + cut[i]};
        CU_ASSERT_EQUAL(dataset_write(&part, tu_fmt("%s/blobs-part-%zu.h5", g_dir, i), &e),
                        DMLP_OK);
    }
    dataset_free(&ds);
    const char *net = "--set loss=cross_entropy --set model.layers[1].units=3 "
                      "--set model.layers[1].activation=softmax --set training.epochs=3 "
                      "--set training.batch_size=32 --set data.shuffle=true";
    const char *how[2] = {"--set data.normalize=standard --set data.validation_fraction=0.2",
                          "--set data.placement=sharded"};
    const int ranks[2] = {2, 3};
    for (int h = 0; h < 2; h++) {
        snprintf(one, sizeof one, "%s/blobs-one-%d", g_dir, h);
        snprintf(many, sizeof many, "%s/blobs-many-%d", g_dir, h);
        CU_ASSERT_EQUAL(tu_sh(MPIRUN "%d %s train %s/configs/xor.yaml %s %s --set data.train=%s "
                               "--set data.test=%s --set checkpoint.dir=%s", ranks[h],
                               DMLP_BINARY, DMLP_SOURCE_DIR, net, how[h], whole, whole, one), 0);
        CU_ASSERT_EQUAL(tu_sh(MPIRUN "%d %s train %s/configs/xor.yaml %s %s --set data.train=%s "
                               "--set data.test=[%s/blobs-part-0.h5,%s/blobs-part-1.h5,"
                               "%s/blobs-part-2.h5] --set checkpoint.dir=%s", ranks[h],
                               DMLP_BINARY, DMLP_SOURCE_DIR, net, how[h], pattern, g_dir, g_dir,
                               g_dir, many), 0);
        CU_ASSERT(tu_has("blobs-part-0.h5 and 2 more files"));
        CU_ASSERT_EQUAL(tu_checkpoint_diff(tu_fmt("%s/latest.h5", one),
                                           tu_fmt("%s/latest.h5", many)), 0.0);
    }
    /* a part of another width is named, with the set's first file */
    make_blobs(tu_fmt("%s/blobs-part-3.h5", g_dir), 10, 3);
    make_xor(tu_fmt("%s/blobs-part-4.h5", g_dir));
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s train %s/configs/xor.yaml %s --set data.train=%s "
                           "--set checkpoint.dir=%s/blobs-bad", DMLP_BINARY, DMLP_SOURCE_DIR,
                           net, pattern, g_dir), 2);
    CU_ASSERT(tu_has("blobs-part-4.h5: has /targets, but"));
    CU_ASSERT(tu_has("blobs-part-0.h5 (the first file of the set) has /labels"));
}

/* The replicated placement holds one copy per node, in a block the node's ranks share:
 * node rank 0 reads it, holds out the validation split and standardises features and
 * targets in place, once. Reproducible mode pins it: 1 rank (a copy of its own), 2 and 3
 * ranks sharing one copy, and 2 ranks with a copy each (data.share_node false) train to
 * the same weights, bit for bit; a second standardisation by another rank would not. */
static void test_one_copy_per_node(void)
{
    char data[700], run[4][800];
    snprintf(data, sizeof data, "%s/surface.h5", g_dir);
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(dataset_alloc(&ds, 250, 3, 2, 0, &e), DMLP_OK);
    struct rng r;
    rng_seed(&r, 8, 1);
    for (size_t i = 0; i < 250; i++) {
        float *x = ds->features + 3 * i, *t = ds->targets + 2 * i;
        for (size_t j = 0; j < 3; j++)
            x[j] = (float)(50.0 + 10.0 * rng_normal(&r)); /* far from standard */
        t[0] = 1000.0f + 3.0f * x[0] - x[1];
        t[1] = 0.01f * x[2] * x[0];
    }
    CU_ASSERT_EQUAL(dataset_write(ds, data, &e), DMLP_OK);
    dataset_free(&ds);
    const char *how[4] = {"1", "2", "3", "2"};
    for (int i = 0; i < 4; i++) {
        snprintf(run[i], sizeof run[i], "%s/surface-%d", g_dir, i);
        CU_ASSERT_EQUAL(tu_sh(MPIRUN "%s %s train %s/configs/xor.yaml --set data.train=%s "
                               "--set model.layers[1].units=2 --set data.normalize=standard "
                               "--set data.normalize_targets=true --set "
                               "data.validation_fraction=0.2 --set training.reproducible=true "
                               "--set training.epochs=3 --set training.batch_size=20 "
                               "--set data.shuffle=true --set optimizer.lr=0.01 "
                               "--set data.share_node=%s --set checkpoint.dir=%s", how[i],
                               DMLP_BINARY, DMLP_SOURCE_DIR, data, i == 3 ? "false" : "true",
                               run[i]), 0);
        if (i == 1 || i == 2)
            CU_ASSERT(tu_has(tu_fmt("(one copy per node, shared by its %s ranks)", how[i])));
        if (i == 3)
            CU_ASSERT(tu_has("(a copy on every rank: data.share_node is false)"));
        if (i > 0)
            CU_ASSERT_EQUAL(tu_checkpoint_diff(tu_fmt("%s/latest.h5", run[0]),
                                               tu_fmt("%s/latest.h5", run[i])), 0.0);
    }
    /* the held-out rows' loss agrees too: every rank evaluates the same shared rows */
    CU_ASSERT_EQUAL(tu_sh("%s eval --checkpoint %s/latest.h5 --data %s --json", DMLP_BINARY,
                          run[2], data), 0);
}

/* The last "val_loss" of a run's metrics.jsonl (NAN when there is none). */
static double last_val_loss(const char *run)
{
    FILE *f = fopen(tu_fmt("%s/metrics.jsonl", run), "r");
    char line[8192];
    double v = NAN;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"val_loss\": ");
        if (p)
            v = atof(p + 12);
    }
    if (f)
        fclose(f);
    return v;
}

/* data.validation, a set of its own (here a glob over two files): every placement
 * evaluates it after each epoch, and its last val_loss is what dmlp eval finds for the
 * final checkpoint on the concatenation of the two files. */
static void test_validation_files(void)
{
    char train[700], whole[700], pattern[700], run[800];
    snprintf(train, sizeof train, "%s/vf-train.h5", g_dir);
    snprintf(whole, sizeof whole, "%s/vf-val.h5", g_dir);
    snprintf(pattern, sizeof pattern, "%s/vf-val-*.h5", g_dir);
    make_blobs(train, 240, 21);
    make_blobs(whole, 90, 22);
    struct dataset *ds = NULL;
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, whole, &e), DMLP_OK);
    for (size_t i = 0; i < 2; i++) {
        struct dataset part = {.n = 45, .d = ds->d, .k = ds->k,
                               .features = ds->features + i * 45 * ds->d,
                               .labels = ds->labels + i * 45};
        CU_ASSERT_EQUAL(dataset_write(&part, tu_fmt("%s/vf-val-%zu.h5", g_dir, i), &e),
                        DMLP_OK);
    }
    dataset_free(&ds);
    const char *how[3] = {"replicated", "sharded", "streamed"};
    for (int h = 0; h < 3; h++) {
        snprintf(run, sizeof run, "%s/vf-%s", g_dir, how[h]);
        CU_ASSERT_EQUAL(tu_sh(MPIRUN "%d %s train %s/configs/xor.yaml --set loss=cross_entropy "
                               "--set model.layers[1].units=3 --set "
                               "model.layers[1].activation=softmax --set training.epochs=3 "
                               "--set training.batch_size=32 --set data.normalize=standard "
                               "--set data.train=%s --set data.validation=%s "
                               "--set data.placement=%s --set data.block_rows=32 "
                               "--set data.shuffle_window=2 --set "
                               "training.early_stopping.patience=5 --set checkpoint.dir=%s",
                               h == 1 ? 3 : 2, DMLP_BINARY, DMLP_SOURCE_DIR, train, pattern,
                               how[h], run), 0);
        CU_ASSERT(tu_has("validation: "));
        CU_ASSERT(tu_has("vf-val-0.h5 and 1 more file"));
        const double v = last_val_loss(run);
        CU_ASSERT_EQUAL(tu_sh("%s eval --checkpoint %s/latest.h5 --data %s --json", DMLP_BINARY,
                              run, whole), 0);
        const char *l = strstr(tu_out, "\"loss\": ");
        CU_ASSERT_PTR_NOT_NULL_FATAL(l);
        printf("    %s: val_loss %.9g, eval %.9g\n", how[h], v, atof(l + 8));
        CU_ASSERT(fabs(v - atof(l + 8)) <= 1e-6 * fabs(v));
    }
    /* with validation_fraction it is one or the other */
    CU_ASSERT_EQUAL(tu_sh("%s train %s/configs/xor.yaml --set data.train=%s "
                          "--set data.validation=%s --set data.validation_fraction=0.1",
                          DMLP_BINARY, DMLP_SOURCE_DIR, train, whole), 2);
    CU_ASSERT(tu_has("data.validation: give either data.validation or "
                     "data.validation_fraction, not both"));
}

static CU_TestInfo cli_tests[] = {
    {"usage, help and exit codes", test_usage_and_exit_codes},
    {"import idx (gzip) under mpirun", test_import_idx},
    {"import csv", test_import_csv},
    {"standardisation applied by eval", test_standardisation_applied_by_eval},
    {"configs/xor.yaml learns XOR", test_xor_learns},
    {"data.train as a glob: the same weights as one file", test_many_files_same_weights},
    {"replicated data: one copy per node, the same weights", test_one_copy_per_node},
    {"data.validation: its own files, in every placement", test_validation_files},
    {"classifier: train on 2 ranks, eval, inspect, resume", test_classifier_mpi_train_eval_resume},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"cli", NULL, NULL, NULL, NULL, cli_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "cli");
    int rc = tu_run(suites);
    tu_rmtree(g_dir);
    return rc;
}
