#!/bin/sh
# Installs the npm packages that tokenizer tests and bench/tokenize-speed compare against
# (GPT-2's reference encoder, Hugging Face tokenizers) into build/node. Test-only: tutor
# itself never needs them. Idempotent, and quick when they are already there.
# Usage: scripts/npm-deps.sh   (then NODE_PATH=build/node/node_modules)
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/build/node"
gpt3_version="1.1.4"
tokenizers_version="0.23.2"
mods="$dir/node_modules"
have() { [ -f "$mods/$1/package.json" ] && grep -q "\"version\": *\"$2\"" "$mods/$1/package.json"; }
if have gpt-3-encoder "$gpt3_version" && have tokenizers "$tokenizers_version" &&
   node -e "require('$mods/tokenizers')" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm-deps.sh: npm is not installed (apt-get install nodejs npm)" >&2
  exit 1
fi
mkdir -p "$dir"
# A lock directory keeps two tests from installing at once.
lock="$dir/.install.lock"
i=0
while ! mkdir "$lock" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 300 ]; then echo "npm-deps.sh: $lock held for 5 minutes; remove it" >&2; exit 1; fi
  sleep 1
done
trap 'rmdir "$lock"' EXIT INT TERM
[ -f "$dir/package.json" ] || printf '{"name":"tutor-test-deps","private":true}\n' >"$dir/package.json"
echo "npm-deps.sh: installing gpt-3-encoder@$gpt3_version tokenizers@$tokenizers_version into $dir" >&2
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error \
  "gpt-3-encoder@$gpt3_version" "tokenizers@$tokenizers_version" >&2)
node -e "require('$mods/tokenizers')" >/dev/null
