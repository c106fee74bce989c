"""The drawing the LiveKit adapters put on the video track.

Any object with ``render_into(keyframe, rgb_out)`` is a :class:`Renderer`
(the shape of :mod:`avatarkit_fast.render`'s protocol); :func:`as_renderer`
also takes an object with ``render(keyframe) -> PIL.Image`` and adapts it,
and ``None`` means the package's face drawing
(:class:`avatarkit_fast.render.FaceRenderer`) at the requested size.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Renderer", "ImageRendererAdapter", "as_renderer", "default_renderer"]


@runtime_checkable
class Renderer(Protocol):
    """Draws one keyframe (120 float32) into ``rgb_out``, a writable
    ``(height, width, 3)`` uint8 array, in place."""

    def render_into(self, keyframe: np.ndarray, rgb_out: np.ndarray) -> None: ...


class ImageRendererAdapter:
    """A :class:`Renderer` over an object whose ``render(keyframe)`` returns a
    picture (a ``PIL.Image`` or an ``(h, w, 3)`` array): the picture is scaled
    to ``rgb_out`` when its size differs."""

    def __init__(self, drawer: Any) -> None:
        if not callable(getattr(drawer, "render", None)):
            raise TypeError(f"{type(drawer).__name__} has no render(keyframe) method")
        self.drawer = drawer

    def render_into(self, keyframe: np.ndarray, rgb_out: np.ndarray) -> None:
        picture = self.drawer.render(keyframe)
        height, width = rgb_out.shape[:2]
        if hasattr(picture, "resize") and hasattr(picture, "size") and not isinstance(picture, np.ndarray):
            if tuple(picture.size) != (width, height):
                from PIL import Image

                picture = picture.resize((width, height), Image.BILINEAR)
            picture = np.asarray(picture.convert("RGB"))
        picture = np.asarray(picture)
        if picture.shape != rgb_out.shape:
            raise ValueError(f"the renderer drew {picture.shape}, expected {rgb_out.shape}")
        rgb_out[...] = picture


def default_renderer(width: int, height: int) -> Renderer:
    """The package's face drawing (:class:`avatarkit_fast.render.FaceRenderer`)
    at the frame's size, drawn into the frame's buffer."""
    from ..render import FaceRenderer

    return FaceRenderer(width, height)


def as_renderer(renderer: Any, width: int, height: int) -> Renderer:
    """``renderer`` as a :class:`Renderer` (see the module); TypeError for anything else."""
    if renderer is None:
        return default_renderer(width, height)
    if callable(getattr(renderer, "render_into", None)):
        return renderer
    if callable(getattr(renderer, "render", None)):
        return ImageRendererAdapter(renderer)
    raise TypeError(
        f"renderer must have render_into(keyframe, rgb_out) (or render(keyframe)), got {type(renderer).__name__}"
    )
