#!/bin/sh
# ddtp-build.sh: builds the second task of the study, ddtp-de (Debian package synopses,
# English -> German, from the Debian Description Translation Project), from Debian 12
# (bookworm) main's Translation-en, Translation-de and Packages indices, fetched by apt-get
# into a lists folder of its own (the system's apt state is not touched).
# Usage: scripts/ddtp-build.sh [OUT_DIR [MIRROR]]   (default build/data/ddtp-de,
#        http://deb.debian.org/debian). OUT_DIR/.apt keeps apt's lists (about 40 MB).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="${1:-$root/build/data/ddtp-de}"
mirror="${2:-http://deb.debian.org/debian}"
work="$out/.apt"
if [ -f "$out/test.jsonl" ] && [ -f "$out/labeled.jsonl" ]; then
  echo "ddtp-build: $out is built (delete it to rebuild)" >&2
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "ddtp-build: apt-get is missing" >&2; exit 1; }
[ -x /usr/bin/python3 ] || { echo "ddtp-build: /usr/bin/python3 is missing (Debian package python3)" >&2; exit 1; }
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources.list.d"
echo "deb $mirror bookworm main" >"$work/sources.list"
apt-get -q \
  -o Dir::State::Lists="$work/lists" \
  -o Dir::Etc::SourceList="$work/sources.list" \
  -o Dir::Etc::SourceParts="$work/sources.list.d" \
  -o Dir::Cache="$work/cache" \
  -o Acquire::Languages=en,de \
  -o APT::Sandbox::User="$(id -un)" \
  update >&2
index() {
  f=$(ls "$work/lists/"*$1* 2>/dev/null | grep -v -e '\.diff' -e partial | head -n 1)
  [ -n "$f" ] || { echo "ddtp-build: no $1 index in $work/lists" >&2; exit 1; }
  echo "$f"
}
for name in Translation-en Translation-de; do
  /usr/lib/apt/apt-helper cat-file "$(index "_bookworm_main_i18n_$name")" >"$work/$name"
done
/usr/lib/apt/apt-helper cat-file "$(index "_bookworm_main_binary-*_Packages")" >"$work/Packages"
tmp="$out/.tmp.$$"
trap 'rm -rf "$tmp"' EXIT INT TERM
/usr/bin/python3 "$root/scripts/ddtp-build.py" "$work/Translation-en" "$work/Translation-de" "$work/Packages" "$tmp"
for f in "$tmp"/*.jsonl; do mv -f "$f" "$out/"; done
( cd "$out" && sha256sum labeled.jsonl unlabeled.jsonl unlabeled-gold.jsonl dev.jsonl test.jsonl >SHA256SUMS )
echo "ddtp-build: $out" >&2
