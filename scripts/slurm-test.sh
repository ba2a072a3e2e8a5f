#!/usr/bin/env bash
# Runs deploy/slurm/cache.sbatch for real on a one-node Slurm cluster started
# here, on the tiny fixture model, and checks the result:
#
#   1. a single-process `ctxdep cache build` of the token file (timed);
#   2. the sbatch file as a 4-task array (timed) with the merge submitted as
#      a dependent job, exactly as its header says; `cache verify` passes and
#      the cache is bit-identical (tokens, x, y) to the single build
#      (scripts/cachecmp);
#   3. the rerun path: an array missing task 2 fails merge and verify; a
#      rerun of index 2 without SHARD_COUNT is refused; with SHARD_COUNT=4 it
#      completes the cache, which again equals the single build.
#
# Usage:
#   scripts/slurm-test.sh            run the test (needs slurm-wlm and munge)
#   scripts/slurm-test.sh install    apt-get install them when missing (CI)
#   scripts/slurm-test.sh --install  both
# Environment: CTXDEP (binary to test; default: `go build` of ./cmd/ctxdep
# into the temp dir), SLURMTEST_REPEAT (copies of the 6 fixture rows in the
# token file, default 1024), SLURMTEST_KEEP=1 (keep the temp dir),
# SLURMTEST_PORT (slurmctld port; slurmd uses the next one).
#
# It needs root (slurmd runs jobs as their user and the daemons run as root
# here) and no systemd: every daemon is a child of this script, on private
# ports, sockets and state under one temp dir, so it neither needs nor
# touches /etc/slurm, /etc/munge or /run/munge, and a system Slurm or munged
# on the machine is left alone. Takes ~30-40 s on 2 cores.
#
# Pitfalls met getting Slurm 22.05 (Debian 12) up in a container, and what
# this script does about each:
# - No systemd: the package's postinst cannot start munge or slurm (fine);
#   we start munged, slurmctld and slurmd ourselves in the foreground (-F,
#   -D) as background jobs, so the trap can stop and reap them. (Daemons
#   started from a shell that then exits become zombies under an init that
#   does not reap.)
# - munged refuses a socket whose directory, or any parent, lacks o+x:
#   "Socket is inaccessible: execute permissions for all required"; mktemp -d
#   makes 0700 dirs, so we chmod 755 the temp dir. The key must be 0600 and
#   owned by munged's user (root here). Slurm finds our socket through
#   AuthInfo=socket=... (auth/munge and cred/munge both read it).
# - Hostname: slurmctld only runs on the host named in SlurmctldHost (its
#   short hostname) and slurmd takes its NodeName from the hostname; we use
#   `hostname -s`, pass it to slurmd with -N, and give both an explicit
#   address, SlurmctldHost=name(127.0.0.1) and NodeAddr=127.0.0.1, so nothing
#   depends on the name resolving.
# - cgroups: proctrack/cgroup and task/cgroup need a writable cgroup tree that
#   containers rarely give; ProctrackType=proctrack/linuxproc,
#   TaskPlugin=task/none and JobAcctGatherType=jobacct_gather/none need none.
#   Slurm >= 23.02 may set up cgroups in slurmd anyway; for those we write
#   cgroup.conf with CgroupPlugin=disabled (untested here: Debian 12 has
#   22.05, which rejects that value).
# - The node must not claim more than slurmd finds (CPUs, RealMemory, GRES)
#   or slurmctld sets it INVAL/DRAIN; we copy `slurmd -C`'s line.
# - GPUs: cache.sbatch asks for --gres=gpu:1. We declare fake GPUs whose
#   "device files" are /dev/null, /dev/zero, ... (a GPU GRES without File= is
#   dropped: "Removing file-less GPU"; a regular file is "not a valid
#   character or block device"). With task/none nothing is bound to them;
#   ctxdep runs with DEVICE=cpu. Jobs see CUDA_VISIBLE_DEVICES=0, 1, ...
# - SlurmdSpoolDir must exist ("Domain socket directory ...: No such file").
# - Harmless log noise on Debian 12: "mpi/pmix_v4: can not load PMIx library"
#   (even with MpiDefault=none), "xcpuinfo_hwloc_topo_load: failed", and the
#   missing *_state files of a fresh StateSaveLocation.
# - `sbatch --wait` polls with growing sleeps (several seconds late); we poll
#   squeue ourselves, then read each task's state from scontrol (no
#   accounting, so no sacct; MinJobAge keeps finished jobs visible).
# - Slurm variables from an enclosing job (running this under Slurm) would
#   shard the single-process build and leak into the test jobs: we unset
#   SLURM_*, JOB_COMPLETION_INDEX and CTXDEP_SHARD_COUNT first (which is
#   why this script's own knobs are SLURMTEST_*, not SLURM_TEST_*).
# - Batch jobs are started by a scheduling pass at most every
#   batch_sched_delay seconds (default 3): each wave of array tasks and the
#   dependent merge waited ~3 s. We set batch_sched_delay=0 (~1 s left).
# - Only 1 task per core runs at a time (SelectTypeParameters=CR_Core), so
#   on 2 cores the 4-task array is two waves and slower than one process on
#   the tiny model: the timing shows Slurm's overhead, not a speed-up.
set -euo pipefail

slurm_test_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  # slurm-wlm pulls slurmctld, slurmd, slurm-client and the basic plugins;
  # its recommends (dev packages, database plugins) are not needed.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

die() {
  echo "slurm-test: FAIL: $*" >&2
  exit 1
}

# show_logs prints the daemons' and jobs' logs (on failure).
show_logs() {
  local f
  for f in "$T"/log/* "$T"/submit/*.log; do
    [[ -f "$f" ]] || continue
    echo "----- $f (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $rc -ne 0 && -n "${T:-}" && -d "$T" ]]; then
    show_logs
  fi
  if [[ -n "${SLURM_CONF:-}" && -n "${ctld_pid:-}" ]]; then
    scancel --quiet --full "--user=$(id -un)" 2>/dev/null || true
  fi
  local p
  # slurmd before slurmctld before munged, each stopped and reaped.
  for p in "${slurmd_pid:-}" "${ctld_pid:-}" "${munged_pid:-}"; do
    [[ -n "$p" ]] || continue
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [[ -n "${T:-}" && -d "$T" ]]; then
    if [[ $rc -eq 0 && "${SLURMTEST_KEEP:-}" != 1 ]]; then
      rm -rf "$T"
    else
      echo "slurm-test: files kept in $T" >&2
    fi
  fi
  [[ $rc -eq 0 ]] || echo "slurm-test: FAILED (exit $rc)" >&2
  exit "$rc"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "$what: not after ${secs}s"
    fi
    sleep 0.2
  done
}

# tile_npy SRC DST K: DST holds the rows of the int64 .npy SRC repeated K
# times, so the timing measures more than start-up.
tile_npy() {
  local src=$1 dst=$2 k=$3
  local hlen rows cols
  hlen=$(od -An -tu2 -j8 -N2 "$src" | tr -d ' ')
  local header
  header=$(head -c $((10 + hlen)) "$src" | tail -c "$hlen")
  [[ "$header" == *"'<i8'"* ]] || die "$src: not an int64 .npy"
  rows=$(sed -E "s/.*'shape': \(([0-9]+), ([0-9]+)\).*/\1/" <<<"$header")
  cols=$(sed -E "s/.*'shape': \(([0-9]+), ([0-9]+)\).*/\2/" <<<"$header")
  local dict="{'descr': '<i8', 'fortran_order': False, 'shape': ($((rows * k)), $cols), }"
  # NPY 1.0: magic, version, u16 header length, header padded with spaces
  # and ended by \n so that the data starts at a multiple of 64.
  local total=$(((10 + ${#dict} + 1 + 63) / 64 * 64))
  local pad=$((total - 10 - ${#dict} - 1))
  local n=$((total - 10))
  {
    printf '\x93NUMPY\x01\x00'
    # shellcheck disable=SC2059 # the format is the two length bytes
    printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8)))"
    printf '%s%*s\n' "$dict" "$pad" ''
    local i
    for ((i = 0; i < k; i++)); do tail -c +$((10 + hlen + 1)) "$src"; done
  } >"$dst"
  echo $((rows * k * cols))
}

# wait_job JOBID SECONDS: waits until the job (every task of an array) has
# left the queue, then fails unless each ended COMPLETED with exit 0.
wait_job() {
  local jid=$1 secs=$2
  wait_for "$secs" "job $jid to finish" bash -c "[[ -z \$(squeue -h -j $jid -o %i 2>/dev/null) ]]"
  local info
  info=$(scontrol -o show job "$jid") || die "scontrol show job $jid"
  if grep -v -q 'JobState=COMPLETED' <<<"$info" || grep -v -q 'ExitCode=0:0' <<<"$info"; then
    grep -o 'JobId=[^ ]*\|ArrayTaskId=[^ ]*\|JobState=[^ ]*\|ExitCode=[^ ]*' <<<"$info" | paste - - - - >&2 || true
    return 1
  fi
}

# job_failed JOBID SECONDS: waits for the job and succeeds when it failed.
job_failed() {
  local jid=$1 secs=$2
  wait_for "$secs" "job $jid to finish" bash -c "[[ -z \$(squeue -h -j $jid -o %i 2>/dev/null) ]]"
  [[ "$(scontrol -o show job "$jid")" == *JobState=FAILED* ]]
}

now() { date +%s.%N; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%8.2f s  %10.0f tokens/s", t, n / t }'; }

start_cluster() {
  local node
  node=$(hostname -s)
  mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/log" "$T/submit"
  chmod 755 "$T" "$T/munge"

  # A private munge key and daemon.
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile="$T/munge/munge.key"
  else
    dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 600 "$T/munge/munge.key"
  munged -F --socket="$T/munge/sock" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/munged.pid" --seed-file="$T/munge/seed" \
    >"$T/log/munged.log" 2>&1 &
  munged_pid=$!
  wait_for 10 "munged to answer on $T/munge/sock" \
    bash -c "munge -n -S '$T/munge/sock' | unmunge -S '$T/munge/sock'"

  local hw ncpu gpus=() dev
  hw=$(slurmd -C 2>/dev/null | head -n 1 | grep '^NodeName=' | sed "s/^NodeName=[^ ]*//") || true
  [[ -n "$hw" ]] || hw=" CPUs=$(nproc)"
  ncpu=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$hw")
  for dev in /dev/null /dev/zero /dev/full /dev/urandom; do
    if ((${#gpus[@]} < ncpu)) && [[ -c "$dev" ]]; then gpus+=("$dev"); fi
  done
  # Two free ports (a listener answers on a busy one).
  local port=${SLURMTEST_PORT:-}
  if [[ -z "$port" ]]; then
    port=$((20000 + ($$ % 5000) * 2))
    while (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null || (: <"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; do
      port=$((port + 2))
    done
  fi
  cat >"$T/slurm.conf" <<EOF
ClusterName=ctxdeptest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName=$node$hw NodeAddr=127.0.0.1 Gres=gpu:${#gpus[@]} State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  echo "NodeName=$node Name=gpu File=$(IFS=,; echo "${gpus[*]}")" >"$T/gres.conf"
  local ver
  ver=$(slurmd -V | awk '{print $2}')
  if [[ "$(printf '%s\n' 23.02 "$ver" | sort -V | head -n 1)" == 23.02 ]]; then
    echo "CgroupPlugin=disabled" >"$T/cgroup.conf"
  fi
  export SLURM_CONF=$T/slurm.conf

  # In the foreground (-D) with no *LogFile, each logs to its stderr.
  slurmctld -D -f "$SLURM_CONF" >"$T/log/slurmctld.log" 2>&1 &
  ctld_pid=$!
  slurmd -D -N "$node" -f "$SLURM_CONF" >"$T/log/slurmd.log" 2>&1 &
  slurmd_pid=$!
  # Loud failure with the logs (cleanup prints them) when a daemon dies or
  # the node does not come up idle.
  local deadline=$((SECONDS + 30))
  until [[ "$(sinfo -h -n "$node" -o %t 2>/dev/null)" == idle ]]; do
    kill -0 "$ctld_pid" 2>/dev/null || die "slurmctld exited at start"
    kill -0 "$slurmd_pid" 2>/dev/null || die "slurmd exited at start"
    ((SECONDS < deadline)) || die "node $node not idle after 30s: $(sinfo -h -N -o '%N %t %E' 2>&1)"
    sleep 0.2
  done
  echo "slurm-test: Slurm $ver up: node $node,$hw, ${#gpus[@]} fake GPUs, port $port" >&2
}

main() {
  case "${1:-}" in
  install)
    slurm_test_install
    return 0
    ;;
  --install) slurm_test_install ;;
  "") ;;
  *)
    echo "usage: $0 [install|--install]" >&2
    exit 2
    ;;
  esac
  [[ $(id -u) == 0 ]] || die "needs root (slurmd runs as root here)"
  local tool
  for tool in munged munge unmunge slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$tool" >/dev/null || die "$tool not found: run $0 install (apt-get install slurm-wlm munge)"
  done

  cd "$(dirname "$0")/.."
  local repo=$PWD
  # See the pitfalls above: nothing from an enclosing job may leak in.
  local v
  for v in $(compgen -e); do
    case $v in SLURM_* | JOB_COMPLETION_INDEX | CTXDEP_SHARD_COUNT) unset "$v" ;; esac
  done

  T=$(mktemp -d "${TMPDIR:-/tmp}/ctxdep-slurm.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  mkdir -p "$T/bin"
  if [[ -n "${CTXDEP:-}" ]]; then
    CTXDEP=$(realpath "$CTXDEP")
  else
    go build -o "$T/bin/ctxdep" ./cmd/ctxdep
    CTXDEP=$T/bin/ctxdep
  fi
  go build -o "$T/bin/cachecmp" ./scripts/cachecmp
  # (Not `| grep -q`: with pipefail, grep's early exit fails the pipe.)
  [[ "$("$CTXDEP" cache build --help)" == *--shard-count* ]] ||
    die "$CTXDEP has no \`cache build --shard-count\` (issue 7's CLI): nothing to test"

  local model=$repo/testdata/tiny-gpt2 layer=1
  local tokens=$T/tokens.npy ntok
  ntok=$(tile_npy "$repo/testdata/tokens/tiny-int64.npy" "$tokens" "${SLURMTEST_REPEAT:-1024}")

  start_cluster

  # 1. One process, all cores.
  local t0 t1 single
  t0=$(now)
  "$CTXDEP" --model "$model" --layer "$layer" -q cache build --tokens "$tokens" --out "$T/single" >/dev/null
  t1=$(now)
  single=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

  # 2. The sbatch file as written, with settings by environment and the
  # node's limits on the command line (they override its #SBATCH lines),
  # and the merge as the dependent job its header shows.
  export CTXDEP TOKENS=$tokens OUT=$T/cache MODEL=$model LAYER=$layer DEVICE=cpu
  local sb=(sbatch --parsable --chdir="$T/submit" --cpus-per-task=1 --mem=200M --time=5)
  local jid mid
  t0=$(now)
  jid=$("${sb[@]}" --array=0-3 "$repo/deploy/slurm/cache.sbatch")
  mid=$("${sb[@]}" --dependency="afterok:$jid" --kill-on-invalid-dep=yes --job-name=ctxdep-merge \
    --output=ctxdep-merge-%j.log --wrap "$CTXDEP cache merge $OUT")
  wait_job "$jid" 60 || die "array job $jid failed"
  t1=$(now)
  local array span
  array=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  # From the lines "ctxdep-cache: task ... start|end SECONDS" of the logs.
  span=$(cat "$T"/submit/ctxdep-cache-"$jid"_*.log | awk '
    $1 == "ctxdep-cache:" && $(NF-1) == "start" && (lo == "" || $NF < lo) { lo = $NF }
    $1 == "ctxdep-cache:" && $(NF-1) == "end" && $NF > hi { hi = $NF }
    END { print hi - lo }')
  wait_job "$mid" 30 || die "merge job $mid failed"
  "$CTXDEP" -q cache verify "$OUT" || die "cache verify $OUT"
  "$T/bin/cachecmp" "$T/single" "$OUT" || die "sharded cache differs from the single-process build"

  # 3. Task 2 of 4 "failed": merge and verify must say so; a bare rerun of
  # index 2 is refused; a rerun with SHARD_COUNT completes the cache.
  export OUT=$T/cache2
  jid=$(SHARD_COUNT=4 "${sb[@]}" --array=0,1,3 "$repo/deploy/slurm/cache.sbatch")
  wait_job "$jid" 60 || die "array job $jid (tasks 0,1,3) failed"
  if "$CTXDEP" -q cache merge "$OUT" 2>"$T/log/merge-missing.err"; then
    die "cache merge accepted a cache without worker 2's rows"
  fi
  local rc=0
  "$CTXDEP" -q cache verify "$OUT" >"$T/log/verify-missing.out" 2>&1 || rc=$?
  [[ $rc == 1 ]] || die "cache verify without worker 2: exit $rc, want 1: $(cat "$T/log/verify-missing.out")"
  echo "slurm-test: as expected, without task 2: merge: $(head -c 300 "$T/log/merge-missing.err")" >&2
  echo "slurm-test: as expected, without task 2: verify (exit 1): $(head -c 300 "$T/log/verify-missing.out")" >&2
  jid=$("${sb[@]}" --array=2 "$repo/deploy/slurm/cache.sbatch")
  job_failed "$jid" 30 || die "cache.sbatch ran --array=2 without SHARD_COUNT"
  jid=$(SHARD_COUNT=4 "${sb[@]}" --array=2 "$repo/deploy/slurm/cache.sbatch")
  wait_job "$jid" 60 || die "rerun of task 2 ($jid) failed"
  "$CTXDEP" -q cache merge "$OUT" >/dev/null || die "cache merge after the rerun"
  "$CTXDEP" -q cache verify "$OUT" >/dev/null || die "cache verify after the rerun"
  "$T/bin/cachecmp" "$T/single" "$OUT" || die "rerun cache differs from the single-process build"

  echo "slurm-test: PASS. $ntok tokens, tiny fixture model (layer $layer), $(nproc) cores:"
  echo "  single process ($(nproc) threads)         $(rate "$ntok" "$single")"
  echo "  4-task array, submit to last task end $(rate "$ntok" "$array")"
  echo "  4-task array, first start to last end $(rate "$ntok" "$span")"
}

main "$@"
