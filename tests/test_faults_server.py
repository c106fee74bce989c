"""Network faults against the local motion server, from raw WebSocket clients:
a connection dropped mid-utterance, a client that never reads (back
pressure), duplicated, reordered and late messages, and a storm of garbage.
Throughout, a bystander session must keep being served whole and on time,
and the server must end up with no session or request left behind.
"""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp")
websockets = pytest.importorskip("websockets")

from avatarkit_fast import wire  # noqa: E402
from avatarkit_fast.server import FIRST_BATCH, NEXT_BATCH, MotionServer  # noqa: E402

RATE = 16000
CONFIGURE = wire.encode_message(wire.ClientConfigureSession(sample_rate=RATE))


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def speech(seconds: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (rng.standard_normal(n) * 3000 * env).astype("<i2").tobytes()


def audio(req_id: str, pcm: bytes, end: bool = False) -> bytes:
    return wire.encode_message(wire.ClientAudioInput(req_id=req_id, audio=pcm, end=end))


def interrupt(req_id: str) -> bytes:
    return wire.encode_message(wire.ClientInterrupt(req_id=req_id))


async def token(server: MotionServer) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.console_endpoint_url}/session-tokens",
                             json={"expireAt": int(time.time()) + 600}, headers={"X-Api-Key": "k"}) as r:
            assert r.status == 200
            return (await r.json())["sessionToken"]


async def connect(server: MotionServer, tok: str, *, configure: bool = True, **kw):
    url = f"{server.ingress_endpoint_url}/websocket?id=avatar-1&appId=app-1&sessionKey={tok}"
    ws = await websockets.connect(url, max_size=None, **kw)
    if configure:
        await ws.send(CONFIGURE)
        assert isinstance(wire.decode_message(await ws.recv()), wire.ServerConfirmSession)
    return ws


async def send_request(ws, req_id: str, pcm: bytes, chunk: int = 3200, end: bool = True) -> None:
    for i in range(0, len(pcm), chunk):
        await ws.send(audio(req_id, pcm[i : i + chunk], end and i + chunk >= len(pcm)))


async def replies(ws, req_id: str, timeout: float = 30.0) -> list:
    """Animation messages for req_id until the one with end (others are returned too)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        msg = wire.decode_message(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        out.append(msg)
        if isinstance(msg, wire.AnimationMessage) and msg.req_id == req_id and msg.end:
            return out


def keyframes_of(msgs, req_id: str) -> int:
    return sum(len(m.frames) for m in msgs if isinstance(m, wire.AnimationMessage) and m.req_id == req_id)


async def bystander_request(server: MotionServer, tok: str, seconds: float = 3.0, req_id: str = "by") -> float:
    """A well-behaved session: a whole request, every keyframe back. Returns its time."""
    t0 = time.monotonic()
    ws = await connect(server, tok)
    try:
        await send_request(ws, req_id, speech(seconds, 1))
        msgs = await replies(ws, req_id)
    finally:
        await ws.close()
    assert keyframes_of(msgs, req_id) == int(seconds * 25)
    assert not [m for m in msgs if isinstance(m, wire.ServerErrorMessage)]
    return time.monotonic() - t0


async def settle(server: MotionServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.stats.sessions_active and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.stats.sessions_active == 0, "sessions left behind"


def test_connection_dropped_mid_utterance_leaves_nothing_behind():
    async def scenario():
        async with MotionServer() as server:
            tok = await token(server)
            # before any batch, after the first, after two
            for cut, seconds, batches in ((0, 0.5, 0), (1, 3.5, 1), (2, 7.0, 2)):
                ws = await connect(server, tok)
                await send_request(ws, f"cut{cut}", speech(seconds), end=False)
                for _ in range(batches):
                    await ws.recv()  # generation is under way
                ws.transport.abort()  # no close handshake: the TCP connection just dies
                await bystander_request(server, tok, req_id=f"by{cut}")
            await settle(server)
            assert all(not s.requests for s in server._sessions)
            return server.stats

    stats = run(scenario())
    assert stats.sessions_started == 6


def test_a_client_that_never_reads_does_not_hold_up_others():
    async def scenario():
        async with MotionServer() as server:
            tok = await token(server)
            # 5 minutes of audio, about 7.5 MB of animation, and the client never reads
            slow = await connect(server, tok, max_queue=1)
            pcm = speech(300.0, 2)
            await send_request(slow, "flood", pcm, chunk=64000)
            await asyncio.sleep(0.5)
            times = [await bystander_request(server, tok, req_id=f"by{i}") for i in range(3)]
            slow.transport.abort()
            await settle(server)
            return times

    times = run(scenario())
    assert max(times) < 15.0, times


def test_duplicated_reordered_and_late_messages_on_one_session():
    async def scenario():
        async with MotionServer() as server:
            tok = await token(server)
            ws = await connect(server, tok)
            pcm = speech(2.5, 3)
            # 1. a whole request, then the same request again (duplicated after its end)
            await send_request(ws, "r1", pcm)
            first = await replies(ws, "r1")
            await ws.send(audio("r1", pcm[:3200], True))
            dup = wire.decode_message(await asyncio.wait_for(ws.recv(), 10))
            # 2. an interrupt before any audio of its request, then its audio: served
            await ws.send(interrupt("r2"))
            await send_request(ws, "r2", pcm)
            second = await replies(ws, "r2")
            # 3. interrupt mid-request, then late audio of it: dropped, nothing more of r3
            await send_request(ws, "r3", speech(6.0, 4)[: 3 * RATE * 2], end=False)
            await ws.send(interrupt("r3"))
            await ws.send(audio("r3", pcm, True))
            # 4. a duplicated chunk inside a request: the server takes audio as sent
            await ws.send(audio("r4", pcm[:32000]))
            await ws.send(audio("r4", pcm[:32000]))
            await ws.send(audio("r4", b"", True))
            fourth = await replies(ws, "r4")
            await ws.close()
            await settle(server)
            return first, dup, second, fourth

    first, dup, second, fourth = run(scenario())
    assert keyframes_of(first, "r1") == 62 and [len(m.frames) for m in first if m.req_id == "r1"] == [50, 12]
    assert isinstance(dup, wire.ServerErrorMessage) and dup.code == 400 and "already ended" in dup.message
    assert keyframes_of(second, "r2") == 62
    # nothing of r3 after its interrupt but what was already generated: at most its first batch
    assert keyframes_of(fourth, "r3") <= FIRST_BATCH
    assert not any(m.end for m in fourth if isinstance(m, wire.AnimationMessage) and m.req_id == "r3")
    assert keyframes_of(fourth, "r4") == 50
    assert NEXT_BATCH == 100


def test_garbage_storm_while_another_session_is_served():
    rng = random.Random(7)

    async def garbage_client(server, tok, i):
        try:
            ws = await connect(server, tok, configure=bool(i % 2))
            for _ in range(rng.randrange(1, 6)):
                blob = rng.randbytes(rng.randrange(0, 200))
                if rng.random() < 0.3:  # a valid prefix, then junk
                    blob = audio(f"g{i}", b"\1\0" * 100)[: rng.randrange(1, 40)] + blob
                await ws.send(blob)
            try:
                while True:
                    msg = await asyncio.wait_for(ws.recv(), 5)
                    wire.decode_message(msg)  # whatever the server says is a valid message
            except websockets.exceptions.ConnectionClosed:
                pass
            except asyncio.TimeoutError:
                await ws.close()
        except websockets.exceptions.ConnectionClosed:
            pass

    async def scenario():
        async with MotionServer() as server:
            tok = await token(server)
            storm = asyncio.gather(*(garbage_client(server, tok, i) for i in range(40)))
            by = await bystander_request(server, tok, seconds=4.0)
            await storm
            await settle(server)
            return by, server.stats

    by, stats = run(scenario())
    assert by < 20
    assert stats.errors_sent >= 20
