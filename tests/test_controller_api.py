"""AvatarController behaviour, one rule at a time, on the compiled engine and its twin."""

from __future__ import annotations

import logging
import threading

import numpy as np
from conftest import PLAIN
import pytest

from avatarkit_fast import (
    AvatarController,
    AvatarKitError,
    BufferFull,
    ClosedError,
    ConversationState,
    DecodeError,
    ServerError,
    wire,
)
from avatarkit_fast.controller import SAMPLE_RATES

from controller_harness import Harness


def _frames(k: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + k, dtype=np.float32)[:, None] + np.zeros((1, 120), np.float32))


def _env(k: int, start: int = 0, end: bool = False) -> bytes:
    return wire.encode_animation(_frames(k, start), req_id="r", end=end)


def _pcm(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(-3000, 3000, n).astype("<i2").tobytes()


@pytest.fixture
def make(impl):
    made = []

    def factory(**kw):
        kw.setdefault("_impl", impl.tag)
        for k, v in PLAIN.items():
            kw.setdefault(k, v)
        ctrl = AvatarController(**kw)
        made.append(ctrl)
        return ctrl

    yield factory
    for c in made:
        if not c.closed:
            c.close()


def test_compiled_engine_is_used_when_built(impl):
    ctrl = AvatarController(_impl=impl.tag)
    assert type(ctrl.playout_engine()).__module__ == f"avatarkit_fast._sync_{impl.tag}"
    assert ctrl.engine_kind == impl.tag
    default = AvatarController()
    from avatarkit_fast._compat import NO_EXTENSIONS
    assert type(default.playout_engine()).__module__.endswith("_py" if NO_EXTENSIONS else "_c")


# conversation ids --------------------------------------------------------------------
def test_conversation_ids(make):
    ctrl = make()
    assert ctrl.get_current_conversation_id() is None
    a = ctrl.yield_audio_data(_pcm(10))
    assert isinstance(a, str) and a
    assert ctrl.yield_audio_data(_pcm(10)) == a
    assert ctrl.yield_audio_data(b"", end=True) == a
    assert ctrl.get_current_conversation_id() == a
    b = ctrl.yield_audio_data(_pcm(10))
    assert b != a and ctrl.get_current_conversation_id() == b
    ctrl.interrupt()
    assert ctrl.get_current_conversation_id() is None
    c = ctrl.yield_audio_data(_pcm(10))
    assert c not in (a, b)
    ctrl.close()
    assert ctrl.get_current_conversation_id() is None


# stale envelopes ---------------------------------------------------------------------
def test_stale_envelopes_are_dropped_and_counted(make):
    ctrl = make()
    old = ctrl.yield_audio_data(_pcm(100), end=True)
    new = ctrl.yield_audio_data(_pcm(100))
    assert ctrl.yield_frames_data([_env(3), _env(2)], old) is False
    assert ctrl.yield_frames_data([_env(3)], "no-such-id") is False
    assert ctrl.yield_frames_data([_env(1)], None) is False
    st = ctrl.stats
    assert st.frames_dropped_stale == 9 and st.frames_received == 0
    assert ctrl.yield_frames_data([_env(4)], new) is True
    assert ctrl.stats.frames_received == 4


def test_stale_malformed_envelopes_never_raise(make):
    ctrl = make()
    ctrl.yield_audio_data(_pcm(10))
    assert ctrl.yield_frames_data([b"\xff\xff\xff"], "old") is False


# audio-only fallback -----------------------------------------------------------------
@pytest.mark.parametrize("empty", [[], None])
def test_audio_only_fallback(make, empty):
    ctrl = make()
    pcm = _pcm(1000, 4)
    cid = ctrl.yield_audio_data(pcm, end=True)
    assert ctrl.yield_frames_data(empty, cid) is True
    assert ctrl.yield_frames_data([_env(5)], cid) is False
    assert ctrl.stats.frames_ignored == 5 and ctrl.stats.frames_received == 0
    out = ctrl.read_audio(1200)
    assert out[:1000].tobytes() == pcm and not out[1000:].any()
    assert ctrl.state == ConversationState.IDLE


# start -------------------------------------------------------------------------------
def test_start_waits_for_animation_consuming_nothing(make):
    first = []
    ctrl = make(on_first_frame=first.append)
    pcm = _pcm(3200, 5)
    cid = ctrl.yield_audio_data(pcm)
    assert ctrl.state == ConversationState.PLAYING
    for _ in range(5):
        assert not ctrl.read_audio(160).any()
    assert ctrl.get_audio_time() == 0.0 and ctrl.stats.buffered_audio_ms == 200.0
    assert first == []
    ctrl.yield_frames_data([_env(5)], cid)
    assert ctrl.read_audio(160).tobytes() == pcm[:320]
    assert first == [cid]


@pytest.mark.parametrize("wait", [0.0, 0.05, 1.0])
def test_max_frame_wait(make, wait):
    ctrl = make(max_frame_wait=wait)
    pcm = _pcm(32000, 6)
    ctrl.yield_audio_data(pcm)
    silent = 0
    while not ctrl.read_audio(160).any():
        silent += 1
        assert silent < 1000
    assert silent == round(wait * 100)
    assert not ctrl.current_frame().any()  # no animation: the idle frame


# starvation and stalls (also on the real recording) ----------------------------------
def test_stall_callbacks_in_strict_sync(make):
    stalls = []
    ctrl = make(sync_mode="strict_sync", on_playback_stall=stalls.append)
    cid = ctrl.yield_audio_data(_pcm(6400), end=True)
    ctrl.yield_frames_data([_env(2)], cid)  # 1280 samples' worth
    k = [ctrl.read_audio_into(np.empty(160, np.int16)) for _ in range(10)]
    assert sum(k) == 1280 and stalls == [True]
    assert ctrl.stats.stalls == 1 and ctrl.stats.underrun_samples == 1600 - 1280
    ctrl.yield_frames_data([_env(10, 2, end=True)], cid)
    assert ctrl.read_audio_into(np.empty(160, np.int16)) == 160
    assert stalls == [True, False]


def test_audio_starvation_is_a_stall(make):
    stalls = []
    ctrl = make(on_playback_stall=stalls.append)
    cid = ctrl.yield_audio_data(_pcm(200))
    ctrl.yield_frames_data([_env(5)], cid)
    assert ctrl.read_audio_into(np.empty(160, np.int16)) == 160
    assert ctrl.read_audio_into(np.empty(160, np.int16)) == 40
    assert stalls == [True] and ctrl.stats.underrun_samples == 120
    ctrl.yield_audio_data(_pcm(100), end=True)
    assert ctrl.read_audio_into(np.empty(160, np.int16)) == 100
    assert stalls == [True, False] and ctrl.state == ConversationState.IDLE
    assert ctrl.stats.underrun_samples == 120  # silence after the end is no underrun


# end ---------------------------------------------------------------------------------
def test_end_returns_to_idle_with_the_idle_frame(make):
    states = []
    idle = np.linspace(-1, 1, 120, dtype=np.float32)
    ctrl = make(on_conversation_state=states.append, idle_frame=idle)
    assert np.array_equal(ctrl.current_frame(), idle)
    cid = ctrl.yield_audio_data(_pcm(640), end=True)
    ctrl.yield_frames_data([_env(1, 7)], cid)
    ctrl.read_audio(639)
    assert ctrl.state == ConversationState.PLAYING
    assert ctrl.current_frame()[0] == 7
    ctrl.read_audio(1)
    assert ctrl.state == ConversationState.IDLE
    assert states == [ConversationState.PLAYING, ConversationState.IDLE]
    assert np.array_equal(ctrl.current_frame(), idle)
    assert ctrl.get_current_conversation_id() is None


# interrupt ---------------------------------------------------------------------------
def test_interrupt_stops_everything_at_once(make):
    states = []
    ctrl = make(on_conversation_state=states.append)
    h = Harness(ctrl)
    cid = h.audio(_pcm(8000, 1))
    h.frames([_env(10)], cid, _frames(10))
    h.run(5)
    h.interrupt()
    assert ctrl.stats.interrupts == 1
    assert ctrl.stats.buffered_audio_ms == 0 and ctrl.stats.buffered_frames == 0
    h.frames([_env(10, 10)], cid, _frames(10, 10))  # late animation: dropped
    assert ctrl.stats.frames_dropped_stale == 10
    for _ in range(5):
        assert h.tick() == 0
    assert not ctrl.current_frame().any()
    assert states[-1] == ConversationState.IDLE
    # A new conversation while one plays has the same effect on the old one.
    a = h.audio(_pcm(8000, 2), end=True)  # all its audio given, still playing
    h.frames([_env(10)], a, _frames(10))
    h.run(3)
    b = h.audio(_pcm(8000, 3), end=True)
    assert ctrl.stats.interrupts == 2
    assert states[-3:] == [ConversationState.PLAYING, ConversationState.IDLE,
                           ConversationState.PLAYING]
    h.frames([_env(10, 50)], a, _frames(10, 50))  # stale
    h.frames([_env(20, 100, end=True)], b, _frames(20, 100))
    h.drain()
    assert h.convs[b].pos == 8000 and h.convs[a].pos == 480


# pause and resume --------------------------------------------------------------------
def test_pause_and_resume(make):
    states = []
    ctrl = make(on_conversation_state=states.append)
    h = Harness(ctrl)
    cid = h.audio(_pcm(4000, 8), end=True)
    h.frames([_env(7, end=True)], cid, _frames(7))
    h.run(3)
    t = ctrl.get_audio_time()
    h.pause()
    h.run(4)
    assert ctrl.get_audio_time() == t and ctrl.state == ConversationState.PAUSED
    h.resume()
    h.drain()
    assert h.convs[cid].pos == 4000
    assert states == [ConversationState.PLAYING, ConversationState.PAUSED,
                      ConversationState.PLAYING, ConversationState.IDLE]


def test_pause_without_conversation_does_nothing(make):
    ctrl = make()
    ctrl.pause()
    assert ctrl.state == ConversationState.IDLE
    ctrl.resume()
    assert ctrl.state == ConversationState.IDLE


# threads -----------------------------------------------------------------------------
def test_one_producer_one_consumer_thread(make):
    ctrl = make(max_frame_wait=0.0)
    rng = np.random.default_rng(3)
    pcm = rng.integers(-30000, 30000, 16000 * 20).astype("<i2").tobytes()
    cid_box = []
    errors = []

    def produce():
        try:
            pos = 0
            r = np.random.default_rng(4)
            while pos < len(pcm):
                n = int(r.integers(1, 3000))
                cid = ctrl.yield_audio_data(pcm[pos : pos + n], end=pos + n >= len(pcm))
                if not cid_box:
                    cid_box.append(cid)
                    ctrl.yield_frames_data([_env(600)], cid)
                pos += n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    got = []
    t = threading.Thread(target=produce)
    t.start()
    buf = np.empty(160, np.int16)
    fb = np.empty(120, np.float32)
    for _ in range(2_000_000):
        k = ctrl.read_audio_into(buf)
        ctrl.current_frame_into(fb)
        got.append(buf[:k].tobytes())
        if not t.is_alive() and ctrl.get_current_conversation_id() is None:
            break
    t.join()
    assert not errors
    assert b"".join(got) == pcm


def test_large_copies_release_the_gil_and_lose_nothing(make):
    # Chunks of 10 s (320 KB) are copied without the GIL while the consumer reads.
    ctrl = make(max_frame_wait=0.0)
    rng = np.random.default_rng(5)
    pcm = rng.integers(-30000, 30000, 16000 * 40).astype("<i2").tobytes()
    step = 16000 * 10 * 2

    def produce():
        for i in range(0, len(pcm), step):
            ctrl.yield_audio_data(pcm[i : i + step], end=i + step >= len(pcm))

    t = threading.Thread(target=produce)
    t.start()
    got = []
    buf = np.empty(160, np.int16)
    for _ in range(1_000_000):
        k = ctrl.read_audio_into(buf)
        got.append(buf[:k].tobytes())
        if not t.is_alive() and ctrl.get_current_conversation_id() is None:
            break
    t.join()
    assert b"".join(got) == pcm


# bad input and callbacks -------------------------------------------------------------
@pytest.mark.parametrize("bad", ["text", 5, [1, 2], None, 2.0])
def test_wrong_audio_types(make, bad):
    ctrl = make()
    with pytest.raises(TypeError):
        ctrl.yield_audio_data(bad)
    assert ctrl.get_current_conversation_id() is None
    ctrl.yield_audio_data(b"\x00\x00")
    with pytest.raises(TypeError):
        ctrl.yield_audio_data(bad)


def test_wrong_frame_and_buffer_types(make):
    ctrl = make()
    cid = ctrl.yield_audio_data(_pcm(10))
    with pytest.raises(TypeError):
        ctrl.yield_frames_data(b"not a list", cid)
    with pytest.raises(TypeError):
        ctrl.yield_frames_data(["text"], cid)
    with pytest.raises(TypeError):
        ctrl.yield_frames_data([_env(1)], 42)
    with pytest.raises(TypeError):
        ctrl.read_audio_into(np.zeros(10, np.float32))
    with pytest.raises(TypeError):
        ctrl.current_frame_into(np.zeros(120, np.float64))
    with pytest.raises(TypeError):
        ctrl.read_audio("10")
    with pytest.raises(TypeError):
        ctrl.yield_audio_data(b"", end="yes")


def test_malformed_envelope_keeps_nothing_of_the_call(make):
    ctrl = make()
    cid = ctrl.yield_audio_data(_pcm(4000))
    ctrl.yield_frames_data([_env(2)], cid)
    with pytest.raises(DecodeError):
        ctrl.yield_frames_data([_env(3, 2), b"\x0a\xff"], cid)
    assert ctrl.stats.frames_received == 2 and ctrl.stats.buffered_frames == 2
    truncated = _env(3, 2)[:-5]
    with pytest.raises(DecodeError):
        ctrl.yield_frames_data([truncated], cid)
    ctrl.yield_frames_data([_env(3, 2)], cid)
    ctrl.read_audio(640 * 4)
    assert ctrl.current_frame()[0] == 4


def test_interrupt_during_decoding_keeps_nothing(make, monkeypatch):
    # Another thread interrupts while the producer decodes: the keyframes it
    # was writing belong to a conversation that is gone, and count as stale.
    import avatarkit_fast.controller as controller_module

    ctrl = make()
    cid = ctrl.yield_audio_data(_pcm(4000))
    real = controller_module.wire.decode_animation_into

    def decode_then_interrupt(data, out, **kw):
        msg = real(data, out, **kw)
        ctrl.interrupt()
        return msg

    monkeypatch.setattr(controller_module.wire, "decode_animation_into", decode_then_interrupt)
    assert ctrl.yield_frames_data([_env(5)], cid) is False
    monkeypatch.setattr(controller_module.wire, "decode_animation_into", real)
    st = ctrl.stats
    assert st.frames_received == 0 and st.frames_dropped_stale == 5 and st.buffered_frames == 0
    new = ctrl.yield_audio_data(_pcm(4000), end=True)
    assert ctrl.yield_frames_data([_env(3, 40)], new) is True
    assert ctrl.current_frame()[0] == 40


def test_server_error_envelope_goes_to_on_error(make):
    errs = []
    ctrl = make(on_error=errs.append)
    cid = ctrl.yield_audio_data(_pcm(10))
    bad = wire.encode_message(wire.ServerErrorMessage(code=4003, message="credits exhausted"))
    assert ctrl.yield_frames_data([_env(2), bad], cid) is True
    assert len(errs) == 1 and isinstance(errs[0], ServerError)
    assert errs[0].code == 4003 and "credits exhausted" in str(errs[0])
    assert ctrl.stats.frames_received == 2 and ctrl.stats.server_errors == 1


def test_closed_controller_raises(make):
    ctrl = make()
    ctrl.yield_audio_data(_pcm(10))
    ctrl.close()
    ctrl.close()  # a no-op, as for files
    assert ctrl.closed and ctrl.state == ConversationState.IDLE
    for call in (
        lambda: ctrl.yield_audio_data(b"\x00\x00"),
        lambda: ctrl.yield_frames_data([], "x"),
        lambda: ctrl.read_audio(10),
        lambda: ctrl.read_audio_into(np.zeros(10, np.int16)),
        lambda: ctrl.current_frame(),
        lambda: ctrl.current_frame_into(np.zeros(120, np.float32)),
        ctrl.interrupt, ctrl.pause, ctrl.resume,
        lambda: ctrl.get_audio_time(),
    ):
        with pytest.raises(ClosedError) as info:
            call()
        assert isinstance(info.value, AvatarKitError)


@pytest.mark.parametrize("rate", [0, 11025, 96000, 16001])
def test_unsupported_sample_rate(impl, rate):
    with pytest.raises(ValueError):
        AvatarController(sample_rate=rate, _impl=impl.tag)


@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_every_supported_rate_plays_in_sync(make, rate):
    ctrl = make(sample_rate=rate, interpolation="linear")
    h = Harness(ctrl)
    n = rate // 2
    cid = h.audio(_pcm(n, rate), end=True)
    h.frames([_env(13, end=True)], cid, _frames(13))
    h.drain()
    assert h.convs[cid].pos == n


def test_bad_options(impl):
    with pytest.raises(ValueError):
        AvatarController(sync_mode="fast", _impl=impl.tag)
    with pytest.raises(ValueError):
        AvatarController(interpolation="cubic", _impl=impl.tag)
    with pytest.raises(TypeError):
        AvatarController(on_error=5, _impl=impl.tag)
    with pytest.raises(TypeError):
        AvatarController(sample_rate="16000", _impl=impl.tag)


def test_callback_exceptions_never_break_playback(make, caplog):
    errs = []

    def boom(*_):
        raise RuntimeError("user bug")

    ctrl = make(on_conversation_state=boom, on_first_frame=boom, on_playback_stall=boom,
                on_error=errs.append)
    h = Harness(ctrl)
    cid = h.audio(_pcm(1000), end=False)
    h.frames([_env(2)], cid, _frames(2))
    h.run(10)
    h.audio(_pcm(10), end=True)
    h.drain()
    assert len(errs) >= 3
    assert all(isinstance(e, AvatarKitError) and isinstance(e.__cause__, RuntimeError) for e in errs)

    def bad_on_error(err):
        raise ValueError("bad handler")

    ctrl2 = make(on_conversation_state=boom, on_error=bad_on_error)
    with caplog.at_level(logging.ERROR, logger="avatarkit_fast.controller"):
        ctrl2.yield_audio_data(_pcm(10), end=True)
        ctrl2.read_audio(100)
    assert "bad handler" in caplog.text or "on_error" in caplog.text


# stats -------------------------------------------------------------------------------
def test_stats_count_what_their_names_say(make):
    ctrl = make(sync_mode="strict_sync")
    st = ctrl.stats
    for key in ("buffered_audio_ms", "buffered_frames", "frames_received", "frames_dropped_stale",
                "underrun_samples", "stalls", "conversations", "interrupts"):
        assert st[key] == 0 and getattr(st, key) == 0
    cid = ctrl.yield_audio_data(_pcm(1600))  # 100 ms
    assert ctrl.stats.buffered_audio_ms == 100.0 and ctrl.stats.conversations == 1
    ctrl.yield_frames_data([_env(2)], cid)
    assert ctrl.stats.frames_received == 2 and ctrl.stats.buffered_frames == 2
    ctrl.read_audio(700)  # keyframe 1 is current
    assert ctrl.stats.buffered_frames == 1 and ctrl.stats.buffered_audio_ms == 56.25
    ctrl.read_audio(700)  # 1280 may play: 580 of 700, then a stall
    st = ctrl.stats
    assert st.underrun_samples == 120 and st.stalls == 1
    ctrl.yield_frames_data([_env(1)], "stale")
    ctrl.interrupt()
    st = ctrl.stats
    assert st.frames_dropped_stale == 1 and st.interrupts == 1 and st.state == ConversationState.IDLE
    ctrl.yield_audio_data(b"")
    assert ctrl.stats.conversations == 2


# buffer caps -------------------------------------------------------------------------
def test_buffer_cap(make):
    ctrl = make(max_buffer_seconds=1.0)
    cid = ctrl.yield_audio_data(_pcm(10000, 1))
    with pytest.raises(BufferFull):
        ctrl.yield_audio_data(_pcm(7000, 2))
    ctrl.yield_audio_data(_pcm(6000, 3))
    assert ctrl.stats.buffered_audio_ms == 1000.0
    with pytest.raises(BufferFull):
        ctrl.yield_frames_data([_env(20), _env(10)], cid)
    assert ctrl.stats.frames_received == 0
    ctrl.yield_frames_data([_env(25)], cid)
    out = ctrl.read_audio(16000)
    assert out.tobytes() == _pcm(10000, 1) + _pcm(6000, 3)
    with pytest.raises(BufferFull):  # a first chunk past the cap starts nothing
        ctrl.yield_audio_data(_pcm(16001), end=True)
