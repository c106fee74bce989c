"""``timeline.png``: what a run did, on one time axis (Pillow only).

Top: jaw opening of the keyframe shown at each video frame, with the eyelids
(the idle's blinks) and a band of what the picture shows (idle, transition in,
speaking, transition out).  Bottom: the audio waveform that was played.
Marked on both: message arrivals (audio chunks, animation envelopes), the
first keyframe shown, stalls and the interrupt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["draw_timeline"]

_BG = (255, 255, 255)
_AXIS = (80, 80, 80)
_GRID = (228, 228, 228)
_WAVE = (70, 110, 170)
_JAW = (200, 90, 40)
_AUDIO_MSG = (150, 150, 150)
_ANIM_MSG = (40, 150, 80)
_STALL = (255, 215, 140)
_INTERRUPT = (210, 30, 30)
_FIRST = (120, 60, 170)
_LID = (120, 120, 200)
# The animation state band: idle, transition in, speaking, transition out.
_STATES = ((215, 215, 215), (170, 220, 170), (60, 170, 90), (245, 190, 120))
_STATE_NAMES = ("idle", "transition in", "speaking", "transition out")


def _nice_step(span: float, target: int = 10) -> float:
    raw = span / max(target, 1)
    mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def draw_timeline(
    path: str | Path,
    audio: np.ndarray,
    sample_rate: int,
    jaw: np.ndarray,
    fps: int,
    *,
    audio_arrivals: Sequence[float] = (),
    animation_arrivals: Sequence[float] = (),
    stalls: Sequence[tuple[float, float]] = (),
    interrupt_at: float | None = None,
    first_frame_at: float | None = None,
    title: str = "",
    size: tuple[int, int] = (1200, 420),
    animation: Sequence[int] | None = None,
    eye_lid: Sequence[float] | None = None,
) -> Path:
    """Draw the picture into ``path`` (PNG) and return the path.

    All times are seconds on the playout clock; ``jaw`` has one value per
    video frame (jaw_pose[0] in radians); ``animation`` (optional) the
    :class:`~avatarkit_fast.controller.AnimationState` value per video frame,
    drawn as a band; ``eye_lid`` (optional) the eyelid closure per frame.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    width, height = size
    img = Image.new("RGB", size, _BG)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 60, 20, 34, 40
    plot_w = width - left - right
    mid = top + (height - top - bottom) * 0.42
    jaw_box = (top + 16, mid - 6)
    wave_box = (mid + 14, height - bottom)
    audio = np.asarray(audio, dtype=np.int16)
    jaw = np.asarray(jaw, dtype=np.float64)
    duration = max(len(audio) / sample_rate, len(jaw) / fps, 1e-3)

    def x_of(t: float) -> float:
        return left + plot_w * (t / duration)

    # Grid and time axis.
    step = _nice_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        x = x_of(t)
        d.line([x, top + 12, x, height - bottom], fill=_GRID)
        d.text((x - 8, height - bottom + 6), f"{t:g}", fill=_AXIS, font=font)
        t += step
    d.text((left + plot_w / 2 - 30, height - 16), "time (s)", fill=_AXIS, font=font)

    for a, b in stalls:
        d.rectangle([x_of(a), top + 12, max(x_of(b), x_of(a) + 1), height - bottom], fill=_STALL)

    # Jaw opening per video frame.
    d.text((4, jaw_box[0]), "jaw", fill=_JAW, font=font)
    if len(jaw):
        hi = max(float(np.max(jaw)), 1e-6)
        lo = min(float(np.min(jaw)), 0.0)
        h = jaw_box[1] - jaw_box[0]
        pts = [(x_of((i + 0.5) / fps), jaw_box[1] - h * (v - lo) / (hi - lo)) for i, v in enumerate(jaw)]
        if len(pts) > 1:
            d.line(pts, fill=_JAW, width=2)
        d.text((4, jaw_box[0] + 12), f"{hi:.2g}", fill=_AXIS, font=font)

    if animation is not None and len(animation):
        states = np.asarray(animation, dtype=np.int64)
        y0, y1 = jaw_box[0] - 6, jaw_box[0] - 1
        for i, v in enumerate(states):
            colour = _STATES[int(v)] if 0 <= v < len(_STATES) else _GRID
            d.rectangle([x_of(i / fps), y0, max(x_of((i + 1) / fps), x_of(i / fps) + 1), y1], fill=colour)
    if eye_lid is not None and len(eye_lid):
        lid = np.clip(np.asarray(eye_lid, dtype=np.float64), 0.0, 1.0)
        h = (jaw_box[1] - jaw_box[0]) * 0.3
        pts = [(x_of((i + 0.5) / fps), jaw_box[1] - h * v) for i, v in enumerate(lid)]
        if len(pts) > 1:
            d.line(pts, fill=_LID, width=1)

    # Waveform as a min/max envelope per pixel column.
    d.text((4, wave_box[0]), "audio", fill=_WAVE, font=font)
    wmid = (wave_box[0] + wave_box[1]) / 2
    half = (wave_box[1] - wave_box[0]) / 2
    d.line([left, wmid, left + plot_w, wmid], fill=_GRID)
    if len(audio):
        cols = plot_w
        edges = (np.arange(cols + 1) * (duration * sample_rate / cols)).astype(np.int64)
        edges = np.minimum(edges, len(audio))
        for c in range(cols):
            a, b = edges[c], edges[c + 1]
            if b <= a:
                continue
            seg = audio[a:b]
            y0 = wmid - half * (int(seg.max()) / 32768.0)
            y1 = wmid - half * (int(seg.min()) / 32768.0)
            d.line([left + c, y0, left + c, max(y1, y0 + 1)], fill=_WAVE)

    # Arrivals as ticks along the separator; animation taller.
    for ta in audio_arrivals:
        x = x_of(ta)
        d.line([x, mid - 2, x, mid + 6], fill=_AUDIO_MSG)
    for ta in animation_arrivals:
        x = x_of(ta)
        d.line([x, mid - 10, x, mid + 12], fill=_ANIM_MSG, width=3)
    if first_frame_at is not None:
        x = x_of(first_frame_at)
        d.line([x, top + 12, x, height - bottom], fill=_FIRST, width=1)
    if interrupt_at is not None:
        x = x_of(interrupt_at)
        d.line([x, top + 12, x, height - bottom], fill=_INTERRUPT, width=3)

    # Legend.
    items = [(_WAVE, "audio played"), (_JAW, "jaw opening"), (_AUDIO_MSG, "audio message"),
             (_ANIM_MSG, "animation message"), (_FIRST, "first keyframe"), (_STALL, "stall"),
             (_INTERRUPT, "interrupt")]
    if animation is not None:
        items += [(c, n) for c, n in zip(_STATES, _STATE_NAMES)]
    if eye_lid is not None:
        items.append((_LID, "eyelids"))
    x = left
    if title:
        d.text((left, 4), title, fill=_AXIS, font=font)
    y = 18
    for colour, label in items:
        d.rectangle([x, y + 2, x + 10, y + 10], fill=colour)
        d.text((x + 14, y), label, fill=_AXIS, font=font)
        x += 20 + int(d.textlength(label, font=font)) + 12
    img.save(path, format="PNG")
    return path
