#!/usr/bin/env bash
# The ResNet example end to end on a slice of the real CIFAR-10 (ctest: resnet_example), as
# mnist_resume.sh does for MNIST:
#  1. a short run (ResNet-18, CIFAR stem, a few hundred images) trains, evaluates above chance
#     and writes its checkpoint and CSV;
#  2. a run stopped mid-epoch (--max-steps, as if killed) and continued with --resume ends with a
#     checkpoint byte-identical to an uninterrupted run's (weights, SGD momentum, the one-cycle
#     schedule, step; the augmentation is keyed on seed, epoch and batch);
#  3. a missing data folder, a corrupt file, and a resume with another --arch give one clear error
#     line and exit code 1.
# Usage: resnet_resume.sh <path to the resnet program>. Needs $NABLA_DATA/cifar10 (skips otherwise).
set -euo pipefail
resnet=$1
data=${NABLA_DATA:-}/cifar10
if [ -z "${NABLA_DATA:-}" ] || [ ! -d "$data" ]; then
  echo "SKIP: NABLA_DATA is not set or has no cifar10/ folder"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
common=(--data "$data" --limit 96 --test-limit 64 --batch-size 16 --test-batch-size 64 --no-progress --threads 2)

echo "== 1. a short run trains and evaluates"
"$resnet" --data "$data" --limit 512 --test-limit 500 --batch-size 32 --epochs 2 --lr 0.05 --no-progress --threads 2 \
  --checkpoint a.safetensors --csv a.csv | tee a.log
acc=$(sed -n 's/^epoch 2: .*test accuracy \([0-9.]*\)%.*/\1/p' a.log)
# 10 classes: chance is 10%; 512 images for 2 epochs reach ~20-30% (seed 1); the floor only
# says it learned something, the accuracy goal is in docs/resnet.md
awk -v a="$acc" 'BEGIN { print "accuracy", a; exit (a != "" && a + 0 >= 15.0) ? 0 : 1 }'
test -s a.safetensors
test "$(wc -l < a.csv)" -eq 3

echo "== 2. stop mid-epoch, resume, compare with an uninterrupted run"
"$resnet" "${common[@]}" --epochs 2 --checkpoint full.safetensors --csv full.csv >/dev/null
set +e
"$resnet" "${common[@]}" --epochs 2 --checkpoint-every 4 --max-steps 9 --checkpoint part.safetensors --csv part.csv >/dev/null
rc=$?
set -e
test $rc -eq 3  # stopped by --max-steps, last checkpoint at step 8 (epoch 2, batch 2)
"$resnet" "${common[@]}" --epochs 2 --resume --checkpoint part.safetensors --csv part.csv | tee resume.log
grep -q "resumed from part.safetensors at step 8 (epoch 2, batch 2)" resume.log
cmp full.safetensors part.safetensors
echo "resumed run's checkpoint is byte-identical to the uninterrupted run's"

echo "== 3. bad input gives one clear error line"
expect_one_line() {  # expect_one_line <fragment> <args...>
  local fragment=$1
  shift
  set +e
  "$resnet" "$@" >out.txt 2>err.txt
  local rc=$?
  set -e
  cat err.txt
  test $rc -eq 1 && grep -q -- "$fragment" err.txt && test "$(wc -l < err.txt)" -eq 1
}
expect_one_line nowhere --data "$work/nowhere" --epochs 1
mkdir bad
cp "$data"/test_batch* bad/
head -c 100000 "$(ls "$data"/data_batch_1*)" > "bad/$(basename "$(ls "$data"/data_batch_1*)")"  # truncated
expect_one_line data_batch_1 --data "$work/bad" --epochs 1
expect_one_line "arch" "${common[@]}" --epochs 2 --resume --checkpoint part.safetensors --arch resnet34
echo "PASS"
