"""Ogg pages (RFC 3533) read from bytes that arrive in pieces of any size.

:class:`OggPacketReader` takes the bytes of one Ogg stream as they come and
hands back the packets that complete, each with the page it completed on.
Everything read from the stream is bounded: a page is at most 27 + 255 +
255 * 255 bytes, and a packet that spans pages is capped
(``max_packet_bytes``).  Each page's CRC, version, sequence number and
stream serial number are checked; a malformed stream is a
:class:`~avatarkit_fast.errors.DecodeError` naming what was wrong and its
byte offset from the start of the stream, and the call that found it changes
nothing (:meth:`OggPacketReader.feed` is a transaction).

Chained streams (a new logical stream after one's end-of-stream page, as
RFC 3533 allows) are read on; interleaved logical streams are refused.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, NamedTuple

from ..errors import DecodeError

__all__ = ["OggPacket", "OggPacketReader", "ogg_crc", "MAX_PAGE_BYTES"]

HEADER_BYTES = 27
MAX_PAGE_BYTES = HEADER_BYTES + 255 + 255 * 255
FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04
NO_GRANULE = -1  # 0xFFFFFFFFFFFFFFFF: no packet completes on the page

_HEADER = struct.Struct("<4sBBqIIIB")
_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(data: Any) -> int:
    """The Ogg CRC-32 (polynomial 0x04C11DB7, not reflected, initial value 0,
    no final xor) of ``data``, through zlib's reflected CRC of the
    bit-reversed bytes."""
    raw = bytes(data).translate(_BITREV)
    c = zlib.crc32(raw, 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int.from_bytes(c.to_bytes(4, "little").translate(_BITREV), "big")


class OggPacket(NamedTuple):
    """A packet that completed on a page: ``data``; that page's ``granule``
    position, ``flags`` (BOS 2, EOS 4), sequence number ``page``, and
    ``offset`` (where the page begins in the stream); ``last``: the last
    packet completed on the page; ``bos``: the first page of a logical stream."""

    data: bytes
    granule: int
    flags: int
    page: int
    offset: int
    last: bool

    @property
    def eos(self) -> bool:
        return bool(self.flags & FLAG_EOS)

    @property
    def bos(self) -> bool:
        return bool(self.flags & FLAG_BOS)


class OggPacketReader:
    """Packets of one Ogg stream, from its bytes in pieces of any size.

    :meth:`feed` returns the packets completed by the bytes given (in
    order); :meth:`check_end` raises if the stream stopped inside a page or
    a packet.  ``offset``: bytes taken so far; ``pages``: pages read;
    ``ended``: the last page read had the end-of-stream flag.
    """

    def __init__(self, *, max_packet_bytes: int = 1 << 20) -> None:
        self.max_packet_bytes = int(max_packet_bytes)
        self._pending = bytearray()  # bytes of the next page(s), not yet whole
        self._start = 0  # stream offset of _pending[0]
        self._serial: int | None = None
        self._seq = 0  # the next page sequence number expected
        self._partial = b""  # the start of a packet continued on the next page
        self._partial_page = -1
        self.pages = 0
        self.ended = False
        self._staged: Any = None

    @property
    def offset(self) -> int:
        return self._start + len(self._pending)

    def feed(self, data: Any) -> list[OggPacket]:
        """Take the next bytes of the stream; returns the packets that they
        complete.  Raises DecodeError (and keeps nothing of ``data``) if the
        stream is malformed."""
        packets = self.stage(data)
        self.commit()
        return packets

    def stage(self, data: Any) -> list[OggPacket]:
        """As :meth:`feed`, but the reader moves on only at :meth:`commit`;
        :meth:`rollback` forgets ``data`` instead (for a caller whose own
        checks of the packets may still fail).  One of the two must come
        before the next call."""
        if self._staged is not None:
            raise RuntimeError("stage() twice without commit() or rollback()")
        try:
            mv = memoryview(data)
        except TypeError:
            raise TypeError(
                f"Ogg bytes must be a bytes-like object, got {type(data).__name__}"
            ) from None
        if not mv.c_contiguous:
            raise TypeError("expected a C-contiguous bytes-like object")
        mark = len(self._pending)
        self._pending += mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        try:
            packets, state = self._pages()
        except BaseException:
            del self._pending[mark:]
            raise
        self._staged = (mark, state)
        return packets

    def commit(self) -> None:
        """Move on past the bytes given to :meth:`stage`."""
        if self._staged is None:
            return
        (mark, (pos, serial, seq, partial, partial_page, pages, ended)), self._staged = self._staged, None
        if pos:
            del self._pending[:pos]
            self._start += pos
        self._serial, self._seq, self._partial, self._partial_page = serial, seq, partial, partial_page
        self.pages, self.ended = pages, ended

    def check_staged_end(self) -> None:
        """As :meth:`check_end`, on the state :meth:`stage` would commit:
        raises DecodeError (nothing changes) unless the staged bytes end the
        stream whole."""
        if self._staged is None:
            self.check_end()
            return
        mark, (pos, serial, seq, partial, partial_page, pages, ended) = self._staged
        at = self._start + pos
        left = len(self._pending) - pos
        if left:
            raise DecodeError(
                f"Ogg: the stream ends inside the page at byte {at} ({left} bytes of it)", at
            )
        if serial is None:
            raise DecodeError("Ogg: the stream ended before its first page", 0)
        if not ended:
            raise DecodeError(
                f"Ogg: the stream ends at byte {at} without its end-of-stream page "
                f"({pages} pages read): truncated?",
                at,
            )

    def rollback(self) -> None:
        """Forget the bytes given to :meth:`stage`: as if it was not called."""
        if self._staged is None:
            return
        mark, self._staged = self._staged[0], None
        del self._pending[mark:]

    def _pages(self) -> tuple[list[OggPacket], tuple]:
        buf = self._pending
        # The state below is only committed once every whole page in buf parsed.
        serial, seq, partial, partial_page = self._serial, self._seq, self._partial, self._partial_page
        pages, ended = self.pages, self.ended
        pos = 0
        out: list[OggPacket] = []
        while len(buf) - pos >= HEADER_BYTES:
            at = self._start + pos
            if buf[pos : pos + 4] != b"OggS":
                raise DecodeError(
                    f"Ogg: expected a page ('OggS') at byte {at}, found {bytes(buf[pos:pos + 4])!r}", at
                )
            magic, version, flags, granule, page_serial, page_seq, crc, nseg = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos < HEADER_BYTES + nseg:
                break
            lacing = buf[pos + HEADER_BYTES : pos + HEADER_BYTES + nseg]
            size = HEADER_BYTES + nseg + sum(lacing)
            if len(buf) - pos < size:
                break
            if version != 0:
                raise DecodeError(f"Ogg: page at byte {at} has version {version}, expected 0", at)
            if flags & ~0x07:
                raise DecodeError(f"Ogg: page at byte {at} has unknown flags 0x{flags:02x}", at)
            page = bytearray(buf[pos : pos + size])
            page[22:26] = b"\0\0\0\0"
            if ogg_crc(page) != crc:
                raise DecodeError(f"Ogg: page at byte {at}: CRC mismatch (corrupt or not Ogg)", at)
            if serial is None or (ended and flags & FLAG_BOS):
                if not flags & FLAG_BOS:
                    raise DecodeError(
                        f"Ogg: page at byte {at} does not begin a stream (no BOS flag)", at
                    )
                if page_seq != 0:
                    raise DecodeError(
                        f"Ogg: first page at byte {at} has sequence number {page_seq}, expected 0", at
                    )
                serial, seq, ended, partial = page_serial, 0, False, b""
            elif ended:
                raise DecodeError(f"Ogg: bytes after the end of the stream at byte {at}", at)
            elif flags & FLAG_BOS:
                raise DecodeError(
                    f"Ogg: page at byte {at} begins another logical stream (serial "
                    f"{page_serial}) inside stream {serial}: multiplexed streams are not supported",
                    at,
                )
            if page_serial != serial:
                raise DecodeError(
                    f"Ogg: page at byte {at} belongs to stream {page_serial}, expected {serial}", at
                )
            if page_seq != seq:
                raise DecodeError(
                    f"Ogg: page at byte {at} has sequence number {page_seq}, expected {seq} "
                    f"({'a page is missing' if page_seq > seq else 'out of order'})",
                    at,
                )
            if bool(flags & FLAG_CONTINUED) != bool(partial):
                what = "continues a packet, but none is open" if flags & FLAG_CONTINUED else (
                    f"does not continue the packet open since page {partial_page}"
                )
                raise DecodeError(f"Ogg: page at byte {at} {what}", at)
            body = pos + HEADER_BYTES + nseg
            packets: list[bytes] = []
            piece_start = body
            cur = partial
            for lace in lacing:
                piece_end = piece_start + lace
                if lace < 255:
                    packets.append(cur + bytes(buf[piece_start:piece_end]) if cur else bytes(buf[piece_start:piece_end]))
                    cur = b""
                else:
                    cur = cur + bytes(buf[piece_start:piece_end])
                    if len(cur) > self.max_packet_bytes:
                        raise DecodeError(
                            f"Ogg: a packet passes {self.max_packet_bytes} bytes at page byte {at}", at
                        )
                piece_start = piece_end
            if cur and not partial:
                partial_page = page_seq
            partial = cur
            if packets and granule == NO_GRANULE:
                raise DecodeError(
                    f"Ogg: page at byte {at} completes packets but has no granule position", at
                )
            for i, p in enumerate(packets):
                out.append(OggPacket(p, granule, flags, page_seq, at, i == len(packets) - 1))
            ended = bool(flags & FLAG_EOS)
            if ended and partial:
                raise DecodeError(f"Ogg: the last page, at byte {at}, ends inside a packet", at)
            seq = (seq + 1) & 0xFFFFFFFF
            pages += 1
            pos += size
        return out, (pos, serial, seq, partial, partial_page, pages, ended)

    def check_end(self) -> None:
        """Raise DecodeError if the stream stops inside a page or a packet,
        or before its end-of-stream page."""
        at = self._start
        if self._staged is not None:
            raise RuntimeError("check_end() between stage() and commit()")
        if self._pending:
            have = len(self._pending)
            need = ""
            if have >= HEADER_BYTES:
                nseg = self._pending[26]
                if have >= HEADER_BYTES + nseg:
                    size = HEADER_BYTES + nseg + sum(self._pending[HEADER_BYTES : HEADER_BYTES + nseg])
                    need = f" of {size}"
            raise DecodeError(
                f"Ogg: the stream ends inside the page at byte {at} ({have}{need} bytes of it)", at
            )
        if self._serial is None:
            raise DecodeError("Ogg: the stream ended before its first page", 0)
        if not self.ended:
            raise DecodeError(
                f"Ogg: the stream ends at byte {at} without its end-of-stream page "
                f"({self.pages} pages read): truncated?",
                at,
            )

    def reset(self) -> None:
        """Forget the stream: the next bytes begin a new one."""
        self.__init__(max_packet_bytes=self.max_packet_bytes)  # type: ignore[misc]
