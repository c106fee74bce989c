"""The relay over a WebSocket: :class:`WebSocketSink` (one frame per binary
message) for a :class:`~avatarkit_fast.relay.RelaySender`, and
:func:`pump_websocket`, which feeds a connection's messages to a
:class:`~avatarkit_fast.relay.RelayReceiver`."""

from __future__ import annotations

import asyncio
from typing import Callable

from ..errors import AvatarKitError, ClosedError, ConnectionFailed, RelayError
from .receiver import RelayReceiver

__all__ = ["WebSocketSink", "pump_websocket"]


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
