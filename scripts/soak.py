"""Soak: simulated conversations through one ``AvatarController``, as fast as
the machine goes, for a wall-clock budget; checks every tick and watches
resident memory.

Conversation kinds: normal, late animation (the frame holds, then jumps),
interrupted mid-utterance (followed by stale animation for the old id),
replaced by a new conversation while still playing, paused and resumed,
audio-only. Audio is a counting ramp (every sample non-zero and distinct in
its neighbourhood), animation synthetic keyframes whose first float is their
index + 1, so every 10 ms tick can check: the samples played so far are
exactly the samples yielded, in order (nothing lost, nothing doubled, nothing
stale), and the frame shown is keyframe ``floor(s * fps / rate)`` of the
animation that has arrived. Counters are checked per conversation.

    python scripts/soak.py --seconds 3600            # prints a JSON summary
    python scripts/soak.py --seconds 20 --warmup 5

Exit status 1 when a check fails or resident memory after warm-up moves by
more than ``--rss-tolerance`` (5 %).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))

import controller_ops as ops  # noqa: E402

DURATIONS = (0.5, 0.84, 1.3, 2.0, 2.72, 3.1, 4.44, 5.0, 6.0)
KINDS = ("normal", "late_animation", "interrupted", "replaced", "paused", "audio_only")


class SoakFailure(AssertionError):
    pass


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SoakFailure(msg)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best we have
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024


class EnvelopeCache:
    """Encoded animation batches, built once: the soak measures the
    controller, not the encoder."""

    def __init__(self) -> None:
        self._cache: dict = {}

    def get(self, start: int, n: int, end: bool) -> bytes:
        key = (start, n, end)
        env = self._cache.get(key)
        if env is None:
            env = self._cache[key] = ops.envelope_of(ops.synthetic_frames(n, start), end=end)
        return env


class Soak:
    def __init__(self, seed: int = 0, sample_rate: int = 16000) -> None:
        from avatarkit_fast import errors
        from avatarkit_fast.controller import AvatarController

        self.errors = errors
        self.rng = random.Random(seed)
        self.sr = sample_rate
        self.fps = 25
        self.tick = sample_rate // 100
        self.chunk = sample_rate // 50
        # callbacks are counted, not kept: an hour of them would be the soak's own leak
        self.callback_counts = {"state": 0, "error": 0}
        # The plain presentation (no blends, a still idle): the soak checks
        # every frame shown against the keyframe the audio calls for.
        self.ctrl = AvatarController(sample_rate=sample_rate, fps=self.fps,
                                     transition_in=0, transition_out=0, idle=None,
                                     on_conversation_state=lambda *a: self._count("state"),
                                     on_error=lambda *a: self._count("error"))
        self.envs = EnvelopeCache()
        self.buf = np.empty(self.tick, np.int16)
        self.fbuf = np.empty(120, np.float32)
        self.ramp = 0
        self.counts = {k: 0 for k in KINDS}
        self.samples_played = 0
        self.ticks = 0
        self.stale_frames_sent = 0
        self.interrupt_calls = 0

    def _count(self, name: str) -> None:
        self.callback_counts[name] += 1

    def stats(self) -> dict:
        return ops._stats_dict(self.ctrl.stats)

    # one conversation ---------------------------------------------------

    def conversation(self, kind: str) -> None:
        rng = self.rng
        ctrl = self.ctrl
        # a few fixed lengths: the envelope cache stays small and is warm after the warm-up
        seconds = rng.choice(DURATIONS)
        total = int(seconds * self.sr)
        pcm = ops.ramp_pcm(self.ramp, total)
        self.ramp += total
        expected = np.frombuffer(pcm, "<i2")
        n_frames = total * self.fps // self.sr + 1
        before = self.stats()
        audio_only = kind == "audio_only"
        late = kind == "late_animation"
        stop_at = int(total * rng.uniform(0.1, 0.9)) if kind in ("interrupted", "replaced") else None
        pause_at = int(total * rng.uniform(0.1, 0.9)) if kind == "paused" else None
        paused_ticks = rng.randrange(1, 50)

        yielded = 0          # samples yielded
        frames_sent = 0      # keyframes yielded
        played = []          # non-silent reads of this conversation
        s = 0                # samples of this conversation played
        cid = None
        lead = rng.choice((self.chunk, 5 * self.chunk, 25 * self.chunk))  # how far audio runs ahead
        anim_delay = int(rng.uniform(0.3, 1.5) * self.sr) if late else 0  # late: up to 0.5 s behind
        batch = 50
        pause_left = None
        while True:
            # producer: audio in 20 ms chunks, kept `lead` ahead of the play head
            while yielded < total and yielded - s < lead:
                n = min(self.chunk, total - yielded)
                # odd byte split now and then: the controller carries the half sample
                chunk = pcm[2 * yielded : 2 * (yielded + n)]
                end = yielded + n == total
                if rng.random() < 0.05 and n > 1:
                    c1 = ctrl.yield_audio_data(chunk[:3], end=False)
                    c2 = ctrl.yield_audio_data(chunk[3:], end=end)
                    _check(c1 == c2, "ids differ within a conversation")
                    new = c1
                else:
                    new = ctrl.yield_audio_data(chunk, end=end)
                _check(cid is None or new == cid, f"conversation id changed mid-utterance: {cid} -> {new}")
                if cid is None:
                    cid = new
                    if audio_only:
                        ctrl.yield_frames_data([], cid)
                yielded += n
            # animation: batches of 50 then 100 keyframes, once the audio they cover
            # has been yielded (plus a delay for late animation)
            while not audio_only and frames_sent < n_frames:
                covered = (frames_sent * self.sr) // self.fps
                if covered > yielded or (late and s < covered - self.sr + anim_delay):
                    break
                n = min(batch, n_frames - frames_sent)
                env = self.envs.get(frames_sent, n, frames_sent + n == n_frames)
                _check(ctrl.yield_frames_data([env], cid) is not False, "current animation refused")
                frames_sent += n
                batch = 100
            # consumer: one 10 ms tick
            if pause_at is not None and s >= pause_at and pause_left is None:
                ctrl.pause()
                _check(ops._state_name(ctrl.state) == "PAUSED", f"state after pause {ctrl.state}")
                pause_left = paused_ticks
            if pause_left is not None and pause_left > 0:
                ctrl.read_audio_into(self.buf)
                _check(not self.buf.any(), "audio while paused")
                pause_left -= 1
                if pause_left == 0:
                    ctrl.resume()
                    pause_at = None
                self.ticks += 1
                continue
            if stop_at is not None and s >= stop_at:
                break
            ctrl.read_audio_into(self.buf)
            ctrl.current_frame_into(self.fbuf)
            self.ticks += 1
            got = self.buf[self.buf != 0]
            if got.size:
                _check(np.array_equal(got, expected[s : s + got.size]),
                       f"{kind}: samples {s}..{s + got.size} are not the yielded ones")
                s += got.size
                played.append(got.size)
            if s >= total:
                break
            if not audio_only and s and frames_sent:
                want = min(s * self.fps // self.sr, frames_sent - 1)
                shown = int(self.fbuf[0]) - 1
                _check(shown == want, f"{kind}: after {s} samples frame {shown} shown, expected {want}")
            if s - got.size > 0 and yielded - (s - got.size) >= self.tick:
                # playing with a whole tick buffered: no silence (audio_independent)
                _check(got.size == self.tick, f"{kind}: underrun at {s}/{total} with audio buffered")
        self.samples_played += s
        after_play = self.stats()
        if kind == "interrupted":
            self.interrupt_calls += 1
            ctrl.interrupt()
            ctrl.read_audio_into(self.buf)
            _check(not self.buf.any(), "audio after interrupt")
            # late animation for the old conversation: dropped and counted
            env = self.envs.get(0, 3, False)
            ctrl.yield_frames_data([env], cid)
            self.stale_frames_sent += 3
            st = self.stats()
            _check(st["frames_dropped_stale"] > after_play["frames_dropped_stale"], "stale frames not counted")
            _check(st["interrupts"] > before["interrupts"], "interrupt not counted")
            ctrl.current_frame_into(self.fbuf)
            _check(not self.fbuf.any(), "frame after interrupt is not the idle frame")
        elif kind == "replaced":
            # end the utterance early and start another: the old one stops at once
            ctrl.yield_audio_data(b"", end=True) if yielded < total else None
            new_pcm = ops.ramp_pcm(self.ramp, self.chunk)
            self.ramp += self.chunk
            new = ctrl.yield_audio_data(new_pcm, end=True)
            _check(new != cid, "a new conversation kept the old id")
            ctrl.yield_frames_data([], new)
            ctrl.yield_frames_data([self.envs.get(0, 3, False)], cid)
            self.stale_frames_sent += 3
            new_expected = np.frombuffer(new_pcm, "<i2")
            got_all = []
            for _ in range(4):
                ctrl.read_audio_into(self.buf)
                got_all.append(self.buf[self.buf != 0].copy())
            got = np.concatenate(got_all)
            _check(np.array_equal(got, new_expected),
                   f"replaced: after a new conversation started, played {got[:8]}... not the new audio")
        # idle afterwards
        for _ in range(3):
            ctrl.read_audio_into(self.buf)
            _check(not self.buf.any(), f"{kind}: audio after the conversation")
        _check(ops._state_name(ctrl.state) == "IDLE", f"{kind}: state {ctrl.state} after the conversation")
        st = self.stats()
        _check(st["buffered_audio_ms"] == 0 and st["buffered_frames"] == 0,
               f"{kind}: buffers not empty when idle: {st}")
        _check(st["conversations"] >= before["conversations"] + 1, "conversation not counted")
        if kind not in ("interrupted", "replaced"):
            _check(s == total, f"{kind}: played {s} of {total} samples")
        self.counts[kind] += 1

    def run(self, seconds: float, warmup: float) -> dict:
        t0 = time.monotonic()
        samples = []
        next_sample = t0
        warm_rss = None
        while True:
            now = time.monotonic()
            if now >= next_sample:
                gc.collect()
                r = rss_bytes()
                samples.append((round(now - t0, 1), r))
                if warm_rss is None and now - t0 >= warmup:
                    warm_rss = r
                next_sample = now + max(1.0, seconds / 200)
            if now - t0 >= seconds:
                break
            self.conversation(self.rng.choice(KINDS))
        gc.collect()
        end_rss = rss_bytes()
        after = [r for t, r in samples if t >= warmup] + [end_rss]
        warm_rss = warm_rss or after[0]
        st = self.stats()
        _check(st["conversations"] >= sum(self.counts.values()), f"conversations counted {st['conversations']}")
        _check(st["interrupts"] >= self.interrupt_calls, f"interrupts counted {st['interrupts']}")
        _check(st["frames_dropped_stale"] >= self.stale_frames_sent // 3,
               f"stale drops counted {st['frames_dropped_stale']} for {self.stale_frames_sent} stale keyframes sent")
        return {
            "seconds": round(time.monotonic() - t0, 1),
            "conversations": self.counts,
            "audio_played_s": round(self.samples_played / self.sr, 1),
            "ticks": self.ticks,
            "rss_mb": {"start": round(samples[0][1] / 2**20, 1), "after_warmup": round(warm_rss / 2**20, 1),
                       "min_after_warmup": round(min(after) / 2**20, 1),
                       "max_after_warmup": round(max(after) / 2**20, 1), "end": round(end_rss / 2**20, 1)},
            "rss_drift_pct": round(100.0 * (max(after) - min(after)) / warm_rss, 2),
            "stats": {k: v for k, v in st.items() if isinstance(v, (int, float))},
            "callbacks": dict(self.callback_counts),
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=None, help="seconds before the RSS baseline (default 10 %%, at least 5 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--rss-tolerance", type=float, default=5.0, help="percent")
    args = p.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(5.0, args.seconds * 0.1)
    soak = Soak(seed=args.seed, sample_rate=args.sample_rate)
    try:
        summary = soak.run(args.seconds, warmup)
    except SoakFailure as exc:
        print(json.dumps({"failure": str(exc), "conversations": soak.counts}))
        return 1
    summary["ok"] = summary["rss_drift_pct"] <= args.rss_tolerance
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
