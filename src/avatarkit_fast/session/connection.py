"""MotionConnection: the client side of the AvatarKit driving protocol, on its own.

It opens the ingress WebSocket, performs the ``ClientConfigureSession`` /
``ServerConfirmSession`` handshake, sends speech audio up as
``ClientAudioInput`` (one ``req_id`` per utterance), sends ``ClientInterrupt``,
and hands every ``ServerResponseAnimation`` envelope that comes back to
``on_envelope`` as the server sent it (the serialized bytes, with the
``req_id`` and ``end`` of its header).  Close codes and refusals become the
package's named errors.  It holds no controller and plays nothing: an
:class:`~avatarkit_fast.AvatarSession` binds it to a controller, a relay
backend forwards its envelopes with a
:class:`~avatarkit_fast.relay.RelaySender`, and the framework adapters build on
it the same way.

Lifecycle and states (``on_state(state, error)`` is called on every change)::

    DISCONNECTED --start()--> CONNECTING --handshake--> CONNECTED
          ^                       |                        |
          |                       +--refused/timeout--> FAILED (error set)
          +--close(), or a clean close (1000) by the server-+
                                         any other loss --> FAILED

A DISCONNECTED or FAILED connection may ``start()`` again (a new server
session: new connection id).  ``async with MotionConnection(...)`` starts it
on entry and closes it on exit.

Threads and loops: create, start, use and close it on one asyncio event loop;
none of its methods is thread-safe.  Callbacks run on that loop, in the task
reading the socket, one at a time and in arrival order; they must not block
(schedule work with ``loop.create_task`` to await anything).  A callback may
call :meth:`MotionConnection.close` (it does not wait for itself).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from .. import wire
from .._ids import new_id
from .._report import report
from ..errors import (
    AvatarKitError,
    ClosedError,
    ConnectionFailed,
    DecodeError,
    HandshakeTimeout,
    ProtocolError,
)
from .failures import error_for_code, error_for_http_response
from .tokens import fetch_session_token

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "INGRESS_WEBSOCKET_PATH",
    "ConnectionState",
    "MotionConnection",
    "ingress_websocket_url",
    "new_req_id",
]

logger = logging.getLogger("avatarkit_fast.session")

INGRESS_WEBSOCKET_PATH = "/websocket"
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_ANIMATION = int(wire.MessageType.SERVER_RESPONSE_ANIMATION)
_SERVER_ERROR = int(wire.MessageType.SERVER_ERROR)


class ConnectionState(str, enum.Enum):
    """Where a :class:`MotionConnection` (or an ``AvatarSession``) is in its life."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


#: ``on_envelope(envelope, req_id, end)``: one serialized animation envelope.
EnvelopeCallback = Callable[[bytes, str, bool], None]
#: ``on_state(state, error)``: error is the reason when state is FAILED, else None.
StateCallback = Callable[[ConnectionState, Optional[AvatarKitError]], None]
#: ``on_error(error)``: trouble that has no caller to raise to.
ErrorCallback = Callable[[AvatarKitError], None]


def new_req_id() -> str:
    """A fresh request id in the vendor SDKs' form, e.g. ``20251223101500_V1StGXR8_Z5j``."""
    return new_id()


def ingress_websocket_url(
    ingress_endpoint_url: str,
    avatar_id: str,
    *,
    app_id: str = "",
    session_token: str = "",
    use_query_auth: bool = False,
) -> str:
    """The WebSocket URL for ``ingress_endpoint_url``: ``{ingress}/websocket?id=AVATAR``
    (plus ``appId``/``sessionKey`` with ``use_query_auth``); http(s) become ws(s)."""
    parts = urlsplit(ingress_endpoint_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(
            f"ingress_endpoint_url must be ws://, wss://, http:// or https://, got {ingress_endpoint_url!r}"
        )
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("id", "appId", "sessionKey")]
    query.append(("id", avatar_id))
    if use_query_auth:
        query += [("appId", app_id), ("sessionKey", session_token)]
    path = parts.path.rstrip("/") + INGRESS_WEBSOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), parts.fragment))


class MotionConnection:
    """One connection to the motion server: audio up, animation envelopes down.

    ``sample_rate`` is the rate of the PCM (signed 16-bit little-endian mono)
    that :meth:`send_audio` takes; the server animates at that rate.
    ``audio_format``: 0 (PCM_S16LE, default) or 1 (OGG_OPUS: the bytes of an
    Ogg Opus stream, one stream per request, as the vendor's own plugin sends).

    Callbacks (public attributes; replace them before :meth:`start`):

    - ``on_envelope(envelope, req_id, end)`` for every animation envelope, in
      arrival order, as the serialized bytes the server sent (the header is
      read, the keyframes are left for whoever plays them).  Envelopes of a
      request already interrupted may still come (the server sent them before
      it read the interrupt): the owner decides; a controller drops them as
      stale.  An :class:`~avatarkit_fast.errors.AvatarKitError` it raises goes
      to ``on_error``; any other exception fails the connection.
    - ``on_state(state, error)`` on every state change (see the module).  When
      it reports DISCONNECTED or FAILED after CONNECTED, no more envelopes will
      come for any request.
    - ``on_error(error)`` for what has no caller to raise to: a ``ServerError``
      envelope (the named error, with a ``req_id`` attribute: the request the
      server failed, or None), an undecodable or text message.  Without it
      these are logged.  The connection goes on after each.

    Requests: consecutive ``send_audio(pcm)`` calls belong to one request
    until one with ``end=True``; the next call starts a new request (a new
    ``req_id``).  Several utterances in a row, and interrupts between or
    during them, are the normal use.
    """

    def __init__(
        self,
        ingress_endpoint_url: str,
        *,
        app_id: str,
        session_token: str,
        avatar_id: str,
        sample_rate: int,
        on_envelope: Optional[EnvelopeCallback] = None,
        on_state: Optional[StateCallback] = None,
        on_error: Optional[ErrorCallback] = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        use_query_auth: bool = False,
        extra_params: Optional[Mapping[str, str]] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        audio_format: int = 0,
    ) -> None:
        if audio_format not in (0, 1) or isinstance(audio_format, bool):
            raise ValueError(
                f"audio_format must be 0 (PCM_S16LE) or 1 (OGG_OPUS), got {audio_format!r}"
            )
        if not app_id:
            raise ValueError("app_id is required")
        if not session_token:
            raise ValueError("session_token is required (see fetch_session_token)")
        if not avatar_id:
            raise ValueError("avatar_id is required")
        if not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds, got {handshake_timeout!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        self._url = ingress_websocket_url(
            ingress_endpoint_url,
            avatar_id,
            app_id=app_id,
            session_token=session_token,
            use_query_auth=use_query_auth,
        )
        self._headers = {} if use_query_auth else {"X-App-ID": app_id, "X-Session-Key": session_token}
        self.avatar_id = avatar_id
        self.sample_rate = sample_rate
        self.audio_format = int(audio_format)
        self.on_envelope = on_envelope
        self.on_state = on_state
        self.on_error = on_error
        self._handshake_timeout = float(handshake_timeout)
        self._extra_params = dict(extra_params or {})
        self._max_message_bytes = max_message_bytes

        self._state = ConnectionState.DISCONNECTED
        self._error: Optional[AvatarKitError] = None
        self._ws: Optional[ClientConnection] = None
        self._reader: Optional[asyncio.Task[None]] = None
        self._connection_id: Optional[str] = None
        self._closing = False
        self._open_req_id: Optional[str] = None  # audio still being sent (None after end=True)
        self._current_req_id: Optional[str] = None  # latest request, until it ends or is stopped
        self._requests = 0
        self._audio_bytes_sent = 0
        self._envelopes_received = 0

    @classmethod
    async def from_api_key(
        cls,
        console_endpoint_url: str,
        ingress_endpoint_url: str,
        *,
        api_key: str,
        app_id: str,
        avatar_id: str,
        sample_rate: int,
        token_timeout: float = 10.0,
        **options: Any,
    ) -> "MotionConnection":
        """Fetch a session token with ``api_key`` (:func:`fetch_session_token`,
        an HTTP call) and return a connection that uses it, not yet started.
        For the server side of an application only: the key never goes to a
        client.  The token lives an hour; make a new connection after that."""
        token = await fetch_session_token(console_endpoint_url, api_key, timeout=token_timeout)
        return cls(
            ingress_endpoint_url, app_id=app_id, session_token=token, avatar_id=avatar_id,
            sample_rate=sample_rate, **options,
        )

    # -- properties -------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self._state

    @property
    def error(self) -> Optional[AvatarKitError]:
        """Why the connection is FAILED (None otherwise)."""
        return self._error

    @property
    def connection_id(self) -> Optional[str]:
        """The server's id for this connection, once CONNECTED."""
        return self._connection_id

    @property
    def url(self) -> str:
        """The ingress WebSocket URL (a session key in it masked)."""
        parts = urlsplit(self._url)
        query = [(k, "***" if k == "sessionKey" else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def open_req_id(self) -> Optional[str]:
        """The request whose audio is still open (sent without ``end``), if any."""
        return self._open_req_id

    @property
    def current_req_id(self) -> Optional[str]:
        """The latest request whose animation has not ended, was not
        interrupted and was not failed by the server; None if there is none."""
        return self._current_req_id

    @property
    def stats(self) -> dict[str, int]:
        """Counters over the connection's life: requests begun, audio bytes
        sent, animation envelopes received."""
        return {
            "requests": self._requests,
            "audio_bytes_sent": self._audio_bytes_sent,
            "envelopes_received": self._envelopes_received,
        }

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> "MotionConnection":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> str:
        """Connect and handshake; return the server's connection id.

        Raises the named error of a refusal (e.g. :class:`AuthenticationFailed`
        for a bad token, in the WebSocket upgrade or the handshake),
        :class:`HandshakeTimeout` if the server does not confirm within
        ``handshake_timeout`` seconds, or :class:`ConnectionFailed`; the state is
        then FAILED with that error.  Cancelled, or closed meanwhile: DISCONNECTED.
        """
        if self._state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
            raise ProtocolError(f"start(): the session is already {self._state.name}")
        self._closing = False
        self._error = None
        self._connection_id = None
        self._set_state(ConnectionState.CONNECTING)
        try:
            ws, connection_id = await asyncio.wait_for(self._handshake(), self._handshake_timeout)
        except asyncio.TimeoutError:
            error: AvatarKitError = HandshakeTimeout(
                f"no ServerConfirmSession from {self.url} within {self._handshake_timeout:g} s"
            )
            self._fail(error)
            raise error from None
        except AvatarKitError as exc:
            self._fail(exc)
            raise
        except asyncio.CancelledError:
            self._set_state(ConnectionState.DISCONNECTED)
            raise
        if self._closing:  # close() was called while the handshake ran
            await ws.close()
            self._set_state(ConnectionState.DISCONNECTED)
            raise ClosedError("start(): the session was closed during the handshake")
        self._ws = ws
        self._connection_id = connection_id
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(ws))
        self._set_state(ConnectionState.CONNECTED)
        return connection_id

    async def _handshake(self) -> tuple[ClientConnection, str]:
        where = self.url
        try:
            ws = await connect(
                self._url,
                additional_headers=self._headers,
                open_timeout=None,  # the whole handshake is under one timeout, in start()
                max_size=self._max_message_bytes,
            )
        except InvalidStatus as exc:
            raise error_for_http_response(
                exc.response.status_code,
                bytes(exc.response.body or b"").decode("utf-8", "replace"),
                context=f"WebSocket connection to {where} refused",
            ) from exc
        except InvalidURI as exc:
            raise ValueError(f"invalid ingress URL {where}: {exc}") from exc
        except (OSError, WebSocketException) as exc:
            raise ConnectionFailed(f"cannot connect to {where}: {exc}") from exc
        try:
            await ws.send(
                wire.encode_message(
                    wire.ClientConfigureSession(
                        sample_rate=self.sample_rate,
                        audio_format=self.audio_format,  # a controller plays the same bytes
                        extra_params=dict(self._extra_params),
                    )
                )
            )
            data = await ws.recv()
        except ConnectionClosed as exc:
            await _abort(ws)
            raise _error_for_close(exc, context=f"{where} closed the connection during the handshake") from exc
        except BaseException:
            await _abort(ws)
            raise
        try:
            if not isinstance(data, bytes):
                raise ProtocolError(f"handshake: expected a binary protobuf message, got text from {where}")
            try:
                msg = wire.decode_message(data)  # a small control message, not animation
            except DecodeError as exc:
                raise ProtocolError(f"handshake: undecodable reply from {where}: {exc}") from exc
            if msg.type == wire.MessageType.SERVER_CONFIRM_SESSION:
                if not msg.connection_id:
                    raise ProtocolError("handshake: ServerConfirmSession with an empty connection_id")
                return ws, msg.connection_id
            if msg.type == wire.MessageType.SERVER_ERROR:
                raise error_for_code(msg.code, msg.message, context=f"handshake refused by {where}")
            raise ProtocolError(
                f"handshake: expected ServerConfirmSession (type 2) from {where}, got message type {int(msg.type)}"
            )
        except BaseException:
            await _abort(ws)
            raise

    async def close(self) -> None:
        """Close the connection (idempotent); waits for the reader to stop.
        State DISCONNECTED, or FAILED if it had failed.  No request is
        interrupted on the server: call :meth:`interrupt` first for that."""
        self._closing = True
        ws, reader = self._ws, self._reader
        self._ws = None
        self._reader = None
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # the transport is gone either way
                pass
        if reader is not None and reader is not asyncio.current_task():
            try:
                await reader
            except (asyncio.CancelledError, Exception):
                pass
        self._forget_requests()
        if self._state is not ConnectionState.FAILED:
            self._set_state(ConnectionState.DISCONNECTED)

    # -- sending ----------------------------------------------------------------

    async def send_audio(self, pcm: Any, end: bool = False, *, req_id: Optional[str] = None) -> str:
        """Send speech audio up (``ClientAudioInput``); returns its ``req_id``.

        Without ``req_id`` the audio continues the open request, or begins a
        new one (a fresh id) if none is open; ``end=True`` closes it.  Pass
        ``req_id`` (e.g. from :func:`new_req_id`) to choose the id before the
        call, so that envelopes of it cannot arrive before the caller knows
        it; a ``req_id`` other than the open one begins that request and
        leaves the open one as it is (interrupt it first to stop it).
        ``pcm`` is bytes-like, s16le mono at ``sample_rate``; an empty chunk
        with ``end=True`` just ends the request.  Raises :class:`ClosedError`
        when not CONNECTED, or the connection's named error if it is lost.
        """
        ws = self._require_connected("send_audio")
        if req_id is None:
            req_id = self._open_req_id or new_id()
        elif not isinstance(req_id, str) or not req_id:
            raise TypeError(f"send_audio(): req_id must be a non-empty str, got {req_id!r}")
        data = bytes(pcm)
        if req_id != self._open_req_id:
            self._requests += 1
        self._open_req_id = None if end else req_id
        self._current_req_id = req_id
        message = wire.encode_message(wire.ClientAudioInput(req_id=req_id, end=bool(end), audio=data))
        try:
            await ws.send(message)
        except ConnectionClosed as exc:
            raise self._connection_lost(exc) from exc
        self._audio_bytes_sent += len(data)
        return req_id

    async def interrupt(self, req_id: Optional[str] = None) -> Optional[str]:
        """Ask the server to stop generating ``req_id`` (default: the current
        request) with ``ClientInterrupt``; returns that req_id, or None if there
        was none.  Its audio is closed here: the next :meth:`send_audio` begins
        a new request.  Not CONNECTED: nothing is sent (nothing can come)."""
        if req_id is None:
            req_id = self._current_req_id
        if req_id is None:
            return None
        if self._open_req_id == req_id:
            self._open_req_id = None
        if self._current_req_id == req_id:
            self._current_req_id = None
        ws = self._ws
        if ws is not None and self._state is ConnectionState.CONNECTED:
            try:
                await ws.send(wire.encode_message(wire.ClientInterrupt(req_id=req_id)))
            except ConnectionClosed as exc:
                raise self._connection_lost(exc) from exc
        return req_id

    # -- receiving --------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                self._on_message(data)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave the connection silently dead
            logger.exception("motion connection read loop crashed")
            if self._ws is ws:
                self._ws = None
            self._forget_requests()
            self._fail(ConnectionFailed(f"receive loop failed: {exc!r}"))
            await _abort(ws)
            return
        if not self._closing and self._ws is ws:
            self._connection_lost(None)

    def _on_message(self, data: bytes | str) -> None:
        if not isinstance(data, bytes):
            self._report(ProtocolError("expected binary protobuf messages from the motion server, got text"))
            return
        try:
            head = wire.peek_animation(data)
        except DecodeError as exc:
            self._report(exc)
            return
        if head.type == _ANIMATION:
            self._envelopes_received += 1
            req_id, end = head.req_id, bool(head.end)
            if end and req_id == self._current_req_id and req_id != self._open_req_id:
                self._current_req_id = None
            if self.on_envelope is not None:
                try:
                    self.on_envelope(data, req_id, end)
                except AvatarKitError as exc:
                    self._report(exc)
        elif head.type == _SERVER_ERROR:
            msg = wire.decode_message(data)  # a small control message: read it whole
            error = error_for_code(msg.code, msg.message, context=f"motion server error for request {msg.req_id or '-'}")
            error.req_id = msg.req_id or None  # type: ignore[attr-defined]  # which request failed
            if msg.req_id and msg.req_id == self._current_req_id and msg.req_id != self._open_req_id:
                self._current_req_id = None
            self._report(error)
        # Other message types carry nothing for the client; ignore them as the vendor SDKs do.

    # -- failure and state ------------------------------------------------------

    def _connection_lost(self, exc: Optional[ConnectionClosed]) -> AvatarKitError:
        """The server side ended the connection: DISCONNECTED on a plain close (1000),
        otherwise FAILED with the named error. Returns the error to raise to a sender."""
        ws = self._ws
        if ws is None:  # already handled (by the receive loop or a sender)
            return self._error or ClosedError("the session is closed")
        self._ws = None
        code, reason = ws.close_code, ws.close_reason or ""
        if exc is not None and exc.rcvd is not None:
            code, reason = exc.rcvd.code, exc.rcvd.reason
        self._forget_requests()
        if code == 1000:
            self._set_state(ConnectionState.DISCONNECTED)
            return ClosedError(f"the motion server closed the session{': ' + reason if reason else ''}")
        if code == 1006 or code is None:
            error: AvatarKitError = ConnectionFailed(
                "connection to the motion server lost (no close frame: the server or the network went away)",
                code=code,
            )
        else:
            error = error_for_code(code, reason, context="the motion server closed the session")
        self._fail(error)
        return error

    def _forget_requests(self) -> None:
        self._open_req_id = None
        self._current_req_id = None

    def check_connected(self, what: str = "send_audio") -> None:
        """Raise :class:`ClosedError` (naming ``what`` and the state, chained to
        the failure if FAILED) unless the connection is CONNECTED."""
        self._require_connected(what)

    def _require_connected(self, what: str) -> ClientConnection:
        ws = self._ws
        if self._state is ConnectionState.CONNECTED and ws is not None:
            return ws
        if self._state is ConnectionState.FAILED:
            raise ClosedError(f"{what}(): the session has FAILED: {self._error}") from self._error
        raise ClosedError(f"{what}(): the session is {self._state.name}; call start() first")

    def _fail(self, error: AvatarKitError) -> None:
        self._error = error
        self._set_state(ConnectionState.FAILED)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        if self.on_state is not None:
            try:
                self.on_state(state, self._error if state is ConnectionState.FAILED else None)
            except Exception:
                logger.exception("on_state callback raised")

    def _report(self, error: AvatarKitError) -> None:
        report(self.on_error, error, logger, "motion connection")

    def __repr__(self) -> str:
        return f"<MotionConnection {self._state.name} {self.url} connection_id={self._connection_id!r}>"


async def _abort(ws: ClientConnection) -> None:
    """Close ``ws`` politely if the peer answers within a second, else drop it."""
    try:
        await asyncio.wait_for(ws.close(), 1.0)
    except BaseException:
        ws.transport.abort()


def _error_for_close(exc: ConnectionClosed, *, context: str) -> AvatarKitError:
    frame = exc.rcvd
    if frame is None:
        return ConnectionFailed(f"{context} (no close frame)", code=1006)
    return error_for_code(frame.code, frame.reason, context=context)
