#!/bin/bash
# bench/surrogate.sh [--no-sklearn] [BUILD_DIR]: what target scaling and a robust loss buy
# on the surrogate example (configs/surrogate.yaml, data from scripts/surrogate_data.py),
# beside scikit-learn's MLPRegressor on the same data. Prints one row per variant: the
# clean test set's R² and MAE per output in original units, and the training time.
# Needs python3-sklearn for the scikit-learn rows (scripts/install-deps.sh --bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sklearn=1
if [ "${1:-}" = --no-sklearn ]; then sklearn=0; shift; fi
case "${1:-}" in -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
build=${1:-$root/build}
dmlp=$build/bin/dmlp
[ -x "$dmlp" ] || { echo "bench/surrogate.sh: no $dmlp; build first (scripts/build.sh)" >&2; exit 2; }
source "$root/tests/interop/common.sh"
py=$(find_python numpy) || { echo "bench/surrogate.sh: needs python3 with numpy" >&2; exit 2; }
work=$(mktemp -d /tmp/dmlp-surrogate.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

"$py" "$root/scripts/surrogate_data.py" "$work"
for part in train test; do
  "$dmlp" import csv "$work/surrogate_$part.csv" --target-columns T_ad,tau,Y_NO \
    --output "$work/surrogate_$part.h5" > /dev/null
done

row() { # name json seconds
  "$py" - "$1" "$2" "$3" <<'PY'
import json, sys
name, j, secs = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
r2, mae = j["r2_per_target"], j["mae_per_target"]
print("| %s | %s | %s | %.1f |" % (name, " | ".join("%.4f" % v if v > -10 else "%.1e" % v
                                                    for v in r2),
      " | ".join("%.3g" % v for v in mae), secs))
PY
}

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), OMP_NUM_THREADS=$OMP_NUM_THREADS"
echo "| variant | R² T_ad | R² tau | R² Y_NO | MAE T_ad (K) | MAE tau (s) | MAE Y_NO | train s |"
echo "|---|---|---|---|---|---|---|---|"
variant() { # name sets...
  local name=$1; shift
  local dir="$work/run-$RANDOM"
  local t0; t0=$(date +%s%N)
  "$dmlp" train "$root/configs/surrogate.yaml" --quiet --set data.train="$work/surrogate_train.h5" \
    --set data.test="$work/surrogate_test.h5" --set checkpoint.dir="$dir" "$@" > "$dir.log" 2>&1 ||
    { cat "$dir.log" >&2; exit 1; }
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  local secs; secs=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  row "$name" "$("$dmlp" eval --checkpoint "$dir/latest.h5" --data "$work/surrogate_test.h5" --json)" "$secs"
}
variant "dmlp, mse, raw targets" --set loss=mse --set data.normalize_targets=false
variant "dmlp, mse, normalize_targets" --set loss=mse
variant "dmlp, huber, normalize_targets" --set loss=huber
variant "dmlp, mae, normalize_targets" --set loss=mae
variant "dmlp, huber, normalize_targets, lbfgs" --set optimizer.name=lbfgs --set optimizer.lr=1 \
  --set optimizer.schedule.name=constant --set training.epochs=25
if [ $sklearn = 1 ]; then
  if "$py" -c 'import sklearn' 2> /dev/null; then
    "$py" "$root/bench/surrogate_sklearn.py" "$work" | while read -r j; do
      row "$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["name"])' "$j")" "$j" \
        "$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$j")"
    done
  else
    echo "(scikit-learn not installed: scripts/install-deps.sh --bench adds python3-sklearn)"
  fi
fi
