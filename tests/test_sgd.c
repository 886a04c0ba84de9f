/* test_sgd: one SGD step of the classic 2-2-1 sigmoid network checked against numbers worked
 * out by hand, then momentum, Nesterov, weight decay and the gradient scale against
 * PyTorch's torch.optim.SGD formulas evaluated in double here.
 *
 * Tolerances. The parameters are float32 (0.15f is not 0.15: relative error <= 2^-24) and
 * every step is a handful of float operations on O(1) numbers, so the float results sit
 * within ~1e-7 of the exact ones; 1e-6 absolute leaves ten times that. The smallest
 * quantity a bug would have to hide in, the first-layer weight gradient ~1.3e-3 times
 * η = 0.5, is 600 times the tolerance. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "testutil.h"

static const double TOL = 1e-6;

#define CHECK_CLOSE(got, expect)                                                            \
    do {                                                                                    \
        const double g_ = (got), e_ = (expect);                                             \
        if (!(fabs(g_ - e_) <= TOL))                                                        \
            fprintf(stderr, "\n  %s = %.12f, expected %.12f", #got, g_, e_);                \
        CU_ASSERT(fabs(g_ - e_) <= TOL);                                                    \
    } while (0)

/* ---- the 2-2-1 worked example ------------------------------------------------------- */

/* Network: h = σ(W1 x + b1), y = σ(W2 h + b2), loss ℓ = (y − t)² (docs/architecture.md, "The math": no ½), so
 * ∂ℓ/∂y = 2(y − t) and every gradient is twice the textbook example's (which uses ½(y − t)²).
 *
 *   W1 = [[0.15, 0.20], [0.25, 0.30]]  b1 = [0.35, 0.35]  W2 = [[0.40, 0.45]]  b2 = [0.60]
 *   x = [0.05, 0.10]  t = [0.01]  η = 0.5
 *
 * Forward:
 *   z1_1 = 0.15·0.05 + 0.20·0.10 + 0.35 = 0.3775          h1 = σ(0.3775) = 0.593269992107
 *   z1_2 = 0.25·0.05 + 0.30·0.10 + 0.35 = 0.3925          h2 = σ(0.3925) = 0.596884378260
 *   z2   = 0.40·h1 + 0.45·h2 + 0.60 = 1.105905967060      y  = σ(z2)    = 0.751365069552
 *   ℓ    = (y − t)² = 0.741365069552² = 0.549622166352
 * Backward:
 *   ∂ℓ/∂y = 2(y − t) = 1.482730139105;  σ'(z2) = y(1 − y) = 0.186815601809
 *   δ2    = 1.482730139105 · 0.186815601809 = 0.276997123257
 *   ∂ℓ/∂W2 = δ2·[h1, h2] = [0.164334081128, 0.165335255695],  ∂ℓ/∂b2 = δ2
 *   δ1_j  = δ2 · W2_j · h_j(1 − h_j):
 *   δ1_1  = 0.276997123257 · 0.40 · 0.241300709 = 0.026735840846
 *   δ1_2  = 0.276997123257 · 0.45 · 0.240613948 = 0.029992150978
 *   ∂ℓ/∂W1 = δ1 xᵀ = [[0.001336792042, 0.002673584085],
 *                     [0.001499607549, 0.002999215098]],  ∂ℓ/∂b1 = δ1
 * Update θ ← θ − η·g (batch of 1, scale 1):
 *   W2 = [0.40 − 0.5·0.164334081128, 0.45 − 0.5·0.165335255695]
 *      = [0.317832959436, 0.367332372152]
 *   b2 = 0.60 − 0.5·0.276997123257 = 0.461501438371
 *   W1 = [[0.15 − 0.5·0.001336792042, 0.20 − 0.5·0.002673584085],
 *         [0.25 − 0.5·0.001499607549, 0.30 − 0.5·0.002999215098]]
 *      = [[0.149331603979, 0.198663207958], [0.249250196226, 0.298500392451]]
 *   b1 = [0.35 − 0.5·0.026735840846, 0.35 − 0.5·0.029992150978]
 *      = [0.336632079577, 0.335003924511]
 * (Checked once with a throwaway double-precision script.) */
static void test_worked_example(void)
{
    const struct config_layer layers[2] = {{2, DMLP_ACT_SIGMOID, 0}, {1, DMLP_ACT_SIGMOID, 0}};
    struct model *m = NULL;
    struct dmlp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(model_create(&m, 2, layers, 2, DMLP_LOSS_MSE, &err), DMLP_OK);
    struct model_layer *L1 = &m->layers[0], *L2 = &m->layers[1];
    const float W1[4] = {0.15f, 0.20f, 0.25f, 0.30f}, b1[2] = {0.35f, 0.35f};
    const float W2[2] = {0.40f, 0.45f}, b2[1] = {0.60f};
    memcpy(L1->W, W1, sizeof W1);
    memcpy(L1->b, b1, sizeof b1);
    memcpy(L2->W, W2, sizeof W2);
    memcpy(L2->b, b2, sizeof b2);
    CU_ASSERT_EQUAL_FATAL(model_reserve(m, 1, &err), DMLP_OK);

    const float x[2] = {0.05f, 0.10f}, t[1] = {0.01f};
    const double loss = model_train_batch(m, x, NULL, t, 1, NULL);

    /* Intermediate values, kept by the model's workspace. */
    CHECK_CLOSE(L1->A[0], 0.593269992107);
    CHECK_CLOSE(L1->A[1], 0.596884378260);
    CHECK_CLOSE(L2->A[0], 0.751365069552);
    CHECK_CLOSE(loss, 0.549622166352);
    /* Gradients (δ2 = ∂ℓ/∂b2, δ1 = ∂ℓ/∂b1). */
    CHECK_CLOSE(L2->db[0], 0.276997123257);
    CHECK_CLOSE(L2->dW[0], 0.164334081128);
    CHECK_CLOSE(L2->dW[1], 0.165335255695);
    CHECK_CLOSE(L1->db[0], 0.026735840846);
    CHECK_CLOSE(L1->db[1], 0.029992150978);
    CHECK_CLOSE(L1->dW[0], 0.001336792042);
    CHECK_CLOSE(L1->dW[1], 0.002673584085);
    CHECK_CLOSE(L1->dW[2], 0.001499607549);
    CHECK_CLOSE(L1->dW[3], 0.002999215098);

    const struct config_optimizer cfg = {.name = DMLP_OPT_SGD, .lr = 0.5, .momentum = 0.0};
    struct optim *o = NULL;
    CU_ASSERT_EQUAL_FATAL(optim_create(&o, &cfg, m->n_params, &err), DMLP_OK);
    optim_step(o, m->params, m->grads, 1.0f / 1, 0.5);
    CU_ASSERT_EQUAL(o->steps, 1);

    CHECK_CLOSE(L2->W[0], 0.317832959436);
    CHECK_CLOSE(L2->W[1], 0.367332372152);
    CHECK_CLOSE(L2->b[0], 0.461501438371);
    CHECK_CLOSE(L1->W[0], 0.149331603979);
    CHECK_CLOSE(L1->W[1], 0.198663207958);
    CHECK_CLOSE(L1->W[2], 0.249250196226);
    CHECK_CLOSE(L1->W[3], 0.298500392451);
    CHECK_CLOSE(L1->b[0], 0.336632079577);
    CHECK_CLOSE(L1->b[1], 0.335003924511);

    /* The padding between views has zero gradient and stays zero. */
    size_t pad_nonzero = 0, used = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const float *p = m->params + i;
        const int in_view = (p >= L1->W && p < L1->W + 4) || (p >= L1->b && p < L1->b + 2) ||
                            (p >= L2->W && p < L2->W + 2) || (p >= L2->b && p < L2->b + 1);
        used += in_view;
        pad_nonzero += !in_view && *p != 0.0f;
    }
    CU_ASSERT_EQUAL(used, 9);
    CU_ASSERT_EQUAL(pad_nonzero, 0);
    optim_free(&o);
    CU_ASSERT_PTR_NULL(o);
    model_free(&m);
}

/* ---- momentum, Nesterov, weight decay, scale ---------------------------------------- */

enum { NP = 37, STEPS = 3 }; /* odd length, so a split across threads is uneven */

/* torch.optim.SGD (dampening 0), in double, on the summed gradient ĝ_sum:
 *     g = ĝ_sum·(1/count) + λθ;  v = g on the first step, else v = μv + g;
 *     d = g + μv (Nesterov) or v;  θ ← θ − η d. */
static void sgd_reference(double *theta, double *v, const double *gsum, double inv_count,
                          double lr, double mu, double wd, int nesterov, int first)
{
    for (size_t i = 0; i < NP; i++) {
        const double g = gsum[i] * inv_count + wd * theta[i];
        if (mu != 0.0) {
            v[i] = first ? g : mu * v[i] + g;
            theta[i] -= lr * (nesterov ? g + mu * v[i] : v[i]);
        } else {
            theta[i] -= lr * g;
        }
    }
}

struct sgd_variant {
    double mu, wd;
    int nesterov;
    double count; /* samples the summed gradient came from: scale = 1/count */
};

static void sgd_variant_case(const struct sgd_variant *var)
{
    const double lr = 0.1;
    float params[NP], grads[NP];
    double theta[NP], v[NP] = {0}, gsum[NP];
    for (size_t i = 0; i < NP; i++) {
        /* Hand-set values spanning both signs: θ_i in [−1, 1], a mix of exact and inexact
         * floats; θ is stored as float and the reference starts from the same float. */
        params[i] = (float)(0.9 - 1.8 * (double)i / (NP - 1)) + 0.0625f * (float)(i % 3);
        theta[i] = params[i];
    }
    struct optim *o = NULL;
    struct dmlp_error err = {0};
    const struct config_optimizer cfg = {.name = DMLP_OPT_SGD, .lr = lr, .momentum = var->mu,
                                         .nesterov = var->nesterov != 0,
                                         .weight_decay = var->wd};
    CU_ASSERT_EQUAL_FATAL(optim_create(&o, &cfg, NP, &err), DMLP_OK);
    const float scale = (float)(1.0 / var->count);
    for (int s = 0; s < STEPS; s++) {
        /* Summed gradients differing per step and per element (so v really accumulates). */
        for (size_t i = 0; i < NP; i++) {
            const double per_sample = (s == 0 ? 0.5 : s == 1 ? -0.25 : 1.0) *
                                      (1.0 + 0.1 * (double)(i % 5)) * (i % 2 ? -1.0 : 1.0);
            grads[i] = (float)(per_sample * var->count);
            gsum[i] = grads[i];
        }
        optim_step(o, params, grads, scale, lr);
        sgd_reference(theta, v, gsum, 1.0 / var->count, lr, var->mu, var->wd, var->nesterov,
                      s == 0);
    }
    CU_ASSERT_EQUAL(o->steps, STEPS);
    size_t bad = 0, vbad = 0;
    for (size_t i = 0; i < NP; i++) {
        if (!(fabs(params[i] - theta[i]) <= TOL)) {
            if (bad < 3)
                fprintf(stderr, "\n  mu=%g wd=%g nesterov=%d count=%g: θ[%zu] = %.9f, "
                        "expected %.9f", var->mu, var->wd, var->nesterov, var->count, i,
                        params[i], theta[i]);
            bad++;
        }
        if (var->mu != 0.0)
            vbad += !(fabs(o->momentum[i] - v[i]) <= TOL);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(vbad, 0);
    if (var->mu == 0.0)
        CU_ASSERT_PTR_NULL(o->momentum);
    optim_free(&o);
}

/* Momentum 0.9 over three steps, with and without weight decay and Nesterov, and the
 * scale 1/count applied to the summed gradient (count 1, 4 and the inexact 1/3). */
static void test_sgd_variants(void)
{
    const struct sgd_variant variants[] = {
        {0.9, 0.0, 0, 1.0},  {0.9, 0.0, 0, 4.0},  {0.9, 0.01, 0, 4.0},
        {0.9, 0.0, 1, 4.0},  {0.9, 0.01, 1, 3.0}, {0.0, 0.0, 0, 3.0},
        {0.0, 0.01, 0, 4.0},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        sgd_variant_case(&variants[i]);
}

/* A closed-form check that the variants above differ by far more than the tolerance, so
 * the comparison above can tell them apart: one element, θ0 = 1, g per step = 1 (summed
 * over 2 samples: ĝ_sum = 2, scale 1/2), η = 0.1, μ = 0.9, λ = 0.
 *   plain momentum: v = 1, 1.9, 2.71; θ = 1 − 0.1·(1 + 1.9 + 2.71) = 0.439
 *   Nesterov:       d = 1 + 0.9·1 = 1.9, 1 + 0.9·1.9 = 2.71, 1 + 0.9·2.71 = 3.439;
 *                   θ = 1 − 0.1·(1.9 + 2.71 + 3.439) = 0.1951 */
static void test_momentum_closed_form(void)
{
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        struct optim *o = NULL;
        struct dmlp_error err = {0};
        const struct config_optimizer cfg = {.name = DMLP_OPT_SGD, .lr = 0.1, .momentum = 0.9,
                                             .nesterov = nesterov != 0};
        CU_ASSERT_EQUAL_FATAL(optim_create(&o, &cfg, 1, &err), DMLP_OK);
        float theta[1] = {1.0f};
        const float g[1] = {2.0f};
        for (int s = 0; s < 3; s++)
            optim_step(o, theta, g, 0.5f, 0.1);
        CHECK_CLOSE(theta[0], nesterov ? 0.1951 : 0.439);
        CHECK_CLOSE(o->momentum[0], 2.71);
        optim_free(&o);
    }
}

static CU_TestInfo sgd_tests[] = {
    {"2-2-1 sigmoid network, one step by hand", test_worked_example},
    {"momentum / Nesterov / weight decay / scale vs PyTorch formulas", test_sgd_variants},
    {"momentum and Nesterov closed form", test_momentum_closed_form},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"sgd", NULL, NULL, NULL, NULL, sgd_tests},
    CU_SUITE_INFO_NULL,
};

int main(void) { return tu_run(suites); }
