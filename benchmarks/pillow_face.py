"""The face as the demo drew it before ``avatarkit_fast.render``: Pillow
polygons and ellipses on a twice-size picture, scaled down with Lanczos.

Kept as the benchmark's peer baseline (what a Python developer writes with
Pillow) for ``benchmarks/bench_render.py``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from avatarkit_fast._schema import FLAME_GROUPS, KEYFRAME_FLOATS

_T, _R, _N, _J, _E, _L, _X = (offset for _, offset, _ in FLAME_GROUPS)

_BG = (236, 240, 245)
_SKIN = (244, 205, 170)
_OUTLINE = (96, 70, 60)
_LIP = (196, 72, 84)
_MOUTH = (70, 24, 30)
_TEETH = (250, 250, 246)
_WHITE = (255, 255, 255)
_IRIS = (60, 96, 140)
_PUPIL = (20, 20, 28)
_LID = (228, 186, 150)
_HAIR = (92, 62, 44)


def _rotation(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues)."""
    theta = float(np.linalg.norm(v))
    if theta < 1e-9:
        return np.eye(3)
    k = v / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * (kx @ kx)


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


class PillowFaceRenderer:
    """Draws one keyframe (120 floats) as an RGB ``PIL.Image`` of ``size`` pixels.

    Mapping: head pose = rotation + neck_pose (pitch/yaw move the features
    over the head, roll turns the picture), translation shifts it; jaw opening =
    jaw_pose[0] (radians), widened by expression[0] and the smile by
    expression[1]; eyelids close with eye_lid; eyes look along eye_pose.
    """

    def __init__(self, size: int = 192, *, supersample: int = 2, motion_gain: float = 1.5) -> None:
        from PIL import Image, ImageDraw  # noqa: F401  (fail early without Pillow)

        self.size = int(size)
        self._ss = int(supersample)
        self._gain = float(motion_gain)

    # Face points are on a unit sphere: x right, y up, z towards the viewer.
    def _project(self, pts, rot, center, radius):
        p = np.asarray(pts, dtype=np.float64)
        q = p @ rot.T
        return [(center[0] + radius * x, center[1] - radius * y) for x, y, _ in q]

    @staticmethod
    def _on_sphere(x: float, y: float, lift: float = 0.0):
        z = math.sqrt(max(0.0, 1.0 - x * x - y * y)) + lift
        return (x, y, z)

    def render(self, keyframe: Sequence[float], label: str = ""):
        from PIL import Image, ImageDraw

        k = np.asarray(keyframe, dtype=np.float64)
        if k.shape != (KEYFRAME_FLOATS,):
            raise ValueError(f"a keyframe has {KEYFRAME_FLOATS} floats, got shape {k.shape}")
        k = np.nan_to_num(k, nan=0.0, posinf=0.0, neginf=0.0)
        s = self.size * self._ss
        img = Image.new("RGB", (s, s), _BG)
        d = ImageDraw.Draw(img)
        radius = s * 0.30
        center = (s / 2 + k[_T] * s * 2.0, s * 0.47 - k[_T + 1] * s * 2.0)
        pose = (k[_R:_R + 3] + k[_N:_N + 3]) * self._gain
        # Pitch and yaw turn the face over the sphere; roll is applied too.
        rot = _rotation(np.array([-pose[0], pose[1], pose[2]]))
        jaw = _clip(float(k[_J]), -0.05, 0.6)
        expr = k[_X:_X + 4]
        # Opening in head radii: steep for the small angles of real speech, saturating.
        open_ = _clip(0.5 * (1.0 - math.exp(-max(jaw, 0.0) / 0.14)) + 0.015 * expr[0], 0.0, 0.55)
        smile = _clip(0.04 * expr[1], -0.12, 0.12)
        width = 0.34 * (1.0 + _clip(0.05 * expr[0] - 0.6 * jaw, -0.25, 0.2))

        # Head: a skull ellipse and a chin that drops with the jaw.
        outline = []
        for i in range(64):
            a = 2 * math.pi * i / 64
            x, y = 0.92 * math.cos(a), math.sin(a)
            if y < 0:
                y = y * (1.12 + open_ * 0.55)
            outline.append((x, y, 0.0))
        roll = _rotation(np.array([0.0, 0.0, pose[2]]))
        d.polygon(self._project(outline, roll, center, radius), fill=_SKIN, outline=_OUTLINE, width=self._ss * 2)
        hair = [(0.92 * math.cos(a), 0.55 + 0.45 * math.sin(a) * 1.0, 0.0)
                for a in np.linspace(0.05 * math.pi, 0.95 * math.pi, 24)]
        hair += [(-0.9, 0.5, 0.0), (-0.6, 0.62, 0.0), (0.0, 0.68, 0.0), (0.6, 0.62, 0.0), (0.9, 0.5, 0.0)]
        d.polygon(self._project(hair, roll, center, radius), fill=_HAIR)

        # Eyes with lids and gaze.
        for side, eye in ((-1, k[_E:_E + 3]), (1, k[_E + 3:_E + 6])):
            ex, ey = 0.36 * side, 0.12
            c = self._project([self._on_sphere(ex, ey)], rot, center, radius)[0]
            rw, rh = radius * 0.17, radius * 0.11
            d.ellipse([c[0] - rw, c[1] - rh, c[0] + rw, c[1] + rh], fill=_WHITE, outline=_OUTLINE, width=self._ss)
            gx = _clip(float(eye[1]) * 2.5 + pose[1] * 0.3, -0.6, 0.6) * rw
            gy = _clip(-float(eye[0]) * 2.5, -0.5, 0.5) * rh
            ir = rh * 0.85
            d.ellipse([c[0] + gx - ir, c[1] + gy - ir, c[0] + gx + ir, c[1] + gy + ir], fill=_IRIS)
            pr = ir * 0.45
            d.ellipse([c[0] + gx - pr, c[1] + gy - pr, c[0] + gx + pr, c[1] + gy + pr], fill=_PUPIL)
            lid = _clip(float(k[_L + (0 if side < 0 else 1)]), 0.0, 1.0)
            if lid > 0.02:
                # The upper lid comes down over the eye.
                top, bottom = c[1] - rh - self._ss, c[1] - rh + 2 * rh * lid
                d.rectangle([c[0] - rw - self._ss, top, c[0] + rw + self._ss, bottom], fill=_LID)
                d.line([c[0] - rw, bottom, c[0] + rw, bottom], fill=_OUTLINE, width=self._ss * 2)
            brow_y = ey + 0.2 + _clip(0.02 * float(expr[2]), -0.05, 0.08)
            brow = [self._on_sphere(ex - 0.16, brow_y - 0.02), self._on_sphere(ex, brow_y + 0.02),
                    self._on_sphere(ex + 0.16, brow_y - 0.02)]
            d.line(self._project(brow, rot, center, radius), fill=_HAIR, width=self._ss * 3)

        nose = [self._on_sphere(0.0, 0.05, 0.05), self._on_sphere(-0.07, -0.17, 0.08),
                self._on_sphere(0.07, -0.17, 0.08)]
        d.line(self._project(nose, rot, center, radius), fill=_OUTLINE, width=self._ss * 2)

        # Mouth: the lower lip follows the jaw, corners follow the smile.
        my = -0.42 - open_ * 0.15
        upper, lower, inner_up, inner_low = [], [], [], []
        for i in range(17):
            t = -1.0 + 2.0 * i / 16
            x = t * width
            curve = smile * (t * t) - 0.0
            bow = 0.035 * (1 - t * t)
            upper.append(self._on_sphere(x, my + curve + bow + 0.05))
            inner_up.append(self._on_sphere(x, my + curve + bow * 0.4 + 0.012))
            drop = open_ * (1 - t * t) * 0.9
            inner_low.append(self._on_sphere(x, my + curve - 0.012 - drop))
            lower.append(self._on_sphere(x, my + curve - 0.06 - drop * 1.05 - 0.03 * (1 - t * t)))
        d.polygon(self._project(upper + inner_up[::-1], rot, center, radius), fill=_LIP)
        d.polygon(self._project(inner_low + lower[::-1], rot, center, radius), fill=_LIP)
        if open_ > 0.01:
            cav = self._project(inner_up + inner_low[::-1], rot, center, radius)
            d.polygon(cav, fill=_MOUTH)
            if open_ > 0.06:
                teeth = [self._on_sphere(t * width * 0.7, my + 0.01 - abs(t) * 0.01) for t in np.linspace(-1, 1, 9)]
                teeth += [self._on_sphere(t * width * 0.7, my - min(open_ * 0.25, 0.05)) for t in np.linspace(1, -1, 9)]
                d.polygon(self._project(teeth, rot, center, radius), fill=_TEETH)
        if self._ss > 1:
            img = img.resize((self.size, self.size), Image.LANCZOS)
        if label:
            ImageDraw.Draw(img).text((4, self.size - 14), label, fill=_OUTLINE)
        return img
