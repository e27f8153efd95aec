#!/usr/bin/env bash
# Runs fail_modes (its path is $1) on 3 ranks in each mode and checks that the surviving ranks
# raised DistributedError with the right words, within the timeout, and that nothing hung
# (each mpirun has a hard limit of 60 s).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$1
command -v mpirun >/dev/null || { echo "skipped: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
fail=0
check() {  # check <mode> <timeout s> <max seconds a rank may wait> <ranks that must report> <words...>
  local mode=$1 t=$2 max=$3 ranks=$4; shift 4
  local out
  out=$(NABLA_DIST_TIMEOUT=$t timeout 60 bash "$here/mpirun.sh" -np 3 "$bin" "$mode" 2>&1)
  local rc=$?
  echo "---- $mode (mpirun exit $rc)"; echo "$out" | grep -E "^rank [0-9]" || true
  [ $rc = 124 ] && { echo "FAIL $mode: mpirun hung past 60 s"; fail=1; return; }
  for r in $ranks; do
    local line
    line=$(echo "$out" | grep -E "^rank $r: DistributedError after" | head -1)
    [ -n "$line" ] || { echo "FAIL $mode: rank $r printed no DistributedError"; fail=1; continue; }
    local secs
    secs=$(echo "$line" | sed -E 's/.*after ([0-9.]+) s.*/\1/')
    awk -v s="$secs" -v m="$max" 'BEGIN { exit !(s <= m) }' || { echo "FAIL $mode: rank $r waited $secs s (> $max)"; fail=1; }
    for w in "$@"; do
      echo "$line" | grep -qF -- "$w" || { echo "FAIL $mode: rank $r's error lacks \"$w\""; fail=1; }
    done
  done
}
check throw 30 10 "0 2" "rank 1 failed" "rank 1 fails on purpose"
check hang 2 8 "0 2" "timed out after" "all_reduce" "NABLA_DIST_TIMEOUT"
check mismatch 30 10 "0 1 2" "rank 0 all_reduce of float32[4] (SUM)" "rank 1 all_reduce of float32[5] (SUM)"
check recv 30 10 "0 2" "distributed::recv" "rank 1 failed" "rank 1 fails on purpose"
check recv_hang 2 8 "0 2" "distributed::recv" "timed out after"
[ $fail = 0 ] && echo "failures.sh: every mode ended with the error named, in time"
exit $fail
