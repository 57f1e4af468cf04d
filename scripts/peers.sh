#!/usr/bin/env bash
# attend beside PyTorch's CPU SDPA and ONNX Runtime, on this machine, in one run: installs the peers
# into a virtual environment outside the repository, builds attend_bench (Release, -march=native) in
# its own build directory, and runs bench/peers/run.py, which interleaves attend_bench's rows with
# the peers' per (shape, type, threads), repeats the sweep, and writes the table and the chart:
#
#   scripts/peers.sh                          # f32 and bf16, 1 and 2 threads, 3 sweeps (see below)
#   scripts/peers.sh --repeats 1 --shapes bsr_freq,decode_gqa --types f32     # a quick look
#   scripts/peers.sh --backward on            # PyTorch's backward also where attend has no _bwd row
#   scripts/peers.sh --render bench/results/peers_<name>.json                 # table and chart only
#   scripts/peers.sh --render bench/results/peers_<name>.json --docs README.md docs/performance.md
#   scripts/peers.sh --torch-backends flash   # without PyTorch's math backend: ~40 % of the time
#   scripts/peers.sh --help                   # run.py's options
#
# Time: the default run (36 cells, 18 forward and 18 backward, x 3 sweeps) took 19.5 min on the
# 2-vCPU Intel Xeon development machine while others were building (load 1.5 rising to 6.1; rows had
# 0.3-1.0 of their cores). An earlier forward-only run took 24 min at load ~11, PyTorch's math
# backend 60 % of it; a quiet machine needs roughly a third of that.
#
# Output (run.py's defaults): bench/results/peers_<name>.json (every measurement) and .md (the
# tables, also printed), docs/images/peers.png (the chart); <name> is the CPU model and count,
# --name sets it. Not for CI: the project's build and tests do not need PyTorch or ONNX Runtime.
#
# Environment:
#   ATTEND_PEERS_VENV      the virtual environment (default ~/.cache/attend-peers-venv), reused when
#                          it already has every package; must be outside the repository
#   ATTEND_PEERS_PACKAGES  what pip installs (default: torch onnxruntime onnx numpy matplotlib); pin
#                          versions here, e.g. "torch==2.15.0 onnxruntime==1.32.0 onnx numpy matplotlib"
#   ATTEND_PEERS_UPGRADE=1 pip install --upgrade even when everything imports
#   BUILD_DIR              attend_bench's build directory (default build-peers)
#   JOBS                   build jobs (default: all cores)
#   ATTEND_NO_INSTALL=1    do not call scripts/deps.sh (apt-get for cmake, Eigen, Google Benchmark)
#
# PyTorch from PyPI: the Linux x86_64 wheel is the CUDA build; its libtorch links the CUDA libraries
# (libcudart, libcublas, libcudnn, ...), so `pip install --no-deps torch` does not import, and the
# CPU-only wheels are not on PyPI. The venv is therefore about 5.6 GB (4 GB of it NVIDIA's
# libraries, never loaded on a machine without a GPU); the first install takes a few minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
start=$SECONDS

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    echo "run.py's options:"
    exec python3 bench/peers/run.py --help
    ;;
esac

venv="${ATTEND_PEERS_VENV:-$HOME/.cache/attend-peers-venv}"
venv_abs="$(realpath -m "$venv")"
case "$venv_abs/" in
  "$repo"/*)
    echo "peers.sh: ATTEND_PEERS_VENV=$venv is inside the repository; put it outside (default ~/.cache/attend-peers-venv)" >&2
    exit 2
    ;;
esac
build_dir="${BUILD_DIR:-build-peers}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
packages="${ATTEND_PEERS_PACKAGES:-torch onnxruntime onnx numpy matplotlib}"

render=0
for a in "$@"; do
  [[ "$a" == --render || "$a" == --render=* ]] && render=1
done

# --render: the venv's Python if there is one, else python3 (either needs only matplotlib).
if [[ $render == 1 ]]; then
  py=python3
  if [[ -x "$venv_abs/bin/python" ]] && "$venv_abs/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
    py="$venv_abs/bin/python"
  fi
  exec "$py" bench/peers/run.py "$@"
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  scripts/deps.sh python3-venv
fi
scripts/deps.sh

# The virtual environment.
if [[ ! -x "$venv_abs/bin/python" ]]; then
  echo "peers.sh: creating the virtual environment $venv_abs" >&2
  mkdir -p "$(dirname "$venv_abs")"
  python3 -m venv "$venv_abs"
  "$venv_abs/bin/python" -m pip install -q --upgrade pip
fi
py="$venv_abs/bin/python"
if [[ "${ATTEND_PEERS_UPGRADE:-0}" == 1 ]] || ! "$py" -c 'import torch, onnxruntime, onnx, numpy, matplotlib' >/dev/null 2>&1; then
  if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    avail_gb="$(df --output=avail -BG "$venv_abs" | tail -1 | tr -dc 0-9)"
    if [[ -n "$avail_gb" && "$avail_gb" -lt 8 ]]; then
      echo "peers.sh: PyTorch from PyPI needs about 6 GB (its CUDA libraries come with it); $avail_gb GB free at $venv_abs" >&2
      exit 1
    fi
    echo "peers.sh: installing $packages into $venv_abs (PyTorch's wheel brings ~4 GB of CUDA libraries; a few minutes)" >&2
  fi
  upgrade=()
  [[ "${ATTEND_PEERS_UPGRADE:-0}" == 1 ]] && upgrade=(--upgrade)
  # shellcheck disable=SC2086  # $packages is a list of requirement specifiers
  "$py" -m pip install -q --no-cache-dir "${upgrade[@]}" $packages
fi
"$py" -c 'import torch, onnxruntime; print(f"peers.sh: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")' >&2

# attend_bench: Release; the attend::native target adds -march=native.
configure=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
           -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_TESTS=OFF -DATTEND_BUILD_EXAMPLES=OFF)
if command -v ccache >/dev/null 2>&1; then
  configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake "${configure[@]}" >/dev/null
nice -n 10 cmake --build "$build_dir" -j "$jobs" --target attend_bench
echo "peers.sh: set up in $((SECONDS - start)) s" >&2

"$py" bench/peers/run.py --attend-bench "$build_dir/bench/attend_bench" "$@"
echo "peers.sh: done in $((SECONDS - start)) s" >&2
