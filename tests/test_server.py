"""The local motion server against the vendor's own server SDK (``spatius``),
unchanged, on loopback; and against raw WebSocket clients that misbehave."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

spatius = pytest.importorskip("spatius")
pytest.importorskip("aiohttp")
spatius.configure_telemetry("")  # before any session: send nothing elsewhere

import websockets  # noqa: E402
from spatius.proto.generated import message_pb2  # noqa: E402

from avatarkit_fast import wire  # noqa: E402
from avatarkit_fast.server import MotionServer, synthesize  # noqa: E402
from avatarkit_fast.testing import protoref  # noqa: E402



def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def protobuf_frames(envelope: bytes) -> np.ndarray:
    """The keyframes as the ``protobuf`` package reads them (full schema)."""
    return protoref.decode_frames(envelope)[1]


class Collector:
    """transport_frames / on_error sink for one SDK session."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, bool]] = []
        self.errors: list[Exception] = []
        self.changed = asyncio.Event()

    def transport_frames(self, data: bytes, last: bool) -> None:
        self.frames.append((data, last))
        self.changed.set()

    def on_error(self, err: Exception) -> None:
        self.errors.append(err)
        self.changed.set()

    async def wait(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting for the server"
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def of(self, req_id: str) -> list[tuple[bytes, bool]]:
        return [(d, last) for d, last in self.frames if wire.decode_message(d).req_id == req_id]


def new_session(server: MotionServer, sink: Collector, **kw):
    options = dict(
        avatar_id="avatar-1", api_key="key-1", app_id="app-1",
        console_endpoint_url=server.console_endpoint_url,
        ingress_endpoint_url=server.ingress_endpoint_url,
        transport_frames=sink.transport_frames, on_error=sink.on_error,
    )
    options.update(kw)
    return spatius.new_avatar_session(**options)


async def send_pcm(session, pcm: bytes, chunk: int = 640, end: bool = True) -> str:
    req_id = None
    for i in range(0, len(pcm), chunk):
        last = end and i + chunk >= len(pcm)
        req_id = await session.send_audio(pcm[i : i + chunk], end=last)
    return req_id


def test_sdk_recording_batches_and_both_decoders(recording):
    async def scenario():
        async with MotionServer() as server:
            sink = Collector()
            async with new_session(server, sink) as session:
                req_id = await send_pcm(session, recording.pcm)
                await sink.wait(lambda: sink.frames and sink.frames[-1][1])
            return server, req_id, sink

    server, req_id, sink = run(scenario())
    assert not sink.errors
    counts, ends = [], []
    frames = []
    for data, last in sink.frames:
        ours = wire.decode_message(data)
        assert ours.type == wire.MessageType.SERVER_RESPONSE_ANIMATION
        assert ours.req_id == req_id and ours.end == last
        theirs = protobuf_frames(data)
        assert np.array_equal(ours.frames, theirs)
        sdk = message_pb2.Message()
        sdk.ParseFromString(data)  # the SDK's own classes read it too
        assert sdk.server_response_animation.req_id == req_id
        counts.append(len(ours.frames))
        ends.append(last)
        frames.append(ours.frames)
    # The real service's batching for this very recording: 50, 100 x4, 57.
    assert counts == [50, 100, 100, 100, 100, 57]
    assert ends == [False] * 5 + [True]
    samples = len(recording.pcm) // 2
    assert sum(counts) == samples * 25 // recording.sample_rate
    # Deterministic: the same as the offline synth of the whole utterance.
    assert np.array_equal(np.concatenate(frames), synthesize(recording.pcm, recording.sample_rate))
    assert server.stats.envelopes_sent == 6 and server.stats.keyframes_sent == 507


def test_batches_leave_as_soon_as_their_audio_arrived(golden):
    """The first envelope arrives after 2 s of audio, before the request ends."""

    async def scenario():
        async with MotionServer() as server:
            sink = Collector()
            async with new_session(server, sink) as session:
                await send_pcm(session, golden.pcm[: 2 * 32000], end=False)
                await sink.wait(lambda: len(sink.frames) == 1)
                await send_pcm(session, golden.pcm[2 * 32000 : 6 * 32000 + 100], end=False)
                await sink.wait(lambda: len(sink.frames) == 2)
                req_id = await session.send_audio(b"", end=True)
                await sink.wait(lambda: sink.frames[-1][1])
            return req_id, sink

    req_id, sink = run(scenario())
    counts = [len(wire.decode_message(d).frames) for d, _ in sink.frames]
    assert counts == [50, 100, 0]
    assert [last for _, last in sink.frames] == [False, False, True]


def test_second_request_and_interrupt_on_one_session(golden):
    async def scenario():
        async with MotionServer(speed=4.0) as server:
            sink = Collector()
            async with new_session(server, sink, use_query_auth=True) as session:
                # Request 1: 21.9 s, paced at 4x real time: interrupt it once its
                # first batch is in.
                first = await send_pcm(session, golden.pcm * 3)
                await sink.wait(lambda: len(sink.of(first)) >= 1)
                assert await session.interrupt() == first
                # Request 2 on the same session: 3 s, runs to its end.
                second = await send_pcm(session, golden.pcm[: 3 * 32000])
                await sink.wait(lambda: any(last for _, last in sink.of(second)))
                await asyncio.sleep(0.3)  # anything of request 1 would show up by now
            return server, first, second, sink

    server, first, second, sink = run(scenario())
    assert first != second
    assert not sink.errors
    one = sink.of(first)
    assert 1 <= len(one) < 6 and not any(last for _, last in one)
    two = sink.of(second)
    assert [len(wire.decode_message(d).frames) for d, _ in two] == [50, 25]
    assert server.stats.requests == 2 and server.stats.requests_interrupted == 1


def test_session_token_errors_have_the_sdk_shape():
    async def scenario():
        async with MotionServer(api_keys={"good-key": "app-1"}) as server:
            sink = Collector()
            with pytest.raises(spatius.SessionTokenError) as bad_key:
                await new_session(server, sink, api_key="wrong-key").init()
            # A good key but the wrong app id: refused at the WebSocket upgrade.
            session = new_session(server, sink, api_key="good-key", app_id="other-app")
            await session.init()
            with pytest.raises(spatius.AvatarSDKError) as mismatch:
                await session.start()
            # A made-up token is refused too.
            session = new_session(server, sink, api_key="good-key")
            await session.init()
            session._session_token = "not-a-token"
            with pytest.raises(spatius.AvatarSDKError) as bad_token:
                await session.start()
            # And the server still serves a proper session afterwards.
            async with new_session(server, sink, api_key="good-key") as ok:
                await send_pcm(ok, b"\x00\x10" * 16000)
                await sink.wait(lambda: sink.frames and sink.frames[-1][1])
            return bad_key.value, mismatch.value, bad_token.value, server

    bad_key, mismatch, bad_token, server = run(scenario())
    assert bad_key.http_status == 401 and "invalid API key" in str(bad_key.message)
    assert mismatch.phase == "websocket_connect" and mismatch.http_status == 400
    assert mismatch.code == spatius.AvatarSDKErrorCode.appIDMismatch
    assert bad_token.http_status == 401
    assert bad_token.code == spatius.AvatarSDKErrorCode.sessionTokenInvalid
    assert server.stats.tokens_refused == 1 and server.stats.connections_refused == 2


def test_handshake_refusals_reach_the_sdk_as_classified_errors():
    async def scenario():
        async with MotionServer() as server:
            sink = Collector()
            odd_rate = new_session(server, sink, sample_rate=12345)
            await odd_rate.init()
            with pytest.raises(spatius.AvatarSDKError) as rate:
                await odd_rate.start()
            return rate.value

    rate = run(scenario())
    assert rate.phase == "websocket_handshake"
    assert rate.code == spatius.AvatarSDKErrorCode.unsupportedSampleRate


def test_an_unknown_audio_format_is_refused_at_the_handshake():
    async def scenario():
        async with MotionServer() as server:
            async with websockets.connect(
                f"{server.ingress_endpoint_url}/websocket?id=avatar-1&appId=app-1"
                f"&sessionKey={await _token(server)}"
            ) as ws:
                await ws.send(
                    wire.encode_message(wire.ClientConfigureSession(sample_rate=16000, audio_format=2))
                )
                return wire.decode_message(await ws.recv())

    reply = run(scenario())
    assert reply.code == 400
    assert reply.message == "unsupported audio format 2; supported: 0 (PCM_S16LE), 1 (OGG_OPUS)"


def test_sdk_with_ogg_opus_gets_keyframes_for_the_whole_utterance():
    pytest.importorskip("av")
    from test_audio_opus import encode, speech

    seconds = 6.2
    data = encode(speech(16000, seconds), 16000)

    async def scenario():
        async with MotionServer() as server:
            sink = Collector()
            async with new_session(server, sink, audio_format=spatius.AudioFormat.OGG_OPUS) as session:
                req_id = None
                for i in range(0, len(data), 700):  # chunks that cut pages anywhere
                    req_id = await session.send_audio(data[i : i + 700], end=i + 700 >= len(data))
                await sink.wait(lambda: sink.frames and sink.frames[-1][1])
                # A malformed stream: a 400 naming the request, the session goes on.
                bad = await session.send_audio(b"OggS" + bytes(60), end=True)
                await sink.wait(lambda: sink.errors)
            return req_id, bad, sink

    req_id, bad, sink = run(scenario())
    frames = sink.of(req_id)
    counts = [wire.count_keyframes(d) for d, _ in frames]
    assert sum(counts) == int(seconds * 16000) * 25 // 16000 == 155  # 25 per second of audio
    assert counts[0] == 50 and frames[-1][1]
    assert len(sink.errors) == 1 and getattr(sink.errors[0], "req_id", None) == bad
    assert "Ogg" in str(sink.errors[0])


async def _raw_connect(server: MotionServer, token: str):
    url = f"{server.ingress_endpoint_url}/websocket?id=avatar-1&appId=app-1&sessionKey={token}"
    return await websockets.connect(url)


async def _token(server: MotionServer) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.console_endpoint_url}/session-tokens",
            json={"expireAt": int(time.time()) + 60},
            headers={"X-Api-Key": "k"},
        ) as response:
            assert response.status == 200
            return (await response.json())["sessionToken"]


def test_garbage_frames_get_protocol_errors_and_others_keep_being_served():
    configure = wire.encode_message(wire.ClientConfigureSession(sample_rate=16000))

    async def expect_error_then_close(ws) -> tuple[wire.ServerErrorMessage, int]:
        err = wire.decode_message(await ws.recv())
        assert isinstance(err, wire.ServerErrorMessage)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await ws.recv()
        return err, closed.value.rcvd.code

    async def scenario():
        async with MotionServer() as server:
            token = await _token(server)
            sink = Collector()
            async with new_session(server, sink) as bystander:
                results = {}
                # 1. Garbage instead of the handshake.
                ws = await _raw_connect(server, token)
                await ws.send(b"\xff\xff\xff")
                results["garbage handshake"] = await expect_error_then_close(ws)
                # 2. Audio instead of the handshake.
                ws = await _raw_connect(server, token)
                await ws.send(wire.encode_message(wire.ClientAudioInput(req_id="r", audio=b"\0\0")))
                results["audio first"] = await expect_error_then_close(ws)
                # 3. Text after a good handshake.
                ws = await _raw_connect(server, token)
                await ws.send(configure)
                assert isinstance(wire.decode_message(await ws.recv()), wire.ServerConfirmSession)
                await ws.send("hello")
                results["text"] = await expect_error_then_close(ws)
                # 4. Garbage after a good handshake.
                ws = await _raw_connect(server, token)
                await ws.send(configure)
                await ws.recv()
                await ws.send(b"\x0a\xff")
                results["garbage"] = await expect_error_then_close(ws)
                # 5. A wrong-but-valid message: an error, and the session goes on.
                ws = await _raw_connect(server, token)
                await ws.send(configure)
                await ws.recv()
                await ws.send(configure)
                again = wire.decode_message(await ws.recv())
                await ws.send(wire.encode_message(wire.ClientAudioInput(req_id="r1", end=True, audio=b"\1\0" * 800)))
                tail = wire.decode_message(await ws.recv())
                await ws.close()
                # The bystander session was never disturbed.
                await send_pcm(bystander, b"\x00\x08" * 32000)
                await sink.wait(lambda: sink.frames and sink.frames[-1][1])
            return results, again, tail, sink

    results, again, tail, sink = run(scenario())
    for name, (err, close_code) in results.items():
        assert err.code == 400 and err.message, name
        assert close_code == 1002, name
    assert "expected ClientConfigureSession" in results["audio first"][0].message
    assert isinstance(again, wire.ServerErrorMessage) and "already configured" in again.message
    assert isinstance(tail, wire.AnimationMessage) and tail.req_id == "r1" and tail.end
    assert len(tail.frames) == 1
    assert not sink.errors and [len(wire.decode_message(d).frames) for d, _ in sink.frames] == [50]


def test_cli_subprocess_serves_the_sdk(tmp_path):
    env = dict(os.environ)
    # The package the tests import (the installed one), never the source tree.
    env["PYTHONPATH"] = str(Path(wire.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit_fast.server", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        console = proc.stdout.readline().strip()
        ingress = proc.stdout.readline().strip()
        assert re.fullmatch(r"console_endpoint_url=http://127\.0\.0\.1:\d+", console), console
        assert re.fullmatch(r"ingress_endpoint_url=ws://127\.0\.0\.1:\d+", ingress), ingress
        console_url = console.split("=", 1)[1]
        ingress_url = ingress.split("=", 1)[1]

        async def scenario():
            sink = Collector()
            session = spatius.new_avatar_session(
                avatar_id="a", api_key="k", app_id="app",
                console_endpoint_url=console_url, ingress_endpoint_url=ingress_url,
                transport_frames=sink.transport_frames, on_error=sink.on_error,
            )
            async with session:
                await send_pcm(session, b"\x00\x20" * 16000 * 3)
                await sink.wait(lambda: sink.frames and sink.frames[-1][1])
            return sink

        sink = run(scenario())
        assert [len(wire.decode_message(d).frames) for d, _ in sink.frames] == [50, 25]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode in (0, -15)


def test_expired_token_unknown_avatar_and_limits():
    async def scenario():
        async with MotionServer(avatars={"avatar-1"}, max_sessions=1, max_session_seconds=1.0) as server:
            sink = Collector()
            # A token that expires while unused.
            soon = datetime.now(timezone.utc) + timedelta(seconds=1)
            late = new_session(server, sink, expire_at=soon)
            await late.init()
            # An expireAt in the past is refused at once.
            with pytest.raises(spatius.SessionTokenError) as past:
                await new_session(server, sink, expire_at=datetime.now(timezone.utc) - timedelta(seconds=5)).init()
            unknown = new_session(server, sink, avatar_id="nobody")
            await unknown.init()
            with pytest.raises(spatius.AvatarSDKError) as not_found:
                await unknown.start()
            # One session at a time; it ends after its maximum duration.
            closed: list[int] = []
            async with new_session(server, sink) as first:
                second = new_session(server, sink)
                await second.init()
                with pytest.raises(spatius.AvatarSDKError) as busy:
                    await second.start()
                await sink.wait(lambda: any(getattr(e, "close_code", None) for e in sink.errors), timeout=5)
                closed = [e.close_code for e in sink.errors if getattr(e, "close_code", None)]
            await asyncio.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.1)
            with pytest.raises(spatius.AvatarSDKError) as expired:
                await late.start()
            return past.value, not_found.value, busy.value, closed, expired.value

    past, not_found, busy, closed, expired = run(scenario())
    assert past.http_status == 400 and "future" in past.message
    assert not_found.http_status == 404 and not_found.code == spatius.AvatarSDKErrorCode.avatarNotFound
    assert busy.phase == "websocket_handshake" and busy.server_code == "4003"
    assert closed == [4002]
    assert expired.http_status == 401 and expired.code == spatius.AvatarSDKErrorCode.sessionTokenExpired


_AVATARKIT_CLIENT = r"""
import asyncio, json, sys
from datetime import datetime, timedelta, timezone
import avatarkit

console, ingress, pcm_path = sys.argv[1:4]
pcm = open(pcm_path, "rb").read()

async def main():
    results = []
    for query_auth in (False, True):
        frames, errors, done = [], [], asyncio.Event()
        def transport_frames(data, last):
            frames.append((data.hex(), last))
            if last:
                done.set()
        session = avatarkit.new_avatar_session(
            avatar_id="avatar-1", api_key="key-1", app_id="app-1", use_query_auth=query_auth,
            expire_at=datetime.now(timezone.utc) + timedelta(hours=1),
            console_endpoint_url=console, ingress_endpoint_url=ingress,
            transport_frames=transport_frames, on_error=lambda e: errors.append(str(e)),
        )
        await session.init()
        await session.start()
        for i in range(0, len(pcm), 640):
            await session.send_audio(pcm[i:i + 640], end=i + 640 >= len(pcm))
        await asyncio.wait_for(done.wait(), 20)
        await session.close()
        results.append({"frames": frames, "errors": errors})
    print(json.dumps(results))

asyncio.run(main())
"""


def test_older_sdk_name_avatarkit_works_unchanged(recording, tmp_path):
    """The SDK's earlier release under the name ``avatarkit`` (0.1.x): the same
    protocol.  It registers the same ``message.proto`` as ``spatius``, so the two
    cannot be imported into one process: it runs in its own."""
    import importlib.util

    if importlib.util.find_spec("avatarkit") is None:
        pytest.skip("the avatarkit package (the SDK's earlier name) is not installed")
    pcm_path = tmp_path / "utterance.pcm"
    pcm_path.write_bytes(recording.pcm)

    async def scenario():
        async with MotionServer() as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _AVATARKIT_CLIENT,
                server.console_endpoint_url, server.ingress_endpoint_url, str(pcm_path),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return json.loads(out)

    for result in run(scenario()):
        assert not result["errors"]
        envelopes = [(bytes.fromhex(d), last) for d, last in result["frames"]]
        assert [len(wire.decode_message(d).frames) for d, _ in envelopes] == [50, 100, 100, 100, 100, 57]
        assert [last for _, last in envelopes] == [False] * 5 + [True]


def test_a_failed_request_reaches_the_sdk_with_its_req_id_and_relays_as_audio_only():
    from avatarkit_fast.relay import AudioOnly, RelaySender, decode_frame

    async def scenario():
        async with MotionServer(max_request_seconds=1.0) as server:
            sink = Collector()
            relayed: list[bytes] = []
            sender = RelaySender(relayed.append)

            def on_error(err):
                sink.on_error(err)
                sender.on_error(err)

            async with new_session(server, sink, on_error=on_error) as session:
                req_id = await send_pcm(session, b"\x00\x10" * 16000 * 2)  # 2 s > the 1 s cap
                await sink.wait(lambda: sink.errors)
                # The session goes on serving the next request.
                ok = await send_pcm(session, b"\x00\x10" * 8000)
                await sink.wait(lambda: any(last for _, last in sink.of(ok)))
            return req_id, sink, relayed

    req_id, sink, relayed = run(scenario())
    assert len(sink.errors) == 1 and sink.errors[0].req_id == req_id
    assert "exceeds" in sink.errors[0].message
    assert [decode_frame(f) for f in relayed] == [AudioOnly(req_id, 0)]
    assert not sink.of(req_id)
