#!/usr/bin/env bash
# Run the peer benchmarks (bench/peers/bench.js): the Node.js libraries a
# user would otherwise pick (opossum, cockatiel, rate-limiter-flexible), at
# the exact versions pinned in bench/peers/package-lock.json.
#
#   scripts/bench-peers.sh [BUILD_DIR]      (default: build)
#
# The packages are installed with `npm ci` into BUILD_DIR/peers (never into
# the source tree) and reused while the lockfile is unchanged, so a rerun
# needs no network.  Prints the JSON result lines on stdout.
#
# Offline-safe: without node/npm, or when the registry cannot be reached,
# it prints one "skipped: ..." line and exits 0.  It never prints a number
# it did not measure.  A crash of bench.js itself is an error (exit 1).
set -uo pipefail

build_dir=${1:-build}
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
peers_src="$src_dir/bench/peers"
work="$build_dir/peers"

skip() {
  echo "skipped: peer benches: $*"
  exit 0
}

command -v node >/dev/null 2>&1 ||
  skip "node not found (install Node.js >= 18 and npm to compare with" \
    "opossum, cockatiel and rate-limiter-flexible)"
command -v npm >/dev/null 2>&1 ||
  skip "npm not found (install npm to fetch the pinned peer packages)"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null ||
  echo 0)
if [ "${node_major:-0}" -lt 18 ] 2>/dev/null; then
  skip "node $(node --version 2>/dev/null) is too old (need >= 18)"
fi

mkdir -p "$work" || skip "cannot create $work"
cp "$peers_src/package.json" "$peers_src/package-lock.json" \
  "$peers_src/bench.js" "$work/" || skip "cannot copy bench/peers to $work"

# Install unless the same lockfile was installed before.
if ! cmp -s "$work/package-lock.json" "$work/.installed-lock" ||
  [ ! -d "$work/node_modules" ]; then
  echo "bench-peers: npm ci in $work" >&2
  if ! (cd "$work" && timeout 300 npm ci --no-audit --no-fund \
    --prefer-offline --fetch-retries=1 --fetch-timeout=30000 \
    --loglevel=error >npm.log 2>&1); then
    rm -f "$work/.installed-lock"
    skip "npm ci failed (registry unreachable or offline?); see $work/npm.log"
  fi
  cp "$work/package-lock.json" "$work/.installed-lock"
fi

cd "$work" || exit 1
node bench.js
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "bench-peers: bench.js failed (exit $rc)" >&2
  exit 1
fi
