"""The avatar as its own participant: a LiveKit ``AgentServer`` worker.

The agent sends its speech with ``DataStreamAudioOutput(room,
destination_identity=<the avatar>)`` (byte streams on ``lk.audio_stream``,
RPCs ``lk.clear_buffer`` / ``lk.playback_finished``); :func:`run_avatar`
receives it with ``DataStreamAudioReceiver``, drives the motion server through
an :class:`~avatarkit_fast.AvatarSession`, and publishes the avatar's audio and
video from an ``AvatarRunner`` over an
:class:`~avatarkit_fast.livekit.AvatarKitVideoGenerator`.  :func:`build_server`
registers it as the job of an ``AgentServer``, so LiveKit's own dispatch
spreads avatars over as many machines as run a worker; its load function
(:class:`AvatarLoad`) reports this worker's real load.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from livekit.agents.voice.avatar import AvatarRunner, DataStreamAudioReceiver

from ..controller import AvatarController
from ..session import AvatarSession, fetch_session_token
from .generator import AvatarKitVideoGenerator

__all__ = ["AVATAR_AGENT_NAME", "AvatarLoad", "AvatarWorkerConfig", "build_server", "entrypoint", "run_avatar"]

logger = logging.getLogger("avatarkit_fast.livekit")

#: The agent name the worker registers (explicit dispatch).
AVATAR_AGENT_NAME = "avatarkit-avatar"


@dataclass
class AvatarWorkerConfig:
    """What an avatar job needs: the motion server and its credentials, the
    picture, and the worker's capacity (avatar sessions it takes at most)."""

    api_key: str
    app_id: str
    avatar_id: str
    console_endpoint_url: str
    ingress_endpoint_url: str
    width: int = 256
    height: int = 256
    sample_rate: int = 16000
    audio_sample_rate: Optional[int] = None
    capacity: int = 4
    agent_name: str = AVATAR_AGENT_NAME
    renderer: Any = None
    generator_options: dict = field(default_factory=dict)


class AvatarLoad:
    """The worker's load, 0..1, for ``AgentServer(load_fnc=...)``: the larger
    of its avatar sessions over ``capacity`` and the CPU this process used
    since the previous call over the machine's cores (the sessions run in
    this process: the thread job executor)."""

    def __init__(self, capacity: int, *, cpu_count: Optional[int] = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.cpu_count = cpu_count or os.cpu_count() or 1
        self.sessions = 0
        self._last = (time.monotonic(), time.process_time())

    def cpu(self) -> float:
        """Share of the machine's CPU this process used since the last call."""
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._last
        self._last = (wall, cpu)
        if wall - last_wall <= 0:
            return 0.0
        return max(0.0, (cpu - last_cpu) / (wall - last_wall) / self.cpu_count)

    def __call__(self, server: Any = None) -> float:
        return min(1.0, max(self.sessions / self.capacity, self.cpu()))


async def run_avatar(
    room: Any,
    config: AvatarWorkerConfig,
    *,
    sender_identity: Optional[str] = None,
    load: Optional[AvatarLoad] = None,
    stop: Optional[asyncio.Event] = None,
) -> AvatarKitVideoGenerator:
    """Be the avatar in ``room`` (connected) until the agent's audio stream
    ends, the room disconnects or ``stop`` is set: take the speech of
    ``sender_identity`` (default: the first agent participant), publish the
    avatar's audio and video.  Returns the generator (its counters)."""
    controller = AvatarController(sample_rate=config.sample_rate)
    session: Optional[AvatarSession] = None
    runner: Optional[AvatarRunner] = None
    if load is not None:
        load.sessions += 1
    try:
        token = await fetch_session_token(config.console_endpoint_url, config.api_key)
        session = AvatarSession(
            controller, config.ingress_endpoint_url, app_id=config.app_id, session_token=token,
            avatar_id=config.avatar_id,
        )
        await session.start()
        generator = AvatarKitVideoGenerator(
            session, renderer=config.renderer, width=config.width, height=config.height,
            audio_sample_rate=config.audio_sample_rate, **config.generator_options,
        )
        receiver = DataStreamAudioReceiver(room, sender_identity=sender_identity)
        runner = AvatarRunner(room, audio_recv=receiver, video_gen=generator, options=generator.avatar_options())
        generator.use_synchronizer(runner.av_sync)
        await runner.start()
        done = asyncio.ensure_future(runner.wait_for_complete())
        waits = [done]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return generator
    finally:
        if runner is not None:
            await runner.aclose()
        if session is not None:
            await session.close()
        controller.close()
        if load is not None:
            load.sessions -= 1


async def entrypoint(ctx: Any, config: AvatarWorkerConfig, *, load: Optional[AvatarLoad] = None) -> None:
    """The job of an avatar worker (``JobContext``): connect to the room and
    :func:`run_avatar`.  The job's metadata, if any, is the identity of the
    agent whose speech to take."""
    await ctx.connect()
    sender = (getattr(ctx.job, "metadata", "") or "").strip() or None
    await run_avatar(ctx.room, config, sender_identity=sender, load=load)


def build_server(config: AvatarWorkerConfig, **server_options: Any) -> Any:
    """An ``AgentServer`` whose job is the avatar (``agent_name`` for explicit
    dispatch), with :class:`AvatarLoad` as its load function and the thread
    job executor (so that the load sees the sessions).  Run it with
    ``await server.run()``; LiveKit's URL and keys come from
    ``server_options`` or ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``."""
    from livekit.agents import AgentServer, JobExecutorType

    load = AvatarLoad(config.capacity)
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD, load_fnc=load, load_threshold=0.9, **server_options
    )

    async def avatar_job(ctx: Any) -> None:
        await entrypoint(ctx, config, load=load)

    server.rtc_session(avatar_job, agent_name=config.agent_name)
    server.avatar_load = load  # type: ignore[attr-defined]
    return server
