"""The driving protocol, server side: one client session and its requests.

After the WebSocket upgrade the client sends ``ClientConfigureSession``, the
server answers ``ServerConfirmSession`` and the session streams:
``ClientAudioInput`` in, ``ServerResponseAnimation`` out, ``ClientInterrupt``
to stop a request, ``ServerError`` for trouble.

Animation comes in the service's batching: the first envelope of a request
carries 50 keyframes (2 s of audio), the following ones 100 (4 s), the last one
whatever remains with ``end`` set; 25 keyframes per second of audio.  A batch
leaves as soon as its audio has arrived (or, with a ``speed``, when its pace
says so).

Audio is PCM s16le (``audio_format`` 0) or Ogg Opus (``audio_format`` 1,
``spatius.AudioFormat.OGG_OPUS``, what the vendor's LiveKit plugin sends by
default): one Ogg Opus stream per request, in messages of any size, decoded
as it arrives to the session's sample rate; a malformed stream is a 400 for
that request (named with its ``req_id``), which is then stopped.

Error replies (``ServerError.code``, then the WebSocket close code):

======  =====================================================  ==========
code    when                                                   close code
======  =====================================================  ==========
400     malformed or unexpected message, bad configuration     1002/1008
413     a request's audio exceeds the configured cap           (stays open)
14      LiveKit / Agora egress requested (not available here)  1008
4002    the session reached its maximum duration               4002
4003    too many concurrent sessions                           4003
======  =====================================================  ==========

The messages use the phrases the SDK classifies (``expected
ClientConfigureSession message``, ``unsupported sample rate``, ...), so its
``AvatarSDKError.code`` comes out right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Optional, Protocol

from aiohttp import WSMsgType

from .. import wire
from .._ids import new_id
from ..audio import OggOpusDecoder
from ..errors import DecodeError, EncodeError
from .motion import SUPPORTED_SAMPLE_RATES, MotionSynth

__all__ = [
    "ERR_BAD_REQUEST",
    "ERR_CONCURRENCY",
    "ERR_SESSION_DURATION",
    "ERR_TOO_LONG",
    "ERR_UNAVAILABLE",
    "FINISHED_MEMORY",
    "FIRST_BATCH",
    "FPS",
    "NEXT_BATCH",
    "ProtocolSession",
    "Request",
    "RequestObserver",
    "SessionHost",
]

logger = logging.getLogger("avatarkit_fast.server")

from .._schema import FPS  # noqa: E402
FIRST_BATCH = 50  # keyframes in a request's first envelope (2 s of audio)
NEXT_BATCH = 100  # keyframes in every later envelope but the last (4 s)

ERR_BAD_REQUEST = 400
ERR_TOO_LONG = 413
ERR_UNAVAILABLE = 14  # gRPC UNAVAILABLE: the SDK reads it as egressUnavailable
ERR_SESSION_DURATION = 4002
ERR_CONCURRENCY = 4003

CLOSE_PROTOCOL = 1002
CLOSE_POLICY = 1008

FINISHED_MEMORY = 256  # ended/interrupted req_ids remembered per session


class SessionHost(Protocol):
    """What a :class:`ProtocolSession` reads of its server (a ``MotionServer`` fits)."""

    speed: Optional[float]
    handshake_timeout: float
    max_request_seconds: float
    max_session_seconds: Optional[float]
    stats: "ServerStatsLike"
    #: Told each request's audio, keyframes and interrupt (or None); its hooks never block.
    observer: Optional["RequestObserver"]


class RequestObserver(Protocol):
    """Watches the requests of every session (the live view's feed)."""

    def request_audio(self, session: str, req_id: str, sample_rate: int, pcm: bytes, end: bool) -> None: ...

    def request_animation(self, session: str, req_id: str, frames, end: bool) -> None: ...

    def request_interrupted(self, session: str, req_id: str) -> None: ...


class ServerStatsLike(Protocol):
    """The counters a session adds to (``ServerStats``)."""

    sessions_started: int
    requests: int
    requests_interrupted: int
    envelopes_sent: int
    keyframes_sent: int
    errors_sent: int


class Request:
    """One req_id: its audio, its keyframe synth and the task sending its batches."""

    __slots__ = ("req_id", "synth", "ended", "interrupted", "wake", "task", "started", "need", "decoder")

    def __init__(self, req_id: str, sample_rate: int, audio_format: int = 0) -> None:
        self.req_id = req_id
        self.synth = MotionSynth(sample_rate, FPS)
        # Ogg Opus requests: one stream per request, decoded to the session's
        # rate as it arrives (the synth animates PCM).
        self.decoder = OggOpusDecoder(sample_rate) if audio_format == 1 else None
        self.ended = False
        self.interrupted = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.started = time.monotonic()
        self.need = FIRST_BATCH  # keyframes the next batch waits for


class ProtocolSession:
    """One client's session on the server: the handshake, then audio in,
    animation out in the service's batching, interrupts, and the errors.

    ``host`` is what the session needs of its server (:class:`SessionHost`);
    ``ws`` an aiohttp ``WebSocketResponse`` already prepared.  ``run()``
    drives the session until the client or the server ends it;
    ``stop_requests()`` then cancels whatever is still generating.
    """

    def __init__(self, host: "SessionHost", ws, avatar_id: str) -> None:
        self.server = host
        self.ws = ws
        self.avatar_id = avatar_id
        self.connection_id = new_id()
        self.sample_rate = 0
        self.audio_format = 0
        self.requests: dict[str, Request] = {}
        self.finished: OrderedDict[str, str] = OrderedDict()  # req_id -> "ended"/"interrupted"
        self.send_lock = asyncio.Lock()
        self.closed = False

    # -- sending --------------------------------------------------------------

    async def send(self, data: bytes) -> bool:
        async with self.send_lock:
            if self.closed or self.ws.closed:
                return False
            try:
                await self.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                self.closed = True
                return False
            return True

    async def error(self, code: int, message: str, req_id: str = "") -> None:
        self.server.stats.errors_sent += 1
        logger.info("session %s: error %s: %s", self.connection_id, code, message)
        await self.send(
            wire.encode_message(
                wire.ServerErrorMessage(
                    connection_id=self.connection_id, req_id=req_id, code=code, message=message
                )
            )
        )

    async def close(self, code: int, reason: str) -> None:
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=reason.encode()[:120])
        self.closed = True

    async def fail(self, code: int, message: str, close_code: int) -> None:
        await self.error(code, message)
        await self.close(close_code, message)

    # -- the protocol ---------------------------------------------------------

    async def run(self) -> None:
        configured = await self.handshake()
        if not configured:
            return
        self.server.stats.sessions_started += 1
        deadline = None
        if self.server.max_session_seconds is not None:
            deadline = time.monotonic() + self.server.max_session_seconds
        while not self.closed:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                msg = await self.ws.receive(timeout=timeout)
            except asyncio.TimeoutError:
                await self.fail(ERR_SESSION_DURATION, "maximum session duration reached", ERR_SESSION_DURATION)
                return
            if msg.type == WSMsgType.BINARY:
                try:
                    decoded = wire.decode_message(msg.data)
                except DecodeError as exc:
                    await self.fail(ERR_BAD_REQUEST, f"invalid protobuf payload: {exc}", CLOSE_PROTOCOL)
                    return
                await self.dispatch(decoded)
            elif msg.type == WSMsgType.TEXT:
                await self.fail(ERR_BAD_REQUEST, "expected binary protobuf message, got text", CLOSE_PROTOCOL)
                return
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    async def handshake(self) -> bool:
        try:
            msg = await self.ws.receive(timeout=self.server.handshake_timeout)
        except asyncio.TimeoutError:
            await self.fail(
                ERR_BAD_REQUEST,
                f"expected ClientConfigureSession message within {self.server.handshake_timeout:g} s",
                CLOSE_PROTOCOL,
            )
            return False
        if msg.type == WSMsgType.TEXT:
            await self.fail(
                ERR_BAD_REQUEST, "failed to unmarshal initial message: expected binary protobuf, got text",
                CLOSE_PROTOCOL,
            )
            return False
        if msg.type != WSMsgType.BINARY:
            return False
        try:
            first = wire.decode_message(msg.data)
        except DecodeError as exc:
            await self.fail(ERR_BAD_REQUEST, f"failed to unmarshal initial message: {exc}", CLOSE_PROTOCOL)
            return False
        if not isinstance(first, wire.ClientConfigureSession):
            await self.fail(
                ERR_BAD_REQUEST,
                f"expected ClientConfigureSession message, got unexpected message type {first.type}",
                CLOSE_PROTOCOL,
            )
            return False
        if first.egress_type or first.livekit_egress is not None or first.agora_egress is not None:
            await self.fail(
                ERR_UNAVAILABLE,
                "egress client is not configured on server (LiveKit and Agora egress are not available locally)",
                CLOSE_POLICY,
            )
            return False
        if first.sample_rate not in SUPPORTED_SAMPLE_RATES:
            await self.fail(
                ERR_BAD_REQUEST,
                f"unsupported sample rate {first.sample_rate}; supported: "
                + ", ".join(map(str, SUPPORTED_SAMPLE_RATES)),
                CLOSE_POLICY,
            )
            return False
        if first.audio_format not in (0, 1):
            await self.fail(
                ERR_BAD_REQUEST,
                f"unsupported audio format {first.audio_format}; supported: 0 (PCM_S16LE), "
                "1 (OGG_OPUS)",
                CLOSE_POLICY,
            )
            return False
        self.sample_rate = first.sample_rate
        self.audio_format = first.audio_format
        return await self.send(
            wire.encode_message(wire.ServerConfirmSession(connection_id=self.connection_id))
        )

    async def dispatch(self, msg) -> None:
        if isinstance(msg, wire.ClientAudioInput):
            await self.on_audio(msg)
        elif isinstance(msg, wire.ClientInterrupt):
            self.on_interrupt(msg.req_id)
        elif isinstance(msg, wire.ClientConfigureSession):
            await self.error(ERR_BAD_REQUEST, "session already configured: unexpected message type 1")
        else:
            await self.error(ERR_BAD_REQUEST, f"unexpected message type {msg.type}")

    async def on_audio(self, msg) -> None:
        req_id = msg.req_id
        if not req_id:
            await self.error(ERR_BAD_REQUEST, "ClientAudioInput without req_id")
            return
        state = self.finished.get(req_id)
        if state == "interrupted":
            return  # audio already in flight when the interrupt came: dropped
        if state is not None:
            await self.error(ERR_BAD_REQUEST, f"request {req_id} already ended", req_id)
            return
        req = self.requests.get(req_id)
        if req is None:
            req = Request(req_id, self.sample_rate, self.audio_format)
            self.requests[req_id] = req
            self.server.stats.requests += 1
            req.task = asyncio.get_running_loop().create_task(self.generate(req))
        if req.decoder is None:
            pcm_bytes = msg.audio
        else:
            try:
                pcm = req.decoder.feed(msg.audio, last=bool(msg.end))
            except DecodeError as exc:
                await self.error(ERR_BAD_REQUEST, f"request {req_id}: {exc}", req_id)
                self.on_interrupt(req_id)
                return
            pcm_bytes = pcm.astype("<i2", copy=False).tobytes()
        if pcm_bytes:
            req.synth.push(pcm_bytes)
        observer = getattr(self.server, "observer", None)
        if observer is not None:
            observer.request_audio(self.connection_id, req_id, self.sample_rate, pcm_bytes, bool(msg.end))
        if req.synth.samples_in > self.server.max_request_seconds * self.sample_rate:
            await self.error(
                ERR_TOO_LONG,
                f"request {req_id} exceeds {self.server.max_request_seconds:g} s of audio",
                req_id,
            )
            self.on_interrupt(req_id)
            return
        if msg.end:
            req.ended = True
        req.wake.set()
        if req.ended or req.synth.available >= req.need:
            # A batch is ready: let it go out before reading on (aiohttp hands
            # over queued messages without yielding to other tasks).
            await asyncio.sleep(0)

    def on_interrupt(self, req_id: str) -> None:
        req = self.requests.pop(req_id, None)
        if req is None:
            return  # unknown or already finished: nothing to stop
        req.interrupted = True
        req.wake.set()
        self.server.stats.requests_interrupted += 1
        observer = getattr(self.server, "observer", None)
        if observer is not None:
            observer.request_interrupted(self.connection_id, req_id)
        self._remember(req_id, "interrupted")

    def _remember(self, req_id: str, state: str) -> None:
        self.finished[req_id] = state
        while len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)

    async def generate(self, req: Request) -> None:
        """Send the request's batches as their audio arrives, the last with ``end``."""
        speed = self.server.speed
        sent = 0
        try:
            while True:
                need = req.need = FIRST_BATCH if sent == 0 else NEXT_BATCH
                while not req.interrupted and not req.ended and req.synth.available < need:
                    req.wake.clear()
                    await req.wake.wait()
                if req.interrupted:
                    return
                available = req.synth.available
                final = req.ended and available <= need
                n = available if final else need
                frames = req.synth.take(n)
                if speed is not None:
                    due = req.started + (sent + n) / FPS / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if req.interrupted:
                    return
                data = wire.encode_animation(
                    frames, req_id=req.req_id, connection_id=self.connection_id, end=final
                )
                if not await self.send(data):
                    return
                sent += n
                observer = getattr(self.server, "observer", None)
                if observer is not None:
                    observer.request_animation(self.connection_id, req.req_id, frames, final)
                self.server.stats.envelopes_sent += 1
                self.server.stats.keyframes_sent += n
                if final:
                    self.requests.pop(req.req_id, None)
                    self._remember(req.req_id, "ended")
                    return
                # Let the reader run (an interrupt may be waiting) between batches.
                await asyncio.sleep(0)
        except (EncodeError, ValueError) as exc:  # pragma: no cover - a bug, reported not raised
            logger.exception("request %s failed", req.req_id)
            await self.error(500, f"internal error: {exc}", req.req_id)

    async def stop_requests(self) -> None:
        self.closed = True
        tasks = [r.task for r in self.requests.values() if r.task is not None]
        for req in self.requests.values():
            req.interrupted = True
            req.wake.set()
        self.requests.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
