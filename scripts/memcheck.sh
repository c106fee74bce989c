#!/usr/bin/env bash
# Memory safety of the compiled modules, two ways:
#
#   1. debug: a build with AVATARKIT_CYTHON_DEBUG=1 (bounds checks, wraparound,
#      initialised-memoryview checks, line tracing) in a scratch copy of the
#      tree, then the suite against it;
#   2. valgrind: the suite under valgrind memcheck (PYTHONMALLOC=malloc, so
#      every Python allocation is a malloc valgrind can see) against the normal
#      optimised build; any invalid read/write/free or use of uninitialised
#      memory whose stack passes through one of our extension modules fails.
#
# usage: scripts/memcheck.sh [debug|valgrind|all] [-- PYTEST-ARGS...]
#   PYTHON (default: python3) runs the build and the tests; the valgrind log
#   is left in $MEMCHECK_LOG (default: memcheck-valgrind.log).
# Default pytest arguments: the test suite without the slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
mode=${1:-all}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
pytest_args=("$@")
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(tests -m "not slow" -q -p no:cacheprovider -x)

debug() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  # the tracked tree plus anything new, without build products
  tar --exclude-vcs --exclude='*.so' --exclude='*.c' --exclude=build --exclude='__pycache__' \
      --exclude='.hypothesis' --exclude='fuzz-artifacts' -cf - . | tar -xf - -C "$work"
  echo "== debug build (AVATARKIT_CYTHON_DEBUG=1) in $work"
  (cd "$work" && AVATARKIT_CYTHON_DEBUG=1 "$PYTHON" setup.py build_ext --inplace -q)
  echo "== suite against the debug build"
  (cd "$work" && PYTHONPATH=src "$PYTHON" -m pytest "${pytest_args[@]}")
}

valgrind_run() {
  command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; return 2; }
  local log=${MEMCHECK_LOG:-$ROOT/memcheck-valgrind.log}
  echo "== optimised build in place"
  "$PYTHON" setup.py build_ext --inplace -q
  echo "== suite under valgrind memcheck (log: $log)"
  local rc=0
  PYTHONMALLOC=malloc PYTHONPATH=src valgrind --tool=memcheck --error-limit=no --num-callers=40 \
      --track-origins=no --log-file="$log" \
      "$PYTHON" -m pytest "${pytest_args[@]}" || rc=$?
  [ $rc -eq 0 ] || { echo "the suite failed under valgrind (exit $rc)" >&2; return $rc; }
  "$PYTHON" "$ROOT/scripts/memcheck_report.py" "$log"
}

case $mode in
  debug) debug ;;
  valgrind) valgrind_run ;;
  all) debug && valgrind_run ;;
  *) echo "usage: $0 [debug|valgrind|all] [-- PYTEST-ARGS...]" >&2; exit 2 ;;
esac
