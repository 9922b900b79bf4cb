#!/usr/bin/env bash
# Run every benchmark binary BUILD_DIR/bench/bench_* (sorted), then the peer
# benches (scripts/bench-peers.sh: Node.js libraries, skipped with a message
# when Node.js or the registry is unavailable), collect the JSON lines they
# print (lines starting with '{') into BUILD_DIR/bench.jsonl, print them as an
# aligned table, then the ratios and targets (scripts/bench-summary.sh). All
# other output goes to BUILD_DIR/bench.log.
#
#   scripts/bench.sh [BUILD_DIR]      (default: build)
#   BENCH_PEERS=0 scripts/bench.sh    (leave the peers out)
#
# The binaries read, from the environment: BENCH_ROUNDS (rounds of every
# interleaved set, default 60), BENCH_ROUND_SAMPLES (samples of each bench
# per round, default 4) and BENCH_FILTER (comma-separated globs of bench
# names); see bench/bench.h.  The table shows the best sample (ns/op) and
# the median over the rounds of each round's best (median).
#
# Exits non-zero if any benchmark binary fails. Needs only bash + awk (and
# node + npm for the peers).
set -euo pipefail

build_dir=${1:-build}
bench_dir="$build_dir/bench"
out="$build_dir/bench.jsonl"
log="$build_dir/bench.log"

src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bins=()
if [ -d "$bench_dir" ]; then
  while IFS= read -r f; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    # Skip stale binaries whose bench/NAME.c has been removed.
    if [ ! -f "$src_dir/bench/${name#bench_}.c" ]; then
      echo "bench: skipping stale $f (no bench/${name#bench_}.c)" >&2
      continue
    fi
    bins+=("$f")
  done < <(find "$bench_dir" -maxdepth 1 -name 'bench_*' -type f | LC_ALL=C sort)
fi
if [ "${#bins[@]}" -eq 0 ]; then
  echo "bench: no benchmark binaries in $bench_dir (configure with -DFY_BUILD_BENCH=ON and add bench/*.c)" >&2
  exit 1
fi

: >"$out"
: >"$log"
failed=()
for b in "${bins[@]}"; do
  name=$(basename "$b")
  printf 'bench: running %s\n' "$name" >&2
  tmp=$(mktemp)
  rc=0
  "$b" >"$tmp" || rc=$?
  { echo "### $name (exit $rc)"; cat "$tmp"; } >>"$log"
  grep '^{' "$tmp" >>"$out" || true
  rm -f "$tmp"
  if [ "$rc" -ne 0 ]; then
    echo "bench: $name FAILED (exit $rc)" >&2
    failed+=("$name")
  fi
done

# The peers, in the same run.  Their "skipped: ..." line, if any, is shown.
if [ "${BENCH_PEERS:-1}" != "0" ]; then
  printf 'bench: running peers (scripts/bench-peers.sh)\n' >&2
  tmp=$(mktemp)
  rc=0
  bash "$src_dir/scripts/bench-peers.sh" "$build_dir" >"$tmp" || rc=$?
  { echo "### peers (exit $rc)"; cat "$tmp"; } >>"$log"
  grep '^{' "$tmp" >>"$out" || true
  grep '^skipped:' "$tmp" >&2 || true
  rm -f "$tmp"
  if [ "$rc" -ne 0 ]; then
    echo "bench: peers FAILED (exit $rc)" >&2
    failed+=("peers")
  fi
fi

echo
awk '
# Minimal parser for one flat JSON object per line. Fills K[1..n] and V[1..n];
# string values are unquoted, anything else is kept verbatim.
function parse(s,    i, c, len, key, val, depth, instr, esc) {
  n = 0; len = length(s); i = 1
  while (i <= len) {
    c = substr(s, i, 1)
    if (c == "\"") {
      key = ""; i++
      while (i <= len && (c = substr(s, i, 1)) != "\"") {
        if (c == "\\") { i++; c = substr(s, i, 1) }
        key = key c; i++
      }
      i++
      while (i <= len && substr(s, i, 1) ~ /[ \t:]/) i++
      val = ""
      if (substr(s, i, 1) == "\"") {
        i++
        while (i <= len && (c = substr(s, i, 1)) != "\"") {
          if (c == "\\") { i++; c = substr(s, i, 1) }
          val = val c; i++
        }
        i++
      } else {
        depth = 0; instr = 0; esc = 0
        while (i <= len) {
          c = substr(s, i, 1)
          if (instr) {
            if (esc) esc = 0
            else if (c == "\\") esc = 1
            else if (c == "\"") instr = 0
          } else if (c == "\"") instr = 1
          else if (c == "[" || c == "{") depth++
          else if (c == "]" || c == "}") { if (depth == 0) break; depth-- }
          else if (c == "," && depth == 0) break
          val = val c; i++
        }
        sub(/[ \t]+$/, "", val)
      }
      n++; K[n] = key; V[n] = val
    } else {
      i++
    }
  }
  return n
}
function max(a, b) { return a > b ? a : b }
function row(s) { sub(/ +$/, "", s); print s }
BEGIN {
  rows = 0
  wn = length("bench"); wt = length("ns/op"); wm = length("median")
  wa = length("allocs/op")
}
{
  parse($0)
  name = ""; ns = "-"; md = "-"; al = "-"; extra = ""
  for (j = 1; j <= n; j++) {
    if (K[j] == "bench") name = V[j]
    else if (K[j] == "ns_per_op") ns = V[j]
    else if (K[j] == "median_ns_per_op") md = V[j]
    else if (K[j] == "allocs_per_op") al = V[j]
    else extra = extra (extra == "" ? "" : " ") K[j] "=" V[j]
  }
  if (name == "") name = "?"
  rows++; RN[rows] = name; RT[rows] = ns; RM[rows] = md; RA[rows] = al
  RX[rows] = extra
  wn = max(wn, length(name)); wt = max(wt, length(ns)); wm = max(wm, length(md))
  wa = max(wa, length(al))
}
END {
  if (rows == 0) { print "bench: no JSON result lines"; exit 0 }
  fmt = "%-" wn "s  %" wt "s  %" wm "s  %" wa "s  %s"
  row(sprintf(fmt, "bench", "ns/op", "median", "allocs/op", "other"))
  rule = ""; for (j = 0; j < wn + wt + wm + wa + 6 + 7; j++) rule = rule "-"
  print rule
  for (r = 1; r <= rows; r++)
    row(sprintf(fmt, RN[r], RT[r], RM[r], RA[r], RX[r]))
}
' "$out"
echo
echo "bench: $(wc -l <"$out") result(s) from ${#bins[@]} binar$([ "${#bins[@]}" -eq 1 ] && echo y || echo ies) -> $out (raw output: $log)"

bash "$src_dir/scripts/bench-summary.sh" "$out"

if [ "${#failed[@]}" -ne 0 ]; then
  echo "bench: FAILED: ${failed[*]}" >&2
  exit 1
fi
