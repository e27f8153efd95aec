#!/usr/bin/env bash
# Prepare the GPU run on this (CPU) machine: build what scripts/gpu-check.sh runs on a lent GPU
# machine into the git-ignored build-gpu/, so that device time is spent running, not building.
#
#   bash scripts/gpu-prep.sh         # then: run(command="bash scripts/gpu-check.sh", carry=["build-gpu"])
#
# What it makes (build-gpu/, at most 60 MiB, checked):
#   bin/      nabla_tests, nabla_bench_gpu, mnist (and resnet, gpt, nabla_distributed_tests when
#             they exist): sm_90 code, stripped, no -march=native, with libstdc++/libgcc linked
#             statically (the device image has other system libraries)
#   lib/      libgomp.so.1 and libz.so.1 from this machine, in case the device has none; with
#             nabla_distributed_tests, Open MPI's runtime (libmpi and what it loads, and its plugins
#             in lib/openmpi/): the device has no MPI, and the test runs there as one rank
#   data/     the MNIST files from $NABLA_DATA/mnist (the device has no data and no network)
#   PREP.txt  what was built, from which commit, and the checks below
# Checks (any failure stops with an error): cuDNN was found (NABLA_WITH_CUDNN=ON), cuobjdump
# lists sm_90 ELF code, no AVX-512 (zmm) instruction outside the run-time-dispatched *avx512*
# kernels, size <= 60 MiB.
#
#   NABLA_DATA=/path/to/shared/data   where the MNIST files are (default: ../shared/data)
#   NABLA_GPU_ARCH=90                 the CUDA architecture (H100/H200 = 90)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/build-gpu
cmake_dir=$root/build-gpu-cmake   # object files stay here, out of what travels
arch=${NABLA_GPU_ARCH:-90}
data=${NABLA_DATA:-$(cd "$root/.." && pwd)/shared/data}
jobs=${NABLA_JOBS:-$(nproc)}
export PATH=$PATH:/usr/local/cuda/bin
step() { printf '\n==== gpu-prep: %s ====\n' "$*"; }
die() { echo "gpu-prep: $*" >&2; exit 1; }

command -v nvcc >/dev/null || die "nvcc not found (the CUDA toolkit must be installed here to build)"
[ -f "$data/mnist/train-images-idx3-ubyte.gz" ] || die "no MNIST under $data/mnist (set NABLA_DATA)"

step "configure ($cmake_dir, sm_$arch)"
mkdir -p "$cmake_dir"
cmake -S "$root" -B "$cmake_dir" -DCMAKE_BUILD_TYPE=Release \
  -DNABLA_WITH_CUDA=ON -DNABLA_WITH_CUDNN=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DNABLA_NATIVE=OFF -DNABLA_USE_BLAS=OFF -DNABLA_WITH_LIBTORCH=OFF \
  -DNABLA_BUILD_TESTS=ON -DNABLA_BUILD_BENCHMARKS=ON -DNABLA_BUILD_EXAMPLES=ON \
  -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" | tee "$cmake_dir/configure.log" |
  grep -E "nabla:|Error" || true
grep -q "with cuDNN" "$cmake_dir/configure.log" || die "configured without cuDNN"
dist=0   # nabla::distributed's tests, when MPI and NCCL are here
grep -q "nabla::distributed (MPI found), with NCCL" "$cmake_dir/configure.log" && dist=1

step "build (nabla_tests, nabla_bench_gpu, mnist; -j $jobs)"
targets=(nabla_tests nabla_bench_gpu mnist)
for t in resnet gpt; do   # the larger examples, once they exist
  grep -qs "add_executable($t " "$root/examples/CMakeLists.txt" && targets+=("$t")
done
[ $dist = 1 ] && targets+=(nabla_distributed_tests)
cmake --build "$cmake_dir" -j "$jobs" --target "${targets[@]}"

step "collect into $out"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/data/mnist"
bins=()
for t in "${targets[@]}"; do
  f=$(find "$cmake_dir" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$f" ] || die "built no $t"
  bins+=("$f")
done

# AVX-512: the carried binaries must run on any x86-64 host CPU. Only the GEMM micro-kernels that
# are chosen at run time (__builtin_cpu_supports) may hold zmm instructions. Counted on the
# unstripped binaries, where function names are known.
for f in "${bins[@]}"; do
  stray=$(objdump -d --no-show-raw-insn -C "$f" | awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
    /%zmm/ { if (fn !~ /avx512/) { n++; if (!(fn in seen)) { seen[fn] = 1; print "  in " fn > "/dev/stderr" } } }
    END { print n + 0 }')
  total=$(objdump -d --no-show-raw-insn "$f" | grep -c '%zmm' || true)
  echo "$(basename "$f"): $total zmm instructions, $stray outside run-time-dispatched avx512 kernels"
  [ "$stray" = 0 ] || die "$(basename "$f") has AVX-512 code that is not behind a CPU check"
  cp "$f" "$out/bin/"
  strip "$out/bin/$(basename "$f")"
done

for l in libgomp.so.1 libz.so.1; do
  # no `exit` in awk: ldconfig would die of SIGPIPE and, under pipefail, stop the script
  p=$(ldconfig -p | awk -v l="$l" '$1 == l && /x86-64/ && !found { print $NF; found = 1 }')
  [ -n "$p" ] && cp -L "$p" "$out/lib/"
done
if [ $dist = 1 ]; then
  # Open MPI's runtime for a singleton run: libmpi, the libraries it needs (not glibc's or the
  # compiler's), and the plugins it loads at MPI_Init (those needing InfiniBand, PSM, UCX, OFI,
  # CUDA or a batch system are left out; the device has none of them)
  mkdir -p "$out/lib/openmpi"
  sofile() { ldconfig -p | awk -v l="$1" '$1 == l && /x86-64/ && !found { print $NF; found = 1 }'; }
  libmpi=$(sofile libmpi.so.40)
  [ -n "$libmpi" ] || die "no libmpi.so.40 here"
  plugins=$(dirname "$(find /usr/lib /usr/lib64 /usr/local/lib -path '*openmpi*' -name mca_ess_singleton.so 2>/dev/null | head -1)")
  [ -f "$plugins/mca_ess_singleton.so" ] || die "no Open MPI plugin folder (mca_ess_singleton.so) here"
  for p in "$plugins"/mca_*.so; do
    case $(basename "$p") in *psm*|*ucx*|*ofi*|*openib*|*verbs*|*cuda*|*monitoring*|*flux*|*jsm*|*slurm*|*_tm*|*lsf*|*alps*) continue ;; esac
    cp -L "$p" "$out/lib/openmpi/"
  done
  { ldd "$libmpi"; for l in libmca_common_sm.so.40 libnl-3.so.200; do f=$(sofile $l); if [ -n "$f" ]; then echo "$l => $f"; fi; done
    echo "libmpi.so.40 => $libmpi"; } | awk '/=>/ && $3 ~ /^\// { print $3 }' | sort -u |
    grep -vE '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s)\.so' | while read -r l; do cp -L "$l" "$out/lib/"; done
fi
cp "$data"/mnist/*-ubyte.gz "$data/mnist/MD5SUMS" "$out/data/mnist/"
# tiny Shakespeare (1.1 MB) for the GPT-2 step, when the shared data has it
if [ -f "$data/tinyshakespeare/input.txt" ]; then
  mkdir -p "$out/data/tinyshakespeare"
  cp "$data/tinyshakespeare/input.txt" "$out/data/tinyshakespeare/"
fi

step "checks"
# cuobjdump: the toolkit's, else NVIDIA's pip wheel of it (this machine's toolkit may lack it)
cuobjdump=$(command -v cuobjdump || true)
if [ -z "$cuobjdump" ]; then
  tools=$cmake_dir/tools
  if [ ! -x "$tools/nvidia/cu13/bin/cuobjdump" ]; then
    python3 -m pip download -q --no-deps -d "$tools" "nvidia-cuda-cuobjdump>=13,<14" &&
      (cd "$tools" && unzip -qo nvidia_cuda_cuobjdump-*.whl 'nvidia/*/bin/cuobjdump') ||
      die "no cuobjdump here and pip could not fetch nvidia-cuda-cuobjdump"
  fi
  cuobjdump=$(find "$tools" -type f -name cuobjdump | head -1)
  chmod +x "$cuobjdump"
fi
sm=$("$cuobjdump" --list-elf "$out/bin/nabla_tests" | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')
"$cuobjdump" --list-elf "$out/bin/nabla_tests" | head -3
[[ " $sm" == *" sm_$arch "* ]] || die "nabla_tests has no sm_$arch ELF code (found: $sm)"
glibc=$(objdump -T "$out"/bin/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
needed=$(for f in "$out"/bin/*; do objdump -p "$f" | awk '/NEEDED/ { print $2 }'; done | sort -u | tr '\n' ' ')
size_kib=$(du -sk "$out" | cut -f1)
{
  echo "commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . ':!docs' || echo '+local changes')"
  echo "built: $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -n), $(nvcc --version | grep -o 'release [0-9.]*')"
  echo "cuda archs: $sm"
  grep -o "nabla: CUDA backend.*" "$cmake_dir/configure.log"
  echo "needs: $needed(newest glibc symbol: $glibc)"
  echo "size: $((size_kib / 1024)) MiB"
  (cd "$out" && ls -l bin lib data/mnist)
} | tee "$out/PREP.txt"
[ "$size_kib" -le $((60 * 1024)) ] || die "build-gpu is $((size_kib / 1024)) MiB, over the 60 MiB budget"
step "ready: run(command=\"bash scripts/gpu-check.sh\", carry=[\"build-gpu\"])"
