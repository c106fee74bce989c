"""SDK mode: the client drives the AvatarKit motion server itself.

:class:`AvatarSession` opens the ingress WebSocket, performs the
``ClientConfigureSession`` / ``ServerConfirmSession`` handshake, sends speech
audio up as ``ClientAudioInput`` and yields the same PCM to an
:class:`~avatarkit_fast.AvatarController`; the animation envelopes that come back
go into the controller for the conversation their request belongs to. The
controller, its decoder and its sync engine are the ones host mode uses; this
module only adds the transport.

:func:`fetch_session_token` is for the server side of an application: it
exchanges the API key (which the client never holds) for a short-lived
session token at the console endpoint.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Optional, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from . import wire
from .errors import (
    AuthenticationFailed,
    AvatarKitError,
    ClosedError,
    ConcurrencyLimit,
    ConnectionFailed,
    CreditsExhausted,
    DecodeError,
    HandshakeTimeout,
    ProtocolError,
    ServerError,
    SessionTimeout,
    UpstreamUnavailable,
)

logger = logging.getLogger(__name__)

SESSION_TOKEN_PATH = "/session-tokens"
INGRESS_WEBSOCKET_PATH = "/websocket"
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_TOKEN_LIFETIME = timedelta(hours=1)

#: Close codes (and ``ServerError`` codes) of the motion server, by the error they mean.
CLOSE_CODE_ERRORS: dict[int, tuple[type[ServerError], str]] = {
    4001: (CreditsExhausted, "credits exhausted"),
    4002: (SessionTimeout, "session time limit reached"),
    4003: (ConcurrencyLimit, "concurrent session limit reached"),
    4010: (AuthenticationFailed, "authentication failed"),
    4503: (UpstreamUnavailable, "upstream motion service unavailable"),
}

_HTTP_STATUS_ERRORS: dict[int, type[ServerError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    402: CreditsExhausted,
    429: ConcurrencyLimit,
    502: UpstreamUnavailable,
    503: UpstreamUnavailable,
    504: UpstreamUnavailable,
}

# WebSocket close codes that say the server went away, broke or is busy, rather than
# refusing what we sent (1002 protocol error, 1008 policy violation, ...).
_TRANSIENT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})

_NO_KEYFRAMES = np.zeros((0, wire.KEYFRAME_FLOATS), np.float32)

# Request ids look like the vendor SDKs': "YYYYMMDDHHMMSS_" and 12 nanoid characters.
_NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ConnectionState(str, enum.Enum):
    """Where an :class:`AvatarSession` is in its life."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


class Controller(Protocol):
    """What the session needs of a controller (an ``AvatarController`` fits)."""

    sample_rate: int

    def yield_audio_data(self, pcm: Any, end: bool = False) -> str: ...

    def yield_frames_data(self, envelopes: Any, conversation_id: str) -> bool: ...

    def get_current_conversation_id(self) -> Optional[str]: ...

    def interrupt(self) -> None: ...


ConnectionStateCallback = Callable[[ConnectionState, Optional[AvatarKitError]], None]
ErrorCallback = Callable[[AvatarKitError], None]


def new_req_id() -> str:
    """A fresh request id in the vendor SDKs' form, e.g. ``20251223101500_V1StGXR8_Z5j``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    return stamp + "_" + "".join(secrets.choice(_NANOID_ALPHABET) for _ in range(12))


def error_for_code(code: int | str | None, detail: str = "", *, context: str) -> AvatarKitError:
    """The named error for a motion-server close code or ``ServerError`` code."""
    try:
        num = int(code) if code is not None else None
    except (TypeError, ValueError):
        num = None
    text = (detail or "").strip()
    if num in CLOSE_CODE_ERRORS:
        cls, meaning = CLOSE_CODE_ERRORS[num]
        message = f"{context}: {meaning} (code {num}{': ' + text if text else ''})"
        return cls(message, code=num)
    lowered = text.lower()
    # The vendor's servers say these in words as well as (or instead of) codes.
    if "credits exhausted" in lowered:
        return CreditsExhausted(f"{context}: {text} (code {code})", code=code)
    if "session time limit" in lowered or "maximum session duration" in lowered:
        return SessionTimeout(f"{context}: {text} (code {code})", code=code)
    if "token" in lowered and ("invalid" in lowered or "expired" in lowered or "empty" in lowered):
        return AuthenticationFailed(f"{context}: {text} (code {code})", code=code)
    if num in _TRANSIENT_CLOSE_CODES:
        # The server went away, restarted or broke: trying again may succeed.
        return ConnectionFailed(
            f"{context}: connection closed with code {num}{' (' + text + ')' if text else ''}",
            code=num,
        )
    return ServerError(
        f"{context}: {text or 'server error'}{f' (code {code})' if code not in (None, '') else ''}",
        code=code,
    )


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


class AvatarSession:
    """One SDK-mode session with the motion server, feeding ``controller``.

    ``start()`` connects and handshakes; ``send(pcm, end)`` sends speech audio up and
    yields it to the controller; animation for it arrives in the background and goes
    into the controller for that conversation; ``interrupt()`` stops the current
    request here and on the server; ``close()`` ends the session. Audio is raw PCM,
    signed 16-bit little-endian mono at the controller's sample rate, in chunks of any
    size. The session is an async context manager (``start`` on entry, ``close`` on
    exit). Use it from one event loop.
    """

    def __init__(
        self,
        controller: Controller,
        ingress_endpoint_url: str,
        *,
        app_id: str,
        session_token: str,
        avatar_id: str,
        on_connection_state: Optional[ConnectionStateCallback] = None,
        on_error: Optional[ErrorCallback] = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        sample_rate: Optional[int] = None,
        use_query_auth: bool = False,
        extra_params: Optional[Mapping[str, str]] = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if not app_id:
            raise ValueError("app_id is required")
        if not session_token:
            raise ValueError("session_token is required (see fetch_session_token)")
        if not avatar_id:
            raise ValueError("avatar_id is required")
        if handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds, got {handshake_timeout!r}")
        self._controller = controller
        self._url = ingress_websocket_url(
            ingress_endpoint_url,
            avatar_id,
            app_id=app_id,
            session_token=session_token,
            use_query_auth=use_query_auth,
        )
        self._headers = {} if use_query_auth else {"X-App-ID": app_id, "X-Session-Key": session_token}
        self._avatar_id = avatar_id
        self._on_connection_state = on_connection_state
        self._on_error = on_error
        self._handshake_timeout = float(handshake_timeout)
        self._sample_rate = int(sample_rate if sample_rate is not None else controller.sample_rate)
        self._extra_params = dict(extra_params or {})
        self._max_message_bytes = max_message_bytes

        self._state = ConnectionState.DISCONNECTED
        self._error: Optional[AvatarKitError] = None
        self._ws: Optional[ClientConnection] = None
        self._reader: Optional[asyncio.Task[None]] = None
        self._connection_id: Optional[str] = None
        self._closing = False
        # The request whose audio is still being sent (None after end=True).
        self._open_req_id: Optional[str] = None
        # The most recent request, until its animation ends or it is interrupted.
        self._last_req_id: Optional[str] = None
        # req_id -> conversation id, for requests whose animation may still come.
        # Animation of a req_id not in here (interrupted, superseded, unknown) is dropped.
        self._conversations: dict[str, str] = {}
        # req_ids of self._conversations for which animation has arrived.
        self._animated: set[str] = set()
        self._envelopes_received = 0
        self._envelopes_dropped = 0

    # -- properties -------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self._state

    @property
    def error(self) -> Optional[AvatarKitError]:
        """Why the session is FAILED (None otherwise)."""
        return self._error

    @property
    def connection_id(self) -> Optional[str]:
        """The server's id for this connection, once CONNECTED."""
        return self._connection_id

    @property
    def url(self) -> str:
        """The ingress WebSocket URL this session connects to (a session key in it masked)."""
        return self._redacted_url()

    @property
    def current_req_id(self) -> Optional[str]:
        """The server request id of the most recent utterance still in flight."""
        return self._last_req_id

    @property
    def stats(self) -> dict[str, int]:
        """Counters: envelopes received, and dropped as belonging to no live request."""
        return {
            "envelopes_received": self._envelopes_received,
            "envelopes_dropped": self._envelopes_dropped,
        }

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> "AvatarSession":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> str:
        """Connect and handshake; return the server's connection id.

        Raises the named error of a refusal (e.g. :class:`AuthenticationFailed`),
        :class:`HandshakeTimeout` if the server does not confirm within
        ``handshake_timeout`` seconds, or :class:`ConnectionFailed`; the state is then
        FAILED with that error. A session that is DISCONNECTED or FAILED may start again.
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
                f"no ServerConfirmSession from {self._redacted_url()} within "
                f"{self._handshake_timeout:g} s"
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
        where = self._redacted_url()
        try:
            ws = await connect(
                self._url,
                additional_headers=self._headers,
                open_timeout=None,  # the whole handshake is under one timeout, in start()
                max_size=self._max_message_bytes,
            )
        except InvalidStatus as exc:
            raise _error_for_http_response(
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
                        sample_rate=self._sample_rate,
                        audio_format=0,  # PCM_S16LE: the controller plays the same bytes
                        extra_params=dict(self._extra_params),
                    )
                )
            )
            data = await ws.recv()
        except ConnectionClosed as exc:
            await ws.close()
            raise _error_for_close(exc, context=f"{where} closed the connection during the handshake") from exc
        except BaseException:
            await _abort(ws)
            raise
        try:
            if not isinstance(data, bytes):
                raise ProtocolError(f"handshake: expected a binary protobuf message, got text from {where}")
            try:
                msg = wire.decode_message(data)
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
        """Close the connection (idempotent). State DISCONNECTED, or FAILED if it had failed.

        Playback is not stopped: what has arrived plays to its end (an utterance whose
        audio was still open is ended where it stands). Call :meth:`interrupt` first to
        stop at once.
        """
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
        self._finish_requests()
        if self._state is not ConnectionState.FAILED:
            self._set_state(ConnectionState.DISCONNECTED)

    # -- sending ----------------------------------------------------------------

    async def send(self, pcm: Any, end: bool = False) -> str:
        """Send speech audio up and yield the same PCM to the controller.

        Consecutive calls with ``end=False`` belong to one request (one conversation);
        ``end=True`` closes it. Returns the controller's conversation id.
        """
        ws = self._require_connected("send")
        controller = self._controller
        req_id = self._open_req_id
        if req_id is not None and self._conversations.get(req_id) != controller.get_current_conversation_id():
            # The controller was interrupted, or began another conversation, on its
            # own: this request must not go on feeding it; the audio starts a new one.
            req_id = None
        conversation_id = controller.yield_audio_data(pcm, end)
        superseded: list[str] = []
        if conversation_id not in self._conversations.values():
            # A new conversation replaces the earlier ones in the controller: their
            # animation is stale, and the server need not finish generating it.
            superseded = list(self._conversations)
            self._conversations.clear()
            self._animated.clear()
        if req_id is None:
            req_id = new_req_id()
        self._conversations[req_id] = conversation_id
        self._last_req_id = req_id
        self._open_req_id = None if end else req_id
        try:
            for old in superseded:
                await ws.send(wire.encode_message(wire.ClientInterrupt(req_id=old)))
            await ws.send(wire.encode_message(wire.ClientAudioInput(req_id=req_id, end=bool(end), audio=bytes(pcm))))
        except ConnectionClosed as exc:
            raise self._connection_lost(exc) from exc
        return conversation_id

    async def interrupt(self) -> Optional[str]:
        """Stop the current utterance: the controller at once, then the server's
        generation for it (``ClientInterrupt``). Late animation of it is dropped.
        Returns the interrupted request id, or None if none was in flight."""
        self._controller.interrupt()
        req_id = self._last_req_id
        self._conversations.clear()
        self._animated.clear()
        self._open_req_id = None
        self._last_req_id = None
        ws = self._ws
        if req_id is not None and ws is not None and self._state is ConnectionState.CONNECTED:
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
        except Exception as exc:  # never leave the session silently dead
            logger.exception("avatar session read loop crashed")
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
            msg = wire.decode_message(data)
        except DecodeError as exc:
            self._report(exc)
            return
        if msg.type == wire.MessageType.SERVER_RESPONSE_ANIMATION:
            self._envelopes_received += 1
            req_id = msg.req_id
            conversation_id = self._conversations.get(req_id)
            if conversation_id is None:
                self._envelopes_dropped += 1
                return
            self._animated.add(req_id)
            if msg.end:
                del self._conversations[req_id]
                self._animated.discard(req_id)
                if self._last_req_id == req_id and self._open_req_id != req_id:
                    self._last_req_id = None
            try:
                self._controller.yield_frames_data([data], conversation_id)
            except AvatarKitError as exc:
                self._report(exc)
        elif msg.type == wire.MessageType.SERVER_ERROR:
            error = error_for_code(msg.code, msg.message, context=f"motion server error for request {msg.req_id or '-'}")
            conversation_id = self._conversations.pop(msg.req_id, None) if msg.req_id else None
            if conversation_id is not None:
                self._no_more_animation(msg.req_id, conversation_id)
            self._animated.discard(msg.req_id)
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
        code = ws.close_code if ws is not None else None
        reason = ws.close_reason if ws is not None else ""
        if exc is not None and exc.rcvd is not None:
            code, reason = exc.rcvd.code, exc.rcvd.reason
        self._finish_requests()
        if code == 1000:
            self._set_state(ConnectionState.DISCONNECTED)
            return ClosedError(f"the motion server closed the session{': ' + reason if reason else ''}")
        if code == 1006 or code is None:
            error: AvatarKitError = ConnectionFailed(
                "connection to the motion server lost (no close frame: the server or the network went away)",
                code=code,
            )
        else:
            error = error_for_code(code, reason or "", context="the motion server closed the session")
        self._fail(error)
        return error

    def _finish_requests(self) -> None:
        """No more animation will come: let what has arrived play to its end."""
        controller = self._controller
        try:
            current = controller.get_current_conversation_id()
            if self._open_req_id is not None and self._conversations.get(self._open_req_id) == current:
                controller.yield_audio_data(b"", True)
            for req_id, conversation_id in self._conversations.items():
                if conversation_id == current:
                    self._no_more_animation(req_id, conversation_id)
        except Exception as exc:  # the controller may be closed; nothing more to do for it
            self._report(exc if isinstance(exc, AvatarKitError) else AvatarKitError(repr(exc)))
        self._open_req_id = None
        self._last_req_id = None
        self._conversations.clear()
        self._animated.clear()

    def _no_more_animation(self, req_id: str, conversation_id: str) -> None:
        """Tell the controller that no more animation will come for ``req_id``: with
        none so far its audio plays alone (audio-only); otherwise an empty ``end``
        envelope closes the animation, so ``strict_sync`` playout does not wait for
        keyframes that will never come, and the last one holds to the end."""
        if req_id in self._animated:
            envelopes = [wire.encode_animation(_NO_KEYFRAMES, req_id=req_id, end=True)]
        else:
            envelopes = []
        try:
            self._controller.yield_frames_data(envelopes, conversation_id)
        except AvatarKitError as exc:
            self._report(exc)

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
        if self._on_connection_state is not None:
            try:
                self._on_connection_state(state, self._error if state is ConnectionState.FAILED else None)
            except Exception:
                logger.exception("on_connection_state callback raised")

    def _report(self, error: AvatarKitError) -> None:
        if self._on_error is None:
            logger.warning("avatar session: %s", error)
            return
        try:
            self._on_error(error)
        except Exception:
            logger.exception("on_error callback raised")

    def _redacted_url(self) -> str:
        parts = urlsplit(self._url)
        query = [(k, "***" if k == "sessionKey" else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def __repr__(self) -> str:
        return f"<AvatarSession {self._state.name} {self._redacted_url()} connection_id={self._connection_id!r}>"


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


def _error_details(body: str) -> str:
    """The human part of an error body: ``{"errors": [{"title", "detail"}]}``, a
    ``{"message"}`` object, or plain text."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return body.strip()[:200]
    if isinstance(doc, dict):
        errors = doc.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else doc
        parts = [str(first[k]) for k in ("title", "detail", "message", "error") if first.get(k)]
        return " - ".join(parts)
    return ""


def _error_for_http_response(status: int, body: str, *, context: str) -> AvatarKitError:
    detail = _error_details(body)
    message = f"{context} (HTTP {status}){': ' + detail if detail else ''}"
    cls = _HTTP_STATUS_ERRORS.get(status)
    if cls is None and 400 <= status < 500 and ("token" in detail.lower() or "app id" in detail.lower()):
        cls = AuthenticationFailed  # a bad token, or a token of another application
    return (cls or ServerError)(message, code=status)


async def fetch_session_token(
    console_endpoint_url: str,
    api_key: str,
    *,
    expire_at: datetime | float | int | None = None,
    timeout: float = 10.0,
) -> str:
    """Exchange an API key for a session token: ``POST {console}/session-tokens``.

    For the server side of an application; hand the token (never the key) to the
    client. ``expire_at`` is a datetime or a Unix time in seconds (default: one hour
    from now). Raises :class:`AuthenticationFailed` for a refused key, another
    :class:`ServerError` for other refusals, :class:`ConnectionFailed` if the
    console cannot be reached.
    """
    if not api_key:
        raise ValueError("api_key is required")
    if expire_at is None:
        expire_at = datetime.now(timezone.utc) + DEFAULT_TOKEN_LIFETIME
    if isinstance(expire_at, datetime):
        if expire_at.tzinfo is None:
            expire_at = expire_at.replace(tzinfo=timezone.utc)
        expire_seconds = int(expire_at.timestamp())
    else:
        expire_seconds = int(expire_at)
    endpoint = console_endpoint_url.rstrip("/") + SESSION_TOKEN_PATH
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"console_endpoint_url must be http:// or https://, got {console_endpoint_url!r}")
    return await asyncio.to_thread(_post_session_token, endpoint, api_key, expire_seconds, timeout)


def _post_session_token(endpoint: str, api_key: str, expire_at: int, timeout: float) -> str:
    import urllib.error  # here, not at the top: only the server side of an app needs it
    import urllib.request

    request = urllib.request.Request(
        endpoint,
        data=json.dumps({"expireAt": expire_at}).encode(),
        headers={"X-Api-Key": api_key, "Content-Type": "application/json"},
        method="POST",
    )
    context = f"session token request to {endpoint} refused"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise _error_for_http_response(exc.code, exc.read().decode("utf-8", "replace"), context=context) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionFailed(f"cannot reach the console at {endpoint}: {exc}") from exc
    try:
        doc = json.loads(body)
    except ValueError:
        raise ProtocolError(f"session token response from {endpoint} is not JSON: {body[:200]!r}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"session token response from {endpoint} is not a JSON object")
    if doc.get("errors"):
        raise _error_for_http_response(status, body, context=context)
    token = doc.get("sessionToken")
    if not isinstance(token, str) or not token:
        raise ProtocolError(f"session token response from {endpoint} has no sessionToken")
    return token


__all__ = [
    "CLOSE_CODE_ERRORS",
    "AvatarSession",
    "ConnectionState",
    "error_for_code",
    "fetch_session_token",
    "ingress_websocket_url",
    "new_req_id",
]
