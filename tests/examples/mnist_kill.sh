#!/usr/bin/env bash
# Crash safety (ctest: mnist_kill): the MNIST example checkpointing every step is SIGKILLed at
# random moments, a bounded number of times, and resumed each time. After every kill the
# checkpoint must load (each resume loads it: a torn file would stop the run with an error), the
# step it resumes from never goes backwards, and the last run finishes all epochs.
# Usage: mnist_kill.sh <path to the mnist program> [kills]. Needs $NABLA_DATA/mnist (skips otherwise).
# NABLA_KILL_SEED replays a run's kill times (printed at the start).
set -euo pipefail
mnist=$(realpath "$1")
kills=${2:-10}
data=${NABLA_DATA:-}/mnist
if [ -z "${NABLA_DATA:-}" ] || [ ! -d "$data" ]; then
  echo "SKIP: NABLA_DATA is not set or has no mnist/ folder"
  exit 77
fi
seed=${NABLA_KILL_SEED:-$(( $(date +%s) % 100000 ))}
echo "kill seed $seed (replay with NABLA_KILL_SEED=$seed)"
RANDOM=$seed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
common=(--data "$data" --model mlp --limit 1280 --test-limit 500 --batch-size 32 --epochs 12 --no-progress --threads 1
        --checkpoint ck.safetensors --checkpoint-every 1 --csv m.csv)

last=0      # the step the previous resume started from
killed=0
for ((i = 1; i <= kills; ++i)); do
  resume=()
  [ -f ck.safetensors ] && resume=(--resume)
  "$mnist" "${common[@]}" "${resume[@]}" >run$i.log 2>&1 &
  pid=$!
  delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + (r % 180) / 100 }')  # 0.2 .. 2.0 s
  sleep "$delay"
  if kill -9 $pid 2>/dev/null; then
    wait $pid 2>/dev/null || true
    killed=$((killed + 1))
  else
    set +e; wait $pid; rc=$?; set -e
    if [ $rc -ne 0 ]; then
      echo "run $i exited with $rc before the kill:"; cat run$i.log
      exit 1
    fi
    echo "run $i finished before its kill at ${delay} s"
    break
  fi
  step=$(sed -n 's/^resumed from .* at step \([0-9]*\) .*/\1/p' run$i.log)
  if grep -q "^mnist: " run$i.log; then echo "run $i failed:"; cat run$i.log; exit 1; fi
  if [ -n "$step" ]; then
    [ "$step" -ge "$last" ] || { echo "run $i resumed from step $step, before the previous run's $last"; exit 1; }
    last=$step
  fi
  echo "run $i: killed after ${delay} s${step:+, had resumed from step $step}"
done
echo "== after $killed kills, the last run resumes and finishes"
resume=()
[ -f ck.safetensors ] && resume=(--resume)
"$mnist" "${common[@]}" "${resume[@]}" | tee final.log
step=$(sed -n 's/^resumed from .* at step \([0-9]*\) .*/\1/p' final.log)
[ -z "$step" ] || [ "$step" -ge "$last" ] || { echo "the final run resumed from step $step, before $last"; exit 1; }
grep -q "^test accuracy" final.log || grep -q "nothing to do" final.log
test "$killed" -ge 1 || { echo "no run was killed (each finished too soon): nothing was tested"; exit 1; }
echo "PASS: $killed kills, the checkpoint loaded after each, the step never went backwards"
