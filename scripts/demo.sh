#!/bin/sh
# demo.sh (make demo): tutor's main job end to end on the bundled debdesc data, on a laptop
# CPU in under 10 minutes: unpack the data, train a BPE tokenizer, train a small
# encoder-decoder for a few minutes, then `tutor eval` it on the test set beside the lead-10
# baseline. Everything goes to build/demo/. Environment: TUTOR_DEMO_THREADS (default 2),
# TUTOR_DEMO_STEPS (training updates, default 1000), TUTOR_DEMO_MINUTES (a cap on training
# time, default 5: training is stopped with SIGTERM, which saves, after that long), TUTOR_BIN
# (the program, default build/tutor).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tutor=${TUTOR_BIN:-build/tutor}
data=build/data/debdesc
out=build/demo
threads=${TUTOR_DEMO_THREADS:-2}
steps=${TUTOR_DEMO_STEPS:-1000}
minutes=${TUTOR_DEMO_MINUTES:-5}
start=$(date +%s)

stage() {
  now=$(date +%s)
  printf '\n==> [%3ds] %s\n' $((now - start)) "$*"
}

[ -x "$tutor" ] || { echo "demo: $tutor not built (run make)" >&2; exit 1; }
mkdir -p "$out"

stage "1/4 unpacking the debdesc data set into $data (Debian package description -> synopsis)"
scripts/debdesc-fetch.sh
wc -l "$data/labeled.jsonl" "$data/unlabeled.jsonl" "$data/dev.jsonl" "$data/test.jsonl" | sed 's/^/    /'

stage "2/4 training a byte-level BPE tokenizer (8000 ids) on labeled + unlabeled sources and targets"
"$tutor" tokenizer train --data "$data/labeled.jsonl" --data "$data/unlabeled.jsonl" --vocab 8000 \
  -o "$out/tokenizer.json"

stage "3/4 training a small encoder-decoder (d_model 128, 2+2 layers, $steps updates, $threads threads, at most $minutes min)"
head -n 300 "$data/dev.jsonl" >"$out/dev-300.jsonl"
rm -rf "$out/model"
# Sources cut to 64 tokens (the synopsis is mostly in the first sentences) keep steps cheap.
# SIGTERM after the time cap: tutor train saves and exits; the best model so far stays.
set +e
timeout -s TERM $((minutes * 60)) "$tutor" train --tokenizer "$out/tokenizer.json" \
  --data "$data/labeled.jsonl" --dev "$out/dev-300.jsonl" -o "$out/model" \
  --arch mbart --d-model 128 --layers 2 --heads 4 --ffn 512 --dropout 0.1 \
  --max-source-tokens 64 --max-target-tokens 32 --batch-tokens 4096 --max-batch 96 \
  --lr 3e-3 --warmup 60 --schedule linear --max-steps "$steps" \
  --eval-every 125 --save-every 125 --log-every 25 --patience 0 \
  --label-smoothing 0.1 --seed 1 --threads "$threads" --no-progress
rc=$?
set -e
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 130 ]; then
  echo "demo: training failed (exit status $rc)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || echo "demo: training stopped at the $minutes-minute cap; evaluating the best model saved so far"
[ -f "$out/model/model.safetensors" ] || { echo "demo: no model was saved" >&2; exit 1; }

stage "4/4 tutor eval on the $(wc -l <"$data/test.jsonl") test examples (greedy), beside the lead-10 baseline"
"$tutor" eval --model "$out/model" --data "$data/test.jsonl" --lead 10 --threads "$threads" \
  --max-source-tokens 64 --speed-examples 50 \
  --json "$out/eval.json" --generations "$out/generations.jsonl"

if [ -x /usr/bin/python3 ]; then
  echo
  echo "a few test examples (reference | model | lead-10):"
  /usr/bin/python3 - "$out/generations.jsonl" <<'EOF'
import json, sys
for i, line in enumerate(open(sys.argv[1], encoding="utf-8")):
    if i >= 5:
        break
    e = json.loads(line)
    print(f"  {e['id']}:\n    ref:   {e['reference']}\n    model: {e['prediction'].strip()}\n    lead:  {e['lead']}")
EOF
fi

stage "done: outputs in $out/ (tokenizer.json, model/, eval.json, generations.jsonl)"
echo "Exposure bias (tutor eval --oracle TEACHER) and teacher-vs-student tables come with the distillation steps."
