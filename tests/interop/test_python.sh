#!/usr/bin/env bash
# test_python: the Python package python/dmlp (ctypes over libdmlp's inference interface).
# A classifier with standardised inputs is trained and predicted by the dmlp binary; then
# dmlp.Net must give the bits of `dmlp predict` from float32 and float64 input, in one
# call, row by row, and from 4 Python threads sharing the net; bad paths, shapes and dtypes
# raise with a message; and `pip install ./python` gives an importable package.
#   tests/interop/test_python.sh DMLP_BINARY LIBDMLP_SO
set -euo pipefail
DMLP=$(realpath "${1:?usage: test_python.sh DMLP_BINARY LIBDMLP_SO}")
LIB=$(realpath "${2:?usage: test_python.sh DMLP_BINARY LIBDMLP_SO}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY=$(find_python "numpy, h5py" || true)
[[ -n $PY ]] || { echo "SKIPPED: no python3 with numpy and h5py (Debian: python3-numpy python3-h5py)"; exit 0; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-python.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

"$PY" - <<'P'
import numpy as np
rng = np.random.default_rng(7)
x = 20.0 + 5.0 * rng.standard_normal((257, 5))
y = (np.abs(x @ np.array([1.0, -0.5, 0.25, 0.0, 2.0])) * 1.7).astype(int) % 4
with open("cls.csv", "w") as f:
    f.write("a,b,c,d,e,y\n")
    for row, label in zip(x, y):
        f.write(",".join(f"{v:.6f}" for v in row) + f",{label}\n")
P
cat > cls.yaml <<'Y'
model:
  layers:
    - {units: 20, activation: leaky_relu}
    - {units: 4, activation: softmax}
optimizer: {name: adam, lr: 0.01}
data: {train: cls.h5, normalize: standard}
training: {epochs: 2, batch_size: 32}
checkpoint: {dir: run, every_epochs: 0}
Y
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { "$DMLP" "$@" > "$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt"; fail "dmlp $*"; }; }
run import csv cls.csv --label-column y --output cls.h5
run train cls.yaml --quiet
run predict --checkpoint run/latest.h5 --input cls.h5 --output pred.h5
# an ensemble: the same network from two more seeds, with the first
run train cls.yaml --quiet --set training.seed=5 --set checkpoint.dir=run5
run train cls.yaml --quiet --set training.seed=6 --set checkpoint.dir=run6
run predict --checkpoint run/latest.h5 --checkpoint run5/latest.h5 \
  --checkpoint run6/latest.h5 --input cls.h5 --output ens.h5

DMLP_LIBRARY=$LIB PYTHONPATH=$ROOT/python "$PY" - <<'P' || fail "the package from the source tree"
import threading
import h5py, numpy as np
import dmlp

with h5py.File("cls.h5") as f:
    x = f["/features"][...]
with h5py.File("pred.h5") as f:
    want = f["/predictions"][...]
net = dmlp.Net("run/latest.h5")
assert (net.inputs, net.outputs) == (5, 4), repr(net)
assert np.array_equal(net.predict(x), want), "one call"
assert np.array_equal(net.predict(x.astype(np.float64)), want), "float64 input"
assert np.array_equal(np.stack([net.predict(r) for r in x]), want), "row by row"
got = np.zeros_like(want)
def work(k):
    for i in range(k, len(x), 4):
        got[i] = net.predict(x[i:i + 1])[0]
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert np.array_equal(got, want), "4 threads sharing the net"
assert abs(float(net.predict(x[0]).sum()) - 1.0) < 1e-5, "probabilities"

def raises(kind, text, f):
    try:
        f()
    except kind as e:
        assert text in str(e), f"{text!r} not in {e}"
        return
    raise AssertionError(f"no {kind.__name__} ({text})")
# dmlp.Ensemble: the bits of dmlp predict's /predictions and /std
ens = dmlp.Ensemble(["run/latest.h5", "run5/latest.h5", "run6/latest.h5"])
assert (ens.members, ens.inputs, ens.outputs) == (3, 5, 4), repr(ens)
mean, std = ens.predict(x)
with h5py.File("ens.h5") as f:
    assert np.array_equal(mean, f["/predictions"][...]), "ensemble mean"
    assert np.array_equal(std, f["/std"][...]), "ensemble std"
singles = np.stack([dmlp.Net(p).predict(x) for p in
                    ("run/latest.h5", "run5/latest.h5", "run6/latest.h5")]).astype(np.float64)
assert np.abs(mean - singles.mean(0)).max() < 1e-6 and np.abs(std - singles.std(0)).max() < 1e-6
m1, s1 = ens.predict(x[0])
assert m1.shape == (4,) and np.array_equal(m1, mean[0]) and np.array_equal(s1, std[0])
raises(dmlp.Error, "nothere.h5", lambda: dmlp.Net("nothere.h5"))
raises(dmlp.Error, "nothere.h5", lambda: dmlp.Ensemble(["run/latest.h5", "nothere.h5"]))
raises(dmlp.Error, "cls.h5", lambda: dmlp.Net("cls.h5"))     # a dataset, not a checkpoint
raises(ValueError, "(n, 5)", lambda: net.predict(np.zeros((3, 4), np.float32)))
raises(TypeError, "int64", lambda: net.predict(np.zeros((3, 5), np.int64)))
net.close()
raises(dmlp.Error, "closed", lambda: net.predict(x))
with dmlp.Net("run/latest.h5") as n2:
    assert n2.predict(x[:3]).shape == (3, 4)
print("python: dmlp.Net gives the bits of dmlp predict (1 call, rows, float64, 4 threads)")
P

# From a copy, so pip's build files never land in the checkout; offline, as CI is.
cp -r "$ROOT/python" "$WORK/pysrc"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --no-build-isolation --no-deps --no-index \
  --quiet --target "$WORK/site" "$WORK/pysrc" > pip.log 2>&1 || { cat pip.log; fail "pip install ./python"; }
(cd / && DMLP_LIBRARY=$LIB PYTHONPATH=$WORK/site "$PY" -c '
import dmlp, sys, numpy as np
assert dmlp.__file__.startswith(sys.argv[1]), dmlp.__file__
net = dmlp.Net(sys.argv[2])
print("installed package:", net, net.predict(np.zeros(5, np.float32)))' "$WORK/site" "$WORK/run/latest.h5") ||
  fail "the pip-installed package"
echo "PASSED: the Python package, from the tree and pip-installed"
