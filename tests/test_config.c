/* Tests of config: the shipped configs, a table of bad configs (each must name the file,
 * the line and the key path), --set overrides, defaults and the YAML round trip. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "testutil.h"

/* A valid config with its line numbers; the bad configs below are edits of it. */
static const char *const base_yaml =
    "model:\n"                                /* 1 */
    "  layers:\n"                             /* 2 */
    "    - {units: 16, activation: relu}\n"   /* 3 */
    "    - {units: 3, activation: softmax}\n" /* 4 */
    "optimizer:\n"                            /* 5 */
    "  lr: 0.1\n"                             /* 6 */
    "data:\n"                                 /* 7 */
    "  train: t.h5\n";                        /* 8 */

static struct config *load_str(const char *yaml, const char *const *sets, size_t n_sets,
                               struct dmlp_error *err)
{
    struct config *cfg = NULL;
    int rc = config_load_string(&cfg, yaml, strlen(yaml), "bad.yaml", sets, n_sets, err);
    CU_ASSERT_EQUAL(rc, cfg ? DMLP_OK : DMLP_ERR_INPUT);
    return cfg;
}

/* Loading must fail with DMLP_ERR_INPUT and a message containing want. */
static void expect_fail(const char *yaml, const char *const *sets, size_t n_sets,
                        const char *want)
{
    struct dmlp_error err = {0};
    struct config *cfg = NULL;
    int rc = config_load_string(&cfg, yaml, strlen(yaml), "bad.yaml", sets, n_sets, &err);
    int ok = rc == DMLP_ERR_INPUT && cfg == NULL && err.code == DMLP_ERR_INPUT &&
             strstr(err.msg, want) != NULL;
    if (!ok)
        fprintf(stderr, "\n  want \"%s\"\n  got  rc %d: \"%s\"\n", want, rc, err.msg);
    CU_ASSERT(ok);
    config_free(&cfg);
}

/* Two data.train (or data.test) values: the same entries in the same order. */
static int files_equal(const struct config_files *a, const struct config_files *b)
{
    if (a->n != b->n)
        return 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return 0;
    return 1;
}

static int cfg_equal(const struct config *a, const struct config *b)
{
    if (a->model.n_layers != b->model.n_layers || a->model.init != b->model.init)
        return 0;
    for (uint32_t i = 0; i < a->model.n_layers; i++)
        if (a->model.layers[i].units != b->model.layers[i].units ||
            a->model.layers[i].activation != b->model.layers[i].activation)
            return 0;
    const struct config_optimizer *oa = &a->optimizer, *ob = &b->optimizer;
    const struct config_data *da = &a->data, *db = &b->data;
    const struct config_training *ta = &a->training, *tb = &b->training;
    const struct config_checkpoint *ca = &a->checkpoint, *cb = &b->checkpoint;
    /* Exact comparison of doubles on purpose: the round trip must not lose a bit. */
    return a->loss == b->loss && oa->name == ob->name && oa->lr == ob->lr &&
           oa->momentum == ob->momentum && oa->nesterov == ob->nesterov &&
           oa->weight_decay == ob->weight_decay && files_equal(&da->train, &db->train) &&
           files_equal(&da->test, &db->test) && da->shuffle == db->shuffle &&
           da->drop_last == db->drop_last && da->placement == db->placement &&
           da->normalize == db->normalize && da->normalize_targets == db->normalize_targets &&
           ta->epochs == tb->epochs && ta->batch_size == tb->batch_size &&
           ta->seed == tb->seed && ta->max_steps == tb->max_steps &&
           strcmp(ca->dir, cb->dir) == 0 && ca->every_epochs == cb->every_epochs &&
           ca->keep_last == cb->keep_last;
}

/* ---- shipped configs ---------------------------------------------------------------- */

static void test_fashion_mnist(void)
{
    struct dmlp_error err = {0};
    struct config *c = NULL;
    int rc = config_load(&c, DMLP_SOURCE_DIR "/configs/fashion_mnist.yaml", NULL, 0, &err);
    if (rc != DMLP_OK)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, DMLP_OK);
    CU_ASSERT_EQUAL(c->model.n_layers, 3);
    static const uint32_t units[] = {256, 128, 10};
    static const enum dmlp_activation acts[] = {DMLP_ACT_RELU, DMLP_ACT_RELU, DMLP_ACT_SOFTMAX};
    for (uint32_t i = 0; i < 3 && i < c->model.n_layers; i++) {
        CU_ASSERT_EQUAL(c->model.layers[i].units, units[i]);
        CU_ASSERT_EQUAL(c->model.layers[i].activation, acts[i]);
    }
    CU_ASSERT_EQUAL(c->model.init, DMLP_INIT_HE);
    CU_ASSERT_EQUAL(c->loss, DMLP_LOSS_CROSS_ENTROPY);
    CU_ASSERT_EQUAL(c->optimizer.name, DMLP_OPT_SGD);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 0.05, 0);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.momentum, 0.9, 0);
    CU_ASSERT_TRUE(c->optimizer.nesterov);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.weight_decay, 1e-3, 0);
    CU_ASSERT_EQUAL(c->optimizer.schedule.name, DMLP_SCHEDULE_COSINE);
    CU_ASSERT_EQUAL(c->data.normalize, DMLP_NORMALIZE_STANDARD);
    CU_ASSERT_EQUAL_FATAL(c->data.train.n, 1);
    CU_ASSERT_STRING_EQUAL(c->data.train.v[0], "data/fashion_mnist_train.h5");
    CU_ASSERT_EQUAL_FATAL(c->data.test.n, 1);
    CU_ASSERT_STRING_EQUAL(c->data.test.v[0], "data/fashion_mnist_test.h5");
    CU_ASSERT_TRUE(c->data.shuffle);
    CU_ASSERT_EQUAL(c->data.placement, DMLP_PLACEMENT_REPLICATED);
    CU_ASSERT_EQUAL(c->training.epochs, 20);
    CU_ASSERT_EQUAL(c->training.batch_size, 64);
    CU_ASSERT_EQUAL(c->training.seed, 42);
    CU_ASSERT_EQUAL(c->training.max_steps, 0);
    CU_ASSERT_STRING_EQUAL(c->checkpoint.dir, "runs/fashion_mnist");
    CU_ASSERT_EQUAL(c->checkpoint.every_epochs, 1);
    CU_ASSERT_EQUAL(c->checkpoint.keep_last, 3);
    config_free(&c);
    CU_ASSERT_PTR_NULL(c);
}

static void test_xor(void)
{
    struct dmlp_error err = {0};
    struct config *c = NULL;
    int rc = config_load(&c, DMLP_SOURCE_DIR "/configs/xor.yaml", NULL, 0, &err);
    if (rc != DMLP_OK)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(c->model.n_layers, 2);
    CU_ASSERT_EQUAL(c->model.layers[0].activation, DMLP_ACT_SIGMOID);
    CU_ASSERT(c->model.layers[0].units >= 2);
    CU_ASSERT_EQUAL(c->model.layers[1].units, 1);
    CU_ASSERT_EQUAL(c->model.layers[1].activation, DMLP_ACT_SIGMOID);
    CU_ASSERT_EQUAL(c->model.init, DMLP_INIT_XAVIER);
    CU_ASSERT_EQUAL(c->loss, DMLP_LOSS_MSE);
    CU_ASSERT_EQUAL(c->optimizer.momentum, 0.0);
    CU_ASSERT(c->optimizer.lr >= 0.5);
    CU_ASSERT_EQUAL_FATAL(c->data.train.n, 1);
    CU_ASSERT_STRING_EQUAL(c->data.train.v[0], "data/xor.h5");
    CU_ASSERT_EQUAL(c->data.test.n, 0);
    CU_ASSERT_FALSE(c->data.shuffle);
    CU_ASSERT_EQUAL(c->training.batch_size, 4);
    CU_ASSERT(c->training.epochs >= 2000 && c->training.epochs <= 5000);
    CU_ASSERT_STRING_EQUAL(c->checkpoint.dir, "runs/xor");
    CU_ASSERT_EQUAL(c->checkpoint.every_epochs, 0);
    CU_ASSERT_EQUAL(c->checkpoint.keep_last, 1);
    config_free(&c);
}

static void test_base_is_valid(void)
{
    struct dmlp_error err = {0};
    struct config *c = load_str(base_yaml, NULL, 0, &err);
    if (!c)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL(c);
    config_free(&c);
}

/* ---- bad configs -------------------------------------------------------------------- */

static const struct {
    const char *yaml, *want;
} bad_configs[] = {
    /* unknown keys: the line of the key itself */
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ncolour: red\n",
     "bad.yaml:9: colour: unknown key (known: model, loss, loss_delta, loss_weights, optimizer, "
     "data, training, checkpoint, comm)"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  betas: 2\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.betas: unknown key (known in optimizer: name, lr, momentum, "
     "nesterov, weight_decay, beta1, beta2, eps, clip_norm, history, max_iter, lr_scaling, base_batch_size, schedule)"},
    {"model:\n  layers:\n    - {units: 16, activation: relu, dropuot: 0.5}\n    - {units: 3, "
     "activation: softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].dropuot: unknown key (known in model.layers[0]: units, "
     "activation, dropout)"},
    /* types and enums */
    {"model:\n  layers:\n    - {units: 16, activation: rleu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].activation: rleu is not one of sigmoid, tanh, relu, "
     "leaky_relu, linear, softmax"},
    {"model:\n  layers:\n    - {units: 16, activation: 2}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].activation: 2 is not one of sigmoid"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: -8, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:4: model.layers[1].units: -8 is not a positive integer"},
    {"model:\n  layers:\n    - {units: abc, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].units: abc is not a positive integer"},
    {"model:\n  layers:\n    - {units: 0, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].units: 0 is not a positive integer"},
    {"model:\n  layers:\n    - {units: 99999999999, activation: relu}\n    - {units: 3, "
     "activation: softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].units: 99999999999 is too large (at most 4294967295)"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ntraining:\n  epochs: 1.5\n",
     "bad.yaml:10: training.epochs: 1.5 is not a positive integer"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n  shuffle: maybe\n",
     "bad.yaml:9: data.shuffle: maybe is not true or false"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 1e400\ndata:\n  train: t.h5\n",
     "bad.yaml:6: optimizer.lr: 1e400 is not a finite number"},
    {"model:\n  layers: 3\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:2: model.layers: expected a list, found a single value"},
    {"model:\n  layers:\n    - 16\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0]: expected a mapping (keys: units, activation, dropout), found a "
     "single value"},
    {"model:\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:1: model: expected a mapping (keys: layers, init), found an empty value"},
    /* required keys */
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  momentum: 0.9\ndata:\n  train: t.h5\n",
     "bad.yaml:5: optimizer: missing required key 'lr'"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n",
     "missing required section 'data'"},
    {"model:\n  init: he\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:1: model: missing required key 'layers'"},
    {"model:\n  layers: []\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:2: model.layers: the list is empty"},
    /* ranges */
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0\ndata:\n  train: t.h5\n",
     "bad.yaml:6: optimizer.lr: 0 is not a positive number"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  momentum: 1.5\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.momentum: 1.5 is not in [0, 1)"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  weight_decay: -0.01\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.weight_decay: -0.01 is not a non-negative number"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  nesterov: true\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.nesterov: true requires optimizer.momentum > 0"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ntraining:\n  batch_size: 0\n",
     "bad.yaml:10: training.batch_size: 0 is not a positive integer"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ntraining:\n  epochs: 0\n",
     "bad.yaml:10: training.epochs: 0 is not a positive integer"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ncomm:\n  bucket_kb: 0\n",
     "bad.yaml:10: comm.bucket_kb: 0 is not a positive integer"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ncomm:\n  bucket_kb: 9999999\n",
     "bad.yaml:10: comm.bucket_kb: 9999999 KiB is more than 4 GiB per allreduce"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ncomm:\n  overlap: sometimes\n",
     "bad.yaml:10: comm.overlap: sometimes is not true or false"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: \"\"\n",
     "bad.yaml:8: data.train: empty path"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ncheckpoint:\n  dir: ''\n",
     "bad.yaml:10: checkpoint.dir: empty path"},
    /* cross-field rules */
    {"model:\n  layers:\n    - {units: 16, activation: softmax}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:3: model.layers[0].activation: softmax is only allowed on the last layer"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "sigmoid}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:4: model.layers[1].activation: sigmoid, but loss cross_entropy requires a "
     "softmax output layer"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\nloss: mse\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n",
     "bad.yaml:5: loss: mse cannot follow a softmax output layer: softmax requires loss "
     "cross_entropy"},
    /* optimizer, schedule, data and early-stopping ranges */
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  name: adam\n  lr: 0.1\n  momentum: 0.9\ndata:\n  train: t.h5\n",
     "bad.yaml:8: optimizer.momentum: applies to sgd only; adam uses beta1"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  name: adamw\n  lr: 0.1\n  beta2: 1.0\ndata:\n  train: t.h5\n",
     "bad.yaml:8: optimizer.beta2: 1 is not in [0, 1)"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  schedule: {name: cosine, min_lr: 0.5}\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.schedule.min_lr: 0.5 is not in [0, optimizer.lr = 0.1]"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  schedule: {name: step, gamma: 0}\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.schedule.gamma: 0 is not in (0, 1]"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  schedule: {name: linear}\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.schedule.name: linear is not one of constant, step, cosine"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  clip_norm: -1\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.clip_norm: -1 is not a non-negative number"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n  validation_fraction: 1.0\n",
     "bad.yaml:9: data.validation_fraction: 1 is not in [0, 1)"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\ndata:\n  train: t.h5\ntraining:\n  early_stopping: {patience: 3}\n",
     "bad.yaml:10: training.early_stopping.patience: early stopping watches the validation "
     "set"},
    /* YAML itself */
    {"model:\n  layers:\n    - {units: 16, activation: relu\noptimizer:\n  lr: 0.1\n",
     "YAML syntax error"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n lr: 0.2\ndata:\n  train: t.h5\n",
     "bad.yaml:7: YAML syntax error: did not find expected key"},
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  lr: 0.2\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer.lr: duplicate key (first given at line 6)"},
    {"", "bad.yaml: the config is empty"},
    {"# nothing but a comment\n", "bad.yaml: the config is empty"},
    {"- model\n- data\n", "bad.yaml:1: the config must be a mapping"},
    {"base: &b {units: 3, activation: softmax}\nmodel:\n  layers: [*b]\n",
     "bad.yaml:3: model.layers: aliases (*name) are not supported"},
    {"model:\n  layers: [*nowhere]\n", "bad.yaml:2: aliases (*name) are not supported"},
    /* a YAML escape cannot hide trailing text behind a NUL */
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: \"0.1\\0x\"\ndata:\n  train: t.h5\n",
     "bad.yaml:6: optimizer.lr: the value holds a NUL character"},
    /* nor behind a key's NUL: "momentum\0x" is not momentum */
    {"model:\n  layers:\n    - {units: 16, activation: relu}\n    - {units: 3, activation: "
     "softmax}\noptimizer:\n  lr: 0.1\n  \"momentum\\0x\": 0.5\ndata:\n  train: t.h5\n",
     "bad.yaml:7: optimizer: a key must be a plain name"},
};

static void test_bad_configs(void)
{
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++)
        expect_fail(bad_configs[i].yaml, NULL, 0, bad_configs[i].want);
}

/* The syntax-error line is libyaml's; check it points at the right place. */
static void test_syntax_error_line(void)
{
    const char *yaml = "model:\n  layers:\n    - {units: 16, activation: relu}\n"
                       "  init: [he\noptimizer:\n  lr: 0.1\n";
    struct dmlp_error err = {0};
    struct config *c = load_str(yaml, NULL, 0, &err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "YAML syntax error"));
    /* libyaml notices the unclosed flow sequence on line 5 or 6 */
    CU_ASSERT(strncmp(err.msg, "bad.yaml:5:", 11) == 0 || strncmp(err.msg, "bad.yaml:6:", 11) == 0);
    config_free(&c);
}

/* A lax reader (libcyaml 1.3, once used here) reads "010" as 8 and "2" as true; we do not. */
static void test_strict_scalars(void)
{
    const char *yaml = "model:\n  layers:\n    - {units: 010, activation: softmax}\n"
                       "optimizer: {lr: 0.1, nesterov: no, momentum: 0.5}\n"
                       "data: {train: t.h5, shuffle: Off, drop_last: yes}\n"
                       "training: {seed: 18446744073}\n";
    struct dmlp_error err = {0};
    struct config *c = load_str(yaml, NULL, 0, &err);
    if (!c)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->model.layers[0].units, 10);
    CU_ASSERT_FALSE(c->optimizer.nesterov);
    CU_ASSERT_FALSE(c->data.shuffle);
    CU_ASSERT_TRUE(c->data.drop_last);
    CU_ASSERT_EQUAL(c->training.seed, UINT64_C(18446744073));
    config_free(&c);
    expect_fail("model:\n  layers:\n    - {units: 8x, activation: softmax}\noptimizer:\n"
                "  lr: 0.1\ndata:\n  train: t.h5\n", NULL, 0,
                "bad.yaml:3: model.layers[0].units: 8x is not a positive integer");
    expect_fail("model:\n  layers:\n    - {units: 8, activation: softmax}\noptimizer:\n"
                "  lr: 0.1\ndata:\n  train: t.h5\n  drop_last: 2\n",
                NULL, 0, "bad.yaml:8: data.drop_last: 2 is not true or false");
}

/* ---- files -------------------------------------------------------------------------- */

static void test_files(void)
{
    struct dmlp_error err = {0};
    struct config *c = NULL;
    CU_ASSERT_EQUAL(config_load(&c, "/nonexistent/x.yaml", NULL, 0, &err), DMLP_ERR_INPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "/nonexistent/x.yaml: cannot open: No such file or directory");
    CU_ASSERT_PTR_NULL(c);

    char dir[512], path[600];
    tu_mkdtemp(dir, sizeof dir, "config");
    /* a file's errors carry its path */
    snprintf(path, sizeof path, "%s/run.yaml", dir);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(path, "model:\n  layers:\n    - {units: 4, "
                                              "activation: softmax}\noptimizer:\n  lr: -1\n"
                                              "data:\n  train: a.h5\n"), 0);
    CU_ASSERT_EQUAL(config_load(&c, path, NULL, 0, &err), DMLP_ERR_INPUT);
    char want[700];
    snprintf(want, sizeof want, "%s:5: optimizer.lr: -1 is not a positive number", path);
    CU_ASSERT_STRING_EQUAL(err.msg, want);

    /* a file over 1 MiB is refused before parsing */
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    size_t n = ((size_t)1 << 20) + 2;
    char *big = malloc(n + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, '#', n);
    big[n - 1] = '\n';
    big[n] = '\0';
    CU_ASSERT_EQUAL(tu_write_file(path, big), 0);
    free(big);
    CU_ASSERT_EQUAL(config_load(&c, path, NULL, 0, &err), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "larger than 1 MiB"));
    CU_ASSERT_PTR_NULL(c);
    tu_rmtree(dir);
}

static void test_names(void)
{
    enum dmlp_activation a;
    for (int i = DMLP_ACT_SIGMOID; i <= DMLP_ACT_SOFTMAX; i++) {
        const char *name = dmlp_activation_name((enum dmlp_activation)i);
        CU_ASSERT_EQUAL(dmlp_activation_parse(name, &a), 0);
        CU_ASSERT_EQUAL(a, (enum dmlp_activation)i);
    }
    CU_ASSERT_STRING_EQUAL(dmlp_activation_name(DMLP_ACT_LEAKY_RELU), "leaky_relu");
    CU_ASSERT_EQUAL(dmlp_activation_parse("ReLU", &a), -1);
    CU_ASSERT_EQUAL(dmlp_activation_parse("", &a), -1);
    CU_ASSERT_STRING_EQUAL(dmlp_loss_name(DMLP_LOSS_CROSS_ENTROPY), "cross_entropy");
    CU_ASSERT_STRING_EQUAL(dmlp_loss_name(DMLP_LOSS_MSE), "mse");
}

/* ---- --set -------------------------------------------------------------------------- */

static void test_set_values(void)
{
    const char *sets[] = {
        "optimizer.lr=0.0125",        "model.layers[0].units=64",
        "optimizer.momentum=0.5",     "optimizer.nesterov=true",
        "training.seed=5000000000",   "data.shuffle=false",
        "data.test=t2.h5",            "model.layers[1].activation=softmax",
        "model.init=xavier",          "checkpoint.dir=/tmp/run",
        "training.max_steps=100",     "model.layers[00].units=65",
    };
    struct dmlp_error err = {0};
    struct config *c = load_str(base_yaml, sets, sizeof sets / sizeof sets[0], &err);
    if (!c)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.lr, 0.0125, 0);
    CU_ASSERT_EQUAL(c->model.layers[0].units, 65); /* the later --set wins */
    CU_ASSERT_EQUAL(c->model.layers[1].units, 3);
    CU_ASSERT_DOUBLE_EQUAL(c->optimizer.momentum, 0.5, 0);
    CU_ASSERT_TRUE(c->optimizer.nesterov);
    CU_ASSERT_EQUAL(c->training.seed, UINT64_C(5000000000));
    CU_ASSERT_FALSE(c->data.shuffle);
    CU_ASSERT_EQUAL_FATAL(c->data.test.n, 1);
    CU_ASSERT_STRING_EQUAL(c->data.test.v[0], "t2.h5");
    CU_ASSERT_EQUAL(c->model.init, DMLP_INIT_XAVIER);
    CU_ASSERT_STRING_EQUAL(c->checkpoint.dir, "/tmp/run");
    CU_ASSERT_EQUAL(c->training.max_steps, 100);
    config_free(&c);

    /* an empty value clears an optional string, and so does YAML's null, as in a file:
     * config_to_yaml could not write a path "null" that reads back as one */
    const char *clear[] = {"data.test=", "data.test=null"};
    const char *with_test = "model:\n  layers:\n    - {units: 3, activation: softmax}\n"
                            "optimizer: {lr: 0.1}\ndata: {train: a.h5, test: b.h5}\n";
    for (size_t i = 0; i < 2; i++) {
        c = load_str(with_test, clear + i, 1, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(c->data.test.n, 0);
        config_free(&c);
    }
}

static void test_set_errors(void)
{
    static const struct {
        const char *set, *want;
    } cases[] = {
        {"optimizer.lrr=0.1", "--set optimizer.lrr=0.1: unknown key 'lrr' in optimizer "
                              "(known: name, lr, momentum, nesterov, weight_decay, "
                              "beta1, beta2, eps, clip_norm, history, max_iter, lr_scaling, base_batch_size, schedule)"},
        {"optimiser.lr=0.1", "--set optimiser.lr=0.1: unknown top-level key 'optimiser' "
                             "(known: model, loss, loss_delta, loss_weights, optimizer, data, "
                             "training, checkpoint, comm)"},
        {"optimizer.lr", "--set optimizer.lr: expected key.path=value"},
        {"=3", "--set =3: expected key.path=value"},
        {"model.layers[2].units=4",
         "--set model.layers[2].units=4: index 2 is out of range: model.layers has 2 entries"},
        {"model.layers.units=4", "--set model.layers.units=4: model.layers is a list; name "
                                 "an entry, e.g. model.layers[0]"},
        {"optimizer.lr[0]=4", "--set optimizer.lr[0]=4: optimizer.lr is not a list"},
        {"optimizer.lr.x=4", "--set optimizer.lr.x=4: optimizer.lr is a single value"},
        {"model.layers[0].units=", "--set model.layers[0].units=: model.layers[0].units: '' "
                                   "is not a positive integer"},
        {"optimizer.lr=fast", "--set optimizer.lr=fast: optimizer.lr: fast is not a finite "
                              "number"},
        {"optimizer.nesterov=1", "--set optimizer.nesterov=1: optimizer.nesterov: 1 is not "
                                 "true or false"},
        {"model.layers[1].activation=gelu", "--set model.layers[1].activation=gelu: "
                                            "model.layers[1].activation: gelu is not one of "
                                            "sigmoid, tanh, relu, leaky_relu, linear, softmax"},
        {"training.seed=18446744073709551615", "training.seed: 18446744073709551615 is too "
                                               "large (at most 9223372036854775807)"},
        {"training.epochs=-1", "training.epochs: -1 is not a positive integer"},
        {"optimizer=sgd", "--set optimizer=sgd: optimizer is a mapping (keys: name, lr, "
                          "momentum, nesterov, weight_decay, beta1, beta2, eps, clip_norm, history, max_iter, lr_scaling, base_batch_size, schedule); set one of "
                          "its values instead"},
        {"model.layers=3", "--set model.layers=3: model.layers is a list; set one of its "
                           "values instead"},
        {"model.layers[x].units=3", "is not a key path like optimizer.lr"},
        /* valid syntax, invalid config: the message names the --set, not a line */
        {"optimizer.lr=-1", "--set optimizer.lr=-1: optimizer.lr: -1 is not a positive number"},
        {"optimizer.nesterov=true", "--set optimizer.nesterov=true: optimizer.nesterov: "
                                    "true requires optimizer.momentum > 0"},
        {"data.normalize_targets=true", "--set data.normalize_targets=true: "
                                        "data.normalize_targets: true needs a regression "
                                        "loss (mse, mae or huber): cross_entropy predicts "
                                        "class labels"},
        {"model.layers[0].activation=softmax", "--set model.layers[0].activation=softmax: "
                                               "model.layers[0].activation: softmax is only "
                                               "allowed on the last layer"},
        {"data.train=", "--set data.train=: data.train: empty path"},
        {"training.batch_size=0", "--set training.batch_size=0: training.batch_size: 0 is not "
                                  "a positive integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *sets[] = {cases[i].set};
        expect_fail(base_yaml, sets, 1, cases[i].want);
    }
    /* the failing --set is named even after good ones */
    const char *two[] = {"optimizer.lr=0.2", "optimizer.momentum=1"};
    expect_fail(base_yaml, two, 2, "--set optimizer.momentum=1: optimizer.momentum: 1 is not "
                                   "in [0, 1)");
    /* a value from the file that a --set makes invalid is reported at its line */
    const char *ce[] = {"model.layers[1].activation=linear"};
    expect_fail(base_yaml, ce, 1, "--set model.layers[1].activation=linear: "
                                  "model.layers[1].activation: linear, but loss cross_entropy");
}

/* ---- defaults and the YAML round trip ----------------------------------------------- */

static void test_defaults(void)
{
    struct dmlp_error err = {0};
    struct config *c = load_str(base_yaml, NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->model.init, DMLP_INIT_HE);
    CU_ASSERT_EQUAL(c->loss, DMLP_LOSS_CROSS_ENTROPY);
    CU_ASSERT_EQUAL(c->optimizer.name, DMLP_OPT_SGD);
    CU_ASSERT_EQUAL(c->optimizer.momentum, 0.0);
    CU_ASSERT_FALSE(c->optimizer.nesterov);
    CU_ASSERT_EQUAL(c->optimizer.weight_decay, 0.0);
    CU_ASSERT_EQUAL(c->data.test.n, 0);
    CU_ASSERT_TRUE(c->data.shuffle);
    CU_ASSERT_FALSE(c->data.drop_last);
    CU_ASSERT_EQUAL(c->data.placement, DMLP_PLACEMENT_REPLICATED);
    CU_ASSERT_EQUAL(c->training.epochs, 10);
    CU_ASSERT_EQUAL(c->training.batch_size, 128);
    CU_ASSERT_EQUAL(c->training.seed, 42);
    CU_ASSERT_EQUAL(c->training.max_steps, 0);
    CU_ASSERT_STRING_EQUAL(c->checkpoint.dir, "runs/default");
    CU_ASSERT_EQUAL(c->checkpoint.every_epochs, 1);
    CU_ASSERT_EQUAL(c->checkpoint.keep_last, 3);
    config_free(&c);

    /* a key that is present keeps its value, even where it is zero or false, and its
     * section's other keys still get their defaults */
    const char *yaml = "model:\n  layers: [{units: 2, activation: softmax}]\n"
                       "optimizer: {lr: 0.1}\ndata: {train: a, shuffle: false}\n"
                       "training: {epochs: 3, seed: 0}\ncheckpoint: {every_epochs: 0}\n";
    c = load_str(yaml, NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_FALSE(c->data.shuffle);
    CU_ASSERT_EQUAL(c->training.epochs, 3);
    CU_ASSERT_EQUAL(c->training.seed, 0);
    CU_ASSERT_EQUAL(c->training.batch_size, 128);
    CU_ASSERT_EQUAL(c->checkpoint.every_epochs, 0);
    CU_ASSERT_EQUAL(c->checkpoint.keep_last, 3);
    config_free(&c);
}

static void round_trip(const char *const *sets, size_t n_sets)
{
    struct dmlp_error err = {0};
    struct config *a = NULL, *b = NULL;
    int rc = config_load(&a, DMLP_SOURCE_DIR "/configs/fashion_mnist.yaml", sets, n_sets, &err);
    CU_ASSERT_EQUAL_FATAL(rc, DMLP_OK);
    char *text = NULL, *text2 = NULL;
    CU_ASSERT_EQUAL_FATAL(config_to_yaml(a, &text, &err), DMLP_OK);
    rc = config_load_string(&b, text, strlen(text), "saved", NULL, 0, &err);
    if (rc != DMLP_OK)
        fprintf(stderr, "\n  %s\n---\n%s---\n", err.msg, text);
    CU_ASSERT_EQUAL_FATAL(rc, DMLP_OK);
    CU_ASSERT_TRUE(cfg_equal(a, b));
    if (n_sets == 0) /* floats are written short, not with 17 digits */
        CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n  lr: 0.05\n  momentum: 0.9\n"));
    /* and saving again gives the same text */
    CU_ASSERT_EQUAL(config_to_yaml(b, &text2, &err), DMLP_OK);
    CU_ASSERT_STRING_EQUAL(text, text2);
    free(text);
    free(text2);
    config_free(&a);
    config_free(&b);
}

static void test_round_trip(void)
{
    round_trip(NULL, 0);
    /* values that a 6-digit float format or a 32-bit seed would lose, and a cleared test */
    const char *sets[] = {"optimizer.lr=0.0123456789012345", "training.seed=9000000000000000000",
                          "data.test=", "optimizer.weight_decay=1e-300",
                          "optimizer.nesterov=true", "data.drop_last=true",
                          "checkpoint.dir=runs/with space: and colon"};
    round_trip(sets, sizeof sets / sizeof sets[0]);
    /* a regression with standardised targets */
    const char *reg[] = {"loss=mse", "model.layers[2].activation=linear",
                         "data.normalize_targets=true"};
    round_trip(reg, sizeof reg / sizeof reg[0]);
}

/* ---- data files: a path, a glob, a list -------------------------------------------------- */

#define NET "model:\n  layers:\n    - {units: 3, activation: softmax}\noptimizer: {lr: 0.1}\n"

static void expect_files(const struct config_files *f, const char *const *want, uint32_t n)
{
    CU_ASSERT_EQUAL_FATAL(f->n, n);
    for (uint32_t i = 0; i < n; i++)
        CU_ASSERT_STRING_EQUAL(f->v[i], want[i]);
}

static void test_data_files(void)
{
    struct dmlp_error err = {0};
    /* a block list, a flow list with a glob kept as written, and a --set list */
    struct config *c = load_str(NET "data:\n  train:\n    - a.h5\n    - 'runs/*.h5'\n"
                                "  test: [t1.h5, t2.h5]\n", NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    expect_files(&c->data.train, (const char *[]){"a.h5", "runs/*.h5"}, 2);
    expect_files(&c->data.test, (const char *[]){"t1.h5", "t2.h5"}, 2);
    /* config_to_yaml writes the lists back as lists, and they read back the same */
    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(config_to_yaml(c, &text, &err), DMLP_OK);
    config_free(&c);
    c = load_str(text, NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    expect_files(&c->data.train, (const char *[]){"a.h5", "runs/*.h5"}, 2);
    expect_files(&c->data.test, (const char *[]){"t1.h5", "t2.h5"}, 2);
    free(text);
    config_free(&c);
    const char *sets[] = {"data.train=[x.h5, y/*.h5 ,z.h5]", "data.test=one.h5"};
    c = load_str(NET "data: {train: a.h5}\n", sets, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    expect_files(&c->data.train, (const char *[]){"x.h5", "y/*.h5", "z.h5"}, 3);
    expect_files(&c->data.test, (const char *[]){"one.h5"}, 1);
    config_free(&c);

    expect_fail(NET "data:\n  train: []\n", NULL, 0,
                "bad.yaml:6: data.train: the list is empty; give at least one file");
    expect_fail(NET "data:\n  train: [a.h5, '']\n", NULL, 0,
                "bad.yaml:6: data.train[1]: empty path");
    expect_fail(NET "data:\n  train: [a.h5, {b: 1}]\n", NULL, 0,
                "bad.yaml:6: data.train[1]: expected a path or a glob, found a mapping");
    const char *idx[] = {"data.train[0]=b.h5"};
    expect_fail(NET "data: {train: a.h5}\n", idx, 1,
                "--set data.train[0]=b.h5: data.train is set whole, e.g. --set "
                "data.train=[a.h5,b.h5]");
    const char *empty[] = {"data.train=[a.h5,,b.h5]"};
    expect_fail(NET "data: {train: a.h5}\n", empty, 1, "data.train[1]: empty path");

    /* the streamed placement's keys, and what it refuses */
    c = load_str(NET "data: {train: a.h5, placement: streamed, block_rows: 512, "
                 "shuffle_window: 2, memory_mb: 64}\n", NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->data.placement, DMLP_PLACEMENT_STREAMED);
    CU_ASSERT_EQUAL(c->data.block_rows, 512);
    CU_ASSERT_EQUAL(c->data.shuffle_window, 2);
    CU_ASSERT_EQUAL(c->data.memory_mb, 64);
    CU_ASSERT_TRUE(c->data.share_node);
    config_free(&c);
    expect_fail(NET "data: {train: a.h5, placement: streamed, block_rows: 0}\n", NULL, 0,
                "bad.yaml:5: data.block_rows: 0 is not a positive integer");
    expect_fail("model:\n  layers:\n    - {units: 3, activation: softmax}\n"
                "optimizer: {name: lbfgs, lr: 1}\ndata: {train: a.h5, placement: streamed}\n",
                NULL, 0, "optimizer.name: lbfgs takes the whole training set");
    expect_fail(NET "data: {train: a.h5, placement: streamed, validation_fraction: 0.1}\n",
                NULL, 0, "data.validation_fraction: is not available with data.placement "
                "streamed");
}

/* ---- the surrogate keys: losses, weights, dropout, plateau ---------------------------- */

#define REG_HEAD "model:\n  layers:\n    - {units: 8, activation: tanh, dropout: 0.25}\n" \
                 "    - {units: 3, activation: linear}\n"
#define CLS_HEAD "model:\n  layers:\n    - {units: 8, activation: relu}\n" \
                 "    - {units: 3, activation: softmax}\n"
#define TAIL "optimizer:\n  lr: 0.1\ndata:\n  train: t.h5\n"

static void test_surrogate_keys(void)
{
    struct dmlp_error err = {0};
    const char *reg = REG_HEAD "loss: huber\nloss_delta: 0.5\nloss_weights: [1, 10, 0.5]\n"
                      "optimizer:\n  lr: 0.1\n  schedule: {name: plateau, factor: 0.5, "
                      "patience: 3, metric: train_loss}\ndata:\n  train: t.h5\n"
                      "  normalize_targets: true\n";
    struct config *c = load_str(reg, NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->loss, DMLP_LOSS_HUBER);
    CU_ASSERT_EQUAL(c->loss_delta, 0.5);
    CU_ASSERT_EQUAL_FATAL(c->loss_weights.n, 3);
    CU_ASSERT_EQUAL(c->loss_weights.v[1], 10.0);
    CU_ASSERT_EQUAL(c->loss_weights.v[2], 0.5);
    CU_ASSERT_EQUAL(c->model.layers[0].dropout, 0.25);
    CU_ASSERT_EQUAL(c->model.layers[1].dropout, 0.0);
    CU_ASSERT_EQUAL(c->optimizer.schedule.name, DMLP_SCHEDULE_PLATEAU);
    CU_ASSERT_EQUAL(c->optimizer.schedule.factor, 0.5);
    CU_ASSERT_EQUAL(c->optimizer.schedule.patience, 3);
    CU_ASSERT_EQUAL(c->optimizer.schedule.metric, DMLP_PLATEAU_TRAIN_LOSS);
    /* the numbers survive config_to_yaml (a flow list) and --set replaces them */
    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(config_to_yaml(c, &text, &err), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "loss_weights: [1, 10, 0.5]"));
    struct config *b = load_str(text, NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->loss_weights.n, 3);
    CU_ASSERT_EQUAL(b->loss_weights.v[1], 10.0);
    config_free(&b);
    free(text);
    config_free(&c);
    const char *sets[] = {"loss_weights=[2, 3,4]"};
    c = load_str(reg, sets, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->loss_weights.n, 3);
    CU_ASSERT_EQUAL(c->loss_weights.v[0], 2.0);
    CU_ASSERT_EQUAL(c->loss_weights.v[2], 4.0);
    config_free(&c);
    /* class weights: a list, or the word balanced */
    c = load_str(CLS_HEAD TAIL "  class_weights: balanced\n", NULL, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->data.class_weights.word, 1);
    CU_ASSERT_EQUAL(c->data.class_weights.n, 0);
    CU_ASSERT_EQUAL_FATAL(config_to_yaml(c, &text, &err), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "class_weights: balanced"));
    free(text);
    config_free(&c);
    const char *cw[] = {"data.class_weights=1,2,0"};
    c = load_str(CLS_HEAD TAIL, cw, 1, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->data.class_weights.n, 3);
    CU_ASSERT_EQUAL(c->data.class_weights.v[1], 2.0);
    config_free(&c);
}

static void test_surrogate_errors(void)
{
    expect_fail(REG_HEAD "loss: huber\nloss_weights: [1, x, 2]\n" TAIL,
                NULL, 0, "bad.yaml:6: loss_weights[1]: 'x' is not a finite number");
    expect_fail(REG_HEAD "loss: mse\nloss_weights: [1, -2, 2]\n" TAIL,
                NULL, 0, "bad.yaml:6: loss_weights[1]: -2 is negative; weights are ≥ 0");
    expect_fail(REG_HEAD "loss: mse\nloss_weights: [1, 2]\n" TAIL, NULL, 0,
                "bad.yaml:6: loss_weights: 2 weights for 3 outputs");
    expect_fail(REG_HEAD "loss: mse\nloss_delta: 2\n" TAIL, NULL, 0,
                "bad.yaml:6: loss_delta: applies to loss huber only (loss is mse)");
    expect_fail(REG_HEAD "loss: huber\nloss_delta: 0\n" TAIL, NULL, 0,
                "bad.yaml:6: loss_delta: 0 is not a positive number");
    expect_fail(CLS_HEAD "loss_weights: [1, 1, 1]\n" TAIL, NULL, 0,
                "loss_weights: per-output weights are for regression losses");
    expect_fail(CLS_HEAD TAIL "  class_weights: [1, 2]\n", NULL, 0,
                "bad.yaml:9: data.class_weights: 2 weights for 3 classes");
    expect_fail(CLS_HEAD TAIL "  class_weights: balance\n", NULL, 0,
                "bad.yaml:9: data.class_weights: 'balance' is not a finite number "
                "(expected a list of numbers ≥ 0, or balanced)");
    expect_fail(REG_HEAD "loss: mae\n" TAIL "  class_weights: balanced\n", NULL, 0,
                "data.class_weights: needs loss cross_entropy (loss is mae)");
    expect_fail("model:\n  layers:\n    - {units: 8, activation: tanh}\n"
                "    - {units: 3, activation: linear, dropout: 0.5}\nloss: mse\n" TAIL, NULL, 0,
                "bad.yaml:4: model.layers[1].dropout: dropout goes on hidden layers");
    expect_fail(REG_HEAD "loss: mse\n" TAIL, (const char *[]){"model.layers[0].dropout=1"}, 1,
                "--set model.layers[0].dropout=1: model.layers[0].dropout: 1 is not in [0, 1)");
    expect_fail(REG_HEAD "loss: mse\noptimizer:\n  lr: 0.1\n  schedule: {name: plateau}\n"
                "data:\n  train: t.h5\n", NULL, 0,
                "optimizer.schedule.metric: val_loss watches the validation set");
    expect_fail(REG_HEAD "loss: mse\noptimizer:\n  lr: 0.1\n  schedule: {name: plateau, "
                "factor: 1}\ndata:\n  train: t.h5\n", NULL, 0,
                "optimizer.schedule.factor: 1 is not in (0, 1)");
    /* lbfgs: one deterministic full-batch objective, a fixed rate */
    const char *lb = "model:\n  layers:\n    - {units: 8, activation: tanh}\n"
                     "    - {units: 3, activation: linear}\nloss: mse\noptimizer:\n"
                     "  name: lbfgs\n  lr: 1\ndata:\n  train: t.h5\n";
    expect_fail(lb, (const char *[]){"model.layers[0].dropout=0.1"}, 1,
                "--set model.layers[0].dropout=0.1: model.layers[0].dropout: not with lbfgs");
    expect_fail(lb, (const char *[]){"optimizer.weight_decay=0.1"}, 1,
                "--set optimizer.weight_decay=0.1: optimizer.weight_decay: lbfgs has none");
    expect_fail(lb, (const char *[]){"optimizer.schedule.name=cosine"}, 1,
                "optimizer.schedule.name: not with lbfgs");
    expect_fail(lb, (const char *[]){"optimizer.history=0"}, 1,
                "optimizer.history: 0 is not a positive integer");
    expect_fail(lb, (const char *[]){"optimizer.schedule.warmup_epochs=1"}, 1,
                "optimizer.schedule.warmup_epochs: not with lbfgs");
    expect_fail(lb, (const char *[]){"loss_weights[0]=2"}, 1,
                "--set loss_weights[0]=2: loss_weights is set whole, e.g. "
                "--set loss_weights=[1,2]");
}

static CU_TestInfo shipped_tests[] = {
    {"fashion_mnist.yaml", test_fashion_mnist},
    {"xor.yaml", test_xor},
    {"base config of these tests", test_base_is_valid},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo error_tests[] = {
    {"bad configs name file, line and key", test_bad_configs},
    {"syntax error line", test_syntax_error_line},
    {"strict scalars", test_strict_scalars},
    {"files", test_files},
    {"enum names", test_names},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo set_tests[] = {
    {"--set changes values", test_set_values},
    {"--set errors", test_set_errors},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo surrogate_tests[] = {
    {"losses, weights, dropout, plateau", test_surrogate_keys},
    {"their errors", test_surrogate_errors},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo yaml_tests[] = {
    {"defaults", test_defaults},
    {"config_to_yaml round trip", test_round_trip},
    {"data files: a path, a glob, a list", test_data_files},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"config: shipped", NULL, NULL, NULL, NULL, shipped_tests},
    {"config: errors", NULL, NULL, NULL, NULL, error_tests},
    {"config: --set", NULL, NULL, NULL, NULL, set_tests},
    {"config: defaults and yaml", NULL, NULL, NULL, NULL, yaml_tests},
    {"config: surrogate keys", NULL, NULL, NULL, NULL, surrogate_tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
