"""Idle motion: what the avatar does between utterances.

:func:`breathing` makes the procedural idle the controller plays by default
(``AvatarController(idle="breathing")``): a loop of keyframes, played at the
keyframe rate and advanced by the samples read (silence included), so that
headless and sound-card playout show the same idle at the same sample.

The loop (:data:`LOOP_SECONDS` long, seamless) holds:

* a breathing-rate sway of the head (``rotation``) and the neck
  (``neck_pose``): a few thousandths of a radian, periods of 4 to 6.4 s;
* blinks (``eye_lid`` both to 1): every 2 to 6 s (uniform, seeded), each
  closed (lid past half) for about 150 ms;
* a gaze that wanders (``eye_pose``, both eyes together): a new small
  direction every 1 to 3 s, reached in a quarter second.

Poses are axis-angle vectors; the sway adds to the base pose's vectors (at
these angles the sum is the rotation composition to within 1e-5 rad).  The
same ``seed`` gives the same loop, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np

from ._schema import FLAME_OFFSETS, KEYFRAME_FLOATS

__all__ = ["LOOP_SECONDS", "BLINK_INTERVAL", "BLINK_CLOSED", "breathing", "blink_times"]

#: Length of the procedural idle loop, seconds (the sway periods divide it).
LOOP_SECONDS = 32
#: Seconds between blinks: drawn uniformly in this range.
BLINK_INTERVAL = (2.0, 6.0)
#: Seconds a blink holds the lids past half closed.
BLINK_CLOSED = 0.15
_RAMP = 0.06  # seconds to close (and to open) around the closed span


def blink_times(seed: int) -> np.ndarray:
    """The onsets (seconds into the loop) of the blinks of ``seed``'s loop;
    consecutive onsets, the loop's wrap included, are 2 to 6 s apart."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1D1E])
    lo, hi = BLINK_INTERVAL
    n = int(round(LOOP_SECONDS / ((lo + hi) / 2)))
    for _ in range(10000):
        gaps = rng.uniform(lo, hi, n)
        gaps *= LOOP_SECONDS / gaps.sum()
        # a margin inside the range, so that onsets sampled at the keyframe
        # rate still fall within it
        if gaps.min() >= lo + 0.05 and gaps.max() <= hi - 0.05:
            break
    else:  # pragma: no cover - vanishingly rare
        gaps = np.full(n, LOOP_SECONDS / n)
    start = rng.uniform(0.5, lo)
    return (start + np.concatenate(([0.0], np.cumsum(gaps[:-1])))) % LOOP_SECONDS


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@functools.lru_cache(maxsize=64)
def _loop(seed: int, fps: int) -> np.ndarray:
    rows = LOOP_SECONDS * fps
    t = np.arange(rows, dtype=np.float64) / fps
    out = np.zeros((rows, KEYFRAME_FLOATS), dtype=np.float64)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xB4EA])
    tau = 2 * np.pi
    # Sway: whole cycles per loop (seamless); phases from the seed.
    ph = rng.uniform(0, tau, 6)
    rot, neck = FLAME_OFFSETS["rotation"], FLAME_OFFSETS["neck_pose"]
    out[:, rot + 0] = 0.012 * np.sin(tau * 8 * t / LOOP_SECONDS + ph[0])  # pitch, 4 s
    out[:, rot + 1] = 0.008 * np.sin(tau * 5 * t / LOOP_SECONDS + ph[1])  # yaw, 6.4 s
    out[:, rot + 2] = 0.004 * np.sin(tau * 6 * t / LOOP_SECONDS + ph[2])  # roll
    out[:, neck + 0] = 0.008 * np.sin(tau * 8 * t / LOOP_SECONDS + ph[0] + 0.6)
    out[:, neck + 1] = 0.005 * np.sin(tau * 5 * t / LOOP_SECONDS + ph[4])
    out[:, neck + 2] = 0.003 * np.sin(tau * 7 * t / LOOP_SECONDS + ph[5])
    # Blinks: distance (on the loop) to each onset.
    lid = np.zeros(rows)
    half = BLINK_CLOSED / 2
    for onset in blink_times(seed):
        centre = onset + _RAMP / 2 + half
        d = np.abs((t - centre + LOOP_SECONDS / 2) % LOOP_SECONDS - LOOP_SECONDS / 2)
        # 1 within the closed span's core, a smooth ramp on either side; the
        # lid passes 0.5 at +-(half) from the centre
        lid = np.maximum(lid, _smooth((half + _RAMP / 2 - d) / _RAMP))
    eyelid = FLAME_OFFSETS["eye_lid"]
    out[:, eyelid] = out[:, eyelid + 1] = lid
    # Gaze: targets held 1-3 s, smooth moves of 0.25 s, the last back to the first.
    moves = []
    s = rng.uniform(0.0, 1.0)
    while s < LOOP_SECONDS - 1.5:
        moves.append(s)
        s += rng.uniform(1.0, 3.0)
    targets = rng.uniform(-1.0, 1.0, (len(moves), 2)) * (0.06, 0.1)
    eye = FLAME_OFFSETS["eye_pose"]
    gaze = np.zeros((rows, 2))
    gaze[:] = targets[-1]
    for i, m in enumerate(moves):
        prev = targets[i - 1]
        w = _smooth((t - m) / 0.25)[:, None]
        gaze = np.where(t[:, None] >= m, prev + (targets[i] - prev) * w, gaze)
    for e in (0, 3):  # both eyes: pitch and yaw
        out[:, eye + e + 0] = gaze[:, 0]
        out[:, eye + e + 1] = gaze[:, 1]
    return out


def breathing(seed: int = 0, fps: int = 25, base: Optional[Any] = None) -> np.ndarray:
    """The procedural idle loop of ``seed`` at ``fps``: a new float32
    ``(LOOP_SECONDS * fps, 120)`` array, ``base`` (120 floats, default zeros:
    the neutral face) plus the motion."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or not 1 <= fps <= 1000:
        raise ValueError(f"fps must be an int in 1..1000, got {fps!r}")
    motion = _loop(int(seed), int(fps))
    if base is None:
        return motion.astype(np.float32)
    b = np.asarray(base, dtype=np.float64).reshape(-1)
    if b.shape != (KEYFRAME_FLOATS,):
        raise ValueError(f"base must hold {KEYFRAME_FLOATS} floats, got {b.size}")
    return (motion + b).astype(np.float32)
