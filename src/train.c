#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "kernels.h"
#include "optim.h"
#include "rng.h"

/* Rows per forward pass when evaluating. */
enum { EVAL_CHUNK = 512 };

/* The rng streams: 0 for the weight initialisation, 1 + e for epoch e's permutation. */
enum { STREAM_INIT = 0, STREAM_EPOCH = 1 };

void train_slice(uint64_t count, int n, int r, uint64_t *offset, uint64_t *len)
{
    const uint64_t base = count / (uint64_t)n, rem = count % (uint64_t)n, ur = (uint64_t)r;
    *len = base + (ur < rem);
    *offset = ur * base + (ur < rem ? ur : rem);
}

int train_check_data(const struct model *m, const struct dataset *ds, const char *what,
                     struct dmlp_error *err)
{
    const size_t k = model_output_dim(m);
    if (ds->d != model_input_dim(m))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: samples have %zu features, but the network "
                         "takes %zu inputs", what, ds->d, model_input_dim(m));
    if (m->loss == DMLP_LOSS_CROSS_ENTROPY) {
        if (!ds->labels)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: loss cross_entropy needs /labels, but "
                             "the file has /targets (use loss: mse for regression)", what);
        if (ds->k > k)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: the data has %zu classes, but the "
                             "output layer has %zu units", what, ds->k, k);
    } else {
        if (!ds->targets)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: loss mse needs /targets, but the file "
                             "has /labels only (use loss: cross_entropy with a softmax "
                             "output)", what);
        if (ds->k != k)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: /targets has %zu columns, but the "
                             "output layer has %zu units", what, ds->k, k);
    }
    return DMLP_OK;
}

int train_evaluate(const struct dist *d, struct model *m, const struct dataset *ds,
                   struct eval_result *res, struct dmlp_error *err)
{
    struct dmlp_error e = {0};
    if (model_reserve(m, EVAL_CHUNK, &e) == DMLP_OK)
        train_check_data(m, ds, "evaluation data", &e);
    if (dist_agree(d, &e)) {
        *err = e;
        return e.code;
    }
    uint64_t off, len;
    train_slice(ds->n, dist_size(d), dist_rank(d), &off, &len);
    const size_t k = model_output_dim(m);
    double loss = 0.0;
    uint64_t correct = 0;
    for (uint64_t i = off; i < off + len; i += EVAL_CHUNK) {
        const size_t b = (size_t)(off + len - i < EVAL_CHUNK ? off + len - i : EVAL_CHUNK);
        const float *Y = model_forward(m, ds->features + i * ds->d, b);
        if (ds->labels)
            correct += kernel_count_correct(Y, ds->labels + i, b, k);
        loss += model_loss(m, ds->labels ? ds->labels + i : NULL,
                           ds->targets ? ds->targets + i * ds->k : NULL, b, 0);
    }
    double sums[1] = {loss};
    uint64_t counts[2] = {correct, len};
    dist_allreduce_sum_double(d, sums, 1);
    dist_allreduce_sum_u64(d, counts, 2);
    res->samples = counts[1];
    res->correct = counts[0];
    res->loss = counts[1] ? sums[0] / (double)counts[1] : NAN;
    res->accuracy = ds->labels && counts[1] ? (double)counts[0] / (double)counts[1] : NAN;
    return DMLP_OK;
}

/* Everything a run owns, freed in one place. */
struct run {
    struct dataset *train, *test;
    struct model *model;
    struct optim *optim;
    float *xb, *tb;      /* the rank's batch slice: features and targets */
    int32_t *lb;         /* labels */
    uint64_t *perm;      /* the epoch's visiting order */
};

static void run_free(struct run *r)
{
    dataset_free(&r->train);
    dataset_free(&r->test);
    model_free(&r->model);
    optim_free(&r->optim);
    dmlp_free_aligned(r->xb);
    dmlp_free_aligned(r->tb);
    dmlp_free_aligned(r->lb);
    free(r->perm);
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

/* Sets up data, model, optimizer and starting point; collective, agreed. */
static int setup(const struct dist *d, const struct config *cfg, const struct train_options *opt,
                 struct run *r, struct checkpoint_state *st, struct dmlp_error *err)
{
    struct dmlp_error e = {0};
    FILE *log = dist_rank(d) == 0 ? opt->log : NULL;
    if (dataset_read(&r->train, cfg->data.train, &e) == DMLP_OK && cfg->data.test)
        dataset_read(&r->test, cfg->data.test, &e);
    if (dist_agree(d, &e))
        goto fail;

    if (model_create(&r->model, r->train->d, cfg->model.layers, cfg->model.n_layers, cfg->loss,
                     &e) == DMLP_OK &&
        train_check_data(r->model, r->train, cfg->data.train, &e) == DMLP_OK &&
        (!r->test || train_check_data(r->model, r->test, cfg->data.test, &e) == DMLP_OK) &&
        optim_create(&r->optim, &cfg->optimizer, r->model->n_params, &e) == DMLP_OK) {
        struct rng init;
        rng_seed(&init, cfg->training.seed, STREAM_INIT);
        model_init_params(r->model, cfg->model.init, &init);
    }
    if (dist_agree(d, &e))
        goto fail;

    memset(st, 0, sizeof *st);
    st->seed = cfg->training.seed;
    char path[PATH_MAX] = "";
    if (opt->resume && !strcmp(opt->resume, "auto")) {
        if (!checkpoint_latest(cfg->checkpoint.dir, path, sizeof path) && log)
            fprintf(log, "resume auto: no checkpoint in %s, starting fresh\n",
                    cfg->checkpoint.dir);
    } else if (opt->resume) {
        snprintf(path, sizeof path, "%s", opt->resume);
    }
    /* Every rank reads the checkpoint itself (replicated state, shared file system). */
    if (path[0]) {
        if (checkpoint_load(path, r->model, r->optim, st, &e) == DMLP_OK) {
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
    if (dist_agree(d, &e))
        goto fail;

    /* The largest slice a rank takes is ceil(B / n); the workspace also serves evaluation. */
    const int n = dist_size(d);
    const size_t B = cfg->training.batch_size;
    const size_t slice = B / (size_t)n + (B % (size_t)n != 0);
    const size_t D = r->train->d, K = r->train->k;
    size_t xb_bytes, tb_bytes, perm_bytes;
    if (dmlp_mul_size(&xb_bytes, slice, D) || dmlp_mul_size(&xb_bytes, xb_bytes, sizeof(float)) ||
        dmlp_mul_size(&tb_bytes, slice, K) || dmlp_mul_size(&tb_bytes, tb_bytes, sizeof(float)) ||
        dmlp_mul_size(&perm_bytes, r->train->n, sizeof(uint64_t))) {
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

/* Rank 0 writes, then every rank learns whether it worked. */
static int save(const struct dist *d, const struct config *cfg, const char *yaml,
                const struct run *r, const struct checkpoint_state *st,
                struct train_result *res, struct dmlp_error *err)
{
    struct dmlp_error e = {0};
    if (dist_rank(d) == 0)
        checkpoint_save(cfg->checkpoint.dir, r->model, r->optim, st, yaml,
                        cfg->checkpoint.keep_last, res->checkpoint, sizeof res->checkpoint, &e);
    if (dist_agree(d, &e)) {
        *err = e;
        return e.code;
    }
    dist_bcast(d, res->checkpoint, sizeof res->checkpoint, 0);
    return DMLP_OK;
}

int train_run(const struct dist *d, const struct config *cfg, const char *config_yaml,
              const struct train_options *opt, struct train_result *res,
              struct dmlp_error *err)
{
    memset(res, 0, sizeof *res);
    res->train_accuracy = res->test_accuracy = NAN;
    struct run r = {0};
    struct checkpoint_state st;
    int rc = setup(d, cfg, opt, &r, &st, err);
    if (rc) {
        run_free(&r);
        return rc;
    }
    const int n = dist_size(d), rank = dist_rank(d);
    FILE *log = rank == 0 ? opt->log : NULL;
    const struct dataset *ds = r.train;
    struct model *m = r.model;
    const uint64_t N = ds->n, B = cfg->training.batch_size;
    const size_t D = ds->d, K = ds->k;
    const uint64_t steps_per_epoch = cfg->data.drop_last ? N / B : (N + B - 1) / B;
    if (steps_per_epoch == 0) {
        run_free(&r);
        return dmlp_fail(err, DMLP_ERR_INPUT, "training.batch_size %llu exceeds the %llu "
                         "training samples and data.drop_last is set: no step to take",
                         (unsigned long long)B, (unsigned long long)N);
    }
    if (st.step_in_epoch >= steps_per_epoch) { /* the batch size changed since the save */
        st.epoch++;
        st.step_in_epoch = 0;
    }
    if (log) {
        char net[256];
        describe_network(net, sizeof net, m);
        fprintf(log, "dmlp %s: %d rank%s x %d thread%s; network %s (%zu parameters); "
                "%llu training samples; global batch %llu (%llu per rank); %llu steps/epoch\n",
                DMLP_VERSION, n, n > 1 ? "s" : "", omp_get_max_threads(),
                omp_get_max_threads() > 1 ? "s" : "", net, count_params(m),
                (unsigned long long)N, (unsigned long long)B,
                (unsigned long long)((B + (uint64_t)n - 1) / (uint64_t)n),
                (unsigned long long)steps_per_epoch);
        fflush(log);
    }

    const double lr = cfg->optimizer.lr;
    const uint64_t max_steps = cfg->training.max_steps;
    /* A resumed run that has nothing left to do already ends with its checkpoint. */
    uint64_t saved_step = st.step > 0 ? st.step : UINT64_MAX;
    int stop = max_steps && st.step >= max_steps;
    for (uint64_t epoch = st.epoch; epoch < cfg->training.epochs && !stop; epoch++) {
        struct rng shuffle;
        rng_seed(&shuffle, st.seed, STREAM_EPOCH + epoch);
        if (cfg->data.shuffle)
            rng_permutation(&shuffle, r.perm, (size_t)N);
        else
            for (uint64_t i = 0; i < N; i++)
                r.perm[i] = i;

        const double t0 = dmlp_now();
        double loss_sum = 0.0;
        size_t correct = 0;
        uint64_t local_seen = 0, epoch_seen = 0;
        for (uint64_t s = st.step_in_epoch; s < steps_per_epoch; s++) {
            const uint64_t lo = s * B, count = N - lo < B ? N - lo : B;
            uint64_t off, len;
            train_slice(count, n, rank, &off, &len);
            const uint64_t *idx = r.perm + lo + off;
            for (uint64_t i = 0; i < len; i++) {
                memcpy(r.xb + i * D, ds->features + idx[i] * D, D * sizeof(float));
                if (r.lb)
                    r.lb[i] = ds->labels[idx[i]];
                else
                    memcpy(r.tb + i * K, ds->targets + idx[i] * K, K * sizeof(float));
            }
            loss_sum += model_train_batch(m, r.xb, r.lb, r.tb, (size_t)len, &correct);
            /* Σ over ranks of the per-sample gradient sums, then the mean over the step's
             * global samples: the single-process update, for any number of ranks. */
            dist_allreduce_sum_float(d, m->grads, m->n_params);
            optim_step(r.optim, m->params, m->grads, (float)(1.0 / (double)count), lr);
            local_seen += len;
            epoch_seen += count;
            st.step++;
            st.samples_seen += count;
            st.step_in_epoch = s + 1;
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
        struct eval_result ev = {0};
        if (r.test && (rc = train_evaluate(d, m, r.test, &ev, err))) {
            run_free(&r);
            return rc;
        }
        res->test_accuracy = r.test ? ev.accuracy : NAN;
        if (log) {
            fprintf(log, "epoch %4llu/%u  loss %.5f", (unsigned long long)epoch + 1,
                    cfg->training.epochs, res->train_loss);
            if (ds->labels)
                fprintf(log, "  acc %.4f", res->train_accuracy);
            if (r.test)
                fprintf(log, ds->labels ? "  test_acc %.4f" : "  test_loss %.5f",
                        ds->labels ? ev.accuracy : ev.loss);
            fprintf(log, "  %.0f samples/s  %.2fs\n",
                    elapsed > 0 ? (double)epoch_seen / elapsed : 0.0, elapsed);
            fflush(log);
        }
        const int epoch_end = st.step_in_epoch == 0;
        if (opt->save_checkpoints && epoch_end && cfg->checkpoint.every_epochs &&
            st.epoch % cfg->checkpoint.every_epochs == 0) {
            if ((rc = save(d, cfg, config_yaml, &r, &st, res, err))) {
                run_free(&r);
                return rc;
            }
            saved_step = st.step;
        }
    }
    /* Training always ends with a checkpoint. */
    if (opt->save_checkpoints && saved_step != st.step) {
        if ((rc = save(d, cfg, config_yaml, &r, &st, res, err))) {
            run_free(&r);
            return rc;
        }
    }
    if (log && res->checkpoint[0])
        fprintf(log, "checkpoint: %s\n", res->checkpoint);
    res->steps = st.step;
    res->epochs_done = st.epoch;
    res->model = r.model;
    r.model = NULL;
    run_free(&r);
    return DMLP_OK;
}
