"""AvatarKit wire codec, pure-Python reference implementation.

Decodes and encodes the protobuf ``message.Message`` envelopes that the
AvatarKit server SDK exchanges, without the ``protobuf`` package.  The
compiled twin ``_wire_c`` has the same behaviour and takes its message types
from here; any change to the animation path lands in both in the same commit.

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

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from .errors import BufferFull, DecodeError, EncodeError

__all__ = [
    "AgoraEgressConfig",
    "AnimationHeader",
    "AnimationMessage",
    "ClientAudioInput",
    "ClientConfigureSession",
    "ClientInterrupt",
    "DEFAULT_MAX_FRAMES",
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
# Constants

#: Flame fields in wire order: (name, number of float32 values).
FLAME_LAYOUT: tuple[tuple[str, int], ...] = (
    ("translation", 3),
    ("rotation", 3),
    ("neck_pose", 3),
    ("jaw_pose", 3),
    ("eye_pose", 6),
    ("eye_lid", 2),
    ("expression", 100),
)
#: Floats per keyframe (one row of ``AnimationMessage.frames``).
KEYFRAME_FLOATS = 120
#: Default cap on keyframes in one envelope (a real envelope holds <= 100).
DEFAULT_MAX_FRAMES = 100_000

_SLOT_SIZES = tuple(size for _, size in FLAME_LAYOUT)
_SLOT_OFFSETS = tuple(sum(_SLOT_SIZES[:i]) for i in range(len(_SLOT_SIZES)))
_SLOT_ZEROS = tuple(bytes(4 * size) for size in _SLOT_SIZES)
# Unknown groups may nest; deeper than this is treated as an attack.
_MAX_DEPTH = 64

assert sum(_SLOT_SIZES) == KEYFRAME_FLOATS


class MessageType(enum.IntEnum):
    """``Message.type``.  Decoded messages carry a plain ``int`` (proto3 enums
    are open), which compares equal to these members."""

    UNSPECIFIED = 0
    CLIENT_CONFIGURE_SESSION = 1
    SERVER_CONFIRM_SESSION = 2
    CLIENT_AUDIO_INPUT = 3
    SERVER_ERROR = 4
    SERVER_RESPONSE_ANIMATION = 5
    CLIENT_INTERRUPT = 7


# ---------------------------------------------------------------------------
# Message types


def _empty_frames() -> np.ndarray:
    return np.zeros((0, KEYFRAME_FLOATS), dtype=np.float32)


@dataclass(eq=False)
class AnimationMessage:
    """A ``ServerResponseAnimation`` envelope; ``frames`` is a C-contiguous
    float32 array of shape (n, 120) in Flame field order."""

    type: int = 5  # MessageType.SERVER_RESPONSE_ANIMATION
    connection_id: str = ""
    req_id: str = ""
    end: bool = False
    avatar_id: str = ""
    frames: np.ndarray = field(default_factory=_empty_frames)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnimationMessage):
            return NotImplemented
        return (
            (self.type, self.connection_id, self.req_id, self.end, self.avatar_id)
            == (other.type, other.connection_id, other.req_id, other.end, other.avatar_id)
            and self.frames.shape == other.frames.shape
            # Bitwise, so that NaN payloads and -0.0 compare as encoded.
            and bytes(np.ascontiguousarray(self.frames, dtype=np.float32).data)
            == bytes(np.ascontiguousarray(other.frames, dtype=np.float32).data)
        )

    __hash__ = None  # type: ignore[assignment]


class AnimationHeader(NamedTuple):
    """What :func:`peek_animation` reads of an envelope without decoding its
    keyframes: ``type`` (``Message.type``); for an animation envelope (type 5)
    its ``req_id`` (str), ``end`` (bool) and ``n_keyframes``; for any other
    type ``req_id`` and ``end`` are None and ``n_keyframes`` is 0."""

    type: int
    req_id: Optional[str]
    end: Optional[bool]
    n_keyframes: int


@dataclass
class ServerErrorMessage:
    """A ``ServerError`` envelope (type 4)."""

    type: int = 4  # MessageType.SERVER_ERROR
    connection_id: str = ""
    req_id: str = ""
    code: int = 0
    message: str = ""


@dataclass
class ServerConfirmSession:
    """The server's handshake reply (type 2)."""

    type: int = 2  # MessageType.SERVER_CONFIRM_SESSION
    connection_id: str = ""


@dataclass
class ClientInterrupt:
    """The client cancels a request (type 7)."""

    type: int = 7  # MessageType.CLIENT_INTERRUPT
    req_id: str = ""


@dataclass
class TraceContext:
    """W3C trace context carried by ``ClientAudioInput``."""

    traceparent: str = ""
    tracestate: str = ""


@dataclass
class ClientAudioInput:
    """A chunk of the client's speech audio (type 3)."""

    type: int = 3  # MessageType.CLIENT_AUDIO_INPUT
    req_id: str = ""
    end: bool = False
    audio: bytes = b""
    trace_context: TraceContext | None = None


@dataclass
class LiveKitEgressConfig:
    url: str = ""
    api_key: str = ""
    api_secret: str = ""
    room_name: str = ""
    publisher_id: str = ""
    extra_attributes: dict[str, str] = field(default_factory=dict)
    idle_timeout: int = 0
    api_token: str = ""


@dataclass
class AgoraEgressConfig:
    channel_name: str = ""
    token: str = ""
    uid: int = 0
    publisher_id: str = ""


@dataclass
class ClientConfigureSession:
    """The client's handshake request (type 1).  ``audio_format``: 0 PCM
    s16le, 1 Ogg Opus; ``egress_type``: 0 none, 1 LiveKit, 2 Agora."""

    type: int = 1  # MessageType.CLIENT_CONFIGURE_SESSION
    sample_rate: int = 0
    bitrate: int = 0
    audio_format: int = 0
    transport_compression: int = 0
    egress_type: int = 0
    livekit_egress: LiveKitEgressConfig | None = None
    agora_egress: AgoraEgressConfig | None = None
    extra_params: dict[str, str] = field(default_factory=dict)


@dataclass
class OtherMessage:
    """An envelope of a type this codec does not model (e.g. 0 or 6)."""

    type: int


Message = Union[
    AnimationMessage,
    ServerErrorMessage,
    ServerConfirmSession,
    ClientInterrupt,
    ClientAudioInput,
    ClientConfigureSession,
    OtherMessage,
]

# ---------------------------------------------------------------------------
# The bounded cursor: every read is checked against ``end`` (the end of the
# enclosing message) before it happens.  ``buf`` is always ``bytes``.


def _error(problem: str, offset: int) -> DecodeError:
    return DecodeError(f"{problem} at byte {offset}", offset)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _error("truncated varint", start)
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:
            raise _error("varint longer than 10 bytes or overflowing 64 bits", start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _read_tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    start = pos
    tag, pos = _read_varint(buf, pos, end)
    if tag > 0xFFFFFFFF:
        raise _error(f"field tag {tag} overflows 32 bits", start)
    if tag >> 3 == 0:
        raise _error("field number 0", start)
    return tag >> 3, tag & 7, pos


def _read_len(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    n, pos = _read_varint(buf, pos, end)
    if n > end - pos:
        raise _error(f"length {n} runs past the end of its message ({end - pos} bytes left)", start)
    return n, pos


def _skip_field(buf: bytes, pos: int, end: int, fnum: int, wt: int, tag_at: int, depth: int) -> int:
    """Skips the value of an unknown field; returns the position after it."""
    if wt == 0:
        return _read_varint(buf, pos, end)[1]
    if wt == 1 or wt == 5:
        size = 8 if wt == 1 else 4
        if end - pos < size:
            raise _error(f"truncated fixed{size * 8} field {fnum}", tag_at)
        return pos + size
    if wt == 2:
        n, pos = _read_len(buf, pos, end)
        return pos + n
    if wt == 3:
        if depth >= _MAX_DEPTH:
            raise _error(f"groups nested deeper than {_MAX_DEPTH}", tag_at)
        while True:
            if pos >= end:
                raise _error(f"unterminated group {fnum}", tag_at)
            inner_at = pos
            inner, iwt, pos = _read_tag(buf, pos, end)
            if iwt == 4:
                if inner != fnum:
                    raise _error(f"end of group {inner} inside group {fnum}", inner_at)
                return pos
            pos = _skip_field(buf, pos, end, inner, iwt, inner_at, depth + 1)
    if wt == 4:
        raise _error(f"end of group {fnum} without a start", tag_at)
    raise _error(f"invalid wire type {wt} for field {fnum}", tag_at)


_WIRE_NAMES = ("varint", "fixed64", "length-delimited", "start-group", "end-group", "fixed32")


def _wrong_wire_type(what: str, expected: int, wt: int, tag_at: int) -> DecodeError:
    found = _WIRE_NAMES[wt] if wt < len(_WIRE_NAMES) else f"invalid ({wt})"
    return _error(f"{what}: expected wire type {_WIRE_NAMES[expected]}, found {found}", tag_at)


def _read_string(buf: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    n, pos = _read_len(buf, pos, end)
    try:
        return buf[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise _error(f"{what} is not valid UTF-8", pos + exc.start) from None


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# ---------------------------------------------------------------------------
# ServerResponseAnimation, FlameAnimation, Flame


class _Animation:
    """Merged state of the ``server_response_animation`` oneof member, after
    the validating pass: the keyframes are counted, not yet copied."""

    __slots__ = ("connection_id", "req_id", "end", "avatar_id", "n", "eff_start")

    def __init__(self, eff_start: int = 0) -> None:
        self.connection_id = ""
        self.req_id = ""
        self.end = False
        self.avatar_id = ""
        self.n = 0  # keyframes counted so far
        self.eff_start = eff_start  # offset of this member's first occurrence


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
                raise _error(f"Flame.{name}: packed length {n} is not a multiple of 4", tag_at)
        elif wt == 5:
            if end - pos < 4:
                raise _error(f"Flame.{name}: truncated float", tag_at)
            n = 4
        else:
            raise _wrong_wire_type(f"Flame.{name}", 2, wt, tag_at)
        if counts[slot] + n // 4 > size:
            raise _error(f"Flame.{name}: more than {size} floats", tag_at)
        counts[slot] += n // 4
        if parts is not None:
            parts[slot].append(buf[pos : pos + n])
        pos += n
    for slot, (name, size) in enumerate(FLAME_LAYOUT):
        if counts[slot] not in (0, size):
            raise _error(f"Flame.{name}: {counts[slot]} floats, expected {size} or none", start)
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
                raise _error(f"more than {max_frames} keyframes (the configured cap)", tag_at)
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
            name = ("connection_id", "req_id", "", "", "avatar_id")[fnum - 1]
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


def _fill_rows(buf: bytes, state: _Animation) -> bytes:
    """The second pass over an envelope the first accepted: the ``state.n``
    keyframes of its current animation member as little-endian bytes.  From
    ``eff_start`` on, every oneof field of the envelope is that member."""
    rows: list[bytes] = []
    pos, end = state.eff_start, len(buf)
    while pos < end and len(rows) < state.n:
        tag_at = pos
        fnum, wt, pos = _read_tag(buf, pos, end)
        if fnum != 6 or wt != 2:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)
            continue
        n, pos = _read_len(buf, pos, end)
        sub_end = pos + n
        while pos < sub_end:
            tag_at = pos
            fnum, wt, pos = _read_tag(buf, pos, sub_end)
            if fnum != 4 or wt != 2:
                pos = _skip_field(buf, pos, sub_end, fnum, wt, tag_at, 0)
                continue
            n, pos = _read_len(buf, pos, sub_end)
            anim_end = pos + n
            while pos < anim_end:
                tag_at = pos
                fnum, wt, pos = _read_tag(buf, pos, anim_end)
                if fnum != 1 or wt != 2:
                    pos = _skip_field(buf, pos, anim_end, fnum, wt, tag_at, 0)
                    continue
                n, pos = _read_len(buf, pos, anim_end)
                rows.append(_parse_flame(buf, pos, pos + n, True))  # type: ignore[arg-type]
                pos += n
        pos = sub_end
    assert len(rows) == state.n
    return b"".join(rows)


# ---------------------------------------------------------------------------
# Control messages: a small table-driven codec (they are not hot).
# A schema maps field number -> (attribute, kind); kinds are "string",
# "bytes", "int32", "uint32", "bool", a dataclass (a message field) or
# ("map", ) for map<string, string>.

_MAP = ("map",)

_SCHEMAS: dict[type, dict[int, tuple[str, Any]]] = {
    TraceContext: {1: ("traceparent", "string"), 2: ("tracestate", "string")},
    LiveKitEgressConfig: {
        1: ("url", "string"),
        2: ("api_key", "string"),
        3: ("api_secret", "string"),
        4: ("room_name", "string"),
        5: ("publisher_id", "string"),
        6: ("extra_attributes", _MAP),
        7: ("idle_timeout", "int32"),
        8: ("api_token", "string"),
    },
    AgoraEgressConfig: {
        1: ("channel_name", "string"),
        2: ("token", "string"),
        3: ("uid", "uint32"),
        4: ("publisher_id", "string"),
    },
    ClientConfigureSession: {
        1: ("sample_rate", "int32"),
        2: ("bitrate", "int32"),
        3: ("audio_format", "int32"),
        4: ("transport_compression", "int32"),
        5: ("egress_type", "int32"),
        6: ("livekit_egress", LiveKitEgressConfig),
        7: ("agora_egress", AgoraEgressConfig),
        8: ("extra_params", _MAP),
    },
    ServerConfirmSession: {1: ("connection_id", "string")},
    ClientAudioInput: {
        1: ("req_id", "string"),
        2: ("end", "bool"),
        3: ("audio", "bytes"),
        4: ("trace_context", TraceContext),
    },
    ServerErrorMessage: {
        1: ("connection_id", "string"),
        2: ("req_id", "string"),
        3: ("code", "int32"),
        4: ("message", "string"),
    },
    ClientInterrupt: {1: ("req_id", "string")},
}

_VARINT_KINDS = ("int32", "uint32", "bool")


def _parse_fields(buf: bytes, pos: int, end: int, obj: Any, depth: int) -> None:
    """Merges the fields in ``buf[pos:end]`` into ``obj`` (protobuf merge rules)."""
    schema = _SCHEMAS[type(obj)]
    cls_name = type(obj).__name__
    while pos < end:
        tag_at = pos
        fnum, wt, pos = _read_tag(buf, pos, end)
        spec = schema.get(fnum)
        if spec is None:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)
            continue
        name, kind = spec
        what = f"{cls_name}.{name}"
        if kind in _VARINT_KINDS:
            if wt != 0:
                raise _wrong_wire_type(what, 0, wt, tag_at)
            v, pos = _read_varint(buf, pos, end)
            value: Any = (
                _int32(v) if kind == "int32" else v & 0xFFFFFFFF if kind == "uint32" else v != 0
            )
            setattr(obj, name, value)
            continue
        if wt != 2:
            raise _wrong_wire_type(what, 2, wt, tag_at)
        if kind == "string":
            value, pos = _read_string(buf, pos, end, what)
            setattr(obj, name, value)
            continue
        n, pos = _read_len(buf, pos, end)
        sub_end = pos + n
        if kind == "bytes":
            setattr(obj, name, buf[pos:sub_end])
        elif kind is _MAP:
            key, val = "", ""
            while pos < sub_end:
                e_at = pos
                efnum, ewt, pos = _read_tag(buf, pos, sub_end)
                if efnum in (1, 2):
                    if ewt != 2:
                        raise _wrong_wire_type(f"{what} entry", 2, ewt, e_at)
                    s, pos = _read_string(buf, pos, sub_end, f"{what} entry")
                    if efnum == 1:
                        key = s
                    else:
                        val = s
                else:
                    pos = _skip_field(buf, pos, sub_end, efnum, ewt, e_at, 0)
            getattr(obj, name)[key] = val
        else:
            if depth >= _MAX_DEPTH:
                raise _error("messages nested too deeply", tag_at)
            sub = getattr(obj, name)
            if sub is None:
                sub = kind()
                setattr(obj, name, sub)
            _parse_fields(buf, pos, sub_end, sub, depth + 1)
        pos = sub_end


# ---------------------------------------------------------------------------
# The envelope

_MEMBER_CLASSES: dict[int, type] = {
    2: ClientConfigureSession,
    3: ServerConfirmSession,
    4: ClientAudioInput,
    5: ServerErrorMessage,
    8: ClientInterrupt,
}
_MEMBER_FIELDS = {cls: fnum for fnum, cls in _MEMBER_CLASSES.items()}
_MEMBER_FIELDS[AnimationMessage] = 6
_TYPE_MEMBER = {1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 7: 8}


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"expected a bytes-like object, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise TypeError("expected a C-contiguous bytes-like object")
    return view.tobytes()


def _check_max_frames(max_frames: int) -> int:
    max_frames = int(max_frames)
    if max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    return max_frames


def _parse_envelope(buf: bytes, max_frames: int) -> tuple[int, int, Any]:
    """Validates the whole envelope; returns (type, oneof field, member state).

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
                state = _Animation(tag_at) if fnum == 6 else _MEMBER_CLASSES[fnum]()
            if fnum == 6:
                _parse_animation(buf, pos, pos + n, state, max_frames)
            else:
                _parse_fields(buf, pos, pos + n, state, 0)
            pos += n
        else:
            pos = _skip_field(buf, pos, end, fnum, wt, tag_at, 0)
    return mtype, member, state


def _parse_animation_envelope(buf: bytes, max_frames: int) -> _Animation:
    mtype, member, state = _parse_envelope(buf, _check_max_frames(max_frames))
    if mtype != MessageType.SERVER_RESPONSE_ANIMATION:
        raise _error(f"expected an animation envelope (type 5), found type {mtype}", 0)
    return state if member == 6 else _Animation()


def _frames_of(buf: bytes, state: _Animation) -> np.ndarray:
    flat = np.frombuffer(_fill_rows(buf, state), dtype="<f4")
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


def decode_animation(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES) -> AnimationMessage:
    """Decodes an animation envelope (type 5) from any bytes-like object.

    Raises DecodeError for malformed input, another message type, or more
    than ``max_frames`` keyframes.
    """
    buf = _as_bytes(data)
    state = _parse_animation_envelope(buf, max_frames)
    return _message_of(state, _frames_of(buf, state))


def _check_out(out: Any) -> None:
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float32
        and out.ndim == 2
        and out.shape[1] == KEYFRAME_FLOATS
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError("out must be a writable C-contiguous float32 array of shape (m, 120)")


def decode_animation_into(
    data: Any, out: np.ndarray, *, max_frames: int = DEFAULT_MAX_FRAMES
) -> AnimationMessage:
    """Like :func:`decode_animation`, but writes the n keyframes to ``out[:n]``
    and returns a message whose ``frames`` is that view.

    Raises BufferFull (and leaves ``out`` untouched) if n > len(out); ``out``
    is also untouched when DecodeError is raised.
    """
    _check_out(out)
    buf = _as_bytes(data)
    state = _parse_animation_envelope(buf, max_frames)
    n = state.n
    if n > out.shape[0]:
        raise BufferFull(f"{n} keyframes do not fit in an output of {out.shape[0]} rows")
    frames = out[:n]
    if n:
        frames[...] = np.frombuffer(_fill_rows(buf, state), dtype="<f4").reshape(n, KEYFRAME_FLOATS)
    return _message_of(state, frames)


def count_keyframes(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES) -> int:
    """Validates an animation envelope exactly as :func:`decode_animation`
    does and returns its number of keyframes."""
    return _parse_animation_envelope(_as_bytes(data), max_frames).n


def peek_animation(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES) -> AnimationHeader:
    """The header of any envelope, validated but with no keyframe copied.

    Accepts exactly the inputs :func:`decode_message` accepts (with the same
    ``max_frames``) and raises the same DecodeError for the others, so a
    successful peek means the envelope decodes.  Returns an
    :class:`AnimationHeader`: for an animation envelope (type 5) its
    ``req_id``, ``end`` and keyframe count, as :func:`decode_animation` would
    give them; for any other type, that type with ``req_id`` and ``end`` None
    and ``n_keyframes`` 0.
    """
    buf = _as_bytes(data)
    mtype, member, state = _parse_envelope(buf, _check_max_frames(max_frames))
    if mtype != MessageType.SERVER_RESPONSE_ANIMATION:
        return AnimationHeader(mtype, None, None, 0)
    if member != 6:
        return AnimationHeader(5, "", False, 0)
    return AnimationHeader(5, state.req_id, state.end, state.n)


def decode_message(data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES) -> Message:
    """Decodes any envelope, dispatching on ``Message.type`` as the server SDK
    does: the dataclass for types 1, 2, 3, 4, 5, 7 (defaults if the oneof holds
    another member) and :class:`OtherMessage` for any other type.  Raises
    DecodeError only for malformed bytes."""
    buf = _as_bytes(data)
    mtype, member, state = _parse_envelope(buf, _check_max_frames(max_frames))
    want = _TYPE_MEMBER.get(mtype)
    if want is None:
        return OtherMessage(mtype)
    if want == 6:
        anim = state if member == 6 else _Animation()
        return _message_of(anim, _frames_of(buf, anim))
    return state if member == want else _MEMBER_CLASSES[want]()


# ---------------------------------------------------------------------------
# Encoding


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _len_field(fnum: int, payload: bytes) -> bytes:
    return _varint(fnum << 3 | 2) + _varint(len(payload)) + payload


def _utf8(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"{what} must be a str, got {type(value).__name__}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} cannot be encoded as UTF-8: {exc.reason}") from None


def _string_field(fnum: int, value: Any, what: str) -> bytes:
    raw = _utf8(value, what)
    return _len_field(fnum, raw) if raw else b""


def _keyframe_template() -> tuple[bytes, np.ndarray]:
    """Bytes of one canonical keyframe field (floats zero) and the byte
    positions of its 480 float bytes."""
    body = bytearray()
    float_cols: list[int] = []
    for slot, size in enumerate(_SLOT_SIZES):
        body += _varint((slot + 1) << 3 | 2) + _varint(4 * size)
        float_cols.extend(range(len(body), len(body) + 4 * size))
        body += bytes(4 * size)
    head = b"\x0a" + _varint(len(body))
    return head + bytes(body), np.asarray(float_cols, dtype=np.intp) + len(head)


_KEYFRAME_TEMPLATE, _KEYFRAME_FLOAT_COLS = _keyframe_template()
#: Bytes one keyframe takes in canonical form (498).
KEYFRAME_WIRE_BYTES = len(_KEYFRAME_TEMPLATE)


def _as_frames(frames: Any) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 2 or arr.shape[1] != KEYFRAME_FLOATS:
        raise EncodeError(f"frames must have shape (n, {KEYFRAME_FLOATS}), got {arr.shape}")
    if arr.dtype.kind != "f":
        raise EncodeError(f"frames must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype="<f4")


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


def _encode_fields(obj: Any) -> bytes:
    schema = _SCHEMAS[type(obj)]
    out = bytearray()
    for fnum in sorted(schema):
        name, kind = schema[fnum]
        value = getattr(obj, name)
        what = f"{type(obj).__name__}.{name}"
        if kind in _VARINT_KINDS:
            if isinstance(value, float) or not isinstance(value, (int, np.integer)):
                raise EncodeError(f"{what} must be an int, got {type(value).__name__}")
            value = int(value)
            if kind == "int32" and not -(1 << 31) <= value < 1 << 31:
                raise EncodeError(f"{what} = {value} is out of int32 range")
            if kind == "uint32" and not 0 <= value < 1 << 32:
                raise EncodeError(f"{what} = {value} is out of uint32 range")
            if value:
                out += _varint(fnum << 3) + _varint(1 if kind == "bool" else value)
        elif kind == "string":
            out += _string_field(fnum, value, what)
        elif kind == "bytes":
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise EncodeError(f"{what} must be bytes, got {type(value).__name__}")
            if len(value):
                out += _len_field(fnum, bytes(value))
        elif kind is _MAP:
            for key, val in value.items():
                entry = _string_field(1, key, f"{what} key") + _string_field(2, val, f"{what} value")
                out += _len_field(fnum, entry)
        elif value is not None:
            if not isinstance(value, kind):
                raise EncodeError(f"{what} must be a {kind.__name__}, got {type(value).__name__}")
            out += _len_field(fnum, _encode_fields(value))
    return bytes(out)


def encode_message(msg: Message) -> bytes:
    """Encodes any message dataclass as an envelope: ``type`` (omitted when 0)
    then the oneof member for the message's class (always present; none for
    :class:`OtherMessage`).  Maps are written in insertion order."""
    mtype = getattr(msg, "type", None)
    if isinstance(mtype, bool) or not isinstance(mtype, int) or not -(1 << 31) <= mtype < 1 << 31:
        raise EncodeError(f"message type must be an int32, got {mtype!r}")
    head = _varint(8) + _varint(mtype) if mtype else b""
    if isinstance(msg, AnimationMessage):
        anim = encode_animation(
            msg.frames,
            req_id=msg.req_id,
            connection_id=msg.connection_id,
            end=msg.end,
            avatar_id=msg.avatar_id,
        )
        return head + anim[2:]  # drop the canonical "type 5" header
    if isinstance(msg, OtherMessage):
        return head
    fnum = _MEMBER_FIELDS.get(type(msg))
    if fnum is None:
        raise EncodeError(f"cannot encode {type(msg).__name__}")
    return head + _len_field(fnum, _encode_fields(msg))
