"""The keyframe of the sample heard: SoundDevicePlayer's heard position from
PortAudio's DAC times, against a deterministic stand-in for the stream (known
latency and jitter) and once against the real stream on an ALSA null device."""

from __future__ import annotations

import heapq
import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import PLAIN

from avatarkit_fast import AvatarController, wire
from avatarkit_fast.playback import FrameRateInfo, SoundDevicePlayer

SR, FPS = 16000, 25


class FakeStream:
    """PortAudio's schedule, simulated: block ``k`` (``block`` samples) leaves
    the DAC at ``start + k * block / SR + latency`` on the stream clock; its
    callback runs ``latency`` before that, late by up to ``jitter`` seconds;
    the DAC time it reports is off by up to ``dac_noise``.  The stream clock
    is the monotonic clock plus ``skew`` (they differ in origin only)."""

    def __init__(self, player, *, block=160, latency=0.05, jitter=0.004, dac_noise=0.0003,
                 skew=1234.5, seed=0, underflow_every=0):
        self.player, self.block, self.latency = player, block, latency
        self.jitter, self.dac_noise, self.skew = jitter, dac_noise, skew
        self.rng = np.random.default_rng(seed)
        self.out = np.zeros((block, 1), np.int16)
        self.k = 0
        self.start = 0.1
        self.underflow_every = underflow_every

    def dac(self, k):
        return self.start + k * self.block / SR + self.latency

    def next_callback_time(self):
        return self.dac(self.k) - self.latency + self.rng.uniform(0, self.jitter)

    def run_callback(self, now):
        status = SimpleNamespace(output_underflow=bool(self.underflow_every and self.k % self.underflow_every == 3))
        info = SimpleNamespace(currentTime=now + self.skew,
                               outputBufferDacTime=self.dac(self.k) + self.skew
                               + self.rng.uniform(-self.dac_noise, self.dac_noise))
        self.player._callback(self.out, self.block, info, status)
        self.k += 1

    def heard(self, t):
        """The true read position leaving the speaker at time ``t``."""
        return (t - self.start - self.latency) * SR


def _simulate(player, stream, clock, seconds, render_hz=120.0, render_jitter=0.002, on_render=None):
    """Callbacks and render calls in time order; returns (t, position) per render."""
    rng = np.random.default_rng(1)
    events = [(stream.next_callback_time(), 0)]
    next_render = 0.2
    events.append((next_render, 1))
    out = []
    while events:
        t, kind = heapq.heappop(events)
        if t > seconds:
            break
        clock.now = t
        if kind == 0:
            stream.run_callback(t)
            heapq.heappush(events, (max(t, stream.next_callback_time()), 0))
        else:
            out.append((t, player.presentation_samples()))
            if on_render is not None:
                on_render(t)
            next_render += 1.0 / render_hz
            heapq.heappush(events, (next_render + rng.uniform(0, render_jitter), 1))
    return out


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("latency,jitter,block", [(0.05, 0.004, 160), (0.2, 0.008, 480), (0.012, 0.001, 64)])
def test_heard_position_within_1_ms_rising_steadily(impl, latency, jitter, block):
    clock = Clock()
    ctrl = AvatarController(SR, FPS, _impl=impl.tag, **PLAIN)
    player = SoundDevicePlayer(ctrl, clock=clock)
    stream = FakeStream(player, block=block, latency=latency, jitter=jitter)
    got = _simulate(player, stream, clock, 6.0)
    t = np.array([g[0] for g in got])
    pos = np.array([g[1] for g in got])
    live = t > stream.start + latency + 0.05  # once sound has reached the speaker
    err_ms = np.abs(pos[live] - stream.heard(t[live])) / SR * 1000
    assert err_ms.max() <= 1.0, err_ms.max()
    assert np.all(np.diff(pos) >= 0)  # never back
    # no steps of a callback: each render interval moves by its length in samples
    step = np.diff(pos[live]) - np.diff(t[live]) * SR
    assert np.abs(step).max() <= 0.001 * SR, np.abs(step).max()
    assert player.presentation_time() == pytest.approx(pos[-1] / SR, abs=0.02)


def test_heard_frame_is_the_keyframe_of_the_heard_sample(impl):
    """Keyframe k holds the value k: the frame shown is the heard audio time
    times fps, within 1 ms of audio."""
    clock = Clock()
    ctrl = AvatarController(SR, FPS, interpolation="linear", _impl=impl.tag, **PLAIN)
    n = FPS * 5
    kf = np.repeat(np.arange(n, dtype=np.float32)[:, None], 120, axis=1)
    player = SoundDevicePlayer(ctrl, clock=clock)
    stream = FakeStream(player, latency=0.08, jitter=0.005)
    fr = np.zeros(120, np.float32)
    seen = []
    started = {}

    def on_render(t):
        if stream.k >= 10 and "cid" not in started:
            # the conversation begins at the read position of block 10
            started["read"] = ctrl.samples_read
            cid = ctrl.yield_audio_data(np.zeros(SR * 5, np.int16).tobytes(), end=True)
            ctrl.yield_frames_data([wire.encode_animation(kf, req_id="r", end=True)], cid)
            started["cid"] = cid
        player.current_frame_into(fr)
        seen.append((t, float(fr[0])))

    _simulate(player, stream, clock, 4.0, on_render=on_render)
    checked = 0
    for t, value in seen:
        audio = (stream.heard(t) - started.get("read", 1e18)) / SR  # seconds of speech heard
        if 0.1 < audio < 3.9:
            assert abs(value / FPS - audio) <= 0.001, (t, value / FPS, audio)
            checked += 1
    assert checked > 300


def test_frame_rate_info_and_its_callback(impl):
    clock = Clock()
    ctrl = AvatarController(SR, FPS, _impl=impl.tag, **PLAIN)
    reports = []
    player = SoundDevicePlayer(ctrl, clock=clock, on_frame_rate_info=reports.append, frame_rate_interval=1.0)
    stream = FakeStream(player, underflow_every=50)
    fr = np.zeros(120, np.float32)
    _simulate(player, stream, clock, 5.0, render_hz=60.0, render_jitter=0.004,
              on_render=lambda t: player.current_frame_into(fr))
    info = player.frame_rate_info()
    assert isinstance(info, FrameRateInfo)
    assert 57 <= info.render_fps <= 61
    assert 1000 / 60 <= info.interval_p95_ms <= 1000 / 60 + 4.5
    assert info.interval_p95_ms <= info.interval_p99_ms <= 1000 / 60 + 4.5
    assert info.underflows == player.underflows == stream.k // 50 + (stream.k % 50 > 3)
    assert info.callbacks == stream.k and info.latency == pytest.approx(0.05, abs=0.005)
    assert 3 <= len(reports) <= 5 and all(57 <= r.render_fps <= 61 for r in reports)


_REAL_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        print(json.dumps({"skip": f"PortAudio unavailable: {exc}"})); sys.exit(0)
    from avatarkit_fast import AvatarController
    from avatarkit_fast.playback import SoundDevicePlayer

    ctrl = AvatarController(16000, 25, _impl=sys.argv[1])
    ctrl.yield_audio_data(np.zeros(16000 * 3, np.int16).tobytes(), end=True)
    player = SoundDevicePlayer(ctrl, blocksize=160)
    fr = np.zeros(120, np.float32)
    samples = []
    with player:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            player.current_frame_into(fr)
            samples.append((time.monotonic(), player.presentation_samples(), ctrl.samples_read))
            time.sleep(1 / 120)
        info = player.frame_rate_info()
    print(json.dumps({"samples": samples, "fps": info.render_fps, "latency": info.latency,
                      "callbacks": info.callbacks}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ALSA null device is Linux only")
def test_heard_position_on_the_real_stream_on_alsa_null(tmp_path, impl):
    from test_playback import _alsa_null_env

    env, _ = _alsa_null_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _REAL_SCRIPT, impl.tag], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    s = np.array(result["samples"])
    assert result["callbacks"] > 50
    live = s[s[:, 1] > 0]
    assert len(live) > 100
    assert np.all(np.diff(live[:, 1]) >= 0)  # never back
    assert live[-1, 1] > live[0, 1]
    # The null device takes blocks as fast as they come (no clock of its
    # own), so the speaker's position is the reads' less the DAC latency it
    # reports (none here), extrapolated since the last callback: never ahead of
    # what was read by more than a late callback's worth (a loaded machine).
    assert np.all(live[:, 1] <= live[:, 2] + 0.1 * SR)
    assert 0 <= result["latency"] < 1.0
    assert 10 < result["fps"] <= 125
