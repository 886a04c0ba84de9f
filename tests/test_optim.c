/* test_optim: the optimizers (SGD, Adam, AdamW), gradient clipping by global norm and the
 * learning-rate schedules, each against an independent computation in double: the
 * published update formulas (Kingma & Ba's Adam with PyTorch's placement of ε;
 * Loshchilov & Hutter's decoupled decay; torch.optim.SGD), a naive norm, and the schedules'
 * closed forms written out with exact cosines.
 *
 * Tolerances. Parameters and state are float32 and each update is a dozen float operations
 * on O(1) numbers, so each result is within a few ulps (relative 2^-24 ≈ 6e-8 each) of the
 * exact value: 1e-6 relative (with an absolute floor of 1e-6 for values near 0) leaves a
 * margin of ten. The smallest effect a bug could hide in is far above that: a step of Adam
 * moves θ by ~η = 1e-2, weight decay changes it by η·λ·θ ~ 1e-3, and the gap between coupled
 * and decoupled decay is checked to exceed 100× the tolerance. Schedules are computed in
 * double from the same inputs: 1e-12 relative. Norms are sums in double of ~10^4 squares
 * in a different order: 1e-12 relative. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "testutil.h"

static const double TOL = 1e-6;         /* float32 results, relative (floor 1e-6) */
static const double TOL_DOUBLE = 1e-12; /* double results, relative */

#define CHECK_REL(got, expect, tol, floor)                                                  \
    do {                                                                                    \
        const double g_ = (got), e_ = (expect);                                             \
        const int ok_ = tu_reldiff(g_, e_, (floor)) <= (tol);                               \
        if (!ok_)                                                                           \
            fprintf(stderr, "\n  %s:%d: %s = %.15g, expected %.15g", __FILE__, __LINE__,  \
                    #got, g_, e_);                                                          \
        CU_ASSERT(ok_);                                                                     \
    } while (0)

/* ---- the optimizers: three updates of five parameters -------------------------------- */

enum { NP = 5, STEPS = 3 };

/* θ0, hand-chosen: both signs, exact and inexact floats. */
static const float THETA0[NP] = {0.5f, -1.25f, 0.3f, 2.0f, -0.07f};
/* Summed gradients per step (before the scale): signs change, one element shrinks to
 * nearly 0 on the last step, so m and v really are running averages. */
static const float GSUM[STEPS][NP] = {
    {0.4f, -2.0f, 1.2f, 0.05f, -0.8f},
    {-0.6f, -1.0f, 0.9f, 3.0f, 0.2f},
    {0.2f, 0.5f, -1.5f, 1e-3f, -0.4f},
};
/* A different rate each step, as a schedule would pass. */
static const double LR[STEPS] = {0.01, 0.02, 0.015};

struct opt_case {
    enum dmlp_optimizer name;
    double momentum;
    int nesterov;
    double wd;
    double count; /* samples behind the sums: scale = 1/count */
};

/* torch.optim.SGD (dampening 0) in double: g = ĝ + λθ; v = g on the first step, then
 * v = μv + g; d = g + μv (Nesterov) or v (or g without momentum); θ ← θ − ηd. */
static void sgd_reference(double *theta, double *v, const double *ghat, double lr,
                          const struct opt_case *c, int first)
{
    for (size_t i = 0; i < NP; i++) {
        const double g = ghat[i] + c->wd * theta[i];
        double d = g;
        if (c->momentum != 0.0) {
            v[i] = first ? g : c->momentum * v[i] + g;
            d = c->nesterov ? g + c->momentum * v[i] : v[i];
        }
        theta[i] -= lr * d;
    }
}

/* Adam (Kingma & Ba, Algorithm 1) with ε added to sqrt(v̂) as PyTorch does; coupled decay
 * adds λθ to the gradient (torch.optim.Adam), decoupled decay first shrinks θ by (1 − ηλ)
 * (torch.optim.AdamW). t is the 1-based step. */
static void adam_reference(double *theta, double *m, double *v, const double *ghat, double lr,
                           double b1, double b2, double eps, const struct opt_case *c, int t)
{
    for (size_t i = 0; i < NP; i++) {
        double g = ghat[i];
        if (c->name == DMLP_OPT_ADAMW)
            theta[i] *= 1.0 - lr * c->wd;
        else
            g += c->wd * theta[i];
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        const double mhat = m[i] / (1.0 - pow(b1, t)), vhat = v[i] / (1.0 - pow(b2, t));
        theta[i] -= lr * mhat / (sqrt(vhat) + eps);
    }
}

/* Runs three steps of the case through optim_step and the reference; returns the final θ
 * in out (for comparisons between cases). */
static void opt_case_run(const struct opt_case *c, double out[NP])
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const struct config_optimizer cfg = {.name = c->name, .lr = LR[0], .momentum = c->momentum,
                                         .nesterov = c->nesterov != 0, .weight_decay = c->wd,
                                         .beta1 = b1, .beta2 = b2, .eps = eps};
    struct optim *o = NULL;
    struct dmlp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(optim_create(&o, &cfg, NP, &err), DMLP_OK);
    float params[NP];
    double theta[NP], m[NP] = {0}, v[NP] = {0};
    memcpy(params, THETA0, sizeof params);
    for (size_t i = 0; i < NP; i++)
        theta[i] = THETA0[i];
    const float scale = (float)(1.0 / c->count);
    size_t bad = 0;
    for (int s = 0; s < STEPS; s++) {
        double ghat[NP];
        for (size_t i = 0; i < NP; i++)
            ghat[i] = (double)GSUM[s][i] / c->count;
        optim_step(o, params, GSUM[s], scale, LR[s]);
        if (c->name == DMLP_OPT_SGD)
            sgd_reference(theta, v, ghat, LR[s], c, s == 0);
        else
            adam_reference(theta, m, v, ghat, LR[s], b1, b2, eps, c, s + 1);
        CU_ASSERT_EQUAL(o->steps, (uint64_t)s + 1);
        /* Every step, not just the last, so an error cannot cancel out. */
        for (size_t i = 0; i < NP; i++) {
            int ok = tu_reldiff(params[i], theta[i], 1e-6) <= TOL;
            /* v can be a near-cancellation of O(0.1) terms (element 0: 0.1, −0.06,
             * −0.004): its error is relative to those terms, hence the floor 0.1. */
            if (c->name == DMLP_OPT_SGD && c->momentum != 0.0)
                ok &= tu_reldiff(o->momentum[i], v[i], 0.1) <= TOL;
            if (c->name != DMLP_OPT_SGD)
                ok &= tu_reldiff(o->exp_avg[i], m[i], 1e-6) <= TOL &&
                      tu_reldiff(o->exp_avg_sq[i], v[i], 1e-9) <= TOL;
            if (!ok && bad++ < 3)
                fprintf(stderr, "\n  optimizer %d mu=%g nesterov=%d wd=%g count=%g step %d: "
                        "θ[%zu] = %.9g, expected %.9g", (int)c->name, c->momentum,
                        c->nesterov, c->wd, c->count, s + 1, i, params[i], theta[i]);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    for (size_t i = 0; i < NP; i++)
        out[i] = params[i];
    optim_free(&o);
    CU_ASSERT_PTR_NULL(o);
}

static void test_sgd_three_steps(void)
{
    const struct opt_case cases[] = {
        {DMLP_OPT_SGD, 0.0, 0, 0.0, 1.0},  {DMLP_OPT_SGD, 0.0, 0, 0.1, 4.0},
        {DMLP_OPT_SGD, 0.9, 0, 0.0, 4.0},  {DMLP_OPT_SGD, 0.9, 0, 0.1, 3.0},
        {DMLP_OPT_SGD, 0.9, 1, 0.0, 4.0},  {DMLP_OPT_SGD, 0.9, 1, 0.1, 3.0},
    };
    double out[NP];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        opt_case_run(&cases[k], out);
}

static void test_adam_three_steps(void)
{
    const struct opt_case cases[] = {
        {DMLP_OPT_ADAM, 0, 0, 0.0, 1.0},
        {DMLP_OPT_ADAM, 0, 0, 0.0, 4.0},
        {DMLP_OPT_ADAM, 0, 0, 0.1, 3.0},
    };
    double out[NP];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        opt_case_run(&cases[k], out);
}

static void test_adamw_three_steps(void)
{
    const struct opt_case cases[] = {
        {DMLP_OPT_ADAMW, 0, 0, 0.0, 4.0},
        {DMLP_OPT_ADAMW, 0, 0, 0.1, 4.0},
        {DMLP_OPT_ADAMW, 0, 0, 0.5, 3.0},
    };
    double out[NP];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        opt_case_run(&cases[k], out);
}

/* The comparisons above can tell the variants apart: adamw without decay is adam, while
 * coupled and decoupled decay, and decay against none, end more than 100× the tolerance
 * apart on some parameter. */
static void test_adam_variants_differ(void)
{
    const struct opt_case adam0 = {DMLP_OPT_ADAM, 0, 0, 0.0, 4.0};
    const struct opt_case adam = {DMLP_OPT_ADAM, 0, 0, 0.5, 4.0};
    const struct opt_case adamw0 = {DMLP_OPT_ADAMW, 0, 0, 0.0, 4.0};
    const struct opt_case adamw = {DMLP_OPT_ADAMW, 0, 0, 0.5, 4.0};
    double a0[NP], a[NP], w0[NP], w[NP];
    opt_case_run(&adam0, a0);
    opt_case_run(&adam, a);
    opt_case_run(&adamw0, w0);
    opt_case_run(&adamw, w);
    double d_coupled = 0, d_decoupled = 0, d_between = 0, d_same = 0;
    for (size_t i = 0; i < NP; i++) {
        d_coupled = fmax(d_coupled, fabs(a[i] - a0[i]));
        d_decoupled = fmax(d_decoupled, fabs(w[i] - w0[i]));
        d_between = fmax(d_between, fabs(a[i] - w[i]));
        d_same = fmax(d_same, fabs(a0[i] - w0[i]));
    }
    CU_ASSERT(d_coupled > 100 * TOL);
    CU_ASSERT(d_decoupled > 100 * TOL);
    CU_ASSERT(d_between > 100 * TOL);
    CU_ASSERT_EQUAL(d_same, 0.0);
}

/* A closed form independent of the reference: Adam's first step moves every parameter by
 * η·g/(|g| + ε) ≈ η·sign(g) (m̂ = g and sqrt(v̂) = |g| after one step), whatever the
 * gradient's size; AdamW with decay first multiplies θ by 1 − ηλ. */
static void test_adam_first_step_closed_form(void)
{
    for (int w = 0; w < 2; w++) {
        const double lr = 0.01, wd = w ? 0.5 : 0.0;
        const struct config_optimizer cfg = {.name = w ? DMLP_OPT_ADAMW : DMLP_OPT_ADAM,
                                             .lr = lr, .weight_decay = wd, .beta1 = 0.9,
                                             .beta2 = 0.999, .eps = 1e-8};
        struct optim *o = NULL;
        struct dmlp_error err = {0};
        CU_ASSERT_EQUAL_FATAL(optim_create(&o, &cfg, 4, &err), DMLP_OK);
        float p[4] = {1.0f, 1.0f, -2.0f, 0.5f};
        const float g[4] = {1000.0f, -0.002f, 3.0f, -40.0f};
        optim_step(o, p, g, 0.5f, lr);
        CHECK_REL(p[0], 1.0 * (1 - lr * wd) - lr, TOL, 1e-6);
        CHECK_REL(p[1], 1.0 * (1 - lr * wd) + lr, TOL, 1e-6);
        CHECK_REL(p[2], -2.0 * (1 - lr * wd) - lr, TOL, 1e-6);
        CHECK_REL(p[3], 0.5 * (1 - lr * wd) + lr, TOL, 1e-6);
        optim_free(&o);
    }
}

/* The update is elementwise: one and two threads give the same bits. */
static void test_step_thread_invariant(void)
{
    enum { N = 3 * 4096 + 17 };
    const struct config_optimizer cfgs[] = {
        {.name = DMLP_OPT_ADAMW, .lr = 0.01, .weight_decay = 0.1, .beta1 = 0.9,
         .beta2 = 0.999, .eps = 1e-8},
        {.name = DMLP_OPT_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = true,
         .weight_decay = 0.01},
    };
    float *p[2], *g = malloc(N * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    const int saved = omp_get_max_threads();
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        struct optim *o[2] = {NULL, NULL};
        for (int t = 0; t < 2; t++) {
            struct dmlp_error err = {0};
            CU_ASSERT_EQUAL_FATAL(optim_create(&o[t], &cfgs[k], N, &err), DMLP_OK);
            p[t] = malloc(N * sizeof(float));
            CU_ASSERT_PTR_NOT_NULL_FATAL(p[t]);
            for (size_t i = 0; i < N; i++)
                p[t][i] = (float)sin(0.37 * (double)i);
            omp_set_num_threads(t + 1);
            for (int s = 0; s < 3; s++) {
                for (size_t i = 0; i < N; i++)
                    g[i] = (float)cos(0.11 * (double)i + s);
                optim_step(o[t], p[t], g, 1.0f / 3.0f, 0.01);
            }
        }
        CU_ASSERT_EQUAL(memcmp(p[0], p[1], N * sizeof(float)), 0);
        const char *names[OPTIM_MAX_STATE];
        float *b0[OPTIM_MAX_STATE], *b1[OPTIM_MAX_STATE];
        const size_t nb = optim_state_buffers(o[0], names, b0);
        CU_ASSERT_EQUAL(optim_state_buffers(o[1], NULL, b1), nb);
        for (size_t j = 0; j < nb; j++)
            CU_ASSERT_EQUAL(memcmp(b0[j], b1[j], N * sizeof(float)), 0);
        for (int t = 0; t < 2; t++) {
            optim_free(&o[t]);
            free(p[t]);
        }
    }
    omp_set_num_threads(saved);
    free(g);
}

/* ---- state buffers and argument checks ---------------------------------------------- */

static void test_state_buffers(void)
{
    const struct {
        struct config_optimizer cfg;
        size_t count;
        const char *names[OPTIM_MAX_STATE];
    } cases[] = {
        {{.name = DMLP_OPT_SGD, .lr = 0.1}, 0, {NULL, NULL}},
        {{.name = DMLP_OPT_SGD, .lr = 0.1, .momentum = 0.9}, 1, {"momentum", NULL}},
        {{.name = DMLP_OPT_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
         2, {"exp_avg", "exp_avg_sq"}},
        {{.name = DMLP_OPT_ADAMW, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
         2, {"exp_avg", "exp_avg_sq"}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct optim *o = NULL;
        struct dmlp_error err = {0};
        CU_ASSERT_EQUAL_FATAL(optim_create(&o, &cases[k].cfg, 33, &err), DMLP_OK);
        const char *names[OPTIM_MAX_STATE] = {NULL, NULL};
        float *bufs[OPTIM_MAX_STATE] = {NULL, NULL};
        const size_t nb = optim_state_buffers(o, names, bufs);
        CU_ASSERT_EQUAL(nb, cases[k].count);
        CU_ASSERT_EQUAL(optim_state_buffers(o, NULL, NULL), cases[k].count);
        for (size_t j = 0; j < nb && j < OPTIM_MAX_STATE; j++) {
            CU_ASSERT_PTR_NOT_NULL_FATAL(names[j]);
            CU_ASSERT_STRING_EQUAL(names[j], cases[k].names[j]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(bufs[j]);
            CU_ASSERT_EQUAL((uintptr_t)bufs[j] % 64, 0);
            size_t nonzero = 0;
            for (size_t i = 0; i < o->n; i++)
                nonzero += bufs[j][i] != 0.0f;
            CU_ASSERT_EQUAL(nonzero, 0);
        }
        /* The fields the checkpoint code reads directly agree with the table. */
        if (cases[k].cfg.name == DMLP_OPT_SGD) {
            CU_ASSERT_PTR_NULL(o->exp_avg);
            CU_ASSERT_PTR_NULL(o->exp_avg_sq);
            CU_ASSERT(nb == 0 ? o->momentum == NULL : o->momentum == bufs[0]);
        } else {
            CU_ASSERT_PTR_NULL(o->momentum);
            CU_ASSERT_PTR_EQUAL(o->exp_avg, bufs[0]);
            CU_ASSERT_PTR_EQUAL(o->exp_avg_sq, bufs[1]);
        }
        CU_ASSERT_EQUAL(o->steps, 0);
        optim_free(&o);
    }
}

static void test_create_rejects(void)
{
    const struct {
        struct config_optimizer cfg;
        size_t n;
        const char *key;
    } cases[] = {
        {{.name = DMLP_OPT_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 0.0}, 4,
         "optimizer.eps"},
        {{.name = DMLP_OPT_ADAMW, .lr = 0.1, .beta1 = 1.0, .beta2 = 0.999, .eps = 1e-8}, 4,
         "optimizer.beta1"},
        {{.name = DMLP_OPT_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = -0.1, .eps = 1e-8}, 4,
         "optimizer.beta2"},
        {{.name = DMLP_OPT_SGD, .lr = 0.1, .nesterov = true}, 4, "optimizer.nesterov"},
        {{.name = DMLP_OPT_SGD, .lr = 0.1, .weight_decay = -1.0}, 4, "optimizer.weight_decay"},
        {{.name = DMLP_OPT_SGD, .lr = 0.1}, 0, "no parameters"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        static struct optim sentinel;
        struct optim *o = &sentinel; /* optim_create must set it to NULL */
        struct dmlp_error err = {0};
        CU_ASSERT_EQUAL(optim_create(&o, &cases[k].cfg, cases[k].n, &err), DMLP_ERR_INPUT);
        CU_ASSERT_PTR_NULL(o);
        CU_ASSERT_EQUAL(err.code, DMLP_ERR_INPUT);
        if (!strstr(err.msg, cases[k].key))
            fprintf(stderr, "\n  message \"%s\" does not name %s", err.msg, cases[k].key);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[k].key));
    }
    struct optim *none = NULL;
    optim_free(&none); /* a NULL optimizer is accepted */
}

/* ---- gradient clipping -------------------------------------------------------------- */

enum { NG = 2 * 4096 + 1234 }; /* three chunks, the last one short */

static void fill_grads(float *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = (float)(sin(0.013 * (double)i) * (1.0 + (double)(i % 7)));
}

static double naive_norm(const float *g, size_t n, double scale)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += ((double)g[i] * scale) * ((double)g[i] * scale);
    return sqrt(s);
}

static void test_clip_measures(void)
{
    float *g = malloc(NG * sizeof(float)), *g0 = malloc(NG * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g0);
    fill_grads(g0, NG);
    const float scale = 0.25f;
    const double norm = naive_norm(g0, NG, scale);
    CU_ASSERT(norm > 10.0); /* far from the 1e-6 in clip_grad_norm_'s denominator */
    /* max_norm 0 (off) and max_norm above the norm: measured, not touched. */
    const double limits[] = {0.0, -1.0, norm * 1.01, 1e9};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        memcpy(g, g0, NG * sizeof(float));
        CHECK_REL(optim_clip_grad_norm(g, NG, scale, limits[k]), norm, TOL_DOUBLE, 0.0);
        CU_ASSERT_EQUAL(memcmp(g, g0, NG * sizeof(float)), 0);
    }
    /* A tiny vector (one short chunk) and an empty one. */
    const float v[3] = {3.0f, 0.0f, -4.0f};
    memcpy(g, v, sizeof v);
    CHECK_REL(optim_clip_grad_norm(g, 3, 2.0f, 0.0), 10.0, TOL_DOUBLE, 0.0);
    CU_ASSERT_EQUAL(optim_clip_grad_norm(g, 0, 1.0f, 1.0), 0.0);
    free(g);
    free(g0);
}

static void test_clip_clips(void)
{
    float *g = malloc(NG * sizeof(float)), *g0 = malloc(NG * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g0);
    fill_grads(g0, NG);
    const float scale = 1.0f / 3.0f;
    const double norm = naive_norm(g0, NG, scale);
    const double limits[] = {norm / 2, norm * 0.999, 1.0, 1e-3};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        memcpy(g, g0, NG * sizeof(float));
        CHECK_REL(optim_clip_grad_norm(g, NG, scale, limits[k]), norm, TOL_DOUBLE, 0.0);
        /* The clipped ĝ has norm max_norm (the 1e-6 added to the norm is ~1e-7 of it)... */
        CHECK_REL(naive_norm(g, NG, scale), limits[k], TOL, 0.0);
        /* ...and the same direction: every element scaled by one factor. */
        const double c = limits[k] / norm;
        size_t bad = 0;
        for (size_t i = 0; i < NG; i++)
            bad += tu_reldiff(g[i], c * g0[i], 1e-30) > TOL;
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(g);
    free(g0);
}

/* The norm and the clipped buffer are bit-identical for one and two threads. */
static void test_clip_thread_invariant(void)
{
    float *g[2];
    double norm[2];
    const int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        g[t] = malloc(NG * sizeof(float));
        CU_ASSERT_PTR_NOT_NULL_FATAL(g[t]);
        fill_grads(g[t], NG);
        omp_set_num_threads(t + 1);
        norm[t] = optim_clip_grad_norm(g[t], NG, 0.1f, 1.0);
    }
    omp_set_num_threads(saved);
    CU_ASSERT_EQUAL(memcmp(&norm[0], &norm[1], sizeof(double)), 0);
    CU_ASSERT_EQUAL(memcmp(g[0], g[1], NG * sizeof(float)), 0);
    free(g[0]);
    free(g[1]);
}

/* ---- learning-rate schedules -------------------------------------------------------- */

/* The setup: 4 steps per epoch, 3 epochs, so 12 steps; lr 0.1, min_lr 0.01. */
enum { SPE = 4, TOTAL = 12 };

static void check_sequence(const struct config_optimizer *cfg, uint64_t batch,
                           const double expect[TOTAL], const char *what)
{
    size_t bad = 0;
    for (uint64_t s = 0; s < TOTAL; s++) {
        const double got = schedule_lr(cfg, batch, s, SPE, TOTAL);
        if (!(tu_reldiff(got, expect[s], 0.0) <= TOL_DOUBLE)) {
            if (bad++ < 3)
                fprintf(stderr, "\n  %s: step %llu: lr %.15g, expected %.15g", what,
                        (unsigned long long)s, got, expect[s]);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static struct config_optimizer sched_cfg(enum dmlp_schedule name, double warmup_epochs)
{
    struct config_optimizer c = {.name = DMLP_OPT_SGD, .lr = 0.1, .base_batch_size = 128};
    c.schedule = (struct config_schedule){.name = name, .warmup_epochs = warmup_epochs,
                                          .step_epochs = 1, .gamma = 0.5, .min_lr = 0.01};
    return c;
}

static void test_schedule_constant(void)
{
    struct config_optimizer c = sched_cfg(DMLP_SCHEDULE_CONSTANT, 0.0);
    const double flat[TOTAL] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
    check_sequence(&c, 128, flat, "constant");
    check_sequence(&c, 512, flat, "constant, no scaling"); /* batch alone changes nothing */
    /* Warm-up over half an epoch: W = 2 steps, lr = 0.1·(s + 1)/2. */
    c.schedule.warmup_epochs = 0.5;
    const double warm[TOTAL] = {0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
    check_sequence(&c, 128, warm, "constant, warm-up 0.5");
    /* Linear scaling, batch 512 over base 128: base = 0.4. */
    c.lr_scaling = DMLP_LR_SCALING_LINEAR;
    const double scaled[TOTAL] = {0.2, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4};
    check_sequence(&c, 512, scaled, "constant, warm-up 0.5, linear 512/128");
    /* Fractional warm-up: 0.5 epochs of 3 steps round to W = 2 (1.5 rounds up). */
    CHECK_REL(schedule_lr(&c, 128, 0, 3, 9), 0.05, TOL_DOUBLE, 0.0);
    CHECK_REL(schedule_lr(&c, 128, 1, 3, 9), 0.1, TOL_DOUBLE, 0.0);
    CHECK_REL(schedule_lr(&c, 128, 2, 3, 9), 0.1, TOL_DOUBLE, 0.0);
}

static void test_schedule_step(void)
{
    /* gamma 0.5 every epoch (4 steps), counted from step 0. */
    struct config_optimizer c = sched_cfg(DMLP_SCHEDULE_STEP, 0.0);
    const double plain[TOTAL] = {0.1,  0.1,  0.1,  0.1,   0.05,  0.05,
                                 0.05, 0.05, 0.025, 0.025, 0.025, 0.025};
    check_sequence(&c, 128, plain, "step");
    /* Warm-up over the first epoch: 0.1·(s + 1)/4, then the decay as before. */
    c.schedule.warmup_epochs = 1.0;
    const double warm[TOTAL] = {0.025, 0.05, 0.075, 0.1,   0.05,  0.05,
                                0.05,  0.05, 0.025, 0.025, 0.025, 0.025};
    check_sequence(&c, 128, warm, "step, warm-up 1");
    /* Every 2 epochs, gamma 0.1, linear scaling by 64/128 = 0.5: base 0.05. */
    c.schedule.warmup_epochs = 0.0;
    c.schedule.step_epochs = 2;
    c.schedule.gamma = 0.1;
    c.lr_scaling = DMLP_LR_SCALING_LINEAR;
    const double scaled[TOTAL] = {0.05, 0.05, 0.05, 0.05, 0.05,  0.05,
                                  0.05, 0.05, 0.005, 0.005, 0.005, 0.005};
    check_sequence(&c, 64, scaled, "step every 2, gamma 0.1, linear 64/128");
}

static void test_schedule_cosine(void)
{
    /* cos(π k / 12) for k = 0..11, written out: cos 15° = (√6 + √2)/4, cos 30° = √3/2,
     * cos 45° = √2/2, cos 60° = 1/2, cos 75° = (√6 − √2)/4, cos 90° = 0, and
     * cos(180° − x) = −cos x. */
    const double r2 = sqrt(2.0), r3 = sqrt(3.0), r6 = sqrt(6.0);
    const double c12[TOTAL] = {1.0,  (r6 + r2) / 4,  r3 / 2,  r2 / 2,  0.5,  (r6 - r2) / 4,
                               0.0, -(r6 - r2) / 4, -0.5,    -r2 / 2, -r3 / 2, -(r6 + r2) / 4};
    struct config_optimizer c = sched_cfg(DMLP_SCHEDULE_COSINE, 0.0);
    double expect[TOTAL];
    for (size_t k = 0; k < TOTAL; k++)
        expect[k] = 0.01 + (0.1 - 0.01) * (1 + c12[k]) / 2;
    check_sequence(&c, 128, expect, "cosine");
    /* Linear scaling 256/128: base 0.2, min_lr stays 0.01 (absolute). */
    c.lr_scaling = DMLP_LR_SCALING_LINEAR;
    for (size_t k = 0; k < TOTAL; k++)
        expect[k] = 0.01 + (0.2 - 0.01) * (1 + c12[k]) / 2;
    check_sequence(&c, 256, expect, "cosine, linear 256/128");
    /* At and past the end: min_lr. */
    CHECK_REL(schedule_lr(&c, 256, TOTAL, SPE, TOTAL), 0.01, TOL_DOUBLE, 0.0);
    CHECK_REL(schedule_lr(&c, 256, TOTAL + 5, SPE, TOTAL), 0.01, TOL_DOUBLE, 0.0);

    /* Warm-up over one epoch (W = 4), then cosine over the remaining K = 8 steps:
     * cos(π k / 8) for k = 0..7: 1, cos 22.5° = √(2 + √2)/2, √2/2, cos 67.5° = √(2 − √2)/2,
     * 0, and the negatives in reverse. */
    const double a = sqrt(2 + r2) / 2, b = sqrt(2 - r2) / 2;
    const double c8[8] = {1.0, a, r2 / 2, b, 0.0, -b, -r2 / 2, -a};
    c.lr_scaling = DMLP_LR_SCALING_NONE;
    c.schedule.warmup_epochs = 1.0;
    for (size_t s = 0; s < TOTAL; s++)
        expect[s] = s < 4 ? 0.1 * (double)(s + 1) / 4 : 0.01 + (0.1 - 0.01) * (1 + c8[s - 4]) / 2;
    check_sequence(&c, 128, expect, "cosine, warm-up 1");
    /* A warm-up as long as the run: the ramp, then min_lr + (base − min_lr)·(1 + cos 0)/2. */
    c.schedule.warmup_epochs = 3.0;
    CHECK_REL(schedule_lr(&c, 128, 11, SPE, TOTAL), 0.1, TOL_DOUBLE, 0.0);
}

/* Reduce-on-plateau, PyTorch's ReduceLROnPlateau(mode="min", factor=0.5, patience=2,
 * threshold=0.1, threshold_mode="rel", min_lr=0.02) worked by hand: an epoch improves when
 * its loss is below best·0.9; the rate is cut after the third epoch in a row without. */
static void test_schedule_plateau(void)
{
    struct config_schedule sc = {.name = DMLP_SCHEDULE_PLATEAU, .factor = 0.5, .patience = 2,
                                 .threshold = 0.1, .min_lr = 0.02};
    const double loss[] = {1.0, 0.95, 0.95, 0.95, /* cut: 0.05 */ 0.8, 0.79, 0.79,
                           0.79, /* cut: 0.025 */ 0.79, NAN, 0.79, /* cut to the floor 0.02 */
                           0.79, 0.79, 0.79 /* at the floor: no cut */, 0.5};
    const double lr[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02,
                         0.02, 0.02, 0.02, 0.02};
    const int cut[] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0};
    double scale = 1.0, best = NAN;
    uint64_t bad = 0;
    for (size_t e = 0; e < sizeof loss / sizeof loss[0]; e++) {
        CU_ASSERT_EQUAL(schedule_plateau(&sc, 0.1, loss[e], &scale, &best, &bad), cut[e]);
        CHECK_REL(0.1 * scale, lr[e], TOL_DOUBLE, 0.0);
    }
    CHECK_REL(best, 0.5, TOL_DOUBLE, 0.0); /* the last epoch improved on 0.8 */
    CU_ASSERT_EQUAL(bad, 0);
}

static CU_TestInfo optim_tests[] = {
    {"sgd: three steps, momentum / Nesterov / decay / scale", test_sgd_three_steps},
    {"adam: three steps vs Kingma & Ba with PyTorch's eps", test_adam_three_steps},
    {"adamw: three steps, decoupled decay", test_adamw_three_steps},
    {"adam vs adamw vs no decay are far apart", test_adam_variants_differ},
    {"adam/adamw first step = lr * sign(g)", test_adam_first_step_closed_form},
    {"update bit-identical for 1 and 2 threads", test_step_thread_invariant},
    {"state buffers: names, alignment, zeroed", test_state_buffers},
    {"bad settings are rejected naming the key", test_create_rejects},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo clip_tests[] = {
    {"norm equals a naive double sum; no clipping below the limit", test_clip_measures},
    {"clipped norm == max_norm, direction kept", test_clip_clips},
    {"norm and clipping bit-identical for 1 and 2 threads", test_clip_thread_invariant},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo schedule_tests[] = {
    {"constant, warm-up, linear scaling", test_schedule_constant},
    {"step decay, warm-up, linear scaling", test_schedule_step},
    {"cosine, warm-up, linear scaling, end", test_schedule_cosine},
    {"reduce on plateau", test_schedule_plateau},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"optim", NULL, NULL, NULL, NULL, optim_tests},
    {"clip", NULL, NULL, NULL, NULL, clip_tests},
    {"schedule", NULL, NULL, NULL, NULL, schedule_tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
