#!/bin/sh
# The pretraining comparison of docs/training.md at equal wall time (about 15 minutes of one
# core per arm): fine-tuning only, vs text infilling + fine-tuning, vs gap sentences +
# fine-tuning, with the small probe model (configs/probe-small.json). Every stage resumes
# (--resume), so the script can be stopped and rerun. Then scripts/plot-compare.sh draws
# dev ROUGE-L against wall time.
# Usage: scripts/pretrain-compare.sh [OUT_DIR]   (default build/runs/compare)
set -eu
out="${1:-build/runs/compare}"
tutor="${TUTOR:-build/tutor}"
d=build/data/debdesc
scripts/debdesc-fetch.sh >/dev/null
mkdir -p "$out"
tok="$out/tok8k.json"
[ -f "$tok" ] || "$tutor" tokenizer train --data $d/labeled.jsonl --data $d/unlabeled.jsonl --vocab 8000 -o "$tok"
common="--config configs/probe-small.json --no-progress --resume --threads 1"
ft="--data $d/labeled.jsonl --dev $d/dev.jsonl --dev-rouge-examples 300"
# fine-tuning only: 3000 updates (about 6 epochs of labeled.jsonl)
"$tutor" train $common --tokenizer "$tok" $ft --max-steps 3000 -o "$out/ft-only" 2>>"$out/log.txt"
for obj in infill gap-sentences; do
  # pretraining on the labeled and unlabeled sources (no dev or test text), then fine-tuning
  "$tutor" pretrain $common --tokenizer "$tok" --data $d/labeled.jsonl --data $d/unlabeled.jsonl \
    --objective $obj --max-steps 1000 -o "$out/$obj-pt" 2>>"$out/log.txt"
  "$tutor" train $common --init "$out/$obj-pt" $ft --lr 1e-3 --max-steps 1650 -o "$out/$obj-ft" 2>>"$out/log.txt"
done
echo "pretrain-compare: done; runs in $out"
