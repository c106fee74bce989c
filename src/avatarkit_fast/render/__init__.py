"""Drawing the avatar: a keyframe in, RGB pixels out, in the caller's buffer.

A :class:`Renderer` draws one FLAME keyframe (a ``(120,)`` float32 row, as
the controller's ``current_frame_into`` fills it) into a caller's
``(height, width, 3)`` uint8 C-contiguous buffer.  Video sinks (the demo's
film writer, a LiveKit or Pipecat video track) call it once per video frame
with the same buffer, so nothing is allocated per frame.

:class:`FaceRenderer` is the default renderer: a cartoon head, not a FLAME
mesh, drawn so a person can see the mouth move with the sound.  What each
FLAME group of the keyframe moves (offsets from
:data:`avatarkit_fast._schema.FLAME_OFFSETS`):

============  ======  ==========================================================
group         floats  drawn as
============  ======  ==========================================================
translation   0..2    [0] moves the head right, [1] up, by 2 picture sizes per
                      unit (metres); [2] (depth) is not drawn
rotation      3..5    head pose (axis-angle, radians) times ``motion_gain``:
                      [0] pitch and [1] yaw move the features over the head,
                      [2] roll turns the whole head
neck_pose     6..8    added to rotation (the same three angles)
jaw_pose      9..11   [0] opens the mouth (and drops the chin) steeply over
                      the small angles of speech, saturating at 0.6 rad; the
                      other two are not drawn
eye_pose      12..17  left eye [12] pitch, [13] yaw; right eye [15], [16]: the
                      gaze (iris and pupil); roll [14], [17] is not drawn
eye_lid       18..19  left, right: 0 open .. 1 closed (the upper lid comes down)
expression    20..119 [0] widens the jaw opening and the mouth, [1] smiles
                      (corners up), [2] raises the brows; the rest is not drawn
============  ======  ==========================================================

NaN and ±inf are drawn as 0; other values are clipped to what the face can
show, so no keyframe makes :meth:`Renderer.render_into` fail or hang.

The pixels are painted by a small rasterizer with two twins, like every hot
path of the package: the compiled ``_face_c`` (used when built) and the numpy
``_face_py``.  Both produce identical pictures, byte for byte.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .face import MAX_SIZE, MIN_SIZE, FaceRenderer, face_module

__all__ = ["FaceRenderer", "MAX_SIZE", "MIN_SIZE", "Renderer", "face_module"]


@runtime_checkable
class Renderer(Protocol):
    """What a video sink needs of a renderer: its picture size, and a draw
    of one keyframe into a buffer the sink owns."""

    @property
    def width(self) -> int:
        """Picture width in pixels."""
        ...

    @property
    def height(self) -> int:
        """Picture height in pixels."""
        ...

    def render_into(self, keyframe: np.ndarray, rgb_out: np.ndarray) -> None:
        """Draw ``keyframe`` ((120,) float32) into ``rgb_out`` ((height, width,
        3) uint8, C-contiguous), replacing every pixel; TypeError or
        ValueError (and nothing drawn) for another shape or dtype."""
        ...
