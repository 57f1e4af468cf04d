#!/usr/bin/env bash
# One benchmark session on a many-core machine: attend_bench at 1, 2 and 16 threads (forward rows and
# the flash backward's), beside PyTorch's CPU SDPA (forward and backward) and ONNX Runtime, all in one
# run on the same machine. Results go to $OUT (default: ./device-out).
#
# The device machine is lent for minutes, so the binary can be built beforehand and carried:
#   ATTEND_BENCH=path/to/attend_bench bench/device_run.sh      # a prebuilt binary (and BENCH_LIB)
# or built here, which needs a C++17 compiler, Eigen's headers and Google Benchmark:
#   EIGEN_INC=/usr/include/eigen3 BENCH_INC=/usr/include BENCH_LIB=/usr/lib/x86_64-linux-gnu bench/device_run.sh
# VARIANTS=1 also times the key-tile variants (ATTEND_KERNEL_BLOCK_K 32, 64, 128; built here).
# PyTorch and onnxruntime are optional (their rows are skipped when the import fails).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-device-out}"
mkdir -p "$OUT"
EIGEN_INC="${EIGEN_INC:-.carry/eigen3}"
BENCH_INC="${BENCH_INC:-.carry/bench/include}"
BENCH_LIB="${BENCH_LIB:-.carry/bench/lib}"
export LD_LIBRARY_PATH="${BENCH_LIB}:${LD_LIBRARY_PATH:-}"
THREADS="${THREADS:-1,2,16}"
VARIANTS="${VARIANTS:-0}"

(lscpu; nproc; free -g) > "$OUT/machine.txt" 2>&1
build() {  # build <output> [extra flags]: one attend_bench binary
  local out="$1"
  shift
  g++ -std=c++17 -O3 -DNDEBUG -march=native "$@" -Iinclude -isystem "$EIGEN_INC" -isystem "$BENCH_INC" \
    bench/attend_bench.cpp -o "$out" -L"$BENCH_LIB" -lbenchmark -lpthread 2>&1 | grep -v -i warning | head -20
}
bench="${ATTEND_BENCH:-}"
if [[ -z "$bench" || "$VARIANTS" == 1 ]]; then
  build /tmp/ab_bk64 &
  if [[ "$VARIANTS" == 1 ]]; then
    build /tmp/ab_bk32 -DATTEND_KERNEL_BLOCK_K=32 &
    build /tmp/ab_bk128 -DATTEND_KERNEL_BLOCK_K=128 &
  fi
  wait
  [[ -n "$bench" ]] || bench=/tmp/ab_bk64
fi
"$bench" --benchmark_list_tests=true > /dev/null || exit 1

if [[ "$VARIANTS" == 1 ]]; then
  # Key-tile size variants on the shapes that decide it (GFLOP/s compared directly, same machine).
  for bk in 32 64 128; do
    /tmp/ab_bk$bk --no_peaks --threads=1,2 --benchmark_min_time=0.3 \
      --benchmark_filter='^flash/f32/(bsr_time|long4k|bsr_freq|causal2k_d128)/' 2>&1 | sed "s/^/bk$bk /" | tee -a "$OUT/tile_variants.txt"
  done
fi

# The full comparison with peaks and bandwidth measured in the same process.
"$bench" --full --threads="$THREADS" --benchmark_min_time=0.2 \
  --benchmark_filter='^((flash|mem_efficient)/f32/(bsr_time|bsr_freq|long4k|causal2k_d128|decode_gqa)|flash/bf16/(long4k|bsr_time|bsr_freq)|flash_bwd/(f32|bf16)/(bsr_time|bsr_freq|long4k|causal2k_d128))/' \
  --benchmark_out="$OUT/attend.json" --benchmark_out_format=json 2>&1 | tee "$OUT/attend.txt"

timeout 300 python3 bench/peers/torch_sdpa.py --threads "$THREADS" --backends flash --backward \
  --shapes bsr_time,bsr_freq,long4k,causal2k_d128,decode_gqa 2>&1 | tee "$OUT/torch.txt"
timeout 120 python3 bench/peers/ort_mha.py --threads "$THREADS" 2>&1 | tee "$OUT/ort.txt"
