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

websockets = pytest.importorskip("websockets")
pytest.importorskip("avatarkit_fast.controller")

from avatarkit_fast import relay  # noqa: E402
from avatarkit_fast.controller import AvatarController  # noqa: E402
from avatarkit_fast.errors import ConnectionFailed, RelayError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import controller_ops as ops  # noqa: E402

RATE = 16000
CHUNK = RATE // 50  # 20 ms


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Request:
    """A request's audio (a ramp of its own) and its animation, as relay frames."""

    def __init__(self, index: int, seconds: float) -> None:
        self.req_id = f"req-{index}"
        n = int(seconds * RATE)
        self.pcm = ops.ramp_pcm(index * 7919, n)
        self.samples = np.frombuffer(self.pcm, "<i2")
        frames = n * 25 // RATE + 1
        self.envelopes = [ops.envelope_of(ops.synthetic_frames(min(50, frames)), req_id=self.req_id)]
        if frames > 50:
            self.envelopes.append(ops.envelope_of(ops.synthetic_frames(frames - 50, 50), req_id=self.req_id, end=True))

    def audio_frames(self, end: bool = True) -> list[bytes]:
        out = []
        for i in range(0, len(self.pcm), 2 * CHUNK):
            last = i + 2 * CHUNK >= len(self.pcm)
            out.append(relay.encode_frame(relay.AudioChunk(self.req_id, self.pcm[i : i + 2 * CHUNK], end and last)))
        return out

    def animation_frames(self) -> list[bytes]:
        return [relay.encode_frame(relay.AnimationFrame(self.req_id, (e,))) for e in self.envelopes]

    def frames(self, end: bool = True) -> list[bytes]:
        """Audio with its animation interleaved where the server would send it."""
        audio = self.audio_frames(end)
        anim = self.animation_frames()
        out = audio[:3] + anim[:1] + audio[3:]
        return out + anim[1:]


ABORT = ("abort",)


def sleep(seconds: float):
    return ("sleep", seconds)


async def play(script: list, *, reader_delay: float = 0.0, drain_ticks: int = 400) -> dict:
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
    ctrl = AvatarController(sample_rate=RATE, on_error=errors.append, max_frame_wait=0.2)
    receiver = relay.RelayReceiver(ctrl)
    played: list = []
    buf = np.empty(RATE // 100, np.int16)
    outcome: dict = {}

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
        try:
            outcome["frames"] = await relay.pump_websocket(source, receiver, on_error=relay_errors.append)
        except Exception as exc:  # noqa: BLE001 - inspected by the tests
            outcome["exception"] = exc

    async with websockets.serve(handler, "127.0.0.1", 0, max_queue=4) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}", max_queue=4) as ws:
            task = asyncio.create_task(pump(ws))
            while not task.done():
                ctrl.read_audio_into(buf)
                played.append(buf.copy())
                await asyncio.sleep(0.001)
            await task
    for _ in range(drain_ticks):
        ctrl.read_audio_into(buf)
        played.append(buf.copy())
    out = np.concatenate(played)
    return {"played": out[out != 0], "errors": errors, "relay_errors": relay_errors, "ctrl": ctrl,
            "receiver": receiver, **outcome}


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


def test_clean_relay_plays_everything_once():
    reqs = [Request(0, 1.0), Request(1, 0.6)]
    res = run(play(reqs[0].frames() + [sleep(1.2)] + reqs[1].frames()))
    assert segments(res["played"], reqs) == [(r.req_id, len(r.samples)) for r in reqs]
    assert not res["errors"] and not res["relay_errors"] and "exception" not in res


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
