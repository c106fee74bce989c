"""AvatarController on the real recording, on the compiled engine and its twin."""

from __future__ import annotations

import numpy as np
import pytest

from avatarkit_fast import AvatarController, ConversationState, wire


def _all_frames(recording) -> np.ndarray:
    return np.concatenate([wire.decode_animation(e).frames for e in recording.envelopes])


def test_recording_plays_whole_and_in_sync(impl, recording):
    ctrl = AvatarController(sample_rate=recording.sample_rate, _impl=impl.tag)
    frames = _all_frames(recording)
    pcm = np.frombuffer(recording.pcm, dtype="<i2")
    cid = None
    for i in range(0, len(recording.pcm), 640):
        cid = ctrl.yield_audio_data(recording.pcm[i : i + 640], end=i + 640 >= len(recording.pcm))
    assert ctrl.yield_frames_data(recording.envelopes, cid) is True
    buf = np.zeros(160, np.int16)
    fb = np.zeros(120, np.float32)
    played = []
    s = 0
    while ctrl.state != ConversationState.IDLE:
        k = ctrl.read_audio_into(buf)
        played.append(buf[:k].copy())
        s += k
        if ctrl.state == ConversationState.IDLE:
            break
        ctrl.current_frame_into(fb)
        np.testing.assert_array_equal(fb, frames[min(s * 25 // 16000, len(frames) - 1)])
    assert np.array_equal(np.concatenate(played), pcm)
    st = ctrl.stats
    assert st.frames_received == 507 and st.underrun_samples == 0 and st.conversations == 1
