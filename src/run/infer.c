/* infer: the embedding interface of include/dmlp/infer.h. A loaded net is a model whose
 * parameters are read-only after the load; every call of dmlp_net_predict brings its own
 * workspace, so calls may run concurrently on one net. The forward pass is the one
 * `dmlp predict` runs (standardisation, then kernel_linear_forward per layer, row by row
 * independent of the batch split, then the outputs back to the targets' units), so the
 * outputs carry the same bits. */
#include <omp.h>
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
#include "run/ensemble.h"

/* Rows per pass through the layers: bounds a call's workspace, whatever n. On one thread
 * (a caller's parallel region, OMP_NUM_THREADS=1, or up to INFER_FEW rows), the few-row
 * product on transposed weights (kernel_linear_forward_t) replaces the GEMM, whose packing
 * of the weights costs more than it saves there (bench/bench_infer.c), and no OpenMP team
 * is woken; with more threads and more rows, the threaded GEMM. The bits are the same
 * either way. */
enum { INFER_CHUNK = 256, INFER_FEW = 64 };

/* A layer's weights transposed and padded for the few-row product. */
struct transposed {
    float *wt, *b; /* Wt [in × ld], b [ld] */
    size_t ld;
};

struct dmlp_net {
    struct model *m;
    size_t widest;         /* the widest layer output */
    struct transposed *t;  /* per layer */
};

/* Wt[p·ld + j] = W[j·in + p], and the bias, zero-padded to ld columns. */
static int transpose_layers(struct dmlp_net *net)
{
    const struct model *m = net->m;
    if (!(net->t = calloc(m->n_layers, sizeof *net->t)))
        return -1;
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct model_layer *L = &m->layers[l];
        struct transposed *t = &net->t[l];
        t->ld = (L->out + KERNEL_GEMV_PAD - 1) / KERNEL_GEMV_PAD * KERNEL_GEMV_PAD;
        t->wt = dmlp_alloc_aligned(L->in * t->ld * sizeof(float)); /* zeroed */
        t->b = dmlp_alloc_aligned(t->ld * sizeof(float));
        if (!t->wt || !t->b)
            return -1;
        for (size_t j = 0; j < L->out; j++)
            for (size_t p = 0; p < L->in; p++)
                t->wt[p * t->ld + j] = L->W[j * L->in + p];
        memcpy(t->b, L->b, L->out * sizeof(float));
    }
    return 0;
}

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
    if (!e.code && transpose_layers(net))
        dmlp_fail(&e, DMLP_ERR_RUNTIME, "%s: out of memory for the transposed weights", path);
    if (e.code) {
        put_error(err, errlen, e.msg);
        dmlp_net_free(net);
        return NULL;
    }
    for (size_t l = 0; l < net->m->n_layers; l++)
        net->widest = net->m->layers[l].out > net->widest ? net->m->layers[l].out : net->widest;
    (void)kernel_vec(); /* the instruction set is chosen here, once, not by racing calls */
    return net;
}

size_t dmlp_net_inputs(const dmlp_net *net) { return net ? model_input_dim(net->m) : 0; }
size_t dmlp_net_outputs(const dmlp_net *net) { return net ? model_output_dim(net->m) : 0; }

void dmlp_net_free(dmlp_net *net)
{
    if (!net)
        return;
    for (size_t l = 0; net->t && l < net->m->n_layers; l++) {
        dmlp_free_aligned(net->t[l].wt);
        dmlp_free_aligned(net->t[l].b);
    }
    free(net->t);
    model_free(&net->m);
    free(net);
}

/* A call's workspace, one block: the standardised rows, two activation buffers and the
 * kernels' scratch, for `rows` rows. Not zeroed: every byte is written before it is read. */
struct workspace {
    float *block, *x, *a[2], *ws;
};

static int workspace_get(const struct dmlp_net *net, size_t rows, struct workspace *w)
{
    const struct model *m = net->m;
    size_t ws = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        const size_t need = kernel_workspace_floats(rows, m->layers[l].in, m->layers[l].out);
        ws = need > ws ? need : ws;
    }
    const size_t x = m->norm_mean ? dmlp_pad16(rows * model_input_dim(m)) : 0;
    const size_t a = dmlp_pad16(rows * net->widest);
    w->block = aligned_alloc(64, (x + 2 * a + dmlp_pad16(ws)) * sizeof(float));
    if (!w->block)
        return -1;
    w->x = w->block;
    w->a[0] = w->block + x;
    w->a[1] = w->a[0] + a;
    w->ws = w->a[1] + a;
    return 0;
}

/* rows of x through the network into y: standardisation (as `dmlp predict` applies it to
 * the data), then each layer, the last one storing into y, then y back to the targets'
 * units when the network has target statistics (as `dmlp predict` maps its outputs). */
static void forward(const struct dmlp_net *net, struct workspace *w, size_t rows,
                    const float *x, float *y, int alone)
{
    const struct model *m = net->m;
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
        const struct transposed *t = &net->t[l];
        if (!alone || kernel_linear_forward_t(out, in, t->wt, t->ld, t->b, L->act, rows, L->in,
                                              L->out))
            kernel_linear_forward(out, w->ws, in, L->W, L->b, L->act, rows, L->in, L->out);
        in = out;
    }
    model_unscale_outputs(m, y, rows); /* trained on standardised targets: original units */
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
    if (workspace_get(net, n < INFER_CHUNK ? n : INFER_CHUNK, &w)) {
        put_error(err, errlen, "dmlp_net_predict: out of memory for the workspace");
        return DMLP_ERR_RUNTIME;
    }
    const int alone = n <= INFER_FEW || omp_in_parallel() || omp_get_max_threads() == 1;
    const int was = kernel_run_alone(alone);
    for (size_t i = 0; i < n; i += INFER_CHUNK) {
        const size_t rows = n - i < INFER_CHUNK ? n - i : INFER_CHUNK;
        forward(net, &w, rows, x + i * D, y + i * K, alone);
    }
    kernel_run_alone(was);
    free(w.block);
    return DMLP_OK;
}

/* ---- ensembles -------------------------------------------------------------------------- */

struct dmlp_ensemble {
    dmlp_net **net; /* [n] */
    size_t n;
};

void dmlp_ensemble_free(dmlp_ensemble *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        dmlp_net_free(e->net[i]);
    free(e->net);
    free(e);
}

dmlp_ensemble *dmlp_ensemble_load(const char *const *paths, size_t n, char *err,
                                  size_t errlen)
{
    if (!paths || n == 0) {
        put_error(err, errlen, "dmlp_ensemble_load: no checkpoints");
        return NULL;
    }
    dmlp_ensemble *e = calloc(1, sizeof *e);
    if (!e || !(e->net = calloc(n, sizeof *e->net))) {
        free(e);
        put_error(err, errlen, "dmlp_ensemble_load: out of memory");
        return NULL;
    }
    for (; e->n < n; e->n++) {
        if (!(e->net[e->n] = dmlp_net_load(paths[e->n], err, errlen))) {
            dmlp_ensemble_free(e);
            return NULL;
        }
        const dmlp_net *a = e->net[0], *b = e->net[e->n];
        if (dmlp_net_inputs(b) != dmlp_net_inputs(a) ||
            dmlp_net_outputs(b) != dmlp_net_outputs(a)) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s: %zu inputs and %zu outputs, but %s (the first) "
                     "has %zu and %zu; an ensemble's members must agree", paths[e->n],
                     dmlp_net_inputs(b), dmlp_net_outputs(b), paths[0], dmlp_net_inputs(a),
                     dmlp_net_outputs(a));
            put_error(err, errlen, msg);
            e->n++;
            dmlp_ensemble_free(e);
            return NULL;
        }
    }
    return e;
}

size_t dmlp_ensemble_members(const dmlp_ensemble *e) { return e ? e->n : 0; }
size_t dmlp_ensemble_inputs(const dmlp_ensemble *e) { return e ? dmlp_net_inputs(e->net[0]) : 0; }
size_t dmlp_ensemble_outputs(const dmlp_ensemble *e)
{
    return e ? dmlp_net_outputs(e->net[0]) : 0;
}

int dmlp_ensemble_predict(const dmlp_ensemble *e, size_t n, const float *x, float *mean,
                          float *sd, char *err, size_t errlen)
{
    if (!e || (n && (!x || !mean))) {
        put_error(err, errlen, !e ? "dmlp_ensemble_predict: e is NULL"
                                  : !x ? "dmlp_ensemble_predict: x is NULL"
                                       : "dmlp_ensemble_predict: mean is NULL");
        return DMLP_ERR_INPUT;
    }
    const size_t K = dmlp_net_outputs(e->net[0]);
    size_t bytes;
    if (dmlp_mul_size(&bytes, n, K) || dmlp_mul_size(&bytes, bytes, e->n * sizeof(float))) {
        put_error(err, errlen, "dmlp_ensemble_predict: the rows overflow the address space");
        return DMLP_ERR_INPUT;
    }
    if (n == 0)
        return DMLP_OK;
    float *all = malloc(bytes);
    if (!all) {
        put_error(err, errlen, "dmlp_ensemble_predict: out of memory for the members' outputs");
        return DMLP_ERR_RUNTIME;
    }
    for (size_t i = 0; i < e->n; i++) {
        const int rc = dmlp_net_predict(e->net[i], n, x, all + i * n * K, err, errlen);
        if (rc) {
            free(all);
            return rc;
        }
    }
    ensemble_moments(all, e->n, n * K, n * K, mean, sd); /* dmlp predict's, to the bit */
    free(all);
    return DMLP_OK;
}
