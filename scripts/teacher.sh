#!/bin/sh
# teacher.sh (make teacher): retrains the shipped debdesc teacher from nothing, in stages
# that each resume where they stopped (rerun the script after an interruption):
#   1. tokenizer: byte-level BPE, 8000 ids, on labeled sources + targets and unlabeled sources
#   2. pretraining (configs/teacher-debdesc-pretrain.json): denoising, text infilling and
#      gap sentences mixed, on the sources of labeled.jsonl and unlabeled.jsonl only
#   3. fine-tuning (configs/teacher-debdesc-finetune.json) on labeled.jsonl only, the best
#      model by dev ROUGE-L
#   4. decoding chosen on dev (tutor tune), then test scores (tutor eval --lead 10)
# The unlabeled split's gold, dev targets beyond selection, and test are never trained on.
# Output: build/runs/teacher/ (OUT=...); copy OUT/final to models/debdesc-teacher to ship
# (and rewrite models/SHA256SUMS: cd models && sha256sum debdesc-teacher/* > SHA256SUMS).
# The shipped teacher's README says how its run went (stages stopped early to fit a session).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tutor=${TUTOR_BIN:-build/tutor}
out=${OUT:-build/runs/teacher}
d=build/data/debdesc
scripts/debdesc-fetch.sh >/dev/null
mkdir -p "$out"
say() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -f "$out/tok8k.json" ]; then
  say "1/4 tokenizer"
  "$tutor" tokenizer train --data $d/labeled.jsonl --data $d/unlabeled.jsonl --vocab 8000 -o "$out/tok8k.json"
fi
done_file() { [ -f "$1/DONE" ]; }
if ! done_file "$out/pretrain"; then
  say "2/4 pretraining (resumable; see $out/pretrain/metrics.jsonl)"
  "$tutor" pretrain --config configs/teacher-debdesc-pretrain.json --tokenizer "$out/tok8k.json" \
    --data $d/labeled.jsonl --data $d/unlabeled.jsonl --objective mix -o "$out/pretrain" --resume --no-progress
  touch "$out/pretrain/DONE"
fi
if ! done_file "$out/finetune"; then
  say "3/4 fine-tuning on labeled.jsonl (resumable; see $out/finetune/metrics.jsonl)"
  "$tutor" train --config configs/teacher-debdesc-finetune.json --init "$out/pretrain" \
    --data $d/labeled.jsonl --dev $d/dev.jsonl --dev-rouge-examples 500 -o "$out/finetune" --resume --no-progress
  touch "$out/finetune/DONE"
fi
say "4/4 decoding chosen on dev, then the test scores"
rm -rf "$out/final"
mkdir -p "$out/final"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json \
  generation_config.json metrics.jsonl; do
  cp "$out/finetune/$f" "$out/final/$f"
done
"$tutor" tune --model "$out/final" --data $d/dev.jsonl --max-examples 500 --beams 1,4,6 --length-penalties 1.0 \
  --no-repeat 0,3 | tee "$out/tune.txt"
"$tutor" eval --model "$out/final" --data $d/test.jsonl --lead 10 --threads 2 --json "$out/eval.json" | tee "$out/eval.txt"
say "teacher in $out/final"
