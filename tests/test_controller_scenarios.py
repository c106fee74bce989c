"""Scripted scenarios on the virtual clock: jitter, late animation, interrupts
at random points, pause/resume, odd chunk splits.  Every read is checked by
the harness (samples in order, the right keyframe); hypothesis picks the scripts."""

from __future__ import annotations

import numpy as np
from conftest import PLAIN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarkit_fast import AvatarController, ConversationState, wire

from conftest import IMPL_TAGS
from controller_harness import Harness


@st.composite
def scripts(draw):
    return dict(
        tag=draw(st.sampled_from(IMPL_TAGS)),
        sample_rate=draw(st.sampled_from([8000, 16000, 22050, 44100, 48000])),
        sync_mode=draw(st.sampled_from(["audio_independent", "strict_sync"])),
        interpolation=draw(st.sampled_from(["none", "linear"])),
        max_frame_wait=draw(st.sampled_from([0.0, 0.1, 1.0])),
        conversations=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _run_script(p) -> Harness:
    rng = np.random.default_rng(p["seed"])
    sr = p["sample_rate"]
    fps = 25
    ctrl = AvatarController(
        sample_rate=sr, fps=fps, sync_mode=p["sync_mode"], interpolation=p["interpolation"],
        max_frame_wait=p["max_frame_wait"], _impl=p["tag"], **PLAIN,
    )
    h = Harness(ctrl, read_samples=int(rng.choice([sr // 100, sr // 50, 37, 441])))
    tick_s = h.read_n / sr
    for _ in range(p["conversations"]):
        dur = float(rng.uniform(0.05, 1.2))
        n = int(dur * sr)
        pcm = rng.integers(-30000, 30000, n).astype("<i2").tobytes()
        nkf = -(-n * fps // sr) - int(rng.integers(0, 2))  # sometimes one short
        frames = rng.standard_normal((max(nkf, 1), 120)).astype(np.float32)
        audio_only = rng.random() < 0.15
        # Envelopes: random sizes, each due when its first keyframe is due,
        # plus jitter that may be large (late animation).
        sizes = []
        left = len(frames)
        while left:
            k = int(min(left, rng.integers(1, 30)))
            sizes.append(k)
            left -= k
        starts = np.cumsum([0] + sizes)[:-1]
        late = float(rng.choice([0.0, 0.05, 0.3]))
        due = [max(0.0, s / fps + rng.uniform(-0.2, late)) for s in starts]
        envs = [
            (d, wire.encode_animation(frames[s : s + k], req_id="r", end=j == len(sizes) - 1),
             frames[s : s + k], j == len(sizes) - 1)
            for j, (d, s, k) in enumerate(zip(due, starts, sizes))
        ]
        # Audio: chunks of random byte length (odd splits), faster than real time.
        interrupt_at = float(rng.uniform(0, dur * 1.5)) if rng.random() < 0.3 else None
        pause_at = float(rng.uniform(0, dur)) if rng.random() < 0.3 else None
        pause_len = int(rng.integers(1, 20))
        pos = 0
        t = 0.0
        cid = None
        sent = 0
        paused_for = -1
        cut = False
        for _step in range(100_000):
            if pos < len(pcm):
                m = int(rng.integers(1, max(2, int(2 * sr * tick_s * 2 * 1.5))))
                cid = h.audio(pcm[pos : pos + m], end=pos + m >= len(pcm))
                pos += m
                if audio_only and pos == min(m, len(pcm)):
                    h.frames([], cid, None)
            if not audio_only:
                while sent < len(envs) and envs[sent][0] <= t and cid is not None:
                    _, data, fr, end = envs[sent]
                    h.frames([data], cid, fr, end)
                    sent += 1
            if pause_at is not None and t >= pause_at and paused_for < 0:
                h.pause()
                paused_for = pause_len
            if paused_for == 0:
                h.resume()
            if paused_for >= 0:
                paused_for -= 1
            if interrupt_at is not None and t >= interrupt_at:
                h.interrupt()
                cut = True
                break
            h.tick()
            t += tick_s
            if ctrl.get_current_conversation_id() is None and pos >= len(pcm):
                break
        else:  # pragma: no cover
            raise AssertionError("script did not finish")
        if cut:
            # Late animation for the interrupted conversation is dropped.
            if not audio_only and sent < len(envs):
                _, data, fr, end = envs[sent]
                h.frames([data], cid, fr, end)
            for _ in range(3):
                assert h.tick() == 0
        else:
            conv = h.convs[cid]
            assert conv.pos == len(conv.samples), "nothing lost"
            assert ctrl.state == ConversationState.IDLE
    st = ctrl.stats
    assert st.conversations == len(h.order)
    return h


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_scripted_scenarios(p):
    _run_script(p)


def test_a_fixed_script_for_each_mode():
    for tag in IMPL_TAGS:
        for mode in ("audio_independent", "strict_sync"):
            _run_script(dict(tag=tag, sample_rate=16000, sync_mode=mode, interpolation="linear",
                             max_frame_wait=1.0, conversations=3, seed=1234))
