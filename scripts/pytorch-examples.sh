#!/usr/bin/env bash
# Builds and runs the four C++ programs of pytorch/examples (cpp/regression, cpp/mnist, cpp/dcgan,
# cpp/autograd) against an installed nabla, with the only edit the porting promise allows: the
# line `#include <torch/torch.h>` becomes `#include <nabla/nabla.hpp>` + `namespace torch = nabla;`.
# The programs are not part of this repository; point the script at a checkout of pytorch/examples.
#
#   scripts/pytorch-examples.sh EXAMPLES_CHECKOUT [NABLA_PREFIX]
#
#   EXAMPLES_CHECKOUT  a clone of https://github.com/pytorch/examples (its cpp/ folder is used)
#   NABLA_PREFIX       where nabla is installed (default: a fresh install into build/pyex-prefix)
#   ARGPARSE_INCLUDE   folder holding argparse/argparse.hpp (p-ranav/argparse, which cpp/dcgan's
#                      own CMake fetches); without it dcgan is built and run only when found in
#                      /usr/include or /usr/local/include, else skipped with the reason
#   NABLA_DATA         MNIST is read from $NABLA_DATA/mnist (the programs' "./data" falls back to it)
#   DCGAN_EPOCHS       epochs for dcgan (default 1; it saves checkpoints every 200 batches)
#
# Prints one line per program (built / ran / exit status / the program's last line) and exits
# non-zero if any program fails to build or run.
set -euo pipefail

examples=${1:?usage: scripts/pytorch-examples.sh EXAMPLES_CHECKOUT [NABLA_PREFIX]}
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${2:-}
work=$root/build/pyex
mkdir -p "$work"

if [[ -z "$prefix" ]]; then
  prefix=$root/build/pyex-prefix
  cmake -S "$root" -B "$work/nabla-build" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_TESTS=OFF \
    -DNABLA_BUILD_BENCHMARKS=OFF -DNABLA_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX="$prefix" >"$work/nabla-build.log"
  cmake --build "$work/nabla-build" -j"$(nproc)" >>"$work/nabla-build.log"
  cmake --install "$work/nabla-build" >>"$work/nabla-build.log"
fi

argparse_dir=${ARGPARSE_INCLUDE:-}
if [[ -z "$argparse_dir" ]]; then
  for d in /usr/include /usr/local/include; do
    [[ -f $d/argparse/argparse.hpp ]] && argparse_dir=$d
  done
fi

programs=(regression autograd mnist)
if [[ -n "$argparse_dir" ]]; then programs+=(dcgan); else echo "dcgan: skipped (no argparse/argparse.hpp; set ARGPARSE_INCLUDE)"; fi

src=$work/src
rm -rf "$src" && mkdir -p "$src"
{
  echo 'cmake_minimum_required(VERSION 3.18)'
  echo 'project(pytorch_examples_on_nabla CXX)'
  echo 'set(CMAKE_CXX_STANDARD 20)'
  echo 'find_package(nabla REQUIRED)'
  for p in "${programs[@]}"; do
    echo "add_executable($p $p.cpp)"
    echo "target_link_libraries($p PRIVATE nabla::nabla)"
  done
  [[ -n "$argparse_dir" ]] && echo "target_include_directories(dcgan PRIVATE $argparse_dir)"
} >"$src/CMakeLists.txt"

for p in "${programs[@]}"; do
  in=$examples/cpp/$p/$p.cpp
  [[ -f $in ]] || { echo "$p: $in not found"; exit 2; }
  grep -q '^#include <torch/torch.h>' "$in" || { echo "$p: no '#include <torch/torch.h>' line to swap"; exit 2; }
  sed 's|^#include <torch/torch.h>|#include <nabla/nabla.hpp>\nnamespace torch = nabla;|' "$in" >"$src/$p.cpp"
done

status=0
cmake -S "$src" -B "$work/bin" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log"
for p in "${programs[@]}"; do
  if ! cmake --build "$work/bin" --target "$p" >"$work/$p.build.log" 2>&1; then
    echo "$p: BUILD FAILED ($(grep -c 'error' "$work/$p.build.log") error lines; $work/$p.build.log)"
    status=1
    continue
  fi
  run=$work/run-$p
  rm -rf "$run" && mkdir -p "$run"
  args=()
  [[ $p == dcgan ]] && args=(--epochs "${DCGAN_EPOCHS:-1}")
  start=$(date +%s)
  set +e
  (cd "$run" && stdbuf -oL "$work/bin/$p" "${args[@]}") >"$work/$p.out" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  last=$(tr '\r' '\n' <"$work/$p.out" | grep -v '^$' | tail -1)
  echo "$p: built, ran ${secs} s, exit $rc; last line: $last"
  [[ $rc -eq 0 ]] || status=1
done
exit $status
