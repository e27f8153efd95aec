#!/usr/bin/env bash
# Builds and runs nabla's quick-start example (a small network trained on two spirals),
# installing a compiler, CMake and OpenBLAS first when run as root on a fresh Debian/Ubuntu.
# The MNIST training example replaces this as the main job when it lands.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}/example
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

missing=()
for p in cmake g++ make libopenblas-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_BENCHMARKS=OFF \
  -DNABLA_BUILD_EXAMPLES=ON -DNABLA_WITH_CUDA=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target nabla_quickstart >/dev/null
"$build/examples/nabla_quickstart"
