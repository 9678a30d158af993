#!/bin/sh
# Issue 10, bar 2: the same student (the shipped teacher shrunk to decoder layers 0 and -1)
# trained for the same wall time on this machine two ways, side by side on one core each:
#   ft: fine-tuning on the gold pairs only;
#   kd: word-level KD (forward KL) on gold + the teacher's beam pseudo-targets for the
#       labeled and unlabeled inputs.
# Then both are evaluated on the test set. Every stage resumes (--resume): rerun to continue.
# Usage: scripts/distill-compare.sh [OUT_DIR] [MINUTES]   (default build/runs/distill, 25)
set -eu
out="${1:-build/runs/distill}"
minutes="${2:-25}"
tutor="${TUTOR:-build/tutor}"
teacher=models/debdesc-teacher
d=build/data/debdesc
scripts/debdesc-fetch.sh >/dev/null
mkdir -p "$out"
# teacher pseudo-targets: its tuned decoding (beam 6, no-repeat 3), one per input
for f in labeled unlabeled; do
  "$tutor" generate --model $teacher --input $d/$f.jsonl -o "$out/pt-$f.jsonl" --threads 1 --resume --no-progress \
    2>>"$out/pt.log"
done
common="--teacher $teacher --data $d/labeled.jsonl --dev $d/dev.jsonl --dev-rouge-examples 300
  --lr 3e-4 --warmup 100 --schedule constant --max-steps 1000000 --max-minutes $minutes
  --eval-every 200 --save-every 100 --threads 1 --no-progress --resume"
"$tutor" distill $common --method ft -o "$out/ft-gold" 2>>"$out/ft-gold.log" &
"$tutor" distill $common --method kd --pt "$out/pt-labeled.jsonl" --pt "$out/pt-unlabeled.jsonl" \
  -o "$out/kd-pt" 2>>"$out/kd-pt.log" &
wait
for arm in ft-gold kd-pt; do
  "$tutor" eval --model "$out/$arm" --data $d/test.jsonl --threads 1 --json "$out/$arm-test.json" \
    >"$out/$arm-test.txt" 2>>"$out/$arm.log"
done
echo "distill-compare: done; results in $out/*-test.txt"
