"""Compiled twin of ``_face_py.py``: the rasterizer of the face.

Same shapes, same sub-scanlines, same coverage and blend as the pure twin
(see its docstring; any change lands in both in the same commit).  The
drawing runs without the GIL and allocates nothing: the renderer hands in
its scratch rows (``acc``: one float per pixel column; ``xs``/``ds``: one
crossing per polygon vertex; ``es``: one edge per vertex).
"""

from libc.math cimport floor, sqrt
from libc.string cimport memcpy

from ._face_py import CLEAR, ELLIPSE, POLYGON, SUBROWS

__all__ = ["CLEAR", "ELLIPSE", "POLYGON", "SUBROWS", "fill_shapes"]

cdef extern from *:
    """
    /* A product that is rounded before it is added: no fused multiply-add,
       whatever the compiler's flags, so the sums round as numpy's do. */
    #if defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #endif
    static inline double akf_face_mul(double a, double b) {
        volatile double p = a * b;
        return p;
    }
    """
    double akf_face_mul(double a, double b) noexcept nogil

cdef int _CLEAR = CLEAR
cdef int _POLYGON = POLYGON
cdef int _ELLIPSE = ELLIPSE
cdef int _SUB = SUBROWS


cdef inline double _clip01(double v) noexcept nogil:
    return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


cdef inline bint _bounds(double lo, double hi, Py_ssize_t limit,
                         Py_ssize_t* a, Py_ssize_t* b) noexcept nogil:
    """Pixel range [a, b) covering [lo, hi] clipped to [0, limit); False if empty."""
    if not (hi > lo) or hi <= 0.0 or lo >= <double>limit:  # also refuses NaN
        return False
    a[0] = 0 if lo < 0.0 else <Py_ssize_t>floor(lo)
    if hi >= <double>limit:
        b[0] = limit
    else:
        b[0] = <Py_ssize_t>floor(hi) + 1
        if b[0] > limit:
            b[0] = limit
    return b[0] > a[0]


cdef inline void _add_span(double* acc, double left, double right,
                           Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    # The extent of [left, right] in each pixel [i, i + 1), for i in [x0, x1).
    cdef Py_ssize_t i, lo, hi
    if right > <double>x1:
        right = <double>x1
    if left > <double>x1:
        left = <double>x1
    if not (right > left) or right <= <double>x0:
        return
    lo = x0 if left <= <double>x0 else <Py_ssize_t>floor(left)
    hi = <Py_ssize_t>floor(right)
    if hi >= x1:
        hi = x1 - 1
    # The two end pixels are partly covered; every pixel between is covered
    # whole, and 1.0 - 0.0 is what the twin's formula gives there exactly.
    acc[lo] += _clip01(right - <double>lo) - _clip01(left - <double>lo)
    if hi > lo:
        for i in range(lo + 1, hi):
            acc[i] += 1.0
        acc[hi] += _clip01(right - <double>hi) - _clip01(left - <double>hi)


cdef inline void _blend_row(unsigned char* row, double* acc, Py_ssize_t x0, Py_ssize_t x1,
                            double r, double g, double b) noexcept nogil:
    cdef Py_ssize_t i
    cdef double c, o
    for i in range(x0, x1):
        c = acc[i] / _SUB
        if c >= 1.0:  # covered whole: o + (r - o) * 1 is r exactly
            row[3 * i] = <unsigned char>r
            row[3 * i + 1] = <unsigned char>g
            row[3 * i + 2] = <unsigned char>b
        elif c > 0.0:
            o = row[3 * i]
            row[3 * i] = <unsigned char>floor(o + akf_face_mul(r - o, c) + 0.5)
            o = row[3 * i + 1]
            row[3 * i + 1] = <unsigned char>floor(o + akf_face_mul(g - o, c) + 0.5)
            o = row[3 * i + 2]
            row[3 * i + 2] = <unsigned char>floor(o + akf_face_mul(b - o, c) + 0.5)


cdef void _polygon(unsigned char[:, :, ::1] out, const double[:, ::1] verts,
                   Py_ssize_t start, Py_ssize_t count, double r, double g, double b,
                   double* acc, double* xs, int* ds, int* es) noexcept nogil:
    cdef Py_ssize_t h = out.shape[0], w = out.shape[1]
    cdef Py_ssize_t y0, y1, x0, x1, y, i, j, n, k, m, e
    cdef double minx, maxx, miny, maxy, sy, ax, ay, bx, by, xv
    cdef int dv, wind
    if count < 3:
        return
    minx = maxx = verts[start, 0]
    miny = maxy = verts[start, 1]
    for i in range(start + 1, start + count):
        if verts[i, 0] < minx:
            minx = verts[i, 0]
        if verts[i, 0] > maxx:
            maxx = verts[i, 0]
        if verts[i, 1] < miny:
            miny = verts[i, 1]
        if verts[i, 1] > maxy:
            maxy = verts[i, 1]
    if not _bounds(miny, maxy, h, &y0, &y1) or not _bounds(minx, maxx, w, &x0, &x1):
        return
    for y in range(y0, y1):
        for i in range(x0, x1):
            acc[i] = 0.0
        # The edges that reach into this pixel row, in vertex order (so the
        # crossings come in the twin's order); the sub-scanlines test only those.
        m = 0
        for i in range(count):
            j = start + i + 1 if i + 1 < count else start
            ay = verts[start + i, 1]
            by = verts[j, 1]
            if (ay < y + 1.0 or by < y + 1.0) and (ay > <double>y or by > <double>y):
                es[m] = i
                m += 1
        for k in range(_SUB):
            sy = y + (k + 0.5) / _SUB
            n = 0
            for e in range(m):
                i = es[e]
                ax = verts[start + i, 0]
                ay = verts[start + i, 1]
                j = start + i + 1 if i + 1 < count else start
                bx = verts[j, 0]
                by = verts[j, 1]
                if ay <= sy and by > sy:
                    dv = 1
                elif by <= sy and ay > sy:
                    dv = -1
                else:
                    continue
                xv = ax + (sy - ay) * (bx - ax) / (by - ay)
                # Insertion keeps the crossings sorted (stable, as the twin's sort).
                j = n
                while j > 0 and xs[j - 1] > xv:
                    xs[j] = xs[j - 1]
                    ds[j] = ds[j - 1]
                    j -= 1
                xs[j] = xv
                ds[j] = dv
                n += 1
            wind = 0
            for i in range(n - 1):
                wind += ds[i]
                if wind != 0:
                    _add_span(acc, xs[i], xs[i + 1], x0, x1)
        _blend_row(&out[y, 0, 0], acc, x0, x1, r, g, b)


cdef void _ellipse(unsigned char[:, :, ::1] out, double cx, double cy, double rx, double ry,
                   double r, double g, double b, double* acc) noexcept nogil:
    cdef Py_ssize_t h = out.shape[0], w = out.shape[1]
    cdef Py_ssize_t y0, y1, x0, x1, y, i, k
    cdef double sy, t, half
    if not (rx > 0.0 and ry > 0.0):
        return
    if not _bounds(cy - ry, cy + ry, h, &y0, &y1) or not _bounds(cx - rx, cx + rx, w, &x0, &x1):
        return
    for y in range(y0, y1):
        for i in range(x0, x1):
            acc[i] = 0.0
        for k in range(_SUB):
            sy = y + (k + 0.5) / _SUB
            t = (sy - cy) / ry
            if t < 1.0 and t > -1.0:
                half = rx * sqrt(1.0 - akf_face_mul(t, t))
                _add_span(acc, cx - half, cx + half, x0, x1)
        _blend_row(&out[y, 0, 0], acc, x0, x1, r, g, b)


def fill_shapes(unsigned char[:, :, ::1] out, const double[:, ::1] cmds, Py_ssize_t ncmds,
                const double[:, ::1] verts, double[::1] acc, double[::1] xs, int[::1] ds, int[::1] es):
    """Paint the first ``ncmds`` rows of ``cmds`` into ``out``, in order.

    The scratch: ``acc`` at least W floats, ``xs``/``ds``/``es`` at least as many
    as the longest polygon's vertices (checked here: an undersized scratch
    is a ValueError, never a write out of bounds).
    """
    cdef Py_ssize_t i, y, x, start, count, h = out.shape[0], w = out.shape[1]
    cdef int kind
    cdef unsigned char cr, cg, cb
    if out.shape[2] != 3:
        raise ValueError(f"the picture must be (H, W, 3), got {out.shape[2]} channels")
    if ncmds < 0 or ncmds > cmds.shape[0] or cmds.shape[1] < 8:
        raise ValueError("ncmds exceeds the command table")
    if acc.shape[0] < w:
        raise ValueError(f"the coverage row holds {acc.shape[0]} floats, the picture is {w} wide")
    for i in range(ncmds):
        if <int>cmds[i, 0] == _POLYGON:
            start = <Py_ssize_t>cmds[i, 4]
            count = <Py_ssize_t>cmds[i, 5]
            if start < 0 or count < 0 or start + count > verts.shape[0] or verts.shape[1] < 2:
                raise ValueError(f"shape {i}: vertices {start}..{start + count} beyond the table")
            if count > xs.shape[0] or count > ds.shape[0] or count > es.shape[0]:
                raise ValueError(f"shape {i}: {count} vertices, the crossing scratch holds {xs.shape[0]}")
    with nogil:
        for i in range(ncmds):
            kind = <int>cmds[i, 0]
            if kind == _CLEAR:
                cr = <unsigned char>cmds[i, 1]
                cg = <unsigned char>cmds[i, 2]
                cb = <unsigned char>cmds[i, 3]
                for x in range(w):
                    out[0, x, 0] = cr
                    out[0, x, 1] = cg
                    out[0, x, 2] = cb
                for y in range(1, h):
                    memcpy(&out[y, 0, 0], &out[0, 0, 0], <size_t>(3 * w))
            elif kind == _POLYGON:
                _polygon(out, verts, <Py_ssize_t>cmds[i, 4], <Py_ssize_t>cmds[i, 5],
                         cmds[i, 1], cmds[i, 2], cmds[i, 3], &acc[0], &xs[0], &ds[0], &es[0])
            elif kind == _ELLIPSE:
                _ellipse(out, cmds[i, 4], cmds[i, 5], cmds[i, 6], cmds[i, 7],
                         cmds[i, 1], cmds[i, 2], cmds[i, 3], &acc[0])
