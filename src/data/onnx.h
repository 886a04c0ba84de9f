/* onnx: a trained network as an ONNX model (opset 13), for runtimes outside dmlp (ONNX
 * Runtime, OpenCV's dnn, TensorRT, ...). Input "x" [N, inputs] float32, output "y"
 * [N, outputs]: the checkpoint's input standardisation as Sub and Div nodes, each layer a
 * Gemm (W [out × in] with transB = 1, as nn.Linear) and its activation node (Relu,
 * LeakyRelu alpha 0.01, Sigmoid, Tanh, Softmax over axis 1; none for linear), so a
 * classifier gives probabilities. The protobuf encoding is written here (varints and
 * length-delimited fields of onnx.proto's messages; docs/architecture.md, "Formats"):
 * about a hundred lines instead of a generated-code dependency. Never touches MPI. */
#ifndef DMLP_ONNX_H
#define DMLP_ONNX_H

#include "core/util.h"
#include "nn/model.h"

/* Writes m as an ONNX model to path (atomically, core/publish). source names where the
 * network came from (the checkpoint), stored as the graph's doc string; may be NULL. */
int onnx_export(const struct model *m, const char *path, const char *source,
                struct dmlp_error *err);

#endif
