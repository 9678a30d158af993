#!/bin/sh
# study-ddtp.sh: the same `tutor study` on a second task, ddtp-de (Debian package synopses,
# English -> German, from the Debian Description Translation Project; scripts/ddtp-build.sh),
# with no teacher given: the study trains its own (45 min), then runs --quick, and S3 and S8
# (with the student chosen among S1's candidates). Resumable. Results are copied to
# docs/study/ddtp-de/. Usage: scripts/study-ddtp.sh [OUT_DIR]   (default build/study/ddtp-de)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tutor="${TUTOR:-build/tutor}"
out="${1:-build/study/ddtp-de}"
d=build/data/ddtp-de
scripts/ddtp-build.sh "$d"
"$tutor" --help >/dev/null 2>&1 || { echo "study-ddtp: $tutor does not run here (built for another CPU?): rebuild it" >&2; exit 1; }
"$tutor" study --quick --labeled $d/labeled.jsonl --unlabeled $d/unlabeled.jsonl --dev $d/dev.jsonl \
  --test $d/test.jsonl --unlabeled-gold $d/unlabeled-gold.jsonl --threads 2 -o "$out-quick"
"$tutor" study --labeled $d/labeled.jsonl --unlabeled $d/unlabeled.jsonl --dev $d/dev.jsonl --test $d/test.jsonl \
  --unlabeled-gold $d/unlabeled-gold.jsonl --stages S1,S3,S8,ref --teacher-hours 0.75 --budget-hours 1.5 \
  --jobs 2 --threads 2 -o "$out"
mkdir -p docs/study/ddtp-de docs/study/ddtp-de-quick
cp -f "$out/RESULTS.md" "$out/results.json" docs/study/ddtp-de/
for f in "$out"/*.png; do [ -f "$f" ] && cp -f "$f" docs/study/ddtp-de/; done
cp -f "$out-quick/RESULTS.md" "$out-quick/results.json" docs/study/ddtp-de-quick/
echo "study-ddtp: results in docs/study/ddtp-de/" >&2
