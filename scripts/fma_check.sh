#!/usr/bin/env bash
# The compiled twins must compute bit for bit what the pure ones do, whatever
# the compiler is allowed to do with floating point.  This builds the
# extensions in a throw-away copy of the tree with fused multiply-add
# contraction encouraged (CFLAGS="-mfma -ffp-contract=fast"), then runs the
# differential test and the keyframe blend tests against that build.
# Skips (exit 0, saying why) where the CPU has no FMA: the build could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(uname -m)" != "x86_64" ] || ! grep -qw fma /proc/cpuinfo 2>/dev/null; then
  echo "fma_check: skipped: needs an x86-64 CPU with FMA (this is $(uname -m)$(grep -qw fma /proc/cpuinfo 2>/dev/null || echo ', no fma flag in /proc/cpuinfo'))"
  exit 0
fi

python=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The source tree (with any edits not yet committed), without the build's
# outputs, so that every extension is compiled afresh with the flags below.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard \
    | grep -zv -e '\.so$' -e '\.pyd$' -e '\.c$' \
    | xargs -0 cp --parents -P -t "$work"
else
  tar -C "$root" --exclude=.venv --exclude=build --exclude='*.so' --exclude='*.c' \
    --exclude=.git -cf - . | tar -C "$work" -xf -
fi

# What the build needs (pyproject's build-system requires); a no-op where present.
"$python" -m pip install --quiet "Cython>=3.0.10" "setuptools>=77" "numpy>=1.25"

echo "fma_check: building with CFLAGS=\"-mfma -ffp-contract=fast\" in $work"
(cd "$work" && CFLAGS="-mfma -ffp-contract=fast" "$python" setup.py build_ext --inplace -q >"$work/build.log" 2>&1) \
  || { tail -20 "$work/build.log" >&2; echo "fma_check: the build failed" >&2; exit 1; }

cd "$work"
PYTHONPATH="$work/src" AVATARKIT_NO_EXTENSIONS=0 "$python" -m pytest -q -p no:cacheprovider \
  tests/test_differential.py tests/test_ring.py -k "differential or compiled_engine or invariants or blend"
echo "fma_check: compiled and pure twins agree with contraction encouraged"
