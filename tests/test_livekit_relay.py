"""The host-mode relay over a LiveKit room: RelaySender(LiveKitSink(room)) on
one participant, pump_livekit(room, RelayReceiver(controller)) on the other,
through the stand-in pair of tests/livekit_standin.py (two participants in one
process: data packets, lossy ones dropped and duplicated at random, and byte
streams for frames too large for a packet)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("livekit.rtc", reason="the livekit extra is not installed")

from avatarkit_fast import wire  # noqa: E402
from avatarkit_fast.controller import AvatarController  # noqa: E402
from avatarkit_fast.livekit import LiveKitSink, pump_livekit  # noqa: E402
from avatarkit_fast.relay import RelayReceiver, RelaySender, decode_frame  # noqa: E402
from avatarkit_fast.session import new_req_id  # noqa: E402
from livekit_standin import RoomPair  # noqa: E402

RATE = 16000


def speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pcm = (rng.standard_normal(int(seconds * RATE)) * 3000).astype(np.int16)
    pcm[pcm == 0] = 1
    return pcm


def play_out(controller: AvatarController) -> np.ndarray:
    """Read the controller as a device would, until its conversation ends."""
    out = []
    buf = np.zeros(RATE // 100, np.int16)
    for _ in range(60 * 100):
        if controller.get_current_conversation_id() is None:
            break
        n = controller.read_audio_into(buf)
        out.append(buf[:n].copy())
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def test_lossy_duplicating_packets_play_every_sample_of_complete_requests_once():
    async def main():
        pair = RoomPair(loss=0.10, duplicate=0.10, seed=11)
        sink = LiveKitSink(pair.a, reliable=False)
        sender = RelaySender(sink)
        controller = AvatarController(sample_rate=RATE)
        receiver = RelayReceiver(controller, gap_timeout=0.1)
        stop = asyncio.Event()
        pump = asyncio.create_task(pump_livekit(pair.b, receiver, stop=stop, on_error=lambda e: None))
        await asyncio.sleep(0)
        complete = incomplete = 0
        for i in range(30):
            seconds = 0.3 + 0.1 * (i % 5) + (2.1 if i % 7 == 0 else 0.0)
            pcm = speech(seconds, seed=i)
            req = new_req_id()
            dropped_before = len(pair.dropped)
            chunks = [pcm[j:j + 1600] for j in range(0, pcm.size, 1600)]
            for k, chunk in enumerate(chunks):
                sender.audio(req, chunk.tobytes(), end=k == len(chunks) - 1)
            keyframes = np.zeros((int(seconds * 25), wire.KEYFRAME_FLOATS), np.float32)
            sender.animation(req, [wire.encode_animation(keyframes, req_id=req, end=True)])
            await sender.flush()
            await asyncio.sleep(0.25)  # past the receiver's gap timeout
            lost = [decode_frame(f) for f in pair.dropped[dropped_before:]]
            played = play_out(controller)
            if not any(getattr(f, "req_id", None) == req for f in lost):
                complete += 1
                assert np.array_equal(played, pcm), (i, played.size, pcm.size)
            else:
                incomplete += 1
                assert played.size <= pcm.size
        stop.set()
        fed = await pump
        assert fed > 0 and complete >= 10 and incomplete >= 1
        assert pair.doubled > 0 and receiver.stats.duplicates > 0
        assert sink.streams > 0 and sink.packets > 0  # large animation went as byte streams
        controller.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_reliable_relay_plays_everything_and_a_closed_controller_ends_the_pump():
    async def main():
        pair = RoomPair()
        sender = RelaySender(LiveKitSink(pair.a))
        controller = AvatarController(sample_rate=RATE)
        pump = asyncio.create_task(pump_livekit(pair.b, RelayReceiver(controller)))
        await asyncio.sleep(0)
        pcm = speech(0.5, seed=99)
        req = new_req_id()
        sender.audio(req, pcm.tobytes(), end=True)
        sender.audio_only(req)
        await sender.flush()
        await asyncio.sleep(0.05)
        assert np.array_equal(play_out(controller), pcm)
        controller.close()
        sender.audio(new_req_id(), pcm.tobytes(), end=True)
        await sender.flush()
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(pump, 5)
        assert "closed" in str(info.value).lower()

    asyncio.run(main())



def test_the_vendor_sdk_as_the_backend_relays_through_a_lossy_room():
    """spatius (the server SDK) against the local motion server, its audio and
    animation relayed through the room with 10% loss and duplication: every
    request whose frames all arrived plays every sample once."""
    spatius = pytest.importorskip("spatius")
    pytest.importorskip("aiohttp")
    from avatarkit_fast.server import MotionServer

    spatius.configure_telemetry("")

    async def main():
        async with MotionServer() as server:
            pair = RoomPair(loss=0.10, duplicate=0.10, seed=5)
            sender = RelaySender(LiveKitSink(pair.a, reliable=False))
            controller = AvatarController(sample_rate=RATE)
            receiver = RelayReceiver(controller, gap_timeout=0.1)
            stop = asyncio.Event()
            pump = asyncio.create_task(pump_livekit(pair.b, receiver, stop=stop, on_error=lambda e: None))
            session = spatius.new_avatar_session(
                avatar_id="avatar", api_key="key", app_id="app",
                console_endpoint_url=server.console_endpoint_url,
                ingress_endpoint_url=server.ingress_endpoint_url,
                transport_frames=sender.transport_frames,
            )
            complete = 0
            async with session:
                for i in range(8):
                    pcm = speech(0.6, seed=100 + i)
                    dropped_before = len(pair.dropped)
                    data = pcm.tobytes()
                    req = None
                    for j in range(0, len(data), 3200):
                        req = await sender.send_audio(session, data[j:j + 3200], j + 3200 >= len(data))
                    await sender.flush()
                    await asyncio.sleep(0.5)  # the animation, then past the gap timeout
                    lost = [decode_frame(f) for f in pair.dropped[dropped_before:]]
                    played = play_out(controller)
                    if not any(getattr(f, "req_id", None) == req for f in lost):
                        complete += 1
                        assert np.array_equal(played, pcm), (i, played.size)
                    else:
                        assert played.size <= pcm.size
            stop.set()
            await pump
            assert complete >= 3
            assert controller.stats.frames_received > 0  # the server's animation came through
            controller.close()

    asyncio.run(asyncio.wait_for(main(), 60))
