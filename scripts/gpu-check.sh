#!/usr/bin/env bash
# Everything that needs a GPU, in one command (for a machine with an NVIDIA GPU, nvcc and
# PyTorch): build with the CUDA backend for this card, run the whole test suite (CUDA parity
# column included), run compute-sanitizer memcheck and racecheck over the CUDA tests, then the
# GPU benchmarks beside PyTorch. Logs and the comparison table go to ${OUT:-build/gpu-check}.
#
#   NABLA_GTEST_ROOT=/path/to/googletest  (source tree, when the machine has no GoogleTest)
#   CUDNN_ROOT=/path/to/cudnn              (e.g. .../site-packages/nvidia/cudnn)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/build/gpu-check}
build=${NABLA_BUILD_DIR:-$root/build}/gpu
mkdir -p "$out"
export PATH=$PATH:/usr/local/cuda/bin OMP_WAIT_POLICY=passive
status=0

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -2
} | tee "$out/machine.txt"

extra=()
[ -n "${NABLA_GTEST_ROOT:-}" ] && extra+=(-DNABLA_GTEST_ROOT="$NABLA_GTEST_ROOT")
[ -n "${NABLA_BENCHMARK_ROOT:-}" ] && extra+=(-DNABLA_BENCHMARK_ROOT="$NABLA_BENCHMARK_ROOT")
[ -n "${CUDNN_ROOT:-}" ] && extra+=(-DCUDNN_ROOT="$CUDNN_ROOT")
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native \
  -DNABLA_WITH_LIBTORCH=OFF "${extra[@]}" 2>&1 | tail -5 | tee "$out/configure.log"
cmake --build "$build" -j "$(nproc)" 2>&1 | tail -20 | tee "$out/build.log" || exit 1

echo "== tests" | tee "$out/tests.log"
"$build/tests/nabla_tests" 2>&1 | tail -60 | tee -a "$out/tests.log" || status=1

for tool in memcheck racecheck; do
  echo "== compute-sanitizer --tool $tool" | tee "$out/sanitizer-$tool.log"
  compute-sanitizer --tool "$tool" --error-exitcode 1 "$build/tests/nabla_tests" \
    --gtest_filter='Cuda*:*CudaMatchesCpu*' 2>&1 | tail -40 | tee -a "$out/sanitizer-$tool.log" || status=1
done

echo "== benchmarks"
"$build/benchmarks/gpu/nabla_bench_gpu" > "$out/bench_nabla.jsonl" || status=1
python3 "$root/benchmarks/gpu/bench_torch.py" > "$out/bench_torch.jsonl" || status=1
python3 "$root/benchmarks/gpu/compare.py" "$out/bench_nabla.jsonl" "$out/bench_torch.jsonl" | tee "$out/compare.md"
exit $status
