"""AvatarKitVideoService at the unit level, with Pipecat's own ``run_test``
and the local motion server on loopback: what it pushes and in which order."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the Pipecat service needs pipecat-ai (extra [pipecat])")
pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")

from pipecat.frames.frames import (  # noqa: E402
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.worker import PipelineParams  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from avatarkit_fast.pipecat import AvatarKitVideoService, FaceRendererAdapter  # noqa: E402
from avatarkit_fast._schema import FLAME_OFFSETS  # noqa: E402
from avatarkit_fast.server import MotionServer  # noqa: E402


def speech(seconds: float, rate: int, seed: int = 0) -> bytes:
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    out = (np.clip(wave, -1, 1) * 32767).astype("<i2")
    out[out == 0] = 1  # no exact zeros inside speech: trailing silence is then the padding
    return out.tobytes()


def tts_frames(pcm: bytes, rate: int, ms: int = 20) -> list[TTSAudioRawFrame]:
    step = rate * 2 * ms // 1000
    return [TTSAudioRawFrame(audio=pcm[i:i + step], sample_rate=rate, num_channels=1)
            for i in range(0, len(pcm), step)]


JAW = FLAME_OFFSETS["jaw_pose"]


class Levels:
    """A renderer that paints the jaw opening as grey level (for the tests to read)."""

    def render_into(self, keyframe, rgb_out) -> None:
        jaw = float(keyframe[JAW])
        rgb_out[...] = int(np.clip(jaw * 255 * 4, 0, 255))


def service(server: MotionServer, **kw) -> AvatarKitVideoService:
    return AvatarKitVideoService(
        api_key="key", app_id="app", avatar_id="avatar",
        console_endpoint_url=server.console_endpoint_url,
        ingress_endpoint_url=server.ingress_endpoint_url, width=64, height=48, **kw)


def run(coro):
    return asyncio.run(coro)


def audio_of(frames) -> bytes:
    return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))


def test_speech_becomes_frames_of_audio_and_image_and_the_stop_comes_last():
    rate = 16000
    pcm = speech(0.6, rate)

    async def main():
        async with MotionServer() as server:
            svc = service(server, renderer=Levels())
            down, _ = await run_test(
                svc,
                frames_to_send=[TTSStartedFrame(), *tts_frames(pcm, rate), TTSStoppedFrame()],
                pipeline_params=PipelineParams(audio_out_sample_rate=rate),
            )
            return svc, down

    svc, down = run(main())
    kinds = [type(f) for f in down]
    assert [k for k in kinds if k is not OutputImageRawFrame][0] is TTSStartedFrame
    assert kinds.count(TTSStoppedFrame) == 1
    stop = kinds.index(TTSStoppedFrame)
    last_audio = max(i for i, k in enumerate(kinds) if k is TTSAudioRawFrame)
    assert last_audio < stop, "TTSStoppedFrame came before the last of its audio"
    # Every sample once, in order, in frames of 1/25 s, the last padded with silence.
    out = audio_of(down)
    frames = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert all(len(f.audio) == rate * 2 // 25 and f.sample_rate == rate for f in frames)
    assert out[:len(pcm)] == pcm and not any(out[len(pcm):])
    # An image per video frame, synced with the audio, just before that frame's audio.
    images = [f for f in down if isinstance(f, OutputImageRawFrame)]
    assert all(f.sync_with_audio and f.size == (64, 48) and len(f.image) == 64 * 48 * 3 for f in images)
    for i, k in enumerate(kinds):
        if k is TTSAudioRawFrame:
            assert kinds[i - 1] is OutputImageRawFrame
    # The face moves with the speech: the images of speech are not all the idle one.
    speaking = [down[i - 1].image[0] for i, k in enumerate(kinds) if k is TTSAudioRawFrame]
    assert len(set(speaking)) > 3
    assert svc.controller is None and svc.session is None  # EndFrame closed everything


def test_tts_rate_is_resampled_to_the_conversation_rate():
    pcm = speech(0.4, 24000)

    async def main():
        async with MotionServer() as server:
            svc = service(server, renderer=Levels(), sample_rate=16000)
            down, _ = await run_test(
                svc, frames_to_send=[*tts_frames(pcm, 24000), TTSStoppedFrame()],
                pipeline_params=PipelineParams(audio_out_sample_rate=24000),
            )
            return down

    down = run(main())
    frames = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert frames and all(f.sample_rate == 16000 for f in frames)
    out = np.frombuffer(audio_of(down), dtype="<i2")
    nonzero = np.flatnonzero(out)
    assert abs((nonzero[-1] + 1) - 0.4 * 16000) <= 16  # 0.4 s of speech, at the new rate


def test_a_second_response_waits_for_the_first_and_each_stop_follows_its_audio():
    rate = 16000
    a, b = speech(0.4, rate, 1), speech(0.3, rate, 2)

    async def main():
        async with MotionServer() as server:
            svc = service(server, renderer=Levels())
            # Both responses arrive at once, far faster than real time.
            down, _ = await run_test(
                svc,
                frames_to_send=[*tts_frames(a, rate), TTSStoppedFrame(context_id="a"),
                                *tts_frames(b, rate), TTSStoppedFrame(context_id="b")],
                pipeline_params=PipelineParams(audio_out_sample_rate=rate),
            )
            return down

    down = run(main())
    stops = [i for i, f in enumerate(down) if isinstance(f, TTSStoppedFrame)]
    assert [down[i].context_id for i in stops] == ["a", "b"]
    before_a = audio_of(down[:stops[0]])
    between = audio_of(down[stops[0]:stops[1]])
    assert before_a[:len(a)] == a and not any(before_a[len(a):])
    assert between[:len(b)] == b and not any(between[len(b):])
    assert not audio_of(down[stops[1]:])


def test_interruption_stops_the_speech_at_once_and_is_forwarded():
    rate = 16000
    pcm = speech(3.0, rate)

    async def main():
        async with MotionServer() as server:
            svc = service(server, renderer=Levels())
            down, _ = await run_test(
                svc,
                frames_to_send=[*tts_frames(pcm, rate), TTSStoppedFrame(), SleepFrame(0.5),
                                InterruptionFrame(), SleepFrame(0.3),
                                *tts_frames(speech(0.2, rate, 5), rate), TTSStoppedFrame(context_id="next")],
                pipeline_params=PipelineParams(audio_out_sample_rate=rate),
            )
            return down

    down = run(main())
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    played = audio_of(down[:cut])
    assert 0.3 * rate * 2 < len(played) < 0.8 * rate * 2  # about the 0.5 s before the interrupt
    assert pcm.startswith(played.rstrip(b"\0")[: len(played) // 2])
    after = audio_of(down[cut:])
    assert pcm[len(played):len(played) + 3200] not in after, "speech of before the interrupt played after it"
    stops = [f for f in down if isinstance(f, TTSStoppedFrame)]
    assert [s.context_id for s in stops] == ["next"]  # the interrupted response's stop was dropped
    assert 0.2 * rate * 2 <= len(after) <= 0.3 * rate * 2


def test_face_renderer_adapter_fills_the_picture():
    adapter = FaceRendererAdapter(80, 60)
    rgb = np.zeros((60, 80, 3), np.uint8)
    keyframe = np.zeros(120, np.float32)
    adapter.render_into(keyframe, rgb)
    closed = rgb.copy()
    keyframe[JAW] = 0.4  # the jaw opens
    adapter.render_into(keyframe, rgb)
    assert closed.any() and not np.array_equal(closed, rgb)
