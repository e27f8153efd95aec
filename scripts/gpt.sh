#!/usr/bin/env bash
# The GPT-2 example: builds `gpt` (with the CUDA backend when nvcc and a GPU are present) and, with
# no arguments, trains a small character-level GPT-2 on tiny Shakespeare and prints a sample.
#   bash scripts/gpt.sh                                   # the demo: gpt train (4 layers, 128 wide)
#   bash scripts/gpt.sh train --max-steps 5000 --n-layer 6 --n-head 6 --n-embd 384 --block-size 256
#   bash scripts/gpt.sh sample --from gpt_run --prompt "ROMEO:" --max-new-tokens 300
#   bash scripts/gpt.sh finetune --from <Hugging Face GPT-2 folder> --data my.txt
# tiny Shakespeare is looked for in $NABLA_DATA/tinyshakespeare/input.txt, then
# ./data/tinyshakespeare/input.txt. Installs a compiler, CMake, OpenBLAS and zlib first when run as
# root on Debian/Ubuntu. The run folder (gpt_run by default) lands in the current directory.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}/gpt
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

missing=()
for p in cmake g++ make libopenblas-dev zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "gpt.sh: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(train)
if [ "${args[0]}" = train ] || [ "${args[0]}" = finetune ]; then
  has_data=0
  for a in "${args[@]}"; do [ "$a" = --data ] && has_data=1; done
  if [ $has_data = 0 ]; then
    text=""
    for f in ${NABLA_DATA:+"$NABLA_DATA/tinyshakespeare/input.txt"} "$PWD/data/tinyshakespeare/input.txt"; do
      if [ -s "$f" ]; then text=$f; break; fi
    done
    if [ -z "$text" ]; then
      cat >&2 <<'MSG'
gpt.sh: tiny Shakespeare not found in $NABLA_DATA/tinyshakespeare/input.txt or ./data/tinyshakespeare/input.txt.
Get it (1.1 MB) from https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
into ./data/tinyshakespeare/, point NABLA_DATA at a folder with tinyshakespeare/input.txt inside, or pass
--data FILE with any text.
MSG
      exit 1
    fi
    args+=(--data "$text")
  fi
fi

[ -x /usr/local/cuda/bin/nvcc ] && export PATH=$PATH:/usr/local/cuda/bin
cuda=(-DNABLA_WITH_CUDA=OFF)
if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  cuda=(-DNABLA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_TESTS=OFF -DNABLA_BUILD_BENCHMARKS=OFF \
  -DNABLA_BUILD_EXAMPLES=ON -DNABLA_WITH_LIBTORCH=OFF "${cuda[@]}" ${NABLA_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" --target gpt >/dev/null
exec "$build/examples/gpt" "${args[@]}"
