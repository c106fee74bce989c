"""A tiny protobuf wire-format writer and splitter, independent of the codec
under test (it shares only the schema's varint writer), used to derive seed inputs from the real recording and to build
envelopes in the fault and soak tools."""

from __future__ import annotations

import struct

from avatarkit_fast._schema import varint as _varint


def varint(n: int) -> bytes:
    """``n`` modulo 2**64 as a varint (the schema's one writer)."""
    return _varint(n & ((1 << 64) - 1))


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def f_varint(field: int, n: int) -> bytes:
    return key(field, 0) + varint(n)


def f_bytes(field: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, 2) + varint(len(payload)) + payload


def f_fixed32(field: int, raw4: bytes) -> bytes:
    return key(field, 5) + raw4


def f_fixed64(field: int, raw8: bytes) -> bytes:
    return key(field, 1) + raw8


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """Split a (trusted) message into (field, wire_type, value) in order."""
    out = []
    i = 0
    while i < len(buf):
        k, i = read_varint(buf, i)
        f, wt = k >> 3, k & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((f, wt, v))
    return out


def field(buf: bytes, number: int):
    for f, _, v in fields(buf):
        if f == number:
            return v
    return None


def keyframe_messages(envelope: bytes) -> list[bytes]:
    """The raw ``Flame`` messages of an animation envelope, as sent."""
    sra = field(envelope, 6)
    anim = field(sra, 4)
    return [v for f, _, v in fields(anim) if f == 1]


def flame(floats) -> bytes:
    """A canonical ``Flame`` message from 120 floats (packed fields 1..7)."""
    sizes = (3, 3, 3, 3, 6, 2, 100)
    out = bytearray()
    pos = 0
    for number, size in enumerate(sizes, 1):
        out += f_bytes(number, struct.pack(f"<{size}f", *floats[pos : pos + size]))
        pos += size
    return bytes(out)


def animation_envelope(flames: list[bytes], *, req_id: str = "req", connection_id: str = "conn",
                       end: bool = False, avatar_id: str = "") -> bytes:
    anim = b"".join(f_bytes(1, m) for m in flames)
    sra = f_bytes(1, connection_id) + f_bytes(2, req_id)
    if end:
        sra += f_varint(3, 1)
    sra += f_bytes(4, anim)
    if avatar_id:
        sra += f_bytes(5, avatar_id)
    return f_varint(1, 5) + f_bytes(6, sra)


def error_envelope(code: int, message: str, *, req_id: str = "req", connection_id: str = "conn") -> bytes:
    err = f_bytes(1, connection_id) + f_bytes(2, req_id) + f_varint(3, code) + f_bytes(4, message)
    return f_varint(1, 4) + f_bytes(5, err)
