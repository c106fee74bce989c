"""The demo's face film: one picture per keyframe, written as a GIF or MP4.

The pictures are drawn by :class:`avatarkit_fast.render.FaceRenderer` into
one reused buffer; Pillow adds the time label and writes the GIF, PyAV (when
importable) encodes MP4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._schema import KEYFRAME_FLOATS
from ..render import FaceRenderer

__all__ = ["write_face_video", "video_suffix"]

_LABEL = (96, 70, 60)


def _picture(renderer: FaceRenderer, buf: np.ndarray, keyframe: np.ndarray, label: str):
    """The keyframe drawn into ``buf``, as a new PIL image with ``label``."""
    from PIL import Image, ImageDraw

    renderer.render_into(keyframe, buf)
    img = Image.fromarray(buf, "RGB").copy()
    if label:
        ImageDraw.Draw(img).text((4, renderer.height - 14), label, fill=_LABEL)
    return img


def video_suffix(kind: str = "auto") -> str:
    """``".mp4"`` when ``kind`` is mp4, or auto and PyAV is importable; else ``".gif"``."""
    if kind == "gif":
        return ".gif"
    if kind == "mp4":
        return ".mp4"
    try:
        import av  # noqa: F401
    except ImportError:
        return ".gif"
    return ".mp4"


def write_face_video(
    path: str | Path,
    keyframes: np.ndarray,
    *,
    fps: int = 25,
    size: int = 192,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    progress=None,
) -> Path:
    """Render one picture per row of ``keyframes`` (n, 120) into ``path``.

    ``.gif``: an animated GIF at ``fps`` (Pillow).  ``.mp4``: H.264 video with
    the ``audio`` (int16 mono) muxed in as AAC, through PyAV.
    ``progress(i, n)`` is called after each picture when given.
    """
    path = Path(path)
    kf = np.asarray(keyframes, dtype=np.float32)
    if kf.ndim != 2 or kf.shape[1] != KEYFRAME_FLOATS:
        raise ValueError(f"keyframes must be (n, {KEYFRAME_FLOATS}), got {kf.shape}")
    renderer = FaceRenderer(size)
    buf = np.empty((renderer.height, renderer.width, 3), np.uint8)
    n = len(kf)
    if path.suffix.lower() == ".mp4":
        _write_mp4(path, renderer, buf, kf, fps, audio, sample_rate, progress)
        return path
    from PIL import Image

    frames = []
    palette = None
    for i in range(max(n, 1)):
        # The time label also keeps every frame distinct (GIF writers merge equal ones).
        frame = kf[i] if n else np.zeros(KEYFRAME_FLOATS, np.float32)
        img = _picture(renderer, buf, frame, f"{i / fps:5.2f} s")
        if palette is None:
            # One palette for the whole film keeps colours steady between frames.
            palette = img.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        frames.append(img.quantize(palette=palette, dither=Image.Dither.NONE))
        if progress is not None:
            progress(i + 1, n)
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)),
        loop=0, optimize=False, disposal=1,
    )
    return path


def _write_mp4(path, renderer, buf, kf, fps, audio, sample_rate, progress) -> None:
    import av
    from fractions import Fraction

    n = len(kf)
    with av.open(str(path), "w") as box:
        vs = box.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        vs.width, vs.height = renderer.width, renderer.height
        vs.pix_fmt = "yuv420p"
        astream = None
        if audio is not None and len(audio):
            astream = box.add_stream("aac", rate=sample_rate)
            try:
                astream.layout = "mono"
            except Exception:  # older PyAV names it differently; default is fine
                pass
        for i in range(n):
            frame = av.VideoFrame.from_image(_picture(renderer, buf, kf[i], f"{i / fps:5.2f} s"))
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for pkt in vs.encode(frame):
                box.mux(pkt)
            if progress is not None:
                progress(i + 1, n)
        for pkt in vs.encode():
            box.mux(pkt)
        if astream is not None:
            pcm = np.ascontiguousarray(audio, dtype=np.int16)
            step = 1024
            for j in range(0, len(pcm), step):
                chunk = pcm[j:j + step].reshape(1, -1)
                af = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                af.sample_rate = sample_rate
                af.pts = j
                af.time_base = Fraction(1, sample_rate)
                for pkt in astream.encode(af):
                    box.mux(pkt)
            for pkt in astream.encode():
                box.mux(pkt)
