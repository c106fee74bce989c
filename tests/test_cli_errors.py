"""Every option of ``demo``, ``inspect`` and ``bench`` given bad and edge values,
run as a user runs it (a real subprocess of ``python -m avatarkit_fast``):
exit status 2, at most three lines on stderr, never a traceback, and the
error says what was wrong, in time (each case fails before any work starts).

Also: the errors for each kind of wrong input file name the file, and for a
recording the message index, in one form (``FILE: animation message 2: ...``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from avatarkit_fast import wire

NOT_ANY = "not an AvatarKit envelope, a recording (JSON), a keyframes .npy, a WAV or a demo report"
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
       b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
TIMEOUT = 20.0


def _wav(path: Path, rate: int, samples: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(2 * samples))
    return path


def _recording(**over) -> dict:
    frames = np.full((25, 120), 0.01, np.float32)
    envs = [wire.encode_animation(frames, req_id="rec-1", end=False),
            wire.encode_animation(frames, req_id="rec-1", end=False),
            wire.encode_animation(frames, req_id="rec-1", end=True)]
    doc = {"sample_rate": 16000, "audio_base64": base64.b64encode(bytes(2 * 48000)).decode(),
           "animation_messages_base64": [base64.b64encode(e).decode() for e in envs]}
    doc.update(over)
    return doc


def _with_message(i: int, value) -> dict:
    doc = _recording()
    doc["animation_messages_base64"][i] = value
    return doc


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("inputs")
    f: dict[str, Path] = {"dir": d / "folder", "missing": d / "missing.wav"}
    f["dir"].mkdir()

    def put(name: str, filename: str, data: bytes | str) -> None:
        f[name] = d / filename
        if isinstance(data, str):
            f[name].write_text(data)
        else:
            f[name].write_bytes(data)

    put("txt", "notes.txt", "hello, this is text\n")
    put("gif", "picture.gif", GIF)
    put("empty", "empty.bin", b"")
    put("badwav", "bad.wav", b"RIFF\x00\x00\x00\x00WAVEjunk")
    f["wav11k"] = _wav(d / "odd-rate.wav", 11025, 2000)
    cut = _wav(d / "whole.wav", 16000, 2000).read_bytes()
    put("wavcut", "cut.wav", cut[: len(cut) - 2000])  # the header says 2000 frames
    f["wav0"] = _wav(d / "silent.wav", 16000, 0)
    f["wav"] = _wav(d / "ok.wav", 16000, 16000)
    put("badjson", "broken.json", '{"sample_rate": 16000,')
    put("otherjson", "other.json", '{"hello": 1}')
    put("listbad", "list.json", json.dumps(["AAAA", "!!!"]))
    put("listenv", "listenv.json", json.dumps([base64.b64encode(b"plain text").decode()]))
    docs = {
        "rec": _recording(),
        "rec11k": _recording(sample_rate=11025),
        "recrate_str": _recording(sample_rate="16000 Hz"),
        "recrate_bool": _recording(sample_rate=True),
        "recnorate": {k: v for k, v in _recording().items() if k != "sample_rate"},
        "recaudio": _recording(audio_base64="not base64!"),
        "recodd": _recording(audio_base64=base64.b64encode(b"\x00\x01\x02").decode()),
        "recnoaudio": _recording(audio_base64=""),
        "recb64": _with_message(2, "not*base64"),
        "recnum": _with_message(1, 12),
        "recenv": _with_message(2, base64.b64encode(b"plain text").decode()),
        "recgif": _with_message(0, base64.b64encode(GIF).decode()),
        "recnotlist": _recording(animation_messages_base64="AAAA"),
        "rectwo": _with_message(0, base64.b64encode(wire.encode_animation(
            np.zeros((25, 120), np.float32), req_id="other")).decode()),
    }
    for name, doc in docs.items():
        put(name, f"{name}.json", json.dumps(doc))
    f["npyshape"] = d / "shape.npy"
    np.save(f["npyshape"], np.zeros((3, 5), np.float32))
    f["npyobj"] = d / "objects.npy"
    np.save(f["npyobj"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    put("npytrunc", "trunc.npy", f["npyshape"].read_bytes()[:70])
    put("afile", "a-file", "x")
    return {k: str(v) for k, v in f.items()}


def run_cli(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "avatarkit_fast", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - t0


def _sound_device_present() -> bool:
    from avatarkit_fast.errors import AvatarKitError
    from avatarkit_fast.playback import check_output_device

    try:
        check_output_device()
    except AvatarKitError:
        return False
    return True


def _pyav_present() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


# (arguments, what the one line must say).  "{name}" is the path of files[name].
# A demo case gets "--out" (a fresh folder) unless it names its own.
DEMO = [
    # --audio
    (["--audio", "{missing}"], "{missing}: cannot read it (No such file"),
    (["--audio", "{dir}"], "{dir}: is a folder, not a file"),
    (["--audio", "{txt}"], "{txt}: not an audio file that libsndfile reads"),
    (["--audio", "{gif}"], "{gif}: not an audio file that libsndfile reads"),
    (["--audio", "{empty}"], "{empty}: not an audio file that libsndfile reads"),
    (["--audio", "{badwav}"], "{badwav}: not an audio file that libsndfile reads"),
    (["--audio", "{wavcut}"], "{wavcut}: the file is shorter than its header says: 1000 of 2000 frames present"),
    (["--audio", "{wav0}"], "{wav0}: no audio in the file"),
    (["--audio", "{rec}"], "{rec}: not an audio file that libsndfile reads"),
    (["--audio", ""], "--audio must name a file"),
    (["--recording", ""], "--recording must name a file"),
    (["--audio"], "expected one argument"),
    (["--audio", "{wav}", "--recording", "{rec}"], "not allowed with argument"),
    # --recording
    (["--recording", "{missing}"], "{missing}: cannot read it"),
    (["--recording", "{dir}"], "{dir}: is a folder, not a file"),
    (["--recording", "{txt}"], "{txt}: not a recording (not JSON"),
    (["--recording", "{gif}"], "{gif}: not a recording (not JSON"),
    (["--recording", "{empty}"], "{empty}: not a recording (not JSON"),
    (["--recording", "{badjson}"], "{badjson}: not a recording (not JSON"),
    (["--recording", "{otherjson}"], "{otherjson}: not a recording: no 'sample_rate'"),
    (["--recording", "{listbad}"], "{listbad}: not a recording (a JSON list"),
    (["--recording", "{wav}"], "{wav}: not a recording (not JSON"),
    (["--recording", "{npyshape}"], "{npyshape}: not a recording (not JSON"),
    (["--recording", "{rec11k}"], "{rec11k}: sample_rate: 11025 Hz is not supported"),
    (["--recording", "{recrate_str}"], "{recrate_str}: sample_rate: expected a whole number of Hz"),
    (["--recording", "{recrate_bool}"], "{recrate_bool}: sample_rate: expected a whole number of Hz"),
    (["--recording", "{recnorate}"], "{recnorate}: not a recording: no 'sample_rate'"),
    (["--recording", "{recaudio}"], "{recaudio}: audio_base64: not base64"),
    (["--recording", "{recodd}"], "{recodd}: audio_base64: 3 bytes, not 16-bit PCM"),
    (["--recording", "{recnoaudio}"], "{recnoaudio}: no audio in the file"),
    (["--recording", "{recb64}"], "{recb64}: animation message 2: not base64"),
    (["--recording", "{recnum}"], "{recnum}: animation message 1: not base64 (a JSON int)"),
    (["--recording", "{recenv}"], "{recenv}: animation message 2: not an AvatarKit envelope ("),
    (["--recording", "{recgif}"], "{recgif}: animation message 0: not an AvatarKit envelope ("),
    (["--recording", "{recnotlist}"], "{recnotlist}: animation_messages_base64: expected a list"),
    (["--recording", "{rectwo}"], "{rectwo}: expected the envelopes of one request"),
    # --seconds
    (["--seconds", "-1"], "argument --seconds: must be between 0.2 and 600 s, got -1"),
    (["--seconds", "0"], "argument --seconds: must be between 0.2 and 600 s, got 0"),
    (["--seconds", "0.1"], "argument --seconds: must be between"),
    (["--seconds", "601"], "argument --seconds: must be between"),
    (["--seconds", "1e9"], "argument --seconds: must be between"),
    (["--seconds", "nan"], "argument --seconds: must be a finite number"),
    (["--seconds", "inf"], "argument --seconds: must be a finite number"),
    (["--seconds", "two"], "argument --seconds: invalid float value: 'two'"),
    (["--seconds", ""], "argument --seconds: invalid float value"),
    (["--seconds", "2", "--audio", "{wav}"], "--seconds does not go with --audio"),
    (["--seconds", "2", "--recording", "{rec}"], "--seconds does not go with --recording"),
    # --out
    (["--out", ""], "--out must name a folder"),
    (["--out", "{afile}"], "{afile}: cannot write into it (File exists)"),
    (["--out", "{afile}/sub"], "{afile}/sub: cannot write into it (Not a directory)"),
    (["--out"], "expected one argument"),
    # --jitter-ms
    (["--jitter-ms", "-1"], "argument --jitter-ms: must be between 0 and 1000 ms, got -1"),
    (["--jitter-ms", "1001"], "argument --jitter-ms: must be between 0 and 1000 ms"),
    (["--jitter-ms", "1e9"], "argument --jitter-ms: must be between 0 and 1000 ms, got 1e9"),
    (["--jitter-ms", "nan"], "argument --jitter-ms: must be a finite number"),
    (["--jitter-ms=-inf"], "argument --jitter-ms: must be a finite number"),
    (["--jitter-ms", "fast"], "argument --jitter-ms: invalid float value: 'fast'"),
    # --interrupt-at
    (["--interrupt-at", "-0.5"], "argument --interrupt-at: must be between 0 and 600 s"),
    (["--interrupt-at", "nan"], "argument --interrupt-at: must be a finite number"),
    (["--interrupt-at", "1e9"], "argument --interrupt-at: must be between"),
    (["--interrupt-at", "soon"], "argument --interrupt-at: invalid float value"),
    (["--seconds", "1", "--interrupt-at", "1"], "--interrupt-at 1 s is not before the end of the speech (1 s)"),
    (["--seconds", "1", "--interrupt-at", "5"], "--interrupt-at 5 s is not before the end of the speech"),
    (["--audio", "{wav}", "--interrupt-at", "30"], "--interrupt-at 30 s is not before the end of the speech (1 s)"),
    (["--recording", "{rec}", "--interrupt-at", "3"], "--interrupt-at 3 s is not before the end"),
    # --server-speed
    (["--server-speed", "0"], "argument --server-speed: must be between 0.05 and 1000, got 0"),
    (["--server-speed", "-1"], "argument --server-speed: must be between 0.05 and 1000"),
    (["--server-speed", "0.01"], "argument --server-speed: must be between"),
    (["--server-speed", "1e9"], "argument --server-speed: must be between"),
    (["--server-speed", "nan"], "argument --server-speed: must be a finite number"),
    (["--server-speed", "slow"], "argument --server-speed: invalid float value"),
    (["--server-speed", "1", "--recording", "{rec}"], "--server-speed does not go with --recording"),
    # --realtime, --play, -q: flags take no value
    (["--realtime=yes"], "argument --realtime: ignored explicit argument 'yes'"),
    (["--play=1"], "argument --play: ignored explicit argument '1'"),
    (["--quiet=1"], "argument -q/--quiet: ignored explicit argument '1'"),
    # --sync-mode, --interpolation, --video, --session: choices
    (["--sync-mode", "strict"], "argument --sync-mode: invalid choice: 'strict'"),
    (["--sync-mode", ""], "argument --sync-mode: invalid choice"),
    (["--interpolation", "cubic"], "argument --interpolation: invalid choice: 'cubic'"),
    (["--video", "avi"], "argument --video: invalid choice: 'avi'"),
    (["--session", "remote"], "argument --session: invalid choice: 'remote'"),
    (["--session", "builtin", "--recording", "{rec}"], "--session does not go with --recording"),
    # --fps
    (["--fps", "0"], "argument --fps: must be between 1 and 120, got 0"),
    (["--fps", "-25"], "argument --fps: must be between 1 and 120"),
    (["--fps", "121"], "argument --fps: must be between 1 and 120"),
    (["--fps", "1000000000000"], "argument --fps: must be between 1 and 120"),
    (["--fps", "25.5"], "argument --fps: invalid int value: '25.5'"),
    (["--fps", "nan"], "argument --fps: invalid int value: 'nan'"),
    # --size
    (["--size", "0"], "argument --size: must be between 32 and 1024 pixels, got 0"),
    (["--size", "-160"], "argument --size: must be between 32 and 1024 pixels"),
    (["--size", "31"], "argument --size: must be between 32 and 1024 pixels"),
    (["--size", "1025"], "argument --size: must be between 32 and 1024 pixels"),
    (["--size", "big"], "argument --size: invalid int value: 'big'"),
    # --seed
    (["--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1"),
    (["--seed", str(2**32)], "argument --seed: must be between 0 and 4294967295"),
    (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    (["--seed", "seven"], "argument --seed: invalid int value"),
    # unknown options and stray words
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["speech.wav"], "unrecognized arguments: speech.wav"),
]

INSPECT = [
    ([], "the following arguments are required: FILE"),
    (["{missing}"], "{missing}: cannot read it (No such file"),
    (["{dir}"], "{dir}: is a folder, not a file"),
    (["{txt}"], f"{{txt}}: {NOT_ANY} ("),
    (["{gif}"], f"{{gif}}: {NOT_ANY} (Message field 8"),
    (["{empty}"], f"{{empty}}: {NOT_ANY} (the file is empty)"),
    (["{badjson}"], f"{{badjson}}: {NOT_ANY} (JSON that does not parse"),
    (["{otherjson}"], f"{{otherjson}}: {NOT_ANY} (JSON, but not one of those layouts)"),
    (["{listbad}"], "{listbad}: item 1: not base64"),
    (["{listenv}"], "{listenv}: item 0: not an AvatarKit envelope ("),
    (["{rec11k}"], "{rec11k}: sample_rate: 11025 Hz is not supported"),
    (["{recrate_str}"], "{recrate_str}: sample_rate: expected a whole number of Hz"),
    (["{recnorate}"], "{recnorate}: not a recording: no 'sample_rate'"),
    (["{recaudio}"], "{recaudio}: audio_base64: not base64"),
    (["{recodd}"], "{recodd}: audio_base64: 3 bytes, not 16-bit PCM"),
    (["{recb64}"], "{recb64}: animation message 2: not base64"),
    (["{recnum}"], "{recnum}: animation message 1: not base64"),
    (["{recenv}"], "{recenv}: animation message 2: not an AvatarKit envelope ("),
    (["{recgif}"], "{recgif}: animation message 0: not an AvatarKit envelope (Message field 8"),
    (["{recnotlist}"], "{recnotlist}: animation_messages_base64: expected a list"),
    (["{npyshape}"], "{npyshape}: not keyframes: expected numbers of shape (n, 120), found float32 of shape (3, 5)"),
    (["{npyobj}"], "{npyobj}: not a readable keyframes .npy ("),
    (["{npytrunc}"], "{npytrunc}: not a readable keyframes .npy ("),
    (["{badwav}"], "{badwav}: not an audio file that libsndfile reads"),
    (["{txt}", "{gif}"], "unrecognized arguments"),
    (["{rec}", "--json=1"], "argument --json: ignored explicit argument '1'"),
    (["{rec}", "--bogus"], "unrecognized arguments: --bogus"),
]

BENCH = [
    (["--rounds", "0"], "argument --rounds: must be between 1 and 1000, got 0"),
    (["--rounds", "-3"], "argument --rounds: must be between 1 and 1000, got -3"),
    (["--rounds", "1001"], "argument --rounds: must be between 1 and 1000"),
    (["--rounds", str(10**30)], "argument --rounds: must be between 1 and 1000"),
    (["--rounds", "2.5"], "argument --rounds: invalid int value: '2.5'"),
    (["--rounds", "nan"], "argument --rounds: invalid int value: 'nan'"),
    (["--rounds", ""], "argument --rounds: invalid int value"),
    (["--rounds"], "argument --rounds: expected one argument"),
    (["--json=yes"], "argument --json: ignored explicit argument 'yes'"),
    (["extra"], "unrecognized arguments: extra"),
]

TOP = [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["--bogus"], "the following arguments are required: COMMAND"),
]

CASES = ([pytest.param(["demo", *a], n, id="demo " + " ".join(a)) for a, n in DEMO]
         + [pytest.param(["inspect", *a], n, id="inspect " + " ".join(a)) for a, n in INSPECT]
         + [pytest.param(["bench", *a], n, id="bench " + " ".join(a)) for a, n in BENCH]
         + [pytest.param(a, n, id="top " + " ".join(a)) for a, n in TOP])


@pytest.mark.parametrize("args, needle", CASES)
def test_bad_values_are_one_line_and_status_2(args, needle, files, tmp_path):
    args = [a.format(**files) for a in args]
    needle = needle.format(**files)
    if args[:1] == ["demo"] and "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    proc, seconds = run_cli(args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert 1 <= len(lines) <= 3, proc.stderr
    assert needle in proc.stderr, (needle, proc.stderr)
    assert seconds < TIMEOUT
    if args[:1] == ["demo"]:
        # Failed before any work: nothing was written.
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_play_without_a_sound_device_is_status_2(tmp_path):
    if _sound_device_present():
        pytest.skip("this machine has a sound output device: --play would play")
    proc, _ = run_cli(["demo", "--play", "--seconds", "1", "--out", str(tmp_path / "out")])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "write to files instead: avatarkit-fast demo --out DIR" in lines[0]
    assert not (tmp_path / "out").exists()


def test_mp4_without_pyav_is_status_2(tmp_path):
    if _pyav_present():
        pytest.skip("PyAV is installed here: --video mp4 works")
    proc, _ = run_cli(["demo", "--video", "mp4", "--seconds", "1", "--out", str(tmp_path / "out")])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "--video mp4 needs PyAV" in lines[0] and "--video gif" in lines[0]
    assert not (tmp_path / "out").exists()


def test_edge_values_that_are_allowed_run(files, tmp_path):
    """The bounds are inclusive where they say so: the smallest speech, no
    jitter, an interrupt at 0 s, the smallest picture, the largest seed."""
    out = tmp_path / "out"
    proc, _ = run_cli(["demo", "--seconds", "0.2", "--jitter-ms", "0", "--interrupt-at", "0", "--size", "32",
                       "--seed", str(2**32 - 1), "--fps", "1", "--video", "gif", "-q", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"]["interrupt_at"] == 0 and report["interrupted_at"] is not None
    s = json.loads(run_cli(["inspect", files["rec"], "--json"])[0].stdout)
    assert s["kind"] == "recording" and s["messages"] == 3 and s["keyframes"] == 75
