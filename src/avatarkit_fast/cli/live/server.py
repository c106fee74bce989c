"""The live view's server side: aiohttp routes for the page and its WebSocket,
and a thread-safe feed of conversations into it.

Messages, server to page, on ``ws`` (the page sends nothing but pings):

- text, one JSON object each:

  - ``{"type": "hello", "version": 1, "title": str, "layout": {group: offset}}``:
    first, on every connection (``layout``: the FLAME groups' offsets in a keyframe);
  - ``{"type": "begin", "conv": str, "sample_rate": int, "fps": int}``: a
    conversation starts (the page stops whatever it played before);
  - ``{"type": "end", "conv": str}``: no more audio will come for it;
  - ``{"type": "interrupt", "conv": str, "at": int}``: cut at sample ``at``
    (what is scheduled after it is dropped); without ``at``, at the sample the
    page is playing (the sound and the face stop at once);
  - ``{"type": "counters", "source": str, "counters": {name: number}}``.

- binary: a 4-byte little-endian header length ``h``, ``h`` bytes of JSON
  header (padded with spaces to a multiple of 4, so the payload is aligned),
  then the payload:

  - header ``{"type": "audio", "conv", "offset"}``: int16 little-endian mono
    PCM, the conversation's samples from ``offset`` on;
  - header ``{"type": "keyframes", "conv", "first", "count"}``: ``count`` float32
    little-endian keyframes of 120 values (the FLAME layout of
    :mod:`avatarkit_fast._schema`), the conversation's keyframes from index ``first``.

A page that connects (or reconnects) while a conversation is on gets it from
its ``begin``, so it is never shown half a stream without its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import struct
import sys
import threading
import time
from importlib import resources
from typing import Any, Callable, Optional

import numpy as np
from aiohttp import WSMsgType, web

from ..._schema import FLAME_OFFSETS, KEYFRAME_FLOATS

__all__ = [
    "ControllerTap",
    "LiveViewer",
    "MotionObserver",
    "PROTOCOL_VERSION",
    "encode_binary",
    "open_browser",
]

#: Version of the message format above (the ``hello`` message carries it).
PROTOCOL_VERSION = 1
#: Messages queued for one page before it is dropped as too slow (it reconnects).
PAGE_QUEUE = 20_000
#: Seconds of a conversation kept for pages that connect late (then the oldest is cut).
HISTORY_SECONDS = 600.0
#: How often the counters are sent (seconds).
COUNTERS_EVERY = 0.25

_PAGE_FILES = {"index.html": "text/html", "viewer.js": "text/javascript"}


def encode_binary(header: dict, payload: bytes) -> bytes:
    """One binary message: header length (u32 LE), JSON header padded to 4 bytes, payload."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 4)
    return struct.pack("<I", len(raw)) + raw + payload


def _page_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("page", name).read_bytes()


class LiveViewer:
    """Serves the live page and streams conversations to every page connected.

    The feed methods (:meth:`begin`, :meth:`audio`, :meth:`keyframes`,
    :meth:`end`, :meth:`interrupt`) may be called from any thread, once the
    viewer runs (:meth:`start` on an event loop, or :meth:`start_in_thread`);
    before that, and after :meth:`stop`, they do nothing.  They never block:
    a page that cannot keep up is disconnected and catches up on reconnect.
    ``counters`` is called on the viewer's loop every ``COUNTERS_EVERY`` seconds
    and its dict sent to the pages.
    """

    def __init__(self, *, title: str = "avatarkit-fast live view",
                 counters: Optional[Callable[[], dict]] = None, counters_source: str = "controller") -> None:
        self.title = title
        self.counters_fn = counters
        self.counters_source = counters_source
        self.url = ""
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._pages: dict[web.WebSocketResponse, asyncio.Queue] = {}
        self._history: list = []
        self._history_samples = 0
        self._history_rate = 0
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._counters_task: Optional[asyncio.Task] = None
        self._connected = threading.Event()
        self.pages_served = 0
        self.messages_sent = 0

    # -- routes ---------------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        """The page at ``prefix/``, its script and its WebSocket at ``prefix/ws``."""
        if prefix:
            app.router.add_get(prefix, lambda request: web.HTTPFound(prefix + "/"))
        app.router.add_get(prefix + "/", self._file_handler("index.html"))
        app.router.add_get(prefix + "/viewer.js", self._file_handler("viewer.js"))
        app.router.add_get(prefix + "/ws", self._websocket)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    def _file_handler(self, name: str):
        body = _page_file(name)  # read once: a missing file fails here, at start

        async def handler(request):
            return web.Response(body=body, content_type=_PAGE_FILES[name],
                                headers={"Cache-Control": "no-store"})

        return handler

    async def _on_startup(self, app) -> None:
        self._loop = asyncio.get_running_loop()
        if self.counters_fn is not None:
            self._counters_task = self._loop.create_task(self._send_counters())

    async def _on_shutdown(self, app) -> None:
        if self._counters_task is not None:
            self._counters_task.cancel()
        for ws in list(self._pages):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server going away")
        self._loop = None

    async def _websocket(self, request):
        ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=1 << 16)
        await ws.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()  # bounded by _broadcast
        hello = json.dumps({"type": "hello", "version": PROTOCOL_VERSION, "title": self.title,
                            "layout": FLAME_OFFSETS})
        catch_up = [hello, *self._history]  # sent before anything queued after it
        self._pages[ws] = queue
        self.pages_served += 1
        self._connected.set()
        writer = asyncio.get_running_loop().create_task(self._write(ws, catch_up, queue))
        try:
            async for msg in ws:  # the page sends nothing that matters; read to see it close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._pages.pop(ws, None)
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        return ws

    async def _write(self, ws, catch_up: list, queue: asyncio.Queue) -> None:
        for message in catch_up:
            if not await self._send(ws, message):
                return
        while True:
            message = await queue.get()
            if message is None:
                await ws.close(code=1013, message=b"too slow; reconnect")
                return
            if not await self._send(ws, message):
                return

    async def _send(self, ws, message) -> bool:
        try:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
        except (ConnectionError, RuntimeError):
            return False
        self.messages_sent += 1
        return True

    async def _send_counters(self) -> None:
        while True:
            await asyncio.sleep(COUNTERS_EVERY)
            try:
                counters = self.counters_fn()
            except Exception as exc:  # noqa: BLE001 - a counter read never stops the view
                counters = {"error": repr(exc)}
            self._broadcast(json.dumps({"type": "counters", "source": self.counters_source,
                                        "counters": _numbers(counters)}))

    # -- running --------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the page alone on ``host:port`` (0: a free port) on this loop; its URL."""
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0][1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/"
        return self.url

    async def aclose(self) -> None:
        """Close the pages' sockets (they say the server went away) and stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on an event loop of its own in a daemon thread; the URL.
        An address that cannot be listened on raises ``OSError`` here."""
        ready = threading.Event()
        box: dict = {}

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                box["url"] = loop.run_until_complete(self.start(host, port))
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
                box["error"] = exc
                ready.set()
                loop.close()
                return
            box["loop"] = loop
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="avatarkit-live-view", daemon=True)
        self._thread.start()
        ready.wait()
        if "error" in box:
            raise box["error"]
        self._thread_loop = box["loop"]
        return box["url"]

    def stop(self, linger: float = 0.0) -> None:
        """Stop the thread started by :meth:`start_in_thread`, after giving the
        pages up to ``linger`` seconds to receive what is queued."""
        if self._thread is None:
            return
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline and any(not q.empty() for q in list(self._pages.values())):
            time.sleep(0.02)
        self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
        self._thread.join(10)
        self._thread = None

    def wait_for_page(self, timeout: float) -> bool:
        """Whether a page connected (at any time) within ``timeout`` seconds."""
        return self._connected.wait(timeout)

    @property
    def pages(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    # -- the feed (any thread) ----------------------------------------------

    def begin(self, conv: str, sample_rate: int, fps: int) -> None:
        """A conversation starts: pages switch to it."""
        self._post(json.dumps({"type": "begin", "conv": conv, "sample_rate": int(sample_rate),
                               "fps": int(fps)}), begin=int(sample_rate))

    def audio(self, conv: str, offset: int, pcm) -> None:
        """The conversation's int16 samples from ``offset`` on."""
        data = np.ascontiguousarray(pcm, dtype="<i2")
        if not len(data):
            return
        self._post(encode_binary({"type": "audio", "conv": conv, "offset": int(offset)}, data.tobytes()),
                   samples=len(data))

    def keyframes(self, conv: str, first: int, frames) -> None:
        """The conversation's keyframes (n, 120) from index ``first`` on."""
        data = np.ascontiguousarray(frames, dtype="<f4").reshape(-1, KEYFRAME_FLOATS)
        if not len(data):
            return
        self._post(encode_binary({"type": "keyframes", "conv": conv, "first": int(first), "count": len(data)},
                                 data.tobytes()))

    def end(self, conv: str) -> None:
        self._post(json.dumps({"type": "end", "conv": conv}))

    def interrupt(self, conv: str, at: Optional[int] = None) -> None:
        """Cut the conversation at sample ``at``; None: at the sample the page plays now."""
        message = {"type": "interrupt", "conv": conv}
        if at is not None:
            message["at"] = int(at)
        self._post(json.dumps(message))

    def _post(self, message, *, begin: int = 0, samples: int = 0) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._record_and_broadcast, message, begin, samples)

    def _record_and_broadcast(self, message, begin: int, samples: int) -> None:
        if begin:
            self._history = []
            self._history_samples = 0
            self._history_rate = begin
        if samples and self._history_rate:
            self._history_samples += samples
            if self._history_samples > HISTORY_SECONDS * self._history_rate:
                self._history = self._history[:1]  # keep the begin; late pages see the rest from now
                self._history_samples = samples
        self._history.append(message)
        self._broadcast(message)

    def _broadcast(self, message) -> None:
        for queue in list(self._pages.values()):
            if queue.qsize() < PAGE_QUEUE:
                queue.put_nowait(message)
            else:
                # Too slow a page: drop what is queued, close it; it reconnects and catches up.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)


def _numbers(counters: Any) -> dict:
    if dataclasses.is_dataclass(counters):
        counters = dataclasses.asdict(counters)
    elif not isinstance(counters, dict):
        counters = {k: v for k, v in vars(counters).items() if not k.startswith("_")}
    out = {}
    for key, value in counters.items():
        if isinstance(value, (bool, int, float)) and not (isinstance(value, float) and value != value):
            out[str(key)] = value
    return out


class ControllerTap:
    """A controller as the demo's clock pulls it, every keyframe shown and
    every sample read handed to a :class:`LiveViewer` as one conversation.

    Everything else is the controller's own (attributes pass through), so the
    tap stands in for it wherever the demo uses it.  Keyframe ``i`` is the
    frame pulled before the ``i``-th audio read, the pairing of
    ``VirtualClock``; the page shows it for samples
    ``[i * rate / fps, (i + 1) * rate / fps)``: the controller's rule.
    """

    def __init__(self, ctrl, viewer: LiveViewer, *, sample_rate: int, fps: int, conv: str = "demo") -> None:
        self._tap_ctrl = ctrl
        self._tap_viewer = viewer
        self._tap_conv = conv
        self._tap_rate = int(sample_rate)
        self._tap_fps = int(fps)
        self._tap_frames = 0
        self._tap_samples = 0
        self._tap_begun = False
        self._tap_lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._tap_ctrl, name)

    def _tap_begin(self) -> None:
        if not self._tap_begun:
            self._tap_begun = True
            self._tap_viewer.begin(self._tap_conv, self._tap_rate, self._tap_fps)

    def current_frame_into(self, buf) -> None:
        self._tap_ctrl.current_frame_into(buf)
        with self._tap_lock:
            self._tap_begin()
            self._tap_viewer.keyframes(self._tap_conv, self._tap_frames, np.asarray(buf).reshape(1, -1))
            self._tap_frames += 1

    def read_audio_into(self, buf) -> None:
        self._tap_ctrl.read_audio_into(buf)
        with self._tap_lock:
            self._tap_begin()
            self._tap_viewer.audio(self._tap_conv, self._tap_samples, buf)
            self._tap_samples += len(buf)

    def interrupt(self, *args, **kwargs):
        result = self._tap_ctrl.interrupt(*args, **kwargs)
        self._tap_viewer.interrupt(self._tap_conv, self._tap_samples)
        return result

    def finish(self) -> None:
        """The run is over: the page plays out what it has and shows idle."""
        self._tap_viewer.end(self._tap_conv)


class MotionObserver:
    """What the local motion server receives and sends, per request, handed to
    a :class:`LiveViewer`: each request (``req_id``) is a conversation, its
    audio as it arrives and its keyframes as they leave.  The page shows the
    request begun last.  The hooks run on the server's loop and never block."""

    def __init__(self, viewer: LiveViewer) -> None:
        self.viewer = viewer
        self._samples: dict[str, int] = {}
        self._frames: dict[str, int] = {}

    def _conv(self, session: str, req_id: str) -> str:
        return f"{session}/{req_id}"

    def request_audio(self, session: str, req_id: str, sample_rate: int, pcm: bytes, end: bool) -> None:
        conv = self._conv(session, req_id)
        if conv not in self._samples:
            if len(self._samples) > 1024:  # forget the oldest requests
                for key in list(self._samples)[:512]:
                    self._samples.pop(key, None)
                    self._frames.pop(key, None)
            self._samples[conv] = 0
            self._frames[conv] = 0
            self.viewer.begin(conv, sample_rate, 25)
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        self.viewer.audio(conv, self._samples[conv], samples)
        self._samples[conv] += len(samples)
        if end:
            self.viewer.end(conv)

    def request_animation(self, session: str, req_id: str, frames, end: bool) -> None:
        conv = self._conv(session, req_id)
        first = self._frames.get(conv, 0)
        self.viewer.keyframes(conv, first, frames)
        self._frames[conv] = first + len(frames)

    def request_interrupted(self, session: str, req_id: str) -> None:
        # The server knows what was sent, not what is being heard: the page cuts where it is.
        self.viewer.interrupt(self._conv(session, req_id))


def open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser when one can be shown (a desktop
    session on Linux, or macOS / Windows); whether one was asked to open it.
    Never a text-mode browser: that would take over the terminal."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if type(browser).__name__ in ("GenericBrowser",) and getattr(browser, "name", "") in (
            "www-browser", "lynx", "links", "elinks", "w3m"):
        return False
    try:
        return bool(browser.open(url, new=2))
    except Exception:  # noqa: BLE001 - no browser is not an error: the URL is printed
        return False
