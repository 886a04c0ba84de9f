/* dmlp sweep, run as a user runs it under mpirun:
 * - 4 members (2 learning rates × 2 seeds) in groups of 1 rank at 2 ranks: each member's
 *   weights are those of `dmlp train` with its settings on 1 rank, bit for bit; in groups of
 *   2 ranks, those of 2 ranks;
 * - a member that diverges is recorded as failed with its message, and the others finish;
 * - a bad grid key or value is refused before anything runs (exit 2);
 * - SIGUSR1 mid-sweep: exit 75; --resume auto skips the finished members, resumes the
 *   interrupted ones, and every member ends with the weights of an uninterrupted run. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/dataset.h"
#include "testutil.h"

#define MPIRUN DMLP_MPIEXEC " --oversubscribe --bind-to none -np "

static char g_dir[512], g_cfg[600];

static int write_blobs(const char *path, size_t n)
{
    struct dataset *ds = NULL;
    struct dmlp_error e;
    const size_t d = 6, k = 3;
    if (dataset_alloc(&ds, n, d, k, 1, &e) != DMLP_OK)
        return -1;
    struct rng r;
    rng_seed(&r, 5, 1);
    for (size_t i = 0; i < n; i++) {
        ds->labels[i] = (int32_t)(i % k);
        for (size_t j = 0; j < d; j++)
            ds->features[i * d + j] = (float)(0.8 * rng_normal(&r) + (j == i % k ? 1.5 : 0));
    }
    const int rc = dataset_write(ds, path, &e);
    dataset_free(&ds);
    return rc == DMLP_OK ? 0 : -1;
}

/* Member m of the 2 × 2 sweep: lr 0.02 or 0.1 (m / 2), seed 7 or 8 (m % 2). */
static const char *member_sets(int m)
{
    return tu_fmt("--set optimizer.lr=%s --set training.seed=%d", m / 2 ? "0.1" : "0.02",
                  7 + m % 2);
}

static const char *GRID = "--grid optimizer.lr=0.02,0.1 --seeds 2";

static double diff(const char *a, const char *b)
{
    return tu_checkpoint_diff(a, b);
}

/* Each member against `dmlp train` alone with its settings on `ranks` ranks. */
static void members_equal_alone(const char *sweep_dir, int ranks, const char *extra)
{
    for (int m = 0; m < 4; m++) {
        const char *alone = tu_fmt("%s/alone-%d-%d", g_dir, ranks, m);
        CU_ASSERT_EQUAL(tu_sh(MPIRUN "%d %s train %s %s %s --set checkpoint.dir=%s --quiet",
                              ranks, DMLP_BINARY, g_cfg, member_sets(m), extra, alone), 0);
        const double d = diff(tu_fmt("%s/member-%03d/latest.h5", sweep_dir, m),
                              tu_fmt("%s/latest.h5", alone));
        if (d != 0.0)
            printf("\n    member %d differs from its run alone: %g", m, d);
        CU_ASSERT_EQUAL(d, 0.0);
    }
}

static void test_groups_of_one(void)
{
    char keep[700];
    snprintf(keep, sizeof keep, "%s/g1", g_dir);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s %s --set checkpoint.dir=%s", DMLP_BINARY,
                          g_cfg, GRID, keep), 0);
    CU_ASSERT(tu_has("sweep: 4 members on 2 groups of 1 rank"));
    CU_ASSERT(tu_has("sorted by validation loss"));
    members_equal_alone(keep, 1, "");
    FILE *f = fopen(tu_fmt("%s/sweep.jsonl", keep), "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[4096];
    int lines = 0, done = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        done += strstr(line, "\"status\": \"done\"") != NULL &&
                strstr(line, "\"optimizer.lr\": ") != NULL &&
                strstr(line, "\"training.seed\": ") != NULL &&
                strstr(line, "\"best_metric\": 0.") != NULL && /* the best val_loss */
                strstr(line, "\"best_epoch\": ") != NULL;
    }
    fclose(f);
    CU_ASSERT_EQUAL(lines, 4);
    CU_ASSERT_EQUAL(done, 4);
    /* the plot script draws it */
    CU_ASSERT_EQUAL(tu_sh("/usr/bin/python3 %s/scripts/plot_sweep.py %s/sweep.jsonl --out "
                          "%s/sweep.png", DMLP_SOURCE_DIR, keep, keep), 0);
    CU_ASSERT(tu_has("wrote "));
    /* resumed, a finished sweep trains nothing again */
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s %s --set checkpoint.dir=%s --resume auto",
                          DMLP_BINARY, g_cfg, GRID, keep), 0);
    int already = 0;
    for (const char *p = tu_out; (p = strstr(p, "done already")); p++)
        already++;
    CU_ASSERT_EQUAL(already, 4);
}

/* The ensemble of the sweep's 3 best members (--sweep DIR --top 3) against numpy on the
 * members' own predictions: the mean, the standard deviation (ddof 0), the mean's entropy
 * and argmax; and eval's accuracy and loss on the mean. */
static const char CHECK_PY[] =
    "import json, sys\n"
    "import h5py, numpy as np\n"
    "d, ens, data, ev = sys.argv[1:5]\n"
    "rows = [json.loads(l) for l in open(d + '/sweep.jsonl')]\n"
    "done = [r for r in rows if r['status'] == 'done']\n"
    "key = lambda r: r['val_loss'] if r['val_loss'] is not None else r['train_loss']\n"
    "top = sorted(done, key=key)[:3]\n"
    "P = np.stack([h5py.File('%s/pred-%d.h5' % (d, r['member']), 'r')['predictions'][:]\n"
    "              for r in top]).astype(np.float64)\n"
    "mean, std = P.mean(0), P.std(0)\n"
    "ent = -np.where(mean > 0, mean * np.log(np.where(mean > 0, mean, 1)), 0).sum(1)\n"
    "f = h5py.File(ens, 'r')\n"
    "errs = [float(abs(f[n][:] - v).max()) for n, v in\n"
    "        (('predictions', mean), ('std', std), ('entropy', ent))]\n"
    "assert max(errs) < 1e-5, errs\n"
    "assert int(f.attrs['members']) == 3\n"
    "assert (f['labels'][:] == mean.argmax(1)).all()\n"
    "y = h5py.File(data, 'r')['labels'][:]\n"
    "e = json.loads(open(ev).read())\n"
    "acc = float((mean.argmax(1) == y).mean())\n"
    "p = np.maximum(mean[np.arange(len(y)), y], np.finfo(np.float32).tiny)\n"
    "loss = float(-np.log(p).mean())\n"
    "assert abs(e['accuracy'] - acc) < 1e-9, (e['accuracy'], acc)\n"
    "assert abs(e['loss'] - loss) < 1e-5 * loss, (e['loss'], loss)\n"
    "print('ensemble of members %s matches numpy: max errors %s, accuracy %.4f, loss %.6f'\n"
    "      % ([r['member'] for r in top], errs, acc, loss))\n";

static void test_ensemble(void)
{
    char dir[700], data[700], py[700];
    snprintf(dir, sizeof dir, "%s/g1", g_dir);
    snprintf(data, sizeof data, "%s/blobs.h5", g_dir);
    snprintf(py, sizeof py, "%s/check_ensemble.py", g_dir);
    CU_ASSERT_EQUAL_FATAL(tu_write_file(py, CHECK_PY), 0);
    for (int m = 0; m < 4; m++)
        CU_ASSERT_EQUAL(tu_sh("%s predict --checkpoint %s/member-%03d/latest.h5 --input %s "
                              "--output %s/pred-%d.h5", DMLP_BINARY, dir, m, data, dir, m), 0);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s predict --sweep %s --top 3 --input %s --output "
                          "%s/ensemble.h5", DMLP_BINARY, dir, data, dir), 0);
    CU_ASSERT(tu_has("an ensemble's mean, std and entropy"));
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "3 %s eval --sweep %s --top 3 --data %s --json > %s/eval.json",
                          DMLP_BINARY, dir, data, dir), 0);
    CU_ASSERT_EQUAL(tu_sh("/usr/bin/python3 %s %s %s/ensemble.h5 %s %s/eval.json", py, dir, dir,
                          data, dir), 0);
    CU_ASSERT(tu_has("matches numpy"));
    printf("    %s", tu_out);
    /* members may differ inside (here a narrower hidden layer), not in what they map */
    CU_ASSERT_EQUAL(tu_sh("%s train %s --set model.layers[0].units=5 --set training.epochs=1 "
                          "--set checkpoint.dir=%s/narrow --quiet", DMLP_BINARY, g_cfg, g_dir), 0);
    CU_ASSERT_EQUAL(tu_sh("%s predict --checkpoint %s/member-000/latest.h5 --checkpoint "
                          "%s/narrow/latest.h5 --input %s --output %s/mixed.h5", DMLP_BINARY,
                          dir, g_dir, data, g_dir), 0);
    CU_ASSERT_EQUAL(tu_sh("%s eval --sweep %s --top 0 --data %s", DMLP_BINARY, dir, data), 2);
    CU_ASSERT(tu_has("--top 0: expected a positive count"));
    CU_ASSERT_EQUAL(tu_sh("%s eval --sweep %s/nowhere --data %s", DMLP_BINARY, g_dir, data), 2);
    CU_ASSERT(tu_has("nowhere/sweep.jsonl: cannot open"));
}

static void test_groups_of_two(void)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/g2", g_dir);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s %s --group-size 2 --set checkpoint.dir=%s",
                          DMLP_BINARY, g_cfg, GRID, dir), 0);
    CU_ASSERT(tu_has("sweep: 4 members on 1 groups of 2 ranks"));
    members_equal_alone(dir, 2, "");
}

static void test_failing_member(void)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/fail", g_dir);
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s --grid optimizer.lr=0.05,1e9 "
                          "--set checkpoint.dir=%s", DMLP_BINARY, g_cfg, dir), 0);
    CU_ASSERT(tu_has("[optimizer.lr=1e9]: failed: training diverged"));
    CU_ASSERT(tu_has("[optimizer.lr=0.05]: done"));
    FILE *f = fopen(tu_fmt("%s/sweep.jsonl", dir), "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char text[8192] = "";
    const size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"status\": \"failed\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"message\": \"training diverged"));
}

static void test_bad_grid(void)
{
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s --grid optimizer.lrr=0.1,0.2", DMLP_BINARY,
                          g_cfg), 2);
    CU_ASSERT(tu_has("sweep: member 0 (optimizer.lrr=0.1)"));
    CU_ASSERT(tu_has("unknown key 'lrr'"));
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s --grid optimizer.lr=0.1,abc", DMLP_BINARY,
                          g_cfg), 2);
    CU_ASSERT(tu_has("sweep: member 1 (optimizer.lr=abc)"));
    CU_ASSERT_EQUAL(tu_sh("%s sweep %s --grid optimizer.lr", DMLP_BINARY, g_cfg), 2);
    CU_ASSERT(tu_has("--grid optimizer.lr: expected key=v1,v2,..."));
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s --grid optimizer.lr=0.1 --group-size 3",
                          DMLP_BINARY, g_cfg), 2);
    CU_ASSERT(tu_has("--group-size 3 does not divide the 2 ranks"));
}

/* Stopped by SIGUSR1 part-way (once a member has logged an epoch: an event, not a time),
 * then resumed: every member as if never stopped. */
static void test_preempt_and_resume(void)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/pre", g_dir);
    const char *longer = "--set training.epochs=600";
    const int rc = tu_sh("( " MPIRUN "2 %s sweep %s %s %s --set checkpoint.dir=%s & pid=$!; "
                         "t=$(( $(date +%%s) + 60 )); "
                         "until grep -qs '\"event\": \"epoch\"' %s/member-*/metrics.jsonl; do "
                         "if [ $(date +%%s) -ge $t ] || ! kill -0 $pid 2>/dev/null; then break; "
                         "fi; sleep 0.05; done; kill -USR1 $pid; wait $pid )", DMLP_BINARY,
                         g_cfg, GRID, longer, dir, dir);
    CU_ASSERT_EQUAL(rc, 75);
    CU_ASSERT(tu_has("rerun with --resume auto"));
    CU_ASSERT_EQUAL(tu_sh(MPIRUN "2 %s sweep %s %s %s --set checkpoint.dir=%s --resume auto",
                          DMLP_BINARY, g_cfg, GRID, longer, dir), 0);
    members_equal_alone(dir, 1, longer);
}

/* The training file's opens (openat under strace -f) in a sweep of n members; -1 without
 * strace. */
static int opens_of_data(int n)
{
    const char *grid = n == 2 ? "0.02,0.05" : "0.02,0.05,0.08,0.1";
    if (tu_sh("command -v strace") != 0)
        return -1;
    CU_ASSERT_EQUAL(tu_sh("strace -f -e trace=openat -o %s/trace-%d.txt " MPIRUN "2 %s sweep "
                          "%s --grid optimizer.lr=%s --set training.epochs=1 "
                          "--set checkpoint.dir=%s/opens-%d", g_dir, n, DMLP_BINARY, g_cfg, grid,
                          g_dir, n), 0);
    CU_ASSERT(tu_has("sweep: data read once per node"));
    return tu_sh("exit $(grep -c 'blobs.h5' %s/trace-%d.txt)", g_dir, n);
}

/* The replicated data are read once per node for the whole sweep: the data file is opened
 * as often for 4 members as for 2 (each member copies the node's copy). */
static void test_data_read_once(void)
{
    const int two = opens_of_data(2), four = opens_of_data(4);
    if (two < 0) {
        printf("\n    (strace is not installed: the count of opens is not checked)");
        return;
    }
    printf("\n    opens of the data file: %d for 2 members, %d for 4", two, four);
    CU_ASSERT(two > 0);
    CU_ASSERT_EQUAL(two, four);
}

static CU_TestInfo sweep_tests[] = {
    {"groups of 1 rank: each member as trained alone; resumed, nothing again",
     test_groups_of_one},
    {"the 3 best members as an ensemble: mean, std, entropy, eval, against numpy",
     test_ensemble},
    {"groups of 2 ranks: each member as trained alone on 2 ranks", test_groups_of_two},
    {"a diverging member is recorded, the others finish", test_failing_member},
    {"a bad grid key or value, a group size that does not divide: exit 2", test_bad_grid},
    {"SIGUSR1 mid-sweep, then --resume auto: the same weights", test_preempt_and_resume},
    {"the data are read once per node for the whole sweep", test_data_read_once},
    CU_TEST_INFO_NULL,
};
static CU_SuiteInfo suites[] = {
    {"sweep", NULL, NULL, NULL, NULL, sweep_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "sweep");
    char data[600], yaml[2048];
    snprintf(data, sizeof data, "%s/blobs.h5", g_dir);
    snprintf(g_cfg, sizeof g_cfg, "%s/sweep.yaml", g_dir);
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - {units: 16, activation: relu}\n"
             "    - {units: 3, activation: softmax}\n"
             "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
             "data: {train: %s, validation_fraction: 0.2, normalize: standard}\n"
             "training: {epochs: 4, batch_size: 32, seed: 7}\n"
             "checkpoint: {dir: %s/runs, every_epochs: 1}\n", data, g_dir);
    if (write_blobs(data, 2000) || tu_write_file(g_cfg, yaml)) {
        fprintf(stderr, "test_sweep: cannot write the test files in %s\n", g_dir);
        return 1;
    }
    int rc = tu_run(suites);
    tu_rmtree(g_dir);
    return rc;
}
