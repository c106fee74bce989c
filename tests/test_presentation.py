"""What the viewer sees: transitions in and out of a conversation, the idle
motion, the animation state, clear(), the frame heard through a latency.
Every test runs on both engines (``impl``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PLAIN

from avatarkit_fast import AvatarController
from avatarkit_fast._compat import NO_EXTENSIONS
from avatarkit_fast._schema import FLAME_GROUPS, FLAME_OFFSETS
from avatarkit_fast.controller import AnimationState
from avatarkit_fast.idle import BLINK_CLOSED, BLINK_INTERVAL, blink_times, breathing

SR, FPS, TICK = 16000, 25, 160  # 10 ms reads
A = AnimationState


def _run(ctrl, ticks, out=None):
    """``ticks`` reads of 10 ms, each followed by the frame; returns frames."""
    buf = np.zeros(TICK, np.int16)
    fr = np.zeros(120, np.float32)
    frames = [] if out is None else out
    for _ in range(ticks):
        ctrl.read_audio_into(buf)
        ctrl.current_frame_into(fr)
        frames.append(fr.copy())
    return frames


def _speech(recording, ctrl, seconds=None):
    pcm = recording.pcm if seconds is None else recording.pcm[: int(seconds * SR) * 2]
    cid = ctrl.yield_audio_data(pcm, end=True)
    assert ctrl.yield_frames_data(recording.envelopes, cid)
    return cid


def _max_step(frames, lo, hi):
    """Per FLAME group, the largest frame-to-frame change in frames[lo:hi]."""
    d = np.abs(np.diff(np.asarray(frames[lo:hi]), axis=0))
    return {name: float(d[:, off:off + n].max()) for name, off, n in FLAME_GROUPS}


def _group_max(v, name):
    off = FLAME_OFFSETS[name]
    size = dict((g, n) for g, _, n in FLAME_GROUPS)[name]
    return float(np.abs(np.asarray(v)[..., off:off + size]).max())


def test_transitions_bound_every_groups_change_and_join_the_plain_stream(impl, recording):
    t_in, t_out = 0.2, 0.8
    events = []
    ctrl = AvatarController(SR, FPS, interpolation="linear", idle=None, transition_in=t_in,
                            transition_out=t_out, on_animation_state=events.append, _impl=impl.tag)
    plain = AvatarController(SR, FPS, interpolation="linear", _impl=impl.tag, **PLAIN)
    lead = 20  # idle ticks first
    f, p = _run(ctrl, lead), _run(plain, lead)
    _speech(recording, ctrl)
    _speech(recording, plain)
    n_speech = (len(recording.pcm) // 2 - 1) // TICK  # the read that ends the audio
    tail = int(t_out * 100) + 30
    _run(ctrl, n_speech + tail, f)
    _run(plain, n_speech + tail, p)
    f, p = np.asarray(f), np.asarray(p)
    assert events == [A.TRANSITION_IN, A.SPEAKING, A.TRANSITION_OUT, A.IDLE]
    # Past transition_in of audio (and until the audio's end) the frames are the
    # plain keyframe stream, bit for bit.
    first_in = lead + int(t_in * 100)
    end = lead + n_speech
    assert np.array_equal(f[first_in:end], p[first_in:end])
    # The plain stream jumps at its start and its end; the transitions bound
    # every group's change by the stream's own steps plus the distance to the
    # idle times the smoothstep's steepest slope (1.5 / T) per tick.
    stream = _max_step(p, lead + 1, end)
    idle = np.zeros(120, np.float32)
    start_dist = {g: _group_max(p[lead:first_in + 1] - idle, g) for g, _, _ in FLAME_GROUPS}
    end_dist = {g: _group_max(p[end - 1] - idle, g) for g, _, _ in FLAME_GROUPS}
    step_in = _max_step(f, lead - 1, first_in + 2)
    step_out = _max_step(f, end - 2, end + tail)
    jumps = 0
    for g, _, _ in FLAME_GROUPS:
        allow_in = stream[g] + start_dist[g] * 1.5 * 0.01 / t_in + 1e-6
        allow_out = stream[g] + end_dist[g] * 1.5 * 0.01 / t_out + 1e-6
        assert step_in[g] <= allow_in, (g, step_in[g], allow_in)
        assert step_out[g] <= allow_out, (g, step_out[g], allow_out)
        jumps += _max_step(p, lead - 1, lead + 1)[g] > allow_in
    assert jumps > 0  # without transitions the start is a jump past the bound
    # After transition_out the idle frame (zeros here) again.
    assert not f[end + int(t_out * 100) + 1:].any()
    assert ctrl.animation_state is A.IDLE


def test_zero_transitions_are_the_plain_stream(impl, recording):
    a = AvatarController(SR, FPS, interpolation="linear", _impl=impl.tag, **PLAIN)
    b = AvatarController(SR, FPS, interpolation="linear", _impl=impl.tag, transition_in=0,
                         transition_out=0, idle=None)
    for c in (a, b):
        _speech(recording, c, 3.0)
    assert np.array_equal(np.asarray(_run(a, 320)), np.asarray(_run(b, 320)))


def _lid_onsets(frames):
    lid = np.asarray(frames)[:, FLAME_OFFSETS["eye_lid"]]
    closed = lid > 0.5
    on = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    off = np.flatnonzero(~closed[1:] & closed[:-1]) + 1
    return on, off, closed


@pytest.mark.parametrize("seed", [0, 7])
def test_idle_blinks_every_2_to_6_s_for_about_150_ms(impl, seed):
    ctrl = AvatarController(SR, FPS, interpolation="linear", seed=seed, _impl=impl.tag)
    frames = _run(ctrl, 4000)  # 40 s of silence, 10 ms reads
    on, off, closed = _lid_onsets(frames)
    assert len(on) >= 6
    gaps = np.diff(on) / 100.0
    lo, hi = BLINK_INTERVAL
    assert gaps.min() >= lo - 0.02 and gaps.max() <= hi + 0.02, gaps
    # each blink: lids past half closed for about 150 ms
    spans = [(b - a) / 100.0 for a, b in zip(on, off[off > on[0]])]
    assert all(abs(s - BLINK_CLOSED) <= 0.045 for s in spans), spans
    # head and neck sway a little; the gaze wanders a little
    f = np.asarray(frames)
    for group, lo_amp, hi_amp in (("rotation", 0.003, 0.05), ("neck_pose", 0.002, 0.05),
                                  ("eye_pose", 0.01, 0.2)):
        amp = _group_max(f, group)
        assert lo_amp < amp < hi_amp, (group, amp)
    # the onsets are the loop's, to the keyframe
    loop = np.sort(blink_times(seed))
    assert np.isclose(on[0] / 100.0 % 32, loop, atol=0.1).any()


def test_idle_is_identical_for_a_seed_and_differs_for_another(impl):
    a = _run(AvatarController(SR, FPS, seed=3, _impl=impl.tag), 700)
    b = _run(AvatarController(SR, FPS, seed=3, _impl=impl.tag), 700)
    c = _run(AvatarController(SR, FPS, seed=4, _impl=impl.tag), 700)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert np.array_equal(breathing(3), breathing(3)) and not np.array_equal(breathing(3), breathing(4))


@pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled engine is not in use")
def test_both_engines_give_the_same_idle_and_transitions(recording):
    runs = []
    for tag in ("c", "py"):
        ctrl = AvatarController(SR, FPS, interpolation="linear", seed=5, _impl=tag)
        f = _run(ctrl, 50)
        _speech(recording, ctrl, 2.0)
        _run(ctrl, 30, f)
        ctrl.pause()
        _run(ctrl, 5, f)
        ctrl.resume()
        _run(ctrl, 10, f)
        ctrl.interrupt()
        _run(ctrl, 20, f)
        _speech(recording, ctrl, 1.0)
        _run(ctrl, 200, f)
        ctrl.clear()
        _run(ctrl, 100, f)
        runs.append(np.asarray(f))
    assert np.array_equal(runs[0], runs[1])


def test_idle_continues_across_conversations(impl, recording):
    """A conversation starts from wherever the idle is and returns to it: once
    transition_out has passed, the frame is the idle of a controller that only
    idled, read for read."""
    talk = AvatarController(SR, FPS, seed=2, _impl=impl.tag)
    quiet = AvatarController(SR, FPS, seed=2, _impl=impl.tag)
    f, q = _run(talk, 130), _run(quiet, 130)
    assert np.array_equal(np.asarray(f), np.asarray(q))
    _speech(recording, talk, 1.5)
    _run(talk, 150 + 80 + 20, f)
    _run(quiet, 150 + 80 + 20, q)
    assert np.array_equal(np.asarray(f[-20:]), np.asarray(q[-20:]))
    assert not np.array_equal(np.asarray(f[140:250]), np.asarray(q[140:250]))


def _continuous(frames, limit):
    d = np.abs(np.diff(np.asarray(frames), axis=0)).max()
    assert d <= limit, d


def test_interrupt_during_transition_in(impl, recording):
    events = []
    ctrl = AvatarController(SR, FPS, interpolation="linear", idle=None, transition_in=0.2,
                            transition_out=0.2, on_animation_state=events.append, _impl=impl.tag)
    f = _run(ctrl, 5)
    _speech(recording, ctrl, 2.0)
    _run(ctrl, 8, f)  # 80 ms into a 200 ms transition
    assert ctrl.animation_state is A.TRANSITION_IN
    mid = f[-1].copy()
    assert mid.any()
    ctrl.interrupt()
    fr = np.zeros(120, np.float32)
    ctrl.current_frame_into(fr)
    assert np.array_equal(fr, mid)  # the transition out starts where the picture was
    _run(ctrl, 30, f)
    assert events == [A.TRANSITION_IN, A.TRANSITION_OUT, A.IDLE]
    assert not f[-1].any()
    plain = AvatarController(SR, FPS, interpolation="linear", _impl=impl.tag, **PLAIN)
    _speech(recording, plain, 2.0)
    jump = np.abs(np.asarray(_run(plain, 1))[0]).max()
    _continuous(f, jump / 2)


def test_new_conversation_during_transition_out(impl, recording):
    events = []
    ctrl = AvatarController(SR, FPS, interpolation="linear", idle=None, transition_in=0.1,
                            transition_out=0.8, on_animation_state=events.append, _impl=impl.tag)
    _speech(recording, ctrl, 0.5)
    f = _run(ctrl, 50 + 20)  # the speech, then 200 ms of the 800 ms transition out
    assert ctrl.animation_state is A.TRANSITION_OUT
    _speech(recording, ctrl, 1.0)
    _run(ctrl, 60, f)
    assert events == [A.TRANSITION_IN, A.SPEAKING, A.TRANSITION_OUT, A.TRANSITION_IN, A.SPEAKING]
    plain = AvatarController(SR, FPS, interpolation="linear", _impl=impl.tag, **PLAIN)
    _speech(recording, plain, 1.0)
    p = np.asarray(_run(plain, 100))
    stream = np.abs(np.diff(p, axis=0)).max()
    # The frame is lerp(background, keyframes, w_in), the background between
    # the snapshot (the frame where the first conversation ended) and the idle
    # (zeros): each tick's change is bounded by the stream's step plus the
    # weights' steepest steps (1.5 * 10 ms / T) times the distances.
    snap = np.abs(f[50]).max()
    allow = stream + (np.abs(p).max() + snap) * 1.5 * 0.01 / 0.1 + snap * 1.5 * 0.01 / 0.8
    d = np.abs(np.diff(np.asarray(f[65:85]), axis=0)).max()
    assert d <= allow + 1e-6


def test_pause_inside_a_transition_freezes_it(impl, recording):
    events = []
    ctrl = AvatarController(SR, FPS, interpolation="linear", idle=None, transition_in=0.2,
                            on_animation_state=events.append, _impl=impl.tag)
    _speech(recording, ctrl, 2.0)
    f = _run(ctrl, 10)
    ctrl.pause()
    held = _run(ctrl, 30)
    assert all(np.array_equal(h, f[-1]) for h in held)  # the picture stands with the audio
    assert ctrl.animation_state is A.TRANSITION_IN
    ctrl.resume()
    _run(ctrl, 9, f)
    assert ctrl.animation_state is A.TRANSITION_IN  # 190 ms of audio so far
    _run(ctrl, 1, f)
    assert ctrl.animation_state is A.SPEAKING and events == [A.TRANSITION_IN, A.SPEAKING]


def test_audio_only_conversation_shows_the_idle(impl, recording):
    events = []
    talk = AvatarController(SR, FPS, seed=1, on_animation_state=events.append, _impl=impl.tag)
    quiet = AvatarController(SR, FPS, seed=1, _impl=impl.tag)
    cid = talk.yield_audio_data(recording.pcm[: SR * 2], end=True)
    assert talk.yield_frames_data([], cid)
    buf = np.zeros(TICK, np.int16)
    fr, fq = np.zeros(120, np.float32), np.zeros(120, np.float32)
    played = 0
    for _ in range(150):
        played += talk.read_audio_into(buf)
        quiet.read_audio_into(buf)
        talk.current_frame_into(fr)
        quiet.current_frame_into(fq)
        assert np.array_equal(fr, fq)
    assert played == SR and events == []


def test_audio_only_after_keyframes_transitions_out(impl, recording):
    events = []
    ctrl = AvatarController(SR, FPS, idle=None, transition_out=0.3, on_animation_state=events.append,
                            _impl=impl.tag)
    cid = _speech(recording, ctrl, 2.0)
    f = _run(ctrl, 40)
    ctrl.yield_frames_data([], cid)
    _run(ctrl, 40, f)
    assert events == [A.TRANSITION_IN, A.SPEAKING, A.TRANSITION_OUT, A.IDLE]
    assert not f[-1].any()


def test_clear_drops_everything_and_returns_to_idle(impl, recording):
    states, anims = [], []
    ctrl = AvatarController(SR, FPS, idle=None, transition_out=0.1, on_conversation_state=states.append,
                            on_animation_state=anims.append, _impl=impl.tag)
    first = _speech(recording, ctrl, 3.0)
    _run(ctrl, 50)
    ctrl.clear()
    assert ctrl.get_current_conversation_id() is None
    assert ctrl.stats.buffered_audio_ms == 0 and ctrl.stats.buffered_frames == 0
    assert not ctrl.yield_frames_data(recording.envelopes, first)  # late animation: stale
    buf = np.zeros(TICK, np.int16)
    assert ctrl.read_audio_into(buf) == 0 and not buf.any()
    _run(ctrl, 15)
    assert anims[-2:] == [A.TRANSITION_OUT, A.IDLE] and int(states[-1]) == 0
    ctrl.clear()  # nothing in progress: nothing happens
    assert anims[-1] == A.IDLE and ctrl.stats.interrupts == 1


def test_frame_at_is_the_frame_shown_that_many_samples_ago(impl, recording):
    ctrl = AvatarController(SR, FPS, interpolation="linear", seed=9, _impl=impl.tag)
    shown = _run(ctrl, 30)
    _speech(recording, ctrl, 3.0)
    _run(ctrl, 250, shown)
    fr = np.zeros(120, np.float32)
    for back_ticks in (0, 1, 4, 12):
        ctrl.frame_at_into(fr, back_ticks * TICK)
        assert np.array_equal(fr, shown[-1 - back_ticks]), back_ticks
    # clamped: before the conversation began, the pose it began from (here,
    # reading back from the start of the speech, the idle then showing)
    ctrl2 = AvatarController(SR, FPS, interpolation="linear", seed=9, _impl=impl.tag)
    s2 = _run(ctrl2, 30)
    _speech(recording, ctrl2, 3.0)
    _run(ctrl2, 5, s2)
    ctrl2.frame_at_into(fr, 8 * TICK)
    assert np.array_equal(fr, s2[-1 - 8])
    with pytest.raises((ValueError, OverflowError)):
        ctrl2.frame_at_into(fr, -1)


def test_an_animation_state_callback_may_call_back_in(impl, recording):
    """Delivered through the engine's event queue: once the read that ended the
    speech has settled, the callback begins the next utterance and it stands."""
    seen = []

    def on_anim(state):
        seen.append(state)
        if state is A.TRANSITION_OUT and len(seen) < 4:
            seen.append(ctrl.yield_audio_data(recording.pcm[: 2 * SR], end=True))

    ctrl = AvatarController(SR, FPS, idle=None, on_animation_state=on_anim, _impl=impl.tag)
    _speech(recording, ctrl, 0.5)
    _run(ctrl, 51)
    assert seen[:3] == [A.TRANSITION_IN, A.SPEAKING, A.TRANSITION_OUT]
    assert ctrl.get_current_conversation_id() == seen[3]
    assert ctrl.stats.buffered_audio_ms == pytest.approx(1000.0, abs=10.1)
    with pytest.raises(TypeError):
        ctrl.frame_at_into(np.zeros(120, np.float32), "1")
