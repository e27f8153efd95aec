#!/usr/bin/env bash
# GPT-2 Hugging Face folders between numpy and nabla (the ctest entry gpt2_hf_numpy):
#  1. hf_numpy_check.py make: a random GPT-2 written as transformers' save_pretrained writes it,
#     with the logits of a float64 numpy forward (transformers' formulas) on those weights;
#  2. GPT2Numpy.*: from_pretrained loads it, nabla's logits match numpy's (rel 1e-5), and its
#     save_pretrained folder reloads bit-exactly; it also writes that folder and its logits;
#  3. hf_numpy_check.py check: nabla's folder read as transformers reads it (format=pt, names,
#     shapes, no tied lm_head), logits recomputed in numpy.
# Exits 77 (skipped) when no Python has safetensors and numpy.
#   tests/gpt2/run.sh <nabla_tests> <work folder> [more python3 to try...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tests_bin=$1 work=$2
shift 2
# shellcheck source=../support/find_python.sh
source "$here/../support/find_python.sh"
python=$(find_python "safetensors, numpy" "$@")
if [ -z "$python" ]; then
  echo "SKIPPED: no python3 with safetensors and numpy (pip install safetensors numpy; .ci/run puts them in build/python)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
"$python" "$here/hf_numpy_check.py" make "$work/hf"
NABLA_GPT2_NUMPY_DIR=$work "$tests_bin" --gtest_filter='GPT2Numpy.*'
exec "$python" "$here/hf_numpy_check.py" check "$work/nabla"
