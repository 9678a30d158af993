#!/bin/sh
# Installs the Debian packages tutor builds, tests and plots with, when they are missing.
# Usage: scripts/deps.sh [build|test|fuzz|all]   (default: build). Needs root to install;
# without root it only reports what is missing.
set -eu
what="${1:-build}"
build_pkgs="gcc make pkg-config libopenblas-pthread-dev libcjson-dev libutf8proc-dev libmicrohttpd-dev"
test_pkgs="libcriterion-dev python3-torch python3-numpy nodejs npm libopenmpi-dev openmpi-bin"
fuzz_pkgs="clang libclang-rt-14-dev"
all_pkgs="gnuplot-nox"
case "$what" in
  build) pkgs="$build_pkgs" ;;
  test) pkgs="$build_pkgs $test_pkgs" ;;
  fuzz) pkgs="$build_pkgs $fuzz_pkgs" ;;
  all) pkgs="$build_pkgs $test_pkgs $fuzz_pkgs $all_pkgs" ;;
  *) echo "deps.sh: unknown set '$what' (build, test, fuzz or all)" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
  case "$p" in nodejs|npm) command -v "$p" >/dev/null 2>&1 && continue ;; esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing Debian packages:$missing (run as root to install them)" >&2
  exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y --no-install-recommends $missing >/dev/null
fi
