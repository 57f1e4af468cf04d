#!/usr/bin/env bash
# Regenerates the charts of docs/performance.md (the README shows the first):
#
#   docs/images/throughput.png   GFLOP/s per path and shape, f32, 2 and 1 threads, with the measured
#                                FMA peak (bench/plot_throughput.py over THROUGHPUT_JSON, committed
#                                attend_bench results: no benchmark runs for it)
#   docs/images/scaling.png      time and peak memory of one call against N = 256..16384, flash and
#                                math (bench/plot_scaling.py over a fresh bench/sweep.py run, which
#                                is written to SWEEP_JSON)
#
#   scripts/plots.sh              build attend_bench if needed, sweep (about a minute), plot both
#   scripts/plots.sh --no-sweep   plot both from the committed files only (no build, no run)
#
# Needs cmake, a C++ compiler, Eigen and Google Benchmark (scripts/deps.sh) for the sweep, and
# Python 3 with matplotlib for the charts (Debian: apt-get install python3-matplotlib). Run the sweep
# on a quiet machine: its times are single calls.
# Environment: BUILD_DIR (default build-bench), JOBS (default: all cores), PYTHON (default: a python3
# that has matplotlib, /usr/bin/python3 first), MACHINE (the name in the titles; default "2-core AMD
# Zen 4", the machine of the committed files: set it when you sweep elsewhere),
# SWEEP_JSON (default bench/results/zen4_2core_scaling.json), THROUGHPUT_JSON (space-separated;
# default bench/results/zen4_2core_s4.json and, if present, bench/results/zen4_2core_s4_rerun.json;
# each row's quietest run is kept).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sweep=1
case "${1:-}" in
  --no-sweep) sweep=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-sweep]" >&2; exit 2 ;;
esac

build_dir="${BUILD_DIR:-build-bench}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
machine="${MACHINE:-2-core AMD Zen 4}"
sweep_json="${SWEEP_JSON:-bench/results/zen4_2core_scaling.json}"
# shellcheck disable=SC2206  # a list of files on purpose
throughput_json=(${THROUGHPUT_JSON:-bench/results/zen4_2core_s4.json bench/results/zen4_2core_s4_rerun.json})
# A rerun file exists only when some row shared its cores: keep the files that exist.
existing=()
for f in "${throughput_json[@]}"; do
  if [[ -f "$f" ]]; then existing+=("$f"); fi
done
throughput_json=("${existing[@]}")

# A python3 with matplotlib: $PYTHON, else Debian's /usr/bin/python3, else the first on PATH.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  for p in /usr/bin/python3 python3; do
    if "$p" -c 'import matplotlib' >/dev/null 2>&1; then
      python="$p"
      break
    fi
  done
fi
if [[ -z "$python" ]]; then
  echo "plots.sh: no python3 with matplotlib found; install it (Debian: apt-get install python3-matplotlib)" >&2
  echo "          or set PYTHON" >&2
  exit 1
fi

if [[ $sweep -eq 1 ]]; then
  bench="$build_dir/bench/attend_bench"
  configure=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DATTEND_BUILD_TESTS=OFF
             -DATTEND_BUILD_EXAMPLES=OFF -DATTEND_BUILD_BENCHMARKS=ON)
  command -v ccache >/dev/null 2>&1 && configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  [[ -f "$build_dir/CMakeCache.txt" ]] || cmake "${configure[@]}"
  cmake --build "$build_dir" -j "$jobs" --target attend_bench  # up to date: nothing to do
  csv="${sweep_json%.json}.csv"
  "$python" bench/sweep.py --bench "$bench" --machine "$machine" --out "$sweep_json" --csv "$csv"
fi

mkdir -p docs/images
"$python" bench/plot_throughput.py "${throughput_json[@]}" --prefer-util --type f32 --threads 2,1 \
  --machine "$machine" -o docs/images/throughput.png
"$python" bench/plot_scaling.py "$sweep_json" --machine "$machine" -o docs/images/scaling.png
ls -l docs/images/throughput.png docs/images/scaling.png
