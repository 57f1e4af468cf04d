#!/usr/bin/env bash
# Fuzz stage of attend's CI (called from .ci/run; runs on its own too): builds fuzz/attend_fuzz with
# clang (-fsanitize=fuzzer,address,undefined) and fuzzes for FUZZ_SECONDS (default 60) starting from
# the committed corpus fuzz/corpus, which it only reads: new inputs go to <build>/corpus-new, and a
# failing input is written to <build>/artifacts/ and fails the stage (its log says what differed).
#
# Environment: FUZZ_SECONDS (60), FUZZ_JOBS (1: one process; N: libFuzzer -fork=N), JOBS (build,
# default all cores), FUZZ_BUILD_DIR (build-fuzz), FUZZ_CXX (clang++). See fuzz/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir="${FUZZ_BUILD_DIR:-build-fuzz}"
secs="${FUZZ_SECONDS:-60}"
fuzz_jobs="${FUZZ_JOBS:-1}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

configure=(-S fuzz -B "$dir" -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++}" -DCMAKE_BUILD_TYPE=)
command -v ccache >/dev/null 2>&1 && configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
command -v ninja >/dev/null 2>&1 && configure+=(-G Ninja)
cmake "${configure[@]}"
cmake --build "$dir" -j "$jobs"

mkdir -p "$dir/corpus-new" "$dir/artifacts"
args=(-max_total_time="$secs" -max_len=256 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
      -artifact_prefix="$dir/artifacts/")
[[ "$fuzz_jobs" -gt 1 ]] && args+=(-fork="$fuzz_jobs")
echo "fuzz.sh: fuzzing for ${secs}s from fuzz/corpus ($(find fuzz/corpus -type f | wc -l) inputs)"
"$dir/attend_fuzz" "${args[@]}" "$dir/corpus-new" fuzz/corpus
