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


class FaceRendererAdapter:
    """The face of :class:`avatarkit_fast.cli.face.FaceRenderer` as a
    :class:`Renderer` of ``width`` x ``height`` pixels (drawn square at the
    larger side, then resized when the sides differ).  Needs Pillow."""

    def __init__(self, width: int = 256, height: int = 256, *, supersample: int = 2) -> None:
        from ..cli.face import FaceRenderer

        self.width, self.height = int(width), int(height)
        self._face = FaceRenderer(max(self.width, self.height), supersample=supersample)

    def render_into(self, keyframe: Any, rgb_out: np.ndarray) -> None:
        image = self._face.render(keyframe)
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height))
        rgb_out[...] = np.asarray(image, dtype=np.uint8)
