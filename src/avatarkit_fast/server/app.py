"""The local motion server: the AvatarKit driving protocol on one loopback port.

One aiohttp application serves both endpoints the server SDK talks to:

- ``POST {console}/session-tokens`` (JSON ``{"expireAt": unix_seconds}``, header
  ``X-Api-Key``) answers ``{"sessionToken": "..."}``; failures answer an HTTP
  error status with ``{"errors": [{"status", "code", "title", "detail"}]}``,
  the shape the SDK parses.
- ``GET {ingress}/websocket?id=AVATAR`` with ``X-App-ID`` / ``X-Session-Key``
  headers (or ``appId`` / ``sessionKey`` query parameters) upgrades to a
  WebSocket.  Credentials are checked before the upgrade (refusals are HTTP
  errors in the same JSON shape).  Then the client sends
  ``ClientConfigureSession``, the server answers ``ServerConfirmSession`` and
  the session streams: ``ClientAudioInput`` in, ``ServerResponseAnimation``
  out, ``ClientInterrupt`` to stop a request, ``ServerError`` for trouble.

Animation comes in the service's batching: the first envelope of a request
carries 50 keyframes (2 s of audio), the following ones 100 (4 s), the last one
whatever remains with ``end`` set; 25 keyframes per second of audio.  A batch
leaves as soon as its audio has arrived.

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

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import string
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from .. import wire
from ..errors import DecodeError, EncodeError
from .motion import SUPPORTED_SAMPLE_RATES, MotionSynth

__all__ = [
    "FIRST_BATCH",
    "MotionServer",
    "NEXT_BATCH",
    "ServerStats",
    "build_parser",
    "main",
    "run_args",
    "serve",
    "serve_async",
]

logger = logging.getLogger("avatarkit_fast.server")

FPS = 25
FIRST_BATCH = 50  # keyframes in a request's first envelope (2 s of audio)
NEXT_BATCH = 100  # keyframes in every later envelope but the last (4 s)

ERR_BAD_REQUEST = 400
ERR_TOO_LONG = 413
ERR_UNAVAILABLE = 14  # gRPC UNAVAILABLE: the SDK reads it as egressUnavailable
ERR_SESSION_DURATION = 4002
ERR_CONCURRENCY = 4003

CLOSE_PROTOCOL = 1002
CLOSE_POLICY = 1008

_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
_FINISHED_MEMORY = 256  # ended/interrupted req_ids remembered per session
_MAX_TOKENS = 100_000


def _new_id() -> str:
    """An id in the service's format: UTC ``YYYYmmddHHMMSS_`` and 12 random characters."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    return stamp + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def _require_aiohttp():
    try:
        from aiohttp import web
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the local motion server needs aiohttp: pip install 'avatarkit-fast[server]'"
        ) from exc
    return web


def _error_body(status: int, code: str, title: str, detail: str) -> dict:
    return {"errors": [{"status": str(status), "code": code, "title": title, "detail": detail}]}


@dataclass
class _Token:
    api_key: str
    app_id: str | None
    expire_at: float


@dataclass
class ServerStats:
    """Counters of a running server (a snapshot is ``dataclasses.asdict``-able)."""

    tokens_issued: int = 0
    tokens_refused: int = 0
    connections_refused: int = 0
    sessions_started: int = 0
    sessions_active: int = 0
    requests: int = 0
    requests_interrupted: int = 0
    envelopes_sent: int = 0
    keyframes_sent: int = 0
    errors_sent: int = 0


class MotionServer:
    """The local motion server.  ``await start()``, then point the SDK at
    ``console_endpoint_url`` and ``ingress_endpoint_url``; ``await stop()``.

    ``api_keys``: None accepts any non-empty key; otherwise the accepted keys, or
    a mapping from key to the app id its tokens are bound to (None: any app).
    ``avatars``: None accepts any avatar id; otherwise the known ids.
    ``speed``: None generates as fast as audio arrives; a number paces each
    batch to that multiple of real time (1.0 = real time).
    """

    def __init__(
        self,
        *,
        api_keys: Mapping[str, str | None] | Iterable[str] | None = None,
        avatars: Iterable[str] | None = None,
        speed: float | None = None,
        handshake_timeout: float = 15.0,
        max_request_seconds: float = 600.0,
        max_session_seconds: float | None = None,
        max_sessions: int | None = None,
        max_message_bytes: int = 8 << 20,
    ) -> None:
        if api_keys is None:
            self._api_keys: dict[str, str | None] | None = None
        elif isinstance(api_keys, Mapping):
            self._api_keys = dict(api_keys)
        else:
            self._api_keys = {key: None for key in api_keys}
        self._avatars = None if avatars is None else frozenset(avatars)
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self.handshake_timeout = handshake_timeout
        self.max_request_seconds = max_request_seconds
        self.max_session_seconds = max_session_seconds
        self.max_sessions = max_sessions
        self.max_message_bytes = max_message_bytes
        self.stats = ServerStats()
        self._tokens: OrderedDict[str, _Token] = OrderedDict()
        self._sessions: set[_Session] = set()
        self._runner = None
        self.host = ""
        self.port = 0

    # -- lifecycle ------------------------------------------------------------

    def application(self):
        """The aiohttp application (for embedding in another aiohttp server)."""
        web = _require_aiohttp()
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/", self._index)
        app.router.add_post("/session-tokens", self._session_tokens)
        app.router.add_post("/{prefix:.+}/session-tokens", self._session_tokens)
        app.router.add_get("/websocket", self._websocket)
        app.router.add_get("/{prefix:.+}/websocket", self._websocket)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 8765) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; see ``self.port``)."""
        web = _require_aiohttp()
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host, self.port = host, runner.addresses[0][1]  # port 0 resolved

    async def stop(self) -> None:
        """Close every session and stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> "MotionServer":
        if self._runner is None:
            await self.start("127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def console_endpoint_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def ingress_endpoint_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}"

    async def _on_shutdown(self, app) -> None:
        for session in list(self._sessions):
            await session.close(1001, "server shutting down")

    # -- HTTP -----------------------------------------------------------------

    async def _index(self, request):
        web = _require_aiohttp()
        return web.json_response(
            {"service": "avatarkit-fast local motion server", "fps": FPS,
             "sample_rates": list(SUPPORTED_SAMPLE_RATES)}
        )

    def _http_error(self, status: int, code: str, title: str, detail: str):
        web = _require_aiohttp()
        return web.json_response(_error_body(status, code, title, detail), status=status)

    async def _session_tokens(self, request):
        web = _require_aiohttp()
        api_key = request.headers.get("X-Api-Key", "")
        if not api_key:
            self.stats.tokens_refused += 1
            return self._http_error(401, "unauthorized", "Unauthorized", "missing X-Api-Key header")
        if self._api_keys is not None and api_key not in self._api_keys:
            self.stats.tokens_refused += 1
            return self._http_error(401, "unauthorized", "Unauthorized", "invalid API key")
        try:
            body = await request.json()
        except Exception:
            body = None
        expire_at = body.get("expireAt") if isinstance(body, dict) else None
        if isinstance(expire_at, bool) or not isinstance(expire_at, (int, float)):
            self.stats.tokens_refused += 1
            return self._http_error(
                400, "invalidRequest", "Bad Request",
                "expected a JSON body with an integer expireAt (unix seconds)",
            )
        if expire_at <= time.time():
            self.stats.tokens_refused += 1
            return self._http_error(400, "invalidRequest", "Bad Request", "expireAt must be in the future")
        token = secrets.token_urlsafe(24)
        app_id = self._api_keys.get(api_key) if self._api_keys is not None else None
        self._tokens[token] = _Token(api_key, app_id, float(expire_at))
        while len(self._tokens) > _MAX_TOKENS:
            self._tokens.popitem(last=False)
        self.stats.tokens_issued += 1
        return web.json_response({"sessionToken": token})

    def _authorize(self, request) -> tuple[int, str, str, str] | None:
        """None if the upgrade may proceed, else (status, code, title, detail)."""
        query = request.query
        app_id = request.headers.get("X-App-ID") or query.get("appId", "")
        session_key = request.headers.get("X-Session-Key") or query.get("sessionKey", "")
        avatar_id = query.get("id", "")
        if not session_key:
            return 401, "sessionTokenInvalid", "Unauthorized", "empty token"
        token = self._tokens.get(session_key)
        if token is None:
            return 401, "sessionTokenInvalid", "Unauthorized", "invalid session token"
        if token.expire_at <= time.time():
            return 401, "sessionTokenExpired", "Unauthorized", "session token expired"
        if not app_id:
            return 400, "invalidRequest", "Bad Request", "missing app id (X-App-ID header or appId parameter)"
        if token.app_id is not None and token.app_id != app_id:
            return 400, "appIDMismatch", "Bad Request", "app id mismatch"
        if not avatar_id:
            return 400, "invalidRequest", "Bad Request", "missing avatar id (query parameter id)"
        if self._avatars is not None and avatar_id not in self._avatars:
            return 404, "avatarNotFound", "Not Found", f"avatar not found: {avatar_id}"
        return None

    async def _websocket(self, request):
        web = _require_aiohttp()
        refusal = self._authorize(request)
        if refusal is not None:
            self.stats.connections_refused += 1
            return self._http_error(*refusal)
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, autoping=True)
        await ws.prepare(request)
        session = _Session(self, ws, request.query.get("id", ""))
        self._sessions.add(session)
        self.stats.sessions_active = len(self._sessions)
        try:
            if self.max_sessions is not None and len(self._sessions) > self.max_sessions:
                # Refuse in the handshake's place, so the client reads it as the
                # answer to its ClientConfigureSession.
                with contextlib.suppress(asyncio.TimeoutError):
                    await ws.receive(timeout=self.handshake_timeout)
                await session.fail(ERR_CONCURRENCY, "too many concurrent sessions", ERR_CONCURRENCY)
            else:
                await session.run()
        finally:
            self._sessions.discard(session)
            self.stats.sessions_active = len(self._sessions)
            await session.stop_requests()
        return ws


class _Request:
    """One req_id: its audio, its keyframe synth and the task sending its batches."""

    __slots__ = ("req_id", "synth", "ended", "interrupted", "wake", "task", "started", "need")

    def __init__(self, req_id: str, sample_rate: int) -> None:
        self.req_id = req_id
        self.synth = MotionSynth(sample_rate, FPS)
        self.ended = False
        self.interrupted = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.started = time.monotonic()
        self.need = FIRST_BATCH  # keyframes the next batch waits for


class _Session:
    def __init__(self, server: MotionServer, ws, avatar_id: str) -> None:
        self.server = server
        self.ws = ws
        self.avatar_id = avatar_id
        self.connection_id = _new_id()
        self.sample_rate = 0
        self.requests: dict[str, _Request] = {}
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
        from aiohttp import WSMsgType

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
        from aiohttp import WSMsgType

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
        if first.audio_format != 0:
            await self.fail(
                ERR_BAD_REQUEST,
                f"audio format {first.audio_format} (Ogg Opus) is not supported by the local "
                "motion server; send PCM s16le (audio_format 0)",
                CLOSE_POLICY,
            )
            return False
        self.sample_rate = first.sample_rate
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
            req = _Request(req_id, self.sample_rate)
            self.requests[req_id] = req
            self.server.stats.requests += 1
            req.task = asyncio.get_running_loop().create_task(self.generate(req))
        req.synth.push(msg.audio)
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
        self._remember(req_id, "interrupted")

    def _remember(self, req_id: str, state: str) -> None:
        self.finished[req_id] = state
        while len(self.finished) > _FINISHED_MEMORY:
            self.finished.popitem(last=False)

    async def generate(self, req: _Request) -> None:
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


# -- running it ---------------------------------------------------------------


def _parse_api_keys(values: Sequence[str] | None) -> dict[str, str | None] | None:
    if not values:
        return None
    keys: dict[str, str | None] = {}
    for value in values:
        key, sep, app_id = value.partition(":")
        keys[key] = app_id if sep else None
    return keys


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``serve`` options (added to ``parser`` if given)."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="avatarkit-fast serve",
            description="Run the local AvatarKit motion server (HTTP and WebSocket on one port).",
        )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--api-key", action="append", metavar="KEY[:APP_ID]",
        help="accept only this API key (repeatable; bind its tokens to APP_ID). Default: any key",
    )
    parser.add_argument("--avatar", action="append", metavar="ID", help="accept only this avatar id (repeatable)")
    parser.add_argument(
        "--speed", type=float, default=None,
        help="pace animation at this multiple of real time (default: as fast as audio arrives)",
    )
    parser.add_argument(
        "--max-session-seconds", type=float, default=None, metavar="S",
        help="end sessions after S seconds (ServerError and close code 4002)",
    )
    parser.add_argument(
        "--max-sessions", type=int, default=None, metavar="N",
        help="refuse sessions beyond N at once (ServerError and close code 4003)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log sessions and errors")
    return parser


async def serve_async(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    out=None,
    stop: asyncio.Event | None = None,
    **options,
) -> None:
    """Run a server until ``stop`` is set (or the task is cancelled), after
    printing its two endpoint URLs to ``out`` (default stdout), one per line."""
    server = MotionServer(**options)
    await server.start(host, port)
    out = sys.stdout if out is None else out
    print(f"console_endpoint_url={server.console_endpoint_url}", file=out)
    print(f"ingress_endpoint_url={server.ingress_endpoint_url}", file=out, flush=True)
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await server.stop()


def serve(host: str = "127.0.0.1", port: int = 8765, **options) -> None:
    """Run a server in the foreground until SIGINT or SIGTERM."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await serve_async(host, port, stop=stop, **options)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def run_args(args: argparse.Namespace) -> int:
    """Run ``serve`` from parsed options (shared by the CLI)."""
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        serve(
            args.host,
            args.port,
            api_keys=_parse_api_keys(args.api_key),
            avatars=args.avatar,
            speed=args.speed,
            max_session_seconds=args.max_session_seconds,
            max_sessions=args.max_sessions,
        )
    except OSError as exc:
        print(f"avatarkit-fast serve: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avatarkit_fast.server [--host H] [--port P] ...``"""
    return run_args(build_parser().parse_args(argv))
