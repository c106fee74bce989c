"""Audio files through soundfile (avatarkit_fast.audio.files): files made here."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from avatarkit_fast.audio import AudioFileError, read_audio_file, write_wav
from avatarkit_fast.errors import AvatarKitError


def sine(rate: int, seconds: float, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * hz * t)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * rate / x.size


def test_16bit_mono_at_the_rate_is_bit_exact(tmp_path):
    x = np.random.default_rng(0).integers(-32768, 32768, 8000).astype(np.int16)
    path = tmp_path / "a.wav"
    write_wav(path, x, 16000)
    y, info = read_audio_file(path, target_rate=16000)
    assert y.dtype == np.int16 and np.array_equal(y, x)
    assert (info.format, info.subtype, info.channels, info.sample_rate) == ("WAV", "PCM_16", 1, 16000)
    assert not info.downmixed and not info.resampled
    assert info.describe() == f"{path}: WAV PCM_16, 1 channel at 16000 Hz, 0.50 s"


def test_24bit_wav(tmp_path):
    x = sine(16000, 1.0)
    path = tmp_path / "b.wav"
    sf.write(path, x, 16000, subtype="PCM_24")
    y, info = read_audio_file(path, target_rate=16000)
    assert info.subtype == "PCM_24"
    want = np.rint(np.round(x * 2**23) / 2**8)  # the 24-bit values, rounded half-even to 16 bits
    assert np.max(np.abs(y - want)) == 0


def test_float_wav_and_clipping_counted(tmp_path):
    x = sine(16000, 0.5, amp=1.2)  # past full scale
    path = tmp_path / "c.wav"
    sf.write(path, x.astype(np.float32), 16000, subtype="FLOAT")
    y, info = read_audio_file(path, target_rate=16000)
    assert info.subtype == "FLOAT"
    assert info.samples_clipped == int(np.count_nonzero(np.abs(x.astype(np.float32)) > 1))
    assert info.samples_clipped > 0 and "clipped" in info.describe()
    assert y.max() == 32767 and y.min() == -32768


def test_stereo_44k1_is_downmixed_and_resampled(tmp_path):
    left, right = sine(44100, 1.0, 1000, 0.6), sine(44100, 1.0, 1000, 0.2)
    path = tmp_path / "d.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    y, info = read_audio_file(path, target_rate=16000)
    assert abs(y.size - 16000) <= 1
    assert info.downmixed and info.resampled and info.channels == 2 and info.rate == 16000
    assert "mixed down from 2 channels to mono, resampled from 44100 to 16000 Hz" in info.describe()
    assert abs(peak_hz(y.astype(float), 16000) - 1000) <= 10
    mid = y[4000:12000].astype(float)
    assert abs(np.sqrt(np.mean(mid**2)) / (0.4 * 32768 / np.sqrt(2)) - 1) < 0.01  # the mean of both


def test_extensible_header(tmp_path):
    x = sine(22050, 0.5)
    path = tmp_path / "e.wav"
    sf.write(path, x, 22050, subtype="PCM_24", format="WAVEX")
    assert path.read_bytes()[20:22] == b"\xfe\xff"  # WAVE_FORMAT_EXTENSIBLE
    y, info = read_audio_file(path, target_rate=16000)
    assert info.format == "WAVEX" and info.resampled
    assert abs(y.size - 8000) <= 1


@pytest.mark.parametrize("fmt, subtype, ext", [("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg")])
def test_flac_and_ogg(tmp_path, fmt, subtype, ext):
    x = sine(48000, 1.0, 600)
    path = tmp_path / f"f.{ext}"
    sf.write(path, x, 48000, format=fmt, subtype=subtype)
    y, info = read_audio_file(path, target_rate=24000)
    assert info.format == fmt and info.rate == 24000
    assert abs(y.size - 24000) <= 1
    assert abs(peak_hz(y.astype(float), 24000) - 600) <= 6


def test_target_rate_none_keeps_the_file_rate(tmp_path):
    path = tmp_path / "g.wav"
    sf.write(path, sine(11025, 0.2), 11025, subtype="PCM_16")
    y, info = read_audio_file(path, target_rate=None)
    assert info.rate == 11025 and y.size == 2205 and not info.resampled


def test_truncated_wav_names_both_lengths(tmp_path):
    path = tmp_path / "h.wav"
    sf.write(path, np.zeros((44100, 2)), 44100, subtype="PCM_24")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 6 * 1000])  # 1000 frames of the 44100 the header declares
    with pytest.raises(AudioFileError) as info:
        read_audio_file(path, target_rate=16000)
    msg = str(info.value)
    assert str(path) in msg and "shorter than its header says" in msg
    assert "1000 of 44100 frames" in msg and "6000 of 264600 data bytes" in msg
    assert isinstance(info.value, AvatarKitError) and info.value.path == path


def test_truncated_flac(tmp_path):
    path = tmp_path / "i.flac"
    sf.write(path, np.random.default_rng(1).standard_normal(44100) * 0.1, 44100, format="FLAC")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match=r"of 44100 frames decode") as info:
        read_audio_file(path, target_rate=16000)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p, ["is a directory"]),
        (lambda p: p / "missing.wav", ["no such file"]),
        (lambda p: (p / "notes.txt").write_text("hello, not audio") and p / "notes.txt", ["not an audio file"]),
    ],
)
def test_not_audio(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(AudioFileError) as info:
        read_audio_file(path, target_rate=16000)
    assert str(path) in str(info.value)
    for w in words:
        assert w in str(info.value)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="target_rate"):
        read_audio_file(tmp_path / "x.wav", target_rate=1000)
    with pytest.raises(ValueError, match="rate"):
        write_wav(tmp_path / "x.wav", np.zeros(4, np.int16), 0)
    with pytest.raises(AudioFileError, match="cannot be written"):
        write_wav(tmp_path / "no-such-dir" / "x.wav", np.zeros(4, np.int16), 16000)


def test_write_wav_takes_floats_and_bytes(tmp_path):
    path = tmp_path / "w.wav"
    write_wav(path, np.array([0.5, -0.5], np.float32), 8000)
    y, _ = read_audio_file(path, target_rate=8000)
    assert y.tolist() == [16384, -16384]
    write_wav(path, np.array([1, -2, 3], "<i2").tobytes(), 8000)
    y, _ = read_audio_file(path, target_rate=8000)
    assert y.tolist() == [1, -2, 3]
