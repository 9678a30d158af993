#!/bin/sh
# debdesc-rebuild.sh: rebuilds the debdesc benchmark from Debian 12 (bookworm) main's
# Translation-en and Packages indices, fetched by apt-get into a lists folder of its own
# (the system's apt state is not touched), and reports rows added/removed/changed per file
# against the shipped copy. Uses only Debian tools: apt-get, apt-helper, /usr/bin/python3.
# Usage: scripts/debdesc-rebuild.sh OUT_DIR [MIRROR]   (default http://deb.debian.org/debian)
# OUT_DIR/.apt keeps apt's lists and the decompressed indices (about 110 MB; delete at will).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [MIRROR]" >&2; exit 2; }
out="$1"
mirror="${2:-http://deb.debian.org/debian}"
work="$out/.apt"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources.list.d"
echo "deb $mirror bookworm main" >"$work/sources.list"

apt-get -q \
  -o Dir::State::Lists="$work/lists" \
  -o Dir::Etc::SourceList="$work/sources.list" \
  -o Dir::Etc::SourceParts="$work/sources.list.d" \
  -o Dir::Cache="$work/cache" \
  -o Acquire::Languages=en \
  -o APT::Sandbox::User="$(id -un)" \
  update >&2

# apt keeps indices compressed (lz4 or otherwise); apt-helper reads any of its formats.
find_index() {
  f=$(ls "$work/lists/"*$1* 2>/dev/null | grep -v -e '\.diff' -e 'partial' | head -n 1)
  [ -n "$f" ] || { echo "debdesc-rebuild: no $1 index in $work/lists" >&2; exit 1; }
  echo "$f"
}
translation=$(find_index _bookworm_main_i18n_Translation-en)
packages=$(find_index "_bookworm_main_binary-*_Packages")
/usr/lib/apt/apt-helper cat-file "$translation" >"$work/Translation-en"
/usr/lib/apt/apt-helper cat-file "$packages" >"$work/Packages"
echo "debdesc-rebuild: Translation-en SHA256 $(sha256sum "$work/Translation-en" | cut -d' ' -f1)" >&2

ref="$root/build/data/debdesc"
"$root/scripts/debdesc-fetch.sh" "$ref" >&2
/usr/bin/python3 "$root/scripts/debdesc-rebuild.py" "$work/Translation-en" "$work/Packages" "$out" "$ref"
