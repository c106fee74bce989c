"""Callbacks that call back into the controller, on the same thread and from
another thread while a callback runs: the engine delivers its events only
once the state of the call that caused them is settled, so what a callback
does (above all: yield the next utterance) stands, no event is lost or
reordered, and the stack does not grow with each event."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from avatarkit_fast import AvatarController, ConversationState, wire

KF = 120


def _pcm(n: int, value: int = 1) -> bytes:
    return np.full(n, value, dtype="<i2").tobytes()


def _envelope(n: int, req_id: str = "r", end: bool = False) -> bytes:
    frames = np.arange(n * KF, dtype=np.float32).reshape(n, KF) / (n * KF)
    return wire.encode_animation(frames, req_id=req_id, end=end)


def _buffered(ctrl: AvatarController) -> int:
    """Samples buffered and not yet read."""
    return round(ctrl.stats.buffered_audio_ms * ctrl.sample_rate / 1000)


class _Next:
    """The next utterance, yielded from inside a callback (once)."""

    def __init__(self, samples: int = 800) -> None:
        self.samples = samples
        self.ctrl: AvatarController | None = None
        self.cid: str | None = None

    def __call__(self, *args) -> None:
        if self.cid is None:
            self.cid = self.ctrl.yield_audio_data(_pcm(self.samples, 7))

    def check(self) -> None:
        ctrl = self.ctrl
        assert self.cid is not None, "the callback ran"
        assert ctrl.get_current_conversation_id() == self.cid, "the new conversation is current"
        assert ctrl.state == ConversationState.PLAYING
        assert _buffered(ctrl) == self.samples, "its audio is buffered whole"
        ctrl.yield_frames_data([], self.cid)
        out = ctrl.read_audio(self.samples)
        assert (out == 7).all(), "and it plays"


def test_issue_reproduction_stall_end_yields_next_utterance(impl):
    """The reported case: on_playback_stall(False) in the read that ends the
    conversation yields the next one; it must survive that read."""
    nxt = _Next()

    def on_stall(stalled: bool) -> None:
        if not stalled:
            nxt()

    ctrl = nxt.ctrl = AvatarController(on_playback_stall=on_stall, _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320))
    ctrl.yield_frames_data([], cid)
    ctrl.read_audio(480)  # 320 played, then a stall begins
    assert ctrl.stats.stalls == 1
    ctrl.yield_audio_data(_pcm(160), end=True)
    ctrl.read_audio(480)  # the stall ends, the audio ends: cb(False) yields
    nxt.check()
    assert ctrl.stats.conversations == 2


def test_yield_from_on_conversation_state_idle(impl):
    nxt = _Next()
    states = []

    def on_state(state) -> None:
        states.append(state)
        if state == ConversationState.IDLE:
            nxt()

    ctrl = nxt.ctrl = AvatarController(on_conversation_state=on_state, _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320), end=True)
    ctrl.yield_frames_data([], cid)
    ctrl.read_audio(480)
    nxt.check()
    P, I = ConversationState.PLAYING, ConversationState.IDLE
    assert states == [P, I, P]


def test_yield_from_on_first_frame_in_the_last_read(impl):
    """The first keyframe becomes current in the read that also plays the
    end of the audio: on_first_frame gets the id of the conversation whose
    frame it was, and what it yields stands."""
    nxt = _Next()
    seen = []

    def on_first(cid) -> None:
        seen.append(cid)
        nxt()

    ctrl = nxt.ctrl = AvatarController(on_first_frame=on_first, _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320), end=True)
    ctrl.yield_frames_data([_envelope(2, end=True)], cid)
    ctrl.read_audio(480)
    assert seen == [cid]
    nxt.check()


def test_yield_from_on_error_of_a_callback_that_raised(impl):
    nxt = _Next()
    errors = []

    def on_first(cid) -> None:
        raise RuntimeError("boom")

    def on_error(err) -> None:
        errors.append(err)
        nxt()

    ctrl = nxt.ctrl = AvatarController(on_first_frame=on_first, on_error=on_error, _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320), end=True)
    ctrl.yield_frames_data([_envelope(2, end=True)], cid)
    ctrl.read_audio(480)
    assert len(errors) == 1 and isinstance(errors[0].__cause__, RuntimeError)
    nxt.check()


def test_yield_from_on_playback_stall_true_continues_the_conversation(impl):
    """A stall begins; the callback brings the missing audio: it continues
    the same conversation, nothing is dropped."""
    added = []

    def on_stall(stalled: bool) -> None:
        if stalled and not added:
            added.append(ctrl.yield_audio_data(_pcm(160, 5), end=True))

    ctrl = AvatarController(on_playback_stall=on_stall, _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320))
    ctrl.yield_frames_data([], cid)
    ctrl.read_audio(480)
    assert added == [cid]
    assert ctrl.get_current_conversation_id() == cid
    assert _buffered(ctrl) == 160
    out = ctrl.read_audio(160)
    assert (out == 5).all()
    assert ctrl.get_current_conversation_id() is None


def test_interrupt_from_on_conversation_state_playing(impl):
    """A callback that interrupts the conversation whose start it is told:
    the state it leaves stands (IDLE, nothing buffered) and the events come
    in the order of the changes."""
    states = []
    inside = []

    def on_state(state) -> None:
        states.append(state)
        if state == ConversationState.PLAYING and len(states) == 1:
            ctrl.interrupt()
            inside.append((ctrl.state, list(states)))

    ctrl = AvatarController(on_conversation_state=on_state, _impl=impl.tag)
    ctrl.yield_audio_data(_pcm(320))
    # settled at once, and the IDLE is not delivered nested in the callback
    assert inside == [(ConversationState.IDLE, [ConversationState.PLAYING])]
    assert states == [ConversationState.PLAYING, ConversationState.IDLE]
    assert ctrl.get_current_conversation_id() is None
    assert _buffered(ctrl) == 0
    assert ctrl.stats.interrupts == 1


def test_pause_resume_and_stats_from_callbacks(impl):
    states = []

    def on_state(state) -> None:
        states.append(state)
        snap = ctrl.stats  # readable from a callback
        assert snap.state == ctrl.state
        if state == ConversationState.PLAYING and len(states) == 1:
            ctrl.pause()
        elif state == ConversationState.PAUSED:
            ctrl.resume()

    ctrl = AvatarController(on_conversation_state=on_state, _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320), end=True)
    P, Z, I = ConversationState.PLAYING, ConversationState.PAUSED, ConversationState.IDLE
    assert states == [P, Z, P]
    ctrl.yield_frames_data([], cid)
    assert ctrl.read_audio(320).tolist() == [1] * 320
    assert states == [P, Z, P, I]


def _depth() -> int:
    f, n = sys._getframe(1), 0
    while f is not None:
        f, n = f.f_back, n + 1
    return n


def test_a_chain_of_callbacks_does_not_grow_the_stack(impl):
    """Each IDLE starts a conversation whose PLAYING interrupts it, 2000
    times: delivered by one loop, not by nested calls (which would hit the
    recursion limit)."""
    depths = []
    states = []

    def on_state(state) -> None:
        states.append(state)
        depths.append(_depth())
        if len(states) >= 4000:
            return
        if state == ConversationState.IDLE:
            ctrl.yield_audio_data(_pcm(10))
        elif state == ConversationState.PLAYING:
            ctrl.interrupt()

    ctrl = AvatarController(on_conversation_state=on_state, _impl=impl.tag)
    ctrl.yield_audio_data(_pcm(10))
    P, I = ConversationState.PLAYING, ConversationState.IDLE
    assert states == [P, I] * 2000
    assert max(depths) - min(depths) <= 2
    assert ctrl.stats.conversations == 2000


def test_close_from_a_callback_drops_the_rest_quietly(impl):
    states = []

    def on_stall(stalled: bool) -> None:
        ctrl.close()

    ctrl = AvatarController(on_playback_stall=on_stall, on_conversation_state=states.append,
                            _impl=impl.tag)
    cid = ctrl.yield_audio_data(_pcm(320))
    ctrl.yield_frames_data([], cid)
    ctrl.read_audio(480)
    assert ctrl.closed
    assert states == [ConversationState.PLAYING]


@pytest.mark.parametrize("trigger", ["stall_false", "idle", "first_frame"])
def test_producer_thread_yields_while_a_callback_sleeps(impl, trigger):
    """A consumer-side callback releases the GIL (a sleep: logging, I/O, a
    lock) while the producer thread yields the next utterance: it is not
    lost, and the events arrive in the order of the changes."""
    go = threading.Event()
    events = []
    produced = []

    def producer() -> None:
        go.wait(10)
        produced.append(ctrl.yield_audio_data(_pcm(800, 7)))

    def slow(kind, arg) -> None:
        events.append((kind, arg))
        if kind == trigger and not go.is_set():
            go.set()
            time.sleep(0.2)

    ctrl = AvatarController(
        on_playback_stall=lambda s: slow("stall_false" if not s else "stall_true", s),
        on_conversation_state=lambda s: slow("idle" if s == ConversationState.IDLE else "state", s),
        on_first_frame=lambda c: slow("first_frame", c),
        _impl=impl.tag,
    )
    t = threading.Thread(target=producer)
    t.start()
    try:
        cid = ctrl.yield_audio_data(_pcm(320))
        if trigger == "first_frame":
            ctrl.yield_audio_data(_pcm(160), end=True)
            ctrl.yield_frames_data([_envelope(1, end=True)], cid)
            ctrl.read_audio(480)
        else:
            ctrl.yield_frames_data([], cid)
            ctrl.read_audio(480)
            ctrl.yield_audio_data(_pcm(160), end=True)
            if trigger == "idle":
                ctrl.read_audio(100)  # the stall ends here, the audio in the next read
            ctrl.read_audio(480)
    finally:
        go.set()
        t.join(10)
    assert produced, "the producer ran"
    assert ctrl.get_current_conversation_id() == produced[0]
    assert _buffered(ctrl) == 800
    kinds = [k for k, _ in events]
    assert kinds.count("idle") == 1
    i = kinds.index("idle")
    assert kinds[i + 1:] == ["state"], "the new PLAYING after the old IDLE"
    assert events[-1] == ("state", ConversationState.PLAYING)
