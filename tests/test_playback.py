"""Playout drivers: the virtual clock, and the sound-device player both through
a real PortAudio stream (on an ALSA null device, where PortAudio is installed)
and with its callback driven directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
from conftest import PLAIN
import pytest

from avatarkit_fast.errors import AudioDeviceError
from avatarkit_fast.playback import SoundDevicePlayer, Tick, VirtualClock


class Ramp:
    """A minimal playout source: sample k is k % 30000, keyframe = position."""

    def __init__(self, sample_rate=16000, fps=25):
        self.sample_rate = sample_rate
        self.fps = fps
        self.pos = 0
        self.reads = []

    def read_audio_into(self, buf):
        n = len(buf)
        buf[:] = (np.arange(self.pos, self.pos + n) % 30000).astype(np.int16)
        self.pos += n
        self.reads.append(n)

    def current_frame_into(self, buf):
        buf[:] = 0
        buf[9] = self.pos * self.fps // self.sample_rate

    def get_audio_time(self):
        return self.pos / self.sample_rate


@pytest.mark.parametrize("rate,fps", [(16000, 25), (44100, 25), (22050, 30), (8000, 7)])
def test_virtual_clock_reads_exact_samples_per_frame(rate, fps):
    src = Ramp(rate, fps)
    clock = VirtualClock(src, fps=fps, duration=3.0)
    ticks = [(t.index, t.time, t.audio.copy(), t.frame.copy()) for t in clock]
    assert len(ticks) == 3 * fps
    audio = np.concatenate([a for _, _, a, _ in ticks])
    # Exactly sample_rate samples per second of clock, nothing lost or doubled.
    assert len(audio) == 3 * rate == clock.samples
    assert np.array_equal(audio, (np.arange(3 * rate) % 30000).astype(np.int16))
    for i, (index, t, a, frame) in enumerate(ticks):
        assert index == i and t == pytest.approx(i / fps)
        # The keyframe is taken at the start of the frame's audio.
        assert frame[9] == (i * rate // fps) * fps // rate


def test_virtual_clock_realtime_paces_to_the_clock():
    now = [100.0]
    slept = []

    def sleep(dt):
        slept.append(dt)
        now[0] += dt

    clock = VirtualClock(Ramp(), fps=25, realtime=True, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        clock.step()
    # First tick at once, then one every 40 ms.
    assert slept == pytest.approx([0.04] * 4)
    now[0] += 1.0  # the caller fell behind: no sleep, counted as late
    clock.step()
    assert clock.late_steps == 1 and len(slept) == 4


def test_virtual_clock_realtime_wall_pacing():
    clock = VirtualClock(Ramp(), fps=50, realtime=True, duration=0.2)
    t0 = time.monotonic()
    n = sum(1 for _ in clock)
    elapsed = time.monotonic() - t0
    assert n == 10
    assert elapsed >= 0.17


def test_virtual_clock_stop_and_tick_views():
    src = Ramp()
    clock = VirtualClock(src)
    seen = []
    for tick in clock:
        assert isinstance(tick, Tick) and tick.audio.dtype == np.int16 and tick.frame.shape == (120,)
        seen.append(tick.index)
        if tick.index == 9:
            clock.stop()
    assert seen == list(range(10))


def test_virtual_clock_needs_a_sample_rate():
    class NoRate:
        def read_audio_into(self, buf): ...
        def current_frame_into(self, buf): ...
        def get_audio_time(self): return 0.0

    with pytest.raises(TypeError):
        VirtualClock(NoRate())
    assert VirtualClock(NoRate(), sample_rate=16000).chunk_size(0) == 640
    with pytest.raises(ValueError):
        VirtualClock(Ramp(), fps=0)


@pytest.mark.parametrize("cls", [VirtualClock, SoundDevicePlayer])
def test_a_rate_other_than_the_controllers_is_refused(impl, cls):
    """A 16 kHz controller read at 48 kHz would play three times too fast
    (1920 samples a 25 fps tick instead of 640): refused, naming both."""
    from avatarkit_fast import AvatarController

    ctrl = AvatarController(sample_rate=16000, _impl=impl.tag, **PLAIN)
    with pytest.raises(ValueError, match=r"48000 Hz differs from the controller's 16000 Hz"):
        cls(ctrl, sample_rate=48000)
    assert cls(ctrl, sample_rate=16000).sample_rate == 16000  # the same rate is fine
    assert cls(ctrl).sample_rate == 16000
    with pytest.raises(TypeError):
        cls(ctrl, sample_rate="16000")
    with pytest.raises(ValueError, match="positive"):
        cls(Ramp(sample_rate=16000), sample_rate=0)


def test_virtual_clock_reads_at_the_controllers_rate(impl):
    from avatarkit_fast import AvatarController

    ctrl = AvatarController(sample_rate=16000, _impl=impl.tag, **PLAIN)
    clock = VirtualClock(ctrl, fps=25)
    assert [clock.chunk_size(i) for i in range(3)] == [640, 640, 640]


# -- the sound-device player with its callback driven directly -----------------


class _Status:
    def __init__(self, underflow=False):
        self.output_underflow = underflow

    def __bool__(self):
        return self.output_underflow


def test_player_callback_fills_blocks():
    src = Ramp()
    player = SoundDevicePlayer(src)
    out = np.full((160, 1), 7, np.int16)
    player._callback(out, 160, None, _Status())
    player._callback(out, 160, None, _Status(underflow=True))
    assert np.array_equal(out[:, 0], np.arange(160, 320, dtype=np.int16))
    assert player.callbacks == 2 and player.frames_played == 320 and player.underflows == 1
    assert player.errors == []


def test_player_callback_never_raises_and_keeps_playing():
    class Flaky(Ramp):
        def read_audio_into(self, buf):
            if self.pos == 160:
                self.pos += 1  # fail once
                raise RuntimeError("boom in the producer")
            super().read_audio_into(buf)

    reported = []
    player = SoundDevicePlayer(Flaky(), on_error=reported.append)
    out = np.full((160, 1), 7, np.int16)
    player._callback(out, 160, None, _Status())
    player._callback(out, 160, None, _Status())  # raises inside: silence
    assert not out.any()
    player._callback(out, 160, None, _Status())  # and plays on
    assert out.any()
    assert player.error_count == 1 and isinstance(player.errors[0], RuntimeError)
    player.stop()  # reports what was stashed, outside the callback
    assert [str(e) for e in reported] == ["boom in the producer"]


def test_player_stashes_a_bounded_number_of_errors():
    class Broken(Ramp):
        def read_audio_into(self, buf):
            raise ValueError("always")

    player = SoundDevicePlayer(Broken(), on_error=lambda e: None)
    out = np.zeros((10, 1), np.int16)
    for _ in range(100):
        player._callback(out, 10, None, None)
    assert player.error_count == 100 and len(player.errors) == SoundDevicePlayer.MAX_STASHED


def test_player_without_portaudio_says_where_to_go(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *a, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(AudioDeviceError, match="demo --out"):
        SoundDevicePlayer(Ramp()).start()


# -- a real PortAudio stream on an ALSA null device ----------------------------

_PLAYER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        print(json.dumps({"skip": f"PortAudio unavailable: {exc}"})); sys.exit(0)
    from avatarkit_fast.playback import SoundDevicePlayer

    class Ramp:
        sample_rate = 16000
        def __init__(self): self.pos = 0
        def read_audio_into(self, buf):
            n = len(buf)
            buf[:] = (np.arange(self.pos, self.pos + n) % 30000).astype(np.int16)
            self.pos += n
            if self.pos >= 48000 and self.pos - n < 48000:
                raise RuntimeError("one failure mid-stream")
        def current_frame_into(self, buf): buf[:] = 0
        def get_audio_time(self): return self.pos / 16000

    src = Ramp()
    errors = []
    player = SoundDevicePlayer(src, blocksize=160, on_error=lambda e: errors.append(str(e)))
    with player:
        deadline = time.monotonic() + 10
        while player.frames_played < 64000 and time.monotonic() < deadline:
            time.sleep(0.005)
        latency = player.latency
    print(json.dumps({"callbacks": player.callbacks, "frames": player.frames_played,
                      "errors": errors, "error_count": player.error_count, "latency": latency}))
    """
)


def _alsa_null_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    raw = tmp_path / "played.raw"
    # The default ALSA device is a null sink that also writes what it is given to a file.
    (home / ".asoundrc").write_text(
        f'pcm.!default {{ type file slave.pcm "null" file "{raw}" format "raw" }}\n'
    )
    env = dict(os.environ, HOME=str(home))
    return env, raw


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ALSA null device is Linux only")
def test_player_plays_through_portaudio_on_alsa_null(tmp_path):
    env, raw = _alsa_null_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _PLAYER_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["callbacks"] > 0 and result["frames"] >= 64000
    # The callback's one exception was stashed and reported, and playback went on.
    assert result["errors"] == ["one failure mid-stream"] and result["error_count"] == 1
    played = np.frombuffer(raw.read_bytes(), "<i2")
    # PortAudio primes the device with silence; after it, exactly what the callback wrote,
    # except the failed block, which is silence.
    lead = int(np.argmax(played != 0)) - 1
    assert lead >= 0
    body = played[lead:lead + 64000]
    expect = (np.arange(64000) % 30000).astype(np.int16)
    bad = np.flatnonzero(body != expect)
    assert len(bad) > 0 and len(bad) <= 2048 and not body[bad].any()
    assert bad[0] < 48000 <= bad[-1] + 1


# -- the virtual clock driving the real controller ------------------------------


@pytest.mark.parametrize("interpolation", ["none", "linear"])
def test_virtual_clock_drives_the_controller_in_sync(impl, interpolation):
    from avatarkit_fast import AvatarController, wire

    rate, fps = 16000, 25
    rng = np.random.default_rng(3)
    kf = rng.standard_normal((75, 120)).astype(np.float32)
    pcm = rng.integers(-20000, 20000, 3 * rate).astype("<i2")
    ctrl = AvatarController(rate, fps, interpolation=interpolation, _impl=impl.tag, **PLAIN)
    cid = ctrl.yield_audio_data(pcm.tobytes(), end=True)
    ctrl.yield_frames_data([wire.encode_animation(kf, req_id="r", end=True)], cid)
    clock = VirtualClock(ctrl, fps=fps, duration=3.4)
    audio, frames = [], []
    for tick in clock:
        audio.append(tick.audio.copy())
        frames.append(tick.frame.copy())
    played = np.concatenate(audio)
    # Every sample once, in order, then silence; each video frame shows the keyframe
    # of the audio position at its start.
    assert np.array_equal(played[: len(pcm)], pcm) and not played[len(pcm):].any()
    for i in range(75):
        assert np.array_equal(frames[i], kf[i]), i
    assert not frames[-1].any()  # back to the idle frame after the end


def test_virtual_clock_async_iteration_leaves_the_loop_running():
    import asyncio

    async def main():
        beats = 0
        stop = asyncio.Event()

        async def other_work():
            nonlocal beats
            while not stop.is_set():
                beats += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(other_work())
        src = Ramp()
        clock = VirtualClock(src, fps=50, realtime=True, duration=0.3)
        t0 = time.monotonic()
        ticks = [t.index async for t in clock]
        elapsed = time.monotonic() - t0
        stop.set()
        await task
        return ticks, elapsed, beats, src

    ticks, elapsed, beats, src = asyncio.run(main())
    assert ticks == list(range(15)) and src.pos == 15 * 320
    assert elapsed >= 0.27
    assert beats >= 20  # the event loop kept running between ticks


# -- another output rate --------------------------------------------------------


def _tone_controller(impl, seconds=1.0, freq=1000.0):
    from avatarkit_fast import AvatarController

    ctrl = AvatarController(sample_rate=16000, _impl=impl.tag)
    t = np.arange(int(16000 * seconds)) / 16000
    cid = ctrl.yield_audio_data((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), end=True)
    ctrl.yield_frames_data([], cid)
    return ctrl


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def test_virtual_clock_hands_out_48k_from_a_16k_controller(impl):
    from avatarkit_fast import wire  # noqa: F401

    plain = VirtualClock(_tone_controller(impl), fps=25, duration=1.2)
    fast = VirtualClock(_tone_controller(impl), fps=25, duration=1.2, output_sample_rate=48000)
    assert fast.output_sample_rate == 48000 and plain.output_sample_rate == 16000
    out, played = [], []
    for a, b in zip(plain, fast):
        assert a.audio.size == 640 and b.audio.size == 1920
        assert a.frame.tobytes() == b.frame.tobytes()  # the controller's keyframe, unchanged
        played.append(a.audio.copy())
        out.append(b.audio.copy())
    assert fast.samples == plain.samples == 30 * 640  # the clock counts the controller's samples
    y = np.concatenate(out)
    assert y.size == 30 * 1920
    body = y[4800:48000]
    assert abs(_peak_hz(body, 48000) - 1000) <= 10
    # Exactly the 16 kHz stream the controller played, resampled in one go,
    # behind the few milliseconds of silence the filter's delay puts first.
    from avatarkit_fast.audio import StreamResampler

    ref = StreamResampler(16000, 48000).process(np.concatenate(played))
    lead = round(fast.output_latency * 48000)
    assert lead == 3360  # 70 ms: soxr's block delay, covered
    assert not y[:lead].any()
    assert np.array_equal(y[lead:], ref[: y.size - lead])
    assert fast._out.underruns == 0


def test_output_sample_rate_is_checked(impl):
    from avatarkit_fast import AvatarController

    ctrl = AvatarController(sample_rate=16000, _impl=impl.tag)
    for cls in (VirtualClock, SoundDevicePlayer):
        with pytest.raises(ValueError, match="output_sample_rate must be in 8000..96000 Hz, got 4000"):
            cls(ctrl, output_sample_rate=4000)
        with pytest.raises(TypeError, match="output_sample_rate must be an int"):
            cls(ctrl, output_sample_rate=48000.0)


class _FakeSD:
    """The two sounddevice calls the rate choice makes, for a device that
    takes only its own rate."""

    class PortAudioError(Exception):
        pass

    def __init__(self, takes):
        self.takes = takes

    def check_output_settings(self, device=None, samplerate=None, channels=None, dtype=None):
        if samplerate not in self.takes:
            raise self.PortAudioError("Invalid sample rate")


def test_player_opens_the_controllers_rate_else_the_devices(impl):
    from avatarkit_fast import AvatarController

    ctrl = AvatarController(sample_rate=16000, _impl=impl.tag)
    info = {"name": "card", "default_samplerate": 48000.0}
    player = SoundDevicePlayer(ctrl)
    assert player.device_sample_rate is None and not player.resampling
    assert player._choose_rate(_FakeSD({16000, 48000}), info) == 16000
    assert player._choose_rate(_FakeSD({48000}), info) == 48000
    assert SoundDevicePlayer(ctrl, output_sample_rate=44100)._choose_rate(_FakeSD({16000}), info) == 44100


def test_player_callback_resamples_when_the_device_rate_differs(impl):
    from avatarkit_fast.audio import StreamResampler
    from avatarkit_fast.playback import OutputResampler

    ctrl = _tone_controller(impl)
    player = SoundDevicePlayer(ctrl)
    player._resampler = OutputResampler(ctrl, 16000, 48000)  # what start() sets for a 48 kHz device
    out = np.zeros((480, 1), np.int16)
    blocks = []
    for _ in range(90):
        player._callback(out, 480, None, _Status())
        blocks.append(out[:, 0].copy())
    y = np.concatenate(blocks)
    assert player.errors == [] and player.frames_played == 90 * 480
    assert abs(_peak_hz(y[4800:], 48000) - 1000) <= 10
    assert ctrl.stats.samples_played == 90 * 160  # read at the controller's pace, exactly
    assert player.resampling_latency == 0.07 and player._resampler.underruns == 0
    ref = StreamResampler(16000, 48000).process(_tone_controller(impl).read_audio(90 * 160))
    assert np.array_equal(y[3360:], ref[: y.size - 3360])


_RESAMPLING_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, time
    import numpy as np
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        print(json.dumps({"skip": f"PortAudio unavailable: {exc}"})); sys.exit(0)
    from avatarkit_fast.playback import SoundDevicePlayer

    class Tone:
        sample_rate = 16000
        def __init__(self): self.pos = 0
        def read_audio_into(self, buf):
            n = len(buf)
            t = np.arange(self.pos, self.pos + n) / 16000
            buf[:] = np.rint(8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
            self.pos += n
        def current_frame_into(self, buf): buf[:] = 0
        def get_audio_time(self): return self.pos / 16000

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    src = Tone()
    player = SoundDevicePlayer(src, blocksize=480, output_sample_rate=48000)
    with player:
        deadline = time.monotonic() + 10
        while player.frames_played < 96000 and time.monotonic() < deadline:
            time.sleep(0.005)
    print(json.dumps({"rate": player.device_sample_rate, "frames": player.frames_played,
                      "read": src.pos, "errors": player.error_count}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ALSA null device is Linux only")
def test_player_resamples_to_48k_through_portaudio_on_alsa_null(tmp_path):
    env, raw = _alsa_null_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _RESAMPLING_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["rate"] == 48000 and result["errors"] == 0
    assert "opened at 48000 Hz; resampling from the controller's 16000 Hz" in proc.stderr
    # A third of the device's samples read from the controller (within a block).
    assert abs(result["read"] * 3 - result["frames"]) <= 3 * 480
    played = np.frombuffer(raw.read_bytes(), "<i2")
    body = played[np.argmax(played != 0) :][:48000]
    assert body.size == 48000
    assert abs(_peak_hz(body, 48000) - 1000) <= 5  # still a 1 kHz tone, at 48 kHz
