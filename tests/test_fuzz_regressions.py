"""Regressions found by the reliability work (fuzzing, differential runs),
each pinned to the input that showed it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PLAIN

from avatarkit_fast import relay
from avatarkit_fast.controller import AvatarController
from avatarkit_fast.errors import RelayError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import controller_ops as ops  # noqa: E402


@pytest.mark.parametrize("frame", [
    b"\x93\x01\x90\xa1r",                  # [1, [], "r"]: the kind is an array
    b"\x95\x01\x91\x01\xa1r\xc4\x00\xc2",  # [1, [1], "r", b"", False]
    b"\x93\x01\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xa1r",  # [1, 1.0, "r"]: a float kind
])
def test_relay_frame_whose_kind_is_not_an_integer_is_a_relay_error(frame):
    # found by fuzz/fuzz_relay.py: was TypeError("unhashable type: 'list'")
    with pytest.raises(RelayError):
        relay.decode_frame(frame)
    ctrl = AvatarController()
    receiver = relay.RelayReceiver(ctrl)
    with pytest.raises(RelayError):
        receiver.feed(frame)
    assert ctrl.get_current_conversation_id() is None and receiver.stats.frames == 0


def test_audio_time_is_fractional_seconds(impl):
    # found by the differential run: the compiled engine divided integers (0, then 1)
    ctrl = AvatarController(_impl=impl.tag)
    cid = ctrl.yield_audio_data(b"\x01\x00" * 40000)
    ctrl.yield_frames_data([], cid)
    seen = []
    for n in (160, 16000, 7840):
        ctrl.read_audio(n)
        seen.append(ctrl.get_audio_time())
    assert seen == [0.01, 1.01, 1.5]
    assert all(isinstance(t, float) for t in seen)


def test_linear_interpolation_blends_between_keyframes(impl):
    # found by the differential run: the compiled engine blended with weight 0
    ctrl = AvatarController(_impl=impl.tag, interpolation="linear", **PLAIN)
    cid = ctrl.yield_audio_data(b"\x01\x00" * 16000)
    ctrl.yield_frames_data([ops.envelope_of(ops.synthetic_frames(50))], cid)
    ctrl.read_audio(320)  # 320 samples at 16 kHz, 25 fps: halfway from keyframe 0 to 1
    frame = ctrl.current_frame()
    assert frame[0] == np.float32(1.5)
