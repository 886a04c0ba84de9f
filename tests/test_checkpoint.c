/* Checkpoint tests (one process): the save/load round trip is bit-exact, latest.h5 and
 * keep_last behave as docs/architecture.md ("Formats") says, shapes are checked, damaged files are refused, and
 * --init-from takes only /layers. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/checkpoint.h"
#include "par/dist.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "core/rng.h"
#include "testutil.h"

static char g_dir[512];

static const struct config_layer LAYERS[] = {
    {13, DMLP_ACT_RELU, 0}, {7, DMLP_ACT_TANH, 0}, {3, DMLP_ACT_SOFTMAX, 0}};

static struct model *make_model(const struct config_layer *layers, size_t n, uint64_t seed)
{
    struct model *m = NULL;
    struct dmlp_error e = {0};
    if (model_create(&m, 5, layers, n, DMLP_LOSS_CROSS_ENTROPY, &e))
        return NULL;
    struct rng r;
    rng_seed(&r, seed, 0);
    model_init_params(m, DMLP_INIT_HE, &r);
    for (size_t l = 0; l < m->n_layers; l++) /* non-zero biases, so they are checked too */
        for (size_t j = 0; j < m->layers[l].out; j++)
            m->layers[l].b[j] = (float)rng_normal(&r);
    return m;
}

static struct optim *make_optim(const struct model *m, uint64_t seed)
{
    struct config_optimizer c = {.name = DMLP_OPT_SGD, .lr = 0.1, .momentum = 0.9};
    struct optim *o = NULL;
    struct dmlp_error e = {0};
    optim_create(&o, &c, m->n_params, &e);
    struct rng r;
    rng_seed(&r, seed, 5);
    for (size_t i = 0; i < o->n; i++)
        o->momentum[i] = (float)rng_normal(&r);
    o->steps = 1234;
    return o;
}

static void test_round_trip_bit_exact(void)
{
    char dir[700], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/rt", g_dir);
    struct model *m = make_model(LAYERS, 3, 1);
    struct optim *o = make_optim(m, 2);
    struct checkpoint_state st = {.epoch = 3, .step_in_epoch = 4, .step = 77,
                                  .samples_seen = 9999, .seed = 0xfedcba9876543210ull,
                                  .plateau_scale = 0.25, .plateau_best = 0.125,
                                  .plateau_bad = 2};
    struct dmlp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(dir, m, o, &st, "model: {}\n", 3, path, sizeof path,
                                          &e), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(path, "step-00000077.h5"));

    struct model *m2 = make_model(LAYERS, 3, 99);
    struct optim *o2 = make_optim(m2, 98);
    struct checkpoint_state st2;
    CU_ASSERT_EQUAL_FATAL(checkpoint_load(path, m2, o2, &st2, &e), DMLP_OK);
    CU_ASSERT_EQUAL(memcmp(m->params, m2->params, m->n_params * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(o->momentum, o2->momentum, o->n * sizeof(float)), 0);
    CU_ASSERT_EQUAL(o2->steps, 1234);
    CU_ASSERT_EQUAL(st2.epoch, 3);
    CU_ASSERT_EQUAL(st2.step_in_epoch, 4);
    CU_ASSERT_EQUAL(st2.plateau_scale, 0.25);
    CU_ASSERT_EQUAL(st2.plateau_best, 0.125);
    CU_ASSERT_EQUAL(st2.plateau_bad, 2);
    CU_ASSERT_EQUAL(st2.step, 77);
    CU_ASSERT_EQUAL(st2.samples_seen, 9999);
    CU_ASSERT_EQUAL(st2.seed, 0xfedcba9876543210ull);

    /* The network can be rebuilt from the file alone (eval, predict). */
    size_t in_dim = 0, n = 0;
    struct config_layer *ls = NULL;
    enum dmlp_loss loss;
    CU_ASSERT_EQUAL(checkpoint_read_network(path, &in_dim, &ls, &n, &loss, &e), DMLP_OK);
    CU_ASSERT_EQUAL(in_dim, 5);
    CU_ASSERT_EQUAL(n, 3);
    for (size_t l = 0; ls && l < 3 && l < n; l++) {
        CU_ASSERT_EQUAL(ls[l].units, LAYERS[l].units);
        CU_ASSERT_EQUAL(ls[l].activation, LAYERS[l].activation);
    }
    CU_ASSERT_EQUAL(loss, DMLP_LOSS_CROSS_ENTROPY);
    free(ls);

    char latest[PATH_MAX];
    CU_ASSERT_EQUAL(checkpoint_latest(dir, latest, sizeof latest), 1);
    CU_ASSERT_STRING_EQUAL(latest, path);
    CU_ASSERT_EQUAL(checkpoint_is_checkpoint(path), 1);
    model_free(&m);
    model_free(&m2);
    optim_free(&o);
    optim_free(&o2);
}

static int exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void test_latest_and_keep_last(void)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/keep", g_dir);
    struct model *m = make_model(LAYERS, 3, 1);
    struct dmlp_error e = {0};
    struct checkpoint_state st = {0};
    for (uint64_t s = 10; s <= 50; s += 10) {
        st.step = s;
        CU_ASSERT_EQUAL(checkpoint_save(dir, m, NULL, &st, "", 2, NULL, 0, &e), DMLP_OK);
    }
    CU_ASSERT(!exists(dir, "step-00000010.h5"));
    CU_ASSERT(!exists(dir, "step-00000030.h5"));
    CU_ASSERT(exists(dir, "step-00000040.h5"));
    CU_ASSERT(exists(dir, "step-00000050.h5"));
    char buf[PATH_MAX], want[PATH_MAX];
    snprintf(want, sizeof want, "%s/latest.h5", dir);
    ssize_t len = readlink(want, buf, sizeof buf - 1);
    CU_ASSERT(len > 0);
    if (len > 0) {
        buf[len] = '\0';
        CU_ASSERT_STRING_EQUAL(buf, "step-00000050.h5");
    }
    /* A newer checkpoint from an older step number (a rerun) is still never pruned. */
    st.step = 5;
    CU_ASSERT_EQUAL(checkpoint_save(dir, m, NULL, &st, "", 1, NULL, 0, &e), DMLP_OK);
    CU_ASSERT(exists(dir, "step-00000005.h5"));
    /* No temporary files are left behind. */
    snprintf(buf, sizeof buf, "ls -A '%s' | grep -c tmp", dir);
    char out[64];
    tu_run_cmd(buf, out, sizeof out);
    CU_ASSERT_EQUAL(atoi(out), 0);
    model_free(&m);
}

static void test_shape_mismatch_refused(void)
{
    char dir[700], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/shape", g_dir);
    struct model *m = make_model(LAYERS, 3, 1);
    struct dmlp_error e = {0};
    struct checkpoint_state st = {0};
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(dir, m, NULL, &st, "", 0, path, sizeof path, &e), 0);
    const struct config_layer other[] = {
        {13, DMLP_ACT_RELU, 0}, {8, DMLP_ACT_TANH, 0}, {3, DMLP_ACT_SOFTMAX, 0}};
    struct model *m2 = make_model(other, 3, 1);
    CU_ASSERT_EQUAL(checkpoint_load_layers(path, m2, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "/layers/1/weight"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "[7, 13]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));
    const struct config_layer fewer[] = {{13, DMLP_ACT_RELU, 0}, {7, DMLP_ACT_TANH, 0}};
    struct model *m3 = NULL;
    model_create(&m3, 5, fewer, 2, DMLP_LOSS_MSE, &e);
    CU_ASSERT_EQUAL(checkpoint_load_layers(path, m3, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "more layers"));
    const struct config_layer act[] = {
        {13, DMLP_ACT_SIGMOID, 0}, {7, DMLP_ACT_TANH, 0}, {3, DMLP_ACT_SOFTMAX, 0}};
    struct model *m4 = make_model(act, 3, 1);
    CU_ASSERT_EQUAL(checkpoint_load_layers(path, m4, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "activation relu"));
    model_free(&m);
    model_free(&m2);
    model_free(&m3);
    model_free(&m4);
}

static void test_damaged_files_refused(void)
{
    char dir[700], path[PATH_MAX], cut[PATH_MAX + 8], cmd[3 * PATH_MAX];
    snprintf(dir, sizeof dir, "%s/damaged", g_dir);
    struct model *m = make_model(LAYERS, 3, 1);
    struct dmlp_error e = {0};
    struct checkpoint_state st = {0};
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(dir, m, NULL, &st, "", 0, path, sizeof path, &e), 0);
    snprintf(cut, sizeof cut, "%s.cut", path);
    snprintf(cmd, sizeof cmd, "head -c 1500 '%s' > '%s'", path, cut);
    CU_ASSERT_EQUAL(system(cmd), 0);
    CU_ASSERT_NOT_EQUAL(checkpoint_load(cut, m, NULL, NULL, &e), DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, cut));
    CU_ASSERT_EQUAL(checkpoint_load("/nonexistent/ck.h5", m, NULL, NULL, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "No such file"));
    snprintf(cut, sizeof cut, "%s/text.h5", dir);
    tu_write_file(cut, "not hdf5\n");
    CU_ASSERT_EQUAL(checkpoint_load(cut, m, NULL, NULL, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "not an HDF5 file"));
    model_free(&m);
}

static void test_init_from_layers_only(void)
{
    char dir[700], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/init", g_dir);
    struct model *m = make_model(LAYERS, 3, 1);
    struct optim *o = make_optim(m, 2);
    struct dmlp_error e = {0};
    struct checkpoint_state st = {.step = 5};
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(dir, m, o, &st, "", 0, path, sizeof path, &e), 0);
    struct model *m2 = make_model(LAYERS, 3, 42);
    CU_ASSERT_EQUAL(checkpoint_load_layers(path, m2, &e), DMLP_OK);
    CU_ASSERT_EQUAL(memcmp(m->params, m2->params, m->n_params * sizeof(float)), 0);
    model_free(&m);
    model_free(&m2);
    optim_free(&o);
}

static CU_TestInfo ck_tests[] = {
    {"save/load round trip is bit-exact", test_round_trip_bit_exact},
    {"latest.h5 and keep_last", test_latest_and_keep_last},
    {"another network's shapes are refused", test_shape_mismatch_refused},
    {"missing, truncated and non-HDF5 files are refused", test_damaged_files_refused},
    {"--init-from loads /layers", test_init_from_layers_only},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"checkpoint", NULL, NULL, NULL, NULL, ck_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "ckpt");
    int rc = tu_run(suites);
    tu_rmtree(g_dir);
    return rc;
}
