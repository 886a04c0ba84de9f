/* schedule: the learning rate of each step, from the optimizer config (README, "Config";
 * struct config_schedule). A pure function of its arguments, so every rank computes the
 * same rate and a resumed run continues the same sequence. Never touches MPI or HDF5.
 *
 * For the global step s (0-based: the step about to be taken), with
 *     base = lr                                   (lr_scaling: none)
 *     base = lr · batch_size / base_batch_size    (lr_scaling: linear, Goyal et al. 2017)
 *     P    = steps_per_epoch  (taken as 1 when 0)
 *     W    = round(warmup_epochs · P)             warm-up steps (halves round up)
 * the rate is
 *     s < W (warm-up):  base · (s + 1) / W        linear, from base/W up to base
 *     otherwise:
 *       constant:  base
 *       step:      base · gamma^floor(s / (step_epochs · P))
 *                  (decay epochs counted from step 0, not from the end of the warm-up;
 *                   applied per step, so a fractional epoch boundary takes effect at once)
 *       cosine:    min_lr + (base − min_lr) · (1 + cos(π · k / K)) / 2,
 *                  k = min(s − W, K),  K = max(1, total_steps − W)
 *                  (base at the end of the warm-up, min_lr at total_steps and after).
 * min_lr is absolute: linear scaling scales lr, never min_lr. */
#ifndef DMLP_SCHEDULE_H
#define DMLP_SCHEDULE_H

#include <stdint.h>

#include "core/settings.h"

/* optimizer.schedule plateau (PyTorch's ReduceLROnPlateau, mode min, relative threshold,
 * no cooldown): after each epoch, the watched loss improves when it is below
 * best · (1 − threshold); after more than `patience` epochs in a row without improvement
 * the rate is cut to max(rate · factor, min_lr) and the count restarts. The state: *scale,
 * the factor on schedule_lr's rate (1 at the start), *best (NaN: none yet) and *bad.
 * base_lr is the rate the scale applies to. Returns 1 when it cut the rate. A non-finite
 * loss counts as no improvement. */
int schedule_plateau(const struct config_schedule *sc, double base_lr, double loss,
                     double *scale, double *best, uint64_t *bad);

/* The learning rate of global step `step` (0-based) for a run of total_steps steps with
 * steps_per_epoch steps per epoch and global batch batch_size, as above. */
double schedule_lr(const struct config_optimizer *cfg, uint64_t batch_size, uint64_t step,
                   uint64_t steps_per_epoch, uint64_t total_steps);

#endif
