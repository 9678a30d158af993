#!/bin/bash
# Runs each test executable given, one thread each, JOBS at a time (default: the number of
# cores), and prints one line per executable in the order given, with the log tail of any
# that failed. Exits non-zero if any failed. Environment: BUILD (the build folder),
# SANITIZE (1 under ASan), JOBS.
set -u
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export TUTOR_BUILD="${BUILD:-build/release}"
# OpenBLAS misreads some CPUs and picks slow kernels; tutor knows the right set (test
# programs link OpenBLAS directly, so they get it through the environment)
if [ -z "${OPENBLAS_CORETYPE:-}" ] && core=$("$TUTOR_BUILD/tutor" info --blas 2>/dev/null); then
  export OPENBLAS_CORETYPE="$core"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  # OpenBLAS and Python are not built with ASan; leaks in them are not ours.
  # allocator_may_return_null: a refused huge allocation reports "out of memory" as in release
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
jobs="${JOBS:-$(getconf _NPROCESSORS_ONLN)}"  # not nproc: it obeys OMP_NUM_THREADS
start=$(date +%s)
run_one() {
  t0=$(date +%s)
  if "$1" --jobs 1 >"$1.log" 2>&1; then echo ok >"$1.status"; else echo FAIL >"$1.status"; fi
  echo $(( $(date +%s) - t0 )) >"$1.secs"
}
running=0
for t in "$@"; do
  rm -f "$t.status" "$t.secs"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
failed=""
n=0
for t in "$@"; do
  n=$((n + 1))
  name=${t#"$TUTOR_BUILD/tests/"}
  status=$(cat "$t.status" 2>/dev/null || echo FAIL)
  printf '%-5s %-40s %4ss\n' "$status" "$name" "$(cat "$t.secs" 2>/dev/null || echo '?')"
  if [ "$status" != ok ]; then
    tail -n 40 "$t.log"
    failed="$failed $name"
  fi
done
echo "ran $n test executables in $(( $(date +%s) - start ))s ($jobs at a time)"
if [ -n "$failed" ]; then
  echo "FAILED:$failed"
  exit 1
fi
echo "all tests passed"
