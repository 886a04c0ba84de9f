/* infer: the embedding interface of include/dmlp/infer.h. A loaded net is a model whose
 * parameters are read-only after the load; every call of dmlp_net_predict brings its own
 * workspace, so calls may run concurrently on one net. The forward pass is the one
 * `dmlp predict` runs (standardisation, then kernel_linear_forward per layer, row by row
 * independent of the batch split), so the outputs carry the same bits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmlp/infer.h"

#include "core/util.h"
#include "data/checkpoint.h"
#include "nn/kernels.h"
#include "nn/model.h"
#include "nn/vec.h"

/* Rows per pass through the layers: bounds a call's workspace, whatever n. */
enum { INFER_CHUNK = 256 };

struct dmlp_net {
    struct model *m;
    size_t widest;  /* the widest layer output */
    size_t ws;      /* kernel workspace floats for INFER_CHUNK rows, the largest layer */
};

static void put_error(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

dmlp_net *dmlp_net_load(const char *path, char *err, size_t errlen)
{
    struct dmlp_error e = {0};
    if (!path || !path[0]) {
        put_error(err, errlen, "dmlp_net_load: no checkpoint path given");
        return NULL;
    }
    struct dmlp_net *net = calloc(1, sizeof *net);
    size_t in_dim = 0, n_layers = 0;
    struct config_layer *layers = NULL;
    enum dmlp_loss loss = DMLP_LOSS_CROSS_ENTROPY;
    if (!net)
        dmlp_fail(&e, DMLP_ERR_RUNTIME, "%s: out of memory", path);
    else if (checkpoint_read_network(path, &in_dim, &layers, &n_layers, &loss, &e) == DMLP_OK &&
             model_create(&net->m, in_dim, layers, n_layers, loss, &e) == DMLP_OK)
        checkpoint_load_layers(path, net->m, &e);
    free(layers);
    if (e.code) {
        put_error(err, errlen, e.msg);
        dmlp_net_free(net);
        return NULL;
    }
    for (size_t l = 0; l < net->m->n_layers; l++) {
        const struct model_layer *L = &net->m->layers[l];
        const size_t ws = kernel_workspace_floats(INFER_CHUNK, L->in, L->out);
        net->widest = L->out > net->widest ? L->out : net->widest;
        net->ws = ws > net->ws ? ws : net->ws;
    }
    (void)kernel_vec(); /* the instruction set is chosen here, once, not by racing calls */
    return net;
}

size_t dmlp_net_inputs(const dmlp_net *net) { return net ? model_input_dim(net->m) : 0; }
size_t dmlp_net_outputs(const dmlp_net *net) { return net ? model_output_dim(net->m) : 0; }

void dmlp_net_free(dmlp_net *net)
{
    if (!net)
        return;
    model_free(&net->m);
    free(net);
}

/* A call's workspace: the standardised rows, two activation buffers, the kernels'. */
struct workspace {
    float *x, *a[2], *ws;
};

static int workspace_get(const struct dmlp_net *net, struct workspace *w)
{
    const size_t rows = INFER_CHUNK, D = model_input_dim(net->m);
    w->x = net->m->norm_mean ? dmlp_alloc_aligned(rows * D * sizeof(float)) : NULL;
    w->a[0] = dmlp_alloc_aligned(rows * net->widest * sizeof(float));
    w->a[1] = dmlp_alloc_aligned(rows * net->widest * sizeof(float));
    w->ws = dmlp_alloc_aligned(net->ws * sizeof(float));
    return (net->m->norm_mean && !w->x) || !w->a[0] || !w->a[1] || !w->ws;
}

static void workspace_free(struct workspace *w)
{
    dmlp_free_aligned(w->x);
    dmlp_free_aligned(w->a[0]);
    dmlp_free_aligned(w->a[1]);
    dmlp_free_aligned(w->ws);
}

/* rows of x through the network into y: standardisation (as `dmlp predict` applies it to
 * the data), then each layer, the last one storing into y. */
static void forward(const struct model *m, struct workspace *w, size_t rows, const float *x,
                    float *y)
{
    const size_t D = model_input_dim(m);
    if (m->norm_mean) {
        memcpy(w->x, x, rows * D * sizeof(float));
        kernel_vec()->standardize(w->x, rows, D, m->norm_mean, m->norm_std);
        x = w->x;
    }
    const float *in = x;
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        float *out = l + 1 == m->n_layers ? y : w->a[l % 2];
        kernel_linear_forward(out, w->ws, in, L->W, L->b, L->act, rows, L->in, L->out);
        in = out;
    }
}

int dmlp_net_predict(const dmlp_net *net, size_t n, const float *x, float *y, char *err,
                     size_t errlen)
{
    if (!net || (n && (!x || !y))) {
        put_error(err, errlen, !net ? "dmlp_net_predict: net is NULL"
                                    : !x ? "dmlp_net_predict: x is NULL"
                                         : "dmlp_net_predict: y is NULL");
        return DMLP_ERR_INPUT;
    }
    const size_t D = model_input_dim(net->m), K = model_output_dim(net->m);
    size_t bytes;
    if (dmlp_mul_size(&bytes, n, D > K ? D : K) || dmlp_mul_size(&bytes, bytes, sizeof(float))) {
        char msg[128];
        snprintf(msg, sizeof msg, "dmlp_net_predict: %zu rows overflow the address space", n);
        put_error(err, errlen, msg);
        return DMLP_ERR_INPUT;
    }
    if (n == 0)
        return DMLP_OK;
    struct workspace w;
    if (workspace_get(net, &w)) {
        workspace_free(&w);
        put_error(err, errlen, "dmlp_net_predict: out of memory for the workspace");
        return DMLP_ERR_RUNTIME;
    }
    for (size_t i = 0; i < n; i += INFER_CHUNK) {
        const size_t rows = n - i < INFER_CHUNK ? n - i : INFER_CHUNK;
        forward(net->m, &w, rows, x + i * D, y + i * K);
    }
    workspace_free(&w);
    return DMLP_OK;
}
