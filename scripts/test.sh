#!/usr/bin/env bash
# The test command: installs what is missing (apt-get, when run as root), builds nabla's tests
# in Release and again with AddressSanitizer + UndefinedBehaviorSanitizer, runs both with
# ctest, then installs nabla and builds the consumer project against the installed package
# (and through add_subdirectory and FetchContent). The sanitizer build is also the no-CUDA
# configuration: CUDA off and the toolkit's headers out of reach, as on a machine without it,
# so a header that needs the toolkit unguarded fails here too. The build must be warning-free
# (NABLA_ALLOW_WARNINGS=1 lets warnings through), and the end says how many cases were skipped
# and why.
#
#   bash scripts/test.sh            # everything
#   NABLA_SKIP_SANITIZE=1 bash scripts/test.sh   # Release only (faster)
#   NABLA_BUILD_DIR=/tmp/nb bash scripts/test.sh  # build somewhere else (default: build/)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NABLA_BUILD_DIR:-$root/build}
jobs=${NABLA_JOBS:-$(nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # shared machines: do not spin idle threads

step() { printf '\n==== %s ====\n' "$*"; }

# ---- dependencies -------------------------------------------------------------------------------
packages=(cmake g++ make libgtest-dev libbenchmark-dev libopenblas-dev zlib1g-dev python3 python3-venv openmpi-bin libopenmpi-dev
          clang libclang-rt-14-dev libomp-dev)  # clang: the sanitizer build and the fuzzers
[ "${NABLA_WITH_LIBTORCH:-1}" = 1 ] && packages+=(libtorch-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "nabla: missing packages (${missing[*]}); install them or run as root" >&2
  fi
fi

# Python's safetensors lets tests/test_io.cpp exchange files with the reference implementation.
# Debian 12 has no pip and refuses to pip-install into the system (PEP 668), so the packages go
# into a virtual environment in the build folder, first on PATH for the tests (those two tests
# skip, saying why, when PyPI cannot be reached).
if command -v python3 >/dev/null && ! python3 -c 'import safetensors, numpy' 2>/dev/null; then
  venv="$build/python"
  if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import safetensors, numpy' 2>/dev/null; then
    step "Python venv with safetensors and numpy ($venv)"
    mkdir -p "$build"
    { python3 -m venv "$venv" && "$venv/bin/python3" -m pip install -q safetensors numpy; } >"$build/python-venv.log" 2>&1 ||
      echo "nabla: could not make a venv with safetensors and numpy (see $build/python-venv.log)" >&2
  fi
  "$venv/bin/python3" -c 'import safetensors, numpy' 2>/dev/null && export PATH="$venv/bin:$PATH"
fi

# A build's output goes to a log as well; a warning fails the run (nabla builds warning-free).
built() {  # built <log> <cmake --build args...>
  local log=$1; shift
  cmake --build "$@" 2>&1 | tee "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || return 1
  if [ "${NABLA_ALLOW_WARNINGS:-0}" != 1 ] && grep -n -i -E 'warning[: ]' "$log" | grep -v -E '^[0-9]+:\[ *[0-9]+%\]' >"$log.warnings"; then
    echo "nabla: the build printed warnings (NABLA_ALLOW_WARNINGS=1 to go on):" >&2
    head -40 "$log.warnings" >&2
    return 1
  fi
}
reports=()  # GoogleTest XML folders, for the skip report at the end

# ---- Release build and tests -------------------------------------------------------------------
step "Release build"
# CUDA: built when nvcc exists. Without a GPU one architecture is enough to prove it compiles
# and links (NABLA_CUDA_ARCHS overrides; on a GPU machine use "native").
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=$PATH:/usr/local/cuda/bin
# NABLA_HEADER_CHECK=cuda: here only the headers that need the toolkit compile alone; the
# sanitizer build below checks every other one (with clang, CUDA out of reach).
header_check=all
[ "${NABLA_SKIP_SANITIZE:-0}" != 1 ] && header_check=cuda
cmake -S "$root" -B "$build/release" -DCMAKE_BUILD_TYPE=Release -DNABLA_BUILD_BENCHMARKS=ON \
  -DNABLA_BUILD_EXAMPLES=ON -DCMAKE_CUDA_ARCHITECTURES="${NABLA_CUDA_ARCHS:-80}" -DNABLA_HEADER_CHECK=$header_check \
  ${NABLA_CMAKE_ARGS:-}
built "$build/release-build.log" "$build/release" -j "$jobs"
step "Release tests"
rm -rf "$build/release/test-reports"
ctest --test-dir "$build/release" --output-on-failure -j "$jobs"
reports+=("$build/release/test-reports:Release")

# ---- the GPU check's dry run ----------------------------------------------------------------------
# scripts/gpu-check.sh is what a lent GPU machine runs; here (no GPU) it walks the same steps with
# the CUDA parts reporting "no GPU", and must write every line of its summary.
if [ -x "$build/release/tests/nabla_tests" ]; then
  step "GPU check, dry run (scripts/gpu-check.sh --dry-run)"
  OUT="$build/gpu-check-dry" bash "$root/scripts/gpu-check.sh" --dry-run --bin-dir "$build/release"
  for key in device driver cuda commit tests distributed memcheck racecheck "mnist epoch"; do
    grep -q "^$key: " "$build/gpu-check-dry/summary.md" || { echo "gpu-check summary lacks '$key:'" >&2; exit 1; }
  done
  grep -qE "^resnet[ :]" "$build/gpu-check-dry/summary.md" || { echo "gpu-check summary lacks a resnet line" >&2; exit 1; }
  tar -tzf "$build/gpu-check-dry/gpu-check-logs.tar.gz" | grep -c logs/tests.0.xml >/dev/null  # -c: reads it all (-q would SIGPIPE tar)
fi

# ---- the quick start, on a slice of MNIST -------------------------------------------------------
# The README's run command exactly as a user runs it (its own build folder), on 2000 images so
# it stays fast; it must finish and print the test accuracy. (The ctest mnist_example above
# also checks the accuracy floor, resume and error lines.)
step "quick start: scripts/mnist.sh on a slice"
if [ -d "${NABLA_DATA:-/nonexistent}/mnist" ] || [ -d "$root/data/mnist" ]; then
  NABLA_BUILD_DIR="$build" bash "$root/scripts/mnist.sh" --epochs 1 --limit 2000 --test-limit 2000 --no-progress |
    tee "$build/mnist-quickstart.log"
  grep -q "^test accuracy" "$build/mnist-quickstart.log"
else
  echo "skipped: no MNIST in \$NABLA_DATA/mnist or ./data/mnist (set NABLA_DATA; the script can also download it)"
fi

# ---- sanitizers, CUDA off and out of reach, built with clang ----------------------------------
# The second compiler: the Release build above is g++, this one clang (as the fuzzers below), so
# "any C++20 compiler" is checked on both, warning-free.
if [ "${NABLA_SKIP_SANITIZE:-0}" != 1 ]; then
  step "ASan + UBSan build with clang, without CUDA (no nvcc on PATH, no toolkit headers in reach)"
  clangxx=$(command -v clang++ || command -v clang++-14) || { echo "nabla: the sanitizer build needs clang++" >&2; exit 1; }
  clangc=$(command -v clang || command -v clang-14)
  # what a machine without the toolkit sees: PATH without CUDA's bin, no include variables, and
  # CMake told not to look for the toolkit. Some images also link the toolkit's headers into
  # /usr/local/include, which no variable removes; there, a folder of poisoned CUDA headers
  # searched first (-isystem) turns any CUDA include of the no-CUDA build into a compile error.
  nocuda_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -i cuda | paste -sd: -)
  nocuda=(env -u CPATH -u CPLUS_INCLUDE_PATH -u C_INCLUDE_PATH -u CUDA_HOME -u CUDA_PATH PATH="$nocuda_path")
  poison="$build/no-cuda-include"
  mkdir -p "$poison"
  for h in cuda.h cuda_runtime.h cuda_runtime_api.h cuda_fp16.h cuda_bf16.h cublas_v2.h cublasLt.h \
           cudnn.h nccl.h curand.h; do
    printf '#error "nabla no-CUDA build: <%s> was included"\n' "$h" >"$poison/$h"
  done
  if printf '#include <cuda_runtime.h>\n' |
       "${nocuda[@]}" "$clangxx" -isystem "$poison" -fsyntax-only -x c++ - 2>/dev/null; then
    echo "nabla: <cuda_runtime.h> still compiles in the no-CUDA configuration; the check cannot hide it" >&2
    exit 1
  fi
  "${nocuda[@]}" cmake -S "$root" -B "$build/asan" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
    -DCMAKE_CXX_FLAGS="-isystem $poison" \
    -DCMAKE_CXX_COMPILER="$clangxx" -DCMAKE_C_COMPILER="$clangc" \
    -DNABLA_SANITIZE=ON -DNABLA_NATIVE=OFF -DNABLA_BUILD_BENCHMARKS=OFF -DNABLA_BUILD_EXAMPLES=OFF \
    -DNABLA_WITH_LIBTORCH=OFF -DNABLA_WITH_CUDA=OFF -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON ${NABLA_CMAKE_ARGS:-}
  built "$build/asan-build.log" "$build/asan" -j "$jobs" --target nabla_tests
  step "ASan + UBSan tests, and every header alone without CUDA"
  rm -rf "$build/asan/test-reports"
  "${nocuda[@]}" ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build/asan" --output-on-failure -j "$jobs"
  reports+=("$build/asan/test-reports:ASan, clang, no CUDA")

  # the readers of untrusted files under libFuzzer, each for a fixed time from the seed corpus
  # (a fixed seed and number of runs, about 30 s each: deterministic, so CI is never red by
  # chance; NABLA_FUZZ_SECONDS=N fuzzes for N seconds each from a random seed instead)
  step "fuzzing: safetensors, JSON, IDX, CIFAR-10, checkpoints (clang, ASan + UBSan)"
  NABLA_BUILD_DIR="$build" bash "$root/scripts/fuzz.sh" "${NABLA_FUZZ_SECONDS:-ci}"
fi

# ---- install + consumer project ----------------------------------------------------------------
step "install and build the consumer against the installed package"
rm -rf "$build/install"
cmake --install "$build/release" --prefix "$build/install" >/dev/null
have_nvcc=0
{ command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; } && have_nvcc=1
have_mpi=0
command -v mpirun >/dev/null && have_mpi=1
# The package: one tree builds consumer (nabla::nabla), consumer_cuda (nabla::cuda: plain C++ user
# code, the backend compiled once with nvcc) and distributed_consumer (nabla::distributed), as
# this machine allows; nabla's CPU kernels are compiled once for the three.
cmake -S "$root/tests/consumer" -B "$build/consumer-package" -DCMAKE_BUILD_TYPE=Release -DNABLA_CONSUMER_MODE=package \
  -DCMAKE_PREFIX_PATH="$build/install" -DNABLA_CONSUMER_CUDA=$([ $have_nvcc = 1 ] && echo ON || echo OFF) \
  -DNABLA_CONSUMER_DISTRIBUTED=$([ $have_mpi = 1 ] && echo ON || echo OFF) \
  -DCMAKE_CUDA_ARCHITECTURES="${NABLA_CUDA_ARCHS:-80}" >/dev/null
cmake --build "$build/consumer-package" -j "$jobs" >/dev/null
"$build/consumer-package/consumer"
if [ $have_nvcc = 1 ]; then
  "$build/consumer-package/consumer_cuda"  # no GPU: runs on the CPU, proving a driverless machine is fine
fi
if [ $have_mpi = 1 ]; then
  step "distributed_consumer (find_package(nabla COMPONENTS distributed)) on 2 ranks"
  bash "$root/tests/distributed/mpirun.sh" -np 2 "$build/consumer-package/distributed_consumer"
fi
# From source: add_subdirectory, and FetchContent (with nvcc present: CUDA found, and the CUDA
# backend must not be compiled for a project linking only nabla::nabla)
step "consumer through add_subdirectory"
cmake -S "$root/tests/consumer" -B "$build/consumer-subdirectory" -DCMAKE_BUILD_TYPE=Release \
  -DNABLA_CONSUMER_MODE=subdirectory -DNABLA_SOURCE_DIR="$root" -DNABLA_WITH_CUDA=OFF >/dev/null
cmake --build "$build/consumer-subdirectory" -j "$jobs" >/dev/null
"$build/consumer-subdirectory/consumer"
if [ $have_nvcc = 1 ]; then
  # CUDA found but only nabla::nabla linked: the CUDA backend must not be compiled (it is
  # EXCLUDE_FROM_ALL; a FetchContent hello-world used to spend minutes in nvcc)
  step "consumer through FetchContent with CUDA present, linking nabla::nabla: no nvcc"
  cmake -S "$root/tests/consumer" -B "$build/consumer-fetch-cuda-present" -DCMAKE_BUILD_TYPE=Release \
    -DNABLA_CONSUMER_MODE=fetchcontent -DNABLA_SOURCE_DIR="$root" -DCMAKE_CUDA_ARCHITECTURES="${NABLA_CUDA_ARCHS:-80}" >/dev/null
  cmake --build "$build/consumer-fetch-cuda-present" -j "$jobs" >"$build/consumer-fetch-cuda-present.log" 2>&1 ||
    { cat "$build/consumer-fetch-cuda-present.log" >&2; exit 1; }
  if grep -q "nabla_cuda_backend" "$build/consumer-fetch-cuda-present.log"; then
    echo "nabla: a consumer linking only nabla::nabla compiled the CUDA backend" >&2
    exit 1
  fi
  "$build/consumer-fetch-cuda-present/consumer"
else
  step "consumer through FetchContent"
  cmake -S "$root/tests/consumer" -B "$build/consumer-fetchcontent" -DCMAKE_BUILD_TYPE=Release \
    -DNABLA_CONSUMER_MODE=fetchcontent -DNABLA_SOURCE_DIR="$root" -DNABLA_WITH_CUDA=OFF >/dev/null
  cmake --build "$build/consumer-fetchcontent" -j "$jobs" >/dev/null
  "$build/consumer-fetchcontent/consumer"
fi
# the installed config must not name the build machine's paths
if grep -rn "$root" "$build/install/lib/cmake/nabla" >/dev/null; then
  echo "nabla: the installed CMake package contains absolute paths to the source tree" >&2
  exit 1
fi
step "skipped cases"
for r in "${reports[@]}"; do python3 "$root/scripts/skip-report.py" "${r%%:*}" "${r#*:}"; done
step "all tests passed"
