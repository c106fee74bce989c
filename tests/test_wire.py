"""The wire codec against the real recording and hand-made edge cases; every
test runs on the compiled codec and its pure twin (``impl.wire``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatarkit_fast import AvatarKitError, DecodeError
from avatarkit_fast._schema import FLAME_GROUPS

protoref = pytest.importorskip("avatarkit_fast.testing.protoref")
pytest.importorskip("google.protobuf")

EXPECTED_COUNTS = [50, 100, 100, 100, 100, 57]


def test_recording_decodes_to_six_messages(impl, recording):
    msgs = [impl.wire.decode_animation(e) for e in recording.envelopes]
    assert [m.frames.shape[0] for m in msgs] == EXPECTED_COUNTS
    assert [m.end for m in msgs] == [False] * 5 + [True]
    for m in msgs:
        assert m.type == 5
        assert m.req_id == recording.req_id
        assert m.connection_id == recording.connection_id
        assert m.avatar_id == ""
        assert m.frames.dtype == np.float32
        assert m.frames.shape[1] == 120
        assert m.frames.flags.c_contiguous


def test_recording_floats_equal_protobuf(impl, recording):
    for env in recording.envelopes:
        ref_msg, ref = protoref.decode_frames(env)
        got = impl.wire.decode_animation(env).frames
        # Bitwise: every float exactly as protobuf parses it.
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        sra = ref_msg.server_response_animation
        assert (sra.req_id, sra.connection_id, sra.end) == (
            recording.req_id,
            recording.connection_id,
            env is recording.envelopes[-1],
        )


def test_recording_reencodes_byte_exactly(impl, recording):
    for env in recording.envelopes:
        m = impl.wire.decode_animation(env)
        again = impl.wire.encode_animation(
            m.frames,
            req_id=m.req_id,
            connection_id=m.connection_id,
            end=m.end,
            avatar_id=m.avatar_id,
        )
        assert again == env


def test_decode_error_is_value_error_and_package_error(impl, recording):
    with pytest.raises(DecodeError) as info:
        impl.wire.decode_animation(recording.envelopes[0][:-1])
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AvatarKitError)
    assert "byte" in str(info.value)
    assert info.value.offset >= 0


# ---------------------------------------------------------------------------
# Hand-made encodings.  Helpers write raw protobuf wire bytes.

from protowire import ld, packed, tag, unpacked, varint  # noqa: E402


# (field number, offset, size) of each Flame group
SLOTS = [(i + 1, offset, size) for i, (_, offset, size) in enumerate(FLAME_GROUPS)]


def row(seed: int) -> np.ndarray:
    return (np.arange(120, dtype=np.float32) + seed * 1000) / 7


def flame(values: np.ndarray, *, skip=(), unpack=()) -> bytes:
    out = b""
    for fnum, start, size in SLOTS:
        if fnum in skip:
            continue
        enc = unpacked if fnum in unpack else packed
        out += enc(fnum, values[start : start + size])
    return out


def envelope(*keyframes: bytes, req_id="r", connection_id="c", end=False, extra=b"") -> bytes:
    anim = b"".join(ld(1, kf) for kf in keyframes)
    body = ld(1, connection_id.encode()) + ld(2, req_id.encode())
    if end:
        body += tag(3, 0) + b"\x01"
    body += ld(4, anim) + extra
    return tag(1, 0) + b"\x05" + ld(6, body)


UNKNOWN_FIELDS = [
    tag(50, 0) + varint(2**63),
    tag(51, 1) + bytes(8),
    ld(52, b"hello"),
    tag(53, 3) + tag(1, 0) + b"\x07" + tag(2, 3) + ld(3, b"x") + tag(2, 4) + tag(53, 4),
    tag(54, 5) + bytes(4),
    tag(2**29 - 1, 0) + b"\x00",
]


def test_unpacked_mixed_and_reordered_flames(impl):
    a, b = row(1), row(2)
    kf_unpacked = flame(a, unpack=range(1, 8))
    # expression split into a packed part, unpacked floats and another packed part
    kf_mixed = (
        packed(7, b[20:50])
        + unpacked(7, b[50:53])
        + flame(b, skip=(7,))[::1]
        + packed(7, b[53:120])
    )
    kf_reordered = b"".join(
        packed(fnum, a[start : start + size]) for fnum, start, size in reversed(SLOTS)
    )
    m = impl.wire.decode_animation(envelope(kf_unpacked, kf_mixed, kf_reordered))
    np.testing.assert_array_equal(m.frames, np.stack([a, b, a]))


def test_absent_flame_fields_are_zeros(impl):
    a = row(3)
    # a keyframe with no fields decodes to 480 bytes from 2: past the default ratio
    m = impl.wire.decode_animation(envelope(flame(a, skip=(2, 7)), b""), max_ratio=math.inf)
    expected = a.copy()
    expected[3:6] = 0
    expected[20:] = 0
    np.testing.assert_array_equal(m.frames, np.stack([expected, np.zeros(120, np.float32)]))


@pytest.mark.parametrize("where", ["envelope", "animation", "flame_animation", "flame"])
@pytest.mark.parametrize("unknown", UNKNOWN_FIELDS, ids=lambda b: f"wt{b[0] & 7}")
def test_unknown_fields_are_skipped_everywhere(impl, where, unknown):
    a = row(4)
    kf = flame(a)
    if where == "flame":
        kf = unknown + kf[:14] + unknown + kf[14:] + unknown
    anim = ld(1, kf)
    if where == "flame_animation":
        anim = unknown + anim + unknown
    body = ld(1, b"c") + ld(2, b"r") + ld(4, anim)
    if where == "animation":
        body = unknown + body + unknown
    env = tag(1, 0) + b"\x05" + ld(6, body)
    if where == "envelope":
        env = unknown + env + unknown
    m = impl.wire.decode_animation(env)
    np.testing.assert_array_equal(m.frames, a[None])
    assert (m.connection_id, m.req_id) == ("c", "r")


def test_repeated_singular_fields_last_wins_and_messages_merge(impl):
    a, b, c = row(5), row(6), row(7)
    part1 = ld(2, b"first") + tag(3, 0) + b"\x01" + ld(4, ld(1, flame(a))) + ld(5, b"av1")
    part2 = ld(2, b"second") + tag(3, 0) + b"\x00" + ld(4, ld(1, flame(b)) + ld(1, flame(c)))
    env = tag(1, 0) + b"\x04" + ld(6, part1) + tag(1, 0) + b"\x05" + ld(6, part2)
    m = impl.wire.decode_animation(env)
    assert (m.req_id, m.end, m.avatar_id, m.connection_id) == ("second", False, "av1", "")
    np.testing.assert_array_equal(m.frames, np.stack([a, b, c]))
    ref, frames = protoref.decode_frames(env)
    np.testing.assert_array_equal(m.frames, frames)
    sra = ref.server_response_animation
    assert (sra.req_id, sra.end, sra.avatar_id) == (m.req_id, m.end, m.avatar_id)


def test_oneof_member_of_another_field_replaces_the_animation(impl):
    a, b = row(8), row(9)
    err = ld(5, ld(4, b"boom"))
    env = (
        tag(1, 0) + b"\x05" + ld(6, ld(2, b"old") + ld(4, ld(1, flame(a))))
        + err
        + ld(6, ld(4, ld(1, flame(b))))
    )  # fmt: skip
    m = impl.wire.decode_animation(env)
    assert m.req_id == ""
    np.testing.assert_array_equal(m.frames, b[None])
    _, frames = protoref.decode_frames(env)
    np.testing.assert_array_equal(m.frames, frames)
    # the animation was replaced by the error: type 5 with an empty animation
    only_err = tag(1, 0) + b"\x05" + ld(6, ld(4, ld(1, flame(a)))) + err
    m = impl.wire.decode_animation(only_err)
    assert m.frames.shape == (0, 120) and m.req_id == ""
    assert impl.wire.count_keyframes(only_err) == 0
    # while as type 4 the same bytes are that error
    as_error = impl.wire.decode_message(tag(1, 0) + b"\x04" + only_err[2:])
    assert as_error == impl.wire.ServerErrorMessage(message="boom")


def test_nan_payloads_and_signed_zero_survive_round_trip(impl):
    bits = np.arange(240, dtype=np.uint32).reshape(2, 120)
    bits[0, :4] = [0x7FC00001, 0xFFC12345, 0x7F800001, 0x80000000]
    frames = bits.view(np.float32)
    data = impl.wire.encode_animation(frames, req_id="r")
    got = impl.wire.decode_animation(data).frames
    assert np.array_equal(got.view(np.uint32), bits)


def test_encode_canonical_form(impl):
    frames = np.stack([row(1), row(2)])
    data = impl.wire.encode_animation(
        frames, req_id="r\u00e9", connection_id="c", end=True, avatar_id="av"
    )
    ref = protoref.build_animation(
        frames, req_id="r\u00e9", connection_id="c", end=True, avatar_id="av"
    ).SerializeToString()
    assert data == ref
    empty = impl.wire.encode_animation(np.zeros((0, 120), np.float32), req_id="")
    assert empty == b"\x08\x05\x32\x02\x22\x00"
    assert len(impl.wire.encode_animation(frames, req_id="")) == 8 + 2 * impl.wire.KEYFRAME_WIRE_BYTES
    # float64 input is converted
    assert impl.wire.encode_animation(frames.astype(np.float64), req_id="r\u00e9",
                                      connection_id="c", end=True, avatar_id="av") == data


@pytest.mark.parametrize(
    "frames, kwargs",
    [
        (np.zeros((2, 119), np.float32), {"req_id": "r"}),
        (np.zeros(120, np.float32), {"req_id": "r"}),
        (np.zeros((1, 120), np.int32), {"req_id": "r"}),
        (np.zeros((1, 120), np.float32), {"req_id": b"r"}),
        (np.zeros((1, 120), np.float32), {"req_id": "r", "avatar_id": "\ud800"}),
        (np.zeros((1, 120), np.float32), {"req_id": "r", "connection_id": None}),
    ],
)
def test_encode_rejects_bad_values(impl, frames, kwargs):
    from avatarkit_fast import EncodeError

    with pytest.raises(EncodeError):
        impl.wire.encode_animation(frames, **kwargs)


def test_accepts_any_bytes_like(impl, recording):
    env = recording.envelopes[5]
    expected = impl.wire.decode_animation(env)
    for form in (bytearray(env), memoryview(env), np.frombuffer(env, np.uint8),
                 memoryview(env[: len(env) // 4 * 4]).cast("f")):  # fmt: skip
        if len(bytes(form)) == len(env):
            assert impl.wire.decode_animation(form) == expected
    with pytest.raises(TypeError):
        impl.wire.decode_animation("text")
    with pytest.raises(TypeError):
        impl.wire.decode_animation(np.frombuffer(env, np.uint8)[::2])


def test_portable_float_load_gives_the_same_floats(impl, recording):
    """The big-endian path (byte-assembled loads) agrees with memcpy."""
    if impl.tag != "c":
        pytest.skip("the compiled module only")
    expected = [impl.wire.decode_animation(e) for e in recording.envelopes]
    variant = envelope(flame(row(1), unpack=(1, 7)), flame(row(2), skip=(3,)))
    expected_variant = impl.wire.decode_animation(variant)
    old = impl.wire._use_portable_load(True)
    try:
        assert [impl.wire.decode_animation(e) for e in recording.envelopes] == expected
        assert impl.wire.decode_animation(variant) == expected_variant
    finally:
        impl.wire._use_portable_load(old)


# ---------------------------------------------------------------------------
# decode_animation_into, count_keyframes


def test_decode_into_writes_a_view(impl, recording):
    env = recording.envelopes[0]
    out = np.full((64, 120), -1.0, np.float32)
    m = impl.wire.decode_animation_into(env, out)
    assert m.frames.base is out or m.frames.base is out.base or np.shares_memory(m.frames, out)
    assert m.frames.shape == (50, 120)
    np.testing.assert_array_equal(out[:50], impl.wire.decode_animation(env).frames)
    assert (out[50:] == -1).all()
    assert impl.wire.count_keyframes(env) == 50


def test_decode_into_changes_nothing_on_failure(impl, recording):
    from avatarkit_fast import BufferFull

    env = recording.envelopes[1]
    out = np.full((99, 120), -1.0, np.float32)
    with pytest.raises(BufferFull):
        impl.wire.decode_animation_into(env, out)
    assert (out == -1).all()
    # a malformation in the last keyframe is found before anything is written
    body_at = len(env) - 495  # the last keyframe's body; its first byte is a tag
    assert env[body_at] == 0x0A
    bad = env[:body_at] + b"\x0b" + env[body_at + 1 :]
    with pytest.raises(DecodeError):
        impl.wire.decode_animation_into(bad, np.full((200, 120), -1.0, np.float32))
    out = np.full((200, 120), -1.0, np.float32)
    with pytest.raises(DecodeError):
        impl.wire.decode_animation_into(bad, out)
    assert (out == -1).all()


@pytest.mark.parametrize(
    "out",
    [
        np.zeros((10, 121), np.float32),
        np.zeros((10, 120), np.float64),
        np.zeros((10, 120), ">f4" if np.little_endian else "<f4"),
        np.zeros((10, 240), np.float32)[:, ::2],
        np.zeros(1200, np.float32),
        [[0.0] * 120],
    ],
)
def test_decode_into_rejects_bad_outputs(impl, recording, out):
    with pytest.raises(ValueError):
        impl.wire.decode_animation_into(recording.envelopes[0], out)


def test_decode_into_rejects_readonly_output(impl, recording):
    out = np.zeros((100, 120), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        impl.wire.decode_animation_into(recording.envelopes[0], out)


def test_max_frames_cap(impl, recording):
    env = recording.envelopes[1]
    assert impl.wire.decode_animation(env, max_frames=100).frames.shape[0] == 100
    for fn in (impl.wire.decode_animation, impl.wire.count_keyframes, impl.wire.decode_message):
        with pytest.raises(DecodeError, match="cap"):
            fn(env, max_frames=99)
    with pytest.raises(ValueError):
        impl.wire.decode_animation(env, max_frames=-1)
    # empty keyframes are 2 bytes each: with no ratio limit the cap bounds the output
    many = envelope(*[b""] * 1000)
    assert impl.wire.count_keyframes(many, max_ratio=math.inf) == 1000
    with pytest.raises(DecodeError, match="cap"):
        impl.wire.decode_animation(many, max_frames=999, max_ratio=math.inf)
    # and by default the ratio limit does (tests/test_wire_limits.py)
    with pytest.raises(DecodeError, match="max_ratio"):
        impl.wire.decode_animation(many)


# ---------------------------------------------------------------------------
# Malformed input


def assert_decode_error(impl, data, match=None):
    for fn in (impl.wire.decode_animation, impl.wire.count_keyframes, impl.wire.decode_message):
        with pytest.raises(DecodeError, match=match) as info:
            fn(data)
        assert 0 <= info.value.offset <= len(data)
        assert f"at byte {info.value.offset}" in str(info.value)


def test_every_truncation_of_a_real_envelope_is_an_error(impl, recording):
    env = recording.envelopes[5]
    # ``08 05`` alone is a valid, empty animation envelope
    assert impl.wire.decode_animation(env[:2]).frames.shape == (0, 120)
    cuts = [1] + list(range(3, 600)) + list(range(len(env) - 600, len(env)))
    cuts += list(range(600, len(env) - 600, 97))
    for cut in cuts:
        with pytest.raises(DecodeError):
            impl.wire.decode_animation(env[:cut])


FLAME_OK = flame(row(1))


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x08", "truncated varint"),
        (b"\x08\x85", "truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint"),
        (b"\x08" + b"\xff" * 9 + b"\x02", "overflowing 64 bits"),
        (b"\x08\x05" + b"\x80" * 11, "varint"),
        (varint(2**32 << 3) + b"\x00", "overflows 32 bits"),
        (b"\x00\x00", "field number 0"),
        (b"\x08\x05\x32\x05\x0a\x01", "runs past the end"),
        (b"\x08\x05\x32" + varint(2**62), "runs past the end"),
        (b"\x08\x05\x32\x02\x22\x05", "runs past the end"),
        (b"\x0d\x05\x00\x00\x00", "Message.type: expected wire type varint"),
        (b"\x08\x05\x30\x01", "Message field 6"),
        (b"\x08\x05" + ld(6, tag(1, 0) + b"\x01"), "connection_id"),
        (b"\x08\x05" + ld(6, ld(3, b"")), "ServerResponseAnimation.end"),
        (b"\x08\x05" + ld(6, tag(4, 0) + b"\x01"), "animation"),
        (b"\x08\x05" + ld(6, ld(4, tag(1, 5) + bytes(4))), "keyframes"),
        (envelope(tag(1, 0) + b"\x01"), "Flame.translation: expected"),
        (envelope(tag(7, 1) + bytes(8)), "Flame.expression: expected"),
        (envelope(packed(1, [1, 2, 3, 4])), "more than 3 floats"),
        (envelope(packed(1, [1, 2]) + unpacked(1, [3, 4])), "more than 3 floats"),
        (envelope(packed(5, [1, 2, 3])), "3 floats, expected 6 or none"),
        (envelope(ld(1, bytes(11))), "not a multiple of 4"),
        (envelope(tag(2, 5) + bytes(3)), "truncated float"),
        (envelope(FLAME_OK, tag(1, 5) + b"\x00"), "truncated float"),
        (b"\x08\x05" + tag(9, 1) + bytes(7), "truncated fixed64"),
        (b"\x08\x05" + tag(9, 5) + bytes(3), "truncated fixed32"),
        (b"\x08\x05" + tag(9, 3) + tag(1, 0) + b"\x01", "unterminated group"),
        (b"\x08\x05" + tag(9, 3) + tag(10, 4), "end of group 10 inside group 9"),
        (b"\x08\x05" + tag(9, 4), "without a start"),
        (b"\x08\x05" + tag(9, 6), "invalid wire type 6"),
        (b"\x08\x05" + tag(9, 7), "invalid wire type 7"),
        (b"\x08\x05" + tag(9, 3) * 100 + tag(9, 4) * 100, "nested deeper"),
        (b"\x08\x05" + ld(6, ld(2, b"\xff")), "not valid UTF-8"),
        (b"\x08\x05" + ld(6, ld(5, b"ok\xc3")), "not valid UTF-8"),
        (b"\x08\x04" + ld(5, ld(4, b"\xc3\x28")), "not valid UTF-8"),
        (b"\x08\x04" + ld(5, tag(3, 2) + b"\x00"), "ServerErrorMessage.code"),
        (b"\x08\x01" + ld(2, ld(8, ld(1, b"k") + tag(2, 0) + b"\x00")), "entry"),
        # a superseded member is still validated
        (b"\x08\x05" + ld(5, ld(1, b"\xff")) + ld(6, b""), "UTF-8"),
        (b"\x08\x04" + ld(6, ld(4, ld(1, packed(1, [1])))) + ld(5, b""), "expected 3"),
    ],
)
def test_malformed_input(impl, data, match):
    assert_decode_error(impl, data, match)


def test_wrong_type_for_decode_animation(impl):
    for data in (b"", b"\x08\x04" + ld(5, b""), b"\x08\x07"):
        with pytest.raises(DecodeError, match="expected an animation envelope"):
            impl.wire.decode_animation(data)
        with pytest.raises(DecodeError):
            impl.wire.count_keyframes(data)


# ---------------------------------------------------------------------------
# decode_message and control messages


def test_decode_message_dispatches_on_type(impl, recording):
    w = impl.wire
    assert w.decode_message(recording.envelopes[2]) == w.decode_animation(recording.envelopes[2])
    assert w.decode_message(b"") == w.OtherMessage(0)
    assert w.decode_message(b"\x08\x06") == w.OtherMessage(6)
    assert w.decode_message(tag(1, 0) + varint(-2)) == w.OtherMessage(-2)
    assert w.decode_message(tag(1, 0) + varint(2**40 + 9)) == w.OtherMessage(9)
    # type 4 without its member: the defaults, as protobuf's accessors give
    assert w.decode_message(b"\x08\x04") == w.ServerErrorMessage()
    assert w.decode_message(b"\x08\x05") == w.AnimationMessage()
    assert w.decode_message(b"\x08\x07" + ld(8, ld(1, b"q"))) == w.ClientInterrupt(req_id="q")


CONTROL_MESSAGES = [
    lambda w: w.ServerErrorMessage(connection_id="c", req_id="r", code=-42, message="bad \u2603"),
    lambda w: w.ServerErrorMessage(),
    lambda w: w.ServerConfirmSession(connection_id="conn"),
    lambda w: w.ClientInterrupt(req_id="req"),
    lambda w: w.ClientAudioInput(req_id="r", end=True, audio=bytes(range(256))),
    lambda w: w.ClientAudioInput(
        req_id="r", trace_context=w.TraceContext(traceparent="00-ab", tracestate="x=1")
    ),
    lambda w: w.ClientConfigureSession(sample_rate=16000, bitrate=32000, audio_format=1),
    lambda w: w.ClientConfigureSession(
        sample_rate=24000,
        egress_type=1,
        livekit_egress=w.LiveKitEgressConfig(
            url="wss://x", api_key="k", api_secret="s", room_name="room", publisher_id="p",
            extra_attributes={"a": "1", "b": "2"}, idle_timeout=30, api_token="t",
        ),
        extra_params={"lang": "en", "": ""},
    ),  # fmt: skip
    lambda w: w.ClientConfigureSession(
        egress_type=2,
        agora_egress=w.AgoraEgressConfig(channel_name="ch", token="tk", uid=2**32 - 1),
    ),
    lambda w: w.ClientConfigureSession(livekit_egress=w.LiveKitEgressConfig()),
]


def _to_protobuf_dict(msg):
    from google.protobuf import json_format

    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


@pytest.mark.parametrize("make", CONTROL_MESSAGES)
def test_control_messages_round_trip_and_match_protobuf(impl, make):
    msg = make(impl.wire)
    data = impl.wire.encode_message(msg)
    assert impl.wire.decode_message(data) == msg
    ref = protoref.schema().Message()
    ref.ParseFromString(data)
    assert ref.type == msg.type
    # protobuf re-encodes to the same bytes (maps aside: their order is free)
    again = protoref.schema().Message()
    again.ParseFromString(ref.SerializeToString(deterministic=True))
    assert _to_protobuf_dict(again) == _to_protobuf_dict(ref)
    assert impl.wire.decode_message(ref.SerializeToString()) == msg


def test_control_messages_decode_what_protobuf_encodes(impl):
    ns = protoref.schema()
    env = ns.Message(type=1)
    ccs = env.client_configure_session
    ccs.sample_rate = 16000
    ccs.audio_format = 1
    ccs.extra_params["x"] = "y"
    ccs.livekit_egress.url = "u"
    ccs.livekit_egress.extra_attributes["k"] = "v"
    ccs.livekit_egress.idle_timeout = -5
    got = impl.wire.decode_message(env.SerializeToString())
    assert got == impl.wire.ClientConfigureSession(
        sample_rate=16000,
        audio_format=1,
        extra_params={"x": "y"},
        livekit_egress=impl.wire.LiveKitEgressConfig(
            url="u", extra_attributes={"k": "v"}, idle_timeout=-5
        ),
    )
    env = ns.Message(type=3)
    env.client_audio_input.audio = b"\x01\x02"
    env.client_audio_input.trace_context.SetInParent()
    got = impl.wire.decode_message(env.SerializeToString())
    assert got == impl.wire.ClientAudioInput(audio=b"\x01\x02", trace_context=impl.wire.TraceContext())


def test_encode_message_animation_and_errors(impl, recording):
    from avatarkit_fast import EncodeError

    m = impl.wire.decode_animation(recording.envelopes[5])
    assert impl.wire.encode_message(m) == recording.envelopes[5]
    assert impl.wire.encode_message(impl.wire.OtherMessage(6)) == b"\x08\x06"
    with pytest.raises(EncodeError):
        impl.wire.encode_message(impl.wire.ServerErrorMessage(code=2**31))
    with pytest.raises(EncodeError):
        impl.wire.encode_message(impl.wire.ClientAudioInput(audio="text"))
    with pytest.raises(EncodeError):
        impl.wire.encode_message(object())


def test_constants(impl):
    w = impl.wire
    assert w.KEYFRAME_FLOATS == 120 == sum(size for _, size in w.FLAME_LAYOUT)
    assert [name for name, _ in w.FLAME_LAYOUT] == [
        "translation", "rotation", "neck_pose", "jaw_pose", "eye_pose", "eye_lid", "expression",
    ]  # fmt: skip
    assert w.MessageType.SERVER_RESPONSE_ANIMATION == 5
    assert w.MessageType.CLIENT_INTERRUPT == 7
    assert w.DEFAULT_MAX_FRAMES >= 1000


def test_schema_is_defined_once():
    """The FLAME layout, with offsets, and the rates: one definition that
    the controller, the local server and the renderer take."""
    from avatarkit_fast import _schema, _wire_py, controller
    from avatarkit_fast.server import motion
    from avatarkit_fast.testing import protoref

    assert _schema.FLAME_GROUPS == (
        ("translation", 0, 3), ("rotation", 3, 3), ("neck_pose", 6, 3), ("jaw_pose", 9, 3),
        ("eye_pose", 12, 6), ("eye_lid", 18, 2), ("expression", 20, 100),
    )  # fmt: skip
    assert _schema.KEYFRAME_FLOATS == 120 and _schema.FPS == 25
    assert _schema.SAMPLE_RATES == (8000, 16000, 22050, 24000, 32000, 44100, 48000)
    assert controller.SAMPLE_RATES is _schema.SAMPLE_RATES
    assert controller.KEYFRAME_FLOATS == 120
    assert motion.SUPPORTED_SAMPLE_RATES is _schema.SAMPLE_RATES
    assert _wire_py.FLAME_LAYOUT is _schema.FLAME_LAYOUT
    assert [(n, s) for n, _, s in protoref.FLAME_FIELDS] == list(_schema.FLAME_LAYOUT)
    assert _schema.varint(300) == b"\xac\x02" and _schema.varint(-1) == b"\xff" * 9 + b"\x01"


def test_public_module_exports_everything(impl):
    from avatarkit_fast import wire

    for name in impl.wire.__all__:
        assert hasattr(wire, name), name


def test_concurrent_decodes_agree(impl, recording):
    """The compiled codec drops the GIL while it copies; threads decoding
    the same inputs into their own buffers all get the same frames."""
    from concurrent.futures import ThreadPoolExecutor

    expected = [impl.wire.decode_animation(e) for e in recording.envelopes]

    def work(_):
        out = np.empty((100, 120), np.float32)
        for env, exp in zip(recording.envelopes, expected):
            for _ in range(3):
                assert impl.wire.decode_animation(env) == exp
                assert impl.wire.decode_animation_into(env, out) == exp
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))
