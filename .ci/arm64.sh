#!/usr/bin/env bash
# ARM64 stage of attend's CI (called from .ci/run; runs on its own too): attend's tests cross-compiled
# for aarch64 with Debian's g++-aarch64-linux-gnu (cmake/toolchains/aarch64-linux-gnu.cmake; GoogleTest
# built from /usr/src/googletest) and run under qemu-aarch64 (user-mode emulation, called by ctest
# through CMAKE_CROSSCOMPILING_EMULATOR: no binfmt_misc needed). This runs the generic Eigen-packet
# kernels as NEON (Packet4f, Packet2d; bf16 and half through float), under the rules that hold on x86:
# the golden cases, every path against the math path, thread-count and run invariance, dropout.
# QEMU checks correctness only; its timings say nothing about ARM hardware.
#
#   .ci/arm64.sh             build the tests and run the CI subset (below)
#   .ci/arm64.sh all         build everything (tests and examples) and run the whole suite
#   .ci/arm64.sh asan        the subset with AddressSanitizer and UBSan (-O1 -g; not part of CI: its
#                            build alone takes longer than the stage's budget). The x86 sanitize
#                            stage checks the AVX-512 kernels; this checks the generic ones.
#                            LeakSanitizer cannot run under qemu (it needs ptrace): detect_leaks=0.
#
# The CI subset (the default): every test executable (attend_*_test, found in the build's target list,
# so a new test file joins by itself) except those below, and every test in them except two. It
# keeps the golden runner (every case x path x type), the shapes tests (every path and type against
# the double math path at tile edges, masks, causality, decode), the typed, dropout
# (thread-count invariance), dispatch (the non-AVX-512 rules, which x86 CI never takes), micro-kernel
# (bit for bit), online softmax, Philox, prefetch, no-allocation, non-finite (NEON's fmax/fmin
# propagate NaN, x86's do not) and 64-bit index tests, and the threads tests (same bits for any
# thread count and run). Left out, as they check nothing that depends on the target:
#   attend_errors_test, attend_robust_bad_input_test   argument checking, plain C++ before any kernel
#   attend.headers, attend.odr, the examples           compile and link checks, usage demos
#   Threads.OneModuleCalledFromEightThreads            8 threads calling one module: 4 tests, about
#                           2/3 of the whole suite's time under qemu; qemu runs the guest with the
#                           host's (x86) memory ordering, so it cannot show an ARM-only race, and
#                           ThreadSanitizer runs these tests in the sanitize stage
#   StreamedOutput/Shapes.*, CallFormsStreamed.*  32 MiB results, for the non-temporal stores of the
#                           AVX-512 and AVX2 epilogues;
#                           elsewhere just a large shape (35-80 s under qemu), its tiles covered by
#                           the other shapes
# Measured on 2 cores shared with other jobs (load 3.5 to 6), -j2, ccache off: the subset's build
# 154 s and its 248 tests 226 s under qemu (2.7 CPU-minutes); `all` builds in about 10 minutes
# (9.8 CPU-minutes of compiling) and runs its 310 tests in 300 s.
#
# Not run in a cross build at all (not even with `all`): the package consumer tests (attend.package.*,
# projects configured without the toolchain, whose programs would run without the emulator) and the
# compile-fail tests (-march=native names the build machine; the refusals are the same on every
# target, and the x86 stages check them); the benchmark (Google Benchmark is not there for aarch64).
#
# Environment: JOBS (default: all cores), ARM64_BUILD_DIR (default build-arm64; build-arm64-all for
# all, build-arm64-asan for asan), ARM64_TIMEOUT (per test, seconds; default 600), ARM64_CXX_FLAGS
# (extra target flags, e.g. -march=armv8.2-a+fp16 for Eigen's Packet8hf: the golden and shapes tests
# pass with it too). ccache is used when installed; Ninja when installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
what="${1:-subset}"
# One build directory per mode: the subset is whatever test executables its directory holds, so
# a directory where `all` built every executable would run every test.
case "$what" in
  all) default_dir=build-arm64-all ;;
  asan) default_dir=build-arm64-asan ;;
  *) default_dir=build-arm64 ;;
esac
dir="${ARM64_BUILD_DIR:-$default_dir}"
timeout="${ARM64_TIMEOUT:-600}"
toolchain=cmake/toolchains/aarch64-linux-gnu.cmake
gtest_src=/usr/src/googletest

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
[[ -f "$gtest_src/CMakeLists.txt" ]] || missing+=(googletest)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "arm64.sh: missing ${missing[*]} (Debian: apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 1
fi
echo "arm64.sh: $(aarch64-linux-gnu-g++ --version | head -1); $(qemu-aarch64 --version | head -1)"

configure=(-S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=Release
           -DATTEND_GTEST_SOURCE_DIR="$gtest_src" -DATTEND_BUILD_TESTS=ON -DATTEND_BUILD_BENCHMARKS=OFF
           -DATTEND_INSTALL=OFF -DATTEND_WERROR=ON "-DCMAKE_CXX_FLAGS=${ARM64_CXX_FLAGS:-}")
command -v ccache >/dev/null 2>&1 && configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
command -v ninja >/dev/null 2>&1 && configure+=(-G Ninja)

# The subset: build its executables, then ctest's arguments in `tests`.
build_subset() {
  cmake "${configure[@]}" -DATTEND_BUILD_EXAMPLES=OFF "$@"
  local targets=() target
  while read -r target; do
    targets+=("$target")
  done < <(cmake --build "$dir" --target help | grep -oE '\battend_[a-z0-9_]+_test\b' | sort -u |
           grep -vE '^attend_(errors|robust_bad_input)_test$')
  if [[ ${#targets[@]} -eq 0 ]]; then
    echo "arm64.sh: no test executables in $dir's target list" >&2
    exit 1
  fi
  echo "arm64.sh: building ${targets[*]}"
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  # Tests of executables not built show up as <target>_NOT_BUILT.
  tests=(-E 'NOT_BUILT|^attend\.(headers$|odr\.)|\.OneModuleCalledFromEightThreads<|^attend\.StreamedOutput/|^attend\.CallFormsStreamed\.')
}

start=$SECONDS
case "$what" in
  all)
    cmake "${configure[@]}" -DATTEND_BUILD_EXAMPLES=ON
    cmake --build "$dir" -j "$jobs"
    tests=()
    ;;
  subset)
    build_subset
    ;;
  asan)
    # Test discovery runs the executables while building, so the options are needed from here on.
    export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    build_subset -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g" \
      "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer ${ARM64_CXX_FLAGS:-}"
    ;;
  *)
    echo "usage: $0 [subset|all|asan]" >&2
    exit 2
    ;;
esac
echo "arm64.sh: built in $((SECONDS - start))s"

start=$SECONDS
ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout "$timeout" "${tests[@]}"
echo "arm64.sh: tests ran in $((SECONDS - start))s under qemu-aarch64"
