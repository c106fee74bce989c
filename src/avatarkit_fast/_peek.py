"""The header of an envelope, read without caring for its keyframes.

SWITCH: once the codec has ``wire.peek_animation`` (a header-only scan that
allocates nothing), ``peek`` becomes that call and this module goes; until
then it decodes the envelope, which costs a keyframe copy it throws away.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from . import wire

__all__ = ["Header", "peek"]

_ANIMATION = int(wire.MessageType.SERVER_RESPONSE_ANIMATION)


class Header(NamedTuple):
    """``type`` of any envelope; for an animation envelope (type 5) its
    ``req_id``, ``end`` and keyframe count, else None, None and 0."""

    type: int
    req_id: Optional[str]
    end: Optional[bool]
    n_keyframes: int


def peek(data: Any) -> Header:
    """The envelope's header; raises DecodeError exactly where
    ``wire.decode_message`` does (a successful peek means it decodes)."""
    msg = wire.decode_message(data)
    mtype = int(msg.type)
    if mtype != _ANIMATION:
        return Header(mtype, None, None, 0)
    return Header(mtype, msg.req_id, bool(msg.end), len(msg.frames))
