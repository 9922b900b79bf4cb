#!/usr/bin/env bash
# Run the Criterion suite of a build tree, optionally under a memory checker.
#
#   scripts/run-tests.sh plain    BUILD_DIR [criterion args...]
#   scripts/run-tests.sh asan     BUILD_DIR [criterion args...]
#   scripts/run-tests.sh valgrind BUILD_DIR [criterion args...]
#
# Criterion runs every test in a separate worker process (fork + exec of the
# test binary) and ignores a worker's exit status once the test body has
# finished, so a leak reported when a worker exits does NOT fail the test.
# The asan and valgrind modes therefore send every process's report to a log
# file (one per pid) and fail if any of those logs reports an error.
set -euo pipefail

usage() { sed -n '2,7s/^# \{0,1\}//p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
mode=$1 build_dir=$2
shift 2

bin="$build_dir/tests/fortify_tests"
if [ ! -x "$bin" ]; then
  echo "run-tests: $bin not found (no tests/test_*.c, or Criterion missing at configure time?)" >&2
  exit 1
fi
# Absolute paths: the suite may chdir.
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
build_dir=$(cd "$build_dir" && pwd)

jobs=${JOBS:-2}

case "$mode" in
plain)
  exec "$bin" --jobs "$jobs" "$@"
  ;;

asan)
  logdir="$build_dir/sanitizer-logs"
  rm -rf "$logdir" && mkdir -p "$logdir"
  # Keep the caller's options; reports go to $logdir/asan.<pid>.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$logdir/asan"
  export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}log_path=$logdir/asan"
  rc=0
  "$bin" --jobs "$jobs" "$@" || rc=$?
  shopt -s nullglob
  logs=("$logdir"/asan.*)
  for log in "${logs[@]}"; do
    echo >&2
    echo "==== sanitizer report: ${log#"$build_dir"/} ====" >&2
    cat "$log" >&2
  done
  if [ "${#logs[@]}" -ne 0 ]; then
    echo "asan: ${#logs[@]} process(es) reported sanitizer errors (see above)" >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
  ;;

valgrind)
  command -v valgrind >/dev/null || { echo "run-tests: valgrind not installed" >&2; exit 1; }
  logdir="$build_dir/valgrind-logs"
  rm -rf "$logdir" && mkdir -p "$logdir"
  # --trace-children=yes makes valgrind follow the exec of each Criterion
  # worker (the test bodies run there); programs the tests may spawn are
  # skipped. Criterion itself switches to one job when it sees valgrind.
  rc=0
  # VALGRIND_FLAGS (env) is split into words on purpose.
  # shellcheck disable=SC2086
  valgrind \
    --trace-children=yes \
    --trace-children-skip='*/redis-server,*/redis-cli,*/sh,*/dash,*/bash' \
    --child-silent-after-fork=yes \
    --leak-check=full \
    --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 \
    --log-file="$logdir/vg.%p.log" \
    ${VALGRIND_FLAGS:-} \
    "$bin" "$@" || rc=$?
  shopt -s nullglob
  logs=("$logdir"/vg.*.log)
  bad=()
  for log in "${logs[@]}"; do
    if grep -Eq 'ERROR SUMMARY: [1-9]' "$log"; then
      bad+=("$log")
    fi
  done
  for log in "${bad[@]}"; do
    echo >&2
    echo "==== valgrind report: ${log#"$build_dir"/} ====" >&2
    cat "$log" >&2
  done
  echo "valgrind: ${#logs[@]} process(es) checked, ${#bad[@]} with errors (logs in ${logdir#"$PWD"/})"
  if [ "${#logs[@]}" -lt 2 ]; then
    echo "valgrind: no Criterion worker was traced -- test bodies were not checked" >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
  if [ "${#bad[@]}" -ne 0 ] && [ "$rc" -eq 0 ]; then
    rc=99
  fi
  exit "$rc"
  ;;

*)
  usage
  ;;
esac
