#!/usr/bin/env bash
# Make sure the Debian packages needed to build and test fortify are present.
#
#   scripts/deps.sh          install whatever is missing (root or sudo -n)
#   scripts/deps.sh --check  only report; exit 1 if anything is missing
set -euo pipefail

PACKAGES=(
  libuv1-dev
  libcurl4-openssl-dev
  libcriterion-dev
  libhttp-parser-dev
  cmake
  pkg-config
  gcc
  libc6-dev
  make
  valgrind
  clang
  libclang-rt-dev
  wrk
)

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  -h|--help)
    sed -n '2,5s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *)
    echo "deps: unknown argument '$1' (try --help)" >&2
    exit 2
    ;;
esac

is_installed() {
  # dpkg -s also succeeds for removed-but-not-purged packages: check Status.
  local status
  status=$(dpkg -s "$1" 2>/dev/null) || return 1
  [[ $status == *"Status: install ok installed"* ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! is_installed "$pkg"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all present"
  exit 0
fi

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"

if [ "$check_only" -eq 1 ]; then
  echo "deps: missing: ${missing[*]}" >&2
  echo "deps: install them with:  sudo sh -c '$install_cmd'" >&2
  exit 1
fi

echo "deps: missing: ${missing[*]} -- installing" >&2

if [ "$(id -u)" -eq 0 ]; then
  runner=(sh -c)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  runner=(sudo -n sh -c)
else
  echo "deps: not root and passwordless sudo is unavailable; run:" >&2
  echo "  sudo sh -c '$install_cmd'" >&2
  exit 1
fi

if ! "${runner[@]}" "$install_cmd"; then
  echo "deps: package installation failed; to retry, run:" >&2
  echo "  sudo sh -c '$install_cmd'" >&2
  exit 1
fi

# Verify: apt can succeed and still leave something out (e.g. held packages).
still_missing=()
for pkg in "${missing[@]}"; do
  is_installed "$pkg" || still_missing+=("$pkg")
done
if [ "${#still_missing[@]}" -ne 0 ]; then
  echo "deps: still missing after install: ${still_missing[*]}" >&2
  exit 1
fi
echo "deps: installed ${missing[*]}"
