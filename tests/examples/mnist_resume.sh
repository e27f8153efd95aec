#!/usr/bin/env bash
# The MNIST example end to end on a slice of the real data (ctest: mnist_example):
#  1. a short run learns (test accuracy above a floor) and writes its checkpoint and CSV;
#  2. a run stopped mid-epoch (--max-steps, as if killed) and continued with --resume ends with
#     a checkpoint byte-identical to an uninterrupted run's: same weights, optimizer state,
#     schedule, step and RNG state;
#  3. a missing data folder and a corrupt file give one clear error line and exit code 1;
#  4. --amp bf16 with --checkpointing learns; --amp f16 resumes byte-identically (GradScaler state
#     in the checkpoint); a --memory-limit below what training needs is one OutOfMemory line;
#  5. from run 1's finished checkpoint, --export writes an ONNX file, --quantize int8 an int8 row
#     (accuracy within 1 point of float32, a quarter of the weight bytes) and the QDQ file, and
#     --prune 0.5 the unstructured / structured rows (half the weights zero; narrower layers).
# Usage: mnist_resume.sh <path to the mnist program>. Needs $NABLA_DATA/mnist (skips otherwise).
set -euo pipefail
mnist=$1
data=${NABLA_DATA:-}/mnist
if [ -z "${NABLA_DATA:-}" ] || [ ! -d "$data" ]; then
  echo "SKIP: NABLA_DATA is not set or has no mnist/ folder"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
common=(--data "$data" --limit 1280 --test-limit 2000 --batch-size 64 --no-progress --threads 2)

echo "== 1. a short run learns"
"$mnist" --data "$data" --limit 3200 --no-progress --epochs 1 --checkpoint a.safetensors --csv a.csv | tee a.log
acc=$(sed -n 's/^epoch 1: .*test accuracy \([0-9.]*\)%.*/\1/p' a.log)
awk -v a="$acc" 'BEGIN { print "accuracy", a; exit (a != "" && a + 0 >= 85.0) ? 0 : 1 }'
test -s a.safetensors
test "$(wc -l < a.csv)" -eq 2

echo "== 2. stop mid-epoch, resume, compare with an uninterrupted run"
"$mnist" "${common[@]}" --epochs 2 --checkpoint full.safetensors --csv full.csv >/dev/null
set +e
"$mnist" "${common[@]}" --epochs 2 --checkpoint-every 7 --max-steps 30 --checkpoint part.safetensors --csv part.csv >/dev/null
rc=$?
set -e
test $rc -eq 3  # stopped by --max-steps, last checkpoint at step 28 (epoch 2, batch 8)
"$mnist" "${common[@]}" --epochs 2 --resume --checkpoint part.safetensors --csv part.csv | tee resume.log
grep -q "resumed from part.safetensors at step 28 (epoch 2, batch 8)" resume.log
cmp full.safetensors part.safetensors
echo "resumed run's checkpoint is byte-identical to the uninterrupted run's"

echo "== 3. bad input gives one clear error line"
set +e
"$mnist" --data "$work/nowhere" --epochs 1 >out.txt 2>err.txt
rc=$?
set -e
cat err.txt
test $rc -eq 1 && grep -q "nowhere" err.txt && test "$(wc -l < err.txt)" -eq 1
mkdir bad && for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  cp "$data/$f.gz" bad/ 2>/dev/null || cp "$data/$f" bad/
done
head -c 100000 "$data/train-images-idx3-ubyte.gz" > bad/train-images-idx3-ubyte.gz  # truncated
set +e
"$mnist" --data "$work/bad" --epochs 1 >out.txt 2>err.txt
rc=$?
set -e
cat err.txt
test $rc -eq 1 && grep -q "train-images-idx3-ubyte" err.txt && test "$(wc -l < err.txt)" -eq 1
echo "== 4. mixed precision, checkpointing and the memory budget"
# bfloat16 autocast with checkpointing learns as well
"$mnist" --data "$data" --limit 3200 --no-progress --epochs 1 --amp bf16 --checkpointing --checkpoint b.safetensors \
  --csv b.csv | tee b.log
acc=$(sed -n 's/^epoch 1: .*test accuracy \([0-9.]*\)%.*/\1/p' b.log)
awk -v a="$acc" 'BEGIN { print "accuracy (bf16, checkpointing)", a; exit (a != "" && a + 0 >= 85.0) ? 0 : 1 }'
grep -q "^peak memory on cpu: " b.log
# float16 with its GradScaler: an interrupted run resumes to the uninterrupted one's bytes (the
# scale and its growth counter are in the checkpoint). The MLP: the CPU has no float16 conv kernel,
# so the CNN would run its slow composite.
"$mnist" "${common[@]}" --model mlp --epochs 2 --amp f16 --checkpoint f16full.safetensors --csv f16full.csv >/dev/null
set +e
"$mnist" "${common[@]}" --model mlp --epochs 2 --amp f16 --checkpoint-every 7 --max-steps 30 \
  --checkpoint f16part.safetensors --csv f16part.csv >/dev/null
rc=$?
set -e
test $rc -eq 3
"$mnist" "${common[@]}" --model mlp --epochs 2 --amp f16 --resume --checkpoint f16part.safetensors --csv f16part.csv \
  >/dev/null
cmp f16full.safetensors f16part.safetensors
echo "f16 resumed run's checkpoint (with the GradScaler) is byte-identical to the uninterrupted run's"
# a budget that holds the data set (220 MB) but not a training step: one clear OutOfMemory line, exit 1
set +e
"$mnist" "${common[@]}" --epochs 1 --memory-limit 240MB --checkpoint m.safetensors --csv m.csv >out.txt 2>err.txt
rc=$?
set -e
cat err.txt
test $rc -eq 1 && grep -q "memory limit" err.txt && test "$(wc -l < err.txt)" -eq 1

echo "== 5. --export, --quantize and --prune after training"
cp a.csv p.csv
"$mnist" --data "$data" --limit 3200 --test-limit 2000 --no-progress --epochs 1 --checkpoint a.safetensors --csv p.csv \
  --resume --export m.onnx --prune 0.5 --quantize int8 --calibration-batches 4 | tee p.log
grep -q "^wrote m.onnx" p.log
test "$(stat -c %s m.onnx)" -gt 4000000  # the CNN's 1.2M float32 weights are in it
grep -q "^wrote m.int8.onnx" p.log
test "$(stat -c %s m.int8.onnx)" -lt 1500000  # int8 weights: a quarter
int8=$(awk '$1 == "int8" { print $3, $8 }' p.log)
echo "int8: $int8"
# int8: accuracy within 1 point of float32 (the issue's bar is 0.3 on the fully trained model;
# docs/inference.md), weights about a quarter of float32's 4.8 MB
awk -v f="$(awk '$1 == "float32" { print $2, $7 }' p.log)" -v q="$int8" 'BEGIN { split(f, a, " "); split(q, b, " ");
  exit (b[1] + 0 >= a[1] - 1 && b[2] + 0 < 0.3 * (a[2] + 0)) ? 0 : 1 }' 
float=$(awk '$1 == "float32" { print $2, $5 }' p.log)
unstructured=$(awk '$1 == "unstructured" { print $3, $6, $7 }' p.log)
structured=$(awk '$1 == "structured" { print $3, $6 }' p.log)
echo "float32: $float; unstructured: $unstructured; structured: $structured"
# unstructured: half the weights zero (biases stay), accuracy within 2 points of float32 after one short epoch
awk -v f="$float" -v u="$unstructured" 'BEGIN { split(f, a, " "); split(u, b, " ");
  acc_f = a[1] + 0; acc_u = b[1] + 0; params = b[2] + 0; nonzero = b[3] + 0;
  exit (acc_u >= acc_f - 2 && nonzero < 0.51 * params && nonzero > 0.49 * params) ? 0 : 1 }'
# structured: narrower layers, so fewer parameters than float32
awk -v f="$float" -v s="$structured" 'BEGIN { split(f, a, " "); split(s, b, " "); exit (b[2] + 0 < 0.5 * (a[2] + 0)) ? 0 : 1 }'
echo "PASS"
