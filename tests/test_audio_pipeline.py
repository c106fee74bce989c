"""The audio pieces in front of a real controller, wired as the producer
paths will wire them: numbers in, numbers out, on both engines."""

from __future__ import annotations

import numpy as np
import pytest

from avatarkit_fast import AvatarController
from avatarkit_fast._compat import NO_EXTENSIONS
from avatarkit_fast.audio import OggOpusDecoder, Pcm16Input, StreamResampler, apply_volume_into

ENGINES = ["py"] if NO_EXTENSIONS else ["c", "py"]


def play_all(ctrl: AvatarController, n: int) -> np.ndarray:
    out = np.empty(n, np.int16)
    got = 0
    buf = np.empty(160, np.int16)
    while got < n:
        k = ctrl.read_audio_into(buf)
        if k == 0:
            break
        out[got : got + k] = buf[:k]
        got += k
    return out[:got]


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_sine_through_the_controller(engine):
    t = np.arange(16000) / 16000
    sine = (0.9 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    ctrl = AvatarController(sample_rate=16000, _impl=engine)
    conv = Pcm16Input()
    for i in range(0, sine.size, 320):
        ctrl.yield_audio_data(conv.convert(sine[i : i + 320]), end=i + 320 >= sine.size)
    ctrl.yield_frames_data([], ctrl.get_current_conversation_id())  # audio only
    assert ctrl.stats.samples_received == 16000  # 1 s, not the 2 s of raw float bytes
    played = play_all(ctrl, 16000)
    assert played.size == 16000
    assert np.max(np.abs(played - sine.astype(np.float64) * 32768)) <= 1.0  # within 1 LSB
    assert conv.samples_clipped == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_44k1_tts_into_a_16k_controller(engine):
    rate = 44100
    t = np.arange(rate) / rate
    tts = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)  # 1.000 s at 44.1 kHz
    ctrl = AvatarController(sample_rate=16000, _impl=engine)
    conv, rs = Pcm16Input(), StreamResampler(rate, 16000)
    rng = np.random.default_rng(3)
    i = 0
    while i < tts.size:
        n = int(rng.integers(1, 2000))
        ctrl.yield_audio_data(rs.process(conv.convert(tts[i : i + n])))
        i += n
    ctrl.yield_audio_data(rs.flush(), end=True)  # end=True flushes the resampler
    ctrl.yield_frames_data([], ctrl.get_current_conversation_id())
    played = play_all(ctrl, 20000).astype(np.float64)
    assert abs(played.size - 16000) <= 1
    spec = np.abs(np.fft.rfft(played * np.hanning(played.size)))
    assert abs(np.argmax(spec) * 16000 / played.size - 1000) <= 10


@pytest.mark.parametrize("engine", ENGINES)
def test_ogg_opus_into_the_controller(engine):
    av = pytest.importorskip("av")  # noqa: F841
    from test_audio_opus import encode, speech, stream_length_48k

    x = speech(16000, 1.0)
    data = encode(x, 16000)
    ctrl = AvatarController(sample_rate=16000, _impl=engine)
    dec = OggOpusDecoder(16000)
    for i in range(0, len(data), 333):
        ctrl.yield_audio_data(dec.feed(data[i : i + 333]))
    ctrl.yield_audio_data(dec.finish(), end=True)
    ctrl.yield_frames_data([], ctrl.get_current_conversation_id())
    assert ctrl.stats.samples_received == stream_length_48k(data) // 3 == x.size
    assert play_all(ctrl, 20000).size == x.size


@pytest.mark.parametrize("engine", ENGINES)
def test_volume_on_what_was_read_changes_nothing_else(engine):
    pcm = (np.arange(3200) % 200 * 100 - 10000).astype(np.int16)
    ctrls = [AvatarController(sample_rate=16000, _impl=engine) for _ in range(2)]
    for c in ctrls:
        c.yield_audio_data(pcm, end=True)
        c.yield_frames_data([], c.get_current_conversation_id())
    buf_full, buf_half = np.empty(160, np.int16), np.empty(160, np.int16)
    for _ in range(20):
        k1 = ctrls[0].read_audio_into(buf_full)
        k2 = ctrls[1].read_audio_into(buf_half)
        apply_volume_into(buf_half[:k2], 0.5)  # where the read path will apply it
        assert k1 == k2
        assert buf_half.tolist() == ((buf_full.astype(np.int32) * 16384 + 16384) >> 15).tolist()
    assert ctrls[0].stats.samples_played == ctrls[1].stats.samples_played == 3200
