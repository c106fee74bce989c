"""Short soak and concurrency runs (the long ones: ``scripts/soak.py
--seconds 3600`` and ``scripts/concurrency.py --seconds 300``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import avatarkit_fast

ROOT = Path(__file__).resolve().parents[1]
SOAK_SECONDS = os.environ.get("AVATARKIT_SOAK_SECONDS", "30")
CONCURRENCY_SECONDS = os.environ.get("AVATARKIT_CONCURRENCY_SECONDS", "30")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("avatarkit_fast.controller") is None,
                       reason="no controller in this build"),
]


def _run(script: str, *args: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(avatarkit_fast.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(lines[-1])
    print(script, out)
    return out


def test_soak_short_keeps_every_check_and_memory_flat():
    out = _run("soak.py", "--seconds", SOAK_SECONDS, "--warmup", str(float(SOAK_SECONDS) / 3))
    assert "failure" not in out, out
    assert all(n > 0 for n in out["conversations"].values()), out["conversations"]
    assert out["rss_drift_pct"] <= 5.0, out["rss_mb"]


def test_producer_and_consumer_threads_lose_nothing_and_never_deadlock():
    out = _run("concurrency.py", "--seconds", CONCURRENCY_SECONDS)
    assert out["ok"], out["failure"]
    assert out["conversations_completed"] >= 1 and out["samples_played"] > 0, out
