#!/usr/bin/env bash
# What a user file parses in compiled-backend mode (the CMake targets): a file that includes
# <nabla/nabla.hpp> must not reach the CPU kernels or the x86 intrinsics headers (they are
# compiled once, in backend/cpu/cpu_backend.cpp). Prints the preprocessed line count.
#   user_parse.sh <c++ compiler> <nabla include dir>
set -euo pipefail
cxx=$1 inc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <nabla/nabla.hpp>\nint main() { return nabla::ones({2}).sum().item<float>() == 2.0f ? 0 : 1; }\n' > "$tmp/user.cpp"
"$cxx" -std=c++20 -DNABLA_CPU_BACKEND_COMPILED -I"$inc" -E "$tmp/user.cpp" -o "$tmp/user.i"
echo "preprocessed lines: $(wc -l < "$tmp/user.i")"
# any x86 intrinsics header (xmmintrin.h, immintrin.h, ...) and any file of the CPU backend,
# however it was reached (a relative include names it ".../ops/../backend/cpu/conv.hpp")
bad=$(grep -E '^# [0-9]+ "[^"]*(intrin\.h|backend/cpu/[a-z_]+\.hpp)"' "$tmp/user.i" |
      sed -E 's/^# [0-9]+ "([^"]*)".*/\1/' | sort -u || true)
if [ -n "$bad" ]; then
  echo "a user file in compiled-backend mode parses kernel or intrinsics headers:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "no CPU kernel or intrinsics header reached"
