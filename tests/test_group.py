"""SessionGroup: one call ticks many controllers, with exactly the effects of
``read_audio_into`` then ``current_frame_into`` on each in turn (samples,
frames, callbacks, counters, states), on both engines."""

from __future__ import annotations


import numpy as np
from conftest import PLAIN
import pytest

from avatarkit_fast import AvatarController, ClosedError, SessionGroup, wire

from avatarkit_fast._schema import FPS  # noqa: E402


def _twin_sets(tag: str, n: int, rng, log: list, sample_rate: int):
    """Two identical sets of controllers; callbacks log (set, session, event)
    and sometimes act on the next session of the same set, so that the order
    of calls inside a tick matters."""
    sets = []
    for s in range(2):
        ctrls: list = []

        def make(i: int, ctrls=ctrls, s=s):
            def on_state(state):
                log[s].append((i, "state", int(state)))
                if state == 0 and i % 3 == 0:  # an end pauses the next session
                    ctrls[(i + 1) % n].pause()

            def on_stall(stalled):
                log[s].append((i, "stall", stalled))

            def on_first(cid):
                log[s].append((i, "first", cid == ctrls[i].get_current_conversation_id()))
                if i % 4 == 1:
                    raise RuntimeError("a user callback fails")  # reported, playback goes on

            def on_error(err):
                log[s].append((i, "error", type(err).__name__))

            return on_state, on_stall, on_first, on_error

        for i in range(n):
            on_state, on_stall, on_first, on_error = make(i)
            cfg = np.random.default_rng(i)
            ctrls.append(AvatarController(
                sample_rate, FPS,
                sync_mode=["audio_independent", "strict_sync"][int(cfg.integers(2))],
                interpolation=["none", "linear"][int(cfg.integers(2))],
                on_conversation_state=on_state, on_playback_stall=on_stall,
                on_first_frame=on_first, on_error=on_error,
                max_frame_wait=[0.0, 0.05, 1.0][int(cfg.integers(3))], _impl=tag,
                # presentation on most sessions: transitions, idle, its seed
                transition_in=[0.0, 0.05, 0.2][int(cfg.integers(3))],
                transition_out=[0.0, 0.1, 0.8][int(cfg.integers(3))],
                idle=["breathing", None][int(cfg.integers(2))], seed=int(cfg.integers(4)),
                on_animation_state=on_state,
            ))
        sets.append(ctrls)
    return sets


def _scenario(tag: str, seed: int, n: int, ticks: int, sample_rate: int, samples: int) -> None:
    rng = np.random.default_rng(seed)
    log: list = [[], []]
    per, grouped = _twin_sets(tag, n, rng, log, sample_rate)
    group = SessionGroup(grouped)
    assert len(group) == n and group.controllers == tuple(grouped)
    cids = [[None] * n, [None] * n]
    audio = [np.zeros((n, samples), np.int16), np.zeros((n, samples), np.int16)]
    frames = [np.zeros((n, 120), np.float32), np.zeros((n, 120), np.float32)]
    per_audio = [np.zeros(samples, np.int16) for _ in range(n)]
    per_frame = [np.zeros(120, np.float32) for _ in range(n)]
    for t in range(ticks):
        # the same producer-side events on both sets
        for i in range(n):
            r = rng.random()
            if r < 0.25:  # audio, any split, sometimes the end of the conversation
                pcm = rng.integers(-30000, 30000, int(rng.integers(1, max(samples, 8) * 3))).astype("<i2")
                cut = int(rng.integers(0, 2))
                data = pcm.tobytes()[cut:]
                end = bool(rng.random() < 0.1)
                for s, ctrls in enumerate((per, grouped)):
                    cids[s][i] = ctrls[i].yield_audio_data(data, end)
            elif r < 0.40:  # animation, on time, late, or never (stalls)
                k = int(rng.integers(1, 8))
                kf = rng.standard_normal((k, 120)).astype(np.float32)
                end = bool(rng.random() < 0.1)
                env = wire.encode_animation(kf, req_id="r", end=end)
                stale = rng.random() < 0.1
                for s, ctrls in enumerate((per, grouped)):
                    ctrls[i].yield_frames_data([env], "stale-id" if stale else cids[s][i])
            elif r < 0.43:  # audio-only
                for s, ctrls in enumerate((per, grouped)):
                    ctrls[i].yield_frames_data([], cids[s][i])
            elif r < 0.46:
                for ctrls in (per, grouped):
                    ctrls[i].interrupt()
            elif r < 0.50:
                for ctrls in (per, grouped):
                    ctrls[i].pause()
            elif r < 0.56:
                for ctrls in (per, grouped):
                    ctrls[i].resume()
        # the playout side: one call per session, or one call for the group
        for i, c in enumerate(per):
            c.read_audio_into(per_audio[i])
            c.current_frame_into(per_frame[i])
        a, f = audio[t % 2], frames[t % 2]  # alternate arrays: rows are re-exported
        group.tick(a, f)
        np.testing.assert_array_equal(a, np.stack(per_audio), err_msg=f"audio at tick {t}")
        np.testing.assert_array_equal(f, np.stack(per_frame), err_msg=f"frames at tick {t}")
        for i in range(n):
            assert per[i].stats == grouped[i].stats, (t, i)
            assert per[i].get_audio_time() == grouped[i].get_audio_time()
        assert log[0] == log[1], t
    assert any(e[1] == "state" for e in log[0])


@pytest.mark.parametrize("seed", range(6))
def test_group_tick_equals_per_session_calls(impl, seed):
    rate = [16000, 8000, 48000, 22050, 16000, 44100][seed]
    _scenario(impl.tag, seed, n=int(1 + seed * 5), ticks=150, sample_rate=rate, samples=rate // 100)


def test_group_tick_equals_per_session_calls_odd_read_sizes(impl):
    _scenario(impl.tag, 99, n=7, ticks=120, sample_rate=16000, samples=37)
    _scenario(impl.tag, 98, n=3, ticks=60, sample_rate=16000, samples=0)


def test_group_plays_the_recording(impl, recording):
    """Many sessions play the real recording in real time through one group:
    every sample in order and the keyframe of every position."""
    n = 40
    rate = recording.sample_rate
    ctrls = [AvatarController(rate, FPS, _impl=impl.tag, **PLAIN) for _ in range(n)]
    group = SessionGroup(ctrls)
    kf = np.concatenate([wire.decode_animation(e).frames for e in recording.envelopes])
    counts = [wire.count_keyframes(e) for e in recording.envelopes]
    starts = np.cumsum([0] + counts)[:-1]
    pcm = np.frombuffer(recording.pcm, "<i2")
    chunk = rate // 50
    audio = np.zeros((n, rate // 100), np.int16)
    frames = np.zeros((n, 120), np.float32)
    played = np.zeros(0, np.int16)
    cids = [None] * n
    sent = 0
    t = 0
    while True:
        if t % 2 == 0 and (t // 2) * chunk < len(pcm):
            part = recording.pcm[(t // 2) * chunk * 2 : (t // 2 + 1) * chunk * 2]
            end = (t // 2 + 1) * chunk >= len(pcm)
            cids = [c.yield_audio_data(part, end) for c in ctrls]
        while sent < len(starts) and starts[sent] * rate // FPS <= (t // 2 + 1) * chunk:
            for c, cid in zip(ctrls, cids):
                assert c.yield_frames_data([recording.envelopes[sent]], cid)
            sent += 1
        before = ctrls[0].stats.samples_played
        group.tick(audio, frames)
        after = ctrls[0].stats.samples_played
        assert (audio == audio[0]).all() and (frames == frames[0]).all()
        played = np.concatenate([played, audio[0, : after - before]])
        if after > 0 and after < len(pcm):
            np.testing.assert_array_equal(frames[0], kf[min(after * FPS // rate, len(kf) - 1)])
        t += 1
        if all(c.state == 0 for c in ctrls) and t > 4:
            break
    np.testing.assert_array_equal(played, pcm)
    for c in ctrls:
        assert c.stats.samples_played == len(pcm) and c.stats.underrun_samples == 0


def test_group_uses_the_compiled_loop_for_the_compiled_engine(impl):
    group = SessionGroup([AvatarController(_impl=impl.tag, **PLAIN) for _ in range(3)])
    assert type(group._batch).__module__ == f"avatarkit_fast._group_{impl.tag}"


def test_a_closed_session_raises_after_the_ones_before_it_ticked(impl):
    ctrls = [AvatarController(16000, FPS, max_frame_wait=0.0, _impl=impl.tag, **PLAIN) for _ in range(3)]
    for c in ctrls:
        c.yield_audio_data(np.full(1600, 7, "<i2").tobytes())
        c.yield_frames_data([], c.get_current_conversation_id())
    ctrls[1].close()
    group = SessionGroup(ctrls)
    audio = np.zeros((3, 160), np.int16)
    frames = np.zeros((3, 120), np.float32)
    with pytest.raises(ClosedError):
        group.tick(audio, frames)
    assert (audio[0] == 7).all() and (audio[2] == 0).all()
    assert ctrls[0].stats.samples_played == 160 and ctrls[2].stats.samples_played == 0


def test_group_checks_its_arguments(impl):
    ctrls = [AvatarController(16000, FPS, _impl=impl.tag, **PLAIN) for _ in range(2)]
    group = SessionGroup(ctrls)
    with pytest.raises(TypeError):
        group.tick(np.zeros((2, 160), np.float32), np.zeros((2, 120), np.float32))
    with pytest.raises(TypeError):
        group.tick(np.zeros((2, 160), np.int16), np.zeros((2, 120), np.float64))
    with pytest.raises(ValueError):
        group.tick(np.zeros((3, 160), np.int16), np.zeros((2, 120), np.float32))
    with pytest.raises(ValueError):
        group.tick(np.zeros((2, 160), np.int16), np.zeros((2, 121), np.float32))
    with pytest.raises(ValueError):
        group.tick(np.zeros(160, np.int16), np.zeros((2, 120), np.float32))
    with pytest.raises(TypeError):
        group.tick(np.zeros((2, 320), np.int16)[:, ::2], np.zeros((2, 120), np.float32))
    ro = np.zeros((2, 160), np.int16)
    ro.flags.writeable = False
    with pytest.raises(TypeError):
        group.tick(ro, np.zeros((2, 120), np.float32))
    with pytest.raises(TypeError):
        SessionGroup([ctrls[0], object()])
    with pytest.raises(ValueError):
        SessionGroup([ctrls[0], AvatarController(8000, FPS, _impl=impl.tag, **PLAIN)])
    with pytest.raises(ValueError):
        SessionGroup([ctrls[0], AvatarController(16000, 30, _impl=impl.tag, **PLAIN)])
    other = "py" if impl.tag == "c" else "c"
    try:
        mixed = AvatarController(16000, FPS, _impl=other, **PLAIN)
    except ImportError:
        return
    with pytest.raises(ValueError):
        SessionGroup([ctrls[0], mixed])


def test_an_empty_group_ticks_nothing():
    group = SessionGroup([])
    group.tick(np.zeros((0, 160), np.int16), np.zeros((0, 120), np.float32))
    assert len(group) == 0


def test_group_honours_each_sessions_volume(impl, golden):
    """Sessions at different volumes, ticked by a group and one by one: the
    same samples (each scaled by its own volume), keyframes and counters."""
    volumes = [1.0, 0.5, 0.0, 0.3, 0.999]
    sets = []
    for _ in range(2):
        ctrls = [AvatarController(16000, FPS, _impl=impl.tag) for _ in volumes]
        for c, v in zip(ctrls, volumes):
            cid = c.yield_audio_data(golden.pcm, end=True)
            assert c.yield_frames_data(list(golden.envelopes), cid)
            c.set_volume(v)
        sets.append(ctrls)
    group = SessionGroup(sets[0])
    n = len(volumes)
    audio, frames = np.zeros((n, 160), np.int16), np.zeros((n, 120), np.float32)
    a1, f1 = np.zeros(160, np.int16), np.zeros(120, np.float32)
    loud = 0
    for _ in range(len(golden.pcm) // 320 + 3):
        group.tick(audio, frames)
        for i, c in enumerate(sets[1]):
            c.read_audio_into(a1)
            c.current_frame_into(f1)
            assert audio[i].tolist() == a1.tolist()
            assert frames[i].tobytes() == f1.tobytes()
        assert frames[0].tobytes() == frames[2].tobytes()  # volume never moves the face
        assert not audio[2].any()
        loud += int(np.abs(audio[0]).max() > 2 * np.abs(audio[1]).max() - 2)
    assert loud > 100
    for a, b in zip(*sets):
        assert a.stats.samples_played == b.stats.samples_played == len(golden.pcm) // 2
