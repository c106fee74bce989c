"""MotionConnection on its own, against the local motion server on loopback:
several utterances in a row, interrupts, close codes as named errors, state
events, refused credentials, and the lifecycle."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")

from avatarkit_fast import MotionConnection, wire  # noqa: E402
from avatarkit_fast.errors import (  # noqa: E402
    AuthenticationFailed,
    ClosedError,
    ConcurrencyLimit,
    ConnectionFailed,
    ProtocolError,
    ServerError,
    SessionTimeout,
)
from avatarkit_fast.relay import AnimationFrame, RelaySender, decode_frame  # noqa: E402
from avatarkit_fast.server import MotionServer  # noqa: E402
from avatarkit_fast.session import ConnectionState, fetch_session_token, new_req_id  # noqa: E402

RATE = 16000
S = ConnectionState


def speech(seconds: float, seed: int = 0) -> bytes:
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


def chunks(pcm: bytes, ms: int = 100):
    step = RATE * 2 * ms // 1000
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


class Recorder:
    """The three callbacks, recorded."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[bytes, str, bool]] = []
        self.states: list[tuple[ConnectionState, object]] = []
        self.errors: list[Exception] = []
        self.ended: dict[str, asyncio.Event] = {}

    def on_envelope(self, envelope: bytes, req_id: str, end: bool) -> None:
        self.envelopes.append((envelope, req_id, end))
        if end:
            self.ended.setdefault(req_id, asyncio.Event()).set()

    def on_state(self, state, error) -> None:
        self.states.append((state, error))

    def on_error(self, error) -> None:
        self.errors.append(error)

    def kwargs(self) -> dict:
        return {"on_envelope": self.on_envelope, "on_state": self.on_state, "on_error": self.on_error}

    async def wait_end(self, req_id: str, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ended.setdefault(req_id, asyncio.Event()).wait(), timeout)

    def of(self, req_id: str) -> list[tuple[bytes, str, bool]]:
        return [e for e in self.envelopes if e[1] == req_id]


async def connection(server: MotionServer, rec: Recorder, **kw) -> MotionConnection:
    token = await fetch_session_token(server.console_endpoint_url, "key")
    return MotionConnection(server.ingress_endpoint_url, app_id="app", session_token=token,
                            avatar_id="avatar", sample_rate=RATE, **rec.kwargs(), **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_several_utterances_in_a_row_each_get_their_whole_animation():
    async def main():
        rec = Recorder()
        async with MotionServer() as server:
            conn = await connection(server, rec)
            async with conn:
                assert conn.state is S.CONNECTED and conn.connection_id
                lengths = [2.2, 0.5, 4.4]
                req_ids = []
                for i, seconds in enumerate(lengths):
                    pieces = chunks(speech(seconds, i))
                    first = await conn.send_audio(pieces[0])
                    assert conn.open_req_id == first and conn.current_req_id == first
                    for piece in pieces[1:-1]:
                        assert await conn.send_audio(piece) == first  # the open request goes on
                    assert await conn.send_audio(pieces[-1], end=True) == first
                    assert conn.open_req_id is None
                    await rec.wait_end(first)
                    assert conn.current_req_id is None  # its animation ended
                    req_ids.append(first)
            assert len(set(req_ids)) == 3
            for req_id, seconds in zip(req_ids, lengths):
                mine = rec.of(req_id)
                # Every envelope as the server sent it, its header matching the callback's.
                frames = 0
                for envelope, rid, end in mine:
                    msg = wire.decode_animation(envelope)
                    assert (msg.req_id, msg.end) == (rid, end)
                    frames += len(msg.frames)
                assert frames == round(seconds * 25)
                assert [end for _, _, end in mine] == [False] * (len(mine) - 1) + [True]
            assert conn.stats["requests"] == 3
            assert conn.stats["envelopes_received"] == len(rec.envelopes)
            assert conn.stats["audio_bytes_sent"] == sum(len(speech(s)) for s in lengths)
        assert [s for s, _ in rec.states] == [S.CONNECTING, S.CONNECTED, S.DISCONNECTED]
        assert rec.errors == []

    run(main())


def test_interrupt_stops_the_request_and_the_next_utterance_is_a_new_one():
    async def main():
        rec = Recorder()
        # Paced at 4x real time: 10 s of audio is 50 keyframes at 0.5 s, then 100 at 1.5 s and 2.5 s.
        async with MotionServer(speed=4.0) as server:
            async with await connection(server, rec) as conn:
                req = await conn.send_audio(speech(10.0), end=True)
                while not rec.of(req):
                    await asyncio.sleep(0.01)
                assert await conn.interrupt() == req
                assert conn.current_req_id is None
                assert await conn.interrupt() is None  # nothing left to stop
                await asyncio.sleep(2.5)  # long past when the next two batches were due
                mine = rec.of(req)
                assert len(mine) == 1 and not mine[0][2]
                assert server.stats.requests_interrupted == 1
                # Interrupt mid-audio: the open request is closed here too.
                open_req = await conn.send_audio(speech(0.3))
                await conn.interrupt()
                assert conn.open_req_id is None
                after = await conn.send_audio(speech(0.4), end=True)
                assert after not in (req, open_req)
                await rec.wait_end(after)
                assert sum(len(wire.decode_animation(e).frames) for e, _, _ in rec.of(after)) == 10
                assert rec.of(open_req) == []
        assert rec.errors == []

    run(main())


def test_a_chosen_req_id_is_used_and_envelopes_cannot_precede_it():
    async def main():
        rec = Recorder()
        async with MotionServer() as server:
            async with await connection(server, rec) as conn:
                chosen = new_req_id()
                assert await conn.send_audio(speech(0.2), True, req_id=chosen) == chosen
                await rec.wait_end(chosen)
                with pytest.raises(TypeError, match="req_id"):
                    await conn.send_audio(b"\0\0", req_id="")

    run(main())


def test_a_refused_token_is_authentication_failed_and_the_state_failed():
    async def main():
        rec = Recorder()
        async with MotionServer() as server:
            conn = MotionConnection(server.ingress_endpoint_url, app_id="app", session_token="not-a-token",
                                    avatar_id="avatar", sample_rate=RATE, **rec.kwargs())
            with pytest.raises(AuthenticationFailed, match="invalid session token"):
                await conn.start()
            assert conn.state is S.FAILED and isinstance(conn.error, AuthenticationFailed)
            assert [s for s, _ in rec.states] == [S.CONNECTING, S.FAILED]
            assert rec.states[-1][1] is conn.error
            with pytest.raises(ClosedError, match="FAILED"):
                await conn.send_audio(speech(0.1))

    run(main())


def test_from_api_key_fetches_a_token_and_a_refused_key_is_named():
    async def main():
        rec = Recorder()
        async with MotionServer(api_keys={"good": "app"}) as server:
            with pytest.raises(AuthenticationFailed, match="invalid API key"):
                await MotionConnection.from_api_key(
                    server.console_endpoint_url, server.ingress_endpoint_url,
                    api_key="bad", app_id="app", avatar_id="a", sample_rate=RATE)
            conn = await MotionConnection.from_api_key(
                server.console_endpoint_url, server.ingress_endpoint_url,
                api_key="good", app_id="app", avatar_id="a", sample_rate=RATE, **rec.kwargs())
            assert conn.state is S.DISCONNECTED  # not started by the factory
            async with conn:
                req = await conn.send_audio(speech(0.2), end=True)
                await rec.wait_end(req)
            other = await MotionConnection.from_api_key(
                server.console_endpoint_url, server.ingress_endpoint_url,
                api_key="good", app_id="another-app", avatar_id="a", sample_rate=RATE)
            with pytest.raises(AuthenticationFailed, match="app id mismatch"):
                await other.start()

    run(main())


def test_close_codes_become_named_errors():
    async def main():
        # 4002: the session time limit.  The ServerError envelope goes to on_error,
        # the close code fails the connection with the same class.
        rec = Recorder()
        async with MotionServer(max_session_seconds=0.3) as server:
            conn = await connection(server, rec)
            await conn.start()
            while conn.state is S.CONNECTED:
                await asyncio.sleep(0.02)
            assert conn.state is S.FAILED and isinstance(conn.error, SessionTimeout)
            assert conn.error.code == 4002
            assert any(isinstance(e, SessionTimeout) and e.req_id is None for e in rec.errors)
            assert [s for s, _ in rec.states] == [S.CONNECTING, S.CONNECTED, S.FAILED]
            with pytest.raises(ClosedError, match="FAILED"):
                await conn.send_audio(speech(0.1))
            await conn.close()
            assert conn.state is S.FAILED  # closing keeps the reason

        # 4003: too many sessions, refused in the handshake's place.
        async with MotionServer(max_sessions=1) as server:
            first = await connection(server, Recorder())
            await first.start()
            rec = Recorder()
            second = await connection(server, rec)
            with pytest.raises(ConcurrencyLimit) as info:
                await second.start()
            assert info.value.code == 4003 and second.state is S.FAILED
            await first.close()
            await second.start()  # a FAILED connection may start again
            assert second.state is S.CONNECTED
            await second.close()

        # 1001: the server shuts down: transient, ConnectionFailed (retryable).
        rec = Recorder()
        server = MotionServer()
        await server.start("127.0.0.1", 0)
        conn = await connection(server, rec)
        await conn.start()
        await server.stop()
        for _ in range(200):
            if conn.state is not S.CONNECTED:
                break
            await asyncio.sleep(0.02)
        assert conn.state is S.FAILED and isinstance(conn.error, ConnectionFailed)
        assert conn.error.code == 1001 and conn.error.retryable
        await conn.close()

    run(main())


def test_a_refused_configuration_is_the_servers_error():
    async def main():
        async with MotionServer() as server:
            token = await fetch_session_token(server.console_endpoint_url, "key")
            conn = MotionConnection(server.ingress_endpoint_url, app_id="app", session_token=token,
                                    avatar_id="avatar", sample_rate=11025)
            with pytest.raises(ServerError, match="unsupported sample rate"):
                await conn.start()
            assert conn.state is S.FAILED

    run(main())


def test_a_server_error_for_a_request_carries_its_req_id():
    async def main():
        rec = Recorder()
        async with MotionServer(max_request_seconds=0.5) as server:
            async with await connection(server, rec) as conn:
                req = await conn.send_audio(speech(1.0))
                for _ in range(200):
                    if rec.errors:
                        break
                    await asyncio.sleep(0.01)
                (error,) = rec.errors
                assert isinstance(error, ServerError) and error.code == 413
                assert error.req_id == req
                # The relay sender turns it into an audio-only frame for the client.
                frames: list[bytes] = []
                sender = RelaySender(frames.append)
                sender.on_error(error)
                assert decode_frame(frames[0]).req_id == req
                assert conn.state is S.CONNECTED  # the connection goes on

    run(main())


def test_lifecycle_start_twice_send_before_start_restart_after_close():
    async def main():
        rec = Recorder()
        async with MotionServer() as server:
            conn = await connection(server, rec)
            with pytest.raises(ClosedError, match="DISCONNECTED"):
                await conn.send_audio(speech(0.1))
            assert await conn.interrupt() is None  # nothing to stop: no error
            first_id = await conn.start()
            with pytest.raises(ProtocolError, match="already CONNECTED"):
                await conn.start()
            await conn.close()
            await conn.close()  # idempotent
            second_id = await conn.start()
            assert second_id != first_id
            req = await conn.send_audio(speech(0.2), end=True)
            await rec.wait_end(req)
            await conn.close()
        assert [s for s, _ in rec.states] == [S.CONNECTING, S.CONNECTED, S.DISCONNECTED] * 2

    run(main())


def test_envelopes_relay_through_a_sender_by_header():
    """The backend's use: every envelope into RelaySender.transport_frames, unchanged."""

    async def main():
        frames: list[bytes] = []
        sender = RelaySender(frames.append)
        rec = Recorder()
        async with MotionServer() as server:
            conn = await connection(server, rec)
            conn.on_envelope = lambda env, req_id, end: (rec.on_envelope(env, req_id, end),
                                                         sender.transport_frames(env, end))
            async with conn:
                req = await conn.send_audio(speech(2.4), end=True)
                sender.audio(req, b"", True)
                await rec.wait_end(req)
        relayed = [decode_frame(f) for f in frames]
        animation = [f for f in relayed if isinstance(f, AnimationFrame)]
        assert [f.envelopes[0] for f in animation] == [e for e, _, _ in rec.of(req)]
        assert [f.seq for f in relayed] == list(range(len(relayed)))

    run(main())


def test_bad_arguments_are_refused_before_anything_starts():
    for kw, word in [({"sample_rate": 0}, "sample_rate"), ({"sample_rate": 16000.0}, "sample_rate"),
                     ({"handshake_timeout": float("nan")}, "handshake_timeout"),
                     ({"session_token": ""}, "session_token"), ({"avatar_id": ""}, "avatar_id")]:
        args = {"app_id": "app", "session_token": "t", "avatar_id": "a", "sample_rate": RATE, **kw}
        with pytest.raises(ValueError, match=word):
            MotionConnection("ws://127.0.0.1:1", **args)
    with pytest.raises(ValueError, match="ingress"):
        MotionConnection("ftp://x", app_id="a", session_token="t", avatar_id="a", sample_rate=RATE)
