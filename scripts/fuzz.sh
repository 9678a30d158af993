#!/bin/sh
# fuzz.sh (make fuzz): runs each libFuzzer harness for SECONDS on a working copy of its seed
# corpus (fuzz/corpus/NAME, made from real files), with ASan + UBSan, leak detection, and a
# 2 GB limit on memory and on any single allocation. Prints the executions per harness;
# fails on any crash, sanitizer report, leak, timeout or oversized allocation (the
# reproducer is kept in build/fuzz/artifacts/).
# Usage: scripts/fuzz.sh SECONDS HARNESS...
set -u
secs="$1"
shift
out=build/fuzz
mkdir -p "$out/artifacts"
failed=""
for h in "$@"; do
  name=$(basename "$h" | sed 's/^fuzz_//')
  work="$out/corpus/$name"
  mkdir -p "$work"
  log="$out/$name.log"
  "$h" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$name-" "$work" "fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    printf 'ok    %-16s %10s executions in %ss\n' "$name" "${execs:-?}" "$secs"
  else
    printf 'FAIL  %-16s exit %d (see %s)\n' "$name" "$rc" "$log"
    grep -m 5 -E 'ERROR|SUMMARY|==[0-9]+==' "$log" | sed 's/^/      /'
    failed="$failed $name"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed"
  exit 1
fi
echo "fuzz: every harness ran ${secs}s with no crash, leak or sanitizer report"
