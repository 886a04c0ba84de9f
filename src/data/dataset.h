/* dataset: the HDF5 dataset file of docs/architecture.md, "Formats" (/features float32 [N, D];
 * /labels int32 [N] in [0, K) for classification, or /targets float32 [N, K] for regression),
 * read whole into memory (the replicated placement) or one rank's 1/n of the rows (the sharded
 * placement), written by the importers (IDX, CSV), and described by inspect; and what is done
 * to a loaded set before training: the held-out validation split and feature (and target)
 * standardisation.
 * Only this module and the other I/O modules include hdf5.h. MPI is reached only through dist
 * (agreement, reductions) and through HDF5's MPI-IO driver in dataset_read_shard. */
#ifndef DMLP_DATASET_H
#define DMLP_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/util.h"

struct model;

struct dist;

struct dataset {
    size_t n;          /* rows (samples); 0 only for a shard or split part with no rows */
    size_t d;          /* features per row */
    size_t k;          /* classes (labels) or target width (targets) */
    float *features;   /* [n, d], row-major, 64-byte aligned */
    int32_t *labels;   /* [n] in [0, k), or NULL */
    float *targets;    /* [n, k], or NULL; exactly one of labels/targets is set */
    float *weights;    /* [n] per-sample weights ≥ 0 from the optional /weights, or NULL */
    int placed;        /* the arrays lie in memory the set does not own (dataset_place) */
};

/* Reads and validates the file at path: /features present, 2-D, float-convertible, finite;
 * exactly one of /labels (1-D, N rows, values >= 0) or /targets (2-D, N rows, finite); and
 * when present /weights (1-D, N rows, finite, >= 0: each sample's weight in the loss).
 * The class count K is max(label)+1, or the file's "num_classes" attribute on /labels
 * when present (which must exceed every label). Every error names the file and dataset.
 * On error *out is NULL. */
int dataset_read(struct dataset **out, const char *path, struct dmlp_error *err);

/* Reads only rows [row0, row0 + nrows) of the file (nrows == SIZE_MAX: to the end), in
 * this process alone, with a hyperslab: the whole file's layout is validated as by
 * dataset_read, the values (finiteness, labels) on the rows read, and messages give the
 * file's row numbers. nrows may be 0 (a dataset with n = 0). *total_rows (if not NULL) gets
 * the file's N once its layout is valid. K: the num_classes attribute when the file has one,
 * else max(label in these rows) + 1 (0 for no rows); callers that read parts in several
 * processes must then agree on K themselves (the maximum), as dataset_read_shard does. */
int dataset_read_rows(struct dataset **out, const char *path, size_t row0, size_t nrows,
                      size_t *total_rows, struct dmlp_error *err);

/* Reads only /features of the file at path, validated as by dataset_read (present, 2-D,
 * float-convertible, at least one row and column, finite), for rows that need neither
 * /labels nor /targets (the input of predict); any the file has are ignored. The result has
 * labels = targets = NULL and k = 0. Not collective: every rank may call it. */
int dataset_read_features(struct dataset **out, const char *path, struct dmlp_error *err);

/* Where one rank's shard sits in the file. */
struct dataset_shard {
    size_t row0;        /* the file's index of this rank's first row */
    size_t global_rows; /* N, the rows in the whole file */
    int collective;     /* 1: /features came through a collective MPI-IO transfer */
};

/* Collective over d: every rank of d must call it, and every rank returns the same status
 * and message (agreed with dist_agree; a missing file on any rank fails everywhere, never
 * hangs). Rank r of n reads only rows dmlp_slice(N, n, r) (contiguous; the first N % n
 * ranks get one more row; a rank gets 0 rows when N < n) through parallel HDF5 (MPI-IO)
 * and holds nothing else. Transfers are collective where the file allows it (contiguous
 * storage; compressed chunks with HDF5 >= 1.10.2), else independent. Validation and
 * messages are dataset_read's, with the file's row numbers. K is the num_classes attribute
 * when present, else the maximum over all ranks of max(label) + 1, so it agrees everywhere.
 * shard (may be NULL) says which rows this rank holds. On error *out is NULL. */
int dataset_read_shard(struct dataset **out, const char *path, const struct dist *d,
                       struct dataset_shard *shard, struct dmlp_error *err);

/* ---- a set of several files ---------------------------------------------------------- */

/* The files of one data set (data.train, data.test) in reading order: the config's entries
 * with each glob pattern (an entry with *, ? or [) replaced by its matches, sorted by name
 * bytewise. name is what messages call the set: the file, or "a.h5 and 3 more files". */
struct dataset_files {
    char **path;   /* [n], owned */
    size_t n;
    char *name;
};

/* Expands entries (n of them) into *out. A pattern that matches nothing is an error naming
 * key (the config key, e.g. "data.train") and the pattern. Not collective. */
int dataset_files_expand(struct dataset_files *out, char *const *entries, size_t n,
                         const char *key, struct dmlp_error *err);
void dataset_files_free(struct dataset_files *f);

/* Reads the concatenation of f's files, in order, as dataset_read reads one file. Every
 * file's layout is validated before any value is read: the same /features width, the
 * same answer (/labels, or /targets of the same width), and /weights in every file or in
 * none; messages name the file that differs and the set's first file. Values are checked
 * as dataset_read checks them, with each file's own row numbers. K is the largest of the
 * files' num_classes attributes and of the labels + 1. One file: exactly dataset_read. */
int dataset_read_files(struct dataset **out, const struct dataset_files *f,
                       struct dmlp_error *err);

/* This rank's slice dmlp_slice(N, n, r) of the concatenation (N: all files' rows), as
 * dataset_read_shard slices one file: collective over d, agreed, K agreed (the maximum over
 * the ranks). Each rank reads its rows with independent reads, file by file. One file:
 * exactly dataset_read_shard (collective MPI-IO). */
int dataset_read_files_shard(struct dataset **out, const struct dataset_files *f,
                             const struct dist *d, struct dataset_shard *shard,
                             struct dmlp_error *err);

/* What it takes to lay out room for a set before reading it: its rows, columns, answer
 * (labels, or targets of width k) and whether it has weights. k of a labelled set is only
 * known once the labels are read (the largest + 1, or num_classes). */
struct dataset_shape {
    size_t n, d, k;
    int has_labels, has_weights;
};

/* The shape of the concatenation of f's files, from their layouts alone (validated as
 * dataset_read_files validates them; no value is read). Not collective. */
int dataset_files_shape(const struct dataset_files *f, struct dataset_shape *out,
                        struct dmlp_error *err);

/* Reads the concatenation of f into ds, which has room for exactly its rows (ds->n, e.g.
 * from dataset_place), validated as dataset_read_files validates it; sets ds->k. */
int dataset_read_files_into(struct dataset *ds, const struct dataset_files *f,
                            struct dmlp_error *err);

/* Refuses (DMLP_ERR_INPUT, naming what) n rows of shape s that cannot fit this machine's
 * memory, as dataset_alloc refuses them: before anything is asked for, since a header may
 * claim any size. */
int dataset_check_fits(const struct dataset_shape *s, size_t n, const char *what,
                       struct dmlp_error *err);

/* The bytes that dataset_place lays out for n rows of shape s: each array 64-byte aligned,
 * in whole cache lines (room for one row when n is 0). */
size_t dataset_bytes(const struct dataset_shape *s, size_t n);

/* A set of n rows of shape s whose arrays lie in mem (dataset_bytes(s, n) bytes, 64-byte
 * aligned: a block shared by the ranks of a node), which it does not own: dataset_free
 * frees only the struct. Values are not touched. */
int dataset_place(struct dataset **out, const struct dataset_shape *s, size_t n, void *mem,
                  struct dmlp_error *err);

/* src's rows into dst, which has room for exactly as many of the same shape (e.g. from
 * dataset_place with src's shape); dst->k is src's. */
int dataset_copy_into(struct dataset *dst, const struct dataset *src, struct dmlp_error *err);

/* A copy of src in memory of its own (dataset_free frees it). */
int dataset_clone(struct dataset **out, const struct dataset *src, struct dmlp_error *err);

/* src's shape (its rows, columns, answer and weights). */
struct dataset_shape dataset_shape_of(const struct dataset *src);

/* Writes ds to path (via a temporary file renamed into place, so an existing file is never
 * left half-written). /labels gets the attribute num_classes = ds->k. */
/* Checks that ds fits the network m: as many features as inputs; for cross_entropy /labels
 * with no more classes than outputs, for mse /targets with one column per output. what
 * names the data in messages (e.g. the file path). */
int dataset_check_network(const struct dataset *ds, const struct model *m, const char *what,
                          struct dmlp_error *err);

int dataset_write(const struct dataset *ds, const char *path, struct dmlp_error *err);

/* Allocates an empty dataset with room for n rows (features zeroed); with_labels selects
 * /labels (else /targets of width k). */
int dataset_alloc(struct dataset **out, size_t n, size_t d, size_t k, int with_labels,
                  struct dmlp_error *err);

void dataset_free(struct dataset **ds);

/* ---- validation split -------------------------------------------------------------------- */

/* floor(fraction * global_n), the validation set's size; computed so that a decimal
 * fraction of a round count (0.29 of 100) gives the exact product (29), not one less. */
size_t dataset_validation_count(size_t global_n, double fraction);

/* Holds out a seeded validation set. Over the global rows 0..global_n-1, the validation set
 * is a uniformly random subset of exactly dataset_validation_count(global_n, fraction)
 * rows, fixed by seed alone (selection sampling on rng stream DATASET_SPLIT_STREAM), so any
 * rank computes the same subset with O(1) memory. ds holds the global rows
 * [global_row0, global_row0 + ds->n) (the whole set: 0 and N; a shard: its row0 and N);
 * its rows in the validation set move, in order, to a new dataset *val (which may have 0
 * rows), and the rest stay in ds, in order (ds->n shrinks; its buffers are not
 * reallocated). fraction must be in [0, 1). Costs one random draw per global row up to the
 * end of ds. No MPI: each rank splits its own rows and the union is the replicated split. */
#define DATASET_SPLIT_STREAM UINT64_C(0x76616c6964617465) /* "validate" */
int dataset_split(struct dataset *ds, size_t global_row0, size_t global_n, double fraction,
                  uint64_t seed, struct dataset **val, struct dmlp_error *err);

/* ---- standardisation: x <- (x - mean) / std per feature -------------------------------- */

/* sum[j] = Σ_i x_ij and sumsq[j] = Σ_i x_ij² over ds's rows (sum, sumsq: [d]), in double,
 * in row order (one fixed order, so a given split gives the same bits every run). The
 * caller adds them across ranks (dist_allreduce_sum_double) before dataset_stats_finish. */
/* dataset_split into val, which has room for exactly the held-out rows (n =
 * dataset_validation_count(global_n, fraction) for the whole set; the same d, answer and
 * weights as ds), e.g. from dataset_place. */
int dataset_split_into(struct dataset *ds, size_t global_row0, size_t global_n,
                       double fraction, uint64_t seed, struct dataset *val,
                       struct dmlp_error *err);

void dataset_feature_sums(const struct dataset *ds, double *sum, double *sumsq);

/* The same sums over ds's /targets columns (sum, sumsq: [k]; zeros for a set with labels),
 * for target standardisation (data.normalize_targets), finished by dataset_stats_finish
 * as the features' are: a near-constant output gets std 1. */
void dataset_target_sums(const struct dataset *ds, double *sum, double *sumsq);

/* From sums over n rows: mean[j] = sum/n and std[j] = sqrt(max(0, sumsq/n - mean²)) (the
 * population deviation). A near-constant feature, std < 1e-6·max(1, |mean|) (which covers
 * std = 0 and the rounding noise of the sums), gets std 1, so it is centred but not blown
 * up. n == 0 gives mean 0, std 1. mean, std: [d]. */
void dataset_stats_finish(const double *sum, const double *sumsq, size_t n, size_t d,
                          float *mean, float *std);

/* dataset_stats_finish for targets, whose units may be anything (a mass fraction of 1e-7,
 * a pressure of 1e7): a std counts as near-constant only relative to the mean, below
 * 1e-6·|mean| (the rounding noise of a constant column's sums), or when it is 0. */
void dataset_target_stats_finish(const double *sum, const double *sumsq, size_t n, size_t k,
                                 float *mean, float *std);

/* x_ij <- (x_ij - mean[j]) / std[j] in place, for every row of ds (mean, std: [d]). */
void dataset_standardize(struct dataset *ds, const float *mean, const float *std);

/* t_ij <- (t_ij - mean[j]) / std[j] in place, for every row of ds's /targets (mean, std:
 * [k]); nothing for a set with labels. */
void dataset_standardize_targets(struct dataset *ds, const float *mean, const float *std);

/* Prints a description of a dataset file (shapes, dtype, label kind, class counts) to f.
 * Returns DMLP_ERR_INPUT if the file is not a valid dataset. */
int dataset_describe(FILE *f, const char *path, struct dmlp_error *err);

/* Imports MNIST-style IDX files (gzip-compressed or plain): images (magic 0x00000803,
 * uint8 [N, rows, cols]) and labels (magic 0x00000801, uint8 [N]) into a dataset with
 * features = pixel / 255 (in [0, 1]), D = rows*cols, K = 10 (or max label + 1 if larger).
 * Writes the result to output. Errors name the file and what is wrong (bad magic,
 * truncated, counts that disagree). */
int dataset_import_idx(const char *images, const char *labels, const char *output,
                       struct dmlp_error *err);

/* Imports a CSV file (plain or gzip) with a header row naming the columns. Exactly one of
 * label_column (a column name) and target_columns (a comma-separated list of names, in the
 * order they become /targets columns) is non-NULL; every other column is a feature, in file
 * order. Labels are non-negative integers (K = max + 1), or, when the first row's label is
 * not a number, class names: each distinct name gets the next class id in order of first
 * appearance, and /labels gets the attribute class_names (the names, by id). Features and
 * targets must be finite numbers within float32 range. Quoted fields (with commas, doubled
 * quotes, line breaks), CRLF line ends and blank lines are accepted. Every error is
 * DMLP_ERR_INPUT and names the file, line and column, e.g.
 *   x.csv:17: column 'petal_width': 'abc' is not a number
 *   x.csv:9: 4 fields, header has 5
 *   x.csv: --label-column species: no such column (columns: a, b, c)
 * Writes the result to output with dataset_write's atomic rename. */
int dataset_import_csv(const char *path, const char *label_column, const char *target_columns,
                       const char *output, struct dmlp_error *err);

#endif
