#!/bin/sh
# Runs each test executable given, one thread each, and reports a summary. Exits non-zero
# if any test fails. Environment: BUILD (the build folder), SANITIZE (1 under ASan).
set -u
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export TUTOR_BUILD="${BUILD:-build/release}"
if [ "${SANITIZE:-0}" = 1 ]; then
  # OpenBLAS and Python are not built with ASan; leaks in them are not ours.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
failed=""
n=0
start=$(date +%s)
for t in "$@"; do
  n=$((n + 1))
  name=${t#"$TUTOR_BUILD/tests/"}
  t0=$(date +%s)
  if "$t" --jobs 1 >"$t.log" 2>&1; then
    printf 'ok    %-40s %4ss\n' "$name" $(( $(date +%s) - t0 ))
  else
    printf 'FAIL  %-40s %4ss\n' "$name" $(( $(date +%s) - t0 ))
    tail -n 40 "$t.log"
    failed="$failed $name"
  fi
done
echo "ran $n test executables in $(( $(date +%s) - start ))s"
if [ -n "$failed" ]; then
  echo "FAILED:$failed"
  exit 1
fi
echo "all tests passed"
