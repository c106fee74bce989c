"""Network faults on the relay: a WebSocket sender on loopback injects faults
(a connection dropped mid-utterance, garbage, text and wrong-version frames,
late, reordered and duplicated frames of earlier requests, a slow reader),
and the client side (``pump_websocket`` -> ``RelayReceiver`` -> a real
``AvatarController``, read in 10 ms ticks as frames arrive) must play what is
valid, report the rest through ``on_error``, and never play stale audio.

Every request's audio is a counting ramp of its own, so the samples played can
be split back into requests: each request may appear once, as a run of its
samples from its first one on, in request order, and nothing else may appear.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PLAIN

websockets = pytest.importorskip("websockets")
pytest.importorskip("avatarkit_fast.controller")

from avatarkit_fast import relay  # noqa: E402
from avatarkit_fast.controller import AvatarController  # noqa: E402
from avatarkit_fast.errors import ConnectionFailed, DecodeError, RelayError, RelayGap  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import controller_ops as ops  # noqa: E402

RATE = 16000
CHUNK = RATE // 50  # 20 ms


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Request:
    """A request's audio (a ramp of its own) and its animation (keyframes that
    say which they are, in envelopes of 10), as the relay frames a backend's
    ``RelaySender`` writes for it: 20 ms audio chunks, each envelope two chunks
    after the audio it covers (the motion server's latency)."""

    def __init__(self, index: int, seconds: float, *, version: int = relay.RELAY_VERSION) -> None:
        self.req_id = f"req-{index}"
        n = int(seconds * RATE)
        self.pcm = ops.ramp_pcm(index * 7919, n)
        self.samples = np.frombuffer(self.pcm, "<i2")
        self.keyframes = n * 25 // RATE + 1
        self.envelopes = [
            ops.envelope_of(ops.synthetic_frames(min(10, self.keyframes - k), k), req_id=self.req_id,
                            end=k + 10 >= self.keyframes)
            for k in range(0, self.keyframes, 10)
        ]
        self.version = version

    def _write(self, end: bool = True) -> list[tuple[str, bytes]]:
        out: list[bytes] = []
        kinds: list[str] = []
        sender = relay.RelaySender(out.append, version=self.version)
        chunks = range(0, len(self.pcm), 2 * CHUNK)
        sent = 0
        for k, i in enumerate(chunks):
            sender.audio(self.req_id, self.pcm[i : i + 2 * CHUNK], end and k == len(chunks) - 1)
            kinds.append("audio")
            while sent < len(self.envelopes) and k >= 20 * sent + 2:  # 20 chunks: 10 keyframes
                sender.animation(self.req_id, [self.envelopes[sent]])
                kinds.append("animation")
                sent += 1
        for env in self.envelopes[sent:]:
            sender.animation(self.req_id, [env])
            kinds.append("animation")
        return list(zip(kinds, out))

    def frames(self, end: bool = True) -> list[bytes]:
        """Audio with its animation interleaved, in the order the sender wrote them."""
        return [f for _, f in self._write(end)]

    def audio_frames(self, end: bool = True) -> list[bytes]:
        return [f for kind, f in self._write(end) if kind == "audio"]

    def animation_frames(self) -> list[bytes]:
        return [f for kind, f in self._write() if kind == "animation"]


ABORT = ("abort",)


def sleep(seconds: float):
    return ("sleep", seconds)


async def play(script: list, *, reader_delay: float = 0.0, drain_ticks: int = 400,
               sync_mode: str = "audio_independent", **receiver_kw) -> dict:
    """Serve ``script`` (bytes, str, ABORT or sleep(...)) over a WebSocket and
    play it on the client; returns what was played and reported."""

    async def handler(ws):
        for item in script:
            if isinstance(item, tuple) and item[0] == "abort":
                ws.transport.abort()
                return
            if isinstance(item, tuple) and item[0] == "sleep":
                await asyncio.sleep(item[1])
                continue
            await ws.send(item)
            await asyncio.sleep(0)
        await ws.close()

    errors: list = []
    relay_errors: list = []
    error_at: list = []
    ctrl = AvatarController(sample_rate=RATE, sync_mode=sync_mode, on_error=errors.append, max_frame_wait=0.2, **PLAIN)
    receiver = relay.RelayReceiver(ctrl, **receiver_kw)
    played: list = []
    shown: list = []  # (samples of the conversation played, keyframe shown) at each tick
    buf = np.empty(RATE // 100, np.int16)
    kf = np.empty(120, np.float32)
    outcome: dict = {}

    def tick() -> None:
        ctrl.read_audio_into(buf)
        played.append(buf.copy())
        if ctrl.get_current_conversation_id() is not None:
            ctrl.current_frame_into(kf)
            shown.append((round(ctrl.get_audio_time() * RATE), float(kf[0])))

    async def pump(ws):
        if reader_delay:
            class Slow:
                def __init__(self, ws):
                    self.ws = ws

                def __aiter__(self):
                    return self

                async def __anext__(self):
                    msg = await self.ws.__aiter__().__anext__()
                    await asyncio.sleep(reader_delay)
                    return msg
            source = Slow(ws)
        else:
            source = ws
        def report(exc) -> None:
            relay_errors.append(exc)
            error_at.append(asyncio.get_running_loop().time())

        try:
            outcome["frames"] = await relay.pump_websocket(source, receiver, on_error=report)
        except Exception as exc:  # noqa: BLE001 - inspected by the tests
            outcome["exception"] = exc
        outcome["ended_at"] = asyncio.get_running_loop().time()

    async with websockets.serve(handler, "127.0.0.1", 0, max_queue=4) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}", max_queue=4) as ws:
            task = asyncio.create_task(pump(ws))
            while not task.done():
                tick()
                await asyncio.sleep(0.001)
            await task
    for _ in range(drain_ticks):
        tick()
    out = np.concatenate(played)
    return {"played": out[out != 0], "errors": errors, "relay_errors": relay_errors, "ctrl": ctrl,
            "receiver": receiver, "shown": shown, "error_at": error_at, **outcome}


def assert_keyframes_follow_the_audio(shown: list) -> None:
    """Every keyframe shown is the one for the samples played (keyframe k has
    first float k + 1; 0 is the rest pose before the first keyframe came):
    a doubled or misplaced envelope would show a keyframe from elsewhere.
    Run with ``sync_mode="strict_sync"``, so that a keyframe still on its way
    under load holds the audio rather than showing an older one."""
    seen = [(s, v) for s, v in shown if v != 0.0]
    assert seen, "no keyframe was shown"
    for s, v in seen:
        assert abs((v - 1) - s * 25 / RATE) <= 1.0, f"keyframe {v - 1:g} shown at sample {s}"


def segments(played: np.ndarray, requests: list[Request]) -> list[tuple[str, int]]:
    """Split the played samples into (req_id, samples) runs; fails on anything
    that is not a run of a request's samples from its start, in request order,
    each request at most once (a stale, doubled or foreign sample)."""
    out = []
    pos = 0
    nxt = 0
    while pos < len(played):
        for k in range(nxt, len(requests)):
            r = requests[k].samples
            if played[pos] == r[0]:
                n = min(len(r), len(played) - pos)
                same = played[pos : pos + n] == r[:n]
                run = n if same.all() else int(np.argmin(same))
                out.append((requests[k].req_id, run))
                pos += run
                nxt = k + 1
                break
        else:
            pytest.fail(f"sample {pos} ({played[pos]}) belongs to no request still allowed to play: "
                        f"runs so far {out}")
    return out


@pytest.mark.parametrize("version", [2, 1])
def test_clean_relay_plays_everything_once(version):
    reqs = [Request(0, 1.0, version=version), Request(1, 0.6, version=version)]
    res = run(play(reqs[0].frames() + [sleep(1.2)] + reqs[1].frames(), sync_mode="strict_sync"))
    assert segments(res["played"], reqs) == [(r.req_id, len(r.samples)) for r in reqs]
    assert_keyframes_follow_the_audio(res["shown"])
    assert res["ctrl"].stats.frames_received == sum(r.keyframes for r in reqs)
    assert not res["errors"] and not res["relay_errors"] and "exception" not in res


def test_frames_duplicated_within_a_live_request_play_once():
    import random

    rng = random.Random(6)
    req = Request(0, 2.0)
    frames = req.frames()
    script, extra = [], 0
    for i, f in enumerate(frames):
        script.append(f)
        if rng.random() < 0.3:  # sent twice in a row
            script.append(f)
            extra += 1
        if i >= 5 and rng.random() < 0.2:  # an earlier frame resent, request still live
            script.append(frames[rng.randrange(i)])
            extra += 1
    res = run(play(script, sync_mode="strict_sync"))
    assert res["ctrl"].stats.frames_received == req.keyframes  # no envelope applied twice
    assert_keyframes_follow_the_audio(res["shown"])
    assert segments(res["played"], [req]) == [(req.req_id, len(req.samples))]
    assert res["receiver"].stats.duplicates == extra > 10
    assert not res["relay_errors"] and "exception" not in res


def test_frames_reordered_within_a_live_request_play_in_order():
    import random

    rng = random.Random(7)
    req = Request(0, 2.0)
    frames = req.frames()
    script = []
    for i in range(0, len(frames), 6):  # each run of 6 frames in a random order
        block = frames[i : i + 6]
        rng.shuffle(block)
        script += block
    assert script != frames
    res = run(play(script, sync_mode="strict_sync"))
    assert segments(res["played"], [req]) == [(req.req_id, len(req.samples))]
    assert_keyframes_follow_the_audio(res["shown"])
    assert res["ctrl"].stats.frames_received == req.keyframes
    assert res["receiver"].stats.reordered > 10 and res["receiver"].stats.gaps == 0
    assert not res["relay_errors"] and "exception" not in res


def test_a_lost_frame_is_reported_and_its_late_copy_never_plays():
    req = Request(0, 2.0)
    frames = req.frames()
    lost = 30  # an audio chunk in the middle
    assert isinstance(relay.decode_frame(frames[lost]), relay.AudioChunk)
    lost_samples = len(relay.decode_frame(frames[lost]).pcm) // 2
    script = frames[:lost] + frames[lost + 1 : lost + 4] + [sleep(0.5), frames[lost]] + frames[lost + 4 :]
    res = run(play(script, gap_timeout=0.1))
    gaps = [e for e in res["relay_errors"] if isinstance(e, RelayGap)]
    assert len(gaps) == len(res["relay_errors"]) == 1
    assert (gaps[0].req_id, gaps[0].first, gaps[0].count) == (req.req_id, lost, 1)
    stats = res["receiver"].stats
    assert stats.late == 1 and stats.gaps == 1 and stats.missing == 1
    # Everything else plays, once and in order: the request's samples without the lost chunk.
    start = sum(len(relay.decode_frame(f).pcm) // 2 for f in frames[:lost]
                if isinstance(relay.decode_frame(f), relay.AudioChunk))
    expected = np.concatenate([req.samples[:start], req.samples[start + lost_samples :]])
    assert np.array_equal(res["played"], expected)
    assert "exception" not in res


def test_a_gap_before_the_last_frame_is_given_up_on_time_not_at_close():
    req = Request(0, 1.0)
    frames = req.frames()
    # the next-to-last frame is lost; the last waits, then plays while the connection is still open
    res = run(play(frames[:-2] + frames[-1:] + [sleep(1.5)], gap_timeout=0.1))
    gaps = [e for e in res["relay_errors"] if isinstance(e, RelayGap)]
    assert len(gaps) == 1 and gaps[0].first == len(frames) - 2
    assert res["receiver"].stats.missing == 1 and res["receiver"].held == 0
    assert res["ended_at"] - res["error_at"][0] > 1.0  # reported by the timer, long before the close
    assert "exception" not in res


def test_connection_dropped_mid_utterance():
    req = Request(0, 2.0)
    frames = req.frames()
    res = run(play(frames[: len(frames) // 2] + [ABORT]))
    runs = segments(res["played"], [req])
    # what arrived plays, whole and once; nothing else
    arrived = sum(len(relay.decode_frame(f).pcm) // 2 for f in frames[: len(frames) // 2]
                  if isinstance(relay.decode_frame(f), relay.AudioChunk))
    assert runs == [(req.req_id, arrived)]
    assert not res["errors"]
    # the drop is reported through on_error, as one of our errors, not raised
    assert "exception" not in res
    assert [type(e) for e in res["relay_errors"]] == [ConnectionFailed]


def test_garbage_text_and_wrong_version_frames_are_reported_and_skipped():
    req = Request(0, 1.0)
    frames = req.frames()
    bad = [b"\xc1", b"", "a text message", b"\x93\x02\x01\xa1x", b"\x94\x01\x02\xa1x\x91\x01", b"\x92\x01"]
    script = []
    for i, f in enumerate(frames):
        script.append(f)
        if i < len(bad):
            script.append(bad[i])
    res = run(play(script))
    assert segments(res["played"], [req]) == [(req.req_id, len(req.samples))]
    assert len(res["relay_errors"]) == len(bad)
    assert all(isinstance(e, RelayError) for e in res["relay_errors"])
    assert any("version 2" in str(e) for e in res["relay_errors"])
    assert "exception" not in res


def test_an_envelope_the_controller_refuses_is_reported_and_the_stream_goes_on():
    req = Request(0, 1.0)
    frames = req.frames()
    out: list[bytes] = []
    relay.RelaySender(out.append, version=1).animation(req.req_id, [b"\x0a\x05garbage"])
    script = frames[:5] + out + frames[5:]  # a well-formed relay frame around a broken envelope
    res = run(play(script))
    assert segments(res["played"], [req]) == [(req.req_id, len(req.samples))]
    assert [type(e) for e in res["relay_errors"]] == [DecodeError]
    assert not isinstance(res["relay_errors"][0], RelayError)
    assert res["ctrl"].stats.frames_received == req.keyframes
    assert "exception" not in res


def test_late_duplicated_and_reordered_frames_of_earlier_requests_never_play():
    a, b, c = Request(0, 1.0), Request(1, 0.8), Request(2, 0.5)
    script = (
        a.frames()[:20]                    # a is cut short by b
        + b.frames()[:10]
        + a.frames()                       # all of a again, late (duplicated, after b started)
        + a.animation_frames()             # a's animation, late and duplicated
        + b.frames()[10:]
        + [sleep(1.2)]
        + c.animation_frames()             # c's animation before its audio (reordered)
        + c.audio_frames()
        + b.frames()                       # b again, after b ended and c started
    )
    res = run(play(script))
    runs = segments(res["played"], [a, b, c])
    assert [r for r, _ in runs] == [a.req_id, b.req_id, c.req_id]
    assert dict(runs)[b.req_id] == len(b.samples)
    assert dict(runs)[c.req_id] == len(c.samples)  # its audio plays whole, animation or not
    assert res["receiver"].stats.dropped_audio > 0
    assert "exception" not in res and not res["relay_errors"]


def test_slow_reader_gets_everything_in_order():
    reqs = [Request(0, 3.0)]
    res = run(play(reqs[0].frames(), reader_delay=0.01), timeout=120)
    assert segments(res["played"], reqs) == [(reqs[0].req_id, len(reqs[0].samples))]
    assert not res["relay_errors"] and "exception" not in res
