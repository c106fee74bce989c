"""Pure-Python (numpy) twin of ``_face_c.pyx``: the rasterizer of the face.

:func:`fill_shapes` paints a list of filled shapes, in order, into a caller's
``(H, W, 3)`` uint8 C-contiguous picture.  Both twins compute the same thing
the same way; any change lands in both in the same commit.

The shapes (one row of ``cmds`` each: ``kind, r, g, b, p0, p1, p2, p3``):

- ``POLYGON``: vertices ``verts[p0 : p0 + p1]`` (pixel coordinates, x right,
  y down), filled by the nonzero winding rule;
- ``ELLIPSE``: centre ``(p0, p1)``, radii ``(p2, p3)``;
- ``CLEAR``: the whole picture in the colour.

Antialiasing: each pixel row is cut into :data:`SUBROWS` sub-scanlines; on
each the exact horizontal extent of the shape in every pixel is summed, so a
pixel's coverage is its covered area (exact across a row, in steps of
1/``SUBROWS`` down a column).  The colour is blended by that coverage and
rounded to the nearest integer.  The twins do the same float64 operations
in the same order (and the build turns off fused multiply-add), so their
pictures are identical, byte for byte.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLEAR", "ELLIPSE", "POLYGON", "SUBROWS", "fill_shapes"]

CLEAR = 0
POLYGON = 1
ELLIPSE = 2
#: Sub-scanlines per pixel row.
SUBROWS = 4


def _bounds(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Pixel range [a, b) covering [lo, hi], clipped to [0, limit); empty as (0, 0)."""
    if not (hi > lo) or hi <= 0.0 or lo >= limit:  # also refuses NaN
        return 0, 0
    a = 0 if lo < 0.0 else int(np.floor(lo))
    b = limit if hi >= limit else min(limit, int(np.floor(hi)) + 1)
    return a, b


def _blend(out: np.ndarray, y0: int, x0: int, cov: np.ndarray, color) -> None:
    region = out[y0:y0 + cov.shape[0], x0:x0 + cov.shape[1]]
    c = np.minimum(cov, 1.0)[..., None]
    o = region.astype(np.float64)
    v = o + (np.asarray(color, np.float64) - o) * c
    region[...] = np.floor(v + 0.5).astype(np.uint8)


def _coverage(left: np.ndarray, right: np.ndarray, active: np.ndarray, rows: int, x0: int, x1: int) -> np.ndarray:
    """(rows, x1 - x0): each pixel's covered area, from the spans (left, right)
    of every sub-scanline (arrays of (rows * SUBROWS, spans))."""
    px = np.arange(x0, x1, dtype=np.float64)
    left = np.minimum(left, float(x1))[..., None]
    right = np.minimum(right, float(x1))[..., None]
    part = np.clip(right - px, 0.0, 1.0) - np.clip(left - px, 0.0, 1.0)
    part = np.where(active[..., None], part, 0.0)
    # Summed sub-scanline by sub-scanline, span by span: the compiled twin's
    # order, so that both round alike.
    part = part.reshape(rows, -1, x1 - x0)
    acc = np.zeros((rows, x1 - x0), np.float64)
    for j in range(part.shape[1]):
        acc += part[:, j, :]
    return acc / SUBROWS


def _subrows(y0: int, y1: int) -> np.ndarray:
    """The sub-scanlines of rows [y0, y1), as the compiled twin computes them."""
    offsets = (np.arange(SUBROWS, dtype=np.float64) + 0.5) / SUBROWS
    return (np.arange(y0, y1, dtype=np.float64)[:, None] + offsets[None, :]).ravel()


def _polygon(out: np.ndarray, v: np.ndarray, color) -> None:
    h, w = out.shape[0], out.shape[1]
    if len(v) < 3:
        return
    xs, ys = v[:, 0], v[:, 1]
    y0, y1 = _bounds(float(ys.min()), float(ys.max()), h)
    x0, x1 = _bounds(float(xs.min()), float(xs.max()), w)
    if y1 <= y0 or x1 <= x0:
        return
    sy = _subrows(y0, y1)
    ax, ay = xs, ys
    bx, by = np.roll(xs, -1), np.roll(ys, -1)
    s = sy[:, None]
    up = (ay <= s) & (by > s)
    down = (by <= s) & (ay > s)
    cross = up | down
    denom = np.where(by == ay, 1.0, by - ay)
    x = ax + (s - ay) * (bx - ax) / denom
    x = np.where(cross, x, np.inf)
    d = np.where(up, 1, np.where(down, -1, 0))
    k = int(cross.sum(axis=1).max())
    if k < 2:
        return
    order = np.argsort(x, axis=1, kind="stable")[:, :k]
    x = np.take_along_axis(x, order, axis=1)
    d = np.take_along_axis(d, order, axis=1)
    # The winding number after each crossing (a running sum, column by column:
    # np.cumsum keeps a little memory per new shape it sees).
    active = np.empty((d.shape[0], k - 1), bool)
    wind = np.zeros(d.shape[0], d.dtype)
    for j in range(k - 1):
        wind += d[:, j]
        active[:, j] = wind != 0
    _blend(out, y0, x0, _coverage(x[:, :-1], x[:, 1:], active, y1 - y0, x0, x1), color)


def _ellipse(out: np.ndarray, cx: float, cy: float, rx: float, ry: float, color) -> None:
    h, w = out.shape[0], out.shape[1]
    if not (rx > 0.0 and ry > 0.0):
        return
    y0, y1 = _bounds(cy - ry, cy + ry, h)
    x0, x1 = _bounds(cx - rx, cx + rx, w)
    if y1 <= y0 or x1 <= x0:
        return
    sy = _subrows(y0, y1)
    t = (sy - cy) / ry
    inside = np.abs(t) < 1.0
    half = rx * np.sqrt(np.where(inside, 1.0 - t * t, 0.0))
    left, right = (cx - half)[:, None], (cx + half)[:, None]
    _blend(out, y0, x0, _coverage(left, right, inside[:, None], y1 - y0, x0, x1), color)


def fill_shapes(out: np.ndarray, cmds: np.ndarray, ncmds: int, verts: np.ndarray,
                acc=None, xs=None, ds=None, es=None) -> None:
    """Paint the first ``ncmds`` rows of ``cmds`` into ``out``, in order.

    ``out`` is (H, W, 3) uint8 C-contiguous, ``cmds`` (m, 8) and ``verts``
    (n, 2) float64 C-contiguous (checked by the caller, the renderer).  The
    scratch rows ``acc``, ``xs``, ``ds``, ``es`` are the compiled twin's; numpy makes
    its own temporaries.
    """
    for i in range(ncmds):
        kind, r, g, b, p0, p1, p2, p3 = (float(c) for c in cmds[i])
        color = (r, g, b)
        if kind == CLEAR:
            out[...] = np.array(color, np.uint8)
        elif kind == POLYGON:
            start, count = int(p0), int(p1)
            _polygon(out, verts[start:start + count], color)
        elif kind == ELLIPSE:
            _ellipse(out, p0, p1, p2, p3, color)
