/* ensemble: several trained networks used as one (dmlp predict and eval with several
 * --checkpoint, or --sweep DIR --top K). Each member standardises its own copy of the raw
 * input rows as it was trained to, and gives its outputs in original units; the ensemble's
 * prediction is their mean, with their population standard deviation (ddof 0) beside it,
 * both summed in double over the members in order. For classifiers the mean is of the
 * softmax probabilities, and its entropy −Σ p ln p says how unsure the ensemble is. */
#ifndef DMLP_ENSEMBLE_H
#define DMLP_ENSEMBLE_H

#include <stddef.h>

#include "nn/model.h"
#include "core/util.h"

/* The network a checkpoint holds, with its /layers and standardisation loaded. */
int model_load_checkpoint(const char *ckpt, struct model **out, struct dmlp_error *err);

/* The rows of one call that dmlp predict and eval open an ensemble for: their chunks are
 * no larger (static assertions in predict.c and metrics.c). */
enum { ENSEMBLE_CALL_ROWS = 512 };

struct ensemble {
    struct model **m;   /* [n] */
    size_t n;
    size_t rows;        /* the most rows one call takes */
    float *x;           /* [rows × D]: one member's standardised copy */
    float *outs;        /* [n × rows × K]: every member's outputs */
};

/* Loads n checkpoints (n ≥ 1): the same input width, output width and loss, or an error
 * naming the checkpoint that differs from the first. Room for calls of up to rows rows. */
int ensemble_open(struct ensemble *e, const char *const *ckpt, size_t n, size_t rows,
                  struct dmlp_error *err);
void ensemble_close(struct ensemble *e);

/* The members' mean of b ≤ rows raw rows X [b × D] into mean [b × K], and (sd not NULL)
 * their standard deviation into sd [b × K]. */
void ensemble_forward(struct ensemble *e, const float *X, size_t b, float *mean, float *sd);

/* For each of count values j, the mean and (sd not NULL) population deviation of the n
 * members' outs[i × stride + j], in double over the members in order. */
void ensemble_moments(const float *outs, size_t n, size_t stride, size_t count, float *mean,
                      float *sd);

/* −Σ p ln p of each of the b rows of P [b × k] (0 ln 0 = 0), into h [b]. */
void ensemble_entropy(const float *P, size_t b, size_t k, float *h);

#endif
