"""LiveKitAvatar: the avatar in the agent's own process.

The shape of the vendor plugins' ``AvatarSession``: ``await
avatar.start(agent_session, room)`` replaces the agent's audio output with a
``QueueAudioOutput``, opens an :class:`~avatarkit_fast.AvatarSession` with the
motion server, and runs an ``AvatarRunner`` over an
:class:`~avatarkit_fast.livekit.AvatarKitVideoGenerator` that publishes the
avatar's audio and video tracks into the room.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from livekit.agents.voice.avatar import AvatarRunner, QueueAudioOutput

from ..controller import AvatarController
from ..session import AvatarSession, fetch_session_token
from .generator import AvatarKitVideoGenerator

__all__ = ["LiveKitAvatar"]

logger = logging.getLogger("avatarkit_fast.livekit")


class LiveKitAvatar:
    """A host-mode avatar for one ``AgentSession``, in the agent's process.

    ``start`` fetches a session token with ``api_key`` from
    ``console_endpoint_url``, connects to ``ingress_endpoint_url``, sets
    ``agent_session.output.audio`` (call it before ``agent_session.start``,
    as with the vendor plugins) and starts publishing.  ``sample_rate`` is the
    rate the agent's speech is sent up and played at (the agent resamples its
    TTS to it); ``audio_sample_rate`` that of the published audio track
    (default: the same).  ``generator_class`` (a subclass of
    :class:`AvatarKitVideoGenerator`) and further keyword arguments shape the
    generator.  ``aclose`` stops the runner and the session.
    """

    def __init__(
        self,
        *,
        api_key: str,
        app_id: str,
        avatar_id: str,
        console_endpoint_url: str,
        ingress_endpoint_url: str,
        renderer: Any = None,
        width: int = 256,
        height: int = 256,
        sample_rate: int = 16000,
        audio_sample_rate: Optional[int] = None,
        sync_mode: str = "audio_independent",
        generator_class: type = AvatarKitVideoGenerator,
        **generator_options: Any,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self._api_key = api_key
        self._app_id = app_id
        self._avatar_id = avatar_id
        self._console = console_endpoint_url
        self._ingress = ingress_endpoint_url
        self._renderer = renderer
        self._width = width
        self._height = height
        self._sample_rate = sample_rate
        self._audio_sample_rate = audio_sample_rate
        self._sync_mode = sync_mode
        self._generator_class = generator_class
        self._generator_options = generator_options
        self.controller: Optional[AvatarController] = None
        self.session: Optional[AvatarSession] = None
        self.generator: Optional[AvatarKitVideoGenerator] = None
        self.audio_output: Optional[QueueAudioOutput] = None
        self.runner: Optional[AvatarRunner] = None

    async def start(self, agent_session: Any, room: Any) -> None:
        """Connect, take over the agent's audio output, start publishing.
        On a failure nothing is left running and the agent's output is unchanged."""
        if self.runner is not None:
            raise RuntimeError("LiveKitAvatar already started")
        controller = AvatarController(sample_rate=self._sample_rate, sync_mode=self._sync_mode)
        session: Optional[AvatarSession] = None
        try:
            token = await fetch_session_token(self._console, self._api_key)
            session = AvatarSession(
                controller, self._ingress, app_id=self._app_id, session_token=token, avatar_id=self._avatar_id
            )
            await session.start()
            generator = self._generator_class(
                session,
                renderer=self._renderer,
                width=self._width,
                height=self._height,
                audio_sample_rate=self._audio_sample_rate,
                **self._generator_options,
            )
            audio_output = QueueAudioOutput(sample_rate=self._sample_rate)
            runner = AvatarRunner(room, audio_recv=audio_output, video_gen=generator, options=generator.avatar_options())
            generator.use_synchronizer(runner.av_sync)
            await runner.start()
        except BaseException:
            if session is not None:
                await session.close()
            controller.close()
            raise
        agent_session.output.audio = audio_output
        self.controller, self.session, self.generator = controller, session, generator
        self.audio_output, self.runner = audio_output, runner

    async def aclose(self) -> None:
        """Stop publishing and close the motion-server session (idempotent)."""
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.aclose()
        if self.generator is not None:
            await self.generator.aclose()
        if self.session is not None:
            await self.session.close()
        if self.controller is not None:
            self.controller.close()
