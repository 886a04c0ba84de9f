/* test_losses, run by ctest at 1, 2 and 3 ranks: the surrogate-model losses and weights of
 * docs/architecture.md ("Weighted losses and dropout"), each against an independent
 * computation in double of the published formula (PyTorch's nn.MSELoss, nn.L1Loss and
 * nn.HuberLoss summed over the outputs with per-output weights, nn.CrossEntropyLoss(weight=)
 * whose mean divides by the sum of the weights), and dropout's guarantees.
 *
 * - The loss kernels: value and gradient of every loss, with per-output and per-sample
 *   weights, against the formulas written out in double.
 * - Training: a small network is trained for two epochs with plain SGD on a 13-row file
 *   with /weights, and every weight must match a double-precision reference that runs the
 *   same steps from the same initial weights: per-sample gradients of the formula,
 *   Σ ω·∇ℓ / Σ ω over each global batch, θ ← θ − η·g. Cases: mse with loss_weights, mae,
 *   huber, cross_entropy with balanced and listed class weights, mse with dropout (the
 *   reference draws the documented mask), and huber on the sharded placement (the
 *   reference takes each step's rows as the shard plan gives them). At 1, 2 and 3 ranks
 *   the same reference holds, so the trajectory is independent of the rank count.
 * - Dropout: the keep rate is 1 − p and the scaled activations average to the unscaled
 *   ones; the weights are bit-identical for 1 and 2 threads, for any rank count in
 *   reproducible mode, and across a mid-epoch stop and resume.
 *
 * Tolerance: float32 kernels against double over 6 steps of a 3-4-k network whose values
 * are O(1): 2e-5 relative (floor 1e-3 for weights near 0). A wrong weight (ω dropped, or
 * divided by the count instead of Σω, or a mask off by one sample) moves weights by more
 * than 1e-3. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <math.h>
#include <stdarg.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "core/partition.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "nn/kernels.h"
#include "nn/loss.h"
#include "nn/model.h"
#include "par/dist.h"
#include "run/train.h"
#include "run/trainer.h"
#include "testutil.h"

static int g_rank, g_size;
static char g_dir[512];
static char g_reg[600], g_cls[600];

enum { ROWS = 13, D = 3, H = 4, BATCH = 5, EPOCHS = 2 };
static const double LR = 0.1;
static const double TOL = 2e-5;

/* ---- data ----------------------------------------------------------------------------- */

/* 13 rows of 3 features; regression targets of 2 columns, or labels of 3 classes; and
 * /weights in [0, 2], one of them 0. */
static int make_data(const char *path, int labels)
{
    struct dataset *ds;
    struct dmlp_error e = {0};
    if (dataset_alloc(&ds, ROWS, D, labels ? 3 : 2, labels, &e))
        return -1;
    ds->weights = malloc(ROWS * sizeof(float));
    struct rng r;
    rng_seed(&r, 5, 17);
    for (size_t i = 0; i < ROWS; i++) {
        for (size_t j = 0; j < D; j++)
            ds->features[i * D + j] = (float)rng_normal(&r);
        const float *x = ds->features + i * D;
        if (labels) {
            /* a skewed class balance: 0 is common, 2 rare */
            ds->labels[i] = i % 6 == 5 ? 2 : i % 3 == 1 ? 1 : 0;
        } else {
            ds->targets[i * 2] = (float)(1.5 * x[0] - x[1] + 0.3 * rng_normal(&r));
            ds->targets[i * 2 + 1] = (float)(x[2] * x[0] + (i == 7 ? 6.0 : 0.0)); /* an outlier */
        }
        ds->weights[i] = i == 4 ? 0.0f : (float)(0.25 + 1.75 * rng_uniform(&r));
    }
    const int rc = dataset_write(ds, path, &e);
    if (rc)
        fprintf(stderr, "make_data: %s\n", e.msg);
    dataset_free(&ds);
    return rc;
}

/* ---- the loss kernels ------------------------------------------------------------------ */

/* h(u) and dh/du of PyTorch's losses, per output, in double. */
static double ref_term(enum dmlp_loss kind, double delta, double u, double *dh)
{
    if (kind == DMLP_LOSS_MSE) {
        *dh = 2 * u;
        return u * u;
    }
    if (kind == DMLP_LOSS_MAE) {
        *dh = u > 0 ? 1 : u < 0 ? -1 : 0;
        return fabs(u);
    }
    if (fabs(u) < delta) {
        *dh = u;
        return 0.5 * u * u;
    }
    *dh = delta * (u > 0 ? 1 : -1);
    return delta * (fabs(u) - 0.5 * delta);
}

static void test_kernels(void)
{
    enum { B = 6, K = 3 };
    float Y[B * K], T[B * K], G[B * K], rw[B], ow[K] = {1.0f, 2.5f, 0.0f};
    struct rng r;
    rng_seed(&r, 9, 1);
    for (int i = 0; i < B * K; i++) {
        Y[i] = (float)(2 * rng_normal(&r));
        T[i] = (float)rng_normal(&r);
    }
    Y[4] = T[4]; /* u = 0 exactly: the gradient of |u| there is 0, as torch.sign gives */
    for (int i = 0; i < B; i++)
        rw[i] = (float)rng_uniform(&r) * 2;
    const enum dmlp_loss kinds[] = {DMLP_LOSS_MSE, DMLP_LOSS_MAE, DMLP_LOSS_HUBER};
    for (int c = 0; c < 3; c++) {
        const struct loss_spec s = {kinds[c], 0.7, ow};
        const double got = loss_regression(G, Y, T, rw, B, K, &s);
        double want = 0;
        for (int i = 0; i < B; i++)
            for (int j = 0; j < K; j++) {
                double dh;
                const double l = ref_term(kinds[c], 0.7, (double)Y[i * K + j] - T[i * K + j], &dh);
                want += (double)rw[i] * (double)ow[j] * l;
                CU_ASSERT(fabs(G[i * K + j] - (double)rw[i] * ow[j] * dh) <=
                          1e-6 * (1 + fabs(dh)));
            }
        CU_ASSERT(tu_reldiff(got, want, 1e-12) < 1e-12);
        /* one row alone, unweighted */
        double row = 0, dh;
        for (int j = 0; j < K; j++)
            row += ow[j] * ref_term(kinds[c], 0.7, (double)Y[K + j] - T[K + j], &dh);
        CU_ASSERT(tu_reldiff(loss_row(Y + K, T + K, K, &s), row, 1e-12) < 1e-12);
    }
    /* unweighted mse: the model's fast path (the vec kernel) and the general kernel agree
     * to float rounding (the fast path subtracts in float) */
    float G2[B * K];
    const struct loss_spec plain = {DMLP_LOSS_MSE, 1.0, NULL};
    const double a1 = loss_regression(G, Y, T, NULL, B, K, &plain);
    const double a2 = kernel_mse(G2, Y, T, B, K);
    CU_ASSERT(tu_reldiff(a1, a2, 1e-12) < 1e-6);
    for (int i = 0; i < B * K; i++)
        CU_ASSERT(fabs(G[i] - G2[i]) <= 1e-6 * (1 + fabs(G2[i])));
    /* weighted cross-entropy: ω(P − onehot), Σ ω·(−log p_y) */
    int32_t lab[B] = {0, 2, 1, 1, 0, 2};
    float P[B * K];
    for (int i = 0; i < B; i++) {
        double z[K], m = 0;
        for (int j = 0; j < K; j++)
            z[j] = exp(rng_normal(&r)), m += z[j];
        for (int j = 0; j < K; j++)
            P[i * K + j] = (float)(z[j] / m);
    }
    const double xe = loss_xent_weighted(G, P, lab, rw, B, K);
    double xw = 0;
    for (int i = 0; i < B; i++) {
        xw += rw[i] * -log((double)P[i * K + lab[i]]);
        for (int j = 0; j < K; j++)
            CU_ASSERT(fabs(G[i * K + j] - rw[i] * (P[i * K + j] - (j == lab[i]))) <= 1e-6);
    }
    CU_ASSERT(tu_reldiff(xe, xw, 1e-12) < 1e-12);
}

/* ---- training against the double-precision reference ---------------------------------- */

struct tcase {
    const char *name;
    int labels;            /* classification (softmax, 3 classes) or regression (2 outputs) */
    const char *loss;      /* the YAML after "loss: " (with loss_delta/loss_weights lines) */
    enum dmlp_loss kind;
    double delta;
    double ow[2];          /* per-output weights (regression) */
    const char *cw_yaml;   /* data.class_weights, or NULL */
    double cw[3];          /* the class weights the reference uses */
    double dropout;
    int sharded;
};

/* The reference network: W1 [H×D], b1, W2 [K×H], b2, in double. */
struct ref {
    size_t k;
    double W1[H * D], b1[H], W2[3 * H], b2[3];
};

/* The config YAML printf-formatted, loaded as `name` (NULL, said, when it fails). */
static struct config *load_config(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct config *load_config(const char *name, const char *fmt, ...)
{
    char yaml[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(yaml, sizeof yaml, fmt, ap);
    va_end(ap);
    struct config *cfg = NULL;
    struct dmlp_error e = {0};
    if (config_load_string(&cfg, yaml, strlen(yaml), name, NULL, 0, &e))
        fprintf(stderr, "config: %s\n", e.msg);
    return cfg;
}

static struct config *case_config(const struct tcase *c)
{
    return load_config("case.yaml",
                       "model:\n  layers:\n    - {units: %d, activation: tanh, dropout: %g}\n"
                       "    - {units: %d, activation: %s}\n  init: xavier\n"
                       "loss: %s\n"
                       "optimizer: {name: sgd, lr: %g}\n"
                       "data: {train: %s, shuffle: false, placement: %s%s%s}\n"
                       "training: {epochs: %d, batch_size: %d, seed: 11}\n"
                       "checkpoint: {dir: %s/ck, every_epochs: 0}\n",
                       H, c->dropout, c->labels ? 3 : 2, c->labels ? "softmax" : "linear",
                       c->loss, LR,
                       c->labels ? g_cls : g_reg, c->sharded ? "sharded" : "replicated",
                       c->cw_yaml ? ", class_weights: " : "", c->cw_yaml ? c->cw_yaml : "", EPOCHS,
                       BATCH, g_dir);
}

static struct model *train(const struct dist *d, const struct config *cfg, const char *resume,
                           int save)
{
    struct train_options opt = {.resume = resume, .save_checkpoints = save};
    struct train_result res;
    struct dmlp_error e = {0};
    char *yaml = NULL;
    config_to_yaml(cfg, &yaml, &e);
    const int rc = train_run(d, cfg, yaml, &opt, &res, &e);
    free(yaml);
    if (rc) {
        fprintf(stderr, "rank %d: train failed: %s\n", g_rank, e.msg);
        return NULL;
    }
    return res.model;
}

/* The initial weights training starts from (seed 11, xavier), into the reference. */
static void ref_init(const struct config *cfg, struct ref *r)
{
    struct model *m = NULL;
    struct dmlp_error e = {0};
    model_create(&m, D, cfg->model.layers, 2, cfg->loss, &e);
    struct rng g;
    rng_seed(&g, cfg->training.seed, TRAIN_STREAM_INIT);
    model_init_params(m, cfg->model.init, &g);
    r->k = m->layers[1].out;
    for (size_t i = 0; i < H * D; i++)
        r->W1[i] = m->layers[0].W[i];
    for (size_t i = 0; i < H; i++)
        r->b1[i] = m->layers[0].b[i];
    for (size_t i = 0; i < r->k * H; i++)
        r->W2[i] = m->layers[1].W[i];
    for (size_t i = 0; i < r->k; i++)
        r->b2[i] = m->layers[1].b[i];
    model_free(&m);
}

/* One step of the reference over the rows row[0..n) of ds, row j at position pos[j] of the
 * step's global batch (dropout's key), at global step t: Σ ω ∇ℓ / Σ ω, then SGD. */
static void ref_step(struct ref *r, const struct tcase *c, const struct dataset *ds,
                     const size_t *row, const uint64_t *pos, size_t n, uint64_t t)
{
    const size_t K = r->k;
    double gW1[H * D] = {0}, gb1[H] = {0}, gW2[3 * H] = {0}, gb2[3] = {0}, wsum = 0;
    for (size_t j = 0; j < n; j++) {
        const size_t i = row[j];
        const float *x = ds->features + i * D;
        double w = ds->weights[i];
        if (c->labels && c->cw_yaml)
            w *= c->cw[ds->labels[i]];
        wsum += w;
        double h[H], dm[H], z[3], dy[3];
        for (size_t u = 0; u < H; u++) {
            double a = r->b1[u];
            for (size_t q = 0; q < D; q++)
                a += r->W1[u * D + q] * x[q];
            h[u] = tanh(a);
            dm[u] = c->dropout > 0 ? (model_dropout_keep(11, t, pos[j], 0, u, c->dropout)
                                          ? 1.0 / (1.0 - c->dropout) : 0.0)
                                   : 1.0;
        }
        double zmax = -INFINITY;
        for (size_t o = 0; o < K; o++) {
            z[o] = r->b2[o];
            for (size_t u = 0; u < H; u++)
                z[o] += r->W2[o * H + u] * h[u] * dm[u];
            zmax = fmax(zmax, z[o]);
        }
        if (c->labels) {
            double sum = 0;
            for (size_t o = 0; o < K; o++)
                sum += exp(z[o] - zmax);
            for (size_t o = 0; o < K; o++)
                dy[o] = w * (exp(z[o] - zmax) / sum - (o == (size_t)ds->labels[i]));
        } else {
            for (size_t o = 0; o < K; o++) {
                double dh;
                ref_term(c->kind, c->delta, z[o] - ds->targets[i * K + o], &dh);
                dy[o] = w * c->ow[o] * dh;
            }
        }
        for (size_t o = 0; o < K; o++) {
            gb2[o] += dy[o];
            for (size_t u = 0; u < H; u++)
                gW2[o * H + u] += dy[o] * h[u] * dm[u];
        }
        for (size_t u = 0; u < H; u++) {
            double back = 0;
            for (size_t o = 0; o < K; o++)
                back += r->W2[o * H + u] * dy[o];
            const double dz = back * dm[u] * (1 - h[u] * h[u]);
            gb1[u] += dz;
            for (size_t q = 0; q < D; q++)
                gW1[u * D + q] += dz * x[q];
        }
    }
    const double s = wsum > 0 ? LR / wsum : 0;
    for (size_t i = 0; i < H * D; i++)
        r->W1[i] -= s * gW1[i];
    for (size_t i = 0; i < H; i++)
        r->b1[i] -= s * gb1[i];
    for (size_t i = 0; i < K * H; i++)
        r->W2[i] -= s * gW2[i];
    for (size_t i = 0; i < K; i++)
        r->b2[i] -= s * gb2[i];
}

/* The steps training takes: replicated, rows [sB, sB + B) at positions 0..; sharded (no
 * shuffle), each rank's share of its shard (dmlp_shard_step), the ranks in order. */
static void ref_train(struct ref *r, const struct tcase *c, const struct dataset *ds)
{
    const uint64_t steps = (ROWS + BATCH - 1) / BATCH;
    uint64_t rows[8], row0[8];
    for (int q = 0; q < g_size; q++) {
        uint64_t len;
        dmlp_slice(ROWS, g_size, q, &row0[q], &len);
        rows[q] = len;
    }
    for (uint64_t e = 0, t = 0; e < EPOCHS; e++)
        for (uint64_t s = 0; s < steps; s++, t++) {
            size_t row[BATCH + 8], n = 0;
            uint64_t pos[BATCH + 8];
            if (!c->sharded) {
                for (uint64_t i = s * BATCH; i < ROWS && i < (s + 1) * BATCH; i++, n++) {
                    row[n] = (size_t)i;
                    pos[n] = n;
                }
            } else {
                for (int q = 0; q < g_size; q++) {
                    uint64_t off, len, count;
                    dmlp_shard_step(rows, g_size, q, BATCH, s, steps, 0, &off, &len, &count);
                    for (uint64_t j = 0; j < len; j++, n++) {
                        row[n] = (size_t)(row0[q] + off + j);
                        pos[n] = n;
                    }
                }
            }
            ref_step(r, c, ds, row, pos, n, t);
        }
}

static double max_rel(const float *got, const double *want, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(got[i] - want[i]) / fmax(fabs(want[i]), 1e-3));
    return worst;
}

static void run_case(const struct tcase *c)
{
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct config *cfg = case_config(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    struct dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, c->labels ? g_cls : g_reg, &e), DMLP_OK);
    struct ref r;
    ref_init(cfg, &r);
    struct ref start = r;
    ref_train(&r, c, ds);
    struct model *m = train(world, cfg, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL(m);
    if (m) {
        const struct model_layer *L0 = &m->layers[0], *L1 = &m->layers[1];
        const double worst = fmax(fmax(max_rel(L0->W, r.W1, H * D), max_rel(L0->b, r.b1, H)),
                                  fmax(max_rel(L1->W, r.W2, r.k * H), max_rel(L1->b, r.b2, r.k)));
        /* and training moved the weights well past the tolerance */
        const double moved = max_rel(L1->W, start.W2, r.k * H);
        if (g_rank == 0)
            printf("\n    %-34s %d rank%s: max relative difference from the reference %.2g "
                   "(weights moved %.2g)", c->name, g_size, g_size > 1 ? "s" : "", worst,
                   moved);
        CU_ASSERT(worst <= TOL);
        CU_ASSERT(moved > 1e-2);
    }
    model_free(&m);
    dataset_free(&ds);
    config_free(&cfg);
    dist_free(&world);
}

static void test_mse_weighted(void)
{
    const struct tcase c = {"mse, loss_weights, /weights", 0, "mse\nloss_weights: [1, 3]",
                            DMLP_LOSS_MSE, 1, {1, 3}, NULL, {0}, 0, 0};
    run_case(&c);
}

static void test_mae(void)
{
    const struct tcase c = {"mae, /weights", 0, "mae", DMLP_LOSS_MAE, 1, {1, 1}, NULL, {0},
                            0, 0};
    run_case(&c);
}

static void test_huber(void)
{
    const struct tcase c = {"huber δ 0.3, loss_weights", 0,
                            "huber\nloss_delta: 0.3\nloss_weights: [0.5, 2]", DMLP_LOSS_HUBER,
                            0.3, {0.5, 2}, NULL, {0}, 0, 0};
    run_case(&c);
}

static void test_class_weights_balanced(void)
{
    /* labels of make_data: i % 6 == 5 → 2, else i % 3 == 1 → 1, else 0 */
    double count[3] = {0};
    for (int i = 0; i < ROWS; i++)
        count[i % 6 == 5 ? 2 : i % 3 == 1 ? 1 : 0]++;
    struct tcase c = {"cross_entropy, balanced, /weights", 1, "cross_entropy",
                      DMLP_LOSS_CROSS_ENTROPY, 1, {1, 1}, "balanced", {0}, 0, 0};
    for (int k = 0; k < 3; k++) /* scikit-learn: n_samples / (n_classes · bincount) */
        c.cw[k] = ROWS / (3.0 * count[k]);
    run_case(&c);
}

static void test_class_weights_list(void)
{
    const struct tcase c = {"cross_entropy, class_weights list", 1, "cross_entropy",
                            DMLP_LOSS_CROSS_ENTROPY, 1, {1, 1}, "[1, 2, 0.5]", {1, 2, 0.5},
                            0, 0};
    run_case(&c);
}

static void test_dropout_reference(void)
{
    const struct tcase c = {"mse, dropout 0.3", 0, "mse", DMLP_LOSS_MSE, 1, {1, 1}, NULL,
                            {0}, 0.3, 0};
    run_case(&c);
}

static void test_sharded_huber(void)
{
    const struct tcase c = {"huber, sharded placement", 0, "huber", DMLP_LOSS_HUBER, 1,
                            {1, 1}, NULL, {0}, 0, 1};
    run_case(&c);
}

/* ---- dropout's guarantees ------------------------------------------------------------- */

static void test_dropout_mask_statistics(void)
{
    const double p = 0.3;
    enum { SAMPLES = 20000, UNITS = 50 };
    double kept = 0, same_next_step = 0, same_next_layer = 0, worst_mean = 0;
    for (size_t u = 0; u < UNITS; u++) {
        double scaled = 0;
        for (uint64_t i = 0; i < SAMPLES; i++) {
            const int k = model_dropout_keep(3, 8, i, 1, u, p);
            kept += k;
            scaled += k ? 1.0 / (1.0 - p) : 0.0;
            same_next_step += k == model_dropout_keep(3, 9, i, 1, u, p);
            same_next_layer += k == model_dropout_keep(3, 8, i, 2, u, p);
        }
        /* E[mask / (1 − p)] = 1: scaled activations average to the unscaled ones */
        worst_mean = fmax(worst_mean, fabs(scaled / SAMPLES - 1.0));
    }
    const double n = (double)SAMPLES * UNITS;
    CU_ASSERT(fabs(kept / n - (1 - p)) < 0.003);        /* 6σ of the keep rate */
    CU_ASSERT(worst_mean < 0.03);                       /* 6σ of one unit's mean */
    /* independent draws for another step or layer agree p² + (1 − p)² of the time */
    CU_ASSERT(fabs(same_next_step / n - 0.58) < 0.004);
    CU_ASSERT(fabs(same_next_layer / n - 0.58) < 0.004);
}

static void rmtree_rank0(const char *path)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0)
        tu_rmtree(path);
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A longer run with dropout on two hidden layers and momentum, regression. */
static struct config *dropout_config(const char *extra)
{
    return load_config("dropout.yaml",
                       "model:\n  layers:\n    - {units: 16, activation: relu, dropout: 0.4}\n"
                       "    - {units: 8, activation: tanh, dropout: 0.2}\n"
                       "    - {units: 2, activation: linear}\n"
                       "loss: huber\noptimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
                       "data: {train: %s}\n"
                       "training: {epochs: 4, batch_size: 4, seed: 3%s}\n"
                       "checkpoint: {dir: %s/dck, every_epochs: 1}\n",
                       g_reg, extra, g_dir);
}

/* The bit-for-bit guarantees of a run: cfg trains to the same bits at 1 and 2 threads;
 * repro (cfg in reproducible mode) to the same bits on all ranks and on one; and part (cfg
 * stopped early, saving into ckdir) resumed with cfg ends where cfg does. Returns cfg's
 * weights (1 thread) and the stopped run's, for the caller's own checks (NULL on failure). */
static void check_bit_identity(const struct config *cfg, const struct config *repro,
                               const struct config *part, const char *ckdir,
                               struct model **whole, struct model **stopped)
{
    struct dist *world = NULL, *self = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    dist_create_self(&self, &e);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    struct model *one = train(world, cfg, NULL, 0);
    omp_set_num_threads(2);
    struct model *two = train(world, cfg, NULL, 0);
    omp_set_num_threads(threads);
    CU_ASSERT(tu_same_params(one, two));
    struct model *rw = train(world, repro, NULL, 0), *rs = train(self, repro, NULL, 0);
    CU_ASSERT(tu_same_params(rw, rs));
    rmtree_rank0(ckdir);
    struct model *p1 = train(world, part, NULL, 1);
    struct model *p2 = p1 ? train(world, cfg, "auto", 1) : NULL;
    CU_ASSERT(p1 != NULL);
    CU_ASSERT(tu_same_params(p2, one));
    *whole = one;
    *stopped = p1;
    model_free(&two);
    model_free(&rw);
    model_free(&rs);
    model_free(&p2);
    dist_free(&world);
    dist_free(&self);
}

/* Dropout: the mask depends on none of the thread count, the rank count (reproducible
 * mode) or a stop after step 6 (mid-epoch 2 of 4-row batches over 13 rows). */
static void test_dropout_threads_ranks_resume(void)
{
    struct config *cfg = dropout_config(""), *repro = dropout_config(", reproducible: true");
    struct config *part = dropout_config(", max_steps: 6"), *nodrop = dropout_config("");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg && repro && part && nodrop);
    struct model *one, *p1;
    check_bit_identity(cfg, repro, part, tu_fmt("%s/dck", g_dir), &one, &p1);
    /* and dropout changed the trajectory (the run without it differs) */
    nodrop->model.layers[0].dropout = nodrop->model.layers[1].dropout = 0;
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct model *plain = train(world, nodrop, NULL, 0);
    if (plain && one)
        CU_ASSERT(tu_max_rel_diff(plain->params, one->params, one->n_params) > 1e-3);
    model_free(&plain);
    model_free(&one);
    model_free(&p1);
    config_free(&nodrop);
    config_free(&cfg);
    config_free(&repro);
    config_free(&part);
    dist_free(&world);
}

/* ---- reduce on plateau, end to end ----------------------------------------------------- */

static struct config *plateau_config(const char *extra)
{
    return load_config("plateau.yaml",
                       "model:\n  layers:\n    - {units: 8, activation: tanh}\n"
                       "    - {units: 2, activation: linear}\n"
                       "loss: mse\noptimizer:\n  name: sgd\n  lr: 0.05\n  momentum: 0.5\n"
                       "  schedule: {name: plateau, metric: train_loss, patience: 0, "
                       "threshold: 0.9, "
                       "factor: 0.5}\n"
                       "data: {train: %s}\n"
                       "training: {epochs: 4, batch_size: 4, seed: 5%s}\n"
                       "checkpoint: {dir: %s/pck, every_epochs: 1}\n",
                       g_reg, extra, g_dir);
}

/* A loss that must fall by 90% an epoch never does after the first: the rate halves after
 * every later epoch (0.05, 0.05, 0.025, 0.0125), and a run stopped mid-epoch 3, after the
 * first cut, resumes to the same weights bit for bit (the scale, best and count are in the
 * checkpoint). */
static void test_plateau_cuts_and_resumes(void)
{
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct config *cfg = plateau_config(""), *part = plateau_config(", max_steps: 9");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg && part);
    struct train_options opt = {.save_checkpoints = 0};
    struct train_result res;
    char *yaml = NULL;
    config_to_yaml(cfg, &yaml, &e);
    CU_ASSERT_EQUAL_FATAL(train_run(world, cfg, yaml, &opt, &res, &e), DMLP_OK);
    free(yaml);
    CU_ASSERT(fabs(res.last_epoch.lr - 0.0125) < 1e-12);
    struct model *whole = res.model;
    rmtree_rank0(tu_fmt("%s/pck", g_dir));
    struct model *p1 = train(world, part, NULL, 1);
    struct model *p2 = p1 ? train(world, cfg, "auto", 1) : NULL;
    CU_ASSERT(p1 != NULL);
    CU_ASSERT(tu_same_params(p2, whole));
    model_free(&whole);
    model_free(&p1);
    model_free(&p2);
    config_free(&cfg);
    config_free(&part);
    dist_free(&world);
}

/* ---- L-BFGS ---------------------------------------------------------------------------- */

static struct config *lbfgs_config(const char *layers, const char *opt, const char *extra)
{
    return load_config("lbfgs.yaml",
                       "model:\n  layers:\n%s"
                       "loss: mse\noptimizer: {name: lbfgs, lr: 1%s}\n"
                       "data: {train: %s}\n"
                       "training: {epochs: 3, batch_size: 4, seed: 2%s}\n"
                       "checkpoint: {dir: %s/lck, every_epochs: 1}\n",
                       layers, opt, g_reg, extra, g_dir);
}

/* Solves the n×n system A x = b (n ≤ 8) by Gaussian elimination with partial pivoting. */
static void solve(double *A, double *b, int n)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c]))
                p = r;
        for (int k = 0; k < n; k++) {
            const double tmp = A[c * n + k];
            A[c * n + k] = A[p * n + k];
            A[p * n + k] = tmp;
        }
        const double tb = b[c];
        b[c] = b[p];
        b[p] = tb;
        for (int r = c + 1; r < n; r++) {
            const double f = A[r * n + c] / A[c * n + c];
            for (int k = c; k < n; k++)
                A[r * n + k] -= f * A[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        for (int k = c + 1; k < n; k++)
            b[c] -= A[c * n + k] * b[k];
        b[c] /= A[c * n + c];
    }
}

/* A linear layer under mse is a weighted least-squares problem: L-BFGS over the whole
 * training set must land on the solution of its normal equations, [X 1]ᵀΩ[X 1]·β =
 * [X 1]ᵀΩ·t per output (computed here in double), at any rank count. */
static void test_lbfgs_least_squares(void)
{
    struct dist *world = NULL;
    struct dmlp_error e = {0};
    dist_create_world(&world, &e);
    struct config *cfg = lbfgs_config("    - {units: 2, activation: linear}\n",
                                      ", max_iter: 50, history: 10", "");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    struct dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(dataset_read(&ds, g_reg, &e), DMLP_OK);
    struct model *m = train(world, cfg, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    double worst = 0.0;
    for (size_t k = 0; k < 2; k++) {
        double A[(D + 1) * (D + 1)] = {0}, b[D + 1] = {0};
        for (size_t i = 0; i < ROWS; i++) {
            double z[D + 1];
            for (size_t q = 0; q < D; q++)
                z[q] = ds->features[i * D + q];
            z[D] = 1.0;
            for (size_t r = 0; r <= D; r++) {
                b[r] += ds->weights[i] * z[r] * ds->targets[i * 2 + k];
                for (size_t c = 0; c <= D; c++)
                    A[r * (D + 1) + c] += ds->weights[i] * z[r] * z[c];
            }
        }
        solve(A, b, D + 1);
        for (size_t q = 0; q < D; q++)
            worst = fmax(worst, fabs(m->layers[0].W[k * D + q] - b[q]) / fmax(fabs(b[q]), 1.0));
        worst = fmax(worst, fabs(m->layers[0].b[k] - b[D]) / fmax(fabs(b[D]), 1.0));
    }
    if (g_rank == 0)
        printf("\n    lbfgs on a linear layer, %d rank%s: max difference from the weighted "
               "least-squares solution %.2g", g_size, g_size > 1 ? "s" : "", worst);
    CU_ASSERT(worst < 1e-4);
    model_free(&m);
    dataset_free(&ds);
    config_free(&cfg);
    dist_free(&world);
}

/* A tanh network: reproducible mode gives the same bits on any rank count (the gradient
 * and the loss are exact sums, so every line-search decision is the same), the history
 * survives a checkpoint (3 epochs == 1 + resume 2, bit for bit), and 1 and 2 threads
 * agree bit for bit. */
static void test_lbfgs_exact_and_resumable(void)
{
    const char *net = "    - {units: 8, activation: tanh}\n    - {units: 2, activation: linear}\n";
    struct config *repro = lbfgs_config(net, ", max_iter: 6, history: 4", ", reproducible: true");
    struct config *cfg = lbfgs_config(net, ", max_iter: 6, history: 4", "");
    struct config *part = lbfgs_config(net, ", max_iter: 6, history: 4", ", max_steps: 1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(repro && cfg && part);
    struct model *one, *p1;
    check_bit_identity(cfg, repro, part, tu_fmt("%s/lck", g_dir), &one, &p1);
    /* and it learned: 2 more epochs moved the weights well past the first one's */
    if (one && p1)
        CU_ASSERT(tu_max_rel_diff(p1->params, one->params, one->n_params) > 1e-3);
    model_free(&one);
    model_free(&p1);
    config_free(&repro);
    config_free(&cfg);
    config_free(&part);
}

static CU_TestInfo kernel_tests[] = {
    {"loss kernels against their formulas", test_kernels},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo train_tests[] = {
    {"mse with output and sample weights", test_mse_weighted},
    {"mae", test_mae},
    {"huber", test_huber},
    {"cross_entropy, balanced class weights", test_class_weights_balanced},
    {"cross_entropy, listed class weights", test_class_weights_list},
    {"dropout, against the documented mask", test_dropout_reference},
    {"huber, sharded placement", test_sharded_huber},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo dropout_tests[] = {
    {"mask: keep rate and expectation", test_dropout_mask_statistics},
    {"1 and 2 threads, any rank count, resume: bit-identical", test_dropout_threads_ranks_resume},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo lbfgs_tests[] = {
    {"a linear layer lands on weighted least squares", test_lbfgs_least_squares},
    {"exact for any rank count, threads, resume", test_lbfgs_exact_and_resumable},
    CU_TEST_INFO_NULL,
};
static CU_TestInfo plateau_tests[] = {
    {"cuts the rate, resumes bit-identically", test_plateau_cuts_and_resumes},
    CU_TEST_INFO_NULL,
};
static CU_SuiteInfo suites[] = {
    {"losses: kernels", NULL, NULL, NULL, NULL, kernel_tests},
    {"losses: training against a double reference", NULL, NULL, NULL, NULL, train_tests},
    {"losses: dropout", NULL, NULL, NULL, NULL, dropout_tests},
    {"losses: reduce on plateau", NULL, NULL, NULL, NULL, plateau_tests},
    {"losses: lbfgs", NULL, NULL, NULL, NULL, lbfgs_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    if (tu_mpi_begin(&argc, &argv, &g_rank, &g_size, g_dir, sizeof g_dir, "losses"))
        return 1;
    snprintf(g_reg, sizeof g_reg, "%s/reg13.h5", g_dir);
    snprintf(g_cls, sizeof g_cls, "%s/cls13.h5", g_dir);
    int bad = 0;
    if (g_rank == 0)
        bad = make_data(g_reg, 0) || make_data(g_cls, 1);
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad) {
        MPI_Finalize();
        return 1;
    }
    const int code = tu_run_mpi(suites, g_rank, g_dir);
    dist_finalize();
    return code;
}
