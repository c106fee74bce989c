"""The pieces the demo draws and plays with: made-up speech, WAV files, the
face film and the timeline."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from avatarkit_fast.cli.speech import synthesize_speech
from avatarkit_fast.audio import AudioFileError, read_audio_file, write_wav


def read_wav(path):
    pcm, info = read_audio_file(path, target_rate=None)
    return pcm, info.rate

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from avatarkit_fast.cli.face import video_suffix, write_face_video  # noqa: E402
from avatarkit_fast.render import FaceRenderer  # noqa: E402
from avatarkit_fast.cli.timeline import draw_timeline  # noqa: E402


def test_speech_is_deterministic_and_speech_like():
    a = synthesize_speech(3.0, 16000, seed=5)
    assert a.dtype == np.int16 and len(a) == 48000
    assert np.array_equal(a, synthesize_speech(3.0, 16000, seed=5))
    assert not np.array_equal(a, synthesize_speech(3.0, 16000, seed=6))
    rms = np.sqrt((a[: 48000 // 640 * 640].astype(float).reshape(-1, 640) ** 2).mean(axis=1))
    # Syllables and pauses: loud windows and silent ones, loudness that comes and goes.
    assert (rms > 2000).sum() > 20 and (rms < 50).sum() > 5
    assert np.abs(a).max() < 32767
    for rate in (8000, 22050, 48000):
        assert len(synthesize_speech(0.5, rate)) == rate // 2
    with pytest.raises(ValueError):
        synthesize_speech(0)


def test_wav_round_trip_and_conversions(tmp_path):
    pcm = synthesize_speech(0.5, 16000)
    write_wav(tmp_path / "a.wav", pcm, 16000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.array_equal(back, pcm)
    # Stereo 24-bit in: averaged to mono int16.
    left = np.array([1000, -2000, 30000], np.int32) << 8
    right = np.array([3000, -4000, 30000], np.int32) << 8
    inter = np.stack([left, right], axis=1).reshape(-1)
    raw = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in inter)
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(44100)
        w.writeframes(raw)
    mono, rate = read_wav(tmp_path / "s.wav")
    assert rate == 44100 and mono.tolist() == [2000, -3000, 30000]
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(AudioFileError, match="not an audio file that libsndfile reads"):
        read_wav(tmp_path / "bad.wav")


def _dark(img, box):
    a = np.asarray(img.crop(box).convert("L"))
    return int((a < 90).sum())


def test_face_follows_the_flame_parameters():
    face = FaceRenderer(128)

    def render(k):
        return Image.fromarray(face.render(k))

    rest = np.zeros(120, np.float32)
    talk = rest.copy()
    talk[9] = 0.15  # jaw_pose[0], radians
    mouth = (32, 78, 96, 122)
    assert _dark(render(talk), mouth) > _dark(render(rest), mouth) + 50
    shut = rest.copy()
    shut[18:20] = 1.0  # eye_lid
    eyes = (20, 40, 108, 68)
    white = lambda im: int((np.asarray(im.crop(eyes).convert("L")) > 245).sum())  # noqa: E731
    assert white(render(shut)) < white(render(rest)) // 3
    turned = rest.copy()
    turned[4] = 0.4  # rotation, yaw
    assert not np.array_equal(np.asarray(render(turned)), np.asarray(render(rest)))
    nan = rest.copy()
    nan[9] = np.nan
    assert render(nan).size == (128, 128)
    with pytest.raises(ValueError):
        render(np.zeros(119))


def test_gif_has_one_picture_per_keyframe_even_when_they_repeat(tmp_path):
    kf = np.zeros((30, 120), np.float32)
    kf[10:20, 9] = 0.1  # open for a while; the rest identical frames
    path = write_face_video(tmp_path / "a.gif", kf, fps=25, size=64)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.size == (64, 64) and im.n_frames == 30
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        assert set(durations) == {40}
    with pytest.raises(ValueError):
        write_face_video(tmp_path / "b.gif", np.zeros((3, 100)))


def test_mp4_with_sound_where_pyav_is_installed(tmp_path):
    av = pytest.importorskip("av")
    assert video_suffix("auto") == ".mp4"
    kf = np.zeros((25, 120), np.float32)
    kf[:, 9] = np.linspace(0, 0.2, 25)
    pcm = synthesize_speech(1.0, 16000)
    path = write_face_video(tmp_path / "a.mp4", kf, fps=25, size=64, audio=pcm, sample_rate=16000)
    with av.open(str(path)) as box:
        assert sum(1 for _ in box.decode(video=0)) == 25
    with av.open(str(path)) as box:
        assert sum(f.samples for f in box.decode(audio=0)) >= 16000


def test_video_suffix_choices():
    assert video_suffix("gif") == ".gif" and video_suffix("mp4") == ".mp4"
    assert video_suffix("auto") in (".gif", ".mp4")


def test_timeline_draws_every_mark(tmp_path):
    pcm = synthesize_speech(2.0, 16000)
    jaw = np.abs(np.sin(np.arange(50) / 4)) * 0.1
    path = draw_timeline(tmp_path / "t.png", pcm, 16000, jaw, 25, audio_arrivals=[0.01, 0.03],
                         animation_arrivals=[0.2], stalls=[(1.0, 1.2)], interrupt_at=1.5,
                         first_frame_at=0.24, title="test", size=(600, 300))
    with Image.open(path) as im:
        assert im.size == (600, 300)
        a = np.asarray(im.convert("RGB"))
    colours = {tuple(c) for c in a.reshape(-1, 3)}
    assert (210, 30, 30) in colours  # the interrupt
    assert (255, 215, 140) in colours  # the stall
    assert (200, 90, 40) in colours  # the jaw
    # Nothing to draw is still a picture.
    draw_timeline(tmp_path / "e.png", np.zeros(0, np.int16), 16000, np.zeros(0), 25)
