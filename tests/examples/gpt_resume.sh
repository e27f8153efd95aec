#!/usr/bin/env bash
# The GPT-2 example end to end on tiny Shakespeare (ctest: gpt_example):
#  1. a small character-level model trains (loss falls well below ln(65)), writes a run folder
#     that is a Hugging Face folder (config.json, model.safetensors, chars.json) plus its
#     checkpoint and metrics, and `gpt sample` generates from it, reproducibly per seed;
#  2. a run stopped after step 9 (--stop-after, as if killed) and resumed from its step-8
#     checkpoint ends with files byte-identical to an uninterrupted run's (weights, AdamW state,
#     step; batches and dropout masks are keyed on seed and step);
#  3. finetune --from the run folder continues training on another text, and a stopped fine-tune
#     resumes to the same bytes;
#  4. bad input gives one clear error line and exit code 1.
# Usage: gpt_resume.sh <path to the gpt program>. Needs $NABLA_DATA/tinyshakespeare (skips otherwise).
set -euo pipefail
gpt=$1
text=${NABLA_DATA:-}/tinyshakespeare/input.txt
if [ -z "${NABLA_DATA:-}" ] || [ ! -s "$text" ]; then
  echo "SKIP: NABLA_DATA is not set or has no tinyshakespeare/input.txt"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
small=(--n-layer 2 --n-head 2 --n-embd 32 --block-size 32 --batch-size 8 --eval-iters 2 --no-progress --threads 2)

echo "== 1. a short run learns; sampling from its folder"
"$gpt" train --data "$text" --out a "${small[@]}" --max-steps 150 --eval-interval 50 --lr 3e-3 --sample-tokens 40 | tee a.log
val=$(sed -n 's/^step 150: .*val loss \([0-9.]*\),.*/\1/p' a.log)
# 65 characters: ln 65 = 4.17 at the start; 150 steps of this tiny model reach ~2.5 (seed 1)
awk -v v="$val" 'BEGIN { print "val loss", v; exit (v != "" && v + 0 < 3.0) ? 0 : 1 }'
for f in config.json model.safetensors chars.json checkpoint.safetensors metrics.csv; do test -s "a/$f"; done
test "$(wc -l < a/metrics.csv)" -eq 4
"$gpt" sample --from a --prompt "ROMEO:" --max-new-tokens 30 --seed 5 > s1.txt
"$gpt" sample --from a --prompt "ROMEO:" --max-new-tokens 30 --seed 5 > s2.txt
cmp s1.txt s2.txt
grep -q "^ROMEO:" s1.txt
test "$(head -c 200 s1.txt | wc -c)" -gt 6

echo "== 2. stop, resume, compare with an uninterrupted run"
"$gpt" train --data "$text" --out full "${small[@]}" --max-steps 16 --eval-interval 4 --dropout 0.1 --sample-tokens 0 >/dev/null
set +e
"$gpt" train --data "$text" --out part "${small[@]}" --max-steps 16 --eval-interval 4 --dropout 0.1 --sample-tokens 0 \
  --stop-after 9 >/dev/null
rc=$?
set -e
test $rc -eq 3
"$gpt" train --data "$text" --out part "${small[@]}" --max-steps 16 --eval-interval 4 --dropout 0.1 --sample-tokens 0 \
  --resume | tee resume.log
grep -q "resumed from part/checkpoint.safetensors at step 8" resume.log
cmp full/checkpoint.safetensors part/checkpoint.safetensors
cmp full/model.safetensors part/model.safetensors
echo "resumed run's files are byte-identical to the uninterrupted run's"

echo "== 3. finetune from the run folder"
head -c 20000 "$text" | tr 'a-z' 'A-Z' > upper.txt
"$gpt" finetune --from a --data upper.txt --out ft --batch-size 8 --eval-iters 2 --no-progress --threads 2 \
  --max-steps 20 --eval-interval 10 --lr 1e-3 --sample-tokens 0 | tee ft.log
grep -q "^step 20: " ft.log
test -s ft/model.safetensors
# and a fine-tune stopped after step 13 resumes from its step-10 checkpoint to the same bytes
ftflags=(--from a --data upper.txt --batch-size 8 --eval-iters 2 --no-progress --threads 2 --max-steps 20
         --eval-interval 10 --lr 1e-3 --sample-tokens 0)
set +e
"$gpt" finetune "${ftflags[@]}" --out ft2 --stop-after 13 >/dev/null
rc=$?
set -e
test $rc -eq 3
"$gpt" finetune "${ftflags[@]}" --out ft2 --resume > ft2.log  # (not piped into grep -q: SIGPIPE under pipefail)
grep -q "resumed from ft2/checkpoint.safetensors at step 10" ft2.log
cmp ft/checkpoint.safetensors ft2/checkpoint.safetensors
cmp ft/model.safetensors ft2/model.safetensors
echo "resumed fine-tune's files are byte-identical to the uninterrupted fine-tune's"

echo "== 4. bad input gives one clear error line"
expect_one_line() {  # expect_one_line <fragment> <args...>
  local fragment=$1
  shift
  set +e
  "$gpt" "$@" >out.txt 2>err.txt
  local rc=$?
  set -e
  cat err.txt
  test $rc -eq 1 && grep -q -- "$fragment" err.txt && test "$(wc -l < err.txt)" -eq 1
}
expect_one_line "no training text" train --data "$work/nowhere.txt" --out x
expect_one_line "config.json" sample --from "$work"
expect_one_line "not in the model's vocabulary" sample --from a --prompt "§"
echo "gpt example: all checks passed"
