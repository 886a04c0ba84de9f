/* MPI tests, run by ctest at 1, 2 and 3 ranks: the data-parallel semantics of docs/architecture.md ("Contracts the tests pin down").
 * - the trajectory does not depend on the rank count: every rank also trains alone (on
 *   MPI_COMM_SELF) and the weights must agree within 1e-5, with uneven slices, a short
 *   last batch and, at 2 and 3 ranks, ranks whose slice of the last batch is empty;
 * - data.normalize_targets: the target statistics are the training rows' for any rank count,
 *   replicated or sharded (summed across ranks), and the weights stay n-invariant;
 * - evaluation counts are identical for any rank count;
 * - weights are bit-identical for 1 and 2 OpenMP threads at a fixed rank count;
 * - the gradient sum (shared memory within a node) gives exact totals;
 * - comm.overlap (bucketed MPI_Iallreduce during backward) gives the blocking weights;
 * - 4 epochs equal 2 epochs + resume for 2 (and a mid-epoch stop + resume) bit for bit;
 * - a failure on one rank is agreed on by all.
 * Every rank runs every test (they contain collectives); failure counts are reduced. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/config.h"
#include "data/dataset.h"
#include "par/dist.h"
#include "nn/model.h"
#include "core/rng.h"
#include "testutil.h"
#include "run/train.h"
#include "core/partition.h"

static int g_rank, g_size;
static char g_dir[512];        /* scratch directory shared by all ranks (same host) */
static char g_data[600];       /* 103 samples: batch 10 leaves a last batch of 3 */
static char g_data_short[600]; /* 101 samples: the last batch has 1 sample */
static char g_data_reg[600];   /* regression: 300 samples, 8 features, targets ~1e4, ~1e-3 */

/* A separable-ish synthetic classification set: labels from a random linear teacher. */
static int make_dataset(const char *path, size_t n, size_t d, size_t k, uint64_t seed)
{
    struct dataset *ds;
    struct dmlp_error e = {0};
    if (dataset_alloc(&ds, n, d, k, 1, &e))
        return -1;
    struct rng r;
    rng_seed(&r, seed, 99);
    double *teacher = malloc(k * d * sizeof *teacher);
    for (size_t i = 0; i < k * d; i++)
        teacher[i] = rng_normal(&r);
    for (size_t i = 0; i < n; i++) {
        double best = -INFINITY;
        for (size_t j = 0; j < d; j++)
            ds->features[i * d + j] = (float)rng_normal(&r);
        for (size_t c = 0; c < k; c++) {
            double s = 0;
            for (size_t j = 0; j < d; j++)
                s += teacher[c * d + j] * ds->features[i * d + j];
            if (s > best) {
                best = s;
                ds->labels[i] = (int32_t)c;
            }
        }
    }
    free(teacher);
    int rc = dataset_write(ds, path, &e);
    if (rc)
        fprintf(stderr, "make_dataset: %s\n", e.msg);
    dataset_free(&ds);
    return rc;
}

/* A regression set for data.normalize_targets: two targets of scales ~1e4 and ~1e-3
 * (t0 = 1e4·(a·x) + 3e4, t1 = 1e-3·tanh(b·x) + 2e-3), from a random linear teacher. */
static int make_regression(const char *path, size_t n, size_t d, uint64_t seed)
{
    struct dataset *ds;
    struct dmlp_error e = {0};
    if (dataset_alloc(&ds, n, d, 2, 0, &e))
        return -1;
    struct rng r;
    rng_seed(&r, seed, 99);
    double a[16], b[16];
    for (size_t j = 0; j < d; j++)
        a[j] = rng_normal(&r), b[j] = rng_normal(&r) / sqrt((double)d);
    for (size_t i = 0; i < n; i++) {
        double sa = 0, sb = 0;
        for (size_t j = 0; j < d; j++) {
            const float x = (float)rng_normal(&r);
            ds->features[i * d + j] = x;
            sa += a[j] * x;
            sb += b[j] * x;
        }
        ds->targets[i * 2] = (float)(1e4 * sa + 3e4);
        ds->targets[i * 2 + 1] = (float)(1e-3 * tanh(sb) + 2e-3);
    }
    int rc = dataset_write(ds, path, &e);
    if (rc)
        fprintf(stderr, "make_regression: %s\n", e.msg);
    dataset_free(&ds);
    return rc;
}

/* yaml with the space-separated KEY=VALUE overrides of extra_sets applied. */
static struct config *load_yaml(const char *yaml, const char *extra_sets)
{
    const char *sets[8];
    size_t n_sets = 0;
    char buf[512];
    if (extra_sets) {
        snprintf(buf, sizeof buf, "%s", extra_sets);
        for (char *tok = strtok(buf, " "); tok && n_sets < 8; tok = strtok(NULL, " "))
            sets[n_sets++] = tok;
    }
    struct config *cfg = NULL;
    struct dmlp_error e = {0};
    if (config_load_string(&cfg, yaml, strlen(yaml), "test.yaml", sets, n_sets, &e))
        fprintf(stderr, "config: %s\n", e.msg);
    return cfg;
}

static struct config *load_cfg(const char *data, const char *extra_sets)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n"
             "  layers:\n"
             "    - {units: 17, activation: tanh}\n"
             "    - {units: 9, activation: relu}\n"
             "    - {units: 4, activation: softmax}\n"
             "  init: he\n"
             "loss: cross_entropy\n"
             "optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.0001}\n"
             "data: {train: %s, shuffle: true}\n"
             "training: {epochs: 3, batch_size: 10, seed: 7}\n"
             "checkpoint: {dir: %s/ck, every_epochs: 1, keep_last: 2}\n",
             data, g_dir);
    return load_yaml(yaml, extra_sets);
}

/* The regression of g_data_reg: mse, a linear 2-unit last layer, standardised inputs and
 * targets, a validation split (the statistics are the training rows'). */
static struct config *load_reg_cfg(const char *extra_sets)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model:\n"
             "  layers:\n"
             "    - {units: 12, activation: tanh}\n"
             "    - {units: 2, activation: linear}\n"
             "  init: he\n"
             "loss: mse\n"
             "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
             "data: {train: %s, shuffle: true, normalize: standard, normalize_targets: true,\n"
             "       validation_fraction: 0.25}\n"
             "training: {epochs: 4, batch_size: 16, seed: 7}\n"
             "checkpoint: {dir: %s/ck, every_epochs: 1, keep_last: 2}\n",
             g_data_reg, g_dir);
    return load_yaml(yaml, extra_sets);
}

/* Trains cfg over d; returns the model (NULL on failure). */
static struct model *train(const struct dist *d, const struct config *cfg, const char *resume,
                           int save)
{
    struct train_options opt = {.resume = resume, .log = NULL, .save_checkpoints = save};
    struct train_result res;
    struct dmlp_error e = {0};
    char *yaml = NULL;
    config_to_yaml(cfg, &yaml, &e);
    int rc = train_run(d, cfg, yaml, &opt, &res, &e);
    free(yaml);
    if (rc) {
        fprintf(stderr, "rank %d: train failed: %s\n", g_rank, e.msg);
        return NULL;
    }
    return res.model;
}

static void check_n_invariance(const char *data)
{
    struct dist *world, *self;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    struct config *cfg = load_cfg(data, NULL);
    CU_ASSERT_PTR_NOT_NULL(cfg);
    struct model *mw = cfg ? train(world, cfg, NULL, 0) : NULL;
    struct model *ms = cfg ? train(self, cfg, NULL, 0) : NULL;
    CU_ASSERT_PTR_NOT_NULL(mw);
    CU_ASSERT_PTR_NOT_NULL(ms);
    if (mw && ms) {
        /* Only the float summation order differs between n ranks and one: the allreduce
         * adds n partial sums instead of one running sum. Over 33 steps that stays far
         * below 1e-5 of the largest weight. */
        const double rel = tu_max_rel_diff(ms->params, mw->params, ms->n_params);
        if (g_rank == 0)
            printf("\n    %d ranks vs 1: max relative weight difference %.3g\n", g_size, rel);
        CU_ASSERT(rel <= 1e-5);
        /* Training must actually have moved the weights. */
        struct model *init = NULL;
        model_create(&init, mw->layers[0].in, cfg->model.layers, cfg->model.n_layers,
                     cfg->loss, &e);
        struct rng r;
        rng_seed(&r, cfg->training.seed, 0);
        model_init_params(init, cfg->model.init, &r);
        CU_ASSERT(tu_max_rel_diff(init->params, mw->params, init->n_params) > 1e-2);
        model_free(&init);
    }
    model_free(&mw);
    model_free(&ms);
    config_free(&cfg);
    dist_free(&world);
    dist_free(&self);
}

static void test_n_invariance_uneven(void) { check_n_invariance(g_data); }
static void test_n_invariance_empty_slices(void) { check_n_invariance(g_data_short); }

static void test_eval_identical_across_ranks(void)
{
    struct dist *world, *self;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    struct config *cfg = load_cfg(g_data, "training.epochs=1");
    struct model *m = cfg ? train(self, cfg, NULL, 0) : NULL;
    struct dataset *ds = NULL;
    const int ok = dataset_read(&ds, g_data, &e) == DMLP_OK && m;
    CU_ASSERT(ok);
    if (!ok) { /* every rank reads the same local file: a failure here is everywhere */
        model_free(&m);
        config_free(&cfg);
        dist_free(&world);
        dist_free(&self);
        return;
    }
    struct metrics_report rw, rs;
    CU_ASSERT_EQUAL(metrics_evaluate_report(world, m, ds, 0, &rw, &e), DMLP_OK);
    CU_ASSERT_EQUAL(metrics_evaluate_report(self, m, ds, 0, &rs, &e), DMLP_OK);
    CU_ASSERT_EQUAL(rw.samples, 103);
    CU_ASSERT_EQUAL(rs.samples, 103);
    CU_ASSERT_EQUAL(rw.correct, rs.correct);
    CU_ASSERT_EQUAL(rw.accuracy, rs.accuracy);
    CU_ASSERT(fabs(rw.loss - rs.loss) <= 1e-12 * fabs(rs.loss));
    /* The counts against a direct, unsplit count. */
    const float *Y = NULL;
    size_t correct = 0;
    for (size_t i = 0; i < ds->n; i++) {
        Y = model_forward(m, ds->features + i * ds->d, 1);
        size_t best = 0;
        for (size_t j = 1; j < 4; j++)
            if (Y[j] > Y[best])
                best = j;
        correct += best == (size_t)ds->labels[i];
    }
    CU_ASSERT_EQUAL(rw.correct, correct);
    dataset_free(&ds);
    model_free(&m);
    config_free(&cfg);
    dist_free(&world);
    dist_free(&self);
}

static void test_threads_bit_identical(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct config *cfg = load_cfg(g_data, "model.layers[0].units=70");
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    struct model *m1 = train(world, cfg, NULL, 0);
    omp_set_num_threads(2);
    struct model *m2 = train(world, cfg, NULL, 0);
    omp_set_num_threads(saved);
    CU_ASSERT(m1 && m2);
    if (m1 && m2)
        CU_ASSERT_EQUAL(memcmp(m1->params, m2->params, m1->n_params * sizeof(float)), 0);
    model_free(&m1);
    model_free(&m2);
    config_free(&cfg);
    dist_free(&world);
}

/* The gradient sum on its own: every rank's value of element i is a function of (rank, i,
 * call), so each rank computes the expected total itself, added in rank order as the
 * shared-memory path adds within a node (one host here: node rank = rank). At 1 and 2 ranks
 * and with shared memory at 3 that is the exact float result; MPI_Allreduce at 3 ranks may
 * add in another order, so there within rounding. Sizes around the slice bounds (0, fewer
 * elements than ranks, not a multiple of 16) and repeated calls (the two buffers take
 * turns) on the same object. */
static float sum_input(int rank, size_t i, int call)
{
    return (float)((double)((i * 2654435761u + (size_t)rank * 40503u + (size_t)call * 977u) %
                            10007u) / 1000.0 - 5.0);
}

static void test_gradient_sum(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    static const size_t sizes[] = {0, 1, 2, 17, 1000, 4099};
    for (int shm = 1; shm >= 0; shm--) {
        struct dist_sum *s;
        dist_sum_create(&s, world, 4099, shm);
        if (g_rank == 0)
            printf("\n    shared_memory %d: %s", shm, dist_sum_method(s));
        CU_ASSERT_EQUAL(strncmp(dist_sum_method(s), "shared memory", 13) == 0,
                        shm && g_size > 1);
        float buf[4099];
        size_t bad = 0, far = 0;
        for (int call = 0; call < 5; call++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
                const size_t n = sizes[z];
                for (size_t i = 0; i < n; i++)
                    buf[i] = sum_input(g_rank, i, call);
                const double waited = dist_sum_float(s, buf, n);
                /* The wait for the node's other ranks is timed on the shared-memory path
                 * (a barrier always takes some time) and is 0 where MPI hides it. */
                if (shm && g_size > 1) {
                    CU_ASSERT(waited > 0.0);
                } else {
                    CU_ASSERT_EQUAL(waited, 0.0);
                }
                for (size_t i = 0; i < n; i++) {
                    float want = sum_input(0, i, call);
                    double mag = fabs(want);
                    for (int q = 1; q < g_size; q++) {
                        want += sum_input(q, i, call);
                        mag += fabs(sum_input(q, i, call));
                    }
                    bad += memcmp(&buf[i], &want, sizeof want) != 0;
                    far += fabs((double)buf[i] - (double)want) > 4 * 0x1p-24 * mag;
                }
            }
        if (shm || g_size <= 2)
            CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(far, 0);
        dist_sum_free(&s);
    }
    dist_free(&world);
}

/* comm.overlap: buckets summed by MPI_Iallreduce while backward goes on give the weights of
 * one blocking allreduce. At 1 and 2 ranks each sum is a + b whatever the algorithm, so
 * bit for bit; at 3 ranks MPI may add the partial sums in another order for another
 * message size, so within float rounding. 1 KiB buckets split every layer into several
 * chunks, and the short data set leaves some ranks an empty slice (they start the same
 * buckets, of zeros). */
static void test_overlap_matches_blocking(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct config *off = load_cfg(g_data_short, "model.layers[0].units=70 comm.bucket_kb=1");
    struct config *on = load_cfg(g_data_short,
                                 "model.layers[0].units=70 comm.bucket_kb=1 comm.overlap=true");
    CU_ASSERT_FATAL(off && on && on->comm.overlap && !off->comm.overlap);
    struct model *m_off = train(world, off, NULL, 0), *m_on = train(world, on, NULL, 0);
    CU_ASSERT(m_off && m_on);
    if (m_off && m_on) {
        const double rel = tu_max_rel_diff(m_off->params, m_on->params, m_off->n_params);
        if (g_rank == 0)
            printf("\n    overlap vs blocking at %d ranks: max relative difference %.3g\n",
                   g_size, rel);
        if (g_size <= 2)
            CU_ASSERT_EQUAL(memcmp(m_off->params, m_on->params,
                                   m_off->n_params * sizeof(float)), 0);
        CU_ASSERT(rel <= 1e-5); /* the bound of the n-invariance tests, for the same cause */
    }
    model_free(&m_off);
    model_free(&m_on);
    config_free(&off);
    config_free(&on);
    dist_free(&world);
}

static void rmtree_rank0(const char *path)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0)
        tu_rmtree(path);
    MPI_Barrier(MPI_COMM_WORLD);
}

static void test_resume_bit_identical(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ck", g_dir);

    rmtree_rank0(ck);
    struct config *full = load_cfg(g_data, "training.epochs=4");
    struct model *ref = train(world, full, NULL, 1);

    rmtree_rank0(ck);
    struct config *half = load_cfg(g_data, "training.epochs=2");
    struct model *first = train(world, half, NULL, 1);
    struct model *resumed = train(world, full, "auto", 1);
    CU_ASSERT(ref && first && resumed);
    if (ref && resumed)
        CU_ASSERT_EQUAL(memcmp(ref->params, resumed->params, ref->n_params * sizeof(float)), 0);
    if (ref && first) /* the first half alone must differ: resume did real work */
        CU_ASSERT_NOT_EQUAL(memcmp(ref->params, first->params, ref->n_params * sizeof(float)),
                            0);

    /* A stop in the middle of an epoch (max_steps) resumes at the same step. */
    rmtree_rank0(ck);
    struct config *part = load_cfg(g_data, "training.epochs=4 training.max_steps=16");
    struct model *p1 = train(world, part, NULL, 1);
    struct model *p2 = train(world, full, "auto", 1);
    CU_ASSERT(p1 && p2);
    if (ref && p2)
        CU_ASSERT_EQUAL(memcmp(ref->params, p2->params, ref->n_params * sizeof(float)), 0);

    model_free(&ref);
    model_free(&first);
    model_free(&resumed);
    model_free(&p1);
    model_free(&p2);
    config_free(&full);
    config_free(&half);
    config_free(&part);
    dist_free(&world);
}

/* Every rank applies the same update: after clipped Adam steps on a schedule, the
 * parameters are bit-identical on all ranks; and a resume restores the Adam moments. */
static void test_clipped_adam_identical_and_resumable(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ck", g_dir);
    const char *sets = "optimizer.name=adamw optimizer.momentum=0 optimizer.clip_norm=0.05 "
                       "optimizer.schedule.name=cosine";
    rmtree_rank0(ck);
    struct config *full = load_cfg(g_data, sets);
    CU_ASSERT_PTR_NOT_NULL(full);
    if (!full) {
        dist_free(&world);
        return;
    }
    struct model *ref = train(world, full, NULL, 1);
    CU_ASSERT_PTR_NOT_NULL(ref);
    if (ref) {
        float *mine = malloc(ref->n_params * sizeof(float));
        memcpy(mine, ref->params, ref->n_params * sizeof(float));
        dist_bcast(world, mine, ref->n_params * sizeof(float), 0);
        CU_ASSERT_EQUAL(memcmp(mine, ref->params, ref->n_params * sizeof(float)), 0);
        free(mine);
    }
    /* 3 epochs == the same run stopped after 13 steps, then resumed */
    rmtree_rank0(ck);
    char stop[600];
    snprintf(stop, sizeof stop, "%s training.max_steps=13", sets);
    struct config *part = load_cfg(g_data, stop);
    struct model *p1 = part ? train(world, part, NULL, 1) : NULL;
    struct model *p2 = train(world, full, "auto", 1);
    CU_ASSERT(p1 && p2);
    if (ref && p2)
        CU_ASSERT_EQUAL(memcmp(ref->params, p2->params, ref->n_params * sizeof(float)), 0);
    model_free(&ref);
    model_free(&p1);
    model_free(&p2);
    config_free(&full);
    config_free(&part);
    dist_free(&world);
}

/* The sharded plan: over an epoch every rank takes each row of its shard exactly once, in
 * order, and the step counts add up to the global batch (the last step shorter). */
static void test_shard_plan_covers_each_row_once(void)
{
    const uint64_t shapes[][4] = {{34, 34, 33, 0}, {5, 0, 7, 0}, {1000, 999, 999, 998},
                                  {3, 3, 3, 3}};
    const uint64_t batches[] = {1, 7, 10, 64, 5000};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        const int n = shapes[sh][3] ? 4 : 3;
        uint64_t N = 0;
        for (int i = 0; i < n; i++)
            N += shapes[sh][i];
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const uint64_t B = batches[bi], steps = (N + B - 1) / B;
            uint64_t next[4] = {0}, total = 0;
            int ok = 1;
            for (uint64_t s = 0; s < steps; s++) {
                uint64_t step_count = 0;
                for (int r = 0; r < n; r++) {
                    uint64_t off, len, count;
                    dmlp_shard_step(shapes[sh], n, r, B, s, steps, 0, &off, &len, &count);
                    ok &= off == next[r]; /* contiguous, in order, no overlap */
                    next[r] = off + len;
                    step_count += len;
                    ok &= r == 0 || count == total; /* every rank computes the same count */
                    total = count;
                }
                ok &= step_count == total;
                ok &= s + 1 < steps ? total <= B + (uint64_t)n && total + (uint64_t)n >= B
                                    : total <= B + (uint64_t)n;
            }
            for (int r = 0; r < n; r++)
                ok &= next[r] == shapes[sh][r];
            if (!ok && g_rank == 0)
                printf("\n    plan broken for shape %zu, batch %llu\n", sh,
                       (unsigned long long)B);
            CU_ASSERT(ok);
        }
    }
}

/* Sharded training: each rank holds only its rows, the epoch visits all N samples, and a
 * separable problem is learnt to the same accuracy band as with replicated data. */
static void test_sharded_training(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct config *rep = load_cfg(g_data, "training.epochs=15 optimizer.lr=0.05");
    struct config *shd = load_cfg(g_data, "training.epochs=15 optimizer.lr=0.05 "
                                          "data.placement=sharded");
    struct model *mr = rep ? train(world, rep, NULL, 0) : NULL;
    struct train_options opt = {.save_checkpoints = 0};
    struct train_result res;
    char *yaml = NULL;
    int rc = shd ? train_run(world, shd, "", &opt, &res, &e) : -1;
    CU_ASSERT_EQUAL(rc, DMLP_OK);
    CU_ASSERT_PTR_NOT_NULL(mr);
    if (rc == DMLP_OK && mr) {
        /* 15 epochs of 103 samples in 11 steps each */
        CU_ASSERT_EQUAL(res.steps, 15 * 11);
        struct dataset *ds = NULL;
        dataset_read(&ds, g_data, &e);
        struct metrics_report a, b;
        metrics_evaluate_report(world, mr, ds, 0, &a, &e);
        metrics_evaluate_report(world, res.model, ds, 0, &b, &e);
        if (g_rank == 0)
            printf("\n    accuracy: replicated %.3f, sharded %.3f\n", a.accuracy, b.accuracy);
        CU_ASSERT(a.accuracy >= 0.85);
        CU_ASSERT(b.accuracy >= 0.85);
        CU_ASSERT(fabs(a.accuracy - b.accuracy) <= 0.08);
        dataset_free(&ds);
        model_free(&res.model);
    }
    free(yaml);
    model_free(&mr);
    config_free(&rep);
    config_free(&shd);
    dist_free(&world);
}

/* Validation split and standardisation keep the trajectory independent of the rank count,
 * and the statistics travel in the checkpoint. */
static void test_validation_and_normalize_n_invariant(void)
{
    struct dist *world, *self;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    struct config *cfg = load_cfg(g_data, "data.validation_fraction=0.25 "
                                          "data.normalize=standard");
    struct train_options opt = {.save_checkpoints = 0};
    struct train_result rw, rs;
    CU_ASSERT_EQUAL(train_run(world, cfg, "", &opt, &rw, &e), DMLP_OK);
    CU_ASSERT_EQUAL(train_run(self, cfg, "", &opt, &rs, &e), DMLP_OK);
    if (rw.model && rs.model) {
        CU_ASSERT(tu_max_rel_diff(rs.model->params, rw.model->params, rs.model->n_params) <=
                  1e-5);
        CU_ASSERT(fabs(rw.val_loss - rs.val_loss) <= 1e-5 * fabs(rs.val_loss));
        CU_ASSERT(!isnan(rw.val_loss));
        /* the statistics are the training rows' (77 of 103), not all rows' */
        CU_ASSERT_PTR_NOT_NULL(rw.model->norm_mean);
        CU_ASSERT_EQUAL(memcmp(rw.model->norm_mean, rs.model->norm_mean,
                               11 * sizeof(float)), 0);
    }
    model_free(&rw.model);
    model_free(&rs.model);
    config_free(&cfg);
    dist_free(&world);
    dist_free(&self);
}

/* data.normalize_targets: the target statistics are the training rows' whatever the rank
 * count and placement (sharded: each rank's sums over its shard, added across ranks), and
 * the trajectory on the standardised targets stays n-invariant. Replicated with mini-batches
 * of 16 (uneven slices); sharded with one full batch per step, since a sharded step takes
 * each rank's share of its own shard, so only a batch of every row is the same batch for
 * any rank count. Each against this rank alone with the same config. */
static void test_normalize_targets_n_invariant(void)
{
    struct dist *world, *self;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    /* The reference: the training rows of the split, their mean and std in double. */
    double tm[2] = {0}, ts[2] = {0};
    struct dataset *ds = NULL, *val = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, g_data_reg, &e), DMLP_OK);
    CU_ASSERT_EQUAL_FATAL(dataset_split(ds, 0, ds->n, 0.25, 7, &val, &e), DMLP_OK);
    const size_t n_train = ds->n;
    CU_ASSERT(n_train > 150 && n_train < 300);
    for (size_t i = 0; i < n_train; i++)
        for (size_t j = 0; j < 2; j++)
            tm[j] += ds->targets[i * 2 + j];
    for (size_t j = 0; j < 2; j++)
        tm[j] /= (double)n_train;
    for (size_t i = 0; i < n_train; i++)
        for (size_t j = 0; j < 2; j++)
            ts[j] += (ds->targets[i * 2 + j] - tm[j]) * (ds->targets[i * 2 + j] - tm[j]);
    for (size_t j = 0; j < 2; j++)
        ts[j] = sqrt(ts[j] / (double)n_train);
    dataset_free(&ds);
    dataset_free(&val);

    char full[128];
    snprintf(full, sizeof full, "data.placement=sharded training.batch_size=%zu "
             "training.epochs=15", n_train);
    const char *placements[2] = {NULL, full};
    for (int p = 0; p < 2; p++) {
        struct config *cfg = load_reg_cfg(placements[p]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
        CU_ASSERT_EQUAL(cfg->data.normalize_targets, 1);
        struct train_options opt = {.save_checkpoints = 0};
        struct train_result rw = {0}, rs = {0};
        CU_ASSERT_EQUAL(train_run(world, cfg, "", &opt, &rw, &e), DMLP_OK);
        CU_ASSERT_EQUAL(train_run(self, cfg, "", &opt, &rs, &e), DMLP_OK);
        CU_ASSERT(rw.model && rs.model);
        if (rw.model && rs.model) {
            CU_ASSERT_PTR_NOT_NULL(rw.model->target_mean);
            CU_ASSERT_PTR_NOT_NULL(rw.model->target_std);
            CU_ASSERT_PTR_NOT_NULL(rs.model->target_mean);
            CU_ASSERT_PTR_NOT_NULL(rs.model->target_std);
        }
        if (rw.model && rs.model && rw.model->target_mean && rs.model->target_mean) {
            const struct model *w = rw.model, *s = rs.model;
            double worst = 0;
            for (size_t j = 0; j < 2; j++) {
                const double d[4] = {
                    tu_reldiff(w->target_mean[j], s->target_mean[j], 1e-300),
                    tu_reldiff(w->target_std[j], s->target_std[j], 1e-300),
                    tu_reldiff(s->target_mean[j], tm[j], 1e-300),
                    tu_reldiff(s->target_std[j], ts[j], 1e-300)};
                for (int q = 0; q < 4; q++)
                    worst = d[q] > worst ? d[q] : worst;
                if (g_rank == 0)
                    printf("\n    %s, output %zu: mean %.7g (1 rank %.7g, double %.7g), "
                           "std %.7g (1 rank %.7g, double %.7g)",
                           p ? "sharded" : "replicated", j, (double)w->target_mean[j],
                           (double)s->target_mean[j], tm[j], (double)w->target_std[j],
                           (double)s->target_std[j], ts[j]);
            }
            /* the scales really differ by orders of magnitude */
            CU_ASSERT(s->target_std[0] > 1e3 && s->target_std[1] < 1e-2);
            /* stored as floats from double sums: 1e-6 is a few roundings, while the sums of
             * one shard alone, or all rows instead of the training rows, are far off */
            CU_ASSERT(worst <= 1e-6);
            const double rel = tu_max_rel_diff(s->params, w->params, s->n_params);
            if (g_rank == 0)
                printf("\n    %s, %d ranks vs 1: max relative weight difference %.3g, "
                       "val_loss %.6g vs %.6g\n", p ? "sharded" : "replicated", g_size, rel,
                       rw.val_loss, rs.val_loss);
            CU_ASSERT(rel <= 1e-5);
            CU_ASSERT(!isnan(rw.val_loss));
            CU_ASSERT(fabs(rw.val_loss - rs.val_loss) <= 1e-5 * fabs(rs.val_loss));
            /* Training must actually have moved the weights. */
            struct model *init = NULL;
            model_create(&init, w->layers[0].in, cfg->model.layers, cfg->model.n_layers,
                         cfg->loss, &e);
            struct rng r;
            rng_seed(&r, cfg->training.seed, 0);
            model_init_params(init, cfg->model.init, &r);
            CU_ASSERT(tu_max_rel_diff(init->params, w->params, init->n_params) > 1e-2);
            model_free(&init);
        }
        model_free(&rw.model);
        model_free(&rs.model);
        config_free(&cfg);
    }
    dist_free(&world);
    dist_free(&self);
}

/* With an unreachable min_delta, the metric "improves" only once (the first epoch sets the
 * best), so patience 2 must stop after epoch 3, keeping best.h5 from epoch 1. */
static void test_early_stopping_epoch(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    char ck[700], best[800];
    snprintf(ck, sizeof ck, "%s/ck", g_dir);
    snprintf(best, sizeof best, "%s/best.h5", ck);
    rmtree_rank0(ck);
    struct config *cfg = load_cfg(g_data, "training.epochs=10 data.validation_fraction=0.2 "
                                          "training.early_stopping.patience=2 "
                                          "training.early_stopping.min_delta=1e9");
    struct train_options opt = {.save_checkpoints = 1};
    struct train_result res;
    CU_ASSERT_EQUAL(train_run(world, cfg, "", &opt, &res, &e), DMLP_OK);
    CU_ASSERT_EQUAL(res.epochs_done, 3);
    CU_ASSERT_EQUAL(res.stopped_early, 1);
    CU_ASSERT_EQUAL(res.best_epoch, 1);
    CU_ASSERT_EQUAL(res.steps, 3 * 9); /* 83 training rows after the split: 9 steps */
    CU_ASSERT_EQUAL(access(best, F_OK), 0);
    model_free(&res.model);
    /* Resuming a stopped run takes no further step. */
    struct train_result again;
    CU_ASSERT_EQUAL(train_run(world, cfg, "", &(struct train_options){.resume = "auto",
                                                                      .save_checkpoints = 1},
                              &again, &e), DMLP_OK);
    CU_ASSERT_EQUAL(again.steps, 3 * 9);
    model_free(&again.model);
    /* And a real metric: patience 1 on val_accuracy stops no later than the limit. */
    config_free(&cfg);
    rmtree_rank0(ck);
    cfg = load_cfg(g_data, "training.epochs=40 data.validation_fraction=0.2 "
                           "training.early_stopping.patience=1 "
                           "training.early_stopping.metric=val_accuracy");
    CU_ASSERT_EQUAL(train_run(world, cfg, "", &opt, &res, &e), DMLP_OK);
    CU_ASSERT(res.epochs_done < 40 && res.stopped_early);
    CU_ASSERT(res.best_epoch + 1 == res.epochs_done);
    model_free(&res.model);
    config_free(&cfg);
    dist_free(&world);
}

/* training.reproducible: bit-identical weights for any rank count (the world against
 * this rank alone), even with the awkward batch of 10 and a last batch of 3, and a resume
 * in the middle continues bit for bit. */
static void test_reproducible_mode(void)
{
    struct dist *world, *self;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    struct config *cfg = load_cfg(g_data, "training.reproducible=true training.batch_size=37");
    struct model *mw = cfg ? train(world, cfg, NULL, 0) : NULL;
    struct model *ms = cfg ? train(self, cfg, NULL, 0) : NULL;
    CU_ASSERT(mw && ms);
    if (mw && ms) {
        const double rel = tu_max_rel_diff(ms->params, mw->params, ms->n_params);
        if (g_rank == 0)
            printf("\n    reproducible mode, %d ranks vs 1: max relative difference %.3g\n",
                   g_size, rel);
        CU_ASSERT_EQUAL(memcmp(mw->params, ms->params, mw->n_params * sizeof(float)), 0);
    }
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ck", g_dir);
    rmtree_rank0(ck);
    struct config *part = load_cfg(g_data, "training.reproducible=true training.batch_size=37 "
                                           "training.max_steps=5");
    struct model *p1 = part ? train(world, part, NULL, 1) : NULL;
    struct model *p2 = cfg ? train(world, cfg, "auto", 1) : NULL;
    CU_ASSERT(p1 && p2);
    if (p2 && ms)
        CU_ASSERT_EQUAL(memcmp(p2->params, ms->params, ms->n_params * sizeof(float)), 0);
    model_free(&p1);
    model_free(&p2);
    model_free(&mw);
    model_free(&ms);
    config_free(&cfg);
    config_free(&part);
    dist_free(&world);
    dist_free(&self);
}

static void test_error_agreement(void)
{
    struct dist *world;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    /* The last rank alone fails; every rank must learn its code and message. */
    if (g_rank == g_size - 1)
        dmlp_fail(&e, DMLP_ERR_INPUT, "shard.h5: cannot open");
    const int code = dist_agree(world, &e);
    CU_ASSERT_EQUAL(code, DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "shard.h5: cannot open"));
    if (g_size > 1) {
        char want[32];
        snprintf(want, sizeof want, "rank %d:", g_size - 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, want));
    }
    /* And no failure anywhere agrees on OK. */
    dmlp_error_clear(&e);
    CU_ASSERT_EQUAL(dist_agree(world, &e), DMLP_OK);

    /* A missing training file: every rank returns the same input error naming it. */
    struct config *cfg = load_cfg("/nonexistent/train.h5", NULL);
    struct train_options opt = {0};
    struct train_result res;
    CU_ASSERT_EQUAL(train_run(world, cfg, "", &opt, &res, &e), DMLP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "/nonexistent/train.h5"));
    config_free(&cfg);
    dist_free(&world);
}

static CU_TestInfo mpi_tests[] = {
    {"n-invariance, uneven slices and short last batch", test_n_invariance_uneven},
    {"n-invariance, empty slices in the last batch", test_n_invariance_empty_slices},
    {"evaluation identical for any rank count", test_eval_identical_across_ranks},
    {"weights bit-identical for 1 and 2 threads", test_threads_bit_identical},
    {"gradient sum: shared memory and MPI, exact totals", test_gradient_sum},
    {"comm.overlap gives the weights of the blocking allreduce", test_overlap_matches_blocking},
    {"4 epochs == 2 + resume 2, and mid-epoch resume", test_resume_bit_identical},
    {"clipped AdamW: identical on every rank, resumable", test_clipped_adam_identical_and_resumable},
    {"sharded plan: each row once per epoch", test_shard_plan_covers_each_row_once},
    {"sharded training reaches the replicated accuracy band", test_sharded_training},
    {"validation split + standardisation: n-invariant", test_validation_and_normalize_n_invariant},
    {"normalize_targets: statistics and weights n-invariant, replicated and sharded",
     test_normalize_targets_n_invariant},
    {"early stopping stops at the right epoch, keeps best.h5", test_early_stopping_epoch},
    {"reproducible mode: bit-identical for any rank count", test_reproducible_mode},
    {"errors agreed across ranks", test_error_agreement},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"mpi", NULL, NULL, NULL, NULL, mpi_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    if (tu_mpi_begin(&argc, &argv, &g_rank, &g_size, g_dir, sizeof g_dir, "mpi"))
        return 1;
    snprintf(g_data, sizeof g_data, "%s/train103.h5", g_dir);
    snprintf(g_data_short, sizeof g_data_short, "%s/train101.h5", g_dir);
    snprintf(g_data_reg, sizeof g_data_reg, "%s/regression300.h5", g_dir);
    int bad = 0;
    if (g_rank == 0)
        bad = make_dataset(g_data, 103, 11, 4, 1) || make_dataset(g_data_short, 101, 11, 4, 2) ||
              make_regression(g_data_reg, 300, 8, 3);
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad) {
        MPI_Finalize();
        return 1;
    }

    const int code = tu_run_mpi(suites, g_rank, g_dir);
    dist_finalize();
    return code;
}
