"""The PCM ring and the keyframe store, on the compiled module and its twin."""

from __future__ import annotations

import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit_fast import BufferFull, wire

from conftest import IMPL_TAGS, Impl


def _pcm(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, n, dtype=np.int16).astype("<i2").tobytes()


# -- PcmRing ---------------------------------------------------------------------


def test_round_trip_and_zero_fill(impl):
    ring = impl.ring.PcmRing(1000)
    data = _pcm(300)
    assert ring.write(data) == 300
    out = np.full(200, 7, np.int16)
    assert ring.read_into(out, 1 << 30) == 200
    assert ring.last_request == 200
    assert out.tobytes() == data[:400]
    out[:] = 7
    assert ring.read_into(out, 1 << 30) == 100
    assert out[:100].tobytes() == data[400:]
    assert not out[100:].any()
    assert ring.available == 0


def test_limit_caps_the_copy(impl):
    ring = impl.ring.PcmRing(1000)
    ring.write(_pcm(100))
    out = np.zeros(50, np.int16)
    assert ring.read_into(out, 20) == 20
    assert not out[20:].any()
    assert ring.read_into(out, 0) == 0 and not out.any()
    assert ring.read_into(out, -5) == 0
    assert ring.available == 80


def test_odd_bytes_carry_half_a_sample(impl):
    ring = impl.ring.PcmRing(100)
    data = _pcm(10, 3)
    assert ring.write(data[:1]) == 0 and ring.has_carry
    assert ring.write(data[1:4]) == 2 and not ring.has_carry
    assert ring.write(data[4:9]) == 2 and ring.has_carry
    assert ring.write(data[9:]) == 6
    out = np.zeros(10, np.int16)
    ring.read_into(out, 100)
    assert out.tobytes() == data


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    reads=st.lists(st.integers(0, 700), min_size=1, max_size=20),
    tag=st.sampled_from(IMPL_TAGS),
)
def test_any_split_any_reads_nothing_lost_nothing_doubled(data, cuts, reads, tag):
    ring = Impl(tag).ring.PcmRing(4000)
    bounds = sorted({0, len(data), *[c for c in cuts if c <= len(data)]})
    played = bytearray()
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        ring.write(data[a:b])
        out = np.zeros(reads[i % len(reads)], np.int16)
        k = ring.read_into(out, 1 << 40)
        played += out[:k].tobytes()
        assert not out[k:].any()
    rest = np.zeros(ring.available, np.int16)
    ring.read_into(rest, 1 << 40)
    played += rest.tobytes()
    assert bytes(played) == data[: len(data) // 2 * 2]


def test_grows_across_the_wrap_and_keeps_order(impl):
    ring = impl.ring.PcmRing(1 << 20)
    data = _pcm(200_000, 5)
    ring.write(data[:20000])
    out = np.zeros(7000, np.int16)
    ring.read_into(out, 1 << 30)  # head moves: the next writes wrap
    got = [out.tobytes()]
    ring.write(data[20000:])  # forces growth with a wrapped live region
    while ring.available:
        k = ring.read_into(out, 1 << 30)
        got.append(out[:k].tobytes())
    assert b"".join(got) == data
    assert ring.capacity >= 200_000 - 7000


def test_large_copies_without_the_gil_are_exact(impl):
    ring = impl.ring.PcmRing(2_000_000)
    data = _pcm(1_000_000, 9)
    ring.write(data)
    out = np.zeros(600_000, np.int16)
    assert ring.read_into(out, 1 << 40) == 600_000
    assert out.tobytes() == data[:1_200_000]
    assert ring.read_into(out, 1 << 40) == 400_000
    assert out[:400_000].tobytes() == data[1_200_000:] and not out[400_000:].any()


def test_buffer_full_keeps_everything_and_stores_nothing(impl):
    ring = impl.ring.PcmRing(100)
    data = _pcm(101, 1)
    ring.write(data[:121])  # 60 samples and a carried byte
    assert ring.has_carry
    with pytest.raises(BufferFull):
        ring.write(data[121:])  # 80 more samples: past the cap
    assert ring.available == 60 and ring.has_carry
    ring.write(data[121:201])  # 40 samples fill it exactly
    assert ring.available == 100
    out = np.zeros(100, np.int16)
    ring.read_into(out, 1000)
    assert out.tobytes() == data[:200]


def test_clear_and_drop_carry(impl):
    ring = impl.ring.PcmRing(100)
    ring.write(b"\x01\x02\x03")
    ring.clear()
    assert ring.available == 0 and not ring.has_carry
    ring.write(b"\x05")
    assert ring.drop_carry() is True and ring.drop_carry() is False


@pytest.mark.parametrize(
    "bad",
    ["text", 12, None, 3.5, np.zeros((4, 4), np.int16)[:, ::2]],
    ids=["str", "int", "None", "float", "non-contiguous"],
)
def test_write_rejects_non_bytes(impl, bad):
    ring = impl.ring.PcmRing(100)
    with pytest.raises(TypeError):
        ring.write(bad)
    assert ring.available == 0


def test_write_takes_any_bytes_like(impl):
    ring = impl.ring.PcmRing(100)
    ring.write(bytearray(b"\x01\x00"))
    ring.write(memoryview(b"\x02\x00"))
    ring.write(np.array([3], np.int16))
    ring.write(array.array("h", [4]))
    out = np.zeros(4, np.int16)
    ring.read_into(out, 100)
    assert out.tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "bad, exc",
    [
        (np.zeros(4, np.float32), TypeError),
        (np.zeros(8, np.uint8), TypeError),
        (bytearray(8), TypeError),
        (b"\x00" * 8, TypeError),
        (np.zeros(8, np.int16)[::2], TypeError),
        ("text", TypeError),
    ],
    ids=["float32", "uint8", "bytearray", "readonly", "strided", "str"],
)
def test_read_into_rejects_wrong_buffers(impl, bad, exc):
    ring = impl.ring.PcmRing(100)
    ring.write(_pcm(10))
    with pytest.raises(exc):
        ring.read_into(bad, 100)
    assert ring.available == 10


def test_read_into_other_int16_buffers(impl):
    ring = impl.ring.PcmRing(100)
    ring.write(np.arange(6, dtype=np.int16))
    a = array.array("h", [0, 0])
    ring.read_into(a, 100)
    m = memoryview(bytearray(4)).cast("h")
    ring.read_into(m, 100)
    two_d = np.zeros((1, 2), np.int16)
    ring.read_into(two_d, 100)
    assert list(a) == [0, 1] and m.tolist() == [2, 3] and two_d.tolist() == [[4, 5]]
    empty = np.zeros(0, np.int16)
    assert ring.read_into(empty, 100) == 0


def test_reused_output_buffer_sees_every_read(impl):
    ring = impl.ring.PcmRing(100)
    ring.write(np.arange(8, dtype=np.int16))
    out = np.zeros(2, np.int16)
    seen = []
    for _ in range(4):
        ring.read_into(out, 100)
        seen += out.tolist()
    assert seen == list(range(8))
    ring.release_buffers()


# -- KeyframeStore ---------------------------------------------------------------


def _frames(k: int, start: int = 0) -> np.ndarray:
    base = np.arange(start, start + k, dtype=np.float32)[:, None]
    return base + np.linspace(0, 0.5, 120, dtype=np.float32)[None, :]


def _add(store, frames, floor=0):
    store.reserve(len(frames), floor)
    store.stage(frames)
    return store.commit(store.epoch)


def test_store_commit_makes_frames_visible(impl):
    s = impl.ring.KeyframeStore(1000)
    s.reserve(3, 0)
    s.stage(_frames(3))
    assert s.total == 0 and s.pending == 3
    assert s.commit(s.epoch) == 3 and s.total == 3 and s.pending == 0
    out = np.zeros(120, np.float32)
    s.copy_into(out, 2)
    assert np.array_equal(out, _frames(3)[2])


def test_store_rollback_and_stale_epoch_keep_nothing(impl):
    s = impl.ring.KeyframeStore(1000)
    _add(s, _frames(2))
    s.reserve(4, 0)
    s.stage(_frames(4, 2))
    s.rollback()
    assert s.total == 2 and s.pending == 0
    e = s.epoch
    s.reserve(1, 0)
    s.stage(_frames(1))
    s.clear()
    assert s.commit(e) == 0 and s.total == 0


def test_store_drops_played_rows_but_never_the_last(impl):
    s = impl.ring.KeyframeStore(300)
    for i in range(20):
        _add(s, _frames(50, 50 * i), floor=50 * i)
    assert s.total == 1000 and s.first >= 900
    out = np.zeros(120, np.float32)
    s.copy_into(out, 999)
    assert np.array_equal(out, _frames(1, 999)[0])
    s.reserve(0, 10_000)  # the play position ran past the animation
    assert s.first == 999
    with pytest.raises(IndexError):
        s.copy_into(out, 998)


def test_store_cap_raises_and_loses_nothing(impl):
    s = impl.ring.KeyframeStore(200)
    _add(s, _frames(150))
    with pytest.raises(BufferFull):
        s.reserve(51, 0)
    assert s.total == 150
    _add(s, _frames(50, 150))
    out = np.zeros(120, np.float32)
    for i in (0, 149, 199):
        s.copy_into(out, i)
        assert np.array_equal(out, _frames(1, i)[0])


def test_store_decodes_straight_into_free_rows(impl, recording):
    s = impl.ring.KeyframeStore(1000)
    env = recording.envelopes[1]
    n = wire.count_keyframes(env)
    s.reserve(n, 0)
    msg = wire.decode_animation_into(env, s.free_rows())
    s.add_pending(len(msg.frames))
    s.commit(s.epoch)
    out = np.zeros(120, np.float32)
    s.copy_into(out, n - 1)
    assert np.array_equal(out, wire.decode_animation(env).frames[-1])


def test_blend_and_idle(impl):
    s = impl.ring.KeyframeStore(10)
    _add(s, _frames(2))
    out = np.zeros(120, np.float32)
    s.blend_into(out, 0, 0.25)
    a, b = _frames(2)
    np.testing.assert_allclose(out, a + (b - a) * np.float32(0.25), rtol=1e-6)
    s.idle_into(out)
    assert not out.any()
    s.set_idle(np.full(120, 2.0))
    s.idle_into(out)
    assert (out == 2.0).all()
    with pytest.raises(ValueError):
        s.set_idle(np.zeros(7))


def _blend_reference(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The twin's arithmetic: three float32 operations, each rounded."""
    d = np.subtract(b, a, dtype=np.float32)
    d *= np.float32(t)
    d += a
    return d


def test_blend_is_bit_identical_to_separate_roundings(impl):
    """Keyframe values and fractions for which a fused multiply-add (one
    rounding) gives other bits than a multiply then an add: both twins must
    give the separately rounded result, bit for bit."""
    rng = np.random.default_rng(11)
    s = impl.ring.KeyframeStore(64)
    frames = (rng.standard_normal((40, 120)) * rng.choice([1e-3, 1.0, 1e3], (40, 1))).astype(np.float32)
    _add(s, frames)
    out = np.zeros(120, np.float32)
    fused_differs = 0
    for i in range(39):
        for t in (1 / 3, 0.1, 0.7, 1 / 640, 639 / 640, float(rng.random())):
            s.blend_into(out, i, t)
            want = _blend_reference(frames[i], frames[i + 1], t)
            assert out.view(np.uint32).tolist() == want.view(np.uint32).tolist(), (i, t)
            # what an FMA would give: the product and sum rounded once, in double
            tf = np.float64(np.float32(t))
            fused = (frames[i].astype(np.float64)
                     + (frames[i + 1] - frames[i]).astype(np.float64) * tf).astype(np.float32)
            fused_differs += int((fused != want).any())
    assert fused_differs > 0, "the inputs must tell a fused blend from a rounded one"


@pytest.mark.parametrize(
    "bad, exc",
    [
        (np.zeros(120, np.float64), TypeError),
        (np.zeros(119, np.float32), ValueError),
        (np.zeros(120, np.float32)[::1].copy().view(np.int32), TypeError),
        (bytes(480), TypeError),
    ],
    ids=["float64", "short", "int32", "readonly"],
)
def test_frame_buffer_checks(impl, bad, exc):
    s = impl.ring.KeyframeStore(10)
    with pytest.raises(exc):
        s.idle_into(bad)


# -- differential: the compiled ring and its twin agree --------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.binary(max_size=900)),
        st.tuples(st.just("read"), st.integers(0, 600), st.integers(-5, 700)),
        st.tuples(st.just("clear")),
        st.tuples(st.just("carry")),
    ),
    max_size=40,
)


def _apply(ring, ops):
    log = []
    for op in ops:
        try:
            if op[0] == "write":
                log.append(("w", ring.write(op[1])))
            elif op[0] == "read":
                out = np.full(op[1], 3, np.int16)
                k = ring.read_into(out, op[2])
                log.append(("r", k, out.tobytes(), ring.last_request))
            elif op[0] == "clear":
                ring.clear()
            else:
                log.append(("c", ring.drop_carry()))
        except Exception as exc:  # the same exception type from both
            log.append(("x", type(exc).__name__))
        log.append((ring.available, ring.has_carry))
    return log


@pytest.mark.skipif(len(IMPL_TAGS) < 2, reason="compiled modules not built")
@settings(max_examples=200, deadline=None)
@given(ops=_ops, cap=st.integers(1, 2000))
def test_compiled_ring_and_twin_agree(ops, cap):
    logs = [_apply(Impl(tag).ring.PcmRing(cap), ops) for tag in IMPL_TAGS]
    assert logs[0] == logs[1]
