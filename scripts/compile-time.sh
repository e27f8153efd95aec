#!/usr/bin/env bash
# What a user file costs to compile: benchmarks/compile/user.cpp (an 18-line training step that
# includes <nabla/nabla.hpp>) against one or more nabla include trees, in compiled-backend mode
# (-DNABLA_CPU_BACKEND_COMPILED, what the CMake targets use) and header-only. Prints per tree and
# mode: preprocessed lines, how many of them come from x86 intrinsics headers and from CPU
# kernels (backend/cpu/), and the best of N wall times of `g++ -fsyntax-only` (parsing and
# template instantiation) and of `g++ -O2 -c` (all of it, code generation included). The trees' runs are
# interleaved so a busy machine slows them alike; compare the ratios.
#
#   bash scripts/compile-time.sh [-n N] <include dir> [<include dir> ...]
#   e.g. git worktree add /tmp/before c77f9ed && bash scripts/compile-time.sh /tmp/before/include include
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
reps=3
if [ "${1:-}" = -n ]; then reps=$2; shift 2; fi
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
cxx=${CXX:-g++}
src=$root/benchmarks/compile/user.cpp
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-std=c++20 -O2 -fopenmp)
modes=(compiled header-only)
mode_flags() { [ "$1" = compiled ] && echo -DNABLA_CPU_BACKEND_COMPILED || true; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); $($cxx --version | head -1)"
declare -A best
for inc in "$@"; do
  for mode in "${modes[@]}"; do
    # shellcheck disable=SC2046
    $cxx "${flags[@]}" $(mode_flags $mode) -I"$inc" -E "$src" -o "$tmp/u.i"
    lines=$(wc -l < "$tmp/u.i")
    # lines by origin: the preprocessor's line markers say which file each stretch comes from
    awk -v total="$lines" '
      /^# [0-9]+ "/ { f = $3; next }
      { if (f ~ /intrin\.h"$/) intr++; else if (f ~ /backend\/cpu\//) kern++ }
      END { printf "%s\t%d\t%d\t%d\n", FILENAME, total, intr, kern }' "$tmp/u.i" > "$tmp/lines.$mode.$(echo "$inc" | md5sum | cut -c1-8)"
  done
done
for ((r = 0; r < reps; ++r)); do
  for mode in "${modes[@]}"; do
    for inc in "$@"; do
      for step in parse o2; do
        start=$(date +%s.%N)
        # shellcheck disable=SC2046
        if [ $step = parse ]; then $cxx "${flags[@]}" $(mode_flags $mode) -I"$inc" -fsyntax-only "$src"
        else $cxx "${flags[@]}" $(mode_flags $mode) -I"$inc" -c "$src" -o "$tmp/u.o"; fi
        t=$(echo "$(date +%s.%N) - $start" | bc)
        k="$inc|$mode|$step"
        if [ -z "${best[$k]:-}" ] || [ "$(echo "$t < ${best[$k]}" | bc)" = 1 ]; then best[$k]=$t; fi
      done
    done
  done
done
printf '%-40s %-12s %10s %11s %12s %9s %8s\n' tree mode "pp lines" "intrinsics" "cpu kernels" "parse s" "-O2 s"
for inc in "$@"; do
  for mode in "${modes[@]}"; do
    IFS=$'\t' read -r _ lines intr kern < "$tmp/lines.$mode.$(echo "$inc" | md5sum | cut -c1-8)"
    printf '%-40s %-12s %10d %11d %12d %9.2f %8.2f\n' "$inc" "$mode" "$lines" "$intr" "$kern" \
      "${best[$inc|$mode|parse]}" "${best[$inc|$mode|o2]}"
  done
done
echo "(best of $reps runs of $cxx ${flags[*]} [-fsyntax-only | -c] benchmarks/compile/user.cpp)"
