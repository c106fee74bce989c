"""Ogg Opus (RFC 7845) decoded streaming, from bytes in chunks of any size.

:class:`OggOpusDecoder` reads the Ogg pages itself (:mod:`.ogg`: bounded,
checked, a transaction per call) and decodes each Opus packet with PyAV
(``av.CodecContext`` over FFmpeg's ``libopus`` decoder), at 48 kHz, then
resamples to ``out_rate`` (:class:`~.resample.StreamResampler`).

Why PyAV: its wheels (PyPI, every major platform) bundle FFmpeg with
libopus and libogg, so ``pip install avatarkit-fast[opus]`` is all it takes;
``opuslib`` and ``pyogg`` are ctypes bindings that need libopus (and
libopusfile) installed on the system, and are barely maintained.  PyAV's
container demuxer (``av.open``) wants a whole file or a blocking reader, not
bytes as they arrive; the Ogg layer is simple and bounded, so it is parsed
here and only the codec is PyAV's.

The length is the stream's, exact to the sample: the first ``pre_skip``
samples (from the OpusHead) are dropped and the last page's granule position
trims the end (RFC 7845 section 4), by this module (FFmpeg's own pre-skip
handling is switched off by giving it a header with pre-skip 0, so that the
count does not depend on FFmpeg's version).  More than one channel is mixed
down to mono (the mean, rounded to nearest, ties to even).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import BufferFull, DecodeError
from .ogg import OggPacket, OggPacketReader
from .resample import StreamResampler

__all__ = ["OPUS_RATE", "OggOpusDecoder", "OpusHead", "opus_packet_samples"]

OPUS_RATE = 48000
_MAX_FRAME_BYTES = 1275
_MAX_PACKET_SAMPLES = 5760  # 120 ms at 48 kHz


def _frame_samples(toc: int) -> int:
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return (480, 960)[config & 1]
    return (120, 240, 480, 960)[config & 3]  # CELT: 2.5, 5, 10, 20 ms


def _frame_length(p: bytes, pos: int) -> tuple[int, int]:
    """(length, bytes used) of a frame length field at ``pos``."""
    if pos >= len(p):
        raise ValueError("a frame length is missing")
    b0 = p[pos]
    if b0 < 252:
        return b0, 1
    if pos + 1 >= len(p):
        raise ValueError("a two-byte frame length is cut short")
    return b0 + 4 * p[pos + 1], 2


def opus_packet_samples(p: bytes) -> int:
    """The samples (at 48 kHz) an Opus packet decodes to, after checking its
    framing against RFC 6716 section 3.4; ValueError with the reason if the
    packet is malformed."""
    n = len(p)
    if n == 0:
        raise ValueError("an empty packet")
    toc = p[0]
    code = toc & 3
    per = _frame_samples(toc)
    if code == 0:
        if n - 1 > _MAX_FRAME_BYTES:
            raise ValueError(f"a frame of {n - 1} bytes (at most {_MAX_FRAME_BYTES})")
        return per
    if code == 1:
        if (n - 1) % 2 or (n - 1) // 2 > _MAX_FRAME_BYTES:
            raise ValueError(f"two equal frames cannot fill {n - 1} bytes")
        return 2 * per
    if code == 2:
        first, used = _frame_length(p, 1)
        rest = n - 1 - used - first
        if first > _MAX_FRAME_BYTES or rest < 0 or rest > _MAX_FRAME_BYTES:
            raise ValueError(f"frame lengths {first} and {rest} do not fit the {n}-byte packet")
        return 2 * per
    if n < 2:
        raise ValueError("a code-3 packet without its frame count byte")
    vbr, padded, count = p[1] & 0x80, p[1] & 0x40, p[1] & 0x3F
    if count == 0 or count * per > _MAX_PACKET_SAMPLES:
        raise ValueError(f"{count} frames of {per} samples (at most 120 ms)")
    pos, padding = 2, 0
    if padded:
        while True:
            if pos >= n:
                raise ValueError("the padding length is cut short")
            b = p[pos]
            pos += 1
            padding += 254 if b == 255 else b
            if b != 255:
                break
    room = n - pos - padding
    if room < 0:
        raise ValueError(f"{padding} bytes of padding do not fit the {n}-byte packet")
    if vbr:
        total = 0
        for _ in range(count - 1):
            length, used = _frame_length(p, pos)
            pos += used
            room -= used
            if length > _MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes (at most {_MAX_FRAME_BYTES})")
            total += length
        last = room - total
        if room < 0 or last < 0 or last > _MAX_FRAME_BYTES:
            raise ValueError(f"the frame lengths do not fit the {n}-byte packet")
    elif room % count or room // count > _MAX_FRAME_BYTES:
        raise ValueError(f"{count} equal frames cannot fill {room} bytes")
    return count * per


class OpusHead:
    """The identification header of an Ogg Opus stream (RFC 7845 5.1)."""

    __slots__ = ("version", "channels", "pre_skip", "input_rate", "gain", "family", "raw")

    def __init__(self, packet: bytes, offset: int) -> None:
        if len(packet) < 19 or packet[:8] != b"OpusHead":
            raise DecodeError(
                f"Ogg Opus: the first packet (page at byte {offset}) is not an OpusHead "
                f"({packet[:8]!r}): not an Opus stream",
                offset,
            )
        self.version = packet[8]
        if self.version >> 4:
            raise DecodeError(f"Ogg Opus: OpusHead version {self.version} is not supported", offset)
        self.channels = packet[9]
        self.pre_skip = int.from_bytes(packet[10:12], "little")
        self.input_rate = int.from_bytes(packet[12:16], "little")
        self.gain = int.from_bytes(packet[16:18], "little", signed=True)
        self.family = packet[18]
        if self.channels == 0:
            raise DecodeError("Ogg Opus: OpusHead says 0 channels", offset)
        if self.family == 0 and self.channels > 2:
            raise DecodeError(
                f"Ogg Opus: OpusHead says {self.channels} channels with mapping family 0 (at most 2)",
                offset,
            )
        if self.family != 0:
            if len(packet) < 21 + self.channels:
                raise DecodeError("Ogg Opus: OpusHead channel mapping table is cut short", offset)
            if self.family == 1 and self.channels > 8:
                raise DecodeError(
                    f"Ogg Opus: {self.channels} channels with mapping family 1 (at most 8)", offset
                )
        self.raw = bytes(packet)

    def extradata(self) -> bytes:
        """The header for FFmpeg, with pre-skip 0 (this module trims)."""
        return self.raw[:10] + b"\0\0" + self.raw[12:]


def _open_codec(head: OpusHead) -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - the extra is part of [test]
        raise ImportError(
            "Ogg Opus input needs PyAV: pip install 'avatarkit-fast[opus]'"
        ) from None
    names = ("libopus", "opus")
    for name in names:
        try:
            ctx = av.CodecContext.create(name, "r")
        except Exception:  # pragma: no cover - an FFmpeg build without libopus
            continue
        ctx.extradata = head.extradata()
        return ctx
    raise ImportError("PyAV has no Opus decoder")  # pragma: no cover


def _decode_packet(codec: Any, data: bytes) -> np.ndarray:
    """One Opus packet to 48 kHz mono int16 samples."""
    import av

    out = []
    for frame in codec.decode(av.Packet(data)):
        x = frame.to_ndarray()
        channels = frame.layout.nb_channels
        if frame.format.is_planar:
            x = x.reshape(channels, -1).T
        else:
            x = x.reshape(-1, channels)
        if x.dtype.kind == "f":
            x = np.rint(np.clip(x.astype(np.float64), -1.0, 1.0) * 32768.0)
            x = np.minimum(x, 32767.0)
        if channels > 1:
            x = np.rint(x.mean(axis=1))
        else:
            x = x[:, 0]
        out.append(x.astype(np.int16))
    if not out:
        return np.empty(0, np.int16)
    return out[0] if len(out) == 1 else np.concatenate(out)


class OggOpusDecoder:
    """Ogg Opus bytes, in chunks of any size as they arrive, to mono int16
    PCM at ``out_rate`` (8000..96000 Hz; the stream decodes at 48 kHz).

    :meth:`feed` returns the samples that its bytes complete (int16 array,
    maybe empty); :meth:`finish` checks that the stream ended whole (with its
    end-of-stream page) and returns the resampler's tail.  The samples of a
    stream, all told, are exactly its length: ``final granule - pre_skip``
    at 48 kHz, resampled (``StreamResampler.expected_length`` of it).
    A chained stream (another Ogg Opus stream after the end of one) goes on
    into the same output.

    A malformed stream raises :class:`~avatarkit_fast.errors.DecodeError`
    naming what was wrong and its byte offset (``err.offset``); the call that
    raised keeps nothing: the bytes it brought are dropped and the decoder is
    as before (feed the rest again, or :meth:`reset`).  Every packet is checked
    (RFC 6716 framing) before any is decoded, so the codec never sees a
    packet of a failing call.

    ``samples_out``: samples returned; ``bytes_in``: bytes taken.
    One thread at a time.
    """

    def __init__(self, out_rate: int = 16000, *, quality: str = "HQ") -> None:
        self._resampler = StreamResampler(OPUS_RATE, out_rate, quality=quality)
        self.out_rate = self._resampler.out_rate
        self._reader = OggPacketReader()
        self._head: Optional[OpusHead] = None
        self._codec: Any = None
        self._new_stream()
        self.samples_out = 0

    def _new_stream(self) -> None:
        self._stage = "head"  # then "tags", then "audio"
        self._pos = 0  # granule position reached by the packets decoded
        self._base: Optional[int] = None  # granule position where the stream's samples start
        self._done = False  # the end-of-stream page was decoded

    @property
    def bytes_in(self) -> int:
        return self._reader.offset

    @property
    def samples_clipped(self) -> int:
        """Output samples limited to int16 by the resampler."""
        return self._resampler.samples_clipped

    @property
    def head(self) -> Optional[OpusHead]:
        """The OpusHead of the stream being decoded (None before it)."""
        return self._head

    def feed(self, data: Any, *, last: bool = False, room: Optional[int] = None) -> np.ndarray:
        """Decode the next bytes of the stream; returns the int16 samples (at
        ``out_rate``) that they complete.  Raises DecodeError, keeping
        nothing of ``data``.

        ``last=True``: ``data`` ends the stream, which must then end whole
        (as :meth:`finish` checks, before anything is decoded); the returned
        samples include the resampler's tail and the decoder is ready for a
        new stream.  ``room``: raise :class:`~avatarkit_fast.errors.BufferFull`
        (keeping nothing) when the samples the call could return, counted
        from the packets before decoding them, exceed it.
        """
        reader = self._reader
        packets = reader.stage(data)
        if not packets and not last:
            reader.commit()
            return np.empty(0, np.int16)
        try:
            if last:
                if reader.offset == 0:
                    reader.commit()
                    return np.empty(0, np.int16)
                reader.check_staged_end()
            plan, state = self._plan(packets)
            if room is not None:
                n48 = sum(b - a for kind, _, a, b, _ in plan if kind == "audio")
                most = self._resampler.most_out(n48)
                if most > room:
                    raise BufferFull(
                        f"PCM buffer full: the Ogg Opus bytes decode to up to {most} samples, "
                        f"{room} fit"
                    )
            pcm48, codec, head = self._run(plan)
        except BaseException:
            reader.rollback()
            raise
        reader.commit()
        self._stage, self._pos, self._base, self._done = state
        self._codec, self._head = codec, head
        out = self._resampler.process(pcm48) if pcm48.size else np.empty(0, np.int16)
        if last:
            tail = self._resampler.flush()
            if tail.size:
                out = np.concatenate((out, tail)) if out.size else tail
            self.reset()
        self.samples_out += out.size
        return out

    def _plan(self, packets: list[OggPacket]) -> tuple[list, tuple]:
        """What to do with each packet, checked before anything is decoded:
        a list of (kind, packet, keep_from, keep_to) and the new state."""
        stage, pos, base, done = self._stage, self._pos, self._base, self._done
        head = self._head
        plan: list = []
        i = 0
        while i < len(packets):
            pkt = packets[i]
            at = pkt.offset
            if pkt.bos and (stage != "head" or done):
                if not done and stage != "head":  # pragma: no cover - the reader refuses this
                    raise DecodeError(f"Ogg Opus: a new stream begins at byte {at} inside one", at)
                stage, pos, base, done = "head", 0, None, False
            if stage == "head":
                if not pkt.bos or not pkt.last:
                    raise DecodeError(
                        f"Ogg Opus: the OpusHead must be alone on the first page (page at byte {at})", at
                    )
                head = OpusHead(pkt.data, at)
                plan.append(("head", head, 0, 0, at))
                stage = "tags"
                i += 1
                continue
            if stage == "tags":
                if pkt.data[:8] != b"OpusTags":
                    raise DecodeError(
                        f"Ogg Opus: expected the OpusTags packet in the page at byte {at}, "
                        f"found {pkt.data[:8]!r}",
                        at,
                    )
                if not pkt.last:
                    raise DecodeError(
                        f"Ogg Opus: audio on the page of the OpusTags (page at byte {at})", at
                    )
                stage = "audio"
                i += 1
                continue
            # The audio packets completed on this page, all at once: the first
            # audio page fixes where the samples start (its granule position
            # minus its samples), the last one where they end.
            j = i
            while not packets[j].last:
                j += 1
            page = packets[i : j + 1]
            counts = []
            for p in page:
                try:
                    counts.append(opus_packet_samples(p.data))
                except ValueError as exc:
                    raise DecodeError(
                        f"Ogg Opus: malformed Opus packet in the page at byte {at}: {exc}", at
                    ) from None
            total = sum(counts)
            granule, eos = pkt.granule, pkt.eos
            if base is None:
                if granule >= total:
                    base = granule - total
                elif eos:
                    base = 0
                else:
                    raise DecodeError(
                        f"Ogg Opus: the first audio page (at byte {at}) has granule position "
                        f"{granule}, less than its {total} samples",
                        at,
                    )
            elif not eos and granule < base + pos + total:
                raise DecodeError(
                    f"Ogg Opus: the page at byte {at} has granule position {granule}, less than "
                    f"the {base + pos + total} samples up to its end",
                    at,
                )
            lo = base + head.pre_skip  # type: ignore[union-attr]
            hi = granule if eos else None
            if eos and granule < lo:
                raise DecodeError(
                    f"Ogg Opus: the last page (at byte {at}) ends at granule position {granule}, "
                    f"before the pre-skip ends ({lo})",
                    at,
                )
            for p, n in zip(page, counts):
                start = base + pos
                a = min(max(lo - start, 0), n)
                b = n if hi is None else min(max(hi - start, a), n)
                plan.append(("audio", p.data, a, b, p.offset))
                pos += n
            done = eos
            i = j + 1
        return plan, (stage, pos, base, done)

    def _run(self, plan: list) -> tuple[np.ndarray, Any, Optional[OpusHead]]:
        """Decode the planned packets: (48 kHz mono int16, codec, head)."""
        codec, head = self._codec, self._head
        pieces: list[np.ndarray] = []
        for kind, item, a, b, at in plan:
            if kind == "head":
                head = item
                codec = _open_codec(item)
                continue
            try:
                pcm = _decode_packet(codec, item)
            except Exception as exc:
                raise DecodeError(
                    f"Ogg Opus: the packet in the page at byte {at} does not decode: {exc}", at
                ) from None
            if b > a:
                pieces.append(pcm[a:b])
        if not pieces:
            return np.empty(0, np.int16), codec, head
        return (pieces[0] if len(pieces) == 1 else np.concatenate(pieces)), codec, head

    def finish(self) -> np.ndarray:
        """The end of the stream: raises DecodeError if it stopped inside a
        page or before its end-of-stream page (nothing changes then);
        returns the last samples, and the decoder is ready for a new stream.
        With no bytes fed at all there is no stream to end: nothing happens."""
        if self._reader.offset == 0:
            return np.empty(0, np.int16)
        self._reader.check_end()
        tail = self._resampler.flush()
        self.samples_out += tail.size
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop the stream (an interrupt): the next bytes begin a new one."""
        self._reader.reset()
        self._resampler.reset()
        self._head = None
        self._codec = None
        self._new_stream()
