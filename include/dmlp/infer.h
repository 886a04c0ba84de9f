/* infer.h: a trained dmlp network inside your own program (C; Fortran and Python wrap it).
 *
 *     #include <dmlp/infer.h>           link: -ldmlp (pkg-config dmlp), or dmlp::dmlp
 *
 *     char err[256];
 *     dmlp_net *net = dmlp_net_load("runs/x/best.h5", err, sizeof err);
 *     if (!net) { fprintf(stderr, "%s\n", err); return 1; }
 *     float y[2 * 10];                   // dmlp_net_outputs(net) floats per row
 *     if (dmlp_net_predict(net, 2, x, y, err, sizeof err)) { ... }
 *     dmlp_net_free(net);
 *
 * No MPI: neither MPI_Init nor any MPI call is needed or made, whether or not the program
 * runs under MPI. The network applies what it was trained with: the checkpoint's input
 * standardisation on the way in, its target standardisation undone on the way out (a
 * regression returns values in the targets' original units); a classifier returns class
 * probabilities (softmax). The
 * outputs are bit-identical to `dmlp predict` on the same rows, for any split of the rows
 * into calls and any thread count. Errors never exit or abort: they return NULL or
 * non-zero with a message naming the file or argument in err (when err is not NULL; the
 * message is cut to errlen bytes, NUL included). */
#ifndef DMLP_INFER_H
#define DMLP_INFER_H

#include <stddef.h>

#include "dmlp/dmlp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dmlp_net dmlp_net;

/* Loads the network of a dmlp checkpoint (step-N.h5, latest.h5, best.h5, or a file with a
 * checkpoint's /layers). NULL on failure: a missing or unreadable file, not a checkpoint,
 * a NaN or an infinity in it, inconsistent shapes. It reads the file with HDF5, which
 * Debian builds without thread safety: load from one thread at a time (and not while the
 * program's own HDF5 calls run on another); the loaded net is then free for all threads. */
DMLP_API dmlp_net *dmlp_net_load(const char *checkpoint_path, char *err, size_t errlen);

/* Floats per row of input (the training data's features) and of output (classes or
 * targets). 0 for NULL. */
DMLP_API size_t dmlp_net_inputs(const dmlp_net *net);
DMLP_API size_t dmlp_net_outputs(const dmlp_net *net);

/* y[n × outputs] = the network on x[n × inputs], both row-major. Returns 0, or non-zero
 * (DMLP_ERR_INPUT for a NULL argument or a size that overflows, DMLP_ERR_RUNTIME when its
 * workspace cannot be allocated) with y untouched. Thread-safe on a shared net: call it
 * from as many threads as you like, each with its own x and y; called inside an OpenMP
 * parallel region it runs on the calling thread alone, and outside one it uses the OpenMP
 * threads (OMP_NUM_THREADS) for large n. n = 0 does nothing. */
DMLP_API int dmlp_net_predict(const dmlp_net *net, size_t n, const float *x, float *y,
                              char *err, size_t errlen);

/* Frees a net from dmlp_net_load (NULL is fine). */
DMLP_API void dmlp_net_free(dmlp_net *net);

/* An ensemble: several nets used as one (a sweep's seeds, say), as `dmlp predict` with
 * several --checkpoint uses them. Every member must map the same inputs to the same
 * outputs; the members may differ inside. */
typedef struct dmlp_ensemble dmlp_ensemble;

/* Loads n ≥ 1 checkpoints; NULL on failure, with the path at fault in err. The same
 * threading rules as dmlp_net_load. */
DMLP_API dmlp_ensemble *dmlp_ensemble_load(const char *const *checkpoint_paths, size_t n,
                                           char *err, size_t errlen);
DMLP_API size_t dmlp_ensemble_members(const dmlp_ensemble *e);
DMLP_API size_t dmlp_ensemble_inputs(const dmlp_ensemble *e);
DMLP_API size_t dmlp_ensemble_outputs(const dmlp_ensemble *e);

/* mean[n × outputs] = the members' mean on x[n × inputs], and (sd not NULL)
 * sd[n × outputs] their standard deviation (population, ddof 0), summed in double over
 * the members in order: the bits of `dmlp predict`'s /predictions and /std. Returns 0, or
 * non-zero as dmlp_net_predict. Thread-safe on a shared ensemble. */
DMLP_API int dmlp_ensemble_predict(const dmlp_ensemble *e, size_t n, const float *x,
                                   float *mean, float *sd, char *err, size_t errlen);

/* Frees an ensemble (NULL is fine). */
DMLP_API void dmlp_ensemble_free(dmlp_ensemble *e);

#ifdef __cplusplus
}
#endif

#endif
