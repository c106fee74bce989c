"""``peek_animation``: the header of an envelope, validated, without its
keyframes; on both implementations (``impl.wire``)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from protowire import ld, tag, varint

from avatarkit_fast import DecodeError, wire


def full_header(w, data, **kw):
    """The header as the full decode gives it (the reference)."""
    msg = w.decode_message(data, **kw)
    if msg.type != 5:
        return (msg.type, None, None, 0)
    return (5, msg.req_id, msg.end, msg.frames.shape[0])


def test_golden_recording_headers_equal_the_full_decode(impl, recording):
    w = impl.wire
    headers = [w.peek_animation(e) for e in recording.envelopes]
    assert [h.n_keyframes for h in headers] == [50, 100, 100, 100, 100, 57]
    assert [h.end for h in headers] == [False] * 5 + [True]
    assert all(h.type == 5 and h.req_id == recording.req_id for h in headers)
    for env, h in zip(recording.envelopes, headers):
        assert tuple(h) == full_header(w, env)
        assert h == (h.type, h.req_id, h.end, h.n_keyframes)  # a plain 4-tuple too


def test_result_type_is_exported(impl):
    h = impl.wire.peek_animation(b"\x08\x05")
    assert isinstance(h, impl.wire.AnimationHeader)
    assert isinstance(h, wire.AnimationHeader)
    assert h == (5, "", False, 0)
    assert "peek_animation" in wire.__all__ and "AnimationHeader" in wire.__all__


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", (0, None, None, 0)),
        (b"\x08\x04" + ld(5, ld(2, b"r1") + ld(4, b"boom")), (4, None, None, 0)),
        (b"\x08\x02" + ld(3, ld(1, b"conn")), (2, None, None, 0)),
        (b"\x08\x07" + ld(8, ld(1, b"q")), (7, None, None, 0)),
        (tag(1, 0) + varint(-2), (-2, None, None, 0)),
        (b"\x08\x06", (6, None, None, 0)),
        # type 5 whose oneof holds an error member: the defaults
        (b"\x08\x05" + ld(5, ld(4, b"boom")), (5, "", False, 0)),
        # an animation member under another type: counted as nothing
        (b"\x08\x04" + ld(6, ld(2, b"r") + ld(4, ld(1, b""))), (4, None, None, 0)),
    ],
)
def test_non_animation_and_empty_envelopes(impl, data, expected):
    assert impl.wire.peek_animation(data) == expected
    assert tuple(impl.wire.peek_animation(data)) == full_header(impl.wire, data)


def test_merged_and_replaced_members_count_as_the_decode_does(impl, recording):
    w = impl.wire
    a, b = recording.envelopes[0], recording.envelopes[5]
    # two animation members of the same field merge: keyframes append, end is the last
    merged = a + b[2:]
    assert w.peek_animation(merged) == (5, recording.req_id, True, 107)
    assert tuple(w.peek_animation(merged)) == full_header(w, merged)
    # a member of another field in between replaces the first animation
    replaced = a + ld(5, ld(4, b"x")) + b[2:]
    assert w.peek_animation(replaced) == (5, recording.req_id, True, 57)


def test_malformed_bytes_raise_what_the_decode_raises(impl, recording):
    w = impl.wire
    env = recording.envelopes[1]
    for cut in (1, 3, 40, 500, len(env) - 1):
        with pytest.raises(DecodeError) as peeked:
            w.peek_animation(env[:cut])
        with pytest.raises(DecodeError) as decoded:
            w.decode_message(env[:cut])
        assert (str(peeked.value), peeked.value.offset) == (str(decoded.value), decoded.value.offset)
    # a broken keyframe deep inside is found too: the peek validates every Flame
    bad = bytearray(w.encode_animation(np.ones((3, 120), np.float32), req_id="r"))
    bad[-495] = 0x0F  # the last keyframe's first tag: field 1, wire type 7
    with pytest.raises(DecodeError):
        w.decode_message(bytes(bad))
    with pytest.raises(DecodeError):
        w.peek_animation(bytes(bad))


def test_max_frames_cap_applies(impl, recording):
    w = impl.wire
    env = recording.envelopes[1]
    assert w.peek_animation(env, max_frames=100).n_keyframes == 100
    with pytest.raises(DecodeError, match="more than 99 keyframes"):
        w.peek_animation(env, max_frames=99)
    with pytest.raises(ValueError):
        w.peek_animation(env, max_frames=-1)


def test_accepts_any_bytes_like_and_refuses_others(impl, recording):
    w = impl.wire
    env = recording.envelopes[0]
    expected = w.peek_animation(env)
    for data in (bytearray(env), memoryview(env), np.frombuffer(env, np.uint8)):
        assert w.peek_animation(data) == expected
    with pytest.raises(TypeError):
        w.peek_animation("not bytes")


def test_allocates_no_keyframes(impl, recording):
    """Peak memory of a peek is far below the keyframes a decode makes."""
    w = impl.wire
    env = recording.envelopes[1]  # 100 keyframes: 48,000 bytes of floats
    w.peek_animation(env)
    tracemalloc.start()
    try:
        w.peek_animation(env)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000, peak


def test_controller_decodes_each_envelope_into_keyframes_once(impl, recording, monkeypatch):
    """The controller reads headers with the peek and decodes the keyframes
    once, into its store, even when the store must grow for them."""
    from avatarkit_fast import AvatarController

    calls = {"into": 0, "other": 0}
    real_into = wire.decode_animation_into

    def counting_into(*a, **kw):
        calls["into"] += 1
        return real_into(*a, **kw)

    def forbidden(*a, **kw):
        calls["other"] += 1
        raise AssertionError("a full decode besides the one into the store")

    monkeypatch.setattr(wire, "decode_animation_into", counting_into)
    monkeypatch.setattr(wire, "decode_animation", forbidden)
    monkeypatch.setattr(wire, "count_keyframes", forbidden)
    ctrl = AvatarController(16000, max_buffer_seconds=10.0, _impl=impl.tag)
    cid = ctrl.yield_audio_data(recording.pcm[:32000])
    assert ctrl.yield_frames_data(list(recording.envelopes[:2]), cid) is True
    assert calls == {"into": 2, "other": 0}
    assert ctrl.stats.frames_received == 150
    # dropped (stale) envelopes are counted from their headers alone
    assert ctrl.yield_frames_data(list(recording.envelopes[2:4]), "stale") is False
    assert calls == {"into": 2, "other": 0}
    assert ctrl.stats.frames_dropped_stale == 200
