#!/usr/bin/env bash
# nabla::cuda's cuDNN lookup, at configure time (needs nvcc and a cuDNN 9 install to copy from):
#  1. a folder holding only libcudnn.so.9 (no unversioned link, as PyTorch's pip wheel ships it),
#     given as CUDNN_ROOT, is found and used;
#  2. NABLA_WITH_CUDNN=ON without a usable cuDNN stops the configure step with an error;
#  3. AUTO without a usable cuDNN goes on and says it builds without.
# Exit 77 (skipped) when the machine has no nvcc or no cuDNN to copy.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH=$PATH:/usr/local/cuda/bin
command -v nvcc >/dev/null || { echo "skipped: no nvcc"; exit 77; }
lib=$(ls /usr/local/cuda/lib64/libcudnn.so.9 /usr/lib/x86_64-linux-gnu/libcudnn.so.9 2>/dev/null | head -1)
hdr=$(ls /usr/local/cuda/include/cudnn_version.h /usr/include/cudnn_version.h /usr/include/x86_64-linux-gnu/cudnn_version.h 2>/dev/null | head -1)
[ -n "$lib" ] && [ -n "$hdr" ] || { echo "skipped: no cuDNN 9 to copy"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wheel/lib" "$tmp/wheel/include"
ln -s "$lib" "$tmp/wheel/lib/libcudnn.so.9"
ln -s "$(dirname "$hdr")"/cudnn*.h "$tmp/wheel/include/"
configure() {
  cmake -S "$root" -B "$tmp/build-$1" -DNABLA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DNABLA_BUILD_TESTS=OFF \
    -DNABLA_BUILD_BENCHMARKS=OFF -DNABLA_BUILD_EXAMPLES=OFF -DNABLA_WITH_LIBTORCH=OFF "${@:2}" >"$tmp/$1.log" 2>&1
}
fail=0
configure versioned -DNABLA_WITH_CUDNN=ON -DCUDNN_ROOT="$tmp/wheel" &&
  grep -q "with cuDNN 9 ($tmp/wheel/lib/libcudnn.so.9)" "$tmp/versioned.log" ||
  { echo "FAIL: libcudnn.so.9 alone in CUDNN_ROOT was not used"; grep nabla: "$tmp/versioned.log"; fail=1; }
if configure required -DNABLA_WITH_CUDNN=ON -DNABLA_CUDNN_INCLUDE_DIR="$tmp/nowhere"; then
  echo "FAIL: NABLA_WITH_CUDNN=ON configured without a usable cuDNN"; fail=1
else
  grep -q "NABLA_WITH_CUDNN=ON but cuDNN >= 8 was not usable" "$tmp/required.log" ||
    { echo "FAIL: the error does not say why"; tail -5 "$tmp/required.log"; fail=1; }
fi
configure auto -DNABLA_CUDNN_INCLUDE_DIR="$tmp/nowhere" && grep -q "without cuDNN" "$tmp/auto.log" ||
  { echo "FAIL: AUTO without cuDNN did not go on saying so"; tail -5 "$tmp/auto.log"; fail=1; }
[ $fail = 0 ] && echo "cuDNN lookup: versioned name found, ON required, AUTO optional"
exit $fail
