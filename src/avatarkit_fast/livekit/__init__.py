"""LiveKit Agents: a host-mode avatar in an agent's process or as a worker.

- :class:`AvatarKitVideoGenerator`: a LiveKit ``VideoGenerator`` over a
  started :class:`~avatarkit_fast.AvatarSession`.
- :class:`LiveKitAvatar`: ``await avatar.start(agent_session, room)``, in the
  agent's process.
- :class:`LiveKitSink` / :func:`pump_livekit`: the host-mode relay over a room.
- :class:`Renderer`: what draws a keyframe into an RGB frame.

Needs the ``livekit`` extra (``livekit-agents`` 1.8, ``livekit``).
"""

from ._render import ImageRendererAdapter, Renderer, as_renderer
from .avatar import LiveKitAvatar
from .generator import AvatarKitVideoGenerator
from .relay import RELAY_TOPIC, LiveKitSink, pump_livekit

__all__ = [
    "RELAY_TOPIC",
    "AvatarKitVideoGenerator",
    "ImageRendererAdapter",
    "LiveKitAvatar",
    "LiveKitSink",
    "Renderer",
    "as_renderer",
    "pump_livekit",
]
