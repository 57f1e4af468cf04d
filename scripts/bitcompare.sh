#!/usr/bin/env bash
# Compares the bits of out and lse between the working tree and another commit, on every path, type,
# mask kind, causal setting, dropout and thread count of scripts/bitcompare/digest.cpp's battery,
# once per set of target flags. A refactor must print "identical" for every flag set.
#
#   scripts/bitcompare.sh [<commit>] [<filter>]    default commit: HEAD (the last commit)
#
# Environment: FLAG_SETS (a ';'-separated list of compiler flag sets; default
# "-march=native;-march=x86-64-v3;-march=x86-64" : this machine's ISA, AVX2 + FMA, and SSE2),
# CXX (default g++), EIGEN_INC (default /usr/include/eigen3), KEEP=1 (keep the work directory).
# Each build is one translation unit compiled with -O3; the digests of both trees are diffed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rev="${1:-HEAD}"
filter="${2:-}"
cxx="${CXX:-g++}"
eigen="${EIGEN_INC:-/usr/include/eigen3}"
IFS=';' read -r -a flag_sets <<< "${FLAG_SETS:--march=native;-march=x86-64-v3;-march=x86-64}"

work="$(mktemp -d)"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base"
git archive "$rev" include | tar -x -C "$work/base"
echo "bitcompare: working tree against $(git rev-parse --short "$rev"); battery: scripts/bitcompare/digest.cpp"

status=0
for i in "${!flag_sets[@]}"; do
  flags="${flag_sets[$i]}"
  pids=()
  for side in base new; do
    inc="$work/base/include"
    [[ "$side" == new ]] && inc="$PWD/include"
    # shellcheck disable=SC2086  # the flag set is split on purpose
    "$cxx" -std=c++17 -O3 -DNDEBUG $flags -I"$inc" -isystem "$eigen" scripts/bitcompare/digest.cpp \
      -o "$work/digest_${side}_$i" -pthread &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || { echo "bitcompare [$flags]: the battery did not compile" >&2; exit 2; }
  done
  "$work/digest_base_$i" "$filter" > "$work/base_$i.txt"
  "$work/digest_new_$i" "$filter" > "$work/new_$i.txt"
  lines="$(wc -l < "$work/new_$i.txt")"
  # diff's status 1 means "they differ", not a failure: kept out of set -e, so that one differing
  # flag set does not end the run before the others are compared.
  if diff "$work/base_$i.txt" "$work/new_$i.txt" > "$work/diff_$i.txt"; then
    echo "bitcompare [$flags]: identical ($lines calls)"
  else
    echo "bitcompare [$flags]: $(grep -c '^>' "$work/diff_$i.txt") of $lines calls differ:"
    awk '/^>/ && shown++ < 40' "$work/diff_$i.txt"
    status=1
  fi
done
exit "$status"
