"""Differential test of the engine: the compiled modules and their pure
twins, fed the same seeded random call sequences (conversations, stale ids,
audio-only, interrupts, pauses, odd reads, wrong types, malformed envelopes),
give identical audio, keyframes, states, callbacks and counters.

Each implementation runs in its own process (``AVATARKIT_NO_EXTENSIONS=1``
selects the twins everywhere, exactly as a user would), and the traces'
digests are compared; on a difference the first differing call is shown.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import avatarkit_fast
from avatarkit_fast._compat import NO_EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "trace_run.py"
SEEDS = os.environ.get("AVATARKIT_DIFF_SEEDS", "0:80")
OPS = int(os.environ.get("AVATARKIT_DIFF_OPS", "250"))

pytestmark = [
    pytest.mark.skipif(NO_EXTENSIONS, reason="only the twins are built: nothing to compare"),
    pytest.mark.skipif(importlib.util.find_spec("avatarkit_fast.controller") is None,
                       reason="no controller in this build"),
]


def _run(twins: bool, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(avatarkit_fast.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")) if p)
    env["AVATARKIT_NO_EXTENSIONS"] = "1" if twins else "0"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def runs():
    c = json.loads(_run(False, "--seeds", SEEDS, "--ops", str(OPS)).stdout)
    py = json.loads(_run(True, "--seeds", SEEDS, "--ops", str(OPS)).stdout)
    return c, py


def test_compiled_engine_and_twin_agree_on_random_call_sequences(runs):
    c, py = runs
    assert all(v == ".py" for k, v in py["modules"].items() if k != "package")
    assert any(k.endswith("_c") and v != ".py" for k, v in c["modules"].items()), c["modules"]
    assert c["failures"] == py["failures"], "invariant failures differ between implementations"
    bad = [s for s in c["digests"] if c["digests"][s] != py["digests"].get(s)]
    if bad:
        seed = bad[0]
        args = ("--seeds", f"{seed}:{int(seed) + 1}", "--ops", str(OPS), "--full")
        tc = _run(False, *args).stdout.splitlines()
        tp = _run(True, *args).stdout.splitlines()
        diff = "\n".join(list(difflib.unified_diff(tc, tp, "compiled", "twin", n=2, lineterm=""))[:40])
        pytest.fail(f"{len(bad)} of {len(c['digests'])} sequences differ; first, seed {seed}:\n{diff}")
    assert len(c["digests"]) + len(c["failures"]) > 0


def test_invariants_hold_on_random_call_sequences(runs):
    c, _ = runs
    assert not c["failures"], "\n".join(f"seed {s}: {m}" for s, m in list(c["failures"].items())[:10])
