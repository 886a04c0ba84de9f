/* metrics: evaluation accumulators and their report (docs/architecture.md, "Contracts the tests
 * pin down": evaluation reduces integer counts and double sums, so a reported figure is
 * identical for any rank count). A struct metrics holds only plain arrays of sums — a uint64
 * array of counts and a double array of sums — that can be added element by element across
 * ranks; the derived figures (accuracy, recall, MSE, MAE, R²) are computed from the summed
 * arrays by metrics_finish.
 *
 * Classifier with k classes:   counts = [confusion k×k (row = true label, column =
 *                                        predicted = argmax, first max wins), samples]
 *                              sums   = [loss]
 * Regression with k targets:   counts = [samples]
 *                              sums   = [loss, Σ(y−t)² [k], Σ|y−t| [k], Σt [k], Σt² [k]]
 *
 * No MPI (metrics_evaluate goes through dist), no HDF5. */
#ifndef DMLP_METRICS_H
#define DMLP_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/dataset.h"
#include "par/dist.h"
#include "nn/model.h"
#include "core/util.h"

struct metrics;

/* The scalar figures of a finished evaluation. A field that does not apply to the kind of
 * model (accuracy for regression, mse for a classifier) or has no samples is NaN. */
struct metrics_report {
    int is_classifier;
    size_t k;              /* classes, or target columns */
    uint64_t samples;
    double loss;           /* mean per-sample loss (loss sum / samples) */
    uint64_t correct;      /* classifiers: the confusion matrix's trace */
    double accuracy;       /* classifiers: correct / samples */
    double mse;            /* regression: Σ(y−t)² / (samples·k) */
    double mae;            /* regression: Σ|y−t| / (samples·k) */
    double r2;             /* regression: mean of the defined per-target R² (see below) */
};

/* Allocates zeroed accumulators for k classes (is_classifier) or k target columns.
 * k >= 1; the confusion matrix k×k must not overflow. */
int metrics_create(struct metrics **out, size_t k, int is_classifier, struct dmlp_error *err);
void metrics_free(struct metrics **m);

/* Sets every count and sum back to zero. */
void metrics_reset(struct metrics *m);

/* Adds a batch of b rows: Y [b×k] the network outputs, labels [b] (classifiers, each in
 * [0, k)) or targets [b×k] (regression), loss_sum the batch's Σℓ. Returns DMLP_ERR_INPUT
 * (and adds nothing) when the labels/targets do not fit the kind, or a label is out of
 * range (the message names the row within the batch). */
int metrics_add_batch(struct metrics *m, const float *Y, const int32_t *labels,
                      const float *targets, size_t b, double loss_sum,
                      struct dmlp_error *err);

/* The raw accumulators, in the layouts above, for a caller that reduces them across ranks
 * (dist_allreduce_sum_u64 / _double) or merges two metrics by adding element by element. */
uint64_t *metrics_counts(struct metrics *m, size_t *n);
double *metrics_sums(struct metrics *m, size_t *n);

/* Computes the report from the (reduced) accumulators. */
void metrics_finish(const struct metrics *m, struct metrics_report *r);

/* Confusion matrix entry: samples of true class t predicted as p (0 for regression). */
uint64_t metrics_confusion(const struct metrics *m, size_t t, size_t p);

/* Per-class accuracy (recall) of class c: confusion[c][c] / support_c, where support_c is
 * the row sum; NaN when class c has no samples, and for regression. */
double metrics_class_accuracy(const struct metrics *m, size_t c);

/* R² of target column j: 1 − SS_res/SS_tot, SS_res = Σ(y−t)², SS_tot = Σt² − (Σt)²/N.
 * Undefined (NaN) when N == 0 or the column is constant: SS_tot <= 1e-12·Σt² — the
 * threshold also catches the rounding residue that the one-pass formula leaves for a
 * constant column, and a float32 column whose spread is that small (std/|mean| < 1e-6) is
 * constant at float precision anyway. report.r2 averages the columns where R² is defined
 * (NaN when none is). NaN for classifiers. */
double metrics_target_r2(const struct metrics *m, size_t j);

/* MSE and MAE of target column j: Σ(y−t)² / N and Σ|y−t| / N over the column's N
 * samples. NaN when N == 0, and for classifiers. */
double metrics_target_mse(const struct metrics *m, size_t j);
double metrics_target_mae(const struct metrics *m, size_t j);

/* Prints one JSON object on one line. fields: optional leading string members as
 * key, value pairs ending with a NULL key (e.g. {"checkpoint", path, "data", path, NULL});
 * NULL for none. Classifier: "samples", "loss", "correct", "accuracy",
 * "per_class_accuracy": [k], "confusion_matrix": [[k]×k]; regression: "samples", "loss",
 * "mse", "mae", "r2", "r2_per_target": [k], "mse_per_target": [k],
 * "mae_per_target": [k]. Non-finite numbers are written as null.
 * Returns DMLP_ERR_RUNTIME if writing to f failed. */
int metrics_print_json(FILE *f, const struct metrics *m, const char *const *fields,
                       struct dmlp_error *err);

/* Prints a human-readable report: the scalars, then for classifiers the per-class table
 * (support, correct, accuracy) and the confusion matrix (up to 20 classes), for regression
 * the per-target R², MSE and MAE (when k > 1). */
int metrics_print_text(FILE *f, const struct metrics *m, struct dmlp_error *err);

/* Evaluates m on ds split across the ranks of d (contiguous slices, dmlp_slice), forward
 * passes in chunks of up to 512 rows, and reduces the accumulators, so *out holds the same
 * counts on every rank and for any rank count (sums up to double summation order).
 * Collective; every rank returns the same status; *out is NULL on failure (free with
 * metrics_free). ds must fit m (dataset_check_network). */
int metrics_evaluate(const struct dist *d, struct model *m, const struct dataset *ds,
                     struct metrics **out, struct dmlp_error *err);

/* metrics_evaluate of an ensemble's mean prediction on the raw rows of ds (each member
 * standardises its own copy), the loss as the first member's loss takes it. The ensemble
 * must take calls of ENSEMBLE_CALL_ROWS rows. */
struct ensemble;
int metrics_evaluate_ensemble(const struct dist *d, struct ensemble *ens,
                              const struct dataset *ds, struct metrics **out,
                              struct dmlp_error *err);

/* Evaluation to a report, for either placement: ds held whole by every rank (own_rows 0:
 * each evaluates its dmlp_slice, as metrics_evaluate), or each rank holding its own part
 * of the set (own_rows 1, the sharded placement: each evaluates all its rows). Counts are
 * reduced exactly, so the figures are the same for any rank count. Collective. */
int metrics_evaluate_report(const struct dist *d, struct model *m, const struct dataset *ds,
                            int own_rows, struct metrics_report *rep, struct dmlp_error *err);

/* Sums the counts and sums of m across the ranks of d, in place (collective): integer
 * counts exactly, double sums in MPI's order, the same on every rank. */
void metrics_reduce(const struct dist *d, struct metrics *m);

#endif
