"""The sending end of the relay: :class:`RelaySender` writes frames to a sink.

In host mode the backend holds the server-SDK session and forwards, through a
sender, the speech audio it sends to the motion server and the animation
envelopes it gets back; the client's :class:`~avatarkit_fast.relay.RelayReceiver`
feeds them into its controller.  The frame format is in
:mod:`avatarkit_fast.relay.frames`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable, Union

from .. import wire
from ..audio import as_pcm16
from ..errors import ClosedError, DecodeError, RelayError
from .frames import (
    RELAY_VERSION,
    SUPPORTED_VERSIONS,
    AnimationFrame,
    AudioChunk,
    AudioOnly,
    Interrupt,
    RelayFrame,
    check_req_id,
    encode_frame,
)

__all__ = ["RelaySender", "Sink"]

INPUT_FORMATS = ("pcm_s16le", "ogg_opus")

logger = logging.getLogger("avatarkit_fast.relay")

Sink = Callable[[bytes], Union[None, Awaitable[Any]]]


class RelaySender:
    """Writes relay frames to ``sink``: a callable taking the frame's bytes,
    plain or async.  Async sinks are awaited one after another, in call order,
    by a writer task; ``await flush()`` waits for them.

    Wire it to a server-SDK session: pass ``transport_frames=sender.transport_frames``
    (and ``on_error=sender.on_error``) to the session, and send audio with ``await sender.send_audio(session, pcm, end)``
    (or, after each ``req_id = await session.send_audio(pcm, end)``, call
    ``sender.audio(req_id, pcm, end)``).

    Frames are written in format ``version`` 2 (numbered per request; the
    default) or 1 (for a reader that predates version 2).  In version 2,
    ``interrupt()`` without a req_id names the request whose audio was sent
    last, so that a copy of it arriving late cannot cut a newer request; before
    any audio it is sent as nil (whatever plays).  A frame the sink refuses
    (it raises) takes no sequence number.
    """

    #: Requests whose next sequence number is kept (older ones are forgotten).
    REMEMBER = 1024

    def __init__(self, sink: Sink, *, version: int = RELAY_VERSION, input_format: str = "pcm_s16le") -> None:
        if not callable(sink):
            raise TypeError("sink must be callable")
        if not isinstance(input_format, str) or input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
        self.input_format = input_format
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
        self._sink = sink
        self.version = version
        self._pending: deque[Awaitable[Any]] = deque()
        self._writer: asyncio.Task | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self._next_seq: OrderedDict[str, int] = OrderedDict()
        self._last_audio: str | None = None
        self.frames_sent = 0
        self.bytes_sent = 0
        self.envelopes_dropped = 0

    # The server SDK's callback: (serialized envelope, is_last).
    def transport_frames(self, data: bytes, last: bool = False) -> None:
        """Relay one envelope as the SDK hands it over; never raises into the SDK."""
        try:
            head = wire.peek_animation(data)
        except DecodeError:
            head = None
        if head is None or head.req_id is None:
            self.envelopes_dropped += 1
            logger.warning("relay: dropped an envelope that does not decode as animation")
            return
        req_id = head.req_id
        try:
            self.animation(req_id, [data])
        except Exception:
            logger.exception("relay: could not write an animation frame")

    async def send_audio(self, session, pcm: Any, end: bool = False) -> str:
        """Send ``pcm`` to the motion server through a server-SDK ``session``
        (``await session.send_audio(pcm, end)``) and relay it under the
        req_id the session gave it; returns that req_id."""
        data = self._audio_bytes(pcm)
        req_id = await session.send_audio(data, end=end)
        self.audio(req_id, data, end)
        return req_id

    def _audio_bytes(self, pcm: Any) -> bytes:
        """The audio as the bytes of a frame: arrays converted to s16le
        (TypeError / ValueError, naming the dtype or shape, for others)."""
        if self.input_format == "pcm_s16le":
            return bytes(as_pcm16(pcm, what="pcm"))
        try:
            return bytes(memoryview(pcm))
        except TypeError:
            raise TypeError(
                f"Ogg Opus audio must be a bytes-like object, got {type(pcm).__name__}"
            ) from None

    async def interrupt_session(self, session) -> str:
        """Interrupt the session's latest request on the motion server
        (``await session.interrupt()``) and on the client; returns its req_id."""
        req_id = await session.interrupt()
        self.interrupt(req_id)
        return req_id

    def on_error(self, error: Exception) -> None:
        """The server SDK's ``on_error`` callback: when the motion server fails a
        request (the error names its ``req_id``), the client plays that request's
        audio without animation instead of waiting for it.  Never raises."""
        req_id = getattr(error, "req_id", None)
        if not isinstance(req_id, str) or not req_id:
            return
        try:
            self.audio_only(req_id)
        except Exception:
            logger.exception("relay: could not write an audio-only frame")

    def audio(self, req_id: str, pcm: Any, end: bool = False) -> None:
        check_req_id(req_id, "audio")
        data = pcm if type(pcm) is bytes else self._audio_bytes(pcm)
        self._emit(req_id, lambda seq: AudioChunk(req_id, data, bool(end), seq))
        self._last_audio = req_id

    def animation(self, req_id: str, envelopes) -> None:
        self._emit(req_id, lambda seq: AnimationFrame(req_id, tuple(envelopes), seq))

    def audio_only(self, req_id: str) -> None:
        self._emit(req_id, lambda seq: AudioOnly(req_id, seq))

    def interrupt(self, req_id: str | None = None) -> None:
        if req_id is None and self.version >= 2:
            req_id = self._last_audio
        self._emit(None, lambda _seq: Interrupt(req_id))

    def _emit(self, req_id: str | None, make: Callable[[int | None], RelayFrame]) -> None:
        if self._closed:
            raise ClosedError("relay sender is closed")
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise RelayError(f"relay sink failed: {failure!r}", -1) from failure
        seq = None
        if req_id is not None and self.version >= 2:
            seq = self._next_seq.get(req_id, 0)
        frame = encode_frame(make(seq), version=self.version)
        try:
            result = self._sink(frame)
        except Exception as exc:
            raise RelayError(f"relay sink failed: {exc!r}", -1) from exc
        if seq is not None:
            self._next_seq[req_id] = seq + 1
            self._next_seq.move_to_end(req_id)
            if len(self._next_seq) > self.REMEMBER:
                self._next_seq.popitem(last=False)
        self.frames_sent += 1
        self.bytes_sent += len(frame)
        if inspect.isawaitable(result):
            self._pending.append(result)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._pending:
            awaitable = self._pending.popleft()
            try:
                await awaitable
            except Exception as exc:
                self._failure = exc
                for rest in self._pending:  # never awaited: close them quietly
                    if inspect.iscoroutine(rest):
                        rest.close()
                self._pending.clear()
                return

    async def flush(self) -> None:
        """Wait until every frame written so far has been taken by the sink."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise RelayError(f"relay sink failed: {failure!r}", -1) from failure

    async def aclose(self) -> None:
        """Flush, then refuse further frames."""
        try:
            await self.flush()
        finally:
            self._closed = True
