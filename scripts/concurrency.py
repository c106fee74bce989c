"""Concurrency: a producer thread (network side: ``yield_audio_data``,
``yield_frames_data``) and a consumer thread (audio-callback side: 10 ms
``read_audio_into`` + ``current_frame_into``) on one ``AvatarController``,
both with random timings, for a wall-clock budget.

Checks: every yielded sample is played exactly once and in order (the audio is
a counting ramp, so a lost, doubled or stale sample shows); the keyframe shown
never runs ahead of the audio and never goes back within a conversation;
neither thread stalls (a watchdog fails the run when no progress is made for
10 s). Reports the consumer's call-time percentiles (one tick = both calls).

    python scripts/concurrency.py --seconds 180      # prints a JSON summary
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))

import controller_ops as ops  # noqa: E402


class Result:
    def __init__(self) -> None:
        self.failure: str | None = None
        self.conversations = 0
        self.samples_yielded = 0
        self.samples_played = 0


def run(seconds: float, seed: int = 0, sample_rate: int = 16000, fps: int = 25) -> dict:
    from avatarkit_fast.controller import AvatarController

    # The plain presentation: every frame shown is checked against the audio.
    ctrl = AvatarController(sample_rate=sample_rate, fps=fps, transition_in=0, transition_out=0, idle=None)
    res = Result()
    rng_p = random.Random(seed)
    rng_c = random.Random(seed + 1)
    stop = threading.Event()
    done_playing = threading.Event()   # consumer -> producer: the conversation has played out
    progress = {"producer": time.monotonic(), "consumer": time.monotonic()}
    tick = sample_rate // 100
    times = np.zeros(4_000_000, np.int64)
    n_times = 0
    # shared plan: what the current conversation is (set by the producer before its first yield)
    plan = {"expected": None, "total": 0}
    env_cache: dict = {}

    def fail(msg: str) -> None:
        if res.failure is None:
            res.failure = msg
        stop.set()

    def producer() -> None:
        ramp = 0
        try:
            while not stop.is_set():
                total = int(rng_p.uniform(2.0, 15.0) * sample_rate)
                pcm = ops.ramp_pcm(ramp, total)
                ramp += total
                n_frames = total * fps // sample_rate + 1
                done_playing.clear()
                plan["expected"] = np.frombuffer(pcm, "<i2")
                plan["total"] = total
                pos = 0   # bytes yielded
                frames_sent = 0
                cid = None
                while pos < len(pcm) and not stop.is_set():
                    n = rng_p.choice((1, 3, 320, 640, 641, 1280, 6400))
                    n = min(n, len(pcm) - pos)
                    end = pos + n == len(pcm)
                    new = ctrl.yield_audio_data(pcm[pos : pos + n], end=end)
                    if cid is None:
                        cid = new
                    elif new != cid:
                        return fail(f"id changed mid-utterance {cid} -> {new}")
                    pos += n
                    covered = pos // 2
                    while frames_sent < n_frames and frames_sent * sample_rate // fps <= covered:
                        k = min(50 if frames_sent == 0 else 100, n_frames - frames_sent)
                        key = (frames_sent, k, frames_sent + k == n_frames)
                        env = env_cache.get(key)
                        if env is None:
                            env = env_cache[key] = ops.envelope_of(ops.synthetic_frames(k, frames_sent), end=key[2])
                        ctrl.yield_frames_data([env], cid)
                        frames_sent += k
                    progress["producer"] = time.monotonic()
                    r = rng_p.random()
                    if r < 0.3:
                        time.sleep(rng_p.uniform(0, 0.004))
                    elif r < 0.31:
                        time.sleep(rng_p.uniform(0.01, 0.05))  # a network hiccup
                res.samples_yielded += total
                # the next conversation must not cut this one short
                while not stop.is_set() and not done_playing.wait(0.5):
                    progress["producer"] = time.monotonic()
                res.conversations += 1
        except Exception as exc:  # noqa: BLE001 - reported as the run's failure
            fail(f"producer: {type(exc).__name__}: {exc}")

    def consumer() -> None:
        nonlocal n_times
        buf = np.empty(tick, np.int16)
        fbuf = np.empty(120, np.float32)
        s = 0
        last_shown = -1
        expected = None
        clock = time.perf_counter_ns
        try:
            while not stop.is_set():
                t0 = clock()
                ctrl.read_audio_into(buf)
                ctrl.current_frame_into(fbuf)
                t1 = clock()
                if n_times < times.size:
                    times[n_times] = t1 - t0
                    n_times += 1
                progress["consumer"] = time.monotonic()
                if plan["expected"] is not expected:
                    if expected is not None and s != len(expected):
                        return fail(f"conversation ended after {s} of {len(expected)} samples")
                    expected = plan["expected"]
                    s = 0
                    last_shown = -1
                got = buf[buf != 0]
                if got.size:
                    if expected is None or not np.array_equal(got, expected[s : s + got.size]):
                        return fail(f"samples {s}..{s + got.size} of the conversation are not the yielded ones")
                    s += got.size
                    res.samples_played += got.size
                    shown = int(fbuf[0]) - 1
                    if shown >= 0:
                        if shown > s * fps // sample_rate:
                            return fail(f"frame {shown} shown after {s} samples: ahead of the audio")
                        if shown < last_shown:
                            return fail(f"frame went back {last_shown} -> {shown}")
                        last_shown = shown
                    if s == len(expected):
                        done_playing.set()
                r = rng_c.random()
                if r < 0.5:
                    time.sleep(rng_c.uniform(0, 0.002))
                elif r < 0.51:
                    time.sleep(0.02)  # a late audio callback
        except Exception as exc:  # noqa: BLE001
            fail(f"consumer: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=producer, daemon=True), threading.Thread(target=consumer, daemon=True)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - t_start < seconds and not stop.is_set():
        time.sleep(0.2)
        now = time.monotonic()
        for who, t in progress.items():
            if now - t > 10:
                fail(f"{who} made no progress for {now - t:.0f} s: deadlock?")
    stop.set()
    done_playing.set()
    for t in threads:
        t.join(15)
        if t.is_alive():
            fail("a thread did not finish: deadlock")
    elapsed = time.monotonic() - t_start
    us = np.sort(times[:n_times]) / 1000.0
    pct = lambda q: round(float(us[min(len(us) - 1, int(q * len(us)))]), 2) if len(us) else None  # noqa: E731
    return {
        "ok": res.failure is None,
        "failure": res.failure,
        "seconds": round(elapsed, 1),
        "conversations_completed": res.conversations,
        "samples_played": res.samples_played,
        "ticks": int(n_times),
        "consumer_tick_us": {"p50": pct(0.5), "p99": pct(0.99), "p99.9": pct(0.999),
                             "max": round(float(us[-1]), 1) if len(us) else None},
        "switch_interval_ms": round(sys.getswitchinterval() * 1000, 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--switch-interval", type=float, default=None,
                   help="sys.setswitchinterval in ms (default: the interpreter's, 5 ms)")
    args = p.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000.0)
    out = run(args.seconds, seed=args.seed, sample_rate=args.sample_rate)
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
