"""AvatarKit wire codec, pure-Python reference implementation.

Decodes and encodes the protobuf ``message.Message`` envelopes that the
AvatarKit server SDK exchanges, without the ``protobuf`` package.  The
compiled twin ``_wire_c`` has the same behaviour and takes its message types
from ``_wire_common``, as this module does; any change to the animation path
lands in both in the same commit.

Accepted input is every valid proto3 encoding of the schema below: fields in
any order, packed and unpacked (or mixed) repeated floats, unknown fields of
every wire type (groups included) skipped at every level, repeated singular
fields (the last scalar wins, messages merge), absent fields as defaults.
Stricter than ``protobuf`` on purpose: a known field with the wrong wire type,
a varint that overflows 64 bits, and a Flame field holding neither zero nor
exactly its slot's number of floats are errors, not unknown fields.

Schema (package ``message``)::

    Message: 1 type (MessageType), oneof data {
        2 ClientConfigureSession, 3 ServerConfirmSession, 4 ClientAudioInput,
        5 ServerError, 6 ServerResponseAnimation, 8 ClientInterrupt }
    ServerResponseAnimation: 1 connection_id, 2 req_id, 3 end, 4 animation, 5 avatar_id
    FlameAnimation: 1 repeated Flame keyframes
    Flame: 1..7 repeated float (3, 3, 3, 3, 6, 2, 100 floats)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._schema import (
    ANIMATION_FIELDS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_RATIO,
    FLAME_LAYOUT,
    KEYFRAME_BYTES,
    KEYFRAME_FLOATS,
    TYPE_MEMBER,
    MessageType,
)
from .errors import BufferFull
from ._wire_common import (
    KEYFRAME_WIRE_BYTES,
    SLOT_ZEROS as _SLOT_ZEROS,
    CAP,
    PACKED_LEN,
    PARTIAL,
    TOO_MANY,
    TRUNC_FLOAT,
    fail as _fail,
    not_animation as _not_animation,
    read_varint as _read_varint,
    read_tag as _read_tag,
    read_len as _read_len,
    skip_field as _skip_field,
    wrong_wire_type as _wrong_wire_type,
    read_string as _read_string,
    int32 as _int32,
    parse_fields as _parse_fields,
    MEMBER_CLASSES as _MEMBER_CLASSES,
    as_bytes as _as_bytes,
    check_max_frames as _check_max_frames,
    check_max_ratio as _check_max_ratio,
    check_ratio as _check_ratio,
    check_out as _check_out,
    len_field as _len_field,
    string_field as _string_field,
    KEYFRAME_TEMPLATE as _KEYFRAME_TEMPLATE,
    KEYFRAME_FLOAT_COLS as _KEYFRAME_FLOAT_COLS,
    as_frames as _as_frames,
    AgoraEgressConfig,
    AnimationHeader,
    AnimationMessage,
    ClientAudioInput,
    ClientConfigureSession,
    ClientInterrupt,
    LiveKitEgressConfig,
    Message,
    OtherMessage,
    ServerConfirmSession,
    ServerErrorMessage,
    TraceContext,
    encode_message_with,
)

__all__ = [
    "AgoraEgressConfig",
    "AnimationHeader",
    "AnimationMessage",
    "ClientAudioInput",
    "ClientConfigureSession",
    "ClientInterrupt",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_RATIO",
    "FLAME_LAYOUT",
    "KEYFRAME_FLOATS",
    "KEYFRAME_WIRE_BYTES",
    "LiveKitEgressConfig",
    "Message",
    "MessageType",
    "OtherMessage",
    "ServerConfirmSession",
    "ServerErrorMessage",
    "TraceContext",
    "count_keyframes",
    "decode_animation",
    "decode_animation_into",
    "decode_message",
    "encode_animation",
    "encode_message",
    "peek_animation",
]


# ---------------------------------------------------------------------------
# ServerResponseAnimation, FlameAnimation, Flame


class _Animation:
    """Merged state of the ``server_response_animation`` oneof member.

    ``rows`` collects the keyframes (480 little-endian bytes each) while they
    fit in ``room`` bytes, the ``max_ratio`` limit; past it, or when nothing
    is to be copied (``room`` None), they are only validated and counted, so
    that no input makes the parser hold more than the limit.
    """

    __slots__ = ("connection_id", "req_id", "end", "avatar_id", "n", "rows", "room")

    def __init__(self, room: float | None = None) -> None:
        self.connection_id = ""
        self.req_id = ""
        self.end = False
        self.avatar_id = ""
        self.n = 0
        self.rows: list[bytes] | None = [] if room is not None else None
        self.room = room


def _parse_flame(buf: bytes, pos: int, end: int, collect: bool = False) -> bytes | None:
    """Validates one keyframe; with ``collect``, returns it as 480
    little-endian bytes (absent fields are zeros)."""
    start = pos
    counts = [0] * 7
    parts: list[list[bytes]] | None = [[] for _ in range(7)] if collect else None
    while pos < end:
        tag_at = pos
        fnum, wt, pos = _read_tag(buf, pos, end)
        if not 1 <= fnum <= 7:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)
            continue
        slot = fnum - 1
        name, size = FLAME_LAYOUT[slot]
        if wt == 2:
            n, pos = _read_len(buf, pos, end)
            if n % 4:
                raise _fail(PACKED_LEN, tag_at, slot, n)
        elif wt == 5:
            if end - pos < 4:
                raise _fail(TRUNC_FLOAT, tag_at, slot)
            n = 4
        else:
            raise _wrong_wire_type(f"Flame.{name}", 2, wt, tag_at)
        if counts[slot] + n // 4 > size:
            raise _fail(TOO_MANY, tag_at, slot)
        counts[slot] += n // 4
        if parts is not None:
            parts[slot].append(buf[pos : pos + n])
        pos += n
    for slot, (name, size) in enumerate(FLAME_LAYOUT):
        if counts[slot] not in (0, size):
            raise _fail(PARTIAL, start, slot, counts[slot])
    if parts is None:
        return None
    return b"".join(b"".join(parts[s]) if counts[s] else _SLOT_ZEROS[s] for s in range(7))


def _parse_flame_animation(
    buf: bytes, pos: int, end: int, state: _Animation, max_frames: int
) -> None:
    while pos < end:
        tag_at = pos
        fnum, wt, pos = _read_tag(buf, pos, end)
        if fnum == 1:
            if wt != 2:
                raise _wrong_wire_type("FlameAnimation.keyframes", 2, wt, tag_at)
            n, pos = _read_len(buf, pos, end)
            if state.n >= max_frames:
                raise _fail(CAP, tag_at, max_frames)
            if state.rows is not None and (state.n + 1) * KEYFRAME_BYTES <= state.room:
                state.rows.append(_parse_flame(buf, pos, pos + n, True))  # type: ignore[arg-type]
            else:
                state.rows = None  # past the ratio limit: the decode will refuse it
                _parse_flame(buf, pos, pos + n)
            state.n += 1
            pos += n
        else:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)


def _parse_animation(buf: bytes, pos: int, end: int, state: _Animation, max_frames: int) -> None:
    while pos < end:
        tag_at = pos
        fnum, wt, pos = _read_tag(buf, pos, end)
        if fnum in (1, 2, 5):
            name = ANIMATION_FIELDS[fnum - 1]
            if wt != 2:
                raise _wrong_wire_type(f"ServerResponseAnimation.{name}", 2, wt, tag_at)
            value, pos = _read_string(buf, pos, end, f"ServerResponseAnimation.{name}")
            setattr(state, name, value)
        elif fnum == 3:
            if wt != 0:
                raise _wrong_wire_type("ServerResponseAnimation.end", 0, wt, tag_at)
            v, pos = _read_varint(buf, pos, end)
            state.end = v != 0
        elif fnum == 4:
            if wt != 2:
                raise _wrong_wire_type("ServerResponseAnimation.animation", 2, wt, tag_at)
            n, pos = _read_len(buf, pos, end)
            _parse_flame_animation(buf, pos, pos + n, state, max_frames)
            pos += n
        else:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)


def _parse_envelope(buf: bytes, max_frames: int, room: float | None) -> tuple[int, int, Any]:
    """Validates the whole envelope; returns (type, oneof field, member state).
    An animation member collects its keyframes within ``room`` bytes (none
    if None).

    Every oneof member present is parsed (and must be valid); a member of a
    different field replaces the current one, as protobuf's oneof does.
    """
    pos, end = 0, len(buf)
    mtype = 0
    member = 0
    state: Any = None
    while pos < end:
        tag_at = pos
        fnum, wt, pos = _read_tag(buf, pos, end)
        if fnum == 1:
            if wt != 0:
                raise _wrong_wire_type("Message.type", 0, wt, tag_at)
            v, pos = _read_varint(buf, pos, end)
            mtype = _int32(v)
        elif fnum in (2, 3, 4, 5, 6, 8):
            if wt != 2:
                raise _wrong_wire_type(f"Message field {fnum}", 2, wt, tag_at)
            n, pos = _read_len(buf, pos, end)
            if fnum != member:
                member = fnum
                state = _Animation(room) if fnum == 6 else _MEMBER_CLASSES[fnum]()
            if fnum == 6:
                _parse_animation(buf, pos, pos + n, state, max_frames)
            else:
                _parse_fields(buf, pos, pos + n, state, 0)
            pos += n
        else:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)
    return mtype, member, state


def _parse_animation_envelope(
    buf: bytes, max_frames: int, max_ratio: Any, collect: bool
) -> _Animation:
    max_ratio = _check_max_ratio(max_ratio)
    room = max_ratio * len(buf) if collect else None
    mtype, member, state = _parse_envelope(buf, _check_max_frames(max_frames), room)
    if mtype != MessageType.SERVER_RESPONSE_ANIMATION:
        raise _not_animation(mtype)
    if member != 6:
        return _Animation(0.0)
    _check_ratio(state.n, len(buf), max_ratio)
    return state


def _rows_of(state: _Animation) -> bytes:
    # Only an animation within the ratio limit is copied: its rows are all there.
    assert state.rows is not None and len(state.rows) == state.n
    return b"".join(state.rows)


def _frames_of(state: _Animation) -> np.ndarray:
    flat = np.frombuffer(_rows_of(state), dtype="<f4")
    return flat.astype(np.float32).reshape(state.n, KEYFRAME_FLOATS)


def _message_of(state: _Animation, frames: np.ndarray) -> AnimationMessage:
    return AnimationMessage(
        5,
        state.connection_id,
        state.req_id,
        state.end,
        state.avatar_id,
        frames,
    )


def decode_animation(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES, max_ratio: float = DEFAULT_MAX_RATIO) -> AnimationMessage:
    """Decodes an animation envelope (type 5) from any bytes-like object.

    Raises DecodeError for malformed input, another message type, more
    than ``max_frames`` keyframes, or keyframes whose decoded bytes
    (``480 * n``) would pass ``max_ratio`` times the input's bytes (default
    8: a real envelope decodes to 0.96 times its size; ``math.inf`` for no
    limit).  The limits are checked before anything is copied.
    """
    buf = _as_bytes(data)
    state = _parse_animation_envelope(buf, max_frames, max_ratio, True)
    return _message_of(state, _frames_of(state))


def decode_animation_into(
    data: Any, out: np.ndarray, *, max_frames: int = DEFAULT_MAX_FRAMES, max_ratio: float = DEFAULT_MAX_RATIO
) -> AnimationMessage:
    """Like :func:`decode_animation`, but writes the n keyframes to ``out[:n]``
    and returns a message whose ``frames`` is that view.

    Raises BufferFull (and leaves ``out`` untouched) if n > len(out); ``out``
    is also untouched when DecodeError is raised.
    """
    _check_out(out)
    buf = _as_bytes(data)
    state = _parse_animation_envelope(buf, max_frames, max_ratio, True)
    n = state.n
    if n > out.shape[0]:
        raise BufferFull(f"{n} keyframes do not fit in an output of {out.shape[0]} rows")
    frames = out[:n]
    if n:
        frames[...] = np.frombuffer(_rows_of(state), dtype="<f4").reshape(n, KEYFRAME_FLOATS)
    return _message_of(state, frames)


def count_keyframes(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES, max_ratio: float = DEFAULT_MAX_RATIO) -> int:
    """Validates an animation envelope exactly as :func:`decode_animation`
    does and returns its number of keyframes."""
    return _parse_animation_envelope(_as_bytes(data), max_frames, max_ratio, False).n


def peek_animation(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES, max_ratio: float = DEFAULT_MAX_RATIO) -> AnimationHeader:
    """The header of any envelope, validated but with no keyframe copied.

    Accepts exactly the inputs :func:`decode_message` accepts (with the same
    ``max_frames`` and ``max_ratio``) and raises the same DecodeError for the others, so a
    successful peek means the envelope decodes.  Returns an
    :class:`AnimationHeader`: for an animation envelope (type 5) its
    ``req_id``, ``end`` and keyframe count, as :func:`decode_animation` would
    give them; for any other type, that type with ``req_id`` and ``end`` None
    and ``n_keyframes`` 0.
    """
    buf = _as_bytes(data)
    max_ratio = _check_max_ratio(max_ratio)
    mtype, member, state = _parse_envelope(buf, _check_max_frames(max_frames), None)
    if mtype != MessageType.SERVER_RESPONSE_ANIMATION:
        return AnimationHeader(mtype, None, None, 0)
    if member != 6:
        return AnimationHeader(5, "", False, 0)
    _check_ratio(state.n, len(buf), max_ratio)
    return AnimationHeader(5, state.req_id, state.end, state.n)


def decode_message(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES, max_ratio: float = DEFAULT_MAX_RATIO) -> Message:
    """Decodes any envelope, dispatching on ``Message.type`` as the server SDK
    does: the dataclass for types 1, 2, 3, 4, 5, 7 (defaults if the oneof holds
    another member) and :class:`OtherMessage` for any other type.  Raises
    DecodeError for malformed bytes and, for an animation, past ``max_frames``
    or ``max_ratio`` (see :func:`decode_animation`)."""
    buf = _as_bytes(data)
    max_ratio = _check_max_ratio(max_ratio)
    mtype, member, state = _parse_envelope(
        buf, _check_max_frames(max_frames), max_ratio * len(buf)
    )
    want = TYPE_MEMBER.get(mtype)
    if want is None:
        return OtherMessage(mtype)
    if want == 6:
        anim = state if member == 6 else _Animation(0.0)
        _check_ratio(anim.n, len(buf), max_ratio)
        return _message_of(anim, _frames_of(anim))
    return state if member == want else _MEMBER_CLASSES[want]()


def encode_animation(
    frames: Any,
    *,
    req_id: str,
    connection_id: str = "",
    end: bool = False,
    avatar_id: str = "",
) -> bytes:
    """Encodes an animation envelope in the canonical form the server emits:
    fields in number order, every Flame field packed and full, empty strings
    and ``end=False`` omitted, the ``animation`` field always present."""
    arr = _as_frames(frames)
    n = arr.shape[0]
    rows = np.empty((n, KEYFRAME_WIRE_BYTES), dtype=np.uint8)
    rows[:] = np.frombuffer(_KEYFRAME_TEMPLATE, dtype=np.uint8)
    rows[:, _KEYFRAME_FLOAT_COLS] = arr.view(np.uint8).reshape(n, 4 * KEYFRAME_FLOATS)
    animation = rows.tobytes()
    body = (
        _string_field(1, connection_id, "connection_id")
        + _string_field(2, req_id, "req_id")
        + (b"\x18\x01" if end else b"")
        + _len_field(4, animation)
        + _string_field(5, avatar_id, "avatar_id")
    )
    return b"\x08\x05" + _len_field(6, body)



def encode_message(msg: Message) -> bytes:
    """Encodes any message dataclass as an envelope: ``type`` (omitted when 0)
    then the oneof member for the message's class (always present; none for
    :class:`OtherMessage`).  Maps are written in insertion order."""
    return encode_message_with(msg, encode_animation)
