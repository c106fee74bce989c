"""The local motion server's animation: deterministic, chunking-proof, and a
mouth that follows the audio."""

from __future__ import annotations

import numpy as np
import pytest

from avatarkit_fast.server.motion import SUPPORTED_SAMPLE_RATES, MotionSynth, synthesize

JAW = 9
EYE_LID = 18
EXPR = 20


def tone(seconds: float, rate: int = 16000, amp: float = 0.3, freq: float = 220.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(2 * int(seconds * rate))


def test_recording_keyframe_count_and_ranges(recording):
    frames = synthesize(recording.pcm, recording.sample_rate)
    assert frames.dtype == np.float32 and frames.flags.c_contiguous
    # 25 keyframes per second of audio, as the real service sent for this recording.
    assert frames.shape == (507, 120)
    assert np.isfinite(frames).all()
    assert 0.0 <= frames[:, JAW].min() and frames[:, JAW].max() <= 0.21
    assert np.abs(frames[:, EXPR:]).max() <= 2.0
    assert frames[:, JAW].std() > 0.02  # the mouth moves
    assert (frames[:, EYE_LID] == 1.0).sum() >= 3  # and the eyes blink (20 s)


def test_any_chunking_gives_the_same_keyframes(golden):
    pcm = golden.pcm[: 16000 * 2 * 6]
    whole = synthesize(pcm)
    rng = np.random.default_rng(7)
    for _ in range(3):
        synth = MotionSynth(16000)
        parts, i = [], 0
        while i < len(pcm):
            n = int(rng.integers(1, 5000))  # odd byte splits included
            synth.push(pcm[i : i + n])
            i += n
            if synth.available and rng.random() < 0.5:
                parts.append(synth.take(int(rng.integers(1, synth.available + 1))))
        parts.append(synth.take(synth.available))
        assert np.array_equal(np.concatenate(parts), whole)
        assert synth.produced == len(whole) and synth.samples_in == len(pcm) // 2


def test_jaw_follows_loudness():
    frames = synthesize(silence(1.0) + tone(1.0) + silence(1.0))
    quiet, loud, after = frames[:25, JAW], frames[30:50, JAW], frames[-5:, JAW]
    assert quiet.max() < 0.01
    assert loud.min() > 0.12
    assert after.max() < 0.03  # eased shut again


def test_expression_follows_the_spectrum():
    dark = synthesize(tone(1.0, freq=150.0))[10:]
    bright = synthesize(tone(1.0, freq=3000.0))[10:]
    assert np.abs(dark[:, EXPR : EXPR + 10].mean(0) - bright[:, EXPR : EXPR + 10].mean(0)).max() > 0.3


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES)
def test_every_sample_rate_gives_25_keyframes_a_second(rate):
    frames = synthesize(tone(2.02, rate=rate), rate)
    assert frames.shape == (50, 120)
    assert frames[10:, JAW].min() > 0.1


def test_bad_arguments():
    with pytest.raises(ValueError):
        MotionSynth(12345)
    synth = MotionSynth(16000)
    synth.push(silence(0.1))
    with pytest.raises(ValueError):
        synth.take(3)
