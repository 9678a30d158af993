#!/bin/sh
# Plots a training run's metrics.jsonl: training loss and dev loss against step, with
# gnuplot (PNG). Usage: scripts/plot-loss.sh RUN_DIR/metrics.jsonl OUT.png [TITLE]
set -eu
[ $# -ge 2 ] || { echo "usage: scripts/plot-loss.sh METRICS.jsonl OUT.png [TITLE]" >&2; exit 2; }
metrics=$1
out=$2
title=${3:-$(basename "$(dirname "$metrics")")}
command -v gnuplot >/dev/null || { echo "plot-loss.sh: gnuplot is not installed (scripts/deps.sh all)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# one number out of a flat JSON object line
field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }
grep '"loss"' "$metrics" | while read -r line; do
  printf '%s %s\n' "$(echo "$line" | field step)" "$(echo "$line" | field loss)"
done >"$tmp/train.dat"
grep '"dev_loss"' "$metrics" | while read -r line; do
  printf '%s %s\n' "$(echo "$line" | field step)" "$(echo "$line" | field dev_loss)"
done >"$tmp/dev.dat"
gnuplot <<GP
set terminal pngcairo size 900,540 noenhanced font ",11"
set output "$out"
set title "$title"
set xlabel "optimizer step"
set ylabel "cross-entropy (nats per target token)"
set grid
set key top right
plot "$tmp/train.dat" using 1:2 with lines lw 2 title "training loss (label-smoothed)", \
     "$tmp/dev.dat" using 1:2 with linespoints lw 2 pt 7 title "dev loss"
GP
echo "plot-loss.sh: wrote $out"
