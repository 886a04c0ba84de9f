#!/usr/bin/env bash
# test_onnx: `dmlp export onnx` against an independent runtime. A Fashion-MNIST classifier
# (standardised inputs; relu, leaky_relu, softmax) and a small regression (tanh, sigmoid,
# linear; standardised targets of scales 1e4 and 1e-3, so the graph ends in Mul and Add
# back to their units; no input standardisation) are trained, predicted and exported by
# the dmlp binary; the ONNX files must pass onnx.checker and, run by OpenCV's dnn module, match `dmlp predict`
# within 1e-5 of each output column's largest value. Bad arguments get a message and exit
# code 2, and leave no file behind.
#   tests/interop/test_onnx.sh DMLP_BINARY
set -euo pipefail
DMLP=$(realpath "${1:?usage: test_onnx.sh DMLP_BINARY}")
FMNIST=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
fail() { echo "FAIL: $*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY=$(find_python "numpy, h5py, onnx, cv2" || true)
[[ -n $PY ]] || { echo "SKIPPED: no python3 with numpy, h5py, onnx and cv2 (Debian: python3-onnx python3-opencv)"; exit 0; }
[[ -f $FMNIST/t10k-images-idx3-ubyte.gz ]] || { echo "SKIPPED: no Fashion-MNIST in $FMNIST (Debian: dataset-fashion-mnist)"; exit 0; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-onnx.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { "$DMLP" "$@" > "$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt"; fail "dmlp $*"; }; }

run import idx --images "$FMNIST/t10k-images-idx3-ubyte.gz" \
  --labels "$FMNIST/t10k-labels-idx1-ubyte.gz" --output fm.h5
cat > fm.yaml <<'Y'
model:
  layers:
    - {units: 64, activation: relu}
    - {units: 32, activation: leaky_relu}
    - {units: 10, activation: softmax}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
data: {train: fm.h5, normalize: standard}
training: {epochs: 1, batch_size: 64, max_steps: 120}
checkpoint: {dir: run-fm, every_epochs: 0}
Y
"$PY" - <<'P'
import numpy as np
rng = np.random.default_rng(3)
x = rng.standard_normal((400, 6))
with open("reg.csv", "w") as f:
    f.write("a,b,c,d,e,f,t0,t1\n")
    for r in x:
        f.write(",".join(f"{v:.6f}" for v in r) +
                f",{1e4 * (np.sin(r[0]) + r[1]) + 5e4:.6f},{1e-3 * r[2] * r[3]:.9f}\n")
P
cat > reg.yaml <<'Y'
model:
  layers:
    - {units: 16, activation: tanh}
    - {units: 8, activation: sigmoid}
    - {units: 2, activation: linear}
loss: mse
optimizer: {name: adam, lr: 0.01}
data: {train: reg.h5, normalize_targets: true}
training: {epochs: 3, batch_size: 32}
checkpoint: {dir: run-reg, every_epochs: 0}
Y
run import csv reg.csv --target-columns t0,t1 --output reg.h5
for n in fm reg; do
  run train $n.yaml --quiet
  run predict --checkpoint run-$n/latest.h5 --input $n.h5 --output $n-pred.h5
  run export onnx --checkpoint run-$n/latest.h5 --output $n.onnx
  grep -q "$n.onnx" out.txt || fail "export onnx did not name its output: $(cat out.txt)"
done

"$PY" - <<'P' || fail "the ONNX models"
import cv2, h5py, numpy as np, onnx
for name, ops in (("fm", ["Sub", "Div", "Gemm", "Relu", "Gemm", "LeakyRelu", "Gemm", "Softmax"]),
                  ("reg", ["Gemm", "Tanh", "Gemm", "Sigmoid", "Gemm", "Mul", "Add"])):
    model = onnx.load(f"{name}.onnx")
    onnx.checker.check_model(model, full_check=True)
    got_ops = [n.op_type for n in model.graph.node]
    assert got_ops == ops, f"{name}: nodes {got_ops}, expected {ops}"
    assert [i.name for i in model.graph.input] == ["x"], model.graph.input
    assert [o.name for o in model.graph.output] == ["y"], model.graph.output
    assert model.opset_import[0].version >= 13
    with h5py.File(f"{name}.h5") as f:
        x = f["/features"][...]
    with h5py.File(f"{name}-pred.h5") as f:
        want = f["/predictions"][...]
    net = cv2.dnn.readNetFromONNX(f"{name}.onnx")
    net.setInput(x.astype(np.float32))
    y = net.forward()
    # Per output column, so a column of scale 1e-3 beside one of 1e4 is checked too.
    rel = float(np.max(np.max(np.abs(y - want), axis=0) / np.max(np.abs(want), axis=0)))
    print(f"{name}: {x.shape[0]} rows, OpenCV vs dmlp predict: max over columns of "
          f"max |diff| / max |y| = {rel:.2e}")
    assert y.shape == want.shape and rel <= 1e-5, f"{name}: {rel}"
P

# Bad arguments: exit 2, a message naming the culprit, nothing written.
expect_refused() { # what, then the arguments of dmlp export
  local what=$1; shift
  if "$DMLP" export "$@" > out.txt 2>&1; then fail "accepted: dmlp export $*"; fi
  grep -q -- "$what" out.txt || fail "dmlp export $*: no '$what' in: $(cat out.txt)"
}
expect_refused "nothere.h5" onnx --checkpoint nothere.h5 --output x.onnx
expect_refused "fm.h5" onnx --checkpoint fm.h5 --output x.onnx
expect_refused "--output" onnx --checkpoint run-fm/latest.h5
expect_refused "destroy the input" onnx --checkpoint run-fm/latest.h5 --output run-fm/latest.h5
expect_refused "tflite" tflite --checkpoint run-fm/latest.h5 --output x.onnx
expect_refused "no-such-dir" onnx --checkpoint run-fm/latest.h5 --output no-such-dir/x.onnx
[[ ! -e x.onnx ]] || fail "a refused export left x.onnx"
echo "PASSED: ONNX export checked by onnx.checker and matched by OpenCV"
