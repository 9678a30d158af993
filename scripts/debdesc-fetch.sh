#!/bin/sh
# debdesc-fetch.sh: unpacks the debdesc benchmark that ships in data/debdesc/ (xz files)
# into build/data/debdesc/*.jsonl, where tests and the demo read it, and checks every file
# against data/debdesc/SHA256SUMS. Idempotent: files already there and intact are kept.
# Usage: scripts/debdesc-fetch.sh [OUT_DIR]   (default build/data/debdesc; run from anywhere)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/data/debdesc"
out="${1:-$root/build/data/debdesc}"

die() { echo "debdesc-fetch: $*" >&2; exit 1; }

command -v xz >/dev/null 2>&1 || die "xz is missing (Debian package xz-utils)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (Debian package coreutils)"
[ -f "$src/SHA256SUMS" ] || die "$src/SHA256SUMS not found"
mkdir -p "$out"

# One "HASH  NAME" line per file; every name must have its .xz beside SHA256SUMS.
while read -r want name; do
  [ -n "$name" ] || continue
  dst="$out/$name"
  if [ -f "$dst" ] && [ "$(sha256sum "$dst" | cut -d' ' -f1)" = "$want" ]; then
    continue
  fi
  [ -f "$src/$name.xz" ] || die "$src/$name.xz not found"
  tmp="$dst.tmp.$$"
  trap 'rm -f "$tmp"' EXIT INT TERM
  xz -dc "$src/$name.xz" >"$tmp" || die "$src/$name.xz: cannot decompress"
  got=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    rm -f "$tmp"
    die "$name: SHA256 mismatch: got $got, SHA256SUMS says $want (data/debdesc is damaged)"
  fi
  mv -f "$tmp" "$dst"
  trap - EXIT INT TERM
  echo "debdesc-fetch: $dst" >&2
done <"$src/SHA256SUMS"
cp -f "$src/README.md" "$src/SHA256SUMS" "$out/"
