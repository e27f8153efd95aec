#!/usr/bin/env bash
# The MNIST example with --distributed under mpirun (ctest: mnist_distributed):
#  1. two ranks with batch 32 each learn as well as one process with batch 64 (same global batch,
#     same data: each rank takes every second example of the shared permutation);
#  2. only rank 0 writes the CSV and the checkpoint; each rank prints its throughput and the time
#     it waited for gradient all-reduces;
#  3. a two-rank run stopped mid-epoch and resumed on two ranks ends with the checkpoint of an
#     uninterrupted two-rank run, byte for byte; resuming it on one process is a clear error;
#  4. --checkpointing on two ranks (checkpoint_sequential inside DDP's forward) ends with that same
#     checkpoint, byte for byte: recomputing the segments changes neither the gradients nor their
#     averaging.
# Usage: mnist_distributed.sh <path to the mnist program>. Needs $NABLA_DATA/mnist and mpirun.
set -euo pipefail
mnist=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
launch=("bash" "$here/../distributed/mpirun.sh")
data=${NABLA_DATA:-}/mnist
if [ -z "${NABLA_DATA:-}" ] || [ ! -d "$data" ]; then
  echo "SKIP: NABLA_DATA is not set or has no mnist/ folder"
  exit 77
fi
command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
"$mnist" --help | grep -q -- --distributed || { echo "SKIP: this mnist was built without MPI"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
common=(--data "$data" --limit 3200 --test-limit 2000 --no-progress --epochs 1 --model cnn)

echo "== 1. one process, batch 64"
OMP_NUM_THREADS=2 "$mnist" "${common[@]}" --batch-size 64 --checkpoint one.safetensors --csv one.csv | tee one.log
echo "== 1. two ranks, batch 32 each"
"${launch[@]}" -np 2 "$mnist" "${common[@]}" --batch-size 32 --distributed --checkpoint two.safetensors --csv two.csv | tee two.log
a1=$(sed -n 's/^epoch 1: .*test accuracy \([0-9.]*\)%.*/\1/p' one.log)
a2=$(sed -n 's/^epoch 1: .*test accuracy \([0-9.]*\)%.*/\1/p' two.log)
awk -v a="$a1" -v b="$a2" 'BEGIN { print "accuracy: one process", a, "two ranks", b;
  exit (a + 0 >= 85 && b + 0 >= 85 && b - a <= 3 && a - b <= 3) ? 0 : 1 }'

echo "== 2. rank 0 writes, every rank reports"
test "$(grep -c '^epoch 1:' two.log)" -eq 1
test "$(wc -l < two.csv)" -eq 2
grep -q "^distributed: 2 ranks over MPI, batch 32 per rank (global 64)" two.log
test "$(grep -cE '^rank [01]: [0-9]+ img/s, .* waiting for gradient all-reduces' two.log)" -eq 2

echo "== 3. stop mid-epoch on two ranks, resume on two ranks"
short=(--data "$data" --limit 1280 --test-limit 500 --no-progress --epochs 1 --batch-size 32 --distributed --checkpoint-every 5)
"${launch[@]}" -np 2 "$mnist" "${short[@]}" --checkpoint full.safetensors --csv full.csv >/dev/null
set +e
"${launch[@]}" -np 2 "$mnist" "${short[@]}" --checkpoint cut.safetensors --csv cut.csv --max-steps 12 >/dev/null 2>&1
set -e
"${launch[@]}" -np 2 "$mnist" "${short[@]}" --checkpoint cut.safetensors --csv cut.csv --resume | grep "^resumed from"
cmp full.safetensors cut.safetensors && echo "resumed checkpoint == uninterrupted checkpoint"
if OMP_NUM_THREADS=1 "$mnist" --data "$data" --limit 1280 --test-limit 500 --no-progress --epochs 1 --batch-size 32 \
     --checkpoint cut.safetensors --csv solo.csv --resume 2>err.log; then
  echo "resuming a two-rank checkpoint on one process should fail"; exit 1
fi
grep -q "was written by a run of 2 rank(s), this one has 1" err.log

echo "== 4. two ranks with --checkpointing"
"${launch[@]}" -np 2 "$mnist" "${short[@]}" --checkpointing --checkpoint ckpt.safetensors --csv ckpt.csv | grep "checkpointing"
cmp full.safetensors ckpt.safetensors && echo "--checkpointing checkpoint == plain checkpoint"
echo "mnist_distributed: all checks passed"
