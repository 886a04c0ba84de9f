#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying scripts/slurm/train.sbatch
# and for the test tests/slurm/test_slurm.sh. Debian 12's packages (Slurm 22.05, munge),
# run as root, no systemd; every file it writes (config, state, spool, logs, pid files,
# munge socket) lives under DIR.
#
#   scripts/slurm/local_slurm.sh start DIR   install what is missing, start munged,
#                                            slurmctld and slurmd; print the SLURM_CONF line
#   scripts/slurm/local_slurm.sh stop DIR    cancel every job, wait for the queue to empty,
#                                            shut the daemons down, stop munged
#   scripts/slurm/local_slurm.sh status DIR  sinfo and squeue
#
# then, in the shell that submits:   export SLURM_CONF=DIR/etc/slurm.conf
# Sourcing the file instead defines local_slurm_start DIR and local_slurm_stop DIR (start
# also exports SLURM_CONF).
#
# Exit codes of start: 0 running; 3 SLURM cannot be installed or run here (not root, no
# apt-get, the install failed), so a test can skip; 1 anything else (the daemons it started
# are stopped again, the logs under DIR/log say why).
#
# Settings (environment):
#   DMLP_SLURM_CPUS  CPUs the node advertises (default: the larger of 4 and the real count).
#                    More than the machine has lets a 2-rank x 2-thread job run on 2 cores
#                    instead of staying PENDING (Reason=PartitionConfig); the node's real
#                    hardware line is kept when it already has that many.
#   DMLP_SLURM_PORT  slurmctld's port, slurmd takes the next one (default: the first free
#                    pair from 6817), so two clusters (two test runs) can coexist.
#   DMLP_SLURM_INSTALL_TIMEOUT  seconds the package install may take (default 600).

# The cluster's config file for DIR.
local_slurm_conf() { echo "$1/etc/slurm.conf"; }

# Prints the pid in FILE when that process is alive (and not a zombie).
local_slurm_pid_alive() {
  local p
  [[ -s $1 ]] || return 1
  p=$(cat "$1" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] || return 1
  kill -0 "$p" 2>/dev/null || return 1
  [[ $(ps -o stat= -p "$p" 2>/dev/null) != Z* ]] || return 1
  echo "$p"
}

# A port pair (P, P+1) nobody listens on, from DMLP_SLURM_PORT or 6817 upwards.
local_slurm_free_port() {
  local p
  if [[ -n ${DMLP_SLURM_PORT:-} ]]; then echo "$DMLP_SLURM_PORT"; return; fi
  for ((p = 6817; p < 6917; p += 2)); do
    if ! ss -Htln 2>/dev/null | awk '{print $4}' | grep -qE ":($p|$((p + 1)))\$"; then
      echo "$p"; return
    fi
  done
  echo 6817
}

local_slurm_start() {
  local base=${1:?usage: local_slurm_start DIR} host nodeline real cpus mem port i
  mkdir -p "$base" || return 1
  base=$(cd "$base" && pwd)
  if [[ $(id -u) -ne 0 ]]; then
    echo "local_slurm: needs root (munged runs as the munge user, the daemons as root)" >&2
    return 3
  fi
  # Packages: only the daemons, the client commands and munge; their install scripts cannot
  # start services without an init system, which is harmless (we start them below).
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
     ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || { echo "local_slurm: no apt-get to install SLURM" >&2; return 3; }
    echo "local_slurm: installing slurmctld slurmd slurm-client munge" >&2
    local t=${DMLP_SLURM_INSTALL_TIMEOUT:-600}
    if ! timeout "$t" apt-get -o DPkg::Lock::Timeout="$t" install -y --no-install-recommends \
           slurmctld slurmd slurm-client munge >"$base/apt.log" 2>&1; then
      # A stale package list is the usual reason; one update, one more try.
      timeout "$t" apt-get -o DPkg::Lock::Timeout="$t" update >>"$base/apt.log" 2>&1
      timeout "$t" apt-get -o DPkg::Lock::Timeout="$t" install -y --no-install-recommends \
        slurmctld slurmd slurm-client munge >>"$base/apt.log" 2>&1 ||
        { echo "local_slurm: apt-get install failed:" >&2; tail -5 "$base/apt.log" >&2; return 3; }
    fi
  fi
  id munge >/dev/null 2>&1 || { echo "local_slurm: no munge user after the install" >&2; return 3; }

  local conf; conf=$(local_slurm_conf "$base")
  if [[ -n $(local_slurm_pid_alive "$base/run/slurmctld.pid") ]]; then
    echo "local_slurm: a cluster already runs from $base (stop it first)" >&2
    return 1
  fi
  mkdir -p "$base"/{etc,state,spool,log,run/munge,munge} || return 1
  chown munge:munge "$base/run/munge" "$base/munge"
  chmod 0755 "$base/run/munge"
  chmod 0700 "$base/munge"
  # munged needs every directory above its socket to be searchable by the munge user.
  chmod o+x "$base" "$base/run" 2>/dev/null
  if [[ ! -s /etc/munge/munge.key ]]; then   # the package's postinst normally creates it
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown -R munge:munge /etc/munge; chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  fi
  touch "$base/log/munged.log"; chown munge "$base/log/munged.log"
  # Our own munged on our own socket: nothing of the system's is touched or needed.
  runuser -u munge -- /usr/sbin/munged --socket="$base/run/munge/munge.socket.2" \
      --pid-file="$base/run/munge/munged.pid" --log-file="$base/log/munged.log" \
      --seed-file="$base/munge/munged.seed" ||
    { echo "local_slurm: munged failed, see $base/log/munged.log" >&2; return 1; }

  host=$(hostname -s)
  # The node's real hardware line, e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1
  # CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"; with more CPUs advertised than
  # exist, a flat 1-socket layout of that many cores (SlurmdParameters=config_overrides
  # below makes slurmd accept it).
  nodeline=$(/usr/sbin/slurmd -C 2>/dev/null | head -1)
  [[ $nodeline == NodeName=* ]] || nodeline="NodeName=$host CPUs=$(nproc) RealMemory=1000"
  real=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$nodeline")
  cpus=${DMLP_SLURM_CPUS:-$(( ${real:-1} > 4 ? ${real:-1} : 4 ))}
  if [[ $cpus != "$real" ]]; then
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$nodeline")
    nodeline="NodeName=$host CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=${mem:-1000}"
  fi
  port=$(local_slurm_free_port)

  # Why each line:
  #  - SlurmctldHost with 127.0.0.1: no DNS needed for the host name.
  #  - AuthInfo socket=: clients and daemons talk to our munged. cred_expire=5 (default
  #    120): a requeued job may only start once its old credential has expired, so this
  #    is what makes a requeue take ~11 s instead of ~2 minutes.
  #  - proctrack/linuxproc, task/none: no cgroups needed (containers, no systemd).
  #  - cons_tres + CR_Core: jobs get cores, so --ntasks/--cpus-per-task mean what they say.
  #  - MpiDefault=pmix: plain `srun` can launch Open MPI ranks too (mpirun needs nothing).
  #  - JobRequeue=1: batch jobs may be requeued (train.sbatch also asks with --requeue).
  #  - sched_interval=1, KillWait=5: a small cluster that reacts within seconds.
  #  - MinJobAge=300: finished jobs stay visible to `scontrol show job` for 5 minutes.
  #  - No accounting, no mail, no job completion log: nothing else to run.
  cat >"$conf" <<CONF
ClusterName=dmlplocal
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$base/run/munge/munge.socket.2,cred_expire=5
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
SlurmdParameters=config_overrides
JobRequeue=1
MailProg=/bin/true
SchedulerParameters=sched_interval=1
KillWait=5
MinJobAge=300
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
$nodeline NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$conf
  # -i: ignore any state of an earlier cluster in DIR ("Could not open ... state file" on
  # a first start is normal).
  if ! /usr/sbin/slurmctld -f "$conf" -i; then
    echo "local_slurm: slurmctld failed, see $base/log/slurmctld.log" >&2
    local_slurm_stop "$base"; return 1
  fi
  if ! /usr/sbin/slurmd -f "$conf"; then
    echo "local_slurm: slurmd failed, see $base/log/slurmd.log" >&2
    local_slurm_stop "$base"; return 1
  fi
  for ((i = 0; i < 150; i++)); do     # idle within half a second, normally
    [[ $(sinfo -h -n "$host" -o %T 2>/dev/null) == idle ]] && return 0
    sleep 0.2
  done
  echo "local_slurm: the node never became idle:" >&2
  sinfo -R >&2
  tail -n 5 "$base"/log/slurm*.log >&2
  local_slurm_stop "$base"
  return 1
}

local_slurm_stop() {
  local base=${1:?usage: local_slurm_stop DIR} conf p pids="" i alive
  [[ -d $base ]] || return 0
  base=$(cd "$base" && pwd)
  conf=$(local_slurm_conf "$base")
  for p in slurmctld slurmd; do
    p=$(local_slurm_pid_alive "$base/run/$p.pid") && pids="$pids $p"
  done
  if [[ -n $pids && -s $conf ]]; then
    export SLURM_CONF=$conf
    # Cancel every job first: slurmstepd (and the job's processes) survive `scontrol
    # shutdown`. It is our own cluster, so every job in it is ours.
    local jobs
    mapfile -t jobs < <(timeout 10 squeue -h -o %A 2>/dev/null)
    ((${#jobs[@]})) && timeout 10 scancel --full "${jobs[@]}" 2>/dev/null
    for ((i = 0; i < 100; i++)); do           # up to 20 s (KillWait=5)
      [[ -z $(timeout 10 squeue -h 2>/dev/null) ]] && break
      sleep 0.2
    done
    # Whatever of a job is still running after that: its processes by pid.
    for p in $(timeout 10 scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}'); do
      kill -KILL "$p" 2>/dev/null
    done
    timeout 10 scontrol shutdown >/dev/null 2>&1   # stops slurmctld and every slurmd it knows
    for ((i = 0; i < 50; i++)); do
      alive=""
      for p in $pids; do
        kill -0 "$p" 2>/dev/null && [[ $(ps -o stat= -p "$p" 2>/dev/null) != Z* ]] && alive=1
      done
      [[ -z $alive ]] && break
      sleep 0.2
    done
  fi
  # Anything left: TERM, then KILL, by pid.
  for p in $pids; do kill -TERM "$p" 2>/dev/null; done
  for p in $pids; do
    for ((i = 0; i < 25; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null
  done
  if p=$(local_slurm_pid_alive "$base/run/munge/munged.pid"); then
    kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < 25; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null
  fi
  rm -f "$base"/run/*.pid "$base"/run/munge/munged.pid
  [[ ${SLURM_CONF:-} == "$conf" ]] && unset SLURM_CONF
  return 0
}

# Executed (not sourced): subcommands.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  cmd=${1:-}; dir=${2:-}
  if [[ -z $cmd || -z $dir ]]; then
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
  fi
  case $cmd in
    start)
      local_slurm_start "$dir" || exit $?
      echo "export SLURM_CONF=$(local_slurm_conf "$(cd "$dir" && pwd)")" ;;
    stop) local_slurm_stop "$dir" ;;
    status)
      export SLURM_CONF; SLURM_CONF=$(local_slurm_conf "$(cd "$dir" && pwd)")
      sinfo && squeue ;;
    *) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
  esac
fi
