#!/usr/bin/env bash
# MNIST training epoch, nabla (examples/mnist) vs LibTorch (compare/mnist_libtorch.cpp), same CNN,
# batch 64, Adam lr 1e-3, data in memory, on the CPU, alternating runs in one session. Prints
# the seconds per training epoch (evaluation excluded) of each and the ratio nabla / LibTorch.
#   benchmarks/compare/mnist.sh [build-dir]      (default: build-bench)
# Env: NABLA_DATA (required: MNIST in $NABLA_DATA/mnist), THREADS (default: all cores), EPOCHS (default 1),
#      ROUNDS (alternating nabla/LibTorch rounds, default 2), LIMIT (training images, default all),
#      AMP (none or bf16: both run under CPU autocast to bfloat16; default none).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-bench}"
threads="${THREADS:-$(nproc)}"
epochs="${EPOCHS:-1}"
rounds="${ROUNDS:-2}"
if [ -z "${NABLA_DATA:-}" ] || [ ! -d "$NABLA_DATA/mnist" ]; then
  echo "mnist.sh: set NABLA_DATA to the folder holding mnist/ (the four MNIST files)" >&2
  exit 2
fi
data="$NABLA_DATA/mnist"
limit=()
[ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
amp="${AMP:-none}"
case "$amp" in none|bf16) ;; *) echo "mnist.sh: AMP must be none or bf16" >&2; exit 2 ;; esac

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_EXAMPLES=ON -DNABLA_BUILD_TESTS=OFF \
  -DNABLA_WITH_CUDA=OFF -DNABLA_WITH_LIBTORCH=ON >/dev/null
cmake --build "$build" -j2 --target mnist nabla_mnist_libtorch >/dev/null

export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; threads=$threads"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "command: THREADS=$threads EPOCHS=$epochs ROUNDS=$rounds AMP=$amp benchmarks/compare/mnist.sh"
for r in $(seq 1 "$rounds"); do
  (cd "$work" && "$build/examples/mnist" --data "$data" --epochs "$epochs" --threads "$threads" --no-progress \
    --checkpoint "$work/ck.safetensors" --csv "$work/m.csv" --amp "$amp" "${limit[@]}") | grep '^epoch [0-9]*:' | sed 's/^/nabla    /' | tee -a "$work/nabla.txt"
  "$build/benchmarks/nabla_mnist_libtorch" --data "$data" --epochs "$epochs" --threads "$threads" --amp "$amp" "${limit[@]}" |
    grep '^epoch [0-9]*:' | sed 's/^/libtorch /' | tee -a "$work/torch.txt"
done
python3 - "$work/nabla.txt" "$work/torch.txt" <<'EOF'
import re, statistics, sys
def read(path):
    secs, accs = [], []
    for line in open(path):
        secs.append(float(re.search(r"([0-9.]+) s,", line).group(1)))
        accs.append(float(re.search(r"test accuracy ([0-9.]+)%", line).group(1)))
    return secs, accs
ns, na = read(sys.argv[1]); ts, ta = read(sys.argv[2])
n, t = statistics.median(ns), statistics.median(ts)
print(f"\nseconds per training epoch (median of {len(ns)}): nabla {n:.1f} s, LibTorch {t:.1f} s, ratio {n / t:.2f}")
print(f"test accuracy after the last epoch of each run: nabla {na[-1]:.2f}%, LibTorch {ta[-1]:.2f}%")
EOF
