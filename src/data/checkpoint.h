/* checkpoint: the HDF5 checkpoint of docs/architecture.md, "Formats". Saving is done by one
 * process (rank 0): a temporary file is written, flushed and fsynced, renamed to step-<8
 * digits>.h5, the directory fsynced, and latest.h5 (a symlink) replaced atomically; then old
 * checkpoints beyond keep_last are pruned, never the newest. Every dataset carries a
 * Fletcher-32 checksum that HDF5 verifies on load. Loading reads every attribute and array
 * through h5util's checked readers (class, size, shape and storage first), checks the format
 * and every shape against the model, and refuses a NaN or an infinity in the weights, biases,
 * optimizer state or standardisation (DMLP_ERR_INPUT naming the file and the array), so a
 * damaged value is never trained on or carried into a new checkpoint. Never touches MPI. */
#ifndef DMLP_CHECKPOINT_H
#define DMLP_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/settings.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "core/util.h"

/* Where training stands. The position is global (independent of the rank count). */
struct checkpoint_state {
    uint64_t epoch;          /* epoch in progress (0-based); == epochs completed when
                                step_in_epoch == 0 */
    uint64_t step_in_epoch;  /* steps of that epoch already taken */
    uint64_t step;           /* global steps taken */
    uint64_t samples_seen;   /* global samples consumed by those steps */
    uint64_t seed;           /* training.seed the run was started with */
    /* early stopping: the best validation metric so far (NaN: none yet), the epoch that
     * reached it, and the epochs since then without improvement */
    double best_metric;
    uint64_t best_epoch;
    uint64_t bad_epochs;
    /* training.reproducible: the binary point of the next step's fixed-point gradients
     * (0 when unused) */
    int32_t fx_shift;
    /* optimizer.schedule plateau: the factor on the schedule's rate (0 or 1 until the
     * first cut), the best watched loss (NaN: none yet) and the epochs since it without one */
    double plateau_scale;
    double plateau_best;
    uint64_t plateau_bad;
};

/* Writes a checkpoint of m (and o, if not NULL) into dir (created if missing) and
 * updates latest.h5; config_yaml is stored as the root attribute "config". Writes the
 * final path into path_out (if not NULL). keep_last == 0 keeps every checkpoint. */
int checkpoint_save(const char *dir, const struct model *m, const struct optim *o,
                    const struct checkpoint_state *st, const char *config_yaml,
                    uint32_t keep_last, char *path_out, size_t path_cap,
                    struct dmlp_error *err);

/* Writes the same content to <dir>/<name> (e.g. "best.h5") through a temporary file and
 * a rename, outside the step-N.h5 series (never pruned, not named by latest.h5). */
int checkpoint_save_as(const char *dir, const char *name, const struct model *m,
                       const struct optim *o, const struct checkpoint_state *st,
                       const char *config_yaml, struct dmlp_error *err);

/* Loads a full checkpoint into m (shapes and activations must match; the input
 * standardisation too, when the file has one), o (if not NULL: its state buffers and step
 * count, when the checkpoint was written by the same optimizer; otherwise o starts fresh)
 * and st (if not NULL). On error m and o may hold partial data. */
int checkpoint_load(const char *path, struct model *m, struct optim *o,
                    struct checkpoint_state *st, struct dmlp_error *err);

/* Loads only /layers (and /normalization when present: the input statistics, the target
 * statistics, or both) into m (--init-from, eval, predict), checking every shape. */
int checkpoint_load_layers(const char *path, struct model *m, struct dmlp_error *err);

/* Reads the network a checkpoint holds: input width, layers (malloc'd; free()) and loss
 * (the "loss" attribute, or inferred: softmax output → cross_entropy, else mse). */
int checkpoint_read_network(const char *path, size_t *in_dim, struct config_layer **layers,
                            size_t *n_layers, enum dmlp_loss *loss, struct dmlp_error *err);

/* Resolves "<dir>/latest.h5" to the checkpoint it names; returns 1 and fills out when it
 * exists, 0 when there is none. */
int checkpoint_latest(const char *dir, char *out, size_t cap);

/* The checkpoints of dir that --resume auto may continue from, best first: what latest.h5
 * resolves to (when it does), then every step-N.h5 by descending N, each once. *paths is
 * malloc'd (free with checkpoint_candidates_free), *n its length (0: none). When latest.h5
 * exists but resolves to nothing (a dangling link, a loop), *broken says why (else ""). */
void checkpoint_candidates(const char *dir, char ***paths, size_t *n, char *broken,
                           size_t broken_cap);
void checkpoint_candidates_free(char ***paths, size_t n);

/* 1 if path is an HDF5 file whose root has format="dmlp-checkpoint", else 0. */
int checkpoint_is_checkpoint(const char *path);

/* Prints the layers, shapes and attributes of a checkpoint to f. */
int checkpoint_describe(FILE *f, const char *path, struct dmlp_error *err);

/* The HDF5 library's version, and whether it was built for MPI (parallel HDF5). */
void checkpoint_hdf5_version(char *out, size_t cap);

#endif
