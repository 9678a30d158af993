#!/bin/sh
# study-debdesc.sh: the study of issue 11 on debdesc with the shipped teacher (docs/RESULTS.md):
# every stage, 8 hours of a 2-core machine in all, two trainings at a time. Resumable: rerun
# the same command after a stop and finished rows are kept. When the study is complete its
# RESULTS.md, results.json and plots are copied to docs/study/debdesc/ and results.json to
# docs/results.json. Usage: scripts/study-debdesc.sh [OUT_DIR]   (default build/study/debdesc)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tutor="${TUTOR:-build/tutor}"
out="${1:-build/study/debdesc}"
d=build/data/debdesc
scripts/debdesc-fetch.sh >/dev/null
# a binary built on another machine (-march=native) dies of an illegal instruction: say so
"$tutor" --help >/dev/null 2>&1 || { echo "study-debdesc: $tutor does not run here (built for another CPU?): rebuild it" >&2; exit 1; }
"$tutor" study --teacher models/debdesc-teacher \
  --labeled $d/labeled.jsonl --unlabeled $d/unlabeled.jsonl --dev $d/dev.jsonl --test $d/test.jsonl \
  --unlabeled-gold $d/unlabeled-gold.jsonl --budget-hours 8 --jobs 2 --threads 2 -o "$out"
mkdir -p docs/study/debdesc
cp -f "$out/RESULTS.md" "$out/results.json" docs/study/debdesc/
for f in "$out"/*.png; do [ -f "$f" ] && cp -f "$f" docs/study/debdesc/; done
cp -f "$out/results.json" docs/results.json
echo "study-debdesc: results in docs/study/debdesc/ and docs/results.json" >&2
