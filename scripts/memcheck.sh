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
#   PYTHON (default: python3) runs the build and the tests; the valgrind logs
#   are left in $MEMCHECK_LOGS (default: memcheck-logs/). MEMCHECK_CORPUS_WIRE,
#   _RELAY, _CONTROLLER: more inputs to replay (e.g. a fuzzing run's corpus).
# Default pytest arguments: the suite without the slow tests (debug); the tests
# that run compiled code in-process (valgrind, where the plugin
# scripts/pytest_memcheck.py lifts hypothesis deadlines).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
mode=${1:-all}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
pytest_args=("$@")
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(tests -m "not slow" -q -p no:cacheprovider -x)
# Under valgrind, by default: every test that runs our compiled code in this
# process (the rest spawn subprocesses or are pure Python over sockets).
valgrind_args=("$@")
[ ${#valgrind_args[@]} -gt 0 ] || valgrind_args=(
  tests/test_wire.py tests/test_ring.py tests/test_sync.py tests/test_controller.py
  tests/test_controller_api.py tests/test_controller_scenarios.py tests/test_relay.py
  tests/test_faults_relay.py -m "not slow" -q -p no:cacheprovider)

debug() {
  local work
  work=$(mktemp -d)
  mkdir "$work/repo"
  # the shared fixtures folder sits beside the repository: keep it there
  [ -d "$ROOT/../shared" ] && ln -s "$(cd "$ROOT/../shared" && pwd)" "$work/shared"
  # the tracked tree plus anything new, without build products
  tar --exclude-vcs --exclude='*.so' --exclude='*.c' --exclude=build --exclude='__pycache__' \
      --exclude='.hypothesis' --exclude='fuzz-artifacts' --exclude='memcheck-logs' -cf - . \
      | tar -xf - -C "$work/repo"
  echo "== debug build (AVATARKIT_CYTHON_DEBUG=1) in $work/repo"
  local rc=0
  (cd "$work/repo" && AVATARKIT_CYTHON_DEBUG=1 "$PYTHON" setup.py build_ext --inplace -q) || rc=$?
  if [ $rc -eq 0 ]; then
    echo "== suite against the debug build"
    (cd "$work/repo" && PYTHONPATH=src "$PYTHON" -m pytest "${pytest_args[@]}") || rc=$?
  fi
  rm -rf "$work"
  return $rc
}

vg() {  # vg NAME CMD...: one run under memcheck, its log in $logdir/NAME.log
  local name=$1; shift
  PYTHONMALLOC=malloc PYTHONPATH=src:scripts AVATARKIT_FUZZ_ENGINE=builtin \
    valgrind --tool=memcheck --error-limit=no --num-callers=40 --track-origins=no \
    --log-file="$logdir/$name.log" "$@"
}

valgrind_run() {
  command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; return 2; }
  logdir=${MEMCHECK_LOGS:-$ROOT/memcheck-logs}
  mkdir -p "$logdir"
  echo "== optimised build in place"
  "$PYTHON" setup.py build_ext --inplace -q
  echo "== suite under valgrind memcheck (logs: $logdir)"
  local rc=0
  vg pytest "$PYTHON" -m pytest -p pytest_memcheck "${valgrind_args[@]}" || rc=$?
  [ $rc -eq 0 ] || { echo "the suite failed under valgrind (exit $rc)" >&2; return $rc; }
  echo "== fuzz seed corpora (and any extra corpus in \$MEMCHECK_CORPUS) under valgrind memcheck"
  vg wire-message "$PYTHON" fuzz/fuzz_wire.py --target message fuzz/corpus/wire/* ${MEMCHECK_CORPUS_WIRE:-}
  vg wire-animation "$PYTHON" fuzz/fuzz_wire.py --target animation fuzz/corpus/wire/* ${MEMCHECK_CORPUS_WIRE:-}
  vg relay "$PYTHON" fuzz/fuzz_relay.py fuzz/corpus/relay/* ${MEMCHECK_CORPUS_RELAY:-}
  vg controller "$PYTHON" fuzz/fuzz_controller.py fuzz/corpus/controller/* ${MEMCHECK_CORPUS_CONTROLLER:-}
  "$PYTHON" "$ROOT/scripts/memcheck_report.py" "$logdir"/*.log
}

case $mode in
  debug) debug ;;
  valgrind) valgrind_run ;;
  all) debug && valgrind_run ;;
  *) echo "usage: $0 [debug|valgrind|all] [-- PYTEST-ARGS...]" >&2; exit 2 ;;
esac
