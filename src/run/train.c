/* train: the epoch loop and the step (docs/architecture.md, "A step"). train_run is setup
 * (train_setup.c), epochs, finish; an epoch is steps, then its loss, evaluation, report and
 * checkpoints; a step is gather, forward, loss, backward, gradient sum, update. */
#define _POSIX_C_SOURCE 200809L
#include "run/trainer.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/kernels.h"
#include "nn/lbfgs.h"
#include "nn/vec.h"
#include "core/rng.h"
#include "nn/schedule.h"
#include "run/stop.h"
#include "core/partition.h"

/* An epoch's running figures. */
struct epoch {
    uint64_t index;                /* 0-based */
    double t0, elapsed, last_draw;
    double timers[TIMER_COUNT];    /* this rank's seconds per phase */
    uint64_t first_step;
    double loss_sum;               /* Σ ω·ℓ over this rank's samples */
    double weight_sum;             /* Σ ω over them (their count when unweighted) */
    size_t correct;
    uint64_t local_seen, seen;     /* samples: this rank's, all ranks' */
    double global_loss;            /* lbfgs: the epoch's final loss, over all ranks (else NaN) */
};

/* The rows a rank takes in a step: perm[begin, end), of count in all ranks' step, the
 * first of them at position first of the step's global batch. */
struct step_rows {
    uint64_t begin, end, count, first;
};

/* Rank 0 writes (a step checkpoint, or best.h5 when best is set), then every rank learns
 * whether it worked. */
static int save(struct trainer *t, int best, struct dmlp_error *err)
{
    const struct config *cfg = t->cfg;
    struct train_result *res = t->res;
    struct dmlp_error e = {0};
    if (dist_rank(t->d) == 0) {
        if (best)
            checkpoint_save_as(cfg->checkpoint.dir, "best.h5", t->model, t->optim, &t->st,
                               t->yaml, &e);
        else
            checkpoint_save(cfg->checkpoint.dir, t->model, t->optim, &t->st, t->yaml,
                            cfg->checkpoint.keep_last, res->checkpoint,
                            sizeof res->checkpoint, &e);
    }
    if (dist_agree(t->d, &e)) {
        *err = e;
        return e.code;
    }
    if (!best) {
        dist_bcast(t->d, res->checkpoint, sizeof res->checkpoint, 0);
        t->saved_step = t->st.step;
    }
    return DMLP_OK;
}

/* The epoch's visiting order. Replicated: one permutation of all rows, the same on every
 * rank. Sharded: each rank permutes its own rows, on a stream of its own. */
static void shuffle(struct trainer *t, uint64_t epoch)
{
    const uint64_t n = t->train->n;
    if (t->stream) /* the reader's order: stream_positions, step by step */
        return;
    if (!t->cfg->data.shuffle || t->optim->lbfgs) { /* a full batch has no order */
        for (uint64_t i = 0; i < n; i++)
            t->perm[i] = i;
        return;
    }
    const uint64_t rank_key = t->sharded ? 0x9e3779b97f4a7c15ull * (uint64_t)(dist_rank(t->d) + 1)
                                         : 0;
    struct rng r;
    rng_seed(&r, t->st.seed + rank_key, TRAIN_STREAM_EPOCH + epoch);
    rng_permutation(&r, t->perm, (size_t)n);
}

/* Which of the epoch's rows this rank takes in step s (docs/architecture.md, "Contracts the
 * tests pin down"): its slice of the global batch (replicated), or its shard's share of the
 * step (sharded). */
static struct step_rows step_rows(const struct trainer *t, uint64_t s)
{
    struct step_rows sr;
    const uint64_t B = t->cfg->training.batch_size;
    if (t->sharded) {
        uint64_t off, len;
        sr.first = 0;
        for (int r = 0; r <= dist_rank(t->d); r++) { /* the ranks before take the first */
            dmlp_shard_step(t->rows, dist_size(t->d), r, B, s, t->steps_per_epoch,
                            t->cfg->data.drop_last, &off, &len, &sr.count);
            sr.first += r < dist_rank(t->d) ? len : 0;
        }
        sr.begin = off;
        sr.end = off + len;
        return sr;
    }
    const uint64_t lo = s * B;
    sr.count = t->n_train - lo < B ? t->n_train - lo : B;
    gradsum_rows(t->sum, sr.count, &sr.begin, &sr.end);
    sr.first = sr.begin;
    sr.begin += lo;
    sr.end += lo;
    return sr;
}

/* Copies the rows idx[0..len) of the training set into the batch buffers. Streamed rows
 * come from disk as they are: they are standardised here, with the same operations that
 * standardise the other placements' sets once (so each rank does only its own rows). */
static void gather(struct trainer *t, const uint64_t *idx, size_t len)
{
    const struct dataset *ds = t->train;
    const struct model *m = t->model;
    const size_t D = ds->d, K = ds->k;
    /* The rows are scattered over the set, so the copy waits on memory: each thread of the
     * rank takes its share of them (a copy, whatever thread makes it). */
    PARALLEL_FOR_IF(gemm_may_fork_for(len * D, VEC_FORK_ELEMS), ,
        for (size_t i = 0; i < len; i++) {
            memcpy(t->xb + i * D, ds->features + idx[i] * D, D * sizeof(float));
            if (t->lb)
                t->lb[i] = ds->labels[idx[i]];
            else
                memcpy(t->tb + i * K, ds->targets + idx[i] * K, K * sizeof(float));
            if (t->w)
                t->wb[i] = t->w[idx[i]];
        });
    if (t->stream && m->norm_mean)
        kernel_vec()->standardize(t->xb, len, D, m->norm_mean, m->norm_std);
    if (t->stream && m->target_mean && t->tb)
        kernel_vec()->standardize(t->tb, len, K, m->target_mean, m->target_std);
}

/* Σω of the step's global batch, the divisor of its mean gradient: the sample count when
 * unweighted; else summed in the epoch order's order, here (replicated: every rank holds
 * every weight, so it is the same for any rank count) or before the epoch (sharded). */
static double step_weight(const struct trainer *t, uint64_t s, const struct step_rows *sr)
{
    if (!t->w)
        return (double)sr->count;
    if (t->sharded)
        return t->step_w[s];
    /* streamed: perm holds the step's own positions, from 0 */
    const uint64_t lo = t->stream ? 0 : s * t->cfg->training.batch_size;
    double sum = 0.0;
    for (uint64_t i = lo; i < lo + sr->count; i++)
        sum += (double)t->w[t->perm[i]];
    return sum;
}

/* Sharded with weights: each step's Σω over all ranks for this epoch, from each rank's
 * share of every step, in one sum (before the steps, so each step's one allreduce stays
 * the only collective in the loop). */
static void sharded_step_weights(struct trainer *t)
{
    for (uint64_t s = 0; s < t->steps_per_epoch; s++) {
        const struct step_rows sr = step_rows(t, s);
        double sum = 0.0;
        for (uint64_t i = sr.begin; i < sr.end; i++)
            sum += (double)t->w[t->perm[i]];
        t->step_w[s] = sum;
    }
    dist_allreduce_sum_double(t->d, t->step_w, (size_t)t->steps_per_epoch);
}

/* Gather, forward, loss and backward over the rows perm[a, a + len), the first of them at
 * position first of the step's global batch (dropout's key): the per-sample gradient sum
 * in m->grads (zeros for no rows), the loss and correct count added. */
static void compute(struct trainer *t, struct epoch *ep, uint64_t a, size_t len,
                    uint64_t first, double *loss, size_t *correct)
{
    struct model *m = t->model;
    double t0 = dmlp_now();
    gather(t, t->perm + a, len);
    double t1 = dmlp_now();
    ep->timers[TIMER_DATA] += t1 - t0;
    if (len) {
        model_set_dropout(m, 1, t->st.seed, t->st.step, first);
        const float *Y = model_forward(m, t->xb, len);
        if (t->lb)
            *correct += kernel_count_correct(Y, t->lb, len, model_output_dim(m));
        *loss += model_loss(m, t->lb, t->tb, t->w ? t->wb : NULL, len, 1);
        for (size_t i = 0; i < len; i++)
            ep->weight_sum += t->w ? (double)t->wb[i] : 1.0;
        t0 = t1;
        t1 = dmlp_now();
        ep->timers[TIMER_FORWARD] += t1 - t0;
    }
    const size_t bucket = gradsum_bucket(t->sum);
    if (bucket) /* an empty slice computes zeros and starts the same buckets */
        model_backward_chunked(m, t->xb, len, bucket, gradsum_ready, t->sum);
    else if (len)
        model_backward(m, t->xb, len);
    else
        memset(m->grads, 0, m->n_params * sizeof(float));
    model_set_dropout(m, 0, 0, 0, 0); /* evaluation, between steps, runs without */
    ep->timers[TIMER_BACKWARD] += dmlp_now() - t1;
}

/* The step's summed gradient: Σ over ranks of the per-sample gradient sums, computed in
 * pieces when the gradient sum asks for them, redone when it asks for that (the exact
 * sum's overflow), with a stop request riding along. */
static void gradient(struct trainer *t, struct epoch *ep, const struct step_rows *sr,
                     struct gradsum_status *gs)
{
    const size_t piece = gradsum_piece_rows(t->sum);
    double loss;
    size_t correct;
    do {
        loss = 0.0;
        correct = 0;
        gradsum_begin(t->sum, sr->count, stop_requested() || t->data_failed);
        uint64_t a = sr->begin;
        do {
            const uint64_t b = piece && sr->end - a > piece ? a + piece : sr->end;
            compute(t, ep, a, (size_t)(b - a), sr->first + (a - sr->begin), &loss, &correct);
            gradsum_piece(t->sum);
            a = b;
        } while (a < sr->end);
        const double t0 = dmlp_now();
        gradsum_finish(t->sum, gs);
        ep->timers[TIMER_SYNC] += gs->waited;
        ep->timers[TIMER_ALLREDUCE] += dmlp_now() - t0 - gs->waited;
    } while (gs->retry);
    ep->loss_sum += loss;
    ep->correct += correct;
}

/* The descent step, the same on every rank (they hold the same summed gradient): the mean
 * over the step's global samples (Σω ℓ / Σω when weighted; a step whose weights are all
 * 0 has no gradient), clipped, at the schedule's learning rate. */
static int update(struct trainer *t, struct epoch *ep, double weight)
{
    const double t0 = dmlp_now();
    const struct config *cfg = t->cfg;
    struct model *m = t->model;
    const float scale = weight > 0 ? (float)(1.0 / weight) : 0.0f;
    if (cfg->optimizer.clip_norm > 0)
        optim_clip_grad_norm(m->grads, m->n_params, scale, cfg->optimizer.clip_norm);
    t->lr = schedule_lr(&cfg->optimizer, cfg->training.batch_size, t->st.step,
                        t->steps_per_epoch, t->total_steps);
    if (cfg->optimizer.schedule.name == DMLP_SCHEDULE_PLATEAU && t->st.plateau_scale > 0)
        t->lr *= t->st.plateau_scale;
    const int bad = optim_step(t->optim, m->params, m->grads, scale, t->lr);
    ep->timers[TIMER_UPDATE] += dmlp_now() - t0;
    return bad;
}

/* The step diverged: a non-finite value in what ("gradient", or "parameter" when the update
 * overflowed a finite gradient) of layer `layer`'s weight or bias (part). */
static int diverged(const struct trainer *t, const struct epoch *ep, const char *what,
                    size_t layer, const char *part, struct dmlp_error *err)
{
    char kept[PATH_MAX + 64];
    if (t->saved_step != UINT64_MAX && t->opt->save_checkpoints)
        snprintf(kept, sizeof kept, "the last checkpoint in %s (step %llu) is kept",
                 t->cfg->checkpoint.dir, (unsigned long long)t->saved_step);
    else
        snprintf(kept, sizeof kept, "this run had written no checkpoint yet");
    return dmlp_fail(err, DMLP_ERR_RUNTIME, "training diverged: non-finite %s at step %llu "
                     "(epoch %llu) in layer %zu (%s); lower optimizer.lr or set "
                     "optimizer.clip_norm. Nothing was saved for this step; %s", what,
                     (unsigned long long)t->st.step + 1, (unsigned long long)ep->index + 1,
                     layer, part, kept);
}

/* The update left a parameter non-finite: name the gradient that did it, or else the
 * parameter that overflowed. Every rank applied the same update and finds the same. */
static int diverged_update(const struct trainer *t, const struct epoch *ep,
                           struct dmlp_error *err)
{
    const struct model *m = t->model;
    size_t layer = 0;
    const char *part = "weight";
    if (model_find_nonfinite(m, m->grads, &layer, &part))
        return diverged(t, ep, "gradient", layer, part, err);
    model_find_nonfinite(m, m->params, &layer, &part);
    return diverged(t, ep, "parameter after the update", layer, part, err);
}

/* streamed: the resident rows of the step's global batch into perm[0, count), and the
 * rank's rows rebased onto them. A failed read takes no rows and asks for a stop, which
 * the step's sum carries to every rank. */
static void stream_step(struct trainer *t, struct epoch *ep, uint64_t s, struct step_rows *sr)
{
    const uint64_t lo = s * t->cfg->training.batch_size;
    double waited = 0.0;
    if (stream_positions(t->stream, ep->index, lo, lo + sr->count, t->perm, &waited,
                         &t->data_err) != DMLP_OK)
        t->data_failed = 1;
    ep->timers[TIMER_DATA] += waited;
    sr->begin -= lo;
    sr->end = t->data_failed ? sr->begin : sr->end - lo;
}

/* Step s of the epoch. */
static int step(struct trainer *t, struct epoch *ep, uint64_t s, struct dmlp_error *err)
{
    struct step_rows sr = step_rows(t, s);
    struct gradsum_status gs;
    if (t->stream)
        stream_step(t, ep, s, &sr);
    gradient(t, ep, &sr, &gs);
    /* A stop: some rank's read may have failed. Every rank is here (the stop is in the
     * sum), so they agree on it before anything is applied. */
    if (gs.signalled && t->stream && dist_agree(t->d, &t->data_err)) {
        *err = t->data_err;
        return err->code;
    }
    /* A non-finite gradient: found while summing (exact), or by the update's own pass,
     * which it leaves non-finite (the trainer stops; its last checkpoint is kept). */
    if (gs.bad)
        return diverged(t, ep, "gradient", gs.bad_layer, gs.bad_what, err);
    if (update(t, ep, step_weight(t, s, &sr)))
        return diverged_update(t, ep, err);
    struct checkpoint_state *st = &t->st;
    st->fx_shift = gradsum_fx_shift(t->sum);
    st->step++;
    st->samples_seen += sr.count;
    st->step_in_epoch = s + 1;
    ep->local_seen += sr.end - sr.begin;
    ep->seen += sr.count;
    const uint64_t max_steps = t->cfg->training.max_steps;
    if (gs.signalled)
        t->state = TRAINER_SIGNALLED;
    else if (max_steps && st->step >= max_steps)
        t->state = TRAINER_DONE;
    return DMLP_OK;
}

/* ---- lbfgs: an epoch is one lbfgs_step over the whole training set ------------------- */

struct full_batch {
    struct trainer *t;
    struct epoch *ep;
    struct gradsum_status bad; /* the evaluation that found a non-finite gradient */
    int signalled;
};

/* Σ ω ℓ over this rank's rows, and their gradient sum over all ranks in m->grads (exact:
 * per 32-row piece, the piece losses in t->piece_loss; else chunk by chunk through
 * t->acc). */
static void full_batch_sum(struct trainer *t, struct epoch *ep, struct gradsum_status *gs,
                           double *loss)
{
    struct model *m = t->model;
    uint64_t begin = 0, end = t->train->n;
    if (!t->sharded)
        gradsum_rows(t->sum, t->n_train, &begin, &end);
    const size_t piece = gradsum_piece_rows(t->sum);
    do {
        size_t correct = 0;
        *loss = 0.0;
        if (t->acc)
            memset(t->acc, 0, m->n_params * sizeof(float));
        else
            memset(t->piece_loss, 0, (size_t)((t->n_train + piece - 1) / piece) *
                                         sizeof *t->piece_loss);
        gradsum_begin(t->sum, t->n_train, stop_requested());
        uint64_t a = begin;
        do {
            const size_t step = piece ? piece : t->chunk_rows;
            const uint64_t b = end - a > step ? a + step : end;
            double l = 0.0;
            compute(t, ep, a, (size_t)(b - a), a, &l, &correct);
            *loss += l;
            if (t->acc)
                kernel_vec()->add(t->acc, m->grads, m->n_params);
            else
                t->piece_loss[a / piece] = l;
            gradsum_piece(t->sum);
            a = b;
        } while (a < end);
        if (t->acc)
            memcpy(m->grads, t->acc, m->n_params * sizeof(float));
        gradsum_finish(t->sum, gs);
    } while (gs->retry);
    gradsum_check_finite(t->sum, gs); /* lbfgs evaluates before it updates */
}

/* lbfgs's objective: the loss Σωℓ / Σω over the whole training set and its gradient,
 * the same on every rank (the exact sum's losses added in piece order, so the same for
 * any rank count). */
static int full_batch(void *ctx, float *grad, double *loss)
{
    struct full_batch *c = ctx;
    struct trainer *t = c->t;
    struct model *m = t->model;
    struct gradsum_status gs;
    double sum;
    full_batch_sum(t, c->ep, &gs, &sum);
    c->signalled |= gs.signalled;
    if (gs.bad) {
        c->bad = gs;
        return 1;
    }
    if (t->acc) {
        dist_allreduce_sum_double(t->d, &sum, 1);
    } else {
        const size_t pieces = (size_t)((t->n_train + GRADSUM_EXACT_PIECE - 1) /
                                       GRADSUM_EXACT_PIECE);
        dist_allreduce_sum_double(t->d, t->piece_loss, pieces);
        sum = 0.0;
        for (size_t i = 0; i < pieces; i++)
            sum += t->piece_loss[i];
    }
    const float scale = (float)(1.0 / t->w_total);
    for (size_t i = 0; i < m->n_params; i++)
        grad[i] = m->grads[i] * scale;
    *loss = sum / t->w_total;
    c->ep->seen += t->n_train;
    return 0;
}

static int lbfgs_epoch(struct trainer *t, struct epoch *ep, struct dmlp_error *err)
{
    struct full_batch c = {.t = t, .ep = ep};
    double loss;
    int evals;
    const double t0 = dmlp_now();
    const int rc = lbfgs_step(t->optim->lbfgs, t->model->params, full_batch, &c, &loss, &evals);
    ep->timers[TIMER_UPDATE] += dmlp_now() - t0;
    if (rc)
        return diverged(t, ep, "gradient", c.bad.bad_layer, c.bad.bad_what, err);
    struct checkpoint_state *st = &t->st;
    t->optim->steps++;
    st->step++;
    st->samples_seen += t->n_train * (uint64_t)evals;
    st->step_in_epoch = 1;
    ep->global_loss = loss;
    if (c.signalled)
        t->state = TRAINER_SIGNALLED;
    else if (t->cfg->training.max_steps && st->step >= t->cfg->training.max_steps)
        t->state = TRAINER_DONE;
    return DMLP_OK;
}

/* The progress bar, redrawn at most four times a second. */
static void progress(const struct trainer *t, struct epoch *ep, uint64_t s)
{
    const double now = dmlp_now();
    if (!t->bar || (now - ep->last_draw < 0.25 && s + 1 != t->steps_per_epoch))
        return;
    const double spent = now - ep->t0, done = (double)(s + 1 - ep->first_step);
    runlog_progress(t->info, ep->index + 1, t->cfg->training.epochs, s + 1, t->steps_per_epoch,
                    ep->weight_sum > 0 ? ep->loss_sum / ep->weight_sum : 0.0,
                    spent > 0 ? (double)ep->seen / spent : 0.0,
                    spent / done * (double)(t->steps_per_epoch - s - 1));
    ep->last_draw = now;
}

/* The epoch's training loss and accuracy over all ranks; a non-finite mean loss ends the
 * run (the per-step guard sees gradients, not losses). */
static int epoch_loss(struct trainer *t, const struct epoch *ep, struct dmlp_error *err)
{
    struct train_result *res = t->res;
    double sums[2] = {ep->loss_sum, ep->weight_sum};
    uint64_t counts[2] = {ep->correct, ep->local_seen};
    dist_allreduce_sum_double(t->d, sums, 2);
    dist_allreduce_sum_u64(t->d, counts, 2);
    /* Unweighted, Σω is the count: the same mean as Σℓ / count, to the bit. */
    res->train_loss = counts[1] && sums[1] > 0 ? sums[0] / sums[1] : NAN;
    if (!isnan(ep->global_loss))
        res->train_loss = ep->global_loss;
    res->train_accuracy = t->train->labels && counts[1] ? (double)counts[0] / (double)counts[1]
                                                        : NAN;
    res->epochs_done = t->st.epoch;
    if (counts[1] && !isfinite(res->train_loss))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "training diverged in epoch %llu (mean "
                         "loss %g): lower optimizer.lr; the last checkpoint is kept",
                         (unsigned long long)ep->index + 1, res->train_loss);
    return DMLP_OK;
}

/* Validation and test after the epoch (skipped after a stop request, which goes straight
 * to the checkpoint): the figures in t->res, NaN where there is no set. */
static int epoch_evaluate(struct trainer *t, struct epoch *ep, struct metrics_report *val,
                          struct metrics_report *test, struct dmlp_error *err)
{
    const double t0 = dmlp_now();
    const int evaluating = t->state != TRAINER_SIGNALLED;
    int rc = DMLP_OK;
    if (evaluating && t->val)
        rc = metrics_evaluate_report(t->d, t->model, t->val, t->sharded, val, err);
    if (!rc && evaluating && t->test)
        rc = metrics_evaluate_report(t->d, t->model, t->test, t->sharded, test, err);
    if (!evaluating || !t->val)
        val->loss = val->accuracy = NAN;
    if (!evaluating || !t->test)
        test->loss = test->accuracy = NAN;
    t->res->val_loss = val->loss;
    t->res->val_accuracy = val->accuracy;
    t->res->test_accuracy = test->accuracy;
    ep->timers[TIMER_EVAL] = dmlp_now() - t0;
    return rc;
}

/* optimizer.schedule plateau, after a whole epoch: the watched loss (validation or
 * training), and a cut of the rate when it has stalled; the same on every rank (the
 * losses are reduced). */
static void epoch_plateau(struct trainer *t, const struct metrics_report *val)
{
    const struct config *cfg = t->cfg;
    const struct config_schedule *sc = &cfg->optimizer.schedule;
    struct checkpoint_state *st = &t->st;
    if (sc->name != DMLP_SCHEDULE_PLATEAU || st->step_in_epoch != 0 ||
        t->state == TRAINER_SIGNALLED)
        return;
    const int on_val = sc->metric == DMLP_PLATEAU_VAL_LOSS;
    const double base = schedule_lr(&cfg->optimizer, cfg->training.batch_size, st->step,
                                    t->steps_per_epoch, t->total_steps);
    if (!(st->plateau_scale > 0))
        st->plateau_scale = 1.0; /* no cut yet */
    if (schedule_plateau(sc, base, on_val ? val->loss : t->res->train_loss,
                         &st->plateau_scale, &st->plateau_best, &st->plateau_bad) &&
        t->info)
        fprintf(t->info, "plateau: %s has not improved for %u epochs (best %.6g); learning "
                "rate cut to %.4g\n", on_val ? "val_loss" : "train_loss", sc->patience,
                st->plateau_best, base * st->plateau_scale);
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

static const char *metric_name(const struct config_early_stopping *es)
{
    return es->metric == DMLP_METRIC_VAL_LOSS ? "val_loss" : "val_accuracy";
}

/* The epoch's line: epoch, learning rate, losses and accuracies, throughput. */
static void epoch_print(const struct trainer *t, const struct epoch *ep,
                        const struct metrics_report *val, const struct metrics_report *test)
{
    FILE *f = t->info;
    const struct train_result *res = t->res;
    const int labels = t->train->labels != NULL;
    if (t->bar)
        runlog_progress_clear(f);
    if (!f)
        return;
    fprintf(f, "epoch %4llu/%u  lr %.4g  loss %.5f", (unsigned long long)ep->index + 1,
            t->cfg->training.epochs, t->lr, res->train_loss);
    if (labels)
        fprintf(f, "  acc %.4f", res->train_accuracy);
    const int evaluated = t->state != TRAINER_SIGNALLED;
    if (t->val && evaluated) {
        fprintf(f, "  val_loss %.5f", val->loss);
        if (labels)
            fprintf(f, "  val_acc %.4f", val->accuracy);
    }
    if (t->test && evaluated)
        fprintf(f, labels ? "  test_acc %.4f" : "  test_loss %.5f",
                labels ? test->accuracy : test->loss);
    fprintf(f, "  %.0f samples/s  %.2fs\n",
            ep->elapsed > 0 ? (double)ep->seen / ep->elapsed : 0.0, ep->elapsed);
    fflush(f);
}

/* After the epoch's evaluation: best.h5 when the validation metric improved (whether or
 * not early stopping is on), early stopping, and the every_epochs checkpoint. */
static int epoch_checkpoint(struct trainer *t, struct epoch *ep,
                            const struct metrics_report *val, struct dmlp_error *err)
{
    const double t0 = dmlp_now();
    const struct config *cfg = t->cfg;
    const struct config_early_stopping *es = &cfg->training.early_stopping;
    struct checkpoint_state *st = &t->st;
    const int epoch_end = st->step_in_epoch == 0, saving = t->opt->save_checkpoints;
    int rc = DMLP_OK;
    if (t->val && epoch_end && t->state != TRAINER_SIGNALLED &&
        track_best(es, st, es->metric == DMLP_METRIC_VAL_LOSS ? val->loss : val->accuracy,
                   st->epoch) &&
        saving)
        rc = save(t, 1, err);
    if (!rc && es->patience && st->bad_epochs >= es->patience) {
        if (t->info)
            fprintf(t->info, "early stopping after epoch %llu: %s has not improved by more "
                    "than %g for %u epochs (best %.6g after epoch %llu)\n",
                    (unsigned long long)st->epoch, metric_name(es), es->min_delta,
                    es->patience, st->best_metric, (unsigned long long)st->best_epoch);
        t->res->stopped_early = 1;
        t->state = TRAINER_DONE;
    }
    if (!rc && saving && epoch_end && cfg->checkpoint.every_epochs &&
        st->epoch % cfg->checkpoint.every_epochs == 0)
        rc = save(t, 0, err);
    ep->timers[TIMER_CHECKPOINT] = dmlp_now() - t0;
    return rc;
}

/* Where the time went, across ranks (how a user finds a straggler): metrics.jsonl, and
 * with --verbose the slowest rank per phase. */
static void epoch_log(struct trainer *t, const struct epoch *ep,
                      const struct metrics_report *test)
{
    struct train_result *res = t->res;
    struct runlog_epoch row = {
        .epoch = t->st.epoch + (t->st.step_in_epoch ? 1 : 0), .step = t->st.step, .lr = t->lr,
        .train_loss = res->train_loss, .train_accuracy = res->train_accuracy,
        .val_loss = res->val_loss, .val_accuracy = res->val_accuracy,
        .test_loss = test->loss, .test_accuracy = res->test_accuracy,
        .samples_per_second = ep->elapsed > 0 ? (double)ep->seen / ep->elapsed : NAN,
        .epoch_seconds = ep->elapsed};
    dist_spread(t->d, ep->timers, TIMER_COUNT, row.t_min, row.t_mean, row.t_max,
                row.t_max_rank);
    res->last_epoch = row;
    if (!(res->fastest_epoch_seconds > 0) || ep->elapsed < res->fastest_epoch_seconds)
        res->fastest_epoch_seconds = ep->elapsed;
    if (t->mlog)
        runlog_epoch(t->mlog, &row);
    if (t->info && t->opt->verbosity >= 2) {
        fprintf(t->info, "  time (max over ranks, slowest rank):");
        for (int i = 0; i < TIMER_COUNT; i++)
            fprintf(t->info, " %s %.3fs (%d)", runlog_timer_names[i], row.t_max[i],
                    row.t_max_rank[i]);
        fprintf(t->info, "\n");
    }
}

/* One epoch (or the rest of one, when resumed mid-epoch), with everything after it. */
static int run_epoch(struct trainer *t, struct dmlp_error *err)
{
    struct checkpoint_state *st = &t->st;
    struct epoch ep = {.index = st->epoch, .t0 = dmlp_now(), .first_step = st->step_in_epoch,
                       .global_loss = NAN};
    shuffle(t, ep.index);
    if (t->step_w)
        sharded_step_weights(t);
    int rc = t->optim->lbfgs ? lbfgs_epoch(t, &ep, err) : DMLP_OK;
    if (rc)
        return rc;
    for (uint64_t s = st->step_in_epoch; s < t->steps_per_epoch; s++) {
        if ((rc = step(t, &ep, s, err)))
            return rc;
        progress(t, &ep, s);
        if (t->state != TRAINER_GOING)
            break;
    }
    ep.elapsed = dmlp_now() - ep.t0;
    if (st->step_in_epoch == t->steps_per_epoch) {
        st->epoch = ep.index + 1;
        st->step_in_epoch = 0;
    }
    struct metrics_report val = {0}, test = {0};
    if ((rc = epoch_loss(t, &ep, err)) || (rc = epoch_evaluate(t, &ep, &val, &test, err)))
        return rc;
    epoch_print(t, &ep, &val, &test);
    epoch_plateau(t, &val);
    if ((rc = epoch_checkpoint(t, &ep, &val, err)))
        return rc;
    epoch_log(t, &ep, &test);
    return DMLP_OK;
}

/* Training always ends with a checkpoint; a stop request ends the run with DMLP_STOPPED
 * once it is written. */
static int finish(struct trainer *t, struct dmlp_error *err)
{
    const struct config *cfg = t->cfg;
    struct train_result *res = t->res;
    int rc;
    if (t->opt->save_checkpoints && t->saved_step != t->st.step && (rc = save(t, 0, err)))
        return rc;
    if (t->log && res->checkpoint[0])
        fprintf(t->log, "checkpoint: %s\n", res->checkpoint);
    res->steps = t->st.step;
    res->model = t->model;
    t->model = NULL;
    if (t->state == TRAINER_SIGNALLED) {
        const int sig = stop_requested();
        return dmlp_fail(err, DMLP_STOPPED, "stopped by a signal (%s here) after step %llu; "
                         "%s holds the state: rerun with --resume auto to continue",
                         sig ? stop_signal_name(sig) : "received on another rank",
                         (unsigned long long)t->st.step,
                         res->checkpoint[0] ? res->checkpoint : cfg->checkpoint.dir);
    }
    const struct config_early_stopping *es = &cfg->training.early_stopping;
    if (t->info && t->val && !isnan(t->st.best_metric) && t->opt->save_checkpoints)
        fprintf(t->info, "best: %s/best.h5 (%s %.6g after epoch %llu)\n", cfg->checkpoint.dir,
                metric_name(es), t->st.best_metric, (unsigned long long)t->st.best_epoch);
    res->epochs_done = t->st.epoch;
    res->best_epoch = t->st.best_epoch;
    res->best_metric = t->st.best_metric;
    return DMLP_OK;
}

int train_run(const struct dist *d, const struct config *cfg, const char *config_yaml,
              const struct train_options *opt, struct train_result *res,
              struct dmlp_error *err)
{
    memset(res, 0, sizeof *res);
    res->train_accuracy = res->test_accuracy = res->val_loss = res->val_accuracy = NAN;
    res->best_metric = NAN;
    struct trainer t = {.d = d, .cfg = cfg, .yaml = config_yaml, .opt = opt, .res = res};
    int rc = trainer_setup(&t, err);
    while (!rc && t.state == TRAINER_GOING && t.st.epoch < cfg->training.epochs)
        rc = run_epoch(&t, err);
    if (!rc)
        rc = finish(&t, err);
    trainer_free(&t);
    return rc;
}
