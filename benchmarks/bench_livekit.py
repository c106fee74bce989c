"""The LiveKit avatar's cost: CPU per session-second of an
:class:`~avatarkit_fast.livekit.AvatarKitVideoGenerator` with the default
renderer (the package's face drawing, 256x256), as sessions per core at
25 fps, i.e. one second of frames over the time it takes to make them on one
core (a ratio to real time).  Each frame is the generator's whole work
(``produce_frame``: a frame of audio read from a playing controller, its
keyframe drawn, the RGBA picture and the audio frame built), every keyframe
different, so no picture is reused.  Measured in the same run against the
floor: a copy of the picture's bytes into a new ``rtc.VideoFrame``.
Budget: at least one session per core (real time), and the figure printed.

    python -m pytest benchmarks/bench_livekit.py -s     # prints the table
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the livekit extra is not installed")
pytest.importorskip("PIL", reason="the default renderer needs Pillow")

from livekit import rtc  # noqa: E402

from avatarkit_fast import AvatarController, wire  # noqa: E402
from avatarkit_fast._schema import FLAME_OFFSETS  # noqa: E402
from avatarkit_fast.benchmarking import measure, short_mode  # noqa: E402
from avatarkit_fast.livekit import AvatarKitVideoGenerator  # noqa: E402

RATE = 16000
FPS = 25
SECONDS = 120
MIN_SESSIONS_PER_CORE = 1.0


class _PlayingSession:
    """What the generator reads from: a controller playing a long utterance
    with animation (the generator sends nothing here: push_audio is not measured)."""

    def __init__(self) -> None:
        self.controller = AvatarController(sample_rate=RATE, fps=FPS, max_buffer_seconds=SECONDS + 10)
        rng = np.random.default_rng(0)
        pcm = (rng.standard_normal(RATE * SECONDS) * 3000).astype("<i2").tobytes()
        cid = self.controller.yield_audio_data(pcm, True)
        t = np.arange(FPS * SECONDS) / FPS
        keyframes = np.zeros((t.size, wire.KEYFRAME_FLOATS), np.float32)
        keyframes[:, 0:3] = 0.01 * np.sin(t)[:, None]
        keyframes[:, 3:6] = 0.1 * np.sin(2 * t)[:, None]
        jaw = FLAME_OFFSETS["jaw_pose"]
        keyframes[:, jaw] = 0.2 * (1 + np.sin(7 * t))
        envelopes = [wire.encode_animation(keyframes[i:i + 100], req_id="r", end=i + 100 >= t.size)
                     for i in range(0, t.size, 100)]
        assert self.controller.yield_frames_data(envelopes, cid)


@pytest.fixture(scope="module")
def timing():
    session = _PlayingSession()
    generator = AvatarKitVideoGenerator(session, width=256, height=256)
    picture = np.zeros((256, 256, 4), np.uint8)

    def frame():
        generator.produce_frame()

    def floor():
        rtc.VideoFrame(256, 256, rtc.VideoBufferType.RGBA, picture.tobytes())

    result = measure({"generator frame (default renderer)": frame, "picture copy (floor)": floor},
                     rounds=3 if short_mode() else 7, target_seconds=0.05 if short_mode() else 0.2)
    session.controller.close()
    return result


def test_sessions_per_core_at_25_fps(timing):
    per_frame = timing["generator frame (default renderer)"]
    sessions = 1.0 / (per_frame * FPS)
    floor = timing.ratio("generator frame (default renderer)", "picture copy (floor)")
    print(
        "\nLiveKit avatar generator, 256x256, default renderer\n\n"
        "| case | per frame | ratio |\n|---|---:|---:|\n"
        f"| generator frame | {per_frame * 1e3:.2f} ms | {floor:.0f}x of the copy floor |\n"
        f"| picture copy (floor) | {timing['picture copy (floor)'] * 1e6:.0f} us | 1x |\n\n"
        f"sessions per core at {FPS} fps: {sessions:.2f} (CPU per session-second: {per_frame * FPS:.3f} s)"
    )
    assert sessions >= MIN_SESSIONS_PER_CORE, f"{sessions:.2f} sessions per core"
