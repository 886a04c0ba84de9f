/* Resilience tests, driving the dmlp binary under mpirun as a cluster job would meet it:
 * - SIGUSR1 (to mpirun) and SIGTERM (to the ranks): the ranks finish the step, write a
 *   checkpoint and exit 75; --resume auto then ends bit-identical to an uninterrupted run;
 * - SIGKILL of one rank: the whole job ends within 30 s, non-zero; the newest complete
 *   checkpoint survives and --resume auto again ends bit-identical (before any checkpoint,
 *   and after several);
 * - elastic resume: a checkpoint written with n ranks resumes with m != n ranks (2 -> 3,
 *   3 -> 1) and ends within float tolerance of the uninterrupted run;
 * - a damaged checkpoint (one flipped byte in a weight) is refused by its checksum;
 * - a diverging run stops with the step and layer named, keeping the last checkpoint.
 * Each interruption waits for an event (an epoch's line in metrics.jsonl), never for a
 * fixed time, and leaves 37 of the run's 40 epochs or more to go. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/checkpoint.h"
#include "data/dataset.h"
#include "nn/model.h"
#include "core/rng.h"
#include "testutil.h"

#define MPIRUN DMLP_MPIEXEC " --oversubscribe --bind-to none -np "

/* The run: SAMPLES rows, batch BATCH, EPOCHS epochs of STEPS steps. */
enum { SAMPLES = 20000, BATCH = 32, EPOCHS = 40, STEPS = SAMPLES / BATCH };

static char g_dir[512], g_data[600], g_cfg[600], g_ref[700];

/* 1 when the final checkpoints in the two run directories hold identical weights. */
static int same_weights(const char *run_a, const char *run_b)
{
    char pa[800], pb[800];
    snprintf(pa, sizeof pa, "%s/latest.h5", run_a);
    snprintf(pb, sizeof pb, "%s/latest.h5", run_b);
    struct model *a = tu_load_model(pa), *b = tu_load_model(pb);
    int same = a && b && a->n_params == b->n_params &&
               memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0;
    if (a && b && !same)
        printf("    weights differ: max relative difference %.3g\n",
               tu_max_rel_diff(a->params, b->params, a->n_params));
    model_free(&a);
    model_free(&b);
    return same;
}

/* Runs training (with the extra options) in the background until metrics.jsonl holds the
 * line of the given epoch, written after that epoch's checkpoint; then runs action, a shell
 * command in which $p is mpirun's pid. Reports mpirun's exit code and the seconds it took
 * to end after the action: -1 when it gave none, -2 when the epoch was never logged
 * (the run ended first, or 60 s passed). */
static int interrupted(const char *dir, const char *extra, int epoch, const char *action,
                       int *secs)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && ( " MPIRUN "2 %s train %s --set checkpoint.dir=%s %s & p=$!; "
             "t=$(( $(date +%%s) + 60 )); "
             "until grep -q \"epoch.: %d,\" %s/metrics.jsonl 2>/dev/null; do "
             "if [ $(date +%%s) -ge $t ] || ! ps -o stat= -p $p | grep -qv Z; then "
             "echo \"epoch %d never logged\"; break; fi; sleep 0.05; done; "
             "%s; t0=$(date +%%s); wait $p; rc=$?; echo \"rc=$rc secs=$(( $(date +%%s) - t0 ))\" )",
             g_dir, DMLP_BINARY, g_cfg, dir, extra, epoch, dir, epoch, action);
    tu_sh("timeout 120 sh -c '%s'", cmd);
    if (strstr(tu_out, "never logged")) {
        printf("    epoch %d was never logged:\n%s\n", epoch, tu_out);
        return -2;
    }
    const char *p = strstr(tu_out, "rc=");
    if (!p)
        return -1;
    int rc = -1;
    sscanf(p, "rc=%d secs=%d", &rc, secs);
    return rc;
}

/* The number after key in tu_out (its first occurrence), or -1. */
static long long out_number(const char *key)
{
    const char *at = strstr(tu_out, key);
    long long v = -1;
    if (!at || sscanf(at + strlen(key), "%lld", &v) != 1)
        return -1;
    return v;
}

static void test_reference_run(void)
{
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "2 %s train %s --set checkpoint.dir=%s", g_dir,
                           DMLP_BINARY, g_cfg, g_ref), 0);
    CU_ASSERT(tu_has("epoch   40/40"));
}

/* sig after the given epoch is logged, by action; every rank stops at the next step
 * boundary, checkpoints and exits 75, and so does mpirun. */
static void check_signal(const char *sig, int epoch, const char *action)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/run-%s", g_dir, sig);
    int secs = 0;
    CU_ASSERT_EQUAL(interrupted(dir, "", epoch, action, &secs), 75);
    CU_ASSERT(tu_has("stopped by a signal"));
    CU_ASSERT(tu_has("--resume auto"));
    /* It stopped after the signal's epoch, before the end. */
    const long long stop = out_number(" after step ");
    printf("    %s after epoch %d: stopped after step %lld of %d\n", sig, epoch, stop,
           EPOCHS * STEPS);
    CU_ASSERT(stop >= (long long)epoch * STEPS && stop < EPOCHS * STEPS);
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "2 %s train %s --set checkpoint.dir=%s "
                           "--resume auto", g_dir, DMLP_BINARY, g_cfg, dir), 0);
    CU_ASSERT(tu_has("resumed from"));
    CU_ASSERT(same_weights(g_ref, dir));
}

/* mpirun forwards SIGUSR1 to every rank at once. SIGTERM goes to the ranks themselves (as a
 * scheduler's reaches a job's processes): mpirun passes its own on only after
 * odls_base_sigkill_timeout (1 s) and sends SIGKILL 1 s later, a race against the clock. */
static void test_sigusr1(void) { check_signal("USR1", 2, "kill -USR1 $p"); }
static void test_sigterm(void) { check_signal("TERM", 1, "kill -TERM $(pgrep -x -P $p dmlp)"); }

/* SIGKILL of one rank after the given epoch is logged; with no_checkpoints, before any
 * checkpoint was written (only the final one is due), so the resume starts afresh. */
static void check_kill(const char *name, int epoch, int no_checkpoints)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/run-kill-%s", g_dir, name);
    int secs = 99;
    const int rc = interrupted(dir, no_checkpoints ? "--set checkpoint.every_epochs=0" : "",
                               epoch, "kill -9 $(pgrep -x -P $p dmlp | tail -n 1)", &secs);
    printf("    SIGKILL of a rank after epoch %d: mpirun exited %d after %d s\n", epoch, rc,
           secs);
    CU_ASSERT(rc > 0);
    /* A hang bound, not a measurement: mpirun ends the job about 2 s after a rank dies
     * (it waits odls_base_sigkill_timeout, 1 s, before its SIGTERM and its SIGKILL). */
    CU_ASSERT(secs <= 30);
    /* The newest complete checkpoint carries the run on; without one it starts afresh. */
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "2 %s train %s --set checkpoint.dir=%s "
                           "--resume auto", g_dir, DMLP_BINARY, g_cfg, dir), 0);
    if (no_checkpoints) {
        CU_ASSERT(tu_has("starting fresh"));
    } else {
        CU_ASSERT(tu_has("resumed from"));
        CU_ASSERT(out_number(": epoch ") >= epoch);
    }
    CU_ASSERT(same_weights(g_ref, dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c tmp", dir);
    char out[64] = "";
    tu_run_cmd(cmd, out, sizeof out);
    CU_ASSERT_EQUAL(atoi(out), 0); /* a killed writer's temporary file was cleaned up */
}

static void test_sigkill_early(void) { check_kill("early", 1, 1); }
static void test_sigkill_late(void) { check_kill("late", 3, 0); }

static void check_elastic(int from, int to)
{
    char dir[700], refdir[700];
    snprintf(dir, sizeof dir, "%s/elastic-%d-%d", g_dir, from, to);
    snprintf(refdir, sizeof refdir, "%s/elastic-ref-%d", g_dir, from);
    const char *shorter = "--set training.epochs=2";
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "%d %s train %s --set checkpoint.dir=%s %s "
                           "--set training.max_steps=700", g_dir, from, DMLP_BINARY, g_cfg,
                           dir, shorter), 0);
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "%d %s train %s --set checkpoint.dir=%s %s "
                           "--resume auto", g_dir, to, DMLP_BINARY, g_cfg, dir, shorter), 0);
    CU_ASSERT(tu_has("resumed from"));
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "%d %s train %s --set checkpoint.dir=%s %s", g_dir,
                           from, DMLP_BINARY, g_cfg, refdir, shorter), 0);
    char pa[800], pb[800];
    snprintf(pa, sizeof pa, "%s/latest.h5", dir);
    snprintf(pb, sizeof pb, "%s/latest.h5", refdir);
    struct model *a = tu_load_model(pa), *b = tu_load_model(pb);
    CU_ASSERT(a && b);
    if (a && b) {
        /* The position is global, so only the float summation order differs. */
        const double rel = tu_max_rel_diff(b->params, a->params, b->n_params);
        printf("    %d -> %d ranks: max relative weight difference %.3g\n", from, to, rel);
        CU_ASSERT(rel <= 1e-5);
    }
    model_free(&a);
    model_free(&b);
}

static void test_elastic_2_to_3(void) { check_elastic(2, 3); }
static void test_elastic_3_to_1(void) { check_elastic(3, 1); }

static void test_damaged_checkpoint_refused(void)
{
    char src[800], bad[800];
    snprintf(src, sizeof src, "%s/latest.h5", g_ref);
    snprintf(bad, sizeof bad, "%s/damaged.h5", g_dir);
    struct model *m = tu_load_model(src);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    /* Find the first 16 bytes of layer 0's weights in the file and flip one bit. */
    FILE *f = fopen(src, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)size);
    CU_ASSERT_EQUAL(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    long at = -1;
    for (long i = 0; i + 16 <= size && at < 0; i++)
        if (!memcmp(buf + i, m->layers[0].W, 16))
            at = i;
    CU_ASSERT(at >= 0);
    if (at >= 0) {
        buf[at + 5] ^= 0x10;
        f = fopen(bad, "wb");
        fwrite(buf, 1, (size_t)size, f);
        fclose(f);
        struct dmlp_error e = {0};
        CU_ASSERT_EQUAL(checkpoint_load_layers(bad, m, &e), DMLP_ERR_INPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "checksum"));
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "/layers/0/weight"));
        CU_ASSERT_EQUAL(tu_sh("%s eval --checkpoint %s --data %s", DMLP_BINARY, bad, g_data), 2);
        CU_ASSERT(tu_has("checksum"));
    }
    free(buf);
    model_free(&m);
}

/* Two real trainings pointed at one checkpoint.dir: the second, started once the first has
 * logged an epoch, is refused at once (exit 2) naming the first's host and pid, and the
 * first runs to the end, bit-identical to the reference, with one run in its
 * metrics.jsonl. Then a lock file left by a run that died (a holder, no lock) is taken
 * over and reported. */
static void test_directory_lock(void)
{
    char dir[700], second[3000];
    snprintf(dir, sizeof dir, "%s/locked", g_dir);
    snprintf(second, sizeof second,
             "%s train %s --set checkpoint.dir=%s > %s/second.out 2>&1; echo second=$?",
             DMLP_BINARY, g_cfg, dir, g_dir);
    int secs = 0;
    CU_ASSERT_EQUAL(interrupted(dir, "", 1, second, &secs), 0);
    CU_ASSERT_EQUAL(out_number("second="), 2);
    CU_ASSERT(tu_has("epoch   40/40"));
    char out[4096] = "", cmd[2048];
    snprintf(cmd, sizeof cmd, "cat %s/second.out; grep -c '\"event\": \"start\"' "
             "%s/metrics.jsonl", g_dir, dir);
    tu_run_cmd(cmd, out, sizeof out);
    printf("    the second training said: %s", out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "is in use by another training (host "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, ", pid "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\n1\n")); /* one start in metrics.jsonl */
    CU_ASSERT(same_weights(g_ref, dir));

    char stale[800];
    snprintf(stale, sizeof stale, "%s/.dmlp.lock", dir);
    CU_ASSERT_EQUAL(tu_write_file(stale, "host gone, pid 999999, since 2026-01-01T00:00:00Z\n"),
                    0);
    CU_ASSERT_EQUAL(tu_sh("%s train %s --set checkpoint.dir=%s --set training.epochs=41 "
                           "--resume auto", DMLP_BINARY, g_cfg, dir), 0);
    CU_ASSERT(tu_has("took over the lock of a training that ended without releasing it "
                     "(host gone, pid 999999"));
}

/* A disk that fills during a save: the run ends with exit 1 and the reason, every earlier
 * checkpoint intact and latest.h5 on the newest of them, at 1 and 2 ranks. The disk is a
 * 256 KiB tmpfs mounted here (root only: SKIPPED where it cannot be mounted); a checkpoint
 * of this network is ~70 KiB, so the fourth save or so meets the full disk. */
static void test_full_disk(void)
{
    char mnt[700];
    snprintf(mnt, sizeof mnt, "%s/small-disk", g_dir);
    tu_sh("mkdir -p %s", mnt);
    if (tu_sh("mount -t tmpfs -o size=256k tmpfs %s", mnt) != 0) {
        printf("    SKIPPED: cannot mount a small tmpfs here (not root?)\n");
        return;
    }
    for (int np = 1; np <= 2; np++) {
        tu_sh("rm -rf %s/run", mnt);
        const int rc = tu_sh("timeout 120 " MPIRUN "%d %s train %s --set checkpoint.dir=%s/run "
                             "--set checkpoint.keep_last=0 --set training.epochs=12", np,
                             DMLP_BINARY, g_cfg, mnt);
        CU_ASSERT_EQUAL(rc, 1);
        CU_ASSERT(tu_has("cannot write checkpoint: No space left on device"));
        CU_ASSERT(strstr(tu_out, "Segmentation") == NULL && strstr(tu_out, "signal") == NULL);
        char out[4096] = "", cmd[1024];
        snprintf(cmd, sizeof cmd, "cd %s/run && ls step-*.h5 && readlink latest.h5", mnt);
        tu_run_cmd(cmd, out, sizeof out);
        size_t n = 0;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            char path[1400];
            snprintf(path, sizeof path, "%s/run/%s", mnt, line);
            struct model *m = tu_load_model(path); /* every file left loads */
            CU_ASSERT_PTR_NOT_NULL(m);
            model_free(&m);
            n++;
        }
        printf("    %d rank(s): %zu checkpoints and latest.h5 intact\n", np, n - 1);
        CU_ASSERT(n >= 2); /* at least one checkpoint, and latest.h5 naming one */
    }
    tu_sh("umount %s", mnt);
}

/* The step numbers of the step-N.h5 files in dir, ascending, as "N N N" into out. */
static void list_steps(const char *dir, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && ls step-*.h5 | sed 's/step-0*\\([0-9]\\)/\\1/; s/.h5$//' | sort -n | "
             "tr '\\n' ' '", dir);
    tu_run_cmd(cmd, out, cap);
}

/* --resume auto with a broken latest.h5: dangling, a loop, or naming a damaged file. It
 * takes the newest checkpoint that loads and says which, even with --quiet; with none that
 * loads it refuses (exit 2) instead of starting afresh beside them. The copies come from
 * the reference run, whose directory keeps the checkpoints of epochs 39 and 40. */
static void test_resume_auto_broken_latest(void)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/broken-latest", g_dir);
    const char *more = "--set training.epochs=41 --resume auto --quiet";
    const unsigned long long s39 = 39ull * STEPS, s40 = 40ull * STEPS;
    struct {
        const char *how, *break_it, *expect;
        unsigned long long from;
    } cases[] = {
        {"dangling", "ln -sfn step-99999999.h5 latest.h5", "points at step-99999999.h5", s40},
        {"loop", "ln -sfn latest.h5 latest.h5", "a loop of links", s40},
        {"damaged target", "head -c 2000 step-00025000.h5 > x && mv x step-00025000.h5",
         "skipping", s39},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CU_ASSERT_EQUAL(tu_sh("rm -rf %s && cp -a %s %s && cd %s && %s", dir, g_ref, dir, dir,
                              cases[c].break_it), 0);
        CU_ASSERT_EQUAL(tu_sh("%s train %s --set checkpoint.dir=%s %s", DMLP_BINARY, g_cfg,
                              dir, more), 0);
        printf("    %s latest.h5: %s", cases[c].how, tu_out);
        CU_ASSERT(tu_has(cases[c].expect));
        char want[900];
        snprintf(want, sizeof want, "taking %s/step-%08llu.h5", dir, cases[c].from);
        CU_ASSERT(tu_has(want));
    }
    /* Nothing loads: refused, and the files stay. */
    CU_ASSERT_EQUAL(tu_sh("cd %s && for f in step-*.h5; do echo junk > $f; done", dir), 0);
    CU_ASSERT_EQUAL(tu_sh("%s train %s --set checkpoint.dir=%s %s", DMLP_BINARY, g_cfg, dir,
                          more), 2);
    CU_ASSERT(tu_has("none of the"));
    char steps[256] = "";
    list_steps(dir, steps, sizeof steps);
    CU_ASSERT_PTR_NOT_NULL(strstr(steps, "25625")); /* the files are still there */
}

/* A latest.h5 that is a regular file (copied with cp -L) is resumed from and kept, as
 * step-N.h5 of its own step, when the new latest.h5 link replaces it. A fresh run in a
 * directory holding newer checkpoints of another run never prunes those. */
static void test_latest_regular_file_and_pruning(void)
{
    char dir[700], steps[256] = "";
    snprintf(dir, sizeof dir, "%s/copied", g_dir);
    CU_ASSERT_EQUAL(tu_sh("rm -rf %s && mkdir -p %s && cp -L %s/latest.h5 %s/latest.h5", dir,
                          dir, g_ref, dir), 0);
    CU_ASSERT_EQUAL(tu_sh("%s train %s --set checkpoint.dir=%s --set training.epochs=41 "
                          "--resume auto", DMLP_BINARY, g_cfg, dir), 0);
    CU_ASSERT(tu_has("resumed from"));
    list_steps(dir, steps, sizeof steps);
    printf("    after resuming from a copied latest.h5: steps %s\n", steps);
    CU_ASSERT_STRING_EQUAL(steps, "25000 25625 ");

    /* A fresh 3-epoch run (keep_last 2) where the reference run's epochs 39 and 40 lie. */
    snprintf(dir, sizeof dir, "%s/fresh-beside", g_dir);
    CU_ASSERT_EQUAL(tu_sh("rm -rf %s && cp -a %s %s", dir, g_ref, dir), 0);
    CU_ASSERT_EQUAL(tu_sh("%s train %s --set checkpoint.dir=%s --set training.epochs=3",
                          DMLP_BINARY, g_cfg, dir), 0);
    list_steps(dir, steps, sizeof steps);
    printf("    a fresh run beside another's checkpoints: steps %s\n", steps);
    CU_ASSERT_STRING_EQUAL(steps, "1250 1875 24375 25000 ");
}

static void test_divergence_guard(void)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/diverge", g_dir);
    /* A first, good run leaves a checkpoint; then an absurd learning rate blows up. */
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "2 %s train %s --set checkpoint.dir=%s "
                           "--set training.epochs=1", g_dir, DMLP_BINARY, g_cfg, dir), 0);
    char latest_before[800], target[800] = "", cmd[1024];
    snprintf(latest_before, sizeof latest_before, "readlink %s/latest.h5", dir);
    tu_run_cmd(latest_before, target, sizeof target);
    CU_ASSERT_EQUAL(tu_sh("cd %s && " MPIRUN "2 %s train %s --set checkpoint.dir=%s "
                           "--set optimizer.lr=1e30 --set training.epochs=3 --resume auto",
                           g_dir, DMLP_BINARY, g_cfg, dir), 1);
    CU_ASSERT(tu_has("training diverged: non-finite gradient at step"));
    CU_ASSERT(tu_has("in layer"));
    char after[800] = "";
    snprintf(cmd, sizeof cmd, "readlink %s/latest.h5", dir);
    tu_run_cmd(cmd, after, sizeof after);
    CU_ASSERT_STRING_EQUAL(after, target); /* the last good checkpoint is kept */
    CU_ASSERT(tu_has("is kept"));
    /* A run that diverges before its first checkpoint does not claim one is kept. */
    CU_ASSERT_EQUAL(tu_sh("cd %s && %s train %s --set checkpoint.dir=%s-fresh "
                           "--set optimizer.lr=1e30", g_dir, DMLP_BINARY, g_cfg, dir), 1);
    CU_ASSERT(tu_has("this run had written no checkpoint yet"));
    CU_ASSERT(strstr(tu_out, "is kept") == NULL);
}

static CU_TestInfo tests[] = {
    {"uninterrupted reference run", test_reference_run},
    {"a second training on a locked checkpoint.dir is refused", test_directory_lock},
    {"SIGUSR1: checkpoint, exit 75, resume bit-identical", test_sigusr1},
    {"SIGTERM: checkpoint, resume bit-identical", test_sigterm},
    {"SIGKILL of a rank early: job ends, resume bit-identical", test_sigkill_early},
    {"SIGKILL of a rank later: job ends, resume bit-identical", test_sigkill_late},
    {"elastic resume 2 -> 3 ranks", test_elastic_2_to_3},
    {"elastic resume 3 -> 1 ranks", test_elastic_3_to_1},
    {"a damaged checkpoint is refused by its checksum", test_damaged_checkpoint_refused},
    {"divergence guard", test_divergence_guard},
    {"resume auto with a broken latest.h5", test_resume_auto_broken_latest},
    {"a regular-file latest.h5 is kept; pruning spares newer runs", test_latest_regular_file_and_pruning},
    {"a full disk during a save", test_full_disk},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {{"resilience", NULL, NULL, NULL, NULL, tests},
                                CU_SUITE_INFO_NULL};

int main(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "resilience");
    snprintf(g_data, sizeof g_data, "%s/train.h5", g_dir);
    snprintf(g_cfg, sizeof g_cfg, "%s/run.yaml", g_dir);
    snprintf(g_ref, sizeof g_ref, "%s/reference", g_dir);
    /* SAMPLES samples of 64 features in 4 classes. */
    struct dataset *ds;
    struct dmlp_error e = {0};
    if (dataset_alloc(&ds, SAMPLES, 64, 4, 1, &e))
        return 1;
    struct rng r;
    rng_seed(&r, 11, 0);
    for (size_t i = 0; i < ds->n; i++) {
        const int32_t y = (int32_t)rng_below(&r, 4);
        ds->labels[i] = y;
        for (size_t j = 0; j < 64; j++)
            ds->features[i * 64 + j] = (float)(rng_normal(&r) + (j % 4 == (size_t)y ? 0.4 : 0.0));
    }
    if (dataset_write(ds, g_data, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    dataset_free(&ds);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n  layers:\n    - {units: 128, activation: relu}\n"
             "    - {units: 4, activation: softmax}\n"
             "optimizer: {name: sgd, lr: 0.01, momentum: 0.9}\n"
             "data: {train: %s}\n"
             "training: {epochs: %d, batch_size: %d, seed: 3}\n"
             "checkpoint: {dir: unused, every_epochs: 1, keep_last: 2}\n",
             g_data, EPOCHS, BATCH);
    tu_write_file(g_cfg, yaml);
    int rc = tu_run(suites);
    tu_rmtree(g_dir);
    return rc;
}
