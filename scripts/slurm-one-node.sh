#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's packages, to try `study.executor=slurm` on.
#
#   scripts/slurm-one-node.sh start DIR    install slurm-wlm and munge where missing (apt, as root), write
#                                          the configuration under DIR and start munged, slurmctld, slurmd
#   scripts/slurm-one-node.sh status DIR   the daemons, the node and the queue (exit 1 when not up)
#   scripts/slurm-one-node.sh stop DIR     cancel every job, stop the daemons; nothing is left running
#
# Everything lives under DIR: slurm.conf, the munge key and socket, the controller's state, slurmd's
# spool, the daemons' logs and pid files. Nothing is written to /etc (apt's install aside). The Slurm
# commands find the cluster through SLURM_CONF, which DIR/env exports:
#
#   source DIR/env && sinfo
#
# The node is this host's short name (`hostname -s`) with all its cores, in one partition `debug` (the
# default); select/cons_tres, auth/munge, no accounting (no slurmdbd: `sacct` answers "accounting
# storage is disabled", and the study reads job states from squeue and scontrol instead). Jobs run as
# the user who submits them; slurmd runs as root, so `start` needs root. `start` on a cluster that is up
# does nothing; `stop` on one that is down does nothing.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
action=$1
dir=$2
[[ $action =~ ^(start|stop|status)$ ]] || usage
if [[ $action != start && ! -d $dir ]]; then
  echo "no cluster in $dir (no such directory)" >&2
  [[ $action == stop ]] && exit 0 || exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
host=$(hostname -s)

say() { echo "slurm-one-node: $*" >&2; }

# A pid from a pid file, when that process is alive.
alive_pid() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stop the processes of pid files together: SIGTERM, then SIGKILL to any alive after 15 s.
stop_pidfiles() {
  local file pid i running pids=()
  for file in "$@"; do
    if pid=$(alive_pid "$file"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for i in $(seq 150); do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [[ $running -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not stop on SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$@"
}

# The Slurm commands of this cluster (its slurm.conf).
slurm() { SLURM_CONF=$conf "$@"; }

up() {
  alive_pid "$dir/munge/munged.pid" >/dev/null && alive_pid "$dir/run/slurmctld.pid" >/dev/null &&
    alive_pid "$dir/run/slurmd.pid" >/dev/null && slurm scontrol ping 2>/dev/null | grep -q UP
}

install_packages() {
  local missing=()
  command -v munged >/dev/null || [[ -x /usr/sbin/munged ]] || missing+=(munge)
  for daemon in slurmctld slurmd sbatch; do
    command -v "$daemon" >/dev/null || [[ -x /usr/sbin/$daemon ]] || { missing+=(slurm-wlm); break; }
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    say "${missing[*]} not installed, and installing needs root: sudo apt-get install slurm-wlm munge"
    exit 1
  fi
  if ! command -v apt-get >/dev/null; then
    say "${missing[*]} not installed and no apt-get here: install Slurm (slurmctld, slurmd) and munge"
    exit 1
  fi
  local started=$SECONDS policy=/usr/sbin/policy-rc.d made_policy=""
  # The packages' own services (munge, slurmctld, slurmd from /etc) must not start: this cluster's do.
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  say "installing slurm-wlm munge with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge \
    >"$dir/apt.log" 2>&1; then
    [[ -n $made_policy ]] && rm -f "$policy"
    say "apt-get install slurm-wlm munge failed (see $dir/apt.log): $(tail -n 1 "$dir/apt.log")"
    exit 1
  fi
  [[ -n $made_policy ]] && rm -f "$policy"
  say "installed in $((SECONDS - started)) s"
}

free_port() {
  local port=$1
  while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

write_config() {
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
  chmod 755 "$dir/munge" # others reach the socket (jobs run as their submitter); the key stays 0400
  if [[ ! -s $dir/munge/munge.key ]]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 400 "$dir/munge/munge.key"
  local cpus ctld_port slurmd_port
  cpus=$(nproc --all)
  ctld_port=$(free_port 6817)
  slurmd_port=$(free_port $((ctld_port + 1)))
  cat >"$conf" <<EOF
# A one-node cluster written by scripts/slurm-one-node.sh; everything under $dir.
ClusterName=m2rl
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "export SLURM_CONF=$conf" >"$dir/env"
}

start() {
  if up; then
    say "already running in $dir"
    cat "$dir/env"
    return 0
  fi
  stop_daemons quiet # what is left of an earlier start
  install_packages
  write_config
  local munged slurmctld slurmd
  munged=$(command -v munged || echo /usr/sbin/munged)
  slurmctld=$(command -v slurmctld || echo /usr/sbin/slurmctld)
  slurmd=$(command -v slurmd || echo /usr/sbin/slurmd)
  local started=$SECONDS
  # --force: munged checks that no one else may write the directories above its files; a temporary
  # directory under /tmp (sticky, world-writable) fails that check, and the key is still ours alone.
  "$munged" --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" 2>>"$dir/log/start.log" ||
    { say "munged did not start: $(tail -n 3 "$dir/munge/munged.log" "$dir/log/start.log" 2>/dev/null)"; exit 1; }
  "$slurmctld" -f "$conf" 2>>"$dir/log/start.log" ||
    { say "slurmctld did not start: $(tail -n 3 "$dir/log/slurmctld.log" 2>/dev/null)"; exit 1; }
  "$slurmd" -f "$conf" 2>>"$dir/log/start.log" ||
    { say "slurmd did not start: $(tail -n 3 "$dir/log/slurmd.log" 2>/dev/null)"; exit 1; }
  local i state
  for i in $(seq 300); do
    state=$(slurm sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1 || true)
    [[ $state =~ ^(idle|mix|alloc) ]] && break
    sleep 0.1
  done
  if [[ ! $state =~ ^(idle|mix|alloc) ]]; then
    say "the node $host is not up after 30 s (state: ${state:-none}); logs in $dir/log"
    exit 1
  fi
  say "up in $((SECONDS - started)) s: node $host ($(nproc --all) CPUs), partition debug; logs in $dir/log"
  cat "$dir/env"
}

stop_daemons() {
  stop_pidfiles "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid"
  stop_pidfiles "$dir/munge/munged.pid"
  [[ ${1:-} == quiet ]] || say "stopped ($dir)"
}

stop() {
  if alive_pid "$dir/run/slurmctld.pid" >/dev/null; then
    # Every job first, so that no job step outlives its slurmd.
    slurm scancel --quiet --partition=debug 2>/dev/null || true
    local i
    for i in $(seq 300); do
      [[ -z $(slurm squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.1
    done
    local left
    left=$(slurm squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    [[ -z $left ]] || say "jobs still listed after 30 s, stopping anyway: $left"
  fi
  stop_daemons
}

status() {
  local name pidfile pid code=0
  for name in munged slurmctld slurmd; do
    pidfile=$dir/run/$name.pid
    [[ $name == munged ]] && pidfile=$dir/munge/munged.pid
    if pid=$(alive_pid "$pidfile"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      code=1
    fi
  done
  if [[ $code -eq 0 ]]; then
    slurm sinfo || code=1
    slurm squeue || code=1
    cat "$dir/env"
  fi
  return $code
}

"$action"
