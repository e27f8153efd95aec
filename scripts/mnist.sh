#!/usr/bin/env bash
# The quick start: builds the MNIST example (with the CUDA backend when nvcc and a GPU are
# present), finds MNIST, and trains PyTorch's example CNN on it, printing the test accuracy.
#   bash scripts/mnist.sh                        # 3 epochs of the CNN, GPU if present, else CPU
#   bash scripts/mnist.sh --epochs 1 --limit 5000 --model mlp   # any flag of `mnist --help`
# MNIST is looked for in $NABLA_DATA/mnist, then ./data/mnist; failing both it is downloaded into
# ./data/mnist and checked against the published MD5 sums. Installs a compiler, CMake, OpenBLAS
# and zlib first when run as root on Debian/Ubuntu.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}/mnist
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# ---- tools --------------------------------------------------------------------------------------
missing=()
for p in cmake g++ make libopenblas-dev zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "mnist.sh: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- data ---------------------------------------------------------------------------------------
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A md5=(
  [train-images-idx3-ubyte.gz]=f68b3c2dcbeaaa9fbdd348bbdeb94873
  [train-labels-idx1-ubyte.gz]=d53e105ee54ea40749a09fcbcd1e9432
  [t10k-images-idx3-ubyte.gz]=9fb629c4189551a2d022fa330f9573f3
  [t10k-labels-idx1-ubyte.gz]=ec29112dd5afa0611ce80d1b7f02629c
)
has_mnist() {  # all four files, plain or .gz
  for f in "${files[@]}"; do [ -s "$1/$f" ] || [ -s "$1/$f.gz" ] || return 1; done
}
data=""
for d in ${NABLA_DATA:+"$NABLA_DATA/mnist"} "$PWD/data/mnist" "$root/data/mnist"; do
  if has_mnist "$d"; then data=$d; break; fi
done
if [ -z "$data" ]; then
  data="$root/data/mnist"
  mkdir -p "$data"
  echo "mnist.sh: MNIST not found in \$NABLA_DATA/mnist or ./data/mnist; downloading to $data"
  mirrors=(https://ossci-datasets.s3.amazonaws.com/mnist https://storage.googleapis.com/cvdf-datasets/mnist)
  for f in "${files[@]}"; do
    got=""
    for m in "${mirrors[@]}"; do
      if curl -fsSL --retry 2 --connect-timeout 10 -o "$data/$f.gz.part" "$m/$f.gz" 2>/dev/null ||
        wget -q -T 10 -O "$data/$f.gz.part" "$m/$f.gz" 2>/dev/null; then
        if [ "$(md5sum "$data/$f.gz.part" | cut -d' ' -f1)" = "${md5[$f.gz]}" ]; then
          mv "$data/$f.gz.part" "$data/$f.gz"
          got=1
          break
        fi
        echo "mnist.sh: $m/$f.gz has the wrong MD5 sum; trying the next mirror" >&2
      fi
    done
    rm -f "$data/$f.gz.part"
    if [ -z "$got" ]; then
      cat >&2 <<EOF
mnist.sh: could not download $f.gz (no network, or every mirror failed).
Get the four MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), e.g. from
https://ossci-datasets.s3.amazonaws.com/mnist/, put them in ./data/mnist (or in \$NABLA_DATA/mnist),
and run this script again.
EOF
      exit 1
    fi
  done
fi

# ---- build --------------------------------------------------------------------------------------
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=$PATH:/usr/local/cuda/bin
cuda=(-DNABLA_WITH_CUDA=OFF)
if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  cuda=(-DNABLA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_BENCHMARKS=OFF \
  -DNABLA_BUILD_EXAMPLES=ON -DNABLA_WITH_LIBTORCH=OFF "${cuda[@]}" ${NABLA_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" --target mnist >/dev/null

# ---- train --------------------------------------------------------------------------------------
cd "$build"  # the checkpoint and the metrics CSV land here
exec "$build/examples/mnist" --data "$data" "$@"
