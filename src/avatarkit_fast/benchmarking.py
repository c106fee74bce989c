"""A small, dependency-free timing harness shared by ``benchmarks/`` and
``avatarkit-fast bench``.

Budgets in this project are ratios measured in the same run, never absolute
times: :func:`measure` times several cases *interleaved* (round-robin, so a
noisy neighbour hits them all alike) and keeps each case's best round.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Callable, Mapping

__all__ = ["measure", "short_mode", "Timing"]


def short_mode() -> bool:
    """True when benchmarks should run briefly (CI): ``AVATARKIT_BENCH_SHORT=1``
    or ``CI`` set in the environment."""
    flag = os.environ.get("AVATARKIT_BENCH_SHORT")
    if flag is not None:
        return flag not in ("", "0")
    return bool(os.environ.get("CI"))


class Timing(dict):
    """Best seconds per call of each case; ``ratio(a, b)`` is ``a / b``."""

    def ratio(self, a: str, b: str) -> float:
        return self[a] / self[b]


def _calibrate(fn: Callable[[], object], target: float) -> int:
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target or number >= 1 << 24:
            return number
        number *= 2 if elapsed <= 0 else max(2, min(10, int(target / elapsed) + 1))


def measure(
    cases: Mapping[str, Callable[[], object]],
    *,
    rounds: int | None = None,
    target_seconds: float | None = None,
) -> Timing:
    """Best-of-``rounds`` seconds per call for each case, interleaved.

    Each round calls every case ``number`` times, ``number`` calibrated per
    case so that one round takes about ``target_seconds``.
    """
    short = short_mode()
    if rounds is None:
        rounds = 5 if short else 15
    if target_seconds is None:
        target_seconds = 0.01 if short else 0.05
    numbers = {name: _calibrate(fn, target_seconds) for name, fn in cases.items()}
    best = {name: float("inf") for name in cases}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                n = numbers[name]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                per_call = (time.perf_counter() - t0) / n
                if per_call < best[name]:
                    best[name] = per_call
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(best)
