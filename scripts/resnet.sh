#!/usr/bin/env bash
# The ResNet example: builds `resnet` (with the CUDA backend when nvcc and a GPU are present),
# finds CIFAR-10, and trains ResNet-18 (CIFAR stem) on it, printing the test accuracy per epoch.
#   bash scripts/resnet.sh                               # 15 epochs, GPU if present, else CPU
#   bash scripts/resnet.sh --epochs 2 --limit 2000       # any flag of `resnet --help`
#   bash scripts/resnet.sh --synthetic --arch resnet50   # train-step img/s on 224x224 random data
# CIFAR-10 (the binary version) is looked for in $NABLA_DATA/cifar10, then ./data/cifar10; failing
# both the script says how to get it. Installs a compiler, CMake, OpenBLAS and zlib first when run
# as root on Debian/Ubuntu.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}/resnet
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# ---- tools --------------------------------------------------------------------------------------
missing=()
for p in cmake g++ make libopenblas-dev zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "resnet.sh: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- data (not needed for --synthetic) ----------------------------------------------------------
has_cifar() {  # a test batch and at least one training batch, plain or .gz, here or in cifar-10-batches-bin
  for d in "$1" "$1/cifar-10-batches-bin"; do
    ls "$d"/test_batch* >/dev/null 2>&1 && ls "$d"/data_batch_* >/dev/null 2>&1 && return 0
  done
  return 1
}
args=("$@")
synthetic=0
for a in "$@"; do [ "$a" = --synthetic ] && synthetic=1; done
data=""
if [ $synthetic = 0 ]; then
  for d in ${NABLA_DATA:+"$NABLA_DATA/cifar10"} "$PWD/data/cifar10" "$root/data/cifar10"; do
    if has_cifar "$d"; then data=$d; break; fi
  done
  if [ -z "$data" ]; then
    cat >&2 <<EOF
resnet.sh: CIFAR-10 not found in \$NABLA_DATA/cifar10 or ./data/cifar10.
Get the binary version (cifar-10-binary.tar.gz, 162 MB) from https://www.cs.toronto.edu/~kriz/cifar.html,
unpack it into ./data/cifar10 (it makes cifar-10-batches-bin/ with data_batch_1.bin ... data_batch_5.bin
and test_batch.bin), or point NABLA_DATA at a folder with cifar10/ inside, and run this script again.
EOF
    exit 1
  fi
  args=(--data "$data" "${args[@]}")
fi

# ---- build --------------------------------------------------------------------------------------
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=$PATH:/usr/local/cuda/bin
cuda=(-DNABLA_WITH_CUDA=OFF)
if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  cuda=(-DNABLA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_BENCHMARKS=OFF \
  -DNABLA_BUILD_EXAMPLES=ON -DNABLA_WITH_LIBTORCH=OFF "${cuda[@]}" ${NABLA_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" --target resnet >/dev/null

# ---- train --------------------------------------------------------------------------------------
cd "$build"  # the checkpoint and the metrics CSV land here
exec "$build/examples/resnet" "${args[@]}"
