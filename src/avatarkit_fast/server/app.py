"""The local motion server: the AvatarKit driving protocol on one loopback port.

One aiohttp application serves both endpoints the server SDK talks to:

- ``POST {console}/session-tokens`` (JSON ``{"expireAt": unix_seconds}``, header
  ``X-Api-Key``) answers ``{"sessionToken": "..."}``; failures answer an HTTP
  error status with ``{"errors": [{"status", "code", "title", "detail"}]}``,
  the shape the SDK parses (the decisions: :mod:`~avatarkit_fast.server.auth`).
- ``GET {ingress}/websocket?id=AVATAR`` with ``X-App-ID`` / ``X-Session-Key``
  headers (or ``appId`` / ``sessionKey`` query parameters) upgrades to a
  WebSocket.  Credentials are checked before the upgrade (refusals are HTTP
  errors in the same JSON shape).  Then the session runs the driving protocol
  (:mod:`~avatarkit_fast.server.protocol`: handshake, batching, error codes).

The ``serve`` command line is :mod:`avatarkit_fast.cli.serve`.  This module
needs ``aiohttp`` (the ``server`` extra) and says so when it is imported
without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the local motion server needs aiohttp: pip install 'avatarkit-fast[server]'"
    ) from exc

from .auth import Auth, Refusal, error_body
from .motion import SUPPORTED_SAMPLE_RATES
from .protocol import ERR_CONCURRENCY, FIRST_BATCH, FPS, NEXT_BATCH, ProtocolSession

__all__ = [
    "FIRST_BATCH",
    "MAX_SPEED",
    "MotionServer",
    "NEXT_BATCH",
    "ServerStats",
    "serve",
    "serve_async",
]

logger = logging.getLogger("avatarkit_fast.server")

#: The fastest pace ``speed`` may ask for (times real time); above it pacing means nothing.
MAX_SPEED = 1000.0


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
    ``observer``: told every request's audio, keyframes and interrupt
    (:class:`~avatarkit_fast.server.protocol.RequestObserver`; the live view).
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
        observer=None,
    ) -> None:
        self.auth = Auth(api_keys, avatars)
        if speed is not None and not (0 < speed <= MAX_SPEED):
            raise ValueError(f"speed must be > 0 and at most {MAX_SPEED:g} (times real time), got {speed!r}")
        if max_sessions is not None and (isinstance(max_sessions, bool) or not isinstance(max_sessions, int)
                                         or max_sessions < 1):
            raise ValueError(f"max_sessions must be an int >= 1 (or None: no limit), got {max_sessions!r}")
        if max_session_seconds is not None and not max_session_seconds > 0:
            raise ValueError(f"max_session_seconds must be > 0 (or None: no limit), got {max_session_seconds!r}")
        self.speed = speed
        self.handshake_timeout = handshake_timeout
        self.max_request_seconds = max_request_seconds
        self.max_session_seconds = max_session_seconds
        self.max_sessions = max_sessions
        self.max_message_bytes = max_message_bytes
        self.observer = observer
        self.stats = ServerStats()
        self._sessions: set[ProtocolSession] = set()
        self._runner = None
        self.host = ""
        self.port = 0

    # -- lifecycle ------------------------------------------------------------

    def application(self):
        """The aiohttp application (for embedding in another aiohttp server)."""
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
        return web.json_response(
            {"service": "avatarkit-fast local motion server", "fps": FPS,
             "sample_rates": list(SUPPORTED_SAMPLE_RATES)}
        )

    @staticmethod
    def _http_error(refusal: Refusal):
        return web.json_response(error_body(refusal), status=refusal.status)

    async def _session_tokens(self, request):
        try:
            body = await request.json()
        except Exception:
            body = None
        answer = self.auth.issue(request.headers.get("X-Api-Key", ""), body)
        if isinstance(answer, Refusal):
            self.stats.tokens_refused += 1
            return self._http_error(answer)
        self.stats.tokens_issued += 1
        return web.json_response({"sessionToken": answer})

    async def _websocket(self, request):
        query = request.query
        refusal = self.auth.authorize(
            request.headers.get("X-App-ID") or query.get("appId", ""),
            request.headers.get("X-Session-Key") or query.get("sessionKey", ""),
            query.get("id", ""),
        )
        if refusal is not None:
            self.stats.connections_refused += 1
            return self._http_error(refusal)
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, autoping=True)
        await ws.prepare(request)
        session = ProtocolSession(self, ws, request.query.get("id", ""))
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


# -- running it ---------------------------------------------------------------


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
