#!/usr/bin/env bash
# Sanitizer stage of attend's CI (called from .ci/run; runs on its own too):
#
#   1. AddressSanitizer + UndefinedBehaviorSanitizer: the whole test suite (tests on, benchmarks and
#      examples off) built with -fsanitize=address,undefined -fno-sanitize-recover=all -O1 -g, and
#      run with ctest. Any report fails the test that made it.
#   2. ThreadSanitizer: a separate build of just the executables with multi-threaded tests (label
#      "threads", and the unit tests' sources that use a thread pool), and a run of the tests whose
#      names say threads. Any report fails (halt_on_error=1); no suppressions are used.
#
#   .ci/sanitize.sh              both
#   .ci/sanitize.sh asan|tsan    one of them
#
# Environment: SANITIZE_CXX (default clang++: it builds the ASan+UBSan suite about 3x faster than
# g++, whose UBSan instrumentation doubles the compile time of Eigen-heavy tests; g++ works too),
# JOBS (default: all cores),
# SANITIZE_MARCH (default native: the kernels compile for this machine's ISA, as the tests do),
# ASAN_BUILD_DIR / TSAN_BUILD_DIR (default build-asan / build-tsan). ccache is used when installed.
# Packaging tests (attend.package.*: consumer projects built from scratch) are not run here; they
# build uninstrumented projects and belong to the plain test stage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cxx="${SANITIZE_CXX:-clang++}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
march="${SANITIZE_MARCH:-native}"
asan_dir="${ASAN_BUILD_DIR:-build-asan}"
tsan_dir="${TSAN_BUILD_DIR:-build-tsan}"
what="${1:-all}"

common=(-DCMAKE_CXX_COMPILER="$cxx" -DATTEND_BUILD_TESTS=ON -DATTEND_BUILD_BENCHMARKS=OFF
        -DATTEND_BUILD_EXAMPLES=OFF -DATTEND_INSTALL=OFF -DCMAKE_BUILD_TYPE=Sanitize
        -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g")
command -v ccache >/dev/null 2>&1 && common+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
command -v ninja >/dev/null 2>&1 && common+=(-G Ninja)
arch_flags=""
[[ -n "$march" ]] && arch_flags="-march=$march"

# A sanitizer runtime that is missing (libclang-rt-14-dev on Debian) fails here, clearly.
check_runtime() {  # check_runtime <-fsanitize=...>
  local probe
  probe="$(mktemp -d)"
  printf 'int main() { return 0; }\n' > "$probe/p.cpp"
  if ! "$cxx" "$1" "$probe/p.cpp" -o "$probe/p" 2> "$probe/err"; then
    echo "sanitize.sh: $cxx cannot link with $1:" >&2
    cat "$probe/err" >&2
    echo "sanitize.sh: install the sanitizer runtimes (Debian: libasan8 libubsan1 libtsan2 for g++," \
         "libclang-rt-14-dev for clang++)" >&2
    rm -rf "$probe"
    return 1
  fi
  rm -rf "$probe"
}

# A build directory configured with another compiler is started afresh (CMake refuses to switch).
fresh_for_compiler() {  # fresh_for_compiler <build dir>
  local cache="$1/CMakeCache.txt" want
  want="$(command -v "$cxx" || echo "$cxx")"
  if [[ -f "$cache" ]] && ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=${want}\$" "$cache"; then
    echo "sanitize.sh: $1 was configured with another compiler; starting it afresh"
    rm -rf "$1"
  fi
}

asan() {
  check_runtime -fsanitize=address,undefined
  fresh_for_compiler "$asan_dir"
  local flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer $arch_flags"
  cmake -S . -B "$asan_dir" "${common[@]}" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
  cmake --build "$asan_dir" -j "$jobs"
  # detect_leaks: LeakSanitizer too. Each test is its own process, so a report names it.
  ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:abort_on_error=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$asan_dir" --output-on-failure -j "$jobs" -E '^attend\.package\.'
}

tsan() {
  check_runtime -fsanitize=thread
  fresh_for_compiler "$tsan_dir"
  local flags="-fsanitize=thread -fno-omit-frame-pointer $arch_flags"
  cmake -S . -B "$tsan_dir" "${common[@]}" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread"
  # Only the executables with threaded tests: the robust ones (label "threads"), and each other test
  # whose source uses a thread pool (tests/<folder>/<name>_test.cpp builds attend_<name>_test, see
  # attend_test() in tests/support/CMakeLists.txt; tests/robust/ builds attend_robust_<name>_test).
  local targets=(attend_robust_threads_test) available src name
  available="$(cmake --build "$tsan_dir" --target help 2>/dev/null || true)"
  for src in tests/*/*_test.cpp; do
    [[ "$src" == tests/robust/* ]] && continue
    grep -q 'ThreadPool' "$src" || continue
    name="attend_$(basename "$src" .cpp)"
    if grep -qE "(^|[^a-z_])${name}([^a-z_]|$)" <<< "$available"; then
      targets+=("$name")
    fi
  done
  echo "sanitize.sh: ThreadSanitizer targets: ${targets[*]}"
  cmake --build "$tsan_dir" -j "$jobs" --target "${targets[@]}"

  # Some kernels place mappings where TSan's shadow expects none ("FATAL: ThreadSanitizer: unexpected
  # memory mapping", vm.mmap_rnd_bits > 28): then run without address-space randomisation.
  local run=() probe_out
  probe_out="$("$tsan_dir/tests/robust/attend_robust_threads_test" --gtest_list_tests 2>&1 || true)"
  if grep -q 'unexpected memory mapping' <<< "$probe_out"; then
    echo "sanitize.sh: ThreadSanitizer needs a fixed address space here: running under setarch -R"
    run=(setarch "$(uname -m)" -R)
  fi
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4" \
    "${run[@]}" ctest --test-dir "$tsan_dir" --output-on-failure -j "$jobs" \
    -R 'Thread|thread|Concurr' -E 'NOT_BUILT|compile_fail'
}

case "$what" in
  asan) asan ;;
  tsan) tsan ;;
  all) asan; tsan ;;
  *) echo "usage: $0 [asan|tsan]" >&2; exit 2 ;;
esac
