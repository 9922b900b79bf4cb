#!/usr/bin/env bash
# A bounded load test of examples/guard_server with wrk, on loopback, from
# one client address.  About a minute in all.
#
#   scripts/loadtest.sh [BUILD_DIR]     (default: build)
#
# 1. Accuracy: the server limits each client to RATE requests a second with
#    a burst of BURST; wrk sends far more for DURATION seconds.  The server
#    must accept RATE x DURATION + BURST of them within 0.5%, and answer
#    every other one 429 with a Retry-After of at least 1 second.
# 2. Cost: requests/s of the server with the guard (every part on, nothing
#    refused) and without it (--no-guard), under the same wrk load, in
#    interleaved rounds; prints the ratio.
# 3. Overload: a handler of 10 ms on a backend of 10 slots, driven by 100
#    connections: goodput and latency without the guard (requests wait in
#    line for the backend) and with --max-concurrent 10 (the excess is
#    answered 503 at once).
#
# Exits 1 when the accepted count is outside 0.5% or a 429 lacks a valid
# Retry-After (phase 1), or when a run could not be made; phases 2 and 3
# only report.  Tunables (environment): RATE BURST DURATION CONNS ROUNDS
# ROUND_S.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
bin=$build/examples/guard_server
lua=$here/loadtest.lua

RATE=${RATE:-100}
BURST=${BURST:-100}
DURATION=${DURATION:-10}
CONNS=${CONNS:-20}
ROUNDS=${ROUNDS:-7}
ROUND_S=${ROUND_S:-3}

say() { printf '%s\n' "$*"; }
fail() { printf 'loadtest: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$bin" ]; then
  fail "$bin not found: build it first (cmake --build $build --target guard_server)"
fi

# wrk, as scripts/deps.sh installs packages: with apt-get, as root or
# through passwordless sudo.
if ! command -v wrk >/dev/null 2>&1; then
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk"
  if [ "$(id -u)" -eq 0 ]; then
    sh -c "$cmd" >&2 || fail "could not install wrk"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n sh -c "$cmd" >&2 || fail "could not install wrk"
  else
    fail "wrk is missing; install it with: sudo sh -c '$cmd'"
  fi
fi

tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# On a machine of two cores or more the server and wrk each get one of
# their own, so that the figures do not depend on how the scheduler mixes
# them.
pin_server=()
pin_wrk=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0)
  pin_wrk=(taskset -c 1)
fi

# Starts the server with the given options on a free port; sets $port.
start_server() {
  : >"$tmp/out"
  "${pin_server[@]}" "$bin" --port 0 "$@" >"$tmp/out" 2>"$tmp/err" &
  server_pid=$!
  local i
  for i in $(seq 1 100); do
    port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/out")
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  cat "$tmp/err" >&2
  fail "guard_server did not start ($*)"
}

# Stops it with SIGTERM; it must exit 0.
stop_server() {
  local rc=0
  kill -TERM "$server_pid"
  wait "$server_pid" || rc=$?
  server_pid=
  [ "$rc" -eq 0 ] || fail "guard_server exited $rc after SIGTERM"
}

# wrk's figures: requests/s and a latency percentile ("50%", "99%").
rps_of() { sed -n 's/^Requests\/sec: *\([0-9.]*\)$/\1/p' "$1"; }
pct_of() { awk -v p="$2" '$1 == p { print $2 }' "$1"; }
status_of() { sed -n "s/^STATUS .*\\b$2=\\([0-9]*\\).*/\\1/p" "$1"; }

# ---- 1. accuracy ------------------------------------------------------------
expected=$((RATE * DURATION + BURST))
say "== 1. accuracy: rate $RATE/s, burst $BURST, ${DURATION}s of wrk with $CONNS connections from one address"
start_server --rate "$RATE" --burst "$BURST" --interval-ms 1000
"${pin_wrk[@]}" wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$lua" "http://127.0.0.1:$port/" \
  >"$tmp/wrk1" 2>&1 || { cat "$tmp/wrk1" >&2; fail "wrk failed"; }
stop_server
grep -q '^STATUS ' "$tmp/wrk1" || { cat "$tmp/wrk1" >&2; fail "no STATUS line from wrk"; }
ok=$(status_of "$tmp/wrk1" 200)
limited=$(status_of "$tmp/wrk1" 429)
bad_ra=$(status_of "$tmp/wrk1" bad_retry_after)
others=$(( $(status_of "$tmp/wrk1" 503) + $(status_of "$tmp/wrk1" 504) + $(status_of "$tmp/wrk1" other) ))
span=$(sed -n 's/^ *\([0-9]*\) requests in \([0-9.]*[a-z]*\),.*/\2/p' "$tmp/wrk1")
server_line=$(grep 'requests:' "$tmp/err" || true)
say "wrk: $(grep '^STATUS' "$tmp/wrk1") in $span"
say "server: ${server_line#guard_server: }"
dev=$(awk -v a="$ok" -v e="$expected" 'BEGIN { printf "%+.2f", (a - e) * 100 / e }')
say "accepted $ok, expected $expected ($dev%; allowed +-0.5%)"
# wrk stops a little after its nominal duration; what the rate allows over
# the span it measured, for comparison (the check uses the nominal one).
secs=$(printf '%s' "$span" | awk '/ms$/ { printf "%.3f", $1 / 1000; next } /m$/ { printf "%.3f", $1 * 60; next } { printf "%.3f", $1 + 0 }')
say "over wrk's measured span of ${secs}s the rate allows $(awk -v r="$RATE" -v s="$secs" -v b="$BURST" 'BEGIN { printf "%.0f", r * s + b }')"
result=0
if ! awk -v a="$ok" -v e="$expected" 'BEGIN { d = a - e; if (d < 0) d = -d; exit !(d <= e * 0.005) }'; then
  say "FAIL: accepted count outside 0.5% of $expected"
  result=1
fi
if [ "$limited" -eq 0 ]; then
  say "FAIL: no request was refused: the load did not exceed the limit"
  result=1
fi
if [ "$bad_ra" -ne 0 ]; then
  say "FAIL: $bad_ra answers 429 without a Retry-After of at least 1 s"
  result=1
fi
if [ "$others" -ne 0 ]; then
  say "FAIL: $others answers neither 200 nor 429"
  result=1
fi

# ---- 2. cost ------------------------------------------------------------------
# Every part of the guard is on and admits everything, so both servers
# answer every request 200 and the difference is what the guard costs.
say ""
say "== 2. cost: $ROUNDS interleaved rounds of ${ROUND_S}s, wrk -t1 -c50, handler 0 ms"
guard_opts=(--rate 100000000 --burst 100000000 --max-concurrent 100000
            --handler-timeout-ms 10000)
ratios=()
all_guard=()
all_bare=()
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which goes first, so neither always gets the warmer machine.
  if [ $((r % 2)) -eq 1 ]; then order="guard bare"; else order="bare guard"; fi
  for mode in $order; do
    if [ "$mode" = guard ]; then start_server --quiet "${guard_opts[@]}"
    else start_server --quiet --no-guard; fi
    "${pin_wrk[@]}" wrk -t1 -c50 -d"${ROUND_S}s" "http://127.0.0.1:$port/" >"$tmp/wrk2" 2>&1 \
      || { cat "$tmp/wrk2" >&2; fail "wrk failed"; }
    stop_server
    if grep -q 'Non-2xx' "$tmp/wrk2"; then
      cat "$tmp/wrk2" >&2
      fail "the $mode server refused requests in the cost run"
    fi
    eval "rps_$mode=$(rps_of "$tmp/wrk2")"
  done
  ratio=$(awk -v g="$rps_guard" -v b="$rps_bare" 'BEGIN { printf "%.4f", g / b }')
  ratios+=("$ratio")
  all_guard+=("$rps_guard")
  all_bare+=("$rps_bare")
  say "round $r: with guard $rps_guard req/s, without $rps_bare req/s, ratio $ratio"
done
median_of() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median=$(median_of "${ratios[@]}")
mg=$(median_of "${all_guard[@]}")
mb=$(median_of "${all_bare[@]}")
cost=$(awk -v m="$median" 'BEGIN { printf "%.1f", (1 - m) * 100 }')
say "median of the rounds' ratios $median: the guard costs $cost% of requests/s (target: at most 3%)"
say "median req/s: with guard $mg, without $mb (ratio $(awk -v g="$mg" -v b="$mb" 'BEGIN { printf "%.4f", g / b }'))"

# ---- 3. overload --------------------------------------------------------------
say ""
say "== 3. overload: handler 10 ms on 10 backend slots, wrk -t1 -c100 for ${ROUND_S}s"
for mode in bare guard; do
  if [ "$mode" = guard ]; then
    start_server --quiet --rate 0 --max-concurrent 10 --handler-ms 10 --backend-slots 10
  else
    start_server --quiet --no-guard --handler-ms 10 --backend-slots 10
  fi
  "${pin_wrk[@]}" wrk -t1 -c100 -d"${ROUND_S}s" --latency -s "$lua" "http://127.0.0.1:$port/" \
    >"$tmp/wrk3" 2>&1 || { cat "$tmp/wrk3" >&2; fail "wrk failed"; }
  stop_server
  ok=$(status_of "$tmp/wrk3" 200)
  shed=$(status_of "$tmp/wrk3" 503)
  rps=$(rps_of "$tmp/wrk3")
  goodput=$(awk -v n="$ok" -v s="$ROUND_S" 'BEGIN { printf "%.0f", n / s }')
  label=$([ "$mode" = guard ] && echo "with guard (max 10 at once)" || echo "without guard")
  say "$label: goodput $goodput 200/s, $rps req/s in all ($shed answered 503), latency p50 $(pct_of "$tmp/wrk3" 50%) p99 $(pct_of "$tmp/wrk3" 99%) over all answers"
done

say ""
if [ "$result" -eq 0 ]; then say "loadtest: PASS"; else say "loadtest: FAIL"; fi
exit "$result"
