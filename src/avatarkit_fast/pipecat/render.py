"""What :class:`~avatarkit_fast.pipecat.AvatarKitVideoService` draws with: any
object with ``render_into(keyframe, rgb_out)``; by default the package's face
drawing through :class:`FaceRendererAdapter`."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = ["FaceRendererAdapter", "Renderer"]


class Renderer(Protocol):
    """Draws one keyframe (120 float32) into ``rgb_out``, a writable
    ``(height, width, 3)`` uint8 array, every pixel of it."""

    def render_into(self, keyframe: Any, rgb_out: np.ndarray) -> None: ...


def FaceRendererAdapter(width: int = 256, height: int = 256) -> Any:
    """The package's face drawing (:class:`avatarkit_fast.render.FaceRenderer`,
    compiled, into the caller's buffer with no allocation per frame) at
    ``width`` x ``height`` pixels: the service's default renderer."""
    from ..render import FaceRenderer

    return FaceRenderer(int(width), int(height))
