#!/bin/sh
# Issue 10: a student trained from the teacher caches against one trained with the live
# teacher, same data, steps and seed (word-level KD, forward KL, tau 1, on gold + teacher
# pseudo-targets of the first N labeled inputs): dev loss and step time of each.
# Needs the pseudo-targets of scripts/distill-compare.sh. Every run resumes (--resume).
# Usage: scripts/distill-cache-compare.sh [OUT_DIR] [STEPS] [N]   (build/runs/cache, 300, 4000)
set -eu
out="${1:-build/runs/cache}"
steps="${2:-300}"
n="${3:-4000}"
tutor="${TUTOR:-build/tutor}"
d=build/data/debdesc
pts=build/runs/distill/pt-labeled.jsonl
mkdir -p "$out"
head -n "$n" $d/labeled.jsonl > "$out/gold.jsonl"
head -n "$n" $pts > "$out/pts.jsonl"
common="--teacher models/debdesc-teacher --data $out/gold.jsonl --pt $out/pts.jsonl --dev $d/dev.jsonl --select loss
  --lr 3e-4 --warmup 50 --max-steps $steps --eval-every $steps --save-every 100 --threads 1 --no-progress --resume"
for arm in live exact sparse; do
  case $arm in
    live) extra="" ;;
    exact) extra="--teacher-cache exact" ;;
    sparse) extra="--teacher-cache sparse --cache-top-k 20" ;;
  esac
  "$tutor" distill $common $extra -o "$out/$arm" 2>>"$out/$arm.log"
done
for arm in live exact sparse; do
  printf '%-7s ' $arm
  grep '"dev_loss"' "$out/$arm/metrics.jsonl" | tail -n 1 | sed 's/.*"dev_loss":\([0-9.]*\).*"elapsed_s":\([0-9.]*\).*/dev loss \1, \2 s/'
  grep -h "teacher cache\|sparse teacher cache" "$out/$arm.log" | tail -n 2 | sed 's/^/        /'
done
