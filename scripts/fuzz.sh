#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang under ASan + UBSan (nabla's CPU backend
# instrumented too) and runs each for a fixed time from the committed seed corpus. Exits 1 on any
# finding (a crash, a sanitizer report, a failed invariant, an exception other than nabla's own)
# and leaves the reproducer in $build/fuzz/artifacts. CI runs it with about 30 s per target;
# the long campaign of docs/testing.md is the same script with a longer time.
#
#   bash scripts/fuzz.sh                   # 60 s per target, every target
#   bash scripts/fuzz.sh 600 safetensors   # 10 minutes on one target
#   bash scripts/fuzz.sh 0 json            # build only
#   bash scripts/fuzz.sh ci                # CI: a fixed number of runs from a fixed seed per
#                                          # target (about 30 s each on 2 cores), so a clean
#                                          # run here is a clean run in CI: no flaky findings
#   NABLA_FUZZ_JOBS=1 ... (default: targets run side by side, one per core)
# Replay a reproducer: build/fuzz/tests/fuzz/fuzz_<target> <file>
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}/fuzz
seconds=${1:-60}
shift || true
ci=0
if [ "$seconds" = ci ]; then ci=1; seconds=60; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors json idx cifar checkpoint)
jobs=${NABLA_FUZZ_JOBS:-$(nproc)}
cxx=${NABLA_FUZZ_CXX:-$(command -v clang++ || command -v clang++-14 || true)}
cc=${NABLA_FUZZ_CC:-$(command -v clang || command -v clang-14 || true)}
[ -n "$cxx" ] || { echo "fuzz.sh: needs clang++ (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

nocuda_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -i cuda | paste -sd: -)
PATH="$nocuda_path" cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DNABLA_BUILD_FUZZERS=ON \
  -DNABLA_SANITIZE=ON -DNABLA_NATIVE=OFF -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_BENCHMARKS=OFF -DNABLA_BUILD_EXAMPLES=OFF \
  -DNABLA_WITH_LIBTORCH=OFF -DNABLA_WITH_CUDA=OFF -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") 2>&1 | tail -3
[ "$seconds" = 0 ] && exit 0

export OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$build/artifacts" "$build/logs"
run_one() {  # run_one <target>: fuzz from a copy of the seed corpus (the committed one is not touched)
  local t=$1 work=$build/work/$1
  rm -rf "$work" && mkdir -p "$work" && cp "$root/tests/fuzz/corpus/$t/"* "$work/"
  local budget=(-max_total_time="$seconds")
  [ "$ci" = 1 ] && budget=(-seed=1 -runs="$(runs_of "$t")")
  "$build/tests/fuzz/fuzz_$t" "${budget[@]}" -print_final_stats=1 -rss_limit_mb=2560 -timeout=20 \
    -max_len=65536 -artifact_prefix="$build/artifacts/$t-" "$work" >"$build/logs/$t.log" 2>&1
}
runs_of() { case $1 in safetensors) echo 600000;; json) echo 750000;; idx) echo 150000;; cifar) echo 150000;; *) echo 40000;; esac; }
export -f run_one runs_of
export build root seconds ci
status=0
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}' || status=1
printf '\n%-12s %12s %10s %8s  %s\n' target execs exec/s seconds result
for t in "${targets[@]}"; do
  log=$build/logs/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if grep -q -E '^==[0-9]+==ERROR|runtime error|deadly signal|uncaught exception|invariant failed|Test unit written' "$log"; then
    result="FINDING (see $log, artifacts in $build/artifacts)"
    status=1
  else
    result="0 findings"
  fi
  printf '%-12s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$seconds" "$result"
done
[ $status = 0 ] || { for t in "${targets[@]}"; do grep -B2 -A25 -m1 -E 'ERROR|runtime error|deadly|uncaught|invariant failed' "$build/logs/$t.log" || true; done; }
exit $status
