"""The relay over a real WebRTC data channel: two aiortc peer connections in
this process, ICE on 127.0.0.1 only, SDP exchanged in process, the channel
unordered with no retransmissions.  Frames go through a lossy shim before the
channel (drops, duplicates, swaps) so that the numbering has real work to do:
every chunk of a request plays once or is reported as a gap, never twice,
never out of order, and nothing of an interrupted request plays after the
interrupt."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

aiortc = pytest.importorskip("aiortc", reason="the WebRTC relay needs aiortc (extra [webrtc])")

from avatarkit_fast import AvatarController  # noqa: E402
from avatarkit_fast.errors import RelayError, RelayGap  # noqa: E402
from avatarkit_fast.relay import RelayReceiver, RelaySender  # noqa: E402
from avatarkit_fast.relay.webrtc import DataChannelSink, open_relay_channel, pump_datachannel  # noqa: E402

from webrtc_loopback import connect_peers, loopback_ice  # noqa: E402

RATE = 16000
CHUNK = 80  # samples per chunk: every sample of a chunk carries the chunk's value


def chunk(tag: int, index: int) -> bytes:
    return np.full(CHUNK, tag * 1000 + index, dtype="<i2").tobytes()


class Lossy:
    """A sink in front of the channel that loses, duplicates and swaps frames
    (seeded), as a congested datagram path would; interrupts pass through."""

    def __init__(self, sink, seed: int, drop: float = 0.08, dup: float = 0.05, swap: float = 0.1) -> None:
        self.sink, self.rng = sink, random.Random(seed)
        self.drop, self.dup, self.swap = drop, dup, swap
        self.held: bytes | None = None
        self.dropped = 0

    def __call__(self, frame: bytes) -> None:
        if frame[2] == 4:  # an interrupt: the sink's copies stand for its loss handling
            self.release()
            self.sink(frame)
            return
        r = self.rng.random()
        if r < self.drop:
            self.dropped += 1
            return
        if r < self.drop + self.swap and self.held is None:
            self.held = frame  # goes out after the next frame
            return
        self.sink(frame)
        if r > 1 - self.dup:
            self.sink(frame)
        self.release()

    def release(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.sink(held)


def played_runs(pcm: np.ndarray) -> list[tuple[int, int]]:
    """(value, run length) of the non-silent stretches of ``pcm``."""
    runs: list[tuple[int, int]] = []
    for v in pcm[pcm != 0].tolist():
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return runs


async def settle(receiver: RelayReceiver, frames: int, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while receiver.stats.frames < frames and loop.time() < end:
        await asyncio.sleep(0.01)
    await asyncio.sleep(receiver.gap_timeout + 0.05)  # gaps given up on by the pump's timer


def test_lossy_channel_every_chunk_once_in_order_or_a_gap(monkeypatch):
    loopback_ice(monkeypatch)

    async def main():
        ctrl = AvatarController(sample_rate=RATE, max_frame_wait=0.0)
        gaps: list[RelayGap] = []
        receiver = RelayReceiver(ctrl, gap_timeout=0.05, on_error=gaps.append)
        pc1, pc2 = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[])), \
            aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        channel = open_relay_channel(pc1)
        assert channel.ordered is False and channel.maxRetransmits == 0
        arrived: asyncio.Future = asyncio.get_running_loop().create_future()
        pumps = []

        @pc2.on("datachannel")
        def on_datachannel(ch):
            pumps.append(asyncio.ensure_future(pump_datachannel(ch, receiver)))
            arrived.set_result(ch)

        try:
            await connect_peers(pc1, pc2)
            while channel.readyState != "open":
                await asyncio.sleep(0.01)
            await asyncio.wait_for(arrived, 5)
            sink = DataChannelSink(channel)
            lossy = Lossy(sink, seed=7)
            sender = RelaySender(lossy)

            # Request A: 120 chunks, the first 80 before the interrupt.
            for i in range(80):
                sender.audio("A", chunk(1, i))
                if i == 0:
                    sender.audio_only("A")  # seq 1: no animation will come
                await asyncio.sleep(0.001)
            lossy.release()
            await settle(receiver, 60)
            before = ctrl.read_audio(40 * CHUNK)
            sender.interrupt("A")
            for i in range(80, 120):  # a copy of A arriving after the interrupt: must never play
                sender.audio("A", chunk(1, i))
            # Request B: 100 chunks, ended.
            for i in range(100):
                sender.audio("B", chunk(2, i), end=(i == 99))
                if i == 0:
                    sender.audio_only("B")
                await asyncio.sleep(0.001)
            lossy.release()
            await settle(receiver, 200)
            after = ctrl.read_audio(200 * CHUNK)
            assert ctrl.get_current_conversation_id() is None  # B played to its end

            assert lossy.dropped > 5, "the shim must actually lose frames"
            runs_a = played_runs(before)
            runs_b = played_runs(after)
            assert all(v // 1000 == 1 for v, _ in runs_a)
            assert all(v // 1000 == 2 for v, _ in runs_b), "A played after its interrupt"

            def check(runs, tag):
                idx = [v % 1000 for v, _ in runs]
                # Whole chunks (a duplicate would make a run of two), each once, in order.
                assert all(n == CHUNK for _, n in runs), (tag, runs)
                assert idx == sorted(set(idx)), f"request {tag}: a chunk played twice or out of order"
                return idx

            idx_a = check(runs_a[:-1], 1)  # the last run may be cut by the read's end
            idx_b = check(runs_b, 2)
            # Seq numbers: chunk i of a request is seq i, or i + 1 after the audio-only frame.
            def seq(i):
                return 0 if i == 0 else i + 1

            assert any(g.req_id == "B" for g in gaps), "losses must show as gaps"
            gaps_b = [(g.first, g.count) for g in gaps if g.req_id == "B"]
            missing_b = {s for first, count in gaps_b for s in range(first, first + count)}
            for i in range(100):
                assert (i in idx_b) != (seq(i) in missing_b), f"B chunk {i}: neither played nor a gap"
            gaps_a = {s for g in gaps if g.req_id == "A" for s in range(g.first, g.first + g.count)}
            for i in range(idx_a[-1] + 1):
                assert (i in idx_a) != (seq(i) in gaps_a), f"A chunk {i}: neither played nor a gap"
            assert receiver.stats.duplicates > 0 or receiver.stats.reordered > 0
            assert receiver.stats.interrupts == sink.interrupt_copies  # every copy arrived and was harmless
        finally:
            await pc1.close()
            await pc2.close()
            for p in pumps:
                await asyncio.wait_for(p, 5)  # the pump ends with the channel
            ctrl.close()

    asyncio.run(main())


def test_sink_refuses_a_channel_that_is_not_open():
    async def main():
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        try:
            sender = RelaySender(DataChannelSink(open_relay_channel(pc)))
            with pytest.raises(RelayError, match="connecting"):
                sender.audio("A", chunk(1, 0))
            assert sender.frames_sent == 0  # the refused frame took no sequence number
        finally:
            await pc.close()

    asyncio.run(main())


def test_relay_package_does_not_import_aiortc():
    import subprocess
    import sys

    code = "import sys, avatarkit_fast.relay; print('aiortc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
