#!/bin/sh
# Plots dev ROUGE-L against wall time for the runs of scripts/pretrain-compare.sh: each
# fine-tuning run after pretraining starts at the pretraining's wall time, so the curves
# compare methods at equal total compute. Also prints the table for docs/training.md.
# Usage: scripts/plot-compare.sh [RUNS_DIR] [OUT.png]   (build/runs/compare, docs/pretrain-compare.png)
set -eu
runs="${1:-build/runs/compare}"
out="${2:-docs/pretrain-compare.png}"
command -v gnuplot >/dev/null || { echo "plot-compare.sh: gnuplot is not installed (scripts/deps.sh all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }
last_elapsed() { tail -n 1 "$1" | field elapsed_s; }
curve() { # metrics.jsonl, time offset -> "minutes rougeL" lines
  grep '"dev_rougeL"' "$1" | while read -r line; do
    t=$(echo "$line" | field elapsed_s)
    r=$(echo "$line" | field dev_rougeL)
    echo "$t $2 $r" | awk '{printf "%.2f %.3f\n", ($1 + $2) / 60, $3}'
  done
}
printf '| arm | pretraining | fine-tuning | total wall time | best dev ROUGE-L | dev loss at best |\n|---|---|---|---|---|---|\n'
plot=""
for arm in ft-only infill gap-sentences; do
  if [ "$arm" = ft-only ]; then ft="$runs/ft-only"; off=0; pt="-"
  else ft="$runs/$arm-ft"; [ -f "$runs/$arm-pt/metrics.jsonl" ] || continue
       off=$(last_elapsed "$runs/$arm-pt/metrics.jsonl"); pt="$(echo "$off" | awk '{printf "%.1f min", $1/60}')"; fi
  [ -f "$ft/metrics.jsonl" ] || continue
  curve "$ft/metrics.jsonl" "$off" >"$tmp/$arm.dat"
  best=$(sort -k2 -g "$tmp/$arm.dat" | tail -n 1 | awk '{print $2}')
  bl=$(grep '"dev_rougeL"' "$ft/metrics.jsonl" | awk -v b="$best" -F'"dev_rougeL":' '{split($2,a,","); if (sprintf("%.3f", a[1]) == b) print}' | head -n 1 | field dev_loss)
  total=$(echo "$off $(last_elapsed "$ft/metrics.jsonl")" | awk '{printf "%.1f min", ($1 + $2) / 60}')
  ftt=$(last_elapsed "$ft/metrics.jsonl" | awk '{printf "%.1f min", $1/60}')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$arm" "$pt" "$ftt" "$total" "$best" "$bl"
  plot="$plot${plot:+, }\"$tmp/$arm.dat\" using 1:2 with linespoints lw 2 title \"$arm\""
done
[ -n "$plot" ] || { echo "plot-compare.sh: no runs in $runs" >&2; exit 1; }
gnuplot <<GP
set terminal pngcairo size 900,540 noenhanced font ",11"
set output "$out"
set title "dev ROUGE-L against total wall time (pretraining + fine-tuning, one core)"
set xlabel "minutes"
set ylabel "dev ROUGE-L F (300 dev pairs, greedy)"
set grid
set key bottom right
plot $plot
GP
echo "plot-compare.sh: wrote $out" >&2
