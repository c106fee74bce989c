"""Raw protobuf wire bytes written by hand, for tests that need encodings the
codec itself never emits (unknown fields, unpacked floats, odd orders)."""

from __future__ import annotations

import numpy as np


def varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(fnum: int, wt: int) -> bytes:
    return varint(fnum << 3 | wt)


def ld(fnum: int, payload: bytes) -> bytes:
    return tag(fnum, 2) + varint(len(payload)) + payload


def packed(fnum: int, values) -> bytes:
    return ld(fnum, np.asarray(values, dtype="<f4").tobytes())


def unpacked(fnum: int, values) -> bytes:
    return b"".join(tag(fnum, 5) + np.float32(v).astype("<f4").tobytes() for v in values)
