#!/usr/bin/env bash
# Two hosts on one machine: runs `dmlp train` with 2 + 2 ranks on two "hosts" (two network
# namespaces joined by a veth pair, each with its own host name), then with 4 ranks on one
# host, and checks that both runs end with the same weights (float tolerance).
#
#   tests/twohosts/test_two_hosts.sh [path/to/dmlp]        (or DMLP_BIN=...)
#
# DMLP_2H_KEEP=1 keeps the temporary folder (logs, checkpoints); DMLP_2H_TIMEOUT=S bounds
# each mpirun (default 120 s).
# Exit 0: pass; non-zero: fail. Prints "SKIPPED: <reason>" and exits 0 only where network
# namespaces cannot be created (not root, no CAP_NET_ADMIN, `ip netns add` fails).
#
# How the two hosts are made (see the shared NOTES.md, "Two hosts on one machine"):
#   - namespaces dmlp2hA_<pid> and dmlp2hB_<pid>, a veth pair between them, addresses
#     10.231.77.1/24 and 10.231.77.2/24 on it, lo up in each. No other interface and no
#     route: nothing can leave the pair.
#   - mpirun runs inside namespace A under `unshare --uts` with host name hostA; the
#     hostfile names hostA and hostB (slots=2 each); Open MPI starts the daemon on hostB
#     through a plm_rsh_agent script that runs
#         ip netns exec dmlp2hB_<pid> unshare --uts sh -c 'hostname hostB; <orted command>'
#     The host names must differ, as real nodes' do (NOTES.md: with the same name, 2+2
#     ranks fail to connect; in this container they connected anyway), so a first `mpirun ... sh`
#     checks that ranks 0, 1 see hostA and A's veth and ranks 2, 3 hostB and B's.
#   - btl tcp,self and btl/oob_tcp_if_include 10.231.77.0/24, so every message between ranks
#     goes over the veth pair (or the namespace's own address).
#   - then: rank 0's start-up line names 4 ranks, the gradient sum is shared memory per host
#     plus MPI across hosts (one host: shared memory only), 3 epochs ran, and every /layers/<i>/weight
#     and bias (h5dump, 9 digits) matches the 4-ranks-on-one-host run within 1e-5 x the
#     largest |weight|.
# Everything is removed on exit (namespaces, veth, temporary files), also on failure or
# SIGINT/SIGTERM; namespaces left by a run that was SIGKILLed are removed by the next run.
# Needs iproute2 (ip), util-linux (unshare), coreutils (timeout), hdf5-tools (h5dump).
set -uo pipefail

DMLP=${1:-${DMLP_BIN:-}}
if [[ -z "$DMLP" ]]; then
  echo "usage: $0 path/to/dmlp   (or DMLP_BIN=path/to/dmlp $0)" >&2
  exit 2
fi
DMLP=$(readlink -f "$DMLP")
[[ -x "$DMLP" ]] || { echo "FAIL: $DMLP is not an executable" >&2; exit 2; }

MPIRUN=${MPIEXEC:-$(command -v mpirun || true)}
[[ -n "$MPIRUN" ]] || { echo "FAIL: mpirun not found" >&2; exit 2; }
MPIRUN=$(readlink -f "$MPIRUN")
TIMEOUT_S=${DMLP_2H_TIMEOUT:-120}

skip() { echo "SKIPPED: $*"; exit 0; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- can we make network namespaces? ---------------------------------------------------
[[ $(id -u) -eq 0 ]] || skip "not root: network namespaces need CAP_NET_ADMIN"
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
command -v unshare >/dev/null || skip "no 'unshare' command (util-linux)"

NS_A=dmlp2hA_$$
NS_B=dmlp2hB_$$
VETH_A=d2ha$$          # interface names have at most 15 characters
VETH_B=d2hb$$
SUBNET=10.231.77.0/24
IP_A=10.231.77.1
IP_B=10.231.77.2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-2h.XXXXXX")

CHILD=
cleanup() {
  local rc=$? ns pid
  trap - EXIT INT TERM
  # A time-boxed mpirun still running (interrupted): timeout passes the signal on.
  [[ -n "$CHILD" ]] && { kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; }
  for ns in "$NS_A" "$NS_B"; do
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
      # Only processes this script started live in these namespaces (mpirun, orted, dmlp).
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null     # deleting a namespace also deletes its veth end
    fi
  done
  ip link del "$VETH_A" 2>/dev/null      # if setup stopped before the move into the namespace
  if [[ -n "${DMLP_2H_KEEP:-}" ]]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Namespaces left by an earlier run of this script that was killed (SIGKILL, e.g. a test
# timeout) before its clean-up: their names carry the pid of a process that is gone.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^dmlp2h[AB]_[0-9]+$'); do
  pid=${ns#*_}
  if ! kill -0 "$pid" 2>/dev/null; then
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  fi
done

if ! ip netns add "$NS_A" 2>"$WORK/netns.err"; then
  skip "cannot create a network namespace: $(head -c 200 "$WORK/netns.err")"
fi
ip netns exec "$NS_A" true 2>/dev/null || skip "cannot enter a network namespace"
ip netns add "$NS_B" || fail "ip netns add $NS_B"
unshare --uts true 2>/dev/null || skip "unshare --uts is not permitted (host names)"
if ! ip link add "$VETH_A" type veth peer name "$VETH_B" 2>"$WORK/veth.err"; then
  skip "cannot create a veth pair (CAP_NET_ADMIN?): $(head -c 200 "$WORK/veth.err")"
fi
ip link set "$VETH_A" netns "$NS_A" || fail "ip link set $VETH_A netns"
ip link set "$VETH_B" netns "$NS_B" || fail "ip link set $VETH_B netns"
ip -n "$NS_A" addr add "$IP_A/24" dev "$VETH_A" || fail "address on $VETH_A"
ip -n "$NS_B" addr add "$IP_B/24" dev "$VETH_B" || fail "address on $VETH_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up || fail "lo up in $ns"; done
ip -n "$NS_A" link set "$VETH_A" up || fail "$VETH_A up"
ip -n "$NS_B" link set "$VETH_B" up || fail "$VETH_B up"

# ---- the launch agent, the hostfile ---------------------------------------------------
# Open MPI calls the agent like ssh: AGENT [options] HOST COMMAND WORDS...
cat >"$WORK/agent.sh" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host=\$1; shift
case "\$host" in
  hostA) ns=$NS_A ;;
  hostB) ns=$NS_B ;;
  *) echo "agent: unknown host \$host" >&2; exit 255 ;;
esac
echo "agent: \$host -> \$ns" >>"$WORK/agent.log"
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$host; \$*"
EOF
chmod +x "$WORK/agent.sh"
printf 'hostA slots=2\nhostB slots=2\n' >"$WORK/hosts"

# ---- a small dataset and config -------------------------------------------------------
# 600 rows x 8 features, 3 classes (deterministic, awk only).
awk 'BEGIN {
  srand(12345);
  printf "f0,f1,f2,f3,f4,f5,f6,f7,label\n";
  for (n = 0; n < 600; n++) {
    c = n % 3; line = "";
    for (i = 0; i < 8; i++) {
      x = (rand() + rand() + rand() - 1.5) * 1.2 + 0.8 * c * ((i % 3) - 1);
      line = line sprintf("%.5f,", x);
    }
    print line c;
  }
}' >"$WORK/data.csv"
"$DMLP" import csv "$WORK/data.csv" --label-column label --output "$WORK/data.h5" \
  >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log" >&2; fail "dmlp import csv"; }

cat >"$WORK/config.yaml" <<EOF
model:
  layers:
    - {units: 16, activation: relu}
    - {units: 3, activation: softmax}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
data: {train: $WORK/data.h5}
training: {epochs: 3, batch_size: 32, seed: 7}
checkpoint: {dir: $WORK/ck-one, every_epochs: 0, keep_last: 1}
EOF

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

# ---- 2 + 2 ranks on hostA and hostB ---------------------------------------------------
mpi_args=(-np 4 --hostfile "$WORK/hosts" --map-by ppr:2:node --bind-to none --display-map
          --mca plm_rsh_agent "$WORK/agent.sh"
          --mca btl tcp,self
          --mca btl_tcp_if_include "$SUBNET" --mca oob_tcp_if_include "$SUBNET"
          -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
          -x OMP_NUM_THREADS -x OMP_WAIT_POLICY)
bounded() { # bounded LOG COMMAND...: at most TIMEOUT_S seconds, output to LOG; interruptible
  local log=$1 rc; shift
  timeout -k 5 "$TIMEOUT_S" "$@" >"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD"; rc=$?
  CHILD=
  return "$rc"
}
in_ns_a() { # in_ns_a LOG COMMAND...: bounded, on hostA (namespace A, host name hostA)
  local log=$1; shift
  bounded "$log" ip netns exec "$NS_A" unshare --uts sh -c 'hostname hostA; exec "$@"' sh "$@"
}
# Where the ranks run: each prints its host name and the veth its namespace holds.
in_ns_a "$WORK/where.log" "$MPIRUN" "${mpi_args[@]}" sh -c \
  'echo "rank $OMPI_COMM_WORLD_RANK on $(hostname) with $(ip -o link show | grep -o "d2h[ab][0-9]*" | head -1)"' \
  || { cat "$WORK/where.log" >&2; fail "2+2 ranks: mpirun of a shell command failed"; }
for r in 0 1; do
  grep -qx "rank $r on hostA with $VETH_A" "$WORK/where.log" || { cat "$WORK/where.log" >&2; fail "rank $r is not on hostA"; }
done
for r in 2 3; do
  grep -qx "rank $r on hostB with $VETH_B" "$WORK/where.log" || { cat "$WORK/where.log" >&2; fail "rank $r is not on hostB"; }
done
echo "ok: ranks 0, 1 on hostA ($NS_A), ranks 2, 3 on hostB ($NS_B)"

t0=$(date +%s.%N)
in_ns_a "$WORK/two.log" "$MPIRUN" "${mpi_args[@]}" "$DMLP" train "$WORK/config.yaml" \
  --set "checkpoint.dir=$WORK/ck-two"
rc=$?
t1=$(date +%s.%N)
if [[ $rc -ne 0 ]]; then
  cat "$WORK/two.log" >&2
  [[ $rc -eq 124 || $rc -eq 137 ]] && fail "2+2 ranks: mpirun timed out after ${TIMEOUT_S}s"
  fail "2+2 ranks: mpirun exited with $rc"
fi
echo "2+2 ranks on hostA/hostB: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"

# ---- 4 ranks on one host --------------------------------------------------------------
t0=$(date +%s.%N)
bounded "$WORK/one.log" "$MPIRUN" -np 4 --oversubscribe --bind-to none \
  "$DMLP" train "$WORK/config.yaml"
rc=$?
t1=$(date +%s.%N)
if [[ $rc -ne 0 ]]; then
  cat "$WORK/one.log" >&2
  [[ $rc -eq 124 || $rc -eq 137 ]] && fail "4 ranks on one host: mpirun timed out after ${TIMEOUT_S}s"
  fail "4 ranks on one host: mpirun exited with $rc"
fi
echo "4 ranks on one host: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"

# ---- the logs ------------------------------------------------------------------------
status=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; status=1; fi
}
for run in two one; do
  log=$WORK/$run.log
  check "$run: rank 0's start-up line names 4 ranks" \
    grep -qE '^dmlp [^ ]+: 4 ranks x [0-9]+ threads?;' "$log"
  check "$run: 3 epochs logged" grep -qE '^epoch +3/3 ' "$log"
  if [ $run = two ]; then # each host adds in shared memory, then the hosts over MPI
    check "two: gradients summed per host in shared memory, then across hosts" \
      grep -q '^gradient allreduce: shared memory (2 ranks on each of 2 nodes) + MPI_Allreduce across nodes' "$log"
  else
    check "one: gradients summed in shared memory" \
      grep -q '^gradient allreduce: shared memory (4 ranks on each of 1 node)$' "$log"
  fi
  check "$run: final checkpoint written" grep -q '^checkpoint: ' "$log"
done
# The map Open MPI printed: two ranks on each host.
check "two: 2 ranks mapped on hostA" grep -qE 'Data for node: hostA[[:space:]].*Num procs: 2' "$WORK/two.log"
check "two: 2 ranks mapped on hostB" grep -qE 'Data for node: hostB[[:space:]].*Num procs: 2' "$WORK/two.log"
check "two: the agent launched hostB's daemon in $NS_B" \
  grep -qx "agent: hostB -> $NS_B" "$WORK/agent.log"

# ---- the weights ---------------------------------------------------------------------
ck_two=$WORK/ck-two/latest.h5
ck_one=$WORK/ck-one/latest.h5
[[ -e "$ck_two" && -e "$ck_one" ]] || { cat "$WORK/two.log" "$WORK/one.log" >&2; fail "missing checkpoint"; }

# Every /layers/<i>/weight and bias, as text with 9 significant digits (h5dump), compared
# value by value: |a - b| <= 1e-5 * (largest |weight| of both files).
dump_layers() { # dump_layers FILE -> one value per line, datasets in a fixed order
  local f=$1 i=0
  while h5dump -H -d "/layers/$i/weight" "$f" >/dev/null 2>&1; do
    for d in weight bias; do
      echo "# /layers/$i/$d"
      h5dump -m '%.9g' -y -w 0 -d "/layers/$i/$d" "$f" |
        sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr ',' '\n' | awk 'NF { print $1 }'
    done
    i=$((i + 1))
  done
}
command -v h5dump >/dev/null || fail "h5dump not found (Debian: hdf5-tools)"
dump_layers "$ck_two" >"$WORK/two.txt"
dump_layers "$ck_one" >"$WORK/one.txt"
check "checkpoints have layers" test "$(grep -c '^# /layers' "$WORK/one.txt")" -ge 4
if ! awk '
  FNR == NR { a[FNR] = $1; na = FNR; next }
  { b[FNR] = $1; nb = FNR }
  END {
    if (na != nb || na == 0) { printf "different sizes: %d vs %d lines\n", na, nb; exit 1 }
    big = 0; bad = 0; worst = 0;
    for (i = 1; i <= na; i++) {
      if (a[i] ~ /^#/) { if (a[i] != b[i]) { print "layout differs: " a[i] " vs " b[i]; exit 1 } continue }
      x = a[i] + 0; y = b[i] + 0;
      if (x < 0) x = -x; if (y < 0) y = -y;
      if (x > big) big = x; if (y > big) big = y;
    }
    tol = 1e-5 * big;
    for (i = 1; i <= na; i++) {
      if (a[i] ~ /^#/) continue;
      d = a[i] - b[i]; if (d < 0) d = -d;
      if (d > worst) worst = d;
      if (d > tol) { bad++; if (bad <= 5) printf "line %d: %s vs %s\n", i, a[i], b[i] }
    }
    printf "weights: largest |w| %.6g, largest difference %.3g (tolerance %.3g), %d over\n", big, worst, tol, bad;
    exit bad > 0
  }' "$WORK/two.txt" "$WORK/one.txt"; then
  echo "FAIL: 2+2 ranks on two hosts and 4 ranks on one host end with different weights" >&2
  status=1
else
  echo "ok: same weights (2+2 ranks on two hosts vs 4 ranks on one host)"
fi

# ---- reproducible mode: bit for bit, across hosts and rank counts ----------------------
# 2 + 2 ranks on two hosts against ONE rank: with training.reproducible the weights must
# be identical to the last bit (h5diff without a tolerance).
in_ns_a "$WORK/two-r.log" "$MPIRUN" "${mpi_args[@]}" "$DMLP" train "$WORK/config.yaml" \
  --set "checkpoint.dir=$WORK/ck-two-r" --set training.reproducible=true ||
  { cat "$WORK/two-r.log" >&2; fail "2+2 ranks, reproducible mode: mpirun failed"; }
bounded "$WORK/one-r.log" "$MPIRUN" -np 1 "$DMLP" train "$WORK/config.yaml" \
  --set "checkpoint.dir=$WORK/ck-one-r" --set training.reproducible=true ||
  { cat "$WORK/one-r.log" >&2; fail "1 rank, reproducible mode: mpirun failed"; }
command -v h5diff >/dev/null || fail "h5diff not found (Debian: hdf5-tools)"
if h5diff "$WORK/ck-two-r/latest.h5" "$WORK/ck-one-r/latest.h5" /layers /layers >"$WORK/h5diff.log" 2>&1; then
  echo "ok: reproducible mode: 2+2 ranks on two hosts and 1 rank give bit-identical weights"
else
  cat "$WORK/h5diff.log" >&2
  echo "FAIL: reproducible mode: weights differ between 2+2 ranks on two hosts and 1 rank" >&2
  status=1
fi

if [[ $status -ne 0 ]]; then
  echo "---- 2+2 log" >&2; cat "$WORK/two.log" >&2
  echo "---- 4-rank log" >&2; cat "$WORK/one.log" >&2
  exit 1
fi
echo "PASS: two hosts"
