"""The relay: the hop from the backend to the client, in msgpack frames.

In host mode the backend holds the server-SDK session; the client holds the
:class:`~avatarkit_fast.AvatarController`.  The backend forwards the speech
audio it sends to the motion server and the animation envelopes it gets back;
:class:`RelaySender` writes them as frames to any transport, and
:class:`RelayReceiver` feeds frames into a controller.

Frame format
------------
One frame is one msgpack array (strings as ``str``, binary as ``bin``).
Version 2, which :class:`RelaySender` writes::

    [2, 1, req_id, seq, pcm, end]        audio chunk: PCM s16le mono bytes; end: bool
    [2, 2, req_id, seq, [envelope, ...]] animation: serialized Message envelopes
    [2, 3, req_id, seq]                  audio-only: no animation will come for req_id
    [2, 4, req_id or nil]                interrupt: stop req_id (nil: whatever plays)

Version 1 is the same without ``seq`` (``[1, 1, req_id, pcm, end]``,
``[1, 2, req_id, [...]]``, ``[1, 3, req_id]``, ``[1, 4, req_id or nil]``); a
reader takes both.  The first element is the format version, the second the
kind.  ``req_id`` is the motion server's request id (a non-empty string), the
key that ties audio and animation together.  ``seq`` numbers a request's audio,
animation and audio-only frames 0, 1, 2, ... in the order the sender wrote
them (``0 <= seq < 2**32``), so a transport that duplicates or reorders
frames (a datagram channel, a retrying proxy, a reconnect that resends) cannot
make a chunk play twice or a keyframe land in the wrong place: the receiver
drops a seq it already has and holds one that comes early until the frames
before it arrive (see :class:`RelayReceiver` for how long).  Interrupts carry
no seq: they act on arrival, and acting twice is the same as once.  One
WebSocket message (or one datagram, or one length-prefixed record of a byte
stream) carries exactly one frame.

A reader refuses, with :class:`~avatarkit_fast.errors.RelayError` and without
side effects, any frame that is not exactly this: another version (named in
the error), an unknown kind, a wrong arity or element type, a seq out of
range, trailing bytes.  Later versions may add kinds or trailing elements; a
reader refuses them rather than guess.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Union

import msgpack

from . import wire
from .errors import (
    AvatarKitError,
    ClosedError,
    ConnectionFailed,
    DecodeError,
    EncodeError,
    RelayError,
    RelayGap,
)

__all__ = [
    "AUDIO",
    "ANIMATION",
    "AUDIO_ONLY",
    "INTERRUPT",
    "MAX_ENVELOPES_PER_FRAME",
    "RELAY_VERSION",
    "SEQ_LIMIT",
    "SUPPORTED_VERSIONS",
    "AnimationFrame",
    "AudioChunk",
    "AudioOnly",
    "Interrupt",
    "RelayFrame",
    "ReceiverStats",
    "RelayReceiver",
    "RelaySender",
    "WebSocketSink",
    "decode_frame",
    "encode_frame",
    "pump_websocket",
]

logger = logging.getLogger("avatarkit_fast.relay")

RELAY_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
AUDIO = 1
ANIMATION = 2
AUDIO_ONLY = 3
INTERRUPT = 4
_KIND_NAMES = {AUDIO: "audio", ANIMATION: "animation", AUDIO_ONLY: "audio-only", INTERRUPT: "interrupt"}
_ARITY = {
    1: {AUDIO: 5, ANIMATION: 4, AUDIO_ONLY: 3, INTERRUPT: 3},
    2: {AUDIO: 6, ANIMATION: 5, AUDIO_ONLY: 4, INTERRUPT: 3},
}

#: Cap on envelopes in one animation frame (the service sends one per batch).
MAX_ENVELOPES_PER_FRAME = 4096
#: Cap on one frame's size (about 100 s of 48 kHz audio, or 8000 keyframes).
MAX_FRAME_BYTES = 16 << 20
#: Sequence numbers are ``0 <= seq < SEQ_LIMIT`` (years of 20 ms chunks).
SEQ_LIMIT = 1 << 32


@dataclass(frozen=True)
class AudioChunk:
    req_id: str
    pcm: bytes
    end: bool = False
    seq: int | None = None


@dataclass(frozen=True)
class AnimationFrame:
    req_id: str
    envelopes: tuple[bytes, ...]
    seq: int | None = None


@dataclass(frozen=True)
class AudioOnly:
    req_id: str
    seq: int | None = None


@dataclass(frozen=True)
class Interrupt:
    req_id: str | None = None


RelayFrame = Union[AudioChunk, AnimationFrame, AudioOnly, Interrupt]
_Sequenced = Union[AudioChunk, AnimationFrame, AudioOnly]


def _check_req_id(req_id: Any, what: str) -> str:
    if not isinstance(req_id, str) or not req_id:
        raise TypeError(f"{what}: req_id must be a non-empty str, got {req_id!r}")
    return req_id


def _valid_seq(seq: Any) -> bool:
    return isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < SEQ_LIMIT


def encode_frame(frame: RelayFrame, *, version: int | None = None) -> bytes:
    """Serialize one frame.

    ``version`` defaults to 2 for a frame that carries a ``seq`` and for an
    interrupt, and to 1 for an audio, animation or audio-only frame without
    one.  Version 2 needs a ``seq`` on those three kinds; version 1 has no
    room for one.
    """
    if version is None:
        version = 1 if getattr(frame, "seq", 0) is None else RELAY_VERSION
    elif version not in SUPPORTED_VERSIONS:
        raise EncodeError(f"relay format version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if isinstance(frame, Interrupt):
        if frame.req_id is not None:
            _check_req_id(frame.req_id, "interrupt")
        return msgpack.packb([version, INTERRUPT, frame.req_id], use_bin_type=True)
    if isinstance(frame, AudioChunk):
        _check_req_id(frame.req_id, "audio")
        if not isinstance(frame.end, bool):
            raise TypeError(f"audio: end must be a bool, got {type(frame.end).__name__}")
        kind, rest = AUDIO, [bytes(frame.pcm), frame.end]
    elif isinstance(frame, AnimationFrame):
        _check_req_id(frame.req_id, "animation")
        kind, rest = ANIMATION, [[bytes(e) for e in frame.envelopes]]
    elif isinstance(frame, AudioOnly):
        _check_req_id(frame.req_id, "audio-only")
        kind, rest = AUDIO_ONLY, []
    else:
        raise TypeError(f"not a relay frame: {type(frame).__name__}")
    seq = frame.seq
    if version == 1:
        if seq is not None:
            raise EncodeError(f"{_KIND_NAMES[kind]}: relay format version 1 has no seq (got {seq!r})")
        return msgpack.packb([1, kind, frame.req_id, *rest], use_bin_type=True)
    if not _valid_seq(seq):
        raise EncodeError(f"{_KIND_NAMES[kind]}: version 2 needs a seq, an int in [0, 2**32), got {seq!r}")
    return msgpack.packb([version, kind, frame.req_id, seq, *rest], use_bin_type=True)


def _bad(problem: str) -> RelayError:
    return RelayError(f"malformed relay frame: {problem}", -1)


def decode_frame(data: bytes | bytearray | memoryview) -> RelayFrame:
    """Parse and validate one frame (version 1 or 2); raises RelayError for anything else."""
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
    if version not in SUPPORTED_VERSIONS:
        raise RelayError(
            f"unsupported relay format version {version}; this reader speaks versions 1 and 2", -1
        )
    arity = _ARITY[version]
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in arity:
        raise _bad(f"unknown kind {kind!r}; expected one of {sorted(arity)}")
    name = _KIND_NAMES[kind]
    if len(body) != arity[kind]:
        raise _bad(f"{name} frame of version {version} has {len(body)} elements, expected {arity[kind]}")
    req_id = body[2]
    if kind == INTERRUPT:
        if req_id is not None and (not isinstance(req_id, str) or not req_id):
            raise _bad(f"interrupt req_id must be a non-empty string or nil, got {req_id!r}")
        return Interrupt(req_id)
    if not isinstance(req_id, str) or not req_id:
        raise _bad(f"{name} req_id must be a non-empty string, got {req_id!r}")
    if version == 1:
        seq, rest = None, body[3:]
    else:
        seq, rest = body[3], body[4:]
        if not _valid_seq(seq):
            raise _bad(f"{name} seq must be an integer in [0, 2**32), got {seq!r}")
    if kind == AUDIO:
        pcm, end = rest
        if not isinstance(pcm, bytes):
            raise _bad(f"audio pcm must be binary, got {type(pcm).__name__}")
        if not isinstance(end, bool):
            raise _bad(f"audio end must be a bool, got {end!r}")
        return AudioChunk(req_id, pcm, end, seq)
    if kind == ANIMATION:
        (envelopes,) = rest
        if not isinstance(envelopes, list):
            raise _bad(f"animation envelopes must be an array, got {type(envelopes).__name__}")
        for i, env in enumerate(envelopes):
            if not isinstance(env, bytes):
                raise _bad(f"animation envelope {i} must be binary, got {type(env).__name__}")
        return AnimationFrame(req_id, tuple(envelopes), seq)
    return AudioOnly(req_id, seq)


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

    Frames are written in format ``version`` 2 (numbered per request; the
    default) or 1 (for a reader that predates version 2).  In version 2,
    ``interrupt()`` without a req_id names the request whose audio was sent
    last, so that a copy of it arriving late cannot cut a newer request; before
    any audio it is sent as nil (whatever plays).  A frame the sink refuses
    (it raises) takes no sequence number.
    """

    #: Requests whose next sequence number is kept (older ones are forgotten).
    REMEMBER = 1024

    def __init__(self, sink: Sink, *, version: int = RELAY_VERSION) -> None:
        if not callable(sink):
            raise TypeError("sink must be callable")
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
        _check_req_id(req_id, "audio")
        self._emit(req_id, lambda seq: AudioChunk(req_id, bytes(pcm), bool(end), seq))
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


# -- the receiving end ----------------------------------------------------------


class Controller(Protocol):
    """What the receiver needs of an :class:`~avatarkit_fast.AvatarController`."""

    def yield_audio_data(self, pcm: Any, end: bool = False) -> str: ...

    def yield_frames_data(self, envelopes: Any, conversation_id: str) -> bool: ...

    def get_current_conversation_id(self) -> str | None: ...

    def interrupt(self) -> None: ...


@dataclass
class ReceiverStats:
    frames: int = 0  # frames that decoded (applied, held or dropped)
    audio_bytes: int = 0
    envelopes: int = 0
    dropped_audio: int = 0  # audio of an interrupted, superseded or ended request
    dropped_animation: int = 0  # animation for a req_id this receiver never saw audio of
    interrupts: int = 0
    duplicates: int = 0  # version-2 frames whose seq had come already: dropped
    reordered: int = 0  # version-2 frames that came early, were held, then applied in order
    late: int = 0  # version-2 frames that came after their gap was given up on: dropped
    gaps: int = 0  # gaps given up on, each reported as RelayGap
    missing: int = 0  # frames those gaps skipped


class _Sequence:
    """A request's version-2 numbering on the receiving side."""

    __slots__ = ("next", "held", "skipped")

    def __init__(self) -> None:
        self.next = 0  # the seq that applies next
        self.held: dict[int, _Sequenced] = {}  # came early: waits for the frames before it
        self.skipped: deque[tuple[int, int]] = deque(maxlen=16)  # gaps given up on: [start, stop)

    def was_skipped(self, seq: int) -> bool:
        return any(a <= seq < b for a, b in self.skipped)


class RelayReceiver:
    """Feeds relay frames into a controller.

    Keeps the map from the server's req_id to the controller's conversation id:
    audio of a new req_id opens a new conversation (interrupting an unfinished
    one), animation goes to its own request's conversation, so the controller
    drops animation of an earlier request as stale.  Audio of a request that was
    interrupted (here or by the application on the controller) is dropped, so
    nothing of it plays again.  A malformed frame raises RelayError before the
    controller or the receiver is touched.

    Version-2 frames are applied in their request's ``seq`` order, each once: a
    seq that came already is dropped (``stats.duplicates``); one that comes
    early is held until the frames before it arrive, then applied in order
    (``stats.reordered``).  A gap is waited for at most ``gap_timeout`` seconds
    (on ``clock``, checked by :meth:`poll` and by every :meth:`feed`) and at
    most ``reorder_window`` frames (held, over all requests, or ahead of the
    gap); then the receiver gives up on it: it reports
    :class:`~avatarkit_fast.errors.RelayGap` to ``on_error`` (or logs it),
    applies what it holds in order, and drops the missing frames if they come
    later (``stats.late``).  Before a new request's first audio applies, the
    frames held for earlier requests are applied (they were sent before it).
    Version-1 frames carry no numbers and apply as they come.

    Errors of a frame applied when it is fed (a malformed envelope the
    controller refuses) are raised by :meth:`feed`; errors of held frames
    applied later go to ``on_error``.  ``remember`` bounds how many requests
    are remembered (their conversation ids, ends, interrupts and numbering).
    Call ``feed``, ``poll`` and ``flush`` from one thread (or one event loop,
    as :func:`pump_websocket` does); the controller may be read from others.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        remember: int = 256,
        reorder_window: int = 64,
        gap_timeout: float = 0.2,
        on_error: Callable[[AvatarKitError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(remember, int) or remember < 1:
            raise ValueError(f"remember must be a positive int, got {remember!r}")
        if not isinstance(reorder_window, int) or reorder_window < 1:
            raise ValueError(f"reorder_window must be a positive int, got {reorder_window!r}")
        if not gap_timeout >= 0:
            raise ValueError(f"gap_timeout must be >= 0 seconds, got {gap_timeout!r}")
        self.controller = controller
        self.stats = ReceiverStats()
        self.on_error = on_error
        self.reorder_window = reorder_window
        self.gap_timeout = float(gap_timeout)
        self._clock = clock
        self._remember = remember
        self._conversations: OrderedDict[str, str] = OrderedDict()  # req_id -> conversation id
        self._ended: set[str] = set()
        self._dead: OrderedDict[str, None] = OrderedDict()
        self._current: str | None = None  # req_id whose audio came last
        self._sequences: OrderedDict[str, _Sequence] = OrderedDict()
        self._held = 0
        self._deadline: float | None = None

    def conversation_id(self, req_id: str) -> str | None:
        """The controller's conversation id for a server req_id, if known."""
        return self._conversations.get(req_id)

    @property
    def held(self) -> int:
        """Frames that came early and wait for the frames before them."""
        return self._held

    def feed(self, data: bytes | bytearray | memoryview) -> RelayFrame:
        """Decode one frame and apply it to the controller (or hold or drop it,
        see the class); returns the frame."""
        frame = decode_frame(data)
        self.stats.frames += 1
        if self._held and self._clock() >= self._deadline:
            self._give_up()
        if isinstance(frame, Interrupt):
            self._interrupt(frame.req_id)
        elif frame.seq is None:
            self._apply(frame)
        else:
            self._sequenced(frame)
        return frame

    def poll(self) -> float | None:
        """Give up on gaps whose wait is over; returns the seconds until the
        next one is due, or None when nothing is held.  Never raises."""
        if self._held and self._clock() >= self._deadline:
            self._give_up()
        if not self._held:
            return None
        return max(0.0, self._deadline - self._clock())

    def flush(self) -> None:
        """Give up on every gap now and apply what is held (the stream ended:
        nothing more will come).  Never raises."""
        if self._held:
            self._give_up()

    # -- version-2 numbering

    def _sequence(self, req_id: str) -> _Sequence:
        seqs = self._sequences
        state = seqs.get(req_id)
        if state is None:
            state = seqs[req_id] = _Sequence()
            while len(seqs) > self._remember:
                old = next(iter(seqs.values()))
                if old.held:
                    self._release(old)
                seqs.popitem(last=False)
        return state

    def _sequenced(self, frame: _Sequenced) -> None:
        req_id = frame.req_id
        if req_id in self._dead:
            self._apply(frame)  # counted and dropped there
            return
        state = self._sequence(req_id)
        seq = frame.seq
        if seq < state.next or seq in state.held:
            if state.was_skipped(seq):
                self.stats.late += 1
            else:
                self.stats.duplicates += 1
            return
        if seq > state.next:
            state.held[seq] = frame
            self._held += 1
            if self._held == 1:
                self._deadline = self._clock() + self.gap_timeout
            if seq - state.next > self.reorder_window or self._held > self.reorder_window:
                self._give_up()
            return
        state.next += 1
        try:
            self._apply(frame)
        finally:
            self._drain(state)

    def _take(self, state: _Sequence, seq: int) -> _Sequenced:
        frame = state.held.pop(seq)
        self._held -= 1
        if not self._held:
            self._deadline = None
        return frame

    def _drain(self, state: _Sequence) -> None:
        """Apply the held frames that follow on from ``state.next``."""
        while state.next in state.held:
            frame = self._take(state, state.next)
            state.next += 1
            self.stats.reordered += 1
            self._apply_later(frame)

    def _release(self, state: _Sequence, req_id: str | None = None) -> None:
        """Give up on the gaps of one request: apply all it holds, in order."""
        while state.held:
            seq = min(state.held)
            if seq > state.next:
                req_id = req_id or state.held[seq].req_id
                count = seq - state.next
                state.skipped.append((state.next, seq))
                self.stats.gaps += 1
                self.stats.missing += count
                self._report(RelayGap(
                    f"relay gap: {count} frame(s) of request {req_id!r} from seq {state.next} "
                    f"never came; going on from seq {seq}",
                    req_id, state.next, count,
                ))
                state.next = seq
            self._drain(state)

    def _give_up(self, keep: str | None = None) -> None:
        """Give up on the gaps of every request but ``keep``, oldest request first."""
        for req_id, state in list(self._sequences.items()):
            if state.held and req_id != keep:
                self._release(state, req_id)

    def _drop_held(self, req_id: str) -> None:
        state = self._sequences.get(req_id)
        if state is None or not state.held:
            return
        for seq in sorted(state.held):
            frame = self._take(state, seq)
            if isinstance(frame, AudioChunk):
                self.stats.dropped_audio += 1

    def _report(self, error: AvatarKitError) -> None:
        if self.on_error is None:
            logger.warning("%s", error)
            return
        try:
            self.on_error(error)
        except Exception:
            logger.exception("relay: on_error raised")

    def _apply_later(self, frame: _Sequenced) -> None:
        try:
            self._apply(frame)
        except AvatarKitError as exc:
            self._report(exc)

    # -- applying frames

    def _apply(self, frame: _Sequenced) -> None:
        if isinstance(frame, AudioChunk):
            self._audio(frame)
            return
        cid = self._conversations.get(frame.req_id)
        if cid is None:
            self.stats.dropped_animation += 1
        elif isinstance(frame, AnimationFrame):
            self.stats.envelopes += len(frame.envelopes)
            self.controller.yield_frames_data(list(frame.envelopes), cid)
        else:
            self.controller.yield_frames_data([], cid)

    def _kill(self, req_id: str) -> None:
        self._dead[req_id] = None
        while len(self._dead) > self._remember:
            self._dead.popitem(last=False)
        self._drop_held(req_id)

    def _audio(self, frame: AudioChunk) -> None:
        ctrl = self.controller
        req_id = frame.req_id
        if req_id in self._dead:
            self.stats.dropped_audio += 1
            return
        cid = self._conversations.get(req_id)
        if cid is not None:
            if req_id in self._ended or ctrl.get_current_conversation_id() != cid:
                # Ended already, or interrupted/superseded on the controller.
                self._kill(req_id)
                self.stats.dropped_audio += 1
                return
        else:
            # Frames held for earlier requests were sent before this one began.
            if self._held:
                self._give_up(keep=req_id)
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

    A malformed frame raises RelayError (an envelope the controller refuses,
    its DecodeError), or goes to ``on_error`` and the pump goes on; a closed
    controller's ClosedError ends the pump.  A connection that drops without a clean close raises
    :class:`~avatarkit_fast.errors.ConnectionFailed` (with the close code, if
    any), or hands it to ``on_error`` and returns; what arrived before it stays
    with the controller and plays.  While the receiver holds frames that came
    early, a timer calls :meth:`RelayReceiver.poll` when their wait is over,
    messages or not; when the connection ends, what is still held is applied
    (:meth:`RelayReceiver.flush`).  Gaps go to the receiver's own ``on_error``,
    or to this one if it has none.  Returns the number of frames fed.
    """
    import websockets

    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def arm() -> None:
        nonlocal timer
        if timer is not None:
            timer.cancel()
            timer = None
        wait = receiver.poll()
        if wait is not None:
            timer = loop.call_later(wait, arm)

    lend = receiver.on_error is None and on_error is not None
    if lend:
        receiver.on_error = on_error
    count = 0
    try:
        async for message in websocket:
            try:
                if isinstance(message, str):
                    raise RelayError("malformed relay frame: a text message, expected binary", -1)
                receiver.feed(message)
                count += 1
            except AvatarKitError as exc:  # a bad frame, or an envelope the controller refuses
                if on_error is None or isinstance(exc, ClosedError):
                    raise
                on_error(exc)
            if receiver.held or timer is not None:
                arm()
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
    finally:
        if timer is not None:
            timer.cancel()
        receiver.flush()
        if lend:
            receiver.on_error = None
    return count
