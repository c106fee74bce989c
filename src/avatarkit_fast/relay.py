"""The relay: the hop from the backend to the client, in msgpack frames.

In host mode the backend holds the server-SDK session; the client holds the
:class:`~avatarkit_fast.AvatarController`.  The backend forwards the speech
audio it sends to the motion server and the animation envelopes it gets back;
:class:`RelaySender` writes them as frames to any transport, and
:class:`RelayReceiver` feeds frames into a controller.

Frame format, version 1
-----------------------
One frame is one msgpack array (strings as ``str``, binary as ``bin``)::

    [1, 1, req_id, pcm, end]        audio chunk: PCM s16le mono bytes; end: bool
    [1, 2, req_id, [envelope, ...]] animation: serialized Message envelopes
    [1, 3, req_id]                  audio-only: no animation will come for req_id
    [1, 4, req_id or nil]           interrupt: stop req_id (nil: whatever plays)

The first element is the format version, the second the kind.  ``req_id`` is
the motion server's request id (a non-empty string), the key that ties audio
and animation together.  One WebSocket message (or one datagram, or one
length-prefixed record of a byte stream) carries exactly one frame.

A reader refuses, with :class:`~avatarkit_fast.errors.RelayError` and without
side effects, any frame that is not exactly this: another version (named in
the error), an unknown kind, a wrong arity or element type, trailing bytes.
Later versions may add kinds or trailing elements; a version-1 reader refuses
them rather than guess.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Union

import msgpack

from . import wire
from .errors import AvatarKitError, ClosedError, ConnectionFailed, DecodeError, RelayError

__all__ = [
    "AUDIO",
    "ANIMATION",
    "AUDIO_ONLY",
    "INTERRUPT",
    "MAX_ENVELOPES_PER_FRAME",
    "RELAY_VERSION",
    "AnimationFrame",
    "AudioChunk",
    "AudioOnly",
    "Interrupt",
    "RelayFrame",
    "RelayReceiver",
    "RelaySender",
    "WebSocketSink",
    "decode_frame",
    "encode_frame",
    "pump_websocket",
]

logger = logging.getLogger("avatarkit_fast.relay")

RELAY_VERSION = 1
AUDIO = 1
ANIMATION = 2
AUDIO_ONLY = 3
INTERRUPT = 4
_KIND_NAMES = {AUDIO: "audio", ANIMATION: "animation", AUDIO_ONLY: "audio-only", INTERRUPT: "interrupt"}
_ARITY = {AUDIO: 5, ANIMATION: 4, AUDIO_ONLY: 3, INTERRUPT: 3}

#: Cap on envelopes in one animation frame (the service sends one per batch).
MAX_ENVELOPES_PER_FRAME = 4096
#: Cap on one frame's size (about 100 s of 48 kHz audio, or 8000 keyframes).
MAX_FRAME_BYTES = 16 << 20


@dataclass(frozen=True)
class AudioChunk:
    req_id: str
    pcm: bytes
    end: bool = False


@dataclass(frozen=True)
class AnimationFrame:
    req_id: str
    envelopes: tuple[bytes, ...]


@dataclass(frozen=True)
class AudioOnly:
    req_id: str


@dataclass(frozen=True)
class Interrupt:
    req_id: str | None = None


RelayFrame = Union[AudioChunk, AnimationFrame, AudioOnly, Interrupt]


def _check_req_id(req_id: Any, what: str) -> str:
    if not isinstance(req_id, str) or not req_id:
        raise TypeError(f"{what}: req_id must be a non-empty str, got {req_id!r}")
    return req_id


def encode_frame(frame: RelayFrame) -> bytes:
    """Serialize one frame (version 1)."""
    if isinstance(frame, AudioChunk):
        _check_req_id(frame.req_id, "audio")
        if not isinstance(frame.end, bool):
            raise TypeError(f"audio: end must be a bool, got {type(frame.end).__name__}")
        body = [RELAY_VERSION, AUDIO, frame.req_id, bytes(frame.pcm), frame.end]
    elif isinstance(frame, AnimationFrame):
        _check_req_id(frame.req_id, "animation")
        envelopes = [bytes(e) for e in frame.envelopes]
        body = [RELAY_VERSION, ANIMATION, frame.req_id, envelopes]
    elif isinstance(frame, AudioOnly):
        body = [RELAY_VERSION, AUDIO_ONLY, _check_req_id(frame.req_id, "audio-only")]
    elif isinstance(frame, Interrupt):
        if frame.req_id is not None:
            _check_req_id(frame.req_id, "interrupt")
        body = [RELAY_VERSION, INTERRUPT, frame.req_id]
    else:
        raise TypeError(f"not a relay frame: {type(frame).__name__}")
    return msgpack.packb(body, use_bin_type=True)


def _bad(problem: str) -> RelayError:
    return RelayError(f"malformed relay frame: {problem}", -1)


def decode_frame(data: bytes | bytearray | memoryview) -> RelayFrame:
    """Parse and validate one frame; raises RelayError for anything else."""
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
    if version != RELAY_VERSION:
        raise RelayError(
            f"unsupported relay format version {version}; this reader speaks version {RELAY_VERSION}",
            -1,
        )
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in _ARITY:
        raise _bad(f"unknown kind {kind!r}; expected one of {sorted(_ARITY)}")
    name = _KIND_NAMES[kind]
    if len(body) != _ARITY[kind]:
        raise _bad(f"{name} frame has {len(body)} elements, expected {_ARITY[kind]}")
    req_id = body[2]
    if kind == INTERRUPT:
        if req_id is not None and (not isinstance(req_id, str) or not req_id):
            raise _bad(f"interrupt req_id must be a non-empty string or nil, got {req_id!r}")
        return Interrupt(req_id)
    if not isinstance(req_id, str) or not req_id:
        raise _bad(f"{name} req_id must be a non-empty string, got {req_id!r}")
    if kind == AUDIO:
        pcm, end = body[3], body[4]
        if not isinstance(pcm, bytes):
            raise _bad(f"audio pcm must be binary, got {type(pcm).__name__}")
        if not isinstance(end, bool):
            raise _bad(f"audio end must be a bool, got {end!r}")
        return AudioChunk(req_id, pcm, end)
    if kind == ANIMATION:
        envelopes = body[3]
        if not isinstance(envelopes, list):
            raise _bad(f"animation envelopes must be an array, got {type(envelopes).__name__}")
        for i, env in enumerate(envelopes):
            if not isinstance(env, bytes):
                raise _bad(f"animation envelope {i} must be binary, got {type(env).__name__}")
        return AnimationFrame(req_id, tuple(envelopes))
    return AudioOnly(req_id)


# -- the sending end ------------------------------------------------------------

Sink = Callable[[bytes], Union[None, Awaitable[Any]]]


class RelaySender:
    """Writes relay frames to ``sink``: a callable taking the frame's bytes,
    plain or async.  Async sinks are awaited one after another, in call order,
    by a writer task; ``await flush()`` waits for them.

    Wire it to a server-SDK session: pass ``transport_frames=sender.transport_frames``
    (and ``on_error=sender.on_error``) to the session, and send audio with ``await sender.send_audio(session, pcm, end)``
    (or, after each ``req_id = await session.send_audio(pcm, end)``, call
    ``sender.audio(req_id, pcm, end)``).
    """

    def __init__(self, sink: Sink) -> None:
        if not callable(sink):
            raise TypeError("sink must be callable")
        self._sink = sink
        self._pending: deque[Awaitable[Any]] = deque()
        self._writer: asyncio.Task | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self.frames_sent = 0
        self.bytes_sent = 0
        self.envelopes_dropped = 0

    # The server SDK's callback: (serialized envelope, is_last).
    def transport_frames(self, data: bytes, last: bool = False) -> None:
        """Relay one envelope as the SDK hands it over; never raises into the SDK."""
        try:
            req_id = wire.decode_message(data).req_id
        except (DecodeError, AttributeError):
            self.envelopes_dropped += 1
            logger.warning("relay: dropped an envelope that does not decode as animation")
            return
        try:
            self.animation(req_id, [data])
        except Exception:
            logger.exception("relay: could not write an animation frame")

    async def send_audio(self, session, pcm: bytes | bytearray | memoryview, end: bool = False) -> str:
        """Send ``pcm`` to the motion server through a server-SDK ``session``
        (``await session.send_audio(pcm, end)``) and relay it under the
        req_id the session gave it; returns that req_id."""
        req_id = await session.send_audio(pcm, end=end)
        self.audio(req_id, pcm, end)
        return req_id

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

    def audio(self, req_id: str, pcm: bytes | bytearray | memoryview, end: bool = False) -> None:
        self._emit(encode_frame(AudioChunk(req_id, bytes(pcm), bool(end))))

    def animation(self, req_id: str, envelopes) -> None:
        self._emit(encode_frame(AnimationFrame(req_id, tuple(envelopes))))

    def audio_only(self, req_id: str) -> None:
        self._emit(encode_frame(AudioOnly(req_id)))

    def interrupt(self, req_id: str | None = None) -> None:
        self._emit(encode_frame(Interrupt(req_id)))

    def _emit(self, frame: bytes) -> None:
        if self._closed:
            raise ClosedError("relay sender is closed")
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise RelayError(f"relay sink failed: {failure!r}", -1) from failure
        result = self._sink(frame)
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


# -- the receiving end ----------------------------------------------------------


class Controller(Protocol):
    """What the receiver needs of an :class:`~avatarkit_fast.AvatarController`."""

    def yield_audio_data(self, pcm: Any, end: bool = False) -> str: ...

    def yield_frames_data(self, envelopes: Any, conversation_id: str) -> bool: ...

    def get_current_conversation_id(self) -> str | None: ...

    def interrupt(self) -> None: ...


@dataclass
class ReceiverStats:
    frames: int = 0
    audio_bytes: int = 0
    envelopes: int = 0
    dropped_audio: int = 0  # audio of an interrupted, superseded or ended request
    dropped_animation: int = 0  # animation for a req_id this receiver never saw audio of
    interrupts: int = 0


class RelayReceiver:
    """Feeds relay frames into a controller.

    Keeps the map from the server's req_id to the controller's conversation id:
    audio of a new req_id opens a new conversation (interrupting an unfinished
    one), animation goes to its own request's conversation, so the controller
    drops animation of an earlier request as stale.  Audio of a request that was
    interrupted (here or by the application on the controller) is dropped, so
    nothing of it plays again.  A malformed frame raises RelayError before the
    controller is touched.
    """

    def __init__(self, controller: Controller, *, remember: int = 256) -> None:
        self.controller = controller
        self.stats = ReceiverStats()
        self._remember = remember
        self._conversations: OrderedDict[str, str] = OrderedDict()  # req_id -> conversation id
        self._ended: set[str] = set()
        self._dead: OrderedDict[str, None] = OrderedDict()
        self._current: str | None = None  # req_id whose audio came last

    def conversation_id(self, req_id: str) -> str | None:
        """The controller's conversation id for a server req_id, if known."""
        return self._conversations.get(req_id)

    def feed(self, data: bytes | bytearray | memoryview) -> RelayFrame:
        """Decode one frame and apply it to the controller; returns the frame."""
        frame = decode_frame(data)
        self.stats.frames += 1
        if isinstance(frame, AudioChunk):
            self._audio(frame)
        elif isinstance(frame, AnimationFrame):
            cid = self._conversations.get(frame.req_id)
            if cid is None:
                self.stats.dropped_animation += 1
            else:
                self.stats.envelopes += len(frame.envelopes)
                self.controller.yield_frames_data(list(frame.envelopes), cid)
        elif isinstance(frame, AudioOnly):
            cid = self._conversations.get(frame.req_id)
            if cid is None:
                self.stats.dropped_animation += 1
            else:
                self.controller.yield_frames_data([], cid)
        else:
            self._interrupt(frame.req_id)
        return frame

    def _kill(self, req_id: str) -> None:
        self._dead[req_id] = None
        while len(self._dead) > self._remember:
            self._dead.popitem(last=False)

    def _audio(self, frame: AudioChunk) -> None:
        ctrl = self.controller
        req_id = frame.req_id
        cid = self._conversations.get(req_id)
        if req_id in self._dead:
            self.stats.dropped_audio += 1
            return
        if cid is not None:
            if req_id in self._ended or ctrl.get_current_conversation_id() != cid:
                # Ended already, or interrupted/superseded on the controller.
                self._kill(req_id)
                self.stats.dropped_audio += 1
                return
        else:
            current = self._current
            current_cid = None if current is None else self._conversations.get(current)
            if (
                current_cid is not None
                and current not in self._ended
                and ctrl.get_current_conversation_id() == current_cid
            ):
                # The previous request never sent end: cut it, or its
                # conversation would swallow this request's audio.
                ctrl.interrupt()
                self._kill(current)
        new_cid = ctrl.yield_audio_data(frame.pcm, end=frame.end)
        if cid is None:
            self._conversations[req_id] = new_cid
            while len(self._conversations) > self._remember:
                old, _ = self._conversations.popitem(last=False)
                self._ended.discard(old)
            self._current = req_id
        self.stats.audio_bytes += len(frame.pcm)
        if frame.end:
            self._ended.add(req_id)

    def _interrupt(self, req_id: str | None) -> None:
        self.stats.interrupts += 1
        ctrl = self.controller
        if req_id is None:
            if self._current is not None:
                self._kill(self._current)
            ctrl.interrupt()
            return
        # Kill it even if unknown here: audio of it that comes later is dropped.
        self._kill(req_id)
        cid = self._conversations.get(req_id)
        if cid is not None and ctrl.get_current_conversation_id() == cid:
            ctrl.interrupt()


# -- WebSocket transport ----------------------------------------------------------


class WebSocketSink:
    """An async sink writing each frame as one binary WebSocket message
    (any ``websockets`` connection, client or server side)."""

    def __init__(self, websocket) -> None:
        self.websocket = websocket

    async def __call__(self, frame: bytes) -> None:
        await self.websocket.send(frame)


async def pump_websocket(
    websocket,
    receiver: RelayReceiver,
    *,
    on_error: Callable[[AvatarKitError], None] | None = None,
) -> int:
    """Feed every message of ``websocket`` to ``receiver`` until it closes.

    A malformed frame raises RelayError, or goes to ``on_error`` and the pump
    goes on.  A connection that drops without a clean close raises
    :class:`~avatarkit_fast.errors.ConnectionFailed` (with the close code, if
    any), or hands it to ``on_error`` and returns; what arrived before it stays
    with the controller and plays.  Returns the number of frames fed.
    """
    import websockets

    count = 0
    try:
        async for message in websocket:
            try:
                if isinstance(message, str):
                    raise RelayError("malformed relay frame: a text message, expected binary", -1)
                receiver.feed(message)
                count += 1
            except RelayError as exc:
                if on_error is None:
                    raise
                on_error(exc)
    except websockets.exceptions.ConnectionClosedOK:
        pass
    except websockets.exceptions.ConnectionClosedError as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        failure = ConnectionFailed(
            f"relay connection dropped after {count} frames (close code {code})", code
        )
        if on_error is None:
            raise failure from exc
        on_error(failure)
    return count
