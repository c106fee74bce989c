"""Host mode end to end, on one machine, in real processes and real sockets:

    spatius SDK  ->  local motion server (a subprocess)  ->  RelaySender
        ->  WebSocket  ->  RelayReceiver  ->  AvatarController  ->  VirtualClock reads

Every tick of the virtual clock is checked: the audio it read is exactly the next
samples of the utterance (silence only before, after and at stalls), and the
keyframe it showed is the one for the samples played so far, to the sample.  An
interrupt mid-utterance leaves nothing stale; the run is repeatable.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import PLAIN

spatius = pytest.importorskip("spatius")
pytest.importorskip("aiohttp")
AvatarController = pytest.importorskip("avatarkit_fast.controller").AvatarController
spatius.configure_telemetry("")

import websockets  # noqa: E402

from avatarkit_fast import wire  # noqa: E402
from avatarkit_fast.playback import VirtualClock  # noqa: E402
from avatarkit_fast.relay import RelayReceiver, RelaySender, WebSocketSink, pump_websocket  # noqa: E402
from avatarkit_fast.server import synthesize  # noqa: E402

SR = 16000
from avatarkit_fast._schema import FPS  # noqa: E402
SPF = SR // FPS  # samples per keyframe (and per virtual-clock tick)
CHUNK = 2 * SR // 50  # the backend sends 20 ms chunks


def _serve(*options: str):
    """``avatarkit-fast serve`` as a subprocess on a free loopback port."""
    env = dict(os.environ)
    # The package the tests import (the installed one), never the source tree.
    env["PYTHONPATH"] = str(Path(wire.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit_fast.server", "--port", "0", *options],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        urls = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(2))
        yield urls["console_endpoint_url"], urls["ingress_endpoint_url"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def motion_server():
    """Generating as fast as audio arrives."""
    yield from _serve()


@pytest.fixture(scope="module")
def paced_motion_server():
    """Generating at 4x real time, so that an interrupt finds work to stop."""
    yield from _serve("--speed", "4")


@dataclass
class Tick:
    index: int
    conversation: str | None
    position: int  # samples of the conversation played before this tick
    audio: bytes
    frame: np.ndarray
    wall: float


class Probe:
    """The controller as the virtual clock sees it, noting the audio position at
    the moment each keyframe is taken."""

    def __init__(self, ctrl) -> None:
        self.ctrl = ctrl
        self.sample_rate = SR
        self.position = 0
        self.conversation = None

    def current_frame_into(self, buf):
        self.conversation = self.ctrl.get_current_conversation_id()
        self.position = round(self.ctrl.get_audio_time() * SR)
        return self.ctrl.current_frame_into(buf)

    def read_audio_into(self, buf):
        return self.ctrl.read_audio_into(buf)

    def get_audio_time(self):
        return self.ctrl.get_audio_time()


@dataclass
class Run:
    ticks: list[Tick] = field(default_factory=list)
    req_ids: list[str] = field(default_factory=list)
    conversations: dict[str, str] = field(default_factory=dict)  # req_id -> conversation id
    envelopes: dict[str, list[bytes]] = field(default_factory=dict)
    first_audio_sent: float | None = None
    interrupt_tick: int | None = None
    stats: object = None


async def host_mode(console: str, ingress: str, utterances, *, interrupt_after: float | None = None) -> Run:
    """Play ``utterances`` (PCM bytes each) through the whole chain.  With
    ``interrupt_after``, the first one is interrupted once that many seconds of
    it have played, and the next one is sent."""
    out = Run()
    # strict_sync: the clock runs far ahead of real time, so it waits for animation;
    # and it never gives up waiting for a first keyframe that is on its way.
    ctrl = AvatarController(sample_rate=SR, fps=FPS, sync_mode="strict_sync", max_frame_wait=60.0, **PLAIN)
    receiver = RelayReceiver(ctrl)
    original_interrupt = ctrl.interrupt

    def interrupt_noted():
        out.interrupt_tick = len(out.ticks)
        original_interrupt()

    ctrl.interrupt = interrupt_noted
    relay_done = asyncio.get_running_loop().create_future()

    async def client_endpoint(ws):
        relay_done.set_result(await pump_websocket(ws, receiver))

    probe = Probe(ctrl)
    clock = VirtualClock(probe, FPS)
    played_enough = asyncio.Event()
    stop = asyncio.Event()

    async def playout():
        # The virtual clock runs well ahead of real time, ticking between network events.
        while not stop.is_set():
            tick = clock.step()
            out.ticks.append(
                Tick(tick.index, probe.conversation, probe.position, tick.audio.tobytes(),
                     tick.frame.copy(), time.perf_counter())
            )
            if interrupt_after is not None and probe.position >= interrupt_after * SR:
                played_enough.set()
            await asyncio.sleep(0.0005)

    async with websockets.serve(client_endpoint, "127.0.0.1", 0) as relay_server:
        port = relay_server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}") as relay_ws:
            sender = RelaySender(WebSocketSink(relay_ws))

            def transport_frames(data: bytes, last: bool) -> None:
                out.envelopes.setdefault(wire.decode_message(data).req_id, []).append(data)
                sender.transport_frames(data, last)

            session = spatius.new_avatar_session(
                avatar_id="avatar-e2e", api_key="key", app_id="app",
                console_endpoint_url=console, ingress_endpoint_url=ingress,
                transport_frames=transport_frames,
            )
            player = asyncio.get_running_loop().create_task(playout())
            async with session:
                for n, pcm in enumerate(utterances):
                    req_id = None
                    for i in range(0, len(pcm), CHUNK):
                        end = i + CHUNK >= len(pcm)
                        if out.first_audio_sent is None:
                            out.first_audio_sent = time.perf_counter()
                        req_id = await sender.send_audio(session, pcm[i : i + CHUNK], end)
                        # Audio comes faster than real time (as from a TTS engine),
                        # but from a source the backend awaits.
                        await asyncio.sleep(0)
                    out.req_ids.append(req_id)
                    if n == 0 and interrupt_after is not None:
                        await asyncio.wait_for(played_enough.wait(), 30)
                        # The client stops playing at once; the server hears of it a
                        # batch later, so late animation of this request reaches the
                        # client after its interrupt (and must be dropped there).
                        sender.interrupt(req_id)
                        sent = len(out.envelopes[req_id])
                        for _ in range(2000):
                            if len(out.envelopes[req_id]) > sent:
                                break
                            await asyncio.sleep(0.005)
                        assert await session.interrupt() == req_id
                    else:
                        # Wait until this utterance has played to its end.
                        total = len(pcm) // 2
                        while True:
                            await asyncio.sleep(0.005)
                            cid = receiver.conversation_id(req_id)
                            if cid is not None and ctrl.get_current_conversation_id() != cid and any(
                                t.conversation == cid and t.position + SPF >= total for t in out.ticks
                            ):
                                break
                    out.conversations[req_id] = receiver.conversation_id(req_id)
                await sender.flush()
            for _ in range(10):  # a little idle tail
                await asyncio.sleep(0.002)
            stop.set()
            await player
        await asyncio.wait_for(relay_done, 10)
    out.stats = ctrl.stats
    ctrl.close()
    return out


def check_playout(run: Run, utterances, keyframes, *, cut: int | None = None):
    """Every tick against the utterances' PCM and the server's keyframes.

    Returns, per request, the samples played and the number of ticks showing it."""
    idle = np.zeros(120, dtype=np.float32)
    played = {req: 0 for req in run.req_ids}
    by_conversation = {cid: req for req, cid in run.conversations.items()}
    pcm_of = dict(zip(run.req_ids, utterances))
    frames_of = dict(zip(run.req_ids, keyframes))
    ticks = run.ticks
    for i, tick in enumerate(ticks):
        req = by_conversation.get(tick.conversation)
        if req is None:
            assert tick.audio == bytes(2 * SPF), f"tick {i}: sound outside any conversation"
            assert np.array_equal(tick.frame, idle), f"tick {i}: a keyframe outside any conversation"
            continue
        if cut is not None and i > cut:
            assert req != run.req_ids[0], f"tick {i}: the interrupted request still plays"
        pcm, frames = pcm_of[req], frames_of[req]
        s = tick.position
        # The keyframe for the samples played so far, to the sample (before the
        # first sample, the idle frame may still show: nothing has started).
        nxt = ticks[i + 1] if i + 1 < len(ticks) else None
        if nxt is not None and nxt.conversation == tick.conversation:
            s_after = nxt.position
        else:
            s_after = min(s + SPF, len(pcm) // 2) if (cut is None or req != run.req_ids[0]) else None
        k = min(s * FPS // SR, len(frames) - 1)
        if s == 0 and np.array_equal(tick.frame, idle):
            pass  # before the first sample the idle frame may still show
        elif (
            s * FPS % SR == 0
            and (s_after == s or (s_after is None and not any(tick.audio)))
            and np.array_equal(tick.frame, frames[k - 1])
        ):
            pass  # stalled waiting for keyframe k (then maybe cut): the last sample's keyframe holds
        else:
            assert np.array_equal(tick.frame, frames[k]), f"tick {i}: keyframe {k} expected at sample {s}"
        # The audio: the next samples of the utterance, then silence (a stall or the end).
        if s_after is None:  # interrupted during this tick: a prefix of the expected audio
            expected = pcm[2 * s : 2 * (s + SPF)]
            assert expected.startswith(tick.audio.rstrip(b"\0")[: len(expected)])
            played[req] = s + SPF
            continue
        assert s <= s_after <= s + SPF
        want = pcm[2 * s : 2 * s_after] + bytes(2 * (SPF - (s_after - s)))
        assert tick.audio == want, f"tick {i}: audio of samples {s}..{s_after} expected"
        played[req] = max(played[req], s_after)
    return played


def test_host_mode_end_to_end(motion_server, golden):
    console, ingress = motion_server
    pcm = golden.pcm
    expected = synthesize(pcm, SR)
    assert np.array_equal(expected, np.concatenate([wire.decode_animation(e).frames for e in golden.envelopes]))

    runs = [asyncio.run(asyncio.wait_for(host_mode(console, ingress, [pcm]), 120)) for _ in range(2)]
    for run in runs:
        req = run.req_ids[0]
        # The server's envelopes: the service's batching, our deterministic keyframes.
        counts = [len(wire.decode_message(e).frames) for e in run.envelopes[req]]
        assert counts == [wire.count_keyframes(e) for e in golden.envelopes]  # 50, 100, 32
        played = check_playout(run, [pcm], [expected])
        assert played[req] == len(pcm) // 2  # every sample, once
        assert run.stats.frames_dropped_stale == 0

    # Repeatable: the same samples and the same keyframe at every audio position.
    def by_position(run):
        cid = run.conversations[run.req_ids[0]]
        return [(t.position, t.audio, t.frame.tobytes()) for t in run.ticks if t.conversation == cid]

    a, b = (by_position(r) for r in runs)
    # Stalls (ticks with the clock standing) may differ between runs; what plays may not.
    dedup = lambda seq: [x for j, x in enumerate(seq) if j == 0 or x[0] != seq[j - 1][0] or x[1] != seq[j - 1][1]]
    assert [x for x in dedup(a) if any(x[1])] == [x for x in dedup(b) if any(x[1])]

    # Time from the first audio sent to the first keyframe shown.
    latencies = []
    for run in runs:
        cid = run.conversations[run.req_ids[0]]
        first = next(t for t in run.ticks if t.conversation == cid and any(t.frame))
        latencies.append(first.wall - run.first_audio_sent)
    print(f"\nhost mode end to end: first audio sent -> first keyframe shown: "
          + ", ".join(f"{x * 1000:.1f} ms" for x in latencies))


def test_interrupt_mid_utterance_leaves_nothing_stale(paced_motion_server, golden):
    console, ingress = paced_motion_server
    first = golden.pcm * 3  # 21.9 s: interrupted after 3 s of playing
    second = golden.pcm[2 * 2 * SR : 6 * 2 * SR]  # 4 s, plays whole
    run = asyncio.run(
        asyncio.wait_for(host_mode(console, ingress, [first, second], interrupt_after=3.0), 120)
    )
    one, two = run.req_ids
    assert one != two
    assert run.interrupt_tick is not None
    # The server stopped generating the first request: no end for it.
    assert not any(wire.decode_message(e).end for e in run.envelopes[one])
    assert len(run.envelopes[one]) < 6
    played = check_playout(
        run, [first, second], [synthesize(first, SR), synthesize(second, SR)], cut=run.interrupt_tick
    )
    assert 3 * SR <= played[one] < len(first) // 2
    assert played[two] == len(second) // 2
    # After the interrupt reached the controller, not one tick of the first request,
    # though a batch of its animation came in after that and was dropped as stale.
    cid_one = run.conversations[one]
    assert all(t.conversation != cid_one for t in run.ticks[run.interrupt_tick :])
    assert run.stats.frames_dropped_stale >= 100
