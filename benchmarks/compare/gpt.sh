#!/usr/bin/env bash
# GPT-2 training step (the `gpt train` default model), nabla vs LibTorch, interleaved in one process
# (nabla_gpt_libtorch); prints each round and the median ratio. Usage:
#   benchmarks/compare/gpt.sh [build-dir] [-- program flags]     (default build dir: build/release)
#   benchmarks/compare/gpt.sh build/release -- --block 256 --rounds 5
# Env: THREADS (default: all cores). LibTorch needs libopenblas-dev installed, or its matmuls fall
# back to reference BLAS and the ratio means nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/build/release"
if [ $# -gt 0 ] && [ "$1" != -- ]; then build=$1; shift; fi
[ "${1:-}" = -- ] && shift
threads=${THREADS:-$(nproc)}
dpkg-query -W -f='${Status}' libopenblas-dev 2>/dev/null | grep -q "install ok installed" ||
  echo "gpt.sh: warning: libopenblas-dev is not installed; LibTorch's figures are not meaningful" >&2
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_BENCHMARKS=ON -DNABLA_WITH_LIBTORCH=ON >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target nabla_gpt_libtorch >/dev/null
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; threads=$threads"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "command: THREADS=$threads benchmarks/compare/gpt.sh $* "
OMP_NUM_THREADS=$threads exec "$build/benchmarks/nabla_gpt_libtorch" --threads "$threads" "$@"
