#include "nn/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/kernels.h"
#include "nn/loss.h"
#include "nn/vec.h"

/* The network's shape rules: at least one layer and one input, no empty layer, softmax on
 * the output layer only, and cross_entropy exactly with a softmax output. */
static int check_network(size_t in_dim, const struct config_layer *layers, size_t n_layers,
                         enum dmlp_loss loss, struct dmlp_error *err)
{
    if (n_layers == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "model: no layers");
    if (in_dim == 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "model: input width is 0");
    for (size_t l = 0; l < n_layers; l++) {
        if (layers[l].units == 0)
            return dmlp_fail(err, DMLP_ERR_INPUT, "model.layers[%zu].units: must be >= 1", l);
        if (layers[l].activation == DMLP_ACT_SOFTMAX && l + 1 != n_layers)
            return dmlp_fail(err, DMLP_ERR_INPUT,
                             "model.layers[%zu].activation: softmax is allowed on the output "
                             "layer only", l);
    }
    const enum dmlp_activation last = layers[n_layers - 1].activation;
    if ((last == DMLP_ACT_SOFTMAX) != (loss == DMLP_LOSS_CROSS_ENTROPY))
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "loss: cross_entropy goes with a softmax output layer and only with it "
                         "(output is %s, loss is %s)",
                         dmlp_activation_name(last), dmlp_loss_name(loss));
    return DMLP_OK;
}

/* Each layer's shape and offset in the flat buffer (weights, then bias, each padded to 16
 * floats); m->n_params the total. */
static int lay_out_params(struct model *m, size_t in_dim, const struct config_layer *layers,
                          struct dmlp_error *err)
{
    size_t off = 0, prev = in_dim;
    for (size_t l = 0; l < m->n_layers; l++) {
        struct model_layer *L = &m->layers[l];
        L->in = prev;
        L->out = layers[l].units;
        L->act = layers[l].activation;
        L->dropout = (float)layers[l].dropout;
        L->offset = off;
        size_t nw, tot;
        if (dmlp_mul_size(&nw, L->out, L->in) || dmlp_add_size(&tot, dmlp_pad16(nw), L->out) ||
            dmlp_add_size(&off, off, dmlp_pad16(tot)) || off > SIZE_MAX / sizeof(float))
            return dmlp_fail(err, DMLP_ERR_INPUT,
                             "model.layers[%zu]: %zu x %zu weights overflow the address space",
                             l, L->out, L->in);
        prev = L->out;
    }
    m->n_params = off;
    return DMLP_OK;
}

/* Parameters and gradients must fit in memory (optimizer state comes on top); the message
 * names the widest layer. */
static int check_params_fit(const struct model *m, struct dmlp_error *err)
{
    const size_t off = m->n_params;
    size_t need, widest = 0;
    for (size_t l = 1; l < m->n_layers; l++)
        if ((double)m->layers[l].out * (double)m->layers[l].in >
            (double)m->layers[widest].out * (double)m->layers[widest].in)
            widest = l;
    if (dmlp_mul_size(&need, off, 2 * sizeof(float)) || need > dmlp_phys_mem())
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "model.layers[%zu]: %zu units x %zu inputs: the network's %zu "
                         "parameters need %zu bytes (parameters and gradients), more than "
                         "this machine's %zu bytes of memory", widest, m->layers[widest].out,
                         m->layers[widest].in, off, need, dmlp_phys_mem());
    return DMLP_OK;
}

/* The flat parameter and gradient buffers, and every layer's views into them. */
static int alloc_params(struct model *m, struct dmlp_error *err)
{
    const size_t off = m->n_params;
    m->params = dmlp_alloc_aligned(off * sizeof(float));
    m->grads = dmlp_alloc_aligned((off + MODEL_CONTROL_SLOTS) * sizeof(float));
    if (!m->params || !m->grads)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "model: cannot allocate %zu parameters", off);
    for (size_t l = 0; l < m->n_layers; l++) {
        struct model_layer *L = &m->layers[l];
        const size_t boff = L->offset + dmlp_pad16(L->out * L->in);
        L->W = m->params + L->offset;
        L->b = m->params + boff;
        L->dW = m->grads + L->offset;
        L->db = m->grads + boff;
    }
    return DMLP_OK;
}

int model_create(struct model **out, size_t in_dim, const struct config_layer *layers,
                 size_t n_layers, enum dmlp_loss loss, struct dmlp_error *err)
{
    *out = NULL;
    int rc = check_network(in_dim, layers, n_layers, loss, err);
    if (rc)
        return rc;
    struct model *m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc(n_layers, sizeof *m->layers))) {
        free(m);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "model: out of memory");
    }
    m->n_layers = n_layers;
    m->loss = loss;
    m->loss_delta = 1.0;
    if ((rc = lay_out_params(m, in_dim, layers, err)) || (rc = check_params_fit(m, err)) ||
        (rc = alloc_params(m, err))) {
        model_free(&m);
        return rc;
    }
    *out = m;
    return DMLP_OK;
}

static void free_workspace(struct model *m)
{
    for (size_t l = 0; l < m->n_layers; l++) {
        struct model_layer *L = &m->layers[l];
        dmlp_free_aligned(L->A);
        dmlp_free_aligned(L->S);
        dmlp_free_aligned(L->D);
        L->A = L->S = L->D = NULL;
    }
    dmlp_free_aligned(m->scratch);
    dmlp_free_aligned(m->G0);
    dmlp_free_aligned(m->G1);
    m->scratch = m->G0 = m->G1 = NULL;
    m->max_batch = 0;
}

void model_free(struct model **mp)
{
    struct model *m = *mp;
    if (!m)
        return;
    if (m->layers)
        free_workspace(m);
    dmlp_free_aligned(m->params);
    dmlp_free_aligned(m->grads);
    free(m->norm_mean);
    free(m->norm_std);
    free(m->target_mean);
    free(m->target_std);
    free(m->loss_weights);
    free(m->layers);
    free(m);
    *mp = NULL;
}

void model_init_params(struct model *m, enum dmlp_init init, struct rng *r)
{
    memset(m->params, 0, m->n_params * sizeof(float));
    for (size_t l = 0; l < m->n_layers; l++) {
        struct model_layer *L = &m->layers[l];
        /* He: Var = 2/fan_in (for ReLU-family units); Xavier/Glorot: Var = 2/(fan_in+fan_out). */
        const double var = init == DMLP_INIT_HE ? 2.0 / (double)L->in
                                                : 2.0 / (double)(L->in + L->out);
        const double sd = sqrt(var);
        for (size_t i = 0; i < L->out * L->in; i++)
            L->W[i] = (float)(sd * rng_normal(r));
    }
}

/* The workspace a batch of max_batch rows needs, in floats: the kernels' packing scratch,
 * G0 and G1 (gsz each), and A per layer; *bytes the total. -1 when a size overflows. */
static int workspace_size(const struct model *m, size_t max_batch, size_t *scratch,
                          size_t *gsz, size_t *bytes)
{
    size_t widest = 0;
    *scratch = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        widest = L->out > widest ? L->out : widest;
        widest = L->in > widest ? L->in : widest;
        size_t a, b;
        if (dmlp_mul_size(&a, L->out, L->in) || dmlp_mul_size(&b, max_batch, L->out) ||
            dmlp_mul_size(&a, max_batch, L->in))
            return -1;
        /* The kernels' packing scratch: at most max(batch, out) × 256 floats, so within
         * the products just checked. */
        const size_t ws = kernel_workspace_floats(max_batch, L->in, L->out);
        *scratch = ws > *scratch ? ws : *scratch;
    }
    /* Total workspace: scratch, G0, G1, and A per layer, all in floats. */
    size_t floats, zsum = 0;
    for (size_t l = 0; l < m->n_layers; l++) /* A, and S and D with dropout */
        if (dmlp_add_size(&zsum, zsum, m->layers[l].out * (m->layers[l].dropout > 0 ? 3 : 1)))
            return -1;
    if (dmlp_mul_size(gsz, max_batch, widest) || dmlp_mul_size(&zsum, zsum, max_batch) ||
        dmlp_mul_size(&floats, *gsz, 2) || dmlp_add_size(&floats, floats, *scratch) ||
        dmlp_add_size(&floats, floats, zsum) || dmlp_mul_size(bytes, floats, sizeof(float)))
        return -1;
    return 0;
}

/* Allocates the workspace workspace_size measured; 0 when every allocation succeeded. */
static int alloc_workspace(struct model *m, size_t max_batch, size_t scratch, size_t gsz)
{
    m->scratch = dmlp_alloc_aligned(scratch * sizeof(float));
    m->G0 = dmlp_alloc_aligned(gsz * sizeof(float));
    m->G1 = dmlp_alloc_aligned(gsz * sizeof(float));
    int ok = m->scratch && m->G0 && m->G1;
    for (size_t l = 0; ok && l < m->n_layers; l++) {
        struct model_layer *L = &m->layers[l];
        L->A = dmlp_alloc_aligned(max_batch * L->out * sizeof(float));
        ok = L->A != NULL;
        if (ok && L->dropout > 0) {
            L->S = dmlp_alloc_aligned(max_batch * L->out * sizeof(float));
            L->D = dmlp_alloc_aligned(max_batch * L->out * sizeof(float));
            ok = L->S && L->D;
        }
    }
    return ok ? 0 : -1;
}

int model_reserve(struct model *m, size_t max_batch, struct dmlp_error *err)
{
    if (max_batch <= m->max_batch)
        return DMLP_OK;
    free_workspace(m);
    size_t scratch, gsz, bytes;
    if (workspace_size(m, max_batch, &scratch, &gsz, &bytes))
        return dmlp_fail(err, DMLP_ERR_INPUT,
                         "model: a batch of %zu rows overflows the workspace size", max_batch);
    if (bytes > dmlp_phys_mem())
        return dmlp_fail(err, DMLP_ERR_INPUT, "model: a batch of %zu rows needs %zu bytes of "
                         "workspace, more than this machine's %zu bytes of memory (lower "
                         "training.batch_size)", max_batch, bytes, dmlp_phys_mem());
    if (alloc_workspace(m, max_batch, scratch, gsz)) {
        free_workspace(m);
        return dmlp_fail(err, DMLP_ERR_RUNTIME,
                         "model: cannot allocate the workspace for a batch of %zu", max_batch);
    }
    m->max_batch = max_batch;
    return DMLP_OK;
}

int model_set_normalization(struct model *m, const float *mean, const float *std,
                            struct dmlp_error *err)
{
    const size_t d = model_input_dim(m);
    if (!m->norm_mean)
        m->norm_mean = malloc(d * sizeof(float));
    if (!m->norm_std)
        m->norm_std = malloc(d * sizeof(float));
    if (!m->norm_mean || !m->norm_std)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "model: out of memory");
    memcpy(m->norm_mean, mean, d * sizeof(float));
    memcpy(m->norm_std, std, d * sizeof(float));
    return DMLP_OK;
}

int model_set_target_normalization(struct model *m, const float *mean, const float *std,
                                   struct dmlp_error *err)
{
    const size_t k = model_output_dim(m);
    if (!m->target_mean)
        m->target_mean = malloc(k * sizeof(float));
    if (!m->target_std)
        m->target_std = malloc(k * sizeof(float));
    if (!m->target_mean || !m->target_std)
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "model: out of memory");
    memcpy(m->target_mean, mean, k * sizeof(float));
    memcpy(m->target_std, std, k * sizeof(float));
    return DMLP_OK;
}

int model_set_loss(struct model *m, double delta, const float *weights,
                   struct dmlp_error *err)
{
    const size_t k = model_output_dim(m);
    m->loss_delta = delta;
    if (!weights) {
        free(m->loss_weights);
        m->loss_weights = NULL;
        return DMLP_OK;
    }
    if (!m->loss_weights && !(m->loss_weights = malloc(k * sizeof(float))))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "model: out of memory");
    memcpy(m->loss_weights, weights, k * sizeof(float));
    return DMLP_OK;
}

void model_set_dropout(struct model *m, int on, uint64_t seed, uint64_t step, uint64_t first)
{
    m->drop_on = on;
    m->drop_seed = seed;
    m->drop_step = step;
    m->drop_first = first;
}

/* splitmix64's finaliser: a bijection of 64 bits that mixes every input bit into all. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The key of one sample's row in one layer; a unit's draw is mix64(row key + unit·φ). */
static uint64_t dropout_row_key(uint64_t seed, uint64_t t, uint64_t i, size_t l)
{
    uint64_t h = mix64(seed ^ 0x64726f706f7574ull); /* "dropout" */
    h = mix64(h ^ t);
    h = mix64(h ^ i);
    return mix64(h ^ (uint64_t)l);
}

/* Keep when the draw's top 53 bits, as a uniform in [0, 1), are at least p. */
static int keep_draw(uint64_t row_key, size_t u, double p)
{
    const uint64_t z = mix64(row_key + 0x9e3779b97f4a7c15ull * ((uint64_t)u + 1));
    return (double)(z >> 11) * 0x1.0p-53 >= p;
}

int model_dropout_keep(uint64_t seed, uint64_t t, uint64_t i, size_t l, size_t u, double p)
{
    return keep_draw(dropout_row_key(seed, t, i, l), u, p);
}

/* Layer l's dropout over the batch's rows: S = mask / (1 − p), D = A ⊙ S. */
static void apply_dropout(struct model *m, size_t l, size_t batch)
{
    struct model_layer *L = &m->layers[l];
    const float scale = (float)(1.0 / (1.0 - (double)L->dropout));
    for (size_t j = 0; j < batch; j++) {
        const uint64_t key = dropout_row_key(m->drop_seed, m->drop_step, m->drop_first + j, l);
        float *s = L->S + j * L->out, *d = L->D + j * L->out;
        const float *a = L->A + j * L->out;
        for (size_t u = 0; u < L->out; u++) {
            s[u] = keep_draw(key, u, (double)L->dropout) ? scale : 0.0f;
            d[u] = a[u] * s[u];
        }
    }
}

/* What layer l hands the next one in the pass now running: D with dropout, else A. */
static const float *layer_output(const struct model *m, size_t l)
{
    const struct model_layer *L = &m->layers[l];
    return m->drop_on && L->dropout > 0 ? L->D : L->A;
}

void model_unscale_outputs(const struct model *m, float *y, size_t rows)
{
    if (m->target_mean)
        kernel_vec()->unstandardize(y, rows, model_output_dim(m), m->target_mean,
                                    m->target_std);
}

size_t model_output_dim(const struct model *m) { return m->layers[m->n_layers - 1].out; }
size_t model_input_dim(const struct model *m) { return m->layers[0].in; }

const float *model_forward(struct model *m, const float *X, size_t batch)
{
    const float *in = X;
    for (size_t l = 0; l < m->n_layers; l++) {
        struct model_layer *L = &m->layers[l];
        kernel_linear_forward(L->A, m->scratch, in, L->W, L->b, L->act, batch, L->in, L->out);
        if (m->drop_on && L->dropout > 0)
            apply_dropout(m, l, batch);
        in = layer_output(m, l);
    }
    return in;
}

double model_loss(struct model *m, const int32_t *labels, const float *targets,
                  const float *row_w, size_t batch, int want_grad)
{
    return model_loss_of(m, m->layers[m->n_layers - 1].A, labels, targets, row_w, batch,
                         want_grad);
}

double model_loss_of(struct model *m, const float *Y, const int32_t *labels,
                     const float *targets, const float *row_w, size_t batch, int want_grad)
{
    const struct model_layer *L = &m->layers[m->n_layers - 1];
    double loss;
    if (m->loss == DMLP_LOSS_CROSS_ENTROPY) {
        /* Softmax + cross-entropy fuse to G = ω(P − T). */
        loss = row_w ? loss_xent_weighted(m->G0, Y, labels, row_w, batch, L->out)
                     : kernel_softmax_xent(m->G0, Y, labels, batch, L->out);
    } else {
        /* G = ∂ℓ/∂Y ⊙ f'(Z), with ∂ℓ/∂Y = 2(Y − T) for plain mse. */
        const struct loss_spec spec = {m->loss, m->loss_delta, m->loss_weights};
        if (m->loss == DMLP_LOSS_MSE && !row_w && !m->loss_weights)
            loss = kernel_mse(m->G0, Y, targets, batch, L->out);
        else
            loss = loss_regression(m->G0, Y, targets, row_w, batch, L->out, &spec);
        if (want_grad)
            kernel_activation_backward(m->G0, Y, L->act, batch, L->out);
    }
    return loss;
}

void model_backward_chunked(struct model *m, const float *X, size_t batch, size_t chunk_floats,
                            model_grad_ready_fn *ready, void *ctx)
{
    float *G = m->G0, *Gnext = m->G1;
    for (size_t l = m->n_layers; l-- > 0;) {
        struct model_layer *L = &m->layers[l];
        const float *in = l ? layer_output(m, l - 1) : X;
        if (!ready) {
            kernel_linear_backward_params(L->dW, L->db, m->scratch, G, in, batch, L->in,
                                          L->out);
        } else {
            /* db first (it lies above W), then W's rows from the last: what is final is
             * always a suffix of the buffer. Chunks are whole row tiles, so every element
             * is computed as in one call. */
            kernel_bias_grad(L->db, G, batch, L->out);
            ready(ctx, (size_t)(L->db - m->grads));
            size_t rows = chunk_floats / L->in / KERNEL_ROW_TILE * KERNEL_ROW_TILE;
            rows = rows ? rows : KERNEL_ROW_TILE;
            for (size_t r1 = L->out; r1 > 0;) {
                const size_t r0 = r1 > rows ? (r1 - 1) / rows * rows : 0;
                kernel_linear_backward_params_rows(L->dW, m->scratch, G, in, batch, L->in,
                                                   L->out, r0, r1);
                ready(ctx, L->offset + r0 * L->in);
                r1 = r0;
            }
        }
        if (l == 0)
            break;
        /* G_{l-1} = (G_l · W_l) ⊙ f'_{l-1}(Z_{l-1}), the derivative fused into the store */
        const struct model_layer *P = &m->layers[l - 1];
        kernel_linear_backward_input(Gnext, m->scratch, G, L->W, P->A, P->act, batch, L->in,
                                     L->out);
        if (m->drop_on && P->dropout > 0) /* ∂D/∂A = S */
            for (size_t i = 0; i < batch * P->out; i++)
                Gnext[i] *= P->S[i];
        float *t = G;
        G = Gnext;
        Gnext = t;
    }
}

void model_backward(struct model *m, const float *X, size_t batch)
{
    model_backward_chunked(m, X, batch, 0, NULL, NULL);
}

int model_find_nonfinite(const struct model *m, const float *buf, size_t *layer,
                         const char **what)
{
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        const float *W = buf + (L->dW - m->grads), *b = buf + (L->db - m->grads);
        int bad = 0;
        for (size_t i = 0; i < L->out * L->in; i++)
            bad |= !isfinite(W[i]);
        if (bad) {
            *layer = l;
            *what = "weight";
            return 1;
        }
        for (size_t j = 0; j < L->out; j++)
            bad |= !isfinite(b[j]);
        if (bad) {
            *layer = l;
            *what = "bias";
            return 1;
        }
    }
    return 0;
}

double model_train_batch(struct model *m, const float *X, const int32_t *labels,
                         const float *targets, size_t batch, size_t *correct)
{
    if (batch == 0) {
        memset(m->grads, 0, m->n_params * sizeof(float));
        return 0.0;
    }
    const float *Y = model_forward(m, X, batch);
    if (labels && correct)
        *correct += kernel_count_correct(Y, labels, batch, model_output_dim(m));
    const double loss = model_loss(m, labels, targets, NULL, batch, 1);
    model_backward(m, X, batch);
    return loss;
}
