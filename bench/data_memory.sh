#!/usr/bin/env bash
# The node's memory for the replicated placement: the sum of the PSS (proportional set
# size, from /proc/PID/smaps_rollup: a page shared by k processes counts 1/k in each) of
# every dmlp rank on this host, sampled every 0.1 s while the demo trains, at its peak.
# For 1, 2 and 4 ranks, with one copy per node (data.share_node: true, the default) and
# with a copy per rank (false). One copy per node should stay at one copy plus a constant
# per rank; a copy per rank grows by one data set (180 MiB for Fashion-MNIST) per rank.
# Usage: bench/data_memory.sh [RANKS...]        (default 1 2 4; builds build-bench)
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
RANKS=("$@")
[ ${#RANKS[@]} -gt 0 ] || RANKS=(1 2 4)
B=$(dmlp_bench_cli)
DATA=$(dmlp_fashion_train "$B/bin/dmlp")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# The sum of the PSS of this host's dmlp processes, in KiB.
node_pss() {
  local total=0 pid kb
  for pid in $(pgrep -x dmlp || true); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

peak() { # ranks share
  local np=$1 share=$2 max=0 now
  OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np "$np" "$B/bin/dmlp" train \
    "$DMLP_ROOT/configs/fashion_mnist.yaml" --quiet --set data.train="$DATA" \
    --set data.test= --set training.epochs=1 --set training.max_steps=300 \
    --set checkpoint.every_epochs=0 --set checkpoint.dir="$OUT/run-$np-$share" \
    --set data.share_node="$share" >"$OUT/log" 2>&1 &
  local job=$!
  while kill -0 "$job" 2>/dev/null; do
    now=$(node_pss)
    [ "$now" -gt "$max" ] && max=$now
    sleep 0.1
  done
  wait "$job" || { cat "$OUT/log" >&2; exit 1; }
  echo "$max"
}

echo "== node memory, replicated placement: $(grep -m1 'model name' /proc/cpuinfo |
  cut -d: -f2 | xargs), $(nproc) cores; data $(du -m "$DATA" | cut -f1) MiB on disk"
printf '%6s  %22s  %22s\n' ranks "one copy per node MiB" "a copy per rank MiB"
for np in "${RANKS[@]}"; do
  shared=$(peak "$np" true)
  private=$(peak "$np" false)
  printf '%6s  %22.0f  %22.0f\n' "$np" "$((shared / 1024))" "$((private / 1024))"
  echo "JSON {\"bench\":\"data_memory\",\"ranks\":$np,\"shared_mib\":$((shared / 1024)),\"private_mib\":$((private / 1024))}"
done
