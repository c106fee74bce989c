"""The AvatarKit schema, defined once: the FLAME keyframe layout, the audio
rates, the envelope's message types and field numbers, and the decoders'
default limits.  Imported by both wire twins, the controller, the local
server, the command line, the fuzzers and the tests; it imports nothing of
the package.
"""

from __future__ import annotations

import enum

__all__ = [
    "ANIMATION_FIELDS",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_RATIO",
    "FLAME_GROUPS",
    "FLAME_LAYOUT",
    "FLAME_OFFSETS",
    "FPS",
    "KEYFRAME_BYTES",
    "KEYFRAME_FLOATS",
    "MEMBER_FIELD",
    "MessageType",
    "SAMPLE_RATES",
    "TYPE_MEMBER",
    "varint",
]

#: Flame fields in wire order (field numbers 1..7): (name, number of float32 values).
FLAME_LAYOUT: tuple[tuple[str, int], ...] = (
    ("translation", 3),
    ("rotation", 3),
    ("neck_pose", 3),
    ("jaw_pose", 3),
    ("eye_pose", 6),
    ("eye_lid", 2),
    ("expression", 100),
)
#: The same groups with their offset in a keyframe row: (name, offset, size).
FLAME_GROUPS: tuple[tuple[str, int, int], ...] = tuple(
    (name, sum(s for _, s in FLAME_LAYOUT[:i]), size) for i, (name, size) in enumerate(FLAME_LAYOUT)
)
#: Offset of each group in a keyframe row, by name.
FLAME_OFFSETS: dict[str, int] = {name: offset for name, offset, _ in FLAME_GROUPS}
#: Floats per keyframe (one row of a decoded animation).
KEYFRAME_FLOATS = 120
#: Bytes of one decoded keyframe (float32).
KEYFRAME_BYTES = 4 * KEYFRAME_FLOATS
#: Keyframes per second of AvatarKit animation.
FPS = 25
#: Sample rates (Hz) of the s16le mono speech audio AvatarKit takes.
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

#: Default cap on keyframes in one envelope (a real envelope holds <= 100).
DEFAULT_MAX_FRAMES = 100_000
#: Default cap on a decode's output bytes (keyframe arrays) as a multiple of
#: its input bytes.  A canonical keyframe takes 498 bytes on the wire for 480
#: decoded (a real envelope decodes to 0.96 times its size); a keyframe with
#: no fields takes 2 bytes and decodes to 480, so without this cap 200 KB of
#: legal wire would become 48 MB.
DEFAULT_MAX_RATIO = 8.0

assert sum(size for _, size in FLAME_LAYOUT) == KEYFRAME_FLOATS


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


#: ``Message`` field numbers: 1 is ``type``; the ``data`` oneof's members by name.
MEMBER_FIELD = {
    "client_configure_session": 2,
    "server_confirm_session": 3,
    "client_audio_input": 4,
    "server_error": 5,
    "server_response_animation": 6,
    "client_interrupt": 8,
}
#: ``ServerResponseAnimation`` fields by number (1..5).
ANIMATION_FIELDS = ("connection_id", "req_id", "end", "animation", "avatar_id")
#: The oneof field that each message type's envelope carries.
TYPE_MEMBER = {
    MessageType.CLIENT_CONFIGURE_SESSION: 2,
    MessageType.SERVER_CONFIRM_SESSION: 3,
    MessageType.CLIENT_AUDIO_INPUT: 4,
    MessageType.SERVER_ERROR: 5,
    MessageType.SERVER_RESPONSE_ANIMATION: 6,
    MessageType.CLIENT_INTERRUPT: 8,
}


def varint(value: int) -> bytes:
    """``value`` as a protobuf varint; negative values as their 64-bit two's
    complement (ten bytes), as protobuf writes a negative int32."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
