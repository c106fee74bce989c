"""AvatarController playing the real recording, on the compiled engine and its
twin: audio in 20 ms chunks, the six envelopes at their places in time, reads
of 10 ms; every read checked for lost or doubled samples and for the keyframe
(by the harness)."""

from __future__ import annotations

import numpy as np
from conftest import PLAIN
import pytest

from avatarkit_fast import AvatarController, ConversationState, wire

from controller_harness import Harness


def _envelope_frames(recording):
    return [wire.decode_animation(e).frames for e in recording.envelopes]


def _play(recording, impl, *, sync_mode="audio_independent", interpolation="none",
          latency_ticks=0, ahead_ticks=5):
    """Audio: one 20 ms chunk every other 10 ms tick, ``ahead_ticks`` ahead of
    playout.  Envelope k arrives when the audio of its first keyframe has been
    yielded, the later ones ``latency_ticks`` later still."""
    events = []
    ctrl = AvatarController(
        sample_rate=recording.sample_rate, sync_mode=sync_mode, interpolation=interpolation,
        on_conversation_state=events.append, _impl=impl.tag, **PLAIN,
    )
    h = Harness(ctrl)
    pcm = recording.pcm
    per_env = _envelope_frames(recording)
    starts = np.cumsum([0] + [len(f) for f in per_env])[:-1]
    chunk = 640  # 20 ms at 16 kHz
    n_chunks = -(-len(pcm) // chunk)
    cid = None
    tick = 0
    sent_env = 0
    while True:
        if tick % 2 == 0 and tick // 2 < n_chunks:
            i = tick // 2
            cid = h.audio(pcm[i * chunk : (i + 1) * chunk], end=i == n_chunks - 1)
        # Keyframe j's audio is yielded by chunk j*2 (40 ms = 2 chunks), i.e. tick 4*j.
        while sent_env < len(per_env) and tick >= int(starts[sent_env]) * 4 + (
            latency_ticks if sent_env else 0
        ):
            k = sent_env
            h.frames([recording.envelopes[k]], cid, per_env[k], end=k == len(per_env) - 1)
            sent_env += 1
        if tick >= ahead_ticks:
            h.tick()
            if ctrl.get_current_conversation_id() is None and sent_env == len(per_env):
                break
        tick += 1
        assert tick < 10_000
    conv = h.convs[cid]
    assert conv.pos == len(pcm) // 2, "the whole utterance plays"
    assert ctrl.state == ConversationState.IDLE
    assert events[0] == ConversationState.PLAYING and events[-1] == ConversationState.IDLE
    return ctrl, h


def test_recording_in_real_time(impl, recording):
    ctrl, h = _play(recording, impl)
    st = ctrl.stats
    assert st.frames_received == 507 and st.frames_dropped_stale == 0
    assert st.underrun_samples == 0 and st.stalls == 0 and st.conversations == 1


@pytest.mark.parametrize("interpolation", ["none", "linear"])
@pytest.mark.parametrize("sync_mode", ["audio_independent", "strict_sync"])
def test_recording_with_late_animation(impl, recording, sync_mode, interpolation):
    # Envelopes after the first 400 ms late: the frame holds (audio_independent)
    # or the audio stalls (strict_sync).
    ctrl, h = _play(recording, impl, sync_mode=sync_mode, interpolation=interpolation,
                    latency_ticks=40, ahead_ticks=20)
    st = ctrl.stats
    assert st.frames_received == 507
    if sync_mode == "strict_sync":
        assert st.stalls >= 1 and st.underrun_samples > 0
    else:
        assert st.stalls == 0


def test_recording_all_at_once_reads_of_any_size(impl, recording):
    ctrl = AvatarController(sample_rate=recording.sample_rate, _impl=impl.tag, **PLAIN)
    frames = np.concatenate(_envelope_frames(recording))
    pcm = np.frombuffer(recording.pcm, dtype="<i2")
    rng = np.random.default_rng(11)
    pos = 0
    cid = None
    while pos < len(recording.pcm):
        n = int(rng.integers(1, 5000))
        cid = ctrl.yield_audio_data(recording.pcm[pos : pos + n], end=pos + n >= len(recording.pcm))
        pos += n
    assert ctrl.yield_frames_data(recording.envelopes, cid) is True
    fb = np.zeros(120, np.float32)
    played = []
    s = 0
    while ctrl.state != ConversationState.IDLE:
        buf = np.empty(int(rng.integers(1, 3000)), np.int16)
        k = ctrl.read_audio_into(buf)
        played.append(buf[:k].copy())
        s += k
        if ctrl.state == ConversationState.IDLE:
            break
        ctrl.current_frame_into(fb)
        np.testing.assert_array_equal(fb, frames[min(s * 25 // 16000, len(frames) - 1)])
        assert ctrl.get_audio_time() == pytest.approx(s / 16000)
    assert np.array_equal(np.concatenate(played), pcm)
    assert not ctrl.current_frame().any()  # idle frame after the end
