"""SDK mode: AvatarSession against motion servers on loopback.

Two servers: a scripted one written here (the wire codec over ``websockets``; it can
refuse, stall the handshake, close with any code, or die), and the package's own
local motion server. Playback is driven by reading the controller, as an audio
device would, after the animation has arrived: every read checks the samples and
the keyframe against what was sent and what the server produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import PLAIN
from websockets.asyncio.server import serve

import avatarkit_fast
from avatarkit_fast import wire
from avatarkit_fast.controller import AvatarController
from avatarkit_fast.errors import (
    AuthenticationFailed,
    ClosedError,
    ConcurrencyLimit,
    ConnectionFailed,
    CreditsExhausted,
    HandshakeTimeout,
    ServerError,
    SessionTimeout,
    UpstreamUnavailable,
)
from avatarkit_fast.session import AvatarSession, ConnectionState, fetch_session_token

SR = 16000
from avatarkit_fast._schema import FPS  # noqa: E402
TICK = SR // 100  # 10 ms reads
CHUNK = 2 * SR // 50  # 20 ms of s16le
APP_ID = "app-test"
TOKEN = "token-good"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def speech(seconds: float, seed: int = 0) -> bytes:
    """Loud-and-quiet noise bursts: deterministic, and moves a motion model's jaw."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    envelope = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi * 3 / SR)
    return (rng.standard_normal(n) * 4000 * envelope).astype("<i2").tobytes()


class ScriptedServer:
    """A motion server on loopback speaking the driving protocol with the wire codec.

    Animation is 25 keyframes per second of audio in the real batching (50, then
    100, the rest with ``end``); keyframe k of the n-th request is ``[k, n + 1, 0...]``.
    """

    def __init__(
        self,
        *,
        confirm=True,
        close_after_confirm=None,
        late_after_interrupt=False,
        garbage=False,
        refuse_audio=None,
        stall_first=False,
        close_first_only=False,
    ):
        self.confirm = confirm
        self.close_after_confirm = close_after_confirm
        self.late_after_interrupt = late_after_interrupt
        self.garbage = garbage  # send undecodable bytes and a text frame after confirming
        self.refuse_audio = refuse_audio  # (code, message): a ServerError for each request
        self.stall_first = stall_first  # the first request gets its first batch only
        self.close_first_only = close_first_only  # close_after_confirm for the first connection only
        self.connections = []
        self.received = []  # decoded client messages, in order
        self.requests = {}  # req_id -> ordinal
        self.url = ""
        self.token = TOKEN

    async def __aenter__(self):
        self._server = await serve(self._handler, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    def kill(self):
        """Die as a killed process does: the sockets go, no close frames."""
        self._server.close(close_connections=False)
        for ws in self.connections:
            ws.transport.abort()

    def frames(self, ordinal, start, stop):
        out = np.zeros((stop - start, 120), np.float32)
        out[:, 0] = np.arange(start, stop)
        out[:, 1] = ordinal + 1
        return out

    async def _handler(self, ws):
        self.connections.append(ws)
        assert ws.request.path.startswith("/websocket?")
        if ws.request.headers.get("X-Session-Key") != TOKEN:
            await ws.close(4010, "invalid session token")
            return
        configure = wire.decode_message(await ws.recv())
        self.received.append(configure)
        if not self.confirm:
            await ws.wait_closed()
            return
        await ws.send(wire.encode_message(wire.ServerConfirmSession(connection_id="conn-1")))
        if self.close_after_confirm is not None and (len(self.connections) == 1 or not self.close_first_only):
            await ws.close(*self.close_after_confirm)
            return
        if self.garbage:
            await ws.send(b"\xff\xff\xff")
            await ws.send("not binary")
        samples, sent, stopped = {}, {}, set()
        async for data in ws:
            msg = wire.decode_message(data)
            self.received.append(msg)
            if msg.type == wire.MessageType.CLIENT_INTERRUPT:
                stopped.add(msg.req_id)
                if self.late_after_interrupt and msg.req_id in self.requests:
                    n = sent.get(msg.req_id, 0)
                    late = self.frames(self.requests[msg.req_id], n, n + 25)
                    await ws.send(wire.encode_animation(late, req_id=msg.req_id, connection_id="conn-1"))
                continue
            if msg.type != wire.MessageType.CLIENT_AUDIO_INPUT or msg.req_id in stopped:
                continue
            req = msg.req_id
            if self.refuse_audio is not None:
                if req not in self.requests:
                    self.requests[req] = len(self.requests)
                    code, text = self.refuse_audio
                    await ws.send(wire.encode_message(wire.ServerErrorMessage(req_id=req, code=code, message=text)))
                continue
            ordinal = self.requests.setdefault(req, len(self.requests))
            if self.stall_first and ordinal == 0 and sent.get(req, 0) >= 50:
                continue
            samples[req] = samples.get(req, 0) + len(msg.audio)  # bytes: chunks may split a sample
            due = samples[req] // 2 * FPS // SR
            while True:
                n = sent.get(req, 0)
                size = 50 if n == 0 else 100
                if due - n < size:
                    break
                await ws.send(wire.encode_animation(self.frames(ordinal, n, n + size), req_id=req, connection_id="conn-1"))
                sent[req] = n + size
            if msg.end:
                n = sent.get(req, 0)
                await ws.send(wire.encode_animation(self.frames(ordinal, n, due), req_id=req, connection_id="conn-1", end=True))
                sent[req] = due


class Recorder:
    """The controller, with the envelopes the session hands it recorded."""

    def __init__(self, controller):
        self.controller = controller
        self.envelopes = []  # (conversation_id, envelope)
        self.ends = 0

    def __getattr__(self, name):
        return getattr(self.controller, name)

    def yield_frames_data(self, envelopes, conversation_id):
        for e in envelopes or []:
            self.envelopes.append((conversation_id, e))
            msg = wire.decode_message(e)
            self.ends += bool(msg.end)
        return self.controller.yield_frames_data(envelopes, conversation_id)

    def keyframes(self, conversation_id):
        parts = [wire.decode_message(e).frames for c, e in self.envelopes if c == conversation_id]
        return np.concatenate(parts) if parts else np.zeros((0, 120), np.float32)


def is_idle(controller) -> bool:
    state = controller.state
    return getattr(state, "name", state) == "IDLE"


def play(controller, seconds_max: float):
    """Read 10 ms at a time until IDLE; return the samples and, per read, (s, frame)."""
    audio, frames, s = [], [], 0
    for _ in range(int(seconds_max * 100)):
        chunk = np.asarray(controller.read_audio(TICK))
        assert chunk.dtype == np.int16 and chunk.shape == (TICK,)
        audio.append(chunk.copy())
        s += TICK
        frames.append((s, np.array(controller.current_frame(), copy=True)))
        if is_idle(controller):
            break
    return np.concatenate(audio), frames


def check_in_sync(pcm: bytes, audio, frames, keyframes):
    """Every sample once and in order; after s samples, keyframe floor(s*fps/sr)."""
    expected = np.frombuffer(pcm, "<i2")
    assert len(audio) >= len(expected)
    np.testing.assert_array_equal(audio[: len(expected)], expected)
    assert not audio[len(expected):].any()
    checked = 0
    for s, frame in frames:
        k = s * FPS // SR
        if s <= len(expected) and k < len(keyframes):
            np.testing.assert_array_equal(frame, keyframes[k])
            checked += 1
    assert checked >= len(keyframes) - 2


async def until(predicate, timeout: float = 20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


async def send_pcm(session, pcm: bytes, *, end: bool, chunk: int = CHUNK):
    cid = None
    for i in range(0, len(pcm), chunk):
        last = i + chunk >= len(pcm)
        cid = await session.send(pcm[i : i + chunk], end=end and last)
    return cid


def new_session(controller, url, **kw):
    kw.setdefault("app_id", APP_ID)
    kw.setdefault("session_token", TOKEN)
    kw.setdefault("avatar_id", "avatar-1")
    return AvatarSession(controller, url, **kw)


@pytest.fixture(params=["scripted", "local"])
def server_kind(request):
    if request.param == "local":
        pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")
        pytest.importorskip("avatarkit_fast.server")
    return request.param


class LocalServer:
    """The package's motion server, in this process or (``killable``) in a child
    process that can be killed outright."""

    def __init__(self, killable: bool = False):
        self.killable = killable
        self.url = self.token = ""
        self.proc = None
        self.server = None

    async def __aenter__(self):
        if self.killable:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "avatarkit_fast.server", "--port", "0",
                stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
            urls = {}
            while len(urls) < 2:
                line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
                assert line, "the motion server exited before printing its URLs"
                key, _, value = line.strip().partition("=")
                urls[key] = value
            console, self.url = urls["console_endpoint_url"], urls["ingress_endpoint_url"]
        else:
            from avatarkit_fast.server import MotionServer

            self.server = MotionServer()
            await self.server.start("127.0.0.1", 0)
            console, self.url = self.server.console_endpoint_url, self.server.ingress_endpoint_url
        self.token = await fetch_session_token(console, "key-test")
        return self

    def kill(self):
        self.proc.kill()

    async def __aexit__(self, *exc):
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.kill()
            await self.proc.wait()
        if self.server is not None:
            await self.server.stop()


def motion_server(kind: str, **options):
    if kind == "local":
        return LocalServer(killable=options.get("killable", False))
    options.pop("killable", None)
    return ScriptedServer(**options)


# -- an utterance, an interrupt, a second utterance --------------------------------


def test_utterance_plays_whole_in_sync_then_a_second(golden, server_kind):
    pcm = golden.pcm[: 6 * 2 * SR]

    async def main():
        states = []
        async with motion_server(server_kind) as server:
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, **PLAIN))
            session = new_session(
                ctrl, server.url, session_token=server.token, on_connection_state=lambda s, e: states.append(s)
            )
            async with session:
                assert session.connection_id
                if server_kind == "scripted":
                    configure = server.received[0]
                    assert configure.sample_rate == SR and configure.audio_format == 0
                for n, piece in enumerate((pcm, speech(2.5, seed=1))):
                    cid = await send_pcm(session, piece, end=True, chunk=CHUNK + 1)  # odd byte splits
                    await until(lambda: ctrl.ends == n + 1)
                    audio, frames = play(ctrl, seconds_max=len(piece) / 2 / SR + 1)
                    keyframes = ctrl.keyframes(cid)
                    assert len(keyframes) == (len(piece) // 2) * FPS // SR
                    assert keyframes.any(axis=1).all()  # real motion, not idle frames
                    if server_kind == "scripted":
                        assert (keyframes[:, 1] == n + 1).all()
                    check_in_sync(piece, audio, frames, keyframes)
                    assert is_idle(ctrl)
                assert session.stats["envelopes_dropped"] == 0
        assert states == [
            ConnectionState.CONNECTING,
            ConnectionState.CONNECTED,
            ConnectionState.DISCONNECTED,
        ]

    run(main())


def test_interrupt_mid_utterance_leaves_nothing_stale(server_kind):
    first, second = speech(5.0, seed=2), speech(2.0, seed=3)

    async def main():
        async with motion_server(server_kind, late_after_interrupt=True) as server:
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, **PLAIN))
            async with new_session(ctrl, server.url, session_token=server.token) as session:
                old = await send_pcm(session, first[: 3 * 2 * SR], end=False)
                await until(lambda: len(ctrl.envelopes) == 1)
                old_req = session.current_req_id
                heard = np.asarray(ctrl.read_audio(SR // 2))  # half a second plays
                assert heard.any()
                assert await session.interrupt() == old_req
                assert ctrl.get_current_conversation_id() is None
                if server_kind == "scripted":
                    await until(lambda: session.stats["envelopes_dropped"] == 1)  # the late batch
                    assert any(
                        m.type == wire.MessageType.CLIENT_INTERRUPT and m.req_id == old_req for m in server.received
                    )
                else:
                    await asyncio.sleep(0.2)  # anything still in flight arrives, and is dropped
                audio, frames = play(ctrl, 0.5)
                assert not audio.any()
                assert all(not f.any() for _, f in frames)
                # The next utterance is a new request and plays alone, in sync.
                cid = await send_pcm(session, second, end=True)
                assert cid != old and session.current_req_id != old_req
                await until(lambda: ctrl.ends == 1)
                audio, frames = play(ctrl, 3.0)
                keyframes = ctrl.keyframes(cid)
                if server_kind == "scripted":
                    assert (keyframes[:, 1] == 2).all()
                assert [c for c, _ in ctrl.envelopes].count(old) == 1  # its first batch, nothing later
                check_in_sync(second, audio, frames, keyframes)

    run(main())


def test_a_new_utterance_supersedes_the_previous_one():
    first, second = speech(3.0, seed=5), speech(2.0, seed=6)

    async def main():
        async with ScriptedServer(late_after_interrupt=True, stall_first=True) as server:
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, **PLAIN))
            async with new_session(ctrl, server.url) as session:
                old = await send_pcm(session, first, end=True)
                old_req = session.current_req_id
                await until(lambda: len(ctrl.envelopes) == 1)  # the rest is still to come
                # The next utterance starts before the first has played: the controller
                # cuts the first, and the server is told to stop generating it.
                cid = await send_pcm(session, second, end=True)
                assert cid != old
                await until(lambda: session.stats["envelopes_dropped"] == 1)  # the late batch of the first
                interrupts = [m.req_id for m in server.received if m.type == wire.MessageType.CLIENT_INTERRUPT]
                assert interrupts == [old_req]
                await until(lambda: ctrl.ends == 1)
                audio, frames = play(ctrl, 3.0)
                keyframes = ctrl.keyframes(cid)
                assert (keyframes[:, 1] == 2).all()
                check_in_sync(second, audio, frames, keyframes)

    run(main())


# -- failures ---------------------------------------------------------------------


def test_a_refused_request_is_reported_and_its_audio_plays_alone():
    pcm = speech(1.0, seed=7)

    async def main():
        errors = []
        async with ScriptedServer(refuse_audio=(4001, "credits exhausted")) as server:
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, **PLAIN))
            async with new_session(ctrl, server.url, on_error=errors.append) as session:
                await send_pcm(session, pcm, end=True)
                await until(lambda: errors)
                assert type(errors[0]) is CreditsExhausted and errors[0].code == 4001
                assert str(errors[0]).startswith("motion server error for request ")
                assert session.state is ConnectionState.CONNECTED
                audio, frames = play(ctrl, 1.5)  # audio-only: it starts at once, whole
                np.testing.assert_array_equal(audio[: len(pcm) // 2], np.frombuffer(pcm, "<i2"))
                assert is_idle(ctrl) and not any(f.any() for _, f in frames)

    run(main())


def test_undecodable_messages_are_reported_and_the_session_goes_on():
    pcm = speech(2.0, seed=8)

    async def main():
        errors = []
        async with ScriptedServer(garbage=True) as server:
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, **PLAIN))
            async with new_session(ctrl, server.url, on_error=errors.append) as session:
                cid = await send_pcm(session, pcm, end=True)
                await until(lambda: ctrl.ends == 1)
                assert [type(e).__name__ for e in errors] == ["DecodeError", "ProtocolError"]
                assert session.state is ConnectionState.CONNECTED
                audio, frames = play(ctrl, 2.5)
                check_in_sync(pcm, audio, frames, ctrl.keyframes(cid))

    run(main())



@pytest.mark.parametrize("sync_mode", ["audio_independent", "strict_sync"])
def test_killed_server_fails_clearly_and_what_arrived_plays_out(server_kind, sync_mode):
    pcm = speech(3.0, seed=4)

    async def main():
        errors = []
        async with motion_server(server_kind, killable=True) as server:
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, sync_mode=sync_mode, **PLAIN))
            session = new_session(
                ctrl, server.url, session_token=server.token, on_connection_state=lambda s, e: errors.append((s, e))
            )
            await session.start()
            cid = await send_pcm(session, pcm, end=False)  # the utterance is still open
            await until(lambda: len(ctrl.envelopes) == 1)  # 2 s of animation arrived
            server.kill()
            await until(lambda: session.state is ConnectionState.FAILED)
            assert isinstance(session.error, ConnectionFailed)
            assert "lost" in str(session.error)
            assert errors[-1] == (ConnectionState.FAILED, session.error)
            with pytest.raises(ClosedError, match="FAILED"):
                await session.send(pcm[:CHUNK])
            # All 3 s of audio play, then IDLE; the first 2 s with their keyframes, then
            # the last one holds (strict_sync too: no keyframe is awaited that cannot come).
            audio, frames = play(ctrl, 4.0)
            assert is_idle(ctrl)
            keyframes = ctrl.keyframes(cid)
            assert len(keyframes) == 50
            check_in_sync(pcm, audio, frames, keyframes)
            assert all((f == keyframes[-1]).all() for s, f in frames if 50 <= s * FPS // SR and s < len(pcm) // 2)
            await session.close()
            assert session.state is ConnectionState.FAILED

    run(main())


def test_bad_token_is_an_authentication_error(server_kind):
    async def main():
        async with motion_server(server_kind) as server:
            states = []
            session = new_session(
                AvatarController(sample_rate=SR, **PLAIN), server.url, session_token="token-bad",
                on_connection_state=lambda s, e: states.append((s, e)),
            )
            with pytest.raises(AuthenticationFailed, match="invalid session token") as info:
                await session.start()
            assert info.value.code == (4010 if server_kind == "scripted" else 401)
            assert not info.value.retryable
            assert session.state is ConnectionState.FAILED and session.error is info.value
            assert states == [(ConnectionState.CONNECTING, None), (ConnectionState.FAILED, info.value)]

    run(main())


def test_query_auth_and_credentials_bound_to_an_app():
    """Against the local server: credentials as query parameters work; a token of
    another app and a bad token are refused by name, and the token is not repeated
    in the error."""
    pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")
    from avatarkit_fast.server import MotionServer

    async def main():
        async with MotionServer(api_keys={"key-a": "app-a"}) as server:
            token = await fetch_session_token(server.console_endpoint_url, "key-a")
            with pytest.raises(AuthenticationFailed, match="invalid API key"):
                await fetch_session_token(server.console_endpoint_url, "key-b")
            url = server.ingress_endpoint_url
            ctrl = AvatarController(sample_rate=SR, **PLAIN)
            session = new_session(ctrl, url, app_id="app-a", session_token=token, use_query_auth=True)
            assert "sessionKey=%2A%2A%2A" in session.url and token not in session.url and token not in repr(session)
            async with session:
                assert session.state is ConnectionState.CONNECTED
            for app_id, secret, words in (("app-b", token, "app id mismatch"), ("app-a", "wrong-token", "invalid")):
                session = new_session(ctrl, url, app_id=app_id, session_token=secret, use_query_auth=True)
                with pytest.raises(AuthenticationFailed, match=words) as info:
                    await session.start()
                assert secret not in str(info.value)
                assert session.state is ConnectionState.FAILED

    run(main())


def test_handshake_timeout_fires():
    async def main():
        async with ScriptedServer(confirm=False) as server:
            session = new_session(AvatarController(sample_rate=SR, **PLAIN), server.url, handshake_timeout=0.3)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(HandshakeTimeout, match="ServerConfirmSession"):
                await session.start()
            assert loop.time() - t0 < 2.0
            assert session.state is ConnectionState.FAILED
            assert isinstance(session.error, HandshakeTimeout)

    run(main())


@pytest.mark.parametrize(
    "code, error",
    [
        (4001, CreditsExhausted),
        (4002, SessionTimeout),
        (4003, ConcurrencyLimit),
        (4010, AuthenticationFailed),
        (4503, UpstreamUnavailable),
        (4999, ServerError),
        (1011, ConnectionFailed),
        (1001, ConnectionFailed),
        (1008, ServerError),
    ],
)
def test_close_codes_become_named_errors(code, error):
    async def main():
        async with ScriptedServer(close_after_confirm=(code, "reason text")) as server:
            session = new_session(AvatarController(sample_rate=SR, **PLAIN), server.url)
            await session.start()
            await until(lambda: session.state is ConnectionState.FAILED)
            assert type(session.error) is error
            assert session.error.code == code
            assert "reason text" in str(session.error)
            assert session.error.retryable is (error in (UpstreamUnavailable, ConnectionFailed))

    run(main())


def test_start_again_after_a_retryable_failure():
    pcm = speech(2.0, seed=9)

    async def main():
        async with ScriptedServer(close_after_confirm=(4503, "busy"), close_first_only=True) as server:
            states = []
            ctrl = Recorder(AvatarController(sample_rate=SR, fps=FPS, **PLAIN))
            session = new_session(ctrl, server.url, on_connection_state=lambda s, e: states.append(s))
            await session.start()
            await until(lambda: session.state is ConnectionState.FAILED)
            assert isinstance(session.error, UpstreamUnavailable) and session.error.retryable
            await session.start()  # the same session, connected again
            assert session.error is None
            with pytest.raises(avatarkit_fast.ProtocolError, match="already CONNECTED"):
                await session.start()
            cid = await send_pcm(session, pcm, end=True)
            await until(lambda: ctrl.ends == 1)
            audio, frames = play(ctrl, 2.5)
            check_in_sync(pcm, audio, frames, ctrl.keyframes(cid))
            await session.close()
            await session.close()  # idempotent
            assert states == [
                ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.FAILED,
                ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.DISCONNECTED,
            ]

    run(main())


def test_refused_connection_and_misuse():
    async def main():
        session = new_session(AvatarController(sample_rate=SR, **PLAIN), "ws://127.0.0.1:9")
        with pytest.raises(ClosedError, match="start"):
            await session.send(b"\0\0")
        with pytest.raises(ConnectionFailed, match="cannot connect"):
            await session.start()
        assert session.state is ConnectionState.FAILED
        with pytest.raises(ValueError, match="ingress"):
            new_session(AvatarController(sample_rate=SR, **PLAIN), "ftp://x")
        with pytest.raises(ValueError, match="session_token"):
            new_session(AvatarController(sample_rate=SR, **PLAIN), "ws://x", session_token="")

    run(main())


def test_public_names():
    assert avatarkit_fast.AvatarSession is AvatarSession
    assert avatarkit_fast.fetch_session_token is fetch_session_token


# -- the session token exchange ------------------------------------------------------


@pytest.fixture
def console():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("X-Api-Key"), body))
            if self.headers.get("X-Api-Key") == "key-good":
                status, reply = 200, {"sessionToken": "tok-123"}
            else:
                status, reply = 401, {"errors": [{"status": "401", "title": "Unauthorized", "detail": "invalid api key"}]}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/console", seen
    httpd.shutdown()
    httpd.server_close()


def test_fetch_session_token(console):
    url, seen = console
    assert run(fetch_session_token(url, "key-good", expire_at=1_900_000_000)) == "tok-123"
    assert seen[-1] == ("/v1/console/session-tokens", "key-good", {"expireAt": 1_900_000_000})
    with pytest.raises(AuthenticationFailed, match="invalid api key"):
        run(fetch_session_token(url, "key-bad"))
    assert seen[-1][2]["expireAt"] > 1_700_000_000
    with pytest.raises(ConnectionFailed):
        run(fetch_session_token("http://127.0.0.1:9", "key-good"))


def test_plain_close_by_the_server_is_disconnected_without_error():
    async def main():
        async with ScriptedServer(close_after_confirm=(1000, "bye")) as server:
            states = []
            session = new_session(
                AvatarController(sample_rate=SR, **PLAIN), server.url, on_connection_state=lambda s, e: states.append((s, e))
            )
            await session.start()
            await until(lambda: session.state is ConnectionState.DISCONNECTED)
            assert session.error is None
            assert states[-1] == (ConnectionState.DISCONNECTED, None)
            with pytest.raises(ClosedError, match="DISCONNECTED"):
                await session.send(b"\0\0")

    run(main())


# -- audio other than 16 kHz s16le bytes -----------------------------------------


def test_float32_at_44k1_and_ogg_opus_through_the_local_server():
    """The session sends the server what its controller takes: float32 at
    44.1 kHz as s16le at 44.1 kHz (the handshake says so), Ogg Opus as Ogg
    Opus (audio_format 1); each plays whole, 25 keyframes a second."""
    pytest.importorskip("av")
    from test_audio_opus import encode
    from test_audio_opus import speech as speech16

    rate = 44100
    t = np.arange(int(rate * 2.0)) / rate
    tts = (0.4 * np.sin(2 * np.pi * 220 * t) * np.clip(np.sin(2 * np.pi * 2 * t), 0, None)).astype(np.float32)
    opus = encode(speech16(16000, 3.0), 16000)

    async def main():
        async with LocalServer() as server:
            pcm_ctrl = Recorder(AvatarController(sample_rate=SR, input_sample_rate=rate))
            async with new_session(pcm_ctrl, server.url, session_token=server.token) as session:
                assert session.connection.sample_rate == rate
                for i in range(0, tts.size, 882):
                    cid1 = await session.send(tts[i : i + 882], end=i + 882 >= tts.size)
                await until(lambda: pcm_ctrl.ends == 1)
                audio1, _ = play(pcm_ctrl, seconds_max=3)
            opus_ctrl = Recorder(AvatarController(sample_rate=SR, input_format="ogg_opus"))
            async with new_session(opus_ctrl, server.url, session_token=server.token) as session:
                assert session.connection.audio_format == 1
                for i in range(0, len(opus), 500):
                    cid2 = await session.send(opus[i : i + 500], end=i + 500 >= len(opus))
                await until(lambda: opus_ctrl.ends == 1)
                audio2, _ = play(opus_ctrl, seconds_max=4)
            return pcm_ctrl.keyframes(cid1), len(audio1), opus_ctrl.keyframes(cid2), len(audio2)

    kf1, n1, kf2, n2 = run(main())
    assert n1 == 32000 and len(kf1) == 50  # 2.000 s at 44.1 kHz: 2 s played at 16 kHz
    assert n2 == 48000 and len(kf2) == 75


def test_session_input_format_must_match_the_controller():
    ctrl = AvatarController(sample_rate=SR)
    with pytest.raises(ValueError, match="differs from the controller's 'pcm_s16le'"):
        new_session(ctrl, "ws://127.0.0.1:1", input_format="ogg_opus")
