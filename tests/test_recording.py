"""The one recording reader (``avatarkit_fast.testing.load_recording``), and
the project's golden recording in ``tests/data/``: what it holds, and that
``scripts/make_golden.py`` makes it again today."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from avatarkit_fast import AvatarKitError, DecodeError, wire
from avatarkit_fast.testing import Recording, RecordingError, load_recording, save_recording

from conftest import GOLDEN_PATH, REPO_ROOT

SR = 16000


def _doc(golden: Recording, **changes) -> dict:
    doc = golden.to_json()
    doc.update(changes)
    return doc


def _write(tmp_path: Path, doc, name: str = "rec.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# -- the golden recording -------------------------------------------------------------


def test_golden_is_small_and_in_the_vendor_layout(golden):
    assert GOLDEN_PATH.stat().st_size < 1_000_000
    doc = json.loads(GOLDEN_PATH.read_text())
    assert set(doc) == {"sample_rate", "audio_format", "audio_base64", "connection_id", "req_id",
                        "animation_messages_base64"}
    assert golden.sample_rate == SR and golden.audio_format == "pcm_s16le_mono"
    assert golden.seconds == pytest.approx(7.3)
    assert golden.req_id and golden.connection_id


def test_golden_envelopes_are_the_services_batching_of_its_own_audio(golden):
    from avatarkit_fast.server import synthesize

    msgs = [wire.decode_animation(e) for e in golden.envelopes]
    # 50 keyframes (2 s), then 100, then the rest with end set: 25 per second of audio.
    assert [len(m.frames) for m in msgs] == [50, 100, 32]
    assert [m.end for m in msgs] == [False, False, True]
    assert {m.req_id for m in msgs} == {golden.req_id}
    assert {m.connection_id for m in msgs} == {golden.connection_id}
    frames = np.concatenate([m.frames for m in msgs])
    assert len(frames) == (len(golden.pcm) // 2) * 25 // SR
    # The local motion server's keyframes are a pure function of the audio.
    assert np.array_equal(frames, synthesize(golden.pcm, SR))
    # Speech-like: the audio has pauses and loud parts, and the mouth moves with it.
    pcm = np.frombuffer(golden.pcm, "<i2")
    assert (pcm == 0).mean() > 0.05 and np.abs(pcm).max() > 4000
    assert frames[:, 9].std() > 0.01
    # The server's canonical form: each envelope re-encodes byte for byte.
    for m, env in zip(msgs, golden.envelopes):
        assert wire.encode_animation(m.frames, req_id=m.req_id, connection_id=m.connection_id,
                                     end=m.end) == env


def test_make_golden_makes_the_committed_recording_again(golden, tmp_path):
    """The script re-makes the file: the same audio and the same envelopes but
    for the server's new ids."""
    pytest.importorskip("spatius", reason="the script drives the server through the spatius SDK")
    pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import make_golden
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    again = load_recording(make_golden.make(tmp_path / "golden.json"))
    assert again.pcm == golden.pcm and again.sample_rate == golden.sample_rate
    assert len(again.envelopes) == len(golden.envelopes)
    assert again.req_id != golden.req_id
    for new, old in zip(again.envelopes, golden.envelopes):
        a, b = wire.decode_animation(new), wire.decode_animation(old)
        assert np.array_equal(a.frames.view(np.uint32), b.frames.view(np.uint32)) and a.end == b.end
        assert new == wire.encode_animation(b.frames, req_id=again.req_id,
                                            connection_id=again.connection_id, end=b.end)


# -- the reader ----------------------------------------------------------------------


def test_load_the_vendor_recording(recording):
    assert recording.sample_rate == SR and len(recording.pcm) == 649_600
    assert [wire.count_keyframes(e) for e in recording.envelopes] == [50, 100, 100, 100, 100, 57]
    assert recording.req_id == wire.decode_animation(recording.envelopes[0]).req_id


def test_save_then_load_gives_the_same_recording(golden, tmp_path):
    path = save_recording(tmp_path / "copy.json", golden)
    assert load_recording(path) == golden
    assert json.loads(path.read_text()) == json.loads(GOLDEN_PATH.read_text())


def _bad_docs(golden: Recording):
    envs = golden.to_json()["animation_messages_base64"]
    error_env = base64.b64encode(wire.encode_message(wire.ServerErrorMessage(code=500, message="x"))).decode()
    return [
        ("not json", "{", "not a recording (not JSON: "),
        ("a list", [1, 2], "not a recording (a JSON list, not an object)"),
        ("no audio", {k: v for k, v in golden.to_json().items() if k != "audio_base64"},
         "not a recording: no 'audio_base64'"),
        ("odd rate", _doc(golden, sample_rate=11025), "sample_rate: 11025 Hz is not supported (use one of 8000, 16000"),
        ("rate as text", _doc(golden, sample_rate="16000"), "sample_rate: expected a whole number of Hz, found '16000'"),
        ("rate as bool", _doc(golden, sample_rate=True), "sample_rate: expected a whole number of Hz, found True"),
        ("other format", _doc(golden, audio_format="opus"), "audio_format: 'opus' is not supported (expected 'pcm_s16le_mono')"),
        ("req_id a number", _doc(golden, req_id=7), "req_id: expected a string, found a JSON int"),
        ("audio not base64", _doc(golden, audio_base64="%%%"), "audio_base64: not base64"),
        ("odd audio bytes", _doc(golden, audio_base64=base64.b64encode(b"abc").decode()),
         "audio_base64: 3 bytes, not 16-bit PCM (an odd count)"),
        ("messages a dict", _doc(golden, animation_messages_base64={}),
         "animation_messages_base64: expected a list, found a JSON dict"),
        ("message 2 not base64", _doc(golden, animation_messages_base64=envs[:2] + ["not base64!"]),
         "animation message 2: not base64"),
        ("message 1 a number", _doc(golden, animation_messages_base64=[envs[0], 5]),
         "animation message 1: not base64 (a JSON int)"),
        ("message 1 not an envelope",
         _doc(golden, animation_messages_base64=[envs[0], base64.b64encode(b"\xff\xff\xff").decode()]),
         "animation message 1: not an AvatarKit envelope ("),
        ("message 0 an error envelope", _doc(golden, animation_messages_base64=[error_env]),
         "animation message 0: not an animation envelope (message type 4)"),
    ]


def test_every_bad_file_names_the_file_and_the_fault(golden, tmp_path):
    for name, doc, expected in _bad_docs(golden):
        path = _write(tmp_path, doc, name.replace(" ", "-") + ".json")
        with pytest.raises(RecordingError) as info:
            load_recording(path)
        err = info.value
        assert str(err).startswith(f"{path}: "), (name, str(err))
        assert expected in str(err), (name, str(err))
        assert isinstance(err, DecodeError) and isinstance(err, AvatarKitError) and isinstance(err, ValueError)
        assert err.path == str(path)
        index = int(expected.split()[2].rstrip(":")) if expected.startswith("animation message ") else None
        assert err.message_index == index, name


def test_unreadable_files_are_recording_errors_too(tmp_path):
    for path in (tmp_path / "missing.json", tmp_path):
        with pytest.raises(RecordingError, match=rf"^{path}: cannot read \(") as info:
            load_recording(path)
        assert isinstance(info.value.__cause__, OSError)


def test_envelopes_unchecked_on_request(golden, tmp_path):
    doc = _doc(golden, animation_messages_base64=[base64.b64encode(b"\xff").decode()])
    rec = load_recording(_write(tmp_path, doc), check_envelopes=False)
    assert rec.envelopes == [b"\xff"] and rec.pcm == golden.pcm


def test_absent_ids_and_format_read_as_defaults(golden, tmp_path):
    doc = {k: v for k, v in golden.to_json().items() if k not in ("req_id", "connection_id", "audio_format")}
    rec = load_recording(_write(tmp_path, doc))
    assert (rec.req_id, rec.connection_id, rec.audio_format) == ("", "", "pcm_s16le_mono")
