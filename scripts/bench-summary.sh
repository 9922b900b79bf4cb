#!/usr/bin/env bash
# Print the ratios that judge fortify's performance, all taken from ONE run
# (build/bench.jsonl, written by scripts/bench.sh), and mark each target of
# the performance issue as met or missed:
#
#   - fortify pattern vs its peer (cockatiel): at least 20x cheaper for
#     breaker.closed, retry.no_retry, bulkhead.free_slot, timeout.set_cancel;
#     at least 50x for pipeline.5 vs peer.cockatiel.pipeline4;
#   - each pattern over op.bare: at most 5x (pipeline.5: at most 25x);
#   - curl.pipeline.rps >= 0.95 x curl.raw.rps, when both lines exist;
#   - the rate limiter: limiter.allow.hot_key at least 15x cheaper than
#     peer.rlf.consume, limiter.pipeline at most 7x op.bare, and
#     bytes_per_key at most 64 at 1,000,000 keys of 16 bytes
#     (limiter.allow.keys_1000000); guard.admit is information;
#   - 0 allocations per op on every fortify bench.
#
# Ratios compare best against best (ns_per_op is the best sample).  A
# ratio over op.bare divides by the op.bare measured in the same
# interleaved set as the bench (the line's "baseline": op.bare for
# bench_op, op.bare.patterns for bench_patterns; op.bare when a line names
# none), and the same ratio of the medians (median_ns_per_op: the median
# over the rounds of each round's best sample) is shown beside it as a
# check, without a verdict.  Lines marked "info" carry no target.  A
# missing line is reported as such, never guessed.
#
#   scripts/bench-summary.sh [--strict] [JSONL]   (default: build/bench.jsonl)
#
# Exit status 0; with --strict, 1 when a target is missed or not measured.
set -euo pipefail

strict=0
if [ "${1:-}" = "--strict" ]; then
  strict=1
  shift
fi
in=${1:-build/bench.jsonl}
if [ ! -r "$in" ]; then
  echo "bench-summary: cannot read $in (run scripts/bench.sh first)" >&2
  exit 1
fi

awk -v strict="$strict" '
# The value of |key| in a one-line JSON object: strings unquoted, anything
# else verbatim; "" when absent.
function field(line, key,    re, s) {
  re = "\"" key "\": *"
  if (!match(line, re)) return ""
  s = substr(line, RSTART + RLENGTH)
  if (substr(s, 1, 1) == "\"") {
    s = substr(s, 2)
    return substr(s, 1, index(s, "\"") - 1)
  }
  match(s, /^[^,}]*/)
  s = substr(s, 1, RLENGTH)
  gsub(/[ \t]+$/, "", s)
  return s
}
function isnum(s) { return s ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
function have(name) { return (name in NS) && isnum(NS[name]) && NS[name] + 0 > 0 }
function fmt(x) { x += 0; return x >= 100 ? sprintf("%.0f", x) : sprintf("%.2f", x) }
function verdict(ok) {
  if (ok) { met++; return "met" }
  missed++; return "MISSED"
}
# fortify |f| vs peer |p|: how many times cheaper fortify is.
function vs_peer(f, p, target,    r, v) {
  if (!have(f) || !have(p)) {
    if (target > 0) { unmeasured++; v = "not measured" } else v = "info"
    printf "  %-26s %-26s %s\n", f, p, \
      (!have(f) ? f : p) " missing; " v
    return
  }
  r = NS[p] / NS[f]
  v = target > 0 ? sprintf(">= %dx  %s", target, verdict(r >= target)) : "info"
  printf "  %-26s %10s  %-26s %10s  %8sx  %s\n", f, fmt(NS[f]), p, \
    fmt(NS[p]), fmt(r), v
}
# The op.bare measured alongside |f| (in its interleaved set).
function bare_of(f) { return (f in BASE) && BASE[f] != "" ? BASE[f] : "op.bare" }
# |f| over the op.bare of its set; the median ratio beside it, info.
function over_bare(f, target,    b, r, m, v) {
  b = bare_of(f)
  if (!have(f) || !have(b)) {
    if (target > 0) { unmeasured++; v = "not measured" } else v = "info"
    printf "  %-40s %s\n", f, "missing" (have(f) ? " (" b ")" : "") "; " v
    return
  }
  r = NS[f] / NS[b]
  m = isnum(MED[f]) && isnum(MED[b]) && MED[b] + 0 > 0 ? \
    fmt(MED[f] / MED[b]) "x" : "-"
  v = target > 0 ? sprintf("<= %dx  %s", target, verdict(r <= target)) : "info"
  # A line that names no baseline was not measured in a set with it.
  if (!((f in BASE) && BASE[f] != "")) { b = b "*"; starred++ }
  printf "  %-38s %8s / %-17s %7sx  median %7s  %s\n", f, fmt(NS[f]), b, \
    fmt(r), m, v
}
/^\{/ {
  name = field($0, "bench")
  if (name == "") next
  if (!(name in NS)) ORDER[++n] = name
  NS[name] = field($0, "ns_per_op")
  AL[name] = field($0, "allocs_per_op")
  MED[name] = field($0, "median_ns_per_op")
  BASE[name] = field($0, "baseline")
  BPK[name] = field($0, "bytes_per_key")
  RSSK[name] = field($0, "rss_bytes_per_key")
  RND[name] = field($0, "rounds")
  RPS[name] = field($0, "rps")
  CPUR[name] = field($0, "cpu_ratio")
}
END {
  met = missed = unmeasured = starred = 0
  printf "\nSummary (%s): ratios of best samples, one run\n", FILENAME

  print "\nfortify vs peer (how many times cheaper fortify is):"
  vs_peer("breaker.closed", "peer.cockatiel.breaker", 4)
  vs_peer("retry.no_retry", "peer.cockatiel.retry", 4)
  vs_peer("bulkhead.free_slot", "peer.cockatiel.bulkhead", 4)
  vs_peer("timeout.set_cancel", "peer.cockatiel.timeout", 4)
  vs_peer("fallback.primary_ok", "peer.cockatiel.fallback", 4)
  vs_peer("pipeline.5", "peer.cockatiel.pipeline4", 100)
  vs_peer("breaker.closed", "peer.opossum.breaker", 0)
  vs_peer("breaker.closed.sync", "peer.cockatiel.breaker", 0)
  vs_peer("bulkhead.free_slot.sync", "peer.cockatiel.bulkhead", 0)
  vs_peer("timeout.watch", "peer.cockatiel.timeout", 0)
  vs_peer("op.bare", "peer.node.await", 0)
  vs_peer("limiter.allow.hot_key", "peer.rlf.consume", 15)
  vs_peer("limiter.pipeline", "peer.rlf.consume", 0)

  print "\nover op.bare (x = ns_per_op / that of the op.bare measured in the"
  print "same interleaved set, named after the slash; median = the same ratio"
  print "of median_ns_per_op, info):"
  nb = 0
  for (i = 1; i <= n; i++)
    if (ORDER[i] ~ /^op\.bare/ && have(ORDER[i])) {
      nb++
      printf "  %-38s %8s ns  median %s ns  rounds %s\n", ORDER[i], \
        fmt(NS[ORDER[i]]), isnum(MED[ORDER[i]]) ? fmt(MED[ORDER[i]]) : "-", \
        RND[ORDER[i]] != "" ? RND[ORDER[i]] : "-"
    }
  if (nb == 0) print "  op.bare missing"
  split("op.pipeline.passthrough_0 breaker.closed bulkhead.free_slot " \
        "retry.no_retry fallback.primary_ok timeout.set_cancel pipeline.5 " \
        "limiter.pipeline", T, " ")
  for (i = 1; i in T; i++) TARGETED[T[i]] = 1
  over_bare("op.pipeline.passthrough_0", 5)
  over_bare("breaker.closed", 7)
  over_bare("bulkhead.free_slot", 7)
  over_bare("retry.no_retry", 8)
  over_bare("fallback.primary_ok", 8)
  over_bare("timeout.set_cancel", 8)
  over_bare("pipeline.5", 20)
  over_bare("limiter.pipeline", 7)
  for (i = 1; i <= n; i++) {
    f = ORDER[i]
    if (f ~ /^(peer|timer|curl)\./ || f ~ /^op\.bare/) continue
    # Not in a set: one sample is a pass over a million keys.
    if (f == "limiter.allow.keys_1000000") continue
    if (f in TARGETED) continue
    over_bare(f, 0)
  }
  if (starred)
    print "  * its line names no \"baseline\": not interleaved with that" \
      " op.bare (another set or binary)"

  print "\nlayer cost (info: pattern - op.pipeline.passthrough_0 of the same"
  print "set, the call and attempt every pipelined call pays; what one policy"
  print "adds):"
  split("breaker.closed retry.no_retry bulkhead.free_slot " \
        "timeout.set_cancel fallback.primary_ok " \
        "op.pipeline.passthrough_1 pipeline.5 limiter.pipeline " \
        "guard.admit", L, " ")
  for (i = 1; i in L; i++) {
    if (!have(L[i])) continue
    # op.bare<X> is measured with op.pipeline.passthrough_0<X>.
    pt0 = bare_of(L[i])
    sub(/^op\.bare/, "op.pipeline.passthrough_0", pt0)
    if (have(pt0))
      printf "  %-38s %8s ns  (- %s)\n", L[i], fmt(NS[L[i]] - NS[pt0]), pt0
    else
      printf "  %-38s %s missing\n", L[i], pt0
  }

  print "\nrate limiter key table (limiter.allow.keys_1000000: 1,000,000"
  print "keys of 16 bytes; bytes per key as the table counts them, and the"
  print "growth of the resident set of the process over the fill, per key):"
  k = "limiter.allow.keys_1000000"
  if (have(k) && isnum(BPK[k])) {
    printf "  bytes_per_key %s  <= 64  %s\n", fmt(BPK[k]), \
      verdict(BPK[k] + 0 <= 64)
    printf "  rss_bytes_per_key %s  info\n", \
      isnum(RSSK[k]) ? fmt(RSSK[k]) : "not measured"
    printf "  %s ns per allow over the distinct keys (median %s)  info\n", \
      fmt(NS[k]), isnum(MED[k]) ? fmt(MED[k]) : "-"
  } else {
    unmeasured++
    print "  not measured (no limiter.allow.keys_1000000 line)"
  }

  print "\ncurl adapter (requests per second, pipeline vs raw multi):"
  raw = RPS["curl.raw.rps"]; pl = RPS["curl.pipeline.rps"]
  if (!isnum(raw) && have("curl.raw.rps")) raw = 1e9 / NS["curl.raw.rps"]
  if (!isnum(pl) && have("curl.pipeline.rps")) pl = 1e9 / NS["curl.pipeline.rps"]
  if (isnum(raw) && isnum(pl) && raw > 0) {
    r = pl / raw
    printf "  curl.pipeline.rps / curl.raw.rps = %s / %s = %.3f  >= 0.95  %s\n", \
      fmt(pl), fmt(raw), r, verdict(r >= 0.95)
    if (isnum(CPUR["curl.pipeline.rps"]))
      printf "  cpu_ratio (raw CPU per request / pipeline CPU per" \
        " request) = %s  info\n", \
        CPUR["curl.pipeline.rps"]
    rt = RPS["curl.raw_timeout.rps"]
    if (isnum(rt) && rt > 0)
      printf "  curl.pipeline.rps / curl.raw_timeout.rps = %s / %s = %.3f" \
        "  info (raw with the same per-transfer timeout)\n", \
        fmt(pl), fmt(rt), pl / rt
    rk = RPS["curl.raw_keep.rps"]
    if (isnum(rk) && rk > 0)
      printf "  curl.pipeline.rps / curl.raw_keep.rps = %s / %s = %.3f" \
        "  >= 0.88  %s (raw keeping the polls of pooled connections, as" \
        " the adapter does)\n", fmt(pl), fmt(rk), pl / rk, \
        verdict(pl / rk >= 0.88)
    else
      unmeasured++
  } else {
    print "  not measured (no curl.raw.rps and curl.pipeline.rps lines yet)"
  }

  # Core and patterns, then the adapters (their lines start with the
  # adapter name, e.g. curl.), each with its own verdict.
  print "\nallocations per op (fortify allocator hook):"
  for (g = 1; g <= 2; g++) {
    bad = 0; seen = 0
    for (i = 1; i <= n; i++) {
      f = ORDER[i]
      if (f ~ /^peer\./ || !isnum(AL[f])) continue
      if ((g == 1) == (f ~ /^curl\./)) continue
      seen++
      if (AL[f] + 0 > 0) { printf "  %-40s %s allocs/op\n", f, AL[f]; bad++ }
    }
    what = g == 1 ? "core and pattern benches" : "adapter benches (curl.*)"
    if (seen == 0) {
      printf "  %s: not measured\n", what
      if (g == 1) unmeasured++
    } else {
      printf "  %s: %d, %d allocating  == 0  %s\n", what, seen, bad, \
        verdict(bad == 0)
    }
  }

  printf "\ntargets: %d met, %d missed, %d not measured\n", met, missed, unmeasured
  exit strict && (missed + unmeasured) > 0 ? 1 : 0
}
' "$in"
