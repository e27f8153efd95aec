#!/usr/bin/env bash
# Builds and runs nabla's quick-start example (a small network trained on two spirals).
# The MNIST training example replaces this as the main job when it lands.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}/release
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target nabla_quickstart >/dev/null
"$build/examples/nabla_quickstart"
