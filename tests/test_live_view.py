"""The live view in a real headless Chromium, driven over the DevTools protocol.

``avatarkit-fast demo --live`` and ``avatarkit-fast serve --viewer`` run as
real processes on loopback; Chromium (Debian's ``chromium``) loads the page.
The page plays the sound through Web Audio (the autoplay policy lifted by a
flag, as a click would) and draws the face by the audio clock.  Checked: no
console error, the audio context runs, the keyframe index follows the audio
position (``floor(position * fps)``), the keyframes and samples the page got
are the ones the demo played, the screenshot shows the face, and the page
survives its server going away (says so, reconnects to a new one on the same
port and plays again).  Skips, saying so, only where no ``chromium`` is found.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")
PIL = pytest.importorskip("PIL.Image")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
         "--remote-debugging-port=0"]
BG = (236, 240, 245)  # the face canvas's background


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """One Chromium page over the DevTools protocol (a WebSocket): commands,
    and the console errors and exceptions it reports."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.errors: list[tuple[float, str]] = []
        self.disconnected_at = None  # first seen saying its server went away
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                self.errors.append((time.monotonic(), f"console.{params['type']}: {text}"))
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                self.errors.append((time.monotonic(), "exception: " + str(
                    d.get("exception", {}).get("description", d.get("text")))))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                e = params["entry"]
                self.errors.append((time.monotonic(), f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}"))

    async def send(self, method: str, **params):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, 15)
        if "error" in msg:
            raise AssertionError(f"{method}: {msg['error']}")
        return msg["result"]

    async def eval(self, expression: str):
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def state(self) -> dict:
        return await self.eval(
            "(() => { const v = window.avatarkitViewer; if (!v) return null;"
            " const o = {}; for (const k in v) if (v[k] === null || (typeof v[k] !== 'object' && typeof v[k] !== 'function'))"
            " o[k] = v[k]; o.errors = v.errors.slice(); o.statusText = document.getElementById('status')"
            ".textContent; o.counters = v.counters; return o; })()")

    async def wait_for(self, what: str, predicate, timeout: float, every: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = await self.state()
            if state is not None and state["status"] == "disconnected" and self.disconnected_at is None:
                self.disconnected_at = time.monotonic()
            if state is not None and predicate(state):
                return state
            await asyncio.sleep(every)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; page state: {state}")

    async def screenshot(self) -> "PIL.Image.Image":
        r = await self.send("Page.captureScreenshot", format="png")
        from PIL import Image

        return Image.open(io.BytesIO(base64.b64decode(r["data"]))).convert("RGB")

    async def canvas_box(self, element_id: str) -> tuple[int, int, int, int]:
        box = await self.eval(f"(() => {{ const r = document.getElementById('{element_id}')"
                              ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
        return tuple(int(round(v)) for v in box)


class Chromium:
    """A headless Chromium with its own profile; its DevTools port from
    ``DevToolsActivePort``."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="avatarkit-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])

    def new_target(self) -> dict:
        """A new tab of its own (a test never sees another's page)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    async def open_page(self) -> Page:
        from websockets.asyncio.client import connect

        target = self.new_target()
        ws = await connect(target["webSocketDebuggerUrl"], max_size=None)
        page = Page(ws)
        page.target_id = target["id"]
        for domain in ("Runtime", "Log", "Page"):
            await page.send(f"{domain}.enable")
        return page

    async def close_page(self, page: Page) -> None:
        await page.send("Page.navigate", url="about:blank")  # the page's script stops reconnecting
        await page.ws.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/close/{page.target_id}", timeout=10):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium():
    browser = Chromium()
    yield browser
    browser.close()


def start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a command of the package; the live view URL it prints."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.Popen([sys.executable, "-m", "avatarkit_fast", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("live view: "):
            url = line.split()[2]
            assert "opened" not in line  # --no-open: no browser asked for
            return proc, url
    proc.kill()
    raise AssertionError(f"no live view URL printed: {lines} {proc.stderr.read()}")


def face_pixels(img, box) -> int:
    """Pixels of the face canvas that are not its background."""
    x, y, w, h = box
    a = np.asarray(img.crop((x + 2, y + 2, x + w - 2, y + h - 2)), dtype=np.int16)
    return int((np.abs(a - np.array(BG)).sum(axis=2) > 30).sum())


def check_sync(samples: list[dict], fps: int) -> None:
    """The keyframe index is floor(position * fps) (within one frame), and the
    position advances with the wall clock."""
    playing = [s for s in samples if s["playing"] and s["frameIndex"] >= 0]
    assert len(playing) >= 10, samples[-3:]
    for s in playing:
        assert abs(s["frameIndex"] - math.floor(s["audioPosition"] * fps)) <= 1, s
    first, last = playing[0], playing[-1]
    assert last["frameIndex"] > first["frameIndex"] + fps // 2
    assert last["framesDrawn"] > first["framesDrawn"]
    rate = (last["audioPosition"] - first["audioPosition"]) / (last["t"] - first["t"])
    assert 0.8 < rate < 1.2, f"audio position advanced at {rate:.2f} times the wall clock"


async def sample_while(page: Page, proc: subprocess.Popen, seconds: float) -> list[dict]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        s = await page.state()
        s["t"] = time.monotonic()
        if s["status"] == "disconnected":
            page.disconnected_at = page.disconnected_at or s["t"]
            break
        out.append(s)
        await asyncio.sleep(0.05)
    return out


@needs_chromium
def test_demo_live_in_chromium(chromium, tmp_path):
    """demo --live: sound and face in sync, what the demo played, the face
    drawn; then the server goes away (the page says so) and a second run on
    the same port plays in the same page."""
    port = free_port()
    out1, out2 = tmp_path / "run1", tmp_path / "run2"
    cmd = ["demo", "--live", "--no-open", "--live-port", str(port), "--live-wait", "20", "--seconds", "2.5",
           "--jitter-ms", "5", "-q"]

    async def main():
        page = await chromium.open_page()
        proc, url = start([*cmd, "--out", str(out1)])
        assert url == f"http://127.0.0.1:{port}/"
        try:
            await page.send("Page.navigate", url=url)
            await page.wait_for("the conversation to play", lambda s: s["playing"] and s["frameIndex"] > 0, 20)
            state = await page.state()
            assert state["audioState"] == "running"
            assert state["connected"] and state["status"] == "connected"
            samples = await sample_while(page, proc, 1.2)
            shot = await page.screenshot()
            box = await page.canvas_box("face")
            samples += await sample_while(page, proc, 10)
            # Until the server went away the page reported no error.
            await page.wait_for("the page to see the server gone", lambda s: s["status"] == "disconnected", 20)
            errors_before = [e for t, e in page.errors if t < page.disconnected_at]
            assert proc.wait(20) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
        check_sync(samples, 25)
        shot.save(os.environ.get("AVATARKIT_LIVE_SCREENSHOT") or tmp_path / "live-view.png")
        pixels = face_pixels(shot, box)
        assert pixels > 0.15 * box[2] * box[3], f"the face canvas is nearly blank: {pixels} pixels drawn"
        # What the page got is what the demo played, keyframe for keyframe and sample for sample.
        played = np.load(out1 / "keyframes.npy")
        got = await page.eval("window.avatarkitViewer.receivedKeyframes()")
        assert len(got) == len(played)
        np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), played)
        import wave

        with wave.open(str(out1 / "played.wav")) as w:
            assert (await page.state())["samplesReceived"] == w.getnframes()
        assert not errors_before, errors_before

        # The server has gone: the page says so and keeps trying.
        state = await page.wait_for("the page to see the server gone", lambda s: s["status"] == "disconnected", 10)
        assert "went away" in state["statusText"] and "reconnecting" in state["statusText"]
        first_conv = state["conv"]
        await asyncio.sleep(1.0)  # a failed attempt or two while nothing listens

        proc, url2 = start([*cmd, "--out", str(out2)])
        try:
            assert url2 == url
            state = await page.wait_for("the page to reconnect and play the new run",
                                        lambda s: s["connected"] and s["conv"] != first_conv
                                        and s["playing"] and s["frameIndex"] > 5, 25)
            assert state["reconnects"] >= 1
            samples = await sample_while(page, proc, 1.0)
            assert proc.wait(20) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
        check_sync(samples, 25)
        # While the server was away only the connection attempts may have failed.
        others = [e for _, e in page.errors if "WebSocket connection" not in e and "ERR_CONNECTION_REFUSED" not in e]
        assert not others, others
        await chromium.close_page(page)

    asyncio.run(main())


async def speak(console: str, ingress: str, seconds: float, *, interrupt_on: asyncio.Event | None = None,
                seed: int = 3) -> tuple[str, str]:
    """One request to the motion server through the package's client: made-up
    speech sent as fast as a TTS engine makes it; (connection id, req_id).
    With ``interrupt_on`` the request is left open and interrupted once it is set."""
    from avatarkit_fast.cli.speech import synthesize_speech
    from avatarkit_fast.session import MotionConnection

    pcm = synthesize_speech(seconds, 16000, seed=seed).astype("<i2").tobytes()
    conn = await MotionConnection.from_api_key(console, ingress, api_key="k", app_id="app",
                                               avatar_id="avatar", sample_rate=16000)
    cid = await conn.start()
    step = 640 * 2
    req = None
    for i in range(0, len(pcm), step):
        req = await conn.send_audio(pcm[i:i + step], end=interrupt_on is None and i + step >= len(pcm))
    if interrupt_on is not None:
        await interrupt_on.wait()
        await conn.interrupt(req)
    await asyncio.sleep(0.3)
    await conn.close()
    return cid, req


def start_serve(port: int) -> tuple[subprocess.Popen, str, str, str]:
    proc, url = start(["serve", "--viewer", "--no-open", "--port", str(port)])
    return proc, url, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"


def stop_serve(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@needs_chromium
def test_serve_viewer_in_chromium(chromium):
    """serve --viewer: the page at /viewer/ plays a client's request (its audio
    as it came in, its keyframes as they left), stops at an interrupt, and
    survives the server's restart."""
    port = free_port()

    async def main():
        page = await chromium.open_page()
        proc, url, console, ingress = start_serve(port)
        try:
            assert url == f"http://127.0.0.1:{port}/viewer/"
            await page.send("Page.navigate", url=url)
            await page.wait_for("the page to connect", lambda s: s["connected"], 10)
            cid, req = await speak(console, ingress, 2.0)
            state = await page.wait_for("the request to play", lambda s: s["playing"] and s["frameIndex"] > 3, 10)
            assert state["conv"] == f"{cid}/{req}"
            assert state["audioState"] == "running"
            samples = await sample_while(page, proc, 0.9)
            check_sync(samples, 25)
            state = await page.wait_for("the request to end", lambda s: s["ended"] and not s["playing"], 10)
            assert state["samplesReceived"] == 32000 and state["keyframesReceived"] == 50
            assert state["counters"]["keyframes_sent"] == 50 and state["counters"]["requests"] == 1
            assert abs(state["audioPosition"] - 2.0) < 1e-9

            # An interrupt a second into an open request: the sound and the face stop there.
            go = asyncio.Event()
            speaking = asyncio.ensure_future(speak(console, ingress, 3.0, interrupt_on=go, seed=4))
            await page.wait_for("the second request to play", lambda s: s["conversations"] == 2 and s["playing"]
                                and s["audioPosition"] > 1.0, 10)
            go.set()
            state = await page.wait_for("the interrupt", lambda s: s["interrupts"] == 1 and not s["playing"], 5)
            stopped_at = state["audioPosition"]
            assert 1.0 < stopped_at < 1.6, state
            await speaking
            await asyncio.sleep(0.3)
            state = await page.state()
            assert not state["playing"] and state["audioPosition"] == stopped_at, state
            assert state["counters"]["requests_interrupted"] == 1
            assert not page.errors, page.errors

            stop_serve(proc)
            state = await page.wait_for("the page to see the server gone", lambda s: s["status"] == "disconnected", 10)
            assert "went away" in state["statusText"]
            await asyncio.sleep(0.8)
            proc, url2, console, ingress = start_serve(port)
            await page.wait_for("the page to reconnect", lambda s: s["connected"] and s["reconnects"] >= 1, 15)
            cid, req = await speak(console, ingress, 1.5, seed=5)
            state = await page.wait_for("the new server's request to play",
                                        lambda s: s["conv"] == f"{cid}/{req}" and s["playing"]
                                        and s["frameIndex"] > 3, 10)
            others = [e for _, e in page.errors
                      if "WebSocket connection" not in e and "ERR_CONNECTION_REFUSED" not in e]
            assert not others, others
        finally:
            stop_serve(proc)
        await chromium.close_page(page)

    asyncio.run(main())


# -- without a browser: the message format, and the options ------------------------


def decode(message) -> tuple[dict, bytes]:
    if isinstance(message, str):
        return json.loads(message), b""
    import struct

    (h,) = struct.unpack_from("<I", message)
    assert h % 4 == 0  # the payload is aligned for a Float32Array / Int16Array view
    return json.loads(message[4:4 + h]), bytes(message[4 + h:])


def test_viewer_messages_on_a_websocket():
    """The documented format, read by a plain WebSocket client: hello with the
    FLAME layout, begin, PCM and keyframes with their offsets, interrupt, end;
    a page that connects late gets the conversation from its begin."""
    from websockets.sync.client import connect

    from avatarkit_fast._schema import FLAME_OFFSETS
    from avatarkit_fast.cli.live.server import LiveViewer

    viewer = LiveViewer(counters=lambda: {"samples_played": 7, "name": "not a number"})
    url = viewer.start_in_thread("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b'src="viewer.js"' in r.read()
        with urllib.request.urlopen(url + "viewer.js", timeout=10) as r:
            assert b"window.avatarkitViewer" in r.read()
        ws_url = "ws" + url[4:] + "ws"
        frames = np.random.default_rng(1).standard_normal((3, 120)).astype(np.float32)
        pcm = np.arange(-640, 640, dtype=np.int16)
        with connect(ws_url) as early:
            hello, _ = decode(early.recv(5))
            assert hello == {"type": "hello", "version": 1, "title": viewer.title, "layout": FLAME_OFFSETS}
            assert viewer.wait_for_page(5)
            viewer.begin("c1", 16000, 25)
            viewer.audio("c1", 0, pcm)
            viewer.keyframes("c1", 0, frames)
            viewer.interrupt("c1", 900)
            viewer.interrupt("c1")
            viewer.end("c1")
            got = []
            while len(got) < 6:
                header, payload = decode(early.recv(5))
                if header["type"] != "counters":
                    got.append((header, payload))
                else:
                    assert header["counters"] == {"samples_played": 7} and header["source"] == "controller"
            assert got[0][0] == {"type": "begin", "conv": "c1", "sample_rate": 16000, "fps": 25}
            assert got[1][0] == {"type": "audio", "conv": "c1", "offset": 0}
            np.testing.assert_array_equal(np.frombuffer(got[1][1], "<i2"), pcm)
            assert got[2][0] == {"type": "keyframes", "conv": "c1", "first": 0, "count": 3}
            np.testing.assert_array_equal(np.frombuffer(got[2][1], "<f4").reshape(3, 120), frames)
            assert got[3][0] == {"type": "interrupt", "conv": "c1", "at": 900}
            assert got[4][0] == {"type": "interrupt", "conv": "c1"}
            assert got[5][0] == {"type": "end", "conv": "c1"}
        with connect(ws_url) as late:
            kinds = []
            while len(kinds) < 7:
                kind = decode(late.recv(5))[0]["type"]
                if kind != "counters":
                    kinds.append(kind)
            assert kinds == ["hello", "begin", "audio", "keyframes", "interrupt", "interrupt", "end"]
    finally:
        viewer.stop()
    with pytest.raises(OSError):
        connect(ws_url, open_timeout=2)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatarkit_fast", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, message", [
    (["demo", "--live-port", "9000"], "--live-port goes with --live"),
    (["demo", "--no-open"], "--no-open goes with --live"),
    (["demo", "--live-wait", "1"], "--live-wait goes with --live"),
    (["demo", "--live", "--live-port", "70000"], "70000"),
    (["serve", "--no-open"], "--no-open goes with --viewer"),
])
def test_live_options_refused(args, message, tmp_path):
    r = run_cli(*args, "--out", str(tmp_path)) if args[0] == "demo" else run_cli(*args)
    assert r.returncode == 2, r
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_demo_live_port_taken(tmp_path):
    """A port something else holds: one line, exit 2, nothing played."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run_cli("demo", "--live", "--no-open", "--live-port", str(s.getsockname()[1]), "--out", str(tmp_path))
    assert r.returncode == 2, r
    assert "cannot listen" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "report.json").exists()


def test_slow_page_is_dropped_and_catches_up(monkeypatch):
    """A page that does not read is closed (code 1013) instead of holding the
    feed up or growing without bound; on reconnecting it gets the conversation."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from avatarkit_fast.cli.live import server as live_server

    monkeypatch.setattr(live_server, "PAGE_QUEUE", 8)
    viewer = live_server.LiveViewer()
    url = viewer.start_in_thread("127.0.0.1", 0)
    ws_url = "ws" + url[4:] + "ws"
    try:
        with connect(ws_url, max_size=None) as slow:
            assert viewer.wait_for_page(5)
            viewer.begin("c", 16000, 25)
            chunk = np.zeros(64_000, np.int16)
            t0 = time.monotonic()
            for i in range(400):  # 51 MB the page never reads: far beyond the socket's buffers
                viewer.audio("c", i * len(chunk), chunk)
            assert time.monotonic() - t0 < 5  # the feed never waited for the page
            with pytest.raises(ConnectionClosed) as closed:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    slow.recv(20)
            assert closed.value.rcvd.code == 1013
        with connect(ws_url, max_size=None) as again:
            first = [decode(again.recv(5))[0]["type"] for _ in range(3)]
            assert first == ["hello", "begin", "audio"]
    finally:
        viewer.stop()
