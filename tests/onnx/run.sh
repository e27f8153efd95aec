#!/usr/bin/env bash
# ONNX export against onnx.checker and onnxruntime (the ctest entry onnx_runtime):
#  1. OnnxRuntime.* export the MNIST CNN, ResNet-18/50, GPT-2, a module of the other mapped ops
#     and int8 models (QDQ: the MNIST CNN and ResNet-18 static, an MLP dynamic) into the work folder, each with its inputs and nabla's outputs at two batch sizes;
#  2. check_onnx.py checks each file (onnx.checker full_check) and runs it in onnxruntime at both
#     batch sizes against nabla's outputs, with the tolerance the test wrote beside it.
# Exits 77 (skipped) when no Python has onnx, onnxruntime, safetensors and numpy.
#   tests/onnx/run.sh <nabla_tests> <work folder> [more python3 to try...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tests_bin=$1 work=$2
shift 2
# shellcheck source=../support/find_python.sh
source "$here/../support/find_python.sh"
python=$(find_python "onnx, onnxruntime, safetensors, numpy" "$@")
if [ -z "$python" ]; then
  echo "SKIPPED: no python3 with onnx, onnxruntime, safetensors and numpy (pip install onnx onnxruntime safetensors numpy; .ci/run puts them in build/python)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
NABLA_ONNX_DIR=$work "$tests_bin" --gtest_filter='OnnxRuntime.*'
n=0
for model in "$work"/*.onnx; do
  name=${model%.onnx}
  echo "== $(basename "$model")"
  # shellcheck disable=SC2046  # the .args file holds the checker's flags
  "$python" "$here/check_onnx.py" "$model" "$name.safetensors" $(cat "$name.args")
  n=$((n + 1))
done
[ "$n" -ge 10 ] || { echo "expected at least 10 exported models, found $n" >&2; exit 1; }
echo "onnx_runtime: $n models agree with nabla"
