"""The face: a cartoon head drawn from one FLAME keyframe (see the package
docstring of :mod:`avatarkit_fast.render` for what each group moves).

:class:`FaceRenderer` turns the keyframe into a short list of filled shapes
(polygons and ellipses in pixel coordinates, a few hundred vertices, in
preallocated tables) and hands them to the rasterizer twin, ``_face_c``
(compiled) or ``_face_py`` (numpy), which paints them into the caller's
picture.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .._compat import NO_EXTENSIONS
from .._schema import FLAME_OFFSETS, KEYFRAME_FLOATS

__all__ = ["FaceRenderer", "MAX_SIZE", "MIN_SIZE", "face_module"]

#: The smallest and largest width or height a renderer draws.
MIN_SIZE = 16
MAX_SIZE = 4096

_T = FLAME_OFFSETS["translation"]
_R = FLAME_OFFSETS["rotation"]
_N = FLAME_OFFSETS["neck_pose"]
_J = FLAME_OFFSETS["jaw_pose"]
_E = FLAME_OFFSETS["eye_pose"]
_L = FLAME_OFFSETS["eye_lid"]
_X = FLAME_OFFSETS["expression"]

BACKGROUND = (236, 240, 245)
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

# Sizes of the vertex tables (points on the unit head).
_HEAD = 64  # the skull and chin outline
_HAIR_ARC = 24
_HAIR_N = _HAIR_ARC + 5
_MOUTH_N = 17  # points along each lip line
_TEETH_N = 9
_MAX_CMDS = 32
_MAX_VERTS = 512


def face_module(impl: Optional[str] = None):
    """The rasterizer twin: ``_face_c`` unless the extensions are off or not
    built, ``impl="c"`` / ``"py"`` to force one (ImportError if ``c`` is absent)."""
    import importlib

    if impl is None:
        if NO_EXTENSIONS:
            return importlib.import_module("avatarkit_fast.render._face_py")
        try:
            return _compiled()
        except ImportError:  # a source tree without a build
            return importlib.import_module("avatarkit_fast.render._face_py")
    if impl == "c":
        return _compiled()
    if impl == "py":
        return importlib.import_module("avatarkit_fast.render._face_py")
    raise ValueError(f"impl must be 'c', 'py' or None, got {impl!r}")


def _compiled():
    import importlib

    mod = importlib.import_module("avatarkit_fast.render._face_c")
    if (getattr(mod, "__file__", None) or "").endswith((".py", ".pyx")):
        raise ModuleNotFoundError("avatarkit_fast.render._face_c is not built", name=mod.__name__)
    return mod


def _rotation(v0: float, v1: float, v2: float, out: np.ndarray) -> None:
    """``out`` (3, 3) = the rotation of the axis-angle vector (Rodrigues)."""
    theta = math.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
    if theta < 1e-9:
        out[...] = np.eye(3)
        return
    x, y, z = v0 / theta, v1 / theta, v2 / theta
    s, c = math.sin(theta), math.cos(theta)
    t = 1.0 - c
    out[0, 0], out[0, 1], out[0, 2] = c + t * x * x, t * x * y - s * z, t * x * z + s * y
    out[1, 0], out[1, 1], out[1, 2] = t * x * y + s * z, c + t * y * y, t * y * z - s * x
    out[2, 0], out[2, 1], out[2, 2] = t * x * z - s * y, t * y * z + s * x, c + t * z * z


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _sphere_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(0.0, 1.0 - x * x - y * y))


def _size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise ValueError(f"{name} must be {MIN_SIZE}..{MAX_SIZE} pixels, got {value}")
    return int(value)


class FaceRenderer:
    """Draws a keyframe as the cartoon face into a ``(height, width, 3)`` uint8 picture.

    ``FaceRenderer(256)`` is square; ``FaceRenderer(320, 240)`` is not (the
    face is sized by the shorter side and centred).  ``motion_gain`` scales
    the head pose (the poses of real speech are small).  ``impl`` picks the
    rasterizer twin as :func:`face_module` does.  One renderer per thread:
    :meth:`render_into` reuses the renderer's tables.
    """

    def __init__(self, width: int = 256, height: Optional[int] = None, *,
                 motion_gain: float = 1.5, impl: Optional[str] = None) -> None:
        self.width = _size("width", width)
        self.height = self.width if height is None else _size("height", height)
        gain = float(motion_gain)
        if not math.isfinite(gain):
            raise ValueError(f"motion_gain must be finite, got {motion_gain!r}")
        self._gain = gain
        self._mod = face_module(impl)
        self.impl = "py" if self._mod.__name__.endswith("_py") else "c"
        self._k = np.zeros(KEYFRAME_FLOATS, np.float64)
        self._cmds = np.zeros((_MAX_CMDS, 8), np.float64)
        self._verts = np.zeros((_MAX_VERTS, 2), np.float64)
        self._acc = np.zeros(self.width + 1, np.float64)
        self._xs = np.zeros(_MAX_VERTS, np.float64)
        self._ds = np.zeros(_MAX_VERTS, np.intc)
        self._es = np.zeros(_MAX_VERTS, np.intc)
        self._rot = np.eye(3)
        self._roll = np.eye(3)
        self._pts = np.zeros((_MAX_VERTS, 3), np.float64)
        self._q = np.zeros((_MAX_VERTS, 3), np.float64)
        a = 2 * np.pi * np.arange(_HEAD) / _HEAD
        self._head_x, self._head_y = 0.92 * np.cos(a), np.sin(a)
        self._chin = self._head_y < 0
        h = np.linspace(0.05 * np.pi, 0.95 * np.pi, _HAIR_ARC)
        hair = [(0.92 * math.cos(t), 0.55 + 0.45 * math.sin(t)) for t in h]
        hair += [(-0.9, 0.5), (-0.6, 0.62), (0.0, 0.68), (0.6, 0.62), (0.9, 0.5)]
        self._hair = np.array([(x, y, 0.0) for x, y in hair])
        self._t = np.linspace(-1.0, 1.0, _MOUTH_N)
        self._tt = np.linspace(-1.0, 1.0, _TEETH_N)
        # Line widths as today's demo drew them at 192 pixels, scaled with the size.
        self._u = max(min(self.width, self.height) / 192.0, 0.5)

    def __repr__(self) -> str:
        return f"FaceRenderer({self.width}, {self.height}, impl={self.impl!r})"

    # -- the public calls ---------------------------------------------------
    def render_into(self, keyframe, rgb_out: np.ndarray) -> None:
        """Draw ``keyframe`` ((120,) floats) into ``rgb_out`` ((height, width, 3)
        uint8, C-contiguous, writable), replacing every pixel.

        Refuses another shape or dtype (ValueError / TypeError) before drawing
        anything.  NaN and ±inf in the keyframe are drawn as 0 (that value's
        rest pose); finite values beyond what a face can show are clipped.
        Nothing is allocated that grows with the picture; with the compiled
        rasterizer the pixels are painted without the GIL.
        """
        self._check_out(rgb_out)
        self._load(keyframe)
        n = self._shapes()
        self._mod.fill_shapes(rgb_out, self._cmds, n, self._verts, self._acc, self._xs, self._ds, self._es)

    def render(self, keyframe) -> np.ndarray:
        """A new (height, width, 3) uint8 picture of ``keyframe`` (allocates; a
        video loop calls :meth:`render_into` with its own buffer)."""
        out = np.empty((self.height, self.width, 3), np.uint8)
        self.render_into(keyframe, out)
        return out

    # -- checks -------------------------------------------------------------
    def _check_out(self, out) -> None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"rgb_out must be a numpy array, got {type(out).__name__}")
        if out.dtype != np.uint8:
            raise TypeError(f"rgb_out must be uint8, got {out.dtype}")
        want = (self.height, self.width, 3)
        if out.shape != want:
            raise ValueError(f"rgb_out must have shape {want} (height, width, RGB), got {out.shape}")
        if not out.flags.c_contiguous:
            raise ValueError("rgb_out must be C-contiguous")
        if not out.flags.writeable:
            raise ValueError("rgb_out is read-only")

    def _load(self, keyframe) -> None:
        k = keyframe if isinstance(keyframe, np.ndarray) else np.asarray(keyframe)
        if k.dtype.kind not in "fiu":
            raise TypeError(f"a keyframe holds numbers, got dtype {k.dtype}")
        if k.shape != (KEYFRAME_FLOATS,):
            raise ValueError(f"a keyframe has {KEYFRAME_FLOATS} floats, got shape {k.shape}")
        dst = self._k
        dst[...] = k
        np.nan_to_num(dst, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        # Far beyond any pose or expression; keeps every coordinate a sane float.
        np.clip(dst, -100.0, 100.0, out=dst)

    # -- the drawing --------------------------------------------------------
    def _shapes(self) -> int:
        """Fill the command and vertex tables for the keyframe in ``self._k``;
        returns the number of commands."""
        k = self._k
        w, h = self.width, self.height
        s = float(min(w, h))
        u = self._u
        radius = s * 0.30
        cx = w / 2.0 + _clip(k[_T], -2.0, 2.0) * s * 2.0
        cy = h / 2.0 - 0.03 * s - _clip(k[_T + 1], -2.0, 2.0) * s * 2.0
        g = self._gain
        p0 = _clip((k[_R] + k[_N]) * g, -math.pi, math.pi)
        p1 = _clip((k[_R + 1] + k[_N + 1]) * g, -math.pi, math.pi)
        p2 = _clip((k[_R + 2] + k[_N + 2]) * g, -math.pi, math.pi)
        # Pitch and yaw turn the features over the sphere; roll turns it all.
        _rotation(-p0, p1, p2, self._rot)
        _rotation(0.0, 0.0, p2, self._roll)
        jaw = _clip(float(k[_J]), -0.05, 0.6)
        e0, e1, e2 = float(k[_X]), float(k[_X + 1]), float(k[_X + 2])
        # Opening in head radii: steep for the small angles of real speech, saturating.
        open_ = _clip(0.5 * (1.0 - math.exp(-max(jaw, 0.0) / 0.14)) + 0.015 * e0, 0.0, 0.55)
        smile = _clip(0.04 * e1, -0.12, 0.12)
        mwidth = 0.34 * (1.0 + _clip(0.05 * e0 - 0.6 * jaw, -0.25, 0.2))

        pts = self._pts
        # Points turned by the roll only: the head (outer, inner) and the hair.
        i = 0
        hy = np.where(self._chin, self._head_y * (1.12 + open_ * 0.55), self._head_y)
        inset = 1.0 - 2.0 * u / radius
        head_out, head_in, hair = i, i + _HEAD, i + 2 * _HEAD
        pts[head_out:head_out + _HEAD, 0] = self._head_x
        pts[head_out:head_out + _HEAD, 1] = hy
        pts[head_in:head_in + _HEAD, 0] = self._head_x * inset
        pts[head_in:head_in + _HEAD, 1] = hy * inset
        pts[head_out:head_in + _HEAD, 2] = 0.0
        pts[hair:hair + _HAIR_N] = self._hair
        n_roll = hair + _HAIR_N
        # Points turned by the whole head pose: eyes, brows, nose, mouth.
        eyes = n_roll
        pts[eyes, :] = (-0.36, 0.12, 0.0)
        pts[eyes + 1, :] = (0.36, 0.12, 0.0)
        brows = eyes + 2
        for side in range(2):
            ex = 0.36 * (1 if side else -1)
            by = 0.12 + 0.2 + _clip(0.02 * e2, -0.05, 0.08)
            b = brows + 3 * side
            pts[b:b + 3, 0] = (ex - 0.16, ex, ex + 0.16)
            pts[b:b + 3, 1] = (by - 0.02, by + 0.02, by - 0.02)
        nose = brows + 6
        pts[nose:nose + 3, 0] = (0.0, -0.07, 0.07)
        pts[nose:nose + 3, 1] = (0.05, -0.17, -0.17)
        lips = nose + 3  # upper, inner_up, inner_low, lower
        t = self._t
        my = -0.42 - open_ * 0.15
        curve = smile * t * t
        bow = 0.035 * (1 - t * t)
        drop = open_ * (1 - t * t) * 0.9
        m = _MOUTH_N
        pts[lips:lips + 4 * m, 0] = np.tile(t * mwidth, 4)
        pts[lips:lips + m, 1] = my + curve + bow + 0.05
        pts[lips + m:lips + 2 * m, 1] = my + curve + bow * 0.4 + 0.012
        pts[lips + 2 * m:lips + 3 * m, 1] = my + curve - 0.012 - drop
        pts[lips + 3 * m:lips + 4 * m, 1] = my + curve - 0.06 - drop * 1.05 - 0.03 * (1 - t * t)
        teeth = lips + 4 * m
        tt = self._tt
        pts[teeth:teeth + _TEETH_N, 0] = tt * mwidth * 0.7
        pts[teeth:teeth + _TEETH_N, 1] = my + 0.01 - np.abs(tt) * 0.01
        pts[teeth + _TEETH_N:teeth + 2 * _TEETH_N, 0] = tt[::-1] * mwidth * 0.7
        pts[teeth + _TEETH_N:teeth + 2 * _TEETH_N, 1] = my - min(open_ * 0.25, 0.05)
        end = teeth + 2 * _TEETH_N
        feat = pts[eyes:end]
        feat[:, 2] = _sphere_z(feat[:, 0], feat[:, 1])
        pts[nose:nose + 3, 2] += (0.05, 0.08, 0.08)  # the nose stands out

        # Project: x right, y down, in pixels.
        v = self._verts
        q = self._q
        np.matmul(pts[:n_roll], self._roll.T, out=q[:n_roll])
        np.matmul(feat, self._rot.T, out=q[eyes:end])
        np.multiply(q[:end, :2], radius, out=v[:end])
        v[:end, 0] += cx
        np.subtract(cy, v[:end, 1], out=v[:end, 1])

        cmds = self._cmds
        state = [0, end]  # commands used, vertices used

        def cmd(kind, color, a=0.0, b=0.0, c=0.0, d=0.0):
            cmds[state[0]] = (kind, color[0], color[1], color[2], a, b, c, d)
            state[0] += 1

        def poly(start, count, color):
            cmd(1, color, start, count)

        def quad(x0, y0, x1, y1, color):
            j = state[1]
            v[j:j + 4] = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
            state[1] += 4
            poly(j, 4, color)

        def stroke(start, count, width, color):
            # A polyline as a polygon: its points pushed out either side along
            # the mean normal (mitred, the miter capped at twice the width).
            j = state[1]
            half = width / 2.0
            px = [float(c) for c in v[start:start + count, 0]]
            py = [float(c) for c in v[start:start + count, 1]]
            sn = []  # each segment's unit normal
            for a in range(count - 1):
                dx, dy = px[a + 1] - px[a], py[a + 1] - py[a]
                d = max(math.hypot(dx, dy), 1e-9)
                sn.append((-dy / d, dx / d))
            for a in range(count):
                if a == 0 or a == count - 1:
                    nx, ny = sn[0] if a == 0 else sn[-1]
                else:
                    (ux, uy), (wx, wy) = sn[a - 1], sn[a]
                    f = max(1.0 + ux * wx + uy * wy, 0.5)
                    nx, ny = (ux + wx) / f, (uy + wy) / f
                v[j + a, 0], v[j + a, 1] = px[a] + nx * half, py[a] + ny * half
                b = j + 2 * count - 1 - a
                v[b, 0], v[b, 1] = px[a] - nx * half, py[a] - ny * half
            state[1] += 2 * count
            poly(j, 2 * count, color)

        cmd(0, BACKGROUND)
        poly(head_out, _HEAD, _OUTLINE)
        poly(head_in, _HEAD, _SKIN)
        poly(hair, _HAIR_N, _HAIR)
        lw = u
        for side in range(2):
            ex, ey = v[eyes + side]
            rw, rh = radius * 0.17, radius * 0.11
            cmd(2, _OUTLINE, ex, ey, rw, rh)
            cmd(2, _WHITE, ex, ey, rw - lw, rh - lw)
            ge = _E + 3 * side
            gx = _clip(float(k[ge + 1]) * 2.5 + p1 * 0.3, -0.6, 0.6) * rw
            gy = _clip(-float(k[ge]) * 2.5, -0.5, 0.5) * rh
            ir = rh * 0.85
            cmd(2, _IRIS, ex + gx, ey + gy, ir, ir)
            cmd(2, _PUPIL, ex + gx, ey + gy, ir * 0.45, ir * 0.45)
            lid = _clip(float(k[_L + side]), 0.0, 1.0)
            if lid > 0.02:
                # The upper lid comes down over the eye.
                top, bottom = ey - rh - lw, ey - rh + 2 * rh * lid
                quad(ex - rw - lw, top, ex + rw + lw, bottom, _LID)
                quad(ex - rw, bottom - u, ex + rw, bottom + u, _OUTLINE)
            stroke(brows + 3 * side, 3, 3.0 * u, _HAIR)
        stroke(nose, 3, 2.0 * u, _OUTLINE)
        # Mouth: the lower lip follows the jaw, corners follow the smile.
        up, inner_up, inner_low, low = lips, lips + m, lips + 2 * m, lips + 3 * m

        def ring(a, b, color):
            # Line a forwards then line b backwards, as one polygon.
            j = state[1]
            v[j:j + m] = v[a:a + m]
            v[j + m:j + 2 * m] = v[b:b + m][::-1]
            state[1] += 2 * m
            poly(j, 2 * m, color)

        ring(up, inner_up, _LIP)
        ring(inner_low, low, _LIP)
        if open_ > 0.01:
            ring(inner_up, inner_low, _MOUTH)
            if open_ > 0.06:
                poly(teeth, 2 * _TEETH_N, _TEETH)
        return state[0]
