"""The network part of the demo, on loopback: the local motion server, the
backend's session, the relay over a WebSocket with simulated jitter, and the
client's read loop that logs every relay message on arrival.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .. import UsageError
from ..progress import Progress
from .backends import make_backend
from .counters import stats_dict
from .inputs import Utterance

__all__ = ["Arrival", "NetworkLog", "Live", "JitterLink", "run_network", "pipeline", "last_req"]

CHUNK_SECONDS = 0.02  # the backend sends 20 ms of audio per message


@dataclass
class Arrival:
    t: float  # seconds since the first audio was sent
    kind: str  # "audio", "animation", "audio-only", "interrupt"
    data: bytes



class JitterLink:
    """A sink for ``RelaySender`` that delays each frame by 0..``jitter`` s
    (seeded), keeping order, then sends it on a WebSocket."""

    def __init__(self, websocket, jitter: float, rng: random.Random) -> None:
        self._ws = websocket
        self._jitter = jitter
        self._rng = rng
        self._last_due = 0.0
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __call__(self, frame: bytes) -> None:
        now = time.monotonic()
        due = max(self._last_due, now + self._rng.uniform(0.0, self._jitter))
        self._last_due = due
        self._queue.put_nowait((due, frame))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            due, frame = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._ws.send(frame)

    async def aclose(self) -> None:
        self._queue.put_nowait(None)
        await self._task



@dataclass
class NetworkLog:
    arrivals: list[Arrival] = field(default_factory=list)
    backend: str = ""
    t0: float = 0.0
    audio_sent_s: float = 0.0
    network_s: float = 0.0
    interrupted_req: Optional[str] = None
    server_stats: dict = field(default_factory=dict)
    relay_stats: dict = field(default_factory=dict)


class Live:
    """Cross-thread signals between the network (event loop) and a paced playout."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.interrupt = asyncio.Event()
        self.playout_done = asyncio.Event()

    def request_interrupt(self) -> None:
        self.loop.call_soon_threadsafe(self.interrupt.set)

    def finished(self) -> None:
        self.loop.call_soon_threadsafe(self.playout_done.set)


async def run_network(args, utt: Utterance, *, on_arrival: Callable[[Arrival], None],
                       on_start: Callable[[float], None] = lambda t0: None,
                       live: Optional[Live] = None,
                       progress: Optional[Progress] = None) -> NetworkLog:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from ... import relay

    log = NetworkLog()
    rng = random.Random(args.seed)
    jitter = max(0.0, args.jitter_ms) / 1000.0
    server = None
    if utt.envelopes is None:
        try:
            from ...server import MotionServer
        except ImportError as exc:
            raise UsageError(f"the local motion server cannot start here: {exc}") from None
        server = MotionServer(speed=args.server_speed)
        try:
            await server.start("127.0.0.1", 0)
        except RuntimeError as exc:  # aiohttp missing: the server says what to install
            from ...errors import AvatarKitError

            raise AvatarKitError(str(exc)) from None

    connected = asyncio.get_running_loop().create_future()

    async def backend_handler(ws):
        if not connected.done():
            connected.set_result(ws)
        await ws.wait_closed()

    async def client(url):
        # The client's network tap: every relay message is logged with its
        # arrival time (and, live, handed on).  It applies nothing itself, so it
        # is not pump_websocket: the playout feeds the logged frames to a
        # RelayReceiver on the virtual clock, repeatably (see playout.py).
        async with connect(url, max_size=None) as ws:
            async for message in ws:
                t = time.monotonic() - log.t0
                frame = relay.decode_frame(message)
                on_arrival(Arrival(t, kind_of(frame), bytes(message)))

    end_seen = asyncio.Event()
    sender_box: dict = {}

    def on_envelope(data: bytes, last: bool = False) -> None:
        sender_box["sender"].transport_frames(data, last)
        if last:
            end_seen.set()

    relay_server = await serve(backend_handler, "127.0.0.1", 0, max_size=None)
    port = next(iter(relay_server.sockets)).getsockname()[1]
    client_task = asyncio.get_running_loop().create_task(client(f"ws://127.0.0.1:{port}"))
    backend = None
    link = None
    try:
        ws = await asyncio.wait_for(connected, 10)
        link = JitterLink(ws, jitter, rng)
        sender = relay.RelaySender(link)
        sender_box["sender"] = sender
        backend = make_backend(args.session, utt, server and server.console_endpoint_url,
                               server and server.ingress_endpoint_url, on_envelope, args.fps)
        log.backend = backend.name
        await backend.start()
        pcm = np.ascontiguousarray(utt.pcm, dtype="<i2").tobytes()
        step = int(utt.sample_rate * CHUNK_SECONDS) * 2
        chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        log.t0 = time.monotonic()
        on_start(log.t0)
        req_id = None
        for k, chunk in enumerate(chunks):
            if live is not None and live.interrupt.is_set():
                break
            last = k == len(chunks) - 1
            req_id = await backend.send_audio(chunk, last)
            sender.audio(req_id, chunk, last)
            if progress is not None:
                progress.update(k + 1, len(chunks))
            await asyncio.sleep(0)
        log.audio_sent_s = time.monotonic() - log.t0
        waits = [asyncio.ensure_future(end_seen.wait())]
        if live is not None:
            waits.append(asyncio.ensure_future(live.interrupt.wait()))
        await asyncio.wait(waits, timeout=30 + len(utt.pcm) / utt.sample_rate,
                           return_when=asyncio.FIRST_COMPLETED)
        if live is not None:
            # Live: the playout side says when to interrupt, or that it is done.
            done = asyncio.ensure_future(live.playout_done.wait())
            await asyncio.wait([waits[-1], done], return_when=asyncio.FIRST_COMPLETED)
            if live.interrupt.is_set() and req_id is not None:
                await backend.interrupt()
                sender.interrupt(req_id)
                log.interrupted_req = req_id
            await done
        for w in waits:
            w.cancel()
        await sender.flush()
        await link.aclose()
        await ws.close()
        await asyncio.wait_for(client_task, 10)
        log.relay_stats = {"frames_sent": sender.frames_sent, "bytes_sent": sender.bytes_sent}
    finally:
        if backend is not None:
            try:
                await backend.close()
            except Exception:  # noqa: BLE001 - closing after a failure
                pass
        if not client_task.done():
            client_task.cancel()
        relay_server.close()
        await relay_server.wait_closed()
        if server is not None:
            log.server_stats = stats_dict(server.stats)
            await server.stop()
    log.network_s = time.monotonic() - log.t0
    return log


def pipeline(coro):
    """Run the network part; a failure of a peer is one line, not a traceback."""
    from ...errors import AvatarKitError

    try:
        return asyncio.run(coro)
    except (AvatarKitError, UsageError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK's and the transport's own errors
        raise AvatarKitError(f"the pipeline failed: {type(exc).__name__}: {exc}") from exc


def last_req(arrivals: list[Arrival]) -> Optional[str]:
    from ... import relay

    for a in reversed(arrivals):
        if a.kind == "audio":
            return relay.decode_frame(a.data).req_id
    return None



def kind_of(frame) -> str:
    from ... import relay

    if isinstance(frame, relay.AudioChunk):
        return "audio"
    if isinstance(frame, relay.AnimationFrame):
        return "animation"
    if isinstance(frame, relay.AudioOnly):
        return "audio-only"
    return "interrupt"
