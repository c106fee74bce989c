"""LiveKit Agents: a host-mode avatar in an agent's process or as a worker.

- :class:`AvatarKitVideoGenerator`: a LiveKit ``VideoGenerator`` over a
  started :class:`~avatarkit_fast.AvatarSession`.
- :class:`LiveKitAvatar`: ``await avatar.start(agent_session, room)``, in the
  agent's process.
- :func:`run_avatar` / :func:`entrypoint` / :func:`build_server`: the avatar
  as its own participant, an ``AgentServer`` worker (``avatarkit-fast livekit-worker``).
- :class:`LiveKitSink` / :func:`pump_livekit`: the host-mode relay over a room.
- :class:`Renderer`: what draws a keyframe into an RGB frame.

Needs the ``livekit`` extra (``livekit-agents`` 1.8, ``livekit``).
"""

from ._render import ImageRendererAdapter, Renderer, as_renderer
from .avatar import LiveKitAvatar
from .generator import AvatarKitVideoGenerator
from .worker import AVATAR_AGENT_NAME, AvatarLoad, AvatarWorkerConfig, build_server, entrypoint, run_avatar
from .relay import RELAY_TOPIC, LiveKitSink, pump_livekit

__all__ = [
    "AVATAR_AGENT_NAME",
    "AvatarLoad",
    "AvatarWorkerConfig",
    "RELAY_TOPIC",
    "AvatarKitVideoGenerator",
    "ImageRendererAdapter",
    "LiveKitAvatar",
    "LiveKitSink",
    "Renderer",
    "as_renderer",
    "build_server",
    "entrypoint",
    "run_avatar",
    "pump_livekit",
]
