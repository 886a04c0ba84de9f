#!/usr/bin/env bash
# The surrogate example as README shows it, small: scripts/surrogate_data.py writes 8,000
# training rows (with its outliers) and 1,000 clean test rows, `dmlp import csv` turns
# them into HDF5, configs/surrogate.yaml trains for 20 epochs at 2 ranks, and `dmlp eval`
# on the test set must give R² > 0.95 for each of the three outputs in original units
# (a kelvin, a delay in seconds, a mass fraction of ~1e-7), where the same network without
# target scaling learns none of them (R² < 0.5 for the two small outputs).
#
#   tests/interop/test_surrogate.sh DMLP_BINARY
set -euo pipefail
DMLP=${1:?usage: test_surrogate.sh DMLP_BINARY}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/interop/common.sh"
PY=$(find_python json) || { echo "SKIPPED: no python3"; exit 0; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-surrogate.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$WORK"
export OMP_NUM_THREADS=1 # 2 ranks of 1 thread: a step's shared-memory sum never waits on a
                         # rank whose core another thread has
"$PY" "$ROOT/scripts/surrogate_data.py" . --train 8000 --test 1000
for part in train test; do
  "$DMLP" import csv surrogate_$part.csv --target-columns T_ad,tau,Y_NO --output surrogate_$part.h5
done
r2() { # checkpoint -> the three R² values, one line
  "$DMLP" eval --checkpoint "$1" --data surrogate_test.h5 --json |
    "$PY" -c 'import json, sys; print(" ".join("%.6f" % v for v in json.load(sys.stdin)["r2_per_target"]))'
}
common=(--quiet --set data.train=surrogate_train.h5 --set data.test=surrogate_test.h5
        --set training.epochs=20)
mpirun -np 2 --oversubscribe --bind-to none "$DMLP" train "$ROOT/configs/surrogate.yaml" \
  "${common[@]}" --set checkpoint.dir=run > train.log 2>&1 || { cat train.log; fail "train"; }
mpirun -np 2 --oversubscribe --bind-to none "$DMLP" train "$ROOT/configs/surrogate.yaml" \
  "${common[@]}" --set checkpoint.dir=raw --set loss=mse --set data.normalize_targets=false \
  > raw.log 2>&1 || { cat raw.log; fail "train without target scaling"; }
read -r a b c <<< "$(r2 run/latest.h5)"
read -r ra rb rc <<< "$(r2 raw/latest.h5)"
echo "R² with configs/surrogate.yaml: T_ad $a, tau $b, Y_NO $c"
echo "R² with mse on raw targets:     T_ad $ra, tau $rb, Y_NO $rc"
"$PY" -c 'import sys; sys.exit(not all(float(v) > 0.95 for v in sys.argv[1:]))' "$a" "$b" "$c" ||
  fail "the surrogate example does not reach R² 0.95 on every output"
"$PY" -c 'import sys; sys.exit(not all(float(v) < 0.5 for v in sys.argv[1:]))' "$rb" "$rc" ||
  fail "without target scaling the small outputs were learned: the comparison shows nothing"
echo "PASSED"
