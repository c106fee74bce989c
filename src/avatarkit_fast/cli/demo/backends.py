"""The backend's server session: what sends the speech to the motion server and
hands each animation envelope to the relay.

Every backend has the same narrow interface: ``name``, ``await start()``,
``await send_audio(pcm, end) -> req_id``, ``await interrupt()``, ``await close()``;
each animation envelope goes to ``on_envelope(data, last)``.  :func:`make_backend`
chooses one.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from .. import UsageError
from .inputs import Utterance

__all__ = ["make_backend"]

DEMO_AVATAR = "demo-avatar"
DEMO_APP = "demo-app"
DEMO_KEY = "demo-key"


class _SpatiusBackend:
    """The vendor's server SDK (``spatius``) pointed at the local server."""

    name = "spatius SDK"

    def __init__(self, console: str, ingress: str, sample_rate: int, on_envelope) -> None:
        import spatius
        from datetime import datetime, timedelta, timezone

        spatius.configure_telemetry("")  # send nothing anywhere
        self._session = spatius.new_avatar_session(
            avatar_id=DEMO_AVATAR, api_key=DEMO_KEY, app_id=DEMO_APP,
            console_endpoint_url=console, ingress_endpoint_url=ingress,
            sample_rate=sample_rate, transport_frames=on_envelope,
            expire_at=datetime.now(timezone.utc) + timedelta(minutes=10),
        )

    async def start(self) -> None:
        await self._session.init()
        await self._session.start()

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        return await self._session.send_audio(pcm, end=end)

    async def interrupt(self) -> None:
        await self._session.interrupt()

    async def close(self) -> None:
        await self._session.close()


class _BuiltinBackend:
    """The package's own protocol client (:class:`avatarkit_fast.MotionConnection`)
    as the backend's server session: the driving protocol alone, each animation
    envelope handed to the relay as the server sent it."""

    name = "built-in session"

    def __init__(self, console: str, ingress: str, sample_rate: int, on_envelope) -> None:
        self._console, self._ingress = console, ingress
        self._rate = sample_rate
        self._on_envelope = on_envelope
        self._conn = None

    async def start(self) -> None:
        from ...session import MotionConnection

        self._conn = await MotionConnection.from_api_key(
            self._console, self._ingress, api_key=DEMO_KEY, app_id=DEMO_APP,
            avatar_id=DEMO_AVATAR, sample_rate=self._rate,
            on_envelope=lambda env, req_id, end: self._on_envelope(env, bool(end)),
        )
        await self._conn.start()

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        return await self._conn.send_audio(pcm, end)

    async def interrupt(self) -> None:
        await self._conn.interrupt()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


class _RecordingBackend:
    """Replays a recording's own envelopes in the service's batching: each one
    leaves once the audio it animates has been sent."""

    name = "recorded envelopes"

    def __init__(self, utt: Utterance, on_envelope, fps: int = 25) -> None:
        from ... import wire

        self._on_envelope = on_envelope
        self._rate = utt.sample_rate
        self._req_id = utt.req_id
        self._pending = []
        total = 0
        for env in utt.envelopes:
            total += wire.peek_animation(env).n_keyframes
            self._pending.append((total * utt.sample_rate // fps, env))
        self._sent = 0
        self._stopped = False

    async def start(self) -> None:
        pass

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        self._sent += len(pcm) // 2
        while self._pending and not self._stopped and (end or self._pending[0][0] <= self._sent):
            _, env = self._pending.pop(0)
            self._on_envelope(env, not self._pending)
            await asyncio.sleep(0)
        return self._req_id

    async def interrupt(self) -> None:
        self._stopped = True

    async def close(self) -> None:
        pass


def _backend_class(kind: str):
    if kind in ("auto", "spatius"):
        try:
            import spatius  # noqa: F401
        except ImportError:
            if kind == "spatius":
                raise UsageError("--session spatius: the spatius package is not installed") from None
        else:
            return _SpatiusBackend
    return _BuiltinBackend


def make_backend(kind: str, utt: Utterance, console: Optional[str], ingress: Optional[str],
                 on_envelope, fps: int):
    """The backend for ``utt``: its own envelopes for a recording, else the
    ``kind`` of server session (``auto``, ``spatius`` or ``builtin``) against the
    motion server at ``console``/``ingress``; :class:`UsageError` when ``kind``
    cannot be had here."""
    if utt.envelopes is not None:
        return _RecordingBackend(utt, on_envelope, fps)
    return _backend_class(kind)(console, ingress, utt.sample_rate, on_envelope)
