"""Property tests of the wire codec.

- round trips through ``encode_animation``;
- the many encodings of one message that ``protobuf`` produces and accepts
  (packed, unpacked, mixed, reordered, split and merged, repeated singular
  fields, unknown fields at every level) decode to what ``protobuf`` parses;
- truncations and mutations of the real envelopes, structured fuzz and raw
  bytes: the compiled codec and its pure twin agree on every input, the same
  result or the same exception (type, offset and text).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from avatarkit_fast import DecodeError
from avatarkit_fast._compat import NO_EXTENSIONS, load_twin

protoref = pytest.importorskip("avatarkit_fast.testing.protoref")
pytest.importorskip("google.protobuf")

# AVATARKIT_HYPOTHESIS_EXAMPLES=5000 for a long hunt.
EXAMPLES = int(os.environ.get("AVATARKIT_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

wire_py = load_twin("wire", "py")
wire_c = None if NO_EXTENSIONS else load_twin("wire", "c")

needs_both = pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled module is not in use")


# ---------------------------------------------------------------------------
# Raw wire helpers

from protowire import ld, tag, varint  # noqa: E402


def unknown_field(draw, known: set[int]) -> bytes:
    """One unknown field of any wire type (groups nest)."""
    fnum = draw(st.integers(1, 2**29 - 1).filter(lambda f: f not in known))
    wt = draw(st.sampled_from([0, 1, 2, 3, 5]))
    if wt == 0:
        return tag(fnum, 0) + varint(draw(st.integers(0, 2**64 - 1)))
    if wt == 1:
        return tag(fnum, 1) + draw(st.binary(min_size=8, max_size=8))
    if wt == 5:
        return tag(fnum, 5) + draw(st.binary(min_size=4, max_size=4))
    if wt == 2:
        return ld(fnum, draw(st.binary(max_size=20)))
    # a group: a few varint fields, perhaps a nested unknown field or group
    inner = b"".join(
        tag(draw(st.integers(1, 99)), 0) + varint(draw(st.integers(0, 300)))
        for _ in range(draw(st.integers(0, 2)))
    )
    if draw(st.booleans()):
        inner += unknown_field(draw, set())
    return tag(fnum, 3) + inner + tag(fnum, 4)


def sprinkle(draw, parts: list[bytes], known: set[int]) -> bytes:
    """Joins ``parts`` in order with unknown fields before, between and after."""
    out = []
    for part in parts + [b""]:
        if draw(st.integers(0, 9)) == 0:
            out.append(unknown_field(draw, known))
        out.append(part)
    return b"".join(out)


SPECIAL_BITS = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x00000001, 0x7F7FFFFF,
                0x7FC00000, 0xFFC00001, 0x7F800001]  # fmt: skip


@st.composite
def frames_strategy(draw, finite: bool):
    """(n, 120) float32 arrays: random values from a drawn seed (cheap to
    generate for 120-float rows), with special values (signed zeros,
    infinities, subnormals, NaN payloads) planted at drawn places."""
    n = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if finite:
        scale = np.float32(10.0 ** draw(st.integers(-3, 3)))
        frames = rng.standard_normal((n, 120)).astype(np.float32) * scale
    else:
        frames = rng.integers(0, 2**32, (n, 120), dtype=np.uint32).view(np.float32)
    if n:
        specials = SPECIAL_BITS[:6] if finite else SPECIAL_BITS
        for _ in range(draw(st.integers(0, 4))):
            i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, 119))
            frames.view(np.uint32)[i, j] = draw(st.sampled_from(specials))
    return frames


finite_frames = frames_strategy(finite=True)
bit_frames = frames_strategy(finite=False)
ids = st.text(max_size=12)


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# ---------------------------------------------------------------------------
# Round trips


@SETTINGS
@given(frames=bit_frames, req_id=ids, connection_id=ids, avatar_id=ids, end=st.booleans())
def test_round_trip(impl, frames, req_id, connection_id, avatar_id, end):
    data = impl.wire.encode_animation(
        frames, req_id=req_id, connection_id=connection_id, end=end, avatar_id=avatar_id
    )
    m = impl.wire.decode_animation(data)
    assert (m.type, m.req_id, m.connection_id, m.end, m.avatar_id) == (
        5, req_id, connection_id, end, avatar_id,
    )  # fmt: skip
    assert np.array_equal(bits(m.frames), bits(frames))
    assert impl.wire.count_keyframes(data) == frames.shape[0]
    assert impl.wire.decode_message(data) == m
    again = impl.wire.encode_animation(
        m.frames, req_id=m.req_id, connection_id=m.connection_id, end=m.end, avatar_id=m.avatar_id
    )
    assert again == data


@SETTINGS
@given(frames=finite_frames, req_id=ids, connection_id=ids, avatar_id=ids, end=st.booleans())
def test_encoding_is_protobufs(impl, frames, req_id, connection_id, avatar_id, end):
    data = impl.wire.encode_animation(
        frames, req_id=req_id, connection_id=connection_id, end=end, avatar_id=avatar_id
    )
    ref = protoref.build_animation(
        frames, req_id=req_id, connection_id=connection_id, end=end, avatar_id=avatar_id
    )
    assert data == ref.SerializeToString()


# ---------------------------------------------------------------------------
# Encoding variants made with protobuf; protobuf's parse is the reference.

FLAME_KNOWN = set(range(1, 8))


def flame_variant(draw, values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """One keyframe as protobuf-serialized chunks (each a Flame message with
    one field, packed or not), interleaved across fields in random order."""
    expected = values.copy()
    per_field: list[list[bytes]] = []
    start = 0
    for name, _, size in protoref.FLAME_FIELDS:
        chunk_vals = values[start : start + size]
        if draw(st.integers(0, 5)) == 0:  # absent: zeros
            expected[start : start + size] = 0
            per_field.append([])
            start += size
            continue
        cuts = sorted(draw(st.lists(st.integers(0, size), max_size=3)))
        bounds = [0, *cuts, size]
        chunks = []
        for lo, hi in zip(bounds, bounds[1:]):
            if lo == hi and draw(st.booleans()):
                continue  # an empty packed chunk is legal, but not needed
            packed = draw(st.booleans())
            msg = protoref.schema(packed).Flame()
            getattr(msg, name).extend(chunk_vals[lo:hi].tolist())
            chunks.append(msg.SerializeToString())
        per_field.append(chunks)
        start += size
    rnd = draw(st.randoms(use_true_random=False))
    order: list[bytes] = []
    queues = [list(c) for c in per_field]
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        order.append(q.pop(0))
    return sprinkle(draw, order, FLAME_KNOWN), expected


@st.composite
def animation_variant(draw):
    frames = draw(finite_frames)
    variants = [flame_variant(draw, row) for row in frames]
    kf_bytes = [kf for kf, _ in variants]
    expected = np.array([exp for _, exp in variants], np.float32).reshape(len(frames), 120)
    # keyframes spread over one or more ``animation`` fields (they merge)
    groups: list[list[bytes]] = [[]]
    for kf in kf_bytes:
        if groups[-1] and draw(st.booleans()):
            groups.append([])
        groups[-1].append(ld(1, kf))
    sra_parts = [ld(4, sprinkle(draw, g, {1})) for g in groups]
    if draw(st.booleans()):
        sra_parts.append(ld(4, b""))
    for fnum, kind in ((1, "s"), (2, "s"), (3, "b"), (5, "s")):
        for _ in range(draw(st.integers(0, 2))):  # repeated singular: last wins
            if kind == "s":
                sra_parts.append(ld(fnum, draw(ids).encode()))
            else:
                sra_parts.append(tag(fnum, 0) + varint(draw(st.integers(0, 2**64 - 1))))
    rnd = draw(st.randoms(use_true_random=False))
    # strings and bools may move anywhere; the animation parts keep their order,
    # and so do the envelope's field-6 occurrences: the keyframes stay in order
    anim_parts = [p for p in sra_parts if p[0] == 0x22]
    other = [p for p in sra_parts if p[0] != 0x22]
    rnd.shuffle(other)
    merged = anim_parts[:]
    for p in other:
        merged.insert(rnd.randint(0, len(merged)), p)
    # the ServerResponseAnimation itself split over several field-6 occurrences
    envelope_parts = []
    i = 0
    while i < len(merged):
        j = draw(st.integers(i + 1, len(merged)))
        envelope_parts.append(ld(6, sprinkle(draw, merged[i:j], set(range(1, 6)))))
        i = j
    if not envelope_parts or draw(st.booleans()):
        envelope_parts.insert(0, ld(6, b""))
    # decoy ``type`` values (the last one wins), then type 5 somewhere after them
    parts = envelope_parts[:]
    after = 0
    for t in draw(st.lists(st.integers(0, 7), max_size=2)):
        at = rnd.randint(0, len(parts))
        parts.insert(at, tag(1, 0) + varint(t))
        after = at + 1 if at >= after else after + 1
    parts.insert(rnd.randint(after, len(parts)), tag(1, 0) + b"\x05")
    return sprinkle(draw, parts, set(range(1, 9)) - {7}), expected


@settings(SETTINGS, max_examples=max(EXAMPLES * 2 // 5, 10))
@given(data=animation_variant())
def test_variants_decode_as_protobuf_parses_them(impl, data):
    data, expected = data
    ref = protoref.schema().Message()
    ref.ParseFromString(data)
    assert ref.type == 5
    ref_frames = protoref.frames_of(ref)
    m = impl.wire.decode_animation(data)
    sra = ref.server_response_animation
    assert (m.connection_id, m.req_id, m.end, m.avatar_id) == (
        sra.connection_id, sra.req_id, sra.end, sra.avatar_id,
    )  # fmt: skip
    assert np.array_equal(bits(m.frames), bits(ref_frames))
    assert np.array_equal(bits(m.frames), bits(expected))
    assert impl.wire.count_keyframes(data) == len(sra.animation.keyframes)


# ---------------------------------------------------------------------------
# The compiled codec and its twin agree, on everything.


def outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome
        return ("raised", type(exc), getattr(exc, "offset", None), str(exc))
    if hasattr(result, "frames"):
        return ("ok", type(result).__name__, result.type, result.connection_id, result.req_id,
                result.end, result.avatar_id, bits(result.frames).tobytes(),
                result.frames.shape)  # fmt: skip
    return ("ok", result)


def check_peek(w, data: bytes) -> None:
    """``peek_animation`` fails exactly where ``decode_message`` does, with
    the same error, and otherwise gives the header the full decode gives."""
    peeked = outcome(w.peek_animation, data)
    decoded = outcome(w.decode_message, data)
    if decoded[0] == "raised":
        assert peeked == decoded
        return
    msg = w.decode_message(data)
    if msg.type == 5:
        expected = (5, msg.req_id, msg.end, msg.frames.shape[0])
    else:
        expected = (msg.type, None, None, 0)
    assert peeked == ("ok", expected)


def check_agree(data: bytes) -> None:
    assert wire_c is not None
    check_peek(wire_c, data)
    check_peek(wire_py, data)
    for name in ("decode_animation", "count_keyframes", "decode_message", "peek_animation"):
        got_c = outcome(getattr(wire_c, name), data)
        got_py = outcome(getattr(wire_py, name), data)
        assert got_c == got_py, name
        if got_c[0] == "raised":
            assert issubclass(got_c[1], DecodeError), got_c
    out_c = np.full((120, 120), 7.0, np.float32)
    out_py = out_c.copy()
    got_c = outcome(wire_c.decode_animation_into, data, out_c, max_frames=150)
    got_py = outcome(wire_py.decode_animation_into, data, out_py, max_frames=150)
    assert got_c == got_py
    assert np.array_equal(bits(out_c), bits(out_py))


@pytest.fixture(scope="module")
def envelopes(recording):
    small = wire_py.decode_animation(recording.envelopes[0])
    short = wire_py.encode_animation(
        small.frames[:2], req_id=small.req_id, connection_id=small.connection_id, end=True
    )
    return [*recording.envelopes, short]


@needs_both
@SETTINGS
@given(data=st.data())
def test_truncations_agree(envelopes, data):
    env = data.draw(st.sampled_from(envelopes))
    cut = data.draw(st.integers(0, len(env) - 1))
    check_agree(env[:cut])
    if cut != 2:  # b"\x08\x05" alone is a valid empty animation
        with pytest.raises(DecodeError):
            wire_c.decode_animation(env[:cut])


@st.composite
def mutated(draw, envelopes):
    env = bytearray(draw(st.sampled_from(envelopes)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "delete", "insert", "duplicate", "structural"]))
        pos = draw(st.integers(0, len(env)))
        if kind == "set" and pos < len(env):
            env[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del env[pos : pos + draw(st.integers(1, 8))]
        elif kind == "insert":
            env[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "duplicate":
            n = draw(st.integers(1, 600))
            env[pos:pos] = env[pos : pos + n]
        else:
            # hit a tag or length byte: the bytes just before a keyframe body
            # or a Flame field header in the first keyframes
            structural = [0, 1, 2, 3, 4, 33, 34, 62, 63, 64, 65, 66, 67, 68, 69, 82, 83, 96, 97]
            at = draw(st.sampled_from(structural))
            if at < len(env):
                env[at] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x05, 0x08, 0x0B, 0x0C, 0x0D,
                                                0x0F, 0x10, 0x7F, 0x80, 0xFF]))  # fmt: skip
    return bytes(env)


@needs_both
@SETTINGS
@given(data=st.data())
def test_mutations_agree(envelopes, data):
    check_agree(data.draw(mutated(envelopes)))


@st.composite
def fuzz_message(draw, depth=0):
    """Protobuf-shaped bytes: fields with field numbers the schema knows (and
    some it does not), every wire type, nested messages and float runs."""
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        fnum = draw(st.sampled_from([1, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 1000]))
        wt = draw(st.sampled_from([0, 1, 2, 2, 2, 3, 4, 5, 6]))
        if wt == 0:
            parts.append(tag(fnum, 0) + varint(draw(st.integers(0, 2**64 - 1))))
        elif wt == 1:
            parts.append(tag(fnum, 1) + draw(st.binary(min_size=0, max_size=8)))
        elif wt == 5:
            parts.append(tag(fnum, 5) + draw(st.binary(min_size=0, max_size=4)))
        elif wt == 2:
            kind = draw(st.integers(0, 3))
            if kind == 0 and depth < 4:
                payload = draw(fuzz_message(depth + 1))
            elif kind == 1:
                payload = np.zeros(draw(st.sampled_from([0, 1, 2, 3, 6, 100, 101])), "<f4").tobytes()
            else:
                payload = draw(st.binary(max_size=12))
            length = len(payload) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
            parts.append(tag(fnum, 2) + varint(max(length, 0)) + payload)
        elif wt == 3:
            parts.append(tag(fnum, 3) + draw(fuzz_message(depth + 1)) + tag(fnum, 4))
        else:
            parts.append(tag(fnum, wt))
    return b"".join(parts)


@st.composite
def fuzz_envelope(draw):
    body = draw(fuzz_message())
    if draw(st.booleans()):
        kf = draw(fuzz_message(2))
        body = ld(6, ld(4, ld(1, kf)) + body)
    return tag(1, 0) + varint(draw(st.sampled_from([0, 1, 2, 3, 4, 5, 5, 5, 7, 9]))) + body


@needs_both
@SETTINGS
@given(data=fuzz_envelope())
def test_structured_fuzz_agrees(data):
    check_agree(data)


@SETTINGS
@given(data=st.data())
def test_peek_matches_the_full_decode(impl, envelopes, data):
    """On every implementation alone (also without the compiled module)."""
    kind = data.draw(st.sampled_from(["mutated", "fuzz", "truncated"]))
    if kind == "mutated":
        raw = data.draw(mutated(envelopes))
    elif kind == "fuzz":
        raw = data.draw(fuzz_envelope())
    else:
        env = data.draw(st.sampled_from(envelopes))
        raw = env[: data.draw(st.integers(0, len(env)))]
    check_peek(impl.wire, raw)


@needs_both
@SETTINGS
@given(data=st.binary(max_size=64))
def test_random_bytes_agree(data):
    check_agree(data)


@needs_both
@SETTINGS
@given(frames=bit_frames, req_id=ids, end=st.booleans())
def test_encoders_agree(frames, req_id, end):
    a = wire_c.encode_animation(frames, req_id=req_id, end=end)
    b = wire_py.encode_animation(frames, req_id=req_id, end=end)
    assert a == b
    assume(len(frames))
    check_agree(a)
