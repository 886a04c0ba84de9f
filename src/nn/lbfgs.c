/* lbfgs: PyTorch's L-BFGS with the strong-Wolfe line search (lbfgs.h), written from the
 * algorithm: torch/optim/lbfgs.py's step, _strong_wolfe and _cubic_interpolate. */
#include "nn/lbfgs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double TOLERANCE_GRAD = 1e-7, TOLERANCE_CHANGE = 1e-9;
static const double C1 = 1e-4, C2 = 0.9;
enum { MAX_LS = 25 };

int lbfgs_create(struct lbfgs **out, size_t n, const struct config_optimizer *cfg,
                 struct dmlp_error *err)
{
    *out = NULL;
    size_t ring;
    const size_t h = cfg->history;
    if (dmlp_mul_size(&ring, n, h) || dmlp_mul_size(&ring, ring, 2 * sizeof(float)) ||
        ring > dmlp_phys_mem())
        return dmlp_fail(err, DMLP_ERR_INPUT, "optimizer.history: %zu pairs of %zu parameters "
                         "need more than this machine's %zu bytes of memory; lower it",
                         h, n, dmlp_phys_mem());
    struct lbfgs *o = calloc(1, sizeof *o);
    if (!o)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "L-BFGS: out of memory");
    o->n = n;
    o->history = cfg->history;
    o->max_iter = cfg->max_iter;
    o->max_eval = cfg->max_iter * 5 / 4;
    o->lr = cfg->lr;
    o->h_diag = 1.0;
    float **vec[] = {&o->d, &o->prev_grad, &o->g, &o->x0, &o->g_new, &o->g_prev,
                     &o->bracket_g[0], &o->bracket_g[1]};
    int ok = 1;
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++)
        ok &= (*vec[i] = dmlp_alloc_aligned(n * sizeof(float))) != NULL;
    ok = ok && (o->dirs = dmlp_alloc_aligned(ring / 2)) &&
         (o->stps = dmlp_alloc_aligned(ring / 2)) && (o->ro = calloc(h, sizeof *o->ro)) &&
         (o->al = calloc(h, sizeof *o->al));
    if (!ok) {
        lbfgs_free(&o);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "L-BFGS: cannot allocate %zu history pairs of "
                         "%zu parameters", h, n);
    }
    memset(o->d, 0, n * sizeof(float));
    memset(o->prev_grad, 0, n * sizeof(float));
    *out = o;
    return DMLP_OK;
}

void lbfgs_free(struct lbfgs **op)
{
    struct lbfgs *o = *op;
    if (!o)
        return;
    float *vec[] = {o->d, o->prev_grad, o->g, o->x0, o->g_new, o->g_prev, o->bracket_g[0],
                    o->bracket_g[1], o->dirs, o->stps};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++)
        dmlp_free_aligned(vec[i]);
    free(o->ro);
    free(o->al);
    free(o);
    *op = NULL;
}

float *lbfgs_pair_s(const struct lbfgs *o, uint32_t i)
{
    return o->stps + (size_t)((o->first + i) % o->history) * o->n;
}

float *lbfgs_pair_y(const struct lbfgs *o, uint32_t i)
{
    return o->dirs + (size_t)((o->first + i) % o->history) * o->n;
}

/* ---- vector helpers: in element order, so the same bits for any thread count ---------- */

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

static double abs_max(const float *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i]));
    return m;
}

static double abs_sum(const float *a, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += fabs((double)a[i]);
    return s;
}

/* The loss and gradient (into g) at x0 + t·d; the parameters are x0 again afterwards. */
static int directional(struct lbfgs *o, float *params, lbfgs_eval_fn *eval, void *ctx,
                       double t, float *g, double *f)
{
    const float tf = (float)t;
    for (size_t i = 0; i < o->n; i++)
        params[i] = o->x0[i] + tf * o->d[i];
    const int rc = eval(ctx, g, f);
    memcpy(params, o->x0, o->n * sizeof(float));
    return rc;
}

/* The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to
 * [lo, hi]; the midpoint when the cubic has none. */
static double cubic(double x1, double f1, double g1, double x2, double f2, double g2,
                    double lo, double hi)
{
    const double d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    const double d2_square = d1 * d1 - g1 * g2;
    if (!(d2_square >= 0))
        return (lo + hi) / 2.0;
    const double d2 = sqrt(d2_square);
    const double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                                    : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    return fmin(fmax(min_pos, lo), hi);
}

/* A line search state: the bracket [t0, t1] with its losses, gradients and slopes. */
struct bracket {
    double t[2], f[2], gtd[2];
    int n, low, high;
};

static void order(struct bracket *b)
{
    b->low = b->f[0] <= b->f[b->n - 1] ? 0 : 1;
    b->high = 1 - b->low;
}

/* Bracketing: steps grow until one violates sufficient decrease, or the slope turns, or
 * the strong Wolfe conditions hold (done). */
struct search {
    struct lbfgs *o;
    float *params;
    lbfgs_eval_fn *eval;
    void *ctx;
    double f, gtd;        /* at t = 0 */
    int evals, iter, done;
};

static int eval_at(struct search *s, double t, double *f, double *gtd)
{
    const int rc = directional(s->o, s->params, s->eval, s->ctx, t, s->o->g_new, f);
    s->evals++;
    *gtd = dot(s->o->g_new, s->o->d, s->o->n);
    return rc;
}

static void keep(struct search *s, struct bracket *b, int i, double t, double f, double gtd,
                 const float *g)
{
    b->t[i] = t;
    b->f[i] = f;
    b->gtd[i] = gtd;
    memcpy(s->o->bracket_g[i], g, s->o->n * sizeof(float));
}

static int bracket_phase(struct search *s, struct bracket *b, double t)
{
    struct lbfgs *o = s->o;
    double f_new, gtd_new, t_prev = 0.0, f_prev = s->f, gtd_prev = s->gtd;
    memcpy(o->g_prev, o->g, o->n * sizeof(float));
    int rc = eval_at(s, t, &f_new, &gtd_new);
    while (!rc && s->iter < MAX_LS) {
        const int armijo_fails = f_new > s->f + C1 * t * s->gtd ||
                                 (s->iter > 1 && f_new >= f_prev);
        if (!armijo_fails && fabs(gtd_new) <= -C2 * s->gtd) {
            keep(s, b, 0, t, f_new, gtd_new, o->g_new);
            b->n = 1;
            s->done = 1;
            return 0;
        }
        if (armijo_fails || gtd_new >= 0) {
            keep(s, b, 0, t_prev, f_prev, gtd_prev, o->g_prev);
            keep(s, b, 1, t, f_new, gtd_new, o->g_new);
            b->n = 2;
            return 0;
        }
        const double lo = t + 0.01 * (t - t_prev), hi = t * 10, was = t;
        t = cubic(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, lo, hi);
        t_prev = was;
        f_prev = f_new;
        gtd_prev = gtd_new;
        memcpy(o->g_prev, o->g_new, o->n * sizeof(float));
        rc = eval_at(s, t, &f_new, &gtd_new);
        s->iter++;
    }
    if (!rc) { /* out of evaluations: between 0 and the last step */
        keep(s, b, 0, 0.0, s->f, s->gtd, o->g);
        keep(s, b, 1, t, f_new, gtd_new, o->g_new);
        b->n = 2;
    }
    return rc;
}

/* Zoom: shrink the bracket by safeguarded cubic steps until the strong Wolfe conditions
 * hold, the bracket is negligible or the evaluations run out. */
static int zoom_phase(struct search *s, struct bracket *b)
{
    struct lbfgs *o = s->o;
    const double d_norm = abs_max(o->d, o->n);
    int insufficient = 0;
    order(b);
    while (!s->done && s->iter < MAX_LS) {
        if (fabs(b->t[1] - b->t[0]) * d_norm < TOLERANCE_CHANGE)
            break;
        const double bmin = fmin(b->t[0], b->t[1]), bmax = fmax(b->t[0], b->t[1]);
        double t = cubic(b->t[0], b->f[0], b->gtd[0], b->t[1], b->f[1], b->gtd[1], bmin, bmax);
        const double eps = 0.1 * (bmax - bmin);
        if (fmin(bmax - t, t - bmin) < eps) { /* too close to an end: move away from it */
            if (insufficient || t >= bmax || t <= bmin) {
                t = fabs(t - bmax) < fabs(t - bmin) ? bmax - eps : bmin + eps;
                insufficient = 0;
            } else {
                insufficient = 1;
            }
        } else {
            insufficient = 0;
        }
        double f_new, gtd_new;
        const int rc = eval_at(s, t, &f_new, &gtd_new);
        s->iter++;
        if (rc)
            return rc;
        if (f_new > s->f + C1 * t * s->gtd || f_new >= b->f[b->low]) {
            keep(s, b, b->high, t, f_new, gtd_new, o->g_new);
            order(b);
        } else {
            if (fabs(gtd_new) <= -C2 * s->gtd)
                s->done = 1;
            else if (gtd_new * (b->t[b->high] - b->t[b->low]) >= 0)
                keep(s, b, b->high, b->t[b->low], b->f[b->low], b->gtd[b->low],
                     o->bracket_g[b->low]);
            keep(s, b, b->low, t, f_new, gtd_new, o->g_new);
        }
    }
    return 0;
}

/* The strong-Wolfe search along d from the parameters x0 (loss f, gradient o->g, slope
 * gtd): the step taken in *t, its loss in *f and gradient in o->g. */
static int strong_wolfe(struct lbfgs *o, float *params, lbfgs_eval_fn *eval, void *ctx,
                        double *t, double *f, double gtd, int *evals)
{
    struct search s = {o, params, eval, ctx, *f, gtd, 0, 0, 0};
    struct bracket b = {0};
    int rc = bracket_phase(&s, &b, *t);
    if (!rc)
        rc = zoom_phase(&s, &b);
    *evals = s.evals;
    if (rc)
        return rc;
    if (b.n == 1)
        b.low = 0;
    *t = b.t[b.low];
    *f = b.f[b.low];
    memcpy(o->g, o->bracket_g[b.low], o->n * sizeof(float));
    return 0;
}

/* The last step (s = t·d, y = g − prev_grad) joins the history when yᵀs > 1e-10 (the
 * oldest pair leaves when it is full), and sets H₀'s diagonal yᵀs / yᵀy. Measured first,
 * so that a full history keeps its oldest pair when the new one is refused. */
static void remember_pair(struct lbfgs *o)
{
    const size_t n = o->n;
    const float *d = o->d, tf = (float)o->t;
    double ys = 0.0, yy = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float y = o->g[i] - o->prev_grad[i], s = d[i] * tf;
        ys += (double)y * (double)s;
        yy += (double)y * (double)y;
    }
    if (ys > 1e-10) {
        const uint32_t slot = (o->first + (o->count < o->history ? o->count : 0)) % o->history;
        float *y = o->dirs + (size_t)slot * n, *s = o->stps + (size_t)slot * n;
        for (size_t i = 0; i < n; i++) {
            y[i] = o->g[i] - o->prev_grad[i];
            s[i] = d[i] * tf;
        }
        if (o->count < o->history)
            o->count++;
        else
            o->first = (o->first + 1) % o->history;
        o->ro[slot] = 1.0 / ys;
        o->h_diag = ys / yy;
    }
}

/* The next direction from the gradient g: -g on the first iteration; else, with the last
 * step remembered, d = −H·g by the two-loop recursion with H₀ = h_diag·I. */
static void direction(struct lbfgs *o)
{
    const size_t n = o->n;
    float *d = o->d;
    if (o->n_iter == 1) {
        o->count = o->first = 0;
        o->h_diag = 1.0;
    } else {
        remember_pair(o);
    }
    for (size_t i = 0; i < n; i++)
        d[i] = -o->g[i];
    if (o->n_iter == 1)
        return;
    for (uint32_t k = o->count; k-- > 0;) {
        const uint32_t r = (o->first + k) % o->history;
        o->al[k] = dot(lbfgs_pair_s(o, k), d, n) * o->ro[r];
        const float a = (float)o->al[k], *yk = lbfgs_pair_y(o, k);
        for (size_t i = 0; i < n; i++)
            d[i] -= a * yk[i];
    }
    const float h = (float)o->h_diag;
    for (size_t i = 0; i < n; i++)
        d[i] *= h;
    for (uint32_t k = 0; k < o->count; k++) {
        const uint32_t r = (o->first + k) % o->history;
        const double be = dot(lbfgs_pair_y(o, k), d, n) * o->ro[r];
        const float c = (float)(o->al[k] - be), *sk = lbfgs_pair_s(o, k);
        for (size_t i = 0; i < n; i++)
            d[i] += c * sk[i];
    }
}

int lbfgs_step(struct lbfgs *o, float *params, lbfgs_eval_fn *eval, void *ctx, double *loss,
               int *evals)
{
    const size_t n = o->n;
    int rc = eval(ctx, o->g, loss);
    int current = 1;
    o->func_evals++;
    *evals = current;
    if (rc || abs_max(o->g, n) <= TOLERANCE_GRAD)
        return rc;
    for (uint32_t iter = 1; iter <= o->max_iter; iter++) {
        o->n_iter++;
        direction(o);
        memcpy(o->prev_grad, o->g, n * sizeof(float));
        o->prev_loss = *loss;
        o->t = o->n_iter == 1 ? fmin(1.0, 1.0 / abs_sum(o->g, n)) * o->lr : o->lr;
        const double gtd = dot(o->g, o->d, n);
        if (gtd > -TOLERANCE_CHANGE)
            break;
        memcpy(o->x0, params, n * sizeof(float));
        int ls = 0;
        rc = strong_wolfe(o, params, eval, ctx, &o->t, loss, gtd, &ls);
        current += ls;
        o->func_evals += (uint64_t)ls;
        *evals = current;
        if (rc)
            return rc;
        const float tf = (float)o->t;
        for (size_t i = 0; i < n; i++)
            params[i] = o->x0[i] + tf * o->d[i];
        if (iter == o->max_iter || current >= (int)o->max_eval ||
            abs_max(o->g, n) <= TOLERANCE_GRAD ||
            abs_max(o->d, n) * fabs(o->t) <= TOLERANCE_CHANGE ||
            fabs(*loss - o->prev_loss) < TOLERANCE_CHANGE)
            break;
    }
    return 0;
}
