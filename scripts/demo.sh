#!/bin/sh
# demo.sh (make demo): tutor's main job on a laptop CPU in about 12 minutes. Starting from the
# teacher shipped in models/debdesc-teacher, it makes the teacher's pseudo-targets (PTs) for a
# few thousand unlabeled inputs, distills a student (the teacher shrunk to encoder and decoder
# layers 0 and -1) by Joint-Teaching for a few minutes, and prints teacher and student side by
# side: ROUGE-L, BLEU, parameters, generation speed, a few examples. Everything goes to
# build/demo/; every stage resumes when rerun. Environment: TUTOR_DEMO_THREADS (default 2),
# TUTOR_DEMO_UNLABELED (unlabeled inputs given PTs, default 3000), TUTOR_DEMO_MINUTES
# (distillation time, default 5), TUTOR_DEMO_TEST (test pairs evaluated, default all),
# TUTOR_BIN (the program, default build/tutor).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tutor=${TUTOR_BIN:-build/tutor}
data=build/data/debdesc
teacher=models/debdesc-teacher
out=build/demo
threads=${TUTOR_DEMO_THREADS:-2}
n_unl=${TUTOR_DEMO_UNLABELED:-3000}
minutes=${TUTOR_DEMO_MINUTES:-5}
n_test=${TUTOR_DEMO_TEST:-0}
start=$(date +%s)

stage() {
  now=$(date +%s)
  printf '\n==> [%3ds] %s\n' $((now - start)) "$*"
}

[ -x "$tutor" ] || { echo "demo: $tutor not built (run make)" >&2; exit 1; }
[ -f "$teacher/model.safetensors" ] || { echo "demo: the shipped teacher $teacher is missing" >&2; exit 1; }
mkdir -p "$out"

stage "1/4 unpacking the debdesc data set into $data (Debian package description -> synopsis)"
scripts/debdesc-fetch.sh
wc -l "$data/labeled.jsonl" "$data/unlabeled.jsonl" "$data/dev.jsonl" "$data/test.jsonl" | sed 's/^/    /'
head -n "$n_unl" "$data/unlabeled.jsonl" >"$out/unlabeled.jsonl.tmp" && mv -f "$out/unlabeled.jsonl.tmp" "$out/unlabeled.jsonl"
head -n 300 "$data/dev.jsonl" >"$out/dev.jsonl.tmp" && mv -f "$out/dev.jsonl.tmp" "$out/dev.jsonl"

stage "2/4 the teacher ($teacher: $("$tutor" info "$teacher" 2>/dev/null | grep -m1 -i 'parameters' | sed 's/^ *//')) writes pseudo-targets for $n_unl unlabeled inputs (its beam search)"
"$tutor" generate --model "$teacher" --input "$out/unlabeled.jsonl" -o "$out/pt-unlabeled.jsonl" \
  --threads "$threads" --resume

stage "3/4 Joint-Teaching for $minutes minutes: a student (the teacher with encoder and decoder layers 0 and -1) learns from the teacher on gold, teacher PTs, and its own PTs scored by the teacher"
set +e
"$tutor" distill --teacher "$teacher" --method joint \
  --data "$data/labeled.jsonl" --pt "$out/pt-unlabeled.jsonl" --dev "$out/dev.jsonl" \
  --keep-encoder-layers 0,-1 --keep-decoder-layers 0,-1 \
  --lr 3e-4 --warmup 50 --schedule constant --max-steps 1000000 --max-minutes "$minutes" \
  --eval-every 100 --save-every 50 --log-every 25 --patience 0 --dev-rouge-examples 200 \
  --threads "$threads" --no-progress --resume -o "$out/student"
rc=$?
set -e
[ "$rc" -eq 0 ] || { echo "demo: distillation failed (exit status $rc)" >&2; exit 1; }
[ -f "$out/student/model.safetensors" ] || { echo "demo: no student was saved" >&2; exit 1; }

limit=""
[ "$n_test" -gt 0 ] && limit="--max-examples $n_test"
stage "4/4 teacher and student side by side on the debdesc test set (both with the teacher's decoding)"
# shellcheck disable=SC2086
"$tutor" eval --model "$out/student" --baseline "$teacher" --data "$data/test.jsonl" $limit \
  --threads "$threads" --speed-examples 100 --show-examples 5 --names student,teacher -q \
  --json "$out/eval.json" --generations "$out/generations.jsonl"

stage "done: outputs in $out/ (pt-unlabeled.jsonl, student/, eval.json, generations.jsonl)"
echo "'student - teacher' has a paired bootstrap 95% interval; ratio: student over teacher. The whole"
echo "study of the paper (every method, decided stage by stage, on any task): tutor study --help."
