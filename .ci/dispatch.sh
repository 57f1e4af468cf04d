#!/usr/bin/env bash
# attend::dispatch stage of attend's CI (called from .ci/run; runs on its own too): the compiled
# component that picks the kernels at run time (cmake/dispatch.cmake).
#
#   1. configure with ATTEND_BUILD_DISPATCH=ON: the test suite, the examples and attend_bench built
#      for the baseline (no -march), linking attend::dispatch (ATTEND_TEST_DISPATCH, ATTEND_BENCH_ISA)
#   2. the whole suite once at the level the CPU supports best; it includes attend.dispatch.symbols
#      (nm: each variant object exports one symbol, defines nothing weak, has no static initializer)
#      and the installed-package consumer at every level forced with ATTEND_ISA
#   3. the suite again with each other level forced (ATTEND_ISA), that the CPU runs: every kernel of
#      every variant is checked against the reference. The packaging and compile-fail tests are left
#      out of these runs (they build projects or expect compile errors, and do not depend on the
#      level; step 2 ran them)
#
#   4. CPUs this machine may not be, emulated by qemu-x86_64 (QEMU 7.2's TCG has AVX2 and FMA but no
#      AVX-512): as Haswell (x86-64-v3) and as Nehalem (the baseline), the installed consumer must pick
#      that level by itself and run every path forward and backward; as Haswell the golden cases
#      (every path and type, about 2 minutes under emulation) must pass too. An AVX-512 instruction
#      anywhere on the way stops the run with SIGILL
#
#   .ci/dispatch.sh                 all of it
#   LEVELS="x86-64 x86-64-v3" .ci/dispatch.sh    only these levels in step 3
#
# Environment: BUILD_DIR (default build-dispatch), JOBS (default: all cores), LEVELS (default: every
# compiled level the CPU runs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${BUILD_DIR:-build-dispatch}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DATTEND_BUILD_DISPATCH=ON -DATTEND_TEST_DISPATCH=ON \
  -DATTEND_BUILD_TESTS=ON -DATTEND_BUILD_EXAMPLES=ON -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BENCH_ISA=dispatch \
  "${launcher[@]}"
cmake --build "$build_dir" -j "$jobs"


start=$SECONDS
echo "==== dispatch: whole suite, the CPU's best level"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
times=("best level (whole suite): $((SECONDS - start))s")

if [[ -z "${LEVELS:-}" ]]; then
  LEVELS="$(sed -n 's/^ATTEND_DISPATCH_LEVELS:INTERNAL=//p' "$build_dir/CMakeCache.txt" | tr ';' ' ')"
fi
for level in $LEVELS; do
  # A level the CPU lacks falls back to the best one, with a warning: skip it rather than rerun that.
  if ATTEND_ISA="$level" "$build_dir/tests/api/attend_dispatch_test" --gtest_filter='Dispatch.IsaNames*' 2>&1 |
      grep -q "cannot run"; then
    echo "==== dispatch: ${level}: this CPU cannot run it; skipped"
    times+=("${level}: skipped (not supported here)")
    continue
  fi
  start=$SECONDS
  echo "==== dispatch: ATTEND_ISA=${level}"
  ATTEND_ISA="$level" ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" \
    -E '^attend\.(package|dispatch|odr|headers|robust\.compile_fail)'
  times+=("${level}: $((SECONDS - start))s")
done

# 4. Emulated CPUs: qemu-x86_64 -cpu <model> runs the programs with that CPU's CPUID and instructions.
consumer="$build_dir/tests/packaging/package/dispatch/attend_consumer"
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
  echo "==== dispatch: no qemu-x86_64 (Debian: qemu-user): emulated CPUs skipped"
  times+=("emulated CPUs: skipped (no qemu-x86_64)")
elif [[ "$(uname -m)" != x86_64 || ! -x "$consumer" ]]; then
  echo "==== dispatch: not an x86-64 build with the dispatch consumer: emulated CPUs skipped"
  times+=("emulated CPUs: skipped")
else
  for model_level in Haswell:x86-64-v3 Nehalem:x86-64; do
    model="${model_level%%:*}" level="${model_level#*:}"
    start=$SECONDS
    echo "==== dispatch: qemu-x86_64 -cpu ${model} (expects ${level})"
    # TCG warns about host CPUID bits it does not emulate (pcid, x2apic, ...): noise, dropped.
    run_as() { qemu-x86_64 -cpu "$model" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2); }
    ATTEND_EXPECT_LEVEL="$level" run_as "$consumer"
    if [[ "$model" == Haswell ]]; then
      run_as "$build_dir/tests/forward/attend_golden_test" | tail -3
    fi
    times+=("qemu -cpu ${model}: $((SECONDS - start))s")
  done
fi

echo
echo "==== dispatch: summary"
printf '  %s\n' "${times[@]}"
