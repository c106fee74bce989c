"""Face renderer benchmark: the golden recording's keyframes drawn at 256 x 256 by

- the compiled rasterizer (``FaceRenderer.render_into`` a reused buffer, the default),
- its numpy twin (the same call, the same bytes),
- the Pillow drawing the demo used before (``pillow_face.py``: polygons and
  ellipses on a twice-size picture scaled down with Lanczos; the peer
  baseline, what a Python developer writes with Pillow),
- a plain copy of the picture's bytes (the memory floor).

Budget, a ratio measured in the same run: the compiled renderer at least 4
times faster than the Pillow drawing per frame.  Reported beside it: sessions
per core at 25 fps, the ratio of real time (1 s) to the time one core takes to
draw a second of video (25 frames), also at 512 x 512.

    python benchmarks/bench_render.py                  # prints the table
    python -m pytest benchmarks/bench_render.py -s     # asserts the budget, prints it
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from avatarkit_fast import wire
from avatarkit_fast._compat import NO_EXTENSIONS
from avatarkit_fast.benchmarking import measure, short_mode
from avatarkit_fast.render import FaceRenderer
from avatarkit_fast.testing import load_recording

pytest.importorskip("PIL")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pillow_face import PillowFaceRenderer  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden-16k.json"
SIZE = 256
FPS = 25
MIN_SPEEDUP_OVER_PILLOW = 4.0


def keyframes() -> np.ndarray:
    """Keyframes of the golden recording (speech: the jaw, lids and pose move)."""
    rec = load_recording(GOLDEN)
    frames = np.concatenate([wire.decode_animation(e).frames for e in rec.envelopes])
    return np.ascontiguousarray(frames[: 25 if short_mode() else 100])


def cases(frames: np.ndarray, size: int = SIZE) -> dict:
    buf = np.empty((size, size, 3), np.uint8)
    pillow = PillowFaceRenderer(size)
    out = {}
    for tag in ["py"] if NO_EXTENSIONS else ["c", "py"]:
        r = FaceRenderer(size, impl=tag)

        def draw(r=r):
            for k in frames:
                r.render_into(k, buf)

        out["compiled render_into" if tag == "c" else "numpy twin render_into"] = draw

    def draw_pillow():
        for k in frames:
            pillow.render(k)

    picture = np.zeros((size, size, 3), np.uint8)

    def copy():
        for _ in range(len(frames)):
            picture.copy()

    out["Pillow (the demo's drawing before)"] = draw_pillow
    out["copy of the picture"] = copy
    return out


def collect(frames: np.ndarray | None = None) -> dict:
    """Seconds per frame of every case at SIZE, and of the compiled renderer
    (or the twin where nothing is built) at 512."""
    frames = keyframes() if frames is None else frames
    t = measure(cases(frames))
    per_frame = {name: v / len(frames) for name, v in t.items()}
    best = FaceRenderer(512)
    buf = np.empty((512, 512, 3), np.uint8)

    def big():
        for k in frames:
            best.render_into(k, buf)

    per_frame["default renderer at 512 x 512"] = measure({"big": big})["big"] / len(frames)
    return per_frame


def table(per_frame: dict, n: int) -> str:
    pillow = per_frame["Pillow (the demo's drawing before)"]
    lines = [
        f"face render: {n} keyframes of the golden recording, {SIZE} x {SIZE}"
        f"{' (short mode)' if short_mode() else ''}",
        "",
        "| case | per frame | frames per second | sessions per core at 25 fps | Pillow / case |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in per_frame.items():
        ratio = f"{pillow / t:,.1f}x" if "512" not in name else "-"  # not the same picture size
        lines.append(f"| {name} | {t * 1e3:,.3f} ms | {1 / t:,.0f} | {1.0 / (FPS * t):,.1f} | {ratio} |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return keyframes()


@pytest.fixture(scope="module")
def per_frame(frames) -> dict:
    # The twins draw the same bytes before anything is timed.
    if not NO_EXTENSIONS:
        a, b = FaceRenderer(SIZE, impl="c"), FaceRenderer(SIZE, impl="py")
        for k in frames[:: max(1, len(frames) // 5)]:
            assert np.array_equal(a.render(k), b.render(k))
    return collect(frames)


def test_print_table(per_frame, frames):
    print()
    print(table(per_frame, len(frames)))


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled rasterizer is not in use")
def test_budget(per_frame, frames):
    t = per_frame
    for attempt in range(2):
        speedup = t["Pillow (the demo's drawing before)"] / t["compiled render_into"]
        if speedup >= MIN_SPEEDUP_OVER_PILLOW:
            break
        # A noisy neighbour can spoil one run; the budget must hold on a second.
        t = collect(frames)
    assert speedup >= MIN_SPEEDUP_OVER_PILLOW, table(t, len(frames))


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled rasterizer is not in use")
def test_headline_render_into(benchmark, frames):
    """The headline figure: one frame at 256 x 256 into a reused buffer."""
    r = FaceRenderer(SIZE)
    buf = np.empty((SIZE, SIZE, 3), np.uint8)
    k = frames[len(frames) // 2]
    if short_mode():
        benchmark.pedantic(r.render_into, (k, buf), rounds=50, iterations=5, warmup_rounds=1)
    else:
        benchmark(r.render_into, k, buf)
    assert np.array_equal(buf, r.render(k))


if __name__ == "__main__":
    f = keyframes()
    print(table(collect(f), len(f)))
