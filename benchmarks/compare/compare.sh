#!/usr/bin/env bash
# Builds (if needed) and runs nabla_bench_ops, nabla_bench_gemm and nabla_bench_libtorch back
# to back, then prints one table: case, nabla, LibTorch, ratio. Usage:
#   benchmarks/compare/compare.sh [build-dir]        (default: build-bench in the repo root)
# Env: THREADS (default 2), REPS (default 3), FILTER (benchmark regex, default all).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-bench}"
threads="${THREADS:-2}"
reps="${REPS:-3}"
filter="${FILTER:-.}"

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_BENCHMARKS=ON \
    -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_EXAMPLES=OFF -DNABLA_WITH_CUDA=OFF >/dev/null
fi
targets=(nabla_bench_ops nabla_bench_gemm)
if cmake --build "$build" --target help 2>/dev/null | grep -q nabla_bench_libtorch; then
  targets+=(nabla_bench_libtorch)  # only defined when LibTorch was found
fi
cmake --build "$build" -j2 --target "${targets[@]}" >/dev/null

export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
out="$(mktemp -d)"
flags=(--benchmark_format=json --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true
       --benchmark_filter="$filter")
"$build/benchmarks/nabla_bench_ops" "${flags[@]}" >"$out/nabla.json"
"$build/benchmarks/nabla_bench_gemm" "${flags[@]}" --benchmark_filter='<float>' >"$out/gemm.json"
torch_json=""
if [[ -x "$build/benchmarks/nabla_bench_libtorch" ]]; then
  "$build/benchmarks/nabla_bench_libtorch" "${flags[@]}" >"$out/libtorch.json"
  torch_json="$out/libtorch.json"
else
  echo "LibTorch benchmark not built (LibTorch not found); showing nabla only" >&2
fi

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; threads=$threads"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "command: OMP_NUM_THREADS=$threads benchmarks/compare/compare.sh (medians of $reps repetitions)"
echo
python3 "$here/compare.py" "$out/nabla.json" "$out/gemm.json" "$torch_json"
rm -rf "$out"
