#!/usr/bin/env bash
# scripts/slurm/train.sbatch on a real single-node SLURM cluster (scripts/slurm/local_slurm.sh):
#   (a) a 2-rank job runs to the end: exit code 0 through `sbatch --wait`, the log, latest.h5
#       at the expected epoch and step (`dmlp inspect`);
#   (b) a reference run of the same config with plain mpirun, never interrupted;
#   (c) a 2-rank job preempted with `scancel --signal=USR1 --batch` once its first epoch is logged:
#       the ranks checkpoint and exit 75, the script requeues the job, the rerun
#       (SLURM_RESTART_COUNT=1) resumes from latest.h5, and the job completes with exactly
#       the weights (and optimizer state) of (b): h5diff, no tolerance;
#   (d) a bad config: the job fails with dmlp's exit code 2, not requeued;
#   (e) DMLP_COMMAND=sweep: a two-member sweep completes as one job, with its sweep.jsonl.
#
#   tests/slurm/test_slurm.sh [path/to/dmlp]        (or DMLP_BIN=...)
#
# Builds nothing. Needs root (SLURM's daemons, munge); installs slurmctld, slurmd,
# slurm-client, munge and hdf5-tools with apt-get when missing. Exit 0: pass; non-zero:
# fail. Prints "SKIPPED: <reason>" and exits 0 only where SLURM cannot be installed or run
# (not root, no apt-get, the install fails). Every daemon it started is stopped on exit,
# also on failure or interruption. About 40 s on a 2-core machine.
#
# DMLP_SLURM_KEEP=1 keeps the temporary folder (logs, checkpoints, the cluster's logs);
# DMLP_SLURM_TIMEOUT=S bounds the test once SLURM is up (default 170 s; installing the
# packages, when needed, is bounded apart: DMLP_SLURM_INSTALL_TIMEOUT, default 180 s), so a
# broken SLURM cannot hang CI. Stopping the cluster takes at most ~40 s more.
set -uo pipefail

DMLP=${1:-${DMLP_BIN:-}}
if [[ -z $DMLP ]]; then
  echo "usage: $0 path/to/dmlp   (or DMLP_BIN=path/to/dmlp $0)" >&2
  exit 2
fi
DMLP=$(readlink -f "$DMLP")
[[ -x $DMLP ]] || { echo "FAIL: $DMLP is not an executable" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SBATCH_SCRIPT=$ROOT/scripts/slurm/train.sbatch
MPIRUN=${MPIEXEC:-$(command -v mpirun || true)}
[[ -n $MPIRUN ]] || { echo "FAIL: mpirun not found" >&2; exit 2; }

# Run inside a SLURM job (a CI runner on a cluster)? Its SLURM_* variables would steer
# sbatch and mpirun towards that allocation; only our own cluster's SLURM_CONF counts.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^SLURM_')

T_START=$(date +%s)
DEADLINE=$((T_START + 600))    # set once the cluster is up (an install may come first)
left() { local l=$((DEADLINE - $(date +%s))); echo $((l > 1 ? l : 1)); }   # seconds left
elapsed() { echo "$(($(date +%s) - T_START)) s"; }

skip() { echo "SKIPPED: $*"; exit 0; }
fail() { echo "FAIL: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmlp-slurm.XXXXXX")
chmod 0755 "$WORK"            # munged (user munge) must reach its socket under it
SLURM_DIR=$WORK/cluster
source "$ROOT/scripts/slurm/local_slurm.sh"
export DMLP_SLURM_INSTALL_TIMEOUT=${DMLP_SLURM_INSTALL_TIMEOUT:-180}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local_slurm_stop "$SLURM_DIR"
  if [[ -n ${DMLP_SLURM_KEEP:-} ]]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- SLURM, h5diff -----------------------------------------------------------------------
local_slurm_start "$SLURM_DIR" 2>"$WORK/start.err"
case $? in
  0) ;;
  3) skip "SLURM cannot be installed or run here: $(tail -n 3 "$WORK/start.err" | tr '\n' ' ')" ;;
  *) cat "$WORK/start.err" >&2; fail "the local SLURM cluster did not start" ;;
esac
if ! command -v h5diff >/dev/null; then
  timeout 180 apt-get -o DPkg::Lock::Timeout=120 install -y --no-install-recommends hdf5-tools \
    >"$WORK/apt-h5.log" 2>&1 || { tail -n 5 "$WORK/apt-h5.log" >&2; fail "cannot install hdf5-tools (h5diff)"; }
fi
echo "ok: single-node SLURM up ($(timeout 10 sinfo -h -o '%n %c CPUs %T'), $(elapsed))"
T_START=$(date +%s)
DEADLINE=$((T_START + ${DMLP_SLURM_TIMEOUT:-170}))

# ---- a small dataset and config ------------------------------------------------------------
# 4000 rows x 32 features, 4 classes (deterministic, awk only); a 32-512-512-4 network, batch
# 100, 40 steps per epoch, 20 epochs: (c) signals once epoch 1 is logged, with 760 of the
# 800 steps still to run (~3 s with 2 ranks on 2 cores; the signal reaches the ranks within
# a few steps). Few, large steps: fewer allreduces, so the run's length suffers less when
# other work shares the cores.
awk 'BEGIN {
  srand(12345);
  printf "f0"; for (i = 1; i < 32; i++) printf ",f%d", i; printf ",label\n";
  for (n = 0; n < 4000; n++) {
    c = n % 4; line = "";
    for (i = 0; i < 32; i++) {
      x = (rand() + rand() + rand() - 1.5) * 1.2 + 0.6 * c * ((i % 3) - 1);
      line = line sprintf("%.5f,", x);
    }
    print line c;
  }
}' >"$WORK/data.csv"
"$DMLP" import csv "$WORK/data.csv" --label-column label --output "$WORK/data.h5" \
  >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log" >&2; fail "dmlp import csv"; }
EPOCHS=20
STEPS_PER_EPOCH=40
cat >"$WORK/config.yaml" <<EOF
model:
  layers:
    - {units: 512, activation: relu}
    - {units: 512, activation: relu}
    - {units: 4, activation: softmax}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.02, momentum: 0.9}
data: {train: $WORK/data.h5}
training: {epochs: $EPOCHS, batch_size: 100, seed: 7}
checkpoint: {dir: $WORK/ck-ref, every_epochs: 1, keep_last: 2}
EOF

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_WAIT_POLICY=passive
export DMLP_BIN=$DMLP          # train.sbatch's binary

status=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; status=1; fi
}
field() { # field JOBID NAME: a field of `scontrol show job`, e.g. JobState, ExitCode, Restarts
  timeout 10 scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
finished() { [[ $1 =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)$ ]]; }
wait_job() { # wait_job JOBID: until it is finished for good (a requeued job runs again)
  local s
  while (($(date +%s) < DEADLINE)); do
    s=$(field "$1" JobState)
    finished "$s" && return 0
    sleep 0.3
  done
  return 1
}
inspect_is() { # inspect_is CHECKPOINT EPOCH STEP
  local out
  out=$("$DMLP" inspect "$1" 2>&1) || { echo "$out" >&2; return 1; }
  grep -qE "^  epoch +$2\$" <<<"$out" && grep -qE "^  step +$3\$" <<<"$out" ||
    { echo "$out" | head -8 >&2; return 1; }
}
show_log() { echo "---- $1" >&2; cat "$1" >&2; echo "----" >&2; }

# ---- (a) a job that runs to the end ---------------------------------------------------------
# 2 ranks; 2 threads each where the machine has 4 cores (hybrid, bound), else 1.
threads=1; (($(nproc) >= 4)) && threads=2
A_EPOCHS=2
jid_line=$(cd "$WORK" && timeout "$(left)" sbatch --wait --ntasks=2 --cpus-per-task="$threads" \
  --output="$WORK/a-%j.out" "$SBATCH_SCRIPT" "$WORK/config.yaml" \
  --set "checkpoint.dir=$WORK/ck-a" --set "training.epochs=$A_EPOCHS" 2>"$WORK/a.err")
rc=$?
jid=$(grep -oE '[0-9]+' <<<"$jid_line" | head -1)
[[ -n $jid && -s $WORK/a-$jid.out ]] || { cat "$WORK/a.err" >&2; fail "(a): sbatch --wait exited with $rc, no job log"; }
log=$WORK/a-$jid.out
[[ $rc -eq 0 ]] || { show_log "$log"; fail "(a): sbatch --wait exited with $rc (job $jid: $(field "$jid" JobState) $(field "$jid" ExitCode))"; }
check "(a) job $jid COMPLETED with exit code 0 ($(elapsed))" \
  test "$(field "$jid" JobState) $(field "$jid" ExitCode)" = "COMPLETED 0:0"
check "(a) start line: job id, restart 0, 2 ranks x $threads threads" \
  grep -qE "^train\.sbatch: job $jid restart 0 on .*: 2 ranks x $threads threads" "$log"
check "(a) dmlp ran with 2 ranks x $threads thread(s)" grep -qE "^dmlp [^ ]+: 2 ranks x $threads threads?;" "$log"
check "(a) $A_EPOCHS epochs logged" grep -qE "^epoch +$A_EPOCHS/$A_EPOCHS " "$log"
check "(a) latest.h5 exists" test -e "$WORK/ck-a/latest.h5"
check "(a) latest.h5 is at epoch $A_EPOCHS, step $((A_EPOCHS * STEPS_PER_EPOCH))" \
  inspect_is "$WORK/ck-a/latest.h5" "$A_EPOCHS" "$((A_EPOCHS * STEPS_PER_EPOCH))"
((status == 0)) || show_log "$log"

# ---- (b) the reference: plain mpirun, same config and rank count, never interrupted -----------
timeout -k 5 "$(left)" "$MPIRUN" -np 2 --bind-to none -x OMP_NUM_THREADS=1 \
  "$DMLP" train "$WORK/config.yaml" >"$WORK/ref.log" 2>&1
rc=$?
[[ $rc -eq 0 ]] || { show_log "$WORK/ref.log"; fail "(b) reference run: mpirun exited with $rc"; }
echo "ok: (b) reference run ($(elapsed))"

# ---- (c) a job preempted with SIGUSR1, requeued, resumed ------------------------------------
jid=$(cd "$WORK" && timeout 30 sbatch --parsable --ntasks=2 --cpus-per-task=1 \
  --output="$WORK/c-%j.out" "$SBATCH_SCRIPT" "$WORK/config.yaml" \
  --set "checkpoint.dir=$WORK/ck-c" 2>"$WORK/c.err") || { cat "$WORK/c.err" >&2; fail "(c): sbatch failed"; }
jid=${jid%%;*}
log=$WORK/c-$jid.out
# Signal once the first epoch is logged: the ranks' handlers are in place long before, and
# training is under way (a signal before dmlp installs its handlers would kill it).
while ! grep -qE '^epoch +1/' "$log" 2>/dev/null; do
  if finished "$(field "$jid" JobState)" || (($(date +%s) >= DEADLINE)); then
    show_log "$log"; fail "(c): job $jid never logged its first epoch ($(field "$jid" JobState))"
  fi
  sleep 0.1
done
timeout 10 scancel --signal=USR1 --batch "$jid" || fail "(c): scancel --signal=USR1 --batch $jid failed"
echo "ok: (c) job $jid sent SIGUSR1 after its first epoch ($(elapsed))"
wait_job "$jid" || { show_log "$log"; fail "(c): job $jid not finished within the time limit ($(field "$jid" JobState))"; }
check "(c) job $jid COMPLETED with exit code 0, requeued once ($(elapsed))" \
  test "$(field "$jid" JobState) $(field "$jid" ExitCode) $(field "$jid" Restarts)" = "COMPLETED 0:0 1"
check "(c) the script forwarded SIGUSR1 to mpirun" grep -q "^train\.sbatch: SIGUSR1 received" "$log"
check "(c) dmlp stopped on the signal after a checkpoint" grep -q "^dmlp: stopped by a signal (SIGUSR1" "$log"
check "(c) the script requeued the job" grep -q "^train\.sbatch: stopped with exit code 75; requeueing job $jid " "$log"
check "(c) the rerun has SLURM_RESTART_COUNT=1" grep -qE "^train\.sbatch: job $jid restart 1 on " "$log"
stop_step=$(sed -n 's/^dmlp: stopped by a signal .* after step \([0-9]*\);.*/\1/p' "$log" | head -1)
check "(c) stopped mid-run (after step ${stop_step:-?} of $((EPOCHS * STEPS_PER_EPOCH)))" \
  test -n "$stop_step" -a "${stop_step:-0}" -gt 0 -a "${stop_step:-0}" -lt "$((EPOCHS * STEPS_PER_EPOCH))"
check "(c) the rerun resumed from that step's checkpoint" \
  grep -qE "^resumed from $WORK/ck-c/step-0*${stop_step:-x}\.h5" "$log"
check "(c) $EPOCHS epochs logged by the rerun" grep -qE "^epoch +$EPOCHS/$EPOCHS " "$log"
check "(c) latest.h5 is at epoch $EPOCHS, step $((EPOCHS * STEPS_PER_EPOCH))" \
  inspect_is "$WORK/ck-c/latest.h5" "$EPOCHS" "$((EPOCHS * STEPS_PER_EPOCH))"
# Bit-identical: h5diff without -d/-p compares every value exactly.
for obj in /layers /optimizer; do
  if h5diff "$WORK/ck-ref/latest.h5" "$WORK/ck-c/latest.h5" "$obj" "$obj" >"$WORK/h5diff.out" 2>&1; then
    echo "ok: (c) $obj identical to the uninterrupted run's (h5diff)"
  else
    echo "FAIL: (c) $obj differs from the uninterrupted run's:" >&2
    head -n 20 "$WORK/h5diff.out" >&2
    status=1
  fi
done
((status == 0)) || show_log "$log"

# ---- (d) dmlp's failure codes pass through, and such a job is not requeued -------------------
jid=$(cd "$WORK" && timeout 30 sbatch --parsable --ntasks=1 --output="$WORK/d-%j.out" \
  "$SBATCH_SCRIPT" "$WORK/config.yaml" --set "optimizer.lr=-1" 2>"$WORK/d.err") ||
  { cat "$WORK/d.err" >&2; fail "(d): sbatch failed"; }
jid=${jid%%;*}
wait_job "$jid" || fail "(d): job $jid not finished within the time limit"
check "(d) a bad config: job $jid FAILED with exit code 2, not requeued" \
  test "$(field "$jid" JobState) $(field "$jid" ExitCode) $(field "$jid" Restarts)" = "FAILED 2:0 0"

# ---- (e) a sweep as one job: DMLP_COMMAND=sweep, two members in groups of one rank ---------
jid=$(cd "$WORK" && DMLP_COMMAND=sweep timeout 30 sbatch --parsable --ntasks=2 \
  --output="$WORK/e-%j.out" "$SBATCH_SCRIPT" "$WORK/config.yaml" \
  --grid optimizer.lr=0.01,0.02 --set "checkpoint.dir=$WORK/ck-e" \
  --set "training.epochs=1" 2>"$WORK/e.err") ||
  { cat "$WORK/e.err" >&2; fail "(e): sbatch failed"; }
jid=${jid%%;*}
wait_job "$jid" || fail "(e): job $jid not finished within the time limit"
check "(e) a sweep: job $jid COMPLETED with exit code 0" \
  test "$(field "$jid" JobState) $(field "$jid" ExitCode)" = "COMPLETED 0:0"
check "(e) sweep.jsonl holds both members, done" \
  test "$(grep -c '"status": "done"' "$WORK/ck-e/sweep.jsonl" 2>/dev/null)" = 2
((status == 0)) || show_log "$WORK/e-$jid.out"

if ((status == 0)); then
  echo "PASS: train.sbatch on SLURM: run, preempt + requeue + bit-identical resume, a sweep ($(elapsed))"
fi
exit "$status"
