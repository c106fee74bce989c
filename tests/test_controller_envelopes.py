"""What ``yield_frames_data`` takes from one call: bounded by the wire
decoders' output/input ratio, and a refused envelope named by its index in
the list; on both engines (``impl.tag``)."""

from __future__ import annotations

import numpy as np
from conftest import PLAIN
import pytest
from protowire import ld, tag

from avatarkit_fast import AvatarController, DecodeError
from avatarkit_fast._schema import DEFAULT_MAX_RATIO, KEYFRAME_BYTES


def empty_keyframes(n: int) -> bytes:
    return tag(1, 0) + b"\x05" + ld(6, ld(4, ld(1, b"") * n))


def playing(impl, recording):
    ctrl = AvatarController(16000, _impl=impl.tag, **PLAIN)
    cid = ctrl.yield_audio_data(recording.pcm)
    return ctrl, cid


def test_amplifying_envelope_is_refused_and_nothing_of_the_call_kept(impl, recording):
    ctrl, cid = playing(impl, recording)
    bomb = empty_keyframes(100_000)  # 200 KB that would take 48 MB of the store
    before = ctrl.stats
    with pytest.raises(DecodeError, match="max_ratio limit of 8") as err:
        ctrl.yield_frames_data([recording.envelopes[0], bomb], cid)
    assert err.value.envelope_index == 1
    after = ctrl.stats
    assert after.buffered_frames == before.buffered_frames == 0
    assert after.frames_received == 0
    # the store did not grow for it, and the conversation goes on whole
    assert ctrl._frames.capacity * KEYFRAME_BYTES < 8 * 1024 * 1024
    assert ctrl.yield_frames_data(list(recording.envelopes), cid) is True
    assert ctrl.stats.frames_received == 507


def test_what_a_call_takes_is_bounded_by_the_ratio(impl, recording):
    ctrl, cid = playing(impl, recording)
    envs = list(recording.envelopes)
    assert ctrl.yield_frames_data(envs, cid) is True
    taken = ctrl.stats.frames_received * KEYFRAME_BYTES
    assert taken <= DEFAULT_MAX_RATIO * sum(len(e) for e in envs)
    # at the limit exactly: 16 empty keyframes padded to 960 bytes are taken
    ctrl2, cid2 = playing(impl, recording)
    n = 16
    padded = {}
    for pad in range(1, 960):
        env = tag(1, 0) + b"\x05" + ld(6, ld(4, ld(1, b"") * n) + ld(15, bytes(pad)))
        padded.setdefault(len(env), env)
    at_limit, under = padded[960], padded[959]
    assert len(at_limit) == 960 == n * KEYFRAME_BYTES / DEFAULT_MAX_RATIO
    with pytest.raises(DecodeError, match="max_ratio"):
        ctrl2.yield_frames_data([at_limit, under], cid2)
    assert ctrl2.stats.frames_received == 0
    assert ctrl2.yield_frames_data([at_limit], cid2) is True
    assert ctrl2.stats.frames_received == n


def test_malformed_envelope_is_named_by_its_index(impl, recording):
    ctrl, cid = playing(impl, recording)
    envs = list(recording.envelopes[:5])
    envs[3] = envs[3][:-7]  # truncated
    with pytest.raises(DecodeError) as err:
        ctrl.yield_frames_data(envs, cid)
    exc = err.value
    assert str(exc).startswith("envelope 3: ")
    assert exc.envelope_index == 3
    assert "at byte" in str(exc) and exc.offset >= 0  # the codec's detail is kept
    assert isinstance(exc.__cause__, DecodeError) and exc.__cause__.envelope_index is None
    assert ctrl.stats.frames_received == 0 and ctrl.stats.buffered_frames == 0
    # the first envelope alone is named 0
    with pytest.raises(DecodeError, match=r"^envelope 0: ") as err:
        ctrl.yield_frames_data([b"\x08\x05\x32\x05"], cid)
    assert err.value.envelope_index == 0


def test_server_error_before_a_malformed_envelope_is_not_reported(impl, recording):
    """The call changes nothing: not even the server-error count."""
    seen = []
    ctrl = AvatarController(16000, on_error=seen.append, _impl=impl.tag, **PLAIN)
    cid = ctrl.yield_audio_data(recording.pcm)
    error = tag(1, 0) + b"\x04" + ld(5, ld(4, b"boom"))
    with pytest.raises(DecodeError, match="^envelope 1: "):
        ctrl.yield_frames_data([error, b"\x0f"], cid)
    assert seen == [] and ctrl.stats.server_errors == 0
    assert ctrl.yield_frames_data([error, recording.envelopes[0]], cid) is True
    assert len(seen) == 1 and ctrl.stats.server_errors == 1
    assert ctrl.stats.frames_received == 50
    np.testing.assert_array_equal(ctrl.current_frame().shape, (120,))
