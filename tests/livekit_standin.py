"""The one stand-in of the LiveKit tests: the room connection.

No LiveKit server can run here, so ``StandInRoom`` stands for the calls the
framework makes on an ``rtc.Room``: ``isconnected()``, ``on``/``off``, and
``local_participant.publish_track(track, options)`` returning a publication
(``wait_for_subscription``).  Everything else is real: the tracks published
are the real ``rtc.LocalAudioTrack``/``LocalVideoTrack`` of the real
``AudioSource``/``VideoSource``, and they are read back, as a subscriber
would, with ``rtc.AudioStream``/``rtc.VideoStream`` (a local track can be
read without a room), stamping each frame's arrival.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from livekit import rtc


class TrackReader:
    """Reads a published track, recording (arrival time, payload) per frame."""

    def __init__(self, track, sample_rate: int = 16000) -> None:
        self.frames: list[tuple[float, object]] = []
        if isinstance(track, rtc.LocalAudioTrack):
            self.kind = "audio"
            self._stream = rtc.AudioStream(track, sample_rate=sample_rate, num_channels=1)
        else:
            self.kind = "video"
            self._stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for event in self._stream:
            now = time.monotonic()
            frame = event.frame
            if self.kind == "audio":
                self.frames.append((now, np.frombuffer(frame.data, np.int16).copy()))
            else:
                pixels = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 4)
                self.frames.append((now, pixels[:8, :, :3].copy()))

    def samples(self) -> np.ndarray:
        return np.concatenate([f for _, f in self.frames]) if self.frames else np.zeros(0, np.int16)

    async def aclose(self) -> None:
        self._task.cancel()
        await self._stream.aclose()


class StandInPublication:
    def __init__(self, track) -> None:
        self.track = track
        self.sid = f"TR_{id(track):x}"

    async def wait_for_subscription(self) -> None:
        return None


class StandInParticipant:
    def __init__(self, room: "StandInRoom", identity: str) -> None:
        self._room = room
        self.identity = identity
        self.publications: list[StandInPublication] = []

    async def publish_track(self, track, options=None) -> StandInPublication:
        publication = StandInPublication(track)
        self.publications.append(publication)
        self._room.readers[publication.track.name] = TrackReader(track, self._room.audio_rate)
        return publication


class StandInRoom:
    """Stands for ``rtc.Room``: isconnected, on/off, local_participant.publish_track."""

    def __init__(self, identity: str = "agent", *, audio_rate: int = 16000) -> None:
        self.audio_rate = audio_rate
        self.name = "room"
        self.local_participant = StandInParticipant(self, identity)
        self.readers: dict[str, TrackReader] = {}
        self._handlers: dict[str, list] = {}

    def isconnected(self) -> bool:
        return True

    def on(self, event: str, callback=None):
        def register(cb):
            self._handlers.setdefault(event, []).append(cb)
            return cb

        return register(callback) if callback is not None else register

    def off(self, event: str, callback) -> None:
        if callback in self._handlers.get(event, []):
            self._handlers[event].remove(callback)

    async def aclose(self) -> None:
        for reader in self.readers.values():
            await reader.aclose()


# -- two participants in one process ------------------------------------------------


class _Packet:
    """What ``rtc.Room`` hands to ``data_received``: an ``rtc.DataPacket``'s fields."""

    def __init__(self, data: bytes, participant, topic: str) -> None:
        self.data = data
        self.participant = participant
        self.topic = topic


class _StreamInfo:
    def __init__(self, topic: str, attributes: dict) -> None:
        self.topic = topic
        self.attributes = attributes
        self.stream_id = f"ST_{id(self):x}"


class StandInByteReader:
    """Stands for ``rtc.ByteStreamReader``: ``info`` and async iteration of chunks."""

    def __init__(self, info: _StreamInfo) -> None:
        self.info = info
        self._chunks: asyncio.Queue = asyncio.Queue()

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.get()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


class StandInByteWriter:
    """Stands for ``rtc.ByteStreamWriter``: ``write`` and ``aclose``."""

    def __init__(self, reader: StandInByteReader | None) -> None:
        self._reader = reader

    async def write(self, data: bytes) -> None:
        if self._reader is not None:
            self._reader._chunks.put_nowait(bytes(data))

    async def aclose(self, *args, **kw) -> None:
        if self._reader is not None:
            self._reader._chunks.put_nowait(None)


class PairedParticipant(StandInParticipant):
    """``local_participant`` of one side of a :class:`RoomPair`: publish_data,
    send_bytes/stream_bytes, perform_rpc and register_rpc_method."""

    def __init__(self, room: "PairedRoom", identity: str) -> None:
        super().__init__(room, identity)
        self._rpc_handlers: dict = {}
        self.kind = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        self.state = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
        self.attributes: dict = {}

    async def publish_data(self, payload, *, reliable=True, destination_identities=(), topic=""):
        self._room.pair.deliver_packet(self._room, bytes(payload), reliable, topic)

    async def send_bytes(self, data, *, topic="", attributes=None, **kw):
        writer = await self.stream_bytes("bytes", topic=topic, attributes=attributes)
        await writer.write(data)
        await writer.aclose()

    async def stream_bytes(self, name, *, topic="", attributes=None, **kw):
        peer = self._room.peer
        handler = peer._byte_handlers.get(topic)
        reader = None
        if handler is not None:
            reader = StandInByteReader(_StreamInfo(topic, dict(attributes or {})))
            handler(reader, self.identity)
        return StandInByteWriter(reader)

    def register_rpc_method(self, method, handler=None):
        if handler is None:
            return lambda h: self.register_rpc_method(method, h)
        self._rpc_handlers[method] = handler
        return handler

    async def perform_rpc(self, *, destination_identity, method, payload, response_timeout=None):
        peer = self._room.peer.local_participant
        handler = peer._rpc_handlers.get(method)
        if handler is None:
            raise rtc.RpcError(rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD, "unsupported method")
        data = rtc.RpcInvocationData(
            request_id="rq", caller_identity=self.identity, payload=payload, response_timeout=5.0)
        result = handler(data)
        if asyncio.iscoroutine(result):
            result = await result
        return result


class PairedRoom(StandInRoom):
    def __init__(self, pair: "RoomPair", identity: str) -> None:
        super().__init__(identity)
        self.pair = pair
        self.local_participant = PairedParticipant(self, identity)
        self._byte_handlers: dict = {}
        self.peer: PairedRoom | None = None

    @property
    def remote_participants(self) -> dict:
        return {self.peer.local_participant.identity: self.peer.local_participant}

    def register_byte_stream_handler(self, topic, handler) -> None:
        if topic in self._byte_handlers:
            raise ValueError(f"byte stream handler for topic {topic!r} already set")
        self._byte_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic) -> None:
        self._byte_handlers.pop(topic, None)

    def emit(self, event: str, *args) -> None:
        for cb in list(self._handlers.get(event, [])):
            cb(*args)


class RoomPair:
    """Two participants in one room, in one process: what one publishes the
    other receives.  Lossy data packets (``reliable=False``) are dropped with
    probability ``loss`` and delivered twice with probability ``duplicate``;
    byte streams, reliable packets and RPCs always arrive once."""

    def __init__(self, a: str = "agent", b: str = "avatar", *, loss: float = 0.0,
                 duplicate: float = 0.0, seed: int = 0) -> None:
        self.a = PairedRoom(self, a)
        self.b = PairedRoom(self, b)
        self.a.peer, self.b.peer = self.b, self.a
        self.loss, self.duplicate = loss, duplicate
        self._rng = np.random.default_rng(seed)
        self.dropped: list[bytes] = []
        self.doubled = 0

    def deliver_packet(self, sender: PairedRoom, data: bytes, reliable: bool, topic: str) -> None:
        copies = 1
        if not reliable:
            if self._rng.random() < self.loss:
                self.dropped.append(data)
                return
            if self._rng.random() < self.duplicate:
                copies, self.doubled = 2, self.doubled + 1
        packet = _Packet(data, sender.local_participant, topic)
        for _ in range(copies):
            asyncio.get_running_loop().call_soon(sender.peer.emit, "data_received", packet)
