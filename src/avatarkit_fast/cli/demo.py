"""``avatarkit-fast demo``: host mode end to end on this machine, with pictures.

The pipeline, all real, on loopback:

    speech -> backend --(server SDK session)--> local motion server
              backend <--(animation envelopes)--
              backend --(msgpack relay, WebSocket, simulated jitter)--> client
              client: RelayReceiver -> AvatarController -> virtual clock / sound card

The backend sends the speech as a TTS engine would, as fast as it is made.
With the default virtual clock the network part runs first while the client
logs each relay message with its arrival time; the clock then replays those
arrivals into the controller, frame by frame, as fast as the machine goes:
exactly what a player would have done with that network, and repeatable.
``--realtime`` and ``--play`` instead feed the controller live and pull from it
on a paced clock (or the sound card's callback) in another thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import UsageError
from .progress import Progress

__all__ = ["run_demo", "sync_errors"]

CHUNK_SECONDS = 0.02  # the backend sends 20 ms of audio per message
DEMO_AVATAR = "demo-avatar"
DEMO_APP = "demo-app"
DEMO_KEY = "demo-key"


# -- inputs ---------------------------------------------------------------------


@dataclass
class Utterance:
    pcm: np.ndarray  # int16 mono
    sample_rate: int
    source: str
    envelopes: Optional[list[bytes]] = None  # a recording's own animation
    req_id: Optional[str] = None


def _load_input(args) -> Utterance:
    from .. import wire

    if args.recording:
        path = Path(args.recording)
        try:
            doc = json.loads(path.read_text())
            rate = int(doc["sample_rate"])
            pcm = np.frombuffer(base64.b64decode(doc["audio_base64"]), "<i2").copy()
            envs = [base64.b64decode(e) for e in doc["animation_messages_base64"]]
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}: not a recording (sample_rate, audio_base64, "
                             f"animation_messages_base64): {exc!s}") from None
        req_ids = set()
        for i, env in enumerate(envs):
            try:
                msg = wire.decode_message(env)
            except Exception as exc:  # noqa: BLE001 - any decode failure is a bad input
                raise UsageError(f"{path}: animation message {i} does not decode: {exc}") from None
            req_ids.add(getattr(msg, "req_id", ""))
        if len(req_ids) != 1 or not next(iter(req_ids)):
            raise UsageError(f"{path}: expected the envelopes of one request, found req_ids {sorted(req_ids)}")
        return Utterance(pcm, rate, str(path), envs, req_ids.pop())
    if args.audio:
        from .wavfile import read_wav

        path = Path(args.audio)
        if not path.is_file():
            raise UsageError(f"cannot read {path}: no such file")
        try:
            pcm, rate = read_wav(path)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if rate not in SAMPLE_RATES:
            raise UsageError(f"{path}: sample rate {rate} Hz is not supported (use one of "
                             f"{', '.join(map(str, SAMPLE_RATES))})")
        if len(pcm) == 0:
            raise UsageError(f"{path}: no audio in the file")
        return Utterance(pcm, rate, str(path))
    from .speech import synthesize_speech

    if not (0.2 <= args.seconds <= 600):
        raise UsageError(f"--seconds must be between 0.2 and 600, got {args.seconds:g}")
    return Utterance(synthesize_speech(args.seconds, 16000, seed=args.seed), 16000,
                     f"made-up speech, {args.seconds:g} s, seed {args.seed}")


SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


# -- the network: jitter link, backend sessions --------------------------------


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


class _SpatiusBackend:
    """The vendor's server SDK (``spatius``) pointed at the local server."""

    name = "spatius SDK"

    def __init__(self, console: str, ingress: str, sample_rate: int, on_envelope) -> None:
        import spatius
        from datetime import datetime, timedelta, timezone

        spatius.configure_telemetry("")  # send nothing anywhere
        self._session = spatius.new_avatar_session(
            avatar_id=DEMO_AVATAR, api_key=DEMO_KEY, app_id=DEMO_APP,
            console_endpoint_url=console, ingress_endpoint_url=ingress,
            sample_rate=sample_rate, transport_frames=on_envelope,
            expire_at=datetime.now(timezone.utc) + timedelta(minutes=10),
        )

    async def start(self) -> None:
        await self._session.init()
        await self._session.start()

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        return await self._session.send_audio(pcm, end=end)

    async def interrupt(self) -> None:
        await self._session.interrupt()

    async def close(self) -> None:
        await self._session.close()


class _EnvelopeTap:
    """Stands where ``session.AvatarSession`` expects a controller, on the
    backend: it keeps no audio and hands each animation envelope to the relay."""

    def __init__(self, sample_rate: int, on_envelope) -> None:
        self.sample_rate = sample_rate
        self._on_envelope = on_envelope
        self._n = 0
        self._current: Optional[str] = None
        self._open = False

    def yield_audio_data(self, pcm, end: bool = False) -> str:
        if not self._open:
            self._n += 1
            self._current = f"utterance-{self._n}"
        self._open = not end
        return self._current

    def yield_frames_data(self, envelopes, conversation_id: str) -> bool:
        from .. import wire

        for env in envelopes or ():
            msg = wire.decode_message(env)
            self._on_envelope(env, bool(getattr(msg, "end", False)))
        return True

    def get_current_conversation_id(self) -> Optional[str]:
        return self._current

    def interrupt(self) -> None:
        self._current = None
        self._open = False


class _BuiltinBackend:
    """The package's own protocol client (``avatarkit_fast.session``) as the
    backend's server session."""

    name = "built-in session"

    def __init__(self, console: str, ingress: str, sample_rate: int, on_envelope) -> None:
        self._console, self._ingress = console, ingress
        self._tap = _EnvelopeTap(sample_rate, on_envelope)
        self._session = None

    async def start(self) -> None:
        from .. import session as sessions

        token = await sessions.fetch_session_token(self._console, DEMO_KEY)
        self._session = sessions.AvatarSession(
            self._tap, self._ingress, app_id=DEMO_APP, session_token=token, avatar_id=DEMO_AVATAR,
        )
        await self._session.start()

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        await self._session.send(pcm, end)
        return self._session.current_req_id

    async def interrupt(self) -> None:
        await self._session.interrupt()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _RecordingBackend:
    """Replays a recording's own envelopes in the service's batching: each one
    leaves once the audio it animates has been sent."""

    name = "recorded envelopes"

    def __init__(self, utt: Utterance, on_envelope, fps: int = 25) -> None:
        from .. import wire

        self._on_envelope = on_envelope
        self._rate = utt.sample_rate
        self._req_id = utt.req_id
        self._pending = []
        total = 0
        for env in utt.envelopes:
            total += wire.count_keyframes(env)
            self._pending.append((total * utt.sample_rate // fps, env))
        self._sent = 0
        self._stopped = False

    async def start(self) -> None:
        pass

    async def send_audio(self, pcm: bytes, end: bool) -> str:
        self._sent += len(pcm) // 2
        while self._pending and not self._stopped and (end or self._pending[0][0] <= self._sent):
            _, env = self._pending.pop(0)
            self._on_envelope(env, not self._pending)
            await asyncio.sleep(0)
        return self._req_id

    async def interrupt(self) -> None:
        self._stopped = True

    async def close(self) -> None:
        pass


def _pick_backend(kind: str):
    if kind in ("auto", "spatius"):
        try:
            import spatius  # noqa: F401
        except ImportError:
            if kind == "spatius":
                raise UsageError("--session spatius: the spatius package is not installed") from None
        else:
            return _SpatiusBackend
    return _BuiltinBackend


# -- the client side --------------------------------------------------------------


@dataclass
class Arrival:
    t: float  # seconds since the first audio was sent
    kind: str  # "audio", "animation", "audio-only", "interrupt"
    data: bytes


@dataclass
class Playout:
    """What the clock saw, one entry per video frame."""

    frames: np.ndarray
    audio: np.ndarray
    audio_time: np.ndarray  # conversation seconds played at each frame's start
    playing: np.ndarray  # bool: a conversation was playing at the frame's start
    stall_frames: np.ndarray  # bool: audio waited or ran dry during the frame
    fps: int
    sample_rate: int
    start_sample: Optional[int] = None  # first played sample of the conversation
    first_frame_at: Optional[float] = None


class _Recorder:
    """Pulls from the controller on a VirtualClock and keeps everything."""

    def __init__(self, ctrl, fps: int, sample_rate: int, cap_frames: int) -> None:
        self.ctrl = ctrl
        self.fps = fps
        self.sample_rate = sample_rate
        self.frames = np.zeros((cap_frames, 120), np.float32)
        spf = -(-sample_rate // fps)
        self.audio = np.zeros(cap_frames * spf, np.int16)
        self.audio_time = np.zeros(cap_frames, np.float64)
        self.playing = np.zeros(cap_frames, bool)
        self.stall = np.zeros(cap_frames, bool)
        self.n = 0
        self.samples = 0
        self.start_sample: Optional[int] = None
        self.first_frame: Optional[int] = None
        self.cap = cap_frames
        self._conv_key: Any = None
        self._base = 0

    def _conversation_samples(self, st) -> int:
        """Samples of the current conversation played, from the controller's counters.

        ``samples_played`` counts every conversation's samples (never silence);
        its value when a conversation began (or was interrupted) is the base.
        """
        key = (_stat(st, "conversations"), _stat(st, "interrupts"))
        if key != self._conv_key:
            self._conv_key = key
            self._base = _stat(st, "samples_played")
        return int(_stat(st, "samples_played")) - int(self._base)

    def tick(self, clock) -> None:
        ctrl = self.ctrl
        i = clock.index
        if i >= self.cap:
            clock.stop()
            return
        # Taken with the frame, at the frame's start (before its audio is read).
        st = ctrl.stats
        played0 = self._conversation_samples(st)
        playing = _is_playing(ctrl)
        under0, stalls0 = _stat(st, "underrun_samples"), _stat(st, "stalls")
        interrupts0 = _stat(st, "interrupts")
        tick = clock.step()
        n = len(tick.audio)
        self.frames[i] = tick.frame
        self.audio[self.samples:self.samples + n] = tick.audio
        self.audio_time[i] = played0 / self.sample_rate
        st = ctrl.stats
        # Fed live from another thread, the controller may have been interrupted
        # between the snapshot and the frame: such a frame is not measured.
        # A conversation waiting for its first animation shows the idle frame (zeros
        # here): measured from the first keyframe shown on.
        self.playing[i] = (playing and (played0 > 0 or bool(tick.frame.any()))
                           and _stat(st, "interrupts") == interrupts0)
        if self.playing[i] and self.first_frame is None and tick.frame.any():
            self.first_frame = i
        self.stall[i] = (_stat(st, "underrun_samples") > under0) or (_stat(st, "stalls") > stalls0)
        if self.start_sample is None and _stat(st, "interrupts") == interrupts0:
            played = self._conversation_samples(st)
            if played > 0:
                self.start_sample = self.samples + n - played
        self.samples += n
        self.n = i + 1

    def result(self) -> Playout:
        n = self.n
        first = None if self.first_frame is None else self.first_frame / self.fps
        return Playout(self.frames[:n].copy(), self.audio[:self.samples].copy(), self.audio_time[:n].copy(),
                       self.playing[:n].copy(), self.stall[:n].copy(), self.fps, self.sample_rate,
                       self.start_sample, first)


def _stat(stats: Any, name: str, default: Any = 0) -> Any:
    if isinstance(stats, dict):
        return stats.get(name, default)
    return getattr(stats, name, default)


def _stats_dict(stats: Any) -> dict:
    if isinstance(stats, dict):
        return dict(stats)
    if hasattr(stats, "_asdict"):
        return dict(stats._asdict())
    if hasattr(stats, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def _is_playing(ctrl) -> bool:
    state = getattr(ctrl, "state", None)
    name = getattr(state, "name", str(state))
    return name.upper().endswith("PLAYING")


def _make_controller(args, sample_rate: int, events: list):
    from ..controller import AvatarController

    def on_state(state, *rest):
        events.append(("state", time.monotonic(), getattr(state, "name", str(state))))

    def on_stall(stalled, *rest):
        events.append(("stall", time.monotonic(), bool(stalled)))

    def on_error(*exc):
        events.append(("error", time.monotonic(), repr(exc)))

    return AvatarController(
        sample_rate=sample_rate, fps=args.fps, sync_mode=args.sync_mode,
        interpolation=args.interpolation, on_conversation_state=on_state,
        on_playback_stall=on_stall, on_error=on_error,
    )


# -- running it ---------------------------------------------------------------------


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


class _Live:
    """Cross-thread signals between the network (event loop) and a paced playout."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.interrupt = asyncio.Event()
        self.playout_done = asyncio.Event()

    def request_interrupt(self) -> None:
        self.loop.call_soon_threadsafe(self.interrupt.set)

    def finished(self) -> None:
        self.loop.call_soon_threadsafe(self.playout_done.set)


async def _run_network(args, utt: Utterance, *, on_arrival: Callable[[Arrival], None],
                       on_start: Callable[[float], None] = lambda t0: None,
                       live: Optional[_Live] = None,
                       progress: Optional[Progress] = None) -> NetworkLog:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from .. import relay

    log = NetworkLog()
    rng = random.Random(args.seed)
    jitter = max(0.0, args.jitter_ms) / 1000.0
    server = None
    if utt.envelopes is None:
        try:
            from ..server import MotionServer
        except ImportError as exc:
            raise UsageError(f"the local motion server cannot start here: {exc}") from None
        server = MotionServer(speed=args.server_speed)
        try:
            await server.start("127.0.0.1", 0)
        except RuntimeError as exc:  # aiohttp missing: the server says what to install
            from ..errors import AvatarKitError

            raise AvatarKitError(str(exc)) from None

    connected = asyncio.get_running_loop().create_future()

    async def backend_handler(ws):
        if not connected.done():
            connected.set_result(ws)
        await ws.wait_closed()

    async def client(url):
        # The client: every relay message is logged (and, live, fed) on arrival.
        async with connect(url, max_size=None) as ws:
            async for message in ws:
                t = time.monotonic() - log.t0
                frame = relay.decode_frame(message)
                on_arrival(Arrival(t, _kind_of(frame), bytes(message)))

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
        if utt.envelopes is not None:
            backend = _RecordingBackend(utt, on_envelope, args.fps)
        else:
            backend = _pick_backend(args.session)(
                server.console_endpoint_url, server.ingress_endpoint_url, utt.sample_rate, on_envelope)
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
            log.server_stats = _stats_dict(server.stats)
            await server.stop()
    log.network_s = time.monotonic() - log.t0
    return log


def _pipeline(coro):
    """Run the network part; a failure of a peer is one line, not a traceback."""
    from ..errors import AvatarKitError

    try:
        return asyncio.run(coro)
    except (AvatarKitError, UsageError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK's and the transport's own errors
        raise AvatarKitError(f"the pipeline failed: {type(exc).__name__}: {exc}") from exc


def _done_playing(ctrl, network_done: bool) -> bool:
    return network_done and not _is_playing(ctrl) and _stat(ctrl.stats, "buffered_audio_ms") <= 0


TAIL_FRAMES = 5  # idle frames after the end, so the picture shows the mouth close


def _replay(args, utt: Utterance, log: NetworkLog, ctrl, progress: Optional[Progress]) -> tuple[Playout, dict]:
    """The virtual clock, as fast as possible, over the logged arrivals."""
    from .. import relay
    from ..playback import VirtualClock

    duration = len(utt.pcm) / utt.sample_rate
    cap = int((duration + 15.0 + (log.arrivals[-1].t if log.arrivals else 0)) * args.fps) + TAIL_FRAMES
    rec = _Recorder(ctrl, args.fps, utt.sample_rate, cap)
    clock = VirtualClock(ctrl, fps=args.fps, sample_rate=utt.sample_rate)
    receiver = relay.RelayReceiver(ctrl, clock=lambda: clock.time)  # gap timeouts in replay time too
    arrivals = log.arrivals
    k = 0
    interrupt_at = args.interrupt_at
    interrupted_at = None
    tail = 0
    expected = int((duration + (arrivals[-1].t if arrivals else 0)) * args.fps) + TAIL_FRAMES
    while clock.index < cap:
        t = clock.time
        while k < len(arrivals) and arrivals[k].t <= t:
            receiver.feed(arrivals[k].data)
            k += 1
        receiver.poll()
        if interrupt_at is not None and interrupted_at is None and t >= interrupt_at:
            # The backend's interrupt reaches the client now: the relay frame, as it would arrive.
            req = utt.req_id or _last_req(arrivals)
            receiver.feed(relay.encode_frame(relay.Interrupt(req)))
            interrupted_at = t
        rec.tick(clock)
        if progress is not None:
            progress.update(clock.index, expected)
        if _done_playing(ctrl, k >= len(arrivals)) and rec.start_sample is not None or \
                (interrupted_at is not None and k >= len(arrivals) and not _is_playing(ctrl)):
            tail += 1
            if tail > TAIL_FRAMES:
                break
    info = {"interrupted_at": interrupted_at, "receiver": _stats_dict(receiver.stats)}
    return rec.result(), info


def _last_req(arrivals: list[Arrival]) -> Optional[str]:
    from .. import relay

    for a in reversed(arrivals):
        if a.kind == "audio":
            return relay.decode_frame(a.data).req_id
    return None


def _live(args, utt: Utterance, ctrl, progress: Optional[Progress]) -> tuple[NetworkLog, Playout, dict]:
    """Feed the controller on arrival; pull on a paced clock (or the sound card) in a thread."""
    from .. import relay
    from ..playback import SoundDevicePlayer, VirtualClock

    receiver = relay.RelayReceiver(ctrl)
    duration = len(utt.pcm) / utt.sample_rate
    cap = int((duration + 30.0) * args.fps) + TAIL_FRAMES
    rec = _Recorder(ctrl, args.fps, utt.sample_rate, cap)
    state: dict = {"network_done": False, "interrupted_at": None, "error": None}
    player_box: dict = {}
    start_evt = threading.Event()

    def on_arrival(a: Arrival) -> None:
        log_box.arrivals.append(a)
        frame = receiver.feed(a.data)
        if a.kind == "interrupt" or (a.kind == "audio" and frame.end):
            state["network_done"] = True  # nothing more of this utterance will come

    def playout(live: _Live) -> None:
        try:
            start_evt.wait()
            if args.play:
                tap = _PlayTap(ctrl, cap * (-(-utt.sample_rate // args.fps)))
                player = SoundDevicePlayer(tap, sample_rate=utt.sample_rate)
                player_box["player"] = player
                player.start()
                source = _FrameSampler(ctrl)
            else:
                source = ctrl
            clock = VirtualClock(source, fps=args.fps, sample_rate=utt.sample_rate, realtime=True)
            tail = 0
            while clock.index < cap and not state.get("closed"):
                if args.interrupt_at is not None and state["interrupted_at"] is None \
                        and clock.time >= args.interrupt_at:
                    state["interrupted_at"] = clock.time
                    live.request_interrupt()
                rec.tick(clock)
                if progress is not None:
                    progress.update(clock.index, int(duration * args.fps))
                if _done_playing(ctrl, state["network_done"]) and (
                        rec.start_sample is not None or state["interrupted_at"] is not None):
                    tail += 1
                    if tail > TAIL_FRAMES:
                        break
            if args.play:
                player.stop()
                rec.audio[:tap.n] = tap.buf[:tap.n]
                rec.samples = tap.n
                rec.start_sample = tap.start_sample
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            state["error"] = exc
        finally:
            live.finished()

    log_box = NetworkLog()

    async def main() -> NetworkLog:
        live = _Live(asyncio.get_running_loop())
        thread = threading.Thread(target=playout, args=(live,), name="avatarkit-demo-playout", daemon=True)
        thread.start()
        try:
            log = await _run_network(args, utt, on_arrival=on_arrival, on_start=lambda t0: start_evt.set(),
                                     live=live)
        finally:
            start_evt.set()
            state["network_done"] = True
            state["closed"] = True
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        log.arrivals = log_box.arrivals
        return log

    log = _pipeline(main())
    if state["error"] is not None:
        raise state["error"]
    player = player_box.get("player")
    info = {"interrupted_at": state["interrupted_at"], "receiver": _stats_dict(receiver.stats)}
    if player is not None:
        info["sound_device"] = {"callbacks": player.callbacks, "underflows": player.underflows,
                                "errors": [repr(e) for e in player.errors]}
    return log, rec.result(), info


class _PlayTap:
    """The sound card's source: the controller, with a copy of what it played."""

    def __init__(self, ctrl, cap_samples: int) -> None:
        self.ctrl = ctrl
        self.sample_rate = ctrl.sample_rate if hasattr(ctrl, "sample_rate") else None
        self.buf = np.zeros(cap_samples, np.int16)
        self.n = 0

    start_sample: Optional[int] = None

    def read_audio_into(self, buf) -> None:
        self.ctrl.read_audio_into(buf)
        m = min(len(buf), len(self.buf) - self.n)
        self.buf[self.n:self.n + m] = buf[:m]
        self.n += m
        if self.start_sample is None:
            played = self.ctrl.stats["samples_played"]
            if played > 0:
                self.start_sample = self.n - played

    def current_frame_into(self, buf) -> None:
        self.ctrl.current_frame_into(buf)

    def get_audio_time(self) -> float:
        return self.ctrl.get_audio_time()


class _FrameSampler:
    """With the sound card pulling audio, the video clock only samples keyframes."""

    def __init__(self, ctrl) -> None:
        self.ctrl = ctrl
        self.sample_rate = getattr(ctrl, "sample_rate", None)

    def read_audio_into(self, buf) -> None:
        buf[:] = 0

    def current_frame_into(self, buf) -> None:
        self.ctrl.current_frame_into(buf)

    def get_audio_time(self) -> float:
        return self.ctrl.get_audio_time()


# -- what it measured ---------------------------------------------------------------


def _conversation_keyframes(arrivals: list[Arrival], req_id: Optional[str]) -> tuple[np.ndarray, list[float]]:
    """The keyframes the client received for ``req_id``, in order, and each envelope's arrival."""
    from .. import relay, wire

    rows = []
    times = []
    for a in arrivals:
        if a.kind != "animation":
            continue
        frame = relay.decode_frame(a.data)
        if req_id is not None and frame.req_id != req_id:
            continue
        for env in frame.envelopes:
            msg = wire.decode_message(env)
            if isinstance(msg, wire.AnimationMessage) and len(msg.frames):
                rows.append(np.asarray(msg.frames, np.float32))
        times.append(a.t)
    k = np.concatenate(rows) if rows else np.zeros((0, 120), np.float32)
    return k, times


def sync_errors(play: Playout, keyframes: np.ndarray, interpolation: str) -> np.ndarray:
    """Per measured video frame: |position of the keyframe shown - position the
    audio calls for|, in frames.  NaN where nothing was measured: not playing,
    the idle frame (no keyframe yet), past the animation's end, or a frame
    whose audio stood still (a stall: the picture holds, nothing is heard)."""
    n = len(play.frames)
    err = np.full(n, np.nan)
    if play.start_sample is None or not len(keyframes):
        return err
    spf = play.sample_rate / play.fps
    first = int(play.start_sample // spf)
    diffs = np.diff(keyframes, axis=0)
    seg_len2 = np.einsum("ij,ij->i", diffs, diffs)
    pos_s = np.round(play.audio_time * play.sample_rate).astype(np.int64)
    for i in range(first, n):
        if not play.playing[i]:
            continue
        s = int(pos_s[i])
        if i + 1 < n and play.playing[i + 1] and 0 <= pos_s[i + 1] - s < int(spf):
            continue  # the audio waited during this frame
        want = s * play.fps / play.sample_rate
        want = s * play.fps / play.sample_rate
        if interpolation == "none":
            want = math.floor(want)
        if want > len(keyframes) - 1:
            continue
        row = play.frames[i]
        if not row.any():
            continue  # the idle frame: no keyframe shown (counted apart)
        # Exact match first (interpolation off, or a held keyframe), else the
        # nearest point on a segment between neighbouring keyframes.
        exact = np.flatnonzero(np.all(keyframes == row, axis=1))
        if len(exact):
            pos = exact[np.argmin(np.abs(exact - want))]
            err[i] = abs(pos - want)
            continue
        lo = max(0, int(want) - 60)
        hi = min(len(keyframes), int(want) + 61)
        best = (np.inf, 0.0)
        for j in range(lo, min(hi, len(keyframes) - 1)):
            d = diffs[j]
            t = 0.0 if seg_len2[j] == 0 else float(np.clip(np.dot(row - keyframes[j], d) / seg_len2[j], 0, 1))
            resid = float(np.sum((keyframes[j] + t * d - row) ** 2))
            cand = (resid, -abs(j + t - want))
            if cand < (best[0], -abs(best[1] - want)):
                best = (resid, j + t)
        err[i] = abs(best[1] - want)
    return err


def _stall_spans(play: Playout) -> list[tuple[float, float]]:
    spans = []
    start = None
    for i, s in enumerate(play.stall_frames):
        if s and start is None:
            start = i
        elif not s and start is not None:
            spans.append((start / play.fps, i / play.fps))
            start = None
    if start is not None:
        spans.append((start / play.fps, len(play.stall_frames) / play.fps))
    return spans


def _build_report(args, utt, log, play, info, ctrl, keyframes, err, timings) -> dict:
    stats = _stats_dict(ctrl.stats)
    measured = err[~np.isnan(err)]
    audio_arr = [a.t for a in log.arrivals if a.kind == "audio"]
    anim_arr = [a.t for a in log.arrivals if a.kind == "animation"]
    # Clock time 0 is the moment the backend sent the first audio.
    latency = None if play.first_frame_at is None else play.first_frame_at * 1000.0
    mode = ("sound device" if args.play else
            "virtual clock, real time" if args.realtime else "virtual clock, as fast as possible")
    return {
        "input": {"source": utt.source, "sample_rate": utt.sample_rate, "samples": int(len(utt.pcm)),
                  "seconds": round(len(utt.pcm) / utt.sample_rate, 3)},
        "pipeline": {"mode": mode, "session": log.backend, "server_speed": args.server_speed,
                     "fps": args.fps, "sync_mode": args.sync_mode,
                     "interpolation": args.interpolation, "jitter_ms": args.jitter_ms,
                     "interrupt_at": args.interrupt_at},
        "first_keyframe_latency_ms": None if latency is None else round(latency, 1),
        "start_silence_samples": play.start_sample,
        "sync_error_frames": {
            "max": float(measured.max()) if len(measured) else None,
            "mean": float(measured.mean()) if len(measured) else None,
            "frames_measured": int(len(measured)),
            # Audio playing while no keyframe had come yet (it started after max_frame_wait).
            "frames_without_keyframe": int(np.sum(play.playing & ~play.frames.any(axis=1))),
        },
        "underrun_samples": int(_stat(stats, "underrun_samples")),
        "stalls": int(_stat(stats, "stalls")),
        "stale_drops": int(_stat(stats, "frames_dropped_stale")),
        "interrupted_at": info.get("interrupted_at"),
        "counts": {
            "video_frames": int(len(play.frames)),
            "samples_played": int(len(play.audio)),
            "audio_messages": len(audio_arr),
            "animation_messages": len(anim_arr),
            "keyframes_received": int(len(keyframes)),
            "conversations": int(_stat(stats, "conversations")),
            "interrupts": int(_stat(stats, "interrupts")),
        },
        "arrivals": {"first_audio_s": audio_arr[0] if audio_arr else None,
                     "last_audio_s": audio_arr[-1] if audio_arr else None,
                     "animation_s": [round(t, 4) for t in anim_arr]},
        "controller_stats": stats,
        "relay": {**log.relay_stats, "receiver": info.get("receiver", {})},
        "server": log.server_stats,
        **({"sound_device": info["sound_device"]} if "sound_device" in info else {}),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


# -- the command ------------------------------------------------------------------


def run_demo(args) -> int:
    from .face import video_suffix, write_face_video
    from .timeline import draw_timeline
    from .wavfile import write_wav

    if args.fps <= 0 or args.fps > 120:
        raise UsageError(f"--fps must be between 1 and 120, got {args.fps}")
    if args.jitter_ms < 0:
        raise UsageError(f"--jitter-ms must not be negative, got {args.jitter_ms:g}")
    if args.interrupt_at is not None and args.interrupt_at < 0:
        raise UsageError(f"--interrupt-at must not be negative, got {args.interrupt_at:g}")
    if args.server_speed is not None and not (0.05 <= args.server_speed <= 1000):
        raise UsageError(f"--server-speed must be between 0.05 and 1000, got {args.server_speed:g}")
    if not (32 <= args.size <= 1024):
        raise UsageError(f"--size must be between 32 and 1024, got {args.size}")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise UsageError("the pictures need Pillow: pip install 'avatarkit-fast[demo]'") from None
    if args.play:
        from ..playback import check_output_device

        check_output_device()  # fail early, with the way out
    utt = _load_input(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write into {out}: {exc.strerror or exc}") from None

    show = not args.quiet
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    events: list = []
    ctrl = _make_controller(args, utt.sample_rate, events)
    try:
        if args.realtime or args.play:
            prog = Progress("playing", enabled=None if show else False)
            log, play, info = _live(args, utt, ctrl, prog)
            prog.close()
            timings["network_and_playout"] = time.monotonic() - t_start
        else:
            prog = Progress("network", enabled=None if show else False)
            arrivals: list[Arrival] = []
            log = _pipeline(_run_network(args, utt, on_arrival=arrivals.append, progress=prog))
            log.arrivals = arrivals
            prog.close()
            timings["network"] = time.monotonic() - t_start
            t1 = time.monotonic()
            prog = Progress("playout", enabled=None if show else False)
            play, info = _replay(args, utt, log, ctrl, prog)
            prog.close()
            timings["playout"] = time.monotonic() - t1
    finally:
        close = getattr(ctrl, "close", None)
        stats_snapshot = ctrl.stats
        if close is not None:
            close()

    req_id = utt.req_id or _last_req(log.arrivals)
    keyframes, _ = _conversation_keyframes(log.arrivals, req_id)
    err = sync_errors(play, keyframes, args.interpolation)

    t2 = time.monotonic()
    write_wav(out / "played.wav", play.audio, utt.sample_rate)
    np.save(out / "keyframes.npy", play.frames)
    anim_times = [a.t for a in log.arrivals if a.kind == "animation"]
    audio_times = [a.t for a in log.arrivals if a.kind == "audio"]
    title = (f"{utt.source} | {log.backend} | jitter 0..{args.jitter_ms:g} ms | {args.sync_mode}, "
             f"interpolation {args.interpolation}")
    draw_timeline(out / "timeline.png", play.audio, utt.sample_rate, play.frames[:, 9], args.fps,
                  audio_arrivals=audio_times, animation_arrivals=anim_times, stalls=_stall_spans(play),
                  interrupt_at=info.get("interrupted_at"), first_frame_at=play.first_frame_at, title=title)
    video = out / ("avatar" + video_suffix(args.video))
    prog = Progress("face", enabled=None if show else False)
    write_face_video(video, play.frames, fps=args.fps, size=args.size, audio=play.audio,
                     sample_rate=utt.sample_rate, progress=prog.update)
    prog.close()
    timings["pictures"] = time.monotonic() - t2
    timings["total"] = time.monotonic() - t_start

    class _Snap:
        stats = stats_snapshot

    report = _build_report(args, utt, log, play, info, _Snap, keyframes, err, timings)
    report["files"] = {"audio": "played.wav", "keyframes": "keyframes.npy", "timeline": "timeline.png",
                       "face": video.name}
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    if show:
        _print_summary(report, out)
    return 0


def _print_summary(r: dict, out: Path) -> None:
    se = r["sync_error_frames"]
    lat = r["first_keyframe_latency_ms"]
    c = r["counts"]
    lines = [
        f"host mode, end to end: {r['input']['source']} ({r['input']['seconds']:g} s at "
        f"{r['input']['sample_rate']} Hz) via {r['pipeline']['session']}, {r['pipeline']['mode']}",
        f"  first keyframe after {lat:.0f} ms" if lat is not None else "  no keyframe was shown",
        f"  sync error: max {se['max']:.2f}, mean {se['mean']:.3f} frames over {se['frames_measured']} frames"
        if se["max"] is not None else "  sync error: nothing measured",
        f"  underruns {r['underrun_samples']} samples, stalls {r['stalls']}, stale keyframes dropped {r['stale_drops']}"
        + (f", interrupted at {r['interrupted_at']:.2f} s" if r.get("interrupted_at") is not None else ""),
        f"  {c['video_frames']} video frames, {c['audio_messages']} audio + {c['animation_messages']} "
        f"animation messages, {c['keyframes_received']} keyframes received, in {r['timings_s']['total']:.1f} s",
        f"  wrote {out}/: played.wav keyframes.npy report.json timeline.png {r['files']['face']}",
    ]
    print("\n".join(lines))


def _kind_of(frame) -> str:
    from .. import relay

    if isinstance(frame, relay.AudioChunk):
        return "audio"
    if isinstance(frame, relay.AnimationFrame):
        return "animation"
    if isinstance(frame, relay.AudioOnly):
        return "audio-only"
    return "interrupt"
