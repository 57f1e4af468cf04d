#!/usr/bin/env bash
# Docs stage of attend's CI (called from .ci/run; runs on its own too): the API reference.
#
#   Configures build-docs with the docs target on (tests, benchmark, examples and install rules off),
#   then builds the `docs` target: doxygen over the public headers include/attend/*.hpp (detail/ left
#   out), docs/mainpage.md and the pages it links to (docs/semantics.md, docs/errors.md), HTML into
#   build-docs/docs/html. Doxygen runs with
#   WARN_IF_UNDOCUMENTED, WARN_NO_PARAMDOC and WARN_AS_ERROR, so any warning (an undocumented public
#   entity, a missing @param, a broken reference) fails the stage. See cmake/docs.cmake and
#   docs/Doxyfile.in.
#
#   .ci/docs.sh
#
# Environment: DOCS_BUILD_DIR (default build-docs). Needs doxygen (Debian: apt-get install doxygen;
# CI uses Debian 12's 1.9.4) and Eigen (the configure finds it, as for any build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir="${DOCS_BUILD_DIR:-build-docs}"

if ! command -v doxygen >/dev/null 2>&1; then
  echo "docs.sh: doxygen not found (Debian: apt-get install doxygen)" >&2
  exit 1
fi
echo "docs.sh: doxygen $(doxygen --version)"

cmake -S . -B "$dir" -DATTEND_BUILD_DOCS=ON -DATTEND_BUILD_TESTS=OFF -DATTEND_BUILD_BENCHMARKS=OFF \
  -DATTEND_BUILD_EXAMPLES=OFF -DATTEND_INSTALL=OFF
# Doxygen prints nothing but warnings (QUIET = YES); keep them, so a failure is explained, and make
# sure none was printed even if doxygen's own exit status missed it.
log="$dir/docs/doxygen.log"
mkdir -p "$dir/docs"
start=$SECONDS
set +e
cmake --build "$dir" --target docs 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [[ $rc -ne 0 ]]; then
  echo "docs.sh: the docs target failed ($rc)" >&2
  exit "$rc"
fi
if grep -qiE '(^|: )(warning|error):' "$log"; then
  echo "docs.sh: doxygen printed warnings:" >&2
  grep -iE '(^|: )(warning|error):' "$log" >&2
  exit 1
fi
echo "docs.sh: no warnings; $dir/docs/html/index.html ($((SECONDS - start))s)"
