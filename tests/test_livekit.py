"""The LiveKit Agents avatar on the real framework: an ``AgentSession`` saying
audio into the real ``AvatarRunner`` with :class:`AvatarKitVideoGenerator`, a
real ``AVSynchronizer``, ``rtc.AudioSource``/``VideoSource``, the published
tracks read back with ``rtc.AudioStream``/``VideoStream``, and the package's
local motion server on loopback.  The room connection is the one stand-in
(``tests/livekit_standin.py`` says which calls it stands for)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the livekit extra is not installed")
pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")

from livekit import rtc  # noqa: E402
from livekit.agents import Agent, AgentSession  # noqa: E402

from avatarkit_fast.livekit import AvatarKitVideoGenerator, LiveKitAvatar  # noqa: E402
from avatarkit_fast.server import MotionServer  # noqa: E402
from livekit_standin import StandInRoom  # noqa: E402

RATE = 16000
FRAME = RATE // 50  # 20 ms frames from the "TTS"


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like samples, none of them zero (the track's silence is zeros)."""
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    wave = 6000 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 300 * rng.standard_normal(n)
    pcm = np.clip(wave, -32000, 32000).astype(np.int16)
    pcm[pcm == 0] = 1
    return pcm


async def frames_of(pcm: np.ndarray, rate: int = RATE):
    step = rate // 50
    for i in range(0, pcm.size, step):
        chunk = pcm[i:i + step]
        yield rtc.AudioFrame(chunk.tobytes(), rate, 1, chunk.size)


class SerialRenderer:
    """Paints the serial number of each picture into its top rows (base-16
    digits as grey levels), so the reader knows which picture arrived."""

    def __init__(self) -> None:
        self.serial = 0

    def render_into(self, keyframe, rgb_out) -> None:
        width = rgb_out.shape[1]
        value = self.serial
        for digit in range(3):
            level = ((value >> (4 * digit)) & 15) * 16 + 8
            rgb_out[:, digit * width // 3:(digit + 1) * width // 3] = level
        self.serial += 1


def serial_of(top_rows: np.ndarray) -> int:
    width = top_rows.shape[1]
    value = 0
    for digit in range(3):
        level = float(top_rows[2:6, digit * width // 3 + 2:(digit + 1) * width // 3 - 2].mean())
        value |= int(round((level - 8) / 16)) << (4 * digit)
    return value


class TappedGenerator(AvatarKitVideoGenerator):
    """Renders every frame (no reuse of an unchanged picture) and notes, per
    picture serial, how many speech samples were yielded before it."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.offsets: dict[int, int] = {}

    def _picture(self) -> bytes:
        self.offsets[self._renderer.serial] = self.speech_samples
        self._renderer.render_into(self._keyframe, self._rgb)
        self._rgba[:, :, :3] = self._rgb
        return self._rgba.tobytes()


def speech_arrivals(reader) -> tuple[np.ndarray, np.ndarray]:
    """(speech samples in track order, the arrival time of each)."""
    samples, times = [np.zeros(0, np.int16)], [np.zeros(0)]
    for t, chunk in list(reader.frames):
        voiced = chunk[chunk != 0]
        samples.append(voiced)
        times.append(np.full(voiced.size, t))
    return np.concatenate(samples), np.concatenate(times)


async def start_avatar(server, room, **kw):
    agent_session = AgentSession()
    avatar = LiveKitAvatar(
        api_key="key", app_id="app", avatar_id="avatar",
        console_endpoint_url=server.console_endpoint_url,
        ingress_endpoint_url=server.ingress_endpoint_url,
        width=96, height=96, **kw,
    )
    await avatar.start(agent_session, room)
    await agent_session.start(Agent(instructions="an avatar test"))
    finished = []
    avatar.audio_output.on("playback_finished", lambda ev: finished.append(ev))
    return agent_session, avatar, finished


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_every_speech_sample_reaches_the_track_once_in_order_and_video_pairs_with_it():
    async def main():
        async with MotionServer() as server:
            room = StandInRoom()
            renderer = SerialRenderer()
            agent_session, avatar, finished = await start_avatar(
                server, room, renderer=renderer, generator_class=TappedGenerator)
            utterances = [speech(1.6, seed=1), speech(0.9, seed=2)]
            for pcm in utterances:
                handle = agent_session.say("hello", audio=frames_of(pcm))
                await asyncio.wait_for(handle.wait_for_playout(), 20)
            await asyncio.sleep(0.3)
            audio, video = room.readers["avatar_audio"], room.readers["avatar_video"]
            got, arrival = speech_arrivals(audio)
            sent = np.concatenate(utterances)
            # Every sample once and in order: nothing lost, doubled or padded in.
            assert got.size == sent.size
            assert np.array_equal(got, sent)
            # playback_finished once per segment, exact position, not interrupted.
            assert [ev.interrupted for ev in finished] == [False, False]
            for ev, pcm in zip(finished, utterances):
                assert abs(ev.playback_position - pcm.size / RATE) < 1e-9
            # A/V pairing at the reader: each picture against the audio it carries.
            offsets = avatar.generator.offsets
            diffs = []
            for t, rows in video.frames:
                serial = serial_of(rows)
                start = offsets.get(serial)
                nxt = offsets.get(serial + 1)
                if start is None or nxt is None or nxt == start or start >= arrival.size:
                    continue  # an idle picture (no speech with it)
                diffs.append(t - arrival[start])
            assert len(diffs) > 50
            p95 = float(np.percentile(np.abs(diffs), 95))
            print(f"A/V |video-audio| p50 {np.percentile(np.abs(diffs), 50)*1000:.1f} ms, p95 {p95*1000:.1f} ms")
            assert p95 <= 0.040, p95
            await avatar.aclose()
            await agent_session.aclose()
            await room.aclose()

    run(main())


def test_an_interrupt_silences_the_track_within_40_ms_and_reports_what_played():
    async def main():
        async with MotionServer() as server:
            room = StandInRoom()
            agent_session, avatar, finished = await start_avatar(server, room)
            pcm = speech(3.0, seed=3)
            handle = agent_session.say("hello", audio=frames_of(pcm))
            audio = None
            while audio is None or speech_arrivals(audio)[0].size < RATE // 2:
                await asyncio.sleep(0.01)
                audio = room.readers.get("avatar_audio")
            t_interrupt = time.monotonic()
            handle.interrupt()
            await asyncio.wait_for(handle.wait_for_playout(), 5)
            await asyncio.sleep(0.3)
            got, arrival = speech_arrivals(audio)
            late = float(arrival[-1] - t_interrupt)
            print(f"last speech sample {late * 1000:.1f} ms after the interrupt")
            assert late <= 0.040, late
            assert 0 < got.size < pcm.size
            assert np.array_equal(got, pcm[:got.size])  # a prefix, once, in order
            assert len(finished) == 1 and finished[0].interrupted
            assert abs(finished[0].playback_position - got.size / RATE) < 1e-9
            await avatar.aclose()
            await agent_session.aclose()
            await room.aclose()

    run(main())


def test_twenty_interrupts_in_a_row_never_wedge_wait_for_playout():
    async def main():
        async with MotionServer() as server:
            room = StandInRoom()
            agent_session, avatar, finished = await start_avatar(server, room)
            pcm = speech(0.4, seed=4)
            rng = np.random.default_rng(7)
            # before playout starts, during it, and just after its end
            delays = [0.0, 0.005, 0.02] + list(rng.uniform(0.05, 0.35, 10)) + list(rng.uniform(0.38, 0.5, 7))
            for delay in delays:
                handle = agent_session.say("hi", audio=frames_of(pcm))
                await asyncio.sleep(delay)
                handle.interrupt()
                await asyncio.wait_for(handle.wait_for_playout(), 5)
            # every report is of one segment, at most its whole length
            assert len(finished) <= len(delays)
            for ev in finished:
                assert 0 <= ev.playback_position <= pcm.size / RATE + 1e-9
            # and the avatar still plays a whole utterance afterwards, reported exactly
            before = len(finished)
            await asyncio.sleep(0.2)
            samples_before = speech_arrivals(room.readers["avatar_audio"])[0].size
            last = speech(0.6, seed=5)
            handle = agent_session.say("done", audio=frames_of(last))
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            await asyncio.sleep(0.2)
            assert len(finished) == before + 1
            assert not finished[-1].interrupted
            assert abs(finished[-1].playback_position - last.size / RATE) < 1e-9
            got = speech_arrivals(room.readers["avatar_audio"])[0][samples_before:]
            assert np.array_equal(got, last)
            await avatar.aclose()
            await agent_session.aclose()
            await room.aclose()

    run(main(), timeout=80)


def test_audio_comes_at_the_rate_the_runner_asks_for_from_any_input_rate():
    """24 kHz speech in, a 16 kHz session, a 48 kHz track: the segment's position
    is the audio yielded at 48 kHz, the length of the speech to the sample's
    resampling (what soxr's streams give, flushed)."""
    async def main():
        async with MotionServer() as server:
            room = StandInRoom(audio_rate=48000)
            agent_session, avatar, finished = await start_avatar(server, room, audio_sample_rate=48000)
            assert avatar.runner._options.audio_sample_rate == 48000
            t = np.arange(24000) / 24000
            pcm = (8000 * np.sin(2 * np.pi * 300 * t) + 50).astype(np.int16)
            handle = agent_session.say("rates", audio=frames_of(pcm, rate=24000))
            await asyncio.wait_for(handle.wait_for_playout(), 15)
            assert len(finished) == 1 and not finished[0].interrupted
            yielded = avatar.generator.speech_samples
            assert abs(finished[0].playback_position - yielded / 48000) < 1e-9
            assert abs(yielded - 48000) <= 48  # one second, within a millisecond
            await asyncio.sleep(0.1)
            track = room.readers["avatar_audio"].samples()
            assert abs(np.count_nonzero(track) - yielded) <= 48
            await avatar.aclose()
            await agent_session.aclose()
            await room.aclose()

    run(main())


def test_renderers_any_render_into_the_face_by_default_and_a_clear_error_otherwise():
    from avatarkit_fast.livekit import Renderer, as_renderer
    from avatarkit_fast.render import FaceRenderer

    default = as_renderer(None, 64, 48)
    assert isinstance(default, FaceRenderer) and (default.width, default.height) == (64, 48)
    rgb = np.zeros((48, 64, 3), np.uint8)
    keyframe = np.zeros(120, np.float32)
    default.render_into(keyframe, rgb)
    assert rgb.std() > 0  # a face was drawn, scaled to the frame
    open_jaw = rgb.copy()
    keyframe[9] = 0.4
    default.render_into(keyframe, open_jaw)
    assert not np.array_equal(open_jaw, rgb)  # the picture follows the keyframe
    serial = SerialRenderer()
    assert as_renderer(serial, 64, 48) is serial and isinstance(serial, Renderer)
    with pytest.raises(TypeError, match="render_into"):
        as_renderer(object(), 64, 48)
    with pytest.raises(ValueError, match="width"):
        AvatarKitVideoGenerator(type("S", (), {"controller": None})(), width=3)
