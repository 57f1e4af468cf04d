#!/usr/bin/env bash
# Installs the dependencies, builds the benchmark and compares attend's paths (flash, mem_efficient,
# math) on BS-RoFormer and long-context shapes: by default attend_bench's quick set (f32, 2 threads,
# every shape; a few minutes on 2 cores). Arguments go to attend_bench, e.g.
#
#   scripts/bench.sh                                   # quick set
#   scripts/bench.sh --full                            # every type, shape and thread count
#   scripts/bench.sh --benchmark_filter='^flash/'      # select rows (Google Benchmark regex)
#   scripts/bench.sh --attend_help                     # attend_bench's own flags
#
# The JSON of the run goes to $BUILD_DIR/bench.json and its markdown table (bench/report.py) to
# $BUILD_DIR/bench.md. Environment: BUILD_DIR (default build-bench), JOBS (default: all cores),
# ATTEND_NO_INSTALL=1 (do not call scripts/deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh

build_dir="${BUILD_DIR:-build-bench}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
configure=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
           -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_TESTS=OFF -DATTEND_BUILD_EXAMPLES=OFF)
if command -v ccache >/dev/null 2>&1; then
  configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

cmake "${configure[@]}"
cmake --build "$build_dir" -j "$jobs" --target attend_bench
"$build_dir/bench/attend_bench" --benchmark_out="$build_dir/bench.json" --benchmark_out_format=json "$@"
python3 bench/report.py "$build_dir/bench.json" > "$build_dir/bench.md"
echo
cat "$build_dir/bench.md"
echo "bench.sh: results in $build_dir/bench.json and $build_dir/bench.md"
