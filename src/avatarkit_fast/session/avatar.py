"""AvatarSession: a :class:`~avatarkit_fast.session.MotionConnection` bound to a controller.

The session yields the speech audio it sends up to an
:class:`~avatarkit_fast.AvatarController` and routes the animation envelopes
that come back into the controller for the conversation their request belongs
to (the req_id <-> conversation map).  The controller, its decoder and its
sync engine are the ones host mode uses; the protocol is the connection's.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Protocol

import numpy as np

from .. import wire
from ..audio import as_pcm16
from .._report import report
from ..errors import AvatarKitError
from .connection import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_BYTES,
    ConnectionState,
    MotionConnection,
    new_req_id,
)

__all__ = ["AvatarSession", "Controller"]

logger = logging.getLogger("avatarkit_fast.session")

_NO_KEYFRAMES = np.zeros((0, wire.KEYFRAME_FLOATS), np.float32)


class Controller(Protocol):
    """What the session needs of a controller (an ``AvatarController`` fits)."""

    sample_rate: int

    def yield_audio_data(self, pcm: Any, end: bool = False) -> str: ...

    def yield_frames_data(self, envelopes: Any, conversation_id: str) -> bool: ...

    def get_current_conversation_id(self) -> Optional[str]: ...

    def interrupt(self) -> None: ...


ConnectionStateCallback = Callable[[ConnectionState, Optional[AvatarKitError]], None]
ErrorCallback = Callable[[AvatarKitError], None]


class AvatarSession:
    """One SDK-mode session with the motion server, feeding ``controller``.

    ``start()`` connects and handshakes; ``send(pcm, end)`` sends speech audio up and
    yields it to the controller; animation for it arrives in the background and goes
    into the controller for that conversation; ``interrupt()`` stops the current
    request here and on the server; ``close()`` ends the session. Audio is what the
    controller takes (s16le PCM or arrays at its ``input_sample_rate``, or Ogg Opus
    with ``input_format="ogg_opus"``; see :meth:`send`), in chunks of any size. The session is an async context manager (``start`` on entry, ``close`` on
    exit). Use it from one event loop (the rules of :class:`MotionConnection`,
    which it drives and exposes as :attr:`connection`).
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
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        input_format: Optional[str] = None,
    ) -> None:
        fmt = getattr(controller, "input_format", "pcm_s16le")
        if input_format is not None and input_format != fmt:
            raise ValueError(
                f"input_format {input_format!r} differs from the controller's {fmt!r}: "
                f"make the controller with input_format={input_format!r}"
            )
        self.input_format = fmt
        if sample_rate is None:
            # The rate of the PCM sent: the controller's input rate (it resamples).
            sample_rate = getattr(controller, "input_sample_rate", None) or controller.sample_rate
        self._controller = controller
        self._on_connection_state = on_connection_state
        self._on_error = on_error
        self._connection = MotionConnection(
            ingress_endpoint_url,
            app_id=app_id,
            session_token=session_token,
            avatar_id=avatar_id,
            sample_rate=int(sample_rate),
            on_envelope=self._on_envelope,
            on_state=self._on_state,
            on_error=self._on_connection_error,
            handshake_timeout=handshake_timeout,
            use_query_auth=use_query_auth,
            extra_params=extra_params,
            max_message_bytes=max_message_bytes,
            audio_format=1 if fmt == "ogg_opus" else 0,
        )
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
    def controller(self) -> Any:
        """The controller this session plays into."""
        return self._controller

    @property
    def connection(self) -> MotionConnection:
        """The protocol connection this session drives."""
        return self._connection

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self._connection.state

    @property
    def error(self) -> Optional[AvatarKitError]:
        """Why the session is FAILED (None otherwise)."""
        return self._connection.error

    @property
    def connection_id(self) -> Optional[str]:
        """The server's id for this connection, once CONNECTED."""
        return self._connection.connection_id

    @property
    def url(self) -> str:
        """The ingress WebSocket URL this session connects to (a session key in it masked)."""
        return self._connection.url

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
        return await self._connection.start()

    async def close(self) -> None:
        """Close the connection (idempotent). State DISCONNECTED, or FAILED if it had failed.

        Playback is not stopped: what has arrived plays to its end (an utterance whose
        audio was still open is ended where it stands). Call :meth:`interrupt` first to
        stop at once.
        """
        await self._connection.close()
        self._finish_requests()

    # -- sending ----------------------------------------------------------------

    async def send(self, pcm: Any, end: bool = False) -> str:
        """Send speech audio up and yield the same audio to the controller.

        ``pcm``: what the controller's ``yield_audio_data`` takes (s16le
        bytes or arrays of samples at its ``input_sample_rate``, or Ogg Opus
        bytes with ``input_format="ogg_opus"``); the server gets the same audio
        as bytes (arrays converted to s16le), in the same format and at the
        same rate (the session's ``sample_rate`` defaults to the controller's
        ``input_sample_rate``).  Consecutive calls with ``end=False`` belong to one request (one conversation);
        ``end=True`` closes it. Returns the controller's conversation id.
        """
        connection = self._connection
        connection.check_connected("send")  # before the controller sees the audio
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
        for old in superseded:
            await connection.interrupt(old)
        await connection.send_audio(self._wire_audio(pcm), end, req_id=req_id)
        return conversation_id

    def _wire_audio(self, pcm: Any) -> Any:
        # The controller took (and checked) the audio; the server wants bytes:
        # arrays of samples as s16le at the same rate, Ogg Opus as it is.
        if self.input_format == "pcm_s16le" and type(pcm) is not bytes:
            return as_pcm16(pcm)
        return pcm

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
        if req_id is not None:
            await self._connection.interrupt(req_id)
        return req_id

    # -- what the connection reports ----------------------------------------------

    def _on_envelope(self, envelope: bytes, req_id: str, end: bool) -> None:
        self._envelopes_received += 1
        conversation_id = self._conversations.get(req_id)
        if conversation_id is None:
            self._envelopes_dropped += 1
            return
        self._animated.add(req_id)
        if end:
            del self._conversations[req_id]
            self._animated.discard(req_id)
            if self._last_req_id == req_id and self._open_req_id != req_id:
                self._last_req_id = None
        try:
            self._controller.yield_frames_data([envelope], conversation_id)
        except AvatarKitError as exc:  # an envelope the controller refuses
            self._report(exc)

    def _on_connection_error(self, error: AvatarKitError) -> None:
        req_id = getattr(error, "req_id", None)
        if req_id:
            # The server failed this request: no more animation will come for it.
            conversation_id = self._conversations.pop(req_id, None)
            if conversation_id is not None:
                self._no_more_animation(req_id, conversation_id)
            self._animated.discard(req_id)
        self._report(error)

    def _on_state(self, state: ConnectionState, error: Optional[AvatarKitError]) -> None:
        if state in (ConnectionState.DISCONNECTED, ConnectionState.FAILED):
            self._finish_requests()
        if self._on_connection_state is not None:
            try:
                self._on_connection_state(state, error)
            except Exception:
                logger.exception("on_connection_state callback raised")

    # -- bookkeeping ----------------------------------------------------------------

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

    def _report(self, error: AvatarKitError) -> None:
        report(self._on_error, error, logger, "avatar session")

    def __repr__(self) -> str:
        connection = self._connection
        return f"<AvatarSession {connection.state.name} {connection.url} connection_id={connection.connection_id!r}>"
