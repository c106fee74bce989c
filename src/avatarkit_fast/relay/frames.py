"""Relay frames: the msgpack format (versions 1 and 2), encoded and decoded.

In host mode the backend holds the server-SDK session; the client holds the
:class:`~avatarkit_fast.AvatarController`.  The backend forwards the speech
audio it sends to the motion server and the animation envelopes it gets back;
:class:`RelaySender` writes them as frames to any transport, and
:class:`RelayReceiver` feeds frames into a controller.

Frame format
------------
One frame is one msgpack array (strings as ``str``, binary as ``bin``).
Version 2, which :class:`RelaySender` writes::

    [2, 1, req_id, seq, pcm, end]        audio chunk: PCM s16le mono bytes; end: bool
    [2, 2, req_id, seq, [envelope, ...]] animation: serialized Message envelopes
    [2, 3, req_id, seq]                  audio-only: no animation will come for req_id
    [2, 4, req_id or nil]                interrupt: stop req_id (nil: whatever plays)

Version 1 is the same without ``seq`` (``[1, 1, req_id, pcm, end]``,
``[1, 2, req_id, [...]]``, ``[1, 3, req_id]``, ``[1, 4, req_id or nil]``); a
reader takes both.  The first element is the format version, the second the
kind.  ``req_id`` is the motion server's request id (a non-empty string), the
key that ties audio and animation together.  ``seq`` numbers a request's audio,
animation and audio-only frames 0, 1, 2, ... in the order the sender wrote
them (``0 <= seq < 2**32``), so a transport that duplicates or reorders
frames (a datagram channel, a retrying proxy, a reconnect that resends) cannot
make a chunk play twice or a keyframe land in the wrong place: the receiver
drops a seq it already has and holds one that comes early until the frames
before it arrive (see :class:`RelayReceiver` for how long).  Interrupts carry
no seq: they act on arrival, and acting twice is the same as once.  One
WebSocket message (or one datagram, or one length-prefixed record of a byte
stream) carries exactly one frame.

A reader refuses, with :class:`~avatarkit_fast.errors.RelayError` and without
side effects, any frame that is not exactly this: another version (named in
the error), an unknown kind, a wrong arity or element type, a seq out of
range, trailing bytes.  Later versions may add kinds or trailing elements; a
reader refuses them rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import msgpack

from ..errors import EncodeError, RelayError

__all__ = [
    "ANIMATION",
    "AUDIO",
    "AUDIO_ONLY",
    "INTERRUPT",
    "MAX_ENVELOPES_PER_FRAME",
    "MAX_FRAME_BYTES",
    "RELAY_VERSION",
    "SEQ_LIMIT",
    "SUPPORTED_VERSIONS",
    "AnimationFrame",
    "AudioChunk",
    "AudioOnly",
    "Interrupt",
    "RelayFrame",
    "SequencedFrame",
    "check_req_id",
    "decode_frame",
    "encode_frame",
    "valid_seq",
]

RELAY_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
AUDIO = 1
ANIMATION = 2
AUDIO_ONLY = 3
INTERRUPT = 4
_KIND_NAMES = {AUDIO: "audio", ANIMATION: "animation", AUDIO_ONLY: "audio-only", INTERRUPT: "interrupt"}
_ARITY = {
    1: {AUDIO: 5, ANIMATION: 4, AUDIO_ONLY: 3, INTERRUPT: 3},
    2: {AUDIO: 6, ANIMATION: 5, AUDIO_ONLY: 4, INTERRUPT: 3},
}

#: Cap on envelopes in one animation frame (the service sends one per batch).
MAX_ENVELOPES_PER_FRAME = 4096
#: Cap on one frame's size (about 100 s of 48 kHz audio, or 8000 keyframes).
MAX_FRAME_BYTES = 16 << 20
#: Sequence numbers are ``0 <= seq < SEQ_LIMIT`` (years of 20 ms chunks).
SEQ_LIMIT = 1 << 32


@dataclass(frozen=True)
class AudioChunk:
    req_id: str
    pcm: bytes
    end: bool = False
    seq: int | None = None


@dataclass(frozen=True)
class AnimationFrame:
    req_id: str
    envelopes: tuple[bytes, ...]
    seq: int | None = None


@dataclass(frozen=True)
class AudioOnly:
    req_id: str
    seq: int | None = None


@dataclass(frozen=True)
class Interrupt:
    req_id: str | None = None


RelayFrame = Union[AudioChunk, AnimationFrame, AudioOnly, Interrupt]
SequencedFrame = Union[AudioChunk, AnimationFrame, AudioOnly]


def check_req_id(req_id: Any, what: str) -> str:
    """``req_id`` if it is a non-empty str; TypeError naming ``what`` otherwise."""
    if not isinstance(req_id, str) or not req_id:
        raise TypeError(f"{what}: req_id must be a non-empty str, got {req_id!r}")
    return req_id


def valid_seq(seq: Any) -> bool:
    """Whether ``seq`` is an int (not a bool) in ``[0, SEQ_LIMIT)``."""
    return isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < SEQ_LIMIT


def encode_frame(frame: RelayFrame, *, version: int | None = None) -> bytes:
    """Serialize one frame.

    ``version`` defaults to 2 for a frame that carries a ``seq`` and for an
    interrupt, and to 1 for an audio, animation or audio-only frame without
    one.  Version 2 needs a ``seq`` on those three kinds; version 1 has no
    room for one.
    """
    if version is None:
        version = 1 if getattr(frame, "seq", 0) is None else RELAY_VERSION
    elif version not in SUPPORTED_VERSIONS:
        raise EncodeError(f"relay format version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if isinstance(frame, Interrupt):
        if frame.req_id is not None:
            check_req_id(frame.req_id, "interrupt")
        return msgpack.packb([version, INTERRUPT, frame.req_id], use_bin_type=True)
    if isinstance(frame, AudioChunk):
        check_req_id(frame.req_id, "audio")
        if not isinstance(frame.end, bool):
            raise TypeError(f"audio: end must be a bool, got {type(frame.end).__name__}")
        kind, rest = AUDIO, [bytes(frame.pcm), frame.end]
    elif isinstance(frame, AnimationFrame):
        check_req_id(frame.req_id, "animation")
        kind, rest = ANIMATION, [[bytes(e) for e in frame.envelopes]]
    elif isinstance(frame, AudioOnly):
        check_req_id(frame.req_id, "audio-only")
        kind, rest = AUDIO_ONLY, []
    else:
        raise TypeError(f"not a relay frame: {type(frame).__name__}")
    seq = frame.seq
    if version == 1:
        if seq is not None:
            raise EncodeError(f"{_KIND_NAMES[kind]}: relay format version 1 has no seq (got {seq!r})")
        return msgpack.packb([1, kind, frame.req_id, *rest], use_bin_type=True)
    if not valid_seq(seq):
        raise EncodeError(f"{_KIND_NAMES[kind]}: version 2 needs a seq, an int in [0, 2**32), got {seq!r}")
    return msgpack.packb([version, kind, frame.req_id, seq, *rest], use_bin_type=True)


def _bad(problem: str) -> RelayError:
    return RelayError(f"malformed relay frame: {problem}", -1)


def decode_frame(data: bytes | bytearray | memoryview) -> RelayFrame:
    """Parse and validate one frame (version 1 or 2); raises RelayError for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"relay frame must be bytes-like, got {type(data).__name__}")
    if len(data) > MAX_FRAME_BYTES:
        raise _bad(f"{len(data)} bytes exceeds the cap of {MAX_FRAME_BYTES}")
    try:
        body = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True,
            max_array_len=MAX_ENVELOPES_PER_FRAME, max_map_len=0, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise _bad(f"not a msgpack value ({type(exc).__name__}: {exc})") from None
    if not isinstance(body, list) or len(body) < 2:
        raise _bad(f"expected an array [version, kind, ...], got {type(body).__name__}")
    version, kind = body[0], body[1]
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad(f"expected an integer version first, got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        raise RelayError(
            f"unsupported relay format version {version}; this reader speaks versions 1 and 2", -1
        )
    arity = _ARITY[version]
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in arity:
        raise _bad(f"unknown kind {kind!r}; expected one of {sorted(arity)}")
    name = _KIND_NAMES[kind]
    if len(body) != arity[kind]:
        raise _bad(f"{name} frame of version {version} has {len(body)} elements, expected {arity[kind]}")
    req_id = body[2]
    if kind == INTERRUPT:
        if req_id is not None and (not isinstance(req_id, str) or not req_id):
            raise _bad(f"interrupt req_id must be a non-empty string or nil, got {req_id!r}")
        return Interrupt(req_id)
    if not isinstance(req_id, str) or not req_id:
        raise _bad(f"{name} req_id must be a non-empty string, got {req_id!r}")
    if version == 1:
        seq, rest = None, body[3:]
    else:
        seq, rest = body[3], body[4:]
        if not valid_seq(seq):
            raise _bad(f"{name} seq must be an integer in [0, 2**32), got {seq!r}")
    if kind == AUDIO:
        pcm, end = rest
        if not isinstance(pcm, bytes):
            raise _bad(f"audio pcm must be binary, got {type(pcm).__name__}")
        if not isinstance(end, bool):
            raise _bad(f"audio end must be a bool, got {end!r}")
        return AudioChunk(req_id, pcm, end, seq)
    if kind == ANIMATION:
        (envelopes,) = rest
        if not isinstance(envelopes, list):
            raise _bad(f"animation envelopes must be an array, got {type(envelopes).__name__}")
        for i, env in enumerate(envelopes):
            if not isinstance(env, bytes):
                raise _bad(f"animation envelope {i} must be binary, got {type(env).__name__}")
        return AnimationFrame(req_id, tuple(envelopes), seq)
    return AudioOnly(req_id, seq)
