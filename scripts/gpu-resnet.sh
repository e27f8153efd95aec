#!/usr/bin/env bash
# The ResNet-18 CIFAR-10 accuracy run on a lent GPU: the example's defaults (15 epochs, batch 128,
# SGD nesterov, one-cycle lr 0.1, label smoothing 0.1, RandomCrop + flip) on the 10k training
# images of $NABLA_DATA/cifar10, evaluated on a 2,000-image slice of the test batch (the whole
# test batch would not fit beside the training file in what a device call carries).
#
#   bash scripts/gpu-resnet.sh prep     # here: build-gpu-resnet/ from build-gpu/ (gpu-prep.sh first)
#   run(command="bash scripts/gpu-resnet.sh run", carry=["build-gpu-resnet"], timeout_s=420)
#
# run writes the log and the metrics CSV under $OUT (default build-gpu-resnet-out/).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle=$root/build-gpu-resnet
case "${1:-}" in
  prep)
    data=${NABLA_DATA:-$(cd "$root/.." && pwd)/shared/data}
    [ -x "$root/build-gpu/bin/resnet" ] || { echo "gpu-resnet: no build-gpu/bin/resnet (run scripts/gpu-prep.sh)" >&2; exit 1; }
    rm -rf "$bundle" && mkdir -p "$bundle/bin" "$bundle/data/cifar10"
    cp "$root/build-gpu/bin/resnet" "$bundle/bin/" && cp -r "$root/build-gpu/lib" "$bundle/"
    cp "$data/cifar10/data_batch_1.bin.gz" "$bundle/data/cifar10/"
    # the first 2,000 records (3073 bytes each) of the test batch, still a valid batch file
    python3 - "$data/cifar10/test_batch.bin.gz" "$bundle/data/cifar10/test_batch.bin.gz" <<'EOF2'
import gzip, sys
with gzip.open(sys.argv[1]) as f: head = f.read(2000 * 3073)
with gzip.open(sys.argv[2], "wb", compresslevel=1) as f: f.write(head)
EOF2
    cp "$root/build-gpu/PREP.txt" "$bundle/"
    du -sh "$bundle"
    ;;
  run)
    out=${OUT:-$root/build-gpu-resnet-out}
    mkdir -p "$out"
    libpath=$bundle/lib
    for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, glob, os; print(" ".join(sorted(d for b in nvidia.__path__ for d in glob.glob(os.path.join(b, "*", "lib")))))' 2>/dev/null); do
      libpath=$d:$libpath
    done
    export LD_LIBRARY_PATH=$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/machine.txt"
    sed -n 's/^commit: //p' "$bundle/PREP.txt" | tee -a "$out/machine.txt"
    timeout -k 10 390 "$bundle/bin/resnet" --device cuda --data "$bundle/data/cifar10" --no-progress \
      --checkpoint /tmp/resnet_cifar.safetensors --csv "$out/metrics.csv" 2>&1 | tee "$out/resnet.log"
    exit "${PIPESTATUS[0]}"
    ;;
  *) echo "usage: bash scripts/gpu-resnet.sh prep|run" >&2; exit 2 ;;
esac
