#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "kernels.h"
#include "metrics.h"
#include "optim.h"
#include "rng.h"
#include "schedule.h"
#include "rundir.h"
#include "runlog.h"
#include "stop.h"
#include "vec.h"
#include <unistd.h>

/* Rows of workspace reserved beyond the batch slice: evaluation forwards in chunks. */
enum { EVAL_CHUNK = 512 };

/* The rng streams: 0 for the weight initialisation, 1 + e for epoch e's permutation. */
enum { STREAM_INIT = 0, STREAM_EPOCH = 1 };

/* Why the epoch loop ends early: max_steps or early stopping (1), or a signal. */
enum { STOP_SIGNAL = 2 };

/* training.reproducible: samples per gradient chunk, fixed whatever the rank count. */
enum { REPRO_CHUNK = 32 };

int train_evaluate(const struct dist *d, struct model *m, const struct dataset *ds,
                   struct metrics_report *res, struct dmlp_error *err)
{
    struct metrics *mt = NULL;
    int rc = metrics_evaluate(d, m, ds, &mt, err);
    if (rc)
        return rc;
    metrics_finish(mt, res);
    metrics_free(&mt);
    return DMLP_OK;
}

/* Everything a run owns, freed in one place. */
struct run {
    struct dist *self;      /* this rank alone: evaluating a shard before reducing */
    struct rundir *dir;     /* rank 0, when saving: checkpoint.dir checked and locked */
    int sharded;
    struct dataset *train, *val, *test;
    struct model *model;
    struct optim *optim;
    float *xb, *tb;         /* the rank's batch slice: features and targets */
    int32_t *lb;            /* labels */
    uint64_t *perm;         /* the epoch's visiting order (of the local rows when sharded) */
    uint64_t *rows;         /* sharded: training rows held by each rank */
    uint64_t n_train;       /* training rows in all (global) */
    /* training.reproducible: the fixed-point accumulator (P + 2 + layers slots) and the
     * binary point of the current step, agreed by construction on every rank */
    uint64_t *acc;
    int fx_shift;
    struct runlog *mlog;    /* rank 0: metrics.jsonl */
    char resumed_from[4096]; /* the checkpoint this run continues, or "" */
    /* comm.overlap: the buckets in flight, the start of the part of the gradient not yet
     * sent (it is sent from the top down, as backward produces it) and the bucket size */
    struct dist_pending *pending;
    size_t unsent, bucket;
    struct dist_sum *sum;   /* the blocking gradient sum (shared memory within a node) */
};

static void run_free(struct run *r)
{
    dist_free(&r->self);
    dataset_free(&r->train);
    dataset_free(&r->val);
    dataset_free(&r->test);
    model_free(&r->model);
    optim_free(&r->optim);
    dmlp_free_aligned(r->xb);
    dmlp_free_aligned(r->tb);
    dmlp_free_aligned(r->lb);
    free(r->perm);
    free(r->rows);
    free(r->acc);
    dist_pending_free(&r->pending);
    dist_sum_free(&r->sum);
    runlog_close(&r->mlog);
    rundir_close(&r->dir);
}

/* comm.overlap: model_backward_chunked says the gradient from `from` up is final. Once a
 * bucket's worth is, its sum starts; every call also lets MPI progress the ones in flight.
 * The sequence of sizes depends only on the network and bucket_kb, so every rank starts
 * the same buckets in the same order, as MPI requires. */
static void grad_ready(void *ctx, size_t from)
{
    struct run *r = ctx;
    if (r->unsent - from >= r->bucket) {
        dist_pending_start(r->pending, r->model->grads + from, r->unsent - from);
        r->unsent = from;
    }
    dist_pending_test(r->pending);
}

/* The most buckets one step can start: one per call of grad_ready (one per layer's bias,
 * one per chunk of its weights). */
static size_t max_buckets(const struct model *m, size_t chunk_floats)
{
    size_t calls = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t rows = chunk_floats / m->layers[l].in / KERNEL_ROW_TILE * KERNEL_ROW_TILE;
        rows = rows ? rows : KERNEL_ROW_TILE;
        calls += 1 + (m->layers[l].out + rows - 1) / rows;
    }
    return calls;
}

/* Rank 0 prints where every rank runs: hosts, threads, the cores each rank may use, and a
 * warning when a host runs more threads than it has cores (the usual cause of a job that
 * is many times slower than it should be). Collective. */
struct placement {
    char host[64];
    char cpus[112];
    int32_t threads, bound, cores;
};

static void report_placement(const struct dist *d, FILE *log, int verbose)
{
    struct placement me = {.threads = omp_get_max_threads(), .cores = dmlp_cores_online()};
    dist_hostname(me.host, sizeof me.host);
    me.bound = dmlp_affinity(me.cpus, sizeof me.cpus);
    const int n = dist_size(d), rank = dist_rank(d);
    struct placement *all = rank == 0 ? calloc((size_t)n, sizeof *all) : NULL;
    if (rank == 0 && !all) {
        fprintf(log ? log : stderr, "warning: no memory for the placement report\n");
    }
    /* Every rank takes part in the gather; rank 0 without memory just skips the report. */
    struct placement scratch;
    dist_gather_bytes(d, &me, sizeof me, rank == 0 ? (all ? (void *)all : (void *)&scratch)
                                                   : NULL, 0);
    if (rank != 0 || !all || !log) {
        free(all);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!all[i].host[0])
            continue; /* already reported with its host */
        int ranks = 0, threads = 0;
        for (int j = i; j < n; j++)
            if (!strcmp(all[j].host, all[i].host)) {
                ranks++;
                threads += all[j].threads;
            }
        fprintf(log, "host %s: %d rank%s, %d thread%s in all, %d cores online\n", all[i].host,
                ranks, ranks > 1 ? "s" : "", threads, threads > 1 ? "s" : "", all[i].cores);
        const char *host = all[i].host;
        int shown = 0;
        for (int j = i; j < n; j++) {
            if (j != i && strcmp(all[j].host, host))
                continue;
            if (verbose && shown++ < 16)
                fprintf(log, "  rank %d: %d thread%s, may run on cores %s\n", j,
                        all[j].threads, all[j].threads > 1 ? "s" : "", all[j].cpus);
            if (all[j].threads > all[j].bound && all[j].bound > 0)
                fprintf(log, "warning: rank %d runs %d threads on %d core%s (%s): bind it to "
                        "more cores (mpirun --map-by slot:PE=%d, or --bind-to none)\n", j,
                        all[j].threads, all[j].bound, all[j].bound > 1 ? "s" : "",
                        all[j].cpus, all[j].threads);
        }
        if (verbose && shown > 16)
            fprintf(log, "  (%d more ranks)\n", shown - 16);
        if (threads > all[i].cores)
            fprintf(log, "warning: host %s runs %d ranks x threads = %d threads on %d cores: "
                    "oversubscribed, expect a slow run (lower OMP_NUM_THREADS or the ranks "
                    "per host)\n", host, ranks, threads, all[i].cores);
        char mark[64];
        snprintf(mark, sizeof mark, "%s", host);
        for (int j = i; j < n; j++)
            if (!strcmp(all[j].host, mark))
                all[j].host[0] = '\0';
    }
    fflush(log);
    free(all);
}

static void describe_network(char *out, size_t cap, const struct model *m)
{
    size_t used = (size_t)snprintf(out, cap, "%zu", model_input_dim(m));
    for (size_t l = 0; l < m->n_layers && used < cap; l++)
        used += (size_t)snprintf(out + used, cap - used, "-%zu", m->layers[l].out);
}

static size_t count_params(const struct model *m)
{
    size_t n = 0;
    for (size_t l = 0; l < m->n_layers; l++)
        n += m->layers[l].out * m->layers[l].in + m->layers[l].out;
    return n;
}

/* Evaluates a set held whole by every rank (split across ranks for the work) or, sharded,
 * a set of which each rank holds a part (each evaluates its part, the sums are reduced).
 * Collective; the same numbers on every rank. */
static int evaluate(const struct dist *d, const struct run *r, const struct dataset *ds,
                    struct metrics_report *res, struct dmlp_error *err)
{
    if (!r->sharded)
        return train_evaluate(d, r->model, ds, res, err);
    struct metrics *mt = NULL;
    struct dmlp_error e = {0};
    metrics_evaluate(r->self, r->model, ds, &mt, &e);
    if (dist_agree(d, &e)) {
        metrics_free(&mt);
        *err = e;
        return e.code;
    }
    metrics_reduce(d, mt);
    metrics_finish(mt, res);
    metrics_free(&mt);
    return DMLP_OK;
}

/* Reads the training and test sets in the configured placement and holds out the
 * validation split. Collective, agreed. */
static int load_data(const struct dist *d, const struct config *cfg, struct run *r,
                     struct dmlp_error *e)
{
    size_t row0 = 0, global_n = 0;
    if (r->sharded) {
        struct dataset_shard sh;
        if (dataset_read_shard(&r->train, cfg->data.train, d, &sh, e))
            return e->code; /* already agreed */
        row0 = sh.row0;
        global_n = sh.global_rows;
        if (cfg->data.test && dataset_read_shard(&r->test, cfg->data.test, d, NULL, e))
            return e->code;
    } else {
        if (dataset_read(&r->train, cfg->data.train, e) == DMLP_OK && cfg->data.test)
            dataset_read(&r->test, cfg->data.test, e);
        if (r->train)
            global_n = r->train->n;
    }
    if (!e->code && cfg->data.validation_fraction > 0)
        dataset_split(r->train, row0, global_n, cfg->data.validation_fraction,
                      cfg->training.seed, &r->val, e);
    if (dist_agree(d, e))
        return e->code;

    /* Every rank needs every rank's row count to cut each step identically. */
    const int n = dist_size(d);
    if (!(r->rows = calloc((size_t)n, sizeof *r->rows)))
        dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory");
    if (dist_agree(d, e))
        return e->code;
    if (r->sharded) {
        r->rows[dist_rank(d)] = r->train->n;
        dist_allreduce_sum_u64(d, r->rows, (size_t)n);
    }
    r->n_train = 0;
    for (int i = 0; i < n; i++)
        r->n_train += r->sharded ? r->rows[i] : 0;
    if (!r->sharded)
        r->n_train = r->train->n;
    if (r->n_train == 0)
        dmlp_fail(e, DMLP_ERR_INPUT, "%s: no training rows left after holding out "
                  "data.validation_fraction %g", cfg->data.train,
                  cfg->data.validation_fraction);
    if (dist_agree(d, e))
        return e->code;
    /* A split that holds out no row would report val_loss nan every epoch, and early
     * stopping on it would never fire. */
    if (cfg->data.validation_fraction > 0) {
        uint64_t held = r->val ? r->val->n : 0;
        if (r->sharded)
            dist_allreduce_sum_u64(d, &held, 1);
        if (held == 0)
            dmlp_fail(e, DMLP_ERR_INPUT, "%s: data.validation_fraction %g of its %zu rows "
                      "holds out no row; raise it, or set 0 for no validation",
                      cfg->data.train, cfg->data.validation_fraction, (size_t)global_n);
    }
    return dist_agree(d, e);
}

/* data.normalize: standard. The statistics come from the checkpoint when resuming (so the
 * network keeps the inputs it was trained on), else from the training rows (summed across
 * ranks when sharded); then every set held is standardised in place. */
static int normalize(const struct dist *d, const struct config *cfg, struct run *r,
                     int resumed, struct dmlp_error *e)
{
    struct model *m = r->model;
    if (cfg->data.normalize == DMLP_NORMALIZE_NONE) {
        free(m->norm_mean); /* the config governs: a loaded standardisation is dropped */
        free(m->norm_std);
        m->norm_mean = m->norm_std = NULL;
        return DMLP_OK;
    }
    const size_t D = model_input_dim(m);
    if (!resumed || !m->norm_mean) {
        double *sums = calloc(2 * D, sizeof *sums);
        float *mean = malloc(D * sizeof *mean), *sd = malloc(D * sizeof *sd);
        if (!sums || !mean || !sd)
            dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory for %zu feature statistics", D);
        if (!dist_agree(d, e)) {
            dataset_feature_sums(r->train, sums, sums + D);
            if (r->sharded)
                dist_allreduce_sum_double(d, sums, 2 * D);
            dataset_stats_finish(sums, sums + D, (size_t)r->n_train, D, mean, sd);
            model_set_normalization(m, mean, sd, e);
        }
        free(sums);
        free(mean);
        free(sd);
        if (dist_agree(d, e))
            return e->code;
    }
    dataset_standardize(r->train, m->norm_mean, m->norm_std);
    if (r->val)
        dataset_standardize(r->val, m->norm_mean, m->norm_std);
    if (r->test)
        dataset_standardize(r->test, m->norm_mean, m->norm_std);
    return DMLP_OK;
}

/* Sets up data, model, optimizer and starting point; collective, agreed. */
/* --resume auto: the newest checkpoint of checkpoint.dir that loads, latest.h5's target
 * first, then step-N.h5 by descending N. One that does not (latest.h5 dangling or looping,
 * a damaged file, a NaN in it) is skipped with a warning that names it and why, and the
 * one taken is named. When there are checkpoints but none loads, the run is refused
 * rather than started afresh beside them. Rank 0 lists the directory and broadcasts each
 * candidate, so every rank tries the same files in the same number of agreements whatever
 * its view of the file system; warn is rank 0's. Returns 1 with path set when one was
 * loaded into r and st; 0 with path "" when there is none, or with e set. */
static int resume_auto(const struct dist *d, const struct config *cfg, struct run *r,
                       struct checkpoint_state *st, FILE *warn, char *path, size_t cap,
                       struct dmlp_error *e)
{
    char **list = NULL, broken[PATH_MAX + 128] = "";
    size_t n = 0;
    if (dist_rank(d) == 0)
        checkpoint_candidates(cfg->checkpoint.dir, &list, &n, broken, sizeof broken);
    if (dist_rank(d) == 0 && broken[0] && warn)
        fprintf(warn, "warning: resume auto: %s; looking for the newest checkpoint that "
                "loads\n", broken);
    uint64_t count = n;
    dist_bcast(d, &count, sizeof count, 0);
    int loaded = 0;
    for (uint64_t i = 0; i < count && !loaded; i++) {
        char candidate[PATH_MAX] = "";
        if (dist_rank(d) == 0)
            snprintf(candidate, sizeof candidate, "%s", list[i]);
        dist_bcast(d, candidate, sizeof candidate, 0);
        struct dmlp_error le = {0};
        const struct checkpoint_state fresh = *st;
        checkpoint_load(candidate, r->model, r->optim, st, &le);
        if (dist_agree(d, &le) == DMLP_OK) {
            snprintf(path, cap, "%s", candidate);
            loaded = 1;
            if ((i > 0 || broken[0]) && warn)
                fprintf(warn, "resume auto: taking %s, the newest checkpoint that loads\n",
                        candidate);
        } else {
            *st = fresh;
            if (warn)
                fprintf(warn, "warning: resume auto: skipping %s: %s\n", candidate, le.msg);
        }
    }
    if (count > 0 && !loaded)
        dmlp_fail(e, DMLP_ERR_INPUT, "resume auto: none of the %llu checkpoints in %s loads "
                  "(each named above); move them away to start afresh, or name one with "
                  "--resume PATH", (unsigned long long)count, cfg->checkpoint.dir);
    checkpoint_candidates_free(&list, n);
    return loaded;
}

static int setup(const struct dist *d, const struct config *cfg, const struct train_options *opt,
                 struct run *r, struct checkpoint_state *st, struct dmlp_error *err)
{
    struct dmlp_error e = {0};
    FILE *log = dist_rank(d) == 0 && opt->verbosity >= 1 ? opt->log : NULL;
    r->sharded = cfg->data.placement == DMLP_PLACEMENT_SHARDED;
    dist_create_self(&r->self, &e);
    if (dist_agree(d, &e) || load_data(d, cfg, r, &e))
        goto fail;

    if (model_create(&r->model, r->train->d, cfg->model.layers, cfg->model.n_layers, cfg->loss,
                     &e) == DMLP_OK &&
        dataset_check_network(r->train, r->model, cfg->data.train, &e) == DMLP_OK &&
        (!r->test || dataset_check_network(r->test, r->model, cfg->data.test, &e) == DMLP_OK) &&
        optim_create(&r->optim, &cfg->optimizer, r->model->n_params, &e) == DMLP_OK) {
        struct rng init;
        rng_seed(&init, cfg->training.seed, STREAM_INIT);
        model_init_params(r->model, cfg->model.init, &init);
    }
    if (dist_agree(d, &e))
        goto fail;

    /* checkpoint.dir, checked and locked once the config and the data are known good (a
     * run refused for those leaves no directory behind), before anything is read from it:
     * another training using it is refused here, not found out at a save hours later. */
    if (dist_rank(d) == 0 && opt->save_checkpoints)
        rundir_open(&r->dir, cfg->checkpoint.dir, dist_rank(d) == 0 ? opt->log : NULL, &e);
    if (dist_agree(d, &e))
        goto fail;

    memset(st, 0, sizeof *st);
    st->seed = cfg->training.seed;
    st->best_metric = NAN;
    char path[PATH_MAX] = "";
    int loaded = 0;
    if (opt->resume && !strcmp(opt->resume, "auto")) {
        FILE *warn = dist_rank(d) == 0 ? opt->log : NULL; /* even with --quiet */
        loaded = resume_auto(d, cfg, r, st, warn, path, sizeof path, &e);
        if (!path[0] && !e.code && log)
            fprintf(log, "resume auto: no checkpoint in %s, starting fresh\n",
                    cfg->checkpoint.dir);
    } else if (opt->resume) {
        snprintf(path, sizeof path, "%s", opt->resume);
    }
    /* Every rank reads the checkpoint itself (replicated state, shared file system). */
    if (path[0]) {
        snprintf(r->resumed_from, sizeof r->resumed_from, "%s", path);
        if (loaded || checkpoint_load(path, r->model, r->optim, st, &e) == DMLP_OK) {
            if (log)
                fprintf(log, "resumed from %s: epoch %llu, step %llu, %llu samples seen\n",
                        path, (unsigned long long)st->epoch, (unsigned long long)st->step,
                        (unsigned long long)st->samples_seen);
            if (log && st->seed != cfg->training.seed)
                fprintf(log, "warning: the checkpoint was trained with seed %llu; "
                        "continuing with training.seed %llu\n",
                        (unsigned long long)st->seed, (unsigned long long)cfg->training.seed);
            st->seed = cfg->training.seed;
        }
    } else if (opt->init_from) {
        if (checkpoint_load_layers(opt->init_from, r->model, &e) == DMLP_OK && log)
            fprintf(log, "initialised /layers from %s\n", opt->init_from);
    }
    if (dist_agree(d, &e) || normalize(d, cfg, r, path[0] != 0, &e))
        goto fail;

    /* The largest slice a rank takes is ceil(B / n) (one more when sharded: slices there
     * follow each shard's share); the workspace also serves evaluation. */
    const int n = dist_size(d);
    const size_t B = cfg->training.batch_size;
    size_t slice = B / (size_t)n + (B % (size_t)n != 0) + (size_t)r->sharded;
    if (cfg->comm.overlap && !cfg->training.reproducible) {
        r->bucket = (size_t)cfg->comm.bucket_kb * 1024 / sizeof(float);
        dist_pending_create(&r->pending, d, max_buckets(r->model, r->bucket), &e);
    } else if (!cfg->training.reproducible) {
        dist_sum_create(&r->sum, d, r->model->n_params + 1, cfg->comm.shared_memory);
    }
    if (cfg->training.reproducible) {
        slice = slice > REPRO_CHUNK ? slice : REPRO_CHUNK;
        r->fx_shift = 40;
        if (!(r->acc = calloc(r->model->n_params + 2 + r->model->n_layers, sizeof *r->acc)))
            dmlp_fail(&e, DMLP_ERR_RUNTIME, "cannot allocate the fixed-point gradient "
                      "accumulator (%zu values)", r->model->n_params);
    }
    const size_t D = r->train->d, K = r->train->k;
    size_t xb_bytes, tb_bytes, perm_bytes;
    if (dmlp_mul_size(&xb_bytes, slice, D) || dmlp_mul_size(&xb_bytes, xb_bytes, sizeof(float)) ||
        dmlp_mul_size(&tb_bytes, slice, K) || dmlp_mul_size(&tb_bytes, tb_bytes, sizeof(float)) ||
        dmlp_mul_size(&perm_bytes, r->train->n + 1, sizeof(uint64_t))) {
        dmlp_fail(&e, DMLP_ERR_INPUT, "training.batch_size %zu: batch buffers overflow", B);
    } else if (model_reserve(r->model, slice > EVAL_CHUNK ? slice : EVAL_CHUNK, &e) == DMLP_OK) {
        r->xb = dmlp_alloc_aligned(xb_bytes);
        r->perm = malloc(perm_bytes);
        if (r->train->labels)
            r->lb = dmlp_alloc_aligned(slice * sizeof(int32_t));
        else
            r->tb = dmlp_alloc_aligned(tb_bytes);
        if (!r->xb || !r->perm || (!r->lb && !r->tb))
            dmlp_fail(&e, DMLP_ERR_RUNTIME, "cannot allocate batch buffers for %zu rows of %zu "
                      "features", slice, D);
    }
    if (dist_agree(d, &e))
        goto fail;
    return DMLP_OK;
fail:
    *err = e;
    return e.code;
}

/* Rank 0 writes (a step checkpoint, or best.h5 when best is set), then every rank learns
 * whether it worked. */
static int save(const struct dist *d, const struct config *cfg, const char *yaml,
                const struct run *r, const struct checkpoint_state *st, int best,
                struct train_result *res, struct dmlp_error *err)
{
    struct dmlp_error e = {0};
    if (dist_rank(d) == 0) {
        if (best)
            checkpoint_save_as(cfg->checkpoint.dir, "best.h5", r->model, r->optim, st, yaml,
                               &e);
        else
            checkpoint_save(cfg->checkpoint.dir, r->model, r->optim, st, yaml,
                            cfg->checkpoint.keep_last, res->checkpoint,
                            sizeof res->checkpoint, &e);
    }
    if (dist_agree(d, &e)) {
        *err = e;
        return e.code;
    }
    if (!best)
        dist_bcast(d, res->checkpoint, sizeof res->checkpoint, 0);
    return DMLP_OK;
}

/* Where rank i's slice of step s starts in its own shard: floor(s·B·rows_i / N), capped at
 * the shard's end. */
static uint64_t shard_take(const uint64_t *rows, uint64_t N, int i, uint64_t s, uint64_t B)
{
    __extension__ typedef unsigned __int128 u128;
    const u128 t = (u128)s * B * rows[i] / N;
    return t < rows[i] ? (uint64_t)t : rows[i];
}

void train_shard_step(const uint64_t *rows, int n, int rank, uint64_t B, uint64_t s,
                      uint64_t steps_per_epoch, int drop_last, uint64_t *offset,
                      uint64_t *len, uint64_t *count)
{
    uint64_t N = 0;
    for (int i = 0; i < n; i++)
        N += rows[i];
    const int last = s + 1 == steps_per_epoch && !drop_last;
    *count = *offset = *len = 0;
    for (int i = 0; i < n && N; i++) {
        const uint64_t a = shard_take(rows, N, i, s, B);
        const uint64_t b = last ? rows[i] : shard_take(rows, N, i, s + 1, B);
        *count += b - a;
        if (i == rank) {
            *offset = a;
            *len = b - a;
        }
    }
}

/* The first layer whose summed gradient holds a NaN or an infinity; 0 when all are finite.
 * Run on the all-reduced buffer, so every rank finds the same answer. */
static int find_nonfinite(const struct model *m, size_t *layer, const char **what)
{
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        int bad = 0;
        for (size_t i = 0; i < L->out * L->in; i++)
            bad |= !isfinite(L->dW[i]);
        if (bad) {
            *layer = l;
            *what = "weight";
            return 1;
        }
        for (size_t j = 0; j < L->out; j++)
            bad |= !isfinite(L->db[j]);
        if (bad) {
            *layer = l;
            *what = "bias";
            return 1;
        }
    }
    return 0;
}

/* Early stopping: records the epoch's metric; returns 1 when it improved on the best. */
static int track_best(const struct config_early_stopping *es, struct checkpoint_state *st,
                      double value, uint64_t epoch)
{
    const int lower_is_better = es->metric == DMLP_METRIC_VAL_LOSS;
    const int improved = isnan(st->best_metric) ||
                         (lower_is_better ? value < st->best_metric - es->min_delta
                                          : value > st->best_metric + es->min_delta);
    if (improved) {
        st->best_metric = value;
        st->best_epoch = epoch;
        st->bad_epochs = 0;
    } else {
        st->bad_epochs++;
    }
    return improved;
}

/* Copies the rows idx[0..len) of the training set into the batch buffers. */
static void gather(struct run *r, const uint64_t *idx, size_t len)
{
    const struct dataset *ds = r->train;
    const size_t D = ds->d, K = ds->k;
    for (size_t i = 0; i < len; i++) {
        memcpy(r->xb + i * D, ds->features + idx[i] * D, D * sizeof(float));
        if (r->lb)
            r->lb[i] = ds->labels[idx[i]];
        else
            memcpy(r->tb + i * K, ds->targets + idx[i] * K, K * sizeof(float));
    }
}

/* training.reproducible: one step whose summed gradient is bit-identical for any rank
 * count. The step's samples are cut into chunks of REPRO_CHUNK by their position in the
 * global batch, whatever the rank count; each rank computes whole chunks, turns each
 * chunk's float gradient into 64-bit fixed point (x·2^shift, truncated) and adds the
 * integers; the allreduce adds integers, which is exact and order-free (in unsigned
 * arithmetic, where wrap-around is defined and cancels out because the true total fits).
 * The binary point follows the previous step's largest summed gradient with 8 bits of
 * headroom; a chunk value beyond 2^62 / chunks (so that no total can overflow) makes
 * every rank redo the step with 16 bits less, a decision that depends only on the chunks,
 * not on the rank count. Returns 1 when a gradient is not finite (*bad_layer says where). */
static int exact_step(const struct dist *d, struct run *r, uint64_t lo, uint64_t count,
                      double *loss_sum, size_t *correct, int *signalled, size_t *bad_layer,
                      uint64_t *mine)
{
    struct model *m = r->model;
    const size_t P = m->n_params, L = m->n_layers;
    const uint64_t chunks = (count + REPRO_CHUNK - 1) / REPRO_CHUNK;
    uint64_t c0, nc;
    dmlp_slice(chunks, dist_size(d), dist_rank(d), &c0, &nc);
    const double limit = ldexp(1.0, 62) / (double)chunks;
    uint64_t *acc = r->acc;
    for (;;) {
        memset(acc, 0, (P + 2 + L) * sizeof *acc);
        double loss = 0.0;
        size_t right = 0;
        const double scale = ldexp(1.0, r->fx_shift);
        uint64_t overflow = 0;
        for (uint64_t c = c0; c < c0 + nc; c++) {
            const uint64_t a = c * REPRO_CHUNK, b = a + REPRO_CHUNK < count ? a + REPRO_CHUNK
                                                                           : count;
            gather(r, r->perm + lo + a, (size_t)(b - a));
            loss += model_train_batch(m, r->xb, r->lb, r->tb, (size_t)(b - a), &right);
            const unsigned fx = kernel_vec()->fx_add(acc, m->grads, P, scale, limit);
            overflow |= (fx & VEC_FX_OVERFLOW) != 0;
            const int nonfinite = (fx & VEC_FX_NONFINITE) != 0;
            size_t layer;
            const char *what;
            if (nonfinite && find_nonfinite(m, &layer, &what))
                acc[P + 2 + layer] = 1;
        }
        acc[P] = overflow;
        acc[P + 1] = stop_requested() ? 1 : 0;
        dist_allreduce_sum_u64(d, acc, P + 2 + L);
        for (size_t l = 0; l < L; l++)
            if (acc[P + 2 + l]) {
                *bad_layer = l;
                return 1;
            }
        if (acc[P]) {
            r->fx_shift -= 16; /* every rank saw the same count: all retry alike */
            continue;
        }
        *loss_sum += loss;
        *correct += right;
        *signalled = acc[P + 1] > 0;
        const uint64_t end = (c0 + nc) * REPRO_CHUNK;
        *mine = (end < count ? end : count) - (c0 * REPRO_CHUNK < count ? c0 * REPRO_CHUNK
                                                                         : count);
        break;
    }
    /* Multiplying by a power of two is exact, and much cheaper than ldexp per value. */
    const double inv = ldexp(1.0, -r->fx_shift);
    const float maxg = kernel_vec()->fx_load(m->grads, acc, P, inv);
    /* Next step's binary point: the largest sum then sits 8 bits below the limit. */
    int e = 0;
    frexp(maxg > 0 ? (double)maxg : 1.0, &e);
    int bits = 0;
    while (bits < 62 && ((uint64_t)1 << bits) < chunks)
        bits++;
    r->fx_shift = 61 - bits - 8 - e;
    return 0;
}

int train_run(const struct dist *d, const struct config *cfg, const char *config_yaml,
              const struct train_options *opt, struct train_result *res,
              struct dmlp_error *err)
{
    memset(res, 0, sizeof *res);
    res->train_accuracy = res->test_accuracy = res->val_loss = res->val_accuracy = NAN;
    struct run r = {0};
    struct checkpoint_state st;
    int rc = setup(d, cfg, opt, &r, &st, err);
    if (rc) {
        run_free(&r);
        return rc;
    }
    const int n = dist_size(d), rank = dist_rank(d);
    FILE *log = rank == 0 ? opt->log : NULL;
    FILE *info = opt->verbosity >= 1 ? log : NULL; /* what --quiet silences */
    const struct dataset *ds = r.train;
    struct model *m = r.model;
    const uint64_t N = r.n_train, B = cfg->training.batch_size;
    const size_t D = ds->d, K = ds->k;
    const uint64_t steps_per_epoch = cfg->data.drop_last ? N / B : (N + B - 1) / B;
    if (steps_per_epoch == 0) {
        run_free(&r);
        return dmlp_fail(err, DMLP_ERR_INPUT, "training.batch_size %llu exceeds the %llu "
                         "training samples and data.drop_last is set: no step to take",
                         (unsigned long long)B, (unsigned long long)N);
    }
    if (cfg->training.reproducible && st.fx_shift)
        r.fx_shift = st.fx_shift; /* resume the fixed point where the saved run left it */
    if (st.step_in_epoch >= steps_per_epoch) { /* the batch size changed since the save */
        st.epoch++;
        st.step_in_epoch = 0;
    }
    if (info) {
        char net[256];
        describe_network(net, sizeof net, m);
        fprintf(info, "dmlp %s: %d rank%s x %d thread%s; network %s (%zu parameters); "
                "%llu training samples (%s)%s; global batch %llu (%llu per rank); "
                "%llu steps/epoch\n",
                DMLP_VERSION, n, n > 1 ? "s" : "", omp_get_max_threads(),
                omp_get_max_threads() > 1 ? "s" : "", net, count_params(m),
                (unsigned long long)N, r.sharded ? "sharded" : "replicated",
                m->norm_mean ? ", standardised" : "", (unsigned long long)B,
                (unsigned long long)((B + (uint64_t)n - 1) / (uint64_t)n),
                (unsigned long long)steps_per_epoch);
        fprintf(info, "training data held by rank 0: %zu rows, %.1f MiB%s\n", ds->n,
                (double)ds->n * (double)(D + (ds->labels ? 1 : K)) * 4.0 / 1048576.0,
                r.sharded ? " (its shard)" : " (the whole set)");
        if (r.val)
            fprintf(info, "validation: %g of %s held out (seed %llu)\n",
                    cfg->data.validation_fraction, cfg->data.train,
                    (unsigned long long)cfg->training.seed);
        if (n > 1)
            fprintf(info, "gradient allreduce: %s\n",
                    cfg->training.reproducible ? "MPI_Allreduce of 64-bit fixed point "
                    "(training.reproducible)" : r.pending ? "MPI_Iallreduce in buckets "
                    "during backward (comm.overlap)" : dist_sum_method(r.sum));
        fflush(info);
    }

    report_placement(d, info, opt->verbosity >= 2);
    /* metrics.jsonl: rank 0 appends; a failure to open it only costs the file. */
    if (rank == 0 && opt->save_checkpoints) {
        struct dmlp_error le = {0};
        if (runlog_open(&r.mlog, cfg->checkpoint.dir, &le) && log)
            fprintf(log, "warning: %s\n", le.msg);
        if (r.mlog)
            runlog_start(r.mlog, config_yaml, n, omp_get_max_threads(), st.epoch, st.step,
                         r.resumed_from[0] ? r.resumed_from : NULL);
    }
    const int bar = info && isatty(fileno(info));
    const uint64_t total_steps = steps_per_epoch * cfg->training.epochs;
    double lr = cfg->optimizer.lr;
    const uint64_t max_steps = cfg->training.max_steps;
    const struct config_early_stopping *es = &cfg->training.early_stopping;
    /* A resumed run that has nothing left to do already ends with its checkpoint. */
    uint64_t saved_step = st.step > 0 ? st.step : UINT64_MAX;
    int stop = (max_steps && st.step >= max_steps) ||
               (es->patience && st.bad_epochs >= es->patience);
    const uint64_t local_n = ds->n;
    for (uint64_t epoch = st.epoch; epoch < cfg->training.epochs && !stop; epoch++) {
        struct rng shuffle;
        /* Replicated: one permutation of all rows, the same on every rank. Sharded: each
         * rank permutes its own rows, on a stream of its own. */
        rng_seed(&shuffle, st.seed + (r.sharded ? 0x9e3779b97f4a7c15ull * (uint64_t)(rank + 1)
                                                : 0),
                 STREAM_EPOCH + epoch);
        if (cfg->data.shuffle)
            rng_permutation(&shuffle, r.perm, (size_t)local_n);
        else
            for (uint64_t i = 0; i < local_n; i++)
                r.perm[i] = i;

        const double t0 = dmlp_now();
        double timers[TIMER_COUNT] = {0};
        double last_draw = 0.0;
        const uint64_t first_step = st.step_in_epoch;
        double loss_sum = 0.0;
        size_t correct = 0;
        uint64_t local_seen = 0, epoch_seen = 0;
        for (uint64_t s = st.step_in_epoch; s < steps_per_epoch; s++) {
            uint64_t count, off = 0, len = 0;
            if (r.sharded) {
                train_shard_step(r.rows, n, rank, B, s, steps_per_epoch, cfg->data.drop_last,
                                 &off, &len, &count);
            } else {
                const uint64_t lo = s * B;
                count = N - lo < B ? N - lo : B;
                dmlp_slice(count, n, rank, &off, &len);
                off += lo;
            }
            int signalled;
            size_t bad_layer = 0;
            const char *bad_what = NULL;
            int bad;
            if (cfg->training.reproducible) {
                bad = exact_step(d, &r, s * B, count, &loss_sum, &correct, &signalled,
                                 &bad_layer, &len);
                bad_what = "weight or bias";
            } else {
                double t = dmlp_now();
                gather(&r, r.perm + off, (size_t)len);
                timers[TIMER_DATA] += dmlp_now() - t;
                t = dmlp_now();
                if (len) {
                    const float *Y = model_forward(m, r.xb, (size_t)len);
                    if (r.lb)
                        correct += kernel_count_correct(Y, r.lb, (size_t)len,
                                                        model_output_dim(m));
                    loss_sum += model_loss(m, r.lb, r.tb, (size_t)len, 1);
                    timers[TIMER_FORWARD] += dmlp_now() - t;
                }
                /* Σ over ranks of the per-sample gradient sums, then the mean over the
                 * step's global samples: the single-process update, for any number of
                 * ranks. A stop request (a signal on any rank) rides along in the control
                 * slot, at the top of the buffer. */
                m->grads[m->n_params] = stop_requested() ? 1.0f : 0.0f;
                t = dmlp_now();
                if (r.pending) {
                    /* Overlapped: buckets start inside backward (an empty slice computes
                     * zeros, so its rank starts the same buckets); the wait is what was
                     * not hidden. */
                    r.unsent = m->n_params + 1;
                    model_backward_chunked(m, r.xb, (size_t)len, r.bucket, grad_ready, &r);
                    if (r.unsent)
                        dist_pending_start(r.pending, m->grads, r.unsent);
                    const double t_wait = dmlp_now();
                    timers[TIMER_BACKWARD] += t_wait - t;
                    dist_pending_wait(r.pending);
                    timers[TIMER_ALLREDUCE] += dmlp_now() - t_wait;
                } else {
                    if (len)
                        model_backward(m, r.xb, (size_t)len);
                    else
                        memset(m->grads, 0, m->n_params * sizeof(float));
                    const double t_sum = dmlp_now();
                    timers[TIMER_BACKWARD] += t_sum - t;
                    const double waited = dist_sum_float(r.sum, m->grads, m->n_params + 1);
                    timers[TIMER_SYNC] += waited;
                    timers[TIMER_ALLREDUCE] += dmlp_now() - t_sum - waited;
                }
                signalled = m->grads[m->n_params] > 0.0f;
                bad = kernel_vec()->nonfinite(m->grads, m->n_params) &&
                      find_nonfinite(m, &bad_layer, &bad_what);
            }
            if (bad) {
                run_free(&r);
                char kept[PATH_MAX + 64];
                if (saved_step != UINT64_MAX && opt->save_checkpoints)
                    snprintf(kept, sizeof kept, "the last checkpoint in %s (step %llu) is kept",
                             cfg->checkpoint.dir, (unsigned long long)saved_step);
                else
                    snprintf(kept, sizeof kept, "this run had written no checkpoint yet");
                return dmlp_fail(err, DMLP_ERR_RUNTIME, "training diverged: non-finite "
                                 "gradient at step %llu (epoch %llu) in layer %zu (%s); lower "
                                 "optimizer.lr or set optimizer.clip_norm. Nothing was saved "
                                 "for this step; %s",
                                 (unsigned long long)st.step + 1,
                                 (unsigned long long)epoch + 1, bad_layer, bad_what, kept);
            }
            const double t_update = dmlp_now();
            const float scale = (float)(1.0 / (double)count);
            /* After the allreduce every rank holds the same gradient, so every rank clips
             * and steps identically. */
            if (cfg->optimizer.clip_norm > 0)
                optim_clip_grad_norm(m->grads, m->n_params, scale, cfg->optimizer.clip_norm);
            lr = schedule_lr(&cfg->optimizer, B, st.step, steps_per_epoch, total_steps);
            optim_step(r.optim, m->params, m->grads, scale, lr);
            timers[TIMER_UPDATE] += dmlp_now() - t_update;
            st.fx_shift = cfg->training.reproducible ? r.fx_shift : 0;
            local_seen += len;
            epoch_seen += count;
            st.step++;
            st.samples_seen += count;
            st.step_in_epoch = s + 1;
            if (bar) {
                const double now = dmlp_now();
                if (now - last_draw >= 0.25 || s + 1 == steps_per_epoch) {
                    const double spent = now - t0, done = (double)(s + 1 - first_step);
                    runlog_progress(info, epoch + 1, cfg->training.epochs, s + 1,
                                    steps_per_epoch, local_seen ? loss_sum / (double)local_seen
                                                                : 0.0,
                                    spent > 0 ? (double)epoch_seen / spent : 0.0,
                                    spent / done * (double)(steps_per_epoch - s - 1));
                    last_draw = now;
                }
            }
            if (signalled) {
                stop = STOP_SIGNAL;
                break;
            }
            if (max_steps && st.step >= max_steps) {
                stop = 1;
                break;
            }
        }
        const double elapsed = dmlp_now() - t0;
        if (st.step_in_epoch == steps_per_epoch) {
            st.epoch = epoch + 1;
            st.step_in_epoch = 0;
        }
        double sums[1] = {loss_sum};
        uint64_t counts[2] = {correct, local_seen};
        dist_allreduce_sum_double(d, sums, 1);
        dist_allreduce_sum_u64(d, counts, 2);
        res->train_loss = counts[1] ? sums[0] / (double)counts[1] : NAN;
        res->train_accuracy = ds->labels && counts[1] ? (double)counts[0] / (double)counts[1]
                                                      : NAN;
        res->epochs_done = st.epoch;
        if (counts[1] && !isfinite(res->train_loss)) {
            run_free(&r);
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "training diverged in epoch %llu (mean "
                             "loss %g): lower optimizer.lr; the last checkpoint is kept",
                             (unsigned long long)epoch + 1, res->train_loss);
        }
        struct metrics_report ev = {0}, vv = {0};
        const int evaluating = stop != STOP_SIGNAL; /* a stop request skips straight to the save */
        const double t_eval = dmlp_now();
        if (evaluating && ((r.val && (rc = evaluate(d, &r, r.val, &vv, err))) ||
                           (r.test && (rc = evaluate(d, &r, r.test, &ev, err))))) {
            run_free(&r);
            return rc;
        }
        timers[TIMER_EVAL] = dmlp_now() - t_eval;
        res->test_accuracy = r.test && evaluating ? ev.accuracy : NAN;
        res->val_loss = r.val && evaluating ? vv.loss : NAN;
        res->val_accuracy = r.val && evaluating ? vv.accuracy : NAN;
        const int epoch_end = st.step_in_epoch == 0;
        int improved = 0;
        /* best.h5 follows the validation metric whether or not early stopping is on. */
        if (r.val && epoch_end && evaluating)
            improved = track_best(es, &st, es->metric == DMLP_METRIC_VAL_LOSS ? vv.loss
                                                                             : vv.accuracy,
                                  st.epoch);
        if (bar)
            runlog_progress_clear(info);
        if (info) {
            fprintf(info, "epoch %4llu/%u  lr %.4g  loss %.5f", (unsigned long long)epoch + 1,
                    cfg->training.epochs, lr, res->train_loss);
            if (ds->labels)
                fprintf(info, "  acc %.4f", res->train_accuracy);
            if (r.val && evaluating) {
                fprintf(info, "  val_loss %.5f", vv.loss);
                if (ds->labels)
                    fprintf(info, "  val_acc %.4f", vv.accuracy);
            }
            if (r.test && evaluating)
                fprintf(info, ds->labels ? "  test_acc %.4f" : "  test_loss %.5f",
                        ds->labels ? ev.accuracy : ev.loss);
            fprintf(info, "  %.0f samples/s  %.2fs\n",
                    elapsed > 0 ? (double)epoch_seen / elapsed : 0.0, elapsed);
            fflush(info);
        }

        const double t_ckpt = dmlp_now();
        if (opt->save_checkpoints && improved &&
            (rc = save(d, cfg, config_yaml, &r, &st, 1, res, err))) {
            run_free(&r);
            return rc;
        }
        if (es->patience && st.bad_epochs >= es->patience) {
            if (info)
                fprintf(info, "early stopping after epoch %llu: %s has not improved by more "
                        "than %g for %u epochs (best %.6g after epoch %llu)\n",
                        (unsigned long long)st.epoch,
                        es->metric == DMLP_METRIC_VAL_LOSS ? "val_loss" : "val_accuracy",
                        es->min_delta, es->patience, st.best_metric,
                        (unsigned long long)st.best_epoch);
            res->stopped_early = 1;
            stop = 1;
        }
        if (opt->save_checkpoints && epoch_end && cfg->checkpoint.every_epochs &&
            st.epoch % cfg->checkpoint.every_epochs == 0) {
            if ((rc = save(d, cfg, config_yaml, &r, &st, 0, res, err))) {
                run_free(&r);
                return rc;
            }
            saved_step = st.step;
        }
        timers[TIMER_CHECKPOINT] = dmlp_now() - t_ckpt;
        /* Where the time went, across ranks: how a user finds a straggler. */
        struct runlog_epoch le = {
            .epoch = st.epoch + (st.step_in_epoch ? 1 : 0), .step = st.step, .lr = lr,
            .train_loss = res->train_loss, .train_accuracy = res->train_accuracy,
            .val_loss = res->val_loss, .val_accuracy = res->val_accuracy,
            .test_loss = r.test && evaluating ? ev.loss : NAN,
            .test_accuracy = res->test_accuracy,
            .samples_per_second = elapsed > 0 ? (double)epoch_seen / elapsed : NAN,
            .epoch_seconds = elapsed};
        dist_spread(d, timers, TIMER_COUNT, le.t_min, le.t_mean, le.t_max, le.t_max_rank);
        res->last_epoch = le;
        if (!(res->fastest_epoch_seconds > 0) || elapsed < res->fastest_epoch_seconds)
            res->fastest_epoch_seconds = elapsed;
        if (r.mlog)
            runlog_epoch(r.mlog, &le);
        if (info && opt->verbosity >= 2) {
            fprintf(info, "  time (max over ranks, slowest rank):");
            for (int t = 0; t < TIMER_COUNT; t++)
                fprintf(info, " %s %.3fs (%d)", runlog_timer_names[t], le.t_max[t],
                        le.t_max_rank[t]);
            fprintf(info, "\n");
        }
    }
    /* Training always ends with a checkpoint. */
    if (opt->save_checkpoints && saved_step != st.step) {
        if ((rc = save(d, cfg, config_yaml, &r, &st, 0, res, err))) {
            run_free(&r);
            return rc;
        }
    }
    if (log && res->checkpoint[0])
        fprintf(log, "checkpoint: %s\n", res->checkpoint);
    if (stop == STOP_SIGNAL) {
        const int sig = stop_requested();
        res->model = r.model;
        r.model = NULL;
        res->steps = st.step;
        run_free(&r);
        return dmlp_fail(err, DMLP_STOPPED, "stopped by a signal (%s here) after step %llu; "
                         "%s holds the state: rerun with --resume auto to continue",
                         sig ? stop_signal_name(sig) : "received on another rank",
                         (unsigned long long)st.step,
                         res->checkpoint[0] ? res->checkpoint : cfg->checkpoint.dir);
    }
    if (info && r.val && !isnan(st.best_metric) && opt->save_checkpoints)
        fprintf(info, "best: %s/best.h5 (%s %.6g after epoch %llu)\n", cfg->checkpoint.dir,
                es->metric == DMLP_METRIC_VAL_LOSS ? "val_loss" : "val_accuracy",
                st.best_metric, (unsigned long long)st.best_epoch);
    res->steps = st.step;
    res->epochs_done = st.epoch;
    res->best_epoch = st.best_epoch;
    res->model = r.model;
    r.model = NULL;
    run_free(&r);
    return DMLP_OK;
}
