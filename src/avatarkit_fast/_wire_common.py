"""What the two wire twins share: the message dataclasses, the bounded
cursor of the pure-Python reader, the table-driven codec of the control
messages (not hot: the compiled module delegates them here), argument checks,
the error texts and the canonical keyframe template.

``_wire_py`` and ``_wire_c`` both import from here and from ``_schema``;
neither reads the other's names.  Every name here is meant for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from ._schema import (
    KEYFRAME_BYTES,
    KEYFRAME_FLOATS,
    FLAME_LAYOUT,
    MessageType,
    varint,
)
from .errors import DecodeError, EncodeError

SLOT_SIZES = tuple(size for _, size in FLAME_LAYOUT)
SLOT_OFFSETS = tuple(sum(SLOT_SIZES[:i]) for i in range(len(SLOT_SIZES)))
SLOT_ZEROS = tuple(bytes(4 * size) for size in SLOT_SIZES)
# Unknown groups may nest; deeper than this is treated as an attack.
MAX_DEPTH = 64

assert sum(SLOT_SIZES) == KEYFRAME_FLOATS
assert MessageType.SERVER_RESPONSE_ANIMATION == 5



# ---------------------------------------------------------------------------
# Message types


def empty_frames() -> np.ndarray:
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
    frames: np.ndarray = field(default_factory=empty_frames)

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


# Decode error texts, by code: the compiled module raises by code (its
# ``cdef enum`` has the same values, checked when it loads), the pure reader
# by the same codes, so that both say exactly the same.
TRUNC_VARINT = 1
VARINT_OVERFLOW = 2
TAG_OVERFLOW = 3
FIELD_ZERO = 4
LEN_PAST_END = 5
TRUNC_FIXED = 6
GROUP_DEPTH = 7
GROUP_UNTERMINATED = 8
GROUP_MISMATCH = 9
GROUP_NO_START = 10
INVALID_WT = 11
WRONG_WT = 12
PACKED_LEN = 13
TRUNC_FLOAT = 14
TOO_MANY = 15
PARTIAL = 16
CAP = 17
CHANGED = 18


def problem(code: int, a: int = 0, b: int = 0) -> str:
    """The text of decode error ``code`` with its figures ``a`` and ``b``
    (for the Flame errors, ``a`` is the slot)."""
    if code == TRUNC_VARINT:
        return "truncated varint"
    if code == VARINT_OVERFLOW:
        return "varint longer than 10 bytes or overflowing 64 bits"
    if code == TAG_OVERFLOW:
        return f"field tag {a} overflows 32 bits"
    if code == FIELD_ZERO:
        return "field number 0"
    if code == LEN_PAST_END:
        return f"length {a} runs past the end of its message ({b} bytes left)"
    if code == TRUNC_FIXED:
        return f"truncated fixed{a * 8} field {b}"
    if code == GROUP_DEPTH:
        return f"groups nested deeper than {MAX_DEPTH}"
    if code == GROUP_UNTERMINATED:
        return f"unterminated group {a}"
    if code == GROUP_MISMATCH:
        return f"end of group {a} inside group {b}"
    if code == GROUP_NO_START:
        return f"end of group {a} without a start"
    if code == INVALID_WT:
        return f"invalid wire type {b} for field {a}"
    name, size = FLAME_LAYOUT[a] if 0 <= a < 7 else ("", 0)
    if code == PACKED_LEN:
        return f"Flame.{name}: packed length {b} is not a multiple of 4"
    if code == TRUNC_FLOAT:
        return f"Flame.{name}: truncated float"
    if code == TOO_MANY:
        return f"Flame.{name}: more than {size} floats"
    if code == PARTIAL:
        return f"Flame.{name}: {b} floats, expected {size} or none"
    if code == CAP:
        return f"more than {a} keyframes (the configured cap)"
    if code == CHANGED:
        return "the input changed while it was being decoded"
    raise ValueError(f"no decode error {code}")


def not_animation(mtype: int) -> DecodeError:
    return error(f"expected an animation envelope (type 5), found type {mtype}", 0)


def fail(code: int, offset: int, a: int = 0, b: int = 0) -> DecodeError:
    """The DecodeError of ``code`` at ``offset``."""
    return error(problem(code, a, b), offset)


def error(problem: str, offset: int) -> DecodeError:
    return DecodeError(f"{problem} at byte {offset}", offset)


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise fail(TRUNC_VARINT, start)
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:
            raise fail(VARINT_OVERFLOW, start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def read_tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    start = pos
    tag, pos = read_varint(buf, pos, end)
    if tag > 0xFFFFFFFF:
        raise fail(TAG_OVERFLOW, start, tag)
    if tag >> 3 == 0:
        raise fail(FIELD_ZERO, start)
    return tag >> 3, tag & 7, pos


def read_len(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    n, pos = read_varint(buf, pos, end)
    if n > end - pos:
        raise fail(LEN_PAST_END, start, n, end - pos)
    return n, pos


def skip_field(buf: bytes, pos: int, end: int, fnum: int, wt: int, tag_at: int, depth: int) -> int:
    """Skips the value of an unknown field; returns the position after it."""
    if wt == 0:
        return read_varint(buf, pos, end)[1]
    if wt == 1 or wt == 5:
        size = 8 if wt == 1 else 4
        if end - pos < size:
            raise fail(TRUNC_FIXED, tag_at, size, fnum)
        return pos + size
    if wt == 2:
        n, pos = read_len(buf, pos, end)
        return pos + n
    if wt == 3:
        if depth >= MAX_DEPTH:
            raise fail(GROUP_DEPTH, tag_at)
        while True:
            if pos >= end:
                raise fail(GROUP_UNTERMINATED, tag_at, fnum)
            inner_at = pos
            inner, iwt, pos = read_tag(buf, pos, end)
            if iwt == 4:
                if inner != fnum:
                    raise fail(GROUP_MISMATCH, inner_at, inner, fnum)
                return pos
            pos = skip_field(buf, pos, end, inner, iwt, inner_at, depth + 1)
    if wt == 4:
        raise fail(GROUP_NO_START, tag_at, fnum)
    raise fail(INVALID_WT, tag_at, fnum, wt)


WIRE_NAMES = ("varint", "fixed64", "length-delimited", "start-group", "end-group", "fixed32")


def wrong_wire_type(what: str, expected: int, wt: int, tag_at: int) -> DecodeError:
    found = WIRE_NAMES[wt] if wt < len(WIRE_NAMES) else f"invalid ({wt})"
    return error(f"{what}: expected wire type {WIRE_NAMES[expected]}, found {found}", tag_at)


def read_string(buf: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    n, pos = read_len(buf, pos, end)
    try:
        return buf[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not valid UTF-8", pos + exc.start) from None


def int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v



# ---------------------------------------------------------------------------
# Control messages: a small table-driven codec (they are not hot).
# A schema maps field number -> (attribute, kind); kinds are "string",
# "bytes", "int32", "uint32", "bool", a dataclass (a message field) or
# ("map", ) for map<string, string>.

MAP = ("map",)

SCHEMAS: dict[type, dict[int, tuple[str, Any]]] = {
    TraceContext: {1: ("traceparent", "string"), 2: ("tracestate", "string")},
    LiveKitEgressConfig: {
        1: ("url", "string"),
        2: ("api_key", "string"),
        3: ("api_secret", "string"),
        4: ("room_name", "string"),
        5: ("publisher_id", "string"),
        6: ("extra_attributes", MAP),
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
        8: ("extra_params", MAP),
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

VARINT_KINDS = ("int32", "uint32", "bool")


def parse_fields(buf: bytes, pos: int, end: int, obj: Any, depth: int) -> None:
    """Merges the fields in ``buf[pos:end]`` into ``obj`` (protobuf merge rules)."""
    schema = SCHEMAS[type(obj)]
    cls_name = type(obj).__name__
    while pos < end:
        tag_at = pos
        fnum, wt, pos = read_tag(buf, pos, end)
        spec = schema.get(fnum)
        if spec is None:
            pos = skip_field(buf, pos, end, fnum, wt, tag_at, 0)
            continue
        name, kind = spec
        what = f"{cls_name}.{name}"
        if kind in VARINT_KINDS:
            if wt != 0:
                raise wrong_wire_type(what, 0, wt, tag_at)
            v, pos = read_varint(buf, pos, end)
            value: Any = (
                int32(v) if kind == "int32" else v & 0xFFFFFFFF if kind == "uint32" else v != 0
            )
            setattr(obj, name, value)
            continue
        if wt != 2:
            raise wrong_wire_type(what, 2, wt, tag_at)
        if kind == "string":
            value, pos = read_string(buf, pos, end, what)
            setattr(obj, name, value)
            continue
        n, pos = read_len(buf, pos, end)
        sub_end = pos + n
        if kind == "bytes":
            setattr(obj, name, buf[pos:sub_end])
        elif kind is MAP:
            key, val = "", ""
            while pos < sub_end:
                e_at = pos
                efnum, ewt, pos = read_tag(buf, pos, sub_end)
                if efnum in (1, 2):
                    if ewt != 2:
                        raise wrong_wire_type(f"{what} entry", 2, ewt, e_at)
                    s, pos = read_string(buf, pos, sub_end, f"{what} entry")
                    if efnum == 1:
                        key = s
                    else:
                        val = s
                else:
                    pos = skip_field(buf, pos, sub_end, efnum, ewt, e_at, 0)
            getattr(obj, name)[key] = val
        else:
            if depth >= MAX_DEPTH:
                raise error("messages nested too deeply", tag_at)
            sub = getattr(obj, name)
            if sub is None:
                sub = kind()
                setattr(obj, name, sub)
            parse_fields(buf, pos, sub_end, sub, depth + 1)
        pos = sub_end



# ---------------------------------------------------------------------------
# The envelope

MEMBER_CLASSES: dict[int, type] = {
    2: ClientConfigureSession,
    3: ServerConfirmSession,
    4: ClientAudioInput,
    5: ServerErrorMessage,
    8: ClientInterrupt,
}
MEMBER_FIELDS = {cls: fnum for fnum, cls in MEMBER_CLASSES.items()}
MEMBER_FIELDS[AnimationMessage] = 6


def as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"expected a bytes-like object, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise TypeError("expected a C-contiguous bytes-like object")
    return view.tobytes()


def check_max_frames(max_frames: int) -> int:
    max_frames = int(max_frames)
    if max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    return max_frames


def check_max_ratio(max_ratio: Any) -> float:
    if isinstance(max_ratio, bool) or not isinstance(
        max_ratio, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"max_ratio must be a number, got {type(max_ratio).__name__}")
    if not max_ratio > 0:
        raise ValueError(f"max_ratio must be > 0 (math.inf for no limit), got {max_ratio}")
    return float(max_ratio)


def check_ratio(n: int, size: int, max_ratio: float) -> None:
    """DecodeError if ``n`` keyframes from ``size`` input bytes pass the
    ``max_ratio`` limit (checked before a keyframe is copied)."""
    out = n * KEYFRAME_BYTES
    if out > max_ratio * size:
        raise DecodeError(
            f"{n} keyframes would decode to {out} bytes from a {size}-byte envelope, "
            f"{out / size:.1f} times its size: over the max_ratio limit of {max_ratio:g}",
            -1,
        )



def check_out(out: Any) -> None:
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float32
        and out.ndim == 2
        and out.shape[1] == KEYFRAME_FLOATS
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError("out must be a writable C-contiguous float32 array of shape (m, 120)")



# ---------------------------------------------------------------------------
# Encoding


def len_field(fnum: int, payload: bytes) -> bytes:
    return varint(fnum << 3 | 2) + varint(len(payload)) + payload


def utf8(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"{what} must be a str, got {type(value).__name__}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} cannot be encoded as UTF-8: {exc.reason}") from None


def string_field(fnum: int, value: Any, what: str) -> bytes:
    raw = utf8(value, what)
    return len_field(fnum, raw) if raw else b""


def keyframe_template() -> tuple[bytes, np.ndarray]:
    """Bytes of one canonical keyframe field (floats zero) and the byte
    positions of its 480 float bytes."""
    body = bytearray()
    float_cols: list[int] = []
    for slot, size in enumerate(SLOT_SIZES):
        body += varint((slot + 1) << 3 | 2) + varint(4 * size)
        float_cols.extend(range(len(body), len(body) + 4 * size))
        body += bytes(4 * size)
    head = b"\x0a" + varint(len(body))
    return head + bytes(body), np.asarray(float_cols, dtype=np.intp) + len(head)


KEYFRAME_TEMPLATE, KEYFRAME_FLOAT_COLS = keyframe_template()
#: Bytes one keyframe takes in canonical form (498).
KEYFRAME_WIRE_BYTES = len(KEYFRAME_TEMPLATE)


def as_frames(frames: Any) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 2 or arr.shape[1] != KEYFRAME_FLOATS:
        raise EncodeError(f"frames must have shape (n, {KEYFRAME_FLOATS}), got {arr.shape}")
    if arr.dtype.kind != "f":
        raise EncodeError(f"frames must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype="<f4")



def encode_fields(obj: Any) -> bytes:
    schema = SCHEMAS[type(obj)]
    out = bytearray()
    for fnum in sorted(schema):
        name, kind = schema[fnum]
        value = getattr(obj, name)
        what = f"{type(obj).__name__}.{name}"
        if kind in VARINT_KINDS:
            if isinstance(value, float) or not isinstance(value, (int, np.integer)):
                raise EncodeError(f"{what} must be an int, got {type(value).__name__}")
            value = int(value)
            if kind == "int32" and not -(1 << 31) <= value < 1 << 31:
                raise EncodeError(f"{what} = {value} is out of int32 range")
            if kind == "uint32" and not 0 <= value < 1 << 32:
                raise EncodeError(f"{what} = {value} is out of uint32 range")
            if value:
                out += varint(fnum << 3) + varint(1 if kind == "bool" else value)
        elif kind == "string":
            out += string_field(fnum, value, what)
        elif kind == "bytes":
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise EncodeError(f"{what} must be bytes, got {type(value).__name__}")
            if len(value):
                out += len_field(fnum, bytes(value))
        elif kind is MAP:
            for key, val in value.items():
                entry = string_field(1, key, f"{what} key") + string_field(2, val, f"{what} value")
                out += len_field(fnum, entry)
        elif value is not None:
            if not isinstance(value, kind):
                raise EncodeError(f"{what} must be a {kind.__name__}, got {type(value).__name__}")
            out += len_field(fnum, encode_fields(value))
    return bytes(out)


def encode_message_with(msg: Message, encode_animation: Any) -> bytes:
    """Encodes any message dataclass as an envelope (the animation member
    through the caller's ``encode_animation``): ``type`` (omitted when 0)
    then the oneof member for the message's class (always present; none for
    :class:`OtherMessage`).  Maps are written in insertion order."""
    mtype = getattr(msg, "type", None)
    if isinstance(mtype, bool) or not isinstance(mtype, int) or not -(1 << 31) <= mtype < 1 << 31:
        raise EncodeError(f"message type must be an int32, got {mtype!r}")
    head = varint(8) + varint(mtype) if mtype else b""
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
    fnum = MEMBER_FIELDS.get(type(msg))
    if fnum is None:
        raise EncodeError(f"cannot encode {type(msg).__name__}")
    return head + len_field(fnum, encode_fields(msg))

