"""The sync engine on its own (compiled and pure): clock, pick, start, stalls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import IMPL_TAGS, Impl

RATES = [8000, 16000, 22050, 24000, 32000, 44100, 48000]


def _frames(k: int) -> np.ndarray:
    return np.arange(k, dtype=np.float32)[:, None] + np.zeros((1, 120), np.float32)


class Rig:
    def __init__(self, impl, sr=16000, fps=25, strict=False, linear=False, wait=16000, cap_s=300):
        self.events = []
        self.pcm = impl.ring.PcmRing(sr * cap_s)
        self.kf = impl.ring.KeyframeStore(fps * cap_s + 2)
        self.e = impl.sync.SyncEngine(
            self.pcm, self.kf, sr, fps, strict, linear, wait, lambda k, a: self.events.append((k, a))
        )
        self.sync = impl.sync
        self.out = np.zeros(120, np.float32)

    def read(self, n):
        buf = np.full(n, 99, np.int16)
        k = self.e.read_audio_into(buf)
        return k, buf

    def frame(self):
        self.e.current_frame_into(self.out)
        return self.out[0]


@settings(max_examples=60, deadline=None)
@given(
    sr=st.sampled_from(RATES),
    fps=st.sampled_from([25, 30, 24, 60]),
    reads=st.lists(st.integers(1, 3000), min_size=1, max_size=40),
    linear=st.booleans(),
    tag=st.sampled_from(IMPL_TAGS),
)
def test_pick_is_floor_of_samples_times_fps_over_rate(sr, fps, reads, linear, tag):
    r = Rig(Impl(tag), sr=sr, fps=fps, linear=linear)
    r.e.begin()
    total = sum(reads)
    r.e.push_audio(np.zeros(total, np.int16), True)
    nkf = total * fps // sr + 2
    r.e.add_frames(_frames(nkf), True)
    s = 0
    for n in reads:
        k, _ = r.read(n)
        s += k
        assert k == n
        if s == total:
            break
        idx, rem = divmod(s * fps, sr)
        want = idx + (rem / sr if linear else 0.0)
        assert r.frame() == pytest.approx(want, abs=1e-4)
        assert r.e.played == s and r.e.frame_index() == idx


def test_waits_for_animation_then_max_wait(impl):
    r = Rig(impl, wait=480)
    r.e.begin()
    r.e.push_audio(np.arange(1, 1001, dtype=np.int16), False)
    for _ in range(3):
        k, buf = r.read(160)
        assert k == 0 and not buf.any()
    assert r.e.played == 0 and r.pcm.available == 1000
    k, buf = r.read(160)  # 480 samples waited: audio starts anyway
    assert k == 160 and buf[0] == 1
    assert r.frame() == 0.0  # idle frame: no animation yet
    r.e.add_frames(_frames(5), False)
    r.read(480)
    assert r.frame() == 1.0  # 640 samples -> keyframe 1


def test_audio_only_starts_at_once_and_ignores_frames(impl):
    r = Rig(impl)
    r.e.begin()
    r.e.push_audio(np.ones(100, np.int16), True)
    r.e.set_audio_only()
    assert r.e.commit_frames(r.kf.epoch, False) == 0
    k, _ = r.read(160)
    assert k == 100 and r.e.state == r.sync.IDLE


def test_strict_sync_stalls_and_resumes(impl):
    r = Rig(impl, strict=True)
    r.e.begin()
    r.e.push_audio(np.ones(3200, np.int16), True)
    r.e.add_frames(_frames(2), False)  # keyframes 0, 1 cover samples 0..1279
    k, buf = r.read(1000)
    assert k == 1000
    k, buf = r.read(1000)
    assert k == 280 and not buf[280:].any()
    assert r.e.stalled and r.e.stalls == 1 and r.e.underrun_samples == 720
    k, _ = r.read(100)
    assert k == 0 and r.e.played == 1280 and r.e.stalls == 1
    r.e.add_frames(_frames(3)[2:], True)  # keyframe 2, and the animation ends
    k, _ = r.read(5000)
    assert k == 3200 - 1280
    ev = r.sync
    stall_events = [a for kind, a in r.events if kind == ev.EV_STALL]
    assert stall_events == [True, False]
    assert r.events[-1] == (ev.EV_STATE, ev.IDLE)


def test_audio_independent_holds_then_jumps(impl):
    r = Rig(impl)
    r.e.begin()
    r.e.push_audio(np.ones(16000, np.int16), True)
    r.e.add_frames(_frames(2), False)
    r.read(640 * 5)
    assert r.frame() == 1.0  # keyframe 5 wanted, 1 is the last there
    r.e.add_frames(_frames(10)[2:], False)
    assert r.frame() == 5.0
    assert r.e.stalls == 0


def test_pause_stands_the_clock(impl):
    r = Rig(impl)
    r.e.begin()
    r.e.push_audio(np.arange(1000, dtype=np.int16), True)
    r.e.add_frames(_frames(3), True)
    r.read(100)
    r.e.pause()
    assert r.e.state == r.sync.PAUSED
    k, buf = r.read(100)
    assert k == 0 and not buf.any() and r.e.played == 100
    r.e.resume()
    k, buf = r.read(100)
    assert k == 100 and buf[0] == 100


def test_interrupt_clears_and_reads_silence(impl):
    r = Rig(impl)
    r.e.begin()
    r.e.push_audio(np.ones(1000, np.int16), False)
    r.e.add_frames(_frames(3), False)
    r.read(10)
    assert r.e.interrupt() is True
    k, buf = r.read(100)
    assert k == 0 and not buf.any() and r.pcm.available == 0 and r.kf.total == 0
    assert r.e.interrupts == 1 and r.e.state == r.sync.IDLE
    assert r.e.interrupt() is False and r.e.interrupts == 1


def test_push_without_conversation_stores_nothing(impl):
    r = Rig(impl)
    assert r.e.push_audio(b"\x01\x00", False) == -1
    assert r.pcm.available == 0
    r.e.begin()
    assert r.e.push_audio(b"\x01\x00", True) == 1
    assert r.e.push_audio(b"\x01\x00", False) == -1


def test_engines_agree_on_a_scripted_run():
    if len(IMPL_TAGS) < 2:
        pytest.skip("compiled modules not built")
    logs = []
    for tag in IMPL_TAGS:
        r = Rig(Impl(tag), strict=True, linear=True, wait=800)
        log = []
        rng = np.random.default_rng(7)
        for conv in range(3):
            r.e.begin()
            sent = 0
            for step in range(200):
                if step % 2 == 0 and sent < 40:
                    r.e.push_audio(rng.integers(-9, 9, 320, dtype=np.int16), step == 78)
                    sent += 1
                if step in (10, 40, 70):
                    r.e.add_frames(_frames(25 + 5 * step)[-25:], step == 70)
                k, buf = r.read(int(rng.integers(1, 400)))
                log.append((k, buf.tobytes(), float(r.frame()), r.e.state, r.e.stalled))
        log.append(tuple(sorted(r.e.stats().items())))
        log.append(tuple(r.events))
        logs.append(log)
    assert logs[0] == logs[1]


# -- events: queued during a call, delivered once its state is settled ---------


def test_events_are_delivered_after_the_state_is_settled(impl):
    """At each event the engine already is in its final state for the call:
    the read that ends the audio has stopped the conversation before the
    first-frame and stall-end events are delivered; the first-frame event
    names its conversation."""
    S = impl.sync
    seen = []
    r = Rig(impl)  # its rings; the engine is made here with its own notify
    e = r.e = impl.sync.SyncEngine(r.pcm, r.kf, 16000, 25, False, False, 16000,
                                   lambda k, a: seen.append((k, a, e.active, e.state)))
    e.begin("c1", np.ones(320, np.int16).tobytes(), True)
    assert seen == [(S.EV_STATE, S.PLAYING, True, S.PLAYING)]
    assert r.pcm.available == 320, "the first audio is in before the start is told"
    e.add_frames(_frames(2), True)
    seen.clear()
    k, _ = r.read(480)
    assert k == 320
    assert seen == [(S.EV_FIRST_FRAME, "c1", False, S.IDLE), (S.EV_STATE, S.IDLE, False, S.IDLE)]


def test_a_call_from_notify_is_queued_not_nested(impl):
    """notify calls back in: the nested call's events are delivered after
    the current one returns, in order, by the loop already running."""
    S = impl.sync
    log = []
    depth = [0]

    def notify(kind, arg):
        log.append(("in", kind, arg, depth[0]))
        depth[0] += 1
        if (kind, arg) == (S.EV_STATE, S.PLAYING) and e.conversation == 1:
            e.interrupt()  # queues IDLE
            e.begin("c2", b"\1\0" * 10)  # queues PLAYING
            assert e.conversation_id == "c2" and e.state == S.PLAYING
        depth[0] -= 1

    r = Rig(impl)
    e = impl.sync.SyncEngine(r.pcm, r.kf, 16000, 25, False, False, 0, notify)
    e.begin("c1", b"\1\0" * 10)
    assert log == [("in", S.EV_STATE, S.PLAYING, 0), ("in", S.EV_STATE, S.IDLE, 0),
                   ("in", S.EV_STATE, S.PLAYING, 0)]
    assert e.conversation_id == "c2" and r.pcm.available == 10


def test_close_from_notify_drops_the_undelivered_events(impl):
    """A conversation cut off by the next queues IDLE then PLAYING; notify
    closes at the IDLE: the PLAYING is not delivered (nothing is open)."""
    S = impl.sync
    log = []

    def notify(kind, arg):
        log.append((kind, arg))
        if len(log) > 1:
            e.close()

    r = Rig(impl)
    e = impl.sync.SyncEngine(r.pcm, r.kf, 16000, 25, False, False, 0, notify)
    e.begin("c1", b"\1\0" * 10)
    e.begin("c2", b"\1\0" * 10)
    assert log == [(S.EV_STATE, S.PLAYING), (S.EV_STATE, S.IDLE)] and e.closed
