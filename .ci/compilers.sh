#!/usr/bin/env bash
# Compiler and standard stage of attend's CI (called from .ci/run; runs on its own too): attend's own
# code (tests, benchmark, examples) must build warning-free with g++ and clang++, as C++17 and C++20,
# under -Wall -Wextra -Wpedantic (cmake/attendWarnings.cmake; Eigen is a system header). Each
# (compiler, standard) pair is checked once, in the cheapest way that still sees its warnings:
#
#   clang20   clang++ -std=c++20, ATTEND_WERROR=ON: full build (tests, benchmark, examples) and the
#             whole ctest suite (the package consumers and compile-fail tests as C++20 too)
#   gcc20     g++ -std=c++20, ATTEND_WERROR=ON: full Release build, no tests. A full build because
#             GCC's optimiser-stage warnings (-Wmaybe-uninitialized, -Warray-bounds, -Wrestrict, ...)
#             appear only when code is generated, and C++20's library differs
#   clang17   clang++ -std=c++17, ATTEND_WERROR=ON: every translation unit of the build compiled with
#             -fsyntax-only (clang's warnings come from its front end; about 1/8 of a full build)
#   gcc17     g++ as the tests stage builds it (scripts/test.sh: C++17, Release, ccache): the same
#             configuration in its own directory, so with ccache every object comes from the tests
#             stage's cache, warnings included (ccache replays them). Fails on any warning in the log,
#             which is -Werror for a build that the tests stage has already run. Alone, or without
#             ccache, it is a full build.
#
#   .ci/compilers.sh                      all four (cheapest first)
#   .ci/compilers.sh clang17 gcc20 ...    some of them
#
# Environment: GCC20_SYNTAX_ONLY=1 (gcc20 with -fsyntax-only too: about 1 minute instead of 7 on 2
# cores, but blind to the optimiser-stage warnings), JOBS (default: all cores), GXX (default g++),
# CLANGXX (default clang++),
# BUILD_PREFIX (default build-cc-: build directories build-cc-clang20, ...). ccache is used when
# installed; Ninja when installed, except for gcc17 (the tests stage's generator, for ccache hits).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
gxx="${GXX:-g++}"
clangxx="${CLANGXX:-clang++}"
prefix="${BUILD_PREFIX:-build-cc-}"
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

summary=()
timed() {  # timed <name> <command...>
  local name="$1" start=$SECONDS
  shift
  echo
  echo "==== compilers: ${name} ($(date -u +%H:%M:%S) UTC)"
  "$@"
  summary+=("$(printf '%-8s %5ds' "$name" $((SECONDS - start)))")
  echo "==== compilers: ${name} ok in $((SECONDS - start))s"
}

# A build directory configured with another compiler or generator is started afresh.
fresh_for() {  # fresh_for <dir> <compiler>
  local cache="$1/CMakeCache.txt" want
  want="$(command -v "$2" || echo "$2")"
  if [[ -f "$cache" ]] && ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=${want}\$" "$cache"; then
    echo "compilers.sh: $1 was configured with another compiler; starting it afresh"
    rm -rf "$1"
  fi
}

configure() {  # configure <dir> <compiler> <standard> [cmake args...]
  local dir="$1" cxx="$2" std="$3"
  shift 3
  fresh_for "$dir" "$cxx"
  cmake -S . -B "$dir" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_STANDARD="$std" -DCMAKE_CXX_STANDARD_REQUIRED=ON \
    -DCMAKE_CXX_EXTENSIONS=OFF -DATTEND_WERROR=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DATTEND_BUILD_TESTS=ON -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_EXAMPLES=ON "$@" >/dev/null
  # The standard really reaches the compile commands (the targets' cxx_std_17 is only a minimum).
  if ! grep -q -- "-std=c++${std}" "$dir/compile_commands.json"; then
    echo "compilers.sh: no -std=c++${std} in $dir/compile_commands.json" >&2
    return 1
  fi
}

# Every entry of compile_commands.json, compiled with -fsyntax-only, $jobs at a time.
syntax_check() {  # syntax_check <dir>
  python3 - "$1/compile_commands.json" "$jobs" <<'EOF'
import concurrent.futures, json, shlex, subprocess, sys
entries = json.load(open(sys.argv[1]))
def check(e):
    # The build's command without its outputs (-o, the dependency file), plus -fsyntax-only.
    args, drop = [], 0
    for a in shlex.split(e["command"]):
        if drop:
            drop -= 1
        elif a in ("-o", "-MT", "-MF", "-MQ"):
            drop = 1
        elif a not in ("-MD", "-MMD"):
            args.append(a)
    p = subprocess.run(args + ["-fsyntax-only"], cwd=e["directory"], capture_output=True, text=True)
    return e["file"], p.returncode, p.stdout + p.stderr
failed = 0
with concurrent.futures.ThreadPoolExecutor(int(sys.argv[2])) as pool:
    for f, rc, out in pool.map(check, entries):
        if rc != 0 or out.strip():
            failed += 1
            print(f"---- {f}: exit {rc}\n{out}", flush=True)
print(f"compilers.sh: -fsyntax-only: {len(entries) - failed} of {len(entries)} translation units clean")
sys.exit(1 if failed else 0)
EOF
}

clang20() {
  local dir="${prefix}clang20"
  configure "$dir" "$clangxx" 20
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

gcc20() {
  local dir="${prefix}gcc20"
  configure "$dir" "$gxx" 20
  if [[ "${GCC20_SYNTAX_ONLY:-0}" == 1 ]]; then
    syntax_check "$dir"
  else
    cmake --build "$dir" -j "$jobs"
  fi
}

clang17() {
  local dir="${prefix}clang17"
  configure "$dir" "$clangxx" 17
  syntax_check "$dir"
}

gcc17() {
  # scripts/test.sh's configuration, verbatim (no compiler, generator or standard named), so that the
  # compile commands, and with them ccache's keys, are the tests stage's.
  local dir="${prefix}gcc17" log
  log="$(mktemp)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    -DATTEND_BUILD_TESTS=ON -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_EXAMPLES=ON >/dev/null
  cmake --build "$dir" -j "$jobs" 2>&1 | tee "$log"
  if grep -E '(warning|error):' "$log" >/dev/null; then
    echo "compilers.sh: g++ C++17 (the tests stage's build) has warnings:" >&2
    grep -E '(warning|error):' "$log" | sort | uniq -c | sort -rn | head -40 >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

what=("$@")
[[ ${#what[@]} -eq 0 ]] && what=(gcc17 clang17 clang20 gcc20)
start=$SECONDS
for w in "${what[@]}"; do
  case "$w" in
    clang20|gcc20|clang17|gcc17) timed "$w" "$w" ;;
    *) echo "usage: $0 [clang20|gcc20|clang17|gcc17]..." >&2; exit 2 ;;
  esac
done
echo
echo "==== compilers: done in $((SECONDS - start))s"
printf '  %s\n' "${summary[@]}"
