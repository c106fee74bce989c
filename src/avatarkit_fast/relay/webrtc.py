"""The relay over a WebRTC data channel (aiortc): :class:`DataChannelSink` for a
:class:`~avatarkit_fast.relay.RelaySender`, :func:`pump_datachannel`, which
feeds a channel's messages to a :class:`~avatarkit_fast.relay.RelayReceiver`,
and :func:`open_relay_channel`, which creates the channel the way the relay
wants it.

The default channel is unordered with no retransmissions
(``ordered=False, maxRetransmits=0``): a late frame is worth nothing to a
real-time avatar, so SCTP should neither hold back the frames behind a lost one
(head-of-line blocking) nor spend the link resending it.  Format version 2
makes this safe: each request's frames are numbered, the receiver applies them
in order, each once, waits a bounded time (``gap_timeout``) and a bounded
number of frames (``reorder_window``) for a missing one, then reports it as a
:class:`~avatarkit_fast.errors.RelayGap` and goes on.  A lost audio frame is a
short silence, a lost animation frame a held keyframe.

Interrupt frames carry no sequence number and act on arrival; acting twice is
the same as once.  On a lossy channel the sink therefore sends each one
``interrupt_copies`` times (3 by default), so that a single loss cannot leave
stale speech playing; and audio of a newer request cuts an older one on the
receiver in any case.

Choose an ordered, reliable channel instead (``ordered=True`` and neither
``maxRetransmits`` nor ``maxPacketLifeTime``, or the relay over a WebSocket)
when every sample must play even on a bad link (recording, captioning,
a compliance copy), when the client still reads format version 1 (no numbers:
it applies frames as they come, so it needs them in order and complete), or
when the link loses more than a few per cent of packets for seconds at a time
(a gap would then be reported on most requests).  The price is latency: a lost
packet holds back everything behind it for a round trip or more.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from ..errors import AvatarKitError, ClosedError, ConnectionFailed, RelayError
from .frames import INTERRUPT
from .receiver import RelayReceiver

__all__ = ["DataChannelSink", "open_relay_channel", "pump_datachannel"]

#: The label of the channel :func:`open_relay_channel` creates.
DEFAULT_LABEL = "avatarkit-relay"

# An interrupt frame is a msgpack array of 3 (fixarray 0x93): version, kind 4, req_id.
_FIXARRAY_3 = 0x93


def open_relay_channel(pc: Any, label: str = DEFAULT_LABEL, *, ordered: bool = False,
                       max_retransmits: int | None = 0) -> Any:
    """Create the relay's data channel on ``pc`` (an aiortc ``RTCPeerConnection``),
    before the offer is made: by default unordered with no retransmissions
    (see the module for when to choose ``ordered=True, max_retransmits=None``)."""
    return pc.createDataChannel(label, ordered=ordered, maxRetransmits=max_retransmits)


def _is_interrupt(frame: bytes) -> bool:
    # [version, 4, req_id or nil]: the kind is the second element, one byte after the version.
    return len(frame) >= 3 and frame[0] == _FIXARRAY_3 and frame[2] == INTERRUPT


class DataChannelSink:
    """A plain sink writing each frame as one binary message on ``channel``
    (an aiortc ``RTCDataChannel``).

    Interrupt frames go out ``interrupt_copies`` times (the channel may lose
    any one message; an interrupt acts the same however many copies arrive).
    A channel that is not open raises :class:`~avatarkit_fast.errors.ClosedError`,
    which the sender raises as RelayError; the frame takes no sequence number.
    ``frames_sent`` counts messages handed to the channel.
    """

    def __init__(self, channel: Any, *, interrupt_copies: int = 3) -> None:
        if isinstance(interrupt_copies, bool) or not isinstance(interrupt_copies, int) or interrupt_copies < 1:
            raise ValueError(f"interrupt_copies must be an int >= 1, got {interrupt_copies!r}")
        self.channel = channel
        self.interrupt_copies = interrupt_copies
        self.frames_sent = 0

    def __call__(self, frame: bytes) -> None:
        channel = self.channel
        if channel.readyState != "open":
            raise ClosedError(f"relay data channel {channel.label!r} is {channel.readyState}")
        copies = self.interrupt_copies if _is_interrupt(frame) else 1
        for _ in range(copies):
            channel.send(frame)
        self.frames_sent += copies


async def pump_datachannel(
    channel: Any,
    receiver: RelayReceiver,
    *,
    on_error: Callable[[AvatarKitError], None] | None = None,
) -> int:
    """Feed every message of ``channel`` to ``receiver`` until the channel closes;
    returns the number of frames fed.

    The same contract as :func:`~avatarkit_fast.relay.pump_websocket`: a
    malformed frame (or a text message) raises RelayError, or goes to
    ``on_error`` and the pump goes on; a closed controller's ClosedError ends
    the pump.  While the receiver holds frames that came early, a timer calls
    :meth:`RelayReceiver.poll` when their wait is over; when the channel
    closes, what is still held is applied (:meth:`RelayReceiver.flush`).  A
    channel that closes before it ever opened raises
    :class:`~avatarkit_fast.errors.ConnectionFailed` (or hands it to
    ``on_error``).  Gaps go to the receiver's own ``on_error``, or to this one.
    Messages that arrived before the pump was started are not seen: start it
    when the channel is created or announced (aiortc's ``datachannel`` event).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BaseException | None] = loop.create_future()
    timer: asyncio.TimerHandle | None = None
    count = 0
    opened = channel.readyState == "open"

    def arm() -> None:
        nonlocal timer
        if timer is not None:
            timer.cancel()
            timer = None
        wait = receiver.poll()
        if wait is not None:
            timer = loop.call_later(wait, arm)

    def finish(exc: BaseException | None = None) -> None:
        if not done.done():
            done.set_result(exc)

    def on_message(message: Any) -> None:
        nonlocal count
        if done.done():
            return
        try:
            if isinstance(message, str):
                raise RelayError("malformed relay frame: a text message, expected binary", -1)
            receiver.feed(message)
            count += 1
        except AvatarKitError as exc:
            if on_error is None or isinstance(exc, ClosedError):
                finish(exc)
                return
            on_error(exc)
        if receiver.held or timer is not None:
            arm()

    def on_open() -> None:
        nonlocal opened
        opened = True

    def on_close() -> None:
        if not opened:
            failure = ConnectionFailed(f"relay data channel {channel.label!r} closed before it opened")
            if on_error is None:
                finish(failure)
                return
            on_error(failure)
        finish()

    lend = receiver.on_error is None and on_error is not None
    if lend:
        receiver.on_error = on_error
    channel.on("message", on_message)
    channel.on("open", on_open)
    channel.on("close", on_close)
    if channel.readyState == "closed":
        on_close()
    try:
        failure = await done
        if failure is not None:
            raise failure
    finally:
        channel.remove_listener("message", on_message)
        channel.remove_listener("open", on_open)
        channel.remove_listener("close", on_close)
        if timer is not None:
            timer.cancel()
        receiver.flush()
        if lend:
            receiver.on_error = None
    return count
