/* test_gradcheck: the whole network's analytic gradient (model_train_batch, float32)
 * against central finite differences of an independent double-precision forward + loss
 * written here from docs/architecture.md, "The math", for every parameter, every activation and both losses.
 *
 * The reference network takes the model's float parameters cast to double, so both sides
 * differentiate the same function:
 *     z_l = W_l a_{l-1} + b_l,  a_l = f_l(z_l),  a_0 = x
 *     mse:            ℓ = Σ_k (y_k − t_k)²
 *     cross_entropy:  ℓ = −log softmax(z_L)_label = logsumexp(z_L) − z_L,label
 * summed over the batch (model_train_batch writes the SUM over samples of ∂ℓ/∂θ).
 *
 * Tolerances. The central difference with h = 1e-5 in double has truncation error
 * ~h²·|ℓ'''| ~ 1e-10 and rounding error ~2^-53·|ℓ|/h ~ 1e-10, so fd is accurate to ~1e-9.
 * The analytic gradient is float32: each entry is a few short sums (<= 7 terms) chained
 * through three layers and a batch of 3, so its error is a few hundred ulp at most of the
 * O(1) magnitudes involved, ~1e-5 absolute in the worst case, ~1e-6 typically. We allow
 * |analytic − fd| <= 1e-4·max(1, |fd|): ten times that worst case, while a wrong
 * derivative, a missing factor 2, a wrong index or a mean instead of a sum is off by
 * O(|gradient|) ~ 0.1..1 and fails. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "nn/kernels.h"
#include "nn/model.h"
#include "core/rng.h"
#include "testutil.h"

enum { IN = 5, H1 = 7, H2 = 6, OUT = 4, BATCH = 3, RESERVE = 5, MAXW = 8 };

static const double FD_H = 1e-5;       /* central-difference step, in double */
static const double GRAD_TOL = 1e-4;   /* |a − fd| <= GRAD_TOL·max(1, |fd|), see above */
static const double KINK_MARGIN = 1e-3; /* relu/leaky_relu pre-activations kept this far from 0 */
enum { MAX_RESEEDS = 200 };

/* Largest |analytic − fd| / max(1, |fd|) seen, printed so a shrinking margin shows. */
static double worst_err;

static const enum dmlp_activation hidden_acts[] = {
    DMLP_ACT_SIGMOID, DMLP_ACT_TANH, DMLP_ACT_RELU, DMLP_ACT_LEAKY_RELU, DMLP_ACT_LINEAR};
enum { N_HIDDEN = sizeof hidden_acts / sizeof hidden_acts[0] };

/* ---- the independent double-precision reference (activations: tu_act_ref) ------------ */

static int has_kink(enum dmlp_activation act)
{
    return act == DMLP_ACT_RELU || act == DMLP_ACT_LEAKY_RELU;
}

/* Where layer l's W and b sit in the flat buffers (the model's layout, read from its views,
 * so theta below mirrors m->params index for index). */
static size_t w_index(const struct model *m, size_t l) { return (size_t)(m->layers[l].W - m->params); }
static size_t b_index(const struct model *m, size_t l) { return (size_t)(m->layers[l].b - m->params); }

/* Σ over the batch of ℓ for parameters theta (double, the layout of m->params). Writes the
 * output activations to Y [batch × out] if not NULL, and the smallest |z| over the layers
 * with a kink to *kink if not NULL. */
static double ref_loss(const struct model *m, const double *theta, const float *X,
                       const int32_t *labels, const float *T, size_t batch, double *Y,
                       double *kink)
{
    double total = 0.0, closest = INFINITY;
    for (size_t i = 0; i < batch; i++) {
        double a[MAXW] = {0}, z[MAXW] = {0};
        size_t width = m->layers[0].in;
        for (size_t p = 0; p < width; p++)
            a[p] = X[i * width + p];
        for (size_t l = 0; l < m->n_layers; l++) {
            const struct model_layer *L = &m->layers[l];
            const double *W = theta + w_index(m, l), *b = theta + b_index(m, l);
            for (size_t j = 0; j < L->out; j++) {
                double s = b[j];
                for (size_t p = 0; p < L->in; p++)
                    s += W[j * L->in + p] * a[p];
                z[j] = s;
                if (has_kink(L->act))
                    closest = fmin(closest, fabs(s));
            }
            if (L->act == DMLP_ACT_SOFTMAX) {
                double mx = z[0], s = 0.0;
                for (size_t j = 1; j < L->out; j++)
                    mx = fmax(mx, z[j]);
                for (size_t j = 0; j < L->out; j++)
                    s += exp(z[j] - mx);
                for (size_t j = 0; j < L->out; j++)
                    a[j] = exp(z[j] - mx) / s;
            } else {
                for (size_t j = 0; j < L->out; j++)
                    a[j] = tu_act_ref(L->act, z[j]);
            }
            width = L->out;
        }
        if (Y)
            for (size_t j = 0; j < width; j++)
                Y[i * width + j] = a[j];
        if (m->loss == DMLP_LOSS_MSE) {
            for (size_t j = 0; j < width; j++) {
                const double d = a[j] - (double)T[i * width + j];
                total += d * d;
            }
        } else {
            /* −log softmax(z)_label from the logits (log-sum-exp, max-subtracted). */
            double mx = z[0], s = 0.0;
            for (size_t j = 1; j < width; j++)
                mx = fmax(mx, z[j]);
            for (size_t j = 0; j < width; j++)
                s += exp(z[j] - mx);
            total += mx + log(s) - z[labels[i]];
        }
    }
    if (kink)
        *kink = closest;
    return total;
}

/* ---- one network ------------------------------------------------------------------- */

struct gc_problem {
    struct model *m;
    float X[BATCH * IN];
    float T[BATCH * OUT];
    int32_t labels[BATCH];
    double *theta; /* m->params in double */
};

/* Builds 5 → 7 (hidden) → 6 (hidden) → 4 (output) and draws parameters and data, re-seeding
 * until no relu/leaky_relu pre-activation lies within KINK_MARGIN of 0 (where the function
 * is not differentiable and a finite difference would straddle the kink). The workspace is
 * reserved for more rows than used, so row strides are exercised too. */
static int problem_init(struct gc_problem *p, enum dmlp_activation hidden,
                        enum dmlp_activation output, enum dmlp_loss loss, uint64_t stream)
{
    memset(p, 0, sizeof *p);
    const struct config_layer layers[3] = {{H1, hidden, 0}, {H2, hidden, 0}, {OUT, output, 0}};
    struct dmlp_error err = {0};
    if (model_create(&p->m, IN, layers, 3, loss, &err) != DMLP_OK ||
        model_reserve(p->m, RESERVE, &err) != DMLP_OK) {
        fprintf(stderr, "\n  model: %s", err.msg);
        return -1;
    }
    struct model *m = p->m;
    p->theta = malloc(m->n_params * sizeof(double));
    if (!p->theta)
        return -1;
    for (uint64_t seed = 0; seed < MAX_RESEEDS; seed++) {
        struct rng r;
        rng_seed(&r, 1000 + seed, stream);
        model_init_params(m, DMLP_INIT_XAVIER, &r);
        /* Non-zero biases, so a bias gradient or a bias in the forward cannot hide. */
        for (size_t l = 0; l < m->n_layers; l++)
            for (size_t j = 0; j < m->layers[l].out; j++)
                m->layers[l].b[j] = (float)(rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < BATCH * IN; i++)
            p->X[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
        for (size_t i = 0; i < BATCH * OUT; i++)
            p->T[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
        for (size_t i = 0; i < BATCH; i++)
            p->labels[i] = (int32_t)rng_below(&r, OUT);
        for (size_t i = 0; i < m->n_params; i++)
            p->theta[i] = m->params[i];
        double kink;
        ref_loss(m, p->theta, p->X, p->labels, p->T, BATCH, NULL, &kink);
        if (kink >= KINK_MARGIN)
            return 0;
    }
    fprintf(stderr, "\n  no seed kept every pre-activation %g away from 0", KINK_MARGIN);
    return -1;
}

static void problem_free(struct gc_problem *p)
{
    model_free(&p->m);
    free(p->theta);
}

/* Checks every parameter's analytic gradient against the central difference; returns the
 * number of mismatches (printing the first few). */
static size_t check_all_params(struct gc_problem *p, const char *name)
{
    struct model *m = p->m;
    const int32_t *labels = m->loss == DMLP_LOSS_CROSS_ENTROPY ? p->labels : NULL;
    const float *T = m->loss == DMLP_LOSS_MSE ? p->T : NULL;
    size_t bad = 0, checked = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        const size_t nw = L->out * L->in;
        for (size_t q = 0; q < nw + L->out; q++) {
            /* Weights first (W[j][p] at q = j·in + p), then biases. */
            const size_t idx = q < nw ? w_index(m, l) + q : b_index(m, l) + (q - nw);
            const double analytic = q < nw ? L->dW[q] : L->db[q - nw];
            const double saved = p->theta[idx];
            p->theta[idx] = saved + FD_H;
            const double fp = ref_loss(m, p->theta, p->X, labels, T, BATCH, NULL, NULL);
            p->theta[idx] = saved - FD_H;
            const double fm = ref_loss(m, p->theta, p->X, labels, T, BATCH, NULL, NULL);
            p->theta[idx] = saved;
            const double fd = (fp - fm) / (2.0 * FD_H);
            checked++;
            worst_err = fmax(worst_err, fabs(analytic - fd) / fmax(1.0, fabs(fd)));
            if (!(fabs(analytic - fd) <= GRAD_TOL * fmax(1.0, fabs(fd)))) {
                if (bad < 4)
                    fprintf(stderr, "\n  %s: layer %zu %s[%zu]: analytic %.9g, fd %.9g", name, l,
                            q < nw ? "W" : "b", q < nw ? q : q - nw, analytic, fd);
                bad++;
            }
        }
    }
    /* Every parameter of every layer was visited. */
    size_t expect = 0;
    for (size_t l = 0; l < m->n_layers; l++)
        expect += m->layers[l].out * (m->layers[l].in + 1);
    CU_ASSERT_EQUAL(checked, expect);
    return bad;
}

/* Forward, loss and gradient of one network against the reference. */
static void gradcheck_case(enum dmlp_activation hidden, enum dmlp_activation output,
                           enum dmlp_loss loss, uint64_t stream)
{
    char name[96];
    snprintf(name, sizeof name, "%s/%s/%s", dmlp_activation_name(hidden),
             dmlp_activation_name(output), dmlp_loss_name(loss));
    struct gc_problem p;
    const int ok = problem_init(&p, hidden, output, loss, stream);
    CU_ASSERT_EQUAL(ok, 0);
    if (ok != 0) {
        problem_free(&p);
        return;
    }
    struct model *m = p.m;
    const int32_t *labels = loss == DMLP_LOSS_CROSS_ENTROPY ? p.labels : NULL;
    const float *T = loss == DMLP_LOSS_MSE ? p.T : NULL;

    /* The float forward against the double reference: a few hundred ulp of O(1) values. */
    double Yref[BATCH * OUT];
    const double lref = ref_loss(m, p.theta, p.X, labels, T, BATCH, Yref, NULL);
    const float *Y = model_forward(m, p.X, BATCH);
    size_t fwd_bad = 0;
    for (size_t i = 0; i < BATCH * OUT; i++)
        fwd_bad += !(fabs(Y[i] - Yref[i]) <= 1e-5 * fmax(1.0, fabs(Yref[i])));
    CU_ASSERT_EQUAL(fwd_bad, 0);
    if (fwd_bad)
        fprintf(stderr, "\n  %s: %zu forward outputs differ from the reference", name, fwd_bad);

    /* Summed loss and summed gradient. Grads start as garbage: they must be overwritten. */
    for (size_t i = 0; i < m->n_params; i++)
        m->grads[i] = 1e3f;
    const double loss_sum = model_train_batch(m, p.X, labels, T, BATCH, NULL);
    CU_ASSERT(fabs(loss_sum - lref) <= 1e-5 * fmax(1.0, fabs(lref)));
    CU_ASSERT_EQUAL(check_all_params(&p, name), 0);
    problem_free(&p);
}

/* ---- tests ------------------------------------------------------------------------- */

/* Every hidden activation under a softmax + cross-entropy head. */
static void test_cross_entropy(void)
{
    worst_err = 0.0;
    for (size_t h = 0; h < N_HIDDEN; h++)
        gradcheck_case(hidden_acts[h], DMLP_ACT_SOFTMAX, DMLP_LOSS_CROSS_ENTROPY, 10 + h);
    printf("(worst gradient error %.2e, tolerance %.0e) ", worst_err, GRAD_TOL);
}

/* Every output activation with mse, each under every hidden activation. */
static void test_mse(void)
{
    worst_err = 0.0;
    for (size_t o = 0; o < N_HIDDEN; o++)
        for (size_t h = 0; h < N_HIDDEN; h++)
            gradcheck_case(hidden_acts[h], hidden_acts[o], DMLP_LOSS_MSE, 100 + 10 * o + h);
    printf("(worst gradient error %.2e, tolerance %.0e) ", worst_err, GRAD_TOL);
}

/* The gradient is a function of (θ, batch) only: a second identical call gives the same
 * bits (nothing accumulates across calls), as do 1 and 2 threads on a wider network
 * whose GEMMs span several tiles. */
static void test_repeatable(void)
{
    const struct config_layer layers[2] = {{130, DMLP_ACT_RELU, 0}, {10, DMLP_ACT_SOFTMAX, 0}};
    enum { in = 33, batch = 37 };
    struct model *m = NULL;
    struct dmlp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(model_create(&m, in, layers, 2, DMLP_LOSS_CROSS_ENTROPY, &err), 0);
    CU_ASSERT_EQUAL_FATAL(model_reserve(m, batch, &err), 0);
    struct rng r;
    rng_seed(&r, 7, 7);
    model_init_params(m, DMLP_INIT_HE, &r);
    float *X = malloc(batch * in * sizeof(float));
    int32_t labels[batch];
    float *g[3] = {malloc(m->n_params * sizeof(float)), malloc(m->n_params * sizeof(float)),
                   malloc(m->n_params * sizeof(float))};
    CU_ASSERT_FATAL(X && g[0] && g[1] && g[2]);
    for (size_t i = 0; i < (size_t)batch * in; i++)
        X[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
    for (size_t i = 0; i < batch; i++)
        labels[i] = (int32_t)rng_below(&r, 10);
    const int saved = omp_get_max_threads();
    double loss[3];
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(k == 2 ? 2 : 1);
        size_t correct = 0;
        loss[k] = model_train_batch(m, X, labels, NULL, batch, &correct);
        CU_ASSERT(correct <= batch);
        memcpy(g[k], m->grads, m->n_params * sizeof(float));
    }
    omp_set_num_threads(saved);
    CU_ASSERT_EQUAL(memcmp(g[0], g[1], m->n_params * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(g[0], g[2], m->n_params * sizeof(float)), 0);
    CU_ASSERT_EQUAL(loss[0], loss[1]);
    CU_ASSERT_EQUAL(loss[0], loss[2]);
    free(X), free(g[0]), free(g[1]), free(g[2]);
    model_free(&m);
}

/* An empty batch (a rank with no samples in a step) contributes zero loss and zero grads. */
static void test_empty_batch(void)
{
    const struct config_layer layers[2] = {{3, DMLP_ACT_TANH, 0}, {2, DMLP_ACT_LINEAR, 0}};
    struct model *m = NULL;
    struct dmlp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(model_create(&m, 4, layers, 2, DMLP_LOSS_MSE, &err), 0);
    CU_ASSERT_EQUAL_FATAL(model_reserve(m, 2, &err), 0);
    for (size_t i = 0; i < m->n_params; i++)
        m->grads[i] = 1.0f;
    const float X[1] = {0.0f}, T[1] = {0.0f};
    size_t correct = 0;
    CU_ASSERT_EQUAL(model_train_batch(m, X, NULL, T, 0, &correct), 0.0);
    size_t nonzero = 0;
    for (size_t i = 0; i < m->n_params; i++)
        nonzero += m->grads[i] != 0.0f;
    CU_ASSERT_EQUAL(nonzero, 0);
    CU_ASSERT_EQUAL(correct, 0);
    model_free(&m);
}

static CU_TestInfo gradcheck_tests[] = {
    {"softmax + cross_entropy, every hidden activation", test_cross_entropy},
    {"mse, every output x hidden activation", test_mse},
    {"gradient repeatable across calls and threads", test_repeatable},
    {"empty batch gives zero gradient", test_empty_batch},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"gradcheck", NULL, NULL, NULL, NULL, gradcheck_tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
