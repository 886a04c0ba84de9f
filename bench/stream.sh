#!/usr/bin/env bash
# The streamed placement against the in-memory one, on the demo (Fashion-MNIST, 180 MiB):
# seconds per epoch (the mean of epochs 2 and 3) with the file in the page cache, for
# 1 rank x 1 thread and 2 ranks x 1 thread, streamed within a budget (data.memory_mb 128)
# smaller than the file; then, with the page cache dropped (root only), the opening pass's
# read bandwidth and the first epoch, when every window comes from the disk.
# Usage: bench/stream.sh            (builds build-bench; prints a table and JSON lines)
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
B=$(dmlp_bench_cli)
DATA=$(dmlp_fashion_train "$B/bin/dmlp")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
unset OMP_WAIT_POLICY
STREAM=(--set data.placement=streamed --set data.memory_mb=128 --set data.block_rows=4096
        --set data.shuffle_window=4)

run() { # label ranks epochs extra...
  local label=$1 np=$2 epochs=$3
  shift 3
  OMP_NUM_THREADS=1 mpirun --bind-to none -np "$np" "$B/bin/dmlp" train \
    "$DMLP_ROOT/configs/fashion_mnist.yaml" --set data.train="$DATA" --set data.test= \
    --set training.epochs="$epochs" --set checkpoint.every_epochs=0 \
    --set checkpoint.dir="$OUT/$label" "$@" >"$OUT/$label.log" 2>&1 ||
    { cat "$OUT/$label.log" >&2; exit 1; }
}

# Mean epoch seconds of epochs 2.. of a run's metrics.jsonl.
epoch_s() {
  /usr/bin/python3 - "$OUT/$1/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"epoch_seconds"' in l]
s = [r["epoch_seconds"] for r in rows][1:] or [rows[-1]["epoch_seconds"]]
print(f"{sum(s) / len(s):.3f}")
EOF
}

echo "== streamed vs in memory: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), \
$(nproc) cores; data $(du -m "$DATA" | cut -f1) MiB, streamed within 128 MiB"
cat "$DATA" >/dev/null # in the page cache
printf '%-18s %12s %12s %8s\n' layout "in memory s" "streamed s" ratio
for np in 1 2; do
  run "mem$np" "$np" 3
  run "str$np" "$np" 3 "${STREAM[@]}"
  m=$(epoch_s "mem$np") s=$(epoch_s "str$np")
  r=$(/usr/bin/python3 -c "print(f'{$m / $s:.2f}')")
  printf '%-18s %12s %12s %8s\n' "$np rank(s) x 1" "$m" "$s" "$r"
  echo "JSON {\"bench\":\"stream\",\"ranks\":$np,\"memory_s\":$m,\"streamed_s\":$s,\"ratio\":$r}"
done
grep -h "training data" "$OUT/str1.log"

if { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
  run cold 1 1 "${STREAM[@]}"
  echo "page cache dropped, 1 rank: $(grep -o 'the opening pass read .*' "$OUT/cold.log" |
    tr -d ')'); first epoch $(epoch_s cold) s (its windows then come from the page cache the pass filled)"
else
  echo "(the page cache cannot be dropped here: run as root for the cold-read figure)"
fi
