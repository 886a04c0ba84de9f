/* model: a stack of dense layers (docs/architecture.md, "The math") whose parameters and
 * gradients live in one flat, 64-byte-aligned buffer each, with per-layer views (every view
 * starts on a cache line). Forward, loss and backward over a batch using the kernels; workspace
 * for up to max_batch rows is allocated once by model_reserve, so a step allocates nothing.
 * Never touches MPI or HDF5. */
#ifndef DMLP_MODEL_H
#define DMLP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/settings.h"
#include "core/rng.h"
#include "core/util.h"

struct model_layer {
    size_t in, out;
    enum dmlp_activation act;
    float *W, *b;       /* views into model.params: W [out×in], b [out] */
    float *dW, *db;     /* the same views into model.grads */
    size_t offset;      /* offset of W in the flat buffers (in floats); b follows padded */
    /* workspace: the activations f(Z), [max_batch × out] (Z itself is never stored: the
     * derivatives are written in terms of f(Z)) */
    float *A;
    /* Dropout (training only): the probability, and for a layer that has one the mask's
     * scale S (0 or 1/(1 − p) per element) and D = A ⊙ S, what the next layer reads. */
    float dropout;
    float *S, *D;
};

/* The gradient buffer has this many floats past n_params: control values that ride along
 * in the step's gradient allreduce (slot 0: a stop request), so agreeing on them costs no
 * extra collective. */
#define MODEL_CONTROL_SLOTS 16

struct model {
    size_t n_layers;
    struct model_layer *layers;
    enum dmlp_loss loss;
    size_t n_params;    /* length of params/grads in floats, padding included */
    float *params;
    float *grads;       /* n_params + MODEL_CONTROL_SLOTS floats */
    size_t max_batch;   /* rows the workspace holds; 0 before model_reserve */
    float *scratch;     /* kernels' packing workspace (kernel_workspace_floats) */
    float *G0, *G1;     /* ∂ℓ/∂Z ping-pong buffers, [max_batch × max width] */
    /* Input standardisation x ← (x − mean) / std, part of the trained network (saved in
     * checkpoints, applied to data by eval and predict); NULL when not used. The forward
     * pass does not apply it: data are standardised once, in memory, after loading. */
    float *norm_mean, *norm_std; /* [input width] */
    /* Target standardisation (data.normalize_targets): the network learns
     * t' = (t − target_mean) / target_std per output, and every output a user sees is
     * mapped back, y = y' · target_std + target_mean (model_unscale_outputs); NULL when not
     * used. Saved in checkpoints beside the input statistics. */
    float *target_mean, *target_std; /* [output width] */
    /* The loss's parameters (model_set_loss): huber's δ and the per-output weights of a
     * regression loss ([output width], NULL: all 1). Saved in checkpoints. */
    double loss_delta;
    float *loss_weights;
    /* Dropout while training (model_set_dropout): on, and the mask's key. Off for eval. */
    int drop_on;
    uint64_t drop_seed, drop_step, drop_first;
};

/* Builds a model for inputs of width in_dim with the given layers; parameters zero.
 * Checks the loss/activation combination and that no buffer size overflows. */
int model_create(struct model **out, size_t in_dim, const struct config_layer *layers,
                 size_t n_layers, enum dmlp_loss loss, struct dmlp_error *err);
void model_free(struct model **m);

/* He (N(0, 2/in)) or Xavier (N(0, 2/(in+out))) weights, zero biases, drawn from r. */
void model_init_params(struct model *m, enum dmlp_init init, struct rng *r);

/* Allocates the per-batch workspace for up to max_batch rows (idempotent if smaller). */
int model_reserve(struct model *m, size_t max_batch, struct dmlp_error *err);

/* Copies the input standardisation (both [input width]) into the model. */
int model_set_normalization(struct model *m, const float *mean, const float *std,
                            struct dmlp_error *err);

/* Copies the target standardisation (both [output width]) into the model. */
int model_set_target_normalization(struct model *m, const float *mean, const float *std,
                                   struct dmlp_error *err);

/* Huber's δ (> 0) and the per-output weights (NULL: all 1; else [output width], ≥ 0). */
int model_set_loss(struct model *m, double delta, const float *weights,
                   struct dmlp_error *err);

/* Dropout for the next forward passes: on (training) or off (evaluation, prediction; the
 * default). Row j of the next batch is the global sample first + j of step `step`: its
 * mask in layer l, unit u, is a Bernoulli(1 − p) draw keyed by (seed, step, first + j, l,
 * u), so it depends on none of the rank count, the thread count or the batch's split. */
void model_set_dropout(struct model *m, int on, uint64_t seed, uint64_t step, uint64_t first);

/* Whether dropout keeps unit u of layer l for global sample i of step t (the draw of
 * model_set_dropout; p is the layer's dropout). For tests and the docs' definition. */
int model_dropout_keep(uint64_t seed, uint64_t t, uint64_t i, size_t l, size_t u, double p);

/* Maps rows of network outputs y [rows × output width] back to the targets' original
 * units in place, y = y · target_std + target_mean (the vec build's unstandardize, so
 * eval, predict and the inference library give the same bits); nothing when the model has
 * no target statistics. */
void model_unscale_outputs(const struct model *m, float *y, size_t rows);

/* Width of the output layer. */
size_t model_output_dim(const struct model *m);
size_t model_input_dim(const struct model *m);

/* Forward pass over X [batch × in]; returns the output activations [batch × out]
 * (a view into the workspace, valid until the next call). batch <= max_batch. */
const float *model_forward(struct model *m, const float *X, size_t batch);

/* Loss of the last forward pass and, if want_grad, its gradient at the output
 * pre-activation stored for model_backward. Exactly one of labels/targets is used
 * (labels for cross_entropy, targets for the regression losses). row_w: the samples'
 * weights ω (NULL: all 1). Returns Σ over samples of ω·ℓ (double). */
double model_loss(struct model *m, const int32_t *labels, const float *targets,
                  const float *row_w, size_t batch, int want_grad);

/* model_loss of outputs Y [batch × out] the caller has (an ensemble's mean) rather than
 * of the last forward pass. */
double model_loss_of(struct model *m, const float *Y, const int32_t *labels,
                     const float *targets, const float *row_w, size_t batch, int want_grad);

/* Backward pass after model_forward + model_loss(want_grad): writes the SUM over the
 * batch's samples of ∂ℓ/∂θ into m->grads (overwriting). X is the forward input. */
void model_backward(struct model *m, const float *X, size_t batch);

/* model_backward for overlapping the gradient allreduce with the rest of the pass: calls
 * ready(ctx, from) each time the gradient from float `from` of m->grads to the end
 * (control slots included) is final, with `from` decreasing to 0 — after each layer's bias
 * gradient and after each chunk of about chunk_floats of its weight gradient (the rows go
 * last to first). The gradient is bit-identical to model_backward's. */
typedef void model_grad_ready_fn(void *ctx, size_t from);
void model_backward_chunked(struct model *m, const float *X, size_t batch, size_t chunk_floats,
                            model_grad_ready_fn *ready, void *ctx);

/* The first layer whose part of buf (m->grads or m->params: the same layout) holds a NaN
 * or an infinity, and in what ("weight" or "bias"); returns 0 when all are finite. */
int model_find_nonfinite(const struct model *m, const float *buf, size_t *layer,
                         const char **what);

/* Convenience: forward + loss + backward; zero grads when batch == 0. Returns Σℓ and
 * adds the number of correctly classified samples to *correct (if labels given). */
double model_train_batch(struct model *m, const float *X, const int32_t *labels,
                         const float *targets, size_t batch, size_t *correct);

#endif
