#!/bin/sh
# Plots dev ROUGE-L and dev loss (on gold) against wall time for the two arms of
# scripts/distill-compare.sh. Usage: scripts/plot-distill-compare.sh [RUNS_DIR] [OUT.png]
# (build/runs/distill, docs/distill-compare.png); arms named FT_ARM and KD_ARM (ft-gold, kd-pt).
set -eu
runs="${1:-build/runs/distill}"
out="${2:-docs/distill-compare.png}"
ft="${FT_ARM:-ft-gold}"
kd="${KD_ARM:-kd-pt}"
command -v gnuplot >/dev/null || { echo "plot-distill-compare.sh: gnuplot is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arm in "$ft" "$kd"; do
  grep '"dev_rougeL"' "$runs/$arm/metrics.jsonl" |
    sed 's/.*"dev_loss":\([0-9.eE+-]*\),"dev_rougeL":\([0-9.eE+-]*\).*"elapsed_s":\([0-9.eE+-]*\).*/\3 \2 \1/' |
    awk '{printf "%.2f %.3f %.4f\n", $1 / 60, $2, $3}' >"$tmp/$arm.dat"
done
gnuplot <<GP
set terminal pngcairo size 1000,420 noenhanced font ",11"
set output "$out"
set multiplot layout 1,2
set xlabel "wall time (min, one core)"
set grid
set key bottom right
set title "dev ROUGE-L (greedy, 300 pairs)"
plot "$tmp/$ft.dat" using 1:2 with linespoints lw 2 title "fine-tune on gold", \
     "$tmp/$kd.dat" using 1:2 with linespoints lw 2 title "word-level KD on gold + teacher PTs"
set title "dev loss on gold (nats per token)"
set key top right
plot "$tmp/$ft.dat" using 1:3 with linespoints lw 2 title "fine-tune on gold", \
     "$tmp/$kd.dat" using 1:3 with linespoints lw 2 title "word-level KD on gold + teacher PTs"
unset multiplot
GP
echo "wrote $out"
