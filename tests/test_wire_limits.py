"""Limits on what one decode may produce: the output/input ratio
(``max_ratio``, default ``_schema.DEFAULT_MAX_RATIO``), on both
implementations (``impl.wire``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from protowire import ld, tag

from avatarkit_fast import DecodeError
from avatarkit_fast._schema import DEFAULT_MAX_RATIO, KEYFRAME_BYTES

DECODERS = ["decode_animation", "count_keyframes", "decode_message", "peek_animation", "into"]


def empty_keyframes(n: int, pad: int = 0) -> bytes:
    """An animation envelope of ``n`` keyframes with no fields (2 bytes each,
    legal proto3: all floats zero), plus ``pad`` bytes of an unknown field."""
    body = ld(4, ld(1, b"") * n)
    if pad:
        body += ld(15, bytes(pad))
    return tag(1, 0) + b"\x05" + ld(6, body)


def run(w, name, data, **kw):
    if name == "into":
        n = 100_001
        return w.decode_animation_into(data, np.empty((n, 120), np.float32), **kw)
    return getattr(w, name)(data, **kw)


def test_default_is_eight():
    assert DEFAULT_MAX_RATIO == 8.0 and KEYFRAME_BYTES == 480


@pytest.mark.parametrize("name", DECODERS)
def test_hundred_thousand_empty_keyframes_are_refused(impl, name):
    data = empty_keyframes(100_000)
    assert len(data) < 210_000  # 200 KB that would decode to 48 MB
    with pytest.raises(DecodeError, match=r"max_ratio limit of 8\b") as err:
        run(impl.wire, name, data)
    assert "100000 keyframes would decode to 48000000 bytes" in str(err.value)
    assert f"from a {len(data)}-byte envelope" in str(err.value)


def test_no_limit_when_asked(impl):
    data = empty_keyframes(1000)
    m = impl.wire.decode_animation(data, max_ratio=math.inf)
    assert m.frames.shape == (1000, 120) and not m.frames.any()
    assert impl.wire.peek_animation(data, max_ratio=math.inf).n_keyframes == 1000


def padded(n: int, size: int) -> bytes:
    """An envelope of ``n`` empty keyframes padded to exactly ``size`` bytes."""
    for pad in range(size - len(empty_keyframes(n)), -1, -1):
        data = empty_keyframes(n, pad)
        if len(data) == size:
            return data
    raise AssertionError(f"no padding gives {size} bytes")


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("ratio", [DEFAULT_MAX_RATIO, 2.0, 16.0])
def test_exact_boundary(impl, name, ratio):
    kw = {} if ratio == DEFAULT_MAX_RATIO else {"max_ratio": ratio}
    size = int(100 * KEYFRAME_BYTES / ratio)
    assert size * ratio == 100 * KEYFRAME_BYTES
    # exactly ratio times its bytes: accepted; one byte less: refused
    run(impl.wire, name, padded(100, size), **kw)
    with pytest.raises(DecodeError, match=f"max_ratio limit of {ratio:g}"):
        run(impl.wire, name, padded(100, size - 1), **kw)


def test_real_envelopes_pass_at_the_default_and_a_tight_limit_refuses_them(impl, recording):
    w = impl.wire
    for env in recording.envelopes:
        n = w.decode_animation(env).frames.shape[0]
        assert n * KEYFRAME_BYTES < len(env)  # 0.96 x
        assert w.decode_animation(env, max_ratio=1.0).frames.shape[0] == n
        with pytest.raises(DecodeError, match="max_ratio limit of 0.9"):
            w.decode_animation(env, max_ratio=0.9)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "8", None, True])
def test_bad_limits_are_refused(impl, bad):
    with pytest.raises((TypeError, ValueError)) as err:
        impl.wire.decode_animation(b"\x08\x05", max_ratio=bad)
    assert not isinstance(err.value, DecodeError)


def test_other_types_are_not_limited(impl):
    """An error envelope whose oneof also held an animation produces no keyframes."""
    data = tag(1, 0) + b"\x04" + ld(6, ld(4, ld(1, b"") * 1000))
    assert impl.wire.decode_message(data) == impl.wire.ServerErrorMessage()
    assert impl.wire.peek_animation(data) == (4, None, None, 0)


def test_failed_decode_into_leaves_out_untouched(impl):
    out = np.full((200, 120), 7.0, np.float32)
    with pytest.raises(DecodeError):
        impl.wire.decode_animation_into(empty_keyframes(200), out)
    assert (out == 7.0).all()
