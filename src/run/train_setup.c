/* train_setup: a training run from its config to the first step: the data in their
 * placement, the network and optimizer, the checkpoint it continues, the buffers of a step
 * (allocated once: the step loop allocates nothing), and the run's report. */
#define _POSIX_C_SOURCE 200809L
#include "run/trainer.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"

void trainer_free(struct trainer *t)
{
    rundir_close(&t->dir);
    if (t->stream) { /* the reader writes t->w: it stops first; t->train is its own */
        stream_close(&t->stream);
        t->train = NULL;
    }
    free(t->stream_cw);
    dataset_free(&t->train);
    dataset_free(&t->val);
    dataset_free(&t->test);
    dist_shm_free(&t->data_shm); /* collective over the node: every rank frees its trainer */
    dataset_files_free(&t->train_files);
    dataset_files_free(&t->test_files);
    dataset_files_free(&t->val_files);
    model_free(&t->model);
    optim_free(&t->optim);
    gradsum_free(&t->sum);
    dmlp_free_aligned(t->xb);
    dmlp_free_aligned(t->tb);
    dmlp_free_aligned(t->lb);
    free(t->w);
    free(t->wb);
    free(t->step_w);
    dmlp_free_aligned(t->acc);
    free(t->piece_loss);
    free(t->perm);
    free(t->rows);
    runlog_close(&t->mlog);
}

/* Rank 0 prints where every rank runs: hosts, threads, the cores each rank may use, and a
 * warning when a host runs more threads than it has cores (the usual cause of a job that
 * is many times slower than it should be). Collective. */
struct placement {
    char host[64];
    char cpus[112];
    int32_t threads, bound, cores;
};

/* Gathers every rank's placement to rank 0, which gets the array (malloc'd; NULL on the
 * other ranks, and on rank 0 without memory, which then skips the report). Collective. */
static struct placement *gather_placements(const struct dist *d, FILE *log)
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
    return all;
}

/* The ranks on rank i's host, from i on: each one's cores when verbose (the first 16), and
 * a warning for each that runs more threads than it may use cores. */
static void report_host_ranks(FILE *log, const struct placement *all, int n, int i,
                              int verbose)
{
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
}

/* Rank i's host: its ranks and threads, each rank (report_host_ranks), and a warning when
 * it runs more threads than it has cores. Then its entries are emptied, so that the host
 * is reported once. */
static void report_host(FILE *log, struct placement *all, int n, int i, int verbose)
{
    int ranks = 0, threads = 0;
    for (int j = i; j < n; j++)
        if (!strcmp(all[j].host, all[i].host)) {
            ranks++;
            threads += all[j].threads;
        }
    fprintf(log, "host %s: %d rank%s, %d thread%s in all, %d cores online\n", all[i].host,
            ranks, ranks > 1 ? "s" : "", threads, threads > 1 ? "s" : "", all[i].cores);
    report_host_ranks(log, all, n, i, verbose);
    if (threads > all[i].cores)
        fprintf(log, "warning: host %s runs %d ranks x threads = %d threads on %d cores: "
                "oversubscribed, expect a slow run (lower OMP_NUM_THREADS or the ranks "
                "per host)\n", all[i].host, ranks, threads, all[i].cores);
    char mark[64];
    snprintf(mark, sizeof mark, "%s", all[i].host);
    for (int j = i; j < n; j++)
        if (!strcmp(all[j].host, mark))
            all[j].host[0] = '\0';
}

static void report_placement(const struct dist *d, FILE *log, int verbose)
{
    struct placement *all = gather_placements(d, log);
    if (dist_rank(d) != 0 || !all || !log) {
        free(all);
        return;
    }
    const int n = dist_size(d);
    for (int i = 0; i < n; i++)
        if (all[i].host[0]) /* else already reported with its host */
            report_host(log, all, n, i, verbose);
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

/* This rank's shard of the training set and of the test set (when configured); *row0 is
 * the shard's first row in the whole set of *global_n. Collective: a failure is already
 * agreed when this returns it. */
static int read_sharded(const struct dist *d, struct trainer *r, size_t *row0,
                        size_t *global_n, struct dmlp_error *e)
{
    struct dataset_shard sh;
    if (dataset_read_files_shard(&r->train, &r->train_files, d, &sh, e))
        return e->code;
    *row0 = sh.row0;
    *global_n = sh.global_rows;
    if (r->test_files.n && dataset_read_files_shard(&r->test, &r->test_files, d, NULL, e))
        return e->code;
    if (r->val_files.n && dataset_read_files_shard(&r->val, &r->val_files, d, NULL, e))
        return e->code;
    return DMLP_OK;
}

/* The cache's copy of set i (training, validation, test), when it was read from the same
 * files as f; else NULL. The same answer on every rank: the files are agreed, and the
 * cache was read alike everywhere. */
static const struct dataset *cached(const struct train_cache *c, int i,
                                    const struct dataset_files *f)
{
    if (!c || !c->set[i] || !f->n || c->files[i]->n != f->n)
        return NULL;
    for (size_t j = 0; j < f->n; j++)
        if (strcmp(c->files[i]->path[j], f->path[j]))
            return NULL;
    return c->set[i];
}

/* The whole training set and test set (when configured) on this rank; not agreed. */
static void read_replicated(struct trainer *r, size_t *global_n, struct dmlp_error *e)
{
    const struct dataset_files *files[3] = {&r->train_files, &r->val_files, &r->test_files};
    struct dataset **set[3] = {&r->train, &r->val, &r->test};
    for (int i = 0; i < 3 && !e->code; i++) {
        const struct dataset *from = cached(r->opt->cache, i, files[i]);
        if (from)
            dataset_clone(set[i], from, e);
        else if (files[i]->n)
            dataset_read_files(set[i], files[i], e);
    }
    if (r->train)
        *global_n = r->train->n;
}

/* The training, validation and test sets' counts of what (files, rows) must be the same on
 * every rank: each rank lists and reads the files itself. Collective, agreed. */
static int agree_counts(const struct dist *d, const size_t count[3], const char *what,
                        struct dmlp_error *e)
{
    static const char *const key[3] = {"data.train", "data.validation", "data.test"};
    double mine[3], lo[3], mean[3], hi[3];
    int at[3];
    for (int i = 0; i < 3; i++)
        mine[i] = (double)count[i];
    dist_spread(d, mine, 3, lo, mean, hi, at);
    for (int i = 0; i < 3 && !e->code; i++)
        if (lo[i] != hi[i])
            dmlp_fail(e, DMLP_ERR_INPUT, "the ranks found different data: %s has %.0f to %.0f "
                      "%s, depending on the rank (did the files change while the job "
                      "started?)", key[i], lo[i], hi[i], what);
    return dist_agree(d, e);
}


/* Where share_sets puts its sets, and what it says when it cannot. */
struct shared_sets {
    struct dataset **set[3];   /* training, validation, test */
    struct dist_shm **shm;
    char *note;                /* why no window (note_cap bytes) */
    size_t note_cap;
};

/* The replicated placement, one copy per node: node rank 0 reads the training, validation
 * and test sets of files (or copies them from cache) into a block that the node's ranks
 * share, and holds out the validation split (fraction > 0, seeded) there; every other rank
 * lays the same sets over the block. The sets' K (known once the labels are read) travels
 * in the block's first line. *shared is 0 when no block could be had (out->note says why,
 * and the caller reads copies of each rank's own); the layouts' errors are the same either
 * way. Collective, agreed. */
static int share_sets(const struct dist *d, const struct dataset_files *const files[3],
                      const struct train_cache *cache, double fraction, uint64_t seed,
                      const struct shared_sets *out, size_t *global_n, int *shared,
                      struct dmlp_error *e)
{
    struct dataset **const *set = out->set;
    const struct dataset *from[3];
    struct dataset_shape sh[3] = {{0}};
    *shared = 0;
    for (int i = 0; i < 3 && !e->code; i++) {
        from[i] = cached(cache, i, files[i]);
        if (from[i])
            sh[i] = dataset_shape_of(from[i]);
        else if (files[i]->n && dataset_files_shape(files[i], &sh[i], e) == DMLP_OK)
            dataset_check_fits(&sh[i], sh[i].n, files[i]->name, e);
    }
    if (dist_agree(d, e) || agree_counts(d, (size_t[3]){sh[0].n, sh[1].n, sh[2].n}, "rows", e))
        return e->code;
    /* The held-out split takes its rows out of the training rows, into a part of its own. */
    const size_t held = fraction > 0 ? dataset_validation_count(sh[0].n, fraction) : 0;
    const size_t rows[3] = {sh[0].n, fraction > 0 ? held : sh[1].n, sh[2].n};
    const int present[3] = {1, fraction > 0 || files[1]->n, files[2]->n != 0};
    if (fraction > 0)
        sh[1] = sh[0];
    size_t bytes = 64, off[3];
    for (int i = 0; i < 3; i++) {
        off[i] = bytes;
        bytes += present[i] ? dataset_bytes(&sh[i], rows[i]) : 0;
    }
    void *base;
    struct dmlp_error why = {0};
    if (dist_shm_alloc(out->shm, d, bytes, &base, &why) != DMLP_OK) {
        snprintf(out->note, out->note_cap, "%s", why.msg);
        return DMLP_OK;
    }
    uint64_t *k = base; /* the sets' K, from node rank 0 */
    for (int i = 0; i < 3 && !e->code; i++)
        if (present[i])
            dataset_place(set[i], &sh[i], rows[i], (char *)base + off[i], e);
    if (!e->code && dist_shm_node_rank(*out->shm) == 0) {
        for (int i = 0; i < 3 && !e->code; i++)
            if (from[i])
                dataset_copy_into(*set[i], from[i], e);
            else if (files[i]->n)
                dataset_read_files_into(*set[i], files[i], e);
        if (!e->code && fraction > 0)
            dataset_split_into(*set[0], 0, sh[0].n, fraction, seed, *set[1], e);
        for (int i = 0; i < 3; i++)
            k[i] = *set[i] ? (*set[i])->k : 0;
    }
    dist_shm_sync(*out->shm);
    if (dist_agree(d, e))
        return e->code;
    (*set[0])->n = sh[0].n - held;
    for (int i = 0; i < 3; i++)
        if (*set[i])
            (*set[i])->k = (size_t)k[i];
    *global_n = sh[0].n;
    *shared = 1;
    return DMLP_OK;
}

static int share_data(const struct dist *d, const struct config *cfg, struct trainer *r,
                      size_t *global_n, int *shared, struct dmlp_error *e)
{
    const struct dataset_files *files[3] = {&r->train_files, &r->val_files, &r->test_files};
    const struct shared_sets out = {.set = {&r->train, &r->val, &r->test},
                                    .shm = &r->data_shm, .note = r->data_note,
                                    .note_cap = sizeof r->data_note};
    return share_sets(d, files, r->opt->cache, cfg->data.validation_fraction,
                      cfg->training.seed, &out, global_n, shared, e);
}

struct train_cache_store {
    struct dataset_files files[3];
    struct dataset *set[3];
    struct dist_shm *shm;
};

void train_cache_close(struct train_cache_store **sp)
{
    struct train_cache_store *s = *sp;
    if (!s)
        return;
    for (int i = 0; i < 3; i++) {
        dataset_free(&s->set[i]);
        dataset_files_free(&s->files[i]);
    }
    dist_shm_free(&s->shm); /* collective over the node */
    free(s);
    *sp = NULL;
}

int train_cache_open(const struct dist *d, const struct config *cfg,
                     struct train_cache_store **out, struct train_cache *cache,
                     struct dmlp_error *err)
{
    memset(cache, 0, sizeof *cache);
    *out = NULL;
    if (cfg->data.placement != DMLP_PLACEMENT_REPLICATED || !cfg->data.share_node)
        return DMLP_OK;
    struct train_cache_store *s = calloc(1, sizeof *s);
    struct dmlp_error e = {0};
    const struct config_files *keys[3] = {&cfg->data.train, &cfg->data.validation,
                                          &cfg->data.test};
    static const char *const names[3] = {"data.train", "data.validation", "data.test"};
    if (!s)
        dmlp_fail(&e, DMLP_ERR_RUNTIME, "out of memory");
    for (int i = 0; i < 3 && !e.code; i++)
        dataset_files_expand(&s->files[i], keys[i]->v, keys[i]->n, names[i], &e);
    size_t n = 0;
    int shared = 0;
    char note[1024];
    if (!dist_agree(d, &e) &&
        !agree_counts(d, (size_t[3]){s->files[0].n, s->files[1].n, s->files[2].n}, "files",
                      &e)) {
        const struct dataset_files *files[3] = {&s->files[0], &s->files[1], &s->files[2]};
        const struct shared_sets o = {.set = {&s->set[0], &s->set[1], &s->set[2]},
                                      .shm = &s->shm, .note = note, .note_cap = sizeof note};
        share_sets(d, files, NULL, 0.0, 0, &o, &n, &shared, &e);
    }
    if (e.code || !shared) { /* no window: every run reads its own */
        train_cache_close(&s);
        if (err)
            *err = e;
        return e.code;
    }
    for (int i = 0; i < 3; i++) {
        cache->set[i] = s->set[i];
        cache->files[i] = s->set[i] ? &s->files[i] : NULL;
    }
    *out = s;
    return DMLP_OK;
}

/* Before an in-place change of data the node's ranks share (standardisation): a barrier,
 * so that no rank still reads them; then only node rank 0 writes. Returns whether this rank
 * changes the data. shared_write_end's barrier makes the change visible to all. */
static int shared_write_begin(const struct trainer *r)
{
    if (!r->data_shm)
        return 1;
    dist_shm_sync(r->data_shm);
    return dist_shm_node_rank(r->data_shm) == 0;
}

static void shared_write_end(const struct trainer *r)
{
    if (r->data_shm)
        dist_shm_sync(r->data_shm);
}

/* The streamed placement: the training set opened for streaming (each rank reads every
 * window itself, so the ranks need not talk), the test set read whole. Collective, agreed. */
static int open_streamed(const struct dist *d, const struct config *cfg, struct trainer *r,
                         size_t *global_n, struct dmlp_error *e)
{
    const struct stream_params p = {
        .block_rows = cfg->data.block_rows, .window_blocks = cfg->data.shuffle_window,
        .memory_bytes = (size_t)cfg->data.memory_mb << 20,
        .batch = cfg->training.batch_size, .seed = cfg->training.seed,
        .epoch_stream = TRAIN_STREAM_EPOCH, .shuffle = cfg->data.shuffle};
    if (stream_open(&r->stream, &r->train_files, &p, e) == DMLP_OK) {
        r->train = stream_resident(r->stream);
        *global_n = stream_stats(r->stream)->n;
        if (r->test_files.n)
            dataset_read_files(&r->test, &r->test_files, e);
        if (!e->code && r->val_files.n)
            dataset_read_files(&r->val, &r->val_files, e);
    }
    return dist_agree(d, e);
}

/* data.train, data.validation and data.test's globs expanded. Every rank expands them
 * itself, so the ranks must agree on what they found (a file written between two ranks'
 * listings would otherwise give them different sets): the file counts are compared here,
 * the row counts after the read. Collective, agreed. */
static int expand_files(const struct dist *d, const struct config *cfg, struct trainer *r,
                        struct dmlp_error *e)
{
    if (dataset_files_expand(&r->train_files, cfg->data.train.v, cfg->data.train.n,
                             "data.train", e) == DMLP_OK &&
        dataset_files_expand(&r->val_files, cfg->data.validation.v, cfg->data.validation.n,
                             "data.validation", e) == DMLP_OK)
        dataset_files_expand(&r->test_files, cfg->data.test.v, cfg->data.test.n, "data.test",
                             e);
    if (dist_agree(d, e))
        return e->code;
    return agree_counts(d, (size_t[3]){r->train_files.n, r->val_files.n, r->test_files.n},
                        "files", e);
}

/* Every rank's training row count into r->rows (every rank needs them all to cut each
 * step identically) and their sum into r->n_train, which must not be zero. Collective,
 * two agreements. */
static int count_train_rows(const struct dist *d, const struct config *cfg,
                            struct trainer *r, struct dmlp_error *e)
{
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
        r->n_train = r->stream ? stream_stats(r->stream)->n : r->train->n;
    if (r->n_train == 0)
        dmlp_fail(e, DMLP_ERR_INPUT, "%s: no training rows left after holding out "
                  "data.validation_fraction %g", r->train_files.name,
                  cfg->data.validation_fraction);
    return dist_agree(d, e);
}

/* A split that holds out no row would report val_loss nan every epoch, and early
 * stopping on it would never fire. Collective when sharded (the held-out rows are
 * summed); not agreed. */
static void check_held_out(const struct dist *d, const struct config *cfg,
                           const struct trainer *r, size_t global_n, struct dmlp_error *e)
{
    if (!(cfg->data.validation_fraction > 0))
        return;
    uint64_t held = r->val ? r->val->n : 0;
    if (r->sharded)
        dist_allreduce_sum_u64(d, &held, 1);
    if (held == 0)
        dmlp_fail(e, DMLP_ERR_INPUT, "%s: data.validation_fraction %g of its %zu rows "
                  "holds out no row; raise it, or set 0 for no validation",
                  r->train_files.name, cfg->data.validation_fraction, (size_t)global_n);
}

/* Reads the training and test sets in the configured placement and holds out the
 * validation split. Collective, agreed. */
static int load_data(const struct dist *d, const struct config *cfg, struct trainer *r,
                     struct dmlp_error *e)
{
    size_t row0 = 0, global_n = 0;
    int split = 0; /* the validation split is done, or not needed */
    if (expand_files(d, cfg, r, e))
        return e->code;
    if (r->sharded) {
        if (read_sharded(d, r, &row0, &global_n, e))
            return e->code; /* already agreed */
    } else if (cfg->data.placement == DMLP_PLACEMENT_STREAMED) {
        if (open_streamed(d, cfg, r, &global_n, e))
            return e->code;
        split = 1; /* nothing to split: validation comes from files */
    } else if (dist_size(d) > 1 && cfg->data.share_node &&
               share_data(d, cfg, r, &global_n, &split, e)) {
        return e->code; /* agreed */
    } else if (!split) {
        read_replicated(r, &global_n, e);
    }
    /* (sharded: the shards differ, and the read agreed on the whole already) */
    const size_t counts[3] = {global_n, r->val && !r->sharded ? r->val->n : 0,
                              r->test && !r->sharded ? r->test->n : 0};
    if (dist_agree(d, e) || agree_counts(d, counts, "rows", e))
        return e->code;
    if (!e->code && !split && cfg->data.validation_fraction > 0)
        dataset_split(r->train, row0, global_n, cfg->data.validation_fraction,
                      cfg->training.seed, &r->val, e);
    if (dist_agree(d, e))
        return e->code;
    if (count_train_rows(d, cfg, r, e))
        return e->code;
    check_held_out(d, cfg, r, global_n, e);
    return dist_agree(d, e);
}

/* Mean and std per feature (targets 0) or per target column (targets 1) of the training
 * rows, summed across ranks when sharded, into the model. Collective, agreed. */
static int training_stats(const struct dist *d, struct trainer *r, int targets,
                          struct dmlp_error *e)
{
    struct model *m = r->model;
    const size_t n = targets ? model_output_dim(m) : model_input_dim(m);
    double *sums = calloc(2 * n, sizeof *sums);
    float *mean = malloc(n * sizeof *mean), *sd = malloc(n * sizeof *sd);
    if (!sums || !mean || !sd)
        dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory for %zu %s statistics", n,
                  targets ? "target" : "feature");
    if (!dist_agree(d, e)) {
        const struct stream_stats *st = r->stream ? stream_stats(r->stream) : NULL;
        if (st) { /* the opening pass's: the same order, the same bits */
            memcpy(sums, targets ? st->tsum : st->fsum, n * sizeof *sums);
            memcpy(sums + n, targets ? st->tsumsq : st->fsumsq, n * sizeof *sums);
        } else if (targets) {
            dataset_target_sums(r->train, sums, sums + n);
        } else {
            dataset_feature_sums(r->train, sums, sums + n);
        }
        if (r->sharded)
            dist_allreduce_sum_double(d, sums, 2 * n);
        if (targets)
            dataset_target_stats_finish(sums, sums + n, (size_t)r->n_train, n, mean, sd);
        else
            dataset_stats_finish(sums, sums + n, (size_t)r->n_train, n, mean, sd);
        if (targets)
            model_set_target_normalization(m, mean, sd, e);
        else
            model_set_normalization(m, mean, sd, e);
    }
    free(sums);
    free(mean);
    free(sd);
    return dist_agree(d, e);
}

/* data.normalize: standard. The statistics come from the checkpoint when resuming (so the
 * network keeps the inputs it was trained on), else from the training rows (summed across
 * ranks when sharded); then every set held is standardised in place. */
static int normalize(const struct dist *d, const struct config *cfg, struct trainer *r,
                     int resumed, struct dmlp_error *e)
{
    struct model *m = r->model;
    if (cfg->data.normalize == DMLP_NORMALIZE_NONE) {
        free(m->norm_mean); /* the config governs: a loaded standardisation is dropped */
        free(m->norm_std);
        m->norm_mean = m->norm_std = NULL;
        return DMLP_OK;
    }
    if ((!resumed || !m->norm_mean) && training_stats(d, r, 0, e))
        return e->code;
    if (shared_write_begin(r)) {
        if (!r->stream) /* streamed: the rows a rank gathers, step by step */
            dataset_standardize(r->train, m->norm_mean, m->norm_std);
        if (r->val)
            dataset_standardize(r->val, m->norm_mean, m->norm_std);
        if (r->test)
            dataset_standardize(r->test, m->norm_mean, m->norm_std);
    }
    shared_write_end(r);
    return DMLP_OK;
}

/* data.normalize_targets: the statistics as normalize() takes the inputs' (from the
 * checkpoint when resuming, else from the training rows, across ranks when sharded). Only
 * the training set's targets are standardised: the network learns those, while the
 * validation and test sets keep their units, and evaluation maps the outputs back
 * (model_unscale_outputs), so every evaluated figure is in original units. */
static int normalize_targets(const struct dist *d, const struct config *cfg,
                             struct trainer *r, int resumed, struct dmlp_error *e)
{
    struct model *m = r->model;
    if (!cfg->data.normalize_targets) {
        free(m->target_mean); /* the config governs, as for the inputs */
        free(m->target_std);
        m->target_mean = m->target_std = NULL;
        return DMLP_OK;
    }
    if ((!resumed || !m->target_mean) && training_stats(d, r, 1, e))
        return e->code;
    if (shared_write_begin(r) && !r->stream)
        dataset_standardize_targets(r->train, m->target_mean, m->target_std);
    shared_write_end(r);
    return DMLP_OK;
}

/* The config's loss parameters into the model: huber's δ, the per-output weights. */
static int set_loss(const struct config *cfg, struct model *m, struct dmlp_error *e)
{
    const struct config_numbers *lw = &cfg->loss_weights;
    float *w = lw->n ? malloc(lw->n * sizeof *w) : NULL;
    if (lw->n && !w)
        return dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory");
    for (uint32_t j = 0; j < lw->n; j++)
        w[j] = (float)lw->v[j];
    const int rc = model_set_loss(m, cfg->loss_delta, w, e);
    free(w);
    return rc;
}

/* data.class_weights into cw [k]: the list, or balanced, N / (classes present · count),
 * scikit-learn's rule, from the class counts of the training rows (count [k], zeroed;
 * summed across ranks when sharded); a class with no rows gets 0. Collective when sharded
 * and balanced, with nothing that can fail before the sum (every rank reaches it). */
static void class_weights(const struct config *cfg, const struct trainer *r, size_t k,
                          uint64_t *count, double *cw)
{
    const struct config_numbers *c = &cfg->data.class_weights;
    if (c->n) {
        for (size_t j = 0; j < k; j++)
            cw[j] = c->v[j];
        return;
    }
    uint64_t present = 0;
    const struct stream_stats *st = r->stream ? stream_stats(r->stream) : NULL;
    for (size_t j = 0; st && j < k && j < st->k; j++)
        count[j] = st->class_count[j];
    for (size_t i = 0; !st && i < r->train->n; i++)
        count[r->train->labels[i]]++;
    if (r->sharded)
        dist_allreduce_sum_u64(r->d, count, k);
    for (size_t j = 0; j < k; j++)
        present += count[j] > 0;
    for (size_t j = 0; j < k; j++)
        cw[j] = count[j] ? (double)r->n_train / ((double)present * (double)count[j]) : 0.0;
}

/* Each training row's weight ω: its /weights value times its class weight (r->w stays
 * NULL when neither is given: every ω is 1). The training set's Σω must not be 0. The
 * same calls on every rank (the class counts' sum); agreed. */
static int sample_weights(const struct config *cfg, struct trainer *r, struct dmlp_error *e)
{
    const struct config_numbers *c = &cfg->data.class_weights;
    const int by_class = r->train->labels && (c->n || c->word);
    const size_t n = r->train->n, k = model_output_dim(r->model);
    r->w_total = (double)r->n_train;
    if (!by_class && !r->train->weights)
        return dist_agree(r->d, e);
    double *cw = by_class ? calloc(k, sizeof *cw) : NULL;
    uint64_t *count = by_class ? calloc(k, sizeof *count) : NULL;
    r->w = malloc((n ? n : 1) * sizeof *r->w);
    if (!r->w || (by_class && (!cw || !count)))
        dmlp_fail(e, DMLP_ERR_RUNTIME, "out of memory for %zu sample weights", n);
    if (dist_agree(r->d, e)) {
        free(cw);
        free(count);
        return e->code;
    }
    if (by_class)
        class_weights(cfg, r, k, count, cw);
    if (r->stream) { /* the reader weighs each window's rows as it reads them */
        const struct stream_stats *st = stream_stats(r->stream);
        /* Σω for the check below: Σ /weights, or Σ over classes of weight × count (with
         * both, Σ /weights: only lbfgs, not available here, would need it exactly) */
        double total = st->weight_sum;
        if (by_class && !st->has_weights) {
            total = 0.0;
            for (size_t j = 0; j < k; j++)
                total += cw[j] * (double)count[j];
        }
        free(count);
        r->w_total = total;
        r->stream_cw = cw;
        if (!(total > 0))
            dmlp_fail(e, DMLP_ERR_INPUT, "%s: every training sample has weight 0; nothing "
                      "would be learned", r->train_files.name);
        return dist_agree(r->d, e);
    }
    free(count);
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double wi = (r->train->weights ? (double)r->train->weights[i] : 1.0) *
                          (by_class ? cw[r->train->labels[i]] : 1.0);
        r->w[i] = (float)wi;
        total += (double)r->w[i];
    }
    free(cw);
    if (r->sharded)
        dist_allreduce_sum_double(r->d, &total, 1);
    r->w_total = total;
    if (!e->code && !(total > 0))
        dmlp_fail(e, DMLP_ERR_INPUT, "%s: every training sample has weight 0 (/weights%s); "
                  "nothing would be learned", r->train_files.name, by_class ? " times "
                  "data.class_weights" : "");
    return dist_agree(r->d, e);
}

/* The network and its optimizer, fitted to the data and initialised from the seed.
 * Collective, agreed. */
static int build_model(struct trainer *r, struct dmlp_error *e)
{
    const struct config *cfg = r->cfg;
    if (model_create(&r->model, r->train->d, cfg->model.layers, cfg->model.n_layers, cfg->loss,
                     e) == DMLP_OK &&
        dataset_check_network(r->train, r->model, r->train_files.name, e) == DMLP_OK &&
        (!r->test ||
         dataset_check_network(r->test, r->model, r->test_files.name, e) == DMLP_OK) &&
        (!r->val_files.n ||
         dataset_check_network(r->val, r->model, r->val_files.name, e) == DMLP_OK) &&
        set_loss(cfg, r->model, e) == DMLP_OK &&
        optim_create(&r->optim, &cfg->optimizer, r->model->n_params, e) == DMLP_OK) {
        struct rng init;
        rng_seed(&init, cfg->training.seed, TRAIN_STREAM_INIT);
        model_init_params(r->model, cfg->model.init, &init);
    }
    return dist_agree(r->d, e);
}

/* --resume auto: the newest checkpoint of checkpoint.dir that loads, latest.h5's target
 * first, then step-N.h5 by descending N. One that does not (latest.h5 dangling or looping,
 * a damaged file, a NaN in it) is skipped with a warning that names it and why, and the
 * one taken is named. When there are checkpoints but none loads, the run is refused
 * rather than started afresh beside them. Rank 0 lists the directory and broadcasts each
 * candidate, so every rank tries the same files in the same number of agreements whatever
 * its view of the file system; warn is rank 0's. Returns 1 with path set when one was
 * loaded into r and st; 0 with path "" when there is none, or with e set. */
static int resume_auto(const struct dist *d, const struct config *cfg, struct trainer *r,
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

/* The starting point: a fresh run's (epoch 0, step 0), or the state of the checkpoint that
 * --resume names (or finds, with auto), or fresh with the layers of --init-from.
 * Collective, agreed; every rank reads the checkpoint itself (replicated state, shared file
 * system). */
static int start_from(struct trainer *r, struct dmlp_error *e)
{
    const struct dist *d = r->d;
    const struct config *cfg = r->cfg;
    const struct train_options *opt = r->opt;
    FILE *log = r->info;
    struct checkpoint_state *st = &r->st;
    memset(st, 0, sizeof *st);
    st->seed = cfg->training.seed;
    st->best_metric = st->plateau_best = NAN;
    char path[PATH_MAX] = "";
    int loaded = 0;
    if (opt->resume && !strcmp(opt->resume, "auto")) {
        loaded = resume_auto(d, cfg, r, st, r->log, path, sizeof path, e); /* warns even
                                                                               with --quiet */
        if (!path[0] && !e->code && log)
            fprintf(log, "resume auto: no checkpoint in %s, starting fresh\n",
                    cfg->checkpoint.dir);
    } else if (opt->resume) {
        snprintf(path, sizeof path, "%s", opt->resume);
    }
    if (path[0]) {
        snprintf(r->resumed_from, sizeof r->resumed_from, "%s", path);
        if (loaded || checkpoint_load(path, r->model, r->optim, st, e) == DMLP_OK) {
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
        if (checkpoint_load_layers(opt->init_from, r->model, e) == DMLP_OK && log)
            fprintf(log, "initialised /layers from %s\n", opt->init_from);
    }
    /* The config governs the loss: a checkpoint's own δ and weights give way to it. */
    if (dist_agree(d, e) || normalize(d, cfg, r, path[0] != 0, e) ||
        normalize_targets(d, cfg, r, path[0] != 0, e) || set_loss(cfg, r->model, e))
        return e->code;
    return DMLP_OK;
}

/* What weights and lbfgs add to the step's buffers: the slice's weights, a sharded
 * epoch's per-step Σω, lbfgs's full-batch accumulator or per-piece losses. 1 when all
 * were allocated. */
static int alloc_extras(struct trainer *r, size_t slice)
{
    const struct config *cfg = r->cfg;
    const uint64_t B = cfg->training.batch_size, N = r->n_train;
    const uint64_t steps = cfg->data.drop_last ? N / B : (N + B - 1) / B;
    const size_t pieces = (size_t)((N + GRADSUM_EXACT_PIECE - 1) / GRADSUM_EXACT_PIECE);
    const int lbfgs = cfg->optimizer.name == DMLP_OPT_LBFGS;
    if (r->w)
        r->wb = malloc(slice * sizeof *r->wb);
    if (r->w && r->sharded)
        r->step_w = malloc((steps ? steps : 1) * sizeof *r->step_w);
    if (lbfgs && !cfg->training.reproducible)
        r->acc = dmlp_alloc_aligned(r->model->n_params * sizeof(float));
    if (lbfgs && cfg->training.reproducible)
        r->piece_loss = malloc(pieces * sizeof *r->piece_loss);
    return (!r->w || r->wb) && (!r->w || !r->sharded || r->step_w) &&
           (!lbfgs || r->acc || r->piece_loss);
}

/* The step's buffers and the gradient sum: the largest slice a rank takes is ceil(B / n)
 * (one more when sharded: slices there follow each shard's share; at least a whole piece
 * for the exact sum); the workspace also serves evaluation. Collective, agreed. */
static int allocate(struct trainer *r, struct dmlp_error *e)
{
    const struct config *cfg = r->cfg;
    const int n = dist_size(r->d);
    const size_t B = cfg->training.batch_size;
    size_t slice = B / (size_t)n + (B % (size_t)n != 0) + (size_t)r->sharded;
    if (r->sharded) {
        /* A sharded step gives rank i floor((s+1)·B·rows_i/N) - floor(s·B·rows_i/N) rows (the
         * last step its shard's rest, no more), so at most B·rows_i/N + 1: B/n + 1 only when
         * the shards are even. A validation split leaves them uneven (each shard holds out
         * its own draw), and a rank with more than its share overran the batch buffers. */
        uint64_t most = 0;
        for (int i = 0; i < n; i++)
            most = r->rows[i] > most ? r->rows[i] : most;
        __extension__ typedef unsigned __int128 u128;
        const u128 share = (u128)B * most / (r->n_train ? r->n_train : 1) + 2;
        const size_t need = share < most ? (size_t)share : (size_t)most;
        slice = need > slice ? need : slice;
    }
    if (gradsum_create(&r->sum, r->d, r->model, cfg, e) == DMLP_OK)
        slice = slice > gradsum_piece_rows(r->sum) ? slice : gradsum_piece_rows(r->sum);
    const size_t D = r->train->d, K = r->train->k;
    size_t xb_bytes, tb_bytes, perm_bytes;
    if (e->code) {
        /* reported below */
    } else if (dmlp_mul_size(&xb_bytes, slice, D) ||
               dmlp_mul_size(&xb_bytes, xb_bytes, sizeof(float)) ||
               dmlp_mul_size(&tb_bytes, slice, K) ||
               dmlp_mul_size(&tb_bytes, tb_bytes, sizeof(float)) ||
               dmlp_mul_size(&perm_bytes, r->train->n + 1, sizeof(uint64_t))) {
        dmlp_fail(e, DMLP_ERR_INPUT, "training.batch_size %zu: batch buffers overflow", B);
    } else if (model_reserve(r->model, slice > TRAIN_EVAL_CHUNK ? slice : TRAIN_EVAL_CHUNK,
                             e) == DMLP_OK) {
        r->xb = dmlp_alloc_aligned(xb_bytes);
        r->perm = malloc(perm_bytes);
        if (r->train->labels)
            r->lb = dmlp_alloc_aligned(slice * sizeof(int32_t));
        else
            r->tb = dmlp_alloc_aligned(tb_bytes);
        r->chunk_rows = slice;
        if (!r->xb || !r->perm || (!r->lb && !r->tb) || !alloc_extras(r, slice))
            dmlp_fail(e, DMLP_ERR_RUNTIME, "cannot allocate batch buffers for %zu rows of %zu "
                      "features", slice, D);
    }
    return dist_agree(r->d, e);
}

/* streamed: the weights each window's rows get as it is read (gather standardises the
 * rows a rank takes), then the reader. Agreed. */
static int start_stream(struct trainer *r, struct dmlp_error *e)
{
    if (!r->stream)
        return DMLP_OK;
    stream_weigh(r->stream, r->stream_cw, r->w);
    stream_start(r->stream, r->st.seed, e);
    return dist_agree(r->d, e);
}

/* Rank 0 tells what is about to run. */
static void report_run(const struct trainer *r)
{
    const struct config *cfg = r->cfg;
    const struct dataset *ds = r->train;
    const struct model *m = r->model;
    const int n = dist_size(r->d), threads = omp_get_max_threads();
    const uint64_t B = cfg->training.batch_size;
    char net[256];
    describe_network(net, sizeof net, m);
    fprintf(r->info, "dmlp %s: %d rank%s x %d thread%s; network %s (%zu parameters); "
            "%llu training samples (%s)%s; global batch %llu (%llu per rank); "
            "%llu steps/epoch\n",
            DMLP_VERSION, n, n > 1 ? "s" : "", threads, threads > 1 ? "s" : "", net,
            count_params(m), (unsigned long long)r->n_train,
            dmlp_placement_names[cfg->data.placement],
            m->norm_mean ? (m->target_mean ? ", standardised, targets standardised"
                                           : ", standardised")
                         : (m->target_mean ? ", targets standardised" : ""),
            (unsigned long long)B, (unsigned long long)((B + (uint64_t)n - 1) / (uint64_t)n),
            (unsigned long long)r->steps_per_epoch);
    char held[1100];
    if (r->stream) {
        const struct stream_stats *st = stream_stats(r->stream);
        snprintf(held, sizeof held, "streamed: %llu window%s of %zu rows an epoch, %.1f MiB "
                 "resident; the opening pass read %.0f MiB in %.2f s, %.0f MiB/s",
                 (unsigned long long)stream_windows(r->stream),
                 stream_windows(r->stream) == 1 ? "" : "s", stream_window_rows(r->stream),
                 (double)stream_resident_bytes(r->stream) / 1048576.0,
                 st->pass_bytes / 1048576.0, st->pass_seconds,
                 st->pass_bytes / 1048576.0 / (st->pass_seconds > 0 ? st->pass_seconds : 1e-9));
    } else if (r->sharded) {
        snprintf(held, sizeof held, "its shard");
    } else if (r->data_shm) {
        snprintf(held, sizeof held, "one copy per node, shared by its %d ranks",
                 dist_shm_node_size(r->data_shm));
    } else if (n > 1) {
        snprintf(held, sizeof held, "a copy on every rank: %s",
                 r->cfg->data.share_node ? r->data_note : "data.share_node is false");
    } else {
        snprintf(held, sizeof held, "the whole set");
    }
    fprintf(r->info, "training data: %s; rank 0 holds %zu rows, %.1f MiB (%s)\n",
            r->train_files.name, ds->n,
            (double)ds->n * (double)(ds->d + (ds->labels ? 1 : ds->k)) * 4.0 / 1048576.0, held);
    if (r->val && r->val_files.n)
        fprintf(r->info, "validation: %s\n", r->val_files.name);
    else if (r->val)
        fprintf(r->info, "validation: %g of %s held out (seed %llu)\n",
                cfg->data.validation_fraction, r->train_files.name,
                (unsigned long long)cfg->training.seed);
    if (n > 1)
        fprintf(r->info, "gradient allreduce: %s\n", gradsum_method(r->sum));
    fflush(r->info);
}

/* The run's shape from the global row count, and where the first step starts. */
static int shape(struct trainer *r, struct dmlp_error *e)
{
    const struct config *cfg = r->cfg;
    const uint64_t N = r->n_train, B = cfg->training.batch_size;
    r->steps_per_epoch = cfg->data.drop_last ? N / B : (N + B - 1) / B;
    if (cfg->optimizer.name == DMLP_OPT_LBFGS)
        r->steps_per_epoch = 1; /* an epoch is one lbfgs_step over the whole set */
    if (r->steps_per_epoch == 0)
        return dmlp_fail(e, DMLP_ERR_INPUT, "training.batch_size %llu exceeds the %llu "
                         "training samples and data.drop_last is set: no step to take",
                         (unsigned long long)B, (unsigned long long)N);
    r->total_steps = r->steps_per_epoch * cfg->training.epochs;
    struct checkpoint_state *st = &r->st;
    gradsum_set_fx_shift(r->sum, st->fx_shift); /* the exact sum resumes its binary point */
    if (st->step_in_epoch >= r->steps_per_epoch) { /* the batch size changed since the save */
        st->epoch++;
        st->step_in_epoch = 0;
    }
    r->lr = cfg->optimizer.lr;
    /* A resumed run that has nothing left to do already ends with its checkpoint. */
    r->saved_step = st->step > 0 ? st->step : UINT64_MAX;
    const uint64_t max_steps = cfg->training.max_steps;
    const struct config_early_stopping *es = &cfg->training.early_stopping;
    if ((max_steps && st->step >= max_steps) || (es->patience && st->bad_epochs >= es->patience))
        r->state = TRAINER_DONE;
    return DMLP_OK;
}

int trainer_setup(struct trainer *r, struct dmlp_error *err)
{
    const struct dist *d = r->d;
    const struct config *cfg = r->cfg;
    const struct train_options *opt = r->opt;
    const int rank0 = dist_rank(d) == 0;
    r->log = rank0 ? opt->log : NULL;
    r->info = opt->verbosity >= 1 ? r->log : NULL; /* what --quiet silences */
    r->bar = r->info && isatty(fileno(r->info));
    r->sharded = cfg->data.placement == DMLP_PLACEMENT_SHARDED;
    struct dmlp_error e = {0};
    if (load_data(d, cfg, r, &e) || build_model(r, &e) || sample_weights(cfg, r, &e))
        goto fail;
    /* checkpoint.dir, checked and locked once the config and the data are known good (a
     * run refused for those leaves no directory behind), before anything is read from it:
     * another training using it is refused here, not found out at a save hours later. */
    if (rank0 && opt->save_checkpoints)
        rundir_open(&r->dir, cfg->checkpoint.dir, r->log, &e);
    if (dist_agree(d, &e) || start_from(r, &e) || allocate(r, &e) || shape(r, &e) ||
        start_stream(r, &e))
        goto fail;
    if (r->info)
        report_run(r);
    report_placement(d, r->info, opt->verbosity >= 2);
    /* metrics.jsonl: rank 0 appends; a failure to open it only costs the file. */
    if (rank0 && opt->save_checkpoints) {
        struct dmlp_error open_err = {0};
        if (runlog_open(&r->mlog, cfg->checkpoint.dir, &open_err) && r->log)
            fprintf(r->log, "warning: %s\n", open_err.msg);
        if (r->mlog)
            runlog_start(r->mlog, r->yaml, dist_size(d), omp_get_max_threads(), r->st.epoch,
                         r->st.step, r->resumed_from[0] ? r->resumed_from : NULL);
    }
    return DMLP_OK;
fail:
    *err = e;
    return e.code;
}
