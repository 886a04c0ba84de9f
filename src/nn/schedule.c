#include "nn/schedule.h"

#include <math.h>

static const double PI = 3.14159265358979323846;

double schedule_lr(const struct config_optimizer *cfg, uint64_t batch_size, uint64_t step,
                   uint64_t steps_per_epoch, uint64_t total_steps)
{
    const struct config_schedule *sc = &cfg->schedule;
    double base = cfg->lr;
    if (cfg->lr_scaling == DMLP_LR_SCALING_LINEAR && cfg->base_batch_size > 0)
        base *= (double)batch_size / (double)cfg->base_batch_size;
    const uint64_t per_epoch = steps_per_epoch > 0 ? steps_per_epoch : 1;

    const double w = sc->warmup_epochs > 0.0 ? round(sc->warmup_epochs * (double)per_epoch)
                                             : 0.0;
    const uint64_t warmup = (uint64_t)w;
    if (step < warmup)
        return base * (double)(step + 1) / (double)warmup;

    switch (sc->name) {
    case DMLP_SCHEDULE_STEP: {
        const uint64_t epochs = sc->step_epochs > 0 ? sc->step_epochs : 1;
        const uint64_t period = epochs * per_epoch;
        return base * pow(sc->gamma, (double)(step / period));
    }
    case DMLP_SCHEDULE_COSINE: {
        const uint64_t span = total_steps > warmup + 1 ? total_steps - warmup : 1;
        const uint64_t k = step - warmup < span ? step - warmup : span;
        return sc->min_lr +
               (base - sc->min_lr) * (1.0 + cos(PI * (double)k / (double)span)) / 2.0;
    }
    case DMLP_SCHEDULE_CONSTANT:
    default:
        return base;
    }
}

int schedule_plateau(const struct config_schedule *sc, double base_lr, double loss,
                     double *scale, double *best, uint64_t *bad)
{
    if (isfinite(loss) && (isnan(*best) || loss < *best * (1.0 - sc->threshold))) {
        *best = loss;
        *bad = 0;
        return 0;
    }
    if (++*bad <= sc->patience)
        return 0;
    *bad = 0;
    const double old = base_lr * *scale, cut = fmax(old * sc->factor, sc->min_lr);
    if (old - cut <= 1e-8) /* PyTorch's eps: at the floor already */
        return 0;
    *scale = cut / base_lr;
    return 1;
}
