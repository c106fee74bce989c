"""Raw protobuf wire bytes written by hand, for tests that need encodings the
codec itself never emits (unknown fields, unpacked floats, odd orders)."""

from __future__ import annotations

import numpy as np

from avatarkit_fast._schema import varint

__all__ = ["varint", "tag", "ld", "packed", "unpacked"]


def tag(fnum: int, wt: int) -> bytes:
    return varint(fnum << 3 | wt)


def ld(fnum: int, payload: bytes) -> bytes:
    return tag(fnum, 2) + varint(len(payload)) + payload


def packed(fnum: int, values) -> bytes:
    return ld(fnum, np.asarray(values, dtype="<f4").tobytes())


def unpacked(fnum: int, values) -> bytes:
    return b"".join(tag(fnum, 5) + np.float32(v).astype("<f4").tobytes() for v in values)
