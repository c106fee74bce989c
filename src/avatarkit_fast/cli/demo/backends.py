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


class _EnvelopeTap:
    """Stands where ``session.AvatarSession`` expects a controller, on the
    backend: it keeps no audio and hands each animation envelope to the relay."""

    def __init__(self, sample_rate: int, on_envelope) -> None:
        self.sample_rate = sample_rate
        self._on_envelope = on_envelope
        self._n = 0
        self._current: Optional[str] = None
        self._open = False

    def yield_audio_data(self, pcm, end: bool = False) -> str:
        if not self._open:
            self._n += 1
            self._current = f"utterance-{self._n}"
        self._open = not end
        return self._current

    def yield_frames_data(self, envelopes, conversation_id: str) -> bool:
        from ... import wire

        for env in envelopes or ():
            msg = wire.decode_message(env)
            self._on_envelope(env, bool(getattr(msg, "end", False)))
        return True

    def get_current_conversation_id(self) -> Optional[str]:
        return self._current

    def interrupt(self) -> None:
        self._current = None
        self._open = False


class _BuiltinBackend:
    """The package's own protocol client (``avatarkit_fast.session``) as the
    backend's server session."""

    name = "built-in session"

    def __init__(self, console: str, ingress: str, sample_rate: int, on_envelope) -> None:
        self._console, self._ingress = console, ingress
        self._tap = _EnvelopeTap(sample_rate, on_envelope)
        self._session = None

    async def start(self) -> None:
        from ... import session as sessions

        token = await sessions.fetch_session_token(self._console, DEMO_KEY)
        self._session = sessions.AvatarSession(
            self._tap, self._ingress, app_id=DEMO_APP, session_token=token, avatar_id=DEMO_AVATAR,
        )
        await self._session.start()

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        await self._session.send(pcm, end)
        return self._session.current_req_id

    async def interrupt(self) -> None:
        await self._session.interrupt()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


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
            total += wire.count_keyframes(env)
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
