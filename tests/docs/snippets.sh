#!/usr/bin/env bash
# Compiles every ```cpp snippet of docs/getting-started.md as a newcomer would (header-only:
# -std=c++20 -I include, -fopenmp, zlib), and runs the section-3 one ("a first tensor"), whose
# output must show the tensors it prints. A snippet that stops compiling fails this test.
#
#   bash tests/docs/snippets.sh <c++ compiler> <source root> <scratch dir>
set -euo pipefail
cxx=$1 root=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
python3 - "$root/docs/getting-started.md" "$work" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"```cpp\n(.*?)```", text, re.S)
if len(blocks) < 2:
    sys.exit(f"expected at least 2 C++ snippets in getting-started.md, found {len(blocks)}")
for i, b in enumerate(blocks):
    open(f"{sys.argv[2]}/snippet{i}.cpp", "w").write(b)
print(f"{len(blocks)} snippets")
PY
zlib=()
echo 'int main(){}' | "$cxx" -x c++ - -lz -o "$work/zcheck" 2>/dev/null && zlib=(-DNABLA_HAS_ZLIB -lz)
for f in "$work"/snippet*.cpp; do
  echo "compiling $(basename "$f")"
  "$cxx" -std=c++20 -O1 -fopenmp -I "$root/include" "$f" -o "${f%.cpp}" "${zlib[@]}" -lpthread
done
# section 3's program: a * b, a.sum(1) and x.grad() printed as tensors
out=$("$work/snippet0")
echo "$out"
[ "$(grep -c 'tensor(' <<<"$out")" -ge 3 ] || { echo "snippet0 printed fewer than 3 tensors" >&2; exit 1; }
