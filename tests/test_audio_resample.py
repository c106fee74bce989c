"""Streaming resampling (avatarkit_fast.audio.resample) over soxr."""

from __future__ import annotations

import numpy as np
import pytest

from avatarkit_fast.audio import StreamResampler


def tone(rate: int, seconds: float, hz: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return np.rint(amp * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def run_chunked(rs: StreamResampler, x: np.ndarray, sizes) -> np.ndarray:
    out, i = [], 0
    for n in sizes:
        if i >= x.size:
            break
        out.append(rs.process(x[i : i + n]))
        i += n
    if i < x.size:
        out.append(rs.process(x[i:]))
    out.append(rs.flush())
    return np.concatenate(out)


def random_sizes(seed: int, hi: int):
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(1, hi))


def test_one_second_44k1_is_16000_samples_whatever_the_chunking():
    x = tone(44100, 1.0)
    one = StreamResampler(44100, 16000)
    whole = np.concatenate([one.process(x), one.flush()])
    assert abs(whole.size - 16000) <= 1
    assert one.samples_in == 44100 and one.samples_out == whole.size
    for seed, hi in ((1, 3000), (2, 50), (3, 2)):
        rs = StreamResampler(44100, 16000)
        got = run_chunked(rs, x, random_sizes(seed, hi))
        assert got.size == whole.size
        # Measured: equal sample for sample (soxr's float path is bit-exact
        # whatever the chunking; the rounding to int16 is ours).
        assert np.array_equal(got, whole)


def test_one_sample_chunks_equal_one_shot():
    x = tone(24000, 0.25, hz=440)
    ref = StreamResampler(24000, 16000)
    whole = np.concatenate([ref.process(x), ref.flush()])
    rs = StreamResampler(24000, 16000)
    got = np.concatenate([rs.process(x[i : i + 1]) for i in range(x.size)] + [rs.flush()])
    assert np.array_equal(got, whole)


@pytest.mark.parametrize("rate_in, rate_out", [(44100, 16000), (22050, 16000), (8000, 48000), (96000, 24000)])
def test_tone_stays_at_its_frequency(rate_in, rate_out):
    rs = StreamResampler(rate_in, rate_out)
    y = run_chunked(rs, tone(rate_in, 1.0), random_sizes(5, 1000)).astype(np.float64)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peak = np.argmax(spec) * rate_out / y.size
    assert abs(peak - 1000.0) <= 10.0, peak  # within 1%
    # and the level is kept (0.5 of full scale, within 1 %)
    mid = y[y.size // 4 : 3 * y.size // 4]
    assert abs(np.sqrt(np.mean(mid**2)) / (0.5 * 32767 / np.sqrt(2)) - 1) < 0.01


@pytest.mark.parametrize("rate_in, rate_out", [(44100, 16000), (16000, 44100), (11025, 8000), (48000, 16000)])
def test_expected_length(rate_in, rate_out):
    rng = np.random.default_rng(9)
    for n in [0, 1, 2, 3, 10, 441, 12345]:
        rs = StreamResampler(rate_in, rate_out)
        x = rng.integers(-2000, 2000, n).astype(np.int16)
        got = run_chunked(rs, x, random_sizes(n, 700))
        assert got.size == rs.expected_length(n) == (2 * n * rate_out + rate_in) // (2 * rate_in)


def test_reset_drops_state():
    x = tone(44100, 0.5)
    fresh = StreamResampler(44100, 16000)
    want = np.concatenate([fresh.process(x), fresh.flush()])
    rs = StreamResampler(44100, 16000)
    rs.process(tone(44100, 0.3, hz=3000))  # a conversation cut short
    rs.reset()
    got = np.concatenate([rs.process(x), rs.flush()])
    assert np.array_equal(got, want)
    # and flush begins a new stream too
    again = np.concatenate([rs.process(x), rs.flush()])
    assert np.array_equal(again, want)


def test_identity_is_a_view():
    rs = StreamResampler(16000, 16000)
    assert rs.identity
    x = tone(16000, 0.1)
    y = rs.process(x)
    assert y is x or np.shares_memory(y, x)
    b = x.tobytes()
    z = rs.process(b)
    assert np.shares_memory(z, np.frombuffer(b, np.uint8)) and np.array_equal(z, x)
    assert rs.flush().size == 0
    assert rs.samples_in == rs.samples_out == 2 * x.size


def test_bytes_with_odd_lengths_carry_half_samples():
    x = tone(44100, 0.2)
    raw = x.tobytes()
    ref = StreamResampler(44100, 16000)
    want = np.concatenate([ref.process(x), ref.flush()])
    rs = StreamResampler(44100, 16000)
    parts, i = [], 0
    for n in random_sizes(11, 33):
        if i >= len(raw):
            break
        parts.append(rs.process(raw[i : i + n]))
        i += n
    parts.append(rs.flush())
    assert np.array_equal(np.concatenate(parts), want)
    assert rs.samples_in == x.size


def test_full_scale_overshoot_is_clipped_and_counted():
    x = np.where(np.arange(4410) % 20 < 10, 32767, -32768).astype(np.int16)  # a square wave
    rs = StreamResampler(44100, 16000)
    y = np.concatenate([rs.process(x), rs.flush()])
    assert y.dtype == np.int16
    assert rs.samples_clipped > 0  # Gibbs overshoot past full scale


@pytest.mark.parametrize(
    "args, exc, words",
    [
        ((7999, 16000), ValueError, ["in_rate", "8000..96000", "7999"]),
        ((16000, 96001), ValueError, ["out_rate", "96001"]),
        ((16000.0, 16000), TypeError, ["in_rate", "float"]),
        ((True, 16000), TypeError, ["bool"]),
    ],
)
def test_rates_validated(args, exc, words):
    with pytest.raises(exc) as info:
        StreamResampler(*args)
    for w in words:
        assert w in str(info.value)


def test_quality_validated_and_inputs_refused():
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(16000, 8000, quality="best")
    rs = StreamResampler(24000, 16000, quality="vhq")
    assert rs.quality == "VHQ"
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        rs.process(np.zeros((4, 2), np.int16))
    with pytest.raises(TypeError, match="list"):
        rs.process([1, 2, 3])
    with pytest.raises(TypeError, match="C-contiguous"):
        rs.process(memoryview(b"abcd")[::2])
