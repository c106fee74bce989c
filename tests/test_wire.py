"""The wire codec against the real recording and hand-made edge cases; every
test runs on the compiled codec and its pure twin (``impl.wire``)."""

from __future__ import annotations

import numpy as np
import pytest

from avatarkit_fast import AvatarKitError, DecodeError

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
