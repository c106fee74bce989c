"""Audio in as numbers (avatarkit_fast.audio.pcm): both twins, same tests."""

from __future__ import annotations

import array
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from avatarkit_fast._compat import NO_EXTENSIONS

TAGS = ["py"] if NO_EXTENSIONS else ["c", "py"]


@pytest.fixture(params=TAGS, scope="module")
def pcm(request):
    return importlib.import_module(f"avatarkit_fast.audio._pcm_{request.param}")


@pytest.fixture(scope="module")
def both():
    if NO_EXTENSIONS:
        pytest.skip("the compiled twin is not in use")
    return (
        importlib.import_module("avatarkit_fast.audio._pcm_c"),
        importlib.import_module("avatarkit_fast.audio._pcm_py"),
    )


def samples(out) -> np.ndarray:
    return np.frombuffer(memoryview(out).cast("B"), "<i2")


@pytest.mark.skipif(NO_EXTENSIONS, reason="the pure twins are selected")
def test_compiled_twin_is_used():
    from avatarkit_fast.audio import pcm

    assert pcm.as_pcm16.__module__ == "avatarkit_fast.audio._pcm_c"


def test_float32_sine_plays_as_the_same_sine(pcm):
    t = np.arange(16000) / 16000
    sine = (0.8 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stats = pcm.AudioInputStats()
    out = samples(pcm.as_pcm16(sine, stats=stats))
    assert out.size == 16000  # one second, not 2 s of raw float bytes
    assert np.max(np.abs(out - sine.astype(np.float64) * 32768)) <= 0.5 + 1e-9
    assert stats.samples_clipped == 0


def test_float_rounding_is_half_even_and_limits(pcm):
    x = np.array(
        [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 32766.5, 32767.5, -32767.5],
        np.float64,
    ) / 32768
    x = np.concatenate([x, [1.0, -1.0, 0.0, -0.0]])
    for dtype in (np.float32, np.float64):
        out = samples(pcm.as_pcm16(x.astype(dtype)))
        assert out.tolist() == [0, 2, 2, 0, -2, -2, 32766, 32767, -32768, 32767, -32768, 0, 0]


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
def test_clipping_counted_and_nan_is_zero(pcm, dtype):
    x = np.array([1.5, -2.0, np.nan, np.inf, -np.inf, 1.0, -1.0, 0.25, 1e30], np.float64)
    x = np.tile(x, 7).astype(dtype)  # long enough for the vector loops and their tails
    stats = pcm.AudioInputStats()
    out = samples(pcm.as_pcm16(x, stats=stats))
    one = [32767, -32768, 0, 32767, -32768, 32767, -32768, 8192, 32767]
    assert out.tolist() == one * 7
    assert stats.samples_clipped == 6 * 7
    pcm.as_pcm16(x, stats=stats)
    assert stats.samples_clipped == 12 * 7


def test_pcm16_input_counts_and_reuses(pcm):
    conv = pcm.Pcm16Input("audio")
    a = np.array([0.5, 2.0], np.float32)
    assert samples(conv.convert(a)).tolist() == [16384, 32767]
    assert bytes(conv.convert(np.array([-0.25], np.float32))) == np.array([-8192], "<i2").tobytes()
    assert conv.samples_clipped == 1
    assert "samples_clipped=1" in repr(conv)
    held = memoryview(conv.convert(np.array([0.5, 0.5, 0.5], np.float32)))
    other = conv.convert(np.array([0.25], np.float32))  # the scratch cannot resize: new bytes
    assert bytes(other) == np.array([8192], "<i2").tobytes()
    assert bytes(held) == np.array([16384] * 3, "<i2").tobytes()


def test_bytes_likes_are_raw_pcm(pcm):
    raw = np.arange(-5, 6, dtype="<i2").tobytes()
    for obj in (raw, bytearray(raw), memoryview(raw), array.array("B", raw), np.frombuffer(raw, np.uint8)):
        assert pcm.as_pcm16(obj) is obj
    odd = raw + b"\x01"  # an odd length: the controller carries the half sample
    assert pcm.as_pcm16(odd) is odd


def test_int16_native_passes_without_copy(pcm):
    x = np.arange(100, dtype=np.int16)
    assert pcm.as_pcm16(x) is x
    col = x.reshape(-1, 1)
    assert pcm.as_pcm16(col) is col
    mv = memoryview(x)
    assert pcm.as_pcm16(mv) is mv


def test_int16_other_order_and_strides_by_value(pcm):
    x = np.arange(-300, 300, 7, dtype=np.int16)
    want = x.astype("<i2").tobytes()
    assert bytes(pcm.as_pcm16(x.astype(">i2"))) == want
    y = np.repeat(x, 2)[::2]
    assert bytes(pcm.as_pcm16(y)) == want
    assert bytes(pcm.as_pcm16(memoryview(np.repeat(x, 3))[::3])) == want
    assert bytes(pcm.as_pcm16(x[::-1][::-1].copy())) == want
    stereo = np.stack([x, -x], axis=1)
    assert bytes(pcm.as_pcm16(stereo[:, :1])) == want  # one channel of a stereo array


def test_typed_buffers_are_values(pcm):
    vals = [0.5, -0.5, 0.25]
    want = [16384, -16384, 8192]
    assert samples(pcm.as_pcm16(array.array("f", vals))).tolist() == want
    assert samples(pcm.as_pcm16(array.array("d", vals))).tolist() == want
    assert samples(pcm.as_pcm16(memoryview(np.array(vals, ">f4")))).tolist() == want
    assert samples(pcm.as_pcm16(np.array(vals, np.float32)[::-1])).tolist() == want[::-1]


@pytest.mark.parametrize(
    "obj, exc, words",
    [
        (np.zeros(4, np.int32), TypeError, ["pcm:", "int32", "int16", "float32"]),
        (np.zeros(4, np.float16), TypeError, ["float16"]),
        (np.zeros(4, np.uint16), TypeError, ["uint16"]),
        (np.zeros(4, bool), TypeError, ["bool"]),
        (array.array("i", [1, 2]), TypeError, ["int32"]),
        (np.zeros(4, "V3"), TypeError, ["3 bytes", "whole 16-bit samples"]),
        (np.zeros((10, 2), np.float32), ValueError, ["(10, 2)", "2 channels", "downmix", "mean(axis=1)"]),
        (np.zeros((1, 10), np.int16), ValueError, ["(1, 10)", "x[0]"]),
        (np.zeros((2, 2, 2), np.float64), ValueError, ["(2, 2, 2)", "not mono"]),
        (np.float32(0.5), ValueError, ["0-d"]),
        (memoryview(b"abcdef")[::2], TypeError, ["non-contiguous", "bytes(buf)"]),
        ([0.1, 0.2], TypeError, ["bytes-like", "list"]),
        ("text", TypeError, ["str"]),
        (None, TypeError, ["NoneType"]),
    ],
)
def test_refused_with_a_message(pcm, obj, exc, words):
    with pytest.raises(exc) as info:
        pcm.as_pcm16(obj, what="pcm")
    for w in words:
        assert w in str(info.value), str(info.value)


def test_what_names_the_argument(pcm):
    with pytest.raises(TypeError, match=r"^audio: int64"):
        pcm.as_pcm16(np.zeros(2, np.int64), what="audio")


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled twin is not in use")
@pytest.mark.parametrize("path", ["avx2", "sse2", "portable"])
def test_float32_loops_agree(both, path):
    c, py = both
    try:
        c._use_simd(path)
        rng = np.random.default_rng(7)
        for n in (0, 1, 7, 8, 15, 16, 17, 31, 320, 1001):
            x = (rng.standard_normal(n) * 0.7).astype(np.float32)
            x[rng.random(n) < 0.05] = np.nan
            s1, s2 = c.AudioInputStats(), py.AudioInputStats()
            assert bytes(c.as_pcm16(x, stats=s1)) == bytes(py.as_pcm16(x, stats=s2)), n
            assert s1.samples_clipped == s2.samples_clipped
    finally:
        c._use_simd("avx2")


_arrays = hnp.arrays(
    dtype=st.sampled_from(["<f4", ">f4", "<f8", ">f8", "<i2", ">i2", "<i4", "u1", "f2"]),
    shape=st.one_of(hnp.array_shapes(min_dims=1, max_dims=1, max_side=70), st.just((5, 1)), st.just((3, 2))),
    elements=None,
)


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled twin is not in use")
@settings(max_examples=300, deadline=None)
@given(x=_arrays, step=st.sampled_from([1, 2, -1]))
def test_differential(both, x, step):
    c, py = both
    if x.ndim == 1:
        x = x[::step]
    results = []
    for mod in (c, py):
        stats = mod.AudioInputStats()
        try:
            out = mod.as_pcm16(x, stats=stats)
            results.append(("ok", bytes(memoryview(out).cast("B")), stats.samples_clipped))
        except (TypeError, ValueError) as exc:
            results.append((type(exc), str(exc)))
    assert results[0] == results[1]


# -- volume -------------------------------------------------------------------


def test_volume_gain(pcm):
    assert pcm.volume_gain(1.0) == pcm.GAIN_ONE == 32768
    assert pcm.volume_gain(0) == 0
    assert pcm.volume_gain(0.5) == 16384
    assert pcm.volume_gain(1 / 3) == 10923
    for bad, exc in ((1.01, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                     (True, TypeError), ("1", TypeError), (None, TypeError)):
        with pytest.raises(exc, match="volume"):
            pcm.volume_gain(bad)


def test_apply_volume_into_exact(pcm):
    x = np.array([-32768, -32767, -3, -1, 0, 1, 2, 3, 32767, 12345], np.int16)
    for v in (0.0, 0.25, 0.5, 1 / 3, 0.7071, 0.999, 1.0):
        g = pcm.volume_gain(v)
        buf = x.copy()
        assert pcm.apply_volume_into(buf, v) is None
        want = (x.astype(np.int64) * g + 16384) >> 15  # floor division: arithmetic shift
        assert buf.tolist() == want.tolist(), v
    buf = x.copy()
    pcm.apply_volume_into(buf, 1.0)
    assert buf.tolist() == x.tolist()
    buf = x.copy()
    pcm.apply_volume_into(buf, 0.5)
    assert buf.tolist()[:6] == [-16384, -16383, -1, 0, 0, 1]  # ties go up: -0.5 -> 0, 0.5 -> 1


def test_apply_volume_into_refuses(pcm):
    with pytest.raises(TypeError, match="read-only"):
        pcm.apply_volume_into(b"\0\0", 0.5)
    with pytest.raises(TypeError, match="int16"):
        pcm.apply_volume_into(np.zeros(4, np.float32), 0.5)
    with pytest.raises(TypeError, match="C-contiguous"):
        pcm.apply_volume_into(np.zeros(8, np.int16)[::2], 0.5)
    with pytest.raises(ValueError, match="volume"):
        pcm.apply_volume_into(np.zeros(4, np.int16), 2.0)
    buf = np.arange(4, dtype=np.int16)
    with pytest.raises(ValueError):
        pcm.apply_volume_into(buf, -1)
    assert buf.tolist() == [0, 1, 2, 3]  # nothing changed
