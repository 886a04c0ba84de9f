#!/usr/bin/env bash
# dmlp <-> numpy/h5py, end to end:
#   1. a small 3-class dataset (dmlp import csv), trained briefly with normalize: standard;
#      `dmlp predict`, then scripts/checkpoint_to_numpy.py's numpy forward pass must agree
#      (predictions within 1e-4, labels equal) and a tampered prediction must be caught;
#   2. weights built in numpy, written by `checkpoint_to_numpy.py export` (variable- and
#      fixed-length string attributes): `dmlp eval` gives numpy's accuracy, `dmlp predict`
#      numpy's outputs, `dmlp train --init-from` loads them (and refuses another network);
#   3. dump -> export round trip of the trained checkpoint evaluates the same;
#   4. scripts/plot_metrics.py draws the run's metrics.jsonl (a hand-written one if the
#      run wrote none) and refuses a malformed one, naming the line.
#
#   tests/interop/test_interop.sh build/bin/dmlp
#
# Needs python3 with numpy and h5py (and matplotlib for step 4); as root it installs
# python3-numpy python3-h5py python3-matplotlib when they are missing. Prints "SKIPPED: .."
# and exits 0 only when numpy/h5py are missing and cannot be installed. $PYTHON picks the
# interpreter (default: the first of /usr/bin/python3, python3 that has the modules: common.sh).
set -euo pipefail

DMLP=${1:?usage: test_interop.sh DMLP_BINARY}
DMLP=$(cd "$(dirname "$DMLP")" && pwd)/$(basename "$DMLP")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
C2N=$ROOT/scripts/checkpoint_to_numpy.py
PLOT=$ROOT/scripts/plot_metrics.py

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

# ---- python3 with numpy + h5py ---------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY=$(find_python "numpy, h5py, matplotlib" || true)
if [[ -z "$PY" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing python3-numpy python3-h5py python3-matplotlib"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-numpy python3-h5py \
      python3-matplotlib >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-numpy python3-h5py \
          python3-matplotlib >/dev/null 2>&1; } || true
  fi
  PY=$(find_python "numpy, h5py, matplotlib" || true)
fi
HAVE_MPL=1
if [[ -z "$PY" ]]; then
  HAVE_MPL=0
  PY=$(find_python "numpy, h5py" || true)
fi
if [[ -z "$PY" ]]; then
  echo "SKIPPED: no python3 with numpy and h5py (Debian: python3-numpy python3-h5py)"
  exit 0
fi
echo "python: $PY ($("$PY" -c 'import numpy, h5py; print("numpy", numpy.__version__, "h5py", h5py.__version__, "HDF5", h5py.version.hdf5_version)'))"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-interop.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

json_field() { "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

# ---- 1. train, predict, compare with numpy ---------------------------------------------
step "dataset: 3 Gaussian blobs, 4 features on scales 1e-3..1e3 (dmlp import csv)"
awk -v n=600 -v seed=1 -f "$HERE/blobs.awk" > train.csv
awk -v n=300 -v seed=2 -f "$HERE/blobs.awk" > test.csv
"$DMLP" import csv train.csv --label-column cls --output train.h5
"$DMLP" import csv test.csv --label-column cls --output test.h5

cat > blobs.yaml <<'YAML'
model:
  layers:
    - {units: 16, activation: tanh}
    - {units: 8, activation: leaky_relu}
    - {units: 3, activation: softmax}
optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
data: {train: train.h5, test: test.h5, normalize: standard, validation_fraction: 0.2}
training: {epochs: 4, batch_size: 32, seed: 3}
checkpoint: {dir: run, every_epochs: 1, keep_last: 2}
YAML
step "dmlp train (4 epochs, normalize: standard), then resume to 6 epochs"
"$DMLP" train blobs.yaml
"$DMLP" train blobs.yaml --resume auto --set training.epochs=6
CKPT=run/latest.h5
[[ -f $CKPT ]] || fail "no $CKPT"
"$PY" -c 'import h5py,sys; f=h5py.File(sys.argv[1],"r"); assert "normalization" in f, "no /normalization in the checkpoint"' "$CKPT" ||
  fail "the checkpoint has no /normalization"

step "dmlp predict vs numpy"
"$DMLP" predict --checkpoint "$CKPT" --input test.h5 --output pred.h5
"$PY" "$C2N" predict "$CKPT" test.h5 --compare pred.h5 || fail "numpy disagrees with dmlp predict"
NP_CORRECT=$("$PY" "$C2N" predict "$CKPT" test.h5 --json | json_field correct)
EV_CORRECT=$("$DMLP" eval --checkpoint "$CKPT" --data test.h5 --json | json_field correct)
echo "correct on test.h5: numpy $NP_CORRECT, dmlp eval $EV_CORRECT"
[[ "$NP_CORRECT" == "$EV_CORRECT" ]] || fail "numpy counts $NP_CORRECT correct, dmlp eval $EV_CORRECT"

step "a tampered prediction must be caught"
cp pred.h5 pred_bad.h5
"$PY" -c '
import h5py, sys
with h5py.File(sys.argv[1], "r+") as f:
    p = f["predictions"][()]; p[7, 0] += 0.01; f["predictions"][...] = p
' pred_bad.h5
rc=0; "$PY" "$C2N" predict "$CKPT" test.h5 --compare pred_bad.h5 > cmp.txt 2>&1 || rc=$?
cat cmp.txt
[[ $rc -eq 1 ]] || fail "--compare against a tampered file exited $rc, expected 1"
grep -q "row 7" cmp.txt || fail "--compare did not name row 7"

# ---- 2. weights from numpy -------------------------------------------------------------
step "weights built in numpy -> checkpoint_to_numpy.py export -> dmlp eval / predict / train --init-from"
"$PY" - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(12345)
with h5py.File("train.h5", "r") as f:
    x = f["features"][()].astype(np.float64)
mean, std = x.mean(axis=0), x.std(axis=0)
sizes = [4, 16, 8, 3]
arrays = {}
for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    arrays["weight_%d" % i] = rng.normal(0, np.sqrt(2.0 / n_in), (n_out, n_in)).astype(np.float32)
    arrays["bias_%d" % i] = rng.normal(0, 0.1, n_out).astype(np.float32)
arrays["mean"], arrays["std"] = mean.astype(np.float32), std.astype(np.float32)
np.savez("weights.npz", **arrays)
PYEOF
"$PY" "$C2N" export weights.npz init.h5 --activations tanh,leaky_relu,softmax
"$PY" "$C2N" from-numpy weights.npz init_vlen.h5 --activations tanh,leaky_relu,softmax --vlen-strings
"$PY" -c '
import h5py, sys
for path, want_vlen in (("init.h5", False), ("init_vlen.h5", True)):
    with h5py.File(path, "r") as f:
        t = f["layers/0"].attrs.get_id("activation").get_type()
        assert t.is_variable_str() == want_vlen, (path, "variable-length" if want_vlen else "fixed-length")
print("activation attributes: init.h5 fixed-length ASCII, init_vlen.h5 variable-length UTF-8 (h5py default)")
'
"$DMLP" inspect init.h5
# h5py writes a Python str attribute as a variable-length UTF-8 string: dmlp must read it
# (checked first, reported at the end, so that the other checks still run).
VLEN_FAIL=
if ! "$DMLP" inspect init_vlen.h5 > vlen.txt 2>&1; then
  cat vlen.txt
  VLEN_FAIL="dmlp cannot read h5py's variable-length UTF-8 string attributes ($(tail -1 vlen.txt)); fix: in src/data/checkpoint.c attr_read_str, H5Tset_cset(mt, H5Tget_cset(ft)) on the memory type"
  echo "FAIL (reported at the end): $VLEN_FAIL"
  VLEN_FILES=
else
  VLEN_FILES=init_vlen.h5
fi
for f in init.h5 $VLEN_FILES; do
  NP=$("$PY" "$C2N" predict "$f" test.h5 --json)
  EV=$("$DMLP" eval --checkpoint "$f" --data test.h5 --json)
  NP_ACC=$(json_field accuracy <<<"$NP"); NP_C=$(json_field correct <<<"$NP")
  EV_ACC=$(json_field accuracy <<<"$EV"); EV_C=$(json_field correct <<<"$EV")
  echo "$f: numpy accuracy $NP_ACC ($NP_C correct), dmlp eval $EV_ACC ($EV_C correct)"
  [[ "$NP_C" == "$EV_C" ]] || fail "$f: dmlp eval counts $EV_C correct, numpy $NP_C"
  "$PY" -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-6)' "$NP_ACC" "$EV_ACC" ||
    fail "$f: accuracies differ"
  "$DMLP" predict --checkpoint "$f" --input test.h5 --output "pred_$f"
  "$PY" "$C2N" predict "$f" test.h5 --compare "pred_$f" >/dev/null || fail "$f: dmlp predict disagrees with numpy"
done
"$DMLP" train blobs.yaml --init-from init.h5 --set checkpoint.dir=run_init --set training.epochs=1 \
  > init_train.txt 2>&1 || { cat init_train.txt; fail "dmlp train --init-from init.h5 failed"; }
cat init_train.txt
grep -q "initialised /layers from init.h5" init_train.txt || fail "train did not report --init-from"
rc=0; "$DMLP" train blobs.yaml --init-from init.h5 --set 'model.layers[0].units=12' \
  --set checkpoint.dir=run_bad > bad_init.txt 2>&1 || rc=$?
cat bad_init.txt
[[ $rc -eq 2 ]] || fail "--init-from into a different network exited $rc, expected 2"

step "bad .npz inputs are refused clearly"
"$PY" -c 'import numpy as np; np.savez("short.npz", weight_0=np.zeros((3, 4), np.float32), bias_0=np.zeros(2, np.float32))'
rc=0; "$PY" "$C2N" export short.npz x.h5 --activations softmax 2> err.txt || rc=$?
cat err.txt; [[ $rc -eq 2 ]] && grep -q "bias has shape" err.txt || fail "bad bias not refused (rc $rc)"
[[ ! -e x.h5 ]] || fail "a refused export left x.h5 behind"

# ---- 3. dump -> export round trip ------------------------------------------------------
step "dump the trained checkpoint to .npz and export it back: same evaluation"
"$PY" "$C2N" dump "$CKPT" trained.npz
"$PY" "$C2N" export trained.npz roundtrip.h5
A=$("$DMLP" eval --checkpoint "$CKPT" --data test.h5 --json | json_field loss)
B=$("$DMLP" eval --checkpoint roundtrip.h5 --data test.h5 --json | json_field loss)
echo "loss: checkpoint $A, round trip $B"
[[ "$A" == "$B" ]] || fail "the round trip changed the loss ($A vs $B)"

# ---- 4. plot_metrics.py ----------------------------------------------------------------
step "plot_metrics.py"
if [[ $HAVE_MPL -eq 0 ]]; then
  echo "(no matplotlib: plot check skipped; Debian: python3-matplotlib)"
else
  METRICS=run/metrics.jsonl
  if [[ ! -s $METRICS ]]; then
    echo "(the run wrote no metrics.jsonl: plotting a hand-written one)"
    METRICS=hand.jsonl
    {
      echo '{"event": "start", "config": "model:\n  layers:\n  - units: 16\n    activation: tanh\n", "ranks": 1, "threads": 2}'
      for e in 1 2 3 4; do
        echo "{\"event\": \"epoch\", \"epoch\": $e, \"step\": $((e * 15)), \"lr\": 0.1, \"train_loss\": 0.$((9 - e)), \"train_accuracy\": 0.$((60 + 5 * e)), \"val_loss\": null, \"test_accuracy\": 0.$((58 + 5 * e)), \"samples_per_second\": 1e5, \"epoch_seconds\": 0.01}"
      done
      echo '{"event": "start", "ranks": 2, "threads": 1}'
      echo '{"event": "epoch", "epoch": 5, "train_loss": 0.4, "train_accuracy": 0.86}'
    } > "$METRICS"
  else
    [[ $(grep -c '"event": *"start"' "$METRICS") -eq 2 ]] || fail "$METRICS: expected 2 start lines (run + resume)"
    [[ $(grep -c '"event": *"epoch"' "$METRICS") -eq 6 ]] || fail "$METRICS: expected 6 epoch lines"
  fi
  "$PY" "$PLOT" "$METRICS" -o plot.png
  "$PY" -c '
import sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
import struct
w, h = struct.unpack(">II", b[16:24])
assert w >= 800 and h >= 400, "image only %dx%d" % (w, h)
assert len(b) > 20000, "PNG only %d bytes: nothing drawn?" % len(b)
import matplotlib.image as mpimg
img = mpimg.imread(sys.argv[1])
colours = len({tuple(p) for p in img.reshape(-1, img.shape[-1])[::7].round(2).tolist()})
assert colours > 50, "only %d colours: a blank image?" % colours
print("plot.png: %dx%d, %d bytes, %d colours sampled" % (w, h, len(b), colours))
' plot.png || fail "plot.png is not a real plot"
  printf '{"event": "start", "ranks": 1}\n{"event": "epoch", "epoch": 1, "train_loss": 0.5}\n{"event": "epoch", "epoch": 2, "train_lo\n' > broken.jsonl
  rc=0; "$PY" "$PLOT" broken.jsonl -o broken.png 2> err.txt || rc=$?
  cat err.txt
  [[ $rc -eq 2 ]] && grep -q "broken.jsonl:3:" err.txt || fail "a malformed line 3 was not reported (rc $rc)"
  : > empty.jsonl
  rc=0; "$PY" "$PLOT" empty.jsonl 2> err.txt || rc=$?
  cat err.txt; [[ $rc -eq 2 ]] && grep -q "empty" err.txt || fail "an empty file was not reported"
  rc=0; "$PY" "$PLOT" missing.jsonl 2> err.txt || rc=$?
  cat err.txt; [[ $rc -eq 2 ]] && grep -q "no such file" err.txt || fail "a missing file was not reported"
fi

[[ -z "$VLEN_FAIL" ]] || fail "$VLEN_FAIL"
echo
echo "PASSED: numpy and dmlp agree (predict, eval, export, --init-from, round trip); plot OK"
