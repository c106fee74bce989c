"""The host-mode relay over a LiveKit room: :class:`LiveKitSink` (one relay
frame per data packet) for a :class:`~avatarkit_fast.relay.RelaySender`, and
:func:`pump_livekit`, which feeds the packets a room receives on the relay's
topic to a :class:`~avatarkit_fast.relay.RelayReceiver`.

A backend holding the server-SDK session relays its messages through the room
to a Python client.  Packets may be sent lossy (``reliable=False``, the
lowest latency): relay format v2 numbers each request's frames, so the
receiver applies them once and in order, drops duplicates, and gives up on a
gap after its ``gap_timeout`` (the request then plays what arrived).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable, Optional

from ..errors import AvatarKitError, ClosedError
from ..relay.frames import MAX_FRAME_BYTES
from ..relay.receiver import RelayReceiver

__all__ = ["RELAY_TOPIC", "LiveKitSink", "pump_livekit"]

#: The data-packet topic the relay frames travel on.
RELAY_TOPIC = "avatarkit.relay"

# LiveKit's limit for one data packet (larger ones are refused by the SFU).
MAX_PACKET_BYTES = 15_000


class LiveKitSink:
    """An async sink publishing each relay frame of ``room.local_participant``
    on ``topic`` (to ``destination_identities``, or everyone): as one data
    packet (lossy unless ``reliable``) when it fits in ``max_packet_bytes``,
    otherwise (an animation envelope of 50 keyframes is 24 kB) as one byte
    stream, which is reliable.  The frames' sequence numbers put them back in
    order on the receiving side, however the two paths interleave."""

    def __init__(
        self,
        room: Any,
        *,
        topic: str = RELAY_TOPIC,
        reliable: bool = True,
        destination_identities: Optional[Iterable[str]] = None,
        max_packet_bytes: int = MAX_PACKET_BYTES,
    ) -> None:
        self.room = room
        self.topic = topic
        self.reliable = bool(reliable)
        self.destination_identities = list(destination_identities or [])
        self.max_packet_bytes = min(int(max_packet_bytes), MAX_FRAME_BYTES)

        self.packets = 0
        self.streams = 0

    def __call__(self, frame: bytes):
        participant = self.room.local_participant
        if len(frame) > self.max_packet_bytes:
            self.streams += 1
            return participant.send_bytes(
                frame, topic=self.topic, destination_identities=self.destination_identities or None,
                name="relay-frame", mime_type="application/msgpack",
            )
        self.packets += 1
        return participant.publish_data(
            frame, reliable=self.reliable, destination_identities=self.destination_identities, topic=self.topic
        )


async def pump_livekit(
    room: Any,
    receiver: RelayReceiver,
    *,
    topic: str = RELAY_TOPIC,
    sender_identity: Optional[str] = None,
    on_error: Optional[Callable[[AvatarKitError], None]] = None,
    stop: Optional[asyncio.Event] = None,
) -> int:
    """Feed every data packet and byte stream of ``room`` on ``topic`` (from
    ``sender_identity``, or anyone) to ``receiver`` until ``stop`` is set or
    the room disconnects.  It registers the room's byte-stream handler for
    ``topic`` while it runs.

    A malformed packet goes to ``on_error`` (logged by the receiver without
    one) and the pump goes on; a closed controller's ClosedError ends it.
    While the receiver holds frames that came early, a timer gives up on their
    gap when its wait is over (:meth:`RelayReceiver.poll`); at the end what is
    held is applied (:meth:`RelayReceiver.flush`).  Returns the frames fed.
    """
    loop = asyncio.get_running_loop()
    done = stop if stop is not None else asyncio.Event()
    timer: Optional[asyncio.TimerHandle] = None
    count = 0
    failure: list[BaseException] = []

    def arm() -> None:
        nonlocal timer
        if timer is not None:
            timer.cancel()
            timer = None
        wait = receiver.poll()
        if wait is not None:
            timer = loop.call_later(wait, arm)

    def on_data(packet: Any) -> None:
        if getattr(packet, "topic", None) != topic:
            return
        participant = getattr(packet, "participant", None)
        feed(packet.data, getattr(participant, "identity", None))

    def on_stream(reader: Any, identity: str) -> None:
        task = loop.create_task(read_stream(reader, identity))
        streams.add(task)
        task.add_done_callback(streams.discard)

    async def read_stream(reader: Any, identity: str) -> None:
        chunks = [bytes(chunk) async for chunk in reader]
        feed(b"".join(chunks), identity)

    streams: set[asyncio.Task[None]] = set()

    def feed(data: bytes, identity: Optional[str]) -> None:
        nonlocal count
        if done.is_set() or (sender_identity is not None and identity != sender_identity):
            return
        try:
            receiver.feed(data)
            count += 1
        except ClosedError as exc:
            failure.append(exc)
            done.set()
            return
        except AvatarKitError as exc:
            if on_error is not None:
                on_error(exc)
            else:
                receiver._report(exc)
        if receiver.held or timer is not None:
            arm()

    def on_state(*_args: Any) -> None:
        if not room.isconnected():
            done.set()

    room.on("data_received", on_data)
    room.on("disconnected", on_state)
    room.register_byte_stream_handler(topic, on_stream)
    try:
        await done.wait()
    finally:
        room.off("data_received", on_data)
        room.off("disconnected", on_state)
        room.unregister_byte_stream_handler(topic)
        for task in list(streams):
            task.cancel()
        if timer is not None:
            timer.cancel()
        receiver.flush()
    if failure:
        raise failure[0]
    return count
