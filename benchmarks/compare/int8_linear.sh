#!/usr/bin/env bash
# nabla's int8 GEMM (cpu::gemm_int8) vs LibTorch's quantized linear (dynamic and static, every
# quantized engine the LibTorch build has) and both float32 linears, on MNIST fc1 / GPT-2 MLP /
# square shapes, in one process (compare/int8_linear_libtorch.cpp). Prints one table per shape.
#   benchmarks/compare/int8_linear.sh [build-dir]      (default: build-bench)
# Env: THREADS (default 2), ROUNDS (interleaved rounds, default 7).
# The cores must be otherwise idle: with another busy process, every OpenMP barrier waits out a
# scheduler slice (calls of ~8 ms whatever their size). Each shape's title line says what share
# of the cores other processes took while it ran (NOISY above 5%): rerun those.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-bench}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-7}"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_BENCHMARKS=ON -DNABLA_BUILD_TESTS=OFF \
  -DNABLA_BUILD_EXAMPLES=OFF -DNABLA_WITH_CUDA=OFF -DNABLA_WITH_LIBTORCH=ON >/dev/null
targets="$(cmake --build "$build" --target help 2>/dev/null || true)"
if ! grep -q nabla_int8_linear_libtorch <<<"$targets"; then
  echo "int8_linear.sh: LibTorch not found (Debian: apt-get install libtorch-dev libopenblas-dev)" >&2
  exit 2
fi
cmake --build "$build" -j2 --target nabla_int8_linear_libtorch >/dev/null

export OMP_NUM_THREADS="$threads"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(getconf _NPROCESSORS_ONLN) cores; threads=$threads"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "command: THREADS=$threads ROUNDS=$rounds benchmarks/compare/int8_linear.sh"
"$build/benchmarks/nabla_int8_linear_libtorch" --threads "$threads" --rounds "$rounds" 2>/dev/null
