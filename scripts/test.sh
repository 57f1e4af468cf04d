#!/usr/bin/env bash
# Builds attend with its tests, benchmark and examples, and runs every test (ctest).
#
#   scripts/test.sh [ctest arguments...]      e.g. scripts/test.sh -R golden
#
# Environment: BUILD_DIR (default build), BUILD_TYPE (default Release), JOBS (default: all cores),
# CMAKE_ARGS (extra configure arguments), ATTEND_NO_INSTALL=1 (do not call scripts/deps.sh).
# ccache is used when it is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh

build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
# The developer targets are named explicitly: left to their defaults they would be skipped when
# GoogleTest or Google Benchmark is missing, and here a missing dependency must fail the configure.
configure=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}"
           -DATTEND_BUILD_TESTS=ON -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_EXAMPLES=ON)
if command -v ccache >/dev/null 2>&1; then
  configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# shellcheck disable=SC2206  # CMAKE_ARGS is split on purpose
configure+=(${CMAKE_ARGS:-})

cmake "${configure[@]}"
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" "$@"
