"""The host-mode avatar for Pipecat (extra ``[pipecat]``):
:class:`AvatarKitVideoService`, a frame processor placed after the TTS that
turns its speech into the conversation's audio plus the avatar's video,
in sync, rendered on this host.

Every name here needs ``pipecat-ai``; import this package only where it is
installed.
"""

from .render import FaceRendererAdapter, Renderer
from .service import AvatarKitVideoService

__all__ = ["AvatarKitVideoService", "FaceRendererAdapter", "Renderer"]
