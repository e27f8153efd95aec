#!/usr/bin/env bash
# The Hugging Face cross-check of nabla::text::GPT2Tokenizer (the ctest entry tokenizer_hf):
# hf_reference.py trains a byte-level BPE with the `tokenizers` package on tiny Shakespeare and
# writes its vocab.json, merges.txt and the ids and pre-token splits of three texts; then the
# TokenizerHF cases of the test program compare nabla's against them. Exits 77 (ctest: skipped)
# with the reason when no Python has `tokenizers` or the corpus is not there.
#
#   tests/tokenizer/run.sh <nabla_tests> <work folder> [more python3 to try...]
#
# Pythons tried, first with `import tokenizers` wins: $NABLA_PYTHON, python3 on PATH, the rest
# of the arguments (ctest passes the venv scripts/test.sh and .ci/run make, build/python).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tests_bin=$1 work=$2
shift 2

# shellcheck source=../support/find_python.sh
source "$here/../support/find_python.sh"
python=$(find_python "tokenizers" "$@")
if [ -z "$python" ]; then
  echo "SKIPPED: no python3 with the tokenizers package (pip install tokenizers; .ci/run puts it in build/python)"
  exit 77
fi
corpus=${NABLA_DATA:-}/tinyshakespeare/input.txt
if [ -z "${NABLA_DATA:-}" ] || [ ! -f "$corpus" ]; then
  echo "SKIPPED: tiny Shakespeare not found (set NABLA_DATA to the folder that has tinyshakespeare/input.txt)"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work"
"$python" "$here/hf_reference.py" "$work" "$corpus" "$here/torture.txt"
NABLA_TOKENIZER_REF=$work exec "$tests_bin" --gtest_filter='TokenizerHF.*'
