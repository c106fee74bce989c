"""Audio in and out of the controller itself: arrays, another input rate, Ogg
Opus, volume; every refused input with its message; on both engines."""

from __future__ import annotations

import numpy as np
import pytest

from avatarkit_fast import AvatarController
from avatarkit_fast.audio import apply_volume_into
from avatarkit_fast.errors import BufferFull, DecodeError
from test_audio_pipeline import play_all


def audio_only(ctrl):
    ctrl.yield_frames_data([], ctrl.get_current_conversation_id())


def make(impl, **kw):
    return AvatarController(sample_rate=16000, _impl=impl.tag, **kw)


# -- item 1: arrays are audio --------------------------------------------------


def test_float32_sine_plays_as_the_same_sine(impl):
    t = np.arange(16000) / 16000
    sine = (0.9 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    ctrl = make(impl)
    for i in range(0, sine.size, 320):
        ctrl.yield_audio_data(sine[i : i + 320], end=i + 320 >= sine.size)
    audio_only(ctrl)
    assert ctrl.stats.samples_received == 16000  # 1 s, not the 2 s of its raw bytes
    played = play_all(ctrl, 20000)
    assert played.size == 16000
    assert np.max(np.abs(played - sine.astype(np.float64) * 32768)) <= 1.0
    assert ctrl.stats.samples_clipped == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floats_outside_one_are_clipped_and_counted(impl, dtype):
    x = np.array([0.5, 1.5, -2.0, np.nan, -1.0, 1.0], dtype=dtype)
    ctrl = make(impl)
    ctrl.yield_audio_data(x, end=True)
    audio_only(ctrl)
    assert play_all(ctrl, 6).tolist() == [16384, 32767, -32768, 0, -32768, 32767]
    assert ctrl.stats.samples_clipped == 3


def test_int16_arrays_of_either_shape_and_byte_order(impl):
    x = (np.arange(480) * 50 - 12000).astype(np.int16)
    ctrl = make(impl)
    ctrl.yield_audio_data(x[:160])
    ctrl.yield_audio_data(x[160:320].reshape(-1, 1))
    ctrl.yield_audio_data(x[320:].astype(">i2"), end=True)
    audio_only(ctrl)
    assert ctrl.stats.samples_received == 480
    assert play_all(ctrl, 480).tolist() == x.tolist()


def test_bytes_likes_stay_raw_pcm(impl):
    x = (np.arange(320) * 7).astype("<i2")
    ctrl = make(impl)
    raw = x.tobytes()
    ctrl.yield_audio_data(raw[:101])  # a half sample carried
    ctrl.yield_audio_data(bytearray(raw[101:301]))
    ctrl.yield_audio_data(memoryview(raw)[301:], end=True)
    audio_only(ctrl)
    assert play_all(ctrl, 320).tolist() == x.tolist()


@pytest.mark.parametrize(
    "data, exc, words",
    [
        (np.zeros(10, np.int32), TypeError, "int32 samples are not accepted"),
        (np.zeros(10, np.float16), TypeError, "float16 samples are not accepted"),
        (np.zeros(10, bool), TypeError, "bool samples are not accepted"),
        (np.zeros((10, 2), np.int16), ValueError, "downmix to mono"),
        (np.zeros((2, 10), np.float32), ValueError, r"shape \(2, 10\) is 10 channels: downmix"),
        (np.zeros((1, 10), np.float32), ValueError, r"pass x\[0\]"),
        (np.zeros((2, 3, 4), np.float32), ValueError, "is not mono audio"),
        (np.zeros(8, np.uint8)[::2], TypeError, "non-contiguous buffer of bytes"),
        ("text", TypeError, "got str"),
        (12, TypeError, "got int"),
    ],
)
def test_refused_audio_keeps_nothing(impl, data, exc, words):
    ctrl = make(impl)
    ctrl.yield_audio_data(np.zeros(100, np.int16))
    cid = ctrl.get_current_conversation_id()
    with pytest.raises(exc, match=words):
        ctrl.yield_audio_data(data)
    assert ctrl.stats.samples_received == 100
    assert ctrl.get_current_conversation_id() == cid


def test_odd_itemsize_is_refused(impl):
    ctrl = make(impl)
    ctrl.yield_audio_data(memoryview(bytes(9)).cast("c"))  # one-byte items: raw PCM
    with pytest.raises(TypeError, match="not whole 16-bit samples"):
        ctrl.yield_audio_data(np.zeros(3, dtype="V3"))
    assert ctrl.stats.samples_received == 4


def test_buffer_full_keeps_nothing_of_a_float_call(impl):
    ctrl = AvatarController(sample_rate=16000, max_buffer_seconds=0.1, _impl=impl.tag)
    ctrl.yield_audio_data(np.zeros(1000, np.float32))
    with pytest.raises(BufferFull):
        ctrl.yield_audio_data(np.full(1000, 3.0, np.float32))
    assert ctrl.stats.samples_received == 1000
    assert ctrl.stats.samples_clipped == 0  # the refused call counted nothing


# -- item 2: another input rate --------------------------------------------------


def test_44k1_in_16k_out_length_and_pitch(impl):
    rate = 44100
    t = np.arange(rate) / rate
    tts = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    ctrl = make(impl, input_sample_rate=rate)
    rng = np.random.default_rng(5)
    i = 0
    while i < tts.size:
        n = int(rng.integers(1, 3000))
        ctrl.yield_audio_data(tts[i : i + n])
        i += n
    ctrl.yield_audio_data(b"", end=True)  # flushes the resampler
    audio_only(ctrl)
    assert abs(ctrl.stats.samples_received - 16000) <= 1
    played = play_all(ctrl, 20000).astype(np.float64)
    assert played.size == ctrl.stats.samples_received
    spec = np.abs(np.fft.rfft(played * np.hanning(played.size)))
    assert abs(np.argmax(spec) * 16000 / played.size - 1000) <= 10


def test_resampled_stream_is_chunking_independent(impl):
    x = (np.random.default_rng(1).standard_normal(22050) * 3000).astype(np.int16)
    out = []
    for sizes in ([22050], [1, 7, 500, 3333, 18209]):
        ctrl = make(impl, input_sample_rate=22050)
        i = 0
        for n in sizes:
            ctrl.yield_audio_data(x[i : i + n].tobytes(), end=i + n >= x.size)
            i += n
        audio_only(ctrl)
        out.append(play_all(ctrl, 20000))
    assert out[0].size == 16000
    assert out[0].tolist() == out[1].tolist()


def test_interrupt_drops_the_resampler_state(impl):
    x = (np.random.default_rng(2).standard_normal(4410) * 3000).astype(np.int16)
    ctrl = make(impl, input_sample_rate=44100)
    ctrl.yield_audio_data(np.full(3000, 20000, np.int16))
    ctrl.interrupt()
    ctrl.yield_audio_data(x, end=True)
    audio_only(ctrl)
    fresh = make(impl, input_sample_rate=44100)
    fresh.yield_audio_data(x, end=True)
    audio_only(fresh)
    assert play_all(ctrl, 5000).tolist() == play_all(fresh, 5000).tolist()


def test_buffer_full_when_resampled_keeps_the_stream(impl):
    ctrl = AvatarController(
        sample_rate=16000, input_sample_rate=48000, max_buffer_seconds=0.1, _impl=impl.tag
    )
    x = (np.random.default_rng(4).standard_normal(4800) * 3000).astype(np.int16)
    ctrl.yield_audio_data(x[:2400])
    with pytest.raises(BufferFull, match="resample to up to"):
        ctrl.yield_audio_data(np.zeros(9000, np.int16))
    ctrl.yield_audio_data(x[2400:], end=True)
    audio_only(ctrl)
    whole = make(impl, input_sample_rate=48000)
    whole.yield_audio_data(x, end=True)
    audio_only(whole)
    assert play_all(ctrl, 2000).tolist() == play_all(whole, 2000).tolist()


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        ({"input_sample_rate": 7999}, ValueError, "input_sample_rate must be in 8000..96000 Hz, got 7999"),
        ({"input_sample_rate": 96001}, ValueError, "8000..96000"),
        ({"input_sample_rate": 44100.0}, TypeError, "input_sample_rate must be an int"),
        ({"input_format": "mp3"}, ValueError, "input_format must be one of"),
        ({"input_format": 1}, TypeError, "input_format must be a str"),
        ({"input_format": "ogg_opus", "input_sample_rate": 48000}, ValueError, "carries its own rate"),
    ],
)
def test_refused_input_settings(impl, kw, exc, words):
    with pytest.raises(exc, match=words):
        make(impl, **kw)


# -- item 4: Ogg Opus in ------------------------------------------------------------


def test_ogg_opus_in_chunks_of_any_size(impl):
    pytest.importorskip("av")
    from test_audio_opus import encode, speech, stream_length_48k

    x = speech(16000, 1.3)
    data = encode(x, 16000)
    ctrl = make(impl, input_format="ogg_opus")
    rng = np.random.default_rng(7)
    i = 0
    while i < len(data):
        n = int(rng.integers(1, 700))
        ctrl.yield_audio_data(data[i : i + n], end=i + n >= len(data))
        i += n
    audio_only(ctrl)
    assert ctrl.stats.samples_received == stream_length_48k(data) // 3 == x.size
    played = play_all(ctrl, 30000).astype(np.float64)
    assert played.size == x.size
    env = lambda y: np.convolve(np.abs(y), np.ones(320) / 320, "valid")  # noqa: E731
    assert np.corrcoef(env(played), env(x.astype(np.float64)))[0, 1] > 0.9


def test_ogg_opus_malformed_or_cut_keeps_nothing(impl):
    pytest.importorskip("av")
    from test_audio_opus import encode, speech

    data = encode(speech(16000, 0.5), 16000)
    ctrl = make(impl, input_format="ogg_opus")
    half = len(data) // 2
    ctrl.yield_audio_data(data[:half])
    before = ctrl.stats.samples_received
    cid = ctrl.get_current_conversation_id()
    bad = bytearray(data[half:])
    bad[0] ^= 0xFF
    with pytest.raises(DecodeError):
        ctrl.yield_audio_data(bytes(bad))
    with pytest.raises(DecodeError, match="without its end-of-stream page|ends inside the page"):
        ctrl.yield_audio_data(data[half:-10], end=True)
    with pytest.raises(TypeError, match="Ogg Opus audio must be a bytes-like object"):
        ctrl.yield_audio_data(12)
    assert ctrl.stats.samples_received == before
    assert ctrl.get_current_conversation_id() == cid
    ctrl.yield_audio_data(data[half:], end=True)  # the rest, whole
    audio_only(ctrl)
    assert ctrl.stats.samples_received == 8000


def test_ogg_opus_not_opus_is_a_decode_error(impl):
    pytest.importorskip("av")
    ctrl = make(impl, input_format="ogg_opus")
    with pytest.raises(DecodeError, match="Ogg"):
        ctrl.yield_audio_data(b"RIFF" + bytes(200), end=True)
    assert ctrl.stats.samples_received == 0
    assert ctrl.get_current_conversation_id() is None


# -- item 6: volume ---------------------------------------------------------------


@pytest.mark.parametrize("volume", [0.0, 0.25, 0.5, 0.77, 1.0])
def test_volume_scales_what_is_read_and_nothing_else(impl, volume, golden):
    ctrls = [make(impl) for _ in range(2)]
    for c in ctrls:
        cid = c.yield_audio_data(golden.pcm, end=True)
        assert c.yield_frames_data(list(golden.envelopes), cid)
    ctrls[1].set_volume(volume)
    assert ctrls[1].get_volume() == volume
    a, b = np.empty(160, np.int16), np.empty(160, np.int16)
    fa, fb = np.empty(120, np.float32), np.empty(120, np.float32)
    moved = 0
    while True:
        ka, kb = ctrls[0].read_audio_into(a), ctrls[1].read_audio_into(b)
        assert ka == kb
        ctrls[0].current_frame_into(fa)
        ctrls[1].current_frame_into(fb)
        assert fa.tobytes() == fb.tobytes()  # the same keyframe at every tick
        moved += int(np.any(fa != 0))
        expect = a.copy()
        apply_volume_into(expect[:ka], volume)
        assert b.tolist() == expect.tolist()
        if ka == 0:
            break
    assert moved > 100
    assert ctrls[0].stats.samples_played == ctrls[1].stats.samples_played == len(golden.pcm) // 2


def test_volume_refused_values(impl):
    ctrl = make(impl)
    for bad, exc, words in [
        (1.5, ValueError, r"volume must be in \[0.0, 1.0\], got 1.5"),
        (-0.1, ValueError, "volume must be in"),
        (float("nan"), ValueError, "volume must be in"),
        ("0.5", TypeError, "volume must be a number, got str"),
        (True, TypeError, "volume must be a number, got bool"),
    ]:
        with pytest.raises(exc, match=words):
            ctrl.set_volume(bad)
    assert ctrl.get_volume() == 1.0
