"""The ``avatarkit-fast`` command, run as a user runs it: in a subprocess,
from the installed package."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatarkit_fast.cli.speech import synthesize_speech
from avatarkit_fast.audio import read_audio_file, write_wav


def read_wav(path):
    """The samples of a WAV file as they are (int16) and its rate."""
    pcm, info = read_audio_file(path, target_rate=None)
    return pcm, info.rate

pytest.importorskip("PIL")
pytest.importorskip("aiohttp")

from avatarkit_fast._schema import FPS  # noqa: E402
RATE = 16000
SIZE = 64


def run_cli(*args, timeout=180, env=None):
    return subprocess.run([sys.executable, "-m", "avatarkit_fast", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_demo(out: Path, *args):
    proc = run_cli("demo", "--out", out, "--size", SIZE, "--video", "gif", *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    return proc, report


def check_outputs(out: Path, report: dict, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every file the demo writes, checked against what went in."""
    from PIL import Image

    played, rate = read_wav(out / "played.wav")
    assert rate == RATE
    frames = np.load(out / "keyframes.npy")
    n = report["counts"]["video_frames"]
    # One keyframe row per video frame, and exactly a frame's worth of audio per frame.
    assert frames.shape == (n, 120) and frames.dtype == np.float32
    assert len(played) == n * RATE // FPS == report["counts"]["samples_played"]
    start = report["start_silence_samples"]
    assert start is not None and start > 0
    if report["interrupted_at"] is None:
        # What the listener heard is the input, whole, after the start silence.
        assert not played[:start].any()
        assert np.array_equal(played[start:start + len(pcm)], pcm)
        assert not played[start + len(pcm):].any()
    with Image.open(out / "timeline.png") as im:
        assert im.format == "PNG" and im.size == (1200, 420)
        im.load()
    with Image.open(out / report["files"]["face"]) as im:
        assert im.format == "GIF" and im.size == (SIZE, SIZE)
        assert im.n_frames == n
        im.seek(n - 1)
        im.load()
    return played, frames


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc, report = run_demo(out, "--seconds", "2.5")
    return out, proc, report


def test_demo_outputs_match_the_input(default_run):
    out, proc, report = default_run
    pcm = synthesize_speech(2.5, RATE, seed=7)
    check_outputs(out, report, pcm)
    assert report["input"]["samples"] == len(pcm)


def test_demo_is_in_sync_to_the_frame_with_interpolation_off(default_run):
    out, proc, report = default_run
    sync = report["sync_error_frames"]
    assert report["pipeline"]["interpolation"] == "none"
    assert sync["frames_measured"] >= 2.5 * FPS - 2
    assert sync["max"] == 0 and sync["mean"] == 0
    assert report["underrun_samples"] == 0 and report["stale_drops"] == 0
    assert report["counts"]["keyframes_received"] == round(2.5 * FPS)
    assert 0 < report["first_keyframe_latency_ms"] < 5000


def test_demo_frames_follow_the_audio(default_run):
    out, proc, report = default_run
    frames = np.load(out / "keyframes.npy")
    played, _ = read_wav(out / "played.wav")
    start = report["start_silence_samples"]
    spf = RATE // FPS
    # The jaw moves while speech plays, and rests (idle frame) before it starts.
    first = start // spf
    assert not frames[:first].any()
    jaw = frames[first + 1:first + int(2.5 * FPS) - 1, 9]
    assert jaw.std() > 0.01


def test_demo_prints_a_summary(default_run):
    out, proc, report = default_run
    text = proc.stdout
    assert "first keyframe after" in text and "sync error: max 0.00" in text
    assert str(out) in text
    assert proc.stderr == ""


def test_demo_with_a_wav_file_and_the_built_in_session(tmp_path):
    pcm = synthesize_speech(1.5, RATE, seed=3)
    wav = tmp_path / "in.wav"
    write_wav(wav, pcm, RATE)
    out = tmp_path / "out"
    proc, report = run_demo(out, "--audio", wav, "--session", "builtin", "--jitter-ms", "60",
                            "--interpolation", "none")
    assert report["pipeline"]["session"] == "built-in session"
    check_outputs(out, report, pcm)
    assert report["sync_error_frames"]["max"] == 0


@pytest.mark.parametrize("server", ["fast", "slow"])
def test_demo_interrupt_leaves_nothing_stale(tmp_path, server):
    out = tmp_path / "out"
    # A slow server's later batches arrive after the interrupt: dropped as stale.
    extra = ["--server-speed", "1", "--seconds", "6", "--interrupt-at", "2.6"] if server == "slow" \
        else ["--seconds", "3", "--interrupt-at", "1.2"]
    proc, report = run_demo(out, *extra)
    pcm = synthesize_speech(float(extra[extra.index("--seconds") + 1]), RATE, seed=7)
    played, frames = check_outputs(out, report, pcm)
    t = report["interrupted_at"]
    assert t is not None and t >= float(extra[-1])
    cut = int(round(t * RATE))
    start = report["start_silence_samples"]
    # Up to the interrupt: the input in order; from it on: not one old sample or keyframe.
    assert np.array_equal(played[start:cut], pcm[: cut - start])
    assert not played[cut:].any()
    assert not frames[int(round(t * FPS)):].any()
    assert report["counts"]["interrupts"] == 1
    assert report["sync_error_frames"]["max"] == 0
    if server == "slow":
        assert report["stale_drops"] > 0
        assert max(report["arrivals"]["animation_s"]) > t


def write_recording(path: Path, recording) -> Path:
    """The recording as a file in its published shape."""
    path.write_text(json.dumps({
        "sample_rate": recording.sample_rate, "audio_format": recording.audio_format,
        "audio_base64": base64.b64encode(recording.pcm).decode(),
        "connection_id": recording.connection_id, "req_id": recording.req_id,
        "animation_messages_base64": [base64.b64encode(e).decode() for e in recording.envelopes],
    }))
    return path


def test_demo_replays_a_recording(tmp_path, golden):
    import dataclasses

    from avatarkit_fast import wire

    # The golden recording's keyframes are what the local server would make of
    # its audio; shifted, they can only have come from the file.
    msgs = [wire.decode_animation(e) for e in golden.envelopes]
    own = dataclasses.replace(golden, envelopes=[
        wire.encode_animation(m.frames + 0.25, req_id=m.req_id, connection_id=m.connection_id, end=m.end)
        for m in msgs])
    out = tmp_path / "out"
    rec = write_recording(tmp_path / "recording.json", own)
    proc, report = run_demo(out, "--recording", rec, "--jitter-ms", "40")
    pcm = np.frombuffer(golden.pcm, "<i2")
    played, frames = check_outputs(out, report, pcm)
    assert report["counts"]["keyframes_received"] == 182
    assert report["counts"]["animation_messages"] == 3
    assert report["sync_error_frames"]["max"] == 0
    assert report["sync_error_frames"]["frames_measured"] >= 175
    # The frames shown are the recording's own keyframes, in audio order.
    kf = np.concatenate([wire.decode_animation(e).frames for e in own.envelopes])
    start = report["start_silence_samples"]
    spf = RATE // FPS
    k0 = start // spf
    assert np.array_equal(frames[k0:k0 + 150], kf[:150])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["demo", "--jitter-ms", "fast"], "invalid float value"),
        (["demo", "--audio", "/nonexistent/speech.wav"], "cannot read"),
        (["demo", "--seconds", "0"], "--seconds"),
        (["demo", "--bogus"], "unrecognized arguments"),
        (["inspect", "/nonexistent/file.json"], "cannot read"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_wrong_arguments_give_one_line_and_status_2(args, needle, tmp_path):
    proc = run_cli(*args, "--out", tmp_path) if args[:1] == ["demo"] else run_cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_inputs_give_one_line_and_status_2(tmp_path):
    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    bad_rec = tmp_path / "rec.json"
    bad_rec.write_text(json.dumps({"sample_rate": 16000, "audio_base64": "AAAA",
                                   "animation_messages_base64": ["bm90IGFuIGVudmVsb3Bl"]}))
    for args in (["--audio", bad_wav], ["--recording", bad_rec],
                 ["--recording", tmp_path / "missing.json"]):
        proc = run_cli("demo", "--out", tmp_path / "o", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_inspect_the_recording(recording, tmp_path):
    rec = write_recording(tmp_path / "recording.json", recording)
    proc = run_cli("inspect", rec, "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["kind"] == "recording" and s["messages"] == 6 and s["keyframes"] == 507
    assert s["req_ids"] == [recording.req_id] and s["connection_ids"] == [recording.connection_id]
    assert s["audio_seconds"] == 20.3 and s["ends_with_end"] is True
    assert [m["keyframes"] for m in s["per_message"]] == [50, 100, 100, 100, 100, 57]
    lo, hi = s["ranges"]["jaw_pose"]
    assert lo < hi
    text = run_cli("inspect", rec)
    assert text.returncode == 0 and "keyframes: 507" in text.stdout


def test_inspect_envelope_and_demo_outputs(tmp_path, default_run):
    from avatarkit_fast import wire

    env = tmp_path / "one.bin"
    env.write_bytes(wire.encode_animation(np.ones((3, 120), np.float32), req_id="r1", end=True))
    s = json.loads(run_cli("inspect", env, "--json").stdout)
    assert s["kind"] == "envelope" and s["keyframes"] == 3 and s["req_ids"] == ["r1"]
    out, _, report = default_run
    s = json.loads(run_cli("inspect", out / "keyframes.npy", "--json").stdout)
    assert s["kind"] == "keyframes" and s["frames"] == report["counts"]["video_frames"]
    s = json.loads(run_cli("inspect", out / "played.wav", "--json").stdout)
    assert s["kind"] == "wav" and s["sample_rate"] == RATE
    s = json.loads(run_cli("inspect", out / "report.json", "--json").stdout)
    assert s["kind"] == "demo report"


def test_bench_prints_a_table():
    env = dict(os.environ, AVATARKIT_BENCH_SHORT="1")
    proc = run_cli("bench", "--rounds", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[0] == "case"
    assert any(line.startswith("playout tick") for line in lines)
    assert any(line.startswith("decode envelope") for line in lines)
    # The audio-in figures, each with the copy floor beside it.
    for case in ("yield_audio_data (20 ms float32)", "resample 24 -> 16 kHz", "Ogg Opus decode"):
        row = next(line for line in lines if line.startswith(case))
        assert row.split()[-1].endswith("x"), row
    assert any(line.startswith("float32 array / int16 bytes, 20 ms yield:") for line in lines)
    assert any(line.startswith("real time on one core: resample 24 -> 16 kHz (1 s)") for line in lines)
    assert any(line.startswith("real time on one core: Ogg Opus decode (3 s)") for line in lines)


def test_serve_prints_its_two_endpoints():
    proc = subprocess.Popen([sys.executable, "-m", "avatarkit_fast", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        second = proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert first.startswith("console_endpoint_url=http://127.0.0.1:")
    assert second.startswith("ingress_endpoint_url=ws://127.0.0.1:")
    assert first.rsplit(":", 1)[1] == second.rsplit(":", 1)[1]


def test_version_and_console_script():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("avatarkit-fast ")
    script = shutil.which("avatarkit-fast", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the package is not installed with its console script here")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "demo" in proc.stdout


@pytest.fixture(scope="module")
def slow_strict_run(tmp_path_factory):
    """A slow motion server under strict sync: the first animation comes after
    max_frame_wait (1 s), so some speech plays with the idle face."""
    out = tmp_path_factory.mktemp("slow-strict") / "out"
    proc, report = run_demo(out, "--seconds", "4.5", "--server-speed", "1", "--sync-mode", "strict_sync",
                            "--jitter-ms", "0")
    return out, proc, report


def test_demo_slow_server_strict_sync_stalls_and_loses_nothing(slow_strict_run):
    out, proc, report = slow_strict_run
    pcm = synthesize_speech(4.5, RATE, seed=7)
    played, rate = read_wav(out / "played.wav")
    assert report["stalls"] >= 1 and report["underrun_samples"] > 0
    assert len(np.load(out / "keyframes.npy")) == report["counts"]["video_frames"]
    # Audio waited for its keyframes: never a keyframe out of step with the audio.
    assert report["sync_error_frames"]["max"] == 0
    # Nothing lost, nothing doubled: the same sound in the same order, silence
    # inserted only where audio waited (the underrun samples), none before the start.
    start = report["start_silence_samples"]
    assert not played[:start].any()
    assert np.array_equal(played[played != 0], pcm[pcm != 0])
    assert len(played) >= start + len(pcm) + report["underrun_samples"]


def test_demo_summary_counts_speech_played_without_animation(slow_strict_run):
    """The summary does not hide frames without animation: speech that played
    with the idle face is its own line, and the sync error says over how many
    of all speech frames it was measured."""
    import re

    out, proc, report = slow_strict_run
    se = report["sync_error_frames"]
    # The case: the first animation came late, and about a second of speech
    # played before it (strict sync gave up waiting after max_frame_wait).
    assert report["first_keyframe_latency_ms"] > 1000
    assert se["frames_without_keyframe"] >= FPS // 2
    assert se["frames_measured"] + se["frames_without_keyframe"] <= se["speech_frames"]
    # Speech frames are those in which the speech was heard: the input's length
    # in frames, give or take the frames it started or waited within.
    assert abs(se["speech_frames"] - 4.5 * FPS) <= 3
    lines = proc.stdout.splitlines()
    sync = [line for line in lines if "sync error" in line]
    assert len(sync) == 1
    m = re.search(r"measured over (\d+) of (\d+) speech frames", sync[0])
    assert m and (int(m[1]), int(m[2])) == (se["frames_measured"], se["speech_frames"])
    idle = [line for line in lines if "without a keyframe" in line]
    assert len(idle) == 1
    n = se["frames_without_keyframe"]
    assert idle[0].strip() == f"speech frames without a keyframe (the idle face shown): {n} ({n / FPS:.2f} s)"



# -- audio files through soundfile ---------------------------------------------------


def _speechlike(rate: int, seconds: float) -> np.ndarray:
    return synthesize_speech(seconds, rate, seed=5).astype(np.float64) / 32768


@pytest.mark.parametrize(
    "kind, rate, channels, subtype",
    [("24-bit", 16000, 1, "PCM_24"), ("float", 22050, 1, "FLOAT"), ("stereo", 44100, 2, "PCM_16"),
     ("11.025 kHz", 11025, 1, "PCM_16")],
)
def test_demo_plays_wav_files_of_any_width_channels_and_rate(tmp_path, kind, rate, channels, subtype):
    import soundfile as sf

    x = _speechlike(rate, 1.2)
    data = x if channels == 1 else np.stack([x, 0.5 * x], axis=1)
    wav = tmp_path / f"{kind}.wav"
    sf.write(str(wav), data, rate, subtype=subtype)
    out = tmp_path / "out"
    proc, report = run_demo(out, "--audio", wav)
    played, played_rate = read_wav(out / "played.wav")
    start = report["start_silence_samples"]
    expect_rate = 16000 if rate == 11025 else rate
    assert played_rate == expect_rate
    heard = played[start:start + int(1.2 * expect_rate)].astype(np.float64) / 32768
    mono = x if channels == 1 else 0.75 * x
    if rate == expect_rate:
        assert np.max(np.abs(heard - mono[: heard.size])) <= 1.5 / 32768  # the file's samples
        assert heard.size == mono.size
    else:
        assert abs(heard.size - 1.2 * expect_rate) <= 1
    notes = proc.stderr.strip().splitlines()
    if channels == 2:
        assert notes == [f"{wav}: WAV PCM_16, 2 channels at 44100 Hz, 1.20 s: mixed down from 2 channels to mono"]
    elif rate == 11025:
        assert notes == [f"{wav}: WAV PCM_16, 1 channel at 11025 Hz, 1.20 s: resampled from 11025 to 16000 Hz"]
    else:
        assert notes == []


def test_demo_plays_espeak_ng_speech(tmp_path):
    import shutil

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no real synthetic speech to play")
    wav = tmp_path / "espeak.wav"
    subprocess.run([espeak, "-w", str(wav), "Hello, this is a talking avatar."], check=True, timeout=60)
    src, info = read_audio_file(wav, target_rate=None)
    out = tmp_path / "out"
    proc, report = run_demo(out, "--audio", wav)
    played, rate = read_wav(out / "played.wav")
    start = report["start_silence_samples"]
    assert rate == info.rate == 22050
    assert played[start:start + src.size].tolist() == src.tolist()
    frames = np.load(out / "keyframes.npy")
    assert frames[:, 9].std() > 0.005  # the jaw moves with the speech


def test_demo_shows_the_idle_and_the_transitions(tmp_path):
    """With the controller's presentation on, the idle breathes and blinks
    before and after the speech, the timeline marks the states, and the
    frames past the transition in are still the keyframes to the frame."""
    from PIL import Image

    out = tmp_path / "demo"
    proc, report = run_demo(out, "--seconds", "2.5", "--idle", "breathing", "--transition-in", "0.2",
                            "--transition-out", "0.8")
    frames = np.load(out / "keyframes.npy")
    sync = report["sync_error_frames"]
    assert sync["frames_measured"] >= (2.5 - 0.2) * FPS - 2  # the transition in is a blend: not measured
    assert sync["max"] == 0
    # the idle moves the head before the speech and after the transition out
    assert np.abs(frames[:3, 3:6]).max() > 0 or np.abs(frames[-3:, 3:9]).max() > 0
    img = np.asarray(Image.open(out / "timeline.png").convert("RGB"))
    speaking = np.all(img == (60, 170, 90), axis=-1).sum()
    assert speaking > 100  # the state band shows the speaking span
