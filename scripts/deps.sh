#!/usr/bin/env bash
# Installs what attend's build, tests and benchmark need, from the distribution (Debian 12, as CI;
# recent Ubuntu has the same packages): apt-get, through sudo unless run as root. Does nothing when
# every package is already installed, or when ATTEND_NO_INSTALL=1, or on a system without apt-get
# (then install the equivalents yourself: CMake >= 3.21, a C++17 compiler, Eigen >= 3.4,
# GoogleTest, Google Benchmark, pkg-config; Random123 is optional, a second opinion in the Philox
# test).
#
#   scripts/deps.sh [extra packages...]
set -euo pipefail

packages=(cmake g++ make libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev librandom123-dev pkg-config python3 "$@")

if [[ "${ATTEND_NO_INSTALL:-0}" == 1 ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: no apt-get here; make sure these (or your system's equivalents) are installed:" >&2
  echo "  ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo=(sudo)
fi
echo "deps.sh: installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
