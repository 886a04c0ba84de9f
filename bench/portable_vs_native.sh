#!/usr/bin/env bash
# The default (portable) build against a -DDMLP_NATIVE=ON build on the demo: the
# Fashion-MNIST network of configs/fashion_mnist.yaml, 2 ranks x 1 thread as scripts/demo.sh
# runs it here, seconds per epoch from metrics.jsonl (the first epoch, with its start-up,
# left out). The two binaries run alternately, ROUNDS times each, so a change in the
# machine's speed hits both alike; prints each run, the medians and their ratio, and the
# final test accuracy of each (the same kernels run, so they should agree to the last digit).
#   bench/portable_vs_native.sh [ROUNDS] [EPOCHS]     (defaults 3 and 4)
# Builds build-bench-portable/ and build-bench-native/; installs the dataset if missing.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
ROUNDS=${1:-3} EPOCHS=${2:-4}
"$DMLP_ROOT/scripts/install-deps.sh" --demo
unset OMP_WAIT_POLICY OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
cores=$(nproc)
export OMP_NUM_THREADS=1
declare -A bin
for kind in portable native; do
  b=$DMLP_ROOT/build-bench-$kind
  native=OFF; [[ $kind = native ]] && native=ON
  cmake -S "$DMLP_ROOT" -B "$b" -DCMAKE_BUILD_TYPE=Release -DDMLP_NATIVE=$native >/dev/null
  cmake --build "$b" -j"$(nproc)" --target dmlp_cli >/dev/null
  bin[$kind]=$b/bin/dmlp
done
data=$DMLP_ROOT/data
mkdir -p "$data"
src=/usr/share/datasets/fashion-mnist
for split in train:train test:t10k; do
  out=$data/fashion_mnist_${split%%:*}.h5
  [[ -s $out ]] || "${bin[portable]}" import idx --images "$src/${split##*:}-images-idx3-ubyte.gz" \
                     --labels "$src/${split##*:}-labels-idx1-ubyte.gz" --output "$out" >/dev/null
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== portable vs native: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$cores cores; demo network, 2 ranks x 1 thread, $EPOCHS epochs, $ROUNDS rounds"
"${bin[portable]}" --version | grep kernels
run() { # kind round -> prints mean s/epoch over epochs 2.. and the test accuracy
  local dir=$work/$1-$2
  (cd "$DMLP_ROOT" && mpirun -np 2 --bind-to none "${bin[$1]}" train configs/fashion_mnist.yaml \
     --quiet --set training.epochs="$EPOCHS" --set checkpoint.every_epochs=0 \
     --set checkpoint.dir="$dir") >"$dir.log" 2>&1 || { cat "$dir.log" >&2; exit 1; }
  /usr/bin/python3 - "$dir/metrics.jsonl" <<'EOF'
import json, sys
ep = [json.loads(l) for l in open(sys.argv[1])]
ep = [e for e in ep if e.get("event") == "epoch"]
secs = [e["epoch_seconds"] for e in ep[1:]] or [ep[0]["epoch_seconds"]]
print(f"{sum(secs) / len(secs):.4f} {ep[-1]['test_accuracy']}")
EOF
}
declare -A times acc
for r in $(seq "$ROUNDS"); do
  for kind in portable native; do
    read -r s a < <(run "$kind" "$r")
    times[$kind]+="$s "
    acc[$kind]=$a
    printf "  round %d %-8s %.4f s/epoch  test accuracy %s\n" "$r" "$kind" "$s" "$a"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
p=$(median "${times[portable]}") n=$(median "${times[native]}")
printf "median: portable %.4f s/epoch, native %.4f s/epoch, portable/native %.3f\n" "$p" "$n" \
       "$(awk -v p="$p" -v n="$n" 'BEGIN {print p / n}')"
printf 'JSON {"bench": "portable_vs_native", "portable_s_per_epoch": %s, "native_s_per_epoch": %s, "portable_accuracy": %s, "native_accuracy": %s}\n' \
       "$p" "$n" "${acc[portable]}" "${acc[native]}"
