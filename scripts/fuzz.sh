#!/usr/bin/env bash
# Fuzzing with libFuzzer, corpus replay without it, and corpus upkeep.
#
#   scripts/fuzz.sh [run] [NAME...]   build build-fuzz/ (clang, libFuzzer,
#                                     ASan+UBSan) and fuzz each target for
#                                     FUZZ_SECONDS (default 60); figures go
#                                     to build-fuzz/fuzz.jsonl
#   scripts/fuzz.sh replay BUILD_DIR  replay fuzz/corpus/NAME/ (and seeded
#                                     random inputs) through the standalone
#                                     targets of BUILD_DIR (built with
#                                     -DFY_BUILD_FUZZERS=ON, any compiler)
#   scripts/fuzz.sh merge [NAME...]   fold what runs found (build-fuzz/corpus)
#                                     into fuzz/corpus/NAME/, minimised, files
#                                     named by their SHA-256
#   scripts/fuzz.sh list              the target names
#
# NAME is a target without its prefix: wheel, breaker, pipeline, ...
# Environment: FUZZ_SECONDS (60), FUZZ_BUILD_DIR (build-fuzz), FUZZ_CC
# (clang), FUZZ_ARGS (extra libFuzzer options), JOBS (2, for the build),
# FUZZ_REPLAY_WRAPPER (replay: a command to run each target under, such as
# valgrind), REPLAY_ARGS (replay: arguments for the standalone driver; the
# default -random=500 adds 500 seeded pseudo-random inputs per target).
# A crash, a broken invariant, a leak or a sanitizer report makes `run` and
# `replay` fail; the input is kept in build-fuzz/artifacts/NAME/.
set -euo pipefail

usage() { sed -n '2,25s/^# \{0,1\}//p' "$0" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${JOBS:-2}

all_names() {
  local f
  for f in fuzz/fuzz_*.c; do
    f=${f#fuzz/fuzz_}
    echo "${f%.c}"
  done
}

names_or_all() {
  if [ $# -gt 0 ]; then
    printf '%s\n' "$@"
  else
    all_names
  fi
}

configure_libfuzzer() {
  local cc=${FUZZ_CC:-clang}
  command -v "$cc" >/dev/null || {
    echo "fuzz: $cc not found (scripts/deps.sh installs clang)" >&2
    exit 1
  }
  # Only the fuzz targets are built (fuzz_all); the tests, examples and
  # benchmarks stay out.  Adapters follow their usual defaults, for the
  # targets that fuzz them.
  CC=$cc cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFY_BUILD_FUZZERS=ON -DFY_FUZZ_ENGINE=libfuzzer \
    -DFY_ASAN=ON -DFY_UBSAN=ON \
    -DFY_BUILD_TESTS=OFF -DFY_BUILD_EXAMPLES=OFF -DFY_BUILD_BENCH=OFF \
    >/dev/null
  cmake --build "$build" -j"$jobs" --target fuzz_all
}

# The value of "stat::NAME: value" in a libFuzzer log, or 0.
stat_of() {
  sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -n 1 | grep . || echo 0
}

run_one() {
  local name=$1 bin="$build/fuzz/fuzz_$1"
  local work="$build/corpus/$name" seeds="fuzz/corpus/$name"
  local arts="$build/artifacts/$name" log="$build/logs/$name.log"
  local start end rc=0 secs execs eps units rss cov files result

  if [ ! -x "$bin" ]; then
    echo "$name: not built here (its adapter is off), skipped"
    return 0
  fi
  mkdir -p "$work" "$seeds" "$arts" "$build/logs"
  start=$(date +%s.%N)
  # The first directory receives new units; the committed seeds are read.
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=20 \
    -rss_limit_mb=2560 -artifact_prefix="$arts/" ${FUZZ_ARGS:-} \
    "$work" "$seeds" >"$log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  execs=$(stat_of number_of_executed_units "$log")
  eps=$(stat_of average_exec_per_sec "$log")
  units=$(stat_of new_units_added "$log")
  rss=$(stat_of peak_rss_mb "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
  files=$(find "$work" "$seeds" -type f | wc -l)
  result=ok
  [ "$rc" -eq 0 ] || result=fail
  {
    printf '{"target":"%s","seconds":%s,"execs":%s,"execs_per_sec":%s,' \
      "$name" "$secs" "$execs" "$eps"
    printf '"new_units":%s,"corpus_files":%s,"coverage":%s,' \
      "$units" "$files" "$cov"
    printf '"peak_rss_mb":%s,"result":"%s","exit":%d,"date":"%s"}\n' \
      "$rss" "$result" "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >>"$build/fuzz.jsonl"
  printf '%-10s %7ss %12s execs %8s/s  cov %5s  corpus %5s  %s\n' \
    "$name" "$secs" "$execs" "$eps" "$cov" "$files" "$result"
  if [ "$rc" -ne 0 ]; then
    echo "---- fuzz_$name failed (exit $rc); log $log; artifacts $arts/" >&2
    grep -v '^#[0-9]' "$log" | tail -n 40 >&2
    return 1
  fi
}

cmd_run() {
  local failed=0 name
  configure_libfuzzer
  echo "==> fuzzing ${seconds}s per target (figures: $build/fuzz.jsonl)"
  while read -r name; do
    if [ ! -f "fuzz/fuzz_$name.c" ]; then
      echo "fuzz: no target '$name'" >&2
      exit 2
    fi
    run_one "$name" || failed=$((failed + 1))
  done < <(names_or_all "$@")
  if [ "$failed" -ne 0 ]; then
    echo "fuzz: $failed target(s) failed" >&2
    exit 1
  fi
}

cmd_replay() {
  [ $# -ge 1 ] || usage
  local dir=$1 name bin corpus n=0 failed=0
  if [ ! -d "$dir/fuzz" ]; then
    echo "fuzz replay: $dir/fuzz not found" \
      "(configure with -DFY_BUILD_FUZZERS=ON)" >&2
    exit 1
  fi
  while read -r name; do
    bin="$dir/fuzz/fuzz_$name"
    if [ ! -x "$bin" ]; then
      case "$name" in
      curl_*)
        echo "fuzz replay: $name not built (adapter off), skipped"
        continue
        ;;
      esac
      echo "fuzz replay: $bin not built" >&2
      failed=1
      continue
    fi
    corpus="fuzz/corpus/$name"
    [ -d "$corpus" ] || corpus= # a new target: random inputs only
    # shellcheck disable=SC2086
    if ! ${FUZZ_REPLAY_WRAPPER:-} "$bin" ${REPLAY_ARGS--random=500} \
      ${corpus:+"$corpus"}; then
      echo "fuzz replay: fuzz_$name failed" >&2
      failed=1
    fi
    n=$((n + 1))
  done < <(all_names)
  [ "$failed" -eq 0 ] || exit 1
  echo "fuzz replay: $n corpora replayed"
}

# Add to the committed corpus the inputs of build-fuzz/corpus that reach
# code it does not reach yet.  Edges count, not hit counts
# (-use_counters=0), which keeps the committed corpus small.  Nothing is
# removed: regression inputs stay.
cmd_merge() {
  local name bin f sum before after
  configure_libfuzzer
  mkdir -p "$build/logs"
  while read -r name; do
    bin="$build/fuzz/fuzz_$name"
    [ -x "$bin" ] || continue
    mkdir -p "fuzz/corpus/$name" "$build/corpus/$name"
    before=$(find "fuzz/corpus/$name" -type f | wc -l)
    "$bin" -merge=1 -use_counters=0 "fuzz/corpus/$name" \
      "$build/corpus/$name" >"$build/logs/merge-$name.log" 2>&1 || {
      echo "fuzz merge: $name failed (see $build/logs/merge-$name.log)" >&2
      exit 1
    }
    # libFuzzer names what it adds by SHA-1; the corpus uses SHA-256.
    for f in "fuzz/corpus/$name"/*; do
      [ -f "$f" ] || continue
      case "${f##*/}" in
      ????????????????????????????????????????) ;;
      *) continue ;;
      esac
      sum=$(sha256sum "$f" | cut -d' ' -f1)
      mv "$f" "fuzz/corpus/$name/$sum"
    done
    after=$(find "fuzz/corpus/$name" -type f | wc -l)
    echo "$name: $before -> $after files," \
      "$(cat "fuzz/corpus/$name"/* 2>/dev/null | wc -c) bytes"
  done < <(names_or_all "$@")
}

case "${1:-run}" in
run) shift || true; cmd_run "$@" ;;
replay) shift; cmd_replay "$@" ;;
merge) shift; cmd_merge "$@" ;;
list) all_names ;;
-h|--help|help) usage ;;
*) cmd_run "$@" ;;
esac
