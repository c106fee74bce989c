"""A short run of every fuzz harness in ``fuzz/`` (coverage-guided with
``atheris`` where installed, the built-in mutator otherwise).

Each target runs in its own process for ``AVATARKIT_FUZZ_SECONDS`` (default
60) and must finish clean: no failing input, no crash, no hang. Also replays
every committed seed, so a seed that fails is caught in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import avatarkit_fast

REPO_ROOT = Path(__file__).resolve().parents[1]
FUZZ_DIR = REPO_ROOT / "fuzz"
sys.path.insert(0, str(FUZZ_DIR))

from _runner import parse_libfuzzer_stats  # noqa: E402

SECONDS = float(os.environ.get("AVATARKIT_FUZZ_SECONDS", "60"))

# target id -> (harness, extra args, module that must exist, corpus folder)
TARGETS = {
    "wire-message": ("fuzz_wire.py", ["--target", "message"], "avatarkit_fast.wire", "wire"),
    "wire-animation": ("fuzz_wire.py", ["--target", "animation"], "avatarkit_fast.wire", "wire"),
    "relay": ("fuzz_relay.py", [], "avatarkit_fast.relay", "relay"),
    "controller": ("fuzz_controller.py", [], "avatarkit_fast.controller", "controller"),
}


def _env() -> dict:
    env = dict(os.environ)
    # the child imports the same avatarkit_fast as this process (source tree or wheel)
    pkg_parent = str(Path(avatarkit_fast.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    return env


def _require(target: str) -> tuple[str, list[str], Path]:
    harness, args, module, corpus = TARGETS[target]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not part of this build")
    if not (FUZZ_DIR / harness).is_file():
        pytest.skip(f"fuzz/{harness} is absent")
    return harness, args, FUZZ_DIR / "corpus" / corpus


@pytest.mark.parametrize("target", list(TARGETS))
def test_seed_corpus_replays_clean(target):
    harness, args, corpus = _require(target)
    seeds = sorted(p for p in corpus.iterdir() if p.is_file())
    assert seeds, f"no seeds in {corpus}"
    proc = subprocess.run([sys.executable, str(FUZZ_DIR / harness), *args, *map(str, seeds)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz_target_runs_clean(target, tmp_path):
    harness, args, _ = _require(target)
    artifacts = tmp_path / "artifacts"
    cmd = [sys.executable, str(FUZZ_DIR / harness), *args, "--seconds", str(SECONDS),
           "--artifacts", str(artifacts)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=SECONDS * 3 + 120)
    out = proc.stdout + proc.stderr
    crashes = sorted(artifacts.glob("*")) if artifacts.exists() else []
    assert proc.returncode == 0 and not crashes, (
        f"fuzz target {target} failed (exit {proc.returncode}); inputs: {[str(c) for c in crashes]}\n"
        + out[-6000:]
    )
    stats = parse_libfuzzer_stats(out)
    for line in out.splitlines():
        if line.startswith("FUZZ-STATS "):
            stats.update(json.loads(line[len("FUZZ-STATS "):]))
    assert stats.get("execs", 0) > 0, out[-3000:]
    if importlib.util.find_spec("atheris") is not None:  # then the run was libFuzzer's, with coverage
        assert stats.get("cov", 0) > 0 and "FUZZ-STATS" not in out, out[-3000:]
    print(f"{target}: {stats}")
