#!/usr/bin/env bash
# Builds attend_bench for x86-64-v3 (AVX2 + FMA + F16C: ATTEND_BENCH_ISA, bench/CMakeLists.txt) and
# runs the rows that the AVX2 kernels are held to: flash f32, bf16 and f16 on long4k, bsr_time and
# bsr_freq, and decode_gqa, at 1 and 2 threads, each against the FMA peak and read bandwidth of the
# same instructions, measured in the same process (peak_frac, bw_frac). On an AVX-512 machine this
# is how to measure what a CPU without AVX-512 gets. Arguments go to attend_bench, e.g.
#
#   scripts/bench_avx2.sh                                             # the rows above
#   scripts/bench_avx2.sh --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#   scripts/bench_avx2.sh --benchmark_filter='^flash/f32/long4k/'     # other rows (replaces the set)
#
# The JSON of the run goes to $BUILD_DIR/bench.json and its markdown table (bench/report.py) to
# $BUILD_DIR/bench.md. Environment: BUILD_DIR (default build-bench-v3), MARCH (default x86-64-v3),
# JOBS (default: all cores), ATTEND_NO_INSTALL=1 (do not call scripts/deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh

build_dir="${BUILD_DIR:-build-bench-v3}"
march="${MARCH:-x86-64-v3}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
configure=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DATTEND_BENCH_ISA="$march"
           -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_TESTS=OFF -DATTEND_BUILD_EXAMPLES=OFF)
if command -v ccache >/dev/null 2>&1; then
  configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
rows=(--benchmark_filter='^flash/(f32|bf16|f16)/(long4k|bsr_time|bsr_freq|decode_gqa)/' --threads=1,2)
for arg in "$@"; do
  [[ "$arg" == --benchmark_filter=* ]] && rows=(--threads=1,2)
done

cmake "${configure[@]}"
cmake --build "$build_dir" -j "$jobs" --target attend_bench
"$build_dir/bench/attend_bench" "${rows[@]}" --benchmark_out="$build_dir/bench.json" --benchmark_out_format=json "$@"
python3 bench/report.py "$build_dir/bench.json" > "$build_dir/bench.md"
echo
cat "$build_dir/bench.md"
echo "bench_avx2.sh: results in $build_dir/bench.json and $build_dir/bench.md (built with -march=$march)"
