/* loss: the weighted losses of loss.h. */
#include "nn/loss.h"

#include <float.h>
#include <math.h>

/* h(u) and ∂h/∂u for one output, in double. */
static double term(enum dmlp_loss kind, double delta, double u, double *dh)
{
    const double a = fabs(u);
    switch (kind) {
    case DMLP_LOSS_MAE:
        *dh = u > 0 ? 1.0 : u < 0 ? -1.0 : 0.0; /* PyTorch's sign: 0 at 0 */
        return a;
    case DMLP_LOSS_HUBER:
        if (a <= delta) {
            *dh = u;
            return 0.5 * u * u;
        }
        *dh = u > 0 ? delta : -delta;
        return delta * (a - 0.5 * delta);
    default: /* mse */
        *dh = 2.0 * u;
        return u * u;
    }
}

double loss_regression(float *G, const float *Y, const float *T, const float *row_w,
                       size_t batch, size_t k, const struct loss_spec *s)
{
    double total = 0.0;
    for (size_t i = 0; i < batch; i++) {
        const double wi = row_w ? (double)row_w[i] : 1.0;
        double li = 0.0;
        for (size_t j = 0; j < k; j++) {
            const double wk = s->out_w ? (double)s->out_w[j] : 1.0, u = (double)Y[i * k + j] -
                                                                      (double)T[i * k + j];
            double dh;
            li += wk * term(s->kind, s->delta, u, &dh);
            G[i * k + j] = (float)(wi * wk * dh);
        }
        total += wi * li;
    }
    return total;
}

double loss_xent_weighted(float *G, const float *P, const int32_t *labels, const float *row_w,
                          size_t batch, size_t k)
{
    double total = 0.0;
    for (size_t i = 0; i < batch; i++) {
        const float wi = row_w ? row_w[i] : 1.0f;
        const float *p = P + i * k;
        float *g = G + i * k;
        const size_t y = (size_t)labels[i];
        for (size_t j = 0; j < k; j++)
            g[j] = wi * (p[j] - (j == y ? 1.0f : 0.0f));
        total -= (double)wi * log(p[y] > FLT_MIN ? (double)p[y] : (double)FLT_MIN);
    }
    return total;
}

double loss_row(const float *y, const float *t, size_t k, const struct loss_spec *s)
{
    double li = 0.0, dh;
    for (size_t j = 0; j < k; j++)
        li += (s->out_w ? (double)s->out_w[j] : 1.0) *
              term(s->kind, s->delta, (double)y[j] - (double)t[j], &dh);
    return li;
}
