/* onnx: the ONNX writer of onnx.h. A protobuf message is a sequence of fields, each a key
 * (field number << 3 | wire type) and a value: a varint (type 0), 4 bytes (type 5) or a
 * length-delimited run of bytes (type 2: strings, bytes, nested messages). Nested messages
 * are built inside out, each in its own buffer, then appended with their length. The
 * field numbers are onnx.proto's (ModelProto, GraphProto, NodeProto, TensorProto, ...). */
#define _POSIX_C_SOURCE 200809L
#include "data/onnx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/publish.h"
#include "nn/activation.h"

/* Floats go into raw_data and attributes as their bytes: ONNX stores them little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the ONNX writer copies float bytes");

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_FIXED32 = 5 };
enum { ONNX_IR_VERSION = 7, ONNX_OPSET = 13, ONNX_FLOAT = 1 };
enum { ATTR_FLOAT = 1, ATTR_INT = 2 };

/* A growing byte buffer; failed is set (and sticks) when memory runs out. */
struct pb {
    uint8_t *p;
    size_t n, cap;
    int failed;
};

static void put(struct pb *b, const void *data, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void varint(struct pb *b, uint64_t v)
{
    uint8_t out[10];
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, out, n);
}

static void key(struct pb *b, unsigned field, unsigned wire) { varint(b, field << 3 | wire); }

static void field_int(struct pb *b, unsigned field, int64_t v)
{
    key(b, field, WIRE_VARINT);
    varint(b, (uint64_t)v);
}

static void field_bytes(struct pb *b, unsigned field, const void *data, size_t n)
{
    key(b, field, WIRE_LEN);
    varint(b, n);
    put(b, data, n);
}

static void field_str(struct pb *b, unsigned field, const char *s)
{
    field_bytes(b, field, s, strlen(s));
}

/* Appends a finished submessage as field `field`, and frees it. */
static void field_msg(struct pb *b, unsigned field, struct pb *sub)
{
    b->failed |= sub->failed;
    field_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    *sub = (struct pb){0};
}

/* TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian floats). */
static void initializer(struct pb *graph, const char *name, const float *v, size_t rows,
                        size_t cols)
{
    struct pb t = {0};
    field_int(&t, 1, (int64_t)rows);
    if (cols)
        field_int(&t, 1, (int64_t)cols);
    field_int(&t, 2, ONNX_FLOAT);
    field_str(&t, 8, name);
    field_bytes(&t, 9, v, rows * (cols ? cols : 1) * sizeof(float));
    field_msg(graph, 5, &t);
}

/* An attribute of a node (AttributeProto: name 1, f 2, i 3, type 20). */
static void attr_int(struct pb *node, const char *name, int64_t v)
{
    struct pb a = {0};
    field_str(&a, 1, name);
    field_int(&a, 3, v);
    field_int(&a, 20, ATTR_INT);
    field_msg(node, 5, &a);
}

static void attr_float(struct pb *node, const char *name, float v)
{
    struct pb a = {0};
    field_str(&a, 1, name);
    key(&a, 2, WIRE_FIXED32);
    put(&a, &v, sizeof v); /* little-endian, as asserted above */
    field_int(&a, 20, ATTR_FLOAT);
    field_msg(node, 5, &a);
}

/* NodeProto: input (1), output (2), name (3), op_type (4), attribute (5). */
static struct pb node(const char *op, const char *name, const char *const *in, size_t n_in,
                      const char *out)
{
    struct pb n = {0};
    for (size_t i = 0; i < n_in; i++)
        field_str(&n, 1, in[i]);
    field_str(&n, 2, out);
    field_str(&n, 3, name);
    field_str(&n, 4, op);
    return n;
}

/* ValueInfoProto of a float tensor [N, width]: name (1), type (2) → tensor_type (1) →
 * elem_type (1), shape (2) → dim (1) → dim_param (2) "N" | dim_value (1). */
static void value_info(struct pb *graph, unsigned field, const char *name, size_t width)
{
    struct pb batch = {0}, cols = {0}, shape = {0}, tensor = {0}, type = {0}, vi = {0};
    field_str(&batch, 2, "N");
    field_int(&cols, 1, (int64_t)width);
    field_msg(&shape, 1, &batch);
    field_msg(&shape, 1, &cols);
    field_int(&tensor, 1, ONNX_FLOAT);
    field_msg(&tensor, 2, &shape);
    field_msg(&type, 1, &tensor);
    field_str(&vi, 1, name);
    field_msg(&vi, 2, &type);
    field_msg(graph, field, &vi);
}

/* The ONNX operator of an activation; NULL for linear (no node). A switch without a
 * default, so that a new activation is a compile error (-Wswitch) until it is mapped. */
static const char *op_of(enum dmlp_activation act)
{
    switch (act) {
    case DMLP_ACT_SIGMOID: return "Sigmoid";
    case DMLP_ACT_TANH: return "Tanh";
    case DMLP_ACT_RELU: return "Relu";
    case DMLP_ACT_LEAKY_RELU: return "LeakyRelu";
    case DMLP_ACT_SOFTMAX: return "Softmax";
    case DMLP_ACT_LINEAR: return NULL;
    }
    return NULL;
}

/* The activation node after layer l's Gemm, from `in` to `out`; 0 when there is none. */
static int activation(struct pb *graph, enum dmlp_activation act, size_t l, const char *in,
                      const char *out)
{
    const char *op = op_of(act);
    if (!op)
        return 0;
    char name[64];
    snprintf(name, sizeof name, "act%zu", l);
    struct pb n = node(op, name, &in, 1, out);
    if (act == DMLP_ACT_LEAKY_RELU)
        attr_float(&n, "alpha", DMLP_LEAKY_SLOPE);
    if (act == DMLP_ACT_SOFTMAX)
        attr_int(&n, "axis", 1);
    field_msg(graph, 1, &n);
    return 1;
}

/* (x − mean) / std, as dmlp applies it: two nodes on two initializers. Returns the name
 * of the standardised tensor. */
static const char *standardisation(struct pb *graph, const struct model *m)
{
    const size_t D = model_input_dim(m);
    initializer(graph, "norm_mean", m->norm_mean, D, 0);
    initializer(graph, "norm_std", m->norm_std, D, 0);
    const char *sub_in[] = {"x", "norm_mean"}, *div_in[] = {"x_centred", "norm_std"};
    struct pb sub = node("Sub", "centre", sub_in, 2, "x_centred");
    struct pb div = node("Div", "scale", div_in, 2, "x_standardised");
    field_msg(graph, 1, &sub);
    field_msg(graph, 1, &div);
    return "x_standardised";
}

/* y = y_scaled · target_std + target_mean, as dmlp maps the outputs of a network trained
 * on standardised targets back to their units: two nodes on two initializers. */
static void target_scaling(struct pb *graph, const struct model *m, const char *in)
{
    const size_t K = model_output_dim(m);
    initializer(graph, "target_std", m->target_std, K, 0);
    initializer(graph, "target_mean", m->target_mean, K, 0);
    const char *mul_in[] = {in, "target_std"}, *add_in[] = {"y_spread", "target_mean"};
    struct pb mul = node("Mul", "unscale", mul_in, 2, "y_spread");
    struct pb add = node("Add", "uncentre", add_in, 2, "y");
    field_msg(graph, 1, &mul);
    field_msg(graph, 1, &add);
}

/* Layer l: its weights, its Gemm (into z<l>, or y for a linear last layer) and its
 * activation (into h<l>, or y for the last layer; y_scaled instead of y with target
 * scaling). Returns the layer's output name, kept in names (two layers' worth, so the
 * input of this one stays valid). */
static const char *layer(struct pb *g, const struct model *m, size_t l, const char *in,
                         char names[2][2][32])
{
    const struct model_layer *L = &m->layers[l];
    const int last = l + 1 == m->n_layers;
    char w[32], b[32], gemm[32], *z = names[l % 2][0], *h = names[l % 2][1];
    snprintf(w, sizeof w, "W%zu", l);
    snprintf(b, sizeof b, "b%zu", l);
    snprintf(gemm, sizeof gemm, "gemm%zu", l);
    /* The network's output is y, or y_scaled when target scaling maps it to y after. */
    const char *out = m->target_mean ? "y_scaled" : "y";
    if (last && L->act == DMLP_ACT_LINEAR)
        snprintf(z, 32, "%s", out);
    else
        snprintf(z, 32, "z%zu", l);
    if (last)
        snprintf(h, 32, "%s", out);
    else
        snprintf(h, 32, "h%zu", l);
    initializer(g, w, L->W, L->out, L->in);
    initializer(g, b, L->b, L->out, 0);
    const char *gin[] = {in, w, b};
    struct pb n = node("Gemm", gemm, gin, 3, z);
    attr_int(&n, "transB", 1);
    field_msg(g, 1, &n);
    return activation(g, L->act, l, z, h) ? h : z;
}

/* GraphProto: the nodes (1), name (2), initializers (5), doc_string (10), input (11),
 * output (12). */
static void graph(struct pb *g, const struct model *m, const char *source)
{
    char names[2][2][32];
    const char *in = m->norm_mean ? standardisation(g, m) : "x";
    for (size_t l = 0; l < m->n_layers; l++)
        in = layer(g, m, l, in, names);
    if (m->target_mean)
        target_scaling(g, m, in);
    field_str(g, 2, "dmlp");
    if (source)
        field_str(g, 10, source);
    value_info(g, 11, "x", model_input_dim(m));
    value_info(g, 12, "y", model_output_dim(m));
}

int onnx_export(const struct model *m, const char *path, const char *source,
                struct dmlp_error *err)
{
    struct pb model = {0}, g = {0}, opset = {0};
    field_int(&model, 1, ONNX_IR_VERSION);
    field_str(&model, 2, "dmlp");
    field_str(&model, 3, DMLP_VERSION);
    graph(&g, m, source);
    field_msg(&model, 7, &g);
    field_str(&opset, 1, "");
    field_int(&opset, 2, ONNX_OPSET);
    field_msg(&model, 8, &opset);
    int rc;
    struct publish p;
    if (model.failed) {
        rc = dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory for the ONNX model", path);
    } else if ((rc = publish_begin(&p, path, err)) == DMLP_OK) {
        if ((rc = publish_write(&p, model.p, model.n, "ONNX model", err)) == DMLP_OK)
            rc = publish_commit(&p, err);
        else
            publish_abort(&p);
    }
    free(model.p);
    return rc;
}
