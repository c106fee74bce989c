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
